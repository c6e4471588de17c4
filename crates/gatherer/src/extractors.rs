//! The node extractors: discovery of their pods (after the listing), one
//! `POST /gather_runtime_info` per node with only that node's container IDs, bounded
//! concurrency, a per-node timeout, TLS trusting only the given CA for the given server
//! name, and parsing of the answers.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::ListParams;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use runtime_info::{ContainerRuntimeInfo, GatherRuntimeInfoRequest, RuntimeComponent};
use serde_json::{Map, Value};

use crate::kube_types::{parse_pod_list, Pod, PodSink};
use crate::merge::RuntimeInfos;
use crate::output::RuntimeKey;
use crate::selector::LabelSelector;
use crate::shape::ContainerIdsByNode;

pub const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=insights-runtime-extractor";
pub const DEFAULT_NAMESPACE: &str = "openshift-insights";
pub const DEFAULT_PORT: u16 = 8443;
pub const DEFAULT_CA_FILE: &str = "/var/run/configmaps/service-ca-bundle/service-ca.crt";
pub const DEFAULT_SERVER_NAME: &str = "exporter.openshift-insights.svc.cluster.local";
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CONCURRENCY: usize = 32;
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer accepted from one node (a node with 1000 containers answers ~300 KiB).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
const MAX_TOKEN_BYTES: u64 = 64 << 10;
const MAX_CA_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ExtractorError {
    #[error("cannot list the extractor pods in {scope} with selector {selector:?}: {cause}")]
    Discovery {
        scope: String,
        selector: String,
        cause: kube::Error,
    },
    #[error("the extractor pod list is not a valid PodList: {0}")]
    DiscoveryParse(serde_json::Error),
    #[error("cannot build the extractor pod list request: {0}")]
    Request(kube::core::request::Error),
    #[error("cannot read {what} {path}: {cause}")]
    ReadFile {
        what: &'static str,
        path: String,
        cause: std::io::Error,
    },
    #[error("{what} {path} is larger than {max} bytes")]
    FileTooLarge {
        what: &'static str,
        path: String,
        max: u64,
    },
    #[error("the extractor CA file {path} holds no usable PEM certificate{detail}")]
    NoCertificates { path: String, detail: String },
    #[error("the service account token in {0} is empty or holds characters not allowed in an HTTP header")]
    BadToken(String),
    #[error("--extractor-server-name must be a DNS name, not {0:?}")]
    BadServerName(String),
}

/// A Running extractor pod.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtractorPod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    #[serde(rename = "podIP")]
    pub pod_ip: String,
}

/// Which pods are extractors: a namespace (`""` = all) and a label selector.
#[derive(Debug, Clone)]
pub struct ExtractorFilter {
    pub namespace: String,
    pub selector_text: String,
    pub selector: LabelSelector,
}

impl ExtractorFilter {
    pub fn new(namespace: &str, selector: &str) -> Result<Self, crate::selector::SelectorError> {
        Ok(ExtractorFilter {
            namespace: namespace.to_owned(),
            selector_text: selector.to_owned(),
            selector: LabelSelector::parse(selector)?,
        })
    }

    fn scope(&self) -> String {
        if self.namespace.is_empty() {
            "all namespaces".to_owned()
        } else {
            format!("namespace {}", self.namespace)
        }
    }

    /// Error text when no extractor runs (the reference says "statefulset"; it is a DaemonSet).
    pub fn none_running_message(&self) -> String {
        format!(
            "no running pods found for the insights-runtime-extractor daemonset ({}, selector {:?})",
            self.scope(),
            self.selector_text
        )
    }
}

/// Running pods with a pod IP, in list order.
fn running_extractor(pod: &Pod) -> Option<ExtractorPod> {
    (pod.status.phase == "Running").then(|| ExtractorPod {
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        node: pod.spec.node_name.clone(),
        pod_ip: pod.status.pod_ip.clone(),
    })
}

/// Collects the extractor pods of a pods file while it is streamed.
pub struct ExtractorCollector<'a> {
    pub filter: &'a ExtractorFilter,
    pub found: Vec<ExtractorPod>,
}

impl PodSink for ExtractorCollector<'_> {
    fn pod(&mut self, pod: Pod) {
        let in_scope =
            self.filter.namespace.is_empty() || pod.metadata.namespace == self.filter.namespace;
        if in_scope && self.filter.selector.matches(&pod.metadata.labels) {
            self.found.extend(running_extractor(&pod));
        }
    }
}

/// Lists the Running extractor pods through the API.
pub async fn discover(
    client: &kube::Client,
    filter: &ExtractorFilter,
) -> Result<Vec<ExtractorPod>, ExtractorError> {
    let path = if filter.namespace.is_empty() {
        "/api/v1/pods".to_owned()
    } else {
        format!("/api/v1/namespaces/{}/pods", filter.namespace)
    };
    let mut found = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default()
            .labels(&filter.selector_text)
            .limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let request = kube::core::Request::new(&path)
            .list(&lp)
            .map_err(ExtractorError::Request)?;
        let text =
            client
                .request_text(request)
                .await
                .map_err(|source| ExtractorError::Discovery {
                    scope: filter.scope(),
                    selector: filter.selector_text.clone(),
                    cause: source,
                })?;
        let meta = parse_pod_list(&text, &mut |pod: Pod| found.extend(running_extractor(&pod)))
            .map_err(ExtractorError::DiscoveryParse)?;
        match meta.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(found)
}

/// One node to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRequest {
    pub node: String,
    pub pod: ExtractorPod,
    pub container_ids: Vec<String>,
}

/// The requests to send: one per node that has IDs and an extractor (the first Running
/// extractor pod listed on that node), plus the nodes that have IDs but no extractor.
pub fn plan(
    ids: &ContainerIdsByNode,
    extractors: &[ExtractorPod],
) -> (Vec<NodeRequest>, Vec<String>) {
    let mut by_node: BTreeMap<&str, &ExtractorPod> = BTreeMap::new();
    for e in extractors {
        by_node.entry(e.node.as_str()).or_insert(e);
    }
    let mut requests = Vec::new();
    let mut without = Vec::new();
    for (node, node_ids) in &ids.0 {
        if node_ids.is_empty() {
            continue;
        }
        match by_node.get(node.as_str()) {
            Some(pod) => requests.push(NodeRequest {
                node: node.clone(),
                pod: (*pod).clone(),
                container_ids: node_ids.clone(),
            }),
            None => without.push(node.clone()),
        }
    }
    (requests, without)
}

fn read_bounded(what: &'static str, path: &Path, max: u64) -> Result<Vec<u8>, ExtractorError> {
    use std::io::Read;
    let display = path.display().to_string();
    let io = |source| ExtractorError::ReadFile {
        what,
        path: display.clone(),
        cause: source,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > max {
        return Err(ExtractorError::FileTooLarge {
            what,
            path: display,
            max,
        });
    }
    Ok(buf)
}

/// Everything needed to talk to the extractors.
#[derive(Clone)]
pub struct ClientConfig {
    pub port: u16,
    pub server_name: String,
    pub roots: Vec<reqwest::Certificate>,
    pub token: HeaderValue,
    pub concurrency: usize,
    pub node_timeout: Duration,
    pub max_response_bytes: usize,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("port", &self.port)
            .field("server_name", &self.server_name)
            .field("roots", &self.roots.len())
            .field("concurrency", &self.concurrency)
            .field("node_timeout", &self.node_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Reads the CA bundle and the token. Only the CA bundle is trusted.
    pub fn load(
        port: u16,
        server_name: &str,
        ca_file: &Path,
        token_file: &Path,
        concurrency: usize,
        node_timeout: Duration,
    ) -> Result<Self, ExtractorError> {
        if server_name.parse::<IpAddr>().is_ok() || server_name.is_empty() {
            return Err(ExtractorError::BadServerName(server_name.to_owned()));
        }
        let pem = read_bounded("extractor CA file", ca_file, MAX_CA_BYTES)?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ExtractorError::NoCertificates {
                path: ca_file.display().to_string(),
                detail: format!(": {e}"),
            }
        })?;
        if roots.is_empty() {
            return Err(ExtractorError::NoCertificates {
                path: ca_file.display().to_string(),
                detail: String::new(),
            });
        }
        let raw = read_bounded("service account token file", token_file, MAX_TOKEN_BYTES)?;
        let token = std::str::from_utf8(&raw)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .ok_or_else(|| ExtractorError::BadToken(token_file.display().to_string()))?;
        Ok(ClientConfig {
            port,
            server_name: server_name.to_owned(),
            roots,
            token,
            concurrency: concurrency.max(1),
            node_timeout,
            max_response_bytes: MAX_RESPONSE_BYTES,
        })
    }
}

/// Why a node gave no runtime info.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeFailure {
    /// HTTP status when the extractor answered with one other than 200.
    #[serde(rename = "httpStatus", skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub reason: String,
}

/// What one node answered.
#[derive(Debug, Clone)]
pub struct NodeOutcome {
    pub node: String,
    pub pod_ip: String,
    pub containers_requested: usize,
    pub elapsed: Duration,
    pub result: Result<RuntimeInfos, NodeFailure>,
}

/// `https://<ip>:<port>/gather_runtime_info` with IPv6 addresses bracketed, for messages.
pub fn display_url(pod_ip: &str, port: u16) -> String {
    match pod_ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{port}/gather_runtime_info"),
        _ => format!("https://{pod_ip}:{port}/gather_runtime_info"),
    }
}

/// The error and all its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

fn failure(reason: String) -> NodeFailure {
    NodeFailure {
        http_status: None,
        reason,
    }
}

async fn fetch_node_inner(
    cfg: &ClientConfig,
    req: &NodeRequest,
) -> Result<RuntimeInfos, NodeFailure> {
    let url_for_errors = display_url(&req.pod.pod_ip, cfg.port);
    let ip: IpAddr = req.pod.pod_ip.parse().map_err(|_| {
        failure(format!(
            "extractor pod {}/{} has no valid pod IP ({:?})",
            req.pod.namespace, req.pod.name, req.pod.pod_ip
        ))
    })?;
    // Connect to the pod IP but verify the certificate for the service name (what Go's
    // tls.Config.ServerName does): the name resolves to this pod's IP for this client only.
    let client = reqwest::Client::builder()
        .tls_certs_only(cfg.roots.iter().cloned())
        .resolve(&cfg.server_name, SocketAddr::new(ip, cfg.port))
        .no_proxy()
        .https_only(true)
        .build()
        .map_err(|e| {
            failure(format!(
                "cannot build the HTTPS client: {}",
                error_chain(&e)
            ))
        })?;
    let url = format!(
        "https://{}:{}/gather_runtime_info",
        cfg.server_name, cfg.port
    );
    let body = serde_json::to_vec(&GatherRuntimeInfoRequest {
        container_ids: Some(req.container_ids.clone()),
    })
    .map_err(|e| failure(format!("failed to marshal request: {e}")))?;
    let mut resp = client
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, cfg.token.clone())
        .body(body)
        .send()
        .await
        .map_err(|e| failure(format!("POST {url_for_errors}: {}", error_chain(&e))))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        return Err(NodeFailure {
            http_status: Some(status.as_u16()),
            reason: format!("received unexpected status code {status} from {url_for_errors}"),
        });
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        failure(format!(
            "unable to read response from {url_for_errors}: {}",
            error_chain(&e)
        ))
    })? {
        if buf.len() + chunk.len() > cfg.max_response_bytes {
            return Err(failure(format!(
                "response from {url_for_errors} is larger than {} bytes",
                cfg.max_response_bytes
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    decode_node_runtime_info(&buf).map_err(|e| {
        failure(format!(
            "unable to parse JSON content from {url_for_errors}: {e}"
        ))
    })
}

/// Asks one node, within the per-node timeout.
pub async fn fetch_node(cfg: &ClientConfig, req: &NodeRequest) -> NodeOutcome {
    let start = Instant::now();
    let result = match tokio::time::timeout(cfg.node_timeout, fetch_node_inner(cfg, req)).await {
        Ok(r) => r,
        Err(_) => Err(failure(format!(
            "no answer from {} within {:?} (--node-timeout)",
            display_url(&req.pod.pod_ip, cfg.port),
            cfg.node_timeout
        ))),
    };
    NodeOutcome {
        node: req.node.clone(),
        pod_ip: req.pod.pod_ip.clone(),
        containers_requested: req.container_ids.len(),
        elapsed: start.elapsed(),
        result,
    }
}

/// Asks every node, at most `concurrency` at a time. A failed node does not stop the others.
pub async fn fetch_all(cfg: &ClientConfig, requests: Vec<NodeRequest>) -> Vec<NodeOutcome> {
    let total = requests.len();
    let mut done = 0usize;
    let mut outcomes = Vec::with_capacity(total);
    let mut stream = futures::stream::iter(requests)
        .map(|req| async move { fetch_node(cfg, &req).await })
        .buffer_unordered(cfg.concurrency.max(1));
    while let Some(outcome) = stream.next().await {
        done += 1;
        match &outcome.result {
            Ok(infos) => tracing::info!(
                "runtime info: node {} answered ({} containers asked, {} with runtime info) in {:.1}s [{done}/{total}]",
                outcome.node,
                outcome.containers_requested,
                infos.len(),
                outcome.elapsed.as_secs_f64()
            ),
            Err(f) => tracing::warn!(
                "runtime info: node {} failed: {} [{done}/{total}]",
                outcome.node,
                f.reason
            ),
        }
        outcomes.push(outcome);
    }
    outcomes
}

// ---- Decoding an answer, with Go `encoding/json` semantics ----

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go matches JSON keys to struct fields exactly first, then case-insensitively.
fn lookup<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A string field: absent or `null` leave it empty; anything but a string is an error.
fn string_field(obj: &Map<String, Value>, name: &str, at: &str) -> Result<String, String> {
    match lookup(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "cannot unmarshal {} into field {name} at {at}",
            type_name(other)
        )),
    }
}

/// One container entry → its info, or `None` when Go would hold the zero struct
/// (`{}`, `null`, only empty strings). `{"runtimes": []}` is NOT zero (a non-nil slice).
fn decode_container(v: &Value, at: &str) -> Result<Option<ContainerRuntimeInfo>, String> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "cannot unmarshal {} into a container entry at {at}",
                type_name(other)
            ))
        }
    };
    let (runtimes, runtimes_set) = match lookup(obj, "runtimes") {
        None | Some(Value::Null) => (Vec::new(), false),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Null => out.push(RuntimeComponent::default()),
                    Value::Object(r) => out.push(RuntimeComponent {
                        name: string_field(r, "name", at)?,
                        version: string_field(r, "version", at)?,
                    }),
                    other => {
                        return Err(format!(
                            "cannot unmarshal {} into a runtime at {at}",
                            type_name(other)
                        ))
                    }
                }
            }
            (out, true)
        }
        Some(other) => {
            return Err(format!(
                "cannot unmarshal {} into field runtimes at {at}",
                type_name(other)
            ))
        }
    };
    let info = ContainerRuntimeInfo {
        os: string_field(obj, "os", at)?,
        os_version: string_field(obj, "osVersion", at)?,
        kind: string_field(obj, "kind", at)?,
        kind_version: string_field(obj, "kindVersion", at)?,
        kind_implementer: string_field(obj, "kindImplementer", at)?,
        runtimes,
    };
    if info.is_empty() && !runtimes_set {
        return Ok(None);
    }
    Ok(Some(info))
}

fn as_map<'a>(
    v: &'a Value,
    what: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(o) => Ok(Some(o)),
        other => Err(format!(
            "cannot unmarshal {} into {what}{at}",
            type_name(other)
        )),
    }
}

/// Parses a `NodeRuntimeInfo` answer (namespace → pod → container ID → info) into
/// flat keys, dropping empty entries as the reference does.
pub fn decode_node_runtime_info(body: &[u8]) -> Result<RuntimeInfos, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = RuntimeInfos::new();
    let Some(namespaces) = as_map(&root, "the node runtime info", "")? else {
        return Ok(out);
    };
    for (ns, pods) in namespaces {
        let Some(pods) = as_map(pods, "namespace ", ns)? else {
            continue;
        };
        for (pod, containers) in pods {
            let at = format!("{ns}/{pod}");
            let Some(containers) = as_map(containers, "pod ", &at)? else {
                continue;
            };
            for (id, entry) in containers {
                if let Some(info) = decode_container(entry, &format!("{at}/{id}"))? {
                    out.insert(
                        RuntimeKey {
                            namespace: ns.clone(),
                            pod: pod.clone(),
                            container_id: id.clone(),
                        },
                        info,
                    );
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TestGetNodeWorkloadRuntimeInfos: "valid data with single container".
    #[test]
    fn valid_data_with_single_container() {
        let body = br#"{"test-namespace":{"test-pod-1":{"cri-o://foo-1":{"os":"rhel","runtimes":[{"name":"runtime-A"}]}}}}"#;
        let got = decode_node_runtime_info(body).unwrap();
        assert_eq!(got.len(), 1);
        let info = &got[&RuntimeKey::new("test-namespace", "test-pod-1", "cri-o://foo-1")];
        assert_eq!(info.os, "rhel");
        assert_eq!(
            info.runtimes,
            vec![RuntimeComponent {
                name: "runtime-A".into(),
                version: String::new()
            }]
        );
    }

    /// "empty containers are skipped".
    #[test]
    fn empty_containers_are_skipped() {
        let body = br#"{"test-namespace":{"test-pod-1":{"cri-o://foo-1":{"os":"rhel","runtimes":[{"name":"runtime-A"}]},"cri-o://empty":{}}}}"#;
        let got = decode_node_runtime_info(body).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got.contains_key(&RuntimeKey::new(
            "test-namespace",
            "test-pod-1",
            "cri-o://foo-1"
        )));
    }

    /// "complex nested data with multiple namespaces".
    #[test]
    fn complex_nested_data() {
        let body = serde_json::json!({
            "ns-1": {
                "pod-1": {
                    "container-1": {"os": "rhel", "kind": "vm", "runtimes": [{"name": "A", "version": "1.0"}, {"name": "B", "version": "2.0"}]},
                    "container-2": {"os": "ubuntu", "runtimes": []}
                },
                "pod-2": {"container-3": {}}
            },
            "ns-2": {"pod-3": {"container-4": {"os": "fedora"}}}
        });
        let got = decode_node_runtime_info(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(got.len(), 3);
        let c1 = &got[&RuntimeKey::new("ns-1", "pod-1", "container-1")];
        assert_eq!(
            (c1.os.as_str(), c1.kind.as_str(), c1.runtimes.len()),
            ("rhel", "vm", 2)
        );
        let c2 = &got[&RuntimeKey::new("ns-1", "pod-1", "container-2")];
        assert_eq!((c2.os.as_str(), c2.runtimes.len()), ("ubuntu", 0));
        assert!(!got.contains_key(&RuntimeKey::new("ns-1", "pod-2", "container-3")));
        assert_eq!(
            got[&RuntimeKey::new("ns-2", "pod-3", "container-4")].os,
            "fedora"
        );
    }

    /// "invalid JSON data": a parse error, no result.
    #[test]
    fn invalid_json_is_an_error() {
        let e = decode_node_runtime_info(b"this is not json").unwrap_err();
        assert!(e.contains("expected"), "{e}");
        for bad in [
            &br#"[]"#[..],
            br#"{"ns": 1}"#,
            br#"{"ns": {"pod": []}}"#,
            br#"{"ns": {"pod": {"c": "x"}}}"#,
            br#"{"ns": {"pod": {"c": {"os": 5}}}}"#,
            br#"{"ns": {"pod": {"c": {"runtimes": {}}}}}"#,
            br#"{"ns": {"pod": {"c": {"runtimes": [1]}}}}"#,
            br#"{} trailing"#,
        ] {
            assert!(
                decode_node_runtime_info(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn go_zero_value_rules() {
        let body = br#"{"ns": {"pod": {
            "null": null,
            "empty-strings": {"os": "", "kind": null},
            "null-runtimes": {"runtimes": null},
            "empty-runtimes": {"runtimes": []},
            "unknown-field": {"extra": 1},
            "upper": {"OS": "rhel", "Runtimes": [null]}
        }}, "nullns": null, "ns2": {"nullpod": null}}"#;
        let got = decode_node_runtime_info(body).unwrap();
        let mut keys: Vec<_> = got.keys().map(|k| k.container_id.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["empty-runtimes", "upper"]);
        let upper = &got[&RuntimeKey::new("ns", "pod", "upper")];
        assert_eq!(upper.os, "rhel");
        assert_eq!(upper.runtimes, vec![RuntimeComponent::default()]);
        assert!(decode_node_runtime_info(b"null").unwrap().is_empty());
    }

    #[test]
    fn plan_asks_each_node_once_and_reports_nodes_without_extractor() {
        let mut ids = ContainerIdsByNode::default();
        ids.0
            .insert("n1".into(), vec!["cri-o://a".into(), "cri-o://b".into()]);
        ids.0.insert("n2".into(), vec!["cri-o://c".into()]);
        ids.0.insert("n3".into(), vec![]);
        let e = |name: &str, node: &str, ip: &str| ExtractorPod {
            namespace: "openshift-insights".into(),
            name: name.into(),
            node: node.into(),
            pod_ip: ip.into(),
        };
        let extractors = [
            e("x1", "n1", "10.0.0.1"),
            e("x1b", "n1", "10.0.0.9"),
            e("x4", "n4", "10.0.0.4"),
        ];
        let (requests, without) = plan(&ids, &extractors);
        assert_eq!(
            requests.len(),
            1,
            "n4 has no IDs, n3 has an empty list, n2 no extractor"
        );
        assert_eq!(requests[0].node, "n1");
        assert_eq!(
            requests[0].pod.pod_ip, "10.0.0.1",
            "the first listed pod of the node"
        );
        assert_eq!(requests[0].container_ids, vec!["cri-o://a", "cri-o://b"]);
        assert_eq!(without, vec!["n2"]);
    }

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            display_url("10.1.2.3", 8443),
            "https://10.1.2.3:8443/gather_runtime_info"
        );
        assert_eq!(
            display_url("fd00::1", 8443),
            "https://[fd00::1]:8443/gather_runtime_info"
        );
    }

    #[test]
    fn collector_filters_namespace_label_and_phase() {
        let filter = ExtractorFilter::new("openshift-insights", DEFAULT_SELECTOR).unwrap();
        let mk = |ns: &str, name: &str, labelled: bool, phase: &str| {
            let mut p = Pod::default();
            p.metadata.namespace = ns.into();
            p.metadata.name = name.into();
            if labelled {
                p.metadata.labels.insert(
                    "app.kubernetes.io/name".into(),
                    "insights-runtime-extractor".into(),
                );
            }
            p.status.phase = phase.into();
            p.spec.node_name = format!("node-{name}");
            p.status.pod_ip = "127.0.0.1".into();
            p
        };
        let mut c = ExtractorCollector {
            filter: &filter,
            found: vec![],
        };
        // TestGetInsightsOperatorRuntimePodIPs "some pods found".
        c.pod(mk("openshift-insights", "pod-1", true, ""));
        c.pod(mk("openshift-insights", "pod-2", true, "Running"));
        c.pod(mk("openshift-another", "pod-3", true, "Running"));
        c.pod(mk("openshift-insights", "pod-4", true, "Running"));
        c.pod(mk("openshift-insights", "pod-5", false, "Running"));
        let names: Vec<_> = c.found.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["pod-2", "pod-4"]);
        assert!(filter
            .none_running_message()
            .contains("no running pods found"));
    }
}

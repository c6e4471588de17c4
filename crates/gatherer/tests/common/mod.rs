//! Test fixtures: the testkit API server populated with pods, and real HTTPS servers on
//! distinct loopback addresses (127.0.0.2, 127.0.0.3, …) posing as extractor pods.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use gatherer::extractors::ExtractorFilter;
use gatherer::gather::{GatherSettings, PodSource, RuntimeInfoSettings};
use gatherer::pods::ListOptions;
use k8s_openapi::api::core::v1::Pod;
use runtime_info::{ContainerRuntimeInfo, GatherRuntimeInfoRequest, NodeRuntimeInfo};
use testkit::{ApiServer, CertKey, ContainerState, PodBuilder, RecordedRequest, TestCa};
use tokio::io::AsyncReadExt;

pub const SERVER_NAME: &str = "exporter.openshift-insights.svc.cluster.local";
pub const TOKEN: &str = "operator-sa-token";
pub const API_TOKEN: &str = "gatherer-api-token";
pub const EXTRACTOR_NS: &str = "openshift-insights";

/// `sha256:<64 hex>` digest number `n`.
pub fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

/// `cri-o://<64 hex>` container ID number `n`.
pub fn cid(n: u64) -> String {
    format!("cri-o://{:064x}", n + (1 << 40))
}

/// A Running workload pod with one container.
pub fn app_pod(ns: &str, name: &str, node: &str, image: u64, id: u64) -> Pod {
    PodBuilder::new(ns, name)
        .node(node)
        .container(
            "app",
            "quay.io/shop/app:1",
            &format!("quay.io/shop/app@{}", digest(image)),
            &cid(id),
            ContainerState::Running,
        )
        .build()
}

/// A Running extractor pod on `node` with IP `ip`.
pub fn extractor_pod(node: &str, ip: &str) -> Pod {
    PodBuilder::new(EXTRACTOR_NS, &format!("insights-runtime-extractor-{node}"))
        .node(node)
        .label("app.kubernetes.io/name", "insights-runtime-extractor")
        .pod_ip(ip)
        .container(
            "extractor",
            "quay.io/openshift/extractor:latest",
            &format!("quay.io/openshift/extractor@{}", digest(999_999)),
            &cid(999_000
                + u64::from(
                    ip.split('.')
                        .next_back()
                        .and_then(|s| s.parse::<u8>().ok())
                        .unwrap_or(0),
                )),
            ContainerState::Running,
        )
        .build()
}

/// How a fake extractor answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answers the IDs it knows, like the real extractor.
    Answer,
    /// Answers after a delay.
    Slow(Duration),
    /// Answers this status with a text body.
    Status(u16),
    /// 200 with a body that is not JSON.
    InvalidJson,
    /// Completes the TLS handshake, reads the request, closes the connection.
    Close,
}

/// One request received by a fake extractor.
#[derive(Clone, Debug)]
pub struct ExtractorRecord {
    pub ip: IpAddr,
    pub at: Instant,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub ids: Vec<String>,
    /// The API server's request log when this request arrived.
    pub api_log: Vec<RecordedRequest>,
}

/// What the extractors know: container ID → (node, namespace, pod, info).
pub type Knowledge = HashMap<String, (String, String, String, ContainerRuntimeInfo)>;

#[derive(Clone)]
struct ExtractorState {
    ip: IpAddr,
    node: String,
    behaviour: Behaviour,
    knowledge: Arc<Knowledge>,
    records: Arc<Mutex<Vec<ExtractorRecord>>>,
    api: Option<Arc<ApiServer>>,
}

async fn handle(State(st): State<ExtractorState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let req: Option<GatherRuntimeInfoRequest> = serde_json::from_slice(&body).ok();
    let ids = req
        .as_ref()
        .and_then(|r| r.container_ids.clone())
        .unwrap_or_default();
    st.records.lock().unwrap().push(ExtractorRecord {
        ip: st.ip,
        at: Instant::now(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        ids: ids.clone(),
        api_log: st.api.as_ref().map(|a| a.requests()).unwrap_or_default(),
    });
    if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    }
    if header("content-type").as_deref() != Some("application/json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "need JSON\n").into_response();
    }
    match req {
        None => {
            return (
                StatusCode::BAD_REQUEST,
                "{\"error\": \"Invalid JSON in request body\"}\n",
            )
                .into_response()
        }
        Some(r) if r.container_ids.is_none() => {
            return (
                StatusCode::BAD_REQUEST,
                "{\"error\": \"containerIds field is required\"}\n",
            )
                .into_response()
        }
        Some(_) => {}
    }
    match &st.behaviour {
        Behaviour::Status(code) => {
            let code = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (code, "server error\n").into_response();
        }
        Behaviour::InvalidJson => return (StatusCode::OK, "this is not json").into_response(),
        Behaviour::Slow(d) => tokio::time::sleep(*d).await,
        Behaviour::Answer | Behaviour::Close => {}
    }
    let mut answer = NodeRuntimeInfo::new();
    for id in &ids {
        if let Some((node, ns, pod, info)) = st.knowledge.get(id) {
            if node == &st.node {
                answer
                    .entry(ns.clone())
                    .or_default()
                    .entry(pod.clone())
                    .or_default()
                    .insert(id.clone(), info.anonymized());
            }
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        serde_json::to_vec(&answer).unwrap(),
    )
        .into_response()
}

/// The fake extractors of a test, all on the same port.
pub struct Extractors {
    pub port: u16,
    pub records: Arc<Mutex<Vec<ExtractorRecord>>>,
    handles: Vec<axum_server::Handle<SocketAddr>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Extractors {
    fn drop(&mut self) {
        for h in &self.handles {
            h.shutdown();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Extractors {
    pub fn records(&self) -> Vec<ExtractorRecord> {
        self.records.lock().unwrap().clone()
    }

    pub fn records_for(&self, ip: &str) -> Vec<ExtractorRecord> {
        let ip: IpAddr = ip.parse().unwrap();
        self.records().into_iter().filter(|r| r.ip == ip).collect()
    }
}

fn bind_all(ips: &[IpAddr]) -> (u16, Vec<TcpListener>) {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            for l in &listeners {
                l.set_nonblocking(true).unwrap();
            }
            return (port, listeners);
        }
    }
    panic!("could not bind one port on all of {ips:?}");
}

/// Starts one fake extractor per `(node, ip, behaviour)`, serving `cert`.
pub async fn start_extractors(
    nodes: &[(&str, &str, Behaviour)],
    cert: &CertKey,
    knowledge: Knowledge,
    api: Option<Arc<ApiServer>>,
) -> Extractors {
    testkit::install_crypto_provider();
    let ips: Vec<IpAddr> = nodes.iter().map(|(_, ip, _)| ip.parse().unwrap()).collect();
    let (port, listeners) = bind_all(&ips);
    let records = Arc::new(Mutex::new(Vec::new()));
    let knowledge = Arc::new(knowledge);
    let config = RustlsConfig::from_pem(
        cert.cert_pem.clone().into_bytes(),
        cert.key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for ((node, _, behaviour), (listener, ip)) in nodes.iter().zip(listeners.into_iter().zip(ips)) {
        let state = ExtractorState {
            ip,
            node: (*node).to_owned(),
            behaviour: behaviour.clone(),
            knowledge: knowledge.clone(),
            records: records.clone(),
            api: api.clone(),
        };
        if let Behaviour::Close = behaviour {
            tasks.push(tokio::spawn(close_server(
                listener,
                config.get_inner(),
                state,
            )));
            continue;
        }
        let app = Router::new()
            .route("/gather_runtime_info", post(handle))
            .with_state(state);
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, config.clone())
            .unwrap()
            .handle(handle.clone());
        tasks.push(tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        }));
        handles.push(handle);
    }
    Extractors {
        port,
        records,
        handles,
        tasks,
    }
}

/// Accepts TLS, reads the request head, records it, and drops the connection.
async fn close_server(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    st: ExtractorState,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let st = st.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let _ = tls.read(&mut buf).await;
            st.records.lock().unwrap().push(ExtractorRecord {
                ip: st.ip,
                at: Instant::now(),
                authorization: None,
                content_type: None,
                ids: vec![],
                api_log: vec![],
            });
            drop(tls);
        });
    }
}

/// A CA, the extractor serving certificate (for [`SERVER_NAME`]) and the files the
/// gatherer reads (CA bundle and token).
pub struct Tls {
    pub ca: TestCa,
    pub cert: CertKey,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
}

pub fn tls(dir: &Path) -> Tls {
    let ca = TestCa::new("service-ca");
    let cert = ca.issue_server(&[SERVER_NAME, "exporter.openshift-insights.svc"], &[]);
    let ca_file = dir.join("service-ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    Tls {
        ca,
        cert,
        ca_file,
        token_file,
    }
}

pub fn runtime_settings(tls: &Tls, port: u16, node_timeout: Duration) -> RuntimeInfoSettings {
    RuntimeInfoSettings {
        filter: ExtractorFilter::new(EXTRACTOR_NS, gatherer::extractors::DEFAULT_SELECTOR).unwrap(),
        port,
        ca_file: tls.ca_file.clone(),
        server_name: SERVER_NAME.to_owned(),
        token_file: tls.token_file.clone(),
        concurrency: 32,
        node_timeout,
    }
}

pub async fn api_settings(api: &ApiServer, runtime: Option<RuntimeInfoSettings>) -> GatherSettings {
    GatherSettings {
        source: PodSource::Api(api.client(API_TOKEN).await),
        runtime_info: runtime,
        list: ListOptions::default(),
    }
}

pub async fn api_server() -> Arc<ApiServer> {
    let api = ApiServer::start().await;
    api.add_user(
        API_TOKEN,
        "system:serviceaccount:openshift-insights:operator",
        &[],
    );
    Arc::new(api)
}

/// The pod-list requests (`/api/v1/pods`) the API server saw.
pub fn pod_list_requests(log: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    log.iter().filter(|r| r.path == "/api/v1/pods").collect()
}

pub fn info(os: &str, kind: &str) -> ContainerRuntimeInfo {
    ContainerRuntimeInfo {
        os: os.into(),
        kind: kind.into(),
        ..Default::default()
    }
}

/// The reference's Test_gatherWorkloadInfo invariants, checked on any produced document.
pub fn check_invariants(doc: &gatherer::output::WorkloadPods) {
    let mut total = 0;
    let mut unique = std::collections::HashSet::new();
    for ns in doc.namespaces.iter().flat_map(|m| m.values()) {
        let mut sum = ns.terminal_count + ns.ignored_count + ns.invalid_count;
        for shape in &ns.shapes {
            assert!(!shape.containers.is_empty(), "every shape has a container");
            for c in shape.init_containers.iter().chain(&shape.containers) {
                assert!(!c.image_id.is_empty(), "every container has an imageID");
                unique.insert(c.image_id.clone());
            }
            sum += shape.duplicates + 1;
        }
        assert_eq!(
            sum, ns.count,
            "Σ(duplicates+1)+terminal+invalid+ignored == count"
        );
        total += ns.count;
    }
    assert_eq!(doc.pod_count, total, "PodCount == Σ counts");
    assert_eq!(
        doc.image_count,
        unique.len(),
        "ImageCount == unique image IDs"
    );
    for image in doc.images.values() {
        assert!(!image.layer_ids.is_empty(), "every image has layers");
    }
    assert!(doc.images.len() <= doc.image_count);
}

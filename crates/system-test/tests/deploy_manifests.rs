//! The deployment manifests (`deploy/`), rendered the way `kubectl apply -k` renders them and
//! checked against the binaries they run: every document must parse into its typed Kubernetes
//! object (nothing unknown or misspelt: a typed round trip must give the document back), and the
//! objects must agree with each other and with the flags as the real clap parsers read them
//! (ports, probe paths, sockets, secrets and volumes, labels and selectors, RBAC, security
//! contexts, schedule). Both the plain base (`deploy/`) and the OpenShift overlay are checked.
//!
//! Rendering (module `kustomize`) supports the subset the manifests use, and refuses anything
//! else so that a feature it does not model cannot pass unnoticed: `resources` (files and
//! directories, recursively; files must sit under the kustomization's directory and a
//! directory may not contain one already being built, as kustomize enforces), `images`
//! (`name`, `newName`, `newTag`, `digest`), and `patches` given as a file of RFC 6902 operations
//! (`add`, `remove`, `replace`, `test`) with a `target` that must match exactly one object.
//! Strategic-merge patches are refused: their list-merge keys differ per field, and a
//! simplified merge could pass here and do something else in kustomize.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Namespace, PersistentVolumeClaim, PodSpec, Probe, Service,
    ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

type Labels = BTreeMap<String, String>;

const PART_OF: &str = "app.kubernetes.io/part-of";
const SERVING_CERT_ANNOTATION: &str = "service.beta.openshift.io/serving-cert-secret-name";
const INJECT_CA_ANNOTATION: &str = "service.beta.openshift.io/inject-cabundle";
const REQUIRED_SCC_ANNOTATION: &str = "openshift.io/required-scc";
/// Where the kubelet mounts a pod's service account token (the gatherer's `--token-file`).
const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The gatherer asks its extractors with POST only (`gatherer::extractors`).
const GATHERER_HTTP_VERB: &str = "post";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What differs between the two ways of deploying.
struct Variant {
    dir: &'static str,
    /// The CRI socket on the node.
    cri_socket_on_host: &'static str,
    /// The namespace allowed to scrape the operations port.
    metrics_namespace: &'static str,
    openshift: bool,
}

const BASE: Variant = Variant {
    dir: "deploy",
    cri_socket_on_host: "/run/containerd/containerd.sock",
    metrics_namespace: "monitoring",
    openshift: false,
};

const OPENSHIFT: Variant = Variant {
    dir: "deploy/openshift",
    cri_socket_on_host: "/run/crio/crio.sock",
    metrics_namespace: "openshift-monitoring",
    openshift: true,
};

#[test]
fn base_manifests_agree_with_the_binaries() {
    let errors = check_variant(&BASE);
    assert!(errors.is_empty(), "deploy/:\n- {}", errors.join("\n- "));
}

#[test]
fn openshift_overlay_agrees_with_the_binaries() {
    let errors = check_variant(&OPENSHIFT);
    assert!(
        errors.is_empty(),
        "deploy/openshift/:\n- {}",
        errors.join("\n- ")
    );
}

/// `kubectl apply -k deploy/` is the base itself, nothing added.
#[test]
fn deploy_root_is_the_base() {
    let root = repo_root();
    let top = kustomize::build(&root.join("deploy")).unwrap();
    let base = kustomize::build(&root.join("deploy/base")).unwrap();
    assert_eq!(top, base);
    assert_eq!(top.len(), 14, "objects in the base");
}

/// The image the manifests run: both binaries where the containers' `command` says, and the
/// non-root default user.
#[test]
fn containerfile_installs_what_the_manifests_run() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let has = |pred: &dyn Fn(&str) -> bool| lines.iter().any(|l| pred(l));
    assert!(has(&|l| l.starts_with(
        "FROM docker.io/library/rust:1.95-bookworm AS build"
    )));
    assert!(has(&|l| l.contains(
        "cargo build --release --locked -p scanner -p service -p gatherer"
    )));
    assert!(has(&|l| l == "USER 65532:65532"));
    let objects = kustomize::build(&root.join("deploy")).unwrap();
    let m = Manifests::parse(&objects).unwrap();
    let mut commands = BTreeSet::new();
    for spec in m.pod_specs() {
        for c in &spec.containers {
            commands.extend(c.command.clone().unwrap_or_default().into_iter().take(1));
        }
    }
    assert_eq!(
        commands,
        BTreeSet::from([
            "/usr/bin/runtime-extractor".to_owned(),
            "/usr/bin/runtime-extractor-serve".to_owned(),
            "/usr/bin/workload-gatherer".to_owned()
        ])
    );
    for command in &commands {
        let binary = command.rsplit('/').next().unwrap();
        let copy = format!("COPY --from=build /src/target/release/{binary} {command}");
        assert!(has(&|l| l == copy), "Containerfile lacks `{copy}`");
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

// ------------------------------------------------------------------------------------------
// Typed objects
// ------------------------------------------------------------------------------------------

/// `security.openshift.io/v1` SecurityContextConstraints (not in k8s-openapi): the fields
/// OpenShift defines, unknown ones refused.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Scc {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    allow_host_dir_volume_plugin: bool,
    #[serde(rename = "allowHostIPC")]
    allow_host_ipc: bool,
    allow_host_network: bool,
    #[serde(rename = "allowHostPID")]
    allow_host_pid: bool,
    allow_host_ports: bool,
    allow_privilege_escalation: Option<bool>,
    allow_privileged_container: bool,
    allowed_capabilities: Option<Vec<String>>,
    default_add_capabilities: Option<Vec<String>>,
    required_drop_capabilities: Option<Vec<String>>,
    priority: Option<i32>,
    read_only_root_filesystem: bool,
    run_as_user: SccStrategy,
    se_linux_context: SccStrategy,
    fs_group: SccStrategy,
    supplemental_groups: SccStrategy,
    seccomp_profiles: Option<Vec<String>>,
    volumes: Vec<String>,
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SccStrategy {
    #[serde(rename = "type")]
    type_: String,
}

#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
    claims: Vec<PersistentVolumeClaim>,
    daemon_sets: Vec<DaemonSet>,
    cron_jobs: Vec<CronJob>,
    network_policies: Vec<NetworkPolicy>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    sccs: Vec<Scc>,
    /// (kind, metadata) of every object, for the checks that apply to all.
    metas: Vec<(String, ObjectMeta, bool)>,
}

/// Parses `value` as `T` and requires the typed object to serialise back to the same document
/// (k8s-openapi ignores unknown fields, so a misspelt field would otherwise vanish silently).
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    match first_difference(&without_nulls(value), &without_nulls(&back), "") {
        None => Ok(object),
        Some(path) => Err(format!(
            "`{path}` does not survive a typed round trip (unknown, misspelt or mistyped field)"
        )),
    }
}

fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &format!("{at}/{k}")),
                _ => Some(format!("{at}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        }),
    }
}

impl Manifests {
    fn parse(objects: &[Value]) -> Result<Manifests, Vec<String>> {
        let mut m = Manifests::default();
        let mut errors = Vec::new();
        for v in objects {
            let api = v["apiVersion"].as_str().unwrap_or_default().to_owned();
            let kind = v["kind"].as_str().unwrap_or_default().to_owned();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            macro_rules! push {
                ($list:ident, $namespaced:expr) => {
                    match typed(v) {
                        Ok(o) => {
                            let meta: ObjectMeta =
                                serde_json::from_value(v["metadata"].clone()).unwrap_or_default();
                            m.metas.push((kind.clone(), meta, $namespaced));
                            m.$list.push(o);
                        }
                        Err(e) => errors.push(format!("{kind} {name}: {e}")),
                    }
                };
            }
            match (api.as_str(), kind.as_str()) {
                ("v1", "Namespace") => push!(namespaces, false),
                ("v1", "ServiceAccount") => push!(service_accounts, true),
                ("v1", "Service") => push!(services, true),
                ("v1", "ConfigMap") => push!(config_maps, true),
                ("v1", "PersistentVolumeClaim") => push!(claims, true),
                ("apps/v1", "DaemonSet") => push!(daemon_sets, true),
                ("batch/v1", "CronJob") => push!(cron_jobs, true),
                ("networking.k8s.io/v1", "NetworkPolicy") => push!(network_policies, true),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => push!(cluster_roles, false),
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    push!(cluster_role_bindings, false)
                }
                ("rbac.authorization.k8s.io/v1", "Role") => push!(roles, true),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => push!(role_bindings, true),
                ("security.openshift.io/v1", "SecurityContextConstraints") => {
                    push!(sccs, false)
                }
                _ => errors.push(format!("unknown kind {api} {kind} ({name})")),
            }
        }
        if errors.is_empty() {
            Ok(m)
        } else {
            Err(errors)
        }
    }

    fn pod_specs(&self) -> Vec<&PodSpec> {
        let ds = self
            .daemon_sets
            .iter()
            .filter_map(|d| d.spec.template.spec.as_ref());
        let cj = self
            .cron_jobs
            .iter()
            .filter_map(|c| c.spec.job_template.spec.as_ref()?.template.spec.as_ref());
        ds.chain(cj).collect()
    }
}

// ------------------------------------------------------------------------------------------
// The checks
// ------------------------------------------------------------------------------------------

/// Collects every failed check, so that one run reports them all.
#[derive(Default)]
struct Checks {
    errors: Vec<String>,
}

impl Checks {
    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.errors.push(what());
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.errors
                .push(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }

    /// `value`, or a recorded failure ("`what` is missing") and `None`: a check that cannot go
    /// on never passes silently.
    fn present<'a, T>(&mut self, what: &str, value: Option<&'a T>) -> Option<&'a T> {
        if value.is_none() {
            self.fail(format!("{what} is missing"));
        }
        value
    }

    fn fail(&mut self, what: String) {
        self.errors.push(what);
    }
}

fn check_variant(variant: &Variant) -> Vec<String> {
    check_variant_at(&repo_root(), variant)
}

/// All the checks of `variant`, on the `deploy/` directory under `root`.
fn check_variant_at(root: &Path, variant: &Variant) -> Vec<String> {
    let objects = match kustomize::build(&root.join(variant.dir)) {
        Ok(o) => o,
        Err(e) => return vec![format!("rendering failed: {e}")],
    };
    let m = match Manifests::parse(&objects) {
        Ok(m) => m,
        Err(errors) => return errors,
    };
    let mut c = Checks::default();
    check_all(&m, variant, &mut c);
    c.errors
}

fn labels(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

fn annotations(meta: &ObjectMeta) -> Labels {
    meta.annotations.clone().unwrap_or_default()
}

/// Kubernetes label-selector semantics (matchLabels and matchExpressions).
fn selects(sel: &LabelSelector, labels: &Labels) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|r| {
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" => labels.get(&r.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&r.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&r.key),
            "DoesNotExist" => !labels.contains_key(&r.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}

fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

fn container<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a Container> {
    spec.containers.iter().find(|c| c.name == name)
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a Volume> {
    spec.volumes.iter().flatten().find(|v| v.name == name)
}

/// The mount that `path` falls under in `container` (longest mount path) and the path inside
/// the volume.
fn resolve<'a>(container: &'a Container, path: &Path) -> Option<(&'a VolumeMount, PathBuf)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let rest = path.strip_prefix(&m.mount_path).ok()?;
            Some((m, rest.to_path_buf()))
        })
        .max_by_key(|(m, _)| m.mount_path.len())
}

/// The secret or ConfigMap key that appears at `rel` inside a volume with these `items`, and
/// the file's mode.
fn projected_key(items: Option<&Vec<KeyToPath>>, rel: &Path) -> Option<(String, Option<i32>)> {
    match items {
        Some(items) => items
            .iter()
            .find(|i| Path::new(&i.path) == rel)
            .map(|i| (i.key.clone(), i.mode)),
        None => {
            let s = rel.to_str()?;
            (!s.is_empty() && !s.contains('/')).then(|| (s.to_owned(), None))
        }
    }
}

/// How many sources a volume names (Kubernetes requires exactly one).
fn volume_sources(v: &Volume) -> usize {
    let Ok(Value::Object(fields)) = serde_json::to_value(v) else {
        return 0;
    };
    fields.keys().filter(|k| *k != "name").count()
}

fn volume_kind(v: &Volume) -> &'static str {
    if v.host_path.is_some() {
        "hostPath"
    } else if v.empty_dir.is_some() {
        "emptyDir"
    } else if v.secret.is_some() {
        "secret"
    } else if v.config_map.is_some() {
        "configMap"
    } else if v.projected.is_some() {
        "projected"
    } else if v.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else {
        "other"
    }
}

/// The container port a probe, Service or NetworkPolicy port refers to.
fn port_number(c: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port),
    }
}

/// Kubernetes quantities in base units (enough for cpu and memory).
fn quantity(q: &str) -> Option<f64> {
    let (num, factor) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ]
    .iter()
    .find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f)))
    .unwrap_or((q, 1.0));
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// The hours a standard five-field cron schedule fires at, if it fires at one fixed minute
/// every day of every month.
fn cron_hours(schedule: &str) -> Option<BTreeSet<u32>> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, "*", "*", "*"] = fields.as_slice() else {
        return None;
    };
    minute.parse::<u32>().ok().filter(|m| *m < 60)?;
    let mut hours = BTreeSet::new();
    for part in hour.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 23),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None if step > 1 => (r.parse().ok()?, 23),
                None => (r.parse().ok()?, r.parse().ok()?),
            },
        };
        if lo > hi || hi > 23 {
            return None;
        }
        hours.extend((lo..=hi).step_by(step as usize));
    }
    Some(hours)
}

fn check_all(m: &Manifests, variant: &Variant, c: &mut Checks) {
    // -- one namespace; everything namespaced is in it, everything carries the part-of label
    c.eq("Namespace objects", m.namespaces.len(), 1);
    let Some(ns_obj) = m.namespaces.first() else {
        return;
    };
    let ns = ns_obj.metadata.name.clone().unwrap_or_default();
    let part_of = labels(&ns_obj.metadata).get(PART_OF).cloned();
    c.that(part_of.is_some(), || {
        format!("namespace {ns} has no {PART_OF} label")
    });
    c.eq(
        "namespace pod-security enforce level (the scanner is privileged)",
        labels(&ns_obj.metadata)
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("privileged"),
    );
    for (kind, meta, namespaced) in &m.metas {
        let name = meta.name.clone().unwrap_or_default();
        c.that(!name.is_empty(), || format!("a {kind} has no name"));
        let want = namespaced.then(|| ns.clone());
        c.eq(
            &format!("namespace of {kind} {name}"),
            meta.namespace.clone(),
            want,
        );
        c.eq(
            &format!("{PART_OF} label of {kind} {name}"),
            labels(meta).get(PART_OF),
            part_of.as_ref(),
        );
    }
    if variant.openshift {
        c.eq(
            "OpenShift pod-security label sync",
            labels(&ns_obj.metadata)
                .get("security.openshift.io/scc.podSecurityLabelSync")
                .map(String::as_str),
            Some("false"),
        );
    }

    c.eq("DaemonSets", m.daemon_sets.len(), 1);
    c.eq("CronJobs", m.cron_jobs.len(), 1);
    c.eq("Services", m.services.len(), 1);
    c.eq("NetworkPolicies", m.network_policies.len(), 1);
    let (Some(ds), Some(cj), Some(svc), Some(np)) = (
        m.daemon_sets.first(),
        m.cron_jobs.first(),
        m.services.first(),
        m.network_policies.first(),
    ) else {
        return;
    };
    let Some(ex) = check_extractor(m, ds, variant, c) else {
        return;
    };
    let Some(ga) = check_gatherer(m, cj, &ex, variant, c) else {
        return;
    };
    check_service(svc, &ex, &ga, variant, c);
    check_network_policy(np, &ex, &ga, variant, c);
    check_rbac(m, &ns, &ex, &ga, variant, c);
    check_workload_hardening(m, c);
    check_images(m, c);
}

/// What the checks of the other objects need to know about the extractor pods.
struct Extractor {
    pod_labels: Labels,
    service_account: String,
    serve: Container,
    listen: SocketAddr,
    health: SocketAddr,
    allow_users: Vec<String>,
    tls_secret: String,
    scc: Option<String>,
    volume_kinds: BTreeSet<&'static str>,
}

fn check_extractor(
    m: &Manifests,
    ds: &DaemonSet,
    v: &Variant,
    c: &mut Checks,
) -> Option<Extractor> {
    let spec = &ds.spec;
    let template = &spec.template;
    let pod_labels = template.metadata.as_ref().map(labels).unwrap_or_default();
    c.that(selects(&spec.selector, &pod_labels), || {
        "DaemonSet selector does not match its pod template's labels".into()
    });
    c.that(!selector_is_empty(&spec.selector), || {
        "DaemonSet selector is empty".into()
    });
    let pod_annotations = template
        .metadata
        .as_ref()
        .map(annotations)
        .unwrap_or_default();
    let pod = c.present("DaemonSet pod template spec", template.spec.as_ref())?;
    c.eq("extractor hostPID", pod.host_pid, Some(true));
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    c.eq("extractor containers", names, vec!["scanner", "serve"]);
    c.that(
        pod.init_containers.as_ref().is_none_or(Vec::is_empty),
        || "extractor has init containers".into(),
    );
    let (scanner, serve) = (container(pod, "scanner")?, container(pod, "serve")?);
    // The scanner container runs the privileged binary only; serve the unprivileged one.
    for (cont, binary) in [
        (scanner, "/usr/bin/runtime-extractor"),
        (serve, "/usr/bin/runtime-extractor-serve"),
    ] {
        c.eq(
            &format!("{} command", cont.name),
            cont.command.clone(),
            Some(vec![binary.to_owned()]),
        );
    }

    // -- the flags, as runtime-extractor reads them
    let parse = |cont: &Container| {
        let args = cont.args.clone().unwrap_or_default();
        scanner::cli::Cli::try_parse_from(std::iter::once("runtime-extractor".into()).chain(args))
            .map(|cli| cli.command)
    };
    let scanner_args = match parse(scanner) {
        Ok(scanner::cli::Command::Scanner(a)) => a,
        Ok(other) => {
            c.fail(format!("scanner container runs {other:?}"));
            return None;
        }
        Err(e) => {
            c.fail(format!("scanner args do not parse: {e}"));
            return None;
        }
    };
    let serve_args = match service::config::ServeCli::try_parse_from(
        std::iter::once("runtime-extractor-serve".to_owned())
            .chain(serve.args.clone().unwrap_or_default()),
    ) {
        Ok(cli) => cli.serve,
        Err(e) => {
            c.fail(format!("serve args do not parse: {e}"));
            return None;
        }
    };

    // -- privileges: the scanner is root with exactly its capabilities, serve has nothing
    let ssc = scanner.security_context.clone().unwrap_or_default();
    c.that(ssc.privileged != Some(true), || "scanner privileged".into());
    c.eq(
        "scanner allowPrivilegeEscalation",
        ssc.allow_privilege_escalation,
        Some(false),
    );
    c.eq(
        "scanner readOnlyRootFilesystem",
        ssc.read_only_root_filesystem,
        Some(true),
    );
    c.eq("scanner runAsUser", ssc.run_as_user, Some(0));
    let scaps = ssc.capabilities.clone().unwrap_or_default();
    c.eq(
        "scanner capabilities drop",
        scaps.drop.clone(),
        Some(vec!["ALL".to_owned()]),
    );
    let added: BTreeSet<String> = scaps.add.iter().flatten().cloned().collect();
    let needed: BTreeSet<String> = common::scanner_capabilities().into_iter().collect();
    c.eq("scanner capabilities add", added, needed);
    c.eq(
        "scanner seccomp",
        ssc.seccomp_profile
            .as_ref()
            .or(pod
                .security_context
                .as_ref()
                .and_then(|p| p.seccomp_profile.as_ref()))
            .map(|s| s.type_.clone()),
        Some("RuntimeDefault".to_owned()),
    );
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let serve_sc = serve.security_context.clone().unwrap_or_default();
    let serve_uid = serve_sc.run_as_user.or(pod_sc.run_as_user);
    let serve_gid = serve_sc.run_as_group.or(pod_sc.run_as_group);
    c.that(serve_uid.is_some_and(|u| u != 0), || {
        format!("serve must run as a fixed non-root uid, not {serve_uid:?}")
    });

    // -- every mount has a volume, every volume is mounted, no subPath (no secret rotation)
    let mut volume_kinds = BTreeSet::new();
    for vol in pod.volumes.iter().flatten() {
        volume_kinds.insert(volume_kind(vol));
        let used = pod.containers.iter().any(|cont| {
            cont.volume_mounts
                .iter()
                .flatten()
                .any(|vm| vm.name == vol.name)
        });
        c.that(used, || {
            format!("extractor volume {} is not mounted", vol.name)
        });
    }
    for cont in &pod.containers {
        for vm in cont.volume_mounts.iter().flatten() {
            c.that(volume(pod, &vm.name).is_some(), || {
                format!("{} mounts {} which is no volume", cont.name, vm.name)
            });
            c.that(vm.sub_path.is_none() && vm.sub_path_expr.is_none(), || {
                format!("{} mounts {} with a subPath", cont.name, vm.name)
            });
        }
    }

    // -- the scanner socket: one file in one in-memory emptyDir, seen by both containers
    let a = resolve(scanner, &scanner_args.socket);
    let b = resolve(serve, &serve_args.scanner_socket);
    match (a, b) {
        (Some((ma, ra)), Some((mb, rb))) => {
            c.that(
                ma.name == mb.name && ra == rb && !ra.as_os_str().is_empty(),
                || {
                    format!(
                        "scanner --socket {} and serve --scanner-socket {} are not the same file",
                        scanner_args.socket.display(),
                        serve_args.scanner_socket.display()
                    )
                },
            );
            c.that(ma.read_only != Some(true), || {
                "the scanner cannot create its socket (read-only mount)".into()
            });
            let kind = volume(pod, &ma.name).map(volume_kind);
            c.eq("scanner socket volume", kind, Some("emptyDir"));
        }
        _ => c.fail("the scanner socket is not on a volume both containers mount".into()),
    }
    c.that(
        scanner_args.socket_mode & 0o060 == 0o060 && scanner_args.socket_mode & 0o007 == 0,
        || {
            format!(
                "--socket-mode {:o} must give the group rw and others nothing",
                scanner_args.socket_mode
            )
        },
    );
    // The socket's group comes from the emptyDir (the pod's fsGroup, setgid): a chown would
    // need CAP_CHOWN, which the scanner does not have.
    c.that(scanner_args.socket_gid.is_none(), || {
        "scanner --socket-gid needs CAP_CHOWN; the fsGroup gives the socket's group".into()
    });
    c.that(pod_sc.fs_group.is_some(), || {
        "the pod has no fsGroup".into()
    });
    c.eq(
        "serve's group = the pod fsGroup (the socket's group)",
        serve_gid,
        pod_sc.fs_group,
    );

    // -- the CRI socket: a hostPath only the scanner mounts, the node's runtime socket
    match scanner_args.analysis.cri_socket.as_ref() {
        None => c.fail("scanner has no --cri-socket".into()),
        Some(cri) => match resolve(scanner, cri) {
            None => c.fail(format!(
                "--cri-socket {} is on no mounted volume",
                cri.display()
            )),
            Some((vm, rel)) => {
                let host = volume(pod, &vm.name).and_then(|v| v.host_path.as_ref());
                let on_host = host.map(|h| Path::new(&h.path).join(&rel));
                c.eq(
                    "CRI socket on the node",
                    on_host.as_deref(),
                    Some(Path::new(v.cri_socket_on_host)),
                );
                c.eq("CRI mount read-only", vm.read_only, Some(true));
            }
        },
    }
    for cont in &pod.containers {
        for vm in cont.volume_mounts.iter().flatten() {
            let host = volume(pod, &vm.name).is_some_and(|v| v.host_path.is_some());
            c.that(!host || cont.name == "scanner", || {
                format!("{} mounts hostPath volume {}", cont.name, vm.name)
            });
        }
    }

    // -- TLS: serve's certificate and key from one secret, key readable by serve's group only
    let mut tls_secret = String::new();
    let cert = resolve(serve, &serve_args.tls_cert);
    let key = resolve(serve, &serve_args.tls_key);
    match (cert, key) {
        (Some((mc, rc)), Some((mk, rk))) if mc.name == mk.name => {
            c.eq("TLS mount read-only", mc.read_only, Some(true));
            match volume(pod, &mc.name).and_then(|v| v.secret.as_ref()) {
                None => c.fail(format!("serve's TLS volume {} is not a secret", mc.name)),
                Some(secret) => {
                    tls_secret = secret.secret_name.clone().unwrap_or_default();
                    let items = secret.items.as_ref();
                    let ck = projected_key(items, &rc);
                    let kk = projected_key(items, &rk);
                    c.eq(
                        "--tls-cert key",
                        ck.as_ref().map(|k| k.0.as_str()),
                        Some("tls.crt"),
                    );
                    c.eq(
                        "--tls-key key",
                        kk.as_ref().map(|k| k.0.as_str()),
                        Some("tls.key"),
                    );
                    let mode = kk
                        .and_then(|k| k.1)
                        .or(secret.default_mode)
                        .unwrap_or(0o644);
                    c.that(mode & 0o044 == 0o040, || {
                        format!("TLS key mode {mode:o}: serve's group must read it, others not")
                    });
                }
            }
        }
        _ => c.fail("--tls-cert and --tls-key are not in one mounted volume".into()),
    }
    c.that(!tls_secret.is_empty(), || {
        "serve's TLS secret has no name".into()
    });

    // -- ports and probes against the listen addresses
    let (listen, health) = (serve_args.listen, serve_args.health_listen);
    c.that(listen.ip().is_unspecified() && health.ip().is_unspecified(), || {
        format!("serve listens on {listen} / {health}: pods and probes cannot reach a specific address")
    });
    c.that(listen.port() != health.port(), || {
        "API and health ports are the same".into()
    });
    let ports: BTreeSet<(Option<String>, i32, Option<String>)> = serve
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone(), p.container_port, p.protocol.clone()))
        .collect();
    let tcp = Some("TCP".to_owned());
    c.eq(
        "serve ports",
        ports,
        BTreeSet::from([
            (
                Some("https".to_owned()),
                i32::from(listen.port()),
                tcp.clone(),
            ),
            (Some("health".to_owned()), i32::from(health.port()), tcp),
        ]),
    );
    c.that(scanner.ports.as_ref().is_none_or(Vec::is_empty), || {
        "the scanner exposes ports".into()
    });
    let probe = |c: &mut Checks, what: &str, probe: Option<&Probe>, path: &str| {
        let get = probe.and_then(|p| p.http_get.as_ref());
        match get {
            None => c.fail(format!("serve has no HTTP {what} probe")),
            Some(g) => {
                c.eq(&format!("{what} probe path"), g.path.as_deref(), Some(path));
                c.eq(
                    &format!("{what} probe port"),
                    port_number(serve, &g.port),
                    Some(i32::from(health.port())),
                );
                c.that(g.scheme.as_deref().is_none_or(|s| s == "HTTP"), || {
                    format!("{what} probe scheme must be HTTP (the health port is plain HTTP)")
                });
            }
        }
    };
    probe(c, "readiness", serve.readiness_probe.as_ref(), "/readyz");
    probe(c, "liveness", serve.liveness_probe.as_ref(), "/healthz");

    // -- authentication: the Kubernetes reviews, which need the service account token
    c.eq(
        "serve --auth",
        &serve_args.auth,
        &service::config::AuthMode::Kubernetes,
    );
    c.that(pod.automount_service_account_token != Some(false), || {
        "the extractor pod gets no service account token (TokenReview needs one)".into()
    });
    let service_account = pod.service_account_name.clone().unwrap_or_default();
    c.that(
        m.service_accounts
            .iter()
            .any(|sa| sa.metadata.name.as_deref() == Some(service_account.as_str())),
        || format!("extractor service account {service_account:?} is not defined"),
    );

    // -- OpenShift: our SCC requested; plain Kubernetes: nothing OpenShift-only
    let scc = pod_annotations.get(REQUIRED_SCC_ANNOTATION).cloned();
    let priority = pod.priority_class_name.clone();
    if v.openshift {
        c.that(scc.is_some(), || {
            format!("no {REQUIRED_SCC_ANNOTATION} annotation")
        });
        c.eq(
            "priorityClassName",
            priority.as_deref(),
            Some("openshift-user-critical"),
        );
    } else {
        c.eq("base pod required SCC", scc.as_deref(), None);
        c.that(priority.is_none(), || {
            format!("base pod priority class {priority:?} (absent on plain clusters)")
        });
        c.that(m.sccs.is_empty(), || "SCC in the base".into());
    }
    Some(Extractor {
        pod_labels,
        service_account,
        serve: serve.clone(),
        listen,
        health,
        allow_users: serve_args.allow_users.clone(),
        tls_secret,
        scc,
        volume_kinds,
    })
}

/// What the checks of the other objects need to know about the gatherer pods.
struct Gatherer {
    pod_labels: Labels,
    service_account: String,
    server_name: String,
}

fn check_gatherer(
    m: &Manifests,
    cj: &CronJob,
    ex: &Extractor,
    v: &Variant,
    c: &mut Checks,
) -> Option<Gatherer> {
    let spec = &cj.spec;
    let hours = cron_hours(&spec.schedule);
    let hours: Vec<u32> = hours.into_iter().flatten().collect();
    let twice_a_day = matches!(hours.as_slice(), [a, b] if b - a == 12);
    c.that(twice_a_day, || {
        format!("CronJob schedule {:?} is not every 12 hours", spec.schedule)
    });
    c.eq(
        "concurrencyPolicy",
        spec.concurrency_policy.as_deref(),
        Some("Forbid"),
    );
    let template = &c
        .present("CronJob job template spec", spec.job_template.spec.as_ref())?
        .template;
    let pod_labels = template.metadata.as_ref().map(labels).unwrap_or_default();
    let pod = c.present("CronJob pod template spec", template.spec.as_ref())?;
    c.that(
        matches!(pod.restart_policy.as_deref(), Some("Never" | "OnFailure")),
        || format!("gatherer restartPolicy {:?}", pod.restart_policy),
    );
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    c.eq("gatherer containers", names, vec!["gatherer"]);
    let g = container(pod, "gatherer")?;
    c.eq(
        "gatherer command",
        g.command.clone(),
        Some(vec!["/usr/bin/workload-gatherer".to_owned()]),
    );
    let args = g.args.clone().unwrap_or_default();
    let a = match gatherer::cli::Args::try_parse_from(
        std::iter::once("workload-gatherer".to_owned()).chain(args),
    ) {
        Ok(a) => a,
        Err(e) => {
            c.fail(format!("gatherer args do not parse: {e}"));
            return None;
        }
    };
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    c.eq(
        "--extractor-namespace",
        a.extractor_namespace.as_str(),
        ns.as_str(),
    );
    match gatherer::selector::LabelSelector::parse(&a.extractor_selector) {
        Err(e) => c.fail(format!("--extractor-selector: {e:?}")),
        Ok(sel) => {
            c.that(sel.matches(&ex.pod_labels), || {
                "--extractor-selector misses the extractor pods".into()
            });
            c.that(!sel.matches(&pod_labels), || {
                "--extractor-selector matches the gatherer's own pods".into()
            });
        }
    }
    c.eq("--extractor-port", a.extractor_port, ex.listen.port());
    c.eq("--token-file", a.token_file.as_path(), Path::new(SA_TOKEN));
    c.that(pod.automount_service_account_token != Some(false), || {
        "the gatherer pod gets no service account token".into()
    });
    c.that(
        a.kubeconfig.is_none() && a.pods_file.is_none() && !a.no_runtime_info,
        || "the gatherer must list pods from the API and ask the extractors".into(),
    );
    let service_account = pod.service_account_name.clone().unwrap_or_default();
    c.that(
        m.service_accounts
            .iter()
            .any(|sa| sa.metadata.name.as_deref() == Some(service_account.as_str())),
        || format!("gatherer service account {service_account:?} is not defined"),
    );
    let user = format!("system:serviceaccount:{ns}:{service_account}");
    c.that(ex.allow_users.contains(&user), || {
        format!("serve --allow-user does not name {user}")
    });

    // -- the CA the gatherer trusts: where the serving certificate's issuer is published
    for vm in g.volume_mounts.iter().flatten() {
        c.that(volume(pod, &vm.name).is_some(), || {
            format!("gatherer mounts {} which is no volume", vm.name)
        });
    }
    match resolve(g, &a.extractor_ca_file) {
        None => c.fail(format!(
            "--extractor-ca-file {} is on no mounted volume",
            a.extractor_ca_file.display()
        )),
        Some((vm, rel)) => {
            let vol = volume(pod, &vm.name);
            if v.openshift {
                match vol.and_then(|v| v.config_map.as_ref()) {
                    None => {
                        c.fail("OpenShift: the CA must come from the service CA ConfigMap".into())
                    }
                    Some(cm) => {
                        let key = projected_key(cm.items.as_ref(), &rel).map(|k| k.0);
                        c.eq("CA ConfigMap key", key.as_deref(), Some("service-ca.crt"));
                        let object = m
                            .config_maps
                            .iter()
                            .find(|o| o.metadata.name.as_deref() == Some(cm.name.as_str()));
                        let injected = object
                            .map(|o| annotations(&o.metadata))
                            .and_then(|a| a.get(INJECT_CA_ANNOTATION).cloned());
                        c.eq(
                            "CA ConfigMap injection annotation",
                            injected.as_deref(),
                            Some("true"),
                        );
                    }
                }
            } else {
                match vol.and_then(|v| v.secret.as_ref()) {
                    None => c.fail("the CA must come from the serving certificate's secret".into()),
                    Some(s) => {
                        c.eq(
                            "CA secret",
                            s.secret_name.as_deref(),
                            Some(ex.tls_secret.as_str()),
                        );
                        let key = projected_key(s.items.as_ref(), &rel).map(|k| k.0);
                        c.eq("CA secret key", key.as_deref(), Some("ca.crt"));
                    }
                }
            }
        }
    }
    // Every secret any workload mounts is the serving certificate's.
    for spec in m.pod_specs() {
        for vol in spec.volumes.iter().flatten() {
            if let Some(s) = &vol.secret {
                c.eq(
                    &format!("secret of volume {}", vol.name),
                    s.secret_name.as_deref(),
                    Some(ex.tls_secret.as_str()),
                );
            }
        }
    }

    // -- the report: on a writable volume that outlives the pod (PVC) or an emptyDir
    match resolve(g, &a.output) {
        None => c.fail(format!(
            "--output {} is on no mounted volume",
            a.output.display()
        )),
        Some((vm, rel)) => {
            c.that(
                vm.read_only != Some(true) && !rel.as_os_str().is_empty(),
                || "--output is not writable".into(),
            );
            match volume(pod, &vm.name) {
                Some(vol) if vol.empty_dir.is_some() => {}
                Some(vol) => match &vol.persistent_volume_claim {
                    Some(pvc) => c.that(
                        m.claims
                            .iter()
                            .any(|o| o.metadata.name.as_deref() == Some(pvc.claim_name.as_str())),
                        || format!("PersistentVolumeClaim {} is not defined", pvc.claim_name),
                    ),
                    None => c.fail(format!("--output is on a {} volume", volume_kind(vol))),
                },
                None => {}
            }
        }
    }
    let psc = pod.security_context.clone().unwrap_or_default();
    if v.openshift {
        // restricted-v2 refuses fixed ids outside the namespace's range.
        c.that(
            psc.run_as_user.is_none() && psc.run_as_group.is_none() && psc.fs_group.is_none(),
            || "OpenShift: the gatherer pod must not fix its uid/gid/fsGroup".into(),
        );
    } else {
        c.that(psc.fs_group.is_some(), || {
            "the gatherer pod needs an fsGroup to write its report".into()
        });
    }
    Some(Gatherer {
        pod_labels,
        service_account,
        server_name: a.extractor_server_name,
    })
}

fn check_service(svc: &Service, ex: &Extractor, ga: &Gatherer, v: &Variant, c: &mut Checks) {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let Some(spec) = &svc.spec else {
        c.fail("Service has no spec".into());
        return;
    };
    c.eq(
        "Service clusterIP (headless)",
        spec.cluster_ip.as_deref(),
        Some("None"),
    );
    let sel = spec.selector.clone().unwrap_or_default();
    let matches =
        |labels: &Labels| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v));
    c.that(matches(&ex.pod_labels), || {
        "Service selector misses the extractor pods".into()
    });
    c.that(!matches(&ga.pod_labels), || {
        "Service selector matches the gatherer pods".into()
    });
    let ports: Vec<(i32, Option<i32>)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
            (p.port, port_number(&ex.serve, &target))
        })
        .collect();
    let api = i32::from(ex.listen.port());
    c.eq(
        "Service ports (port, container port)",
        ports,
        vec![(api, Some(api))],
    );
    c.that(
        [
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
        ]
        .contains(&ga.server_name),
        || {
            format!(
                "--extractor-server-name {} is not the Service's DNS name",
                ga.server_name
            )
        },
    );
    let cert = annotations(&svc.metadata)
        .get(SERVING_CERT_ANNOTATION)
        .cloned();
    let want = v.openshift.then(|| ex.tls_secret.clone());
    c.eq("serving-cert annotation", cert, want);
}

fn check_network_policy(
    np: &NetworkPolicy,
    ex: &Extractor,
    ga: &Gatherer,
    v: &Variant,
    c: &mut Checks,
) {
    let Some(spec) = &np.spec else {
        c.fail("NetworkPolicy has no spec".into());
        return;
    };
    // An absent podSelector selects every pod of the namespace.
    let pod_selector = spec.pod_selector.clone().unwrap_or_default();
    c.that(selects(&pod_selector, &ex.pod_labels), || {
        "NetworkPolicy does not select the extractor pods".into()
    });
    c.that(!selects(&pod_selector, &ga.pod_labels), || {
        "NetworkPolicy selects the gatherer pods".into()
    });
    let types = spec.policy_types.clone().unwrap_or_default();
    c.that(types.iter().any(|t| t == "Ingress"), || {
        "NetworkPolicy does not restrict ingress".into()
    });
    let (api, health) = (i32::from(ex.listen.port()), i32::from(ex.health.port()));
    let port_of = |p: &NetworkPolicyPort| -> Option<i32> {
        if p.end_port.is_some() || p.protocol.as_deref().is_some_and(|x| x != "TCP") {
            return None;
        }
        port_number(&ex.serve, p.port.as_ref()?)
    };
    let mut api_allowed = false;
    let mut metrics_from = Vec::new();
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let peers = rule.from.clone().unwrap_or_default();
        let ports: Vec<Option<i32>> = rule.ports.iter().flatten().map(port_of).collect();
        c.that(!peers.is_empty(), || {
            format!("ingress rule {i} admits every source")
        });
        c.that(!ports.is_empty(), || {
            format!("ingress rule {i} opens every port")
        });
        for p in &ports {
            c.that(*p == Some(api) || *p == Some(health), || {
                format!("ingress rule {i} opens port {p:?}")
            });
        }
        if ports.contains(&Some(api)) {
            api_allowed = true;
            for peer in &peers {
                let ok = peer.ip_block.is_none()
                    && peer.namespace_selector.is_none()
                    && peer
                        .pod_selector
                        .as_ref()
                        .is_some_and(|s| !selector_is_empty(s) && selects(s, &ga.pod_labels));
                c.that(ok, || format!("ingress rule {i} admits the API port from something else than the gatherer"));
            }
        } else {
            metrics_from.extend(peers.iter().filter_map(|p| p.namespace_selector.clone()));
        }
    }
    c.that(api_allowed, || {
        "no ingress rule admits the gatherer to the API port".into()
    });
    let monitoring = Labels::from([(
        "kubernetes.io/metadata.name".to_owned(),
        v.metrics_namespace.to_owned(),
    )]);
    c.that(metrics_from.iter().any(|s| selects(s, &monitoring)), || {
        format!(
            "the health/metrics port is not open to namespace {}",
            v.metrics_namespace
        )
    });
    if types.iter().any(|t| t == "Egress") {
        let mut open = BTreeSet::new();
        for rule in spec.egress.iter().flatten() {
            if rule.to.as_ref().is_none_or(Vec::is_empty) {
                for p in rule.ports.iter().flatten() {
                    if let Some(IntOrString::Int(n)) = &p.port {
                        open.insert(*n);
                    }
                }
            }
        }
        c.that(open.contains(&443) && open.contains(&6443), || {
            format!("egress to the API server (443 and 6443) is not open: {open:?}")
        });
    }
}

/// A permission the code needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Resource {
        group: &'static str,
        resource: &'static str,
        verb: &'static str,
        name: Option<String>,
    },
    Url {
        path: &'static str,
        verb: &'static str,
    },
}

fn rule_grants(rule: &PolicyRule, need: &Need) -> bool {
    let has = |list: &Option<Vec<String>>, x: &str| list.iter().flatten().any(|v| v == x);
    match need {
        Need::Resource {
            group,
            resource,
            verb,
            name,
        } => {
            has(&rule.api_groups, group)
                && has(&rule.resources, resource)
                && rule.verbs.iter().any(|v| v == verb)
                && match (&rule.resource_names, name) {
                    (None, _) => true,
                    (Some(names), Some(n)) => names.contains(n),
                    (Some(names), None) => names.is_empty(),
                }
        }
        Need::Url { path, verb } => {
            has(&rule.non_resource_urls, path) && rule.verbs.iter().any(|v| v == verb)
        }
    }
}

/// Every single permission a rule grants: (verb, resource.group) or (verb, URL).
fn rule_grants_each(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in rule.non_resource_urls.iter().flatten() {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: Some(vec![url.clone()]),
                ..PolicyRule::default()
            });
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                out.push(PolicyRule {
                    verbs: vec![verb.clone()],
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    resource_names: rule.resource_names.clone(),
                    non_resource_urls: None,
                });
            }
        }
    }
    out
}

fn check_rbac(m: &Manifests, ns: &str, ex: &Extractor, ga: &Gatherer, v: &Variant, c: &mut Checks) {
    let res = |group, resource, verb| Need::Resource {
        group,
        resource,
        verb,
        name: None,
    };
    let mut needs: BTreeMap<&str, Vec<Need>> = BTreeMap::new();
    needs.insert(
        ex.service_account.as_str(),
        vec![
            res("authentication.k8s.io", "tokenreviews", "create"),
            res("authorization.k8s.io", "subjectaccessreviews", "create"),
        ],
    );
    let gatherer_needs = needs.entry(ga.service_account.as_str()).or_default();
    // GET /api/v1/pods (all namespaces) and the extractor pods of one namespace.
    gatherer_needs.push(res("", "pods", "list"));
    // What serve's SubjectAccessReview asks about the gatherer.
    gatherer_needs.push(Need::Url {
        path: service::auth::API_PATH,
        verb: GATHERER_HTTP_VERB,
    });
    if v.openshift {
        gatherer_needs.push(res("image.openshift.io", "images", "get"));
        needs
            .entry(ex.service_account.as_str())
            .or_default()
            .push(Need::Resource {
                group: "security.openshift.io",
                resource: "securitycontextconstraints",
                verb: "use",
                name: ex.scc.clone(),
            });
    }
    // Only cluster-wide grants: every need above is cluster-wide (or a non-resource URL).
    c.that(m.roles.is_empty() && m.role_bindings.is_empty(), || {
        "namespaced Roles/RoleBindings are not expected".into()
    });
    let rules_of = |sa: &str| -> Vec<(String, PolicyRule)> {
        let mut out = Vec::new();
        for b in &m.cluster_role_bindings {
            let subject = b.subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ns)
            });
            if !subject || b.role_ref.kind != "ClusterRole" {
                continue;
            }
            let role = m
                .cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str()));
            for rule in role.and_then(|r| r.rules.clone()).unwrap_or_default() {
                out.push((b.role_ref.name.clone(), rule));
            }
        }
        out
    };
    for b in &m.cluster_role_bindings {
        let name = b.metadata.name.clone().unwrap_or_default();
        c.that(
            b.role_ref.kind == "ClusterRole"
                && m.cluster_roles
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())),
            || format!("ClusterRoleBinding {name} refers to a missing role"),
        );
        for s in b.subjects.iter().flatten() {
            let known = s.kind == "ServiceAccount"
                && s.namespace.as_deref() == Some(ns)
                && m.service_accounts
                    .iter()
                    .any(|sa| sa.metadata.name.as_deref() == Some(s.name.as_str()));
            c.that(known, || {
                format!(
                    "ClusterRoleBinding {name} binds {} {}, which is not ours",
                    s.kind, s.name
                )
            });
        }
    }
    for (sa, wanted) in &needs {
        let rules = rules_of(sa);
        for need in wanted {
            c.that(rules.iter().any(|(_, r)| rule_grants(r, need)), || {
                format!("{sa} lacks {need:?}")
            });
        }
        // Least privilege: nothing granted that the code does not use, and a need for one
        // named object (the SCC) granted for that object only.
        for (role, rule) in &rules {
            for one in rule_grants_each(rule) {
                let needed = wanted.iter().any(|need| {
                    let named = match need {
                        Need::Resource { name: Some(n), .. } => {
                            one.resource_names.as_deref() == Some(std::slice::from_ref(n))
                        }
                        _ => true,
                    };
                    named && rule_grants(&one, need)
                });
                c.that(needed, || {
                    format!("{role} grants {sa} {one:?}, which the code does not use")
                });
            }
        }
    }
    for role in &m.cluster_roles {
        for rule in role.rules.iter().flatten() {
            let wild = rule
                .verbs
                .iter()
                .chain(rule.api_groups.iter().flatten())
                .chain(rule.resources.iter().flatten())
                .chain(rule.non_resource_urls.iter().flatten())
                .any(|x| x.contains('*'));
            c.that(!wild, || {
                format!("ClusterRole {:?} uses a wildcard", role.metadata.name)
            });
        }
    }
    // OpenShift: the SCC the extractor pod asks for lets it run, and is granted only by RBAC.
    if v.openshift {
        c.eq("SCCs", m.sccs.len(), 1);
        if let Some(scc) = m.sccs.first() {
            c.eq(
                "required SCC",
                ex.scc.as_deref(),
                scc.metadata.name.as_deref(),
            );
            c.that(
                scc.allow_host_pid && scc.allow_host_dir_volume_plugin,
                || "SCC must allow hostPID and hostPath".into(),
            );
            c.that(!scc.allow_privileged_container, || {
                "SCC allows privileged containers".into()
            });
            let allowed: BTreeSet<String> =
                scc.allowed_capabilities.iter().flatten().cloned().collect();
            let needed: BTreeSet<String> = common::scanner_capabilities().into_iter().collect();
            c.eq("SCC allowedCapabilities", allowed, needed);
            c.that(
                !scc.allow_host_network && !scc.allow_host_ipc && !scc.allow_host_ports,
                || "SCC allows host network, IPC or ports".into(),
            );
            c.eq(
                "SCC allowPrivilegeEscalation",
                scc.allow_privilege_escalation,
                Some(false),
            );
            let mut needed = ex.volume_kinds.clone();
            needed.insert("projected"); // the service account token
            let have: BTreeSet<&str> = scc.volumes.iter().map(String::as_str).collect();
            c.eq("SCC volumes", have, needed);
            for (what, s) in [
                ("runAsUser", &scc.run_as_user),
                ("fsGroup", &scc.fs_group),
                ("supplementalGroups", &scc.supplemental_groups),
                ("seLinuxContext", &scc.se_linux_context),
            ] {
                c.eq(&format!("SCC {what}"), s.type_.as_str(), "RunAsAny");
            }
            c.that(
                scc.users.as_ref().is_none_or(Vec::is_empty)
                    && scc.groups.as_ref().is_none_or(Vec::is_empty),
                || "SCC is granted by users/groups; grant it through RBAC only".into(),
            );
        }
    }
}

/// Every container of every workload: requests and limits, and no privileges except the
/// scanner's.
fn check_workload_hardening(m: &Manifests, c: &mut Checks) {
    for spec in m.pod_specs() {
        for vol in spec.volumes.iter().flatten() {
            let n = volume_sources(vol);
            c.that(n == 1, || format!("volume {} has {n} sources", vol.name));
        }
        c.that(
            spec.host_network != Some(true) && spec.host_ipc != Some(true),
            || "a pod uses the host network or IPC".into(),
        );
        let psc = spec.security_context.clone().unwrap_or_default();
        for cont in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let name = &cont.name;
            let res = cont.resources.clone().unwrap_or_default();
            let (req, lim) = (
                res.requests.unwrap_or_default(),
                res.limits.unwrap_or_default(),
            );
            for r in ["cpu", "memory"] {
                let q = req.get(r).and_then(|q| quantity(&q.0));
                let l = lim.get(r).and_then(|q| quantity(&q.0));
                c.that(q.is_some() && l.is_some() && q <= l, || {
                    format!("{name}: {r} request {q:?} and limit {l:?}")
                });
            }
            if name == "scanner" {
                continue;
            }
            let sc = cont.security_context.clone().unwrap_or_default();
            c.that(sc.privileged != Some(true), || {
                format!("{name} is privileged")
            });
            c.eq(
                &format!("{name} allowPrivilegeEscalation"),
                sc.allow_privilege_escalation,
                Some(false),
            );
            c.eq(
                &format!("{name} readOnlyRootFilesystem"),
                sc.read_only_root_filesystem,
                Some(true),
            );
            c.eq(
                &format!("{name} runAsNonRoot"),
                sc.run_as_non_root.or(psc.run_as_non_root),
                Some(true),
            );
            let caps = sc.capabilities.clone().unwrap_or_default();
            c.that(caps.drop.iter().flatten().any(|d| d == "ALL"), || {
                format!("{name} does not drop ALL capabilities")
            });
            c.that(caps.add.as_ref().is_none_or(Vec::is_empty), || {
                format!("{name} adds capabilities")
            });
            let seccomp = sc
                .seccomp_profile
                .or(psc.seccomp_profile.clone())
                .map(|s| s.type_);
            c.eq(
                &format!("{name} seccomp"),
                seccomp.as_deref(),
                Some("RuntimeDefault"),
            );
        }
    }
}

/// One image for every container, pinned (no `latest`), set through the kustomization.
fn check_images(m: &Manifests, c: &mut Checks) {
    let images: BTreeSet<String> = m
        .pod_specs()
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|cont| cont.image.clone().unwrap_or_default())
        .collect();
    c.eq("distinct images", images.len(), 1);
    for image in &images {
        let (name, tag) = kustomize::split_image(image);
        c.that(
            name.contains('/')
                && (tag.starts_with('@') || (tag.starts_with(':') && tag != ":latest")),
            || format!("image {image:?} is not a pinned registry reference"),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Rendering: the kustomize subset described at the top
// ------------------------------------------------------------------------------------------

mod kustomize {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Kustomization {
        api_version: String,
        kind: String,
        #[serde(default)]
        resources: Vec<String>,
        #[serde(default)]
        patches: Vec<Patch>,
        #[serde(default)]
        images: Vec<Image>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        path: String,
        target: Target,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Target {
        #[serde(default)]
        group: String,
        version: String,
        kind: String,
        name: String,
        namespace: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Image {
        name: String,
        new_name: Option<String>,
        new_tag: Option<String>,
        digest: Option<String>,
    }

    pub fn build(dir: &Path) -> Result<Vec<Value>, String> {
        build_in(dir, &[])
    }

    fn read_yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = Vec::new();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", path.display()))?;
            if !v.is_null() {
                out.push(v);
            }
        }
        Ok(out)
    }

    fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
        let p = root
            .join(rel)
            .canonicalize()
            .map_err(|e| format!("{}/{rel}: {e}", root.display()))?;
        // kustomize's default load restrictor: files only from under the kustomization.
        if p.starts_with(root) {
            Ok(p)
        } else {
            Err(format!("{rel} is outside {}", root.display()))
        }
    }

    fn build_in(dir: &Path, building: &[PathBuf]) -> Result<Vec<Value>, String> {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(b) = building.iter().find(|b| b.starts_with(&root)) {
            return Err(format!(
                "cycle: {} contains {}, which is being built",
                root.display(),
                b.display()
            ));
        }
        let present: Vec<&str> = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .into_iter()
            .filter(|n| root.join(n).exists())
            .collect();
        if present != ["kustomization.yaml"] {
            return Err(format!(
                "{}: kustomization files {present:?}",
                root.display()
            ));
        }
        let docs = read_yaml_documents(&root.join("kustomization.yaml"))?;
        let [doc] = docs.as_slice() else {
            return Err(format!("{}: one document expected", root.display()));
        };
        let k: Kustomization = serde_json::from_value(doc.clone())
            .map_err(|e| format!("{}/kustomization.yaml: {e}", root.display()))?;
        if k.api_version != "kustomize.config.k8s.io/v1beta1" || k.kind != "Kustomization" {
            return Err(format!("{}: not a Kustomization", root.display()));
        }
        let mut building = building.to_vec();
        building.push(root.clone());
        let mut objects = Vec::new();
        for r in &k.resources {
            let p = root
                .join(r)
                .canonicalize()
                .map_err(|e| format!("{}/{r}: {e}", root.display()))?;
            if p.is_dir() {
                objects.extend(build_in(&p, &building)?);
            } else {
                objects.extend(read_yaml_documents(&inside(&root, r)?)?);
            }
        }
        let mut ids = BTreeSet::new();
        for o in &objects {
            let id = (
                o["apiVersion"].as_str().map(str::to_owned),
                o["kind"].as_str().map(str::to_owned),
                o["metadata"]["namespace"].as_str().map(str::to_owned),
                o["metadata"]["name"].as_str().map(str::to_owned),
            );
            if !ids.insert(id.clone()) {
                return Err(format!("{}: {id:?} appears twice", root.display()));
            }
        }
        for patch in &k.patches {
            let ops = read_yaml_documents(&inside(&root, &patch.path)?)?;
            let [Value::Array(ops)] = ops.as_slice() else {
                return Err(format!(
                    "{}: only JSON 6902 patches (a list of operations) are supported",
                    patch.path
                ));
            };
            let t = &patch.target;
            let api = if t.group.is_empty() {
                t.version.clone()
            } else {
                format!("{}/{}", t.group, t.version)
            };
            let mut targets: Vec<&mut Value> = objects
                .iter_mut()
                .filter(|o| {
                    o["apiVersion"] == api.as_str()
                        && o["kind"] == t.kind.as_str()
                        && o["metadata"]["name"] == t.name.as_str()
                        && t.namespace
                            .as_ref()
                            .is_none_or(|ns| o["metadata"]["namespace"] == ns.as_str())
                })
                .collect();
            // kustomize ignores a target that matches nothing; a typo would drop the patch.
            let [target] = targets.as_mut_slice() else {
                return Err(format!(
                    "{}: the target matches {} objects",
                    patch.path,
                    targets.len()
                ));
            };
            apply_json_patch(target, ops).map_err(|e| format!("{}: {e}", patch.path))?;
        }
        for image in &k.images {
            for o in &mut objects {
                set_images(o, image);
            }
        }
        Ok(objects)
    }

    /// `name[:tag]` / `name@digest` → (name, ":tag" / "@digest" / "").
    pub fn split_image(image: &str) -> (&str, &str) {
        if let Some(at) = image.find('@') {
            return image.split_at(at);
        }
        let slash = image.rfind('/').map_or(0, |i| i + 1);
        match image[slash..].find(':') {
            Some(colon) => image.split_at(slash + colon),
            None => (image, ""),
        }
    }

    fn set_images(v: &mut Value, image: &Image) {
        match v {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == "containers" || key == "initContainers" {
                        for cont in child.as_array_mut().into_iter().flatten() {
                            if let Some(Value::String(s)) = cont.get_mut("image") {
                                let (name, rest) = split_image(s);
                                if name == image.name {
                                    let name =
                                        image.new_name.clone().unwrap_or_else(|| name.to_owned());
                                    let rest = match (&image.digest, &image.new_tag) {
                                        (Some(d), _) => format!("@{d}"),
                                        (None, Some(t)) => format!(":{t}"),
                                        (None, None) => rest.to_owned(),
                                    };
                                    *s = format!("{name}{rest}");
                                }
                            }
                        }
                    } else {
                        set_images(child, image);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| set_images(i, image)),
            _ => {}
        }
    }
}

/// RFC 6902 `add`, `remove`, `replace` and `test` over RFC 6901 pointers.
/// RFC 6902 `ops` applied to `doc` (all or nothing), by the `json-patch` crate.
fn apply_json_patch(doc: &mut Value, ops: &[Value]) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.to_vec())).map_err(|e| e.to_string())?;
    json_patch::patch(doc, &patch).map_err(|e| e.to_string())
}

// ------------------------------------------------------------------------------------------
// The renderer and the helpers, on their own
// ------------------------------------------------------------------------------------------

#[test]
fn json_patch_follows_rfc_6902() {
    let mut doc = serde_json::json!({"a": {"b/c": 1, "l": [1, 2]}});
    let ops = serde_json::json!([
        {"op": "test", "path": "/a/b~1c", "value": 1},
        {"op": "add", "path": "/a/l/1", "value": 9},
        {"op": "add", "path": "/a/l/-", "value": 3},
        {"op": "replace", "path": "/a/b~1c", "value": 2},
        {"op": "add", "path": "/a/new", "value": {"x": true}},
        {"op": "remove", "path": "/a/l/0"}
    ]);
    apply_json_patch(&mut doc, ops.as_array().unwrap()).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"a": {"b/c": 2, "l": [9, 2, 3], "new": {"x": true}}})
    );
    for bad in [
        serde_json::json!([{"op": "test", "path": "/a/b~1c", "value": 1}]),
        serde_json::json!([{"op": "replace", "path": "/a/missing", "value": 1}]),
        serde_json::json!([{"op": "remove", "path": "/a/l/7"}]),
        serde_json::json!([{"op": "add", "path": "/a/l/01", "value": 1}]),
    ] {
        let mut d = doc.clone();
        assert!(
            apply_json_patch(&mut d, bad.as_array().unwrap()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn renderer_refuses_what_kustomize_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let head = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    write(
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    write(
        "base/kustomization.yaml",
        &format!("{head}resources: [cm.yaml]\n"),
    );
    // An overlay inside its base: kustomize reports a cycle.
    write(
        "base/inner/kustomization.yaml",
        &format!("{head}resources: [..]\n"),
    );
    assert!(kustomize::build(&dir.path().join("base/inner"))
        .unwrap_err()
        .contains("cycle"));
    // A file from outside the kustomization's directory.
    write(
        "other/kustomization.yaml",
        &format!("{head}resources: [../base/cm.yaml]\n"),
    );
    assert!(kustomize::build(&dir.path().join("other"))
        .unwrap_err()
        .contains("outside"));
    // A patch whose target matches nothing.
    write(
        "ov/kustomization.yaml",
        &format!("{head}resources: [../base]\npatches:\n  - path: p.yaml\n    target: {{version: v1, kind: ConfigMap, name: y}}\n"),
    );
    write("ov/p.yaml", "- op: add\n  path: /data\n  value: {k: v}\n");
    assert!(kustomize::build(&dir.path().join("ov"))
        .unwrap_err()
        .contains("matches 0"));
    // ... and one that matches.
    write(
        "ov/kustomization.yaml",
        &format!("{head}resources: [../base]\npatches:\n  - path: p.yaml\n    target: {{version: v1, kind: ConfigMap, name: x}}\n"),
    );
    let out = kustomize::build(&dir.path().join("ov")).unwrap();
    assert_eq!(out[0]["data"], serde_json::json!({"k": "v"}));
    // Fields this renderer does not model are refused, not ignored.
    write(
        "ov/kustomization.yaml",
        &format!("{head}resources: [../base]\nnamePrefix: a-\n"),
    );
    assert!(kustomize::build(&dir.path().join("ov")).is_err());
}

#[test]
fn typed_round_trip_catches_misspelt_fields() {
    let ok = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}});
    assert!(typed::<ServiceAccount>(&ok).is_ok());
    let bad = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "lables": {}}});
    assert_eq!(
        typed::<ServiceAccount>(&bad).unwrap_err(),
        "`/metadata/lables` does not survive a typed round trip (unknown, misspelt or mistyped field)"
    );
}

#[test]
fn helpers() {
    assert_eq!(cron_hours("0 */12 * * *"), Some(BTreeSet::from([0, 12])));
    assert_eq!(cron_hours("30 3,15 * * *"), Some(BTreeSet::from([3, 15])));
    assert_eq!(cron_hours("0 1-23/12 * * *"), Some(BTreeSet::from([1, 13])));
    assert_eq!(cron_hours("0 */6 * * *").map(|h| h.len()), Some(4));
    assert_eq!(cron_hours("0 */12 * * 1"), None);
    assert_eq!(cron_hours("*/5 */12 * * *"), None);
    assert_eq!(quantity("500m"), Some(0.5));
    assert_eq!(quantity("64Mi"), Some(64.0 * 1024.0 * 1024.0));
    assert_eq!(quantity("1"), Some(1.0));
    assert_eq!(
        kustomize::split_image("reg:5000/a/b:1.0"),
        ("reg:5000/a/b", ":1.0")
    );
    assert_eq!(
        kustomize::split_image("a/b@sha256:00"),
        ("a/b", "@sha256:00")
    );
    assert_eq!(kustomize::split_image("reg:5000/a"), ("reg:5000/a", ""));
}

// ------------------------------------------------------------------------------------------
// Each check can fail: one-edit mutations of a copy of deploy/, each of which must be caught
// ------------------------------------------------------------------------------------------

struct Mutation {
    /// Under deploy/.
    file: &'static str,
    from: &'static str,
    to: &'static str,
    variant: &'static Variant,
    /// A piece of the error it must cause.
    caught_as: &'static str,
}

const fn mutation(
    file: &'static str,
    from: &'static str,
    to: &'static str,
    variant: &'static Variant,
    caught_as: &'static str,
) -> Mutation {
    Mutation {
        file,
        from,
        to,
        variant,
        caught_as,
    }
}

#[rustfmt::skip]
const MUTATIONS: &[Mutation] = &[
    // serve's flags against ports, probes, Service and gatherer
    mutation("base/daemonset.yaml", "--listen=[::]:8443", "--listen=[::]:9443", &BASE, "serve ports"),
    mutation("base/daemonset.yaml", "--health-listen=[::]:8081", "--health-listen=127.0.0.1:8081", &BASE, "cannot reach"),
    mutation("base/daemonset.yaml", "path: /readyz", "path: /ready", &BASE, "readiness probe path"),
    mutation("base/daemonset.yaml", "path: /healthz\n              port: health", "path: /healthz\n              port: https", &BASE, "liveness probe port"),
    mutation("base/daemonset.yaml", "- --auth=kubernetes", "- --auth=token-file=/t", &BASE, "serve --auth"),
    mutation("base/daemonset.yaml", "\n            - --allow-user=system:serviceaccount:runtime-insights:workload-gatherer", "", &BASE, "--allow-user does not name"),
    mutation("base/daemonset.yaml", "- --request-timeout=100s", "- --request-timeout=soon", &BASE, "serve args do not parse"),
    // the scanner socket and its group
    mutation("base/daemonset.yaml", "--scanner-socket=/run/runtime-extractor/scanner.sock", "--scanner-socket=/run/runtime-extractor/s.sock", &BASE, "not the same file"),
    mutation("base/daemonset.yaml", "- --socket-mode=660\n", "- --socket-mode=660\n            - --socket-gid=65532\n", &BASE, "needs CAP_CHOWN"),
    mutation("base/daemonset.yaml", "fsGroup: 65532", "fsGroup: 1000", &BASE, "the socket's group"),
    mutation("base/daemonset.yaml", "runAsGroup: 65532", "runAsGroup: 1000", &BASE, "serve's group"),
    mutation("base/daemonset.yaml", "- --socket-mode=660", "- --socket-mode=666", &BASE, "--socket-mode"),
    mutation("base/daemonset.yaml", "medium: Memory\n            sizeLimit: 1Mi", "medium: Memory\n            sizeLimit: 1Mi\n          hostPath:\n            path: /run/x", &BASE, "2 sources"),
    // the CRI socket
    mutation("base/daemonset.yaml", "path: /run/containerd\n            type: Directory", "path: /run/docker\n            type: Directory", &BASE, "CRI socket on the node"),
    mutation("base/daemonset.yaml", "- --cri-socket=/run/containerd/containerd.sock", "- --cri-socket=/run/cri.sock", &BASE, "is on no mounted volume"),
    mutation("base/daemonset.yaml", "mountPath: /run/containerd\n              readOnly: true", "mountPath: /run/containerd", &BASE, "CRI mount read-only"),
    // privileges
    mutation("base/daemonset.yaml", "allowPrivilegeEscalation: false\n            privileged: false", "allowPrivilegeEscalation: false\n            privileged: true", &BASE, "scanner privileged"),
    mutation("base/daemonset.yaml", "add: [SYS_ADMIN, SYS_CHROOT, SYS_PTRACE, DAC_READ_SEARCH, SETUID, SETGID, SETPCAP]", "add: [SYS_ADMIN, SYS_CHROOT, SYS_PTRACE, DAC_READ_SEARCH, SETUID, SETGID, SETPCAP, NET_ADMIN]", &BASE, "scanner capabilities add"),
    mutation("base/daemonset.yaml", "add: [SYS_ADMIN, SYS_CHROOT, SYS_PTRACE, DAC_READ_SEARCH, SETUID, SETGID, SETPCAP]", "add: [SYS_ADMIN, SYS_CHROOT, SYS_PTRACE, SETUID, SETGID, SETPCAP]", &BASE, "scanner capabilities add"),
    mutation("base/daemonset.yaml", "drop: [ALL]", "drop: [NET_RAW]", &BASE, "scanner capabilities drop"),
    mutation("base/daemonset.yaml", "seccompProfile: {type: RuntimeDefault}", "seccompProfile: {type: Unconfined}", &BASE, "scanner seccomp"),
    mutation("base/daemonset.yaml", "allowPrivilegeEscalation: false\n            privileged: false", "allowPrivilegeEscalation: true\n            privileged: false", &BASE, "scanner allowPrivilegeEscalation"),
    mutation("openshift/scc.yaml", "allowPrivilegedContainer: false", "allowPrivilegedContainer: true", &OPENSHIFT, "SCC allows privileged"),
    mutation("openshift/scc.yaml", "  - DAC_READ_SEARCH\n", "", &OPENSHIFT, "SCC allowedCapabilities"),
    mutation("base/daemonset.yaml", "hostPID: true", "hostPID: false", &BASE, "hostPID"),
    mutation("base/daemonset.yaml", "privileged: false\n            allowPrivilegeEscalation: false", "privileged: true\n            allowPrivilegeEscalation: false", &BASE, "serve is privileged"),
    mutation("base/daemonset.yaml", "readOnlyRootFilesystem: true\n            runAsNonRoot: true", "readOnlyRootFilesystem: false\n            runAsNonRoot: true", &BASE, "serve readOnlyRootFilesystem"),
    mutation("base/daemonset.yaml", "drop: [\"ALL\"]", "drop: [\"NET_RAW\"]", &BASE, "serve does not drop ALL"),
    mutation("base/daemonset.yaml", "runAsNonRoot: true\n            runAsUser: 65532", "runAsNonRoot: false\n            runAsUser: 65532", &BASE, "serve runAsNonRoot"),
    mutation("base/daemonset.yaml", "seccompProfile:\n              type: RuntimeDefault", "seccompProfile:\n              type: Unconfined", &BASE, "serve seccomp"),
    // resources
    mutation("base/daemonset.yaml", "cpu: \"1\"\n              memory: 512Mi", "memory: 512Mi", &BASE, "scanner: cpu request"),
    mutation("base/daemonset.yaml", "cpu: 10m\n              memory: 32Mi", "cpu: 10m\n              memory: 320Mi", &BASE, "serve: memory request"),
    // labels, names, volumes, secrets
    mutation("base/daemonset.yaml", "        app.kubernetes.io/name: runtime-extractor\n        app.kubernetes.io/part-of", "        app.kubernetes.io/name: runtime-extractor-x\n        app.kubernetes.io/part-of", &BASE, "DaemonSet selector does not match"),
    mutation("base/daemonset.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSecond: 30", &BASE, "typed round trip"),
    mutation("base/daemonset.yaml", "- name: tls\n              mountPath", "- name: certs\n              mountPath", &BASE, "which is no volume"),
    mutation("base/daemonset.yaml", "defaultMode: 288", "defaultMode: 292", &BASE, "TLS key mode"),
    mutation("base/daemonset.yaml", "defaultMode: 288", "defaultMode: 0440", &BASE, "DaemonSet runtime-extractor"),
    mutation("base/daemonset.yaml", "- key: tls.key\n                path: tls.key", "- key: tls.key\n                path: key.pem", &BASE, "--tls-key key"),
    mutation("base/daemonset.yaml", "secretName: runtime-extractor-tls", "secretName: other-tls", &BASE, "CA secret"),
    mutation("base/daemonset.yaml", "secretName: runtime-extractor-tls", "secretName: other-tls", &OPENSHIFT, "serving-cert annotation"),
    mutation("base/daemonset.yaml", "command: [\"/usr/bin/runtime-extractor\"]\n          args:\n            - scanner", "command: [\"/usr/bin/runtime-extractr\"]\n          args:\n            - scanner", &BASE, "scanner command"),
    mutation("base/daemonset.yaml", "command: [\"/usr/bin/runtime-extractor-serve\"]", "command: [\"/usr/bin/runtime-extractor\"]", &BASE, "serve command"),
    mutation("base/daemonset.yaml", "serviceAccountName: runtime-extractor", "serviceAccountName: default", &BASE, "extractor service account"),
    // Service
    mutation("base/service.yaml", "targetPort: https", "targetPort: health", &BASE, "Service ports"),
    mutation("base/service.yaml", "  selector:\n    app.kubernetes.io/name: runtime-extractor", "  selector:\n    app.kubernetes.io/part-of: runtime-insights", &BASE, "Service selector matches the gatherer"),
    mutation("base/service.yaml", "clusterIP: None", "clusterIP: \"\"", &BASE, "headless"),
    // NetworkPolicy
    mutation("base/networkpolicy.yaml", "app.kubernetes.io/name: workload-gatherer", "app.kubernetes.io/name: someone", &BASE, "from something else than the gatherer"),
    mutation("base/networkpolicy.yaml", "port: 8443", "port: 8444", &BASE, "opens port"),
    mutation("base/networkpolicy.yaml", "        - protocol: TCP\n          port: 6443\n", "", &BASE, "egress to the API server"),
    mutation("base/networkpolicy.yaml", "kubernetes.io/metadata.name: monitoring", "kubernetes.io/metadata.name: prometheus", &BASE, "not open to namespace monitoring"),
    mutation("base/networkpolicy.yaml", "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: runtime-extractor\n", "", &BASE, "NetworkPolicy selects the gatherer pods"),
    // CronJob
    mutation("base/gatherer.yaml", "\"0 */12 * * *\"", "\"0 */6 * * *\"", &BASE, "every 12 hours"),
    mutation("base/gatherer.yaml", "concurrencyPolicy: Forbid", "concurrencyPolicy: Allow", &BASE, "concurrencyPolicy"),
    mutation("base/gatherer.yaml", "--extractor-server-name=runtime-extractor.runtime-insights.svc", "--extractor-server-name=exporter.openshift-insights.svc", &BASE, "Service's DNS name"),
    mutation("base/gatherer.yaml", "--extractor-selector=app.kubernetes.io/name=runtime-extractor", "--extractor-selector=app.kubernetes.io/part-of=runtime-insights", &BASE, "matches the gatherer's own pods"),
    mutation("base/gatherer.yaml", "--extractor-namespace=runtime-insights", "--extractor-namespace=openshift-insights", &BASE, "--extractor-namespace"),
    mutation("base/gatherer.yaml", "--extractor-port=8443", "--extractor-pot=8443", &BASE, "gatherer args do not parse"),
    mutation("base/gatherer.yaml", "- key: ca.crt", "- key: tls.crt", &BASE, "CA secret key"),
    mutation("base/gatherer.yaml", "--output=/var/lib/workload-gatherer/report.tar.gz", "--output=/tmp/report.tar.gz", &BASE, "on no mounted volume"),
    mutation("base/gatherer.yaml", "claimName: workload-gatherer-reports", "claimName: reports", &BASE, "is not defined"),
    mutation("base/gatherer.yaml", "serviceAccountName: workload-gatherer", "serviceAccountName: default", &BASE, "gatherer service account"),
    mutation("base/gatherer.yaml", "            fsGroup: 65532\n", "", &BASE, "fsGroup"),
    // RBAC
    mutation("base/rbac.yaml", "verbs: [\"list\"]", "verbs: [\"list\", \"watch\"]", &BASE, "which the code does not use"),
    mutation("base/rbac.yaml", "resources: [\"tokenreviews\"]", "resources: [\"tokenreview\"]", &BASE, "lacks"),
    mutation("base/rbac.yaml", "verbs: [\"post\"]", "verbs: [\"get\"]", &BASE, "lacks"),
    mutation("base/rbac.yaml", "resources: [\"pods\"]", "resources: [\"*\"]", &BASE, "wildcard"),
    mutation("base/serviceaccounts.yaml", "name: workload-gatherer\n  namespace: runtime-insights", "name: workload-gatherer\n  namespace: default", &BASE, "namespace of ServiceAccount"),
    // namespace, image
    mutation("base/namespace.yaml", "enforce: privileged", "enforce: baseline", &BASE, "pod-security"),
    mutation("base/kustomization.yaml", "newTag: \"0.1.0\"", "newTag: latest", &BASE, "pinned"),
    mutation("base/kustomization.yaml", "  - name: runtime-insights\n", "  - name: runtime-insight\n", &BASE, "pinned"),
    // the OpenShift overlay
    mutation("openshift/patches/daemonset.yaml", "value: --cri-socket=/run/crio/crio.sock", "value: --cri-socket=/run/crio/other.sock", &OPENSHIFT, "CRI socket on the node"),
    mutation("openshift/patches/daemonset.yaml", "  value: runtime-insights-extractor", "  value: privileged", &OPENSHIFT, "required SCC"),
    mutation("openshift/patches/daemonset.yaml", "  path: /spec/template/spec/containers/0/name\n  value: scanner", "  path: /spec/template/spec/containers/0/name\n  value: serve", &OPENSHIFT, "rendering failed"),
    mutation("openshift/scc.yaml", "  - projected\n", "", &OPENSHIFT, "SCC volumes"),
    mutation("openshift/scc.yaml", "allowHostPID: true", "allowHostPID: false", &OPENSHIFT, "hostPID"),
    mutation("openshift/scc.yaml", "users: []", "users: [\"system:serviceaccount:runtime-insights:runtime-extractor\"]", &OPENSHIFT, "RBAC only"),
    mutation("openshift/rbac.yaml", "resourceNames: [\"runtime-insights-extractor\"]", "resourceNames: [\"privileged\"]", &OPENSHIFT, "lacks"),
    mutation("openshift/rbac.yaml", "resources: [\"images\"]", "resources: [\"imagestreams\"]", &OPENSHIFT, "lacks"),
    mutation("openshift/patches/cronjob.yaml", "key: service-ca.crt", "key: ca.crt", &OPENSHIFT, "CA ConfigMap key"),
    mutation("openshift/patches/cronjob.yaml", "- op: remove\n  path: /spec/jobTemplate/spec/template/spec/securityContext/runAsUser\n", "", &OPENSHIFT, "must not fix its uid"),
    mutation("openshift/service-ca-bundle.yaml", "inject-cabundle: \"true\"", "inject-cabundle: \"false\"", &OPENSHIFT, "injection annotation"),
    mutation("openshift/patches/service.yaml", "serving-cert-secret-name: runtime-extractor-tls", "serving-cert-secret-name: exporter-tls", &OPENSHIFT, "serving-cert annotation"),
    mutation("openshift/patches/networkpolicy.yaml", "openshift-monitoring", "monitoring", &OPENSHIFT, "not open to namespace openshift-monitoring"),
    mutation("openshift/patches/namespace.yaml", "value: \"false\"", "value: \"true\"", &OPENSHIFT, "label sync"),
    mutation("openshift/kustomization.yaml", "name: workload-gatherer", "name: workload-gathere", &OPENSHIFT, "matches 0 objects"),
    mutation("openshift/kustomization.yaml", "  - ../base\n", "  - ..\n", &OPENSHIFT, "cycle"),
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_mutation_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("deploy"), &tmp.path().join("deploy"));
    // The unmodified copy passes, so each failure below is the mutation's.
    assert_eq!(check_variant_at(tmp.path(), &BASE), Vec::<String>::new());
    assert_eq!(
        check_variant_at(tmp.path(), &OPENSHIFT),
        Vec::<String>::new()
    );
    let mut missed = Vec::new();
    for m in MUTATIONS {
        let path = tmp.path().join("deploy").join(m.file);
        let original = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            original.matches(m.from).count(),
            1,
            "{}: {:?} must occur once",
            m.file,
            m.from
        );
        std::fs::write(&path, original.replacen(m.from, m.to, 1)).unwrap();
        let errors = check_variant_at(tmp.path(), m.variant);
        std::fs::write(&path, &original).unwrap();
        if !errors.iter().any(|e| e.contains(m.caught_as)) {
            missed.push(format!(
                "{} {:?} -> {:?}: expected {:?}, got {errors:#?}",
                m.file, m.from, m.to, m.caught_as
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "mutations not caught:\n{}",
        missed.join("\n")
    );
}

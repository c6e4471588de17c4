//! The flow on real nodes, through the real binaries (issue 5, "The flow, on that node"):
//!
//! - each node is a real containerd ([`CriSandbox`]) with `runtime-extractor scanner` (root,
//!   socket mode 660 owned by the serve group) and `runtime-extractor-serve` running as the
//!   unprivileged uid/gid 65532 (no capabilities), TLS from a test CA, `--auth kubernetes`
//!   against testkit's API server (TokenReview, and a SubjectAccessReview for the caller);
//! - the API server holds pods mirroring the CRI pods (names, namespaces, `containerd://` IDs,
//!   image digests, node names), plus duplicates, terminated pods and containers, pods of a
//!   node without an extractor;
//! - the real `workload-gatherer` binary gathers; the report is checked field for field, and
//!   the scanners' logs (one debug line per analysed container) prove each node analysed exactly
//!   the containers the gatherer had to ask for;
//! - faults: a node whose extractor is down, an extractor that accepts but never answers
//!   (SIGSTOP) past the gatherer's per-node timeout, a container killed in the middle of a scan,
//!   the scanner killed and restarted while serve waits on it.
//!
//! Needs root and containerd (`scripts/install-test-deps.sh`); skips loudly otherwise and
//! fails under CI=true.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use common::{expected, json_records, serve_bin, ScannerPod};
use k8s_openapi::api::core::v1::Pod;
use runtime_info::{workload_hash, ContainerRuntimeInfo, NodeRuntimeInfo};
use serde_json::{json, Value};
use testkit::cri_sandbox::{api, ContainerSpec, CriSandbox, PodSpec, RunningPod, BUSYBOX_IMAGE};
use testkit::daemons::{free_port, http_get, loopback, metric, wait_until, TestProcess};
use testkit::rootfs::{require, which};
use testkit::{ApiServer, ContainerState, PodBuilder, TestCa};

const SERVER_NAME: &str = "exporter.openshift-insights.svc.cluster.local";
const OPERATOR: &str = "system:serviceaccount:openshift-insights:operator";
const OPERATOR_TOKEN: &str = "operator-token";
const EXTRACTOR_SA: &str = "system:serviceaccount:openshift-insights:insights-runtime-extractor-sa";
const EXTRACTOR_TOKEN: &str = "extractor-token";
/// The only user serve lets in without a SubjectAccessReview; the operator is not it, so every
/// node has to ask the API server whether the operator may POST.
const ALLOWED_WITHOUT_SAR: &str = "system:serviceaccount:openshift-monitoring:prometheus-k8s";
/// serve's uid and gid (the usual "nonroot" of distroless images); the scanner socket's group.
const SERVE_ID: u32 = 65532;
const EXTRACTOR_LABEL: (&str, &str) = ("app.kubernetes.io/name", "insights-runtime-extractor");
const EXTRACTOR_IMAGE: &str = "quay.io/x/extractor:1";
const NODE_ARGV: [&str; 3] = ["/usr/local/bin/node", "-e", "setTimeout(()=>{}, 3600000)"];
const SLEEP_ARGV: [&str; 2] = ["/bin/sleep", "3600"];

// ---------------------------------------------------------------------------------------------
// processes

/// The real `workload-gatherer` binary (built if stale, staged world-readable).
fn gatherer_bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::GATHERER)
}

fn json_lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn chown_to_serve_group(path: &Path, mode: u32) {
    std::os::unix::fs::chown(path, Some(0), Some(SERVE_ID)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// the cluster: API server, CA, files

struct Cluster {
    api: ApiServer,
    dir: tempfile::TempDir,
    ca: TestCa,
    port: u16,
}

impl Cluster {
    fn new(ips: &[IpAddr]) -> Cluster {
        testkit::install_crypto_provider();
        let api = ApiServer::start_blocking();
        api.add_user(OPERATOR_TOKEN, OPERATOR, &[]);
        api.add_user(EXTRACTOR_TOKEN, EXTRACTOR_SA, &[]);
        api.allow_non_resource(OPERATOR, "/gather_runtime_info", &["post"]);
        let dir = tempfile::Builder::new()
            .prefix("ri-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        // serve's secrets: readable by its group only, as a Secret volume with an fsGroup.
        let secrets = dir.path().join("serve");
        fs::create_dir(&secrets).unwrap();
        chown_to_serve_group(&secrets, 0o750);
        let ca = TestCa::new("service-ca");
        let (crt, key) = ca
            .issue_server(&[SERVER_NAME, "exporter.openshift-insights.svc"], &[])
            .write_to(&secrets);
        chown_to_serve_group(&crt, 0o640);
        chown_to_serve_group(&key, 0o640);
        let kubeconfig = secrets.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, EXTRACTOR_TOKEN);
        chown_to_serve_group(&kubeconfig, 0o640);
        // The gatherer's: root only.
        let g = dir.path().join("gatherer");
        fs::create_dir(&g).unwrap();
        fs::set_permissions(&g, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(g.join("service-ca.crt"), ca.cert_pem()).unwrap();
        fs::write(g.join("token"), OPERATOR_TOKEN).unwrap();
        api.write_kubeconfig(&g.join("kubeconfig"), OPERATOR_TOKEN);
        Cluster {
            api,
            dir,
            ca,
            port: free_port(ips),
        }
    }

    fn serve_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("serve").join(name)
    }

    fn gatherer_file(&self, name: &str) -> PathBuf {
        self.dir.path().join("gatherer").join(name)
    }

    /// The extractor pod of a node (its container is still waiting: no ID to ask about).
    fn extractor_pod(&self, node: &str, ip: IpAddr) -> Pod {
        PodBuilder::new(
            "openshift-insights",
            &format!("insights-runtime-extractor-{node}"),
        )
        .node(node)
        .label(EXTRACTOR_LABEL.0, EXTRACTOR_LABEL.1)
        .pod_ip(&ip.to_string())
        .container(
            "serve",
            EXTRACTOR_IMAGE,
            &extractor_image_id(),
            "",
            ContainerState::Waiting,
        )
        .build()
    }

    /// Runs the real gatherer; returns workload_info.json and gather_status.json.
    fn gather(&self, output: &Path, node_timeout: &str) -> (Value, Value) {
        let started = Instant::now();
        let out = Command::new(gatherer_bin())
            .arg("--kubeconfig")
            .arg(self.gatherer_file("kubeconfig"))
            .args(["--extractor-namespace", "openshift-insights"])
            .arg("--extractor-selector")
            .arg(format!("{}={}", EXTRACTOR_LABEL.0, EXTRACTOR_LABEL.1))
            .arg("--extractor-port")
            .arg(self.port.to_string())
            .arg("--extractor-ca-file")
            .arg(self.gatherer_file("service-ca.crt"))
            .args(["--extractor-server-name", SERVER_NAME])
            .arg("--token-file")
            .arg(self.gatherer_file("token"))
            .args(["--node-timeout", node_timeout])
            .arg("--output")
            .arg(output)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "workload-gatherer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "e2e_flow: workload-gatherer → {} in {:?}",
            output.display(),
            started.elapsed()
        );
        let files = if output.to_string_lossy().ends_with(".tar.gz") {
            gatherer::archive::read_tar_gz(output).unwrap()
        } else {
            ["config/workload_info.json", "config/gather_status.json"]
                .iter()
                .map(|p| (p.to_string(), fs::read(output.join(p)).unwrap()))
                .collect()
        };
        let parse = |p: &str| serde_json::from_slice::<Value>(&files[p]).unwrap();
        (
            parse("config/workload_info.json"),
            parse("config/gather_status.json"),
        )
    }
}

fn extractor_image_id() -> String {
    format!("quay.io/x/extractor@sha256:{}", "2".repeat(64))
}

// ---------------------------------------------------------------------------------------------
// a node: containerd + scanner (root) + serve (uid 65532)

struct Node {
    name: &'static str,
    ip: IpAddr,
    health: SocketAddr,
    // Fields drop in order: serve and scanner before containerd.
    serve: TestProcess,
    scanner: ScannerPod,
    socket: PathBuf,
    serve_log: PathBuf,
    sb: CriSandbox,
    _dir: tempfile::TempDir,
}

/// The scanner as the DaemonSet runs it (a CRI container with exactly its capabilities and
/// the node's PID namespace), its socket mode 660 in a setgid directory of serve's group, as
/// the kubelet prepares an emptyDir with `fsGroup`: the socket gets the group without chown.
fn spawn_scanner(sb: &CriSandbox, socket: &Path, generation: u32) -> ScannerPod {
    let p = ScannerPod::start(
        sb,
        &format!("scanner-{generation}"),
        socket,
        &[
            "--log-format",
            "json",
            // One debug line per analysed container (scanner::scan): the proof of what was scanned.
            "--log",
            "info,scanner::scan=debug",
            "--socket-mode",
            "660",
        ],
    );
    let meta = fs::metadata(socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "--socket-mode");
    assert_eq!(meta.gid(), SERVE_ID, "the socket directory's group");
    p
}

impl Node {
    /// Containerd, scanner, serve (the test fails when the machine cannot run containerd).
    fn start(
        cluster: &Cluster,
        name: &'static str,
        ip: IpAddr,
        test: &str,
        max_scans: u32,
    ) -> Node {
        let sb = CriSandbox::start_for(test);
        let dir = tempfile::Builder::new()
            .prefix("ri-e2e-node-")
            .tempdir_in("/tmp")
            .unwrap();
        // Only root and the serve group may reach the scanner socket; setgid, so the socket
        // is created in serve's group.
        chown_to_serve_group(dir.path(), 0o2750);
        let socket = dir.path().join("scanner.sock");
        let serve_log = dir.path().join("serve.log");
        let scanner = spawn_scanner(&sb, &socket, 0);
        let health = SocketAddr::new(ip, free_port(&[ip]));
        let mut serve = TestProcess::spawn(
            Command::new(serve_bin())
                .args(["--log-format", "json", "--log", "info"])
                .arg("--listen")
                .arg(SocketAddr::new(ip, cluster.port).to_string())
                .arg("--health-listen")
                .arg(health.to_string())
                .arg("--scanner-socket")
                .arg(&socket)
                .arg("--tls-cert")
                .arg(cluster.serve_file("tls.crt"))
                .arg("--tls-key")
                .arg(cluster.serve_file("tls.key"))
                .args(["--auth", "kubernetes", "--allow-user", ALLOWED_WITHOUT_SAR])
                .arg("--kubeconfig")
                .arg(cluster.serve_file("kubeconfig"))
                .args(["--max-concurrent-scans", &max_scans.to_string()])
                .current_dir("/")
                .uid(SERVE_ID)
                .gid(SERVE_ID)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&serve_log).unwrap()),
            &format!("serve on {name}"),
        )
        .unwrap();
        // Ready = serve (uid 65532) reached the scanner through the group-only socket.
        wait_until("serve /readyz", Duration::from_secs(20), || {
            if let Some(status) = serve.exited() {
                panic!(
                    "serve exited ({status}): {}",
                    fs::read_to_string(&serve_log).unwrap_or_default()
                );
            }
            http_get(health, "/readyz").is_some_and(|(code, _)| code == 200)
        });
        let node = Node {
            name,
            ip,
            health,
            serve,
            scanner,
            socket,
            serve_log,
            sb,
            _dir: dir,
        };
        node.assert_serve_unprivileged();
        node
    }

    fn assert_serve_unprivileged(&self) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.serve.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from /proc/<serve>/status"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        let id = SERVE_ID.to_string();
        assert_eq!(field("Uid:"), [id.as_str(); 4], "serve's uids");
        assert_eq!(field("Gid:"), [id.as_str(); 4], "serve's gids");
        assert_eq!(
            field("Groups:"),
            Vec::<&str>::new(),
            "no supplementary groups"
        );
        assert_eq!(field("CapEff:"), ["0000000000000000"], "no capabilities");
    }

    fn run(&self, spec: &PodSpec) -> RunningPod {
        self.sb.run_pod(spec).unwrap()
    }

    fn key(&self, pod: &RunningPod, container: &str) -> String {
        format!(
            "{}://{}",
            self.sb.runtime_name(),
            pod.container(container).unwrap().id
        )
    }

    /// Container IDs the scanner analysed, one entry per analysis, sorted.
    fn analysed(&self) -> Vec<String> {
        let mut ids: Vec<String> = json_records(&self.scanner.log)
            .iter()
            .filter(|l| l["fields"]["message"] == "container analysed")
            .map(|l| l["fields"]["container"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    fn metrics(&self) -> String {
        let (code, body) = http_get(self.health, "/metrics").expect("GET /metrics");
        assert_eq!(code, 200);
        body
    }

    fn readyz(&self) -> u16 {
        http_get(self.health, "/readyz").map_or(0, |(code, _)| code)
    }

    /// `image_ref` of every container the runtime knows (running or exited), as the kubelet
    /// would report it.
    fn image_refs(&self) -> HashMap<String, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = self.sb.socket_path().to_str().unwrap().to_owned();
        rt.block_on(async move {
            let mut client =
                api::connect_unix(&socket, Duration::from_secs(10), Duration::from_secs(30))
                    .await
                    .unwrap();
            client
                .list_containers(api::ListContainersRequest::default())
                .await
                .unwrap()
                .containers
                .into_iter()
                .map(|c| (c.id, c.image_ref))
                .collect()
        })
    }

    /// The API server's view of a CRI pod: same namespace, name, node, container names,
    /// commands and `containerd://` IDs. The imageID is the runtime's image digest spelled as
    /// a repository digest (`<repository>@sha256:…`), as for an image pulled from a registry
    /// (locally imported images have no repository digest, only the bare ID).
    fn mirror(&self, spec: &PodSpec, pod: &RunningPod, phase: &str, terminated: &[&str]) -> Pod {
        let refs = self.image_refs();
        let mut b = PodBuilder::new(&pod.namespace, &pod.name)
            .node(self.name)
            .phase(phase)
            .restart_policy(if phase == "Running" {
                "Always"
            } else {
                "Never"
            });
        for c in &spec.containers {
            let image = c.image.as_deref().unwrap_or(BUSYBOX_IMAGE);
            let id = &pod.container(&c.name).unwrap().id;
            let state = if terminated.contains(&c.name.as_str()) {
                ContainerState::Terminated
            } else {
                ContainerState::Running
            };
            b = b
                .container(
                    &c.name,
                    image,
                    &repo_digest(image, &refs[id]),
                    &format!("{}://{id}", self.sb.runtime_name()),
                    state,
                )
                .command(c.command.clone());
        }
        b.build()
    }

    /// The digest (`sha256:…`) of the busybox image on this node, as the shapes carry it.
    fn busybox_digest(&self, pod: &RunningPod) -> String {
        self.image_refs()[&pod.containers[0].id].clone()
    }
}

fn repo_digest(image: &str, image_ref: &str) -> String {
    assert!(image_ref.starts_with("sha256:"), "image_ref {image_ref:?}");
    let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
    format!("{repository}@{image_ref}")
}

fn node_container(name: &str, node_bin: &Path) -> ContainerSpec {
    ContainerSpec::new(name, &NODE_ARGV)
        .mount(node_bin, NODE_ARGV[0], true)
        .with_host_libraries()
}

fn sleeper(name: &str) -> ContainerSpec {
    ContainerSpec::new(name, &SLEEP_ARGV)
}

/// One container of an expected shape in workload_info.json.
fn shape_container(
    digest: &str,
    program: Option<&str>,
    info: Option<&ContainerRuntimeInfo>,
) -> Value {
    let mut c = json!({ "imageID": digest });
    if let Some(p) = program {
        c["firstCommand"] = json!(workload_hash(p));
    }
    if let Some(info) = info {
        c["runtimeInfo"] = serde_json::to_value(info.anonymized()).unwrap();
    }
    c
}

fn shape(duplicates: usize, containers: Vec<Value>) -> Value {
    let mut s = json!({ "restartAlways": true, "containers": containers });
    if duplicates > 0 {
        s["duplicates"] = json!(duplicates);
    }
    s
}

/// `v` without any `runtimeInfo` (what a node that did not answer leaves).
fn without_runtime_info(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "runtimeInfo")
                .map(|(k, v)| (k.clone(), without_runtime_info(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_runtime_info).collect()),
        other => other.clone(),
    }
}

fn host_node() -> Option<(PathBuf, String)> {
    let node_bin = fs::canonicalize(which("node")?).ok()?;
    let out = Command::new(&node_bin).arg("--version").output().ok()?;
    let version = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    Some((node_bin, version))
}

// ---------------------------------------------------------------------------------------------
// the flow, and the faults the gatherer sees

#[test]
fn gatherer_binary_against_real_nodes_then_down_and_stalled_extractors() {
    const TEST: &str = "e2e_flow::gatherer_binary_against_real_nodes";
    let started = Instant::now();
    // Before anything needs root (the files for serve are chowned).
    require(TEST, CriSandbox::available().err());
    let node_prereq = host_node();
    require(
        TEST,
        node_prereq
            .is_none()
            .then(|| "no node on PATH (nodejs)".into()),
    );
    let (node_bin, node_version) = node_prereq.unwrap();
    let (ip_a, ip_b, ip_c) = (loopback(2), loopback(3), loopback(4));
    let cluster = Cluster::new(&[ip_a, ip_b, ip_c]);
    let a = Node::start(&cluster, "node-a", ip_a, TEST, 4);
    let b = Node::start(&cluster, "node-b", ip_b, TEST, 4);
    let gatherer = gatherer_bin();
    eprintln!(
        "e2e_flow: two nodes up, gatherer at {} ({:?})",
        gatherer.display(),
        started.elapsed()
    );

    let node_info = expected("alpine", "3.99.0", "Node.js", &node_version, "", &[]);
    let os_only = expected("alpine", "3.99.0", "", "", "", &[]);

    // Node A.
    let web1_spec = PodSpec::new("shop", "web-1").container(node_container("web", &node_bin));
    let web2_spec = PodSpec::new("shop", "web-2").container(node_container("web", &node_bin));
    let idle_spec = PodSpec::new("shop", "idle-1").container(sleeper("idle"));
    let multi_spec = PodSpec::new("shop", "multi-1")
        .container(node_container("app", &node_bin))
        .container(sleeper("sidecar"));
    let half_spec = PodSpec::new("shop", "half-1")
        .container(sleeper("main"))
        .container(sleeper("done"));
    let job_spec = PodSpec::new("batch", "job-1").container(sleeper("work"));
    let web1 = a.run(&web1_spec);
    let web2 = a.run(&web2_spec);
    let idle = a.run(&idle_spec);
    let multi = a.run(&multi_spec);
    let half = a.run(&half_spec);
    let job = a.run(&job_spec);
    a.sb.stop_container(&half.container("done").unwrap().id)
        .unwrap();
    a.sb.stop_container(&job.container("work").unwrap().id)
        .unwrap();
    // Node B: its own pods, and a duplicate of shop/web-1's shape.
    let api_spec = PodSpec::new("data", "api-1").container(node_container("api", &node_bin));
    let cache_spec = PodSpec::new("data", "cache-1").container(sleeper("cache"));
    let web3_spec = PodSpec::new("shop", "web-3").container(node_container("web", &node_bin));
    let api_1 = b.run(&api_spec);
    let cache = b.run(&cache_spec);
    let web3 = b.run(&web3_spec);
    let digest_a = a.busybox_digest(&web1);
    let digest_b = b.busybox_digest(&api_1);
    assert_eq!(
        digest_a, digest_b,
        "the busybox image is built reproducibly"
    );
    let busybox = digest_a;

    let agent = PodBuilder::new("ops", "agent-1")
        .node("node-x")
        .container(
            "agent",
            BUSYBOX_IMAGE,
            &repo_digest(BUSYBOX_IMAGE, &busybox),
            &format!("containerd://{}", "a".repeat(64)),
            ContainerState::Running,
        )
        .command(SLEEP_ARGV)
        .build();
    let pods = vec![
        a.mirror(&web1_spec, &web1, "Running", &[]),
        a.mirror(&web2_spec, &web2, "Running", &[]),
        a.mirror(&idle_spec, &idle, "Running", &[]),
        a.mirror(&multi_spec, &multi, "Running", &[]),
        a.mirror(&half_spec, &half, "Running", &["done"]),
        a.mirror(&job_spec, &job, "Succeeded", &["work"]),
        b.mirror(&api_spec, &api_1, "Running", &[]),
        b.mirror(&cache_spec, &cache, "Running", &[]),
        b.mirror(&web3_spec, &web3, "Running", &[]),
        agent,
        cluster.extractor_pod("node-a", ip_a),
        cluster.extractor_pod("node-b", ip_b),
    ];
    cluster.api.set_pods(pods.clone());
    eprintln!(
        "e2e_flow: pods running and mirrored ({:?})",
        started.elapsed()
    );

    // 1. The clean gather, to an archive.
    let report = cluster.dir.path().join("report-1.tar.gz");
    let (workload, status) = cluster.gather(&report, "60s");

    let extractor_shape = json!({ "imageID": format!("sha256:{}", "2".repeat(64)) });
    let sleep_shape =
        |info: Option<&ContainerRuntimeInfo>| shape_container(&busybox, Some("sleep"), info);
    let node_shape =
        |info: Option<&ContainerRuntimeInfo>| shape_container(&busybox, Some("node"), info);
    let ns = |name: &str| workload_hash(name);
    let expected_workload = json!({
        "pods": 12,
        "imageCount": 2,
        "namespaces": {
            ns("shop"): {
                "count": 6,
                "shapes": [
                    // Etcd order: half-1, idle-1, multi-1, web-1 (+ web-2, web-3).
                    shape(0, vec![sleep_shape(Some(&os_only)), sleep_shape(None)]),
                    shape(0, vec![sleep_shape(Some(&os_only))]),
                    shape(0, vec![node_shape(Some(&node_info)), sleep_shape(Some(&os_only))]),
                    shape(2, vec![node_shape(Some(&node_info))]),
                ],
            },
            ns("batch"): { "count": 1, "terminalCount": 1, "shapes": [] },
            ns("data"): {
                "count": 2,
                "shapes": [
                    shape(0, vec![node_shape(Some(&node_info))]),
                    shape(0, vec![sleep_shape(Some(&os_only))]),
                ],
            },
            ns("ops"): { "count": 1, "shapes": [shape(0, vec![sleep_shape(None)])] },
            ns("openshift-insights"): { "count": 2, "shapes": [shape(1, vec![extractor_shape.clone()])] },
        },
    });
    assert_eq!(
        workload, expected_workload,
        "workload_info.json:\n{workload:#}"
    );
    assert_eq!(
        status["runtimeInfo"],
        json!({
            "gathered": true,
            "extractorsFound": 2,
            "nodesWithContainers": 3,
            "nodesAsked": 2,
            "nodesAnswered": 2,
            "containersRequested": 7,
            "containersAnswered": 7,
            "containersMerged": 7,
            "nodesFailed": [],
            "nodesWithoutExtractor": ["node-x"],
        }),
        "gather_status.json:\n{status:#}"
    );
    assert_eq!(status["errors"], json!([]), "{status:#}");
    assert_eq!(status["notes"], json!([]), "{status:#}");
    assert_eq!(status["imageApi"], "absent");

    // Each node analysed exactly the containers it was asked about, once: the first pod of
    // each shape, running containers only; not web-2/web-3 (duplicates), not the exited
    // containers, not the other node's.
    let mut want_a = vec![
        a.key(&web1, "web"),
        a.key(&idle, "idle"),
        a.key(&multi, "app"),
        a.key(&multi, "sidecar"),
        a.key(&half, "main"),
    ];
    want_a.sort();
    let mut want_b = vec![b.key(&api_1, "api"), b.key(&cache, "cache")];
    want_b.sort();
    assert_eq!(a.analysed(), want_a, "node-a scanner log");
    assert_eq!(b.analysed(), want_b, "node-b scanner log");
    for (node, n) in [(&a, 5.0), (&b, 2.0)] {
        let m = node.metrics();
        assert_eq!(
            metric(
                &m,
                r#"runtime_extractor_containers_scanned_total{result="ok"}"#
            ),
            n,
            "{}:\n{m}",
            node.name
        );
        assert_eq!(metric(&m, "runtime_extractor_cache_misses_total"), n, "{m}");
        // serve answered the operator, authenticated by TokenReview and authorised by SAR.
        let requests: Vec<Value> = json_lines(&node.serve_log)
            .into_iter()
            .filter(|l| l["fields"]["message"] == "request")
            .map(|l| l["fields"].clone())
            .collect();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0]["method"], "POST");
        assert_eq!(requests[0]["code"], 200);
        assert_eq!(requests[0]["user"], OPERATOR);
    }
    let reviews = |path: &str| {
        cluster
            .api
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(path) && r.user.as_deref() == Some(EXTRACTOR_SA))
            .count()
    };
    assert_eq!(reviews("/tokenreviews"), 2, "one TokenReview per node");
    assert_eq!(reviews("/subjectaccessreviews"), 2, "one SAR per node");
    eprintln!("e2e_flow: clean gather checked ({:?})", started.elapsed());

    // 2. A node whose extractor is down: nothing listens on its pod IP.
    let edge = PodBuilder::new("ops", "edge-1")
        .node("node-c")
        .container(
            "edge",
            BUSYBOX_IMAGE,
            &repo_digest(BUSYBOX_IMAGE, &busybox),
            &format!("containerd://{}", "c".repeat(64)),
            ContainerState::Running,
        )
        .command(["/bin/sh"])
        .build();
    cluster
        .api
        .add_pods(vec![edge, cluster.extractor_pod("node-c", ip_c)]);
    let (down, down_status) = cluster.gather(&cluster.dir.path().join("report-2"), "60s");
    let url_c = format!("https://{ip_c}:{}/gather_runtime_info", cluster.port);
    let failed = down_status["runtimeInfo"]["nodesFailed"]
        .as_array()
        .unwrap();
    assert_eq!(failed.len(), 1, "{down_status:#}");
    let refused = failed[0]["reason"].as_str().unwrap().to_owned();
    assert!(
        refused.starts_with(&format!("POST {url_c}: ")) && refused.contains("onnection refused"),
        "{refused}"
    );
    assert_eq!(
        failed[0],
        json!({"node": "node-c", "podIP": ip_c.to_string(), "containersRequested": 1, "reason": refused})
    );
    assert_eq!(
        down_status["errors"],
        json!([format!("node node-c: {refused}")])
    );
    let rt = &down_status["runtimeInfo"];
    assert_eq!(
        (
            &rt["nodesAsked"],
            &rt["nodesAnswered"],
            &rt["containersAnswered"]
        ),
        (&json!(3), &json!(2), &json!(7))
    );
    // Nothing else lost: the report is the clean one plus node-c's two pods, without
    // runtime info for its container.
    let mut want_down = expected_workload.clone();
    want_down["pods"] = json!(14);
    want_down["namespaces"][ns("ops")] = json!({
        "count": 2,
        "shapes": [
            shape(0, vec![sleep_shape(None)]),
            shape(0, vec![shape_container(&busybox, Some("sh"), None)]),
        ],
    });
    want_down["namespaces"][ns("openshift-insights")] =
        json!({ "count": 3, "shapes": [shape(2, vec![extractor_shape])] });
    assert_eq!(down, want_down, "workload_info.json:\n{down:#}");

    // 3. And an extractor that accepts connections but never answers (stopped), past a short
    //    per-node timeout.
    b.serve.stop();
    let (stalled, stalled_status) = cluster.gather(&cluster.dir.path().join("report-3"), "3s");
    b.serve.resume();
    let failed = stalled_status["runtimeInfo"]["nodesFailed"]
        .as_array()
        .unwrap();
    let timeout_reason = format!(
        "no answer from https://{ip_b}:{}/gather_runtime_info within 3s (--node-timeout)",
        cluster.port
    );
    assert_eq!(
        failed,
        &vec![
            json!({"node": "node-b", "podIP": ip_b.to_string(), "containersRequested": 2, "reason": timeout_reason}),
            json!({"node": "node-c", "podIP": ip_c.to_string(), "containersRequested": 1, "reason": refused}),
        ],
        "{stalled_status:#}"
    );
    // Node order, like `nodesFailed`, although node-c (refused) finished long before node-b.
    let errors: Vec<&str> = stalled_status["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            format!("node node-b: {timeout_reason}"),
            format!("node node-c: {refused}")
        ]
    );
    let rt = &stalled_status["runtimeInfo"];
    assert_eq!(
        (
            &rt["nodesAsked"],
            &rt["nodesAnswered"],
            &rt["containersAnswered"]
        ),
        (&json!(3), &json!(1), &json!(5))
    );
    // Node A's answers are all there; node B's containers (namespace data) have no runtime
    // info; nothing else changed.
    let mut want_stalled = want_down;
    want_stalled["namespaces"][ns("data")] =
        without_runtime_info(&want_stalled["namespaces"][ns("data")]);
    assert_eq!(stalled, want_stalled, "workload_info.json:\n{stalled:#}");

    // 4. Recovered: the same pods as the first time give the same report, byte for byte.
    cluster.api.set_pods(pods);
    let again = cluster.dir.path().join("report-4.tar.gz");
    let (recovered, recovered_status) = cluster.gather(&again, "60s");
    assert_eq!(recovered_status["runtimeInfo"]["nodesFailed"], json!([]));
    assert_eq!(recovered, workload);
    assert_eq!(
        gatherer::archive::read_tar_gz(&again).unwrap()["config/workload_info.json"],
        gatherer::archive::read_tar_gz(&report).unwrap()["config/workload_info.json"]
    );
    eprintln!(
        "e2e_flow: flow and gatherer-side faults done in {:?}",
        started.elapsed()
    );
    drop((a, b));
}

// ---------------------------------------------------------------------------------------------
// faults inside a node

fn https_client(cluster: &Cluster, node: &Node) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cluster.ca.cert_pem().as_bytes()).unwrap()])
        .resolve(SERVER_NAME, SocketAddr::new(node.ip, cluster.port))
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POST the IDs (clear-text answer); status, Content-Type and body.
async fn post(client: reqwest::Client, port: u16, ids: Vec<String>) -> (u16, String, Value) {
    let resp = client
        .post(format!(
            "https://{SERVER_NAME}:{port}/gather_runtime_info?hash=false"
        ))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({ "containerIds": ids }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.json().await.unwrap())
}

/// The answer holds exactly these pods' container `c`, each found to be busybox's OS only.
fn expect_present(node: &Node, answer: &Value, pods: &[&RunningPod]) {
    let os_only = expected("alpine", "3.99.0", "", "", "", &[]);
    let got: NodeRuntimeInfo = serde_json::from_value(answer.clone()).unwrap();
    let mut want = NodeRuntimeInfo::new();
    for p in pods {
        want.entry(p.namespace.clone())
            .or_default()
            .entry(p.name.clone())
            .or_default()
            .insert(node.key(p, "c"), os_only.clone());
    }
    assert_eq!(got, want);
}

/// Unix sockets the process holds (its scanner connections, among others).
fn unix_sockets_of(pid: u32) -> usize {
    let unix: HashSet<u64> = fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .filter(|inode| unix.contains(inode))
        .count()
}

#[test]
fn container_killed_mid_scan_and_scanner_restarted_mid_request() {
    const TEST: &str = "e2e_flow::container_killed_mid_scan_and_scanner_restarted";
    let started = Instant::now();
    require(TEST, CriSandbox::available().err());
    let ip = loopback(5);
    let cluster = Cluster::new(&[ip]);
    // One scan at a time: a request for many containers takes a while, in a known order.
    let mut node = Node::start(&cluster, "node-f", ip, TEST, 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = https_client(&cluster, &node);

    // (a) A container killed while a request for 12 containers is being scanned.
    let pods: Vec<RunningPod> = (0..12)
        .map(|i| node.run(&PodSpec::new("faults", &format!("p-{i:02}")).container(sleeper("c"))))
        .collect();
    let ids: Vec<String> = pods.iter().map(|p| node.key(p, "c")).collect();
    eprintln!("e2e_flow: 12 pods up ({:?})", started.elapsed());
    let request = rt.spawn(post(client.clone(), cluster.port, ids.clone()));
    wait_until("first container analysed", Duration::from_secs(30), || {
        !node.analysed().is_empty()
    });
    // Freeze the scanner so what it has done is known while the container is killed. Scans
    // go in the scanner's listing order (namespace, pod), one at a time: p-11 comes last.
    node.scanner.stop();
    let done = node.analysed();
    let victim = pods.last().unwrap();
    assert!(
        done.len() <= 10 && !done.contains(&ids[11]),
        "the request was nearly finished before the kill: {done:?}"
    );
    node.sb.stop_container(&victim.containers[0].id).unwrap();
    node.scanner.resume();
    let (code, _, answer) = rt.block_on(request).unwrap();
    assert_eq!(code, 200, "{answer}");
    // The killed container is absent; every other one is there, exactly.
    let survivors: Vec<&RunningPod> = pods[..11].iter().collect();
    expect_present(&node, &answer, &survivors);
    // Reported: serve counts it as gone (not running any more when its turn came) or failed
    // (died under the analysis), and nothing was analysed twice.
    let m = node.metrics();
    let scanned = |result: &str| {
        metric(
            &m,
            &format!(r#"runtime_extractor_containers_scanned_total{{result="{result}"}}"#),
        )
    };
    eprintln!(
        "e2e_flow: {} of 12 analysed when the container was killed; it was then {}",
        done.len(),
        if scanned("gone") == 1.0 {
            "gone (not running when its turn came)"
        } else {
            "failed (died under the analysis)"
        }
    );
    assert_eq!(scanned("ok"), 11.0, "{m}");
    assert_eq!(scanned("gone") + scanned("failed"), 1.0, "{m}");
    let analysed = node.analysed();
    let unique: HashSet<&String> = analysed.iter().collect();
    assert_eq!(unique.len(), analysed.len(), "{analysed:?}");
    for id in &ids[..11] {
        assert!(unique.contains(id), "{id} not analysed: {analysed:?}");
    }
    eprintln!(
        "e2e_flow: container killed mid-scan checked ({:?})",
        started.elapsed()
    );

    // (b) The scanner killed while serve waits on it, then started again.
    let fresh: Vec<RunningPod> = (0..2)
        .map(|i| node.run(&PodSpec::new("restart", &format!("r-{i}")).container(sleeper("c"))))
        .collect();
    let fresh_ids: Vec<String> = fresh.iter().map(|p| node.key(p, "c")).collect();
    let before = unix_sockets_of(node.serve.pid());
    node.scanner.stop();
    let request = rt.spawn(post(client.clone(), cluster.port, fresh_ids.clone()));
    // In flight: serve has connected to the (stopped) scanner and waits for its answer.
    wait_until(
        "serve connected to the scanner",
        Duration::from_secs(20),
        || unix_sockets_of(node.serve.pid()) > before,
    );
    node.scanner.kill_now(&node.sb);
    let (code, content_type, body) = rt.block_on(request).unwrap();
    assert_eq!(code, 503, "{body}");
    assert_eq!(content_type, "application/json");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "scanner unreachable at {}: ",
            node.socket.display()
        )),
        "{message}"
    );
    // Reset, not refused: serve's connection had been accepted when the scanner died.
    assert!(!message.contains("refused"), "{message}");
    eprintln!("e2e_flow: the request in flight when the scanner died: 503 {message:?}");
    assert_eq!(node.readyz(), 503, "not ready while the scanner is down");
    node.scanner = spawn_scanner(&node.sb, &node.socket, 1);
    wait_until("ready again", Duration::from_secs(20), || {
        node.readyz() == 200
    });
    let (code, _, answer) = rt.block_on(post(client.clone(), cluster.port, fresh_ids));
    assert_eq!(code, 200, "{answer}");
    expect_present(&node, &answer, &fresh.iter().collect::<Vec<_>>());
    // Nothing earlier was lost either.
    let (code, _, answer) = rt.block_on(post(client, cluster.port, ids[..11].to_vec()));
    assert_eq!(code, 200, "{answer}");
    expect_present(&node, &answer, &survivors);
    eprintln!(
        "e2e_flow: scanner restart checked ({:?})",
        started.elapsed()
    );
}

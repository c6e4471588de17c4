//! The `workload-gatherer` binary: kubeconfigs (bearer token, client certificate,
//! $KUBECONFIG), offline `--pods-file`, outputs, exit codes and one-line errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use gatherer::archive::{read_tar_gz, STATUS_PATH, WORKLOAD_INFO_PATH};
use serde_json::{json, Value};
use testkit::PodBuilder;

const BIN: &str = env!("CARGO_BIN_EXE_workload-gatherer");

fn command() -> Command {
    let mut c = Command::new(BIN);
    for var in ["KUBECONFIG", "POD_NAMESPACE", "RUST_LOG"] {
        c.env_remove(var);
    }
    // No ~/.kube/config or in-cluster fallback may leak in.
    c.env("HOME", "/nonexistent-home");
    c.env_remove("KUBERNETES_SERVICE_HOST");
    c
}

/// How to reach the test extractors: their CA, the token, their port.
fn extractor_flags(tls: &Tls, port: u16) -> Vec<std::ffi::OsString> {
    vec![
        "--extractor-ca-file".into(),
        tls.ca_file.clone().into(),
        "--token-file".into(),
        tls.token_file.clone().into(),
        "--extractor-port".into(),
        port.to_string().into(),
    ]
}

async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A PodList as `kubectl get pods -A -o json` writes it.
fn write_pods_file(path: &Path, builders: &[PodBuilder]) {
    let doc = json!({
        "apiVersion": "v1",
        "items": builders.iter().map(|b| b.to_json()).collect::<Vec<_>>(),
        "kind": "List",
        "metadata": {"resourceVersion": ""}
    });
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

fn app(ns: &str, name: &str, node: &str, n: u64) -> PodBuilder {
    PodBuilder::new(ns, name).node(node).container(
        "app",
        "quay.io/shop/app:1",
        &format!("quay.io/shop/app@{}", digest(n)),
        &cid(n),
        testkit::ContainerState::Running,
    )
}

fn extractor(node: &str, ip: &str) -> PodBuilder {
    PodBuilder::new(EXTRACTOR_NS, &format!("insights-runtime-extractor-{node}"))
        .node(node)
        .label("app.kubernetes.io/name", "insights-runtime-extractor")
        .pod_ip(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_kubeconfig_to_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server().await;
    api.set_pods(vec![app_pod("shop", "web-0", "n1", 1, 1)]);
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, API_TOKEN);
    let out = dir.path().join("out");
    let mut c = command();
    c.arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--output")
        .arg(&out)
        .arg("--no-runtime-info");
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = read_json(&out.join(WORKLOAD_INFO_PATH));
    assert_eq!(doc["pods"], 1);
    let status = read_json(&out.join(STATUS_PATH));
    assert_eq!(status["source"], "api");
    assert_eq!(status["imageApi"], "absent");
    assert!(
        stderr(&o).contains("pods: page 1"),
        "progress lines: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("wrote "), "{}", stderr(&o));
    assert!(api.requests().iter().any(|r| r.path == "/api/v1/pods"
        && r.user.as_deref() == Some("system:serviceaccount:openshift-insights:operator")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_kubeconfig_via_env_to_a_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server().await;
    api.set_pods(vec![app_pod("shop", "web-0", "n1", 1, 1)]);
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig_client_cert(&kubeconfig, "cert-user");
    let out = dir.path().join("report.tar.gz");
    let mut c = command();
    c.env("KUBECONFIG", &kubeconfig)
        .arg("--output")
        .arg(&out)
        .arg("--no-runtime-info")
        .arg("--quiet");
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "--quiet: {}", stderr(&o));
    let files = read_tar_gz(&out).unwrap();
    let doc: Value = serde_json::from_slice(&files[WORKLOAD_INFO_PATH]).unwrap();
    assert_eq!(doc["pods"], 1);
    assert!(files.contains_key(STATUS_PATH));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/pods" && r.user.as_deref() == Some("cert-user")));
}

/// Offline: pods and extractor pods from a file; no API server; the extractors listed
/// in the file are asked when the CA and token are available.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_file_with_reachable_extractors() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let pods_file = dir.path().join("pods.json");
    write_pods_file(
        &pods_file,
        &[
            app("shop", "web-0", "n1", 1),
            app("shop", "web-1", "n1", 1),
            extractor("n1", "127.0.5.2"),
        ],
    );
    let mut knowledge = Knowledge::new();
    knowledge.insert(
        cid(1),
        (
            "n1".into(),
            "shop".into(),
            "web-0".into(),
            info("rhel", "Java"),
        ),
    );
    let ex = start_extractors(
        &[("n1", "127.0.5.2", Behaviour::Answer)],
        &tls.cert,
        knowledge,
        None,
    )
    .await;
    let out = dir.path().join("out.tgz");
    let mut c = command();
    c.arg("--pods-file")
        .arg(&pods_file)
        .arg("--output")
        .arg(&out)
        .args(extractor_flags(&tls, ex.port))
        .arg("--node-timeout")
        .arg("30s")
        // A kubeconfig pointing nowhere: the file mode must not use it.
        .env("KUBECONFIG", "/nonexistent/kubeconfig");
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let files = read_tar_gz(&out).unwrap();
    let doc: Value = serde_json::from_slice(&files[WORKLOAD_INFO_PATH]).unwrap();
    let shop = &doc["namespaces"][runtime_info::workload_hash("shop")];
    assert_eq!(shop["count"], 2);
    assert_eq!(shop["shapes"][0]["duplicates"], 1);
    assert_eq!(
        shop["shapes"][0]["containers"][0]["runtimeInfo"]["kind"],
        runtime_info::workload_hash("Java")
    );
    let status: Value = serde_json::from_slice(&files[STATUS_PATH]).unwrap();
    assert_eq!(status["imageApi"], "notQueried");
    assert_eq!(status["runtimeInfo"]["nodesAnswered"], 1);
    assert_eq!(ex.records().len(), 1);
    assert_eq!(ex.records()[0].ids, vec![cid(1)]);
}

/// Offline on a laptop: the in-cluster CA/token do not exist → runtime info is skipped
/// with a note, the report is written, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_file_offline_skips_runtime_info_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let pods_file = dir.path().join("pods.json");
    write_pods_file(
        &pods_file,
        &[app("shop", "web-0", "n1", 1), extractor("n1", "127.0.5.3")],
    );
    let out = dir.path().join("out");
    let mut c = command();
    c.arg("--pods-file")
        .arg(&pods_file)
        .arg("--output")
        .arg(&out)
        .arg("--extractor-ca-file")
        .arg(dir.path().join("no-such-ca.crt"));
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let status = read_json(&out.join(STATUS_PATH));
    assert_eq!(status["runtimeInfo"]["gathered"], false);
    assert!(status["errors"].as_array().unwrap().is_empty(), "{status}");
    let notes = status["notes"].to_string();
    assert!(
        notes.contains("runtime info skipped: cannot read extractor CA file"),
        "{notes}"
    );
    assert_eq!(read_json(&out.join(WORKLOAD_INFO_PATH))["pods"], 2);

    // No extractor pod in the file: also a note.
    write_pods_file(&pods_file, &[app("shop", "web-0", "n1", 1)]);
    let mut c = command();
    c.arg("--pods-file")
        .arg(&pods_file)
        .arg("--output")
        .arg(&out);
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let notes = read_json(&out.join(STATUS_PATH))["notes"].to_string();
    assert!(notes.contains("no running pods found"), "{notes}");
}

/// Failures that prevent a report: non-zero exit and exactly one clear line on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server().await;
    let bad_token = dir.path().join("bad-token-kubeconfig");
    api.write_kubeconfig(&bad_token, "wrong-token");
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\"items\": 5}").unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let good_pods = dir.path().join("good.json");
    write_pods_file(&good_pods, &[app("shop", "web-0", "n1", 1)]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--kubeconfig".into(), "/nonexistent/kc".into()],
            "cannot read kubeconfig /nonexistent/kc",
        ),
        (
            vec!["--kubeconfig".into(), bad_token.display().to_string()],
            "cannot list pods (page 1)",
        ),
        (
            vec!["--pods-file".into(), bad_json.display().to_string()],
            "is not a valid PodList",
        ),
        (
            vec!["--pods-file".into(), "/nonexistent/pods.json".into()],
            "cannot read pods file /nonexistent/pods.json",
        ),
        (
            vec![
                "--pods-file".into(),
                good_pods.display().to_string(),
                "--extractor-selector".into(),
                "a in (b".into(),
            ],
            "invalid label selector",
        ),
    ];
    for (args, want) in cases {
        let mut c = command();
        c.args(&args).arg("--output").arg(dir.path().join("out"));
        let o = run(c).await;
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("workload-gatherer: error: ") && lines[0].contains(want),
            "{args:?}: {err}"
        );
    }
    // An output that cannot be written.
    let mut c = command();
    c.arg("--pods-file")
        .arg(&good_pods)
        .arg("--output")
        .arg(blocker.join("out"))
        .arg("--quiet");
    let o = run(c).await;
    assert!(!o.status.success());
    assert!(
        stderr(&o)
            .trim()
            .starts_with("workload-gatherer: error: cannot write"),
        "{}",
        stderr(&o)
    );
    // Bad flag values are refused by the parser.
    for args in [["--node-timeout", "soon"], ["--concurrency", "0"]] {
        let mut c = command();
        c.args(args)
            .arg("--pods-file")
            .arg(&good_pods)
            .arg("--output")
            .arg(dir.path().join("o"));
        let o = run(c).await;
        assert!(!o.status.success(), "{args:?}");
    }
}

/// Failed nodes do not fail the run: exit 0, the failures are listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_nodes_still_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    api.set_pods(vec![
        app_pod("shop", "web-0", "n1", 1, 1),
        app_pod("shop", "api-0", "n2", 2, 2),
        extractor_pod("n1", "127.0.6.2"),
        extractor_pod("n2", "127.0.6.3"),
    ]);
    let ex = start_extractors(
        &[
            ("n1", "127.0.6.2", Behaviour::Answer),
            ("n2", "127.0.6.3", Behaviour::Status(503)),
        ],
        &tls.cert,
        Knowledge::new(),
        None,
    )
    .await;
    let kubeconfig = dir.path().join("kc");
    api.write_kubeconfig(&kubeconfig, API_TOKEN);
    let out = dir.path().join("out");
    let mut c = command();
    c.arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--output")
        .arg(&out)
        .args(extractor_flags(&tls, ex.port))
        .env("POD_NAMESPACE", EXTRACTOR_NS);
    let o = run(c).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let status = read_json(&out.join(STATUS_PATH));
    assert_eq!(status["runtimeInfo"]["nodesAnswered"], 1);
    assert_eq!(status["runtimeInfo"]["nodesFailed"][0]["node"], "n2");
    assert_eq!(status["runtimeInfo"]["nodesFailed"][0]["httpStatus"], 503);
    assert!(stderr(&o).contains("node n2 failed"), "{}", stderr(&o));
}

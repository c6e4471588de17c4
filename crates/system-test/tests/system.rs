//! The whole system on one machine: two "nodes" (two real containerd instances), each with a
//! real `runtime-extractor scanner` and `runtime-extractor-serve` (TLS, TokenReview against the
//! test API server) on its own loopback address posing as the extractor pod IP, and the
//! workload gatherer listing pods from the test API server and asking each node for only the
//! containers it needs. Needs root + containerd; skips loudly otherwise, fails under CI=true.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gatherer::extractors::ExtractorFilter;
use gatherer::gather::{gather, GatherSettings, PodSource, RuntimeInfoSettings};
use gatherer::pods::ListOptions;
use runtime_info::{anonymize, workload_hash};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec, RunningPod, BUSYBOX_IMAGE};
use testkit::daemons::{free_port, loopback, wait_until, ScannerDaemon, TestProcess};
use testkit::rootfs::which;
use testkit::{ApiServer, ContainerState, PodBuilder, TestCa};

const SERVER_NAME: &str = "exporter.openshift-insights.svc.cluster.local";
const OPERATOR: &str = "system:serviceaccount:openshift-insights:operator";
const EXTRACTOR_SA: &str = "system:serviceaccount:openshift-insights:insights-runtime-extractor-sa";

fn bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::SCANNER)
}

/// One node: containerd + scanner + serve on `ip:port`.
struct Node {
    sb: CriSandbox,
    _scanner: ScannerDaemon,
    _serve: TestProcess,
    _dir: tempfile::TempDir,
}

fn start_node(ip: IpAddr, port: u16, cert_dir: &Path, kubeconfig: &Path) -> Node {
    let sb = CriSandbox::start_for("system test");
    let dir = tempfile::Builder::new()
        .prefix("ri-node-")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("scanner.sock");
    let scanner = ScannerDaemon::start(Path::new(bin()), sb.socket_path(), &socket).unwrap();
    let health = free_port(&[ip]);
    let serve = TestProcess::spawn(
        Command::new(testkit::bins::binary(testkit::bins::SERVICE))
            .arg("--listen")
            .arg(SocketAddr::new(ip, port).to_string())
            .arg("--health-listen")
            .arg(SocketAddr::new(ip, health).to_string())
            .arg("--scanner-socket")
            .arg(&socket)
            .arg("--tls-cert")
            .arg(cert_dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(cert_dir.join("tls.key"))
            .args([
                "--auth",
                "kubernetes",
                "--allow-user",
                OPERATOR,
                "--kubeconfig",
            ])
            .arg(kubeconfig)
            .stdout(Stdio::null()),
        "serve",
    )
    .unwrap();
    wait_until("serve", Duration::from_secs(20), || {
        std::net::TcpStream::connect(SocketAddr::new(ip, port)).is_ok()
    });
    Node {
        sb,
        _scanner: scanner,
        _serve: serve,
        _dir: dir,
    }
}

/// The API server's view of a CRI pod: same names, node, container IDs; image ID with a digest.
fn api_pod(
    pod: &RunningPod,
    node: &str,
    runtime: &str,
    command: &str,
) -> k8s_openapi::api::core::v1::Pod {
    let digest = format!("{BUSYBOX_IMAGE}@sha256:{}", "1".repeat(64)).replace(":1@", "@");
    let mut b = PodBuilder::new(&pod.namespace, &pod.name)
        .node(node)
        .phase("Running")
        .restart_policy("Always");
    for c in &pod.containers {
        b = b
            .container(
                &c.name,
                BUSYBOX_IMAGE,
                &digest,
                &format!("{runtime}://{}", c.id),
                ContainerState::Running,
            )
            .command([command]);
    }
    b.build()
}

#[test]
fn gatherer_asks_each_node_for_only_what_it_needs() {
    testkit::rootfs::require(
        "gatherer_asks_each_node_for_only_what_it_needs",
        CriSandbox::available().err(),
    );
    testkit::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = ApiServer::start_blocking();
    api.add_user("operator-token", OPERATOR, &[]);
    api.add_user("extractor-token", EXTRACTOR_SA, &[]);
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("extractor.kubeconfig");
    api.write_kubeconfig(&kubeconfig, "extractor-token");
    let ca = TestCa::new("service-ca");
    let cert_dir = work.path().join("tls");
    std::fs::create_dir_all(&cert_dir).unwrap();
    ca.issue_server(&[SERVER_NAME, "exporter.openshift-insights.svc"], &[])
        .write_to(&cert_dir);
    let ca_file = work.path().join("service-ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let token_file = work.path().join("token");
    std::fs::write(&token_file, "operator-token").unwrap();

    let ips: Vec<IpAddr> = vec![loopback(2), loopback(3)];
    let port = free_port(&ips);
    let node_a = start_node(ips[0], port, &cert_dir, &kubeconfig);
    let node_b = start_node(ips[1], port, &cert_dir, &kubeconfig);

    let node_bin = std::fs::canonicalize(which("node").unwrap()).unwrap();
    let node_version = String::from_utf8(
        Command::new(&node_bin)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let node_c = |name: &str| {
        ContainerSpec::new(
            name,
            &["/usr/local/bin/node", "-e", "setTimeout(()=>{}, 3600000)"],
        )
        .mount(&node_bin, "/usr/local/bin/node", true)
        .with_host_libraries()
    };
    // Node A: two pods of one shape (only the first is asked about) and a sleeper.
    let web1 = node_a
        .sb
        .run_pod(&PodSpec::new("shop", "web-1").container(node_c("web")))
        .unwrap();
    let web2 = node_a
        .sb
        .run_pod(&PodSpec::new("shop", "web-2").container(node_c("web")))
        .unwrap();
    let idle = node_a
        .sb
        .run_pod(
            &PodSpec::new("shop", "idle-1")
                .container(ContainerSpec::new("idle", &["/bin/sleep", "3600"])),
        )
        .unwrap();
    // Node B: another node process; and a container the API does not know about.
    let api_b = node_b
        .sb
        .run_pod(&PodSpec::new("data", "api-1").container(node_c("api")))
        .unwrap();
    let _stray = node_b
        .sb
        .run_pod(
            &PodSpec::new("data", "stray")
                .container(ContainerSpec::new("x", &["/bin/sleep", "3600"])),
        )
        .unwrap();

    let rt_a = node_a.sb.runtime_name().to_owned();
    let mut pods = vec![
        api_pod(&web1, "node-a", &rt_a, "/usr/local/bin/node"),
        api_pod(&web2, "node-a", &rt_a, "/usr/local/bin/node"),
        api_pod(&idle, "node-a", &rt_a, "/bin/sleep"),
        api_pod(
            &api_b,
            "node-b",
            node_b.sb.runtime_name(),
            "/usr/local/bin/node-api",
        ),
    ];
    for (i, (node, ip)) in [("node-a", ips[0]), ("node-b", ips[1])].iter().enumerate() {
        pods.push(
            PodBuilder::new(
                "openshift-insights",
                &format!("insights-runtime-extractor-{i}"),
            )
            .node(node)
            .phase("Running")
            .label("app.kubernetes.io/name", "insights-runtime-extractor")
            .pod_ip(&ip.to_string())
            // A malformed container ID: the gatherer must not send it (one bad ID would
            // cost the node its whole answer).
            .container(
                "serve",
                "quay.io/x/extractor:1",
                &format!("quay.io/x/extractor@sha256:{}", "2".repeat(64)),
                "containerd://ee",
                ContainerState::Running,
            )
            .build(),
        );
    }
    api.set_pods(pods);

    let settings = GatherSettings {
        source: PodSource::Api(rt.block_on(api.client("operator-token"))),
        runtime_info: Some(RuntimeInfoSettings {
            filter: ExtractorFilter::new(
                "openshift-insights",
                "app.kubernetes.io/name=insights-runtime-extractor",
            )
            .unwrap(),
            port,
            ca_file,
            server_name: SERVER_NAME.into(),
            token_file,
            concurrency: 32,
            node_timeout: Duration::from_secs(60),
        }),
        list: ListOptions::default(),
    };
    let report = rt.block_on(gather(&settings)).unwrap();
    let status = &report.status.runtime_info;
    assert!(status.gathered, "{status:?}");
    assert_eq!(status.nodes_asked, 2, "{status:?}");
    assert_eq!(status.nodes_answered, 2, "{status:?}");
    assert!(status.nodes_failed.is_empty(), "{status:?}");
    // Shapes: shop web (×2), shop idle, data api → 3 containers requested, not 4.
    assert_eq!(status.containers_requested, 3, "{status:?}");

    let doc: serde_json::Value =
        serde_json::from_slice(&report.workload.to_json().unwrap()).unwrap();
    assert_eq!(doc["pods"], 6);
    let shop = &doc["namespaces"][workload_hash("shop")];
    assert_eq!(shop["count"], 3);
    let shapes = shop["shapes"].as_array().unwrap();
    let web_shape = shapes
        .iter()
        .find(|s| s["duplicates"] == 1)
        .expect("web-1/web-2 share a shape");
    let info = &web_shape["containers"][0]["runtimeInfo"];
    assert_eq!(info["kind"], anonymize("Node.js"), "{doc:#}");
    assert_eq!(info["kindVersion"], anonymize(node_version.trim()));
    assert_eq!(info["os"], anonymize("alpine"));
    let idle_shape = shapes
        .iter()
        .find(|s| s.get("duplicates").is_none())
        .unwrap();
    assert_eq!(
        idle_shape["containers"][0]["runtimeInfo"],
        serde_json::json!({"os": anonymize("alpine"), "osVersion": anonymize("3.99.0")})
    );
    let data = &doc["namespaces"][workload_hash("data")];
    assert_eq!(
        data["shapes"][0]["containers"][0]["runtimeInfo"]["kind"],
        anonymize("Node.js")
    );
    // The extractors checked the gatherer's token with TokenReview (cached: one per node at most).
    let reviews = api
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/tokenreviews"))
        .count();
    assert!((1..=2).contains(&reviews), "{reviews} TokenReviews");
    // The extractor pods' own (malformed, test-made) IDs were set aside, not sent.
    let notes = serde_json::to_string(
        &report
            .status
            .to_json()
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(notes.contains("were not requested"), "{notes}");
    drop((node_a, node_b));
}

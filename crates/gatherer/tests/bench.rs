//! Benchmarks (ignored by default; run with `bash bench/gatherer.sh`, which builds in release).
//! Each one drives the real `workload-gatherer` binary under `/usr/bin/time -v` against the
//! testkit API server and, for runtime info, real HTTPS extractors on loopback addresses.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use gatherer::kube_types::parse_pod_list;
use gatherer::shape::ShapeBuilder;
use k8s_openapi::api::core::v1::Pod;
use testkit::{ContainerState, PodBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_workload-gatherer");

/// A realistic pod: 2 containers, command and args, labels; one shape per `per_shape` pods.
fn pod(i: u64, nodes: u64, per_shape: u64) -> Pod {
    let shape = i / per_shape;
    PodBuilder::new(&format!("ns-{:04}", i / 40), &format!("app-{i:06}"))
        .node(&format!("node-{}", i % nodes))
        .label("app", &format!("app-{shape}"))
        .pod_ip(&format!("10.128.{}.{}", (i / 250) % 250, i % 250))
        .container(
            "main",
            "quay.io/shop/app:1",
            &format!("quay.io/shop/app@{}", digest(shape)),
            &cid(i),
            ContainerState::Running,
        )
        .command(["/usr/bin/java", "-jar", "/app.jar"])
        .args(["--spring.config.location=/etc/app"])
        .container(
            "proxy",
            "quay.io/shop/proxy:1",
            &format!("quay.io/shop/proxy@{}", digest(1_000_000 + shape % 7)),
            &cid(10_000_000 + i),
            ContainerState::Running,
        )
        .build()
}

struct Measured {
    user_s: f64,
    sys_s: f64,
    max_rss_kib: u64,
    wall: Duration,
    ok: bool,
}

fn field(report: &str, name: &str) -> String {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

/// Runs the binary under `/usr/bin/time -v`.
async fn run_timed(args: Vec<String>) -> Measured {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(BIN)
            .args(&args)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAMESPACE")
            .output()
            .unwrap();
        let wall = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{err}");
        }
        Measured {
            user_s: field(&err, "User time (seconds):")
                .parse()
                .unwrap_or(f64::NAN),
            sys_s: field(&err, "System time (seconds):")
                .parse()
                .unwrap_or(f64::NAN),
            max_rss_kib: field(&err, "Maximum resident set size (kbytes):")
                .parse()
                .unwrap_or(0),
            wall,
            ok: out.status.success(),
        }
    })
    .await
    .unwrap()
}

fn kubeconfig(api: &testkit::ApiServer, dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    api.write_kubeconfig(&path, API_TOKEN);
    path.display().to_string()
}

fn print(label: &str, m: &Measured) {
    println!(
        "| {label} | {:.2} s | {:.2} s | {:.1} MiB | {:.2} s |",
        m.user_s,
        m.sys_s,
        m.max_rss_kib as f64 / 1024.0,
        m.wall.as_secs_f64()
    );
}

/// Shape building alone, in process: 16 pages of 500 pods parsed into the builder.
#[test]
#[ignore]
fn bench_shape_building_16_pages() {
    let pages: Vec<String> = (0..16u64)
        .map(|p| {
            let items: Vec<Pod> = (p * 500..(p + 1) * 500).map(|i| pod(i, 50, 4)).collect();
            serde_json::to_string(&serde_json::json!({
                "apiVersion": "v1", "kind": "PodList",
                "metadata": {"resourceVersion": "1", "continue": "x"},
                "items": items,
            }))
            .unwrap()
        })
        .collect();
    let bytes: usize = pages.iter().map(String::len).sum();
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut b = ShapeBuilder::new(8000);
        for page in &pages {
            parse_pod_list(page, &mut b).unwrap();
        }
        let g = b.finish();
        best = best.min(start.elapsed());
        assert_eq!(g.info.pod_count, 8000);
        assert_eq!(g.info.shape_count(), 2000);
    }
    println!(
        "shape building, 8000 pods in 16 pages ({:.1} MiB of JSON): best of 5 = {:.1} ms",
        bytes as f64 / (1 << 20) as f64,
        best.as_secs_f64() * 1000.0
    );
    assert!(best < Duration::from_secs(1));
}

/// 8000 pods (16 pages) through the binary: CPU and peak RSS of the whole process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_8000_pods_binary() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server().await;
    api.set_pods((0..8000).map(|i| pod(i, 50, 4)).collect());
    let kc = kubeconfig(&api, dir.path());
    let out = dir.path().join("out").display().to_string();
    let m = run_timed(vec![
        "--kubeconfig".into(),
        kc,
        "--no-runtime-info".into(),
        "--quiet".into(),
        "--output".into(),
        out,
    ])
    .await;
    assert!(m.ok);
    println!("| scenario | user CPU | system CPU | peak RSS | wall |\n|---|---|---|---|---|");
    print("8000 pods, 16 pages, no runtime info", &m);
    let pages = pod_list_requests(&api.requests()).len();
    assert_eq!(pages, 16);
    assert!(m.user_s + m.sys_s <= 1.0, "CPU {:.2} s", m.user_s + m.sys_s);
    assert!(m.max_rss_kib <= 100 * 1024, "RSS {} KiB", m.max_rss_kib);
}

/// 50 000 pods: the gatherer stops after the limit (17 pages) without reading the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_50000_pods_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_server().await;
    api.set_pods((0..50_000).map(|i| pod(i, 50, 4)).collect());
    let kc = kubeconfig(&api, dir.path());
    let out = dir.path().join("out");
    let m = run_timed(vec![
        "--kubeconfig".into(),
        kc,
        "--no-runtime-info".into(),
        "--quiet".into(),
        "--output".into(),
        out.display().to_string(),
    ])
    .await;
    assert!(m.ok);
    print("50 000 pods (stops at 8000), no runtime info", &m);
    let pages = pod_list_requests(&api.requests()).len();
    println!("pod pages requested: {pages} (of 100)");
    assert_eq!(pages, 17);
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config/gather_status.json")).unwrap())
            .unwrap();
    assert_eq!(status["pods"], 8000);
    assert_eq!(status["limitReached"], true);
}

/// 500 nodes whose extractors each answer after 1 s, default concurrency (32).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_500_nodes_answering_after_1s() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    let ips: Vec<String> = (0..500)
        .map(|i| format!("127.1.{}.{}", i / 200, 2 + i % 200))
        .collect();
    let mut pods: Vec<Pod> = (0..4000).map(|i| pod(i, 500, 1)).collect();
    for (n, ip) in ips.iter().enumerate() {
        pods.push(extractor_pod(&format!("node-{n}"), ip));
    }
    api.set_pods(pods);
    let nodes: Vec<(String, String)> = ips
        .iter()
        .enumerate()
        .map(|(n, ip)| (format!("node-{n}"), ip.clone()))
        .collect();
    let spec: Vec<(&str, &str, Behaviour)> = nodes
        .iter()
        .map(|(n, ip)| {
            (
                n.as_str(),
                ip.as_str(),
                Behaviour::Slow(Duration::from_secs(1)),
            )
        })
        .collect();
    let extractors = start_extractors(&spec, &tls.cert, Knowledge::new(), None).await;
    let kc = kubeconfig(&api, dir.path());
    let out = dir.path().join("out");
    let m = run_timed(vec![
        "--kubeconfig".into(),
        kc,
        "--quiet".into(),
        "--output".into(),
        out.display().to_string(),
        "--extractor-ca-file".into(),
        tls.ca_file.display().to_string(),
        "--token-file".into(),
        tls.token_file.display().to_string(),
        "--extractor-port".into(),
        extractors.port.to_string(),
    ])
    .await;
    assert!(m.ok);
    print(
        "4500 pods, 500 nodes answering after 1 s, concurrency 32",
        &m,
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config/gather_status.json")).unwrap())
            .unwrap();
    println!(
        "nodes asked {}, answered {}, runtime info phase {} ms",
        status["runtimeInfo"]["nodesAsked"],
        status["runtimeInfo"]["nodesAnswered"],
        status["durationsMs"]["runtimeInfo"]
    );
    assert_eq!(status["runtimeInfo"]["nodesAnswered"], 500);
    assert!(m.wall <= Duration::from_secs(20), "{:?}", m.wall);
}

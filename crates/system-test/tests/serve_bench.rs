//! Benchmark of `runtime-extractor-serve` against the real scanner and a real containerd.
//! Ignored by default; run it with `bench/serve.sh` (release build):
//!
//! `cargo test --release -p system-test --test serve_bench -- --ignored --nocapture`
//!
//! Figures (medians over keep-alive HTTPS connections, TLS handshake excluded):
//! - the direct scanner calls serve makes (`listOnly`, and a scan of one container);
//! - serve's answer for 1 container, cached and uncached, and its overhead over those calls;
//! - serve's cached answer for 100 containers;
//! - cached answers per second with 8 concurrent keep-alive clients.

use std::time::{Duration, Instant};

use scanner_proto::{self, ScanRequest};
use serde_json::json;
use testkit::bench::median;
use testkit::cri_sandbox::CriSandbox;
use testkit::daemons::ScannerDaemon;
use testkit::TestCa;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn time_n<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..n.min(10) {
        f().await; // warm-up
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    median(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with bench/serve.sh"]
async fn serve_benchmark() {
    testkit::install_crypto_provider();
    let sb = CriSandbox::start_for("serve_benchmark");
    let t = Instant::now();
    let ids = sb.run_sleeper_pods(50, 5).unwrap();
    eprintln!("100 containers started in {:?}", t.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("scanner.sock");
    let scanner = ScannerDaemon::start(
        testkit::bins::binary(testkit::bins::SCANNER),
        sb.socket_path(),
        &socket,
    )
    .unwrap();

    let ca = TestCa::new("bench-ca");
    let ck = ca.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
    let (crt, key) = ck.write_to(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "bench-token").unwrap();
    let auth = format!("token-file={}", token.display());
    let args = |extra: &[&str]| {
        let mut v = vec!["--auth", auth.as_str()];
        v.extend_from_slice(extra);
        testkit::serve::serve_with(&crt, &key, &socket, &v)
    };
    let cached = service::start(args(&[])).await.unwrap();
    // Results expire at once: every request scans (the uncached path).
    let uncached = service::start(args(&["--cache-max-age", "1ms"]))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let url_cached = format!(
        "https://127.0.0.1:{}/gather_runtime_info",
        cached.api_addr().port()
    );
    let url_uncached = format!(
        "https://127.0.0.1:{}/gather_runtime_info",
        uncached.api_addr().port()
    );
    let post = |url: String, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let resp = client
                .post(url)
                .bearer_auth("bench-token")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let _ = resp.bytes().await.unwrap();
        }
    };
    let one = json!({ "containerIds": [ids[0]] });
    let hundred = json!({ "containerIds": ids });
    let hex0 = ids[0].split("://").nth(1).unwrap().to_owned();
    let hexes: Vec<String> = ids
        .iter()
        .map(|i| i.split("://").nth(1).unwrap().to_owned())
        .collect();

    let direct = |ids: Vec<String>, list_only: bool| {
        let socket = socket.clone();
        async move {
            let r = scanner_proto::request(
                &socket,
                &ScanRequest {
                    container_ids: ids,
                    list_only,
                },
            )
            .await
            .unwrap();
            assert!(r.error.is_none());
        }
    };
    let list1 = time_n(300, || direct(vec![hex0.clone()], true)).await;
    let list100 = time_n(100, || direct(hexes.clone(), true)).await;
    let scan1 = time_n(60, || direct(vec![hex0.clone()], false)).await;
    let cached1 = time_n(300, || post(url_cached.clone(), one.clone())).await;
    // Warm the keep-alive connection (a 404 costs no scanner call), then one sample per
    // container, each its first request.
    let _ = client
        .get(url_uncached.replace("/gather_runtime_info", "/warm-up"))
        .bearer_auth("bench-token")
        .send()
        .await
        .unwrap();
    let mut samples = Vec::new();
    for id in &ids {
        let t = Instant::now();
        post(url_uncached.clone(), json!({ "containerIds": [id] })).await;
        samples.push(t.elapsed());
    }
    let uncached1 = median(samples);
    // The same two scanner calls made directly, for each container in turn: what serve's
    // uncached path costs without serve.
    let mut samples = Vec::new();
    for hex in &hexes {
        let t = Instant::now();
        direct(vec![hex.clone()], true).await;
        direct(vec![hex.clone()], false).await;
        samples.push(t.elapsed());
    }
    let direct_pair = median(samples);
    let cached100 = time_n(100, || post(url_cached.clone(), hundred.clone())).await;

    // Throughput: 8 keep-alive clients hammering cached answers for 5 s each.
    let rps = |body: serde_json::Value| {
        let url = url_cached.clone();
        let client = client.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(5);
            let workers = (0..8).map(|_| {
                let (url, client, body) = (url.clone(), client.clone(), body.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let r = client
                            .post(&url)
                            .bearer_auth("bench-token")
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let _ = r.bytes().await.unwrap();
                        n += 1;
                    }
                    n
                })
            });
            let total: u64 = futures::future::join_all(workers)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .sum();
            total as f64 / 5.0
        }
    };
    let rps1 = rps(one.clone()).await;
    let rps100 = rps(hundred.clone()).await;

    // Uncached: serve's time on top of the two scanner calls it makes. Cached: serve makes no
    // scanner call at all (validated from /proc), so all of it is serve's own time.
    let overhead_uncached = ms(uncached1) - ms(direct_pair);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("\n| Measurement (median, keep-alive HTTPS, TLS handshake excluded) | Time |");
    println!("|---|---|");
    println!(
        "| direct scanner `listOnly`, 1 container | {:.2} ms |",
        ms(list1)
    );
    println!(
        "| direct scanner `listOnly`, 100 containers | {:.2} ms |",
        ms(list100)
    );
    println!("| direct scanner scan, 1 container | {:.2} ms |", ms(scan1));
    println!(
        "| direct scanner `listOnly` + scan, each of the 100 containers | {:.2} ms |",
        ms(direct_pair)
    );
    println!(
        "| serve POST, 1 container, uncached (first request per container, 100 samples) | {:.2} ms |",
        ms(uncached1)
    );
    println!(
        "| serve POST, 1 container, cached (no scanner call) | {:.2} ms |",
        ms(cached1)
    );
    println!(
        "| serve POST, 100 containers, cached | {:.2} ms |",
        ms(cached100)
    );
    println!(
        "| **serve overhead per request**: uncached (over the same listOnly + scan made directly) / cached 1 (all of it) | {:.2} / {:.2} ms (target ≤ 1 ms: {}) |",
        overhead_uncached,
        ms(cached1),
        verdict(overhead_uncached <= 1.0 && cached1 <= Duration::from_millis(1))
    );
    println!(
        "| **cached answer, 100 containers** | {:.2} ms (target ≤ 5 ms: {}) |",
        ms(cached100),
        verdict(cached100 <= Duration::from_millis(5))
    );
    println!("| cached answers/s, 8 clients, 1 container | {rps1:.0} |");
    println!("| cached answers/s, 8 clients, 100 containers | {rps100:.0} |");
    cached.shutdown().await.unwrap();
    uncached.shutdown().await.unwrap();
    drop(scanner);
}

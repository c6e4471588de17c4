//! `runtime-extractor-serve` without a real scanner: TLS (rotation, versions, suites, startup
//! errors), the request deadline (504) and client-disconnect cancellation, graceful shutdown,
//! the binary's `--help` and SIGTERM, and the connection cap. Real TLS and real HTTP; the one
//! stand-in is `testkit::serve::FaultScanner` (see there for why). The API against the real
//! scanner is in `crates/system-test/tests/serve.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use runtime_info::NodeRuntimeInfo;
use rustls::SupportedProtocolVersion;
use serde_json::{json, Value};
use testkit::daemons::metric;
use testkit::serve::*;
use testkit::TestCa;

const SERVE_BIN: &str = env!("CARGO_BIN_EXE_runtime-extractor-serve");

// ---------------------------------------------------------------------------------------------
// TLS: rotation, minimum version, cipher suites, startup errors (no scanner involved)

/// A Kubernetes-style secret volume: `dir/tls.crt -> ..data/tls.crt`, `..data -> ..<ts>`.
fn secret_volume(dir: &Path, generation: &str, ck: &testkit::CertKey) {
    use std::os::unix::fs::symlink;
    let data_dir = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&data_dir).unwrap();
    ck.write_to(&data_dir);
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{f}"), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_rotation_without_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("secret");
    std::fs::create_dir_all(&vol).unwrap();
    let ca1 = TestCa::new("ca-one");
    let ca2 = TestCa::new("ca-two");
    let cert1 = ca1.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
    let cert2 = ca2.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
    secret_volume(&vol, "2024_01_01", &cert1);
    let served = Served::start(
        serve_args(&[
            "--tls-cert",
            vol.join("tls.crt").to_str().unwrap(),
            "--tls-key",
            vol.join("tls.key").to_str().unwrap(),
            "--tls-reload-interval",
            "100ms",
            "--scanner-socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "--auth",
            "none",
            "--insecure-allow-unauthenticated",
        ]),
        &ca1,
    )
    .await;
    let addr = served.server().api_addr();
    let h = handshake(addr, &ca1, rustls::ALL_VERSIONS, None)
        .await
        .unwrap();
    assert_eq!(h.peer, cert1.cert_der());
    // A keep-alive connection opened before the rotation.
    let old_client = client_for(&ca1);
    assert_eq!(
        old_client
            .get(format!("{}/x", served.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A half-written rotation (key from another pair) is not installed.
    let bad = testkit::CertKey {
        cert_pem: cert2.cert_pem.clone(),
        key_pem: cert1.key_pem.clone(),
    };
    secret_volume(&vol, "2024_01_02", &bad);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = handshake(addr, &ca1, rustls::ALL_VERSIONS, None)
        .await
        .unwrap();
    assert_eq!(
        h.peer,
        cert1.cert_der(),
        "mismatched pair ignored, old cert still served"
    );

    // The real rotation: swap ..data.
    secret_volume(&vol, "2024_01_03", &cert2);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(h) = handshake(addr, &ca2, rustls::ALL_VERSIONS, None).await {
            assert_eq!(h.peer, cert2.cert_der());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        handshake(addr, &ca1, rustls::ALL_VERSIONS, None)
            .await
            .is_err(),
        "new connections get the new cert"
    );
    assert_eq!(
        client_for(&ca2)
            .get(format!("{}/x", served.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The connection opened before keeps working.
    assert_eq!(
        old_client
            .get(format!("{}/x", served.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let m = served.metrics().await;
    assert_eq!(
        metric(&m, "runtime_extractor_tls_certificate_reloads_total"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_and_cipher_suites() {
    use rustls::crypto::ring::cipher_suite as cs;
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let base = |extra: &[&str]| {
        let mut v = vec![
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--auth",
            "none",
            "--insecure-allow-unauthenticated",
        ];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let args = |extra: &[&str]| {
        let v = base(extra);
        serve_args(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let tls12: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];

    // TLS 1.3 minimum (the Modern profile): a TLS 1.2-only client is refused.
    let modern = Served::start(args(&["--tls-min-version", "VersionTLS13"]), &ca).await;
    let addr = modern.server().api_addr();
    assert!(handshake(addr, &ca, tls12, None).await.is_err());
    let h = handshake(addr, &ca, tls13, None).await.unwrap();
    assert_eq!(h.version, rustls::ProtocolVersion::TLSv1_3);

    // TLS 1.2 allowed, restricted to one suite (the test certificate is ECDSA).
    let restricted = Served::start(
        args(&[
            "--tls-min-version", "VersionTLS12",
            "--tls-cipher-suites", "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ]),
        &ca,
    )
    .await;
    let addr = restricted.server().api_addr();
    let h = handshake(addr, &ca, tls12, None).await.unwrap();
    assert_eq!(h.version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(
        h.suite,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    let err = handshake(
        addr,
        &ca,
        tls12,
        Some(vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]),
    )
    .await
    .err()
    .expect("a suite outside the list is refused");
    assert!(
        err.to_lowercase().contains("handshake") || err.contains("alert"),
        "{err}"
    );
    // TLS 1.3 suites are not restricted (as in Go).
    let h = handshake(
        addr,
        &ca,
        tls13,
        Some(vec![cs::TLS13_CHACHA20_POLY1305_SHA256]),
    )
    .await
    .unwrap();
    assert_eq!(h.suite, rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    // HTTP/2 and HTTP/1.1 both work.
    let h2 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(format!("{}/x", restricted.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 404);

    // Startup errors are clear, one line each.
    for (extra, want) in [
        (
            vec![
                "--tls-cipher-suites",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_BOGUS",
            ],
            "TLS_BOGUS",
        ),
        (
            vec!["--tls-cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"],
            "none of the cipher suites",
        ),
        (vec!["--tls-min-version", "VersionTLS14"], "VersionTLS14"),
    ] {
        let err = service::start(args(&extra))
            .await
            .expect_err("startup refused");
        assert!(err.to_string().contains(want), "{err}");
    }
    let err = service::start(serve_args(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--auth",
        "none",
    ]))
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("--insecure-allow-unauthenticated"),
        "{err}"
    );
    let other = ca.issue_server(&["localhost"], &[]);
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let err = service::start(serve_args(&[
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        other_key.to_str().unwrap(),
    ]))
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = service::start(serve_args(&["--tls-cert", "/nonexistent/tls.crt"]))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/tls.crt"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Faults a real scanner cannot produce on demand (FaultScanner stand-in)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_504_and_cancellation_with_fault_scanner() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultScanner::start(dir.path(), vec![fake_container(1), fake_container(2)], None);
    let ca = TestCa::new("ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let common = |timeout: &'static str| {
        serve_with(
            &crt,
            &key,
            &fault.socket,
            &[
                "--auth",
                "none",
                "--insecure-allow-unauthenticated",
                "--request-timeout",
                timeout,
            ],
        )
    };
    let id1 = fake_container(1).container_id;
    let id2 = fake_container(2).container_id;

    // The scan overruns the 1 s deadline: 504 with a JSON error, and the scan is cancelled
    // (its scanner connection closed) because nobody else waits for it.
    let short = Served::start(common("1s"), &ca).await;
    let t = Instant::now();
    let resp = short.post("", "", json!({ "containerIds": [id1] })).await;
    let elapsed = t.elapsed();
    assert_json_error(resp, 504, "deadline of 1s: 0 of 1 containers were analysed").await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    fault
        .wait_until_no_scan_is_open("the timed-out scan is cancelled")
        .await;
    assert_eq!(fault.scans_cancelled.load(Ordering::SeqCst), 1);
    let m = short.metrics().await;
    assert_eq!(metric(&m, "runtime_extractor_request_timeouts_total"), 1.0);
    // The scanner's count of stuck sandbox helpers, from its last answer (the listing).
    assert_eq!(
        metric(&m, "runtime_extractor_scanner_stuck_helpers"),
        f64::from(testkit::serve::FAULT_SCANNER_STUCK_HELPERS)
    );
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_http_requests_total{method="POST",code="504"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_scanner_requests_total{result="cancelled"}"#
        ),
        1.0,
        "{m}"
    );

    // Two clients want the same container: one scan, shared. The first to give up leaves the
    // scan running for the second; when the second gives up too, the scan is cancelled.
    let long = Served::start(common("60s"), &ca).await;
    let started_before = fault.scans_started.load(Ordering::SeqCst);
    let quick = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let patient = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_millis(2500))
        .build()
        .unwrap();
    let url = format!("{}{PATH}", long.url);
    let a = quick
        .post(&url)
        .json(&json!({ "containerIds": [id2] }))
        .send();
    let b = patient
        .post(&url)
        .json(&json!({ "containerIds": [id2, id1] }))
        .send();
    let watch = async {
        // While the patient client waits, exactly two scans are open (id1 and id2), not three.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        (
            fault.scans_started.load(Ordering::SeqCst) - started_before,
            fault.scans_open.load(Ordering::SeqCst),
        )
    };
    let (ra, rb, (started, open)) = tokio::join!(a, b, watch);
    assert!(ra.is_err() && rb.is_err(), "both clients gave up");
    assert_eq!(started, 2, "id2's scan was shared between the two requests");
    assert_eq!(
        open, 2,
        "the first client leaving did not cancel the shared scan"
    );
    fault
        .wait_until_no_scan_is_open("scans cancelled once nobody waits")
        .await;
    wait_for(
        || long.server().scans_in_flight() == 0,
        "no scan left in flight",
    )
    .await;
    let m = long.metrics().await;
    assert_eq!(
        metric(&m, "runtime_extractor_shared_scans_total"),
        1.0,
        "{m}"
    );
}

/// A POST for every container, and 300 ms later a graceful shutdown, with `alongside` running
/// at the same time: the POST's outcome, how long the shutdown took, `alongside`'s result.
async fn shut_down_during_a_post<T>(
    served: &mut Served,
    alongside: impl std::future::Future<Output = T>,
) -> (reqwest::Result<reqwest::Response>, Duration, T) {
    let url = format!("{}{PATH}", served.url);
    let inflight = served
        .client
        .post(&url)
        .json(&json!({ "containerIds": [] }))
        .send();
    let server = served.server.take().unwrap();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        server.shutdown().await.unwrap();
        t.elapsed()
    };
    tokio::join!(inflight, stop, alongside)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_or_cancels_within_the_bound() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let sub = dir.path().join("a");
    std::fs::create_dir_all(&sub).unwrap();
    // Scans take 1 s: the in-flight request finishes during a 5 s grace period.
    let slow = FaultScanner::start(&sub, vec![fake_container(1)], Some(Duration::from_secs(1)));
    let args = |sock: &Path, grace: &str| {
        serve_with(
            &crt,
            &key,
            sock,
            &[
                "--auth",
                "none",
                "--insecure-allow-unauthenticated",
                "--shutdown-timeout",
                grace,
            ],
        )
    };
    let mut served = Served::start(args(&slow.socket, "5s"), &ca).await;
    let addr = served.server().api_addr();
    let refused = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tokio::net::TcpStream::connect(addr).await.is_err()
    };
    let (resp, took, refused) = shut_down_during_a_post(&mut served, refused).await;
    let resp = resp.expect("the in-flight request completed");
    assert_eq!(resp.status(), 200);
    assert!(refused, "no new connections once shutdown started");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A scan that never ends: the request is cut at the 1 s bound and its scan cancelled.
    let sub = dir.path().join("b");
    std::fs::create_dir_all(&sub).unwrap();
    let hang = FaultScanner::start(&sub, vec![fake_container(1)], None);
    let mut served = Served::start(args(&hang.socket, "1s"), &ca).await;
    let (resp, took, ()) = shut_down_during_a_post(&mut served, async {}).await;
    assert!(resp.is_err(), "the hanging request was cut: {resp:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    hang.wait_until_no_scan_is_open("scan cancelled on shutdown")
        .await;
    assert_eq!(hang.scans_cancelled.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// the binary: help, SIGTERM

#[test]
fn serve_help_documents_every_flag_with_env_and_default() {
    let out = Command::new(SERVE_BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "RUNTIME_EXTRACTOR_LISTEN"),
        ("--health-listen", "RUNTIME_EXTRACTOR_HEALTH_LISTEN"),
        ("--scanner-socket", "RUNTIME_EXTRACTOR_SCANNER_SOCKET"),
        ("--tls-cert", "RUNTIME_EXTRACTOR_TLS_CERT"),
        ("--tls-key", "RUNTIME_EXTRACTOR_TLS_KEY"),
        ("--tls-min-version", "RUNTIME_EXTRACTOR_TLS_MIN_VERSION"),
        ("--tls-cipher-suites", "RUNTIME_EXTRACTOR_TLS_CIPHER_SUITES"),
        (
            "--tls-reload-interval",
            "RUNTIME_EXTRACTOR_TLS_RELOAD_INTERVAL",
        ),
        ("--auth", "RUNTIME_EXTRACTOR_AUTH"),
        ("--allow-user", "RUNTIME_EXTRACTOR_ALLOW_USERS"),
        ("--auth-cache-ttl", "RUNTIME_EXTRACTOR_AUTH_CACHE_TTL"),
        ("--kubeconfig", "RUNTIME_EXTRACTOR_KUBECONFIG"),
        ("--request-timeout", "RUNTIME_EXTRACTOR_REQUEST_TIMEOUT"),
        (
            "--max-concurrent-scans",
            "RUNTIME_EXTRACTOR_MAX_CONCURRENT_SCANS",
        ),
        ("--cache-max-age", "RUNTIME_EXTRACTOR_CACHE_MAX_AGE"),
        ("--cache-capacity", "RUNTIME_EXTRACTOR_CACHE_CAPACITY"),
        ("--shutdown-timeout", "RUNTIME_EXTRACTOR_SHUTDOWN_TIMEOUT"),
        (
            "--insecure-allow-unauthenticated",
            "RUNTIME_EXTRACTOR_INSECURE_ALLOW_UNAUTHENTICATED",
        ),
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
        assert!(
            help.contains(&format!("[env: {env}")),
            "{env} missing from\n{help}"
        );
    }
    for default in [
        "[default: 0.0.0.0:8443]",
        "[default: 0.0.0.0:8081]",
        "[default: /run/runtime-extractor/scanner.sock]",
        "[default: 100s]",
        "[default: system:serviceaccount:openshift-insights:operator]",
        "[default: kubernetes]",
    ] {
        assert!(help.contains(default), "{default} missing from\n{help}");
    }
}

fn free_port() -> u16 {
    testkit::daemons::free_port(&[testkit::daemons::loopback(1)])
}

/// SIGTERM to the real binary while a request is in flight (held 1.5 s by the FaultScanner
/// stand-in, the only way to have a request in flight at a known moment): the request
/// completes, the process exits 0 soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultScanner::start(
        dir.path(),
        vec![fake_container(1)],
        Some(Duration::from_millis(1500)),
    );
    let ca = TestCa::new("ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k").unwrap();
    let (api, health) = (free_port(), free_port());
    let mut child = Command::new(SERVE_BIN)
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--health-listen", &format!("127.0.0.1:{health}")])
        .arg("--tls-cert")
        .arg(&crt)
        .arg("--tls-key")
        .arg(&key)
        .arg("--scanner-socket")
        .arg(&fault.socket)
        .arg(format!("--auth=token-file={}", token.display()))
        .args(["--shutdown-timeout", "10s", "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{health}/healthz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{health}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let client = client_for(&ca);
    let inflight = client
        .post(format!("https://127.0.0.1:{api}{PATH}"))
        .bearer_auth("t0k")
        .json(&json!({ "containerIds": [] }))
        .send();
    let pid = rustix::process::Pid::from_child(&child);
    let term = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        Instant::now()
    };
    let (resp, sent_at) = tokio::join!(inflight, term);
    let resp = resp.expect("in-flight request completed despite SIGTERM");
    assert_eq!(resp.status(), 200);
    let got: NodeRuntimeInfo = resp.json().await.unwrap();
    assert_eq!(got["ns"]["pod-1"].len(), 1);
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                let mut log = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut log)
                    .unwrap();
                return (s, log);
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let (status, log) = status;
    assert!(status.success(), "{status:?}\n{log}");
    assert!(sent_at.elapsed() < Duration::from_secs(5));
    assert!(log.contains("signal received, shutting down"), "{log}");
    // JSON logs, one object per line, and the token never appears.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(!log.contains("t0k"), "{log}");
}

/// Connections over `--max-connections` are closed at once; a freed slot is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("conn-cap-ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let token = dir.path().join("token");
    std::fs::write(&token, "cap-token").unwrap();
    let auth = format!("token-file={}", token.display());
    let socket = dir.path().join("no-scanner.sock");
    let served = Served::start(
        serve_with(
            &crt,
            &key,
            &socket,
            &["--auth", &auth, "--max-connections", "2"],
        ),
        &ca,
    )
    .await;
    // An invalid body is answered (400) without the scanner: enough to hold a connection.
    let ask = |client: reqwest::Client| {
        let url = format!("{}{PATH}", served.url);
        async move {
            client
                .post(url)
                .bearer_auth("cap-token")
                .header("Content-Type", "application/json")
                .body("not json")
                .send()
                .await
        }
    };
    let mut clients: Vec<reqwest::Client> = (0..3).map(|_| client_for(&ca)).collect();
    for c in &clients[..2] {
        assert_eq!(ask(c.clone()).await.unwrap().status(), 400);
    }
    // Both keep-alive connections are still open: a third is refused.
    assert!(
        ask(clients[2].clone()).await.is_err(),
        "a third connection was served"
    );
    // Closing one frees its slot.
    drop(clients.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match ask(clients[1].clone()).await {
            Ok(resp) => {
                assert_eq!(resp.status(), 400);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "slot never freed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

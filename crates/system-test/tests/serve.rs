//! `runtime-extractor-serve` against the real privileged scanner (`runtime-extractor scanner`)
//! on a real containerd (testkit's CriSandbox): the API contract, TokenReview and
//! SubjectAccessReview through testkit's Kubernetes API server, and a load of concurrent
//! POSTs. The service's tests that need no scanner (TLS, deadlines, shutdown, the binary) are
//! the service crate's own (`crates/service/tests/api.rs`); both use `testkit::serve`.
//!
//! These tests need root plus containerd/runc (`bash scripts/install-test-deps.sh`); they fail
//! with the reason where they cannot run.

use std::path::Path;
use std::time::{Duration, Instant};

use runtime_info::NodeRuntimeInfo;

use scanner_proto::{self, ScanRequest};
use serde_json::{json, Value};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::daemons::{metric, ScannerDaemon};
use testkit::serve::*;
use testkit::{ApiServer, TestCa};

/// The real scanner daemon, as a child process.
/// The real scanner daemon (testkit), on a socket in `dir`.
struct RealScanner;

impl RealScanner {
    fn start(sb: &CriSandbox, dir: &Path) -> ScannerDaemon {
        ScannerDaemon::start(
            testkit::bins::binary(testkit::bins::SCANNER),
            sb.socket_path(),
            &dir.join("scanner.sock"),
        )
        .expect("starting runtime-extractor scanner")
    }
}

// ---------------------------------------------------------------------------------------------
// the API against the real scanner

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_contract_with_the_real_scanner() {
    init_tracing();
    let sb = CriSandbox::start_for("api_contract_with_the_real_scanner");
    let web = sb
        .run_pod(
            &PodSpec::new("shop", "web-7d9f")
                .container(ContainerSpec::new("app", &["/bin/sleep", "3601"]))
                .container(ContainerSpec::new("sidecar", &["/bin/sleep", "3602"])),
        )
        .unwrap();
    let db = sb
        .run_pod(
            &PodSpec::new("data", "db-0")
                .container(ContainerSpec::new("pg", &["/bin/sleep", "3603"])),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut scanner = RealScanner::start(&sb, dir.path());
    let ids: Vec<String> = web
        .containers
        .iter()
        .chain(&db.containers)
        .map(|c| sb.kube_id(&c.id))
        .collect();

    // What the scanner itself says (clear text), to compare the HTTP answers with.
    let direct = scanner_proto::request(&scanner.socket, &ScanRequest::default())
        .await
        .unwrap();
    assert_eq!(direct.error, None);
    let clear = direct.node_runtime_info();
    assert_eq!(
        clear
            .values()
            .map(|p| p.values().map(|c| c.len()).sum::<usize>())
            .sum::<usize>(),
        3,
        "{clear:#?}"
    );
    let app = &clear["shop"]["web-7d9f"][&ids[0]];
    assert!(
        !app.os.is_empty(),
        "the scanner found the busybox image's OS: {app:?}"
    );

    let ca = TestCa::new("serve-test-ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let auth = format!("token-file={}", token_file.display());
    let sock = scanner.socket.to_str().unwrap().to_owned();
    let served = Served::start(
        serve_args(&[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--scanner-socket",
            &sock,
            "--auth",
            &auth,
        ]),
        &ca,
    )
    .await;
    let tok = "s3cret";

    // POST: hashed by default, keys as the caller wrote them, JSON content type.
    let resp = served.post(tok, "", json!({ "containerIds": ids })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().get("deprecation").is_none());
    let got: NodeRuntimeInfo = resp.json().await.unwrap();
    assert_eq!(got, hashed(&clear));
    assert_eq!(
        got["shop"]["web-7d9f"][&ids[0]].os,
        runtime_info::anonymize(&app.os)
    );

    // The hash rule of the reference.
    for (q, hash) in [
        ("?hash=true", true),
        ("?hash=", true),
        ("?hash=false", false),
        ("?hash=TRUE", false),
        ("?hash=0", false),
    ] {
        let got: NodeRuntimeInfo = served
            .post(tok, q, json!({ "containerIds": ids }))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            got,
            if hash { hashed(&clear) } else { clear.clone() },
            "{q}"
        );
    }

    // Another prefix for the same container (the operator looks up its own string), and a
    // bare ID: answered under the caller's spelling. Unknown but valid IDs are just absent.
    let hex0 = &web.containers[0].id;
    let unknown = format!("cri-o://{}", "f".repeat(64));
    let asked = vec![
        format!("cri-o://{hex0}"),
        db.containers[0].id.clone(),
        unknown,
    ];
    let got: NodeRuntimeInfo = served
        .post(tok, "?hash=false", json!({ "containerIds": asked }))
        .await
        .json()
        .await
        .unwrap();
    let mut want = only(&clear, &[ids[0].clone(), ids[2].clone()]);
    want = rekey(&want, |k| {
        if k == ids[0] {
            asked[0].clone()
        } else if k == ids[2] {
            asked[1].clone()
        } else {
            k.to_owned()
        }
    });
    assert_eq!(got, want);
    let got: Value = served
        .post(
            tok,
            "",
            json!({ "containerIds": [format!("cri-o://{}", "e".repeat(64))] }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, json!({}));

    // [] and GET: every container; GET is marked deprecated.
    let got: NodeRuntimeInfo = served
        .post(tok, "", json!({ "containerIds": [] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, hashed(&clear));
    let resp = served
        .client
        .get(format!("{}{PATH}?hash=false", served.url))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["deprecation"], "true");
    assert!(resp.headers()["warning"]
        .to_str()
        .unwrap()
        .starts_with("299 - "));
    let got: NodeRuntimeInfo = resp.json().await.unwrap();
    assert_eq!(got, clear);

    // Content-Type: JSON with parameters is fine, absent is accepted, anything else is 415.
    let body = json!({ "containerIds": [ids[0]] }).to_string();
    let post_raw = |ct: Option<&'static str>, body: String| {
        let mut rb = served
            .client
            .post(format!("{}{PATH}", served.url))
            .bearer_auth(tok)
            .body(body);
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        rb.send()
    };
    assert_eq!(
        post_raw(Some("application/json; charset=utf-8"), body.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post_raw(None, body.clone()).await.unwrap().status(), 200);
    assert_json_error(
        post_raw(Some("text/plain"), body.clone()).await.unwrap(),
        415,
        "application/json",
    )
    .await;
    assert_json_error(
        post_raw(Some("application/x-www-form-urlencoded"), body.clone())
            .await
            .unwrap(),
        415,
        "application/json",
    )
    .await;

    // 400s, with the reference's bodies.
    assert_json_error(
        post_raw(None, "{not json".into()).await.unwrap(),
        400,
        "Invalid JSON in request body",
    )
    .await;
    assert_json_error(
        post_raw(None, "".into()).await.unwrap(),
        400,
        "Invalid JSON in request body",
    )
    .await;
    assert_json_error(
        served.post(tok, "", json!({})).await,
        400,
        "containerIds field is required",
    )
    .await;
    assert_json_error(
        served.post(tok, "", json!({ "containerIds": null })).await,
        400,
        "containerIds field is required",
    )
    .await;
    assert_json_error(
        served
            .post(
                tok,
                "",
                json!({ "containerIds": [ids[0], "cri-o://test-container-1"] }),
            )
            .await,
        400,
        "invalid container ID \"cri-o://test-container-1\"",
    )
    .await;

    // 405 with Allow for every other method.
    for m in ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let resp = served
            .client
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}{PATH}", served.url),
            )
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{m}");
        assert_eq!(resp.headers()["allow"], "GET, POST", "{m}");
        if m != "HEAD" {
            assert_eq!(resp.headers()["content-type"], "application/json");
        }
    }
    // Unknown paths: JSON 404.
    let resp = served
        .client
        .get(format!("{}/other", served.url))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 404, "not found").await;

    // 413: a body over 1 MiB (declared length, and chunked without one), more than 10 000 IDs.
    let big = format!("{{\"containerIds\": []}}{}", " ".repeat(1024 * 1024));
    assert_json_error(post_raw(None, big).await.unwrap(), 413, "larger than").await;
    let api = served.server().api_addr();
    let mut chunked = format!(
        "POST {PATH} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..40 {
        chunked.extend_from_slice(
            format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024)).as_bytes(),
        );
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_https(api, &ca, &chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let many: Vec<String> = (0..10_001)
        .map(|i| format!("containerd://{:064x}", i))
        .collect();
    assert_json_error(
        served.post(tok, "", json!({ "containerIds": many })).await,
        413,
        "more than 10000",
    )
    .await;

    // 401 with WWW-Authenticate: no token, a wrong token, another scheme.
    let resp = served
        .client
        .post(format!("{}{PATH}", served.url))
        .json(&json!({"containerIds": []}))
        .send()
        .await
        .unwrap();
    let h = assert_json_error(resp, 401, "missing bearer token").await;
    assert_eq!(h["www-authenticate"], "Bearer");
    let h = assert_json_error(
        served.post("wrong", "", json!({"containerIds": []})).await,
        401,
        "invalid bearer token",
    )
    .await;
    assert_eq!(h["www-authenticate"], "Bearer");
    let resp = served
        .client
        .post(format!("{}{PATH}", served.url))
        .basic_auth("u", Some("p"))
        .json(&json!({"containerIds": []}))
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 401, "missing bearer token").await;

    // Cache: every container was scanned once; repeated requests were answered from the cache.
    let m = served.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_containers_scanned_total{result="ok"}"#
        ),
        3.0,
        "{m}"
    );
    assert!(
        metric(&m, "runtime_extractor_cache_hits_total") >= 20.0,
        "{m}"
    );
    for series in [
        r#"runtime_extractor_http_requests_total{method="POST",code="200"}"#,
        r#"runtime_extractor_http_requests_total{method="GET",code="200"}"#,
        r#"runtime_extractor_http_requests_total{method="POST",code="400"}"#,
        r#"runtime_extractor_http_requests_total{method="PUT",code="405"}"#,
        r#"runtime_extractor_http_requests_total{method="POST",code="413"}"#,
        r#"runtime_extractor_http_requests_total{method="POST",code="415"}"#,
        r#"runtime_extractor_http_requests_total{method="POST",code="401"}"#,
        r#"runtime_extractor_auth_failures_total{reason="unauthenticated"}"#,
        r#"runtime_extractor_http_request_duration_seconds_count{method="POST"}"#,
        "runtime_extractor_container_scan_duration_seconds_count",
        "runtime_extractor_cached_containers",
    ] {
        assert!(metric(&m, series) >= 1.0, "{series} in\n{m}");
    }
    assert_eq!(metric(&m, "runtime_extractor_request_timeouts_total"), 0.0);

    // Token file rotation, the Kubernetes way (a new file renamed over the old one).
    let tmp = dir.path().join("token.new");
    std::fs::write(&tmp, "n3w").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    assert_eq!(
        served
            .post(tok, "", json!({"containerIds": []}))
            .await
            .status(),
        401
    );
    assert_eq!(
        served
            .post("n3w", "", json!({"containerIds": []}))
            .await
            .status(),
        200
    );

    // A container that stopped is no longer in the answer.
    sb.stop_container(&db.containers[0].id).unwrap();
    let got: NodeRuntimeInfo = served
        .post("n3w", "?hash=false", json!({ "containerIds": ids }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, only(&clear, &ids[..2]));

    // Health port.
    let h = reqwest::get(format!("{}/healthz", served.health))
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let r = reqwest::get(format!("{}/readyz", served.health))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = reqwest::get(format!("{}/metrics", served.health))
        .await
        .unwrap();
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));

    // The scanner goes away: not ready, and requests that need it get 503.
    scanner.stop();
    let r = reqwest::get(format!("{}/readyz", served.health))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("scanner unreachable"));
    // The stopped container is not validated locally: its request needs the scanner.
    assert_json_error(
        served.post("n3w", "", json!({ "containerIds": ids })).await,
        503,
        "scanner unreachable",
    )
    .await;
    assert_json_error(
        served.post("n3w", "", json!({ "containerIds": [] })).await,
        503,
        "scanner unreachable",
    )
    .await;
    // Cached containers whose process still runs are validated from /proc (this test shares
    // the scanner's PID namespace), so they are answered without the scanner.
    let resp = served
        .post("n3w", "?hash=false", json!({ "containerIds": ids[..2] }))
        .await;
    assert_eq!(resp.status(), 200);
    let got: NodeRuntimeInfo = resp.json().await.unwrap();
    assert_eq!(got, only(&clear, &ids[..2]));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes authentication and authorisation

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_auth_token_review_and_subject_access_review() {
    init_tracing();
    let sb = CriSandbox::start_for("kubernetes_auth_token_review_and_subject_access_review");
    let pod = sb
        .run_pod(
            &PodSpec::new("ns", "p").container(ContainerSpec::new("c", &["/bin/sleep", "3604"])),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scanner = RealScanner::start(&sb, dir.path());
    let id = sb.kube_id(&pod.containers[0].id);

    let api = ApiServer::start().await;
    api.add_user(
        "serve-sa",
        "system:serviceaccount:openshift-insights:insights-runtime-extractor-sa",
        &[],
    );
    api.add_user("operator-token", OPERATOR, &[]);
    api.add_user("reader-token", "alice", &["insights-readers"]);
    api.add_user("bob-token", "bob", &["other"]);
    api.add_user("admin-token", "carol", &["admins"]);
    api.allow_non_resource("insights-readers", PATH, &["post"]);
    api.allow_non_resource("admins", "*", &["*"]);
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "serve-sa");

    let ca = TestCa::new("serve-test-ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let served = Served::start(
        serve_with(
            &crt,
            &key,
            &scanner.socket,
            &[
                "--auth",
                "kubernetes",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ],
        ),
        &ca,
    )
    .await;
    let body = json!({ "containerIds": [id] });
    let count = |path: &str| {
        api.requests()
            .iter()
            .filter(|r| r.path.ends_with(path))
            .count()
    };

    // A burst of 20 concurrent requests from the operator costs one TokenReview (and no SAR:
    // the operator is in --allow-user).
    api.clear_requests();
    let burst = (0..20).map(|_| served.post("operator-token", "", body.clone()));
    for resp in futures::future::join_all(burst).await {
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(count("/tokenreviews"), 1, "{:#?}", api.requests());
    assert_eq!(count("/subjectaccessreviews"), 0);
    let tr = api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/tokenreviews"))
        .unwrap();
    assert_eq!(
        tr.user.as_deref(),
        Some("system:serviceaccount:openshift-insights:insights-runtime-extractor-sa")
    );
    assert_eq!(tr.status, 201);

    // A group allowed by RBAC for POST only: one TokenReview + one SAR per verb, cached.
    api.clear_requests();
    let burst = (0..20).map(|_| served.post("reader-token", "", body.clone()));
    for resp in futures::future::join_all(burst).await {
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(count("/tokenreviews"), 1);
    assert_eq!(count("/subjectaccessreviews"), 1);
    let resp = served
        .client
        .get(format!("{}{PATH}", served.url))
        .bearer_auth("reader-token")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 403, "\"alice\" may not get /gather_runtime_info").await;
    assert_eq!(count("/tokenreviews"), 1, "the token review was cached");
    assert_eq!(
        count("/subjectaccessreviews"),
        2,
        "a new verb needs its own review"
    );

    // nonResourceURLs "*" (like cluster-admin) passes, as with kube-rbac-proxy.
    assert_eq!(
        served.post("admin-token", "", body.clone()).await.status(),
        200
    );
    // Authenticated but not allowed → 403; unknown token → 401 (cached as well).
    assert_json_error(
        served.post("bob-token", "", body.clone()).await,
        403,
        "\"bob\" may not post",
    )
    .await;
    for _ in 0..3 {
        let h = assert_json_error(
            served.post("nobody", "", body.clone()).await,
            401,
            "invalid bearer token",
        )
        .await;
        assert_eq!(h["www-authenticate"], "Bearer");
    }
    let nobody_reviews = api
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/tokenreviews"))
        .count();
    assert_eq!(
        nobody_reviews,
        1 + 1 + 1 + 1,
        "reader(cached) + admin + bob + nobody once"
    );

    let m = served.metrics().await;
    assert!(
        metric(
            &m,
            r#"runtime_extractor_auth_failures_total{reason="forbidden"}"#
        ) >= 2.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"runtime_extractor_auth_failures_total{reason="unauthenticated"}"#
        ) >= 3.0,
        "{m}"
    );

    // The API server goes away: a token not in the cache cannot be checked → 503, not 401.
    api.add_user("late-token", OPERATOR, &[]);
    drop(api);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_json_error(
        served.post("late-token", "", body.clone()).await,
        503,
        "authentication is unavailable",
    )
    .await;
    // Cached decisions still serve.
    assert_eq!(
        served
            .post("operator-token", "", body.clone())
            .await
            .status(),
        200
    );
}

// ---------------------------------------------------------------------------------------------
// load

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_200_concurrent_posts_with_the_real_scanner() {
    init_tracing();
    let sb = CriSandbox::start_for("load_200_concurrent_posts_with_the_real_scanner");
    let ids = sb.run_sleeper_pods(10, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scanner = RealScanner::start(&sb, dir.path());
    let direct = scanner_proto::request(&scanner.socket, &ScanRequest::default())
        .await
        .unwrap();
    let expected = hashed(&direct.node_runtime_info());
    assert_eq!(direct.containers.len(), 20);

    let ca = TestCa::new("ca");
    let (crt, key, _) = write_serving_cert(&ca, &dir.path().join("tls"));
    let served = Served::start(
        serve_with(
            &crt,
            &key,
            &scanner.socket,
            &[
                "--auth",
                "none",
                "--insecure-allow-unauthenticated",
                "--max-concurrent-scans",
                "4",
            ],
        ),
        &ca,
    )
    .await;
    let hwm_before = vm_hwm_kib();

    // Deterministic pseudo-random subsets (xorshift).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let subsets: Vec<Vec<String>> = (0..200)
        .map(|_| {
            let mask = next();
            let s: Vec<String> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, id)| id.clone())
                .collect();
            if s.is_empty() {
                vec![ids[0].clone()]
            } else {
                s
            }
        })
        .collect();
    let t = Instant::now();
    let answers = futures::future::join_all(subsets.iter().map(|s| {
        let s = s.clone();
        let served = &served;
        async move {
            let resp = served.post("", "", json!({ "containerIds": s })).await;
            let status = resp.status();
            (status, resp.json::<NodeRuntimeInfo>().await.unwrap())
        }
    }))
    .await;
    let elapsed = t.elapsed();
    assert_eq!(answers.len(), 200);
    for ((status, got), subset) in answers.iter().zip(&subsets) {
        assert_eq!(*status, 200);
        assert_eq!(
            got,
            &only(&expected, subset),
            "answer for {} IDs",
            subset.len()
        );
    }
    let m = served.metrics().await;
    // Each container was scanned exactly once although ~100 requests wanted each of them at
    // the same time: never two scans of one container at once.
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_containers_scanned_total{result="ok"}"#
        ),
        20.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_scanner_requests_total{result="ok"}"#
        ),
        20.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"runtime_extractor_http_requests_total{method="POST",code="200"}"#
        ),
        200.0
    );
    let growth_mib = (vm_hwm_kib().saturating_sub(hwm_before)) / 1024;
    eprintln!("200 concurrent POSTs (20 containers, cold cache) in {elapsed:?}; peak RSS growth {growth_mib} MiB (server and clients in this process)");
    assert!(growth_mib < 150, "peak memory grew by {growth_mib} MiB");
}

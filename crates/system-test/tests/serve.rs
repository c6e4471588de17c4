//! `runtime-extractor-serve` end to end: real TLS, real HTTP (reqwest and raw rustls clients),
//! the real privileged scanner (`runtime-extractor scanner`) against a real containerd
//! (testkit's CriSandbox), and testkit's Kubernetes API server for TokenReview and
//! SubjectAccessReview.
//!
//! Tests that need the scanner need root plus containerd/runc (`bash
//! scripts/install-test-deps.sh`): they skip loudly otherwise, and fail instead under `CI=true`.
//!
//! One scanner is NOT real: [`FaultScanner`], a fault-injecting stand-in that speaks the scanner
//! protocol but holds scans open (or answers them late) on demand. It is used only for what
//! a real scanner cannot produce on demand: a scan that overruns the server's deadline (504),
//! client-disconnect cancellation, and requests in flight during shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, SupportedCipherSuite, SupportedProtocolVersion};
use scanner_proto::{self, ScanRequest, ScanResponse, ScannedContainer};
use serde_json::{json, Value};
use service::{RunningServer, ServeArgs};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::daemons::{metric, ScannerDaemon};
use testkit::{ApiServer, TestCa};

const PATH: &str = "/gather_runtime_info";
const OPERATOR: &str = "system:serviceaccount:openshift-insights:operator";

// ---------------------------------------------------------------------------------------------
// fixtures

fn serve_args(extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(extra);
    ServeArgs::try_parse_from(argv).unwrap()
}

/// [`serve_args`] with a serving certificate and a scanner socket, then `extra`.
fn serve_with(crt: &Path, key: &Path, socket: &Path, extra: &[&str]) -> ServeArgs {
    let mut argv = vec![
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--scanner-socket",
        socket.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    serve_args(&argv)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    testkit::install_crypto_provider();
}

/// Serving certificate for 127.0.0.1/localhost from `ca`, written as `dir/tls.crt|key`.
fn write_serving_cert(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf, testkit::CertKey) {
    std::fs::create_dir_all(dir).unwrap();
    let ck = ca.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
    let (crt, key) = ck.write_to(dir);
    (crt, key, ck)
}

fn client_for(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

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

/// FAULT-INJECTING STAND-IN for the scanner (see the module comment): answers `listOnly`
/// with a fixed container list; holds every scan open for `scan_delay` (forever when `None`),
/// counting scans started and scans whose client hung up.
struct FaultScanner {
    socket: PathBuf,
    scans_started: Arc<AtomicUsize>,
    scans_open: Arc<AtomicUsize>,
    scans_cancelled: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultScanner {
    fn start(dir: &Path, containers: Vec<ScannedContainer>, scan_delay: Option<Duration>) -> Self {
        let socket = dir.join("fault-scanner.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let (s, o, c) = (started.clone(), open.clone(), cancelled.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let containers = containers.clone();
                let (s, o, c) = (s.clone(), o.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(req) = scanner_proto::read_frame_async::<_, ScanRequest>(
                        &mut stream,
                        scanner_proto::MAX_REQUEST_BYTES,
                    )
                    .await
                    else {
                        return;
                    };
                    let wanted = |c: &ScannedContainer| {
                        req.container_ids.is_empty()
                            || req
                                .container_ids
                                .iter()
                                .any(|id| c.container_id.ends_with(id.as_str()))
                    };
                    let mut listed: Vec<ScannedContainer> =
                        containers.iter().filter(|c| wanted(c)).cloned().collect();
                    if req.list_only {
                        for c in &mut listed {
                            c.info = None;
                        }
                    } else {
                        s.fetch_add(1, Ordering::SeqCst);
                        o.fetch_add(1, Ordering::SeqCst);
                        let hangup = async {
                            use tokio::io::AsyncReadExt;
                            let mut buf = [0u8; 16];
                            while let Ok(n) = stream.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        };
                        let delay = async {
                            match scan_delay {
                                Some(d) => tokio::time::sleep(d).await,
                                None => std::future::pending::<()>().await,
                            }
                        };
                        let hung_up = tokio::select! {
                            _ = hangup => true,
                            _ = delay => false,
                        };
                        o.fetch_sub(1, Ordering::SeqCst);
                        if hung_up {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    let resp = ScanResponse {
                        containers: listed,
                        error: None,
                    };
                    let _ = scanner_proto::write_frame_async(&mut stream, &resp).await;
                });
            }
        });
        FaultScanner {
            socket,
            scans_started: started,
            scans_open: open,
            scans_cancelled: cancelled,
            task,
        }
    }
}

impl Drop for FaultScanner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fake_container(n: u8) -> ScannedContainer {
    ScannedContainer {
        namespace: "ns".into(),
        pod: format!("pod-{n}"),
        container: "c".into(),
        container_id: format!("containerd://{}", format!("{n:02x}").repeat(32)),
        pid: 1000 + n as u32,
        start_time: 42,
        info: Some(ContainerRuntimeInfo {
            os: "rhel".into(),
            os_version: "9.4".into(),
            ..Default::default()
        }),
        error: None,
    }
}

/// A running `serve` with its client.
struct Served {
    server: Option<RunningServer>,
    client: reqwest::Client,
    url: String,
    health: String,
}

impl Served {
    async fn start(args: ServeArgs, ca: &TestCa) -> Served {
        let server = service::start(args).await.expect("serve starts");
        Served {
            url: format!("https://127.0.0.1:{}", server.api_addr().port()),
            health: format!("http://{}", server.health_addr()),
            client: client_for(ca),
            server: Some(server),
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    async fn post(&self, token: &str, query: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{PATH}{query}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.health))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Best effort: tests that care call shutdown() themselves.
        if let Some(s) = self.server.take() {
            drop(tokio::spawn(async move {
                let _ = s.shutdown().await;
            }));
        }
    }
}

async fn assert_json_error(
    resp: reqwest::Response,
    status: u16,
    contains: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(resp.status().as_u16(), status, "status");
    let headers = resp.headers().clone();
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/json",
        "errors are JSON"
    );
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {body}"));
    assert!(
        msg.contains(contains),
        "{msg:?} should contain {contains:?}"
    );
    headers
}

fn hashed(node: &NodeRuntimeInfo) -> NodeRuntimeInfo {
    node.iter()
        .map(|(ns, pods)| {
            let pods = pods
                .iter()
                .map(|(p, cs)| {
                    let cs = cs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.anonymized()))
                        .collect();
                    (p.clone(), cs)
                })
                .collect();
            (ns.clone(), pods)
        })
        .collect()
}

fn rekey(node: &NodeRuntimeInfo, f: impl Fn(&str) -> String) -> NodeRuntimeInfo {
    node.iter()
        .map(|(ns, pods)| {
            let pods = pods
                .iter()
                .map(|(p, cs)| {
                    (
                        p.clone(),
                        cs.iter().map(|(k, v)| (f(k), v.clone())).collect(),
                    )
                })
                .collect();
            (ns.clone(), pods)
        })
        .collect()
}

/// The subset of `node` whose container IDs are in `ids`.
fn only(node: &NodeRuntimeInfo, ids: &[String]) -> NodeRuntimeInfo {
    let mut out = NodeRuntimeInfo::new();
    for (ns, pods) in node {
        for (p, cs) in pods {
            for (k, v) in cs {
                if ids.contains(k) {
                    out.entry(ns.clone())
                        .or_default()
                        .entry(p.clone())
                        .or_default()
                        .insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// raw TLS client (for versions, suites and certificate checks)

struct Handshake {
    peer: CertificateDer<'static>,
    suite: rustls::CipherSuite,
    version: rustls::ProtocolVersion,
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

async fn handshake(
    addr: SocketAddr,
    ca: &TestCa,
    versions: &[&'static SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Result<Handshake, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let conn = stream.get_ref().1;
    Ok(Handshake {
        peer: conn.peer_certificates().unwrap()[0].clone(),
        suite: conn.negotiated_cipher_suite().unwrap().suite(),
        version: conn.protocol_version().unwrap(),
        stream,
    })
}

/// Send raw HTTP/1.1 bytes over TLS and read the whole answer.
async fn raw_https(addr: SocketAddr, ca: &TestCa, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut h = handshake(addr, ca, rustls::ALL_VERSIONS, None)
        .await
        .unwrap();
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = h.stream.write_all(request).await;
    let _ = h.stream.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), h.stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
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
    wait_for(
        || fault.scans_open.load(Ordering::SeqCst) == 0,
        "the timed-out scan is cancelled",
    )
    .await;
    assert_eq!(fault.scans_cancelled.load(Ordering::SeqCst), 1);
    let m = short.metrics().await;
    assert_eq!(metric(&m, "runtime_extractor_request_timeouts_total"), 1.0);
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
    wait_for(
        || fault.scans_open.load(Ordering::SeqCst) == 0,
        "scans cancelled once nobody waits",
    )
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

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let refused = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tokio::net::TcpStream::connect(addr).await.is_err()
    };
    let (resp, took, refused) = tokio::join!(inflight, stop, refused);
    let resp = resp.expect("the in-flight request completed");
    assert_eq!(resp.status(), 200);
    assert!(refused, "no new connections once shutdown started");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A scan that never ends: the request is cut at the 1 s bound and its scan cancelled.
    let sub = dir.path().join("b");
    std::fs::create_dir_all(&sub).unwrap();
    let hang = FaultScanner::start(&sub, vec![fake_container(1)], None);
    let mut served = Served::start(args(&hang.socket, "1s"), &ca).await;
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
    let (resp, took) = tokio::join!(inflight, stop);
    assert!(resp.is_err(), "the hanging request was cut: {resp:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    wait_for(
        || hang.scans_open.load(Ordering::SeqCst) == 0,
        "scan cancelled on shutdown",
    )
    .await;
    assert_eq!(hang.scans_cancelled.load(Ordering::SeqCst), 1);
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

// ---------------------------------------------------------------------------------------------
// the binary: help, SIGTERM

#[test]
fn serve_help_documents_every_flag_with_env_and_default() {
    let out = Command::new(testkit::bins::binary(testkit::bins::SERVICE))
        .arg("--help")
        .output()
        .unwrap();
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
    let mut child = Command::new(testkit::bins::binary(testkit::bins::SERVICE))
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

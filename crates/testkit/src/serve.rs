//! The harness of the service's HTTP tests (the `service` crate's own and `system-test`'s):
//! `serve` started in-process with the binary's own flag parser ([`serve_args`],
//! [`serve_with`], [`Served`]), a reqwest client that trusts the test CA, a raw rustls client for
//! protocol checks ([`handshake`], [`raw_https`]), expected answers ([`hashed`], [`rekey`],
//! [`only`]), and one scanner that is NOT real: [`FaultScanner`].
//!
//! [`FaultScanner`] is a fault-injecting stand-in that speaks the scanner protocol but holds
//! scans open (or answers them late) on demand. It is used only for what a real scanner cannot
//! produce on demand: a scan that overruns the server's deadline (504), client-disconnect
//! cancellation, and requests in flight during shutdown. Everything else runs against the real
//! scanner on a real containerd (`system-test`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, SupportedCipherSuite, SupportedProtocolVersion};
use scanner_proto::{ScanRequest, ScanResponse, ScannedContainer};
use serde_json::Value;
use service::{RunningServer, ServeArgs};

use crate::TestCa;

/// The API path.
pub const PATH: &str = "/gather_runtime_info";
/// The identity the reference's kube-rbac-proxy lets in.
pub const OPERATOR: &str = "system:serviceaccount:openshift-insights:operator";

/// `serve`'s flags with both listeners on loopback port 0, then `extra`, parsed by the
/// binary's own parser.
pub fn serve_args(extra: &[&str]) -> ServeArgs {
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
pub fn serve_with(crt: &Path, key: &Path, socket: &Path, extra: &[&str]) -> ServeArgs {
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

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    crate::install_crypto_provider();
}

/// Serving certificate for 127.0.0.1/localhost from `ca`, written as `dir/tls.crt|key`.
pub fn write_serving_cert(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf, crate::CertKey) {
    std::fs::create_dir_all(dir).unwrap();
    let ck = ca.issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()]);
    let (crt, key) = ck.write_to(dir);
    (crt, key, ck)
}

pub fn client_for(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// FAULT-INJECTING STAND-IN for the scanner (see the module comment): answers `listOnly`
/// with a fixed container list; holds every scan open for `scan_delay` (forever when `None`),
/// counting scans started and scans whose client hung up. Every answer reports
/// [`FAULT_SCANNER_STUCK_HELPERS`] stuck sandbox helpers, as a scanner on a node with stalled
/// containers would.
pub const FAULT_SCANNER_STUCK_HELPERS: u32 = 2;

pub struct FaultScanner {
    pub socket: PathBuf,
    pub scans_started: Arc<AtomicUsize>,
    pub scans_open: Arc<AtomicUsize>,
    pub scans_cancelled: Arc<AtomicUsize>,
    pub task: tokio::task::JoinHandle<()>,
}

impl FaultScanner {
    pub fn start(
        dir: &Path,
        containers: Vec<ScannedContainer>,
        scan_delay: Option<Duration>,
    ) -> Self {
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
                        stuck_helpers: FAULT_SCANNER_STUCK_HELPERS,
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

impl FaultScanner {
    /// Wait (10 s at most) until every scan it holds was answered or cancelled.
    pub async fn wait_until_no_scan_is_open(&self, what: &str) {
        wait_for(|| self.scans_open.load(Ordering::SeqCst) == 0, what).await;
    }
}

/// Poll `cond` every 20 ms until it holds; fail the test after 10 s.
pub async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for FaultScanner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fake_container(n: u8) -> ScannedContainer {
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
pub struct Served {
    pub server: Option<RunningServer>,
    pub client: reqwest::Client,
    pub url: String,
    pub health: String,
}

impl Served {
    pub async fn start(args: ServeArgs, ca: &TestCa) -> Served {
        let server = service::start(args).await.expect("serve starts");
        Served {
            url: format!("https://127.0.0.1:{}", server.api_addr().port()),
            health: format!("http://{}", server.health_addr()),
            client: client_for(ca),
            server: Some(server),
        }
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    pub async fn post(&self, token: &str, query: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{PATH}{query}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
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

pub async fn assert_json_error(
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

pub fn hashed(node: &NodeRuntimeInfo) -> NodeRuntimeInfo {
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

pub fn rekey(node: &NodeRuntimeInfo, f: impl Fn(&str) -> String) -> NodeRuntimeInfo {
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
pub fn only(node: &NodeRuntimeInfo, ids: &[String]) -> NodeRuntimeInfo {
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

pub struct Handshake {
    pub peer: CertificateDer<'static>,
    pub suite: rustls::CipherSuite,
    pub version: rustls::ProtocolVersion,
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

pub async fn handshake(
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
pub async fn raw_https(addr: SocketAddr, ca: &TestCa, request: &[u8]) -> String {
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

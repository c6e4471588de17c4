//! `runtime-extractor scanner`: the privileged daemon behind `runtime-extractor-serve`.
//!
//! It listens on a unix socket only (mode 0600 by default, no network, no TLS), reads one
//! bounded [`ScanRequest`] frame per connection, answers one [`ScanResponse`] frame in clear
//! text. A client has a few seconds to send its request, and a client that goes away cancels
//! its scan; connections are capped: a connection is accepted only once a slot is free, so
//! excess clients wait in the kernel's accept queue and one bad client cannot stall the others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use runtime_info::ContainerId;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::discovery::CriClient;
use crate::scan::{self, ScanOptions};
use scanner_proto::{self, Failure, FailureKind, ScanRequest, ScanResponse, MAX_REQUEST_BYTES};

/// Time a client has to send its request.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's accept queue (a slot is taken
/// before `accept`).
const MAX_CONNECTIONS: usize = 64;
/// Most container IDs in one request (the HTTP side allows 10 000).
const MAX_IDS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ScannerConfig {
    pub socket: PathBuf,
    /// Permission bits of the socket (0o600: only root, i.e. the scanner's own user).
    pub socket_mode: u32,
    /// Group owning the socket, so an unprivileged `serve` in that group may connect.
    pub socket_gid: Option<u32>,
    pub cri_socket: Option<PathBuf>,
    pub scan: ScanOptions,
}

/// Bind the socket (replacing a stale one) and serve until `shutdown` resolves.
pub async fn run(
    config: ScannerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let cri = CriClient::connect(config.cri_socket.as_deref()).await?;
    tracing::info!(
        runtime = cri.runtime_name(),
        version = cri.runtime_version(),
        socket = %cri.socket().display(),
        "connected to the container runtime"
    );
    let listener = bind(&config.socket, config.socket_mode, config.socket_gid)?;
    tracing::info!(socket = %config.socket.display(), "scanner listening");
    let state = Arc::new(State {
        cri,
        scan: config.scan,
    });
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_connection(&state, stream).await {
                tracing::debug!(error = %e, "scanner connection ended with an error");
            }
        });
    }
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("scanner stopped");
    Ok(())
}

struct State {
    cri: CriClient,
    scan: ScanOptions,
}

fn bind(path: &Path, mode: u32, gid: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .with_context(|| format!("cannot chown {} to gid {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(listener)
}

async fn serve_connection(state: &State, mut stream: UnixStream) -> anyhow::Result<()> {
    let request: Result<ScanRequest, _> = tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        scanner_proto::read_frame_async(&mut stream, MAX_REQUEST_BYTES),
    )
    .await
    .context("client too slow to send its request")?;
    let response = match request {
        Ok(req) => {
            let (mut reader, _writer) = stream.split();
            // A client that hangs up cancels its scan (sandboxes are killed on drop).
            tokio::select! {
                resp = handle(state, req) => resp,
                _ = wait_for_hangup(&mut reader) => {
                    tracing::debug!("client went away; scan cancelled");
                    return Ok(());
                }
            }
        }
        Err(e) => ScanResponse {
            containers: vec![],
            error: Some(Failure::new(
                FailureKind::BadRequest,
                format!("bad request: {e}"),
            )),
            stuck_helpers: 0,
        },
    };
    let response = ScanResponse {
        stuck_helpers: u32::try_from(crate::sandbox::stuck_helpers()).unwrap_or(u32::MAX),
        ..response
    };
    scanner_proto::write_frame_async(&mut stream, &response).await?;
    Ok(())
}

/// Resolves when the peer closes its end (it sends nothing after its request).
async fn wait_for_hangup(reader: &mut tokio::net::unix::ReadHalf<'_>) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Parse the IDs (all or nothing: a malformed ID fails the request with its name).
pub fn parse_ids(ids: &[String]) -> Result<Vec<ContainerId>, String> {
    if ids.len() > MAX_IDS {
        return Err(format!(
            "too many container IDs ({} > {MAX_IDS})",
            ids.len()
        ));
    }
    ids.iter()
        .map(|s| s.trim().parse::<ContainerId>().map_err(|e| e.to_string()))
        .collect()
}

async fn handle(state: &State, req: ScanRequest) -> ScanResponse {
    let ids = match parse_ids(&req.container_ids) {
        Ok(ids) => ids,
        Err(e) => {
            return ScanResponse {
                containers: vec![],
                error: Some(Failure::new(FailureKind::BadRequest, e)),
                stuck_helpers: 0,
            }
        }
    };
    let started = std::time::Instant::now();
    match scan::scan_node(&state.scan, &state.cri, &ids, req.list_only).await {
        Ok(containers) => {
            tracing::info!(
                requested = ids.len(),
                found = containers.len(),
                list_only = req.list_only,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scan done"
            );
            ScanResponse {
                containers,
                error: None,
                stuck_helpers: 0,
            }
        }
        Err(e) => ScanResponse {
            containers: vec![],
            error: Some(Failure::new(FailureKind::CriUnavailable, e)),
            stuck_helpers: 0,
        },
    }
}

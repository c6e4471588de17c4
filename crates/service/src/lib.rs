//! `runtime-extractor-serve`: the unprivileged HTTPS service in front of the privileged
//! scanner.
//!
//! It owns everything network-facing: TLS ([`tls`]), authentication and authorisation
//! ([`auth`]), request validation, limits and the deadline ([`api`]), sharing and bounding of
//! scans ([`scan_pool`], [`coalesce`]), the per-process result cache ([`cache`]), hashing on
//! the way out, metrics ([`metrics`]) and the plain-HTTP probe port ([`health`]). The scanner
//! is reached over its unix socket ([`scanner_proto`]) and answers in clear text.

pub mod api;
pub mod auth;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod conn_limit;
pub mod health;
pub mod metrics;
pub mod scan_pool;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinHandle;

pub use config::{AuthMode, ServeArgs};

use auth::Authenticator;
use cache::ResultCache;
use metrics::Metrics;
use scan_pool::ScanPool;
use tls::{ReloadingCert, TlsPolicy};

/// How often cache entries of containers that stopped running are dropped.
const CACHE_PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Bound on a client's TLS handshake and on sending its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Run until SIGTERM or SIGINT, then shut down gracefully within `--shutdown-timeout`.
/// Logging is set up by the caller (`main`: `--log-format`, `--log`).
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let server = start(args).await?;
    wait_for_signal().await?;
    tracing::info!("signal received, shutting down");
    server.shutdown().await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// A started server (listening on both ports).
pub struct RunningServer {
    api_addr: SocketAddr,
    health_addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    health_stop: Option<tokio::sync::oneshot::Sender<()>>,
    api_task: JoinHandle<std::io::Result<()>>,
    health_task: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
    metrics: Arc<Metrics>,
    pool: Arc<ScanPool>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("api_addr", &self.api_addr)
            .field("health_addr", &self.health_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Where the HTTPS API listens (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn scans_in_flight(&self) -> usize {
        self.pool.scans_in_flight()
    }

    /// Stop accepting, let in-flight requests finish within the shutdown timeout, then close
    /// what is left (dropping a request cancels its scans).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(self.shutdown_timeout));
        let grace = self.shutdown_timeout + Duration::from_secs(2);
        match tokio::time::timeout(grace, &mut self.api_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "API server task failed"),
            Err(_) => {
                tracing::warn!("API server did not stop in time; aborting");
                self.api_task.abort();
            }
        }
        if let Some(stop) = self.health_stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.health_task)
            .await
            .is_err()
        {
            self.health_task.abort();
        }
        for t in &self.background {
            t.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn authenticator(args: &ServeArgs) -> anyhow::Result<Authenticator> {
    Ok(match &args.auth {
        AuthMode::None => {
            if !args.insecure_allow_unauthenticated {
                return Err(auth::AuthSetupError::NoneNotAllowed.into());
            }
            tracing::warn!("authentication is DISABLED (--auth none): anyone who reaches the API port can read this node's inventory");
            Authenticator::None
        }
        AuthMode::TokenFile(path) => Authenticator::TokenFile(auth::TokenFileAuth::new(path)?),
        AuthMode::Kubernetes => {
            let client = auth::kube_client(args.kubeconfig.as_deref()).await?;
            Authenticator::Kubernetes(Box::new(auth::KubeAuth::new(
                client,
                &args.allow_users,
                args.auth_cache_ttl,
            )))
        }
    })
}

/// Validate the configuration, bind both ports and start serving.
pub async fn start(args: ServeArgs) -> anyhow::Result<RunningServer> {
    // ring is the one provider in this build; kube's client needs a process default too.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let policy = TlsPolicy::from_flags(&args.tls_min_version, &args.tls_cipher_suites)?;
    for w in &policy.warnings {
        tracing::warn!("{w}");
    }
    let cert = Arc::new(ReloadingCert::load(&args.tls_cert, &args.tls_key)?);
    let server_config = policy.server_config(Arc::clone(&cert))?;
    let auth = Arc::new(authenticator(&args).await?);

    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(ResultCache::new(args.cache_capacity, args.cache_max_age));
    metrics.attach_cache(Arc::clone(&cache));
    let pool = Arc::new(ScanPool::new(
        args.scanner_socket.clone(),
        args.max_concurrent_scans as usize,
        cache,
        Arc::clone(&metrics),
    ));

    let reloads = metrics.tls_reloads.clone();
    let background = vec![
        cert.spawn_poller(args.tls_reload_interval, move || {
            reloads.inc();
        }),
        pool.spawn_pruner(CACHE_PRUNE_INTERVAL),
    ];

    // Health port first: a bind failure there must not leave the API half started.
    let health_listener = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("binding the health port {}", args.health_listen))?;
    let health_addr = health_listener.local_addr()?;
    let api_listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding the API port {}", args.listen))?;
    let api_addr = api_listener.local_addr()?;

    let health_app = health::router(health::HealthState {
        pool: Arc::clone(&pool),
        metrics: Arc::clone(&metrics),
    });
    let (health_stop, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let health_task = tokio::spawn(async move {
        axum::serve(health_listener, health_app)
            .with_graceful_shutdown(async {
                let _ = health_stopped.await;
            })
            .await
    });

    let api_app = api::router(api::ApiState {
        pool: Arc::clone(&pool),
        auth,
        metrics: Arc::clone(&metrics),
        request_timeout: args.request_timeout,
    });
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_config));
    // TCP_NODELAY: on a fresh connection rustls sends its session tickets right after the
    // handshake, and with Nagle the answer then waits for the client's delayed ACK (40 ms on
    // Linux) — every gatherer request is on a fresh connection.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls_config)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    let handle = axum_server::Handle::new();
    let acceptor = conn_limit::LimitAcceptor::new(acceptor, args.max_connections as usize);
    let mut server = axum_server::from_tcp(api_listener)?
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(HEADER_READ_TIMEOUT));
    let api_task = tokio::spawn(async move { server.serve(api_app.into_make_service()).await });

    tracing::info!(
        api = %api_addr,
        health = %health_addr,
        scanner = %args.scanner_socket.display(),
        auth = ?args.auth,
        tls_min = ?policy.min_version,
        "runtime-extractor-serve listening"
    );
    Ok(RunningServer {
        api_addr,
        health_addr,
        handle,
        health_stop: Some(health_stop),
        api_task,
        health_task,
        background,
        shutdown_timeout: args.shutdown_timeout,
        metrics,
        pool,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::ManuallyDrop;
    use std::net::TcpStream;
    use std::os::fd::FromRawFd as _;

    use super::*;

    /// `TCP_NODELAY` of each connection accepted on `addr`, found through /proc/self/fd
    /// (the server runs in this process).
    #[allow(unsafe_code)] // borrows this process's own socket fds to read an option
    fn accepted_nodelay(addr: SocketAddr) -> Vec<bool> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: a socket fd open in this process, borrowed only for the three calls
            // below and never closed here (ManuallyDrop).
            let s = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            // Accepted sockets have `addr` as their local address and a peer (the listener
            // has no peer; the client's sockets have another local port).
            if s.local_addr().ok() == Some(addr) && s.peer_addr().is_ok() {
                found.push(s.nodelay().unwrap());
            }
        }
        found
    }

    #[tokio::test]
    async fn api_connections_are_accepted_with_nodelay() {
        let ca = testkit::TestCa::new("nodelay-ca");
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = ca
            .issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()])
            .write_to(dir.path());
        let socket = dir.path().join("no-scanner.sock");
        let args = ServeArgs::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--scanner-socket",
            socket.to_str().unwrap(),
            "--auth",
            "none",
            "--insecure-allow-unauthenticated",
        ])
        .unwrap();
        let server = start(args).await.unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
            .build()
            .unwrap();
        // A full request: the acceptor chain has run; the connection stays open (keep-alive).
        let resp = client
            .get(format!(
                "https://127.0.0.1:{}/none",
                server.api_addr().port()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(accepted_nodelay(server.api_addr()), vec![true]);
        drop(client);
        server.shutdown().await.unwrap();
    }
}

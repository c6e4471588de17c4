//! From requested container IDs to results: one cheap `listOnly` call to learn which of them
//! run here (and their process identity), the cache for those whose process is unchanged, and
//! scans for the rest.
//!
//! Each container is scanned by its own scanner request, so that:
//! - concurrent requests needing the same container share one scan ([`Coalescer`]);
//! - a scan nobody waits for any more (client gone, deadline passed) is dropped, which closes
//!   its scanner connection;
//! - every finished container is cached at once, so a request that hit its deadline leaves
//!   its finished work behind for the retry;
//! - the number of scans in flight is bounded by one semaphore across all requests.
//!
//! When `serve` sees the same PIDs as the scanner (the pod has `hostPID`, which the scanner
//! needs anyway), a cached container named in the request is validated by reading
//! `/proc/<pid>/stat` here instead of asking the scanner: the container runs as long as its
//! root process does, and PID + start time identify that process. The scanner's `listOnly`
//! costs a CRI status call per container (tens of ms for 100 containers); this costs
//! microseconds. Whether PIDs are shared is checked, not assumed: the fast path is enabled
//! only once a container listed by the scanner is found with the same start time here.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use runtime_info::{ContainerId, ContainerRuntimeInfo};
use tokio::sync::Semaphore;

use super::cache::{Placement, ResultCache};
use super::coalesce::{Coalescer, Joined};
use super::metrics::Metrics;
use scanner_proto::{self, identity, FrameError, ScanRequest, ScanResponse, ScannedContainer};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    #[error("scanner unreachable at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    #[error("scanner error: {0}")]
    Scanner(String),
}

/// How far a request got (read by the deadline path to say what was done).
#[derive(Debug, Default)]
pub struct Progress {
    pub wanted: AtomicUsize,
    pub done: AtomicUsize,
}

/// One container of the answer (clear-text values; hashing happens on the way out).
#[derive(Debug, Clone)]
pub struct Found {
    pub namespace: String,
    pub pod: String,
    /// As the scanner reports it (`containerd://…`, `cri-o://…`).
    pub container_id: String,
    pub hex: String,
    pub info: Arc<ContainerRuntimeInfo>,
}

type Outcome = Result<Option<Arc<ScannedContainer>>, ScanError>;

pub struct ScanPool {
    socket: PathBuf,
    permits: Arc<Semaphore>,
    inflight: Coalescer<String, Outcome>,
    cache: Arc<ResultCache>,
    metrics: Arc<Metrics>,
    /// Set once this process is known to see the scanner's PIDs (see the module comment).
    pids_shared: AtomicBool,
}

impl std::fmt::Debug for ScanPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPool")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

fn hex_of(container_id: &str) -> Option<String> {
    container_id
        .parse::<ContainerId>()
        .ok()
        .map(|id| id.hex().to_owned())
}

impl ScanPool {
    pub fn new(
        socket: PathBuf,
        max_concurrent_scans: usize,
        cache: Arc<ResultCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        ScanPool {
            socket,
            permits: Arc::new(Semaphore::new(max_concurrent_scans.max(1))),
            inflight: Coalescer::default(),
            cache,
            metrics,
            pids_shared: AtomicBool::new(false),
        }
    }

    /// The process `pid` started at `start_time` is alive (not a zombie), as seen from here.
    fn alive(&self, pid: u32, start_time: u64) -> bool {
        identity::still_running(Path::new("/proc"), pid, start_time)
    }

    /// Enable the /proc fast path if a listed container's process is visible here as it is
    /// to the scanner.
    fn learn_pid_namespace(&self, listed: &[ScannedContainer]) {
        if self.pids_shared.load(Ordering::Relaxed) {
            return;
        }
        if listed
            .iter()
            .take(3)
            .any(|c| self.alive(c.pid, c.start_time))
        {
            self.pids_shared.store(true, Ordering::Relaxed);
            tracing::info!("PIDs shared with the scanner: cached results are validated from /proc");
        }
    }

    /// Cached containers among `ids` whose process is still the same, validated locally; the
    /// rest must be listed by the scanner.
    fn split_cached(&self, ids: &[ContainerId]) -> (Vec<Found>, Vec<ContainerId>) {
        if !self.pids_shared.load(Ordering::Relaxed) {
            return (Vec::new(), ids.to_vec());
        }
        let mut hits = Vec::new();
        let mut rest = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.hex()) {
                continue;
            }
            match self.cache.peek(id.hex()) {
                Some(c) if self.alive(c.pid, c.start_time) => hits.push(Found {
                    namespace: c.placement.namespace.clone(),
                    pod: c.placement.pod.clone(),
                    container_id: c.placement.container_id.clone(),
                    hex: id.hex().to_owned(),
                    info: c.info,
                }),
                _ => rest.push(id.clone()),
            }
        }
        (hits, rest)
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    async fn call(&self, req: &ScanRequest) -> Result<ScanResponse, ScanError> {
        let response = call(&self.socket, req).await?;
        self.metrics
            .stuck_helpers
            .set(i64::from(response.stuck_helpers));
        Ok(response)
    }

    /// Which containers run here: all of them (`ids` empty) or those among `ids`.
    pub async fn list(&self, ids: &[ContainerId]) -> Result<Vec<ScannedContainer>, ScanError> {
        let req = ScanRequest {
            container_ids: ids.iter().map(|id| id.hex().to_owned()).collect(),
            list_only: true,
        };
        Ok(self.call(&req).await?.containers)
    }

    /// Results for `ids` (empty = every container of the node). Unknown IDs are absent.
    pub async fn gather(
        &self,
        ids: &[ContainerId],
        progress: &Progress,
    ) -> Result<Vec<Found>, ScanError> {
        let (mut found, ids) = if ids.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let (hits, rest) = self.split_cached(ids);
            if rest.is_empty() {
                self.metrics.cache_hits.inc_by(hits.len() as u64);
                progress.wanted.store(hits.len(), Ordering::Relaxed);
                progress.done.store(hits.len(), Ordering::Relaxed);
                return Ok(hits);
            }
            (hits, rest)
        };
        self.metrics.cache_hits.inc_by(found.len() as u64);
        let ids = &ids[..];
        let wanted: Option<HashSet<&str>> =
            (!ids.is_empty()).then(|| ids.iter().map(|id| id.hex()).collect());
        let listed = self.list(ids).await?;
        self.learn_pid_namespace(&listed);
        progress
            .wanted
            .store(found.len() + listed.len(), Ordering::Relaxed);
        progress.done.store(found.len(), Ordering::Relaxed);
        found.reserve(listed.len());
        let mut pending = FuturesUnordered::new();
        let mut seen = HashSet::new();
        for c in listed {
            let Some(hex) = hex_of(&c.container_id) else {
                tracing::debug!(id = %c.container_id, "scanner listed a malformed container ID; skipped");
                continue;
            };
            if wanted.as_ref().is_some_and(|w| !w.contains(hex.as_str()))
                || !seen.insert(hex.clone())
            {
                continue;
            }
            if let Some(info) = self.cache.get(&hex, c.pid, c.start_time) {
                self.metrics.cache_hits.inc();
                progress.done.fetch_add(1, Ordering::Relaxed);
                found.push(Found {
                    namespace: c.namespace,
                    pod: c.pod,
                    container_id: c.container_id,
                    hex,
                    info,
                });
                continue;
            }
            self.metrics.cache_misses.inc();
            let (scan, joined) = self.scan_shared(hex.clone(), c.pid, c.start_time);
            if joined == Joined::Shared {
                self.metrics.shared_scans.inc();
            }
            pending.push(async move { (c, hex, scan.await) });
        }
        while let Some((listed, hex, outcome)) = pending.next().await {
            progress.done.fetch_add(1, Ordering::Relaxed);
            // A scanner failure fails the request; dropping `pending` releases our shares.
            let Some(scanned) = outcome? else { continue };
            let Some(info) = scanned.info.clone() else {
                continue;
            };
            found.push(Found {
                namespace: listed.namespace,
                pod: listed.pod,
                container_id: listed.container_id,
                hex,
                info: Arc::new(info),
            });
        }
        Ok(found)
    }

    /// The in-flight scan of one container, started if none runs.
    fn scan_shared(
        &self,
        hex: String,
        pid: u32,
        start_time: u64,
    ) -> (
        futures::future::Shared<futures::future::BoxFuture<'static, Outcome>>,
        Joined,
    ) {
        let socket = self.socket.clone();
        let permits = Arc::clone(&self.permits);
        let cache = Arc::clone(&self.cache);
        let metrics = Arc::clone(&self.metrics);
        self.inflight.join(hex.clone(), move || async move {
            scan_one(socket, permits, cache, metrics, hex, (pid, start_time)).await
        })
    }

    /// Containers with a scan under way.
    pub fn scans_in_flight(&self) -> usize {
        self.inflight.in_flight()
    }

    /// Periodically forget cached containers that no longer run.
    pub fn spawn_pruner(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if this.cache.is_empty() {
                    continue;
                }
                match this.list(&[]).await {
                    Ok(all) => {
                        let running: HashSet<String> =
                            all.iter().filter_map(|c| hex_of(&c.container_id)).collect();
                        let n = this.cache.retain_running(&running);
                        if n > 0 {
                            tracing::debug!(removed = n, "pruned cache entries of gone containers");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "cache prune skipped"),
                }
            }
        })
    }
}

async fn call(socket: &std::path::Path, req: &ScanRequest) -> Result<ScanResponse, ScanError> {
    let resp = scanner_proto::request(socket, req)
        .await
        .map_err(|e| match e {
            FrameError::Io(io) => ScanError::Unreachable {
                socket: socket.display().to_string(),
                reason: io.to_string(),
            },
            other => ScanError::Scanner(other.to_string()),
        })?;
    if let Some(err) = &resp.error {
        return Err(ScanError::Scanner(err.to_string()));
    }
    Ok(resp)
}

/// Counts a scanner request as cancelled unless it finished.
struct CancelGuard<'a> {
    metrics: &'a Metrics,
    finished: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.scanner_request("cancelled");
        }
    }
}

async fn scan_one(
    socket: PathBuf,
    permits: Arc<Semaphore>,
    cache: Arc<ResultCache>,
    metrics: Arc<Metrics>,
    hex: String,
    (pid, start_time): (u32, u64),
) -> Outcome {
    // The semaphore is never closed; a closed one would only mean shutdown.
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|_| ScanError::Scanner("shutting down".to_owned()))?;
    // A scan of this container may have finished while we queued (or between our caller's
    // cache lookup and joining): never scan the same process twice.
    if let Some(info) = cache.get(&hex, pid, start_time) {
        return Ok(Some(Arc::new(ScannedContainer {
            pid,
            start_time,
            info: Some((*info).clone()),
            ..Default::default()
        })));
    }
    let mut guard = CancelGuard {
        metrics: &metrics,
        finished: false,
    };
    let started = Instant::now();
    let req = ScanRequest {
        container_ids: vec![hex.clone()],
        list_only: false,
    };
    let result = call(&socket, &req).await;
    guard.finished = true;
    drop(guard);
    let resp = match result {
        Ok(r) => {
            metrics.scanner_request("ok");
            r
        }
        Err(e) => {
            metrics.scanner_request("error");
            return Err(e);
        }
    };
    metrics
        .scan_duration
        .observe(started.elapsed().as_secs_f64());
    let Some(c) = resp
        .containers
        .into_iter()
        .find(|c| hex_of(&c.container_id).as_deref() == Some(hex.as_str()))
    else {
        metrics.scanned("gone");
        return Ok(None);
    };
    match (&c.info, &c.error) {
        (Some(info), _) => {
            metrics.scanned("ok");
            let placement = Placement {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                container_id: c.container_id.clone(),
            };
            cache.insert(&hex, c.pid, c.start_time, placement, Arc::new(info.clone()));
        }
        (None, err) => {
            metrics.scanned("failed");
            // Not cached: failures (timeouts, races with exiting processes) may be transient.
            match err {
                Some(e) => {
                    tracing::warn!(container = %c.container_id, kind = e.kind.as_str(), error = %e, "container analysis failed")
                }
                None => {
                    tracing::warn!(container = %c.container_id, "container analysis gave no result")
                }
            }
        }
    }
    Ok(Some(Arc::new(c)))
}

/// Response keys: the caller's spelling of each requested ID (the operator looks results up
/// by its own string), the scanner's for containers the caller did not name.
pub fn response_keys(ids: &[ContainerId]) -> HashMap<String, String> {
    let mut keys = HashMap::new();
    for id in ids {
        keys.entry(id.hex().to_owned())
            .or_insert_with(|| id.to_string());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32) -> identity::Stat {
        identity::read_stat(Path::new("/proc"), pid).unwrap()
    }

    #[test]
    fn process_identity_from_proc() {
        let pool = ScanPool::new(
            PathBuf::from("/nonexistent"),
            1,
            Arc::new(ResultCache::new(10, Duration::ZERO)),
            Arc::new(Metrics::new()),
        );
        let me = std::process::id();
        let start = stat(me).start_time;
        assert!(matches!(stat(me).state, 'R' | 'S'));
        assert!(pool.alive(me, start));
        assert!(
            !pool.alive(me, start + 1),
            "another process with a reused PID"
        );
        assert!(!pool.alive(0, 0));
        // A zombie is not alive: a child that exited and was not reaped yet.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let cstart = stat(pid).start_time;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stat(pid).state != 'Z' {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!pool.alive(pid, cstart));
        child.wait().unwrap();
        assert!(!pool.alive(pid, cstart));
    }
}

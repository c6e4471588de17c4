//! Orchestration: containers → process trees → candidates → sandboxes → results.
//!
//! Containers are analysed in parallel with a bound (default: number of CPUs); each one costs
//! a few /proc reads here and one sandbox helper. A container whose analysis fails (timeout,
//! crash, exited process) is reported with its error and the others carry on.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use runtime_info::ContainerRuntimeInfo;

use crate::process::Procfs;
use crate::sandbox::{self, JobMode, SandboxConfig};
use scanner_proto::{Failure, FailureKind, ScannedContainer};

/// How scans run.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub sandbox: SandboxConfig,
    /// Containers analysed at once.
    pub concurrency: usize,
    pub procfs: Procfs,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            sandbox: SandboxConfig::default(),
            concurrency: default_concurrency(),
            procfs: Procfs::default(),
        }
    }
}

/// Number of CPUs (at least 1).
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One container to analyse, as discovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The key of the answer (`cri-o://…`, `containerd://…`, or a PID for `scan --pid`).
    pub container_id: String,
    /// Host PID of the container's root process.
    pub pid: u32,
}

/// Errors for one container.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("internal error: {0}")]
    Join(String),
}

impl TargetError {
    /// The failure as it crosses the socket to the service.
    pub fn to_failure(&self) -> Failure {
        use crate::process::ProcessError;
        use sandbox::SandboxError;
        let kind = match self {
            TargetError::Process(ProcessError::Gone(_)) => FailureKind::ProcessGone,
            TargetError::Process(_) => FailureKind::Internal,
            TargetError::Sandbox(SandboxError::Timeout(_) | SandboxError::TooManyStuck(_)) => {
                FailureKind::Timeout
            }
            TargetError::Sandbox(SandboxError::Gone(_)) => FailureKind::ProcessGone,
            TargetError::Sandbox(_) => FailureKind::SandboxFailed,
            TargetError::Join(_) => FailureKind::Internal,
        };
        Failure::new(kind, self)
    }
}

/// Analyse the process tree under `pid` in a sandbox: pin it (pidfd, start time), then hand
/// it to a helper that reads its tree and files under the deadline.
pub async fn analyse_pid(
    opts: &ScanOptions,
    pid: u32,
) -> Result<(u64, ContainerRuntimeInfo), TargetError> {
    let pinned = opts.procfs.pin(pid)?;
    analyse_pinned(opts, &pinned).await
}

async fn analyse_pinned(
    opts: &ScanOptions,
    pinned: &crate::process::Pinned,
) -> Result<(u64, ContainerRuntimeInfo), TargetError> {
    let report = sandbox::run(&opts.sandbox, pinned, JobMode::Container).await?;
    Ok((pinned.start_time, report.info))
}

/// Analyse (or, with `list_only`, just identify) every target, in parallel with a bound.
/// Results come back sorted by namespace, pod and container ID.
///
/// Every target is pinned (pidfd) as soon as it is discovered, before it waits for its turn:
/// a container that exits meanwhile is then reported as exited, even if its PID has been given
/// to another process by the time its sandbox starts.
pub async fn scan_targets(
    opts: &ScanOptions,
    targets: Vec<Target>,
    list_only: bool,
) -> Vec<ScannedContainer> {
    let opts = Arc::new(opts.clone());
    let pinned: Vec<(Target, Option<Result<crate::process::Pinned, TargetError>>)> = targets
        .into_iter()
        .map(|t| {
            let pin = (!list_only).then(|| opts.procfs.pin(t.pid).map_err(TargetError::from));
            (t, pin)
        })
        .collect();
    let mut results: Vec<ScannedContainer> = stream::iter(pinned)
        .map(|(t, pin)| {
            let opts = Arc::clone(&opts);
            async move { scan_target(&opts, t, pin).await }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.container_id).cmp(&(&b.namespace, &b.pod, &b.container_id))
    });
    results
}

/// One target: identified only (`pin` is `None`: list-only), or analysed through its pin.
async fn scan_target(
    opts: &ScanOptions,
    t: Target,
    pin: Option<Result<crate::process::Pinned, TargetError>>,
) -> ScannedContainer {
    let mut out = ScannedContainer {
        namespace: t.namespace,
        pod: t.pod,
        container: t.container,
        container_id: t.container_id,
        pid: t.pid,
        ..Default::default()
    };
    let Some(pin) = pin else {
        match opts.procfs.start_time(t.pid) {
            Ok(start) => out.start_time = start,
            Err(e) => out.error = Some(TargetError::from(e).to_failure()),
        }
        return out;
    };
    let started = std::time::Instant::now();
    let analysed = match pin {
        Ok(pinned) => analyse_pinned(opts, &pinned).await,
        Err(e) => Err(e),
    };
    match analysed {
        Ok((start_time, info)) => {
            out.start_time = start_time;
            out.info = Some(info);
        }
        Err(e) => {
            tracing::warn!(container = %out.container_id, pid = t.pid, error = %e, "container analysis failed");
            out.error = Some(e.to_failure());
        }
    }
    tracing::debug!(container = %out.container_id, elapsed_ms = started.elapsed().as_millis() as u64, "container analysed");
    out
}

/// `scan --pid`: each PID fingerprinted as if it were a container's main process, keyed by
/// the PID as a string. PIDs that cannot be analysed are reported as errors.
pub async fn scan_pids(
    opts: &ScanOptions,
    pids: &[u32],
) -> (BTreeMap<String, ContainerRuntimeInfo>, Vec<(u32, String)>) {
    let targets = pids
        .iter()
        .map(|pid| Target {
            container_id: pid.to_string(),
            pid: *pid,
            ..Default::default()
        })
        .collect();
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for r in scan_targets(opts, targets, false).await {
        match (r.info, r.error) {
            (Some(info), _) => {
                found.insert(r.container_id, info);
            }
            (None, e) => errors.push((
                r.pid,
                e.map_or_else(|| "no result".to_owned(), |e| e.to_string()),
            )),
        }
    }
    (found, errors)
}

/// `scan --host`: every process of this machine whose own fingerprint finds a runtime kind,
/// keyed by PID. Each process is analysed alone (not its subtree), so a parent is not
/// credited with its children's runtime. The scanner reads only each process's `stat` here;
/// kernel threads (kthreadd's children), this process and its own helpers are skipped, and the
/// helper skips wrappers and processes without an executable.
pub async fn scan_host(opts: &ScanOptions) -> std::io::Result<HostScan> {
    const KTHREADD: u32 = 2;
    let me = std::process::id();
    let procfs = opts.procfs.clone();
    let processes: Vec<(u32, String)> = tokio::task::spawn_blocking(move || {
        let pids = procfs.all_pids()?;
        Ok::<_, std::io::Error>(
            pids.into_iter()
                .filter(|p| *p != me && *p != KTHREADD)
                .filter_map(|p| Some((p, procfs.stat(p).ok()?)))
                .filter(|(_, (stat, _))| stat.ppid != KTHREADD && stat.ppid != me)
                .map(|(p, (_, comm))| (p, comm))
                .collect(),
        )
    })
    .await
    .map_err(std::io::Error::other)??;
    let processes_seen = processes.len();
    let opts = Arc::new(opts.clone());
    let results: Vec<(u32, String, Option<sandbox::SandboxReport>)> = stream::iter(processes)
        .map(|(pid, comm)| {
            let opts = Arc::clone(&opts);
            async move {
                let report = match opts.procfs.pin(pid) {
                    Ok(pinned) => sandbox::run(&opts.sandbox, &pinned, JobMode::Process)
                        .await
                        .ok(),
                    Err(_) => None,
                };
                (pid, comm, report)
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut scan = HostScan {
        processes: processes_seen,
        ..Default::default()
    };
    for (pid, comm, report) in results {
        let Some(report) = report else { continue };
        if report.candidates > 0 {
            scan.analysed = scan.analysed.saturating_add(1);
        }
        if !report.info.kind.is_empty() {
            scan.found.insert(pid.to_string(), report.info);
            scan.names.insert(pid.to_string(), comm);
        }
    }
    Ok(scan)
}

/// What `scan --host` saw.
#[derive(Debug, Clone, Default)]
pub struct HostScan {
    /// PID → what was found, for processes with a recognised runtime kind.
    pub found: BTreeMap<String, ContainerRuntimeInfo>,
    /// PID → process name (`comm`) of the processes in `found`.
    pub names: BTreeMap<String, String>,
    /// Processes looked at (kernel threads excluded).
    pub processes: usize,
    /// Processes analysed in a sandbox (wrappers such as shells are not).
    pub analysed: usize,
}

/// Containers of this node (all, or only `requested`) through the CRI, then analysed.
///
/// The answer's key for a container is the ID as the caller wrote it when it carried a
/// prefix (the operator looks results up by its own string), else the runtime's form.
pub async fn scan_node(
    opts: &ScanOptions,
    cri: &crate::discovery::CriClient,
    requested: &[runtime_info::ContainerId],
    list_only: bool,
) -> Result<Vec<ScannedContainer>, crate::discovery::DiscoveryError> {
    let filter = (!requested.is_empty()).then_some(requested);
    let containers = cri.list_running(filter).await?;
    let asked_as: std::collections::HashMap<&str, String> = requested
        .iter()
        .filter(|id| id.runtime().is_some())
        .map(|id| (id.hex(), id.to_string()))
        .collect();
    let targets = containers
        .into_iter()
        .map(|c| Target {
            container_id: asked_as
                .get(c.id_hex.as_str())
                .cloned()
                .unwrap_or(c.kubernetes_id),
            namespace: c.namespace,
            pod: c.pod,
            container: c.name,
            pid: c.pid,
        })
        .collect();
    Ok(scan_targets(opts, targets, list_only).await)
}

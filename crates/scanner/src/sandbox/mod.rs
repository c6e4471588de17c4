//! The per-container sandbox: the only code that reads a container's memory-backed `/proc`
//! files or its filesystem.
//!
//! For each container the scanner re-executes its own binary (`/proc/self/exe __sandbox`): a
//! fresh, single-threaded process (joining a mount namespace needs one, and forking the
//! multi-threaded scanner without `exec` is unsound). Its stdin is one end of a unix socket
//! pair that already holds its [`SandboxJob`] and, as `SCM_RIGHTS`, the target's pidfd taken at
//! discovery ([`crate::process::Procfs::pin`]): no descriptor is inherited, and the spawn
//! needs no code between fork and exec (so it stays a cheap `posix_spawn`). The helper (`helper.rs`), with no fork at all:
//! 1. makes itself non-dumpable, raises its own OOM score, sets its parent-death signal;
//! 2. opens `/proc/<pid>` and checks through the pidfd that the process has not exited and
//!    that its start time is the discovered one: a reused PID is reported as exited, never
//!    entered; there is no fallback to `/proc/<pid>/ns` paths;
//! 3. reads the process tree (`cmdline`, `environ`, `status`, links) and picks the workload
//!    ([`crate::select`]): these reads can stall on the target's memory, so they happen here,
//!    under the deadline;
//! 4. takes a detached copy of the container's mount tree (`mount_tree.rs`): joins only the
//!    target's mount namespace, never its PID namespace, clones `/` recursively, returns to
//!    its own namespace, makes the copy read-only, `nodev`, `nosuid`, `noexec` and private,
//!    and `chroot`s into it;
//! 5. drops to the workload's own uid, gid and groups with no capabilities in any set and
//!    `no_new_privs`, checks that the drop took, and installs a seccomp allow-list that kills
//!    the process on anything else (`execve` above all) (`confine.rs`);
//! 6. fingerprints through a [`Root`](crate::fingerprint::Root) and writes one JSON
//!    [`SandboxReport`] to stdout.
//!
//! The helper arms a SIGKILL timer on itself for the deadline as soon as it has its job, so it
//! dies at the deadline whatever uid it runs as by then (the scanner holds no CAP_KILL).
//! The helper lives in the host's PID namespace, so nothing in the container can see it, let
//! alone attach to it. The parent ([`run`]) reads at most [`SandboxConfig::max_output`]
//! bytes, kills the helper's process group at the deadline and validates the report as hostile
//! input. A failure costs that one container, never the scan. A helper that does not die when
//! killed (stuck in the kernel on the target's memory) is counted ([`stuck_helpers`]); past
//! [`SandboxConfig::max_stuck`] no new helper starts until one is reaped.

mod confine;
mod helper;
mod mount_tree;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use runtime_info::ContainerRuntimeInfo;
use serde::{Deserialize, Serialize};

pub use confine::{current_privileges, seccomp_filter, Privileges};
pub use helper::{helper_main, helper_main_with, Hook};
pub use mount_tree::restrict as restrict_mounts;

/// `argv[1]` that makes the binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";
const MAX_STDERR_BYTES: u64 = 4096;
const MAX_VALUE_CHARS: usize = 256;
const MAX_RUNTIMES: usize = 16;
/// How long a killed helper may take to die before it counts as stuck.
const REAP_GRACE: Duration = Duration::from_millis(500);
/// Helper exit code for "the target exited (or its PID was reused)".
const EXIT_GONE: i32 = 4;

/// Helpers killed at their deadline that have not died yet (see [`stuck_helpers`]).
static STUCK: AtomicUsize = AtomicUsize::new(0);

/// Sandbox helpers that were killed but have not exited: each is blocked in the kernel on a
/// container's memory (a stalled page behind `cmdline`, a FUSE mapping). Reported in the
/// scanner's answers and the service's metrics.
pub fn stuck_helpers() -> usize {
    STUCK.load(Ordering::Relaxed)
}

/// What to analyse in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobMode {
    /// A container: the whole tree under its root process; the workload is selected.
    #[default]
    Container,
    /// One process alone (`scan --host`): skipped when it is a wrapper or has no executable.
    Process,
}

/// What the helper is asked to do (the pidfd comes with it, as `SCM_RIGHTS`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxJob {
    /// Host PID of the container's root process (the one the pidfd holds).
    pub target_pid: u32,
    /// Its start time as discovered: a process with another one is not entered.
    pub target_start_time: u64,
    pub mode: JobMode,
    /// The deadline, armed by the helper as a SIGKILL timer on itself (0: none).
    #[serde(default)]
    pub deadline_ms: u64,
}

/// What the helper answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxReport {
    pub info: ContainerRuntimeInfo,
    /// The credentials the fingerprints ran with, as read back after the drop.
    pub privileges: Privileges,
    /// Candidate processes considered (0: nothing to fingerprint, e.g. a wrapper alone).
    #[serde(default)]
    pub candidates: usize,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The binary to re-execute (normally `/proc/self/exe`).
    pub helper: PathBuf,
    /// Arguments before the helper's own (tests run a harness-less test binary as helper).
    pub helper_args: Vec<String>,
    /// Deadline for one container, after which the helper's process group is killed.
    pub timeout: Duration,
    /// Largest answer accepted from the child.
    pub max_output: usize,
    /// Stuck helpers tolerated before new analyses are refused (see [`stuck_helpers`]).
    pub max_stuck: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            helper: PathBuf::from("/proc/self/exe"),
            helper_args: vec![HELPER_ARG.to_owned()],
            timeout: Duration::from_secs(5),
            max_output: 64 * 1024,
            max_stuck: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the sandbox helper {path}: {cause}")]
    Spawn { path: String, cause: io::Error },
    // Causes are part of each message and not a `source()`: printed once.
    #[error("i/o error talking to the sandbox: {0}")]
    Io(io::Error),
    #[error("analysis timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0} sandbox helpers are stuck in the kernel; not starting another")]
    TooManyStuck(usize),
    #[error("process {0} exited (or its PID now names another process)")]
    Gone(u32),
    #[error("sandbox answer exceeds {0} bytes")]
    TooLarge(usize),
    #[error("sandbox failed ({status}): {message}")]
    Failed { status: String, message: String },
    #[error("invalid sandbox answer: {0}")]
    Invalid(String),
}

impl From<io::Error> for SandboxError {
    fn from(e: io::Error) -> Self {
        SandboxError::Io(e)
    }
}

/// Analyse one pinned process in a sandbox. Never panics; every failure is an error for this
/// container only.
pub async fn run(
    config: &SandboxConfig,
    target: &crate::process::Pinned,
    mode: JobMode,
) -> Result<SandboxReport, SandboxError> {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;

    let stuck = stuck_helpers();
    if stuck >= config.max_stuck {
        return Err(SandboxError::TooManyStuck(stuck));
    }
    let job = SandboxJob {
        target_pid: target.pid,
        target_start_time: target.start_time,
        mode,
        deadline_ms: u64::try_from(config.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    };
    let input = serde_json::to_vec(&job).map_err(|e| SandboxError::Invalid(e.to_string()))?;
    let (ours, theirs) = UnixStream::pair()?;
    send_job(&ours, &input, &target.pidfd)?;
    // The helper reads to EOF: our end goes now, before it starts.
    drop(ours);
    let mut cmd = tokio::process::Command::new(&config.helper);
    cmd.args(&config.helper_args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        path: config.helper.display().to_string(),
        cause: source,
    })?;
    let pgid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SandboxError::Invalid("helper pipes missing".into()));
    };
    let max = config.max_output;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take((max as u64).saturating_add(1));
        let mut stderr = stderr.take(MAX_STDERR_BYTES);
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1?;
        r2?;
        Ok::<_, io::Error>((out, err))
    };
    let result = tokio::time::timeout(config.timeout, work).await;
    // Whatever happened, nothing of this helper may outlive this call unaccounted. (Once the
    // helper runs as the workload's uid this signal is refused, the scanner having no
    // CAP_KILL; the helper's own deadline timer kills it then.)
    kill_group(pgid);
    let (out, err) = match result {
        Err(_) => {
            reap(child).await;
            return Err(SandboxError::Timeout(config.timeout));
        }
        Ok(Err(e)) => {
            reap(child).await;
            return Err(SandboxError::Io(e));
        }
        Ok(Ok(v)) => v,
    };
    let status = match tokio::time::timeout(REAP_GRACE, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            reap(child).await;
            return Err(SandboxError::Timeout(config.timeout));
        }
    };
    if out.len() > max {
        return Err(SandboxError::TooLarge(max));
    }
    if status.code() == Some(EXIT_GONE) {
        return Err(SandboxError::Gone(target.pid));
    }
    // Its own deadline timer may fire before ours is noticed (a loaded node): a SIGKILL at
    // the deadline is the deadline. (Earlier, it is the OOM killer's: reported as a failure.)
    use std::os::unix::process::ExitStatusExt as _;
    if status.signal() == Some(libc::SIGKILL) && started.elapsed() >= config.timeout {
        return Err(SandboxError::Timeout(config.timeout));
    }
    if !status.success() {
        let message = String::from_utf8_lossy(&err);
        let message = message
            .lines()
            .last()
            .unwrap_or("no message")
            .trim()
            .to_owned();
        return Err(SandboxError::Failed {
            status: status.to_string(),
            message: sanitize(&message, 300),
        });
    }
    validate(&out)
}

/// The job and the pidfd, in one message on the helper's stdin socket. A job is a few hundred
/// bytes: far below a socket buffer, so this never blocks.
fn send_job(socket: &UnixStream, job: &[u8], pidfd: &OwnedFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [pidfd.as_raw_fd()];
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[io::IoSlice::new(job)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(io::Error::from)?;
    if sent != job.len() {
        return Err(io::Error::other("sandbox job sent in part"));
    }
    Ok(())
}

/// Wait briefly for a killed helper; if it does not die, count it as stuck until it does.
async fn reap(mut child: tokio::process::Child) {
    if tokio::time::timeout(REAP_GRACE, child.wait()).await.is_ok() {
        return;
    }
    let now = STUCK.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    tracing::warn!(
        pid = child.id(),
        stuck = now,
        "a killed sandbox helper is stuck in the kernel"
    );
    tokio::spawn(async move {
        let _ = child.wait().await;
        STUCK.fetch_sub(1, Ordering::Relaxed);
    });
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Drop control characters and cap the length: values came from container files.
fn sanitize(value: &str, max_chars: usize) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Parse the child's answer as hostile input.
pub fn validate(bytes: &[u8]) -> Result<SandboxReport, SandboxError> {
    let report: SandboxReport =
        serde_json::from_slice(bytes).map_err(|e| SandboxError::Invalid(e.to_string()))?;
    if !report.privileges.fully_dropped() {
        return Err(SandboxError::Invalid(format!(
            "child kept privileges: {:?}",
            report.privileges
        )));
    }
    if report.info.runtimes.len() > MAX_RUNTIMES {
        return Err(SandboxError::Invalid(format!(
            "{} runtimes reported",
            report.info.runtimes.len()
        )));
    }
    let info = report.info.map_values(|s| sanitize(s, MAX_VALUE_CHARS));
    Ok(SandboxReport { info, ..report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_info::RuntimeComponent;

    fn dropped() -> Privileges {
        Privileges {
            uids: [1000; 3],
            gids: [1000; 3],
            no_new_privs: true,
            seccomp: true,
            ..Default::default()
        }
    }

    #[test]
    fn validate_rejects_kept_privileges_and_garbage() {
        let mut report = SandboxReport {
            privileges: dropped(),
            ..Default::default()
        };
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_ok());
        // Root inside a root container is fine once it holds no capability.
        report.privileges.uids = [0; 3];
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_ok());
        report.privileges = dropped();
        report.privileges.cap_bounding = 1;
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_err());
        report.privileges = dropped();
        report.privileges.seccomp = false;
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_err());
        report.privileges = dropped();
        report.privileges.dumpable = true;
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_err());
        assert!(validate(b"not json").is_err());
        assert!(validate(b"").is_err());
    }

    #[test]
    fn validate_sanitizes_values() {
        let report = SandboxReport {
            info: ContainerRuntimeInfo {
                os: "rhel\u{1b}[31m\n".into(),
                kind_version: "x".repeat(10_000),
                ..Default::default()
            },
            privileges: dropped(),
            candidates: 1,
        };
        let clean = validate(&serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(clean.info.os, "rhel[31m");
        assert_eq!(clean.info.kind_version.len(), MAX_VALUE_CHARS);
        let mut many = report.clone();
        many.info.runtimes = vec![RuntimeComponent::default(); MAX_RUNTIMES + 1];
        assert!(validate(&serde_json::to_vec(&many).unwrap()).is_err());
    }
}

//! The per-container sandbox: the only code that touches a container's files.
//!
//! The scanner re-executes its own binary (`/proc/self/exe __sandbox`) for each container:
//! `setns` into a mount namespace needs a single-threaded process, and forking a
//! multi-threaded (tokio) process without an immediate `exec` is unsafe, so the helper starts
//! fresh. The helper, still single-threaded:
//! 1. reads its [`SandboxJob`] from stdin (bounded), opens a pidfd on the target and checks
//!    the process is still the one discovered (start time), so a recycled PID is never entered;
//! 2. joins the target's mount and PID namespaces;
//! 3. forks, so the child is really inside the PID namespace; the child sets resource limits,
//!    drops every privilege (supplementary groups, gid, bounding/ambient/inheritable
//!    capabilities, uid — root maps to 65534 — then `PR_SET_NO_NEW_PRIVS`), verifies that the
//!    drop took, and only then reads files, through a confined [`Root`];
//! 4. the child writes one JSON [`SandboxReport`] to the pipe and exits.
//!
//! The parent ([`run`]) reads at most [`SandboxConfig::max_output`] bytes, kills the whole
//! process group at the deadline, and validates the report as hostile input. A failure costs
//! that one container, never the scan. Nothing from the container is ever executed.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use runtime_info::ContainerRuntimeInfo;
use serde::{Deserialize, Serialize};

use crate::fingerprint::{self, Root};
use crate::process::{ProcessFacts, Procfs};

/// `argv[1]` that makes the binary act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";
/// uid/gid used instead of 0: the sandbox never keeps root.
pub const NOBODY: u32 = 65534;
const MAX_JOB_BYTES: u64 = 4 * 1024 * 1024;
const MAX_STDERR_BYTES: u64 = 4096;
const MAX_VALUE_CHARS: usize = 256;
const MAX_RUNTIMES: usize = 16;
/// Address-space limit of the analysing child: fingerprints read bounded buffers only.
const CHILD_MAX_ADDRESS_SPACE: u64 = 1 << 30;
const CHILD_MAX_OPEN_FILES: u64 = 64;

/// What the helper is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxJob {
    /// Host PID whose namespaces are joined (the container's root process).
    pub target_pid: u32,
    /// Its start time, to refuse a recycled PID.
    pub target_start_time: u64,
    /// Credentials to drop to (0 is mapped to [`NOBODY`]).
    pub uid: u32,
    pub gid: u32,
    /// Workload candidates, best first (see [`crate::select`]).
    pub candidates: Vec<ProcessFacts>,
}

/// Credentials of the analysing child as it saw them after dropping privileges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Privileges {
    /// Real, effective and saved uid.
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    pub groups: Vec<u32>,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub no_new_privs: bool,
}

impl Privileges {
    /// True when nothing privileged is left.
    pub fn fully_dropped(&self) -> bool {
        self.uids.iter().all(|u| *u != 0)
            && self.gids.iter().all(|g| *g != 0)
            && self.groups.is_empty()
            && self.cap_effective == 0
            && self.cap_permitted == 0
            && self.cap_inheritable == 0
            && self.cap_bounding == 0
            && self.cap_ambient == 0
            && self.no_new_privs
    }
}

/// What the child answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    pub info: ContainerRuntimeInfo,
    pub privileges: Privileges,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The binary to re-execute (normally `/proc/self/exe`).
    pub helper: PathBuf,
    /// Deadline for one container, after which the helper's process group is killed.
    pub timeout: Duration,
    /// Largest answer accepted from the child.
    pub max_output: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            helper: PathBuf::from("/proc/self/exe"),
            timeout: Duration::from_secs(5),
            max_output: 64 * 1024,
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

/// Analyse one container in a sandbox. Never panics; every failure is an error for this
/// container only.
pub async fn run(config: &SandboxConfig, job: &SandboxJob) -> Result<SandboxReport, SandboxError> {
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let input = serde_json::to_vec(job).map_err(|e| SandboxError::Invalid(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(&config.helper);
    cmd.arg(HELPER_ARG)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group: the grandchild inside the container's PID namespace is killed too.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        path: config.helper.display().to_string(),
        cause: source,
    })?;
    let pgid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SandboxError::Invalid("helper pipes missing".into()));
    };
    let max = config.max_output;
    let work = async {
        // The helper reads its whole job before doing anything, so this cannot deadlock.
        stdin.write_all(&input).await?;
        drop(stdin);
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take((max as u64).saturating_add(1));
        let mut stderr = stderr.take(MAX_STDERR_BYTES);
        let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        r1?;
        r2?;
        let status = child.wait().await?;
        Ok::<_, io::Error>((out, err, status))
    };
    let result = tokio::time::timeout(config.timeout, work).await;
    let (out, err, status) = match result {
        Err(_) => {
            kill_group(pgid);
            return Err(SandboxError::Timeout(config.timeout));
        }
        Ok(Err(e)) => {
            kill_group(pgid);
            return Err(SandboxError::Io(e));
        }
        Ok(Ok(v)) => v,
    };
    // The group may still hold a straggler (e.g. the child if the helper died first).
    kill_group(pgid);
    if out.len() > max {
        return Err(SandboxError::TooLarge(max));
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
    Ok(SandboxReport {
        info,
        privileges: report.privileges,
    })
}

// ---------------------------------------------------------------------------------------------
// Helper side: runs in the re-executed binary, single-threaded, before any runtime starts.

/// Entry point of `runtime-extractor __sandbox`. Returns the process exit code.
pub fn helper_main() -> i32 {
    match helper() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "sandbox: {e}");
            2
        }
    }
}

#[allow(unsafe_code)] // fork(2): see the SAFETY comment below
fn helper() -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    // If the scanner dies, so do we.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    let mut input = Vec::new();
    io::stdin()
        .take(MAX_JOB_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the job: {e}"))?;
    if input.len() as u64 > MAX_JOB_BYTES {
        return Err("job too large".into());
    }
    let job: SandboxJob =
        serde_json::from_slice(&input).map_err(|e| format!("invalid job: {e}"))?;
    enter_namespaces(&job)?;
    // SAFETY: fork is unsound only where another thread could hold a lock the child needs;
    // this process is a fresh exec of the helper that started no runtime and no thread
    // (`main` dispatches here before anything else), so the child may do anything.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match analyse(&job) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(io::stderr(), "sandbox: {e}");
                    3
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Err(format!("analysis killed by {sig}"));
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waitpid: {e}")),
            }
        },
    }
}

/// Join the target's mount and PID namespaces, refusing a recycled PID.
fn enter_namespaces(job: &SandboxJob) -> Result<(), String> {
    use nix::sched::{setns, CloneFlags};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};

    let pid = i32::try_from(job.target_pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("invalid pid {}", job.target_pid))?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty())
        .map_err(|e| format!("process {} is gone: {e}", job.target_pid))?;
    // The pidfd pins the process: if the start time matches now, we enter the right one.
    let start = Procfs::default()
        .start_time(job.target_pid)
        .map_err(|e| e.to_string())?;
    if start != job.target_start_time {
        return Err(format!("process {} was replaced", job.target_pid));
    }
    if let Err(e) = setns(&pidfd, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID) {
        // Kernels before 5.8 cannot setns through a pidfd: use the namespace files.
        tracing::debug!(error = %e, "setns via pidfd failed, using /proc/<pid>/ns");
        let open = |ns: &str| {
            std::fs::File::open(format!("/proc/{}/ns/{ns}", job.target_pid))
                .map_err(|e| format!("open ns/{ns}: {e}"))
        };
        let (pid_ns, mnt_ns) = (open("pid")?, open("mnt")?);
        setns(&pid_ns, CloneFlags::CLONE_NEWPID).map_err(|e| format!("setns(pid): {e}"))?;
        setns(&mnt_ns, CloneFlags::CLONE_NEWNS).map_err(|e| format!("setns(mnt): {e}"))?;
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

fn unprivileged(id: u32) -> u32 {
    if id == 0 {
        NOBODY
    } else {
        id
    }
}

/// Limits first (while allowed to set them), then groups, gid, capabilities, uid, no_new_privs.
fn drop_privileges(uid: u32, gid: u32) -> Result<(), String> {
    use caps::CapSet;
    use nix::sys::resource::{setrlimit, Resource};
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

    let limits = [
        (Resource::RLIMIT_AS, CHILD_MAX_ADDRESS_SPACE),
        (Resource::RLIMIT_NOFILE, CHILD_MAX_OPEN_FILES),
        (Resource::RLIMIT_FSIZE, 0),
        (Resource::RLIMIT_CORE, 0),
    ];
    for (resource, limit) in limits {
        setrlimit(resource, limit, limit).map_err(|e| format!("setrlimit({resource:?}): {e}"))?;
    }
    let (uid, gid) = (unprivileged(uid), unprivileged(gid));
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(|e| format!("setresgid({gid}): {e}"))?;
    // Bounding set needs CAP_SETPCAP, so it goes before the uid change.
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("drop bounding: {e}"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clear ambient: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("clear inheritable: {e}"))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(|e| format!("setresuid({uid}): {e}"))?;
    // Leaving uid 0 clears these already; be explicit in case of SECBIT_KEEP_CAPS.
    caps::clear(None, CapSet::Effective).map_err(|e| format!("clear effective: {e}"))?;
    caps::clear(None, CapSet::Permitted).map_err(|e| format!("clear permitted: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    // Credential changes reset the parent-death signal.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    Ok(())
}

fn capset_bits(set: caps::CapSet) -> Result<u64, String> {
    let caps = caps::read(None, set).map_err(|e| format!("read {set:?}: {e}"))?;
    Ok(caps.iter().fold(0u64, |acc, c| acc | (1u64 << c.index())))
}

/// What the process really holds now, read back from the kernel.
pub fn current_privileges() -> Result<Privileges, String> {
    use caps::CapSet;
    use nix::unistd::{getgroups, getresgid, getresuid};
    let u = getresuid().map_err(|e| format!("getresuid: {e}"))?;
    let g = getresgid().map_err(|e| format!("getresgid: {e}"))?;
    let groups = getgroups().map_err(|e| format!("getgroups: {e}"))?;
    Ok(Privileges {
        uids: [u.real.as_raw(), u.effective.as_raw(), u.saved.as_raw()],
        gids: [g.real.as_raw(), g.effective.as_raw(), g.saved.as_raw()],
        groups: groups.iter().map(|g| g.as_raw()).collect(),
        cap_effective: capset_bits(CapSet::Effective)?,
        cap_permitted: capset_bits(CapSet::Permitted)?,
        cap_inheritable: capset_bits(CapSet::Inheritable)?,
        cap_bounding: capset_bits(CapSet::Bounding)?,
        cap_ambient: capset_bits(CapSet::Ambient)?,
        no_new_privs: nix::sys::prctl::get_no_new_privs().map_err(|e| e.to_string())?,
    })
}

/// In the forked child: drop, verify, fingerprint, answer.
fn analyse(job: &SandboxJob) -> Result<(), String> {
    drop_privileges(job.uid, job.gid)?;
    let privileges = current_privileges()?;
    if !privileges.fully_dropped() {
        return Err(format!("privileges not fully dropped: {privileges:?}"));
    }
    let root = Root::open(std::path::Path::new("/")).map_err(|e| format!("open /: {e}"))?;
    let info = fingerprint::fingerprint_container(&root, &job.candidates);
    let report = SandboxReport { info, privileges };
    let bytes = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
    let mut out = io::stdout().lock();
    out.write_all(&bytes).map_err(|e| format!("write: {e}"))?;
    out.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_info::RuntimeComponent;

    fn dropped() -> Privileges {
        Privileges {
            uids: [65534; 3],
            gids: [65534; 3],
            no_new_privs: true,
            ..Default::default()
        }
    }

    #[test]
    fn validate_rejects_kept_privileges_and_garbage() {
        let mut report = SandboxReport {
            info: ContainerRuntimeInfo::default(),
            privileges: dropped(),
        };
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_ok());
        report.privileges.uids[2] = 0;
        assert!(validate(&serde_json::to_vec(&report).unwrap()).is_err());
        report.privileges = dropped();
        report.privileges.cap_bounding = 1;
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
        };
        let clean = validate(&serde_json::to_vec(&report).unwrap()).unwrap();
        assert_eq!(clean.info.os, "rhel[31m");
        assert_eq!(clean.info.kind_version.len(), MAX_VALUE_CHARS);
        let mut many = report.clone();
        many.info.runtimes = vec![RuntimeComponent::default(); MAX_RUNTIMES + 1];
        assert!(validate(&serde_json::to_vec(&many).unwrap()).is_err());
    }

    #[test]
    fn root_maps_to_nobody() {
        assert_eq!(unprivileged(0), NOBODY);
        assert_eq!(unprivileged(1000), 1000);
    }
}

//! The helper side: runs in the re-executed binary, single-threaded, before any runtime
//! starts. See the module documentation of [`crate::sandbox`] for the steps.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::confine::{self, Credentials};
use super::{mount_tree, JobMode, SandboxJob, SandboxReport, EXIT_GONE};
use crate::fingerprint::{self, Root};
use crate::process::{self, ProcessError, ProcessFacts, Procfs, MAX_PROCESSES_PER_CONTAINER};
use crate::select;

const MAX_JOB_BYTES: u64 = 64 * 1024;
/// The reader is the first process the OOM killer takes, never the scanner.
const OOM_SCORE_ADJ: &[u8] = b"1000";

/// Code run right after the confinement is installed, before any container file is read.
/// Production passes none; a test passes one that misbehaves (e.g. calls `execve`) to show
/// the confinement stops it.
pub type Hook = fn();

/// Entry point of `runtime-extractor __sandbox`. Returns the process exit code.
pub fn helper_main() -> i32 {
    helper_main_with(None)
}

/// [`helper_main`] with a [`Hook`] (tests only pass one).
pub fn helper_main_with(hook: Option<Hook>) -> i32 {
    match helper(hook) {
        Ok(()) => 0,
        Err(Failure::Gone(why)) => {
            let _ = writeln!(io::stderr(), "sandbox: {why}");
            EXIT_GONE
        }
        Err(Failure::Other(why)) => {
            let _ = writeln!(io::stderr(), "sandbox: {why}");
            2
        }
    }
}

enum Failure {
    /// The target exited, or its PID names another process now.
    Gone(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Gone(_) => Failure::Gone(e.to_string()),
            other => Failure::Other(other.to_string()),
        }
    }
}

fn helper(hook: Option<Hook>) -> Result<(), Failure> {
    // Before anything of the target is touched: nobody may attach to us or read our memory.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(DUMPABLE): {e}"))?;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("prctl(PDEATHSIG): {e}"))?;
    std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ)
        .map_err(|e| format!("oom_score_adj: {e}"))?;
    let (input, pidfd) = receive_job()?;
    let job: SandboxJob =
        serde_json::from_slice(&input).map_err(|e| format!("invalid job: {e}"))?;
    let pid = job.target_pid;
    // Never dropped: deleting it would be a system call the seccomp filter forbids, and it
    // must stay armed until the process exits anyway.
    std::mem::forget(arm_deadline(job.deadline_ms)?);

    // The directory first, then the pidfd: if the process is alive now, the directory is its.
    let procfs = Procfs::default();
    let dir = procfs.open_dir(pid)?;
    if !process::pidfd_alive(&pidfd) {
        return Err(Failure::Gone(format!("process {pid} exited")));
    }
    if Procfs::start_time_at(&dir, pid)? != job.target_start_time {
        return Err(Failure::Gone(format!("process {pid} was replaced")));
    }
    let (candidates, creds) = plan(&procfs, &dir, pid, job.mode)?;
    drop(dir);

    let filter = confine::seccomp_filter()?;
    mount_tree::enter_copy_of(&pidfd).map_err(|e| {
        if process::pidfd_alive(&pidfd) {
            Failure::Other(e)
        } else {
            Failure::Gone(format!("process {pid} exited"))
        }
    })?;
    drop(pidfd);
    let mut privileges = confine::drop_to(&creds)?;
    confine::install(&filter)?;
    privileges.seccomp = true;
    if let Some(hook) = hook {
        hook();
    }

    let root = Root::open(std::path::Path::new("/")).map_err(|e| format!("open /: {e}"))?;
    let info = if candidates.is_empty() && job.mode == JobMode::Process {
        Default::default()
    } else {
        fingerprint::fingerprint_container(&root, &candidates)
    };
    let report = SandboxReport {
        info,
        privileges,
        candidates: candidates.len(),
    };
    let bytes = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
    let mut out = io::stdout().lock();
    out.write_all(&bytes).map_err(|e| format!("write: {e}"))?;
    out.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(())
}

/// The job and the pidfd from stdin (a unix socket: see [`crate::sandbox`]), bounded.
#[allow(unsafe_code)] // taking ownership of the received descriptor: see the SAFETY comment
fn receive_job() -> Result<(Vec<u8>, OwnedFd), String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; usize::try_from(MAX_JOB_BYTES).unwrap_or(65536)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (n, fds) = {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(0, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("reading the job: {e}"))?;
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| format!("reading the job: {e}"))? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: each descriptor was just installed in this process by SCM_RIGHTS;
                // nothing else knows or owns it.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let mut fds = fds.into_iter();
    let (Some(pidfd), None) = (fds.next(), fds.next()) else {
        return Err("the job did not come with exactly one pidfd".into());
    };
    buf.truncate(n);
    // The rest of the job, if the stream split it, up to the bound.
    let rest = MAX_JOB_BYTES.saturating_sub(n as u64).saturating_add(1);
    io::stdin()
        .take(rest)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading the job: {e}"))?;
    if buf.len() as u64 > MAX_JOB_BYTES {
        return Err("job too large".into());
    }
    Ok((buf, pidfd))
}

/// A per-process timer that sends SIGKILL to this process at the deadline: it cannot be
/// blocked or handled, survives the credential change, and needs no system call later.
fn arm_deadline(ms: u64) -> Result<Option<nix::sys::timer::Timer>, String> {
    use nix::sys::signal::{SigEvent, SigevNotify, Signal};
    use nix::sys::time::TimeSpec;
    use nix::sys::timer::{Expiration, Timer, TimerSetTimeFlags};
    use nix::time::ClockId;
    if ms == 0 {
        return Ok(None);
    }
    let mut timer = Timer::new(
        ClockId::CLOCK_MONOTONIC,
        SigEvent::new(SigevNotify::SigevSignal {
            signal: Signal::SIGKILL,
            si_value: 0,
        }),
    )
    .map_err(|e| format!("timer_create: {e}"))?;
    let when = TimeSpec::from_duration(std::time::Duration::from_millis(ms));
    timer
        .set(Expiration::OneShot(when), TimerSetTimeFlags::empty())
        .map_err(|e| format!("timer_settime: {e}"))?;
    Ok(Some(timer))
}

/// The candidates to fingerprint and the credentials to read with: the selected workload's
/// (the tree's root's when nothing is selected).
fn plan(
    procfs: &Procfs,
    dir: &OwnedFd,
    pid: u32,
    mode: JobMode,
) -> Result<(Vec<ProcessFacts>, Credentials), Failure> {
    let tree = match mode {
        JobMode::Container => procfs.tree_at(dir, pid, MAX_PROCESSES_PER_CONTAINER),
        JobMode::Process => vec![Procfs::facts_at(dir, pid)?],
    };
    let Some(root) = tree.first() else {
        return Err(Failure::Gone(format!("process {pid} exited")));
    };
    let candidates = match mode {
        JobMode::Container => select::rank(&tree),
        JobMode::Process => {
            let useful = root.exe.is_some() && select::classify(root) != select::Class::Wrapper;
            if useful {
                vec![root.clone()]
            } else {
                Vec::new()
            }
        }
    };
    let creds = credentials_for(&tree, &candidates);
    Ok((candidates, creds))
}

/// The workload's credentials: the first candidate's, else the tree root's.
pub(crate) fn credentials_for(tree: &[ProcessFacts], candidates: &[ProcessFacts]) -> Credentials {
    let owner = candidates.first().or(tree.first());
    owner
        .map(|p| Credentials {
            uid: p.uid,
            gid: p.gid,
            groups: p.groups.clone(),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_winners_credentials_are_used() {
        let tree = vec![
            ProcessFacts {
                pid: 1,
                comm: "sh".into(),
                argv: vec!["sh".into()],
                exe: Some("/bin/sh".into()),
                ..Default::default()
            },
            ProcessFacts {
                pid: 2,
                comm: "java".into(),
                argv: vec!["java".into()],
                exe: Some("/opt/jdk/bin/java".into()),
                uid: 1001,
                gid: 0,
                groups: vec![0, 1001],
                ..Default::default()
            },
        ];
        let candidates = select::rank(&tree);
        assert_eq!(candidates.len(), 1);
        let creds = credentials_for(&tree, &candidates);
        assert_eq!(
            (creds.uid, creds.gid, creds.groups),
            (1001, 0, vec![0, 1001])
        );
        let creds = credentials_for(&tree[..1], &select::rank(&tree[..1]));
        assert_eq!(creds.uid, 0);
    }
}

//! Reading processes from the host's `/proc`, bounded, never trusting what we read.
//!
//! The privileged scanner itself reads only `stat` ([`Procfs::pin`], [`Procfs::start_time`]):
//! a line the kernel writes without touching the process's memory. Everything that reads
//! memory or links the process controls (`cmdline`, `environ`, `status`, `exe`, `cwd`, the
//! tree) is read by [`Procfs::facts`] and [`Procfs::tree`] inside the sandbox helper, under its
//! deadline (see [`crate::sandbox`]), so a read that stalls costs one container, never the
//! scanner. Each process's files are read through one directory descriptor of `/proc/<pid>`,
//! so they all describe the same process even if the PID is reused meanwhile. Paths (`exe`,
//! `cwd`) are the kernel's view from the process's own root, i.e. container paths.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};

use scanner_proto::identity;
use serde::{Deserialize, Serialize};

/// Most processes looked at per container (the whole tree under its root PID, bounded).
pub const MAX_PROCESSES_PER_CONTAINER: usize = 256;
const MAX_CMDLINE: u64 = 128 * 1024;
const MAX_ENVIRON: u64 = 256 * 1024;
const MAX_SMALL_FILE: u64 = 16 * 1024;
const MAX_ARGS: usize = 1024;
const MAX_VALUE_LEN: usize = 8 * 1024;

/// Environment variables the fingerprints may use. Everything else (secrets!) is never
/// read into memory past the streaming filter, never sent to the sandbox, never logged.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "JAVA_HOME",
    "JBOSS_HOME",
    "CLASSPATH",
    "JAVA_VERSION",
    "NODE_VERSION",
    "PYTHON_VERSION",
    "PYTHONHOME",
];

/// What the scanner knows about one process; sent to the sandbox as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFacts {
    /// PID in the host's PID namespace.
    pub pid: u32,
    pub ppid: u32,
    /// `/proc/<pid>/comm` (at most 15 bytes; Node 24+ shows `MainThread`).
    pub comm: String,
    /// Command line, lossily decoded; may be empty (zombies, kernel threads).
    pub argv: Vec<String>,
    /// Allow-listed environment only (see [`ENV_ALLOWLIST`]).
    pub env: BTreeMap<String, String>,
    /// `readlink /proc/<pid>/exe`: the executable's real path inside the container.
    pub exe: Option<String>,
    /// `readlink /proc/<pid>/cwd`: the working directory inside the container.
    pub cwd: Option<String>,
    /// Real uid and gid, and supplementary groups, as the host sees them.
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub groups: Vec<u32>,
    /// Start time in clock ticks after boot (`stat` field 22): with `pid`, identifies the process.
    pub start_time: u64,
}

/// Errors reading a process. A vanished process is the common, harmless case.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {0} does not exist (it may have exited)")]
    Gone(u32),
    #[error("cannot read /proc/{pid}/{file}: {cause}")]
    Io {
        pid: u32,
        file: &'static str,
        cause: io::Error,
    },
    #[error("malformed /proc/{pid}/{file}")]
    Malformed { pid: u32, file: &'static str },
}

/// A process held by a pidfd since discovery: the pidfd cannot come to mean another process,
/// so whoever enters the process through it enters the one discovered, or learns it exited.
#[derive(Debug)]
pub struct Pinned {
    pub pid: u32,
    /// Start time read after the pidfd was opened (see [`Procfs::pin`]).
    pub start_time: u64,
    pub pidfd: OwnedFd,
}

/// True while the process behind `pidfd` has not exited (a pidfd polls readable on exit).
/// Needs no permission over the process, unlike a signal 0.
pub fn pidfd_alive(pidfd: &impl AsFd) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(0))
}

/// The files of `/proc/<pid>/` that [`Procfs::facts`] reads, as read (bounded), before
/// parsing: all of it is written or chosen by the process.
#[derive(Debug, Clone, Default)]
pub struct ProcFiles {
    pub stat: Vec<u8>,
    pub status: Vec<u8>,
    pub comm: Vec<u8>,
    pub cmdline: Vec<u8>,
    pub environ: Option<Vec<u8>>,
}

impl ProcFiles {
    /// The facts these files give (`exe` and `cwd` are links, read separately).
    pub fn parse(&self, pid: u32) -> Result<ProcessFacts, ProcessError> {
        let stat = parse_stat(&String::from_utf8_lossy(&self.stat))
            .ok_or(ProcessError::Malformed { pid, file: "stat" })?;
        let (uid, gid) =
            parse_ids(&String::from_utf8_lossy(&self.status)).ok_or(ProcessError::Malformed {
                pid,
                file: "status",
            })?;
        Ok(ProcessFacts {
            pid,
            ppid: stat.ppid,
            comm: lossy(self.comm.trim_ascii_end()),
            argv: split_nul(&self.cmdline, MAX_ARGS).map(lossy).collect(),
            env: self.environ.as_deref().map(filter_env).unwrap_or_default(),
            exe: None,
            cwd: None,
            uid,
            gid,
            groups: parse_groups(&String::from_utf8_lossy(&self.status)),
            start_time: stat.start_time,
        })
    }
}

/// Where procfs is mounted (tests may point elsewhere; production uses `/proc`).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs {
            root: PathBuf::from("/proc"),
        }
    }
}

fn split_nul(bytes: &[u8], max_items: usize) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .take(max_items)
}

fn lossy(bytes: &[u8]) -> String {
    let cut = bytes.get(..MAX_VALUE_LEN).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}

/// `stat` is parsed by the protocol crate: the service checks the same identity with it.
fn parse_stat(text: &str) -> Option<identity::Stat> {
    identity::parse_stat(text)
}

/// Supplementary groups from `/proc/<pid>/status` (bounded; an absent line is no groups).
fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_ascii_whitespace()
                .filter_map(|g| g.parse().ok())
                .take(MAX_GROUPS)
                .collect()
        })
        .unwrap_or_default()
}

/// Most supplementary groups kept (the kernel allows 65536; a workload has a handful).
const MAX_GROUPS: usize = 256;

/// Real uid and gid from `/proc/<pid>/status`.
fn parse_ids(status: &str) -> Option<(u32, u32)> {
    let field = |name: &str| -> Option<u32> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("Uid:")?, field("Gid:")?))
}

impl Procfs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Procfs { root: root.into() }
    }

    /// `/proc/<pid>` as a directory descriptor: every file read through it belongs to the
    /// process that had this PID when it was opened (reads fail once it is gone).
    /// The sandbox opens it first and then checks it against its pidfd.
    pub fn open_dir(&self, pid: u32) -> Result<OwnedFd, ProcessError> {
        rustix::fs::open(
            self.root.join(pid.to_string()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::NOENT {
                ProcessError::Gone(pid)
            } else {
                ProcessError::Io {
                    pid,
                    file: "",
                    cause: e.into(),
                }
            }
        })
    }

    fn read_at(
        dir: &OwnedFd,
        pid: u32,
        file: &'static str,
        max: u64,
    ) -> Result<Vec<u8>, ProcessError> {
        let read = || -> io::Result<Vec<u8>> {
            let fd =
                rustix::fs::openat(dir, file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            let mut buf = Vec::new();
            File::from(fd).take(max).read_to_end(&mut buf)?;
            Ok(buf)
        };
        read().map_err(|cause| {
            // ESRCH: the directory outlived its process.
            let gone = cause.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error())
                || cause.kind() == io::ErrorKind::NotFound;
            if gone {
                ProcessError::Gone(pid)
            } else {
                ProcessError::Io { pid, file, cause }
            }
        })
    }

    /// Start time of a process, cheap (one small read): used to tell whether a PID was reused.
    pub fn start_time(&self, pid: u32) -> Result<u64, ProcessError> {
        let dir = self.open_dir(pid)?;
        Self::start_time_at(&dir, pid)
    }

    /// [`Procfs::start_time`] through an open `/proc/<pid>` directory.
    pub fn start_time_at(dir: &OwnedFd, pid: u32) -> Result<u64, ProcessError> {
        let stat = Self::read_at(dir, pid, "stat", MAX_SMALL_FILE)?;
        parse_stat(&String::from_utf8_lossy(&stat))
            .map(|s| s.start_time)
            .ok_or(ProcessError::Malformed { pid, file: "stat" })
    }

    /// Discovery's hold on a process: a pidfd first, then its start time. If the process
    /// exits after `pidfd_open`, the start time read may be a newcomer's, but the pidfd then
    /// reports the exit and the sandbox refuses to enter ([`crate::sandbox`]).
    pub fn pin(&self, pid: u32) -> Result<Pinned, ProcessError> {
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or(ProcessError::Gone(pid))?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
            .map_err(|e| {
                if e == rustix::io::Errno::SRCH {
                    ProcessError::Gone(pid)
                } else {
                    ProcessError::Io {
                        pid,
                        file: "(pidfd_open)",
                        cause: e.into(),
                    }
                }
            })?;
        let start_time = self.start_time(pid)?;
        Ok(Pinned {
            pid,
            start_time,
            pidfd,
        })
    }

    /// Read everything the fingerprints need about `pid`. Runs in the sandbox helper.
    pub fn facts(&self, pid: u32) -> Result<ProcessFacts, ProcessError> {
        let dir = self.open_dir(pid)?;
        Self::facts_at(&dir, pid)
    }

    /// [`Procfs::facts`] through an open `/proc/<pid>` directory.
    pub fn facts_at(dir: &OwnedFd, pid: u32) -> Result<ProcessFacts, ProcessError> {
        let files = ProcFiles {
            stat: Self::read_at(dir, pid, "stat", MAX_SMALL_FILE)?,
            status: Self::read_at(dir, pid, "status", MAX_SMALL_FILE)?,
            comm: Self::read_at(dir, pid, "comm", 64)?,
            cmdline: Self::read_at(dir, pid, "cmdline", MAX_CMDLINE)?,
            // environ needs ptrace-read access; without it we simply know less.
            environ: Self::read_at(dir, pid, "environ", MAX_ENVIRON).ok(),
        };
        let facts = files.parse(pid)?;
        let link = |name: &str| {
            rustix::fs::readlinkat(dir, name, Vec::new())
                .ok()
                .map(|p| lossy(p.as_bytes()))
                // A deleted executable reads as "/path (deleted)": the path is still a hint.
                .map(|s| s.trim_end_matches(" (deleted)").to_owned())
        };
        Ok(ProcessFacts {
            exe: link("exe"),
            cwd: link("cwd"),
            ..facts
        })
    }

    /// Children of every thread of the process whose `/proc` directory is `dir` (the
    /// reference reads only the main thread's).
    fn children_at(dir: &OwnedFd) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = rustix::fs::openat(
            dir,
            "task",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return out;
        };
        let Ok(tasks_fd) = tasks.try_clone() else {
            return out;
        };
        let Ok(mut entries) = rustix::fs::Dir::new(tasks_fd) else {
            return out;
        };
        let mut seen = 0usize;
        while let Some(Ok(entry)) = entries.next() {
            seen = seen.saturating_add(1);
            if seen > MAX_PROCESSES_PER_CONTAINER * 4 {
                break;
            }
            let Some(tid) = entry
                .file_name()
                .to_str()
                .ok()
                .filter(|t| t.parse::<u32>().is_ok())
            else {
                continue;
            };
            let path = format!("{tid}/children");
            let Ok(fd) = rustix::fs::openat(
                &tasks,
                path.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let mut bytes = Vec::new();
            if File::from(fd)
                .take(MAX_SMALL_FILE)
                .read_to_end(&mut bytes)
                .is_ok()
            {
                out.extend(
                    String::from_utf8_lossy(&bytes)
                        .split_ascii_whitespace()
                        .filter_map(|s| s.parse::<u32>().ok()),
                );
            }
        }
        out
    }

    /// The process tree under `root_pid` (root included, read through `root_dir`), breadth
    /// first, at most `limit` processes. A process that vanishes while we walk, or whose PID
    /// now names a process with another parent, is left out. Runs in the sandbox helper.
    pub fn tree_at(&self, root_dir: &OwnedFd, root_pid: u32, limit: usize) -> Vec<ProcessFacts> {
        let mut out = Vec::new();
        let root = match Self::facts_at(root_dir, root_pid) {
            Ok(facts) => facts,
            Err(e) => {
                tracing::debug!(pid = root_pid, error = %e, "root process unreadable");
                return out;
            }
        };
        let mut seen = HashSet::from([root_pid]);
        let mut queue: VecDeque<(u32, u32)> = Self::children_at(root_dir)
            .into_iter()
            .map(|c| (c, root_pid))
            .collect();
        out.push(root);
        while let Some((pid, parent)) = queue.pop_front() {
            if out.len() >= limit {
                break;
            }
            if !seen.insert(pid) {
                continue;
            }
            let Ok(dir) = self.open_dir(pid) else {
                continue;
            };
            match Self::facts_at(&dir, pid) {
                Ok(facts) if facts.ppid == parent => out.push(facts),
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(pid, error = %e, "skipping process");
                    continue;
                }
            }
            queue.extend(Self::children_at(&dir).into_iter().map(|c| (c, pid)));
        }
        out
    }

    /// [`Procfs::tree_at`] from a PID (tests and tools; the sandbox uses its verified dir).
    pub fn tree(&self, root_pid: u32, limit: usize) -> Vec<ProcessFacts> {
        match self.open_dir(root_pid) {
            Ok(dir) => self.tree_at(&dir, root_pid, limit),
            Err(_) => Vec::new(),
        }
    }

    /// The `stat` line of a process, parsed, and its `comm` (field 2). Kernel-written, read
    /// without touching the process's memory: safe in the privileged scanner.
    pub fn stat(&self, pid: u32) -> Result<(identity::Stat, String), ProcessError> {
        let dir = self.open_dir(pid)?;
        let bytes = Self::read_at(&dir, pid, "stat", MAX_SMALL_FILE)?;
        let text = String::from_utf8_lossy(&bytes);
        let stat = parse_stat(&text).ok_or(ProcessError::Malformed { pid, file: "stat" })?;
        let comm = text
            .find('(')
            .zip(text.rfind(')'))
            .and_then(|(a, b)| text.get(a.saturating_add(1)..b))
            .unwrap_or_default()
            .to_owned();
        Ok((stat, comm))
    }

    /// Every PID currently in procfs.
    pub fn all_pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }
}

/// Keep only allow-listed variables; later duplicates win, as in a shell.
fn filter_env(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for entry in split_nul(bytes, 4096) {
        let Some(eq) = entry.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (key, value) = entry.split_at(eq);
        let value = value.get(1..).unwrap_or_default();
        if let Some(name) = ENV_ALLOWLIST.iter().find(|n| n.as_bytes() == key) {
            env.insert((*name).to_owned(), lossy(value));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let text = "42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.ppid, 7);
        assert_eq!(s.start_time, 123456);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S").is_none());
    }

    #[test]
    fn env_is_allowlisted() {
        let env =
            filter_env(b"SECRET=s3cr3t\0JAVA_HOME=/opt/jdk\0PATH=/bin\0PATH=/usr/bin\0junk\0=x\0");
        assert_eq!(env.len(), 2);
        assert_eq!(env["JAVA_HOME"], "/opt/jdk");
        assert_eq!(env["PATH"], "/usr/bin");
    }

    #[test]
    fn reads_this_process() {
        let procfs = Procfs::default();
        let me = std::process::id();
        let facts = procfs.facts(me).unwrap();
        assert_eq!(facts.pid, me);
        assert!(!facts.argv.is_empty());
        assert!(facts.exe.is_some());
        assert!(facts.start_time > 0);
        assert_eq!(procfs.start_time(me).unwrap(), facts.start_time);
        assert!(!facts
            .env
            .keys()
            .any(|k| !ENV_ALLOWLIST.contains(&k.as_str())));
    }

    #[test]
    fn tree_includes_children_and_is_bounded() {
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let procfs = Procfs::default();
        let tree = procfs.tree(std::process::id(), MAX_PROCESSES_PER_CONTAINER);
        for c in &children {
            assert!(
                tree.iter().any(|p| p.pid == c.id()),
                "child {} missing",
                c.id()
            );
        }
        assert_eq!(procfs.tree(std::process::id(), 2).len(), 2);
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(matches!(
            procfs.facts(u32::MAX - 1),
            Err(ProcessError::Gone(_))
        ));
    }
}

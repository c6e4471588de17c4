//! Reading processes from the host's `/proc`, bounded, never trusting what we read.
//!
//! Everything the sandbox needs to know about a process is read here, in the scanner, from the
//! host's procfs (inside the container's mount namespace `/proc` may show another PID namespace
//! or not be mounted at all). Paths (`exe`, `cwd`) are the kernel's view from the process's own
//! root, i.e. container paths, which is what the sandbox resolves after joining the namespace.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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
    /// Real uid and gid.
    pub uid: u32,
    pub gid: u32,
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

fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut buf)?;
    Ok(buf)
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

    fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    fn read(&self, pid: u32, file: &'static str, max: u64) -> Result<Vec<u8>, ProcessError> {
        read_capped(&self.path(pid, file), max).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ProcessError::Gone(pid)
            } else {
                ProcessError::Io {
                    pid,
                    file,
                    cause: source,
                }
            }
        })
    }

    /// Start time of a process, cheap (one small read): used to tell whether a PID was reused.
    pub fn start_time(&self, pid: u32) -> Result<u64, ProcessError> {
        let stat = self.read(pid, "stat", MAX_SMALL_FILE)?;
        parse_stat(&String::from_utf8_lossy(&stat))
            .map(|s| s.start_time)
            .ok_or(ProcessError::Malformed { pid, file: "stat" })
    }

    /// Read everything the fingerprints need about `pid`.
    pub fn facts(&self, pid: u32) -> Result<ProcessFacts, ProcessError> {
        let files = ProcFiles {
            stat: self.read(pid, "stat", MAX_SMALL_FILE)?,
            status: self.read(pid, "status", MAX_SMALL_FILE)?,
            comm: self.read(pid, "comm", 64)?,
            cmdline: self.read(pid, "cmdline", MAX_CMDLINE)?,
            // environ needs ptrace-read access; without it we simply know less.
            environ: self.read(pid, "environ", MAX_ENVIRON).ok(),
        };
        let facts = files.parse(pid)?;
        let link = |name: &str| {
            std::fs::read_link(self.path(pid, name))
                .ok()
                .map(|p| lossy(p.as_os_str().as_encoded_bytes()))
                // A deleted executable reads as "/path (deleted)": the path is still a hint.
                .map(|s| s.trim_end_matches(" (deleted)").to_owned())
        };
        Ok(ProcessFacts {
            exe: link("exe"),
            cwd: link("cwd"),
            ..facts
        })
    }

    /// Children of every thread of `pid` (the reference reads only the main thread's).
    pub fn children(&self, pid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(self.path(pid, "task")) else {
            return out;
        };
        for task in tasks.flatten().take(MAX_PROCESSES_PER_CONTAINER * 4) {
            let children = task.path().join("children");
            if let Ok(bytes) = read_capped(&children, MAX_SMALL_FILE) {
                out.extend(
                    String::from_utf8_lossy(&bytes)
                        .split_ascii_whitespace()
                        .filter_map(|s| s.parse::<u32>().ok()),
                );
            }
        }
        out
    }

    /// The process tree under `root_pid` (root included), breadth first, at most `limit`
    /// processes. Processes that vanish while we walk are simply left out.
    pub fn tree(&self, root_pid: u32, limit: usize) -> Vec<ProcessFacts> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([root_pid]);
        let mut out = Vec::new();
        while let Some(pid) = queue.pop_front() {
            if out.len() >= limit {
                break;
            }
            if !seen.insert(pid) {
                continue;
            }
            match self.facts(pid) {
                Ok(facts) => out.push(facts),
                Err(e) => {
                    tracing::debug!(pid, error = %e, "skipping process");
                    continue;
                }
            }
            queue.extend(self.children(pid));
        }
        out
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

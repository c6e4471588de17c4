//! Which process of a container is the workload.
//!
//! The reference fingerprints only the first leaf of the process tree, which misreads
//! supervisord, shells with several children and worker pools. We look at every process of the
//! container and rank them (documented in docs/fingerprints.md):
//! 1. shells and init wrappers (`sh`, `bash`, `tini`, `dumb-init`, `catatonit`, `s6-*`,
//!    `supervisord`, `pause`, ...) never win;
//! 2. a process that a detector of the registry recognises by name
//!    ([`fingerprint::DETECTORS`]: JVM, Node.js, Python) beats an unknown process (an unknown
//!    one may still be a Go or GraalVM native binary: the fingerprints decide from the file);
//! 3. ties go to the oldest process (start time, then PID), e.g. a master before its workers.

use crate::fingerprint::{self, paths::file_name};
use crate::process::ProcessFacts;

/// How a process ranks as a workload candidate (higher wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Shells, init systems, supervisors, pause: never chosen.
    Wrapper,
    /// Not recognised by name: may be a native binary (Go, GraalVM, nginx, ...).
    Unknown,
    /// A language runtime recognised by name (java, node, python).
    Runtime,
}

/// Exact names of wrappers (comm, argv[0] or exe basename).
const WRAPPERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "ash",
    "zsh",
    "ksh",
    "mksh",
    "fish",
    "busybox",
    "tini",
    "tini-static",
    "dumb-init",
    "catatonit",
    "supervisord",
    "runsv",
    "runsvdir",
    "pause",
    "conmon",
    "gosu",
    "su-exec",
    "setpriv",
    "tail",
    "sleep",
    "env",
    "timeout",
    "nohup",
    "runuser",
    "su",
    "sudo",
];

/// Shells: a script's comm is the script's name, but its exe is the shell.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"];

fn is_wrapper_name(name: &str) -> bool {
    WRAPPERS.contains(&name) || name.starts_with("s6-")
}

/// Classify one process from its names only (cheap; no file is read).
pub fn classify(p: &ProcessFacts) -> Class {
    let comm = p.comm.as_str();
    let argv0 = p.argv.first().map(|a| file_name(a)).unwrap_or("");
    let exe = p.exe.as_deref().map(file_name).unwrap_or("");
    // A supervisor written in Python is still a supervisor: names of the program win.
    if is_wrapper_name(comm) || is_wrapper_name(argv0) || SHELLS.contains(&exe) {
        return Class::Wrapper;
    }
    // The detectors' own rules (fingerprint::DETECTORS): ranking and detection agree.
    if fingerprint::recognised_by_name(p) {
        return Class::Runtime;
    }
    if p.argv.is_empty() && p.exe.is_none() {
        // Zombie or kernel thread: nothing to read.
        return Class::Wrapper;
    }
    Class::Unknown
}

/// The processes worth fingerprinting, best first; wrappers are left out.
pub fn rank(processes: &[ProcessFacts]) -> Vec<ProcessFacts> {
    let mut ranked: Vec<(Class, &ProcessFacts)> = processes
        .iter()
        .map(|p| (classify(p), p))
        .filter(|(class, _)| *class != Class::Wrapper)
        .collect();
    ranked.sort_by(|(ca, a), (cb, b)| {
        cb.cmp(ca)
            .then(a.start_time.cmp(&b.start_time))
            .then(a.pid.cmp(&b.pid))
    });
    ranked.into_iter().map(|(_, p)| p.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, comm: &str, argv: &[&str], exe: &str, start: u64) -> ProcessFacts {
        ProcessFacts {
            pid,
            comm: comm.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            exe: (!exe.is_empty()).then(|| exe.to_string()),
            start_time: start,
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(
            classify(&p(
                1,
                "java",
                &["java", "-jar", "a.jar"],
                "/usr/lib/jvm/x/bin/java",
                1
            )),
            Class::Runtime
        );
        assert_eq!(
            classify(&p(
                1,
                "MainThread",
                &["node", "app.js"],
                "/usr/local/bin/node",
                1
            )),
            Class::Runtime
        );
        assert_eq!(
            classify(&p(
                1,
                "MainThread",
                &["/opt/node24/bin/node24", "app.js"],
                "/opt/node24/bin/node24",
                1
            )),
            Class::Runtime,
            "a versioned node executable with Node 24's thread name is still Node"
        );
        assert_eq!(
            classify(&p(1, "MainThread", &["/app/server"], "/app/server", 1)),
            Class::Unknown,
            "MainThread alone is not Node"
        );
        assert_eq!(
            classify(&p(
                1,
                "gunicorn",
                &["/usr/bin/python3.11", "/usr/bin/gunicorn"],
                "/usr/bin/python3.11",
                1
            )),
            Class::Runtime
        );
        assert_eq!(
            classify(&p(
                1,
                "supervisord",
                &["/usr/bin/python3", "/usr/bin/supervisord"],
                "/usr/bin/python3.11",
                1
            )),
            Class::Wrapper
        );
        assert_eq!(
            classify(&p(
                1,
                "run-java.sh",
                &["/bin/bash", "/opt/run-java.sh"],
                "/usr/bin/bash",
                1
            )),
            Class::Wrapper
        );
        assert_eq!(
            classify(&p(1, "tini", &["/tini", "--", "x"], "/tini", 1)),
            Class::Wrapper
        );
        assert_eq!(
            classify(&p(1, "s6-svscan", &["s6-svscan"], "/bin/s6-svscan", 1)),
            Class::Wrapper
        );
        assert_eq!(
            classify(&p(1, "pause", &["/pause"], "/pause", 1)),
            Class::Wrapper
        );
        assert_eq!(
            classify(&p(1, "myapp", &["/app/myapp"], "/app/myapp", 1)),
            Class::Unknown
        );
        assert_eq!(classify(&p(1, "x", &[], "", 1)), Class::Wrapper);
        // Selection and the detectors agree: each name a detector recognises ranks as a
        // runtime, each it does not is unknown.
        for (comm, exe, class) in [
            ("python3.13t", "/usr/bin/python3.13t", Class::Runtime),
            ("python3.11", "/usr/bin/python3.11", Class::Runtime),
            ("python3-config", "/usr/bin/python3-config", Class::Unknown),
            ("pythonista", "/usr/bin/pythonista", Class::Unknown),
            ("java", "/opt/jdk/bin/java", Class::Runtime),
            // A JVM launched through a renamed launcher: comm ends with `java`.
            ("myjava", "/opt/app/launcher", Class::Runtime),
            ("node", "/usr/bin/node", Class::Runtime),
        ] {
            let process = p(1, comm, &[exe], exe, 1);
            assert_eq!(classify(&process), class, "{comm}");
            let detected = fingerprint::DETECTORS
                .iter()
                .any(|d| d.recognises_by_name(&process));
            assert_eq!(detected, class == Class::Runtime, "{comm}");
        }
    }

    #[test]
    fn runtime_beats_unknown_wrappers_never_win_ties_go_to_oldest() {
        let procs = vec![
            p(1, "tini", &["/tini"], "/tini", 1),
            p(7, "bash", &["bash"], "/bin/bash", 2),
            p(9, "nginx", &["nginx"], "/usr/sbin/nginx", 3),
            p(
                12,
                "python3",
                &["python3", "w.py"],
                "/usr/bin/python3.11",
                6,
            ),
            p(
                11,
                "python3",
                &["python3", "m.py"],
                "/usr/bin/python3.11",
                5,
            ),
            p(
                10,
                "python3",
                &["python3", "x.py"],
                "/usr/bin/python3.11",
                5,
            ),
        ];
        let ranked: Vec<u32> = rank(&procs).iter().map(|p| p.pid).collect();
        assert_eq!(ranked, vec![10, 11, 12, 9]);
        let only_wrappers = vec![
            p(1, "sh", &["sh"], "/bin/sh", 1),
            p(2, "sleep", &["sleep", "1"], "/bin/sleep", 2),
        ];
        assert!(rank(&only_wrappers).is_empty());
    }
}

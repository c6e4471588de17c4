//! Containers that try to turn the scanner against the node, each a real container on the test
//! containerd, scanned by the scanner as the DaemonSet runs it (`common::scan_node`):
//! - a process with CAP_SYS_PTRACE watching its own `/proc` during three scans, attacking
//!   anything new with PTRACE_SEIZE and process_vm_readv: it never sees a scanner process;
//! - `/etc/os-release`, a JDK `release` file and a jar replaced by FIFOs, each with a writer
//!   blocked in `open(O_WRONLY)`: after the scans every writer is still blocked;
//! - the same three paths as character device nodes (`/dev/ptmx`'s numbers): strace of a
//!   scan shows each was only ever opened `O_PATH`, never for reading.
//!
//! Each container is still answered (OS or kind from what is left), and so are the others.
//! Needs root, containerd, gcc and strace; fails without them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec, RunningPod};
use testkit::rootfs::{require, which};
use testkit::workloads;

const WATCHER: &str = include_str!("hostile/watcher.c");
const PAUSE: &str = include_str!("hostile/pause.c");
/// The paths a Java container's fingerprint reads, each replaced by something hostile.
const TRAPS: [(&str, &str); 3] = [
    ("/etc/os-release", "os"),
    ("/opt/jdk/release", "release"),
    ("/app/app.jar", "jar"),
];

/// A busybox container whose script puts a trap at each of [`TRAPS`] (`make` gives the
/// command, `mkfifo` or `mknod`), starts a writer on each FIFO, then becomes
/// `java -jar /app/app.jar`.
fn trapped_java(pause: &Path, make: fn(&str) -> String, writers: bool) -> ContainerSpec {
    let mut script = String::from("set -e\nmkdir -p /opt/jdk /app /tmp\nrm -f /etc/os-release\n");
    for (path, tag) in TRAPS {
        script.push_str(&make(path));
        script.push('\n');
        if writers {
            // Blocked in open(O_WRONLY) until someone opens the FIFO for reading.
            script.push_str(&format!(
                "(echo ID=evil > {path}; touch /tmp/woken-{tag}) &\n"
            ));
        }
    }
    script.push_str("exec /opt/jdk/bin/java -jar /app/app.jar\n");
    ContainerSpec::new("java", &["/bin/sh", "-c", &script]).mount(pause, "/opt/jdk/bin/java", true)
}

fn descendants_named(pid: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        if name.trim_end() == comm {
            out.push(p);
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            queue.extend(
                children
                    .split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn key(sb: &CriSandbox, pod: &RunningPod) -> String {
    sb.kube_id(&pod.containers[0].id)
}

#[test]
fn hostile_containers_cannot_attach_wake_or_open_anything() {
    let sb = CriSandbox::start_for("container_attacks");
    require("C workloads", workloads::gcc_unavailable());
    require(
        "strace",
        which("strace")
            .is_none()
            .then(|| "strace not installed".into()),
    );
    let build = tempfile::Builder::new()
        .prefix("ri-attacks-")
        .tempdir_in("/tmp")
        .unwrap();
    let watcher = workloads::gcc_static(build.path(), "watcher", WATCHER).unwrap();
    let pause = workloads::gcc_static(build.path(), "pause", PAUSE).unwrap();

    let watching = sb
        .run_pod(
            &PodSpec::new("attacks", "ptrace-watcher").container(
                ContainerSpec::new("watcher", &["/watcher"])
                    .mount(&watcher, "/watcher", true)
                    .capabilities(&[], &["SYS_PTRACE"]),
            ),
        )
        .unwrap();
    let fifos = sb
        .run_pod(&PodSpec::new("attacks", "fifos").container(trapped_java(
            &pause,
            |p| format!("mkfifo {p}"),
            true,
        )))
        .unwrap();
    // /dev/ptmx's numbers: an open would allocate a pseudo-terminal.
    let devices = sb
        .run_pod(&PodSpec::new("attacks", "devices").container(trapped_java(
            &pause,
            |p| format!("mknod {p} c 5 2"),
            false,
        )))
        .unwrap();
    let bystander = sb
        .run_pod(
            &PodSpec::new("attacks", "bystander")
                .container(ContainerSpec::new("sleep", &["sleep", "3600"])),
        )
        .unwrap();
    for pod in [&fifos, &devices] {
        common::wait_for_descendant(pod.containers[0].pid, "java");
    }
    let fifo_java = common::wait_for_descendant(fifos.containers[0].pid, "java");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sb.container_log(&watching, "watcher").contains("watching") {
        assert!(Instant::now() < deadline, "the watcher did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let writers_before = descendants_named(fifo_java, "sh").len();
    assert_eq!(writers_before, 3, "three writers blocked on the FIFOs");

    // Three scans of the whole node by the DaemonSet's scanner.
    for round in 0..3 {
        let node = common::scan_node(&sb);
        let answer = |pod: &RunningPod| {
            node.get("attacks")
                .and_then(|p| p.get(&pod.name))
                .and_then(|c| c.get(&key(&sb, pod)))
                .cloned()
        };
        for pod in [&watching, &fifos, &devices, &bystander] {
            assert!(
                answer(pod).is_some(),
                "round {round}: {} unanswered: {node:?}",
                pod.name
            );
        }
        for pod in [&fifos, &devices] {
            let info = answer(pod).unwrap();
            assert_eq!(info.kind, "Java", "{}: {info:?}", pod.name);
            assert_eq!(
                info.kind_version, "",
                "{}: a version from a trap: {info:?}",
                pod.name
            );
            assert_ne!(info.os, "evil", "{}: {info:?}", pod.name);
        }
    }

    // The watcher saw nothing new: no helper ever appeared in its PID namespace.
    let log = sb.container_log(&watching, "watcher");
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" SEEN ") || l.contains(" SEIZE "))
        .collect();
    assert!(
        seen.is_empty(),
        "the container saw scanner processes:\n{}",
        seen.join("\n")
    );
    // Every writer is still blocked: no FIFO was opened for reading.
    for (_, tag) in TRAPS {
        let woken = format!("/proc/{fifo_java}/root/tmp/woken-{tag}");
        assert!(
            !Path::new(&woken).exists(),
            "the {tag} FIFO's writer was woken"
        );
    }
    assert_eq!(
        descendants_named(fifo_java, "sh").len(),
        3,
        "a writer returned"
    );

    // The device nodes (and the FIFOs) were only ever looked at through O_PATH.
    let trace = build.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .arg(common::bin())
        .args(["scan", "--cri-socket"])
        .arg(sb.socket_path())
        .args([
            "--container-id",
            &key(&sb, &devices),
            "--container-id",
            &key(&sb, &fifos),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&trace).unwrap();
    let mut looked = 0;
    for line in trace.lines() {
        if TRAPS
            .iter()
            .any(|(path, _)| line.contains(&format!("\"{path}\"")))
        {
            looked += 1;
            assert!(
                line.contains("O_PATH"),
                "a trap was opened for reading: {line}"
            );
        }
    }
    assert!(
        looked >= 4,
        "the fingerprints did not look at the traps:\n{trace}"
    );
    assert_eq!(
        descendants_named(fifo_java, "sh").len(),
        3,
        "a writer returned"
    );

    // Controls: the traps work. A process that does enter the watcher's PID namespace is
    // seen, and a reader of a FIFO wakes its writer.
    let status = Command::new("nsenter")
        .args([
            "--target",
            &watching.containers[0].pid.to_string(),
            "--pid",
            "--",
            "sleep",
            "0.5",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sb.container_log(&watching, "watcher").contains(" SEEN ") {
        assert!(
            Instant::now() < deadline,
            "the watcher does not see newcomers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(format!("/proc/{fifo_java}/root/etc/os-release"))
            .unwrap();
        let woken = format!("/proc/{fifo_java}/root/tmp/woken-os");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&woken).exists() {
            assert!(
                Instant::now() < deadline,
                "opening the FIFO did not wake its writer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

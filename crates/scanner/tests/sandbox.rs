//! The sandbox on real processes in real namespaces (no container runtime): a root filesystem
//! built by the test, entered with unshare + pivot_root, running real interpreters.
//! Needs root; skips loudly elsewhere and fails under CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runtime_info::ContainerRuntimeInfo;
use scanner::process::{Pinned, Procfs};
use scanner::sandbox::{self, JobMode, SandboxConfig, SandboxError};
use scanner::scan::{self, ScanOptions};
use testkit::rootfs::{require, require_root, which, ContainOpts, Contained, TestRoot};

fn helper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runtime-extractor"))
}

fn opts() -> ScanOptions {
    ScanOptions {
        sandbox: SandboxConfig {
            helper: helper(),
            timeout: Duration::from_secs(10),
            ..SandboxConfig::default()
        },
        ..ScanOptions::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn analyse(pid: u32) -> ContainerRuntimeInfo {
    rt().block_on(scan::analyse_pid(&opts(), pid)).unwrap().1
}

fn start(root: &TestRoot, argv: &[&str]) -> Contained {
    Contained::start(root, &ContainOpts::default(), argv).unwrap()
}

/// The scanner's hold on a process, as discovery takes it.
fn pin(pid: u32) -> Pinned {
    Procfs::default().pin(pid).unwrap()
}

fn run(o: &ScanOptions, target: &Pinned) -> Result<sandbox::SandboxReport, SandboxError> {
    rt().block_on(sandbox::run(&o.sandbox, target, JobMode::Container))
}

#[test]
fn reader_takes_the_workloads_credentials_and_nothing_else() {
    require_root("sandbox privileges");
    let root = TestRoot::new().unwrap();
    root.os_release("alpine", "3.20.2").unwrap();
    // Root workloads are read as uid 0 without any capability; others as themselves.
    for (uid, want) in [(None, 0), (Some(1000), 1000)] {
        let c = Contained::start(
            &root,
            &ContainOpts {
                uid,
                ..Default::default()
            },
            &["sleep", "300"],
        )
        .unwrap();
        let report = run(&opts(), &pin(c.pid)).unwrap();
        let p = &report.privileges;
        assert_eq!(p.uids, [want; 3], "real/effective/saved uid");
        assert_eq!(p.gids, [want; 3]);
        assert!(p.groups.is_empty());
        assert_eq!(
            (
                p.cap_effective,
                p.cap_permitted,
                p.cap_inheritable,
                p.cap_bounding,
                p.cap_ambient
            ),
            (0, 0, 0, 0, 0)
        );
        assert!(p.no_new_privs);
        assert!(!p.dumpable);
        assert!(p.seccomp);
        assert!(p.fully_dropped());
        // The reader really read the container's files (through its copy of the tree).
        assert_eq!(report.info.os, "alpine");
        assert_eq!(report.info.os_version, "3.20.2");
    }
}

#[test]
fn hostile_os_release_files_cannot_escape_or_stall() {
    require_root("hostile os-release");
    // A host file the container must never see.
    let host_dir = tempfile::tempdir().unwrap();
    let host_file = host_dir.path().join("os-release");
    std::fs::write(&host_file, "ID=hostescape\nVERSION_ID=1\n").unwrap();

    let symlinked = TestRoot::new().unwrap();
    symlinked
        .symlink("/etc/os-release", host_file.to_str().unwrap())
        .unwrap();
    symlinked
        .symlink("/usr-lib-os-release-ignored", "/proc/1/root/etc/passwd")
        .unwrap();

    let huge = TestRoot::new().unwrap();
    huge.sparse("/etc/os-release", 1 << 30).unwrap();

    let fifo = TestRoot::new().unwrap();
    fifo.mkfifo("/etc/os-release").unwrap();

    for (name, root) in [("symlink", &symlinked), ("1 GiB", &huge), ("fifo", &fifo)] {
        let c = start(root, &["sleep", "300"]);
        let started = Instant::now();
        let info = analyse(c.pid);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert_ne!(info.os, "hostescape", "{name}: read a host file");
        // The bad /etc/os-release is skipped and the /usr/lib fallback (the host's /usr,
        // bind-mounted into the test root) is used.
        assert_eq!(info.os, "debian", "{name}: {info:?}");
    }
}

#[test]
fn a_node_that_is_a_shell_script_is_never_executed() {
    require_root("no execution");
    let root = TestRoot::new().unwrap();
    root.os_release("debian", "12").unwrap();
    let marker = "/tmp/executed-marker";
    let script = format!("#!/bin/sh\ntouch {marker}\necho v99.0.0\n");
    root.write_mode("/usr/local/bin/node", &script, 0o755)
        .unwrap();
    root.write_mode("/usr/local/bin/python3", &script, 0o755)
        .unwrap();
    root.write_mode("/usr/local/bin/java", &script, 0o755)
        .unwrap();
    // A process whose name is `node` and whose argv[0] is the script, as the reference would
    // run `argv[0] --version`: its executable is a copy of sleep.
    let sleep = which("sleep").unwrap();
    root.copy_from_host(&sleep, "/app/node").unwrap();
    let c = Contained::start(
        &root,
        &ContainOpts {
            expect_argv: Some(vec!["/usr/local/bin/node".into(), "300".into()]),
            env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
            ..Default::default()
        },
        &["bash", "-c", "exec -a /usr/local/bin/node /app/node 300"],
    )
    .unwrap();
    let info = analyse(c.pid);
    assert_eq!(info.os, "debian");
    assert_ne!(
        info.kind_version, "v99.0.0",
        "a version came from running the script"
    );
    assert!(!root.host_path(marker).exists(), "the script was executed");
    assert!(
        !Path::new(marker).exists(),
        "the script was executed on the host"
    );
}

#[test]
fn real_node_and_python_in_a_namespace() {
    require_root("real interpreters");
    let root = TestRoot::new().unwrap();
    root.os_release("debian", "12").unwrap();

    let node = which("node").expect("node is installed on these machines");
    let want_node = String::from_utf8(
        Command::new(&node)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let node_path = std::fs::canonicalize(&node).unwrap();
    let c = start(
        &root,
        &[
            node_path.to_str().unwrap(),
            "-e",
            "setTimeout(()=>{}, 300000)",
        ],
    );
    let info = analyse(c.pid);
    assert_eq!(
        (info.kind.as_str(), info.kind_version.as_str()),
        ("Node.js", want_node.as_str())
    );
    assert_eq!(info.os, "debian");
    drop(c);

    let python = Path::new("/usr/bin/python3.11");
    require(
        "python in namespace",
        (!python.exists()).then(|| "no /usr/bin/python3.11".into()),
    );
    let out = Command::new(python).arg("--version").output().unwrap();
    let want_py = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let c = start(
        &root,
        &["/usr/bin/python3.11", "-c", "import time; time.sleep(300)"],
    );
    let info = analyse(c.pid);
    assert_eq!(
        (info.kind.as_str(), info.kind_version.as_str()),
        ("Python", want_py.as_str())
    );
}

#[test]
fn main_process_is_chosen_among_all_processes() {
    require_root("process selection");
    let root = TestRoot::new().unwrap();
    root.os_release("debian", "12").unwrap();
    // A shell wrapper with a sleep child first and python second: the reference would take
    // the first leaf (sleep); we take the runtime.
    let c = start(
        &root,
        &[
            "/bin/bash",
            "-c",
            "sleep 300 & /usr/bin/python3.11 -c 'import time; time.sleep(300)' & sleep 0 & wait",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let info = loop {
        let info = analyse(c.pid);
        if !info.kind.is_empty() || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(info.kind, "Python", "{info:?}");
}

#[test]
fn vanished_and_replaced_processes_fail_alone() {
    require_root("vanished process");
    let mut child = Command::new("sleep").arg("300").spawn().unwrap();
    let target = pin(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    let err = run(&opts(), &target).unwrap_err();
    assert!(matches!(err, SandboxError::Gone(_)), "{err}");

    let mut child = Command::new("sleep").arg("300").spawn().unwrap();
    let mut target = pin(child.id());
    target.start_time += 1; // as if the PID had been recycled
    let err = run(&opts(), &target).unwrap_err();
    assert!(matches!(err, SandboxError::Gone(_)), "{err}");
    child.kill().unwrap();
    let _ = child.wait();

    // Through the scan: an unknown PID is an error for that PID only.
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let (found, errors) = rt().block_on(scan::scan_pids(&opts(), &[sleeper.id(), u32::MAX - 7]));
    assert_eq!(found.len(), 1);
    assert_eq!(errors.len(), 1);
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

/// The PID of a target that exited is given to a new process before the sandbox enters:
/// the pidfd taken at discovery says the target exited, and the newcomer is never entered.
#[test]
fn a_reused_pid_is_reported_as_exited_never_entered() {
    require_root("PID reuse");
    let mut first = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = first.id();
    let target = pin(pid);
    first.kill().unwrap();
    first.wait().unwrap();
    // Take the same PID for a new process: ns_last_pid makes the next fork get pid.
    let mut newcomer = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let c = Command::new("sleep").arg("300").spawn().unwrap();
        if c.id() == pid {
            newcomer = Some(c);
            break;
        }
        let mut c = c;
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut newcomer = newcomer.expect("could not reuse the PID in 50 tries");
    // The newcomer even has the old start time in the job: only the pidfd can tell.
    let mut stale = Pinned {
        pid,
        start_time: Procfs::default().start_time(pid).unwrap(),
        pidfd: target.pidfd,
    };
    let err = run(&opts(), &stale).unwrap_err();
    assert!(matches!(err, SandboxError::Gone(p) if p == pid), "{err}");
    stale.start_time = target.start_time;
    let err = run(&opts(), &stale).unwrap_err();
    assert!(matches!(err, SandboxError::Gone(_)), "{err}");
    newcomer.kill().unwrap();
    let _ = newcomer.wait();
}

#[test]
fn deadline_kills_the_whole_sandbox() {
    require_root("sandbox deadline");
    let mut sleeper = Command::new("python3")
        .args(["-c", "import time; time.sleep(300)"])
        .spawn()
        .unwrap();
    let target = pin(sleeper.id());
    // A helper binary of our own (hard link), so the leftover check sees only this test's.
    let dir = tempfile::tempdir_in(helper().parent().unwrap()).unwrap();
    let own_helper = dir.path().join("deadline-helper");
    std::fs::hard_link(helper(), &own_helper).unwrap();
    let mut o = opts();
    o.sandbox.helper = own_helper.clone();
    // Far shorter than exec + reading a Python interpreter takes.
    o.sandbox.timeout = Duration::from_micros(200);
    let started = Instant::now();
    let err = run(&o, &target).unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(200));
    let leftovers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .as_deref()
                == Some(own_helper.as_path())
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "sandbox helpers left behind: {leftovers:?}"
    );
    assert_eq!(sandbox::stuck_helpers(), 0);
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
}

#[test]
fn zombie_and_empty_argv_processes_are_harmless() {
    require_root("zombies");
    let root = TestRoot::new().unwrap();
    root.os_release("debian", "12").unwrap();
    // `sleep 0` exits and stays a zombie (empty cmdline, no exe) under a parent that never reaps.
    let c = Contained::start(
        &root,
        &ContainOpts {
            expect_argv: Some(vec!["sleep".into(), "300".into()]),
            ..Default::default()
        },
        &["/bin/sh", "-c", "sleep 0 & exec sleep 300"],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let info = analyse(c.pid);
    assert_eq!(info.os, "debian");
}

#[test]
fn cli_scan_pid_prints_json_keyed_by_pid() {
    require_root("scan --pid");
    let mut py = Command::new("/usr/bin/python3.11")
        .args(["-c", "import time; time.sleep(300)"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new(helper())
        .args(["scan", "--pid", &py.id().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[py.id().to_string()]["kind"], "Python");
    let hashed = Command::new(helper())
        .args(["scan", "--hash", "--pid", &py.id().to_string()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&hashed.stdout).unwrap();
    assert_eq!(
        json[py.id().to_string()]["kind"],
        runtime_info::anonymize("Python")
    );
    let bad = Command::new(helper())
        .args(["scan", "--pid", "999999999"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("unknown PID"), "{msg}");
    py.kill().unwrap();
    let _ = py.wait();
}

#[test]
fn real_jvm_applications_and_go_binary() {
    use testkit::workloads;
    require_root("JVM and Go in a namespace");
    require("JVM workloads", workloads::jdk_unavailable());
    require("Go workloads", workloads::go_unavailable());
    let build = tempfile::tempdir().unwrap();
    let jdk = workloads::jdk_home().unwrap();
    let (java_version, implementor) = workloads::jdk_release(&jdk).unwrap();
    let java = jdk.join("bin/java");
    let java = java.to_str().unwrap();

    let root = TestRoot::new().unwrap();
    root.os_release("rhel", "8.10").unwrap();
    let sb = workloads::spring_boot_jar(build.path(), "3.1.4").unwrap();
    root.copy_from_host(&sb, "/app/app.jar").unwrap();
    let c = start(&root, &[java, "-jar", "/app/app.jar"]);
    let info = analyse(c.pid);
    assert_eq!(info.kind, "Java", "{info:?}");
    assert_eq!(info.kind_version, java_version);
    assert_eq!(info.kind_implementer, implementor);
    assert_eq!(info.runtimes.len(), 1, "{info:?}");
    assert_eq!(
        (
            info.runtimes[0].name.as_str(),
            info.runtimes[0].version.as_str()
        ),
        ("Spring Boot", "3.1.4")
    );
    drop(c);

    // Quarkus fast-jar, started with a relative jar from its working directory.
    let q = workloads::quarkus_fast_jar(build.path(), "3.15.3.redhat-00002").unwrap();
    let qroot = TestRoot::new().unwrap();
    qroot.os_release("rhel", "8.10").unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(&q)
        .arg(qroot.host_path("/deployments"))
        .status()
        .unwrap();
    assert!(status.success());
    let c = Contained::start(
        &qroot,
        &ContainOpts {
            cwd: Some("/deployments".into()),
            uid: Some(185),
            ..Default::default()
        },
        &[java, "-jar", "quarkus-run.jar"],
    )
    .unwrap();
    let info = analyse(c.pid);
    assert_eq!(info.kind, "Java", "{info:?}");
    assert_eq!(info.runtimes.len(), 1, "{info:?}");
    assert_eq!(
        (
            info.runtimes[0].name.as_str(),
            info.runtimes[0].version.as_str()
        ),
        ("Quarkus", "3.15.3.redhat-00002")
    );
    drop(c);

    let (go_bin, go_version) = workloads::go_sleeper(&build.path().join("go")).unwrap();
    let groot = TestRoot::new().unwrap();
    groot.os_release("debian", "12").unwrap();
    // Named `node` on purpose: binary evidence beats the name.
    groot.copy_from_host(&go_bin, "/app/node").unwrap();
    let c = start(&groot, &["/app/node"]);
    let info = analyse(c.pid);
    assert_eq!(
        (info.kind.as_str(), info.kind_version.as_str()),
        ("Golang", go_version.as_str()),
        "{info:?}"
    );
}

#[test]
fn cli_errors_are_one_clear_line() {
    require_root("CLI errors");
    let one_line = |args: &[&str], uid: Option<u32>, want: &str| {
        let mut cmd = match uid {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(helper());
                c
            }
            None => Command::new(helper()),
        };
        let out = cmd.args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    one_line(&["scan", "--host"], Some(65534), "must run as root");
    one_line(
        &["scanner", "--socket", "/tmp/x.sock"],
        Some(65534),
        "missing: CAP_",
    );
    one_line(
        &["scan", "--cri-socket", "/nonexistent/cri.sock"],
        None,
        "/nonexistent/cri.sock",
    );
    one_line(
        &["scan", "--container-id", "cri-o://abc"],
        None,
        "invalid container ID",
    );
    one_line(&["scan", "--pid", "4000000000"], None, "unknown PID");
}

//! The scanner run the way the DaemonSet runs it: a CRI container on the test containerd, not
//! privileged, every capability dropped and exactly `scanner::kernel::REQUIRED_CAPABILITIES`
//! added, read-only root filesystem, the runtime's default seccomp profile, host PID
//! namespace. (The matrices and the flow scan through it too: `common::scan_node`.)
//!
//! - its credentials, as the kernel shows them, are exactly that;
//! - workloads only their own user may read are read as that user: a uid-1001 JDK in a 0750
//!   directory found through `JAVA_HOME`, a uid-1001 interpreter in a 0700 directory, and a
//!   root JDK whose `release` is mode 0600;
//! - the list is minimal: with any one capability removed, the scan fails or loses answers.
//!
//! Needs root and containerd; fails without them.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use runtime_info::NodeRuntimeInfo;
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::rootfs::which;

/// A directory tree owned by `uid` with `mode` at its top.
fn private_dir(parent: &Path, name: &str, uid: u32, mode: u32) -> std::path::PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}")])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

fn copy(from: &Path, to: &Path, mode: u32) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

const RELEASE_1001: &str = "IMPLEMENTOR=\"Eclipse Adoptium\"\nJAVA_VERSION=\"21.0.5\"\n";
const RELEASE_ROOT: &str = "IMPLEMENTOR=\"Red Hat, Inc.\"\nJAVA_VERSION=\"17.0.13\"\n";

struct Workloads {
    _dir: tempfile::TempDir,
    python_version: String,
    keys: Vec<(String, String, String)>, // (label, pod, key)
}

/// The three permission cases, each in its own pod of namespace `perm`.
fn start_workloads(sb: &CriSandbox) -> Workloads {
    let dir = tempfile::Builder::new()
        .prefix("ri-perm-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sleep = std::fs::canonicalize(which("sleep").unwrap()).unwrap();
    let python = Path::new("/usr/bin/python3.11");
    assert!(
        python.exists(),
        "Debian's python3.11 is installed by the test scripts"
    );
    let out = Command::new(python).arg("--version").output().unwrap();
    let python_version = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    // (1) uid 1001, JDK in a 0750 directory of its own, found only through JAVA_HOME.
    let jdk = dir.path().join("jdk-1001");
    std::fs::create_dir_all(&jdk).unwrap();
    std::fs::write(jdk.join("release"), RELEASE_1001).unwrap();
    let jdk = private_dir(dir.path(), "jdk-1001", 1001, 0o750);
    let launcher = dir.path().join("launcher/java");
    copy(&sleep, &launcher, 0o755);
    // (2) uid 1001, interpreter in a 0700 directory of its own.
    let private = dir.path().join("py-1001");
    copy(python, &private.join("python3.11"), 0o755);
    let private = private_dir(dir.path(), "py-1001", 1001, 0o700);
    // (3) root, JDK release file mode 0600.
    let rootjdk = dir.path().join("jdk-root");
    copy(&sleep, &rootjdk.join("bin/java"), 0o755);
    std::fs::write(rootjdk.join("release"), RELEASE_ROOT).unwrap();
    std::fs::set_permissions(
        rootjdk.join("release"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let pods = [
        (
            "jdk-0750",
            ContainerSpec::new("app", &["/usr/local/bin/java", "3600"])
                .mount(&launcher, "/usr/local/bin/java", true)
                .mount(&jdk, "/opt/jdk", true)
                .env("JAVA_HOME", "/opt/jdk")
                .run_as_user(1001)
                .run_as_group(1001)
                .with_host_libraries(),
        ),
        (
            "python-0700",
            ContainerSpec::new(
                "app",
                &[
                    "/opt/private/python3.11",
                    "-c",
                    "import time; time.sleep(3600)",
                ],
            )
            .mount(&private, "/opt/private", true)
            .mount("/usr/lib/python3.11", "/usr/lib/python3.11", true)
            .run_as_user(1001)
            .run_as_group(1001)
            .with_host_libraries(),
        ),
        (
            "release-0600",
            ContainerSpec::new("app", &["/opt/jdk/bin/java", "3600"])
                .mount(&rootjdk, "/opt/jdk", true)
                .with_host_libraries(),
        ),
    ];
    let mut keys = Vec::new();
    for (label, spec) in pods {
        let pod = sb
            .run_pod(&PodSpec::new("perm", label).container(spec))
            .unwrap();
        common::wait_for_descendant(
            pod.containers[0].pid,
            if label == "python-0700" {
                "python3.11"
            } else {
                "java"
            },
        );
        keys.push((
            label.to_owned(),
            label.to_owned(),
            sb.kube_id(&pod.containers[0].id),
        ));
    }
    Workloads {
        _dir: dir,
        python_version,
        keys,
    }
}

fn answer<'a>(
    node: &'a NodeRuntimeInfo,
    w: &Workloads,
    label: &str,
) -> Option<&'a runtime_info::ContainerRuntimeInfo> {
    let (_, pod, key) = w.keys.iter().find(|(l, _, _)| l == label)?;
    node.get("perm")?.get(pod)?.get(key)
}

fn parse(stdout: &str) -> NodeRuntimeInfo {
    let mut node: NodeRuntimeInfo = serde_json::from_str(stdout).unwrap_or_default();
    node.remove(common::SCANNER_NAMESPACE);
    node
}

#[test]
fn scanner_container_reads_each_workload_as_its_user_with_a_minimal_capability_list() {
    let sb = CriSandbox::start_for("scanner_container");
    let w = start_workloads(&sb);
    let caps = common::scanner_capabilities();

    // With exactly the list: every workload answered with its version.
    let node = common::scan_node(&sb);
    let version = |label: &str| {
        answer(&node, &w, label).map(|i| {
            (
                i.kind.clone(),
                i.kind_version.clone(),
                i.kind_implementer.clone(),
            )
        })
    };
    assert_eq!(
        version("jdk-0750"),
        Some(("Java".into(), "21.0.5".into(), "Eclipse Adoptium".into())),
        "uid-1001 JDK in a 0750 directory: {node:?}"
    );
    assert_eq!(
        version("python-0700"),
        Some(("Python".into(), w.python_version.clone(), String::new())),
        "uid-1001 interpreter in a 0700 directory: {node:?}"
    );
    assert_eq!(
        version("release-0600"),
        Some(("Java".into(), "17.0.13".into(), "Red Hat, Inc.".into())),
        "root JDK with a 0600 release file: {node:?}"
    );

    // Minimal: without any one of them, the scan fails or an answer is lost.
    for removed in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != removed).cloned().collect();
        let out = common::scan_in_container(&sb, &["--unchecked-capabilities"], &fewer);
        let partial = parse(&out.stdout);
        let lost: Vec<&str> = w
            .keys
            .iter()
            .map(|(l, _, _)| l.as_str())
            .filter(|l| answer(&partial, &w, l) != answer(&node, &w, l))
            .collect();
        eprintln!(
            "without {removed}: exit {}, answers changed: {lost:?}; {}",
            out.exit_code,
            out.stderr.lines().last().unwrap_or_default()
        );
        assert!(
            out.exit_code != 0 || !lost.is_empty(),
            "the scan did not need {removed}: {}",
            out.stdout
        );
    }
}

/// The long-running `scanner` in its container holds exactly the listed capabilities in every
/// set the kernel shows, runs under the runtime's seccomp filter, and answers on its socket.
#[test]
fn scanner_daemon_container_holds_exactly_the_listed_capabilities() {
    let sb = CriSandbox::start_for("scanner_daemon_container");
    let dir = tempfile::Builder::new()
        .prefix("ri-scanner-sock-")
        .tempdir_in("/tmp")
        .unwrap();
    let socket_dir = dir.path().to_str().unwrap().to_owned();
    let socket = format!("{socket_dir}/scanner.sock");
    let cri = sb.socket_path().to_str().unwrap().to_owned();
    let spec = common::scanner_container(
        &sb,
        &["scanner", "--socket", &socket, "--cri-socket", &cri],
        &common::scanner_capabilities(),
    )
    .mount(dir.path(), &socket_dir, false);
    let pod = sb
        .run_pod(&common::scanner_pod("scanner-daemon", spec))
        .unwrap();
    let pid = pod.containers[0].pid;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "scanner did not listen: {}",
            sb.container_log(&pod, "scanner")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let want: u64 = scanner::kernel::REQUIRED_CAPABILITIES
        .iter()
        .fold(0, |acc, (c, _)| acc | (1u64 << c.index()));
    let want = format!("{want:016x}");
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(field(set), want, "{set} of the scanner container");
    }
    assert_eq!(field("CapAmb:"), "0000000000000000");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "the runtime's default seccomp filter"
    );
    assert_eq!(field("Uid:").split_whitespace().next(), Some("0"));

    // It serves: a real request over its socket, answered.
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    scanner_proto::write_frame(
        &mut stream,
        &scanner_proto::ScanRequest {
            list_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let reply: scanner_proto::ScanResponse =
        scanner_proto::read_frame(&mut stream, 16 << 20).unwrap();
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(
        reply
            .containers
            .iter()
            .any(|c| c.namespace == common::SCANNER_NAMESPACE),
        "{reply:?}"
    );
    sb.stop_pod(&pod.pod_id).unwrap();
}

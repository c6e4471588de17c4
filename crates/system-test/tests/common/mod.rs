//! Shared by the end-to-end suites on a real containerd: scanning the node with the real
//! binary, finding a container's answer, and exact expected answers checked case by case.
//! (Versions for expectations come from `testkit::workloads::deb_upstream_version`.)
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::Command;

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo, RuntimeComponent};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, JobOutcome, PodSpec, RunningPod};

/// The scanner binary (`runtime-extractor`), staged where any uid may execute it; or, when
/// `RUNTIME_INSIGHTS_SCANNER_BIN` names one, that binary (to run a suite against another
/// build, e.g. the one before a change).
pub fn bin() -> &'static Path {
    static OTHER: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    match OTHER.get_or_init(|| std::env::var_os("RUNTIME_INSIGHTS_SCANNER_BIN").map(Into::into)) {
        Some(path) => path,
        None => testkit::bins::binary(testkit::bins::SCANNER),
    }
}

/// The service binary (`runtime-extractor-serve`), staged where any uid may execute it.
pub fn serve_bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::SERVICE)
}

/// Namespace of the scanner's own pods on the test node (left out of scan answers).
pub const SCANNER_NAMESPACE: &str = "runtime-insights";
/// Where the scanner binary is mounted in its container.
pub const SCANNER_IN_CONTAINER: &str = "/usr/bin/runtime-extractor";

/// The capabilities the DaemonSet adds after dropping all (CRI names, without `CAP_`):
/// exactly the scanner's own list.
pub fn scanner_capabilities() -> Vec<String> {
    scanner::kernel::REQUIRED_CAPABILITIES
        .iter()
        .map(|(c, _)| c.to_string().trim_start_matches("CAP_").to_owned())
        .collect()
}

/// The scanner container as `deploy/base/daemonset.yaml` runs it: not privileged, every
/// capability dropped and `caps` added, no privilege escalation, read-only root filesystem,
/// the runtime's default seccomp profile, the CRI socket's directory mounted; the pod (see [`scanner_pod`]) in the
/// node's PID namespace. The binary is the tests' own, mounted read-only.
pub fn scanner_container(sb: &CriSandbox, args: &[&str], caps: &[String]) -> ContainerSpec {
    let cri_dir = sb.socket_path().parent().expect("socket in a directory");
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    ContainerSpec::new("scanner", &[SCANNER_IN_CONTAINER])
        .args(args)
        .mount(bin(), SCANNER_IN_CONTAINER, true)
        .mount(cri_dir, cri_dir.to_str().expect("UTF-8 path"), false)
        .capabilities(&["ALL"], &caps)
        .readonly_rootfs()
        .seccomp_runtime_default()
        .no_new_privs()
        .with_host_libraries()
}

/// A pod of the scanner's namespace with `hostPID`.
pub fn scanner_pod(name: &str, container: ContainerSpec) -> PodSpec {
    PodSpec::new(SCANNER_NAMESPACE, name)
        .host_pid()
        .container(container)
}

/// `runtime-extractor scan <args>` run as the DaemonSet's scanner container with `caps`.
pub fn scan_in_container(sb: &CriSandbox, args: &[&str], caps: &[String]) -> JobOutcome {
    let cri = sb.socket_path().to_str().expect("UTF-8 path").to_owned();
    let mut full = vec!["scan", "--cri-socket", cri.as_str()];
    full.extend_from_slice(args);
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sb.run_job(
        &scanner_pod(&format!("scan-{n}"), scanner_container(sb, &full, caps)),
        std::time::Duration::from_secs(120),
    )
    .expect("running the scanner container")
}

/// `runtime-extractor scan` of every container of the sandbox's node, unhashed, run as the
/// DaemonSet runs the scanner (a CRI container with exactly its capabilities). The scanner's
/// own pod is left out of the answer.
pub fn scan_node(sb: &CriSandbox) -> NodeRuntimeInfo {
    let out = scan_in_container(sb, &[], &scanner_capabilities());
    assert!(
        out.exit_code == 0,
        "scan in the scanner container failed ({}): {}",
        out.exit_code,
        out.stderr
    );
    let mut node: NodeRuntimeInfo =
        serde_json::from_str(&out.stdout).expect("scan printed NodeRuntimeInfo JSON");
    node.remove(SCANNER_NAMESPACE);
    node
}

/// `runtime-extractor scan` on the host, as root with every capability (the CLI as an
/// operator runs it).
pub fn scan_node_on_host(sb: &CriSandbox) -> NodeRuntimeInfo {
    let out = Command::new(bin())
        .arg("scan")
        .arg("--cri-socket")
        .arg(sb.socket_path())
        .output()
        .expect("running runtime-extractor scan");
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("scan printed NodeRuntimeInfo JSON")
}

/// An expected answer, written field by field in the tests.
pub fn expected(
    os: &str,
    os_version: &str,
    kind: &str,
    kind_version: &str,
    kind_implementer: &str,
    runtimes: &[(&str, &str)],
) -> ContainerRuntimeInfo {
    ContainerRuntimeInfo {
        os: os.into(),
        os_version: os_version.into(),
        kind: kind.into(),
        kind_version: kind_version.into(),
        kind_implementer: kind_implementer.into(),
        runtimes: runtimes
            .iter()
            .map(|(name, version)| RuntimeComponent {
                name: (*name).into(),
                version: (*version).into(),
            })
            .collect(),
    }
}

/// One container of a matrix and the exact answer it must get; `None`: the scan must leave
/// it out (e.g. an init container that has exited).
pub struct Case {
    pub label: String,
    pub namespace: String,
    pub pod: String,
    /// The answer's key, `<runtime>://<64 hex>`.
    pub key: String,
    pub expected: Option<ContainerRuntimeInfo>,
}

impl Case {
    /// `container` of `pod` must be answered exactly `expected`.
    pub fn new(
        label: &str,
        sb: &CriSandbox,
        pod: &RunningPod,
        container: &str,
        expected: ContainerRuntimeInfo,
    ) -> Case {
        let c = pod
            .container(container)
            .unwrap_or_else(|| panic!("pod {} has no container {container}", pod.name));
        Case::keyed(label, sb, pod, &c.id, Some(expected))
    }

    /// The container `id` of `pod` must not be in the scan at all.
    pub fn absent(label: &str, sb: &CriSandbox, pod: &RunningPod, id: &str) -> Case {
        Case::keyed(label, sb, pod, id, None)
    }

    fn keyed(
        label: &str,
        sb: &CriSandbox,
        pod: &RunningPod,
        id: &str,
        expected: Option<ContainerRuntimeInfo>,
    ) -> Case {
        Case {
            label: label.to_owned(),
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            key: format!("{}://{id}", sb.runtime_name()),
            expected,
        }
    }
}

/// Compare every case with the scan and panic once, listing each mismatch (expected vs
/// actual) and any container the scan reported that no case expects, so one run shows all.
/// Prints one line per case either way.
pub fn assert_cases(node: &NodeRuntimeInfo, cases: &[Case]) {
    let show = |info: Option<&ContainerRuntimeInfo>| match info {
        Some(i) => serde_json::to_string(i).unwrap_or_else(|e| e.to_string()),
        None => "(absent)".to_owned(),
    };
    let mut failures = Vec::new();
    for case in cases {
        let actual = node
            .get(&case.namespace)
            .and_then(|pods| pods.get(&case.pod))
            .and_then(|containers| containers.get(&case.key));
        let ok = actual == case.expected.as_ref();
        eprintln!(
            "{} {:<28} {}",
            if ok { "ok  " } else { "FAIL" },
            case.label,
            show(actual)
        );
        if !ok {
            failures.push(format!(
                "{} ({}/{} {}):\n    expected {}\n    actual   {}",
                case.label,
                case.namespace,
                case.pod,
                case.key,
                show(case.expected.as_ref()),
                show(actual)
            ));
        }
    }
    for (ns, pods) in node {
        for (pod, containers) in pods {
            for (key, info) in containers {
                let known = cases
                    .iter()
                    .any(|c| &c.namespace == ns && &c.pod == pod && &c.key == key);
                if !known {
                    failures.push(format!(
                        "unexpected container {ns}/{pod} {key}: {}",
                        show(Some(info))
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Write `files` (path relative to `dir` → content) under `dir`, creating directories; `dir`
/// is made world-readable, as image layers must be (a layer's root becomes the image's `/`).
pub fn write_files(dir: &std::path::Path, files: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (path, content) in files {
        let path = dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
    }
}

/// Wait until a process under `pid` (itself included, children of every thread, any depth)
/// has `comm`: a wrapper's child may still be a fork of the wrapper when we first look.
/// Returns that process's PID; panics after 30 s.
pub fn wait_for_descendant(pid: u32, comm: &str) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut queue = vec![pid];
        let mut seen = 0;
        while let Some(p) = queue.pop() {
            seen += 1;
            let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if name.trim_end() == comm {
                return p;
            }
            let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default();
            for task in tasks {
                let children = std::fs::read_to_string(task.join("children")).unwrap_or_default();
                queue.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no process `{comm}` under PID {pid} after 30 s ({seen} processes seen)"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait until the container's log has a line containing `needle` (its program got that far);
/// false once `deadline` passes.
pub fn wait_for_log(
    sb: &CriSandbox,
    pod: &RunningPod,
    container: &str,
    needle: &str,
    deadline: std::time::Instant,
) -> bool {
    loop {
        if sb.container_log(pod, container).contains(needle) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The `scanner` daemon running as the DaemonSet's scanner container (see
/// [`scanner_container`]), its socket in a host directory mounted at the same path.
pub struct ScannerPod {
    pub pod: RunningPod,
    /// Host PID of the scanner process.
    pub pid: u32,
    /// Its CRI log (`<time> <stream> <tag> <line>` records; see [`json_records`]).
    pub log: std::path::PathBuf,
}

impl ScannerPod {
    /// Start `scanner --socket <socket> --cri-socket <sb's> <extra>` and wait (20 s at most)
    /// until the socket accepts connections. The socket's directory is mounted read-write.
    pub fn start(sb: &CriSandbox, name: &str, socket: &Path, extra: &[&str]) -> ScannerPod {
        let dir = socket.parent().expect("socket in a directory");
        let socket_s = socket.to_str().expect("UTF-8 path");
        let cri = sb.socket_path().to_str().expect("UTF-8 path").to_owned();
        let mut args = vec![
            "scanner",
            "--socket",
            socket_s,
            "--cri-socket",
            cri.as_str(),
        ];
        args.extend_from_slice(extra);
        let spec = scanner_container(sb, &args, &scanner_capabilities()).mount(
            dir,
            dir.to_str().expect("UTF-8 path"),
            false,
        );
        let pod = sb
            .run_pod(&scanner_pod(name, spec))
            .expect("starting the scanner pod");
        let pid = pod.containers[0].pid;
        let log = sb.container_log_path(&pod, "scanner");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                std::time::Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists(),
                "the scanner container did not listen on {}: {}",
                socket.display(),
                sb.container_log(&pod, "scanner")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ScannerPod { pod, pid, log }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("a PID fits i32"));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("{signal:?} to the scanner: {e}"));
    }

    /// SIGSTOP: it keeps its socket but answers nothing.
    pub fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`Self::stop`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGKILL now, then remove its pod.
    pub fn kill_now(&self, sb: &CriSandbox) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("a PID fits i32")),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = sb.stop_pod(&self.pod.pod_id);
    }
}

/// The JSON records of a log file, CRI-framed (`<time> <stream> <tag> {json}`) or not.
pub fn json_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l.get(l.find('{')?..)?).ok())
        .collect()
}

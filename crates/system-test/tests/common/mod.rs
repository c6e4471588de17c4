//! Shared by the end-to-end suites on a real containerd: scanning the node with the real
//! binary, finding a container's answer, and exact expected answers checked case by case.
//! (Versions for expectations come from `testkit::workloads::deb_upstream_version`.)
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::Command;

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo, RuntimeComponent};
use testkit::cri_sandbox::{CriSandbox, RunningPod};

/// The scanner binary (`runtime-extractor`), staged where any uid may execute it.
pub fn bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::SCANNER)
}

/// The service binary (`runtime-extractor-serve`), staged where any uid may execute it.
pub fn serve_bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::SERVICE)
}

/// `runtime-extractor scan` of every container of the sandbox's node, as root, unhashed.
pub fn scan_node(sb: &CriSandbox) -> NodeRuntimeInfo {
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

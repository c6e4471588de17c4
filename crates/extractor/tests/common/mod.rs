//! Shared by the end-to-end suites on a real containerd: scanning the node with the real
//! binary, finding a container's answer, and reading versions from installed Debian packages
//! so expectations are never guesses.
#![allow(dead_code)] // each test binary uses a different part

use std::process::Command;

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo, RuntimeComponent};
use testkit::cri_sandbox::{CriSandbox, RunningPod};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_runtime-extractor")
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

/// The answer for one container of `pod`, keyed as the extractor keys it
/// (`<runtime>://<id>` under namespace and pod name); `None` if the scan left it out.
pub fn info_of<'a>(
    node: &'a NodeRuntimeInfo,
    sb: &CriSandbox,
    pod: &RunningPod,
    container: &str,
) -> Option<&'a ContainerRuntimeInfo> {
    let c = pod
        .container(container)
        .unwrap_or_else(|| panic!("pod {} has no container {container}", pod.name));
    node.get(&pod.namespace)?
        .get(&pod.name)?
        .get(&format!("{}://{}", sb.runtime_name(), c.id))
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

/// Upstream version of an installed Debian package: `2:1.19~1` → `1.19`,
/// `10.1.60-1~deb12u1` → `10.1.60`, `3.11.2-6+deb12u6` → `3.11.2`.
pub fn deb_upstream_version(package: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", package])
        .output()
        .expect("running dpkg-query");
    assert!(
        out.status.success(),
        "package {package} is not installed (scripts/install-test-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    upstream_of(String::from_utf8_lossy(&out.stdout).trim())
}

fn upstream_of(full: &str) -> String {
    let no_epoch = full.split_once(':').map_or(full, |(_, v)| v);
    let no_revision = no_epoch.rsplit_once('-').map_or(no_epoch, |(v, _)| v);
    no_revision
        .split(['~', '+'])
        .next()
        .unwrap_or(no_revision)
        .to_owned()
}

#[test]
fn debian_versions_reduce_to_upstream() {
    assert_eq!(upstream_of("2:1.19~1"), "1.19");
    assert_eq!(upstream_of("10.1.60-1~deb12u1"), "10.1.60");
    assert_eq!(upstream_of("3.11.2-6+deb12u6"), "3.11.2");
    assert_eq!(upstream_of("20.20.2-1nodesource1+repack1"), "20.20.2");
    assert_eq!(upstream_of("17.0.15+6-1~deb12u1"), "17.0.15");
}

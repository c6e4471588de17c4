//! Fingerprints: what runs in a container, read from files only, never by executing anything.
//!
//! Runs inside the sandbox (container mount namespace, no privileges). Each runtime or
//! framework has its own module; each module's `detect` looks at one process and the files it
//! can reach through a [`Root`], with every read bounded.

pub mod elf;
pub mod frameworks;
pub mod fsroot;
pub mod go;
pub mod graalvm;
pub mod jar;
pub mod java;
pub mod jboss;
pub mod node;
pub mod os;
pub mod paths;
pub mod python;
#[cfg(test)]
pub(crate) mod testing;

use runtime_info::{ContainerRuntimeInfo, RuntimeComponent};

pub use fsroot::Root;

use crate::process::ProcessFacts;

/// What one process turned out to be. Values are clear text in the reference's formats
/// (`Java`/`17.0.13`/`Red Hat, Inc.`, `Node.js`/`v22.6.0`, `Python`/`Python 3.9.19`, `Golang`/`go1.22.6`, `GraalVM`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    pub kind: String,
    pub version: String,
    pub implementer: String,
    pub runtimes: Vec<RuntimeComponent>,
}

/// Most candidates tried for a kind before giving up (each may read binaries).
pub const MAX_CANDIDATES_TRIED: usize = 8;

/// Fingerprint one process: the first detector that recognises it wins.
///
/// Binary evidence comes first for native executables (a Go program named `node` is Go),
/// then the interpreters and the JVM, which are recognised by name and confirmed by files.
pub fn detect_process(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    if let Some(d) = java::detect(root, process) {
        return Some(d);
    }
    if let Some(d) = go::detect(root, process) {
        return Some(d);
    }
    if let Some(d) = node::detect(root, process) {
        return Some(d);
    }
    if let Some(d) = python::detect(root, process) {
        return Some(d);
    }
    graalvm::detect(root, process)
}

/// Fingerprint a container: OS from its root, kind and frameworks from the first candidate
/// (in the order chosen by [`crate::select`]) that a detector recognises.
pub fn fingerprint_container(root: &Root, candidates: &[ProcessFacts]) -> ContainerRuntimeInfo {
    let mut info = ContainerRuntimeInfo::default();
    if let Some(os) = os::detect(root) {
        info.os = os.id;
        info.os_version = os.version_id;
    }
    for process in candidates.iter().take(MAX_CANDIDATES_TRIED) {
        if let Some(d) = detect_process(root, process) {
            info.kind = d.kind;
            info.kind_version = d.version;
            info.kind_implementer = d.implementer;
            info.runtimes = d.runtimes;
            break;
        }
    }
    info
}

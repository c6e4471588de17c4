//! Fingerprints: what runs in a container, read from files only, never by executing anything.
//!
//! Runs inside the sandbox (container mount namespace, no privileges). Each runtime or
//! framework has its own module; each module's `detect` looks at one process and the files it
//! can reach through a [`Root`], with every read bounded.
//!
//! [`DETECTORS`] is the one registry: each runtime's module declares how it recognises its
//! process ([`Recognise`]) and how it fingerprints it, and both process selection
//! ([`crate::select`]) and [`detect_process`] ask the registry, so they cannot disagree.
//! Adding a runtime is its module plus one line in [`DETECTORS`].

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

/// How a detector recognises its process before any file is read.
#[derive(Debug, Clone, Copy)]
pub enum Recognise {
    /// By its names (`comm`, executable, `argv[0]`), the detector's own rule: selection ranks
    /// such a process above unknown ones.
    Name(fn(&ProcessFacts) -> bool),
    /// By the executable's content only (native programs, any name): every process that is
    /// not a wrapper may be one.
    Executable,
}

/// One runtime detector of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    /// The contract's `runtimeKind` it reports.
    pub kind: &'static str,
    pub recognise: Recognise,
    /// Fingerprint a process (it checks `recognise` itself, so it can be called alone).
    pub detect: fn(&Root, &ProcessFacts) -> Option<Detection>,
}

impl Detector {
    /// The process is this detector's by name (never true for [`Recognise::Executable`]).
    pub fn recognises_by_name(&self, process: &ProcessFacts) -> bool {
        match self.recognise {
            Recognise::Name(rule) => rule(process),
            Recognise::Executable => false,
        }
    }
}

/// Every runtime detector, in the order they are tried: the first that recognises a process
/// wins. The JVM comes first (its launcher may be any ELF); then binary evidence for native
/// programs (a Go program named `node` is Go), then the interpreters, recognised by name and
/// confirmed by files; GraalVM native images last.
pub const DETECTORS: &[Detector] = &[
    java::DETECTOR,
    go::DETECTOR,
    node::DETECTOR,
    python::DETECTOR,
    graalvm::DETECTOR,
];

/// Some detector recognises the process by name (selection's "runtime" class).
pub fn recognised_by_name(process: &ProcessFacts) -> bool {
    DETECTORS.iter().any(|d| d.recognises_by_name(process))
}

/// Fingerprint one process: the first detector of [`DETECTORS`] that recognises it wins.
pub fn detect_process(root: &Root, process: &ProcessFacts) -> Option<Detection> {
    DETECTORS.iter().find_map(|d| (d.detect)(root, process))
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

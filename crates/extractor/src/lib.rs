//! runtime-extractor: finds the containers of a node through the CRI and fingerprints each
//! one's main process from files, inside the container's namespaces, with no privileges.
//!
//! Modules, one concern each:
//! - [`discovery`]: which containers run here (CRI gRPC), and their host PIDs;
//! - [`process`]: bounded reads of the host's `/proc`;
//! - [`select`]: which process of a container is the workload;
//! - [`sandbox`]: the per-container child (setns, privilege drop, bounded pipe, deadline);
//! - [`fingerprint`]: OS, runtime kinds and frameworks, from files only;
//! - [`scan`]: orchestration (containers → candidates → sandboxes → results);
//! - [`scanner_proto`] and [`scanner`]: the privileged daemon's unix-socket protocol;
//! - [`server`]: the unprivileged HTTPS service.

pub mod cli;
pub mod discovery;
pub mod fingerprint;
pub mod process;
pub mod sandbox;
pub mod scan;
pub mod scanner;
pub mod scanner_proto;
pub mod select;
pub mod server;

//! The privileged half of runtime-extractor: finds the containers of a node through the CRI
//! and fingerprints each one's main process from files, inside the container's namespaces,
//! with no privileges. It links no HTTP server, TLS, Kubernetes client or Prometheus crate
//! (`tests/deps.rs` keeps it so); the HTTPS service is the `service` crate, which reaches this
//! one only through the `scanner_proto` frames.
//!
//! Modules, one concern each:
//! - [`discovery`]: which containers run here (CRI gRPC), and their host PIDs;
//! - [`process`]: bounded reads of the host's `/proc`;
//! - [`select`]: which process of a container is the workload;
//! - [`sandbox`]: the per-container helper (pidfd, detached read-only mount tree, privilege
//!   drop to the workload's credentials, seccomp, bounded pipe, deadline);
//! - [`kernel`]: the start-up probe of the kernel features the sandbox relies on;
//! - [`fingerprint`]: OS, runtime kinds and frameworks, from files only;
//! - [`scan`]: orchestration (containers → candidates → sandboxes → results);
//! - [`daemon`]: the scanner daemon on its unix socket (protocol: the `scanner_proto` crate);
//! - [`cli`]: the `runtime-extractor` command line (`scan`, `scanner`);
//! - [`fuzzing`]: the parsers' fuzzing entry points (`fuzz/`, replayed by `tests/fuzz_corpus.rs`).

// Privileged code that parses container-, socket- and runtime-controlled bytes throughout
// (fingerprints, /proc, CRI replies, sandbox answers): no panics, no unchecked indexing or
// arithmetic, anywhere in the crate outside tests.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod cli;
pub mod daemon;
pub mod discovery;
pub mod fingerprint;
pub mod fuzzing;
pub mod kernel;
pub mod process;
pub mod sandbox;
pub mod scan;
pub mod select;

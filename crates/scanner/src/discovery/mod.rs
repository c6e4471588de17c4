//! Container discovery: which Kubernetes containers run on this node, and their host PIDs.
//!
//! - [`cri`]: the CRI gRPC client ([`CriClient`]) and socket auto-detection;
//! - the hand-written CRI v1 messages live in the `cri_api` crate (no protoc at build time);
//! - [`cgroup`]: fallback host-PID lookup by cgroup membership.

use std::path::PathBuf;

pub mod cgroup;
pub mod cri;

pub use cri::{Container, CriClient};

/// Why containers could not be discovered. Each message names the socket involved.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no CRI socket found ({hint}); looked at: {}", display_paths(searched))]
    NoSocket {
        searched: Vec<PathBuf>,
        hint: &'static str,
    },
    #[error("unsupported CONTAINER_RUNTIME_ENDPOINT {0:?}: expected unix:///absolute/path or an absolute path")]
    BadEndpoint(String),
    #[error("CRI socket path {} is not valid UTF-8", .0.display())]
    NonUtf8Socket(PathBuf),
    #[error("cannot connect to the CRI runtime at {}: {}", socket.display(), error_chain(cause))]
    Connect {
        socket: PathBuf,
        cause: tonic::transport::Error,
    },
    #[error("CRI {call} on {} failed: {} ({:?})", socket.display(), cause.message(), cause.code())]
    Rpc {
        call: &'static str,
        socket: PathBuf,
        cause: Box<tonic::Status>,
    },
    #[error("the CRI runtime at {} reported no runtime name", .0.display())]
    NoRuntimeName(PathBuf),
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// tonic's transport errors say only "transport error" at the top; the cause (ENOENT,
/// ECONNREFUSED, timeout) is in the source chain, which a one-line message must include.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

//! The wire contract between `runtime-extractor` and `workload-gatherer`.
//!
//! Everything here is pure data and pure functions (no I/O), so both halves agree
//! byte for byte with each other and with the reference system:
//! - [`ContainerRuntimeInfo`] and [`NodeRuntimeInfo`]: the JSON answered by
//!   `/gather_runtime_info` (field names and omit-when-empty rules as the reference);
//! - [`GatherRuntimeInfoRequest`]: the POST body;
//! - [`anonymize`] / [`workload_hash`]: the 12-character SHA-256 hashes;
//! - [`ContainerId`]: validated `<runtime>://<64 hex>` identifiers.

mod container_id;
mod hash;
mod types;

pub use container_id::{ContainerId, ContainerIdError};
pub use hash::{anonymize, workload_hash};
pub use types::{
    ContainerRuntimeInfo, GatherRuntimeInfoRequest, NodeRuntimeInfo, RuntimeComponent,
};

//! workload-gatherer: pods → anonymised shapes → only the needed container IDs per node
//! → runtime info from the node extractors → `config/workload_info.json`.
//!
//! The flow (PRD-0001): page through the pods building shapes as pages arrive (pods are
//! never kept), record per node the container IDs of the first pod of each new shape,
//! and only after the listing ask each node's extractor about its IDs; merge; write.

pub mod archive;
pub mod cli;
pub mod duration;
pub mod extractors;
pub mod gather;
pub mod image_ref;
pub mod images;
pub mod kube_types;
pub mod merge;
pub mod output;
pub mod pods;
pub mod selector;
pub mod shape;
pub mod status;

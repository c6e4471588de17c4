//! `config/gather_status.json`: what the gather did, for people and for monitoring
//! (the reference reports only errors, in the operator's `gathers.json`).

use serde::Serialize;

use crate::extractors::NodeFailure;
use crate::images::ImageApiState;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatherStatus {
    /// `api` or `file:<path>`.
    pub source: String,
    /// Pods counted in the report (≤ the limit).
    pub pods: usize,
    /// Pods read from the API or the file (includes the one that hit the limit).
    pub pods_read: usize,
    pub namespaces: usize,
    pub shapes: usize,
    pub limit: usize,
    pub limit_reached: bool,
    pub pages: u32,
    pub list_restarts: u32,
    pub image_count: usize,
    pub images_found: usize,
    pub image_api: ImageApiState,
    pub runtime_info: RuntimeInfoStatus,
    pub durations_ms: Durations,
    /// Problems, one line each (the limit message is the reference's exact text).
    pub errors: Vec<String>,
    /// Informational remarks (e.g. why runtime info was skipped offline).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfoStatus {
    /// `false` when skipped (see `skippedReason`).
    pub gathered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_reason: Option<String>,
    pub extractors_found: usize,
    /// Nodes with at least one container ID to ask about.
    pub nodes_with_containers: usize,
    pub nodes_asked: usize,
    pub nodes_answered: usize,
    pub containers_requested: usize,
    /// Container entries the extractors returned (non-empty ones).
    pub containers_answered: usize,
    /// Container shapes that received runtime info.
    pub containers_merged: usize,
    pub nodes_failed: Vec<FailedNode>,
    /// Nodes with container IDs but no Running extractor pod.
    pub nodes_without_extractor: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedNode {
    pub node: String,
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    pub containers_requested: usize,
    #[serde(flatten)]
    pub failure: NodeFailure,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    pub listing: u64,
    pub images: u64,
    pub runtime_info: u64,
    pub total: u64,
}

impl GatherStatus {
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }
}

//! The unix-socket protocol between `runtime-extractor-serve` (unprivileged) and
//! `runtime-extractor scanner` (privileged), shared by both and by nothing else.
//!
//! One request and one response per connection, each a frame: a 4-byte big-endian length
//! followed by that many bytes of JSON. Lengths are checked before anything is allocated, so a
//! client cannot make the privileged side buffer more than [`MAX_REQUEST_BYTES`].
//!
//! Request: `{"containerIds": [...], "listOnly": false}` (`[]` = every container).
//! Response: every requested container that runs on this node, with its identity (PID and
//! process start time, which `serve` uses to keep its cache valid) and, unless `listOnly`, what
//! was found in it, in clear text. [`ScanResponse::node_runtime_info`] turns it into the
//! `NodeRuntimeInfo` the HTTP API answers. Failures cross the socket typed ([`Failure`]: a
//! [`FailureKind`] the service acts on, plus a detail for people).
//!
//! [`identity`] says how either side tells that a PID still names the process that was
//! scanned.

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

pub mod identity;

use std::fmt;
use std::io::{self, Read, Write};

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest request frame the scanner accepts (10 000 prefixed IDs fit in under 1 MiB).
pub const MAX_REQUEST_BYTES: u32 = 2 * 1024 * 1024;
/// Largest response frame a client accepts.
pub const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanRequest {
    /// Container IDs as Kubernetes writes them (`cri-o://<64 hex>`), or bare 64-hex IDs.
    /// Empty means every running container.
    #[serde(default)]
    pub container_ids: Vec<String>,
    /// Only list the containers and their process identity; fingerprint nothing.
    #[serde(default)]
    pub list_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanResponse {
    #[serde(default)]
    pub containers: Vec<ScannedContainer>,
    /// Set when the whole request failed (e.g. the CRI is unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Sandbox helpers the scanner killed that have not died yet (blocked in the kernel on
    /// some container's memory), as this answer was sent.
    #[serde(default)]
    pub stuck_helpers: u32,
}

/// What kind of failure crossed the socket: the service maps it to a status and a metric
/// label, never by reading the detail text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The request was malformed (bad frame, bad container ID, too many IDs).
    BadRequest,
    /// The container runtime (CRI) could not be reached or refused a call.
    CriUnavailable,
    /// The process exited, or its PID now names another process.
    ProcessGone,
    /// The analysis of a container ran past its deadline and was killed.
    Timeout,
    /// The sandbox that analyses a container failed (crashed, refused, answered garbage).
    SandboxFailed,
    /// Anything else on the scanner's side.
    Internal,
    /// A kind this side does not know (a newer peer): treated like [`FailureKind::Internal`].
    #[serde(other)]
    Unknown,
}

impl FailureKind {
    /// A short stable name (metric labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::BadRequest => "bad_request",
            FailureKind::CriUnavailable => "cri_unavailable",
            FailureKind::ProcessGone => "process_gone",
            FailureKind::Timeout => "timeout",
            FailureKind::SandboxFailed => "sandbox_failed",
            FailureKind::Internal => "internal",
            FailureKind::Unknown => "unknown",
        }
    }
}

/// A failure as it crosses the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line for people; never parsed.
    #[serde(default)]
    pub detail: String,
}

impl Failure {
    pub fn new(kind: FailureKind, detail: impl fmt::Display) -> Self {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.kind.as_str())
        } else {
            f.write_str(&self.detail)
        }
    }
}

impl std::error::Error for Failure {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannedContainer {
    pub namespace: String,
    pub pod: String,
    /// Container name (kubelet label `io.kubernetes.container.name`).
    pub container: String,
    /// `<runtime>://<64 hex>`, the key of the HTTP answer.
    pub container_id: String,
    /// Host PID of the container's root process.
    pub pid: u32,
    /// Its start time (clock ticks after boot): PID + start time identify the process.
    pub start_time: u64,
    /// What was found; `None` when only listing or when the analysis failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ContainerRuntimeInfo>,
    /// Why the analysis failed (timeout, crash, ...), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

impl ScanResponse {
    /// The HTTP answer's shape: namespace → pod → container ID → info (clear text).
    /// Containers whose analysis failed are left out, as the reference leaves them out.
    pub fn node_runtime_info(&self) -> NodeRuntimeInfo {
        let mut node = NodeRuntimeInfo::new();
        for c in &self.containers {
            if let Some(info) = &c.info {
                node.entry(c.namespace.clone())
                    .or_default()
                    .entry(c.pod.clone())
                    .or_default()
                    .insert(c.container_id.clone(), info.clone());
            }
        }
        node
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u32, max: u32 },
    // The cause is part of the message and deliberately not a `source()`: printed once.
    #[error("i/o error on the scanner socket: {0}")]
    Io(io::Error),
    #[error("invalid JSON in frame: {0}")]
    Json(serde_json::Error),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<serde_json::Error> for FrameError {
    fn from(e: serde_json::Error) -> Self {
        FrameError::Json(e)
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    let mut frame = Vec::with_capacity(body.len().saturating_add(4));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn check_len(header: [u8; 4], max: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    usize::try_from(len).map_err(|_| FrameError::TooLarge { len, max })
}

/// Write one frame (blocking).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), FrameError> {
    w.write_all(&encode(value)?)?;
    w.flush()?;
    Ok(())
}

/// Read one frame of at most `max` bytes (blocking).
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R, max: u32) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Write one frame (async).
pub async fn write_frame_async<W, T>(w: &mut W, value: &T) -> Result<(), FrameError>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    use tokio::io::AsyncWriteExt;
    w.write_all(&encode(value)?).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame of at most `max` bytes (async).
pub async fn read_frame_async<R, T>(r: &mut R, max: u32) -> Result<T, FrameError>
where
    R: tokio::io::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await?;
    let len = check_len(header, max)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// Ask the scanner listening on `socket` (async client used by `serve` and tests).
pub async fn request(
    socket: &std::path::Path,
    req: &ScanRequest,
) -> Result<ScanResponse, FrameError> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    write_frame_async(&mut stream, req).await?;
    read_frame_async(&mut stream, MAX_RESPONSE_BYTES).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let req = ScanRequest {
            container_ids: vec!["cri-o://abc".into()],
            list_only: true,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let back: ScanRequest = read_frame(&mut buf.as_slice(), MAX_REQUEST_BYTES).unwrap();
        assert_eq!(back, req);
        let err = read_frame::<_, ScanRequest>(&mut buf.as_slice(), 4).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<_, ScanRequest>(&mut huge.as_slice(), MAX_REQUEST_BYTES),
            Err(FrameError::TooLarge { .. })
        ));
        let truncated = &buf[..buf.len() - 1];
        assert!(read_frame::<_, ScanRequest>(&mut &truncated[..], MAX_REQUEST_BYTES).is_err());
    }

    #[test]
    fn request_defaults() {
        let req: ScanRequest = serde_json::from_str("{}").unwrap();
        assert!(req.container_ids.is_empty());
        assert!(!req.list_only);
    }

    #[test]
    fn node_runtime_info_leaves_failed_containers_out() {
        let resp = ScanResponse {
            containers: vec![
                ScannedContainer {
                    namespace: "ns".into(),
                    pod: "p".into(),
                    container_id: "cri-o://a".into(),
                    info: Some(ContainerRuntimeInfo {
                        os: "rhel".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ScannedContainer {
                    namespace: "ns".into(),
                    pod: "p".into(),
                    container_id: "cri-o://b".into(),
                    error: Some(Failure::new(FailureKind::Timeout, "timed out")),
                    ..Default::default()
                },
            ],
            error: None,
            stuck_helpers: 0,
        };
        let node = resp.node_runtime_info();
        assert_eq!(node["ns"]["p"].len(), 1);
        assert_eq!(node["ns"]["p"]["cri-o://a"].os, "rhel");
    }

    #[test]
    fn failures_cross_typed_and_unknown_kinds_degrade() {
        let resp = ScanResponse {
            containers: vec![],
            error: Some(Failure::new(
                FailureKind::CriUnavailable,
                "connection refused",
            )),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &resp).unwrap();
        let back: ScanResponse = read_frame(&mut buf.as_slice(), MAX_RESPONSE_BYTES).unwrap();
        assert_eq!(back, resp);
        assert_eq!(back.error.unwrap().to_string(), "connection refused");
        // A newer scanner's kind must not make the whole answer unreadable.
        let newer: Failure =
            serde_json::from_str(r#"{"kind":"quotaExceeded","detail":"x"}"#).unwrap();
        assert_eq!(newer.kind, FailureKind::Unknown);
        assert_eq!(
            Failure::new(FailureKind::Timeout, "").to_string(),
            "timeout"
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x00\x00",
            b"\x00\x00\x00\x05{}",
            b"\x00\x00\x00\x04null",
            b"\x00\x00\x00\x10{\"containerIds\":",
            b"\x00\x00\x00\x14{\"containerIds\":[1]}",
        ];
        for bytes in cases {
            let mut r = *bytes;
            assert!(
                read_frame::<_, ScanRequest>(&mut r, MAX_REQUEST_BYTES).is_err(),
                "{bytes:?} was accepted"
            );
        }
        // The length is checked before anything is allocated or read.
        let mut r: &[u8] = &[0x00, 0x20, 0x00, 0x01];
        assert!(matches!(
            read_frame::<_, ScanRequest>(&mut r, MAX_REQUEST_BYTES),
            Err(FrameError::TooLarge {
                len: 0x0020_0001,
                max: MAX_REQUEST_BYTES
            })
        ));
    }

    #[tokio::test]
    async fn async_round_trip_matches_blocking_frames() {
        let resp = ScanResponse {
            containers: vec![ScannedContainer {
                namespace: "ns".into(),
                pod: "p".into(),
                container: "c".into(),
                container_id: "containerd://ab".into(),
                pid: 7,
                start_time: 9,
                info: None,
                error: Some(Failure::new(FailureKind::ProcessGone, "exited")),
            }],
            error: None,
            ..Default::default()
        };
        let mut blocking = Vec::new();
        write_frame(&mut blocking, &resp).unwrap();
        let mut asynch = Vec::new();
        write_frame_async(&mut asynch, &resp).await.unwrap();
        assert_eq!(blocking, asynch);
        let back: ScanResponse = read_frame_async(&mut asynch.as_slice(), MAX_RESPONSE_BYTES)
            .await
            .unwrap();
        assert_eq!(back, resp);
    }
}

//! The unix-socket protocol between `runtime-extractor serve` (unprivileged) and
//! `runtime-extractor scanner` (privileged).
//!
//! One request and one response per connection, each a frame: a 4-byte big-endian length
//! followed by that many bytes of JSON. Lengths are checked before anything is allocated, so a
//! client cannot make the privileged side buffer more than [`MAX_REQUEST_BYTES`].
//!
//! Request: `{"containerIds": [...], "listOnly": false}` (`[]` = every container).
//! Response: every requested container that runs on this node, with its identity (PID and
//! process start time, which `serve` uses to keep its cache valid) and, unless `listOnly`, what
//! was found in it, in clear text. [`ScanResponse::node_runtime_info`] turns it into the
//! `NodeRuntimeInfo` the HTTP API answers.

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
    pub error: Option<String>,
}

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
    pub error: Option<String>,
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
    #[error("i/o error on the scanner socket: {0}")]
    Io(#[from] io::Error),
    #[error("invalid JSON in frame: {0}")]
    Json(#[from] serde_json::Error),
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value)?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

fn check_len(header: [u8; 4], max: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len as usize)
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
                    error: Some("timed out".into()),
                    ..Default::default()
                },
            ],
            error: None,
        };
        let node = resp.node_runtime_info();
        assert_eq!(node["ns"]["p"].len(), 1);
        assert_eq!(node["ns"]["p"]["cri-o://a"].os, "rhel");
    }
}

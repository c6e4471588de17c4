//! Which containers run on this node, through the CRI (`runtime.v1.RuntimeService`).
//!
//! One `ListContainers` (state RUNNING) per call, then one verbose `ContainerStatus` per
//! *selected* container for its host PID; never `crictl`, and nothing per container that the
//! caller did not ask for.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use runtime_info::ContainerId;
use serde::Deserialize;

use super::{cgroup, DiscoveryError};
use cri_api::{
    self, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest,
    ListContainersRequest, RuntimeServiceClient, VersionRequest,
};

/// Sockets tried, in order, when neither a path nor `CONTAINER_RUNTIME_ENDPOINT` is given.
pub const DEFAULT_SOCKETS: [&str; 4] = [
    "/run/crio/crio.sock",
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/var/run/containerd/containerd.sock",
];

/// The environment variable crictl and the kubelet use to name the CRI endpoint.
pub const ENDPOINT_ENV: &str = "CONTAINER_RUNTIME_ENDPOINT";

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Internal marker: the status gave no PID, the cgroup fallback must find one. Never a real
/// PID (0 is the kernel's idle task; `pid_from_info` rejects it).
const PID_UNKNOWN: u32 = 0;

/// Pauses before retrying a ListContainers the runtime could not answer (restart window).
const UNAVAILABLE_RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(750),
    Duration::from_secs(2),
];

/// ContainerStatus calls in flight at once: keeps a 200-container node fast without
/// flooding the runtime.
const STATUS_CONCURRENCY: usize = 8;

/// The verbose `info["info"]` document is runtime-specific JSON (containerd puts the whole OCI
/// spec in it). Larger documents are not parsed.
const MAX_INFO_BYTES: usize = 4 * 1024 * 1024;

pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// A running Kubernetes container on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The 64-hex ID the runtime knows.
    pub id_hex: String,
    /// `<runtime name>://<hex>`, as Kubernetes writes it in `containerStatuses[].containerID`.
    pub kubernetes_id: String,
    pub namespace: String,
    pub pod: String,
    pub name: String,
    /// PID of the container's init process, in the host (this process's) PID namespace.
    pub pid: u32,
    pub image_ref: String,
}

/// A connected CRI client.
#[derive(Debug, Clone)]
pub struct CriClient {
    client: RuntimeServiceClient,
    socket: PathBuf,
    runtime_name: String,
    runtime_version: String,
    /// Where the host's procfs is (for the cgroup fallback): `/proc` (the scanner runs with
    /// hostPID).
    proc_root: PathBuf,
    /// Host PID and its start time per container ID. A container's init process lives as long
    /// as the container, so after the first status call a listing needs no per-container RPC;
    /// an entry is used only while that PID still has the same start time, and entries of
    /// containers no longer listed are dropped (the map never outgrows the node).
    known_pids: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u32, u64)>>>,
}

impl CriClient {
    /// Connect to `socket`, else `$CONTAINER_RUNTIME_ENDPOINT`, else the first existing
    /// default socket, and ask the runtime's name and version.
    pub async fn connect(socket: Option<&Path>) -> Result<Self, DiscoveryError> {
        let env = std::env::var_os(ENDPOINT_ENV);
        let path = resolve_socket(socket, env.as_deref(), &DEFAULT_SOCKETS, |p| p.exists())?;
        Self::connect_to(&path).await
    }

    /// Connect to exactly this socket path.
    pub async fn connect_to(socket: &Path) -> Result<Self, DiscoveryError> {
        let path_str = socket
            .to_str()
            .ok_or_else(|| DiscoveryError::NonUtf8Socket(socket.to_owned()))?;
        let mut client = cri_api::connect_unix(path_str, CONNECT_TIMEOUT, CALL_TIMEOUT)
            .await
            .map_err(|source| DiscoveryError::Connect {
                socket: socket.to_owned(),
                cause: source,
            })?;
        let version = client
            .version(VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map_err(|source| DiscoveryError::Rpc {
                call: "Version",
                socket: socket.to_owned(),
                cause: Box::new(source),
            })?;
        if version.runtime_name.is_empty() {
            return Err(DiscoveryError::NoRuntimeName(socket.to_owned()));
        }
        tracing::debug!(
            socket = %socket.display(),
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            "connected to CRI runtime"
        );
        Ok(CriClient {
            client,
            socket: socket.to_owned(),
            runtime_name: version.runtime_name,
            runtime_version: version.runtime_version,
            proc_root: PathBuf::from("/proc"),
            known_pids: Default::default(),
        })
    }

    /// `cri-o` or `containerd` (the runtime's own `Version.runtime_name`): the prefix
    /// Kubernetes writes in container IDs.
    pub fn runtime_name(&self) -> &str {
        &self.runtime_name
    }

    pub fn runtime_version(&self) -> &str {
        &self.runtime_version
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Running Kubernetes containers, optionally only those in `filter` (matched on the 64-hex
    /// part; the runtime prefix of a requested ID is not compared). IDs that match nothing are
    /// ignored. Containers without the kubelet's labels, or that stop before their status is
    /// read, are left out (logged at debug level).
    pub async fn list_running(
        &self,
        filter: Option<&[ContainerId]>,
    ) -> Result<Vec<Container>, DiscoveryError> {
        let request = ListContainersRequest {
            filter: Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        };
        let listed = self.list_with_retry(request).await?.containers;

        let wanted: Option<HashSet<&str>> =
            filter.map(|ids| ids.iter().map(|id| id.hex()).collect());
        let selected: Vec<(cri_api::Container, Identity)> = listed
            .into_iter()
            .filter(|c| wanted.as_ref().is_none_or(|w| w.contains(c.id.as_str())))
            .filter_map(|c| {
                let identity = kubernetes_identity(&c)?;
                Some((c, identity))
            })
            .collect();

        if wanted.is_none() {
            // A full listing tells which containers are gone: forget their PIDs.
            let listed: HashSet<&str> = selected.iter().map(|(c, _)| c.id.as_str()).collect();
            self.known().retain(|id, _| listed.contains(id.as_str()));
        }
        let found: Vec<Option<Container>> = stream::iter(selected)
            .map(|(c, identity)| self.complete(c, identity))
            .buffered(STATUS_CONCURRENCY)
            .collect()
            .await;
        let mut found: Vec<Container> = found.into_iter().flatten().collect();
        self.fill_pids_from_cgroups(&mut found).await;
        found.retain(|c| c.pid != PID_UNKNOWN);
        let procfs = crate::process::Procfs::at(&self.proc_root);
        let mut known = self.known();
        for c in &found {
            if let Ok(start) = procfs.start_time(c.pid) {
                known.insert(c.id_hex.clone(), (c.pid, start));
            }
        }
        Ok(found)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, u64)>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep using it.
        self.known_pids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered PID of a container, if that process is still the same one.
    fn known_pid(&self, id: &str) -> Option<u32> {
        let (pid, start) = *self.known().get(id)?;
        let now = crate::process::Procfs::at(&self.proc_root)
            .start_time(pid)
            .ok()?;
        (now == start).then_some(pid)
    }

    /// Containers whose status had no usable PID: one pass over /proc for their cgroups.
    async fn fill_pids_from_cgroups(&self, found: &mut [Container]) {
        let missing: Vec<String> = found
            .iter()
            .filter(|c| c.pid == PID_UNKNOWN)
            .map(|c| c.id_hex.clone())
            .collect();
        if missing.is_empty() {
            return;
        }
        let proc_root = self.proc_root.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
            cgroup::find_container_pids(&proc_root, &ids)
        });
        let pids = match lookup.await {
            Ok(pids) => pids,
            Err(e) => {
                tracing::warn!(error = %e, "cgroup PID lookup failed");
                return;
            }
        };
        for c in found.iter_mut().filter(|c| c.pid == PID_UNKNOWN) {
            match pids.get(&c.id_hex) {
                Some(&pid) => c.pid = pid,
                None => {
                    tracing::debug!(container = %c.id_hex, "no process found in the container's cgroup; skipped")
                }
            }
        }
    }

    /// ListContainers, retried while the runtime is briefly unavailable (a runtime restart
    /// closes the socket for a moment; the channel reconnects on the next call).
    async fn list_with_retry(
        &self,
        request: ListContainersRequest,
    ) -> Result<cri_api::ListContainersResponse, DiscoveryError> {
        let mut attempt = 0;
        loop {
            match self.client.clone().list_containers(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && attempt < UNAVAILABLE_RETRIES.len() =>
                {
                    let pause = UNAVAILABLE_RETRIES
                        .get(attempt)
                        .copied()
                        .unwrap_or(Duration::from_secs(1));
                    tracing::info!(
                        socket = %self.socket.display(),
                        error = %status.message(),
                        "CRI runtime unavailable; retrying ListContainers in {pause:?}"
                    );
                    tokio::time::sleep(pause).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(status) => return Err(self.rpc_error("ListContainers", status)),
            }
        }
    }

    /// Host PID of one container from its verbose status, or `None` (logged) when it is gone,
    /// not running, or its status carries no usable PID.
    async fn complete(&self, c: cri_api::Container, identity: Identity) -> Option<Container> {
        if let Some(pid) = self.known_pid(&c.id) {
            return Some(self.container(c, identity, pid));
        }
        let request = ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: true,
        };
        let response = match self.client.clone().container_status(request).await {
            Ok(r) => r,
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::debug!(container = %c.id, "container vanished between list and status; skipped");
                return None;
            }
            Err(status) => {
                tracing::warn!(
                    container = %c.id,
                    error = %status.message(),
                    code = ?status.code(),
                    "ContainerStatus failed; container skipped"
                );
                return None;
            }
        };
        let running = response
            .status
            .as_ref()
            .is_some_and(|s| s.state == ContainerState::ContainerRunning as i32);
        if !running {
            tracing::debug!(container = %c.id, "container no longer running; skipped");
            return None;
        }
        let pid = match response.info.get("info").map(|s| pid_from_info(s)) {
            Some(Ok(pid)) => pid,
            Some(Err(why)) => {
                tracing::debug!(container = %c.id, %why, "no host PID in verbose status; will look in cgroups");
                PID_UNKNOWN
            }
            None => {
                tracing::debug!(container = %c.id, "verbose status has no \"info\" entry; will look in cgroups");
                PID_UNKNOWN
            }
        };
        Some(self.container(c, identity, pid))
    }

    fn container(&self, c: cri_api::Container, identity: Identity, pid: u32) -> Container {
        Container {
            kubernetes_id: format!("{}://{}", self.runtime_name, c.id),
            id_hex: c.id,
            namespace: identity.namespace,
            pod: identity.pod,
            name: identity.name,
            pid,
            image_ref: c.image_ref,
        }
    }

    fn rpc_error(&self, call: &'static str, source: tonic::Status) -> DiscoveryError {
        DiscoveryError::Rpc {
            call,
            socket: self.socket.clone(),
            cause: Box::new(source),
        }
    }
}

pub(crate) struct Identity {
    namespace: String,
    pod: String,
    name: String,
}

/// Namespace, pod and container name from the labels the kubelet sets; `None` (logged) for
/// containers not created by a kubelet.
pub(crate) fn kubernetes_identity(c: &cri_api::Container) -> Option<Identity> {
    let label = |key: &str| c.labels.get(key).filter(|v| !v.is_empty()).cloned();
    match (
        label(LABEL_NAMESPACE),
        label(LABEL_POD_NAME),
        label(LABEL_CONTAINER_NAME),
    ) {
        (Some(namespace), Some(pod), Some(name)) => Some(Identity {
            namespace,
            pod,
            name,
        }),
        _ => {
            tracing::debug!(container = %c.id, "container has no kubelet labels; skipped");
            None
        }
    }
}

/// The host PID from a verbose status `info["info"]` JSON document (`{"pid": N, ...}`).
pub fn pid_from_info(info: &str) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Info {
        pid: Option<i64>,
    }
    if info.len() > MAX_INFO_BYTES {
        return Err(format!(
            "info document is {} bytes (limit {MAX_INFO_BYTES})",
            info.len()
        ));
    }
    let parsed: Info =
        serde_json::from_str(info).map_err(|e| format!("info is not the expected JSON: {e}"))?;
    match parsed.pid {
        None => Err("info has no \"pid\"".to_owned()),
        // 0 is what runtimes report for a container that is not running.
        Some(pid) if pid <= 0 || pid > i64::from(i32::MAX) => {
            Err(format!("info has an invalid pid {pid}"))
        }
        Some(pid) => u32::try_from(pid).map_err(|_| format!("info has an invalid pid {pid}")),
    }
}

/// Which socket to use: the explicit path, else the `CONTAINER_RUNTIME_ENDPOINT` value
/// (`unix:///path` or a bare path), else the first of `candidates` for which `exists` holds.
/// Pure so tests need not touch the process environment.
pub fn resolve_socket(
    explicit: Option<&Path>,
    env: Option<&OsStr>,
    candidates: &[&str],
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, DiscoveryError> {
    if let Some(path) = explicit {
        return if exists(path) {
            Ok(path.to_owned())
        } else {
            Err(DiscoveryError::NoSocket {
                searched: vec![path.to_owned()],
                hint: "the given socket path does not exist",
            })
        };
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let text = value
            .to_str()
            .ok_or_else(|| DiscoveryError::BadEndpoint(value.to_string_lossy().into_owned()))?;
        let path = match text.split_once("://") {
            Some(("unix", path)) => PathBuf::from(path),
            Some(_) => return Err(DiscoveryError::BadEndpoint(text.to_owned())),
            None => PathBuf::from(text),
        };
        if !path.is_absolute() {
            return Err(DiscoveryError::BadEndpoint(text.to_owned()));
        }
        return if exists(&path) {
            Ok(path)
        } else {
            Err(DiscoveryError::NoSocket {
                searched: vec![path],
                hint: "from CONTAINER_RUNTIME_ENDPOINT",
            })
        };
    }
    candidates
        .iter()
        .map(Path::new)
        .find(|p| exists(p))
        .map(Path::to_owned)
        .ok_or_else(|| DiscoveryError::NoSocket {
            searched: candidates.iter().map(PathBuf::from).collect(),
            hint: "set CONTAINER_RUNTIME_ENDPOINT or pass the socket path",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn never(_: &Path) -> bool {
        false
    }

    #[test]
    fn explicit_path_wins_over_env_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("my.sock");
        std::fs::write(&sock, b"").unwrap();
        let env = OsString::from("unix:///nonexistent/other.sock");
        let got =
            resolve_socket(Some(&sock), Some(&env), &DEFAULT_SOCKETS, |p| p.exists()).unwrap();
        assert_eq!(got, sock);
    }

    #[test]
    fn explicit_path_that_does_not_exist_is_an_error_naming_it() {
        let err = resolve_socket(
            Some(Path::new("/nonexistent/x.sock")),
            None,
            &DEFAULT_SOCKETS,
            never,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.sock"), "{err}");
    }

    #[test]
    fn env_endpoint_with_and_without_unix_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("env.sock");
        std::fs::write(&sock, b"").unwrap();
        for value in [
            format!("unix://{}", sock.display()),
            sock.display().to_string(),
        ] {
            let got = resolve_socket(None, Some(OsStr::new(&value)), &DEFAULT_SOCKETS, |p| {
                p.exists()
            })
            .unwrap();
            assert_eq!(got, sock, "for {value}");
        }
    }

    #[test]
    fn env_endpoint_missing_socket_is_not_silently_replaced_by_defaults() {
        // A default socket exists, but the operator named another one: use of the default
        // would scan the wrong runtime.
        let env = OsString::from("unix:///nonexistent/crio.sock");
        let err = resolve_socket(None, Some(&env), &DEFAULT_SOCKETS, |p| {
            p == Path::new("/run/containerd/containerd.sock")
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/crio.sock"), "{err}");
    }

    #[test]
    fn env_endpoint_other_schemes_and_relative_paths_are_rejected() {
        for value in [
            "tcp://127.0.0.1:1234",
            "npipe:////./pipe/x",
            "relative/sock",
        ] {
            let err = resolve_socket(None, Some(OsStr::new(value)), &DEFAULT_SOCKETS, |_| true)
                .unwrap_err();
            assert!(
                matches!(err, DiscoveryError::BadEndpoint(_)),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn empty_env_falls_back_to_first_existing_default() {
        let got = resolve_socket(None, Some(OsStr::new("")), &DEFAULT_SOCKETS, |p| {
            p == Path::new("/var/run/crio/crio.sock")
                || p == Path::new("/var/run/containerd/containerd.sock")
        })
        .unwrap();
        assert_eq!(got, PathBuf::from("/var/run/crio/crio.sock"));
        let got = resolve_socket(None, None, &DEFAULT_SOCKETS, |_| true).unwrap();
        assert_eq!(got, PathBuf::from("/run/crio/crio.sock"));
    }

    #[test]
    fn nothing_found_lists_every_place_looked() {
        let err = resolve_socket(None, None, &DEFAULT_SOCKETS, never).unwrap_err();
        let msg = err.to_string();
        for p in DEFAULT_SOCKETS {
            assert!(msg.contains(p), "{msg} lacks {p}");
        }
        assert!(msg.contains("CONTAINER_RUNTIME_ENDPOINT"), "{msg}");
    }

    #[test]
    fn pid_from_info_accepts_runtime_documents() {
        assert_eq!(
            pid_from_info(r#"{"sandboxID":"x","pid":4242,"runtimeSpec":{"a":[1,2]}}"#),
            Ok(4242)
        );
    }

    #[test]
    fn pid_from_info_rejects_missing_zero_negative_huge_and_garbage() {
        for bad in [
            "{}",
            r#"{"pid":0}"#,
            r#"{"pid":-5}"#,
            r#"{"pid":99999999999}"#,
            r#"{"pid":"12"}"#,
            "not json",
            "",
        ] {
            assert!(pid_from_info(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pid_from_info_refuses_oversized_documents() {
        let big = format!(r#"{{"pid":1,"pad":"{}"}}"#, "x".repeat(MAX_INFO_BYTES));
        let err = pid_from_info(&big).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn kubelet_labels_are_required() {
        let mut c = cri_api::Container {
            id: "a".repeat(64),
            ..Default::default()
        };
        assert!(kubernetes_identity(&c).is_none());
        c.labels.insert(LABEL_NAMESPACE.into(), "ns".into());
        c.labels.insert(LABEL_POD_NAME.into(), "pod".into());
        assert!(kubernetes_identity(&c).is_none());
        c.labels.insert(LABEL_CONTAINER_NAME.into(), String::new());
        assert!(kubernetes_identity(&c).is_none(), "empty name accepted");
        c.labels.insert(LABEL_CONTAINER_NAME.into(), "app".into());
        let id = kubernetes_identity(&c).unwrap();
        assert_eq!(
            (id.namespace.as_str(), id.pod.as_str(), id.name.as_str()),
            ("ns", "pod", "app")
        );
    }
}

//! A real containerd (CRI plugin built in) for tests: own state directory, own socket, locally
//! built images (no registry), kubelet-labelled pods with host network and a PID namespace per
//! container.
//!
//! ```no_run
//! use testkit::cri_sandbox::{CriSandbox, ContainerSpec, PodSpec};
//! let sb = CriSandbox::start_for("my_test");
//! let pod = sb
//!     .run_pod(&PodSpec::new("default", "web").container(
//!         ContainerSpec::new("app", &["/bin/sleep", "3600"])
//!             .env("GREETING", "hello")
//!             .mount("/usr/bin/node", "/usr/bin/node", true),
//!     ))
//!     .unwrap();
//! let app = pod.container("app").unwrap(); // app.id (64 hex), app.pid (host PID)
//! # let _ = app;
//! // sb.socket_path() is the CRI socket; dropping `sb` removes every pod and stops containerd.
//! ```
//!
//! All methods are blocking and may be called from plain `#[test]`s and from inside a tokio
//! runtime alike: the gRPC work runs on the sandbox's own runtime, driven from a short-lived
//! thread, so it never nests inside the caller's runtime.
//!
//! Requirements (see `scripts/install-test-deps.sh`): root, `containerd`, `runc`, `ctr`,
//! `dpkg-deb`, `tar`, `sha256sum`, and the busybox-static .deb in
//! `/var/cache/runtime-insights/` (falls back to `apt-get download`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use futures::StreamExt as _;

/// The CRI v1 messages and client, the same crate the scanner uses.
pub use cri_api as api;

use api::{NamespaceMode, RuntimeServiceClient};

/// The image every container uses unless its spec names another: busybox-static, with an
/// `/etc/os-release` that says Alpine 3.99.0 and `Cmd ["/bin/sleep", "infinity"]`.
pub const BUSYBOX_IMAGE: &str = "localhost/runtime-insights/busybox:1";
/// containerd's configured sandbox ("pause") image, built locally from the same busybox.
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.6";
/// Where `scripts/install-test-deps.sh` leaves the busybox-static package.
pub const BUSYBOX_DEB_CACHE: &str = "/var/cache/runtime-insights/busybox-static.deb";

pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const REQUIRED_TOOLS: [&str; 6] = ["containerd", "runc", "ctr", "dpkg-deb", "tar", "sha256sum"];

/// Where glibc's loader and libraries live on Debian-like hosts (multiarch and lib64).
const HOST_LIBRARY_DIRS: [&str; 6] = [
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
];

static SANDBOX_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One container of a [`PodSpec`].
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    /// `None`: [`BUSYBOX_IMAGE`].
    pub image: Option<String>,
    /// Overrides the image's entrypoint (empty: keep it).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    pub working_dir: Option<String>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Leave out the kubelet's `io.kubernetes.*` labels, as for a container not created by a
    /// kubelet (e.g. by `crictl` or another CRI client by hand).
    pub without_kubelet_labels: bool,
    /// Capabilities as a pod spec's `securityContext.capabilities` (names without `CAP_`).
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub readonly_rootfs: bool,
    /// The runtime's default seccomp profile (`RuntimeDefault`); else unconfined.
    pub seccomp_runtime_default: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

/// A host path bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub readonly: bool,
}

impl ContainerSpec {
    /// A busybox container running `command` (first element: the program).
    pub fn new(name: &str, command: &[&str]) -> Self {
        ContainerSpec {
            name: name.to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
    pub fn image(mut self, image: &str) -> Self {
        self.image = Some(image.to_owned());
        self
    }
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
    pub fn mount(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: &str,
        readonly: bool,
    ) -> Self {
        self.mounts.push(BindMount {
            host_path: host_path.into(),
            container_path: container_path.to_owned(),
            readonly,
        });
        self
    }
    /// Bind-mount the host's shared-library directories read-only at the same paths, so a
    /// dynamically linked host binary mounted into the busybox container (node, python3, …)
    /// finds its loader and libraries.
    pub fn with_host_libraries(mut self) -> Self {
        for dir in HOST_LIBRARY_DIRS {
            let host = Path::new(dir);
            // /lib64 and /lib are symlinks into /usr on merged-usr hosts: mount the target.
            if let Ok(real) = fs::canonicalize(host) {
                if real.is_dir() && !self.mounts.iter().any(|m| m.container_path == *dir) {
                    self = self.mount(real, dir, true);
                }
            }
        }
        self
    }
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_owned());
        self
    }
    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.run_as_user = Some(uid);
        self
    }
    pub fn run_as_group(mut self, gid: i64) -> Self {
        self.run_as_group = Some(gid);
        self
    }
    pub fn without_kubelet_labels(mut self) -> Self {
        self.without_kubelet_labels = true;
        self
    }
    /// `capabilities: {drop: [..], add: [..]}`.
    pub fn capabilities(mut self, drop: &[&str], add: &[&str]) -> Self {
        self.drop_capabilities = drop.iter().map(|s| s.to_string()).collect();
        self.add_capabilities = add.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn readonly_rootfs(mut self) -> Self {
        self.readonly_rootfs = true;
        self
    }
    pub fn seccomp_runtime_default(mut self) -> Self {
        self.seccomp_runtime_default = true;
        self
    }
    pub fn no_new_privs(mut self) -> Self {
        self.no_new_privs = true;
        self
    }
}

/// A pod: a sandbox (host network, no hostname) and its containers.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerSpec>,
    /// Run one after the other to completion (exit 0) before `containers` start, as the
    /// kubelet runs init containers. A sidecar (restartable init container) is, for the CRI,
    /// just a container started before the app: put it first in `containers`.
    pub init_containers: Vec<ContainerSpec>,
    /// `hostPID: true`: every container in the node's PID namespace.
    pub host_pid: bool,
}

impl PodSpec {
    pub fn new(namespace: &str, name: &str) -> Self {
        PodSpec {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            containers: Vec::new(),
            init_containers: Vec::new(),
            host_pid: false,
        }
    }
    pub fn host_pid(mut self) -> Self {
        self.host_pid = true;
        self
    }
    pub fn container(mut self, container: ContainerSpec) -> Self {
        self.containers.push(container);
        self
    }
    /// An init container: started before the others, which start only once it exited 0.
    pub fn init_container(mut self, container: ContainerSpec) -> Self {
        self.init_containers.push(container);
        self
    }
}

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub name: String,
    /// The runtime's 64-hex container ID.
    pub id: String,
    /// Host PID of the container's first process.
    pub pid: u32,
}

/// An init container that ran to completion (it stays known to the runtime, EXITED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedContainer {
    pub name: String,
    /// The runtime's 64-hex container ID.
    pub id: String,
}

/// A started pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    pub pod_id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<RunningContainer>,
    pub init_containers: Vec<CompletedContainer>,
}

impl RunningPod {
    pub fn container(&self, name: &str) -> Option<&RunningContainer> {
        self.containers.iter().find(|c| c.name == name)
    }
    pub fn init_container(&self, name: &str) -> Option<&CompletedContainer> {
        self.init_containers.iter().find(|c| c.name == name)
    }
}

/// An image to build from directories and import (see [`CriSandbox::import_image`]).
#[derive(Debug, Clone, Default)]
pub struct ImageBuild {
    /// Full reference, e.g. `localhost/test/java:1`.
    pub name: String,
    /// Start from the busybox layer (shell and coreutils in the container).
    pub busybox_base: bool,
    /// Directories whose contents become layers, bottom to top (files owned by root in the image).
    pub layers: Vec<PathBuf>,
    /// `KEY=value` entries; `PATH` defaults to the usual directories when not given.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    /// Image config `User` (e.g. `1001` or `1001:0`).
    pub user: Option<String>,
}

impl ImageBuild {
    /// busybox plus one layer made of `dir`'s contents.
    pub fn busybox_with_layer(name: &str, dir: impl Into<PathBuf>) -> Self {
        ImageBuild {
            name: name.to_owned(),
            busybox_base: true,
            layers: vec![dir.into()],
            cmd: vec!["/bin/sleep".into(), "infinity".into()],
            ..Default::default()
        }
    }
}

/// How a [`CriSandbox::run_job`] container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A started pod sandbox (see `CriSandbox::run_sandbox`).
struct Sandbox {
    uid: String,
    pod_labels: HashMap<String, String>,
    pod_config: api::PodSandboxConfig,
    pod_id: String,
}

/// The streams of a CRI log (`<time> <stream> <P|F> <text>` records; `P` continues a line).
pub fn split_cri_log(log: &str) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    for record in log.lines() {
        let mut parts = record.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let text = parts.next().unwrap_or("");
        let buf = if stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        buf.push_str(text);
        if tag != "P" {
            buf.push('\n');
        }
    }
    (out, err)
}

/// Timings of the last start, for reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimings {
    pub containerd_ready: Duration,
    pub images_imported: Duration,
}

/// A containerd started by this process; see the module documentation.
pub struct CriSandbox {
    dir: PathBuf,
    socket: PathBuf,
    containerd: Option<Child>,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<RuntimeServiceClient>,
    runtime_name: String,
    cgroup_parent: String,
    /// Compressed-free busybox layer (`digest`, `size`, path) reused by [`Self::import_image`].
    busybox_layer: Layer,
    counter: AtomicU64,
    timings: StartTimings,
}

#[derive(Debug, Clone)]
struct Layer {
    digest: String,
    size: u64,
    path: PathBuf,
}

impl CriSandbox {
    /// `Err(reason)` when this machine cannot run the sandbox (not root, tools missing).
    pub fn available() -> std::result::Result<(), String> {
        if !is_root() {
            return Err("needs root (containerd, runc, mounts)".into());
        }
        let missing: Vec<&str> = REQUIRED_TOOLS
            .iter()
            .copied()
            .filter(|t| which(t).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing {} (run scripts/install-test-deps.sh)",
                missing.join(", ")
            ));
        }
        if !Path::new(BUSYBOX_DEB_CACHE).exists() && which("apt-get").is_none() {
            return Err(format!(
                "no {BUSYBOX_DEB_CACHE} and no apt-get to download it"
            ));
        }
        Ok(())
    }

    /// Start a sandbox for `test`, or fail the test with the reason: a test that needs
    /// containerd never passes without it (root and `bash scripts/install-test-deps.sh`).
    pub fn start_for(test: &str) -> CriSandbox {
        if let Err(why) = Self::available() {
            panic!("{test}: containerd sandbox unavailable: {why} (run as root after `bash scripts/install-test-deps.sh`)");
        }
        match Self::start() {
            Ok(sb) => sb,
            Err(e) => panic!("{test}: containerd sandbox failed to start: {e:#}"),
        }
    }

    /// Start containerd in a fresh directory under /tmp and import the busybox and pause images.
    pub fn start() -> Result<CriSandbox> {
        Self::available().map_err(|why| anyhow!("containerd sandbox unavailable: {why}"))?;
        let n = SANDBOX_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short path: unix socket paths must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ri-cri-")
            .tempdir_in("/tmp")
            .context("creating the sandbox directory in /tmp")?
            .keep();
        let tag = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("ri-cri")
            .to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cri-sandbox")
            .enable_all()
            .build()
            .context("building the sandbox's tokio runtime")?;
        let mut sb = CriSandbox {
            socket: dir.join("containerd.sock"),
            dir,
            containerd: None,
            rt: Some(rt),
            client: None,
            runtime_name: String::new(),
            cgroup_parent: format!("/{tag}-{}-{n}", std::process::id()),
            busybox_layer: Layer {
                digest: String::new(),
                size: 0,
                path: PathBuf::new(),
            },
            counter: AtomicU64::new(0),
            timings: StartTimings::default(),
        };
        // On failure `sb` is dropped here, which stops whatever was started.
        sb.boot()?;
        Ok(sb)
    }

    fn boot(&mut self) -> Result<()> {
        let started = Instant::now();
        for sub in ["root", "state", "logs", "pods", "img", "cni/net.d"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }
        let config = self.dir.join("containerd.toml");
        fs::write(&config, self.containerd_config()).context("writing containerd.toml")?;
        let version = self.launch_containerd()?;
        self.runtime_name = version.runtime_name;
        self.timings.containerd_ready = started.elapsed();

        let img = Instant::now();
        self.busybox_layer = self.build_busybox_layer()?;
        let busybox = ImageBuild {
            name: BUSYBOX_IMAGE.into(),
            busybox_base: true,
            cmd: vec!["/bin/sleep".into(), "infinity".into()],
            ..Default::default()
        };
        let pause = ImageBuild {
            name: PAUSE_IMAGE.into(),
            busybox_base: true,
            entrypoint: vec!["/bin/sleep".into(), "infinity".into()],
            ..Default::default()
        };
        self.import_images(&[busybox, pause])?;
        self.timings.images_imported = img.elapsed();
        Ok(())
    }

    /// Spawn containerd and wait until its CRI plugin answers `Version`.
    fn launch_containerd(&mut self) -> Result<api::VersionResponse> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning containerd")?;
        self.containerd = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let socket = self.socket_str()?.to_owned();
        loop {
            if let Some(child) = self.containerd.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "containerd exited during startup ({status}); log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if self.socket.exists() {
                let sock = socket.clone();
                let attempt = self.block(async move {
                    let mut c =
                        api::connect_unix(&sock, Duration::from_secs(2), CALL_TIMEOUT).await?;
                    let v = c
                        .version(api::VersionRequest {
                            version: "v1".into(),
                        })
                        .await?;
                    Ok::<_, anyhow::Error>((c, v))
                })?;
                if let Ok((client, version)) = attempt {
                    self.client = Some(client);
                    return Ok(version);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not serve CRI on {} within {STARTUP_TIMEOUT:?}; log:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM our containerd (by PID), SIGKILL after a grace period, and reap it.
    fn stop_containerd(&mut self) {
        if let Some(mut child) = self.containerd.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Stop containerd and start it again on the same state and socket, as a node's runtime
    /// restart does. Running containers survive (their shims outlive containerd); CRI clients
    /// connected before must cope with the socket going away and coming back.
    pub fn restart_runtime(&mut self) -> Result<()> {
        self.stop_runtime();
        self.start_runtime()
    }

    /// Stop containerd only (containers keep running); [`Self::start_runtime`] brings it back.
    /// Meanwhile the socket answers nothing, as during a node's runtime restart.
    pub fn stop_runtime(&mut self) {
        self.client = None;
        self.stop_containerd();
    }

    /// Start containerd again after [`Self::stop_runtime`].
    pub fn start_runtime(&mut self) -> Result<()> {
        if self.containerd.is_some() {
            bail!("containerd is already running");
        }
        self.launch_containerd()?;
        Ok(())
    }

    fn containerd_config(&self) -> String {
        let d = self.dir.display();
        // restrict_oom_score_adj: without CAP_SYS_RESOURCE in this environment runc cannot set
        // the sandbox's oom_score_adj -998. CNI dirs point into the sandbox: pods use host
        // network, so no CNI plugin is needed.
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = []
[grpc]
  address = "{d}/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc-root"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
"#
        )
    }

    /// The CRI socket (a plain path; the URI form is `unix://<path>`).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `containerd`, as the runtime reports it in `Version`.
    pub fn runtime_name(&self) -> &str {
        &self.runtime_name
    }

    /// `<runtime>://<id>`: a container ID as Kubernetes writes it in
    /// `containerStatuses[].containerID`, and as the extractor keys its answers.
    pub fn kube_id(&self, id: &str) -> String {
        format!("{}://{id}", self.runtime_name)
    }

    /// `pods` pods `pod-<n>` spread over `namespaces` namespaces `ns-<n % namespaces>`, each
    /// with two busybox `sleep` containers `a` and `b` (the node filler of the load tests and
    /// benchmarks); their containers' [`kube_id`](Self::kube_id)s, in order.
    pub fn run_sleeper_pods(&self, pods: usize, namespaces: usize) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(pods * 2);
        for p in 0..pods {
            let pod = self.run_pod(
                &PodSpec::new(
                    &format!("ns-{}", p % namespaces.max(1)),
                    &format!("pod-{p}"),
                )
                .container(ContainerSpec::new("a", &["/bin/sleep", "3600"]))
                .container(ContainerSpec::new("b", &["/bin/sleep", "3601"])),
            )?;
            ids.extend(pod.containers.iter().map(|c| self.kube_id(&c.id)));
        }
        Ok(ids)
    }

    /// The sandbox's directory (containerd state, logs, image build files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long containerd took to serve CRI, and the base images to import.
    pub fn timings(&self) -> StartTimings {
        self.timings
    }

    /// PID of the containerd process this sandbox started.
    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(Child::id)
    }

    /// Build an image from `build` and import it under `build.name`; returns the name.
    pub fn import_image(&self, build: &ImageBuild) -> Result<String> {
        self.import_images(std::slice::from_ref(build))?;
        Ok(build.name.clone())
    }

    /// Run a pod: sandbox, then each container created and started in order. The kubelet's
    /// labels go on the sandbox and on every container (unless a container opts out).
    /// The pod sandbox of `spec`, running, with no containers yet.
    fn run_sandbox(&self, spec: &PodSpec) -> Result<Sandbox> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{}-{}-{n}", spec.name, std::process::id());
        let log_dir = self.dir.join("pods").join(&uid);
        fs::create_dir_all(&log_dir)?;
        let pod_labels = HashMap::from([
            (LABEL_NAMESPACE.to_owned(), spec.namespace.clone()),
            (LABEL_POD_NAME.to_owned(), spec.name.clone()),
            (LABEL_POD_UID.to_owned(), uid.clone()),
        ]);
        let pod_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: 0,
            }),
            // hostname stays empty: containerd refuses one with host network.
            log_directory: path_str(&log_dir)?.to_owned(),
            labels: pod_labels.clone(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: pid_mode(spec.host_pid),
                        ipc: NamespaceMode::Pod as i32,
                        target_id: String::new(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };

        let mut client = self.client()?;
        let request = api::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        };
        let pod_id = self
            .block(async move { client.run_pod_sandbox(request).await })?
            .with_context(|| format!("RunPodSandbox {}/{}", spec.namespace, spec.name))?
            .pod_sandbox_id;
        Ok(Sandbox {
            uid,
            pod_labels,
            pod_config,
            pod_id,
        })
    }

    /// Run a pod of one container to completion, whatever its exit code, and remove it:
    /// its exit code and what it wrote to stdout and stderr (at most `timeout`).
    pub fn run_job(&self, spec: &PodSpec, timeout: Duration) -> Result<JobOutcome> {
        let [c] = spec.containers.as_slice() else {
            bail!("run_job takes a pod of exactly one container");
        };
        let Sandbox {
            uid,
            pod_labels,
            pod_config,
            pod_id,
        } = self.run_sandbox(spec)?;
        let config = container_config(c, &pod_labels, spec.host_pid)?;
        let mut client = self.client()?;
        let (pod, sandbox_config) = (pod_id.clone(), pod_config.clone());
        let name = c.name.clone();
        let outcome = self.block(async move {
            let id = create_and_start(&mut client, pod, sandbox_config, config)
                .await
                .with_context(|| format!("job container {name}"))?;
            exit_code(&mut client, &id, timeout).await
        })?;
        let log = fs::read_to_string(
            self.dir
                .join("pods")
                .join(&uid)
                .join(format!("{}.log", c.name)),
        )
        .unwrap_or_default();
        let removed = self.stop_pod(&pod_id);
        let exit_code = outcome?;
        removed?;
        let (stdout, stderr) = split_cri_log(&log);
        Ok(JobOutcome {
            exit_code,
            stdout,
            stderr,
        })
    }

    pub fn run_pod(&self, spec: &PodSpec) -> Result<RunningPod> {
        let Sandbox {
            uid,
            pod_labels,
            pod_config,
            pod_id,
        } = self.run_sandbox(spec)?;

        let mut init_containers = Vec::new();
        for c in &spec.init_containers {
            let config = container_config(c, &pod_labels, spec.host_pid)?;
            let mut client = self.client()?;
            let (pod, sandbox_config) = (pod_id.clone(), pod_config.clone());
            let name = c.name.clone();
            let done = self.block(async move {
                let id = create_and_start(&mut client, pod, sandbox_config, config)
                    .await
                    .with_context(|| format!("init container {name}"))?;
                wait_for_exit(&mut client, &id)
                    .await
                    .with_context(|| format!("init container {name}"))?;
                Ok::<_, anyhow::Error>(CompletedContainer { name, id })
            })??;
            init_containers.push(done);
        }

        let mut containers = Vec::new();
        for c in &spec.containers {
            let config = container_config(c, &pod_labels, spec.host_pid)?;
            let mut client = self.client()?;
            let (pod, sandbox_config) = (pod_id.clone(), pod_config.clone());
            let name = c.name.clone();
            let started = self.block(async move {
                let id = create_and_start(&mut client, pod, sandbox_config, config)
                    .await
                    .with_context(|| format!("container {name}"))?;
                let pid = wait_for_pid(&mut client, &id).await?;
                Ok::<_, anyhow::Error>(RunningContainer { name, id, pid })
            })??;
            containers.push(started);
        }
        Ok(RunningPod {
            pod_id,
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            uid,
            containers,
            init_containers,
        })
    }

    /// The CRI log file of a container of a pod started by [`Self::run_pod`].
    pub fn container_log_path(&self, pod: &RunningPod, container: &str) -> PathBuf {
        self.dir
            .join("pods")
            .join(&pod.uid)
            .join(format!("{container}.log"))
    }

    /// What a container wrote to stdout and stderr so far (the CRI log file, one
    /// `<time> <stream> <tag> <line>` record per line), for failure messages.
    pub fn container_log(&self, pod: &RunningPod, container: &str) -> String {
        // The pod's log directory and the container's log path, as `run_pod` configures them.
        let path = self
            .dir
            .join("pods")
            .join(&pod.uid)
            .join(format!("{container}.log"));
        fs::read_to_string(&path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
    }

    /// Stop one container (it stays known to the runtime, in state EXITED).
    pub fn stop_container(&self, container_id: &str) -> Result<()> {
        let mut client = self.client()?;
        let id = container_id.to_owned();
        self.block(async move {
            client
                .stop_container(api::StopContainerRequest {
                    container_id: id,
                    timeout: 0,
                })
                .await
        })?
        .with_context(|| format!("StopContainer {container_id}"))?;
        Ok(())
    }

    /// Stop and remove a pod and its containers.
    pub fn stop_pod(&self, pod_id: &str) -> Result<()> {
        let client = self.client()?;
        let id = pod_id.to_owned();
        self.block(remove_pod(client, id))?
    }

    /// Run `fut` to completion on the sandbox's runtime, from a helper thread, so this works
    /// whether or not the caller is itself inside a tokio runtime.
    fn block<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let handle = self
            .rt
            .as_ref()
            .ok_or_else(|| anyhow!("sandbox runtime already shut down"))?
            .handle()
            .clone();
        std::thread::scope(|s| match s.spawn(move || handle.block_on(fut)).join() {
            Ok(out) => Ok(out),
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    fn client(&self) -> Result<RuntimeServiceClient> {
        self.client
            .clone()
            .ok_or_else(|| anyhow!("sandbox is not connected to containerd"))
    }

    fn socket_str(&self) -> Result<&str> {
        path_str(&self.socket)
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("logs/containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    // -----------------------------------------------------------------------------------------
    // Images

    fn build_busybox_layer(&self) -> Result<Layer> {
        let img = self.dir.join("img");
        let deb = busybox_deb(&img)?;
        let rootfs = img.join("busybox-rootfs");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&rootfs))?;
        let _ = fs::remove_dir_all(rootfs.join("usr/share"));
        for d in [
            "etc", "proc", "sys", "dev", "tmp", "root", "run", "var/www", "usr/bin", "usr/sbin",
            "sbin",
        ] {
            fs::create_dir_all(rootfs.join(d))?;
        }
        let busybox = rootfs.join("bin/busybox");
        let list = Command::new(&busybox)
            .arg("--list")
            .output()
            .with_context(|| format!("running {} --list", busybox.display()))?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let link = rootfs.join("bin").join(applet);
            if !applet.is_empty() && !applet.contains('/') && fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink("busybox", &link)?;
            }
        }
        fs::write(
            rootfs.join("etc/os-release"),
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.99.0\n\
             PRETTY_NAME=\"Alpine Linux v3.99 (runtime-insights test image)\"\n",
        )?;
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )?;
        fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
        fs::write(
            rootfs.join("var/www/index.html"),
            "hello from runtime-insights\n",
        )?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        self.layer_from_dir(&rootfs)
    }

    /// An uncompressed, reproducible layer tar of `dir` stored as a blob (digest == diff_id).
    fn layer_from_dir(&self, dir: &Path) -> Result<Layer> {
        if !dir.is_dir() {
            bail!("image layer source {} is not a directory", dir.display());
        }
        let blobs = self.dir.join("img/oci/blobs/sha256");
        fs::create_dir_all(&blobs)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("img/layer-{n}.tar"));
        run(Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=2024-01-01 00:00:00",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
            ])
            .arg("-C")
            .arg(dir)
            .args(["-cf"])
            .arg(&tmp)
            .arg("."))?;
        let digest = sha256_file(&tmp)?;
        let path = blobs.join(&digest);
        fs::rename(&tmp, &path)?;
        let size = fs::metadata(&path)?.len();
        Ok(Layer { digest, size, path })
    }

    fn import_images(&self, builds: &[ImageBuild]) -> Result<()> {
        let oci = self.dir.join("img/oci");
        let blobs = oci.join("blobs/sha256");
        fs::create_dir_all(&blobs)?;
        // Only the blobs of these images go in the archive: one tar per import.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let stage = self.dir.join(format!("img/import-{n}"));
        let stage_blobs = stage.join("blobs/sha256");
        fs::create_dir_all(&stage_blobs)?;
        let mut manifests = Vec::new();
        for build in builds {
            let mut layers = Vec::new();
            if build.busybox_base {
                layers.push(self.busybox_layer.clone());
            }
            for dir in &build.layers {
                layers.push(self.layer_from_dir(dir)?);
            }
            if layers.is_empty() {
                bail!(
                    "image {} has no layers (set busybox_base or layers)",
                    build.name
                );
            }
            for l in &layers {
                link_or_copy(&l.path, &stage_blobs.join(&l.digest))?;
            }
            let mut env = build.env.clone();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.insert(
                    0,
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                );
            }
            let mut config = serde_json::json!({
                "Env": env,
                "WorkingDir": build.working_dir.clone().unwrap_or_else(|| "/".into()),
            });
            if !build.entrypoint.is_empty() {
                config["Entrypoint"] = serde_json::json!(build.entrypoint);
            }
            if !build.cmd.is_empty() {
                config["Cmd"] = serde_json::json!(build.cmd);
            }
            if let Some(user) = &build.user {
                config["User"] = serde_json::json!(user);
            }
            let image_config = serde_json::json!({
                "architecture": oci_arch(),
                "os": "linux",
                "created": "2024-01-01T00:00:00Z",
                "config": config,
                "rootfs": {
                    "type": "layers",
                    "diff_ids": layers.iter().map(|l| format!("sha256:{}", l.digest)).collect::<Vec<_>>(),
                },
            });
            let (config_digest, config_size) =
                write_blob(&stage_blobs, &serde_json::to_vec(&image_config)?)?;
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"),
                    "size": config_size,
                },
                "layers": layers.iter().map(|l| serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", l.digest),
                    "size": l.size,
                })).collect::<Vec<_>>(),
            });
            let (manifest_digest, manifest_size) =
                write_blob(&stage_blobs, &serde_json::to_vec(&manifest)?)?;
            manifests.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest_size,
                "platform": {"architecture": oci_arch(), "os": "linux"},
                "annotations": {"io.containerd.image.name": build.name},
            }));
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
        fs::write(stage.join("index.json"), serde_json::to_vec(&index)?)?;
        fs::write(
            stage.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let archive = self.dir.join(format!("img/import-{n}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&stage)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"]))?;
        run(Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&archive))
        .with_context(|| {
            let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
            format!("importing {}", names.join(", "))
        })?;
        let _ = fs::remove_dir_all(&stage);
        let _ = fs::remove_file(&archive);
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Teardown

    fn teardown(&mut self) {
        // 1. Every pod of this containerd (tracked or not) stopped and removed while containerd
        //    still runs, so runc shims exit and container processes die.
        if let (Some(client), Some(_)) = (self.client.take(), self.rt.as_ref()) {
            let result = self.block(async move {
                let mut c = client.clone();
                let pods = c
                    .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                    .await?;
                // Several at once: each stop waits on runc and the shim (~0.5 s per pod).
                let errors: Vec<String> = futures::stream::iter(pods.items)
                    .map(|p| {
                        let client = client.clone();
                        async move {
                            remove_pod(client, p.id.clone())
                                .await
                                .err()
                                .map(|e| format!("{}: {e:#}", p.id))
                        }
                    })
                    .buffer_unordered(8)
                    .filter_map(std::future::ready)
                    .collect()
                    .await;
                Ok::<_, anyhow::Error>(errors)
            });
            match result {
                Ok(Ok(errors)) if errors.is_empty() => {}
                Ok(Ok(errors)) => eprintln!("cri_sandbox: removing pods: {}", errors.join("; ")),
                Ok(Err(e)) | Err(e) => eprintln!("cri_sandbox: listing pods for removal: {e:#}"),
            }
        }
        // The runtime may live inside a caller's async context: never block on its shutdown.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        // 2. Our containerd, by PID: SIGTERM, then SIGKILL after a grace period.
        self.stop_containerd();
        // 2b. Last resort when pod removal failed: processes still in our cgroup parent, and
        //     shims started for our socket, are ours; kill them by PID so nothing leaks.
        self.kill_leftovers();
        // 3. Mounts left under our directory (overlay snapshots, shm), deepest first.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = format!("{}/", self.dir.display());
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        // 4. Our cgroup parent and anything left below it, deepest first.
        for root in self.cgroup_dirs() {
            let mut dirs = Vec::new();
            collect_dirs(&root, &mut dirs, 0);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
            for d in dirs {
                let _ = fs::remove_dir(d);
            }
        }
        // 5. The directory itself.
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("cri_sandbox: removing {}: {e}", self.dir.display());
        }
    }
}

impl CriSandbox {
    /// Our cgroup parent under each hierarchy (v1: one per controller; v2: the unified one).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let rel = self.cgroup_parent.trim_start_matches('/');
        if rel.is_empty() {
            return Vec::new();
        }
        let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(rel)];
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
        }
        dirs.retain(|d| d.is_dir());
        dirs
    }

    fn kill_leftovers(&self) {
        let mut pids = std::collections::BTreeSet::new();
        for root in self.cgroup_dirs() {
            let mut dirs = Vec::new();
            collect_dirs(&root, &mut dirs, 0);
            for d in dirs {
                let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        let socket = self.socket.display().to_string();
        if let Ok(entries) = fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let mut cmdline = Vec::new();
                let read = fs::File::open(e.path().join("cmdline"))
                    .and_then(|f| f.take(8192).read_to_end(&mut cmdline));
                if read.is_err() {
                    continue;
                }
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_shim = args
                    .first()
                    .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
                if is_shim && args.contains(&socket.as_bytes()) {
                    pids.insert(pid);
                }
            }
        }
        pids.remove(&std::process::id());
        if pids.is_empty() {
            return;
        }
        eprintln!(
            "cri_sandbox: killing leftover processes of {}: {pids:?}",
            self.dir.display()
        );
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `dir` and its subdirectories (bounded depth: cgroup trees are shallow).
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 || !dir.is_dir() {
        return;
    }
    out.push(dir.to_owned());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out, depth + 1);
            }
        }
    }
}

impl Drop for CriSandbox {
    fn drop(&mut self) {
        self.teardown();
    }
}

async fn remove_pod(mut client: RuntimeServiceClient, pod_id: String) -> Result<()> {
    client
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .with_context(|| format!("StopPodSandbox {pod_id}"))?;
    client
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .with_context(|| format!("RemovePodSandbox {pod_id}"))?;
    Ok(())
}

/// CreateContainer then StartContainer, as the kubelet does; returns the container ID.
async fn create_and_start(
    client: &mut RuntimeServiceClient,
    pod_sandbox_id: String,
    sandbox_config: api::PodSandboxConfig,
    config: api::ContainerConfig,
) -> Result<String> {
    let id = client
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id,
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .context("CreateContainer")?
        .container_id;
    client
        .start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .with_context(|| format!("StartContainer {id}"))?;
    Ok(id)
}

/// Wait until an init container has exited; an exit code other than 0 is an error (the
/// kubelet would not start the pod's other containers).
async fn wait_for_exit(client: &mut RuntimeServiceClient, id: &str) -> Result<()> {
    match exit_code(client, id, CALL_TIMEOUT).await? {
        0 => Ok(()),
        code => bail!("exited with code {code}"),
    }
}

/// Wait (at most `timeout`) until the container has exited; its exit code.
async fn exit_code(client: &mut RuntimeServiceClient, id: &str, timeout: Duration) -> Result<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = client
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .with_context(|| format!("ContainerStatus {id}"))?
            .status
            .ok_or_else(|| anyhow!("ContainerStatus {id}: no status"))?;
        if status.state == api::ContainerState::ContainerExited as i32 {
            return Ok(status.exit_code);
        }
        if Instant::now() > deadline {
            bail!("still running after {timeout:?} (state {})", status.state);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host PID of a just-started container (the runtime may need a moment to report it).
async fn wait_for_pid(client: &mut RuntimeServiceClient, id: &str) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .with_context(|| format!("ContainerStatus {id}"))?;
        let info = status.info.get("info").map(String::as_str).unwrap_or("{}");
        let pid = serde_json::from_str::<serde_json::Value>(info)
            .ok()
            .and_then(|v| v["pid"].as_u64())
            .unwrap_or(0);
        if pid > 0 {
            return u32::try_from(pid).with_context(|| format!("container {id} pid {pid}"));
        }
        let state = status.status.map(|s| s.state).unwrap_or(-1);
        if state == api::ContainerState::ContainerExited as i32 {
            bail!("container {id} exited right after start");
        }
        if Instant::now() > deadline {
            bail!("container {id} reported no PID within 10s (state {state})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_mode(host_pid: bool) -> i32 {
    if host_pid {
        NamespaceMode::Node as i32
    } else {
        NamespaceMode::Container as i32
    }
}

fn container_config(
    c: &ContainerSpec,
    pod_labels: &HashMap<String, String>,
    host_pid: bool,
) -> Result<api::ContainerConfig> {
    let mut labels = HashMap::new();
    if !c.without_kubelet_labels {
        labels.clone_from(pod_labels);
        labels.insert(LABEL_CONTAINER_NAME.to_owned(), c.name.clone());
    }
    let mounts = c
        .mounts
        .iter()
        .map(|m| {
            if !m.host_path.exists() {
                bail!("bind mount source {} does not exist", m.host_path.display());
            }
            Ok(api::Mount {
                container_path: m.container_path.clone(),
                host_path: path_str(&m.host_path)?.to_owned(),
                readonly: m.readonly,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: c.image.clone().unwrap_or_else(|| BUSYBOX_IMAGE.to_owned()),
            ..Default::default()
        }),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: c
            .env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts,
        labels,
        log_path: format!("{}.log", c.name),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: pid_mode(host_pid),
                    ipc: NamespaceMode::Pod as i32,
                    target_id: String::new(),
                }),
                run_as_user: c.run_as_user.map(|value| api::Int64Value { value }),
                run_as_group: c.run_as_group.map(|value| api::Int64Value { value }),
                capabilities: (!c.add_capabilities.is_empty() || !c.drop_capabilities.is_empty())
                    .then(|| api::Capability {
                        add_capabilities: c.add_capabilities.clone(),
                        drop_capabilities: c.drop_capabilities.clone(),
                        add_ambient_capabilities: Vec::new(),
                    }),
                readonly_rootfs: c.readonly_rootfs,
                no_new_privs: c.no_new_privs,
                seccomp: c.seccomp_runtime_default.then(|| api::SecurityProfile {
                    profile_type: api::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// The busybox-static .deb: the cached one, else downloaded into `dir`.
fn busybox_deb(dir: &Path) -> Result<PathBuf> {
    let cached = Path::new(BUSYBOX_DEB_CACHE);
    if cached.is_file() {
        return Ok(cached.to_owned());
    }
    let out = Command::new("apt-get")
        .args(["download", "-qq", "busybox-static"])
        .current_dir(dir)
        .output()
        .context("running apt-get download busybox-static")?;
    let found = fs::read_dir(dir)?.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("busybox-static_") && n.ends_with(".deb"))
    });
    found.ok_or_else(|| {
        anyhow!(
            "no {BUSYBOX_DEB_CACHE} and apt-get download busybox-static failed: {} \
             (run scripts/install-test-deps.sh)",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn write_blob(blobs: &Path, data: &[u8]) -> Result<(String, u64)> {
    let tmp = blobs.join(format!(".tmp-{}", std::process::id()));
    fs::write(&tmp, data)?;
    let digest = sha256_file(&tmp)?;
    fs::rename(&tmp, blobs.join(&digest))?;
    Ok((digest, data.len() as u64))
}

fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!(
            "sha256sum {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text.split_whitespace().next().unwrap_or_default();
    if digest.len() != 64 {
        bail!("sha256sum printed {text:?}");
    }
    Ok(digest.to_owned())
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Ok(());
    }
    fs::hard_link(from, to)
        .or_else(|_| fs::copy(from, to).map(|_| ()))
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        let mut msg = String::new();
        let _ = write!(msg, "{cmd:?} failed ({})", out.status);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            let _ = write!(msg, ": {}", stderr.trim());
        }
        bail!(msg);
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // Effective UID from /proc (no libc dependency in the test kit).
    let mut status = String::new();
    let ok = fs::File::open("/proc/self/status")
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut status))
        .is_ok();
    ok && status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in(pid: u32, path: &str) -> String {
        fs::read_to_string(format!("/proc/{pid}/root{path}"))
            .unwrap_or_else(|e| panic!("{path} in {pid}: {e}"))
    }

    /// Wait for a file the container writes (its command runs asynchronously to us).
    fn wait_for_file(pid: u32, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/root{path}")) {
                if text.ends_with('\n') {
                    return text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{path} never written in container {pid}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn bind_mounts_env_user_and_labels_reach_the_container() {
        let sb = CriSandbox::start_for("bind_mounts_env_user_and_labels_reach_the_container");
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("data.txt"), "from the host\n").unwrap();
        // /tmp/result is written last: once the test sees it, the other writes are done.
        let script = "echo probe > /ro/new 2>/dev/null; r=$?; echo ok > /rw/written; \
                      echo \"ro=$r\" > /tmp/result; exec /bin/sleep 3700";
        let pod = sb
            .run_pod(
                &PodSpec::new("ns-a", "pod-a").container(
                    ContainerSpec::new("c", &["/bin/sh", "-c", script])
                        .env("GREETING", "hello")
                        .mount(host.path(), "/ro", true)
                        .mount(host.path(), "/rw", false)
                        .run_as_user(0),
                ),
            )
            .unwrap();
        let c = pod.container("c").unwrap();
        assert_eq!(c.id.len(), 64);
        assert_eq!(
            wait_for_file(c.pid, "/tmp/result"),
            "ro=1\n",
            "write to a read-only mount succeeded"
        );
        assert_eq!(read_in(c.pid, "/ro/data.txt"), "from the host\n");
        assert_eq!(
            fs::read_to_string(host.path().join("written")).unwrap(),
            "ok\n"
        );
        let environ = fs::read(format!("/proc/{}/environ", c.pid)).unwrap();
        assert!(String::from_utf8_lossy(&environ)
            .split('\0')
            .any(|kv| kv == "GREETING=hello"));
        assert!(read_in(c.pid, "/etc/os-release").contains("ID=alpine"));
        // A PID namespace per container: the command is PID 1 inside it.
        let status = fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
        assert!(!sb.runtime_name().is_empty());
        sb.stop_pod(&pod.pod_id).unwrap();
        assert!(
            !Path::new(&format!("/proc/{}", c.pid)).exists(),
            "container process survived stop_pod"
        );
    }

    #[test]
    fn images_with_extra_layers_and_host_binaries() {
        let sb = CriSandbox::start_for("images_with_extra_layers_and_host_binaries");
        let layer = tempfile::tempdir().unwrap();
        fs::create_dir_all(layer.path().join("app")).unwrap();
        fs::write(layer.path().join("app/hello.txt"), "layer content\n").unwrap();
        let mut build = ImageBuild::busybox_with_layer("localhost/ri-test/layered:1", layer.path());
        build.env.push("APP_HOME=/app".into());
        build.working_dir = Some("/app".into());
        let image = sb.import_image(&build).unwrap();

        // No command: the image's Cmd (sleep infinity) runs, from the image's WorkingDir.
        let mut spec = PodSpec::new("ns-b", "pod-b").container(ContainerSpec {
            name: "layered".into(),
            image: Some(image),
            ..Default::default()
        });
        let node = Path::new("/usr/bin/node");
        if node.exists() {
            spec = spec.container(
                ContainerSpec::new(
                    "node",
                    &["/usr/bin/node", "-e", "setInterval(() => {}, 1e6)"],
                )
                .mount(node, "/usr/bin/node", true)
                .with_host_libraries(),
            );
        }
        let pod = sb.run_pod(&spec).unwrap();
        let layered = pod.container("layered").unwrap();
        assert_eq!(read_in(layered.pid, "/app/hello.txt"), "layer content\n");
        assert!(
            read_in(layered.pid, "/etc/os-release").contains("ID=alpine"),
            "busybox base missing"
        );
        let cwd = fs::read_link(format!("/proc/{}/cwd", layered.pid)).unwrap();
        assert_eq!(cwd, Path::new("/app"));
        let environ =
            String::from_utf8_lossy(&fs::read(format!("/proc/{}/environ", layered.pid)).unwrap())
                .into_owned();
        assert!(
            environ.split('\0').any(|kv| kv == "APP_HOME=/app"),
            "{environ}"
        );
        if let Some(n) = pod.container("node") {
            // Still running a moment later: the host's node found its libraries.
            std::thread::sleep(Duration::from_millis(300));
            let cmdline = fs::read(format!("/proc/{}/cmdline", n.pid)).unwrap();
            assert!(
                cmdline.starts_with(b"/usr/bin/node\0-e"),
                "{}",
                String::from_utf8_lossy(&cmdline)
            );
        } else {
            eprintln!("note: /usr/bin/node absent on the host; host-binary mount not exercised");
        }
    }

    #[test]
    fn bind_mount_of_a_missing_path_is_a_clear_error() {
        let sb = CriSandbox::start_for("bind_mount_of_a_missing_path_is_a_clear_error");
        let err = sb
            .run_pod(&PodSpec::new("ns", "p").container(
                ContainerSpec::new("c", &["/bin/true"]).mount("/nonexistent/ri", "/x", true),
            ))
            .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/ri"), "{err:#}");
    }

    #[test]
    fn init_containers_complete_before_the_others_start() {
        let sb = CriSandbox::start_for("init_containers_complete_before_the_others_start");
        let shared = tempfile::tempdir().unwrap();
        // The init container sleeps first: the app sees its file only if it waited.
        let pod = sb
            .run_pod(
                &PodSpec::new("ns", "with-init")
                    .init_container(
                        ContainerSpec::new(
                            "init",
                            &["/bin/sh", "-c", "sleep 0.3; echo done > /shared/init"],
                        )
                        .mount(shared.path(), "/shared", false),
                    )
                    .container(
                        ContainerSpec::new(
                            "app",
                            &[
                                "/bin/sh",
                                "-c",
                                "cat /shared/init > /tmp/seen; exec sleep 3600",
                            ],
                        )
                        .mount(shared.path(), "/shared", false),
                    ),
            )
            .unwrap();
        let init = pod.init_container("init").unwrap();
        assert_eq!(init.id.len(), 64);
        assert!(pod.container("init").is_none());
        let app = pod.container("app").unwrap();
        assert_eq!(wait_for_file(app.pid, "/tmp/seen"), "done\n");

        let err = sb
            .run_pod(
                &PodSpec::new("ns", "failing-init")
                    .init_container(ContainerSpec::new("init", &["/bin/sh", "-c", "exit 3"]))
                    .container(ContainerSpec::new("app", &["/bin/sleep", "3600"])),
            )
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("init container init: exited with code 3"),
            "{msg}"
        );
    }
    /// Alive and not a zombie (a killed process whose parent died lingers as one until reaped).
    fn alive(pid: u32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().to_owned())
            })
            .is_some_and(|rest| !rest.starts_with('Z'))
    }

    #[test]
    fn dropping_with_the_runtime_down_still_kills_containers_and_shims() {
        let mut sb = CriSandbox::start_for(
            "dropping_with_the_runtime_down_still_kills_containers_and_shims",
        );
        let pod = sb
            .run_pod(
                &PodSpec::new("ns", "orphan")
                    .container(ContainerSpec::new("c", &["/bin/sleep", "3661"])),
            )
            .unwrap();
        let pid = pod.containers[0].pid;
        let socket = sb.socket_path().display().to_string();
        let shims = || -> Vec<u32> {
            fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| {
                    let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                    let cmd = fs::read(e.path().join("cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd).into_owned();
                    (cmd.contains("containerd-shim") && cmd.contains(&socket) && alive(pid))
                        .then_some(pid)
                })
                .collect()
        };
        assert!(!shims().is_empty(), "no shim found for {socket}");
        // Containers outlive their runtime: pod removal through the CRI is impossible now.
        sb.stop_runtime();
        assert!(alive(pid));
        drop(sb);
        assert!(!alive(pid), "container process {pid} leaked");
        assert!(shims().is_empty(), "shims leaked: {:?}", shims());
    }
}

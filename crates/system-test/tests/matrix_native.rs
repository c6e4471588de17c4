//! The end-to-end runtime matrix, native half: OS-only images, Node.js, Python, Go, a
//! GraalVM-style native executable, multi-process containers and a pod with init and sidecar
//! containers, all as real pods on a real containerd, then one `runtime-extractor scan` of the
//! node and an exact expected answer per container (the reference's e2e tables,
//! `../shared/spec/upstream-behaviour.md` §4.2, where we differ only as docs/fingerprints.md
//! says). Every image has its own os-release; runtimes are the machine's Debian packages,
//! bind-mounted read-only; versions are read from the installed packages and toolchains.
//!
//! Needs root, containerd, node, python3, go and gcc (scripts/install-test-deps.sh); skips
//! loudly otherwise and fails under CI=true.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_cases, expected, scan_node, wait_for_descendant, write_files, Case};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, ImageBuild, PodSpec, RunningPod};
use testkit::rootfs::{require, which};
use testkit::workloads;

const NS: &str = "e2e-native";
const IMAGE_PREFIX: &str = "localhost/ri-matrix-native";

const RHEL_9_4: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="9.4 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"
REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
"#;

const RHEL_8_10: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="8.10 (Ootpa)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="8.10"
PLATFORM_ID="platform:el8"
PRETTY_NAME="Red Hat Enterprise Linux 8.10 (Ootpa)"
"#;

const RHEL_8_9: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="8.9 (Ootpa)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="8.9"
PRETTY_NAME="Red Hat Enterprise Linux 8.9 (Ootpa)"
"#;

/// Ubuntu ships it in /usr/lib, with /etc/os-release a relative symlink to it.
const UBUNTU_24_04: &str = r#"PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"#;

/// Quoted values, a comment and blank lines; single quotes are our documented extension
/// (the reference strips only double quotes).
const ALPINE_QUOTED: &str = "# written by hand\n\nNAME=\"Alpine Linux\"\nID=\"alpine\"\n\
                             VERSION_ID='3.21.4'\nPRETTY_NAME=\"Alpine Linux v3.21\"\n";

const ALPINE_3_22: &str =
    "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.22.1\nPRETTY_NAME=\"Alpine Linux v3.22\"\n";

const DEBIAN_12: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"#;

const DEBIAN_13: &str = r#"PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
ID=debian
"#;

/// What distroless's static image says.
const DISTROLESS_12: &str = r#"PRETTY_NAME="Distroless"
NAME="Debian GNU/Linux"
ID="debian"
VERSION_ID="12"
VERSION="Debian GNU/Linux 12 (bookworm)"
HOME_URL="https://github.com/GoogleContainerTools/distroless"
"#;

const CENTOS_7: &str = r#"NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
PRETTY_NAME="CentOS Linux 7 (Core)"
"#;

/// A supervisord stand-in written in Python, as the real one is: starts a Node.js program,
/// then a Python worker, and waits for both.
const SUPERVISORD: &str = r#"#!/usr/bin/python3
import subprocess, time
node = subprocess.Popen(["/usr/local/bin/node", "-e", "setInterval(() => {}, 1 << 30)"])
time.sleep(0.3)
worker = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(1e6)"])
node.wait()
worker.wait()
"#;

/// A dumb-init/tini stand-in: runs its arguments as a child and waits for it.
const DUMB_INIT_C: &str = r#"#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) { execv(argv[1], argv + 1); _exit(127); }
    for (;;) {
        int status;
        pid_t p = wait(&status);
        if (p == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (p < 0) return 1;
    }
}
"#;

const NODE_IDLE: &str = "setInterval(() => {}, 1 << 30)";
/// Node 24 names its main thread `MainThread` (so `comm` is that); Node 20 does not, but any
/// thread may rename its thread group's leader through /proc/self/comm, which gives exactly
/// Node 24's shape: comm `MainThread` on a Node executable.
const NODE_MAIN_THREAD: &str =
    "require('fs').writeFileSync('/proc/self/comm', 'MainThread'); setInterval(() => {}, 1 << 30)";
const PY_IDLE: &str = "import time; time.sleep(1e6)";

/// GraalVM's VM identity string, as Mandrel 23.1 writes it into a native image.
const MANDREL_VM: &str = "com.oracle.svm.core.VM=GraalVM 23.1.4.0-Final Java 21 Mandrel";

/// Host programs and the versions the scan must report for them.
struct Host {
    node: PathBuf,
    node_version: String,
    /// `/usr/bin/python3.11` (whatever `/usr/bin/python3` points to).
    python: PathBuf,
    python_name: String,
    python_stdlib: PathBuf,
    python_version: String,
}

impl Host {
    fn find() -> Result<Host, String> {
        let node = which("node").ok_or("`node` not found (install nodejs)")?;
        let node = std::fs::canonicalize(node).map_err(|e| e.to_string())?;
        // Debian's interpreter, never a pyenv one earlier on PATH.
        let python = std::fs::canonicalize("/usr/bin/python3")
            .map_err(|e| format!("/usr/bin/python3: {e} (install python3)"))?;
        let python_name = python
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("odd python3 name")?
            .to_owned();
        let python_stdlib = Path::new("/usr/lib").join(&python_name);
        if !python_stdlib.join("os.py").is_file() {
            return Err(format!("no stdlib in {}", python_stdlib.display()));
        }
        Ok(Host {
            node,
            node_version: format!("v{}", workloads::deb_upstream_version("nodejs").unwrap()),
            python_version: format!(
                "Python {}",
                workloads::deb_upstream_version(&python_name).unwrap()
            ),
            python,
            python_name,
            python_stdlib,
        })
    }

    fn with_node(&self, c: ContainerSpec) -> ContainerSpec {
        c.mount(&self.node, "/usr/local/bin/node", true)
            .with_host_libraries()
    }

    fn with_python(&self, c: ContainerSpec) -> ContainerSpec {
        let stdlib = format!("/usr/lib/{}", self.python_name);
        c.mount(
            &self.python,
            &format!("/usr/bin/{}", self.python_name),
            true,
        )
        .mount(&self.python_stdlib, &stdlib, true)
        .with_host_libraries()
    }
}

/// What the test builds before any pod runs.
struct Built {
    go_server: PathBuf,
    go_version: String,
    /// Native Quarkus ≥ 3.15 with the analytics version and GraalVM's identity string.
    native_quarkus: PathBuf,
    /// Native Quarkus < 3.15: only `quarkus.native…` strings, no VM identity.
    native_quarkus_old: PathBuf,
    dumb_init: PathBuf,
}

fn build_programs(dir: &Path) -> Built {
    let (go_server, go_version) = workloads::go_http_server(&dir.join("go")).unwrap();
    let native_quarkus = workloads::native_image_like(
        &dir.join("native"),
        "__quarkus_analytics__quarkus.version=3.15.3.redhat-00002",
        Some(MANDREL_VM),
    )
    .unwrap();
    let native_quarkus_old = workloads::native_image_like(
        &dir.join("native-old"),
        "quarkus.native.builder-image=mandrel",
        None,
    )
    .unwrap();
    let dumb_init = workloads::gcc_static(&dir.join("init"), "dumb-init", DUMB_INIT_C).unwrap();
    Built {
        go_server,
        go_version,
        native_quarkus,
        native_quarkus_old,
        dumb_init,
    }
}

/// A layer directory `root/name` with `files`.
fn layer(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    write_files(&dir, files);
    dir
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// busybox plus `dir`, running `tail -f /dev/null` unless a container says otherwise.
fn busybox_image(sb: &CriSandbox, name: &str, dir: PathBuf) -> String {
    let mut build = ImageBuild::busybox_with_layer(&format!("{IMAGE_PREFIX}/{name}:1"), dir);
    build.cmd = vec!["/bin/tail".into(), "-f".into(), "/dev/null".into()];
    sb.import_image(&build).unwrap()
}

/// A scratch-like image: only `dir` (no shell, no busybox).
fn scratch_image(
    sb: &CriSandbox,
    name: &str,
    dir: PathBuf,
    cmd: &[&str],
    working_dir: &str,
) -> String {
    let build = ImageBuild {
        name: format!("{IMAGE_PREFIX}/{name}:1"),
        layers: vec![dir],
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        working_dir: Some(working_dir.into()),
        ..Default::default()
    };
    sb.import_image(&build).unwrap()
}

fn image_default(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: Some(image.into()),
        ..Default::default()
    }
}

fn one(sb: &CriSandbox, pod: &str, container: ContainerSpec) -> RunningPod {
    sb.run_pod(&PodSpec::new(NS, pod).container(container))
        .unwrap_or_else(|e| panic!("pod {pod}: {e:#}"))
}

/// The Go server really serves: its log names its address, and it answers there.
fn go_server_answers(sb: &CriSandbox, pod: &RunningPod, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = sb.container_log(pod, container);
        if let Some(addr) = text.lines().find_map(|l| {
            l.split_once("listening on ")
                .map(|(_, a)| a.trim().to_owned())
        }) {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "Go server never listened: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: matrix\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
}

#[test]
fn native_runtime_matrix_on_containerd() {
    let test = "native_runtime_matrix_on_containerd";
    require(test, CriSandbox::available().err());
    require(test, workloads::go_unavailable());
    require(test, workloads::gcc_unavailable());
    let host = Host::find().unwrap_or_else(|why| panic!("{test}: {why}"));
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("ri-matrix-")
        .tempdir_in("/tmp")
        .unwrap();
    // Compile while containerd starts.
    let (sb, built) = std::thread::scope(|s| {
        let builder = s.spawn(|| build_programs(&work.path().join("build")));
        let sb = CriSandbox::start_for(test);
        (sb, builder.join().unwrap())
    });
    eprintln!(
        "containerd + builds: {:?} (containerd {:?})",
        started.elapsed(),
        sb.timings().containerd_ready
    );

    // Images: each with its own os-release.
    let t = Instant::now();
    let layers = work.path().join("layers");
    let rhel94 = busybox_image(
        &sb,
        "rhel-9.4",
        layer(&layers, "rhel94", &[("etc/os-release", RHEL_9_4)]),
    );
    let ubuntu_dir = layer(&layers, "ubuntu", &[("usr/lib/os-release", UBUNTU_24_04)]);
    std::fs::create_dir_all(ubuntu_dir.join("etc")).unwrap();
    symlink("../usr/lib/os-release", ubuntu_dir.join("etc/os-release")).unwrap();
    let ubuntu = busybox_image(&sb, "ubuntu-24.04", ubuntu_dir);
    let alpine_quoted = busybox_image(
        &sb,
        "alpine-quoted",
        layer(&layers, "alpine-q", &[("etc/os-release", ALPINE_QUOTED)]),
    );
    // The busybox base has /etc/os-release: an OCI whiteout in the upper layer deletes it,
    // as a real image's layer deleting a file does.
    let usr_lib_only = busybox_image(
        &sb,
        "usr-lib-only",
        layer(
            &layers,
            "usrlib",
            &[
                ("etc/.wh.os-release", ""),
                ("usr/lib/os-release", DEBIAN_13),
            ],
        ),
    );
    let no_os_release = busybox_image(
        &sb,
        "no-os-release",
        layer(&layers, "none", &[("etc/.wh.os-release", "")]),
    );
    let alpine322 = busybox_image(
        &sb,
        "alpine-3.22",
        layer(&layers, "alpine322", &[("etc/os-release", ALPINE_3_22)]),
    );
    let centos7 = busybox_image(
        &sb,
        "centos-7",
        layer(&layers, "centos7", &[("etc/os-release", CENTOS_7)]),
    );
    // debian 12 with Debian's python3 → python3.N link and a Python supervisord.
    let debian_dir = layer(
        &layers,
        "debian12",
        &[
            ("etc/os-release", DEBIAN_12),
            ("usr/bin/supervisord", SUPERVISORD),
        ],
    );
    chmod(&debian_dir.join("usr/bin/supervisord"), 0o755);
    symlink(&host.python_name, debian_dir.join("usr/bin/python3")).unwrap();
    let debian12 = busybox_image(&sb, "debian-12", debian_dir);

    let go_dir = layer(&layers, "go", &[("etc/os-release", DISTROLESS_12)]);
    std::fs::copy(&built.go_server, go_dir.join("server")).unwrap();
    let go_image = scratch_image(&sb, "go-server", go_dir, &["/server"], "/");

    let native_dir = layer(&layers, "native", &[("etc/os-release", RHEL_8_10)]);
    std::fs::create_dir_all(native_dir.join("work")).unwrap();
    std::fs::copy(&built.native_quarkus, native_dir.join("work/application")).unwrap();
    let quarkus_cmd = ["./application", "-Dquarkus.http.host=0.0.0.0"];
    let native_image = scratch_image(&sb, "native-quarkus", native_dir, &quarkus_cmd, "/work");
    let native_old_dir = layer(&layers, "native-old", &[("etc/os-release", RHEL_8_9)]);
    std::fs::create_dir_all(native_old_dir.join("work")).unwrap();
    std::fs::copy(
        &built.native_quarkus_old,
        native_old_dir.join("work/application"),
    )
    .unwrap();
    let native_old_image = scratch_image(
        &sb,
        "native-quarkus-old",
        native_old_dir,
        &quarkus_cmd,
        "/work",
    );
    eprintln!("images: {:?}", t.elapsed());

    // Pods, one per case as the reference's Deployments.
    let t = Instant::now();
    let os_rhel = one(&sb, "os-rhel-9-4", image_default("os", &rhel94));
    let os_ubuntu = one(&sb, "os-ubuntu-24-04", image_default("os", &ubuntu));
    let os_alpine = one(&sb, "os-alpine-quoted", image_default("os", &alpine_quoted));
    let os_usr_lib = one(&sb, "os-usr-lib-only", image_default("os", &usr_lib_only));
    let os_none = one(&sb, "os-none", image_default("os", &no_os_release));

    let node = one(
        &sb,
        "nodejs",
        host.with_node(
            ContainerSpec::new("nodejs", &["/usr/local/bin/node", "-e", NODE_IDLE])
                .image(&debian12),
        ),
    );
    let node_main_thread = one(
        &sb,
        "nodejs-main-thread",
        host.with_node(
            // Run as `node24`: neither the executable's nor argv[0]'s name says `node`, so only
            // the MainThread rule can recognise it.
            ContainerSpec::new(
                "nodejs",
                &["/opt/node24/bin/node24", "-e", NODE_MAIN_THREAD],
            )
            .mount(&host.node, "/opt/node24/bin/node24", true)
            .image(&alpine322),
        ),
    );
    let python3 = one(
        &sb,
        "python3",
        host.with_python(
            ContainerSpec::new("python", &["/usr/bin/python3", "-c", PY_IDLE]).image(&debian12),
        ),
    );
    let python_versioned_path = format!("/usr/bin/{}", host.python_name);
    let python_versioned = one(
        &sb,
        "python3-versioned",
        host.with_python(
            ContainerSpec::new("python", &[&python_versioned_path, "-c", PY_IDLE])
                .image(&debian12)
                .run_as_user(1001),
        ),
    );
    let go = one(
        &sb,
        "golang",
        image_default("main", &go_image).run_as_user(65532),
    );
    let native = one(
        &sb,
        "native-quarkus",
        image_default("main", &native_image).run_as_user(1001),
    );
    let native_old = one(
        &sb,
        "native-quarkus-old",
        image_default("main", &native_old_image).run_as_user(1001),
    );

    // A shell with an idle child first and Python second: the reference's first leaf would
    // be `sleep`; wrappers never win here.
    let shell_script = format!("sleep 1000000 & /usr/bin/python3 -c '{PY_IDLE}' & wait");
    let shell_python = one(
        &sb,
        "shell-python",
        host.with_python(
            ContainerSpec::new("main", &["/bin/sh", "-c", &shell_script]).image(&debian12),
        ),
    );
    let supervisord = one(
        &sb,
        "supervisord",
        host.with_python(host.with_node(
            ContainerSpec::new("main", &["/usr/bin/supervisord", "-n"]).image(&debian12),
        )),
    );
    let dumb_init = one(
        &sb,
        "dumb-init",
        host.with_node(
            ContainerSpec::new(
                "main",
                &["/usr/bin/dumb-init", "/usr/local/bin/node", "-e", NODE_IDLE],
            )
            .image(&debian12)
            .mount(&built.dumb_init, "/usr/bin/dumb-init", true),
        ),
    );

    // Init container (runs to completion first), a log-shipping sidecar (restartable init
    // container: for the CRI, a container started before the app) and the app, sharing an
    // emptyDir-like directory.
    let shared = work.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    chmod(&shared, 0o777);
    let app_script =
        "setInterval(() => require('fs').appendFileSync('/opt/logs.txt', 'tick\\n'), 1000)";
    let sidecar = sb
        .run_pod(
            &PodSpec::new(NS, "sidecar")
                .init_container(
                    ContainerSpec::new(
                        "init-logs",
                        &["/bin/sh", "-c", "echo ready > /opt/logs.txt"],
                    )
                    .mount(&shared, "/opt", false),
                )
                .container(
                    ContainerSpec::new("logshipper", &["/bin/sh", "-c", "tail -F /opt/logs.txt"])
                        .image(&centos7)
                        .mount(&shared, "/opt", false),
                )
                .container(
                    host.with_node(
                        ContainerSpec::new("app", &["/usr/local/bin/node", "-e", app_script])
                            .image(&debian12)
                            .mount(&shared, "/opt", false),
                    ),
                ),
        )
        .unwrap();
    eprintln!("pods: {:?}", t.elapsed());

    // Everything the scan must see is in place before it looks.
    assert_eq!(
        std::fs::read_to_string(shared.join("logs.txt"))
            .unwrap()
            .lines()
            .next(),
        Some("ready"),
        "init container did not run first"
    );
    wait_for_descendant(node_main_thread.containers[0].pid, "MainThread");
    wait_for_descendant(shell_python.containers[0].pid, "python3");
    wait_for_descendant(dumb_init.containers[0].pid, "node");
    let root = supervisord.containers[0].pid;
    wait_for_descendant(root, "node");
    wait_for_descendant(root, "python3");
    go_server_answers(&sb, &go, "main");

    let t = Instant::now();
    let scanned = scan_node(&sb);
    eprintln!("scan: {:?}", t.elapsed());

    let os = |id: &str, version: &str| expected(id, version, "", "", "", &[]);
    let nodejs = |os: &str, v: &str| expected(os, v, "Node.js", &host.node_version, "", &[]);
    let python = |os: &str, v: &str| expected(os, v, "Python", &host.python_version, "", &[]);
    let init_id = sidecar.init_container("init-logs").unwrap().id.clone();
    let cases = vec![
        Case::new("os/rhel-9.4", &sb, &os_rhel, "os", os("rhel", "9.4")),
        Case::new(
            "os/ubuntu-24.04",
            &sb,
            &os_ubuntu,
            "os",
            os("ubuntu", "24.04"),
        ),
        Case::new(
            "os/alpine-quoted",
            &sb,
            &os_alpine,
            "os",
            os("alpine", "3.21.4"),
        ),
        Case::new(
            "os/usr-lib-only",
            &sb,
            &os_usr_lib,
            "os",
            os("debian", "13"),
        ),
        Case::new("os/none", &sb, &os_none, "os", os("", "")),
        Case::new("node", &sb, &node, "nodejs", nodejs("debian", "12")),
        Case::new(
            "node/MainThread",
            &sb,
            &node_main_thread,
            "nodejs",
            nodejs("alpine", "3.22.1"),
        ),
        Case::new("python3", &sb, &python3, "python", python("debian", "12")),
        Case::new(
            "python3.N (uid 1001)",
            &sb,
            &python_versioned,
            "python",
            python("debian", "12"),
        ),
        Case::new(
            "go/scratch (uid 65532)",
            &sb,
            &go,
            "main",
            expected("debian", "12", "Golang", &built.go_version, "", &[]),
        ),
        Case::new(
            "native/quarkus-3.15",
            &sb,
            &native,
            "main",
            expected(
                "rhel",
                "8.10",
                "GraalVM",
                "23.1.4.0-Final",
                "",
                &[("Quarkus", "3.15.3.redhat-00002")],
            ),
        ),
        Case::new(
            "native/quarkus-old",
            &sb,
            &native_old,
            "main",
            expected("rhel", "8.9", "GraalVM", "", "", &[("Quarkus", "")]),
        ),
        Case::new(
            "multi/sh+sleep+python",
            &sb,
            &shell_python,
            "main",
            python("debian", "12"),
        ),
        Case::new(
            "multi/supervisord",
            &sb,
            &supervisord,
            "main",
            nodejs("debian", "12"),
        ),
        Case::new(
            "multi/dumb-init",
            &sb,
            &dumb_init,
            "main",
            nodejs("debian", "12"),
        ),
        Case::absent("pod/init (exited)", &sb, &sidecar, &init_id),
        Case::new(
            "pod/sidecar",
            &sb,
            &sidecar,
            "logshipper",
            os("centos", "7"),
        ),
        Case::new("pod/app", &sb, &sidecar, "app", nodejs("debian", "12")),
    ];
    assert_cases(&scanned, &cases);
    let t = Instant::now();
    drop(sb);
    eprintln!("teardown: {:?}; total {:?}", t.elapsed(), started.elapsed());
}

//! `runtime-extractor scan` and `runtime-extractor scanner` against a real containerd (CRI),
//! with real runtimes bind-mounted into busybox containers. Needs root + containerd; skips
//! loudly otherwise and fails under CI=true.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scanner_proto::{self, ScanRequest};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::daemons::ScannerDaemon;
use testkit::rootfs::{require, which};
use testkit::workloads;

fn bin() -> &'static Path {
    testkit::bins::binary(testkit::bins::SCANNER)
}

fn scan(sb: &CriSandbox, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("scan")
        .arg("--cri-socket")
        .arg(sb.socket_path())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_version() -> String {
    let out = Command::new("node").arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn scan_reports_every_container_of_the_node() {
    let sb = CriSandbox::start_for("scan_reports_every_container_of_the_node");
    require("JVM workloads", workloads::jdk_unavailable());
    require("Go workloads", workloads::go_unavailable());
    let build = tempfile::tempdir().unwrap();
    let node = std::fs::canonicalize(which("node").unwrap()).unwrap();
    let jdk = workloads::jdk_home().unwrap();
    let (java_version, implementor) = workloads::jdk_release(&jdk).unwrap();
    let app_jar = workloads::spring_boot_jar(build.path(), "3.5.3").unwrap();
    let (go_bin, go_version) = workloads::go_sleeper(&build.path().join("go")).unwrap();

    let web = sb
        .run_pod(
            &PodSpec::new("shop", "web-1").container(
                ContainerSpec::new(
                    "node",
                    &["/usr/local/bin/node", "-e", "setTimeout(()=>{}, 3600000)"],
                )
                .mount(&node, "/usr/local/bin/node", true)
                .with_host_libraries(),
            ),
        )
        .unwrap();
    let api = sb
        .run_pod(
            &PodSpec::new("shop", "api-1").container(
                ContainerSpec::new(
                    "java",
                    &["/opt/java/openjdk/bin/java", "-jar", "/app/app.jar"],
                )
                .mount(&jdk, "/opt/java/openjdk", true)
                .mount(&app_jar, "/app/app.jar", true)
                .env("JAVA_HOME", "/opt/java/openjdk")
                .run_as_user(1001)
                .with_host_libraries(),
            ),
        )
        .unwrap();
    let data = sb
        .run_pod(
            &PodSpec::new("data", "tools-1")
                .container(ContainerSpec::new("main", &["/app/main"]).mount(
                    &go_bin,
                    "/app/main",
                    true,
                ))
                .container(ContainerSpec::new("idle", &["/bin/sleep", "3600"])),
        )
        .unwrap();
    let prefix = format!("{}://", sb.runtime_name());
    let key = |id: &str| format!("{prefix}{id}");
    let node_id = &web.container("node").unwrap().id;
    let java_id = &api.container("java").unwrap().id;
    let go_id = &data.container("main").unwrap().id;
    let idle_id = &data.container("idle").unwrap().id;
    // Let the JVM open its jar before we look.
    std::thread::sleep(Duration::from_millis(500));

    // The binary is resolved (and built, if stale) before the clock starts.
    bin();
    let started = Instant::now();
    let all = scan(&sb, &[]);
    eprintln!("scan of 4 containers: {:?}", started.elapsed());
    let n = &all["shop"]["web-1"][key(node_id)];
    assert_eq!(n["kind"], "Node.js");
    assert_eq!(n["kindVersion"], node_version());
    assert_eq!(n["os"], "alpine");
    assert_eq!(n["osVersion"], "3.99.0");
    let j = &all["shop"]["api-1"][key(java_id)];
    assert_eq!(j["kind"], "Java", "{all:#}");
    assert_eq!(j["kindVersion"], java_version.as_str());
    assert_eq!(j["kindImplementer"], implementor.as_str());
    assert_eq!(
        j["runtimes"],
        serde_json::json!([{"name": "Spring Boot", "version": "3.5.3"}])
    );
    let g = &all["data"]["tools-1"][key(go_id)];
    assert_eq!(g["kind"], "Golang");
    assert_eq!(g["kindVersion"], go_version.as_str());
    assert_eq!(
        all["data"]["tools-1"][key(idle_id)],
        serde_json::json!({"os": "alpine", "osVersion": "3.99.0"})
    );

    // Only the requested containers; the answer keys follow the caller's form.
    let some = scan(
        &sb,
        &["--container-id", &key(node_id), "--container-id", go_id],
    );
    let pods: Vec<_> = some
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ns| ns.as_object().unwrap().values())
        .collect();
    let ids: Vec<String> = pods
        .iter()
        .flat_map(|p| p.as_object().unwrap().keys().cloned())
        .collect();
    assert_eq!(ids.len(), 2, "{some:#}");
    assert!(some["shop"]["web-1"].get(key(node_id)).is_some());
    assert!(some["data"]["tools-1"].get(key(go_id)).is_some());
    let other_prefix = scan(&sb, &["--container-id", &format!("cri-o://{java_id}")]);
    assert_eq!(
        other_prefix["shop"]["api-1"][format!("cri-o://{java_id}")]["kind"],
        "Java"
    );
    let unknown = scan(&sb, &["--container-id", &key(&"ab".repeat(32))]);
    assert_eq!(unknown, serde_json::json!({}));

    let hashed = scan(&sb, &["--hash", "--container-id", &key(node_id)]);
    assert_eq!(
        hashed["shop"]["web-1"][key(node_id)]["kind"],
        "H8DHhTMugPuT"
    );

    let table = Command::new(bin())
        .args(["scan", "-o", "table", "--cri-socket"])
        .arg(sb.socket_path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("shop/web-1/node"), "{table}");
    assert!(table.contains("Spring Boot 3.5.3"), "{table}");

    let bad = Command::new(bin())
        .args(["scan", "--container-id", "cri-o://nothex", "--cri-socket"])
        .arg(sb.socket_path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("invalid container ID"), "{msg}");
}

fn start_scanner(sb: &CriSandbox) -> (ScannerDaemon, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("ri-scanner-")
        .tempdir_in("/tmp")
        .unwrap();
    let daemon = ScannerDaemon::start(
        Path::new(bin()),
        sb.socket_path(),
        &dir.path().join("scanner.sock"),
    )
    .unwrap();
    (daemon, dir)
}

fn ask(socket: &Path, req: ScanRequest) -> scanner_proto::ScanResponse {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scanner_proto::request(socket, &req))
        .unwrap()
}

#[test]
fn scanner_daemon_serves_framed_requests_safely() {
    let sb = CriSandbox::start_for("scanner_daemon_serves_framed_requests_safely");
    let node = std::fs::canonicalize(which("node").unwrap()).unwrap();
    let pod = sb
        .run_pod(
            &PodSpec::new("ns1", "p1")
                .container(
                    ContainerSpec::new(
                        "node",
                        &["/usr/local/bin/node", "-e", "setTimeout(()=>{}, 3600000)"],
                    )
                    .mount(&node, "/usr/local/bin/node", true)
                    .with_host_libraries(),
                )
                .container(ContainerSpec::new("idle", &["/bin/sleep", "3600"])),
        )
        .unwrap();
    let node_c = pod.container("node").unwrap();
    let (mut scanner, _dir) = start_scanner(&sb);
    let mode = std::fs::metadata(&scanner.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let listed = ask(
        &scanner.socket,
        ScanRequest {
            container_ids: vec![],
            list_only: true,
        },
    );
    assert_eq!(listed.error, None);
    assert_eq!(listed.containers.len(), 2);
    for c in &listed.containers {
        assert!(c.info.is_none());
        assert!(c.start_time > 0);
    }
    let got = listed
        .containers
        .iter()
        .find(|c| c.container == "node")
        .unwrap();
    assert_eq!(got.pid, node_c.pid);

    // A client that connects and sends nothing does not hold up another one.
    let mut idle_clients: Vec<_> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(&scanner.socket).unwrap())
        .collect();
    // A client that announces a huge frame is refused without harm.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&scanner.socket).unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        idle_clients.push(s);
    }
    let started = Instant::now();
    let one = ask(
        &scanner.socket,
        ScanRequest {
            container_ids: vec![sb.kube_id(&node_c.id)],
            list_only: false,
        },
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(one.containers.len(), 1);
    let info = one.containers[0].info.as_ref().unwrap();
    assert_eq!(info.kind, "Node.js");
    let node_info = one.node_runtime_info();
    assert!(node_info["ns1"]["p1"].contains_key(&sb.kube_id(&node_c.id)));

    let bad = ask(
        &scanner.socket,
        ScanRequest {
            container_ids: vec!["nope".into()],
            list_only: false,
        },
    );
    let bad = bad.error.unwrap();
    assert_eq!(bad.kind, scanner_proto::FailureKind::BadRequest);
    assert!(bad.detail.contains("invalid container ID"), "{bad:?}");
    drop(idle_clients);

    // SIGTERM: clean exit, socket removed.
    nix_kill_term(scanner.child.id());
    let status = scanner.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!scanner.socket.exists());
}

fn nix_kill_term(pid: u32) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Replace a file the way an attacker inside the container would: the running process keeps
/// its old inode, the scanner opens the path and gets the new content.
fn swap_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("swap");
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("META-INF/MANIFEST.MF", opts).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..64 {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

#[test]
fn hostile_containers_cost_only_themselves() {
    let sb = CriSandbox::start_for("hostile_containers_cost_only_themselves");
    require("JVM workloads", workloads::jdk_unavailable());
    require("Go workloads", workloads::go_unavailable());
    let build = tempfile::tempdir().unwrap();
    let jdk = workloads::jdk_home().unwrap();
    let app = build.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let jar = workloads::spring_boot_jar(build.path(), "3.1.4").unwrap();
    std::fs::copy(&jar, app.join("app.jar")).unwrap();
    let (go_bin, _) = workloads::go_sleeper(&build.path().join("go")).unwrap();
    std::fs::copy(&go_bin, app.join("main")).unwrap();
    // /etc with a FIFO as os-release and a 1 GiB fallback.
    let etc = build.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    assert!(Command::new("mkfifo")
        .arg(etc.join("os-release"))
        .status()
        .unwrap()
        .success());

    let evil = sb
        .run_pod(
            &PodSpec::new("evil", "evil-0")
                .container(
                    ContainerSpec::new("bomb", &["/opt/jdk/bin/java", "-jar", "/app/app.jar"])
                        .mount(&jdk, "/opt/jdk", true)
                        .mount(&app, "/app", false)
                        .mount(&etc, "/etc", false)
                        .with_host_libraries(),
                )
                .container(
                    ContainerSpec::new("corrupt-elf", &["/app/main"]).mount(&app, "/app", false),
                ),
        )
        .unwrap();
    let good = sb
        .run_pod(
            &PodSpec::new("good", "good-0")
                .container(ContainerSpec::new("idle", &["/bin/sleep", "3600"])),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    swap_file(&app.join("app.jar"), &zip_bomb());
    let mut corrupt = std::fs::read(&go_bin).unwrap();
    corrupt.truncate(4096);
    corrupt[0x20..0x40].fill(0xff); // section/program header offsets point nowhere
    swap_file(&app.join("main"), &corrupt);

    // The binary is resolved (and built, if stale) before the clock starts.
    bin();
    let started = Instant::now();
    let all = scan(&sb, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let key = |id: &str| sb.kube_id(id);
    let bomb = &all["evil"]["evil-0"][key(&evil.container("bomb").unwrap().id)];
    assert_eq!(bomb["kind"], "Java", "{all:#}");
    assert!(bomb.get("runtimes").is_none(), "{bomb}");
    assert!(bomb.get("os").is_none(), "FIFO os-release: {bomb}");
    let elf = &all["evil"]["evil-0"][key(&evil.container("corrupt-elf").unwrap().id)];
    assert!(elf.get("kind").is_none(), "{elf}");
    assert_eq!(
        all["good"]["good-0"][key(&good.container("idle").unwrap().id)],
        serde_json::json!({"os": "alpine", "osVersion": "3.99.0"})
    );
}

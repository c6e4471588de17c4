//! Container discovery against a real containerd (testkit's CriSandbox): listing, ID filters,
//! host PIDs, kubelet labels, skipped and stopped containers, and connection errors.
//!
//! Needs root plus containerd/runc (`bash scripts/install-test-deps.sh`); skips loudly
//! otherwise, and fails instead under `CI=true`.

use std::path::Path;
use std::time::Instant;

use runtime_info::ContainerId;
use scanner::discovery::{Container, CriClient, DiscoveryError};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec, RunningContainer};

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn find<'a>(list: &'a [Container], c: &RunningContainer) -> &'a Container {
    list.iter().find(|d| d.id_hex == c.id).unwrap_or_else(|| {
        panic!(
            "container {} ({}) not discovered in {list:#?}",
            c.name, c.id
        )
    })
}

fn id(s: &str) -> ContainerId {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_kubelet_containers_with_names_and_host_pids() {
    let sb = CriSandbox::start_for("lists_kubelet_containers_with_names_and_host_pids");
    eprintln!("containerd start: {:?}", sb.timings());
    let t = Instant::now();
    let web = sb
        .run_pod(
            &PodSpec::new("shop", "web-7d9f")
                .container(ContainerSpec::new("app", &["/bin/sleep", "3601"]))
                .container(ContainerSpec::new("sidecar", &["/bin/sleep", "3602"])),
        )
        .unwrap();
    eprintln!("pod with 2 containers started in {:?}", t.elapsed());
    let db = sb
        .run_pod(
            &PodSpec::new("data", "db-0").container(
                ContainerSpec::new("postgres", &["/bin/sleep", "3603"]).run_as_user(65534),
            ),
        )
        .unwrap();
    // Created by hand, not by a kubelet: no io.kubernetes.* labels on the container.
    let raw =
        sb.run_pod(&PodSpec::new("default", "raw").container(
            ContainerSpec::new("raw", &["/bin/sleep", "3604"]).without_kubelet_labels(),
        ))
        .unwrap();

    let cri = CriClient::connect(Some(sb.socket_path())).await.unwrap();
    assert_eq!(cri.runtime_name(), "containerd");
    assert_eq!(cri.runtime_name(), sb.runtime_name());
    let t = Instant::now();
    let all = cri.list_running(None).await.unwrap();
    eprintln!(
        "list_running(None) of {} containers: {:?}",
        all.len(),
        t.elapsed()
    );

    assert_eq!(all.len(), 3, "expected app, sidecar, postgres: {all:#?}");
    let raw_id = &raw.containers[0].id;
    assert!(
        all.iter().all(|c| &c.id_hex != raw_id),
        "container without kubelet labels listed"
    );
    let expectations = [
        (&web.containers[0], "shop", "web-7d9f", "app", "3601"),
        (&web.containers[1], "shop", "web-7d9f", "sidecar", "3602"),
        (&db.containers[0], "data", "db-0", "postgres", "3603"),
    ];
    for (running, ns, pod, name, arg) in expectations {
        let found = find(&all, running);
        assert_eq!(
            (
                found.namespace.as_str(),
                found.pod.as_str(),
                found.name.as_str()
            ),
            (ns, pod, name)
        );
        assert_eq!(found.kubernetes_id, format!("containerd://{}", running.id));
        assert_eq!(
            found.pid, running.pid,
            "{name}: PID differs from the sandbox's own status"
        );
        // The PID is the container's process in the host PID namespace...
        assert_eq!(cmdline(found.pid), format!("/bin/sleep {arg}"), "{name}");
        // ...and lives in the container's filesystem, not ours.
        let os =
            std::fs::read_to_string(format!("/proc/{}/root/etc/os-release", found.pid)).unwrap();
        assert!(os.contains("ID=alpine"), "{name}: {os}");
        assert!(!found.image_ref.is_empty(), "{name}: empty image_ref");
    }
    let uid_line = std::fs::read_to_string(format!("/proc/{}/status", db.containers[0].pid))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(
        uid_line.contains("65534"),
        "run_as_user not applied: {uid_line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_container_id_in_any_form() {
    let sb = CriSandbox::start_for("filters_by_container_id_in_any_form");
    let pod = sb
        .run_pod(
            &PodSpec::new("ns1", "p")
                .container(ContainerSpec::new("a", &["/bin/sleep", "3611"]))
                .container(ContainerSpec::new("b", &["/bin/sleep", "3612"]))
                .container(ContainerSpec::new("c", &["/bin/sleep", "3613"])),
        )
        .unwrap();
    let (a, b, c) = (&pod.containers[0], &pod.containers[1], &pod.containers[2]);
    let cri = CriClient::connect(Some(sb.socket_path())).await.unwrap();

    // Kubernetes form with the right prefix, bare hex, a foreign prefix (matched on the hex:
    // the caller keeps its own form), and two IDs that match nothing.
    let unknown = "f".repeat(64);
    let filter = vec![
        id(&format!("containerd://{}", a.id)),
        id(&b.id),
        id(&format!("cri-o://{unknown}")),
        id(&"0".repeat(64)),
    ];
    let mut got = cri.list_running(Some(&filter)).await.unwrap();
    got.sort_by(|x, y| x.name.cmp(&y.name));
    let names: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(got[0].pid, a.pid);
    assert_eq!(got[1].pid, b.pid);

    let only_c = cri
        .list_running(Some(&[id(&format!("cri-o://{}", c.id))]))
        .await
        .unwrap();
    assert_eq!(only_c.len(), 1);
    assert_eq!(only_c[0].kubernetes_id, format!("containerd://{}", c.id));

    // An empty filter asks for nothing; only unknown IDs find nothing; neither is an error.
    assert!(cri.list_running(Some(&[])).await.unwrap().is_empty());
    assert!(cri
        .list_running(Some(&[id(&unknown)]))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_containers_and_pods_are_not_listed() {
    let sb = CriSandbox::start_for("stopped_containers_and_pods_are_not_listed");
    let one = sb
        .run_pod(
            &PodSpec::new("ns", "one")
                .container(ContainerSpec::new("keep", &["/bin/sleep", "3621"]))
                .container(ContainerSpec::new("stop", &["/bin/sleep", "3622"])),
        )
        .unwrap();
    let two = sb
        .run_pod(
            &PodSpec::new("ns", "two").container(ContainerSpec::new("x", &["/bin/sleep", "3623"])),
        )
        .unwrap();
    let cri = CriClient::connect(Some(sb.socket_path())).await.unwrap();
    assert_eq!(cri.list_running(None).await.unwrap().len(), 3);

    let stopped = one.container("stop").unwrap();
    sb.stop_container(&stopped.id).unwrap();
    let listed = cri.list_running(None).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed.len(), 2, "{names:?}");
    assert!(!names.contains(&"stop"));
    // Asked for by ID, a stopped container is simply absent.
    let by_id = cri.list_running(Some(&[id(&stopped.id)])).await.unwrap();
    assert!(by_id.is_empty(), "{by_id:#?}");

    sb.stop_pod(&two.pod_id).unwrap();
    let listed = cri.list_running(None).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["keep"]);
}

#[tokio::test]
async fn missing_socket_is_a_clear_error() {
    let err = CriClient::connect(Some(Path::new("/nonexistent/ri/cri.sock")))
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::NoSocket { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/ri/cri.sock"),
        "{err}"
    );
}

#[tokio::test]
async fn socket_without_a_listener_is_a_clear_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.sock");
    // A bound-then-closed unix socket: the file exists, nobody accepts.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = CriClient::connect(Some(&path)).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DiscoveryError::Connect { .. }), "{err:?}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.to_lowercase().contains("refused"),
        "cause missing: {msg}"
    );
}

/// The reference's crictl broke after a CRI-O restart: a long-lived client must keep working
/// when the runtime goes away and comes back on the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_client_keeps_working_across_a_runtime_restart() {
    let mut sb = CriSandbox::start_for("same_client_keeps_working_across_a_runtime_restart");
    let pod = sb
        .run_pod(
            &PodSpec::new("ns", "survivor")
                .container(ContainerSpec::new("c", &["/bin/sleep", "3631"])),
        )
        .unwrap();
    let c = &pod.containers[0];
    let cri = CriClient::connect(Some(sb.socket_path())).await.unwrap();
    assert_eq!(cri.list_running(None).await.unwrap().len(), 1);

    let t = Instant::now();
    sb.restart_runtime().unwrap();
    eprintln!("containerd restart: {:?}", t.elapsed());
    let listed = cri.list_running(None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].id_hex, c.id);
    assert_eq!(listed[0].pid, c.pid);
}

/// A listing asked while the runtime is down for a moment waits for it instead of failing.
#[test]
fn listing_during_a_runtime_restart_waits_for_the_runtime() {
    let mut sb = CriSandbox::start_for("listing_during_a_runtime_restart_waits_for_the_runtime");
    let pod = sb
        .run_pod(
            &PodSpec::new("ns", "p").container(ContainerSpec::new("c", &["/bin/sleep", "3641"])),
        )
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cri = rt
        .block_on(CriClient::connect(Some(sb.socket_path())))
        .unwrap();
    sb.stop_runtime();
    let listed = std::thread::scope(|s| {
        let restarter = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            sb.start_runtime()
        });
        let listed = rt.block_on(cri.list_running(None));
        restarter.join().unwrap().unwrap();
        listed
    })
    .unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].id_hex, pod.containers[0].id);
}

/// The cgroup fallback finds the same PIDs the runtime reports, for real containers.
#[test]
fn cgroup_fallback_finds_the_runtime_reported_pids() {
    let sb = CriSandbox::start_for("cgroup_fallback_finds_the_runtime_reported_pids");
    let pod = sb
        .run_pod(
            &PodSpec::new("ns", "p")
                // A shell that forks a child: the child shares the cgroup but is not the init.
                .container(ContainerSpec::new(
                    "sh",
                    &["/bin/sh", "-c", "/bin/sleep 3651 & wait"],
                ))
                .container(ContainerSpec::new("plain", &["/bin/sleep", "3652"])),
        )
        .unwrap();
    let ids: Vec<&str> = pod.containers.iter().map(|c| c.id.as_str()).collect();
    let found = scanner::discovery::cgroup::find_container_pids(Path::new("/proc"), &ids);
    for c in &pod.containers {
        assert_eq!(found.get(&c.id), Some(&c.pid), "{}: {found:?}", c.name);
    }
}

/// The client remembers host PIDs (no status call per container on later listings); what it
/// remembers must stay right as containers come and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_pids_follow_containers_coming_and_going() {
    let sb = CriSandbox::start_for("remembered_pids_follow_containers_coming_and_going");
    let first = sb
        .run_pod(
            &PodSpec::new("ns", "a").container(ContainerSpec::new("c", &["/bin/sleep", "3631"])),
        )
        .unwrap();
    let cri = CriClient::connect(Some(sb.socket_path())).await.unwrap();
    let c1 = first.container("c").unwrap();
    for _ in 0..3 {
        let listed = cri.list_running(None).await.unwrap();
        assert_eq!(find(&listed, c1).pid, c1.pid);
        assert!(cmdline(c1.pid).contains("3631"));
    }
    sb.stop_container(&c1.id).unwrap();
    let second = sb
        .run_pod(
            &PodSpec::new("ns", "b").container(ContainerSpec::new("c", &["/bin/sleep", "3632"])),
        )
        .unwrap();
    let c2 = second.container("c").unwrap();
    for filter in [None, Some(vec![id(&c2.id), id(&c1.id)])] {
        let listed = cri.list_running(filter.as_deref()).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(find(&listed, c2).pid, c2.pid);
        assert!(cmdline(c2.pid).contains("3632"));
    }
}

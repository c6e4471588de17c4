//! Scanner benchmark against a real containerd: per-container cost and the cost of scanning
//! a requested subset versus the whole node (PRD-0001). Needs root + containerd + a JDK + Go.
//!
//!     cargo bench -p scanner --bench scan            # 200 containers, 10 requested
//!     BENCH_CONTAINERS=50 cargo bench -p scanner --bench scan
//!
//! Prints a Markdown table (medians of several rounds, measured in one run) for
//! docs/benchmarks.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use runtime_info::ContainerId;
use scanner::discovery::CriClient;
use scanner::sandbox::SandboxConfig;
use scanner::scan::{self, ScanOptions};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::rootfs::which;
use testkit::workloads;

use testkit::bench::{median, ms, Lcg};

const KINDS: [&str; 5] = ["os-only", "node", "python", "java", "go"];

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo test --benches` asks; nothing to list.
    }
    let total: usize = std::env::var("BENCH_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let subset = 10.min(total);
    let rounds = 5;
    let sb = CriSandbox::start_for("bench scan");
    let build = tempfile::tempdir()?;
    let node = std::fs::canonicalize(which("node").ok_or_else(|| anyhow::anyhow!("no node"))?)?;
    let python = PathBuf::from("/usr/bin/python3.11");
    let jdk = workloads::jdk_home().ok_or_else(|| anyhow::anyhow!("no JDK"))?;
    let jar = workloads::spring_boot_jar(build.path(), "3.5.3")?;
    let (go_bin, _) = workloads::go_sleeper(&build.path().join("go"))?;

    eprintln!("starting {total} containers...");
    let started = Instant::now();
    let mut ids: Vec<(String, &str)> = Vec::new();
    let per_pod = KINDS.len();
    for p in 0..total.div_ceil(per_pod) {
        let mut spec = PodSpec::new(&format!("bench-{}", p % 7), &format!("pod-{p}"));
        let mut kinds = Vec::new();
        for (k, kind) in KINDS.iter().enumerate() {
            if p * per_pod + k >= total {
                break;
            }
            let c = match *kind {
                "node" => ContainerSpec::new(
                    "node",
                    &["/usr/local/bin/node", "-e", "setTimeout(()=>{}, 3600000)"],
                )
                .mount(&node, "/usr/local/bin/node", true)
                .with_host_libraries(),
                "python" => ContainerSpec::new(
                    "python",
                    &["/usr/bin/python3.11", "-c", "import time; time.sleep(3600)"],
                )
                .mount(&python, "/usr/bin/python3.11", true)
                .mount("/usr/lib/python3.11", "/usr/lib/python3.11", true)
                .with_host_libraries(),
                "java" => ContainerSpec::new(
                    "java",
                    &[
                        "/opt/jdk/bin/java",
                        "-Xmx16m",
                        "-Xss256k",
                        "-XX:TieredStopAtLevel=1",
                        "-XX:+UseSerialGC",
                        "-jar",
                        "/app/app.jar",
                    ],
                )
                .mount(&jdk, "/opt/jdk", true)
                .mount(&jar, "/app/app.jar", true)
                .env("JAVA_HOME", "/opt/jdk")
                .with_host_libraries(),
                "go" => ContainerSpec::new("go", &["/app/main"]).mount(&go_bin, "/app/main", true),
                _ => ContainerSpec::new("idle", &["/bin/sleep", "3600"]),
            };
            spec = spec.container(c);
            kinds.push(*kind);
        }
        let pod = sb.run_pod(&spec)?;
        for (c, kind) in pod.containers.iter().zip(kinds) {
            ids.push((c.id.clone(), kind));
        }
    }
    eprintln!(
        "{} containers running after {:?}",
        ids.len(),
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3)); // let the JVMs settle

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let helper = PathBuf::from(env!("CARGO_BIN_EXE_runtime-extractor"));
    let opts = ScanOptions {
        sandbox: SandboxConfig {
            helper,
            timeout: Duration::from_secs(10),
            ..SandboxConfig::default()
        },
        ..ScanOptions::default()
    };
    let cri = rt.block_on(CriClient::connect_to(sb.socket_path()))?;
    let runtime = cri.runtime_name().to_owned();

    // Warm-up (page cache, CRI connection).
    let warm = rt.block_on(scan::scan_node(&opts, &cri, &[], false))?;
    let failed = warm.iter().filter(|c| c.error.is_some()).count();
    let detected = warm
        .iter()
        .filter(|c| c.info.as_ref().is_some_and(|i| !i.kind.is_empty()))
        .count();
    eprintln!(
        "warm-up: {} containers, {detected} with a runtime kind, {failed} failed",
        warm.len()
    );

    let mut full = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = rt.block_on(scan::scan_node(&opts, &cri, &[], false))?;
        full.push(t.elapsed());
        assert_eq!(r.len(), ids.len());
    }
    let mut rng = Lcg(42);
    let mut part = Vec::new();
    for _ in 0..rounds * 3 {
        let wanted: Vec<ContainerId> = (0..subset)
            .map(|_| ContainerId::from_parts(&runtime, &ids[rng.next(ids.len())].0))
            .collect::<Result<_, _>>()?;
        let t = Instant::now();
        let r = rt.block_on(scan::scan_node(&opts, &cri, &wanted, false))?;
        part.push(t.elapsed());
        assert!(r.len() <= subset && !r.is_empty());
    }
    // Sequential per-container cost (one sandbox at a time), by kind.
    let mut by_kind: Vec<(&str, Vec<Duration>)> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
    let containers = rt.block_on(cri.list_running(None))?;
    for c in containers.iter().take(50) {
        let kind = ids
            .iter()
            .find(|(id, _)| *id == c.id_hex)
            .map(|(_, k)| *k)
            .unwrap_or("?");
        let t = Instant::now();
        rt.block_on(scan::analyse_pid(&opts, c.pid))?;
        if let Some((_, v)) = by_kind.iter_mut().find(|(k, _)| *k == kind) {
            v.push(t.elapsed());
        }
    }
    let all_seq: Vec<Duration> = by_kind.iter().flat_map(|(_, v)| v.clone()).collect();
    let (full_m, part_m) = (median(full), median(part));
    println!(
        "| measure ({} containers, concurrency {}) | median |",
        ids.len(),
        opts.concurrency
    );
    println!("|---|---|");
    println!(
        "| one container, sandbox end to end (sequential, all kinds) | {} |",
        ms(median(all_seq))
    );
    for (kind, v) in &by_kind {
        if !v.is_empty() {
            println!("| one container: {kind} | {} |", ms(median(v.clone())));
        }
    }
    println!(
        "| whole node, all {} containers | {} |",
        ids.len(),
        ms(full_m)
    );
    println!(
        "| whole node, per container (wall / n) | {} |",
        ms(full_m / ids.len() as u32)
    );
    println!("| {subset} requested of {} | {} |", ids.len(), ms(part_m));
    println!(
        "| ratio requested / whole | {:.1} % |",
        100.0 * part_m.as_secs_f64() / full_m.as_secs_f64()
    );
    Ok(())
}

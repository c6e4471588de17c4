//! A real node, measured through the real service (issue 5, "Performance"): GET (every
//! container) against POST (10 of them) on a containerd node of N = 20, 50 and 100 containers.
//! Ignored by default; run it with `bench/node.sh` (release build):
//!
//! `cargo test --release -p system-test --test node_bench -- --ignored --nocapture`
//!
//! The node is testkit's CRI sandbox (a real containerd) running, per 10 containers, 5 busybox
//! `sleep` sidecars, 2 Node.js (the machine's `/usr/bin/node`), 2 Python (Debian's
//! `/usr/bin/python3.11` with `/usr/lib/python3.11`) and 1 JVM (Debian's OpenJDK 17 running a
//! Spring Boot-style jar, 16 MiB heap); runtimes are bind-mounted read-only with the host's
//! libraries. `runtime-extractor scanner` and `runtime-extractor-serve` run as real processes;
//! every request is HTTPS on a new connection (TLS handshake included, as the gatherer makes
//! one connection per node), with a bearer token (`--auth token-file`).
//!
//! Uncached means really uncached: those requests go to a `serve` started with
//! `--cache-max-age 1ms`, so no result is ever reused, and each measured request is checked
//! against serve's own counters (`cache_misses_total` and `containers_scanned_total{ok}` grow
//! by exactly the number of containers answered, `cache_hits_total` not at all). As a
//! cross-check, the first GET of a freshly started default `serve` (empty cache) is timed once
//! per N. Cached requests go to that default `serve` after it has answered once; for them the
//! counters must show only hits and no scan. Every answer is compared with the exact expected
//! (hashed) document.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_info::{ContainerRuntimeInfo, NodeRuntimeInfo};
use serde_json::json;
use testkit::bench::{median, Lcg};
use testkit::cri_sandbox::{ContainerSpec, CriSandbox, PodSpec};
use testkit::daemons::{free_port, loopback, metric, ScannerDaemon, TestProcess};
use testkit::workloads::jvm::{debian_jdk, DebianJdk};
use testkit::{workloads, TestCa};

const SIZES: [usize; 3] = [20, 50, 100];
const SUBSET: usize = 10;
const ROUNDS_UNCACHED: usize = 15;
const ROUNDS_CACHED: usize = 31;
const TOKEN: &str = "node-bench-token";
/// The reference's figure (insights-runtime-extractor enhancement, quoted in
/// upstream-behaviour.md §6): "it takes ~200 ms to scan a single container", sequentially.
const REFERENCE_PER_CONTAINER: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sleep,
    Node,
    Python,
    Java,
}

/// Container kinds by index: pods of two, a `sleep` sidecar next to a runtime.
const PATTERN: [Kind; 10] = [
    Kind::Sleep,
    Kind::Node,
    Kind::Sleep,
    Kind::Python,
    Kind::Sleep,
    Kind::Java,
    Kind::Sleep,
    Kind::Node,
    Kind::Sleep,
    Kind::Python,
];

struct Runtimes {
    node: PathBuf,
    python: PathBuf,
    python_lib: PathBuf,
    jdk: PathBuf,
    jar: PathBuf,
}

impl Runtimes {
    fn spec(&self, kind: Kind) -> ContainerSpec {
        let jdk = self.jdk.to_str().unwrap();
        match kind {
            Kind::Sleep => ContainerSpec::new("sidecar", &["/bin/sleep", "3600"]),
            Kind::Node => ContainerSpec::new(
                "node",
                &["/usr/bin/node", "-e", "setTimeout(()=>{}, 3600000)"],
            )
            .mount(&self.node, "/usr/bin/node", true)
            .with_host_libraries(),
            Kind::Python => ContainerSpec::new(
                "python",
                &["/usr/bin/python3.11", "-c", "import time; time.sleep(3600)"],
            )
            .mount(&self.python, "/usr/bin/python3.11", true)
            .mount(&self.python_lib, "/usr/lib/python3.11", true)
            .with_host_libraries(),
            Kind::Java => ContainerSpec::new(
                "java",
                &[
                    &format!("{jdk}/bin/java"),
                    "-Xmx16m",
                    "-Xss256k",
                    "-XX:TieredStopAtLevel=1",
                    "-XX:+UseSerialGC",
                    "-jar",
                    "/app/app.jar",
                ],
            )
            .mount(&self.jdk, jdk, true)
            .mount(&self.jar, "/app/app.jar", true)
            .env("JAVA_HOME", jdk)
            .with_host_libraries(),
        }
    }
}

/// What the scanner must report for each kind (clear text), versions from the installed
/// Debian packages.
struct Expectations {
    sleep: ContainerRuntimeInfo,
    node: ContainerRuntimeInfo,
    python: ContainerRuntimeInfo,
    java: ContainerRuntimeInfo,
}

impl Expectations {
    fn new(jdk: &DebianJdk) -> Self {
        let (_, implementor) = workloads::jdk_release(&jdk.home).unwrap();
        let os = ("alpine", "3.99.0"); // testkit's busybox image
        Expectations {
            sleep: common::expected(os.0, os.1, "", "", "", &[]),
            node: common::expected(
                os.0,
                os.1,
                "Node.js",
                &format!("v{}", workloads::deb_upstream_version("nodejs").unwrap()),
                "",
                &[],
            ),
            python: common::expected(
                os.0,
                os.1,
                "Python",
                &format!(
                    "Python {}",
                    workloads::deb_upstream_version("python3.11").unwrap()
                ),
                "",
                &[],
            ),
            java: common::expected(
                os.0,
                os.1,
                "Java",
                &workloads::deb_upstream_version(&jdk.package).unwrap(),
                &implementor,
                &[("Spring Boot", "3.5.3")],
            ),
        }
    }

    fn of(&self, kind: Kind) -> &ContainerRuntimeInfo {
        match kind {
            Kind::Sleep => &self.sleep,
            Kind::Node => &self.node,
            Kind::Python => &self.python,
            Kind::Java => &self.java,
        }
    }
}

/// A container started on the node.
#[derive(Debug, Clone)]
struct Started {
    namespace: String,
    pod: String,
    /// `containerd://<64 hex>`.
    id: String,
    kind: Kind,
}

/// The answer the service must give for `containers`.
fn expected_answer(containers: &[&Started], exp: &Expectations, hashed: bool) -> NodeRuntimeInfo {
    let mut doc = NodeRuntimeInfo::new();
    for c in containers {
        let info = exp.of(c.kind);
        let info = if hashed {
            info.anonymized()
        } else {
            info.clone()
        };
        doc.entry(c.namespace.clone())
            .or_default()
            .entry(c.pod.clone())
            .or_default()
            .insert(c.id.clone(), info);
    }
    doc
}

/// A `runtime-extractor-serve` process; killed on drop.
struct Serve {
    process: TestProcess,
    api: SocketAddr,
    health: SocketAddr,
}

fn free_addr() -> SocketAddr {
    let ip = loopback(1);
    SocketAddr::new(ip, free_port(&[ip]))
}

struct ServeFiles {
    scanner_socket: PathBuf,
    crt: PathBuf,
    key: PathBuf,
    token: PathBuf,
}

impl Serve {
    /// Start serve and wait until `/readyz` says it reaches the scanner.
    async fn start(files: &ServeFiles, extra: &[&str], http: &reqwest::Client) -> Serve {
        let (api, health) = (free_addr(), free_addr());
        let process = TestProcess::spawn(
            Command::new(common::serve_bin())
                .args(["--log", "warn", "--listen"])
                .arg(api.to_string())
                .arg("--health-listen")
                .arg(health.to_string())
                .arg("--scanner-socket")
                .arg(&files.scanner_socket)
                .arg("--tls-cert")
                .arg(&files.crt)
                .arg("--tls-key")
                .arg(&files.key)
                .arg("--auth")
                .arg(format!("token-file={}", files.token.display()))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "serve",
        )
        .unwrap();
        let mut serve = Serve {
            process,
            api,
            health,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = serve.process.exited() {
                panic!("serve exited during startup: {status}");
            }
            let ready = http
                .get(format!("http://{health}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "serve not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve
    }

    fn url(&self, query: &str) -> String {
        format!(
            "https://127.0.0.1:{}/gather_runtime_info{query}",
            self.api.port()
        )
    }

    /// serve's cache and scan counters.
    async fn counters(&self, http: &reqwest::Client) -> Counters {
        let text = http
            .get(format!("http://{}/metrics", self.health))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let get = |series: &str| metric(&text, series) as u64;
        Counters {
            hits: get("runtime_extractor_cache_hits_total"),
            misses: get("runtime_extractor_cache_misses_total"),
            scanned_ok: get("runtime_extractor_containers_scanned_total{result=\"ok\"}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    hits: u64,
    misses: u64,
    scanned_ok: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            hits: self.hits - o.hits,
            misses: self.misses - o.misses,
            scanned_ok: self.scanned_ok - o.scanned_ok,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every container answered was scanned for this request.
    Scanned,
    /// Every container answered came from serve's cache.
    Cached,
}

struct Bench {
    /// HTTPS to serve, a new connection per request.
    https: reqwest::Client,
    /// Plain HTTP to the health port.
    http: reqwest::Client,
}

impl Bench {
    /// One timed request (`ids` = `None`: GET), checked against the expected document and
    /// serve's counters; returns the time from sending to the last byte of the answer.
    async fn request(
        &self,
        serve: &Serve,
        query: &str,
        ids: Option<&[&Started]>,
        want: &NodeRuntimeInfo,
        expect: Expect,
    ) -> Duration {
        let before = serve.counters(&self.http).await;
        let t = Instant::now();
        let req = match ids {
            None => self.https.get(serve.url(query)),
            Some(ids) => self.https.post(serve.url(query)).json(&json!({
                "containerIds": ids.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()
            })),
        };
        let resp = req.bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.unwrap();
        let elapsed = t.elapsed();
        let got: NodeRuntimeInfo = serde_json::from_slice(&body).unwrap();
        assert_eq!(&got, want);
        let n = want
            .values()
            .flat_map(|p| p.values())
            .map(|c| c.len())
            .sum::<usize>() as u64;
        let delta = serve.counters(&self.http).await - before;
        let wanted = match expect {
            Expect::Scanned => Counters {
                hits: 0,
                misses: n,
                scanned_ok: n,
            },
            Expect::Cached => Counters {
                hits: n,
                misses: 0,
                scanned_ok: 0,
            },
        };
        assert_eq!(delta, wanted, "{expect:?} request of {n} containers");
        elapsed
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Row {
    n: usize,
    mix: String,
    get_uncached: Duration,
    post_uncached: Duration,
    cold_get: Duration,
    get_cached: Duration,
    post_cached: Duration,
    load: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with bench/node.sh"]
async fn node_benchmark() {
    testkit::install_crypto_provider();
    let sb = CriSandbox::start_for("node_benchmark");
    let work = tempfile::tempdir().unwrap();
    let debian_jdk = debian_jdk().expect("Debian's OpenJDK (scripts/install-test-deps.sh)");
    let runtimes = Runtimes {
        node: std::fs::canonicalize("/usr/bin/node").expect("/usr/bin/node (nodejs)"),
        python: PathBuf::from("/usr/bin/python3.11"),
        python_lib: PathBuf::from("/usr/lib/python3.11"),
        jar: workloads::spring_boot_jar(work.path(), "3.5.3").unwrap(),
        jdk: debian_jdk.home.clone(),
    };
    assert!(runtimes.python.exists() && runtimes.python_lib.is_dir());
    let exp = Expectations::new(&debian_jdk);

    let scanner_socket = work.path().join("scanner.sock");
    let _scanner =
        ScannerDaemon::start(Path::new(common::bin()), sb.socket_path(), &scanner_socket).unwrap();
    let ca = TestCa::new("node-bench-ca");
    let (crt, key) = ca
        .issue_server(&["localhost"], &["127.0.0.1".parse().unwrap()])
        .write_to(work.path());
    let token = work.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let files = ServeFiles {
        scanner_socket,
        crt,
        key,
        token,
    };
    let bench = Bench {
        https: reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
            // No idle connection is kept: every request pays its TCP + TLS handshake.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    // Results expire at once: nothing this serve answers ever comes from its cache.
    let uncached = Serve::start(&files, &["--cache-max-age", "1ms"], &bench.http).await;

    let runtime = sb.runtime_name().to_owned();
    let mut containers: Vec<Started> = Vec::new();
    let mut rng = Lcg(42);
    let mut rows = Vec::new();
    for n in SIZES {
        let t = Instant::now();
        while containers.len() < n {
            let p = containers.len() / 2;
            let kinds = [
                PATTERN[containers.len() % PATTERN.len()],
                PATTERN[(containers.len() + 1) % PATTERN.len()],
            ];
            let mut spec = PodSpec::new(&format!("ns-{}", p % 5), &format!("pod-{p}"));
            for k in kinds {
                spec = spec.container(runtimes.spec(k));
            }
            let pod = sb.run_pod(&spec).unwrap();
            for (c, kind) in pod.containers.iter().zip(kinds) {
                containers.push(Started {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    id: format!("{runtime}://{}", c.id),
                    kind,
                });
            }
        }
        let count = |k: Kind| containers.iter().filter(|c| c.kind == k).count();
        let mix = format!(
            "{} sleep, {} node, {} python, {} JVM",
            count(Kind::Sleep),
            count(Kind::Node),
            count(Kind::Python),
            count(Kind::Java)
        );
        eprintln!("{n} containers ({mix}) running after {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await; // let the new JVMs settle
        let all: Vec<&Started> = containers.iter().collect();
        let want_all = expected_answer(&all, &exp, true);

        // Clear-text check of every container (and a warm-up of the page cache).
        bench
            .request(
                &uncached,
                "?hash=false",
                None,
                &expected_answer(&all, &exp, false),
                Expect::Scanned,
            )
            .await;

        // A fresh default serve: its first GET finds an empty cache.
        let cached = Serve::start(&files, &[], &bench.http).await;
        let cold_get = bench
            .request(&cached, "", None, &want_all, Expect::Scanned)
            .await;

        let subsets: Vec<Vec<&Started>> = (0..ROUNDS_UNCACHED.max(ROUNDS_CACHED))
            .map(|_| {
                rng.distinct(SUBSET, n)
                    .into_iter()
                    .map(|i| &containers[i])
                    .collect()
            })
            .collect();
        let load_before = loadavg();
        let (mut get_u, mut post_u) = (Vec::new(), Vec::new());
        for subset in subsets.iter().take(ROUNDS_UNCACHED) {
            let want = expected_answer(subset, &exp, true);
            get_u.push(
                bench
                    .request(&uncached, "", None, &want_all, Expect::Scanned)
                    .await,
            );
            post_u.push(
                bench
                    .request(&uncached, "", Some(subset), &want, Expect::Scanned)
                    .await,
            );
        }
        let (mut get_c, mut post_c) = (Vec::new(), Vec::new());
        for subset in subsets.iter().take(ROUNDS_CACHED) {
            let want = expected_answer(subset, &exp, true);
            get_c.push(
                bench
                    .request(&cached, "", None, &want_all, Expect::Cached)
                    .await,
            );
            post_c.push(
                bench
                    .request(&cached, "", Some(subset), &want, Expect::Cached)
                    .await,
            );
        }
        drop(cached);
        let row = Row {
            n,
            mix,
            get_uncached: median(get_u),
            post_uncached: median(post_u),
            cold_get,
            get_cached: median(get_c),
            post_cached: median(post_c),
            load: format!("{load_before} → {}", loadavg()),
        };
        eprintln!(
            "N={n}: GET {} / POST {} uncached, GET {} / POST {} cached (load {})",
            ms(row.get_uncached),
            ms(row.post_uncached),
            ms(row.get_cached),
            ms(row.post_cached),
            row.load
        );
        rows.push(row);
    }
    drop(uncached);
    print_tables(&rows);
}

fn print_tables(rows: &[Row]) {
    let pct = |a: Duration, b: Duration| 100.0 * a.as_secs_f64() / b.as_secs_f64();
    println!(
        "\nUncached (every answered container scanned for the request; medians of {ROUNDS_UNCACHED} rounds):\n"
    );
    println!("| N (mix) | GET all | per container | POST 10 of N | per container | POST 10 / GET | 10 / N | first GET of a fresh serve | reference at ~200 ms/container: GET / POST 10 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} ({}) | {} | {} | {} | {} | **{:.1} %** | {:.0} % | {} | ~{:.0} s / ~{:.0} s |",
            r.n,
            r.mix,
            ms(r.get_uncached),
            ms(r.get_uncached / r.n as u32),
            ms(r.post_uncached),
            ms(r.post_uncached / SUBSET as u32),
            pct(r.post_uncached, r.get_uncached),
            100.0 * SUBSET as f64 / r.n as f64,
            ms(r.cold_get),
            (REFERENCE_PER_CONTAINER * r.n as u32).as_secs_f64(),
            (REFERENCE_PER_CONTAINER * SUBSET as u32).as_secs_f64(),
        );
    }
    println!(
        "\nCached (repeated: every container answered from serve's cache, no scan; medians of {ROUNDS_CACHED} rounds):\n"
    );
    println!("| N | GET all | per container | POST 10 of N | per container | POST 10 / GET | cached GET / uncached GET | load average (1, 5, 15 min) before → after |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} % | {:.1} % | {} |",
            r.n,
            ms(r.get_cached),
            ms(r.get_cached / r.n as u32),
            ms(r.post_cached),
            ms(r.post_cached / SUBSET as u32),
            pct(r.post_cached, r.get_cached),
            pct(r.get_cached, r.get_uncached),
            r.load,
        );
    }
}

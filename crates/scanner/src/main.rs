//! `runtime-extractor`: see `runtime-extractor --help` and docs/.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use runtime_info::{ContainerId, ContainerRuntimeInfo, NodeRuntimeInfo};
use scanner::cli::{
    AnalysisArgs, Cli, Command, HashArgs, LogFormat, Output, ScanArgs, ScannerArgs,
};
use scanner::daemon::{self, ScannerConfig};
use scanner::discovery::CriClient;
use scanner::kernel;
use scanner::sandbox::{self, SandboxConfig};
use scanner::scan::{self, ScanOptions};

fn main() -> ExitCode {
    // The sandbox helper must stay single-threaded until it has joined the container's
    // namespaces: dispatch before anything else starts.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(sandbox::HELPER_ARG)) {
        let code = sandbox::helper_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime-extractor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runtime-extractor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = match cli.command {
        Command::Scan(_) => "warn",
        _ => "info",
    };
    // `Targets` takes the usual `level,target=level` syntax without a regex engine.
    let filter: tracing_subscriber::filter::Targets = cli
        .log
        .as_deref()
        .unwrap_or(default)
        .parse()
        .unwrap_or_else(|e| {
            eprintln!("runtime-extractor: ignoring --log: {e}");
            default.parse().unwrap_or_default()
        });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match cli.log_format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(args) => scan_command(args).await,
        Command::Scanner(args) => scanner_command(args).await,
        Command::Hash(args) => hash_command(&args),
    }
}

fn scan_options(a: &AnalysisArgs) -> ScanOptions {
    ScanOptions {
        sandbox: SandboxConfig {
            timeout: a.container_timeout,
            ..SandboxConfig::default()
        },
        concurrency: a
            .concurrency
            .unwrap_or_else(scan::default_concurrency)
            .max(1),
        ..ScanOptions::default()
    }
}

/// Every discovered container is held by a pidfd until its turn: allow as many descriptors as
/// the hard limit does (the soft default, 1024, is below a dense node's container count).
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The capabilities of [`kernel::REQUIRED_CAPABILITIES`] (unless `unchecked`), then the
/// kernel probe.
fn check_privileges(unchecked: bool) -> anyhow::Result<()> {
    let missing = kernel::missing_capabilities().context("cannot read capabilities")?;
    if !missing.is_empty() && unchecked {
        let missing: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
        eprintln!(
            "runtime-extractor: going on without {} (--unchecked-capabilities)",
            missing.join(", ")
        );
    } else if !missing.is_empty() {
        let all: Vec<String> = kernel::REQUIRED_CAPABILITIES
            .iter()
            .map(|(c, _)| c.to_string())
            .collect();
        let missing: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
        bail!(
            "must run as root with {} (missing: {}); scanning enters other processes' namespaces",
            all.join(", "),
            missing.join(", ")
        );
    }
    raise_open_file_limit();
    if let Err(e) = kernel::probe() {
        // Without CAP_SYS_ADMIN the mount probe cannot run: the test wants the scan's failure.
        if !unchecked {
            return Err(e.into());
        }
    }
    Ok(())
}

async fn scan_command(args: ScanArgs) -> anyhow::Result<ExitCode> {
    check_privileges(args.analysis.unchecked_capabilities)?;
    let opts = scan_options(&args.analysis);
    let hash = |info: ContainerRuntimeInfo| if args.hash { info.anonymized() } else { info };
    if !args.pid.is_empty() || args.host {
        let mut names = BTreeMap::new();
        let (found, errors) = if args.host {
            eprintln!("runtime-extractor: scanning every process of this machine...");
            let host = scan::scan_host(&opts)
                .await
                .context("cannot list processes")?;
            eprintln!(
                "runtime-extractor: {} processes, {} analysed (shells and init wrappers are not), {} with a recognised runtime",
                host.processes,
                host.analysed,
                host.found.len()
            );
            names = host.names;
            (host.found, vec![])
        } else {
            for pid in &args.pid {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    bail!("unknown PID {pid}: no such process");
                }
            }
            scan::scan_pids(&opts, &args.pid).await
        };
        for (pid, e) in &errors {
            eprintln!("runtime-extractor: PID {pid}: {e}");
        }
        let found: BTreeMap<String, ContainerRuntimeInfo> =
            found.into_iter().map(|(k, v)| (k, hash(v))).collect();
        print_by_key(&found, &names, args.output, "PID")?;
        return Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let ids: Vec<ContainerId> = args
        .container_ids
        .iter()
        .map(|s| s.parse::<ContainerId>())
        .collect::<Result<_, _>>()?;
    let cri = CriClient::connect(args.analysis.cri_socket.as_deref()).await?;
    let results = scan::scan_node(&opts, &cri, &ids, false).await?;
    let mut failed = false;
    for r in &results {
        if let Some(e) = &r.error {
            failed = true;
            eprintln!(
                "runtime-extractor: {}/{} {}: {e}",
                r.namespace, r.pod, r.container_id
            );
        }
    }
    let mut node = NodeRuntimeInfo::new();
    let mut rows = Vec::new();
    for r in results {
        if let Some(info) = r.info {
            let info = hash(info);
            rows.push((
                format!("{}/{}/{}", r.namespace, r.pod, r.container),
                info.clone(),
            ));
            node.entry(r.namespace)
                .or_default()
                .entry(r.pod)
                .or_default()
                .insert(r.container_id, info);
        }
    }
    match args.output {
        Output::Json => print_json(&node)?,
        Output::Table => print_table(&rows, "NAMESPACE/POD/CONTAINER")?,
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// JSON keyed by PID, or a table whose first column is the PID and, when known, the
/// process name.
fn print_by_key(
    found: &BTreeMap<String, ContainerRuntimeInfo>,
    names: &BTreeMap<String, String>,
    output: Output,
    key: &str,
) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(found),
        Output::Table => {
            let mut rows: Vec<(u64, String, ContainerRuntimeInfo)> = found
                .iter()
                .map(|(k, v)| {
                    let label = match names.get(k) {
                        Some(name) => format!("{k} {name}"),
                        None => k.clone(),
                    };
                    (k.parse::<u64>().unwrap_or(u64::MAX), label, v.clone())
                })
                .collect();
            rows.sort_by_key(|(pid, _, _)| *pid);
            let rows: Vec<(String, ContainerRuntimeInfo)> =
                rows.into_iter().map(|(_, k, v)| (k, v)).collect();
            print_table(&rows, key)
        }
    }
}

fn print_table(rows: &[(String, ContainerRuntimeInfo)], key: &str) -> anyhow::Result<()> {
    let header = [
        key,
        "OS",
        "OS VERSION",
        "KIND",
        "VERSION",
        "IMPLEMENTER",
        "FRAMEWORKS",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for (k, i) in rows {
        let frameworks = i
            .runtimes
            .iter()
            .map(|r| format!("{} {}", r.name, r.version).trim().to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        table.push(vec![
            k.clone(),
            dash(&i.os),
            dash(&i.os_version),
            dash(&i.kind),
            dash(&i.kind_version),
            dash(&i.kind_implementer),
            dash(&frameworks),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// `hash`: the gatherer's `workload_hash` of each value (the empty string included), one
/// `<hash>  <value>` line each, in input order.
fn hash_command(args: &HashArgs) -> anyhow::Result<ExitCode> {
    use std::io::BufRead as _;
    let mut out = std::io::stdout().lock();
    let mut print = |value: &str| writeln!(out, "{}  {value}", runtime_info::workload_hash(value));
    if args.values.is_empty() || args.values == ["-"] {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read standard input")?;
            print(line.strip_suffix('\r').unwrap_or(&line))?;
        }
    } else {
        for value in &args.values {
            print(value)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn scanner_command(args: ScannerArgs) -> anyhow::Result<ExitCode> {
    check_privileges(args.analysis.unchecked_capabilities)?;
    let config = ScannerConfig {
        socket: args.socket,
        socket_mode: args.socket_mode,
        socket_gid: args.socket_gid,
        cri_socket: args.analysis.cri_socket.clone(),
        scan: scan_options(&args.analysis),
    };
    daemon::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (Kubernetes) or SIGINT (a person).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown requested");
}

//! Command-line interface of `runtime-extractor` (clap). `main.rs` only dispatches.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runtime-extractor",
    version,
    about = "Fingerprints what runs in this node's containers (OS, runtime, frameworks) without executing anything from them"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RUNTIME_EXTRACTOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (`level,target=level`, e.g. `info`, `info,scanner::scan=debug`); default: warn for
    /// `scan`, info for the daemons.
    #[arg(long, global = true, env = "RUNTIME_EXTRACTOR_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan this node once and print the result (JSON by default).
    Scan(ScanArgs),
    /// Run the privileged scanner daemon on a unix socket (the HTTPS service,
    /// `runtime-extractor-serve`, is its only client).
    Scanner(ScannerArgs),
    /// Print the anonymising hash of each value (the 12 characters a gatherer archive holds
    /// instead of a namespace or an image repository), to find your own in an archive.
    /// Needs no privileges.
    Hash(HashArgs),
}

/// Options shared by `scan` and `scanner`.
#[derive(Debug, Args)]
pub struct AnalysisArgs {
    /// CRI socket; default: $CONTAINER_RUNTIME_ENDPOINT, else /run/crio/crio.sock, else
    /// /run/containerd/containerd.sock.
    #[arg(long, env = "RUNTIME_EXTRACTOR_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,
    /// Deadline for analysing one container; a sandbox past it is killed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "RUNTIME_EXTRACTOR_CONTAINER_TIMEOUT")]
    pub container_timeout: Duration,
    /// Containers analysed in parallel (default: number of CPUs).
    #[arg(long, env = "RUNTIME_EXTRACTOR_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Start even when a required capability is missing, so each container's analysis
    /// shows what it costs (the capability-minimality test uses this; never in production).
    #[arg(long, hide = true)]
    pub unchecked_capabilities: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Only these containers (`cri-o://<64 hex>`, `containerd://<64 hex>` or bare 64 hex);
    /// repeatable. IDs not running here are ignored.
    #[arg(long = "container-id", value_name = "ID", conflicts_with_all = ["pid", "host"])]
    pub container_ids: Vec<String>,
    /// Fingerprint these processes as if each were a container's main process (output keyed
    /// by PID); repeatable. Needs no container runtime.
    #[arg(long, value_name = "PID", conflicts_with = "host")]
    pub pid: Vec<u32>,
    /// Every process of this machine with a recognised runtime, keyed by PID. Needs no
    /// container runtime.
    #[arg(long)]
    pub host: bool,
    /// Anonymise values as the HTTPS service does (12-character SHA-256 hashes).
    #[arg(long)]
    pub hash: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Values to hash; none (or `-`): one value per line from standard input.
    #[arg(value_name = "VALUE")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// JSON (NodeRuntimeInfo for containers, an object keyed by PID otherwise).
    Json,
    /// A table for people.
    Table,
}

#[derive(Debug, Args)]
pub struct ScannerArgs {
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Unix socket to listen on.
    #[arg(
        long,
        default_value = "/run/runtime-extractor/scanner.sock",
        env = "RUNTIME_EXTRACTOR_SCANNER_SOCKET"
    )]
    pub socket: PathBuf,
    /// Permission bits of the socket, octal.
    #[arg(long, default_value = "600", value_parser = parse_octal, env = "RUNTIME_EXTRACTOR_SOCKET_MODE")]
    pub socket_mode: u32,
    /// Group ID owning the socket (with --socket-mode 660, lets an unprivileged `serve` in
    /// that group connect).
    #[arg(long, env = "RUNTIME_EXTRACTOR_SOCKET_GID")]
    pub socket_gid: Option<u32>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal permission mode such as 600"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_scan_variants() {
        let cli =
            Cli::try_parse_from(["x", "scan", "--pid", "1", "--pid", "2", "-o", "table"]).unwrap();
        let Command::Scan(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.pid, vec![1, 2]);
        assert_eq!(a.output, Output::Table);
        assert!(Cli::try_parse_from(["x", "scan", "--pid", "1", "--host"]).is_err());
        let cli = Cli::try_parse_from(["x", "scan", "--container-timeout", "250ms"]).unwrap();
        let Command::Scan(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.analysis.container_timeout, Duration::from_millis(250));
        let cli = Cli::try_parse_from(["x", "hash", "openshift-monitoring", ""]).unwrap();
        let Command::Hash(h) = cli.command else {
            panic!()
        };
        assert_eq!(h.values, ["openshift-monitoring", ""]);
        assert_eq!(parse_octal("660"), Ok(0o660));
        assert!(parse_octal("999").is_err());
    }
}

//! `workload-gatherer`: command line only; the work is in the `gatherer` library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gatherer::archive::{write_report, OutputTarget, STATUS_PATH, WORKLOAD_INFO_PATH};
use gatherer::duration::parse_duration;
use gatherer::extractors::{
    ExtractorFilter, DEFAULT_CA_FILE, DEFAULT_CONCURRENCY, DEFAULT_NAMESPACE, DEFAULT_PORT,
    DEFAULT_SELECTOR, DEFAULT_SERVER_NAME, DEFAULT_TOKEN_FILE,
};
use gatherer::gather::{gather, GatherSettings, PodSource, RuntimeInfoSettings};
use gatherer::pods::ListOptions;

/// Gathers anonymised workload shapes and per-container runtime info into
/// `config/workload_info.json` (the insights-operator `workloads/workload_info` record).
#[derive(Debug, Parser)]
#[command(name = "workload-gatherer", version, about, long_about = None)]
struct Args {
    /// Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Read pods from a PodList JSON file (`kubectl get pods -A -o json`) instead of the API.
    /// Extractor pods are then taken from the same file; no API server is contacted.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_PODS_FILE")]
    pods_file: Option<PathBuf>,

    /// Namespace of the extractor pods ("" = all namespaces).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    extractor_namespace: String,

    /// Label selector of the extractor pods.
    #[arg(long, value_name = "SELECTOR", env = "WORKLOAD_GATHERER_EXTRACTOR_SELECTOR", default_value = DEFAULT_SELECTOR)]
    extractor_selector: String,

    /// HTTPS port of the extractors.
    #[arg(long, value_name = "PORT", env = "WORKLOAD_GATHERER_EXTRACTOR_PORT", default_value_t = DEFAULT_PORT)]
    extractor_port: u16,

    /// PEM bundle of the only CA trusted for the extractors' certificates.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_EXTRACTOR_CA_FILE", default_value = DEFAULT_CA_FILE)]
    extractor_ca_file: PathBuf,

    /// Name the extractors' certificate must be valid for (pod IPs are dialled directly).
    #[arg(long, value_name = "DNS_NAME", env = "WORKLOAD_GATHERER_EXTRACTOR_SERVER_NAME", default_value = DEFAULT_SERVER_NAME)]
    extractor_server_name: String,

    /// File holding the bearer token sent to the extractors.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE)]
    token_file: PathBuf,

    /// Nodes asked at the same time.
    #[arg(long, value_name = "N", env = "WORKLOAD_GATHERER_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = parse_concurrency)]
    concurrency: usize,

    /// Time allowed to each node's extractor (e.g. 120s, 2m, 1m30s).
    #[arg(long, value_name = "DURATION", env = "WORKLOAD_GATHERER_NODE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    node_timeout: Duration,

    /// Do not contact the extractors (shapes and images only).
    #[arg(long, env = "WORKLOAD_GATHERER_NO_RUNTIME_INFO")]
    no_runtime_info: bool,

    /// Output: a directory (→ DIR/config/workload_info.json) or a FILE.tar.gz.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_OUTPUT")]
    output: PathBuf,

    /// Only warnings and errors on stderr (no progress lines).
    #[arg(long, short)]
    quiet: bool,
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number between 1 and 4096")),
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found ($KUBECONFIG, ~/.kube/config or in-cluster)",
        )?,
    };
    kube::Client::try_from(config).context("cannot create the Kubernetes client")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = ExtractorFilter::new(&args.extractor_namespace, &args.extractor_selector)?;
    let source = match &args.pods_file {
        Some(path) => PodSource::File(path.clone()),
        None => PodSource::Api(kube_client(args.kubeconfig.as_ref()).await?),
    };
    let runtime_info = (!args.no_runtime_info).then(|| RuntimeInfoSettings {
        filter,
        port: args.extractor_port,
        ca_file: args.extractor_ca_file.clone(),
        server_name: args.extractor_server_name.clone(),
        token_file: args.token_file.clone(),
        concurrency: args.concurrency,
        node_timeout: args.node_timeout,
    });
    let settings = GatherSettings {
        source,
        runtime_info,
        list: ListOptions::default(),
    };
    let report = gather(&settings).await?;
    let workload = report
        .workload
        .to_json()
        .context("cannot serialise the report")?;
    let status = report
        .status
        .to_json()
        .context("cannot serialise the status")?;
    let target = OutputTarget::from_path(&args.output);
    let written = tokio::task::spawn_blocking(move || {
        write_report(
            &target,
            &[(WORKLOAD_INFO_PATH, &workload), (STATUS_PATH, &status)],
        )
    })
    .await
    .context("the writer task failed")??;
    let s = &report.status;
    let rt = &s.runtime_info;
    let runtime = if rt.gathered {
        format!(
            "runtime info from {}/{} nodes ({} failed)",
            rt.nodes_answered,
            rt.nodes_asked,
            rt.nodes_failed.len()
        )
    } else {
        format!(
            "no runtime info: {}",
            rt.skipped_reason.as_deref().unwrap_or("skipped")
        )
    };
    tracing::info!(
        "wrote {}: {} pods, {} shapes, {} images, {}{}",
        written.display(),
        s.pods,
        s.shapes,
        s.image_count,
        runtime,
        if s.errors.is_empty() {
            String::new()
        } else {
            format!("; {} problems listed in {STATUS_PATH}", s.errors.len())
        }
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // One crypto provider for kube and reqwest (both built without a default one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    init_logging(args.quiet);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workload-gatherer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

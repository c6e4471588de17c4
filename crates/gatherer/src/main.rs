//! `workload-gatherer`: command line only; the work is in the `gatherer` library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gatherer::archive::{write_report, OutputTarget, STATUS_PATH, WORKLOAD_INFO_PATH};
use gatherer::cli::Args;
use gatherer::extractors::ExtractorFilter;
use gatherer::gather::{gather, GatherSettings, PodSource, RuntimeInfoSettings};
use gatherer::pods::ListOptions;

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

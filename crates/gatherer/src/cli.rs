//! Command-line flags of `workload-gatherer` (clap). In the library so that other code (the
//! deployment manifests' test) can check an argument list against the real parser.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::duration::parse_duration;
use crate::extractors::{
    DEFAULT_CA_FILE, DEFAULT_CONCURRENCY, DEFAULT_NAMESPACE, DEFAULT_PORT, DEFAULT_SELECTOR,
    DEFAULT_SERVER_NAME, DEFAULT_TOKEN_FILE,
};

/// Gathers anonymised workload shapes and per-container runtime info into
/// `config/workload_info.json` (the insights-operator `workloads/workload_info` record).
#[derive(Debug, Parser)]
#[command(name = "workload-gatherer", version, about, long_about = None)]
pub struct Args {
    /// Kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Read pods from a PodList JSON file (`kubectl get pods -A -o json`) instead of the API.
    /// Extractor pods are then taken from the same file; no API server is contacted.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_PODS_FILE")]
    pub pods_file: Option<PathBuf>,

    /// Namespace of the extractor pods ("" = all namespaces).
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub extractor_namespace: String,

    /// Label selector of the extractor pods.
    #[arg(long, value_name = "SELECTOR", env = "WORKLOAD_GATHERER_EXTRACTOR_SELECTOR", default_value = DEFAULT_SELECTOR)]
    pub extractor_selector: String,

    /// HTTPS port of the extractors.
    #[arg(long, value_name = "PORT", env = "WORKLOAD_GATHERER_EXTRACTOR_PORT", default_value_t = DEFAULT_PORT)]
    pub extractor_port: u16,

    /// PEM bundle of the only CA trusted for the extractors' certificates.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_EXTRACTOR_CA_FILE", default_value = DEFAULT_CA_FILE)]
    pub extractor_ca_file: PathBuf,

    /// Name the extractors' certificate must be valid for (pod IPs are dialled directly).
    #[arg(long, value_name = "DNS_NAME", env = "WORKLOAD_GATHERER_EXTRACTOR_SERVER_NAME", default_value = DEFAULT_SERVER_NAME)]
    pub extractor_server_name: String,

    /// File holding the bearer token sent to the extractors.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,

    /// Nodes asked at the same time.
    #[arg(long, value_name = "N", env = "WORKLOAD_GATHERER_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Time allowed to each node's extractor (e.g. 120s, 2m, 1m30s).
    #[arg(long, value_name = "DURATION", env = "WORKLOAD_GATHERER_NODE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub node_timeout: Duration,

    /// Do not contact the extractors (shapes and images only).
    #[arg(long, env = "WORKLOAD_GATHERER_NO_RUNTIME_INFO")]
    pub no_runtime_info: bool,

    /// Output: a directory (→ DIR/config/workload_info.json) or a FILE.tar.gz.
    #[arg(long, value_name = "PATH", env = "WORKLOAD_GATHERER_OUTPUT")]
    pub output: PathBuf,

    /// Only warnings and errors on stderr (no progress lines).
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number between 1 and 4096")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn output_is_required_and_concurrency_bounded() {
        assert!(Args::try_parse_from(["workload-gatherer"]).is_err());
        let a = Args::try_parse_from(["workload-gatherer", "--output", "/r", "--concurrency", "8"])
            .unwrap();
        assert_eq!(a.output, PathBuf::from("/r"));
        assert_eq!(a.concurrency, 8);
        assert!(
            Args::try_parse_from(["workload-gatherer", "--output=/r", "--concurrency=0"]).is_err()
        );
    }
}

//! Command-line flags of `runtime-extractor-serve` (each also settable from the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// The identity the reference's kube-rbac-proxy lets in (its static authorization rule).
pub const DEFAULT_ALLOWED_USER: &str = "system:serviceaccount:openshift-insights:operator";

/// Flags of `runtime-extractor-serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS listen address of the API (`/gather_runtime_info`).
    #[arg(long, env = "RUNTIME_EXTRACTOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Plain-HTTP listen address of `/healthz`, `/readyz` and `/metrics` (kubelet probes, Prometheus).
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_HEALTH_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    pub health_listen: SocketAddr,

    /// Unix socket of the privileged `runtime-extractor scanner`.
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_SCANNER_SOCKET",
        default_value = "/run/runtime-extractor/scanner.sock"
    )]
    pub scanner_socket: PathBuf,

    /// PEM certificate chain served to clients; re-read when it changes.
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_TLS_CERT",
        default_value = "/etc/tls/private/tls.crt"
    )]
    pub tls_cert: PathBuf,

    /// PEM private key matching --tls-cert; re-read when it changes.
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_TLS_KEY",
        default_value = "/etc/tls/private/tls.key"
    )]
    pub tls_key: PathBuf,

    /// Oldest TLS version accepted: VersionTLS12 or VersionTLS13 (OpenShift TLS profile spelling;
    /// VersionTLS10/11 are accepted and raised to TLS 1.2, the oldest rustls speaks).
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_TLS_MIN_VERSION",
        default_value = "VersionTLS12"
    )]
    pub tls_min_version: String,

    /// Comma-separated IANA names of the TLS 1.2 cipher suites to allow (e.g.
    /// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). Empty = every suite rustls supports. TLS 1.3
    /// suites are not configurable (as in Go); their names are accepted and ignored. Unknown
    /// names stop the server at startup.
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_TLS_CIPHER_SUITES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub tls_cipher_suites: Vec<String>,

    /// How often the certificate and key files are checked for changes (Kubernetes rotates a
    /// secret by swapping a symlink, so the files are polled, not watched).
    #[arg(long, env = "RUNTIME_EXTRACTOR_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tls_reload_interval: Duration,

    /// Authentication: `kubernetes` (TokenReview + --allow-user or SubjectAccessReview),
    /// `token-file=PATH` (one static bearer token) or `none` (requires
    /// --insecure-allow-unauthenticated).
    #[arg(long, env = "RUNTIME_EXTRACTOR_AUTH", default_value = "kubernetes")]
    pub auth: AuthMode,

    /// With --auth kubernetes: user names allowed without a SubjectAccessReview (repeatable;
    /// comma-separated in the environment variable).
    #[arg(
        long = "allow-user",
        env = "RUNTIME_EXTRACTOR_ALLOW_USERS",
        value_delimiter = ',',
        default_value = DEFAULT_ALLOWED_USER
    )]
    pub allow_users: Vec<String>,

    /// With --auth kubernetes: how long a TokenReview / SubjectAccessReview answer is reused.
    #[arg(long, env = "RUNTIME_EXTRACTOR_AUTH_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Required to run with --auth none: anyone who can reach the port can then read the node's
    /// inventory.
    #[arg(long, env = "RUNTIME_EXTRACTOR_INSECURE_ALLOW_UNAUTHENTICATED")]
    pub insecure_allow_unauthenticated: bool,

    /// Kubeconfig used for TokenReview/SubjectAccessReview; default: in-cluster configuration
    /// (or $KUBECONFIG).
    #[arg(long, env = "RUNTIME_EXTRACTOR_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Server-side deadline of one request (below the gatherer's 120 s); past it the answer
    /// is 504 and the work nobody else waits for is cancelled.
    #[arg(long, env = "RUNTIME_EXTRACTOR_REQUEST_TIMEOUT", default_value = "100s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Containers scanned at the same time (across all requests); each in-flight scan is
    /// shared by every request that needs that container.
    #[arg(long, env = "RUNTIME_EXTRACTOR_MAX_CONCURRENT_SCANS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_concurrent_scans: u32,

    /// Open HTTPS connections at most; connections over the cap are closed at once, before
    /// the TLS handshake (the gatherer needs one per request; this only bites a flood).
    #[arg(long, env = "RUNTIME_EXTRACTOR_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,

    /// Upper bound on the age of a cached result, even when the container's process is
    /// unchanged (0 = no bound).
    #[arg(long, env = "RUNTIME_EXTRACTOR_CACHE_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub cache_max_age: Duration,

    /// Containers kept in the result cache (least recently scanned evicted first).
    #[arg(
        long,
        env = "RUNTIME_EXTRACTOR_CACHE_CAPACITY",
        default_value_t = 10_000
    )]
    pub cache_capacity: usize,

    /// On SIGTERM/SIGINT: how long in-flight requests may finish before they are cancelled.
    #[arg(long, env = "RUNTIME_EXTRACTOR_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl ServeArgs {
    /// `serve`'s flags alone, parsed as the command line parses them (`argv[0]` first): for
    /// running the server in-process (tests, benchmarks) with the binary's defaults and checks.
    pub fn try_parse_from<I, T>(argv: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        <Only as clap::Parser>::try_parse_from(argv).map(|o| o.serve)
    }
}

/// The `runtime-extractor-serve` command line: logging plus [`ServeArgs`].
#[derive(Debug, clap::Parser)]
#[command(
    name = "runtime-extractor-serve",
    version,
    about = "The node agent's unprivileged HTTPS service (GET/POST /gather_runtime_info) in front of the privileged scanner (`runtime-extractor scanner`)"
)]
pub struct ServeCli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "RUNTIME_EXTRACTOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `service=debug`).
    #[arg(long, default_value = "info", env = "RUNTIME_EXTRACTOR_LOG")]
    pub log: String,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--auth` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    Kubernetes,
    TokenFile(PathBuf),
    None,
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" => Ok(AuthMode::Kubernetes),
            "none" => Ok(AuthMode::None),
            _ => match s.strip_prefix("token-file=") {
                Some(path) if !path.is_empty() => Ok(AuthMode::TokenFile(PathBuf::from(path))),
                _ => Err(format!(
                    "invalid --auth {s:?}: expected kubernetes, token-file=PATH or none"
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn auth_modes() {
        assert_eq!("kubernetes".parse(), Ok(AuthMode::Kubernetes));
        assert_eq!("none".parse(), Ok(AuthMode::None));
        assert_eq!(
            "token-file=/x/y".parse(),
            Ok(AuthMode::TokenFile(PathBuf::from("/x/y")))
        );
        assert!("token-file=".parse::<AuthMode>().is_err());
        assert!("basic".parse::<AuthMode>().is_err());
    }

    #[test]
    fn defaults_match_the_documentation() {
        let cli = Cli::try_parse_from(["serve"]).unwrap().serve;
        assert_eq!(cli.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(cli.health_listen.to_string(), "0.0.0.0:8081");
        assert_eq!(
            cli.scanner_socket,
            PathBuf::from("/run/runtime-extractor/scanner.sock")
        );
        assert_eq!(cli.allow_users, vec![DEFAULT_ALLOWED_USER.to_owned()]);
        assert_eq!(cli.request_timeout, Duration::from_secs(100));
        assert_eq!(cli.auth, AuthMode::Kubernetes);
        assert!(!cli.insecure_allow_unauthenticated);
        let cli = Cli::try_parse_from([
            "serve",
            "--allow-user",
            "a",
            "--allow-user",
            "b",
            "--tls-cipher-suites",
            "X,Y",
        ])
        .unwrap()
        .serve;
        assert_eq!(cli.allow_users, vec!["a", "b"]);
        assert_eq!(cli.tls_cipher_suites, vec!["X", "Y"]);
    }
}

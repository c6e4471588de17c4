//! `runtime-extractor-serve`: see `runtime-extractor-serve --help`, docs/api.md and
//! docs/security.md.

use std::process::ExitCode;

use clap::Parser as _;
use service::config::{LogFormat, ServeCli};

fn main() -> ExitCode {
    let cli = ServeCli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // rustls has ring compiled in and nothing else; make it the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime-extractor-serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service::run(cli.serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime-extractor-serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

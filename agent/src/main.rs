//! `tfagent`: the node agent daemon. Runs in the foreground (zinit and
//! systemd supervise it), logs to stdout, stops cleanly on SIGTERM/SIGINT.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;
use tfagent::{
    app,
    config::{BootConfig, DEFAULT_CONFIG, LogFormat},
};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "tfagent", version, about = "The tfagent node agent daemon")]
struct Args {
    /// Boot config (TOML); every field has a default. Without it,
    /// /etc/tfagent/tfagent.toml is read when it exists (how a node's base
    /// image configures an agent whose zinit unit comes from the flist).
    #[arg(long, env = "TFAGENT_CONFIG")]
    config: Option<PathBuf>,
}

fn init_logging(config: &BootConfig) {
    // TFAGENT_LOG overrides the configured level, for one-off debugging.
    let filter = std::env::var("TFAGENT_LOG")
        .ok()
        .and_then(|level| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match config.log_format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Installs the SIGTERM and SIGINT handlers now, before the agent tells
/// anyone it is ready, and returns a future that completes on either.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => BootConfig::load(path)?,
        None if Path::new(DEFAULT_CONFIG).exists() => BootConfig::load(Path::new(DEFAULT_CONFIG))?,
        None => BootConfig::default(),
    };
    init_logging(&config);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        ?config,
        "tfagent starting"
    );
    let shutdown = shutdown_signal()?;
    app::run(config, shutdown)
        .await
        .context("tfagent stopped on an error")
}

/// The error and its causes, skipping a cause whose text the message before
/// it already includes (the library's errors name their source inline).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = describe(&error);
            tracing::error!("{error}");
            eprintln!("tfagent: {error}");
            ExitCode::FAILURE
        }
    }
}

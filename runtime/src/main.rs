//! The `canto` binary: parse arguments, load the config, start the server,
//! serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use canto::{Config, Server};
use clap::Parser;

/// Exit status for a config that failed to load (as sysexits' EX_CONFIG).
const EXIT_BAD_CONFIG: u8 = 78;

/// canto: Prosody's HTTP server, with WebAssembly component modules.
///
/// With no --config, serves the built-in demo modules on localhost:5280.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A Prosody config file (prosody.cfg.lua).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check something without serving.
    Check {
        #[command(subcommand)]
        what: CheckWhat,
    },
}

#[derive(clap::Subcommand)]
enum CheckWhat {
    /// Parse and validate the config, load every module, and show what
    /// would be served; exits non-zero on any error.
    Config,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A check prints its own report; only problems should be logged.
    canto::telemetry::init(if args.command.is_some() { "warn" } else { canto::telemetry::DEFAULT_FILTER });
    let builtins = canto::builtin::names();
    let config = match &args.config {
        Some(path) => Config::load(path, &builtins),
        None => Config::builtin_default(&builtins),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            let checking = args.command.is_some();
            if checking {
                println!("error: {error}");
            } else {
                eprintln!("canto: {error}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(Command::Check { what: CheckWhat::Config }) = args.command {
        for warning in &config.warnings {
            println!("warning: {warning}");
        }
        return match check(&config) {
            Ok(summary) => {
                print!("{summary}");
                println!("config OK");
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("canto: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &Config) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok(runtime.block_on(canto::server::describe(config))?)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::info!("canto {} starting with {}", env!("CARGO_PKG_VERSION"), config.origin);
        let server = Server::start(&config).await.context("cannot start")?;
        reload_on_sighup(server.reload_handle());
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

/// SIGHUP re-reads the config, as it does for Prosody.
fn reload_on_sighup(handle: canto::server::ReloadHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(error) => return tracing::warn!(%error, "cannot watch SIGHUP; config reload is unavailable"),
        };
        while hangups.recv().await.is_some() {
            handle.reload().await;
        }
    });
    #[cfg(not(unix))]
    drop(handle);
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

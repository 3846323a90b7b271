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
    /// Make the running server re-read its config and certificates, as
    /// SIGHUP does; finds it by the config's `pidfile`.
    Reload,
}

#[derive(clap::Subcommand)]
enum CheckWhat {
    /// Parse and validate the config, load every module, and show what
    /// would be served; exits non-zero on any error.
    Config,
    /// Show, for each https port and host, which certificate would be
    /// served, its names and expiry; exits non-zero on any problem.
    Certs,
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
    if let Some(Command::Reload) = args.command {
        return match signal_reload(&config) {
            Ok(pid) => {
                println!("asked canto (pid {pid}) to reload {}", config.origin);
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Check { what: CheckWhat::Certs }) = args.command {
        let mut ports: Vec<u16> = config.https_listeners.iter().map(|addr| addr.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        let (report, problems) = canto::tls::describe(&config.tls, &ports);
        print!("{report}");
        return if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    if let Some(Command::Check { what: CheckWhat::Config }) = args.command {
        return match check(&config) {
            Ok(report) => {
                for warning in &report.warnings {
                    println!("warning: {warning}");
                }
                print!("{}", report.summary);
                println!("config OK");
                ExitCode::SUCCESS
            }
            Err(error) => {
                for warning in &config.warnings {
                    println!("warning: {warning}");
                }
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

/// Sends SIGHUP to the server whose pid is in the config's `pidfile`.
fn signal_reload(config: &Config) -> anyhow::Result<i32> {
    let path = config.pidfile.as_ref().with_context(|| {
        format!(
            "{} sets no pidfile, so the running server cannot be found; add e.g. pidfile = \"/run/canto.pid\"",
            config.origin
        )
    })?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (is canto running with this config?)", path.display()))?;
    let pid: i32 = text.trim().parse().with_context(|| format!("{} does not hold a process id", path.display()))?;
    let target = rustix::process::Pid::from_raw(pid)
        .with_context(|| format!("{} holds an invalid pid {pid}", path.display()))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP)
        .with_context(|| format!("cannot signal pid {pid} from {}", path.display()))?;
    Ok(pid)
}

/// Writes this process's id to `pidfile`; removed again on drop.
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn write(path: Option<&PathBuf>) -> Self {
        let Some(path) = path else { return Self(None) };
        match std::fs::write(path, format!("{}\n", std::process::id())) {
            Ok(()) => Self(Some(path.clone())),
            Err(error) => {
                tracing::warn!(
                    "cannot write pidfile {}: {error}; `canto reload` will not find this server",
                    path.display()
                );
                Self(None)
            }
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn check(config: &Config) -> anyhow::Result<canto::server::ConfigReport> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok(runtime.block_on(canto::server::describe(config))?)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::info!("canto {} starting with {}", env!("CARGO_PKG_VERSION"), config.origin);
        let shutdown = shutdown_signal();
        let hangups = hangup_signal();
        let server = Server::start(&config).await.context("cannot start")?;
        reload_on_sighup(hangups, server.reload_handle());
        let _pidfile = PidFile::write(config.pidfile.as_ref());
        server.run(shutdown).await;
        Ok(())
    })
}

/// SIGHUP's handler, installed before the server starts: its default
/// action kills, and systemd's ExecReload may send it during startup.
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

fn hangup_signal() -> Hangups {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP; config reload is unavailable");
            None
        }
    }
}

/// SIGHUP re-reads the config, as it does for Prosody; hangups during
/// startup are delivered once the server is up.
fn reload_on_sighup(hangups: Hangups, handle: canto::server::ReloadHandle) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                handle.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (hangups, handle);
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// now, before the server says it is listening, so a signal sent as soon
/// as it is up is never the default (abrupt) exit.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    let error = interrupt.err().or(terminate.err()).map(|e| e.to_string()).unwrap_or_default();
                    tracing::warn!(%error, "cannot watch SIGINT/SIGTERM; only Ctrl-C stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

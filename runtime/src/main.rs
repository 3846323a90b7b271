//! The `canto` binary: parse arguments, load the config, start the server,
//! serve until SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
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
    match args.command {
        None => run(config),
        Some(Command::Reload) => reload(&config),
        Some(Command::Check { what: CheckWhat::Certs }) => check_certs(&config),
        Some(Command::Check { what: CheckWhat::Config }) => check_config(&config),
    }
}

/// Sends SIGHUP to the server whose pid is in the config's `pidfile`, if a
/// running canto holds the pidfile's lock: a stale pidfile (its server gone,
/// its pid perhaps reused by another process) is refused, never signalled.
fn signal_reload(config: &Config) -> anyhow::Result<i32> {
    use rustix::fs::FlockOperation;
    let path = config.pidfile.as_ref().with_context(|| {
        format!(
            "{} sets no pidfile, so the running server cannot be found; add e.g. pidfile = \"/run/canto.pid\"",
            config.origin
        )
    })?;
    let unreadable = || format!("cannot read {} (is canto running with this config?)", path.display());
    let file = std::fs::File::open(path).with_context(unreadable)?;
    let text = std::io::read_to_string(&file).with_context(unreadable)?;
    let pid: i32 = text.trim().parse().with_context(|| format!("{} does not hold a process id", path.display()))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => anyhow::bail!(
            "{} is stale: no running canto holds it, so pid {pid} is not signalled (remove the file, or start canto)",
            path.display()
        ),
        Err(rustix::io::Errno::WOULDBLOCK) => {} // held: the server is running
        Err(error) => return Err(error).with_context(|| format!("cannot check the lock on {}", path.display())),
    }
    let target = rustix::process::Pid::from_raw(pid)
        .with_context(|| format!("{} holds an invalid pid {pid}", path.display()))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP)
        .with_context(|| format!("cannot signal pid {pid} from {}", path.display()))?;
    Ok(pid)
}

/// This process's id in `pidfile`, locked (as prosodyctl does) for as long
/// as the server runs, so a second server with the same config refuses to
/// start and `canto reload` can tell a live pidfile from a stale one.
/// Removed again on drop.
struct PidFile(Option<(PathBuf, std::fs::File)>);

impl PidFile {
    fn write(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        use rustix::fs::FlockOperation;
        use std::io::Write as _;
        let Some(path) = path else { return Ok(Self(None)) };
        let mut file = loop {
            let opened = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path);
            let file = match opened {
                Ok(file) => file,
                Err(error) => {
                    tracing::warn!(
                        "cannot write pidfile {}: {error}; `canto reload` will not find this server",
                        path.display()
                    );
                    return Ok(Self(None));
                }
            };
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let running = std::fs::read_to_string(path).unwrap_or_default();
                    anyhow::bail!("another canto (pid {}) is running with pidfile {}", running.trim(), path.display());
                }
                Err(error) => anyhow::bail!("cannot lock pidfile {}: {error}", path.display()),
            }
            // A server that was exiting may have removed the file between
            // our open and our lock: only a lock on the file still at
            // `path` counts, else two servers would each hold one.
            if is_same_file(&file, path) {
                break file;
            }
        };
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write pidfile {}", path.display()))?;
        Ok(Self(Some((path.clone(), file))))
    }
}

fn is_same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked: a server starting now either locks
        // this file and then sees it is gone, or creates a new one.
        if let Some((path, _locked)) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves until SIGINT or SIGTERM.
fn run(config: Config) -> ExitCode {
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("canto: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `canto reload`: signals the running server.
fn reload(config: &Config) -> ExitCode {
    match signal_reload(config) {
        Ok(pid) => {
            println!("asked canto (pid {pid}) to reload {}", config.origin);
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_certs(config: &Config) -> ExitCode {
    let (report, problems) = canto::check::certs(config);
    print!("{report}");
    if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn check_config(config: &Config) -> ExitCode {
    let checked = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| Ok(runtime.block_on(canto::check::config(config))?));
    match checked {
        Ok(report) => {
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            print!("{}", report.summary);
            if report.store_problems > 0 {
                println!("error: {} store(s) could not be opened or reached", report.store_problems);
                return ExitCode::FAILURE;
            }
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
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::info!("canto {} starting with {}", env!("CARGO_PKG_VERSION"), config.origin);
        let shutdown = shutdown_signal();
        let hangups = hangup_signal();
        // Before binding: a second server with this config must not take
        // the first one's ports or pidfile.
        let _pidfile = PidFile::write(config.pidfile.as_ref())?;
        let server = Server::start(&config).await.context("cannot start")?;
        reload_on_sighup(hangups, server.reload_handle());
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

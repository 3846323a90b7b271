//! Log output: human-readable lines on stderr, filtered by `RUST_LOG`
//! (default: info for canto, warnings for everything else). Colour only
//! when stderr is a terminal: a log file or pipe gets plain text.

use tracing_subscriber::EnvFilter;

pub const DEFAULT_FILTER: &str = "info,wasmtime=warn,cranelift=warn";

/// Installs the process-wide subscriber; later calls are no-ops. `RUST_LOG`
/// overrides `default_filter`.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colour).with_writer(std::io::stderr).try_init();
}

//! The wasm host: runs HTTP modules, which are WebAssembly components.
//!
//! One [`Engine`](wasmtime::Engine) for the server ([`engine`]); each module
//! is compiled and pre-instantiated once per version ([`loader`],
//! [`module`]); each request gets a
//! fresh store, a fresh sandbox with nothing granted ([`host_state`]), a
//! memory limit and a deadline ([`invoke`]), unless the operator lets the
//! module reuse instances ([`reuse`]). A trap costs that one request.
//! WebSockets ([`websocket`], [`socket_registry`]) and outgoing links
//! ([`links`], [`link_registry`]) are owned by the host between events.
//! Granted files are opened, and sent as response bodies, by the host
//! ([`files`]).

mod bindings;
pub mod engine;
mod file_cache;
pub mod files;
mod host_state;
mod invoke;
pub mod keyvalue;
pub mod link_registry;
pub mod links;
mod loader;
mod module;
mod outbound;
mod reuse;
pub mod scheduled;
pub mod socket_registry;
pub mod websocket;

use std::sync::Arc;

pub use host_state::{InstanceState, MountIdentity, RequestFacts, SandboxLimits};
pub use invoke::{Answered, Invocation, ModuleBody};
pub use loader::{LoadError, LoadedModules, ModuleLoader, Versions};
pub use module::{CorsDefaults, LoadedModule, ModuleMetadata, linker};
pub use reuse::IdleInstances;

/// Why a module could not be loaded or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot set up the module linker: {0:#}")]
    Linker(wasmtime::Error),
    #[error("module {module}: not a valid WebAssembly component: {cause:#}")]
    Compile { module: Arc<str>, cause: wasmtime::Error },
    #[error("module {module}: cannot link: {cause:#}")]
    Link { module: Arc<str>, cause: wasmtime::Error },
    #[error("module {module}: does not export wasi:http/incoming-handler@0.2")]
    NotAnHttpModule { module: Arc<str> },
    #[error("module {module}: its metadata export failed: {cause:#}")]
    Metadata { module: Arc<str>, cause: wasmtime::Error },
    #[error("module {module}: {}", one_line(cause))]
    Failed { module: Arc<str>, cause: wasmtime::Error },
    #[error("module {module}: stopped after using its time ({limit})")]
    Timeout { module: Arc<str>, limit: &'static str },
    #[error("module {module}: returned without setting a response")]
    NoResponse { module: Arc<str> },
    #[error("module {module}: parked a request but does not export canto:http/parked-handler")]
    NoParkedHandler { module: Arc<str> },
    #[error(
        "module {module}: its answer to a parked request is invalid (status {status}, or a body over http_module_max_response_size)"
    )]
    BadAnswer { module: Arc<str>, status: u16 },
    #[error("module {module}: {error}")]
    LinkHeld { module: Arc<str>, error: String },
    #[error("module {module}: answered with an error: {code:?}")]
    ErrorResponse { module: Arc<str>, code: String },
}

impl WasmError {
    /// How a run that failed this way counts in the metrics.
    pub fn outcome(&self) -> crate::metrics::ModuleOutcome {
        match self {
            WasmError::Timeout { .. } => crate::metrics::ModuleOutcome::TimedOut,
            _ => crate::metrics::ModuleOutcome::Trapped,
        }
    }
}

/// A guest failure as one log line: each cause's first line, without the
/// wasm backtrace (which is logged separately at debug level).
fn one_line(error: &wasmtime::Error) -> String {
    let parts: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string().lines().next().unwrap_or_default().to_string())
        .filter(|line| !line.starts_with("error while executing at wasm backtrace"))
        .collect();
    if parts.is_empty() { "the guest failed".into() } else { parts.join(": ") }
}

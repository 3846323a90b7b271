//! The server: binds the listeners a [`Config`] names, loads its modules,
//! and serves until told to stop.
//!
//! `Server::start` does everything that can fail (load and link every
//! module, bind every port) before a single request is served, and
//! `Server::run` owns the accept loops and the graceful shutdown. The
//! per-request path lives in [`pipeline`].

mod listener;
mod pipeline;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::{Config, HostConfig, ModuleLimits, ModuleSource, Value};
use crate::routing::{Mount, Site, normalize_base_path};
use crate::vhost::HostTable;
use crate::wasm::{self, LoadedModule, MountIdentity, WasmError};

/// How long shutdown waits for requests in flight before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start the wasm engine: {0:#}")]
    Engine(wasmtime::Error),
    #[error(transparent)]
    Module(#[from] WasmError),
    #[error("{at}: cannot read module {module} from {}: {source}", path.display())]
    ReadModule {
        at: crate::config::Location,
        module: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no http port could be bound (tried {0})")]
    NoListeners(String),
}

/// What every connection and request shares.
pub(crate) struct ServerState {
    pub hosts: HostTable,
    /// One permit per live module instance: requests wait here rather than
    /// fail when the instance pool is full.
    pub instances: Arc<Semaphore>,
    pub limits: ModuleLimits,
}

/// A started server: modules loaded, listeners bound, not yet serving.
pub struct Server {
    listeners: Vec<TcpListener>,
    state: Arc<ServerState>,
}

impl Server {
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("Configuration warning: {warning}");
        }
        let engine = wasm::engine::build(&config.limits).map_err(StartError::Engine)?;
        let linker = wasm::linker(&engine)?;
        let mut loaded: HashMap<(String, ModuleSource), Arc<LoadedModule>> = HashMap::new();
        for host in &config.hosts {
            for enabled in &host.modules {
                let key = (enabled.name.clone(), enabled.source.clone());
                if loaded.contains_key(&key) {
                    continue;
                }
                let bytes = match &enabled.source {
                    ModuleSource::File(path) => {
                        tokio::fs::read(path).await.map_err(|source| StartError::ReadModule {
                            at: enabled.at.clone(),
                            module: enabled.name.clone(),
                            path: path.clone(),
                            source,
                        })?
                    }
                    ModuleSource::Builtin => crate::builtin::bytes(&enabled.name).unwrap_or_default().to_vec(),
                };
                let module =
                    LoadedModule::load(&engine, &linker, &enabled.name, &bytes, config.limits.memory_bytes).await?;
                tracing::info!(module = enabled.name, source = ?enabled.source, "loaded module");
                loaded.insert(key, Arc::new(module));
            }
        }

        let listeners = listener::bind_all(&config.http_listeners).await;
        if listeners.is_empty() && !config.http_listeners.is_empty() {
            let tried = config.http_listeners.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(StartError::NoListeners(tried));
        }
        let http_port = listeners.first().and_then(|l| l.local_addr().ok()).map(|a| a.port());
        if http_port.is_none() {
            tracing::error!("Not listening on any ports; every module will be unreachable");
        }

        let mut hosts = HostTable::default();
        let mut http_hosts: HashMap<String, String> = HashMap::new();
        for host in &config.hosts {
            let site = Arc::new(site_for(host, &loaded, http_port));
            let key = host.http_host.to_ascii_lowercase();
            if let Some(previous) = http_hosts.insert(key.clone(), host.name.clone()) {
                tracing::warn!(
                    "hosts '{previous}' and '{}' both use http_host '{key}'; requests for it go to '{}'",
                    host.name,
                    host.name
                );
            }
            hosts.insert(&host.http_host, site);
        }

        let state = ServerState {
            hosts,
            instances: Arc::new(Semaphore::new(config.limits.pool_size as usize)),
            limits: config.limits.clone(),
        };
        Ok(Self { listeners, state: Arc::new(state) })
    }

    /// The addresses actually bound (port 0 in the config becomes a real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives
    /// requests in flight up to [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        // Every accept loop and connection holds a sender; when all are
        // dropped, `recv` returns and the drain is complete.
        let (alive, mut all_done) = mpsc::channel::<()>(1);
        for listener in self.listeners {
            let addr = listener.local_addr().ok();
            tracing::info!("listening on http://{}", addr.map_or_else(|| "?".into(), |a| a.to_string()));
            tokio::spawn(listener::accept_loop(listener, Arc::clone(&self.state), stopped.clone(), alive.clone()));
        }
        drop(alive);
        shutdown.await;
        tracing::info!("shutting down: not accepting new connections, finishing requests in flight");
        let _ = stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, all_done.recv()).await {
            Ok(_) => tracing::info!("shutdown complete"),
            Err(_) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; closing them"),
        }
    }
}

/// Mounts a host's modules at their base paths.
fn site_for(
    host: &HostConfig,
    loaded: &HashMap<(String, ModuleSource), Arc<LoadedModule>>,
    http_port: Option<u16>,
) -> Site {
    let host_name: Arc<str> = Arc::from(host.name.as_str());
    let mut mounts: Vec<Mount> = Vec::new();
    for enabled in &host.modules {
        let Some(module) = loaded.get(&(enabled.name.clone(), enabled.source.clone())) else { continue };
        let app = enabled.name.strip_prefix("http_").unwrap_or(&enabled.name);
        let path = configured_path(host, app)
            .or_else(|| module.metadata.default_path.clone())
            .unwrap_or_else(|| format!("/{app}"));
        let base_path = normalize_base_path(&path, &host.name);
        if let Some(other) = mounts.iter().find(|m| *m.base_path == base_path) {
            tracing::warn!(
                host = host.name,
                "modules {} and {} are both mounted at {base_path}; {} wins",
                other.module.name,
                enabled.name,
                other.module.name
            );
            continue;
        }
        let base_url = external_url(&host.http_host, http_port, &base_path);
        tracing::info!(host = host.name, module = enabled.name, "Serving '{app}' at {base_url}");
        let identity = MountIdentity {
            module: module.name.clone(),
            host: host_name.clone(),
            options: crate::config::module_options(&host.options, &module.metadata.options),
        };
        mounts.push(Mount {
            base_path: base_path.into(),
            base_url: base_url.into(),
            module: Arc::clone(module),
            identity: Arc::new(identity),
        });
    }
    Site::new(host_name, mounts)
}

/// `http_paths[app]`: the host's table first, then the global one.
fn configured_path(host: &HostConfig, app: &str) -> Option<String> {
    let lookup = |value: Option<&crate::config::Spanned>| match value.map(|v| &v.value) {
        Some(Value::Table(table)) => match table.get(app).map(|v| &v.value) {
            Some(Value::String(path)) => Some(path.clone()),
            _ => None,
        },
        _ => None,
    };
    lookup(host.options.get("http_paths")).or_else(|| lookup(host.options.get_global("http_paths")))
}

fn external_url(http_host: &str, port: Option<u16>, base_path: &str) -> String {
    let port = match port {
        Some(80) | None => String::new(),
        Some(port) => format!(":{port}"),
    };
    let path = if base_path == "/" { "" } else { base_path };
    format!("http://{http_host}{port}{path}/")
}

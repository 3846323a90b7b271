//! The server: binds the listeners a [`Config`] names, loads its modules,
//! and serves until told to stop.
//!
//! `Server::start` does everything that can fail (load and link every
//! module, bind every port) before a single request is served, and
//! `Server::run` owns the accept loops and the graceful shutdown. The
//! per-request path lives in [`pipeline`].

mod connections;
mod listener;
mod pipeline;
mod reload;

pub use reload::ReloadHandle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::{Config, HostConfig, ModuleLimits, ModuleSource, Value};
use crate::proxy::TrustedProxies;
use crate::routing::{Mount, normalize_base_path};
use crate::vhost::HostTable;
use crate::wasm::{IdleInstances, LoadedModule, MountIdentity, WasmError};

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
    /// `http_errors_detailed`: 500 pages carry the internal cause.
    pub errors_detailed: bool,
    pub proxies: TrustedProxies,
    /// `http_max_content_size`: larger request bodies get 413.
    pub max_content_size: u64,
    /// Timeouts and the request head bound (the connection cap is fixed
    /// at start).
    pub connections: crate::config::ConnectionLimits,
    /// Counted for the whole life of the server, across reloads.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Where modules are reachable, for the URLs they are told (spec §3e:
/// https when an https port is open, else http).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PublicListener {
    pub scheme: &'static str,
    pub port: u16,
}

/// A started server: modules loaded, listeners bound, not yet serving.
pub struct Server {
    listeners: Vec<listener::Bound>,
    cap: connections::ConnectionCap,
    state: Arc<ArcSwap<ServerState>>,
    reloader: reload::Reloader,
    reload_requests: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

impl Server {
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("Configuration warning: {warning}");
        }
        let descriptors = connections::raise_descriptor_limit();
        let cap = connections::ConnectionCap::new(connections::max_connections(
            &config.connections,
            descriptors,
            config.limits.pool_size,
        ));
        tracing::info!(
            "accepting up to {} connections (open file limit {})",
            cap.limit(),
            descriptors.map_or_else(|| "unknown".to_string(), |d| d.to_string())
        );
        let mut loader = reload::ModuleLoader::new(config)?;
        let (loaded, versions) = loader.load_all(config).await?;

        let mut listeners = listener::bind_all(&config.http_listeners, None);
        if listeners.is_empty() && !config.http_listeners.is_empty() {
            let tried = config.http_listeners.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(StartError::NoListeners(tried));
        }
        let mut certificates = crate::tls::HttpsCertificates::default();
        listeners.extend(open_https(&config.https_listeners, &config.tls, &mut certificates));
        let public = public_listener(listeners.iter().map(|b| (b.tls.is_some(), b.listener.local_addr().ok())));
        if public.is_none() {
            tracing::error!("Not listening on any ports; every module will be unreachable");
        }

        let slots = InstanceSlots::new(&config.limits);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let state = build_state(config, &loaded, public, &slots, &metrics);
        let shared = Arc::new(ArcSwap::from_pointee(state));
        let reloader =
            reload::Reloader::new(loader, certificates, config.clone(), versions, public, slots, Arc::clone(&shared));
        Ok(Self { listeners, cap, state: shared, reloader, reload_requests: mpsc::channel(4) })
    }

    /// A handle that makes the running server re-read its config file, as
    /// SIGHUP does.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reload_requests.0.clone())
    }

    /// The http addresses actually bound (port 0 in the config becomes a real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|b| b.tls.is_none()).filter_map(|b| b.listener.local_addr().ok()).collect()
    }

    /// The https addresses actually bound.
    pub fn local_https_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter(|b| b.tls.is_some()).filter_map(|b| b.listener.local_addr().ok()).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives
    /// requests in flight up to [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let addrs = self
            .local_addrs()
            .iter()
            .chain(&self.local_https_addrs())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (stop, stopped) = watch::channel(false);
        // Every accept loop and connection holds a sender; when all are
        // dropped, `recv` returns and the drain is complete.
        let (alive, mut all_done) = mpsc::channel::<()>(1);
        let mut loops =
            listener::AcceptLoops::new(Arc::clone(&self.state), stopped.clone(), alive.clone(), self.cap.clone());
        for bound in self.listeners {
            loops.start(bound);
        }
        drop(alive);
        let (_, requests) = self.reload_requests;
        tokio::spawn(self.reloader.run(requests, stopped.clone(), loops));
        shutdown.await;
        tracing::info!("shutting down: not accepting new connections, finishing requests in flight");
        let _ = stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, all_done.recv()).await {
            Ok(_) => tracing::info!("shutdown complete ({addrs})"),
            Err(_) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; closing them"),
        }
    }
}

type LoadedModules = HashMap<(String, ModuleSource), Arc<LoadedModule>>;

/// Binds the https listeners whose port has a certificate. A port without
/// one stays closed with Prosody's error line; http keeps serving.
fn open_https(
    addrs: &[SocketAddr],
    tls: &crate::config::TlsSettings,
    certificates: &mut crate::tls::HttpsCertificates,
) -> Vec<listener::Bound> {
    let mut opened = Vec::new();
    for addr in addrs {
        match certificates.open_port(tls, addr.port()) {
            Ok(acceptor) => opened.extend(listener::bind_all(std::slice::from_ref(addr), Some(&acceptor))),
            Err(error) => tracing::error!("Error binding encrypted port for https: {error}"),
        }
    }
    opened
}

/// Where module URLs point (spec §3e): the first https listener, else the
/// first http one. Takes (is https, bound address) pairs.
fn public_listener(bound: impl Iterator<Item = (bool, Option<SocketAddr>)> + Clone) -> Option<PublicListener> {
    let first = |secure: bool| bound.clone().find(|(s, _)| *s == secure).and_then(|(_, addr)| addr).map(|a| a.port());
    match (first(true), first(false)) {
        (Some(port), _) => Some(PublicListener { scheme: "https", port }),
        (None, Some(port)) => Some(PublicListener { scheme: "http", port }),
        (None, None) => None,
    }
}

/// Most instances kept idle for reuse, server-wide.
const MAX_IDLE_INSTANCES: usize = 64;

/// The instance pool's slots (`http_module_pool_size`), shared across
/// reloads: each running request holds one; instances kept idle for reuse
/// hold theirs from a share set aside, so they never starve requests.
#[derive(Clone)]
pub(crate) struct InstanceSlots {
    /// One permit per request running in a module.
    running: Arc<Semaphore>,
    /// One permit per instance waiting idle for its next request.
    idle: Arc<Semaphore>,
    idle_capacity: usize,
}

impl InstanceSlots {
    fn new(limits: &ModuleLimits) -> Self {
        let pool = limits.pool_size as usize;
        // A quarter of the pool, at least one slot, always leaving one to run in.
        // (A pool too small for reuse is a config warning.)
        let idle_capacity = match limits.instance_reuse.any() {
            true if pool >= 2 => (pool / 4).clamp(1, MAX_IDLE_INSTANCES),
            _ => 0,
        };
        Self {
            running: Arc::new(Semaphore::new(pool - idle_capacity)),
            idle: Arc::new(Semaphore::new(idle_capacity)),
            idle_capacity,
        }
    }

    /// Whether instances can be kept for reuse (set aside at start).
    pub fn can_keep_idle(&self) -> bool {
        self.idle_capacity > 0
    }
}

/// Everything requests share, built from a config and its loaded modules;
/// swapped whole on reload.
fn build_state(
    config: &Config,
    loaded: &LoadedModules,
    public: Option<PublicListener>,
    slots: &InstanceSlots,
    metrics: &Arc<crate::metrics::Metrics>,
) -> ServerState {
    let (hosts, warnings) = host_table(config, loaded, public, metrics, &slots.idle);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    ServerState {
        hosts,
        instances: Arc::clone(&slots.running),
        limits: config.limits.clone(),
        errors_detailed: config.errors_detailed,
        proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        max_content_size: config.max_content_size,
        connections: config.connections.clone(),
        metrics: Arc::clone(metrics),
    }
}

/// What `canto check config` reports.
pub struct ConfigReport {
    /// Every warning the server would log at start, the config's own first.
    pub warnings: Vec<String>,
    /// Listeners, hosts, and each module with where it is served.
    pub summary: String,
}

/// What `canto check config` prints: listeners, hosts, and each module with
/// where it is served, after loading every module and mounting them exactly
/// as the server would (so a broken module fails the check too, and every
/// warning the server would log is found).
pub async fn describe(config: &Config) -> Result<ConfigReport, StartError> {
    let (loaded, _) = reload::ModuleLoader::new(config)?.load_all(config).await?;
    // As the server would: https once a port of it can open.
    let mut certificates = crate::tls::HttpsCertificates::default();
    let https = config.https_listeners.iter().find(|addr| certificates.open_port(&config.tls, addr.port()).is_ok());
    let public = match (https, config.http_listeners.first()) {
        (Some(https), _) => Some(PublicListener { scheme: "https", port: https.port() }),
        (None, Some(http)) => Some(PublicListener { scheme: "http", port: http.port() }),
        (None, None) => None,
    };
    let addrs = |list: &[SocketAddr]| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let (_, mount_warnings) = host_table(config, &loaded, public, &Arc::default(), &Arc::new(Semaphore::new(0)));
    let warnings = config.warnings.iter().map(ToString::to_string).chain(mount_warnings).collect();
    let mut out = format!("config: {}\n", config.origin);
    out += &format!("http listeners: {}\n", addrs(&config.http_listeners));
    out += &format!("https listeners: {} (certificates: canto check certs)\n", addrs(&config.https_listeners));
    for host in &config.hosts {
        // As the config writes it: `Component "name" "module"`.
        let section = match &host.kind {
            crate::config::SectionKind::VirtualHost => format!("VirtualHost \"{}\"", host.name),
            crate::config::SectionKind::Component { module: Some(module) } => {
                format!("Component \"{}\" \"{module}\"", host.name)
            }
            crate::config::SectionKind::Component { module: None } => format!("Component \"{}\"", host.name),
        };
        out += &format!("\n{section} (http_host {})\n", host.http_host);
        let mounts = mounts_for(config, host, &loaded, public, &Arc::default(), &Arc::new(Semaphore::new(0)));
        if mounts.is_empty() {
            out += "  no HTTP modules\n";
        }
        for mount in mounts {
            let source = host.modules.iter().find(|m| *m.name == *mount.module.name).map(|m| match &m.source {
                ModuleSource::File(path) => path.display().to_string(),
                ModuleSource::Builtin => "built in".to_string(),
            });
            out += &format!("  {:<20} {:<24} {}\n", mount.module.name, mount.base_url, source.unwrap_or_default());
            if !mount.identity.options.is_empty() {
                let names: Vec<&str> = mount.identity.options.keys().map(String::as_str).collect();
                out += &format!("  {:<20} reads options: {}\n", "", names.join(", "));
            }
            out += &format!("  {:<20} may: {}\n", "", describe_grants(&mount.identity.grants));
            if let Some(reuse) = &mount.reuse {
                out += &format!("  {:<20} reuses instances: up to {} requests each\n", "", reuse.max_requests());
            }
        }
    }
    let limits = &config.limits;
    out += &format!(
        "\nevery module: {} MiB memory per instance; {} s CPU and {} s wall-clock per request; \
         {} requests at once per module, {} instances server-wide; {} KiB of response headers, \
         {} MiB of response body; request bodies up to {} bytes; no sockets\n",
        limits.memory_bytes >> 20,
        limits.timeout.as_secs(),
        limits.wall_timeout.as_secs(),
        limits.max_concurrency,
        limits.pool_size,
        limits.max_header_bytes >> 10,
        limits.max_response_bytes >> 20,
        config.max_content_size,
    );
    Ok(ConfigReport { warnings, summary: out })
}

/// One line saying what a module was granted.
fn describe_grants(grants: &crate::config::Grants) -> String {
    if grants.is_empty() {
        return "nothing granted (no files, no environment, no network)".into();
    }
    let mut parts = Vec::new();
    for dir in &grants.read_dirs {
        parts.push(format!("read {}", dir.display()));
    }
    for dir in &grants.write_dirs {
        parts.push(format!("read and write {}", dir.display()));
    }
    if !grants.env.is_empty() {
        let names: Vec<&str> = grants.env.iter().map(|(k, _)| k.as_str()).collect();
        parts.push(format!("environment {}", names.join(", ")));
    }
    if !grants.outgoing.is_empty() {
        parts.push(format!("HTTP requests to {}", grants.outgoing.join(", ")));
    }
    if grants.metrics {
        parts.push("the server's metrics".into());
    }
    parts.join("; ")
}

/// Mounts every host's modules under its public name, with the warnings
/// that only the mounted table reveals (for the log and `check config`).
/// Hosts sharing an `http_host` share one namespace, as in Prosody; that is
/// worth a warning because a clash of paths between them is then silent in
/// Prosody.
fn host_table(
    config: &Config,
    loaded: &LoadedModules,
    public: Option<PublicListener>,
    metrics: &Arc<crate::metrics::Metrics>,
    idle: &Arc<Semaphore>,
) -> (HostTable, Vec<String>) {
    let mut table = HostTable::default();
    let mut warnings = Vec::new();
    let mut owners: HashMap<String, String> = HashMap::new();
    for host in &config.hosts {
        let key = host.http_host.to_ascii_lowercase();
        if let Some(first) = owners.get(&key) {
            warnings.push(format!(
                "hosts '{first}' and '{}' both use http_host '{key}'; their modules share that name's paths",
                host.name
            ));
        } else {
            owners.insert(key, host.name.clone());
        }
        let site = table.site_mut(&host.http_host);
        for mount in mounts_for(config, host, loaded, public, metrics, idle) {
            if let Err((holder, refused)) = site.add(mount) {
                warnings.push(format!(
                    "{} on '{}' and {} on '{}' are both at {}; {} keeps it",
                    holder.module.name,
                    holder.host,
                    refused.module.name,
                    refused.host,
                    refused.base_path,
                    holder.module.name
                ));
            }
        }
    }
    match &config.default_host {
        Some((name, _)) if table.set_default(name) => {
            tracing::info!("HTTP requests to unknown hosts will be handled by {name}");
        }
        Some((name, at)) => {
            warnings
                .push(format!("{at}: http_default_host '{name}' is not the http_host of any host; it has no effect"));
            tracing::info!("HTTP requests to unknown hosts will return 404 Not Found");
        }
        None => tracing::info!("HTTP requests to unknown hosts will return 404 Not Found"),
    }
    (table, warnings)
}

/// A host's modules at their base paths.
fn mounts_for(
    config: &Config,
    host: &HostConfig,
    loaded: &LoadedModules,
    public: Option<PublicListener>,
    metrics: &Arc<crate::metrics::Metrics>,
    idle: &Arc<Semaphore>,
) -> Vec<Mount> {
    let host_name: Arc<str> = Arc::from(host.name.as_str());
    let mut mounts = Vec::new();
    for enabled in &host.modules {
        let Some(module) = loaded.get(&(enabled.name.clone(), enabled.source.clone())) else { continue };
        let app = crate::config::app_name(&enabled.name);
        let path = configured_path(host, app)
            .or_else(|| module.metadata.default_path.clone())
            .unwrap_or_else(|| format!("/{app}"));
        let base_path = normalize_base_path(&path, &host.name);
        let base_url = match &host.external_url {
            Some(external) => external.join(&base_path),
            None => listener_url(&host.http_host, public, &base_path),
        };
        tracing::info!(host = host.name, module = enabled.name, "Serving '{app}' at {base_url}");
        let grants = module_grants(config, host, app);
        let identity = MountIdentity {
            module: module.name.clone(),
            host: host_name.clone(),
            options: crate::config::module_options(host, &module.metadata.options),
            metrics: grants.metrics.then(|| Arc::clone(metrics)),
            grants,
        };
        mounts.push(Mount {
            host: host_name.clone(),
            base_path: base_path.into(),
            base_url: base_url.into(),
            serve_bare_path: module.metadata.serve_bare_path,
            cors: crate::cors::policy_for(app, module.metadata.cors.as_ref(), &config.cors).map(Arc::new),
            module: Arc::clone(module),
            identity: Arc::new(identity),
            reuse: IdleInstances::new(config.limits.instance_reuse.for_app(app), idle),
        });
    }
    mounts
}

/// What `http_module_grants` gives the app, plus what Prosody's own
/// modules need to work as configured there: the files module reads the
/// host's `http_files_dir`, the openmetrics module reads the metrics.
fn module_grants(config: &Config, host: &HostConfig, app: &str) -> crate::config::Grants {
    let mut grants = config.grants.get(app).cloned().unwrap_or_default();
    grants.metrics |= app == "openmetrics";
    if app == "files"
        && let Some(dir) = &host.files_dir
        && !grants.read_dirs.contains(dir)
    {
        grants.read_dirs.push(dir.clone());
    }
    grants
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

/// The URL of a base path as the listeners serve it (spec §3e).
fn listener_url(http_host: &str, public: Option<PublicListener>, base_path: &str) -> String {
    // Prosody's answer when nothing listens.
    let Some(PublicListener { scheme, port }) = public else { return "http://disabled.invalid/".into() };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = if port == default_port { String::new() } else { format!(":{port}") };
    let path = if base_path == "/" { "" } else { base_path };
    format!("{scheme}://{http_host}{port}{path}/")
}

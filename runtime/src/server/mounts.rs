//! The mount table: every host's modules at their base paths, with the
//! URLs they are told, their grants, CORS policy and instance reuse, and the
//! [`ServerState`] requests share, built from one config and its loaded
//! modules. Start, reload and `canto check config` all build it here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::refusal::Refusal;

use crate::config::{Config, ConnectionLimits, HostConfig, ModuleLimits};
use crate::kv::StoreRegistry;
use crate::proxy::TrustedProxies;
use crate::routing::{Mount, normalize_base_path};
use crate::vhost::HostTable;
use crate::wasm::keyvalue::Bucket;
use crate::wasm::link_registry::{LinkRegistry, LinkSettings};
use crate::wasm::socket_registry::WsRegistry;
use crate::wasm::{IdleInstances, LoadedModules, MountIdentity, WasmError};

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
    /// Timeouts and the request head bound (the connection cap is kept by
    /// the accept loops).
    pub connections: ConnectionLimits,
    /// Counted for the whole life of the server, across reloads.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Every open WebSocket connection, across reloads.
    pub websockets: Arc<WsRegistry>,
    /// Every open link of a module, across reloads.
    pub links: Arc<LinkRegistry>,
    /// Open key-value stores, across reloads.
    pub stores: Arc<StoreRegistry>,
}

/// What outlives a reload: counted, or open, across config versions.
#[derive(Clone)]
pub(crate) struct Lasting {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub websockets: Arc<WsRegistry>,
    pub links: Arc<LinkRegistry>,
    /// Open key-value stores: their connections outlive reloads.
    pub stores: Arc<StoreRegistry>,
}

impl Lasting {
    /// Fresh, for a server starting (or a config being checked).
    pub fn new(config: &Config) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let links = Arc::new(LinkRegistry::new(link_settings(config, &metrics)));
        let stores = Arc::new(StoreRegistry::default());
        stores.configure(config, &metrics);
        Self { metrics, websockets: Arc::default(), links, stores }
    }

    /// What the state being replaced carried.
    pub fn of(state: &ServerState) -> Self {
        Self {
            metrics: Arc::clone(&state.metrics),
            websockets: Arc::clone(&state.websockets),
            links: Arc::clone(&state.links),
            stores: Arc::clone(&state.stores),
        }
    }

    /// Applies a reloaded config to what outlives the reload.
    pub fn reconfigure(&self, config: &Config) {
        self.links.configure(link_settings(config, &self.metrics));
        self.stores.configure(config, &self.metrics);
    }
}

fn link_settings(config: &Config, metrics: &Arc<crate::metrics::Metrics>) -> LinkSettings {
    LinkSettings::new(
        &config.connect.extra_roots,
        config.connect.idle_timeout,
        config.connections.websocket_max_connections,
        Arc::clone(metrics),
    )
}

impl ServerState {
    /// A slot in the module's own share, then one in the server-wide pool: a
    /// hot module queues on itself rather than taking the pool from everyone
    /// else. Waiting is bounded (`http_module_queue_timeout`): slow clients
    /// holding every slot must not leave the next request hanging unanswered.
    pub async fn module_slots(&self, mount: &Mount) -> Result<[OwnedSemaphorePermit; 2], Refusal> {
        let closed = || Refusal::Module(WasmError::NoResponse { module: mount.module.name.clone() });
        let queue = self.limits.queue_timeout;
        let slots = async {
            let module_permit = Arc::clone(&mount.module.concurrency).acquire_owned().await.map_err(|_| closed())?;
            let pool_permit = Arc::clone(&self.instances).acquire_owned().await.map_err(|_| closed())?;
            Ok::<_, Refusal>([module_permit, pool_permit])
        };
        match tokio::time::timeout(queue, slots).await {
            Ok(slots) => slots,
            Err(_) => {
                self.metrics.module_busy(&mount.module.name);
                tracing::warn!(
                    host = %mount.host,
                    module = %mount.module.name,
                    "no free slot after {queue:?} (http_module_max_concurrency / http_module_pool_size); answered 503"
                );
                Err(Refusal::Busy)
            }
        }
    }
}

/// Where modules are reachable, for the URLs they are told (spec §3e:
/// https when an https port is open, else http).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PublicListener {
    pub scheme: &'static str,
    pub port: u16,
}

/// Where module URLs point (spec §3e): the first https listener, else the
/// first http one. Takes (is https, bound address) pairs.
pub(crate) fn public_listener(
    bound: impl Iterator<Item = (bool, Option<SocketAddr>)> + Clone,
) -> Option<PublicListener> {
    let first = |secure: bool| bound.clone().find(|(s, _)| *s == secure).and_then(|(_, addr)| addr).map(|a| a.port());
    match (first(true), first(false)) {
        (Some(port), _) => Some(PublicListener { scheme: "https", port }),
        (None, Some(port)) => Some(PublicListener { scheme: "http", port }),
        (None, None) => None,
    }
}

/// What mounting a config's modules takes.
pub(crate) struct MountInputs<'a> {
    pub config: &'a Config,
    pub loaded: &'a LoadedModules,
    /// Where module URLs point.
    pub public: Option<PublicListener>,
    /// Slots for instances kept idle between requests.
    pub idle: &'a Arc<Semaphore>,
    pub lasting: &'a Lasting,
}

/// Most instances kept idle for reuse, server-wide.
const MAX_IDLE_INSTANCES: usize = 64;

/// The instance pool's slots (`http_module_pool_size`), shared across
/// reloads: each running request holds one; instances kept idle for reuse
/// hold theirs from a share set aside, so they never starve requests.
#[derive(Clone)]
pub(crate) struct InstanceSlots {
    /// One permit per request running in a module.
    pub running: Arc<Semaphore>,
    /// One permit per instance waiting idle for its next request.
    pub idle: Arc<Semaphore>,
    idle_capacity: usize,
}

impl InstanceSlots {
    pub fn new(limits: &ModuleLimits) -> Self {
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
pub(crate) fn build_state(
    config: &Config,
    loaded: &LoadedModules,
    public: Option<PublicListener>,
    slots: &InstanceSlots,
    lasting: &Lasting,
) -> ServerState {
    // The file-share module's uploads directory exists before it serves
    // (here, not in `host_table`, which `canto check config` runs too).
    for host in config.hosts.iter().filter(|host| host.modules.iter().any(|m| m.name == "http_file_share")) {
        if let Err(error) = std::fs::create_dir_all(&host.file_share_dir) {
            tracing::error!(host = host.name, "cannot create {}: {error}", host.file_share_dir.display());
        }
    }
    let inputs = MountInputs { config, loaded, public, idle: &slots.idle, lasting };
    let (hosts, warnings) = host_table(&inputs);
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
        metrics: Arc::clone(&lasting.metrics),
        websockets: Arc::clone(&lasting.websockets),
        links: Arc::clone(&lasting.links),
        stores: Arc::clone(&lasting.stores),
    }
}

/// Mounts every host's modules under its public name, with the warnings
/// that only the mounted table reveals (for the log and `check config`).
/// Hosts sharing an `http_host` share one namespace, as in Prosody; that is
/// worth a warning because a clash of paths between them is then silent in
/// Prosody.
pub(crate) fn host_table(inputs: &MountInputs<'_>) -> (HostTable, Vec<String>) {
    let config = inputs.config;
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
        for mount in mounts_for(inputs, host) {
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
pub(crate) fn mounts_for(inputs: &MountInputs<'_>, host: &HostConfig) -> Vec<Mount> {
    let MountInputs { config, loaded, public, idle, lasting } = *inputs;
    let host_name: Arc<str> = Arc::from(host.name.as_str());
    let mut mounts = Vec::new();
    for enabled in &host.modules {
        let Some(module) = loaded.get(&(enabled.name.clone(), enabled.source.clone())) else { continue };
        let app = crate::config::app_name(&enabled.name);
        let path = host
            .paths
            .get(app)
            .cloned()
            .or_else(|| module.metadata.default_path.clone())
            .unwrap_or_else(|| format!("/{app}"));
        let base_path = normalize_base_path(&path, &host.name);
        let base_url = match &host.external_url {
            Some(external) => external.join(&base_path),
            None => listener_url(&host.http_host, public, &base_path),
        };
        tracing::info!(host = host.name, module = enabled.name, "Serving '{app}' at {base_url}");
        let grants = config.grants_for(host, app);
        let identity = MountIdentity {
            module: module.name.clone(),
            host: host_name.clone(),
            options: crate::config::module_options(host, &module.metadata.options),
            granted_dirs: crate::wasm::files::GrantedDirs::open(&grants, &module.name),
            stores: grants
                .stores
                .iter()
                .filter_map(|name| Some((name.clone(), Bucket::new(lasting.stores.get(name)?, &host.name))))
                .collect(),
            store_refusal_logged: Default::default(),
            metrics: grants.metrics.then(|| Arc::clone(&lasting.metrics)),
            websockets: Some(Arc::clone(&lasting.websockets)),
            links: Some(Arc::clone(&lasting.links)),
            parks: module.parked.is_some(),
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

/// The URL of a base path as the listeners serve it (spec §3e).
fn listener_url(http_host: &str, public: Option<PublicListener>, base_path: &str) -> String {
    // Prosody's answer when nothing listens.
    let Some(PublicListener { scheme, port }) = public else { return "http://disabled.invalid/".into() };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = if port == default_port { String::new() } else { format!(":{port}") };
    let path = if base_path == "/" { "" } else { base_path };
    format!("{scheme}://{http_host}{port}{path}/")
}

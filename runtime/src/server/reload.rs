//! Hot reload: new module versions and new config while traffic flows.
//!
//! The [`ModuleLoader`] compiles modules off the request path and
//! remembers them by content hash, so unchanged modules are reused. The
//! [`Reloader`] polls the module files (a debounced change triggers a
//! rebuild) and re-reads the config on request (SIGHUP). A rebuild makes a
//! whole new [`ServerState`] and swaps it in atomically: requests that
//! started keep the state (and module versions) they started with; the
//! next request gets the new one. Anything that fails to load leaves the
//! running state untouched, with a log line saying why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use super::listener::{self, AcceptLoops};
use super::mounts::{InstanceSlots, Lasting, PublicListener, ServerState, build_state, public_listener};
use super::schedule::Schedules;
use crate::config::{Config, ModuleSource};
use crate::tls::HttpsCertificates;
use crate::wasm::{LoadedModules, ModuleLoader, Versions};

/// How often module files are checked for changes.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often certificate files are checked: renewals are rare, and the
/// certificates directory may hold many files.
const CERTIFICATE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A changed file must stay unchanged this long before it is loaded, so a
/// write in progress is not picked up half-written.
const SETTLE_TIME: Duration = Duration::from_millis(150);

/// Asks a running server to re-read its config (what SIGHUP does).
#[derive(Clone)]
pub struct ReloadHandle(pub(crate) mpsc::Sender<()>);

impl ReloadHandle {
    pub async fn reload(&self) {
        let _ = self.0.send(()).await;
    }
}

/// (modified time, length) of a watched file.
type Stamp = Option<(SystemTime, u64)>;

pub(crate) struct Reloader {
    loader: ModuleLoader,
    certificates: HttpsCertificates,
    config: Config,
    versions: Versions,
    public: Option<PublicListener>,
    slots: InstanceSlots,
    shared: Arc<ArcSwap<ServerState>>,
    module_files: FileWatch,
    certificate_files: FileWatch,
    /// Modules' scheduled runs, brought in line with each new state.
    schedules: Arc<Schedules>,
}

impl Reloader {
    pub fn new(
        loader: ModuleLoader,
        certificates: HttpsCertificates,
        config: Config,
        versions: Versions,
        public: Option<PublicListener>,
        slots: InstanceSlots,
        shared: Arc<ArcSwap<ServerState>>,
    ) -> Self {
        let module_files = FileWatch::new(module_paths(&config));
        let certificate_files = FileWatch::new(crate::tls::watched_paths(&config.tls));
        let schedules = Arc::default();
        Self {
            loader,
            certificates,
            config,
            versions,
            public,
            slots,
            shared,
            module_files,
            certificate_files,
            schedules,
        }
    }

    pub fn schedules(&self) -> Arc<Schedules> {
        Arc::clone(&self.schedules)
    }

    /// Polls module files and serves reload requests until shutdown.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<()>,
        mut stop: watch::Receiver<bool>,
        mut loops: AcceptLoops,
    ) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        let mut certificate_ticks = tokio::time::interval(CERTIFICATE_POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.check_module_files().await,
                _ = certificate_ticks.tick() => self.check_certificate_files(),
                Some(()) = requests.recv() => self.reload_config(&mut loops).await,
                _ = listener::stopping(&mut stop) => return,
            }
        }
    }

    async fn check_module_files(&mut self) {
        if !self.module_files.settled_change(module_paths(&self.config)) {
            return;
        }
        tracing::info!("module files changed; reloading");
        let config = self.config.clone();
        let result = self.rebuild(config).await;
        self.shared.load().metrics.reload(result.is_ok());
        if let Err(error) = result {
            tracing::error!("rejected the new module version, the old one keeps serving: {error}");
        }
    }

    /// Re-reads certificates when their files change (a renewal): new
    /// handshakes get the new certificate, open connections keep theirs.
    fn check_certificate_files(&mut self) {
        if self.certificate_files.settled_change(crate::tls::watched_paths(&self.config.tls)) {
            tracing::info!("certificate files changed; re-reading them");
            self.certificates.reload(&self.config.tls);
        }
    }

    async fn reload_config(&mut self, loops: &mut AcceptLoops) {
        let Some(path) = self.config.path.clone() else {
            tracing::warn!("reload asked for, but the server runs without a config file");
            return;
        };
        tracing::info!("re-reading {}", path.display());
        let config = match Config::load(&path, &crate::builtin::names()) {
            Ok(config) => config,
            Err(error) => {
                self.shared.load().metrics.reload(false);
                tracing::error!("config rejected, the running config stays: {error}");
                return;
            }
        };
        for warning in &config.warnings {
            tracing::warn!("Configuration warning: {warning}");
        }
        if config.limits.pool_size != self.config.limits.pool_size
            || config.limits.memory_bytes != self.config.limits.memory_bytes
        {
            tracing::warn!("http_module_pool_size/http_module_memory_limit size the engine: they change on restart");
        }
        // Everything that can fail comes first, so a rejected config
        // changes nothing; then certificates (a newly opened https port
        // serves the new ones), listeners, and the state, in that order.
        let (loaded, versions) = match self.loader.load_all(&config).await {
            Ok(loaded) => loaded,
            Err(error) => {
                self.shared.load().metrics.reload(false);
                return tracing::error!("config rejected, the running config stays: {error}");
            }
        };
        self.certificates.reload(&config.tls);
        self.rebind(&config, loops).await;
        loops.resize_cap(&config.connections);
        self.commit(config, &loaded, versions);
        self.module_files = FileWatch::new(module_paths(&self.config));
        self.certificate_files = FileWatch::new(crate::tls::watched_paths(&self.config.tls));
        self.shared.load().metrics.reload(true);
        tracing::info!("config reloaded");
    }

    /// Opens listeners the new config adds and closes those it removes;
    /// unchanged ones keep their sockets and connections.
    async fn rebind(&mut self, config: &Config, loops: &mut AcceptLoops) {
        // Close first, everywhere: a port moving between addresses or
        // services must be free before it is bound again.
        for secure in [false, true] {
            let wanted = if secure { &config.https_listeners } else { &config.http_listeners };
            for addr in loops.configured(secure).iter().filter(|addr| !wanted.contains(addr)) {
                loops.close(*addr, secure).await;
            }
        }
        for secure in [false, true] {
            let wanted = if secure { &config.https_listeners } else { &config.http_listeners };
            let running = loops.configured(secure);
            let added: Vec<SocketAddr> = wanted.iter().filter(|addr| !running.contains(addr)).copied().collect();
            let bound = if secure {
                listener::open_https(&added, &config.tls, &mut self.certificates)
            } else {
                listener::bind_all(&added, None)
            };
            for bound in bound {
                loops.start(bound);
            }
        }
        let bound = [true, false].into_iter().map(|secure| (secure, loops.first_local(secure)));
        self.public = public_listener(bound);
    }

    /// Loads what `config` needs and swaps the new state in.
    async fn rebuild(&mut self, config: Config) -> Result<(), crate::wasm::LoadError> {
        let (loaded, versions) = self.loader.load_all(&config).await?;
        self.commit(config, &loaded, versions);
        Ok(())
    }

    fn commit(&mut self, config: Config, loaded: &LoadedModules, versions: Versions) {
        log_changes(&self.config, &self.versions, &config, &versions);
        let lasting = Lasting::of(&self.shared.load());
        lasting.reconfigure(&config);
        if config.limits.instance_reuse.any() && !self.slots.can_keep_idle() {
            tracing::warn!(
                "http_module_instance_reuse takes effect after a restart (its share of http_module_pool_size is set at start)"
            );
        }
        let state = build_state(&config, loaded, self.public, &self.slots, &lasting);
        self.shared.store(Arc::new(state));
        self.schedules.sync(&self.shared);
        self.config = config;
        self.versions = versions;
    }
}

fn module_paths(config: &Config) -> Vec<PathBuf> {
    let files = config.hosts.iter().flat_map(|h| &h.modules).filter_map(|m| match &m.source {
        ModuleSource::File(path) => Some(path.clone()),
        ModuleSource::Builtin => None,
    });
    files.collect()
}

/// Watches a set of files by modification time and length, and reports a
/// change only once it has settled, so a write in progress is not picked
/// up half-written.
struct FileWatch {
    stamps: HashMap<PathBuf, Stamp>,
    /// Stamps seen changed, and since when, waiting to settle.
    pending: Option<(HashMap<PathBuf, Stamp>, Instant)>,
}

impl FileWatch {
    fn new(paths: Vec<PathBuf>) -> Self {
        Self { stamps: stamps(paths), pending: None }
    }

    /// Whether `paths` (the set to watch now) changed since last time and
    /// has stayed unchanged for [`SETTLE_TIME`].
    fn settled_change(&mut self, paths: Vec<PathBuf>) -> bool {
        let current = stamps(paths);
        if current == self.stamps {
            self.pending = None;
            return false;
        }
        match &self.pending {
            Some((seen, since)) if *seen == current && since.elapsed() >= SETTLE_TIME => {}
            Some((seen, _)) if *seen == current => return false,
            _ => {
                self.pending = Some((current, Instant::now()));
                return false;
            }
        }
        self.pending = None;
        self.stamps = current;
        true
    }
}

fn stamps(paths: Vec<PathBuf>) -> HashMap<PathBuf, Stamp> {
    paths
        .into_iter()
        .map(|path| {
            let stamp = std::fs::metadata(&path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
            (path, stamp)
        })
        .collect()
}

/// One line per change: module versions by content hash, hosts added or removed.
fn log_changes(old: &Config, old_versions: &Versions, new: &Config, new_versions: &Versions) {
    for (name, hash) in new_versions {
        match old_versions.get(name) {
            None => tracing::info!("module {name} added (version {hash:016x})"),
            Some(old_hash) if old_hash != hash => {
                tracing::info!("module {name} replaced: version {old_hash:016x} -> {hash:016x}")
            }
            Some(_) => {}
        }
    }
    for name in old_versions.keys().filter(|name| !new_versions.contains_key(*name)) {
        tracing::info!("module {name} removed");
    }
    let names = |config: &Config| config.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    let (before, after) = (names(old), names(new));
    for host in after.iter().filter(|h| !before.contains(h)) {
        tracing::info!("host {host} added");
    }
    for host in before.iter().filter(|h| !after.contains(h)) {
        tracing::info!("host {host} removed");
    }
}

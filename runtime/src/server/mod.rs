//! The server: binds the listeners a [`Config`] names, loads its modules,
//! and serves until told to stop.
//!
//! `Server::start` does everything that can fail (load and link every
//! module, bind every port) before a single request is served, and
//! `Server::run` owns the accept loops and the graceful shutdown. Its parts:
//! [`listener`] (bind, accept, serve a connection), [`connections`] (the
//! cap and the quiet and slow-client watchdog), [`last_word`] (408/414 on
//! close), [`mounts`] (the mount table and the state requests share),
//! [`pipeline`] (one request, top to bottom), [`schedule`] (modules'
//! scheduled runs) and [`reload`].

mod connections;
mod fragments;
mod last_word;
mod listener;
mod mounts;
mod pipeline;
mod refusal;
mod reload;
mod schedule;
mod websocket;

pub use reload::ReloadHandle;

use mounts::{InstanceSlots, ServerState, build_state, public_listener};
pub(crate) use mounts::{Lasting, MountInputs, PublicListener, host_table, mounts_for};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::wasm::{LoadError, ModuleLoader};

/// How long shutdown waits for requests in flight before closing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("no http port could be bound (tried {0})")]
    NoListeners(String),
}

/// A started server: modules loaded, listeners bound, not yet serving.
pub struct Server {
    listeners: Vec<listener::Bound>,
    cap: connections::ConnectionCap,
    state: Arc<ArcSwap<ServerState>>,
    reloader: reload::Reloader,
    schedules: Arc<schedule::Schedules>,
    reload_requests: (mpsc::Sender<()>, mpsc::Receiver<()>),
}

impl Server {
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        for warning in &config.warnings {
            tracing::warn!("Configuration warning: {warning}");
        }
        let descriptors = connections::raise_descriptor_limit();
        crate::wasm::files::limit_cached_descriptors(descriptors);
        let cap = connections::ConnectionCap::new(&config.connections, descriptors, config.limits.pool_size);
        tracing::info!(
            "accepting up to {} connections (open file limit {})",
            cap.limit(),
            descriptors.map_or_else(|| "unknown".to_string(), |d| d.to_string())
        );
        let mut loader = ModuleLoader::new(config)?;
        let (loaded, versions) = loader.load_all(config).await?;

        let mut listeners = listener::bind_all(&config.http_listeners, None);
        if listeners.is_empty() && !config.http_listeners.is_empty() {
            let tried = config.http_listeners.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(StartError::NoListeners(tried));
        }
        let mut certificates = crate::tls::HttpsCertificates::default();
        listeners.extend(listener::open_https(&config.https_listeners, &config.tls, &mut certificates));
        let public = public_listener(listeners.iter().map(|b| (b.tls.is_some(), b.listener.local_addr().ok())));
        if public.is_none() {
            tracing::error!("Not listening on any ports; every module will be unreachable");
        }

        let slots = InstanceSlots::new(&config.limits);
        let state = build_state(config, &loaded, public, &slots, &Lasting::new(config));
        let shared = Arc::new(ArcSwap::from_pointee(state));
        let reloader =
            reload::Reloader::new(loader, certificates, config.clone(), versions, public, slots, Arc::clone(&shared));
        let schedules = reloader.schedules();
        Ok(Self { listeners, cap, state: shared, reloader, schedules, reload_requests: mpsc::channel(4) })
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
        let lasting = Lasting::of(&self.state.load());
        self.schedules.sync(&self.state);
        tokio::spawn(self.reloader.run(requests, stopped.clone(), loops));
        shutdown.await;
        self.schedules.stop_all();
        tracing::info!("shutting down ({addrs}): not accepting new connections, finishing requests in flight");
        let _ = stop.send(true);
        let sockets = lasting.websockets.close_all();
        if sockets > 0 {
            tracing::info!("closing {sockets} WebSocket connections (1001)");
        }
        lasting.links.close_all();
        match tokio::time::timeout(SHUTDOWN_GRACE, all_done.recv()).await {
            Ok(_) => tracing::info!("shutdown complete ({addrs})"),
            Err(_) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; closing them"),
        }
    }
}

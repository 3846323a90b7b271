//! The host side of `canto:http/links`: what an instance may do with its
//! module's links ([`super::link_registry`] keeps them; a target must be in
//! the module's `connect` grant), running a link's event for the WebSocket
//! connection it belongs to, and waking a request parked on a keyed link,
//! each in a fresh instance.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::WasmError;
use super::bindings::imports::canto::http::links::{Host, Owner};
use super::bindings::links::LinkProviderPre;
use super::bindings::parked::ParkedProviderPre;
pub use super::bindings::parked::exports::canto::http::parked_handler::Answer;
use super::host_state::{InstanceState, MountIdentity, RequestFacts, SandboxLimits};
use super::link_registry::{self, LinkRegistry, Parked, Target};
use super::socket_registry::WsEvent;

/// One event of a link bound to a WebSocket connection.
pub enum LinkEventKind {
    Data(u64, Vec<u8>),
    Closed(u64, String),
}

/// A module's `link-handler` export, found when it is loaded.
pub struct LinkSupport {
    pre: LinkProviderPre<InstanceState>,
}

impl std::fmt::Debug for LinkSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSupport").finish_non_exhaustive()
    }
}

impl LinkSupport {
    pub(super) fn find(pre: InstancePre<InstanceState>) -> Option<Self> {
        LinkProviderPre::new(pre).ok().map(|pre| Self { pre })
    }

    /// Runs one event in a fresh instance, as the connection's own events
    /// run (the same budgets; `websocket.current` is that connection).
    pub async fn run(
        &self,
        mount: Arc<MountIdentity>,
        sandbox: &SandboxLimits,
        (cpu, wall): (Duration, Duration),
        event: WsEvent,
        kind: LinkEventKind,
    ) -> Result<(), WasmError> {
        let module = mount.module.clone();
        let mut store = super::websocket::event_store(self.pre.engine(), mount, sandbox, cpu, event);
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let handler = instance.canto_http_link_handler();
            match kind {
                LinkEventKind::Data(link, data) => handler.call_on_data(&mut store, link, &data).await,
                LinkEventKind::Closed(link, reason) => handler.call_on_closed(&mut store, link, &reason).await,
            }
        };
        super::websocket::settle(module, tokio::time::timeout(wall, call).await)
    }
}

/// What a woken request's `on-wake` is given: the link, what arrived on it
/// (or why it ended), the park's memo, and the hold on the link.
pub struct Woken {
    pub link: u64,
    pub data: Vec<u8>,
    pub ended: Option<String>,
    pub memo: Vec<u8>,
    pub held: link_registry::HeldLink,
}

/// A module's `parked-handler` export, found when it is loaded.
pub struct ParkedSupport {
    pre: ParkedProviderPre<InstanceState>,
}

impl std::fmt::Debug for ParkedSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedSupport").finish_non_exhaustive()
    }
}

impl ParkedSupport {
    pub(super) fn find(pre: InstancePre<InstanceState>) -> Option<Self> {
        ParkedProviderPre::new(pre).ok().map(|pre| Self { pre })
    }

    /// Runs `on-wake` in a fresh instance with the request's facts, within
    /// the request budgets.
    pub async fn wake(
        &self,
        mount: Arc<MountIdentity>,
        facts: RequestFacts,
        sandbox: &SandboxLimits,
        (cpu, wall): (Duration, Duration),
        woken: Woken,
    ) -> Result<Answer, WasmError> {
        let Woken { link, data, ended, memo, held } = woken;
        let module = mount.module.clone();
        let mut state = InstanceState::new(mount, Some(facts), sandbox);
        state.waking = true;
        state.held.push(held);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        super::engine::deadline(&mut store, cpu);
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            instance.canto_http_parked_handler().call_on_wake(&mut store, link, &data, ended.as_deref(), &memo).await
        };
        let outcome = tokio::time::timeout(wall, call).await;
        if matches!(outcome, Ok(Ok(_))) {
            // Answered: the module has what it was given.
            for held in &mut store.data_mut().held {
                held.undelivered = None;
            }
        }
        super::websocket::settle(module, outcome)
    }
}

impl InstanceState {
    fn link_registry(&self) -> Result<&Arc<LinkRegistry>, String> {
        self.mount.links.as_ref().ok_or_else(|| "no links here".to_string())
    }

    fn link(&self, id: u64) -> Result<Arc<link_registry::Link>, String> {
        self.link_registry()?.get(&self.mount.room(), id)
    }
}

/// `canto:http/links` for an instance: its own module's links on its own
/// host, to targets its grant names.
impl Host for InstanceState {
    async fn open(&mut self, target: String, tls: bool, owner: Owner) -> Result<u64, String> {
        let registry = Arc::clone(self.link_registry()?);
        let target = Target::parse(&target)?;
        if !self.mount.grants.connect.iter().any(|granted| granted == &target) {
            return Err(format!(
                "module {} may not connect to {target} (http_module_grants: connect)",
                self.mount.module
            ));
        }
        let owner = match owner {
            Owner::Key(key) => link_registry::Owner::Key(key),
            Owner::Websocket => {
                let event = self.websocket.as_ref().ok_or("no WebSocket connection in this call")?;
                let events = event
                    .link_events
                    .clone()
                    .ok_or_else(|| format!("module {} does not export canto:http/link-handler", self.mount.module))?;
                link_registry::Owner::Socket { id: event.info.id, events }
            }
        };
        registry.open(self.mount.room(), &target, tls, owner).await
    }

    async fn find(&mut self, key: String) -> Option<u64> {
        self.link_registry().ok()?.find(&self.mount.room(), &key)
    }

    async fn send(&mut self, link: u64, data: Vec<u8>) -> Result<(), String> {
        self.link(link)?.send(data)
    }

    async fn receive(&mut self, link: u64, max_wait_ms: u32) -> Result<Vec<u8>, String> {
        let keyed = self.link(link)?;
        let received = keyed.receive(Duration::from_millis(u64::from(max_wait_ms))).await;
        if received.is_err() && keyed.socket.is_none() {
            // The module has learnt that the link ended: its key is free.
            self.link_registry()?.close(&self.mount.room(), link);
        }
        received
    }

    async fn lock(&mut self, link: u64) -> Result<(), String> {
        if self.held.iter().any(|held| held.link.id == link) {
            return Ok(());
        }
        let held = self.link(link)?.lock().await?;
        self.held.push(held);
        Ok(())
    }

    async fn set_idle_timeout(&mut self, link: u64, seconds: u32) -> Result<(), String> {
        self.link(link)?.set_idle_timeout(Duration::from_secs(u64::from(seconds.max(1))))
    }

    async fn park(&mut self, link: u64, max_wait_ms: u32, memo: Vec<u8>) -> Result<(), String> {
        if self.facts.is_none() || self.waking {
            return Err("only an HTTP request being handled can be parked".into());
        }
        if !self.mount.parks {
            return Err(format!("module {} does not export canto:http/parked-handler", self.mount.module));
        }
        let link = self.link(link)?;
        let turn = link.take_turn()?;
        self.parked = Some(Parked::new(link, turn, Duration::from_millis(u64::from(max_wait_ms)), memo)?);
        Ok(())
    }

    async fn close(&mut self, link: u64) {
        if let Ok(registry) = self.link_registry() {
            registry.close(&self.mount.room(), link);
        }
    }

    async fn state(&mut self, link: u64) -> Result<Vec<u8>, String> {
        self.link(link)?.state()
    }

    async fn set_state(&mut self, link: u64, state: Vec<u8>) -> Result<(), String> {
        self.link(link)?.set_state(state)
    }

    async fn connection(&mut self, link: u64) -> Option<u64> {
        self.link(link).ok()?.socket
    }
}

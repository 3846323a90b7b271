//! The host side of `canto:http/websocket`: what an instance may do to its
//! module's connections ([`super::socket_registry`] keeps them), and running
//! one event of a connection in a fresh instance ("hibernation": between
//! events a connection holds no instance, only its socket, send queue and
//! state).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};

pub use super::bindings::imports::canto::http::websocket::{ConnectionInfo, Message};
use super::bindings::websocket::WebsocketProviderPre;
use super::host_state::{InstanceState, MountIdentity, SandboxLimits};
use super::socket_registry::{MAX_STATE_BYTES, Outgoing, WsEvent};
use super::{WasmError, engine};

/// What a module that serves WebSockets offers, read when it is loaded.
pub struct WebsocketSupport {
    pre: WebsocketProviderPre<InstanceState>,
    /// In the module's order of preference.
    pub subprotocols: Vec<String>,
}

impl std::fmt::Debug for WebsocketSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebsocketSupport").field("subprotocols", &self.subprotocols).finish()
    }
}

/// One event of a connection, for the module's `websocket-handler`.
pub enum EventKind {
    Open,
    Message(Message),
    Close(u16, String),
}

impl WebsocketSupport {
    /// The module's WebSocket export, if it has one, with its subprotocols.
    pub(super) async fn load(
        engine: &Engine,
        module: &Arc<str>,
        pre: InstancePre<InstanceState>,
        sandbox: &SandboxLimits,
    ) -> Result<Option<Self>, WasmError> {
        let Ok(pre) = WebsocketProviderPre::new(pre) else { return Ok(None) };
        let mut store = Store::new(engine, InstanceState::new(loading_mount(module), None, sandbox));
        store.limiter(|state| &mut state.limits);
        engine::deadline(&mut store, Duration::from_secs(5));
        let asked = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.canto_http_websocket_handler().call_subprotocols(&mut store).await
        };
        let subprotocols = asked.await.map_err(|cause| WasmError::Metadata { module: module.clone(), cause })?;
        Ok(Some(Self { pre, subprotocols }))
    }

    /// Runs one event in a fresh instance, within the CPU and wall-clock
    /// budgets. For `Open`, `Ok(Some(status))` is the module refusing.
    pub async fn run(
        &self,
        mount: Arc<MountIdentity>,
        sandbox: &SandboxLimits,
        (cpu, wall): (Duration, Duration),
        event: WsEvent,
        kind: EventKind,
    ) -> Result<Option<u16>, WasmError> {
        let module = mount.module.clone();
        let mut store = event_store(self.pre.engine(), mount, sandbox, cpu, event);
        let call = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let handler = instance.canto_http_websocket_handler();
            match kind {
                EventKind::Open => Ok(handler.call_on_open(&mut store).await?.err()),
                EventKind::Message(message) => handler.call_on_message(&mut store, &message).await.map(|()| None),
                EventKind::Close(code, reason) => handler.call_on_close(&mut store, code, &reason).await.map(|()| None),
            }
        };
        settle(module, tokio::time::timeout(wall, call).await)
    }
}

/// A fresh store for one event of a connection, within its CPU budget.
pub(super) fn event_store(
    wasm: &Engine,
    mount: Arc<MountIdentity>,
    sandbox: &SandboxLimits,
    cpu: Duration,
    event: WsEvent,
) -> Store<InstanceState> {
    let mut state = InstanceState::new(mount, None, sandbox);
    state.websocket = Some(event);
    let mut store = Store::new(wasm, state);
    store.limiter(|state| &mut state.limits);
    engine::deadline(&mut store, cpu);
    store
}

/// How an event's call within its wall-clock budget ended.
pub(super) fn settle<T>(
    module: Arc<str>,
    ended: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
) -> Result<T, WasmError> {
    match ended {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(cause)) if cause.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) => {
            Err(WasmError::Timeout { module, limit: "CPU time" })
        }
        Ok(Err(cause)) => Err(WasmError::Failed { module, cause }),
        Err(_) => Err(WasmError::Timeout { module, limit: "wall-clock time" }),
    }
}

/// The identity a module runs under while it is being loaded.
pub(super) fn loading_mount(module: &Arc<str>) -> Arc<MountIdentity> {
    Arc::new(MountIdentity {
        module: module.clone(),
        host: Arc::from("*"),
        options: Default::default(),
        grants: Default::default(),
        granted_dirs: Default::default(),
        stores: Default::default(),
        store_refusal_logged: Default::default(),
        metrics: None,
        websockets: None,
        links: None,
        parks: false,
    })
}

/// `canto:http/websocket` for an instance: its own module's connections on
/// its own host only.
impl super::bindings::imports::canto::http::websocket::Host for InstanceState {
    fn current(&mut self) -> ConnectionInfo {
        match &self.websocket {
            Some(event) => event.info.clone(),
            None => ConnectionInfo {
                id: 0,
                host: self.mount.host.to_string(),
                client_ip: String::new(),
                secure: false,
                subprotocol: None,
                path_with_query: String::new(),
                headers: Vec::new(),
            },
        }
    }

    fn connections(&mut self) -> Vec<u64> {
        match &self.mount.websockets {
            Some(registry) => registry.ids(&self.mount.room()),
            None => Vec::new(),
        }
    }

    fn send(&mut self, to: u64, message: Message) -> Result<(), String> {
        let registry = self.mount.websockets.as_ref().ok_or("no WebSocket connections here")?;
        registry.send(&self.mount.room(), to, Outgoing::Message(message))
    }

    fn close(&mut self, to: u64, code: u16, reason: String) -> Result<(), String> {
        // RFC 6455 §7.4: the codes an endpoint may send, and 3000-4999.
        if !matches!(code, 1000..=1003 | 1007..=1009 | 1011..=1014 | 3000..=4999) {
            return Err(format!("close code {code} cannot be sent (RFC 6455 §7.4)"));
        }
        if reason.len() > 123 {
            return Err("a close reason is at most 123 bytes".into());
        }
        let registry = self.mount.websockets.as_ref().ok_or("no WebSocket connections here")?;
        registry.send(&self.mount.room(), to, Outgoing::Close(code, reason))
    }

    fn state(&mut self) -> Vec<u8> {
        let state = self.websocket.as_ref().and_then(|event| event.state.lock().ok().map(|s| s.clone()));
        state.unwrap_or_default()
    }

    fn set_state(&mut self, state: Vec<u8>) -> Result<(), String> {
        if state.len() > MAX_STATE_BYTES {
            return Err(format!("connection state is limited to {MAX_STATE_BYTES} bytes"));
        }
        let event = self.websocket.as_ref().ok_or("no WebSocket connection in this call")?;
        let mut current = event.state.lock().map_err(|_| "connection state unavailable")?;
        *current = state;
        Ok(())
    }
}

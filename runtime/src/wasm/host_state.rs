//! What one module instance owns while it serves one request: its WASI
//! sandbox (nothing granted), its `wasi:http` state, its limits, and the
//! request facts the `canto:http/context` import answers with.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::imports::canto::http::{context, log, metrics};
use super::outbound::OutboundPolicy;
use crate::config::Grants;

/// The per-instance bounds [`InstanceState::new`] applies.
#[derive(Clone, Copy, Debug)]
pub struct SandboxLimits {
    pub memory_bytes: u64,
    pub max_header_bytes: u64,
}

impl From<&crate::config::ModuleLimits> for SandboxLimits {
    fn from(limits: &crate::config::ModuleLimits) -> Self {
        Self { memory_bytes: limits.memory_bytes, max_header_bytes: limits.max_header_bytes }
    }
}

/// Resources (headers, streams, bodies…) one instance may hold at once.
/// Each lives in host memory, outside the guest's memory limit, so a guest
/// must not be able to create them without bound.
const MAX_RESOURCES: usize = 4096;

/// Facts the server established about a request, answered by
/// `canto:http/context`.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub host: Arc<str>,
    pub base_path: Arc<str>,
    pub base_url: Arc<str>,
    pub client_ip: std::net::IpAddr,
    pub secure: bool,
    /// The path and query exactly as the client sent them, before routing
    /// decoded and normalised the path.
    pub raw_path_with_query: Arc<str>,
    /// Where file bodies queue ranges for `sendfile`, on a plain-text
    /// HTTP/1.x connection.
    pub sendfile: Option<Arc<crate::sendfile::SendfileQueue>>,
    /// The server's metrics, for what the request's host calls count.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Which module on which host an instance belongs to; shared by all of its
/// requests.
#[derive(Debug)]
pub struct MountIdentity {
    pub module: Arc<str>,
    pub host: Arc<str>,
    /// The module's declared options as JSON, as this host sees them.
    pub options: BTreeMap<String, String>,
    /// Directories and environment the operator granted the module.
    pub grants: Grants,
    /// The granted directories, opened once (`canto:http/files`).
    pub granted_dirs: super::files::GrantedDirs,
    /// The stores it was granted, by name, within this host's namespace.
    pub stores: BTreeMap<String, super::keyvalue::Bucket>,
    /// Whether a refused `store.open` was logged already (once is enough).
    pub store_refusal_logged: std::sync::atomic::AtomicBool,
    /// The server's metrics, when `grants.metrics` allows reading them.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The server's WebSocket connections (this module reaches only its
    /// own on this host); `None` while loading.
    pub websockets: Option<Arc<super::socket_registry::WsRegistry>>,
    /// The server's links (again, this module reaches only its own here).
    pub links: Option<Arc<super::link_registry::LinkRegistry>>,
    /// Whether the module exports `parked-handler` (it may park requests).
    pub parks: bool,
}

impl MountIdentity {
    /// This module's WebSocket connections on this host.
    pub fn room(&self) -> super::socket_registry::Room {
        (Arc::clone(&self.host), Arc::clone(&self.module))
    }
}

/// The `T` of `Store<T>` for module instances.
pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    pub(super) limits: StoreLimits,
    pub(super) facts: Option<RequestFacts>,
    pub(super) mount: Arc<MountIdentity>,
    /// The connection whose event this instance runs, if it runs one.
    pub(super) websocket: Option<super::socket_registry::WsEvent>,
    /// Where the request this instance handles waits, if it parked it.
    pub(super) parked: Option<super::link_registry::Parked>,
    /// Set in an instance answering a woken request: it cannot park again.
    pub(super) waking: bool,
    /// Links this instance holds (`links.lock`), until it ends.
    pub(super) held: Vec<super::link_registry::HeldLink>,
    /// `wasi:keyvalue` compare-and-swaps open now (each holds a value).
    pub(super) open_swaps: usize,
}

impl InstanceState {
    /// A fresh sandbox: no arguments, no network, and only the
    /// directories and environment granted to the module; stdout and stderr
    /// go to the server log tagged with the module.
    pub fn new(mount: Arc<MountIdentity>, facts: Option<RequestFacts>, limits: &SandboxLimits) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestOutput { mount: Arc::clone(&mount), stream: "stdout" });
        wasi.stderr(GuestOutput { mount: Arc::clone(&mount), stream: "stderr" });
        wasi.envs(&mount.grants.env);
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
            .trap_on_grow_failure(true)
            .build();
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(usize::try_from(limits.max_header_bytes).unwrap_or(usize::MAX));
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut wasi = wasi.build();
        *wasi.filesystem() = mount.granted_dirs.wasi_filesystem();
        Self {
            table,
            wasi,
            http,
            outbound: OutboundPolicy::new(Arc::clone(&mount.grants.outgoing)),
            limits: store_limits,
            facts,
            mount,
            websocket: None,
            parked: None,
            waking: false,
            held: Vec::new(),
            open_swaps: 0,
        }
    }

    /// Readies a reused instance for its next request.
    pub(super) fn begin_request(&mut self, facts: RequestFacts) {
        self.facts = Some(facts);
    }

    /// Whether the guest still holds something of a request it returned
    /// from: the response slot, a body, the request itself. Such an
    /// instance must not serve again: dropping it is what ends that
    /// request (a held response slot would otherwise keep the client
    /// waiting, a held body would never end).
    pub(super) fn holds_request_state(&mut self) -> bool {
        use wasmtime_wasi_http::p2::body::{HostIncomingBody, HostOutgoingBody};
        use wasmtime_wasi_http::p2::types::{
            HostFutureIncomingResponse, HostIncomingRequest, HostOutgoingResponse, HostResponseOutparam,
        };
        self.table.iter_mut().any(|entry| {
            entry.is::<HostResponseOutparam>()
                || entry.is::<HostOutgoingResponse>()
                || entry.is::<HostOutgoingBody>()
                || entry.is::<HostIncomingRequest>()
                || entry.is::<HostIncomingBody>()
                || entry.is::<HostFutureIncomingResponse>()
        })
    }

    fn facts(&self) -> Option<&RequestFacts> {
        self.facts.as_ref()
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

impl context::Host for InstanceState {
    fn host(&mut self) -> String {
        self.facts().map_or_else(|| self.mount.host.to_string(), |f| f.host.to_string())
    }

    fn base_path(&mut self) -> String {
        self.facts().map_or_else(String::new, |f| f.base_path.to_string())
    }

    fn base_url(&mut self) -> String {
        self.facts().map_or_else(String::new, |f| f.base_url.to_string())
    }

    fn client_ip(&mut self) -> String {
        self.facts().map_or_else(String::new, |f| f.client_ip.to_string())
    }

    fn secure(&mut self) -> bool {
        self.facts().is_some_and(|f| f.secure)
    }

    fn raw_path_with_query(&mut self) -> String {
        self.facts().map_or_else(String::new, |f| f.raw_path_with_query.to_string())
    }

    fn config_option(&mut self, name: String) -> Option<String> {
        self.mount.options.get(&name).cloned()
    }
}

impl metrics::Host for InstanceState {
    fn collect(&mut self) -> Result<Vec<metrics::MetricFamily>, String> {
        let Some(source) = &self.mount.metrics else {
            return Err(format!(
                "module {} may not read the server's metrics (http_module_grants: metrics = true)",
                self.mount.module
            ));
        };
        let kind = |kind| match kind {
            crate::metrics::Kind::Counter => metrics::MetricKind::Counter,
            crate::metrics::Kind::Gauge => metrics::MetricKind::Gauge,
            crate::metrics::Kind::Histogram => metrics::MetricKind::Histogram,
        };
        let families = source.families().into_iter().map(|family| metrics::MetricFamily {
            name: family.name.into(),
            help: family.help.into(),
            kind: kind(family.kind),
            unit: family.unit.into(),
            samples: family
                .samples
                .into_iter()
                .map(|s| metrics::Sample { suffix: s.suffix.into(), labels: s.labels, value: s.value })
                .collect(),
        });
        Ok(families.collect())
    }
}

impl log::Host for InstanceState {
    fn log(&mut self, level: log::Level, message: String) {
        let message = printable(&message);
        let (module, host) = (&self.mount.module, &self.mount.host);
        match level {
            log::Level::Debug => tracing::debug!(target: "canto::module", %module, %host, "{message}"),
            log::Level::Info => tracing::info!(target: "canto::module", %module, %host, "{message}"),
            log::Level::Warn => tracing::warn!(target: "canto::module", %module, %host, "{message}"),
            log::Level::Error => tracing::error!(target: "canto::module", %module, %host, "{message}"),
        }
    }
}

/// A module's stdout or stderr, written to the server log one line at a time.
struct GuestOutput {
    mount: Arc<MountIdentity>,
    stream: &'static str,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Asked for from the guest's call, so its request's span is current;
        // the writes themselves happen on a task of wasmtime's.
        let span = tracing::Span::current();
        Box::new(LineLogger { mount: Arc::clone(&self.mount), stream: self.stream, pending: Vec::new(), span })
    }
}

/// Longest line kept before it is logged anyway, so a guest cannot grow the
/// buffer without bound by never writing a newline.
const MAX_LINE: usize = 8 * 1024;

struct LineLogger {
    mount: Arc<MountIdentity>,
    stream: &'static str,
    pending: Vec<u8>,
    span: tracing::Span,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = printable(text.trim_end_matches(['\r', '\n']));
        let _request = self.span.enter();
        tracing::info!(
            target: "canto::module",
            module = %self.mount.module,
            host = %self.mount.host,
            stream = self.stream,
            "{text}"
        );
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        while let Some(newline) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=newline).collect();
            self.emit(&line);
        }
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

/// Guest text with control characters escaped, so a module cannot forge
/// log lines (embedded newlines) or drive the operator's terminal.
fn printable(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

//! The request path, top to bottom: resolve the host → route to a mount →
//! run the module → answer, with one access-log line per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::mounts::ServerState;
use super::refusal::Refusal;
use super::websocket;
use bytes::Bytes;

use crate::body_limit::CappedBody;
use crate::body_pace::{MinRate, PacedBody};
use crate::cors;
use crate::error_page::{full_body, redirect, running_page};
use crate::metrics::ModuleOutcome;
use crate::routing::{Mount, RequestPath, Route, Site, request_path};
use crate::vhost::HostLookup;
use crate::wasm::link_registry::Parked;
use crate::wasm::links::{Answer, Woken};
use crate::wasm::{Answered, Invocation, ModuleBody, RequestFacts, SandboxLimits, WasmError};

/// Longer method names are refused (501): the longest registered method
/// (`UPDATEREDIRECTREF`) has 17 letters.
const MAX_METHOD_LENGTH: usize = 32;

/// Numbers requests for their log lines, server-wide.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The span every log line of one request carries, guest output included:
/// a request id, then the host, module and mount path once routed.
pub fn request_span(connection: &tracing::Span) -> tracing::Span {
    let id = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::info_span!(
        parent: connection,
        "request",
        id,
        vhost = tracing::field::Empty,
        module = tracing::field::Empty,
        http.route = tracing::field::Empty
    )
}

/// What the server knows about the connection a request came in on.
#[derive(Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub secure: bool,
    pub activity: Arc<super::connections::Activity>,
    /// The server's state as reloads replace it (a WebSocket outlives the
    /// state its upgrade saw).
    pub live: Arc<arc_swap::ArcSwap<ServerState>>,
    /// Where file bodies queue ranges for `sendfile`: plain-text
    /// connections only (TLS must see the bytes).
    pub sendfile: Option<Arc<crate::sendfile::SendfileQueue>>,
}

/// Which client, host and module a request reached, for the access log.
#[derive(Default)]
struct Reached {
    client: Option<std::net::IpAddr>,
    host: Option<Arc<str>>,
    module: Option<Arc<str>>,
}

pub async fn handle(
    state: &ServerState,
    connection: &ConnectionInfo,
    request: Request<Incoming>,
) -> Response<ModuleBody> {
    let version = request.version();
    let mut entry = AccessEntry::new(state, connection, &request);

    let response = match dispatch(state, connection, request, &mut entry.reached).await {
        Ok(response) => response,
        Err(refusal) => {
            let response = refusal.response(state.errors_detailed);
            let reached = &entry.reached;
            if let Refusal::Module(error) = &refusal {
                if let WasmError::Failed { cause, .. } = error {
                    tracing::debug!("{cause:?}");
                }
                tracing::error!(
                    host = %reached.host.as_deref().unwrap_or("-"),
                    module = %reached.module.as_deref().unwrap_or("-"),
                    "module failed, answered {}: {error}",
                    response.status().as_u16()
                );
            }
            response
        }
    };

    let response = frame_for_http10(version, response);
    entry.write(response.status().as_u16());
    response
}

/// A request's line in the access log, and its count in the metrics:
/// written when it is answered, or, if the client goes away first (which
/// drops the request's future), when it is dropped, as status 499 (nginx's
/// "client closed request").
struct AccessEntry<'a> {
    state: &'a ServerState,
    peer: std::net::IpAddr,
    started: Instant,
    // Kept as hyper parsed them (no copy per request); shown when logged.
    method: http::Method,
    uri: http::Uri,
    reached: Reached,
    logged: bool,
}

/// The status logged for a request whose client left before its answer.
const CLIENT_GONE: u16 = 499;

impl<'a> AccessEntry<'a> {
    fn new<B>(state: &'a ServerState, connection: &ConnectionInfo, request: &Request<B>) -> Self {
        Self {
            state,
            peer: connection.peer.ip(),
            started: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            reached: Reached::default(),
            logged: false,
        }
    }

    fn write(&mut self, status: u16) {
        self.logged = true;
        let took = self.started.elapsed();
        let (host, module) =
            (self.reached.host.as_deref().unwrap_or("-"), self.reached.module.as_deref().unwrap_or("-"));
        self.state.metrics.request(host, module, status, took);
        let ended = if status == CLIENT_GONE { " (the client closed the connection before the answer)" } else { "" };
        // Only so much of a client's method name reaches the log.
        let method = self.method.as_str();
        let (method, cut) = match method.get(..MAX_METHOD_LENGTH) {
            Some(kept) if method.len() > MAX_METHOD_LENGTH => (kept, "…"),
            _ => (method, ""),
        };
        tracing::info!(
            target: "canto::access",
            client = %self.reached.client.unwrap_or(self.peer),
            host = %host,
            module = %module,
            status,
            duration_ms = format_args!("{:.2}", took.as_secs_f64() * 1000.0),
            "{method}{cut} {}{ended}",
            self.uri.path()
        );
    }
}

impl Drop for AccessEntry<'_> {
    fn drop(&mut self) {
        if !self.logged {
            self.write(CLIENT_GONE);
        }
    }
}

async fn dispatch(
    state: &ServerState,
    connection: &ConnectionInfo,
    mut request: Request<Incoming>,
    reached: &mut Reached,
) -> Result<Response<ModuleBody>, Refusal> {
    if request.method() == http::Method::CONNECT && !websocket::is_extended_connect(&request) {
        return Err(Refusal::Connect);
    }
    if request.method().as_str().len() > MAX_METHOD_LENGTH {
        return Err(Refusal::UnknownMethod);
    }
    let site = match state.hosts.lookup(&request) {
        HostLookup::Found(site) => site,
        HostLookup::Unknown(host) => return Err(Refusal::UnknownHost(host)),
        HostLookup::Missing => return Err(Refusal::MissingHost),
        HostLookup::Several => return Err(Refusal::SeveralHosts),
    };

    let client = state.proxies.resolve(connection.peer.ip(), connection.secure, request.headers_mut());
    reached.client = Some(client.ip);

    let (mount, path) = match route(site, &request, reached)? {
        Routed::Module(mount, path) => (mount, path),
        // A 2xx to a CONNECT would open a tunnel (RFC 9113 §8.5).
        Routed::Answered(_) if websocket::is_extended_connect(&request) => return Err(Refusal::Connect),
        Routed::Answered(response) => return Ok(response),
    };
    let raw_path_with_query = give_module_routed_path(&mut request, &path)?;
    name_the_host(&mut request, &site.name);

    let origin = request.headers().get(http::header::ORIGIN).cloned();
    if let Some(cors) = &mount.cors
        && cors::is_preflight(request.method(), request.headers())
    {
        let mut response = Response::new(full_body(Bytes::new()));
        cors.apply(origin.as_ref(), response.headers_mut());
        return Ok(response);
    }

    if websocket::is_extended_connect(&request) && mount.module.websocket.is_none() {
        return Err(Refusal::Connect);
    }
    if let Some(support) = &mount.module.websocket
        && websocket::is_upgrade(&request)
    {
        let upgrade = websocket::Upgrade {
            state,
            live: &connection.live,
            mount,
            site: Arc::clone(&site.name),
            routed_path: path.decoded.clone(),
            client_ip: client.ip,
            secure: client.secure,
            raw_path_with_query,
            activity: &connection.activity,
        };
        return websocket::upgrade(upgrade, support, request).await;
    }

    let facts = RequestFacts {
        host: mount.host.clone(),
        base_path: mount.base_path.clone(),
        base_url: mount.base_url.clone(),
        client_ip: client.ip,
        secure: client.secure,
        raw_path_with_query,
        // HTTP/2 frames body bytes itself: only HTTP/1.x writes them as they are.
        sendfile: connection.sendfile.clone().filter(|_| request.version() <= http::Version::HTTP_11),
        metrics: Arc::clone(&state.metrics),
    };
    let head = request.method() == http::Method::HEAD;
    let mut response = run_module(state, mount, request, facts).await?;
    if head {
        // HEAD answers carry GET's headers, Content-Length included, and no
        // body; a module need not (and wasi:http cannot) send one that
        // matches, so the server drops whatever it sends.
        *response.body_mut() = full_body(Bytes::new());
    }
    if let Some(cors) = &mount.cors {
        cors.apply(origin.as_ref(), response.headers_mut());
    }
    Ok(response)
}

/// Where on its host a request goes.
enum Routed<'a> {
    Module(&'a Mount, RequestPath),
    /// Answered by the server: a redirect, or the "canto is running" page.
    Answered(Response<ModuleBody>),
}

/// Routes the request on its host, noting the host and module it reached
/// in `reached` and on the request's span.
fn route<'a>(site: &'a Site, request: &Request<Incoming>, reached: &mut Reached) -> Result<Routed<'a>, Refusal> {
    let path = request_path(request.uri().path()).map_err(|_| Refusal::InvalidPath)?;
    let mount = match site.route(&path.decoded) {
        Route::Module(mount) => mount,
        Route::AddSlash(mount) => {
            reached.host = Some(mount.host.clone());
            let location = match request.uri().query() {
                Some(query) => format!("{}/?{query}", path.encoded),
                None => format!("{}/", path.encoded),
            };
            return Ok(Routed::Answered(redirect(&location)));
        }
        Route::Root => return Ok(Routed::Answered(running_page())),
        Route::NotFound => {
            reached.host = Some(Arc::clone(&site.name));
            return Err(Refusal::NotMounted);
        }
    };
    reached.host = Some(mount.host.clone());
    reached.module = Some(mount.module.name.clone());
    let span = tracing::Span::current();
    span.record("vhost", tracing::field::display(&mount.host));
    span.record("module", tracing::field::display(&mount.module.name));
    span.record("http.route", tracing::field::display(&mount.base_path));
    Ok(Routed::Module(mount, path))
}

/// Runs the mounted module on the request, once it has a slot, with its
/// body bounded in size and pace; counts how the run ended.
async fn run_module(
    state: &ServerState,
    mount: &Mount,
    request: Request<Incoming>,
    facts: RequestFacts,
) -> Result<Response<ModuleBody>, Refusal> {
    // A streaming module (file upload) holds uploads to its own limit.
    let limit = if mount.module.metadata.streaming_uploads { u64::MAX } else { state.max_content_size };
    let declared_length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        return Err(Refusal::BodyTooLarge(limit));
    }
    let permits = state.module_slots(mount).await?;
    let watch =
        BodyWatch { metrics: Arc::clone(&state.metrics), client: facts.client_ip, module: mount.module.name.clone() };
    let (request, cut) = bound_request_body(request, limit, state.connections.body_min_rate, watch);
    let invocation = Invocation {
        module: Arc::clone(&mount.module),
        mount: Arc::clone(&mount.identity),
        facts: facts.clone(),
        sandbox: SandboxLimits::from(&state.limits),
        timeout: state.limits.timeout,
        wall_timeout: state.limits.wall_timeout,
        max_response_bytes: state.limits.max_response_bytes,
        permits,
        reuse: mount.reuse.clone(),
    };
    let result = invocation.run(request).await;
    let cut = cut.get().copied();
    let outcome = match &result {
        // The server cut the body: the module did nothing wrong.
        Err(_) if cut.is_some() => ModuleOutcome::Answered,
        Err(error) => error.outcome(),
        Ok(_) => ModuleOutcome::Answered,
    };
    state.metrics.module_run(&mount.module.name, outcome);
    match (cut, result) {
        (Some(BodyCut::TooLarge), Err(_)) => Err(Refusal::BodyTooLarge(limit)),
        (Some(BodyCut::TooSlow), Err(_)) => Err(Refusal::BodyTooSlow),
        (_, Err(error)) => Err(Refusal::Module(error)),
        (_, Ok(Answered::Now(response))) => Ok(response),
        (_, Ok(Answered::Parked(parked))) => wake(state, mount, facts, parked).await,
    }
}

/// A request its module parked on a keyed link: waits, holding no slot,
/// then has the module answer it in a fresh instance.
async fn wake(
    state: &ServerState,
    mount: &Mount,
    facts: RequestFacts,
    parked: Parked,
) -> Result<Response<ModuleBody>, Refusal> {
    let module = &mount.module.name;
    let Some(handler) = &mount.module.parked else {
        return Err(Refusal::Module(WasmError::NoParkedHandler { module: module.clone() }));
    };
    parked.ready().await;
    // A slot first, then the link: an instance holding the link may be
    // waiting for nothing but its own end, never for this slot.
    let _permits = state.module_slots(mount).await?;
    let mut held = parked
        .link
        .lock()
        .await
        .map_err(|error| Refusal::Module(WasmError::LinkHeld { module: module.clone(), error }))?;
    let (data, ended) = parked.take(&held);
    // Until the module answers, what it is given goes back to the link if
    // the answer never comes (a trap, a timeout, the client leaving): put
    // back while the link is still held, so nothing newer is read first.
    held.undelivered = Some(data.clone());
    if ended.is_some() {
        // The module hears why now: the key is free for a new link.
        state.links.close(&mount.identity.room(), parked.link.id);
    }
    let sandbox = SandboxLimits::from(&state.limits);
    let budgets = (state.limits.timeout, state.limits.wall_timeout);
    let woken = Woken { link: parked.link.id, data, ended, memo: parked.memo.clone(), held };
    let result = handler.wake(Arc::clone(&mount.identity), facts, &sandbox, budgets, woken).await;
    let outcome = result.as_ref().map_or_else(WasmError::outcome, |_| ModuleOutcome::Answered);
    state.metrics.module_run(module, outcome);
    woken_response(module, result.map_err(Refusal::Module)?, state.limits.max_response_bytes)
}

/// Headers that frame the message or the connection: the server sets them,
/// never a module's answer (wasi:http refuses them too).
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// A woken request's answer as a response: a final status, no framing
/// headers, a body within `http_module_max_response_size`.
fn woken_response(module: &Arc<str>, answer: Answer, max_bytes: u64) -> Result<Response<ModuleBody>, Refusal> {
    let bad = || Refusal::Module(WasmError::BadAnswer { module: module.clone(), status: answer.status });
    let status = StatusCode::from_u16(answer.status).ok().filter(|s| !s.is_informational()).ok_or_else(bad)?;
    if answer.body.len() as u64 > max_bytes {
        return Err(bad());
    }
    let mut response = Response::new(full_body(Bytes::from(answer.body)));
    *response.status_mut() = status;
    for (name, value) in answer.headers {
        match (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(&value)) {
            (Ok(name), Ok(value)) if !FRAMING_HEADERS.contains(&name.as_str()) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::warn!(%module, "dropped a header from a parked request's answer: {name:?}"),
        }
    }
    Ok(response)
}

/// A request that reached its host through `http_default_host` with no
/// (or an unreadable) Host gets the name of the host that answered, so
/// modules (and `wasi:http`) see it.
fn name_the_host<B>(request: &mut Request<B>, site_name: &str) {
    let usable_host = request.headers().get(http::header::HOST).is_some_and(|h| h.to_str().is_ok());
    if request.uri().authority().is_none()
        && !usable_host
        && let Ok(host) = http::HeaderValue::from_str(site_name)
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
}

/// Puts the path the request was routed on into its URI, so the module's
/// path and base path agree with the routing (`//st%61tic/a` reached the
/// mount at `/static`: the module sees `/static/a`); the query stays as
/// sent. Returns the path and query as the client sent them.
fn give_module_routed_path<B>(request: &mut Request<B>, path: &RequestPath) -> Result<Arc<str>, Refusal> {
    let raw: Arc<str> = request.uri().path_and_query().map_or("/", |p| p.as_str()).into();
    if request.uri().path() == path.encoded {
        return Ok(raw); // the usual case: nothing to rewrite
    }
    let routed = match request.uri().query() {
        Some(query) => format!("{}?{query}", path.encoded),
        None => path.encoded.clone(),
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(routed.parse().map_err(|_| Refusal::InvalidPath)?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| Refusal::InvalidPath)?;
    Ok(raw)
}

/// HTTP/1.0 has no chunked encoding, so a body of unknown length can only
/// be ended by closing the connection: say so (`Connection: close`) rather
/// than let an HTTP/1.0 keep-alive client wait for more.
fn frame_for_http10(version: http::Version, mut response: Response<ModuleBody>) -> Response<ModuleBody> {
    use http_body::Body as _;
    let length_known =
        response.headers().contains_key(http::header::CONTENT_LENGTH) || response.body().size_hint().exact().is_some();
    if version == http::Version::HTTP_10 && !length_known {
        response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// Why the server cut a request body short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyCut {
    /// Past `http_max_content_size` (a length not declared up front).
    TooLarge,
    /// Slower than `http_body_min_rate`.
    TooSlow,
}

/// Who to tell when a request body comes too slowly.
struct BodyWatch {
    metrics: Arc<crate::metrics::Metrics>,
    client: std::net::IpAddr,
    module: Arc<str>,
}

/// A request body that fails once it passes `limit` bytes, or once its
/// client falls below `min_rate`; the returned cell then says which, so the
/// answer can be 413 or 408.
fn bound_request_body(
    request: Request<Incoming>,
    limit: u64,
    min_rate: MinRate,
    watch: BodyWatch,
) -> (Request<CappedBody<PacedBody<Incoming>>>, Arc<OnceLock<BodyCut>>) {
    let cut = Arc::new(OnceLock::new());
    let (too_large, too_slow) = (Arc::clone(&cut), Arc::clone(&cut));
    let on_slow = move |slow: crate::body_pace::TooSlow| {
        let _ = too_slow.set(BodyCut::TooSlow);
        watch.metrics.body_too_slow(true);
        tracing::warn!(
            client = %watch.client,
            module = %watch.module,
            "request body cut: {} bytes in {:.1} s waiting on the client (http_body_min_rate = {})",
            slow.bytes,
            slow.window.as_secs_f64(),
            min_rate.bytes_per_second
        );
    };
    let request = request.map(|body| {
        CappedBody::new(
            PacedBody::new(body, min_rate, Box::new(on_slow)),
            limit,
            |limit| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
            Box::new(move || {
                let _ = too_large.set(BodyCut::TooLarge);
            }),
        )
    });
    (request, cut)
}

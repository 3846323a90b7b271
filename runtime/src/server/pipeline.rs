//! The request path, top to bottom: resolve the host → route to a mount →
//! run the module → answer, with one access-log line per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::ServerState;
use bytes::Bytes;

use crate::body_limit::CappedBody;
use crate::cors;
use crate::error_page::{error_page, full_body, redirect, running_page};
use crate::metrics::ModuleOutcome;
use crate::routing::{RequestPath, Route, request_path};
use crate::vhost::HostLookup;
use crate::wasm::{Invocation, ModuleBody, RequestFacts, SandboxLimits, WasmError};

/// Longer method names are refused (501): the longest registered method
/// (`UPDATEREDIRECTREF`) has 17 letters.
const MAX_METHOD_LENGTH: usize = 32;

/// What the server knows about the connection a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub secure: bool,
}

/// Why a request was not answered by a module; each maps to one status.
enum Refusal {
    /// `CONNECT`: canto is no tunnel, and a 200 would read as one.
    Connect,
    /// A method name longer than any real one.
    UnknownMethod,
    MissingHost,
    SeveralHosts,
    UnknownHost(String),
    InvalidPath,
    NotMounted,
    BodyTooLarge(u64),
    /// No module slot came free within `http_module_queue_timeout`.
    Busy,
    Module(WasmError),
}

impl Refusal {
    fn response(&self, detailed: bool) -> Response<ModuleBody> {
        match self {
            Refusal::Connect => {
                let mut response = error_page(StatusCode::METHOD_NOT_ALLOWED, Some("CONNECT is not served here"));
                response.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
                );
                response
            }
            Refusal::UnknownMethod => error_page(StatusCode::NOT_IMPLEMENTED, Some("Unknown method")),
            Refusal::MissingHost => error_page(StatusCode::BAD_REQUEST, Some("Missing or invalid 'Host' header")),
            Refusal::SeveralHosts => error_page(StatusCode::BAD_REQUEST, Some("More than one 'Host' header")),
            Refusal::UnknownHost(host) => error_page(StatusCode::NOT_FOUND, Some(&format!("Unknown host: {host}"))),
            Refusal::InvalidPath => error_page(StatusCode::BAD_REQUEST, Some("Invalid path")),
            Refusal::NotMounted => error_page(StatusCode::NOT_FOUND, None),
            Refusal::BodyTooLarge(limit) => {
                error_page(StatusCode::PAYLOAD_TOO_LARGE, Some(&format!("Request bodies are limited to {limit} bytes")))
            }
            Refusal::Busy => {
                let mut response = error_page(StatusCode::SERVICE_UNAVAILABLE, Some("Too busy; try again shortly"));
                response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
                response
            }
            Refusal::Module(WasmError::Timeout { .. }) => error_page(StatusCode::GATEWAY_TIMEOUT, None),
            // The cause is logged; only an operator who asked for
            // http_errors_detailed sees it on the page.
            Refusal::Module(error) if detailed => {
                error_page(StatusCode::INTERNAL_SERVER_ERROR, Some(&error.to_string()))
            }
            Refusal::Module(_) => error_page(StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }
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
    method: String,
    path: String,
    reached: Reached,
    logged: bool,
}

/// The status logged for a request whose client left before its answer.
const CLIENT_GONE: u16 = 499;

impl<'a> AccessEntry<'a> {
    fn new<B>(state: &'a ServerState, connection: &ConnectionInfo, request: &Request<B>) -> Self {
        let method = request.method().as_str();
        // Only so much of a client's method name reaches the log.
        let method = match method.get(..MAX_METHOD_LENGTH) {
            Some(cut) if method.len() > MAX_METHOD_LENGTH => format!("{cut}…"),
            _ => method.to_string(),
        };
        Self {
            state,
            peer: connection.peer.ip(),
            started: Instant::now(),
            method,
            path: request.uri().path().to_owned(),
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
        tracing::info!(
            target: "canto::access",
            client = %self.reached.client.unwrap_or(self.peer),
            host = %host,
            module = %module,
            status,
            duration_ms = format_args!("{:.2}", took.as_secs_f64() * 1000.0),
            "{} {}{ended}",
            self.method,
            self.path
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
    if request.method() == http::Method::CONNECT {
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

    let path = request_path(request.uri().path()).map_err(|_| Refusal::InvalidPath)?;
    let mount = match site.route(&path.decoded) {
        Route::Module(mount) => mount,
        Route::AddSlash(mount) => {
            reached.host = Some(mount.host.clone());
            let location = match request.uri().query() {
                Some(query) => format!("{}/?{query}", path.encoded),
                None => format!("{}/", path.encoded),
            };
            return Ok(redirect(&location));
        }
        Route::Root => return Ok(running_page()),
        Route::NotFound => {
            reached.host = Some(Arc::clone(&site.name));
            return Err(Refusal::NotMounted);
        }
    };
    reached.host = Some(mount.host.clone());
    reached.module = Some(mount.module.name.clone());
    let raw_path_with_query = give_module_routed_path(&mut request, &path)?;
    let usable_host = request.headers().get(http::header::HOST).is_some_and(|h| h.to_str().is_ok());
    if request.uri().authority().is_none() && !usable_host {
        // Reached through http_default_host with no (or an unreadable)
        // Host: modules, and wasi:http, see the host that answered.
        if let Ok(host) = http::HeaderValue::from_str(&site.name) {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }

    let origin = request.headers().get(http::header::ORIGIN).cloned();
    if let Some(cors) = &mount.cors
        && cors::is_preflight(request.method(), request.headers())
    {
        let mut response = Response::new(full_body(Bytes::new()));
        cors.apply(origin.as_ref(), response.headers_mut());
        return Ok(response);
    }

    let facts = RequestFacts {
        host: mount.host.clone(),
        base_path: mount.base_path.clone(),
        base_url: mount.base_url.clone(),
        client_ip: client.ip,
        secure: client.secure,
        raw_path_with_query,
    };
    let limit = state.max_content_size;
    let declared_length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        return Err(Refusal::BodyTooLarge(limit));
    }

    // The module's own share first, so a hot module queues on itself
    // rather than taking the server-wide pool from everyone else.
    // Waiting is bounded: slow clients holding every slot must not leave
    // the next request hanging with no answer.
    let closed = || Refusal::Module(WasmError::NoResponse { module: mount.module.name.clone() });
    let queue = state.limits.queue_timeout;
    let slots = async {
        let module_permit = Arc::clone(&mount.module.concurrency).acquire_owned().await.map_err(|_| closed())?;
        let pool_permit = Arc::clone(&state.instances).acquire_owned().await.map_err(|_| closed())?;
        Ok::<_, Refusal>((module_permit, pool_permit))
    };
    let Ok(slots) = tokio::time::timeout(queue, slots).await else {
        state.metrics.module_busy(&mount.module.name);
        tracing::warn!(
            host = %mount.host,
            module = %mount.module.name,
            "no free slot after {queue:?} (http_module_max_concurrency / http_module_pool_size); answered 503"
        );
        return Err(Refusal::Busy);
    };
    let (module_permit, pool_permit) = slots?;
    let (request, overflowed) = limit_request_body(request, limit);
    let invocation = Invocation {
        module: Arc::clone(&mount.module),
        mount: Arc::clone(&mount.identity),
        facts,
        sandbox: SandboxLimits::from(&state.limits),
        timeout: state.limits.timeout,
        wall_timeout: state.limits.wall_timeout,
        max_response_bytes: state.limits.max_response_bytes,
        permits: [module_permit, pool_permit],
        reuse: mount.reuse.clone(),
    };
    let head = request.method() == http::Method::HEAD;
    let result = invocation.run(request).await;
    let outcome = match &result {
        // The body was cut at the limit: the module did nothing wrong.
        Err(_) if overflowed.load(Ordering::Relaxed) => ModuleOutcome::Answered,
        Err(WasmError::Timeout { .. }) => ModuleOutcome::TimedOut,
        Err(_) => ModuleOutcome::Trapped,
        Ok(_) => ModuleOutcome::Answered,
    };
    state.metrics.module_run(&mount.module.name, outcome);
    if overflowed.load(Ordering::Relaxed) && result.is_err() {
        return Err(Refusal::BodyTooLarge(limit));
    }
    let mut response = result.map_err(Refusal::Module)?;
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

/// A request body that fails once it passes `limit` bytes (for bodies whose
/// length was not declared up front), raising the returned flag so the
/// answer can be 413.
fn limit_request_body(request: Request<Incoming>, limit: u64) -> (Request<CappedBody<Incoming>>, Arc<AtomicBool>) {
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&overflowed);
    let request = request.map(|body| {
        CappedBody::new(
            body,
            limit,
            |limit| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
            Box::new(move || flag.store(true, Ordering::Relaxed)),
        )
    });
    (request, overflowed)
}

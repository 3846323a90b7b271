//! The request path, top to bottom: resolve the host → route to a mount →
//! run the module → answer, with one access-log line per request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::ServerState;
use bytes::Bytes;

use crate::cors;
use crate::error_page::{error_page, full_body, redirect, running_page};
use crate::routing::{Route, request_path};
use crate::vhost::HostLookup;
use crate::wasm::{Invocation, ModuleBody, RequestFacts, WasmError};

/// What the server knows about the connection a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub secure: bool,
}

/// Why a request was not answered by a module; each maps to one status.
enum Refusal {
    MissingHost,
    UnknownHost(String),
    InvalidPath,
    NotMounted,
    Module(WasmError),
}

impl Refusal {
    fn response(&self, detailed: bool) -> Response<ModuleBody> {
        match self {
            Refusal::MissingHost => error_page(StatusCode::BAD_REQUEST, Some("Missing or invalid 'Host' header")),
            Refusal::UnknownHost(host) => error_page(StatusCode::NOT_FOUND, Some(&format!("Unknown host: {host}"))),
            Refusal::InvalidPath => error_page(StatusCode::BAD_REQUEST, Some("Invalid path")),
            Refusal::NotMounted => error_page(StatusCode::NOT_FOUND, None),
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
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut reached = Reached::default();

    let response = match dispatch(state, connection, request, &mut reached).await {
        Ok(response) => response,
        Err(refusal) => {
            if let Refusal::Module(error) = &refusal {
                tracing::error!(
                    host = %reached.host.as_deref().unwrap_or("-"),
                    module = %reached.module.as_deref().unwrap_or("-"),
                    "module failed, answered 500: {error}"
                );
            }
            refusal.response(state.errors_detailed)
        }
    };

    tracing::info!(
        target: "canto::access",
        client = %reached.client.unwrap_or(connection.peer.ip()),
        host = %reached.host.as_deref().unwrap_or("-"),
        module = %reached.module.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        duration_ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
        "{method} {path}"
    );
    response
}

async fn dispatch(
    state: &ServerState,
    connection: &ConnectionInfo,
    mut request: Request<Incoming>,
    reached: &mut Reached,
) -> Result<Response<ModuleBody>, Refusal> {
    let site = match state.hosts.lookup(&request) {
        HostLookup::Found(site) => site,
        HostLookup::Unknown(host) => return Err(Refusal::UnknownHost(host)),
        HostLookup::Missing => return Err(Refusal::MissingHost),
    };

    let client = state.proxies.resolve(connection.peer.ip(), connection.secure, request.headers_mut());
    reached.client = Some(client.ip);

    let path = request_path(request.uri().path()).map_err(|_| Refusal::InvalidPath)?;
    let mount = match site.route(&path) {
        Route::Module(mount) => mount,
        Route::AddSlash(mount) => {
            reached.host = Some(mount.host.clone());
            let location = match request.uri().query() {
                Some(query) => format!("{path}/?{query}"),
                None => format!("{path}/"),
            };
            return Ok(redirect(&location));
        }
        Route::Root => return Ok(running_page()),
        Route::NotFound => return Err(Refusal::NotMounted),
    };
    reached.host = Some(mount.host.clone());
    reached.module = Some(mount.module.name.clone());
    if request.uri().authority().is_none() && !request.headers().contains_key(http::header::HOST) {
        // Reached through http_default_host with no Host at all: modules
        // (and wasi:http) see the host that answered.
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
    };
    let permit = Arc::clone(&state.instances)
        .acquire_owned()
        .await
        .map_err(|_| Refusal::Module(WasmError::NoResponse { module: mount.module.name.clone() }))?;
    let invocation = Invocation {
        module: Arc::clone(&mount.module),
        mount: Arc::clone(&mount.identity),
        facts,
        memory_bytes: state.limits.memory_bytes,
        timeout: state.limits.timeout,
        permit,
    };
    let mut response = invocation.run(request).await.map_err(Refusal::Module)?;
    if let Some(cors) = &mount.cors {
        cors.apply(origin.as_ref(), response.headers_mut());
    }
    Ok(response)
}

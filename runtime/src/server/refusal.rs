//! Why the server answered a request itself instead of a module, and the
//! one status (and page) each reason gets.

use http::{Response, StatusCode};

use crate::error_page::error_page;
use crate::wasm::{ModuleBody, WasmError};

/// Why a request was not answered by a module; each maps to one status.
pub enum Refusal {
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
    /// The client sent its body slower than `http_body_min_rate`.
    BodyTooSlow,
    /// No module slot came free within `http_module_queue_timeout`.
    Busy,
    Module(WasmError),
    /// A WebSocket upgrade that is not one.
    BadUpgrade(&'static str),
    /// A WebSocket version other than 13.
    WebSocketVersion,
    /// A WebSocket upgrade from an Origin the module's CORS policy refuses.
    OriginRefused,
    /// The module refused to open the WebSocket, with this status.
    OpenRefused(StatusCode),
}

impl Refusal {
    pub fn response(&self, detailed: bool) -> Response<ModuleBody> {
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
            Refusal::BodyTooSlow => {
                let mut response = error_page(StatusCode::REQUEST_TIMEOUT, Some("The request body came too slowly"));
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                response
            }
            Refusal::Busy => {
                let mut response = error_page(StatusCode::SERVICE_UNAVAILABLE, Some("Too busy; try again shortly"));
                response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
                response
            }
            Refusal::BadUpgrade(why) => error_page(StatusCode::BAD_REQUEST, Some(why)),
            Refusal::WebSocketVersion => {
                let mut response = error_page(StatusCode::UPGRADE_REQUIRED, Some("WebSocket version 13 only"));
                response
                    .headers_mut()
                    .insert(http::header::SEC_WEBSOCKET_VERSION, http::HeaderValue::from_static("13"));
                response
            }
            Refusal::OriginRefused => error_page(StatusCode::FORBIDDEN, Some("Origin not allowed")),
            Refusal::OpenRefused(status) => error_page(*status, None),
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

//! `http_openmetrics`: the server's own metrics as OpenMetrics text at
//! `/metrics`, like Prosody's mod_http_openmetrics.
//!
//! Only `GET` and `HEAD` of the base path itself are served (`/metrics/`
//! is 404, as in Prosody), and only to a client whose address is in
//! `openmetrics_allow_ips` (default `["::1", "127.0.0.1"]`) or inside the
//! `openmetrics_allow_cidr` network; anyone else gets 403. The numbers come
//! from canto's `metrics` import, which the server grants this module.
//!
//! Unlike Prosody (Prometheus text `version=0.0.4`), the body is
//! OpenMetrics 1.0.0, ending in `# EOF`. The rendering and the access
//! rules live in modules without wasm imports (`render`, `access`), which
//! host tests cover.

#![warn(clippy::unwrap_used)]

mod access;
mod render;

use std::net::IpAddr;

use canto_sdk::bindings::canto::http::metrics;
use canto_sdk::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam, context, log};
use serde_json::Value;

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use metadata::exports::canto::http::metadata::{Guest, ModuleInfo};

const TEXT: &str = "text/plain; charset=utf-8";

struct OpenMetrics;

impl Guest for OpenMetrics {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/metrics".into()),
            cors: None,
            options: ["openmetrics_allow_ips", "openmetrics_allow_cidr"].map(String::from).to_vec(),
            serve_bare_path: true,
            streaming_uploads: false,
        }
    }
}

impl canto_sdk::Handler for OpenMetrics {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let head = matches!(request.method(), Method::Head);
        answer(&request).send(out, head);
    }
}

canto_sdk::export!(OpenMetrics);
metadata::export!(OpenMetrics with_types_in metadata);

fn answer(request: &IncomingRequest) -> Reply {
    if canto_sdk::path(request) != context::base_path() {
        return Reply::text(404, "Not found\n");
    }
    if !matches!(request.method(), Method::Get | Method::Head) {
        return Reply { allow: true, ..Reply::text(405, "Method not allowed: only GET and HEAD are served here\n") };
    }
    if !client_allowed() {
        return Reply::text(403, "Forbidden\n");
    }
    match metrics::collect() {
        Ok(families) => {
            Reply { status: 200, content_type: render::CONTENT_TYPE, body: render::render(&families), allow: false }
        }
        Err(message) => {
            log::log(log::Level::Error, &format!("cannot collect metrics: {message}"));
            Reply::text(500, &format!("Cannot collect metrics: {message}\n"))
        }
    }
}

/// Whether the client's address (after trusted-proxy processing) is
/// allowed by `openmetrics_allow_ips` or `openmetrics_allow_cidr`.
fn client_allowed() -> bool {
    let (ips, invalid) = access::allow_ips(option("openmetrics_allow_ips"));
    for entry in invalid {
        log::log(log::Level::Warn, &format!("openmetrics_allow_ips: {entry} is not an IP address"));
    }
    let cidr = access::allow_cidr(option("openmetrics_allow_cidr")).unwrap_or_else(|value| {
        log::log(log::Level::Warn, &format!("openmetrics_allow_cidr: {value} is not a network like 10.0.0.0/8"));
        None
    });
    let client = context::client_ip();
    match client.parse::<IpAddr>() {
        Ok(ip) => access::allowed(ip, &ips, cidr),
        Err(_) => {
            log::log(log::Level::Debug, &format!("refusing metrics to unparsable client address {client:?}"));
            false
        }
    }
}

/// A declared option's JSON value; invalid JSON is logged and counts as unset.
fn option(name: &str) -> Option<Value> {
    let text = context::config_option(name)?;
    serde_json::from_str(&text)
        .inspect_err(|error| log::log(log::Level::Warn, &format!("option {name} is not valid JSON: {error}")))
        .ok()
}

/// A complete response.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Whether to send `Allow: GET, HEAD` (with a 405).
    allow: bool,
}

impl Reply {
    fn text(status: u16, message: &str) -> Self {
        Reply { status, content_type: TEXT, body: message.into(), allow: false }
    }

    /// Sends the reply; for HEAD, the same head without the body.
    fn send(self, out: ResponseOutparam, head: bool) {
        let fields = Fields::new();
        // These names and values are all the module's own and valid.
        let _ = fields.append("content-type", self.content_type.as_bytes());
        let _ = fields.append("content-length", self.body.len().to_string().as_bytes());
        if self.allow {
            let _ = fields.append("allow", b"GET, HEAD");
        }
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(self.status);
        let Ok(outgoing) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let Ok(stream) = outgoing.write() else { return };
        if !head && let Err(error) = canto_sdk::write_all(&stream, self.body.as_bytes()) {
            // The head is out; dropping the body unfinished cuts it short.
            log::log(log::Level::Debug, &format!("metrics response cut short: {error:?}"));
            return;
        }
        canto_sdk::finish(outgoing, stream);
    }
}

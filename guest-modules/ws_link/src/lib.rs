//! `http_ws_link`: bridges clients to a TCP service through the server's
//! links (`canto:http/links`), the way an XMPP-over-WebSocket or BOSH
//! module reaches its XMPP server. The target is the request's `target`
//! query parameter (`host:port`; `tls=1` for TLS); only what the module's
//! `connect` grant names can be reached.
//!
//! - A WebSocket opens a link bound to itself: each message goes to the
//!   link, what arrives on the link comes back as a text message, and the
//!   link closing closes the socket with 4000 and the reason. The message
//!   `close-link` closes the link from this side.
//! - A plain GET uses a keyed link (`key`): opened on first use, `send`
//!   queued to it, then up to `wait` milliseconds of what arrived is the
//!   answer (`queued` without `wait`); `close=1` closes it. 404 for `open=0` with no such link, 502
//!   with the reason when the link cannot be opened or has closed. With
//!   `park=1` the request is parked on the link instead of waiting in the
//!   instance, and answered by `on-wake` (`X-Woken: data`, `timeout` or
//!   `ended`).

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/bridge-module",
    generate_all,
});

use canto::http::links::{self, Owner};
use canto::http::log::{Level, log};
use canto::http::websocket::{self, Message};
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Bridge;

/// The value of `name` in a query string (no percent-decoding needed here).
fn param(path_with_query: &str, name: &str) -> Option<String> {
    let query = path_with_query.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.replace("%20", " "))
    })
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers =
        Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// What a GET on a keyed link comes to.
enum Keyed {
    Answer(u16, Vec<u8>),
    Parked,
}

fn keyed(query: &str) -> Result<Keyed, (u16, String)> {
    let key = param(query, "key").ok_or((400, "key is required".to_string()))?;
    let link = match links::find(&key) {
        Some(link) => link,
        None if param(query, "open").as_deref() == Some("0") => return Err((404, format!("no link for {key}"))),
        None => {
            let target = param(query, "target").ok_or((400, "target is required".to_string()))?;
            let tls = param(query, "tls").as_deref() == Some("1");
            links::open(&target, tls, &Owner::Key(key.clone())).map_err(|error| (502, error))?
        }
    };
    if param(query, "close").as_deref() == Some("1") {
        links::close(link);
        return Ok(Keyed::Answer(200, b"closed".to_vec()));
    }
    let wait = param(query, "wait").and_then(|w| w.parse().ok());
    let park = param(query, "park").as_deref() == Some("1");
    // Parked first, then sent: what the peer answers comes to this request,
    // not to an earlier one still waiting on the link.
    if let (Some(wait), true) = (wait, park) {
        links::park(link, wait, &[]).map_err(|error| (500, error))?;
    }
    if let Some(text) = param(query, "send") {
        links::send(link, format!("{text}\n").as_bytes()).map_err(|error| (502, error))?;
    }
    match wait {
        None => Ok(Keyed::Answer(200, b"queued".to_vec())),
        Some(_) if park => Ok(Keyed::Parked),
        Some(wait) => Ok(Keyed::Answer(200, links::receive(link, wait).map_err(|error| (502, error))?)),
    }
}

impl exports::wasi::http::incoming_handler::Guest for Bridge {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        match keyed(&query) {
            Ok(Keyed::Answer(status, body)) => respond(out, status, &body),
            // No response: the server holds the request until `on_wake`.
            Ok(Keyed::Parked) => drop(out),
            Err((status, error)) => respond(out, status, error.as_bytes()),
        }
    }
}

/// The link this connection opened, kept in its state between events.
fn my_link() -> Option<u64> {
    let state = websocket::state();
    Some(u64::from_le_bytes(state.get(..8)?.try_into().ok()?))
}

impl exports::canto::http::websocket_handler::Guest for Bridge {
    fn subprotocols() -> Vec<String> {
        Vec::new()
    }

    fn on_open() -> Result<(), u16> {
        let query = websocket::current().path_with_query;
        let target = param(&query, "target").ok_or(400u16)?;
        let tls = param(&query, "tls").as_deref() == Some("1");
        match links::open(&target, tls, &Owner::Websocket) {
            Ok(link) => {
                let _ = websocket::set_state(&link.to_le_bytes());
                Ok(())
            }
            Err(error) => {
                log(Level::Warn, &format!("cannot open a link to {target}: {error}"));
                Err(502)
            }
        }
    }

    fn on_message(message: Message) {
        let Some(link) = my_link() else { return };
        let data = match message {
            Message::Text(text) if text == "close-link" => {
                links::close(link);
                let _ = websocket::send(websocket::current().id, &Message::Text("link closed".into()));
                return;
            }
            Message::Text(text) => text.into_bytes(),
            Message::Binary(data) => data,
        };
        if let Err(error) = links::send(link, &data) {
            let _ = websocket::send(websocket::current().id, &Message::Text(format!("send failed: {error}")));
        }
    }

    fn on_close(_code: u16, _reason: String) {}
}

impl exports::canto::http::link_handler::Guest for Bridge {
    fn on_data(link: u64, data: Vec<u8>) {
        let me = websocket::current().id;
        let belongs = links::connection(link) == Some(me);
        let text = String::from_utf8_lossy(&data).into_owned();
        let _ = websocket::send(me, &Message::Text(if belongs { text } else { format!("not mine: {text}") }));
    }

    fn on_closed(_link: u64, reason: String) {
        let reason: String = reason.chars().take(100).collect();
        let _ = websocket::close(websocket::current().id, 4000, &reason);
    }
}

impl exports::canto::http::parked_handler::Guest for Bridge {
    fn on_wake(
        _link: u64,
        data: Vec<u8>,
        ended: Option<String>,
        _memo: Vec<u8>,
    ) -> exports::canto::http::parked_handler::Answer {
        // `fail=1`: the module traps while answering (what it was given
        // goes back to the link).
        if canto::http::context::raw_path_with_query().contains("fail=1") {
            unreachable!("asked to fail");
        }
        let (status, woken, body) = match ended {
            Some(reason) => (502, "ended", reason.into_bytes()),
            None if data.is_empty() => (200, "timeout", data),
            None => (200, "data", data),
        };
        exports::canto::http::parked_handler::Answer {
            status,
            headers: vec![
                ("content-type".into(), b"text/plain".to_vec()),
                ("x-woken".into(), woken.as_bytes().to_vec()),
            ],
            body,
        }
    }
}

export!(Bridge);

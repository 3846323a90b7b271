//! `websocket` (Prosody's name; built in as `http_xmpp_websocket`): XMPP
//! over WebSocket (RFC 7395) at `/xmpp-websocket`, bridged to an XMPP
//! server's client port (`http_xmpp_server`, by default `localhost:5222`;
//! `http_xmpp_server_direct_tls` for Direct TLS) through a link the server
//! owns. Each event runs in a fresh instance; what must outlive one (the
//! link's id, whether the server's stream is open, an unfinished element)
//! is the connection's state.
//!
//! As Prosody's mod_websocket: the `xmpp` subprotocol is required (501
//! without it), binary messages are ignored, and a plain GET says what the
//! endpoint is.

mod framing;

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/websocket-link-module",
    generate_all,
});

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use canto::http::log::{Level, log};
use canto::http::websocket::{self, Message};
use canto::http::{context, links};
use framing::FromClient;
use metadata::exports::canto::http::metadata::ModuleInfo;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use xmpp_stream::Piece;

struct Bridge;

/// What a connection keeps between events.
#[derive(Default)]
struct Session {
    link: u64,
    /// The server's stream header has been seen (and not its end).
    in_stream: bool,
    /// Bytes of the server's stream not yet making a whole element.
    pending: Vec<u8>,
}

impl Session {
    fn load() -> Option<Self> {
        let state = websocket::state();
        let link = u64::from_le_bytes(state.get(..8)?.try_into().ok()?);
        Some(Self { link, in_stream: state.get(8) == Some(&1), pending: state.get(9..)?.to_vec() })
    }

    fn save(&self) -> Result<(), String> {
        let mut state = self.link.to_le_bytes().to_vec();
        state.push(u8::from(self.in_stream));
        state.extend_from_slice(&self.pending);
        websocket::set_state(&state)
    }
}

fn option(name: &str) -> Option<serde_json::Value> {
    context::config_option(name).and_then(|json| serde_json::from_str(&json).ok())
}

fn send_to_client(text: String) {
    let _ = websocket::send(websocket::current().id, &Message::Text(text));
}

fn close_client(code: u16, reason: &str) {
    let _ = websocket::close(websocket::current().id, code, reason);
}

impl exports::wasi::http::incoming_handler::Guest for Bridge {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/html; charset=utf-8".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let page = "<!DOCTYPE html><html><head><title>Websocket</title></head><body>\n<p>It works! Now point your WebSocket client to this URL to connect to Prosody.</p>\n</body></html>";
            let _ = stream.blocking_write_and_flush(page.as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

impl exports::canto::http::websocket_handler::Guest for Bridge {
    fn subprotocols() -> Vec<String> {
        vec!["xmpp".into()]
    }

    fn on_open() -> Result<(), u16> {
        let connection = websocket::current();
        if connection.subprotocol.as_deref() != Some("xmpp") {
            return Err(501);
        }
        // Prosody judges a WebSocket's security by its own TLS or
        // `consider_websocket_secure`; the XMPP server behind the bridge
        // cannot, so a plain one is refused here unless the operator says so.
        let considered_secure = option("consider_websocket_secure").and_then(|v| v.as_bool()).unwrap_or(false);
        if !connection.secure && !considered_secure {
            log(
                Level::Warn,
                "refused a WebSocket that is not secure (set consider_websocket_secure = true behind a TLS proxy you trust)",
            );
            return Err(403);
        }
        let target = option("http_xmpp_server").and_then(|v| v.as_str().map(String::from));
        let target = target.unwrap_or_else(|| "localhost:5222".into());
        let tls = option("http_xmpp_server_direct_tls").and_then(|v| v.as_bool()).unwrap_or(false);
        match links::open(&target, tls, &links::Owner::Websocket) {
            Ok(link) => Session { link, ..Session::default() }.save().map_err(|_| 500u16),
            Err(error) => {
                log(Level::Error, &format!("cannot reach the XMPP server at {target}: {error}"));
                Err(502)
            }
        }
    }

    fn on_message(message: Message) {
        let Some(mut session) = Session::load() else { return };
        let Message::Text(text) = message else {
            log(Level::Warn, "ignored a binary message (RFC 7395 uses text)");
            return;
        };
        let data = match framing::from_client(&text, &websocket::current().host) {
            FromClient::Open(header) => {
                // A new stream (or a restart after SASL): the server answers
                // with a new header, which starts a new document.
                session.in_stream = false;
                session.pending.clear();
                let _ = session.save();
                header
            }
            FromClient::Close => "</stream:stream>".into(),
            FromClient::Element => text,
        };
        if let Err(error) = links::send(session.link, data.as_bytes()) {
            log(Level::Warn, &format!("the XMPP server's connection is gone: {error}"));
            close_client(1011, "the XMPP server is unreachable");
        }
    }

    fn on_close(_code: u16, _reason: String) {
        // The link closes after this event. No `</stream:stream>` unless the
        // client sent `<close/>`: a socket that just went away is a lost
        // connection to the XMPP server too, so a stream-management session
        // can be resumed (as with Prosody's own mod_websocket).
    }
}

impl exports::canto::http::link_handler::Guest for Bridge {
    fn on_data(_link: u64, data: Vec<u8>) {
        let Some(mut session) = Session::load() else { return };
        session.pending.extend_from_slice(&data);
        // Only whole UTF-8 goes to the cutter; a split character waits.
        let valid = match std::str::from_utf8(&session.pending) {
            Ok(text) => text.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => {
                log(Level::Error, "the XMPP server sent invalid UTF-8; closing");
                close_client(1011, "invalid data from the XMPP server");
                return;
            }
        };
        let text = String::from_utf8_lossy(&session.pending[..valid]).into_owned();
        let (pieces, taken) = xmpp_stream::cut(&text);
        for piece in pieces {
            match piece {
                Piece::Open(attributes) => {
                    session.in_stream = true;
                    send_to_client(framing::open_for_client(&attributes));
                }
                Piece::Element(element) if xmpp_stream::demands_starttls(&element) => {
                    log(
                        Level::Error,
                        "the XMPP server demands STARTTLS on the bridged port: give canto a loopback client port without it (Prosody: c2s_require_encryption = false), or set http_xmpp_server_direct_tls",
                    );
                    close_client(1011, "the XMPP server is misconfigured for the bridge");
                    return;
                }
                Piece::Element(element) => send_to_client(xmpp_stream::element_for_client(&element)),
                // The WebSocket closes when the server then hangs up.
                Piece::Close => {
                    session.in_stream = false;
                    send_to_client(framing::close_for_client());
                }
            }
        }
        session.pending.drain(..taken);
        if session.save().is_err() {
            log(Level::Warn, "a stanza from the XMPP server is too large; closing");
            close_client(1009, "stanza too large");
        }
    }

    fn on_closed(_link: u64, reason: String) {
        log(Level::Info, &format!("the XMPP server's connection ended: {reason}"));
        if Session::load().is_some_and(|session| session.in_stream) {
            send_to_client(framing::close_for_client());
        }
        close_client(1000, "stream closed");
    }
}

impl metadata::exports::canto::http::metadata::Guest for Bridge {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/xmpp-websocket".into()),
            cors: None,
            options: vec![
                "http_xmpp_server".into(),
                "http_xmpp_server_direct_tls".into(),
                "consider_websocket_secure".into(),
            ],
            serve_bare_path: true,
            streaming_uploads: false,
        }
    }
}

export!(Bridge);
metadata::export!(Bridge with_types_in metadata);

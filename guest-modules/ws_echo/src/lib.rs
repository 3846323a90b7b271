//! `http_ws_echo`: sends every WebSocket message back to its sender, text
//! as text and binary as binary. It speaks the `echo` subprotocol (or none);
//! an upgrade request whose query is `?refuse` is refused with 403, the
//! text `trap!` makes it trap (which costs that one socket: 1011), and a
//! plain GET says how to connect.
//!
//! Each event runs in a fresh instance: nothing here outlives a call.

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/websocket-module",
    generate_all,
});

use canto::http::websocket::{self, Message};
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Echo;

impl exports::wasi::http::incoming_handler::Guest for Echo {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"connect with a WebSocket client: every message comes back\n");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

impl exports::canto::http::websocket_handler::Guest for Echo {
    fn subprotocols() -> Vec<String> {
        vec!["echo".into()]
    }

    fn on_open() -> Result<(), u16> {
        if websocket::current().path_with_query.ends_with("?refuse") { Err(403) } else { Ok(()) }
    }

    fn on_message(message: Message) {
        if matches!(&message, Message::Text(text) if text == "trap!") {
            unreachable!("asked to trap");
        }
        let _ = websocket::send(websocket::current().id, &message);
    }

    fn on_close(_code: u16, _reason: String) {}
}

export!(Echo);

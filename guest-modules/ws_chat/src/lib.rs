//! `http_ws_chat`: one chat room per host. Every text message goes to every
//! connection of the module on that host as `<nick> text`; `/nick NAME`
//! changes the sender's nick (kept in the connection's state, since each
//! event runs in a fresh instance), `/who` lists who is here, `/quit`
//! closes the sender's connection. Binary messages are refused with 1003.

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/websocket-module",
    generate_all,
});

use canto::http::websocket::{self, Message};
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Chat;

fn nick() -> String {
    let state = websocket::state();
    if state.is_empty() {
        format!("guest-{}", websocket::current().id)
    } else {
        String::from_utf8_lossy(&state).into_owned()
    }
}

fn to_everyone(text: &str) {
    for id in websocket::connections() {
        let _ = websocket::send(id, &Message::Text(text.to_string()));
    }
}

impl exports::wasi::http::incoming_handler::Guest for Chat {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(b"a chat room: connect with a WebSocket client\n");
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

impl exports::canto::http::websocket_handler::Guest for Chat {
    fn subprotocols() -> Vec<String> {
        Vec::new()
    }

    fn on_open() -> Result<(), u16> {
        to_everyone(&format!("* {} joined", nick()));
        Ok(())
    }

    fn on_message(message: Message) {
        let me = websocket::current().id;
        let Message::Text(text) = message else {
            let _ = websocket::close(me, 1003, "text only");
            return;
        };
        if let Some(name) = text.strip_prefix("/nick ") {
            let old = nick();
            match websocket::set_state(name.trim().as_bytes()) {
                Ok(()) => to_everyone(&format!("* {old} is now {}", name.trim())),
                Err(error) => {
                    let _ = websocket::send(me, &Message::Text(format!("* {error}")));
                }
            }
        } else if text == "/who" {
            let count = websocket::connections().len();
            let _ = websocket::send(me, &Message::Text(format!("* {count} here")));
        } else if text == "/quit" {
            let _ = websocket::close(me, 1000, "bye");
        } else {
            to_everyone(&format!("<{}> {text}", nick()));
        }
    }

    fn on_close(_code: u16, _reason: String) {
        to_everyone(&format!("* {} left", nick()));
    }
}

export!(Chat);

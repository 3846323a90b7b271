//! `http_ws_chat`: one chat room per host. Every text message goes to every
//! connection of the module on that host as `<nick> text`; `/nick NAME`
//! changes the sender's nick (kept in the connection's state, since each
//! event runs in a fresh instance), `/who` lists who is here, `/quit`
//! closes the sender's connection. Binary messages are refused with 1003.
//!
//! Granted the store `default` (`http_module_grants = { ws_chat = { stores
//! = { "default" } } }`), the room spans every node sharing that store:
//! the last lines said anywhere are kept there and shown to whoever joins,
//! on any node, and `/who` also counts the members on every node (each
//! node still delivers live messages to its own connections only). The
//! count is kept by increments: members of a node that crashed stay
//! counted.

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/websocket-module",
    generate_all,
});

use canto::http::websocket::{self, Message};
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::keyvalue::{atomics, store};

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

/// Lines of history the shared room keeps.
const HISTORY: usize = 20;

/// The shared room's store, when the module was granted one.
fn room() -> Option<store::Bucket> {
    store::open("default").ok()
}

/// Adds `line` to the shared history, keeping the last [`HISTORY`];
/// compare-and-swap, so lines said at once on two nodes are both kept.
fn remember(line: &str) {
    let Some(room) = room() else { return };
    let Ok(mut cas) = atomics::Cas::new(&room, "history") else { return };
    for _ in 0..16 {
        let Ok(current) = cas.current() else { return };
        let text = String::from_utf8_lossy(&current.unwrap_or_default()).into_owned();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.push(line);
        let keep = lines.len().saturating_sub(HISTORY);
        match atomics::swap(cas, lines[keep..].join("\n").as_bytes()) {
            Err(atomics::CasError::CasFailed(again)) => cas = again,
            _ => return,
        }
    }
}

/// Counts this member in (`1`) or out (`-1`) of the shared room; how many
/// are in it now, on every node.
fn count_members(delta: i64) -> Option<i64> {
    atomics::increment(&room()?, "members", delta).ok()
}

fn say(text: String) {
    // One line per message in the history, whatever a client sent.
    let text = text.replace(['\n', '\r'], " ");
    remember(&text);
    to_everyone(&text);
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
        if let Some(room) = room() {
            count_members(1);
            if let Ok(Some(history)) = room.get("history") {
                let me = websocket::current().id;
                for line in String::from_utf8_lossy(&history).lines() {
                    let _ = websocket::send(me, &Message::Text(format!("* earlier: {line}")));
                }
            }
        }
        say(format!("* {} joined", nick()));
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
                Ok(()) => say(format!("* {old} is now {}", name.trim())),
                Err(error) => {
                    let _ = websocket::send(me, &Message::Text(format!("* {error}")));
                }
            }
        } else if text == "/who" {
            let count = websocket::connections().len();
            let answer = match count_members(0) {
                Some(everywhere) => format!("* {count} here, {everywhere} in the room"),
                None => format!("* {count} here"),
            };
            let _ = websocket::send(me, &Message::Text(answer));
        } else if text == "/quit" {
            let _ = websocket::close(me, 1000, "bye");
        } else {
            say(format!("<{}> {text}", nick()));
        }
    }

    fn on_close(_code: u16, _reason: String) {
        count_members(-1);
        say(format!("* {} left", nick()));
    }
}

export!(Chat);

//! `bosh` (Prosody's name; built in as `http_xmpp_bosh`): XMPP over BOSH
//! (XEP-0124, XEP-0206) at `/http-bind`, bridged to an XMPP server's client
//! port (`http_xmpp_server`, by default `localhost:5222`;
//! `http_xmpp_server_direct_tls` for Direct TLS).
//!
//! A session is a link to the XMPP server keyed by its `sid`; what the
//! session must remember between requests (the last `rid`, answers a
//! client may ask for again, an unfinished element of the server's stream)
//! is the link's state. Every request locks the link first, so requests of
//! one session are handled one at a time, in order. A request with nothing
//! to answer yet is parked on the link: no instance waits for the server,
//! and `on-wake` answers it with what arrived. As Prosody's mod_bosh:
//! `hold='1'`, `requests='2'` (a newer request answers the held one),
//! `wait` at most `bosh_max_wait`, the session ends after
//! `bosh_max_inactivity` seconds with no request, errors are `terminate`
//! bodies with their condition.

mod wire;

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/parking-module",
    generate_all,
});

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use canto::http::log::{Level, log};
use canto::http::{context, links};
use exports::canto::http::parked_handler::Answer;
use metadata::exports::canto::http::metadata::ModuleInfo;
use serde::{Deserialize, Serialize};
use wasi::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};
use xmpp_stream::Piece;

/// Prosody's defaults (mod_bosh.lua).
const DEFAULT_MAX_WAIT: u64 = 120;
const DEFAULT_MAX_INACTIVITY: u64 = 60;
const DEFAULT_MAX_POLLING: u64 = 5;
/// How long a new session waits for the XMPP server's features.
const CREATION_POLLS: u32 = 20;
const CREATION_POLL_MS: u32 = 500;
/// Larger answers are not kept for a client that asks again (they would
/// crowd the link's state).
const REMEMBERED_ANSWER_BYTES: usize = 64 * 1024;
/// The largest request body read, as Prosody's (`c2s_stanza_size_limit`).
const DEFAULT_MAX_REQUEST_BYTES: u64 = 256 * 1024;
/// How long a request that came ahead of its turn may wait for the one
/// before it (the longest a request may be held).
const DEFERRED_WAIT: u64 = 120;
/// The link's reason when this module closed it.
const CLOSED_HERE: &str = "closed by its module";

struct Bosh;

/// What a session keeps between requests (the link's state).
#[derive(Serialize, Deserialize, Default)]
struct Session {
    sid: String,
    /// The stream's `to`.
    host: String,
    /// The last `rid` handled.
    rid: u64,
    /// Seconds a request may be held.
    wait: u64,
    /// The server's stream not yet cut into whole pieces.
    pending: String,
    /// Bytes of a character split between two reads.
    split: Vec<u8>,
    /// The last answers by `rid`, for a client that asks again (`None`:
    /// one too large to keep).
    answers: Vec<(u64, Option<String>)>,
    /// A request that came one ahead of its turn, handled after the one before it.
    deferred: Option<Deferred>,
}

#[derive(Serialize, Deserialize)]
struct Deferred {
    rid: u64,
    payload: Vec<String>,
    restart: bool,
    terminate: bool,
}

/// How the server's stream ended.
enum End {
    Closed,
    /// A `<stream:error/>`, ready for the client.
    Error(String),
    /// The server demands STARTTLS on the bridged port.
    DemandsStarttls,
    Invalid,
}

/// What the server's stream brought: elements for the client, and its end.
#[derive(Default)]
struct Fed {
    payload: String,
    end: Option<End>,
}

impl Session {
    fn load(link: u64) -> Option<Self> {
        serde_json::from_slice(&links::state(link).ok()?).ok()
    }

    fn save(&self, link: u64) -> Result<(), String> {
        links::set_state(link, &serde_json::to_vec(self).map_err(|e| e.to_string())?)
    }

    /// Keeps `answer` for `rid`; `carries` says whether it carries anything
    /// (an empty answer, to a request another took over, never replaces one
    /// that does).
    fn remember(&mut self, rid: u64, answer: &str, carries: bool) {
        let kept = (answer.len() <= REMEMBERED_ANSWER_BYTES).then(|| answer.to_string());
        match self.answers.iter_mut().find(|(old, _)| *old == rid) {
            Some(existing) if carries => existing.1 = kept,
            Some(_) => {}
            None => self.answers.push((rid, kept)),
        }
        // Prosody keeps hold + 1 answers: the latest rids.
        self.answers.sort_by_key(|(rid, _)| *rid);
        while self.answers.len() > 2 {
            self.answers.remove(0);
        }
    }

    fn remembered(&self, rid: u64) -> Option<Option<&str>> {
        self.answers.iter().find(|(old, _)| *old == rid).map(|(_, answer)| answer.as_deref())
    }

    /// Cuts what the server sent into elements for the client.
    fn feed(&mut self, data: &[u8]) -> Fed {
        let mut bytes = std::mem::take(&mut self.split);
        bytes.extend_from_slice(data);
        let valid = match std::str::from_utf8(&bytes) {
            Ok(text) => text.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => return Fed { end: Some(End::Invalid), ..Fed::default() },
        };
        self.split = bytes[valid..].to_vec();
        self.pending.push_str(&String::from_utf8_lossy(&bytes[..valid]));
        let (pieces, taken) = xmpp_stream::cut(&self.pending);
        let mut fed = Fed::default();
        for piece in pieces {
            match piece {
                // A new stream's header (after a restart) tells the client nothing.
                Piece::Open(_) => {}
                Piece::Element(element) if xmpp_stream::demands_starttls(&element) => {
                    fed.end.get_or_insert(End::DemandsStarttls);
                }
                Piece::Element(element) if element.starts_with("<stream:error") => {
                    fed.end.get_or_insert(End::Error(xmpp_stream::element_for_client(&element)));
                }
                Piece::Element(element) => fed.payload += &xmpp_stream::element_for_client(&element),
                Piece::Close => {
                    fed.end.get_or_insert(End::Closed);
                }
            }
        }
        self.pending.drain(..taken);
        fed
    }
}

fn option(name: &str) -> Option<serde_json::Value> {
    context::config_option(name).and_then(|json| serde_json::from_str(&json).ok())
}

fn seconds(name: &str, default: u64) -> u64 {
    option(name).and_then(|v| v.as_f64()).filter(|v| *v >= 0.0).map_or(default, |v| v as u64)
}

fn considered_secure() -> bool {
    context::secure() || option("consider_bosh_secure").and_then(|v| v.as_bool()).unwrap_or(false)
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &str) {
    let headers = Fields::from_list(&[("content-type".to_string(), content_type.as_bytes().to_vec())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        for chunk in body.as_bytes().chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

const XML: &str = "text/xml; charset=utf-8";

fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    let incoming = request.consume().ok()?;
    let stream = incoming.stream().ok()?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return None,
        }
        if body.len() as u64 > seconds("c2s_stanza_size_limit", DEFAULT_MAX_REQUEST_BYTES) {
            return None;
        }
    }
    Some(body)
}

/// What a request comes to.
enum Reply {
    Now(String),
    /// Parked on the session's link: `on-wake` answers.
    Parked,
}

fn terminate(condition: &str) -> Reply {
    Reply::Now(wire::terminate(Some(condition), ""))
}

/// A new session (no `sid`): the stream to the XMPP server opens, and the
/// answer carries the session's parameters and the server's features.
fn create(request: &wire::Request) -> Reply {
    let Some(to) = request.get("to").filter(|to| !to.trim().is_empty()) else {
        return terminate("improper-addressing");
    };
    let (Some(rid), Some(wait)) = (request.number("rid"), request.number("wait")) else {
        return terminate("bad-request");
    };
    if !considered_secure() {
        // As with the WebSocket: Prosody would offer such a session no
        // login, and the XMPP server behind the bridge cannot tell.
        log(
            Level::Warn,
            "refused a BOSH session that is not secure (set consider_bosh_secure = true behind a TLS proxy you trust)",
        );
        return terminate("policy-violation");
    }
    let wait = wait.min(seconds("bosh_max_wait", DEFAULT_MAX_WAIT));
    let sid = new_sid();
    let target = option("http_xmpp_server").and_then(|v| v.as_str().map(String::from));
    let target = target.unwrap_or_else(|| "localhost:5222".into());
    let tls = option("http_xmpp_server_direct_tls").and_then(|v| v.as_bool()).unwrap_or(false);
    let link = match links::open(&target, tls, &links::Owner::Key(sid.clone())) {
        Ok(link) => link,
        Err(error) => {
            log(Level::Error, &format!("cannot reach the XMPP server at {target}: {error}"));
            return terminate("remote-connection-failed");
        }
    };
    let inactivity = seconds("bosh_max_inactivity", DEFAULT_MAX_INACTIVITY);
    let mut session = Session { sid, host: to.to_string(), rid, wait, ..Session::default() };
    let opened = links::lock(link)
        .and_then(|()| links::set_idle_timeout(link, u32::try_from(inactivity.max(1)).unwrap_or(u32::MAX)))
        .and_then(|()| links::send(link, stream_header(&session.host, request).as_bytes()));
    if let Err(error) = opened {
        log(Level::Error, &format!("cannot open a stream to the XMPP server: {error}"));
        links::close(link);
        return terminate("remote-connection-failed");
    }
    // Prosody answers a new session with the stream's features.
    let mut payload = String::new();
    for _ in 0..CREATION_POLLS {
        let Ok(data) = links::receive(link, CREATION_POLL_MS) else {
            return terminate("remote-connection-failed");
        };
        let fed = session.feed(&data);
        payload += &fed.payload;
        if let Some(end) = fed.end {
            links::close(link);
            return Reply::Now(ended(end, &payload));
        }
        if payload.contains("<stream:features") {
            break;
        }
    }
    let polling = seconds("bosh_max_polling", DEFAULT_MAX_POLLING);
    let created = wire::Created { sid: &session.sid, host: &session.host, wait, inactivity, polling };
    let answer = wire::created(&created, &payload);
    session.remember(rid, &answer, true);
    if let Err(error) = session.save(link) {
        log(Level::Error, &format!("cannot keep the session's state: {error}"));
        links::close(link);
        return terminate("internal-server-error");
    }
    Reply::Now(answer)
}

fn stream_header(host: &str, request: &wire::Request) -> String {
    let lang = request.get("xml:lang").map(|lang| [("xml:lang", lang)]);
    xmpp_stream::stream_header(host, "1.0", lang.as_ref().map_or(&[], |l| l.as_slice()))
}

fn new_sid() -> String {
    let bytes = wasi::random::random::get_random_bytes(16);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request of an open session.
fn carry_on(sid: &str, request: &wire::Request) -> Reply {
    let Some(link) = links::find(sid) else {
        log(Level::Info, &format!("a client used sid '{sid}', which is unknown or ended"));
        return terminate("item-not-found");
    };
    if let Err(error) = links::lock(link) {
        log(Level::Warn, &format!("session {sid}: {error}"));
        return terminate("internal-server-error");
    }
    let Some(mut session) = Session::load(link) else { return terminate("item-not-found") };
    let Some(rid) = request.number("rid") else { return terminate("bad-request") };
    let held = |session: &Session| park(link, session.wait, rid);
    let diff = i128::from(rid) - i128::from(session.rid);
    match session.remembered(rid) {
        Some(Some(answer)) if diff != 1 => return Reply::Now(answer.to_string()),
        // Asked again for an answer too large to keep (XEP-0124 §14.3).
        Some(None) if diff != 1 => {
            links::close(link);
            return terminate("item-not-found");
        }
        _ => {}
    }
    match diff {
        1 => {}
        // The held request asked again: hold this one, ignoring what it carries.
        0 => return held(&session),
        // One request went missing on the way: this one waits for it.
        2 => {
            session.deferred = Some(Deferred {
                rid,
                payload: request.payload.clone(),
                restart: request.restarts(),
                terminate: request.terminates(),
            });
            // Held until the one before it comes (which answers it), not
            // just for `wait`: answered earlier, it would let the client's
            // next request fall out of the window.
            return match session.save(link) {
                Ok(()) => park(link, DEFERRED_WAIT, rid),
                Err(_) => terminate("internal-server-error"),
            };
        }
        _ => {
            links::close(link);
            return terminate("item-not-found");
        }
    }
    session.rid = rid;
    let mut terminated = forward(link, &mut session, &request.payload, request.restarts(), request.terminates());
    if let Some(deferred) = session.deferred.take_if(|deferred| deferred.rid == rid + 1)
        && terminated == Ok(false)
    {
        session.rid = deferred.rid;
        terminated = forward(link, &mut session, &deferred.payload, deferred.restart, deferred.terminate);
    }
    match terminated {
        Ok(true) => {
            links::close(link);
            Reply::Now(wire::terminate(None, ""))
        }
        Ok(false) => match session.save(link) {
            Ok(()) => held(&session),
            Err(error) => {
                log(Level::Error, &format!("session {sid}: cannot keep its state: {error}"));
                links::close(link);
                terminate("internal-server-error")
            }
        },
        Err(error) => {
            log(Level::Info, &format!("session {sid}: the XMPP server's connection is gone: {error}"));
            links::close(link);
            terminate("remote-connection-failed")
        }
    }
}

/// Sends a request's elements (and a restart or the stream's end) to the
/// XMPP server; says whether the session ends.
fn forward(link: u64, session: &mut Session, payload: &[String], restart: bool, end: bool) -> Result<bool, String> {
    for element in payload {
        links::send(link, element.as_bytes())?;
    }
    if restart {
        // The server answers with a new stream: nothing of the old one waits.
        session.pending.clear();
        session.split.clear();
        links::send(link, xmpp_stream::stream_header(&session.host, "1.0", &[]).as_bytes())?;
    }
    if end {
        links::send(link, b"</stream:stream>")?;
    }
    Ok(end)
}

fn park(link: u64, wait: u64, rid: u64) -> Reply {
    let wait_ms = u32::try_from(wait.saturating_mul(1000)).unwrap_or(u32::MAX);
    match links::park(link, wait_ms, &rid.to_le_bytes()) {
        Ok(()) => Reply::Parked,
        Err(error) => {
            log(Level::Error, &format!("cannot hold a request: {error}"));
            terminate("internal-server-error")
        }
    }
}

/// The answer that ends a session whose server stream ended.
fn ended(end: End, payload: &str) -> String {
    match end {
        End::Closed => wire::terminate(None, payload),
        End::Error(error) => wire::terminate(Some("remote-stream-error"), &format!("{payload}{error}")),
        End::DemandsStarttls => {
            log(
                Level::Error,
                "the XMPP server demands STARTTLS on the bridged port: give canto a loopback client port without it (Prosody: c2s_require_encryption = false), or set http_xmpp_server_direct_tls",
            );
            wire::terminate(Some("remote-connection-failed"), "")
        }
        End::Invalid => {
            log(Level::Error, "the XMPP server sent invalid UTF-8; ending the session");
            wire::terminate(Some("remote-connection-failed"), "")
        }
    }
}

fn page() -> String {
    let warning =
        if considered_secure() { "" } else { "\n<p><strong>This endpoint is not considered secure!</strong></p>" };
    format!(
        "<!DOCTYPE html><html><head><title>Prosody BOSH endpoint</title></head><body>\n<p>It works! Now point your BOSH client to this URL to connect to Prosody.</p>{warning}\n</body></html>"
    )
}

impl exports::wasi::http::incoming_handler::Guest for Bosh {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match request.method() {
            Method::Post => {}
            Method::Get | Method::Head => return respond(out, 200, "text/html; charset=utf-8", &page()),
            _ => return respond(out, 405, "text/plain; charset=utf-8", "Method Not Allowed\n"),
        }
        let Some(body) = read_body(request) else {
            return respond(out, 200, XML, &wire::terminate(Some("bad-request"), ""));
        };
        let reply = match std::str::from_utf8(&body).ok().and_then(wire::read) {
            None => {
                log(Level::Warn, "error parsing a BOSH payload");
                terminate("bad-request")
            }
            Some(request) => match request.get("sid") {
                None => create(&request),
                Some(sid) => carry_on(sid, &request),
            },
        };
        match reply {
            Reply::Now(body) => respond(out, 200, XML, &body),
            // No response: the server holds the request until `on_wake`.
            Reply::Parked => drop(out),
        }
    }
}

impl exports::canto::http::parked_handler::Guest for Bosh {
    fn on_wake(link: u64, data: Vec<u8>, ended_why: Option<String>, memo: Vec<u8>) -> Answer {
        let rid = memo.try_into().map(u64::from_le_bytes).unwrap_or_default();
        let body = match ended_why {
            Some(reason) if reason.contains(CLOSED_HERE) => wire::terminate(None, ""),
            Some(reason) => {
                log(Level::Info, &format!("the XMPP server's connection ended: {reason}"));
                wire::terminate(Some("remote-connection-failed"), "")
            }
            None => answer_woken(link, rid, &data),
        };
        Answer { status: 200, headers: vec![("content-type".into(), XML.as_bytes().to_vec())], body: body.into_bytes() }
    }
}

/// A held request's answer: what the server sent meanwhile.
fn answer_woken(link: u64, rid: u64, data: &[u8]) -> String {
    let Some(mut session) = Session::load(link) else { return wire::terminate(Some("item-not-found"), "") };
    let fed = session.feed(data);
    let answer = match fed.end {
        None => wire::answer(&session.sid, &fed.payload),
        Some(end) => {
            links::close(link);
            return ended(end, &fed.payload);
        }
    };
    session.remember(rid, &answer, !fed.payload.is_empty());
    if let Err(error) = session.save(link) {
        log(Level::Error, &format!("session {}: cannot keep its state: {error}", session.sid));
        links::close(link);
        return wire::terminate(Some("internal-server-error"), "");
    }
    answer
}

impl metadata::exports::canto::http::metadata::Guest for Bosh {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/http-bind".into()),
            cors: Some(metadata::exports::canto::http::metadata::CorsDefaults {
                methods: vec!["GET".into(), "OPTIONS".into(), "POST".into()],
                headers: Vec::new(),
                credentials: false,
            }),
            options: [
                "http_xmpp_server",
                "http_xmpp_server_direct_tls",
                "consider_bosh_secure",
                "bosh_max_wait",
                "bosh_max_inactivity",
                "bosh_max_polling",
                "c2s_stanza_size_limit",
            ]
            .map(String::from)
            .to_vec(),
            serve_bare_path: true,
            streaming_uploads: false,
        }
    }
}

export!(Bosh);
metadata::export!(Bosh with_types_in metadata);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_for_the_latest_two_rids_and_an_empty_one_replaces_nothing() {
        let mut session = Session::default();
        session.remember(5, "five", true);
        session.remember(7, "seven", true);
        session.remember(6, "six", true);
        assert_eq!(session.remembered(5), None, "the smallest rid goes first");
        assert_eq!(session.remembered(6), Some(Some("six")));
        session.remember(6, "", false);
        assert_eq!(session.remembered(6), Some(Some("six")), "a taken-over request's empty answer");
        session.remember(8, &"x".repeat(REMEMBERED_ANSWER_BYTES + 1), true);
        assert_eq!(session.remembered(8), Some(None), "too large to keep, but known");
    }

    #[test]
    fn the_servers_stream_is_fed_across_reads_and_its_end_is_seen() {
        let mut session = Session::default();
        let fed = session.feed("<stream:stream id='1'><message><body>ü".as_bytes());
        assert!(fed.payload.is_empty() && fed.end.is_none());
        let split = "ü</body></message><stream:error><conflict/></stream:error>".as_bytes();
        let fed = session.feed(&split[..1]);
        assert!(fed.payload.is_empty());
        let fed = session.feed(&split[1..]);
        assert_eq!(fed.payload, "<message xmlns='jabber:client'><body>üü</body></message>");
        assert!(matches!(fed.end, Some(End::Error(error)) if error.contains("<conflict/>")));
    }
}

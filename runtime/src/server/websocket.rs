//! WebSockets (RFC 6455, and over HTTP/2 RFC 8441) for modules that
//! export `websocket-handler`: the
//! upgrade (handshake validation, the Origin checked against the module's
//! CORS origins, a subprotocol from the module's list, the module asked on
//! open), then the socket, owned by the server: each message, and the
//! close, is an event the module handles in a fresh instance; pings keep it
//! alive; limits close it with the code RFC 6455 names.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tracing::Instrument as _;

use super::fragments::FragmentLimit;
use super::mounts::ServerState;
use super::refusal::Refusal;
use crate::error_page::full_body;
use crate::metrics::Metrics;
use crate::routing::{Mount, Route};
use crate::wasm::links::LinkEventKind;
use crate::wasm::socket_registry::{LinkEvent, Outgoing, Peer, Room, SEND_QUEUE, WsEvent, WsRegistry};
use crate::wasm::websocket::{ConnectionInfo, EventKind, Message, WebsocketSupport};
use crate::wasm::{ModuleBody, SandboxLimits};

/// How long a closing handshake may take.
const CLOSE_TIME: Duration = Duration::from_secs(2);
/// tungstenite's read buffer per socket; it grows for larger frames. (Its
/// default, 128 KiB, would be most of what an idle socket costs.)
const READ_BUFFER: usize = 8 * 1024;
/// Link events waiting for the socket's task; a link stops reading from
/// its peer while this many wait.
const LINK_EVENTS: usize = 4;

/// Whether the request asks to become a WebSocket: an HTTP/1.1 upgrade, or
/// an HTTP/2 extended CONNECT (RFC 8441).
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    is_extended_connect(request) || is_http1_upgrade(request)
}

/// An HTTP/2 CONNECT with `:protocol` `websocket` (RFC 8441 §4).
pub fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

fn is_http1_upgrade<B>(request: &Request<B>) -> bool {
    let has =
        |name, token: &str| {
            request.headers().get_all(name).iter().any(|value| {
                value.to_str().is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
            })
        };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// What the upgrade needs to know besides the request.
pub struct Upgrade<'a> {
    pub state: &'a ServerState,
    /// The server's state as reloads replace it: each event finds the
    /// module version serving now.
    pub live: &'a Arc<ArcSwap<ServerState>>,
    pub mount: &'a Mount,
    /// The host's name in the host table and the path routed to the module.
    pub site: Arc<str>,
    pub routed_path: String,
    pub client_ip: std::net::IpAddr,
    pub secure: bool,
    pub raw_path_with_query: Arc<str>,
    /// The HTTP connection's: it stops being HTTP once upgraded.
    pub activity: &'a Arc<super::connections::Activity>,
}

/// Answers an upgrade request: 101 and the socket served from then on, or
/// the status that refuses it.
pub async fn upgrade(
    upgrade: Upgrade<'_>,
    support: &Arc<WebsocketSupport>,
    mut request: Request<Incoming>,
) -> Result<Response<ModuleBody>, Refusal> {
    let Upgrade { state, live, mount, site, routed_path, client_ip, secure, raw_path_with_query, activity } = upgrade;
    let Handshake { key, subprotocol } = check_handshake(&request, mount, support)?;
    let headers = request.headers();
    let registry = Arc::clone(&state.websockets);
    let id = registry.allocate_id();
    let info = ConnectionInfo {
        id,
        host: mount.host.to_string(),
        client_ip: client_ip.to_string(),
        secure,
        subprotocol: subprotocol.clone(),
        path_with_query: raw_path_with_query.to_string(),
        headers: headers.iter().map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())).collect(),
    };
    // Joined before the module hears of it, so what it sends on open
    // (a greeting, a broadcast) is queued for the socket.
    let (outbox, outgoing) = mpsc::channel(SEND_QUEUE);
    let (link_events, links) = mpsc::channel(LINK_EVENTS);
    let peer = Peer::new(outbox, link_events);
    let membership = Membership { registry: Arc::clone(&registry), room: mount.identity.room(), id };
    if !registry.join(&membership.room, id, peer.clone(), state.connections.websocket_max_connections) {
        tracing::warn!(
            module = %mount.module.name,
            "WebSocket refused: http_websocket_max_connections ({}) are open, or the server is stopping",
            state.connections.websocket_max_connections
        );
        return Err(Refusal::Busy);
    }
    let refused = run_event(state, mount, support, &info, &peer, Event::Socket(EventKind::Open)).await?;
    if let Some(status) = refused {
        // Only a client or server error refuses; anything else reads as 403.
        let status = StatusCode::from_u16(status).ok().filter(|s| s.is_client_error() || s.is_server_error());
        return Err(Refusal::OpenRefused(status.unwrap_or(StatusCode::FORBIDDEN)));
    }

    let on_upgrade = hyper::upgrade::on(&mut request);
    // From here an HTTP/1.1 connection is a WebSocket, open (with its place
    // under the cap) until the socket ends. Over HTTP/2 the socket is one
    // stream, and keeps its connection from counting as idle.
    let busy = match key {
        Some(_) => {
            activity.upgrade();
            None
        }
        None => Some(activity.socket_opened()),
    };
    let too_many_fragments = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let socket = Socket {
        too_many_fragments: Arc::clone(&too_many_fragments),
        live: Arc::clone(live),
        site,
        routed_path,
        module: mount.module.name.clone(),
        membership,
        info,
        peer,
        inboxes: tokio::sync::Mutex::new(Inboxes { outgoing, links }),
    };
    tokio::spawn(serve_upgraded(on_upgrade, socket, &state.connections, too_many_fragments, busy).in_current_span());
    Ok(switching_protocols(key.as_ref(), subprotocol))
}

/// Serves the socket once hyper hands over the upgraded connection.
fn serve_upgraded(
    on_upgrade: hyper::upgrade::OnUpgrade,
    socket: Socket,
    limits: &crate::config::ConnectionLimits,
    too_many_fragments: Arc<std::sync::atomic::AtomicBool>,
    busy: Option<super::connections::InFlight>,
) -> impl Future<Output = ()> + use<> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.websocket_max_message))
        .max_frame_size(Some(limits.websocket_max_message))
        .read_buffer_size(READ_BUFFER);
    let (idle, max_fragments) = (limits.idle_timeout, limits.websocket_max_fragments);
    async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let counted = FragmentLimit::new(TokioIo::new(upgraded), max_fragments, too_many_fragments);
                let stream = WebSocketStream::from_raw_socket(counted, Role::Server, Some(config));
                socket.serve(stream.await, idle).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
        drop(busy);
    }
}

/// What a valid upgrade request asks for.
struct Handshake {
    /// HTTP/1.1's `Sec-WebSocket-Key`; HTTP/2 has none.
    key: Option<HeaderValue>,
    /// The first of the module's subprotocols the client offers.
    subprotocol: Option<String>,
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and its Origin against the
/// module's CORS origins.
fn check_handshake(
    request: &Request<Incoming>,
    mount: &Mount,
    support: &WebsocketSupport,
) -> Result<Handshake, Refusal> {
    let headers = request.headers();
    let http2 = request.version() == http::Version::HTTP_2 && is_extended_connect(request);
    if !http2 && (request.method() != http::Method::GET || request.version() != http::Version::HTTP_11) {
        return Err(Refusal::BadUpgrade("a WebSocket upgrade is an HTTP/1.1 GET or an HTTP/2 extended CONNECT"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err(Refusal::WebSocketVersion);
    }
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        _ if http2 => None,
        Some(key) if key.len() == 24 => Some(key.clone()),
        _ => return Err(Refusal::BadUpgrade("Sec-WebSocket-Key is missing or malformed")),
    };
    if let (Some(cors), Some(origin)) = (&mount.cors, headers.get(header::ORIGIN))
        && !cors.allows_origin(origin)
    {
        return Err(Refusal::OriginRefused);
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    let subprotocol = support.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned();
    Ok(Handshake { key, subprotocol })
}

/// The answer to a handshake: 101 over HTTP/1.1, 200 over HTTP/2.
fn switching_protocols(key: Option<&HeaderValue>, subprotocol: Option<String>) -> Response<ModuleBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    if key.is_some() {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    }
    let headers = response.headers_mut();
    if let Some(key) = key {
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
    }
    if let Some(protocol) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// An event of a connection: its own, or one of a link it owns.
enum Event {
    Socket(EventKind),
    Link(LinkEventKind),
}

/// Runs one event of a connection in a fresh instance of `support`'s
/// module, once a slot is free; `Ok(Some(status))` is a refused open.
async fn run_event(
    state: &ServerState,
    mount: &Mount,
    support: &WebsocketSupport,
    info: &ConnectionInfo,
    peer: &Peer,
    event: Event,
) -> Result<Option<u16>, Refusal> {
    let _permits = state.module_slots(mount).await?;
    let link_handler = mount.module.links.as_ref();
    let facts = WsEvent {
        info: info.clone(),
        state: Arc::clone(&peer.state),
        link_events: link_handler.map(|_| peer.link_events.clone()),
    };
    let budgets = (state.limits.timeout, state.limits.wall_timeout);
    let sandbox = SandboxLimits::from(&state.limits);
    let identity = Arc::clone(&mount.identity);
    let result = match (event, link_handler) {
        (Event::Socket(kind), _) => support.run(identity, &sandbox, budgets, facts, kind).await,
        (Event::Link(kind), Some(links)) => links.run(identity, &sandbox, budgets, facts, kind).await.map(|()| None),
        // A version without a link handler took over: nobody to tell.
        (Event::Link(_), None) => return Ok(None),
    };
    let outcome =
        result.as_ref().map_or_else(crate::wasm::WasmError::outcome, |_| crate::metrics::ModuleOutcome::Answered);
    state.metrics.module_run(&mount.module.name, outcome);
    result.map_err(Refusal::Module)
}

/// An open socket and what its events need.
struct Socket {
    live: Arc<ArcSwap<ServerState>>,
    site: Arc<str>,
    routed_path: String,
    module: Arc<str>,
    membership: Membership,
    info: ConnectionInfo,
    peer: Peer,
    inboxes: tokio::sync::Mutex<Inboxes>,
    /// Set when a message came in more frames than
    /// `websocket_frame_fragment_limit`.
    too_many_fragments: Arc<std::sync::atomic::AtomicBool>,
}

/// What a socket's task receives besides the client's frames.
struct Inboxes {
    /// What modules send to the client.
    outgoing: mpsc::Receiver<Outgoing>,
    /// Events of the links the connection owns.
    links: mpsc::Receiver<LinkEvent>,
}

/// How a socket ended, for the module's `on-close`.
struct Ended {
    code: u16,
    reason: String,
}

impl Ended {
    /// Gone without a close handshake (RFC 6455's 1006).
    fn lost() -> Self {
        Self { code: 1006, reason: String::new() }
    }
}

/// A connection's place in the registry, given up when dropped: a request
/// cancelled mid-upgrade (the client left during on-open) leaves nothing.
struct Membership {
    registry: Arc<WsRegistry>,
    room: Room,
    id: u64,
}

impl Membership {
    fn leave(&self) {
        self.registry.leave(&self.room, self.id);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Socket {
    async fn serve<S>(self, mut stream: WebSocketStream<S>, idle: Duration)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let metrics = Arc::clone(&self.live.load().metrics);
        metrics.websocket_opened(&self.module, true);
        let ended = self.exchange(&mut stream, idle, &metrics).await;
        // Gone from the room, and the socket closed, before the module
        // hears of it: nothing can be sent to it any more.
        drop(stream);
        self.membership.leave();
        metrics.websocket_opened(&self.module, false);
        let _ = self.event(Event::Socket(EventKind::Close(ended.code, ended.reason))).await;
        self.live.load().links.close_socket(&self.membership.room, self.info.id);
    }

    /// Carries messages both ways until the socket ends.
    async fn exchange<S>(&self, stream: &mut WebSocketStream<S>, idle: Duration, metrics: &Metrics) -> Ended
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut inboxes = self.inboxes.lock().await;
        let Inboxes { outgoing: inbox, links } = &mut *inboxes;
        let mut last_heard = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval((idle / 2).max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                biased;
                frame = stream.next() => {
                    last_heard = tokio::time::Instant::now();
                    let message = match frame {
                        Some(Ok(Frame::Text(text))) => Message::Text(text.as_str().to_owned()),
                        Some(Ok(Frame::Binary(data))) => Message::Binary(data.to_vec()),
                        Some(Ok(Frame::Close(frame))) => {
                            // tungstenite queued the reply; flushing sends it.
                            let _ = tokio::time::timeout(CLOSE_TIME, stream.flush()).await;
                            let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
                            return Ended { code, reason };
                        }
                        Some(Ok(_)) => continue, // ping (answered by the stream), pong
                        Some(Err(error)) => return self.failed(stream, error).await,
                        None => return Ended::lost(),
                    };
                    metrics.websocket_message(true);
                    let event = self.event(Event::Socket(EventKind::Message(message))).await;
                    // The client was not read during the event: count from now.
                    last_heard = tokio::time::Instant::now();
                    if let Err(ended) = event {
                        return close(stream, ended.code, &ended.reason).await;
                    }
                }
                outgoing = inbox.recv() => match outgoing {
                    Some(Outgoing::Message(message)) => {
                        self.peer.dequeued(&message);
                        metrics.websocket_message(false);
                        let frame = match message {
                            Message::Text(text) => Frame::text(text),
                            Message::Binary(data) => Frame::binary(data),
                        };
                        if !matches!(tokio::time::timeout(idle, stream.send(frame)).await, Ok(Ok(()))) {
                            return Ended::lost(); // not read for a whole idle timeout
                        }
                    }
                    Some(Outgoing::Close(code, reason)) => return close(stream, code, &reason).await,
                    None => return Ended::lost(),
                },
                Some(event) = links.recv() => {
                    let kind = match event {
                        LinkEvent::Data(link, data) => LinkEventKind::Data(link, data),
                        LinkEvent::Closed(link, reason) => LinkEventKind::Closed(link, reason),
                    };
                    if let Err(ended) = self.event(Event::Link(kind)).await {
                        return close(stream, ended.code, &ended.reason).await;
                    }
                }
                _ = self.peer.wake.notified() => {
                    if self.peer.overflowed.load(Ordering::Relaxed) {
                        tracing::warn!(module = %self.module, "WebSocket {} does not read what it is sent; closed with 1008", self.info.id);
                        return close(stream, 1008, "not reading").await;
                    }
                    if self.live.load().websockets.closing() {
                        return close(stream, 1001, "server shutting down").await;
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= idle {
                        return close(stream, 1001, "no answer to pings").await;
                    }
                    if !matches!(tokio::time::timeout(idle, stream.send(Frame::Ping(Bytes::new()))).await, Ok(Ok(()))) {
                        return Ended::lost();
                    }
                }
            }
        }
    }

    /// Runs an event on the module version serving now; a failure closes
    /// this socket (1011), and nothing else.
    async fn event(&self, event: Event) -> Result<(), Ended> {
        let state = self.live.load_full();
        let routed = state.hosts.site(&self.site).map(|site| site.route(&self.routed_path));
        let mount = match routed {
            Some(Route::Module(mount)) if mount.module.name == self.module => mount,
            _ => return Err(Ended { code: 1001, reason: "the module is no longer served here".into() }),
        };
        let Some(support) = mount.module.websocket.clone() else {
            return Err(Ended { code: 1001, reason: "the module no longer serves WebSockets".into() });
        };
        let closing = matches!(event, Event::Socket(EventKind::Close(..)));
        match run_event(&state, mount, &support, &self.info, &self.peer, event).await {
            Ok(_) => Ok(()),
            Err(Refusal::Module(error)) => {
                tracing::error!(host = %mount.host, module = %mount.module.name, "WebSocket {} closed with 1011: {error}", self.info.id);
                if closing { Ok(()) } else { Err(Ended { code: 1011, reason: "the module failed".into() }) }
            }
            Err(_) => Err(Ended { code: 1013, reason: "too busy".into() }),
        }
    }

    /// Closes the socket on a protocol or limit error, with the code RFC
    /// 6455 names for it.
    async fn failed<S>(&self, stream: &mut WebSocketStream<S>, error: tungstenite::Error) -> Ended
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tungstenite::error::{CapacityError, Error, ProtocolError};
        let (code, reason) = match &error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return Ended::lost(),
            Error::Io(_) if self.too_many_fragments.load(Ordering::Relaxed) => (1009, "message in too many fragments"),
            Error::Utf8(..) => (1007, "invalid UTF-8"),
            Error::Capacity(CapacityError::MessageTooLong { .. }) => (1009, "message too big"),
            Error::Capacity(_) => (1009, "frame too big"),
            Error::Protocol(_) => (1002, "protocol error"),
            _ => return Ended::lost(),
        };
        tracing::debug!(module = %self.module, %error, "WebSocket {} closed with {code}", self.info.id);
        close(stream, code, reason).await
    }
}

/// Sends a close frame with `code` and `reason`, and ends the socket.
async fn close<S>(stream: &mut WebSocketStream<S>, code: u16, reason: &str) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
    // Then read until the client's close (or the connection's end), so the
    // close frame is not lost to a reset over unread input.
    let handshake = async {
        stream.close(Some(frame)).await?;
        while stream.next().await.is_some_and(|frame| frame.is_ok()) {}
        Ok::<_, tungstenite::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_TIME, handshake).await;
    Ended { code, reason: reason.to_string() }
}

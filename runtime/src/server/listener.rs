//! Accepting connections: bind each listener, accept in a loop that never
//! dies, and serve each connection in its own task: the TLS handshake on
//! https ports, then HTTP/1.1 with keep-alive, or HTTP/2 (by ALPN over TLS,
//! or when a plain client starts with the HTTP/2 preface).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tracing::Instrument as _;

use super::connections::{Activity, ConnectionCap, InFlightBody, Quiet, Watched};
use super::last_word::LastWord;
use super::mounts::ServerState;
use super::pipeline::{self, ConnectionInfo};
use crate::sendfile::{SendfileQueue, SendfileStream};
use crate::tls::HttpsAcceptor;

/// A client that has not finished sending its request head by then is
/// dropped, so slow clients cannot hold connections open for free.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A TLS handshake that takes longer is abandoned (Prosody allows 60 s).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a quiet connection told to close may take to say goodbye
/// (HTTP/2's GOAWAY) before it is dropped.
const QUIET_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A bound socket with the address the config gave for it (whose port
/// may be 0), which is how a reload recognises it.
pub struct Bound {
    pub configured: SocketAddr,
    pub listener: TcpListener,
    /// Set on https listeners.
    pub tls: Option<HttpsAcceptor>,
}

/// Binds every address; one that fails is logged and skipped, as Prosody
/// does, so a machine without IPv6 still serves on IPv4.
pub fn bind_all(addrs: &[SocketAddr], tls: Option<&HttpsAcceptor>) -> Vec<Bound> {
    let mut bound = Vec::new();
    for addr in addrs {
        match bind(*addr) {
            Ok(listener) => bound.push(Bound { configured: *addr, listener, tls: tls.cloned() }),
            Err(error) => tracing::error!("cannot listen on {addr}: {error}"),
        }
    }
    bound
}

/// Binds the https listeners whose port has a certificate. A port without
/// one stays closed with Prosody's error line; http keeps serving.
pub fn open_https(
    addrs: &[SocketAddr],
    tls: &crate::config::TlsSettings,
    certificates: &mut crate::tls::HttpsCertificates,
) -> Vec<Bound> {
    let mut opened = Vec::new();
    for addr in addrs {
        match certificates.open_port(tls, addr.port()) {
            Ok(acceptor) => opened.extend(bind_all(std::slice::from_ref(addr), Some(&acceptor))),
            Err(error) => tracing::error!("Error binding encrypted port for https: {error}"),
        }
    }
    opened
}

/// The accept loops running now, by service and configured address, so a
/// config reload can open new listeners and close removed ones while the
/// others, and every open connection, carry on.
pub struct AcceptLoops {
    running: Vec<RunningLoop>,
    state: Arc<ArcSwap<ServerState>>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    /// Shared by every listener: the cap is on connections server-wide.
    cap: ConnectionCap,
}

struct RunningLoop {
    configured: SocketAddr,
    secure: bool,
    local: Option<SocketAddr>,
    close: watch::Sender<bool>,
    /// Ends once the loop has dropped its socket.
    task: tokio::task::JoinHandle<()>,
}

impl AcceptLoops {
    pub fn new(
        state: Arc<ArcSwap<ServerState>>,
        stop: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
        cap: ConnectionCap,
    ) -> Self {
        Self { running: Vec::new(), state, stop, alive, cap }
    }

    pub fn start(&mut self, bound: Bound) {
        let local = bound.listener.local_addr().ok();
        let secure = bound.tls.is_some();
        let scheme = if secure { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{}", local.map_or_else(|| "?".into(), |a| a.to_string()));
        let (close, closed) = watch::channel(false);
        let accept = accept_loop(
            bound.listener,
            bound.tls,
            Arc::clone(&self.state),
            self.stop.clone(),
            closed,
            self.alive.clone(),
            self.cap.clone(),
        );
        let task = tokio::spawn(accept);
        self.running.push(RunningLoop { configured: bound.configured, secure, local, close, task });
    }

    /// Applies a reloaded connection cap.
    pub fn resize_cap(&self, limits: &crate::config::ConnectionLimits) {
        self.cap.resize(limits);
    }

    /// Configured addresses of the running loops for one service.
    pub fn configured(&self, secure: bool) -> Vec<SocketAddr> {
        self.running.iter().filter(|l| l.secure == secure).map(|l| l.configured).collect()
    }

    /// The first bound address of a service, for module URLs.
    pub fn first_local(&self, secure: bool) -> Option<SocketAddr> {
        self.running.iter().find(|l| l.secure == secure).and_then(|l| l.local)
    }

    /// Stops accepting on `configured` and returns once its socket is
    /// closed (so the address can be bound again); its open connections
    /// finish normally.
    pub async fn close(&mut self, configured: SocketAddr, secure: bool) {
        let Some(index) = self.running.iter().position(|l| l.configured == configured && l.secure == secure) else {
            return;
        };
        let running = self.running.swap_remove(index);
        let _ = running.close.send(true);
        let _ = running.task.await;
        let scheme = if secure { "https" } else { "http" };
        let local = running.local.map_or_else(|| configured.to_string(), |a| a.to_string());
        tracing::info!("no longer listening on {scheme}://{local}");
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        // "::" must not also claim IPv4, or it clashes with a "*" listener.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts until shutdown, or until this listener is `closed` by a
/// reload; `tls` makes this an https listener. A connection is served
/// only with a permit from `cap`: at the cap, accepting pauses (clients
/// wait in the kernel's backlog) rather than failing.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<HttpsAcceptor>,
    state: Arc<ArcSwap<ServerState>>,
    mut stop: watch::Receiver<bool>,
    mut closed: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    cap: ConnectionCap,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // At the cap, this connection waits for a place and the
                    // loop accepts nothing more: the rest wait in the backlog.
                    let metrics = Arc::clone(&state.load().metrics);
                    let permit = tokio::select! {
                        permit = cap.admit(|| metrics.connection_limit_reached()) => permit,
                        _ = stopping(&mut stop) => break,
                        _ = stopping(&mut closed) => break,
                    };
                    let Some(permit) = permit else { break };
                    let _ = stream.set_nodelay(true);
                    let (state, stop, alive) = (Arc::clone(&state), stop.clone(), alive.clone());
                    let activity = Activity::new();
                    // Plain-text connections send file bodies with sendfile.
                    let sendfile = tls.is_none().then(|| Arc::new(SendfileQueue::default()));
                    let stream = Watched::new(SendfileStream::new(stream, sendfile.clone()), Arc::clone(&activity));
                    // Every log line of this connection and its requests carries it.
                    let span = tracing::info_span!("connection", client.addr = %peer);
                    match &tls {
                        None => {
                            let connection =
                                ConnectionInfo { peer, secure: false, activity: Arc::clone(&activity), live: Arc::clone(&state), sendfile };
                            let serving = serve_connection(stream, connection, stop, (alive, permit));
                            tokio::spawn(serving.instrument(span));
                        }
                        Some(tls) => {
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                let handshake = tls.accept(stream);
                                let mut stop_handshake = stop.clone();
                                let limits = state.load().connections.clone();
                                let handshake = tokio::select! {
                                    done = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake) => done,
                                    // A client that never finishes must not hold up shutdown.
                                    _ = stopping(&mut stop_handshake) => return,
                                    // Nor may one that never starts hold its connection.
                                    quiet = activity.quiet(&limits) => {
                                        state.load().metrics.connection_closed_quiet(quiet == Quiet::NoFirstByte);
                                        return;
                                    }
                                };
                                state.load().metrics.tls_handshake(matches!(handshake, Ok(Ok(_))));
                                match handshake {
                                    Ok(Ok(stream)) => {
                                        let connection = ConnectionInfo {
                                            peer,
                                            secure: true,
                                            activity: Arc::clone(&activity),
                                            live: Arc::clone(&state),
                                            sendfile: None,
                                        };
                                        serve_connection(stream, connection, stop, (alive, permit)).await;
                                    }
                                    Ok(Err(error)) => tracing::debug!(client.addr = %peer, %error, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(client.addr = %peer, "TLS handshake timed out"),
                                }
                            }.instrument(span));
                        }
                    }
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stopping(&mut stop) => break,
            _ = stopping(&mut closed) => break,
        }
    }
}

/// Serves HTTP on one connection until it ends, the server stops, or it
/// has been quiet too long (`http_first_byte_timeout`, `http_idle_timeout`).
/// `held` keeps the drain counter and the connection's place under the
/// cap until it closes.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    connection: ConnectionInfo,
    mut stop: watch::Receiver<bool>,
    held: (mpsc::Sender<()>, OwnedSemaphorePermit),
) {
    let peer = connection.peer;
    let (activity, state) = (Arc::clone(&connection.activity), Arc::clone(&connection.live));
    let current = state.load_full();
    let metrics = Arc::clone(&current.metrics);
    let limits = current.connections.clone();
    let open = metrics.connection_opened();
    let requests = Arc::clone(&activity);
    // HTTP/2 streams run in tasks of their own: name the parent explicitly.
    let connection_span = tracing::Span::current();
    let service = hyper::service::service_fn(move |request| {
        // Each request sees one whole state, even if a reload swaps it now.
        let state = state.load_full();
        let in_flight = requests.request_started();
        let span = pipeline::request_span(&connection_span);
        let connection = connection.clone();
        async move {
            let response = pipeline::handle(&state, &connection, request).await;
            // In flight until its body is sent, which may be long after.
            Ok::<_, std::convert::Infallible>(response.map(|body| InFlightBody::new(body, in_flight)))
        }
        .instrument(span)
    });
    let stream = LastWord::new(stream, Arc::clone(&activity), peer, limits.max_header_bytes as usize);
    let builder = http_builder(&limits);
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        _ = stopping(&mut stop) => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
        quiet = activity.quiet(&limits) => {
            if let Quiet::SlowClient(slow) = quiet {
                metrics.body_too_slow(false);
                tracing::warn!(
                    client.addr = %peer,
                    "closing a connection whose client took {} bytes in {:.1} s of response bodies waiting on it (http_body_min_rate = {})",
                    slow.bytes,
                    slow.window.as_secs_f64(),
                    limits.body_min_rate.bytes_per_second
                );
                // Dropped at once: a grace period is more time to trickle.
                Ok(())
            } else {
                metrics.connection_closed_quiet(quiet == Quiet::NoFirstByte);
                activity.time_out();
                tracing::debug!(client.addr = %peer, "closing a connection quiet for too long ({quiet:?})");
                // HTTP/2 says GOAWAY; an idle HTTP/1.1 connection just closes.
                serving.as_mut().graceful_shutdown();
                match tokio::time::timeout(QUIET_CLOSE_GRACE, serving).await {
                    Ok(result) => result,
                    Err(_) => Ok(()),
                }
            }
        }
    };
    let head_timed_out = |error: &(dyn std::error::Error + 'static)| {
        error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
    };
    if let Err(error) = &result
        && head_timed_out(error.as_ref())
    {
        activity.time_out();
    }
    if activity.upgrading() {
        // A WebSocket took the connection: what this task held stays held
        // until the socket's stream goes.
        activity.keep_while_open(Box::new((held, open)));
    }
    if let Err(error) = result {
        // Peers hang up mid-request all the time; not the server's fault.
        tracing::debug!(client.addr = %peer, %error, "connection ended with an error");
    }
}

/// HTTP/1.1 with keep-alive, or HTTP/2, within the connection limits.
fn http_builder(limits: &crate::config::ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        // hyper restarts this timer whenever it waits for a head, between
        // keep-alive requests too: never shorter than the idle timeout.
        .header_read_timeout(HEADER_READ_TIMEOUT.max(limits.idle_timeout))
        // Body chunks queued as they are, never copied into hyper's buffer:
        // sendfile's placeholders are recognised by address.
        .writev(true)
        .max_buf_size(limits.max_header_bytes as usize);
    // RFC 8441: WebSockets as HTTP/2 streams.
    builder.http2().max_header_list_size(limits.max_header_bytes).enable_connect_protocol();
    builder
}

/// Resolves once shutdown has been asked for.
pub(super) async fn stopping(stop: &mut watch::Receiver<bool>) {
    // An error means the server is gone, which is shutdown too.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

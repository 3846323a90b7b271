//! Long-lived outgoing connections of modules ("links"): connecting (TCP,
//! and TLS done here with rustls), each link's pump between its socket and
//! its module, and every open link by host and module (a module reaches only
//! its own). Survives reloads, as the WebSockets links belong to do.
//!
//! What arrives on a link bound to a WebSocket becomes an event of that
//! connection (sent to its socket task, which runs events one at a time);
//! on a keyed link it waits in a bounded buffer for the module's `receive`.
//! Either way a link whose module does not keep up stops being read, so the
//! peer is slowed by TCP instead of the server buffering without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{Notify, OwnedMutexGuard, mpsc, watch};

use super::socket_registry::{LinkEvent, Room};
pub use crate::config::ConnectTarget as Target;

/// Bytes queued to a link before `send` refuses more.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Bytes a keyed link holds for `receive` before it stops reading.
pub const MAX_RECEIVED_BYTES: usize = 1 << 20;
/// Bytes of state a module may keep per keyed link.
pub const MAX_STATE_BYTES: usize = 512 * 1024;
/// Links one WebSocket connection may own.
pub const MAX_LINKS_PER_SOCKET: usize = 8;
/// The longest a `receive` may wait.
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(120);
/// The longest an instance waits to hold a link (`lock`).
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// The most a parked request's memo may carry.
pub const MAX_MEMO_BYTES: usize = 4 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may wait on a peer that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a link closed by its module may take to send what was queued.
const FLUSH_TIME: Duration = Duration::from_secs(2);
/// Per link, while it lives: small, since most links are idle most of the time.
const READ_CHUNK: usize = 4 * 1024;
/// Bytes gathered into one event while the module handles the last one.
const EVENT_BYTES: usize = 64 * 1024;

/// What a link belongs to.
pub enum Owner {
    /// A WebSocket connection: its id, and where its link events go.
    Socket { id: u64, events: mpsc::Sender<LinkEvent> },
    /// A key the module chose.
    Key(String),
}

/// Settings from the config, replaced on reload.
pub struct LinkSettings {
    pub tls: Arc<rustls::ClientConfig>,
    /// A keyed link untouched by its module this long is closed.
    pub idle_timeout: Duration,
    /// Links one module may have open on one host.
    pub max_per_room: usize,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl LinkSettings {
    /// Trusts the system's roots and `extra_roots` (`http_connect_ca_file`).
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        idle_timeout: Duration,
        max_per_room: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(system_roots().iter().cloned());
        roots.add_parsable_certificates(extra_roots.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                // ring supports the default versions; this is unreachable in practice.
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        Self { tls: Arc::new(tls), idle_timeout, max_per_room, metrics }
    }
}

/// The system's trusted roots, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("reading the system's trusted certificates: {error}");
        }
        found.certs
    })
}

/// What a keyed link received and its module has not read yet.
#[derive(Default)]
struct Received {
    data: Vec<u8>,
    /// Why the link ended, once it has.
    ended: Option<String>,
}

/// One open link.
pub struct Link {
    pub id: u64,
    room: Room,
    key: Option<String>,
    /// The WebSocket connection it belongs to.
    pub socket: Option<u64>,
    outbox: mpsc::UnboundedSender<Bytes>,
    /// Bytes in `outbox`.
    queued: AtomicUsize,
    received: Mutex<Received>,
    /// Bumped when something arrives, the link ends, or a new `receive`
    /// takes over.
    changed: watch::Sender<u64>,
    /// Counts `receive` calls: only the latest may wait.
    receives: AtomicU64,
    /// `receive` calls waiting now (a link being waited on is not idle).
    waiting: AtomicUsize,
    /// Told when `received` drained below its bound.
    drained: Notify,
    state: Mutex<Vec<u8>>,
    /// Held by one instance at a time (`lock`), and by a woken request
    /// while it takes what arrived and answers.
    turnstile: Arc<tokio::sync::Mutex<()>>,
    touched: Mutex<Instant>,
    /// The module's own idle timeout (`set-idle-timeout`), if it set one.
    idle_timeout: Mutex<Option<Duration>>,
    /// Told when `idle_timeout` changes, so the pump checks on the new one.
    retimed: Notify,
    /// Set by the module's `close`: send what is queued, then end, and
    /// tell nobody.
    stop: Notify,
    stopped: AtomicBool,
}

impl Link {
    fn touch(&self) {
        if let Ok(mut touched) = self.touched.lock() {
            *touched = Instant::now();
        }
    }

    /// Holds the link, waiting up to [`LOCK_WAIT`] for whoever holds it.
    pub async fn lock(self: &Arc<Self>) -> Result<HeldLink, String> {
        let guard = tokio::time::timeout(LOCK_WAIT, Arc::clone(&self.turnstile).lock_owned())
            .await
            .map_err(|_| format!("link {} stayed held by another instance for {LOCK_WAIT:?}", self.id))?;
        Ok(HeldLink { link: Arc::clone(self), undelivered: None, _guard: guard })
    }

    /// Closes a keyed link left untouched for `timeout`.
    pub fn set_idle_timeout(&self, timeout: Duration) -> Result<(), String> {
        if self.socket.is_some() {
            return Err(format!("link {} belongs to a WebSocket: it lives as long as its connection", self.id));
        }
        self.touch();
        if let Ok(mut idle) = self.idle_timeout.lock() {
            *idle = Some(timeout);
        }
        self.retimed.notify_one();
        Ok(())
    }

    /// How long the link may stay untouched: the module's timeout, or the server's.
    fn idle_limit(&self, server: Duration) -> Duration {
        self.idle_timeout.lock().ok().and_then(|idle| *idle).unwrap_or(server)
    }

    fn idle_for(&self) -> Duration {
        if self.waiting.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.touched.lock().map_or(Duration::ZERO, |touched| touched.elapsed())
    }

    /// Queues bytes for the peer.
    pub fn send(&self, data: Vec<u8>) -> Result<(), String> {
        self.touch();
        let size = data.len();
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return Err(format!("link {} has {MAX_QUEUED_BYTES} bytes waiting for its peer", self.id));
        }
        self.outbox.send(Bytes::from(data)).map_err(|_| {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            format!("link {} is closed", self.id)
        })
    }

    /// What arrived since the last call, waiting up to `max_wait` for
    /// something; a later call ends this one, empty-handed.
    pub async fn receive(&self, max_wait: Duration) -> Result<Vec<u8>, String> {
        let turn = self.take_turn()?;
        self.wait(turn, max_wait).await
    }

    /// Becomes the link's reader: a reader waiting now gives way (BOSH's
    /// held request answered when the next one comes).
    pub fn take_turn(&self) -> Result<u64, String> {
        if self.socket.is_some() {
            return Err(format!("link {} belongs to a WebSocket: its data arrives as events", self.id));
        }
        self.touch();
        let turn = self.receives.fetch_add(1, Ordering::Relaxed) + 1;
        self.changed.send_modify(|version| *version += 1);
        Ok(turn)
    }

    /// As reader `turn`: what arrived, once something has, the link ended,
    /// `max_wait` passed, or a later reader took over.
    pub async fn wait(&self, turn: u64, max_wait: Duration) -> Result<Vec<u8>, String> {
        self.ready(turn, max_wait).await;
        self.take(turn)
    }

    /// Waits, as reader `turn`, until something arrived, the link ended,
    /// `max_wait` passed, or a later reader took over; takes nothing.
    async fn ready(&self, turn: u64, max_wait: Duration) {
        let mut changes = self.changed.subscribe();
        // Counted down even if the wait is dropped (its client left).
        let _waiting = Waiting::new(self);
        let deadline = tokio::time::Instant::now() + max_wait.min(MAX_RECEIVE_WAIT);
        while self.receives.load(Ordering::Relaxed) == turn && !self.has_news() {
            if !matches!(tokio::time::timeout_at(deadline, changes.changed()).await, Ok(Ok(()))) {
                break;
            }
        }
    }

    /// As reader `turn`: what arrived, or why the link ended; nothing once
    /// a later reader took over.
    fn take(&self, turn: u64) -> Result<Vec<u8>, String> {
        if self.receives.load(Ordering::Relaxed) != turn {
            return Ok(Vec::new());
        }
        self.take_received().unwrap_or(Ok(Vec::new()))
    }

    fn has_news(&self) -> bool {
        self.received.lock().is_ok_and(|received| !received.data.is_empty() || received.ended.is_some())
    }

    /// Marks the link ended, waking whoever waits on it: they learn why.
    fn end(&self, reason: &str) {
        if let Ok(mut received) = self.received.lock()
            && received.ended.is_none()
        {
            received.ended = Some(reason.to_string());
        }
        self.changed.send_modify(|version| *version += 1);
    }

    /// Puts back what a reader took but could not deliver, ahead of
    /// anything that arrived since.
    pub fn unread(&self, mut data: Vec<u8>) {
        if let Ok(mut received) = self.received.lock() {
            data.append(&mut received.data);
            received.data = data;
        }
        self.changed.send_modify(|version| *version += 1);
    }

    fn take_received(&self) -> Option<Result<Vec<u8>, String>> {
        let mut received = self.received.lock().ok()?;
        if !received.data.is_empty() {
            let at = received.data.len().min(MAX_RECEIVED_BYTES);
            let rest = received.data.split_off(at);
            let data = std::mem::replace(&mut received.data, rest);
            self.drained.notify_one();
            return Some(Ok(data));
        }
        received.ended.as_ref().map(|reason| Err(format!("link {} is closed: {reason}", self.id)))
    }

    pub fn state(&self) -> Result<Vec<u8>, String> {
        self.touch();
        self.state.lock().map(|state| state.clone()).map_err(|_| "link state unavailable".to_string())
    }

    pub fn set_state(&self, state: Vec<u8>) -> Result<(), String> {
        if state.len() > MAX_STATE_BYTES {
            return Err(format!("link state is limited to {MAX_STATE_BYTES} bytes"));
        }
        self.touch();
        let mut current = self.state.lock().map_err(|_| "link state unavailable")?;
        *current = state;
        Ok(())
    }
}

#[derive(Default)]
struct Links {
    by_id: HashMap<u64, Arc<Link>>,
    by_key: HashMap<(Room, String), u64>,
}

/// Every open link of the server.
pub struct LinkRegistry {
    next_id: AtomicU64,
    links: Mutex<Links>,
    settings: ArcSwap<LinkSettings>,
    /// Set at shutdown: every link closes, none opens.
    closing: AtomicBool,
}

impl std::fmt::Debug for LinkRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.links.lock().map_or(0, |links| links.by_id.len());
        f.debug_struct("LinkRegistry").field("open", &open).finish()
    }
}

impl LinkRegistry {
    pub fn new(settings: LinkSettings) -> Self {
        Self {
            next_id: AtomicU64::new(0),
            links: Mutex::default(),
            settings: ArcSwap::from_pointee(settings),
            closing: AtomicBool::new(false),
        }
    }

    /// A reload's settings, for links opened from now on (and the idle
    /// timeout of every keyed link).
    pub fn configure(&self, settings: LinkSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Connects to `target` and starts the link's pump.
    pub async fn open(self: &Arc<Self>, room: Room, target: &Target, tls: bool, owner: Owner) -> Result<u64, String> {
        let settings = self.settings.load_full();
        // Checked before connecting, to fail fast, and again when the link
        // joins, since another open may have raced this one.
        self.admit(&room, (&owner).into(), settings.max_per_room, |_| ())?;
        let stream = connect(target, tls.then(|| Arc::clone(&settings.tls))).await?;
        let (outbox, outgoing) = mpsc::unbounded_channel();
        let owner_ref = OwnerRef::from(&owner);
        let link = Arc::new(Link {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            room: room.clone(),
            key: match &owner_ref {
                OwnerRef::Key(key) => Some(key.to_string()),
                OwnerRef::Socket(_) => None,
            },
            socket: match owner_ref {
                OwnerRef::Socket(id) => Some(id),
                OwnerRef::Key(_) => None,
            },
            outbox,
            queued: AtomicUsize::new(0),
            received: Mutex::default(),
            changed: watch::Sender::new(0),
            receives: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            drained: Notify::new(),
            state: Mutex::default(),
            turnstile: Arc::default(),
            touched: Mutex::new(Instant::now()),
            idle_timeout: Mutex::default(),
            retimed: Notify::new(),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        self.admit(&room, owner_ref, settings.max_per_room, |links| {
            if let Some(key) = &link.key {
                links.by_key.insert((link.room.clone(), key.clone()), link.id);
            }
            links.by_id.insert(link.id, Arc::clone(&link));
        })?;
        settings.metrics.link_opened(&room.1, true);
        tracing::debug!(module = %link.room.1, host = %link.room.0, "link {} open to {target}", link.id);
        let events = match owner {
            Owner::Socket { events, .. } => Some(events),
            Owner::Key(_) => None,
        };
        let pump = Pump { registry: Arc::clone(self), link: Arc::clone(&link), events, outgoing };
        tokio::spawn(pump.run(stream));
        Ok(link.id)
    }

    /// Whether `room` (and the socket) may open another link; if so, `join`
    /// runs under the same lock.
    fn admit(
        &self,
        room: &Room,
        owner: OwnerRef<'_>,
        max_per_room: usize,
        join: impl FnOnce(&mut Links),
    ) -> Result<(), String> {
        let mut links = self.links.lock().map_err(|_| "links unavailable")?;
        // Under the lock, so no link joins after `close_all` took its list.
        if self.closing.load(Ordering::Relaxed) {
            return Err("the server is shutting down".into());
        }
        let (mut count, mut of_socket) = (0, 0);
        for link in links.by_id.values().filter(|link| &link.room == room) {
            count += 1;
            if matches!(owner, OwnerRef::Socket(id) if link.socket == Some(id)) {
                of_socket += 1;
            }
        }
        if let OwnerRef::Key(key) = owner
            && let Some(id) = links.by_key.get(&(room.clone(), key.to_string()))
        {
            return Err(format!("key '{key}' already has link {id}"));
        }
        if count >= max_per_room {
            return Err(format!("this module has {max_per_room} links open here (http_websocket_max_connections)"));
        }
        if of_socket >= MAX_LINKS_PER_SOCKET {
            return Err(format!("a WebSocket connection may own at most {MAX_LINKS_PER_SOCKET} links"));
        }
        join(&mut links);
        Ok(())
    }

    /// The link `id` of `room`.
    pub fn get(&self, room: &Room, id: u64) -> Result<Arc<Link>, String> {
        let links = self.links.lock().map_err(|_| "links unavailable")?;
        links.by_id.get(&id).filter(|link| &link.room == room).cloned().ok_or_else(|| format!("no open link {id}"))
    }

    /// The open link `key` owns in `room`.
    pub fn find(&self, room: &Room, key: &str) -> Option<u64> {
        let links = self.links.lock().ok()?;
        let id = *links.by_key.get(&(room.clone(), key.to_string()))?;
        links.by_id.get(&id).inspect(|link| link.touch());
        Some(id)
    }

    /// The module closes a link: it is gone at once, and its pump sends
    /// what was queued before ending.
    pub fn close(&self, room: &Room, id: u64) {
        self.close_because(room, id, "closed by its module");
    }

    fn close_because(&self, room: &Room, id: u64, reason: &str) {
        if let Ok(link) = self.get(room, id) {
            self.forget(&link);
            link.stopped.store(true, Ordering::Relaxed);
            link.stop.notify_one();
            link.end(reason);
        }
    }

    /// Closes every link a WebSocket connection owns (it closed).
    pub fn close_socket(&self, room: &Room, socket: u64) {
        let owned: Vec<u64> = match self.links.lock() {
            Ok(links) => {
                links.by_id.values().filter(|l| &l.room == room && l.socket == Some(socket)).map(|l| l.id).collect()
            }
            Err(_) => return,
        };
        for id in owned {
            self.close(room, id);
        }
    }

    /// Shutdown: every link closes, none opens.
    pub fn close_all(&self) {
        let all: Vec<(Room, u64)> = match self.links.lock() {
            Ok(links) => {
                self.closing.store(true, Ordering::Relaxed);
                links.by_id.values().map(|l| (l.room.clone(), l.id)).collect()
            }
            Err(_) => return,
        };
        for (room, id) in all {
            self.close_because(&room, id, "the server is shutting down");
        }
    }

    fn forget(&self, link: &Link) {
        if let Ok(mut links) = self.links.lock()
            && links.by_id.remove(&link.id).is_some()
            && let Some(key) = &link.key
        {
            links.by_key.remove(&(link.room.clone(), key.clone()));
        }
    }
}

/// An owner, borrowed, for the room check.
#[derive(Clone, Copy)]
enum OwnerRef<'a> {
    Socket(u64),
    Key(&'a str),
}

impl<'a> From<&'a Owner> for OwnerRef<'a> {
    fn from(owner: &'a Owner) -> Self {
        match owner {
            Owner::Socket { id, .. } => OwnerRef::Socket(*id),
            Owner::Key(key) => OwnerRef::Key(key),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Connects, and with `tls` does the handshake, verifying the peer's
/// certificate for the target's host name.
async fn connect(target: &Target, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Box<dyn Stream>, String> {
    let connecting = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|error| format!("cannot connect to {target}: {error}"))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else { return Ok(Box::new(tcp) as Box<dyn Stream>) };
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| format!("'{}' is not a TLS server name", target.host))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|error| format!("TLS with {target} failed: {error}"))?;
        Ok(Box::new(stream) as Box<dyn Stream>)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .unwrap_or_else(|_| Err(format!("connecting to {target} took over {CONNECT_TIMEOUT:?}")))
}

/// Moves one link's bytes both ways until it ends.
struct Pump {
    registry: Arc<LinkRegistry>,
    link: Arc<Link>,
    /// For a link bound to a WebSocket: its connection's events.
    events: Option<mpsc::Sender<LinkEvent>>,
    outgoing: mpsc::UnboundedReceiver<Bytes>,
}

impl Pump {
    async fn run(mut self, stream: Box<dyn Stream>) {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let ended = self.exchange(&mut reader, &mut writer).await;
        // Sends fail from now on, instead of queueing for nobody.
        self.outgoing.close();
        let link = Arc::clone(&self.link);
        let settings = self.registry.settings.load_full();
        settings.metrics.link_opened(&link.room.1, false);
        if link.stopped.load(Ordering::Relaxed) {
            // Closed by its module: what it queued still goes out.
            let flush = async {
                while let Ok(data) = self.outgoing.try_recv() {
                    writer.write_all(&data).await?;
                }
                writer.shutdown().await
            };
            let _ = tokio::time::timeout(FLUSH_TIME, flush).await;
            return;
        }
        tracing::debug!(module = %link.room.1, host = %link.room.0, "link {} ended: {}", link.id, ended.reason);
        let _ = tokio::time::timeout(FLUSH_TIME, writer.shutdown()).await;
        drop((reader, writer));
        match &self.events {
            Some(events) => {
                self.registry.forget(&link);
                // Not for a link its module closed meanwhile.
                if !link.stopped.load(Ordering::Relaxed) {
                    let _ = events.send(LinkEvent::Closed(link.id, ended.reason)).await;
                }
            }
            None if ended.idle => {
                link.end(&ended.reason);
                self.registry.forget(&link);
            }
            None => {
                // Still found by its key, so the module's next `receive`
                // learns why it ended; forgotten then, or when idle.
                link.end(&ended.reason);
                tokio::time::sleep(settings.idle_timeout).await;
                self.registry.forget(&link);
            }
        }
    }

    /// Carries bytes until the peer or the module ends the link; says why.
    async fn exchange(
        &mut self,
        reader: &mut tokio::io::ReadHalf<Box<dyn Stream>>,
        writer: &mut tokio::io::WriteHalf<Box<dyn Stream>>,
    ) -> Ended {
        let link = Arc::clone(&self.link);
        let mut buffer = vec![0; READ_CHUNK];
        // Read, not yet handed to the WebSocket's task.
        let mut pending: Vec<u8> = Vec::new();
        let idle_check = |link: &Link, registry: &LinkRegistry| {
            let limit = link.idle_limit(registry.settings.load().idle_timeout);
            tokio::time::Instant::now() + (limit / 4).max(Duration::from_millis(250))
        };
        let mut next_check = idle_check(&link, &self.registry);
        loop {
            let can_read = match &self.events {
                Some(_) => pending.len() < EVENT_BYTES,
                None => link.received.lock().is_ok_and(|r| r.data.len() < MAX_RECEIVED_BYTES),
            };
            let events = self.events.clone();
            tokio::select! {
                biased;
                _ = link.stop.notified() => return "closed by its module".into(),
                data = self.outgoing.recv() => {
                    let Some(data) = data else { return "closed".into() };
                    link.queued.fetch_sub(data.len(), Ordering::Relaxed);
                    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&data)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => return format!("write failed: {error}").into(),
                        Err(_) => return "the peer stopped reading".into(),
                    }
                }
                permit = reserve(events.as_ref()), if !pending.is_empty() => match permit {
                    Some(permit) => permit.send(LinkEvent::Data(link.id, std::mem::take(&mut pending))),
                    None => return "its WebSocket connection closed".into(),
                },
                () = closed(events.as_ref()), if events.is_some() && pending.is_empty() => {
                    return "its WebSocket connection closed".into();
                }
                read = reader.read(&mut buffer), if can_read => match read {
                    Ok(0) => return "closed by the peer".into(),
                    Ok(n) => self.arrived(&buffer[..n], &mut pending),
                    Err(error) => return format!("read failed: {error}").into(),
                },
                _ = link.drained.notified(), if !can_read && self.events.is_none() => {}
                () = link.retimed.notified(), if self.events.is_none() => {
                    next_check = idle_check(&link, &self.registry);
                }
                () = tokio::time::sleep_until(next_check), if self.events.is_none() => {
                    let idle = link.idle_limit(self.registry.settings.load().idle_timeout);
                    if link.idle_for() >= idle {
                        let reason = format!("untouched by its module for {idle:?}");
                        return Ended { reason, idle: true };
                    }
                    next_check = idle_check(&link, &self.registry);
                }
            }
        }
    }

    fn arrived(&self, data: &[u8], pending: &mut Vec<u8>) {
        if self.events.is_some() {
            pending.extend_from_slice(data);
            return;
        }
        if let Ok(mut received) = self.link.received.lock() {
            received.data.extend_from_slice(data);
        }
        self.link.changed.send_modify(|version| *version += 1);
    }
}

/// One `wait` in progress, counted while it lasts; the link counts as
/// used until it ends, however it ends (a client may leave mid-wait).
struct Waiting<'a>(&'a Link);

impl<'a> Waiting<'a> {
    fn new(link: &'a Link) -> Self {
        link.waiting.fetch_add(1, Ordering::Relaxed);
        Self(link)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A link held by one instance (`lock`), until the instance ends.
pub struct HeldLink {
    pub link: Arc<Link>,
    /// What a woken request took from the link and its module has not yet
    /// answered with: put back if the answer never comes, while the link
    /// is still held, so nothing newer is read before it.
    pub undelivered: Option<Vec<u8>>,
    _guard: OwnedMutexGuard<()>,
}

impl Drop for HeldLink {
    fn drop(&mut self) {
        if let Some(data) = self.undelivered.take().filter(|data| !data.is_empty()) {
            self.link.unread(data);
        }
    }
}

/// Why a link's pump stopped.
struct Ended {
    reason: String,
    /// Its module left it untouched too long.
    idle: bool,
}

impl From<&str> for Ended {
    fn from(reason: &str) -> Self {
        Self { reason: reason.into(), idle: false }
    }
}

impl From<String> for Ended {
    fn from(reason: String) -> Self {
        Self { reason, idle: false }
    }
}

async fn reserve(events: Option<&mpsc::Sender<LinkEvent>>) -> Option<mpsc::Permit<'_, LinkEvent>> {
    events?.reserve().await.ok()
}

async fn closed(events: Option<&mpsc::Sender<LinkEvent>>) {
    match events {
        Some(events) => events.closed().await,
        None => std::future::pending().await,
    }
}

/// A request its module parked on a keyed link (`links.park`): it waits
/// in the server, holding no instance and no slot.
pub struct Parked {
    pub link: Arc<Link>,
    /// The link's reader turn the park took.
    turn: u64,
    max_wait: Duration,
    /// What the module asked to be handed back on wake.
    pub memo: Vec<u8>,
}

impl Parked {
    pub fn new(link: Arc<Link>, turn: u64, max_wait: Duration, memo: Vec<u8>) -> Result<Self, String> {
        if memo.len() > MAX_MEMO_BYTES {
            return Err(format!("a park's memo is limited to {MAX_MEMO_BYTES} bytes"));
        }
        Ok(Self { link, turn, max_wait, memo })
    }

    /// Waits until it is time to wake: something arrived, the link ended,
    /// the wait ran out, or a later reader took over.
    pub async fn ready(&self) {
        self.link.ready(self.turn, self.max_wait).await;
    }

    /// What the wake hands its module: what arrived, or why the link ended.
    /// Taken only while holding the link, so a module sees its link's data
    /// in the order it arrived, whichever instance reads it.
    pub fn take(&self, _held: &HeldLink) -> (Vec<u8>, Option<String>) {
        match self.link.take(self.turn) {
            Ok(data) => (data, None),
            Err(ended) => (Vec::new(), Some(ended)),
        }
    }
}

//! Admission and lifetime of client connections: how many may be open at
//! once (below the file descriptor limit, which is raised to its hard limit
//! at start, as nginx and Prosody do), and how long one may stay silent
//! before it is closed: before its first byte, and with no request in
//! flight (HTTP/1.1 keep-alive, HTTP/2 without streams); and how fast its
//! client must take the response bodies that wait on it
//! (`http_body_min_rate`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body_pace::{MinRate, PaceWindow, TooSlow};
use crate::config::ConnectionLimits;

/// File descriptors kept back from connections for everything else: the
/// listeners, module files, granted directories, certificates, logs.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft limit on open files to the hard limit; returns the
/// limit in force afterwards (`None` if it cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    if let Rlimit { current: Some(current), maximum: Some(maximum) } = getrlimit(Resource::Nofile)
        && current < maximum
    {
        let raised = Rlimit { current: Some(maximum), maximum: Some(maximum) };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("cannot raise the open file limit from {current} to {maximum}: {error}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// How many connections may be open: `http_max_connections`, else what the
/// descriptor limit leaves after the module pool (each instance may hold a
/// file open), the open-file caches and a reserve.
fn max_connections(limits: &ConnectionLimits, descriptors: Option<u64>, pool_size: u32) -> usize {
    let cached = crate::wasm::files::cached_descriptors(descriptors) as u64;
    let room = descriptors.map(|d| d.saturating_sub(u64::from(pool_size).min(d / 4) + cached + RESERVED_DESCRIPTORS));
    match (limits.max_connections, room) {
        (Some(configured), Some(room)) if u64::from(configured) > room => {
            tracing::warn!(
                "http_max_connections = {configured} is more than the open file limit leaves room for; using {room}"
            );
            room.max(1) as usize
        }
        (Some(configured), _) => configured as usize,
        (None, Some(room)) => room.clamp(16, 1 << 20) as usize,
        (None, None) => 4096,
    }
}

/// The server-wide connection cap: a permit per open connection.
#[derive(Clone)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    limit: Arc<AtomicUsize>,
    /// What the limit is derived from besides the config, fixed at start.
    descriptors: Option<u64>,
    pool_size: u32,
    /// Places to withdraw as connections close, after the cap was lowered
    /// below the number open.
    owed: Arc<AtomicUsize>,
    /// Whether the cap is biting now, so it is logged once per episode.
    saturated: Arc<AtomicBool>,
}

impl ConnectionCap {
    pub fn new(limits: &ConnectionLimits, descriptors: Option<u64>, pool_size: u32) -> Self {
        let limit = max_connections(limits, descriptors, pool_size);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit: Arc::new(AtomicUsize::new(limit)),
            descriptors,
            pool_size,
            owed: Arc::default(),
            saturated: Arc::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Applies a reloaded `http_max_connections`. Lowering it closes no
    /// connection: places are withdrawn as connections end.
    pub fn resize(&self, limits: &ConnectionLimits) {
        let new = max_connections(limits, self.descriptors, self.pool_size);
        let old = self.limit.swap(new, Ordering::Relaxed);
        if new > old {
            // Places still owed from a lowering are simply not taken.
            let mut added = new - old;
            let _ = self.owed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |owed| {
                let cancelled = owed.min(new - old);
                added = new - old - cancelled;
                Some(owed - cancelled)
            });
            self.permits.add_permits(added);
        } else if new < old {
            let owed = (old - new) - self.permits.forget_permits(old - new);
            self.owed.fetch_add(owed, Ordering::Relaxed);
        }
        if new != old {
            tracing::info!("accepting up to {new} connections (was {old})");
        }
    }

    /// A permit for one more connection, waiting (not accepting) while
    /// `limit` are open; `on_saturated` runs when waiting starts.
    pub async fn admit(&self, on_saturated: impl FnOnce()) -> Option<OwnedSemaphorePermit> {
        let mut on_saturated = Some(on_saturated);
        loop {
            let permit = match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => {
                    self.saturated.store(false, Ordering::Relaxed);
                    permit
                }
                Err(_) => {
                    if !self.saturated.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "{} connections are open (http_max_connections): not accepting more until one closes",
                            self.limit()
                        );
                        if let Some(notify) = on_saturated.take() {
                            notify();
                        }
                    }
                    Arc::clone(&self.permits).acquire_owned().await.ok()?
                }
            };
            // A place freed after the cap was lowered is withdrawn.
            if self.owed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |owed| owed.checked_sub(1)).is_ok() {
                permit.forget();
                continue;
            }
            return Some(permit);
        }
    }
}

/// What a connection has been doing, shared between its IO, its requests
/// and the watchdog that closes it when it goes quiet.
pub struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written.
    last: AtomicU64,
    any_read: AtomicBool,
    in_flight: AtomicUsize,
    /// Request heads parsed so far.
    requests_started: AtomicU64,
    /// Closed for going quiet, or for a request head that took too long.
    timed_out: AtomicBool,
    /// How fast the client takes response bodies.
    sending: Mutex<Sending>,
    /// Set once a request asked to become a WebSocket: the stream then
    /// stops being HTTP, and the connection lasts until the socket ends.
    upgrading: AtomicBool,
    /// What the connection's task held (its place under the cap, in the
    /// drain), handed over when a WebSocket took the connection: dropped
    /// with the last handle to this, i.e. when the socket's stream goes.
    kept: Mutex<Option<Box<dyn Send>>>,
}

/// Response bodies waiting for the client to take what they gave hyper
/// (hyper asks a body for more only once the client has made room).
struct Sending {
    window: PaceWindow,
    waiting: usize,
}

/// Why a quiet connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing at all arrived within `http_first_byte_timeout`.
    NoFirstByte,
    /// No request in flight and nothing moved for `http_idle_timeout`.
    Idle,
    /// Response bodies waited on a client that took them slower than
    /// `http_body_min_rate`.
    SlowClient(TooSlow),
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            any_read: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            requests_started: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            sending: Mutex::new(Sending { window: PaceWindow::new(Instant::now()), waiting: 0 }),
            upgrading: AtomicBool::new(false),
            kept: Mutex::new(None),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Counts a request as in flight until the returned guard drops (with
    /// the response body, once it is sent).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests_started.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// A WebSocket on an HTTP/2 stream: the connection counts as busy while
    /// it is open, however quiet.
    pub fn socket_opened(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn requests_started(&self) -> u64 {
        self.requests_started.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn any_read(&self) -> bool {
        self.any_read.load(Ordering::Relaxed)
    }

    /// A request became a WebSocket: the stream stops being HTTP.
    pub fn upgrade(&self) {
        self.upgrading.store(true, Ordering::Relaxed);
    }

    pub fn upgrading(&self) -> bool {
        self.upgrading.load(Ordering::Relaxed)
    }

    /// Keeps `held` as long as the connection's stream lives (see `kept`),
    /// so the task that served its HTTP can end and free its memory: an
    /// idle WebSocket costs its socket's buffers, not a finished HTTP task.
    pub fn keep_while_open(&self, held: Box<dyn Send>) {
        if let Ok(mut kept) = self.kept.lock() {
            *kept = Some(held);
        }
    }

    /// Marks the connection as closed for taking too long.
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// A response body handed hyper `bytes`, and waits until hyper asks
    /// for more.
    fn body_sent(&self, bytes: u64) {
        let now = Instant::now();
        if let Ok(mut sending) = self.sending.lock() {
            sending.window.moved(bytes, now);
            sending.waiting += 1;
            sending.window.wait(now);
        }
    }

    /// A response body that was waiting is asked for more (or dropped).
    fn body_resumed(&self) {
        if let Ok(mut sending) = self.sending.lock() {
            sending.waiting = sending.waiting.saturating_sub(1);
            if sending.waiting == 0 {
                sending.window.stop_waiting(Instant::now());
            }
        }
    }

    /// Resolves when the connection has been quiet past its limit, or its
    /// client takes response bodies too slowly.
    pub async fn quiet(&self, limits: &ConnectionLimits) -> Quiet {
        loop {
            let (limit, reason) = if self.any_read.load(Ordering::Relaxed) {
                (limits.idle_timeout, Quiet::Idle)
            } else {
                (limits.first_byte_timeout, Quiet::NoFirstByte)
            };
            let since = self.opened.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            let in_flight = self.in_flight.load(Ordering::Relaxed);
            if in_flight == 0 && since >= limit {
                return reason;
            }
            let next_judgement = match self.judge_sending(&limits.body_min_rate, in_flight > 0) {
                Ok(next) => next,
                Err(slow) => return Quiet::SlowClient(slow),
            };
            // Requests in flight have their own deadlines; look again later,
            // and soon enough that the first byte's arrival (which switches
            // to the other limit) is noticed within the shorter of the two.
            let shorter = limits.first_byte_timeout.min(limits.idle_timeout);
            let wait = if since >= limit { limit } else { limit - since };
            tokio::time::sleep(wait.min(shorter).min(next_judgement).max(Duration::from_millis(50))).await;
        }
    }

    /// Judges the window of response bodies, if it is over: `Err` when the
    /// client was too slow, else how long until the next judgement.
    fn judge_sending(&self, rate: &MinRate, in_flight: bool) -> Result<Duration, TooSlow> {
        let Ok(mut sending) = self.sending.lock() else { return Ok(Duration::MAX) };
        if !rate.enabled() {
            return Ok(Duration::MAX);
        }
        let now = Instant::now();
        match sending.window.judge(rate, now) {
            Some(slow) if in_flight => Err(slow),
            _ => Ok(sending.window.ends(rate).saturating_duration_since(now)),
        }
    }
}

/// A request in flight on a connection; see [`Activity::request_started`].
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request counted as in flight until the
/// body has been sent (or dropped), and tells the connection when it waits
/// on the client.
pub struct InFlightBody<B> {
    body: B,
    request: InFlight,
    /// Gave hyper data and has not been asked for more since.
    waiting: bool,
}

impl<B> InFlightBody<B> {
    pub fn new(body: B, request: InFlight) -> Self {
        Self { body, request, waiting: false }
    }
}

impl<B> Drop for InFlightBody<B> {
    fn drop(&mut self) {
        if self.waiting {
            self.request.0.body_resumed();
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlightBody<B>
where
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use bytes::Buf as _;
        let this = &mut *self;
        if std::mem::take(&mut this.waiting) {
            this.request.0.body_resumed();
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.request.0.body_sent(data.remaining() as u64);
            this.waiting = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, noting each read and write in its [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.any_read.store(true, Ordering::Relaxed);
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: Option<u32>) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 65536,
            body_min_rate: crate::body_pace::MinRate { bytes_per_second: 500, window: Duration::from_secs(20) },
            websocket_max_message: 1 << 19,
            websocket_max_fragments: 8,
            websocket_max_connections: 10_000,
        }
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        // The pool, the open-file caches, the reserve.
        assert_eq!(max_connections(&limits(None), Some(1024), 1000), 1024 - 256 - 128 - 128);
        assert_eq!(max_connections(&limits(None), Some(1 << 20), 1000), (1 << 20) - 1000 - 1024 - 128);
        assert_eq!(max_connections(&limits(Some(100)), Some(1024), 1000), 100);
        assert_eq!(max_connections(&limits(Some(5000)), Some(1024), 1000), 512);
    }

    #[tokio::test]
    async fn a_reloaded_cap_applies_as_connections_come_and_go() {
        let cap = ConnectionCap::new(&limits(Some(2)), Some(1 << 20), 10);
        let admit = || tokio::time::timeout(Duration::from_millis(200), cap.admit(|| {}));
        let first = admit().await.unwrap();
        let second = admit().await.unwrap();
        cap.resize(&limits(Some(1)));
        assert_eq!(cap.limit(), 1);
        // Lowering closes nothing; the first place to free is withdrawn.
        drop(first);
        assert!(admit().await.is_err(), "admitted past the lowered cap");
        drop(second);
        let third = admit().await.unwrap();
        cap.resize(&limits(Some(3)));
        let more = (admit().await.unwrap(), admit().await.unwrap());
        assert!(admit().await.is_err(), "admitted past the raised cap");
        drop((third, more));
    }

    #[tokio::test]
    async fn a_connection_is_quiet_only_with_nothing_in_flight() {
        let limits = ConnectionLimits {
            first_byte_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..limits(None)
        };
        let activity = Activity::new();
        assert_eq!(activity.quiet(&limits).await, Quiet::NoFirstByte);
        activity.any_read.store(true, Ordering::Relaxed);
        let request = activity.request_started();
        let quiet = tokio::time::timeout(Duration::from_secs(1), activity.quiet(&limits));
        assert!(quiet.await.is_err(), "never quiet while a request is in flight");
        drop(request);
        let started = Instant::now();
        assert_eq!(activity.quiet(&limits).await, Quiet::Idle);
        // `last` is kept in whole milliseconds.
        assert!(started.elapsed() >= Duration::from_millis(295));
    }
}

//! Admission and lifetime of client connections: how many may be open at
//! once (below the file descriptor limit, which is raised to its hard limit
//! at start, as nginx and Prosody do), and how long one may stay silent
//! before it is closed: before its first byte, and with no request in
//! flight (HTTP/1.1 keep-alive, HTTP/2 without streams).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
/// granted directory open) and a reserve.
pub fn max_connections(limits: &ConnectionLimits, descriptors: Option<u64>, pool_size: u32) -> usize {
    let room = descriptors.map(|d| d.saturating_sub(u64::from(pool_size).min(d / 4) + RESERVED_DESCRIPTORS));
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
    limit: usize,
    /// Whether the cap is biting now, so it is logged once per episode.
    saturated: Arc<AtomicBool>,
}

impl ConnectionCap {
    pub fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit, saturated: Arc::default() }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A permit for one more connection, waiting (not accepting) while
    /// `limit` are open; `on_saturated` runs when waiting starts.
    pub async fn admit(&self, on_saturated: impl FnOnce()) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            self.saturated.store(false, Ordering::Relaxed);
            return Some(permit);
        }
        if !self.saturated.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{} connections are open (http_max_connections): not accepting more until one closes",
                self.limit
            );
            on_saturated();
        }
        Arc::clone(&self.permits).acquire_owned().await.ok()
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
}

/// Why a quiet connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing at all arrived within `http_first_byte_timeout`.
    NoFirstByte,
    /// No request in flight and nothing moved for `http_idle_timeout`.
    Idle,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
            any_read: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
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
        self.touch();
        InFlight(Arc::clone(self))
    }

    /// Resolves when the connection has been quiet past its limit.
    pub async fn quiet(&self, limits: &ConnectionLimits) -> Quiet {
        loop {
            let (limit, reason) = if self.any_read.load(Ordering::Relaxed) {
                (limits.idle_timeout, Quiet::Idle)
            } else {
                (limits.first_byte_timeout, Quiet::NoFirstByte)
            };
            let since = self.opened.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
            if self.in_flight.load(Ordering::Relaxed) == 0 && since >= limit {
                return reason;
            }
            // Requests in flight have their own deadlines; look again later,
            // and soon enough that the first byte's arrival (which switches
            // to the other limit) is noticed within the shorter of the two.
            let shorter = limits.first_byte_timeout.min(limits.idle_timeout);
            let wait = if since >= limit { limit } else { limit - since };
            tokio::time::sleep(wait.min(shorter).max(Duration::from_millis(50))).await;
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
/// body has been sent (or dropped).
pub struct InFlightBody<B> {
    body: B,
    _request: InFlight,
}

impl<B> InFlightBody<B> {
    pub fn new(body: B, request: InFlight) -> Self {
        Self { body, _request: request }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
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
        }
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        assert_eq!(max_connections(&limits(None), Some(1024), 1000), 1024 - 256 - 128);
        assert_eq!(max_connections(&limits(None), Some(1 << 20), 1000), (1 << 20) - 1000 - 128);
        assert_eq!(max_connections(&limits(Some(100)), Some(1024), 1000), 100);
        assert_eq!(max_connections(&limits(Some(5000)), Some(1024), 1000), 640);
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

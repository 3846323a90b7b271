//! The server's last word on an HTTP/1.x connection it closes before a
//! request was read whole: `414` when the request line alone passes the
//! head limit (hyper would say 431, as for any head that is too large), and
//! `408` when the connection timed out with no request in flight (hyper
//! closes silently). HTTP/2 connections say goodbye with GOAWAY instead.
//!
//! The wrapper sits on the plain-text side (above TLS), watches what the
//! client sends, and writes the answer once hyper lets go of the stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::connections::Activity;

/// How long the last word may take to write, and how long the client's
/// leftover bytes are then read and dropped (closing with unread input
/// would reset the connection and lose the answer).
const LAST_WORD_TIME: Duration = Duration::from_secs(2);
/// At most this much of what the client still sends is read before closing.
const LINGER_BYTES: usize = 1 << 20;

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Nothing read yet.
    Unknown,
    Http1,
    Http2,
}

pub struct LastWord<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Taken on drop, to write the answer.
    inner: Option<S>,
    activity: Arc<Activity>,
    peer: SocketAddr,
    max_head_bytes: usize,
    protocol: Protocol,
    /// A request head is arriving that hyper has not parsed yet; holds the
    /// length of its request line so far, until the line ends.
    head: Option<Option<usize>>,
    /// [`Activity::requests_started`] when `head` was last looked at.
    requests_seen: u64,
    line_too_long: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> LastWord<S> {
    pub fn new(inner: S, activity: Arc<Activity>, peer: SocketAddr, max_head_bytes: usize) -> Self {
        Self {
            inner: Some(inner),
            activity,
            peer,
            max_head_bytes,
            protocol: Protocol::Unknown,
            head: None,
            requests_seen: 0,
            line_too_long: false,
        }
    }

    /// Follows the request head in `bytes`; true once its request line has
    /// reached the head limit.
    fn follow_head(&mut self, bytes: &[u8]) -> bool {
        let started = self.activity.requests_started();
        if started != self.requests_seen {
            // hyper parsed the head we were following.
            self.requests_seen = started;
            self.head = None;
        }
        if self.head.is_none() && self.activity.in_flight() == 0 {
            // Bytes with no request in flight begin the next head. (Bytes
            // of a pipelined request read ahead while another was in
            // flight are not followed.)
            self.head = Some(Some(0));
        }
        let Some(Some(line)) = self.head else { return false };
        match bytes.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.head = Some(None);
                line + end >= self.max_head_bytes
            }
            None => {
                self.head = Some(Some(line + bytes.len()));
                line + bytes.len() >= self.max_head_bytes
            }
        }
    }

    /// What to answer as the connection closes, if anything.
    fn answer(&self) -> Option<(http::StatusCode, &'static str)> {
        if self.activity.upgrading() {
            return None;
        }
        if self.line_too_long {
            return Some((http::StatusCode::URI_TOO_LONG, "request line longer than http_max_header_size"));
        }
        let activity = &self.activity;
        let unparsed_head = self.head.is_some() && self.requests_seen == activity.requests_started();
        let waiting_for_request = activity.requests_started() == 0 || unparsed_head;
        (self.protocol != Protocol::Http2 && activity.timed_out() && activity.in_flight() == 0 && waiting_for_request)
            .then_some((http::StatusCode::REQUEST_TIMEOUT, "no complete request in time"))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for LastWord<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Ok(())) };
        let before = buf.filled().len();
        ready!(Pin::new(inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if read.is_empty() || this.protocol == Protocol::Http2 || this.activity.upgrading() {
            return Poll::Ready(Ok(()));
        }
        if this.protocol == Protocol::Unknown {
            let start = &read[..read.len().min(HTTP2_PREFACE.len())];
            this.protocol = if HTTP2_PREFACE.starts_with(start) { Protocol::Http2 } else { Protocol::Http1 };
            if this.protocol == Protocol::Http2 {
                return Poll::Ready(Ok(()));
            }
        }
        if this.follow_head(read) {
            // hyper is told the client stopped; the 414 goes out on drop.
            this.line_too_long = true;
            buf.set_filled(before);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for LastWord<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for LastWord<S> {
    fn drop(&mut self) {
        let Some((status, why)) = self.answer() else { return };
        let (Some(mut stream), Ok(runtime)) = (self.inner.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        if self.activity.any_read() {
            tracing::info!(target: "canto::access", client = %self.peer.ip(), status = status.as_u16(), "({why})");
        }
        runtime.spawn(async move {
            let response = format!(
                "HTTP/1.1 {} {}\r\ndate: {}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default(),
                httpdate::fmt_http_date(std::time::SystemTime::now())
            );
            let farewell = async {
                stream.write_all(response.as_bytes()).await?;
                stream.shutdown().await?;
                let mut sink = [0u8; 8192];
                let mut drained = 0;
                while drained < LINGER_BYTES {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => drained += n,
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(LAST_WORD_TIME, farewell).await;
        });
    }
}

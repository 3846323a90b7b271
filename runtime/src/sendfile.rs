//! Zero-copy file bodies on plain-text HTTP/1.x connections.
//!
//! hyper owns a connection's writes, so a file body cannot call
//! `sendfile(2)` itself. Instead it hands hyper a placeholder chunk of the
//! right length and queues the file range it stands for on its
//! connection's [`SendfileQueue`]; when hyper writes the placeholder, the
//! connection's [`SendfileStream`] sends that range from the page cache
//! with `sendfile` instead. The file's bytes never enter user space.
//!
//! A placeholder is recognised by its address (a slice of one static
//! buffer nothing else hands out), never by its contents. One that does
//! not match the front of the queue fails the connection rather than send
//! the placeholder's zeros. hyper must queue body chunks as they are (its
//! vectored write strategy, which the listener asks for): copied into its
//! own buffer, a placeholder could not be recognised. TLS and HTTP/2
//! connections have no queue, and their bodies are read as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The longest file range one placeholder stands for. Not longer than a
/// read piece: a body's pace is judged by the chunks it hands hyper, so a
/// longer one would make a slow client look slower than it is.
pub const MAX_PLACEHOLDER: usize = 512 << 10;

/// What placeholders are cut from. All zeros, so it costs no memory (it is
/// never touched unless a placeholder escapes, which the stream refuses).
static PLACEHOLDER: [u8; MAX_PLACEHOLDER] = [0; MAX_PLACEHOLDER];

/// A range of a file a placeholder stands for.
struct Pending {
    file: Arc<File>,
    offset: u64,
    length: usize,
}

/// File ranges a connection's bodies have handed hyper placeholders for, in
/// the order hyper will write them.
#[derive(Default)]
pub struct SendfileQueue {
    pending: Mutex<VecDeque<Pending>>,
}

impl std::fmt::Debug for SendfileQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendfileQueue").field("pending", &self.lock().len()).finish()
    }
}

impl SendfileQueue {
    /// A placeholder for `length` bytes of `file` at `offset`, to yield as
    /// the body's next chunk. `length` is at most [`MAX_PLACEHOLDER`].
    pub fn placeholder(&self, file: Arc<File>, offset: u64, length: usize) -> Bytes {
        let length = length.min(MAX_PLACEHOLDER);
        self.lock().push_back(Pending { file, offset, length });
        Bytes::from_static(&PLACEHOLDER[..length])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        // The queue holds no invariant a panic elsewhere could break.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How far into the placeholder buffer `bytes` starts, if it is part of it.
fn placeholder_position(bytes: &[u8]) -> Option<usize> {
    let start = PLACEHOLDER.as_ptr() as usize;
    let at = (bytes.as_ptr() as usize).checked_sub(start)?;
    (!bytes.is_empty() && at + bytes.len() <= MAX_PLACEHOLDER).then_some(at)
}

/// A TCP connection's stream that sends queued file ranges with
/// `sendfile` where hyper writes their placeholders. Without a queue (TLS,
/// whose bytes must pass through the cipher) it only passes writes on.
pub struct SendfileStream {
    inner: TcpStream,
    queue: Option<Arc<SendfileQueue>>,
}

impl SendfileStream {
    pub fn new(inner: TcpStream, queue: Option<Arc<SendfileQueue>>) -> Self {
        Self { inner, queue }
    }

    /// Writes with `op` once the socket is writable, as tokio's own writes do.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_io(Interest::WRITABLE, || op(&self.inner)) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    /// Sends the file range `placeholder` (what is left of the front
    /// placeholder) stands for.
    fn poll_send_file(
        &self,
        cx: &mut Context<'_>,
        queue: &SendfileQueue,
        placeholder: &[u8],
    ) -> Poll<io::Result<usize>> {
        let at = placeholder_position(placeholder).unwrap_or_default();
        let (file, offset) = {
            let pending = queue.lock();
            match pending.front() {
                // hyper hands back what is left of a placeholder, so it ends
                // where the range does.
                Some(front) if at + placeholder.len() == front.length => {
                    (Arc::clone(&front.file), front.offset + at as u64)
                }
                _ => return Poll::Ready(Err(io::Error::other("a file body's placeholder matches no queued range"))),
            }
        };
        let sent = ready!(self.poll_write_with(cx, |socket| {
            let mut from = offset;
            match rustix::fs::sendfile(socket, &*file, Some(&mut from), placeholder.len()) {
                // A filesystem that cannot splice its pages: read and write.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
                    read_and_send(socket, &file, offset, placeholder.len())
                }
                sent => Ok(sent?),
            }
        }))?;
        if sent == 0 {
            // The file is shorter than the length already promised.
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while being sent")));
        }
        if sent == placeholder.len() {
            queue.lock().pop_front();
        }
        Poll::Ready(Ok(sent))
    }
}

/// Sends up to 64 KiB of `file` at `offset` through memory, for files
/// `sendfile` cannot send.
fn read_and_send(socket: &TcpStream, file: &File, offset: u64, length: usize) -> io::Result<usize> {
    use std::os::unix::fs::FileExt as _;
    let mut buffer = vec![0; length.min(64 << 10)];
    let read = file.read_at(&mut buffer, offset)?;
    if read == 0 {
        return Ok(0);
    }
    // A short write is fine: hyper hands back the rest of the placeholder.
    Ok(rustix::net::send(socket, &buffer[..read], SendFlags::empty())?)
}

impl Drop for SendfileStream {
    fn drop(&mut self) {
        // Ranges of a body cut short would keep their files open as long
        // as anything holds the queue (an idle instance's request facts).
        if let Some(queue) = &self.queue {
            queue.lock().clear();
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(queue) = this.queue.as_deref() else {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        };
        match bufs.iter().position(|buf| placeholder_position(buf).is_some()) {
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            Some(0) => this.poll_send_file(cx, queue, &bufs[0]),
            // What comes before a file range (the response head): sent
            // with MSG_MORE, so it shares a packet with the file's bytes.
            Some(head) => this.poll_write_with(cx, |socket| {
                Ok(rustix::net::sendmsg(socket, &bufs[..head], &mut Default::default(), SendFlags::MORE)?)
            }),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! `websocket_frame_fragment_limit`: how many frames one WebSocket message
//! may arrive in. The framing library joins fragments without counting
//! them, so this reads the frame headers as the bytes go by (RFC 6455
//! §5.2) and fails the read once a message has too many.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose incoming frames are counted per message.
pub struct FragmentLimit<S> {
    inner: S,
    scanner: Scanner,
    /// Set when a message went over the limit.
    exceeded: Arc<AtomicBool>,
}

impl<S> FragmentLimit<S> {
    /// `limit` frames per message at most; `exceeded` is set when a
    /// message has more (reads fail from then on).
    pub fn new(inner: S, limit: u32, exceeded: Arc<AtomicBool>) -> Self {
        Self { inner, scanner: Scanner::new(limit), exceeded }
    }
}

/// Where the scan is in the incoming byte stream.
struct Scanner {
    limit: u32,
    /// Header bytes of the frame being read.
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: u64,
    /// Frames of the current message that were not its last.
    unfinished: u32,
}

impl Scanner {
    fn new(limit: u32) -> Self {
        Self { limit: limit.max(1), header: [0; 14], have: 0, payload_left: 0, unfinished: 0 }
    }

    /// Reads `bytes`; `Err(at)` once a message has more frames than
    /// allowed, `at` being where in `bytes` the offending frame begins (0
    /// if it began in an earlier read): what comes before is good.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), usize> {
        let total = bytes.len();
        let mut bytes = bytes;
        let mut header_start = 0;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            if self.have == 0 {
                header_start = total - bytes.len();
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 || self.have < header_length(self.header[1]) {
                continue;
            }
            let (fin, opcode) = (self.header[0] & 0x80 != 0, self.header[0] & 0x0f);
            self.payload_left = payload_length(&self.header);
            self.have = 0;
            if opcode >= 0x8 {
                continue; // control frames sit between fragments, uncounted
            }
            if fin {
                self.unfinished = 0;
            } else {
                self.unfinished += 1;
                if self.unfinished >= self.limit {
                    return Err(header_start);
                }
            }
        }
        Ok(())
    }
}

/// Bytes in a frame header, from its second byte: 2, the extended length,
/// and the mask.
fn header_length(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if second & 0x80 != 0 { 4 } else { 0 }
}

fn payload_length(header: &[u8; 14]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => {
            u64::from_be_bytes([header[2], header[3], header[4], header[5], header[6], header[7], header[8], header[9]])
        }
        short => u64::from(short),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FragmentLimit<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "too many fragments")));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && let Err(good) = this.scanner.feed(&buf.filled()[before..])
        {
            this.exceeded.store(true, Ordering::Relaxed);
            // What came before the offending frame is delivered; the next
            // read fails.
            buf.set_filled(before + good);
            if good == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "too many fragments")));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FragmentLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend_from_slice(payload);
        out
    }

    fn message(frames: usize, size: usize) -> Vec<u8> {
        (0..frames).flat_map(|i| frame(i + 1 == frames, if i == 0 { 1 } else { 0 }, &vec![b'x'; size])).collect()
    }

    #[test]
    fn a_message_may_have_as_many_frames_as_the_limit() {
        let mut scanner = Scanner::new(8);
        assert_eq!(scanner.feed(&message(8, 3)), Ok(()));
        assert_eq!(scanner.feed(&message(1, 70_000)), Ok(()));
        assert_eq!(scanner.feed(&message(8, 200)), Ok(()));
        // The eighth unfinished frame (each 2 + 4 + 3 bytes) means a ninth.
        assert_eq!(Scanner::new(8).feed(&message(9, 3)), Err(7 * 9));
        let mut good_then_bad = message(2, 5);
        let good = good_then_bad.len();
        good_then_bad.extend(message(9, 3));
        assert_eq!(Scanner::new(8).feed(&good_then_bad), Err(good + 7 * 9));
    }

    #[test]
    fn control_frames_between_fragments_do_not_count() {
        let mut bytes = Vec::new();
        for i in 0..8 {
            bytes.extend(frame(i == 7, if i == 0 { 2 } else { 0 }, b"ab"));
            bytes.extend(frame(true, 0x9, b"ping"));
        }
        assert_eq!(Scanner::new(8).feed(&bytes), Ok(()));
    }

    #[test]
    fn bytes_may_arrive_one_at_a_time() {
        let mut scanner = Scanner::new(3);
        let ok = message(3, 130);
        assert!(ok.iter().all(|byte| scanner.feed(&[*byte]).is_ok()));
        let too_many = message(4, 1);
        assert!(!too_many.iter().all(|byte| scanner.feed(&[*byte]).is_ok()));
    }
}

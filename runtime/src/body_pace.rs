//! Minimum body rates (`http_body_min_rate`): a body that spends most of a
//! window (`http_body_min_rate_window`) waiting on its client, and moves
//! fewer bytes in it than the rate asks, is cut, so a client trickling an
//! upload or a download cannot hold a module slot until the wall-clock
//! timeout. Only time spent waiting on the client counts: a module that
//! reads or streams slowly is not the client's fault.
//!
//! Request bodies are paced here ([`PacedBody`], which the module polls);
//! response bodies are paced per connection, since a client that stops
//! reading stops hyper from asking for more (see `server::connections`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error;

/// The configured minimum rate; `bytes_per_second == 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

impl MinRate {
    pub fn enabled(&self) -> bool {
        self.bytes_per_second > 0
    }
}

/// A window that ended with too little moved while waiting on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooSlow {
    pub bytes: u64,
    pub window: Duration,
}

/// One window of a body's progress.
#[derive(Debug)]
pub struct PaceWindow {
    started: Instant,
    bytes: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl PaceWindow {
    pub fn new(now: Instant) -> Self {
        Self { started: now, bytes: 0, waited: Duration::ZERO, waiting_since: None }
    }

    /// The body now waits on the client.
    pub fn wait(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// The client moved `bytes`; the body no longer waits on it.
    pub fn moved(&mut self, bytes: u64, now: Instant) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.stop_waiting(now);
    }

    pub fn stop_waiting(&mut self, now: Instant) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += now.saturating_duration_since(since);
        }
    }

    pub fn ends(&self, rate: &MinRate) -> Instant {
        self.started + rate.window
    }

    /// Once the window is over: whether the client was too slow in it;
    /// then a new window starts. `None` before the end, or if it kept up.
    pub fn judge(&mut self, rate: &MinRate, now: Instant) -> Option<TooSlow> {
        if !rate.enabled() || now < self.ends(rate) {
            return None;
        }
        let waiting = self.waiting_since.map(|since| now.saturating_duration_since(since));
        let waited = self.waited + waiting.unwrap_or_default();
        let elapsed = now.saturating_duration_since(self.started);
        let expected = rate.bytes_per_second as f64 * elapsed.as_secs_f64();
        let verdict = (waited * 2 >= elapsed && (self.bytes as f64) < expected)
            .then_some(TooSlow { bytes: self.bytes, window: elapsed });
        *self = Self { waiting_since: waiting.map(|_| now), ..Self::new(now) };
        verdict
    }
}

/// A request body that fails with `ConnectionReadTimeout` once its client
/// falls below the minimum rate; `on_slow` runs then, once.
pub struct PacedBody<B> {
    inner: B,
    rate: MinRate,
    window: PaceWindow,
    /// Wakes the module's read at the window's end while it waits; made
    /// the first time it waits (most bodies never do).
    timer: Option<Pin<Box<Sleep>>>,
    on_slow: Option<Box<dyn FnOnce(TooSlow) + Send>>,
    failed: bool,
}

impl<B> PacedBody<B> {
    pub fn new(inner: B, rate: MinRate, on_slow: Box<dyn FnOnce(TooSlow) + Send>) -> Self {
        Self {
            inner,
            rate,
            window: PaceWindow::new(Instant::now()),
            timer: None,
            on_slow: Some(on_slow),
            failed: false,
        }
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        if !this.rate.enabled() {
            return Pin::new(&mut this.inner).poll_frame(cx).map(|frame| frame.map(|f| f.map_err(Into::into)));
        }
        let now = Instant::now();
        if let Some(slow) = this.window.judge(&this.rate, now) {
            this.failed = true;
            if let Some(notify) = this.on_slow.take() {
                notify(slow);
            }
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, |data| data.len() as u64);
                this.window.moved(bytes, now);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                this.window.wait(now);
                let ends = this.window.ends(&this.rate);
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ends)));
                timer.as_mut().reset(ends);
                if timer.as_mut().poll(cx).is_ready() {
                    // The window is over: judge it on the next poll.
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MinRate = MinRate { bytes_per_second: 100, window: Duration::from_secs(10) };

    #[test]
    fn a_client_is_judged_only_on_time_spent_waiting_for_it() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        // Waiting on the client all window long, 50 bytes: too slow.
        let mut window = PaceWindow::new(start);
        window.wait(at(0));
        window.moved(50, at(5));
        window.wait(at(5));
        assert!(window.judge(&RATE, at(9)).is_none(), "judged before the window's end");
        let slow = window.judge(&RATE, at(10)).expect("too slow");
        assert_eq!(slow.bytes, 50);
        // The next window starts waiting where the last one stopped.
        window.moved(2000, at(12));
        assert!(window.judge(&RATE, at(20)).is_none(), "kept up");
        // A module that reads slowly: the client waited on it, not the
        // other way round.
        let mut window = PaceWindow::new(start);
        window.wait(at(0));
        window.moved(10, at(1));
        assert!(window.judge(&RATE, at(10)).is_none(), "blamed the client for the module's pace");
    }

    #[test]
    fn a_rate_of_zero_judges_nothing() {
        let start = Instant::now();
        let off = MinRate { bytes_per_second: 0, ..RATE };
        let mut window = PaceWindow::new(start);
        window.wait(start);
        assert!(window.judge(&off, start + Duration::from_secs(100)).is_none());
    }
}

//! A body that carries at most a given number of bytes: past the cap it
//! fails instead of yielding more. Used for request bodies whose length was
//! not declared (`http_max_content_size`) and for module responses
//! (`http_module_max_response_size`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error;

pub struct CappedBody<B> {
    inner: B,
    seen: u64,
    limit: u64,
    overflow_error: fn(u64) -> Error,
    /// Runs once, when the cap is passed (to log or flag it).
    on_overflow: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> CappedBody<B> {
    pub fn new(inner: B, limit: u64, overflow_error: fn(u64) -> Error, on_overflow: Box<dyn FnOnce() + Send>) -> Self {
        Self { inner, seen: 0, limit, overflow_error, on_overflow: Some(on_overflow) }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        if let Some(notify) = this.on_overflow.take() {
                            notify();
                        }
                        return Poll::Ready(Some(Err((this.overflow_error)(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

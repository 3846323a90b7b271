//! Serving one request with a module: a fresh store (fresh sandbox) per
//! request unless the module may reuse instances ([`super::reuse`]),
//! bounded memory, an epoch deadline, and every way a guest can fail turned
//! into a [`WasmError`] rather than a panic.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument as _;
use wasmtime::{Store, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::host_state::{InstanceState, MountIdentity, RequestFacts, SandboxLimits};
use super::module::LoadedModule;
use super::reuse::{IdleInstances, ReadyInstance};
use super::{WasmError, engine};
use crate::body_limit::CappedBody;

/// A module's response body, streamed as the guest writes it.
pub type ModuleBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Everything one call of a module needs besides the request itself.
pub struct Invocation {
    pub module: Arc<LoadedModule>,
    pub mount: Arc<MountIdentity>,
    pub facts: RequestFacts,
    pub sandbox: SandboxLimits,
    /// CPU budget, counted in epoch ticks while the guest runs.
    pub timeout: Duration,
    /// Wall-clock budget for the whole call, body streaming included.
    pub wall_timeout: Duration,
    pub max_response_bytes: u64,
    /// Held until the guest finishes (including streaming its body), so
    /// neither the instance pool nor the module's share is oversubscribed.
    pub permits: [OwnedSemaphorePermit; 2],
    /// Where this mount keeps instances between requests, if it reuses them.
    pub reuse: Option<Arc<IdleInstances>>,
}

/// How a module answered a request.
pub enum Answered {
    /// With this response (its body may still be streaming).
    Now(hyper::Response<ModuleBody>),
    /// Later: it parked the request on a keyed link (`links.park`).
    Parked(super::link_registry::Parked),
}

impl Invocation {
    pub async fn run<B>(self, request: hyper::Request<B>) -> Result<Answered, WasmError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Invocation { module, mount, facts, sandbox, timeout, wall_timeout, max_response_bytes, permits, reuse } =
            self;
        let name = module.name.clone();
        let failed = |cause: wasmtime::Error| WasmError::Failed { module: name.clone(), cause };

        let scheme = if facts.secure { Scheme::Https } else { Scheme::Http };
        let (mut store, ready, served) = match reuse.as_ref().and_then(|idle| idle.take()) {
            Some(ReadyInstance { mut store, proxy, served }) => {
                store.data_mut().begin_request(facts);
                (store, Some(proxy), served)
            }
            None => {
                let mut store = Store::new(module.proxy.engine(), InstanceState::new(mount, Some(facts), &sandbox));
                store.limiter(|state| &mut state.limits);
                (store, None, 0)
            }
        };
        engine::deadline(&mut store, timeout);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(scheme, request).map_err(failed)?;
        let outparam = store.data_mut().http().new_response_outparam(sender).map_err(failed)?;

        // The guest keeps running after it sets the response head, to stream
        // the body.
        let proxy_pre = module.proxy.clone();
        let guest_name = module.name.clone();
        let guest = async move {
            let call = async {
                let proxy = match ready {
                    Some(proxy) => proxy,
                    None => proxy_pre.instantiate_async(&mut store).await?,
                };
                proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await?;
                Ok::<_, wasmtime::Error>(proxy)
            };
            // Dropping the call drops the store: the instance is gone, and
            // a body it was streaming ends early.
            let outcome = tokio::time::timeout(wall_timeout, call).await;
            if outcome.is_err() {
                tracing::warn!(module = %guest_name, "module stopped after {wall_timeout:?} of wall-clock time");
            }
            let parked = store.data_mut().parked.take();
            // The request is done with its links: a parked one wakes
            // only once they are let go.
            store.data_mut().held.clear();
            let outcome = match (outcome, reuse) {
                // Only an instance that finished cleanly, and let go of
                // everything of this request, serves again.
                (Ok(Ok(proxy)), Some(idle)) if !store.data_mut().holds_request_state() => {
                    idle.put_back(ReadyInstance { store, proxy, served: served + 1 });
                    Ok(Ok(parked))
                }
                (outcome, _) => {
                    // Free the instance's pool slot before the permits that count it.
                    drop(store);
                    outcome.map(|called| called.map(|_| parked))
                }
            };
            drop(permits);
            outcome
        }
        .in_current_span();
        // A panic in host code fails this request, as it would a task.
        let mut guest: GuestTask = Box::pin(AssertUnwindSafe(guest).catch_unwind());

        // Run the guest right here until it sets the response head or ends:
        // most modules do both in one go, and a task of their own would cost
        // a spawn and a wake-up per request. Dropping this future (the client
        // went away first) drops the guest with it. The head is only ever
        // sent while the guest runs, so the receiver is looked at, never
        // polled: a waker left there would be woken by this very poll, and
        // tokio answers a task that wakes itself by queueing it again and
        // waking another worker.
        let mut receiver = receiver;
        let (head, ended) = std::future::poll_fn(|cx| {
            let polled = guest.as_mut().poll(cx);
            match (receiver.try_recv(), polled) {
                (Ok(head), polled) => Poll::Ready((Some(head), finished(polled))),
                (Err(_), Poll::Ready(ended)) => Poll::Ready((None, Some(ended))),
                // The slot was dropped unset while the guest runs on.
                (Err(oneshot::error::TryRecvError::Closed), Poll::Pending) => Poll::Ready((None, None)),
                (Err(oneshot::error::TryRecvError::Empty), Poll::Pending) => Poll::Pending,
            }
        })
        .await;
        match head {
            Some(Ok(response)) => {
                if ended.is_none() {
                    // It streams the body from here on, in a task of its own.
                    tokio::spawn(guest);
                }
                Ok(Answered::Now(limit_body(response, max_response_bytes, module.name.clone())))
            }
            Some(Err(code)) => Err(WasmError::ErrorResponse { module: module.name.clone(), code: format!("{code:?}") }),
            // The response slot was dropped unset: parked, or find out why.
            None => {
                let ended = match ended {
                    Some(ended) => ended,
                    None => guest.await,
                };
                why_no_response(ended, &module.name).map(Answered::Parked)
            }
        }
    }
}

/// The guest's run, boxed so that it can move to a task of its own once
/// the response head is out.
type GuestTask = Pin<Box<dyn Future<Output = std::thread::Result<GuestOutcome>> + Send>>;

/// The value of a finished poll.
fn finished<T>(polled: Poll<T>) -> Option<T> {
    match polled {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Why a guest ended without setting a response, from how it ended: it
/// parked the request, or it failed.
fn why_no_response(
    ended: std::thread::Result<GuestOutcome>,
    module: &Arc<str>,
) -> Result<super::link_registry::Parked, WasmError> {
    let timed_out = |limit| WasmError::Timeout { module: module.clone(), limit };
    Err(match ended {
        Ok(Ok(Ok(Some(parked)))) => return Ok(parked),
        Ok(Ok(Ok(None))) => WasmError::NoResponse { module: module.clone() },
        Ok(Ok(Err(cause))) if cause.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => timed_out("CPU time"),
        Ok(Ok(Err(cause))) => WasmError::Failed { module: module.clone(), cause },
        Ok(Err(_elapsed)) => timed_out("wall-clock time"),
        Err(_panic) => {
            WasmError::Failed { module: module.clone(), cause: wasmtime::Error::msg("the guest's host code panicked") }
        }
    })
}

/// How a guest task ended: past its wall-clock time, or with the call's
/// result (and the request, if it parked it).
type GuestOutcome = Result<wasmtime::Result<Option<super::link_registry::Parked>>, tokio::time::error::Elapsed>;

/// Caps the bytes a module's response body may carry; past the cap the
/// body fails, which aborts the response rather than sending it whole.
fn limit_body(response: hyper::Response<ModuleBody>, limit: u64, module: Arc<str>) -> hyper::Response<ModuleBody> {
    use http_body_util::BodyExt;
    response.map(|inner| {
        let warn = move || {
            tracing::warn!(%module, "response body passed http_module_max_response_size ({limit} bytes); aborted");
        };
        CappedBody::new(
            inner,
            limit,
            |limit| wasmtime_wasi_http::Error::HttpResponseBodySize(Some(limit)),
            Box::new(warn),
        )
        .boxed_unsync()
    })
}

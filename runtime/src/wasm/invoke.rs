//! Serving one request with a module: a fresh store (fresh sandbox) per
//! request, bounded memory, an epoch deadline, and every way a guest can
//! fail turned into a [`WasmError`] rather than a panic.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::host_state::{InstanceState, MountIdentity, RequestFacts};
use super::module::LoadedModule;
use super::{WasmError, engine};

/// A module's response body, streamed as the guest writes it.
pub type ModuleBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Everything one call of a module needs besides the request itself.
pub struct Invocation {
    pub module: Arc<LoadedModule>,
    pub mount: Arc<MountIdentity>,
    pub facts: RequestFacts,
    pub memory_bytes: u64,
    /// CPU budget, counted in epoch ticks while the guest runs.
    pub timeout: Duration,
    /// Held until the guest finishes (including streaming its body), so the
    /// instance pool is never oversubscribed.
    pub permit: OwnedSemaphorePermit,
}

impl Invocation {
    pub async fn run<B>(self, request: hyper::Request<B>) -> Result<hyper::Response<ModuleBody>, WasmError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Invocation { module, mount, facts, memory_bytes, timeout, permit } = self;
        let name = module.name.clone();
        let failed = |cause: wasmtime::Error| WasmError::Failed { module: name.clone(), cause };

        let scheme = if facts.secure { Scheme::Https } else { Scheme::Http };
        let mut store = Store::new(module.proxy.engine(), InstanceState::new(mount, Some(facts), memory_bytes));
        store.limiter(|state| &mut state.limits);
        let budget = engine::ticks(timeout);
        let mut used = 0;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            used += 1;
            if used >= budget {
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield through tokio's queue so a busy guest shares the worker.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(scheme, request).map_err(failed)?;
        let outparam = store.data_mut().http().new_response_outparam(sender).map_err(failed)?;

        // The guest keeps running after it sets the response head, to stream
        // the body, so it lives in its own task.
        let proxy_pre = module.proxy.clone();
        let guest = tokio::spawn(async move {
            let _permit = permit;
            let proxy = proxy_pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(WasmError::ErrorResponse { module: module.name.clone(), code: format!("{code:?}") }),
            // The response slot was dropped unset: find out why.
            Err(_) => match guest.await {
                Ok(Ok(())) => Err(WasmError::NoResponse { module: module.name.clone() }),
                Ok(Err(cause)) => Err(failed(cause)),
                Err(join) => Err(failed(wasmtime::Error::msg(format!("guest task failed: {join}")))),
            },
        }
    }
}

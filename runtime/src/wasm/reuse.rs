//! Instances kept between requests, for modules the operator lets reuse
//! them (`http_module_instance_reuse`). Creating and resetting an instance
//! costs several times what a small module spends answering, so a reused
//! instance serves requests one after another, up to its limit.
//!
//! What stays true with reuse: one request at a time per instance; an
//! instance that trapped, timed out or was cut off is dropped, never reused;
//! each request gets its own CPU budget and request facts. What changes: the
//! module's memory (its globals) carries over between requests of the same
//! mount, as a Prosody module's state does.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::host_state::InstanceState;

/// An idle instance older than this is dropped, returning its memory.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A module instance between requests, ready to serve another.
pub(super) struct ReadyInstance {
    pub store: Store<InstanceState>,
    pub proxy: Proxy,
    /// Requests it has served.
    pub served: u32,
}

struct Idle {
    instance: ReadyInstance,
    since: Instant,
    /// Its place in the server-wide idle budget.
    _slot: OwnedSemaphorePermit,
}

/// The idle instances of one mount (one module on one host: instances
/// carry the mount's options and grants, so mounts do not share them).
pub struct IdleInstances {
    max_requests: u32,
    idle: Mutex<Vec<Idle>>,
    /// Server-wide bound on idle instances (their pool slots are held back
    /// from running requests).
    budget: Arc<Semaphore>,
}

impl IdleInstances {
    /// `None` when each instance serves one request (no reuse).
    pub fn new(max_requests: u32, budget: &Arc<Semaphore>) -> Option<Arc<Self>> {
        if max_requests <= 1 {
            return None;
        }
        let instances = Arc::new(Self { max_requests, idle: Mutex::new(Vec::new()), budget: Arc::clone(budget) });
        sweep_expired(Arc::downgrade(&instances));
        Some(instances)
    }

    /// Requests one instance serves before it is retired.
    pub fn max_requests(&self) -> u32 {
        self.max_requests
    }

    /// The most recently used idle instance, if any.
    pub(super) fn take(&self) -> Option<ReadyInstance> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.pop().map(|entry| entry.instance)
    }

    /// Keeps an instance that served a request cleanly, unless it reached
    /// its request limit or the idle budget is spent.
    pub(super) fn put_back(&self, instance: ReadyInstance) {
        if instance.served >= self.max_requests {
            return;
        }
        let Ok(slot) = Arc::clone(&self.budget).try_acquire_owned() else { return };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push(Idle { instance, since: Instant::now(), _slot: slot });
    }

    fn drop_expired(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let (old, fresh) = std::mem::take(&mut *idle).into_iter().partition(|e| e.since.elapsed() >= IDLE_TIMEOUT);
            *idle = fresh;
            old
        };
        drop(expired); // outside the lock: dropping a store resets its memory
    }
}

/// Drops instances idle past [`IDLE_TIMEOUT`] until the mount is gone.
fn sweep_expired(instances: Weak<IdleInstances>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let mut every = tokio::time::interval(IDLE_TIMEOUT / 2);
        loop {
            every.tick().await;
            let Some(instances) = instances.upgrade() else { return };
            instances.drop_expired();
        }
    });
}

//! `wasi:keyvalue` (0.2.0-draft2) for modules: `store.open` hands out
//! only the stores the module was granted (`http_module_grants[app].stores`),
//! each within its host's namespace; every call goes to [`crate::kv`].

use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView as _;

use super::bindings::keyvalue::wasi::keyvalue::{atomics, batch, store};
use super::host_state::InstanceState;
use crate::kv::{Namespace, Store, StoreError};

/// An opened store (`store.bucket`) as one mount sees it.
#[derive(Clone, Debug)]
pub struct Bucket {
    store: Arc<Store>,
    namespace: Namespace,
}

impl Bucket {
    pub fn new(store: Arc<Store>, host: &str) -> Self {
        let namespace = store.namespace(host);
        Self { store, namespace }
    }
}

/// Compare-and-swaps one instance may hold open: each keeps a value (up to
/// the store's `max_value_size`) in the server's memory, not the module's.
const MAX_OPEN_SWAPS: usize = 64;

/// A compare-and-swap in progress (`atomics.cas`): the value read when it
/// began, which the swap expects to find still there.
pub struct Cas {
    bucket: Bucket,
    key: String,
    current: Option<Vec<u8>>,
}

/// What the module is told: never the backend's address or the details,
/// which go to the log.
fn to_guest(store: &str, error: StoreError) -> store::Error {
    match error {
        StoreError::Limit(message) | StoreError::NotANumber(message) => store::Error::Other(message),
        StoreError::Timeout(_) => store::Error::Other(format!("store {store}: timed out")),
        StoreError::Unavailable(_) | StoreError::Backend(_) => {
            store::Error::Other(format!("store {store}: unavailable"))
        }
    }
}

impl InstanceState {
    fn bucket(&mut self, bucket: &Resource<Bucket>) -> wasmtime::Result<Bucket> {
        Ok(self.http().table.get(bucket)?.clone())
    }
}

/// Runs a store call and turns its error into the guest's.
async fn guest<T>(
    bucket: &Bucket,
    call: impl Future<Output = Result<T, StoreError>>,
) -> wasmtime::Result<Result<T, store::Error>> {
    Ok(call.await.map_err(|error| to_guest(&bucket.store.name, error)))
}

impl store::Host for InstanceState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let Some(bucket) = self.mount.stores.get(&identifier).cloned() else {
            if self.mount.store_refusal_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return Ok(Err(store::Error::AccessDenied));
            }
            tracing::warn!(
                module = %self.mount.module,
                host = %self.mount.host,
                "opening store '{identifier}' refused: not in http_module_grants.{}.stores (logged once per mount)",
                crate::config::app_name(&self.mount.module)
            );
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(Ok(self.http().table.push(bucket)?))
    }
}

impl store::HostBucket for InstanceState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.get(&b.namespace, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.set(&b.namespace, &key, value)).await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.delete(&b.namespace, &key)).await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.exists(&b.namespace, &key)).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let b = self.bucket(&bucket)?;
        let page = guest(&b, b.store.list_keys(&b.namespace, cursor)).await?;
        Ok(page.map(|(keys, cursor)| store::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.http().table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.increment(&b.namespace, &key, delta)).await
    }

    /// Consumes the `cas`; if the value changed since it was read, the
    /// module gets a new `cas` holding the value now, to try again with.
    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { bucket: b, key, current } = self.http().table.delete(cas)?;
        self.open_swaps = self.open_swaps.saturating_sub(1);
        let swapped = b.store.compare_and_swap(&b.namespace, &key, current, value).await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => match b.store.get(&b.namespace, &key).await {
                Ok(current) => {
                    let retry = self.http().table.push(Cas { bucket: b, key, current })?;
                    self.open_swaps += 1;
                    Ok(Err(atomics::CasError::CasFailed(retry)))
                }
                Err(error) => Ok(Err(atomics::CasError::StoreError(to_guest(&b.store.name, error)))),
            },
            Err(error) => Ok(Err(atomics::CasError::StoreError(to_guest(&b.store.name, error)))),
        }
    }
}

impl atomics::HostCas for InstanceState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let b = self.bucket(&bucket)?;
        if self.open_swaps >= MAX_OPEN_SWAPS {
            return Ok(Err(store::Error::Other(format!(
                "{MAX_OPEN_SWAPS} compare-and-swaps open at once: drop or swap one first"
            ))));
        }
        let current = match b.store.get(&b.namespace, &key).await {
            Ok(current) => current,
            Err(error) => return Ok(Err(to_guest(&b.store.name, error))),
        };
        let cas = self.http().table.push(Cas { bucket: b, key, current })?;
        self.open_swaps += 1;
        Ok(Ok(cas))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.http().table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.http().table.delete(cas)?;
        self.open_swaps = self.open_swaps.saturating_sub(1);
        Ok(())
    }
}

impl batch::Host for InstanceState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let b = self.bucket(&bucket)?;
        let values = guest(&b, b.store.get_many(&b.namespace, keys.clone())).await?;
        Ok(values.map(|values| keys.into_iter().zip(values).map(|(key, value)| value.map(|v| (key, v))).collect()))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.set_many(&b.namespace, pairs)).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let b = self.bucket(&bucket)?;
        guest(&b, b.store.delete_many(&b.namespace, keys)).await
    }
}

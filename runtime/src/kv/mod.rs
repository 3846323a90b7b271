//! Key-value stores (`http_stores`) that modules reach through
//! `wasi:keyvalue`: the backends (embedded SQLite, Redis), each call
//! bounded by the store's timeout and size limits and counted in the
//! metrics, and the registry that keeps stores open across reloads.
//!
//! A backend lives outside the sandbox and may be slow or gone: every call
//! is asynchronous and gives up after the store's timeout, so a dead Redis
//! costs a module an error (it decides what to answer) and nothing else.

mod redis_store;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, StoreBackend, StoreConfig};
use crate::metrics::Metrics;

/// Keys in one `list-keys` page, and at most this many in one batch call.
pub const MAX_KEYS_PER_CALL: usize = 1000;
/// Bytes of values one `get-many` may bring back into the server.
pub const MAX_BYTES_PER_BATCH: usize = 16 << 20;

/// A `get-many` whose values add up to more than [`MAX_BYTES_PER_BATCH`]
/// is refused rather than copied into the module.
fn within_batch_budget(sizes: impl Iterator<Item = usize>) -> Result<(), StoreError> {
    let total: usize = sizes.sum();
    if total > MAX_BYTES_PER_BATCH {
        return Err(StoreError::Limit(format!(
            "{total} bytes of values in one get-many (at most {MAX_BYTES_PER_BATCH}): ask for fewer keys"
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A key, value or batch over the store's limits.
    #[error("{0}")]
    Limit(String),
    /// An increment of a value that is not a whole number, or one that
    /// would overflow.
    #[error("{0}")]
    NotANumber(String),
    #[error("{0}")]
    Backend(String),
}

impl StoreError {
    /// The `reason` label of `canto_store_errors_total`.
    fn reason(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Limit(_) => "limit",
            StoreError::NotANumber(_) => "not_a_number",
            StoreError::Backend(_) => "backend",
        }
    }

    /// Whether the module caused it (so the log stays quiet about it).
    fn is_usage(&self) -> bool {
        matches!(self, StoreError::Limit(_) | StoreError::NotANumber(_))
    }
}

/// Where one module's keys live in a store: `store:host:` with
/// `per_host` (the default), `store::` when hosts share it.
pub type Namespace = Arc<str>;

/// A key or value of `size` bytes against the store's `limit` on them.
fn within(what: &str, size: usize, option: &str, limit: usize) -> Result<(), StoreError> {
    if size > limit {
        return Err(StoreError::Limit(format!("{what} of {size} bytes is over the store's {option} ({limit})")));
    }
    Ok(())
}

fn namespace(store: &str, host: Option<&str>) -> Namespace {
    let Some(host) = host else { return format!("{store}::").into() };
    let host = host.to_ascii_lowercase().replace('%', "%25").replace(':', "%3A");
    format!("{store}:{host}:").into()
}

/// A counter's value as both backends keep it: decimal text, which Redis'
/// INCRBY requires.
fn parse_counter(key: &str, value: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| StoreError::NotANumber(format!("the value of '{key}' is not a whole number")))
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Redis(redis_store::RedisStore),
    /// A store that could not be opened: every call fails, the server runs.
    Broken(String),
}

/// One open store.
pub struct Store {
    pub name: Arc<str>,
    pub config: StoreConfig,
    backend: Backend,
    metrics: Arc<Metrics>,
    opened: Instant,
    /// The second (since `opened`, plus one) of the last failure logged.
    last_warned: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).field("backend", &self.config.backend).finish()
    }
}

/// Runs `$call` on whichever backend the store has.
macro_rules! on_backend {
    ($store:expr, $backend:ident => $call:expr) => {
        match &$store.backend {
            Backend::Sqlite($backend) => $call.await,
            Backend::Redis($backend) => $call.await,
            Backend::Broken(why) => Err(StoreError::Unavailable(why.clone())),
        }
    };
}

impl Store {
    /// Opens the store. SQLite files (and their directory) are created;
    /// Redis connects on first use, so canto starts while Redis is down.
    pub fn open(name: &str, config: &StoreConfig, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let backend = match &config.backend {
            StoreBackend::Sqlite { path } => Backend::Sqlite(sqlite::SqliteStore::open(path, config.timeout)?),
            StoreBackend::Redis { url, prefix } => {
                Backend::Redis(redis_store::RedisStore::open(url, prefix, config.timeout)?)
            }
        };
        Ok(Self::with(name, config, backend, metrics))
    }

    /// Opens the store, or keeps why it could not be opened for every call
    /// to report.
    pub fn open_or_broken(name: &str, config: &StoreConfig, metrics: Arc<Metrics>) -> Self {
        Self::open(name, config, Arc::clone(&metrics)).unwrap_or_else(|error| {
            tracing::error!(store = name, "cannot open store ({}): {error}", config.backend.describe());
            Self::with(name, config, Backend::Broken(error.to_string()), metrics)
        })
    }

    fn with(name: &str, config: &StoreConfig, backend: Backend, metrics: Arc<Metrics>) -> Self {
        let (opened, last_warned) = (Instant::now(), Default::default());
        Self { name: name.into(), config: config.clone(), backend, metrics, opened, last_warned }
    }

    /// The key prefix a module on `host` gets: `store:host:`, or `store::`
    /// when hosts share it. The host is lowercased, and a `:` or `%` in it
    /// percent-encoded, so no host's prefix can begin another's.
    pub fn namespace(&self, host: &str) -> Namespace {
        namespace(&self.name, self.config.per_host.then_some(host))
    }

    /// One round trip, for `canto check config`.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.call("check", async { on_backend!(self, b => b.exists("canto-check::", "ping")).map(drop) }).await
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.config.timeout)),
        };
        let failure = result.as_ref().err();
        self.metrics.store_call(&self.name, operation, failure.map(StoreError::reason), started.elapsed());
        if let Some(error) = failure
            && !error.is_usage()
        {
            self.warn_now_and_then(operation, error);
        }
        result
    }

    /// One line per second at most: a store that is down fails every call,
    /// and the log should say so, not drown in it (the metrics count all).
    fn warn_now_and_then(&self, operation: &str, error: &StoreError) {
        let now = self.opened.elapsed().as_secs() + 1;
        let last = self.last_warned.swap(now, std::sync::atomic::Ordering::Relaxed);
        if last != now {
            tracing::warn!(store = %self.name, operation, "store call failed: {error}");
        }
    }

    fn check_key(&self, key: &str) -> Result<(), StoreError> {
        within("key", key.len(), "max_key_size", self.config.max_key_size)
    }

    fn check_value(&self, value: &[u8]) -> Result<(), StoreError> {
        within("value", value.len(), "max_value_size", self.config.max_value_size)
    }

    fn check_batch<'k>(&self, keys: impl ExactSizeIterator<Item = &'k str>) -> Result<(), StoreError> {
        if keys.len() > MAX_KEYS_PER_CALL {
            return Err(StoreError::Limit(format!("{} keys in one call (at most {MAX_KEYS_PER_CALL})", keys.len())));
        }
        keys.into_iter().try_for_each(|key| self.check_key(key))
    }

    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_key(key)?;
        self.call("get", async { on_backend!(self, b => b.get(ns, key)) }).await
    }

    pub async fn set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.check_key(key)?;
        self.check_value(&value)?;
        self.call("set", async { on_backend!(self, b => b.set(ns, key, value)) }).await
    }

    pub async fn delete(&self, ns: &str, key: &str) -> Result<(), StoreError> {
        self.check_key(key)?;
        self.call("delete", async { on_backend!(self, b => b.delete(ns, key)) }).await
    }

    pub async fn exists(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        self.check_key(key)?;
        self.call("exists", async { on_backend!(self, b => b.exists(ns, key)) }).await
    }

    /// A page of keys and where the next one starts (`None`: the last).
    pub async fn list_keys(
        &self,
        ns: &str,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.call("list_keys", async { on_backend!(self, b => b.list_keys(ns, cursor)) }).await
    }

    /// Adds `delta` to the counter at `key` (absent counts as 0) and
    /// returns the new value, atomically across every node.
    pub async fn increment(&self, ns: &str, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.check_key(key)?;
        self.call("increment", async { on_backend!(self, b => b.increment(ns, key, delta)) }).await
    }

    /// Sets `key` to `value` if it still holds `expected` (`None`: absent);
    /// whether it did.
    pub async fn compare_and_swap(
        &self,
        ns: &str,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.check_key(key)?;
        self.check_value(&value)?;
        self.call("swap", async { on_backend!(self, b => b.compare_and_swap(ns, key, expected, value)) }).await
    }

    pub async fn get_many(&self, ns: &str, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.check_batch(keys.iter().map(String::as_str))?;
        self.call("get_many", async { on_backend!(self, b => b.get_many(ns, &keys)) }).await
    }

    pub async fn set_many(&self, ns: &str, pairs: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.check_batch(pairs.iter().map(|(key, _)| key.as_str()))?;
        pairs.iter().try_for_each(|(_, value)| self.check_value(value))?;
        self.call("set_many", async { on_backend!(self, b => b.set_many(ns, pairs)) }).await
    }

    pub async fn delete_many(&self, ns: &str, keys: Vec<String>) -> Result<(), StoreError> {
        self.check_batch(keys.iter().map(String::as_str))?;
        self.call("delete_many", async { on_backend!(self, b => b.delete_many(ns, &keys)) }).await
    }
}

/// The open stores, by name. It outlives reloads: a store whose config is
/// unchanged keeps its connection (and its SQLite thread).
#[derive(Default)]
pub struct StoreRegistry {
    open: Mutex<BTreeMap<String, Arc<Store>>>,
}

impl StoreRegistry {
    /// Opens the stores some module is granted; keeps those already open
    /// with the same config, drops the rest.
    pub fn configure(&self, config: &Config, metrics: &Arc<Metrics>) {
        let granted: std::collections::BTreeSet<&String> =
            config.grants.values().flat_map(|g| g.stores.iter()).collect();
        let Ok(mut open) = self.open.lock() else { return };
        let mut next = BTreeMap::new();
        for name in granted {
            let Some(store_config) = config.stores.get(name) else { continue };
            let store = match open.remove(name) {
                Some(store) if store.config.same_store(store_config) => store,
                _ => {
                    let store = Store::open_or_broken(name, store_config, Arc::clone(metrics));
                    tracing::info!(store = %name, "store opened: {}", store_config.backend.describe());
                    Arc::new(store)
                }
            };
            next.insert(name.clone(), store);
        }
        *open = next;
    }

    pub fn get(&self, name: &str) -> Option<Arc<Store>> {
        self.open.lock().ok()?.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hosts_namespace_begins_anothers() {
        assert_eq!(&*namespace("kv", Some("Example.COM")), "kv:example.com:");
        assert_eq!(&*namespace("kv", None), "kv::");
        // Host "a:b" with key "x" must not meet host "a" with key "b:x".
        let odd = namespace("kv", Some("a:b"));
        assert_eq!(&*odd, "kv:a%3Ab:");
        assert!(!format!("{odd}x").starts_with(&*namespace("kv", Some("a"))));
        assert_ne!(namespace("kv", Some("a%3Ab")), odd);
    }

    #[test]
    fn counters_are_whole_decimal_numbers() {
        assert_eq!(parse_counter("k", b"-42").ok(), Some(-42));
        assert!(matches!(parse_counter("k", b"4.2"), Err(StoreError::NotANumber(_))));
        assert!(matches!(parse_counter("k", b"\xff"), Err(StoreError::NotANumber(_))));
        assert!(within_batch_budget([MAX_BYTES_PER_BATCH].into_iter()).is_ok());
        assert!(matches!(within_batch_budget([MAX_BYTES_PER_BATCH, 1].into_iter()), Err(StoreError::Limit(_))));
    }
}

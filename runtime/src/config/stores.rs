//! Key-value stores modules may be granted (`http_stores`): which backend
//! each is, where it lives, how long a call may take and how large keys
//! and values may be. `default` always exists: embedded SQLite under
//! `data_path`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::typed::{self, boolean, non_negative, string};
use super::{ConfigError, Location, Spanned, Value};

const OPTION: &str = "http_stores";

/// The store every config has, unless `http_stores` redefines it.
pub const DEFAULT_STORE: &str = "default";
/// Its file, under `data_path`.
pub const DEFAULT_SQLITE_FILE: &str = "http_stores.sqlite";

/// One entry of `http_stores`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// Each VirtualHost sees its own keys (as Prosody's per-host storage);
    /// `per_host = false` shares them between hosts.
    pub per_host: bool,
    /// How long one call may take before the module gets an error.
    pub timeout: Duration,
    pub max_key_size: usize,
    pub max_value_size: usize,
    /// Where it was declared (the config file for the implicit default).
    pub at: Option<Location>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// A SQLite file (WAL, so several canto processes may share it).
    Sqlite { path: PathBuf },
    /// A Redis server, e.g. `redis://127.0.0.1:6379/0`; keys are put under
    /// `prefix`.
    Redis { url: String, prefix: String },
}

impl StoreBackend {
    /// For logs and `canto check config`: never a password.
    pub fn describe(&self) -> String {
        match self {
            StoreBackend::Sqlite { path } => format!("sqlite {}", path.display()),
            StoreBackend::Redis { url, .. } => format!("redis {}", redacted_url(url)),
        }
    }
}

/// `redis://user:secret@host/0` → `redis://user:***@host/0`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{user}:***@{host}")
        }
        None => authority.to_string(),
    };
    // redis+unix:///run/redis.sock?db=0&pass=secret
    let path = path.map(|path| match path.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| if pair.starts_with("pass=") { "pass=***".to_string() } else { pair.to_string() })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => path.to_string(),
    });
    match path {
        Some(path) => format!("{scheme}://{authority}/{path}"),
        None => format!("{scheme}://{authority}"),
    }
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_KEY_SIZE: usize = 1024;
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1024 * 1024;

impl StoreConfig {
    /// The same store, wherever in the config it is written.
    pub fn same_store(&self, other: &StoreConfig) -> bool {
        Self { at: None, ..self.clone() } == Self { at: None, ..other.clone() }
    }

    fn new(backend: StoreBackend, at: Option<Location>) -> Self {
        Self {
            backend,
            per_host: true,
            timeout: DEFAULT_TIMEOUT,
            max_key_size: DEFAULT_MAX_KEY_SIZE,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            at,
        }
    }
}

/// `http_stores = { counters = { backend = "sqlite"; path = "counters.sqlite" };
/// shared = { backend = "redis"; url = "redis://127.0.0.1:6379/0" } }`.
/// Relative SQLite paths are under `data_path`.
pub(super) fn stores(value: Option<&Spanned>, data_path: &Path) -> Result<BTreeMap<String, StoreConfig>, ConfigError> {
    let mut all = BTreeMap::new();
    all.insert(
        DEFAULT_STORE.to_string(),
        StoreConfig::new(StoreBackend::Sqlite { path: data_path.join(DEFAULT_SQLITE_FILE) }, None),
    );
    let Some(value) = value else { return Ok(all) };
    let Value::Table(table) = &value.value else { return Err(typed::expected(value, OPTION, "a table")) };
    if !table.array.is_empty() {
        return Err(typed::expected(value, OPTION, "a table of named stores (name = { backend = ... })"));
    }
    for (name, entry) in &table.map {
        let name = name.to_string();
        let option = format!("{OPTION}.{name}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(ConfigError::Invalid {
                at: entry.at.clone(),
                message: format!("{option}: a store name is letters, digits, '_' and '-'"),
            });
        }
        let config = store(entry, &name, &option, data_path)?;
        all.insert(name, config);
    }
    Ok(all)
}

fn store(entry: &Spanned, name: &str, option: &str, data_path: &Path) -> Result<StoreConfig, ConfigError> {
    let Value::Table(fields) = &entry.value else { return Err(typed::expected(entry, option, "a table")) };
    let field = |key: &str| fields.map.iter().find(|(k, _)| k.to_string() == key).map(|(_, v)| v);
    let invalid = |at: &Location, message: String| ConfigError::Invalid { at: at.clone(), message };
    for (key, value) in &fields.map {
        let key = key.to_string();
        if !["backend", "path", "url", "prefix", "per_host", "timeout", "max_key_size", "max_value_size"]
            .contains(&key.as_str())
        {
            return Err(invalid(
                &value.at,
                format!(
                    "{option}: unknown field '{key}' (expected backend, path, url, prefix, per_host, timeout, max_key_size or max_value_size)"
                ),
            ));
        }
    }
    let Some(backend_value) = field("backend") else {
        return Err(invalid(&entry.at, format!("{option}: missing backend (\"sqlite\" or \"redis\")")));
    };
    let backend = match string(backend_value, &format!("{option}.backend"))?.as_str() {
        "sqlite" => {
            if let Some(url) = field("url") {
                return Err(invalid(&url.at, format!("{option}: url is for redis stores; sqlite takes path")));
            }
            let path = match field("path") {
                Some(path) => data_path.join(string(path, &format!("{option}.path"))?),
                None => data_path.join(format!("{name}.sqlite")),
            };
            StoreBackend::Sqlite { path }
        }
        "redis" => {
            if let Some(path) = field("path") {
                return Err(invalid(&path.at, format!("{option}: path is for sqlite stores; redis takes url")));
            }
            let Some(url_value) = field("url") else {
                return Err(invalid(&entry.at, format!("{option}: missing url (e.g. \"redis://127.0.0.1:6379/0\")")));
            };
            let url = string(url_value, &format!("{option}.url"))?;
            if !url.starts_with("redis://") && !url.starts_with("redis+unix://") && !url.starts_with("unix://") {
                return Err(invalid(
                    &url_value.at,
                    format!("{option}.url: expected a redis:// or unix:// URL (rediss:// is not supported)"),
                ));
            }
            if let Err(error) = redis::Client::open(url.as_str()) {
                return Err(invalid(&url_value.at, format!("{option}.url: not a Redis URL ({error})")));
            }
            let prefix = match field("prefix") {
                Some(prefix) => string(prefix, &format!("{option}.prefix"))?,
                None => "canto:".to_string(),
            };
            StoreBackend::Redis { url, prefix }
        }
        other => {
            return Err(invalid(
                &backend_value.at,
                format!("{option}.backend: unknown backend '{other}' (expected \"sqlite\" or \"redis\")"),
            ));
        }
    };
    let mut config = StoreConfig::new(backend, Some(entry.at.clone()));
    if let StoreBackend::Sqlite { .. } = config.backend
        && let Some(prefix) = field("prefix")
    {
        return Err(invalid(&prefix.at, format!("{option}: prefix is for redis stores")));
    }
    config.per_host = boolean(field("per_host"), &format!("{option}.per_host"))?.unwrap_or(true);
    if let Some(timeout) = field("timeout") {
        let seconds = match timeout.value {
            Value::Integer(n) if n > 0 => n as f64,
            Value::Float(f) if f > 0.0 && f.is_finite() => f,
            _ => return Err(typed::expected(timeout, &format!("{option}.timeout"), "a positive number of seconds")),
        };
        config.timeout = Duration::from_secs_f64(seconds.clamp(0.001, 3600.0));
    }
    for (key, slot) in [("max_key_size", &mut config.max_key_size), ("max_value_size", &mut config.max_value_size)] {
        if let Some(value) = field(key) {
            let size = non_negative(value, &format!("{option}.{key}"))?;
            *slot = usize::try_from(size).unwrap_or(usize::MAX).max(1);
        }
    }
    Ok(config)
}

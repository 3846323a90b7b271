//! Limits the config sets on module instances (`http_module_*`) and on
//! client connections (`http_max_connections`, timeouts, the request head
//! and body bounds), with their defaults.

use std::collections::BTreeMap;

use super::typed::{self, positive_integer};
use super::{ConfigError, Options, Spanned, Value};

/// Default per-instance memory cap for a module.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// Default wall-clock budget for one request inside a module.
pub const DEFAULT_MODULE_TIMEOUT_SECS: u64 = 30;
/// Default number of module instances alive at once, server-wide.
pub const DEFAULT_POOL_SIZE: u32 = 1000;
/// Default wall-clock budget for one request, streaming included.
pub const DEFAULT_WALL_TIMEOUT_SECS: u64 = 300;
/// Default bound on one module's simultaneous requests.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// Default bound on a module's response header block.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Default bound on a module's response body: 4 GiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 << 30;
/// Default time a request may wait for a module slot.
pub const DEFAULT_QUEUE_TIMEOUT_SECS: u64 = 30;
/// Default time a new connection may stay silent.
pub const DEFAULT_FIRST_BYTE_TIMEOUT_SECS: u64 = 10;
/// Default time a connection with nothing in flight may stay silent.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Default bound on a request head (request line and headers): 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES_IN: u32 = 64 * 1024;
/// Default minimum rate of a body waiting on its client, bytes per second
/// (as Apache's mod_reqtimeout `MinRate`).
pub const DEFAULT_BODY_MIN_RATE: u64 = 500;
/// Default window the minimum body rate is judged over.
pub const DEFAULT_BODY_MIN_RATE_WINDOW_SECS: u64 = 20;
/// Default bound on a WebSocket message: Prosody's, twice its 256 KiB
/// stanza size limit.
pub const DEFAULT_WEBSOCKET_MAX_MESSAGE: u64 = 512 * 1024;
/// Default bound on the frames one WebSocket message may arrive in
/// (Prosody's `websocket_frame_fragment_limit`).
pub const DEFAULT_WEBSOCKET_MAX_FRAGMENTS: u32 = 8;
/// Default bound on one module's open WebSockets on one host.
pub const DEFAULT_WEBSOCKET_MAX_CONNECTIONS: u64 = 10_000;
/// The smallest request head bound hyper accepts.
const MIN_HEADER_BYTES: u32 = 8192;

/// Bounds on client connections, so clients that send nothing, or never
/// finish, cannot take the server's file descriptors or memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once (`http_max_connections`); `None`: derived
    /// from the file descriptor limit at start.
    pub max_connections: Option<u32>,
    /// How long a new connection may stay silent (`http_first_byte_timeout`,
    /// seconds): until its first byte, or its TLS handshake's end.
    pub first_byte_timeout: std::time::Duration,
    /// How long a connection with no request in flight may stay silent
    /// (`http_idle_timeout`, seconds): HTTP/1.1 keep-alive, HTTP/2 with no
    /// streams.
    pub idle_timeout: std::time::Duration,
    /// Bytes a request head may take, request line included
    /// (`http_max_header_size`); more is answered 431.
    pub max_header_bytes: u32,
    /// The rate a client must keep up while a request or response body
    /// waits on it (`http_body_min_rate`, bytes per second, judged over
    /// `http_body_min_rate_window` seconds).
    pub body_min_rate: crate::body_pace::MinRate,
    /// Bytes one WebSocket message (or frame) may carry
    /// (`websocket_frame_buffer_limit`, as Prosody names it); a larger one
    /// closes the socket with 1009.
    pub websocket_max_message: usize,
    /// Frames one WebSocket message may arrive in
    /// (`websocket_frame_fragment_limit`); more close the socket with 1009.
    pub websocket_max_fragments: u32,
    /// WebSockets one module may have open on one host
    /// (`http_websocket_max_connections`); more are answered 503.
    pub websocket_max_connections: usize,
}

/// Bounds every module instance runs under.
#[derive(Clone, Debug)]
pub struct ModuleLimits {
    /// Linear memory one instance may grow to (`http_module_memory_limit`, bytes).
    pub memory_bytes: u64,
    /// CPU time one request may spend running guest code (`http_module_timeout`, seconds).
    pub timeout: std::time::Duration,
    /// Wall-clock time one request may take, body streaming included
    /// (`http_module_wall_timeout`, seconds).
    pub wall_timeout: std::time::Duration,
    /// Instances alive at once across all modules (`http_module_pool_size`).
    pub pool_size: u32,
    /// Requests one module may run at once (`http_module_max_concurrency`),
    /// so a hot module cannot take the whole pool.
    pub max_concurrency: u32,
    /// Bytes of response headers a module may produce (`http_module_max_header_size`).
    pub max_header_bytes: u64,
    /// Bytes of response body a module may send (`http_module_max_response_size`).
    pub max_response_bytes: u64,
    /// How many requests one instance may serve (`http_module_instance_reuse`).
    pub instance_reuse: InstanceReuse,
    /// How long a request may wait for a free slot in its module or the
    /// pool (`http_module_queue_timeout`, seconds) before it gets 503.
    pub queue_timeout: std::time::Duration,
}

/// `http_module_instance_reuse`: requests one instance of a module serves,
/// one after another, before it is retired. 1 (the default) is a fresh
/// instance per request. A number applies to every module; a table sets it
/// per app (`{ hello = 1000 }`), other apps keeping 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Set by a plain number: every app reuses this much.
    pub every_app: Option<u32>,
    /// Set by a table: app name (module name without `http_`) → requests.
    pub per_app: BTreeMap<String, u32>,
}

impl InstanceReuse {
    /// Requests per instance for `app` (the module name without `http_`).
    pub fn for_app(&self, app: &str) -> u32 {
        self.per_app.get(app).copied().or(self.every_app).unwrap_or(1)
    }

    /// Whether any module may keep instances between requests.
    pub fn any(&self) -> bool {
        self.every_app.is_some_and(|n| n > 1) || self.per_app.values().any(|&n| n > 1)
    }

    fn parse(value: &Spanned) -> Result<Self, ConfigError> {
        const OPTION: &str = "http_module_instance_reuse";
        match &value.value {
            Value::Table(table) => {
                if let Some(item) = table.array.first() {
                    return Err(ConfigError::Invalid {
                        at: item.at.clone(),
                        message: format!("{OPTION}: expected `app = requests` entries, like {{ hello = 1000 }}"),
                    });
                }
                let mut per_app = BTreeMap::new();
                for (app, entry) in &table.map {
                    per_app.insert(app.to_string(), typed::positive_u32(entry, &format!("{OPTION}.{app}"))?);
                }
                Ok(Self { every_app: None, per_app })
            }
            _ => Ok(Self { every_app: Some(typed::positive_u32(value, OPTION)?), per_app: BTreeMap::new() }),
        }
    }
}

pub(super) fn module_limits(global: &Options) -> Result<ModuleLimits, ConfigError> {
    Ok(ModuleLimits {
        memory_bytes: positive_integer(global.get("http_module_memory_limit"), "http_module_memory_limit")?
            .unwrap_or(DEFAULT_MEMORY_LIMIT),
        timeout: typed::seconds(global, "http_module_timeout", DEFAULT_MODULE_TIMEOUT_SECS)?,
        wall_timeout: typed::seconds(global, "http_module_wall_timeout", DEFAULT_WALL_TIMEOUT_SECS)?,
        pool_size: match global.get("http_module_pool_size") {
            Some(value) => typed::positive_u32(value, "http_module_pool_size")?,
            None => DEFAULT_POOL_SIZE,
        },
        max_concurrency: match global.get("http_module_max_concurrency") {
            Some(value) => typed::positive_u32(value, "http_module_max_concurrency")?,
            None => DEFAULT_MAX_CONCURRENCY,
        },
        max_header_bytes: positive_integer(global.get("http_module_max_header_size"), "http_module_max_header_size")?
            .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        max_response_bytes: positive_integer(
            global.get("http_module_max_response_size"),
            "http_module_max_response_size",
        )?
        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        instance_reuse: match global.get("http_module_instance_reuse") {
            Some(value) => InstanceReuse::parse(value)?,
            None => InstanceReuse::default(),
        },
        queue_timeout: typed::seconds(global, "http_module_queue_timeout", DEFAULT_QUEUE_TIMEOUT_SECS)?,
    })
}

pub(super) fn connection_limits(global: &Options) -> Result<ConnectionLimits, ConfigError> {
    Ok(ConnectionLimits {
        max_connections: match global.get("http_max_connections") {
            Some(value) => Some(typed::positive_u32(value, "http_max_connections")?),
            None => None,
        },
        first_byte_timeout: typed::seconds(global, "http_first_byte_timeout", DEFAULT_FIRST_BYTE_TIMEOUT_SECS)?,
        idle_timeout: typed::seconds(global, "http_idle_timeout", DEFAULT_IDLE_TIMEOUT_SECS)?,
        max_header_bytes: match global.get("http_max_header_size") {
            Some(value) => typed::positive_u32(value, "http_max_header_size")?.max(MIN_HEADER_BYTES),
            None => DEFAULT_MAX_HEADER_BYTES_IN,
        },
        body_min_rate: crate::body_pace::MinRate {
            bytes_per_second: match global.get("http_body_min_rate") {
                Some(value) => typed::non_negative(value, "http_body_min_rate")?,
                None => DEFAULT_BODY_MIN_RATE,
            },
            window: typed::seconds(global, "http_body_min_rate_window", DEFAULT_BODY_MIN_RATE_WINDOW_SECS)?,
        },
        websocket_max_message: positive_integer(
            global.get("websocket_frame_buffer_limit"),
            "websocket_frame_buffer_limit",
        )?
        .unwrap_or(DEFAULT_WEBSOCKET_MAX_MESSAGE) as usize,
        websocket_max_fragments: match global.get("websocket_frame_fragment_limit") {
            Some(value) => typed::positive_u32(value, "websocket_frame_fragment_limit")?,
            None => DEFAULT_WEBSOCKET_MAX_FRAGMENTS,
        },
        websocket_max_connections: positive_integer(
            global.get("http_websocket_max_connections"),
            "http_websocket_max_connections",
        )?
        .unwrap_or(DEFAULT_WEBSOCKET_MAX_CONNECTIONS) as usize,
    })
}

//! The server's own metrics, counted on the request path with atomics and
//! one short lock per request, and read whole by the module granted them
//! (`http_openmetrics`, through `canto:http/metrics`).
//!
//! Names follow OpenMetrics: a counter family `canto_http_requests` is
//! exposed as `canto_http_requests_total`; a family with a unit ends with it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the request-duration histogram buckets.
const DURATION_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Everything counted since the server started; survives reloads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// host → module → requests answered per status class (1xx … 5xx);
    /// nested so that counting one borrows the names instead of copying them.
    requests: Mutex<BTreeMap<String, BTreeMap<String, [u64; 5]>>>,
    /// One counter per bucket of [`DURATION_BUCKETS`], plus +Inf.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_nanos: AtomicU64,
    connections_open: AtomicI64,
    connections: AtomicU64,
    tls_ok: AtomicU64,
    tls_failed: AtomicU64,
    limit_reached: AtomicU64,
    closed_no_first_byte: AtomicU64,
    closed_idle: AtomicU64,
    slow_request_bodies: AtomicU64,
    websocket_messages_in: AtomicU64,
    websocket_messages_out: AtomicU64,
    slow_response_bodies: AtomicU64,
    modules: Mutex<BTreeMap<String, ModuleCounts>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    file_bytes_sendfile: AtomicU64,
    file_bytes_read: AtomicU64,
    stores: Mutex<BTreeMap<String, StoreCounts>>,
}

/// One key-value store's calls (`wasi:keyvalue`).
#[derive(Clone, Debug, Default)]
struct StoreCounts {
    /// operation → calls.
    operations: BTreeMap<&'static str, u64>,
    /// (operation, reason) → failed calls.
    errors: BTreeMap<(&'static str, &'static str), u64>,
    duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    duration_nanos: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct ModuleCounts {
    instantiations: u64,
    traps: u64,
    timeouts: u64,
    busy: u64,
    /// WebSockets open now (sessions, for the XMPP transport).
    websockets_open: u64,
    /// Whether it ever had one: only such modules get the gauge.
    serves_websockets: bool,
    links_open: u64,
    /// Whether it ever opened a link: only such modules get that gauge.
    opens_links: bool,
}

/// How one module run ended, as far as metrics care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleOutcome {
    Answered,
    Trapped,
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family as the openmetrics module renders it.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub samples: Vec<Sample>,
}

#[derive(Debug)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Counts an open connection until dropped.
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    pub fn request(&self, host: &str, module: &str, status: u16, took: Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        if let Ok(mut requests) = self.requests.lock() {
            if !requests.contains_key(host) {
                requests.insert(host.to_string(), BTreeMap::new());
            }
            if let Some(modules) = requests.get_mut(host) {
                if !modules.contains_key(module) {
                    modules.insert(module.to_string(), [0; 5]);
                }
                if let Some(counts) = modules.get_mut(module) {
                    counts[class] += 1;
                }
            }
        }
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Relaxed);
        self.duration_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// Accepting paused: `http_max_connections` connections are open.
    pub fn connection_limit_reached(&self) {
        self.limit_reached.fetch_add(1, Relaxed);
    }

    /// A connection closed for saying nothing: before its first byte, or
    /// with no request in flight.
    pub fn connection_closed_quiet(&self, before_first_byte: bool) {
        let counter = if before_first_byte { &self.closed_no_first_byte } else { &self.closed_idle };
        counter.fetch_add(1, Relaxed);
    }

    /// A body cut for waiting on a client slower than `http_body_min_rate`:
    /// an upload (`request`) or a download (`response`).
    pub fn body_too_slow(&self, request: bool) {
        let counter = if request { &self.slow_request_bodies } else { &self.slow_response_bodies };
        counter.fetch_add(1, Relaxed);
    }

    /// A WebSocket of `module` opened (`true`) or closed.
    pub fn websocket_opened(&self, module: &str, opened: bool) {
        if let Ok(mut modules) = self.modules.lock() {
            let counts = modules.entry(module.to_string()).or_default();
            counts.serves_websockets = true;
            let open = &mut counts.websockets_open;
            *open = if opened { *open + 1 } else { open.saturating_sub(1) };
        }
    }

    /// A module's link opened (`true`) or closed.
    pub fn link_opened(&self, module: &str, opened: bool) {
        if let Ok(mut modules) = self.modules.lock() {
            let counts = modules.entry(module.to_string()).or_default();
            counts.opens_links = true;
            let open = &mut counts.links_open;
            *open = if opened { *open + 1 } else { open.saturating_sub(1) };
        }
    }

    /// A WebSocket message received (`true`) or sent.
    pub fn websocket_message(&self, received: bool) {
        let counter = if received { &self.websocket_messages_in } else { &self.websocket_messages_out };
        counter.fetch_add(1, Relaxed);
    }

    pub fn tls_handshake(&self, succeeded: bool) {
        let counter = if succeeded { &self.tls_ok } else { &self.tls_failed };
        counter.fetch_add(1, Relaxed);
    }

    pub fn module_run(&self, module: &str, outcome: ModuleOutcome) {
        let Ok(mut modules) = self.modules.lock() else { return };
        let counts = modules.entry(module.to_string()).or_default();
        counts.instantiations += 1;
        match outcome {
            ModuleOutcome::Answered => {}
            ModuleOutcome::Trapped => counts.traps += 1,
            ModuleOutcome::TimedOut => counts.timeouts += 1,
        }
    }

    /// A request to `module` got 503: no slot came free in time.
    pub fn module_busy(&self, module: &str) {
        if let Ok(mut modules) = self.modules.lock() {
            modules.entry(module.to_string()).or_default().busy += 1;
        }
    }

    /// A call to a key-value store; `failure` names why it failed
    /// (timeout, unavailable, limit, not_a_number, backend).
    pub fn store_call(&self, store: &str, operation: &'static str, failure: Option<&'static str>, took: Duration) {
        let Ok(mut stores) = self.stores.lock() else { return };
        // The store's name is allocated once, not on every call.
        if !stores.contains_key(store) {
            stores.insert(store.to_string(), StoreCounts::default());
        }
        let Some(counts) = stores.get_mut(store) else { return };
        *counts.operations.entry(operation).or_default() += 1;
        if let Some(reason) = failure {
            *counts.errors.entry((operation, reason)).or_default() += 1;
        }
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound).unwrap_or(DURATION_BUCKETS.len());
        counts.duration_buckets[bucket] += 1;
        counts.duration_nanos += took.as_nanos() as u64;
    }

    /// File body bytes handed to the connection: placeholders `sendfile`
    /// sends from the page cache, or bytes read into memory.
    pub fn file_body_sent(&self, by_sendfile: bool, bytes: u64) {
        let counter = if by_sendfile { &self.file_bytes_sendfile } else { &self.file_bytes_read };
        counter.fetch_add(bytes, Relaxed);
    }

    pub fn reload(&self, succeeded: bool) {
        let counter = if succeeded { &self.reloads_ok } else { &self.reloads_failed };
        counter.fetch_add(1, Relaxed);
    }

    /// Every family, as it stands now. (One long table on purpose: each
    /// family is declared once, in the order it is exposed.)
    pub fn families(&self) -> Vec<Family> {
        let label = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let counter = |name, help, samples| Family { name, help, kind: Kind::Counter, unit: "", samples };
        let total =
            |labels: Vec<(String, String)>, value: u64| Sample { suffix: "_total", labels, value: value as f64 };

        let requests = self.requests.lock().map(|r| r.clone()).unwrap_or_default();
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let request_samples = requests
            .iter()
            .flat_map(|(host, modules)| modules.iter().map(move |(module, counts)| (host, module, counts)))
            .flat_map(|(host, module, counts)| {
                CLASSES.iter().zip(counts).filter(|(_, count)| **count > 0).map(move |(class, count)| {
                    total(label(&[("host", host), ("module", module), ("code", class)]), *count)
                })
            })
            .collect();

        let mut histogram = Vec::new();
        let mut cumulative = 0;
        for (index, bucket) in self.duration_buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let bound = DURATION_BUCKETS.get(index).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            histogram.push(Sample { suffix: "_bucket", labels: label(&[("le", &bound)]), value: cumulative as f64 });
        }
        histogram.push(Sample { suffix: "_count", labels: Vec::new(), value: cumulative as f64 });
        let sum = self.duration_nanos.load(Relaxed) as f64 / 1e9;
        histogram.push(Sample { suffix: "_sum", labels: Vec::new(), value: sum });

        let modules = self.modules.lock().map(|m| m.clone()).unwrap_or_default();
        let stores = self.stores.lock().map(|s| s.clone()).unwrap_or_default();
        let per_module = |value: fn(&ModuleCounts) -> u64| -> Vec<Sample> {
            modules.iter().map(|(module, counts)| total(label(&[("module", module)]), value(counts))).collect()
        };
        let gauge = |name, help, unit, value: f64| Family {
            name,
            help,
            kind: Kind::Gauge,
            unit,
            samples: vec![Sample { suffix: "", labels: Vec::new(), value }],
        };

        vec![
            counter(
                "canto_http_requests",
                "HTTP requests answered, by host, module and status class.",
                request_samples,
            ),
            Family {
                name: "canto_http_request_duration_seconds",
                help: "Time from request head to response head.",
                kind: Kind::Histogram,
                unit: "seconds",
                samples: histogram,
            },
            gauge(
                "canto_connections_open",
                "Client connections open now.",
                "",
                self.connections_open.load(Relaxed) as f64,
            ),
            counter(
                "canto_connections",
                "Client connections accepted.",
                vec![total(Vec::new(), self.connections.load(Relaxed))],
            ),
            counter(
                "canto_connection_limit_reached",
                "Times accepting paused because http_max_connections connections were open.",
                vec![total(Vec::new(), self.limit_reached.load(Relaxed))],
            ),
            counter(
                "canto_connections_closed_quiet",
                "Connections closed for sending nothing: no first byte in time, or idle with no request in flight.",
                vec![
                    total(label(&[("reason", "no_first_byte")]), self.closed_no_first_byte.load(Relaxed)),
                    total(label(&[("reason", "idle")]), self.closed_idle.load(Relaxed)),
                ],
            ),
            counter(
                "canto_bodies_too_slow",
                "Bodies cut because the client moved them slower than http_body_min_rate, by direction.",
                vec![
                    total(label(&[("direction", "request")]), self.slow_request_bodies.load(Relaxed)),
                    total(label(&[("direction", "response")]), self.slow_response_bodies.load(Relaxed)),
                ],
            ),
            Family {
                name: "canto_websockets_open",
                help: "WebSocket connections open now, by module (for the XMPP transport: its sessions).",
                kind: Kind::Gauge,
                unit: "",
                samples: modules
                    .iter()
                    .filter(|(_, counts)| counts.serves_websockets)
                    .map(|(module, counts)| Sample {
                        suffix: "",
                        labels: label(&[("module", module)]),
                        value: counts.websockets_open as f64,
                    })
                    .collect(),
            },
            Family {
                name: "canto_links_open",
                help: "Outgoing connections open now, by module (canto:http/links; for the BOSH transport: its sessions).",
                kind: Kind::Gauge,
                unit: "",
                samples: modules
                    .iter()
                    .filter(|(_, counts)| counts.opens_links)
                    .map(|(module, counts)| Sample {
                        suffix: "",
                        labels: label(&[("module", module)]),
                        value: counts.links_open as f64,
                    })
                    .collect(),
            },
            counter(
                "canto_websocket_messages",
                "WebSocket messages, by direction (in: from clients).",
                vec![
                    total(label(&[("direction", "in")]), self.websocket_messages_in.load(Relaxed)),
                    total(label(&[("direction", "out")]), self.websocket_messages_out.load(Relaxed)),
                ],
            ),
            Family {
                name: "canto_file_body_bytes",
                help: "Bytes of files handed to connections as response bodies, by how they are sent: sendfile (by the kernel, plain HTTP/1.x) or read (from memory: TLS, HTTP/2, and small files the open-file cache keeps).",
                kind: Kind::Counter,
                unit: "bytes",
                samples: vec![
                    total(label(&[("how", "sendfile")]), self.file_bytes_sendfile.load(Relaxed)),
                    total(label(&[("how", "read")]), self.file_bytes_read.load(Relaxed)),
                ],
            },
            counter(
                "canto_tls_handshakes",
                "TLS handshakes, by result.",
                vec![
                    total(label(&[("result", "ok")]), self.tls_ok.load(Relaxed)),
                    total(label(&[("result", "failed")]), self.tls_failed.load(Relaxed)),
                ],
            ),
            counter(
                "canto_module_instantiations",
                "Module instances created, one per request.",
                per_module(|c| c.instantiations),
            ),
            counter("canto_module_traps", "Module runs that trapped or failed.", per_module(|c| c.traps)),
            counter(
                "canto_module_timeouts",
                "Module runs stopped by the CPU or wall-clock limit.",
                per_module(|c| c.timeouts),
            ),
            counter(
                "canto_module_busy",
                "Requests answered 503 because no slot of the module or the pool came free in time.",
                per_module(|c| c.busy),
            ),
            counter(
                "canto_reloads",
                "Config and module reloads, by result.",
                vec![
                    total(label(&[("result", "ok")]), self.reloads_ok.load(Relaxed)),
                    total(label(&[("result", "failed")]), self.reloads_failed.load(Relaxed)),
                ],
            ),
            counter(
                "canto_store_operations",
                "Key-value store calls by modules, by store and operation.",
                stores
                    .iter()
                    .flat_map(|(store, counts)| {
                        counts.operations.iter().map(|(op, n)| total(label(&[("store", store), ("operation", op)]), *n))
                    })
                    .collect(),
            ),
            counter(
                "canto_store_errors",
                "Key-value store calls that failed, by store, operation and reason (timeout, unavailable, limit, backend).",
                stores
                    .iter()
                    .flat_map(|(store, counts)| {
                        counts.errors.iter().map(|((op, reason), n)| {
                            total(label(&[("store", store), ("operation", op), ("reason", reason)]), *n)
                        })
                    })
                    .collect(),
            ),
            Family {
                name: "canto_store_duration_seconds",
                help: "Time a key-value store call took, by store.",
                kind: Kind::Histogram,
                unit: "seconds",
                samples: stores.iter().flat_map(|(store, counts)| store_histogram(store, counts)).collect(),
            },
            gauge("canto_resident_memory_bytes", "Resident memory of the server process.", "bytes", resident_bytes()),
        ]
    }
}

fn store_histogram(store: &str, counts: &StoreCounts) -> Vec<Sample> {
    let labels = |extra: Option<(&str, &str)>| {
        let mut labels = vec![("store".to_string(), store.to_string())];
        labels.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
        labels
    };
    let mut samples = Vec::new();
    let mut cumulative = 0;
    for (index, bucket) in counts.duration_buckets.iter().enumerate() {
        cumulative += bucket;
        let bound = DURATION_BUCKETS.get(index).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        samples.push(Sample { suffix: "_bucket", labels: labels(Some(("le", &bound))), value: cumulative as f64 });
    }
    samples.push(Sample { suffix: "_count", labels: labels(None), value: cumulative as f64 });
    samples.push(Sample { suffix: "_sum", labels: labels(None), value: counts.duration_nanos as f64 / 1e9 });
    samples
}

/// VmRSS from /proc (Linux); 0 where unavailable.
fn resident_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    kib.unwrap_or(0.0) * 1024.0
}

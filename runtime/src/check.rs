//! `canto check config` and `canto check certs`: what the server would do
//! with a config, found by the server's own derivations: modules loaded and
//! mounted as at start, certificates chosen as the handshake chooses them.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::{Config, Grants, ModuleSource, SectionKind};
use crate::server::{Lasting, MountInputs, PublicListener, host_table, mounts_for};
use crate::wasm::{LoadError, ModuleLoader};

/// What `canto check config` reports.
pub struct ConfigReport {
    /// Every warning the server would log at start, the config's own first.
    pub warnings: Vec<String>,
    /// Listeners, hosts, and each module with where it is served.
    pub summary: String,
    /// Stores that could not be opened or reached.
    pub store_problems: usize,
}

/// What `canto check config` prints: listeners, hosts, and each module with
/// where it is served, after loading every module and mounting them exactly
/// as the server would (so a broken module fails the check too, and every
/// warning the server would log is found).
pub async fn config(config: &Config) -> Result<ConfigReport, LoadError> {
    let (loaded, _) = ModuleLoader::new(config)?.load_all(config).await?;
    // As the server would: https once a port of it can open.
    let mut certificates = crate::tls::HttpsCertificates::default();
    let https = config.https_listeners.iter().find(|addr| certificates.open_port(&config.tls, addr.port()).is_ok());
    let public = match (https, config.http_listeners.first()) {
        (Some(https), _) => Some(PublicListener { scheme: "https", port: https.port() }),
        (None, Some(http)) => Some(PublicListener { scheme: "http", port: http.port() }),
        (None, None) => None,
    };
    let addrs = |list: &[SocketAddr]| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let (lasting, no_idle) = (Lasting::new(config), Arc::new(Semaphore::new(0)));
    let inputs = MountInputs { config, loaded: &loaded, public, idle: &no_idle, lasting: &lasting };
    let (_, mount_warnings) = host_table(&inputs);
    let warnings = config.warnings.iter().map(ToString::to_string).chain(mount_warnings).collect();
    let mut out = format!("config: {}\n", config.origin);
    out += &format!("http listeners: {}\n", addrs(&config.http_listeners));
    out += &format!("https listeners: {} (certificates: canto check certs)\n", addrs(&config.https_listeners));
    for host in &config.hosts {
        // As the config writes it: `Component "name" "module"`.
        let section = match &host.kind {
            SectionKind::VirtualHost => format!("VirtualHost \"{}\"", host.name),
            SectionKind::Component { module: Some(module) } => {
                format!("Component \"{}\" \"{module}\"", host.name)
            }
            SectionKind::Component { module: None } => format!("Component \"{}\"", host.name),
        };
        out += &format!("\n{section} (http_host {})\n", host.http_host);
        let mounts = mounts_for(&inputs, host);
        if mounts.is_empty() {
            out += "  no HTTP modules\n";
        }
        for mount in mounts {
            let source = host.modules.iter().find(|m| *m.name == *mount.module.name).map(|m| match &m.source {
                ModuleSource::File(path) => path.display().to_string(),
                ModuleSource::Builtin => "built in".to_string(),
            });
            out += &format!("  {:<20} {:<24} {}\n", mount.module.name, mount.base_url, source.unwrap_or_default());
            if !mount.identity.options.is_empty() {
                let names: Vec<&str> = mount.identity.options.keys().map(String::as_str).collect();
                out += &format!("  {:<20} reads options: {}\n", "", names.join(", "));
            }
            out += &format!("  {:<20} may: {}\n", "", describe_grants(&mount.identity.grants));
            if let Some(reuse) = &mount.reuse {
                out += &format!("  {:<20} reuses instances: up to {} requests each\n", "", reuse.max_requests());
            }
        }
    }
    let (stores, store_problems) = stores_report(config, &lasting.metrics).await;
    out += &stores;
    out += &limits_report(config);
    Ok(ConfigReport { warnings, summary: out, store_problems })
}

/// Each declared (or granted) store: where it is, who may use it, and
/// whether one round trip to it works now.
async fn stores_report(config: &Config, metrics: &Arc<crate::metrics::Metrics>) -> (String, usize) {
    let mut out = String::new();
    let mut problems = 0;
    for (name, store) in &config.stores {
        let users: Vec<&str> =
            config.grants.iter().filter(|(_, g)| g.stores.contains(name)).map(|(app, _)| app.as_str()).collect();
        if store.at.is_none() && users.is_empty() {
            continue; // the implicit default, unused
        }
        if out.is_empty() {
            out += "\nstores:\n";
        }
        let scope = if store.per_host { "keys per host" } else { "keys shared by hosts" };
        let state = match crate::kv::Store::open(name, store, Arc::clone(metrics)) {
            Ok(opened) => match opened.check().await {
                Ok(()) => "reachable".to_string(),
                Err(error) => format!("NOT REACHABLE: {error}"),
            },
            Err(error) => format!("CANNOT OPEN: {error}"),
        };
        problems += usize::from(!state.starts_with("reachable"));
        let users = if users.is_empty() { "no module".to_string() } else { users.join(", ") };
        out += &format!("  {name:<20} {}; {scope}; {state}; granted to {users}\n", store.backend.describe());
    }
    (out, problems)
}

/// The limits every module and every client runs under.
fn limits_report(config: &Config) -> String {
    let limits = &config.limits;
    let mut out = format!(
        "\nevery module: {} MiB memory per instance; {} s CPU and {} s wall-clock per request; \
         {} requests at once per module, {} instances server-wide; {} KiB of response headers, \
         {} MiB of response body; request bodies up to {} bytes; no sockets\n",
        limits.memory_bytes >> 20,
        limits.timeout.as_secs(),
        limits.wall_timeout.as_secs(),
        limits.max_concurrency,
        limits.pool_size,
        limits.max_header_bytes >> 10,
        limits.max_response_bytes >> 20,
        config.max_content_size,
    );
    let clients = &config.connections;
    let rate = &clients.body_min_rate;
    out += &format!(
        "every client: connections up to {}; {} s to a first byte, {} s idle; request heads up to {} KiB; \
         bodies waiting on the client at least {} bytes/s over {} s; a module slot waited for at most {} s\n",
        clients.max_connections.map_or_else(|| "what the open file limit leaves".into(), |n| format!("{n}")),
        clients.first_byte_timeout.as_secs(),
        clients.idle_timeout.as_secs(),
        clients.max_header_bytes >> 10,
        rate.bytes_per_second,
        rate.window.as_secs(),
        limits.queue_timeout.as_secs(),
    );
    out
}

/// One line saying what a module was granted.
fn describe_grants(grants: &Grants) -> String {
    if grants.is_empty() {
        return "nothing granted (no files, no environment, no network)".into();
    }
    let mut parts = Vec::new();
    for dir in &grants.read_dirs {
        parts.push(format!("read {}", dir.display()));
    }
    for dir in &grants.write_dirs {
        parts.push(format!("read and write {}", dir.display()));
    }
    if !grants.env.is_empty() {
        let names: Vec<&str> = grants.env.iter().map(|(k, _)| k.as_str()).collect();
        parts.push(format!("environment {}", names.join(", ")));
    }
    if !grants.outgoing.is_empty() {
        parts.push(format!("HTTP requests to {}", grants.outgoing.join(", ")));
    }
    if !grants.connect.is_empty() {
        let targets: Vec<String> = grants.connect.iter().map(ToString::to_string).collect();
        parts.push(format!("TCP connections to {}", targets.join(", ")));
    }
    if grants.metrics {
        parts.push("the server's metrics".into());
    }
    if !grants.stores.is_empty() {
        parts.push(format!("stores {}", grants.stores.join(", ")));
    }
    parts.join("; ")
}

/// What `canto check certs` prints, and the number of problems found: for
/// each https port and host, the certificate a client asking for the
/// host's name would get.
pub fn certs(config: &Config) -> (String, usize) {
    let mut ports: Vec<u16> = config.https_listeners.iter().map(|addr| addr.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    crate::tls::describe(&config.tls, &ports)
}

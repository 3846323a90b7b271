//! Configuration: Prosody's `prosody.cfg.lua`, read once and validated into a
//! typed [`Config`] before any port is bound.
//!
//! The pipeline is source text → [`lua`] (sections of options with
//! file:line:column) → [`Config`] (listeners, hosts, modules, limits). Errors
//! point at the source. A Prosody config carries many XMPP options canto
//! does not use; those are accepted quietly.

mod known;
mod lua;
mod source;
mod text;
mod tls;
mod typed;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use typed::{ServiceDefaults, boolean, listeners, positive_integer, spanned_string_list, string, string_list};

pub use lua::{HostSection, Options, RawConfig, SectionKind};
pub use source::{Location, Spanned, Table, TableKey, Value};
pub use tls::{CertPair, HostTls, PortPaths, SslOption, TlsSettings};

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: cannot read included file {}: {source}", path.display())]
    Include {
        at: Location,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The config canto runs with when given none: the demo modules on
/// localhost:5280.
pub const BUILTIN_DEFAULT: &str = r#"-- canto's built-in default config.
-- http_ports and http_interfaces keep Prosody's defaults: 5280 on 127.0.0.1 and ::1.
-- The demo has no certificates, so no https listener either.
https_ports = { }
VirtualHost "localhost"
    modules_enabled = { "http_hello", "http_whoami", "http_echo" }
"#;

/// Where the `http` service listens by default: loopback only (Prosody's
/// http service is private).
const LOCAL_INTERFACES: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
/// Where the `https` service listens by default: `{ "*", "::" }`.
const ALL_INTERFACES: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)];

/// Default request body limit (`http_max_content_size`), 10 MiB.
pub const DEFAULT_MAX_CONTENT_SIZE: u64 = 10 * 1024 * 1024;

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
/// The smallest request head bound hyper accepts.
const MIN_HEADER_BYTES: u32 = 8192;

/// A validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, or "built-in default".
    pub origin: String,
    /// The file to re-read on reload; `None` for the built-in default.
    pub path: Option<PathBuf>,
    /// Addresses the `http` service listens on (`http_ports` × `http_interfaces`).
    pub http_listeners: Vec<SocketAddr>,
    /// Addresses the `https` service listens on (`https_ports` × `https_interfaces`).
    pub https_listeners: Vec<SocketAddr>,
    /// Where the https service finds its certificates.
    pub tls: TlsSettings,
    /// Server-wide CORS settings (`access_control_*`).
    pub cors: CorsSettings,
    /// `trusted_proxies`: peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `http_max_content_size`: the largest request body accepted, in bytes.
    pub max_content_size: u64,
    /// Directories searched for `mod_<name>.wasm`, in order.
    pub plugin_paths: Vec<PathBuf>,
    /// HTTP hosts: every VirtualHost, and every Component that serves HTTP.
    pub hosts: Vec<HostConfig>,
    pub limits: ModuleLimits,
    pub connections: ConnectionLimits,
    /// `http_module_grants`, by app name (module name without `http_`).
    pub grants: BTreeMap<String, Grants>,
    /// `http_default_host`: where requests for unknown hosts go.
    pub default_host: Option<(String, Location)>,
    /// `http_errors_detailed`: put the internal cause of a 500 on the page.
    pub errors_detailed: bool,
    /// `pidfile`: where the running server writes its process id, for
    /// `canto reload`.
    pub pidfile: Option<PathBuf>,
    /// Non-fatal findings to log at startup.
    pub warnings: Vec<String>,
}

/// The five documented `access_control_*` options and
/// `http_default_cors_enabled`, with Prosody's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsSettings {
    pub enabled: bool,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    /// `["*"]` means any origin.
    pub origins: Vec<String>,
    pub credentials: bool,
    pub max_age: u64,
    /// `http_cors_override`, by app name (module name without `http_`).
    pub overrides: BTreeMap<String, CorsOverride>,
}

/// One app's entry in `http_cors_override`. Lists add names; a map of
/// name to `true`/`false` adds or removes them, as Prosody's headers map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOverride {
    pub enabled: Option<bool>,
    pub credentials: Option<bool>,
    pub methods: Vec<(String, bool)>,
    pub headers: Vec<(String, bool)>,
    pub origins: Option<Vec<String>>,
}

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

/// What one module may touch beyond computing: nothing unless granted in
/// `http_module_grants[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories the module may read (mounted at the same path inside).
    pub read_dirs: Vec<PathBuf>,
    /// Directories the module may read and write.
    pub write_dirs: Vec<PathBuf>,
    /// Environment variables it sees.
    pub env: Vec<(String, String)>,
    /// Host names it may send HTTP requests to (lowercase).
    pub outgoing: Arc<[String]>,
    /// Whether it may read the server's metrics (`canto:http/metrics`).
    pub metrics: bool,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.read_dirs.is_empty()
            && self.write_dirs.is_empty()
            && self.env.is_empty()
            && self.outgoing.is_empty()
            && !self.metrics
    }
}

/// One HTTP host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// The section's name (`VirtualHost "example.com"` → `example.com`).
    pub name: String,
    /// The name requests select it by: `http_host`, else `name`.
    pub http_host: String,
    pub kind: SectionKind,
    /// Modules enabled on this host that canto can serve, in config order.
    pub modules: Vec<EnabledModule>,
    /// `http_external_url`: how clients reach this host from outside.
    pub external_url: Option<ExternalUrl>,
    /// Option lookup for this host: its own value, else the global one.
    pub options: HostOptions,
    /// `http_files_dir`, resolved against the file that set it: the files
    /// module is granted it read-only and told this absolute path.
    pub files_dir: Option<PathBuf>,
}

/// `http_external_url = "https://proxy.example:8443/xmpp/"`, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// Always starts and ends with `/`.
    pub path: String,
}

impl ExternalUrl {
    fn parse(value: &Spanned) -> Result<Self, ConfigError> {
        let text = string(value, "http_external_url")?;
        let bad = |why: &str| ConfigError::Invalid {
            at: value.at.clone(),
            message: format!("http_external_url: {text:?} {why}"),
        };
        let uri: http::Uri = text.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("http" | "https")) => scheme.to_string(),
            _ => return Err(bad("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        let mut path = uri.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(Self { scheme, host: authority.host().to_string(), port: authority.port_u16(), path })
    }

    /// The URL of `base_path` under this one, ending with `/`.
    pub fn join(&self, base_path: &str) -> String {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        let port = match self.port {
            Some(port) if port != default_port => format!(":{port}"),
            _ => String::new(),
        };
        let base = base_path.trim_start_matches('/');
        let base = if base.is_empty() { String::new() } else { format!("{base}/") };
        format!("{}://{}{port}{}{base}", self.scheme, self.host, self.path)
    }
}

/// A module named in `modules_enabled` (or as a Component's module).
#[derive(Clone, Debug)]
pub struct EnabledModule {
    /// The module name, e.g. `http_files`.
    pub name: String,
    /// Where it was enabled, for errors about it.
    pub at: Location,
    pub source: ModuleSource,
}

/// Where a module's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    /// `mod_<name>.wasm` in one of the `plugin_paths`.
    File(PathBuf),
    /// One of the demo modules built into the binary.
    Builtin,
}

/// Options as a host sees them: its own value first, then the global one.
#[derive(Clone, Debug)]
pub struct HostOptions {
    host: Options,
    global: Arc<Options>,
}

impl HostOptions {
    pub fn get(&self, name: &str) -> Option<&Spanned> {
        self.host.get(name).or_else(|| self.global.get(name))
    }

    /// The host's own value only, for options whose global value means
    /// something else (`certificate`, `https_ssl`).
    pub fn get_own(&self, name: &str) -> Option<&Spanned> {
        self.host.get(name)
    }

    /// The global value only, for options whose tables merge (`http_paths`).
    pub fn get_global(&self, name: &str) -> Option<&Spanned> {
        self.global.get(name)
    }
}

/// Names of modules built into the binary; set by the server from its
/// embedded demo modules.
pub type BuiltinNames<'a> = &'a [&'a str];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let raw = lua::read_file(path, &|name| std::env::var(name).ok())?;
        let mut config = Self::from_raw(path.display().to_string(), config_dir(path), raw, builtins)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates config text; `path` names it in messages and anchors
    /// relative paths.
    pub fn from_text(path: &Path, text: &str, builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let raw = lua::read_str(path, text, &|name| std::env::var(name).ok())?;
        Self::from_raw(path.display().to_string(), config_dir(path), raw, builtins)
    }

    /// The config used when none is given.
    pub fn builtin_default(builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let raw = lua::read_str(Path::new("<built-in default>"), BUILTIN_DEFAULT, &|_| None)?;
        Self::from_raw("built-in default".into(), PathBuf::new(), raw, builtins)
    }

    fn from_raw(
        origin: String,
        config_dir: PathBuf,
        raw: RawConfig,
        builtins: BuiltinNames<'_>,
    ) -> Result<Self, ConfigError> {
        let global = Arc::new(raw.global);
        let plugin_paths = match global.get("plugin_paths") {
            Some(value) => {
                string_list(value, "plugin_paths")?.into_iter().map(|path| value.at.base_dir().join(path)).collect()
            }
            None => Vec::new(),
        };
        // The http service is private in Prosody: it falls back on
        // `local_interfaces`, the https one on `interfaces`.
        let http_defaults =
            ServiceDefaults { port: 5280, interfaces_option: "local_interfaces", interfaces: &LOCAL_INTERFACES };
        let http_listeners = listeners(&global, "http", http_defaults)?;
        let limits = ModuleLimits {
            memory_bytes: positive_integer(global.get("http_module_memory_limit"), "http_module_memory_limit")?
                .unwrap_or(DEFAULT_MEMORY_LIMIT),
            timeout: typed::seconds(&global, "http_module_timeout", DEFAULT_MODULE_TIMEOUT_SECS)?,
            wall_timeout: typed::seconds(&global, "http_module_wall_timeout", DEFAULT_WALL_TIMEOUT_SECS)?,
            pool_size: match global.get("http_module_pool_size") {
                Some(value) => typed::positive_u32(value, "http_module_pool_size")?,
                None => DEFAULT_POOL_SIZE,
            },
            max_concurrency: match global.get("http_module_max_concurrency") {
                Some(value) => typed::positive_u32(value, "http_module_max_concurrency")?,
                None => DEFAULT_MAX_CONCURRENCY,
            },
            max_header_bytes: positive_integer(
                global.get("http_module_max_header_size"),
                "http_module_max_header_size",
            )?
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
            queue_timeout: typed::seconds(&global, "http_module_queue_timeout", DEFAULT_QUEUE_TIMEOUT_SECS)?,
        };
        let connections = ConnectionLimits {
            max_connections: match global.get("http_max_connections") {
                Some(value) => Some(typed::positive_u32(value, "http_max_connections")?),
                None => None,
            },
            first_byte_timeout: typed::seconds(&global, "http_first_byte_timeout", DEFAULT_FIRST_BYTE_TIMEOUT_SECS)?,
            idle_timeout: typed::seconds(&global, "http_idle_timeout", DEFAULT_IDLE_TIMEOUT_SECS)?,
            max_header_bytes: match global.get("http_max_header_size") {
                Some(value) => typed::positive_u32(value, "http_max_header_size")?.max(MIN_HEADER_BYTES),
                None => DEFAULT_MAX_HEADER_BYTES_IN,
            },
        };
        let grants = match global.get("http_module_grants") {
            Some(value) => module_grants(value)?,
            None => BTreeMap::new(),
        };
        let resolver = ModuleResolver { plugin_paths: &plugin_paths, builtins };

        let hosts_raw = raw.hosts;
        let mut hosts = Vec::new();
        for section in hosts_raw.iter().cloned() {
            if section.options.get("enabled").is_some_and(|v| v.value == Value::Bool(false)) {
                continue;
            }
            let options = HostOptions { host: section.options.clone(), global: Arc::clone(&global) };
            let names = match &section.kind {
                SectionKind::VirtualHost => host_module_names(&global, &section.options, true)?,
                SectionKind::Component { module: Some(module) } => {
                    let mut names = Vec::new();
                    if module != "http" {
                        names.push((module.clone(), section.at.clone()));
                    }
                    names.extend(host_module_names(&global, &section.options, false)?);
                    names
                }
                // An external XMPP component: nothing to serve over HTTP.
                SectionKind::Component { module: None } => continue,
            };
            let mut modules: Vec<EnabledModule> = Vec::new();
            for (name, at) in names {
                if modules.iter().any(|m| m.name == name) {
                    continue;
                }
                if let Some(source) = resolver.resolve(&name, &at)? {
                    modules.push(EnabledModule { name, at, source });
                }
            }
            let is_http_component = matches!(&section.kind, SectionKind::Component { module: Some(m) } if m == "http");
            if modules.is_empty() && !is_http_component && matches!(section.kind, SectionKind::Component { .. }) {
                continue; // a Component whose module is an XMPP one
            }
            let http_host = match options.get("http_host") {
                Some(value) => string(value, "http_host")?,
                None => section.name.clone(),
            };
            let external_url = options.get("http_external_url").map(ExternalUrl::parse).transpose()?;
            let files_dir = match options.get("http_files_dir") {
                Some(value) => typed::existing_dirs(value, "http_files_dir")?.into_iter().next(),
                None => None,
            };
            hosts.push(HostConfig {
                name: section.name,
                http_host,
                kind: section.kind,
                modules,
                external_url,
                options,
                files_dir,
            });
        }

        let https_defaults =
            ServiceDefaults { port: 5281, interfaces_option: "interfaces", interfaces: &ALL_INTERFACES };
        let https_listeners = listeners(&global, "https", https_defaults)?;
        let tls = tls::tls_settings(&global, config_dir, &hosts)?;
        let cors = cors_settings(&global)?;
        let trusted_proxies = match global.get("trusted_proxies") {
            Some(value) => typed::networks(value, "trusted_proxies")?,
            None => ["127.0.0.1/32", "::1/128"].iter().filter_map(|net| net.parse().ok()).collect(),
        };
        let pidfile = match global.get("pidfile") {
            Some(value) => Some(value.at.base_dir().join(string(value, "pidfile")?)),
            None => None,
        };
        let max_content_size = match global.get("http_max_content_size") {
            Some(value) => typed::non_negative(value, "http_max_content_size")?,
            None => DEFAULT_MAX_CONTENT_SIZE,
        };
        let default_host = match global.get("http_default_host") {
            Some(value) => Some((string(value, "http_default_host")?, value.at.clone())),
            None => None,
        };
        let errors_detailed = boolean(global.get("http_errors_detailed"), "http_errors_detailed")?.unwrap_or(false);
        let mut warnings = raw.warnings;
        warnings.extend(option_warnings(&global, &hosts_raw));
        warnings.extend(reuse_warnings(&global, &limits, &hosts));
        Ok(Config {
            origin,
            path: None,
            http_listeners,
            https_listeners,
            tls,
            cors,
            trusted_proxies,
            max_content_size,
            plugin_paths,
            hosts,
            limits,
            connections,
            grants,
            default_host,
            errors_detailed,
            pidfile,
            warnings,
        })
    }
}

/// The directory relative paths in a config file are resolved against.
fn config_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn cors_settings(global: &Options) -> Result<CorsSettings, ConfigError> {
    let list = |name: &str, default: &[&str]| -> Result<Vec<String>, ConfigError> {
        match global.get(name) {
            Some(value) => string_list(value, name),
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
        }
    };
    Ok(CorsSettings {
        enabled: boolean(global.get("http_default_cors_enabled"), "http_default_cors_enabled")?.unwrap_or(true),
        methods: list("access_control_allow_methods", &["GET", "OPTIONS"])?,
        headers: list("access_control_allow_headers", &["Content-Type"])?,
        origins: list("access_control_allow_origins", &["*"])?,
        credentials: boolean(global.get("access_control_allow_credentials"), "access_control_allow_credentials")?
            .unwrap_or(false),
        max_age: match global.get("access_control_max_age") {
            Some(value) => typed::non_negative(value, "access_control_max_age")?,
            None => 7200,
        },
        overrides: match global.get("http_cors_override") {
            Some(value) => cors_overrides(value)?,
            None => BTreeMap::new(),
        },
    })
}

/// `http_module_grants = { files = { dirs = { "/srv/www" } }, store = {
/// dirs_rw = { "/var/lib/store" }, env = { LANG = "C" } } }`. Directories
/// must exist; relative ones are relative to the config file.
fn module_grants(value: &Spanned) -> Result<BTreeMap<String, Grants>, ConfigError> {
    const OPTION: &str = "http_module_grants";
    let Value::Table(table) = &value.value else { return Err(typed::expected(value, OPTION, "a table")) };
    let mut all = BTreeMap::new();
    for (app, entry) in &table.map {
        let Value::Table(fields) = &entry.value else {
            return Err(typed::expected(entry, &format!("{OPTION}.{app}"), "a table"));
        };
        let mut grants = Grants::default();
        for (key, field) in &fields.map {
            let name = format!("{OPTION}.{app}.{key}");
            match key.to_string().as_str() {
                "dirs" => grants.read_dirs = typed::existing_dirs(field, &name)?,
                "dirs_rw" => grants.write_dirs = typed::existing_dirs(field, &name)?,
                "env" => grants.env = typed::string_map(field, &name)?,
                "metrics" => grants.metrics = boolean(Some(field), &name)?.unwrap_or(false),
                "outgoing" => {
                    let hosts = string_list(field, &name)?;
                    grants.outgoing = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                }
                other => {
                    return Err(ConfigError::Invalid {
                        at: field.at.clone(),
                        message: format!(
                            "{OPTION}.{app}: unknown grant '{other}' (expected dirs, dirs_rw, env, outgoing or metrics)"
                        ),
                    });
                }
            }
        }
        all.insert(app.to_string(), grants);
    }
    Ok(all)
}

fn cors_overrides(value: &Spanned) -> Result<BTreeMap<String, CorsOverride>, ConfigError> {
    const OPTION: &str = "http_cors_override";
    let Value::Table(table) = &value.value else { return Err(typed::expected(value, OPTION, "a table")) };
    let mut overrides = BTreeMap::new();
    for (app, entry) in &table.map {
        let Value::Table(fields) = &entry.value else {
            return Err(typed::expected(entry, &format!("{OPTION}.{app}"), "a table"));
        };
        let mut result = CorsOverride::default();
        for (key, field) in &fields.map {
            let name = format!("{OPTION}.{app}.{key}");
            match key.to_string().as_str() {
                "enabled" => result.enabled = boolean(Some(field), &name)?,
                "credentials" => result.credentials = boolean(Some(field), &name)?,
                "methods" => result.methods = typed::name_switches(field, &name)?,
                "headers" => result.headers = typed::name_switches(field, &name)?,
                "origins" => result.origins = Some(string_list(field, &name)?),
                other => {
                    return Err(ConfigError::Invalid {
                        at: field.at.clone(),
                        message: format!(
                            "{OPTION}.{app}: unknown field '{other}' (expected enabled, credentials, headers, methods or origins)"
                        ),
                    });
                }
            }
        }
        overrides.insert(app.to_string(), result);
    }
    Ok(overrides)
}

/// Warnings for options in HTTP's namespaces that canto does not know (with
/// a did-you-mean), and for global-only options set on a host, which have
/// no effect there (Prosody's wording).
fn option_warnings(global: &Options, hosts: &[HostSection]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut unknown = |name: &str, at: &Location| {
        if known::is_http_namespace(name) && known::scope_of(name).is_none() {
            let hint = known::did_you_mean(name).map(|k| format!(" (did you mean '{k}'?)")).unwrap_or_default();
            warnings.push(format!("{at}: unknown option '{name}'{hint}"));
        }
    };
    for (name, value) in global.iter() {
        unknown(name, &value.at);
    }
    for host in hosts {
        for (name, value) in host.options.iter() {
            unknown(name, &value.at);
        }
    }
    for host in hosts {
        for (name, value) in host.options.iter() {
            let global_only = known::scope_of(name) == Some(known::Scope::Global);
            if global_only || name.ends_with("_ports") || name.ends_with("_interface") {
                warnings.push(format!(
                    "{}: {}: Option '{name}' has no effect for virtual hosts - put it in the server-wide section instead",
                    value.at, host.name
                ));
            }
        }
    }
    warnings
}

/// The app name options are keyed by: the module name without `http_`.
pub fn app_name(module: &str) -> &str {
    module.strip_prefix("http_").unwrap_or(module)
}

/// `http_module_instance_reuse` entries naming no enabled app (probably a
/// typo, and otherwise silently without effect), and reuse that the pool is
/// too small to allow.
fn reuse_warnings(global: &Options, limits: &ModuleLimits, hosts: &[HostConfig]) -> Vec<String> {
    let Some(option) = global.get("http_module_instance_reuse") else { return Vec::new() };
    if limits.instance_reuse.any() && limits.pool_size < 2 {
        return vec![format!(
            "{}: http_module_instance_reuse needs http_module_pool_size of at least 2; not reusing",
            option.at
        )];
    }
    let enabled: Vec<&str> = hosts.iter().flat_map(|h| &h.modules).map(|m| app_name(&m.name)).collect();
    limits
        .instance_reuse
        .per_app
        .keys()
        .filter(|app| !enabled.contains(&app.as_str()))
        .map(|app| {
            let hint = enabled
                .iter()
                .map(|known| (known, strsim::damerau_levenshtein(known, app)))
                .filter(|(_, distance)| *distance <= 2)
                .min_by_key(|(_, distance)| *distance)
                .map(|(known, _)| format!(" (did you mean '{known}'?)"))
                .unwrap_or_default();
            format!("{}: http_module_instance_reuse: no enabled module is called '{app}'{hint}", option.at)
        })
        .collect()
}

/// `modules_enabled`/`modules_disabled` combined as Prosody does (spec §1.5):
/// global modules load onto VirtualHosts but never onto Components; the
/// global `modules_disabled` does not remove a host's own `modules_enabled`.
fn host_module_names(
    global: &Options,
    host: &Options,
    include_global: bool,
) -> Result<Vec<(String, Location)>, ConfigError> {
    let named = |options: &Options, key: &str| -> Result<Vec<(String, Location)>, ConfigError> {
        match options.get(key) {
            Some(value) => spanned_string_list(value, key),
            None => Ok(Vec::new()),
        }
    };
    let global_disabled: Vec<String> = named(global, "modules_disabled")?.into_iter().map(|(n, _)| n).collect();
    let host_disabled: Vec<String> = named(host, "modules_disabled")?.into_iter().map(|(n, _)| n).collect();
    let mut names = Vec::new();
    if include_global {
        names.extend(named(global, "modules_enabled")?.into_iter().filter(|(n, _)| !global_disabled.contains(n)));
    }
    names.extend(named(host, "modules_enabled")?);
    names.retain(|(n, _)| !host_disabled.contains(n));
    Ok(names)
}

struct ModuleResolver<'a> {
    plugin_paths: &'a [PathBuf],
    builtins: BuiltinNames<'a>,
}

impl ModuleResolver<'_> {
    /// Finds `mod_<name>.wasm`. A name that is not found is an XMPP module
    /// canto has no part in, unless it is clearly meant to be an HTTP one.
    fn resolve(&self, name: &str, at: &Location) -> Result<Option<ModuleSource>, ConfigError> {
        let file_name = format!("mod_{name}.wasm");
        if let Some(path) = self.plugin_paths.iter().map(|dir| dir.join(&file_name)).find(|p| p.is_file()) {
            return Ok(Some(ModuleSource::File(path)));
        }
        if self.builtins.contains(&name) {
            return Ok(Some(ModuleSource::Builtin));
        }
        if name.starts_with("http_") {
            let searched = if self.plugin_paths.is_empty() {
                "no plugin_paths are set".to_string()
            } else {
                format!(
                    "searched {}",
                    self.plugin_paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                )
            };
            return Err(ConfigError::Invalid {
                at: at.clone(),
                message: format!("module '{name}' not found: no {file_name} ({searched})"),
            });
        }
        Ok(None)
    }
}

/// Declared module options as JSON, keyed by name, for one host.
pub fn module_options(host: &HostConfig, declared: &[String]) -> BTreeMap<String, String> {
    let mut options: BTreeMap<String, String> = declared
        .iter()
        .filter_map(|name| host.options.get(name).map(|value| (name.clone(), value.value.to_json().to_string())))
        .collect();
    // A module cannot resolve a relative path itself: it sees the granted one.
    if let (Some(value), Some(dir)) = (options.get_mut("http_files_dir"), &host.files_dir) {
        *value = serde_json::Value::String(dir.display().to_string()).to_string();
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("/etc/canto/test.cfg.lua"), text, &["http_hello", "http_whoami"])
    }

    #[test]
    fn builtin_default_serves_demo_modules_on_localhost_5280() {
        let config = Config::builtin_default(&["http_hello", "http_whoami", "http_echo"]).unwrap();
        assert_eq!(config.http_listeners, vec!["127.0.0.1:5280".parse().unwrap(), "[::1]:5280".parse().unwrap()]);
        assert_eq!(config.hosts.len(), 1);
        let names: Vec<_> = config.hosts[0].modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["http_hello", "http_whoami", "http_echo"]);
    }

    #[test]
    fn global_modules_load_onto_virtual_hosts_not_components() {
        let config = config(
            r#"modules_enabled = { "roster", "http_hello" }
            modules_disabled = { "http_whoami" }
            VirtualHost "a.test"
            VirtualHost "b.test"
                modules_enabled = { "http_whoami" }
                modules_disabled = { "http_hello" }
            Component "c.test" "http"
            "#,
        )
        .unwrap();
        let modules = |i: usize| config.hosts[i].modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(modules(0), ["http_hello"]);
        assert_eq!(modules(1), ["http_whoami"]);
        assert!(modules(2).is_empty());
        assert_eq!(config.hosts.len(), 3);
    }

    #[test]
    fn listeners_are_ports_times_interfaces() {
        let config = config("http_ports = { 8080, 8081 }\nhttp_interfaces = { \"*\", \"::1\" }\n").unwrap();
        assert_eq!(config.http_listeners.len(), 4);
        assert_eq!(config.http_listeners[0], "0.0.0.0:8080".parse().unwrap());
        let error = config_error("http_ports = { 70000 }");
        assert_eq!(error, "/etc/canto/test.cfg.lua:1:16: http_ports: 70000 is not a port number (0-65535)");
    }

    #[test]
    fn a_missing_http_module_is_an_error_naming_where_it_was_enabled() {
        let error = config_error("plugin_paths = { \"mods\" }\nVirtualHost \"a\"\nmodules_enabled = { \"http_nope\" }");
        assert!(error.starts_with("/etc/canto/test.cfg.lua:3:21: module 'http_nope' not found: no mod_http_nope.wasm (searched /etc/canto/mods)"), "{error}");
    }

    #[test]
    fn external_urls_join_base_paths() {
        let proxied = config("VirtualHost \"a\"\nhttp_external_url = \"https://proxy.example:8443/xmpp\"\n").unwrap();
        let url = proxied.hosts[0].external_url.as_ref().unwrap();
        assert_eq!(url.join("/whoami"), "https://proxy.example:8443/xmpp/whoami/");
        assert_eq!(url.join("/"), "https://proxy.example:8443/xmpp/");
        let default_port = config("VirtualHost \"a\"\nhttp_external_url = \"https://example.com:443/\"\n").unwrap();
        assert_eq!(default_port.hosts[0].external_url.as_ref().unwrap().join("/x"), "https://example.com/x/");
        assert!(config_error("VirtualHost \"a\"\nhttp_external_url = \"ftp://x/\"").contains("must start with http"));
    }

    fn config_error(text: &str) -> String {
        config(text).unwrap_err().to_string()
    }
}

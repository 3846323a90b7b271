//! Configuration: Prosody's `prosody.cfg.lua`, read once and validated into a
//! typed [`Config`] before any port is bound.
//!
//! The pipeline is source text → [`lua`] (sections of options with
//! file:line:column) → [`Config`] (listeners, hosts, modules, limits). Errors
//! point at the source. A Prosody config carries many XMPP options canto
//! does not use; those are accepted quietly.

mod cors;
mod grants;
mod hosts;
mod known;
mod limits;
mod lua;
mod source;
mod stores;
mod text;
mod tls;
mod typed;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use typed::{ServiceDefaults, boolean, listeners, string, string_list};

pub use cors::{CorsOverride, CorsSettings};
pub use grants::{ConnectSettings, ConnectTarget, Grants};
use hosts::ModuleResolver;
pub use hosts::{EnabledModule, ExternalUrl, HostConfig, HostOptions, ModuleSource, module_options};
pub use limits::{ConnectionLimits, InstanceReuse, ModuleLimits};
pub use lua::{HostSection, Options, RawConfig, SectionKind};
pub use source::{Location, Spanned, Table, TableKey, Value};
pub use stores::{DEFAULT_STORE, StoreBackend, StoreConfig};
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
    /// `http_stores` (and the implicit `default`), by name.
    pub stores: BTreeMap<String, StoreConfig>,
    /// How modules' granted outgoing TCP connections are made.
    pub connect: ConnectSettings,
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
        let limits = limits::module_limits(&global)?;
        let connections = limits::connection_limits(&global)?;
        // Prosody's `data_path`: uploads and the embedded stores live there.
        let data_path = match global.get("data_path") {
            Some(value) => value.at.base_dir().join(string(value, "data_path")?),
            None => config_dir.join("data"),
        };
        let stores = stores::stores(global.get("http_stores"), &data_path)?;
        let grants = match global.get("http_module_grants") {
            Some(value) => grants::module_grants(value, &stores)?,
            None => BTreeMap::new(),
        };
        let connect = grants::connect_settings(&global)?;
        let resolver = ModuleResolver { plugin_paths: &plugin_paths, builtins };
        let hosts = hosts::hosts(&global, &raw.hosts, &resolver, &data_path)?;

        let https_defaults =
            ServiceDefaults { port: 5281, interfaces_option: "interfaces", interfaces: &ALL_INTERFACES };
        let https_listeners = listeners(&global, "https", https_defaults)?;
        let tls = tls::tls_settings(&global, config_dir, &hosts)?;
        let cors = cors::cors_settings(&global)?;
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
        warnings.extend(option_warnings(&global, &raw.hosts));
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
            stores,
            connect,
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

#[cfg(test)]
mod reading_tests;

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

    #[test]
    fn http_paths_are_typed_at_load_the_hosts_over_the_global() {
        let text = "http_paths = { hello = \"/hi\", whoami = \"/who\" }\nVirtualHost \"a\"\nhttp_paths = { hello = \"/h\" }\nmodules_enabled = { \"http_hello\" }\n";
        let config = config(text).unwrap();
        assert_eq!(config.hosts[0].paths.get("hello").map(String::as_str), Some("/h"));
        assert_eq!(config.hosts[0].paths.get("whoami").map(String::as_str), Some("/who"));
        let error =
            config_error("http_paths = { hello = 5 }\nVirtualHost \"a\"\nmodules_enabled = { \"http_hello\" }\n");
        assert!(
            error.starts_with("/etc/canto/test.cfg.lua:1:") && error.contains("http_paths.hello: expected"),
            "{error}"
        );
        let error = config_error("VirtualHost \"a\"\nhttp_paths = \"/x\"\nmodules_enabled = { \"http_hello\" }\n");
        assert!(
            error.starts_with("/etc/canto/test.cfg.lua:2:") && error.contains("http_paths: expected a table"),
            "{error}"
        );
    }
}

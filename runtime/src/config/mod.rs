//! Configuration: Prosody's `prosody.cfg.lua`, read once and validated into a
//! typed [`Config`] before any port is bound.
//!
//! The pipeline is source text → [`lua`] (sections of options with
//! file:line:column) → [`Config`] (listeners, hosts, modules, limits). Errors
//! point at the source. A Prosody config carries many XMPP options canto
//! does not use; those are accepted quietly.

mod lua;
mod source;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use lua::{HostSection, Options, RawConfig, SectionKind};
pub use source::{Location, Spanned, Table, TableKey, Value};

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
VirtualHost "localhost"
    modules_enabled = { "http_hello", "http_whoami", "http_echo" }
"#;

/// Default per-instance memory cap for a module.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// Default wall-clock budget for one request inside a module.
pub const DEFAULT_MODULE_TIMEOUT_SECS: u64 = 30;
/// Default number of module instances alive at once, server-wide.
pub const DEFAULT_POOL_SIZE: u32 = 1000;

/// A validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from, or "built-in default".
    pub origin: String,
    /// Addresses the `http` service listens on (`http_ports` × `http_interfaces`).
    pub http_listeners: Vec<SocketAddr>,
    /// Directories searched for `mod_<name>.wasm`, in order.
    pub plugin_paths: Vec<PathBuf>,
    /// HTTP hosts: every VirtualHost, and every Component that serves HTTP.
    pub hosts: Vec<HostConfig>,
    pub limits: ModuleLimits,
    /// Non-fatal findings to log at startup.
    pub warnings: Vec<String>,
}

/// Bounds every module instance runs under.
#[derive(Clone, Debug)]
pub struct ModuleLimits {
    /// Linear memory one instance may grow to (`http_module_memory_limit`, bytes).
    pub memory_bytes: u64,
    /// Wall-clock budget of one request (`http_module_timeout`, seconds).
    pub timeout: std::time::Duration,
    /// Instances alive at once across all modules (`http_module_pool_size`).
    pub pool_size: u32,
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
    /// Option lookup for this host: its own value, else the global one.
    pub options: HostOptions,
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
        Self::from_raw(path.display().to_string(), raw, builtins)
    }

    /// Validates config text; `path` names it in messages and anchors
    /// relative paths.
    pub fn from_text(path: &Path, text: &str, builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let raw = lua::read_str(path, text, &|name| std::env::var(name).ok())?;
        Self::from_raw(path.display().to_string(), raw, builtins)
    }

    /// The config used when none is given.
    pub fn builtin_default(builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let raw = lua::read_str(Path::new("<built-in default>"), BUILTIN_DEFAULT, &|_| None)?;
        Self::from_raw("built-in default".into(), raw, builtins)
    }

    fn from_raw(origin: String, raw: RawConfig, builtins: BuiltinNames<'_>) -> Result<Self, ConfigError> {
        let global = Arc::new(raw.global);
        let plugin_paths = match global.get("plugin_paths") {
            Some(value) => {
                string_list(value, "plugin_paths")?.into_iter().map(|path| value.at.base_dir().join(path)).collect()
            }
            None => Vec::new(),
        };
        let http_listeners = listeners(&global)?;
        let limits = ModuleLimits {
            memory_bytes: positive_integer(global.get("http_module_memory_limit"), "http_module_memory_limit")?
                .unwrap_or(DEFAULT_MEMORY_LIMIT),
            timeout: std::time::Duration::from_secs(
                positive_integer(global.get("http_module_timeout"), "http_module_timeout")?
                    .unwrap_or(DEFAULT_MODULE_TIMEOUT_SECS),
            ),
            pool_size: positive_integer(global.get("http_module_pool_size"), "http_module_pool_size")?.map_or(
                Ok(DEFAULT_POOL_SIZE),
                |n| {
                    u32::try_from(n)
                        .map_err(|_| invalid(global.get("http_module_pool_size"), "http_module_pool_size is too large"))
                },
            )?,
        };
        let resolver = ModuleResolver { plugin_paths: &plugin_paths, builtins };

        let mut hosts = Vec::new();
        for section in raw.hosts {
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
            hosts.push(HostConfig { name: section.name, http_host, kind: section.kind, modules, options });
        }

        Ok(Config { origin, http_listeners, plugin_paths, hosts, limits, warnings: raw.warnings })
    }
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

fn listeners(global: &Options) -> Result<Vec<SocketAddr>, ConfigError> {
    let ports = match global.get("http_ports") {
        Some(value) => port_list(value, "http_ports")?,
        None => vec![5280],
    };
    let interfaces = match global
        .get("http_interfaces")
        .or_else(|| global.get("http_interface"))
        .or_else(|| global.get("local_interfaces"))
    {
        Some(value) => spanned_string_list(value, "http_interfaces")?
            .into_iter()
            .map(|(text, at)| {
                interface_address(&text).ok_or_else(|| ConfigError::Invalid {
                    at,
                    message: format!("http_interfaces: {text:?} is not an IP address or \"*\""),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
    };
    Ok(interfaces.iter().flat_map(|ip| ports.iter().map(|port| SocketAddr::new(*ip, *port))).collect())
}

/// `"*"` is every IPv4 address, as in Prosody; `"::"` every IPv6 one.
fn interface_address(text: &str) -> Option<IpAddr> {
    match text {
        "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        _ => text.trim_start_matches('[').trim_end_matches(']').parse().ok(),
    }
}

fn invalid(value: Option<&Spanned>, message: &str) -> ConfigError {
    let at = value.map(|v| v.at.clone()).unwrap_or_else(|| Location::new(&Arc::from(Path::new("<config>")), 1, 1));
    ConfigError::Invalid { at, message: message.to_string() }
}

fn expected(value: &Spanned, option: &str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        at: value.at.clone(),
        message: format!("{option}: expected {what}, found {}", value.value.kind()),
    }
}

fn string(value: &Spanned, option: &str) -> Result<String, ConfigError> {
    match &value.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(expected(value, option, "a string")),
    }
}

/// A list option; a single value counts as a one-item list, as in Prosody.
fn items(value: &Spanned) -> Vec<&Spanned> {
    match &value.value {
        Value::Table(table) => table.array.iter().collect(),
        _ => vec![value],
    }
}

fn spanned_string_list(value: &Spanned, option: &str) -> Result<Vec<(String, Location)>, ConfigError> {
    items(value).into_iter().map(|item| Ok((string(item, option)?, item.at.clone()))).collect()
}

fn string_list(value: &Spanned, option: &str) -> Result<Vec<String>, ConfigError> {
    Ok(spanned_string_list(value, option)?.into_iter().map(|(s, _)| s).collect())
}

fn port_list(value: &Spanned, option: &str) -> Result<Vec<u16>, ConfigError> {
    items(value)
        .into_iter()
        .map(|item| match &item.value {
            Value::Integer(port) => u16::try_from(*port).map_err(|_| ConfigError::Invalid {
                at: item.at.clone(),
                message: format!("{option}: {port} is not a port number (0-65535)"),
            }),
            _ => Err(expected(item, option, "a port number")),
        })
        .collect()
}

fn positive_integer(value: Option<&Spanned>, option: &str) -> Result<Option<u64>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    match &value.value {
        Value::Integer(n) if *n > 0 => Ok(Some(*n as u64)),
        _ => Err(expected(value, option, "a positive integer")),
    }
}

/// Declared module options as JSON, keyed by name, for one host.
pub fn module_options(options: &HostOptions, declared: &[String]) -> BTreeMap<String, String> {
    declared
        .iter()
        .filter_map(|name| options.get(name).map(|value| (name.clone(), value.value.to_json().to_string())))
        .collect()
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

    fn config_error(text: &str) -> String {
        config(text).unwrap_err().to_string()
    }
}

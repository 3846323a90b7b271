//! The HTTP hosts of a config: `VirtualHost`s and `Component "x" "http"`s,
//! the modules enabled on each (found in `plugin_paths` or built in), and
//! their per-host options (`http_host`, `http_external_url`, `http_paths`,
//! `http_files_dir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::typed::{self, spanned_string_list, string};
use super::{BuiltinNames, ConfigError, HostSection, Location, Options, SectionKind, Spanned, Value};

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
    /// Where the file-share module keeps uploads: `http_file_share_dir`,
    /// else `<data_path>/<host, encoded>/http_file_share` (as Prosody stores
    /// them). Created when the module is mounted, and granted to it alone.
    pub file_share_dir: PathBuf,
    /// `http_paths`: app name → base path, the host's over the global ones.
    pub paths: BTreeMap<String, String>,
    /// `http_xmpp_server`: the XMPP server's client port the XMPP transport
    /// modules (`websocket`) bridge to, and are granted to connect to.
    pub xmpp_server: super::ConnectTarget,
}

/// Where the XMPP transports connect by default: the XMPP server on this
/// machine (`localhost`), on its client port.
pub const DEFAULT_XMPP_PORT: u16 = 5222;

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

/// Every host section that serves HTTP, in config order.
pub(super) fn hosts(
    global: &Arc<Options>,
    sections: &[HostSection],
    resolver: &ModuleResolver,
    data_path: &Path,
) -> Result<Vec<HostConfig>, ConfigError> {
    let mut hosts = Vec::new();
    for section in sections.iter().cloned() {
        if section.options.get("enabled").is_some_and(|v| v.value == Value::Bool(false)) {
            continue;
        }
        let options = HostOptions { host: section.options.clone(), global: Arc::clone(global) };
        let names = match &section.kind {
            SectionKind::VirtualHost => host_module_names(global, &section.options, true)?,
            SectionKind::Component { module: Some(module) } => {
                let mut names = Vec::new();
                if module != "http" {
                    names.push((module.clone(), section.at.clone()));
                }
                names.extend(host_module_names(global, &section.options, false)?);
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
        let file_share_dir = match options.get("http_file_share_dir") {
            Some(value) => value.at.base_dir().join(string(value, "http_file_share_dir")?),
            None => data_path.join(prosody_store_name(&section.name)).join("http_file_share"),
        };
        let paths = http_paths(&options)?;
        let xmpp_server = match options.get("http_xmpp_server") {
            Some(value) => super::ConnectTarget::parse(&string(value, "http_xmpp_server")?).map_err(|message| {
                ConfigError::Invalid { at: value.at.clone(), message: format!("http_xmpp_server: {message}") }
            })?,
            None => super::ConnectTarget { host: "localhost".into(), port: DEFAULT_XMPP_PORT },
        };
        hosts.push(HostConfig {
            xmpp_server,
            name: section.name,
            paths,
            http_host,
            kind: section.kind,
            modules,
            external_url,
            options,
            files_dir,
            file_share_dir,
        });
    }

    Ok(hosts)
}

/// `http_paths`: app name → base path, the host's entries over the global
/// ones. Each value must be a string.
fn http_paths(options: &HostOptions) -> Result<BTreeMap<String, String>, ConfigError> {
    const OPTION: &str = "http_paths";
    let mut paths = BTreeMap::new();
    for value in [options.get_global(OPTION), options.get_own(OPTION)].into_iter().flatten() {
        let Value::Table(table) = &value.value else {
            return Err(typed::expected(value, OPTION, "a table of app = \"/path\" entries"));
        };
        if let Some(item) = table.array.first() {
            return Err(typed::expected(item, OPTION, "app = \"/path\" entries, like { files = \"/static\" }"));
        }
        for (app, entry) in &table.map {
            paths.insert(app.to_string(), string(entry, &format!("{OPTION}.{app}"))?);
        }
    }
    Ok(paths)
}

/// `modules_enabled`/`modules_disabled` combined as Prosody does (spec §1.5):
/// global modules load onto VirtualHosts but never onto Components; the
/// global `modules_disabled` does not remove a host's own `modules_enabled`.
pub(super) fn host_module_names(
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

pub(super) struct ModuleResolver<'a> {
    pub plugin_paths: &'a [PathBuf],
    pub builtins: BuiltinNames<'a>,
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

/// A host's directory name under `data_path`, encoded as Prosody's
/// datamanager does: every byte but ASCII letters and digits as `%xx`.
fn prosody_store_name(host: &str) -> String {
    host.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02x}") })
        .collect()
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
    if declared.iter().any(|name| name == "http_file_share_dir") {
        let dir = serde_json::Value::String(host.file_share_dir.display().to_string()).to_string();
        options.insert("http_file_share_dir".into(), dir);
    }
    options
}

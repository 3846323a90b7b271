//! What each module may touch (`http_module_grants`), and what Prosody's
//! own modules are given to work as configured there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::typed::{self, boolean, string_list};
use super::{Config, ConfigError, HostConfig, Spanned, Value};

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
    /// Where it may open long-lived TCP connections (`canto:http/links`).
    pub connect: Arc<[ConnectTarget]>,
    /// Whether it may read the server's metrics (`canto:http/metrics`).
    pub metrics: bool,
    /// Key-value stores (`http_stores`) it may open with `wasi:keyvalue`.
    pub stores: Arc<[String]>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.read_dirs.is_empty()
            && self.write_dirs.is_empty()
            && self.env.is_empty()
            && self.outgoing.is_empty()
            && self.connect.is_empty()
            && !self.metrics
            && self.stores.is_empty()
    }
}

/// A `host:port` a module may connect to, as written in its grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTarget {
    pub host: String,
    pub port: u16,
}

impl ConnectTarget {
    /// `example.com:5222`, `127.0.0.1:5222` or `[::1]:5222`; the host is
    /// lowercased.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not host:port");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 || host.contains(['/', ' ', '[', ']']) {
            return Err(bad());
        }
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }
}

impl std::fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `http_module_grants = { files = { dirs = { "/srv/www" } }, store = {
/// dirs_rw = { "/var/lib/store" }, env = { LANG = "C" } } }`. Directories
/// must exist; relative ones are relative to the config file.
pub(super) fn module_grants(
    value: &Spanned,
    stores: &BTreeMap<String, super::StoreConfig>,
) -> Result<BTreeMap<String, Grants>, ConfigError> {
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
                "stores" => {
                    let mut names = Vec::new();
                    for (store, at) in typed::spanned_string_list(field, &name)? {
                        if !stores.contains_key(&store) {
                            let declared = stores.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
                            return Err(ConfigError::Invalid {
                                at,
                                message: format!("{name}: no store '{store}' in http_stores (declared: {declared})"),
                            });
                        }
                        names.push(store);
                    }
                    grants.stores = names.into();
                }
                "outgoing" => {
                    let hosts = string_list(field, &name)?;
                    grants.outgoing = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                }
                "connect" => {
                    let mut targets = Vec::new();
                    for (text, at) in typed::spanned_string_list(field, &name)? {
                        let target = ConnectTarget::parse(&text)
                            .map_err(|message| ConfigError::Invalid { at, message: format!("{name}: {message}") })?;
                        targets.push(target);
                    }
                    grants.connect = targets.into();
                }
                other => {
                    return Err(ConfigError::Invalid {
                        at: field.at.clone(),
                        message: format!(
                            "{OPTION}.{app}: unknown grant '{other}' (expected dirs, dirs_rw, env, outgoing, connect, metrics or stores)"
                        ),
                    });
                }
            }
        }
        all.insert(app.to_string(), grants);
    }
    Ok(all)
}

/// Prosody's XMPP transports, which canto serves by bridging to an XMPP
/// server (`http_xmpp_server`).
pub const XMPP_TRANSPORTS: &[&str] = &["websocket", "bosh"];

impl Config {
    /// What `http_module_grants` gives `app` on `host`, plus what Prosody's
    /// own modules need: the files module reads the host's
    /// `http_files_dir`, the openmetrics module reads the metrics, the XMPP
    /// transports connect to the host's `http_xmpp_server`, the file-share
    /// module writes its uploads directory.
    pub fn grants_for(&self, host: &HostConfig, app: &str) -> Grants {
        let mut grants = self.grants.get(app).cloned().unwrap_or_default();
        grants.metrics |= app == "openmetrics";
        if XMPP_TRANSPORTS.contains(&app) && !grants.connect.contains(&host.xmpp_server) {
            grants.connect = grants.connect.iter().cloned().chain([host.xmpp_server.clone()]).collect();
        }
        if app == "file_share" && !grants.write_dirs.contains(&host.file_share_dir) {
            grants.write_dirs.insert(0, host.file_share_dir.clone());
        }
        if app == "files"
            && let Some(dir) = &host.files_dir
            && !grants.read_dirs.contains(dir)
        {
            grants.read_dirs.push(dir.clone());
        }
        grants
    }
}

/// Default time a keyed link may go untouched by its module.
pub const DEFAULT_CONNECT_IDLE_TIMEOUT_SECS: u64 = 120;

/// How modules' outgoing TCP connections are made (`canto:http/links`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectSettings {
    /// Certificates trusted besides the system's, for links over TLS
    /// (`http_connect_ca_file`, PEM).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// A keyed link untouched by its module this long is closed
    /// (`http_connect_idle_timeout`, seconds).
    pub idle_timeout: std::time::Duration,
}

pub(super) fn connect_settings(global: &super::Options) -> Result<ConnectSettings, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    let extra_roots = match global.get("http_connect_ca_file") {
        Some(value) => {
            let path = value.at.base_dir().join(typed::string(value, "http_connect_ca_file")?);
            let invalid = |message: String| ConfigError::Invalid { at: value.at.clone(), message };
            let pem = std::fs::read(&path)
                .map_err(|error| invalid(format!("http_connect_ca_file: cannot read {}: {error}", path.display())))?;
            let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|error| invalid(format!("http_connect_ca_file: {}: {error}", path.display())))?;
            if certs.is_empty() {
                return Err(invalid(format!("http_connect_ca_file: {} holds no PEM certificate", path.display())));
            }
            certs
        }
        None => Vec::new(),
    };
    let idle_timeout = typed::seconds(global, "http_connect_idle_timeout", DEFAULT_CONNECT_IDLE_TIMEOUT_SECS)?;
    Ok(ConnectSettings { extra_roots, idle_timeout })
}

#[cfg(test)]
mod tests {
    use super::ConnectTarget;

    #[test]
    fn connect_targets_are_host_and_port() {
        let parse = ConnectTarget::parse;
        assert_eq!(parse("LocalHost:5222"), Ok(ConnectTarget { host: "localhost".into(), port: 5222 }));
        assert_eq!(parse("[::1]:5222").map(|t| t.to_string()), Ok("[::1]:5222".to_string()));
        assert_eq!(parse("127.0.0.1:80").map(|t| t.host), Ok("127.0.0.1".to_string()));
        for bad in ["localhost", "localhost:", ":5222", "localhost:0", "localhost:99999", "a b:1", "http://x:1"] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}

//! The options that say where HTTPS certificates come from (spec §3f):
//! `certificates`, `https_ssl` / `ssl`, `https_certificate`, and per host
//! `https_host` and `certificate`. Paths are resolved here, against the
//! file that set them; reading the files is the `tls` module's job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::typed::{expected, string};
use super::{ConfigError, HostConfig, Location, Spanned, TableKey, Value};

/// Everything the https service needs to pick certificates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsSettings {
    /// `certificates`: the directory scanned for certificates (default
    /// `certs` beside the config file).
    pub certificates_dir: PathBuf,
    /// The global `https_ssl`: one certificate for every name (no SNI).
    pub https_ssl: Option<SslOption>,
    /// The global `ssl`: the certificate for clients whose name no host
    /// certificate covers.
    pub ssl: Option<SslOption>,
    /// `https_certificate`: the default certificate, used only when the
    /// certificates directory yields none.
    pub https_certificate: Option<PortPaths>,
    /// The global `certificate`: where `find_host_cert` looks for hosts
    /// that set none of their own.
    pub certificate: Option<PathBuf>,
    pub hosts: Vec<HostTls>,
}

/// One host's certificate options.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTls {
    /// The section name (`VirtualHost "example.com"`).
    pub host: String,
    /// The name clients ask for in SNI: `https_host`, else `http_host`,
    /// else the host name.
    pub sni_name: String,
    /// The host's own `certificate` option (a file or a directory).
    pub certificate: Option<PathBuf>,
    /// The host's own `https_ssl`, overriding everything for its name.
    pub https_ssl: Option<SslOption>,
}

/// A LuaSec-style `ssl` table: `{ certificate = ...; key = ...; [5281] = { ... } }`.
/// Other LuaSec keys (protocol, ciphers, ...) are rustls' business and ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct SslOption {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Per-port sub-tables, whose keys win over the top level.
    pub by_port: BTreeMap<u16, (Option<PathBuf>, Option<PathBuf>)>,
    pub at: Location,
}

/// A certificate given by hand for one port: its key may be missing,
/// which is an error the https service reports.
#[derive(Clone, Debug, PartialEq)]
pub struct CertPair {
    pub certificate: PathBuf,
    pub key: Option<PathBuf>,
    pub at: Location,
}

impl SslOption {
    /// The certificate this option sets for `port`, if any.
    pub fn pair_for(&self, port: u16) -> Option<CertPair> {
        let (port_cert, port_key) = self.by_port.get(&port).cloned().unwrap_or_default();
        let certificate = port_cert.or_else(|| self.certificate.clone())?;
        let key = port_key.or_else(|| self.key.clone());
        Some(CertPair { certificate, key, at: self.at.clone() })
    }
}

/// `https_certificate = "path"` or `{ [5281] = "path", default = "path" }`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortPaths {
    pub default: Option<PathBuf>,
    pub by_port: BTreeMap<u16, PathBuf>,
}

impl PortPaths {
    pub fn for_port(&self, port: u16) -> Option<&PathBuf> {
        self.by_port.get(&port).or(self.default.as_ref())
    }
}

pub(super) fn tls_settings(
    global: &super::Options,
    config_dir: PathBuf,
    hosts: &[HostConfig],
) -> Result<TlsSettings, ConfigError> {
    let certificates_dir = match global.get("certificates") {
        Some(value) => value.at.base_dir().join(string(value, "certificates")?),
        None => config_dir.join("certs"),
    };
    let ssl_option = |name: &str| global.get(name).map(|value| ssl_table(value, name)).transpose();
    let mut host_settings = Vec::new();
    for host in hosts {
        let sni_name = match host.options.get("https_host") {
            Some(value) => string(value, "https_host")?,
            None => host.http_host.clone(),
        };
        let certificate = match host.options.get_own("certificate") {
            Some(value) => Some(value.at.base_dir().join(string(value, "certificate")?)),
            None => None,
        };
        let https_ssl = host.options.get_own("https_ssl").map(|value| ssl_table(value, "https_ssl")).transpose()?;
        host_settings.push(HostTls { host: host.name.clone(), sni_name, certificate, https_ssl });
    }
    Ok(TlsSettings {
        certificates_dir,
        https_ssl: ssl_option("https_ssl")?,
        ssl: ssl_option("ssl")?,
        https_certificate: global.get("https_certificate").map(port_paths).transpose()?,
        certificate: match global.get("certificate") {
            Some(value) => Some(value.at.base_dir().join(string(value, "certificate")?)),
            None => None,
        },
        hosts: host_settings,
    })
}

fn ssl_table(value: &Spanned, option: &str) -> Result<SslOption, ConfigError> {
    let Value::Table(table) = &value.value else { return Err(expected(value, option, "a table")) };
    let path = |field: &Spanned, name: &str| -> Result<PathBuf, ConfigError> {
        Ok(field.at.base_dir().join(string(field, name)?))
    };
    let mut result = SslOption { certificate: None, key: None, by_port: BTreeMap::new(), at: value.at.clone() };
    for (key, field) in &table.map {
        match key {
            TableKey::String(name) if name == "certificate" => {
                result.certificate = Some(path(field, &format!("{option}.certificate"))?)
            }
            TableKey::String(name) if name == "key" => result.key = Some(path(field, &format!("{option}.key"))?),
            TableKey::Integer(port) => {
                let port = port_key(*port, field, option)?;
                let Value::Table(sub) = &field.value else {
                    return Err(expected(field, &format!("{option}[{port}]"), "a table"));
                };
                let entry: &mut (Option<PathBuf>, Option<PathBuf>) = result.by_port.entry(port).or_default();
                if let Some(cert) = sub.get("certificate") {
                    entry.0 = Some(path(cert, &format!("{option}[{port}].certificate"))?);
                }
                if let Some(key) = sub.get("key") {
                    entry.1 = Some(path(key, &format!("{option}[{port}].key"))?);
                }
            }
            // protocol, ciphers, options, dhparam, ...: rustls picks safe ones.
            TableKey::String(_) => {}
        }
    }
    Ok(result)
}

fn port_paths(value: &Spanned) -> Result<PortPaths, ConfigError> {
    const OPTION: &str = "https_certificate";
    let path =
        |field: &Spanned| -> Result<PathBuf, ConfigError> { Ok(field.at.base_dir().join(string(field, OPTION)?)) };
    match &value.value {
        Value::String(_) => Ok(PortPaths { default: Some(path(value)?), by_port: BTreeMap::new() }),
        Value::Table(table) => {
            let mut result = PortPaths { default: None, by_port: BTreeMap::new() };
            for (key, field) in &table.map {
                match key {
                    TableKey::String(name) if name == "default" => result.default = Some(path(field)?),
                    TableKey::Integer(port) => {
                        result.by_port.insert(port_key(*port, field, OPTION)?, path(field)?);
                    }
                    TableKey::String(other) => {
                        return Err(ConfigError::Invalid {
                            at: field.at.clone(),
                            message: format!("{OPTION}: unknown key '{other}' (expected a port number or default)"),
                        });
                    }
                }
            }
            Ok(result)
        }
        _ => Err(expected(value, OPTION, "a path or a table of port = path")),
    }
}

fn port_key(port: i64, field: &Spanned, option: &str) -> Result<u16, ConfigError> {
    u16::try_from(port).map_err(|_| ConfigError::Invalid {
        at: field.at.clone(),
        message: format!("{option}: [{port}] is not a port number"),
    })
}

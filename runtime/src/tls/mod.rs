//! HTTPS certificates: which certificate each https port serves for each
//! name a client asks for (SNI), found the way Prosody finds them (spec
//! §3f), and re-read when the files change or on reload.
//!
//! Per port, a [`CertTable`] is decided whole: `https_ssl` forces one
//! certificate for every name; otherwise each host's SNI name maps to its
//! certificate (index entry, wildcard, `certificate` option, parent
//! domain), other names are looked up in the index, and clients without
//! SNI get the port's default (the global `ssl`, else the first indexed
//! certificate, else `https_certificate`, else `certs/https.crt`). Tables
//! are swapped atomically, so a handshake always sees one consistent set
//! and open connections keep the certificate they started with.

mod accept;
mod load;
mod lookup;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{CertPair, Location, TlsSettings};
pub use accept::HttpsAcceptor;
use load::CertLoader;
pub use load::{CertError, LoadedCert};
use lookup::{CertIndex, Found};

/// Why an https port cannot open.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("No certificate present in SSL/TLS configuration for https port {port}")]
    NoCertificate { port: u16 },
    #[error("No key present in SSL/TLS configuration for https port {port} ({at}: certificate {} has no key)", cert.display())]
    NoKey { port: u16, at: Location, cert: PathBuf },
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error("SSL/TLS: Error initialising for https port {port}: {reason}")]
    Setup { port: u16, reason: String },
}

/// What one https port serves.
#[derive(Debug, Default)]
struct CertTable {
    /// `https_ssl`: this certificate whatever name the client asks for.
    forced: Option<Arc<LoadedCert>>,
    /// Each host's certificate, by its SNI name (lowercase).
    by_name: HashMap<String, Arc<LoadedCert>>,
    /// Names no host claims are looked up here, with Prosody's fallbacks.
    index: CertIndex,
    /// For clients that send no SNI, or a name nothing else covers.
    default: Option<Arc<LoadedCert>>,
}

impl CertTable {
    fn select(&self, sni: Option<&str>) -> Option<Arc<LoadedCert>> {
        if let Some(forced) = &self.forced {
            return Some(Arc::clone(forced));
        }
        let by_name = sni.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name.get(&name).cloned().or_else(|| match lookup::find_host_cert(&self.index, &name, &|_| None) {
                Some(Found::Indexed(cert)) => Some(cert),
                _ => None,
            })
        });
        by_name.or_else(|| self.default.clone())
    }

    fn is_empty(&self) -> bool {
        self.forced.is_none() && self.default.is_none() && self.by_name.is_empty()
    }
}

/// The certificate resolver rustls asks at each handshake on one port.
#[derive(Debug)]
pub struct PortCertificates {
    table: ArcSwap<CertTable>,
}

impl ResolvesServerCert for PortCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.table.load().select(hello.server_name());
        if cert.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; refusing the handshake");
        }
        cert.map(|cert| Arc::clone(&cert.certified))
    }
}

/// The https service's certificates: one table per open port.
#[derive(Default)]
pub struct HttpsCertificates {
    loader: CertLoader,
    ports: BTreeMap<u16, Arc<PortCertificates>>,
}

impl HttpsCertificates {
    /// Decides what `port` serves and returns the acceptor for it; an
    /// error means the port must stay closed.
    pub fn open_port(&mut self, settings: &TlsSettings, port: u16) -> Result<HttpsAcceptor, TlsError> {
        let resolver = match self.ports.get(&port) {
            Some(resolver) => Arc::clone(resolver),
            None => {
                let (table, problems) = build_table(settings, port, &mut self.loader)?;
                log_problems(&problems);
                let resolver = Arc::new(PortCertificates { table: ArcSwap::from_pointee(table) });
                self.ports.insert(port, Arc::clone(&resolver));
                resolver
            }
        };
        acceptor(resolver, port)
    }

    /// Re-reads every open port's certificates. A port whose new set
    /// cannot be built keeps the one it has.
    pub fn reload(&mut self, settings: &TlsSettings) {
        for (port, resolver) in &self.ports {
            match build_table(settings, *port, &mut self.loader) {
                Ok((table, problems)) => {
                    log_problems(&problems);
                    let summary = summarize(&table);
                    resolver.table.store(Arc::new(table));
                    tracing::info!("https port {port}: certificates reloaded ({summary})");
                }
                Err(error) => {
                    tracing::error!("https port {port}: {error}; still serving the certificates loaded before")
                }
            }
        }
    }
}

fn log_problems(problems: &[String]) {
    for problem in problems {
        tracing::warn!("{problem}");
    }
}

fn summarize(table: &CertTable) -> String {
    if let Some(forced) = &table.forced {
        return format!("{} for every name", forced.cert_path.display());
    }
    let mut names: Vec<&str> = table.by_name.keys().map(String::as_str).collect();
    names.sort_unstable();
    let default = table.default.as_ref().map_or("none".to_string(), |c| c.cert_path.display().to_string());
    format!("hosts: {}; default: {default}", if names.is_empty() { "none".into() } else { names.join(", ") })
}

fn acceptor(resolver: Arc<PortCertificates>, port: u16) -> Result<HttpsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Setup { port, reason: error.to_string() })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(HttpsAcceptor::new(config))
}

/// Decides what `port` serves; also returns the problems found on the way
/// (files skipped and why), which do not stop the port.
fn build_table(
    settings: &TlsSettings,
    port: u16,
    loader: &mut CertLoader,
) -> Result<(CertTable, Vec<String>), TlsError> {
    let mut problems = Vec::new();
    let load_pair = |pair: &CertPair, loader: &mut CertLoader| -> Result<Arc<LoadedCert>, TlsError> {
        let key = pair.key.as_ref().ok_or_else(|| TlsError::NoKey {
            port,
            at: pair.at.clone(),
            cert: pair.certificate.clone(),
        })?;
        Ok(loader.load(&pair.certificate, key)?)
    };
    let mut table = CertTable::default();
    if let Some(pair) = settings.https_ssl.as_ref().and_then(|ssl| ssl.pair_for(port)) {
        table.forced = Some(load_pair(&pair, loader)?);
        return Ok((table, problems));
    }
    table.index = CertIndex::scan(&settings.certificates_dir, loader, &mut problems);
    table.default = match settings.ssl.as_ref().and_then(|ssl| ssl.pair_for(port)) {
        Some(pair) => Some(load_pair(&pair, loader)?),
        None => match table.index.entries().first() {
            Some(first) => Some(Arc::clone(first)),
            None => {
                let configured = settings.https_certificate.as_ref().and_then(|paths| paths.for_port(port));
                let place = configured.unwrap_or(&settings.certificates_dir);
                match lookup::find_cert(place, "https") {
                    Some((cert, key)) => Some(loader.load(&cert, &key)?),
                    None => None,
                }
            }
        },
    };
    // `certificate` for that host, else the global one, else the
    // certificates directory (certmanager's find_cert default).
    let certificate_option = |name: &str| -> Option<PathBuf> {
        let host = settings.hosts.iter().find(|h| h.host.eq_ignore_ascii_case(name));
        let option = host.and_then(|h| h.certificate.clone()).or_else(|| settings.certificate.clone());
        Some(option.unwrap_or_else(|| settings.certificates_dir.clone()))
    };
    for host in &settings.hosts {
        let found = match host.https_ssl.as_ref().and_then(|ssl| ssl.pair_for(port)) {
            Some(pair) => match load_pair(&pair, loader) {
                Ok(cert) => Some(cert),
                Err(error) => {
                    problems.push(format!("host {}: {error}", host.host));
                    None
                }
            },
            None => {
                let found = lookup::find_host_cert(&table.index, &host.sni_name, &certificate_option)
                    .or_else(|| lookup::find_host_cert(&table.index, &host.host, &certificate_option));
                match found {
                    Some(Found::Indexed(cert)) => Some(cert),
                    Some(Found::Files(cert, key)) => match loader.load(&cert, &key) {
                        Ok(cert) => Some(cert),
                        Err(error) => {
                            problems.push(format!("host {}: {error}", host.host));
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        if let Some(cert) = found {
            table.by_name.insert(host.sni_name.to_ascii_lowercase(), cert);
        }
    }
    if table.is_empty() {
        return Err(TlsError::NoCertificate { port });
    }
    Ok((table, problems))
}

/// Every file whose change means the certificates must be re-read: the
/// `certificates` tree and every file or directory an option names.
pub fn watched_paths(settings: &TlsSettings) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    lookup::walk(&settings.certificates_dir, 3, &mut paths);
    let mut named: Vec<PathBuf> = Vec::new();
    for ssl in [&settings.https_ssl, &settings.ssl]
        .into_iter()
        .flatten()
        .chain(settings.hosts.iter().filter_map(|h| h.https_ssl.as_ref()))
    {
        named.extend(ssl.certificate.iter().chain(ssl.key.iter()).cloned());
        for (cert, key) in ssl.by_port.values() {
            named.extend(cert.iter().chain(key.iter()).cloned());
        }
    }
    if let Some(paths) = &settings.https_certificate {
        named.extend(paths.default.iter().chain(paths.by_port.values()).cloned());
    }
    named.extend(
        settings.certificate.iter().chain(settings.hosts.iter().filter_map(|h| h.certificate.as_ref())).cloned(),
    );
    for path in named {
        if path.is_dir() {
            lookup::walk(&path, 1, &mut paths);
        } else {
            // A sibling key (x.crt → x.key) changes with its certificate.
            if let Some(parent) = path.parent() {
                lookup::walk(parent, 0, &mut paths);
            }
            paths.push(path);
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// A Unix time as operators read dates in HTTP headers.
pub(crate) fn format_time(unix: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    httpdate::fmt_http_date(time)
}

/// What `canto check certs` prints: for each https port and each host,
/// the certificate a client asking for the host's name would get, its
/// names and validity, and what is wrong with it; with the number of
/// problems found.
pub fn describe(settings: &TlsSettings, ports: &[u16]) -> (String, usize) {
    let mut out = format!("certificates directory: {}\n", settings.certificates_dir.display());
    let mut problem_count = 0;
    if ports.is_empty() {
        out += "no https ports (https_ports is empty)\n";
        return (out, 0);
    }
    for port in ports {
        let mut loader = CertLoader::default();
        out += &format!("\nhttps port {port}\n");
        let (table, problems) = match build_table(settings, *port, &mut loader) {
            Ok(built) => built,
            Err(error) => {
                out += &format!("  not opened: {error}\n");
                problem_count += 1;
                continue;
            }
        };
        if table.forced.is_some() {
            out += "  https_ssl sets one certificate for every name (no SNI selection)\n";
        }
        let mut rows: Vec<(String, String)> =
            settings.hosts.iter().map(|h| (format!("{} ({})", h.sni_name, h.host), h.sni_name.clone())).collect();
        rows.push(("clients without SNI".into(), String::new()));
        for (label, name) in rows {
            let sni = if name.is_empty() { None } else { Some(name.as_str()) };
            out += &format!("  {label}\n");
            let Some(cert) = table.select(sni) else {
                out += "    no certificate: the handshake is refused\n";
                problem_count += 1;
                continue;
            };
            out +=
                &format!("    certificate {}\n    key         {}\n", cert.cert_path.display(), cert.key_path.display());
            out += &format!("    names       {}\n", cert.names.join(", "));
            out += &format!("    valid       {} to {}\n", format_time(cert.not_before), format_time(cert.not_after));
            if !cert.is_current() {
                let when = if cert.not_after < load::unix_now() { "expired" } else { "not yet valid" };
                out += &format!("    problem:    {when}\n");
                problem_count += 1;
            }
            if let Some(name) = sni
                && !cert.covers(name)
            {
                out += &format!("    problem:    does not cover {name}; browsers will refuse it\n");
                problem_count += 1;
            }
        }
        problem_count += problems.len();
        for problem in problems {
            out += &format!("  problem: {problem}\n");
        }
    }
    (out, problem_count)
}

//! Reading certificate and key files into what rustls serves. The loader
//! remembers the last good version of each pair, so a renewal caught
//! half-written, or a bad new file, never replaces a working certificate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("SSL/TLS: Failed to load '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SSL/TLS: Failed to load '{}': Check that the file contains a certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("SSL/TLS: Failed to load '{}': Check that the file contains a private key", path.display())]
    NoKey { path: PathBuf },
    #[error("SSL/TLS: Failed to load '{}': {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("SSL/TLS: the key in '{}' does not match the certificate in '{}'", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// A certificate chain and its key, ready to serve, with what operators
/// and SNI selection need to know about it.
#[derive(Debug)]
pub struct LoadedCert {
    pub certified: Arc<CertifiedKey>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// DNS names from the subjectAltName extension and the subject CN,
    /// lowercase; wildcards kept as `*.example.com`.
    pub names: Vec<String>,
    /// Validity period, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedCert {
    pub fn is_current(&self) -> bool {
        let now = unix_now();
        self.not_before <= now && now <= self.not_after
    }

    /// Whether a client asking for `name` would accept this certificate
    /// (RFC 6125: a wildcard covers exactly one label).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(parent) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => *pattern == name,
        })
    }
}

pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(elapsed) => elapsed.as_secs() as i64,
        Err(_) => 0,
    }
}

/// (modified time, length) of the certificate and key files.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// Loads certificate/key pairs, reusing unchanged ones.
#[derive(Default)]
pub struct CertLoader {
    loaded: HashMap<(PathBuf, PathBuf), (Stamp, Arc<LoadedCert>)>,
}

impl CertLoader {
    /// Whether this pair loaded before (and so has a version to fall back on).
    pub fn knows(&self, cert: &Path, key: &Path) -> bool {
        self.loaded.contains_key(&(cert.to_path_buf(), key.to_path_buf()))
    }

    /// The pair at these paths. When the files changed and no longer load,
    /// the version loaded before is kept and the reason logged once.
    pub fn load(&mut self, cert: &Path, key: &Path) -> Result<Arc<LoadedCert>, CertError> {
        let stamp = [file_stamp(cert), file_stamp(key)];
        let cache_key = (cert.to_path_buf(), key.to_path_buf());
        if let Some((seen, loaded)) = self.loaded.get(&cache_key)
            && *seen == stamp
        {
            return Ok(Arc::clone(loaded));
        }
        match read_pair(cert, key) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                self.loaded.insert(cache_key, (stamp, Arc::clone(&loaded)));
                Ok(loaded)
            }
            Err(error) => match self.loaded.get_mut(&cache_key) {
                Some((seen, previous)) => {
                    tracing::warn!("{error}; still serving the certificate loaded before");
                    *seen = stamp;
                    Ok(Arc::clone(previous))
                }
                None => Err(error),
            },
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| CertError::Read { path: path.into(), source });
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CertError::Invalid { path: cert_path.into(), reason: error.to_string() })?;
    let Some(leaf) = chain.first() else { return Err(CertError::NoCertificate { path: cert_path.into() }) };
    let (names, not_before, not_after) =
        describe(leaf).map_err(|reason| CertError::Invalid { path: cert_path.into(), reason })?;
    let key_pem = if key_path == cert_path { cert_pem.clone() } else { read(key_path)? };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| CertError::NoKey { path: key_path.into() })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch { cert: cert_path.into(), key: key_path.into() },
        other => CertError::Invalid { path: key_path.into(), reason: other.to_string() },
    })?;
    Ok(LoadedCert {
        certified: Arc::new(certified),
        cert_path: cert_path.into(),
        key_path: key_path.into(),
        names,
        not_before,
        not_after,
    })
}

/// The names and validity of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|error| error.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            let cn = cn.to_ascii_lowercase();
            if !names.contains(&cn) {
                names.push(cn);
            }
        }
    }
    let validity = cert.validity();
    Ok((names, validity.not_before.timestamp(), validity.not_after.timestamp()))
}

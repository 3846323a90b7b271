//! Prosody's certificate lookup (spec §3f, certmanager.lua): the index of
//! the `certificates` directory, `find_cert` for a path and a name, and
//! `find_host_cert` with its wildcard and parent-domain fallbacks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::load::{CertLoader, LoadedCert};

/// How deep below the certificates directory the index looks.
const INDEX_DEPTH: usize = 3;

/// Every usable certificate found under the `certificates` directory, in
/// path order (Prosody's order is unspecified; canto's is stable).
#[derive(Debug, Default)]
pub struct CertIndex {
    entries: Vec<Arc<LoadedCert>>,
}

impl CertIndex {
    /// Scans `dir` as Prosody does: files ending in `.crt` or containing
    /// `fullchain` whose first line is a PEM certificate header, with a
    /// matching key beside them, currently valid. Unusable files are
    /// logged and skipped.
    pub fn scan(dir: &Path, loader: &mut CertLoader, problems: &mut Vec<String>) -> Self {
        let mut files = Vec::new();
        walk(dir, INDEX_DEPTH, &mut files);
        let mut entries = Vec::new();
        for cert_path in files {
            let name = cert_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !(name.ends_with(".crt") || name.contains("fullchain")) {
                continue;
            }
            let Some(key_path) = index_key_path(&cert_path) else { continue };
            // A pair that loaded before goes to the loader even if it looks
            // broken now (a renewal caught mid-write): it keeps the old one.
            let known = loader.knows(&cert_path, &key_path);
            if !known && !starts_with_certificate(&cert_path) {
                continue;
            }
            if !known && !key_path.is_file() {
                problems.push(format!("{}: no key at {}; not using it", cert_path.display(), key_path.display()));
                continue;
            }
            match loader.load(&cert_path, &key_path) {
                Ok(cert) if cert.is_current() => entries.push(cert),
                Ok(cert) => problems.push(format!(
                    "{}: not valid now (valid {} to {}); not using it",
                    cert_path.display(),
                    super::format_time(cert.not_before),
                    super::format_time(cert.not_after)
                )),
                Err(error) => problems.push(format!("{error}; not using it")),
            }
        }
        Self { entries }
    }

    pub fn entries(&self) -> &[Arc<LoadedCert>] {
        &self.entries
    }

    /// The first certificate listing `name`, or `name` with its first label
    /// replaced by `*`.
    pub fn find(&self, name: &str) -> Option<Arc<LoadedCert>> {
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
        let listed = |pattern: &str| self.entries.iter().find(|cert| cert.names.iter().any(|n| n == pattern));
        listed(&name).or_else(|| wildcard.as_deref().and_then(listed)).cloned()
    }
}

/// Every file under `dir`, `depth` directory levels down, skipping
/// dot-directories, in path order.
pub fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if depth > 0 && !hidden {
                walk(&path, depth - 1, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn starts_with_certificate(path: &Path) -> bool {
    use std::io::{BufRead, BufReader, Read};
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut first = String::new();
    // A line longer than a PEM header is not one: never read a whole big file.
    let _ = BufReader::new(file.take(64)).read_line(&mut first);
    first.trim_end_matches(['\r', '\n']) == "-----BEGIN CERTIFICATE-----"
}

/// The key the index expects beside a certificate: `.crt` → `.key`, and
/// `fullchain` → `privkey` in the file name.
fn index_key_path(cert: &Path) -> Option<PathBuf> {
    let name = cert.file_name()?.to_str()?;
    let key_name = match name.strip_suffix(".crt") {
        Some(stem) => format!("{stem}.key"),
        None => name.replace("fullchain", "privkey"),
    };
    Some(cert.with_file_name(key_name))
}

/// `find_cert(path, name)`: the first certificate/key pair that exists,
/// trying `path` itself as a file, then `<path>/<name>.crt`,
/// `<path>/<name>/fullchain.pem` and `<path>/<name>.pem`.
pub fn find_cert(path: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let mut pairs = Vec::new();
    if path.is_file() {
        let text = path.to_string_lossy();
        let key = if let Some(stem) = text.strip_suffix(".crt") {
            PathBuf::from(format!("{stem}.key"))
        } else if let Some(dir) = text.strip_suffix("/fullchain.pem") {
            PathBuf::from(format!("{dir}/privkey.pem"))
        } else {
            path.to_path_buf()
        };
        pairs.push((path.to_path_buf(), key));
    }
    pairs.push((path.join(format!("{name}.crt")), path.join(format!("{name}.key"))));
    pairs.push((path.join(name).join("fullchain.pem"), path.join(name).join("privkey.pem")));
    pairs.push((path.join(format!("{name}.pem")), path.join(format!("{name}.pem"))));
    pairs.into_iter().find(|(cert, key)| cert.is_file() && key.is_file())
}

/// Where a host certificate came from, for `canto check certs`.
#[derive(Clone, Debug)]
pub enum Found {
    Indexed(Arc<LoadedCert>),
    Files(PathBuf, PathBuf),
}

/// `find_host_cert(name)`: the index entry for the name or its wildcard,
/// else `find_cert(certificate option, name)`, else the same for the
/// parent domain, down to the last label. `certificate_option` gives the
/// `certificate` option that applies to a name.
pub fn find_host_cert(
    index: &CertIndex,
    name: &str,
    certificate_option: &dyn Fn(&str) -> Option<PathBuf>,
) -> Option<Found> {
    let mut name = name.to_ascii_lowercase();
    loop {
        if let Some(cert) = index.find(&name) {
            return Some(Found::Indexed(cert));
        }
        if let Some(option) = certificate_option(&name)
            && let Some((cert, key)) = find_cert(&option, &name)
        {
            return Some(Found::Files(cert, key));
        }
        match name.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => name = parent.to_string(),
            _ => return None,
        }
    }
}

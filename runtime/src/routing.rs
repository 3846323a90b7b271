//! Path mounting: which module on a host serves a path.
//!
//! A module mounts at `http_paths[name]` (name without `http_`), else the
//! path it declares, else `/` + its name without `http_`. A request goes to
//! the mount whose base path is the longest prefix on a segment boundary.
//! Modules are mounted as directories: `/base` redirects to `/base/` unless
//! the module asked to serve the bare path itself.

use std::sync::Arc;

use crate::cors::CorsPolicy;
use crate::wasm::{IdleInstances, LoadedModule, MountIdentity};

/// Everything served under one public host name (an `http_host`). Several
/// configured hosts may share one, each mounting its modules at different
/// paths (`http_paths = { register_web = "/register-on-$host" }`).
pub struct Site {
    /// The public name this site answers to (an `http_host`).
    pub name: Arc<str>,
    /// Longest base path first, so the first match is the best one.
    mounts: Vec<Mount>,
}

/// A module mounted at a base path for one configured host.
pub struct Mount {
    /// The configured host this mount belongs to (`VirtualHost "example.com"`).
    pub host: Arc<str>,
    /// `/` or a path without a trailing slash.
    pub base_path: Arc<str>,
    /// The external URL of the base path; ends with `/`.
    pub base_url: Arc<str>,
    /// Whether `/base` reaches the module rather than redirecting to `/base/`.
    pub serve_bare_path: bool,
    /// The app's CORS answer; `None` when CORS is off for it.
    pub cors: Option<Arc<CorsPolicy>>,
    pub module: Arc<LoadedModule>,
    pub identity: Arc<MountIdentity>,
    /// Instances kept between requests, when the module may reuse them.
    pub reuse: Option<Arc<IdleInstances>>,
}

/// Where a request path leads on a site.
pub enum Route<'a> {
    Module(&'a Mount),
    /// `/base` for a directory mount: 301 to `/base/`.
    AddSlash(&'a Mount),
    /// `/` with nothing mounted there: the "canto is running" page.
    Root,
    NotFound,
}

impl Site {
    pub fn new(name: Arc<str>, mut mounts: Vec<Mount>) -> Self {
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.base_path.len()));
        Self { name, mounts }
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Adds a mount unless its base path is taken; returns the holder then.
    pub fn add(&mut self, mount: Mount) -> Result<(), (&Mount, Mount)> {
        if let Some(index) = self.mounts.iter().position(|m| m.base_path == mount.base_path) {
            return Err((&self.mounts[index], mount));
        }
        self.mounts.push(mount);
        self.mounts.sort_by_key(|mount| std::cmp::Reverse(mount.base_path.len()));
        Ok(())
    }

    /// Where `path` (already normalised by [`request_path`]) leads.
    pub fn route(&self, path: &str) -> Route<'_> {
        for mount in &self.mounts {
            if mount.base_path.as_ref() == "/" {
                return Route::Module(mount);
            }
            match path.strip_prefix(&*mount.base_path) {
                Some("") if mount.serve_bare_path => return Route::Module(mount),
                Some("") => return Route::AddSlash(mount),
                Some(rest) if rest.starts_with('/') => return Route::Module(mount),
                _ => {}
            }
        }
        if path == "/" { Route::Root } else { Route::NotFound }
    }
}

/// A request path that cannot be served: it climbs above the root
/// (`/../x`), or its percent-decoded bytes are not UTF-8 text.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidPath;

/// A request path as the server routes it and hands it to the module.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// Percent-decoded (`%2F` included, `+` not), runs of `/` collapsed, a
    /// leading `/` ensured, as Prosody computes it: what routing matches on.
    pub decoded: String,
    /// `decoded` written back as a URI path: only bytes that cannot stand
    /// in a path (and `%`, `?`, `#`) are percent-encoded, as `%XX`. The
    /// module's `wasi:http` path carries this, so decoding it once gives
    /// exactly the text it was routed on.
    pub encoded: String,
}

/// The path routing uses, and the module sees, for the path a client sent;
/// refused if `..` climbs above the root. `.`/`..` segments are otherwise
/// left for the module to judge.
pub fn request_path(raw: &str) -> Result<RequestPath, InvalidPath> {
    let decoded = String::from_utf8(percent_decode(raw)).map_err(|_| InvalidPath)?;
    let mut path = String::with_capacity(decoded.len() + 1);
    if !decoded.starts_with('/') {
        path.push('/');
    }
    for c in decoded.chars() {
        if c == '/' && path.ends_with('/') {
            continue;
        }
        path.push(c);
    }
    let mut depth: i64 = 0;
    for segment in path.split('/').skip(1) {
        match segment {
            ".." => depth -= 1,
            "." | "" => {}
            _ => depth += 1,
        }
        if depth < 0 {
            return Err(InvalidPath);
        }
    }
    Ok(RequestPath { encoded: percent_encode_path(&path), decoded: path })
}

fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = raw.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Percent-encodes what may not stand in a URI path (RFC 3986 `pchar` and
/// `/` stay as they are).
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &byte in path.as_bytes() {
        let plain = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if plain {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Prosody's path normalisation: one trailing `/` removed, a leading `/`
/// added, and `$host` replaced by the host's name.
pub fn normalize_base_path(path: &str, host: &str) -> String {
    let path = path.strip_suffix('/').unwrap_or(path);
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    path.replace("$host", host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> Result<String, InvalidPath> {
        request_path(raw).map(|path| path.decoded)
    }

    fn encoded(raw: &str) -> String {
        request_path(raw).unwrap().encoded
    }

    #[test]
    fn request_paths_are_decoded_collapsed_and_kept_inside_the_root() {
        assert_eq!(decoded("/he%6clo//a///b"), Ok("/hello/a/b".into()));
        assert_eq!(decoded("/a/../b"), Ok("/a/../b".into()));
        assert_eq!(decoded("/../x"), Err(InvalidPath));
        assert_eq!(decoded("/a/../../x"), Err(InvalidPath));
        assert_eq!(decoded("/%2e%2e/x"), Err(InvalidPath));
        assert_eq!(decoded("/%2e%2e%2fx"), Err(InvalidPath));
        assert_eq!(decoded("/100%"), Ok("/100%".into()));
        assert_eq!(decoded("/caf%C3%A9"), Ok("/café".into()));
        assert_eq!(decoded("/bad%FF"), Err(InvalidPath), "not UTF-8 text");
    }

    #[test]
    fn the_module_gets_the_routed_path_encoded_once() {
        assert_eq!(encoded("//st%61tic//a.txt"), "/static/a.txt");
        assert_eq!(encoded("/who-other%2Eexample.net/"), "/who-other.example.net/");
        assert_eq!(encoded("/a%2Fb"), "/a/b");
        assert_eq!(encoded("/a%20b"), "/a%20b");
        assert_eq!(encoded("/a b"), "/a%20b");
        assert_eq!(encoded("/q%3Fx"), "/q%3Fx");
        assert_eq!(encoded("/nul%00"), "/nul%00");
        assert_eq!(encoded("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(encoded("/100%"), "/100%25");
        assert_eq!(encoded("/100%25"), "/100%25");
        assert_eq!(encoded("/a%2525"), "/a%2525", "decoded once, then the % is encoded again");
        assert_eq!(encoded("/x;y=1,2:@!$&'()*+~"), "/x;y=1,2:@!$&'()*+~");
        assert_eq!(encoded("no-slash"), "/no-slash");
    }

    #[test]
    fn paths_normalise_as_prosody_does() {
        assert_eq!(normalize_base_path("/static/$host/", "example.test"), "/static/example.test");
        assert_eq!(normalize_base_path("files", "h"), "/files");
        assert_eq!(normalize_base_path("/", "h"), "/");
    }
}

//! Path mounting: which module on a host serves a path.
//!
//! A module mounts at `http_paths[name]` (name without `http_`), else the
//! path it declares, else `/` + its name without `http_`. A request goes to
//! the mount whose base path is the longest prefix on a segment boundary.

use std::sync::Arc;

use crate::wasm::{LoadedModule, MountIdentity};

/// One HTTP host and what is mounted on it.
pub struct Site {
    /// The host's configured name (`VirtualHost "example.com"`).
    pub name: Arc<str>,
    /// Longest base path first, so the first match is the best one.
    mounts: Vec<Mount>,
}

/// A module mounted at a base path on one host.
pub struct Mount {
    /// `/` or a path without a trailing slash.
    pub base_path: Arc<str>,
    /// The external URL of the base path; ends with `/`.
    pub base_url: Arc<str>,
    pub module: Arc<LoadedModule>,
    pub identity: Arc<MountIdentity>,
}

impl Site {
    pub fn new(name: Arc<str>, mut mounts: Vec<Mount>) -> Self {
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.base_path.len()));
        Self { name, mounts }
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Mount> {
        self.mounts.iter().find(|mount| base_matches(&mount.base_path, path))
    }
}

fn base_matches(base: &str, path: &str) -> bool {
    if base == "/" {
        return true;
    }
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
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

    #[test]
    fn base_paths_match_on_segment_boundaries() {
        assert!(base_matches("/files", "/files"));
        assert!(base_matches("/files", "/files/a/b"));
        assert!(!base_matches("/files", "/filesx"));
        assert!(base_matches("/", "/anything"));
    }

    #[test]
    fn paths_normalise_as_prosody_does() {
        assert_eq!(normalize_base_path("/static/$host/", "example.test"), "/static/example.test");
        assert_eq!(normalize_base_path("files", "h"), "/files");
        assert_eq!(normalize_base_path("/", "h"), "/");
    }
}

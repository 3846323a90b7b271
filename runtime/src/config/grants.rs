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
    /// Whether it may read the server's metrics (`canto:http/metrics`).
    pub metrics: bool,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.read_dirs.is_empty()
            && self.write_dirs.is_empty()
            && self.env.is_empty()
            && self.outgoing.is_empty()
            && !self.metrics
    }
}

/// `http_module_grants = { files = { dirs = { "/srv/www" } }, store = {
/// dirs_rw = { "/var/lib/store" }, env = { LANG = "C" } } }`. Directories
/// must exist; relative ones are relative to the config file.
pub(super) fn module_grants(value: &Spanned) -> Result<BTreeMap<String, Grants>, ConfigError> {
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
                "outgoing" => {
                    let hosts = string_list(field, &name)?;
                    grants.outgoing = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
                }
                other => {
                    return Err(ConfigError::Invalid {
                        at: field.at.clone(),
                        message: format!(
                            "{OPTION}.{app}: unknown grant '{other}' (expected dirs, dirs_rw, env, outgoing or metrics)"
                        ),
                    });
                }
            }
        }
        all.insert(app.to_string(), grants);
    }
    Ok(all)
}

impl Config {
    /// What `http_module_grants` gives `app` on `host`, plus what Prosody's
    /// own modules need: the files module reads the host's
    /// `http_files_dir`, the openmetrics module reads the metrics.
    pub fn grants_for(&self, host: &HostConfig, app: &str) -> Grants {
        let mut grants = self.grants.get(app).cloned().unwrap_or_default();
        grants.metrics |= app == "openmetrics";
        if app == "files"
            && let Some(dir) = &host.files_dir
            && !grants.read_dirs.contains(dir)
        {
            grants.read_dirs.push(dir.clone());
        }
        grants
    }
}

//! The CORS options: the five documented `access_control_*` options,
//! `http_default_cors_enabled` and `http_cors_override`, with Prosody's
//! defaults. The policy built from them is `crate::cors`.

use std::collections::BTreeMap;

use super::typed::{self, boolean, string_list};
use super::{ConfigError, Options, Spanned, Value};

/// The five documented `access_control_*` options and
/// `http_default_cors_enabled`, with Prosody's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsSettings {
    pub enabled: bool,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    /// `["*"]` means any origin.
    pub origins: Vec<String>,
    pub credentials: bool,
    pub max_age: u64,
    /// `http_cors_override`, by app name (module name without `http_`).
    pub overrides: BTreeMap<String, CorsOverride>,
}

/// One app's entry in `http_cors_override`. Lists add names; a map of
/// name to `true`/`false` adds or removes them, as Prosody's headers map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOverride {
    pub enabled: Option<bool>,
    pub credentials: Option<bool>,
    pub methods: Vec<(String, bool)>,
    pub headers: Vec<(String, bool)>,
    pub origins: Option<Vec<String>>,
}

pub(super) fn cors_settings(global: &Options) -> Result<CorsSettings, ConfigError> {
    let list = |name: &str, default: &[&str]| -> Result<Vec<String>, ConfigError> {
        match global.get(name) {
            Some(value) => string_list(value, name),
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
        }
    };
    Ok(CorsSettings {
        enabled: boolean(global.get("http_default_cors_enabled"), "http_default_cors_enabled")?.unwrap_or(true),
        methods: list("access_control_allow_methods", &["GET", "OPTIONS"])?,
        headers: list("access_control_allow_headers", &["Content-Type"])?,
        origins: list("access_control_allow_origins", &["*"])?,
        credentials: boolean(global.get("access_control_allow_credentials"), "access_control_allow_credentials")?
            .unwrap_or(false),
        max_age: match global.get("access_control_max_age") {
            Some(value) => typed::non_negative(value, "access_control_max_age")?,
            None => 7200,
        },
        overrides: match global.get("http_cors_override") {
            Some(value) => cors_overrides(value)?,
            None => BTreeMap::new(),
        },
    })
}

fn cors_overrides(value: &Spanned) -> Result<BTreeMap<String, CorsOverride>, ConfigError> {
    const OPTION: &str = "http_cors_override";
    let Value::Table(table) = &value.value else { return Err(typed::expected(value, OPTION, "a table")) };
    let mut overrides = BTreeMap::new();
    for (app, entry) in &table.map {
        let Value::Table(fields) = &entry.value else {
            return Err(typed::expected(entry, &format!("{OPTION}.{app}"), "a table"));
        };
        let mut result = CorsOverride::default();
        for (key, field) in &fields.map {
            let name = format!("{OPTION}.{app}.{key}");
            match key.to_string().as_str() {
                "enabled" => result.enabled = boolean(Some(field), &name)?,
                "credentials" => result.credentials = boolean(Some(field), &name)?,
                "methods" => result.methods = typed::name_switches(field, &name)?,
                "headers" => result.headers = typed::name_switches(field, &name)?,
                "origins" => result.origins = Some(string_list(field, &name)?),
                other => {
                    return Err(ConfigError::Invalid {
                        at: field.at.clone(),
                        message: format!(
                            "{OPTION}.{app}: unknown field '{other}' (expected enabled, credentials, headers, methods or origins)"
                        ),
                    });
                }
            }
        }
        overrides.insert(app.to_string(), result);
    }
    Ok(overrides)
}

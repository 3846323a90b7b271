//! Prosody's typed option getters: turn a [`Spanned`] value into the type
//! an option needs, or an error naming the option and where it was set.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::lua::Options;
use super::{ConfigError, Location, Spanned, Value};

/// Where a service listens when its own options are unset: a port, and
/// the interfaces option to fall back on before the built-in list.
pub(super) struct ServiceDefaults<'a> {
    pub port: u16,
    pub interfaces_option: &'a str,
    pub interfaces: &'a [IpAddr],
}

/// `<service>_ports` × `<service>_interfaces` (or the singular compat
/// spelling), with Prosody's defaults.
pub(super) fn listeners(
    global: &Options,
    service: &str,
    defaults: ServiceDefaults<'_>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let ports_option = format!("{service}_ports");
    let interfaces_option = format!("{service}_interfaces");
    let ports = match global.get(&ports_option) {
        Some(value) => port_list(value, &ports_option)?,
        None => vec![defaults.port],
    };
    let interfaces = match global
        .get(&interfaces_option)
        .or_else(|| global.get(&format!("{service}_interface")))
        .or_else(|| global.get(defaults.interfaces_option))
    {
        Some(value) => spanned_string_list(value, &interfaces_option)?
            .into_iter()
            .map(|(text, at)| {
                interface_address(&text).ok_or_else(|| ConfigError::Invalid {
                    at,
                    message: format!("{interfaces_option}: {text:?} is not an IP address or \"*\""),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => defaults.interfaces.to_vec(),
    };
    Ok(interfaces.iter().flat_map(|ip| ports.iter().map(|port| SocketAddr::new(*ip, *port))).collect())
}

/// `"*"` is every IPv4 address, as in Prosody; `"::"` every IPv6 one.
pub(super) fn interface_address(text: &str) -> Option<IpAddr> {
    match text {
        "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        _ => text.trim_start_matches('[').trim_end_matches(']').parse().ok(),
    }
}

pub(super) fn expected(value: &Spanned, option: &str, what: &str) -> ConfigError {
    ConfigError::Invalid {
        at: value.at.clone(),
        message: format!("{option}: expected {what}, found {}", value.value.kind()),
    }
}

pub(super) fn string(value: &Spanned, option: &str) -> Result<String, ConfigError> {
    match &value.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(expected(value, option, "a string")),
    }
}

/// A list option; a single value counts as a one-item list, as in Prosody.
pub(super) fn items(value: &Spanned) -> Vec<&Spanned> {
    match &value.value {
        Value::Table(table) => table.array.iter().collect(),
        _ => vec![value],
    }
}

pub(super) fn spanned_string_list(value: &Spanned, option: &str) -> Result<Vec<(String, Location)>, ConfigError> {
    items(value).into_iter().map(|item| Ok((string(item, option)?, item.at.clone()))).collect()
}

pub(super) fn string_list(value: &Spanned, option: &str) -> Result<Vec<String>, ConfigError> {
    Ok(spanned_string_list(value, option)?.into_iter().map(|(s, _)| s).collect())
}

pub(super) fn port_list(value: &Spanned, option: &str) -> Result<Vec<u16>, ConfigError> {
    items(value)
        .into_iter()
        .map(|item| match &item.value {
            Value::Integer(port) => u16::try_from(*port).map_err(|_| ConfigError::Invalid {
                at: item.at.clone(),
                message: format!("{option}: {port} is not a port number (0-65535)"),
            }),
            _ => Err(expected(item, option, "a port number")),
        })
        .collect()
}

/// Prosody's boolean getter: `true`/`"true"`/`1` and `false`/`"false"`/`0`.
pub(super) fn boolean(value: Option<&Spanned>, option: &str) -> Result<Option<bool>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    match &value.value {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Integer(1) => Ok(Some(true)),
        Value::Integer(0) => Ok(Some(false)),
        Value::String(s) if s == "true" => Ok(Some(true)),
        Value::String(s) if s == "false" => Ok(Some(false)),
        _ => Err(expected(value, option, "true or false")),
    }
}

pub(super) fn positive_integer(value: Option<&Spanned>, option: &str) -> Result<Option<u64>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    match &value.value {
        Value::Integer(n) if *n > 0 => Ok(Some(*n as u64)),
        _ => Err(expected(value, option, "a positive integer")),
    }
}

/// A global option in whole seconds, at least 1; `default` when unset.
pub(super) fn seconds(options: &Options, option: &str, default: u64) -> Result<std::time::Duration, ConfigError> {
    Ok(std::time::Duration::from_secs(positive_integer(options.get(option), option)?.unwrap_or(default)))
}

/// A whole number of at least zero (sizes, ages).
pub(super) fn non_negative(value: &Spanned, option: &str) -> Result<u64, ConfigError> {
    match &value.value {
        Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err(expected(value, option, "a whole number of at least 0")),
    }
}

/// IP addresses and CIDR ranges (`"10.0.0.0/8"`, `"::1"`).
pub(super) fn networks(value: &Spanned, option: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    items(value)
        .into_iter()
        .map(|item| {
            let text = string(item, option)?;
            let parsed =
                text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from));
            parsed.ok_or_else(|| ConfigError::Invalid {
                at: item.at.clone(),
                message: format!("{option}: {text:?} is not an IP address or CIDR range"),
            })
        })
        .collect()
}

/// A count that must fit in 32 bits and be at least 1.
pub(super) fn positive_u32(value: &Spanned, option: &str) -> Result<u32, ConfigError> {
    match &value.value {
        Value::Integer(n) if *n > 0 => {
            u32::try_from(*n).map_err(|_| expected(value, option, "a positive integer below 2^32"))
        }
        _ => Err(expected(value, option, "a positive integer")),
    }
}

/// `{ "A", "B" }` (add these) or `{ A = true, B = false }` (add / remove).
pub(super) fn name_switches(value: &Spanned, option: &str) -> Result<Vec<(String, bool)>, ConfigError> {
    let Value::Table(table) = &value.value else { return Err(expected(value, option, "a table")) };
    let mut switches = Vec::new();
    for item in &table.array {
        switches.push((string(item, option)?, true));
    }
    for (key, item) in &table.map {
        let Value::Bool(on) = item.value else { return Err(expected(item, option, "true or false")) };
        switches.push((key.to_string(), on));
    }
    Ok(switches)
}

/// Directories that must exist; relative paths are relative to the file
/// they were written in.
pub(super) fn existing_dirs(value: &Spanned, option: &str) -> Result<Vec<std::path::PathBuf>, ConfigError> {
    items(value)
        .into_iter()
        .map(|item| {
            let path = item.at.base_dir().join(string(item, option)?);
            if path.is_dir() {
                Ok(path)
            } else {
                Err(ConfigError::Invalid {
                    at: item.at.clone(),
                    message: format!("{option}: {} is not a directory", path.display()),
                })
            }
        })
        .collect()
}

/// `{ NAME = "value", … }`.
pub(super) fn string_map(value: &Spanned, option: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let Value::Table(table) = &value.value else { return Err(expected(value, option, "a table of strings")) };
    table.map.iter().map(|(key, item)| Ok((key.to_string(), string(item, option)?))).collect()
}

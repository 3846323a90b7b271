//! Module options as Prosody reads them, from the JSON `context.config-option`
//! gives: scalars, lists and booleans, with a log line for a bad value.

use canto_sdk::{context, log};
use serde_json::Value;

/// A declared config option's JSON value; invalid JSON is logged and unset.
pub fn option(name: &str) -> Option<Value> {
    let text = context::config_option(name)?;
    serde_json::from_str(&text)
        .inspect_err(|error| log::log(log::Level::Warn, &format!("option {name} is not valid JSON: {error}")))
        .ok()
}

/// A string option. Like Prosody's scalar getters, a list means its first
/// item and a number its text.
pub fn option_string(name: &str) -> Option<String> {
    fn scalar(value: Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text),
            Value::Number(number) => Some(number.to_string()),
            Value::Array(items) => items.into_iter().next().and_then(scalar),
            _ => None,
        }
    }
    let value = option(name)?;
    let text = scalar(value.clone());
    if text.is_none() {
        log::log(log::Level::Warn, &format!("option {name} should be a string, not {value}"));
    }
    text
}

/// A list option; a single string is a one-item list, as in Prosody.
pub fn option_strings(name: &str) -> Option<Vec<String>> {
    match option(name)? {
        Value::String(text) => Some(vec![text]),
        Value::Array(items) => Some(items.into_iter().filter_map(|item| item.as_str().map(String::from)).collect()),
        other => {
            log::log(log::Level::Warn, &format!("option {name} should be a list of strings, not {other}"));
            None
        }
    }
}

/// A boolean option, read as Prosody reads one: `true`, `"true"` or `1`,
/// and `false`, `"false"` or `0`.
pub fn option_bool(name: &str) -> Option<bool> {
    let value = option(name)?;
    match &value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text == "true" => Some(true),
        Value::String(text) if text == "false" => Some(false),
        Value::Number(number) if number.as_f64() == Some(1.0) => Some(true),
        Value::Number(number) if number.as_f64() == Some(0.0) => Some(false),
        _ => {
            log::log(log::Level::Warn, &format!("option {name} should be true or false, not {value}"));
            None
        }
    }
}

//! Where config text came from: source locations and the values the Lua
//! reader produces, before any HTTP meaning is attached to them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a config file, for error messages: `file:line:column`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

impl Location {
    pub fn new(file: &Arc<Path>, line: usize, column: usize) -> Self {
        Self { file: Arc::clone(file), line, column }
    }

    /// The directory relative paths in this file resolve against.
    pub fn base_dir(&self) -> PathBuf {
        self.file.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// A config value as Lua produced it. `nil` never appears: assigning nil
/// unsets an option.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Integer(i64),
    Float(f64),
    String(String),
    Table(Table),
}

impl Value {
    /// What the value is, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Integer(_) | Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Table(_) => "a table",
        }
    }

    /// The value as JSON, for modules reading their options.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => (*b).into(),
            Value::Integer(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into),
            Value::String(s) => s.clone().into(),
            Value::Table(table) if table.map.is_empty() => {
                table.array.iter().map(|item| item.value.to_json()).collect()
            }
            Value::Table(table) => {
                // Mixed tables: array items take keys "1", "2", … as in Lua.
                let mut object = serde_json::Map::new();
                for (index, item) in table.array.iter().enumerate() {
                    object.insert((index + 1).to_string(), item.value.to_json());
                }
                for (key, item) in &table.map {
                    object.insert(key.to_string(), item.value.to_json());
                }
                serde_json::Value::Object(object)
            }
        }
    }
}

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    pub value: Value,
    pub at: Location,
}

/// A Lua table, split into its array part and its keyed part.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub array: Vec<Spanned>,
    pub map: Vec<(TableKey, Spanned)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Spanned> {
        self.map.iter().rev().find(|(k, _)| matches!(k, TableKey::String(s) if s == key)).map(|(_, v)| v)
    }
}

/// Keys of the keyed part of a table: `name = v`, `["name"] = v`, `[5281] = v`.
#[derive(Clone, Debug, PartialEq)]
pub enum TableKey {
    String(String),
    Integer(i64),
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableKey::String(s) => f.write_str(s),
            TableKey::Integer(i) => write!(f, "{i}"),
        }
    }
}

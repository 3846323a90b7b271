//! Reads Prosody's config dialect: the declarative subset of Lua that real
//! `prosody.cfg.lua` files use, into sections of options with locations.
//!
//! Supported: `--` and `--[[ ]]` comments; strings in all quote styles with
//! Lua escapes; integers and floats; `true`/`false`/`nil`; tables (array and
//! keyed parts, nested, `,` or `;` separators); `name = value`; `..`
//! concatenation; `==`/`~=`; `ENV_NAME` variables; `VirtualHost`/`Host`,
//! `Component "x"`, `Component "x" "module"`, their table forms; and
//! `Include` with a glob on the last path component. Anything else is an
//! error naming file:line:column: a config that silently half-loads is worse
//! than one that refuses to load.
//!
//! full_moon parses the Lua; this module only walks its syntax tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use full_moon::ast::{self, Expression, Field, FunctionArgs, Stmt};
use full_moon::node::Node;
use full_moon::tokenizer::{StringLiteralQuoteType, Symbol, TokenReference, TokenType};

use super::source::{Location, Spanned, Table, TableKey, Value};
use super::{ConfigError, text};

/// Options in one scope, in the order they were set; the last value wins.
#[derive(Clone, Debug, Default)]
pub struct Options {
    entries: Vec<(String, Spanned)>,
}

impl Options {
    pub fn get(&self, name: &str) -> Option<&Spanned> {
        self.entries.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Spanned)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn set(&mut self, name: String, value: Option<Spanned>) {
        self.entries.retain(|(k, _)| *k != name);
        if let Some(value) = value {
            self.entries.push((name, value));
        }
    }
}

/// What opened a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionKind {
    VirtualHost,
    /// `Component "x"` (external, `module: None`) or `Component "x" "module"`.
    Component {
        module: Option<String>,
    },
}

/// A `VirtualHost` or `Component` section and the options set inside it.
#[derive(Clone, Debug)]
pub struct HostSection {
    pub name: String,
    pub kind: SectionKind,
    pub at: Location,
    pub options: Options,
}

/// A whole config: global options, host sections, and non-fatal warnings.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    pub global: Options,
    pub hosts: Vec<HostSection>,
    pub warnings: Vec<String>,
}

/// Looks up `ENV_*` variables; tests pass their own.
pub type EnvLookup<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// Reads a config file and everything it includes.
pub fn read_file(path: &Path, env: EnvLookup<'_>) -> Result<RawConfig, ConfigError> {
    let file = text::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let mut config = read_str(path, &file.text, env)?;
    config.warnings.splice(0..0, file.warning);
    Ok(config)
}

/// Reads config text; `path` names it in messages and anchors relative
/// `Include`s.
pub fn read_str(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<RawConfig, ConfigError> {
    let read = || {
        let mut reader = Reader { config: RawConfig::default(), env, depth: 0 };
        reader.chunk(Arc::from(path), text)?;
        Ok(reader.config)
    };
    // The parser recurses once per nesting level; [`text::check_bounds`]
    // bounds the levels, and this stack holds them wherever the config is
    // read (a reload runs on a runtime worker with a small stack).
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new().name("config".into()).stack_size(PARSER_STACK_BYTES);
        match reader.spawn_scoped(scope, read) {
            Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(source) => Err(ConfigError::Read { path: path.to_path_buf(), source }),
        }
    })
}

/// Stack for reading a config: ample for [`text::MAX_NESTING`] and
/// [`text::MAX_OPERATORS`] levels (reserved, not committed, memory).
const PARSER_STACK_BYTES: usize = 64 << 20;

/// How deep `Include` may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

struct Reader<'e> {
    config: RawConfig,
    env: EnvLookup<'e>,
    depth: usize,
}

/// Where assignments currently go.
#[derive(Clone, Copy)]
enum Scope {
    Global,
    Host(usize),
}

impl Reader<'_> {
    fn chunk(&mut self, file: Arc<Path>, code: &str) -> Result<(), ConfigError> {
        text::check_bounds(&file, code)?;
        // full_moon 3.0 panics on a few inputs (a stray backtick reaches an
        // `unreachable!`); a config must get an error, never a crash.
        let parsed = std::panic::catch_unwind(|| full_moon::parse(code)).map_err(|_| ConfigError::Invalid {
            at: Location::new(&file, 1, 1),
            message: "syntax error: the Lua parser gave up on this file (is there a stray ` character?)".into(),
        })?;
        let ast = parsed.map_err(|errors| match errors.first() {
            Some(first) => {
                let (start, _) = first.range();
                ConfigError::Invalid {
                    at: Location::new(&file, start.line(), start.character()),
                    message: format!("syntax error: {}", first.error_message()),
                }
            }
            None => ConfigError::Invalid { at: Location::new(&file, 1, 1), message: "syntax error".into() },
        })?;
        // Each file starts in global scope, as Prosody parses includes with a
        // fresh environment.
        let mut scope = Scope::Global;
        for stmt in ast.nodes().stmts() {
            self.statement(&file, stmt, &mut scope)?;
        }
        if let Some(last) = ast.nodes().last_stmt() {
            return Err(invalid(&file, last, "`return`/`break` is not part of a config"));
        }
        Ok(())
    }

    fn statement(&mut self, file: &Arc<Path>, stmt: &Stmt, scope: &mut Scope) -> Result<(), ConfigError> {
        match stmt {
            Stmt::Assignment(assignment) => {
                let mut vars = assignment.variables().iter();
                let mut exprs = assignment.expressions().iter();
                let (Some(ast::Var::Name(name)), None, Some(expr), None) =
                    (vars.next(), vars.next(), exprs.next(), exprs.next())
                else {
                    return Err(invalid(file, stmt, "expected `name = value` (one option per line)"));
                };
                let name = name.token().to_string();
                let value = self.expression(file, expr)?;
                let options = self.options(*scope);
                if options.get(&name).is_some_and(|old| *old.at.file == **file) {
                    let at = location(file, stmt);
                    self.config.warnings.push(format!("{}:{}: Duplicate option '{name}'", at.file.display(), at.line));
                }
                self.options(*scope).set(name, value);
                Ok(())
            }
            Stmt::FunctionCall(call) => self.directive(file, call, scope),
            Stmt::LocalAssignment(_) => Err(invalid(file, stmt, "`local` variables are not supported in a config")),
            Stmt::FunctionDeclaration(_) | Stmt::LocalFunction(_) => {
                Err(invalid(file, stmt, "functions are not supported in a config"))
            }
            Stmt::If(_) => Err(invalid(file, stmt, "`if` is not supported in a config")),
            Stmt::While(_) | Stmt::Repeat(_) | Stmt::NumericFor(_) | Stmt::GenericFor(_) => {
                Err(invalid(file, stmt, "loops are not supported in a config"))
            }
            _ => Err(invalid(file, stmt, "this statement is not supported in a config")),
        }
    }

    fn options(&mut self, scope: Scope) -> &mut Options {
        match scope {
            Scope::Global => &mut self.config.global,
            Scope::Host(index) => &mut self.config.hosts[index].options,
        }
    }

    /// `VirtualHost "x"`, `Component "x" "mod" { ... }`, `Include "f"`.
    fn directive(&mut self, file: &Arc<Path>, call: &ast::FunctionCall, scope: &mut Scope) -> Result<(), ConfigError> {
        let ast::Prefix::Name(name) = call.prefix() else {
            return Err(invalid(file, call, "expected a directive such as `VirtualHost \"example.com\"`"));
        };
        let directive = name.token().to_string();
        let mut args = Vec::new();
        for suffix in call.suffixes() {
            let ast::Suffix::Call(ast::Call::AnonymousCall(arg)) = suffix else {
                return Err(invalid(file, suffix, "method calls and indexing are not supported in a config"));
            };
            args.push(self.call_argument(file, arg)?);
        }
        let at = location(file, call);
        match directive.as_str() {
            "VirtualHost" | "Host" | "host" => self.open_host(&at, args, scope),
            "Component" | "component" => self.open_component(&at, args, scope),
            "Include" | "include" => {
                let [Spanned { value: Value::String(pattern), .. }] = args.as_slice() else {
                    return Err(ConfigError::Invalid { at, message: "expected `Include \"path\"`".into() });
                };
                self.include(&at, pattern)
            }
            "RunScript" => {
                Err(ConfigError::Invalid { at, message: "`RunScript` runs Lua code; canto does not".into() })
            }
            other => Err(ConfigError::Invalid {
                at,
                message: format!("unknown directive `{other}` (expected VirtualHost, Component or Include)"),
            }),
        }
    }

    fn call_argument(&mut self, file: &Arc<Path>, arg: &FunctionArgs) -> Result<Spanned, ConfigError> {
        let value = match arg {
            FunctionArgs::String(token) => {
                Some(Spanned { value: Value::String(string_literal(file, token)?), at: location(file, token) })
            }
            FunctionArgs::TableConstructor(table) => {
                Some(Spanned { value: Value::Table(self.table(file, table)?), at: location(file, &**table) })
            }
            FunctionArgs::Parentheses { arguments, .. } => {
                let mut exprs = arguments.iter();
                match (exprs.next(), exprs.next()) {
                    (Some(expr), None) => self.expression(file, expr)?,
                    _ => None,
                }
            }
            _ => None,
        };
        value.ok_or_else(|| invalid(file, arg, "expected one string or table argument"))
    }

    fn open_host(&mut self, at: &Location, args: Vec<Spanned>, scope: &mut Scope) -> Result<(), ConfigError> {
        let mut args = args.into_iter();
        let name = host_name(args.next(), at)?;
        let options = match (args.next(), args.next()) {
            (None, _) => None,
            (Some(Spanned { value: Value::Table(table), at }), None) => Some((table, at)),
            (Some(Spanned { value: Value::String(module), at }), _) => {
                return Err(ConfigError::Invalid {
                    at,
                    message: format!(
                        "VirtualHost entries do not accept a module name (module '{module}' provided for host '{name}')"
                    ),
                });
            }
            (Some(other), _) => {
                return Err(ConfigError::Invalid {
                    at: other.at,
                    message: "expected an option table after the host name".into(),
                });
            }
        };
        let index = self.section(at, name, SectionKind::VirtualHost)?;
        self.enter(index, options, scope)
    }

    fn open_component(&mut self, at: &Location, args: Vec<Spanned>, scope: &mut Scope) -> Result<(), ConfigError> {
        let mut args = args.into_iter();
        let name = host_name(args.next(), at)?;
        let (module, options) = match (args.next(), args.next(), args.next()) {
            (None, ..) => (None, None),
            (Some(Spanned { value: Value::Table(table), at }), None, _) => (None, Some((table, at))),
            (Some(Spanned { value: Value::String(module), .. }), None, _) => (Some(module), None),
            (
                Some(Spanned { value: Value::String(module), .. }),
                Some(Spanned { value: Value::Table(table), at }),
                None,
            ) => (Some(module), Some((table, at))),
            (Some(other), ..) => {
                return Err(ConfigError::Invalid {
                    at: other.at,
                    message: "expected `Component \"name\" \"module\" { options }`".into(),
                });
            }
        };
        let index = self.section(at, name, SectionKind::Component { module })?;
        self.enter(index, options, scope)
    }

    /// Finds or creates the section; a name used as both host kinds is an error.
    fn section(&mut self, at: &Location, name: String, kind: SectionKind) -> Result<usize, ConfigError> {
        if let Some(index) = self.config.hosts.iter().position(|h| h.name == name) {
            let existing = &self.config.hosts[index];
            let clash = match (&existing.kind, &kind) {
                (SectionKind::VirtualHost, SectionKind::Component { .. }) => Some(format!(
                    "Component {name:?} clashes with previously defined VirtualHost {name:?} at {}, for services use a sub-domain like conference.{name}",
                    existing.at
                )),
                (SectionKind::Component { .. }, SectionKind::VirtualHost) => Some(format!(
                    "Host {name:?} clashes with previously defined Component {name:?} at {}, for services use a sub-domain like conference.{name}",
                    existing.at
                )),
                _ => None,
            };
            if let Some(message) = clash {
                return Err(ConfigError::Invalid { at: at.clone(), message });
            }
            if let SectionKind::Component { module: Some(_) } = &kind {
                self.config.hosts[index].kind = kind;
            }
            return Ok(index);
        }
        self.config.hosts.push(HostSection { name, kind, at: at.clone(), options: Options::default() });
        Ok(self.config.hosts.len() - 1)
    }

    /// String form switches scope to the host; table form applies the table
    /// and returns to global scope, as Prosody does.
    fn enter(
        &mut self,
        index: usize,
        options: Option<(Table, Location)>,
        scope: &mut Scope,
    ) -> Result<(), ConfigError> {
        match options {
            None => *scope = Scope::Host(index),
            Some((table, _)) => {
                if let Some(item) = table.array.first() {
                    return Err(ConfigError::Invalid {
                        at: item.at.clone(),
                        message: "host option tables take `name = value` entries only".into(),
                    });
                }
                for (key, value) in table.map {
                    let TableKey::String(key) = key else {
                        return Err(ConfigError::Invalid {
                            at: value.at,
                            message: "option names must be strings".into(),
                        });
                    };
                    self.config.hosts[index].options.set(key, Some(value));
                }
                *scope = Scope::Global;
            }
        }
        Ok(())
    }

    fn include(&mut self, at: &Location, pattern: &str) -> Result<(), ConfigError> {
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::Invalid {
                at: at.clone(),
                message: format!("Include nested more than {MAX_INCLUDE_DEPTH} deep (does a file include itself?)"),
            });
        }
        let path = at.base_dir().join(pattern);
        let files = if pattern.contains(['*', '?']) { expand_glob(at, &path)? } else { vec![path] };
        for file in files {
            let included = text::read(&file).map_err(|source| ConfigError::Include {
                at: at.clone(),
                path: file.clone(),
                source,
            })?;
            self.config.warnings.extend(included.warning);
            self.depth += 1;
            let result = self.chunk(Arc::from(file.as_path()), &included.text);
            self.depth -= 1;
            result?;
        }
        Ok(())
    }

    /// Evaluates an expression; `None` is Lua's nil.
    fn expression(&mut self, file: &Arc<Path>, expr: &Expression) -> Result<Option<Spanned>, ConfigError> {
        let at = location(file, expr);
        let value = match expr {
            Expression::String(token) => Value::String(string_literal(file, token)?),
            Expression::Number(token) => number(file, token)?,
            Expression::Symbol(token) => match token.token_type() {
                TokenType::Symbol { symbol: Symbol::True } => Value::Bool(true),
                TokenType::Symbol { symbol: Symbol::False } => Value::Bool(false),
                TokenType::Symbol { symbol: Symbol::Nil } => return Ok(None),
                _ => return Err(invalid(file, expr, "`...` is not a config value")),
            },
            Expression::TableConstructor(table) => Value::Table(self.table(file, table)?),
            Expression::Parentheses { expression, .. } => return self.expression(file, expression),
            Expression::UnaryOperator { unop, expression } => {
                let operand = self.expression(file, expression)?.map(|s| s.value);
                match (unop, operand) {
                    (ast::UnOp::Minus(_), Some(Value::Integer(i))) => Value::Integer(-i),
                    (ast::UnOp::Minus(_), Some(Value::Float(f))) => Value::Float(-f),
                    (ast::UnOp::Not(_), operand) => Value::Bool(matches!(operand, None | Some(Value::Bool(false)))),
                    _ => return Err(invalid(file, expr, "this operator is not supported in a config")),
                }
            }
            Expression::BinaryOperator { lhs, binop, rhs } => {
                let left = self.expression(file, lhs)?.map(|s| s.value);
                let right = self.expression(file, rhs)?.map(|s| s.value);
                match binop {
                    ast::BinOp::TwoDots(_) => match (concat_text(left), concat_text(right)) {
                        (Some(l), Some(r)) => Value::String(l + &r),
                        _ => return Err(invalid(file, expr, "`..` joins strings and numbers only")),
                    },
                    ast::BinOp::TwoEqual(_) => Value::Bool(left == right),
                    ast::BinOp::TildeEqual(_) => Value::Bool(left != right),
                    _ => return Err(invalid(file, expr, "only `..`, `==` and `~=` are supported in a config")),
                }
            }
            Expression::Var(ast::Var::Name(name)) => {
                let name = name.token().to_string();
                let Some(variable) = name.strip_prefix("ENV_") else {
                    return Err(invalid(
                        file,
                        expr,
                        &format!(
                            "`{name}` is not a value canto knows (only ENV_<NAME> variables can be read; did you mean \"{name}\"?)"
                        ),
                    ));
                };
                match (self.env)(variable) {
                    Some(value) => Value::String(value),
                    None => return Ok(None),
                }
            }
            Expression::Function(_) => return Err(invalid(file, expr, "functions are not supported in a config")),
            Expression::FunctionCall(_) => {
                return Err(invalid(file, expr, "function calls are not supported in a config value"));
            }
            _ => return Err(invalid(file, expr, "this expression is not supported in a config")),
        };
        Ok(Some(Spanned { value, at }))
    }

    fn table(&mut self, file: &Arc<Path>, table: &ast::TableConstructor) -> Result<Table, ConfigError> {
        let mut result = Table::default();
        for field in table.fields() {
            match field {
                Field::NoKey(expr) => {
                    if let Some(value) = self.expression(file, expr)? {
                        result.array.push(value);
                    }
                }
                Field::NameKey { key, value, .. } => {
                    if let Some(value) = self.expression(file, value)? {
                        result.map.push((TableKey::String(key.token().to_string()), value));
                    }
                }
                Field::ExpressionKey { key, value, .. } => {
                    let key = match self.expression(file, key)?.map(|s| s.value) {
                        Some(Value::String(s)) => TableKey::String(s),
                        Some(Value::Integer(i)) => TableKey::Integer(i),
                        _ => return Err(invalid(file, &**key, "table keys must be strings or integers")),
                    };
                    if let Some(value) = self.expression(file, value)? {
                        result.map.push((key, value));
                    }
                }
                _ => return Err(invalid(file, field, "this table entry is not supported in a config")),
            }
        }
        Ok(result)
    }
}

fn host_name(arg: Option<Spanned>, at: &Location) -> Result<String, ConfigError> {
    match arg {
        Some(Spanned { value: Value::String(name), at }) => {
            if name.is_empty() {
                return Err(ConfigError::Invalid { at, message: "Host must have a name".into() });
            }
            if name.chars().any(|c| c.is_whitespace() || c.is_control() || "/@\"'<>&".contains(c)) {
                return Err(ConfigError::Invalid {
                    at,
                    message: format!("Name of Host {name:?} contains forbidden characters"),
                });
            }
            // Prosody nameprep lowercases host names.
            Ok(name.to_lowercase())
        }
        _ => Err(ConfigError::Invalid { at: at.clone(), message: "Host must have a name".into() }),
    }
}

fn concat_text(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn location(file: &Arc<Path>, node: &impl Node) -> Location {
    let position = node.start_position();
    Location::new(file, position.map_or(1, |p| p.line()), position.map_or(1, |p| p.character()))
}

fn invalid(file: &Arc<Path>, node: &impl Node, message: &str) -> ConfigError {
    ConfigError::Invalid { at: location(file, node), message: message.to_string() }
}

fn number(file: &Arc<Path>, token: &TokenReference) -> Result<Value, ConfigError> {
    let text = token.token().to_string();
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok().map(Value::Integer)
    } else if let Ok(i) = text.parse::<i64>() {
        Some(Value::Integer(i))
    } else {
        text.parse::<f64>().ok().map(Value::Float)
    };
    parsed.ok_or_else(|| invalid(file, token, &format!("`{text}` is not a number canto can read")))
}

/// Decodes a Lua string literal, escapes included.
fn string_literal(file: &Arc<Path>, token: &TokenReference) -> Result<String, ConfigError> {
    let TokenType::StringLiteral { literal, quote_type, .. } = token.token_type() else {
        return Err(invalid(file, token, "expected a string"));
    };
    if *quote_type == StringLiteralQuoteType::Brackets {
        // Long strings take no escapes and drop a first newline.
        let text = literal.as_str();
        let text = text.strip_prefix("\r\n").or_else(|| text.strip_prefix('\n')).unwrap_or(text);
        return Ok(text.to_string());
    }
    unescape(literal.as_str()).map_err(|message| invalid(file, token, &message))
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        i += 1;
        let Some(&escape) = bytes.get(i) else { return Err("string ends with a lone `\\`".into()) };
        i += 1;
        match escape {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\\' | b'"' | b'\'' | b'\n' => out.push(escape),
            b'z' => {
                while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
            }
            b'x' => {
                let hex = raw.get(i..i + 2).ok_or("`\\x` needs two hex digits")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("`\\x{hex}` is not a hex escape"))?);
                i += 2;
            }
            b'u' => {
                let rest = raw.get(i..).unwrap_or_default();
                let close = rest.find('}').filter(|_| rest.starts_with('{')).ok_or("`\\u` needs `{hex}`")?;
                let code = u32::from_str_radix(&rest[1..close], 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or("`\\u{…}` is not a character")?;
                let mut buf = [0; 4];
                out.extend_from_slice(code.encode_utf8(&mut buf).as_bytes());
                i += close + 1;
            }
            b'0'..=b'9' => {
                let start = i - 1;
                let mut end = start + 1;
                while end < bytes.len() && end < start + 3 && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let code: u32 = raw[start..end].parse().unwrap_or(256);
                out.push(u8::try_from(code).map_err(|_| format!("`\\{}` is larger than 255", &raw[start..end]))?);
                i = end;
            }
            other => return Err(format!("`\\{}` is not a Lua escape", other as char)),
        }
    }
    String::from_utf8(out).map_err(|_| "the string is not valid UTF-8".into())
}

/// `dir/*.cfg.lua`: the glob applies to the last component only; dot files
/// are skipped; matches come in sorted order so the result is reproducible.
fn expand_glob(at: &Location, path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let pattern = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(ConfigError::Invalid {
            at: at.clone(),
            message: "Include globs apply to the last path component only".into(),
        });
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Prosody treats a glob with no match as fine.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Include { at: at.clone(), path: dir, source }),
    };
    let mut matches: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            (!name.starts_with('.') && glob_matches(pattern.as_bytes(), name.as_bytes())).then(|| entry.path())
        })
        .collect();
    matches.sort();
    Ok(matches)
}

fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_matches(&pattern[1..], name) || (!name.is_empty() && glob_matches(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => glob_matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<RawConfig, ConfigError> {
        read_str(Path::new("test.cfg.lua"), text, &|name| (name == "PORT").then(|| "5290".to_string()))
    }

    #[test]
    fn reads_the_declarative_subset() {
        let config = read(
            r#"-- comment
            --[[ long
            comment ]]
            http_ports = { 5280, 0x10; }
            plugin_paths = { "/a", '/b', [[/c]] }
            greeting = "tab\there \65\x42\u{43}" .. 1
            ratio = 1.5; flag = not nil
            port = ENV_PORT; unset = ENV_NOPE
            http_paths = { files = "/"; ["bosh"] = "/b", [5281] = "x" }
            VirtualHost "Example.COM"
                http_host = "www.example.com"
            Component "static.example.com" "http" { modules_enabled = { "http_files" } }
            top_again = true
            "#,
        )
        .unwrap();
        let ports = config.global.get("http_ports").unwrap();
        let Value::Table(ports) = &ports.value else { panic!() };
        assert_eq!(
            ports.array.iter().map(|v| v.value.clone()).collect::<Vec<_>>(),
            vec![Value::Integer(5280), Value::Integer(16)]
        );
        assert_eq!(config.global.get("greeting").unwrap().value, Value::String("tab\there ABC1".into()));
        assert_eq!(config.global.get("port").unwrap().value, Value::String("5290".into()));
        assert!(config.global.get("unset").is_none());
        assert_eq!(config.global.get("flag").unwrap().value, Value::Bool(true));
        assert_eq!(config.global.get("top_again").unwrap().value, Value::Bool(true));
        assert_eq!(config.hosts[0].name, "example.com");
        assert_eq!(config.hosts[0].options.get("http_host").unwrap().at.line, 11);
        assert_eq!(config.hosts[1].kind, SectionKind::Component { module: Some("http".into()) });
        assert!(config.hosts[1].options.get("modules_enabled").is_some());
    }

    #[test]
    fn rejects_code_with_its_location() {
        let error = read("http_ports = { 5280 }\nfor i = 1, 3 do end\n").unwrap_err().to_string();
        assert_eq!(error, "test.cfg.lua:2:1: loops are not supported in a config");
        let error = read("x = os.getenv('A')").unwrap_err().to_string();
        assert!(error.starts_with("test.cfg.lua:1:5: "), "{error}");
        let error = read("x = = 1").unwrap_err().to_string();
        assert!(error.starts_with("test.cfg.lua:1:3: syntax error"), "{error}");
        let error = read("VirtualHost \"a\" \"http\"").unwrap_err().to_string();
        assert!(error.contains("VirtualHost entries do not accept a module name"), "{error}");
    }

    #[test]
    fn warns_about_duplicates() {
        let config = read("a = 1\na = 2\n").unwrap();
        assert_eq!(config.warnings, vec!["test.cfg.lua:2: Duplicate option 'a'".to_string()]);
        assert_eq!(config.global.get("a").unwrap().value, Value::Integer(2));
    }

    #[test]
    fn globs_match_the_last_component() {
        assert!(glob_matches(b"*.cfg.lua", b"a.cfg.lua"));
        assert!(glob_matches(b"?.lua", b"a.lua"));
        assert!(!glob_matches(b"*.cfg.lua", b"a.cfg.luax"));
    }
}

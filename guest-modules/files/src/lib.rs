//! `http_files`: serves a directory at `/files`, like Prosody's
//! mod_http_files, plus what Prosody lacks: conditional requests (RFC 9110
//! §13), byte ranges (§14) and directory listings.
//!
//! Options (JSON from `context.config-option`):
//! - `http_files_dir`: the directory, as an absolute path. The server grants
//!   it read-only at the same path, so `std::fs` reaches it and nothing
//!   else; symlinks out of it fail to open (403). Unset: 500.
//! - `http_index_files` (`["index.html", "index.htm"]`): served for a
//!   directory requested with its trailing slash.
//! - `http_dir_listing` (`false`): otherwise list the directory, else 403.
//! - `mime_types_file` (`/etc/mime.types`): consulted after the built-in
//!   table, when readable.
//!
//! Unlike Prosody, a directory redirect keeps the query string, validators
//! are compared as RFC 9110 says (lists, weak tags, dates), and files stream
//! out in fixed-size chunks, so memory stays flat whatever their size. The
//! request logic lives in modules without wasm imports (`path`, `mime`,
//! `listing`, and `http_serving`'s `range` and `validators`), which host
//! tests cover.

#![warn(clippy::unwrap_used)]

mod listing;
mod mime;
mod path;

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use canto_sdk::bindings::wasi::random::random::get_random_u64;
use canto_sdk::{Fields, IncomingRequest, Method, OutgoingResponse, OutputStream, ResponseOutparam, context, log};
use serde_json::Value;

use http_serving::range::{self, ByteRange, Multipart, Ranges};
use http_serving::validators::{self, Conditions, Outcome, Validators};
use path::PathError;

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use metadata::exports::canto::http::metadata::{Guest, ModuleInfo};

/// Bytes read from a file and written out at a time.
const CHUNK: usize = 64 * 1024;
/// Entries a listing shows at most, so a huge directory cannot exhaust memory.
const MAX_LISTED: usize = 10_000;
const DEFAULT_INDEX_FILES: [&str; 2] = ["index.html", "index.htm"];
const DEFAULT_MIME_TYPES: &str = "/etc/mime.types";
const TEXT: &str = "text/plain; charset=utf-8";

struct Files;

impl Guest for Files {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/files".into()),
            cors: None,
            options: ["http_files_dir", "http_index_files", "http_dir_listing", "mime_types_file"]
                .map(String::from)
                .to_vec(),
            serve_bare_path: false,
        }
    }
}

impl canto_sdk::Handler for Files {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = request.method();
        let reply = match method {
            Method::Get | Method::Head => serve(&request),
            _ => Reply::text(405, "Method not allowed: only GET and HEAD are served here\n")
                .with("allow", "GET, HEAD".into()),
        };
        reply.send(out, matches!(method, Method::Head));
    }
}

canto_sdk::export!(Files);
metadata::export!(Files with_types_in metadata);

/// Answers a GET or HEAD.
fn serve(request: &IncomingRequest) -> Reply {
    let Some(root) = option_string("http_files_dir").filter(|dir| !dir.is_empty()) else {
        log::log(log::Level::Error, "http_files_dir is not set");
        return Reply::text(500, "http_files_dir is not set\n");
    };
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let (request_path, query) = match path_with_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_with_query.as_str(), None),
    };
    let Some(rest) = path::strip_base(request_path, &context::base_path()) else { return not_found() };
    let target = match path::resolve(rest) {
        Ok(target) => target,
        Err(PathError::Invalid) => return Reply::text(400, "Bad request path\n"),
        Err(PathError::NoSuchName) => return not_found(),
    };
    let mut full = PathBuf::from(&root);
    full.extend(&target.segments);
    let found = match fs::metadata(&full) {
        Ok(found) => found,
        Err(error) => {
            if let Err(root_error) = fs::metadata(&root) {
                // Every request fails the same way: the operator needs to know.
                log::log(log::Level::Error, &format!("cannot read {root} (is http_files_dir granted?): {root_error}"));
                return Reply::text(500, "The files directory is unavailable\n");
            }
            return refused(&error);
        }
    };
    let headers = RequestHeaders::from(&request.headers());
    if !found.is_dir() && !found.is_file() {
        return forbidden(); // a device or FIFO: opening it could block
    }
    if found.is_dir() {
        if !target.trailing_slash {
            // Relative links in the directory's pages need the slash.
            let location = path::directory_location(request_path, query);
            return Reply::text(301, "Moved permanently\n").with("location", location);
        }
        return serve_directory(&full, &target.segments, &headers);
    }
    if target.trailing_slash {
        return not_found(); // a file is not a directory
    }
    serve_file(&full, &headers)
}

/// A directory requested with its trailing slash: its index file, else a
/// listing if enabled, else 403.
fn serve_directory(dir: &Path, segments: &[String], headers: &RequestHeaders) -> Reply {
    let index_files =
        option_strings("http_index_files").unwrap_or_else(|| DEFAULT_INDEX_FILES.map(String::from).to_vec());
    for index in index_files {
        let candidate = dir.join(index);
        if fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return serve_file(&candidate, headers);
        }
    }
    if !option_bool("http_dir_listing").unwrap_or(false) {
        return Reply::text(403, "Forbidden: directory listing is disabled\n");
    }
    let reader = match fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(error) => return refused(&error),
    };
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in reader.flatten() {
        if entries.len() == MAX_LISTED {
            truncated = true;
            break;
        }
        let Ok(name) = entry.file_name().into_string() else { continue };
        // Follow symlinks as serving does; list only what could be served.
        let Ok(found) = fs::metadata(entry.path()) else { continue };
        if found.is_dir() || found.is_file() {
            let modified = found.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
            entries.push(listing::Entry { name, is_dir: found.is_dir(), size: found.len(), modified });
        }
    }
    let base = context::base_path();
    let mut shown = base.trim_end_matches('/').to_string();
    for segment in segments {
        shown.push('/');
        shown.push_str(segment);
    }
    shown.push('/');
    let page = listing::render(&shown, !segments.is_empty(), entries, truncated);
    Reply {
        status: 200,
        headers: vec![("content-type", "text/html; charset=utf-8".into())],
        body: Body::Bytes(page.into()),
    }
}

/// A regular file: validators, preconditions, then the whole file or ranges of it.
fn serve_file(file_path: &Path, headers: &RequestHeaders) -> Reply {
    let file = match File::open(file_path) {
        Ok(file) => file,
        Err(error) => return refused(&error),
    };
    let found = match file.metadata() {
        Ok(found) if found.is_file() => found,
        Ok(_) => return forbidden(),
        Err(error) => return refused(&error),
    };
    let size = found.len();
    let current = Validators::new(size, found.modified().ok());
    let mut common = Vec::new();
    if let Some(etag) = &current.etag {
        common.push(("etag", etag.clone()));
    }
    if let Some(last_modified) = &current.last_modified {
        common.push(("last-modified", last_modified.clone()));
    }
    match validators::evaluate(&headers.conditions, &current) {
        Outcome::Proceed => {}
        Outcome::NotModified => return Reply { status: 304, headers: common, body: Body::None },
        Outcome::Failed => return Reply::text(412, "Precondition failed\n").with_all(common),
    }
    common.push(("accept-ranges", "bytes".into()));

    let name = file_path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ranges = match &headers.range {
        Some(range) if headers.if_range.as_deref().is_none_or(|v| validators::if_range_holds(v, &current)) => {
            range::parse(range, size)
        }
        _ => Ranges::Ignore,
    };
    let mut content_type = content_type(name);
    let (status, parts, trailer) = match ranges {
        Ranges::Ignore => (200, vec![Part { header: String::new(), start: 0, len: size }], String::new()),
        Ranges::Unsatisfiable => {
            return Reply::text(416, "Range not satisfiable\n")
                .with_all(common)
                .with("content-range", format!("bytes */{size}"));
        }
        Ranges::Serve(ranges) => match *ranges.as_slice() {
            [one] => {
                common.push(("content-range", range::content_range(one, size)));
                (206, vec![Part::of(String::new(), one)], String::new())
            }
            _ => {
                let boundary = format!("{:016x}{:016x}", get_random_u64(), get_random_u64());
                let body = Multipart::new(&ranges, size, content_type.as_deref(), &boundary);
                content_type = Some(format!("multipart/byteranges; boundary={boundary}"));
                let parts = body.parts.into_iter().map(|(header, range)| Part::of(header, range)).collect();
                (206, parts, body.trailer)
            }
        },
    };
    common.extend(content_type.map(|content_type| ("content-type", content_type)));
    Reply { status, headers: common, body: Body::File { file, parts, trailer } }
}

/// The content type for a file name: the built-in table, then the
/// `mime_types_file`; none for a name without an extension, as Prosody.
fn content_type(name: &str) -> Option<String> {
    let ext = mime::extension(name)?;
    if let Some(known) = mime::builtin(&ext) {
        return Some(known.into());
    }
    let mime_types = option_string("mime_types_file").unwrap_or_else(|| DEFAULT_MIME_TYPES.into());
    let found = File::open(&mime_types).ok().and_then(|file| mime::lookup(BufReader::new(file), &ext));
    Some(found.unwrap_or_else(|| mime::UNKNOWN.into()))
}

/// The request headers that steer a file response.
struct RequestHeaders {
    conditions: Conditions,
    range: Option<String>,
    if_range: Option<String>,
}

impl From<&Fields> for RequestHeaders {
    fn from(fields: &Fields) -> Self {
        // Repeated fields join with commas (RFC 9110 §5.3); one that is not
        // UTF-8 counts as absent, which errs towards a full response.
        let get = |name: &str| {
            let values = fields.get(name);
            let texts: Option<Vec<&str>> = values.iter().map(|v| std::str::from_utf8(v).ok()).collect();
            texts.filter(|t| !t.is_empty()).map(|t| t.join(", "))
        };
        RequestHeaders {
            conditions: Conditions {
                if_match: get("if-match"),
                if_none_match: get("if-none-match"),
                if_modified_since: get("if-modified-since"),
                if_unmodified_since: get("if-unmodified-since"),
            },
            range: get("range"),
            if_range: get("if-range"),
        }
    }
}

/// A response, built completely before anything is sent.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    /// No body and no `Content-Length` (304).
    None,
    Bytes(Vec<u8>),
    /// Ranges of an open file, each preceded by header text, then a trailer
    /// (both empty except for `multipart/byteranges`).
    File {
        file: File,
        parts: Vec<Part>,
        trailer: String,
    },
}

struct Part {
    header: String,
    start: u64,
    len: u64,
}

impl Part {
    fn of(header: String, range: ByteRange) -> Self {
        Part { header, start: range.first, len: range.len() }
    }
}

impl Body {
    fn len(&self) -> Option<u64> {
        match self {
            Body::None => None,
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::File { parts, trailer, .. } => {
                Some(parts.iter().map(|p| p.header.len() as u64 + p.len).sum::<u64>() + trailer.len() as u64)
            }
        }
    }
}

impl Reply {
    fn text(status: u16, message: &str) -> Self {
        Reply { status, headers: vec![("content-type", TEXT.into())], body: Body::Bytes(message.into()) }
    }

    fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn with_all(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Sends the reply; for HEAD, the same head without the body.
    fn send(self, out: ResponseOutparam, head: bool) {
        let Reply { status, headers, body } = self;
        let fields = Fields::new();
        let length = body.len().map(|len| ("content-length", len.to_string()));
        let refused =
            headers.iter().chain(&length).find(|(name, value)| fields.append(name, value.as_bytes()).is_err());
        if let Some((name, value)) = refused {
            // Only a header value taken from the request (Location) can be refused.
            log::log(log::Level::Warn, &format!("refused response header {name}: {value:?}"));
            return Reply::text(500, "Internal server error\n").send(out, head);
        }
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(status);
        let Ok(outgoing) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let Ok(stream) = outgoing.write() else { return };
        if head {
            return canto_sdk::finish(outgoing, stream);
        }
        match write_body(body, &stream) {
            Ok(()) => canto_sdk::finish(outgoing, stream),
            Err(error) => {
                // The head is out; all that is left is to cut the body short,
                // which dropping it unfinished does.
                log::log(log::Level::Debug, &format!("response body cut short: {error}"));
            }
        }
    }
}

fn write_body(body: Body, stream: &OutputStream) -> io::Result<()> {
    match body {
        Body::None => Ok(()),
        Body::Bytes(bytes) => write_out(stream, &bytes),
        Body::File { mut file, parts, trailer } => {
            // Small files are the common case: a buffer of their size keeps
            // the memory a request dirties (and the instance reset) small.
            let largest = parts.iter().map(|part| part.len).max().unwrap_or(0);
            let mut buffer = vec![0; usize::try_from(largest).map_or(CHUNK, |len| len.clamp(1, CHUNK))];
            for part in parts {
                write_out(stream, part.header.as_bytes())?;
                copy_range(&mut file, part.start, part.len, stream, &mut buffer)?;
            }
            write_out(stream, trailer.as_bytes())
        }
    }
}

/// Streams `len` bytes of `file` from `start`, a buffer at a time.
fn copy_range(file: &mut File, start: u64, len: u64, stream: &OutputStream, buffer: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let mut left = len;
    while left > 0 {
        let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = match file.read(&mut buffer[..want]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while being sent")),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        write_out(stream, &buffer[..read])?;
        left -= read as u64;
    }
    Ok(())
}

/// Writes all of `bytes`. The SDK's `write_all` asks the host how much it
/// takes (wasmtime: up to 1 MiB) and writes that in one call, so a chunk
/// costs one `check-write` and one `write` unless the client is slow.
fn write_out(stream: &OutputStream, bytes: &[u8]) -> io::Result<()> {
    canto_sdk::write_all(stream, bytes).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
}

fn not_found() -> Reply {
    Reply::text(404, "Not found\n")
}

fn forbidden() -> Reply {
    Reply::text(403, "Forbidden\n")
}

/// The answer for a path that could not be opened: 404 if it does not
/// exist, 403 otherwise (no permission, or a symlink out of the sandbox).
fn refused(error: &io::Error) -> Reply {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => not_found(),
        _ => forbidden(),
    }
}

/// A declared config option's JSON value; invalid JSON is logged and unset.
fn option(name: &str) -> Option<Value> {
    let text = context::config_option(name)?;
    serde_json::from_str(&text)
        .inspect_err(|error| log::log(log::Level::Warn, &format!("option {name} is not valid JSON: {error}")))
        .ok()
}

/// A string option. Like Prosody's scalar getters, a list means its first
/// item and a number its text.
fn option_string(name: &str) -> Option<String> {
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
fn option_strings(name: &str) -> Option<Vec<String>> {
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
fn option_bool(name: &str) -> Option<bool> {
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

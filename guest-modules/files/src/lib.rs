//! `http_files`: serves a directory at `/files`, like Prosody's
//! mod_http_files, plus what Prosody lacks: conditional requests (RFC 9110
//! §13), byte ranges (§14) and directory listings.
//!
//! Options (JSON from `context.config-option`):
//! - `http_files_dir`: the directory, as an absolute path. The server grants
//!   it read-only at the same path, so the server's `canto:http/files` (and
//!   `std::fs`, for listings) reach it and nothing else; symlinks out of it
//!   fail to open (403). Unset: 500.
//! - `http_index_files` (`["index.html", "index.htm"]`): served for a
//!   directory requested with its trailing slash.
//! - `http_dir_listing` (`false`): otherwise list the directory, else 403.
//! - `mime_types_file` (`/etc/mime.types`): consulted after the built-in
//!   table, when readable.
//!
//! Unlike Prosody, a directory redirect keeps the query string, validators
//! are compared as RFC 9110 says (lists, weak tags, dates), and the server
//! sends the file's bytes (the module decides status and headers), so they
//! never pass through the module's memory. The
//! request logic lives in modules without wasm imports (`path`, `mime`,
//! `listing`, and `http_serving`'s `range` and `validators`), which host
//! tests cover.

#![warn(clippy::unwrap_used)]

mod listing;
mod mime;
mod path;

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use canto_sdk::{IncomingRequest, Method, ResponseOutparam, context, log};

use canto_sdk::files::Kind;
use http_serving::options::{option_bool, option_string, option_strings};
use http_serving::reply::{self, Body, Reply, RequestHeaders, forbidden, not_found, not_opened, refused};
use path::PathError;

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use metadata::exports::canto::http::metadata::{Guest, ModuleInfo};

/// Entries a listing shows at most, so a huge directory cannot exhaust memory.
const MAX_LISTED: usize = 10_000;
const DEFAULT_INDEX_FILES: [&str; 2] = ["index.html", "index.htm"];
const DEFAULT_MIME_TYPES: &str = "/etc/mime.types";

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
            streaming_uploads: false,
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

/// `http_files_dir`. Options and the mount's path stay as they are for an
/// instance's life (a reload makes new instances), so an instance serving
/// many requests asks for them once.
fn files_dir() -> Option<&'static str> {
    static DIR: OnceLock<Option<String>> = OnceLock::new();
    DIR.get_or_init(|| option_string("http_files_dir").filter(|dir| !dir.is_empty())).as_deref()
}

fn base_path() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(context::base_path)
}

/// Answers a GET or HEAD.
fn serve(request: &IncomingRequest) -> Reply {
    let Some(root) = files_dir() else {
        log::log(log::Level::Error, "http_files_dir is not set");
        return Reply::text(500, "http_files_dir is not set\n");
    };
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let (request_path, query) = match path_with_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_with_query.as_str(), None),
    };
    let Some(rest) = path::strip_base(request_path, base_path()) else { return not_found() };
    let target = match path::resolve(rest) {
        Ok(target) => target,
        Err(PathError::Invalid) => return Reply::text(400, "Bad request path\n"),
        Err(PathError::NoSuchName) => return not_found(),
    };
    let mut full = PathBuf::from(root);
    full.extend(&target.segments);
    // One call: the server opens it beneath the grant and says what it is.
    let found = match reply::open(&full) {
        Ok(found) => found,
        Err(error) => {
            if let Err(root_error) = reply::open(Path::new(root)) {
                // Every request fails the same way: the operator needs to know.
                log::log(
                    log::Level::Error,
                    &format!("cannot read {root} (is http_files_dir granted?): {root_error:?}"),
                );
                return Reply::text(500, "The files directory is unavailable\n");
            }
            return not_opened(error);
        }
    };
    let headers = RequestHeaders::from(&request.headers());
    let kind = found.metadata().kind;
    if kind == Kind::Other {
        return forbidden(); // a device or FIFO
    }
    if kind == Kind::Directory {
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
    serve_file(found, &full, &headers)
}

/// A directory requested with its trailing slash: its index file, else a
/// listing if enabled, else 403.
fn serve_directory(dir: &Path, segments: &[String], headers: &RequestHeaders) -> Reply {
    let index_files =
        option_strings("http_index_files").unwrap_or_else(|| DEFAULT_INDEX_FILES.map(String::from).to_vec());
    for index in index_files {
        let candidate = dir.join(index);
        if let Some(file) = reply::open(&candidate).ok().filter(|file| file.metadata().kind == Kind::File) {
            return serve_file(file, &candidate, headers);
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
    let mut shown = base_path().trim_end_matches('/').to_string();
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
fn serve_file(file: canto_sdk::files::File, file_path: &Path, headers: &RequestHeaders) -> Reply {
    let name = file_path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    reply::serve_open_file(file, content_type(name), headers)
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

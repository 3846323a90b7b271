//! `http_file_share` (app `file_share`, at `/file_share`): the HTTP side of
//! XEP-0363 file upload for Prosody's mod_http_file_share in external mode
//! (`http_file_share_base_url` pointing here). Prosody hands out slots whose
//! PUT carries `Authorization: Bearer <token>`, an HS256 JWT signed with
//! `http_file_share_secret`; this module checks it as Prosody's own
//! handler does, stores the upload, serves it back, and deletes it once its
//! `expires` time passes (a scheduled run, which Prosody never asks an
//! external service for).
//!
//! Slot URLs are `<base>/<slot>/<filename>`. Uploads live in
//! `http_file_share_dir` (the host grants it to this module alone; by
//! default `<data_path>/<host>/http_file_share`): `<slot>` holds the
//! bytes, `<slot>.json` what the token said of them, and `<slot>~<n>` an
//! upload in progress, linked into place only when whole.

mod external;
mod token;

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use canto_sdk::bindings::wasi::random::random::get_random_u64;
use canto_sdk::{Fields, IncomingRequest, Method, ResponseOutparam, StreamError, context, log};
use http_serving::options::{option_string, option_strings};
use http_serving::reply::{self, Reply, RequestHeaders, not_found};
use serde::{Deserialize, Serialize};

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

mod scheduled {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/scheduled-provider",
    });
}

use metadata::exports::canto::http::metadata::ModuleInfo;

/// Prosody's defaults (mod_http_file_share.lua).
const DEFAULT_SIZE_LIMIT: u64 = 10 * 1024 * 1024;
const DEFAULT_SAFE_TYPES: [&str; 4] = ["image/*", "video/*", "audio/*", "text/plain"];
/// Bytes of an upload read at a time.
const CHUNK: u64 = 64 * 1024;
/// Bytes of an upload written to its file at a time: each write is a trip
/// to the host's blocking-I/O threads, so few large ones (the reads come
/// as the network delivers them, often smaller).
const WRITE_BUFFER: usize = 1 << 20;
/// How often expired uploads are looked for.
const PRUNE_EVERY: u32 = 3600;
/// An upload in progress untouched this long was cut off: its part goes.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

struct FileShare;

/// What a stored upload is, from its token.
#[derive(Serialize, Deserialize)]
struct Stored {
    filename: String,
    filetype: String,
    filesize: u64,
    /// Unix time it may be deleted; none: kept.
    expires: Option<f64>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn store_dir() -> Option<PathBuf> {
    option_string("http_file_share_dir").filter(|dir| !dir.is_empty()).map(PathBuf::from)
}

/// A slot id as Prosody makes them (util.id): nothing that could leave the directory.
fn valid_slot(slot: &str) -> bool {
    !slot.is_empty() && slot.len() <= 128 && slot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn header(fields: &Fields, name: &str) -> Option<String> {
    fields.get(name).first().and_then(|value| String::from_utf8(value.clone()).ok())
}

impl canto_sdk::Handler for FileShare {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = request.method();
        let path = canto_sdk::path(&request);
        let base = context::base_path();
        let rest = path.strip_prefix(base.trim_end_matches('/')).unwrap_or_default();
        let slot = rest.trim_start_matches('/').split('/').next().unwrap_or_default().to_string();
        let Some(dir) = store_dir() else {
            log::log(log::Level::Error, "http_file_share_dir is unavailable");
            return Reply::text(500, "The upload directory is unavailable\n").send(out, false);
        };
        let reply = match method {
            Method::Put => upload(request, &dir, &slot, rest),
            Method::Get | Method::Head => Some(download(&request, &dir, &slot)),
            _ => Some(Reply::text(405, "Method not allowed\n").with("allow", "GET, HEAD, PUT".into())),
        };
        match reply {
            Some(reply) => reply.send(out, matches!(method, Method::Head)),
            // The body was cut off by the server (too large, too slow) or
            // the client: its answer (413, 408) is the server's to give.
            None => drop(out),
        }
    }
}

/// A PUT: the statuses Prosody's own handler gives, then the body streamed
/// to a part file of its own and put in place only once whole and the
/// right size; `None` when the body was cut off.
fn upload(request: IncomingRequest, dir: &Path, slot: &str, rest: &str) -> Option<Reply> {
    let headers = request.headers();
    let query = request.path_with_query().and_then(|p| p.split_once('?').map(|(_, q)| q.to_string()));
    let granted = match query.as_deref().and_then(external::signed) {
        Some(signed) => upload_external(&headers, &signed, rest),
        None => upload_with_token(&headers),
    };
    let upload = match granted {
        Ok(upload) => upload,
        Err(refused) => return Some(refused),
    };
    if upload.exp < now() {
        return Some(Reply::text(410, "Gone: the upload slot expired\n"));
    }
    if upload.slot != slot || !valid_slot(slot) {
        return Some(Reply::text(400, "Bad request: not this token's slot\n"));
    }
    let size_limit = number_option("http_file_share_size_limit").unwrap_or(DEFAULT_SIZE_LIMIT);
    let declared = header(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length != upload.filesize) || upload.filesize > size_limit {
        return Some(too_large());
    }
    let data = dir.join(slot);
    if data.exists() {
        return Some(conflict());
    }
    drop(headers);
    // Each upload writes its own part, so a retry racing a stalled attempt
    // never shares (or deletes) its file.
    let partial = dir.join(format!("{slot}~{:016x}", get_random_u64()));
    let received = receive(request, &partial, upload.filesize);
    let stored = Stored {
        filename: upload.filename,
        filetype: upload.filetype.filter(|t| is_media_type(t)).unwrap_or_else(|| "application/octet-stream".into()),
        filesize: upload.filesize,
        expires: upload.expires,
    };
    let reply = match received {
        Received::Whole => publish(dir, slot, &partial, &stored),
        Received::WrongSize => Some(too_large()),
        Received::Cut => None,
        Received::Failed(error) => {
            log::log(log::Level::Error, &format!("storing the upload for slot {slot}: {error}"));
            Some(Reply::text(500, "The upload could not be stored\n"))
        }
    };
    let _ = fs::remove_file(&partial);
    reply
}

/// Prosody's own protocol: a bearer token.
fn upload_with_token(headers: &Fields) -> Result<token::Upload, Reply> {
    let Some(bearer) = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(String::from))
    else {
        return Err(Reply::text(401, "Unauthorized\n").with("www-authenticate", "Bearer".into()));
    };
    let Some(secret) = option_string("http_file_share_secret").filter(|s| !s.is_empty()) else {
        log::log(log::Level::Error, "http_file_share_secret is not set: no upload can be checked");
        return Err(Reply::text(401, "Unauthorized\n"));
    };
    token::verify(secret.as_bytes(), &bearer).ok_or_else(|| Reply::text(401, "Unauthorized\n"))
}

/// mod_http_upload_external's: a MAC in the URL over the path, the length
/// and (v2) the type; 403 when it does not hold, as prosody-filer answers.
fn upload_external(headers: &Fields, signed: &external::Signed, rest: &str) -> Result<token::Upload, Reply> {
    let forbidden = || Reply::text(403, "Forbidden\n");
    let Some(secret) = option_string("http_upload_external_secret").filter(|s| !s.is_empty()) else {
        log::log(
            log::Level::Warn,
            "an upload signed for mod_http_upload_external, but http_upload_external_secret is not set",
        );
        return Err(forbidden());
    };
    let wanted = if option_string("http_upload_external_protocol").as_deref() == Some("v2") { "v2" } else { "v" };
    let path = external::percent_decode(rest.trim_start_matches('/')).ok_or_else(forbidden)?;
    let (slot, filename) = path.split_once('/').ok_or_else(forbidden)?;
    let size = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(forbidden)?;
    let content_type = header(headers, "content-type").unwrap_or_else(|| "application/octet-stream".into());
    if signed.version != wanted || !external::verify(secret.as_bytes(), signed, &path, size, &content_type) {
        return Err(forbidden());
    }
    Ok(token::Upload {
        exp: f64::INFINITY,
        slot: slot.to_string(),
        filename: filename.to_string(),
        filesize: size,
        filetype: Some(content_type),
        expires: None,
    })
}

fn too_large() -> Reply {
    Reply::text(413, "Payload too large: not the size the slot is for\n")
}

fn conflict() -> Reply {
    Reply::text(409, "Conflict: this slot holds a file already\n")
}

/// Puts a whole upload in place: what its token said first, then the bytes,
/// linked (never renamed over) so the first of two racing uploads wins.
fn publish(dir: &Path, slot: &str, partial: &Path, stored: &Stored) -> Option<Reply> {
    let written = serde_json::to_vec(stored)
        .map_err(|e| e.to_string())
        .and_then(|json| fs::write(dir.join(format!("{slot}.json")), json).map_err(|e| e.to_string()));
    let linked = written.and_then(|()| match fs::hard_link(partial, dir.join(slot)) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error.to_string()),
    });
    Some(match linked {
        Ok(true) => Reply::text(201, "Created\n"),
        Ok(false) => conflict(),
        Err(error) => {
            log::log(log::Level::Error, &format!("storing the upload for slot {slot}: {error}"));
            Reply::text(500, "The upload could not be stored\n")
        }
    })
}

/// How reading an upload's body ended.
enum Received {
    Whole,
    /// Fewer or more bytes than the slot is for.
    WrongSize,
    /// The server or the client cut the body off.
    Cut,
    Failed(String),
}

/// Streams the request body into `partial`, expecting `size` bytes.
fn receive(request: IncomingRequest, partial: &Path, size: u64) -> Received {
    let Ok(body) = request.consume() else { return Received::Failed("the body was taken".into()) };
    let Ok(stream) = body.stream() else { return Received::Failed("the body has no stream".into()) };
    let mut file = match File::options().write(true).create_new(true).open(partial) {
        Ok(file) => std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
        Err(error) => return Received::Failed(format!("creating {}: {error}", partial.display())),
    };
    let mut received = 0u64;
    loop {
        match stream.blocking_read(CHUNK) {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if received > size {
                    return Received::WrongSize;
                }
                if let Err(error) = file.write_all(&chunk) {
                    return Received::Failed(error.to_string());
                }
            }
            Err(StreamError::Closed) => break,
            Err(_) => return Received::Cut,
        }
    }
    if received != size {
        return Received::WrongSize;
    }
    // Written out, not synced: as Prosody and nginx do, an upload answered
    // 201 survives canto stopping, not the machine losing power (a sync
    // would cost large uploads ~40% of their speed).
    match file.flush() {
        Ok(()) => Received::Whole,
        Err(error) => Received::Failed(error.to_string()),
    }
}

/// `type/subtype` of token characters (RFC 9110 §8.3.1), maybe with
/// parameters: anything else is served as `application/octet-stream`.
fn is_media_type(text: &str) -> bool {
    let token =
        |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    let essence = text.split(';').next().unwrap_or_default().trim();
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    printable && essence.split_once('/').is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// A whole-number option; a float Lua wrote as `1e7` or `10485760.0` counts.
fn number_option(name: &str) -> Option<u64> {
    let text = option_string(name)?;
    let number = text.trim().parse::<f64>().ok().filter(|n| *n >= 0.0 && n.fract() == 0.0);
    if number.is_none() {
        log::log(log::Level::Warn, &format!("option {name} should be a whole number, not {text}"));
    }
    number.map(|n| n as u64)
}

/// A GET or HEAD: the stored file with its type, how to show it, and what
/// keeps a browser from running it.
fn download(request: &IncomingRequest, dir: &Path, slot: &str) -> Reply {
    if !valid_slot(slot) {
        return not_found();
    }
    let Some(stored) = read_stored(dir, slot) else { return not_found() };
    if stored.expires.is_some_and(|at| at < now()) {
        return not_found();
    }
    let Ok(file) = reply::open(&dir.join(slot)) else { return not_found() };
    let safe_types = option_strings("http_file_share_safe_file_types")
        .unwrap_or_else(|| DEFAULT_SAFE_TYPES.map(String::from).to_vec());
    let family = stored.filetype.split_once('/').map(|(kind, _)| format!("{kind}/*"));
    let inline = safe_types.iter().any(|safe| *safe == stored.filetype || Some(safe) == family.as_ref());
    let disposition = if inline { "inline" } else { "attachment" };
    let headers = RequestHeaders::from(&request.headers());
    reply::serve_open_file(file, Some(stored.filetype.clone()), &headers)
        .with("content-disposition", format!("{disposition}; filename*=UTF-8''{}", percent_encode(&stored.filename)))
        .with("content-security-policy", "default-src 'none'; frame-ancestors 'none';".into())
        .with("x-content-type-options", "nosniff".into())
        .with("x-frame-options", "DENY".into())
        .with("cache-control", "max-age=31556952, immutable".into())
}

fn read_stored(dir: &Path, slot: &str) -> Option<Stored> {
    serde_json::from_slice(&fs::read(dir.join(format!("{slot}.json"))).ok()?).ok()
}

/// RFC 8187's `attr-char`s stay; every other byte is `%XX`.
fn percent_encode(text: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
    text.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

impl scheduled::exports::canto::http::scheduled_handler::Guest for FileShare {
    /// Deletes uploads whose `expires` passed, and parts of uploads cut off.
    fn run() -> Result<u32, String> {
        let dir = store_dir().ok_or("http_file_share_dir is unavailable")?;
        let (now, mut deleted) = (now(), 0);
        for entry in fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(slot) = name.strip_suffix(".json") {
                if read_stored(&dir, slot).is_some_and(|s| s.expires.is_some_and(|at| at < now)) {
                    // What the token said goes first: the slot is unknown from then on.
                    let _ = fs::remove_file(entry.path());
                    let _ = fs::remove_file(dir.join(slot));
                    deleted += 1;
                }
            } else if name.contains('~') {
                let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                if age.is_some_and(|age| age > ABANDONED_AFTER) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        if deleted > 0 {
            log::log(log::Level::Info, &format!("deleted {deleted} expired uploads"));
        }
        let every =
            number_option("http_file_share_prune_interval").map_or(PRUNE_EVERY, |n| n.min(u64::from(u32::MAX)) as u32);
        Ok(every)
    }
}

impl metadata::exports::canto::http::metadata::Guest for FileShare {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/file_share".into()),
            cors: Some(metadata::exports::canto::http::metadata::CorsDefaults {
                methods: ["GET", "OPTIONS", "PUT"].map(String::from).to_vec(),
                headers: ["Authorization", "Content-Type"].map(String::from).to_vec(),
                credentials: true,
            }),
            options: [
                "http_file_share_dir",
                "http_file_share_secret",
                "http_file_share_size_limit",
                "http_file_share_safe_file_types",
                "http_file_share_prune_interval",
                "http_upload_external_secret",
                "http_upload_external_protocol",
            ]
            .map(String::from)
            .to_vec(),
            serve_bare_path: false,
            streaming_uploads: true,
        }
    }
}

canto_sdk::export!(FileShare);
metadata::export!(FileShare with_types_in metadata);
scheduled::export!(FileShare with_types_in scheduled);

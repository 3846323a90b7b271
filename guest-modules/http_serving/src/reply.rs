//! A response built whole before it is sent, with a file body the server
//! sends (`canto:http/files`); and serving an open file with its
//! validators, conditional requests and byte ranges.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use canto_sdk::bindings::wasi::random::random::get_random_u64;
use canto_sdk::files::{self, File, Kind};
use canto_sdk::{Fields, OutgoingResponse, OutputStream, ResponseOutparam, log};

use crate::range::{self, ByteRange, Multipart, Ranges};
use crate::validators::{self, Conditions, Outcome, Validators};

const TEXT: &str = "text/plain; charset=utf-8";

/// An open file: validators, preconditions, then the whole file or ranges
/// of it, as `content_type`.
pub fn serve_open_file(file: File, content_type: Option<String>, headers: &RequestHeaders) -> Reply {
    let found = file.metadata();
    if found.kind != Kind::File {
        return forbidden();
    }
    let size = found.size;
    let modified = u64::try_from(found.modified_seconds)
        .ok()
        .map(|secs| UNIX_EPOCH + Duration::new(secs, found.modified_nanoseconds));
    let current = Validators::new(size, modified);
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

    let ranges = match &headers.range {
        Some(range) if headers.if_range.as_deref().is_none_or(|v| validators::if_range_holds(v, &current)) => {
            range::parse(range, size)
        }
        _ => Ranges::Ignore,
    };
    let mut content_type = content_type;
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

/// The request headers that steer a file response.
pub struct RequestHeaders {
    pub conditions: Conditions,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

impl From<&Fields> for RequestHeaders {
    fn from(fields: &Fields) -> Self {
        // One host call for all of them: `entries` costs what one `get`
        // does, and a request carries few headers.
        let entries = fields.entries();
        // Repeated fields join with commas (RFC 9110 §5.3); one that is not
        // UTF-8 counts as absent, which errs towards a full response.
        let get = |name: &str| {
            let texts: Option<Vec<&str>> = entries
                .iter()
                .filter(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| std::str::from_utf8(value).ok())
                .collect();
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
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

pub enum Body {
    /// No body and no `Content-Length` (304).
    None,
    Bytes(Vec<u8>),
    /// Ranges of an open file, each preceded by header text, then a trailer
    /// (both empty except for `multipart/byteranges`); the server sends it.
    File {
        file: File,
        parts: Vec<Part>,
        trailer: String,
    },
}

pub struct Part {
    pub header: String,
    pub start: u64,
    pub len: u64,
}

impl Part {
    pub fn of(header: String, range: ByteRange) -> Self {
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
    pub fn text(status: u16, message: &str) -> Self {
        Reply { status, headers: vec![("content-type", TEXT.into())], body: Body::Bytes(message.into()) }
    }

    pub fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_all(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Sends the reply; for HEAD, the same head without the body.
    pub fn send(self, out: ResponseOutparam, head: bool) {
        let Reply { status, headers, body } = self;
        let length = match &body {
            Body::File { .. } => None, // the server sets it
            _ => body.len().map(|len| ("content-length", len.to_string())),
        };
        // One host call for the whole head.
        let list: Vec<(String, Vec<u8>)> =
            headers.iter().chain(&length).map(|(name, value)| (name.to_string(), value.clone().into_bytes())).collect();
        let fields = match Fields::from_list(&list) {
            Ok(fields) => fields,
            Err(error) => {
                // Only a header value taken from the request (Location) can be refused.
                log::log(log::Level::Warn, &format!("refused a response header ({error:?}): {headers:?}"));
                return Reply::text(500, "Internal server error\n").send(out, head);
            }
        };
        if let Body::File { file, parts, trailer } = body {
            // Also for HEAD: the server sends the head, with the length, only.
            let parts: Vec<files::Part> = parts
                .into_iter()
                .map(|part| files::Part { header: part.header.into_bytes(), start: part.start, length: part.len })
                .collect();
            return files::respond(out, status, fields, file, &parts, trailer.as_bytes());
        }
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(status);
        let Ok(outgoing) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let Ok(stream) = outgoing.write() else { return };
        if head {
            return canto_sdk::finish(outgoing, stream);
        }
        let written = match body {
            Body::Bytes(bytes) => write_out(&stream, &bytes),
            Body::None | Body::File { .. } => Ok(()),
        };
        match written {
            Ok(()) => canto_sdk::finish(outgoing, stream),
            Err(error) => {
                // The head is out; all that is left is to cut the body short,
                // which dropping it unfinished does.
                log::log(log::Level::Debug, &format!("response body cut short: {error}"));
            }
        }
    }
}

/// Writes all of `bytes`. The SDK's `write_all` asks the host how much it
/// takes (wasmtime: up to 1 MiB) and writes that in one call, so a chunk
/// costs one `check-write` and one `write` unless the client is slow.
fn write_out(stream: &OutputStream, bytes: &[u8]) -> io::Result<()> {
    canto_sdk::write_all(stream, bytes).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
}

pub fn not_found() -> Reply {
    Reply::text(404, "Not found\n")
}

pub fn forbidden() -> Reply {
    Reply::text(403, "Forbidden\n")
}

/// The answer for a path that could not be opened: 404 if it does not
/// exist, 403 otherwise (no permission, or a symlink out of the sandbox).
pub fn refused(error: &io::Error) -> Reply {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => not_found(),
        _ => forbidden(),
    }
}

/// The same for a file the server could not open (`canto:http/files`).
pub fn not_opened(error: files::Error) -> Reply {
    match error {
        files::Error::NotFound => not_found(),
        files::Error::Forbidden | files::Error::Failed => forbidden(),
    }
}

/// Opens `path` through the server (`canto:http/files`).
pub fn open(path: &std::path::Path) -> Result<File, files::Error> {
    files::open(&path.to_string_lossy())
}

//! Write canto HTTP modules in Rust.
//!
//! Bindings to the `canto:http/module` world (standard `wasi:http` plus
//! canto's imports: `context`, `log`, `files` and the rest), and the few
//! helpers every module needs: answering with a complete body, and
//! streaming bytes out. To answer with a granted file, which the server
//! sends without the bytes entering the module, see [`files::respond`].
//!
//! ```ignore
//! use canto_sdk::{IncomingRequest, ResponseOutparam};
//!
//! struct Hello;
//! impl canto_sdk::Handler for Hello {
//!     fn handle(_request: IncomingRequest, out: ResponseOutparam) {
//!         let host = canto_sdk::context::host();
//!         canto_sdk::respond(out, 200, "text/plain", format!("hello from {host}").as_bytes());
//!     }
//! }
//! canto_sdk::export!(Hello);
//! ```

pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/module",
        pub_export_macro: true,
        export_macro_name: "export_handler",
        default_bindings_module: "canto_sdk::bindings",
        generate_all,
    });
}

pub use bindings::canto::http::{context, files, log};
pub use bindings::exports::wasi::http::incoming_handler::Guest as Handler;
pub use bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
pub use bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
/// `wasi:keyvalue`: the stores the operator granted (`http_stores`).
pub use bindings::wasi::keyvalue;

/// Exports a type implementing [`Handler`] as the module's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export {
    ($handler:ident) => {
        $crate::bindings::export_handler!($handler with_types_in $crate::bindings);
    };
}

/// The request method as text (`GET`, `POST`, or the extension method).
pub fn method_name(request: &IncomingRequest) -> String {
    match request.method() {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    }
}

/// The request path without its query string.
pub fn path(request: &IncomingRequest) -> String {
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    match path_with_query.split_once('?') {
        Some((path, _query)) => path.to_string(),
        None => path_with_query,
    }
}

/// Starts a response with `status` and `content_type`; returns the body to
/// stream into. Finish it with [`finish`].
pub fn start_response(out: ResponseOutparam, status: u16, content_type: &str) -> (OutgoingBody, OutputStream) {
    let headers = Fields::new();
    // Header names and values here are fixed by the module, never invalid.
    let _ = headers.append("content-type", content_type.as_bytes());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("a new body has a stream");
    (body, stream)
}

/// Answers with a complete body.
pub fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let (outgoing, stream) = start_response(out, status, content_type);
    let _ = write_all(&stream, body);
    finish(outgoing, stream);
}

/// Ends a streamed response body.
pub fn finish(body: OutgoingBody, stream: OutputStream) {
    let _ = stream.blocking_flush();
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// Reads the whole request body, or `None` when there is none or the
/// server cut it (too large, too slow: the server answers for it then)
/// or it would pass `max_bytes`.
pub fn read_body(request: IncomingRequest, max_bytes: usize) -> Option<Vec<u8>> {
    let incoming = request.consume().ok()?;
    let input = incoming.stream().ok()?;
    let mut body = Vec::new();
    loop {
        match input.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Some(body),
            Err(StreamError::LastOperationFailed(_)) => return None,
        }
        if body.len() > max_bytes {
            return None;
        }
    }
}

/// Writes all of `bytes`, waiting for the host to accept them.
pub fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
    while !bytes.is_empty() {
        let permitted = stream.check_write()?;
        if permitted == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = bytes.len().min(permitted as usize);
        stream.write(&bytes[..n])?;
        bytes = &bytes[n..];
    }
    Ok(())
}

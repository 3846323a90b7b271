//! The server's own responses: error pages and redirects. Every status the
//! server (not a module) decides is produced here, so the wording, headers
//! and escaping are the same everywhere. Internals never reach the client:
//! a module failure is a plain 500, its cause goes to the log.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::wasm::ModuleBody;

/// An HTML error page for `status`, with an optional one-line explanation.
pub fn error_page(status: StatusCode, detail: Option<&str>) -> Response<ModuleBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let detail = detail.map(|d| format!("<p>{}</p>\n", html_escape::encode_quoted_attribute(d))).unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n<body>\n<h1>{code} {reason}</h1>\n{detail}<hr><p>canto</p>\n</body>\n</html>\n"
    );
    let mut response = Response::new(full_body(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// The page at `/` of a host with nothing mounted there.
pub fn running_page() -> Response<ModuleBody> {
    let html = "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>canto is running</title></head>\n<body>\n<h1>canto is running</h1>\n<p>This host has no module mounted at <code>/</code>.</p>\n</body>\n</html>\n";
    let mut response = Response::new(full_body(Bytes::from_static(html.as_bytes())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// A permanent redirect, with an empty body as Prosody sends it.
pub fn redirect(location: &str) -> Response<ModuleBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A body the server produced in full, as the same type modules stream.
pub fn full_body(bytes: Bytes) -> ModuleBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_escape_what_the_client_sent() {
        let page = error_page(StatusCode::NOT_FOUND, Some("Unknown host: <script>"));
        assert_eq!(page.status(), 404);
        let text = futures_text(page);
        assert!(text.contains("Unknown host: &lt;script&gt;"), "{text}");
    }

    fn futures_text(response: Response<ModuleBody>) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = runtime.block_on(response.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

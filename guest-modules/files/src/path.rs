//! From a request path to a place inside the served directory, and the
//! escaping that links and pages built from names need.

/// Where a request path leads, relative to the served directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Decoded names, with `.` and `..` already resolved.
    pub segments: Vec<String>,
    /// Whether the request path ended with `/`: a directory is only served
    /// then, so that relative links inside it resolve.
    pub trailing_slash: bool,
}

/// Why a request path leads nowhere.
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// A segment decodes to `/` or NUL, or `..` climbs above the root: 400.
    Invalid,
    /// A segment is not UTF-8, so no file (WASI names are strings) has it: 404.
    NoSuchName,
}

/// Maps `rest`, the request path below the module's base path (still
/// percent-encoded, query removed), to segments inside the directory.
///
/// Each segment is percent-decoded once; empty segments and `.` are skipped
/// and `..` pops, as Prosody's `sanitize_path` does.
pub fn resolve(rest: &str) -> Result<Target, PathError> {
    let mut segments: Vec<String> = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(raw);
        if decoded.iter().any(|&b| b == b'/' || b == 0) {
            return Err(PathError::Invalid);
        }
        let segment = String::from_utf8(decoded).map_err(|_| PathError::NoSuchName)?;
        match segment.as_str() {
            "." => {}
            ".." => {
                segments.pop().ok_or(PathError::Invalid)?;
            }
            _ => segments.push(segment),
        }
    }
    Ok(Target { segments, trailing_slash: rest.ends_with('/') })
}

/// The request path below `base` (`/` or a path without a trailing slash),
/// or `None` if the request is not under it.
pub fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    let base = base.trim_end_matches('/');
    let rest = path.strip_prefix(base)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Where to send a request for a directory that lacks its trailing slash:
/// the same path with `/` added, keeping the query.
///
/// Leading slashes and backslashes collapse to one `/`, so that `//host`
/// cannot turn into a link to another site.
pub fn directory_location(path: &str, query: Option<&str>) -> String {
    let path = path.trim_start_matches(['/', '\\']);
    match query {
        Some(query) => format!("/{path}/?{query}"),
        None => format!("/{path}/"),
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = bytes.get(i + 1..i + 3).and_then(hex_pair)
        {
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// Encodes everything but RFC 3986 unreserved characters, so a name is
/// always a relative path segment in a link (`a:b` is not a scheme, `?`
/// and `#` stay in the name).
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(rest: &str) -> Vec<String> {
        resolve(rest).expect("valid path").segments
    }

    #[test]
    fn resolves_dots_and_empty_segments() {
        assert_eq!(segments("/a/./b//c/../d"), ["a", "b", "d"]);
        assert_eq!(segments(""), Vec::<String>::new());
        assert!(resolve("/a/").expect("valid").trailing_slash);
        assert!(!resolve("/a").expect("valid").trailing_slash);
    }

    #[test]
    fn refuses_climbing_out_and_encoded_separators() {
        assert_eq!(resolve("/.."), Err(PathError::Invalid));
        assert_eq!(resolve("/a/../.."), Err(PathError::Invalid));
        assert_eq!(resolve("/%2e%2e/etc"), Err(PathError::Invalid));
        assert_eq!(resolve("/%2E%2E"), Err(PathError::Invalid));
        assert_eq!(resolve("/a%2fb"), Err(PathError::Invalid));
        assert_eq!(resolve("/a%00"), Err(PathError::Invalid));
        assert_eq!(resolve("/%ff"), Err(PathError::NoSuchName));
    }

    #[test]
    fn decodes_once() {
        assert_eq!(segments("/a%20b/%252e%252e"), ["a b", "%2e%2e"]);
        assert_eq!(segments("/100%/%zz/%4"), ["100%", "%zz", "%4"]);
        assert_eq!(segments("/caf%C3%A9+x"), ["café+x"]);
    }

    #[test]
    fn strips_the_base_path() {
        assert_eq!(strip_base("/files/a", "/files"), Some("/a"));
        assert_eq!(strip_base("/files", "/files"), Some(""));
        assert_eq!(strip_base("/filesystem", "/files"), None);
        assert_eq!(strip_base("/a/b", "/"), Some("/a/b"));
        assert_eq!(strip_base("/other", "/files"), None);
    }

    #[test]
    fn directory_location_keeps_the_query_and_stays_on_site() {
        assert_eq!(directory_location("/files/sub", Some("a=1")), "/files/sub/?a=1");
        assert_eq!(directory_location("/files/sub", None), "/files/sub/");
        assert_eq!(directory_location("//evil.example", None), "/evil.example/");
        assert_eq!(directory_location("/\\evil.example", None), "/evil.example/");
    }

    #[test]
    fn escapes_names() {
        assert_eq!(percent_encode("a b?#%:é/"), "a%20b%3F%23%25%3A%C3%A9%2F");
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }
}

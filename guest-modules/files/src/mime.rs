//! Content types from file name extensions: a built-in table first, then
//! the operator's `mime.types` file.

use std::io::BufRead;

/// The type of a file whose extension nothing knows.
pub const UNKNOWN: &str = "application/octet-stream";

/// The lowercased text after the last `.` of a file name, if any.
pub fn extension(name: &str) -> Option<String> {
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The built-in type for a lowercased extension: what the web needs most,
/// so a missing `mime.types` still serves a site correctly.
pub fn builtin(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" | "map" => "application/json",
        "xml" => "application/xml",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "png" => "image/png",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "ico" => "image/vnd.microsoft.icon",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        _ => return None,
    })
}

/// Looks `ext` up in a `mime.types` file (`type ext1 ext2 …` per line, `#`
/// comments); the first line listing it wins. Reads line by line, so a
/// large file costs no memory.
pub fn lookup(mime_types: impl BufRead, ext: &str) -> Option<String> {
    for line in mime_types.split(b'\n') {
        let Ok(line) = line else { return None };
        // A line that is not UTF-8 cannot name our (UTF-8) extension.
        let Ok(line) = std::str::from_utf8(&line) else { continue };
        let line = line.split_once('#').map_or(line, |(data, _comment)| data);
        let mut words = line.split_whitespace();
        let Some(mime_type) = words.next() else { continue };
        if words.any(|candidate| candidate.eq_ignore_ascii_case(ext)) {
            // The type becomes a header value: refuse anything that could not be one.
            return (mime_type.contains('/') && mime_type.bytes().all(|b| b.is_ascii_graphic()))
                .then(|| mime_type.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_is_after_the_last_dot() {
        assert_eq!(extension("a.tar.GZ").as_deref(), Some("gz"));
        assert_eq!(extension(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(extension("README"), None);
        assert_eq!(extension("trailing."), None);
    }

    #[test]
    fn mime_types_file() {
        let file = "# comment\n\napplication/x-thing  thing  THX\ntext/first foo\ntext/second foo # again\n\
                    bad\u{7f}type bad\n";
        assert_eq!(lookup(file.as_bytes(), "thx").as_deref(), Some("application/x-thing"));
        assert_eq!(lookup(file.as_bytes(), "foo").as_deref(), Some("text/first"));
        assert_eq!(lookup(file.as_bytes(), "comment"), None);
        assert_eq!(lookup(file.as_bytes(), "again"), None);
        assert_eq!(lookup(file.as_bytes(), "bad"), None);
        assert_eq!(lookup(&b"\xff\xfe x\ntext/y y"[..], "y").as_deref(), Some("text/y"));
    }

    #[test]
    fn builtin_table() {
        assert_eq!(builtin("html"), Some("text/html"));
        assert_eq!(builtin("wasm"), Some("application/wasm"));
        assert_eq!(builtin("nope"), None);
    }
}

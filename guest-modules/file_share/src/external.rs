//! The `mod_http_upload_external` protocol (prosody-modules; also what
//! ejabberd's external mode and prosody-filer speak): the PUT URL carries
//! `?v=` (v1: HMAC-SHA256 over `<path> <size>`) or `?v2=` (over
//! `<path>\0<size>\0<type>`), in hex, keyed with `http_upload_external_secret`;
//! `<path>` is `<random>/<filename>`, decoded. Which one is accepted is
//! `http_upload_external_protocol` (`v1` by default), as the XMPP server
//! signs.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The MAC a PUT URL carries, by protocol version.
pub struct Signed<'a> {
    pub version: &'a str,
    pub mac: &'a str,
}

/// `?v=` or `?v2=` in a query string.
pub fn signed(query: &str) -> Option<Signed<'_>> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        matches!(name, "v" | "v2").then_some(Signed { version: name, mac: value })
    })
}

/// Whether `signed` covers this upload: `path` decoded, the body's length
/// and type as the request declares them.
pub fn verify(secret: &[u8], signed: &Signed, path: &str, size: u64, content_type: &str) -> bool {
    let message = match signed.version {
        "v" => format!("{path} {size}"),
        _ => format!("{path}\0{size}\0{content_type}"),
    };
    let Some(mac) = hex(signed.mac) else { return false };
    let Ok(mut expected) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    expected.update(message.as_bytes());
    expected.verify_slice(&mac).is_ok()
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect()
}

/// `%XX` decoded; `None` for a bad escape or text that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            out.push(u8::from_str_radix(text.get(at + 1..at + 3)?, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(secret: &[u8], message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn both_versions_sign_what_prosody_modules_signs() {
        let query = format!("v={}", mac(b"k", "abc/a b.txt 5"));
        let signed = signed(&query).unwrap();
        assert!(verify(b"k", &signed, "abc/a b.txt", 5, "text/plain"));
        assert!(!verify(b"k", &signed, "abc/a b.txt", 6, "text/plain"));
        let query = format!("x=1&v2={}", mac(b"k", "abc/a.txt\x005\x00text/plain"));
        let signed = super::signed(&query).unwrap();
        assert!(verify(b"k", &signed, "abc/a.txt", 5, "text/plain"));
        assert!(!verify(b"k", &signed, "abc/a.txt", 5, "image/png"));
        assert!(!verify(b"other", &signed, "abc/a.txt", 5, "text/plain"));
    }

    #[test]
    fn paths_are_decoded() {
        assert_eq!(percent_decode("r%C3%A9sum%C3%A9%201.txt").as_deref(), Some("résumé 1.txt"));
        assert_eq!(percent_decode("bad%2"), None);
    }
}

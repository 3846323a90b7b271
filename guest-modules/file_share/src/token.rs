//! The upload token Prosody's mod_http_file_share hands out with a slot:
//! an HS256 JWT (util.jwt) signed with `http_file_share_secret`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// What a valid token grants: one upload of one file into one slot.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Upload {
    /// Unix time the token stops being good for an upload.
    pub exp: f64,
    pub slot: String,
    pub filename: String,
    pub filesize: u64,
    pub filetype: Option<String>,
    /// Unix time the file may be deleted; none: kept.
    pub expires: Option<f64>,
}

/// Checks the signature with `secret` and reads the claims.
pub fn verify(secret: &[u8], token: &str) -> Option<Upload> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(parts_joined(token)?.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `header.payload`: what the signature covers.
fn parts_joined(token: &str) -> Option<&str> {
    token.rfind('.').map(|at| &token[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], claims: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{header}.{payload}").as_bytes());
        format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    const CLAIMS: &str = r#"{"sub":"a@b","iat":1,"exp":2,"slot":"s1","expires":3,"filename":"x.txt","filesize":5,"filetype":"text/plain"}"#;

    #[test]
    fn a_token_signed_with_the_secret_grants_its_upload() {
        let upload = verify(b"secret", &sign(b"secret", CLAIMS)).expect("valid");
        assert_eq!(upload.slot, "s1");
        assert_eq!((upload.filesize, upload.exp, upload.expires), (5, 2.0, Some(3.0)));
    }

    #[test]
    fn anything_else_grants_nothing() {
        assert_eq!(verify(b"other", &sign(b"secret", CLAIMS)), None);
        let token = sign(b"secret", CLAIMS);
        let tampered = token.replacen('.', ".x", 1);
        assert_eq!(verify(b"secret", &tampered), None);
        assert_eq!(verify(b"secret", "a.b"), None);
        assert_eq!(verify(b"secret", &format!("{token}.extra")), None);
        assert_eq!(verify(b"secret", &sign(b"secret", r#"{"slot":"s1"}"#)), None, "claims missing");
    }
}

//! Virtual hosts: which configured host a request is for.
//!
//! The key is the request's Host header (or the authority of an absolute
//! URI, or HTTP/2's `:authority`), port stripped, compared
//! case-insensitively with one trailing dot ignored (RFC 9110). A request
//! with several Host lines names no host at all: it is refused (RFC 9112
//! §3.2), even where an absolute URI would have overridden them.

use crate::routing::Site;
use std::borrow::Cow;
use std::collections::HashMap;

/// Every public host name and what is served under it.
#[derive(Default)]
pub struct HostTable {
    by_name: HashMap<String, Site>,
    /// `http_default_host`: serves requests for unknown hosts (and requests
    /// with no Host at all), as in Prosody.
    default: Option<String>,
}

/// The outcome of looking a request's host up.
pub enum HostLookup<'a> {
    Found(&'a Site),
    Unknown(String),
    Missing,
    /// More than one Host header line: 400, never a guess.
    Several,
}

impl HostTable {
    /// The site for `http_host`, created empty on first use.
    pub fn site_mut(&mut self, http_host: &str) -> &mut Site {
        self.by_name.entry(normalize(http_host).into_owned()).or_insert_with(|| Site::new(http_host.into(), Vec::new()))
    }

    /// Sets the default host; `false` if no host has that name.
    pub fn set_default(&mut self, http_host: &str) -> bool {
        let key = normalize(http_host).into_owned();
        let known = self.by_name.contains_key(&key);
        if known {
            self.default = Some(key);
        }
        known
    }

    /// Every mount of every site.
    pub fn mounts(&self) -> impl Iterator<Item = &crate::routing::Mount> {
        self.by_name.values().flat_map(Site::mounts)
    }

    /// The site named `http_host`, if there is one.
    pub fn site(&self, http_host: &str) -> Option<&Site> {
        self.by_name.get(normalize(http_host).as_ref())
    }

    pub fn lookup<B>(&self, request: &http::Request<B>) -> HostLookup<'_> {
        if request.headers().get_all(http::header::HOST).iter().nth(1).is_some() {
            return HostLookup::Several;
        }
        let requested = request_host(request);
        if let Some(site) = requested.and_then(|host| self.by_name.get(normalize(host).as_ref())) {
            return HostLookup::Found(site);
        }
        if let Some(site) = self.default.as_ref().and_then(|key| self.by_name.get(key)) {
            return HostLookup::Found(site);
        }
        match requested {
            Some(host) => HostLookup::Unknown(host.to_string()),
            None => HostLookup::Missing,
        }
    }
}

/// The host part a client addressed, port removed; `None` if it sent none.
fn request_host<B>(request: &http::Request<B>) -> Option<&str> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.host());
    }
    let header = request.headers().get(http::header::HOST)?.to_str().ok()?.trim();
    if header.is_empty() {
        return None;
    }
    let host = match header.rsplit_once(':') {
        // `[::1]:5280`, `example.com:5280`; but not the colons inside `[::1]`.
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
        _ => header,
    };
    Some(host)
}

/// The table's key for a host name; borrowed when it already is one.
fn normalize(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    match host.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str, host: Option<&str>) -> Option<String> {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        request_host(&builder.body(()).unwrap()).map(String::from)
    }

    #[test]
    fn host_comes_from_uri_authority_then_header() {
        assert_eq!(host_of("http://Example.com:80/x", Some("other")), Some("Example.com".into()));
        assert_eq!(host_of("/x", Some("example.com:5280")), Some("example.com".into()));
        assert_eq!(host_of("/x", Some("[::1]:5280")), Some("[::1]".into()));
        assert_eq!(host_of("/x", Some("[::1]")), Some("[::1]".into()));
        assert_eq!(host_of("/x", None), None);
        assert_eq!(normalize("Example.COM."), "example.com");
        assert!(matches!(normalize("example.com."), Cow::Borrowed("example.com")), "no copy when already a key");
    }

    #[test]
    fn several_host_lines_name_no_host_even_with_a_default_or_an_absolute_uri() {
        let mut table = HostTable::default();
        table.site_mut("a.test");
        assert!(table.set_default("a.test"));
        let request = |uri: &str, hosts: &[&str]| {
            let mut builder = http::Request::builder().uri(uri);
            for host in hosts {
                builder = builder.header("host", *host);
            }
            builder.body(()).unwrap()
        };
        assert!(matches!(table.lookup(&request("/", &["a.test", "b.test"])), HostLookup::Several));
        assert!(matches!(table.lookup(&request("http://a.test/", &["a.test", "a.test"])), HostLookup::Several));
        assert!(matches!(table.lookup(&request("http://a.test/", &["b.test"])), HostLookup::Found(_)));
    }
}

//! Trusted reverse proxies: who the client is and whether it used https.
//!
//! Strip-then-set at the trust boundary: from a peer in `trusted_proxies`,
//! `X-Forwarded-For` is walked from the right and the first entry that is
//! not a trusted proxy is the client, and `X-Forwarded-Proto: https` makes
//! the request secure (spec §3d); from any other peer those headers are
//! removed before a module can see them. Entries left of the client are the
//! client's own words and never believed; an entry that is not an address
//! even after stripping a port leaves the last trusted hop as the client.
//! Never an error.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Headers only a trusted proxy may set.
const FORWARDING_HEADERS: [&str; 4] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"];

/// The client as the server established it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub secure: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self { networks }
    }

    /// Whether `ip` is a trusted proxy. IPv4 and IPv4-mapped IPv6 forms of
    /// one address are the same address here.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(_) => ip.to_canonical(),
        };
        self.networks.iter().any(|net| net.contains(&ip) || net.contains(&mapped))
    }

    /// Works out the client behind `peer`, and removes forwarding headers
    /// an untrusted peer sent.
    pub fn resolve(&self, peer: IpAddr, tls: bool, headers: &mut HeaderMap) -> Client {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            for name in FORWARDING_HEADERS {
                headers.remove(name);
            }
            return Client { ip: peer, secure: tls };
        }
        let ip = forwarded_client(self, peer, headers);
        let forwarded_https = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim() == "https");
        Client { ip, secure: tls || forwarded_https }
    }
}

/// Walks `X-Forwarded-For` from the right, starting at the trusted `peer`:
/// each trusted proxy hands over to the entry left of it, and the first
/// entry that is not a trusted proxy is the client. If that entry is no
/// address (`unknown`, junk), the last trusted hop is all that is known.
/// If every entry is a trusted proxy, the client stays the peer (Prosody).
fn forwarded_client(proxies: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    // Header lines in order, each split as Prosody splits them (commas and
    // whitespace), walked right to left.
    let lines: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().map(|value| value.to_str().unwrap_or("unknown")).collect();
    let entries = lines.iter().rev().flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()).rev());
    let mut last_trusted = peer;
    for entry in entries.filter(|entry| !entry.is_empty()) {
        match forwarded_address(entry) {
            Some(ip) if proxies.trusts(ip) => last_trusted = ip.to_canonical(),
            Some(ip) => return ip.to_canonical(),
            None => return last_trusted,
        }
    }
    peer
}

/// The address an `X-Forwarded-For` entry names: `192.0.2.1`, `2001:db8::1`,
/// `[2001:db8::1]`, or one of those with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:443`); `None` for anything else.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(with_port) = entry.parse::<std::net::SocketAddr>() {
        return Some(with_port.ip());
    }
    entry.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn resolve(proxies: &TrustedProxies, peer: &str, xff: &str, proto: Option<&str>) -> (String, bool, HeaderMap) {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        if let Some(proto) = proto {
            headers.insert("x-forwarded-proto", proto.parse().unwrap());
        }
        let client = proxies.resolve(peer.parse().unwrap(), false, &mut headers);
        (client.ip.to_string(), client.secure, headers)
    }

    #[test]
    fn the_rightmost_untrusted_address_wins() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(resolve(&trusted, "127.0.0.1", "1.2.3.4, 10.1.1.1", None).0, "1.2.3.4");
        assert_eq!(resolve(&trusted, "127.0.0.1", "10.1.1.1", None).0, "127.0.0.1");
        assert_eq!(resolve(&trusted, "127.0.0.1", "1.2.3.4 10.9.9.9", None).0, "1.2.3.4");
        assert_eq!(resolve(&trusted, "127.0.0.1", "9.9.9.9, 1.2.3.4, 10.0.0.2", None).0, "1.2.3.4");
        assert_eq!(resolve(&trusted, "127.0.0.1", "unknown, garbage, 1.2.3.4", None).0, "1.2.3.4");
        assert_eq!(resolve(&trusted, "127.0.0.1", "", None).0, "127.0.0.1");
    }

    #[test]
    fn entries_left_of_the_client_are_never_believed() {
        let trusted = proxies(&["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
        // The rightmost untrusted entry is the client, whatever it claims
        // further left, even when that entry is no address at all.
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, unknown", None).0, "127.0.0.1");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, unknown, 10.0.0.3", None).0, "10.0.0.3");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, 1.2.3.4, garbage", None).0, "127.0.0.1");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, [junk]:80", None).0, "127.0.0.1");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6,", None).0, "6.6.6.6");
    }

    #[test]
    fn ports_are_stripped_where_the_form_allows() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, 203.0.113.7:4711", None).0, "203.0.113.7");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, [2001:db8::1]:443", None).0, "2001:db8::1");
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, [2001:db8::1]", None).0, "2001:db8::1");
        // A trusted hop with a port hands over to the entry left of it.
        assert_eq!(resolve(&trusted, "127.0.0.1", "6.6.6.6, 10.0.0.9:80", None).0, "6.6.6.6");
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.5, unknown".parse().unwrap());
        let client = trusted.resolve("127.0.0.1".parse().unwrap(), false, &mut headers);
        assert_eq!(client.ip.to_string(), "127.0.0.1");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "203.0.113.5".parse().unwrap());
        let client = trusted.resolve("127.0.0.1".parse().unwrap(), false, &mut headers);
        assert_eq!(client.ip.to_string(), "203.0.113.5");
    }

    #[test]
    fn untrusted_peers_cannot_spoof_and_lose_the_headers() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let (ip, secure, headers) = resolve(&trusted, "192.0.2.9", "1.2.3.4", Some("https"));
        assert_eq!((ip.as_str(), secure), ("192.0.2.9", false));
        assert!(headers.get("x-forwarded-for").is_none() && headers.get("x-forwarded-proto").is_none());
    }

    #[test]
    fn proto_https_from_a_trusted_peer_is_secure() {
        let trusted = proxies(&["::1/128"]);
        assert!(resolve(&trusted, "::1", "2001:db8::7", Some("https")).1);
        assert!(!resolve(&trusted, "::1", "2001:db8::7", Some("http")).1);
        assert_eq!(resolve(&trusted, "::1", "2001:db8::7", None).0, "2001:db8::7");
    }

    #[test]
    fn v4_mapped_addresses_match_v4_ranges() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert!(trusted.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(resolve(&trusted, "::ffff:10.0.0.1", "1.2.3.4", None).0, "1.2.3.4");
        let v6 = proxies(&["::ffff:192.168.0.0/112"]);
        assert!(v6.trusts("192.168.3.4".parse().unwrap()));
    }
}

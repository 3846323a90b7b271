//! Trusted reverse proxies: who the client is and whether it used https.
//!
//! Strip-then-set at the trust boundary: from a peer in `trusted_proxies`,
//! `X-Forwarded-For` gives the rightmost untrusted address and
//! `X-Forwarded-Proto: https` makes the request secure (spec §3d); from any
//! other peer those headers are removed before a module can see them.
//! Tokens that are not IP addresses are skipped, never an error.

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
        let mut ip = peer;
        let tokens = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(|c: char| c == ',' || c.is_whitespace()))
            .filter_map(|token| token.trim_matches(['[', ']']).parse::<IpAddr>().ok());
        for token in tokens {
            if !self.trusts(token) {
                ip = token.to_canonical();
            }
        }
        let forwarded_https = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim() == "https");
        Client { ip, secure: tls || forwarded_https }
    }
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
        assert_eq!(resolve(&trusted, "127.0.0.1", "1.2.3.4, unknown", None).0, "1.2.3.4");
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

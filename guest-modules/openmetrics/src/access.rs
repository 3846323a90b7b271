//! Who may read the metrics, as Prosody decides: the client's address is in
//! `openmetrics_allow_ips` or inside the `openmetrics_allow_cidr` network.
//!
//! Addresses compare as 128-bit numbers with IPv4 in its v4-mapped IPv6
//! form, so `::ffff:127.0.0.1` and `127.0.0.1` are the same client, as in
//! Prosody's `util.ip`.

use std::net::IpAddr;

use serde_json::Value;

/// `openmetrics_allow_ips` when it is unset: the local host only.
pub const DEFAULT_ALLOW_IPS: [&str; 2] = ["::1", "127.0.0.1"];

/// A network: an address and how many leading bits of it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    /// Counted over 128 bits, so an IPv4 `/8` is stored as 104.
    prefix: u32,
}

impl Cidr {
    /// Reads `address/prefix` (`10.0.0.0/8`, `2001:db8::/32`); a bare
    /// address stands for itself alone.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u32>().ok()?)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let width = if matches!(address, IpAddr::V4(_)) { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return None;
        }
        Some(Cidr { network: bits(address), prefix: prefix + (128 - width) })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
        bits(ip) & mask == self.network & mask
    }
}

/// Whether `client` may read the metrics.
pub fn allowed(client: IpAddr, allow_ips: &[IpAddr], allow_cidr: Option<Cidr>) -> bool {
    allow_ips.iter().any(|ip| bits(*ip) == bits(client)) || allow_cidr.is_some_and(|cidr| cidr.contains(client))
}

/// The addresses `openmetrics_allow_ips` (its JSON value, `None` when
/// unset) lists, and the entries that are not addresses.
///
/// A single string is a one-item list, as Prosody's option sets read it.
pub fn allow_ips(value: Option<Value>) -> (Vec<IpAddr>, Vec<String>) {
    let entries = match value {
        None | Some(Value::Null) => DEFAULT_ALLOW_IPS.map(Value::from).to_vec(),
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
    };
    let mut ips = Vec::new();
    let mut invalid = Vec::new();
    for entry in entries {
        match entry.as_str().and_then(|text| text.parse().ok()) {
            Some(ip) => ips.push(ip),
            None => invalid.push(entry.to_string()),
        }
    }
    (ips, invalid)
}

/// The network `openmetrics_allow_cidr` names: `Ok(None)` when unset, `Err`
/// with the value when it is not a CIDR string. Like Prosody's scalar
/// option getters, a list stands for its first item.
pub fn allow_cidr(value: Option<Value>) -> Result<Option<Cidr>, String> {
    let value = match value {
        Some(Value::Array(items)) => items.into_iter().next(),
        other => other,
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Cidr::parse(&text).map(Some).ok_or(text),
        Some(other) => Err(other.to_string()),
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("a test network")
    }

    #[test]
    fn defaults_to_the_local_host() {
        let (ips, invalid) = allow_ips(None);
        assert!(invalid.is_empty());
        assert!(allowed(ip("127.0.0.1"), &ips, None));
        assert!(allowed(ip("::1"), &ips, None));
        assert!(allowed(ip("::ffff:127.0.0.1"), &ips, None));
        assert!(!allowed(ip("127.0.0.2"), &ips, None));
        assert!(!allowed(ip("192.0.2.7"), &ips, None));
        assert_eq!(allow_ips(Some(Value::Null)).0, ips);
    }

    #[test]
    fn reads_lists_and_single_strings() {
        let (ips, invalid) = allow_ips(Some(json!(["192.0.2.7", "2001:DB8::1", "nope", 5])));
        assert_eq!(ips, [ip("192.0.2.7"), ip("2001:db8::1")]);
        assert_eq!(invalid, ["\"nope\"", "5"]);
        assert!(allowed(ip("2001:db8:0::1"), &ips, None));
        assert!(!allowed(ip("127.0.0.1"), &ips, None));

        let (ips, invalid) = allow_ips(Some(json!("::ffff:192.0.2.7")));
        assert!(invalid.is_empty());
        assert!(allowed(ip("192.0.2.7"), &ips, None));

        let (ips, _) = allow_ips(Some(json!([])));
        assert!(!allowed(ip("127.0.0.1"), &ips, None));
    }

    #[test]
    fn matches_ipv4_networks() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("::a01:203"))); // not v4-mapped
        assert!(cidr("192.0.2.7/32").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7/32").contains(ip("192.0.2.6")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("10.1.2.3/8").contains(ip("10.9.9.9")), "host bits are ignored");
    }

    #[test]
    fn matches_ipv6_networks() {
        let net = cidr("2001:db8::/32");
        assert!(net.contains(ip("2001:db8::1")));
        assert!(net.contains(ip("2001:db8:ffff::")));
        assert!(!net.contains(ip("2001:db9::")));
        assert!(!net.contains(ip("10.0.0.1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("::ffff:0:0/96").contains(ip("198.51.100.1")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.2.3.4")));
    }

    #[test]
    fn a_bare_address_is_itself_alone() {
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(cidr("::1").contains(ip("::1")));
    }

    #[test]
    fn rejects_what_is_not_a_network() {
        for bad in ["", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "/8", "10.0.0.0/-1", "10.0.0.0/8/8"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(allow_cidr(None), Ok(None));
        assert_eq!(allow_cidr(Some(json!("10.0.0.0/8"))), Ok(Some(cidr("10.0.0.0/8"))));
        assert_eq!(allow_cidr(Some(json!("10.0.0.0/99"))), Err("10.0.0.0/99".into()));
        assert_eq!(allow_cidr(Some(json!(["10.0.0.0/8"]))), Ok(Some(cidr("10.0.0.0/8"))));
        assert_eq!(allow_cidr(Some(json!(8))), Err("8".into()));
    }

    #[test]
    fn either_list_or_network_admits() {
        let ips = [ip("127.0.0.1")];
        let net = Some(cidr("10.0.0.0/8"));
        assert!(allowed(ip("127.0.0.1"), &ips, net));
        assert!(allowed(ip("10.3.3.3"), &ips, net));
        assert!(!allowed(ip("192.0.2.1"), &ips, net));
    }
}

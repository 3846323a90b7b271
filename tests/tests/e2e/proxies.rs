//! Trusted reverse proxies: X-Forwarded-For / X-Forwarded-Proto.

use super::*;
use canto_tests::{NginxProxy, curl_json};

async fn whoami_with(server: &TestServer, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut request = server.client(&["p.test"]).get(server.url("p.test", "/whoami/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().json().await.unwrap()
}

const WHOAMI: &str = "VirtualHost \"p.test\"\nmodules_enabled = { \"http_whoami\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_forwards_the_client_and_scheme() {
    // 127.0.0.1 is trusted by default.
    let server = TestServer::start(WHOAMI).await;
    let who = whoami_with(&server, &[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]).await;
    assert_eq!((who["ip"].as_str(), who["secure"].as_bool()), (Some("203.0.113.9"), Some(true)));
    let who = whoami_with(&server, &[("x-forwarded-for", "unknown, 203.0.113.9, garbage")]).await;
    assert_eq!(who["ip"], "127.0.0.1", "the rightmost entry is no address: the last trusted hop is the client");
    assert_eq!(who["secure"], false);
}

/// Entries left of the first untrusted one are the client's own words:
/// an entry that is no address, or an address with a port, must not
/// let the walk go on into them (`openmetrics_allow_ips` and every
/// other IP rule would believe them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_spoof_its_address_past_an_unusable_entry() {
    let server = TestServer::start(WHOAMI).await;
    for (forwarded, client) in [
        ("6.6.6.6, unknown", "127.0.0.1"),
        ("6.6.6.6, 203.0.113.7:4711", "203.0.113.7"),
        ("6.6.6.6, [2001:db8::1]:443", "2001:db8::1"),
        ("6.6.6.6, [2001:db8::1]", "2001:db8::1"),
        ("6.6.6.6, _hidden", "127.0.0.1"),
        ("6.6.6.6 198.51.100.4", "198.51.100.4"),
        ("6.6.6.6, 127.0.0.1", "6.6.6.6"),
    ] {
        let who = whoami_with(&server, &[("x-forwarded-for", forwarded)]).await;
        assert_eq!(who["ip"], client, "X-Forwarded-For: {forwarded}");
    }
    // Nor does it help to scrape metrics as 127.0.0.1 through an entry
    // that is no address: the client stays someone openmetrics refuses.
    let metrics = TestServer::start(
        "openmetrics_allow_ips = { \"6.6.6.6\" }\nVirtualHost \"p.test\"\nmodules_enabled = { \"http_openmetrics\" }\n",
    )
    .await;
    let client = metrics.client(&["p.test"]);
    let scrape = |forwarded: &'static str| {
        client.get(metrics.url("p.test", "/metrics")).header("x-forwarded-for", forwarded).send()
    };
    assert_eq!(scrape("6.6.6.6").await.unwrap().status(), 200, "the allowed address itself");
    assert_eq!(scrape("6.6.6.6, unknown").await.unwrap().status(), 403);
    assert_eq!(scrape("6.6.6.6, 203.0.113.7:4711").await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_trusted_proxies_yield_the_rightmost_untrusted_address() {
    let server = TestServer::start(&format!(
        "trusted_proxies = {{ \"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/32\" }}\n{WHOAMI}"
    ))
    .await;
    let who = whoami_with(&server, &[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2, 2001:db8::5")]).await;
    assert_eq!(who["ip"], "203.0.113.9");
    let who = whoami_with(&server, &[("x-forwarded-for", "10.1.1.1")]).await;
    assert_eq!(who["ip"], "127.0.0.1", "all trusted: the peer stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_spoof() {
    let server = TestServer::start(&format!("trusted_proxies = {{ \"10.0.0.0/8\" }}\n{WHOAMI}")).await;
    let who = whoami_with(&server, &[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]).await;
    assert_eq!((who["ip"].as_str(), who["secure"].as_bool()), (Some("127.0.0.1"), Some(false)));
}

/// The seed document's nginx example in front of canto: whoami sees the
/// original client (curl from 127.0.0.2) and the scheme it used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_real_nginx_whoami_reports_the_original_client() {
    let server = TestServer::start("VirtualHost \"example.com\"\nmodules_enabled = { \"http_whoami\" }\n").await;
    let nginx = NginxProxy::start(server.addr, "example.com").await;
    let (http, https) = (nginx.http, nginx.https);
    let plain = tokio::task::spawn_blocking(move || curl_json("127.0.0.2", &format!("http://{http}/whoami/")));
    let who = plain.await.unwrap();
    assert_eq!(
        (who["host"].as_str(), who["ip"].as_str(), who["secure"].as_bool()),
        (Some("example.com"), Some("127.0.0.2"), Some(false))
    );
    let tls = tokio::task::spawn_blocking(move || curl_json("127.0.0.2", &format!("https://{https}/whoami/")));
    let who = tls.await.unwrap();
    assert_eq!((who["ip"].as_str(), who["secure"].as_bool()), (Some("127.0.0.2"), Some(true)));
}

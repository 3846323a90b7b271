//! XMPP over BOSH (XEP-0124/0206) as the built-in `bosh` module, in front
//! of a real XMPP server (Debian's Prosody on a loopback client port):
//! Strophe.js (npm) in Node and in headless Chromium, and @xmpp/client over
//! canto's `websocket` on the other end; the same scripts and requests
//! against Prosody's own mod_bosh, for the same outcome.

use canto_tests::{XmppServer, chromium_dom, node_client, node_clients, serve_page};
use tokio::io::AsyncBufReadExt;

use super::*;

/// canto in front of `xmpp` with both transports; plain HTTP is allowed,
/// as behind a TLS proxy.
fn site(domain: &str, xmpp: &XmppServer, extra: &str) -> String {
    format!(
        "consider_bosh_secure = true\nconsider_websocket_secure = true\n{extra}\nhttp_default_host = \"{domain}\"\nVirtualHost \"{domain}\"\n    modules_enabled = {{ \"bosh\", \"websocket\" }}\n    http_xmpp_server = \"{}\"\n",
        xmpp.c2s
    )
}

/// POSTs one BOSH body and returns the answer's body.
async fn post(url: &str, body: &str) -> String {
    let client = reqwest::Client::new();
    let response = client
        .post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// The value of attribute `name` in the answer's `<body>` tag.
fn attribute(answer: &str, name: &str) -> Option<String> {
    let head = &answer[answer.find("<body")?..];
    let head = &head[..head.find('>')?];
    let at = head.find(&format!(" {name}="))? + name.len() + 2;
    let quote = head[at..].chars().next()?;
    let value = &head[at + 1..];
    Some(value[..value.find(quote)?].to_string())
}

const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";

/// A new session on `url` for `domain`: its sid and its answer.
async fn new_session(url: &str, domain: &str, rid: u64) -> (String, String) {
    let answer = post(
        url,
        &format!("<body rid='{rid}' to='{domain}' wait='30' hold='1' xmlns='{HTTPBIND}' xml:lang='en' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>"),
    )
    .await;
    let sid = attribute(&answer, "sid").unwrap_or_else(|| panic!("no sid: {answer}"));
    (sid, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strophe_over_bosh_talks_to_a_websocket_user_through_canto_as_through_prosodys_own() {
    let xmpp = XmppServer::start("bosh.xmpp.test").await;
    let server = TestServer::start(&site("bosh.xmpp.test", &xmpp, "")).await;
    let port = server.addr.port();
    let canto = (format!("http://127.0.0.1:{port}/http-bind"), format!("ws://127.0.0.1:{port}/xmpp-websocket"));
    let prosody = (format!("http://{}/http-bind", xmpp.http), format!("ws://{}/xmpp-websocket", xmpp.http));
    for (name, (bosh, ws)) in [("canto", &canto), ("Prosody's mod_bosh", &prosody)] {
        let seen = node_client("xmpp_bosh.mjs", &[bosh, ws, "bosh.xmpp.test"]).await;
        assert_eq!(seen["errors"], serde_json::json!([]), "{name}: {seen}");
        assert!(seen["alice"].as_str().is_some_and(|jid| jid.starts_with("alice@bosh.xmpp.test/")), "{name}: {seen}");
        assert_eq!(seen["roster"], "jabber:iq:roster", "{name}: {seen}");
        assert_eq!(seen["bob_got"]["body"], "hello bob", "{name}: {seen}");
        assert_eq!(seen["bob_got"]["from"], seen["alice"], "{name}: {seen}");
        assert_eq!(seen["alice_got"]["body"], "hello alice ✓ <&>", "{name}: {seen}");
        assert_eq!(seen["alice_got"]["from"], seen["bob"], "{name}: {seen}");
        assert_eq!(seen["stopped"], true, "{name}: {seen}");
    }
}

//! Prosody's XMPP transports as canto modules (`websocket`), in front of a
//! real XMPP server (Debian's Prosody on a loopback client port), driven by
//! a real client library (`@xmpp/client` from npm) — and the same client
//! against Prosody's own mod_websocket, for the same outcome.

use canto_tests::{XmppServer, chromium_dom, node_client, node_clients, serve_page};
use tokio::io::AsyncBufReadExt;

use super::*;

/// canto in front of `xmpp`; plain `ws://` is allowed, as behind a TLS proxy.
fn site(domain: &str, xmpp: &XmppServer) -> String {
    format!("consider_websocket_secure = true\n{}", insecure_site(domain, xmpp))
}

fn insecure_site(domain: &str, xmpp: &XmppServer) -> String {
    format!(
        "http_default_host = \"{domain}\"\nVirtualHost \"{domain}\"\n    modules_enabled = {{ \"websocket\" }}\n    http_xmpp_server = \"{}\"\n",
        xmpp.c2s
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_log_in_and_talk_through_canto_as_through_prosodys_own_websocket() {
    let xmpp = XmppServer::start("ws.xmpp.test").await;
    let server = TestServer::start(&site("ws.xmpp.test", &xmpp)).await;
    let through_canto = format!("ws://127.0.0.1:{}/xmpp-websocket", server.addr.port());
    let prosodys_own = format!("ws://{}/xmpp-websocket", xmpp.http);
    for (name, url) in [("canto", &through_canto), ("Prosody's mod_websocket", &prosodys_own)] {
        let seen = node_client("xmpp_websocket.mjs", &[url, "ws.xmpp.test"]).await;
        assert_eq!(seen["errors"], serde_json::json!([]), "{name}: {seen}");
        assert!(seen["alice"].as_str().is_some_and(|jid| jid.starts_with("alice@ws.xmpp.test/")), "{name}: {seen}");
        assert_eq!(seen["roster"], "jabber:iq:roster", "{name}: {seen}");
        assert_eq!(seen["bob_got"]["body"], "hello bob", "{name}: {seen}");
        assert_eq!(seen["bob_got"]["from"], seen["alice"], "{name}: {seen}");
        assert_eq!(seen["alice_got"]["body"], "hello alice ✓ <&>", "{name}: {seen}");
        assert_eq!(seen["stopped"], true, "{name}: {seen}");
    }
    // The endpoint answers a plain GET as Prosody's does, and refuses a
    // WebSocket without the `xmpp` subprotocol with 501.
    let page = server.get("ws.xmpp.test", "/xmpp-websocket").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("It works! Now point your WebSocket client"));
    let no_xmpp = raw_exchange(
        &server,
        b"GET /xmpp-websocket HTTP/1.1\r\nHost: ws.xmpp.test\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(no_xmpp.starts_with("HTTP/1.1 501 "), "{no_xmpp}");
}

/// Prosody would offer a client on a plain WebSocket no login; the XMPP
/// server behind the bridge cannot tell, so canto refuses it unless
/// `consider_websocket_secure` says a trusted TLS proxy is in front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_websocket_is_refused_unless_considered_secure() {
    let xmpp = XmppServer::start("plain.xmpp.test").await;
    let server = TestServer::start(&insecure_site("plain.xmpp.test", &xmpp)).await;
    let upgrade = b"GET /xmpp-websocket HTTP/1.1\r\nHost: plain.xmpp.test\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n";
    let refused = raw_exchange(&server, upgrade).await;
    assert!(refused.starts_with("HTTP/1.1 403 "), "{refused}");
    wait_for_log(&["plain.xmpp.test", "refused a WebSocket that is not secure"]).await;
    let secure = TestServer::start(&site("plain.xmpp.test", &xmpp)).await;
    let accepted = raw_exchange(&secure, upgrade).await;
    assert!(accepted.starts_with("HTTP/1.1 101 "), "{accepted}");
}

/// The XMPP server going away ends each bridged session cleanly: the
/// client hears the stream close, and canto keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xmpp_server_stopping_closes_the_sessions_it_carried() {
    let mut xmpp = XmppServer::start("stop.xmpp.test").await;
    let server = TestServer::start(&site("stop.xmpp.test", &xmpp)).await;
    let url = format!("ws://127.0.0.1:{}/xmpp-websocket", server.addr.port());
    let mut client = node_process("xmpp_websocket_hold.mjs", &[&url, "stop.xmpp.test"]);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let online = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(online.contains("alice@stop.xmpp.test/"), "{online}");
    xmpp.stop();
    let ended = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let ended: serde_json::Value = serde_json::from_str(&ended).unwrap();
    assert!(ended["disconnected"].is_object(), "{ended}");
    assert_eq!(
        ended["errors"],
        serde_json::json!(["system-shutdown"]),
        "Prosody's stream error reached the client: {ended}"
    );
    let _ = client.wait().await;
    assert_eq!(server.get("stop.xmpp.test", "/xmpp-websocket").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_message_each_other_at_once() {
    let xmpp = XmppServer::start("many.xmpp.test").await;
    let server = TestServer::start(&site("anon.many.xmpp.test", &xmpp)).await;
    let url = format!("ws://127.0.0.1:{}/xmpp-websocket", server.addr.port());
    let seen = node_client("xmpp_websocket_many.mjs", &[&url, "anon.many.xmpp.test", "50"]).await;
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!((seen["online"].as_u64(), seen["delivered"].as_u64()), (Some(100), Some(100)), "{seen}");
}

/// Sessions by transport: the open WebSockets of the `websocket` module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_sessions_are_counted_by_transport() {
    let xmpp = XmppServer::start("count.xmpp.test").await;
    let config = site("count.xmpp.test", &xmpp).replace("{ \"websocket\" }", "{ \"websocket\", \"http_openmetrics\" }");
    let server = TestServer::start(&config).await;
    let url = format!("ws://127.0.0.1:{}/xmpp-websocket", server.addr.port());
    let mut client = node_process("xmpp_websocket_hold.mjs", &[&url, "count.xmpp.test"]);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let online = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(online.contains("alice@count.xmpp.test/"), "{online}");
    let metrics = server.get("count.xmpp.test", "/metrics").await.text().await.unwrap();
    let open = metrics.lines().find_map(|line| line.strip_prefix("canto_websockets_open{module=\"websocket\"} "));
    assert_eq!(open.and_then(|v| v.parse::<f64>().ok()), Some(1.0), "{metrics}");
    assert!(!metrics.contains("canto_websockets_open{module=\"http_openmetrics\"}"), "{metrics}");
}

/// The module replaced while two users are logged in: their sessions go
/// on, handled by the new version from the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_reload_keeps_xmpp_sessions_open() {
    let xmpp = XmppServer::start("reload.xmpp.test").await;
    let first = std::fs::read(canto_guests::HTTP_XMPP_WEBSOCKET).unwrap();
    let config = site("reload.xmpp.test", &xmpp);
    let server = TestServer::start_with(&config, &[("websocket", canto_guests::HTTP_XMPP_WEBSOCKET)]).await;
    let url = format!("ws://127.0.0.1:{}/xmpp-websocket", server.addr.port());
    let mut client = node_process("xmpp_websocket.mjs", &[&url, "reload.xmpp.test", "pause"]);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let online = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert_eq!(online, r#"{"online":true}"#);
    // Another version: the same code with a custom section appended.
    let this_file = server.plugin_dir().join("mod_websocket.wasm").display().to_string();
    let seen_loads = log_lines_with(&["loaded module", &this_file]).len();
    let mut second = first.clone();
    second.extend_from_slice(&[0x00, 0x07, 0x06]);
    second.extend_from_slice(b"canto2");
    server.install_module("websocket", &second);
    wait_for_another_log(&["loaded module", &this_file], seen_loads).await;
    tokio::io::AsyncWriteExt::write_all(client.stdin.as_mut().unwrap(), b"go\n").await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let seen: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["bob_got"]["body"], "hello bob", "{seen}");
    assert_eq!(seen["alice_got"]["body"], "hello alice ✓ <&>", "{seen}");
    let _ = client.wait().await;
}

/// Strophe.js (npm) in headless Chromium, from a page on another origin:
/// it logs in over canto's `websocket` and messages itself.
pub(super) const STROPHE_PAGE: &str = r#"<!DOCTYPE html><html><body><pre id="out">pending</pre><script>STROPHE</script><script>
const params = new URLSearchParams(location.search);
const out = document.getElementById("out");
// A request pending until the session is done, so the page is not dumped before.
let done = false;
const hold = () => { if (!done) fetch("/hold").catch(() => {}).finally(hold); };
hold();
const finish = (text) => { if (!done) { out.textContent = text; done = true; } };
const { Strophe, $msg } = window.strophe ?? window;
const connection = new Strophe.Connection(params.get("service"));
connection.connect(params.get("jid"), "secret", (status) => {
  if (status === Strophe.Status.CONNECTED) {
    connection.addHandler((message) => {
      const body = message.getElementsByTagName("body")[0];
      finish("connected=" + Strophe.getBareJidFromJid(connection.jid) + " echo=" + Strophe.getText(body));
      connection.disconnect();
      return false;
    }, null, "message");
    connection.send($msg({ to: connection.jid, type: "chat" }).c("body").t("to myself"));
  } else if ([Strophe.Status.ERROR, Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.DISCONNECTED].includes(status)) {
    finish("failed status=" + status);
  }
});
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strophe_in_a_browser_logs_in_from_an_allowed_origin_and_not_from_another() {
    let xmpp = XmppServer::start("browser.xmpp.test").await;
    let strophe = node_clients().join("node_modules/strophe.js/dist/strophe.umd.min.js");
    let page = STROPHE_PAGE.replace("STROPHE", &std::fs::read_to_string(strophe).unwrap());
    let (allowed, other) = (serve_page(page.clone()).await, serve_page(page).await);
    let config =
        format!("access_control_allow_origins = {{ \"http://{allowed}\" }}\n{}", site("browser.xmpp.test", &xmpp));
    let server = TestServer::start(&config).await;
    let port = server.addr.port();
    let run = |page: std::net::SocketAddr| async move {
        let url = format!("http://{page}/?service=ws://localhost:{port}/xmpp-websocket&jid=alice@browser.xmpp.test");
        tokio::task::spawn_blocking(move || chromium_dom(&url)).await.unwrap()
    };
    let dom = run(allowed).await;
    assert!(dom.contains("connected=alice@browser.xmpp.test echo=to myself"), "{dom}");
    let dom = run(other).await;
    assert!(dom.contains("failed status="), "the Origin is refused before the upgrade: {dom}");
    wait_for_log(&["canto::access", "status=403", "module=websocket"]).await;
}

pub(super) fn node_process(script: &str, args: &[&str]) -> tokio::process::Child {
    let clients = canto_tests::node_clients();
    tokio::process::Command::new("node")
        .arg("--experimental-websocket")
        .arg(clients.join(script))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node")
}

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

/// The condition of a `terminate` answer (`None` when the answer is not one).
fn terminated(answer: &str) -> Option<String> {
    (attribute(answer, "type").as_deref() == Some("terminate"))
        .then(|| attribute(answer, "condition").unwrap_or_default())
}

/// The requests XEP-0124 says how to refuse, sent to canto and to
/// Prosody's own mod_bosh: the same conditions, the same parameters, the
/// same replay of an answer the client asks for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_conditions_prosodys_mod_bosh_gives() {
    let xmpp = XmppServer::start("errors.bosh.test").await;
    let server = TestServer::start(&site("errors.bosh.test", &xmpp, "")).await;
    let canto = format!("http://127.0.0.1:{}/http-bind", server.addr.port());
    let prosody = format!("http://{}/http-bind", xmpp.http);
    for (name, url) in [("canto", &canto), ("Prosody's mod_bosh", &prosody)] {
        let no_to = post(url, &format!("<body rid='1' wait='30' xmlns='{HTTPBIND}'/>")).await;
        assert_eq!(terminated(&no_to).as_deref(), Some("improper-addressing"), "{name}: {no_to}");
        let no_rid = post(url, &format!("<body to='errors.bosh.test' wait='30' xmlns='{HTTPBIND}'/>")).await;
        assert_eq!(terminated(&no_rid).as_deref(), Some("bad-request"), "{name}: {no_rid}");
        let garbage = post(url, "<body rid='1' to='errors.bosh.test'><unclosed></body>").await;
        assert_eq!(terminated(&garbage).as_deref(), Some("bad-request"), "{name}: {garbage}");
        let unknown = post(url, &format!("<body rid='2' sid='no-such-sid' xmlns='{HTTPBIND}'/>")).await;
        assert_eq!(terminated(&unknown).as_deref(), Some("item-not-found"), "{name}: {unknown}");

        // A new session: Prosody's parameters, `wait` cut to bosh_max_wait.
        let created = post(
            url,
            &format!("<body rid='100' to='errors.bosh.test' wait='300' hold='1' xmlns='{HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"),
        )
        .await;
        let sid = attribute(&created, "sid").unwrap_or_else(|| panic!("{name}: {created}"));
        for (attr, value) in [("wait", "120"), ("hold", "1"), ("requests", "2"), ("inactivity", "60"), ("polling", "5")]
        {
            assert_eq!(attribute(&created, attr).as_deref(), Some(value), "{name}: {attr} in {created}");
        }
        assert_eq!(attribute(&created, "from").as_deref(), Some("errors.bosh.test"), "{name}: {created}");
        assert!(created.contains("<mechanism>PLAIN</mechanism>"), "{name}: features come with it: {created}");
        assert!(!created.contains("starttls"), "{name}: {created}");
        // Asked again, the same answer; out of the window, the end.
        let again = post(url, &format!("<body rid='100' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
        assert_eq!(again, created, "{name}: a retransmission gets the answer it missed");
        let ahead = post(url, &format!("<body rid='107' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
        assert_eq!(terminated(&ahead).as_deref(), Some("item-not-found"), "{name}: {ahead}");
    }

    // The XMPP server, not the bridge, knows its hosts: an unknown one ends
    // the session with its stream error (Prosody's own: improper-addressing).
    let nowhere = post(&canto, &format!("<body rid='1' to='nowhere.test' wait='30' xmlns='{HTTPBIND}'/>")).await;
    assert_eq!(terminated(&nowhere).as_deref(), Some("remote-stream-error"), "{nowhere}");
    assert!(nowhere.contains("<host-unknown"), "{nowhere}");

    // A browser on another origin may POST text/xml (CORS preflight), as to Prosody.
    for (name, url) in [("canto", &canto), ("Prosody's mod_bosh", &prosody)] {
        let preflight = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", "http://elsewhere.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{name}: {}", preflight.status());
        let allowed = |header: &str| {
            preflight.headers().get(header).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase()
        };
        assert!(allowed("access-control-allow-methods").contains("post"), "{name}: {:?}", preflight.headers());
        assert!(allowed("access-control-allow-headers").contains("content-type"), "{name}: {:?}", preflight.headers());
        assert!(!allowed("access-control-allow-origin").is_empty(), "{name}: {:?}", preflight.headers());
    }
    let page = server.get("errors.bosh.test", "/http-bind").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("It works! Now point your BOSH client to this URL"));
}

/// Prosody would give a client on plain HTTP no login; the XMPP server
/// behind the bridge cannot tell, so canto refuses the session unless
/// `consider_bosh_secure` says a trusted TLS proxy is in front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_bosh_session_is_refused_unless_considered_secure() {
    let xmpp = XmppServer::start("plain.bosh.test").await;
    let config = site("plain.bosh.test", &xmpp, "").replace("consider_bosh_secure = true\n", "");
    let server = TestServer::start(&config).await;
    let url = format!("http://127.0.0.1:{}/http-bind", server.addr.port());
    let refused = post(&url, &format!("<body rid='1' to='plain.bosh.test' wait='30' xmlns='{HTTPBIND}'/>")).await;
    assert_eq!(terminated(&refused).as_deref(), Some("policy-violation"), "{refused}");
    wait_for_log(&["plain.bosh.test", "refused a BOSH session that is not secure"]).await;
    let page = server.get("plain.bosh.test", "/http-bind").await.text().await.unwrap();
    assert!(page.contains("This endpoint is not considered secure!"), "{page}");
}

/// `bosh_max_inactivity` counts only while no request is held: a session
/// outlives a held request longer than it, then ends once left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bosh_session_ends_after_bosh_max_inactivity_without_requests() {
    let xmpp = XmppServer::start("idle.bosh.test").await;
    let config = site("idle.bosh.test", &xmpp, "bosh_max_inactivity = 2")
        .replace("{ \"bosh\", \"websocket\" }", "{ \"bosh\", \"http_openmetrics\" }");
    let server = TestServer::start(&config).await;
    // Sessions by transport: BOSH's are its module's links.
    let sessions = || async {
        let metrics = server.get("idle.bosh.test", "/metrics").await.text().await.unwrap();
        let open = metrics.lines().find_map(|line| line.strip_prefix("canto_links_open{module=\"bosh\"} "));
        open.and_then(|v| v.parse::<f64>().ok())
    };
    let url = format!("http://127.0.0.1:{}/http-bind", server.addr.port());
    let answer = post(&url, &format!("<body rid='10' to='idle.bosh.test' wait='4' xmlns='{HTTPBIND}'/>")).await;
    assert_eq!(attribute(&answer, "inactivity").as_deref(), Some("2"), "{answer}");
    let sid = attribute(&answer, "sid").unwrap();
    let started = std::time::Instant::now();
    let held = post(&url, &format!("<body rid='11' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
    assert!(started.elapsed() >= Duration::from_secs(3), "held for `wait`: {:?}", started.elapsed());
    assert_eq!(terminated(&held), None, "{held}");
    // Answered when `wait` runs out again; meanwhile the session lives.
    let still = post(&url, &format!("<body rid='12' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
    assert_eq!(terminated(&still), None, "{still}");
    assert_eq!(sessions().await, Some(1.0));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(sessions().await, Some(0.0));
    let gone = post(&url, &format!("<body rid='13' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
    assert_eq!(terminated(&gone).as_deref(), Some("item-not-found"), "{gone}");
}

/// The XMPP server going away ends the session: the held request gets
/// Prosody's stream error in a `terminate` body, and canto keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xmpp_server_stopping_ends_a_bosh_session_with_its_stream_error() {
    let mut xmpp = XmppServer::start("stop.bosh.test").await;
    let server = TestServer::start(&site("stop.bosh.test", &xmpp, "")).await;
    let url = format!("http://127.0.0.1:{}/http-bind", server.addr.port());
    let (sid, _) = new_session(&url, "stop.bosh.test", 20).await;
    let held = tokio::spawn({
        let (url, sid) = (url.clone(), sid.clone());
        async move { post(&url, &format!("<body rid='21' sid='{sid}' xmlns='{HTTPBIND}'/>")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    xmpp.stop();
    let answer = tokio::time::timeout(Duration::from_secs(20), held).await.unwrap().unwrap();
    assert_eq!(terminated(&answer).as_deref(), Some("remote-stream-error"), "{answer}");
    assert!(answer.contains("<system-shutdown"), "{answer}");
    let after = post(&url, &format!("<body rid='22' sid='{sid}' xmlns='{HTTPBIND}'/>")).await;
    assert!(terminated(&after).is_some(), "{after}");
    assert_eq!(server.get("stop.bosh.test", "/http-bind").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_bosh_sessions_message_each_other_at_once() {
    let xmpp = XmppServer::start("many.bosh.test").await;
    let server = TestServer::start(&site("anon.many.bosh.test", &xmpp, "")).await;
    let url = format!("http://127.0.0.1:{}/http-bind", server.addr.port());
    let seen = node_client("xmpp_bosh_many.mjs", &[&url, "anon.many.bosh.test", "50"]).await;
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!((seen["online"].as_u64(), seen["delivered"].as_u64()), (Some(100), Some(100)), "{seen}");
}

/// The module replaced while a BOSH user and a WebSocket user are logged
/// in: the BOSH session lives in its link, not in an instance, and goes on
/// under the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_reload_keeps_bosh_sessions_open() {
    let xmpp = XmppServer::start("reload.bosh.test").await;
    let first = std::fs::read(canto_guests::HTTP_XMPP_BOSH).unwrap();
    let config = site("reload.bosh.test", &xmpp, "");
    let server = TestServer::start_with(&config, &[("bosh", canto_guests::HTTP_XMPP_BOSH)]).await;
    let port = server.addr.port();
    let (bosh, ws) = (format!("http://127.0.0.1:{port}/http-bind"), format!("ws://127.0.0.1:{port}/xmpp-websocket"));
    let mut client = super::xmpp::node_process("xmpp_bosh.mjs", &[&bosh, &ws, "reload.bosh.test", "pause"]);
    let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let online = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert_eq!(online, r#"{"online":true}"#);
    let this_file = server.plugin_dir().join("mod_bosh.wasm").display().to_string();
    let seen_loads = log_lines_with(&["loaded module", &this_file]).len();
    let mut second = first.clone();
    second.extend_from_slice(&[0x00, 0x07, 0x06]);
    second.extend_from_slice(b"canto2");
    server.install_module("bosh", &second);
    wait_for_another_log(&["loaded module", &this_file], seen_loads).await;
    tokio::io::AsyncWriteExt::write_all(client.stdin.as_mut().unwrap(), b"go\n").await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    let seen: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["bob_got"]["body"], "hello bob", "{seen}");
    assert_eq!(seen["alice_got"]["body"], "hello alice ✓ <&>", "{seen}");
    let _ = client.wait().await;
}

/// A page that POSTs a BOSH body as Strophe does (`text/xml`, which needs
/// a CORS preflight) and shows whether the browser let it through.
const POST_PAGE: &str = r#"<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
const service = new URLSearchParams(location.search).get("service");
fetch(service, { method: "POST", headers: { "Content-Type": "text/xml; charset=utf-8" },
                 body: "<body rid='1' to='browser.bosh.test' wait='5' xmlns='http://jabber.org/protocol/httpbind'/>" })
  .then((response) => response.text())
  .then((text) => { document.getElementById("out").textContent = "answered " + text; })
  .catch((error) => { document.getElementById("out").textContent = "failed " + error; });
</script></body></html>"#;

/// Strophe.js in headless Chromium over BOSH from a page on another
/// origin: the browser's CORS preflight for `POST text/xml` lets an
/// allowed origin log in, and stops another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strophe_in_a_browser_uses_bosh_from_an_allowed_origin_and_not_from_another() {
    let xmpp = XmppServer::start("browser.bosh.test").await;
    let strophe = node_clients().join("node_modules/strophe.js/dist/strophe.umd.min.js");
    let page = super::xmpp::STROPHE_PAGE.replace("STROPHE", &std::fs::read_to_string(strophe).unwrap());
    let (allowed, other) = (serve_page(page).await, serve_page(POST_PAGE.to_string()).await);
    let config =
        site("browser.bosh.test", &xmpp, &format!("access_control_allow_origins = {{ \"http://{allowed}\" }}"));
    let server = TestServer::start(&config).await;
    let port = server.addr.port();
    let run = |page: std::net::SocketAddr| async move {
        let url = format!("http://{page}/?service=http://localhost:{port}/http-bind&jid=alice@browser.bosh.test");
        tokio::task::spawn_blocking(move || chromium_dom(&url)).await.unwrap()
    };
    let dom = run(allowed).await;
    assert!(dom.contains("connected=alice@browser.bosh.test echo=to myself"), "{dom}");
    // From another origin the preflight gets no Access-Control-Allow-Origin:
    // the browser never sends the POST.
    let posts = log_lines_with(&["canto::access", "POST /http-bind", "host=browser.bosh.test"]).len();
    let dom = run(other).await;
    assert!(dom.contains("failed TypeError"), "{dom}");
    wait_for_log(&["canto::access", "OPTIONS /http-bind", "host=browser.bosh.test"]).await;
    assert_eq!(log_lines_with(&["canto::access", "POST /http-bind", "host=browser.bosh.test"]).len(), posts);
}

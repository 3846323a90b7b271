//! CORS as a real browser enforces it: headless Chromium runs fetch() from
//! a page on another origin against canto.

use super::*;
use canto_tests::{chromium_dom, serve_page};

/// Three cross-origin fetches to the canto port named in the page's
/// query string; the results are written into #out.
const PAGE: &str = r#"<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
const canto = "http://localhost:" + new URLSearchParams(location.search).get("canto");
async function attempt(name, path, options) {
  try {
    const response = await fetch(canto + path, options);
    return name + "=" + response.status;
  } catch (e) {
    return name + "=blocked";
  }
}
(async () => {
  const preflighted = { method: "PUT", headers: { "X-Custom": "1" }, body: "x" };
  const results = [
    await attempt("get", "/whoami/", {}),
    await attempt("put", "/echo/", preflighted),
    await attempt("put-not-allowed", "/whoami/", preflighted),
  ];
  document.getElementById("out").textContent = results.join(" ");
})();
</script></body></html>"#;

fn results(dom: &str) -> String {
    let start = dom.find("<pre id=\"out\">").map(|i| i + "<pre id=\"out\">".len()).unwrap_or(0);
    let end = dom[start..].find("</pre>").map(|i| start + i).unwrap_or(dom.len());
    dom[start..end].to_string()
}

async fn run_page(page: std::net::SocketAddr, canto_port: u16) -> String {
    let url = format!("http://{page}/?canto={canto_port}");
    let dom = tokio::task::spawn_blocking(move || chromium_dom(&url)).await.unwrap();
    results(&dom)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_succeed_and_others_are_blocked_by_the_browser() {
    let allowed = serve_page(PAGE.to_string()).await;
    let other = serve_page(PAGE.to_string()).await;
    let server = TestServer::start(&format!(
        r#"
            access_control_allow_origins = {{ "http://{allowed}" }}
            access_control_allow_methods = {{ "GET", "PUT", "OPTIONS" }}
            access_control_allow_headers = {{ "Content-Type", "X-Custom" }}
            -- whoami may be read cross-origin but not PUT to.
            http_cors_override = {{ whoami = {{ methods = {{ PUT = false }} }} }}
            VirtualHost "localhost"
                modules_enabled = {{ "http_whoami", "http_echo" }}
            "#
    ))
    .await;
    let port = server.addr.port();
    assert_eq!(run_page(allowed, port).await, "get=200 put=200 put-not-allowed=blocked");
    assert_eq!(run_page(other, port).await, "get=blocked put=blocked put-not-allowed=blocked");
}

/// A WebSocket opened from a page on another origin: echoed when that
/// origin is allowed, refused (403 before the upgrade) when it is not.
const SOCKET_PAGE: &str = r#"<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
const port = new URLSearchParams(location.search).get("canto");
const out = document.getElementById("out");
let opened = false;
// A request pending until the socket is done, so the page is not dumped before.
let done = false;
const hold = () => { if (!done) fetch("/hold").catch(() => {}).finally(hold); };
hold();
const socket = new WebSocket("ws://localhost:" + port + "/ws_echo/", ["echo"]);
socket.onopen = () => { opened = true; socket.send("from the browser"); };
socket.onmessage = (e) => { out.textContent = "echo=" + e.data + " protocol=" + socket.protocol; socket.close(1000); done = true; };
socket.onclose = () => { if (!opened) out.textContent = "refused"; done = true; };
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_from_an_allowed_origin_opens_and_from_another_is_refused() {
    let allowed = serve_page(SOCKET_PAGE.to_string()).await;
    let other = serve_page(SOCKET_PAGE.to_string()).await;
    let server = TestServer::start(&format!(
        "access_control_allow_origins = {{ \"http://{allowed}\" }}\nVirtualHost \"localhost\"\n    modules_enabled = {{ \"http_ws_echo\" }}\n"
    ))
    .await;
    let port = server.addr.port();
    assert_eq!(run_page(allowed, port).await, "echo=from the browser protocol=echo");
    assert_eq!(run_page(other, port).await, "refused");
    wait_for_log(&["canto::access", "status=403", "module=http_ws_echo"]).await;
}

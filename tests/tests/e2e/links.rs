//! Links: long-lived outgoing TCP and TLS connections a module opens
//! through the server (`canto:http/links`), bound to a WebSocket or to a
//! key, against a real line service on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use canto_tests::tls::TestCa;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

use super::websockets::python;
use super::*;

/// A line service on 127.0.0.1: greets each connection with `hello`,
/// answers each line with `echo:<line>`, hangs up on `bye`. Counts the
/// connections open now, so a test sees links close.
struct LineService {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

impl LineService {
    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, open) = (tls.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::SeqCst);
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_lines(stream).await;
                            }
                        }
                        None => serve_lines(tcp).await,
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, open }
    }

    /// Waits until `count` connections are open.
    async fn wait_open(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.open.load(Ordering::SeqCst) != count {
            assert!(Instant::now() < deadline, "{} connections open, not {count}", self.open.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_lines<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let (reader, mut writer) = tokio::io::split(stream);
    if writer.write_all(b"hello\n").await.is_err() {
        return;
    }
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == "bye" {
            break;
        }
        if writer.write_all(format!("echo:{line}\n").as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// A TLS line service with a certificate for `localhost` from `ca`.
async fn tls_service(ca: &TestCa) -> LineService {
    let issued = ca.issue(&["localhost"]);
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(rcgen::KeyPair::from_pem(&issued.key_pem).unwrap().serialize_der())
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![issued.der.clone().into()], key)
        .unwrap();
    LineService::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

fn site(host: &str, plain: SocketAddr, tls_port: u16, extra: &str) -> String {
    format!(
        r#"
{extra}
http_module_grants = {{ ws_link = {{ connect = {{ "{plain}", "localhost:{tls_port}" }} }} }}
VirtualHost "{host}"
    modules_enabled = {{ "http_ws_link" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_bridges_to_a_tcp_service_through_its_own_link() {
    let service = LineService::start(None).await;
    let server = TestServer::start(&site("wslinks.test", service.addr, 1, "")).await;
    let up = service.addr;
    let seen = python(
        server.addr.port(),
        &format!(
            r#"
async def main():
    async with ws("wslinks.test", "/ws_link/?target={up}") as bridge:
        out["greeting"] = await bridge.recv()
        await bridge.send("one\n")
        out["echo"] = await bridge.recv()
        await bridge.send(b"two\n")
        out["binary_echo"] = await bridge.recv()
        await bridge.send("bye\n")
        try:
            await bridge.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            out["closed"] = [closed.rcvd.code, closed.rcvd.reason] if closed.rcvd else None
    async with ws("wslinks.test", "/ws_link/?target={up}") as bridge:
        await bridge.recv()
        await bridge.send("close-link")
        out["closed_by_module"] = await bridge.recv()
        await bridge.send("late\n")
        out["after_close"] = await bridge.recv()
    async with ws("wslinks.test", "/ws_link/?target={up}") as bridge:
        await bridge.recv()
        out["client_left"] = True
    try:
        async with ws("wslinks.test", "/ws_link/?target=127.0.0.1:1"):
            out["not_granted"] = 101
    except websockets.exceptions.InvalidStatus as refused:
        out["not_granted"] = refused.response.status_code
finish(main)
"#
        ),
    )
    .await;
    assert_eq!(seen["greeting"], "hello\n", "{seen}");
    assert_eq!(seen["echo"], "echo:one\n");
    assert_eq!(seen["binary_echo"], "echo:two\n");
    assert_eq!(seen["closed"], serde_json::json!([4000, "closed by the peer"]), "the peer hung up: on-closed ran");
    assert_eq!(seen["closed_by_module"], "link closed");
    assert!(seen["after_close"].as_str().unwrap().starts_with("send failed: no open link"), "{seen}");
    assert_eq!(seen["not_granted"], 502);
    wait_for_log(&["http_ws_link", "may not connect to 127.0.0.1:1"]).await;
    // Every link is gone: closed by the peer, by the module, with its socket.
    service.wait_open(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_over_tls_verify_the_peer_against_the_configured_ca() {
    let ca = TestCa::new();
    let service = tls_service(&ca).await;
    let plain = LineService::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let port = service.addr.port();
    let trusting = TestServer::start(&site(
        "tlslinks.test",
        plain.addr,
        port,
        &format!("http_connect_ca_file = {:?}", ca_file.display().to_string()),
    ))
    .await;
    let path = format!("/ws_link/?key=secure&target=localhost:{port}&tls=1&wait=5000");
    let answer = trusting.get("tlslinks.test", &path).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "hello\n");
    let echo = trusting.get("tlslinks.test", "/ws_link/?key=secure&send=over%20tls&wait=5000").await;
    assert_eq!(echo.text().await.unwrap(), "echo:over tls\n");

    let untrusting = TestServer::start(&site("tlslinks-untrusted.test", plain.addr, port, "")).await;
    let refused = untrusting.get("tlslinks-untrusted.test", &path).await;
    assert_eq!(refused.status(), 502);
    let error = refused.text().await.unwrap();
    assert!(error.contains("TLS with localhost:") && error.contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_link_outlives_requests_and_a_newer_receive_ends_a_waiting_one() {
    let service = LineService::start(None).await;
    let config = site("keyed.test", service.addr, 1, "");
    let config = format!(
        "{config}\nVirtualHost \"other-keyed.test\"\n    modules_enabled = {{ \"http_ws_link\", \"http_openmetrics\" }}\n"
    );
    let server = TestServer::start(&config).await;
    let up = service.addr;
    let get = |path: String| {
        let client = server.client(&["keyed.test"]);
        let url = server.url("keyed.test", &path);
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get(format!("/ws_link/?key=a&target={up}&wait=5000")).await, (200, "hello\n".into()));
    assert_eq!(get("/ws_link/?key=a&send=ping&wait=5000".into()).await, (200, "echo:ping\n".into()));
    service.wait_open(1).await;
    // The same module on another host cannot see it.
    let elsewhere = server.get("other-keyed.test", "/ws_link/?key=a&open=0").await;
    assert_eq!(elsewhere.status(), 404);
    let metrics = server.get("other-keyed.test", "/metrics").await.text().await.unwrap();
    let open = metrics.lines().find_map(|line| line.strip_prefix("canto_links_open{module=\"http_ws_link\"} "));
    assert_eq!(open.and_then(|v| v.parse::<f64>().ok()), Some(1.0), "{metrics}");

    // A held request (BOSH's hold=1) gives way to the next one at once.
    let started = Instant::now();
    let held = tokio::spawn(get("/ws_link/?key=a&wait=30000".into()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let next = tokio::spawn(get("/ws_link/?key=a&wait=10000".into()));
    assert_eq!(held.await.unwrap(), (200, String::new()));
    assert_eq!(get("/ws_link/?key=a&send=next".into()).await, (200, "queued".into()));
    assert_eq!(next.await.unwrap(), (200, "echo:next\n".into()));
    assert!(started.elapsed() < Duration::from_secs(10), "the held request waited {:?}", started.elapsed());

    // Keys are per module and host; another key is another connection.
    assert_eq!(get(format!("/ws_link/?key=b&target={up}&wait=5000")).await, (200, "hello\n".into()));
    service.wait_open(2).await;
    // The peer hanging up: the module learns why, then the key is free.
    let (status, error) = get("/ws_link/?key=b&send=bye&wait=5000".into()).await;
    assert_eq!(status, 502);
    assert!(error.contains("closed by the peer"), "{error}");
    assert_eq!(get("/ws_link/?key=b&open=0".into()).await.0, 404);
    // The module closing it.
    assert_eq!(get("/ws_link/?key=a&close=1".into()).await, (200, "closed".into()));
    assert_eq!(get("/ws_link/?key=a&open=0".into()).await.0, 404);
    service.wait_open(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_link_nobody_touches_is_closed_after_the_idle_timeout() {
    let service = LineService::start(None).await;
    let server = TestServer::start(&site("idlelinks.test", service.addr, 1, "http_connect_idle_timeout = 1")).await;
    let opened = server.get("idlelinks.test", &format!("/ws_link/?key=idle&target={}", service.addr)).await;
    assert_eq!(opened.status(), 200);
    service.wait_open(1).await;
    service.wait_open(0).await;
    assert_eq!(server.get("idlelinks.test", "/ws_link/?key=idle&open=0").await.status(), 404);
}

/// `links.park`: a request waits in the server, not in an instance, and is
/// answered by `on-wake` in a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_requests_hold_no_slot_and_wake_on_data_timeout_takeover_or_end() {
    let service = LineService::start(None).await;
    let server = TestServer::start(&site("parked.test", service.addr, 1, "http_module_max_concurrency = 1")).await;
    let up = service.addr;
    let client = server.client(&["parked.test"]);
    let get = |path: String| {
        let (client, url) = (client.clone(), server.url("parked.test", &path));
        async move {
            let response = client.get(url).send().await.unwrap();
            let woken = response.headers().get("x-woken").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), woken.unwrap_or_default(), response.text().await.unwrap())
        }
    };
    for key in 0..5 {
        let greeting = get(format!("/ws_link/?key=k{key}&target={up}&wait=5000")).await;
        assert_eq!(greeting.2, "hello\n");
    }
    // Five parked at once, with one slot for the module...
    let parked: Vec<_> =
        (0..5).map(|key| tokio::spawn(get(format!("/ws_link/?key=k{key}&park=1&wait=30000")))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...and the module still answers at once: they hold no slot.
    let started = Instant::now();
    assert_eq!(get(format!("/ws_link/?key=other&target={up}&wait=5000")).await.2, "hello\n");
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?} for a slot", started.elapsed());
    for key in 0..5 {
        assert_eq!(get(format!("/ws_link/?key=k{key}&send=wake{key}")).await.2, "queued");
    }
    for (key, parked) in parked.into_iter().enumerate() {
        let woken = parked.await.unwrap();
        assert_eq!(woken, (200, "data".into(), format!("echo:wake{key}\n")));
    }

    // The wait running out.
    assert_eq!(get("/ws_link/?key=k0&park=1&wait=300".into()).await, (200, "timeout".into(), String::new()));
    // A later request taking the link over (BOSH's hold=1).
    let started = Instant::now();
    let held = tokio::spawn(get("/ws_link/?key=k2&park=1&wait=30000".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = get("/ws_link/?key=k2&send=next&park=1&wait=5000".into()).await;
    assert_eq!(next, (200, "data".into(), "echo:next\n".into()));
    assert_eq!(held.await.unwrap(), (200, "timeout".into(), String::new()));
    assert!(started.elapsed() < Duration::from_secs(10));
    // A module trapping while it answers: the request gets a 500, and what
    // it was given goes back to the link for the next reader.
    let failing = tokio::spawn(get("/ws_link/?key=k3&park=1&wait=30000&fail=1".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    get("/ws_link/?key=k3&send=again".into()).await;
    assert_eq!(failing.await.unwrap().0, 500);
    assert_eq!(get("/ws_link/?key=k3&wait=5000".into()).await.2, "echo:again\n");
    // The peer hanging up on a parked request's link: it learns why.
    let ending = tokio::spawn(get("/ws_link/?key=k1&park=1&wait=30000".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    get("/ws_link/?key=k1&send=bye".into()).await;
    let (status, woken, reason) = ending.await.unwrap();
    assert_eq!((status, woken.as_str()), (502, "ended"));
    assert!(reason.contains("closed by the peer"), "{reason}");
    assert_eq!(get("/ws_link/?key=k1&open=0".into()).await.0, 404);
}

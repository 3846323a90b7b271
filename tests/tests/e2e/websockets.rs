//! WebSockets served by modules, driven by a real client: Python's
//! `websockets` (PyPI), plus raw frames where a client library will not
//! misbehave on purpose.

use super::*;

/// Runs a Python script (with `websockets` imported and `PORT` set) that
/// prints one JSON object; returns it.
pub(super) async fn python(port: u16, script: &str) -> serde_json::Value {
    let prelude = format!(
        "import asyncio, json, socket, sys, base64, os\nimport websockets\nfrom websockets.asyncio.client import connect\nPORT = {port}\n\
         def ws(host, path, **options):\n    return connect(f\"ws://{{host}}:{{PORT}}{{path}}\", host=\"127.0.0.1\", **options)\n\
         out = {{}}\n\
         def finish(main):\n    try:\n        asyncio.run(asyncio.wait_for(main(), 30))\n    except asyncio.TimeoutError:\n        out[\"timed_out\"] = True\n    print(json.dumps(out))\n"
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &format!("{prelude}{script}")])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 (scripts/test installs websockets)");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)))
}

const SITE: &str = r#"
websocket_frame_buffer_limit = 65536
websocket_frame_fragment_limit = 4
access_control_allow_origins = { "http://good.example" }
VirtualHost "ws.test"
    modules_enabled = { "http_ws_echo", "http_ws_chat", "http_hello" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_echoes_text_binary_fragments_and_answers_pings() {
    let server = TestServer::start(SITE).await;
    let seen = python(
        server.addr.port(),
        r#"
async def main():
    async with ws("ws.test", "/ws_echo/", subprotocols=["echo"], max_size=None) as echo:
        out["subprotocol"] = echo.subprotocol
        await echo.send("hello")
        out["text"] = await echo.recv()
        await echo.send(b"\x00\x01\xff")
        out["binary"] = list(await echo.recv())
        await echo.send("")
        out["empty"] = await echo.recv()
        # Four frames (websockets ends with an empty final one): at the limit.
        await echo.send(["frag", "men", "ted"])
        out["fragmented"] = await echo.recv()
        big = "x" * 65536
        await echo.send(big)
        out["at_limit"] = len(await echo.recv())
        pong = await echo.ping()
        await asyncio.wait_for(pong, 5)
        out["pong"] = True
        await echo.close()
        out["client_close"] = echo.protocol.close_rcvd.code if echo.protocol.close_rcvd else None
    async with ws("ws.test", "/ws_echo/") as big:
        # Each fragment fits; the message they make does not.
        await big.send(["y" * 40000, "y" * 40000])
        try:
            await big.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            out["over_limit"] = closed.rcvd.code if closed.rcvd else None
    async with ws("ws.test", "/ws_echo/") as many:
        await many.send(["a", "b", "c", "d"])
        try:
            await many.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            out["too_many_fragments"] = closed.rcvd.code if closed.rcvd else None
    async with ws("ws.test", "/ws_echo/", subprotocols=["other"]) as other:
        out["unknown_subprotocol"] = other.subprotocol
finish(main)
"#,
    )
    .await;
    assert_eq!(seen["subprotocol"], "echo");
    assert_eq!(seen["text"], "hello");
    assert_eq!(seen["binary"], serde_json::json!([0, 1, 255]));
    assert_eq!(seen["empty"], "");
    assert_eq!(seen["fragmented"], "fragmented");
    assert_eq!(seen["too_many_fragments"], 1009, "websocket_frame_fragment_limit: {seen}");
    assert_eq!(seen["at_limit"], 65536);
    assert_eq!(seen["pong"], true);
    assert_eq!(seen["over_limit"], 1009, "{seen}");
    assert_eq!(seen["client_close"], 1000, "the server answered the client's close: {seen}");
    assert_eq!(seen["unknown_subprotocol"], serde_json::Value::Null);
    assert!(!log_lines_with(&["canto::access", "status=101", "module=http_ws_echo"]).is_empty(), "no access line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_checked_and_a_plain_get_still_reaches_the_module() {
    let server = TestServer::start(SITE).await;
    let plain = server.get("ws.test", "/ws_echo/").await;
    assert_eq!(plain.status(), 200);
    assert!(plain.text().await.unwrap().contains("WebSocket"));
    let seen = python(
        server.addr.port(),
        r#"
async def status(path, origin=None):
    try:
        async with ws("ws.test", path, origin=origin):
            return 101
    except websockets.exceptions.InvalidStatus as refused:
        return refused.response.status_code
async def main():
    out.update({
        "good_origin": await status("/ws_echo/", "http://good.example"),
        "evil_origin": await status("/ws_echo/", "http://evil.example"),
        "refused_by_module": await status("/ws_echo/?refuse"),
    })
finish(main)
"#,
    )
    .await;
    assert_eq!(seen["good_origin"], 101);
    assert_eq!(seen["evil_origin"], 403);
    assert_eq!(seen["refused_by_module"], 403);
    let to_hello = raw_exchange(
        &server,
        b"GET /hello/ HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(to_hello.starts_with("HTTP/1.1 200 "), "a module without a WebSocket handler just answers: {to_hello}");
    let version = raw_exchange(
        &server,
        b"GET /ws_echo/ HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert!(version.starts_with("HTTP/1.1 426 ") && version.contains("sec-websocket-version: 13"), "{version}");
}

/// Invalid UTF-8 in a text message closes with 1007, and a trapping event
/// closes its socket with 1011 while the others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_utf8_and_a_trap_each_close_one_socket() {
    let server = TestServer::start(SITE).await;
    let seen = python(
        server.addr.port(),
        r#"
def raw_close_code(payload):
    s = socket.create_connection(("127.0.0.1", PORT))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws_echo/ HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    frame = s.recv(2)
    rest = s.recv(frame[1] & 0x7f)
    s.close()
    return int.from_bytes(rest[:2], "big") if frame[0] == 0x88 else None
async def main():
    out["bad_utf8"] = raw_close_code(b"\xff\xfe")
    async with ws("ws.test", "/ws_echo/") as bystander:
        async with ws("ws.test", "/ws_echo/") as victim:
            await victim.send("trap!")
            try:
                await victim.recv()
            except websockets.exceptions.ConnectionClosed as closed:
                out["trap"] = closed.rcvd.code if closed.rcvd else None
        await bystander.send("still here")
        out["bystander"] = await bystander.recv()
finish(main)
"#,
    )
    .await;
    assert_eq!(seen["bad_utf8"], 1007);
    assert_eq!(seen["trap"], 1011);
    assert_eq!(seen["bystander"], "still here");
    wait_for_log(&["module=http_ws_echo", "closed with 1011"]).await;
}

/// Two nodes sharing a Redis store are one room: what was said on one is
/// shown to whoever joins the other, and `/who` counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_room_spans_two_nodes_through_a_shared_store() {
    let redis = canto_tests::daemons::RedisServer::start().await;
    let site = format!(
        "http_stores = {{ default = {{ backend = \"redis\"; url = \"{}\" }} }}\n\
         http_module_grants = {{ ws_chat = {{ stores = {{ \"default\" }} }} }}\n\
         VirtualHost \"chat.test\"\n    modules_enabled = {{ \"http_ws_chat\" }}\n",
        redis.url()
    );
    let (a, b) = (TestServer::start(&site).await, TestServer::start(&site).await);
    let seen = python(
        a.addr.port(),
        &format!(
            r#"
PORT_B = {}
async def main():
    async with ws("chat.test", "/ws_chat/") as alice:
        await alice.recv()
        await alice.send("/nick alice")
        await alice.recv()
        await alice.send("hello from a")
        await alice.recv()
        async with connect(f"ws://chat.test:{{PORT_B}}/ws_chat/", host="127.0.0.1") as bob:
            lines = []
            while not lines or lines[-1].startswith("* earlier"):
                lines.append(await bob.recv())
            out["bob_sees"] = lines
            await bob.send("/who")
            out["who"] = await bob.recv()
finish(main)
"#,
            b.addr.port()
        ),
    )
    .await;
    let lines: Vec<&str> = seen["bob_sees"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert!(lines.contains(&"* earlier: <alice> hello from a"), "{seen}");
    assert!(lines.last().unwrap().ends_with(" joined"), "{seen}");
    assert_eq!(seen["who"], "* 1 here, 2 in the room", "{seen}");
}

/// The chat room: a broadcast to every connection of the module on the
/// host, a nick kept in the connection's state between events (each runs
/// in a fresh instance), and closes the module asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_room_broadcasts_and_keeps_state_between_events() {
    let server = TestServer::start(SITE).await;
    let seen = python(
        server.addr.port(),
        r#"
async def main():
    async with ws("ws.test", "/ws_chat/") as alice:
        out["alice_joined"] = await alice.recv()
        async with ws("ws.test", "/ws_chat/") as bob:
            out["bob_joined_seen_by_alice"] = await alice.recv()
            await bob.recv()
            await alice.send("/nick alice")
            out["renamed"] = await bob.recv()
            await alice.recv()
            await alice.send("hi bob")
            out["bob_hears"] = await bob.recv()
            out["alice_hears"] = await alice.recv()
            await bob.send("/who")
            out["who"] = await bob.recv()
            await bob.send(b"binary")
            try:
                await bob.recv()
            except websockets.exceptions.ConnectionClosed as closed:
                out["binary_close"] = closed.rcvd.code
        out["bob_left"] = await alice.recv()
        await alice.send("/quit")
        try:
            await alice.recv()
        except websockets.exceptions.ConnectionClosed as closed:
            out["quit"] = [closed.rcvd.code, closed.rcvd.reason]
finish(main)
"#,
    )
    .await;
    assert!(seen["alice_joined"].as_str().unwrap().ends_with("joined"), "{seen}");
    assert!(seen["bob_joined_seen_by_alice"].as_str().unwrap().ends_with("joined"), "{seen}");
    assert!(seen["renamed"].as_str().unwrap().ends_with("is now alice"), "{seen}");
    assert_eq!(seen["bob_hears"], "<alice> hi bob");
    assert_eq!(seen["alice_hears"], "<alice> hi bob");
    assert_eq!(seen["who"], "* 2 here");
    assert_eq!(seen["binary_close"], 1003);
    assert!(seen["bob_left"].as_str().unwrap().ends_with("left"), "{seen}");
    assert_eq!(seen["quit"], serde_json::json!([1000, "bye"]));
}

/// Shutdown closes open sockets with 1001 (going away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001() {
    let mut server = TestServer::start("VirtualHost \"bye.test\"\nmodules_enabled = { \"http_ws_echo\" }\n").await;
    let port = server.addr.port();
    let client = tokio::spawn(python(
        port,
        r#"
async def main():
    async with ws("bye.test", "/ws_echo/") as socket_:
        try:
            await asyncio.wait_for(socket_.recv(), 20)
        except websockets.exceptions.ConnectionClosed as closed:
            out["code"] = closed.rcvd.code if closed.rcvd else None
finish(main)
"#,
    ));
    wait_for_log(&["canto::access", "status=101", "host=bye.test"]).await;
    let started = std::time::Instant::now();
    let stopping = server.begin_stop().expect("running");
    let seen = tokio::time::timeout(Duration::from_secs(20), client).await.unwrap().unwrap();
    assert_eq!(seen["code"], 1001);
    tokio::time::timeout(Duration::from_secs(15), stopping).await.unwrap().unwrap();
    // Well inside the 10 s grace: the drain waited for the socket's close, not the deadline.
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
}

/// A module replaced while 100 sockets are open: none drops, and the next
/// message on each is handled by the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_reload_keeps_sockets_and_the_new_version_handles_the_next_event() {
    use tokio::io::AsyncBufReadExt as _;
    let config = "VirtualHost \"r.test\"\nmodules_enabled = { \"swap\" }\n";
    let server = TestServer::start_with(config, &[("swap", canto_guests::HTTP_WS_ECHO)]).await;
    let script = format!(
        r#"
import asyncio, json, sys
from websockets.asyncio.client import connect
async def main():
    sockets = [await connect("ws://r.test:{}/swap/", host="127.0.0.1").__aenter__() for _ in range(100)]
    answers = []
    for s in sockets:
        await s.send("before")
        answers.append(await s.recv())
    print(json.dumps(answers[-1] if all(a == "before" for a in answers) else answers), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    answers = []
    for s in sockets:
        await s.send("after")
        answers.append(await s.recv())
    print(json.dumps(answers[-1] if all(a.endswith("> after") for a in answers) else answers), flush=True)
asyncio.run(main())
"#,
        server.addr.port()
    );
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
    assert_eq!(next().await.as_deref(), Some("\"before\""), "echoed by the first version");
    server.install_module("swap", &std::fs::read(canto_guests::HTTP_WS_CHAT).unwrap());
    for _ in 0..200 {
        if server.get("r.test", "/swap/").await.text().await.unwrap().contains("chat room") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.stdin.take().unwrap().write_all(b"go\n").await.unwrap();
    let after = next().await.unwrap_or_default();
    assert!(after.contains("> after"), "the new version (the chat room) handled it: {after}");
    assert!(child.wait().await.unwrap().success());
}

/// A thousand open sockets cost the server no instances: `hello` keeps
/// answering while they are open, and each still echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_sockets_leave_the_server_answering() {
    let server =
        TestServer::start("VirtualHost \"many.test\"\nmodules_enabled = { \"http_ws_echo\", \"http_hello\" }\n").await;
    let port = server.addr.port();
    let client = tokio::spawn(python(
        port,
        r#"
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def main():
    sockets = []
    for _ in range(1000):
        sockets.append(await ws("many.test", "/ws_echo/").__aenter__())
    out["open"] = len(sockets)
    print("open", file=sys.stderr, flush=True)
    await asyncio.sleep(3)
    for i, s in enumerate(sockets[::100]):
        await s.send(f"still {i}")
        assert await s.recv() == f"still {i}"
    out["echoed"] = True
    for s in sockets:
        await s.close()
finish(main)
"#,
    ));
    wait_for_log_count(&["canto::access", "status=101", "host=many.test"], 1000).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        assert_eq!(server.get("many.test", "/hello/").await.status(), 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "hello took {slowest:?} with 1,000 sockets open");
    let seen = tokio::time::timeout(Duration::from_secs(60), client).await.unwrap().unwrap();
    assert_eq!(seen["open"], 1000, "{seen}");
    assert_eq!(seen["echoed"], true, "{seen}");
}

/// Waits until at least `count` log lines contain every one of `needles`.
async fn wait_for_log_count(needles: &[&str], count: usize) {
    for _ in 0..1200 {
        if log_lines_with(needles).len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} log lines contain all of {needles:?}");
}

/// Past `http_websocket_max_connections` for a module on a host, an
/// upgrade gets 503; a place freed by a close is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_has_at_most_its_share_of_open_sockets() {
    let server = TestServer::start(
        "http_websocket_max_connections = 2\nVirtualHost \"cap.test\"\nmodules_enabled = { \"http_ws_echo\" }\n",
    )
    .await;
    let seen = python(
        server.addr.port(),
        r#"
async def main():
    first = await ws("cap.test", "/ws_echo/").__aenter__()
    second = await ws("cap.test", "/ws_echo/").__aenter__()
    try:
        async with ws("cap.test", "/ws_echo/"):
            out["third"] = 101
    except websockets.exceptions.InvalidStatus as refused:
        out["third"] = refused.response.status_code
    await first.close()
    await asyncio.sleep(0.5)
    async with ws("cap.test", "/ws_echo/") as again:
        await again.send("in")
        out["after_a_close"] = await again.recv()
    await second.close()
finish(main)
"#,
    )
    .await;
    assert_eq!(seen["third"], 503, "{seen}");
    assert_eq!(seen["after_a_close"], "in", "{seen}");
}

/// The WebSocket echo written in Python (componentize-py) behaves as the
/// Rust one: text, binary, its subprotocol, a refused open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_websocket_echo_behaves_as_the_rust_one() {
    let python_echo = canto_language_guests::MODULES
        .iter()
        .find(|m| m.name == "http_ws_echo_py")
        .unwrap_or_else(|| panic!("not built: {:?}", canto_language_guests::PROBLEMS));
    let server = TestServer::start_with(
        "VirtualHost \"py.test\"\nmodules_enabled = { \"http_ws_echo_py\" }\n",
        &[("http_ws_echo_py", python_echo.path)],
    )
    .await;
    let seen = python(
        server.addr.port(),
        r#"
async def main():
    async with ws("py.test", "/ws_echo_py/", subprotocols=["echo"]) as echo:
        out["subprotocol"] = echo.subprotocol
        await echo.send("from python")
        out["text"] = await echo.recv()
        await echo.send(b"\x01\x02")
        out["binary"] = list(await echo.recv())
    try:
        async with ws("py.test", "/ws_echo_py/?refuse"):
            out["refused"] = 101
    except websockets.exceptions.InvalidStatus as refused:
        out["refused"] = refused.response.status_code
finish(main)
"#,
    )
    .await;
    assert_eq!(seen["subprotocol"], "echo", "{seen}");
    assert_eq!(seen["text"], "from python");
    assert_eq!(seen["binary"], serde_json::json!([1, 2]));
    assert_eq!(seen["refused"], 403);
}

/// RFC 8441: a WebSocket as one stream of an HTTP/2 connection (h2c with
/// prior knowledge here), beside ordinary requests on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_run_over_http2_extended_connect() {
    use futures::{SinkExt as _, StreamExt as _};
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let server = TestServer::start(SITE).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = |method: hyper::Method, path: &str, protocol: Option<&'static str>| {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://ws.test{path}"))
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", "echo")
            .body(Empty::<Bytes>::new())
            .unwrap();
        if let Some(protocol) = protocol {
            request.extensions_mut().insert(hyper::ext::Protocol::from_static(protocol));
        }
        request
    };
    // An ordinary request first: the server's SETTINGS (which allow
    // extended CONNECT) have arrived by its answer.
    let hello = sender.send_request(request(hyper::Method::GET, "/hello/", None)).await.unwrap();
    assert_eq!(hello.status(), 200);

    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut response =
            sender.send_request(request(hyper::Method::CONNECT, "/ws_echo/", Some("websocket"))).await.unwrap();
        assert_eq!(response.status(), 200, "RFC 8441 answers 200, not 101");
        assert_eq!(response.headers()["sec-websocket-protocol"], "echo");
        let stream = hyper::upgrade::on(&mut response).await.expect("the stream is the socket");
        sockets
            .push(tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(stream), Role::Client, None).await);
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        socket.send(Message::text(format!("over h2, stream {i}"))).await.unwrap();
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(format!("over h2, stream {i}")));
    }
    // The connection still serves requests beside its sockets.
    let again = sender.send_request(request(hyper::Method::GET, "/hello/", None)).await.unwrap();
    assert_eq!(again.status(), 200);
    let mut first = sockets.remove(0);
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "done".into(),
    };
    first.close(Some(normal)).await.unwrap();
    while let Some(Ok(frame)) = first.next().await {
        if let Message::Close(frame) = frame {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
        }
    }
    sockets[0].send(Message::text("still here")).await.unwrap();
    assert_eq!(sockets[0].next().await.unwrap().unwrap(), Message::text("still here"));

    // Extended CONNECT to a module without WebSockets, and a plain CONNECT.
    let refused = sender.send_request(request(hyper::Method::CONNECT, "/hello/", Some("websocket"))).await.unwrap();
    assert_eq!(refused.status(), 405);
    let tunnel = sender.send_request(request(hyper::Method::CONNECT, "/ws_echo/", None)).await;
    assert!(tunnel.is_err() || tunnel.is_ok_and(|r| r.status() == 405), "a plain CONNECT is no tunnel");
    assert!(!log_lines_with(&["canto::access", "CONNECT", "status=200", "module=http_ws_echo"]).is_empty());
}

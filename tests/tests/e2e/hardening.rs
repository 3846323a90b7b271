//! Clients that send nothing, never finish, or ask for what canto is not:
//! each is bounded, and the server keeps serving everyone else.

use super::*;

/// Reads until the server closes the connection; `None` if it has not
/// within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut seen)).await.ok().map(|_| seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let server = TestServer::start(&format!("http_first_byte_timeout = 1\nhttp_idle_timeout = 2\n{DEMO}")).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await.is_some(), "still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before its time");
    // A half-sent HTTP/2 preface is no better.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_within(&mut half, Duration::from_secs(10)).await.is_some(), "a half preface stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_and_http2_connections_are_closed() {
    let server = TestServer::start(&format!("http_idle_timeout = 1\n{DEMO}")).await;
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive.write_all(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let seen = closed_within(&mut keep_alive, Duration::from_secs(5)).await.expect("closed once idle");
    assert!(String::from_utf8_lossy(&seen).contains("hello from localhost"), "answered first");
    // HTTP/2 with no streams: a GOAWAY frame (type 7), then the close.
    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let seen = closed_within(&mut h2, Duration::from_secs(5)).await.expect("closed once idle");
    let mut frames = &seen[..];
    let mut kinds = Vec::new();
    while frames.len() >= 9 {
        let length = usize::from(frames[0]) << 16 | usize::from(frames[1]) << 8 | usize::from(frames[2]);
        kinds.push(frames[3]);
        frames = &frames[(9 + length).min(frames.len())..];
    }
    assert!(kinds.contains(&7), "no GOAWAY among frames {kinds:?}");
    // A connection in use is not idle, however long its request takes.
    let busy = TestServer::start("http_idle_timeout = 1\nhttp_first_byte_timeout = 1\nVirtualHost \"t.test\"\nmodules_enabled = { \"http_trickle\" }\n").await;
    let mut stream = TcpStream::connect(busy.addr).await.unwrap();
    stream.write_all(b"GET /trickle/ HTTP/1.1\r\nHost: t.test\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await.is_none(), "closed while streaming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_accepting_waits_for_a_close() {
    let server = TestServer::start(&format!("http_max_connections = 3\n{DEMO}")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        assert!(stream.read(&mut buf).await.unwrap() > 0);
        held.push(stream);
    }
    // The kernel completes the fourth handshake; canto does not serve it.
    let mut fourth = TcpStream::connect(server.addr).await.unwrap();
    fourth.write_all(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    wait_for_log(&["3 connections are open (http_max_connections)"]).await;
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "the fourth connection was served past the cap");
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("hello from localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_gets_431_and_a_small_limit_applies() {
    let server = TestServer::start(DEMO).await;
    let big = format!("GET /hello/ HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(100 * 1024));
    let response = raw_exchange(&server, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431 "), "{:.200}", response);
    let fits = format!(
        "GET /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Fits: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    assert!(raw_exchange(&server, fits.as_bytes()).await.starts_with("HTTP/1.1 200 "));
    let small = TestServer::start(&format!("http_max_header_size = 16384\n{DEMO}")).await;
    let response = raw_exchange(&small, fits.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431 "), "{:.200}", response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_line_past_the_head_limit_gets_414() {
    let server = TestServer::start(DEMO).await;
    let long = format!("GET /hello/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(100 * 1024));
    let response = raw_exchange(&server, long.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 414 "), "{:.200}", response);
    assert!(response.contains("\r\ndate: "), "{response}");
    // Also as the second request of a kept-alive connection.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut first = [0u8; 4096];
    let n = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200 "));
    stream.write_all(long.as_bytes()).await.unwrap();
    let seen = closed_within(&mut stream, Duration::from_secs(10)).await.expect("closed");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 414 "), "{:.200}", String::from_utf8_lossy(&seen));
    wait_for_log(&["canto::access", "status=414", "request line longer than http_max_header_size"]).await;
}

/// A connection closed for taking too long to send its request hears
/// why (408); one closed while idle between requests just closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_times_out_gets_408_and_an_idle_one_none() {
    let server = TestServer::start(&format!("http_first_byte_timeout = 1\nhttp_idle_timeout = 1\n{DEMO}")).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"GET /hello/ HTTP/1.1\r\nHost: loc").await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    for (name, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        let seen = closed_within(stream, Duration::from_secs(5)).await.expect("closed");
        let seen = String::from_utf8_lossy(&seen);
        assert!(seen.starts_with("HTTP/1.1 408 ") && seen.contains("connection: close"), "{name}: {seen}");
    }
    let seen = closed_within(&mut idle, Duration::from_secs(5)).await.expect("closed");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200 ") && !seen.contains("408"), "{seen}");
    wait_for_log(&["canto::access", "status=408", "no complete request in time"]).await;
}

/// Slow clients holding every slot of a module do not leave the next
/// request hanging: past `http_module_queue_timeout` it gets 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_no_free_slot_in_time_gets_503() {
    let server = TestServer::start(
            "http_module_max_concurrency = 1\nhttp_module_queue_timeout = 1\nVirtualHost \"q.test\"\nmodules_enabled = { \"http_trickle\", \"http_hello\" }\n",
        )
        .await;
    let holding = server.get("q.test", "/trickle/").await;
    assert_eq!(holding.status(), 200);
    let started = std::time::Instant::now();
    let waiting = server.get("q.test", "/trickle/").await;
    assert_eq!(waiting.status(), 503);
    assert_eq!(waiting.headers()["retry-after"], "5");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    wait_for_log(&["module=http_trickle", "no free slot after 1s"]).await;
    // Other modules have their own slots.
    assert_eq!(server.get("q.test", "/hello/").await.status(), 200);
    drop(holding);
}

/// An upload trickled a byte at a time is cut once a window of waiting
/// on it brings less than `http_body_min_rate`: `408` when the module
/// has not answered yet, a log line and a count, and the module's slot
/// is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_upload_is_cut_with_408_and_frees_its_slot() {
    let server = TestServer::start(
            "http_body_min_rate = 1000\nhttp_body_min_rate_window = 1\nhttp_module_max_concurrency = 1\nVirtualHost \"up.test\"\nmodules_enabled = { \"http_echo\", \"http_openmetrics\" }\n",
        )
        .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST /echo/?whole HTTP/1.1\r\nHost: up.test\r\nContent-Length: 100000\r\n\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) && !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "cut after {:?}", started.elapsed());
    wait_for_log(&["request body cut", "module=http_echo", "http_body_min_rate = 1000"]).await;
    // The slot is free: the only one this module has.
    let echoed =
        server.client(&["up.test"]).post(server.url("up.test", "/echo/?whole")).body("back").send().await.unwrap();
    assert_eq!(echoed.text().await.unwrap(), "back");
    let metrics = server.get("up.test", "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("canto_bodies_too_slow_total{direction=\"request\"} 1"), "{metrics}");
}

/// A client that stops reading a large download is dropped once a
/// window of the body waiting on it moves less than
/// `http_body_min_rate`, which frees the module's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_download_is_dropped_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 32 << 20]).unwrap();
    std::fs::write(dir.path().join("small.txt"), "small\n").unwrap();
    let server = TestServer::start(&format!(
            "http_body_min_rate = 100000\nhttp_body_min_rate_window = 1\nhttp_module_max_concurrency = 1\nVirtualHost \"down.test\"\nmodules_enabled = {{ \"http_files\", \"http_openmetrics\" }}\nhttp_files_dir = {:?}\n",
            dir.path()
        ))
        .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: down.test\r\n\r\n").await.unwrap();
    wait_for_log(&["closing a connection whose client took", "http_body_min_rate = 100000"]).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut received)).await;
    assert!(received.len() < 32 << 20, "the whole file arrived");
    let small = tokio::time::timeout(Duration::from_secs(5), server.get("down.test", "/files/small.txt")).await;
    assert_eq!(small.expect("the slot stayed taken").text().await.unwrap(), "small\n");
    let metrics = server.get("down.test", "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("canto_bodies_too_slow_total{direction=\"response\"} 1"), "{metrics}");
}

/// A client that gives up on a spinning module still leaves its line
/// in the access log (status 499, and why) and its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_left_is_logged_and_counted() {
    let server =
        TestServer::start("http_module_timeout = 5\nVirtualHost \"gone.test\"\nmodules_enabled = { \"http_loop\" }\n")
            .await;
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /loop/?gone HTTP/1.1\r\nHost: gone.test\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(stream);
    }
    let line = wait_for_log(&["canto::access", "host=gone.test", "status=499"]).await;
    assert!(line.contains("module=http_loop") && line.contains("client closed the connection"), "{line}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(log_lines_with(&["canto::access", "host=gone.test", "status=499"]).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_405_and_absurd_methods_are_501() {
    let server = TestServer::start(DEMO).await;
    let response =
        raw_exchange(&server, b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n")
            .await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    let method = "X".repeat(100_000);
    let request = format!("{method} /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = raw_exchange(&server, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 414 "), "{:.100}", response);
    let request = format!("{} /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "Y".repeat(1000));
    let response = raw_exchange(&server, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 501 "), "{:.100}", response);
    let logged = wait_for_log(&["canto::access", "YYYYYYYY"]).await;
    assert!(logged.len() < 400, "the method is logged whole: {} bytes", logged.len());
}

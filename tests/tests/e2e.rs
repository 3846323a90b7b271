//! End-to-end tests: each starts a real server on 127.0.0.1:0 and talks to
//! it over real sockets with real wasm modules from `guest-modules/`.
//! One integration-test binary; each area in its own module.

use std::time::Duration;

use canto_tests::{TestServer, log_lines_with, wait_for_log};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The demo modules on one VirtualHost, as the built-in default has them.
const DEMO: &str = r#"
VirtualHost "localhost"
    modules_enabled = { "http_hello", "http_whoami", "http_echo" }
"#;

/// Sends raw bytes on a fresh connection and reads until the server closes.
async fn raw_exchange(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

mod modules {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hello_answers_with_its_host() {
        let server = TestServer::start(DEMO).await;
        let response = server.get("localhost", "/hello/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
        assert!(response.headers().contains_key("date"), "responses carry a Date header");
        assert_eq!(response.text().await.unwrap(), "hello from localhost\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whoami_reports_what_the_server_established() {
        let server = TestServer::start(DEMO).await;
        let response = server.get("LocalHost.", "/whoami/some/path?query=1").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let json: serde_json::Value = response.json().await.unwrap();
        let port = server.addr.port();
        assert_eq!(
            json,
            serde_json::json!({
                "host": "localhost",
                "method": "GET",
                "path": "/whoami/some/path",
                "base_path": "/whoami",
                "base_url": format!("http://localhost:{port}/whoami/"),
                "ip": "127.0.0.1",
                "secure": false,
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_returns_ten_mebibytes_byte_for_byte() {
        let server = TestServer::start(DEMO).await;
        let body: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let response = server
            .client(&["localhost"])
            .post(server.url("localhost", "/echo/"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.bytes().await.unwrap();
        assert_eq!(echoed.len(), body.len());
        assert!(echoed == body, "echoed bytes differ from what was sent");
    }

    /// The first chunk comes back before the request body is finished, so
    /// neither direction is buffered whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn echo_streams_in_both_directions() {
        let server = TestServer::start(DEMO).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /echo/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nping\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("ping\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("the first chunk should come back while the request is still open")
                .unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        stream.write_all(b"5\r\npong\n\r\n0\r\n\r\n").await.unwrap();
        while !String::from_utf8_lossy(&seen).contains("pong\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_hundred_concurrent_requests_are_all_answered() {
        let server = TestServer::start(DEMO).await;
        let client = server.client(&["localhost"]);
        let requests = (0..200).map(|i| {
            let client = client.clone();
            let url = server.url("localhost", &format!("/hello/?n={i}"));
            async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
        });
        let statuses = futures::future::join_all(requests).await;
        let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
        assert_eq!(ok, 200, "statuses: {statuses:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn modules_declare_paths_and_see_only_declared_options() {
        let server = TestServer::start(
            r#"
            greeting = "hi there"
            secret = "hunter2"
            VirtualHost "options.test"
                modules_enabled = { "http_options" }
            "#,
        )
        .await;
        let response = server.get("options.test", "/opts").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "greeting=\"hi there\"\nsecret=unset\n");
        wait_for_log(&["options requested", "module=http_options", "host=options.test"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_standard_wasi_http_component_runs_unchanged() {
        let server = TestServer::start("VirtualHost \"plain.test\"\nmodules_enabled = { \"http_plain\" }\n").await;
        let response = server.get("plain.test", "/plain/x?y=1").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "plain wasi:http: Method::Get /plain/x?y=1\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_paths_moves_a_module() {
        let server = TestServer::start(
            r#"
            VirtualHost "paths.test"
                modules_enabled = { "http_hello" }
                http_paths = { hello = "/greet/$host/" }
            "#,
        )
        .await;
        assert_eq!(server.get("paths.test", "/greet/paths.test").await.status(), 200);
        assert_eq!(server.get("paths.test", "/hello").await.status(), 404);
    }
}

/// Clients that send nothing, never finish, or ask for what canto is not:
/// each is bounded, and the server keeps serving everyone else.
mod hardening {
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

    /// A client that gives up on a spinning module still leaves its line
    /// in the access log (status 499, and why) and its count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_whose_client_left_is_logged_and_counted() {
        let server = TestServer::start(
            "http_module_timeout = 5\nVirtualHost \"gone.test\"\nmodules_enabled = { \"http_loop\" }\n",
        )
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
        let response = raw_exchange(
            &server,
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
        let method = "X".repeat(100_000);
        let request = format!("{method} /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(&server, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 431 ") || response.starts_with("HTTP/1.1 501 "), "{:.100}", response);
        let request = format!("{} /hello/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "Y".repeat(1000));
        let response = raw_exchange(&server, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 501 "), "{:.100}", response);
        let logged = wait_for_log(&["canto::access", "YYYYYYYY"]).await;
        assert!(logged.len() < 400, "the method is logged whole: {} bytes", logged.len());
    }
}

mod protocol {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unmounted_path_is_404() {
        let server = TestServer::start(DEMO).await;
        assert_eq!(server.get("localhost", "/nothing-here").await.status(), 404);
        // Segment boundaries: /hellox is not under /hello.
        assert_eq!(server.get("localhost", "/hellox").await.status(), 404);
        assert_eq!(server.get("localhost", "/hello/sub").await.status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_host_is_404_naming_it() {
        let server = TestServer::start(DEMO).await;
        let response = server.get("elsewhere.test", "/hello").await;
        assert_eq!(response.status(), 404);
        assert!(response.text().await.unwrap().contains("Unknown host: elsewhere.test"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_without_host_is_400() {
        let server = TestServer::start(DEMO).await;
        let response = raw_exchange(&server, b"GET /hello HTTP/1.0\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.0 400 "), "{response}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = TestServer::start(DEMO).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = b"GET /hello/ HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let mut received = String::new();
        for _ in 0..3 {
            stream.write_all(request).await.unwrap();
            let mut buf = [0u8; 4096];
            let before = received.matches("hello from localhost").count();
            while received.matches("hello from localhost").count() == before {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "server closed a keep-alive connection");
                received.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        assert_eq!(received.matches("HTTP/1.1 200 OK").count(), 3);
    }

    /// HTTP/1.0 has no chunked framing: an HTTP/1.0 keep-alive request
    /// gets either a length and a connection that stays open, or
    /// `Connection: close` and a close; never "keep-alive" and then a close.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http10_keep_alive_is_framed_or_closed_never_both() {
        let server = TestServer::start(DEMO).await;
        for path in ["/hello/", "/whoami/", "/missing"] {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut response)).await.is_ok();
            let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
            let head = text.split("\r\n\r\n").next().unwrap_or_default().to_string();
            if closed {
                assert!(!head.contains("connection: keep-alive"), "{path}: said keep-alive, then closed:\n{text}");
            } else {
                assert!(head.contains("content-length: "), "{path}: kept open without a length:\n{text}");
                assert!(head.contains("connection: keep-alive"), "{path}: {text}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_prior_knowledge_works_on_plain_http() {
        let server = TestServer::start(DEMO).await;
        let client =
            reqwest::Client::builder().http2_prior_knowledge().resolve("localhost", server.addr).build().unwrap();
        let response = client.get(server.url("localhost", "/hello/")).send().await.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello from localhost\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_gets_one_access_log_line() {
        let server = TestServer::start("VirtualHost \"access.test\"\nmodules_enabled = { \"http_hello\" }\n").await;
        server.get("access.test", "/hello/logged").await;
        let line = wait_for_log(&["canto::access", "host=access.test", "GET /hello/logged"]).await;
        assert!(
            line.contains("module=http_hello") && line.contains("status=200") && line.contains("duration_ms="),
            "{line}"
        );
    }
}

mod failures {
    use super::*;

    const TRAP: &str = "VirtualHost \"trap.test\"\nmodules_enabled = { \"http_trap\" }\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trapping_module_costs_one_500_and_the_next_request_succeeds() {
        let server = TestServer::start(TRAP).await;
        let response = server.get("trap.test", "/trap/panic").await;
        assert_eq!(response.status(), 500);
        let page = response.text().await.unwrap();
        assert!(!page.contains("asked to trap"), "guest internals must not reach the client");
        wait_for_log(&["module failed", "module=http_trap", "host=trap.test"]).await;
        // The guest's own stderr (its panic message) lands in the log, tagged.
        wait_for_log(&["http_trap was asked to trap", "module=http_trap", "stream=\"stderr\""]).await;

        let response = server.get("trap.test", "/trap/ok").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "alive\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_that_never_answers_gets_500() {
        let server = TestServer::start("VirtualHost \"silent.test\"\nmodules_enabled = { \"http_trap\" }\n").await;
        assert_eq!(server.get("silent.test", "/trap/silent").await.status(), 500);
        wait_for_log(&["returned without setting a response", "module=http_trap", "host=silent.test"]).await;
        assert_eq!(server.get("silent.test", "/trap/ok").await.status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_that_is_not_a_component_stops_startup_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mod_http_garbage.wasm"), b"not wasm at all").unwrap();
        let config = format!(
            "plugin_paths = {{ {:?} }}\nVirtualHost \"g.test\"\nmodules_enabled = {{ \"http_garbage\" }}\n",
            dir.path().display().to_string()
        );
        let error = TestServer::try_start(&config).await.err().expect("garbage must not load");
        assert!(error.contains("module http_garbage: not a valid WebAssembly component"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_config_names_file_line_and_column() {
        let error = TestServer::try_start("VirtualHost \"x\"\n  http_paths = { files = function() end }\n")
            .await
            .err()
            .expect("functions are not config");
        assert!(error.contains("prosody.cfg.lua:7:26: functions are not supported in a config"), "{error}");
    }
}

/// `http_module_instance_reuse`: what carries over between the requests
/// of a reused instance, and what never does.
mod instance_reuse {
    use super::*;

    /// The trap module's per-instance request count, after letting the
    /// previous request's instance settle back into the idle set (its task
    /// puts it back just after the response is complete; the client can
    /// see the response first).
    async fn served(server: &TestServer, host: &str) -> String {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = server.get(host, "/trap/count").await;
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn by_default_every_request_gets_a_fresh_instance() {
        let server = TestServer::start("VirtualHost \"fresh.test\"\nmodules_enabled = { \"http_trap\" }\n").await;
        for _ in 0..3 {
            assert_eq!(served(&server, "fresh.test").await, "served 1\n");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reused_instance_serves_its_limit_then_is_retired() {
        let server = TestServer::start(
            "http_module_instance_reuse = { trap = 3 }\nVirtualHost \"r.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        let mut counts = Vec::new();
        for _ in 0..7 {
            counts.push(served(&server, "r.test").await);
        }
        let expected: Vec<String> = [1, 2, 3, 1, 2, 3, 1].iter().map(|n| format!("served {n}\n")).collect();
        assert_eq!(counts, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trap_discards_the_instance_and_the_next_request_starts_fresh() {
        let server = TestServer::start(
            "http_module_instance_reuse = 100\nVirtualHost \"t.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        assert_eq!(served(&server, "t.test").await, "served 1\n");
        assert_eq!(served(&server, "t.test").await, "served 2\n");
        assert_eq!(server.get("t.test", "/trap/panic").await.status(), 500);
        assert_eq!(served(&server, "t.test").await, "served 1\n", "a trapped instance must not serve again");
        // One that returned without answering also finished cleanly: kept.
        assert_eq!(server.get("t.test", "/trap/silent").await.status(), 500);
        assert_eq!(served(&server, "t.test").await, "served 3\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_instance_that_keeps_a_request_is_dropped_which_ends_that_request() {
        let server = TestServer::start(
            "http_module_instance_reuse = 100\nVirtualHost \"h.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        assert_eq!(served(&server, "h.test").await, "served 1\n");
        // Returning while still holding the response slot: were the instance
        // kept, the client would wait until it retired.
        let held = tokio::time::timeout(Duration::from_secs(5), server.get("h.test", "/trap/hold")).await;
        assert_eq!(held.expect("a held request must end when its instance is dropped").status(), 500);
        assert_eq!(served(&server, "h.test").await, "served 1\n", "the instance that held a request is gone");
    }

    #[test]
    fn an_app_name_no_host_enables_is_a_warning_with_a_suggestion() {
        let config = canto::Config::from_text(
            std::path::Path::new("/etc/prosody/prosody.cfg.lua"),
            "http_module_instance_reuse = { helo = 10, hello = 10 }\nVirtualHost \"a\"\nmodules_enabled = { \"http_hello\" }\n",
            &canto::builtin::names(),
        )
        .unwrap();
        assert_eq!(
            config.warnings,
            vec![
                "/etc/prosody/prosody.cfg.lua:1:30: http_module_instance_reuse: no enabled module is called 'helo' \
                 (did you mean 'hello'?)"
                    .to_string()
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosts_do_not_share_instances_and_unlisted_apps_stay_fresh() {
        let server = TestServer::start(
            "http_module_instance_reuse = { trap = 10 }\n\
             VirtualHost \"a.test\"\nmodules_enabled = { \"http_trap\" }\n\
             VirtualHost \"b.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        assert_eq!(served(&server, "a.test").await, "served 1\n");
        assert_eq!(served(&server, "a.test").await, "served 2\n");
        // b.test's instance carries b.test's options and grants: its own.
        assert_eq!(served(&server, "b.test").await, "served 1\n");
        assert_eq!(served(&server, "a.test").await, "served 3\n");

        let unlisted = TestServer::start(
            "http_module_instance_reuse = { hello = 10 }\nVirtualHost \"u.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        assert_eq!(served(&unlisted, "u.test").await, "served 1\n");
        assert_eq!(served(&unlisted, "u.test").await, "served 1\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_request_on_a_reused_instance_gets_the_whole_cpu_budget() {
        // 600 ms of computing per request against a 1 s budget: a budget
        // carried over from the previous request would run out on the second.
        let server = TestServer::start(
            "http_module_instance_reuse = 100\nhttp_module_timeout = 1\n\
             VirtualHost \"b.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(server.get("b.test", "/trap/burn").await.status(), 200);
        }
        assert_eq!(served(&server, "b.test").await, "served 4\n", "all on one instance");
    }
}

/// The README's run command, exactly as the README writes it, on a fresh
/// port 5280: it must serve the demo answers the README shows. An edit to
/// the README that breaks the command, or the answers, fails here.
mod readme {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    use canto_tests::ProcessGroup;

    use super::*;

    fn repository() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
    }

    /// The first `sh` block under "## The two commands": its first line is
    /// the run command, its `curl` lines the demo (command, comment).
    fn run_block(readme: &str) -> (String, Vec<(String, String)>) {
        let section = readme.split("\n## The two commands\n").nth(1).expect("README has '## The two commands'");
        let block = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("an sh block");
        let mut lines = block.lines().filter(|line| !line.trim().is_empty());
        let run = lines.next().expect("the run command").trim().to_string();
        let demo = lines
            .filter(|line| line.starts_with("curl "))
            .map(|line| match line.split_once(" # ") {
                Some((command, comment)) => (command.trim().to_string(), comment.trim().to_string()),
                None => (line.trim().to_string(), String::new()),
            })
            .collect();
        (run, demo)
    }

    /// A shell as a user's would be: without what `cargo test` sets for
    /// the test process.
    fn user_shell(line: &str) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(line).current_dir(repository());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let from_cargo = name == "CARGO"
                || name == "OUT_DIR"
                || (name.starts_with("CARGO_") && name != "CARGO_HOME" && !name.starts_with("CARGO_TARGET_DIR"))
                || name.starts_with("RUST_TEST");
            if from_cargo {
                command.env_remove(&name);
            }
        }
        command
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_readme_run_command_serves_the_demo_it_shows() {
        let readme = std::fs::read_to_string(repository().join("README.md")).expect("read README.md");
        let (run, demo) = run_block(&readme);
        assert_eq!(demo.len(), 3, "the README shows three demo requests: {demo:?}");

        // Something else on 5280 would answer in the server's place.
        for busy in ["127.0.0.1:5280", "[::1]:5280"] {
            assert!(TcpStream::connect(busy).await.is_err(), "{busy} is taken: stop what listens there first");
        }
        let output = tempfile::NamedTempFile::new().unwrap();
        let mut command = user_shell(&run);
        command.stdin(Stdio::null()).stdout(output.reopen().unwrap()).stderr(output.reopen().unwrap());
        // SIGINT to the group, as Ctrl-C in the terminal does.
        let mut server = ProcessGroup::spawn(command, rustix::process::Signal::INT).expect("run the README command");
        let log = || std::fs::read_to_string(output.path()).unwrap_or_default();

        // It may have to build first (on a fresh clone it does).
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(900);
        loop {
            if let Ok(response) = client.get("http://localhost:5280/hello/").send().await
                && response.status() == 200
            {
                break;
            }
            if let Ok(Some(status)) = server.child().try_wait() {
                panic!("`{run}` exited ({status}) before serving:\n{}", log());
            }
            assert!(std::time::Instant::now() < deadline, "`{run}` never served /hello/:\n{}", log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        if log().contains("Compiling wasmtime ") {
            // Not a failure: a partial `cargo test` resolves features
            // differently. After scripts/test it means runtime/Cargo.toml's
            // feature-unification lines no longer match the test build.
            eprintln!("warning: `{run}` rebuilt wasmtime after the test build; see runtime/Cargo.toml");
        }
        for (line, comment) in &demo {
            let answer = tokio::task::spawn_blocking({
                let line = line.clone();
                move || user_shell(&line).output().expect("run curl")
            })
            .await
            .unwrap();
            assert!(answer.status.success(), "`{line}` failed: {}", String::from_utf8_lossy(&answer.stderr));
            let body = String::from_utf8_lossy(&answer.stdout).into_owned();
            if line.contains("/hello/") {
                assert_eq!(body.trim(), comment, "`{line}` answers what its comment says");
            } else if line.contains("/whoami/") {
                let who: serde_json::Value = serde_json::from_str(&body).expect("whoami answers JSON");
                assert_eq!((who["host"].as_str(), who["path"].as_str()), (Some("localhost"), Some("/whoami/")));
            } else if line.contains("/echo/") {
                let file = line.split('@').nth(1).and_then(|rest| rest.split_whitespace().next()).expect("@file");
                let sent = std::fs::read_to_string(repository().join(file)).unwrap();
                assert!(body == sent, "`{line}` did not stream {file} back ({} bytes of {})", body.len(), sent.len());
            } else {
                panic!("a demo line the test does not know: {line}");
            }
        }

        let status = tokio::task::spawn_blocking(move || server.stop(Duration::from_secs(30))).await.unwrap();
        let log = log();
        assert!(log.contains("shutdown complete"), "Ctrl-C stops the server gracefully:\n{log}");
        assert!(status.is_some(), "{log}");
    }
}

mod lifecycle {
    use super::*;

    /// A request in flight when shutdown starts still completes; new
    /// connections are refused afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_finishes_requests_in_flight() {
        let mut server = TestServer::start(DEMO).await;
        let addr = server.addr;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"POST /echo/ HTTP/1.0\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello").await.unwrap();
        // Let the request reach the module before shutting down.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let finished = server.begin_stop().expect("server running");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream.write_all(b"world").await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
        assert!(response.ends_with("helloworld"), "{response}");
        tokio::time::timeout(Duration::from_secs(15), finished).await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "a stopped server must not accept connections");
        assert!(!log_lines_with(&["shutdown complete", &addr.to_string()]).is_empty());
    }
}

/// Virtual hosts, http_host, the default host, path mounting, error pages.
mod vhosts {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_virtual_host_serves_its_own_modules() {
        let server = TestServer::start(
            r#"
            VirtualHost "a.test"
                modules_enabled = { "http_hello" }
            VirtualHost "b.test"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        assert_eq!(server.get("a.test", "/hello/").await.text().await.unwrap(), "hello from a.test\n");
        assert_eq!(server.get("b.test", "/hello/").await.status(), 404);
        assert_eq!(server.whoami("b.test", "/whoami/").await["host"], "b.test");
        assert_eq!(server.whoami("B.Test.", "/whoami/").await["host"], "b.test", "case and trailing dot ignored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_host_is_the_name_a_host_answers_to() {
        let server = TestServer::start(
            r#"
            VirtualHost "example.test"
                http_host = "www.example.test"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        let who = server.whoami("www.example.test", "/whoami/").await;
        assert_eq!(who["host"], "example.test");
        assert_eq!(who["base_url"], format!("http://www.example.test:{}/whoami/", server.addr.port()));
        assert_eq!(server.get("example.test", "/whoami/").await.status(), 404);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_default_host_serves_unknown_and_missing_hosts() {
        let server = TestServer::start(
            r#"
            http_default_host = "a.test"
            VirtualHost "a.test"
                modules_enabled = { "http_whoami" }
            VirtualHost "b.test"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        assert_eq!(server.whoami("unknown.test", "/whoami/").await["host"], "a.test");
        assert_eq!(server.whoami("b.test", "/whoami/").await["host"], "b.test");
        let response = raw_exchange(&server, b"GET /whoami/ HTTP/1.0\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.0 200 ") && response.contains("\"host\":\"a.test\""), "{response}");
        wait_for_log(&["HTTP requests to unknown hosts will be handled by a.test"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_component_http_host_gets_only_its_own_modules() {
        let server = TestServer::start(
            r#"
            modules_enabled = { "http_hello" }
            VirtualHost "xmpp.test"
            Component "static.test" "http"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        assert_eq!(server.get("xmpp.test", "/hello/").await.status(), 200);
        assert_eq!(server.get("static.test", "/hello/").await.status(), 404);
        assert_eq!(server.whoami("static.test", "/whoami/").await["host"], "static.test");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_paths_come_from_the_host_then_the_global_table() {
        let server = TestServer::start(
            r#"
            http_paths = { whoami = "/who"; hello = "/hi" }
            modules_enabled = { "http_whoami", "http_hello" }
            VirtualHost "global.test"
            VirtualHost "own.test"
                http_paths = { whoami = "/own-who/" }
            "#,
        )
        .await;
        assert_eq!(server.whoami("global.test", "/who/").await["base_path"], "/who");
        let who = server.whoami("own.test", "/own-who/").await;
        assert_eq!(who["base_path"], "/own-who");
        assert_eq!(server.get("own.test", "/who/").await.status(), 404);
        // A key the host's table lacks falls back to the global table.
        assert_eq!(server.get("own.test", "/hi/").await.status(), 200);
    }

    /// The seed document's example, exactly as written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_in_paths_lets_hosts_share_one_public_name() {
        let server = TestServer::start_with(
            r#"
    modules_enabled = { "register_web" }
    http_paths = {
        register_web = "/register-on-$host";
    }
    http_host = "www.example.net"
 
    VirtualHost "example.net" -- http://www.example.net/register-on-example.net
 
    VirtualHost "jabber.example" -- http://www.example.net/register-on-jabber.example
"#,
            &[("register_web", canto_guests::HTTP_WHOAMI)],
        )
        .await;
        let port = server.addr.port();
        let who = server.whoami("www.example.net", "/register-on-example.net/").await;
        assert_eq!(who["host"], "example.net");
        assert_eq!(who["base_url"], format!("http://www.example.net:{port}/register-on-example.net/"));
        let who = server.whoami("www.example.net", "/register-on-jabber.example/").await;
        assert_eq!(who["host"], "jabber.example");
        assert_eq!(who["base_path"], "/register-on-jabber.example");
        wait_for_log(&["'example.net' and 'jabber.example' both use http_host 'www.example.net'"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_external_url_sets_the_base_url() {
        let server = TestServer::start(
            r#"
            VirtualHost "proxied.test"
                http_external_url = "https://proxy.example:8443/xmpp/"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        let who = server.whoami("proxied.test", "/whoami/").await;
        assert_eq!(who["base_url"], "https://proxy.example:8443/xmpp/whoami/");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_absolute_request_target_names_the_host() {
        let server = TestServer::start(
            r#"
            VirtualHost "a.test"
                modules_enabled = { "http_whoami" }
            VirtualHost "b.test"
                modules_enabled = { "http_whoami" }
            "#,
        )
        .await;
        let response =
            raw_exchange(&server, b"GET http://b.test/whoami/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                .await;
        assert!(response.contains("\"host\":\"b.test\""), "{response}");
    }

    /// RFC 9112 §3.2: several Host lines are a 400, whichever host either
    /// names, and even with an absolute URI or a default host.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_host_lines_are_400() {
        let server = TestServer::start(
            "http_default_host = \"www.example.com\"\nVirtualHost \"www.example.com\"\nmodules_enabled = { \"http_whoami\" }\nVirtualHost \"other.example.net\"\nmodules_enabled = { \"http_whoami\" }\n",
        )
        .await;
        for request in [
            "GET /whoami/ HTTP/1.1\r\nHost: www.example.com\r\nHost: other.example.net\r\nConnection: close\r\n\r\n",
            "GET /whoami/ HTTP/1.1\r\nHost: www.example.com\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
            "GET http://www.example.com/whoami/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ] {
            let response = raw_exchange(&server, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 400 "), "{request:?} got {response}");
            assert!(response.contains("More than one"), "{response}");
        }
        // One Host line, overridden by an absolute URI, still works.
        let response = raw_exchange(
            &server,
            b"GET http://other.example.net/whoami/ HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.contains("\"host\":\"other.example.net\""), "{response}");
    }

    /// One path model: routing matches the decoded, collapsed path, and the
    /// module is given that same path (encoded once, so `path-with-query`
    /// stays a valid URI), always under its base path; the client's own
    /// bytes stay available through `context.raw-path-with-query`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn modules_see_the_path_they_were_routed_on() {
        let server = TestServer::start(
            "VirtualHost \"p.test\"\nmodules_enabled = { \"http_routed\" }\nhttp_paths = { routed = \"/st\" }\n",
        )
        .await;
        async fn ask(server: &TestServer, target: &str) -> String {
            let request = format!("GET {target} HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n");
            let response = raw_exchange(server, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 200 "), "{target}: {response}");
            // The JSON inside the chunked body.
            let body = response.get(response.find('{').unwrap_or(0)..=response.rfind('}').unwrap_or(0)).unwrap_or("");
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{response}: {e}"));
            assert_eq!(json["base_path"], "/st");
            assert_eq!(json["raw"], target, "the raw form is what the client sent");
            json["path_with_query"].as_str().unwrap().to_string()
        }
        for (target, given) in [
            ("//st/a.txt", "/st/a.txt"),
            ("/%73t/a.txt", "/st/a.txt"),
            ("/s%74//x//y", "/st/x/y"),
            ("/st/a%2Fb", "/st/a/b"),
            ("/st/a%20b", "/st/a%20b"),
            ("/st/caf%c3%a9", "/st/caf%C3%A9"),
            ("/st/nul%00x", "/st/nul%00x"),
            ("/st/what%3F?q=%3F", "/st/what%3F?q=%3F"),
            ("/st/100%25", "/st/100%25"),
            ("/st/who-other%2Eexample.net/", "/st/who-other.example.net/"),
        ] {
            assert_eq!(ask(&server, target).await, given, "GET {target}");
        }
        // The bare mount path redirects to the routed path, encoded.
        let response =
            raw_exchange(&server, b"GET /%73t?x HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 301 ") && response.contains("location: /st/?x\r\n"), "{response}");
        // Decoded bytes that are not UTF-8 text cannot be given to a module.
        let response =
            raw_exchange(&server, b"GET /st/%FF HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    }

    /// Prosody serves these through mod_http_files; so does canto.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_files_module_serves_what_routing_routed_to_it() {
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("a.txt"), "file a\n").unwrap();
        std::fs::write(files.path().join("sp ace.txt"), "spaced\n").unwrap();
        std::fs::create_dir(files.path().join("dir")).unwrap();
        std::fs::write(files.path().join("dir").join("b.txt"), "file b\n").unwrap();
        let server = TestServer::start(&format!(
            "VirtualHost \"f.test\"\nmodules_enabled = {{ \"http_files\" }}\nhttp_files_dir = {:?}\nhttp_paths = {{ files = \"/static\" }}\n",
            files.path().display().to_string()
        ))
        .await;
        for (target, body) in [
            ("/static/a.txt", "file a\n"),
            ("//static/a.txt", "file a\n"),
            ("/st%61tic/a.txt", "file a\n"),
            ("/static//dir//b.txt", "file b\n"),
            ("/static/dir%2Fb.txt", "file b\n"),
            ("/static/sp%20ace.txt", "spaced\n"),
        ] {
            let request = format!("GET {target} HTTP/1.1\r\nHost: f.test\r\nConnection: close\r\n\r\n");
            let response = raw_exchange(&server, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 200 ") && response.ends_with(body), "{target}: {response}");
        }
        let response =
            raw_exchange(&server, b"GET /static/a.txt%00 HTTP/1.1\r\nHost: f.test\r\nConnection: close\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 400 ") || response.starts_with("HTTP/1.1 404 "), "{response}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_mount_redirects_its_bare_path_keeping_the_query() {
        let server =
            TestServer::start("VirtualHost \"r.test\"\nmodules_enabled = { \"http_whoami\", \"http_options\" }\n")
                .await;
        let response = server.get_no_redirect("r.test", "/whoami?x=1&y").await;
        assert_eq!(response.status(), 301);
        assert_eq!(response.headers()["location"], "/whoami/?x=1&y");
        assert_eq!(response.headers()["content-length"], "0");
        // A module that asked to serve its bare path gets it.
        assert_eq!(server.get_no_redirect("r.test", "/opts").await.status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paths_escaping_the_root_are_400_and_paths_are_decoded() {
        let server = TestServer::start("VirtualHost \"p.test\"\nmodules_enabled = { \"http_whoami\" }\n").await;
        let response =
            raw_exchange(&server, b"GET /../etc/passwd HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 400 ") && response.contains("Invalid path"), "{response}");
        let response =
            raw_exchange(&server, b"GET /whoami/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n")
                .await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
        // Routing sees the decoded path, collapsed.
        assert_eq!(server.whoami("p.test", "/who%61mi//x").await["base_path"], "/whoami");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_root_of_a_host_without_a_root_module_says_canto_is_running() {
        let server = TestServer::start("VirtualHost \"root.test\"\nmodules_enabled = { \"http_hello\" }\n").await;
        let response = server.get("root.test", "/").await;
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("canto is running"));
        let response = server.get("root.test", "/missing").await;
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
        let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(length, response.bytes().await.unwrap().len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_errors_detailed_puts_the_cause_on_500_pages() {
        let server = TestServer::start(
            "http_errors_detailed = true\nVirtualHost \"detail.test\"\nmodules_enabled = { \"http_trap\" }\n",
        )
        .await;
        let response = server.get("detail.test", "/trap/silent").await;
        assert_eq!(response.status(), 500);
        assert!(response.text().await.unwrap().contains("returned without setting a response"));
    }
}

/// Reading Prosody configs: the seed document's snippets, every supported
/// construct, the config Debian ships, errors, and arbitrary input.
mod config {
    use std::net::SocketAddr;
    use std::path::Path;

    use canto::Config;
    use canto::config::{ConfigError, SectionKind};

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("/etc/prosody/prosody.cfg.lua"), text, &canto::builtin::names())
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_seed_documents_snippets_mean_what_the_document_says() {
        let config = load(
            r#"
    modules_enabled = {
        "http";
    }
    http_ports = { 5280 }
    http_interfaces = { "127.0.0.1", "::1" }
    https_ports = { 5281 }
    https_interfaces = { "*", "::" }
    https_ssl = {
        certificate = "/path/to/http.crt";
        key = "/path/to/http.key";
    }
    http_default_host = "example.com"
    http_cors_override = {
        bosh = {
            enabled = false;
        };
        websocket = {
            enabled = false;
        };
    }
trusted_proxies = { "127.0.0.1", "::1", "192.168.1.1", }
    VirtualHost "example.com"
    http_host = "www.example.com"
    http_external_url = "https://www.example.com/"
    http_paths = {
        bosh = "/http-bind"; -- Serve BOSH at /http-bind
        files = "/"; -- Serve files from the base URL
    }
    Component "www.example.org" "http"
        modules_enabled = { "bosh" }
"#,
        )
        .unwrap();
        assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
        assert_eq!(config.https_listeners, addrs(&["0.0.0.0:5281", "[::]:5281"]));
        assert_eq!(config.default_host.as_ref().map(|(h, _)| h.as_str()), Some("example.com"));
        let proxies: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["127.0.0.1/32", "::1/128", "192.168.1.1/32"]);
        let example = &config.hosts[0];
        assert_eq!((example.name.as_str(), example.http_host.as_str()), ("example.com", "www.example.com"));
        assert_eq!(example.external_url.as_ref().unwrap().join("/files"), "https://www.example.com/files/");
        let www = &config.hosts[1];
        assert_eq!(www.kind, SectionKind::Component { module: Some("http".into()) });
        assert!(www.modules.is_empty(), "bosh is not an HTTP module canto has");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn prosodys_defaults_apply_when_nothing_is_set() {
        let config = load("").unwrap();
        assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
        assert_eq!(config.https_listeners, addrs(&["0.0.0.0:5281", "[::]:5281"]));
        assert_eq!(config.cors.methods, ["GET", "OPTIONS"]);
        assert_eq!(config.cors.headers, ["Content-Type"]);
        assert_eq!(config.cors.origins, ["*"]);
        assert!(!config.cors.credentials);
        assert_eq!(config.cors.max_age, 7200);
        assert!(config.cors.enabled);
        assert_eq!(config.max_content_size, 10 * 1024 * 1024);
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.hosts.is_empty());
    }

    #[test]
    fn every_supported_construct_reads_as_expected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/b.cfg.lua"), "VirtualHost \"b.test\"\nhttp_host = 'b-www.test'\n")
            .unwrap();
        std::fs::write(dir.path().join("conf.d/a.cfg.lua"), "VirtualHost \"a.test\"\n").unwrap();
        std::fs::write(dir.path().join("conf.d/.hidden.cfg.lua"), "this is not lua").unwrap();
        std::fs::write(dir.path().join("extra.lua"), "access_control_max_age = 60\n").unwrap();
        let main = dir.path().join("prosody.cfg.lua");
        let text = r#"
        --[==[ a long
        comment ]==]
        http_ports = { 8080; 8081, }   -- both separators, trailing separator
        http_interfaces = "127.0.0.1"  -- a scalar is a one-item list
        access_control_allow_methods = { "GET", 'POST', [[PUT]] }
        access_control_allow_headers = { "X-" .. "Custom", "Content-Type" }
        access_control_allow_credentials = true
        access_control_allow_origins = { "https://a.example", "https://b.example" }
        http_max_content_size = 0x100000
        http_errors_detailed = ENV_CANTO_TEST_UNSET_VARIABLE == nil
        http_module_timeout = 5
        Include "extra.lua"
        Include "conf.d/*.cfg.lua"
        VirtualHost "c.test" { http_host = "c-www.test" }
        Component "d.test" "http" { modules_enabled = { "http_hello" } }
        "#;
        std::fs::write(&main, text).unwrap();
        let config = Config::load(&main, &canto::builtin::names()).unwrap();
        assert_eq!(config.http_listeners, addrs(&["127.0.0.1:8080", "127.0.0.1:8081"]));
        assert_eq!(config.cors.methods, ["GET", "POST", "PUT"]);
        assert_eq!(config.cors.headers, ["X-Custom", "Content-Type"]);
        assert!(config.cors.credentials);
        assert_eq!(config.cors.origins, ["https://a.example", "https://b.example"]);
        assert_eq!(config.cors.max_age, 60);
        assert_eq!(config.max_content_size, 1 << 20);
        assert!(config.errors_detailed);
        assert_eq!(config.limits.timeout.as_secs(), 5);
        let hosts: Vec<(&str, &str)> = config.hosts.iter().map(|h| (h.name.as_str(), h.http_host.as_str())).collect();
        // Includes in sorted order, dot files skipped; table forms.
        assert_eq!(
            hosts,
            [("a.test", "a.test"), ("b.test", "b-www.test"), ("c.test", "c-www.test"), ("d.test", "d.test")]
        );
        assert_eq!(config.hosts[3].modules[0].name, "http_hello");
    }

    #[test]
    fn misspelt_and_misplaced_options_warn() {
        let config = load(
            "http_port = { 5280 }\ntrusted_proxy = { \"10.0.0.1\" }\nroster_versioning = true\nVirtualHost \"a\"\nhttp_ports = { 1 }\nhttp_pathz = {}\n",
        )
        .unwrap();
        let warnings = config.warnings.join("\n");
        assert!(
            warnings.contains("prosody.cfg.lua:1:13: unknown option 'http_port' (did you mean 'http_ports'?)"),
            "{warnings}"
        );
        assert!(warnings.contains("unknown option 'trusted_proxy' (did you mean 'trusted_proxies'?)"), "{warnings}");
        assert!(warnings.contains("unknown option 'http_pathz' (did you mean 'http_paths'?)"), "{warnings}");
        assert!(
            warnings.contains(
                "a: Option 'http_ports' has no effect for virtual hosts - put it in the server-wide section instead"
            ),
            "{warnings}"
        );
        assert!(!warnings.contains("roster_versioning"), "XMPP options are accepted quietly");
    }

    #[test]
    fn duplicate_options_warn_with_file_and_line() {
        let config = load("http_ports = { 1 }\nhttp_ports = { 2 }\n").unwrap();
        assert_eq!(config.warnings, ["/etc/prosody/prosody.cfg.lua:2: Duplicate option 'http_ports'"]);
    }

    #[test]
    fn each_unsupported_construct_and_bad_value_is_an_error_at_its_place() {
        let cases: &[(&str, &str)] = &[
            ("local x = 1", "1:1: `local` variables are not supported in a config"),
            ("function f() end", "1:1: functions are not supported in a config"),
            ("if true then end", "1:1: `if` is not supported in a config"),
            ("while true do end", "1:1: loops are not supported in a config"),
            ("x = print('a')", "1:5: function calls are not supported in a config value"),
            ("x = 1 + 2", "1:5: only `..`, `==` and `~=` are supported in a config"),
            ("x = y", "1:5: `y` is not a value canto knows"),
            ("a, b = 1, 2", "1:1: expected `name = value` (one option per line)"),
            ("Foo \"x\"", "1:1: unknown directive `Foo`"),
            ("RunScript \"x.lua\"", "1:1: `RunScript` runs Lua code; canto does not"),
            ("x = 'unterminated", "syntax error"),
            ("x = \"\\q\"", "1:5: `\\q` is not a Lua escape"),
            ("http_ports = { \"80\" }", "1:16: http_ports: expected a port number, found a string"),
            ("http_ports = 65536", "1:14: http_ports: 65536 is not a port number (0-65535)"),
            (
                "http_interfaces = { \"localhost\" }",
                "1:21: http_interfaces: \"localhost\" is not an IP address or \"*\"",
            ),
            (
                "trusted_proxies = { \"10.0.0.0/33\" }",
                "1:21: trusted_proxies: \"10.0.0.0/33\" is not an IP address or CIDR range",
            ),
            (
                "access_control_allow_credentials = \"yes\"",
                "1:36: access_control_allow_credentials: expected true or false, found a string",
            ),
            (
                "http_max_content_size = -1",
                "1:25: http_max_content_size: expected a whole number of at least 0, found a number",
            ),
            (
                "VirtualHost \"a\"\nComponent \"a\" \"http\"",
                "2:1: Component \"a\" clashes with previously defined VirtualHost \"a\"",
            ),
            ("Include \"missing.cfg.lua\"", "1:1: cannot read included file /etc/prosody/missing.cfg.lua"),
            (
                "http_module_instance_reuse = 0",
                "1:30: http_module_instance_reuse: expected a positive integer, found a number",
            ),
            (
                "http_module_instance_reuse = { hello = \"many\" }",
                "1:40: http_module_instance_reuse.hello: expected a positive integer, found a string",
            ),
            (
                "http_module_instance_reuse = { 1000 }",
                "1:32: http_module_instance_reuse: expected `app = requests` entries, like { hello = 1000 }",
            ),
        ];
        for (text, expected) in cases {
            let error = load(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?} gave {error:?}, expected it to contain {expected:?}");
            assert!(error.starts_with("/etc/prosody/prosody.cfg.lua:"), "{error}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Arbitrary text never panics the reader: it loads or it errors.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,120}") {
            let _ = load(&text);
        }

        /// Nor does a soup of Lua tokens, which gets much further into it.
        #[test]
        fn lua_token_soup_never_panics(tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40)) {
            let _ = load(&tokens.join(" "));
        }
    }

    const TOKENS: &[&str] = &[
        "VirtualHost",
        "Component",
        "Include",
        "\"a.test\"",
        "\"http\"",
        "'x'",
        "[[y]]",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "=",
        "==",
        "~=",
        "..",
        ",",
        ";",
        "1",
        "-2",
        "0x1F",
        "1.5",
        "true",
        "false",
        "nil",
        "not",
        "-",
        "http_ports",
        "http_paths",
        "trusted_proxies",
        "modules_enabled",
        "ENV_HOME",
        "local",
        "function",
        "end",
        "\"\\z  \"",
        "\"\\300\"",
        "\"\\u{110000}\"",
        "--",
        "--[[",
        "]]",
        "http_host",
    ];

    /// The config Debian's `prosody` package installs (scripts/test installs
    /// the package). This fails rather than skips when it is missing.
    #[test]
    fn debians_prosody_config_loads() {
        let path = Path::new("/etc/prosody/prosody.cfg.lua");
        assert!(path.exists(), "{} is missing: install Debian's prosody package (scripts/test does)", path.display());
        let config = Config::load(path, &canto::builtin::names()).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.hosts.iter().any(|h| h.name == "localhost"));
        assert_eq!(config.http_listeners, addrs(&["127.0.0.1:5280", "[::1]:5280"]));
    }

    /// Prosody reads bytes; a Latin-1 byte in a comment must not make the
    /// config unreadable, and the operator is told where it is.
    #[test]
    fn a_latin1_byte_is_read_with_a_located_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.cfg.lua");
        std::fs::write(&path, b"http_ports = { 5280 }\n-- Caf\xe9 config\nVirtualHost \"a.test\"\n").unwrap();
        let config = Config::load(&path, &canto::builtin::names()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.hosts[0].name, "a.test");
        let warning = config.warnings.iter().find(|w| w.contains("not UTF-8")).expect("a warning");
        assert!(warning.contains("latin1.cfg.lua:2:7: "), "{warning}");
    }
}

/// Where canto means to match Prosody, the same config and requests give
/// the same answers from real Prosody 0.12 and from canto.
mod against_prosody {
    use canto_tests::{ProsodyServer, TestServer, raw_status};

    /// Prosody's mod_http_files and canto's whoami installed as
    /// `http_files`: different modules, same mount. `{dir}` holds an
    /// index.html so both answer 200 for a directory.
    const CONFIG: &str = r#"
http_default_host = "default.test"
modules_enabled = { "http_files" }
http_files_dir = "{dir}"
VirtualHost "a.test"
VirtualHost "default.test"
    http_paths = { files = "/static/$host" }
"#;

    const CASES: &[(&str, &str)] = &[
        (
            "bare base path redirects, query kept",
            "GET /files?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        ),
        ("mounted directory", "GET /files/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
        ("nothing mounted there", "GET /nothing HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
        ("root page", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
        ("path above the root", "GET /../x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
        (
            "unknown host goes to the default host",
            "GET /static/default.test/ HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
        ),
        ("$host in http_paths", "GET /static/default.test HTTP/1.1\r\nHost: default.test\r\nConnection: close\r\n\r\n"),
        ("no Host goes to the default host", "GET /static/default.test/ HTTP/1.0\r\n\r\n"),
        (
            "the default host's own paths only",
            "GET /files/ HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
        ),
        ("absolute-form target", "GET http://a.test/files/ HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n"),
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_matches_real_prosody() {
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("index.html"), "hello").unwrap();
        let config = CONFIG.replace("{dir}", &files.path().display().to_string());
        let prosody = ProsodyServer::start(&config).await;
        let canto = TestServer::start_with(&config, &[("http_files", canto_guests::HTTP_WHOAMI)]).await;
        for (name, request) in CASES {
            let (prosody_status, prosody_headers) = raw_status(prosody.addr, request).await;
            let (canto_status, canto_headers) = raw_status(canto.addr, request).await;
            assert_eq!(canto_status, prosody_status, "{name}: status differs from Prosody's");
            let location =
                |headers: &[(String, String)]| headers.iter().find(|(k, _)| k == "location").map(|(_, v)| v.clone());
            assert_eq!(location(&canto_headers), location(&prosody_headers), "{name}: Location differs");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_and_missing_hosts_without_a_default_match_real_prosody() {
        let config = "modules_enabled = { \"http_files\" }\nhttp_files_dir = \"/tmp\"\nVirtualHost \"a.test\"\n";
        let prosody = ProsodyServer::start(config).await;
        let canto = TestServer::start_with(config, &[("http_files", canto_guests::HTTP_WHOAMI)]).await;
        for request in
            ["GET /files/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n", "GET /files/ HTTP/1.0\r\n\r\n"]
        {
            let (expected, _) = raw_status(prosody.addr, request).await;
            let (actual, _) = raw_status(canto.addr, request).await;
            assert_eq!(actual, expected, "{request:?}");
        }
    }
}

/// Trusted reverse proxies: X-Forwarded-For / X-Forwarded-Proto.
mod proxies {
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
        let who =
            whoami_with(&server, &[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2, 2001:db8::5")]).await;
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
}

/// CORS over real connections (the browser test is in `browser`).
mod cors {
    use super::*;

    fn header(response: &reqwest::Response, name: &str) -> Option<String> {
        response.headers().get(name).map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn module_responses_carry_cors_headers_by_default() {
        let server = TestServer::start(DEMO).await;
        let client = server.client(&["localhost"]);
        let response =
            client.get(server.url("localhost", "/hello/")).header("origin", "https://a.example").send().await.unwrap();
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("*"));
        assert_eq!(header(&response, "access-control-allow-methods").as_deref(), Some("GET, OPTIONS"));
        assert_eq!(header(&response, "access-control-allow-headers").as_deref(), Some("Content-Type"));
        assert_eq!(header(&response, "access-control-max-age").as_deref(), Some("7200"));
        // Not on the server's own answers.
        let response =
            client.get(server.url("localhost", "/missing")).header("origin", "https://a.example").send().await.unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn preflight_is_answered_without_the_module_and_origins_are_enforced() {
        let server = TestServer::start(
            r#"
            access_control_allow_origins = { "https://good.example" }
            access_control_allow_methods = { "GET", "PUT", "OPTIONS" }
            http_cors_override = { trap = { headers = { ["X-Custom"] = true } } }
            VirtualHost "c.test"
                modules_enabled = { "http_trap", "http_hello" }
            "#,
        )
        .await;
        let client = server.client(&["c.test"]);
        let preflight = |origin: &'static str| {
            client
                .request(reqwest::Method::OPTIONS, server.url("c.test", "/trap/panic"))
                .header("origin", origin)
                .header("access-control-request-method", "PUT")
                .header("access-control-request-headers", "x-custom")
                .send()
        };
        // The module would trap; a preflight never reaches it.
        let response = preflight("https://good.example").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("https://good.example"));
        assert_eq!(header(&response, "access-control-allow-methods").as_deref(), Some("GET, PUT, OPTIONS"));
        assert_eq!(header(&response, "access-control-allow-headers").as_deref(), Some("Content-Type, X-Custom"));
        assert_eq!(header(&response, "vary").as_deref(), Some("Origin"));
        let response = preflight("https://evil.example").await.unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        assert_eq!(header(&response, "vary").as_deref(), Some("Origin"));
        // A plain OPTIONS (no preflight headers) reaches the module.
        let response = client.request(reqwest::Method::OPTIONS, server.url("c.test", "/hello/")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "hello from c.test\n");
    }

    /// With credentials on, the origin is echoed and `*` is never sent, not
    /// even to a request without `Origin` (which gets no CORS headers).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn credentials_never_come_with_a_wildcard_origin() {
        let server = TestServer::start(
            "access_control_allow_credentials = true\nVirtualHost \"c.test\"\nmodules_enabled = { \"http_hello\" }\n",
        )
        .await;
        let client = server.client(&["c.test"]);
        let with =
            client.get(server.url("c.test", "/hello/")).header("origin", "https://a.example").send().await.unwrap();
        assert_eq!(header(&with, "access-control-allow-origin").as_deref(), Some("https://a.example"));
        assert_eq!(header(&with, "access-control-allow-credentials").as_deref(), Some("true"));
        let without = client.get(server.url("c.test", "/hello/")).send().await.unwrap();
        assert_eq!(without.status(), 200);
        assert_eq!(header(&without, "access-control-allow-origin"), None);
        assert_eq!(header(&without, "access-control-allow-credentials"), None);
        assert_eq!(header(&without, "vary").as_deref(), Some("Origin"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cors_can_be_turned_off_per_module_or_everywhere() {
        let server = TestServer::start(
            "http_cors_override = { hello = { enabled = false } }\nVirtualHost \"c.test\"\nmodules_enabled = { \"http_hello\", \"http_whoami\" }\n",
        )
        .await;
        let client = server.client(&["c.test"]);
        let hello =
            client.get(server.url("c.test", "/hello/")).header("origin", "https://a.example").send().await.unwrap();
        assert_eq!(header(&hello, "access-control-allow-origin"), None);
        let who =
            client.get(server.url("c.test", "/whoami/")).header("origin", "https://a.example").send().await.unwrap();
        assert_eq!(header(&who, "access-control-allow-origin").as_deref(), Some("*"));
        let off = TestServer::start(
            "http_default_cors_enabled = false\nVirtualHost \"c.test\"\nmodules_enabled = { \"http_hello\" }\n",
        )
        .await;
        let response = off
            .client(&["c.test"])
            .get(off.url("c.test", "/hello/"))
            .header("origin", "https://a.example")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "access-control-allow-origin"), None);
    }
}

/// CORS as a real browser enforces it: headless Chromium runs fetch() from
/// a page on another origin against canto.
mod browser {
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
}

/// The hostile-module suite: one module per attack. Each request gets the
/// documented status, the log names host, module and reason, and a
/// well-behaved module on the same server keeps answering throughout.
mod sandbox {
    use super::*;

    const HOSTILE: &[&str] = &[
        "http_loop",
        "http_membomb",
        "http_recursion",
        "http_escape",
        "http_outgoing",
        "http_socket",
        "http_bigheaders",
        "http_trickle",
        "http_trap",
    ];

    /// A server with small limits so attacks end quickly, and a directory
    /// granted read-only to the escape module.
    async fn hostile_server() -> (TestServer, tempfile::TempDir) {
        let granted = tempfile::tempdir().unwrap();
        std::fs::write(granted.path().join("allowed.txt"), "fine").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", granted.path().join("passwd-link")).unwrap();
        let modules: Vec<String> =
            HOSTILE.iter().chain(&["http_hello", "http_echo"]).map(|m| format!("{m:?}")).collect();
        let server = TestServer::start(&format!(
            r#"
            http_module_timeout = 1
            http_module_wall_timeout = 3
            http_module_memory_limit = 16777216
            http_module_max_concurrency = 16
            http_max_content_size = 1048576
            http_module_grants = {{
                escape = {{ dirs = {{ {granted:?} }} }};
                outgoing = {{ outgoing = {{ "localhost" }} }};
            }}
            VirtualHost "h.test"
                modules_enabled = {{ {modules} }}
            "#,
            granted = granted.path().display().to_string(),
            modules = modules.join(", "),
        ))
        .await;
        (server, granted)
    }

    /// Runs `attack` while hello is asked again and again; all hellos must succeed.
    async fn while_serving_hello<T>(server: &TestServer, attack: impl Future<Output = T>) -> T {
        let client = server.client(&["h.test"]);
        let url = server.url("h.test", "/hello/");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let bystander = tokio::spawn(async move {
            let mut answered = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let response = client.get(&url).send().await.expect("hello while under attack");
                assert_eq!(response.status(), 200, "hello failed while under attack");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answered
        });
        let result = attack.await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(bystander.await.unwrap() > 0, "hello was never answered during the attack");
        result
    }

    async fn status_and_text(server: &TestServer, path: &str) -> (u16, String) {
        let response = server.get("h.test", path).await;
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_infinite_loop_is_stopped_at_the_cpu_deadline() {
        let (server, _dir) = hostile_server().await;
        let started = std::time::Instant::now();
        let statuses = while_serving_hello(&server, async {
            let spins = (0..4).map(|_| server.get("h.test", "/loop/"));
            futures::future::join_all(spins).await.iter().map(|r| r.status().as_u16()).collect::<Vec<_>>()
        })
        .await;
        assert_eq!(statuses, [504, 504, 504, 504]);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        wait_for_log(&["answered 504", "module=http_loop", "host=h.test", "stopped after using its time (CPU time)"])
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_memory_bomb_traps_at_the_memory_cap() {
        let (server, _dir) = hostile_server().await;
        let (status, _) = while_serving_hello(&server, status_and_text(&server, "/membomb/")).await;
        assert_eq!(status, 500);
        wait_for_log(&[
            "module failed, answered 500",
            "module=http_membomb",
            "host=h.test",
            "forcing trap when growing memory",
        ])
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_recursion_traps_on_stack_exhaustion() {
        let (server, _dir) = hostile_server().await;
        let (status, _) = while_serving_hello(&server, status_and_text(&server, "/recursion/")).await;
        assert_eq!(status, 500);
        wait_for_log(&["module failed", "module=http_recursion", "host=h.test"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_outside_a_grant_are_unreachable() {
        let (server, granted) = hostile_server().await;
        let dir = granted.path().display().to_string();
        let read = |path: String| {
            let server = &server;
            async move { status_and_text(server, &format!("/escape/?path={path}")).await.1 }
        };
        assert_eq!(read(format!("{dir}/allowed.txt")).await, "read 4 bytes\n");
        assert!(read("/etc/passwd".into()).await.starts_with("denied:"));
        assert!(read(format!("{dir}/../../etc/passwd")).await.starts_with("denied:"));
        assert!(read(format!("{dir}/passwd-link")).await.starts_with("denied:"));
        // Granted read-only: writing is refused too (the module only reads,
        // so check the grant is visible as read-only via check config below).
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn network_access_is_denied() {
        let (server, _dir) = hostile_server().await;
        let port = server.addr.port();
        let outgoing = status_and_text(&server, &format!("/outgoing/?host=127.0.0.1:{port}")).await;
        assert_eq!(outgoing.0, 200);
        assert!(outgoing.1.contains("HttpRequestDenied"), "{}", outgoing.1);
        // The granted host is reachable (canto itself; unknown host there, so 404).
        let granted = status_and_text(&server, &format!("/outgoing/?host=localhost:{port}")).await;
        assert_eq!(granted.1, "fetched: status 404\n");
        let socket = status_and_text(&server, &format!("/socket/?addr=127.0.0.1:{}", server.addr.port())).await;
        assert!(socket.1.starts_with("denied:"), "{}", socket.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panics_and_missing_responses_cost_one_500() {
        let (server, _dir) = hostile_server().await;
        while_serving_hello(&server, async {
            assert_eq!(status_and_text(&server, "/trap/panic").await.0, 500);
            assert_eq!(status_and_text(&server, "/trap/silent").await.0, 500);
        })
        .await;
        wait_for_log(&["module failed", "module=http_trap", "host=h.test", "returned without setting a response"])
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_and_invalid_response_headers_are_refused() {
        let (server, _dir) = hostile_server().await;
        let response = server.get("h.test", "/bigheaders/huge").await;
        let header_bytes: usize = response.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        assert!(header_bytes <= 64 * 1024, "{header_bytes} bytes of headers got through");
        let response = server.get("h.test", "/bigheaders/invalid").await;
        assert!(response.headers().get("x-bad-value").is_none());
        assert!(response.headers().keys().all(|k| !k.as_str().contains(' ')));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickling_response_is_cut_at_the_wall_clock_deadline() {
        let (server, _dir) = hostile_server().await;
        let started = std::time::Instant::now();
        let body = while_serving_hello(&server, async {
            let response = server.get("h.test", "/trickle/").await;
            assert_eq!(response.status(), 200);
            response.bytes().await
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert!(body.is_err() || body.is_ok_and(|b| b.len() < 100), "the trickle must be cut short");
        wait_for_log(&["module=http_trickle", "wall-clock"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_bodies_over_the_limit_get_413() {
        let (server, _dir) = hostile_server().await;
        let client = server.client(&["h.test"]);
        let big = vec![7u8; 2 * 1024 * 1024];
        // A declared length over the limit is refused before any body byte
        // is read: the answer arrives although the client sent no body.
        let (status, _) = canto_tests::raw_status(
            server.addr,
            "POST /echo/ HTTP/1.1\r\nHost: h.test\r\nContent-Length: 2097152\r\n\r\n",
        )
        .await;
        assert_eq!(status, 413);
        // Without a declared length, the limit applies as the body streams.
        let chunks = futures::stream::iter(
            big.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
        );
        let response =
            client.post(server.url("h.test", "/echo/")).body(reqwest::Body::wrap_stream(chunks)).send().await;
        // An error instead of a response is fine too: the server may close
        // the connection rather than read the unread rest.
        if let Ok(response) = response {
            assert!(
                response.status() == 413 || response.bytes().await.is_err(),
                "an oversized stream must not be echoed whole"
            );
        }
        let small = client.post(server.url("h.test", "/echo/")).body(vec![1u8; 1000]).send().await.unwrap();
        assert_eq!(small.bytes().await.unwrap().len(), 1000);
    }
}

/// Hot reload: module files replaced and config re-read while traffic flows.
mod reload {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SWAP: &str = "VirtualHost \"r.test\"\nmodules_enabled = { \"swap\" }\n";

    fn hello() -> Vec<u8> {
        std::fs::read(canto_guests::HTTP_HELLO).unwrap()
    }

    fn whoami() -> Vec<u8> {
        std::fs::read(canto_guests::HTTP_WHOAMI).unwrap()
    }

    fn version_of(body: &str) -> &'static str {
        if body.starts_with("hello from") {
            "hello"
        } else if body.starts_with('{') {
            "whoami"
        } else {
            "other"
        }
    }

    /// Polls until `/swap/` answers with `version`; returns how long it took.
    async fn wait_for_version(server: &TestServer, version: &str) -> Duration {
        let started = std::time::Instant::now();
        let client = server.client(&["r.test"]);
        loop {
            let body = client.get(server.url("r.test", "/swap/")).send().await.unwrap().text().await.unwrap();
            if version_of(&body) == version {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{version} never appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn modules_swap_under_load_without_a_failed_request() {
        let server = TestServer::start_with(SWAP, &[("swap", canto_guests::HTTP_HELLO)]).await;
        let failures = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loops = Vec::new();
        for _ in 0..4 {
            // One keep-alive connection per loop.
            let client =
                reqwest::Client::builder().pool_max_idle_per_host(1).resolve("r.test", server.addr).build().unwrap();
            let url = server.url("r.test", "/swap/");
            let (failures, served, stop) = (failures.clone(), served.clone(), stop.clone());
            loops.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match client.get(&url).send().await {
                        Ok(response) => response.status() == 200 && response.text().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if ok { &served } else { &failures };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let mut slowest = Duration::ZERO;
        for round in 0..20 {
            let (bytes, version) = if round % 2 == 0 { (whoami(), "whoami") } else { (hello(), "hello") };
            server.install_module("swap", &bytes);
            let took = wait_for_version(&server, version).await;
            slowest = slowest.max(took);
        }
        stop.store(true, Ordering::Relaxed);
        for handle in loops {
            handle.await.unwrap();
        }
        assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed during swaps");
        assert!(served.load(Ordering::Relaxed) > 100);
        assert!(slowest < Duration::from_secs(1), "a new version took {slowest:?} to appear");
        wait_for_log(&["module swap replaced: version"]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streaming_request_finishes_on_the_version_it_started_with() {
        let server = TestServer::start_with(SWAP, &[("swap", canto_guests::HTTP_ECHO)]).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /swap/ HTTP/1.1\r\nHost: r.test\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nbefore\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("before") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
        server.install_module("swap", &hello());
        wait_for_version(&server, "hello").await;
        stream.write_all(b"5\r\nafter\r\n0\r\n\r\n").await.unwrap();
        while !String::from_utf8_lossy(&seen).contains("0\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the old version's stream was cut");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).contains("after"), "the echo finished on the old version");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_replacements_are_rejected_and_the_old_version_keeps_serving() {
        let server = TestServer::start_with(SWAP, &[("swap", canto_guests::HTTP_HELLO)]).await;
        server.install_module("swap", b"\0asm garbage, not a component");
        wait_for_log(&["rejected the new module version", "swap"]).await;
        server.install_module("swap", &std::fs::read(canto_guests::HTTP_OPTIONS).unwrap()[..100]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = server.get("r.test", "/swap/").await.text().await.unwrap();
        assert_eq!(version_of(&body), "hello");
        // And a good version after broken ones is picked up.
        server.install_module("swap", &whoami());
        wait_for_version(&server, "whoami").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloading_the_config_applies_it_without_dropping_connections() {
        let server = TestServer::start("VirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\n").await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let ask = |host: &str, path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        async fn status_on(stream: &mut TcpStream, request: &str) -> String {
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 65536];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the keep-alive connection was dropped");
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
        }
        assert!(status_on(&mut stream, &ask("a.test", "/whoami/")).await.contains("200"));
        server.rewrite_config(
            "VirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\nhttp_paths = { whoami = \"/who\" }\nVirtualHost \"b.test\"\nmodules_enabled = { \"http_hello\" }\n",
        );
        server.reload.reload().await;
        wait_for_log(&["host b.test added"]).await;
        assert!(status_on(&mut stream, &ask("a.test", "/who/")).await.contains("200"));
        assert!(status_on(&mut stream, &ask("a.test", "/whoami/")).await.contains("404"));
        assert!(status_on(&mut stream, &ask("b.test", "/hello/")).await.contains("200"));
        // An invalid config changes nothing.
        server.rewrite_config(
            "http_ports = { \"bad\" }\nVirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\n",
        );
        server.reload.reload().await;
        wait_for_log(&["config rejected, the running config stays", "http_ports: expected a port number"]).await;
        assert!(status_on(&mut stream, &ask("b.test", "/hello/")).await.contains("200"));
    }

    /// `http_module_max_concurrency` changed by a reload applies to modules
    /// whose file did not change too (they come from the compile cache).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_gives_unchanged_modules_the_new_concurrency() {
        let config = |limit: u32| {
            format!(
                "http_module_max_concurrency = {limit}\nhttp_module_wall_timeout = 30\nVirtualHost \"t.test\"\nmodules_enabled = {{ \"http_trickle\" }}\n"
            )
        };
        let server = TestServer::start(&config(1)).await;
        let ask = || tokio::time::timeout(Duration::from_secs(1), server.get("t.test", "/trickle/"));
        // Trickle streams forever: this request holds the module's one slot.
        let holding = ask().await.expect("the first request gets its head");
        assert_eq!(holding.status(), 200);
        assert!(ask().await.is_err(), "a second request waits for the only slot");
        server.rewrite_config(&config(4));
        server.reload.reload().await;
        let mut answered = None;
        for _ in 0..20 {
            if let Ok(response) = ask().await {
                answered = Some(response.status());
                break;
            }
        }
        assert_eq!(answered, Some(reqwest::StatusCode::OK), "the new limit of 4 was not applied");
        drop(holding);
    }

    /// Configs that once crashed a reload (the parser overflowed the stack)
    /// or hung it (an Include of a device or FIFO) are located errors now,
    /// and the running config keeps serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pathological_config_is_refused_and_the_old_one_keeps_serving() {
        let server = TestServer::start("VirtualHost \"a.test\"\nmodules_enabled = { \"http_hello\" }\n").await;
        let fifo = server.dir.path().join("fifo.cfg.lua");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(made.success());
        let host = "VirtualHost \"a.test\"\nmodules_enabled = { \"http_hello\" }\n";
        for (config, error) in [
            (format!("x = {}1{}\n{host}", "{".repeat(300), "}".repeat(300)), "nested more than 100 deep"),
            (format!("x = \"a\"{}\n{host}", " .. \"a\"".repeat(2000)), "more than 1000 operators"),
            (format!("Include \"/dev/zero\"\n{host}"), "/dev/zero: not a regular file"),
            (format!("Include {:?}\n{host}", fifo.display().to_string()), "fifo.cfg.lua: not a regular file"),
        ] {
            server.rewrite_config(&config);
            server.reload.reload().await;
            wait_for_log(&["config rejected, the running config stays", error]).await;
            assert_eq!(server.get("a.test", "/hello/").await.status(), 200, "after {error}");
        }
    }
}

mod https {
    use super::*;
    use std::net::SocketAddr;
    use std::path::Path;

    use canto_tests::tls::{HttpsClient, IssuedCert, TestCa, Trust, connect, served_cert};

    /// An https listener on loopback with certificates from `certs`, whoami
    /// on every VirtualHost, then `rest`.
    fn https_config(certs: &Path, rest: &str) -> String {
        format!(
            "https_ports = {{ 0 }}\nhttps_interfaces = {{ \"127.0.0.1\" }}\ncertificates = {:?}\nmodules_enabled = {{ \"http_whoami\" }}\n{rest}",
            certs.display().to_string()
        )
    }

    fn write_pair(cert: &IssuedCert, dir: &Path, name: &str) {
        cert.write(&dir.join(format!("{name}.crt")), &dir.join(format!("{name}.key")));
    }

    #[tokio::test]
    async fn sni_picks_each_hosts_certificate_in_every_layout() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path();
        let a = ca.issue(&["a.test"]);
        write_pair(&a, dir, "a.test");
        // Let's Encrypt's layout.
        let b = ca.issue(&["b.test"]);
        b.write(&dir.join("b.test/fullchain.pem"), &dir.join("b.test/privkey.pem"));
        // Certificate and key in one <name>.pem.
        let c = ca.issue(&["c.test"]);
        c.write(&dir.join("c.test.pem"), &dir.join("c.test.pem"));
        let wild = ca.issue(&["*.wild.test"]);
        write_pair(&wild, dir, "wild");
        let parent = ca.issue(&["parent.test"]);
        write_pair(&parent, dir, "parent.test");
        // Found by its second SAN, three directories down.
        let multi = ca.issue(&["m1.test", "m2.test"]);
        multi.write(&dir.join("le/live/multi/fullchain.pem"), &dir.join("le/live/multi/privkey.pem"));
        let hosts = ["a.test", "b.test", "c.test", "x.wild.test", "upload.parent.test", "m2.test"];
        let sections: String = hosts.iter().map(|h| format!("VirtualHost {h:?}\n")).collect();
        let server = TestServer::start(&https_config(dir, &sections)).await;
        let addr = server.https_addr.expect("https is open");

        for (name, expected) in
            [("a.test", &a), ("b.test", &b), ("c.test", &c), ("x.wild.test", &wild), ("m2.test", &multi)]
        {
            // A verifying client: the chain and the name check out.
            let connection =
                connect(addr, Some(name), Trust::Ca(&ca), &[]).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(connection.peer_cert == expected.der, "wrong certificate for {name}");
        }
        // The parent domain's certificate, as Prosody serves it.
        assert!(served_cert(addr, Some("upload.parent.test")).await.unwrap() == parent.der);
        // No SNI: the port's default, the first indexed certificate.
        assert!(served_cert(addr, None).await.unwrap() == a.der, "no SNI gets the default certificate");
        // A name no host has: looked up in the index, else the default.
        assert!(served_cert(addr, Some("other.wild.test")).await.unwrap() == wild.der);
        assert!(served_cert(addr, Some("unknown.example")).await.unwrap() == a.der);
    }

    #[tokio::test]
    async fn https_ssl_serves_one_certificate_for_every_name() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
        let manual_dir = tempfile::tempdir().unwrap();
        let manual = ca.issue(&["manual.test"]);
        write_pair(&manual, manual_dir.path(), "http");
        let rest = format!(
            "https_ssl = {{ certificate = {:?}; key = {:?} }}\nVirtualHost \"a.test\"\n",
            manual_dir.path().join("http.crt").display().to_string(),
            manual_dir.path().join("http.key").display().to_string()
        );
        let server = TestServer::start(&https_config(certs.path(), &rest)).await;
        let addr = server.https_addr.expect("https is open");
        for sni in [Some("a.test"), Some("manual.test"), None] {
            assert!(served_cert(addr, sni).await.unwrap() == manual.der, "https_ssl for {sni:?}");
        }
    }

    #[tokio::test]
    async fn global_ssl_is_the_fallback_behind_host_certificates() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        let a = ca.issue(&["a.test"]);
        write_pair(&a, certs.path(), "a.test");
        let elsewhere = tempfile::tempdir().unwrap();
        let fallback = ca.issue(&["fallback.test"]);
        write_pair(&fallback, elsewhere.path(), "fallback");
        let rest = format!(
            "ssl = {{ certificate = {:?}; key = {:?} }}\nVirtualHost \"a.test\"\n",
            elsewhere.path().join("fallback.crt").display().to_string(),
            elsewhere.path().join("fallback.key").display().to_string()
        );
        let server = TestServer::start(&https_config(certs.path(), &rest)).await;
        let addr = server.https_addr.expect("https is open");
        assert!(served_cert(addr, Some("a.test")).await.unwrap() == a.der);
        assert!(served_cert(addr, None).await.unwrap() == fallback.der);
        assert!(served_cert(addr, Some("nobody.test")).await.unwrap() == fallback.der);
    }

    #[tokio::test]
    async fn https_certificate_names_the_default_and_requests_are_secure() {
        let ca = TestCa::new();
        let empty = tempfile::tempdir().unwrap();
        let manual_dir = tempfile::tempdir().unwrap();
        let cert = ca.issue(&["example.net"]);
        write_pair(&cert, manual_dir.path(), "example.net");
        // The seed's example: the key is found beside the certificate.
        let rest = format!(
            "https_certificate = {:?}\nVirtualHost \"example.net\"\n",
            manual_dir.path().join("example.net.crt").display().to_string()
        );
        let server = TestServer::start(&https_config(empty.path(), &rest)).await;
        let addr = server.https_addr.expect("https is open");
        assert!(served_cert(addr, None).await.unwrap() == cert.der);

        let connection = connect(addr, Some("example.net"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
        let mut client = HttpsClient::open(connection).await;
        let (status, version, body) = client.get("example.net", "/whoami/").await.unwrap();
        assert_eq!((status, version), (200, hyper::Version::HTTP_11));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["secure"], true, "{json}");
        // Module URLs prefer https once it is open (spec §3e).
        assert_eq!(json["base_url"], format!("https://example.net:{}/whoami/", addr.port()));
        // The same module over plain http is not secure.
        assert_eq!(server.whoami("example.net", "/whoami").await["secure"], false);
    }

    /// An XMPP client probing the https port with only `xmpp-client` in
    /// ALPN completes the handshake (no protocol chosen), as with Prosody,
    /// instead of getting alert 120, and is then served HTTP/1.1.
    #[tokio::test]
    async fn a_client_offering_only_other_alpn_protocols_completes_the_handshake() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
        let server = TestServer::start(&https_config(certs.path(), "VirtualHost \"a.test\"\n")).await;
        let addr = server.https_addr.expect("https is open");
        let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"xmpp-client"]).await;
        let connection = connection.expect("the handshake completes");
        assert_eq!(connection.alpn, None, "no protocol is chosen");
        let mut client = HttpsClient::open(connection).await;
        let (status, version, _) = client.get("a.test", "/whoami/").await.unwrap();
        assert_eq!((status, version), (200, hyper::Version::HTTP_11));
        // Clients that offer what canto speaks still get it.
        let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"xmpp-client", b"http/1.1"]).await;
        assert_eq!(connection.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn http2_over_tls_by_alpn_for_rustls_and_curl() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
        let server = TestServer::start(&https_config(certs.path(), "VirtualHost \"a.test\"\n")).await;
        let addr = server.https_addr.expect("https is open");

        let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"h2", b"http/1.1"]).await.unwrap();
        assert_eq!(connection.alpn.as_deref(), Some(&b"h2"[..]));
        let mut client = HttpsClient::open(connection).await;
        for _ in 0..3 {
            let (status, version, body) = client.get("a.test", "/whoami/").await.unwrap();
            assert_eq!((status, version), (200, hyper::Version::HTTP_2));
            assert!(body.contains("\"secure\":true"), "{body}");
        }

        let ca_file = certs.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        // Async: the server answers on this same test runtime.
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&ca_file)
            .args(["--resolve", &format!("a.test:{}:127.0.0.1", addr.port())])
            .args(["-w", "\nversion=%{http_version}"])
            .arg(format!("https://a.test:{}/whoami/", addr.port()))
            .output()
            .await
            .expect("run curl");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
        assert!(text.ends_with("version=2"), "curl negotiated another protocol: {text}");
        assert!(text.contains("\"host\":\"a.test\""), "{text}");
    }

    #[tokio::test]
    async fn no_certificate_leaves_https_closed_and_http_serving() {
        let empty = tempfile::tempdir().unwrap();
        let server = TestServer::start(&https_config(empty.path(), "VirtualHost \"nocert.test\"\n")).await;
        wait_for_log(&[
            "Error binding encrypted port for https: No certificate present in SSL/TLS configuration for https port 0",
        ])
        .await;
        assert!(server.https_addr.is_none(), "https must stay closed");
        assert_eq!(server.get("nocert.test", "/whoami").await.status(), 200);
    }

    #[tokio::test]
    async fn a_missing_or_mismatched_key_is_named_and_keeps_the_port_closed() {
        let ca = TestCa::new();
        let empty = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        write_pair(&ca.issue(&["one.test"]), files.path(), "one");
        write_pair(&ca.issue(&["two.test"]), files.path(), "two");
        let one_crt = files.path().join("one.crt").display().to_string();
        let two_key = files.path().join("two.key").display().to_string();

        let no_key = format!("https_ssl = {{ certificate = {one_crt:?} }}\nVirtualHost \"k1.test\"\n");
        let server = TestServer::start(&https_config(empty.path(), &no_key)).await;
        let line = wait_for_log(&["Error binding encrypted port for https: No key present", &one_crt]).await;
        assert!(line.contains("https port 0"), "{line}");
        assert!(server.https_addr.is_none());
        assert_eq!(server.get("k1.test", "/whoami").await.status(), 200);

        let mismatch =
            format!("https_ssl = {{ certificate = {one_crt:?}; key = {two_key:?} }}\nVirtualHost \"k2.test\"\n");
        let server = TestServer::start(&https_config(empty.path(), &mismatch)).await;
        wait_for_log(&["Error binding encrypted port for https", "does not match", &one_crt, &two_key]).await;
        assert!(server.https_addr.is_none());
        assert_eq!(server.get("k2.test", "/whoami").await.status(), 200);
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_dropping_connections() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path();
        let first = ca.issue(&["renew.test"]);
        write_pair(&first, dir, "renew.test");
        let server = TestServer::start(&https_config(dir, "VirtualHost \"renew.test\"\n")).await;
        let addr = server.https_addr.expect("https is open");
        let connection = connect(addr, Some("renew.test"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
        assert!(connection.peer_cert == first.der);
        let mut kept = HttpsClient::open(connection).await;
        assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);

        let renewed = ca.issue(&["renew.test"]);
        write_pair(&renewed, dir, "renew.test");
        let mut served = Vec::new();
        for _ in 0..100 {
            served = served_cert(addr, Some("renew.test")).await.unwrap();
            if served == renewed.der {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served == renewed.der, "the renewed certificate was not served within 5 s");
        // The connection opened before the renewal still works.
        assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);

        // A broken renewal keeps the last good certificate.
        std::fs::write(dir.join("renew.test.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        let cert_path = dir.join("renew.test.crt").display().to_string();
        wait_for_log(&["still serving the certificate loaded before", &cert_path]).await;
        assert!(served_cert(addr, Some("renew.test")).await.unwrap() == renewed.der);
        assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);
        // So does one caught empty, which no longer even looks like a certificate.
        let seen = canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len();
        std::fs::write(dir.join("renew.test.crt"), "").unwrap();
        for _ in 0..100 {
            if canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len() > seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len() > seen,
            "the empty file was not noticed"
        );
        assert!(served_cert(addr, Some("renew.test")).await.unwrap() == renewed.der);
    }

    /// A reload that adds an http interface and an https port opens them,
    /// one that removes them closes them, and an open connection on the
    /// listener that stays never notices.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_opens_and_closes_listeners_and_keeps_the_rest() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
        let plain = "VirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\n";
        let server = TestServer::start(plain).await;
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        let request = "GET /whoami/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
        async fn status_on(stream: &mut TcpStream, request: &str) -> String {
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 65536];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the keep-alive connection was dropped");
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
        }
        assert!(status_on(&mut kept, request).await.contains("200"));

        let wider = format!(
            "http_interfaces = {{ \"127.0.0.1\", \"127.0.0.2\" }}\n{}",
            https_config(certs.path(), "https_interfaces = { \"127.0.0.3\" }\nVirtualHost \"a.test\"\n")
        );
        server.rewrite_config(&wider);
        server.reload.reload().await;
        let port_in = |line: String, prefix: &str| -> SocketAddr {
            let rest = line.split(prefix).nth(1).unwrap();
            let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
            format!("{}{port}", prefix.trim_start_matches("http://").trim_start_matches("https://")).parse().unwrap()
        };
        let added_http = port_in(wait_for_log(&["listening on http://127.0.0.2:"]).await, "http://127.0.0.2:");
        let added_https = port_in(wait_for_log(&["listening on https://127.0.0.3:"]).await, "https://127.0.0.3:");
        let mut second = TcpStream::connect(added_http).await.unwrap();
        assert!(status_on(&mut second, request).await.contains("200"));
        let tls = connect(added_https, Some("a.test"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
        let (status, _, body) = HttpsClient::open(tls).await.get("a.test", "/whoami/").await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("\"secure\":true"), "{body}");
        assert!(status_on(&mut kept, request).await.contains("200"));

        server.rewrite_config(plain);
        server.reload.reload().await;
        wait_for_log(&[&format!("no longer listening on http://{added_http}")]).await;
        wait_for_log(&[&format!("no longer listening on https://{added_https}")]).await;
        assert!(TcpStream::connect(added_http).await.is_err(), "the removed listener still accepts");
        assert!(TcpStream::connect(added_https).await.is_err(), "the removed https listener still accepts");
        assert!(status_on(&mut kept, request).await.contains("200"));
    }

    #[tokio::test]
    async fn check_certs_reports_each_host_and_its_problems() {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().unwrap();
        let dir = certs.path();
        write_pair(&ca.issue(&["a.test", "www.a.test"]), dir, "a.test");
        write_pair(&ca.issue_expired(&["old.test"]), dir, "old.test");
        let config_path = dir.join("prosody.cfg.lua");
        let text = https_config(dir, "VirtualHost \"a.test\"\nVirtualHost \"elsewhere.test\"\n");
        let config = canto::Config::from_text(&config_path, &text, &canto::builtin::names()).unwrap();
        let (report, problems) = canto::tls::describe(&config.tls, &[5281]);
        let a_crt = dir.join("a.test.crt").display().to_string();
        assert!(report.contains(&format!("certificate {a_crt}")), "{report}");
        assert!(report.contains("names       a.test, www.a.test"), "{report}");
        assert!(report.contains("old.test.crt: not valid now"), "{report}");
        assert!(report.contains("does not cover elsewhere.test"), "{report}");
        assert_eq!(problems, 2, "{report}");
    }
}

/// Modules written in Python, JavaScript and C, behind the same server as
/// their Rust originals.
mod languages {
    use super::*;
    use canto_language_guests::{MODULES, PROBLEMS};

    /// Every language's modules, as (name, path) for the plugin directory;
    /// fails when a toolchain was missing at build time.
    fn all_modules() -> Vec<(&'static str, &'static str)> {
        assert!(PROBLEMS.is_empty(), "languages that did not build (scripts/test installs their tools): {PROBLEMS:?}");
        for language in ["python", "javascript", "c"] {
            let count = MODULES.iter().filter(|m| m.language == language).count();
            assert_eq!(count, 2, "{language} should give whoami and options");
        }
        MODULES.iter().map(|m| (m.name, m.path)).collect()
    }

    fn named(prefix: &str) -> Vec<&'static str> {
        MODULES.iter().map(|m| m.name).filter(|name| name.starts_with(prefix)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whoami_answers_identical_json_in_every_language() {
        let extra = all_modules();
        let whoamis = named("http_whoami_");
        let enabled: Vec<String> =
            std::iter::once("http_whoami").chain(whoamis.iter().copied()).map(|n| format!("{n:?}")).collect();
        let config = format!("VirtualHost \"lang.test\"\n  modules_enabled = {{ {} }}\n", enabled.join(", "));
        let server = TestServer::start_with(&config, &extra).await;
        let client = server.client(&["lang.test"]);
        // A method outside the standard set, an escaped path, a query, and a
        // client address through a trusted proxy: every field has work to do.
        let ask = |mount: String| {
            let request = client
                .request(
                    reqwest::Method::from_bytes(b"PURGE").unwrap(),
                    server.url("lang.test", &format!("/{mount}/a%22b/c?q=1")),
                )
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "https");
            async move {
                let response = request.send().await.expect("request");
                assert_eq!(response.status(), 200, "{mount}");
                let text = response.text().await.expect("body");
                // The mount name is the one expected difference.
                text.replace(&format!("/{mount}"), "/whoami")
            }
        };
        let reference = ask("whoami".into()).await;
        let json: serde_json::Value = serde_json::from_str(&reference).expect("Rust whoami answers JSON");
        assert_eq!(json["method"], "PURGE");
        assert_eq!(json["ip"], "203.0.113.9");
        for name in whoamis {
            let mount = name.trim_start_matches("http_").to_string();
            assert_eq!(ask(mount).await, reference, "{name} answers differently from the Rust whoami");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn options_reach_modules_in_every_language() {
        let extra = all_modules();
        let options = named("http_options_");
        let enabled: Vec<String> = options.iter().map(|n| format!("{n:?}")).collect();
        // All declare /opts as their default path: mount each on its own.
        let paths: Vec<String> = options
            .iter()
            .map(|n| {
                let app = n.trim_start_matches("http_");
                format!("{app} = \"/{app}\"")
            })
            .collect();
        let config = format!(
            "greeting = \"hi there\"\nsecret = \"hunter2\"\nhttp_paths = {{ {} }}\nVirtualHost \"optlang.test\"\n  modules_enabled = {{ {} }}\n",
            paths.join(", "),
            enabled.join(", ")
        );
        let server = TestServer::start_with(&config, &extra).await;
        for name in options {
            let app = name.trim_start_matches("http_");
            let response = server.get("optlang.test", &format!("/{app}")).await;
            assert_eq!(response.status(), 200, "{name}");
            // Declared options only: `secret` is set but not declared.
            assert_eq!(response.text().await.unwrap(), "greeting=\"hi there\"\nsecret=unset\n", "{name}");
            wait_for_log(&["options requested", &format!("module={name}"), "host=optlang.test"]).await;
        }
    }
}

/// The files module (Prosody's mod_http_files) over real connections.
mod files {
    use super::*;
    use std::path::Path;

    use canto_tests::{ProsodyServer, raw_status};

    const CSS: &str = "body { color: #123456; }\n";

    /// A document root, with a secret beside it that must never be served.
    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
        std::fs::write(root.join("style.css"), CSS).unwrap();
        std::fs::write(root.join("noext"), "plain bytes").unwrap();
        std::fs::write(root.join("docs").join("odd <name>&.txt"), "odd").unwrap();
        std::fs::write(root.join("sub").join("index.html"), "<h1>sub</h1>\n").unwrap();
        let digits: String = (0..100).map(|i| char::from(b'0' + (i % 10) as u8)).collect();
        std::fs::write(root.join("digits.txt"), &digits).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
        dir
    }

    fn files_config(root: &Path, extra: &str) -> String {
        format!(
            "VirtualHost \"files.test\"\n  modules_enabled = {{ \"http_files\" }}\n  http_files_dir = {:?}\n{extra}",
            root.display().to_string()
        )
    }

    fn header(response: &reqwest::Response, name: &str) -> String {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_files_with_types_validators_and_not_modified() {
        let dir = site();
        let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
        let client = server.client(&["files.test"]);
        let url = server.url("files.test", "/files/style.css");

        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "text/css");
        assert_eq!(header(&response, "accept-ranges"), "bytes");
        let etag = header(&response, "etag");
        let modified = header(&response, "last-modified");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
        assert!(modified.ends_with(" GMT"), "{modified}");
        assert_eq!(response.text().await.unwrap(), CSS);

        let weak_list = format!("\"other\", W/{etag}");
        for (name, value) in
            [("if-none-match", etag.as_str()), ("if-none-match", &weak_list), ("if-modified-since", &modified)]
        {
            let response = client.get(&url).header(name, value).send().await.unwrap();
            assert_eq!(response.status(), 304, "{name}: {value}");
            assert_eq!(header(&response, "etag"), etag);
            assert_eq!(response.bytes().await.unwrap().len(), 0);
        }
        let stale = client.get(&url).header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT").send().await.unwrap();
        assert_eq!(stale.status(), 200);
        let changed = client.get(&url).header("if-none-match", "\"something-else\"").send().await.unwrap();
        assert_eq!(changed.status(), 200);

        let index = client.get(server.url("files.test", "/files/")).send().await.unwrap();
        assert_eq!(header(&index, "content-type"), "text/html");
        assert_eq!(index.text().await.unwrap(), "<h1>home</h1>\n");
        let noext = client.get(server.url("files.test", "/files/noext")).send().await.unwrap();
        assert!(noext.headers().get("content-type").is_none(), "no extension, no Content-Type (as Prosody)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_has_the_headers_and_no_body_over_http1_and_http2() {
        let dir = site();
        let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
        let http1 = server.client(&["files.test"]);
        let http2 =
            reqwest::Client::builder().http2_prior_knowledge().resolve("files.test", server.addr).build().unwrap();
        for client in [http1, http2] {
            let response = client.head(server.url("files.test", "/files/style.css")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{:?}", response.version());
            assert_eq!(header(&response, "content-length"), CSS.len().to_string());
            assert_eq!(response.bytes().await.unwrap().len(), 0);
            // The connection (or stream) is still good.
            let next = client.get(server.url("files.test", "/files/style.css")).send().await.unwrap();
            assert_eq!(next.text().await.unwrap(), CSS);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn byte_ranges_single_multiple_and_unsatisfiable() {
        let dir = site();
        let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
        let client = server.client(&["files.test"]);
        let url = server.url("files.test", "/files/digits.txt");
        let range = |value: &'static str| client.get(&url).header("range", value).send();

        let first = range("bytes=0-9").await.unwrap();
        assert_eq!(first.status(), 206);
        assert_eq!(header(&first, "content-range"), "bytes 0-9/100");
        assert_eq!(first.text().await.unwrap(), "0123456789");
        let suffix = range("bytes=-5").await.unwrap();
        assert_eq!(header(&suffix, "content-range"), "bytes 95-99/100");
        assert_eq!(suffix.text().await.unwrap(), "56789");
        let open = range("bytes=98-").await.unwrap();
        assert_eq!(open.text().await.unwrap(), "89");

        let multi = range("bytes=0-1,50-52").await.unwrap();
        assert_eq!(multi.status(), 206);
        let content_type = header(&multi, "content-type");
        let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").expect(&content_type).to_string();
        let body = multi.text().await.unwrap();
        assert!(body.contains("Content-Range: bytes 0-1/100\r\n\r\n01\r\n"), "{body}");
        assert!(body.contains("Content-Range: bytes 50-52/100\r\n\r\n012\r\n"), "{body}");
        assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");

        let beyond = range("bytes=100-").await.unwrap();
        assert_eq!(beyond.status(), 416);
        assert_eq!(header(&beyond, "content-range"), "bytes */100");
        let nonsense = range("bytes=z-q").await.unwrap();
        assert_eq!(nonsense.status(), 200, "an invalid Range is ignored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directories_listings_and_escapes() {
        let dir = site();
        let www = dir.path().join("www");
        let server = TestServer::start(&files_config(&www, "")).await;
        let redirect = server.get_no_redirect("files.test", "/files/docs?q=1").await;
        assert_eq!(redirect.status(), 301);
        assert_eq!(header(&redirect, "location"), "/files/docs/?q=1", "the query is kept");
        assert_eq!(server.get("files.test", "/files/sub/").await.text().await.unwrap(), "<h1>sub</h1>\n");
        assert_eq!(server.get("files.test", "/files/docs/").await.status(), 403, "no index, no listing");

        for path in [
            "/files/%2e%2e/secret.txt",
            "/files/sub/%2e%2e/%2e%2e/secret.txt",
            "/files/%252e%252e/secret.txt",
            "/files/a%00b",
        ] {
            let response = server.get_no_redirect("files.test", path).await;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(matches!(status, 400 | 404), "{path}: {status}");
            assert!(!body.contains("top secret"), "{path}");
        }
        let escape = server.get("files.test", "/files/escape.txt").await;
        assert_eq!(escape.status(), 403, "a symlink out of the tree is refused");
        assert!(!escape.text().await.unwrap().contains("top secret"));

        let listing_server = TestServer::start(&files_config(&www, "  http_dir_listing = true\n")).await;
        let listing = listing_server.get("files.test", "/files/docs/").await;
        assert_eq!(listing.status(), 200);
        assert_eq!(header(&listing, "content-type"), "text/html; charset=utf-8");
        let html = listing.text().await.unwrap();
        assert!(html.contains("odd &lt;name&gt;&amp;.txt"), "{html}");
        assert!(!html.contains("odd <name>"), "names are escaped: {html}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_seed_example_serves_a_component_at_its_root() {
        let dir = site();
        let config = format!(
            "Component \"static.test\" \"http\"\n  modules_enabled = {{ \"http_files\" }}\n  http_paths = {{ files = \"/\" }}\n  http_files_dir = {:?}\n",
            dir.path().join("www").display().to_string()
        );
        let server = TestServer::start(&config).await;
        assert_eq!(server.get("static.test", "/").await.text().await.unwrap(), "<h1>home</h1>\n");
        assert_eq!(server.get("static.test", "/style.css").await.text().await.unwrap(), CSS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_file_streams_through_a_small_module() {
        let dir = site();
        let www = dir.path().join("www");
        const SIZE: u64 = 256 << 20;
        std::fs::File::create(www.join("big.bin")).unwrap().set_len(SIZE).unwrap();
        // 8 MiB of module memory: buffering the file would trap.
        let server = TestServer::start(&files_config(&www, "http_module_memory_limit = 8388608\n")).await;
        let mut response = server.get("files.test", "/files/big.bin").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-length"), SIZE.to_string());
        let mut received = 0u64;
        while let Some(chunk) = response.chunk().await.unwrap() {
            assert!(chunk.iter().all(|b| *b == 0));
            received += chunk.len() as u64;
        }
        assert_eq!(received, SIZE);
    }

    /// The same directory behind real Prosody 0.12 and canto: where canto
    /// means to match, the answers agree. (canto keeps the query on a
    /// directory redirect and supports ranges, where Prosody does not.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn matches_prosody_mod_http_files() {
        let dir = site();
        let www = dir.path().join("www");
        let config = format!(
            "modules_enabled = {{ \"http_files\" }}\nhttp_files_dir = {:?}\nVirtualHost \"files.test\"\n",
            www.display().to_string()
        );
        let prosody = ProsodyServer::start(&config).await;
        let canto = TestServer::start(&config).await;
        let request = |path: &str, extra: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: files.test\r\n{extra}Connection: close\r\n\r\n")
        };
        let header_of = |headers: &[(String, String)], name: &str| {
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        };
        for path in ["/files/style.css", "/files/", "/files/missing.txt", "/files/docs", "/files/sub/", "/files/noext"]
        {
            let (prosody_status, prosody_headers) = raw_status(prosody.addr, &request(path, "")).await;
            let (canto_status, canto_headers) = raw_status(canto.addr, &request(path, "")).await;
            assert_eq!(canto_status, prosody_status, "{path}");
            assert_eq!(header_of(&canto_headers, "location"), header_of(&prosody_headers, "location"), "{path}");
            if canto_status == 200 {
                assert!(header_of(&canto_headers, "etag").is_some() && header_of(&prosody_headers, "etag").is_some());
                // Each server's own validator gets its own 304.
                for (addr, headers) in [(prosody.addr, &prosody_headers), (canto.addr, &canto_headers)] {
                    let etag = header_of(headers, "etag").unwrap();
                    let (status, _) = raw_status(addr, &request(path, &format!("If-None-Match: {etag}\r\n"))).await;
                    assert_eq!(status, 304, "{path} at {addr}");
                }
            }
        }
    }
}

/// The openmetrics module: the server's metrics, scraped and parsed by a
/// strict OpenMetrics parser (prometheus_client's).
mod openmetrics {
    use super::*;

    /// Sample name + sorted labels (as JSON) → value, and `#type <family>` → type.
    async fn parse(text: &str) -> serde_json::Value {
        const SCRIPT: &str = r##"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out["#type " + family.name] = family.type
    for s in family.samples:
        out[s.name + json.dumps(dict(sorted(s.labels.items())), separators=(",", ":"))] = s.value
print(json.dumps(out))
"##;
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test installs prometheus-client)");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success(), "not valid OpenMetrics: {}\n{text}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    const SITE: &str =
        "VirtualHost \"m.test\"\n  modules_enabled = { \"http_openmetrics\", \"http_hello\", \"http_trap\" }\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scraped_metrics_count_what_happened() {
        let server = TestServer::start(SITE).await;
        for _ in 0..3 {
            assert_eq!(server.get("m.test", "/hello/").await.status(), 200);
        }
        assert_eq!(server.get("m.test", "/trap/panic").await.status(), 500);
        assert_eq!(server.get("m.test", "/missing").await.status(), 404);

        let response = server.get("m.test", "/metrics").await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
        let text = response.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let metrics = parse(&text).await;
        let value =
            |key: &str| metrics.get(key).and_then(|v| v.as_f64()).unwrap_or_else(|| panic!("no {key} in\n{text}"));
        assert_eq!(value(r#"canto_http_requests_total{"code":"2xx","host":"m.test","module":"http_hello"}"#), 3.0);
        assert_eq!(value(r#"canto_http_requests_total{"code":"5xx","host":"m.test","module":"http_trap"}"#), 1.0);
        assert_eq!(value(r#"canto_http_requests_total{"code":"4xx","host":"m.test","module":"-"}"#), 1.0);
        assert_eq!(value(r#"canto_module_instantiations_total{"module":"http_hello"}"#), 3.0);
        assert_eq!(value(r#"canto_module_traps_total{"module":"http_trap"}"#), 1.0);
        assert!(value(r#"canto_http_request_duration_seconds_count{}"#) >= 5.0);
        assert!(value(r#"canto_connections_total{}"#) >= 1.0);
        assert!(value(r#"canto_connections_open{}"#) >= 1.0, "the scrape's own connection is open");
        assert!(value(r#"canto_resident_memory_bytes{}"#) > 1e6);
        assert_eq!(metrics["#type canto_http_request_duration_seconds"], "histogram");
        assert_eq!(metrics["#type canto_http_requests"], "counter");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn access_is_limited_to_allowed_addresses_after_proxy_processing() {
        let server = TestServer::start(SITE).await;
        assert_eq!(server.get("m.test", "/metrics").await.status(), 200, "loopback is allowed by default");
        // Through a trusted proxy (loopback is one), the client is 203.0.113.9.
        let proxied = server
            .client(&["m.test"])
            .get(server.url("m.test", "/metrics"))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(proxied.status(), 403);

        let elsewhere = TestServer::start(&format!("openmetrics_allow_ips = {{ \"192.0.2.1\" }}\n{SITE}")).await;
        assert_eq!(elsewhere.get("m.test", "/metrics").await.status(), 403);
        let cidr = TestServer::start(&format!(
            "openmetrics_allow_ips = {{}}\nopenmetrics_allow_cidr = \"127.0.0.0/8\"\n{SITE}"
        ))
        .await;
        assert_eq!(cidr.get("m.test", "/metrics").await.status(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_granted_modules_read_the_metrics() {
        // The same component under another name is not the openmetrics app.
        let config =
            "VirtualHost \"s.test\"\n  modules_enabled = { \"http_stats\" }\n  http_paths = { stats = \"/stats\" }\n";
        let extra = [("http_stats", canto_guests::HTTP_OPENMETRICS)];
        let refused = TestServer::start_with(config, &extra).await;
        let response = refused.get("s.test", "/stats").await;
        assert_eq!(response.status(), 500);
        assert!(response.text().await.unwrap().contains("may not read the server's metrics"));

        let granted = format!("http_module_grants = {{ stats = {{ metrics = true }} }}\n{config}");
        let server = TestServer::start_with(&granted, &extra).await;
        assert_eq!(server.get("s.test", "/stats").await.status(), 200);
    }
}

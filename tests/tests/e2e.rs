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
        let response = server.get("localhost", "/hello").await;
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
            .post(server.url("localhost", "/echo"))
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
            .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nping\n\r\n")
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
            let url = server.url("localhost", &format!("/hello?n={i}"));
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
        wait_for_log(&["options requested", "http_options", "options.test"]).await;
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
        let request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_prior_knowledge_works_on_plain_http() {
        let server = TestServer::start(DEMO).await;
        let client =
            reqwest::Client::builder().http2_prior_knowledge().resolve("localhost", server.addr).build().unwrap();
        let response = client.get(server.url("localhost", "/hello")).send().await.unwrap();
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

        let response = server.get("trap.test", "/trap/ok").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "alive\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_module_that_never_answers_gets_500() {
        let server = TestServer::start(TRAP).await;
        assert_eq!(server.get("trap.test", "/trap/silent").await.status(), 500);
        wait_for_log(&["returned without setting a response", "http_trap"]).await;
        assert_eq!(server.get("trap.test", "/trap/ok").await.status(), 200);
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
        assert!(error.contains("prosody.cfg.lua:6:26: functions are not supported in a config"), "{error}");
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
        stream.write_all(b"POST /echo HTTP/1.0\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello").await.unwrap();
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
        assert!(!log_lines_with(&["shutdown complete"]).is_empty());
    }
}

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
    let client = reqwest::Client::builder().http2_prior_knowledge().resolve("localhost", server.addr).build().unwrap();
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

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
    let response =
        server.client(&["localhost"]).post(server.url("localhost", "/echo/")).body(body.clone()).send().await.unwrap();
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
    let logged = wait_for_log(&["options requested", "module=http_options", "host=options.test"]).await;
    // Guest output carries the request's span, as the server's own lines do.
    assert!(logged.contains("request{id=") && logged.contains("vhost=options.test"), "{logged}");
    let printed = wait_for_log(&["options requested, on stdout", "stream=\"stdout\""]).await;
    assert!(printed.contains("request{id=") && printed.contains("module=http_options"), "{printed}");
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

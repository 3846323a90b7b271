use super::*;

/// A request in flight when shutdown starts still completes; new
/// connections are refused afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let mut server = TestServer::start(DEMO).await;
    let addr = server.addr;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /echo/ HTTP/1.0\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello").await.unwrap();
    // The echo module answers as soon as it runs: the head says it is in flight.
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response)).await.unwrap().unwrap();
    response.truncate(n);
    let finished = server.begin_stop().expect("server running");
    wait_for_log(&["shutting down (", &addr.to_string(), "not accepting new connections"]).await;
    stream.write_all(b"world").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
    assert!(response.ends_with("helloworld"), "{response}");
    tokio::time::timeout(Duration::from_secs(15), finished).await.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "a stopped server must not accept connections");
    assert!(!log_lines_with(&["shutdown complete", &addr.to_string()]).is_empty());
}

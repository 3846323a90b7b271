//! Hot reload: module files replaced and config re-read while traffic flows.

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
    let rejected = ["rejected the new module version", "module swap:"];
    let before = log_lines_with(&rejected).len();
    server.install_module("swap", b"\0asm garbage, not a component");
    wait_for_another_log(&rejected, before).await;
    server.install_module("swap", &std::fs::read(canto_guests::HTTP_OPTIONS).unwrap()[..100]);
    wait_for_another_log(&rejected, before + 1).await;
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
    server.rewrite_config("http_ports = { \"bad\" }\nVirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\n");
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

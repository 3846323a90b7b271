//! End-to-end tests: each starts a real server on 127.0.0.1:0 and talks to
//! it over real sockets with real wasm modules from `guest-modules/`.
//! One integration-test binary; each area in its own module.

use std::time::Duration;

use canto_tests::{TestServer, log_lines_with, wait_for_another_log, wait_for_log};
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

mod against_prosody;
mod bosh;
mod browser;
mod cors;
mod failures;
mod file_share;
mod files;
mod hardening;
mod https;
mod instance_reuse;
mod keyvalue;
mod languages;
mod lifecycle;
mod links;
mod modules;
mod openmetrics;
mod protocol;
mod proxies;
mod readme;
mod reload;
mod sandbox;
mod scheduled;
mod vhosts;
mod websockets;
mod xmpp;

//! The openmetrics module: the server's metrics, scraped and parsed by a
//! strict OpenMetrics parser (prometheus_client's).

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
    let value = |key: &str| metrics.get(key).and_then(|v| v.as_f64()).unwrap_or_else(|| panic!("no {key} in\n{text}"));
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
    let cidr =
        TestServer::start(&format!("openmetrics_allow_ips = {{}}\nopenmetrics_allow_cidr = \"127.0.0.0/8\"\n{SITE}"))
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

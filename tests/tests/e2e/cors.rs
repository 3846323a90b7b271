//! CORS over real connections (the browser test is in `browser`).

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
    let with = client.get(server.url("c.test", "/hello/")).header("origin", "https://a.example").send().await.unwrap();
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
    let hello = client.get(server.url("c.test", "/hello/")).header("origin", "https://a.example").send().await.unwrap();
    assert_eq!(header(&hello, "access-control-allow-origin"), None);
    let who = client.get(server.url("c.test", "/whoami/")).header("origin", "https://a.example").send().await.unwrap();
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

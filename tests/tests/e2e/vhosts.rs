//! Virtual hosts, http_host, the default host, path mounting, error pages.

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
        raw_exchange(&server, b"GET http://b.test/whoami/ HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await;
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
    let response = raw_exchange(&server, b"GET /%73t?x HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 301 ") && response.contains("location: /st/?x\r\n"), "{response}");
    // Decoded bytes that are not UTF-8 text cannot be given to a module.
    let response = raw_exchange(&server, b"GET /st/%FF HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n").await;
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
        TestServer::start("VirtualHost \"r.test\"\nmodules_enabled = { \"http_whoami\", \"http_options\" }\n").await;
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

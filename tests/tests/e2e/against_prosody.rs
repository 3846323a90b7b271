//! Where canto means to match Prosody, the same config and requests give
//! the same answers from real Prosody 0.12 and from canto.

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
    ("bare base path redirects, query kept", "GET /files?x=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"),
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
    ("the default host's own paths only", "GET /files/ HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n"),
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
    for request in ["GET /files/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n", "GET /files/ HTTP/1.0\r\n\r\n"]
    {
        let (expected, _) = raw_status(prosody.addr, request).await;
        let (actual, _) = raw_status(canto.addr, request).await;
        assert_eq!(actual, expected, "{request:?}");
    }
}

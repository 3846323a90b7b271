//! The files module (Prosody's mod_http_files) over real connections.

use super::*;
use std::path::Path;

use canto_tests::{ProsodyServer, raw_status};

const CSS: &str = "body { color: #123456; }\n";

/// A document root, with a secret beside it that must never be served.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
    std::fs::write(root.join("style.css"), CSS).unwrap();
    std::fs::write(root.join("noext"), "plain bytes").unwrap();
    std::fs::write(root.join("docs").join("odd <name>&.txt"), "odd").unwrap();
    std::fs::write(root.join("sub").join("index.html"), "<h1>sub</h1>\n").unwrap();
    let digits: String = (0..100).map(|i| char::from(b'0' + (i % 10) as u8)).collect();
    std::fs::write(root.join("digits.txt"), &digits).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
    dir
}

fn files_config(root: &Path, extra: &str) -> String {
    format!(
        "VirtualHost \"files.test\"\n  modules_enabled = {{ \"http_files\" }}\n  http_files_dir = {:?}\n{extra}",
        root.display().to_string()
    )
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_files_with_types_validators_and_not_modified() {
    let dir = site();
    let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
    let client = server.client(&["files.test"]);
    let url = server.url("files.test", "/files/style.css");

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/css");
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    let etag = header(&response, "etag");
    let modified = header(&response, "last-modified");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong ETag: {etag}");
    assert!(modified.ends_with(" GMT"), "{modified}");
    assert_eq!(response.text().await.unwrap(), CSS);

    let weak_list = format!("\"other\", W/{etag}");
    for (name, value) in
        [("if-none-match", etag.as_str()), ("if-none-match", &weak_list), ("if-modified-since", &modified)]
    {
        let response = client.get(&url).header(name, value).send().await.unwrap();
        assert_eq!(response.status(), 304, "{name}: {value}");
        assert_eq!(header(&response, "etag"), etag);
        assert_eq!(response.bytes().await.unwrap().len(), 0);
    }
    let stale = client.get(&url).header("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT").send().await.unwrap();
    assert_eq!(stale.status(), 200);
    let changed = client.get(&url).header("if-none-match", "\"something-else\"").send().await.unwrap();
    assert_eq!(changed.status(), 200);

    let index = client.get(server.url("files.test", "/files/")).send().await.unwrap();
    assert_eq!(header(&index, "content-type"), "text/html");
    assert_eq!(index.text().await.unwrap(), "<h1>home</h1>\n");
    let noext = client.get(server.url("files.test", "/files/noext")).send().await.unwrap();
    assert!(noext.headers().get("content-type").is_none(), "no extension, no Content-Type (as Prosody)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_headers_and_no_body_over_http1_and_http2() {
    let dir = site();
    let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
    let http1 = server.client(&["files.test"]);
    let http2 = reqwest::Client::builder().http2_prior_knowledge().resolve("files.test", server.addr).build().unwrap();
    for client in [http1, http2] {
        let response = client.head(server.url("files.test", "/files/style.css")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.version());
        assert_eq!(header(&response, "content-length"), CSS.len().to_string());
        assert_eq!(response.bytes().await.unwrap().len(), 0);
        // The connection (or stream) is still good.
        let next = client.get(server.url("files.test", "/files/style.css")).send().await.unwrap();
        assert_eq!(next.text().await.unwrap(), CSS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_single_multiple_and_unsatisfiable() {
    let dir = site();
    let server = TestServer::start(&files_config(&dir.path().join("www"), "")).await;
    let client = server.client(&["files.test"]);
    let url = server.url("files.test", "/files/digits.txt");
    let range = |value: &'static str| client.get(&url).header("range", value).send();

    let first = range("bytes=0-9").await.unwrap();
    assert_eq!(first.status(), 206);
    assert_eq!(header(&first, "content-range"), "bytes 0-9/100");
    assert_eq!(first.text().await.unwrap(), "0123456789");
    let suffix = range("bytes=-5").await.unwrap();
    assert_eq!(header(&suffix, "content-range"), "bytes 95-99/100");
    assert_eq!(suffix.text().await.unwrap(), "56789");
    let open = range("bytes=98-").await.unwrap();
    assert_eq!(open.text().await.unwrap(), "89");

    let multi = range("bytes=0-1,50-52").await.unwrap();
    assert_eq!(multi.status(), 206);
    let content_type = header(&multi, "content-type");
    let boundary = content_type.strip_prefix("multipart/byteranges; boundary=").expect(&content_type).to_string();
    let body = multi.text().await.unwrap();
    assert!(body.contains("Content-Range: bytes 0-1/100\r\n\r\n01\r\n"), "{body}");
    assert!(body.contains("Content-Range: bytes 50-52/100\r\n\r\n012\r\n"), "{body}");
    assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");

    let beyond = range("bytes=100-").await.unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(header(&beyond, "content-range"), "bytes */100");
    let nonsense = range("bytes=z-q").await.unwrap();
    assert_eq!(nonsense.status(), 200, "an invalid Range is ignored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_listings_and_escapes() {
    let dir = site();
    let www = dir.path().join("www");
    let server = TestServer::start(&files_config(&www, "")).await;
    let redirect = server.get_no_redirect("files.test", "/files/docs?q=1").await;
    assert_eq!(redirect.status(), 301);
    assert_eq!(header(&redirect, "location"), "/files/docs/?q=1", "the query is kept");
    assert_eq!(server.get("files.test", "/files/sub/").await.text().await.unwrap(), "<h1>sub</h1>\n");
    assert_eq!(server.get("files.test", "/files/docs/").await.status(), 403, "no index, no listing");

    for path in [
        "/files/%2e%2e/secret.txt",
        "/files/sub/%2e%2e/%2e%2e/secret.txt",
        "/files/%252e%252e/secret.txt",
        "/files/a%00b",
    ] {
        let response = server.get_no_redirect("files.test", path).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert!(!body.contains("top secret"), "{path}");
    }
    let escape = server.get("files.test", "/files/escape.txt").await;
    assert_eq!(escape.status(), 403, "a symlink out of the tree is refused");
    assert!(!escape.text().await.unwrap().contains("top secret"));

    let listing_server = TestServer::start(&files_config(&www, "  http_dir_listing = true\n")).await;
    let listing = listing_server.get("files.test", "/files/docs/").await;
    assert_eq!(listing.status(), 200);
    assert_eq!(header(&listing, "content-type"), "text/html; charset=utf-8");
    let html = listing.text().await.unwrap();
    assert!(html.contains("odd &lt;name&gt;&amp;.txt"), "{html}");
    assert!(!html.contains("odd <name>"), "names are escaped: {html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_serves_a_component_at_its_root() {
    let dir = site();
    let config = format!(
        "Component \"static.test\" \"http\"\n  modules_enabled = {{ \"http_files\" }}\n  http_paths = {{ files = \"/\" }}\n  http_files_dir = {:?}\n",
        dir.path().join("www").display().to_string()
    );
    let server = TestServer::start(&config).await;
    assert_eq!(server.get("static.test", "/").await.text().await.unwrap(), "<h1>home</h1>\n");
    assert_eq!(server.get("static.test", "/style.css").await.text().await.unwrap(), CSS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_streams_through_a_small_module() {
    let dir = site();
    let www = dir.path().join("www");
    const SIZE: u64 = 256 << 20;
    std::fs::File::create(www.join("big.bin")).unwrap().set_len(SIZE).unwrap();
    // 8 MiB of module memory: buffering the file would trap.
    let server = TestServer::start(&files_config(&www, "http_module_memory_limit = 8388608\n")).await;
    let mut response = server.get("files.test", "/files/big.bin").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), SIZE.to_string());
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == 0));
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
}

/// The same directory behind real Prosody 0.12 and canto: where canto
/// means to match, the answers agree. (canto keeps the query on a
/// directory redirect and supports ranges, where Prosody does not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_prosody_mod_http_files() {
    let dir = site();
    let www = dir.path().join("www");
    let config = format!(
        "modules_enabled = {{ \"http_files\" }}\nhttp_files_dir = {:?}\nVirtualHost \"files.test\"\n",
        www.display().to_string()
    );
    let prosody = ProsodyServer::start(&config).await;
    let canto = TestServer::start(&config).await;
    let request = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: files.test\r\n{extra}Connection: close\r\n\r\n")
    };
    let header_of = |headers: &[(String, String)], name: &str| {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    for path in ["/files/style.css", "/files/", "/files/missing.txt", "/files/docs", "/files/sub/", "/files/noext"] {
        let (prosody_status, prosody_headers) = raw_status(prosody.addr, &request(path, "")).await;
        let (canto_status, canto_headers) = raw_status(canto.addr, &request(path, "")).await;
        assert_eq!(canto_status, prosody_status, "{path}");
        assert_eq!(header_of(&canto_headers, "location"), header_of(&prosody_headers, "location"), "{path}");
        if canto_status == 200 {
            assert!(header_of(&canto_headers, "etag").is_some() && header_of(&prosody_headers, "etag").is_some());
            // Each server's own validator gets its own 304.
            for (addr, headers) in [(prosody.addr, &prosody_headers), (canto.addr, &canto_headers)] {
                let etag = header_of(headers, "etag").unwrap();
                let (status, _) = raw_status(addr, &request(path, &format!("If-None-Match: {etag}\r\n"))).await;
                assert_eq!(status, 304, "{path} at {addr}");
            }
        }
    }
}

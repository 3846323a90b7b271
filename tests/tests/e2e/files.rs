//! The files module (Prosody's mod_http_files) over real connections.

use super::*;
use std::path::Path;

use canto_tests::tls::{HttpsClient, TestCa, Trust, connect};
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
    // A FIFO is neither opened in a way that waits for a writer nor sent.
    let fifo = std::process::Command::new("mkfifo").arg(www.join("pipe")).status().unwrap();
    assert!(fifo.success());
    let pipe = tokio::time::timeout(Duration::from_secs(10), server.get("files.test", "/files/pipe")).await;
    assert_eq!(pipe.expect("a FIFO does not block the request").status(), 403);

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

/// On plain-text HTTP/1.1 the kernel sends file bodies from the page cache
/// (sendfile): every byte arrives right, whole files and ranges, large
/// ones in several pieces and partial writes; over HTTP/2, which frames the
/// bytes itself, they are read as before; a small file the open-file cache
/// holds goes out from memory. The metrics say which was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_sent_with_sendfile_on_plain_http1() {
    let dir = site();
    let www = dir.path().join("www");
    // Not zeros (a placeholder sent as is would pass), and longer than the
    // 4 MiB one sendfile placeholder stands for.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let content: Vec<u8> = (0..9_000_123)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(www.join("big.bin"), &content).unwrap();
    let config = files_config(&www, "").replace("{ \"http_files\" }", "{ \"http_files\", \"http_openmetrics\" }");
    let server = TestServer::start(&config).await;
    let sent = || async {
        let text = server.get("files.test", "/metrics").await.text().await.unwrap();
        let value = |how: &str| -> u64 {
            let prefix = format!("canto_file_body_bytes_total{{how=\"{how}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(prefix.as_str())).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        (value("sendfile"), value("read"))
    };
    let (before, read_before) = sent().await;

    let http1 = server.client(&["files.test"]);
    let whole = http1.get(server.url("files.test", "/files/big.bin")).send().await.unwrap();
    assert_eq!(whole.version(), reqwest::Version::HTTP_11);
    assert!(whole.bytes().await.unwrap() == content, "the whole file");
    let range = |spec: &str| http1.get(server.url("files.test", "/files/big.bin")).header("range", spec).send();
    let across = range("bytes=4194000-4195000").await.unwrap();
    assert_eq!(across.status(), 206);
    assert!(across.bytes().await.unwrap() == content[4_194_000..=4_195_000], "a range across pieces");
    let parts = range("bytes=0-9,5000000-5000099,-50").await.unwrap();
    assert_eq!(parts.status(), 206);
    let body = parts.bytes().await.unwrap();
    let mut from = 0;
    for slice in [&content[..10], &content[5_000_000..5_000_100], &content[content.len() - 50..]] {
        let at = body[from..].windows(slice.len()).position(|w| w == slice).expect("each part, in order");
        from += at + slice.len();
    }
    assert_eq!(
        http1.get(server.url("files.test", "/files/style.css")).send().await.unwrap().text().await.unwrap(),
        CSS
    );
    let (after, read_after) = sent().await;
    let expected = content.len() as u64 + 1001 + 160;
    assert_eq!(after - before, expected, "sent by sendfile");
    assert_eq!(read_after - read_before, CSS.len() as u64, "only the small file, from memory");

    let http2 = reqwest::Client::builder().http2_prior_knowledge().resolve("files.test", server.addr).build().unwrap();
    let over_h2 = http2.get(server.url("files.test", "/files/big.bin")).send().await.unwrap();
    assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);
    assert!(over_h2.bytes().await.unwrap() == content, "the whole file over HTTP/2");
    let (last, read_last) = sent().await;
    assert_eq!((last, read_last - read_after), (after, content.len() as u64), "HTTP/2 reads the file");
}

/// A file replaced while it is being downloaded (written aside, renamed
/// over it, as deployments do): every response is one version whole, never
/// a mix, and once replaced the new one is served, its validators new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_file_is_never_served_stale_or_torn() {
    replaced_while_read(2 << 20).await;
}

/// The same for a file small enough that the cache keeps its bytes in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_small_file_is_never_served_stale_or_torn() {
    replaced_while_read(4096).await;
}

async fn replaced_while_read(size: usize) {
    let dir = site();
    let www = dir.path().join("www");
    let write_version = |version: u8| {
        let aside = www.join(format!(".live-{version}"));
        std::fs::write(&aside, vec![version; size]).unwrap();
        std::fs::rename(&aside, www.join("live.bin")).unwrap();
    };
    write_version(1);
    let server = TestServer::start(&files_config(&www, "")).await;
    let first = server.get("files.test", "/files/live.bin").await;
    let first_etag = header(&first, "etag");
    assert_eq!(first.bytes().await.unwrap(), vec![1u8; size]);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, done) =
                (server.client(&["files.test"]), server.url("files.test", "/files/live.bin"), done.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = client.get(&url).send().await.unwrap().bytes().await.unwrap();
                    assert_eq!(body.len(), size, "a whole file");
                    assert!(body.iter().all(|b| *b == body[0]), "one version, not torn");
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for version in 2..=40 {
        write_version(version);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    let last = server.get("files.test", "/files/live.bin").await;
    let last_etag = header(&last, "etag");
    assert_eq!(last.bytes().await.unwrap(), vec![40u8; size], "not stale");
    assert_ne!(first_etag, last_etag);
    let revalidated = server
        .client(&["files.test"])
        .get(server.url("files.test", "/files/live.bin"))
        .header("if-none-match", &first_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 200, "the old validator no longer matches");
}

/// The open-file cache never answers for a file that changed: each change
/// is followed at once (no sleep) by a request that must see it. The file
/// is read twice first, so the second answer came from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_files_follow_every_change_at_once() {
    let dir = site();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("a/b")).unwrap();
    let page = www.join("a/b/page.txt");
    std::fs::write(&page, "one").unwrap();
    std::fs::create_dir_all(www.join("real")).unwrap();
    std::fs::write(www.join("real/linked.txt"), "through a link").unwrap();
    // Relative: the sandbox refuses absolute symlinks.
    std::os::unix::fs::symlink("real", www.join("link")).unwrap();
    let server = TestServer::start(&files_config(&www, "")).await;
    let client = server.client(&["files.test"]);
    let fetch = |path: &'static str| {
        let (client, url) = (client.clone(), server.url("files.test", path));
        async move {
            let response = client.get(&url).send().await.unwrap();
            let (status, etag) = (response.status().as_u16(), header(&response, "etag"));
            (status, etag, response.text().await.unwrap())
        }
    };
    let cached = |path: &'static str| async move {
        let first = fetch(path).await;
        assert_eq!(fetch(path).await, first, "the same answer twice");
        first
    };

    let (status, etag, body) = cached("/files/a/b/page.txt").await;
    assert_eq!((status, body.as_str()), (200, "one"));

    // Rewritten in place, same size.
    std::fs::write(&page, "two").unwrap();
    let (_, etag_two, body) = fetch("/files/a/b/page.txt").await;
    assert_eq!(body, "two", "a write is seen");
    cached("/files/a/b/page.txt").await;

    // Replaced by rename.
    std::fs::write(www.join("a/b/.next"), "three!").unwrap();
    std::fs::rename(www.join("a/b/.next"), &page).unwrap();
    let (_, etag_three, body) = fetch("/files/a/b/page.txt").await;
    assert_eq!(body, "three!", "a rename over it is seen");
    cached("/files/a/b/page.txt").await;

    // Only the modification time changes: a new validator.
    let earlier = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&page).unwrap().set_modified(earlier).unwrap();
    let (_, etag_touched, body) = fetch("/files/a/b/page.txt").await;
    assert_eq!(body, "three!");
    // (The first two may share a tag: same size, and written within the
    // clock's granularity.)
    assert_ne!(etag_two, etag_three, "a new size, a new tag");
    assert_ne!(etag_three, etag_touched, "a new time, a new tag");
    assert!(!etag.is_empty());
    cached("/files/a/b/page.txt").await;

    // A directory on the path moved away, then back.
    std::fs::rename(www.join("a"), www.join("gone")).unwrap();
    assert_eq!(fetch("/files/a/b/page.txt").await.0, 404, "a moved directory is seen");
    std::fs::rename(www.join("gone"), www.join("a")).unwrap();
    cached("/files/a/b/page.txt").await;

    // Deleted.
    std::fs::remove_file(&page).unwrap();
    assert_eq!(fetch("/files/a/b/page.txt").await.0, 404, "a deletion is seen");

    // Behind a symlink (not cached): a change of its target is seen too.
    let (_, _, body) = cached("/files/link/linked.txt").await;
    assert_eq!(body, "through a link");
    std::fs::remove_file(www.join("link")).unwrap();
    std::fs::create_dir_all(www.join("other")).unwrap();
    std::fs::write(www.join("other/linked.txt"), "another target").unwrap();
    std::os::unix::fs::symlink("other", www.join("link")).unwrap();
    assert_eq!(fetch("/files/link/linked.txt").await.2, "another target", "a retargeted link is seen");
}

/// A release directory swapped under the granted name (a symlink renamed
/// over the old one, as deployments do) is served within a second, without
/// a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_directory_swapped_under_its_name_is_served() {
    let dir = tempfile::tempdir().unwrap();
    for release in ["r1", "r2"] {
        std::fs::create_dir(dir.path().join(release)).unwrap();
        std::fs::write(dir.path().join(release).join("version.txt"), release).unwrap();
    }
    let current = dir.path().join("current");
    std::os::unix::fs::symlink(dir.path().join("r1"), &current).unwrap();
    let server = TestServer::start(&files_config(&current, "")).await;
    assert_eq!(server.get("files.test", "/files/version.txt").await.text().await.unwrap(), "r1");
    std::os::unix::fs::symlink(dir.path().join("r2"), dir.path().join("next")).unwrap();
    std::fs::rename(dir.path().join("next"), &current).unwrap();
    std::fs::remove_dir_all(dir.path().join("r1")).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.get("files.test", "/files/version.txt").await.text().await.unwrap(), "r2");
}

/// The server sends the bytes over TLS and HTTP/2 as over plain HTTP/1.1:
/// HEAD, 304 and ranges included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_sent_over_tls_with_http1_and_http2() {
    let dir = site();
    let www = dir.path().join("www");
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    ca.issue(&["files.test"]).write(&certs.path().join("files.test.crt"), &certs.path().join("files.test.key"));
    let tls =
        format!("https_ports = {{ 0 }}\nhttps_interfaces = {{ \"127.0.0.1\" }}\ncertificates = {:?}\n", certs.path());
    let server = TestServer::start(&format!("{tls}{}", files_config(&www, ""))).await;
    let addr = server.https_addr.expect("https is open");
    for (alpn, version) in [(&b"http/1.1"[..], hyper::Version::HTTP_11), (&b"h2"[..], hyper::Version::HTTP_2)] {
        let connection = connect(addr, Some("files.test"), Trust::Ca(&ca), &[alpn]).await.unwrap();
        let mut client = HttpsClient::open(connection).await;
        let (status, served, headers, body) = client.send("GET", "files.test", "/files/style.css", &[]).await.unwrap();
        assert_eq!((status, served, &body[..]), (200, version, CSS.as_bytes()));
        assert_eq!(headers["content-length"], CSS.len().to_string().as_str());
        let etag = headers["etag"].to_str().unwrap().to_string();
        let (status, _, headers, body) = client.send("HEAD", "files.test", "/files/style.css", &[]).await.unwrap();
        assert_eq!((status, body.len()), (200, 0), "{version:?}");
        assert_eq!(headers["content-length"], CSS.len().to_string().as_str(), "{version:?}");
        let (status, _, _, body) =
            client.send("GET", "files.test", "/files/style.css", &[("if-none-match", &etag)]).await.unwrap();
        assert_eq!((status, body.len()), (304, 0), "{version:?}");
        let (status, _, headers, body) =
            client.send("GET", "files.test", "/files/digits.txt", &[("range", "bytes=10-14")]).await.unwrap();
        assert_eq!((status, &body[..]), (206, &b"01234"[..]), "{version:?}");
        assert_eq!(headers["content-range"], "bytes 10-14/100", "{version:?}");
    }
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

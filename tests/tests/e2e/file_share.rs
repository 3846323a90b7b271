//! XEP-0363's HTTP side as the built-in `http_file_share`: slots handed out
//! by a real Prosody (mod_http_file_share in external mode, pointing at
//! canto) to a real client (slixmpp), uploads checked as Prosody's own handler checks them, served
//! back with the headers that keep a browser safe, and deleted once they
//! expire by the module's scheduled run.

use canto_tests::{XmppServer, client_json, node_client};

use super::*;

const SECRET: &str = "s3cret-for-tests";

fn site(host: &str, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "http_file_share_secret = \"{SECRET}\"\nhttp_file_share_dir = \"{}\"\n{extra}\nVirtualHost \"{host}\"\n    modules_enabled = {{ \"http_file_share\" }}\n",
        dir.display()
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token as Prosody's `get_authz` signs one.
fn token(slot: &str, filename: &str, filesize: u64, exp: u64, expires: Option<u64>) -> String {
    token_with(SECRET.as_bytes(), slot, filename, filesize, exp, expires)
}

fn token_with(secret: &[u8], slot: &str, filename: &str, filesize: u64, exp: u64, expires: Option<u64>) -> String {
    let mut claims = serde_json::json!({
        "sub": "alice@example.test", "iat": unix_now(), "exp": exp, "slot": slot,
        "filename": filename, "filesize": filesize,
        "filetype": if filename.ends_with(".html") { "text/html" } else { "text/plain" },
    });
    if let Some(expires) = expires {
        claims["expires"] = expires.into();
    }
    // Signed by Python's hmac, as Prosody's util.jwt does: a signer
    // independent of the Rust code under test.
    let script = "import base64,hmac,hashlib,sys\n\
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()\n\
        signed = b64(b'{\"alg\":\"HS256\",\"typ\":\"JWT\"}') + '.' + b64(sys.argv[2].encode())\n\
        print(signed + '.' + b64(hmac.new(sys.argv[1].encode(), signed.encode(), hashlib.sha256).digest()))";
    let secret = std::str::from_utf8(secret).unwrap();
    let output =
        std::process::Command::new("python3").args(["-c", script, secret, &claims.to_string()]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn put(
    server: &TestServer,
    host: &str,
    path: &str,
    bearer: Option<&str>,
    body: &'static [u8],
) -> reqwest::Response {
    let mut request = server.client(&[host]).put(server.url(host, path)).body(body);
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    request.send().await.unwrap()
}

/// slixmpp (PyPI), with its XEP-0363 plugin, run by Python.
async fn slixmpp_upload(c2s: std::net::SocketAddr, jid: &str, file: &std::path::Path) -> serde_json::Value {
    let mut command = tokio::process::Command::new("python3");
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/file_share_slixmpp.py"));
    command.args([&c2s.to_string(), jid, "secret"]).arg(file);
    client_json(command, "file_share_slixmpp.py", "python3 (scripts/test installs slixmpp)").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_from_prosody_uploads_and_downloads_through_canto() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("share.test", dir.path(), "http_default_host = \"share.test\"")).await;
    let base = format!("http://127.0.0.1:{}/file_share", server.addr.port());
    let component = format!(
        "Component \"upload.xmpp-share.test\" \"http_file_share\"\n    http_file_share_base_url = \"{base}\"\n    http_file_share_secret = \"{SECRET}\"\n"
    );
    let xmpp = XmppServer::start_with("xmpp-share.test", &component).await;
    let upload = tempfile::tempdir().unwrap();
    let file = upload.path().join("résumé 1.txt");
    let text = "hello, upload ✓\n".repeat(1000);
    std::fs::write(&file, &text).unwrap();

    // alice's client finds the upload service, gets a slot, PUTs the file.
    let seen = slixmpp_upload(xmpp.c2s, "alice@xmpp-share.test", &file).await;
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let get_url = seen["get_url"].as_str().unwrap_or_else(|| panic!("no GET URL: {seen}"));
    assert!(get_url.starts_with(&base), "{seen}");

    // Another client downloads what the GET URL names.
    let fetched = reqwest::get(get_url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    let headers = fetched.headers().clone();
    assert_eq!(fetched.text().await.unwrap(), text);
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], text.len().to_string().as_str());
    assert_eq!(headers["content-disposition"], "inline; filename*=UTF-8''r%C3%A9sum%C3%A9%201.txt");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(headers["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(headers.contains_key("etag"));
    // Stored where Prosody stores them, granted to the module alone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the file and what its token said");
}

/// The statuses Prosody's own handler gives, in its order of checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_as_prosodys_handler_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("checks.share.test", dir.path(), "")).await;
    let host = "checks.share.test";
    let later = unix_now() + 300;
    let missing = put(&server, host, "/file_share/s1/a.txt", None, b"hello").await;
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let forged = token("s1", "a.txt", 5, later, None).replace('.', ".x");
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&forged), b"hello").await.status(), 401);
    let elsewhere = token_with(b"another secret", "s1", "a.txt", 5, later, None);
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&elsewhere), b"hello").await.status(), 401);
    let expired = token("s1", "a.txt", 5, unix_now() - 10, None);
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&expired), b"hello").await.status(), 410);
    let good = token("s1", "a.txt", 5, later, None);
    assert_eq!(put(&server, host, "/file_share/s2/a.txt", Some(&good), b"hello").await.status(), 400);
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&good), b"hello!").await.status(), 413);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a refused upload leaves nothing");
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&good), b"hello").await.status(), 201);
    assert_eq!(put(&server, host, "/file_share/s1/a.txt", Some(&good), b"hello").await.status(), 409);

    // `Expect: 100-continue`: a refused upload is refused before its body
    // is sent, an accepted one is asked for it.
    let ahead = |bearer: &str, slot: &str| {
        format!(
            "PUT /file_share/{slot}/b.bin HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
    };
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    refused.write_all(ahead("nonsense", "s3").as_bytes()).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), refused.read(&mut head)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 401 "),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    let mut accepted = TcpStream::connect(server.addr).await.unwrap();
    accepted.write_all(ahead(&token("s3", "b.bin", 3, later, None), "s3").as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), accepted.read(&mut head)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    accepted.write_all(b"abc").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), accepted.read(&mut head)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).contains("201 "), "{}", String::from_utf8_lossy(&head[..n]));

    // An upload cut off halfway leaves no file, and the slot usable.
    let mut cut = TcpStream::connect(server.addr).await.unwrap();
    let half = token("s4", "c.txt", 10, later, None);
    let request = format!(
        "PUT /file_share/s4/c.txt HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {half}\r\nContent-Length: 10\r\n\r\nhalf"
    );
    cut.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(cut);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!dir.path().join("s4").exists());
    assert_eq!(put(&server, host, "/file_share/s4/c.txt", Some(&half), b"0123456789").await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_have_ranges_validators_and_a_safe_disposition() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("get.share.test", dir.path(), "")).await;
    let host = "get.share.test";
    let later = unix_now() + 300;
    assert_eq!(
        put(&server, host, "/file_share/r1/x.txt", Some(&token("r1", "x.txt", 10, later, None)), b"0123456789")
            .await
            .status(),
        201
    );
    let client = server.client(&[host]);
    let url = server.url(host, "/file_share/r1/x.txt");
    let whole = client.get(&url).send().await.unwrap();
    let etag = whole.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let range = client.get(&url).header("range", "bytes=2-").send().await.unwrap();
    assert_eq!(range.status(), 206);
    // Prosody says `bytes 2-10/10`, one past the end.
    assert_eq!(range.headers()["content-range"], "bytes 2-9/10");
    assert_eq!(range.text().await.unwrap(), "23456789");
    let cached = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(cached.status(), 304);
    let head = client.head(&url).send().await.unwrap();
    assert_eq!((head.status().as_u16(), head.headers()["content-length"].to_str().unwrap()), (200, "10"));
    assert_eq!(client.get(server.url(host, "/file_share/nope/x.txt")).send().await.unwrap().status(), 404);
    // Not a safe type: an attachment, never shown inline.
    let html = token("h1", "page.html", 4, later, None);
    assert_eq!(put(&server, host, "/file_share/h1/page.html", Some(&html), b"<b/>").await.status(), 201);
    let page = server.get(host, "/file_share/h1/page.html").await;
    assert_eq!(page.headers()["content-type"], "text/html");
    assert_eq!(page.headers()["content-disposition"], "attachment; filename*=UTF-8''page.html");
}

/// Files whose `expires` passed are deleted by the module's scheduled run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_uploads_are_deleted_by_the_scheduled_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&site("expiry.share.test", dir.path(), "http_file_share_prune_interval = 1")).await;
    let host = "expiry.share.test";
    let later = unix_now() + 300;
    let soon = token("e1", "gone.txt", 4, later, Some(unix_now() + 1));
    let kept = token("e2", "kept.txt", 4, later, None);
    assert_eq!(put(&server, host, "/file_share/e1/gone.txt", Some(&soon), b"gone").await.status(), 201);
    assert_eq!(put(&server, host, "/file_share/e2/kept.txt", Some(&kept), b"kept").await.status(), 201);
    let started = std::time::Instant::now();
    while dir.path().join("e1").exists() || dir.path().join("e1.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(15), "the expired upload was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.get(host, "/file_share/e1/gone.txt").await.status(), 404);
    assert_eq!(server.get(host, "/file_share/e2/kept.txt").await.text().await.unwrap(), "kept");
    wait_for_log(&["deleted 1 expired uploads", "vhost=expiry.share.test"]).await;
}

/// A 1 GiB upload through a module allowed 16 MiB of memory: the body
/// streams to disk, and comes back whole. As in Prosody, file upload
/// streams, so the default 10 MiB `http_max_content_size` does not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_streams_through_a_module_with_16_mib() {
    const SIZE: u64 = 1 << 30;
    const PIECE: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let limits = format!(
        "http_module_memory_limit = {}\nhttp_file_share_size_limit = {SIZE}\nhttp_module_wall_timeout = 600",
        16 << 20
    );
    let server = TestServer::start(&site("big.share.test", dir.path(), &limits)).await;
    let host = "big.share.test";
    let pieces =
        futures::stream::iter((0..SIZE / PIECE as u64).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; PIECE])));
    let bearer = token("big", "big.bin", SIZE, unix_now() + 300, None);
    let uploaded = server
        .client(&[host])
        .put(server.url(host, "/file_share/big/big.bin"))
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-length", SIZE)
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    assert_eq!(std::fs::metadata(dir.path().join("big")).unwrap().len(), SIZE);
    let mut download = server.get(host, "/file_share/big/big.bin").await;
    let (mut received, mut index) = (0u64, 0u64);
    while let Some(chunk) = download.chunk().await.unwrap() {
        for byte in chunk.iter() {
            assert_eq!(*byte, ((index / PIECE as u64) % 251) as u8, "byte {index}");
            index += 1;
        }
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
}

/// With no `http_file_share_dir`, uploads go where Prosody keeps them: under
/// `data_path`, in a directory per host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_go_under_data_path_in_a_directory_per_host() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "http_file_share_secret = \"{SECRET}\"\ndata_path = \"{}\"\nVirtualHost \"one.share.test\"\n    modules_enabled = {{ \"http_file_share\" }}\nVirtualHost \"two.share.test\"\n    modules_enabled = {{ \"http_file_share\" }}\n",
        data.path().display()
    );
    let server = TestServer::start(&config).await;
    let bearer = token("p1", "a.txt", 3, unix_now() + 300, None);
    assert_eq!(put(&server, "one.share.test", "/file_share/p1/a.txt", Some(&bearer), b"one").await.status(), 201);
    let stored = data.path().join("one%2eshare%2etest/http_file_share/p1");
    assert_eq!(std::fs::read(&stored).unwrap(), b"one");
    // Another host has its own directory: the slot is unknown there.
    assert_eq!(server.get("two.share.test", "/file_share/p1/a.txt").await.status(), 404);
}

/// prosody-modules' `mod_http_upload_external` (Debian's package) signs
/// the PUT URL itself (`?v2=`): canto checks it with the same secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_from_mod_http_upload_external_uploads_through_canto() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "http_default_host = \"external.share.test\"\nhttp_upload_external_secret = \"ext-secret\"\nhttp_upload_external_protocol = \"v2\"";
    let server = TestServer::start(&site("external.share.test", dir.path(), extra)).await;
    let base = format!("http://127.0.0.1:{}/file_share/", server.addr.port());
    let component = format!(
        "Component \"upload.xmpp-external.test\" \"http_upload_external\"\n    http_upload_external_base_url = \"{base}\"\n    http_upload_external_secret = \"ext-secret\"\n    http_upload_external_protocol = \"v2\"\n"
    );
    let xmpp = XmppServer::start_with("xmpp-external.test", &component).await;
    let ws = format!("ws://{}/xmpp-websocket", xmpp.http);
    let seen = node_client(
        "file_share.mjs",
        &[&ws, "xmpp-external.test", "upload.xmpp-external.test", "notes 2.txt", "signed in the URL"],
    )
    .await;
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert!(seen["put_url"].as_str().is_some_and(|url| url.contains("?v2=")), "{seen}");
    assert_eq!(seen["put_status"], 201, "{seen}");
    assert_eq!(seen["put_again_status"], 409, "{seen}");
    assert_eq!(seen["get_status"], 200, "{seen}");
    assert_eq!(seen["get_body"], "signed in the URL", "{seen}");
    // A URL whose MAC does not hold is refused as prosody-filer refuses it.
    let forged = server
        .client(&["external.share.test"])
        .put(server.url("external.share.test", "/file_share/abc/x.txt?v2=00"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

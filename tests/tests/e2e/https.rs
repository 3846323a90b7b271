use super::*;
use std::net::SocketAddr;
use std::path::Path;

use canto_tests::tls::{HttpsClient, IssuedCert, TestCa, Trust, connect, served_cert};

/// An https listener on loopback with certificates from `certs`, whoami
/// on every VirtualHost, then `rest`.
fn https_config(certs: &Path, rest: &str) -> String {
    format!(
        "https_ports = {{ 0 }}\nhttps_interfaces = {{ \"127.0.0.1\" }}\ncertificates = {:?}\nmodules_enabled = {{ \"http_whoami\" }}\n{rest}",
        certs.display().to_string()
    )
}

fn write_pair(cert: &IssuedCert, dir: &Path, name: &str) {
    cert.write(&dir.join(format!("{name}.crt")), &dir.join(format!("{name}.key")));
}

#[tokio::test]
async fn sni_picks_each_hosts_certificate_in_every_layout() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let a = ca.issue(&["a.test"]);
    write_pair(&a, dir, "a.test");
    // Let's Encrypt's layout.
    let b = ca.issue(&["b.test"]);
    b.write(&dir.join("b.test/fullchain.pem"), &dir.join("b.test/privkey.pem"));
    // Certificate and key in one <name>.pem.
    let c = ca.issue(&["c.test"]);
    c.write(&dir.join("c.test.pem"), &dir.join("c.test.pem"));
    let wild = ca.issue(&["*.wild.test"]);
    write_pair(&wild, dir, "wild");
    let parent = ca.issue(&["parent.test"]);
    write_pair(&parent, dir, "parent.test");
    // Found by its second SAN, three directories down.
    let multi = ca.issue(&["m1.test", "m2.test"]);
    multi.write(&dir.join("le/live/multi/fullchain.pem"), &dir.join("le/live/multi/privkey.pem"));
    let hosts = ["a.test", "b.test", "c.test", "x.wild.test", "upload.parent.test", "m2.test"];
    let sections: String = hosts.iter().map(|h| format!("VirtualHost {h:?}\n")).collect();
    let server = TestServer::start(&https_config(dir, &sections)).await;
    let addr = server.https_addr.expect("https is open");

    for (name, expected) in
        [("a.test", &a), ("b.test", &b), ("c.test", &c), ("x.wild.test", &wild), ("m2.test", &multi)]
    {
        // A verifying client: the chain and the name check out.
        let connection = connect(addr, Some(name), Trust::Ca(&ca), &[]).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(connection.peer_cert == expected.der, "wrong certificate for {name}");
    }
    // The parent domain's certificate, as Prosody serves it.
    assert!(served_cert(addr, Some("upload.parent.test")).await.unwrap() == parent.der);
    // No SNI: the port's default, the first indexed certificate.
    assert!(served_cert(addr, None).await.unwrap() == a.der, "no SNI gets the default certificate");
    // A name no host has: looked up in the index, else the default.
    assert!(served_cert(addr, Some("other.wild.test")).await.unwrap() == wild.der);
    assert!(served_cert(addr, Some("unknown.example")).await.unwrap() == a.der);
}

#[tokio::test]
async fn https_ssl_serves_one_certificate_for_every_name() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
    let manual_dir = tempfile::tempdir().unwrap();
    let manual = ca.issue(&["manual.test"]);
    write_pair(&manual, manual_dir.path(), "http");
    let rest = format!(
        "https_ssl = {{ certificate = {:?}; key = {:?} }}\nVirtualHost \"a.test\"\n",
        manual_dir.path().join("http.crt").display().to_string(),
        manual_dir.path().join("http.key").display().to_string()
    );
    let server = TestServer::start(&https_config(certs.path(), &rest)).await;
    let addr = server.https_addr.expect("https is open");
    for sni in [Some("a.test"), Some("manual.test"), None] {
        assert!(served_cert(addr, sni).await.unwrap() == manual.der, "https_ssl for {sni:?}");
    }
}

#[tokio::test]
async fn global_ssl_is_the_fallback_behind_host_certificates() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let a = ca.issue(&["a.test"]);
    write_pair(&a, certs.path(), "a.test");
    let elsewhere = tempfile::tempdir().unwrap();
    let fallback = ca.issue(&["fallback.test"]);
    write_pair(&fallback, elsewhere.path(), "fallback");
    let rest = format!(
        "ssl = {{ certificate = {:?}; key = {:?} }}\nVirtualHost \"a.test\"\n",
        elsewhere.path().join("fallback.crt").display().to_string(),
        elsewhere.path().join("fallback.key").display().to_string()
    );
    let server = TestServer::start(&https_config(certs.path(), &rest)).await;
    let addr = server.https_addr.expect("https is open");
    assert!(served_cert(addr, Some("a.test")).await.unwrap() == a.der);
    assert!(served_cert(addr, None).await.unwrap() == fallback.der);
    assert!(served_cert(addr, Some("nobody.test")).await.unwrap() == fallback.der);
}

#[tokio::test]
async fn https_certificate_names_the_default_and_requests_are_secure() {
    let ca = TestCa::new();
    let empty = tempfile::tempdir().unwrap();
    let manual_dir = tempfile::tempdir().unwrap();
    let cert = ca.issue(&["example.net"]);
    write_pair(&cert, manual_dir.path(), "example.net");
    // The seed's example: the key is found beside the certificate.
    let rest = format!(
        "https_certificate = {:?}\nVirtualHost \"example.net\"\n",
        manual_dir.path().join("example.net.crt").display().to_string()
    );
    let server = TestServer::start(&https_config(empty.path(), &rest)).await;
    let addr = server.https_addr.expect("https is open");
    assert!(served_cert(addr, None).await.unwrap() == cert.der);

    let connection = connect(addr, Some("example.net"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
    let mut client = HttpsClient::open(connection).await;
    let (status, version, body) = client.get("example.net", "/whoami/").await.unwrap();
    assert_eq!((status, version), (200, hyper::Version::HTTP_11));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["secure"], true, "{json}");
    // Module URLs prefer https once it is open (spec §3e).
    assert_eq!(json["base_url"], format!("https://example.net:{}/whoami/", addr.port()));
    // The same module over plain http is not secure.
    assert_eq!(server.whoami("example.net", "/whoami").await["secure"], false);
}

/// An XMPP client probing the https port with only `xmpp-client` in
/// ALPN completes the handshake (no protocol chosen), as with Prosody,
/// instead of getting alert 120, and is then served HTTP/1.1.
#[tokio::test]
async fn a_client_offering_only_other_alpn_protocols_completes_the_handshake() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
    let server = TestServer::start(&https_config(certs.path(), "VirtualHost \"a.test\"\n")).await;
    let addr = server.https_addr.expect("https is open");
    let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"xmpp-client"]).await;
    let connection = connection.expect("the handshake completes");
    assert_eq!(connection.alpn, None, "no protocol is chosen");
    let mut client = HttpsClient::open(connection).await;
    let (status, version, _) = client.get("a.test", "/whoami/").await.unwrap();
    assert_eq!((status, version), (200, hyper::Version::HTTP_11));
    // Clients that offer what canto speaks still get it.
    let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"xmpp-client", b"http/1.1"]).await;
    assert_eq!(connection.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn http2_over_tls_by_alpn_for_rustls_and_curl() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
    let server = TestServer::start(&https_config(certs.path(), "VirtualHost \"a.test\"\n")).await;
    let addr = server.https_addr.expect("https is open");

    let connection = connect(addr, Some("a.test"), Trust::Ca(&ca), &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(connection.alpn.as_deref(), Some(&b"h2"[..]));
    let mut client = HttpsClient::open(connection).await;
    for _ in 0..3 {
        let (status, version, body) = client.get("a.test", "/whoami/").await.unwrap();
        assert_eq!((status, version), (200, hyper::Version::HTTP_2));
        assert!(body.contains("\"secure\":true"), "{body}");
    }

    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    // Async: the server answers on this same test runtime.
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca_file)
        .args(["--resolve", &format!("a.test:{}:127.0.0.1", addr.port())])
        .args(["-w", "\nversion=%{http_version}"])
        .arg(format!("https://a.test:{}/whoami/", addr.port()))
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "curl: {}", String::from_utf8_lossy(&output.stderr));
    assert!(text.ends_with("version=2"), "curl negotiated another protocol: {text}");
    assert!(text.contains("\"host\":\"a.test\""), "{text}");
}

#[tokio::test]
async fn no_certificate_leaves_https_closed_and_http_serving() {
    let empty = tempfile::tempdir().unwrap();
    let server = TestServer::start(&https_config(empty.path(), "VirtualHost \"nocert.test\"\n")).await;
    wait_for_log(&[
        "Error binding encrypted port for https: No certificate present in SSL/TLS configuration for https port 0",
    ])
    .await;
    assert!(server.https_addr.is_none(), "https must stay closed");
    assert_eq!(server.get("nocert.test", "/whoami").await.status(), 200);
}

#[tokio::test]
async fn a_missing_or_mismatched_key_is_named_and_keeps_the_port_closed() {
    let ca = TestCa::new();
    let empty = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    write_pair(&ca.issue(&["one.test"]), files.path(), "one");
    write_pair(&ca.issue(&["two.test"]), files.path(), "two");
    let one_crt = files.path().join("one.crt").display().to_string();
    let two_key = files.path().join("two.key").display().to_string();

    let no_key = format!("https_ssl = {{ certificate = {one_crt:?} }}\nVirtualHost \"k1.test\"\n");
    let server = TestServer::start(&https_config(empty.path(), &no_key)).await;
    let line = wait_for_log(&["Error binding encrypted port for https: No key present", &one_crt]).await;
    assert!(line.contains("https port 0"), "{line}");
    assert!(server.https_addr.is_none());
    assert_eq!(server.get("k1.test", "/whoami").await.status(), 200);

    let mismatch = format!("https_ssl = {{ certificate = {one_crt:?}; key = {two_key:?} }}\nVirtualHost \"k2.test\"\n");
    let server = TestServer::start(&https_config(empty.path(), &mismatch)).await;
    wait_for_log(&["Error binding encrypted port for https", "does not match", &one_crt, &two_key]).await;
    assert!(server.https_addr.is_none());
    assert_eq!(server.get("k2.test", "/whoami").await.status(), 200);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_connections() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let first = ca.issue(&["renew.test"]);
    write_pair(&first, dir, "renew.test");
    let server = TestServer::start(&https_config(dir, "VirtualHost \"renew.test\"\n")).await;
    let addr = server.https_addr.expect("https is open");
    let connection = connect(addr, Some("renew.test"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
    assert!(connection.peer_cert == first.der);
    let mut kept = HttpsClient::open(connection).await;
    assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);

    let renewed = ca.issue(&["renew.test"]);
    write_pair(&renewed, dir, "renew.test");
    let mut served = Vec::new();
    for _ in 0..100 {
        served = served_cert(addr, Some("renew.test")).await.unwrap();
        if served == renewed.der {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served == renewed.der, "the renewed certificate was not served within 5 s");
    // The connection opened before the renewal still works.
    assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);

    // A broken renewal keeps the last good certificate.
    std::fs::write(dir.join("renew.test.crt"), "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let cert_path = dir.join("renew.test.crt").display().to_string();
    wait_for_log(&["still serving the certificate loaded before", &cert_path]).await;
    assert!(served_cert(addr, Some("renew.test")).await.unwrap() == renewed.der);
    assert_eq!(kept.get("renew.test", "/whoami/").await.unwrap().0, 200);
    // So does one caught empty, which no longer even looks like a certificate.
    let seen = canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len();
    std::fs::write(dir.join("renew.test.crt"), "").unwrap();
    for _ in 0..100 {
        if canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len() > seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        canto_tests::log_lines_with(&["still serving the certificate loaded before", &cert_path]).len() > seen,
        "the empty file was not noticed"
    );
    assert!(served_cert(addr, Some("renew.test")).await.unwrap() == renewed.der);
}

/// A reload that adds an http interface and an https port opens them,
/// one that removes them closes them, and an open connection on the
/// listener that stays never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_opens_and_closes_listeners_and_keeps_the_rest() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    write_pair(&ca.issue(&["a.test"]), certs.path(), "a.test");
    let plain = "VirtualHost \"a.test\"\nmodules_enabled = { \"http_whoami\" }\n";
    let server = TestServer::start(plain).await;
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /whoami/ HTTP/1.1\r\nHost: a.test\r\n\r\n";
    async fn status_on(stream: &mut TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the keep-alive connection was dropped");
        String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
    }
    assert!(status_on(&mut kept, request).await.contains("200"));

    let wider = format!(
        "http_interfaces = {{ \"127.0.0.1\", \"127.0.0.2\" }}\n{}",
        https_config(certs.path(), "https_interfaces = { \"127.0.0.3\" }\nVirtualHost \"a.test\"\n")
    );
    server.rewrite_config(&wider);
    server.reload.reload().await;
    let port_in = |line: String, prefix: &str| -> SocketAddr {
        let rest = line.split(prefix).nth(1).unwrap();
        let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
        format!("{}{port}", prefix.trim_start_matches("http://").trim_start_matches("https://")).parse().unwrap()
    };
    let added_http = port_in(wait_for_log(&["listening on http://127.0.0.2:"]).await, "http://127.0.0.2:");
    let added_https = port_in(wait_for_log(&["listening on https://127.0.0.3:"]).await, "https://127.0.0.3:");
    let mut second = TcpStream::connect(added_http).await.unwrap();
    assert!(status_on(&mut second, request).await.contains("200"));
    let tls = connect(added_https, Some("a.test"), Trust::Ca(&ca), &[b"http/1.1"]).await.unwrap();
    let (status, _, body) = HttpsClient::open(tls).await.get("a.test", "/whoami/").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"secure\":true"), "{body}");
    assert!(status_on(&mut kept, request).await.contains("200"));

    server.rewrite_config(plain);
    server.reload.reload().await;
    wait_for_log(&[&format!("no longer listening on http://{added_http}")]).await;
    wait_for_log(&[&format!("no longer listening on https://{added_https}")]).await;
    assert!(TcpStream::connect(added_http).await.is_err(), "the removed listener still accepts");
    assert!(TcpStream::connect(added_https).await.is_err(), "the removed https listener still accepts");
    assert!(status_on(&mut kept, request).await.contains("200"));
}

#[tokio::test]
async fn check_certs_reports_each_host_and_its_problems() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    write_pair(&ca.issue(&["a.test", "www.a.test"]), dir, "a.test");
    write_pair(&ca.issue_expired(&["old.test"]), dir, "old.test");
    let config_path = dir.join("prosody.cfg.lua");
    let text = https_config(dir, "VirtualHost \"a.test\"\nVirtualHost \"elsewhere.test\"\n");
    let config = canto::Config::from_text(&config_path, &text, &canto::builtin::names()).unwrap();
    let (report, problems) = canto::tls::describe(&config.tls, &[5281]);
    let a_crt = dir.join("a.test.crt").display().to_string();
    assert!(report.contains(&format!("certificate {a_crt}")), "{report}");
    assert!(report.contains("names       a.test, www.a.test"), "{report}");
    assert!(report.contains("old.test.crt: not valid now"), "{report}");
    assert!(report.contains("does not cover elsewhere.test"), "{report}");
    assert_eq!(problems, 2, "{report}");
}

//! TLS for the tests: a certificate authority that issues certificates
//! into a test's certificate directory, and a real TLS client that reports
//! which certificate and protocol the server gave it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A test CA; clients that trust it verify the server's certificates for real.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate as written to disk.
pub struct IssuedCert {
    pub der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "canto test CA");
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (the first is also the CN), valid now.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        self.issue_valid(names, false)
    }

    /// A certificate whose validity ended in 2020.
    pub fn issue_expired(&self, names: &[&str]) -> IssuedCert {
        self.issue_valid(names, true)
    }

    fn issue_valid(&self, names: &[&str], expired: bool) -> IssuedCert {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign certificate");
        IssuedCert { der: cert.der().to_vec(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

impl IssuedCert {
    /// Writes the certificate and key (creating directories); the same
    /// path for both writes one combined file.
    pub fn write(&self, cert_path: &Path, key_path: &Path) {
        for path in [cert_path, key_path] {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create certificate directory");
            }
        }
        if cert_path == key_path {
            std::fs::write(cert_path, format!("{}{}", self.cert_pem, self.key_pem)).expect("write pem");
        } else {
            std::fs::write(key_path, &self.key_pem).expect("write key");
            std::fs::write(cert_path, &self.cert_pem).expect("write certificate");
        }
    }
}

/// Accepts any certificate, so a test can see which one it was offered
/// (including for clients that send no SNI).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a TLS client should check the server.
pub enum Trust<'a> {
    /// Verify the chain and name against this CA.
    Ca(&'a TestCa),
    /// Accept whatever is offered.
    Anything,
}

/// An open TLS connection and what was negotiated.
pub struct TlsConnection {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    /// The leaf certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

/// Connects to `addr`, sending `sni` as the server name (none when
/// `None`), offering `alpn`.
pub async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    trust: Trust<'_>,
    alpn: &[&[u8]],
) -> Result<TlsConnection, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match trust {
        Trust::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).map_err(|e| e.to_string())?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // An IP address as the server name makes rustls send no SNI.
    let server_name = match sni {
        Some(name) => ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    let peer_cert = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    Ok(TlsConnection { stream, peer_cert, alpn })
}

/// The leaf certificate `addr` presents to a client asking for `sni`.
pub async fn served_cert(addr: SocketAddr, sni: Option<&str>) -> Result<Vec<u8>, String> {
    Ok(connect(addr, sni, Trust::Anything, &[]).await?.peer_cert)
}

/// A client on one TLS connection, speaking whatever ALPN chose.
pub enum HttpsClient {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl HttpsClient {
    pub async fn open(connection: TlsConnection) -> HttpsClient {
        let io = TokioIo::new(connection.stream);
        if connection.alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    eprintln!("https client (h2): {error}");
                }
            });
            HttpsClient::Http2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("http/1.1 handshake");
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    eprintln!("https client (http/1.1): {error:?}");
                }
            });
            HttpsClient::Http1(sender)
        }
    }

    /// GET `path` from `host`: (status, HTTP version, body).
    pub async fn get(&mut self, host: &str, path: &str) -> Result<(u16, hyper::Version, String), String> {
        let (status, version, _, body) = self.send("GET", host, path, &[]).await?;
        Ok((status, version, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `method` `path` on `host` with `headers`: (status, HTTP version,
    /// response headers, body).
    pub async fn send(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, hyper::Version, hyper::HeaderMap, Bytes), String> {
        let mut request = match self {
            HttpsClient::Http1(_) => hyper::Request::builder().uri(path).header("host", host),
            HttpsClient::Http2(_) => hyper::Request::builder().uri(format!("https://{host}{path}")),
        }
        .method(method);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        // Waiting until the connection is ready: HTTP/1.1's is not until
        // it has finished with the previous response.
        let response = match self {
            HttpsClient::Http1(sender) => match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(error) => Err(error),
            },
            HttpsClient::Http2(sender) => match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(error) => Err(error),
            },
        }
        .map_err(|e| e.to_string())?;
        let (status, version, headers) = (response.status().as_u16(), response.version(), response.headers().clone());
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, version, headers, body))
    }
}

//! The TLS handshake on an https port: ALPN offers `h2` and `http/1.1`; a
//! client whose ALPN list names neither (an XMPP client probing port 5281
//! with only `xmpp-client`, say) still completes the handshake, without
//! ALPN, rather than getting fatal alert 120 (`no_application_protocol`).
//! Prosody negotiates no ALPN at all and completes such handshakes; the
//! client then learns what the port speaks from the HTTP/1.1 it gets.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

/// The protocols an https port serves, by preference.
const SERVED_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Accepts TLS on one https port.
#[derive(Clone)]
pub struct HttpsAcceptor {
    /// For clients that offer no ALPN or one of [`SERVED_PROTOCOLS`].
    with_alpn: Arc<ServerConfig>,
    /// The same certificates, negotiating no application protocol.
    without_alpn: Arc<ServerConfig>,
}

impl HttpsAcceptor {
    pub fn new(config: ServerConfig) -> Self {
        let mut with_alpn = config.clone();
        with_alpn.alpn_protocols = SERVED_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        let mut without_alpn = config;
        without_alpn.alpn_protocols.clear();
        Self { with_alpn: Arc::new(with_alpn), without_alpn: Arc::new(without_alpn) }
    }

    /// Runs the handshake, choosing the set-up by the client's ALPN offer.
    pub async fn accept<IO>(&self, stream: IO) -> std::io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
        let speaks_ours = match start.client_hello().alpn() {
            None => true,
            Some(mut offered) => offered.any(|protocol| SERVED_PROTOCOLS.contains(&protocol)),
        };
        let config = if speaks_ours { &self.with_alpn } else { &self.without_alpn };
        start.into_stream(Arc::clone(config)).await
    }
}

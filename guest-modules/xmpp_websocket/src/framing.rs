//! RFC 7395's framing over the server's stream: the stream header becomes
//! `<open/>`, its end `<close/>`, each top-level element one message; and
//! the client's `<open/>`/`<close/>` become the stream's header and end.

use xmpp_stream::{attribute, attributes, escape, stream_header, tag_end};

pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// `<open/>` for the client, from the server's stream header.
pub fn open_for_client(attributes: &[(String, String)]) -> String {
    let mut open = format!("<open xmlns='{FRAMING}'");
    for name in ["from", "id", "version", "xml:lang"] {
        if let Some(value) = attribute(attributes, name) {
            open += &format!(" {name}='{}'", escape(value));
        }
    }
    open + "/>"
}

/// `<close/>` for the client.
pub fn close_for_client() -> String {
    format!("<close xmlns='{FRAMING}'/>")
}

/// What the client's message means for the server's stream.
pub enum FromClient {
    /// `<open/>`: a stream header to send (a new stream, or a restart).
    Open(String),
    /// `<close/>`: the stream's end.
    Close,
    /// A stanza or other element, sent as it is.
    Element,
}

/// Reads a client message; `host` is the stream's `to` when it names none.
pub fn from_client(message: &str, host: &str) -> FromClient {
    let message = message.trim_start();
    if !message.contains(FRAMING) {
        return FromClient::Element;
    }
    if message.starts_with("<close") {
        return FromClient::Close;
    }
    if !message.starts_with("<open") {
        return FromClient::Element;
    }
    let attributes = attributes(&message[..tag_end(message).unwrap_or(message.len())]);
    let to = attribute(&attributes, "to").unwrap_or(host);
    let version = attribute(&attributes, "version").unwrap_or("1.0");
    let others: Vec<(&str, &str)> =
        ["from", "xml:lang"].into_iter().filter_map(|name| Some((name, attribute(&attributes, name)?))).collect();
    FromClient::Open(stream_header(to, version, &others))
}

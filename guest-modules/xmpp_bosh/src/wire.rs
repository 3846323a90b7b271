//! BOSH's `<body/>` wrapper (XEP-0124, XEP-0206): reading a client's
//! request, and writing the connection manager's answers.

use xmpp_stream::{Piece, attribute, attributes, escape, tag_end};

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const STREAMS: &str = xmpp_stream::STREAMS;
const XBOSH: &str = "urn:xmpp:xbosh";
/// Prefixes a wrapper may declare (each is looked for in every child).
const MAX_PREFIXES: usize = 8;

/// A client's request: the wrapper's attributes and the elements it carries.
pub struct Request {
    pub attributes: Vec<(String, String)>,
    /// Top-level children, each standing alone (namespaces declared).
    pub payload: Vec<String>,
}

impl Request {
    pub fn get(&self, name: &str) -> Option<&str> {
        attribute(&self.attributes, name)
    }

    pub fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.trim().parse().ok()
    }

    pub fn terminates(&self) -> bool {
        self.get("type") == Some("terminate")
    }

    /// `xmpp:restart='true'` (XEP-0206 §5): restart the stream after SASL.
    pub fn restarts(&self) -> bool {
        matches!(self.get("xmpp:restart"), Some("true" | "1"))
    }
}

/// Reads a request body; `None` when it is not one `<body>` element.
pub fn read(text: &str) -> Option<Request> {
    let text = text.trim_start_matches('\u{feff}');
    let start = text.find("<body")?;
    if text[..start].contains('<') && !text[..start].trim_start().starts_with("<?") {
        return None;
    }
    let head_end = start + tag_end(&text[start..])?;
    let head = &text[start..head_end];
    if !head[5..].starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>') {
        return None;
    }
    let attributes = attributes(head);
    // As Prosody's parser: the wrapper is BOSH's, and declares few prefixes.
    let prefixes = attributes.iter().filter(|(name, _)| name.starts_with("xmlns:")).count();
    if attribute(&attributes, "xmlns") != Some(HTTPBIND) || prefixes > MAX_PREFIXES {
        return None;
    }
    if !head.ends_with("/>") && !text[head_end..].trim_end().ends_with("</body>") {
        return None;
    }
    let inner = if head.ends_with("/>") {
        ""
    } else {
        let close = head_end + text[head_end..].rfind("</body>")?;
        &text[head_end..close]
    };
    let (pieces, taken) = xmpp_stream::cut(inner);
    if !inner[taken..].trim().is_empty() {
        return None;
    }
    // Prefixes the wrapper declares, carried onto the children that use them.
    let declared: Vec<(&str, &str)> = attributes
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix("xmlns:")?, value.as_str())))
        .filter(|(prefix, _)| !matches!(*prefix, "xmpp" | "stream"))
        .collect();
    let mut payload = Vec::new();
    for piece in pieces {
        let Piece::Element(element) = piece else { return None };
        payload.push(standing_alone(&element, &declared));
    }
    Some(Request { attributes, payload })
}

/// A child of the wrapper as an element of the XMPP stream: the wrapper's
/// namespace is the stream's `jabber:client` (as Prosody reads it), and
/// prefixes declared on the wrapper are declared on the child.
fn standing_alone(element: &str, declared: &[(&str, &str)]) -> String {
    let head_end = tag_end(element).unwrap_or(element.len());
    let name_end = element.find(|c: char| c.is_whitespace() || c == '/' || c == '>').unwrap_or(element.len());
    let head = &element[..head_end];
    let mut extra = String::new();
    for (prefix, uri) in declared {
        if element.contains(&format!("{prefix}:")) && !head.contains(&format!("xmlns:{prefix}=")) {
            extra += &format!(" xmlns:{prefix}='{}'", escape(uri));
        }
    }
    // The wrapper's namespace, declared on the child itself, is the stream's.
    let head = head.replacen(&format!(" xmlns='{HTTPBIND}'"), "", 1).replacen(&format!(" xmlns=\"{HTTPBIND}\""), "", 1);
    format!("{}{extra}{}{}", &head[..name_end], &head[name_end..], &element[head_end..])
}

/// An answer's wrapper around `payload`.
pub fn answer(sid: &str, payload: &str) -> String {
    format!("<body xmlns='{HTTPBIND}' xmlns:stream='{STREAMS}' sid='{sid}'>{payload}</body>")
}

/// What Prosody answers a new session with: its parameters, then the
/// stream's features.
pub struct Created<'a> {
    pub sid: &'a str,
    pub host: &'a str,
    pub wait: u64,
    pub inactivity: u64,
    pub polling: u64,
}

pub fn created(session: &Created, payload: &str) -> String {
    let Created { sid, host, wait, inactivity, polling } = session;
    format!(
        "<body xmlns='{HTTPBIND}' xmlns:stream='{STREAMS}' sid='{sid}' authid='{sid}' requests='2' hold='1' \
         inactivity='{inactivity}' polling='{polling}' wait='{wait}' secure='true' ver='1.6' from='{}' \
         xmlns:xmpp='{XBOSH}' xmpp:version='1.0'>{payload}</body>",
        escape(host)
    )
}

/// The session's end, with the condition (XEP-0124 §17) when it is an error.
pub fn terminate(condition: Option<&str>, payload: &str) -> String {
    let condition = condition.map(|c| format!(" condition='{c}'")).unwrap_or_default();
    if payload.is_empty() {
        format!("<body xmlns='{HTTPBIND}' xmlns:stream='{STREAMS}' type='terminate'{condition}/>")
    } else {
        format!("<body xmlns='{HTTPBIND}' xmlns:stream='{STREAMS}' type='terminate'{condition}>{payload}</body>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrapper_and_its_children() {
        let body = "<body rid='5' sid='abc' xmlns='http://jabber.org/protocol/httpbind'>\
                    <message xmlns='jabber:client' to='a@b'><body>hi</body></message>\
                    <iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq></body>";
        let request = read(body).expect("a body");
        assert_eq!(request.get("sid"), Some("abc"));
        assert_eq!(request.number("rid"), Some(5));
        assert_eq!(request.payload.len(), 2);
        assert!(request.payload[0].starts_with("<message xmlns='jabber:client'"));
        assert!(request.payload[1].ends_with("</iq>"));
    }

    #[test]
    fn an_empty_wrapper_carries_nothing() {
        let request =
            read("<body rid='1' xmlns='http://jabber.org/protocol/httpbind' xmpp:restart='true'/>").expect("a body");
        assert!(request.payload.is_empty());
        assert!(request.restarts());
    }

    #[test]
    fn declared_prefixes_travel_with_the_children() {
        let request =
            read("<body xmlns='http://jabber.org/protocol/httpbind' xmlns:x='urn:x'><x:a/></body>").expect("a body");
        assert_eq!(request.payload, ["<x:a xmlns:x='urn:x'/>"]);
    }

    #[test]
    fn the_wrappers_namespace_on_a_child_is_the_streams() {
        let request = read("<body xmlns='http://jabber.org/protocol/httpbind'><presence xmlns='http://jabber.org/protocol/httpbind'><x xmlns='http://jabber.org/protocol/httpbind'/></presence></body>").expect("a body");
        assert_eq!(request.payload, ["<presence><x xmlns='http://jabber.org/protocol/httpbind'/></presence>"]);
    }

    #[test]
    fn anything_else_is_not_a_request() {
        assert!(read("").is_none());
        assert!(read("<iq/>").is_none());
        assert!(read("<body rid='1'><message>").is_none());
        assert!(read("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><message/>").is_none());
        assert!(read("<body rid='1'/>").is_none(), "not in BOSH's namespace");
        assert!(read("<bodyguard xmlns='http://jabber.org/protocol/httpbind'/>").is_none());
    }
}

//! XMPP's client stream as the web transports see it: the server's stream
//! cut incrementally into its pieces (the header, each top-level element,
//! the end), each element made to stand alone (declaring the namespaces it
//! uses), and the stream header a bridge sends. What does not yet make a
//! whole piece waits for the next read.

pub const STREAMS: &str = "http://etherx.jabber.org/streams";

/// One piece of the server's stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// `<stream:stream …>`, with its attributes.
    Open(Vec<(String, String)>),
    /// `</stream:stream>`.
    Close,
    /// A whole top-level element, as the server wrote it.
    Element(String),
}

/// Cuts whole pieces off the front of `buffer`; returns them and how many
/// bytes they took (the rest is an unfinished piece).
pub fn cut(buffer: &str) -> (Vec<Piece>, usize) {
    let mut pieces = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buffer[at..];
        let Some(start) = rest.find('<') else {
            // Whitespace (keepalives) between elements.
            at = buffer.len();
            break;
        };
        let tag = &rest[start..];
        let taken = if tag.starts_with("<?") {
            tag.find("?>").map(|end| end + 2)
        } else if tag.starts_with("<!--") {
            tag.find("-->").map(|end| end + 3)
        } else if tag.starts_with("</stream:stream") {
            tag.find('>').map(|end| {
                pieces.push(Piece::Close);
                end + 1
            })
        } else if tag.starts_with("<stream:stream") {
            tag_end(tag).inspect(|&end| pieces.push(Piece::Open(attributes(&tag[..end]))))
        } else {
            element_end(tag).inspect(|&end| pieces.push(Piece::Element(tag[..end].to_string())))
        };
        match taken {
            Some(length) => at += start + length,
            None => {
                at += start;
                break;
            }
        }
    }
    (pieces, at)
}

/// Where the tag that `text` begins with ends (after its `>`), minding quotes.
pub fn tag_end(text: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// Where the element that `text` begins with ends, if it is whole.
pub fn element_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    loop {
        let next = at + text[at..].find('<')?;
        let rest = &text[next..];
        let skip = |open: &str, close: &str| {
            rest.strip_prefix(open).and_then(|r| r.find(close)).map(|e| e + open.len() + close.len())
        };
        if rest.starts_with("<!--") {
            at = next + skip("<!--", "-->")?;
        } else if rest.starts_with("<![CDATA[") {
            at = next + skip("<![CDATA[", "]]>")?;
        } else if rest.starts_with("<?") {
            at = next + skip("<?", "?>")?;
        } else if rest.starts_with("</") {
            at = next + rest.find('>')? + 1;
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return Some(at);
            }
        } else {
            let end = tag_end(rest)?;
            at = next + end;
            if !rest[..end].ends_with("/>") {
                depth += 1;
            } else if depth == 0 {
                return Some(at);
            }
        }
    }
}

/// The attributes of a start tag, `name='value'` or `name="value"`.
pub fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let body = tag.trim_start_matches('<').trim_end_matches('>').trim_end_matches('/');
    let mut rest = match body.find(char::is_whitespace) {
        Some(space) => &body[space..],
        None => "",
    };
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else { break };
        let Some(end) = after[1..].find(quote) else { break };
        found.push((name, unescape(&after[1..1 + end])));
        rest = &after[end + 2..];
    }
    found
}

fn unescape(value: &str) -> String {
    value.replace("&apos;", "'").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

pub fn escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('\'', "&apos;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Whether the server's features demand STARTTLS and offer nothing else
/// (Prosody's `c2s_require_encryption` on a plain port): over the bridge no
/// one can log in then.
pub fn demands_starttls(element: &str) -> bool {
    element.starts_with("<stream:features")
        && element.contains("<starttls")
        && element.contains("<required")
        && !element.contains("<mechanisms")
        && !element.contains("<bind")
}

/// A top-level element of the server's stream for a web client: with the
/// namespaces it needs declared on itself, and without `<starttls/>` among
/// the features (the web transport's own TLS is the connection's: RFC 7395
/// §3.4, XEP-0206 §4).
pub fn element_for_client(element: &str) -> String {
    let name_end = element.find(|c: char| c.is_whitespace() || c == '/' || c == '>').unwrap_or(element.len());
    let name = &element[1..name_end];
    let head = &element[..tag_end(element).unwrap_or(element.len())];
    let declaration = if name.starts_with("stream:") {
        (!head.contains("xmlns:stream=")).then(|| format!(" xmlns:stream='{STREAMS}'"))
    } else {
        (!head.contains("xmlns=")).then(|| " xmlns='jabber:client'".to_string())
    };
    let mut out = match declaration {
        Some(declaration) => format!("{}{declaration}{}", &element[..name_end], &element[name_end..]),
        None => element.to_string(),
    };
    if name == "stream:features" {
        out = without_element(&out, "<starttls");
    }
    out
}

/// `text` without the element beginning with `start` (its first one).
fn without_element(text: &str, start: &str) -> String {
    let Some(at) = text.find(start) else { return text.to_string() };
    match element_end(&text[at..]) {
        Some(length) => format!("{}{}", &text[..at], &text[at + length..]),
        None => text.to_string(),
    }
}

/// The stream header a bridge opens (or restarts) the server's stream with.
pub fn stream_header(to: &str, version: &str, others: &[(&str, &str)]) -> String {
    let mut header = format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS}'");
    header += &format!(" to='{}' version='{}'", escape(to), escape(version));
    for (name, value) in others {
        header += &format!(" {name}='{}'", escape(value));
    }
    header + ">"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_cut_into_whole_pieces_and_the_rest_waits() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a1' from='x.test'>\
                      <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>\
                      <message to='a@x.test'><body>1 &lt; 2 &amp; \"q\" '/&gt;'</body></message> <iq id='half'>";
        let (pieces, taken) = cut(stream);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert!(matches!(&pieces[0], Piece::Open(attributes) if attribute(attributes, "id") == Some("a1")));
        assert!(
            matches!(&pieces[1], Piece::Element(e) if e.starts_with("<stream:features>") && e.ends_with("</stream:features>"))
        );
        assert!(matches!(&pieces[2], Piece::Element(e) if e.ends_with("</message>")));
        assert_eq!(stream[taken..].trim(), "<iq id='half'>");
        let (pieces, _) = cut("<iq id='half'><query xmlns='jabber:iq:roster'/></iq></stream:stream>");
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1], Piece::Close);
    }

    #[test]
    fn a_quote_or_cdata_does_not_end_an_element_early() {
        let (pieces, _) = cut("<a b='>'><![CDATA[</a>]]></a>");
        assert_eq!(pieces, [Piece::Element("<a b='>'><![CDATA[</a>]]></a>".into())]);
    }

    #[test]
    fn elements_for_a_web_client_declare_their_namespaces_and_lose_starttls() {
        assert_eq!(element_for_client("<message to='a'/>"), "<message xmlns='jabber:client' to='a'/>");
        let features = element_for_client(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms/></stream:features>",
        );
        assert_eq!(features, format!("<stream:features xmlns:stream='{STREAMS}'><mechanisms/></stream:features>"));
    }

    #[test]
    fn a_server_that_only_offers_starttls_is_recognised() {
        let only = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
        assert!(demands_starttls(only));
        assert!(!demands_starttls("<stream:features><mechanisms/></stream:features>"));
    }

    #[test]
    fn the_stream_header_escapes_what_the_client_chose() {
        let header = stream_header("x'.test", "1.0", &[("xml:lang", "en")]);
        assert!(header.ends_with(" to='x&apos;.test' version='1.0' xml:lang='en'>"), "{header}");
    }
}

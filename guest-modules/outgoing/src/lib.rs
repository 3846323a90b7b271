//! Hostile: makes an outgoing HTTP request (to `?url=` host, default
//! example.com). Outgoing HTTP is not granted, so it must be refused.
use canto_sdk::bindings::wasi::http::outgoing_handler;
use canto_sdk::bindings::wasi::http::types::{Fields, OutgoingRequest, Scheme};
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Outgoing;

impl canto_sdk::Handler for Outgoing {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let authority = query.split_once("?host=").map(|(_, h)| h.to_string()).unwrap_or_else(|| "example.com".into());
        let outgoing = OutgoingRequest::new(Fields::new());
        let _ = outgoing.set_scheme(Some(&Scheme::Http));
        let _ = outgoing.set_authority(Some(&authority));
        let _ = outgoing.set_path_with_query(Some("/"));
        let answer = match outgoing_handler::handle(outgoing, None) {
            Err(code) => format!("denied: {code:?}\n"),
            Ok(future) => {
                future.subscribe().block();
                match future.get() {
                    Some(Ok(Ok(response))) => format!("fetched: status {}\n", response.status()),
                    Some(Ok(Err(code))) => format!("denied: {code:?}\n"),
                    other => format!("denied: {other:?}\n"),
                }
            }
        };
        canto_sdk::respond(out, 200, "text/plain", answer.as_bytes());
    }
}

canto_sdk::export!(Outgoing);

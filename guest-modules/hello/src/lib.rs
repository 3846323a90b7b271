//! `http_hello`: answers `hello from <host>` as text/plain.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Hello;

impl canto_sdk::Handler for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let body = format!("hello from {}\n", canto_sdk::context::host());
        canto_sdk::respond(out, 200, "text/plain; charset=utf-8", body.as_bytes());
    }
}

canto_sdk::export!(Hello);

//! `http_trap`: a broken module for tests. `/…/panic` traps before
//! answering; `/…/silent` returns without ever setting a response; anything
//! else answers `alive`, so a test can show the next request still works.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Trap;

impl canto_sdk::Handler for Trap {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = canto_sdk::path(&request);
        if path.ends_with("/panic") {
            panic!("http_trap was asked to trap");
        }
        if path.ends_with("/silent") {
            return;
        }
        canto_sdk::respond(out, 200, "text/plain", b"alive\n");
    }
}

canto_sdk::export!(Trap);

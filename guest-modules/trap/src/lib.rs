//! `http_trap`: a broken module for tests. `/…/panic` traps before
//! answering; `/…/silent` returns without ever setting a response; `/…/count`
//! answers `served <n>`, the requests this instance has handled (1 unless
//! instances are reused); `/…/burn` computes for 600 ms, then answers;
//! `/…/hold` keeps the response slot (leaks it) and returns without answering;
//! anything else answers `alive`, so a test can show the next request still
//! works.
use std::sync::atomic::{AtomicU32, Ordering};

use canto_sdk::{IncomingRequest, ResponseOutparam};

/// Requests this instance has handled: state that survives between
/// requests only when the server reuses the instance.
static SERVED: AtomicU32 = AtomicU32::new(0);

struct Trap;

impl canto_sdk::Handler for Trap {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = canto_sdk::path(&request);
        if path.ends_with("/burn") {
            let started = std::time::Instant::now();
            let mut n: u64 = 0;
            while started.elapsed() < std::time::Duration::from_millis(600) {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            canto_sdk::respond(out, 200, "text/plain", b"burnt\n");
            return;
        }
        if path.ends_with("/count") {
            canto_sdk::respond(out, 200, "text/plain", format!("served {served}\n").as_bytes());
            return;
        }
        if path.ends_with("/panic") {
            panic!("http_trap was asked to trap");
        }
        if path.ends_with("/hold") {
            // A handle the guest never drops: only dropping the instance
            // ends this request.
            std::mem::forget(out);
            return;
        }
        if path.ends_with("/silent") {
            return;
        }
        canto_sdk::respond(out, 200, "text/plain", b"alive\n");
    }
}

canto_sdk::export!(Trap);

//! Hostile: answers one byte at a time with pauses, forever. It holds a
//! connection and an instance; the wall-clock deadline must end it.
use canto_sdk::bindings::wasi::clocks::monotonic_clock;
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Trickle;

impl canto_sdk::Handler for Trickle {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let (body, stream) = canto_sdk::start_response(out, 200, "text/plain");
        loop {
            if canto_sdk::write_all(&stream, b".").is_err() || stream.flush().is_err() {
                break;
            }
            monotonic_clock::subscribe_duration(100_000_000).block();
        }
        canto_sdk::finish(body, stream);
    }
}

canto_sdk::export!(Trickle);

//! `http_echo`: streams the request body back as it arrives.
//!
//! Never holds more than one chunk, so it proves bodies stream both ways.
use canto_sdk::{IncomingRequest, ResponseOutparam, StreamError};

struct Echo;

const CHUNK: u64 = 64 * 1024;

impl canto_sdk::Handler for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let Ok(incoming) = request.consume() else {
            return canto_sdk::respond(out, 500, "text/plain", b"no request body\n");
        };
        let Ok(input) = incoming.stream() else {
            return canto_sdk::respond(out, 500, "text/plain", b"no request body stream\n");
        };
        let (body, output) = canto_sdk::start_response(out, 200, "application/octet-stream");
        loop {
            match input.blocking_read(CHUNK) {
                Ok(chunk) => {
                    if canto_sdk::write_all(&output, &chunk).is_err() {
                        return; // the client went away
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => return,
            }
        }
        canto_sdk::finish(body, output);
    }
}

canto_sdk::export!(Echo);

//! `http_echo`: streams the request body back as it arrives.
//!
//! Never holds more than one chunk, so it proves bodies stream both ways.
//! With `?whole` it reads the whole body before it answers, as a module
//! that needs all of an upload does.
use canto_sdk::{IncomingRequest, ResponseOutparam, StreamError};

struct Echo;

const CHUNK: u64 = 64 * 1024;

impl canto_sdk::Handler for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let whole = request.path_with_query().is_some_and(|p| p.ends_with("?whole"));
        let Ok(incoming) = request.consume() else {
            return canto_sdk::respond(out, 500, "text/plain", b"no request body\n");
        };
        let Ok(input) = incoming.stream() else {
            return canto_sdk::respond(out, 500, "text/plain", b"no request body stream\n");
        };
        if whole {
            let mut received = Vec::new();
            loop {
                match input.blocking_read(CHUNK) {
                    Ok(chunk) => received.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    // The server cut the body and answers for it.
                    Err(StreamError::LastOperationFailed(_)) => return,
                }
            }
            return canto_sdk::respond(out, 200, "application/octet-stream", &received);
        }
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

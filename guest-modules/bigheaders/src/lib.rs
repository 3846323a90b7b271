//! Hostile: answers with an enormous header block (`/huge`) or an invalid
//! header (`/invalid`). The host must refuse both without harm.
use canto_sdk::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct BigHeaders;

impl canto_sdk::Handler for BigHeaders {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = canto_sdk::path(&request);
        let headers = Fields::new();
        if path.ends_with("/invalid") {
            // Rejected by the host's header validation; send it regardless.
            let _ = headers.append("bad header\r\nname", b"x");
            let _ = headers.append("x-bad-value", b"line\r\nbreak");
        } else {
            let value = vec![b'a'; 8192];
            for i in 0..10_000 {
                if headers.append(&format!("x-filler-{i}"), &value).is_err() {
                    break;
                }
            }
        }
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let _ = OutgoingBody::finish(body, None);
    }
}

canto_sdk::export!(BigHeaders);

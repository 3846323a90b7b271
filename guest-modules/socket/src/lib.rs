//! Hostile: opens a raw TCP connection (to `?addr=`, default
//! 127.0.0.1:22). Sockets are not granted, so it must fail.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Socket;

impl canto_sdk::Handler for Socket {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let addr = query.split_once("?addr=").map(|(_, a)| a.to_string()).unwrap_or_else(|| "127.0.0.1:22".into());
        let answer = match std::net::TcpStream::connect(&addr) {
            Ok(_) => format!("connected to {addr}\n"),
            Err(error) => format!("denied: {error}\n"),
        };
        canto_sdk::respond(out, 200, "text/plain", answer.as_bytes());
    }
}

canto_sdk::export!(Socket);

//! Hostile: tries to read files it was not given. `?path=<p>` reads `<p>`
//! and answers `read <n> bytes` or `denied: <error>`, so a test can probe
//! `/etc/passwd`, `<grant>/../x` and symlinks out of a granted directory.
use canto_sdk::{IncomingRequest, ResponseOutparam};

struct Escape;

impl canto_sdk::Handler for Escape {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let path = query.split_once("?path=").map(|(_, p)| p.to_string()).unwrap_or_else(|| "/etc/passwd".into());
        let answer = match std::fs::read(&path) {
            Ok(bytes) => format!("read {} bytes\n", bytes.len()),
            Err(error) => format!("denied: {error}\n"),
        };
        canto_sdk::respond(out, 200, "text/plain", answer.as_bytes());
    }
}

canto_sdk::export!(Escape);

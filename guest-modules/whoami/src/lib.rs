//! `http_whoami`: what the server established about this request, as JSON.
//!
//! The debugging endpoint operators use to check proxy and vhost setups.
//! The fields are a contract shared by every language's whoami.
use canto_sdk::{IncomingRequest, ResponseOutparam, context};

struct Whoami;

impl canto_sdk::Handler for Whoami {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let answer = serde_json::json!({
            "host": context::host(),
            "method": canto_sdk::method_name(&request),
            "path": canto_sdk::path(&request),
            "base_path": context::base_path(),
            "base_url": context::base_url(),
            "ip": context::client_ip(),
            "secure": context::secure(),
        });
        canto_sdk::respond(out, 200, "application/json", answer.to_string().as_bytes());
    }
}

canto_sdk::export!(Whoami);

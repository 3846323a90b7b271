//! `http_routed`: the paths a module is given, as JSON, for the tests of
//! canto's path model: `path_with_query` (wasi:http: the routed path,
//! encoded once), `raw` (the client's own bytes, from
//! `context.raw-path-with-query`) and `base_path`.
use canto_sdk::{IncomingRequest, ResponseOutparam, context};

struct Paths;

impl canto_sdk::Handler for Paths {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let answer = serde_json::json!({
            "path_with_query": request.path_with_query(),
            "raw": context::raw_path_with_query(),
            "base_path": context::base_path(),
        });
        canto_sdk::respond(out, 200, "application/json", answer.to_string().as_bytes());
    }
}

canto_sdk::export!(Paths);

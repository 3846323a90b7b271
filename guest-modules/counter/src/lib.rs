//! `http_counter`: counters in a `wasi:keyvalue` store, for the tests and
//! the benchmark. The store is `counter_store` (default `default`), which
//! the operator must grant (`http_module_grants = { counter = { stores =
//! { "default" } } }`). Under its base path:
//!
//! - `POST /n/<name>` adds 1 (or `?by=<n>`) and answers the new value;
//!   `GET /n/<name>` answers the value (0 when absent); `PUT` sets the
//!   body as the value, `DELETE` removes it.
//! - `POST /append/<name>` appends the body to the value with
//!   compare-and-swap, retrying until no one else wrote in between.
//! - `GET /keys` lists every key, one per line (all pages).
//! - `POST /many` sets `key=value` lines in one batch; `GET /many?a,b`
//!   answers `key=value` (or `key absent`) lines for those keys.
//! - `GET /open/<store>` opens another store: 200, or 403 when not granted.
//! - `GET /none` answers without touching a store (the benchmark's
//!   baseline).
//!
//! A store that fails answers 503 with the error. A 200 means counted; a
//! 503 does not always mean "not counted": a call that timed out, or lost
//! its connection, may have been carried out all the same, so a client
//! retrying an increment after a 503 may count it twice.

use canto_sdk::keyvalue::{atomics, batch, store};
use canto_sdk::{IncomingRequest, ResponseOutparam, context};

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}
use metadata::exports::canto::http::metadata::ModuleInfo;

struct Counter;

fn text(out: ResponseOutparam, status: u16, body: &str) {
    canto_sdk::respond(out, status, "text/plain; charset=utf-8", body.as_bytes());
}

fn failed(out: ResponseOutparam, error: store::Error) {
    match error {
        store::Error::AccessDenied => text(out, 403, "store: access denied\n"),
        store::Error::NoSuchStore => text(out, 404, "store: no such store\n"),
        store::Error::Other(message) => text(out, 503, &format!("store: {message}\n")),
    }
}

/// Values and batches it accepts (the store has its own limits too).
const MAX_BODY: usize = 1 << 20;

fn body(request: IncomingRequest) -> Option<Vec<u8>> {
    canto_sdk::read_body(request, MAX_BODY)
}

fn open() -> Result<store::Bucket, store::Error> {
    let name = context::config_option("counter_store")
        .and_then(|json| json.trim().strip_prefix('"')?.strip_suffix('"').map(str::to_owned))
        .unwrap_or_else(|| "default".into());
    store::open(&name)
}

/// `POST /append/<name>`: read, append, swap; on a lost race try again
/// with the value the store holds now.
fn append(bucket: &store::Bucket, key: &str, suffix: &[u8]) -> Result<usize, store::Error> {
    let mut cas = atomics::Cas::new(bucket, key)?;
    loop {
        let mut value = cas.current()?.unwrap_or_default();
        value.extend_from_slice(suffix);
        let length = value.len();
        match atomics::swap(cas, &value) {
            Ok(()) => return Ok(length),
            Err(atomics::CasError::CasFailed(again)) => cas = again,
            Err(atomics::CasError::StoreError(error)) => return Err(error),
        }
    }
}

fn all_keys(bucket: &store::Bucket) -> Result<Vec<String>, store::Error> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor.as_deref())?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

fn handle(request: IncomingRequest, out: ResponseOutparam) -> Result<(), (ResponseOutparam, store::Error)> {
    let method = canto_sdk::method_name(&request);
    let full = request.path_with_query().unwrap_or_default();
    let (path, query) = full.split_once('?').unwrap_or((&full, ""));
    let base = context::base_path();
    let path = path.strip_prefix(base.trim_end_matches('/')).unwrap_or(path).to_string();
    let query = query.to_string();
    if path == "/none" {
        text(out, 200, "0\n");
        return Ok(());
    }
    if let Some(name) = path.strip_prefix("/open/") {
        return match store::open(name) {
            Ok(_) => {
                text(out, 200, &format!("opened {name}\n"));
                Ok(())
            }
            Err(error) => Err((out, error)),
        };
    }
    let bucket = match open() {
        Ok(bucket) => bucket,
        Err(error) => return Err((out, error)),
    };
    let step = |result: Result<String, store::Error>, out: ResponseOutparam| match result {
        Ok(answer) => {
            text(out, 200, &answer);
            Ok(())
        }
        Err(error) => Err((out, error)),
    };
    if let Some(key) = path.strip_prefix("/n/") {
        let result = match method.as_str() {
            "POST" => {
                let by = query.strip_prefix("by=").and_then(|n| n.parse().ok()).unwrap_or(1);
                atomics::increment(&bucket, key, by).map(|n| format!("{n}\n"))
            }
            "GET" => bucket.get(key).map(|value| match value {
                Some(value) => format!("{}\n", String::from_utf8_lossy(&value)),
                None => "0\n".into(),
            }),
            "PUT" => match body(request) {
                Some(value) => bucket.set(key, &value).map(|()| "stored\n".into()),
                None => return Ok(()),
            },
            "DELETE" => bucket.delete(key).map(|()| "deleted\n".into()),
            _ => {
                text(out, 405, "method not allowed\n");
                return Ok(());
            }
        };
        return step(result, out);
    }
    if let Some(key) = path.strip_prefix("/append/") {
        let Some(suffix) = body(request) else { return Ok(()) };
        return step(append(&bucket, key, &suffix).map(|n| format!("{n}\n")), out);
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/keys") => step(all_keys(&bucket).map(|keys| keys.iter().map(|k| format!("{k}\n")).collect()), out),
        ("POST", "/many") => {
            let Some(lines) = body(request) else { return Ok(()) };
            let pairs: Vec<(String, Vec<u8>)> = String::from_utf8_lossy(&lines)
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            step(batch::set_many(&bucket, &pairs).map(|()| format!("stored {}\n", pairs.len())), out)
        }
        ("GET", "/many") => {
            let keys: Vec<String> = query.split(',').filter(|k| !k.is_empty()).map(String::from).collect();
            let found = batch::get_many(&bucket, &keys).map(|values| {
                keys.iter()
                    .zip(values)
                    .map(|(key, value)| match value {
                        Some((_, value)) => format!("{key}={}\n", String::from_utf8_lossy(&value)),
                        None => format!("{key} absent\n"),
                    })
                    .collect()
            });
            step(found, out)
        }
        ("DELETE", "/many") => {
            let keys: Vec<String> = query.split(',').filter(|k| !k.is_empty()).map(String::from).collect();
            step(batch::delete_many(&bucket, &keys).map(|()| format!("deleted {}\n", keys.len())), out)
        }
        _ => {
            text(out, 404, "not found\n");
            Ok(())
        }
    }
}

impl canto_sdk::Handler for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        if let Err((out, error)) = handle(request, out) {
            failed(out, error);
        }
    }
}

impl metadata::exports::canto::http::metadata::Guest for Counter {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: None,
            cors: None,
            options: vec!["counter_store".into()],
            serve_bare_path: false,
            streaming_uploads: false,
        }
    }
}

canto_sdk::export!(Counter);
metadata::export!(Counter with_types_in metadata);

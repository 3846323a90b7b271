//! `http_tick`: a scheduled module for the tests. Each run appends a line
//! to `ticks` in the directory it was granted (`dirs_rw`, named by the
//! `env` grant `TICK_DIR`) and asks to
//! run again in `tick_interval` seconds (default 1); with `tick_fail` set
//! the run fails with a reason, with `tick_trap` it traps. A GET answers
//! `ticks=<n>`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "canto:http/scheduled-module",
    generate_all,
});

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use canto::http::context;
use canto::http::log::{Level, log};
use metadata::exports::canto::http::metadata::ModuleInfo;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Tick;

fn option(name: &str) -> Option<String> {
    context::config_option(name)
}

/// `$TICK_DIR/ticks` (the directory granted to it, named by an `env` grant).
fn ticks_file() -> Option<String> {
    Some(format!("{}/ticks", std::env::var("TICK_DIR").ok()?))
}

fn ticks() -> usize {
    ticks_file().and_then(|file| std::fs::read_to_string(file).ok()).map_or(0, |text| text.lines().count())
}

impl exports::canto::http::scheduled_handler::Guest for Tick {
    fn run() -> Result<u32, String> {
        if option("tick_trap").is_some() {
            unreachable!("asked to trap");
        }
        if option("tick_fail").is_some() {
            return Err("asked to fail".into());
        }
        let file = ticks_file().ok_or("no directory granted")?;
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str("tick\n");
        std::fs::write(&file, text).map_err(|e| format!("writing {file}: {e}"))?;
        log(Level::Info, &format!("tick {} on {}", ticks(), context::host()));
        Ok(option("tick_interval").and_then(|v| v.trim().parse().ok()).unwrap_or(1))
    }
}

impl exports::wasi::http::incoming_handler::Guest for Tick {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(format!("ticks={}\n", ticks()).as_bytes());
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

impl metadata::exports::canto::http::metadata::Guest for Tick {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: None,
            cors: None,
            options: ["tick_interval", "tick_fail", "tick_trap"].map(String::from).to_vec(),
            serve_bare_path: false,
        }
    }
}

export!(Tick);
metadata::export!(Tick with_types_in metadata);

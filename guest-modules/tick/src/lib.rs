//! `http_tick`: a scheduled module for the tests. Each run appends a line
//! to `ticks` in the directory it was granted (`dirs_rw`, named by the
//! `env` grant `TICK_DIR`) and asks to
//! run again in `tick_interval` seconds (default 1); with `tick_fail` set
//! the run fails with a reason, with `tick_trap` it traps. A GET answers
//! `ticks=<n>`.

mod scheduled {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/scheduled-provider",
    });
}

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use canto_sdk::log::{Level, log};
use canto_sdk::{IncomingRequest, ResponseOutparam, context};
use metadata::exports::canto::http::metadata::ModuleInfo;

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

impl scheduled::exports::canto::http::scheduled_handler::Guest for Tick {
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

impl canto_sdk::Handler for Tick {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        canto_sdk::respond(out, 200, "text/plain", format!("ticks={}\n", ticks()).as_bytes());
    }
}

impl metadata::exports::canto::http::metadata::Guest for Tick {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: None,
            cors: None,
            options: ["tick_interval", "tick_fail", "tick_trap"].map(String::from).to_vec(),
            serve_bare_path: false,
            streaming_uploads: false,
        }
    }
}

canto_sdk::export!(Tick);
metadata::export!(Tick with_types_in metadata);
scheduled::export!(Tick with_types_in scheduled);

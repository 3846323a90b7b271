//! `http_options`: declares metadata (a default path of `/opts` that it
//! serves without a trailing slash, and one config option, `greeting`) and answers with the options it can see:
//! `greeting` as declared, and `secret`, which it did not declare and so
//! must read as unset.
use canto_sdk::{IncomingRequest, ResponseOutparam, context};

mod metadata {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "canto:http/metadata-provider",
    });
}

use metadata::exports::canto::http::metadata::{Guest, ModuleInfo};

struct Options;

impl canto_sdk::Handler for Options {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let shown = |value: Option<String>| value.unwrap_or_else(|| "unset".into());
        canto_sdk::log::log(canto_sdk::log::Level::Info, "options requested");
        println!("options requested, on stdout");
        let body = format!(
            "greeting={}\nsecret={}\n",
            shown(context::config_option("greeting")),
            shown(context::config_option("secret")),
        );
        canto_sdk::respond(out, 200, "text/plain", body.as_bytes());
    }
}

impl Guest for Options {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            default_path: Some("/opts".into()),
            cors: None,
            options: vec!["greeting".into()],
            serve_bare_path: true,
            streaming_uploads: false,
        }
    }
}

canto_sdk::export!(Options);
metadata::export!(Options with_types_in metadata);

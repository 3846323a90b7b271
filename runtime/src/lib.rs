//! canto: Prosody's HTTP server, with WebAssembly component modules.
//!
//! The native server does what an operator configures (listeners, virtual
//! hosts, path mounting) and hands each request to the module mounted there,
//! a WebAssembly component called through `wasi:http` and canto's WIT.
//!
//! Layout, one concern per module:
//! - [`config`]: reads `prosody.cfg.lua` into a typed, validated config.
//! - [`server`]: binds listeners, accepts connections, graceful shutdown,
//!   and the request pipeline (host → route → module → response).
//! - [`vhost`]: which configured host a request is for.
//! - [`tls`]: HTTPS certificates, chosen per name (SNI) as Prosody finds them.
//! - [`proxy`]: trusted reverse proxies: the real client IP and scheme.
//! - [`cors`]: CORS headers and preflight answers.
//! - [`routing`]: which module on a host serves a path.
//! - [`wasm`]: the wasm host: engine, module loading, per-request sandboxes.
//! - [`metrics`]: the server's own counters, for the openmetrics module.
//! - [`error_page`]: every response the server itself decides.
//! - [`body_limit`]: request and response bodies with a byte cap.
//! - [`body_pace`]: the minimum rate a client must keep up while a body waits on it.
//! - [`builtin`]: the demo modules compiled into the binary.
//! - [`check`]: the `canto check config` and `canto check certs` reports.
//! - [`telemetry`]: log output.
#![forbid(unsafe_code)]

pub mod body_limit;
pub mod body_pace;
pub mod builtin;
pub mod check;
pub mod config;
pub mod cors;
pub mod error_page;
pub mod kv;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod sendfile;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod vhost;
pub mod wasm;

pub use config::Config;
pub use server::Server;

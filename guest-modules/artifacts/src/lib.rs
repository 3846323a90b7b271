//! The guest modules in `guest-modules/`, built from source.
//!
//! The build script compiles the guest workspace for `wasm32-wasip2` on every
//! build where a guest, the SDK or `wit/` changed, so no prebuilt `.wasm` is
//! ever committed. Constants name each module's file; `BUILT_IN` embeds the
//! modules built into the server (the demo modules and the XMPP transports).

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

//! Modules built into the binary, compiled from `guest-modules/` at build
//! time: the demo modules the built-in default config serves, and
//! Prosody's XMPP transports under Prosody's names (`websocket`).

/// Names of the built-in modules, e.g. `http_hello`, `websocket`.
pub fn names() -> Vec<&'static str> {
    canto_guests::BUILT_IN.iter().map(|(name, _)| *name).collect()
}

/// The component bytes of a built-in module.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    canto_guests::BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

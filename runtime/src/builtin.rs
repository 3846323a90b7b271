//! Modules built into the binary: the demo modules the built-in default
//! config serves, compiled from `guest-modules/` at build time.

/// Names of the built-in modules, e.g. `http_hello`.
pub fn names() -> Vec<&'static str> {
    canto_guests::DEMO.iter().map(|(name, _)| *name).collect()
}

/// The component bytes of a built-in module.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    canto_guests::DEMO.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

//! canto modules written in Python, JavaScript and C, built from source by
//! `build.rs` with pinned tools (componentize-py, componentize-js, clang +
//! wit-bindgen's C generator), for the tests that run every language behind
//! one server.
//!
//! A language whose toolchain is missing is not a build error (the rest of
//! the workspace must still build); it is listed in [`PROBLEMS`], and the
//! tests fail on it. `scripts/test` installs everything.

/// A module built from another language.
#[derive(Clone, Copy, Debug)]
pub struct LanguageModule {
    /// "python", "javascript" or "c".
    pub language: &'static str,
    /// The module name, e.g. `http_whoami_py`.
    pub name: &'static str,
    /// The component file.
    pub path: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/languages.rs"));

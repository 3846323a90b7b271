//! What guest modules that serve stored bytes share (`files`,
//! `file_share`): byte ranges (RFC 9110 §14), validators with the
//! conditional requests that use them (§8.8, §13), a response that streams
//! an open file (`reply`), and reading module options as Prosody does
//! (`options`).

pub mod options;
pub mod range;
pub mod reply;
pub mod validators;

//! What guest modules that serve stored bytes share (`files`,
//! `file_share`): byte ranges (RFC 9110 §14) and validators with the
//! conditional requests that use them (§8.8, §13). No wasm imports, so the
//! host runs its tests.

pub mod range;
pub mod validators;

//! Urna's wire types and client library (the CLI is built out by its own issue).
//!
//! - [`wire`]: the JSON bodies of the election API.
//! - [`head`]: signed heads and their verification.
#![warn(missing_docs)]

pub mod head;
pub mod wire;

pub use urna_keyceremony as crypto;

pub mod cli;
pub mod http;

//! Urna's wire types and client library (built out by the CLI issue).
pub use urna_keyceremony as crypto;

pub mod cli;
pub mod http;

//! The Urna server: a Raft-replicated, sled-backed state machine with an HTTP API.
//!
//! - [`store`]: the openraft type config and the sled-backed log and state machine (the only module
//!   that touches sled), with the running state digest and snapshots.
//! - [`command`]: the replicated commands (the election logic grows them).

// openraft's error types (StorageError, RaftError) are large by design; boxing them at every storage
// boundary would only fight the trait signatures.
#![allow(clippy::result_large_err)]

pub mod command;
pub mod store;

pub use store::{NodeId, Raft, TypeConfig};

//! The Urna server: a Raft-replicated, sled-backed state machine with an HTTP API.
//!
//! - [`store`]: the openraft type config and the sled-backed log and state machine (the only module
//!   that touches sled), with the running state digest and snapshots.
//! - [`command`]: the replicated commands (the election logic grows them).
//! - [`network`]: Raft RPCs over HTTP, authenticated with an HMAC of the body.
//! - [`api`]: the axum routes (`/raft/*`, health, status, digest, cluster operations, writes).
//! - [`head`]: the node key and signed heads.
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`config`]: the node's configuration (TOML and flags).
//! - [`node`]: wires everything together and runs a node until shutdown.

// openraft's error types (StorageError, RaftError) are large by design; boxing them at every storage
// boundary would only fight the trait signatures.
#![allow(clippy::result_large_err)]
#![warn(missing_docs)]

pub mod api;
pub mod command;
pub mod config;
pub mod election;
pub mod head;
pub mod metrics;
pub mod network;
pub mod node;
pub mod store;

pub use store::{NodeId, Raft, TypeConfig};

//! Urna's election cryptography (design section 4).
//!
//! Everything an election needs beyond storage and networking: group helpers over BLS12-381 G1
//! ([`group`], [`hash`], [`verify`]), zero-knowledge proofs ([`proofs`]), the dealerless key ceremony
//! ([`ceremony`], [`sharefile`]), encrypted ballots ([`manifest`], [`ballot`], [`credential`]), the tally
//! and its certificate ([`tally`]), and the election-record verifier ([`record`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ballot;
pub mod board;
pub mod ceremony;
pub mod credential;
pub mod election;
pub mod elgamal;
pub mod group;
pub mod hash;
pub mod manifest;
pub mod proofs;
pub mod sharefile;
pub mod tally;
pub mod verify;

pub use blsttc;

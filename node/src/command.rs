//! The replicated commands and their replies.
//!
//! [`Command`] is what goes into the Raft log (wrapped in a [`Request`](crate::store::Request) that adds
//! the audit metadata). The election state machine grows this enum; the replication layer only needs
//! [`Command::Noop`] and [`Command::Note`] to be exercised.
//!
//! **Compatibility rule:** the canonical bytes of a command (bincode: the variant's position, then the
//! fields in declaration order) feed the state digest, so new variants are only ever *appended* at the
//! end and existing variants never change shape.

use serde::{Deserialize, Serialize};

/// A state-machine command, as proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Does nothing; applied as a recorded no-op (useful to probe the write path).
    Noop,
    /// Records a short text in the notes tree (the replication layer's test command).
    Note {
        /// The note's text.
        text: String,
    },
    // Election commands are appended here (never inserted before existing variants).
}

impl Command {
    /// A stable short name of the command, for logs and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Noop => "noop",
            Command::Note { .. } => "note",
        }
    }
}

/// What an applied command produced (carried back to the proposer in the Raft response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The command had no result beyond being recorded.
    Noop,
    /// A note was recorded with this sequence number (1-based).
    Note {
        /// Position of the note among all notes.
        seq: u64,
    },
}

//! The apply boundary: where the application (today the notes test app, later the election state
//! machine) plugs into the replicated state machine.
//!
//! The state machine store owns the Raft bookkeeping (last applied, membership, digest history,
//! snapshots). For every normal entry it calls [`Application::apply`] inside the *same* sled transaction
//! that records the digest and last applied id of the batch, so application state and Raft bookkeeping
//! commit together or not at all. An application:
//!
//! - declares the sled trees it owns ([`Application::tree_names`]); the store opens them as `app/<name>`,
//!   includes them in snapshots and replaces them on snapshot install;
//! - reads and writes only through the [`AppTrees`] view it is given (the transaction may be retried, so
//!   `apply` must have no side effects outside it);
//! - is deterministic: it uses [`ApplyContext::time_ms`] (never the clock) and no randomness;
//! - turns a failing state-dependent check into [`Outcome::Rejected`], which is recorded like any entry;
//!   an `Err(ApplyError)` is reserved for storage corruption and stops the node.

use sled::transaction::TransactionalTree;
use sled::IVec;

use super::{decode, encode, LogId, Outcome, Request};
use crate::command::{Command, Reply};

/// Context of the entry being applied.
#[derive(Clone, Debug)]
pub struct ApplyContext<'a> {
    /// Log id of the entry.
    pub log_id: LogId,
    /// State-machine time: `max(previous time, leader stamp)` in ms since the Unix epoch.
    pub time_ms: u64,
    /// Who proposed the entry (audit trail).
    pub proposer: &'a str,
}

/// A fatal apply failure (corrupt state, encoding failure): aborts the batch and stops the node.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The application asked for a tree it did not declare.
    #[error("unknown application tree {0:?}")]
    UnknownTree(String),
    /// Stored bytes did not decode.
    #[error("corrupt application state: {0}")]
    Corrupt(String),
    /// A sled error inside the transaction.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<bincode::Error> for ApplyError {
    fn from(e: bincode::Error) -> Self {
        ApplyError::Corrupt(e.to_string())
    }
}

impl From<sled::transaction::UnabortableTransactionError> for ApplyError {
    fn from(e: sled::transaction::UnabortableTransactionError) -> Self {
        ApplyError::Storage(e.to_string())
    }
}

/// The application's trees inside the apply transaction.
pub struct AppTrees<'a> {
    names: &'a [&'static str],
    views: &'a [TransactionalTree],
}

impl<'a> AppTrees<'a> {
    pub(crate) fn new(names: &'a [&'static str], views: &'a [TransactionalTree]) -> Self {
        AppTrees { names, views }
    }

    /// The transactional view of one of the application's declared trees.
    pub fn tree(&self, name: &str) -> Result<&TransactionalTree, ApplyError> {
        self.names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.views.get(i))
            .ok_or_else(|| ApplyError::UnknownTree(name.to_string()))
    }
}

/// The application state machine plugged into the replicated store.
pub trait Application: Send + Sync + 'static {
    /// Names of the sled trees the application owns (stored as `app/<name>`). Must not change for the
    /// lifetime of a data directory.
    fn tree_names(&self) -> &'static [&'static str];

    /// Applies one command deterministically. `Ok(Outcome::Rejected { .. })` for a refused command.
    fn apply(
        &self,
        ctx: &ApplyContext<'_>,
        trees: &AppTrees<'_>,
        request: &Request,
    ) -> Result<Outcome, ApplyError>;
}

/// The replication layer's test application: records notes.
///
/// Trees: `notes` (big-endian sequence number -> bincode [`NoteRecord`]) and `notes_meta` (`count`).
#[derive(Clone, Copy, Debug, Default)]
pub struct NotesApp;

/// A recorded note.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoteRecord {
    /// The text.
    pub text: String,
    /// Who proposed it.
    pub by: String,
    /// State-machine time of the entry.
    pub time_ms: u64,
    /// Log index of the entry.
    pub index: u64,
}

/// Longest note text the notes app records; longer ones are rejected (in apply, to exercise the path).
pub const MAX_NOTE_LEN: usize = 4096;

impl Application for NotesApp {
    fn tree_names(&self) -> &'static [&'static str] {
        &["notes", "notes_meta"]
    }

    fn apply(
        &self,
        ctx: &ApplyContext<'_>,
        trees: &AppTrees<'_>,
        request: &Request,
    ) -> Result<Outcome, ApplyError> {
        match &request.command {
            Command::Noop => Ok(Outcome::Applied(Reply::Noop)),
            Command::Note { text } => {
                if text.len() > MAX_NOTE_LEN {
                    return Ok(Outcome::Rejected {
                        code: "note_too_long".into(),
                        message: format!("a note holds at most {MAX_NOTE_LEN} bytes"),
                    });
                }
                let meta = trees.tree("notes_meta")?;
                let count = match meta.get(b"count")? {
                    Some(v) => decode::<u64>(&v)?,
                    None => 0,
                };
                let seq = count + 1;
                let rec = NoteRecord {
                    text: text.clone(),
                    by: ctx.proposer.to_string(),
                    time_ms: ctx.time_ms,
                    index: ctx.log_id.index,
                };
                trees
                    .tree("notes")?
                    .insert(&seq.to_be_bytes(), IVec::from(encode(&rec)?))?;
                meta.insert(b"count", IVec::from(encode(&seq)?))?;
                Ok(Outcome::Applied(Reply::Note { seq }))
            }
            other => Ok(Outcome::Rejected {
                code: "unsupported_command".into(),
                message: format!("the notes application does not handle {}", other.kind()),
            }),
        }
    }
}

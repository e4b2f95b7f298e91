//! Storage: the openraft type config and the sled-backed Raft log and state machine.
//!
//! This module is the only one that touches sled (design section 2). One sled database per node holds:
//!
//! | tree | contents |
//! |---|---|
//! | `raft/log` | log entries keyed by big-endian index |
//! | `raft/meta` | vote, committed and last-purged markers |
//! | `sm/meta` | last applied log id, last membership, state-machine time, current digest |
//! | `sm/digests` | digest history: big-endian index -> 32-byte digest |
//! | `sm/snapshot` | the current snapshot (meta and data) |
//! | `app/<name>` | the application's own trees (see [`app::Application`]) |

pub mod app;
pub mod digest;
mod log;
mod sm;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Reply};

pub use app::{AppTrees, Application, ApplyContext, ApplyError, NotesApp};
pub use log::LogStore;
pub use sm::{SmHandle, StateMachineStore};

/// A node's identity in the cluster.
pub type NodeId = u64;
/// A node's address record (its HTTP `host:port`).
pub type Node = openraft::BasicNode;
/// Snapshot data as it travels and is installed: a byte buffer.
pub type SnapshotData = Cursor<Vec<u8>>;

openraft::declare_raft_types!(
    /// The openraft type configuration of Urna.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
);

/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// Storage errors as openraft wants them.
pub type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// A proposed log payload: the command plus its audit metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The command to apply.
    pub command: Command,
    /// Name of the operator or custodian who caused the entry (the audit trail).
    pub proposer: String,
    /// The leader's wall clock when it proposed the entry, in ms since the Unix epoch. Apply uses
    /// `max(previous time, stamp)`, never its own clock.
    pub stamp_ms: u64,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} by {} at {}",
            self.command.kind(),
            self.proposer,
            self.stamp_ms
        )
    }
}

/// The result of applying one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Index of the applied entry.
    pub index: u64,
    /// State digest after the entry (hex).
    pub digest: String,
    /// What the entry did.
    pub outcome: Outcome,
}

/// What applying an entry did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A blank (leader no-op) entry.
    Blank,
    /// A membership entry.
    Membership,
    /// The command was applied.
    Applied(Reply),
    /// The command failed a state-dependent check; it is recorded as a no-op.
    Rejected {
        /// snake_case reason, relayed by the API.
        code: String,
        /// Human-readable explanation.
        message: String,
    },
}

/// The opened storage of one node.
pub struct Store {
    /// The Raft log store (hand to `Raft::new`).
    pub log: LogStore,
    /// The state machine store (hand to `Raft::new`).
    pub sm: StateMachineStore,
    /// A read handle on the state machine for the API (digests, applied state).
    pub handle: SmHandle,
}

/// Opens (or creates) the node's sled database at `path` with the given application.
pub fn open(path: &Path, app: Arc<dyn Application>) -> Result<Store, StorageError<NodeId>> {
    let db = sled::Config::new()
        .path(path)
        .open()
        .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, &e))?;
    open_db(db, app)
}

/// Opens storage on an already opened sled database.
pub fn open_db(db: sled::Db, app: Arc<dyn Application>) -> Result<Store, StorageError<NodeId>> {
    let log = LogStore::new(&db)?;
    let sm = StateMachineStore::new(&db, app)?;
    let handle = sm.handle();
    Ok(Store { log, sm, handle })
}

pub(crate) fn io_err<E: std::error::Error + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &E,
) -> StorageError<NodeId> {
    StorageError::IO {
        source: StorageIOError::new(subject, verb, AnyError::new(e)),
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(v)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}

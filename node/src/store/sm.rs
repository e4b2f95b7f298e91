//! The replicated state machine on sled: applies entries, keeps the digest history, builds and
//! installs snapshots.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::app::{AppTrees, ApplyContext, ApplyError};
use super::digest::{self, Digest, GENESIS};
use super::{
    decode, encode, io_err, Application, Entry, LogId, Node, NodeId, Outcome, Response, SnapshotData,
    StorageResult, TypeConfig,
};

const KEY_STATE: &[u8] = b"state";
const KEY_SNAPSHOT: &[u8] = b"current";
const SNAPSHOT_FORMAT: u32 = 1;
const DIGESTS: &str = "sm/digests";

/// The Raft bookkeeping of the state machine, stored under one key in `sm/meta`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmState {
    /// Last applied log id.
    pub last_applied: Option<LogId>,
    /// Last applied membership.
    pub membership: StoredMembership<NodeId, Node>,
    /// State-machine time (ms): the max of the leader stamps applied so far.
    pub time_ms: u64,
    /// Digest after the last applied entry.
    pub digest: Digest,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// One tree of a snapshot: its name and sorted key/value pairs.
type TreeDump = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Snapshot contents: the bookkeeping plus every state-machine tree (digest history and application
/// trees), as sorted key/value pairs.
#[derive(Serialize, Deserialize)]

struct SnapshotBody {
    format: u32,
    state: SmState,
    trees: Vec<TreeDump>,
}

struct Inner {
    db: sled::Db,
    meta: sled::Tree,
    snapshot: sled::Tree,
    /// `sm/digests` (also the first of `data_trees`).
    digests: sled::Tree,
    /// `sm/digests` first, then the application trees, in declaration order.
    data_trees: Vec<(String, sled::Tree)>,
    app_names: &'static [&'static str],
    snapshot_lock: tokio::sync::Mutex<()>,
}

impl Inner {
    fn state(&self) -> StorageResult<SmState> {
        match self.meta.get(KEY_STATE).map_err(|e| sm_read(&e))? {
            Some(v) => decode(&v).map_err(|e| sm_read(&e)),
            None => Ok(SmState {
                digest: GENESIS,
                ..Default::default()
            }),
        }
    }

    fn current_snapshot(&self) -> StorageResult<Option<StoredSnapshot>> {
        match self
            .snapshot
            .get(KEY_SNAPSHOT)
            .map_err(|e| snap_err(ErrorVerb::Read, &e))?
        {
            Some(v) => Ok(Some(decode(&v).map_err(|e| snap_err(ErrorVerb::Read, &e))?)),
            None => Ok(None),
        }
    }

    fn all_trees(&self) -> Vec<sled::Tree> {
        std::iter::once(self.meta.clone())
            .chain(self.data_trees.iter().map(|(_, t)| t.clone()))
            .collect()
    }

    fn dump(&self) -> StorageResult<(SmState, Vec<u8>)> {
        let state = self.state()?;
        let mut trees = Vec::with_capacity(self.data_trees.len());
        for (name, tree) in &self.data_trees {
            let mut kvs = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv.map_err(|e| sm_read(&e))?;
                kvs.push((k.to_vec(), v.to_vec()));
            }
            trees.push((name.clone(), kvs));
        }
        let body = SnapshotBody {
            format: SNAPSHOT_FORMAT,
            state: state.clone(),
            trees,
        };
        let data = encode(&body).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        Ok((state, data))
    }
}

fn sm_read<E: std::error::Error + 'static>(e: &E) -> StorageError<NodeId> {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e)
}

fn sm_write<E: std::error::Error + 'static>(e: &E) -> StorageError<NodeId> {
    io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

fn snap_err<E: std::error::Error + 'static>(verb: ErrorVerb, e: &E) -> StorageError<NodeId> {
    io_err(ErrorSubject::Snapshot(None), verb, e)
}

fn tx_err(e: TransactionError<ApplyError>) -> StorageError<NodeId> {
    match e {
        TransactionError::Abort(a) => sm_write(&a),
        TransactionError::Storage(s) => sm_write(&s),
    }
}

/// The sled-backed state machine store (handed to `Raft::new`).
pub struct StateMachineStore {
    inner: Arc<Inner>,
    app: Arc<dyn Application>,
}

/// A cheap, cloneable read handle on the state machine for the API.
#[derive(Clone)]
pub struct SmHandle {
    inner: Arc<Inner>,
}

impl SmHandle {
    /// The digest after applying the entry at `index`, if this node has applied it.
    pub fn digest_at(&self, index: u64) -> StorageResult<Option<Digest>> {
        match self
            .inner
            .digests
            .get(index.to_be_bytes())
            .map_err(|e| sm_read(&e))?
        {
            Some(v) => {
                let d: Digest = v.as_ref().try_into().map_err(|e| sm_read(&e))?;
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// The persisted bookkeeping (last applied, membership, time, digest).
    pub fn state(&self) -> StorageResult<SmState> {
        self.inner.state()
    }

    /// Runs `f` over the bookkeeping and the application trees in one read transaction, so that what
    /// it reads belongs to one applied index (a batch applies in one transaction).
    pub fn read_tx<T>(
        &self,
        f: impl Fn(&SmState, &AppTrees<'_>) -> Result<T, ApplyError>,
    ) -> StorageResult<T> {
        let trees = self.inner.all_trees();
        let names = self.inner.app_names;
        trees[..]
            .transaction(|views| {
                let st: SmState = match views[0].get(KEY_STATE)? {
                    Some(v) => decode(&v).map_err(|e| ConflictableTransactionError::Abort(e.into()))?,
                    None => SmState {
                        digest: GENESIS,
                        ..Default::default()
                    },
                };
                f(&st, &AppTrees::new(names, &views[2..])).map_err(ConflictableTransactionError::Abort)
            })
            .map_err(tx_err)
    }

    /// Reads one key of one application tree (outside any transaction).
    pub fn app_get(&self, tree: &str, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        let name = format!("app/{tree}");
        match self.inner.data_trees.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => Ok(t.get(key).map_err(|e| sm_read(&e))?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Every key of one application tree, in key order (outside any transaction).
    pub fn app_keys(&self, tree: &str) -> StorageResult<Vec<Vec<u8>>> {
        let name = format!("app/{tree}");
        let Some((_, t)) = self.inner.data_trees.iter().find(|(n, _)| *n == name) else {
            return Ok(Vec::new());
        };
        t.iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).map_err(|e| sm_read(&e)))
            .collect()
    }

    /// Every key/value pair of one application tree, in key order (outside any transaction).
    pub fn app_scan(&self, tree: &str) -> StorageResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = format!("app/{tree}");
        let Some((_, t)) = self.inner.data_trees.iter().find(|(n, _)| *n == name) else {
            return Ok(Vec::new());
        };
        t.iter()
            .map(|kv| {
                let (k, v) = kv.map_err(|e| sm_read(&e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }
}

impl StateMachineStore {
    pub(crate) fn new(db: &sled::Db, app: Arc<dyn Application>) -> StorageResult<Self> {
        let open = |name: &str| db.open_tree(name).map_err(|e| sm_read(&e));
        let app_names = app.tree_names();
        let digests = open(DIGESTS)?;
        let mut data_trees = vec![(DIGESTS.to_string(), digests.clone())];
        for n in app_names {
            let name = format!("app/{n}");
            let t = open(&name)?;
            data_trees.push((name, t));
        }
        Ok(StateMachineStore {
            inner: Arc::new(Inner {
                db: db.clone(),
                meta: open("sm/meta")?,
                snapshot: open("sm/snapshot")?,
                digests,
                data_trees,
                app_names,
                snapshot_lock: tokio::sync::Mutex::new(()),
            }),
            app,
        })
    }

    /// A read handle for the API.
    pub fn handle(&self) -> SmHandle {
        SmHandle {
            inner: self.inner.clone(),
        }
    }

    async fn flush(&self) -> StorageResult<()> {
        let _t = crate::metrics::Timer::start(&crate::metrics::global().fsync_duration);
        self.inner.db.flush_async().await.map_err(|e| sm_write(&e))?;
        Ok(())
    }

    /// Applies a batch in one sled transaction over the bookkeeping, the digest history and the
    /// application trees.
    fn apply_batch(&self, entries: &[Entry]) -> StorageResult<Vec<Response>> {
        let trees = self.inner.all_trees();
        let app = &self.app;
        let names = self.inner.app_names;
        let res = trees[..].transaction(|views| {
            let (meta, digests, app_views) = (&views[0], &views[1], &views[2..]);
            let mut st: SmState = match meta.get(KEY_STATE)? {
                Some(v) => decode(&v).map_err(|e| ConflictableTransactionError::Abort(e.into()))?,
                None => SmState {
                    digest: GENESIS,
                    ..Default::default()
                },
            };
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                let d = digest::next(&st.digest, entry)
                    .map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
                let outcome = match &entry.payload {
                    EntryPayload::Blank => Outcome::Blank,
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        Outcome::Membership
                    }
                    EntryPayload::Normal(req) => {
                        st.time_ms = st.time_ms.max(req.stamp_ms);
                        let ctx = ApplyContext {
                            log_id: entry.log_id,
                            time_ms: st.time_ms,
                            proposer: &req.proposer,
                        };
                        app.apply(&ctx, &AppTrees::new(names, app_views), req)
                            .map_err(ConflictableTransactionError::Abort)?
                    }
                };
                st.digest = d;
                st.last_applied = Some(entry.log_id);
                digests.insert(&entry.log_id.index.to_be_bytes(), &d[..])?;
                out.push(Response {
                    index: entry.log_id.index,
                    digest: hex::encode(d),
                    outcome,
                });
            }
            let bytes = encode(&st).map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
            meta.insert(KEY_STATE, bytes)?;
            Ok(out)
        });
        res.map_err(tx_err)
    }

    fn install(&self, meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> StorageResult<()> {
        let sig = Some(meta.signature());
        let bad = |msg: String| StorageError::IO {
            source: StorageIOError::read_snapshot(sig.clone(), openraft::AnyError::error(msg)),
        };
        let body: SnapshotBody = decode(data).map_err(|e| bad(format!("snapshot does not decode: {e}")))?;
        if body.format != SNAPSHOT_FORMAT {
            return Err(bad(format!("unknown snapshot format {}", body.format)));
        }
        if body.state.last_applied != meta.last_log_id {
            return Err(bad("snapshot body and meta disagree on last applied".into()));
        }
        let expected: Vec<&String> = self.inner.data_trees.iter().map(|(n, _)| n).collect();
        let got: Vec<&String> = body.trees.iter().map(|(n, _)| n).collect();
        if expected != got {
            return Err(bad(format!(
                "snapshot trees {got:?} do not match this node's {expected:?}"
            )));
        }
        // Keys to drop: everything currently in the data trees.
        let mut old: Vec<Vec<sled::IVec>> = Vec::new();
        for (_, t) in &self.inner.data_trees {
            let mut keys = Vec::new();
            for kv in t.iter().keys() {
                keys.push(kv.map_err(|e| sm_read(&e))?);
            }
            old.push(keys);
        }
        let mut state = body.state.clone();
        state.membership = meta.last_membership.clone();
        let state_bytes = encode(&state).map_err(|e| sm_write(&e))?;
        let trees = self.inner.all_trees();
        trees[..]
            .transaction(|views| {
                for (i, keys) in old.iter().enumerate() {
                    for k in keys {
                        views[i + 1].remove(k)?;
                    }
                }
                for (i, (_, kvs)) in body.trees.iter().enumerate() {
                    for (k, v) in kvs {
                        views[i + 1].insert(k.as_slice(), v.as_slice())?;
                    }
                }
                views[0].insert(KEY_STATE, state_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<ApplyError>>(())
            })
            .map_err(tx_err)
    }

    fn save_snapshot(&self, snap: &StoredSnapshot) -> StorageResult<()> {
        let bytes = encode(snap).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        self.inner
            .snapshot
            .insert(KEY_SNAPSHOT, bytes)
            .map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        Ok(())
    }
}

/// Builds a snapshot from a dump taken when the builder was created (on the state-machine task, so it
/// is consistent with the applied state).
pub struct SmSnapshotBuilder {
    inner: Arc<Inner>,
    dump: Result<(SmState, Vec<u8>), String>,
}

impl RaftSnapshotBuilder<TypeConfig> for SmSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (state, data) = match &self.dump {
            Ok(d) => d.clone(),
            Err(msg) => {
                return Err(StorageError::IO {
                    source: StorageIOError::write_snapshot(None, openraft::AnyError::error(msg)),
                })
            }
        };
        let unique = self
            .inner
            .db
            .generate_id()
            .map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        let snapshot_id = match &state.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{unique}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("--{unique}"),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        {
            // Never replace a newer snapshot (one installed meanwhile) by an older build.
            let _g = self.inner.snapshot_lock.lock().await;
            let newer = match self.inner.current_snapshot()? {
                Some(cur) => cur.meta.last_log_id > meta.last_log_id,
                None => false,
            };
            if !newer {
                let bytes = encode(&stored).map_err(|e| snap_err(ErrorVerb::Write, &e))?;
                self.inner
                    .snapshot
                    .insert(KEY_SNAPSHOT, bytes)
                    .map_err(|e| snap_err(ErrorVerb::Write, &e))?;
                self.inner
                    .db
                    .flush_async()
                    .await
                    .map_err(|e| snap_err(ErrorVerb::Write, &e))?;
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SmSnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId>, StoredMembership<NodeId, Node>)> {
        let st = self.inner.state()?;
        Ok((st.last_applied, st.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let out = {
            let _t = crate::metrics::Timer::start(&crate::metrics::global().apply_duration);
            self.apply_batch(&entries)?
        };
        self.flush().await?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SmSnapshotBuilder {
            inner: self.inner.clone(),
            dump: self.inner.dump().map_err(|e| e.to_string()),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<SnapshotData>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<SnapshotData>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let _g = self.inner.snapshot_lock.lock().await;
        self.install(meta, &data)?;
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        self.flush().await?;
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.inner.current_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

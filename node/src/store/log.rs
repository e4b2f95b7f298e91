//! The Raft log on sled: entries keyed by big-endian index in `raft/log`; vote, committed and
//! last-purged markers in `raft/meta`. Appends and votes are flushed before they are reported persisted.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};

use super::{decode, encode, io_err, Entry, LogId, NodeId, StorageResult, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The sled-backed Raft log store. Cloning shares the same trees (used as the log reader).
///
/// Group commit: an append writes its entries and hands its completion callback to a flusher thread,
/// which flushes once for every append queued meanwhile and only then reports them persisted. No
/// entry is reported persisted (so counted towards a quorum, or acknowledged) before a flush that
/// follows its write has completed.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

/// Flushes the database for queued appends, then completes their callbacks (in order).
fn run_flusher(db: sled::Db, rx: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        pending.extend(rx.try_iter());
        let res = {
            let _t = crate::metrics::Timer::start(&crate::metrics::global().fsync_duration);
            db.flush()
        };
        for cb in pending {
            match &res {
                Ok(_) => cb.log_io_completed(Ok(())),
                Err(e) => cb.log_io_completed(Err(std::io::Error::other(e.to_string()))),
            }
        }
        if let Err(e) = res {
            tracing::error!(error = %e, "flushing the Raft log");
        }
    }
}

fn log_read_err<E: std::error::Error + 'static>(e: &E) -> openraft::StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn log_write_err<E: std::error::Error + 'static>(e: &E) -> openraft::StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db) -> StorageResult<Self> {
        let open = |name: &str| {
            db.open_tree(name)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, &e))
        };
        let (flusher, rx) = std::sync::mpsc::channel();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("urna-log-flush".into())
            .spawn(move || run_flusher(flush_db, rx))
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        Ok(LogStore {
            db: db.clone(),
            log: open("raft/log")?,
            meta: open("raft/meta")?,
            flusher,
        })
    }

    async fn flush(&self, subject: ErrorSubject<NodeId>) -> StorageResult<()> {
        let _t = crate::metrics::Timer::start(&crate::metrics::global().fsync_duration);
        self.db
            .flush_async()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, &e))?;
        Ok(())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        match self
            .meta
            .get(key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, &e))?
        {
            Some(v) => Ok(Some(
                decode(&v).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, &e))?,
            )),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T) -> StorageResult<()> {
        let bytes = encode(v).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        Ok(())
    }

    /// Removes every entry whose index is in `range` in one atomic batch.
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            let (k, _) = kv.map_err(|e| log_read_err(&e))?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| log_write_err(&e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => Bound::Included(x.to_be_bytes()),
            Bound::Excluded(x) => Bound::Excluded(x.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Bound::Included(x.to_be_bytes()),
            Bound::Excluded(x) => Bound::Excluded(x.to_be_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for kv in self.log.range::<[u8; 8], _>((start, end)) {
            let (_, v) = kv.map_err(|e| log_read_err(&e))?;
            out.push(decode::<Entry>(&v).map_err(|e| log_read_err(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = match self.log.last().map_err(|e| log_read_err(&e))? {
            Some((_, v)) => Some(decode::<Entry>(&v).map_err(|e| log_read_err(&e))?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_meta(KEY_VOTE, vote)?;
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StorageResult<()> {
        // Not flushed on its own: it is an optimisation (re-apply on restart), and the next append or
        // vote flush carries it.
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| log_write_err(&e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log.apply_batch(batch).map_err(|e| log_write_err(&e))?;
        // Durable before reported: the flusher completes the callback only after a flush that
        // started after this write.
        if let Err(std::sync::mpsc::SendError(callback)) = self.flusher.send(callback) {
            // The flusher is gone (cannot happen while a sender lives): flush here instead.
            let res = self.db.flush_async().await;
            let io = res
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(io);
            res.map_err(|e| log_write_err(&e))?;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> StorageResult<()> {
        tracing::debug!(%log_id, "truncate log from");
        self.remove_range(log_id.index.to_be_bytes()..)?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> StorageResult<()> {
        tracing::debug!(%log_id, "purge log up to");
        // The marker first: a crash between the two leaves extra entries, never a hole.
        self.put_meta(KEY_PURGED, &log_id)?;
        self.flush(ErrorSubject::Logs).await?;
        self.remove_range(..=log_id.index.to_be_bytes())?;
        self.flush(ErrorSubject::Logs).await
    }
}

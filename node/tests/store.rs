//! Storage tests: openraft's conformance suite against the sled store, and crash/reopen durability.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, StorageError, Vote,
};
use urna_node::command::Command;
use urna_node::store::{self, digest, LogStore, NotesApp, Request, StateMachineStore, TypeConfig};
use urna_node::NodeId;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e)
        })?;
        let s = store::open(&dir.path().join("db"), Arc::new(NotesApp))?;
        Ok((dir, s.log, s.sm))
    }
}

#[test]
fn openraft_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entries() -> Vec<Entry<TypeConfig>> {
    let nodes: BTreeMap<NodeId, openraft::BasicNode> = (1..=3)
        .map(|i| (i, openraft::BasicNode::new(format!("127.0.0.1:{}", 7000 + i))))
        .collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
    let mut v = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership),
        },
    ];
    for i in 3..=12 {
        v.push(Entry {
            log_id: log_id(1, i),
            payload: EntryPayload::Normal(Request {
                command: Command::Note {
                    text: format!("note {i}"),
                },
                proposer: "alice".into(),
                stamp_ms: 1_000 + i,
            }),
        });
    }
    v
}

const CHILD_ENV: &str = "URNA_STORE_CRASH_CHILD_DIR";

/// Child half of `reopen_after_crash`: writes, then aborts the process without any clean shutdown.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let mut s = store::open(std::path::Path::new(&dir), Arc::new(NotesApp)).unwrap();
    let all = entries();
    s.log.blocking_append(all.clone()).await.unwrap();
    s.log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    // Apply the first 10 of 12 in two batches; the last two stay unapplied.
    s.sm.apply(all[..4].to_vec()).await.unwrap();
    s.sm.apply(all[4..10].to_vec()).await.unwrap();
    std::process::abort();
}

#[tokio::test]
async fn reopen_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die by abort");

    let mut s = store::open(&db, Arc::new(NotesApp)).unwrap();
    let all = entries();
    // Every flushed entry and the vote are there.
    let got = s.log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(got, all);
    let state = s.log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 12)));
    assert_eq!(s.log.read_vote().await.unwrap(), Some(Vote::new_committed(1, 1)));
    // Applied state and digest survived, and match a recomputation.
    let (applied, membership) = s.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 10)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
    let mut d = digest::GENESIS;
    for (i, e) in all[..10].iter().enumerate() {
        d = digest::next(&d, e).unwrap();
        assert_eq!(
            s.handle.digest_at(i as u64 + 1).unwrap(),
            Some(d),
            "digest at {}",
            i + 1
        );
    }
    assert_eq!(s.handle.state().unwrap().digest, d);
    assert_eq!(s.handle.state().unwrap().time_ms, 1_010);
    assert_eq!(s.handle.digest_at(11).unwrap(), None);
    let count: u64 =
        bincode::deserialize(&s.handle.app_get("notes_meta", b"count").unwrap().unwrap()).unwrap();
    assert_eq!(count, 8);
    // Applying the rest continues the chain.
    let resp = s.sm.apply(all[10..].to_vec()).await.unwrap();
    let d11 = digest::next(&d, &all[10]).unwrap();
    let d12 = digest::next(&d11, &all[11]).unwrap();
    assert_eq!(resp[1].digest, hex::encode(d12));
}

#[tokio::test]
async fn snapshot_carries_state_and_digest_history() {
    use openraft::RaftSnapshotBuilder;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = store::open(&dir_a.path().join("db"), Arc::new(NotesApp)).unwrap();
    let mut b = store::open(&dir_b.path().join("db"), Arc::new(NotesApp)).unwrap();
    let all = entries();
    // b has some divergent-looking local state that the snapshot must replace.
    b.sm.apply(all[..3].to_vec()).await.unwrap();
    a.sm.apply(all.clone()).await.unwrap();
    let snap = a.sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let mut rx = b.sm.begin_receiving_snapshot().await.unwrap();
    *rx = *snap.snapshot;
    b.sm.install_snapshot(&snap.meta, rx).await.unwrap();
    assert_eq!(
        b.sm.applied_state().await.unwrap(),
        a.sm.applied_state().await.unwrap()
    );
    for i in 1..=12 {
        assert_eq!(a.handle.digest_at(i).unwrap(), b.handle.digest_at(i).unwrap());
    }
    assert_eq!(a.handle.state().unwrap(), b.handle.state().unwrap());
    assert_eq!(
        a.handle.app_get("notes", &10u64.to_be_bytes()).unwrap(),
        b.handle.app_get("notes", &10u64.to_be_bytes()).unwrap()
    );
    assert_eq!(
        b.sm.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}

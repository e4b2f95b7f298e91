//! The invariants, checked against every node's final state read directly from its data directory
//! after it stopped (with the node's own store code), and the voters' history:
//!
//! - **I1** no acknowledged ballot lost: every receipt's ballot is recorded, with the receipt's
//!   tracking code, on every voting member.
//! - **I2** no credential with two ballots, and a retried ballot recorded once (per node; and no
//!   credential acknowledged for two different ballots).
//! - **I3** no ballot that no voter sent, and no ballot refused definitively.
//! - **I4** convergence (measured live by the runner) and identical ballot lists on every member.
//! - **I5** liveness (the runner's final cast and consistent read).
//! - **tally**: the certified result equals the sum of the recorded ballots' true votes.
//!
//! A cast that timed out is unknown: it may be recorded or not and never counts as lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use serde::Serialize;
use urna_client::wire::ResultResponse;
use urna_keyceremony::ballot::EncryptedBallot;
use urna_keyceremony::hash::Hash32;
use urna_node::election::state::{self, StoredBallot};
use urna_node::election::ElectionApp;

use crate::election::Ballot;
use crate::workload::{Op, Outcome};

/// A recorded ballot as the checker needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Position in the box.
    pub seq: u64,
    /// Log index.
    pub index: u64,
    /// H_b.
    pub hash: Hash32,
    /// Tracking code.
    pub tracking: Hash32,
    /// Credential (hex).
    pub credential: String,
}

/// One node's final state, read from its data directory.
#[derive(Clone, Debug)]
pub struct NodeData {
    /// Node id.
    pub id: u64,
    /// Last applied index.
    pub applied: u64,
    /// Digest at it (hex).
    pub digest: String,
    /// The election's ballots in box order.
    pub ballots: Vec<Recorded>,
}

/// Opens a stopped node's store and reads the election's ballots.
pub fn read_node(id: u64, data_dir: &Path, election: &str) -> anyhow::Result<NodeData> {
    let store = urna_node::store::open(&data_dir.join("db"), Arc::new(ElectionApp))
        .map_err(|e| anyhow!("opening node {id}'s store: {e}"))?;
    let h = store.handle;
    let st = h.state().map_err(|e| anyhow!("node {id} state: {e}"))?;
    let prefix = state::key(election, b"");
    let mut ballots = Vec::new();
    for (k, v) in h
        .app_scan(state::T_BALLOTS)
        .map_err(|e| anyhow!("node {id} ballots: {e}"))?
    {
        if !k.starts_with(&prefix) {
            continue;
        }
        let b: StoredBallot = bincode_decode(&v).with_context(|| format!("node {id}: a stored ballot"))?;
        let eb: EncryptedBallot =
            serde_json::from_str(&b.ballot).with_context(|| format!("node {id}: ballot {}", b.seq))?;
        ballots.push(Recorded {
            seq: b.seq,
            index: b.index,
            hash: b.ballot_hash,
            tracking: b.tracking_code,
            credential: hex::encode(eb.credential.to_bytes()),
        });
    }
    ballots.sort_by_key(|b| b.seq);
    Ok(NodeData {
        id,
        applied: st.last_applied.map_or(0, |l| l.index),
        digest: hex::encode(st.digest),
        ballots,
    })
}

fn bincode_decode(v: &[u8]) -> anyhow::Result<StoredBallot> {
    Ok(bincode::deserialize(v)?)
}

/// Counts and examples of one invariant's violations.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    /// Things checked.
    pub checked: u64,
    /// Violations.
    pub violations: u64,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl Check {
    fn ok(&mut self) {
        self.checked += 1;
    }

    fn fail(&mut self, what: String) {
        self.checked += 1;
        self.violations += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }

    /// Whether nothing was violated.
    pub fn passed(&self) -> bool {
        self.violations == 0
    }
}

/// Every invariant's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Invariants {
    /// I1: no acknowledged ballot lost.
    pub i1_no_lost_ack: Check,
    /// I2: one ballot per credential, a retried ballot recorded once.
    pub i2_no_double: Check,
    /// I3: nothing recorded that no voter sent (or that was refused).
    pub i3_no_phantom: Check,
    /// I4: convergence and identical ballot lists.
    pub i4_convergence: Check,
    /// I5: liveness after healing.
    pub i5_liveness: Check,
    /// The certified tally equals the recorded ballots' true votes.
    pub tally: Check,
}

impl Invariants {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        [
            &self.i1_no_lost_ack,
            &self.i2_no_double,
            &self.i3_no_phantom,
            &self.i4_convergence,
            &self.i5_liveness,
            &self.tally,
        ]
        .iter()
        .all(|c| c.passed())
    }
}

fn short(h: &Hash32) -> String {
    hex::encode(&h[..6])
}

/// Checks I1-I3, the ballot-list part of I4 and the tally. `members` are the final voting members
/// (their data must hold every acknowledged ballot); `nodes` holds every node's data.
pub fn check(
    ops: &[Op],
    nodes: &[NodeData],
    members: &[u64],
    result: Option<&ResultResponse>,
    inv: &mut Invariants,
) {
    let mut sent: BTreeMap<Hash32, &Ballot> = BTreeMap::new();
    let mut refused_only: BTreeMap<Hash32, bool> = BTreeMap::new();
    let mut acked_by_cred: BTreeMap<&str, BTreeSet<Hash32>> = BTreeMap::new();
    for op in ops {
        let b = &*op.ballot;
        sent.insert(b.hash, b);
        let refused = matches!(op.outcome, Outcome::Refused { .. });
        refused_only
            .entry(b.hash)
            .and_modify(|r| *r &= refused)
            .or_insert(refused);
        if let Outcome::Acked(r) = &op.outcome {
            acked_by_cred
                .entry(&b.credential)
                .or_default()
                .insert(r.ballot_hash);
        }
    }
    let member_data: Vec<&NodeData> = nodes.iter().filter(|n| members.contains(&n.id)).collect();

    // I1.
    for op in ops {
        let Outcome::Acked(r) = &op.outcome else { continue };
        if r.ballot_hash != op.ballot.hash {
            inv.i1_no_lost_ack.fail(format!(
                "voter {}: receipt for another ballot hash",
                op.ballot.voter
            ));
            continue;
        }
        for n in &member_data {
            match n.ballots.iter().find(|b| b.hash == r.ballot_hash) {
                Some(b) if b.tracking == r.tracking_code => inv.i1_no_lost_ack.ok(),
                Some(_) => inv.i1_no_lost_ack.fail(format!(
                    "node {}: ballot {} of voter {} has another tracking code than its receipt",
                    n.id,
                    short(&r.ballot_hash),
                    op.ballot.voter
                )),
                None => inv.i1_no_lost_ack.fail(format!(
                    "node {}: acknowledged ballot {} of voter {} (receipt index {}, seq {}) is missing",
                    n.id,
                    short(&r.ballot_hash),
                    op.ballot.voter,
                    r.index,
                    r.seq
                )),
            }
        }
    }

    // I2 and I3, per node.
    for n in nodes {
        let mut by_cred: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_hash: BTreeMap<Hash32, u64> = BTreeMap::new();
        for b in &n.ballots {
            *by_cred.entry(&b.credential).or_default() += 1;
            *by_hash.entry(b.hash).or_default() += 1;
            match (sent.get(&b.hash), refused_only.get(&b.hash)) {
                (None, _) => inv.i3_no_phantom.fail(format!(
                    "node {}: ballot {} (seq {}) was sent by no voter",
                    n.id,
                    short(&b.hash),
                    b.seq
                )),
                (Some(s), Some(true)) => inv.i3_no_phantom.fail(format!(
                    "node {}: ballot {} of voter {} is recorded though it was refused",
                    n.id,
                    short(&b.hash),
                    s.voter
                )),
                _ => inv.i3_no_phantom.ok(),
            }
        }
        for (cred, k) in by_cred {
            if k > 1 {
                inv.i2_no_double.fail(format!(
                    "node {}: credential {}… has {k} ballots",
                    n.id,
                    &cred[..12]
                ));
            } else {
                inv.i2_no_double.ok();
            }
        }
        for (h, k) in by_hash {
            if k > 1 {
                inv.i2_no_double
                    .fail(format!("node {}: ballot {} recorded {k} times", n.id, short(&h)));
            }
        }
    }
    for (cred, hashes) in &acked_by_cred {
        if hashes.len() > 1 {
            inv.i2_no_double.fail(format!(
                "credential {}… acknowledged for {} different ballots",
                &cred[..12],
                hashes.len()
            ));
        }
    }

    // I4 (data part): every member holds the same ballot list.
    if let Some(first) = member_data.first() {
        for n in &member_data[1..] {
            if n.ballots == first.ballots {
                inv.i4_convergence.ok();
            } else {
                inv.i4_convergence.fail(format!(
                    "nodes {} and {} hold different ballot lists ({} vs {})",
                    first.id,
                    n.id,
                    first.ballots.len(),
                    n.ballots.len()
                ));
            }
        }
    }

    // Tally: the certified counts equal the recorded ballots' true votes.
    let Some(first) = member_data.first() else {
        inv.tally.fail("no member's data to tally".into());
        return;
    };
    let mut truth = vec![0u64; crate::election::SHAPE.iter().map(|s| s.0).sum()];
    let mut unknown = 0;
    for b in &first.ballots {
        match sent.get(&b.hash) {
            Some(s) => {
                for (t, x) in truth.iter_mut().zip(&s.flat) {
                    *t += x;
                }
            }
            None => unknown += 1,
        }
    }
    match result.and_then(|r| r.tally.as_ref().map(|t| (r, t))) {
        None => inv.tally.fail("no certified result".into()),
        Some((r, t)) => {
            if unknown > 0 {
                inv.tally
                    .fail(format!("{unknown} recorded ballots have no known plaintext"));
            } else if t.flat() != truth || r.ballot_count != first.ballots.len() as u64 {
                inv.tally.fail(format!(
                    "certified {:?} over {} ballots, but the recorded ballots hold {:?} over {}",
                    t.flat(),
                    r.ballot_count,
                    truth,
                    first.ballots.len()
                ));
            } else {
                inv.tally.ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::OpKind;
    use urna_client::wire::Receipt;

    fn ballot(voter: usize, cred: u8, tag: u8) -> Arc<Ballot> {
        Arc::new(Ballot {
            voter,
            bytes: Vec::new(),
            hash: [tag; 32],
            credential: hex::encode([cred; 32]),
            flat: vec![1, 0, 0, 1, 0],
        })
    }

    fn op(b: &Arc<Ballot>, acked: bool) -> Op {
        let outcome = if acked {
            Outcome::Acked(Box::new(Receipt {
                election_id: "e".into(),
                ballot_hash: b.hash,
                previous_tracking_code: [0; 32],
                tracking_code: [b.hash[0] ^ 0xff; 32],
                seq: 0,
                index: 1,
                signed_head: None,
            }))
        } else {
            Outcome::Unknown("timed out".into())
        };
        Op {
            kind: OpKind::Cast,
            ballot: b.clone(),
            start_ms: 0,
            end_ms: 1,
            nodes: vec![1],
            outcome,
        }
    }

    fn rec(b: &Ballot, seq: u64) -> Recorded {
        Recorded {
            seq,
            index: seq + 10,
            hash: b.hash,
            tracking: [b.hash[0] ^ 0xff; 32],
            credential: b.credential.clone(),
        }
    }

    fn node(id: u64, ballots: Vec<Recorded>) -> NodeData {
        NodeData {
            id,
            applied: 20,
            digest: "00".into(),
            ballots,
        }
    }

    #[test]
    fn a_clean_history_passes_and_unknown_casts_may_be_missing() {
        let (a, b) = (ballot(0, 1, 1), ballot(1, 2, 2));
        let ops = vec![op(&a, true), op(&b, false)];
        let nodes = vec![node(1, vec![rec(&a, 0)]), node(2, vec![rec(&a, 0)])];
        let result: ResultResponse = serde_json::from_value(serde_json::json!({
            "election_id": "e", "phase": "published", "ballot_count": 1,
            "tally": {"counts": [[1, 0, 0], [1, 0]]},
            "decryption_shares": [], "signature_shares": [], "applied_index": 20
        }))
        .unwrap();
        let mut inv = Invariants::default();
        check(&ops, &nodes, &[1, 2], Some(&result), &mut inv);
        assert!(inv.passed(), "{inv:#?}");
    }

    #[test]
    fn lost_double_phantom_and_divergence_are_violations() {
        let (a, b, c) = (ballot(0, 1, 1), ballot(1, 2, 2), ballot(2, 2, 3));
        let phantom = ballot(9, 9, 9);
        let ops = vec![op(&a, true), op(&b, true), op(&c, false)];
        // Node 1 lost `a`, holds two ballots of credential 2 and one nobody sent.
        let nodes = vec![
            node(1, vec![rec(&b, 0), rec(&c, 1), rec(&phantom, 2)]),
            node(2, vec![rec(&a, 0), rec(&b, 1)]),
        ];
        let mut inv = Invariants::default();
        check(&ops, &nodes, &[1, 2], None, &mut inv);
        assert_eq!(inv.i1_no_lost_ack.violations, 1);
        assert_eq!(inv.i2_no_double.violations, 1);
        assert_eq!(inv.i3_no_phantom.violations, 1);
        assert_eq!(inv.i4_convergence.violations, 1);
        assert_eq!(inv.tally.violations, 1);
        assert!(!inv.passed());
    }
}

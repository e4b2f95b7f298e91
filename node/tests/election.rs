//! Real-process election tests: a whole election over HTTP on a 3-node cluster (custodians driven in
//! memory with keyceremony's `Custodian`, every message posted over HTTP), double votes, a leader
//! killed mid-voting, a whole-cluster restart, and hostile input. Waits are conditions under a
//! deadline; the tests run one at a time (they share two cores with the node processes).

mod common;
#[path = "common/elect.rs"]
mod elect;
use elect::{get_json, now_ms, post_raw};

use std::time::{Duration, Instant};

use common::*;
use rand::rngs::OsRng;
use rand::Rng;
use serde_json::{json, Value};
use urna_client::wire::{
    BallotLookup, CreateElectionRequest, ElectionSummary, Receipt, ResultResponse, SharePurpose,
    SignatureShareRequest, SignedPartialDecryption,
};
use urna_keyceremony::ballot::{encrypt_ballot, spoil, BallotContext, EncryptedBallot, PlaintextBallot};
use urna_keyceremony::blsttc::SecretKey;
use urna_keyceremony::board;
use urna_keyceremony::ceremony::{
    CeremonyState, Custodian, CustodianSecrets, Phase as CPhase, SignedCeremonyMessage,
};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::election::{Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::elgamal::Accumulator;
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::tally::{self, TallyContext, WireSignatureShare};

/// Length of the full election's voting window (the close waits for its end).
const WINDOW_MS: i64 = 30_000;

/// The tests of this file run one at a time (an async lock: a failed test does not poison it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An election driven from the test: its custodians' keys and secrets, voters' codes, ballot context.
struct Election {
    id: String,
    params: ElectionParams,
    keys: Vec<SecretKey>,
    secrets: Vec<CustodianSecrets>,
    codes: Vec<CredentialCode>,
    ctx: BallotContext,
}

/// Posts until an answer other than 503 / no connection (spreading over `nodes`); returns it.
async fn post_until(
    c: &Cluster,
    nodes: &[u64],
    path: &str,
    token: Option<&str>,
    body: &impl serde::Serialize,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut k = 0usize;
    wait_for(&format!("POST {path}"), || {
        let node = nodes[k % nodes.len()];
        k += 1;
        let bytes = bytes.clone();
        async move {
            match post_raw(c, node, path, token, bytes).await {
                Some((503, _)) | None => None,
                Some(r) => Some(r),
            }
        }
    })
    .await
}

async fn post_ok(
    c: &Cluster,
    node: u64,
    path: &str,
    token: Option<&str>,
    body: &impl serde::Serialize,
) -> Value {
    let (s, v) = post_until(c, &[node], path, token, body).await;
    assert_eq!(s, 200, "POST {path}: {v}");
    v
}

async fn ceremony_state(c: &Cluster, node: u64, id: &str) -> CeremonyState {
    get_json(c, node, &format!("/v1/elections/{id}/ceremony?consistent=true")).await
}

async fn summary(c: &Cluster, node: u64, id: &str) -> ElectionSummary {
    get_json(c, node, &format!("/v1/elections/{id}?consistent=true")).await
}

/// Creates an election through node 1, runs the whole ceremony and rehearsal over HTTP (messages
/// spread over the nodes) and returns it in Ready.
async fn ready_election(
    c: &Cluster,
    id: &str,
    n: usize,
    q: usize,
    voters: usize,
    window: (i64, i64),
    min_ballots: u64,
) -> Election {
    let keys: Vec<SecretKey> = (0..n).map(|_| OsRng.gen()).collect();
    let codes: Vec<CredentialCode> = (0..voters).map(|_| CredentialCode::random(&mut OsRng)).collect();
    let manifest = Manifest::simple(&[(3, 1, 1), (2, 0, 2)]);
    let req = CreateElectionRequest {
        election_id: id.into(),
        manifest,
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: q,
        opens_at: window.0,
        closes_at: window.1,
        min_ballots: Some(min_ballots),
        ceremony_deadlines: None,
        roll: codes[..voters / 2].iter().map(|c| c.public()).collect(),
    };
    post_ok(c, 1, "/v1/elections", Some(ADMIN), &req).await;
    // The rest of the roll, through another node (forwarded to the leader).
    let rest: Vec<_> = codes[voters / 2..].iter().map(|c| c.public()).collect();
    post_ok(
        c,
        2,
        &format!("/v1/elections/{id}/roll"),
        Some(ADMIN),
        &json!({ "credentials": rest }),
    )
    .await;
    let params = summary(c, 3, id).await.params;
    let mut custodians: Vec<Custodian> = keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &params, &mut OsRng).unwrap())
        .collect();
    let node_of = |j: usize| (j % 3) as u64 + 1;
    let send = |j: usize, kind: &'static str, m: SignedCeremonyMessage| async move {
        post_ok(
            c,
            node_of(j),
            &format!("/v1/elections/{id}/ceremony/{kind}"),
            None,
            &m,
        )
        .await;
    };
    // A join signed with another custodian's identity key: 422, nothing recorded.
    let mut forged = custodians[1].join();
    forged.sender = 0;
    let (s, v) = post_until(
        c,
        &[2],
        &format!("/v1/elections/{id}/ceremony/joins"),
        None,
        &forged,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("bad_signature")),
        "{v}"
    );
    // A message under the wrong route: 400.
    let (s, _) = post_until(
        c,
        &[3],
        &format!("/v1/elections/{id}/ceremony/deals"),
        None,
        &custodians[0].join(),
    )
    .await;
    assert_eq!(s, 400);
    for (j, cu) in custodians.iter().enumerate() {
        send(j, "joins", cu.join()).await;
    }
    let st = ceremony_state(c, 1, id).await;
    assert_eq!(st.phase(), CPhase::Deal);
    for (j, cu) in custodians.iter_mut().enumerate() {
        let m = cu.deal(&st, &mut OsRng).unwrap();
        send(j, "deals", m).await;
    }
    let st = ceremony_state(c, 2, id).await;
    assert_eq!(st.phase(), CPhase::Check);
    for (j, cu) in custodians.iter().enumerate() {
        for m in cu.check(&st) {
            send(j, "acks", m).await;
        }
    }
    let st = ceremony_state(c, 3, id).await;
    assert_eq!(st.phase(), CPhase::Confirm);
    let mut secrets = Vec::new();
    for (j, cu) in custodians.iter().enumerate() {
        let s = cu.derive(&st).unwrap();
        send(j, "confirmations", cu.confirm(&st, &s, &mut OsRng).unwrap()).await;
        secrets.push(s);
    }
    let st = ceremony_state(c, 1, id).await;
    assert_eq!(st.phase(), CPhase::Rehearsal);
    let ct = *st.rehearsal().unwrap();
    let tctx = TallyContext::new(*st.base_hash(), n);
    let pks = &st.keys().unwrap().encryption;
    for j in 0..q {
        let kj = tally::key_share(pks, j).unwrap();
        let pd =
            tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &[ct], &mut OsRng).unwrap();
        let s = SignedPartialDecryption::sign(&keys[j], st.base_hash(), SharePurpose::Rehearsal, j, pd);
        post_ok(
            c,
            node_of(j),
            &format!("/v1/elections/{id}/ceremony/rehearsal"),
            None,
            &s,
        )
        .await;
    }
    let sum = summary(c, 2, id).await;
    assert_eq!(sum.phase.to_string(), "ready");
    assert_eq!(sum.roll_count, voters as u64);
    let q_ext: [u8; 32] = hex::decode(sum.extended_hash.unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let ctx = BallotContext::new(
        id,
        q_ext,
        params.manifest.clone(),
        st.keys().unwrap().encryption_key,
    )
    .unwrap();
    Election {
        id: id.into(),
        params,
        keys,
        secrets,
        codes,
        ctx,
    }
}

/// A ballot of voter `v` with a choice derived from `v`; returns it with its flat plaintext.
fn ballot(e: &Election, v: usize) -> (EncryptedBallot, Vec<u64>) {
    let first = v % 3;
    let second: Vec<usize> = match v % 4 {
        0 => vec![],
        1 => vec![0],
        2 => vec![1],
        _ => vec![0, 1],
    };
    let p = PlaintextBallot::from_selected(e.ctx.manifest(), &[vec![first], second]).unwrap();
    let flat = p.contests.iter().flatten().map(|&x| u64::from(x)).collect();
    let (b, _) = encrypt_ballot(&e.ctx, &p, &e.codes[v].signing_key(), &mut OsRng).unwrap();
    (b, flat)
}

/// Casts until a receipt (retrying over `nodes` on 503 or a lost connection; a retry of the same
/// bytes is idempotent).
async fn cast(c: &Cluster, nodes: &[u64], id: &str, b: &EncryptedBallot) -> Receipt {
    let (s, v) = post_until(c, nodes, &format!("/v1/elections/{id}/ballots"), None, b).await;
    assert_eq!(s, 200, "cast: {v}");
    serde_json::from_value(v).unwrap()
}

async fn open(c: &Cluster, id: &str) -> u64 {
    let v = post_ok(c, 3, &format!("/v1/elections/{id}/open"), Some(ADMIN), &json!({})).await;
    v["index"].as_u64().unwrap()
}

/// A receipt without its signed head (which differs between answers of the same ballot).
fn bare(r: &Receipt) -> Receipt {
    Receipt {
        signed_head: None,
        ..r.clone()
    }
}

fn without_head(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("signed_head");
    }
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_election_on_three_nodes() {
    let _g = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut c = Cluster::new(3, "");
    start_and_init(&mut c).await;
    let voters = 300;
    let e = ready_election(
        &c,
        "full",
        5,
        3,
        voters + 1,
        (now_ms() - 1_000, now_ms() + WINDOW_MS),
        10,
    )
    .await;
    let t_ceremony = t0.elapsed();

    // Open: the zero-ballot confirmation; every node's digest at the open index agrees.
    let open_index = open(&c, &e.id).await;
    let mut digests = Vec::new();
    for id in 1..=3 {
        let d = wait_for("digest at the open index", || async {
            c.get(id, &format!("/v1/digest?index={open_index}"))
                .await
                .filter(|(s, _)| *s == 200)
                .map(|(_, v)| v["digest"].as_str().unwrap().to_string())
        })
        .await;
        digests.push(d);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert_eq!(summary(&c, 1, &e.id).await.ballot_count, 0);

    // Double vote: the same credential with two different ballots on two nodes at once.
    let dv = voters; // the extra voter
    let (b1, _) = ballot(&e, dv);
    let (b2, _) = ballot(&e, dv);
    let path = format!("/v1/elections/{}/ballots", e.id);
    let (r1, r2) = tokio::join!(
        post_until(&c, &[2], &path, None, &b1),
        post_until(&c, &[3], &path, None, &b2)
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{r1:?} {r2:?}");
    let (winner, loser) = if r1.0 == 200 { (&b1, &r2) } else { (&b2, &r1) };
    assert_eq!(code(&loser.1), "already_voted");
    let original = if r1.0 == 200 { r1.1.clone() } else { r2.1.clone() };
    // An identical retry on every node returns the original receipt.
    for node in 1..=3 {
        let (s, v) = post_until(&c, &[node], &path, None, winner).await;
        assert_eq!((s, without_head(&v)), (200, without_head(&original)));
        assert!(
            v["signed_head"].is_object(),
            "a retry's receipt carries a signed head: {v}"
        );
    }
    assert_eq!(summary(&c, 1, &e.id).await.ballot_count, 1);

    // 300 ballots through all three nodes concurrently.
    let t_vote = Instant::now();
    let mut truth = vec![0u64; 5];
    let mut ballots = Vec::new();
    for v in 0..voters {
        let (b, flat) = ballot(&e, v);
        for (t, x) in truth.iter_mut().zip(&flat) {
            *t += x;
        }
        ballots.push(b);
    }
    let t_encrypt = t_vote.elapsed();
    let t_cast = Instant::now();
    let receipts: Vec<Receipt> =
        futures::future::join_all(ballots.chunks(25).enumerate().map(|(k, chunk)| {
            let c = &c;
            let id = e.id.clone();
            async move {
                let mut out = Vec::new();
                for b in chunk {
                    let first = (k % 3) as u64 + 1;
                    out.push(cast(c, &[first, first % 3 + 1], &id, b).await);
                }
                out
            }
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
    let cast_secs = t_cast.elapsed().as_secs_f64();
    assert_eq!(receipts.len(), voters);
    let sum = summary(&c, 2, &e.id).await;
    assert_eq!(sum.ballot_count, voters as u64 + 1);
    // A receipt can be looked up on any node, with an inclusion proof against the current root.
    for (k, r) in receipts.iter().enumerate().step_by(37) {
        let node = (k % 3) as u64 + 1;
        let l: BallotLookup = get_json(
            &c,
            node,
            &format!(
                "/v1/elections/{}/ballots/{}?min_index={}",
                e.id,
                hex::encode(r.tracking_code),
                r.index
            ),
        )
        .await;
        assert_eq!(l.receipt, bare(r));
        assert!(board::verify_inclusion(&r.ballot_hash, &l.proof, &l.tree_root));
    }

    // A challenge (spoiled ballot) while open.
    let p = PlaintextBallot::from_selected(e.ctx.manifest(), &[vec![2], vec![]]).unwrap();
    let (sb, secrets) = encrypt_ballot(&e.ctx, &p, &e.codes[0].signing_key(), &mut OsRng).unwrap();
    let v = post_ok(
        &c,
        2,
        &format!("/v1/elections/{}/challenges", e.id),
        None,
        &spoil(&sb, &secrets),
    )
    .await;
    assert_eq!(v["seq"], 0);

    // Closing before closes_at is refused; then wait for the window to end and close.
    let (s, v) = post_until(
        &c,
        &[1],
        &format!("/v1/elections/{}/close", e.id),
        Some(ADMIN),
        &json!({}),
    )
    .await;
    assert_eq!((s, code(&v)), (409, "too_early"));
    let waited = Instant::now();
    wait_until_ms(e.params.closes_at).await;
    let idle = waited.elapsed();
    let v = post_ok(
        &c,
        1,
        &format!("/v1/elections/{}/close", e.id),
        Some(ADMIN),
        &json!({}),
    )
    .await;
    assert_eq!(v["phase"], "tallying", "{v}");
    let sum = summary(&c, 3, &e.id).await;
    assert_eq!(sum.ballot_count, voters as u64 + 1);
    // Custodians recompute the aggregate from the ballots themselves before decrypting.
    let mut accs = vec![Accumulator::default(); 5];
    for b in ballots.iter().chain(std::iter::once(winner)) {
        let cts = b
            .contests
            .iter()
            .flat_map(|c| c.selections.iter().map(|s| s.ciphertext));
        for (a, ct) in accs.iter_mut().zip(cts) {
            a.add(&ct);
        }
    }
    let agg: Vec<_> = accs.iter().map(|a| a.to_ciphertext().unwrap()).collect();
    assert_eq!(sum.aggregate.as_ref(), Some(&agg));
    let (_, flat) = ballot(&e, dv);
    for (t, x) in truth.iter_mut().zip(&flat) {
        *t += x;
    }

    // Tally by custodians 4, 0 and 2, each through another node.
    let st = ceremony_state(&c, 1, &e.id).await;
    let keys = st.keys().unwrap().clone();
    let q_ext: [u8; 32] = hex::decode(sum.extended_hash.clone().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let tctx = TallyContext::new(q_ext, 5);
    for (k, j) in [4usize, 0, 2].into_iter().enumerate() {
        let kj = tally::key_share(&keys.encryption, j).unwrap();
        let pd =
            tally::partial_decrypt(&tctx, j, &e.secrets[j].encryption_share, &kj, &agg, &mut OsRng).unwrap();
        let s = SignedPartialDecryption::sign(&e.keys[j], &q_ext, SharePurpose::Tally, j, pd);
        post_ok(
            &c,
            k as u64 + 1,
            &format!("/v1/elections/{}/tally/shares", e.id),
            None,
            &s,
        )
        .await;
    }
    let res: ResultResponse =
        get_json(&c, 2, &format!("/v1/elections/{}/result?consistent=true", e.id)).await;
    let rh: [u8; 32] = hex::decode(res.result_hash.unwrap()).unwrap().try_into().unwrap();
    for (k, j) in [1usize, 3, 4].into_iter().enumerate() {
        let share = WireSignatureShare(tally::sign_result(&e.secrets[j].signing_share, &rh));
        let body = SignatureShareRequest { custodian: j, share };
        post_ok(
            &c,
            k as u64 + 1,
            &format!("/v1/elections/{}/tally/signatures", e.id),
            None,
            &body,
        )
        .await;
    }
    let res: ResultResponse =
        get_json(&c, 3, &format!("/v1/elections/{}/result?consistent=true", e.id)).await;
    assert_eq!(res.phase.to_string(), "published");
    assert_eq!(res.tally.unwrap().flat(), truth);
    let cert = res.certificate.unwrap();
    assert_eq!(cert.result_hash, rh);
    cert.verify(&keys.signing.public_key()).unwrap();
    // The election record served by every node re-verifies offline, trusting no node.
    for node in 1..=3 {
        let record: urna_keyceremony::record::ElectionRecord = get_json(
            &c,
            node,
            &format!("/v1/elections/{}/record?consistent=true", e.id),
        )
        .await;
        assert_eq!(record.ballots.len(), voters + 1);
        let report = urna_keyceremony::record::verify_record(&record);
        assert!(report.passed(), "node {node}: {:?}", report.first_failure());
        assert_eq!(record.tally.as_ref().map(|t| t.flat()), Some(truth.clone()));
    }
    // The audit trail names who caused every transition.
    let ev: Value = get_json(&c, 2, &format!("/v1/elections/{}/events?consistent=true", e.id)).await;
    let events = ev["events"].as_array().unwrap();
    let who = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|x| x["kind"] == kind)
            .map(|x| x["actor"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(who("create_election"), ["alice"]);
    assert_eq!(who("open"), ["alice"]);
    assert_eq!(who("close"), ["alice"]);
    assert_eq!(who("tally_share"), ["custodian-4", "custodian-0", "custodian-2"]);
    assert_eq!(who("cast").len(), voters + 1);
    assert_eq!(events.len() as u64, summary(&c, 1, &e.id).await.event_count);
    // Every node holds the same data: same digest at the same final index.
    let (index, _) = c.converged(&[1, 2, 3], 0).await;
    for node in 1..=3 {
        let s: Value = get_json(&c, node, "/v1/status").await;
        assert_eq!(s["elections"][0]["phase"], "published");
    }
    eprintln!(
        "full election: ceremony {:.1?}, encrypt {voters} {:.1?}, cast {voters} in {cast_secs:.1} s ({:.0}/s), idle until close {:.1?}, final index {index}, total {:.1?}",
        t_ceremony,
        t_encrypt,
        voters as f64 / cast_secs,
        idle,
        t0.elapsed()
    );
}

async fn wait_until_ms(t: i64) {
    while now_ms() < t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_voting_then_whole_cluster_restarted() {
    let _g = SERIAL.lock().await;
    // Frequent snapshots and no log kept behind them: the restarted node must catch up by a snapshot
    // that carries the election trees.
    let mut c = Cluster::new(
        3,
        "snapshot_logs_since_last = 20\nmax_in_snapshot_log_to_keep = 0",
    );
    start_and_init(&mut c).await;
    let voters = 60;
    let e = ready_election(
        &c,
        "crash",
        3,
        2,
        voters,
        (now_ms() - 1_000, now_ms() + 600_000),
        10,
    )
    .await;
    open(&c, &e.id).await;
    let ballots: Vec<EncryptedBallot> = (0..voters).map(|v| ballot(&e, v).0).collect();
    let leader = c.leader(&[1, 2, 3]).await;
    let pid = c.node(leader).child.as_ref().unwrap().id();

    // Four voters' streams over all nodes; the leader is SIGKILLed once 20 ballots are in.
    let voting = futures::future::join_all(ballots.chunks(15).enumerate().map(|(k, chunk)| {
        let c = &c;
        let id = e.id.clone();
        async move {
            let mut out = Vec::new();
            for b in chunk {
                let order: Vec<u64> = (0..3).map(|i| ((k + i) % 3) as u64 + 1).collect();
                out.push(cast(c, &order, &id, b).await);
            }
            out
        }
    }));
    let killer = async {
        let at_kill = wait_for("20 ballots before the kill", || async {
            let s = c.status(leader).await?;
            let n = s["elections"][0]["ballot_count"].as_u64()?;
            (n >= 20).then(|| s["applied_index"].as_u64()).flatten()
        })
        .await;
        let ok = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        at_kill
    };
    let (receipts, at_kill) = tokio::join!(voting, killer);
    let receipts: Vec<Receipt> = receipts.into_iter().flatten().collect();
    assert_eq!(receipts.len(), voters);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.leader(&survivors).await;
    assert_ne!(new_leader, leader);
    wait_for("the new leader to purge past the old leader's log", || async {
        let s = c.status(new_leader).await?;
        s["purged_index"].as_u64().filter(|p| *p > at_kill + 5)
    })
    .await;

    // The old leader restarts and catches up; every acknowledged ballot is there, on every node.
    c.kill(leader);
    c.start(leader);
    let max_index = receipts.iter().map(|r| r.index).max().unwrap();
    let (index, digest) = c.converged(&[1, 2, 3], max_index).await;
    for r in &receipts {
        let path = format!("/v1/elections/{}/ballots/{}", e.id, hex::encode(r.tracking_code));
        let l: BallotLookup = get_json(&c, leader, &path).await;
        assert_eq!(l.receipt, bare(r));
    }
    let log = std::fs::read_to_string(&c.node(leader).log).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "the old leader should catch up by a snapshot"
    );
    let mut seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (0..voters as u64).collect::<Vec<_>>());
    let before: Vec<ElectionSummary> =
        futures::future::join_all((1..=3).map(|n| summary(&c, n, &e.id))).await;
    for s in &before {
        assert_eq!(s.ballot_count, voters as u64);
        assert_eq!(s.tracking_head, before[0].tracking_head);
        assert_eq!(s.event_head, before[0].event_head);
    }

    // The whole cluster is killed and restarted: same state, same ballots, same digests.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    c.leader(&[1, 2, 3]).await;
    c.converged(&[1, 2, 3], index).await;
    for n in 1..=3 {
        let (s, v) = wait_for("digest after restart", || async {
            c.get(n, &format!("/v1/digest?index={index}"))
                .await
                .filter(|(s, _)| *s == 200)
        })
        .await;
        assert_eq!((s, v["digest"].as_str().unwrap()), (200, digest.as_str()));
        let after = summary(&c, n, &e.id).await;
        let b = &before[0];
        assert_eq!(
            (
                after.ballot_count,
                &after.tracking_head,
                &after.event_head,
                after.event_count
            ),
            (b.ballot_count, &b.tracking_head, &b.event_head, b.event_count)
        );
    }
    let l: BallotLookup = get_json(
        &c,
        2,
        &format!(
            "/v1/elections/{}/ballots/{}",
            e.id,
            hex::encode(receipts[0].tracking_code)
        ),
    )
    .await;
    assert_eq!(l.receipt, bare(&receipts[0]));
}

/// A compressed G1 encoding of a point on the curve but outside the prime-order subgroup.
fn non_subgroup_point_hex() -> String {
    use urna_keyceremony::blsttc::G1Affine;
    for x in 1u64.. {
        let mut b = [0u8; 48];
        b[40..].copy_from_slice(&x.to_be_bytes());
        b[0] |= 0x80;
        let on_curve = bool::from(G1Affine::from_compressed_unchecked(&b).is_some());
        let in_group = bool::from(G1Affine::from_compressed(&b).is_some());
        if on_curve && !in_group {
            return hex::encode(b);
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_the_count_does_not_move() {
    let _g = SERIAL.lock().await;
    let mut c = Cluster::new(3, "");
    start_and_init(&mut c).await;
    let window_end = now_ms() + 12_000;
    let e = ready_election(&c, "hostile", 3, 2, 6, (now_ms() - 1_000, window_end), 10).await;
    let path = format!("/v1/elections/{}/ballots", e.id);
    let count = |n: u64| {
        let c = &c;
        let id = e.id.clone();
        async move { summary(c, n, &id).await.ballot_count }
    };
    let post = |node: u64, p: String, body: Vec<u8>| {
        let c = &c;
        async move {
            wait_for("an answer", || async {
                post_raw(c, node, &p, None, body.clone())
                    .await
                    .filter(|(s, _)| *s != 503)
            })
            .await
        }
    };
    let good = |v: usize| serde_json::to_vec(&ballot(&e, v).0).unwrap();

    // Unknown election: 404.
    let (s, v) = post(1, "/v1/elections/nope/ballots".into(), good(0)).await;
    assert_eq!((s, code(&v)), (404, "unknown_election"));
    // Before Open: 409.
    let (s, v) = post(2, path.clone(), good(0)).await;
    assert_eq!((s, code(&v)), (409, "wrong_phase"), "{v}");
    // Operator calls need the admin role.
    let (s, v) = post_raw(
        &c,
        1,
        &format!("/v1/elections/{}/open", e.id),
        None,
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!((s, code(&v)), (401, "unauthenticated"));
    let (s, v) = post_raw(
        &c,
        1,
        &format!("/v1/elections/{}/open", e.id),
        Some(OPS),
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!((s, code(&v)), (403, "forbidden"));
    open(&c, &e.id).await;

    // Malformed JSON: 400.
    let (s, v) = post(3, path.clone(), b"{\"election_id\": ".to_vec()).await;
    assert_eq!((s, code(&v)), (400, "malformed"), "{v}");
    // A point not in the subgroup: 400, never a panic.
    let mut j: Value = serde_json::from_slice(&good(1)).unwrap();
    j["contests"][0]["selections"][0]["ciphertext"]["alpha"] = json!(non_subgroup_point_hex());
    let (s, v) = post(1, path.clone(), serde_json::to_vec(&j).unwrap()).await;
    assert_eq!((s, code(&v)), (400, "malformed"), "{v}");
    // A tampered proof (re-signed, so only the proof is wrong): 422.
    let (mut b, _) = ballot(&e, 1);
    let r = &mut b.contests[1].selections[0].proof.branches[0].response;
    *r = urna_keyceremony::group::Scalar(r.0 + urna_keyceremony::blsttc::Fr::from(1u64));
    b.sign(&e.ctx, &e.codes[1].signing_key());
    let (s, v) = post(2, path.clone(), serde_json::to_vec(&b).unwrap()).await;
    assert_eq!((s, code(&v)), (422, "bad_proof"), "{v}");
    // A bad credential signature: 422.
    let (mut b, _) = ballot(&e, 1);
    b.signature = ballot(&e, 2).0.signature;
    let (s, v) = post(3, path.clone(), serde_json::to_vec(&b).unwrap()).await;
    assert_eq!((s, code(&v)), (422, "bad_signature"), "{v}");
    // A credential not on the roll: 409.
    let stranger = CredentialCode::random(&mut OsRng);
    let p = PlaintextBallot::from_selected(e.ctx.manifest(), &[vec![0], vec![]]).unwrap();
    let (b, _) = encrypt_ballot(&e.ctx, &p, &stranger.signing_key(), &mut OsRng).unwrap();
    let (s, v) = post(1, path.clone(), serde_json::to_vec(&b).unwrap()).await;
    assert_eq!((s, code(&v)), (409, "not_on_roll"), "{v}");
    // Custodian messages out of phase: 409.
    let (s, v) = post(
        3,
        format!("/v1/elections/{}/tally/signatures", e.id),
        serde_json::to_vec(&SignatureShareRequest {
            custodian: 0,
            share: WireSignatureShare(tally::sign_result(&e.secrets[0].signing_share, &[0u8; 32])),
        })
        .unwrap(),
    )
    .await;
    assert_eq!((s, code(&v)), (409, "wrong_phase"), "{v}");
    // Too large: 413.
    let (s, v) = post(2, path.clone(), vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!((s, code(&v)), (413, "too_large"), "{v}");
    assert_eq!(count(1).await, 0);

    // One good ballot moves the count to 1, and nothing else does.
    let r = cast(&c, &[3], &e.id, &ballot(&e, 3).0).await;
    assert_eq!(r.seq, 0);
    let (s, v) = post(1, path.clone(), good(3)).await;
    assert_eq!((s, code(&v)), (409, "already_voted"), "{v}");
    for n in 1..=3 {
        let _ = wait_for("applied", || async { (count(n).await == 1).then_some(()) }).await;
    }

    // After the window: 409, and the receiving node closes the box (too few ballots: Closed).
    wait_until_ms(window_end).await;
    let (s, v) = post(2, path.clone(), good(4)).await;
    assert_eq!((s, code(&v)), (409, "election_closed"), "{v}");
    let sum = summary(&c, 1, &e.id).await;
    assert_eq!(sum.phase.to_string(), "closed");
    assert!(sum.closed_reason.unwrap().contains("below the minimum"));
    assert_eq!(sum.ballot_count, 1);
    let (s, v) = post(3, path.clone(), good(5)).await;
    assert_eq!((s, code(&v)), (409, "election_closed"), "{v}");
    let (s, v) = post_raw(
        &c,
        1,
        &format!("/v1/elections/{}/close", e.id),
        Some(ADMIN),
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!((s, code(&v)), (409, "election_closed"), "{v}");
    c.converged(&[1, 2, 3], 0).await;
}

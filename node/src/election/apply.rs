//! The judge: applies election commands deterministically inside the store's sled transaction.
//!
//! Every state-dependent condition is re-checked here (phase, window by entry time, roll membership,
//! one ballot per credential, duplicate ciphertexts, ceremony rules through [`CeremonyState::apply`]).
//! A failing check returns a [`Fail::Reject`] *before anything is written*, so a refused entry is a
//! recorded no-op. Proofs and signatures that are expensive were verified by the node that proposed
//! the entry (the leader; followers forward writes to it); nothing here is randomised.

use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use urna_client::wire::ElectionPhase;
use urna_keyceremony::ballot::SpoiledBallot;
use urna_keyceremony::blsttc;
use urna_keyceremony::board;
use urna_keyceremony::ceremony::{
    CeremonyError, CeremonyState, Deadlines, Phase as CPhase, SignedCeremonyMessage,
};
use urna_keyceremony::credential::{roll_hash, PublicCredential};
use urna_keyceremony::election::{extended_hash, ElectionParams};
use urna_keyceremony::elgamal::Ciphertext;
use urna_keyceremony::hash::{Hash32, Transcript};
use urna_keyceremony::record::{CeremonyEvent, CloseSummary};
use urna_keyceremony::tally::{self, Certificate, PartialDecryption, WireSignature, WireSignatureShare};

use super::state::*;
use crate::command::{Command, Reply};
use crate::store::{AppTrees, ApplyContext, ApplyError, Outcome};

/// Why an election command did not apply.
pub enum Fail {
    /// A refused command: snake_case code and message (a recorded no-op).
    Reject(&'static str, String),
    /// Storage corruption: stops the node.
    Fatal(ApplyError),
}

impl From<ApplyError> for Fail {
    fn from(e: ApplyError) -> Self {
        Fail::Fatal(e)
    }
}

impl From<UnabortableTransactionError> for Fail {
    fn from(e: UnabortableTransactionError) -> Self {
        Fail::Fatal(e.into())
    }
}

type Step<T> = Result<T, Fail>;

fn reject<T>(code: &'static str, message: impl Into<String>) -> Step<T> {
    Err(Fail::Reject(code, message.into()))
}

fn fatal(what: impl std::fmt::Display) -> Fail {
    Fail::Fatal(ApplyError::Corrupt(what.to_string()))
}

/// Codes of refusals that concern a proof or signature (the API answers 422 for them).
pub const PROOF_CODES: &[&str] = &["bad_signature", "bad_proof", "bad_share"];

struct Tx<'a, 'b> {
    trees: &'a AppTrees<'b>,
}

impl Tx<'_, '_> {
    fn t(&self, name: &str) -> Step<&TransactionalTree> {
        Ok(self.trees.tree(name)?)
    }
    fn put(&self, tree: &str, k: &[u8], v: &[u8]) -> Step<()> {
        self.t(tree)?.insert(k, v)?;
        Ok(())
    }
    fn put_json<T: serde::Serialize>(&self, tree: &str, k: &[u8], v: &T) -> Step<()> {
        let bytes = serde_json::to_vec(v).map_err(fatal)?;
        self.put(tree, k, &bytes)
    }
    fn put_bin<T: serde::Serialize>(&self, tree: &str, k: &[u8], v: &T) -> Step<()> {
        let bytes = bincode::serialize(v).map_err(fatal)?;
        self.put(tree, k, &bytes)
    }
}

/// Applies one election command. `Ok(None)` if the command is not an election command.
pub fn apply(
    ctx: &ApplyContext<'_>,
    trees: &AppTrees<'_>,
    cmd: &Command,
) -> Result<Option<Outcome>, ApplyError> {
    let Some(id) = cmd.election_id() else {
        return Ok(None);
    };
    let tx = Tx { trees };
    let res = dispatch(ctx, &tx, id, cmd).and_then(|(reply, detail)| {
        if let Some(detail) = detail {
            record_event(ctx, &tx, id, cmd, &detail)?;
        }
        Ok(reply)
    });
    match res {
        Ok(reply) => Ok(Some(Outcome::Applied(reply))),
        Err(Fail::Reject(code, message)) => Ok(Some(Outcome::Rejected {
            code: code.to_string(),
            message,
        })),
        Err(Fail::Fatal(e)) => Err(e),
    }
}

fn dispatch(ctx: &ApplyContext<'_>, tx: &Tx, id: &str, cmd: &Command) -> Step<(Reply, Option<String>)> {
    match cmd {
        Command::CreateElection {
            params,
            deadlines,
            roll,
        } => create(ctx, tx, params, deadlines, roll),
        Command::AddRoll { credentials, .. } => add_roll(tx, id, credentials),
        Command::Ceremony { message, .. } => ceremony_message(tx, id, message),
        Command::Advance { .. } => advance(ctx, tx, id),
        Command::RehearsalShare {
            custodian,
            partial,
            signature,
            ..
        } => rehearsal_share(ctx, tx, id, *custodian, partial, signature),
        Command::Open { .. } => open(ctx, tx, id),
        Command::Cast {
            ballot_hash, ballot, ..
        } => cast(ctx, tx, id, ballot_hash, ballot),
        Command::Close { .. } => close(ctx, tx, id),
        Command::Challenge { spoiled, .. } => challenge(ctx, tx, id, spoiled),
        Command::TallyShare {
            custodian,
            partial,
            signature,
            ..
        } => tally_share(ctx, tx, id, *custodian, partial, signature),
        Command::SignatureShare { custodian, share, .. } => signature_share(tx, id, *custodian, share),
        Command::Noop | Command::Note { .. } | Command::RegisterNodeKey { .. } => {
            reject("not_an_election_command", "not an election command")
        }
    }
}

fn elected(phase: ElectionPhase, id: &str, detail: impl Into<String>) -> (Reply, Option<String>) {
    let detail = detail.into();
    (
        Reply::Election {
            election_id: id.to_string(),
            phase,
            detail: detail.clone(),
        },
        Some(detail),
    )
}

/// Appends the entry to the election's event chain: `H("urna/v1/event", prev, seq, index, time,
/// kind, actor, H(command bytes))`.
fn record_event(ctx: &ApplyContext<'_>, tx: &Tx, id: &str, cmd: &Command, detail: &str) -> Step<()> {
    let mut chain = chain(tx.trees, id)?;
    let cmd_bytes = bincode::serialize(cmd).map_err(fatal)?;
    let head = Transcript::new("urna/v1/event")
        .hash(&chain.head)
        .u64(chain.count)
        .u64(ctx.log_id.index)
        .u64(ctx.time_ms)
        .str(cmd.kind())
        .str(ctx.proposer)
        .hash(&urna_keyceremony::hash::h("urna/v1/event/command", &[&cmd_bytes]))
        .digest();
    let ev = EventRecord {
        seq: chain.count,
        index: ctx.log_id.index,
        time_ms: ctx.time_ms,
        kind: cmd.kind().to_string(),
        actor: ctx.proposer.to_string(),
        detail: detail.to_string(),
        head,
    };
    tx.put_json(T_EVENTS, &key_n(id, chain.count), &ev)?;
    chain.head = head;
    chain.count += 1;
    tx.put_bin(T_CHAIN, id.as_bytes(), &chain)
}

fn load(tx: &Tx, id: &str) -> Step<ElectionRecord> {
    match record(tx.trees, id)? {
        Some(r) => Ok(r),
        None => reject("unknown_election", format!("there is no election {id:?}")),
    }
}

fn load_ceremony(tx: &Tx, id: &str) -> Step<CeremonyState> {
    ceremony(tx.trees, id)?.ok_or_else(|| fatal(format!("election {id} has no ceremony state")))
}

fn load_box(tx: &Tx, id: &str) -> Step<BoxState> {
    box_state(tx.trees, id)?.ok_or_else(|| fatal(format!("election {id} has no ballot box")))
}

fn wrong_phase<T>(r: &ElectionRecord, wanted: &str) -> Step<T> {
    let code = match r.phase {
        ElectionPhase::Closed | ElectionPhase::Tallying | ElectionPhase::Published if wanted == "open" => {
            "election_closed"
        }
        _ => "wrong_phase",
    };
    reject(
        code,
        format!(
            "election {} is {}; this needs it {wanted}",
            r.params.election_id, r.phase
        ),
    )
}

fn create(
    ctx: &ApplyContext<'_>,
    tx: &Tx,
    params: &ElectionParams,
    deadlines: &Deadlines,
    roll: &[PublicCredential],
) -> Step<(Reply, Option<String>)> {
    let id = params.election_id.as_str();
    if let Err(e) = params.validate() {
        return reject("invalid_params", e.to_string());
    }
    if record(tx.trees, id)?.is_some() {
        return reject("election_exists", format!("election {id:?} already exists"));
    }
    let state = match CeremonyState::new(params, *deadlines) {
        Ok(s) => s,
        Err(e) => return reject("invalid_params", e.to_string()),
    };
    let mut rec = ElectionRecord {
        params: params.clone(),
        base_hash: params.base_hash(),
        phase: ElectionPhase::Draft,
        created_by: ctx.proposer.to_string(),
        created_index: ctx.log_id.index,
        roll_count: 0,
        roll_hash: None,
        extended_hash: None,
        open_index: None,
        close_index: None,
        close_entry_hash: None,
        close_summary: None,
        final_count: None,
        tree_root: None,
        aggregate: None,
        closed_reason: None,
        tally: None,
        result_hash: None,
        certificate: None,
    };
    let added = append_roll(tx, &mut rec, roll)?;
    tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    tx.put_json(T_CEREMONY, id.as_bytes(), &state)?;
    Ok(elected(
        ElectionPhase::Draft,
        id,
        format!("created with {added} credentials on the roll"),
    ))
}

/// Appends credentials not yet on the roll; returns how many were new. Writes only after all reads
/// needed for the decision, and only when the caller has passed every check.
fn append_roll(tx: &Tx, rec: &mut ElectionRecord, creds: &[PublicCredential]) -> Step<u64> {
    let id = rec.params.election_id.clone();
    let mut added = 0;
    let mut seen = std::collections::BTreeSet::new();
    for c in creds {
        let b = c.to_bytes();
        if !seen.insert(b) || on_roll(tx.trees, &id, c)? {
            continue;
        }
        tx.put(T_ROLL, &key(&id, &b), &rec.roll_count.to_be_bytes())?;
        tx.put(T_ROLL_LIST, &key_n(&id, rec.roll_count), &b)?;
        rec.roll_count += 1;
        added += 1;
    }
    Ok(added)
}

fn add_roll(tx: &Tx, id: &str, creds: &[PublicCredential]) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if !matches!(rec.phase, ElectionPhase::Draft | ElectionPhase::KeyCeremony) {
        return reject("roll_frozen", format!("the roll of {id} was frozen at Ready"));
    }
    let added = append_roll(tx, &mut rec, creds)?;
    tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    Ok(elected(
        rec.phase,
        id,
        format!("{added} credentials added, roll size {}", rec.roll_count),
    ))
}

pub(crate) fn ceremony_code(e: &CeremonyError) -> &'static str {
    match e {
        CeremonyError::BadSignature { .. } => "bad_signature",
        CeremonyError::BadProof { .. }
        | CeremonyError::BadShareProof { .. }
        | CeremonyError::BadSignatureShare { .. }
        | CeremonyError::ShareKeyMismatch { .. } => "bad_proof",
        CeremonyError::WrongPhase { .. } | CeremonyError::NotInPhase { .. } => "wrong_phase",
        CeremonyError::Duplicate { .. } => "duplicate",
        CeremonyError::DeadlineNotReached { .. } => "deadline_not_reached",
        CeremonyError::NoDeadline { .. } => "no_deadline",
        CeremonyError::Aborted(_) => "ceremony_aborted",
        CeremonyError::AlreadyComplete => "ceremony_complete",
        _ => "ceremony_refused",
    }
}

fn ceremony_message(tx: &Tx, id: &str, message: &str) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if !matches!(rec.phase, ElectionPhase::Draft | ElectionPhase::KeyCeremony) {
        return wrong_phase(&rec, "in the key ceremony");
    }
    let msg: SignedCeremonyMessage = match serde_json::from_str(message) {
        Ok(m) => m,
        Err(e) => return reject("malformed", format!("the ceremony message does not parse: {e}")),
    };
    let mut state = load_ceremony(tx, id)?;
    if let Err(e) = state.apply(&msg) {
        return reject(ceremony_code(&e), e.to_string());
    }
    let detail = format!(
        "{} from custodian {}; ceremony phase {}",
        msg.body.kind(),
        msg.sender,
        state.phase()
    );
    tx.put_json(T_CEREMONY, id.as_bytes(), &state)?;
    log_ceremony_event(tx, id, &CeremonyEvent::Message(Box::new(msg)))?;
    if rec.phase == ElectionPhase::Draft {
        rec.phase = ElectionPhase::KeyCeremony;
        tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    }
    Ok(elected(rec.phase, id, detail))
}

/// Appends an accepted ceremony event to the election's ordered ceremony log (the record replays it).
fn log_ceremony_event(tx: &Tx, id: &str, event: &CeremonyEvent) -> Step<()> {
    let seq = get_u64(tx.trees, T_CEREMONY_LOG, id.as_bytes())?.unwrap_or(0);
    tx.put_json(T_CEREMONY_LOG, &key_n(id, seq), event)?;
    tx.put(T_CEREMONY_LOG, id.as_bytes(), &(seq + 1).to_be_bytes())
}

fn advance(ctx: &ApplyContext<'_>, tx: &Tx, id: &str) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if !matches!(rec.phase, ElectionPhase::Draft | ElectionPhase::KeyCeremony) {
        return wrong_phase(&rec, "in the key ceremony");
    }
    let mut state = load_ceremony(tx, id)?;
    let before = state.phase();
    let now = i64::try_from(ctx.time_ms).unwrap_or(i64::MAX);
    if let Err(e) = state.advance(now) {
        return reject(ceremony_code(&e), e.to_string());
    }
    tx.put_json(T_CEREMONY, id.as_bytes(), &state)?;
    log_ceremony_event(tx, id, &CeremonyEvent::Advance { time_ms: now })?;
    rec.phase = ElectionPhase::KeyCeremony;
    tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    let mut detail = format!("ceremony advanced from {before} to {}", state.phase());
    if let Some(r) = state.abort_reason() {
        detail.push_str(&format!(" ({r})"));
    }
    Ok(elected(rec.phase, id, detail))
}

fn rehearsal_share(
    ctx: &ApplyContext<'_>,
    tx: &Tx,
    id: &str,
    j: usize,
    partial: &PartialDecryption,
    signature: &WireSignature,
) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if rec.phase != ElectionPhase::KeyCeremony {
        return wrong_phase(&rec, "in the key ceremony");
    }
    let mut state = load_ceremony(tx, id)?;
    let Some(ct) = state
        .rehearsal()
        .copied()
        .filter(|_| state.phase() == CPhase::Rehearsal)
    else {
        return reject(
            "wrong_phase",
            format!(
                "the ceremony is in the {} phase, not the rehearsal",
                state.phase()
            ),
        );
    };
    if !state.confirmed().contains(&j) {
        return reject(
            "not_confirmed",
            format!("custodian {j} did not confirm its share"),
        );
    }
    let n = state.custodian_count();
    let mut all = shares(tx.trees, id, PURPOSE_REHEARSAL, n)?;
    if all.iter().any(|(k, _)| *k == j) {
        return reject(
            "duplicate",
            format!("custodian {j} already posted its rehearsal share"),
        );
    }
    if partial.shares.len() != 1 {
        return reject("malformed", "a rehearsal share has exactly one decryption share");
    }
    let stored = StoredShare {
        index: ctx.log_id.index,
        partial: partial.clone(),
        signature: signature.clone(),
    };
    all.push((j, stored.clone()));
    all.sort_by_key(|(k, _)| *k);
    let q = state.quorum();
    let mut detail = format!("rehearsal share of custodian {j} ({} of {q})", all.len());
    if all.len() >= q {
        let refs: Vec<(usize, &PartialDecryption)> = all.iter().map(|(k, s)| (*k, &s.partial)).collect();
        let value = match tally::combine(&[ct], &refs, q) {
            Ok(points) => points
                .first()
                .and_then(|p| tally::discrete_log(p, 16))
                .unwrap_or(u64::MAX),
            Err(e) => return reject("bad_share", e.to_string()),
        };
        if let Err(e) = state.complete_rehearsal(value) {
            return reject(ceremony_code(&e), e.to_string());
        }
        if state.phase() == CPhase::Complete {
            make_ready(tx, &mut rec, &state)?;
            detail.push_str("; rehearsal decrypted to 1, election ready");
        } else {
            detail.push_str(&format!(
                "; rehearsal failed (decrypted to {value}), ceremony aborted"
            ));
        }
        tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    }
    tx.put_json(T_SHARES, &share_key(id, PURPOSE_REHEARSAL, j), &stored)?;
    tx.put_json(T_CEREMONY, id.as_bytes(), &state)?;
    Ok(elected(rec.phase, id, detail))
}

/// Freezes the roll, computes Q' and sets up the empty box.
fn make_ready(tx: &Tx, rec: &mut ElectionRecord, state: &CeremonyState) -> Step<()> {
    let id = rec.params.election_id.clone();
    let keys = state
        .keys()
        .ok_or_else(|| fatal("complete ceremony without keys"))?;
    let transcript = state
        .final_transcript_hash()
        .ok_or_else(|| fatal("complete ceremony without a final transcript"))?;
    let mut roll = Vec::with_capacity(rec.roll_count as usize);
    for i in 0..rec.roll_count {
        let b = tx
            .trees
            .get(T_ROLL_LIST, &key_n(&id, i))?
            .ok_or_else(|| fatal(format!("roll entry {i} missing")))?;
        roll.push(PublicCredential::from_bytes(&b).map_err(fatal)?);
    }
    let rh = roll_hash(&roll);
    let q_ext = extended_hash(
        &rec.base_hash,
        &keys.encryption_key,
        &keys.signing.public_key(),
        transcript,
        &rh,
        rec.roll_count,
    );
    rec.roll_hash = Some(rh);
    rec.extended_hash = Some(q_ext);
    rec.phase = ElectionPhase::Ready;
    let bx = BoxState::new(
        rec.params.manifest.option_count(),
        board::genesis_tracking_code(&q_ext),
    );
    tx.put_bin(T_BOX, id.as_bytes(), &bx)
}

fn open(ctx: &ApplyContext<'_>, tx: &Tx, id: &str) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Ready {
        return wrong_phase(&rec, "ready");
    }
    let bx = load_box(tx, id)?;
    if bx.count != 0 {
        return Err(fatal(format!("election {id} has ballots before opening")));
    }
    rec.phase = ElectionPhase::Open;
    rec.open_index = Some(ctx.log_id.index);
    tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    Ok(elected(rec.phase, id, "opened with ballot count 0"))
}

/// Checks the window at entry time `now`: `Err` with the refusal.
pub fn check_window(params: &ElectionParams, now: u64) -> Result<(), (&'static str, String)> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if now < params.opens_at {
        return Err((
            "not_open_yet",
            format!("voting opens at {} (now {now})", params.opens_at),
        ));
    }
    if now >= params.closes_at {
        return Err((
            "election_closed",
            format!("voting closed at {} (now {now})", params.closes_at),
        ));
    }
    Ok(())
}

/// The parts of a logged ballot that apply needs (proofs and signature are skipped unparsed).
#[derive(serde::Deserialize)]
struct CastView {
    election_id: String,
    credential: PublicCredential,
    contests: Vec<ContestView>,
}

#[derive(serde::Deserialize)]
struct ContestView {
    selections: Vec<SelectionView>,
}

#[derive(serde::Deserialize)]
struct SelectionView {
    ciphertext: Ciphertext,
}

impl CastView {
    fn alphas(&self) -> impl Iterator<Item = &urna_keyceremony::group::Point> {
        self.contests
            .iter()
            .flat_map(|c| c.selections.iter().map(|s| &s.ciphertext.alpha))
    }
}

fn cast(
    ctx: &ApplyContext<'_>,
    tx: &Tx,
    id: &str,
    h_b: &Hash32,
    bytes: &str,
) -> Step<(Reply, Option<String>)> {
    let ballot: CastView = match serde_json::from_str(bytes) {
        Ok(b) => b,
        Err(e) => return reject("malformed", format!("the logged ballot does not decode: {e}")),
    };
    let ballot = &ballot;
    let rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Open {
        return wrong_phase(&rec, "open");
    }
    if let Err((code, msg)) = check_window(&rec.params, ctx.time_ms) {
        return reject(code, msg);
    }
    if ballot.election_id != id {
        return reject("wrong_election", "the ballot names another election");
    }
    let shape_ok = ballot.contests.len() == rec.params.manifest.contests.len()
        && ballot
            .contests
            .iter()
            .zip(&rec.params.manifest.contests)
            .all(|(b, c)| b.selections.len() == c.options.len());
    if !shape_ok {
        return reject("malformed", "the ballot does not match the manifest");
    }
    if !on_roll(tx.trees, id, &ballot.credential)? {
        return reject("not_on_roll", "the credential is not on the election's roll");
    }
    if let Some(prev) = ballot_of(tx.trees, id, &ballot.credential)? {
        if prev.ballot_hash == *h_b {
            // Idempotent retry: the original receipt (no state change, no event).
            return Ok((receipt_reply(&prev), None));
        }
        return reject(
            "already_voted",
            "this credential has already cast a different ballot",
        );
    }
    let alphas: Vec<_> = ballot.alphas().map(|a| a.to_bytes()).collect();
    let mut uniq = std::collections::BTreeSet::new();
    for a in &alphas {
        if !uniq.insert(*a) || tx.trees.get(T_ALPHAS, &key(id, a))?.is_some() {
            return reject(
                "duplicate_ciphertext",
                "a ciphertext of this ballot is already in the box",
            );
        }
    }
    let mut bx = load_box(tx, id)?;
    #[cfg(feature = "broken-drop-apply")]
    if ctx.log_id.index % 10 == 0 {
        // Deliberate defect (test-only feature): acknowledge the ballot without storing it.
        return Ok((
            Reply::Cast {
                ballot_hash: *h_b,
                previous_tracking_code: bx.tracking_head,
                tracking_code: board::next_tracking_code(&bx.tracking_head, h_b),
                seq: bx.count,
                index: ctx.log_id.index,
            },
            None,
        ));
    }
    let mut accs = bx
        .accumulators()
        .ok_or_else(|| fatal(format!("election {id}: corrupt aggregate")))?;
    let cts: Vec<&Ciphertext> = ballot
        .contests
        .iter()
        .flat_map(|c| c.selections.iter().map(|s| &s.ciphertext))
        .collect();
    if cts.len() != accs.len() {
        return Err(fatal(format!("election {id}: aggregate has the wrong size")));
    }
    for (acc, ct) in accs.iter_mut().zip(&cts) {
        acc.add(ct);
    }
    let seq = bx.count;
    let prev = bx.tracking_head;
    let tracking = board::next_tracking_code(&prev, h_b);
    let stored = StoredBallot {
        seq,
        index: ctx.log_id.index,
        time_ms: ctx.time_ms,
        ballot_hash: *h_b,
        previous_tracking_code: prev,
        tracking_code: tracking,
        ballot: bytes.to_string(),
    };
    tx.put_bin(T_BALLOTS, &key_n(id, seq), &stored)?;
    tx.put(T_HASHES, &key_n(id, seq), h_b)?;
    tx.put(
        T_VOTED,
        &key(id, &ballot.credential.to_bytes()),
        &seq.to_be_bytes(),
    )?;
    tx.put(T_TRACKING, &key(id, &tracking), &seq.to_be_bytes())?;
    for a in &alphas {
        tx.put(T_ALPHAS, &key(id, a), &seq.to_be_bytes())?;
    }
    bx.set_accumulators(&accs);
    bx.count += 1;
    bx.tracking_head = tracking;
    tx.put_bin(T_BOX, id.as_bytes(), &bx)?;
    Ok((
        Reply::Cast {
            ballot_hash: *h_b,
            previous_tracking_code: prev,
            tracking_code: tracking,
            seq,
            index: ctx.log_id.index,
        },
        Some(format!("ballot {seq} cast")),
    ))
}

/// The receipt contents of a stored ballot.
pub fn receipt_reply(b: &StoredBallot) -> Reply {
    Reply::Cast {
        ballot_hash: b.ballot_hash,
        previous_tracking_code: b.previous_tracking_code,
        tracking_code: b.tracking_code,
        seq: b.seq,
        index: b.index,
    }
}

fn close(ctx: &ApplyContext<'_>, tx: &Tx, id: &str) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Open {
        return wrong_phase(&rec, "open");
    }
    let now = i64::try_from(ctx.time_ms).unwrap_or(i64::MAX);
    if now < rec.params.closes_at {
        return reject(
            "too_early",
            format!("the window closes at {} (now {now})", rec.params.closes_at),
        );
    }
    let q_ext = rec
        .extended_hash
        .ok_or_else(|| fatal("open election without Q'"))?;
    let bx = load_box(tx, id)?;
    let hashes = ballot_hashes(tx.trees, id, bx.count)?;
    let root = board::tree_root(&hashes);
    let accs = bx
        .accumulators()
        .ok_or_else(|| fatal(format!("election {id}: corrupt aggregate")))?;
    // The close entry carries no numbers: its summary is computed here, by the record's convention
    // (`CloseSummary::hash` is what the certificate signs over and what `urna verify` recomputes).
    let summary = CloseSummary {
        ballot_count: bx.count,
        aggregate: if bx.count == 0 {
            None
        } else {
            accs.iter()
                .map(|a| a.to_ciphertext())
                .collect::<Result<Vec<_>, _>>()
                .ok()
        },
        tree_root: root,
        last_tracking_code: bx.tracking_head,
    };
    let ceh = summary.hash(&q_ext, id);
    rec.close_summary = Some(summary);
    rec.close_index = Some(ctx.log_id.index);
    rec.close_entry_hash = Some(ceh);
    rec.final_count = Some(bx.count);
    rec.tree_root = Some(root);
    let detail;
    if bx.count < rec.params.min_ballots {
        rec.phase = ElectionPhase::Closed;
        let why = format!(
            "{} ballots, below the minimum of {} for a tally",
            bx.count, rec.params.min_ballots
        );
        detail = format!("closed without tally: {why}");
        rec.closed_reason = Some(why);
    } else {
        match accs
            .iter()
            .map(|a| a.to_ciphertext())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(agg) => {
                rec.aggregate = Some(agg);
                rec.phase = ElectionPhase::Tallying;
                detail = format!("closed with {} ballots; tallying", bx.count);
            }
            Err(_) => {
                rec.phase = ElectionPhase::Closed;
                rec.closed_reason = Some("degenerate aggregate".into());
                detail = "closed without tally: degenerate aggregate".into();
            }
        }
    }
    tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    Ok(elected(rec.phase, id, detail))
}

fn challenge(
    ctx: &ApplyContext<'_>,
    tx: &Tx,
    id: &str,
    spoiled: &SpoiledBallot,
) -> Step<(Reply, Option<String>)> {
    let rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Open {
        return wrong_phase(&rec, "open");
    }
    if spoiled.election_id != id {
        return reject("wrong_election", "the spoiled ballot names another election");
    }
    let mut bx = load_box(tx, id)?;
    let seq = bx.spoiled;
    tx.put_json(
        T_SPOILED,
        &key_n(id, seq),
        &StoredSpoiled {
            index: ctx.log_id.index,
            spoiled: spoiled.clone(),
        },
    )?;
    bx.spoiled += 1;
    tx.put_bin(T_BOX, id.as_bytes(), &bx)?;
    Ok((
        Reply::Challenge { seq },
        Some(format!("spoiled ballot {seq} recorded")),
    ))
}

fn tally_share(
    ctx: &ApplyContext<'_>,
    tx: &Tx,
    id: &str,
    j: usize,
    partial: &PartialDecryption,
    signature: &WireSignature,
) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Tallying {
        return wrong_phase(&rec, "tallying");
    }
    if rec.tally.is_some() {
        return reject(
            "already_tallied",
            "the tally is already decrypted; post signature shares",
        );
    }
    let n = rec.params.custodians.len();
    if j >= n {
        return reject("unknown_custodian", format!("custodian {j} does not exist"));
    }
    let mut all = shares(tx.trees, id, PURPOSE_TALLY, n)?;
    if all.iter().any(|(k, _)| *k == j) {
        return reject(
            "duplicate",
            format!("custodian {j} already posted its decryption share"),
        );
    }
    let agg = rec
        .aggregate
        .clone()
        .ok_or_else(|| fatal("tallying without aggregate"))?;
    if partial.shares.len() != agg.len() {
        return reject("malformed", "one decryption share per option is needed");
    }
    let stored = StoredShare {
        index: ctx.log_id.index,
        partial: partial.clone(),
        signature: signature.clone(),
    };
    all.push((j, stored.clone()));
    all.sort_by_key(|(k, _)| *k);
    let q = rec.params.quorum;
    let mut detail = format!("decryption share of custodian {j} ({} of {q})", all.len());
    if all.len() >= q {
        let refs: Vec<(usize, &PartialDecryption)> = all.iter().map(|(k, s)| (*k, &s.partial)).collect();
        let count = rec.final_count.unwrap_or(0);
        let t = match tally::decrypt_tally(&rec.params.manifest, &agg, &refs, q, count) {
            Ok(t) => t,
            Err(e) => return reject("tally_failed", e.to_string()),
        };
        let q_ext = rec.extended_hash.ok_or_else(|| fatal("tallying without Q'"))?;
        let ceh = rec
            .close_entry_hash
            .ok_or_else(|| fatal("tallying without close entry"))?;
        rec.result_hash = Some(tally::result_hash(&q_ext, &ceh, &t));
        detail.push_str(&format!("; tally {:?}", t.counts));
        rec.tally = Some(t);
        tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    }
    tx.put_json(T_SHARES, &share_key(id, PURPOSE_TALLY, j), &stored)?;
    Ok(elected(rec.phase, id, detail))
}

fn signature_share(tx: &Tx, id: &str, j: usize, share: &WireSignatureShare) -> Step<(Reply, Option<String>)> {
    let mut rec = load(tx, id)?;
    if rec.phase != ElectionPhase::Tallying {
        return wrong_phase(&rec, "tallying");
    }
    let Some(rh) = rec.result_hash else {
        return reject("not_tallied", "the tally is not decrypted yet");
    };
    let n = rec.params.custodians.len();
    if j >= n {
        return reject("unknown_custodian", format!("custodian {j} does not exist"));
    }
    let mut all = signature_shares(tx.trees, id, n)?;
    if all.iter().any(|(k, _)| *k == j) {
        return reject(
            "duplicate",
            format!("custodian {j} already posted its signature share"),
        );
    }
    all.push((j, share.clone()));
    all.sort_by_key(|(k, _)| *k);
    let q = rec.params.quorum;
    let mut detail = format!("signature share of custodian {j} ({} of {q})", all.len());
    if all.len() >= q {
        let state = load_ceremony(tx, id)?;
        let keys = state.keys().ok_or_else(|| fatal("tallying without keys"))?;
        let refs: Vec<(usize, &blsttc::SignatureShare)> = all.iter().map(|(k, s)| (*k, &s.0)).collect();
        let sig = match tally::certify(&keys.signing, &rh, &refs) {
            Ok(s) => s,
            Err(e) => return reject("bad_share", e.to_string()),
        };
        rec.certificate = Some(Certificate {
            result_hash: rh,
            signature: tally::WireSignature(sig),
        });
        rec.phase = ElectionPhase::Published;
        detail.push_str("; result certified and published");
        tx.put_json(T_ELECTIONS, id.as_bytes(), &rec)?;
    }
    tx.put_json(T_SIGSHARES, &key_n(id, j as u64), share)?;
    Ok(elected(rec.phase, id, detail))
}

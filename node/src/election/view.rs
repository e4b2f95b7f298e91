//! Read-side views of the election state, as the API's JSON answers.

use urna_client::wire::{BallotLookup, ElectionBrief, ElectionSummary, Receipt, ResultResponse};
use urna_keyceremony::board;
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::election::fingerprint;
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::record::{
    CeremonyEvent, CustodianDecryption, CustodianSignature, ElectionRecord, RecordedBallot, RECORD_FORMAT,
};

use super::precheck::{election, Refusal};
use super::state::{self, StoredBallot, T_ELECTIONS};
use crate::store::{ApplyError, SmHandle};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn storage(e: crate::store::StorageResult<Pairs>) -> Result<Pairs, Refusal> {
    e.map_err(|e| Refusal::from(ApplyError::Storage(e.to_string())))
}

/// Every election's id, phase and ballot count.
pub fn briefs(h: &SmHandle) -> Result<Vec<ElectionBrief>, Refusal> {
    let mut out = Vec::new();
    for (_, v) in storage(h.app_scan(T_ELECTIONS))? {
        let rec: state::ElectionRecord =
            serde_json::from_slice(&v).map_err(|e| Refusal::from(ApplyError::Corrupt(e.to_string())))?;
        let id = rec.params.election_id.clone();
        let count = state::box_state(h, &id)?.map_or(0, |b| b.count);
        out.push(ElectionBrief {
            election_id: id,
            phase: rec.phase,
            ballot_count: count,
        });
    }
    Ok(out)
}

/// The election's summary.
pub fn summary(h: &SmHandle, id: &str, applied_index: u64) -> Result<ElectionSummary, Refusal> {
    let rec = election(h, id)?;
    let st = state::ceremony(h, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let bx = state::box_state(h, id)?;
    let chain = state::chain(h, id)?;
    let keys = st.keys();
    Ok(ElectionSummary {
        phase: rec.phase,
        closed_reason: rec.closed_reason.clone(),
        base_hash: rec.base_hash,
        fingerprint: fingerprint(&rec.base_hash),
        extended_hash: rec.extended_hash.map(hex::encode),
        ceremony_phase: st.phase(),
        ceremony_abort: st.abort_reason().map(|r| r.to_string()),
        ceremony_deadlines: *st.deadlines(),
        encryption_key: keys.map(|k| k.encryption_key.to_hex()),
        signing_key: keys.map(|k| hex::encode(k.signing.public_key().to_bytes())),
        roll_count: rec.roll_count,
        roll_hash: rec.roll_hash.map(hex::encode),
        ballot_count: bx.as_ref().map_or(0, |b| b.count),
        spoiled_count: bx.as_ref().map_or(0, |b| b.spoiled),
        tracking_head: bx.as_ref().map(|b| hex::encode(b.tracking_head)),
        open_index: rec.open_index,
        close_index: rec.close_index,
        close_entry_hash: rec.close_entry_hash.map(hex::encode),
        tree_root: rec.tree_root.map(hex::encode),
        aggregate: rec.aggregate.clone(),
        event_head: hex::encode(chain.head),
        event_count: chain.count,
        applied_index,
        params: rec.params,
    })
}

/// The result (tally and certificate once there).
pub fn result(h: &SmHandle, id: &str, applied_index: u64) -> Result<ResultResponse, Refusal> {
    let rec = election(h, id)?;
    let n = rec.params.custodians.len();
    let count = match rec.final_count {
        Some(c) => c,
        None => state::box_state(h, id)?.map_or(0, |b| b.count),
    };
    Ok(ResultResponse {
        election_id: id.to_string(),
        phase: rec.phase,
        ballot_count: count,
        tally: rec.tally.clone(),
        result_hash: rec.result_hash.map(hex::encode),
        certificate: rec.certificate.clone(),
        decryption_shares: state::shares(h, id, state::PURPOSE_TALLY, n)?
            .into_iter()
            .map(|(j, _)| j)
            .collect(),
        signature_shares: state::signature_shares(h, id, n)?
            .into_iter()
            .map(|(j, _)| j)
            .collect(),
        applied_index,
    })
}

/// The receipt of a stored ballot.
pub fn receipt(id: &str, b: &StoredBallot) -> Receipt {
    Receipt {
        election_id: id.to_string(),
        ballot_hash: b.ballot_hash,
        previous_tracking_code: b.previous_tracking_code,
        tracking_code: b.tracking_code,
        seq: b.seq,
        index: b.index,
        signed_head: None,
    }
}

/// Looks a tracking code up, with an inclusion proof against the current tree root.
pub fn lookup(
    h: &SmHandle,
    id: &str,
    tracking_hex: &str,
    applied_index: u64,
) -> Result<BallotLookup, Refusal> {
    election(h, id)?;
    let t: Hash32 = hex::decode(tracking_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| Refusal::new(400, "malformed", "a tracking code is 64 hex characters"))?;
    let b = state::ballot_by_tracking(h, id, &t)?
        .ok_or_else(|| Refusal::new(404, "unknown_tracking_code", "no ballot has this tracking code"))?;
    let count = state::box_state(h, id)?.map_or(0, |b| b.count);
    let size = count.max(b.seq + 1);
    let hashes = state::ballot_hashes(h, id, size)?;
    let proof = board::inclusion_proof(&hashes, b.seq as usize)
        .ok_or_else(|| Refusal::new(500, "internal", "ballot outside its tree"))?;
    Ok(BallotLookup {
        receipt: receipt(id, &b),
        tree_size: size,
        tree_root: board::tree_root(&hashes),
        proof,
        applied_index,
    })
}

/// The election's event chain, oldest first.
pub fn events(h: &SmHandle, id: &str) -> Result<Vec<state::EventRecord>, Refusal> {
    election(h, id)?;
    let chain = state::chain(h, id)?;
    let mut out = Vec::with_capacity(chain.count as usize);
    for i in 0..chain.count {
        let ev = state::get_json(h, state::T_EVENTS, &state::key_n(id, i))?
            .ok_or_else(|| Refusal::new(500, "internal", format!("event {i} missing")))?;
        out.push(ev);
    }
    Ok(out)
}

fn corrupt(what: impl std::fmt::Display) -> Refusal {
    Refusal::from(ApplyError::Corrupt(what.to_string()))
}

/// The election record (design 4.7, `docs/record.md`): everything on the board, for `urna verify`.
///
/// Ballots are read up to the box count read first, so a cast applied meanwhile is either wholly in the
/// record or not at all.
pub fn record(h: &SmHandle, id: &str) -> Result<ElectionRecord, Refusal> {
    let rec = election(h, id)?;
    let st = state::ceremony(h, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let bx = state::box_state(h, id)?;
    let n = rec.params.custodians.len();

    let events = state::get_u64(h, state::T_CEREMONY_LOG, id.as_bytes())?.unwrap_or(0);
    let ceremony = (0..events)
        .map(|i| {
            state::get_json::<CeremonyEvent>(h, state::T_CEREMONY_LOG, &state::key_n(id, i))?
                .ok_or_else(|| corrupt(format!("ceremony event {i} missing")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let roll = (0..rec.roll_count)
        .map(|i| {
            let b = h
                .app_get(state::T_ROLL_LIST, &state::key_n(id, i))
                .map_err(|e| Refusal::from(ApplyError::Storage(e.to_string())))?
                .ok_or_else(|| corrupt(format!("roll entry {i} missing")))?;
            PublicCredential::from_bytes(&b).map_err(corrupt)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (count, spoiled_count) = bx.as_ref().map_or((0, 0), |b| (b.count, b.spoiled));
    let ballots = (0..count)
        .map(|i| {
            let b: StoredBallot = state::get_bin(h, state::T_BALLOTS, &state::key_n(id, i))?
                .ok_or_else(|| corrupt(format!("ballot {i} missing")))?;
            Ok(RecordedBallot {
                ballot: serde_json::from_str(&b.ballot).map_err(corrupt)?,
                tracking_code: b.tracking_code,
            })
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let spoiled = (0..spoiled_count)
        .map(|i| {
            let s: state::StoredSpoiled = state::get_json(h, state::T_SPOILED, &state::key_n(id, i))?
                .ok_or_else(|| corrupt(format!("spoiled ballot {i} missing")))?;
            Ok(s.spoiled)
        })
        .collect::<Result<Vec<_>, Refusal>>()?;
    let decryptions = |purpose| -> Result<Vec<CustodianDecryption>, Refusal> {
        Ok(state::shares(h, id, purpose, n)?
            .into_iter()
            .map(|(j, s)| CustodianDecryption {
                custodian: j,
                partial: s.partial,
            })
            .collect())
    };
    Ok(ElectionRecord {
        format: RECORD_FORMAT.to_string(),
        params: rec.params.clone(),
        deadlines: *st.deadlines(),
        ceremony,
        rehearsal: decryptions(state::PURPOSE_REHEARSAL)?,
        roll,
        ballots,
        spoiled,
        close: rec.close_summary.clone(),
        decryption_shares: decryptions(state::PURPOSE_TALLY)?,
        tally: rec.tally.clone(),
        signature_shares: state::signature_shares(h, id, n)?
            .into_iter()
            .map(|(j, share)| CustodianSignature { custodian: j, share })
            .collect(),
        certificate: rec.certificate.clone(),
    })
}

//! Checks the proposing node (the leader: followers forward writes to it) runs before it proposes an
//! election command: the cheap state checks for a fast answer, then the expensive ones (ballot
//! signature and proofs, ceremony signatures and proofs, partial-decryption proofs, signature shares).
//! A request that fails never enters the log.
//!
//! Apply re-checks everything state-dependent; these checks only keep bad requests out of the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use urna_client::wire::{ElectionPhase, SharePurpose, SignatureShareRequest, SignedPartialDecryption};
use urna_keyceremony::ballot::{verify_spoiled, BallotContext, BallotError, EncryptedBallot, SpoiledBallot};
use urna_keyceremony::ceremony::{Phase as CPhase, SignedCeremonyMessage};
use urna_keyceremony::election::Custodian as Registered;
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::tally::{self, TallyContext};

use super::apply::check_window;
use super::state::{self, ElectionRecord, Kv};
use crate::command::Command;
use crate::store::ApplyError;

/// A refused request: HTTP status, snake_case code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// snake_case code.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// The status the API gives a `Rejected` outcome of apply with this code.
    pub fn from_rejected(code: &str, message: String) -> Self {
        let status = match code {
            "unknown_election" => 404,
            "malformed" | "invalid_params" => 400,
            c if super::apply::PROOF_CODES.contains(&c) => 422,
            _ => 409,
        };
        Refusal {
            status,
            code: code.to_string(),
            message,
        }
    }
}

impl From<ApplyError> for Refusal {
    fn from(e: ApplyError) -> Self {
        tracing::error!(error = %e, "reading election state");
        Refusal::new(500, "internal", e.to_string())
    }
}

/// What a cast request turns into.
pub enum CastPlan {
    /// Passed the cheap checks: verify the signature and proofs (batched), then propose.
    Verify(Arc<BallotContext>, Box<EncryptedBallot>),
    /// An identical retry of a recorded ballot: answer with its receipt.
    Retry(Box<state::StoredBallot>),
    /// The window has closed: propose a `Close` and answer 409 `election_closed`.
    CloseInstead,
}

/// Ballot contexts (with their fixed-base key tables) per election, keyed by Q'.
#[derive(Default)]
pub struct ContextCache {
    map: Mutex<HashMap<String, (Hash32, Arc<BallotContext>)>>,
}

impl ContextCache {
    /// The election's ballot context (from Ready on).
    pub fn get(&self, kv: &dyn Kv, rec: &ElectionRecord) -> Result<Arc<BallotContext>, Refusal> {
        let id = &rec.params.election_id;
        let q_ext = rec
            .extended_hash
            .ok_or_else(|| Refusal::new(409, "wrong_phase", format!("election {id} is {}", rec.phase)))?;
        if let Ok(map) = self.map.lock() {
            if let Some((h, ctx)) = map.get(id) {
                if *h == q_ext {
                    return Ok(ctx.clone());
                }
            }
        }
        let st =
            state::ceremony(kv, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
        let key = st
            .keys()
            .ok_or_else(|| Refusal::new(500, "internal", "ready election without keys"))?
            .encryption_key;
        let ctx = BallotContext::new(id.clone(), q_ext, rec.params.manifest.clone(), key)
            .map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
        let ctx = Arc::new(ctx);
        if let Ok(mut map) = self.map.lock() {
            map.insert(id.clone(), (q_ext, ctx.clone()));
        }
        Ok(ctx)
    }
}

/// A token bucket limiting spoiled-ballot challenges per node (design 4.5: challenges are
/// rate-limited, since every one is a log entry that carries no vote).
pub struct RateLimit {
    state: Mutex<(std::time::Instant, f64)>,
    per_second: f64,
    burst: f64,
}

impl RateLimit {
    /// A bucket refilled at `per_second`, holding at most `burst` tokens.
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimit {
            state: Mutex::new((std::time::Instant::now(), burst)),
            per_second,
            burst,
        }
    }

    /// Takes a token, or refuses with 429.
    pub fn take(&self) -> Result<(), Refusal> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| Refusal::new(500, "internal", "rate limiter poisoned"))?;
        let now = std::time::Instant::now();
        let tokens = (st.1 + now.duration_since(st.0).as_secs_f64() * self.per_second).min(self.burst);
        if tokens < 1.0 {
            *st = (now, tokens);
            return Err(Refusal::new(
                429,
                "rate_limited",
                "too many challenges; retry in a moment",
            ));
        }
        *st = (now, tokens - 1.0);
        Ok(())
    }
}

impl Default for RateLimit {
    /// 20 challenges per second per node, bursts of 100.
    fn default() -> Self {
        RateLimit::new(20.0, 100.0)
    }
}

/// The election's record, or 404.
pub fn election(kv: &dyn Kv, id: &str) -> Result<ElectionRecord, Refusal> {
    state::record(kv, id)?
        .ok_or_else(|| Refusal::new(404, "unknown_election", format!("there is no election {id:?}")))
}

fn phase_refusal(rec: &ElectionRecord, wanted: &str) -> Refusal {
    let code = match rec.phase {
        ElectionPhase::Closed | ElectionPhase::Tallying | ElectionPhase::Published => "election_closed",
        _ => "wrong_phase",
    };
    Refusal::new(
        409,
        code,
        format!(
            "election {} is {}; this needs it {wanted}",
            rec.params.election_id, rec.phase
        ),
    )
}

fn ballot_refusal(e: BallotError) -> Refusal {
    match e {
        BallotError::TooLarge { .. } => Refusal::new(413, "too_large", e.to_string()),
        BallotError::Decode(_) | BallotError::Shape(_) | BallotError::WrongElection { .. } => {
            Refusal::new(400, "malformed", e.to_string())
        }
        BallotError::BadSignature => Refusal::new(422, "bad_signature", e.to_string()),
        BallotError::SpoiledMismatch { .. }
        | BallotError::PlaintextValue { .. }
        | BallotError::SelectionCount { .. } => Refusal::new(422, "bad_proof", e.to_string()),
        _ => Refusal::new(422, "bad_proof", e.to_string()),
    }
}

/// Checks a cast, cheapest first: phase, size and decoding, window (local clock), roll and
/// not-yet-voted. Signature and proofs follow in [`super::batch`], then [`cast_command`].
pub fn cast(
    kv: &dyn Kv,
    cache: &ContextCache,
    id: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<CastPlan, Refusal> {
    let rec = election(kv, id)?;
    if rec.phase != ElectionPhase::Open {
        return Err(phase_refusal(&rec, "open"));
    }
    let ctx = cache.get(kv, &rec)?;
    let ballot: EncryptedBallot = EncryptedBallot::from_json(&ctx, body).map_err(ballot_refusal)?;
    if let Err((code, msg)) = check_window(&rec.params, now_ms) {
        if code == "election_closed" {
            return Ok(CastPlan::CloseInstead);
        }
        return Err(Refusal::new(409, code, msg));
    }
    if ballot.election_id != id {
        return Err(Refusal::new(
            400,
            "malformed",
            "the ballot names another election",
        ));
    }
    if !state::on_roll(kv, id, &ballot.credential)? {
        return Err(Refusal::new(
            409,
            "not_on_roll",
            "the credential is not on the election's roll",
        ));
    }
    let h_b = ballot.hash(&ctx);
    if let Some(prev) = state::ballot_of(kv, id, &ballot.credential)? {
        if prev.ballot_hash == h_b {
            return Ok(CastPlan::Retry(Box::new(prev)));
        }
        return Err(Refusal::new(
            409,
            "already_voted",
            "this credential has already cast a different ballot",
        ));
    }
    Ok(CastPlan::Verify(ctx, Box::new(ballot)))
}

/// The `Cast` command of a verified ballot (logged as its JSON text).
pub fn cast_command(
    id: &str,
    ballot: &EncryptedBallot,
    verified: Result<Hash32, BallotError>,
) -> Result<Command, Refusal> {
    let ballot_hash = verified.map_err(ballot_refusal)?;
    let text = serde_json::to_string(ballot).map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
    Ok(Command::Cast {
        election_id: id.to_string(),
        ballot_hash,
        ballot: text,
    })
}

/// Checks a spoiled ballot (the election must be open; the nonces must re-derive the ciphertexts).
pub fn challenge(
    kv: &dyn Kv,
    cache: &ContextCache,
    id: &str,
    spoiled: SpoiledBallot,
) -> Result<Command, Refusal> {
    let rec = election(kv, id)?;
    if rec.phase != ElectionPhase::Open {
        return Err(phase_refusal(&rec, "open"));
    }
    let ctx = cache.get(kv, &rec)?;
    verify_spoiled(&ctx, &spoiled).map_err(ballot_refusal)?;
    Ok(Command::Challenge {
        election_id: id.to_string(),
        spoiled,
    })
}

/// Checks a ceremony message against a copy of the current ceremony state (signature, proofs,
/// phase); returns the command and the custodian's name (the proposer).
pub fn ceremony(kv: &dyn Kv, id: &str, msg: &SignedCeremonyMessage) -> Result<(Command, String), Refusal> {
    let rec = election(kv, id)?;
    if !matches!(rec.phase, ElectionPhase::Draft | ElectionPhase::KeyCeremony) {
        return Err(phase_refusal(&rec, "in the key ceremony"));
    }
    let mut st =
        state::ceremony(kv, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let name = rec
        .params
        .custodians
        .get(msg.sender)
        .map(|c| c.name.clone())
        .ok_or_else(|| {
            Refusal::new(
                400,
                "unknown_custodian",
                format!("custodian {} does not exist", msg.sender),
            )
        })?;
    if let Err(e) = st.apply(msg) {
        return Err(Refusal::from_rejected(
            super::apply::ceremony_code(&e),
            e.to_string(),
        ));
    }
    let message = serde_json::to_string(msg).map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
    Ok((
        Command::Ceremony {
            election_id: id.to_string(),
            message,
        },
        name,
    ))
}

fn custodian(rec: &ElectionRecord, j: usize) -> Result<&Registered, Refusal> {
    rec.params
        .custodians
        .get(j)
        .ok_or_else(|| Refusal::new(400, "unknown_custodian", format!("custodian {j} does not exist")))
}

/// Checks a rehearsal share: identity signature over Q, then the Chaum-Pedersen proof against K_j.
pub fn rehearsal(kv: &dyn Kv, id: &str, s: SignedPartialDecryption) -> Result<(Command, String), Refusal> {
    let rec = election(kv, id)?;
    let registered = custodian(&rec, s.custodian)?.clone();
    let name = registered.name.clone();
    let st = state::ceremony(kv, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let (Some(ct), Some(keys)) = (st.rehearsal(), st.keys()) else {
        return Err(Refusal::new(
            409,
            "wrong_phase",
            format!("the ceremony is in the {} phase", st.phase()),
        ));
    };
    if st.phase() != CPhase::Rehearsal {
        return Err(Refusal::new(
            409,
            "wrong_phase",
            format!("the ceremony is in the {} phase", st.phase()),
        ));
    }
    let j = s.custodian;
    let identity = &registered.identity_key.0;
    if !s.verify_signature(identity, &rec.base_hash, SharePurpose::Rehearsal) {
        return Err(Refusal::new(
            422,
            "bad_signature",
            "the identity signature over the share does not verify",
        ));
    }
    let kj =
        tally::key_share(&keys.encryption, j).map_err(|e| Refusal::new(422, "bad_share", e.to_string()))?;
    let ctx = TallyContext::new(rec.base_hash, rec.params.custodians.len());
    tally::verify_partial(&ctx, j, &kj, &[*ct], &s.partial)
        .map_err(|e| Refusal::new(422, "bad_proof", e.to_string()))?;
    Ok((
        Command::RehearsalShare {
            election_id: id.to_string(),
            custodian: j,
            partial: s.partial,
            signature: s.signature,
        },
        name,
    ))
}

/// Checks a tally share: identity signature over Q', then the proofs against K_j and the aggregate.
pub fn tally_share(kv: &dyn Kv, id: &str, s: SignedPartialDecryption) -> Result<(Command, String), Refusal> {
    let rec = election(kv, id)?;
    let registered = custodian(&rec, s.custodian)?.clone();
    let name = registered.name.clone();
    if rec.phase != ElectionPhase::Tallying {
        return Err(Refusal::new(
            409,
            "wrong_phase",
            format!("election {id} is {}", rec.phase),
        ));
    }
    let (Some(q_ext), Some(agg)) = (rec.extended_hash, rec.aggregate.as_ref()) else {
        return Err(Refusal::new(500, "internal", "tallying without Q' or aggregate"));
    };
    let j = s.custodian;
    let identity = &registered.identity_key.0;
    if !s.verify_signature(identity, &q_ext, SharePurpose::Tally) {
        return Err(Refusal::new(
            422,
            "bad_signature",
            "the identity signature over the share does not verify",
        ));
    }
    let st = state::ceremony(kv, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let keys = st
        .keys()
        .ok_or_else(|| Refusal::new(500, "internal", "no keys"))?;
    let kj =
        tally::key_share(&keys.encryption, j).map_err(|e| Refusal::new(422, "bad_share", e.to_string()))?;
    let ctx = TallyContext::new(q_ext, rec.params.custodians.len());
    tally::verify_partial(&ctx, j, &kj, agg, &s.partial)
        .map_err(|e| Refusal::new(422, "bad_proof", e.to_string()))?;
    Ok((
        Command::TallyShare {
            election_id: id.to_string(),
            custodian: j,
            partial: s.partial,
            signature: s.signature,
        },
        name,
    ))
}

/// Checks a signature share over the result hash against the custodian's signing key share.
pub fn signature_share(
    kv: &dyn Kv,
    id: &str,
    s: SignatureShareRequest,
) -> Result<(Command, String), Refusal> {
    let rec = election(kv, id)?;
    let registered = custodian(&rec, s.custodian)?.clone();
    let name = registered.name.clone();
    if rec.phase != ElectionPhase::Tallying {
        return Err(Refusal::new(
            409,
            "wrong_phase",
            format!("election {id} is {}", rec.phase),
        ));
    }
    let Some(rh) = rec.result_hash else {
        return Err(Refusal::new(409, "not_tallied", "the tally is not decrypted yet"));
    };
    let st = state::ceremony(kv, id)?.ok_or_else(|| Refusal::new(500, "internal", "no ceremony state"))?;
    let keys = st
        .keys()
        .ok_or_else(|| Refusal::new(500, "internal", "no keys"))?;
    tally::verify_signature_share(&keys.signing, s.custodian, &rh, &s.share.0)
        .map_err(|e| Refusal::new(422, "bad_signature", e.to_string()))?;
    Ok((
        Command::SignatureShare {
            election_id: id.to_string(),
            custodian: s.custodian,
            share: s.share,
        },
        name,
    ))
}

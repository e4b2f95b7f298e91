//! JSON request and response bodies of the election API (design section 6).
//!
//! Crypto values (points, scalars, signatures, credentials) use the hex encodings of
//! [`urna_keyceremony`]'s serde impls, which decode with every validity check (subgroup, identity,
//! canonical scalar), so a body that deserializes holds only well-formed values.

use serde::{Deserialize, Serialize};
use urna_keyceremony::blsttc;
use urna_keyceremony::board::InclusionProof;
use urna_keyceremony::ceremony::{Deadlines, Phase as CeremonyPhase};
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::election::{hex_32, Custodian, ElectionParams};
use urna_keyceremony::elgamal::Ciphertext;
use urna_keyceremony::hash::{Hash32, Transcript};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::tally::{Certificate, PartialDecryption, Tally, WireSignature, WireSignatureShare};

/// Tag of the statement a custodian signs with its identity key over a partial decryption.
pub const SHARE_STATEMENT_TAG: &str = "urna/v1/tally/share-statement";

/// Where the leader is, as far as the answering node knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's node id.
    pub id: u64,
    /// The leader's HTTP address, if known.
    pub addr: Option<String>,
}

/// Every API error: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// snake_case machine-readable code.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// Leader hint (on 503 answers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub leader: Option<LeaderHint>,
}

/// The phases of an election (design 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElectionPhase {
    /// Created; the roll may grow; no ceremony message yet.
    Draft,
    /// The key ceremony (and its rehearsal) is under way.
    KeyCeremony,
    /// Keys derived and rehearsed, roll frozen, Q' computed.
    Ready,
    /// Ballots are accepted inside the window.
    Open,
    /// Closed without a tally (too few ballots, or a degenerate aggregate).
    Closed,
    /// Custodians decrypt and sign the result.
    Tallying,
    /// The result is certified.
    Published,
}

impl std::fmt::Display for ElectionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ElectionPhase::Draft => "draft",
            ElectionPhase::KeyCeremony => "key_ceremony",
            ElectionPhase::Ready => "ready",
            ElectionPhase::Open => "open",
            ElectionPhase::Closed => "closed",
            ElectionPhase::Tallying => "tallying",
            ElectionPhase::Published => "published",
        };
        f.write_str(s)
    }
}

/// `POST /v1/elections` (admin). The node draws the election nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateElectionRequest {
    /// Election identifier (1 to 64 of `[A-Za-z0-9_-]`).
    pub election_id: String,
    /// Contests and options.
    pub manifest: Manifest,
    /// Custodians in order (custodian j is evaluated at x = j + 1).
    pub custodians: Vec<Custodian>,
    /// Quorum q.
    pub quorum: usize,
    /// Voting opens (Unix ms, UTC).
    pub opens_at: i64,
    /// Voting closes (Unix ms, UTC).
    pub closes_at: i64,
    /// Fewest ballots for which a tally is decrypted (default 10).
    #[serde(default)]
    pub min_ballots: Option<u64>,
    /// Ceremony deadlines (absolute Unix ms); default: one hour per phase from creation.
    #[serde(default)]
    pub ceremony_deadlines: Option<Deadlines>,
    /// The initial roll.
    #[serde(default)]
    pub roll: Vec<PublicCredential>,
}

/// `POST /v1/elections/{id}/roll` (admin): credentials appended to the roll (until Ready).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollRequest {
    /// Public credentials to append, in order.
    pub credentials: Vec<PublicCredential>,
}

/// The answer to every accepted election write other than a cast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAck {
    /// The election.
    pub election_id: String,
    /// Log index of the entry.
    pub index: u64,
    /// State digest after the entry (hex).
    pub digest: String,
    /// The election's phase after the entry.
    pub phase: ElectionPhase,
    /// What the entry did, in a few words.
    pub detail: String,
}

/// A partial decryption (rehearsal or tally) signed with the custodian's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPartialDecryption {
    /// The custodian's 0-based index j.
    pub custodian: usize,
    /// One decryption share with its proof per option (one for the rehearsal).
    pub partial: PartialDecryption,
    /// Identity-key signature of [`share_statement`].
    pub signature: WireSignature,
}

/// Purpose of a partial decryption, bound into its signed statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharePurpose {
    /// The ceremony's rehearsal ciphertext (context hash Q).
    Rehearsal,
    /// The closed box's aggregate (context hash Q').
    Tally,
}

/// Canonical bytes of a partial decryption (fixed order, length-prefixed; never JSON).
pub fn partial_canonical_bytes(pd: &PartialDecryption) -> Vec<u8> {
    let mut t = Transcript::new("urna/v1/tally/partial").u64(pd.shares.len() as u64);
    for s in &pd.shares {
        t = t
            .point(s.m.affine())
            .point(s.proof.a.affine())
            .point(s.proof.b.affine())
            .bytes(&s.proof.response.to_bytes());
    }
    t.into_bytes()
}

/// What a custodian signs over a partial decryption: `H(tag, context hash, purpose, j, share bytes)`.
pub fn share_statement(
    context_hash: &Hash32,
    purpose: SharePurpose,
    j: usize,
    pd: &PartialDecryption,
) -> Hash32 {
    let p = match purpose {
        SharePurpose::Rehearsal => "rehearsal",
        SharePurpose::Tally => "tally",
    };
    Transcript::new(SHARE_STATEMENT_TAG)
        .hash(context_hash)
        .str(p)
        .u64(j as u64)
        .bytes(&partial_canonical_bytes(pd))
        .digest()
}

impl SignedPartialDecryption {
    /// Signs a partial decryption as custodian `j`.
    pub fn sign(
        identity: &blsttc::SecretKey,
        context_hash: &Hash32,
        purpose: SharePurpose,
        j: usize,
        partial: PartialDecryption,
    ) -> Self {
        let signature = WireSignature(identity.sign(share_statement(context_hash, purpose, j, &partial)));
        SignedPartialDecryption {
            custodian: j,
            partial,
            signature,
        }
    }

    /// Whether the identity signature verifies.
    pub fn verify_signature(
        &self,
        identity: &blsttc::PublicKey,
        context_hash: &Hash32,
        purpose: SharePurpose,
    ) -> bool {
        identity.verify(
            &self.signature.0,
            share_statement(context_hash, purpose, self.custodian, &self.partial),
        )
    }
}

/// `POST /v1/elections/{id}/tally/signatures`: a signature share over the result hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureShareRequest {
    /// The custodian's 0-based index j.
    pub custodian: usize,
    /// Its signing-share signature of the result hash.
    pub share: WireSignatureShare,
}

/// A voter's receipt (design 4.5), issued after the ballot's entry is committed and applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The election.
    pub election_id: String,
    /// The ballot hash H_b.
    #[serde(with = "hex_32")]
    pub ballot_hash: Hash32,
    /// The tracking code before this ballot.
    #[serde(with = "hex_32")]
    pub previous_tracking_code: Hash32,
    /// `T = H("urna/v1/track", previous T, H_b)`.
    #[serde(with = "hex_32")]
    pub tracking_code: Hash32,
    /// Position of the ballot among the election's cast ballots (0-based).
    pub seq: u64,
    /// Log index of the ballot's entry (the original one for an idempotent retry).
    pub index: u64,
    /// The answering node's signed head at or after `index` (absent on an idempotent retry answered
    /// from the record).
    #[serde(default)]
    pub signed_head: Option<crate::head::SignedHead>,
}

/// `POST /v1/elections/{id}/challenges` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeAck {
    /// The election.
    pub election_id: String,
    /// Position among the election's spoiled ballots (0-based).
    pub seq: u64,
    /// Log index of the entry.
    pub index: u64,
}

/// `GET /v1/elections/{id}/ballots/{tracking_code}` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BallotLookup {
    /// The receipt of the ballot.
    pub receipt: Receipt,
    /// Number of ballots in the tree the proof is for.
    pub tree_size: u64,
    /// The ballot-tree root over the first `tree_size` ballots (hex).
    #[serde(with = "hex_32")]
    pub tree_root: Hash32,
    /// Inclusion proof of the ballot against `tree_root`.
    pub proof: InclusionProof,
    /// The applied log index this answer reflects.
    pub applied_index: u64,
}

/// One line of `GET /v1/elections` and of `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionBrief {
    /// The election.
    pub election_id: String,
    /// Its phase.
    pub phase: ElectionPhase,
    /// Ballots cast so far.
    pub ballot_count: u64,
}

/// `GET /v1/elections` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionList {
    /// Every election, by id.
    pub elections: Vec<ElectionBrief>,
    /// The applied log index this answer reflects.
    pub applied_index: u64,
}

/// `GET /v1/elections/{id}` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElectionSummary {
    /// Creation parameters (hashed into Q).
    pub params: ElectionParams,
    /// The phase.
    pub phase: ElectionPhase,
    /// Why the election stopped in Closed, if it did.
    pub closed_reason: Option<String>,
    /// Q (hex).
    #[serde(with = "hex_32")]
    pub base_hash: Hash32,
    /// Short fingerprint of Q for out-of-band comparison.
    pub fingerprint: String,
    /// Q', from Ready on.
    pub extended_hash: Option<String>,
    /// The ceremony's phase.
    pub ceremony_phase: CeremonyPhase,
    /// The ceremony's abort reason, if it aborted.
    pub ceremony_abort: Option<String>,
    /// Ceremony deadlines.
    pub ceremony_deadlines: Deadlines,
    /// The election key K (hex), once derived.
    pub encryption_key: Option<String>,
    /// The result signing key (hex), once derived.
    pub signing_key: Option<String>,
    /// Roll size (frozen at Ready).
    pub roll_count: u64,
    /// Roll hash, from Ready on.
    pub roll_hash: Option<String>,
    /// Ballots cast.
    pub ballot_count: u64,
    /// Spoiled (challenged) ballots.
    pub spoiled_count: u64,
    /// Current tracking-code head (hex), from Ready on.
    pub tracking_head: Option<String>,
    /// Log index of the open entry (the zero-ballot confirmation).
    pub open_index: Option<u64>,
    /// Log index of the close entry.
    pub close_index: Option<u64>,
    /// Hash of the close entry (what the result hash binds).
    pub close_entry_hash: Option<String>,
    /// Ballot-tree root at close.
    pub tree_root: Option<String>,
    /// Aggregate per option at close (flat, manifest order).
    pub aggregate: Option<Vec<Ciphertext>>,
    /// Head of the election's event chain (hex) and its length.
    pub event_head: String,
    /// Number of events in the chain.
    pub event_count: u64,
    /// The applied log index this answer reflects.
    pub applied_index: u64,
}

/// `GET /v1/elections/{id}/result` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultResponse {
    /// The election.
    pub election_id: String,
    /// The phase.
    pub phase: ElectionPhase,
    /// Ballots in the tally.
    pub ballot_count: u64,
    /// The decrypted tally, once q shares combined.
    pub tally: Option<Tally>,
    /// `H("urna/v1/result", Q', close entry hash, tally)`, once tallied (hex).
    pub result_hash: Option<String>,
    /// The certificate, once q signature shares combined.
    pub certificate: Option<Certificate>,
    /// Custodians whose decryption shares are recorded.
    pub decryption_shares: Vec<usize>,
    /// Custodians whose signature shares are recorded.
    pub signature_shares: Vec<usize>,
    /// The applied log index this answer reflects.
    pub applied_index: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use urna_keyceremony::blsttc::SecretKeySet;
    use urna_keyceremony::elgamal::Ciphertext;
    use urna_keyceremony::group::{g_mul, Point};
    use urna_keyceremony::proofs::KeyTable;
    use urna_keyceremony::tally::{key_share, partial_decrypt, TallyContext};

    fn share() -> (blsttc::SecretKey, PartialDecryption) {
        let mut rng = rand_core_rng();
        let sks = SecretKeySet::random(1, &mut rng);
        let pks = sks.public_keys();
        let k = Point::from_bytes(&pks.public_key().to_bytes()).unwrap();
        let ct = Ciphertext::encrypt(&KeyTable::new(k), 1, &blsttc::Fr::from(7u64)).unwrap();
        let ctx = TallyContext::new([1u8; 32], 3);
        let kj = key_share(&pks, 0).unwrap();
        let pd = partial_decrypt(&ctx, 0, &sks.secret_key_share(0), &kj, &[ct], &mut rng).unwrap();
        (blsttc::SecretKey::random(), pd)
    }

    fn rand_core_rng() -> rand::rngs::ThreadRng {
        rand::thread_rng()
    }

    #[test]
    fn share_signature_binds_context_purpose_and_custodian() {
        let (sk, pd) = share();
        let pk = sk.public_key();
        let q = [5u8; 32];
        let s = SignedPartialDecryption::sign(&sk, &q, SharePurpose::Tally, 0, pd.clone());
        assert!(s.verify_signature(&pk, &q, SharePurpose::Tally));
        assert!(!s.verify_signature(&pk, &[6u8; 32], SharePurpose::Tally));
        assert!(!s.verify_signature(&pk, &q, SharePurpose::Rehearsal));
        let mut moved = s.clone();
        moved.custodian = 1;
        assert!(!moved.verify_signature(&pk, &q, SharePurpose::Tally));
        // JSON roundtrip keeps the signature valid.
        let back: SignedPartialDecryption =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.verify_signature(&pk, &q, SharePurpose::Tally));
        // The statement covers the share's points.
        let mut other = pd;
        other.shares[0].m = Point::from_proj(&g_mul(&blsttc::Fr::from(3u64))).unwrap();
        assert_ne!(
            share_statement(&q, SharePurpose::Tally, 0, &other),
            share_statement(&q, SharePurpose::Tally, 0, &s.partial)
        );
    }

    #[test]
    fn error_body_and_receipt_json() {
        let e: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"already_voted","message":"m"}}"#).unwrap();
        assert_eq!(e.error.code, "already_voted");
        assert_eq!(e.error.leader, None);
        let r = Receipt {
            election_id: "e".into(),
            ballot_hash: [1; 32],
            previous_tracking_code: [2; 32],
            tracking_code: [3; 32],
            seq: 4,
            index: 5,
            signed_head: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["tracking_code"], hex::encode([3u8; 32]));
        assert_eq!(serde_json::from_value::<Receipt>(v).unwrap(), r);
        assert_eq!(ElectionPhase::KeyCeremony.to_string(), "key_ceremony");
        assert_eq!(
            serde_json::to_value(ElectionPhase::KeyCeremony).unwrap(),
            "key_ceremony"
        );
    }
}

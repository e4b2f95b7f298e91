//! The dealerless key ceremony (design 4.2): joint-Feldman DKG of two keys in one qualified set.
//!
//! Everything here is pure: message types, their canonical bytes and signatures, and the
//! [`CeremonyState`] that judges messages in log order. The replicated state machine calls
//! [`CeremonyState::apply`] and [`CeremonyState::advance`] at apply time; the custodian tool drives a
//! [`Custodian`], which turns the public state into the custodian's next messages and finally into its
//! [`CustodianSecrets`].
//!
//! Phases: `Join` (transport keys) -> `Deal` (commitments, proofs, encrypted shares) -> `Check` (acks and
//! complaints) -> `Answer` (only when someone complained) -> `Confirm` (proof of the encryption share
//! and a signature share over the dealing transcript) -> `Rehearsal` (decrypt g^1) -> `Complete`.
//! Any phase may end in `Aborted` with an [`AbortReason`] naming who was disqualified.
//!
//! Every polynomial is evaluated only at custodian points `x_j = j + 1` ([`x_of`]); a polynomial is never
//! evaluated, sent or published at 0.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use blsttc::group::Curve;
use blsttc::poly::{Commitment, Poly};
use blsttc::{Fr, PublicKeySet, SecretKey, SecretKeyShare};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::election::{hex_32, ElectionParams, IdentityKey, ParamsError};
use crate::elgamal::Ciphertext;
use crate::group::{g_mul, x_of, DecodeError, Point, Scalar};
use crate::hash::{Hash32, Transcript};
use crate::proofs::{KeyTable, SchnorrProof};

/// Tag of the signed statement of every ceremony message.
pub const TAG_MESSAGE: &str = "urna/v1/ceremony/message";
/// Tag of a message payload's hash.
pub const TAG_PAYLOAD: &str = "urna/v1/ceremony/payload";
/// Tag of the proof of knowledge of a dealt polynomial's constant term.
pub const TAG_DEAL_POK: &str = "urna/v1/ceremony/deal-pok";
/// Tag of the plaintext of an encrypted share.
pub const TAG_SHARE: &str = "urna/v1/ceremony/share";
/// Tag of the proof of knowledge of a custodian's encryption share.
pub const TAG_CONFIRM_POK: &str = "urna/v1/ceremony/confirm-pok";
/// Tag of the statement custodians sign with their signing shares at confirmation.
pub const TAG_CONFIRM_SIGN: &str = "urna/v1/ceremony/confirm-sign";
/// Tag of the running transcript hash.
pub const TAG_TRANSCRIPT: &str = "urna/v1/ceremony/transcript";
/// Tag of the rehearsal nonce.
pub const TAG_REHEARSAL: &str = "urna/v1/rehearsal";

/// Which of the two dealt polynomials a value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolyKind {
    /// The ElGamal election key.
    Encryption,
    /// The BLS key that signs the result.
    Signing,
}

impl PolyKind {
    /// Both kinds, in canonical order.
    pub const ALL: [PolyKind; 2] = [PolyKind::Encryption, PolyKind::Signing];

    fn label(self) -> &'static str {
        match self {
            PolyKind::Encryption => "encryption",
            PolyKind::Signing => "signing",
        }
    }
}

impl fmt::Display for PolyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The ceremony's phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Custodians announce their transport keys.
    Join,
    /// Custodians deal their two polynomials.
    Deal,
    /// Custodians acknowledge or complain about each dealer.
    Check,
    /// Dealers answer complaints in the clear.
    Answer,
    /// Qualified custodians prove their shares and sign the dealing transcript.
    Confirm,
    /// The rehearsal ciphertext awaits a threshold decryption.
    Rehearsal,
    /// The keys are ready for the election.
    Complete,
    /// The ceremony failed; see [`CeremonyState::abort_reason`].
    Aborted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Phase::Join => "join",
            Phase::Deal => "deal",
            Phase::Check => "check",
            Phase::Answer => "answer",
            Phase::Confirm => "confirm",
            Phase::Rehearsal => "rehearsal",
            Phase::Complete => "complete",
            Phase::Aborted => "aborted",
        };
        f.write_str(s)
    }
}

/// The kind of a ceremony message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// [`Join`].
    Join,
    /// [`Deal`].
    Deal,
    /// [`Ack`].
    Ack,
    /// [`Complaint`].
    Complaint,
    /// [`Answer`].
    Answer,
    /// [`Confirmation`].
    Confirmation,
}

impl MessageKind {
    /// The phase in which messages of this kind are accepted.
    pub fn phase(self) -> Phase {
        match self {
            MessageKind::Join => Phase::Join,
            MessageKind::Deal => Phase::Deal,
            MessageKind::Ack | MessageKind::Complaint => Phase::Check,
            MessageKind::Answer => Phase::Answer,
            MessageKind::Confirmation => Phase::Confirm,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            MessageKind::Join => "join",
            MessageKind::Deal => "deal",
            MessageKind::Ack => "ack",
            MessageKind::Complaint => "complaint",
            MessageKind::Answer => "answer",
            MessageKind::Confirmation => "confirmation",
        };
        f.write_str(s)
    }
}

/// Why a custodian was disqualified (as a dealer, for both polynomials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum DisqualifyReason {
    /// No transport key before the join deadline.
    NoJoin,
    /// No deal before the deal deadline.
    NoDeal,
    /// A complaint was not answered before the answer deadline.
    NoAnswer {
        /// Who complained.
        complainer: usize,
        /// About which polynomial.
        kind: PolyKind,
    },
    /// The answer to a complaint does not match the dealer's commitment.
    BadAnswer {
        /// Who complained.
        complainer: usize,
        /// About which polynomial.
        kind: PolyKind,
    },
}

impl fmt::Display for DisqualifyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisqualifyReason::NoJoin => write!(f, "did not join before the deadline"),
            DisqualifyReason::NoDeal => write!(f, "did not deal before the deadline"),
            DisqualifyReason::NoAnswer { complainer, kind } => write!(
                f,
                "did not answer custodian {complainer}'s complaint about its {kind} polynomial"
            ),
            DisqualifyReason::BadAnswer { complainer, kind } => write!(
                f,
                "answered custodian {complainer}'s complaint about its {kind} polynomial with a value that \
                 does not match its commitment"
            ),
        }
    }
}

/// Why the ceremony failed (identifiable abort).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "abort")]
pub enum AbortReason {
    /// Fewer than q custodians remain qualified.
    TooFewQualified {
        /// The quorum q.
        quorum: usize,
        /// The custodians still qualified.
        qualified: Vec<usize>,
        /// Who was disqualified and why.
        disqualified: Vec<(usize, DisqualifyReason)>,
    },
    /// Fewer than q qualified custodians confirmed their shares.
    TooFewConfirmed {
        /// The quorum q.
        quorum: usize,
        /// The custodians that confirmed.
        confirmed: Vec<usize>,
        /// Qualified custodians that did not confirm before the deadline.
        missing: Vec<usize>,
    },
    /// The qualified commitments sum to a degenerate key (identity or lower degree).
    DegenerateKey {
        /// Which key.
        kind: PolyKind,
    },
    /// The rehearsal decryption did not yield 1.
    RehearsalFailed {
        /// The value the decryption produced.
        got: u64,
    },
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::TooFewQualified {
                quorum,
                qualified,
                disqualified,
            } => {
                write!(
                    f,
                    "only {} custodian(s) {:?} remain qualified, fewer than the quorum {quorum}; disqualified:",
                    qualified.len(),
                    qualified
                )?;
                for (j, why) in disqualified {
                    write!(f, " custodian {j} {why};")?;
                }
                Ok(())
            }
            AbortReason::TooFewConfirmed {
                quorum,
                confirmed,
                missing,
            } => write!(
                f,
                "only {} custodian(s) {confirmed:?} confirmed their shares, fewer than the quorum {quorum}; \
                 missing: {missing:?}",
                confirmed.len()
            ),
            AbortReason::DegenerateKey { kind } => {
                write!(f, "the qualified commitments give a degenerate {kind} key")
            }
            AbortReason::RehearsalFailed { got } => {
                write!(f, "the rehearsal decrypted to {got}, not 1")
            }
        }
    }
}

/// Why a message, an advance or a local step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeremonyError {
    /// The election parameters are invalid.
    #[error("invalid election parameters: {0}")]
    Params(#[from] ParamsError),
    /// The message is not accepted in the current phase.
    #[error("a {kind} message is not accepted in the {phase} phase")]
    WrongPhase {
        /// The message's kind.
        kind: MessageKind,
        /// The current phase.
        phase: Phase,
    },
    /// The operation needs another phase.
    #[error("this needs the {expected} phase, the ceremony is in the {phase} phase")]
    NotInPhase {
        /// The phase needed.
        expected: Phase,
        /// The current phase.
        phase: Phase,
    },
    /// The index names no custodian of this election.
    #[error("custodian {index} is not a custodian of this election")]
    UnknownCustodian {
        /// The index given.
        index: usize,
    },
    /// The identity-key signature does not verify.
    #[error("the signature of custodian {sender}'s {kind} message does not verify")]
    BadSignature {
        /// The claimed sender.
        sender: usize,
        /// The message's kind.
        kind: MessageKind,
    },
    /// The same message was already accepted.
    #[error("duplicate {kind} message from custodian {sender}")]
    Duplicate {
        /// The message's kind.
        kind: MessageKind,
        /// The sender.
        sender: usize,
    },
    /// The sender has been disqualified (or, for a dealer named in a message, is disqualified).
    #[error("custodian {index} has been disqualified")]
    Disqualified {
        /// The disqualified custodian.
        index: usize,
    },
    /// The sender has not joined (no transport key).
    #[error("custodian {index} has not joined the ceremony")]
    NotJoined {
        /// The custodian.
        index: usize,
    },
    /// The named dealer has not dealt.
    #[error("custodian {dealer} has not dealt")]
    NotDealt {
        /// The dealer.
        dealer: usize,
    },
    /// A custodian named itself where another custodian is expected.
    #[error("custodian {index} cannot ack, complain about or answer itself")]
    SelfReference {
        /// The custodian.
        index: usize,
    },
    /// A commitment has the wrong number of coefficients.
    #[error("the {kind} commitment has {got} coefficients, expected {expected}")]
    CommitmentLength {
        /// Which polynomial.
        kind: PolyKind,
        /// q coefficients.
        expected: usize,
        /// Received.
        got: usize,
    },
    /// The proof of knowledge does not verify against the commitment.
    #[error("custodian {dealer}'s proof of knowledge for its {kind} polynomial does not verify")]
    BadProof {
        /// The dealer.
        dealer: usize,
        /// Which polynomial.
        kind: PolyKind,
    },
    /// The encrypted shares do not go to exactly every other joined custodian, in order.
    #[error(
        "custodian {dealer}'s deal must carry one share for every other joined custodian, in index order"
    )]
    ShareRecipients {
        /// The dealer.
        dealer: usize,
    },
    /// A revealed or decrypted share does not match the dealer's commitment.
    #[error("custodian {dealer}'s {kind} share for custodian {recipient} does not match its commitment")]
    ShareMismatch {
        /// The dealer.
        dealer: usize,
        /// The recipient.
        recipient: usize,
        /// Which polynomial.
        kind: PolyKind,
    },
    /// An encrypted share does not decrypt (invalid ciphertext or wrong binding).
    #[error("custodian {dealer}'s encrypted share for custodian {recipient} does not decrypt")]
    Undecryptable {
        /// The dealer.
        dealer: usize,
        /// The recipient.
        recipient: usize,
    },
    /// The answer refers to no open complaint.
    #[error(
        "there is no open complaint from custodian {complainer} about custodian {dealer}'s {kind} polynomial"
    )]
    NoSuchComplaint {
        /// The dealer answering.
        dealer: usize,
        /// The complainer named.
        complainer: usize,
        /// Which polynomial.
        kind: PolyKind,
    },
    /// A confirmation's share key is not the custodian's encryption public key share.
    #[error("custodian {index}'s confirmation names a share key other than its public key share")]
    ShareKeyMismatch {
        /// The custodian.
        index: usize,
    },
    /// A confirmation's proof of knowledge of the encryption share does not verify.
    #[error("custodian {index}'s proof of knowledge of its encryption share does not verify")]
    BadShareProof {
        /// The custodian.
        index: usize,
    },
    /// A confirmation's signature share does not verify against the signing public key share.
    #[error("custodian {index}'s signature share does not verify against its signing key share")]
    BadSignatureShare {
        /// The custodian.
        index: usize,
    },
    /// Only qualified custodians confirm.
    #[error("custodian {index} is not in the qualified set")]
    NotQualified {
        /// The custodian.
        index: usize,
    },
    /// The current phase has no deadline to advance past.
    #[error("the {phase} phase has no deadline to advance past")]
    NoDeadline {
        /// The current phase.
        phase: Phase,
    },
    /// An encrypted share has the wrong size for a share pair.
    #[error("custodian {dealer}'s encrypted share for custodian {recipient} is malformed")]
    MalformedShare {
        /// The dealer.
        dealer: usize,
        /// The recipient.
        recipient: usize,
    },
    /// An advance before the current phase's deadline.
    #[error("the {phase} phase's deadline {deadline} has not passed (now {now})")]
    DeadlineNotReached {
        /// The current phase.
        phase: Phase,
        /// Its deadline (ms).
        deadline: i64,
        /// The time given (ms).
        now: i64,
    },
    /// The ceremony has aborted.
    #[error("the ceremony has aborted: {0}")]
    Aborted(AbortReason),
    /// The ceremony is over: nothing more to apply or advance.
    #[error("the ceremony is already complete")]
    AlreadyComplete,
    /// The identity secret key does not match the registered identity key.
    #[error("this identity key is not custodian {index}'s registered key")]
    WrongIdentity {
        /// The custodian index claimed.
        index: usize,
    },
    /// A derived secret share does not match the public key share.
    #[error("the derived {kind} share does not match the public key share of custodian {index}")]
    DerivedShareMismatch {
        /// The custodian.
        index: usize,
        /// Which key.
        kind: PolyKind,
    },
    /// Stored secrets belong to another election (their base hash differs).
    #[error("these secrets belong to another election")]
    WrongElection,
    /// The step needs keys that have not been derived yet.
    #[error("the election keys have not been derived yet")]
    NotDerived,
    /// A group element was degenerate (probability 2^-255, or a malicious input).
    #[error("degenerate group element: {0}")]
    Decode(#[from] DecodeError),
}

/// A validated blsttc public key used as a custodian's per-election transport key.
pub type TransportKey = IdentityKey;

/// First message of a custodian: its fresh per-election transport key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// The blsttc public key shares are encrypted to.
    pub transport_key: TransportKey,
}

/// One dealt polynomial: its commitment and a proof of knowledge of its constant term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealtPoly {
    /// `g^{a_k}` for the q coefficients `a_0 .. a_t` (all validated, none the identity).
    pub commitment: Vec<Point>,
    /// Schnorr proof of knowledge of `a_0`, bound to Q, dealer, kind and every coefficient commitment.
    pub proof: SchnorrProof,
}

impl DealtPoly {
    /// The blsttc commitment.
    pub fn to_commitment(&self) -> Commitment {
        Commitment::from(self.commitment.iter().map(|p| *p.affine()).collect::<Vec<_>>())
    }
}

/// A share pair `(f_enc(x_j), f_sig(x_j))` encrypted to custodian j's transport key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedShare {
    /// The recipient j.
    pub recipient: usize,
    /// blsttc hybrid ciphertext of the bound share plaintext.
    #[serde(with = "hex_ciphertext")]
    pub ciphertext: blsttc::Ciphertext,
}

/// A dealer's message: both polynomials' commitments and proofs, and the encrypted shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// The encryption-key polynomial.
    pub encryption: DealtPoly,
    /// The signing-key polynomial.
    pub signing: DealtPoly,
    /// One encrypted share pair per other joined custodian, in index order.
    pub shares: Vec<EncryptedShare>,
}

impl Deal {
    /// The dealt polynomial of the given kind.
    pub fn poly(&self, kind: PolyKind) -> &DealtPoly {
        match kind {
            PolyKind::Encryption => &self.encryption,
            PolyKind::Signing => &self.signing,
        }
    }
}

/// Custodian j acknowledges dealer i: both shares match the commitments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The dealer i.
    pub dealer: usize,
}

/// Custodian j complains that dealer i's share of one polynomial is missing or wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    /// The dealer i.
    pub dealer: usize,
    /// The polynomial complained about.
    pub kind: PolyKind,
}

/// Dealer i reveals `f_i(x_j)` in the clear to answer j's complaint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The complainer j.
    pub complainer: usize,
    /// The polynomial.
    pub kind: PolyKind,
    /// `f_i(x_j)`.
    pub value: Scalar,
}

/// Custodian j confirms its shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// `K_j = g^{s_j}`, the encryption public key share.
    pub share_key: Point,
    /// Proof of knowledge of `s_j`, bound to Q and j.
    pub proof: SchnorrProof,
    /// Signature share over the dealing transcript, made with the signing share.
    #[serde(with = "hex_sig_share")]
    pub signature_share: blsttc::SignatureShare,
}

/// The payload of a ceremony message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MessageBody {
    /// See [`Join`].
    Join(Join),
    /// See [`Deal`].
    Deal(Deal),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Complaint`].
    Complaint(Complaint),
    /// See [`Answer`].
    Answer(Answer),
    /// See [`Confirmation`].
    Confirmation(Confirmation),
}

/// Marker written for "no counterpart" in the signed statement.
const NO_COUNTERPART: u64 = u64::MAX;

impl MessageBody {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            MessageBody::Join(_) => MessageKind::Join,
            MessageBody::Deal(_) => MessageKind::Deal,
            MessageBody::Ack(_) => MessageKind::Ack,
            MessageBody::Complaint(_) => MessageKind::Complaint,
            MessageBody::Answer(_) => MessageKind::Answer,
            MessageBody::Confirmation(_) => MessageKind::Confirmation,
        }
    }

    /// The other custodian the message is about: the dealer (ack, complaint), the complainer (answer).
    pub fn counterpart(&self) -> Option<usize> {
        match self {
            MessageBody::Ack(a) => Some(a.dealer),
            MessageBody::Complaint(c) => Some(c.dealer),
            MessageBody::Answer(a) => Some(a.complainer),
            _ => None,
        }
    }

    /// Canonical bytes of the payload (length-prefixed fields in fixed order; never JSON).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let t = Transcript::new(TAG_PAYLOAD).str(&self.kind().to_string());
        let t = match self {
            MessageBody::Join(j) => t.bytes(&j.transport_key.to_bytes()),
            MessageBody::Deal(d) => {
                let mut t =
                    absorb_dealt(absorb_dealt(t, &d.encryption), &d.signing).u64(d.shares.len() as u64);
                for s in &d.shares {
                    t = t.u64(s.recipient as u64).bytes(&s.ciphertext.to_bytes());
                }
                t
            }
            MessageBody::Ack(a) => t.u64(a.dealer as u64),
            MessageBody::Complaint(c) => t.u64(c.dealer as u64).str(c.kind.label()),
            MessageBody::Answer(a) => t
                .u64(a.complainer as u64)
                .str(a.kind.label())
                .bytes(&a.value.to_bytes()),
            MessageBody::Confirmation(c) => t
                .point(c.share_key.affine())
                .point(c.proof.commitment.affine())
                .bytes(&c.proof.response.to_bytes())
                .bytes(&c.signature_share.to_bytes()),
        };
        t.into_bytes()
    }

    /// `H(payload)` over the canonical bytes.
    pub fn payload_hash(&self) -> Hash32 {
        crate::hash::h(TAG_PAYLOAD, &[&self.canonical_bytes()])
    }
}

fn absorb_dealt(t: Transcript, d: &DealtPoly) -> Transcript {
    let mut t = t.u64(d.commitment.len() as u64);
    for p in &d.commitment {
        t = t.point(p.affine());
    }
    t.point(d.proof.commitment.affine())
        .bytes(&d.proof.response.to_bytes())
}

/// The statement an identity key signs: `H(tag, Q, phase, sender, counterpart, payload hash)`.
pub fn signed_statement(base_hash: &Hash32, sender: usize, body: &MessageBody) -> Hash32 {
    Transcript::new(TAG_MESSAGE)
        .hash(base_hash)
        .str(&body.kind().phase().to_string())
        .str(&body.kind().to_string())
        .u64(sender as u64)
        .u64(body.counterpart().map_or(NO_COUNTERPART, |c| c as u64))
        .hash(&body.payload_hash())
        .digest()
}

/// A ceremony message signed with the sender's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCeremonyMessage {
    /// The sender's 0-based custodian index.
    pub sender: usize,
    /// The payload.
    pub body: MessageBody,
    /// BLS signature of [`signed_statement`] with the sender's identity key.
    #[serde(with = "hex_sig")]
    pub signature: blsttc::Signature,
}

impl SignedCeremonyMessage {
    /// Signs `body` as custodian `sender` of the election with base hash Q.
    pub fn sign(identity: &SecretKey, base_hash: &Hash32, sender: usize, body: MessageBody) -> Self {
        let signature = identity.sign(signed_statement(base_hash, sender, &body));
        SignedCeremonyMessage {
            sender,
            body,
            signature,
        }
    }

    /// Whether the signature verifies under `key`.
    pub fn verify(&self, key: &IdentityKey, base_hash: &Hash32) -> bool {
        key.0.verify(
            &self.signature,
            signed_statement(base_hash, self.sender, &self.body),
        )
    }

    /// Canonical bytes of the whole message (statement and signature), as the transcript absorbs it.
    pub fn canonical_bytes(&self, base_hash: &Hash32) -> Vec<u8> {
        Transcript::new(TAG_MESSAGE)
            .hash(&signed_statement(base_hash, self.sender, &self.body))
            .bytes(&self.body.canonical_bytes())
            .bytes(&self.signature.to_bytes())
            .into_bytes()
    }
}

/// Absolute deadlines (Unix ms, state-machine time) of the phases that wait for custodians.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// End of the join phase.
    pub join: i64,
    /// End of the deal phase.
    pub deal: i64,
    /// End of the check phase (missing verdicts count as no complaint).
    pub check: i64,
    /// End of the answer phase.
    pub answer: i64,
    /// End of the confirm phase.
    pub confirm: i64,
}

impl Deadlines {
    fn of(&self, phase: Phase) -> Option<i64> {
        match phase {
            Phase::Join => Some(self.join),
            Phase::Deal => Some(self.deal),
            Phase::Check => Some(self.check),
            Phase::Answer => Some(self.answer),
            Phase::Confirm => Some(self.confirm),
            _ => None,
        }
    }
}

/// A complaint and its answer, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintRecord {
    /// Who complained (j).
    pub complainer: usize,
    /// About whom (i).
    pub dealer: usize,
    /// About which polynomial.
    pub kind: PolyKind,
    /// The dealer's answer `f_i(x_j)`, once given (whether or not it matched).
    pub answer: Option<Scalar>,
}

/// The public keys derived over the qualified set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedKeys {
    /// The qualified dealers, ascending.
    pub qualified: Vec<usize>,
    /// Sum of the qualified encryption commitments.
    pub encryption: PublicKeySet,
    /// Sum of the qualified signing commitments.
    pub signing: PublicKeySet,
    /// The election key K (constant term of `encryption`).
    pub encryption_key: Point,
    /// Transcript hash at the end of dealing (what the confirmation signature shares sign).
    #[serde(with = "hex_32")]
    pub dealing_transcript: Hash32,
}

/// The ceremony's public state: the judge of every ceremony message (serde-serializable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CeremonyState {
    #[serde(with = "hex_32")]
    base_hash: Hash32,
    identity_keys: Vec<IdentityKey>,
    quorum: usize,
    deadlines: Deadlines,
    phase: Phase,
    transport_keys: Vec<Option<TransportKey>>,
    deals: BTreeMap<usize, Deal>,
    acks: BTreeSet<(usize, usize)>,
    complaints: Vec<ComplaintRecord>,
    disqualified: BTreeMap<usize, DisqualifyReason>,
    keys: Option<DerivedKeys>,
    confirmations: BTreeMap<usize, Confirmation>,
    #[serde(with = "hex_32")]
    transcript: Hash32,
    entries: u64,
    final_transcript: Option<FinalTranscript>,
    rehearsal: Option<Ciphertext>,
    abort: Option<AbortReason>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FinalTranscript(#[serde(with = "hex_32")] Hash32);

impl CeremonyState {
    /// Starts a ceremony for validated election parameters, in the join phase.
    pub fn new(params: &ElectionParams, deadlines: Deadlines) -> Result<Self, CeremonyError> {
        params.validate()?;
        let base_hash = params.base_hash();
        let n = params.custodians.len();
        Ok(CeremonyState {
            base_hash,
            identity_keys: params.custodians.iter().map(|c| c.identity_key).collect(),
            quorum: params.quorum,
            deadlines,
            phase: Phase::Join,
            transport_keys: vec![None; n],
            deals: BTreeMap::new(),
            acks: BTreeSet::new(),
            complaints: Vec::new(),
            disqualified: BTreeMap::new(),
            keys: None,
            confirmations: BTreeMap::new(),
            transcript: Transcript::new(TAG_TRANSCRIPT).hash(&base_hash).digest(),
            entries: 0,
            final_transcript: None,
            rehearsal: None,
            abort: None,
        })
    }

    /// The election's base hash Q.
    pub fn base_hash(&self) -> &Hash32 {
        &self.base_hash
    }

    /// Number of custodians n.
    pub fn custodian_count(&self) -> usize {
        self.identity_keys.len()
    }

    /// The quorum q.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The blsttc threshold t = q - 1 (polynomial degree).
    pub fn threshold(&self) -> usize {
        self.quorum - 1
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The deadlines.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// Custodian j's transport key, once joined.
    pub fn transport_key(&self, j: usize) -> Option<&TransportKey> {
        self.transport_keys.get(j).and_then(|k| k.as_ref())
    }

    /// Dealer i's deal, once dealt.
    pub fn deal(&self, i: usize) -> Option<&Deal> {
        self.deals.get(&i)
    }

    /// Every complaint so far, in log order.
    pub fn complaints(&self) -> &[ComplaintRecord] {
        &self.complaints
    }

    /// Whether j has acknowledged dealer i.
    pub fn has_acked(&self, j: usize, dealer: usize) -> bool {
        self.acks.contains(&(j, dealer))
    }

    /// Disqualified custodians and why.
    pub fn disqualified(&self) -> &BTreeMap<usize, DisqualifyReason> {
        &self.disqualified
    }

    /// Custodians still in the running: joined, not disqualified (and, from the check phase on, dealt).
    pub fn qualified(&self) -> Vec<usize> {
        (0..self.custodian_count())
            .filter(|j| self.is_qualified(*j))
            .collect()
    }

    fn is_qualified(&self, j: usize) -> bool {
        let joined = self.transport_keys.get(j).is_some_and(|k| k.is_some());
        let dealt_ok = self.phase <= Phase::Deal || self.deals.contains_key(&j);
        joined && dealt_ok && !self.disqualified.contains_key(&j)
    }

    /// The public keys, once derived (from the confirm phase on).
    pub fn keys(&self) -> Option<&DerivedKeys> {
        self.keys.as_ref()
    }

    /// Custodians that confirmed, ascending.
    pub fn confirmed(&self) -> Vec<usize> {
        self.confirmations.keys().copied().collect()
    }

    /// Custodian j's confirmation, if accepted.
    pub fn confirmation(&self, j: usize) -> Option<&Confirmation> {
        self.confirmations.get(&j)
    }

    /// True when the qualified (or, once confirmations are closed, confirmed) set has exactly q members:
    /// the ceremony may complete, but one lost custodian then blocks the tally.
    pub fn quorum_warning(&self) -> bool {
        match self.phase {
            Phase::Rehearsal | Phase::Complete => self.confirmations.len() == self.quorum,
            Phase::Aborted => false,
            _ => self.qualified().len() == self.quorum,
        }
    }

    /// The running transcript hash over every accepted message and advance, in log order.
    pub fn transcript_hash(&self) -> &Hash32 {
        &self.transcript
    }

    /// The transcript hash that closes the ceremony (after the confirmations): it goes into Q' and
    /// seeds the rehearsal.
    pub fn final_transcript_hash(&self) -> Option<&Hash32> {
        self.final_transcript.as_ref().map(|f| &f.0)
    }

    /// The rehearsal ciphertext (an encryption of g^1), from the rehearsal phase on.
    pub fn rehearsal(&self) -> Option<&Ciphertext> {
        self.rehearsal.as_ref()
    }

    /// Why the ceremony aborted, if it did.
    pub fn abort_reason(&self) -> Option<&AbortReason> {
        self.abort.as_ref()
    }

    fn check_live(&self) -> Result<(), CeremonyError> {
        match self.phase {
            Phase::Aborted => Err(CeremonyError::Aborted(
                self.abort
                    .clone()
                    .unwrap_or(AbortReason::RehearsalFailed { got: 0 }),
            )),
            Phase::Complete => Err(CeremonyError::AlreadyComplete),
            _ => Ok(()),
        }
    }

    fn custodian(&self, index: usize) -> Result<&IdentityKey, CeremonyError> {
        self.identity_keys
            .get(index)
            .ok_or(CeremonyError::UnknownCustodian { index })
    }

    fn require_qualified(&self, index: usize) -> Result<(), CeremonyError> {
        self.custodian(index)?;
        if self.disqualified.contains_key(&index) {
            return Err(CeremonyError::Disqualified { index });
        }
        if self.transport_key(index).is_none() {
            return Err(CeremonyError::NotJoined { index });
        }
        Ok(())
    }

    fn absorb(&mut self, part: &[u8]) {
        self.entries += 1;
        self.transcript = Transcript::new(TAG_TRANSCRIPT)
            .hash(&self.transcript)
            .u64(self.entries)
            .bytes(part)
            .digest();
    }

    /// Applies one signed message in log order. On error nothing changes (a recorded no-op).
    ///
    /// A dealer's answer that does not match its commitment is *accepted* as evidence and disqualifies
    /// the dealer (see [`DisqualifyReason::BadAnswer`]).
    pub fn apply(&mut self, msg: &SignedCeremonyMessage) -> Result<(), CeremonyError> {
        self.check_live()?;
        let kind = msg.body.kind();
        let sender = msg.sender;
        let key = *self.custodian(sender)?;
        if kind.phase() != self.phase {
            return Err(CeremonyError::WrongPhase {
                kind,
                phase: self.phase,
            });
        }
        if !msg.verify(&key, &self.base_hash) {
            return Err(CeremonyError::BadSignature { sender, kind });
        }
        match &msg.body {
            MessageBody::Join(join) => {
                if self.transport_keys[sender].is_some() {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                self.transport_keys[sender] = Some(join.transport_key);
            }
            MessageBody::Deal(deal) => {
                self.require_qualified(sender)?;
                if self.deals.contains_key(&sender) {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                self.check_deal(sender, deal)?;
                self.deals.insert(sender, deal.clone());
            }
            MessageBody::Ack(ack) => {
                self.check_verdict(sender, ack.dealer)?;
                if self.acks.contains(&(sender, ack.dealer))
                    || self
                        .complaints
                        .iter()
                        .any(|c| c.complainer == sender && c.dealer == ack.dealer)
                {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                self.acks.insert((sender, ack.dealer));
            }
            MessageBody::Complaint(c) => {
                self.check_verdict(sender, c.dealer)?;
                if self.acks.contains(&(sender, c.dealer))
                    || self
                        .complaints
                        .iter()
                        .any(|r| r.complainer == sender && r.dealer == c.dealer && r.kind == c.kind)
                {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                self.complaints.push(ComplaintRecord {
                    complainer: sender,
                    dealer: c.dealer,
                    kind: c.kind,
                    answer: None,
                });
            }
            MessageBody::Answer(a) => {
                self.require_qualified(sender)?;
                let deal = self
                    .deals
                    .get(&sender)
                    .ok_or(CeremonyError::NotDealt { dealer: sender })?;
                let ok = check_share(deal.poly(a.kind), sender, a.complainer, a.kind, &a.value.0).is_ok();
                let rec = self
                    .complaints
                    .iter_mut()
                    .find(|r| r.dealer == sender && r.complainer == a.complainer && r.kind == a.kind)
                    .ok_or(CeremonyError::NoSuchComplaint {
                        dealer: sender,
                        complainer: a.complainer,
                        kind: a.kind,
                    })?;
                if rec.answer.is_some() {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                rec.answer = Some(a.value);
                if !ok {
                    self.disqualified.insert(
                        sender,
                        DisqualifyReason::BadAnswer {
                            complainer: a.complainer,
                            kind: a.kind,
                        },
                    );
                }
            }
            MessageBody::Confirmation(c) => {
                let keys = self.keys.as_ref().ok_or(CeremonyError::NotDerived)?;
                if !keys.qualified.contains(&sender) {
                    return Err(CeremonyError::NotQualified { index: sender });
                }
                if self.confirmations.contains_key(&sender) {
                    return Err(CeremonyError::Duplicate { kind, sender });
                }
                check_confirmation(&self.base_hash, keys, sender, c)?;
                self.confirmations.insert(sender, c.clone());
            }
        }
        let bytes = msg.canonical_bytes(&self.base_hash);
        self.absorb(&bytes);
        self.progress();
        Ok(())
    }

    fn check_deal(&self, dealer: usize, deal: &Deal) -> Result<(), CeremonyError> {
        let q = self.quorum;
        for kind in PolyKind::ALL {
            let d = deal.poly(kind);
            if d.commitment.len() != q {
                return Err(CeremonyError::CommitmentLength {
                    kind,
                    expected: q,
                    got: d.commitment.len(),
                });
            }
            let ctx = deal_pok_context(&self.base_hash, dealer, kind, &d.commitment);
            if !d.proof.verify(&ctx, &d.commitment[0]) {
                return Err(CeremonyError::BadProof { dealer, kind });
            }
        }
        let expected: Vec<usize> = (0..self.custodian_count())
            .filter(|&j| j != dealer && self.transport_key(j).is_some())
            .collect();
        let got: Vec<usize> = deal.shares.iter().map(|s| s.recipient).collect();
        if expected != got {
            return Err(CeremonyError::ShareRecipients { dealer });
        }
        for s in &deal.shares {
            if s.ciphertext.to_bytes().len() != SHARE_CIPHERTEXT_LEN {
                return Err(CeremonyError::MalformedShare {
                    dealer,
                    recipient: s.recipient,
                });
            }
        }
        Ok(())
    }

    fn check_verdict(&self, sender: usize, dealer: usize) -> Result<(), CeremonyError> {
        self.require_qualified(sender)?;
        self.custodian(dealer)?;
        if sender == dealer {
            return Err(CeremonyError::SelfReference { index: sender });
        }
        if self.disqualified.contains_key(&dealer) {
            return Err(CeremonyError::Disqualified { index: dealer });
        }
        if !self.deals.contains_key(&dealer) {
            return Err(CeremonyError::NotDealt { dealer });
        }
        Ok(())
    }

    /// Moves to the next phase when everyone expected has spoken.
    fn progress(&mut self) {
        loop {
            let before = self.phase;
            match self.phase {
                Phase::Join if self.transport_keys.iter().all(|k| k.is_some()) => {
                    self.phase = Phase::Deal;
                }
                Phase::Deal => {
                    let all = self.qualified().iter().all(|j| self.deals.contains_key(j));
                    if all {
                        self.phase = Phase::Check;
                    }
                }
                Phase::Check => {
                    let qual = self.qualified();
                    let complete = qual.iter().all(|&j| {
                        qual.iter().filter(|&&i| i != j).all(|&i| {
                            self.acks.contains(&(j, i))
                                || self.complaints.iter().any(|c| c.complainer == j && c.dealer == i)
                        })
                    });
                    if complete {
                        self.end_check();
                    }
                }
                Phase::Answer => {
                    let open = self
                        .complaints
                        .iter()
                        .any(|c| c.answer.is_none() && !self.disqualified.contains_key(&c.dealer));
                    if !open {
                        self.derive();
                    }
                }
                Phase::Confirm => {
                    let all = self
                        .keys
                        .as_ref()
                        .is_some_and(|k| k.qualified.iter().all(|j| self.confirmations.contains_key(j)));
                    if all {
                        self.end_confirm();
                    }
                }
                _ => {}
            }
            if self.phase == before {
                break;
            }
        }
    }

    fn end_check(&mut self) {
        let open = self
            .complaints
            .iter()
            .any(|c| !self.disqualified.contains_key(&c.dealer));
        if open {
            self.phase = Phase::Answer;
        } else {
            self.derive();
        }
    }

    fn abort(&mut self, reason: AbortReason) {
        self.abort = Some(reason);
        self.phase = Phase::Aborted;
    }

    fn check_enough(&mut self) -> bool {
        let qualified = self.qualified();
        if qualified.len() < self.quorum {
            let disqualified = self.disqualified.iter().map(|(j, r)| (*j, r.clone())).collect();
            self.abort(AbortReason::TooFewQualified {
                quorum: self.quorum,
                qualified,
                disqualified,
            });
            return false;
        }
        true
    }

    /// Sums the qualified commitments into the two public key sets and enters the confirm phase.
    fn derive(&mut self) {
        if !self.check_enough() {
            return;
        }
        let qualified = self.qualified();
        let sum = |kind: PolyKind| -> Option<Commitment> {
            let mut acc: Option<Commitment> = None;
            for i in &qualified {
                let c = self.deals.get(i)?.poly(kind).to_commitment();
                acc = Some(match acc {
                    None => c,
                    Some(a) => a + c,
                });
            }
            acc
        };
        let mut sets = Vec::with_capacity(2);
        for kind in PolyKind::ALL {
            // A sum that lost its constant term or its top coefficient is refused, so the key has the
            // full degree t (blsttc's threshold) and is never the identity.
            let Some(c) = sum(kind) else {
                self.abort(AbortReason::DegenerateKey { kind });
                return;
            };
            let bytes = c.to_bytes();
            if bytes.len() != self.quorum * crate::group::POINT_SIZE {
                self.abort(AbortReason::DegenerateKey { kind });
                return;
            }
            let pks = PublicKeySet::from(c);
            if Point::new(pks.public_key().into()).is_err() {
                self.abort(AbortReason::DegenerateKey { kind });
                return;
            }
            sets.push(pks);
        }
        let signing = sets.pop();
        let encryption = sets.pop();
        let (Some(encryption), Some(signing)) = (encryption, signing) else {
            return;
        };
        let Ok(encryption_key) = Point::new(encryption.public_key().into()) else {
            self.abort(AbortReason::DegenerateKey {
                kind: PolyKind::Encryption,
            });
            return;
        };
        self.keys = Some(DerivedKeys {
            qualified,
            encryption,
            signing,
            encryption_key,
            dealing_transcript: self.transcript,
        });
        self.phase = Phase::Confirm;
    }

    fn end_confirm(&mut self) {
        let Some(keys) = &self.keys else { return };
        let confirmed = self.confirmed();
        if confirmed.len() < self.quorum {
            let missing = keys
                .qualified
                .iter()
                .filter(|j| !self.confirmations.contains_key(j))
                .copied()
                .collect();
            self.abort(AbortReason::TooFewConfirmed {
                quorum: self.quorum,
                confirmed,
                missing,
            });
            return;
        }
        let key = keys.encryption_key;
        let th = self.transcript;
        match rehearsal_ciphertext(&th, &key) {
            Ok(ct) => {
                self.final_transcript = Some(FinalTranscript(th));
                self.rehearsal = Some(ct);
                self.phase = Phase::Rehearsal;
            }
            Err(_) => self.abort(AbortReason::DegenerateKey {
                kind: PolyKind::Encryption,
            }),
        }
    }

    /// Applies an `advance` entry at state-machine time `now` (ms): valid only once the current phase's
    /// deadline has passed. Custodians that did not join or deal are disqualified; dealers with an
    /// unanswered complaint are disqualified; missing acks count as no complaint; qualified custodians
    /// that did not confirm are left out of the confirmed set. The ceremony then moves on, or aborts
    /// when fewer than q remain.
    pub fn advance(&mut self, now: i64) -> Result<(), CeremonyError> {
        self.check_live()?;
        let Some(deadline) = self.deadlines.of(self.phase) else {
            return Err(CeremonyError::NoDeadline { phase: self.phase });
        };
        if now < deadline {
            return Err(CeremonyError::DeadlineNotReached {
                phase: self.phase,
                deadline,
                now,
            });
        }
        let phase = self.phase;
        self.absorb(
            &Transcript::new(TAG_TRANSCRIPT)
                .str("advance")
                .str(&phase.to_string())
                .i64(now)
                .into_bytes(),
        );
        match phase {
            Phase::Join => {
                for j in 0..self.custodian_count() {
                    if self.transport_keys[j].is_none() {
                        self.disqualified.insert(j, DisqualifyReason::NoJoin);
                    }
                }
                if self.check_enough() {
                    self.phase = Phase::Deal;
                }
            }
            Phase::Deal => {
                for j in 0..self.custodian_count() {
                    if self.transport_keys[j].is_some()
                        && !self.deals.contains_key(&j)
                        && !self.disqualified.contains_key(&j)
                    {
                        self.disqualified.insert(j, DisqualifyReason::NoDeal);
                    }
                }
                if self.check_enough() {
                    self.phase = Phase::Check;
                }
            }
            Phase::Check => self.end_check(),
            Phase::Answer => {
                let unanswered: Vec<(usize, DisqualifyReason)> = self
                    .complaints
                    .iter()
                    .filter(|c| c.answer.is_none())
                    .map(|c| {
                        (
                            c.dealer,
                            DisqualifyReason::NoAnswer {
                                complainer: c.complainer,
                                kind: c.kind,
                            },
                        )
                    })
                    .collect();
                for (i, why) in unanswered {
                    self.disqualified.entry(i).or_insert(why);
                }
                self.derive();
            }
            Phase::Confirm => self.end_confirm(),
            _ => {}
        }
        self.progress();
        Ok(())
    }

    /// Records the result of the rehearsal's threshold decryption (design 4.2 step 6): the ceremony is
    /// `Complete` only when it decrypted to 1, and aborts otherwise.
    ///
    /// Integration note: the caller must obtain `decrypted_value` through the *real* tally code path
    /// (q custodians' partial decryptions of [`CeremonyState::rehearsal`] with their Chaum-Pedersen
    /// proofs, combined with Lagrange coefficients at 0, then the discrete log of `g^m`), never by any
    /// shortcut; this method is the hook where that result enters the state.
    pub fn complete_rehearsal(&mut self, decrypted_value: u64) -> Result<(), CeremonyError> {
        self.check_live()?;
        if self.phase != Phase::Rehearsal {
            return Err(CeremonyError::NotInPhase {
                expected: Phase::Rehearsal,
                phase: self.phase,
            });
        }
        self.absorb(
            &Transcript::new(TAG_TRANSCRIPT)
                .str("rehearsal")
                .u64(decrypted_value)
                .into_bytes(),
        );
        if decrypted_value == 1 {
            self.phase = Phase::Complete;
        } else {
            self.abort(AbortReason::RehearsalFailed { got: decrypted_value });
        }
        Ok(())
    }
}

/// Context of the proof of knowledge of a dealt polynomial's constant term: Q, dealer, kind and every
/// coefficient commitment.
pub fn deal_pok_context(
    base_hash: &Hash32,
    dealer: usize,
    kind: PolyKind,
    commitment: &[Point],
) -> Transcript {
    let mut t = Transcript::new(TAG_DEAL_POK)
        .hash(base_hash)
        .u64(dealer as u64)
        .str(kind.label())
        .u64(commitment.len() as u64);
    for p in commitment {
        t = t.point(p.affine());
    }
    t
}

/// Context of the proof of knowledge of custodian j's encryption share: Q and j.
pub fn confirm_pok_context(base_hash: &Hash32, j: usize) -> Transcript {
    Transcript::new(TAG_CONFIRM_POK).hash(base_hash).u64(j as u64)
}

/// What custodians sign with their signing shares at confirmation: `H(tag, Q, dealing transcript)`.
pub fn confirm_statement(base_hash: &Hash32, dealing_transcript: &Hash32) -> Hash32 {
    Transcript::new(TAG_CONFIRM_SIGN)
        .hash(base_hash)
        .hash(dealing_transcript)
        .digest()
}

/// Checks `g^value == commitment.evaluate(x_recipient)`.
pub fn check_share(
    dealt: &DealtPoly,
    dealer: usize,
    recipient: usize,
    kind: PolyKind,
    value: &Fr,
) -> Result<(), CeremonyError> {
    let expect = dealt.to_commitment().evaluate(x_of(recipient));
    if g_mul(value).to_affine() == expect {
        Ok(())
    } else {
        Err(CeremonyError::ShareMismatch {
            dealer,
            recipient,
            kind,
        })
    }
}

fn check_confirmation(
    base_hash: &Hash32,
    keys: &DerivedKeys,
    j: usize,
    c: &Confirmation,
) -> Result<(), CeremonyError> {
    if c.share_key.to_bytes() != keys.encryption.public_key_share(j).to_bytes() {
        return Err(CeremonyError::ShareKeyMismatch { index: j });
    }
    if !c.proof.verify(&confirm_pok_context(base_hash, j), &c.share_key) {
        return Err(CeremonyError::BadShareProof { index: j });
    }
    let stmt = confirm_statement(base_hash, &keys.dealing_transcript);
    if !keys.signing.public_key_share(j).verify(&c.signature_share, stmt) {
        return Err(CeremonyError::BadSignatureShare { index: j });
    }
    Ok(())
}

/// The rehearsal ciphertext (design 4.2 step 6): an encryption of `g^1` under K with the nonce
/// `H_s("urna/v1/rehearsal", transcript hash)`, so every node computes the same ciphertext.
pub fn rehearsal_ciphertext(transcript_hash: &Hash32, key: &Point) -> Result<Ciphertext, DecodeError> {
    let rho = crate::hash::h_s(TAG_REHEARSAL, &[transcript_hash]);
    Ciphertext::encrypt(&KeyTable::new(*key), 1, &rho)
}

/// Length of the plaintext of an encrypted share: header hash and two scalars.
const SHARE_PLAINTEXT_LEN: usize = 32 + 2 * 32;
/// Length of an encrypted share pair: blsttc's `U` (G1), `W` (G2) and the masked plaintext.
const SHARE_CIPHERTEXT_LEN: usize = blsttc::PK_SIZE + blsttc::SIG_SIZE + SHARE_PLAINTEXT_LEN;

fn share_header(base_hash: &Hash32, dealer: usize, recipient: usize) -> Hash32 {
    Transcript::new(TAG_SHARE)
        .hash(base_hash)
        .u64(dealer as u64)
        .u64(recipient as u64)
        .digest()
}

/// Encrypts dealer i's share pair for recipient j with blsttc's hybrid encryption. The plaintext is
/// bound to (Q, i, j) by a header that the recipient checks.
pub fn encrypt_share<R: RngCore>(
    transport_key: &TransportKey,
    base_hash: &Hash32,
    dealer: usize,
    recipient: usize,
    encryption_value: &Fr,
    signing_value: &Fr,
    rng: &mut R,
) -> blsttc::Ciphertext {
    let mut pt = [0u8; SHARE_PLAINTEXT_LEN];
    pt[..32].copy_from_slice(&share_header(base_hash, dealer, recipient));
    pt[32..64].copy_from_slice(&encryption_value.to_bytes_be());
    pt[64..].copy_from_slice(&signing_value.to_bytes_be());
    let ct = transport_key.0.encrypt_with_rng(rng, pt);
    pt.zeroize();
    ct
}

/// Decrypts a share pair with the recipient's transport secret key, checking the binding header.
/// Returns `(f_enc(x_j), f_sig(x_j))`.
pub fn decrypt_share(
    transport_secret: &SecretKey,
    base_hash: &Hash32,
    dealer: usize,
    recipient: usize,
    ct: &blsttc::Ciphertext,
) -> Result<(Fr, Fr), CeremonyError> {
    let err = CeremonyError::Undecryptable { dealer, recipient };
    let mut pt = transport_secret.decrypt(ct).ok_or(err.clone())?;
    let out = (|| {
        if pt.len() != SHARE_PLAINTEXT_LEN || pt[..32] != share_header(base_hash, dealer, recipient) {
            return None;
        }
        let a: [u8; 32] = pt[32..64].try_into().ok()?;
        let b: [u8; 32] = pt[64..].try_into().ok()?;
        let a = Option::<Fr>::from(Fr::from_bytes_be(&a))?;
        let b = Option::<Fr>::from(Fr::from_bytes_be(&b))?;
        Some((a, b))
    })();
    pt.zeroize();
    out.ok_or(err)
}

/// A custodian's derived secrets: its shares of the two election keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustodianSecrets {
    /// The custodian's 0-based index j.
    pub index: usize,
    /// `s_j`, its share of the encryption (ElGamal) secret.
    pub encryption_share: SecretKeyShare,
    /// Its share of the signing (BLS) secret.
    pub signing_share: SecretKeyShare,
}

/// A dealer's two secret polynomials (kept by the dealer until the ceremony ends).
#[derive(Clone)]
pub struct DealerPolys {
    /// The encryption-key polynomial.
    pub encryption: Poly,
    /// The signing-key polynomial.
    pub signing: Poly,
}

impl fmt::Debug for DealerPolys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DealerPolys(<secret>)")
    }
}

impl DealerPolys {
    /// The polynomial of the given kind.
    pub fn poly(&self, kind: PolyKind) -> &Poly {
        match kind {
            PolyKind::Encryption => &self.encryption,
            PolyKind::Signing => &self.signing,
        }
    }

    /// The value for custodian j: `f(x_j)`, never at 0.
    pub fn value(&self, kind: PolyKind, j: usize) -> Fr {
        self.poly(kind).evaluate(x_of(j))
    }
}

/// Makes one dealt polynomial: commitment, proof of knowledge of its constant term.
fn dealt_poly<R: RngCore + CryptoRng>(
    base_hash: &Hash32,
    dealer: usize,
    kind: PolyKind,
    poly: &Poly,
    rng: &mut R,
) -> Result<DealtPoly, CeremonyError> {
    let commitment = poly.commitment().to_bytes();
    let points = commitment
        .chunks(crate::group::POINT_SIZE)
        .map(Point::from_bytes)
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = deal_pok_context(base_hash, dealer, kind, &points);
    let proof = SchnorrProof::prove(&ctx, &constant_term(poly)?, &points[0], rng)
        .map_err(|_| DecodeError::Identity)?;
    Ok(DealtPoly {
        commitment: points,
        proof,
    })
}

/// The constant term `a_0` of a secret polynomial (blsttc keeps coefficients private; its canonical
/// bytes start with `a_0`). Used only as the witness of the proof of knowledge, never sent.
fn constant_term(poly: &Poly) -> Result<Fr, CeremonyError> {
    let bytes = zeroize::Zeroizing::new(poly.to_bytes());
    let head: [u8; 32] = bytes
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or(CeremonyError::Decode(DecodeError::WrongLength {
            expected: 32,
            got: bytes.len(),
        }))?;
    let a0 = Option::<Fr>::from(Fr::from_bytes_be(&head));
    a0.ok_or(CeremonyError::Decode(DecodeError::NonCanonicalScalar))
}

/// A custodian's side of the ceremony: turns the public state into its next messages.
pub struct Custodian {
    index: usize,
    base_hash: Hash32,
    identity: SecretKey,
    transport: SecretKey,
    polys: Option<DealerPolys>,
}

impl fmt::Debug for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custodian")
            .field("index", &self.index)
            .field("identity_key", &IdentityKey(self.identity.public_key()))
            .field("dealt", &self.polys.is_some())
            .finish_non_exhaustive()
    }
}

impl Custodian {
    /// A custodian with its identity key and a fresh transport key drawn from `rng`.
    pub fn new<R: RngCore + CryptoRng>(
        identity: SecretKey,
        index: usize,
        params: &ElectionParams,
        rng: &mut R,
    ) -> Result<Self, CeremonyError> {
        let transport: SecretKey =
            rand::distributions::Distribution::sample(&rand::distributions::Standard, rng);
        Self::with_transport(identity, transport, index, params)
    }

    /// A custodian with a given transport key (as restored from its share file).
    pub fn with_transport(
        identity: SecretKey,
        transport: SecretKey,
        index: usize,
        params: &ElectionParams,
    ) -> Result<Self, CeremonyError> {
        let registered = params
            .custodians
            .get(index)
            .ok_or(CeremonyError::UnknownCustodian { index })?;
        if registered.identity_key.0 != identity.public_key() {
            return Err(CeremonyError::WrongIdentity { index });
        }
        Ok(Custodian {
            index,
            base_hash: params.base_hash(),
            identity,
            transport,
            polys: None,
        })
    }

    /// The custodian's index j.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The transport secret key (to store in the share file).
    pub fn transport_secret(&self) -> &SecretKey {
        &self.transport
    }

    /// The dealt polynomials, once dealt (to store in the share file).
    pub fn polys(&self) -> Option<&DealerPolys> {
        self.polys.as_ref()
    }

    /// Restores dealt polynomials (from the share file).
    pub fn set_polys(&mut self, polys: DealerPolys) {
        self.polys = Some(polys);
    }

    /// Signs a body as this custodian.
    pub fn sign(&self, body: MessageBody) -> SignedCeremonyMessage {
        SignedCeremonyMessage::sign(&self.identity, &self.base_hash, self.index, body)
    }

    /// The join message announcing the transport key.
    pub fn join(&self) -> SignedCeremonyMessage {
        self.sign(MessageBody::Join(Join {
            transport_key: IdentityKey(self.transport.public_key()),
        }))
    }

    /// Draws both polynomials (degree t) and builds the deal for every other joined custodian.
    pub fn deal<R: RngCore + CryptoRng>(
        &mut self,
        state: &CeremonyState,
        rng: &mut R,
    ) -> Result<SignedCeremonyMessage, CeremonyError> {
        let t = state.threshold();
        let polys = DealerPolys {
            encryption: Poly::random(t, rng),
            signing: Poly::random(t, rng),
        };
        let body = self.deal_body(state, &polys, rng)?;
        self.polys = Some(polys);
        Ok(self.sign(MessageBody::Deal(body)))
    }

    /// Builds a deal body for given polynomials (exposed so tests can build faulty deals).
    pub fn deal_body<R: RngCore + CryptoRng>(
        &self,
        state: &CeremonyState,
        polys: &DealerPolys,
        rng: &mut R,
    ) -> Result<Deal, CeremonyError> {
        let i = self.index;
        let encryption = dealt_poly(&self.base_hash, i, PolyKind::Encryption, &polys.encryption, rng)?;
        let signing = dealt_poly(&self.base_hash, i, PolyKind::Signing, &polys.signing, rng)?;
        let mut shares = Vec::new();
        for j in 0..state.custodian_count() {
            if j == i {
                continue;
            }
            if let Some(tk) = state.transport_key(j) {
                let a = polys.value(PolyKind::Encryption, j);
                let b = polys.value(PolyKind::Signing, j);
                let ciphertext = encrypt_share(tk, &self.base_hash, i, j, &a, &b, rng);
                shares.push(EncryptedShare {
                    recipient: j,
                    ciphertext,
                });
            }
        }
        Ok(Deal {
            encryption,
            signing,
            shares,
        })
    }

    /// Decrypts and checks dealer i's shares for this custodian: `Ok` with the values when both match
    /// the commitments, otherwise the kinds to complain about.
    pub fn check_dealer(&self, state: &CeremonyState, dealer: usize) -> Result<(Fr, Fr), Vec<PolyKind>> {
        let j = self.index;
        let Some(deal) = state.deal(dealer) else {
            return Err(PolyKind::ALL.to_vec());
        };
        let Some(share) = deal.shares.iter().find(|s| s.recipient == j) else {
            return Err(PolyKind::ALL.to_vec());
        };
        let Ok((a, b)) = decrypt_share(&self.transport, &self.base_hash, dealer, j, &share.ciphertext) else {
            return Err(PolyKind::ALL.to_vec());
        };
        let mut bad = Vec::new();
        if check_share(&deal.encryption, dealer, j, PolyKind::Encryption, &a).is_err() {
            bad.push(PolyKind::Encryption);
        }
        if check_share(&deal.signing, dealer, j, PolyKind::Signing, &b).is_err() {
            bad.push(PolyKind::Signing);
        }
        if bad.is_empty() {
            Ok((a, b))
        } else {
            Err(bad)
        }
    }

    /// Acks or complaints for every qualified dealer this custodian has not judged yet.
    pub fn check(&self, state: &CeremonyState) -> Vec<SignedCeremonyMessage> {
        let j = self.index;
        let mut out = Vec::new();
        for i in state.qualified() {
            let judged = state.has_acked(j, i)
                || state
                    .complaints()
                    .iter()
                    .any(|c| c.complainer == j && c.dealer == i);
            if i == j || judged {
                continue;
            }
            match self.check_dealer(state, i) {
                Ok(_) => out.push(self.sign(MessageBody::Ack(Ack { dealer: i }))),
                Err(kinds) => {
                    for kind in kinds {
                        out.push(self.sign(MessageBody::Complaint(Complaint { dealer: i, kind })));
                    }
                }
            }
        }
        out
    }

    /// Answers every open complaint against this custodian with the true value.
    pub fn answer(&self, state: &CeremonyState) -> Result<Vec<SignedCeremonyMessage>, CeremonyError> {
        let polys = self
            .polys
            .as_ref()
            .ok_or(CeremonyError::NotDealt { dealer: self.index })?;
        Ok(state
            .complaints()
            .iter()
            .filter(|c| c.dealer == self.index && c.answer.is_none())
            .map(|c| {
                self.sign(MessageBody::Answer(Answer {
                    complainer: c.complainer,
                    kind: c.kind,
                    value: Scalar(polys.value(c.kind, c.complainer)),
                }))
            })
            .collect())
    }

    /// Derives this custodian's secret shares over the qualified set: the sum of `f_i(x_j)` it received
    /// (decrypted, or revealed in an answer), plus its own `f_j(x_j)`; checked against the public key
    /// shares.
    pub fn derive(&self, state: &CeremonyState) -> Result<CustodianSecrets, CeremonyError> {
        let keys = state.keys().ok_or(CeremonyError::NotDerived)?;
        let j = self.index;
        if !keys.qualified.contains(&j) {
            return Err(CeremonyError::NotQualified { index: j });
        }
        let polys = self.polys.as_ref().ok_or(CeremonyError::NotDealt { dealer: j })?;
        let mut enc = polys.value(PolyKind::Encryption, j);
        let mut sig = polys.value(PolyKind::Signing, j);
        for &i in &keys.qualified {
            if i == j {
                continue;
            }
            let deal = state.deal(i).ok_or(CeremonyError::NotDealt { dealer: i })?;
            let answered = |kind: PolyKind| {
                state
                    .complaints()
                    .iter()
                    .find(|c| c.complainer == j && c.dealer == i && c.kind == kind)
                    .and_then(|c| c.answer)
            };
            let share = deal
                .shares
                .iter()
                .find(|s| s.recipient == j)
                .ok_or(CeremonyError::Undecryptable {
                    dealer: i,
                    recipient: j,
                });
            let decrypted =
                share.and_then(|s| decrypt_share(&self.transport, &self.base_hash, i, j, &s.ciphertext));
            for (kind, acc, slot) in [
                (PolyKind::Encryption, &mut enc, 0usize),
                (PolyKind::Signing, &mut sig, 1),
            ] {
                let value = match answered(kind) {
                    Some(v) => v.0,
                    None => {
                        let (a, b) = decrypted.clone()?;
                        if slot == 0 {
                            a
                        } else {
                            b
                        }
                    }
                };
                check_share(deal.poly(kind), i, j, kind, &value)?;
                *acc += value;
            }
        }
        let enc_share = SecretKeyShare::from_mut(&mut enc);
        let sig_share = SecretKeyShare::from_mut(&mut sig);
        if enc_share.public_key_share() != keys.encryption.public_key_share(j) {
            return Err(CeremonyError::DerivedShareMismatch {
                index: j,
                kind: PolyKind::Encryption,
            });
        }
        if sig_share.public_key_share() != keys.signing.public_key_share(j) {
            return Err(CeremonyError::DerivedShareMismatch {
                index: j,
                kind: PolyKind::Signing,
            });
        }
        Ok(CustodianSecrets {
            index: j,
            encryption_share: enc_share,
            signing_share: sig_share,
        })
    }

    /// The confirmation: a proof of knowledge of `s_j` for `K_j` and a signature share over the dealing
    /// transcript.
    pub fn confirm<R: RngCore + CryptoRng>(
        &self,
        state: &CeremonyState,
        secrets: &CustodianSecrets,
        rng: &mut R,
    ) -> Result<SignedCeremonyMessage, CeremonyError> {
        let keys = state.keys().ok_or(CeremonyError::NotDerived)?;
        let j = self.index;
        let s = share_scalar(&secrets.encryption_share)?;
        let share_key = Point::from_proj(&g_mul(&s))?;
        let proof = SchnorrProof::prove(&confirm_pok_context(&self.base_hash, j), &s, &share_key, rng)
            .map_err(|_| DecodeError::Identity);
        let signature_share = secrets
            .signing_share
            .sign(confirm_statement(&self.base_hash, &keys.dealing_transcript));
        Ok(self.sign(MessageBody::Confirmation(Confirmation {
            share_key,
            proof: proof?,
            signature_share,
        })))
    }
}

/// The scalar inside a secret key share (for proofs and partial decryptions).
pub fn share_scalar(share: &SecretKeyShare) -> Result<Fr, CeremonyError> {
    let mut bytes = share.to_bytes();
    let fr = Option::<Fr>::from(Fr::from_bytes_be(&bytes));
    bytes.zeroize();
    fr.ok_or(CeremonyError::Decode(DecodeError::NonCanonicalScalar))
}

/// Serde helper: a blsttc hybrid ciphertext as hex of its canonical bytes.
pub mod hex_ciphertext {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as lowercase hex.
    pub fn serialize<S: Serializer>(c: &blsttc::Ciphertext, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(c.to_bytes()))
    }

    /// Deserializes hex, with blsttc's point checks.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blsttc::Ciphertext, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
        blsttc::Ciphertext::from_bytes(&v).map_err(serde::de::Error::custom)
    }
}

/// Serde helper: a blsttc signature as hex.
pub mod hex_sig {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as lowercase hex.
    pub fn serialize<S: Serializer>(c: &blsttc::Signature, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(c.to_bytes()))
    }

    /// Deserializes hex, with blsttc's point checks.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blsttc::Signature, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
        let arr: [u8; blsttc::SIG_SIZE] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("wrong signature length"))?;
        blsttc::Signature::from_bytes(arr).map_err(serde::de::Error::custom)
    }
}

/// Serde helper: a blsttc signature share as hex.
pub mod hex_sig_share {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as lowercase hex.
    pub fn serialize<S: Serializer>(c: &blsttc::SignatureShare, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(c.to_bytes()))
    }

    /// Deserializes hex, with blsttc's point checks.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<blsttc::SignatureShare, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
        let arr: [u8; blsttc::SIG_SIZE] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("wrong signature length"))?;
        blsttc::SignatureShare::from_bytes(arr).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn constant_term_matches_the_first_commitment() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let poly = Poly::random(3, &mut rng);
        let a0 = constant_term(&poly).unwrap();
        let commitment = poly.commitment().to_bytes();
        assert_eq!(
            g_mul(&a0).to_affine().to_compressed()[..],
            commitment[..crate::group::POINT_SIZE]
        );
    }

    #[test]
    fn encrypted_shares_are_bound_to_election_dealer_and_recipient() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let sk: SecretKey = rng.gen();
        let pk = IdentityKey(sk.public_key());
        let q = [7u8; 32];
        let (a, b) = (Fr::from(11u64), Fr::from(13u64));
        let ct = encrypt_share(&pk, &q, 1, 2, &a, &b, &mut rng);
        assert_eq!(decrypt_share(&sk, &q, 1, 2, &ct).unwrap(), (a, b));
        for (qq, i, j) in [([8u8; 32], 1, 2), (q, 0, 2), (q, 1, 3)] {
            assert_eq!(
                decrypt_share(&sk, &qq, i, j, &ct),
                Err(CeremonyError::Undecryptable {
                    dealer: i,
                    recipient: j
                })
            );
        }
        let other: SecretKey = rng.gen();
        assert!(decrypt_share(&other, &q, 1, 2, &ct).is_err());
    }

    #[test]
    fn signed_statement_binds_sender_counterpart_and_payload() {
        let q = [1u8; 32];
        let ack = |d| MessageBody::Ack(Ack { dealer: d });
        let base = signed_statement(&q, 0, &ack(1));
        assert_ne!(base, signed_statement(&q, 2, &ack(1)));
        assert_ne!(base, signed_statement(&q, 0, &ack(2)));
        assert_ne!(base, signed_statement(&[2u8; 32], 0, &ack(1)));
        let complaint = MessageBody::Complaint(Complaint {
            dealer: 1,
            kind: PolyKind::Encryption,
        });
        assert_ne!(base, signed_statement(&q, 0, &complaint));
    }
}

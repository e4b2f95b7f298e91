//! Encrypted ballots with proofs, their verification, and Benaloh challenges (design 4.3, 4.5).
//!
//! A ballot holds, per contest and option, an exponential ElGamal [`Ciphertext`] of 0 or 1 with a 0/1
//! [`RangeProof`], and per contest a range proof that the product ciphertext (which the verifier computes
//! itself) encrypts a count in `[min, max]`. Every proof is bound by strong Fiat-Shamir to Q', the election
//! key K, its position in the ballot and the voter's public credential, so a proof copied to another
//! ballot, election or position fails. The voter signs the ballot hash H_b, computed over canonical bytes.
//!
//! Verification runs cheapest first: election id and shape against the manifest, the Ed25519 signature,
//! then all proofs as one [`EquationSet`] checked by a random-weight multi-exponentiation, with an exact
//! per-equation fallback that names the failing proof.

use std::fmt;

use blsttc::group::ff::Field;
use blsttc::group::Group;
use blsttc::{Fr, G1Projective};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::credential::{CredentialSignature, CredentialSigningKey, PublicCredential};
use crate::elgamal::Ciphertext;
use crate::group::{DecodeError, Point};
use crate::hash::{Hash32, Transcript};
use crate::manifest::{Manifest, ManifestError};
use crate::proofs::{KeyTable, ProofError, RangeProof};
use crate::verify::{batch_check, EquationSet};

/// Why a ballot (or a plaintext, or a spoiled ballot) was refused. Each variant names one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotError {
    /// The ballot is for another election.
    #[error("ballot is for election {got:?}, not {expected:?}")]
    WrongElection {
        /// This election's id.
        expected: String,
        /// The ballot's election id.
        got: String,
    },
    /// The ballot's structure does not match the manifest.
    #[error("ballot shape does not match the manifest: {0}")]
    Shape(#[from] ShapeError),
    /// The encoding is larger than any valid ballot for this manifest.
    #[error("encoding of {got} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Largest accepted encoding, in bytes.
        limit: usize,
        /// Size received.
        got: usize,
    },
    /// The encoding did not parse (bad JSON, or a point, scalar, key or signature that does not decode).
    #[error("ballot does not decode: {0}")]
    Decode(String),
    /// The credential's signature on the ballot hash does not verify.
    #[error("credential signature does not verify")]
    BadSignature,
    /// The 0/1 proof of one option does not verify.
    #[error("0/1 proof of contest {contest}, option {option} does not verify")]
    SelectionProof {
        /// Contest index.
        contest: usize,
        /// Option index.
        option: usize,
    },
    /// The contest's range proof (selection count within [min, max]) does not verify.
    #[error("selection-count proof of contest {contest} does not verify")]
    ContestProof {
        /// Contest index.
        contest: usize,
    },
    /// A plaintext selection is neither 0 nor 1.
    #[error("contest {contest}, option {option}: selection {value} is not 0 or 1")]
    PlaintextValue {
        /// Contest index.
        contest: usize,
        /// Option index.
        option: usize,
        /// The value given.
        value: u8,
    },
    /// A plaintext contest selects too few or too many options.
    #[error("contest {contest}: {count} selections, allowed {min} to {max}")]
    SelectionCount {
        /// Contest index.
        contest: usize,
        /// Selections made.
        count: u64,
        /// Fewest allowed.
        min: u64,
        /// Most allowed.
        max: u64,
    },
    /// A spoiled ballot's ciphertext is not the encryption its plaintext and master nonce give.
    #[error("spoiled ballot: contest {contest}, option {option} does not match its plaintext and nonce")]
    SpoiledMismatch {
        /// Contest index.
        contest: usize,
        /// Option index.
        option: usize,
    },
    /// The election manifest is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A proof could not be produced (the value is not in range, or a degenerate nonce: retry).
    #[error("proof generation failed: {0}")]
    Prove(#[from] ProofError),
    /// A nonce produced the identity point (probability 2^-255; encrypt again).
    #[error("degenerate nonce; encrypt again")]
    Degenerate,
}

/// How a ballot's structure differs from the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Wrong number of contests.
    #[error("expected {expected} contests, got {got}")]
    ContestCount {
        /// Contests in the manifest.
        expected: usize,
        /// Contests in the ballot.
        got: usize,
    },
    /// Wrong number of options in a contest.
    #[error("contest {contest}: expected {expected} options, got {got}")]
    OptionCount {
        /// Contest index.
        contest: usize,
        /// Options in the manifest.
        expected: usize,
        /// Options in the ballot.
        got: usize,
    },
    /// A 0/1 proof without exactly two branches.
    #[error("contest {contest}, option {option}: a 0/1 proof has 2 branches, got {got}")]
    SelectionBranches {
        /// Contest index.
        contest: usize,
        /// Option index.
        option: usize,
        /// Branches received.
        got: usize,
    },
    /// A contest proof whose branch count is not `max - min + 1`.
    #[error("contest {contest}: expected {expected} proof branches, got {got}")]
    ContestBranches {
        /// Contest index.
        contest: usize,
        /// `max - min + 1`.
        expected: usize,
        /// Branches received.
        got: usize,
    },
}

/// Everything a ballot is checked against, built once per election and reused for every ballot.
pub struct BallotContext {
    election_id: String,
    extended_hash: Hash32,
    manifest: Manifest,
    key: KeyTable,
}

impl BallotContext {
    /// Validates the manifest and precomputes the fixed-base table of the election key K.
    pub fn new(
        election_id: impl Into<String>,
        extended_hash: Hash32,
        manifest: Manifest,
        key: Point,
    ) -> Result<Self, BallotError> {
        manifest.validate()?;
        Ok(BallotContext {
            election_id: election_id.into(),
            extended_hash,
            manifest,
            key: KeyTable::new(key),
        })
    }

    /// The election id.
    pub fn election_id(&self) -> &str {
        &self.election_id
    }

    /// The extended hash Q'.
    pub fn extended_hash(&self) -> &Hash32 {
        &self.extended_hash
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The election key K with its table.
    pub fn key(&self) -> &KeyTable {
        &self.key
    }

    /// Fiat-Shamir context of the 0/1 proof at (contest, option) for a credential.
    pub fn selection_context(
        &self,
        contest: usize,
        option: usize,
        credential: &PublicCredential,
    ) -> Transcript {
        Transcript::new("urna/v1/proof/selection")
            .hash(&self.extended_hash)
            .point(self.key.key.affine())
            .u64(contest as u64)
            .u64(option as u64)
            .bytes(&credential.to_bytes())
    }

    /// Fiat-Shamir context of a contest's selection-count proof for a credential.
    pub fn contest_context(&self, contest: usize, credential: &PublicCredential) -> Transcript {
        Transcript::new("urna/v1/proof/contest")
            .hash(&self.extended_hash)
            .point(self.key.key.affine())
            .u64(contest as u64)
            .bytes(&credential.to_bytes())
    }

    /// Largest JSON encoding accepted for this manifest, so oversized input is refused before parsing.
    ///
    /// About twice the compact size of a valid ballot (hex of every point and scalar plus field names),
    /// which leaves room for pretty-printed JSON.
    pub fn max_json_bytes(&self) -> usize {
        const BRANCH: usize = 2 * (2 * 96 + 2 * 64 + 64);
        const SELECTION: usize = 2 * (2 * 96 + 64) + 2 * BRANCH;
        let mut total = 1024;
        for c in &self.manifest.contests {
            let branches = (c.max_selections - c.min_selections + 1) as usize;
            total += 128 + c.options.len() * SELECTION + branches * BRANCH;
        }
        total
    }
}

/// A voter's choices: per contest, per option, 1 if selected and 0 otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
#[serde(deny_unknown_fields)]
pub struct PlaintextBallot {
    /// Selections in manifest order.
    pub contests: Vec<Vec<u8>>,
}

impl PlaintextBallot {
    /// Builds a ballot from the selected option indices of each contest, and validates it.
    pub fn from_selected(manifest: &Manifest, selected: &[Vec<usize>]) -> Result<Self, BallotError> {
        if selected.len() != manifest.contests.len() {
            return Err(ShapeError::ContestCount {
                expected: manifest.contests.len(),
                got: selected.len(),
            }
            .into());
        }
        let mut contests = Vec::with_capacity(selected.len());
        for (ci, (c, sel)) in manifest.contests.iter().zip(selected).enumerate() {
            let mut row = vec![0u8; c.options.len()];
            for &o in sel {
                match row.get_mut(o) {
                    Some(v) => *v += 1,
                    None => {
                        return Err(ShapeError::OptionCount {
                            contest: ci,
                            expected: c.options.len(),
                            got: o + 1,
                        }
                        .into())
                    }
                }
            }
            contests.push(row);
        }
        let p = PlaintextBallot { contests };
        p.validate(manifest)?;
        Ok(p)
    }

    /// Checks shape, that every selection is 0 or 1, and every contest's count is within its bounds.
    pub fn validate(&self, manifest: &Manifest) -> Result<(), BallotError> {
        if self.contests.len() != manifest.contests.len() {
            return Err(ShapeError::ContestCount {
                expected: manifest.contests.len(),
                got: self.contests.len(),
            }
            .into());
        }
        for (ci, (c, row)) in manifest.contests.iter().zip(&self.contests).enumerate() {
            if row.len() != c.options.len() {
                return Err(ShapeError::OptionCount {
                    contest: ci,
                    expected: c.options.len(),
                    got: row.len(),
                }
                .into());
            }
            if let Some((oi, &value)) = row.iter().enumerate().find(|(_, v)| **v > 1) {
                return Err(BallotError::PlaintextValue {
                    contest: ci,
                    option: oi,
                    value,
                });
            }
            let count = row.iter().map(|&v| v as u64).sum::<u64>();
            if count < c.min_selections || count > c.max_selections {
                return Err(BallotError::SelectionCount {
                    contest: ci,
                    count,
                    min: c.min_selections,
                    max: c.max_selections,
                });
            }
        }
        Ok(())
    }
}

/// One option's encryption and its 0/1 proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedSelection {
    /// `(g^rho, g^v K^rho)`.
    pub ciphertext: Ciphertext,
    /// Range proof that v is in [0, 1].
    pub proof: RangeProof,
}

/// One contest's encrypted options and the proof that their count is within the allowed range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedContest {
    /// One per option, in manifest order.
    pub selections: Vec<EncryptedSelection>,
    /// Range proof over `[min, max]` on the product of the option ciphertexts.
    pub proof: RangeProof,
}

/// A cast ballot as it travels and is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedBallot {
    /// The election.
    pub election_id: String,
    /// The voter's public credential (on the roll).
    pub credential: PublicCredential,
    /// One per contest, in manifest order.
    pub contests: Vec<EncryptedContest>,
    /// The credential's Ed25519 signature on the ballot hash H_b.
    pub signature: CredentialSignature,
}

fn absorb_proof(t: &mut Transcript, p: &RangeProof) {
    t.append(&(p.branches.len() as u64).to_be_bytes());
    for b in &p.branches {
        t.append(&b.a.to_bytes());
        t.append(&b.b.to_bytes());
        t.append(&b.challenge.to_bytes());
        t.append(&b.response.to_bytes());
    }
}

fn ballot_hash(
    q_ext: &Hash32,
    election_id: &str,
    credential: &PublicCredential,
    contests: &[EncryptedContest],
) -> Hash32 {
    let mut t = Transcript::new("urna/v1/ballot")
        .hash(q_ext)
        .str(election_id)
        .bytes(&credential.to_bytes())
        .u64(contests.len() as u64);
    for c in contests {
        t.append(&(c.selections.len() as u64).to_be_bytes());
        for s in &c.selections {
            t.append(&s.ciphertext.alpha.to_bytes());
            t.append(&s.ciphertext.beta.to_bytes());
            absorb_proof(&mut t, &s.proof);
        }
        absorb_proof(&mut t, &c.proof);
    }
    t.digest()
}

impl EncryptedBallot {
    /// The ballot hash `H_b = H("urna/v1/ballot", Q', election id, credential, every ciphertext and
    /// proof in order)` over canonical bytes; the signature is not part of it.
    pub fn hash(&self, ctx: &BallotContext) -> Hash32 {
        ballot_hash(
            &ctx.extended_hash,
            &self.election_id,
            &self.credential,
            &self.contests,
        )
    }

    /// Parses JSON after refusing input larger than any valid ballot for this election.
    pub fn from_json(ctx: &BallotContext, bytes: &[u8]) -> Result<Self, BallotError> {
        let limit = ctx.max_json_bytes();
        if bytes.len() > limit {
            return Err(BallotError::TooLarge {
                limit,
                got: bytes.len(),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| BallotError::Decode(e.to_string()))
    }

    /// Replaces the credential and signs the ballot hash with `key` (clients and tests; a ballot's proofs
    /// are bound to its credential, so this does not make another voter's proofs valid).
    pub fn sign(&mut self, ctx: &BallotContext, key: &CredentialSigningKey) {
        self.credential = key.public();
        self.signature = key.sign(&self.hash(ctx));
    }

    /// Every alpha of the ballot, for the node's no-copied-ciphertext check.
    pub fn alphas(&self) -> impl Iterator<Item = &Point> {
        self.contests
            .iter()
            .flat_map(|c| c.selections.iter().map(|s| &s.ciphertext.alpha))
    }
}

/// What the client keeps after encrypting: enough to open the ballot in a Benaloh challenge. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BallotSecrets {
    /// The fresh 256-bit master nonce all option nonces derive from.
    pub master_nonce: [u8; 32],
    /// The plaintext that was encrypted.
    pub plaintext: PlaintextBallot,
}

impl fmt::Debug for BallotSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BallotSecrets(<redacted>)")
    }
}

/// The option nonce `rho = H_s("urna/v1/nonce", master, contest, option)`.
pub fn option_nonce(master: &[u8; 32], contest: usize, option: usize) -> Fr {
    Transcript::new("urna/v1/nonce")
        .bytes(master)
        .u64(contest as u64)
        .u64(option as u64)
        .challenge()
}

/// Encrypts and proves a ballot, and signs its hash with the voter's credential key.
///
/// Draws from `rng` in a fixed order (master nonce, then each option's proof in ballot order, each
/// contest's proof after its options), so a seeded generator gives reproducible ballots for test vectors.
pub fn encrypt_ballot<R: RngCore + CryptoRng>(
    ctx: &BallotContext,
    plaintext: &PlaintextBallot,
    key: &CredentialSigningKey,
    rng: &mut R,
) -> Result<(EncryptedBallot, BallotSecrets), BallotError> {
    plaintext.validate(&ctx.manifest)?;
    let mut master_nonce = [0u8; 32];
    rng.fill_bytes(&mut master_nonce);
    let credential = key.public();
    let mut contests = Vec::with_capacity(ctx.manifest.contests.len());
    for (ci, (c, row)) in ctx.manifest.contests.iter().zip(&plaintext.contests).enumerate() {
        let mut selections = Vec::with_capacity(row.len());
        let mut rho_sum = Fr::zero();
        let mut alpha_sum = G1Projective::identity();
        let mut beta_sum = G1Projective::identity();
        let mut count = 0u64;
        for (oi, &v) in row.iter().enumerate() {
            let v = u64::from(v);
            let rho = option_nonce(&master_nonce, ci, oi);
            let ciphertext = Ciphertext::encrypt(&ctx.key, v, &rho).map_err(|_| BallotError::Degenerate)?;
            let sctx = ctx.selection_context(ci, oi, &credential);
            let proof = RangeProof::prove(
                &sctx,
                &ctx.key,
                &ciphertext.alpha,
                &ciphertext.beta,
                0,
                1,
                v,
                &rho,
                rng,
            )?;
            rho_sum += rho;
            alpha_sum += ciphertext.alpha.proj();
            beta_sum += ciphertext.beta.proj();
            count += v;
            selections.push(EncryptedSelection { ciphertext, proof });
        }
        let alpha = Point::from_proj(&alpha_sum).map_err(|_| BallotError::Degenerate)?;
        let beta = Point::from_proj(&beta_sum).map_err(|_| BallotError::Degenerate)?;
        let proof = RangeProof::prove(
            &ctx.contest_context(ci, &credential),
            &ctx.key,
            &alpha,
            &beta,
            c.min_selections,
            c.max_selections,
            count,
            &rho_sum,
            rng,
        )?;
        contests.push(EncryptedContest { selections, proof });
    }
    let h_b = ballot_hash(&ctx.extended_hash, &ctx.election_id, &credential, &contests);
    let ballot = EncryptedBallot {
        election_id: ctx.election_id.clone(),
        credential,
        contests,
        signature: key.sign(&h_b),
    };
    let secrets = BallotSecrets {
        master_nonce,
        plaintext: plaintext.clone(),
    };
    master_nonce.zeroize();
    Ok((ballot, secrets))
}

/// Which proof an equation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Selection { contest: usize, option: usize },
    Contest { contest: usize },
}

impl From<Check> for BallotError {
    fn from(c: Check) -> Self {
        match c {
            Check::Selection { contest, option } => BallotError::SelectionProof { contest, option },
            Check::Contest { contest } => BallotError::ContestProof { contest },
        }
    }
}

/// Election id and shape against the manifest: no group operation, no hashing.
fn check_shape(ctx: &BallotContext, b: &EncryptedBallot) -> Result<(), BallotError> {
    if b.election_id != ctx.election_id {
        return Err(BallotError::WrongElection {
            expected: ctx.election_id.clone(),
            got: b.election_id.clone(),
        });
    }
    let m = &ctx.manifest;
    if b.contests.len() != m.contests.len() {
        return Err(ShapeError::ContestCount {
            expected: m.contests.len(),
            got: b.contests.len(),
        }
        .into());
    }
    for (ci, (c, ec)) in m.contests.iter().zip(&b.contests).enumerate() {
        if ec.selections.len() != c.options.len() {
            return Err(ShapeError::OptionCount {
                contest: ci,
                expected: c.options.len(),
                got: ec.selections.len(),
            }
            .into());
        }
        if let Some((oi, s)) = ec
            .selections
            .iter()
            .enumerate()
            .find(|(_, s)| s.proof.branches.len() != 2)
        {
            return Err(ShapeError::SelectionBranches {
                contest: ci,
                option: oi,
                got: s.proof.branches.len(),
            }
            .into());
        }
        let expected = (c.max_selections - c.min_selections + 1) as usize;
        if ec.proof.branches.len() != expected {
            return Err(ShapeError::ContestBranches {
                contest: ci,
                expected,
                got: ec.proof.branches.len(),
            }
            .into());
        }
    }
    Ok(())
}

/// Shape, then signature; returns H_b.
fn precheck(ctx: &BallotContext, b: &EncryptedBallot) -> Result<Hash32, BallotError> {
    check_shape(ctx, b)?;
    let h_b = b.hash(ctx);
    if !b.credential.verify(&h_b, &b.signature) {
        return Err(BallotError::BadSignature);
    }
    Ok(h_b)
}

/// Checks every challenge sum and collects every group equation of the ballot's proofs into one set.
fn equations(ctx: &BallotContext, b: &EncryptedBallot) -> Result<EquationSet<Check>, BallotError> {
    let mut set = EquationSet::new(ctx.key.key.proj());
    for (ci, (c, ec)) in ctx.manifest.contests.iter().zip(&b.contests).enumerate() {
        let mut alpha_sum = G1Projective::identity();
        let mut beta_sum = G1Projective::identity();
        for (oi, s) in ec.selections.iter().enumerate() {
            let label = Check::Selection {
                contest: ci,
                option: oi,
            };
            let (alpha, beta) = (s.ciphertext.alpha.proj(), s.ciphertext.beta.proj());
            let ai = set.share(alpha);
            let bi = set.share(beta);
            s.proof
                .equations(
                    &ctx.selection_context(ci, oi, &b.credential),
                    &s.ciphertext.alpha,
                    &s.ciphertext.beta,
                    ai,
                    bi,
                    0,
                    1,
                    label,
                    &mut set,
                )
                .map_err(|_| BallotError::from(label))?;
            alpha_sum += alpha;
            beta_sum += beta;
        }
        let label = Check::Contest { contest: ci };
        // A product that is the identity cannot come from an honest encryption (probability 2^-255).
        let alpha = Point::from_proj(&alpha_sum).map_err(|_| BallotError::from(label))?;
        let beta = Point::from_proj(&beta_sum).map_err(|_| BallotError::from(label))?;
        let ai = set.share(alpha_sum);
        let bi = set.share(beta_sum);
        ec.proof
            .equations(
                &ctx.contest_context(ci, &b.credential),
                &alpha,
                &beta,
                ai,
                bi,
                c.min_selections,
                c.max_selections,
                label,
                &mut set,
            )
            .map_err(|_| BallotError::from(label))?;
    }
    Ok(set)
}

/// Verifies one ballot completely; returns its hash H_b. `rng` supplies the batch weights (use `OsRng`).
pub fn verify_ballot<R: RngCore + CryptoRng>(
    ctx: &BallotContext,
    ballot: &EncryptedBallot,
    rng: &mut R,
) -> Result<Hash32, BallotError> {
    let h_b = precheck(ctx, ballot)?;
    let set = equations(ctx, ballot)?;
    set.check(Some(&ctx.key.table), rng).map_err(BallotError::from)?;
    Ok(h_b)
}

/// Verifies many ballots with one multi-exponentiation over all their proofs; on a failed batch each
/// ballot is verified alone, so the result for every ballot is exactly what [`verify_ballot`] gives.
pub fn verify_ballots_batch<R: RngCore + CryptoRng>(
    ctx: &BallotContext,
    ballots: &[EncryptedBallot],
    rng: &mut R,
) -> Vec<Result<Hash32, BallotError>> {
    let mut results: Vec<Result<Hash32, BallotError>> = Vec::with_capacity(ballots.len());
    let mut sets = Vec::new();
    let mut pending = Vec::new();
    for b in ballots {
        match precheck(ctx, b).and_then(|h| equations(ctx, b).map(|s| (h, s))) {
            Ok((h, set)) => {
                pending.push(results.len());
                sets.push(set);
                results.push(Ok(h));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if !batch_check(&sets, rng) {
        for (i, set) in pending.into_iter().zip(&sets) {
            if let Err(label) = set.check(Some(&ctx.key.table), rng) {
                results[i] = Err(label.into());
            }
        }
    }
    results
}

/// A challenged (spoiled) ballot: opened for a cast-as-intended check and never counted.
///
/// It carries no credential, so it says nothing about who challenged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoiledBallot {
    /// The election.
    pub election_id: String,
    /// Per contest, per option, the ciphertext the voter was shown.
    pub ciphertexts: Vec<Vec<Ciphertext>>,
    /// The revealed plaintext.
    pub plaintext: PlaintextBallot,
    /// The revealed master nonce.
    #[serde(with = "crate::election::hex_32")]
    pub master_nonce: [u8; 32],
}

/// Opens an encrypted ballot for a challenge; the ballot must then never be cast.
pub fn spoil(ballot: &EncryptedBallot, secrets: &BallotSecrets) -> SpoiledBallot {
    SpoiledBallot {
        election_id: ballot.election_id.clone(),
        ciphertexts: ballot
            .contests
            .iter()
            .map(|c| c.selections.iter().map(|s| s.ciphertext).collect())
            .collect(),
        plaintext: secrets.plaintext.clone(),
        master_nonce: secrets.master_nonce,
    }
}

/// Re-derives every nonce from the master nonce and recomputes every ciphertext from the plaintext.
pub fn verify_spoiled(ctx: &BallotContext, spoiled: &SpoiledBallot) -> Result<(), BallotError> {
    if spoiled.election_id != ctx.election_id {
        return Err(BallotError::WrongElection {
            expected: ctx.election_id.clone(),
            got: spoiled.election_id.clone(),
        });
    }
    let m = &ctx.manifest;
    if spoiled.ciphertexts.len() != m.contests.len() {
        return Err(ShapeError::ContestCount {
            expected: m.contests.len(),
            got: spoiled.ciphertexts.len(),
        }
        .into());
    }
    for (ci, (c, row)) in m.contests.iter().zip(&spoiled.ciphertexts).enumerate() {
        if row.len() != c.options.len() {
            return Err(ShapeError::OptionCount {
                contest: ci,
                expected: c.options.len(),
                got: row.len(),
            }
            .into());
        }
    }
    spoiled.plaintext.validate(m)?;
    for (ci, (row, values)) in spoiled
        .ciphertexts
        .iter()
        .zip(&spoiled.plaintext.contests)
        .enumerate()
    {
        for (oi, (ct, &v)) in row.iter().zip(values).enumerate() {
            let rho = option_nonce(&spoiled.master_nonce, ci, oi);
            let expect = Ciphertext::encrypt(&ctx.key, u64::from(v), &rho);
            if expect.as_ref() != Ok(ct) {
                return Err(BallotError::SpoiledMismatch {
                    contest: ci,
                    option: oi,
                });
            }
        }
    }
    Ok(())
}

/// Decode errors of points, kept for callers that decode parts themselves.
impl From<DecodeError> for BallotError {
    fn from(e: DecodeError) -> Self {
        BallotError::Decode(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::CredentialCode;
    use crate::group::{g_mul, random_scalar};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn setup(manifest: Manifest, rng: &mut ChaCha20Rng) -> (BallotContext, Fr) {
        let s = random_scalar(rng);
        let k = Point::from_proj(&g_mul(&s)).unwrap();
        (BallotContext::new("e1", [9u8; 32], manifest, k).unwrap(), s)
    }

    #[test]
    fn encrypt_verify_and_spoil() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let (ctx, _) = setup(Manifest::simple(&[(3, 1, 1), (4, 0, 2)]), &mut rng);
        let code = CredentialCode::random(&mut rng);
        let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![1], vec![0, 3]]).unwrap();
        let (b, secrets) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
        let h = verify_ballot(&ctx, &b, &mut rng).unwrap();
        assert_eq!(h, b.hash(&ctx));
        let spoiled = spoil(&b, &secrets);
        assert_eq!(verify_spoiled(&ctx, &spoiled), Ok(()));
        assert!(!format!("{secrets:?}").contains(&hex::encode(secrets.master_nonce)));
    }

    #[test]
    fn full_range_contest_of_max_options_is_provable() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let n = crate::manifest::limits::MAX_OPTIONS;
        let (ctx, _) = setup(Manifest::simple(&[(n, 0, n as u64)]), &mut rng);
        let code = CredentialCode::random(&mut rng);
        let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![0, 5, 63]]).unwrap();
        let (b, _) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
        verify_ballot(&ctx, &b, &mut rng).unwrap();
    }

    #[test]
    fn plaintext_validation_names_the_problem() {
        let m = Manifest::simple(&[(3, 1, 2)]);
        assert_eq!(
            PlaintextBallot::from_selected(&m, &[vec![]]),
            Err(BallotError::SelectionCount {
                contest: 0,
                count: 0,
                min: 1,
                max: 2
            })
        );
        assert_eq!(
            PlaintextBallot::from_selected(&m, &[vec![1, 1]]),
            Err(BallotError::PlaintextValue {
                contest: 0,
                option: 1,
                value: 2
            })
        );
        assert!(matches!(
            PlaintextBallot::from_selected(&m, &[vec![3]]),
            Err(BallotError::Shape(ShapeError::OptionCount { .. }))
        ));
    }
}

//! Threshold decryption of the aggregate, the tally, and the result certificate (design 4.6).
//!
//! - Custodian j decrypts each option's aggregate `(A, B)` partially: `M_j = A^{s_j}`, with a
//!   Chaum-Pedersen proof ([`DleqProof`]) that `log_g(K_j) = log_A(M_j)`. The proof's context is
//!   `H_s("urna/v1/proof/decryption", Q', j, option position, A, B, K_j, A, M_j, commitments)` (strong
//!   Fiat-Shamir: the whole statement and every commitment).
//! - Any q verified partial decryptions combine with Lagrange coefficients at 0 over their `x_j`:
//!   `M = prod M_j^{lambda_j}`, `g^t = B / M`. The secret is never reconstructed.
//! - `t` is found by baby-step giant-step bounded by the ballot count ([`DlogTable`]).
//! - The result hash `H("urna/v1/result", Q', close entry hash, tally canonical bytes)` is signed by each
//!   custodian's signing share; q signature shares combine into one BLS signature ([`certify`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{compiler_fence, Ordering};

use blsttc::group::ff::Field;
use blsttc::group::prime::PrimeCurveAffine;
use blsttc::group::{Curve, Group};
use blsttc::{
    Fr, G1Affine, G1Projective, PublicKey, PublicKeySet, SecretKeyShare, Signature, SignatureShare,
};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::elgamal::Ciphertext;
use crate::group::{g, g_mul, lagrange_at_zero, Point};
use crate::hash::{Hash32, Transcript};
use crate::manifest::Manifest;
use crate::proofs::DleqProof;
use crate::verify::{Base, EquationSet};

/// Domain tag of the partial-decryption proofs.
pub const DECRYPTION_TAG: &str = "urna/v1/proof/decryption";
/// Domain tag of the result hash.
pub const RESULT_TAG: &str = "urna/v1/result";
/// Domain tag of the tally's canonical bytes.
pub const TALLY_TAG: &str = "urna/v1/tally";
/// Largest bound [`discrete_log`] accepts (the baby-step table then has 2^16 entries).
pub const MAX_DLOG_BOUND: u64 = 1 << 32;

/// Why a partial decryption, a combination, a tally or a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// The number of per-option items does not match the aggregate (or the manifest).
    #[error("wrong number of options: expected {expected}, got {got}")]
    WrongOptionCount {
        /// Options in the aggregate.
        expected: usize,
        /// Items received.
        got: usize,
    },
    /// The proof of the partial decryption of one option does not verify.
    #[error("partial decryption proof of option {option} does not verify")]
    BadProof {
        /// 0-based option position in the aggregate.
        option: usize,
    },
    /// The index is not a custodian of this election.
    #[error("custodian index {index} is unknown (the election has {custodians} custodians)")]
    UnknownCustodian {
        /// Index given.
        index: usize,
        /// Number of custodians.
        custodians: usize,
    },
    /// Fewer shares than the quorum.
    #[error("not enough shares: have {have}, need {need}")]
    NotEnoughShares {
        /// Distinct shares given.
        have: usize,
        /// Quorum.
        need: usize,
    },
    /// Two shares carry the same custodian index.
    #[error("duplicate share from custodian {index}")]
    DuplicateShare {
        /// The repeated index.
        index: usize,
    },
    /// The quorum is zero.
    #[error("invalid quorum {quorum}")]
    InvalidQuorum {
        /// Quorum given.
        quorum: usize,
    },
    /// The secret share does not match the custodian's public key share K_j.
    #[error("the secret share does not match the public key share")]
    WrongKeyShare,
    /// A computed point was the identity (probability 2^-255, or a degenerate secret share).
    #[error("degenerate value")]
    Degenerate,
    /// The combined value of an option is not `g^t` for any `t` up to the bound.
    #[error("option {option}: no discrete logarithm up to {bound}")]
    NoDiscreteLog {
        /// 0-based option position.
        option: usize,
        /// The bound searched.
        bound: u64,
    },
    /// The discrete-logarithm bound exceeds [`MAX_DLOG_BOUND`].
    #[error("discrete-log bound {bound} exceeds {}", MAX_DLOG_BOUND)]
    BoundTooLarge {
        /// Bound requested.
        bound: u64,
    },
    /// A custodian's signature share over the result does not verify.
    #[error("signature share of custodian {index} does not verify")]
    BadSignatureShare {
        /// Custodian index.
        index: usize,
    },
    /// The combined signature does not verify against the signing public key.
    #[error("result certificate does not verify")]
    BadCertificate,
}

/// A secret scalar that is cleared when dropped.
struct SecretFr(Fr);

impl Drop for SecretFr {
    fn drop(&mut self) {
        self.0 = Fr::zero();
        compiler_fence(Ordering::SeqCst);
    }
}

/// Reads a blsttc secret key share as a field element, clearing the byte copy.
fn share_scalar(share: &SecretKeyShare) -> Result<SecretFr, TallyError> {
    let mut bytes = share.to_bytes();
    let fr = Option::<Fr>::from(Fr::from_bytes_be(&bytes));
    bytes.zeroize();
    fr.map(SecretFr).ok_or(TallyError::Degenerate)
}

/// What binds a partial decryption to one election: Q' and the number of custodians.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TallyContext {
    /// The extended base hash Q'.
    pub extended_hash: Hash32,
    /// Number of custodians n (valid indices are `0..n`).
    pub custodians: usize,
}

impl TallyContext {
    /// A context for the election with extended hash `extended_hash` and `custodians` custodians.
    pub fn new(extended_hash: Hash32, custodians: usize) -> Self {
        TallyContext {
            extended_hash,
            custodians,
        }
    }

    fn check_index(&self, j: usize) -> Result<(), TallyError> {
        if j >= self.custodians {
            return Err(TallyError::UnknownCustodian {
                index: j,
                custodians: self.custodians,
            });
        }
        Ok(())
    }

    /// The Fiat-Shamir context of custodian j's proof for the option at position `option`.
    pub fn proof_context(&self, j: usize, option: usize, ct: &Ciphertext) -> Transcript {
        ct.absorb(
            Transcript::new(DECRYPTION_TAG)
                .hash(&self.extended_hash)
                .u64(j as u64)
                .u64(option as u64),
        )
    }
}

/// Custodian j's public encryption key share `K_j = g^{s_j}` from the election's public key set.
pub fn key_share(pkset: &PublicKeySet, j: usize) -> Result<Point, TallyError> {
    Point::from_bytes(&pkset.public_key_share(j).to_bytes()).map_err(|_| TallyError::Degenerate)
}

/// One option's partial decryption: `M_j = A^{s_j}` and its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptionShare {
    /// `M_j = A^{s_j}`.
    pub m: Point,
    /// Proof that `log_g(K_j) = log_A(M_j)`.
    pub proof: DleqProof,
}

/// Custodian j's partial decryption of the whole aggregate, one share per option in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialDecryption {
    /// Per option, in the aggregate's order.
    pub shares: Vec<DecryptionShare>,
}

/// Custodian j partially decrypts every option of `aggregate` with its encryption share.
///
/// `key_share` is `K_j = g^{s_j}` as published; a secret share that does not match it is refused.
pub fn partial_decrypt<R: RngCore + CryptoRng>(
    ctx: &TallyContext,
    j: usize,
    share: &SecretKeyShare,
    key_share: &Point,
    aggregate: &[Ciphertext],
    rng: &mut R,
) -> Result<PartialDecryption, TallyError> {
    ctx.check_index(j)?;
    let s = share_scalar(share)?;
    if g_mul(&s.0) != key_share.proj() {
        return Err(TallyError::WrongKeyShare);
    }
    let mut shares = Vec::with_capacity(aggregate.len());
    for (k, ct) in aggregate.iter().enumerate() {
        let m = Point::from_proj(&(ct.alpha.proj() * s.0)).map_err(|_| TallyError::Degenerate)?;
        let proof = DleqProof::prove(&ctx.proof_context(j, k, ct), &s.0, key_share, &ct.alpha, &m, rng)
            .map_err(|_| TallyError::Degenerate)?;
        shares.push(DecryptionShare { m, proof });
    }
    Ok(PartialDecryption { shares })
}

/// Builds the equations of every option's proof, labelled by option position.
fn partial_equations(
    ctx: &TallyContext,
    j: usize,
    key_share: &Point,
    aggregate: &[Ciphertext],
    pd: &PartialDecryption,
) -> Result<EquationSet<usize>, TallyError> {
    ctx.check_index(j)?;
    if pd.shares.len() != aggregate.len() {
        return Err(TallyError::WrongOptionCount {
            expected: aggregate.len(),
            got: pd.shares.len(),
        });
    }
    let kj = key_share.proj();
    let mut set = EquationSet::new(kj);
    for (k, (ct, share)) in aggregate.iter().zip(&pd.shares).enumerate() {
        let t = ctx.proof_context(j, k, ct);
        for mut eq in share.proof.equations(&t, key_share, &ct.alpha, &share.m) {
            // K_j appears in every option's first equation: merge it into the set's key base.
            for (base, _) in eq.terms.iter_mut() {
                if matches!(base, Base::Point(p) if *p == kj) {
                    *base = Base::Key;
                }
            }
            set.push(k, eq);
        }
    }
    Ok(set)
}

/// Verifies custodian j's partial decryption against `K_j` and the aggregate.
///
/// All options are checked in one random-weight batch (weights from the OS generator); when the batch
/// fails, each option is checked exactly and the first failing one is named. Use
/// [`verify_partial_exact`] where randomness is not allowed (inside apply).
pub fn verify_partial(
    ctx: &TallyContext,
    j: usize,
    key_share: &Point,
    aggregate: &[Ciphertext],
    pd: &PartialDecryption,
) -> Result<(), TallyError> {
    verify_partial_with_rng(ctx, j, key_share, aggregate, pd, &mut rand::rngs::OsRng)
}

/// [`verify_partial`] with the batch weights drawn from `rng`.
pub fn verify_partial_with_rng<R: RngCore + CryptoRng>(
    ctx: &TallyContext,
    j: usize,
    key_share: &Point,
    aggregate: &[Ciphertext],
    pd: &PartialDecryption,
    rng: &mut R,
) -> Result<(), TallyError> {
    partial_equations(ctx, j, key_share, aggregate, pd)?
        .check(None, rng)
        .map_err(|option| TallyError::BadProof { option })
}

/// Verifies custodian j's partial decryption deterministically, one option at a time.
pub fn verify_partial_exact(
    ctx: &TallyContext,
    j: usize,
    key_share: &Point,
    aggregate: &[Ciphertext],
    pd: &PartialDecryption,
) -> Result<(), TallyError> {
    partial_equations(ctx, j, key_share, aggregate, pd)?
        .check_exact(None)
        .map_err(|option| TallyError::BadProof { option })
}

/// Combines verified partial decryptions into `g^t` per option.
///
/// `shares` are `(custodian index, partial decryption)` pairs with distinct indices; the first `quorum`
/// of them are used, with Lagrange coefficients at 0 over their `x_j`. The shares must have been verified
/// ([`verify_partial`]); an unverified wrong share yields a wrong point, which the bounded discrete
/// logarithm then almost surely refuses.
pub fn combine(
    aggregate: &[Ciphertext],
    shares: &[(usize, &PartialDecryption)],
    quorum: usize,
) -> Result<Vec<G1Projective>, TallyError> {
    if quorum == 0 {
        return Err(TallyError::InvalidQuorum { quorum });
    }
    let mut seen = BTreeSet::new();
    for &(j, _) in shares {
        if !seen.insert(j) {
            return Err(TallyError::DuplicateShare { index: j });
        }
    }
    if shares.len() < quorum {
        return Err(TallyError::NotEnoughShares {
            have: shares.len(),
            need: quorum,
        });
    }
    let used = &shares[..quorum];
    for (_, pd) in used {
        if pd.shares.len() != aggregate.len() {
            return Err(TallyError::WrongOptionCount {
                expected: aggregate.len(),
                got: pd.shares.len(),
            });
        }
    }
    let indices: Vec<usize> = used.iter().map(|&(j, _)| j).collect();
    let lambdas = lagrange_at_zero(&indices).ok_or(TallyError::DuplicateShare {
        index: indices.first().copied().unwrap_or_default(),
    })?;
    let mut points = Vec::with_capacity(quorum);
    let out = aggregate
        .iter()
        .enumerate()
        .map(|(k, ct)| {
            points.clear();
            points.extend(used.iter().map(|(_, pd)| pd.shares[k].m.proj()));
            let m = G1Projective::multi_exp(&points, &lambdas);
            ct.beta.proj() - m
        })
        .collect();
    Ok(out)
}

/// Baby-step giant-step table for discrete logarithms base g in `[0, bound]`.
///
/// The baby steps `g^0 .. g^{m-1}` (`m = ceil(sqrt(bound + 1))`) are batch-normalised and indexed by
/// their compressed bytes; a search then walks at most `ceil((bound + 1) / m)` giant steps of `g^{-m}`.
/// Build one table and reuse it for every option of a tally.
pub struct DlogTable {
    bound: u64,
    m: u64,
    giants: u64,
    baby: HashMap<[u8; 48], u32>,
    stride: G1Projective,
}

/// Giant steps normalised together (one field inversion per chunk).
const GIANT_CHUNK: usize = 256;

impl DlogTable {
    /// Builds the table for `[0, bound]`; `None` when `bound` exceeds [`MAX_DLOG_BOUND`].
    pub fn new(bound: u64) -> Option<Self> {
        if bound > MAX_DLOG_BOUND {
            return None;
        }
        let values = bound + 1;
        let mut m = (values as f64).sqrt() as u64;
        while m * m < values {
            m += 1;
        }
        while m > 1 && (m - 1) * (m - 1) >= values {
            m -= 1;
        }
        let giants = values.div_ceil(m);
        let mut proj = Vec::with_capacity(m as usize);
        let mut cur = G1Projective::identity();
        let gen = g();
        for _ in 0..m {
            proj.push(cur);
            cur += gen;
        }
        let mut affine = vec![G1Affine::identity(); proj.len()];
        G1Projective::batch_normalize(&proj, &mut affine);
        let mut baby = HashMap::with_capacity(affine.len());
        for (i, p) in affine.iter().enumerate() {
            baby.insert(p.to_compressed(), i as u32);
        }
        Some(DlogTable {
            bound,
            m,
            giants,
            baby,
            stride: -cur,
        })
    }

    /// The largest value this table finds.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The `t` in `[0, bound]` with `point = g^t`, if any. Deterministic.
    pub fn solve(&self, point: &G1Projective) -> Option<u64> {
        if bool::from(point.is_identity()) {
            return Some(0);
        }
        let mut cur = *point;
        let mut i = 0u64;
        let mut proj = Vec::with_capacity(GIANT_CHUNK);
        let mut affine = vec![G1Affine::identity(); GIANT_CHUNK];
        while i < self.giants {
            let n = (self.giants - i).min(GIANT_CHUNK as u64) as usize;
            proj.clear();
            for _ in 0..n {
                proj.push(cur);
                cur += self.stride;
            }
            G1Projective::batch_normalize(&proj, &mut affine[..n]);
            for (off, p) in affine[..n].iter().enumerate() {
                if let Some(&b) = self.baby.get(&p.to_compressed()) {
                    // Baby steps are distinct, so the first hit is the smallest solution.
                    let t = (i + off as u64) * self.m + u64::from(b);
                    return (t <= self.bound).then_some(t);
                }
            }
            i += n as u64;
        }
        None
    }
}

/// The `t` in `[0, bound]` with `point = g^t`, by baby-step giant-step; `None` when there is none or
/// `bound` exceeds [`MAX_DLOG_BOUND`]. The identity gives `Some(0)`.
pub fn discrete_log(point: &G1Projective, bound: u64) -> Option<u64> {
    if bool::from(point.is_identity()) {
        return Some(0);
    }
    DlogTable::new(bound)?.solve(point)
}

/// The decrypted counts, per contest, per option, in manifest order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// `counts[c][o]`: votes for option o of contest c.
    pub counts: Vec<Vec<u64>>,
}

impl Tally {
    /// Splits flat per-option counts along the manifest's contests.
    pub fn from_flat(manifest: &Manifest, flat: &[u64]) -> Result<Self, TallyError> {
        let expected = manifest.option_count();
        if flat.len() != expected {
            return Err(TallyError::WrongOptionCount {
                expected,
                got: flat.len(),
            });
        }
        let mut rest = flat;
        let mut counts = Vec::with_capacity(manifest.contests.len());
        for c in &manifest.contests {
            let (head, tail) = rest.split_at(c.options.len());
            counts.push(head.to_vec());
            rest = tail;
        }
        Ok(Tally { counts })
    }

    /// The counts of every option in ballot order.
    pub fn flat(&self) -> Vec<u64> {
        self.counts.iter().flatten().copied().collect()
    }

    /// Whether the tally has the manifest's shape (contest and option counts).
    pub fn fits(&self, manifest: &Manifest) -> bool {
        self.counts.len() == manifest.contests.len()
            && self
                .counts
                .iter()
                .zip(&manifest.contests)
                .all(|(c, mc)| c.len() == mc.options.len())
    }

    /// Canonical bytes: tag, number of contests, then per contest the number of options and each count
    /// (length-prefixed, fixed order; never JSON text).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(TALLY_TAG).u64(self.counts.len() as u64);
        for contest in &self.counts {
            t = t.u64(contest.len() as u64);
            for &v in contest {
                t = t.u64(v);
            }
        }
        t.into_bytes()
    }
}

/// Combines the partial decryptions and solves each option's count, bounded by the ballot count.
///
/// `aggregate` holds one ciphertext per option in manifest order; `shares` must be verified (see
/// [`combine`]). Every option's count lies in `[0, ballots]` since each ballot adds 0 or 1.
pub fn decrypt_tally(
    manifest: &Manifest,
    aggregate: &[Ciphertext],
    shares: &[(usize, &PartialDecryption)],
    quorum: usize,
    ballots: u64,
) -> Result<Tally, TallyError> {
    let expected = manifest.option_count();
    if aggregate.len() != expected {
        return Err(TallyError::WrongOptionCount {
            expected,
            got: aggregate.len(),
        });
    }
    let combined = combine(aggregate, shares, quorum)?;
    let table = DlogTable::new(ballots).ok_or(TallyError::BoundTooLarge { bound: ballots })?;
    let flat = combined
        .iter()
        .enumerate()
        .map(|(option, p)| {
            table.solve(p).ok_or(TallyError::NoDiscreteLog {
                option,
                bound: ballots,
            })
        })
        .collect::<Result<Vec<u64>, _>>()?;
    Tally::from_flat(manifest, &flat)
}

/// The result hash `H("urna/v1/result", Q', close entry hash, tally canonical bytes)`.
pub fn result_hash(extended_hash: &Hash32, close_entry: &Hash32, tally: &Tally) -> Hash32 {
    Transcript::new(RESULT_TAG)
        .hash(extended_hash)
        .hash(close_entry)
        .bytes(&tally.canonical_bytes())
        .digest()
}

/// Custodian j's signature share over the result hash, with its signing secret share.
pub fn sign_result(signing_share: &SecretKeyShare, result_hash: &Hash32) -> SignatureShare {
    signing_share.sign(result_hash)
}

/// Verifies custodian j's signature share over the result hash against the signing key set.
pub fn verify_signature_share(
    pkset: &PublicKeySet,
    j: usize,
    result_hash: &Hash32,
    share: &SignatureShare,
) -> Result<(), TallyError> {
    if pkset.public_key_share(j).verify(share, result_hash) {
        Ok(())
    } else {
        Err(TallyError::BadSignatureShare { index: j })
    }
}

/// Combines q signature shares `(custodian index, share)` over the result hash into one BLS signature
/// and checks it against the signing public key.
///
/// The first q shares (q = threshold + 1) are combined; when the result does not verify, each of them is
/// checked to name the bad one.
pub fn certify(
    pkset: &PublicKeySet,
    result_hash: &Hash32,
    shares: &[(usize, &SignatureShare)],
) -> Result<Signature, TallyError> {
    let quorum = pkset.threshold() + 1;
    let mut seen = BTreeSet::new();
    for &(j, _) in shares {
        if !seen.insert(j) {
            return Err(TallyError::DuplicateShare { index: j });
        }
    }
    if shares.len() < quorum {
        return Err(TallyError::NotEnoughShares {
            have: shares.len(),
            need: quorum,
        });
    }
    let used = &shares[..quorum];
    let sig = pkset
        .combine_signatures(used.iter().map(|&(j, s)| (j, s)))
        .map_err(|_| TallyError::NotEnoughShares {
            have: shares.len(),
            need: quorum,
        })?;
    if pkset.public_key().verify(&sig, result_hash) {
        return Ok(sig);
    }
    for &(j, s) in used {
        verify_signature_share(pkset, j, result_hash, s)?;
    }
    Err(TallyError::BadCertificate)
}

/// Verifies a result certificate: `signature` over `result_hash` under the signing public key.
pub fn verify_certificate(
    signing_key: &PublicKey,
    result_hash: &Hash32,
    signature: &Signature,
) -> Result<(), TallyError> {
    if signing_key.verify(signature, result_hash) {
        Ok(())
    } else {
        Err(TallyError::BadCertificate)
    }
}

/// A signature share over a result as it travels (hex of the 96-byte compressed G2 point in JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSignatureShare(pub SignatureShare);

/// A BLS signature as it travels (hex of the 96-byte compressed G2 point in JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSignature(pub Signature);

fn decode_sig_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 96], D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
    v.try_into()
        .map_err(|_| serde::de::Error::custom("expected 96 bytes"))
}

impl Serialize for WireSignatureShare {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for WireSignatureShare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = decode_sig_bytes(d)?;
        SignatureShare::from_bytes(b)
            .map(WireSignatureShare)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for WireSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for WireSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = decode_sig_bytes(d)?;
        Signature::from_bytes(b)
            .map(WireSignature)
            .map_err(serde::de::Error::custom)
    }
}

/// The published result certificate: the result hash and the combined signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// `H("urna/v1/result", Q', close entry, tally)`.
    #[serde(with = "crate::election::hex_32")]
    pub result_hash: Hash32,
    /// The BLS signature under the signing public key.
    pub signature: WireSignature,
}

impl Certificate {
    /// Checks the signature against the signing public key.
    pub fn verify(&self, signing_key: &PublicKey) -> Result<(), TallyError> {
        verify_certificate(signing_key, &self.result_hash, &self.signature.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{g_pow_u64, random_scalar};
    use crate::proofs::KeyTable;
    use blsttc::SecretKeySet;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn discrete_log_small_and_boundaries() {
        assert_eq!(discrete_log(&G1Projective::identity(), 0), Some(0));
        assert_eq!(discrete_log(&g(), 0), None);
        for bound in [1u64, 2, 3, 10, 99, 100, 101] {
            let table = DlogTable::new(bound).unwrap();
            for t in 0..=bound {
                assert_eq!(table.solve(&g_pow_u64(t)), Some(t), "t={t} bound={bound}");
            }
            for t in bound + 1..bound + 5 {
                assert_eq!(table.solve(&g_pow_u64(t)), None, "t={t} bound={bound}");
            }
            assert_eq!(table.solve(&-g()), None);
        }
    }

    #[test]
    fn discrete_log_large_bound() {
        let bound = 10_000_000;
        let table = DlogTable::new(bound).unwrap();
        for t in [0, 1, 4_999_999, 9_999_999, 10_000_000] {
            assert_eq!(table.solve(&g_pow_u64(t)), Some(t));
        }
        assert_eq!(table.solve(&g_pow_u64(10_000_001)), None);
        assert_eq!(discrete_log(&g_pow_u64(1_000_000), 1_000_000), Some(1_000_000));
        assert_eq!(discrete_log(&g_pow_u64(1_000_001), 1_000_000), None);
        // A point that is no small power of g.
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        assert_eq!(table.solve(&g_mul(&random_scalar(&mut rng))), None);
        assert!(DlogTable::new(MAX_DLOG_BOUND + 1).is_none());
        assert_eq!(discrete_log(&g(), u64::MAX), None);
    }

    #[test]
    fn tally_bytes_and_shape() {
        let manifest = Manifest::simple(&[(2, 0, 1), (3, 1, 2)]);
        let t = Tally::from_flat(&manifest, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(t.counts, vec![vec![1, 2], vec![3, 4, 5]]);
        assert_eq!(t.flat(), vec![1, 2, 3, 4, 5]);
        assert!(t.fits(&manifest));
        // Same flat counts, other split: other bytes.
        let other = Tally {
            counts: vec![vec![1, 2, 3], vec![4, 5]],
        };
        assert!(!other.fits(&manifest));
        assert_ne!(t.canonical_bytes(), other.canonical_bytes());
        assert_eq!(
            Tally::from_flat(&manifest, &[1, 2]),
            Err(TallyError::WrongOptionCount { expected: 5, got: 2 })
        );
    }

    #[test]
    fn single_custodian_roundtrip() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let sks = SecretKeySet::random(0, &mut rng);
        let pks = sks.public_keys();
        let k = Point::from_bytes(&pks.public_key().to_bytes()).unwrap();
        let table = KeyTable::new(k);
        let aggregate: Vec<Ciphertext> = [0u64, 5, 17]
            .iter()
            .map(|&v| Ciphertext::encrypt(&table, v, &random_scalar(&mut rng)).unwrap())
            .collect();
        let ctx = TallyContext::new([3u8; 32], 1);
        let kj = key_share(&pks, 0).unwrap();
        let share = sks.secret_key_share(0);
        let pd = partial_decrypt(&ctx, 0, &share, &kj, &aggregate, &mut rng).unwrap();
        verify_partial_with_rng(&ctx, 0, &kj, &aggregate, &pd, &mut rng).unwrap();
        verify_partial_exact(&ctx, 0, &kj, &aggregate, &pd).unwrap();
        let combined = combine(&aggregate, &[(0, &pd)], 1).unwrap();
        let counts: Vec<_> = combined.iter().map(|p| discrete_log(p, 20)).collect();
        assert_eq!(counts, vec![Some(0), Some(5), Some(17)]);
        assert_eq!(
            combine(&aggregate, &[(0, &pd)], 0),
            Err(TallyError::InvalidQuorum { quorum: 0 })
        );
        // A share that does not belong to K_j is refused before anything is computed. (With q = 1 every
        // custodian holds the same share, so take one from another key set.)
        let other = SecretKeySet::random(0, &mut rng).secret_key_share(0);
        assert_eq!(
            partial_decrypt(&ctx, 0, &other, &kj, &aggregate, &mut rng),
            Err(TallyError::WrongKeyShare)
        );
    }
}

//! Zero-knowledge proofs with strong Fiat-Shamir (design 4.1).
//!
//! Proofs are kept in commitment form (commitments and responses on the wire, the challenge recomputed by
//! the verifier), which is what batch verification needs. Every challenge is `H_s` over a caller-built
//! context transcript (tag, Q or Q', and the statement's identifying parts) to which the proof appends the
//! rest of its statement and every commitment, so a proof moved to another statement fails.
//!
//! - [`SchnorrProof`]: knowledge of `x` with `X = g^x`.
//! - [`DleqProof`]: Chaum-Pedersen, `log_g(X) = log_H(Y)`.
//! - [`RangeProof`]: disjunctive Chaum-Pedersen that an exponential ElGamal ciphertext `(alpha, beta)`
//!   under key K encrypts a value in `[lo, hi]` (0/1 proofs are the range `[0, 1]`).

use blsttc::group::ff::Field;
use blsttc::Fr;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::group::{g_mul, random_scalar, FixedBase, Point, Scalar};
use crate::hash::Transcript;
use crate::verify::{Base, Equation, EquationSet};

/// Why a proof could not be made or does not verify structurally (before any group check).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The branch challenges do not add up to the Fiat-Shamir challenge.
    #[error("branch challenges do not sum to the challenge")]
    ChallengeSum,
    /// The proof has the wrong number of branches for its range.
    #[error("wrong number of proof branches: expected {expected}, got {got}")]
    BranchCount {
        /// Branches expected (hi - lo + 1).
        expected: usize,
        /// Branches received.
        got: usize,
    },
    /// The range is empty or too wide.
    #[error("invalid range [{lo}, {hi}]")]
    BadRange {
        /// Lower bound.
        lo: u64,
        /// Upper bound.
        hi: u64,
    },
    /// The prover's value is outside the range (nothing true can be proved).
    #[error("value is outside the range")]
    ValueOutOfRange,
    /// A computed commitment was the identity (probability 2^-255; retry).
    #[error("degenerate commitment")]
    Degenerate,
}

/// Largest number of branches a range proof may have (bounds work done on untrusted input).
///
/// A contest of `MAX_OPTIONS` options with `0 <= sum <= MAX_OPTIONS` needs `MAX_OPTIONS + 1` branches, and
/// such a manifest is valid, so the bound must admit it.
pub const MAX_RANGE_BRANCHES: u64 = crate::manifest::limits::MAX_OPTIONS as u64 + 1;

/// Proof of knowledge of `x` such that `X = g^x`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchnorrProof {
    /// `a = g^w`.
    pub commitment: Point,
    /// `z = w + c x`.
    pub response: Scalar,
}

impl SchnorrProof {
    fn challenge(ctx: &Transcript, x_pub: &Point, a: &Point) -> Fr {
        ctx.clone().point(x_pub.affine()).point(a.affine()).challenge()
    }

    /// Proves knowledge of `x` for `x_pub = g^x` under the context `ctx`.
    pub fn prove<R: RngCore + CryptoRng>(
        ctx: &Transcript,
        x: &Fr,
        x_pub: &Point,
        rng: &mut R,
    ) -> Result<Self, ProofError> {
        let w = random_scalar(rng);
        let a = Point::from_proj(&g_mul(&w)).map_err(|_| ProofError::Degenerate)?;
        let c = Self::challenge(ctx, x_pub, &a);
        Ok(SchnorrProof {
            commitment: a,
            response: Scalar(w + c * x),
        })
    }

    /// The equation `z G - c X - a == 0`.
    pub fn equation(&self, ctx: &Transcript, x_pub: &Point) -> Equation {
        let c = Self::challenge(ctx, x_pub, &self.commitment);
        Equation::new()
            .term(Base::G, self.response.0)
            .term(Base::Point(x_pub.proj()), -c)
            .term(Base::Point(self.commitment.proj()), -Fr::one())
    }

    /// Verifies exactly.
    pub fn verify(&self, ctx: &Transcript, x_pub: &Point) -> bool {
        let mut set = EquationSet::new(x_pub.proj());
        set.push((), self.equation(ctx, x_pub));
        set.check_exact(None).is_ok()
    }
}

/// Chaum-Pedersen proof that `log_g(X) = log_H(Y)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DleqProof {
    /// `a = g^w`.
    pub a: Point,
    /// `b = H^w`.
    pub b: Point,
    /// `z = w + c x`.
    pub response: Scalar,
}

impl DleqProof {
    fn challenge(ctx: &Transcript, x_pub: &Point, h: &Point, y: &Point, a: &Point, b: &Point) -> Fr {
        ctx.clone()
            .point(x_pub.affine())
            .point(h.affine())
            .point(y.affine())
            .point(a.affine())
            .point(b.affine())
            .challenge()
    }

    /// Proves `x_pub = g^x` and `y = h^x` for the same `x`.
    pub fn prove<R: RngCore + CryptoRng>(
        ctx: &Transcript,
        x: &Fr,
        x_pub: &Point,
        h: &Point,
        y: &Point,
        rng: &mut R,
    ) -> Result<Self, ProofError> {
        let w = random_scalar(rng);
        let a = Point::from_proj(&g_mul(&w)).map_err(|_| ProofError::Degenerate)?;
        let b = Point::from_proj(&(h.proj() * w)).map_err(|_| ProofError::Degenerate)?;
        let c = Self::challenge(ctx, x_pub, h, y, &a, &b);
        Ok(DleqProof {
            a,
            b,
            response: Scalar(w + c * x),
        })
    }

    /// The two equations `z G - c X - a == 0` and `z H - c Y - b == 0`.
    pub fn equations(&self, ctx: &Transcript, x_pub: &Point, h: &Point, y: &Point) -> [Equation; 2] {
        let c = Self::challenge(ctx, x_pub, h, y, &self.a, &self.b);
        let z = self.response.0;
        [
            Equation::new()
                .term(Base::G, z)
                .term(Base::Point(x_pub.proj()), -c)
                .term(Base::Point(self.a.proj()), -Fr::one()),
            Equation::new()
                .term(Base::Point(h.proj()), z)
                .term(Base::Point(y.proj()), -c)
                .term(Base::Point(self.b.proj()), -Fr::one()),
        ]
    }

    /// Verifies exactly.
    pub fn verify(&self, ctx: &Transcript, x_pub: &Point, h: &Point, y: &Point) -> bool {
        let mut set = EquationSet::new(x_pub.proj());
        for eq in self.equations(ctx, x_pub, h, y) {
            set.push((), eq);
        }
        set.check_exact(None).is_ok()
    }
}

/// One branch of a [`RangeProof`]: the statement "the ciphertext encrypts m".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeBranch {
    /// `a_m = g^{w}` (or simulated).
    pub a: Point,
    /// `b_m = K^{w}` (or simulated).
    pub b: Point,
    /// The branch challenge `c_m`.
    pub challenge: Scalar,
    /// The branch response `z_m`.
    pub response: Scalar,
}

/// Disjunctive Chaum-Pedersen proof that `(alpha, beta)` encrypts a value in `[lo, hi]` under K.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    /// One branch per value `lo..=hi`, in order.
    pub branches: Vec<RangeBranch>,
}

/// The public key an encryption is under, with its fixed-base table.
pub struct KeyTable {
    /// The key K.
    pub key: Point,
    /// Precomputed multiples of K.
    pub table: FixedBase,
}

impl KeyTable {
    /// Precomputes the table for `key`.
    pub fn new(key: Point) -> Self {
        KeyTable {
            table: FixedBase::new(&key.proj()),
            key,
        }
    }
}

fn check_range(lo: u64, hi: u64) -> Result<usize, ProofError> {
    if lo > hi || hi - lo >= MAX_RANGE_BRANCHES {
        return Err(ProofError::BadRange { lo, hi });
    }
    Ok((hi - lo + 1) as usize)
}

impl RangeProof {
    fn challenge(
        ctx: &Transcript,
        alpha: &Point,
        beta: &Point,
        lo: u64,
        hi: u64,
        commitments: &[(Point, Point)],
    ) -> Fr {
        let mut t = ctx
            .clone()
            .point(alpha.affine())
            .point(beta.affine())
            .u64(lo)
            .u64(hi);
        for (a, b) in commitments {
            t = t.point(a.affine()).point(b.affine());
        }
        t.challenge()
    }

    /// Proves that `(alpha, beta) = (g^r, g^v K^r)` with `lo <= v <= hi`.
    ///
    /// Runs in time independent of which branch is real: every branch computes `a = g^t`,
    /// `b = K^t g^u` with `t, u` chosen by constant-time selection.
    #[allow(clippy::too_many_arguments)]
    pub fn prove<R: RngCore + CryptoRng>(
        ctx: &Transcript,
        key: &KeyTable,
        alpha: &Point,
        beta: &Point,
        lo: u64,
        hi: u64,
        v: u64,
        r: &Fr,
        rng: &mut R,
    ) -> Result<Self, ProofError> {
        let n = check_range(lo, hi)?;
        if v < lo || v > hi {
            return Err(ProofError::ValueOutOfRange);
        }
        let w = random_scalar(rng);
        let v_fr = Fr::from(v);
        let mut commitments = Vec::with_capacity(n);
        let mut sim_c = Vec::with_capacity(n);
        let mut sim_z = Vec::with_capacity(n);
        for m in lo..=hi {
            let real = m.ct_eq(&v);
            let c_m = random_scalar(rng);
            let z_m = random_scalar(rng);
            // Simulated: a = g^{z - c r}, b = K^{z - c r} g^{(m - v) c}. Real: a = g^w, b = K^w.
            let t = Fr::conditional_select(&(z_m - c_m * r), &w, real);
            let u = Fr::conditional_select(&((Fr::from(m) - v_fr) * c_m), &Fr::zero(), real);
            let a = Point::from_proj(&g_mul(&t)).map_err(|_| ProofError::Degenerate)?;
            let b = Point::from_proj(&(key.table.mul(&t) + g_mul(&u))).map_err(|_| ProofError::Degenerate)?;
            commitments.push((a, b));
            sim_c.push(c_m);
            sim_z.push(z_m);
        }
        let c = Self::challenge(ctx, alpha, beta, lo, hi, &commitments);
        // The real branch's challenge is c minus the sum of the simulated ones.
        let mut c_real = c;
        for (i, m) in (lo..=hi).enumerate() {
            let real = m.ct_eq(&v);
            c_real -= Fr::conditional_select(&sim_c[i], &Fr::zero(), real);
        }
        let z_real = w + c_real * r;
        let branches = (lo..=hi)
            .enumerate()
            .zip(commitments)
            .map(|((i, m), (a, b))| {
                let real = m.ct_eq(&v);
                RangeBranch {
                    a,
                    b,
                    challenge: Scalar(Fr::conditional_select(&sim_c[i], &c_real, real)),
                    response: Scalar(Fr::conditional_select(&sim_z[i], &z_real, real)),
                }
            })
            .collect();
        Ok(RangeProof { branches })
    }

    /// Checks the challenge sum and adds the group equations to `set`, whose key must be K.
    ///
    /// `alpha_id` and `beta_id` are the ciphertext's points registered in `set` with
    /// [`EquationSet::share`]. Each branch m contributes `z G - c alpha - a == 0` and
    /// `z K - c beta + c m G - b == 0`.
    #[allow(clippy::too_many_arguments)]
    pub fn equations<L: Clone>(
        &self,
        ctx: &Transcript,
        alpha: &Point,
        beta: &Point,
        alpha_id: usize,
        beta_id: usize,
        lo: u64,
        hi: u64,
        label: L,
        set: &mut EquationSet<L>,
    ) -> Result<(), ProofError> {
        let n = check_range(lo, hi)?;
        if self.branches.len() != n {
            return Err(ProofError::BranchCount {
                expected: n,
                got: self.branches.len(),
            });
        }
        let commitments: Vec<(Point, Point)> = self.branches.iter().map(|b| (b.a, b.b)).collect();
        let c = Self::challenge(ctx, alpha, beta, lo, hi, &commitments);
        let sum: Fr = self.branches.iter().map(|b| b.challenge.0).sum();
        if sum != c {
            return Err(ProofError::ChallengeSum);
        }
        for (m, br) in (lo..=hi).zip(&self.branches) {
            let (cm, zm) = (br.challenge.0, br.response.0);
            set.push(
                label.clone(),
                Equation::new()
                    .term(Base::G, zm)
                    .term(Base::Shared(alpha_id), -cm)
                    .term(Base::Point(br.a.proj()), -Fr::one()),
            );
            set.push(
                label.clone(),
                Equation::new()
                    .term(Base::Key, zm)
                    .term(Base::Shared(beta_id), -cm)
                    .term(Base::G, cm * Fr::from(m))
                    .term(Base::Point(br.b.proj()), -Fr::one()),
            );
        }
        Ok(())
    }

    /// Verifies exactly, on its own.
    pub fn verify(
        &self,
        ctx: &Transcript,
        key: &Point,
        alpha: &Point,
        beta: &Point,
        lo: u64,
        hi: u64,
    ) -> bool {
        let mut set = EquationSet::new(key.proj());
        let ai = set.share(alpha.proj());
        let bi = set.share(beta.proj());
        self.equations(ctx, alpha, beta, ai, bi, lo, hi, (), &mut set)
            .is_ok()
            && set.check_exact(None).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::g;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn ctx() -> Transcript {
        Transcript::new("urna/v1/test")
    }

    fn encrypt(key: &KeyTable, v: u64, r: &Fr) -> (Point, Point) {
        let alpha = Point::from_proj(&g_mul(r)).unwrap();
        let beta = Point::from_proj(&(g() * Fr::from(v) + key.table.mul(r))).unwrap();
        (alpha, beta)
    }

    #[test]
    fn schnorr_roundtrip_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let x = random_scalar(&mut rng);
        let xp = Point::from_proj(&g_mul(&x)).unwrap();
        let p = SchnorrProof::prove(&ctx(), &x, &xp, &mut rng).unwrap();
        assert!(p.verify(&ctx(), &xp));
        assert!(!p.verify(&Transcript::new("urna/v1/other"), &xp));
        let other = Point::from_proj(&g_mul(&random_scalar(&mut rng))).unwrap();
        assert!(!p.verify(&ctx(), &other));
    }

    #[test]
    fn dleq_roundtrip_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let x = random_scalar(&mut rng);
        let h = Point::from_proj(&g_mul(&random_scalar(&mut rng))).unwrap();
        let xp = Point::from_proj(&g_mul(&x)).unwrap();
        let y = Point::from_proj(&(h.proj() * x)).unwrap();
        let p = DleqProof::prove(&ctx(), &x, &xp, &h, &y, &mut rng).unwrap();
        assert!(p.verify(&ctx(), &xp, &h, &y));
        let y2 = Point::from_proj(&(h.proj() * (x + Fr::one()))).unwrap();
        assert!(!p.verify(&ctx(), &xp, &h, &y2));
        // A valid-looking proof for a wrong Y cannot be made: proving with the wrong x fails too.
        let bad = DleqProof::prove(&ctx(), &(x + Fr::one()), &xp, &h, &y2, &mut rng).unwrap();
        assert!(!bad.verify(&ctx(), &xp, &h, &y2));
    }

    #[test]
    fn range_proofs_accept_true_values_and_reject_others() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let key = KeyTable::new(Point::from_proj(&g_mul(&random_scalar(&mut rng))).unwrap());
        for (lo, hi) in [(0u64, 1u64), (1, 1), (0, 3), (2, 5)] {
            for v in lo..=hi {
                let r = random_scalar(&mut rng);
                let (alpha, beta) = encrypt(&key, v, &r);
                let p = RangeProof::prove(&ctx(), &key, &alpha, &beta, lo, hi, v, &r, &mut rng).unwrap();
                assert!(
                    p.verify(&ctx(), &key.key, &alpha, &beta, lo, hi),
                    "v={v} in [{lo},{hi}]"
                );
                // Bound to the statement: other range, other ciphertext.
                assert!(!p.verify(&ctx(), &key.key, &beta, &alpha, lo, hi));
                if hi > lo {
                    assert!(!p.verify(&ctx(), &key.key, &alpha, &beta, lo + 1, hi + 1));
                }
            }
        }
        // A ciphertext of 2 cannot carry a valid 0/1 proof: prove a lie by pretending v = 1.
        let r = random_scalar(&mut rng);
        let (alpha, beta) = encrypt(&key, 2, &r);
        let lie = RangeProof::prove(&ctx(), &key, &alpha, &beta, 0, 1, 1, &r, &mut rng).unwrap();
        assert!(!lie.verify(&ctx(), &key.key, &alpha, &beta, 0, 1));
        assert_eq!(
            RangeProof::prove(&ctx(), &key, &alpha, &beta, 0, 1, 2, &r, &mut rng),
            Err(ProofError::ValueOutOfRange)
        );
    }
}

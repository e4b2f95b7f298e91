//! Verification equations and batch verification by multi-exponentiation (design 4.3).
//!
//! Every group check of a proof is written as one [`Equation`]: a sum of scalar multiples of bases that
//! must be the identity. An [`EquationSet`] is checked either exactly (each equation on its own,
//! deterministic, names the first failing check) or in a batch: each equation gets a random weight of
//! 128 bits from the OS generator, all are summed into one multi-exponentiation, and the batch passes only
//! if the sum is the identity. A false pass has probability at most 2^-128 per batch. Bases that several
//! equations share (g, the election key, a ciphertext's alpha and beta) are merged so each appears once in
//! the multi-exponentiation. Batches never run inside the replicated state machine.

use blsttc::group::ff::Field;
use blsttc::group::Group;
use blsttc::{Fr, G1Projective};
use rand::{CryptoRng, RngCore};

use crate::group::{g, g_mul, random_weight, FixedBase};

/// A base point in an equation.
#[derive(Clone, Debug)]
pub enum Base {
    /// The generator g.
    G,
    /// The set's key (the election key K, or whichever key the set was made for).
    Key,
    /// A point registered with [`EquationSet::share`], used by several equations.
    Shared(usize),
    /// A point used once (a proof commitment).
    Point(G1Projective),
}

/// `sum(s_i * B_i) == identity`.
#[derive(Clone, Debug, Default)]
pub struct Equation {
    /// The terms `(B_i, s_i)`.
    pub terms: Vec<(Base, Fr)>,
}

impl Equation {
    /// An empty equation.
    pub fn new() -> Self {
        Equation {
            terms: Vec::with_capacity(4),
        }
    }

    /// Adds `s * B`.
    pub fn term(mut self, base: Base, s: Fr) -> Self {
        self.terms.push((base, s));
        self
    }
}

/// A set of labelled equations over a common key and shared points.
#[derive(Clone, Debug)]
pub struct EquationSet<L> {
    key: G1Projective,
    shared: Vec<G1Projective>,
    equations: Vec<(L, Equation)>,
}

impl<L: Clone> EquationSet<L> {
    /// A set whose [`Base::Key`] is `key`.
    pub fn new(key: G1Projective) -> Self {
        EquationSet {
            key,
            shared: Vec::new(),
            equations: Vec::new(),
        }
    }

    /// Registers a point used by several equations; returns its [`Base::Shared`] index.
    pub fn share(&mut self, p: G1Projective) -> usize {
        self.shared.push(p);
        self.shared.len() - 1
    }

    /// Adds an equation under a label saying which check it is.
    pub fn push(&mut self, label: L, eq: Equation) {
        self.equations.push((label, eq));
    }

    /// Number of equations.
    pub fn len(&self) -> usize {
        self.equations.len()
    }

    /// Whether the set has no equation.
    pub fn is_empty(&self) -> bool {
        self.equations.is_empty()
    }

    /// The key this set was made for.
    pub fn key(&self) -> &G1Projective {
        &self.key
    }

    fn eval(&self, eq: &Equation, key_table: Option<&FixedBase>) -> G1Projective {
        let mut acc = G1Projective::identity();
        for (base, s) in &eq.terms {
            acc += match base {
                Base::G => g_mul(s),
                Base::Key => match key_table {
                    Some(t) => t.mul(s),
                    None => self.key * s,
                },
                Base::Shared(i) => self.shared[*i] * s,
                Base::Point(p) => p * s,
            };
        }
        acc
    }

    /// Checks every equation on its own, in order; returns the label of the first that fails.
    pub fn check_exact(&self, key_table: Option<&FixedBase>) -> Result<(), L> {
        for (label, eq) in &self.equations {
            if !bool::from(self.eval(eq, key_table).is_identity()) {
                return Err(label.clone());
            }
        }
        Ok(())
    }

    /// Checks all equations at once with random weights (see the module documentation).
    pub fn check_batch<R: RngCore + CryptoRng>(&self, rng: &mut R) -> bool {
        batch_check(std::slice::from_ref(self), rng)
    }

    /// Checks the batch first and, when it fails, every equation exactly to name the failure.
    pub fn check<R: RngCore + CryptoRng>(&self, key_table: Option<&FixedBase>, rng: &mut R) -> Result<(), L> {
        if self.check_batch(rng) {
            return Ok(());
        }
        // The exact checks are the ground truth; a failed batch only sends us here to name the failure.
        self.check_exact(key_table)
    }
}

/// Checks many sets at once: one multi-exponentiation over all their equations.
///
/// Sets whose keys are equal share one key base; sets with other keys contribute their key as a plain
/// point. Returns true only if every equation of every set holds (up to probability 2^-128).
pub fn batch_check<L, R: RngCore + CryptoRng>(sets: &[EquationSet<L>], rng: &mut R) -> bool {
    let Some(first) = sets.first() else { return true };
    let common_key = first.key;
    let mut g_acc = Fr::zero();
    let mut key_acc = Fr::zero();
    let mut points: Vec<G1Projective> = Vec::new();
    let mut scalars: Vec<Fr> = Vec::new();
    for set in sets {
        let same_key = set.key == common_key;
        let base_index = points.len();
        points.extend_from_slice(&set.shared);
        scalars.extend(std::iter::repeat(Fr::zero()).take(set.shared.len()));
        let own_key_index = if same_key {
            None
        } else {
            points.push(set.key);
            scalars.push(Fr::zero());
            Some(points.len() - 1)
        };
        for (_, eq) in &set.equations {
            let w = random_weight(rng);
            for (base, s) in &eq.terms {
                let ws = w * s;
                match base {
                    Base::G => g_acc += ws,
                    Base::Key => match own_key_index {
                        None => key_acc += ws,
                        Some(i) => scalars[i] += ws,
                    },
                    Base::Shared(i) => scalars[base_index + i] += ws,
                    Base::Point(p) => {
                        points.push(*p);
                        scalars.push(ws);
                    }
                }
            }
        }
    }
    points.push(g());
    scalars.push(g_acc);
    points.push(common_key);
    scalars.push(key_acc);
    bool::from(G1Projective::multi_exp(&points, &scalars).is_identity())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::random_scalar;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn exact_and_batch_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let x = random_scalar(&mut rng);
        let key = g() * x;
        let mut set: EquationSet<&str> = EquationSet::new(key);
        // x*G - 1*Key == 0
        set.push(
            "key",
            Equation::new().term(Base::G, x).term(Base::Key, -Fr::one()),
        );
        let p = set.share(g() * Fr::from(5u64));
        set.push(
            "five",
            Equation::new()
                .term(Base::Shared(p), Fr::one())
                .term(Base::G, -Fr::from(5u64)),
        );
        assert!(set.check_batch(&mut rng));
        assert_eq!(set.check_exact(None), Ok(()));
        let mut bad = set.clone();
        bad.push("wrong", Equation::new().term(Base::Point(g()), Fr::one()));
        assert!(!bad.check_batch(&mut rng));
        assert_eq!(bad.check_exact(None), Err("wrong"));
        assert_eq!(bad.check(None, &mut rng), Err("wrong"));
        assert!(batch_check(&[set.clone(), set.clone()], &mut rng));
        assert!(!batch_check(&[set, bad], &mut rng));
    }
}

//! Exponential ElGamal over G1 (design 4.3): `(alpha, beta) = (g^rho, g^v K^rho)`.
//!
//! Ciphertexts add homomorphically: the component-wise product encrypts the sum of the plaintexts.

use blsttc::group::Group;
use blsttc::{Fr, G1Projective};
use serde::{Deserialize, Serialize};

use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::group::{g, g_mul, DecodeError, Point};
use crate::hash::Transcript;
use crate::proofs::KeyTable;

/// An exponential ElGamal ciphertext with validated components.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ciphertext {
    /// `g^rho`.
    pub alpha: Point,
    /// `g^v K^rho`.
    pub beta: Point,
}

impl Ciphertext {
    /// Encrypts the small value `v` with nonce `rho` under the key of `key` (constant time in `rho`,
    /// and in `v` among the selection values 0 and 1).
    ///
    /// For `v` in {0, 1} (every ballot option) `g^v` is a constant-time choice between the identity and
    /// g, which saves a full fixed-base multiplication per option; larger values use the table.
    pub fn encrypt(key: &KeyTable, v: u64, rho: &Fr) -> Result<Self, DecodeError> {
        let g_v = if v <= 1 {
            G1Projective::conditional_select(&G1Projective::identity(), &g(), v.ct_eq(&1))
        } else {
            g_mul(&Fr::from(v))
        };
        Ok(Ciphertext {
            alpha: Point::from_proj(&g_mul(rho))?,
            beta: Point::from_proj(&(g_v + key.table.mul(rho)))?,
        })
    }

    /// Appends both components to a transcript.
    pub fn absorb(&self, t: Transcript) -> Transcript {
        t.point(self.alpha.affine()).point(self.beta.affine())
    }

    /// The 96 canonical bytes `alpha || beta`.
    pub fn to_bytes(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..48].copy_from_slice(&self.alpha.to_bytes());
        out[48..].copy_from_slice(&self.beta.to_bytes());
        out
    }
}

/// A running homomorphic sum `(prod alpha, prod beta)`, which may be the identity (no ballots yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accumulator {
    /// Product of alphas.
    pub alpha: G1Projective,
    /// Product of betas.
    pub beta: G1Projective,
}

impl Default for Accumulator {
    fn default() -> Self {
        Accumulator {
            alpha: G1Projective::identity(),
            beta: G1Projective::identity(),
        }
    }
}

impl Accumulator {
    /// Adds a ciphertext.
    pub fn add(&mut self, ct: &Ciphertext) {
        self.alpha += ct.alpha.proj();
        self.beta += ct.beta.proj();
    }

    /// Adds another accumulator.
    pub fn merge(&mut self, other: &Accumulator) {
        self.alpha += other.alpha;
        self.beta += other.beta;
    }

    /// The sum as a ciphertext; `Err(Identity)` when a component is the identity (e.g. no ballots).
    pub fn to_ciphertext(&self) -> Result<Ciphertext, DecodeError> {
        Ok(Ciphertext {
            alpha: Point::from_proj(&self.alpha)?,
            beta: Point::from_proj(&self.beta)?,
        })
    }
}

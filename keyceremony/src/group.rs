//! Group helpers over BLS12-381 G1 (design section 4).
//!
//! Points travel compressed (48 bytes) and are decoded with the subgroup check; the identity is refused;
//! scalars travel as 32 big-endian bytes and a non-canonical scalar (>= r) is refused. In JSON both are
//! lowercase hex strings. Anything that does not decode is a [`DecodeError`], never a panic.

use std::fmt;

use blsttc::group::ff::{Field, PrimeField};
use blsttc::group::prime::PrimeCurveAffine;
use blsttc::group::{Curve, Group};
use blsttc::{Fr, G1Affine, G1Projective};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Size of a compressed G1 point.
pub const POINT_SIZE: usize = 48;
/// Size of an encoded scalar.
pub const SCALAR_SIZE: usize = 32;

/// Why bytes did not decode into a group element or scalar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The encoding has the wrong length.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    WrongLength {
        /// Expected length in bytes.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// Not valid hexadecimal.
    #[error("not valid hexadecimal")]
    InvalidHex,
    /// The bytes are not the compressed encoding of a point on the curve.
    #[error("not a point on the curve")]
    NotOnCurve,
    /// The point is on the curve but not in the prime-order subgroup.
    #[error("point is not in the prime-order subgroup")]
    NotInSubgroup,
    /// The identity point is never a valid key, commitment or ciphertext component.
    #[error("the identity point is not allowed here")]
    Identity,
    /// The scalar encoding is not below the group order r.
    #[error("scalar is not canonical (>= group order)")]
    NonCanonicalScalar,
}

/// A validated G1 element: on the curve, in the subgroup, not the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Point(G1Affine);

impl Point {
    /// Wraps a computed point. Returns an error for the identity.
    pub fn new(p: G1Affine) -> Result<Self, DecodeError> {
        if bool::from(p.is_identity()) {
            return Err(DecodeError::Identity);
        }
        Ok(Point(p))
    }

    /// Wraps a computed projective point. Returns an error for the identity.
    pub fn from_proj(p: &G1Projective) -> Result<Self, DecodeError> {
        Point::new(p.to_affine())
    }

    /// Decodes 48 compressed bytes with the on-curve, subgroup and identity checks.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let arr: &[u8; POINT_SIZE] = bytes.try_into().map_err(|_| DecodeError::WrongLength {
            expected: POINT_SIZE,
            got: bytes.len(),
        })?;
        let unchecked = Option::<G1Affine>::from(G1Affine::from_compressed_unchecked(arr))
            .ok_or(DecodeError::NotOnCurve)?;
        if !bool::from(unchecked.is_on_curve()) {
            return Err(DecodeError::NotOnCurve);
        }
        if !bool::from(unchecked.is_torsion_free()) {
            return Err(DecodeError::NotInSubgroup);
        }
        Point::new(unchecked)
    }

    /// Decodes a hex string of 48 compressed bytes.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        let bytes = hex::decode(s).map_err(|_| DecodeError::InvalidHex)?;
        Point::from_bytes(&bytes)
    }

    /// The 48-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; POINT_SIZE] {
        self.0.to_compressed()
    }

    /// Lowercase hex of the compressed encoding.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// The affine point.
    pub fn affine(&self) -> &G1Affine {
        &self.0
    }

    /// The point in projective form, for arithmetic.
    pub fn proj(&self) -> G1Projective {
        G1Projective::from(self.0)
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point({}…)", &self.to_hex()[..16])
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Point::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A scalar of the group's prime field, encoded canonically.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Scalar(pub Fr);

impl Scalar {
    /// Decodes 32 big-endian bytes, refusing values >= r.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let arr: &[u8; SCALAR_SIZE] = bytes.try_into().map_err(|_| DecodeError::WrongLength {
            expected: SCALAR_SIZE,
            got: bytes.len(),
        })?;
        Option::<Fr>::from(Fr::from_bytes_be(arr))
            .map(Scalar)
            .ok_or(DecodeError::NonCanonicalScalar)
    }

    /// Decodes a hex string of 32 big-endian bytes.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        let bytes = hex::decode(s).map_err(|_| DecodeError::InvalidHex)?;
        Scalar::from_bytes(&bytes)
    }

    /// 32 big-endian bytes.
    pub fn to_bytes(&self) -> [u8; SCALAR_SIZE] {
        self.0.to_bytes_be()
    }

    /// Lowercase hex of the big-endian encoding.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Scalars on the wire are public (challenges, responses); secrets never use this type's Debug.
        write!(f, "Scalar({}…)", &self.to_hex()[..16])
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Scalar::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl From<Fr> for Scalar {
    fn from(f: Fr) -> Self {
        Scalar(f)
    }
}

/// The generator g of G1.
pub fn g() -> G1Projective {
    G1Projective::generator()
}

/// `g^v` for a small non-negative integer (a vote count or selection value).
pub fn g_pow_u64(v: u64) -> G1Projective {
    g() * Fr::from(v)
}

/// A uniformly random scalar from a cryptographic generator.
pub fn random_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Fr {
    Fr::random(rng)
}

/// A random non-zero scalar of at least 128 bits of entropy, for batch-verification weights.
pub fn random_weight<R: RngCore + CryptoRng>(rng: &mut R) -> Fr {
    loop {
        let lo = rng.next_u64();
        let hi = rng.next_u64();
        if lo | hi != 0 {
            return Fr::from_u64s_le(&[lo, hi, 0, 0]).expect("a 128-bit value is below r");
        }
    }
}

/// The evaluation point of custodian `j` (0-based position in the custodian list): `x_j = j + 1`.
///
/// This is blsttc's convention (`secret_key_share(j)` and `public_key_share(j)` evaluate at `j + 1`), and
/// the only way this crate maps custodians to evaluation points, so `x = 0` (the secret) is never used.
pub fn x_of(j: usize) -> Fr {
    // Added in the field, not in u64: `j + 1` in u64 overflows for j = u64::MAX (a panic in debug builds
    // and, in release builds, a wrap to x = 0, the secret). Indices can come from untrusted input.
    Fr::from(j as u64) + Fr::one()
}

/// Lagrange coefficients at 0 for the custodians with the given 0-based indices.
///
/// Returns `None` when an index repeats (the points would not be distinct).
pub fn lagrange_at_zero(indices: &[usize]) -> Option<Vec<Fr>> {
    let xs: Vec<Fr> = indices.iter().map(|&j| x_of(j)).collect();
    let mut out = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut num = Fr::one();
        let mut den = Fr::one();
        for (k, xk) in xs.iter().enumerate() {
            if i == k {
                continue;
            }
            if xi == xk {
                return None;
            }
            num *= xk;
            den *= *xk - xi;
        }
        let inv = Option::<Fr>::from(den.invert())?;
        out.push(num * inv);
    }
    Some(out)
}

/// Fixed-base precomputation for one base (g or an election key), with constant-time lookups.
///
/// The scalar is cut into 64 windows of 4 bits; window i holds `d * 16^i * B` for d in 0..16, so a
/// multiplication is 64 mixed additions. The entry of each window is selected by scanning all 16 entries
/// with a constant-time conditional move, so the memory access pattern does not depend on the scalar (the
/// scalar may be a secret nonce or share).
pub struct FixedBase {
    windows: Vec<[G1Affine; 16]>,
}

impl FixedBase {
    /// Number of 4-bit windows covering a 256-bit scalar.
    const WINDOWS: usize = 64;

    /// Precomputes the tables for `base` (about 100 KB, a few milliseconds).
    pub fn new(base: &G1Projective) -> Self {
        let mut windows = Vec::with_capacity(Self::WINDOWS);
        let mut b = *base;
        for _ in 0..Self::WINDOWS {
            let mut row = [G1Projective::identity(); 16];
            for d in 1..16 {
                row[d] = row[d - 1] + b;
            }
            let mut affine = [G1Affine::identity(); 16];
            G1Projective::batch_normalize(&row, &mut affine);
            windows.push(affine);
            // Next window's base: 16 * b.
            for _ in 0..4 {
                b = b.double();
            }
        }
        FixedBase { windows }
    }

    /// `k * B` in constant time with respect to `k`.
    pub fn mul(&self, k: &Fr) -> G1Projective {
        let bytes = k.to_bytes_le();
        let mut acc = G1Projective::identity();
        for (i, row) in self.windows.iter().enumerate() {
            let byte = bytes[i / 2];
            let digit = if i % 2 == 0 { byte & 0x0f } else { byte >> 4 };
            let mut sel = G1Affine::identity();
            for (d, entry) in row.iter().enumerate() {
                sel.conditional_assign(entry, (d as u8).ct_eq(&digit));
            }
            acc += sel;
        }
        acc
    }
}

/// Shared fixed-base table for the generator g, built on first use.
pub fn g_table() -> &'static FixedBase {
    static TABLE: std::sync::OnceLock<FixedBase> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| FixedBase::new(&g()))
}

/// `k * g` through the shared fixed-base table.
pub fn g_mul(k: &Fr) -> G1Projective {
    g_table().mul(k)
}

/// Whether a projective point is the identity.
pub fn is_identity(p: &G1Projective) -> bool {
    bool::from(p.is_identity())
}

/// Reads a canonical scalar's field value (for code that wants `Fr` directly).
pub fn fr_from_repr_be(bytes: &[u8; 32]) -> Option<Fr> {
    Option::<Fr>::from(Fr::from_bytes_be(bytes))
}

/// The scalar `-1` times `k` (notational helper for equation building).
pub fn neg(k: &Fr) -> Fr {
    -*k
}

/// Checks at compile time that the field type is the one we expect (256-bit repr).
const _: () = {
    let _ = <Fr as PrimeField>::NUM_BITS;
};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn point_roundtrip_and_identity_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let p = Point::from_proj(&(g() * random_scalar(&mut rng))).unwrap();
        assert_eq!(Point::from_bytes(&p.to_bytes()).unwrap(), p);
        assert_eq!(Point::from_hex(&p.to_hex()).unwrap(), p);
        let id = G1Affine::identity().to_compressed();
        assert_eq!(Point::from_bytes(&id), Err(DecodeError::Identity));
        assert_eq!(
            Point::from_bytes(&p.to_bytes()[..47]),
            Err(DecodeError::WrongLength {
                expected: 48,
                got: 47
            })
        );
        assert!(Point::from_bytes(&[0u8; 49]).is_err());
    }

    #[test]
    fn non_canonical_scalar_refused() {
        let r_be = {
            let mut le = Fr::char();
            le.as_mut().reverse();
            le
        };
        assert_eq!(
            Scalar::from_bytes(r_be.as_ref()),
            Err(DecodeError::NonCanonicalScalar)
        );
        assert_eq!(
            Scalar::from_bytes(&[0xff; 32]),
            Err(DecodeError::NonCanonicalScalar)
        );
        let one = Scalar(Fr::one());
        assert_eq!(Scalar::from_bytes(&one.to_bytes()).unwrap(), one);
    }

    #[test]
    fn fixed_base_matches_plain_multiplication() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let base = g() * random_scalar(&mut rng);
        let table = FixedBase::new(&base);
        for k in [
            Fr::zero(),
            Fr::one(),
            -Fr::one(),
            Fr::from(15u64),
            Fr::from(16u64),
        ] {
            assert_eq!(table.mul(&k), base * k);
        }
        for _ in 0..20 {
            let k = random_scalar(&mut rng);
            assert_eq!(table.mul(&k), base * k);
            assert_eq!(g_mul(&k), g() * k);
        }
    }

    #[test]
    fn lagrange_interpolates_at_zero() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let poly = blsttc::poly::Poly::random(2, &mut rng);
        let secret = poly.evaluate(Fr::zero());
        for subset in [[0usize, 1, 2], [1, 3, 4], [0, 2, 4]] {
            let l = lagrange_at_zero(&subset).unwrap();
            let s: Fr = subset
                .iter()
                .zip(&l)
                .map(|(&j, lj)| poly.evaluate(x_of(j)) * lj)
                .sum();
            assert_eq!(s, secret);
        }
        assert!(lagrange_at_zero(&[1, 1]).is_none());
    }

    #[test]
    fn x_of_never_wraps_to_zero() {
        assert_ne!(x_of(usize::MAX), Fr::zero());
        assert_eq!(x_of(usize::MAX), Fr::from(u64::MAX) + Fr::one());
        assert!(lagrange_at_zero(&[usize::MAX, 0]).is_some());
    }

    #[test]
    fn x_of_matches_blsttc_share_convention() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let sks = blsttc::SecretKeySet::random(2, &mut rng);
        let pks = sks.public_keys();
        for j in 0..5usize {
            let expect = pks.public_key_share(j).to_bytes();
            let got = (g() * sks.poly().evaluate(x_of(j))).to_affine().to_compressed();
            assert_eq!(expect, got);
        }
    }
}

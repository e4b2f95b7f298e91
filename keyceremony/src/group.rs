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

/// Bits per signed digit of a [`FixedBase`] multiplication.
const FB_WINDOW_BITS: usize = 6;
/// Entries per window: the multiples 1..=2^(bits-1).
const FB_ROW: usize = 1 << (FB_WINDOW_BITS - 1);
/// Windows: enough to cover 256 bits, so the top window of a scalar below r < 2^255 never carries out.
const FB_WINDOWS: usize = 256usize.div_ceil(FB_WINDOW_BITS);

/// Fixed-base precomputation for one base (g or an election key), with constant-time lookups.
///
/// The scalar is recoded into 43 signed digits of 6 bits, `d_i` in `[-32, 31]`; window i holds
/// `d * 64^i * B` for d in 1..=32, so a multiplication is 43 mixed additions (a third fewer than unsigned
/// 4-bit windows). The entry of each window is selected by scanning all its entries with a constant-time
/// conditional move, and negated by a constant-time conditional move, so neither the memory access
/// pattern nor the branches depend on the scalar (which may be a secret nonce or share).
pub struct FixedBase {
    windows: Vec<[G1Affine; FB_ROW]>,
}

impl FixedBase {
    /// Precomputes the tables for `base` (about 130 KB, a few milliseconds).
    pub fn new(base: &G1Projective) -> Self {
        let mut windows = Vec::with_capacity(FB_WINDOWS);
        let mut b = *base;
        for _ in 0..FB_WINDOWS {
            // row[j] = (j + 1) * b.
            let mut row = [b; FB_ROW];
            for d in 1..FB_ROW {
                row[d] = row[d - 1] + b;
            }
            let mut affine = [G1Affine::identity(); FB_ROW];
            G1Projective::batch_normalize(&row, &mut affine);
            windows.push(affine);
            // Next window's base: 2^bits * b.
            for _ in 0..FB_WINDOW_BITS {
                b = b.double();
            }
        }
        FixedBase { windows }
    }

    /// The signed digits of `k` in radix 2^bits, least significant first, computed without branches.
    fn signed_digits(k: &Fr) -> [i8; FB_WINDOWS] {
        let mut bytes = [0u8; 34];
        bytes[..32].copy_from_slice(&k.to_bytes_le());
        let mut digits = [0i8; FB_WINDOWS];
        let mut carry = 0u32;
        let full = 1u32 << FB_WINDOW_BITS;
        for (i, digit) in digits.iter_mut().enumerate() {
            let bit = i * FB_WINDOW_BITS;
            let pair = u32::from(bytes[bit / 8]) | (u32::from(bytes[bit / 8 + 1]) << 8);
            let d = ((pair >> (bit % 8)) & (full - 1)) + carry; // 0..=full
            carry = (d + full / 2) >> FB_WINDOW_BITS; // 1 when d >= full / 2
            *digit = (d as i32 - (carry * full) as i32) as i8; // -full/2..full/2
        }
        digits
    }

    /// `k * B` in constant time with respect to `k`.
    pub fn mul(&self, k: &Fr) -> G1Projective {
        let digits = Self::signed_digits(k);
        let mut acc = G1Projective::identity();
        for (row, &d) in self.windows.iter().zip(digits.iter()) {
            let mask = d >> 7; // all ones when negative
            let abs = ((d ^ mask) - mask) as u8; // 0..=FB_ROW
            let negative = subtle::Choice::from((mask & 1) as u8);
            let mut sel = G1Affine::identity();
            for (j, entry) in row.iter().enumerate() {
                sel.conditional_assign(entry, (j as u8 + 1).ct_eq(&abs));
            }
            // A negative digit has abs >= 1, so `sel` is never the identity when negated.
            let negated = -sel;
            sel.conditional_assign(&negated, negative);
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
        let mut edge = vec![Fr::zero(), Fr::one(), -Fr::one(), -Fr::from(16u64)];
        // Digit boundaries: 15, 16, 17, 31, 32, 33 times powers of 32, and the same negated.
        for shift in [0u32, 5, 6, 60, 250, 252] {
            for d in [15u64, 16, 17, 31, 32, 33, 63, 64, 65] {
                let v = Fr::from(d) * Fr::from(2u64).pow_vartime([shift as u64]);
                edge.push(v);
                edge.push(-v);
            }
        }
        for k in edge {
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

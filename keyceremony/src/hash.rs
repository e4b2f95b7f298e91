//! Domain-separated hashing (design 4.1).
//!
//! `H(tag, parts...)` is SHA-256 over the tag and length-prefixed parts; `H_s(...)` is SHA-512 of the same
//! input reduced modulo r. Every tag starts with `urna/v1/`. Both hash the exact same byte string, so a
//! [`Transcript`] is built once and can then be finished either way.

use blsttc::group::ff::Field;
use blsttc::group::Curve;
use blsttc::{Fr, G1Affine, G1Projective};
use sha2::{Digest, Sha256, Sha512};

/// A 32-byte SHA-256 digest.
pub type Hash32 = [u8; 32];

/// The prefix every Urna hash tag must carry.
pub const TAG_PREFIX: &str = "urna/v1/";

/// An append-only, length-prefixed encoding of a tag and parts, finished as `H` or `H_s`.
///
/// Every part is written as an 8-byte big-endian length followed by its bytes, so no two different
/// sequences of parts encode to the same byte string.
#[derive(Clone, Debug)]
pub struct Transcript {
    buf: Vec<u8>,
}

impl Transcript {
    /// Starts a transcript under a domain tag. Panics only on a programming error: a tag that does not
    /// start with `urna/v1/` (tags are compile-time constants, never input).
    pub fn new(tag: &str) -> Self {
        assert!(
            tag.starts_with(TAG_PREFIX),
            "hash tag {tag:?} must start with {TAG_PREFIX}"
        );
        let mut t = Transcript {
            buf: Vec::with_capacity(512),
        };
        t.push(tag.as_bytes());
        t
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// Appends raw bytes as one part.
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        self.push(bytes);
        self
    }

    /// Appends raw bytes as one part (in place).
    pub fn append(&mut self, bytes: &[u8]) {
        self.push(bytes);
    }

    /// Appends a UTF-8 string as one part.
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    /// Appends an unsigned integer as 8 big-endian bytes.
    pub fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a signed integer as 8 big-endian bytes (two's complement).
    pub fn i64(self, v: i64) -> Self {
        self.bytes(&v.to_be_bytes())
    }

    /// Appends a group element in its 48-byte compressed form.
    pub fn point(self, p: &G1Affine) -> Self {
        self.bytes(&p.to_compressed())
    }

    /// Appends a group element (projective) in its 48-byte compressed form.
    pub fn point_proj(self, p: &G1Projective) -> Self {
        self.point(&p.to_affine())
    }

    /// Appends a scalar as 32 big-endian bytes.
    pub fn scalar(self, s: &Fr) -> Self {
        self.bytes(&s.to_bytes_be())
    }

    /// Appends a 32-byte hash.
    pub fn hash(self, h: &Hash32) -> Self {
        self.bytes(h)
    }

    /// The encoded bytes (used as a canonical encoding in its own right).
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Finishes as `H`: SHA-256 of the encoding.
    pub fn digest(&self) -> Hash32 {
        Sha256::digest(&self.buf).into()
    }

    /// Finishes as `H_s`: SHA-512 of the encoding, reduced modulo r (wide reduction, negligible bias).
    pub fn challenge(&self) -> Fr {
        let wide: [u8; 64] = Sha512::digest(&self.buf).into();
        scalar_from_wide(&wide)
    }
}

/// Reduces 64 little-endian-agnostic bytes (read big-endian) modulo r.
///
/// The 512-bit value is split into four 128-bit limbs, each below r, and recombined with Horner's rule
/// in the field: `((l3 * 2^128 + l2) * 2^128 + l1) * 2^128 + l0`.
pub fn scalar_from_wide(wide: &[u8; 64]) -> Fr {
    let two128 = {
        // 2^128 = (2^64)^2, computed in the field.
        let two64 = Fr::from(u64::MAX) + Fr::one();
        two64 * two64
    };
    let mut acc = Fr::zero();
    for chunk in wide.chunks_exact(16) {
        let hi = u64::from_be_bytes(chunk[..8].try_into().expect("8 bytes"));
        let lo = u64::from_be_bytes(chunk[8..].try_into().expect("8 bytes"));
        let limb = Fr::from_u64s_le(&[lo, hi, 0, 0]).expect("a 128-bit value is below r");
        acc = acc * two128 + limb;
    }
    acc
}

/// Convenience: `H(tag, parts...)` over byte-slice parts.
pub fn h(tag: &str, parts: &[&[u8]]) -> Hash32 {
    let mut t = Transcript::new(tag);
    for p in parts {
        t.append(p);
    }
    t.digest()
}

/// Convenience: `H_s(tag, parts...)` over byte-slice parts.
pub fn h_s(tag: &str, parts: &[&[u8]]) -> Fr {
    let mut t = Transcript::new(tag);
    for p in parts {
        t.append(p);
    }
    t.challenge()
}

#[cfg(test)]
mod tests {
    use super::*;
    use blsttc::group::ff::PrimeField;

    #[test]
    fn length_prefix_separates_parts() {
        assert_ne!(
            h("urna/v1/test", &[b"ab", b"c"]),
            h("urna/v1/test", &[b"a", b"bc"])
        );
        assert_ne!(h("urna/v1/test", &[b"abc"]), h("urna/v1/test2", &[b"abc"]));
    }

    #[test]
    fn wide_reduction_matches_modular_arithmetic() {
        // 2^512 - 1 mod r, computed two ways.
        let all_ones = [0xffu8; 64];
        let reduced = scalar_from_wide(&all_ones);
        let mut expect = Fr::one();
        let two = Fr::from(2u64);
        for _ in 0..512 {
            expect *= two;
        }
        expect -= Fr::one();
        assert_eq!(reduced, expect);
        // A small value reduces to itself.
        let mut small = [0u8; 64];
        small[63] = 7;
        assert_eq!(scalar_from_wide(&small), Fr::from(7u64));
        assert!(bool::from(Fr::from_repr(reduced.to_repr()).is_some()));
    }

    #[test]
    #[should_panic]
    fn tags_must_be_versioned() {
        let _ = Transcript::new("other/tag");
    }
}

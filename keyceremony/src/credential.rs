//! Voter credentials (design 4.4): Ed25519 keys derived from printable private codes.
//!
//! The credential authority prints a [`CredentialCode`] per voter (160 random bits and a 16-bit checksum,
//! base32 in dash-separated groups) and publishes only the [`PublicCredential`]s, which form the roll.
//! The client derives the Ed25519 signing key from the code and signs the ballot hash with it; nodes
//! verify with `verify_strict` and refuse weak (small-order) public keys.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hash::{h, Hash32, Transcript};

/// Random bytes in a credential code (160 bits).
pub const CODE_RANDOM_BYTES: usize = 20;
/// Checksum bytes appended to the random bytes.
pub const CODE_CHECKSUM_BYTES: usize = 2;
/// Base32 characters of a code without dashes: 22 bytes = 176 bits, 36 characters of 5 bits.
pub const CODE_CHARS: usize = 36;
/// Characters per dash-separated group in the printed form.
pub const CODE_GROUP: usize = 4;
/// Size of an encoded public credential.
pub const PUBLIC_CREDENTIAL_SIZE: usize = 32;
/// Size of an encoded signature.
pub const SIGNATURE_SIZE: usize = 64;

/// Why a credential code or public credential did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The code has the wrong number of base32 characters (dashes and spaces not counted).
    #[error("credential code must have {expected} characters, got {got}")]
    BadLength {
        /// Characters expected.
        expected: usize,
        /// Characters found.
        got: usize,
    },
    /// A character outside the base32 alphabet (A-Z, 2-7), or non-zero padding bits in the last one.
    #[error("invalid character {ch:?} at position {position} of the credential code")]
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position among the significant characters (0-based).
        position: usize,
    },
    /// The checksum does not match: a typo in the code.
    #[error("credential code checksum does not match (typo?)")]
    BadChecksum,
    /// Not valid hexadecimal.
    #[error("not valid hexadecimal")]
    InvalidHex,
    /// Wrong number of bytes.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    WrongLength {
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// Not a valid Ed25519 point encoding.
    #[error("not a valid Ed25519 public key")]
    InvalidKey,
    /// A small-order public key, for which signatures prove nothing.
    #[error("weak (small-order) Ed25519 public key refused")]
    WeakKey,
}

fn checksum(random: &[u8; CODE_RANDOM_BYTES]) -> [u8; CODE_CHECKSUM_BYTES] {
    let d = h("urna/v1/credential-code", &[random]);
    [d[0], d[1]]
}

/// A voter's private credential code. Secret: zeroized on drop and redacted in Debug output.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CredentialCode {
    random: [u8; CODE_RANDOM_BYTES],
}

impl PartialEq for CredentialCode {
    fn eq(&self, other: &Self) -> bool {
        self.random.ct_eq(&other.random).into()
    }
}

impl Eq for CredentialCode {}

impl CredentialCode {
    /// A fresh code from a cryptographic generator.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut random = [0u8; CODE_RANDOM_BYTES];
        rng.fill_bytes(&mut random);
        CredentialCode { random }
    }

    /// Wraps 160 given random bits (for tests and known-answer vectors).
    pub fn from_random_bytes(random: [u8; CODE_RANDOM_BYTES]) -> Self {
        CredentialCode { random }
    }

    /// The printable form: base32 (RFC 4648, no padding) of the random bits and checksum, in groups of
    /// four separated by dashes.
    pub fn to_printable(&self) -> String {
        let mut bytes = [0u8; CODE_RANDOM_BYTES + CODE_CHECKSUM_BYTES];
        bytes[..CODE_RANDOM_BYTES].copy_from_slice(&self.random);
        bytes[CODE_RANDOM_BYTES..].copy_from_slice(&checksum(&self.random));
        let mut plain = BASE32_NOPAD.encode(&bytes);
        bytes.zeroize();
        let out = plain
            .as_bytes()
            .chunks(CODE_GROUP)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("-");
        plain.zeroize();
        out
    }

    /// Parses a printed code: case-insensitive, dashes and whitespace ignored, checksum checked.
    pub fn parse(s: &str) -> Result<Self, CredentialError> {
        let mut chars: Vec<char> = s
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let result = Self::parse_chars(&chars);
        chars.zeroize();
        result
    }

    fn parse_chars(chars: &[char]) -> Result<Self, CredentialError> {
        if chars.len() != CODE_CHARS {
            return Err(CredentialError::BadLength {
                expected: CODE_CHARS,
                got: chars.len(),
            });
        }
        if let Some((position, &ch)) = chars
            .iter()
            .enumerate()
            .find(|(_, c)| !matches!(c, 'A'..='Z' | '2'..='7'))
        {
            return Err(CredentialError::BadCharacter { ch, position });
        }
        let mut ascii: String = chars.iter().collect();
        let decoded = BASE32_NOPAD.decode(ascii.as_bytes());
        ascii.zeroize();
        let mut bytes = decoded.map_err(|e| CredentialError::BadCharacter {
            ch: chars.get(e.position).copied().unwrap_or('?'),
            position: e.position,
        })?;
        let result = if bytes.len() != CODE_RANDOM_BYTES + CODE_CHECKSUM_BYTES {
            Err(CredentialError::BadLength {
                expected: CODE_CHARS,
                got: chars.len(),
            })
        } else {
            let mut random = [0u8; CODE_RANDOM_BYTES];
            random.copy_from_slice(&bytes[..CODE_RANDOM_BYTES]);
            let ok = checksum(&random) == bytes[CODE_RANDOM_BYTES..];
            let code = CredentialCode { random };
            random.zeroize();
            if ok {
                Ok(code)
            } else {
                Err(CredentialError::BadChecksum)
            }
        };
        bytes.zeroize();
        result
    }

    /// The Ed25519 signing key: seed = `H("urna/v1/credential-key", the 160 random bits)`.
    pub fn signing_key(&self) -> CredentialSigningKey {
        let mut seed = h("urna/v1/credential-key", &[&self.random]);
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        CredentialSigningKey(key)
    }

    /// The public credential that goes on the roll.
    pub fn public(&self) -> PublicCredential {
        self.signing_key().public()
    }
}

impl fmt::Debug for CredentialCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialCode(<redacted>)")
    }
}

impl std::str::FromStr for CredentialCode {
    type Err = CredentialError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CredentialCode::parse(s)
    }
}

/// The Ed25519 signing key derived from a code (zeroized on drop by ed25519-dalek; redacted in Debug).
#[derive(Clone)]
pub struct CredentialSigningKey(SigningKey);

impl CredentialSigningKey {
    /// The matching public credential.
    pub fn public(&self) -> PublicCredential {
        PublicCredential(self.0.verifying_key())
    }

    /// Signs a 32-byte hash (the ballot hash H_b).
    pub fn sign(&self, msg: &Hash32) -> CredentialSignature {
        CredentialSignature(self.0.sign(msg))
    }
}

impl fmt::Debug for CredentialSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CredentialSigningKey(<redacted>)")
    }
}

impl From<&CredentialCode> for CredentialSigningKey {
    fn from(code: &CredentialCode) -> Self {
        code.signing_key()
    }
}

/// A voter's public credential: an Ed25519 verifying key that is not of small order. Hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicCredential(VerifyingKey);

impl PublicCredential {
    /// Decodes 32 bytes, refusing invalid encodings and weak keys.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CredentialError> {
        let arr: &[u8; PUBLIC_CREDENTIAL_SIZE] =
            bytes.try_into().map_err(|_| CredentialError::WrongLength {
                expected: PUBLIC_CREDENTIAL_SIZE,
                got: bytes.len(),
            })?;
        let vk = VerifyingKey::from_bytes(arr).map_err(|_| CredentialError::InvalidKey)?;
        if vk.is_weak() {
            return Err(CredentialError::WeakKey);
        }
        Ok(PublicCredential(vk))
    }

    /// Decodes 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, CredentialError> {
        let bytes = hex::decode(s).map_err(|_| CredentialError::InvalidHex)?;
        PublicCredential::from_bytes(&bytes)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_CREDENTIAL_SIZE] {
        self.0.to_bytes()
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Checks a signature on a 32-byte hash with `verify_strict` (no malleable or small-order cases).
    pub fn verify(&self, msg: &Hash32, sig: &CredentialSignature) -> bool {
        self.0.verify_strict(msg, &sig.0).is_ok()
    }

    /// The underlying ed25519-dalek key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicCredential({})", self.to_hex())
    }
}

impl Serialize for PublicCredential {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicCredential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PublicCredential::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature by a credential. Hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CredentialSignature(pub Signature);

impl CredentialSignature {
    /// Decodes 64 bytes (range checks on `s` happen at verification, in `verify_strict`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CredentialError> {
        let arr: &[u8; SIGNATURE_SIZE] = bytes.try_into().map_err(|_| CredentialError::WrongLength {
            expected: SIGNATURE_SIZE,
            got: bytes.len(),
        })?;
        Ok(CredentialSignature(Signature::from_bytes(arr)))
    }

    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_SIZE] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for CredentialSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialSignature({}…)", &hex::encode(self.to_bytes())[..16])
    }
}

impl Serialize for CredentialSignature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for CredentialSignature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes =
            hex::decode(s.as_ref()).map_err(|_| serde::de::Error::custom(CredentialError::InvalidHex))?;
        CredentialSignature::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Makes `count` fresh credentials: the private codes (for distribution only) and the public roll entries.
pub fn generate<R: RngCore + CryptoRng>(
    count: usize,
    rng: &mut R,
) -> Vec<(CredentialCode, PublicCredential)> {
    (0..count)
        .map(|_| {
            let code = CredentialCode::random(rng);
            let public = code.public();
            (code, public)
        })
        .collect()
}

/// The roll hash for Q': `H("urna/v1/roll", count, each public credential in roll order)`.
pub fn roll_hash(roll: &[PublicCredential]) -> Hash32 {
    let mut t = Transcript::new("urna/v1/roll").u64(roll.len() as u64);
    for c in roll {
        t.append(&c.to_bytes());
    }
    t.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn code_roundtrip_case_and_separators() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..20 {
            let code = CredentialCode::random(&mut rng);
            let printed = code.to_printable();
            assert_eq!(printed.len(), CODE_CHARS + CODE_CHARS / CODE_GROUP - 1);
            assert_eq!(CredentialCode::parse(&printed).unwrap(), code);
            let sloppy = printed.to_lowercase().replace('-', " ");
            assert_eq!(CredentialCode::parse(&sloppy).unwrap(), code);
            assert_eq!(CredentialCode::parse(&printed.replace('-', "")).unwrap(), code);
            assert_eq!(code.public(), CredentialCode::parse(&printed).unwrap().public());
        }
    }

    #[test]
    fn code_errors_are_specific() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let printed = CredentialCode::random(&mut rng).to_printable();
        let plain: String = printed.chars().filter(|c| *c != '-').collect();
        assert_eq!(
            CredentialCode::parse(&plain[1..]),
            Err(CredentialError::BadLength {
                expected: CODE_CHARS,
                got: CODE_CHARS - 1
            })
        );
        let mut bad_char = plain.clone();
        bad_char.replace_range(3..4, "1");
        assert_eq!(
            CredentialCode::parse(&bad_char),
            Err(CredentialError::BadCharacter { ch: '1', position: 3 })
        );
        // One changed character: the checksum catches it.
        let mut typo = plain.clone().into_bytes();
        typo[5] = if typo[5] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(CredentialCode::parse(&typo), Err(CredentialError::BadChecksum));
        // Non-zero trailing bits in the last character are refused, not silently dropped.
        let mut tail = plain.clone().into_bytes();
        let last = tail[CODE_CHARS - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let idx = alphabet.iter().position(|&c| c == last).unwrap();
        tail[CODE_CHARS - 1] = alphabet[idx | 1];
        assert!(matches!(
            CredentialCode::parse(&String::from_utf8(tail).unwrap()),
            Err(CredentialError::BadCharacter { position: 35, .. })
        ));
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let code = CredentialCode::random(&mut rng);
        let printed = code.to_printable();
        let dbg = format!("{code:?} {:?}", code.signing_key());
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&printed));
    }

    #[test]
    fn public_credentials_roundtrip_and_weak_keys_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let creds = generate(3, &mut rng);
        for (code, public) in &creds {
            let json = serde_json::to_string(public).unwrap();
            assert_eq!(serde_json::from_str::<PublicCredential>(&json).unwrap(), *public);
            let sig = code.signing_key().sign(&[7u8; 32]);
            assert!(public.verify(&[7u8; 32], &sig));
            assert!(!public.verify(&[8u8; 32], &sig));
        }
        // The identity (a small-order point) is refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicCredential::from_bytes(&identity),
            Err(CredentialError::WeakKey)
        );
        assert!(matches!(
            PublicCredential::from_bytes(&[0u8; 31]),
            Err(CredentialError::WrongLength { .. })
        ));
        let roll: Vec<_> = creds.iter().map(|(_, p)| *p).collect();
        let mut reversed = roll.clone();
        reversed.reverse();
        assert_ne!(roll_hash(&roll), roll_hash(&reversed));
    }
}

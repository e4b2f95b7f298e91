//! Election parameters and the base hashes Q and Q' that bind every proof to one election (design 4.1).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::group::{DecodeError, Point};
use crate::hash::{Hash32, Transcript};
use crate::manifest::Manifest;

/// A custodian's long-term identity key: a blsttc (BLS12-381 G1) public key, hex on the wire.
///
/// Decoding refuses the identity and points outside the subgroup, like every other point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey(pub blsttc::PublicKey);

impl IdentityKey {
    /// Decodes 48 compressed bytes with every point check.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let p = Point::from_bytes(bytes)?;
        blsttc::PublicKey::from_bytes(p.to_bytes())
            .map(IdentityKey)
            .map_err(|_| DecodeError::NotOnCurve)
    }

    /// The 48-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.to_bytes()
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityKey({}…)", &self.to_hex()[..16])
    }
}

impl Serialize for IdentityKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = hex::decode(s.as_ref()).map_err(|_| serde::de::Error::custom(DecodeError::InvalidHex))?;
        IdentityKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A custodian as registered at election creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Custodian {
    /// Display name.
    pub name: String,
    /// Long-term identity key; signs every ceremony and tally message.
    pub identity_key: IdentityKey,
}

/// Everything fixed at election creation (the Draft entry), hashed into Q.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionParams {
    /// Election identifier.
    pub election_id: String,
    /// Fresh random nonce chosen at creation (hex, 32 bytes).
    #[serde(with = "hex_32")]
    pub nonce: [u8; 32],
    /// Contests and options.
    pub manifest: Manifest,
    /// Custodians in order; custodian j is evaluated at x_j = j + 1.
    pub custodians: Vec<Custodian>,
    /// Quorum q: any q custodians can decrypt (blsttc threshold t = q - 1).
    pub quorum: usize,
    /// Voting opens (Unix time, milliseconds, UTC).
    pub opens_at: i64,
    /// Voting closes (Unix time, milliseconds, UTC).
    pub closes_at: i64,
    /// Fewest ballots for which a tally is decrypted.
    pub min_ballots: u64,
}

/// Why election parameters are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The manifest is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    /// Quorum must satisfy 1 <= q <= n.
    #[error("quorum {quorum} must be between 1 and the number of custodians ({custodians})")]
    Quorum {
        /// q.
        quorum: usize,
        /// n.
        custodians: usize,
    },
    /// Too many custodians, or none.
    #[error("an election needs 1 to {max} custodians, got {got}")]
    CustodianCount {
        /// Maximum supported.
        max: usize,
        /// Given.
        got: usize,
    },
    /// Two custodians share an identity key or a name.
    #[error("custodian names and identity keys must be unique")]
    DuplicateCustodian,
    /// The voting window is empty.
    #[error("the voting window must close after it opens")]
    Window,
    /// The election id is empty or too long.
    #[error("election id must be 1 to 64 characters of [A-Za-z0-9_-]")]
    ElectionId,
}

/// Most custodians an election may have.
pub const MAX_CUSTODIANS: usize = 32;

impl ElectionParams {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let id_ok = !self.election_id.is_empty()
            && self.election_id.len() <= 64
            && self
                .election_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            return Err(ParamsError::ElectionId);
        }
        self.manifest.validate()?;
        let n = self.custodians.len();
        if n == 0 || n > MAX_CUSTODIANS {
            return Err(ParamsError::CustodianCount {
                max: MAX_CUSTODIANS,
                got: n,
            });
        }
        if self.quorum == 0 || self.quorum > n {
            return Err(ParamsError::Quorum {
                quorum: self.quorum,
                custodians: n,
            });
        }
        let names: std::collections::BTreeSet<_> = self.custodians.iter().map(|c| c.name.as_str()).collect();
        let keys: std::collections::BTreeSet<_> = self
            .custodians
            .iter()
            .map(|c| c.identity_key.to_bytes())
            .collect();
        if names.len() != n || keys.len() != n {
            return Err(ParamsError::DuplicateCustodian);
        }
        if self.closes_at <= self.opens_at {
            return Err(ParamsError::Window);
        }
        Ok(())
    }

    /// The blsttc threshold t = q - 1.
    pub fn threshold(&self) -> usize {
        self.quorum.saturating_sub(1)
    }

    /// Base hash `Q = H("urna/v1/election", id, nonce, manifest, custodians, quorum, window, minimum)`.
    pub fn base_hash(&self) -> Hash32 {
        let mut t = Transcript::new("urna/v1/election")
            .str(&self.election_id)
            .bytes(&self.nonce)
            .bytes(&self.manifest.canonical_bytes())
            .u64(self.custodians.len() as u64);
        for c in &self.custodians {
            t = t.str(&c.name).bytes(&c.identity_key.to_bytes());
        }
        t.u64(self.quorum as u64)
            .i64(self.opens_at)
            .i64(self.closes_at)
            .u64(self.min_ballots)
            .digest()
    }

    /// A short fingerprint of Q for custodians to compare out of band (first 8 bytes, grouped hex).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.base_hash())
    }
}

/// Groups the first 8 bytes of a hash as `xxxx-xxxx-xxxx-xxxx`.
pub fn fingerprint(h: &Hash32) -> String {
    let hx = hex::encode(&h[..8]);
    hx.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("-")
}

/// Extended hash `Q' = H("urna/v1/extended", Q, K, signing key, transcript hash, roll hash, roll count)`.
pub fn extended_hash(
    base_hash: &Hash32,
    encryption_key: &Point,
    signing_key: &blsttc::PublicKey,
    transcript_hash: &Hash32,
    roll_hash: &Hash32,
    roll_count: u64,
) -> Hash32 {
    Transcript::new("urna/v1/extended")
        .hash(base_hash)
        .point(encryption_key.affine())
        .bytes(&signing_key.to_bytes())
        .hash(transcript_hash)
        .hash(roll_hash)
        .u64(roll_count)
        .digest()
}

/// Serde helper: 32 bytes as hex.
pub mod hex_32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as lowercase hex.
    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Deserializes 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

//! Signed heads (design 5): what a node states about its applied log, signed with its Ed25519 node
//! key, and the checks observers and voters run on them.
//!
//! A head is signed over its canonical bytes (a length-prefixed transcript under the tag
//! `urna/v1/head`, never JSON text). Node keys are registered in the replicated log when a node joins
//! and listed by `GET /v1/nodes` ([`NodeKeys`]). Two valid heads of one node with the same index and
//! different digests prove that the node misbehaved ([`equivocation`]).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use urna_keyceremony::election::hex_32;
use urna_keyceremony::hash::{Hash32, Transcript};

/// Domain tag of a signed head.
pub const TAG_HEAD: &str = "urna/v1/head";
/// Domain tag of a node key's proof of possession (signed by the node key when it registers).
pub const TAG_NODE_KEY: &str = "urna/v1/node-key";

/// One election's state in a head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionHead {
    /// The election.
    pub election_id: String,
    /// Head of the election's event chain.
    #[serde(with = "hex_32")]
    pub event_head: Hash32,
    /// Number of events in the chain.
    pub event_count: u64,
    /// Number of ballots in the ballot tree.
    pub tree_size: u64,
    /// Root of the ballot tree over those ballots.
    #[serde(with = "hex_32")]
    pub tree_root: Hash32,
    /// Ballots cast.
    pub ballot_count: u64,
}

/// What a node states: its applied index and digest, and every election's heads at that index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The node's id.
    pub node: u64,
    /// Last applied log index.
    pub index: u64,
    /// State digest after `index`.
    #[serde(with = "hex_32")]
    pub digest: Hash32,
    /// Every election, by id.
    pub elections: Vec<ElectionHead>,
    /// The node's wall clock when it signed, ms since the Unix epoch.
    pub time_ms: u64,
}

impl Head {
    /// The canonical bytes that are signed (tag `urna/v1/head`, fixed field order, length prefixes).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(TAG_HEAD)
            .u64(self.node)
            .u64(self.index)
            .hash(&self.digest)
            .u64(self.time_ms)
            .u64(self.elections.len() as u64);
        for e in &self.elections {
            t = t
                .str(&e.election_id)
                .hash(&e.event_head)
                .u64(e.event_count)
                .u64(e.tree_size)
                .hash(&e.tree_root)
                .u64(e.ballot_count);
        }
        t.into_bytes()
    }

    /// Signs the head with the node key.
    pub fn sign(self, key: &SigningKey) -> SignedHead {
        let signature = key.sign(&self.canonical_bytes()).to_bytes();
        SignedHead {
            head: self,
            node_key: key.verifying_key().to_bytes(),
            signature: hex::encode(signature),
        }
    }
}

/// A head with the node key's signature (`GET /v1/head`, and in receipts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The signed statement.
    #[serde(flatten)]
    pub head: Head,
    /// The signing node's public key (check it against the registered one, [`NodeKeys`]).
    #[serde(with = "hex_32")]
    pub node_key: [u8; 32],
    /// Ed25519 signature over [`Head::canonical_bytes`] (hex, 64 bytes).
    pub signature: String,
}

/// Why a head does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The node has no registered key.
    #[error("node {0} has no registered node key")]
    Unregistered(u64),
    /// The head names a key other than the node's registered one.
    #[error("the head's key is not node {0}'s registered key")]
    WrongKey(u64),
    /// The key or signature does not decode.
    #[error("malformed head: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the head's signature does not verify")]
    BadSignature,
}

impl SignedHead {
    /// Checks the signature against `key` (`verify_strict`) and that the head names that key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), HeadError> {
        if key.to_bytes() != self.node_key {
            return Err(HeadError::WrongKey(self.head.node));
        }
        let bytes = hex::decode(&self.signature).map_err(|e| HeadError::Malformed(e.to_string()))?;
        let arr: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| HeadError::Malformed("a signature has 64 bytes".into()))?;
        key.verify_strict(&self.head.canonical_bytes(), &Signature::from_bytes(&arr))
            .map_err(|_| HeadError::BadSignature)
    }

    /// Checks the head against the node's registered key.
    pub fn verify_registered(&self, keys: &NodeKeys) -> Result<(), HeadError> {
        let reg = keys
            .nodes
            .iter()
            .find(|n| n.node == self.head.node)
            .ok_or(HeadError::Unregistered(self.head.node))?;
        let key = VerifyingKey::from_bytes(&reg.key).map_err(|e| HeadError::Malformed(e.to_string()))?;
        self.verify(&key)
    }
}

/// A node key registered in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKey {
    /// The node's id.
    pub node: u64,
    /// Its Ed25519 public key.
    #[serde(with = "hex_32")]
    pub key: [u8; 32],
    /// Log index of the registration.
    pub index: u64,
}

/// `GET /v1/nodes` answer: every registered node key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeys {
    /// Registered keys, by node id.
    pub nodes: Vec<NodeKey>,
    /// The applied log index this answer reflects.
    pub applied_index: u64,
}

/// The statement a node signs to prove it holds its key when it registers it.
pub fn node_key_statement(node: u64, key: &[u8; 32]) -> Vec<u8> {
    Transcript::new(TAG_NODE_KEY).u64(node).bytes(key).into_bytes()
}

/// Evidence of misbehaviour: two heads from one node, both validly signed by `key`, with the same
/// index and different digests. `false` for anything else (including an invalid signature, which
/// proves nothing about the node).
pub fn equivocation(a: &SignedHead, b: &SignedHead, key: &VerifyingKey) -> bool {
    a.head.node == b.head.node
        && a.head.index == b.head.index
        && a.head.digest != b.head.digest
        && a.verify(key).is_ok()
        && b.verify(key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(node: u64, index: u64, digest: u8) -> Head {
        Head {
            node,
            index,
            digest: [digest; 32],
            elections: vec![ElectionHead {
                election_id: "e".into(),
                event_head: [1; 32],
                event_count: 3,
                tree_size: 2,
                tree_root: [2; 32],
                ballot_count: 2,
            }],
            time_ms: 5,
        }
    }

    #[test]
    fn a_head_verifies_and_a_tampered_one_does_not() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let s = head(1, 10, 9).sign(&key);
        s.verify(&vk).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: SignedHead = serde_json::from_str(&json).unwrap();
        back.verify(&vk).unwrap();
        let keys = NodeKeys {
            nodes: vec![NodeKey {
                node: 1,
                key: vk.to_bytes(),
                index: 2,
            }],
            applied_index: 10,
        };
        s.verify_registered(&keys).unwrap();
        for tamper in [
            (|h: &mut SignedHead| h.head.index += 1) as fn(&mut SignedHead),
            |h| h.head.digest[0] ^= 1,
            |h| h.head.elections[0].ballot_count += 1,
            |h| h.head.elections[0].tree_root[5] ^= 1,
            |h| h.head.time_ms += 1,
        ] {
            let mut t = s.clone();
            tamper(&mut t);
            assert_eq!(t.verify(&vk), Err(HeadError::BadSignature));
        }
        let mut other = s.clone();
        other.head.node = 2;
        assert_eq!(other.verify_registered(&keys), Err(HeadError::Unregistered(2)));
        let stranger = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            head(1, 10, 9).sign(&stranger).verify_registered(&keys),
            Err(HeadError::WrongKey(1))
        );
    }

    #[test]
    fn two_heads_with_one_index_and_two_digests_are_evidence() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let vk = key.verifying_key();
        let a = head(1, 10, 9).sign(&key);
        assert!(equivocation(&a, &head(1, 10, 8).sign(&key), &vk));
        // Same digest, other index, or another node: no evidence.
        assert!(!equivocation(&a, &head(1, 10, 9).sign(&key), &vk));
        assert!(!equivocation(&a, &head(1, 11, 8).sign(&key), &vk));
        assert!(!equivocation(&a, &head(2, 10, 8).sign(&key), &vk));
        // A forged head (bad signature) is no evidence against the node.
        let mut forged = head(1, 10, 8).sign(&key);
        forged.signature = a.signature.clone();
        assert!(!equivocation(&a, &forged, &vk));
    }
}

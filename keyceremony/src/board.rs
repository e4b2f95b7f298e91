//! Bulletin-board structures over cast ballots (design 4.5, 4.7): the tracking-code chain and the ballot
//! tree.
//!
//! - Tracking code `T_i = H("urna/v1/track", T_{i-1}, H_b)`, with `T_0` = `H("urna/v1/track-genesis", Q')`:
//!   each receipt's code fixes every ballot cast before it.
//! - The ballot tree is a Merkle tree in the shape of RFC 6962 (Certificate Transparency): leaves are
//!   `H("urna/v1/tree-leaf", H_b)`, inner nodes `H("urna/v1/tree-node", left, right)`, and a tree of n
//!   leaves splits at the largest power of two below n. Inclusion proofs are the RFC's audit paths.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash32, Transcript};

/// The tracking code before the first ballot of an election.
pub fn genesis_tracking_code(extended_hash: &Hash32) -> Hash32 {
    Transcript::new("urna/v1/track-genesis")
        .hash(extended_hash)
        .digest()
}

/// The next tracking code in the chain.
pub fn next_tracking_code(previous: &Hash32, ballot_hash: &Hash32) -> Hash32 {
    Transcript::new("urna/v1/track")
        .hash(previous)
        .hash(ballot_hash)
        .digest()
}

/// Hash of a leaf (a ballot hash).
pub fn leaf_hash(ballot_hash: &Hash32) -> Hash32 {
    Transcript::new("urna/v1/tree-leaf").hash(ballot_hash).digest()
}

fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    Transcript::new("urna/v1/tree-node")
        .hash(left)
        .hash(right)
        .digest()
}

/// Root of the empty tree.
pub fn empty_root() -> Hash32 {
    Transcript::new("urna/v1/tree-empty").digest()
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn subtree_root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// Root of the tree over the given ballot hashes, in cast order.
pub fn tree_root(ballot_hashes: &[Hash32]) -> Hash32 {
    let leaves: Vec<Hash32> = ballot_hashes.iter().map(leaf_hash).collect();
    subtree_root(&leaves)
}

/// An inclusion proof: the audit path from a leaf to the root of a tree of `tree_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf (0-based cast order).
    pub leaf_index: u64,
    /// Number of leaves in the tree the proof is for.
    pub tree_size: u64,
    /// Sibling hashes from the leaf upwards (hex on the wire).
    #[serde(with = "hash_list")]
    pub path: Vec<Hash32>,
}

fn audit_path(index: usize, leaves: &[Hash32], out: &mut Vec<Hash32>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        audit_path(index, &leaves[..k], out);
        out.push(subtree_root(&leaves[k..]));
    } else {
        audit_path(index - k, &leaves[k..], out);
        out.push(subtree_root(&leaves[..k]));
    }
}

/// The inclusion proof of the ballot at `index` among `ballot_hashes`; `None` if out of range.
pub fn inclusion_proof(ballot_hashes: &[Hash32], index: usize) -> Option<InclusionProof> {
    if index >= ballot_hashes.len() {
        return None;
    }
    let leaves: Vec<Hash32> = ballot_hashes.iter().map(leaf_hash).collect();
    let mut path = Vec::new();
    audit_path(index, &leaves, &mut path);
    Some(InclusionProof {
        leaf_index: index as u64,
        tree_size: leaves.len() as u64,
        path,
    })
}

/// Recomputes the root from a ballot hash and its proof (RFC 9162 section 2.1.3.2); compare it with a
/// signed root.
pub fn root_from_inclusion_proof(ballot_hash: &Hash32, proof: &InclusionProof) -> Option<Hash32> {
    if proof.leaf_index >= proof.tree_size {
        return None;
    }
    let mut fn_ = proof.leaf_index;
    let mut sn = proof.tree_size - 1;
    let mut r = leaf_hash(ballot_hash);
    for p in &proof.path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// Whether `proof` shows `ballot_hash` in the tree with root `root`.
pub fn verify_inclusion(ballot_hash: &Hash32, proof: &InclusionProof, root: &Hash32) -> bool {
    root_from_inclusion_proof(ballot_hash, proof).as_ref() == Some(root)
}

/// Serde helper: a list of 32-byte hashes as hex strings.
pub mod hash_list {
    use crate::hash::Hash32;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as a list of hex strings.
    pub fn serialize<S: Serializer>(v: &[Hash32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    /// Deserializes a list of 64-character hex strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash32>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| {
                let b = hex::decode(s).map_err(serde::de::Error::custom)?;
                b.try_into()
                    .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
            })
            .collect()
    }
}

/// The ballot tree grown one ballot at a time: the roots of its perfect subtrees (largest first),
/// so appending and computing the root cost O(log n) instead of rehashing every ballot. Its
/// [`root`](TreeFrontier::root) equals [`tree_root`] over the same ballot hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFrontier {
    size: u64,
    /// (height, root) of each perfect subtree, heights strictly decreasing.
    peaks: Vec<(u32, Hash32)>,
}

impl TreeFrontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of ballots in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a ballot hash.
    pub fn push(&mut self, ballot_hash: &Hash32) {
        let mut h = leaf_hash(ballot_hash);
        let mut height = 0;
        while let Some(&(top_height, top)) = self.peaks.last() {
            if top_height != height {
                break;
            }
            self.peaks.pop();
            h = node_hash(&top, &h);
            height += 1;
        }
        self.peaks.push((height, h));
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash32 {
        let mut it = self.peaks.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hashes(n: usize) -> Vec<Hash32> {
        (0..n)
            .map(|i| crate::hash::h("urna/v1/test", &[&(i as u64).to_be_bytes()]))
            .collect()
    }

    #[test]
    fn tracking_chain_depends_on_every_previous_ballot() {
        let q = [7u8; 32];
        let hs = hashes(3);
        let t0 = genesis_tracking_code(&q);
        let t1 = next_tracking_code(&t0, &hs[0]);
        let t2 = next_tracking_code(&t1, &hs[1]);
        let t1b = next_tracking_code(&t0, &hs[2]);
        assert_ne!(t2, next_tracking_code(&t1b, &hs[1]));
    }

    #[test]
    fn small_trees_have_the_rfc_shape() {
        let hs = hashes(3);
        let l: Vec<_> = hs.iter().map(leaf_hash).collect();
        assert_eq!(tree_root(&hs[..1]), l[0]);
        assert_eq!(tree_root(&hs), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(tree_root(&[]), empty_root());
    }

    #[test]
    fn the_frontier_root_equals_the_tree_root() {
        let hs = hashes(70);
        let mut f = TreeFrontier::new();
        assert_eq!(f.root(), tree_root(&[]));
        for n in 1..=hs.len() {
            f.push(&hs[n - 1]);
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), tree_root(&hs[..n]), "n = {n}");
        }
    }

    proptest! {
        #[test]
        fn every_leaf_has_a_valid_inclusion_proof(n in 1usize..70, pick in 0usize..70) {
            let hs = hashes(n);
            let i = pick % n;
            let root = tree_root(&hs);
            let proof = inclusion_proof(&hs, i).unwrap();
            prop_assert!(verify_inclusion(&hs[i], &proof, &root));
            // Another leaf, another index or another size does not verify.
            let other = crate::hash::h("urna/v1/test", &[b"other"]);
            prop_assert!(!verify_inclusion(&other, &proof, &root));
            if n > 1 {
                let mut moved = proof.clone();
                moved.leaf_index = ((i + 1) % n) as u64;
                prop_assert!(!verify_inclusion(&hs[i], &moved, &root));
            }
            // A path with a sibling dropped does not verify (the size fixes the path length).
            if !proof.path.is_empty() {
                let mut short = proof.clone();
                short.path.pop();
                prop_assert!(!verify_inclusion(&hs[i], &short, &root));
            }
        }
    }
}

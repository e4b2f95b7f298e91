//! The running state digest (design section 5).
//!
//! `d_i = H("urna/v1/digest", d_{i-1}, index, term, leader id, payload tag, canonical payload)`, where
//! `H(tag, parts...)` is SHA-256 over the tag and the parts, each preceded by its 8-byte big-endian
//! length (the same encoding as the `keyceremony` transcript). `d_0` (before any entry) is 32 zero bytes.
//! Every applied entry advances the digest: blank and membership entries too.

use openraft::EntryPayload;
use sha2::{Digest as _, Sha256};

use super::{encode, Entry, TypeConfig};

/// A 32-byte state digest.
pub type Digest = [u8; 32];

/// The digest before any entry has been applied.
pub const GENESIS: Digest = [0u8; 32];

/// Domain tag of the state digest.
pub const TAG_DIGEST: &str = "urna/v1/digest";
/// Payload tag of a blank entry.
pub const TAG_BLANK: &str = "urna/v1/entry/blank";
/// Payload tag of a membership entry.
pub const TAG_MEMBERSHIP: &str = "urna/v1/entry/membership";
/// Payload tag of a normal (command) entry.
pub const TAG_COMMAND: &str = "urna/v1/entry/command";

/// SHA-256 over a domain tag and parts, each length-prefixed with 8 big-endian bytes.
pub fn hash_parts(tag: &str, parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in std::iter::once(tag.as_bytes()).chain(parts.iter().copied()) {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The payload tag and canonical payload bytes of an entry (bincode, never JSON text).
pub fn canonical_payload(entry: &Entry) -> Result<(&'static str, Vec<u8>), bincode::Error> {
    Ok(match &entry.payload {
        EntryPayload::<TypeConfig>::Blank => (TAG_BLANK, Vec::new()),
        EntryPayload::Normal(req) => (TAG_COMMAND, encode(req)?),
        EntryPayload::Membership(m) => (TAG_MEMBERSHIP, encode(m)?),
    })
}

/// Advances the digest over one entry.
pub fn next(prev: &Digest, entry: &Entry) -> Result<Digest, bincode::Error> {
    let (tag, payload) = canonical_payload(entry)?;
    let id = &entry.log_id;
    Ok(hash_parts(
        TAG_DIGEST,
        &[
            prev,
            &id.index.to_be_bytes(),
            &id.leader_id.term.to_be_bytes(),
            &id.leader_id.node_id.to_be_bytes(),
            tag.as_bytes(),
            &payload,
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::store::Request;
    use openraft::{CommittedLeaderId, LogId};

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload,
        }
    }

    #[test]
    fn digest_depends_on_every_part() {
        let note = |t: &str| {
            EntryPayload::Normal(Request {
                command: Command::Note { text: t.into() },
                proposer: "alice".into(),
                stamp_ms: 5,
            })
        };
        let a = next(&GENESIS, &entry(1, note("x"))).unwrap();
        assert_eq!(a, next(&GENESIS, &entry(1, note("x"))).unwrap());
        assert_ne!(a, next(&GENESIS, &entry(2, note("x"))).unwrap());
        assert_ne!(a, next(&GENESIS, &entry(1, note("y"))).unwrap());
        assert_ne!(a, next(&[1u8; 32], &entry(1, note("x"))).unwrap());
        assert_ne!(a, next(&GENESIS, &entry(1, EntryPayload::Blank)).unwrap());
    }

    #[test]
    fn length_prefixes_separate_parts() {
        assert_ne!(
            hash_parts("urna/v1/t", &[b"ab", b"c"]),
            hash_parts("urna/v1/t", &[b"a", b"bc"])
        );
    }
}

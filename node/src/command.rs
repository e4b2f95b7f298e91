//! The replicated commands and their replies.
//!
//! [`Command`] is what goes into the Raft log (wrapped in a [`Request`](crate::store::Request) that adds
//! the audit metadata). The election state machine grows this enum; the replication layer only needs
//! [`Command::Noop`] and [`Command::Note`] to be exercised.
//!
//! **Compatibility rule:** the canonical bytes of a command (bincode: the variant's position, then the
//! fields in declaration order) feed the state digest, so new variants are only ever *appended* at the
//! end and existing variants never change shape.

use serde::{Deserialize, Serialize};
use urna_keyceremony::ballot::SpoiledBallot;
use urna_keyceremony::ceremony::Deadlines;
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::election::ElectionParams;
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::tally::{PartialDecryption, WireSignature, WireSignatureShare};

/// A state-machine command, as proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Does nothing; applied as a recorded no-op (useful to probe the write path).
    Noop,
    /// Records a short text in the notes tree (the replication layer's test command).
    Note {
        /// The note's text.
        text: String,
    },
    // Election commands are appended here (never inserted before existing variants).
    /// Creates an election in Draft (the receiving node drew `params.nonce`).
    CreateElection {
        /// Parameters, hashed into Q.
        params: ElectionParams,
        /// Ceremony deadlines (absolute ms).
        deadlines: Deadlines,
        /// The initial roll.
        roll: Vec<PublicCredential>,
    },
    /// Appends credentials to the roll (until Ready).
    AddRoll {
        /// The election.
        election_id: String,
        /// Credentials to append.
        credentials: Vec<PublicCredential>,
    },
    /// A signed ceremony message, as JSON bytes (its body is an internally tagged enum, which bincode
    /// cannot carry); apply parses it and `CeremonyState::apply` checks its signature.
    Ceremony {
        /// The election.
        election_id: String,
        /// `SignedCeremonyMessage` as JSON text.
        message: String,
    },
    /// Moves the ceremony past an expired deadline (valid only once the entry's time passed it).
    Advance {
        /// The election.
        election_id: String,
    },
    /// A custodian's partial decryption of the rehearsal ciphertext (verified before proposing).
    RehearsalShare {
        /// The election.
        election_id: String,
        /// Custodian index j.
        custodian: usize,
        /// The partial decryption.
        partial: PartialDecryption,
        /// Identity-key signature over its statement.
        signature: WireSignature,
    },
    /// Opens the box (the zero-ballot confirmation).
    Open {
        /// The election.
        election_id: String,
    },
    /// A cast ballot (proofs and signature verified before proposing).
    Cast {
        /// The election.
        election_id: String,
        /// H_b as computed by the verifying node.
        ballot_hash: Hash32,
        /// The verified `EncryptedBallot` as JSON. Kept as bytes so that decoding a log entry (on every
        /// append, replication and read) does not decode and subgroup-check its dozens of points;
        /// apply decodes only the ciphertexts it adds up.
        ballot: String,
    },
    /// Closes the box; apply computes count, aggregate and tree root.
    Close {
        /// The election.
        election_id: String,
    },
    /// A spoiled (challenged) ballot, verified before proposing.
    Challenge {
        /// The election.
        election_id: String,
        /// The spoiled ballot.
        spoiled: SpoiledBallot,
    },
    /// A custodian's partial decryption of the aggregate (verified before proposing).
    TallyShare {
        /// The election.
        election_id: String,
        /// Custodian index j.
        custodian: usize,
        /// The partial decryption.
        partial: PartialDecryption,
        /// Identity-key signature over its statement.
        signature: WireSignature,
    },
    /// A custodian's signature share over the result hash (verified before proposing).
    SignatureShare {
        /// The election.
        election_id: String,
        /// Custodian index j.
        custodian: usize,
        /// The share.
        share: WireSignatureShare,
    },
    /// Registers a node's Ed25519 node key (design 5: signed heads), proposed by the node itself when
    /// it sees it is a member whose key is not registered yet. `proof` is the key's signature over
    /// `urna_client::head::node_key_statement(node, key)`; apply checks it.
    RegisterNodeKey {
        /// The node's id.
        node: u64,
        /// Its Ed25519 public key.
        key: [u8; 32],
        /// Proof of possession (64-byte Ed25519 signature).
        proof: Vec<u8>,
    },
}

impl Command {
    /// A stable short name of the command, for logs and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Noop => "noop",
            Command::Note { .. } => "note",
            Command::CreateElection { .. } => "create_election",
            Command::AddRoll { .. } => "add_roll",
            Command::Ceremony { .. } => "ceremony",
            Command::Advance { .. } => "advance",
            Command::RehearsalShare { .. } => "rehearsal_share",
            Command::Open { .. } => "open",
            Command::Cast { .. } => "cast",
            Command::Close { .. } => "close",
            Command::Challenge { .. } => "challenge",
            Command::TallyShare { .. } => "tally_share",
            Command::SignatureShare { .. } => "signature_share",
            Command::RegisterNodeKey { .. } => "register_node_key",
        }
    }

    /// The election the command belongs to, if any.
    pub fn election_id(&self) -> Option<&str> {
        match self {
            Command::Noop | Command::Note { .. } | Command::RegisterNodeKey { .. } => None,
            Command::CreateElection { params, .. } => Some(&params.election_id),
            Command::AddRoll { election_id, .. }
            | Command::Ceremony { election_id, .. }
            | Command::Advance { election_id }
            | Command::RehearsalShare { election_id, .. }
            | Command::Open { election_id }
            | Command::Cast { election_id, .. }
            | Command::Close { election_id }
            | Command::Challenge { election_id, .. }
            | Command::TallyShare { election_id, .. }
            | Command::SignatureShare { election_id, .. } => Some(election_id),
        }
    }
}

/// What an applied command produced (carried back to the proposer in the Raft response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The command had no result beyond being recorded.
    Noop,
    /// A note was recorded with this sequence number (1-based).
    Note {
        /// Position of the note among all notes.
        seq: u64,
    },
    /// An election command was applied; the election is now in `phase`.
    Election {
        /// The election.
        election_id: String,
        /// Its phase after the entry.
        phase: urna_client::wire::ElectionPhase,
        /// What the entry did.
        detail: String,
    },
    /// A ballot was recorded (or, for an identical retry, found): the receipt's contents.
    Cast {
        /// H_b.
        ballot_hash: Hash32,
        /// Tracking code before the ballot.
        previous_tracking_code: Hash32,
        /// The ballot's tracking code.
        tracking_code: Hash32,
        /// Position among the cast ballots.
        seq: u64,
        /// Log index of the entry that recorded the ballot (the original one for a retry).
        index: u64,
    },
    /// A spoiled ballot was recorded at this position.
    Challenge {
        /// Position among the spoiled ballots.
        seq: u64,
    },
}

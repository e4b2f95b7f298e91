//! Stored election state: record types, tree names and keys, and reads shared by apply and the API.
//!
//! Every key of a per-election tree starts with the election id and `/` (ids never contain `/`), so
//! one election's entries are a contiguous key range.

use blsttc::group::Curve;
use blsttc::{G1Affine, G1Projective};
use serde::{Deserialize, Serialize};
use urna_client::wire::ElectionPhase;
use urna_keyceremony::blsttc;
use urna_keyceremony::ceremony::CeremonyState;
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::election::ElectionParams;
use urna_keyceremony::elgamal::{Accumulator, Ciphertext};
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::record::CloseSummary;
use urna_keyceremony::tally::{Certificate, Tally};

use crate::store::{AppTrees, ApplyError, SmHandle};

/// Election metadata (JSON): `elections` tree, key = id.
pub const T_ELECTIONS: &str = "elections";
/// Ceremony state (JSON): key = id.
pub const T_CEREMONY: &str = "ceremony";
/// Ballot-box running state (bincode [`BoxState`]): key = id.
pub const T_BOX: &str = "box";
/// Event-chain head (bincode [`ChainHead`]): key = id.
pub const T_CHAIN: &str = "chain";
/// Events (JSON [`EventRecord`]): key = id/seq.
pub const T_EVENTS: &str = "events";
/// Roll membership: id/credential -> roll position.
pub const T_ROLL: &str = "roll";
/// Roll in order: id/position -> credential.
pub const T_ROLL_LIST: &str = "roll_list";
/// Cast ballots (bincode [`StoredBallot`]): id/seq.
pub const T_BALLOTS: &str = "ballots";
/// Ballot hashes in cast order (the tree's leaves): id/seq -> H_b.
pub const T_HASHES: &str = "hashes";
/// One ballot per credential: id/credential -> seq.
pub const T_VOTED: &str = "voted";
/// No copied ciphertexts: id/alpha -> seq.
pub const T_ALPHAS: &str = "alphas";
/// Tracking codes: id/T -> seq.
pub const T_TRACKING: &str = "tracking";
/// Spoiled ballots (JSON [`StoredSpoiled`]): id/seq.
pub const T_SPOILED: &str = "spoiled";
/// Decryption shares (JSON [`StoredShare`]): id/purpose/j.
pub const T_SHARES: &str = "shares";
/// Result signature shares (JSON): id/j.
pub const T_SIGSHARES: &str = "sigshares";
/// Accepted ceremony events in log order (JSON `CeremonyEvent`): id/seq; key `id` holds the count.
pub const T_CEREMONY_LOG: &str = "ceremony_log";
/// Registered node keys (signed heads, design 5): big-endian node id -> bincode `(key, index)`.
pub const T_NODE_KEYS: &str = "node_keys";

/// Every tree of the election application (with the notes trees of the replication tests).
pub const TREES: &[&str] = &[
    "notes",
    "notes_meta",
    T_ELECTIONS,
    T_CEREMONY,
    T_BOX,
    T_CHAIN,
    T_EVENTS,
    T_ROLL,
    T_ROLL_LIST,
    T_BALLOTS,
    T_HASHES,
    T_VOTED,
    T_ALPHAS,
    T_TRACKING,
    T_SPOILED,
    T_SHARES,
    T_SIGSHARES,
    T_CEREMONY_LOG,
    T_NODE_KEYS,
];

/// Purpose byte of rehearsal shares in [`T_SHARES`].
pub const PURPOSE_REHEARSAL: u8 = 0;
/// Purpose byte of tally shares in [`T_SHARES`].
pub const PURPOSE_TALLY: u8 = 1;

/// `id/part`.
pub fn key(id: &str, part: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 1 + part.len());
    k.extend_from_slice(id.as_bytes());
    k.push(b'/');
    k.extend_from_slice(part);
    k
}

/// `id/<big-endian n>`.
pub fn key_n(id: &str, n: u64) -> Vec<u8> {
    key(id, &n.to_be_bytes())
}

/// `id/<purpose>/<big-endian j>`.
pub fn share_key(id: &str, purpose: u8, j: usize) -> Vec<u8> {
    let mut part = vec![purpose];
    part.extend_from_slice(&(j as u64).to_be_bytes());
    key(id, &part)
}

/// The metadata of one election.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionRecord {
    /// Creation parameters.
    pub params: ElectionParams,
    /// Q.
    pub base_hash: Hash32,
    /// Lifecycle phase.
    pub phase: ElectionPhase,
    /// Who created it.
    pub created_by: String,
    /// Log index of the create entry.
    pub created_index: u64,
    /// Roll size (frozen at Ready).
    pub roll_count: u64,
    /// Roll hash (at Ready).
    pub roll_hash: Option<Hash32>,
    /// Q' (at Ready).
    pub extended_hash: Option<Hash32>,
    /// Log index of the open entry.
    pub open_index: Option<u64>,
    /// Log index of the close entry.
    pub close_index: Option<u64>,
    /// Hash of the close entry ([`CloseSummary::hash`]).
    pub close_entry_hash: Option<Hash32>,
    /// What the close entry's apply computed.
    #[serde(default)]
    pub close_summary: Option<CloseSummary>,
    /// Ballot count at close.
    pub final_count: Option<u64>,
    /// Ballot-tree root at close.
    pub tree_root: Option<Hash32>,
    /// Aggregate per option at close (Tallying only).
    pub aggregate: Option<Vec<Ciphertext>>,
    /// Why the election ended in Closed.
    pub closed_reason: Option<String>,
    /// The tally, once decrypted.
    pub tally: Option<Tally>,
    /// The result hash, once tallied.
    pub result_hash: Option<Hash32>,
    /// The certificate, once published.
    pub certificate: Option<Certificate>,
}

/// Ballot-box running state, read and written by every cast (compact, bincode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxState {
    /// Ballots cast.
    pub count: u64,
    /// Spoiled ballots recorded.
    pub spoiled: u64,
    /// Current tracking-code head.
    pub tracking_head: Hash32,
    /// Running aggregate per option: uncompressed alpha then beta (192 bytes per option), decoded
    /// unchecked because only apply writes it.
    pub aggregate: Vec<u8>,
}

const UNCOMPRESSED: usize = 96;

impl BoxState {
    /// An empty box for `options` options with the genesis tracking code.
    pub fn new(options: usize, genesis: Hash32) -> Self {
        let mut b = BoxState {
            count: 0,
            spoiled: 0,
            tracking_head: genesis,
            aggregate: Vec::new(),
        };
        b.set_accumulators(&vec![Accumulator::default(); options]);
        b
    }

    /// The running aggregate as accumulators (`None` if the stored bytes are corrupt).
    pub fn accumulators(&self) -> Option<Vec<Accumulator>> {
        if self.aggregate.len() % (2 * UNCOMPRESSED) != 0 {
            return None;
        }
        self.aggregate
            .chunks(2 * UNCOMPRESSED)
            .map(|c| {
                let a: [u8; UNCOMPRESSED] = c[..UNCOMPRESSED].try_into().ok()?;
                let b: [u8; UNCOMPRESSED] = c[UNCOMPRESSED..].try_into().ok()?;
                let a = Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(&a))?;
                let b = Option::<G1Affine>::from(G1Affine::from_uncompressed_unchecked(&b))?;
                Some(Accumulator {
                    alpha: G1Projective::from(a),
                    beta: G1Projective::from(b),
                })
            })
            .collect()
    }

    /// Stores the accumulators.
    pub fn set_accumulators(&mut self, accs: &[Accumulator]) {
        let proj: Vec<G1Projective> = accs.iter().flat_map(|a| [a.alpha, a.beta]).collect();
        let mut affine = vec![G1Affine::default(); proj.len()];
        G1Projective::batch_normalize(&proj, &mut affine);
        self.aggregate = affine.iter().flat_map(|p| p.to_uncompressed()).collect();
    }
}

/// The head of an election's event chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Hash after the last event (all zero before the first).
    pub head: Hash32,
    /// Number of events.
    pub count: u64,
}

/// One event of an election's audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the chain (0-based).
    pub seq: u64,
    /// Log index of the entry.
    pub index: u64,
    /// State-machine time of the entry.
    pub time_ms: u64,
    /// Command kind.
    pub kind: String,
    /// The operator, custodian or node that caused it.
    pub actor: String,
    /// What it did.
    pub detail: String,
    /// Chain hash after this event (hex).
    #[serde(with = "urna_keyceremony::election::hex_32")]
    pub head: Hash32,
}

/// A cast ballot as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBallot {
    /// Position among cast ballots.
    pub seq: u64,
    /// Log index of the cast entry.
    pub index: u64,
    /// State-machine time of the entry.
    pub time_ms: u64,
    /// H_b.
    pub ballot_hash: Hash32,
    /// Tracking code before it.
    pub previous_tracking_code: Hash32,
    /// Its tracking code.
    pub tracking_code: Hash32,
    /// The ballot (`EncryptedBallot` as JSON, exactly as verified and logged).
    pub ballot: String,
}

/// A spoiled ballot as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpoiled {
    /// Log index of the entry.
    pub index: u64,
    /// The spoiled ballot.
    pub spoiled: urna_keyceremony::ballot::SpoiledBallot,
}

/// A recorded decryption share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredShare {
    /// Log index of the entry.
    pub index: u64,
    /// The share.
    pub partial: urna_keyceremony::tally::PartialDecryption,
    /// The custodian's identity signature.
    pub signature: urna_keyceremony::tally::WireSignature,
}

/// Key-value reads over the election trees: inside apply (the transaction) or from the API.
pub trait Kv {
    /// Reads one key of one tree.
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError>;
}

impl Kv for AppTrees<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        Ok(self.tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }
}

impl Kv for SmHandle {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        self.app_get(tree, key)
            .map_err(|e| ApplyError::Storage(e.to_string()))
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Corrupt(format!("{what}: {e}"))
}

/// Reads a JSON value.
pub fn get_json<T: serde::de::DeserializeOwned>(
    kv: &dyn Kv,
    tree: &str,
    k: &[u8],
) -> Result<Option<T>, ApplyError> {
    match kv.get(tree, k)? {
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| corrupt(tree, e)),
        None => Ok(None),
    }
}

/// Reads a bincode value.
pub fn get_bin<T: serde::de::DeserializeOwned>(
    kv: &dyn Kv,
    tree: &str,
    k: &[u8],
) -> Result<Option<T>, ApplyError> {
    match kv.get(tree, k)? {
        Some(v) => bincode::deserialize(&v).map(Some).map_err(|e| corrupt(tree, e)),
        None => Ok(None),
    }
}

/// Reads a big-endian u64.
pub fn get_u64(kv: &dyn Kv, tree: &str, k: &[u8]) -> Result<Option<u64>, ApplyError> {
    match kv.get(tree, k)? {
        Some(v) => {
            let b: [u8; 8] = v.as_slice().try_into().map_err(|e| corrupt(tree, e))?;
            Ok(Some(u64::from_be_bytes(b)))
        }
        None => Ok(None),
    }
}

/// Decoded election records by id, each with the exact stored bytes it was decoded from. Decoding a
/// record subgroup-checks every custodian key, which was most of a cast's apply; a hit requires the
/// stored bytes to be identical, so the result is exactly what decoding them would give.
type RecordCache = std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, ElectionRecord)>>;
static RECORDS: std::sync::LazyLock<RecordCache> = std::sync::LazyLock::new(Default::default);

/// The election's metadata.
pub fn record(kv: &dyn Kv, id: &str) -> Result<Option<ElectionRecord>, ApplyError> {
    let Some(raw) = kv.get(T_ELECTIONS, id.as_bytes())? else {
        return Ok(None);
    };
    if let Ok(cache) = RECORDS.lock() {
        if let Some((bytes, rec)) = cache.get(id) {
            if *bytes == raw {
                return Ok(Some(rec.clone()));
            }
        }
    }
    let rec: ElectionRecord = serde_json::from_slice(&raw).map_err(|e| corrupt(T_ELECTIONS, e))?;
    if let Ok(mut cache) = RECORDS.lock() {
        cache.insert(id.to_string(), (raw, rec.clone()));
    }
    Ok(Some(rec))
}

/// The election's ceremony state.
pub fn ceremony(kv: &dyn Kv, id: &str) -> Result<Option<CeremonyState>, ApplyError> {
    get_json(kv, T_CEREMONY, id.as_bytes())
}

/// The election's box state (from Ready on).
pub fn box_state(kv: &dyn Kv, id: &str) -> Result<Option<BoxState>, ApplyError> {
    get_bin(kv, T_BOX, id.as_bytes())
}

/// The election's event-chain head.
pub fn chain(kv: &dyn Kv, id: &str) -> Result<ChainHead, ApplyError> {
    Ok(get_bin(kv, T_CHAIN, id.as_bytes())?.unwrap_or_default())
}

/// Whether a credential is on the election's roll.
pub fn on_roll(kv: &dyn Kv, id: &str, c: &PublicCredential) -> Result<bool, ApplyError> {
    Ok(kv.get(T_ROLL, &key(id, &c.to_bytes()))?.is_some())
}

/// The ballot cast with a credential, if any.
pub fn ballot_of(kv: &dyn Kv, id: &str, c: &PublicCredential) -> Result<Option<StoredBallot>, ApplyError> {
    match get_u64(kv, T_VOTED, &key(id, &c.to_bytes()))? {
        Some(seq) => get_bin(kv, T_BALLOTS, &key_n(id, seq)),
        None => Ok(None),
    }
}

/// The ballot with a tracking code, if any.
pub fn ballot_by_tracking(kv: &dyn Kv, id: &str, t: &Hash32) -> Result<Option<StoredBallot>, ApplyError> {
    match get_u64(kv, T_TRACKING, &key(id, t))? {
        Some(seq) => get_bin(kv, T_BALLOTS, &key_n(id, seq)),
        None => Ok(None),
    }
}

/// The first `n` ballot hashes, in cast order.
pub fn ballot_hashes(kv: &dyn Kv, id: &str, n: u64) -> Result<Vec<Hash32>, ApplyError> {
    (0..n)
        .map(|i| {
            let v = kv
                .get(T_HASHES, &key_n(id, i))?
                .ok_or_else(|| corrupt(T_HASHES, format!("missing ballot hash {i}")))?;
            v.as_slice().try_into().map_err(|e| corrupt(T_HASHES, e))
        })
        .collect()
}

/// The recorded decryption shares of a purpose, in custodian order.
pub fn shares(kv: &dyn Kv, id: &str, purpose: u8, n: usize) -> Result<Vec<(usize, StoredShare)>, ApplyError> {
    let mut out = Vec::new();
    for j in 0..n {
        if let Some(s) = get_json::<StoredShare>(kv, T_SHARES, &share_key(id, purpose, j))? {
            out.push((j, s));
        }
    }
    Ok(out)
}

/// The recorded signature shares, in custodian order.
pub fn signature_shares(
    kv: &dyn Kv,
    id: &str,
    n: usize,
) -> Result<Vec<(usize, urna_keyceremony::tally::WireSignatureShare)>, ApplyError> {
    let mut out = Vec::new();
    for j in 0..n {
        if let Some(s) = get_json(kv, T_SIGSHARES, &key_n(id, j as u64))? {
            out.push((j, s));
        }
    }
    Ok(out)
}

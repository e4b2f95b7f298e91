//! Signed heads (design 5): the node key, its registration in the log, and building the head.
//!
//! - The node key is an Ed25519 key read from `node_key_file` (configuration) or from
//!   `<data_dir>/node.key`, generated there on first start (hex, mode 0600).
//! - Registration: once the node sees it is a member and its key is not in the log, it proposes
//!   [`Command::RegisterNodeKey`] with a proof of possession, itself when it leads, otherwise through
//!   the leader's `POST /raft/node-key` (authenticated with the cluster secret like every Raft RPC).
//!   Apply checks the proof and never replaces a registered key.
//! - A head is read in one read transaction (index, digest and every election's chain head, box
//!   count and ballot-tree root belong to the same applied index), the tree root grown incrementally
//!   from a per-election [`TreeFrontier`] cache, and signed over its canonical bytes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sled::IVec;
use urna_client::head::{node_key_statement, ElectionHead, Head, NodeKey, NodeKeys, SignedHead};
use urna_keyceremony::board::TreeFrontier;
use urna_keyceremony::hash::Hash32;

use crate::command::{Command, Reply};
use crate::election::state::{self, Kv, T_ELECTIONS, T_HASHES, T_NODE_KEYS};
use crate::store::{decode, encode, AppTrees, ApplyContext, ApplyError, Outcome, Raft, SmHandle};
use crate::NodeId;

/// Path of the node-key registration RPC (MAC-authenticated, bincode body).
pub const PATH_NODE_KEY: &str = "/raft/node-key";

/// File name of a generated node key inside the data directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// Reads the node key from `path`, or (when `path` is `None`) from `<data_dir>/node.key`, generating
/// it there (mode 0600) on first start.
pub fn load_or_create(data_dir: &Path, path: Option<&Path>) -> anyhow::Result<SigningKey> {
    let (file, may_create) = match path {
        Some(p) => (p.to_path_buf(), false),
        None => (data_dir.join(NODE_KEY_FILE), true),
    };
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).with_context(|| format!("node key {}", file.display()))?;
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("node key {} must hold 32 bytes in hex", file.display()))?;
            Ok(SigningKey::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            write_private(&file, &hex::encode(key.to_bytes()))
                .with_context(|| format!("writing the node key {}", file.display()))?;
            tracing::info!(file = %file.display(), "generated a node key");
            Ok(key)
        }
        Err(e) => bail!("reading the node key {}: {e}", file.display()),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// The proof of possession of `key` for `node`.
pub fn proof(node: NodeId, key: &SigningKey) -> Vec<u8> {
    key.sign(&node_key_statement(node, &key.verifying_key().to_bytes()))
        .to_bytes()
        .to_vec()
}

fn check_proof(node: NodeId, key: &[u8; 32], proof: &[u8]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(proof) else {
        return false;
    };
    !vk.is_weak()
        && vk
            .verify_strict(&node_key_statement(node, key), &Signature::from_bytes(&sig))
            .is_ok()
}

/// Applies [`Command::RegisterNodeKey`]: checks the proof; records the key unless the node has one
/// (the same key again is a no-op; another key is refused: keys are never replaced).
pub fn apply_register(
    ctx: &ApplyContext<'_>,
    trees: &AppTrees<'_>,
    node: NodeId,
    key: &[u8; 32],
    proof: &[u8],
) -> Result<Outcome, ApplyError> {
    if !check_proof(node, key, proof) {
        return Ok(Outcome::Rejected {
            code: "bad_proof".into(),
            message: "the node key's proof of possession does not verify".into(),
        });
    }
    let t = trees.tree(T_NODE_KEYS)?;
    if let Some(v) = t.get(node.to_be_bytes())? {
        let (old, _): ([u8; 32], u64) = decode(&v)?;
        if old == *key {
            return Ok(Outcome::Applied(Reply::Noop));
        }
        return Ok(Outcome::Rejected {
            code: "node_key_registered".into(),
            message: format!("node {node} already has another registered key"),
        });
    }
    t.insert(
        &node.to_be_bytes(),
        IVec::from(encode(&(*key, ctx.log_id.index))?),
    )?;
    Ok(Outcome::Applied(Reply::Noop))
}

/// Every registered node key.
pub fn node_keys(store: &SmHandle) -> Result<NodeKeys, ApplyError> {
    let storage = |e: openraft::StorageError<NodeId>| ApplyError::Storage(e.to_string());
    let applied_index = store
        .state()
        .map_err(storage)?
        .last_applied
        .map_or(0, |l| l.index);
    let mut nodes = Vec::new();
    for (k, v) in store.app_scan(T_NODE_KEYS).map_err(storage)? {
        let id: [u8; 8] = k
            .as_slice()
            .try_into()
            .map_err(|_| ApplyError::Corrupt("node key id".into()))?;
        let (key, index): ([u8; 32], u64) = decode(&v)?;
        nodes.push(NodeKey {
            node: u64::from_be_bytes(id),
            key,
            index,
        });
    }
    Ok(NodeKeys { nodes, applied_index })
}

/// Builds and signs heads; caches each election's ballot-tree frontier and the last signed head.
pub struct Heads {
    id: NodeId,
    key: SigningKey,
    frontiers: Mutex<HashMap<String, TreeFrontier>>,
    last: Mutex<Option<Arc<SignedHead>>>,
}

impl Heads {
    /// Heads of node `id`, signed with `key`.
    pub fn new(id: NodeId, key: SigningKey) -> Self {
        Heads {
            id,
            key,
            frontiers: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
        }
    }

    /// The node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// A head at the current applied index, or a cached one if it is at `min_index` or later and less
    /// than a second old (receipts under load share the head of their batch).
    pub fn signed_head(&self, store: &SmHandle, min_index: u64) -> Result<Arc<SignedHead>, ApplyError> {
        let now = crate::api::now_ms();
        if let Ok(last) = self.last.lock() {
            if let Some(h) = last.as_ref() {
                if h.head.index >= min_index && now.saturating_sub(h.head.time_ms) < 1000 {
                    return Ok(h.clone());
                }
            }
        }
        let head = Arc::new(self.build(store, now)?.sign(&self.key));
        if let Ok(mut last) = self.last.lock() {
            if !last.as_ref().is_some_and(|l| l.head.index > head.head.index) {
                *last = Some(head.clone());
            }
        }
        Ok(head)
    }

    fn election_ids(store: &SmHandle) -> Result<Vec<String>, ApplyError> {
        store
            .app_keys(T_ELECTIONS)
            .map_err(|e| ApplyError::Storage(e.to_string()))?
            .into_iter()
            .map(|k| String::from_utf8(k).map_err(|e| ApplyError::Corrupt(e.to_string())))
            .collect()
    }

    fn build(&self, store: &SmHandle, time_ms: u64) -> Result<Head, ApplyError> {
        // Elections are only ever added: if one appeared while reading, read again.
        for _ in 0..5 {
            let ids = Self::election_ids(store)?;
            let cached: HashMap<String, TreeFrontier> = match self.frontiers.lock() {
                Ok(f) => ids
                    .iter()
                    .filter_map(|id| f.get(id).map(|t| (id.clone(), t.clone())))
                    .collect(),
                Err(_) => HashMap::new(),
            };
            let (index, digest, elections) = store
                .read_tx(|st, trees| {
                    let mut out = Vec::with_capacity(ids.len());
                    for id in &ids {
                        let chain = state::chain(trees, id)?;
                        let count = state::box_state(trees, id)?.map_or(0, |b| b.count);
                        let mut f = cached.get(id).cloned().unwrap_or_default();
                        if f.size() > count {
                            f = TreeFrontier::new();
                        }
                        for i in f.size()..count {
                            f.push(&ballot_hash(trees, id, i)?);
                        }
                        out.push((id.clone(), chain, count, f));
                    }
                    Ok((st.last_applied.map_or(0, |l| l.index), st.digest, out))
                })
                .map_err(|e| ApplyError::Storage(e.to_string()))?;
            if Self::election_ids(store)?.len() != ids.len() {
                continue;
            }
            let mut heads = Vec::with_capacity(elections.len());
            if let Ok(mut f) = self.frontiers.lock() {
                for (id, _, _, fr) in &elections {
                    if !f.get(id).is_some_and(|old| old.size() >= fr.size()) {
                        f.insert(id.clone(), fr.clone());
                    }
                }
            }
            for (id, chain, count, fr) in elections {
                heads.push(ElectionHead {
                    election_id: id,
                    event_head: chain.head,
                    event_count: chain.count,
                    tree_size: count,
                    tree_root: fr.root(),
                    ballot_count: count,
                });
            }
            return Ok(Head {
                node: self.id,
                index,
                digest,
                elections: heads,
                time_ms,
            });
        }
        Err(ApplyError::Storage(
            "elections kept changing while reading the head".into(),
        ))
    }
}

fn ballot_hash(kv: &dyn Kv, id: &str, i: u64) -> Result<Hash32, ApplyError> {
    let v = kv
        .get(T_HASHES, &state::key_n(id, i))?
        .ok_or_else(|| ApplyError::Corrupt(format!("missing ballot hash {i} of {id}")))?;
    v.as_slice()
        .try_into()
        .map_err(|_| ApplyError::Corrupt(format!("ballot hash {i} of {id}")))
}

/// The body of `POST /raft/node-key` (bincode).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// The node.
    pub node: NodeId,
    /// Its public key.
    pub key: [u8; 32],
    /// Proof of possession.
    pub proof: Vec<u8>,
}

impl Registration {
    /// The command proposing it.
    pub fn command(&self) -> Command {
        Command::RegisterNodeKey {
            node: self.node,
            key: self.key,
            proof: self.proof.clone(),
        }
    }

    /// Whether the proof of possession verifies.
    pub fn check(&self) -> bool {
        check_proof(self.node, &self.key, &self.proof)
    }
}

/// Registers this node's key once it is a member and a leader is known (retrying until the key is
/// in the log, then stopping). Stops with an error log if another key is registered for the node.
pub fn spawn_registration(raft: Raft, store: SmHandle, id: NodeId, key: SigningKey, secret: Arc<Vec<u8>>) {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "node-key registration: no HTTP client");
                return;
            }
        };
        let public = key.verifying_key().to_bytes();
        let reg = Registration {
            node: id,
            key: public,
            proof: proof(id, &key),
        };
        let mut delay = Duration::from_millis(200);
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            match node_keys(&store) {
                Ok(keys) => match keys.nodes.iter().find(|n| n.node == id) {
                    Some(n) if n.key == public => {
                        tracing::info!(index = n.index, "node key registered");
                        return;
                    }
                    Some(_) => {
                        tracing::error!("another key is registered for this node; heads will not verify");
                        return;
                    }
                    None => {}
                },
                Err(e) => {
                    tracing::warn!(error = %e, "reading node keys");
                    continue;
                }
            }
            let (leader, addr, member) = {
                let m = raft.metrics();
                let m = m.borrow();
                let mem = m.membership_config.membership();
                let leader = m.current_leader;
                let addr = leader.and_then(|l| mem.get_node(&l).map(|n| n.addr.clone()));
                (leader, addr, mem.get_node(&id).is_some())
            };
            if !member {
                continue;
            }
            match (leader, addr) {
                (Some(l), _) if l == id => {
                    let req = crate::store::Request {
                        command: reg.command(),
                        proposer: format!("node-{id}"),
                        stamp_ms: crate::api::now_ms(),
                    };
                    if let Err(e) = raft.client_write(req).await {
                        tracing::debug!(error = %e, "proposing the node key");
                    }
                }
                (Some(_), Some(addr)) => {
                    let Ok(body) = bincode::serialize(&reg) else {
                        continue;
                    };
                    let mac = crate::network::mac(&secret, PATH_NODE_KEY, &body);
                    let res = http
                        .post(format!("http://{addr}{PATH_NODE_KEY}"))
                        .header(crate::network::MAC_HEADER, mac)
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .body(body)
                        .send()
                        .await;
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "sending the node key to the leader");
                    }
                }
                _ => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_of_possession_binds_node_and_key() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let pk = k.verifying_key().to_bytes();
        let p = proof(4, &k);
        assert!(check_proof(4, &pk, &p));
        assert!(!check_proof(5, &pk, &p));
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        assert!(!check_proof(4, &other, &p));
        assert!(!check_proof(4, &pk, &p[..63]));
    }

    #[test]
    fn a_node_key_is_generated_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), None).unwrap();
        let b = load_or_create(dir.path(), None).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(NODE_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A configured key file must exist.
        assert!(load_or_create(dir.path(), Some(&dir.path().join("missing.key"))).is_err());
    }
}

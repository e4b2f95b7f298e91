//! Node configuration: a TOML file (`--config node.toml`) and/or command-line flags and environment
//! variables, flags winning over the file.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7001"
//! data_dir = "/var/lib/urna/node1"
//! cluster_secret = "a long random shared secret"
//! peers = [{ id = 2, addr = "127.0.0.1:7002" }, { id = 3, addr = "127.0.0.1:7003" }]
//!
//! [[operators]]
//! name = "alice"
//! role = "admin"
//! token = "alice-secret-token"
//!
//! [raft]
//! heartbeat_ms = 250
//! ```

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// An operator's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs elections (and, for now, writes test notes).
    Admin,
    /// Manages the cluster: init, learners, membership.
    Cluster,
}

impl std::str::FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "cluster" => Ok(Role::Cluster),
            other => bail!("unknown role {other:?} (expected admin or cluster)"),
        }
    }
}

/// A named operator with a bearer token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Operator {
    /// Name recorded in the audit trail.
    pub name: String,
    /// What the operator may do.
    pub role: Role,
    /// Bearer token (`Authorization: Bearer <token>`).
    pub token: String,
}

/// Another member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its node id.
    pub id: NodeId,
    /// Its HTTP address (`host:port`).
    pub addr: String,
}

/// Raft timing and snapshot tuning.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    /// Leader heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// Election timeout lower bound (ms).
    pub election_min_ms: u64,
    /// Election timeout upper bound (ms).
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the last snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Snapshot chunk size for the streamed install (bytes).
    pub snapshot_chunk_bytes: u64,
    /// Most entries per AppendEntries RPC. A replication RPC must complete within one heartbeat
    /// interval (openraft's timeout), so batches of ballots (~10 KB each) are kept small enough to
    /// transfer, authenticate, decode and flush in time; otherwise a lagging follower could retry the
    /// same oversized batch forever.
    pub max_payload_entries: u64,
    /// Send Raft RPCs for peer `id` to this address instead of the peer's membership address
    /// (`{ "2" = "127.0.0.1:9002" }`). Used by the chaos harness to route every link through a proxy
    /// it controls; empty in production.
    pub peer_via: std::collections::BTreeMap<String, String>,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 250,
            election_min_ms: 1000,
            election_max_ms: 2000,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            snapshot_chunk_bytes: 3 * 1024 * 1024,
            max_payload_entries: 64,
            peer_via: Default::default(),
        }
    }
}

/// The node's configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id (unique in the cluster, stable across restarts).
    pub id: NodeId,
    /// Address the HTTP listener binds (`host:port`).
    pub listen: String,
    /// Address other nodes use to reach this one (default: `listen`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Directory of the node's sled database.
    pub data_dir: PathBuf,
    /// Shared secret authenticating Raft RPCs (HMAC-SHA256).
    pub cluster_secret: String,
    /// The other initial members (used by `POST /v1/cluster/init` without a body).
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Operators and their tokens.
    #[serde(default)]
    pub operators: Vec<Operator>,
    /// Raft tuning.
    #[serde(default)]
    pub raft: RaftTuning,
    /// Largest accepted API request body (bytes).
    #[serde(default = "default_api_body")]
    pub max_body_bytes: usize,
    /// File holding the node's Ed25519 key (hex); default `<data_dir>/node.key`, generated on first
    /// start.
    #[serde(default)]
    pub node_key_file: Option<PathBuf>,
}

fn default_api_body() -> usize {
    1024 * 1024
}

/// A partially specified configuration, as read from a file before flags are merged in.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    /// See [`Config::id`].
    pub id: Option<NodeId>,
    /// See [`Config::listen`].
    pub listen: Option<String>,
    /// See [`Config::advertise`].
    pub advertise: Option<String>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::cluster_secret`].
    pub cluster_secret: Option<String>,
    /// See [`Config::peers`].
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// See [`Config::operators`].
    #[serde(default)]
    pub operators: Vec<Operator>,
    /// See [`Config::raft`].
    #[serde(default)]
    pub raft: RaftTuning,
    /// See [`Config::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
    /// See [`Config::node_key_file`].
    pub node_key_file: Option<PathBuf>,
}

impl PartialConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Checks that every required field is present and sane.
    pub fn finish(self) -> anyhow::Result<Config> {
        let cfg = Config {
            id: self
                .id
                .ok_or_else(|| anyhow!("the node id is missing (--id or `id` in the config)"))?,
            listen: self
                .listen
                .ok_or_else(|| anyhow!("the listen address is missing (--listen)"))?,
            advertise: self.advertise,
            data_dir: self
                .data_dir
                .ok_or_else(|| anyhow!("the data directory is missing (--data-dir)"))?,
            cluster_secret: self
                .cluster_secret
                .ok_or_else(|| anyhow!("the cluster secret is missing (URNA_CLUSTER_SECRET)"))?,
            peers: self.peers,
            operators: self.operators,
            raft: self.raft,
            max_body_bytes: self.max_body_bytes.unwrap_or_else(default_api_body),
            node_key_file: self.node_key_file,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// The address other nodes use for this one.
    pub fn advertise_addr(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// The Raft address overrides of `[raft] peer_via`, by node id.
    pub fn peer_via(&self) -> anyhow::Result<std::collections::BTreeMap<NodeId, String>> {
        self.raft
            .peer_via
            .iter()
            .map(|(id, addr)| {
                let id = id
                    .trim()
                    .parse()
                    .with_context(|| format!("bad node id {id:?} in raft.peer_via"))?;
                Ok((id, addr.trim().to_string()))
            })
            .collect()
    }

    /// Rejects configurations that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.cluster_secret.len() < MIN_SECRET_LEN {
            bail!("the cluster secret must be at least {MIN_SECRET_LEN} bytes");
        }
        for p in &self.peers {
            if p.id == self.id {
                bail!("peer {} has this node's own id", p.id);
            }
        }
        for (i, o) in self.operators.iter().enumerate() {
            if o.token.len() < 8 {
                bail!("operator {:?} has a token shorter than 8 bytes", o.name);
            }
            if self.operators[..i]
                .iter()
                .any(|p| p.token == o.token || p.name == o.name)
            {
                bail!("operator {:?} repeats another operator's name or token", o.name);
            }
        }
        self.peer_via()?;
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_min_ms <= r.heartbeat_ms
            || r.election_max_ms <= r.election_min_ms
        {
            bail!("raft timing must satisfy 0 < heartbeat_ms < election_min_ms < election_max_ms");
        }
        Ok(())
    }

    /// The openraft configuration derived from the tuning.
    pub fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let r = &self.raft;
        let c = openraft::Config {
            cluster_name: "urna".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_min_ms,
            election_timeout_max: r.election_max_ms,
            install_snapshot_timeout: r.election_max_ms.max(1000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(r.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: r.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: r.snapshot_chunk_bytes,
            max_payload_entries: r.max_payload_entries.max(1),
            ..Default::default()
        };
        Ok(c.validate()?)
    }
}

/// Parses a `--peer ID=ADDR` flag.
pub fn parse_peer(s: &str) -> anyhow::Result<Peer> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("expected ID=ADDR, got {s:?}"))?;
    Ok(Peer {
        id: id
            .trim()
            .parse()
            .with_context(|| format!("bad peer id in {s:?}"))?,
        addr: addr.trim().to_string(),
    })
}

/// Parses an `--operator NAME:ROLE:TOKEN` flag.
pub fn parse_operator(s: &str) -> anyhow::Result<Operator> {
    let mut it = s.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some(name), Some(role), Some(token)) if !name.is_empty() => Ok(Operator {
            name: name.to_string(),
            role: role.parse()?,
            token: token.to_string(),
        }),
        _ => bail!("expected NAME:ROLE:TOKEN"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_flags() {
        let p: PartialConfig = toml::from_str(
            r#"
            id = 1
            listen = "127.0.0.1:7001"
            data_dir = "/tmp/x"
            cluster_secret = "0123456789abcdef"
            peers = [{ id = 2, addr = "127.0.0.1:7002" }]
            [[operators]]
            name = "alice"
            role = "cluster"
            token = "tok-alice-1"
            [raft]
            heartbeat_ms = 100
            election_min_ms = 300
            election_max_ms = 600
            peer_via = { "2" = "127.0.0.1:9002" }
            "#,
        )
        .unwrap();
        let c = p.finish().unwrap();
        assert_eq!(c.peers[0].addr, "127.0.0.1:7002");
        assert_eq!(c.operators[0].role, Role::Cluster);
        c.raft_config().unwrap();
        assert_eq!(c.peer_via().unwrap()[&2], "127.0.0.1:9002");
        assert_eq!(
            parse_peer("3=h:1").unwrap(),
            Peer {
                id: 3,
                addr: "h:1".into()
            }
        );
        assert!(parse_operator("bob:admin:tok:with:colons")
            .unwrap()
            .token
            .contains(':'));
        assert!(parse_operator("bob:root:x").is_err());
    }

    #[test]
    fn short_secret_is_refused() {
        let p = PartialConfig {
            id: Some(1),
            listen: Some("127.0.0.1:1".into()),
            data_dir: Some("/tmp/x".into()),
            cluster_secret: Some("short".into()),
            ..Default::default()
        };
        assert!(p.finish().is_err());
    }
}

//! Raft RPCs over HTTP (`POST /raft/{append,vote,snapshot}`), authenticated with the cluster secret.
//!
//! Bodies are bincode (requests and `Result<response, RaftError>` answers). Every request carries
//! `x-urna-mac: hex(HMAC-SHA256(secret, path || "\n" || body))`; binding the path means a body signed
//! for one RPC cannot be replayed against another. The server side lives in [`crate::api`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::store::{Node, NodeId, TypeConfig};

/// Header carrying the MAC of a Raft RPC.
pub const MAC_HEADER: &str = "x-urna-mac";
/// Path of the AppendEntries RPC.
pub const PATH_APPEND: &str = "/raft/append";
/// Path of the Vote RPC.
pub const PATH_VOTE: &str = "/raft/vote";
/// Path of the InstallSnapshot (chunk) RPC.
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";

type HmacSha256 = Hmac<Sha256>;

fn mac_state(secret: &[u8], path: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    m.update(path.as_bytes());
    m.update(b"\n");
    m.update(body);
    m
}

/// The hex MAC of a Raft RPC body sent to `path`.
pub fn mac(secret: &[u8], path: &str, body: &[u8]) -> String {
    hex::encode(mac_state(secret, path, body).finalize().into_bytes())
}

/// Checks a hex MAC in constant time.
pub fn verify_mac(secret: &[u8], path: &str, body: &[u8], mac_hex: &str) -> bool {
    match hex::decode(mac_hex.trim()) {
        Ok(tag) => mac_state(secret, path, body).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

/// Creates connections to peers (one reqwest client shared by all).
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    secret: Arc<Vec<u8>>,
    via: Arc<BTreeMap<NodeId, String>>,
}

impl Network {
    /// A network authenticating with `secret`.
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        Ok(Network {
            client,
            secret: Arc::new(secret.to_vec()),
            via: Arc::default(),
        })
    }

    /// Sends RPCs for the given peers to these addresses instead of their membership addresses (the
    /// chaos harness's proxies; `[raft] peer_via`).
    pub fn with_peer_via(mut self, via: BTreeMap<NodeId, String>) -> Self {
        self.via = Arc::new(via);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        Connection {
            client: self.client.clone(),
            secret: self.secret.clone(),
            target,
            addr: self.via.get(&target).unwrap_or(&node.addr).clone(),
        }
    }
}

/// A connection to one peer.
pub struct Connection {
    client: reqwest::Client,
    secret: Arc<Vec<u8>>,
    target: NodeId,
    addr: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mac = mac(&self.secret, path, &body);
        let url = format!("http://{}{}", self.addr, path);
        let resp = self
            .client
            .post(&url)
            .timeout(option.hard_ttl())
            .header(MAC_HEADER, mac)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                "{path} to node {} answered {status}: {text}",
                self.target
            )))));
        }
        let res: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(PATH_APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(PATH_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(PATH_VOTE, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_binds_secret_path_and_body() {
        let m = mac(b"secret-secret-secret", PATH_VOTE, b"body");
        assert!(verify_mac(b"secret-secret-secret", PATH_VOTE, b"body", &m));
        assert!(!verify_mac(b"secret-secret-other!", PATH_VOTE, b"body", &m));
        assert!(!verify_mac(b"secret-secret-secret", PATH_APPEND, b"body", &m));
        assert!(!verify_mac(b"secret-secret-secret", PATH_VOTE, b"body2", &m));
        assert!(!verify_mac(b"secret-secret-secret", PATH_VOTE, b"body", "zz"));
    }

    #[test]
    fn raft_errors_roundtrip_bincode() {
        let e: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            Err(RaftError::Fatal(openraft::error::Fatal::Panicked));
        let b = bincode::serialize(&e).unwrap();
        let back: Result<VoteResponse<NodeId>, RaftError<NodeId>> = bincode::deserialize(&b).unwrap();
        assert!(back.is_err());
    }
}

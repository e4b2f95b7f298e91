//! Cluster operations (operators with the `cluster` role): init, add learner, change membership, show.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use serde::Deserialize;

use super::status::role_name;
use super::{parse_json, write_or_forward, ApiError, AppState};
use crate::config::Role;
use crate::NodeId;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InitBody {
    /// Initial members: id -> address. Default: this node and the configured peers.
    #[serde(default)]
    members: Option<BTreeMap<NodeId, String>>,
}

/// `POST /v1/cluster/init`
pub async fn init(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let op = app.authorize(&headers, Role::Cluster)?;
    let req: InitBody = if body.is_empty() {
        InitBody::default()
    } else {
        parse_json(&body)?
    };
    let members: BTreeMap<NodeId, BasicNode> = match req.members {
        Some(m) => m
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect(),
        None => std::iter::once((app.id, BasicNode::new(app.advertise.clone())))
            .chain(app.peers.iter().map(|p| (p.id, BasicNode::new(p.addr.clone()))))
            .collect(),
    };
    tracing::info!(operator = %op.name, members = ?members.keys().collect::<Vec<_>>(), "initializing the cluster");
    match app.raft.initialize(members.clone()).await {
        Ok(()) => {
            Ok(Json(serde_json::json!({"initialized": members.keys().collect::<Vec<_>>()})).into_response())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_initialized",
            e.to_string(),
        )),
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
            Err(ApiError::bad_request(format!("this node must be a member: {e}")))
        }
        Err(RaftError::Fatal(f)) => Err(ApiError::unavailable("raft_stopped", f.to_string(), None)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnerBody {
    id: NodeId,
    addr: String,
}

/// `POST /v1/cluster/learners` `{"id": 4, "addr": "host:port"}`: adds a learner and waits until it has
/// caught up.
pub async fn add_learner(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let op = app.authorize(&headers, Role::Cluster)?;
    let req: LearnerBody = parse_json(&body)?;
    tracing::info!(operator = %op.name, id = req.id, addr = %req.addr, "adding a learner");
    let raft = app.raft.clone();
    let node = BasicNode::new(req.addr);
    let res = write_or_forward(&app, "/v1/cluster/learners", &headers, body, || {
        raft.add_learner(req.id, node, true)
    })
    .await?;
    Ok(match res {
        Ok(r) => Json(serde_json::json!({"index": r.log_id.index, "digest": r.data.digest})).into_response(),
        Err(forwarded) => forwarded,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipBody {
    /// The new voter set.
    members: BTreeSet<NodeId>,
    /// Keep removed voters as learners.
    #[serde(default)]
    retain: bool,
}

/// `POST /v1/cluster/membership` `{"members": [1,2,3], "retain": false}`: one change at a time.
pub async fn change_membership(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let op = app.authorize(&headers, Role::Cluster)?;
    let req: MembershipBody = parse_json(&body)?;
    if req.members.is_empty() {
        return Err(ApiError::bad_request("the voter set cannot be empty"));
    }
    tracing::info!(operator = %op.name, members = ?req.members, "changing membership");
    let raft = app.raft.clone();
    let res = write_or_forward(&app, "/v1/cluster/membership", &headers, body, || {
        raft.change_membership(req.members, req.retain)
    })
    .await?;
    Ok(match res {
        Ok(r) => Json(serde_json::json!({"index": r.log_id.index, "digest": r.data.digest})).into_response(),
        Err(forwarded) => forwarded,
    })
}

/// `GET /v1/cluster`: membership, leader, term and (on the leader) replication progress.
pub async fn show(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.authorize(&headers, Role::Cluster)?;
    let m = app.raft.metrics().borrow().clone();
    let mem = m.membership_config.membership();
    let voters: Vec<NodeId> = mem.voter_ids().collect();
    let learners: Vec<NodeId> = mem.learner_ids().collect();
    let nodes: BTreeMap<NodeId, String> = mem.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    let replication: Option<BTreeMap<NodeId, Option<u64>>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect());
    Ok(Json(serde_json::json!({
        "id": app.id,
        "role": role_name(m.state),
        "term": m.current_term,
        "leader": m.current_leader,
        "voters": voters,
        "learners": learners,
        "nodes": nodes,
        "membership_log_index": m.membership_config.log_id().map(|l| l.index),
        "replication": replication,
    }))
    .into_response())
}

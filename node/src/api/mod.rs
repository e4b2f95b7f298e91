//! The HTTP API (axum 0.7): Raft RPCs under `/raft/*`, health and status, the digest, cluster
//! operations and the write path, with JSON errors ([`ApiError`]).
//!
//! Writes go through [`propose`]: the receiving node authenticates the operator, and if it is not the
//! leader forwards the request one hop to the leader (`x-urna-forwarded-by`); a forwarded request that
//! lands on a non-leader, or a request when no leader is known, gets 503 with a leader hint.

mod cluster;
mod elections;
mod error;
mod observer;
mod raft;
mod status;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use serde::{Deserialize, Serialize};

pub use error::{parse_json, ApiError, LeaderHint};

use crate::command::{Command, Reply};
use crate::config::{Operator, Peer, Role};
use crate::store::{Node, NodeId, Outcome, Raft, SmHandle, TypeConfig};

/// Header naming the node that forwarded a write (a forwarded write is never forwarded again).
pub const FORWARDED_HEADER: &str = "x-urna-forwarded-by";

/// Largest accepted Raft RPC body (entries or one snapshot chunk plus framing).
pub const MAX_RAFT_BODY: usize = 64 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// This node's id.
    pub id: NodeId,
    /// The address peers and clients use for this node.
    pub advertise: String,
    /// The Raft handle.
    pub raft: Raft,
    /// Read access to the state machine.
    pub store: SmHandle,
    /// Cluster secret (Raft RPC MAC key).
    pub secret: Arc<Vec<u8>>,
    /// Operators and their tokens.
    pub operators: Arc<Vec<Operator>>,
    /// Initial peers from the configuration.
    pub peers: Arc<Vec<Peer>>,
    /// HTTP client used to forward writes to the leader.
    pub http: reqwest::Client,
    /// Ballot contexts (key tables) per election, for verifying casts and challenges.
    pub contexts: Arc<crate::election::precheck::ContextCache>,
    /// Batch verifier of concurrent casts.
    pub verifier: Arc<crate::election::batch::BatchVerifier>,
    /// Rate limit of spoiled-ballot challenges received by this node.
    pub challenges: Arc<crate::election::precheck::RateLimit>,
    /// Signs this node's heads.
    pub heads: Arc<crate::head::Heads>,
}

/// Builds the router. `max_body` limits API bodies; Raft RPC bodies get [`MAX_RAFT_BODY`].
pub fn router(app: AppState, max_body: usize) -> Router {
    let raft = Router::new()
        .route(crate::network::PATH_APPEND, post(raft::append))
        .route(crate::network::PATH_VOTE, post(raft::vote))
        .route(crate::network::PATH_SNAPSHOT, post(raft::snapshot))
        .route(crate::head::PATH_NODE_KEY, post(raft::node_key))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY));
    let api = Router::new()
        .route("/", get(observer::page))
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(status::metrics))
        .route("/v1/status", get(status::status))
        .route("/v1/digest", get(status::digest))
        .route("/v1/head", get(status::head))
        .route("/v1/nodes", get(status::nodes))
        .route("/v1/cluster", get(cluster::show))
        .route("/v1/cluster/init", post(cluster::init))
        .route("/v1/cluster/learners", post(cluster::add_learner))
        .route("/v1/cluster/membership", post(cluster::change_membership))
        .route("/v1/notes", post(post_note))
        .merge(elections::routes())
        .layer(DefaultBodyLimit::max(max_body));
    raft.merge(api).fallback(not_found).with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Milliseconds since the Unix epoch (the leader's stamp on proposals).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    /// Authenticates the bearer token and checks the operator's role.
    pub fn authorize(&self, headers: &HeaderMap, role: Role) -> Result<Operator, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "an operator bearer token is required",
                )
            })?;
        // Compare against every operator so timing does not reveal which one matched.
        let mut found = None;
        for op in self.operators.iter() {
            if ct_eq(op.token.as_bytes(), token.trim().as_bytes()) {
                found = Some(op);
            }
        }
        let op = found.ok_or_else(|| {
            tracing::warn!("refused an unknown operator token");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "unknown operator token",
            )
        })?;
        if op.role != role {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("operator {:?} lacks the {:?} role", op.name, role),
            ));
        }
        Ok(op.clone())
    }

    fn leader_hint(&self, f: &ForwardToLeader<NodeId, Node>) -> Option<LeaderHint> {
        f.leader_id.map(|id| LeaderHint {
            id,
            addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
        })
    }

    /// Forwards a write one hop to the leader and relays its answer.
    async fn forward(
        &self,
        f: &ForwardToLeader<NodeId, Node>,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let hint = self.leader_hint(f);
        if headers.contains_key(FORWARDED_HEADER) {
            return Err(ApiError::unavailable(
                "not_leader",
                "the node this write was forwarded to is not the leader (an election is under way); retry",
                hint,
            ));
        }
        let Some(addr) = hint.as_ref().and_then(|h| h.addr.clone()) else {
            return Err(ApiError::unavailable(
                "no_leader",
                "no leader is known; retry shortly",
                hint,
            ));
        };
        let mut rb = self
            .http
            .post(format!("http://{addr}{path}"))
            .timeout(Duration::from_secs(30))
            .header(FORWARDED_HEADER, self.id.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            rb = rb.header(header::AUTHORIZATION, auth.as_bytes());
        }
        tracing::debug!(leader = %addr, path, "forwarding a write to the leader");
        let resp = rb.send().await.map_err(|e| {
            ApiError::unavailable(
                "leader_unreachable",
                format!("the leader did not answer: {e}"),
                hint.clone(),
            )
        })?;
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let bytes = resp.bytes().await.map_err(|e| {
            ApiError::unavailable(
                "leader_unreachable",
                format!("the leader's answer broke off: {e}"),
                hint,
            )
        })?;
        Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    }
}

/// The answer to a committed and applied write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteResponse {
    /// Log index of the entry.
    pub index: u64,
    /// State digest after the entry (hex).
    pub digest: String,
    /// The command's reply.
    pub reply: Reply,
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, Node>>,
>;

/// Runs a Raft write (`op`), forwarding to the leader when this node is not it.
pub async fn write_or_forward<F, Fut>(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    op: F,
) -> Result<Result<openraft::raft::ClientWriteResponse<TypeConfig>, Response>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = WriteResult>,
{
    let metrics = crate::metrics::global();
    let res = op().await;
    match &res {
        Ok(_) => {
            metrics.proposals_committed.inc();
        }
        // Not proposed here: the leader counts it.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {}
        Err(_) => {
            metrics.proposals_failed.inc();
        }
    }
    match res {
        Ok(r) => Ok(Ok(r)),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Ok(Err(app.forward(&f, path, headers, body).await?))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "membership_change_refused",
            e.to_string(),
        )),
        Err(RaftError::Fatal(f)) => Err(ApiError::unavailable("raft_stopped", f.to_string(), None)),
    }
}

/// What a proposal came to: applied here, or answered by the leader it was forwarded to.
pub enum Proposed {
    /// Committed and applied: the log index, the digest after it and the command's reply.
    Applied {
        /// Log index.
        index: u64,
        /// Digest after the entry (hex).
        digest: String,
        /// The reply.
        reply: Reply,
    },
    /// Rejected by apply (a recorded no-op).
    Rejected {
        /// snake_case code.
        code: String,
        /// Message.
        message: String,
    },
    /// The leader's answer to the forwarded request.
    Forwarded(Response),
}

/// Proposes a command as `proposer` (forwarding to the leader when needed), after commit and apply.
pub async fn propose_command(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    proposer: &str,
    command: Command,
) -> Result<Proposed, ApiError> {
    let request = crate::store::Request {
        command,
        proposer: proposer.to_string(),
        stamp_ms: now_ms(),
    };
    let raft = app.raft.clone();
    let r = match write_or_forward(app, path, headers, body, || raft.client_write(request)).await? {
        Ok(r) => r,
        Err(forwarded) => return Ok(Proposed::Forwarded(forwarded)),
    };
    match r.data.outcome {
        Outcome::Applied(reply) => Ok(Proposed::Applied {
            index: r.data.index,
            digest: r.data.digest,
            reply,
        }),
        Outcome::Rejected { code, message } => Ok(Proposed::Rejected { code, message }),
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a command: {other:?}"
        ))),
    }
}

/// Proposes a command as `proposer`, answering only after commit and apply.
pub async fn propose(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
    proposer: &str,
    command: Command,
) -> Result<Response, ApiError> {
    let request = crate::store::Request {
        command,
        proposer: proposer.to_string(),
        stamp_ms: now_ms(),
    };
    let raft = app.raft.clone();
    let r = match write_or_forward(app, path, headers, body, || raft.client_write(request)).await? {
        Ok(r) => r,
        Err(forwarded) => return Ok(forwarded),
    };
    match r.data.outcome {
        Outcome::Applied(reply) => Ok(Json(WriteResponse {
            index: r.data.index,
            digest: r.data.digest,
            reply,
        })
        .into_response()),
        Outcome::Rejected { code, message } => Err(ApiError::new(StatusCode::CONFLICT, code, message)),
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a command: {other:?}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

/// `POST /v1/notes` (admin): records a note through Raft.
async fn post_note(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let op = app.authorize(&headers, Role::Admin)?;
    let note: NoteBody = parse_json(&body)?;
    propose(
        &app,
        "/v1/notes",
        &headers,
        body,
        &op.name,
        Command::Note { text: note.text },
    )
    .await
}

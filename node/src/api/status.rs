//! Health, readiness, status and digest endpoints (public).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::ServerState;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::NodeId;

/// `GET /v1/status` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node's id.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Current leader, if known.
    pub leader: Option<NodeId>,
    /// Index of the last log entry.
    pub last_log_index: Option<u64>,
    /// Index of the last applied entry.
    pub applied_index: Option<u64>,
    /// State digest at `applied_index` (hex; the genesis digest before any entry).
    pub digest: String,
    /// Index covered by this node's current snapshot.
    pub snapshot_index: Option<u64>,
    /// Last purged log index.
    pub purged_index: Option<u64>,
    /// Every election's phase and ballot count.
    pub elections: Vec<urna_client::wire::ElectionBrief>,
}

pub(crate) fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// `GET /healthz`: the process serves and Raft is running.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let running = app.raft.metrics().borrow().running_state.is_ok();
    if running {
        Json(serde_json::json!({"ok": true})).into_response()
    } else {
        ApiError::unavailable("raft_stopped", "the Raft core has stopped", None).into_response()
    }
}

/// `GET /readyz`: a leader is known and this node applied everything it knows to be committed.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let (leader, applied) = {
        let m = app.raft.metrics();
        let m = m.borrow();
        (m.current_leader, m.last_applied.map(|l| l.index))
    };
    let committed = match app.raft.with_raft_state(|st| st.committed.map(|l| l.index)).await {
        Ok(c) => c,
        Err(e) => return ApiError::unavailable("raft_stopped", e.to_string(), None).into_response(),
    };
    if leader.is_none() {
        return ApiError::unavailable("no_leader", "no leader is known", None).into_response();
    }
    if applied < committed {
        return ApiError::unavailable(
            "catching_up",
            format!("applied {applied:?} of committed {committed:?}"),
            None,
        )
        .into_response();
    }
    Json(serde_json::json!({"ready": true, "leader": leader, "applied_index": applied})).into_response()
}

/// `GET /v1/status`
pub async fn status(State(app): State<AppState>) -> Result<Json<Status>, ApiError> {
    let m = app.raft.metrics().borrow().clone();
    // Applied index and digest from the same persisted record, so they always belong together.
    let st = app.store.state().map_err(ApiError::internal)?;
    Ok(Json(Status {
        id: app.id,
        role: role_name(m.state).to_string(),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        applied_index: st.last_applied.map(|l| l.index),
        digest: hex::encode(st.digest),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        elections: crate::election::view::briefs(&app.store)?,
    }))
}

/// `GET /v1/digest?index=N` query.
#[derive(Deserialize)]
pub struct DigestQuery {
    index: u64,
}

/// `GET /v1/digest?index=N`: the state digest after entry N.
pub async fn digest(
    State(app): State<AppState>,
    q: Result<Query<DigestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("expected ?index=N: {e}")))?;
    match app.store.digest_at(q.index).map_err(ApiError::internal)? {
        Some(d) => Ok(Json(serde_json::json!({"index": q.index, "digest": hex::encode(d)})).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_applied",
            format!("this node has not applied entry {}", q.index),
        )),
    }
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    // Fresh gauges at scrape time (the watcher also follows every change).
    {
        let m = app.raft.metrics();
        let m = m.borrow();
        let g = crate::metrics::global();
        g.has_leader.set(i64::from(m.current_leader.is_some()));
        g.term.set(i64::try_from(m.current_term).unwrap_or(i64::MAX));
    }
    match crate::metrics::global().encode() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
    }
}

/// `GET /v1/head`: this node's signed head at its applied index (design 5).
pub async fn head(State(app): State<AppState>) -> Result<Response, ApiError> {
    let (store, heads) = (app.store.clone(), app.heads.clone());
    let h = tokio::task::spawn_blocking(move || heads.signed_head(&store, u64::MAX))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(&*h).into_response())
}

/// `GET /v1/nodes`: the node keys registered in the log (to verify heads with).
pub async fn nodes(State(app): State<AppState>) -> Result<Json<urna_client::head::NodeKeys>, ApiError> {
    Ok(Json(
        crate::head::node_keys(&app.store).map_err(ApiError::internal)?,
    ))
}

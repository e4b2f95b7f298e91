//! The server side of the Raft RPCs: `POST /raft/{append,vote,snapshot}`, refused with 401 unless the
//! body carries a valid MAC of the cluster secret.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::network::{verify_mac, MAC_HEADER, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};

fn authenticate(
    app: &AppState,
    path: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let ok = headers
        .get(MAC_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|m| verify_mac(app.secret.as_slice(), path, body, m))
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        tracing::warn!(%peer, path, "refused a Raft RPC without a valid MAC");
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Raft RPCs must carry a valid x-urna-mac (HMAC-SHA256 with the cluster secret)",
        ))
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    bincode::deserialize(body).map_err(|e| ApiError::bad_request(format!("undecodable Raft RPC: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Response {
    match bincode::serialize(v) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `POST /raft/append`
pub async fn append(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    authenticate(&app, PATH_APPEND, peer, &headers, &body)?;
    let req = decode(&body)?;
    Ok(encode(&app.raft.append_entries(req).await))
}

/// `POST /raft/vote`
pub async fn vote(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    authenticate(&app, PATH_VOTE, peer, &headers, &body)?;
    let req = decode(&body)?;
    Ok(encode(&app.raft.vote(req).await))
}

/// `POST /raft/snapshot` (one chunk of a streamed snapshot)
pub async fn snapshot(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    authenticate(&app, PATH_SNAPSHOT, peer, &headers, &body)?;
    let req = decode(&body)?;
    Ok(encode(&app.raft.install_snapshot(req).await))
}

/// `POST /raft/node-key`: a member's node-key registration (MAC-authenticated, bincode
/// [`Registration`](crate::head::Registration)); the leader checks the proof and proposes it.
pub async fn node_key(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    authenticate(&app, crate::head::PATH_NODE_KEY, peer, &headers, &body)?;
    let reg: crate::head::Registration = decode(&body)?;
    if !reg.check() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_proof",
            "the node key's proof of possession does not verify",
        ));
    }
    let proposer = format!("node-{}", reg.node);
    let request = crate::store::Request {
        command: reg.command(),
        proposer,
        stamp_ms: super::now_ms(),
    };
    match app.raft.client_write(request).await {
        Ok(r) => Ok(axum::Json(serde_json::json!({"index": r.data.index})).into_response()),
        Err(e) => Err(ApiError::unavailable("not_leader", e.to_string(), None)),
    }
}

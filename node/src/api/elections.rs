//! Election endpoints (design section 6): small handlers over [`crate::election`]'s prechecks and
//! views. A follower forwards writes one hop to the leader (after authenticating operators); the
//! leader runs the prechecks (cheap state checks, then proofs and signatures) before proposing; reads report the applied index they reflect, and `?consistent=true` makes them
//! linearizable (`?min_index=N` waits until this node applied N).

use std::time::Duration;

use axum::async_trait;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use urna_client::wire::{
    ChallengeAck, CreateElectionRequest, ElectionList, RollRequest, SignatureShareRequest,
    SignedPartialDecryption, WriteAck,
};
use urna_keyceremony::ballot::SpoiledBallot;
use urna_keyceremony::ceremony::{Deadlines, MessageKind, SignedCeremonyMessage};
use urna_keyceremony::election::ElectionParams;

use super::{now_ms, parse_json, propose_command, ApiError, AppState, Proposed, FORWARDED_HEADER};
use crate::command::{Command, Reply};
use crate::config::Role;
use crate::election::precheck::{self, CastPlan, Refusal};
use crate::election::view;

/// The election routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/elections", get(list).post(create))
        .route("/v1/elections/:id", get(show))
        .route("/v1/elections/:id/ceremony", get(ceremony_state))
        .route("/v1/elections/:id/roll", post(roll))
        .route("/v1/elections/:id/open", post(open))
        .route("/v1/elections/:id/close", post(close))
        .route("/v1/elections/:id/advance", post(advance))
        .route("/v1/elections/:id/ceremony/:kind", post(ceremony_post))
        .route("/v1/elections/:id/ballots", post(cast))
        .route("/v1/elections/:id/ballots/:tracking_code", get(lookup))
        .route("/v1/elections/:id/challenges", post(challenge))
        .route("/v1/elections/:id/result", get(result))
        .route("/v1/elections/:id/events", get(events))
        .route("/v1/elections/:id/record", get(record))
        .route("/v1/elections/:id/tally/shares", post(tally_share))
        .route("/v1/elections/:id/tally/signatures", post(signature_share))
}

/// A JSON body kept with its raw bytes (forwarded unchanged to the leader).
pub struct Payload<T> {
    raw: Bytes,
    value: T,
}

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Payload<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let raw = Bytes::from_request(req, state).await?;
        let value = parse_json(&raw)?;
        Ok(Payload { raw, value })
    }
}

/// A path extractor whose rejection is a JSON 400.
pub struct P<T>(T);

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// A query extractor whose rejection is a JSON 400.
pub struct Q<T>(T);

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// A raw body whose rejection (413 too large, 400 unreadable) is a JSON [`ApiError`].
pub struct Raw(Bytes);

#[async_trait]
impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Raw(Bytes::from_request(req, state).await?))
    }
}

/// Read options.
#[derive(Deserialize, Default)]
pub struct ReadQuery {
    /// Linearizable read (confirmed by the leader) first.
    #[serde(default)]
    consistent: bool,
    /// Wait (up to 10 s) until this node applied this index.
    #[serde(default)]
    min_index: Option<u64>,
}

enum ReadAt {
    Local(u64),
    Forwarded(Response),
}

/// Makes the read as fresh as asked and returns the applied index it reflects.
async fn read_at(app: &AppState, headers: &HeaderMap, uri: &Uri, q: &ReadQuery) -> Result<ReadAt, ApiError> {
    if q.consistent {
        match app.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let hint = app.leader_hint(&f);
                let addr = hint.as_ref().and_then(|h| h.addr.clone());
                let (Some(addr), false) = (addr, headers.contains_key(FORWARDED_HEADER)) else {
                    return Err(ApiError::unavailable(
                        "no_leader",
                        "no leader to confirm the read; retry",
                        hint,
                    ));
                };
                let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                let resp = app
                    .http
                    .get(format!("http://{addr}{path}"))
                    .timeout(Duration::from_secs(10))
                    .header(FORWARDED_HEADER, app.id.to_string())
                    .send()
                    .await
                    .map_err(|e| ApiError::unavailable("leader_unreachable", e.to_string(), hint.clone()))?;
                let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| ApiError::unavailable("leader_unreachable", e.to_string(), hint))?;
                return Ok(ReadAt::Forwarded(
                    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
                ));
            }
            Err(e) => return Err(ApiError::unavailable("read_not_confirmed", e.to_string(), None)),
        }
    }
    if let Some(n) = q.min_index {
        app.raft
            .wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(n), "read")
            .await
            .map_err(|e| {
                ApiError::unavailable("catching_up", format!("entry {n} not applied yet: {e}"), None)
            })?;
    }
    let st = app.store.state().map_err(ApiError::internal)?;
    Ok(ReadAt::Local(st.last_applied.map_or(0, |l| l.index)))
}

macro_rules! read_index {
    ($app:expr, $headers:expr, $uri:expr, $q:expr) => {
        match read_at(&$app, &$headers, &$uri, &$q).await? {
            ReadAt::Local(i) => i,
            ReadAt::Forwarded(r) => return Ok(r),
        }
    };
}

/// Forwards a write to the leader before any precheck when this node is a follower that knows the
/// leader, so prechecks always judge the leader's (freshest applied) state and the expensive checks
/// run once, on the node that proposes.
async fn to_leader(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Result<Option<Response>, ApiError> {
    if headers.contains_key(FORWARDED_HEADER) {
        return Ok(None);
    }
    let (leader, node) = {
        let m = app.raft.metrics();
        let m = m.borrow();
        let leader = m.current_leader;
        let node = leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        (leader, node)
    };
    match (leader, node) {
        (Some(l), Some(node)) if l != app.id => {
            let f = ForwardToLeader::new(l, node);
            Ok(Some(app.forward(&f, path, headers, raw.clone()).await?))
        }
        _ => Ok(None),
    }
}

macro_rules! forward_if_follower {
    ($app:expr, $path:expr, $headers:expr, $raw:expr) => {
        if let Some(r) = to_leader(&$app, &$path, &$headers, &$raw).await? {
            return Ok(r);
        }
    };
}

/// Runs a CPU-heavy precheck off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("verification task failed: {e}"))),
    }
}

/// Proposes an election command and answers with a [`WriteAck`] (or the refusal).
async fn submit(
    app: &AppState,
    path: &str,
    headers: &HeaderMap,
    raw: Bytes,
    proposer: &str,
    command: Command,
) -> Result<Response, ApiError> {
    match propose_command(app, path, headers, raw, proposer, command).await? {
        Proposed::Applied {
            index,
            digest,
            reply:
                Reply::Election {
                    election_id,
                    phase,
                    detail,
                },
        } => Ok(Json(WriteAck {
            election_id,
            index,
            digest,
            phase,
            detail,
        })
        .into_response()),
        Proposed::Applied { reply, .. } => Err(ApiError::internal(format!("unexpected reply {reply:?}"))),
        Proposed::Rejected { code, message } => Err(Refusal::from_rejected(&code, message).into()),
        Proposed::Forwarded(r) => Ok(r),
    }
}

/// `GET /v1/elections`
async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied_index = read_index!(app, headers, uri, q);
    let elections = view::briefs(&app.store)?;
    Ok(Json(ElectionList {
        elections,
        applied_index,
    })
    .into_response())
}

/// `GET /v1/elections/{id}`
async fn show(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied = read_index!(app, headers, uri, q);
    Ok(Json(view::summary(&app.store, &id, applied)?).into_response())
}

/// `GET /v1/elections/{id}/ceremony`: the public ceremony state custodians compute their next
/// messages from.
async fn ceremony_state(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    read_index!(app, headers, uri, q);
    precheck::election(&app.store, &id)?;
    let st = crate::election::state::ceremony(&app.store, &id).map_err(Refusal::from)?;
    Ok(Json(st).into_response())
}

/// `GET /v1/elections/{id}/result`
async fn result(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied = read_index!(app, headers, uri, q);
    Ok(Json(view::result(&app.store, &id, applied)?).into_response())
}

/// `GET /v1/elections/{id}/events`: the election's audit trail (event chain), oldest first.
async fn events(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied = read_index!(app, headers, uri, q);
    let events = view::events(&app.store, &id)?;
    Ok(
        Json(serde_json::json!({ "election_id": id, "events": events, "applied_index": applied }))
            .into_response(),
    )
}

/// `GET /v1/elections/{id}/record`: the whole election record (`docs/record.md`), for `urna verify`.
///
/// The applied index it reflects is in the `x-urna-applied-index` header.
async fn record(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied = read_index!(app, headers, uri, q);
    let store = app.store.clone();
    let record = blocking(move || view::record(&store, &id)).await?;
    let mut resp = Json(record).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&applied.to_string()) {
        resp.headers_mut().insert("x-urna-applied-index", v);
    }
    Ok(resp)
}

/// `GET /v1/elections/{id}/ballots/{tracking_code}`
async fn lookup(
    State(app): State<AppState>,
    Path((id, code)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Q(q): Q<ReadQuery>,
) -> Result<Response, ApiError> {
    let applied = read_index!(app, headers, uri, q);
    Ok(Json(view::lookup(&app.store, &id, &code, applied)?).into_response())
}

/// Default ceremony deadlines: one hour per phase from now.
fn default_deadlines(now: i64) -> Deadlines {
    const HOUR: i64 = 3_600_000;
    Deadlines {
        join: now + HOUR,
        deal: now + 2 * HOUR,
        check: now + 3 * HOUR,
        answer: now + 4 * HOUR,
        confirm: now + 5 * HOUR,
    }
}

/// `POST /v1/elections` (admin): this node draws the election nonce.
async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Payload<CreateElectionRequest>,
) -> Result<Response, ApiError> {
    let op = app.authorize(&headers, Role::Admin)?;
    forward_if_follower!(app, "/v1/elections", headers, body.raw);
    let req = body.value;
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let params = ElectionParams {
        election_id: req.election_id,
        nonce,
        manifest: req.manifest,
        custodians: req.custodians,
        quorum: req.quorum,
        opens_at: req.opens_at,
        closes_at: req.closes_at,
        min_ballots: req.min_ballots.unwrap_or(10),
    };
    params
        .validate()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_params", e.to_string()))?;
    let deadlines = req
        .ceremony_deadlines
        .unwrap_or_else(|| default_deadlines(now_ms() as i64));
    let cmd = Command::CreateElection {
        params,
        deadlines,
        roll: req.roll,
    };
    submit(&app, "/v1/elections", &headers, body.raw, &op.name, cmd).await
}

/// `POST /v1/elections/{id}/roll` (admin)
async fn roll(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    body: Payload<RollRequest>,
) -> Result<Response, ApiError> {
    let op = app.authorize(&headers, Role::Admin)?;
    forward_if_follower!(app, format!("/v1/elections/{id}/roll"), headers, body.raw);
    precheck::election(&app.store, &id)?;
    let cmd = Command::AddRoll {
        election_id: id.clone(),
        credentials: body.value.credentials,
    };
    submit(
        &app,
        &format!("/v1/elections/{id}/roll"),
        &headers,
        body.raw,
        &op.name,
        cmd,
    )
    .await
}

async fn admin_step(
    app: AppState,
    id: String,
    headers: HeaderMap,
    raw: Bytes,
    what: &str,
    cmd: Command,
) -> Result<Response, ApiError> {
    let op = app.authorize(&headers, Role::Admin)?;
    forward_if_follower!(app, format!("/v1/elections/{id}/{what}"), headers, raw);
    precheck::election(&app.store, &id)?;
    submit(
        &app,
        &format!("/v1/elections/{id}/{what}"),
        &headers,
        raw,
        &op.name,
        cmd,
    )
    .await
}

/// `POST /v1/elections/{id}/open` (admin): the zero-ballot confirmation; the answer's index is where
/// observers compare digests.
async fn open(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<Response, ApiError> {
    let cmd = Command::Open {
        election_id: id.clone(),
    };
    admin_step(app, id, headers, raw, "open", cmd).await
}

/// `POST /v1/elections/{id}/close` (admin): valid after `closes_at`.
async fn close(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<Response, ApiError> {
    let cmd = Command::Close {
        election_id: id.clone(),
    };
    admin_step(app, id, headers, raw, "close", cmd).await
}

/// `POST /v1/elections/{id}/advance` (admin): moves the ceremony past an expired deadline.
async fn advance(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<Response, ApiError> {
    let cmd = Command::Advance {
        election_id: id.clone(),
    };
    admin_step(app, id, headers, raw, "advance", cmd).await
}

/// `POST /v1/elections/{id}/ceremony/{joins,deals,acks,complaints,answers,confirmations,rehearsal}`:
/// custodian-signed messages (no bearer token; the identity signature authenticates them).
async fn ceremony_post(
    State(app): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<Response, ApiError> {
    let path = format!("/v1/elections/{id}/ceremony/{kind}");
    forward_if_follower!(app, path, headers, raw);
    let (cmd, name) = if kind == "rehearsal" {
        let share: SignedPartialDecryption = parse_json(&raw)?;
        let store = app.store.clone();
        let id2 = id.clone();
        blocking(move || precheck::rehearsal(&store, &id2, share)).await?
    } else {
        let expected = match kind.as_str() {
            "joins" => MessageKind::Join,
            "deals" => MessageKind::Deal,
            "acks" => MessageKind::Ack,
            "complaints" => MessageKind::Complaint,
            "answers" => MessageKind::Answer,
            "confirmations" => MessageKind::Confirmation,
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such ceremony endpoint",
                ))
            }
        };
        let msg: SignedCeremonyMessage = parse_json(&raw)?;
        if msg.body.kind() != expected {
            return Err(ApiError::bad_request(format!(
                "a {} message does not belong under /ceremony/{kind}",
                msg.body.kind()
            )));
        }
        let store = app.store.clone();
        let id2 = id.clone();
        blocking(move || precheck::ceremony(&store, &id2, &msg)).await?
    };
    submit(&app, &path, &headers, raw, &name, cmd).await
}

/// `POST /v1/elections/{id}/tally/shares`
async fn tally_share(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    body: Payload<SignedPartialDecryption>,
) -> Result<Response, ApiError> {
    forward_if_follower!(app, format!("/v1/elections/{id}/tally/shares"), headers, body.raw);
    let store = app.store.clone();
    let id2 = id.clone();
    let share = body.value;
    let (cmd, name) = blocking(move || precheck::tally_share(&store, &id2, share)).await?;
    submit(
        &app,
        &format!("/v1/elections/{id}/tally/shares"),
        &headers,
        body.raw,
        &name,
        cmd,
    )
    .await
}

/// `POST /v1/elections/{id}/tally/signatures`
async fn signature_share(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    body: Payload<SignatureShareRequest>,
) -> Result<Response, ApiError> {
    forward_if_follower!(
        app,
        format!("/v1/elections/{id}/tally/signatures"),
        headers,
        body.raw
    );
    let store = app.store.clone();
    let id2 = id.clone();
    let share = body.value;
    let (cmd, name) = blocking(move || precheck::signature_share(&store, &id2, share)).await?;
    submit(
        &app,
        &format!("/v1/elections/{id}/tally/signatures"),
        &headers,
        body.raw,
        &name,
        cmd,
    )
    .await
}

/// `POST /v1/elections/{id}/ballots`: cast. The receipt comes after commit and apply; an identical
/// retry gets the original receipt; a cast after `closes_at` makes this node propose the close.
/// Refusals are counted under their error code (casts forwarded to the leader are counted there).
async fn cast(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    Raw(raw): Raw,
) -> Result<Response, ApiError> {
    let res = cast_inner(app, id, headers, raw).await;
    if let Err(e) = &res {
        crate::metrics::global().ballot_rejected(&e.code);
    }
    res
}

async fn cast_inner(app: AppState, id: String, headers: HeaderMap, raw: Bytes) -> Result<Response, ApiError> {
    let path = format!("/v1/elections/{id}/ballots");
    forward_if_follower!(app, path, headers, raw);
    let store = app.store.clone();
    let contexts = app.contexts.clone();
    let (id2, raw2) = (id.clone(), raw.clone());
    let plan = blocking(move || precheck::cast(&store, &contexts, &id2, &raw2, now_ms())).await?;
    let cmd = match plan {
        CastPlan::Retry(b) => {
            let mut receipt = view::receipt(&id, &b);
            receipt.signed_head = signed_head(&app, b.index).await;
            return Ok(Json(receipt).into_response());
        }
        CastPlan::Verify(ctx, ballot) => {
            let (ballot, verified) = app
                .verifier
                .verify(ctx, *ballot)
                .await
                .ok_or_else(|| ApiError::internal("the ballot verifier stopped"))?;
            precheck::cast_command(&id, &ballot, verified)?
        }
        CastPlan::CloseInstead => {
            let proposer = format!("node-{}", app.id);
            let cmd = Command::Close {
                election_id: id.clone(),
            };
            if let Proposed::Forwarded(r) =
                propose_command(&app, &path, &headers, raw, &proposer, cmd).await?
            {
                return Ok(r);
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "election_closed",
                "the voting window has closed; the box is closed",
            ));
        }
    };
    match propose_command(&app, &path, &headers, raw, "voter", cmd).await? {
        Proposed::Applied {
            reply:
                Reply::Cast {
                    ballot_hash,
                    previous_tracking_code,
                    tracking_code,
                    seq,
                    index,
                },
            ..
        } => {
            crate::metrics::global().ballots_cast.inc();
            let head = signed_head(&app, index).await;
            Ok(Json(urna_client::wire::Receipt {
                election_id: id,
                ballot_hash,
                previous_tracking_code,
                tracking_code,
                seq,
                index,
                signed_head: head,
            })
            .into_response())
        }
        Proposed::Applied { reply, .. } => Err(ApiError::internal(format!("unexpected reply {reply:?}"))),
        Proposed::Rejected { code, message } => Err(Refusal::from_rejected(&code, message).into()),
        Proposed::Forwarded(r) => Ok(r),
    }
}

/// The answering node's signed head at or after `index`, for a receipt. The ballot is recorded
/// whatever happens here, so a failure only leaves the head out (and is logged).
async fn signed_head(app: &AppState, index: u64) -> Option<urna_client::head::SignedHead> {
    let (store, heads) = (app.store.clone(), app.heads.clone());
    match tokio::task::spawn_blocking(move || heads.signed_head(&store, index)).await {
        Ok(Ok(h)) => Some((*h).clone()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "signing the head of a receipt");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "signing the head of a receipt");
            None
        }
    }
}

/// `POST /v1/elections/{id}/challenges`: a spoiled ballot (Benaloh challenge), rate-limited per
/// receiving node (429 `rate_limited`).
async fn challenge(
    State(app): State<AppState>,
    P(id): P<String>,
    headers: HeaderMap,
    body: Payload<SpoiledBallot>,
) -> Result<Response, ApiError> {
    if !headers.contains_key(FORWARDED_HEADER) {
        app.challenges.take()?;
    }
    forward_if_follower!(app, format!("/v1/elections/{id}/challenges"), headers, body.raw);
    let store = app.store.clone();
    let contexts = app.contexts.clone();
    let id2 = id.clone();
    let spoiled = body.value;
    let cmd = blocking(move || precheck::challenge(&store, &contexts, &id2, spoiled)).await?;
    let path = format!("/v1/elections/{id}/challenges");
    match propose_command(&app, &path, &headers, body.raw, "voter", cmd).await? {
        Proposed::Applied {
            index,
            reply: Reply::Challenge { seq },
            ..
        } => Ok(Json(ChallengeAck {
            election_id: id,
            seq,
            index,
        })
        .into_response()),
        Proposed::Applied { reply, .. } => Err(ApiError::internal(format!("unexpected reply {reply:?}"))),
        Proposed::Rejected { code, message } => Err(Refusal::from_rejected(&code, message).into()),
        Proposed::Forwarded(r) => Ok(r),
    }
}

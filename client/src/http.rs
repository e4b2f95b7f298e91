//! The HTTP client library for the Urna API (design sections 5 and 6).
//!
//! A [`Client`] talks to a cluster through a list of node URLs. It
//! - decodes the API's error body `{"error": {"code", "message", "leader"}}` into an [`ApiError`];
//! - finds the leader by asking the nodes' `/v1/status` and remembers it;
//! - retries with bounded attempts and exponential backoff: on 503 or 421 it follows the leader hint (or
//!   tries the next node), and on a lost connection it tries the next node;
//! - sends an operator bearer token when given one.
//!
//! Writes are safe to retry because a retry resends **the same request bytes**: a body is serialized once,
//! before the first attempt, and never rebuilt (in particular a ballot is never re-encrypted).
//!
//! The response types here tolerate extra fields, so newer nodes can add to their answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use urna_keyceremony::ballot::{EncryptedBallot, SpoiledBallot};
use urna_keyceremony::ceremony::{CeremonyState, MessageKind, SignedCeremonyMessage};
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::record::ElectionRecord;

use crate::wire;

/// Where the leader is, as far as the answering node knows (sent with 503 answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's node id.
    pub id: u64,
    /// The leader's address (`host:port`), if known.
    #[serde(default)]
    pub addr: Option<String>,
}

/// An error answer of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable snake_case code (`http_<status>` when the body was not an API error).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// Leader hint (on 503 answers).
    #[serde(default)]
    pub leader: Option<LeaderHint>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    message: String,
    #[serde(default)]
    leader: Option<LeaderHint>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node answered with an API error.
    #[error("{url}: {error}")]
    Api {
        /// The node that answered.
        url: String,
        /// Its error.
        error: ApiError,
    },
    /// The node could not be reached, or the connection broke off.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The node.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The node answered 2xx with a body that does not decode.
    #[error("{url}: unexpected answer: {message}")]
    Decode {
        /// The node.
        url: String,
        /// The decoding error.
        message: String,
    },
    /// No node URL was configured.
    #[error("no node URL given (use --node URL or URNA_NODES)")]
    NoNodes,
    /// A node URL is unusable.
    #[error("invalid node URL {0:?}")]
    BadUrl(String),
    /// Every attempt failed with a retryable error.
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<Error>,
    },
}

impl Error {
    /// The API error behind this error, if a node answered with one (looking through [`Error::Exhausted`]).
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api { error, .. } => Some(error),
            Error::Exhausted { last, .. } => last.api(),
            _ => None,
        }
    }

    /// Whether another attempt (on the same or another node) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Api { error, .. } => matches!(error.status, 503 | 421),
            _ => false,
        }
    }
}

/// Bounded retries with exponential backoff.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts per request (at least 1).
    pub attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one.
    pub initial_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The pause after failed attempt number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// `GET /v1/status` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Current leader, if known.
    #[serde(default)]
    pub leader: Option<u64>,
    /// Index of the last log entry.
    #[serde(default)]
    pub last_log_index: Option<u64>,
    /// Index of the last applied entry.
    #[serde(default)]
    pub applied_index: Option<u64>,
    /// State digest at `applied_index` (hex).
    pub digest: String,
    /// Index covered by the node's current snapshot.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Last purged log index.
    #[serde(default)]
    pub purged_index: Option<u64>,
    /// Fields this client does not know yet (e.g. per-election counts).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/digest?index=N` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestAt {
    /// The log index.
    pub index: u64,
    /// The state digest after that entry (hex).
    pub digest: String,
}

/// `GET /v1/cluster` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The answering node's id.
    pub id: u64,
    /// Its role.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Current leader, if known.
    #[serde(default)]
    pub leader: Option<u64>,
    /// Voters of the current membership.
    #[serde(default)]
    pub voters: Vec<u64>,
    /// Learners of the current membership.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Every member's address.
    #[serde(default)]
    pub nodes: BTreeMap<u64, String>,
    /// Log index of the membership entry.
    #[serde(default)]
    pub membership_log_index: Option<u64>,
    /// On the leader: each member's matched log index.
    #[serde(default)]
    pub replication: Option<BTreeMap<u64, Option<u64>>>,
    /// Fields this client does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/cluster/init` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitAck {
    /// The initial members.
    pub initialized: Vec<u64>,
}

/// Answer of a committed write (learner, membership change, ...).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteAck {
    /// Log index of the entry.
    pub index: u64,
    /// State digest after it (hex).
    pub digest: String,
    /// Fields this client does not know yet (e.g. the command's reply).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Normalizes a node address into a base URL: adds `http://` when no scheme is given and drops trailing
/// slashes.
pub fn normalize_url(s: &str) -> Result<String, Error> {
    let s = s.trim();
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(Error::BadUrl(s.to_string()));
    }
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let url = url.trim_end_matches('/').to_string();
    reqwest::Url::parse(&url).map_err(|_| Error::BadUrl(s.to_string()))?;
    Ok(url)
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client of an Urna cluster; see the module documentation.
#[derive(Debug)]
pub struct Client {
    nodes: Vec<String>,
    http: reqwest::Client,
    token: Option<String>,
    policy: RetryPolicy,
    leader: Mutex<Option<String>>,
}

impl Client {
    /// A client over these node URLs (`http://host:port` or `host:port`), with the default retry policy and
    /// a 30 s request timeout.
    pub fn new<I, S>(nodes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut urls: Vec<String> = Vec::new();
        for n in nodes {
            let u = normalize_url(n.as_ref())?;
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
        if urls.is_empty() {
            return Err(Error::NoNodes);
        }
        Ok(Client {
            nodes: urls,
            http: Self::build_http(Duration::from_secs(30))?,
            token: None,
            policy: RetryPolicy::default(),
            leader: Mutex::new(None),
        })
    }

    fn build_http(timeout: Duration) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .user_agent(concat!("urna/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Unreachable {
                url: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.http = Self::build_http(timeout)?;
        Ok(self)
    }

    /// The configured node base URLs.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The last known leader's base URL.
    pub fn known_leader(&self) -> Option<String> {
        self.leader.lock().ok().and_then(|l| l.clone())
    }

    fn set_leader(&self, url: Option<String>) {
        if let Ok(mut l) = self.leader.lock() {
            *l = url;
        }
    }

    /// One request to one node, no retry. Returns the body of a 2xx answer.
    pub async fn send_once(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{base}{path}");
        let mut rb = self.http.request(method, &url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let resp = rb.send().await.map_err(|e| Error::Unreachable {
            url: base.to_string(),
            message: describe(&e),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| Error::Unreachable {
            url: base.to_string(),
            message: format!("the answer broke off: {}", describe(&e)),
        })?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => ApiError {
                status,
                code: b.error.code,
                message: b.error.message,
                leader: b.error.leader,
            },
            Err(_) => ApiError {
                status,
                code: format!("http_{status}"),
                message: String::from_utf8_lossy(&bytes).trim().chars().take(300).collect(),
                leader: None,
            },
        };
        Err(Error::Api {
            url: base.to_string(),
            error,
        })
    }

    /// A request with leader preference and retries. `body` is sent as is on every attempt.
    pub async fn request(&self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>, Error> {
        let is_write = method != Method::GET && method != Method::HEAD;
        if is_write && self.known_leader().is_none() {
            // Best effort: a follower forwards writes anyway.
            let _ = self.discover_leader().await;
        }
        let mut target = self.known_leader().unwrap_or_else(|| self.nodes[0].clone());
        let attempts = self.policy.attempts.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            match self.send_once(&target, method.clone(), path, body).await {
                Ok(b) => {
                    if is_write {
                        self.set_leader(Some(target));
                    }
                    return Ok(b);
                }
                Err(e) if e.is_retryable() => {
                    let hinted = e
                        .api()
                        .and_then(|a| a.leader.as_ref())
                        .and_then(|h| h.addr.as_deref())
                        .and_then(|a| normalize_url(a).ok())
                        .filter(|u| *u != target);
                    let next = match hinted {
                        Some(u) => {
                            self.set_leader(Some(u.clone()));
                            u
                        }
                        None => {
                            if self.known_leader().as_deref() == Some(target.as_str()) {
                                self.set_leader(None);
                            }
                            self.next_node(&target)
                        }
                    };
                    last = Some(e);
                    if attempt + 1 < attempts {
                        tokio::time::sleep(self.policy.backoff(attempt)).await;
                    }
                    target = next;
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(e) if attempts == 1 => e,
            Some(e) => Error::Exhausted {
                attempts,
                last: Box::new(e),
            },
            None => Error::NoNodes,
        })
    }

    fn next_node(&self, current: &str) -> String {
        match self.nodes.iter().position(|n| n == current) {
            Some(i) => self.nodes[(i + 1) % self.nodes.len()].clone(),
            None => self.nodes[0].clone(),
        }
    }

    /// GET `path` and decode the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let base = self.known_leader().unwrap_or_else(|| self.nodes[0].clone());
        let bytes = self.request(Method::GET, path, None).await?;
        decode(&base, &bytes)
    }

    /// POST a JSON body to `path` and decode the JSON answer. The body is serialized once; retries resend
    /// these exact bytes.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Decode {
            url: String::new(),
            message: format!("cannot encode the request: {e}"),
        })?;
        self.post_bytes(path, &bytes).await
    }

    /// POST prepared request bytes to `path` (retries resend them unchanged) and decode the JSON answer.
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, Error> {
        let bytes = self.request(Method::POST, path, Some(body)).await?;
        decode(&self.known_leader().unwrap_or_default(), &bytes)
    }

    /// GET `path` from one node, without retry.
    pub async fn get_json_from<T: DeserializeOwned>(&self, node: &str, path: &str) -> Result<T, Error> {
        let bytes = self.send_once(node, Method::GET, path, None).await?;
        decode(node, &bytes)
    }

    /// Asks every node for its status (in node order); each entry is the node URL and its answer.
    pub async fn status_all(&self) -> Vec<(String, Result<NodeStatus, Error>)> {
        let mut set = tokio::task::JoinSet::new();
        for (i, url) in self.nodes.iter().enumerate() {
            let (http, token, url) = (self.http.clone(), self.token.clone(), url.clone());
            set.spawn(async move {
                let c = Client {
                    nodes: vec![url.clone()],
                    http,
                    token,
                    policy: RetryPolicy::none(),
                    leader: Mutex::new(None),
                };
                let r = c.get_json_from::<NodeStatus>(&url, "/v1/status").await;
                (i, url, r)
            });
        }
        let mut out = Vec::new();
        while let Some(j) = set.join_next().await {
            if let Ok(x) = j {
                out.push(x);
            }
        }
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter().map(|(_, u, r)| (u, r)).collect()
    }

    /// Finds the leader through the nodes' `/v1/status` and remembers its URL. `None` when no reachable
    /// node knows a leader that is among the configured URLs.
    pub async fn discover_leader(&self) -> Result<Option<String>, Error> {
        let all = self.status_all().await;
        let mut reachable = 0;
        let mut leader_id = None;
        let mut by_id = BTreeMap::new();
        let mut last_err = None;
        for (url, r) in all {
            match r {
                Ok(s) => {
                    reachable += 1;
                    if s.role == "leader" {
                        leader_id = Some(s.id);
                    }
                    leader_id = leader_id.or(s.leader);
                    by_id.insert(s.id, url);
                }
                Err(e) => last_err = Some(e),
            }
        }
        if reachable == 0 {
            return Err(last_err.unwrap_or(Error::NoNodes));
        }
        let url = leader_id.and_then(|id| by_id.get(&id).cloned());
        self.set_leader(url.clone());
        Ok(url)
    }

    /// `GET /v1/status` of any node (the leader when known).
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        self.get_json("/v1/status").await
    }

    /// `GET /v1/status` of one node.
    pub async fn status_of(&self, node: &str) -> Result<NodeStatus, Error> {
        self.get_json_from(node, "/v1/status").await
    }

    /// `GET /v1/digest?index=N` of one node.
    pub async fn digest_of(&self, node: &str, index: u64) -> Result<DigestAt, Error> {
        self.get_json_from(node, &format!("/v1/digest?index={index}"))
            .await
    }

    /// `GET /v1/digest?index=N` of any node.
    pub async fn digest(&self, index: u64) -> Result<DigestAt, Error> {
        self.get_json(&format!("/v1/digest?index={index}")).await
    }

    /// `GET /v1/cluster` (operator token with the `cluster` role).
    pub async fn cluster(&self) -> Result<ClusterInfo, Error> {
        self.get_json("/v1/cluster").await
    }

    /// `POST /v1/cluster/init`: with `None`, the node initializes with itself and its configured peers.
    pub async fn cluster_init(&self, members: Option<&BTreeMap<u64, String>>) -> Result<InitAck, Error> {
        match members {
            None => self.post_bytes("/v1/cluster/init", b"").await,
            Some(m) => {
                self.post_json("/v1/cluster/init", &serde_json::json!({ "members": m }))
                    .await
            }
        }
    }

    /// `POST /v1/cluster/learners`: adds a learner and waits until it has caught up.
    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<WriteAck, Error> {
        self.post_json(
            "/v1/cluster/learners",
            &serde_json::json!({ "id": id, "addr": addr }),
        )
        .await
    }

    /// `POST /v1/cluster/membership`: sets the voter set (one change at a time); `retain` keeps removed
    /// voters as learners.
    pub async fn change_membership(&self, members: &BTreeSet<u64>, retain: bool) -> Result<WriteAck, Error> {
        self.post_json(
            "/v1/cluster/membership",
            &serde_json::json!({ "members": members, "retain": retain }),
        )
        .await
    }

    /// `POST /v1/elections` (admin): creates an election in Draft. The node draws the election nonce.
    pub async fn create_election(&self, req: &wire::CreateElectionRequest) -> Result<wire::WriteAck, Error> {
        self.post_json("/v1/elections", req).await
    }

    /// `GET /v1/elections`: every election with its phase and ballot count.
    pub async fn elections(&self) -> Result<wire::ElectionList, Error> {
        self.get_json("/v1/elections").await
    }

    /// `POST /v1/elections/{id}/roll` (admin): appends public credentials to the roll (until Ready).
    pub async fn add_roll(
        &self,
        election: &str,
        credentials: &[PublicCredential],
    ) -> Result<wire::WriteAck, Error> {
        self.post_json(
            &election_path(election, "/roll"),
            &serde_json::json!({ "credentials": credentials }),
        )
        .await
    }

    /// `POST /v1/elections/{id}/open` (admin): the zero-ballot confirmation.
    pub async fn open_election(&self, election: &str) -> Result<wire::WriteAck, Error> {
        self.post_bytes(&election_path(election, "/open"), b"{}").await
    }

    /// `POST /v1/elections/{id}/close` (admin): valid after `closes_at`.
    pub async fn close_election(&self, election: &str) -> Result<wire::WriteAck, Error> {
        self.post_bytes(&election_path(election, "/close"), b"{}").await
    }

    /// `POST /v1/elections/{id}/advance` (admin): moves the ceremony past an expired deadline.
    pub async fn advance_election(&self, election: &str) -> Result<wire::WriteAck, Error> {
        self.post_bytes(&election_path(election, "/advance"), b"{}").await
    }

    /// `GET /v1/elections/{id}?consistent=true`: the election summary (manifest, phase, Q, Q', K,
    /// counts), linearizable.
    pub async fn election(&self, election: &str) -> Result<wire::ElectionSummary, Error> {
        self.get_json(&election_path(election, "?consistent=true")).await
    }

    /// `GET /v1/elections/{id}/ceremony?consistent=true`: the public ceremony state custodians compute
    /// their next messages from.
    pub async fn ceremony_state(&self, election: &str) -> Result<CeremonyState, Error> {
        self.get_json(&election_path(election, "/ceremony?consistent=true"))
            .await
    }

    /// `POST /v1/elections/{id}/ceremony/{joins,deals,acks,complaints,answers,confirmations}`: one
    /// signed ceremony message, routed by its kind.
    pub async fn post_ceremony(
        &self,
        election: &str,
        msg: &SignedCeremonyMessage,
    ) -> Result<wire::WriteAck, Error> {
        let kind = match msg.body.kind() {
            MessageKind::Join => "joins",
            MessageKind::Deal => "deals",
            MessageKind::Ack => "acks",
            MessageKind::Complaint => "complaints",
            MessageKind::Answer => "answers",
            MessageKind::Confirmation => "confirmations",
        };
        self.post_json(&election_path(election, &format!("/ceremony/{kind}")), msg)
            .await
    }

    /// `POST /v1/elections/{id}/ceremony/rehearsal`: a custodian's partial decryption of the
    /// rehearsal ciphertext.
    pub async fn post_rehearsal_share(
        &self,
        election: &str,
        share: &wire::SignedPartialDecryption,
    ) -> Result<wire::WriteAck, Error> {
        self.post_json(&election_path(election, "/ceremony/rehearsal"), share)
            .await
    }

    /// `POST /v1/elections/{id}/ballots`: casts a ballot and returns the receipt (after commit).
    ///
    /// The ballot is serialized once; every retry (another node, a lost connection) resends the same
    /// bytes, and the node answers an identical retry with the original receipt, so a ballot never
    /// counts twice.
    pub async fn cast(&self, ballot: &EncryptedBallot) -> Result<wire::Receipt, Error> {
        let bytes = serde_json::to_vec(ballot).map_err(|e| Error::Decode {
            url: String::new(),
            message: format!("cannot encode the ballot: {e}"),
        })?;
        self.cast_bytes(&ballot.election_id, &bytes).await
    }

    /// Casts prepared ballot bytes (see [`Client::cast`]); keep the bytes to retry later.
    pub async fn cast_bytes(&self, election: &str, ballot_json: &[u8]) -> Result<wire::Receipt, Error> {
        self.post_bytes(&election_path(election, "/ballots"), ballot_json)
            .await
    }

    /// `POST /v1/elections/{id}/challenges`: posts a spoiled (challenged) ballot.
    pub async fn challenge(&self, spoiled: &SpoiledBallot) -> Result<wire::ChallengeAck, Error> {
        self.post_json(&election_path(&spoiled.election_id, "/challenges"), spoiled)
            .await
    }

    /// `GET /v1/elections/{id}/ballots/{tracking_code}?min_index=N`: the ballot's receipt with an
    /// inclusion proof; `min_index` (the receipt's index) makes the answering node wait until it has
    /// applied that entry.
    pub async fn ballot(
        &self,
        election: &str,
        tracking_code: &str,
        min_index: Option<u64>,
    ) -> Result<wire::BallotLookup, Error> {
        let q = min_index.map(|i| format!("?min_index={i}")).unwrap_or_default();
        self.get_json(&election_path(
            election,
            &format!("/ballots/{}{q}", encode_segment(tracking_code)),
        ))
        .await
    }

    /// `GET /v1/elections/{id}/result?consistent=true`: tally, shares received and certificate.
    pub async fn result(&self, election: &str) -> Result<wire::ResultResponse, Error> {
        self.get_json(&election_path(election, "/result?consistent=true"))
            .await
    }

    /// `POST /v1/elections/{id}/tally/shares`: a custodian's signed partial decryption of the aggregate.
    pub async fn post_tally_share(
        &self,
        election: &str,
        share: &wire::SignedPartialDecryption,
    ) -> Result<wire::WriteAck, Error> {
        self.post_json(&election_path(election, "/tally/shares"), share)
            .await
    }

    /// `POST /v1/elections/{id}/tally/signatures`: a custodian's signature share over the result hash.
    pub async fn post_signature_share(
        &self,
        election: &str,
        share: &wire::SignatureShareRequest,
    ) -> Result<wire::WriteAck, Error> {
        self.post_json(&election_path(election, "/tally/signatures"), share)
            .await
    }

    /// `GET /v1/elections/{id}/events?consistent=true`: the election's audit trail, oldest first (kept
    /// as JSON: its event shapes grow with the node).
    pub async fn events(&self, election: &str) -> Result<Value, Error> {
        self.get_json(&election_path(election, "/events?consistent=true"))
            .await
    }

    /// `GET /v1/elections/{id}/record`, decoded into an [`ElectionRecord`].
    pub async fn election_record(&self, election: &str) -> Result<ElectionRecord, Error> {
        let bytes = self.election_record_bytes(election).await?;
        decode(&self.known_leader().unwrap_or_default(), &bytes)
    }

    /// `GET /v1/elections/{id}/record`: the election record's raw bytes (decode them with
    /// `serde_json::from_slice::<ElectionRecord>`, or let `urna verify` do it).
    pub async fn election_record_bytes(&self, election: &str) -> Result<Vec<u8>, Error> {
        self.request(
            Method::GET,
            &format!("/v1/elections/{}/record", encode_segment(election)),
            None,
        )
        .await
    }
}

/// `/v1/elections/{id}` followed by `rest`, with the id percent-encoded.
fn election_path(election: &str, rest: &str) -> String {
    format!("/v1/elections/{}{rest}", encode_segment(election))
}

fn decode<T: DeserializeOwned>(url: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// A one-line description of a reqwest error with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(c) = src {
        last = c.to_string();
        src = c.source();
    }
    if !last.is_empty() {
        s.push_str(": ");
        s.push_str(&last);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(normalize_url("127.0.0.1:7001").unwrap(), "http://127.0.0.1:7001");
        assert_eq!(normalize_url("https://a.example/").unwrap(), "https://a.example");
        assert!(normalize_url("").is_err());
        assert!(normalize_url("a b").is_err());
        assert!(matches!(Client::new(Vec::<String>::new()), Err(Error::NoNodes)));
        let c = Client::new(["a:1", "http://a:1", "b:2"]).unwrap();
        assert_eq!(c.nodes(), ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0), Duration::from_millis(50));
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(30), Duration::from_secs(2));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("city-2026"), "city-2026");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn status_tolerates_extra_fields() {
        let s: NodeStatus = serde_json::from_str(
            r#"{"id":1,"role":"leader","term":2,"leader":1,"last_log_index":5,"applied_index":5,
                "digest":"00","elections":{"e":{"ballots":3}}}"#,
        )
        .unwrap();
        assert_eq!(s.applied_index, Some(5));
        assert!(s.extra.contains_key("elections"));
    }

    /// A tiny HTTP server answering each connection with the next canned response.
    async fn canned(responses: Vec<(u16, String)>) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for (status, body) in responses {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                // Read the head and the body (Content-Length).
                loop {
                    let n = s.read(&mut tmp).await.unwrap();
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap_or(0);
                        while buf.len() < p + 4 + len {
                            let n = s.read(&mut tmp).await.unwrap();
                            buf.extend_from_slice(&tmp[..n]);
                        }
                        bodies.push(buf[p + 4..p + 4 + len].to_vec());
                        break;
                    }
                    if n == 0 {
                        break;
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
            bodies
        });
        (format!("http://{addr}"), h)
    }

    #[tokio::test]
    async fn api_errors_are_typed_and_503_follows_the_leader_hint_with_the_same_bytes() {
        // Node A: always "no leader here, it is B". Node B: accepts.
        let (b, hb) = canned(vec![(200, r#"{"index":7,"digest":"ab","reply":null}"#.into())]).await;
        let hint = b.trim_start_matches("http://");
        let (a, ha) = canned(vec![(
            503,
            format!(
                r#"{{"error":{{"code":"not_leader","message":"retry","leader":{{"id":2,"addr":"{hint}"}}}}}}"#
            ),
        )])
        .await;
        let c = Client::new([a.as_str()]).unwrap().with_retry(RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        });
        // Skip discovery: pretend A is the known leader.
        c.set_leader(Some(a.clone()));
        let body = br#"{"members":[1,2],"retain":false}"#;
        let ack: WriteAck = c.post_bytes("/v1/cluster/membership", body).await.unwrap();
        assert_eq!(ack.index, 7);
        assert_eq!(c.known_leader().as_deref(), Some(b.as_str()));
        assert_eq!(ha.await.unwrap(), vec![body.to_vec()]);
        assert_eq!(hb.await.unwrap(), vec![body.to_vec()]);

        // A 409 is not retried and decodes into the typed error.
        let (d, _hd) = canned(vec![(
            409,
            r#"{"error":{"code":"already_initialized","message":"done before"}}"#.into(),
        )])
        .await;
        let c = Client::new([d.as_str()]).unwrap();
        c.set_leader(Some(d.clone()));
        let e = c.post_bytes::<Value>("/v1/cluster/init", b"").await.unwrap_err();
        let api = e.api().unwrap();
        assert_eq!((api.status, api.code.as_str()), (409, "already_initialized"));
    }

    #[tokio::test]
    async fn connection_loss_moves_to_the_next_node() {
        // A port with nothing listening.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (ok, _h) = canned(vec![(200, r#"{"index":3,"digest":"cd"}"#.into())]).await;
        let c = Client::new([dead.as_str(), ok.as_str()])
            .unwrap()
            .with_retry(RetryPolicy {
                attempts: 4,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
            });
        let d: DigestAt = c.get_json("/v1/digest?index=3").await.unwrap();
        assert_eq!(d.index, 3);

        // Every node dead: bounded attempts, then a clear error.
        let c = Client::new([dead.as_str()]).unwrap().with_retry(RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        });
        let e = c.status().await.unwrap_err();
        assert!(matches!(e, Error::Exhausted { attempts: 2, .. }), "{e}");
    }
}

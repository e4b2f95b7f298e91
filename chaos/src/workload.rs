//! Concurrent voters at a steady rate. Each credential casts once; some voters retry on an error with
//! the same ballot bytes (on the next node), some are double voters who also send a different ballot
//! of the same credential to another node at the same moment, and fault scripts can send one ballot to
//! two nodes at once ([`Workload::dual_send`]). Every attempt is bounded in time and count.
//!
//! Each operation ends as [`Outcome::Acked`] (a receipt), [`Outcome::Refused`] (a definitive API
//! refusal on the first decisive attempt) or [`Outcome::Unknown`] (timed out, connection lost, 5xx):
//! an unknown cast may or may not be recorded and never counts as lost.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use tokio::task::JoinHandle;
use urna_client::wire::Receipt;

use crate::election::Ballot;

/// How a cast ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A receipt.
    Acked(Box<Receipt>),
    /// A definitive refusal (4xx other than 421/429).
    Refused {
        /// HTTP status.
        status: u16,
        /// API error code.
        code: String,
    },
    /// No definitive answer.
    Unknown(String),
}

/// What kind of operation a cast was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A voter's single attempt.
    Cast,
    /// A voter that retries the same bytes on errors.
    Retrying,
    /// The second, different ballot of a double voter.
    Double,
    /// One copy of a ballot sent to two nodes at once.
    Dual,
    /// The liveness cast after healing.
    Final,
}

/// One finished operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// Its kind.
    pub kind: OpKind,
    /// The ballot.
    pub ballot: Arc<Ballot>,
    /// Start, ms after the workload's start.
    pub start_ms: u64,
    /// End, ms after the workload's start.
    pub end_ms: u64,
    /// Nodes tried, in order.
    pub nodes: Vec<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Workload tuning.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Casts per second.
    pub rate: f64,
    /// How long voters keep arriving.
    pub duration: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Attempts of a retrying voter.
    pub attempts: u32,
    /// Fraction of voters that retry.
    pub retry_fraction: f64,
    /// Fraction of voters that also send a second, different ballot.
    pub double_fraction: f64,
}

struct Shared {
    http: reqwest::Client,
    urls: BTreeMap<u64, String>,
    path: String,
    t0: Instant,
    cfg: WorkloadConfig,
    ops: Mutex<Vec<Op>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A planned voter.
pub struct Plan {
    /// Arrival, after the workload's start.
    pub at: Duration,
    /// First node to try.
    pub node: u64,
    /// Retries on errors.
    pub retry: bool,
    /// The ballot.
    pub ballot: Arc<Ballot>,
    /// A second, different ballot of the same credential sent at once to `second_node`.
    pub double: Option<(Arc<Ballot>, u64)>,
}

/// Draws the voters' plans: `ballots[k]` arrives at `k / rate`; `doubles` supplies second ballots.
pub fn plan(
    cfg: &WorkloadConfig,
    ballots: Vec<Ballot>,
    mut doubles: Vec<Ballot>,
    nodes: &[u64],
    rng: &mut ChaCha20Rng,
) -> Vec<Plan> {
    ballots
        .into_iter()
        .enumerate()
        .map(|(k, b)| {
            let node = *nodes.choose(rng).unwrap_or(&1);
            let retry = rng.gen_bool(cfg.retry_fraction);
            let double = if rng.gen_bool(cfg.double_fraction) {
                let other = nodes.iter().copied().find(|n| *n != node).unwrap_or(node);
                doubles.pop().map(|d| (Arc::new(d), other))
            } else {
                None
            };
            Plan {
                at: Duration::from_secs_f64(k as f64 / cfg.rate.max(0.1)),
                node,
                retry,
                ballot: Arc::new(b),
                double,
            }
        })
        .collect()
}

/// The running workload.
pub struct Workload {
    shared: Arc<Shared>,
    scheduler: JoinHandle<()>,
}

impl Workload {
    /// Starts the voters against the nodes' URLs (id -> base URL), casting to `path`.
    pub fn start(
        cfg: WorkloadConfig,
        urls: BTreeMap<u64, String>,
        path: String,
        plans: Vec<Plan>,
    ) -> anyhow::Result<Workload> {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(Duration::from_secs(1))
            .build()?;
        let shared = Arc::new(Shared {
            http,
            urls,
            path,
            t0: Instant::now(),
            cfg,
            ops: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let scheduler = tokio::spawn(async move {
            for p in plans {
                if p.at > s.cfg.duration {
                    break;
                }
                tokio::time::sleep_until((s.t0 + p.at).into()).await;
                let kind = if p.retry { OpKind::Retrying } else { OpKind::Cast };
                let attempts = if p.retry { s.cfg.attempts } else { 1 };
                spawn(&s, kind, p.ballot, p.node, attempts);
                if let Some((b, node)) = p.double {
                    spawn(&s, OpKind::Double, b, node, 1);
                }
            }
        });
        Ok(Workload { shared, scheduler })
    }

    /// Milliseconds since the workload started.
    pub fn elapsed_ms(&self) -> u64 {
        self.shared.t0.elapsed().as_millis() as u64
    }

    /// Sends one ballot to two nodes at the same moment (same bytes, one attempt each).
    pub fn dual_send(&self, ballot: Ballot, nodes: [u64; 2]) {
        let b = Arc::new(ballot);
        for n in nodes {
            spawn(&self.shared, OpKind::Dual, b.clone(), n, 1);
        }
    }

    /// Waits for the voters to arrive and every cast to end (each is bounded), then returns the
    /// operations.
    pub async fn finish(self) -> Vec<Op> {
        let _ = self.scheduler.await;
        let tasks: Vec<JoinHandle<()>> = self
            .shared
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
        self.shared
            .ops
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }

    /// The liveness cast: retries over every node until a receipt or `limit`; recorded as [`OpKind::Final`].
    pub async fn final_cast(&self, ballot: Ballot, limit: Duration) -> Op {
        let start = Instant::now();
        let ids: Vec<u64> = self.shared.urls.keys().copied().collect();
        let attempts = (limit.as_millis() / 200).max(1) as u32;
        let mut op = cast(&self.shared, OpKind::Final, Arc::new(ballot.clone()), ids[0], 1).await;
        let mut k = 1;
        while !matches!(op.outcome, Outcome::Acked(_)) && start.elapsed() < limit && k < attempts {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut next = cast(
                &self.shared,
                OpKind::Final,
                Arc::new(ballot.clone()),
                ids[k as usize % ids.len()],
                1,
            )
            .await;
            next.start_ms = op.start_ms;
            next.nodes.splice(0..0, op.nodes.iter().copied());
            op = next;
            k += 1;
        }
        if let Ok(mut ops) = self.shared.ops.lock() {
            ops.push(op.clone());
        }
        op
    }
}

fn spawn(s: &Arc<Shared>, kind: OpKind, ballot: Arc<Ballot>, node: u64, attempts: u32) {
    let s2 = s.clone();
    let h = tokio::spawn(async move {
        let op = cast(&s2, kind, ballot, node, attempts).await;
        if let Ok(mut ops) = s2.ops.lock() {
            ops.push(op);
        }
    });
    if let Ok(mut t) = s.tasks.lock() {
        t.push(h);
    }
}

enum Attempt {
    Ok(Box<Receipt>),
    Refused(u16, String),
    Retryable(String),
}

async fn attempt(s: &Shared, node: u64, body: &[u8]) -> Attempt {
    let Some(base) = s.urls.get(&node) else {
        return Attempt::Retryable(format!("no node {node}"));
    };
    let r = s
        .http
        .post(format!("{base}{}", s.path))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Attempt::Retryable("timed out".into()),
        Err(e) => return Attempt::Retryable(format!("request failed: {e}")),
    };
    let status = r.status().as_u16();
    let bytes = match r.bytes().await {
        Ok(b) => b,
        Err(e) => return Attempt::Retryable(format!("answer broke off: {e}")),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if status == 200 {
        return match serde_json::from_value::<Receipt>(v) {
            Ok(rc) => Attempt::Ok(Box::new(rc)),
            Err(e) => Attempt::Retryable(format!("undecodable receipt: {e}")),
        };
    }
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    if (400..500).contains(&status) && !matches!(status, 408 | 421 | 429) {
        Attempt::Refused(status, code)
    } else {
        Attempt::Retryable(format!("{status} {code}"))
    }
}

async fn cast(s: &Shared, kind: OpKind, ballot: Arc<Ballot>, first: u64, attempts: u32) -> Op {
    let start_ms = s.t0.elapsed().as_millis() as u64;
    let ids: Vec<u64> = s.urls.keys().copied().collect();
    let pos = ids.iter().position(|i| *i == first).unwrap_or(0);
    let mut nodes = Vec::new();
    let mut unknown_before = false;
    let mut outcome = Outcome::Unknown("no attempt".into());
    for k in 0..attempts.max(1) as usize {
        let node = ids[(pos + k) % ids.len()];
        nodes.push(node);
        match attempt(s, node, &ballot.bytes).await {
            Attempt::Ok(r) => {
                outcome = Outcome::Acked(r);
                break;
            }
            Attempt::Refused(status, code) => {
                // After an unknown attempt a refusal says nothing definitive about the first one.
                outcome = if unknown_before {
                    Outcome::Unknown(format!("refused {status} {code} after an unknown attempt"))
                } else {
                    Outcome::Refused { status, code }
                };
                break;
            }
            Attempt::Retryable(why) => {
                unknown_before = true;
                outcome = Outcome::Unknown(why);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Op {
        kind,
        ballot,
        start_ms,
        end_ms: s.t0.elapsed().as_millis() as u64,
        nodes,
        outcome,
    }
}

//! Prometheus metrics (`GET /metrics`, text exposition format through `prometheus-client`).
//!
//! One process-wide set of metrics ([`global`]): the store records apply and fsync durations, the API
//! counts proposals and ballots, and [`watch_raft`] follows the Raft metrics (leader, term, indexes).
//! **No metric ever carries anything about a voter**: the only label is `reason` on rejected ballots,
//! and it is the API's error code.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::Raft;

/// The label of `urna_ballots_rejected_total`: the refusal's error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// snake_case error code (never anything about the voter).
    pub reason: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// 1 when a leader is known, else 0.
    pub has_leader: Gauge,
    /// Times the known leader changed (including to "none").
    pub leader_changes: Counter,
    /// Proposals this node made that were committed and applied.
    pub proposals_committed: Counter,
    /// Proposals this node made that failed (no quorum, Raft stopped, membership refused).
    pub proposals_failed: Counter,
    /// Ballots recorded through this node's proposals.
    pub ballots_cast: Counter,
    /// Casts this node refused, by error code.
    pub ballots_rejected: Family<Reason, Counter>,
    /// Duration of one applied batch (the sled transaction), seconds.
    pub apply_duration: Histogram,
    /// Duration of one sled flush (log append, vote, state machine), seconds.
    pub fsync_duration: Histogram,
    /// Current Raft term.
    pub term: Gauge,
    /// Last applied log index.
    pub applied_index: Gauge,
    /// Last log index.
    pub last_log_index: Gauge,
}

fn seconds_histogram() -> Histogram {
    // 50 us .. ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("urna");
        let m = Metrics {
            has_leader: Gauge::default(),
            leader_changes: Counter::default(),
            proposals_committed: Counter::default(),
            proposals_failed: Counter::default(),
            ballots_cast: Counter::default(),
            ballots_rejected: Family::default(),
            apply_duration: seconds_histogram(),
            fsync_duration: seconds_histogram(),
            term: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "has_leader",
            "1 when this node knows a leader",
            m.has_leader.clone(),
        );
        r.register(
            "leader_changes",
            "Changes of the known leader",
            m.leader_changes.clone(),
        );
        r.register(
            "proposals_committed",
            "Proposals made by this node that were committed and applied",
            m.proposals_committed.clone(),
        );
        r.register(
            "proposals_failed",
            "Proposals made by this node that failed",
            m.proposals_failed.clone(),
        );
        r.register(
            "ballots_cast",
            "Ballots recorded through this node",
            m.ballots_cast.clone(),
        );
        r.register(
            "ballots_rejected",
            "Casts refused by this node, by error code",
            m.ballots_rejected.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "Duration of applying one batch of entries",
            m.apply_duration.clone(),
        );
        r.register(
            "fsync_duration_seconds",
            "Duration of one storage flush",
            m.fsync_duration.clone(),
        );
        r.register("term", "Current Raft term", m.term.clone());
        r.register("applied_index", "Last applied log index", m.applied_index.clone());
        r.register("last_log_index", "Last log index", m.last_log_index.clone());
        Metrics { registry, ..m }
    }

    /// Counts a refused cast under its error code.
    pub fn ballot_rejected(&self, code: &str) {
        self.ballots_rejected
            .get_or_create(&Reason {
                reason: code.to_string(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Times a closure or future section: observe the elapsed seconds into `h` when dropped.
pub struct Timer<'a> {
    h: &'a Histogram,
    start: Instant,
}

impl<'a> Timer<'a> {
    /// Starts timing into `h`.
    pub fn start(h: &'a Histogram) -> Self {
        Timer {
            h,
            start: Instant::now(),
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.h.observe(self.start.elapsed().as_secs_f64());
    }
}

fn gauge_u64(g: &Gauge, v: Option<u64>) {
    g.set(v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)));
}

/// Follows the Raft metrics until Raft stops: leader, leader changes, term and indexes.
pub fn watch_raft(raft: &Raft) {
    let mut rx = raft.metrics();
    tokio::spawn(async move {
        let m = global();
        let mut leader = None;
        loop {
            {
                let r = rx.borrow_and_update();
                if r.current_leader != leader {
                    leader = r.current_leader;
                    m.leader_changes.inc();
                }
                m.has_leader.set(i64::from(r.current_leader.is_some()));
                gauge_u64(&m.term, Some(r.current_term));
                gauge_u64(&m.applied_index, r.last_applied.map(|l| l.index));
                gauge_u64(&m.last_log_index, r.last_log_index);
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}

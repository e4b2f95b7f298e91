//! The run report: JSON for machines plus a one-screen summary, and the verdict's exit code.

use serde::Serialize;

use crate::checker::Invariants;
use crate::faults::FaultWindow;
use crate::workload::{Op, Outcome};

/// The verdict of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every invariant held.
    Valid,
    /// An invariant was violated.
    Invalid,
    /// The harness could not decide (setup failed, ...).
    Unknown,
}

impl Verdict {
    /// The process exit code: 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }

    /// The worst of two verdicts (invalid > unknown > valid).
    pub fn worst(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }
}

/// Cast outcomes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Acknowledged.
    pub ok: u64,
    /// Definitively refused.
    pub failed: u64,
    /// Unknown (timed out, connection lost, 5xx).
    pub unknown: u64,
}

/// Throughput and latency in one phase of the run.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseStats {
    /// `before`, `during` or `after` the faults.
    pub phase: String,
    /// Phase length (ms).
    pub length_ms: u64,
    /// Casts started in it.
    pub counts: Counts,
    /// Acknowledged casts per second.
    pub throughput_per_s: f64,
    /// 99th percentile latency of acknowledged casts (ms).
    pub p99_ms: Option<u64>,
}

/// One node's final state.
#[derive(Clone, Debug, Serialize)]
pub struct NodeFinal {
    /// Node id.
    pub id: u64,
    /// Whether it is a voting member at the end.
    pub member: bool,
    /// Term (live, before stopping).
    pub term: Option<u64>,
    /// Leader it knew (live).
    pub leader: Option<u64>,
    /// Applied index (from its data after stopping).
    pub applied_index: u64,
    /// Digest at it (from its data).
    pub digest: String,
    /// Ballots recorded.
    pub ballots: usize,
}

/// One scenario's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed (replays the fault schedule and every random choice).
    pub seed: u64,
    /// Voting members at the start.
    pub nodes: u64,
    /// Workload duration (ms).
    pub duration_ms: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, when not valid.
    pub reason: Option<String>,
    /// Faults injected (ms after the workload's start).
    pub faults: Vec<FaultWindow>,
    /// All casts.
    pub counts: Counts,
    /// Before, during and after the faults.
    pub phases: Vec<PhaseStats>,
    /// Every invariant.
    pub invariants: Invariants,
    /// Time from healing until every member reported the same (applied index, digest).
    pub convergence_ms: Option<u64>,
    /// Every node at the end.
    pub final_nodes: Vec<NodeFinal>,
    /// The certified tally (flat counts).
    pub certified_tally: Option<Vec<u64>>,
    /// Observations of the fault scripts.
    pub notes: Vec<String>,
    /// The cluster's directory, kept when the run was not valid.
    pub kept_dir: Option<String>,
    /// Wall time of the whole run (ms).
    pub elapsed_ms: u64,
}

/// Counts of outcomes.
pub fn counts<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Counts {
    let mut c = Counts::default();
    for op in ops {
        match op.outcome {
            Outcome::Acked(_) => c.ok += 1,
            Outcome::Refused { .. } => c.failed += 1,
            Outcome::Unknown(_) => c.unknown += 1,
        }
    }
    c
}

/// Splits the operations by start time at `[fault_start, fault_end)` of a run of `total_ms`.
pub fn phases(ops: &[Op], fault_start: u64, fault_end: u64, total_ms: u64) -> Vec<PhaseStats> {
    let spans = [
        ("before", 0, fault_start),
        ("during", fault_start, fault_end),
        ("after", fault_end, total_ms.max(fault_end)),
    ];
    spans
        .iter()
        .map(|&(name, a, b)| {
            let in_phase: Vec<&Op> = ops
                .iter()
                .filter(|o| o.start_ms >= a && (o.start_ms < b || name == "after"))
                .collect();
            let c = counts(in_phase.iter().copied());
            let mut lat: Vec<u64> = in_phase
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Acked(_)))
                .map(|o| o.end_ms - o.start_ms)
                .collect();
            lat.sort_unstable();
            let p99 = (!lat.is_empty()).then(|| lat[((lat.len() * 99).div_ceil(100)).saturating_sub(1)]);
            let len = b.saturating_sub(a);
            PhaseStats {
                phase: name.into(),
                length_ms: len,
                throughput_per_s: if len == 0 {
                    0.0
                } else {
                    c.ok as f64 * 1000.0 / len as f64
                },
                counts: c,
                p99_ms: p99,
            }
        })
        .collect()
}

impl Report {
    /// The one-screen summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let v = match self.verdict {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Unknown => "UNKNOWN",
        };
        s.push_str(&format!(
            "== {} (seed {}, {} nodes, {:.1} s workload): {v}{}\n",
            self.scenario,
            self.seed,
            self.nodes,
            self.duration_ms as f64 / 1000.0,
            self.reason
                .as_deref()
                .map(|r| format!(" - {r}"))
                .unwrap_or_default()
        ));
        for f in &self.faults {
            s.push_str(&format!(
                "   fault  {:>6}..{:<6} ms  {}\n",
                f.start_ms, f.end_ms, f.what
            ));
        }
        s.push_str(&format!(
            "   casts  ok {}  failed {}  unknown {}\n",
            self.counts.ok, self.counts.failed, self.counts.unknown
        ));
        for p in &self.phases {
            s.push_str(&format!(
                "   {:<7} {:>6} ms  ok {:>3} failed {:>3} unknown {:>3}  {:>6.1}/s  p99 {}\n",
                p.phase,
                p.length_ms,
                p.counts.ok,
                p.counts.failed,
                p.counts.unknown,
                p.throughput_per_s,
                p.p99_ms.map(|x| format!("{x} ms")).unwrap_or_else(|| "-".into())
            ));
        }
        let i = &self.invariants;
        for (name, c) in [
            ("I1 no lost ack", &i.i1_no_lost_ack),
            ("I2 no double", &i.i2_no_double),
            ("I3 no phantom", &i.i3_no_phantom),
            ("I4 convergence", &i.i4_convergence),
            ("I5 liveness", &i.i5_liveness),
            ("tally", &i.tally),
        ] {
            s.push_str(&format!(
                "   {:<15} {:>4} checked, {} violated{}\n",
                name,
                c.checked,
                c.violations,
                c.examples
                    .first()
                    .map(|e| format!("  e.g. {e}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(ms) = self.convergence_ms {
            s.push_str(&format!("   converged {ms} ms after healing\n"));
        }
        for n in &self.final_nodes {
            s.push_str(&format!(
                "   node {}{} term {} leader {} applied {} digest {}… ballots {}\n",
                n.id,
                if n.member { "" } else { " (not a member)" },
                n.term.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                n.leader.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                n.applied_index,
                n.digest.get(..12).unwrap_or(&n.digest),
                n.ballots
            ));
        }
        for note in &self.notes {
            s.push_str(&format!("   note: {note}\n"));
        }
        if let Some(d) = &self.kept_dir {
            s.push_str(&format!("   logs and data kept in {d}\n"));
        }
        s
    }
}

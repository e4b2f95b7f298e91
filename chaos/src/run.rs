//! One scenario run, start to verdict: cluster, election, voters, faults, healing, liveness,
//! convergence, close and tally, then every node stopped and its data checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::checker::{self, Invariants, NodeData};
use crate::cluster::{Cluster, ClusterSpec, ADMIN_TOKEN};
use crate::election::{self, now_ms, Ballot, Election};
use crate::faults::{self, FaultCtx, Scenario};
use crate::report::{self, NodeFinal, Report, Verdict};
use crate::workload::{self, Op, Outcome, Workload, WorkloadConfig};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Voting members (3 or 5).
    pub nodes: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Workload duration; the fault window is its middle half.
    pub duration: Duration,
    /// Casts per second.
    pub rate: f64,
    /// The `urna-node` binary.
    pub binary: PathBuf,
    /// Where clusters live (a temporary directory when `None`).
    pub work_dir: Option<PathBuf>,
    /// Time allowed for cluster start and the ceremony before voting (sets the window's end).
    pub setup_budget: Duration,
    /// Keep the directory even when valid.
    pub keep: bool,
}

/// How long members may take to agree (I4), polled once the workload has quiesced; the report gives
/// the time from healing.
pub const CONVERGENCE_LIMIT: Duration = Duration::from_secs(10);

/// Runs one scenario and returns its report (never panics on cluster trouble: that is a verdict).
pub async fn run(s: Scenario, o: &RunOptions) -> Report {
    let t0 = Instant::now();
    let dir = match &o.work_dir {
        Some(base) => tempfile::Builder::new()
            .prefix(&format!("chaos-{}-", s.name()))
            .tempdir_in(base),
        None => tempfile::Builder::new()
            .prefix(&format!("urna-chaos-{}-", s.name()))
            .tempdir(),
    };
    let mut report = Report {
        scenario: s.name().into(),
        seed: o.seed,
        nodes: o.nodes,
        duration_ms: o.duration.as_millis() as u64,
        verdict: Verdict::Unknown,
        reason: None,
        faults: Vec::new(),
        counts: Default::default(),
        phases: Vec::new(),
        invariants: Invariants::default(),
        convergence_ms: None,
        final_nodes: Vec::new(),
        certified_tally: None,
        notes: Vec::new(),
        kept_dir: None,
        elapsed_ms: 0,
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            report.reason = Some(format!("no work directory: {e}"));
            return report;
        }
    };
    let spec = ClusterSpec {
        nodes: s.configured_nodes(o.nodes),
        raft_extra: s.raft_extra().into(),
        binary: o.binary.clone(),
        seed: o.seed,
    };
    let outcome = match Cluster::start(&spec, dir.path()).await {
        Ok(cluster) => {
            let r = drive(s, o, &cluster, &mut report).await;
            if r.is_err() {
                cluster.print_log_tails(15);
            }
            drop(cluster);
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        report.verdict = Verdict::Unknown;
        report.reason = Some(format!("{e:#}"));
    }
    if report.verdict != Verdict::Valid || o.keep {
        report.kept_dir = Some(dir.keep().display().to_string());
    }
    report.elapsed_ms = t0.elapsed().as_millis() as u64;
    report
}

/// Seconds of voting window after the workload: final cast and slack.
fn grace(o: &RunOptions) -> Duration {
    Duration::from_secs(4) + o.duration / 4
}

async fn drive(s: Scenario, o: &RunOptions, c: &Cluster, report: &mut Report) -> anyhow::Result<()> {
    let setup_start = Instant::now();
    let closes_at = now_ms() + (o.setup_budget + o.duration + grace(o)).as_millis() as i64;
    let members: Vec<u64> = (1..=o.nodes).collect();
    c.init(&members).await?;
    c.agreed_leader(&members, Duration::from_secs(20))
        .await
        .ok_or_else(|| anyhow::anyhow!("no leader after init"))?;
    let mut rng = ChaCha20Rng::seed_from_u64(o.seed ^ (s as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let voters = (o.rate * o.duration.as_secs_f64()).ceil().max(4.0) as usize;
    let doubles = voters / 10 + 1;
    let spare = 2;
    let admin = c.client(&members, Some(ADMIN_TOKEN), Duration::from_secs(10))?;
    let e: Election = election::setup(
        &admin,
        &format!("chaos-{}", s.name()),
        voters + spare + 1,
        closes_at,
        &mut rng,
    )
    .await?;
    let mut ballots: Vec<Ballot> = (0..voters)
        .map(|v| e.ballot(v, &mut rng))
        .collect::<Result<_, _>>()?;
    let seconds: Vec<Ballot> = (0..doubles)
        .map(|k| e.ballot(k * 7 % voters, &mut rng))
        .collect::<Result<_, _>>()?;
    let spares: Vec<Ballot> = (voters..voters + spare)
        .map(|v| e.ballot(v, &mut rng))
        .collect::<Result<_, _>>()?;
    let final_ballot = e.ballot(voters + spare, &mut rng)?;
    report
        .notes
        .push(format!("setup took {} ms", setup_start.elapsed().as_millis()));
    let left = closes_at - now_ms();
    if left < (o.duration + grace(o) / 2).as_millis() as i64 {
        anyhow::bail!(
            "setup overran its budget ({:?}); rerun with a larger --setup-budget",
            o.setup_budget
        );
    }

    let cfg = WorkloadConfig {
        rate: o.rate,
        duration: o.duration,
        request_timeout: Duration::from_secs(2),
        attempts: 4,
        retry_fraction: 0.5,
        double_fraction: 0.1,
    };
    // Double voters' second ballots must belong to voters that cast: pair them by credential.
    let mut by_voter: BTreeMap<usize, Ballot> = seconds.into_iter().map(|b| (b.voter, b)).collect();
    let firsts: Vec<Ballot> = std::mem::take(&mut ballots);
    let mut plans = workload::plan(&cfg, firsts, Vec::new(), &members, &mut rng);
    for p in &mut plans {
        if let Some(b) = by_voter.remove(&p.ballot.voter) {
            let other = members.iter().copied().find(|n| *n != p.node).unwrap_or(p.node);
            p.double = Some((std::sync::Arc::new(b), other));
        }
    }
    let urls: BTreeMap<u64, String> = members.iter().map(|i| (*i, c.url(*i))).collect();
    let wl = Workload::start(cfg, urls, e.cast_path(), plans)?;

    // Faults in the middle half of the workload.
    let pre = o.duration / 4;
    let window = o.duration / 2;
    tokio::time::sleep(pre).await;
    let mut fctx = FaultCtx {
        cluster: c,
        workload: &wl,
        members: members.clone(),
        window,
        rng: ChaCha20Rng::seed_from_u64(o.seed.wrapping_add(s as u64)),
        spare: spares,
        windows: Vec::new(),
        notes: Vec::new(),
    };
    let fault_result = faults::inject(s, &mut fctx).await;
    heal(c);
    let healed_ms = wl.elapsed_ms();
    let healed_at = Instant::now();
    let members = fctx.members.clone();
    report.faults = fctx.windows.clone();
    report.notes.append(&mut fctx.notes);
    if let Err(e) = fault_result {
        report.notes.push(format!("fault script error: {e:#}"));
    }
    let fault_start = report
        .faults
        .iter()
        .map(|f| f.start_ms)
        .min()
        .unwrap_or(pre.as_millis() as u64);
    let fault_end = report
        .faults
        .iter()
        .map(|f| f.end_ms)
        .max()
        .unwrap_or(healed_ms)
        .max(fault_start);
    let rest = o.duration.saturating_sub(Duration::from_millis(wl.elapsed_ms()));
    tokio::time::sleep(rest).await;

    // I5: a final cast and a consistent read after healing.
    let final_op = wl.final_cast(final_ballot, Duration::from_secs(15)).await;
    let ops: Vec<Op> = wl.finish().await;
    let total_ms = ops.iter().map(|o| o.end_ms).max().unwrap_or(0);
    let inv = &mut report.invariants;
    match &final_op.outcome {
        Outcome::Acked(_) => inv.i5_liveness.checked += 1,
        other => {
            inv.i5_liveness.checked += 1;
            inv.i5_liveness.violations += 1;
            inv.i5_liveness
                .examples
                .push(format!("the final cast did not succeed: {other:?}"));
        }
    }
    let reader = c.client(&members, None, Duration::from_secs(5))?;
    let read: Result<serde_json::Value, _> = reader
        .get_json(&format!("/v1/elections/{}?consistent=true", e.id))
        .await;
    inv.i5_liveness.checked += 1;
    if let Err(err) = read {
        inv.i5_liveness.violations += 1;
        inv.i5_liveness
            .examples
            .push(format!("consistent read failed: {err}"));
    }

    // I4: every member reports the same (applied index, digest).
    let conv_start = Instant::now();
    let mut converged = None;
    let mut last_seen = Vec::new();
    while conv_start.elapsed() < CONVERGENCE_LIMIT {
        let mut seen = Vec::new();
        for id in &members {
            seen.push(c.status(*id).await.map(|s| (s.applied_index, s.digest)));
        }
        let all_same = seen.iter().all(|x| x.is_some() && *x == seen[0]);
        last_seen = seen;
        if all_same {
            converged = Some(healed_at.elapsed().as_millis() as u64);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.convergence_ms = converged;
    inv.i4_convergence.checked += 1;
    if converged.is_none() {
        inv.i4_convergence.violations += 1;
        inv.i4_convergence.examples.push(format!(
            "members {members:?} did not agree within {CONVERGENCE_LIMIT:?}: {last_seen:?}"
        ));
    }
    let mut live = BTreeMap::new();
    for id in c.ids() {
        live.insert(id, c.status(id).await);
    }

    // Close, decrypt, certify.
    let limit = Duration::from_millis((e.closes_at - now_ms()).max(0) as u64) + Duration::from_secs(30);
    let result = match e.close_and_tally(&admin, &mut rng, limit).await {
        Ok(r) => Some(r),
        Err(err) => {
            report.notes.push(format!("close and tally failed: {err:#}"));
            None
        }
    };
    report.certified_tally = result.as_ref().and_then(|r| r.tally.as_ref().map(|t| t.flat()));

    // Every node stops; its data is read directly.
    let mut data: Vec<NodeData> = Vec::new();
    for id in c.ids() {
        c.stop(id);
    }
    for id in c.ids() {
        match checker::read_node(id, &c.data_dir(id), &e.id) {
            Ok(d) => data.push(d),
            Err(err) => report.notes.push(format!("node {id}: {err:#}")),
        }
    }
    checker::check(&ops, &data, &members, result.as_ref(), &mut report.invariants);
    for id in c.ids() {
        if let Some(d) = data.iter().find(|d| d.id == id) {
            let st = live.get(&id).cloned().flatten();
            report.final_nodes.push(NodeFinal {
                id,
                member: members.contains(&id),
                term: st.as_ref().map(|s| s.term),
                leader: st.as_ref().and_then(|s| s.leader),
                applied_index: d.applied,
                digest: d.digest.clone(),
                ballots: d.ballots.len(),
            });
        }
        if s == Scenario::Snapshot {
            let log = std::fs::read_to_string(c.log(id)).unwrap_or_default();
            if log.contains("installed snapshot") {
                report.notes.push(format!("node {id} installed a snapshot"));
            }
        }
    }
    report.counts = report::counts(&ops);
    report.phases = report::phases(&ops, fault_start, fault_end, total_ms);
    let missing = c.ids().len() - data.len();
    report.verdict = if !report.invariants.passed() {
        Verdict::Invalid
    } else if missing > 0 || result.is_none() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    if report.verdict == Verdict::Invalid {
        report.reason = Some("an invariant was violated".into());
    } else if report.verdict == Verdict::Unknown {
        report.reason = Some("the run could not be completed (see notes)".into());
    }
    Ok(())
}

/// Heals everything: links pass, paused nodes continue, killed nodes restart.
fn heal(c: &Cluster) {
    c.mesh.heal();
    for id in c.ids() {
        if c.is_running(id) {
            let _ = c.resume(id);
        } else {
            let _ = c.start_node(id);
        }
    }
}

//! The scenarios' fault scripts. Each runs during the fault window while the voters keep casting, uses
//! only the run's seeded RNG for its choices, and leaves the cluster healed (the runner heals again to
//! be sure). Every wait is bounded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use serde_json::json;

use crate::cluster::{Cluster, ADMIN_TOKEN, OPS_TOKEN};
use crate::election::Ballot;
use crate::proxy::LinkMode;
use crate::workload::Workload;

/// A scenario, selectable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// 1: no faults.
    Baseline,
    /// 2: SIGKILL the leader, restart it.
    KillLeader,
    /// 3: SIGKILL a follower (two with 5 nodes), restart.
    KillFollower,
    /// 4: SIGKILL every node, restart them all.
    KillAll,
    /// 5: the leader alone (with 5 nodes: with one follower) in the minority.
    IsolateLeader,
    /// 6: a partition that leaves the leader in the majority, then heal.
    PartitionFollower,
    /// 7: a follower cut off until the leader purged past it, so it catches up by a snapshot.
    Snapshot,
    /// 8: SIGSTOP the leader past the election timeout, then SIGCONT.
    PauseLeader,
    /// 9: flaky links: 50% drop or 75±50 ms delay, redrawn every second.
    FlakyLinks,
    /// 10: add two learners, promote them, remove the leader (3 -> 5 -> 3 voters).
    Membership,
    /// 11: a seeded mix of overlapping faults, one ballot sent to two nodes during a leader change.
    Mix,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 11] = [
        Scenario::Baseline,
        Scenario::KillLeader,
        Scenario::KillFollower,
        Scenario::KillAll,
        Scenario::IsolateLeader,
        Scenario::PartitionFollower,
        Scenario::Snapshot,
        Scenario::PauseLeader,
        Scenario::FlakyLinks,
        Scenario::Membership,
        Scenario::Mix,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Baseline => "baseline",
            Scenario::KillLeader => "kill-leader",
            Scenario::KillFollower => "kill-follower",
            Scenario::KillAll => "kill-all",
            Scenario::IsolateLeader => "isolate-leader",
            Scenario::PartitionFollower => "partition-follower",
            Scenario::Snapshot => "snapshot",
            Scenario::PauseLeader => "pause-leader",
            Scenario::FlakyLinks => "flaky-links",
            Scenario::Membership => "membership",
            Scenario::Mix => "mix",
        }
    }

    /// Parses a name or its number (1-11).
    pub fn parse(s: &str) -> Option<Scenario> {
        if let Ok(n) = s.parse::<usize>() {
            return Scenario::ALL.get(n.checked_sub(1)?).copied();
        }
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Nodes to configure for a cluster of `n` voters (membership grows from `n` to `n + 2`).
    pub fn configured_nodes(self, n: u64) -> u64 {
        if self == Scenario::Membership {
            n + 2
        } else {
            n
        }
    }

    /// Extra `[raft]` settings: a small snapshot policy where snapshots matter.
    pub fn raft_extra(self) -> &'static str {
        match self {
            Scenario::Snapshot | Scenario::Mix | Scenario::KillLeader => {
                "snapshot_logs_since_last = 10\nmax_in_snapshot_log_to_keep = 0"
            }
            _ => "",
        }
    }
}

/// One fault, as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    /// What was done.
    pub what: String,
    /// Start, ms after the workload's start.
    pub start_ms: u64,
    /// End (healed), ms after the workload's start.
    pub end_ms: u64,
}

/// What a fault script works with.
pub struct FaultCtx<'a> {
    /// The cluster.
    pub cluster: &'a Cluster,
    /// The running voters.
    pub workload: &'a Workload,
    /// Current voting members (a membership change updates it).
    pub members: Vec<u64>,
    /// The fault window's length.
    pub window: Duration,
    /// The run's RNG (fault choices).
    pub rng: ChaCha20Rng,
    /// Ballots reserved for sends to two nodes at once.
    pub spare: Vec<Ballot>,
    /// The faults injected.
    pub windows: Vec<FaultWindow>,
    /// Observations for the report.
    pub notes: Vec<String>,
}

impl FaultCtx<'_> {
    fn now(&self) -> u64 {
        self.workload.elapsed_ms()
    }

    fn begin(&mut self, what: impl Into<String>) -> usize {
        let now = self.now();
        self.windows.push(FaultWindow {
            what: what.into(),
            start_ms: now,
            end_ms: now,
        });
        self.windows.len() - 1
    }

    fn end(&mut self, k: usize) {
        let now = self.now();
        if let Some(w) = self.windows.get_mut(k) {
            w.end_ms = now;
        }
    }

    async fn leader(&self) -> u64 {
        let l = self
            .cluster
            .agreed_leader(&self.members, Duration::from_secs(10))
            .await;
        match l {
            Some(l) => l,
            None => self
                .cluster
                .some_leader(&self.members)
                .await
                .unwrap_or(self.members[0]),
        }
    }

    fn followers(&self, leader: u64) -> Vec<u64> {
        self.members.iter().copied().filter(|m| *m != leader).collect()
    }

    /// Sends a spare ballot to two nodes other than `not` at the same moment.
    fn dual_send(&mut self, not: u64) {
        let others: Vec<u64> = self.members.iter().copied().filter(|m| *m != not).collect();
        if let (Some(b), [a, c, ..]) = (self.spare.pop(), others.as_slice()) {
            self.notes.push(format!(
                "ballot of voter {} sent to nodes {a} and {c} at once",
                b.voter
            ));
            self.workload.dual_send(b, [*a, *c]);
        }
    }
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Runs the scenario's faults (none for the baseline).
pub async fn inject(s: Scenario, ctx: &mut FaultCtx<'_>) -> anyhow::Result<()> {
    let w = ctx.window;
    let c = ctx.cluster;
    let minority = |n: usize| (n - 1) / 2;
    match s {
        Scenario::Baseline => sleep(w).await,
        Scenario::KillLeader => {
            let l = ctx.leader().await;
            c.kill(l);
            let k = ctx.begin(format!("SIGKILL leader {l}"));
            sleep(Duration::from_millis(300)).await;
            ctx.dual_send(l);
            sleep(w.saturating_sub(Duration::from_millis(300))).await;
            c.start_node(l)?;
            ctx.end(k);
        }
        Scenario::KillFollower => {
            let l = ctx.leader().await;
            let mut f = ctx.followers(l);
            f.shuffle(&mut ctx.rng);
            f.truncate(minority(ctx.members.len()));
            for id in &f {
                c.kill(*id);
            }
            let k = ctx.begin(format!("SIGKILL followers {f:?}"));
            sleep(w).await;
            for id in &f {
                c.start_node(*id)?;
            }
            ctx.end(k);
        }
        Scenario::KillAll => {
            let all = ctx.members.clone();
            for id in &all {
                c.kill(*id);
            }
            let k = ctx.begin(format!("SIGKILL every node {all:?}"));
            sleep(w.min(Duration::from_secs(2))).await;
            for id in &all {
                c.start_node(*id)?;
            }
            ctx.end(k);
            sleep(w.saturating_sub(Duration::from_secs(2))).await;
        }
        Scenario::IsolateLeader => {
            let l = ctx.leader().await;
            let mut f = ctx.followers(l);
            f.shuffle(&mut ctx.rng);
            let mut small = vec![l];
            small.extend(f.drain(..minority(ctx.members.len()) - 1));
            c.mesh.partition(&[small.clone(), f.clone()]);
            let k = ctx.begin(format!("partition {small:?} (leader's minority) | {f:?}"));
            sleep(w).await;
            c.mesh.heal();
            ctx.end(k);
        }
        Scenario::PartitionFollower => {
            let l = ctx.leader().await;
            let mut f = ctx.followers(l);
            f.shuffle(&mut ctx.rng);
            let small: Vec<u64> = f.drain(..minority(ctx.members.len())).collect();
            let mut big = vec![l];
            big.extend(f);
            c.mesh.partition(&[small.clone(), big.clone()]);
            let k = ctx.begin(format!("partition {small:?} | {big:?} (leader's majority)"));
            sleep(w).await;
            c.mesh.heal();
            ctx.end(k);
        }
        Scenario::Snapshot => snapshot(ctx).await?,
        Scenario::PauseLeader => {
            let l = ctx.leader().await;
            c.pause(l)?;
            let k = ctx.begin(format!("SIGSTOP leader {l}"));
            let start = Instant::now();
            let others = ctx.followers(l);
            let limit = w.max(Duration::from_secs(5));
            let mut elected = None;
            while start.elapsed() < limit {
                if let Some(n) = c.agreed_leader(&others, Duration::from_millis(200)).await {
                    elected = Some(n);
                    break;
                }
            }
            sleep(w.saturating_sub(start.elapsed())).await;
            c.resume(l)?;
            ctx.end(k);
            ctx.notes.push(match elected {
                Some(n) => format!("node {n} was elected while leader {l} was stopped"),
                None => format!("no new leader while leader {l} was stopped"),
            });
        }
        Scenario::FlakyLinks => {
            let k = ctx.begin("flaky links: 50% drop or 75±50 ms delay per link, redrawn each second");
            let start = Instant::now();
            while start.elapsed() < w {
                for (a, b) in c.mesh.links() {
                    let mode = match ctx.rng.gen_range(0..3) {
                        0 => LinkMode::Pass,
                        1 => LinkMode::Drop(0.5),
                        _ => LinkMode::Delay {
                            ms: 75,
                            jitter_ms: 50,
                        },
                    };
                    c.mesh.set(a, b, mode);
                }
                sleep(Duration::from_secs(1).min(w.saturating_sub(start.elapsed()))).await;
            }
            c.mesh.heal();
            ctx.end(k);
        }
        Scenario::Membership => membership(ctx).await?,
        Scenario::Mix => mix(ctx).await?,
    }
    Ok(())
}

async fn snapshot(ctx: &mut FaultCtx<'_>) -> anyhow::Result<()> {
    let c = ctx.cluster;
    let l = ctx.leader().await;
    let f = *ctx.followers(l).choose(&mut ctx.rng).unwrap_or(&l);
    let cut_at = c.status(f).await.and_then(|s| s.applied_index).unwrap_or(0);
    c.mesh.isolate(f);
    let k = ctx.begin(format!("follower {f} cut off until the leader purged past it"));
    let admin = c.client(&ctx.members, Some(ADMIN_TOKEN), Duration::from_secs(2))?;
    let start = Instant::now();
    let limit = ctx.window.max(Duration::from_secs(3)) * 3;
    let mut purged = None;
    let mut notes_written = 0;
    // Bounded: at most `limit`, at most 300 notes (each a log entry that moves the log on).
    while start.elapsed() < limit {
        let p = c.status(l).await.and_then(|s| s.purged_index);
        if p.is_some_and(|p| p > cut_at) && start.elapsed() >= ctx.window {
            purged = p;
            break;
        }
        if notes_written < 300 {
            let r: Result<serde_json::Value, _> = admin
                .post_json("/v1/notes", &json!({ "text": "chaos: move the log on" }))
                .await;
            notes_written += u64::from(r.is_ok());
        }
        sleep(Duration::from_millis(100)).await;
    }
    c.mesh.heal();
    ctx.end(k);
    ctx.notes.push(match purged {
        Some(p) => format!(
            "leader {l} purged its log to {p} while follower {f} stood at {cut_at} ({notes_written} notes written)"
        ),
        None => format!("leader {l} did not purge past follower {f}'s index {cut_at} in time"),
    });
    Ok(())
}

async fn membership(ctx: &mut FaultCtx<'_>) -> anyhow::Result<()> {
    let c = ctx.cluster;
    let all = c.ids();
    let new: Vec<u64> = all.iter().copied().filter(|i| !ctx.members.contains(i)).collect();
    let ops = c.client(&ctx.members, Some(OPS_TOKEN), Duration::from_secs(30))?;
    let k = ctx.begin(format!("add learners {new:?}, promote them"));
    for id in &new {
        ops.add_learner(*id, &c.addr(*id)).await?;
    }
    let grown: BTreeSet<u64> = all.iter().copied().collect();
    ops.change_membership(&grown, false).await?;
    ctx.end(k);
    ctx.members = grown.iter().copied().collect();
    let l = ctx.leader().await;
    let mut old: Vec<u64> = ctx
        .members
        .iter()
        .copied()
        .filter(|i| *i != l && !new.contains(i))
        .collect();
    old.shuffle(&mut ctx.rng);
    let removed = [l, old.first().copied().unwrap_or(l)];
    let shrunk: BTreeSet<u64> = grown.iter().copied().filter(|i| !removed.contains(i)).collect();
    let k = ctx.begin(format!(
        "remove the leader {l} and node {} -> {shrunk:?}",
        removed[1]
    ));
    ops.change_membership(&shrunk, false).await?;
    ctx.members = shrunk.iter().copied().collect();
    let nl = c.agreed_leader(&ctx.members, Duration::from_secs(15)).await;
    ctx.end(k);
    ctx.notes.push(format!(
        "membership {:?} -> {:?} -> {:?}; new leader {nl:?}",
        all.iter().filter(|i| !new.contains(i)).collect::<Vec<_>>(),
        grown,
        shrunk
    ));
    let rest = ctx.window.saturating_sub(Duration::from_millis(
        ctx.windows.last().map_or(0, |w| w.end_ms - w.start_ms),
    ));
    sleep(rest.min(ctx.window / 2)).await;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum MixFault {
    KillLeader,
    KillFollower,
    IsolateLeader,
    PartitionFollower,
    PauseLeader,
    FlakyLink,
}

async fn mix(ctx: &mut FaultCtx<'_>) -> anyhow::Result<()> {
    let c = ctx.cluster;
    let w = ctx.window.as_millis() as u64;
    let kinds = [
        MixFault::KillFollower,
        MixFault::IsolateLeader,
        MixFault::PartitionFollower,
        MixFault::PauseLeader,
        MixFault::FlakyLink,
    ];
    // A leader kill first (with the ballot sent to two nodes during the leader change), then two
    // more faults that overlap it and each other.
    let mut plan = vec![(0u64, (w / 2).max(400), MixFault::KillLeader)];
    for _ in 0..2 {
        let start = ctx.rng.gen_range(w / 8..=w / 2);
        let len = ctx.rng.gen_range(w / 4..=w / 2).max(300);
        plan.push((
            start,
            len,
            *kinds.choose(&mut ctx.rng).unwrap_or(&MixFault::FlakyLink),
        ));
    }
    let t0 = Instant::now();
    let members = ctx.members.clone();
    let mut running: Vec<(u64, MixFault, Vec<u64>, usize)> = Vec::new(); // (end, kind, targets, window)
    let mut pending = plan.clone();
    pending.sort_by_key(|p| p.0);
    let mut pending = std::collections::VecDeque::from(pending);
    // One loop over time, bounded by the plan's last end plus a margin.
    let horizon = plan.iter().map(|(s, l, _)| s + l).max().unwrap_or(w) + 1_000;
    while !(pending.is_empty() && running.is_empty()) && (t0.elapsed().as_millis() as u64) < horizon {
        let now = t0.elapsed().as_millis() as u64;
        while pending.front().is_some_and(|p| p.0 <= now) {
            let Some((_, len, kind)) = pending.pop_front() else {
                break;
            };
            let l = c.some_leader(&members).await.unwrap_or(members[0]);
            let followers: Vec<u64> = members.iter().copied().filter(|m| *m != l).collect();
            let f = *followers.choose(&mut ctx.rng).unwrap_or(&l);
            let (targets, what) = match kind {
                MixFault::KillLeader => {
                    c.kill(l);
                    (vec![l], format!("SIGKILL leader {l}"))
                }
                MixFault::KillFollower => {
                    c.kill(f);
                    (vec![f], format!("SIGKILL follower {f}"))
                }
                MixFault::IsolateLeader => {
                    c.mesh.isolate(l);
                    (vec![l], format!("isolate leader {l}"))
                }
                MixFault::PartitionFollower => {
                    c.mesh.isolate(f);
                    (vec![f], format!("isolate follower {f}"))
                }
                MixFault::PauseLeader => {
                    let _ = c.pause(l);
                    (vec![l], format!("SIGSTOP leader {l}"))
                }
                MixFault::FlakyLink => {
                    let g = *followers.choose(&mut ctx.rng).unwrap_or(&l);
                    c.mesh.set(l, g, LinkMode::Drop(0.5));
                    c.mesh.set(
                        g,
                        l,
                        LinkMode::Delay {
                            ms: 75,
                            jitter_ms: 50,
                        },
                    );
                    (vec![l, g], format!("flaky link {l} <-> {g}"))
                }
            };
            let k = ctx.begin(what);
            if matches!(kind, MixFault::KillLeader) {
                sleep(Duration::from_millis(200)).await;
                ctx.dual_send(l);
            }
            running.push((now + len, kind, targets, k));
        }
        let now = t0.elapsed().as_millis() as u64;
        let mut still = Vec::new();
        for (end, kind, targets, k) in running.drain(..) {
            if end > now {
                still.push((end, kind, targets, k));
                continue;
            }
            match kind {
                MixFault::KillLeader | MixFault::KillFollower => {
                    for t in &targets {
                        c.start_node(*t)?;
                    }
                }
                MixFault::IsolateLeader | MixFault::PartitionFollower => {
                    for (a, b) in c.mesh.links() {
                        if targets.contains(&a) || targets.contains(&b) {
                            c.mesh.set(a, b, LinkMode::Pass);
                        }
                    }
                }
                MixFault::PauseLeader => {
                    for t in &targets {
                        let _ = c.resume(*t);
                    }
                }
                MixFault::FlakyLink => {
                    c.mesh.set(targets[0], targets[1], LinkMode::Pass);
                    c.mesh.set(targets[1], targets[0], LinkMode::Pass);
                }
            }
            ctx.end(k);
        }
        running = still;
        sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

//! `urna-chaos`: a fault-injection harness for Urna. It starts a real local cluster of `urna-node`
//! processes whose Raft links all pass through proxies it owns, sets up an election with a finished
//! ceremony, drives concurrent voters while it injects faults (crashes, partitions, pauses, flaky
//! links, membership changes), heals, then checks the invariants against every node's data and writes
//! a report.
//!
//! - [`proxy`]: one TCP proxy per directed Raft link (pass, drop, blackhole, delay).
//! - [`cluster`]: node processes, their configs and signals.
//! - [`election`]: the election under test (ceremony, close, tally) over HTTP.
//! - [`workload`]: voters at a steady rate, with retries, double votes and dual sends.
//! - [`faults`]: the scenarios' fault scripts.
//! - [`checker`]: the invariants.
//! - [`report`]: the JSON report, its summary and the verdict.
//! - [`run`]: one scenario from start to verdict.
#![warn(missing_docs)]

pub mod checker;
pub mod cluster;
pub mod election;
pub mod faults;
pub mod proxy;
pub mod report;
pub mod run;
pub mod workload;

pub use faults::Scenario;
pub use report::{Report, Verdict};
pub use run::{run, RunOptions};

/// Runs several scenarios one after another. After the first run the setup budget adapts to the
/// measured setup time of the previous run (twice it plus 3 s, at least 6 s), so short runs do not
/// idle while the voting window ends.
pub async fn run_all(
    scenarios: &[Scenario],
    opts: &RunOptions,
    mut each: impl FnMut(&Report),
) -> Vec<Report> {
    let mut o = opts.clone();
    let mut out = Vec::new();
    for s in scenarios {
        let r = run(*s, &o).await;
        each(&r);
        if let Some(ms) = r.notes.iter().find_map(|n| {
            n.strip_prefix("setup took ")?
                .strip_suffix(" ms")?
                .parse::<u64>()
                .ok()
        }) {
            o.setup_budget = std::time::Duration::from_millis((ms * 2 + 3_000).max(6_000));
        }
        out.push(r);
    }
    out
}

/// Parses a duration: `20s`, `1500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    if !(0.5..=3600.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range (0.5 s to 1 h)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

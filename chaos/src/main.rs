//! `urna-chaos`: fault injection with invariant checks against a real local Urna cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use urna_chaos::{cluster, parse_duration, run_all, RunOptions, Scenario, Verdict};

const EXAMPLES: &str = "\
Examples:
  urna-chaos run --scenario kill-leader --seed 7 --nodes 3 --duration 20s --report report.json
  urna-chaos run --scenario all --seed 1 --duration 4s --report all.json
  URNA_NODE_BIN=target/debug/urna-node urna-chaos run --scenario 5 --nodes 5

Scenarios: baseline, kill-leader, kill-follower, kill-all, isolate-leader, partition-follower,
snapshot, pause-leader, flaky-links, membership, mix (or their numbers 1-11), or all.
Exit status: 0 valid, 1 invalid (an invariant was violated), 2 unknown or usage error.";

/// Fault injection with invariant checks against a real local Urna cluster.
#[derive(Parser, Debug)]
#[command(name = "urna-chaos", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run scenarios and check the invariants.
    #[command(after_help = EXAMPLES)]
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario name or number, or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seed of every random choice (the run replays from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Voting members: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Workload duration per scenario (the faults take its middle half): 20s, 1500ms, 2m.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// Casts per second.
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Directory for the clusters' data and logs (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep data and logs even of valid runs.
    #[arg(long)]
    keep: bool,
    /// Time allowed for the cluster start and the ceremony (the voting window ends after it).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    setup_budget: Duration,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Cmd::Run(a) = cli.cmd;
    if a.nodes != 3 && a.nodes != 5 {
        eprintln!("urna-chaos: --nodes must be 3 or 5");
        return ExitCode::from(2);
    }
    let scenarios: Vec<Scenario> = if a.scenario == "all" {
        Scenario::ALL.to_vec()
    } else {
        match Scenario::parse(&a.scenario) {
            Some(s) => vec![s],
            None => {
                eprintln!("urna-chaos: unknown scenario {:?} (see --help)", a.scenario);
                return ExitCode::from(2);
            }
        }
    };
    if !(0.5..=200.0).contains(&a.rate) {
        eprintln!("urna-chaos: --rate must be between 0.5 and 200");
        return ExitCode::from(2);
    }
    let binary = match cluster::node_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("urna-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = RunOptions {
        nodes: a.nodes,
        seed: a.seed,
        duration: a.duration,
        rate: a.rate,
        binary,
        work_dir: a.dir.clone(),
        setup_budget: a.setup_budget,
        keep: a.keep,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("urna-chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let json = a.json;
    let reports = rt.block_on(run_all(&scenarios, &opts, |r| {
        if !json {
            print!("{}", r.summary());
        }
    }));
    let verdict = reports.iter().fold(Verdict::Valid, |v, r| v.worst(r.verdict));
    let doc = serde_json::json!({ "verdict": verdict, "runs": reports });
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("verdict: {verdict:?} ({} scenario runs)", reports.len());
    }
    if let Some(path) = &a.report {
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("urna-chaos: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::from(verdict.exit_code())
}

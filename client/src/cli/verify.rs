//! `urna verify`: re-checks an election record with no trust in any node (design 4.7, `docs/record.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use urna_keyceremony::record::{checks, verify_record, CheckResult, ElectionRecord, VerificationReport};

use super::output::Table;
use super::{block_on, print_json, CmdResult, Failure, Globals};

const EXAMPLES: &str = "\
Examples:
  urna verify record.json
  urna verify record.json --json > report.json
  urna verify --node 127.0.0.1:7001 --election city-2026

Prints one line per check (name, pass/FAIL, detail) and a verdict. Exit status 1 when any check fails,
including a record that does not decode; 2 on a usage error (e.g. the file cannot be read).";

/// `urna verify`
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The record file (JSON, format `urna-record/1`).
    #[arg(
        value_name = "RECORD",
        conflicts_with = "election",
        required_unless_present = "election"
    )]
    pub record: Option<PathBuf>,
    /// Fetch the record of this election from the nodes (`--node`) instead of a file.
    #[arg(long, value_name = "ID")]
    pub election: Option<String>,
}

/// The JSON output of `urna verify --json`.
#[derive(Debug, Serialize)]
pub struct VerifyOutput {
    /// Where the record came from.
    pub source: String,
    /// The election id, when the record decoded.
    pub election: Option<String>,
    /// True when every check passed.
    pub passed: bool,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
}

/// Decodes and verifies record bytes. A record that does not decode fails the `format` check.
pub fn verify_bytes(bytes: &[u8]) -> (Option<String>, VerificationReport) {
    match serde_json::from_slice::<ElectionRecord>(bytes) {
        Ok(r) => (Some(r.params.election_id.clone()), verify_record(&r)),
        Err(e) => (
            None,
            VerificationReport {
                checks: vec![CheckResult {
                    name: checks::FORMAT.to_string(),
                    passed: false,
                    detail: format!("the record does not decode: {e}"),
                }],
            },
        ),
    }
}

/// Runs `urna verify`.
pub fn run(g: &Globals, a: VerifyArgs) -> CmdResult {
    let (source, bytes) = match (&a.record, &a.election) {
        (Some(path), None) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            (path.display().to_string(), bytes)
        }
        (None, Some(id)) => {
            // A large election's record takes a while to stream.
            let client = g.client()?.with_timeout(std::time::Duration::from_secs(600))?;
            let bytes = block_on(client.election_record_bytes(id))??;
            (format!("election {id} from {}", client.nodes().join(", ")), bytes)
        }
        _ => return Err(Failure::usage("give either a RECORD file or --election ID")),
    };
    let (election, report) = verify_bytes(&bytes);
    let passed = report.passed();
    if g.json {
        print_json(&VerifyOutput {
            source,
            election,
            passed,
            checks: report.checks,
        })?;
    } else {
        let mut t = Table::new(["CHECK", "RESULT", "DETAIL"]);
        for c in &report.checks {
            t.row([
                c.name.clone(),
                if c.passed { "pass" } else { "FAIL" }.to_string(),
                c.detail.clone(),
            ]);
        }
        println!(
            "Verifying {}{}",
            source,
            election
                .as_deref()
                .map(|e| format!(" (election {e})"))
                .unwrap_or_default()
        );
        print!("{}", t.render());
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        if failed.is_empty() {
            println!("Verdict: VALID: all {} checks passed.", report.checks.len());
        } else {
            println!(
                "Verdict: INVALID: {} of {} checks failed: {}.",
                failed.len(),
                report.checks.len(),
                failed.join(", ")
            );
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

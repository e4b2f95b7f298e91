//! The `urna` command line (design section 7).
//!
//! Every subcommand prints human output by default and JSON with `--json`. Exit codes: 0 success, 1 a
//! failed check or operation (a verification failure, divergent nodes, an error answer of a node),
//! 2 a usage error (bad arguments, a malformed credential code, a file that must not be overwritten).
//! Errors are one line on stderr, `urna: <what happened>`.

pub mod cluster;
pub mod credentials;
pub mod demo;
pub mod election;
pub mod observe;
pub mod output;
pub mod verify;
pub mod voter;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::http::{self, Client};

const EXAMPLES: &str = "\
Examples:
  urna demo                                   # a whole election on a local 3-node cluster
  urna --node 127.0.0.1:7001 --token $ADMIN_TOKEN election create city-2026 --manifest m.toml \\
      --custodians custodians.json --quorum 3 --closes-at now+2h --roll roll.json
  urna --node 127.0.0.1:7001 vote city-2026 --code-file code.txt --choice mayor=ada --receipt r.json
  urna --node 127.0.0.1:7001 receipt check --receipt r.json
  urna --node 127.0.0.1:7001 --token $OPS_TOKEN cluster init
  URNA_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 urna observe
  urna credentials generate --count 1000 --codes codes.txt --roll roll.json --sheet
  urna verify record.json
  urna verify --node 127.0.0.1:7001 --election city-2026 --json

Exit status: 0 success, 1 a failed check or operation, 2 a usage error.";

/// Urna: a Raft-replicated threshold-key ballot box. Run a demo election, operate the cluster and its
/// elections, make voter credentials, vote and check receipts, watch the nodes agree, and verify
/// election records.
#[derive(Parser, Debug)]
#[command(name = "urna", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// A node's URL, e.g. http://127.0.0.1:7001 (repeatable; URNA_NODES takes a comma-separated list).
    #[arg(
        long = "node",
        global = true,
        env = "URNA_NODES",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub nodes: Vec<String>,
    /// Operator bearer token for operator endpoints (prefer the environment variable).
    #[arg(long, global = true, env = "URNA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Cluster membership: init, add-learner, promote, remove, status.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Voter credentials: generate codes and the public roll, check a code.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCmd),
    /// Re-verify an election record offline (every proof, signature and the tally).
    Verify(verify::VerifyArgs),
    /// Compare the nodes' state digests at a common index and report agreement or divergence.
    Observe(observe::ObserveArgs),
    /// Elections (operators): create, roll, open, close, advance, show, export.
    #[command(subcommand)]
    Election(election::ElectionCmd),
    /// Vote: encrypt your choices locally, show the ballot hash, cast, and keep the receipt.
    Vote(voter::VoteArgs),
    /// Challenge an encryption (Benaloh): open it, post it as spoiled, check it encrypts your choices.
    Challenge(voter::ChallengeArgs),
    /// Receipts: check that your ballot is on the board.
    #[command(subcommand)]
    Receipt(voter::ReceiptCmd),
    /// Run a complete election on a local cluster of real nodes, from key ceremony to certified result.
    Demo(demo::DemoArgs),
}

/// Why a command failed, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// 1 (failed check or operation) or 2 (usage error).
    pub exit: u8,
    /// One line for stderr.
    pub message: String,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: 2,
            message: message.into(),
        }
    }

    /// A failed check or operation (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            exit: 1,
            message: message.into(),
        }
    }
}

impl From<http::Error> for Failure {
    fn from(e: http::Error) -> Self {
        match e {
            http::Error::NoNodes | http::Error::BadUrl(_) => Failure::usage(e.to_string()),
            other => Failure::failed(other.to_string()),
        }
    }
}

/// What a command returns: the exit status on success or a reported failed check, or a [`Failure`].
pub type CmdResult = Result<ExitCode, Failure>;

/// Global options shared by the subcommands.
#[derive(Clone, Debug)]
pub struct Globals {
    /// Node URLs.
    pub nodes: Vec<String>,
    /// Operator token.
    pub token: Option<String>,
    /// JSON output.
    pub json: bool,
}

impl Globals {
    /// A client over the configured nodes (usage error when none is given).
    pub fn client(&self) -> Result<Client, Failure> {
        if self.nodes.is_empty() {
            return Err(Failure::usage(
                "no node given: use --node URL (repeatable) or URNA_NODES",
            ));
        }
        Ok(Client::new(&self.nodes)?.with_token(self.token.clone()))
    }
}

/// Runs a future on a fresh single-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CmdResult {
    let g = Globals {
        nodes: cli
            .nodes
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        token: cli.token.filter(|t| !t.is_empty()),
        json: cli.json,
    };
    match cli.command {
        Command::Cluster(c) => cluster::run(&g, c),
        Command::Credentials(c) => credentials::run(&g, c),
        Command::Verify(a) => verify::run(&g, a),
        Command::Observe(a) => observe::run(&g, a),
        Command::Election(c) => election::run(&g, c),
        Command::Vote(a) => voter::vote(&g, a),
        Command::Challenge(a) => voter::challenge(&g, a),
        Command::Receipt(c) => voter::receipt(&g, c),
        Command::Demo(a) => demo::run(&g, a),
    }
}

/// A clap error as one line: its first paragraph (up to the usage), without the `error: ` prefix.
fn clap_one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let para: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
        .collect();
    let line = para.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line).to_string();
    if line.is_empty() {
        "invalid arguments".into()
    } else {
        line
    }
}

/// Parses the process arguments and runs; the `urna` binary's `main`.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Parses `args` (the first one is the program name) and runs.
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::error::ErrorKind;
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(2)
                }
                _ => {
                    eprintln!("urna: {} (see --help)", clap_one_line(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("urna: {}", f.message.replace('\n', " "));
            ExitCode::from(f.exit)
        }
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Failure> {
    let s =
        serde_json::to_string_pretty(v).map_err(|e| Failure::failed(format!("cannot encode JSON: {e}")))?;
    println!("{s}");
    Ok(())
}

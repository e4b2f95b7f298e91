//! The voter's commands (design 4.4 and 4.5): `urna vote`, `urna challenge`, `urna receipt check`.
//!
//! The client fetches the election summary (manifest, Q', K), checks that Q recomputes from the
//! parameters, encrypts locally and shows the ballot hash H_b before it casts. A cast is serialized
//! once and retried with the same bytes; the node answers a retry with the original receipt.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use urna_keyceremony::ballot::{
    encrypt_ballot, spoil, verify_spoiled, BallotContext, EncryptedBallot, PlaintextBallot,
};
use urna_keyceremony::board::{next_tracking_code, verify_inclusion};
use urna_keyceremony::credential::{CredentialCode, CredentialSigningKey};
use urna_keyceremony::group::Point;
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::manifest::Manifest;

use super::{block_on, print_json, CmdResult, Failure, Globals};
use crate::http::{self, Client};
use crate::wire::{ElectionPhase, ElectionSummary, Receipt};

const VOTE_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 vote city-2026 --code-file my-code.txt \\
      --choice mayor=ada --choice council=bo,cy --receipt receipt.json
  urna vote city-2026 --code ABCD-EFGH-...   # prompts for each contest on a terminal

CONTEST and OPTION are ids (or 1-based positions) from the manifest (`urna election show ID --json`);
a contest without --choice gets no selection. The ballot is encrypted on this machine; its hash H_b is
shown before it is cast. Exit 2 for a malformed credential code or a choice that is not on the ballot;
exit 1 when the node refuses the ballot (e.g. a credential not on the roll, or one that voted already).";

const CHALLENGE_EXAMPLES: &str = "\
Examples:
  urna challenge city-2026 --code-file my-code.txt --choice mayor=ada --choice council=bo
  urna challenge city-2026 --choice mayor=ada     # with a throwaway credential

Benaloh challenge (cast-as-intended check): the ballot is encrypted exactly as for a vote, then opened
(plaintext and master nonce revealed) and posted as a spoiled ballot that is never counted. The client
re-derives every nonce and checks that the ciphertexts it was shown encrypt your choices. Then vote
afresh: a challenged encryption is never cast.";

const RECEIPT_EXAMPLES: &str = "\
Examples:
  urna receipt check --receipt receipt.json
  urna receipt check city-2026 --tracking-code 9f2c...(64 hex)

Looks the ballot up by its tracking code (waiting until the node has applied the receipt's log index)
and verifies its inclusion proof against the ballot-tree root the node returns. Exit 1 when the ballot
is absent, the proof fails or the answer does not match the receipt.";

/// Selections shared by `vote` and `challenge`.
#[derive(Args, Debug)]
pub struct BallotArgs {
    /// The election id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The credential code (prefer --code-file: a command line is visible to other users).
    #[arg(long, conflicts_with = "code_file")]
    pub code: Option<String>,
    /// A file holding the credential code.
    #[arg(long, value_name = "FILE")]
    pub code_file: Option<PathBuf>,
    /// A selection: CONTEST=OPTION[,OPTION...] (repeatable; CONTEST= selects nothing).
    #[arg(long = "choice", value_name = "CONTEST=OPTIONS")]
    pub choices: Vec<String>,
}

/// `urna vote`
#[derive(Args, Debug)]
#[command(after_help = VOTE_EXAMPLES)]
pub struct VoteArgs {
    /// The ballot.
    #[command(flatten)]
    pub ballot: BallotArgs,
    /// Save the receipt (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// Cast without asking for confirmation on a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `urna challenge`
#[derive(Args, Debug)]
#[command(after_help = CHALLENGE_EXAMPLES)]
pub struct ChallengeArgs {
    /// The ballot.
    #[command(flatten)]
    pub ballot: BallotArgs,
}

/// `urna receipt ...`
#[derive(Subcommand, Debug)]
pub enum ReceiptCmd {
    /// Check that a ballot is on the board, with an inclusion proof.
    #[command(after_help = RECEIPT_EXAMPLES)]
    Check(ReceiptCheckArgs),
}

/// `urna receipt check`
#[derive(Args, Debug)]
pub struct ReceiptCheckArgs {
    /// The election id (taken from the receipt when --receipt is given).
    #[arg(value_name = "ID", required_unless_present = "receipt")]
    pub id: Option<String>,
    /// The tracking code (hex).
    #[arg(long, value_name = "HEX", required_unless_present = "receipt")]
    pub tracking_code: Option<String>,
    /// A receipt file saved by `urna vote --receipt`.
    #[arg(long, value_name = "FILE", conflicts_with = "tracking_code")]
    pub receipt: Option<PathBuf>,
}

/// Reads and parses a credential code from `--code` or `--code-file` (usage error when malformed).
pub fn read_code(code: Option<&str>, file: Option<&Path>) -> Result<Option<CredentialCode>, Failure> {
    let text = match (code, file) {
        (Some(c), _) => c.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Failure::usage(format!("cannot read the code file {}: {e}", f.display())))?,
        (None, None) => return Ok(None),
    };
    CredentialCode::parse(text.trim())
        .map(Some)
        .map_err(|e| Failure::usage(format!("invalid credential code: {e}")))
}

/// Finds a contest or option by id, label (case-insensitive) or 1-based position.
fn find<T>(items: &[T], key: &str, id: impl Fn(&T) -> &str, label: impl Fn(&T) -> &str) -> Option<usize> {
    let key = key.trim();
    items
        .iter()
        .position(|x| id(x) == key)
        .or_else(|| items.iter().position(|x| label(x).eq_ignore_ascii_case(key)))
        .or_else(|| {
            key.parse::<usize>()
                .ok()
                .filter(|n| (1..=items.len()).contains(n))
                .map(|n| n - 1)
        })
}

/// Turns `CONTEST=OPTION[,OPTION]` choices into selected option indices per contest.
pub fn parse_choices(manifest: &Manifest, choices: &[String]) -> Result<Vec<Vec<usize>>, Failure> {
    let mut selected: Vec<Option<Vec<usize>>> = vec![None; manifest.contests.len()];
    for ch in choices {
        let (c, opts) = ch
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--choice {ch:?}: expected CONTEST=OPTION[,OPTION]")))?;
        let ci = find(&manifest.contests, c, |x| &x.id, |x| &x.title).ok_or_else(|| {
            Failure::usage(format!(
                "--choice {ch:?}: no contest {c:?} (contests: {})",
                manifest
                    .contests
                    .iter()
                    .map(|x| x.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if selected[ci].is_some() {
            return Err(Failure::usage(format!("contest {c:?} is chosen twice")));
        }
        let contest = &manifest.contests[ci];
        let mut picked = Vec::new();
        for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let oi = find(&contest.options, o, |x| &x.id, |x| &x.label).ok_or_else(|| {
                Failure::usage(format!(
                    "--choice {ch:?}: contest {} has no option {o:?} (options: {})",
                    contest.id,
                    contest
                        .options
                        .iter()
                        .map(|x| x.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if !picked.contains(&oi) {
                picked.push(oi);
            }
        }
        selected[ci] = Some(picked);
    }
    let out: Vec<Vec<usize>> = selected.into_iter().map(Option::unwrap_or_default).collect();
    PlaintextBallot::from_selected(manifest, &out)
        .map_err(|e| Failure::usage(format!("this ballot is not valid: {e}")))?;
    Ok(out)
}

/// Asks for each contest's selections on the terminal.
fn prompt_choices(manifest: &Manifest) -> Result<Vec<Vec<usize>>, Failure> {
    let stdin = std::io::stdin();
    let mut out = Vec::new();
    for c in &manifest.contests {
        loop {
            eprintln!("{} (choose {}..{}):", c.title, c.min_selections, c.max_selections);
            for (i, o) in c.options.iter().enumerate() {
                eprintln!("  {}. {} [{}]", i + 1, o.label, o.id);
            }
            eprint!("Your choice (numbers or ids, comma-separated; empty for none): ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(|e| Failure::usage(format!("cannot read the terminal: {e}")))?;
            let mut picked = Vec::new();
            let mut ok = true;
            for o in line.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                match find(&c.options, o, |x| &x.id, |x| &x.label) {
                    Some(i) if !picked.contains(&i) => picked.push(i),
                    Some(_) => {}
                    None => {
                        eprintln!("No option {o:?}.");
                        ok = false;
                    }
                }
            }
            let n = picked.len() as u64;
            if ok && (c.min_selections..=c.max_selections).contains(&n) {
                out.push(picked);
                break;
            }
            if ok {
                eprintln!(
                    "Choose between {} and {} options.",
                    c.min_selections, c.max_selections
                );
            }
        }
    }
    Ok(out)
}

fn ask(question: &str) -> Result<String, Failure> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("cannot read the terminal: {e}")))?;
    Ok(line.trim().to_lowercase())
}

/// The ballot context of an election from its summary: checks that Q recomputes from the parameters
/// and that the election is past its key ceremony.
pub fn ballot_context(s: &ElectionSummary) -> Result<BallotContext, Failure> {
    if s.params.base_hash() != s.base_hash {
        return Err(Failure::failed(
            "the node's election hash Q does not match the election's parameters; not voting",
        ));
    }
    let (Some(qx), Some(k)) = (&s.extended_hash, &s.encryption_key) else {
        return Err(Failure::failed(format!(
            "election {} is in phase {}: its key ceremony is not complete, so there is no election key yet",
            s.params.election_id, s.phase
        )));
    };
    let qx: Hash32 = hex::decode(qx)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::failed("the node sent a malformed Q'"))?;
    let k =
        Point::from_hex(k).map_err(|e| Failure::failed(format!("the node sent a bad election key: {e}")))?;
    BallotContext::new(&s.params.election_id, qx, s.params.manifest.clone(), k)
        .map_err(|e| Failure::failed(format!("cannot build the ballot context: {e}")))
}

/// Human text of a plaintext: `contest: option, option`.
pub fn describe_selection(m: &Manifest, selected: &[Vec<usize>]) -> Vec<String> {
    m.contests
        .iter()
        .zip(selected)
        .map(|(c, s)| {
            let names: Vec<&str> = s.iter().map(|&i| c.options[i].label.as_str()).collect();
            format!(
                "{}: {}",
                c.title,
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
        .collect()
}

struct Prepared {
    client: Client,
    summary: ElectionSummary,
    ctx: BallotContext,
    selected: Vec<Vec<usize>>,
}

fn prepare(g: &Globals, b: &BallotArgs) -> Result<Prepared, Failure> {
    let client = g.client()?;
    let summary = block_on(client.election(&b.id))??;
    let ctx = ballot_context(&summary)?;
    let manifest = &summary.params.manifest;
    let selected = if b.choices.is_empty() && std::io::stdin().is_terminal() && !g.json {
        prompt_choices(manifest)?
    } else {
        parse_choices(manifest, &b.choices)?
    };
    Ok(Prepared {
        client,
        summary,
        ctx,
        selected,
    })
}

fn encrypt(
    p: &Prepared,
    key: &CredentialSigningKey,
) -> Result<(EncryptedBallot, urna_keyceremony::ballot::BallotSecrets), Failure> {
    let plain = PlaintextBallot::from_selected(p.ctx.manifest(), &p.selected)
        .map_err(|e| Failure::usage(format!("this ballot is not valid: {e}")))?;
    encrypt_ballot(&p.ctx, &plain, key, &mut rand::rngs::OsRng)
        .map_err(|e| Failure::failed(format!("cannot encrypt the ballot: {e}")))
}

/// Runs `urna vote`.
pub fn vote(g: &Globals, a: VoteArgs) -> CmdResult {
    // A malformed code is a usage error before anything else happens.
    let code = read_code(a.ballot.code.as_deref(), a.ballot.code_file.as_deref())?
        .ok_or_else(|| Failure::usage("give the credential code with --code or --code-file"))?;
    if let Some(r) = &a.receipt {
        if r.exists() {
            return Err(Failure::usage(format!(
                "the receipt file {} already exists; refusing to overwrite it",
                r.display()
            )));
        }
    }
    let p = prepare(g, &a.ballot)?;
    if p.summary.phase != ElectionPhase::Open {
        return Err(Failure::failed(format!(
            "election {} is {}, not open for voting",
            a.ballot.id, p.summary.phase
        )));
    }
    let key = code.signing_key();
    let interactive = std::io::stdin().is_terminal() && !g.json && !a.yes;
    let ballot = loop {
        let (ballot, secrets) = encrypt(&p, &key)?;
        let hb = hex::encode(ballot.hash(&p.ctx));
        if !g.json {
            println!("Your ballot:");
            for l in describe_selection(p.ctx.manifest(), &p.selected) {
                println!("  {l}");
            }
            println!("Ballot hash H_b: {hb}");
        }
        if !interactive {
            break ballot;
        }
        match ask("Cast it (c), challenge it (x) or quit (q)? ")?.as_str() {
            "c" | "cast" | "y" | "yes" => break ballot,
            "x" | "challenge" => {
                let ack = block_on(p.client.challenge(&spoil(&ballot, &secrets)))??;
                verify_spoiled(&p.ctx, &spoil(&ballot, &secrets))
                    .map_err(|e| Failure::failed(format!("the challenge does not check out: {e}")))?;
                println!(
                    "Challenged: the node recorded spoiled ballot #{} (log index {}), and its ciphertexts \
                     open to the choices above. Encrypting afresh.",
                    ack.seq, ack.index
                );
            }
            _ => return Err(Failure::failed("not cast")),
        }
    };
    let receipt = block_on(p.client.cast(&ballot))?.map_err(cast_failure)?;
    if let Some(path) = &a.receipt {
        let text = serde_json::to_vec_pretty(&receipt)
            .map_err(|e| Failure::failed(format!("cannot encode the receipt: {e}")))?;
        std::fs::write(path, text).map_err(|e| {
            Failure::failed(format!(
                "the ballot was cast but the receipt could not be saved to {}: {e}; tracking code {}",
                path.display(),
                hex::encode(receipt.tracking_code)
            ))
        })?;
    }
    if g.json {
        print_json(&receipt)?;
    } else {
        print_receipt(&receipt);
        if let Some(path) = &a.receipt {
            println!("Receipt saved to {}.", path.display());
        }
        println!(
            "Check it any time: urna receipt check {} --tracking-code {}",
            receipt.election_id,
            hex::encode(receipt.tracking_code)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cast_failure(e: http::Error) -> Failure {
    match e.api() {
        Some(api) => Failure::failed(format!("the ballot was refused: {} ({})", api.message, api.code)),
        None => Failure::from(e),
    }
}

fn print_receipt(r: &Receipt) {
    println!("Cast. Receipt:");
    println!("  election          {}", r.election_id);
    println!("  ballot hash       {}", hex::encode(r.ballot_hash));
    println!("  tracking code     {}", hex::encode(r.tracking_code));
    println!("  previous code     {}", hex::encode(r.previous_tracking_code));
    println!("  ballot number     {}", r.seq);
    println!("  log index         {}", r.index);
}

/// The JSON output of `urna challenge`.
#[derive(Debug, Serialize)]
pub struct ChallengeOutput {
    /// The election.
    pub election_id: String,
    /// H_b of the challenged encryption.
    pub ballot_hash: String,
    /// Its position among the spoiled ballots.
    pub seq: u64,
    /// Its log index.
    pub index: u64,
    /// Whether the ciphertexts re-derive from the revealed nonce and plaintext.
    pub verified: bool,
    /// What the ciphertexts open to.
    pub selections: Vec<String>,
}

/// Runs `urna challenge`.
pub fn challenge(g: &Globals, a: ChallengeArgs) -> CmdResult {
    let code = read_code(a.ballot.code.as_deref(), a.ballot.code_file.as_deref())?;
    let p = prepare(g, &a.ballot)?;
    let key = match &code {
        Some(c) => c.signing_key(),
        None => CredentialCode::random(&mut rand::rngs::OsRng).signing_key(),
    };
    let (ballot, secrets) = encrypt(&p, &key)?;
    let hb = hex::encode(ballot.hash(&p.ctx));
    let spoiled = spoil(&ballot, &secrets);
    let ack = block_on(p.client.challenge(&spoiled))?.map_err(|e| match e.api() {
        Some(api) => Failure::failed(format!(
            "the challenge was refused: {} ({})",
            api.message, api.code
        )),
        None => Failure::from(e),
    })?;
    let check = verify_spoiled(&p.ctx, &spoiled);
    let selections = describe_selection(p.ctx.manifest(), &p.selected);
    let out = ChallengeOutput {
        election_id: a.ballot.id.clone(),
        ballot_hash: hb,
        seq: ack.seq,
        index: ack.index,
        verified: check.is_ok(),
        selections,
    };
    if g.json {
        print_json(&out)?;
    } else {
        println!("Challenged ballot H_b {}", out.ballot_hash);
        println!(
            "The node accepted it as spoiled ballot #{} (log index {}); it is never counted.",
            out.seq, out.index
        );
        match &check {
            Ok(()) => {
                println!("Re-derived from the revealed master nonce, the ciphertexts encrypt exactly:");
                for l in &out.selections {
                    println!("  {l}");
                }
                println!("Your device encrypted what you chose. Now vote afresh (a new encryption).");
            }
            Err(e) => println!("MISMATCH: the ciphertexts do not encrypt your choices: {e}"),
        }
    }
    Ok(if check.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The JSON output of `urna receipt check`.
#[derive(Debug, Serialize)]
pub struct ReceiptCheckOutput {
    /// The election.
    pub election_id: String,
    /// The tracking code checked.
    pub tracking_code: String,
    /// Whether the ballot was found.
    pub found: bool,
    /// Whether everything checked out.
    pub ok: bool,
    /// Ballots in the tree the proof is for.
    pub tree_size: Option<u64>,
    /// The tree root the proof is against.
    pub tree_root: Option<String>,
    /// What failed, if anything.
    pub problems: Vec<String>,
}

/// Runs `urna receipt ...`.
pub fn receipt(g: &Globals, cmd: ReceiptCmd) -> CmdResult {
    let ReceiptCmd::Check(a) = cmd;
    let saved: Option<Receipt> =
        match &a.receipt {
            Some(p) => {
                let text = std::fs::read(p)
                    .map_err(|e| Failure::usage(format!("cannot read the receipt {}: {e}", p.display())))?;
                Some(serde_json::from_slice(&text).map_err(|e| {
                    Failure::usage(format!("the receipt {} does not decode: {e}", p.display()))
                })?)
            }
            None => None,
        };
    let id = match (&a.id, &saved) {
        (Some(id), Some(r)) if *id != r.election_id => {
            return Err(Failure::usage(format!(
                "the receipt is for election {}, not {id}",
                r.election_id
            )))
        }
        (Some(id), _) => id.clone(),
        (None, Some(r)) => r.election_id.clone(),
        (None, None) => return Err(Failure::usage("give an election ID with --tracking-code")),
    };
    let tc = match (&a.tracking_code, &saved) {
        (Some(t), _) => t.trim().to_lowercase(),
        (None, Some(r)) => hex::encode(r.tracking_code),
        (None, None) => return Err(Failure::usage("give --tracking-code or --receipt")),
    };
    if tc.len() != 64 || hex::decode(&tc).is_err() {
        return Err(Failure::usage("a tracking code is 64 hex characters"));
    }
    let client = g.client()?;
    let min_index = saved.as_ref().map(|r| r.index);
    let answer = block_on(client.ballot(&id, &tc, min_index))?;
    let mut out = ReceiptCheckOutput {
        election_id: id.clone(),
        tracking_code: tc.clone(),
        found: false,
        ok: false,
        tree_size: None,
        tree_root: None,
        problems: Vec::new(),
    };
    match answer {
        Ok(l) => {
            out.found = true;
            out.tree_size = Some(l.tree_size);
            out.tree_root = Some(hex::encode(l.tree_root));
            if hex::encode(l.receipt.tracking_code) != tc {
                out.problems
                    .push("the node returned another ballot's receipt".into());
            }
            if next_tracking_code(&l.receipt.previous_tracking_code, &l.receipt.ballot_hash)
                != l.receipt.tracking_code
            {
                out.problems.push(
                    "the tracking code does not follow from the previous code and the ballot hash".into(),
                );
            }
            if let Some(r) = &saved {
                if r.ballot_hash != l.receipt.ballot_hash
                    || r.previous_tracking_code != l.receipt.previous_tracking_code
                    || r.seq != l.receipt.seq
                {
                    out.problems
                        .push("the ballot on the board differs from your receipt".into());
                }
            }
            if !verify_inclusion(&l.receipt.ballot_hash, &l.proof, &l.tree_root) {
                out.problems
                    .push("the inclusion proof does not lead to the tree root".into());
            }
        }
        Err(e) => match e.api() {
            Some(api) if api.status == 404 => out
                .problems
                .push(format!("no ballot with this tracking code: {}", api.message)),
            _ => return Err(Failure::from(e)),
        },
    }
    out.ok = out.found && out.problems.is_empty();
    if g.json {
        print_json(&out)?;
    } else if out.ok {
        println!(
            "OK: ballot with tracking code {} is on the board of election {}: its inclusion proof \
             verifies against tree root {} ({} ballots).",
            tc,
            id,
            out.tree_root.as_deref().unwrap_or("-"),
            out.tree_size.unwrap_or(0)
        );
    } else {
        println!("FAILED: tracking code {tc} in election {id}:");
        for p in &out.problems {
            println!("  {p}");
        }
    }
    Ok(if out.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_by_id_label_and_position() {
        let m = Manifest::simple(&[(3, 1, 1), (2, 0, 2)]);
        let c0 = m.contests[0].id.clone();
        let c1 = m.contests[1].id.clone();
        let o = m.contests[0].options[2].id.clone();
        let sel = parse_choices(&m, &[format!("{c0}={o}")]).unwrap();
        assert_eq!(sel, vec![vec![2], vec![]]);
        let sel = parse_choices(&m, &["1=1".into(), "2=1,2".into()]).unwrap();
        assert_eq!(sel, vec![vec![0], vec![0, 1]]);
        // Contest 0 needs exactly one selection.
        assert!(parse_choices(&m, &[format!("{c1}=1")]).is_err());
        assert!(parse_choices(&m, &["nope=1".into()]).is_err());
        assert!(parse_choices(&m, &["1=9".into()]).is_err());
        assert!(parse_choices(&m, &["1".into()]).is_err());
    }

    #[test]
    fn malformed_codes_are_usage_errors() {
        let e = read_code(Some("not-a-code"), None).unwrap_err();
        assert_eq!(e.exit, 2);
        let good = CredentialCode::random(&mut rand::rngs::OsRng).to_printable();
        assert!(read_code(Some(&good), None).unwrap().is_some());
    }
}

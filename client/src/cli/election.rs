//! `urna election`: the administrator's commands (design 3 and 6): create, roll, open, close, advance,
//! show and export.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use urna_keyceremony::credential::PublicCredential;
use urna_keyceremony::election::{Custodian, IdentityKey};
use urna_keyceremony::manifest::Manifest;

use super::output::{opt, short, Table};
use super::{block_on, print_json, CmdResult, Failure, Globals};
use crate::http::{self, Client};
use crate::wire::{CreateElectionRequest, ElectionSummary, ResultResponse, WriteAck};

const CREATE_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 --token $ADMIN_TOKEN election create city-2026 \\
      --manifest manifest.toml --custodians custodians.json --quorum 3 \\
      --opens-at now --closes-at now+2h --roll roll.json
  urna election create poll --manifest manifest.json \\
      --custodian alice=8f3c...(96 hex) --custodian bob=a1b2... --custodian carol=... --quorum 2 \\
      --opens-at 2026-11-24T08:00:00Z --closes-at 2026-11-24T20:00:00Z --min-ballots 10

The manifest file (TOML or JSON) holds `contests`, each with `id`, `title`, `min_selections`,
`max_selections` and `options` (each with `id` and `label`). The custodians file (TOML or JSON) lists
`custodians` (or is a JSON list) of `{ name, identity_key }`, the identity key in hex as
`urna-ceremony status` prints it; custodian j (0-based, in file order) is evaluated at x = j + 1.
Times are RFC 3339 (2026-11-24T08:00:00Z) or relative to now: now, now+10m, now+1h30m, now-5s.
The roll file is the JSON list of hex public credentials `urna credentials generate` writes.";

const ROLL_EXAMPLES: &str = "\
Examples:
  urna election roll city-2026 --roll more-voters.json

The roll may grow until the key ceremony completes (Ready); then it is frozen.";

const STEP_EXAMPLES: &str = "\
Examples:
  urna election open city-2026      # Ready -> Open: the zero-ballot confirmation
  urna election close city-2026     # Open -> Closed/Tallying, valid after closes_at
  urna election advance city-2026   # pass an expired ceremony deadline";

const SHOW_EXAMPLES: &str = "\
Examples:
  urna election show city-2026
  urna election show city-2026 --json

Shows the phase, the fingerprint of Q (compare it out of band), counts, and the result once tallied.";

const EXPORT_EXAMPLES: &str = "\
Examples:
  urna election export city-2026 --out city-2026.record.json
  urna verify city-2026.record.json

Writes the election record (format urna-record/1, see docs/record.md). Exit 1 when the nodes cannot
serve it.";

/// `urna election ...`
#[derive(Subcommand, Debug)]
pub enum ElectionCmd {
    /// Create an election (Draft): manifest, custodians, quorum, voting window, roll.
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Append public credentials to an election's roll (until Ready).
    #[command(after_help = ROLL_EXAMPLES)]
    Roll(RollArgs),
    /// Open the ballot box (Ready -> Open).
    #[command(after_help = STEP_EXAMPLES)]
    Open(IdArg),
    /// Close the ballot box after closes_at (Open -> Tallying, or Closed below the minimum count).
    #[command(after_help = STEP_EXAMPLES)]
    Close(IdArg),
    /// Move the key ceremony past an expired phase deadline.
    #[command(after_help = STEP_EXAMPLES)]
    Advance(IdArg),
    /// Show an election: phase, fingerprint of Q, counts, result.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(IdArg),
    /// Write the election record to a file (for `urna verify`).
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
}

/// An election id argument.
#[derive(Args, Debug)]
pub struct IdArg {
    /// The election id.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `urna election create`
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The election id (1 to 64 of A-Z a-z 0-9 _ -).
    #[arg(value_name = "ID")]
    pub id: String,
    /// The manifest file (TOML or JSON).
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// A file listing the custodians (TOML or JSON; see below).
    #[arg(long, value_name = "FILE")]
    pub custodians: Option<PathBuf>,
    /// A custodian as NAME=IDENTITY_KEY_HEX (repeatable, in order; after those of --custodians).
    #[arg(long = "custodian", value_name = "NAME=KEY")]
    pub custodian: Vec<String>,
    /// Quorum q: how many custodians it takes to decrypt the tally.
    #[arg(long)]
    pub quorum: usize,
    /// When voting opens: RFC 3339 or now[+-DURATION].
    #[arg(long, value_name = "TIME", default_value = "now")]
    pub opens_at: String,
    /// When voting closes: RFC 3339 or now+DURATION.
    #[arg(long, value_name = "TIME")]
    pub closes_at: String,
    /// Fewest ballots for which a tally is decrypted.
    #[arg(long, default_value_t = 10)]
    pub min_ballots: u64,
    /// The initial roll: a JSON list of hex public credentials.
    #[arg(long, value_name = "FILE")]
    pub roll: Option<PathBuf>,
}

/// `urna election roll`
#[derive(Args, Debug)]
pub struct RollArgs {
    /// The election id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// A JSON list of hex public credentials to append.
    #[arg(long, value_name = "FILE")]
    pub roll: PathBuf,
}

/// `urna election export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The election id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Output file (must not exist unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Runs `urna election ...`.
pub fn run(g: &Globals, cmd: ElectionCmd) -> CmdResult {
    match cmd {
        ElectionCmd::Create(a) => create(g, a),
        ElectionCmd::Roll(a) => roll(g, a),
        ElectionCmd::Open(a) => step(g, &a.id, Step::Open),
        ElectionCmd::Close(a) => step(g, &a.id, Step::Close),
        ElectionCmd::Advance(a) => step(g, &a.id, Step::Advance),
        ElectionCmd::Show(a) => show(g, &a.id),
        ElectionCmd::Export(a) => export(g, a),
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Parses a duration such as `10m`, `1h30m`, `45s`, `2d`, `500ms` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("bad duration {s:?} (expected e.g. 10m, 1h30m, 45s)"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad number in duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "ms" => 1,
            "s" | "" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {s:?} (ms, s, m, h, d)"
                ))
            }
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    Ok(total)
}

/// Parses a time: RFC 3339 (`2026-11-24T08:00:00Z`), `now`, or `now+DURATION` / `now-DURATION` (also
/// `+DURATION`), relative to `now` (Unix ms). Returns Unix milliseconds.
pub fn parse_time_ms(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    let rel = t.strip_prefix("now").unwrap_or(t);
    if rel.is_empty() {
        return Ok(now);
    }
    if let Some(d) = rel.strip_prefix('+') {
        return Ok(now + parse_duration_ms(d)?);
    }
    if t.starts_with("now") {
        if let Some(d) = rel.strip_prefix('-') {
            return Ok(now - parse_duration_ms(d)?);
        }
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("bad time {s:?}: use RFC 3339 (2026-11-24T08:00:00Z) or now+10m"))
}

/// Unix milliseconds as RFC 3339 UTC text.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read the {what} file {}: {e}", path.display())))
}

/// Decodes a file as JSON or TOML: by its extension (`.json`, `.toml`), otherwise JSON when it parses
/// as JSON and TOML else.
fn decode_file<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "json" => serde_json::from_str(text).map_err(|e| e.to_string()),
        "toml" => toml::from_str(text).map_err(|e| e.to_string()),
        _ => serde_json::from_str(text).or_else(|_| toml::from_str(text).map_err(|e| e.to_string())),
    }
}

/// Reads a manifest from a TOML or JSON file and validates it.
pub fn read_manifest(path: &Path) -> Result<Manifest, Failure> {
    let text = read_text(path, "manifest")?;
    let m: Manifest = decode_file(path, &text)
        .map_err(|e| Failure::usage(format!("the manifest {} does not decode: {e}", path.display())))?;
    m.validate()
        .map_err(|e| Failure::usage(format!("invalid manifest {}: {e}", path.display())))?;
    Ok(m)
}

#[derive(Deserialize)]
struct CustodianFile {
    custodians: Vec<Custodian>,
}

/// Reads custodians from a TOML or JSON file: `{ custodians = [...] }` or a JSON list of
/// `{ name, identity_key }`.
pub fn read_custodians(path: &Path) -> Result<Vec<Custodian>, Failure> {
    let text = read_text(path, "custodians")?;
    let list = serde_json::from_str::<Vec<Custodian>>(&text).map_err(|e| e.to_string());
    list.or_else(|_| decode_file::<CustodianFile>(path, &text).map(|f| f.custodians))
        .map_err(|e| {
            Failure::usage(format!(
                "the custodians file {} does not decode: {e}",
                path.display()
            ))
        })
}

/// Parses `NAME=IDENTITY_KEY_HEX`.
pub fn parse_custodian_flag(s: &str) -> Result<Custodian, Failure> {
    let (name, key) = s
        .split_once('=')
        .ok_or_else(|| Failure::usage(format!("--custodian {s:?}: expected NAME=IDENTITY_KEY_HEX")))?;
    let bytes = hex::decode(key.trim())
        .map_err(|_| Failure::usage(format!("--custodian {name}: the identity key is not hex")))?;
    let identity_key = IdentityKey::from_bytes(&bytes)
        .map_err(|e| Failure::usage(format!("--custodian {name}: bad identity key: {e}")))?;
    Ok(Custodian {
        name: name.trim().to_string(),
        identity_key,
    })
}

/// Reads a roll file: a JSON list of hex public credentials.
pub fn read_roll(path: &Path) -> Result<Vec<PublicCredential>, Failure> {
    let text = read_text(path, "roll")?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "the roll {} is not a JSON list of hex public credentials: {e}",
            path.display()
        ))
    })
}

fn admin_client(g: &Globals) -> Result<Client, Failure> {
    if g.token.is_none() {
        return Err(Failure::usage(
            "this is an operator command: give the admin token with --token or URNA_TOKEN",
        ));
    }
    g.client()
}

fn print_ack(g: &Globals, what: &str, ack: &WriteAck) -> CmdResult {
    if g.json {
        print_json(ack)?;
    } else {
        println!(
            "{what}: election {} is now {} (log index {}, digest {}): {}",
            ack.election_id,
            ack.phase,
            ack.index,
            short(&ack.digest, 16),
            ack.detail
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn create(g: &Globals, a: CreateArgs) -> CmdResult {
    let manifest = read_manifest(&a.manifest)?;
    let mut custodians = match &a.custodians {
        Some(p) => read_custodians(p)?,
        None => Vec::new(),
    };
    for c in &a.custodian {
        custodians.push(parse_custodian_flag(c)?);
    }
    if custodians.is_empty() {
        return Err(Failure::usage(
            "no custodian given: use --custodians FILE or --custodian NAME=KEY",
        ));
    }
    if a.quorum == 0 || a.quorum > custodians.len() {
        return Err(Failure::usage(format!(
            "--quorum must be between 1 and the number of custodians ({})",
            custodians.len()
        )));
    }
    let now = now_ms();
    let opens_at = parse_time_ms(&a.opens_at, now).map_err(|e| Failure::usage(format!("--opens-at: {e}")))?;
    let closes_at =
        parse_time_ms(&a.closes_at, now).map_err(|e| Failure::usage(format!("--closes-at: {e}")))?;
    if closes_at <= opens_at {
        return Err(Failure::usage("--closes-at must be after --opens-at"));
    }
    let roll = match &a.roll {
        Some(p) => read_roll(p)?,
        None => Vec::new(),
    };
    let req = CreateElectionRequest {
        election_id: a.id.clone(),
        manifest,
        custodians,
        quorum: a.quorum,
        opens_at,
        closes_at,
        min_ballots: Some(a.min_ballots),
        ceremony_deadlines: None,
        roll,
    };
    let client = admin_client(g)?;
    let (ack, summary) = block_on(async {
        let ack = client.create_election(&req).await?;
        let summary = client.election(&a.id).await?;
        Ok::<_, http::Error>((ack, summary))
    })??;
    if g.json {
        print_json(&serde_json::json!({
            "ack": ack,
            "fingerprint": summary.fingerprint,
            "base_hash": hex::encode(summary.base_hash),
            "roll_count": summary.roll_count,
        }))?;
    } else {
        print_ack(g, "Created", &ack)?;
        println!(
            "Window {} .. {}; {} custodians, quorum {}; roll {} credentials; minimum {} ballots.",
            format_ms(opens_at),
            format_ms(closes_at),
            req.custodians.len(),
            req.quorum,
            summary.roll_count,
            a.min_ballots
        );
        println!(
            "Fingerprint of Q: {}  (custodians compare it out of band before dealing)",
            summary.fingerprint
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn roll(g: &Globals, a: RollArgs) -> CmdResult {
    let creds = read_roll(&a.roll)?;
    if creds.is_empty() {
        return Err(Failure::usage(format!("the roll {} is empty", a.roll.display())));
    }
    let client = admin_client(g)?;
    let ack = block_on(client.add_roll(&a.id, &creds))??;
    print_ack(g, &format!("Added {} credentials", creds.len()), &ack)
}

enum Step {
    Open,
    Close,
    Advance,
}

fn step(g: &Globals, id: &str, s: Step) -> CmdResult {
    let client = admin_client(g)?;
    let (what, ack) = match s {
        Step::Open => ("Opened", block_on(client.open_election(id))??),
        Step::Close => ("Closed", block_on(client.close_election(id))??),
        Step::Advance => ("Advanced", block_on(client.advance_election(id))??),
    };
    print_ack(g, what, &ack)
}

/// The JSON output of `urna election show`.
#[derive(Debug, Serialize)]
pub struct ShowOutput {
    /// The election summary.
    pub summary: ElectionSummary,
    /// The result, once tallying started.
    pub result: Option<ResultResponse>,
}

fn show(g: &Globals, id: &str) -> CmdResult {
    let client = g.client()?;
    let (summary, result) = block_on(async {
        let s = client.election(id).await?;
        let r = if matches!(
            s.phase,
            crate::wire::ElectionPhase::Tallying | crate::wire::ElectionPhase::Published
        ) {
            Some(client.result(id).await?)
        } else {
            None
        };
        Ok::<_, http::Error>((s, r))
    })??;
    if g.json {
        print_json(&ShowOutput { summary, result })?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = &summary.params;
    println!("Election {}  phase {}", p.election_id, summary.phase);
    if let Some(r) = &summary.closed_reason {
        println!("  closed because: {r}");
    }
    println!("  fingerprint of Q  {}", summary.fingerprint);
    println!("  Q                 {}", hex::encode(summary.base_hash));
    println!("  Q'                {}", opt(summary.extended_hash.as_deref()));
    println!(
        "  window            {} .. {}",
        format_ms(p.opens_at),
        format_ms(p.closes_at)
    );
    println!(
        "  custodians        {} (quorum {}): {}",
        p.custodians.len(),
        p.quorum,
        p.custodians
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  ceremony          {}{}",
        summary.ceremony_phase,
        summary
            .ceremony_abort
            .as_deref()
            .map(|r| format!(" (aborted: {r})"))
            .unwrap_or_default()
    );
    println!("  roll              {} credentials", summary.roll_count);
    println!(
        "  ballots           {} cast, {} challenged (minimum for a tally {})",
        summary.ballot_count, summary.spoiled_count, p.min_ballots
    );
    println!("  election key K    {}", opt(summary.encryption_key.as_deref()));
    println!(
        "  events            {} (head {})",
        summary.event_count,
        short(&summary.event_head, 16)
    );
    if let Some(r) = &result {
        print!("{}", result_table(&summary, r));
        let names = |js: &[usize]| -> String {
            let v: Vec<String> = js
                .iter()
                .map(|&j| p.custodians.get(j).map_or(format!("#{j}"), |c| c.name.clone()))
                .collect();
            if v.is_empty() {
                "none yet".into()
            } else {
                v.join(", ")
            }
        };
        println!(
            "  decryption shares from: {}; signature shares from: {}",
            names(&r.decryption_shares),
            names(&r.signature_shares)
        );
        match &r.certificate {
            Some(_) => println!("  certified: yes (result hash {})", opt(r.result_hash.as_deref())),
            None => println!("  certified: not yet"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A table of the tally per contest and option (empty when not tallied yet).
pub fn result_table(summary: &ElectionSummary, r: &ResultResponse) -> String {
    let Some(t) = &r.tally else {
        return "  tally: not decrypted yet\n".into();
    };
    let mut table = Table::new(["CONTEST", "OPTION", "VOTES"]);
    for (c, counts) in summary.params.manifest.contests.iter().zip(&t.counts) {
        for (o, n) in c.options.iter().zip(counts) {
            table.row([c.title.clone(), o.label.clone(), n.to_string()]);
        }
    }
    table.render()
}

fn export(g: &Globals, a: ExportArgs) -> CmdResult {
    if !a.force && (a.out.exists() || a.out.is_symlink()) {
        return Err(Failure::usage(format!(
            "{} already exists; refusing to overwrite it (use --force)",
            a.out.display()
        )));
    }
    let client = g.client()?.with_timeout(std::time::Duration::from_secs(600))?;
    let bytes = match block_on(client.election_record_bytes(&a.id))? {
        Ok(b) => b,
        Err(e) => return Err(Failure::failed(record_error(&e))),
    };
    let record: urna_keyceremony::record::ElectionRecord = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::failed(format!("the record the node sent does not decode: {e}")))?;
    std::fs::write(&a.out, &bytes)
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", a.out.display())))?;
    if g.json {
        print_json(&serde_json::json!({
            "election_id": record.params.election_id,
            "out": a.out,
            "bytes": bytes.len(),
            "ballots": record.ballots.len(),
            "spoiled": record.spoiled.len(),
        }))?;
    } else {
        println!(
            "Wrote the record of {} ({} ballots, {} challenged, {} bytes) to {}. Check it with: urna verify {}",
            record.params.election_id,
            record.ballots.len(),
            record.spoiled.len(),
            bytes.len(),
            a.out.display(),
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A one-line explanation of a failed record download.
pub fn record_error(e: &http::Error) -> String {
    format!("cannot fetch the record: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse() {
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert!(parse_duration_ms("10x").is_err());
        assert!(parse_duration_ms("m").is_err());
        let now = 1_000_000;
        assert_eq!(parse_time_ms("now", now), Ok(now));
        assert_eq!(parse_time_ms("now+10s", now), Ok(now + 10_000));
        assert_eq!(parse_time_ms("+10s", now), Ok(now + 10_000));
        assert_eq!(parse_time_ms("now-1s", now), Ok(now - 1_000));
        assert_eq!(parse_time_ms("2026-11-24T08:00:00Z", now), Ok(1_795_507_200_000));
        assert!(parse_time_ms("tomorrow", now).is_err());
        assert_eq!(format_ms(1_795_507_200_000), "2026-11-24T08:00:00Z");
    }

    #[test]
    fn custodian_flags_and_files_parse() {
        let sk = urna_keyceremony::blsttc::SecretKey::random();
        let hexkey = hex::encode(sk.public_key().to_bytes());
        let c = parse_custodian_flag(&format!("alice={hexkey}")).unwrap();
        assert_eq!(c.name, "alice");
        assert!(parse_custodian_flag("alice").is_err());
        assert!(parse_custodian_flag("alice=zz").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            format!("[[custodians]]\nname = \"alice\"\nidentity_key = \"{hexkey}\"\n"),
        )
        .unwrap();
        assert_eq!(read_custodians(&p).unwrap(), vec![c.clone()]);
        let p = dir.path().join("c.json");
        std::fs::write(&p, serde_json::to_string(&vec![c.clone()]).unwrap()).unwrap();
        assert_eq!(read_custodians(&p).unwrap(), vec![c]);
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "[[contests]]\nid = \"mayor\"\ntitle = \"Mayor\"\nmin_selections = 1\nmax_selections = 1\n\
             options = [{ id = \"a\", label = \"Ada\" }, { id = \"b\", label = \"Bo\" }]\n",
        )
        .unwrap();
        assert_eq!(read_manifest(&p).unwrap().option_count(), 2);
    }
}

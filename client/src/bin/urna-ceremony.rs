//! `urna-ceremony`: the custodian's tool (design sections 4.2, 4.6 and 7).
//!
//! One encrypted key file per custodian holds its identity key and, per election, its transport key,
//! dealt polynomials and derived shares. The commands that talk to the cluster load that file, fetch the
//! public state, compute this custodian's next message locally, store any new secret in the file
//! *before* posting (so a crash never loses a transport key or polynomials that are already public) and
//! post the signed message. No secret is ever printed or sent unencrypted.
//!
//! Exit codes: 0 success, 1 a failed check (wrong passphrase, modified file, a refusal by the cluster, a
//! mismatch in what the cluster serves, I/O), 2 a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use urna_client::http::{encode_segment, Client, Error as HttpError};
use urna_client::wire::{
    ElectionSummary, ResultResponse, SharePurpose, SignatureShareRequest, SignedPartialDecryption,
};
use urna_keyceremony::ballot::{BallotContext, EncryptedBallot};
use urna_keyceremony::blsttc::poly::Poly;
use urna_keyceremony::ceremony::{
    rehearsal_ciphertext, CeremonyState, Custodian, DealerPolys, DerivedKeys, MessageBody, Phase,
    SignedCeremonyMessage,
};
use urna_keyceremony::credential::roll_hash;
use urna_keyceremony::election::{extended_hash, fingerprint, ElectionParams};
use urna_keyceremony::elgamal::Ciphertext;
use urna_keyceremony::group::Point;
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::record::{self, rehearsal_context, CeremonyEvent, CloseSummary, ElectionRecord};
use urna_keyceremony::sharefile::{
    self, CustodianFile, ElectionSecrets, KdfParams, SealedFile, ShareFileError,
};
use urna_keyceremony::tally::{
    self, decrypt_tally, key_share, partial_decrypt, result_hash, sign_result, verify_partial_exact,
    PartialDecryption, TallyContext, WireSignatureShare,
};
use zeroize::Zeroizing;

const EXAMPLES: &str = "\
Examples:
  # Create your identity key file (prompts for a passphrase twice)
  urna-ceremony keygen --out alice.key
  # Show the public identity key to register with the election administrator
  urna-ceremony status alice.key
  # The ceremony, step by step (each step waits for nothing: run it when the phase has come)
  export URNA_NODES=http://n1:8080,http://n2:8080,http://n3:8080
  urna-ceremony join alice.key --election city-2026 --expect-fingerprint 1a2b-3c4d-5e6f-7a8b
  urna-ceremony deal alice.key --election city-2026
  urna-ceremony check alice.key --election city-2026
  urna-ceremony answer alice.key --election city-2026      # only if someone complained about you
  urna-ceremony confirm alice.key --election city-2026
  urna-ceremony decrypt --rehearsal alice.key --election city-2026
  # After the polls close: decrypt the aggregate (recomputed from the record), then sign the result
  urna-ceremony decrypt alice.key --election city-2026 --node http://n1:8080
  urna-ceremony sign alice.key --election city-2026
  # Non-interactive passphrase, machine-readable output
  urna-ceremony --json status alice.key --passphrase-file pass.txt";

/// The custodian's tool for Urna's dealerless key ceremony and threshold tally.
///
/// Keeps your identity key and, per election, your transport key, dealt polynomials and key shares in
/// one file encrypted under your passphrase (argon2id + XChaCha20-Poly1305, 0600 permissions, never
/// written in the clear). The passphrase comes from --passphrase-file, else the URNA_PASSPHRASE
/// environment variable, else a prompt on the terminal. Cluster commands take --node URL (repeatable)
/// or URNA_NODES (comma-separated).
#[derive(Parser, Debug)]
#[command(name = "urna-ceremony", version, after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new identity key file, encrypted under a passphrase.
    #[command(after_help = "Example:\n  urna-ceremony keygen --out alice.key")]
    Keygen {
        /// Where to write the key file (refuses to overwrite an existing file).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
        /// argon2id memory cost in KiB (testing only).
        #[arg(long, hide = true)]
        kdf_memory_kib: Option<u32>,
        /// argon2id iterations (testing only).
        #[arg(long, hide = true)]
        kdf_iterations: Option<u32>,
    },
    /// Decrypt a key file and show what it holds and each election's progress: public data only.
    #[command(after_help = "Example:\n  urna-ceremony status alice.key --passphrase-file pass.txt")]
    Status {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
    },
    /// Join an election's ceremony: create its transport key (kept in the file), post the signed join.
    ///
    /// Prints the fingerprint of the election's base hash Q; compare it with the other custodians out
    /// of band (or pass --expect-fingerprint) before dealing.
    #[command(
        after_help = "Example:\n  urna-ceremony join alice.key --election city-2026 --expect-fingerprint 1a2b-3c4d-5e6f-7a8b"
    )]
    Join {
        #[command(flatten)]
        net: NetArgs,
        /// Refuse to join unless Q's fingerprint is this one (compared out of band).
        #[arg(long, value_name = "FINGERPRINT")]
        expect_fingerprint: Option<String>,
    },
    /// Deal: draw both polynomials (kept in the file), post commitments and encrypted shares.
    #[command(after_help = "Example:\n  urna-ceremony deal alice.key --election city-2026")]
    Deal {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Decrypt and check every dealer's shares to you; post an ack or a complaint per dealer.
    #[command(after_help = "Example:\n  urna-ceremony check alice.key --election city-2026")]
    Check {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Answer the complaints against you by revealing the complained-about values.
    #[command(after_help = "Example:\n  urna-ceremony answer alice.key --election city-2026")]
    Answer {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Derive your key shares (kept only in the encrypted file) and post the confirmation.
    #[command(after_help = "Example:\n  urna-ceremony confirm alice.key --election city-2026")]
    Confirm {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Post a signed partial decryption: of the rehearsal ciphertext (--rehearsal), or of the closed
    /// box's aggregate, which is first recomputed from the election record (refused on any mismatch).
    #[command(
        after_help = "Examples:\n  urna-ceremony decrypt --rehearsal alice.key --election city-2026\n  urna-ceremony decrypt alice.key --election city-2026"
    )]
    Decrypt {
        #[command(flatten)]
        net: NetArgs,
        /// Decrypt the ceremony's rehearsal ciphertext instead of the tally.
        #[arg(long)]
        rehearsal: bool,
    },
    /// Check the published tally against the record's decryption shares and sign the result hash.
    #[command(after_help = "Example:\n  urna-ceremony sign alice.key --election city-2026")]
    Sign {
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Args, Debug)]
struct PassArgs {
    /// Read the passphrase from the first line of this file (else $URNA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct NetArgs {
    /// The key file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The election id.
    #[arg(long, value_name = "ID")]
    election: String,
    /// A node's URL (repeatable); default: $URNA_NODES, comma-separated.
    #[arg(long = "node", value_name = "URL", env = "URNA_NODES", value_delimiter = ',')]
    nodes: Vec<String>,
    #[command(flatten)]
    pass: PassArgs,
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    fn check(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<ShareFileError> for Failure {
    fn from(e: ShareFileError) -> Self {
        match e {
            ShareFileError::EmptyPassphrase => Failure::usage(e.to_string()),
            other => Failure::check(other.to_string()),
        }
    }
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::NoNodes | HttpError::BadUrl(_) => Failure::usage(e.to_string()),
            other => Failure::check(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim();
            let line = line.strip_prefix("error: ").unwrap_or(line);
            eprintln!("urna-ceremony: {line} (see urna-ceremony --help)");
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line, whatever the cluster said.
            let message = f.message.split_whitespace().collect::<Vec<_>>().join(" ");
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": message, "exit_code": f.code })
                );
            }
            eprintln!("urna-ceremony: {message}");
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    match cli.command {
        Command::Keygen {
            out,
            pass,
            kdf_memory_kib,
            kdf_iterations,
        } => {
            let mut kdf = KdfParams::default();
            if let Some(m) = kdf_memory_kib {
                kdf.m_cost_kib = m;
            }
            if let Some(t) = kdf_iterations {
                kdf.t_cost = t;
            }
            keygen(&out, &pass, kdf, json)
        }
        Command::Status { file, pass } => status(&file, &pass, json),
        Command::Join {
            net,
            expect_fingerprint,
        } => with_runtime(|| join(&net, expect_fingerprint.as_deref()), json),
        Command::Deal { net } => with_runtime(|| deal(&net), json),
        Command::Check { net } => with_runtime(|| check(&net), json),
        Command::Answer { net } => with_runtime(|| answer(&net), json),
        Command::Confirm { net } => with_runtime(|| confirm(&net), json),
        Command::Decrypt { net, rehearsal } => {
            if rehearsal {
                with_runtime(|| decrypt_rehearsal(&net), json)
            } else {
                with_runtime(|| decrypt_tally_cmd(&net), json)
            }
        }
        Command::Sign { net } => with_runtime(|| sign(&net), json),
    }
}

/// What a cluster command reports: a human summary (lines) and the JSON fields.
struct Report {
    lines: Vec<String>,
    fields: serde_json::Map<String, Value>,
}

impl Report {
    fn new() -> Self {
        Report {
            lines: Vec::new(),
            fields: serde_json::Map::new(),
        }
    }

    fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    fn set(&mut self, k: &str, v: impl Serialize) {
        self.fields
            .insert(k.to_string(), serde_json::to_value(v).unwrap_or(Value::Null));
    }
}

/// Runs a cluster command on a small single-threaded runtime and prints its report.
fn with_runtime<F, Fut>(f: F, json: bool) -> Result<(), Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Report, Failure>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::check(format!("cannot start the async runtime: {e}")))?;
    let report = rt.block_on(f())?;
    if json {
        let mut m = report.fields;
        m.insert("ok".into(), Value::Bool(true));
        println!("{}", Value::Object(m));
    } else {
        for l in report.lines {
            println!("{l}");
        }
    }
    Ok(())
}

fn passphrase(args: &PassArgs, confirm: bool) -> Result<Zeroizing<String>, Failure> {
    let pass = if let Some(path) = &args.passphrase_file {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read passphrase file {}: {e}", path.display()))
            })?);
        Zeroizing::new(text.lines().next().unwrap_or("").to_string())
    } else if let Ok(p) = std::env::var("URNA_PASSPHRASE") {
        Zeroizing::new(p)
    } else {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "no passphrase: use --passphrase-file or URNA_PASSPHRASE, or run on a terminal",
            ));
        }
        let no_tty = |e: std::io::Error| {
            Failure::usage(format!(
                "no passphrase: use --passphrase-file or URNA_PASSPHRASE, or run on a terminal ({e})"
            ))
        };
        let p = Zeroizing::new(rpassword::prompt_password("Passphrase: ").map_err(no_tty)?);
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ").map_err(no_tty)?);
            if *again != *p {
                return Err(Failure::usage("the passphrases do not match"));
            }
        }
        p
    };
    if pass.is_empty() {
        return Err(Failure::usage("the passphrase is empty"));
    }
    Ok(pass)
}

fn keygen(out: &Path, pass: &PassArgs, kdf: KdfParams, json: bool) -> Result<(), Failure> {
    if out.exists() {
        return Err(Failure::check(format!(
            "{} already exists; not overwriting it",
            out.display()
        )));
    }
    let passphrase = passphrase(pass, true)?;
    let file = CustodianFile::generate(&mut OsRng);
    sharefile::create(out, &file, passphrase.as_bytes(), kdf, &mut OsRng)?;
    let key = file.identity_key();
    let fp = identity_fingerprint(&file);
    if json {
        println!(
            "{}",
            json!({ "ok": true, "file": out.display().to_string(), "identity_key": key.to_hex(), "fingerprint": fp })
        );
    } else {
        println!("Created {} (encrypted, permissions 0600).", out.display());
        println!("Identity key: {}", key.to_hex());
        println!("Fingerprint:  {fp}");
        println!("Give the identity key to the election administrator; compare the fingerprint out of band.");
    }
    Ok(())
}

fn identity_fingerprint(file: &CustodianFile) -> String {
    fingerprint(&urna_keyceremony::hash::h(
        "urna/v1/identity-key",
        &[&file.identity_key().to_bytes()],
    ))
}

fn status(path: &Path, pass: &PassArgs, json: bool) -> Result<(), Failure> {
    let passphrase = passphrase(pass, false)?;
    let file = sharefile::read(path, passphrase.as_bytes())?;
    let key = file.identity_key();
    let fp = identity_fingerprint(&file);
    let elections: Vec<_> = file
        .elections
        .iter()
        .map(|e| {
            json!({
                "election_id": e.election_id,
                "custodian_index": e.index,
                "base_hash_fingerprint": fingerprint(&e.base_hash),
                "transport_key": hex::encode(e.transport.public_key().to_bytes()),
                "has_polynomials": e.polys.is_some(),
                "has_shares": e.shares.is_some(),
                "encryption_key_share": e.shares.as_ref().map(|s| hex::encode(s.encryption_share.public_key_share().to_bytes())),
                "signing_key_share": e.shares.as_ref().map(|s| hex::encode(s.signing_share.public_key_share().to_bytes())),
                "progress": e.progress,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            json!({
                "ok": true,
                "file": path.display().to_string(),
                "identity_key": key.to_hex(),
                "fingerprint": fp,
                "elections": elections,
            })
        );
    } else {
        println!("File:         {}", path.display());
        println!("Identity key: {}", key.to_hex());
        println!("Fingerprint:  {fp}");
        if file.elections.is_empty() {
            println!("Elections:    none yet");
        }
        for e in &file.elections {
            println!(
                "Election {} (custodian {}, Q {}): transport key {}…, polynomials: {}, shares: {}",
                e.election_id,
                e.index,
                fingerprint(&e.base_hash),
                &hex::encode(e.transport.public_key().to_bytes())[..16],
                if e.polys.is_some() { "kept" } else { "none" },
                if e.shares.is_some() { "derived" } else { "none" },
            );
            println!(
                "  progress: {}",
                if e.progress.is_empty() {
                    "nothing posted yet".to_string()
                } else {
                    e.progress.join(" > ")
                }
            );
        }
    }
    Ok(())
}

/// The decrypted key file with what is needed to write it back (same passphrase, same KDF cost).
struct Session {
    path: PathBuf,
    passphrase: Zeroizing<String>,
    kdf: KdfParams,
    file: CustodianFile,
}

impl Session {
    fn open(path: &Path, pass: &PassArgs) -> Result<Self, Failure> {
        let text = std::fs::read(path).map_err(|e| Failure::check(format!("{}: {e}", path.display())))?;
        let sealed: SealedFile = serde_json::from_slice(&text)
            .map_err(|e| Failure::check(format!("{} is not a custodian key file: {e}", path.display())))?;
        let passphrase = passphrase(pass, false)?;
        let file = sharefile::open(&sealed, passphrase.as_bytes())?;
        Ok(Session {
            path: path.to_path_buf(),
            passphrase,
            kdf: sealed.kdf,
            file,
        })
    }

    /// Re-encrypts and atomically replaces the file (0600).
    fn save(&self) -> Result<(), Failure> {
        sharefile::write(
            &self.path,
            &self.file,
            self.passphrase.as_bytes(),
            self.kdf,
            &mut OsRng,
        )?;
        Ok(())
    }

    fn entry(&self, election: &str) -> Option<&ElectionSecrets> {
        self.file.elections.iter().find(|e| e.election_id == election)
    }

    fn entry_mut(&mut self, election: &str) -> Result<&mut ElectionSecrets, Failure> {
        self.file
            .elections
            .iter_mut()
            .find(|e| e.election_id == election)
            .ok_or_else(|| not_joined(election))
    }

    /// Records a completed step and saves.
    fn mark(&mut self, election: &str, step: &str) -> Result<(), Failure> {
        self.entry_mut(election)?.mark(step);
        self.save()
    }
}

fn not_joined(election: &str) -> Failure {
    Failure::check(format!(
        "this key file has not joined election {election}: run urna-ceremony join first"
    ))
}

/// A cluster command's context: the key file, the client, the election's parameters.
struct Ctx {
    s: Session,
    client: Client,
    id: String,
    params: ElectionParams,
}

impl Ctx {
    async fn new(net: &NetArgs) -> Result<Self, Failure> {
        let nodes: Vec<&str> = net
            .nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        let client = Client::new(nodes)?;
        let s = Session::open(&net.file, &net.pass)?;
        let summary: ElectionSummary = get(&client, &election_path(&net.election, "")).await?;
        let params = summary.params;
        if params.election_id != net.election {
            return Err(Failure::check(format!(
                "the cluster answered with election {:?} for {:?}",
                params.election_id, net.election
            )));
        }
        Ok(Ctx {
            s,
            client,
            id: net.election.clone(),
            params,
        })
    }

    /// This custodian's index in the election (by its identity key).
    fn index(&self) -> Result<usize, Failure> {
        let me = self.s.file.identity_key();
        self.params
            .custodians
            .iter()
            .position(|c| c.identity_key == me)
            .ok_or_else(|| {
                Failure::check(format!(
                    "your identity key {}… is not among the custodians of election {}",
                    &me.to_hex()[..16],
                    self.id
                ))
            })
    }

    fn entry(&self) -> Result<&ElectionSecrets, Failure> {
        let e = self.s.entry(&self.id).ok_or_else(|| not_joined(&self.id))?;
        if e.base_hash != self.params.base_hash() {
            return Err(Failure::check(format!(
                "the cluster's election {} (Q {}) is not the one this file joined (Q {})",
                self.id,
                self.params.fingerprint(),
                fingerprint(&e.base_hash)
            )));
        }
        Ok(e)
    }

    /// The ceremony driver restored from the file.
    fn custodian(&self) -> Result<Custodian, Failure> {
        self.entry()?
            .custodian(&self.s.file.identity, &self.params)
            .map_err(|e| Failure::check(e.to_string()))
    }

    async fn ceremony(&self) -> Result<CeremonyState, Failure> {
        let st: Option<CeremonyState> = get(&self.client, &election_path(&self.id, "/ceremony")).await?;
        st.ok_or_else(|| Failure::check(format!("election {} has no ceremony yet", self.id)))
    }

    async fn post(&self, what: &str, body: &impl Serialize) -> Result<Value, Failure> {
        self.client
            .post_json::<_, Value>(&election_path(&self.id, what), body)
            .await
            .map_err(|e| Failure::check(format!("the cluster refused the {what} message: {e}")))
    }

    async fn post_ceremony(&self, m: &SignedCeremonyMessage) -> Result<Value, Failure> {
        let kind = match &m.body {
            MessageBody::Join(_) => "joins",
            MessageBody::Deal(_) => "deals",
            MessageBody::Ack(_) => "acks",
            MessageBody::Complaint(_) => "complaints",
            MessageBody::Answer(_) => "answers",
            MessageBody::Confirmation(_) => "confirmations",
        };
        self.post(&format!("/ceremony/{kind}"), m).await
    }

    async fn record(&self) -> Result<ElectionRecord, Failure> {
        let bytes = self
            .client
            .election_record_bytes(&self.id)
            .await
            .map_err(|e| Failure::check(format!("cannot fetch the election record: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::check(format!("the election record does not decode: {e}")))
    }

    fn report(&self, j: usize) -> Report {
        let mut r = Report::new();
        r.set("election_id", &self.id);
        r.set("custodian_index", j);
        r.set("fingerprint", self.params.fingerprint());
        r
    }
}

fn election_path(id: &str, tail: &str) -> String {
    format!("/v1/elections/{}{tail}", encode_segment(id))
}

/// A linearizable read (the node confirms its leadership or waits until it has applied the leader's
/// commit index), so a step sees the previous step's writes.
async fn get<T: DeserializeOwned>(client: &Client, path: &str) -> Result<T, Failure> {
    Ok(client.get_json(&format!("{path}?consistent=true")).await?)
}

fn phase_error(st: &CeremonyState, want: &str) -> Failure {
    match st.abort_reason() {
        Some(r) => Failure::check(format!("the ceremony aborted: {r}")),
        None => Failure::check(format!("the ceremony is in the {} phase; {want}", st.phase())),
    }
}

fn normalize_fp(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

async fn join(net: &NetArgs, expect: Option<&str>) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let fp = c.params.fingerprint();
    if let Some(want) = expect {
        if normalize_fp(want) != normalize_fp(&fp) {
            return Err(Failure::check(format!(
                "fingerprint mismatch: election {} has Q fingerprint {fp}, you expected {want}; not joining",
                c.id
            )));
        }
    }
    let j = c.index()?;
    if c.s.entry(&c.id).is_none() {
        // A fresh transport key, stored (encrypted) before it is announced.
        let cu = Custodian::new(c.s.file.identity.clone(), j, &c.params, &mut OsRng)
            .map_err(|e| Failure::check(e.to_string()))?;
        c.s.file
            .elections
            .push(ElectionSecrets::from_custodian(&c.params, &cu, None));
        c.s.save()?;
    }
    let cu = c.custodian()?;
    let st = c.ceremony().await?;
    let mine = cu.join();
    let MessageBody::Join(ref body) = mine.body else {
        return Err(Failure::check("internal: join message"));
    };
    let posted = match st.transport_key(j) {
        Some(k) if *k == body.transport_key => false,
        Some(_) => {
            return Err(Failure::check(format!(
                "custodian {j} already joined election {} with another transport key (another copy of this key file?)",
                c.id
            )))
        }
        None if st.phase() != Phase::Join => return Err(phase_error(&st, "joins are over")),
        None => {
            c.post_ceremony(&mine).await?;
            true
        }
    };
    c.s.mark(&c.id, "joined")?;
    let mut r = c.report(j);
    r.set("joined", true);
    r.set("already_joined", !posted);
    r.set("transport_key", body.transport_key.to_hex());
    r.line(format!(
        "{} election {} as custodian {j} ({}).",
        if posted { "Joined" } else { "Already joined" },
        c.id,
        c.params.custodians[j].name
    ));
    r.line(format!("Q fingerprint: {fp}"));
    r.line("Compare this fingerprint with the other custodians out of band before dealing.");
    Ok(r)
}

async fn deal(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let mut cu = c.custodian()?;
    let st = c.ceremony().await?;
    let mut r = c.report(j);
    if st.deal(j).is_some() {
        c.s.mark(&c.id, "dealt")?;
        r.set("already_dealt", true);
        r.line(format!("Already dealt in election {}.", c.id));
        return Ok(r);
    }
    if st.phase() != Phase::Deal {
        return Err(phase_error(
            &st,
            "deals are accepted in the deal phase (after every custodian joined)",
        ));
    }
    let polys = match cu.polys() {
        // Drawn by an earlier run whose post did not arrive: deal the same polynomials again.
        Some(p) => p.clone(),
        None => {
            let t = st.threshold();
            let p = DealerPolys {
                encryption: Poly::random(t, &mut OsRng),
                signing: Poly::random(t, &mut OsRng),
            };
            cu.set_polys(p.clone());
            c.s.entry_mut(&c.id)?.polys = Some(p.clone());
            c.s.save()?;
            p
        }
    };
    let body = cu
        .deal_body(&st, &polys, &mut OsRng)
        .map_err(|e| Failure::check(e.to_string()))?;
    let recipients = body.shares.len();
    c.post_ceremony(&cu.sign(MessageBody::Deal(body))).await?;
    c.s.mark(&c.id, "dealt")?;
    r.set("already_dealt", false);
    r.set("recipients", recipients);
    r.line(format!(
        "Dealt in election {}: commitments of degree {} and shares encrypted to {recipients} custodians; polynomials kept in {}.",
        c.id,
        st.threshold(),
        c.s.path.display()
    ));
    Ok(r)
}

async fn check(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let cu = c.custodian()?;
    let st = c.ceremony().await?;
    if st.phase() != Phase::Check {
        if st.phase() > Phase::Check && st.phase() != Phase::Aborted {
            let mut r = c.report(j);
            r.set("acks", 0);
            r.set("complaints", Vec::<Value>::new());
            r.line(format!("The check phase is over (now {}).", st.phase()));
            return Ok(r);
        }
        return Err(phase_error(&st, "checks start once every dealer has dealt"));
    }
    let mut acks = Vec::new();
    let mut complaints = Vec::new();
    for m in cu.check(&st) {
        c.post_ceremony(&m).await?;
        match &m.body {
            MessageBody::Ack(a) => acks.push(a.dealer),
            MessageBody::Complaint(x) => {
                complaints.push(json!({ "dealer": x.dealer, "kind": x.kind.to_string() }))
            }
            _ => {}
        }
    }
    c.s.mark(&c.id, "checked")?;
    let mut r = c.report(j);
    r.line(format!(
        "Checked election {}: acknowledged dealers {acks:?}; {} complaint(s).",
        c.id,
        complaints.len()
    ));
    for x in &complaints {
        r.line(format!(
            "Complained about dealer {} ({} polynomial): its share to you does not match its commitment.",
            x["dealer"], x["kind"]
        ));
    }
    r.set("acks", acks);
    r.set("complaints", complaints);
    Ok(r)
}

async fn answer(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let cu = c.custodian()?;
    let st = c.ceremony().await?;
    let msgs = cu.answer(&st).map_err(|e| Failure::check(e.to_string()))?;
    let mut answered = Vec::new();
    for m in &msgs {
        c.post_ceremony(m).await?;
        if let MessageBody::Answer(a) = &m.body {
            answered.push(json!({ "complainer": a.complainer, "kind": a.kind.to_string() }));
        }
    }
    if !msgs.is_empty() {
        c.s.mark(&c.id, "answered")?;
    }
    let mut r = c.report(j);
    r.line(if answered.is_empty() {
        format!("No open complaint against you in election {}.", c.id)
    } else {
        format!("Answered {} complaint(s) in election {}.", answered.len(), c.id)
    });
    r.set("answered", answered);
    Ok(r)
}

async fn confirm(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let cu = c.custodian()?;
    let st = c.ceremony().await?;
    let Some(keys) = st.keys() else {
        return Err(phase_error(&st, "shares are derived in the confirm phase"));
    };
    let secrets = cu.derive(&st).map_err(|e| Failure::check(e.to_string()))?;
    // Kept only in the encrypted file, before anything is posted.
    c.s.entry_mut(&c.id)?.shares = Some(secrets.clone());
    c.s.save()?;
    let posted = if st.confirmation(j).is_some() {
        false
    } else if st.phase() != Phase::Confirm {
        return Err(phase_error(&st, "confirmations are over"));
    } else {
        let m = cu
            .confirm(&st, &secrets, &mut OsRng)
            .map_err(|e| Failure::check(e.to_string()))?;
        c.post_ceremony(&m).await?;
        true
    };
    c.s.mark(&c.id, "confirmed")?;
    let kj = hex::encode(secrets.encryption_share.public_key_share().to_bytes());
    let mut r = c.report(j);
    r.set("already_confirmed", !posted);
    r.set("qualified", &keys.qualified);
    r.set("encryption_key_share", &kj);
    r.set("quorum_warning", st.quorum_warning());
    r.line(format!(
        "{} election {}: shares derived over the qualified set {:?} and stored encrypted in {}.",
        if posted { "Confirmed" } else { "Already confirmed" },
        c.id,
        keys.qualified,
        c.s.path.display()
    ));
    r.line(format!("Your encryption key share K_{j}: {kj}"));
    if st.quorum_warning() {
        r.line("Warning: exactly a quorum of custodians remains; one lost custodian blocks the tally.");
    }
    Ok(r)
}

/// The stored shares, checked against the public key shares of the ceremony's keys.
fn my_shares<'a>(
    c: &'a Ctx,
    keys: &DerivedKeys,
    j: usize,
) -> Result<&'a urna_keyceremony::ceremony::CustodianSecrets, Failure> {
    let shares = c.entry()?.shares.as_ref().ok_or_else(|| {
        Failure::check(format!(
            "no key shares for election {} in this file: run urna-ceremony confirm first",
            c.id
        ))
    })?;
    if shares.encryption_share.public_key_share() != keys.encryption.public_key_share(j)
        || shares.signing_share.public_key_share() != keys.signing.public_key_share(j)
    {
        return Err(Failure::check(
            "the shares in this file do not match the election's public key shares",
        ));
    }
    Ok(shares)
}

async fn decrypt_rehearsal(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let st = c.ceremony().await?;
    let mut r = c.report(j);
    if st.phase() == Phase::Complete {
        r.set("already_complete", true);
        r.line(format!("The rehearsal of election {} is already complete.", c.id));
        return Ok(r);
    }
    let (Phase::Rehearsal, Some(ct), Some(keys), Some(transcript)) =
        (st.phase(), st.rehearsal(), st.keys(), st.final_transcript_hash())
    else {
        return Err(phase_error(&st, "the rehearsal follows the confirmations"));
    };
    // The rehearsal ciphertext must follow from the transcript: recompute it.
    let expect =
        rehearsal_ciphertext(transcript, &keys.encryption_key).map_err(|e| Failure::check(e.to_string()))?;
    if expect != *ct {
        return Err(Failure::check(
            "the rehearsal ciphertext the cluster serves does not follow from the ceremony transcript; not decrypting",
        ));
    }
    let shares = my_shares(&c, keys, j)?;
    let kj = key_share(&keys.encryption, j).map_err(|e| Failure::check(e.to_string()))?;
    let n = c.params.custodians.len();
    let base = c.params.base_hash();
    // One convention, shared with the node and the record verifier: the rehearsal's proofs and the
    // identity signature are bound to Q (record::rehearsal_context).
    let pd = partial_decrypt(
        &rehearsal_context(&base, n),
        j,
        &shares.encryption_share,
        &kj,
        &[*ct],
        &mut OsRng,
    )
    .map_err(|e| Failure::check(e.to_string()))?;
    let body = SignedPartialDecryption::sign(&c.s.file.identity, &base, SharePurpose::Rehearsal, j, pd);
    c.client
        .post_json::<_, Value>(&election_path(&c.id, "/ceremony/rehearsal"), &body)
        .await
        .map_err(|e| Failure::check(format!("the cluster refused the rehearsal share: {e}")))?;
    c.s.mark(&c.id, "rehearsal")?;
    r.set("already_complete", false);
    r.line(format!(
        "Posted your partial decryption of the rehearsal ciphertext of election {}.",
        c.id
    ));
    Ok(r)
}

/// What a custodian recomputes from the election record before using its shares on it.
struct Recomputed {
    keys: DerivedKeys,
    q_ext: Hash32,
    close: CloseSummary,
    close_hash: Hash32,
    aggregate: Vec<Ciphertext>,
}

/// Checks the record for this custodian's election: every pre-tally check of the record verifier
/// (ceremony replay, rehearsal, roll, ballot proofs, one per credential, no copies, tracking chain,
/// spoiled ballots, close summary) and an independent recomputation of the close summary
/// (`CloseSummary::compute`) over the record's ballots. Any mismatch refuses.
fn recompute(c: &Ctx, rec: &ElectionRecord) -> Result<Recomputed, Failure> {
    if rec.params.base_hash() != c.params.base_hash() {
        return Err(Failure::check(
            "the record's election parameters differ from the cluster's (another Q); not decrypting",
        ));
    }
    let report = record::verify_record(rec);
    use record::checks as k;
    for name in [
        k::FORMAT,
        k::PARAMETERS,
        k::CEREMONY,
        k::REHEARSAL,
        k::ROLL,
        k::BALLOT_PROOFS,
        k::ONE_PER_CREDENTIAL,
        k::NO_COPIES,
        k::TRACKING,
        k::SPOILED,
        k::CLOSE,
    ] {
        match report.checks.iter().find(|x| x.name == name) {
            Some(x) if x.passed => {}
            Some(x) => {
                return Err(Failure::check(format!(
                    "the election record fails the {name} check ({}); not using your shares on it",
                    x.detail
                )))
            }
            None => {
                let why = report
                    .first_failure()
                    .map(|f| format!("{}: {}", f.name, f.detail))
                    .unwrap_or_else(|| "the check did not run".into());
                return Err(Failure::check(format!(
                    "the election record could not be checked up to {name} ({why})"
                )));
            }
        }
    }
    // Independently of the verifier: replay the ceremony, recompute Q' and the close summary.
    let mut st = CeremonyState::new(&rec.params, rec.deadlines).map_err(|e| Failure::check(e.to_string()))?;
    for ev in &rec.ceremony {
        match ev {
            CeremonyEvent::Message(m) => st.apply(m),
            CeremonyEvent::Advance { time_ms } => st.advance(*time_ms),
        }
        .map_err(|e| Failure::check(format!("the record's ceremony does not replay: {e}")))?;
    }
    let (Some(keys), Some(transcript)) = (st.keys().cloned(), st.final_transcript_hash().copied()) else {
        return Err(Failure::check("the record's ceremony did not derive keys"));
    };
    let q_ext = extended_hash(
        &rec.params.base_hash(),
        &keys.encryption_key,
        &keys.signing.public_key(),
        &transcript,
        &roll_hash(&rec.roll),
        rec.roll.len() as u64,
    );
    let ctx = BallotContext::new(
        rec.params.election_id.clone(),
        q_ext,
        rec.params.manifest.clone(),
        keys.encryption_key,
    )
    .map_err(|e| Failure::check(e.to_string()))?;
    let ballots: Vec<EncryptedBallot> = rec.ballots.iter().map(|b| b.ballot.clone()).collect();
    let hashes: Vec<Hash32> = ballots.iter().map(|b| b.hash(&ctx)).collect();
    let mine = CloseSummary::compute(&q_ext, &hashes, &ballots);
    let Some(close) = rec.close.clone() else {
        return Err(Failure::check("the election is not closed: nothing to decrypt"));
    };
    if close != mine {
        return Err(Failure::check(
            "the record's close summary (count, aggregate, tree root or tracking code) differs from the one recomputed from its ballots; not decrypting",
        ));
    }
    if close.ballot_count < rec.params.min_ballots {
        return Err(Failure::check(format!(
            "{} ballots is below the election's minimum of {}: no tally is decrypted",
            close.ballot_count, rec.params.min_ballots
        )));
    }
    let Some(aggregate) = close.aggregate.clone() else {
        return Err(Failure::check("the record has no aggregate to decrypt"));
    };
    let close_hash = close.hash(&q_ext, &rec.params.election_id);
    Ok(Recomputed {
        keys,
        q_ext,
        close,
        close_hash,
        aggregate,
    })
}

async fn decrypt_tally_cmd(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let rec = c.record().await?;
    let rc = recompute(&c, &rec)?;
    let shares = my_shares(&c, &rc.keys, j)?;
    let kj: Point = key_share(&rc.keys.encryption, j).map_err(|e| Failure::check(e.to_string()))?;
    let ctx = TallyContext::new(rc.q_ext, c.params.custodians.len());
    let pd: PartialDecryption =
        partial_decrypt(&ctx, j, &shares.encryption_share, &kj, &rc.aggregate, &mut OsRng)
            .map_err(|e| Failure::check(e.to_string()))?;
    let body = SignedPartialDecryption::sign(&c.s.file.identity, &rc.q_ext, SharePurpose::Tally, j, pd);
    c.post("/tally/shares", &body).await?;
    c.s.mark(&c.id, "decrypted")?;
    let mut r = c.report(j);
    r.set("ballot_count", rc.close.ballot_count);
    r.set("options", rc.aggregate.len());
    r.line(format!(
        "Recomputed the aggregate of {} ballots from the record: it matches. Posted your partial decryption of {} options in election {}.",
        rc.close.ballot_count,
        rc.aggregate.len(),
        c.id
    ));
    Ok(r)
}

async fn sign(net: &NetArgs) -> Result<Report, Failure> {
    let mut c = Ctx::new(net).await?;
    let j = c.index()?;
    let res: ResultResponse = get(&c.client, &election_path(&c.id, "/result")).await?;
    let (Some(tally), Some(rh_hex)) = (res.tally.clone(), res.result_hash.clone()) else {
        return Err(Failure::check(format!(
            "election {} has no tally yet (phase {}): decrypt first, then sign",
            c.id, res.phase
        )));
    };
    let rec = c.record().await?;
    let rc = recompute(&c, &rec)?;
    // The tally must follow from the published decryption shares.
    let ctx = TallyContext::new(rc.q_ext, c.params.custodians.len());
    let mut valid: Vec<(usize, &PartialDecryption)> = Vec::new();
    for d in &rec.decryption_shares {
        let ok = rc.keys.qualified.contains(&d.custodian)
            && !valid.iter().any(|(x, _)| *x == d.custodian)
            && key_share(&rc.keys.encryption, d.custodian)
                .ok()
                .is_some_and(|kj| {
                    verify_partial_exact(&ctx, d.custodian, &kj, &rc.aggregate, &d.partial).is_ok()
                });
        if ok {
            valid.push((d.custodian, &d.partial));
        }
    }
    let q = c.params.quorum;
    if valid.len() < q {
        return Err(Failure::check(format!(
            "the record holds {} valid decryption shares, {q} needed; not signing",
            valid.len()
        )));
    }
    let mine = decrypt_tally(
        &c.params.manifest,
        &rc.aggregate,
        &valid,
        q,
        rc.close.ballot_count,
    )
    .map_err(|e| Failure::check(format!("the decryption shares do not combine: {e}")))?;
    if mine != tally {
        return Err(Failure::check(format!(
            "the published tally {:?} does not follow from the decryption shares ({:?}); not signing",
            tally.counts, mine.counts
        )));
    }
    let rh = result_hash(&rc.q_ext, &rc.close_hash, &tally);
    if hex::encode(rh) != rh_hex.to_ascii_lowercase() {
        return Err(Failure::check(
            "the published result hash does not follow from Q', the close entry and the tally; not signing",
        ));
    }
    let shares = my_shares(&c, &rc.keys, j)?;
    let share = sign_result(&shares.signing_share, &rh);
    tally::verify_signature_share(&rc.keys.signing, j, &rh, &share)
        .map_err(|e| Failure::check(e.to_string()))?;
    let body = SignatureShareRequest {
        custodian: j,
        share: WireSignatureShare(share),
    };
    c.post("/tally/signatures", &body).await?;
    c.s.mark(&c.id, "signed")?;
    let mut r = c.report(j);
    r.set("tally", &tally.counts);
    r.set("result_hash", hex::encode(rh));
    r.line(format!(
        "The tally {:?} of election {} follows from {} valid decryption shares; signed result hash {}.",
        tally.counts,
        c.id,
        valid.len(),
        hex::encode(rh)
    ));
    Ok(r)
}

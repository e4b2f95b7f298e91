//! `urna-ceremony`: the custodian's tool (design section 7).
//!
//! Exit codes: 0 success, 1 a failed check (wrong passphrase, modified file, I/O), 2 a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rand::rngs::OsRng;
use serde_json::json;
use urna_keyceremony::election::fingerprint;
use urna_keyceremony::sharefile::{self, CustodianFile, KdfParams, ShareFileError};
use zeroize::Zeroizing;

const EXAMPLES: &str = "\
Examples:
  # Create your identity key file (prompts for a passphrase twice)
  urna-ceremony keygen --out alice.key
  # Non-interactive, passphrase from a file (its first line)
  urna-ceremony keygen --out alice.key --passphrase-file pass.txt
  # Show the public identity key to register with the election administrator
  URNA_PASSPHRASE=... urna-ceremony status alice.key
  # Machine-readable output
  urna-ceremony --json status alice.key --passphrase-file pass.txt";

/// The custodian's tool for Urna's dealerless key ceremony.
///
/// Keeps your identity key and, per election, your transport key and key shares in one file encrypted
/// under your passphrase (argon2id + XChaCha20-Poly1305, 0600 permissions, never written in the clear).
/// The passphrase comes from --passphrase-file, else the URNA_PASSPHRASE environment variable, else a
/// prompt on the terminal.
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
    /// Decrypt a key file and show what it holds: public keys only, never a secret.
    #[command(after_help = "Example:\n  urna-ceremony status alice.key --passphrase-file pass.txt")]
    Status {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
    },
}

#[derive(Args, Debug)]
struct PassArgs {
    /// Read the passphrase from the first line of this file (else $URNA_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
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
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": f.message, "exit_code": f.code })
                );
            }
            eprintln!("urna-ceremony: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
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
            keygen(&out, &pass, kdf, cli.json)
        }
        Command::Status { file, pass } => status(&file, &pass, cli.json),
    }
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
    let fp = fingerprint(&urna_keyceremony::hash::h(
        "urna/v1/identity-key",
        &[&key.to_bytes()],
    ));
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

fn status(path: &Path, pass: &PassArgs, json: bool) -> Result<(), Failure> {
    let passphrase = passphrase(pass, false)?;
    let file = sharefile::read(path, passphrase.as_bytes())?;
    let key = file.identity_key();
    let fp = fingerprint(&urna_keyceremony::hash::h(
        "urna/v1/identity-key",
        &[&key.to_bytes()],
    ));
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
                "Election {} (custodian {}, Q {}): transport key {}, polynomials: {}, shares: {}",
                e.election_id,
                e.index,
                fingerprint(&e.base_hash),
                &hex::encode(e.transport.public_key().to_bytes())[..16],
                if e.polys.is_some() { "kept" } else { "none" },
                if e.shares.is_some() { "derived" } else { "none" },
            );
        }
    }
    Ok(())
}

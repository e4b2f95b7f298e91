//! `urna credentials`: the credential authority's tools (design 4.4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use urna_keyceremony::credential::{generate, roll_hash, CredentialCode, PublicCredential};

use super::{print_json, CmdResult, Failure, Globals};

const GENERATE_EXAMPLES: &str = "\
Examples:
  urna credentials generate --count 1000 --codes codes.txt --roll roll.json
  urna credentials generate --count 50 --codes sheet.txt --roll roll.json --sheet

The codes file is created with mode 0600 and holds the only copy of the private codes: print it, hand
the codes out at random after an identity check, then destroy it. The roll (public credentials, no names)
goes to the election administrator. Existing files are never overwritten.";

const CHECK_EXAMPLES: &str = "\
Examples:
  urna credentials check ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-4567-ABCD
  echo $CODE | urna credentials check --json

Exit status 2 when the code is malformed (wrong length, bad character, checksum mismatch).";

/// `urna credentials ...`
#[derive(Subcommand, Debug)]
pub enum CredentialsCmd {
    /// Make N credentials: private codes to --codes (mode 0600), the public roll to --roll.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(GenerateArgs),
    /// Validate a credential code and print its public credential.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
}

/// `urna credentials generate`
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// How many credentials to make.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub count: u64,
    /// Output file for the private codes (created with mode 0600; must not exist).
    #[arg(long, value_name = "FILE")]
    pub codes: PathBuf,
    /// Output file for the public roll, a JSON list of hex public credentials (must not exist).
    #[arg(long, value_name = "FILE")]
    pub roll: PathBuf,
    /// Write a printable sheet with one code per block instead of one code per line.
    #[arg(long)]
    pub sheet: bool,
}

/// `urna credentials check`
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The code (read from stdin when omitted, which keeps it out of the process list).
    pub code: Option<String>,
}

/// Runs `urna credentials ...`.
pub fn run(g: &Globals, cmd: CredentialsCmd) -> CmdResult {
    match cmd {
        CredentialsCmd::Generate(a) => generate_cmd(g, a),
        CredentialsCmd::Check(a) => check_cmd(g, a),
    }
}

/// Every credential code found in a codes file (plain, one per line, or a sheet), in order.
pub fn codes_in(text: &str) -> Vec<CredentialCode> {
    text.split_whitespace()
        .filter(|t| t.len() == CODE_PRINTED_LEN)
        .filter_map(|t| CredentialCode::parse(t).ok())
        .collect()
}

/// Length of a printed code: 36 characters in groups of 4 with dashes.
const CODE_PRINTED_LEN: usize = 36 + 36 / 4 - 1;

fn sheet_block(code: &str, i: usize, n: usize) -> String {
    let rule = "=".repeat(72);
    let cut = "- - - - - - - - - - - - - - - - - - cut here - - - - - - - - - - - - - - - - -";
    format!(
        "{rule}\n URNA VOTER CREDENTIAL{:>50}\n\n   Your voting code:   {code}\n\n \
         Keep this code secret: whoever holds it can cast one ballot in your name.\n \
         Type it (dashes optional) when you vote. It works once.\n{rule}\n{cut}\n\n",
        format!("{} of {}", i + 1, n)
    )
}

fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o.open(path)
}

fn refuse_existing(path: &Path, what: &str) -> Result<(), Failure> {
    if path.exists() || path.is_symlink() {
        return Err(Failure::usage(format!(
            "{what} file {} already exists; refusing to overwrite it",
            path.display()
        )));
    }
    Ok(())
}

fn generate_cmd(g: &Globals, a: GenerateArgs) -> CmdResult {
    refuse_existing(&a.codes, "codes")?;
    refuse_existing(&a.roll, "roll")?;
    if a.codes == a.roll {
        return Err(Failure::usage("--codes and --roll must be different files"));
    }
    let count = usize::try_from(a.count).map_err(|_| Failure::usage("--count is too large"))?;
    let creds = generate(count, &mut rand::rngs::OsRng);
    let roll: Vec<PublicCredential> = creds.iter().map(|(_, p)| *p).collect();
    let roll_json = serde_json::to_vec_pretty(&roll)
        .map_err(|e| Failure::failed(format!("cannot encode the roll: {e}")))?;

    let write_codes = || -> std::io::Result<()> {
        let f = create_new(&a.codes, 0o600)?;
        let mut w = std::io::BufWriter::new(f);
        for (i, (code, _)) in creds.iter().enumerate() {
            let printed = code.to_printable();
            if a.sheet {
                w.write_all(sheet_block(&printed, i, count).as_bytes())?;
            } else {
                writeln!(w, "{printed}")?;
            }
        }
        w.flush()?;
        w.get_ref().sync_all()
    };
    write_codes()
        .map_err(|e| Failure::failed(format!("cannot write the codes to {}: {e}", a.codes.display())))?;
    let write_roll = || -> std::io::Result<()> {
        let mut f = create_new(&a.roll, 0o644)?;
        f.write_all(&roll_json)?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    if let Err(e) = write_roll() {
        // Do not leave private codes behind whose roll was never written.
        let _ = std::fs::remove_file(&a.codes);
        return Err(Failure::failed(format!(
            "cannot write the roll to {}: {e} (the codes file was removed)",
            a.roll.display()
        )));
    }
    let rh = hex::encode(roll_hash(&roll));
    if g.json {
        print_json(&serde_json::json!({
            "count": count,
            "codes": a.codes,
            "roll": a.roll,
            "format": if a.sheet { "sheet" } else { "lines" },
            "roll_hash": rh,
        }))?;
    } else {
        println!(
            "Wrote {count} private credential codes to {} (mode 0600, {}).",
            a.codes.display(),
            if a.sheet {
                "printable sheet"
            } else {
                "one per line"
            }
        );
        println!(
            "Wrote the public roll to {} (roll hash {}).",
            a.roll.display(),
            &rh[..16]
        );
        println!("Hand the codes out at random after an identity check, then destroy the codes file.");
    }
    Ok(ExitCode::SUCCESS)
}

fn check_cmd(g: &Globals, a: CheckArgs) -> CmdResult {
    let text = match a.code {
        Some(c) => c,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_line(&mut s)
                .map_err(|e| Failure::usage(format!("cannot read the code from stdin: {e}")))?;
            s
        }
    };
    let code =
        CredentialCode::parse(&text).map_err(|e| Failure::usage(format!("invalid credential code: {e}")))?;
    let public = code.public().to_hex();
    if g.json {
        print_json(&serde_json::json!({ "valid": true, "public_credential": public }))?;
    } else {
        println!("The code is valid. Public credential: {public}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheets_and_lines_parse_back() {
        let creds = generate(3, &mut rand::rngs::OsRng);
        let printed: Vec<String> = creds.iter().map(|(c, _)| c.to_printable()).collect();
        assert_eq!(printed[0].len(), CODE_PRINTED_LEN);
        let sheet: String = printed
            .iter()
            .enumerate()
            .map(|(i, c)| sheet_block(c, i, 3))
            .collect();
        let lines = printed.join("\n");
        for text in [sheet, lines] {
            let back: Vec<PublicCredential> = codes_in(&text).iter().map(|c| c.public()).collect();
            let want: Vec<PublicCredential> = creds.iter().map(|(_, p)| *p).collect();
            assert_eq!(back, want);
        }
    }
}

//! The `urna` binary without a cluster: usage errors, credentials, and `urna verify` on record files.

use std::path::Path;

use serde_json::Value;
use urna_client::cli::credentials::codes_in;
use urna_keyceremony::credential::{CredentialCode, PublicCredential};
use urna_keyceremony::record::checks;
use urna_tests::election::run_election;
use urna_tests::{urna, Run};

fn assert_one_line_usage_error(r: &Run, mentions: &str) {
    assert_eq!(r.code, 2, "{}", r.both());
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {}", r.both());
    assert!(lines[0].starts_with("urna: "), "{}", r.both());
    assert!(
        lines[0].to_lowercase().contains(&mentions.to_lowercase()),
        "expected {mentions:?} in {:?}",
        lines[0]
    );
    assert!(!r.stderr.contains("panicked") && !r.stderr.contains("backtrace"));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    assert_one_line_usage_error(&urna(["frobnicate"]), "unrecognized subcommand");
    assert_one_line_usage_error(&urna(["verify"]), "required");
    assert_one_line_usage_error(
        &urna(["cluster", "add-learner", "--id", "x", "--addr", "a:1"]),
        "--id",
    );
    assert_one_line_usage_error(&urna(["observe"]), "no node given");
    assert_one_line_usage_error(&urna(["--node", "not a url", "observe"]), "invalid node url");
    assert_one_line_usage_error(&urna(["verify", "/nonexistent/record.json"]), "cannot read");
    assert_one_line_usage_error(
        &urna([
            "credentials",
            "generate",
            "--count",
            "0",
            "--codes",
            "a",
            "--roll",
            "b",
        ]),
        "--count",
    );

    // Help exits 0 and every subcommand shows examples.
    for args in [
        vec!["--help"],
        vec!["cluster", "init", "--help"],
        vec!["cluster", "add-learner", "--help"],
        vec!["cluster", "promote", "--help"],
        vec!["cluster", "remove", "--help"],
        vec!["cluster", "status", "--help"],
        vec!["credentials", "generate", "--help"],
        vec!["credentials", "check", "--help"],
        vec!["verify", "--help"],
        vec!["observe", "--help"],
        vec!["election", "create", "--help"],
        vec!["election", "roll", "--help"],
        vec!["election", "open", "--help"],
        vec!["election", "close", "--help"],
        vec!["election", "advance", "--help"],
        vec!["election", "show", "--help"],
        vec!["election", "export", "--help"],
        vec!["vote", "--help"],
        vec!["challenge", "--help"],
        vec!["receipt", "check", "--help"],
        vec!["demo", "--help"],
    ] {
        let r = urna(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.both());
        assert!(
            r.stdout.contains("Examples:"),
            "{args:?} has no examples: {}",
            r.stdout
        );
    }
}

#[test]
fn malformed_credential_codes_say_so_in_one_line() {
    let code = CredentialCode::from_random_bytes([7u8; 20]).to_printable();
    let ok = urna(["credentials", "check", &code]);
    assert_eq!(ok.code, 0, "{}", ok.both());
    let public = CredentialCode::parse(&code)
        .map(|c| c.public().to_hex())
        .unwrap_or_default();
    assert!(ok.stdout.contains(&public), "{}", ok.both());
    let json = urna([
        "--json",
        "credentials",
        "check",
        &code.to_lowercase().replace('-', ""),
    ]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or(Value::Null);
    assert_eq!(v["public_credential"], Value::String(public));

    // One character changed: the checksum catches the typo.
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    assert_one_line_usage_error(&urna(["credentials", "check", &typo]), "checksum");
    assert_one_line_usage_error(&urna(["credentials", "check", "ABCD-EFGH"]), "36 characters");
    assert_one_line_usage_error(
        &urna(["credentials", "check", &code.replace('A', "1")]),
        "character",
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[test]
fn credentials_generate_writes_private_codes_and_the_public_roll() {
    let dir = tempfile::tempdir().unwrap();
    for sheet in [false, true] {
        let codes = dir.path().join(format!("codes-{sheet}.txt"));
        let roll = dir.path().join(format!("roll-{sheet}.json"));
        let mut args = vec![
            "credentials".to_string(),
            "generate".into(),
            "--count".into(),
            "25".into(),
            "--codes".into(),
            codes.display().to_string(),
            "--roll".into(),
            roll.display().to_string(),
        ];
        if sheet {
            args.push("--sheet".into());
        }
        let r = urna(&args);
        assert_eq!(r.code, 0, "{}", r.both());
        assert_eq!(mode(&codes), 0o600, "the codes file must be private");

        let text = std::fs::read_to_string(&codes).unwrap();
        let public: Vec<PublicCredential> = codes_in(&text).iter().map(|c| c.public()).collect();
        let listed: Vec<PublicCredential> = serde_json::from_slice(&std::fs::read(&roll).unwrap()).unwrap();
        assert_eq!(listed.len(), 25);
        assert_eq!(public, listed, "the codes derive exactly the roll, in order");
        if !sheet {
            assert_eq!(text.lines().count(), 25);
        }
        // The roll holds no code.
        let roll_text = std::fs::read_to_string(&roll).unwrap();
        assert!(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| !roll_text.contains(l.trim())));

        // Refuses to overwrite either file, and leaves both untouched.
        let before = std::fs::read(&codes).unwrap();
        let again = urna(&args);
        assert_one_line_usage_error(&again, "already exists");
        assert_eq!(std::fs::read(&codes).unwrap(), before);
        let other_codes = dir.path().join(format!("other-{sheet}.txt"));
        let mut args2 = args.clone();
        args2[5] = other_codes.display().to_string();
        assert_one_line_usage_error(&urna(&args2), "roll file");
        assert!(!other_codes.exists(), "no codes written when the roll exists");
    }
}

/// Flips the lowest bit of one byte of a hex string: of the first byte (`first`, e.g. an Ed25519 signature's
/// R) or of the last (a big-endian scalar stays canonical).
fn flip_hex(v: &mut Value, first: bool) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a hex string: {v}"))
        .to_string();
    let mut chars: Vec<char> = s.chars().collect();
    let i = if first { 1 } else { chars.len() - 1 };
    let d = chars[i].to_digit(16).unwrap_or(0) ^ 1;
    chars[i] = std::char::from_digit(d, 16).unwrap_or('0');
    *v = Value::String(chars.into_iter().collect());
}

/// Serves `body` (200, JSON) to one HTTP request on a free port; returns the URL and the request line.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s);
        let mut request = String::new();
        r.read_line(&mut request).unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let mut s = r.into_inner();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        request
    });
    (url, h)
}

fn verify_file(dir: &Path, name: &str, record: &Value) -> (Run, Run) {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(record).unwrap()).unwrap();
    let p = path.display().to_string();
    (urna(["verify", &p]), urna(["--json", "verify", &p]))
}

fn assert_caught_by(dir: &Path, name: &str, record: &Value, check: &str) {
    let (human, json) = verify_file(dir, name, record);
    eprintln!("{}", human.stdout);
    assert_eq!(human.code, 1, "{name}: {}", human.both());
    assert!(
        human
            .stdout
            .lines()
            .any(|l| l.starts_with(check) && l.contains("FAIL")),
        "{name}: expected check {check:?} to FAIL:\n{}",
        human.stdout
    );
    assert!(human.stdout.contains("Verdict: INVALID"), "{}", human.stdout);
    assert_eq!(json.code, 1);
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or(Value::Null);
    assert_eq!(v["passed"], Value::Bool(false), "{}", json.stdout);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["passed"] == Value::Bool(false))
                .filter_map(|c| c["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(failed.contains(&check), "{name}: JSON failures {failed:?}");
}

#[test]
fn verify_accepts_the_honest_record_and_names_the_check_that_catches_tampering() {
    let e = run_election(11, 12);
    let dir = tempfile::tempdir().unwrap();
    let honest = serde_json::to_value(&e.record).unwrap();

    let (human, json) = verify_file(dir.path(), "honest.json", &honest);
    eprintln!("{}", human.stdout);
    assert_eq!(human.code, 0, "{}", human.both());
    for name in [
        checks::FORMAT,
        checks::CEREMONY,
        checks::REHEARSAL,
        checks::BALLOT_PROOFS,
        checks::TRACKING,
        checks::CLOSE,
        checks::SHARES,
        checks::TALLY,
        checks::CERTIFICATE,
    ] {
        assert!(
            human
                .stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("pass")),
            "check {name} missing from the table:\n{}",
            human.stdout
        );
    }
    assert!(human.stdout.contains("Verdict: VALID"), "{}", human.stdout);
    assert!(!human.stdout.contains("FAIL"));
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or(Value::Null);
    assert_eq!(json.code, 0);
    assert_eq!(v["passed"], Value::Bool(true));
    assert_eq!(v["election"], Value::String("test-2026".into()));

    // The same record fetched from a node (`--node URL --election ID`): here a one-shot HTTP server.
    let fetched = serve_once(serde_json::to_vec(&honest).unwrap_or_default());
    let r = urna(["--node", &fetched.0, "verify", "--election", "test-2026"]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.contains("Verdict: VALID"), "{}", r.stdout);
    let request = fetched.1.join().unwrap_or_default();
    assert!(
        request.starts_with("GET /v1/elections/test-2026/record "),
        "{request}"
    );

    // One byte of a ballot (its signature) changed.
    let mut r = honest.clone();
    flip_hex(&mut r["ballots"][3]["ballot"]["signature"], true);
    assert_caught_by(dir.path(), "ballot.json", &r, checks::BALLOT_PROOFS);

    // One byte of a decryption share's proof changed.
    let mut r = honest.clone();
    flip_hex(
        &mut r["decryption_shares"][0]["partial"]["shares"][1]["proof"]["response"],
        false,
    );
    assert_caught_by(dir.path(), "share.json", &r, checks::SHARES);

    // A share replaced by the custodian's other (valid but for another custodian) share.
    let mut r = honest.clone();
    r["decryption_shares"][0]["partial"] = serde_json::to_value(&e.all_partials[1].partial).unwrap();
    assert_caught_by(dir.path(), "share-swap.json", &r, checks::SHARES);

    // One tally count changed.
    let mut r = honest.clone();
    let n = r["tally"]["counts"][0][0].as_u64().unwrap_or(0);
    r["tally"]["counts"][0][0] = Value::from(n + 1);
    assert_caught_by(dir.path(), "tally.json", &r, checks::TALLY);

    // A ballot removed from the middle: the tracking-code chain breaks.
    let mut r = honest.clone();
    if let Some(a) = r["ballots"].as_array_mut() {
        a.remove(4);
    }
    assert_caught_by(dir.path(), "removed.json", &r, checks::TRACKING);

    // The last ballot removed: the close summary no longer matches.
    let mut r = honest.clone();
    if let Some(a) = r["ballots"].as_array_mut() {
        a.pop();
    }
    assert_caught_by(dir.path(), "removed-last.json", &r, checks::CLOSE);

    // A record that does not decode fails the format check (exit 1, not a crash).
    let mut r = honest.clone();
    r["roll"][0] = Value::String("zz".into());
    assert_caught_by(dir.path(), "garbled.json", &r, checks::FORMAT);
    assert_eq!(e.truth.len(), 2);
}

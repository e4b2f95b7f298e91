//! Process tests of the `urna-ceremony` binary that need no cluster: keygen, status, usage errors.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_urna-ceremony"));
    c.env_remove("URNA_PASSPHRASE");
    c
}

#[test]
fn keygen_then_status_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.key");
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, "hunter2 correct horse\n").unwrap();
    let out = bin()
        .args(["--json", "keygen", "--out"])
        .arg(&key)
        .arg("--passphrase-file")
        .arg(&pass)
        .args(["--kdf-memory-kib", "64", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let identity = made["identity_key"].as_str().unwrap().to_string();
    assert_eq!(identity.len(), 96);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // status with the passphrase from the environment, JSON and human.
    let out = bin()
        .args(["status", "--json"])
        .arg(&key)
        .env("URNA_PASSPHRASE", "hunter2 correct horse")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["identity_key"].as_str().unwrap(), identity);
    assert_eq!(st["elections"].as_array().unwrap().len(), 0);
    let out = bin()
        .arg("status")
        .arg(&key)
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&identity), "{text}");
    // The secret never appears: the file decrypts only with the passphrase, and status prints the
    // public key only.
    let file = urna_keyceremony::sharefile::read(&key, b"hunter2 correct horse").unwrap();
    assert!(!text.contains(&file.identity.to_hex()));

    // Wrong passphrase: a failed check, exit 1, one clear line.
    let out = bin()
        .arg("status")
        .arg(&key)
        .env("URNA_PASSPHRASE", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    // keygen never overwrites.
    let out = bin()
        .args(["keygen", "--out"])
        .arg(&key)
        .env("URNA_PASSPHRASE", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        vec!["frobnicate"],
        vec!["keygen"],
        vec!["status"],
        vec!["keygen", "--out", "x", "--bogus"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    // No passphrase source and no terminal is a usage error.
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["keygen", "--out"])
        .arg(dir.path().join("k"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
}

//! The operator and voter commands against a real 3-node cluster: `urna election create/open/show`,
//! `urna vote`, `urna receipt check`, `urna challenge`, and their errors.

use std::path::Path;

use serde_json::Value;
use urna_client::cli::credentials::codes_in;
use urna_client::cli::demo::run_ceremony;
use urna_client::http::Client;
use urna_keyceremony::ballot::{encrypt_ballot, PlaintextBallot};
use urna_keyceremony::blsttc::SecretKey;
use urna_keyceremony::credential::CredentialCode;
use urna_tests::{urna, Run, TestCluster, ADMIN_TOKEN};

const MANIFEST: &str = r#"
[[contests]]
id = "mayor"
title = "Mayor"
min_selections = 1
max_selections = 1
options = [{ id = "ada", label = "Ada" }, { id = "bo", label = "Bo" }, { id = "cy", label = "Cy" }]

[[contests]]
id = "council"
title = "Council"
min_selections = 0
max_selections = 2
options = [{ id = "dee", label = "Dee" }, { id = "eve", label = "Eve" }]
"#;

fn assert_one_line_error(r: &Run, code: i32, mentions: &str) {
    assert_eq!(r.code, code, "{}", r.both());
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {}", r.both());
    assert!(lines[0].starts_with("urna: "), "{}", r.both());
    assert!(
        lines[0].to_lowercase().contains(&mentions.to_lowercase()),
        "expected {mentions:?} in {:?}",
        lines[0]
    );
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.both()))
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn vote_receipt_check_and_challenge_on_a_real_cluster() {
    let c = TestCluster::start(3);
    let dir = c.dir().to_path_buf();
    let nodes = c.node_args();
    let with_nodes = |args: &[&str]| -> Run {
        let mut v: Vec<String> = nodes.clone();
        v.extend(args.iter().map(|s| s.to_string()));
        urna(v)
    };
    let admin = |args: &[&str]| -> Run {
        let mut v: Vec<String> = nodes.clone();
        v.extend(["--token".to_string(), ADMIN_TOKEN.to_string()]);
        v.extend(args.iter().map(|s| s.to_string()));
        urna(v)
    };

    // The credential authority makes the roll; the administrator creates the election with it.
    let (codes_file, roll_file) = (dir.join("codes.txt"), dir.join("roll.json"));
    let r = urna([
        "credentials",
        "generate",
        "--count",
        "12",
        "--codes",
        &p(&codes_file),
        "--roll",
        &p(&roll_file),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let codes = codes_in(&std::fs::read_to_string(&codes_file).unwrap());
    assert_eq!(codes.len(), 12);
    let manifest = dir.join("manifest.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::random()).collect();
    let flags: Vec<String> = keys
        .iter()
        .enumerate()
        .flat_map(|(j, k)| {
            [
                "--custodian".to_string(),
                format!("c{j}={}", hex::encode(k.public_key().to_bytes())),
            ]
        })
        .collect();
    let mut create = vec![
        "election",
        "create",
        "town",
        "--manifest",
        &p(&manifest),
        "--quorum",
        "2",
        "--opens-at",
        "now-1s",
        "--closes-at",
        "now+10m",
        "--roll",
        &p(&roll_file),
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    create.extend(flags.clone());
    // Without a token: a usage error.
    let r = with_nodes(&create.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&r, 2, "token");
    create.push("--json".into());
    let r = admin(&create.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(json(&r)["roll_count"], 12);

    // A manifest that does not decode: usage error.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[[contests]]\nid = 1\n").unwrap();
    let mut bad = create.clone();
    bad[4] = p(&broken);
    let r = admin(&bad.iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&r, 2, "manifest");

    // Custodians run the ceremony (in process, over HTTP).
    let reader = c.client(None);
    let per_node: Vec<Client> = c.urls().iter().map(|u| Client::new([u]).unwrap()).collect();
    c.block_on(run_ceremony(&reader, &per_node, "town", &keys, 2))
        .unwrap_or_else(|f| panic!("ceremony: {}", f.message));
    let r = admin(&["election", "open", "town"]);
    assert_eq!(r.code, 0, "{}", r.both());
    let r = with_nodes(&["election", "show", "town", "--json"]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(json(&r)["summary"]["phase"], "open");

    // Vote with a code file, save the receipt, check it.
    let code_file = dir.join("my-code.txt");
    std::fs::write(&code_file, codes[0].to_printable()).unwrap();
    let receipt = dir.join("receipt.json");
    let r = with_nodes(&[
        "vote",
        "town",
        "--code-file",
        &p(&code_file),
        "--choice",
        "mayor=bo",
        "--choice",
        "council=dee,eve",
        "--receipt",
        &p(&receipt),
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.contains("Ballot hash H_b"), "{}", r.both());
    let saved: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let tc = saved["tracking_code"].as_str().unwrap().to_string();
    assert!(r.stdout.contains(&tc));
    let r = with_nodes(&["receipt", "check", "--receipt", &p(&receipt), "--json"]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert_eq!(json(&r)["ok"], true);
    let r = with_nodes(&["receipt", "check", "town", "--tracking-code", &tc]);
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.starts_with("OK"), "{}", r.both());

    // A forged tracking code: absent, exit 1.
    let mut forged = tc.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let r = with_nodes(&["receipt", "check", "town", "--tracking-code", &forged]);
    assert_eq!(r.code, 1, "{}", r.both());

    // The same credential again: the node refuses (already voted), exit 1, one line.
    let r = with_nodes(&[
        "vote",
        "town",
        "--code",
        &codes[0].to_printable(),
        "--choice",
        "mayor=ada",
    ]);
    assert_one_line_error(&r, 1, "already");

    // A malformed code: one line, exit 2, before any network traffic.
    let mut bad = codes[1].to_printable().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let r = with_nodes(&[
        "vote",
        "town",
        "--code",
        &String::from_utf8(bad).unwrap(),
        "--choice",
        "mayor=ada",
    ]);
    assert_one_line_error(&r, 2, "credential code");
    // A well-formed code that is not on the roll: the node's error, exit 1.
    let stranger = CredentialCode::random(&mut rand::rngs::OsRng).to_printable();
    let r = with_nodes(&["vote", "town", "--code", &stranger, "--choice", "mayor=ada"]);
    assert_one_line_error(&r, 1, "refused");
    // A choice that is not on the ballot: usage error.
    let r = with_nodes(&[
        "vote",
        "town",
        "--code",
        &codes[2].to_printable(),
        "--choice",
        "mayor=zed",
    ]);
    assert_one_line_error(&r, 2, "no option");

    // A Benaloh challenge: accepted by the node and opening to the voter's choices.
    let r = with_nodes(&[
        "challenge",
        "town",
        "--code",
        &codes[3].to_printable(),
        "--choice",
        "mayor=cy",
        "--choice",
        "council=eve",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let ch = json(&r);
    assert_eq!(ch["verified"], true);
    assert_eq!(ch["seq"], 0);
    assert_eq!(ch["selections"][0], "Mayor: Cy");
    // The challenged voter can still vote (a challenge carries no credential).
    let r = with_nodes(&[
        "vote",
        "town",
        "--code",
        &codes[3].to_printable(),
        "--choice",
        "mayor=ada",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.both());
    let r = with_nodes(&["election", "show", "town", "--json"]);
    let s = json(&r);
    assert_eq!(s["summary"]["ballot_count"], 2);
    assert_eq!(s["summary"]["spoiled_count"], 1);

    // A retried cast resends identical bytes and gets the original receipt; it never counts twice.
    let reader = c.client(None);
    let summary = c.block_on(reader.election("town")).unwrap();
    let ctx = urna_client::cli::voter::ballot_context(&summary).unwrap_or_else(|f| panic!("{}", f.message));
    let plain = PlaintextBallot::from_selected(ctx.manifest(), &[vec![2], vec![1]]).unwrap();
    let (ballot, _) = encrypt_ballot(&ctx, &plain, &codes[5].signing_key(), &mut rand::rngs::OsRng).unwrap();
    let bytes = serde_json::to_vec(&ballot).unwrap();
    let first = c.block_on(reader.cast_bytes("town", &bytes)).unwrap();
    let again = c.block_on(per_node[2].cast_bytes("town", &bytes)).unwrap();
    assert_eq!(first, again);
    let s = c.block_on(reader.election("town")).unwrap();
    assert_eq!(s.ballot_count, 3);

    // The record: exported from the nodes, it verifies offline (the election is still open).
    let out = dir.join("town.record.json");
    let r = with_nodes(&["election", "export", "town", "--out", &p(&out)]);
    assert_eq!(r.code, 0, "{}", r.both());
    let r = urna(["verify", &p(&out)]);
    assert_eq!(r.code, 0, "{}", r.both());
    // And `urna verify --election` fetches it from a node itself.
    let r = with_nodes(&["verify", "--election", "town"]);
    assert_eq!(r.code, 0, "{}", r.both());

    // Closing before closes_at: the node refuses, exit 1.
    let r = admin(&["election", "close", "town"]);
    assert_eq!(r.code, 1, "{}", r.both());
}

//! Process tests of the custodian tool `urna-ceremony`:
//! - five custodians, each with its own key file, run join/deal/check/confirm/decrypt --rehearsal
//!   through the binary against a real 3-node cluster until the election is Ready, then three of them
//!   decrypt and sign (the tool recomputing the aggregate from the node's election record) until the
//!   election is Published with the true counts;
//! - the tally's refusals against records served by a tiny local HTTP server (a tampered close summary
//!   or a missing ballot: the tool must recompute the aggregate from the record and refuse);
//! - wrong passphrase (exit 1, one line) and usage errors (exit 2).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use urna_client::wire::{
    CreateElectionRequest, ElectionSummary, ResultResponse, SignatureShareRequest, SignedPartialDecryption,
};
use urna_keyceremony::ballot::{encrypt_ballot, BallotContext, PlaintextBallot};
use urna_keyceremony::blsttc::poly::Poly;
use urna_keyceremony::blsttc::{Fr, SecretKey};
use urna_keyceremony::ceremony::{
    encrypt_share, CeremonyState, Custodian, Deadlines, DealerPolys, MessageBody, Phase, PolyKind,
    SignedCeremonyMessage,
};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::election::ElectionParams;
use urna_keyceremony::election::{Custodian as Registered, IdentityKey};
use urna_keyceremony::group::Point;
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::record::{checks, verify_record, CeremonyEvent, CustodianDecryption, ElectionRecord};
use urna_keyceremony::sharefile::ElectionSecrets;
use urna_keyceremony::sharefile::{self, CustodianFile, KdfParams};
use urna_keyceremony::tally;
use urna_tests::election::run_election;
use urna_tests::{ceremony, wait_for, Run, TestCluster, ADMIN_TOKEN, DEADLINE};

const PASS: &str = "custodian passphrase 1";
/// Length of the real-cluster election's voting window.
const WINDOW_MS: i64 = 40_000;
/// Longest wait for the window's end.
const CLOSE_DEADLINE: Duration = Duration::from_secs(120);

fn one_line(r: &Run) {
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.both());
}

fn ok_json(r: Run) -> Value {
    assert_eq!(r.code, 0, "{}", r.both());
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.both()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn five_custodians_run_ceremony_and_tally_through_the_binary() {
    let cluster = TestCluster::start(3);
    let dir = cluster.dir().to_path_buf();
    let pass_file = dir.join("pass.txt");
    std::fs::write(&pass_file, format!("{PASS}\n")).unwrap();
    let pf = pass_file.to_str().unwrap().to_string();
    let nodes = cluster.node_args();

    // Five custodians, five key files.
    let files: Vec<PathBuf> = (0..5).map(|j| dir.join(format!("custodian{j}.key"))).collect();
    let mut identities = Vec::new();
    for f in &files {
        let v = ok_json(ceremony([
            "--json",
            "keygen",
            "--out",
            f.to_str().unwrap(),
            "--passphrase-file",
            &pf,
            "--kdf-memory-kib",
            "64",
            "--kdf-iterations",
            "1",
        ]));
        let hex_key = v["identity_key"].as_str().unwrap().to_string();
        identities.push(IdentityKey::from_bytes(&hex::decode(hex_key).unwrap()).unwrap());
    }

    // The administrator creates the election with their identity keys.
    let id = "custody-2026";
    // The window leaves time for the ceremony and a few casts on a loaded machine; the test then
    // waits for its end to close the box.
    let closes_at = now_ms() + WINDOW_MS;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let codes: Vec<CredentialCode> = (0..4).map(|_| CredentialCode::random(&mut rng)).collect();
    let req = CreateElectionRequest {
        election_id: id.into(),
        manifest: Manifest::simple(&[(3, 1, 1)]),
        custodians: identities
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: *k,
            })
            .collect(),
        quorum: 3,
        opens_at: now_ms(),
        closes_at,
        min_ballots: Some(3),
        ceremony_deadlines: None,
        roll: codes.iter().map(|c| c.public()).collect(),
    };
    let admin = cluster.client(Some(ADMIN_TOKEN));
    let _: Value = cluster
        .block_on(admin.post_json("/v1/elections", &req))
        .unwrap_or_else(|e| panic!("create: {e}"));
    let summary = |c: &TestCluster| -> ElectionSummary {
        c.block_on(admin.get_json(&format!("/v1/elections/{id}?consistent=true")))
            .unwrap_or_else(|e| panic!("summary: {e}"))
    };
    let fp = summary(&cluster).fingerprint;

    let step = |j: usize, args: &[&str]| -> Run {
        let mut a: Vec<String> = vec!["--json".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(files[j].to_str().unwrap().into());
        a.extend(["--election".to_string(), id.to_string()]);
        // Custodians alternate between --node flags + --passphrase-file and the environment.
        let mut cmd = urna_tests::ceremony_cmd();
        cmd.args(&a);
        if j % 2 == 0 {
            cmd.args(&nodes).args(["--passphrase-file", &pf]);
        } else {
            cmd.env("URNA_NODES", cluster.urls().join(","))
                .env("URNA_PASSPHRASE", PASS);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("urna-ceremony: {e}"))
            .into()
    };

    // A fingerprint that does not match refuses to join (exit 1, one line) and posts nothing.
    let r = step(0, &["join", "--expect-fingerprint", "0000-0000-0000-0000"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(r.stderr.contains("fingerprint mismatch"), "{}", r.both());
    // A wrong passphrase: exit 1, one line.
    let r = ceremony_with_env(&files[1], id, &cluster, "not the passphrase", &["deal"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.both());

    for j in 0..5 {
        let v = ok_json(step(j, &["join", "--expect-fingerprint", &fp]));
        assert_eq!(v["custodian_index"], j, "{v}");
        assert_eq!(v["fingerprint"], fp.as_str());
    }
    // Joining again is idempotent.
    assert_eq!(ok_json(step(2, &["join"]))["already_joined"], true);
    for j in 0..5 {
        let v = ok_json(step(j, &["deal"]));
        assert_eq!(v["recipients"], 4, "{v}");
    }
    for j in 0..5 {
        let v = ok_json(step(j, &["check"]));
        assert_eq!(v["acks"].as_array().unwrap().len(), 4, "{v}");
        assert_eq!(v["complaints"].as_array().unwrap().len(), 0, "{v}");
    }
    let v = ok_json(step(3, &["answer"]));
    assert_eq!(v["answered"].as_array().unwrap().len(), 0);
    for j in 0..5 {
        let v = ok_json(step(j, &["confirm"]));
        assert_eq!(v["qualified"], json!([0, 1, 2, 3, 4]), "{v}");
    }
    for j in [4, 1, 2] {
        ok_json(step(j, &["decrypt", "--rehearsal"]));
    }
    wait_for("the election to be Ready", DEADLINE, || {
        (summary(&cluster).phase.to_string() == "ready").then_some(())
    });

    // status shows the progress stored in the file, and public keys only.
    let v = ok_json(ceremony([
        "--json",
        "status",
        files[1].to_str().unwrap(),
        "--passphrase-file",
        &pf,
    ]));
    let e = &v["elections"][0];
    assert_eq!(e["election_id"], id);
    assert_eq!(
        e["progress"],
        json!(["joined", "dealt", "checked", "confirmed", "rehearsal"])
    );
    assert_eq!(e["has_shares"], true);
    let text = ceremony(["status", files[1].to_str().unwrap(), "--passphrase-file", &pf]);
    assert_eq!(text.code, 0, "{}", text.both());
    assert!(text
        .stdout
        .contains("joined > dealt > checked > confirmed > rehearsal"));
    // No secret in any output, and none in the clear on disk.
    let file = sharefile::read(&files[1], PASS.as_bytes()).unwrap();
    let shares = file.elections[0].shares.as_ref().unwrap();
    let secrets = [
        hex::encode(shares.encryption_share.to_bytes()),
        hex::encode(shares.signing_share.to_bytes()),
        hex::encode(file.elections[0].transport.to_bytes()),
        hex::encode(file.identity.to_bytes()),
    ];
    let on_disk = std::fs::read_to_string(&files[1]).unwrap();
    for s in &secrets {
        assert!(!v.to_string().contains(s) && !text.stdout.contains(s) && !on_disk.contains(s));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[1]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Before the close there is nothing to decrypt: refused with one line (exit 1).
    let r = step(0, &["decrypt"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);

    // Open, cast a handful of ballots with the library, close after the window.
    let _: Value = cluster
        .block_on(admin.post_json(&format!("/v1/elections/{id}/open"), &json!({})))
        .unwrap_or_else(|e| panic!("open: {e}"));
    let sum = summary(&cluster);
    let q_ext: [u8; 32] = hex::decode(sum.extended_hash.clone().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let k = Point::from_bytes(&hex::decode(sum.encryption_key.clone().unwrap()).unwrap()).unwrap();
    let ctx = BallotContext::new(id, q_ext, sum.params.manifest.clone(), k).unwrap();
    let mut truth = vec![0u64; 3];
    for (v, code) in codes.iter().enumerate() {
        let choice = v % 2;
        truth[choice] += 1;
        let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![choice]]).unwrap();
        let (b, _) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
        let _: Value = cluster
            .block_on(admin.post_json(&format!("/v1/elections/{id}/ballots"), &b))
            .unwrap_or_else(|e| panic!("cast: {e}"));
    }
    wait_for("the end of the voting window", CLOSE_DEADLINE, || {
        (now_ms() > closes_at).then_some(())
    });
    let closed: Value = cluster
        .block_on(admin.post_json(&format!("/v1/elections/{id}/close"), &json!({})))
        .unwrap_or_else(|e| panic!("close: {e}"));
    assert_eq!(closed["phase"], "tallying", "{closed}");

    // The tally: each custodian recomputes the aggregate from the node's election record before
    // decrypting; three decrypt and three sign until Published.
    for j in [0, 3, 4] {
        ok_json(step(j, &["decrypt"]));
    }
    let result = |c: &TestCluster| -> ResultResponse {
        c.block_on(admin.get_json(&format!("/v1/elections/{id}/result?consistent=true")))
            .unwrap_or_else(|e| panic!("result: {e}"))
    };
    wait_for("the tally", DEADLINE, || result(&cluster).tally.map(|_| ()));
    for j in [2, 0, 1] {
        ok_json(step(j, &["sign"]));
    }
    let res = wait_for("Published", DEADLINE, || {
        let r = result(&cluster);
        (r.phase.to_string() == "published").then_some(r)
    });
    assert_eq!(res.tally.unwrap().flat(), truth);
    // And the published record verifies offline.
    let record: ElectionRecord = cluster
        .block_on(admin.get_json(&format!("/v1/elections/{id}/record?consistent=true")))
        .unwrap_or_else(|e| panic!("record: {e}"));
    let report = verify_record(&record);
    assert!(report.passed(), "{:?}", report.first_failure());

    // Usage errors: exit 2, one line.
    for args in [
        vec!["join", files[0].to_str().unwrap()],
        vec!["deal", "--election", id],
        vec![
            "decrypt",
            "--rehearsal",
            "--bogus",
            files[0].to_str().unwrap(),
            "--election",
            id,
        ],
    ] {
        let r = ceremony(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.both());
        one_line(&r);
    }
    // No node configured is a usage error too.
    let r = ceremony([
        "deal",
        files[0].to_str().unwrap(),
        "--election",
        id,
        "--passphrase-file",
        &pf,
    ]);
    assert_eq!(r.code, 2, "{}", r.both());
    one_line(&r);
}

fn ceremony_with_env(file: &Path, id: &str, cluster: &TestCluster, pass: &str, args: &[&str]) -> Run {
    urna_tests::ceremony_cmd()
        .args(args)
        .arg(file)
        .args(["--election", id])
        .env("URNA_NODES", cluster.urls().join(","))
        .env("URNA_PASSPHRASE", pass)
        .output()
        .unwrap_or_else(|e| panic!("urna-ceremony: {e}"))
        .into()
}

/// What the fake node serves and what it was sent.
#[derive(Default)]
struct Served {
    summary: Value,
    ceremony: Value,
    record: Value,
    result: Value,
    posts: Vec<(String, Value)>,
}

/// A tiny HTTP/1.1 server standing in for a node: GET the election summary, record and result; every
/// POST is recorded and acknowledged. One request per connection.
fn fake_node(served: Arc<Mutex<Served>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            let path = target.split('?').next().unwrap_or("").to_string();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let (status, answer) = {
                let mut s = served.lock().unwrap();
                match (method.as_str(), path.as_str()) {
                    ("GET", p) if p.ends_with("/record") => (200, s.record.clone()),
                    ("GET", p) if p.ends_with("/result") => (200, s.result.clone()),
                    ("GET", p) if p.ends_with("/ceremony") => (200, s.ceremony.clone()),
                    ("GET", p) if p.starts_with("/v1/elections/") => (200, s.summary.clone()),
                    ("POST", p) => {
                        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        s.posts.push((p.to_string(), v));
                        (
                            200,
                            json!({ "index": s.posts.len(), "digest": "00", "phase": "tallying" }),
                        )
                    }
                    _ => (
                        404,
                        json!({ "error": { "code": "not_found", "message": "no such path" } }),
                    ),
                }
            };
            let text = answer.to_string();
            let reason = if status == 200 { "OK" } else { "Not Found" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    format!("http://{addr}")
}

fn summary_of(record: &ElectionRecord) -> Value {
    summary_json(
        &record.params,
        &record.deadlines,
        "tallying",
        record.ballots.len(),
    )
}

fn summary_json(p: &ElectionParams, deadlines: &Deadlines, phase: &str, ballots: usize) -> Value {
    json!({
        "params": p,
        "phase": phase,
        "base_hash": hex::encode(p.base_hash()),
        "fingerprint": p.fingerprint(),
        "ceremony_phase": "complete",
        "ceremony_deadlines": deadlines,
        "roll_count": 0,
        "ballot_count": ballots,
        "spoiled_count": 0,
        "event_head": "00",
        "event_count": 0,
        "applied_index": 1,
    })
}

#[test]
fn tally_decrypt_and_sign_against_a_served_record() {
    let e = run_election(11, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let files: Vec<PathBuf> = (0..3)
        .map(|j| {
            let path = dir.path().join(format!("c{j}.key"));
            let f = CustodianFile {
                identity: e.identities[j].clone(),
                elections: vec![e.secrets[j].clone()],
            };
            sharefile::create(
                &path,
                &f,
                PASS.as_bytes(),
                KdfParams::insecure_for_tests(),
                &mut rng,
            )
            .unwrap();
            path
        })
        .collect();
    let id = e.record.params.election_id.clone();

    // The record as it stands while tallying: closed, no shares, no tally.
    let mut tallying = e.record.clone();
    tallying.decryption_shares.clear();
    tallying.tally = None;
    tallying.signature_shares.clear();
    tallying.certificate = None;
    let served = Arc::new(Mutex::new(Served {
        summary: summary_of(&tallying),
        record: serde_json::to_value(&tallying).unwrap(),
        ..Served::default()
    }));
    let url = fake_node(served.clone());
    let run = |j: usize, args: &[&str]| -> Run {
        urna_tests::ceremony_cmd()
            .arg("--json")
            .args(args)
            .arg(&files[j])
            .args(["--election", &id, "--node", &url])
            .env("URNA_PASSPHRASE", PASS)
            .output()
            .unwrap_or_else(|e| panic!("urna-ceremony: {e}"))
            .into()
    };
    let posts = |s: &Arc<Mutex<Served>>| s.lock().unwrap().posts.clone();

    // A record whose close summary does not follow from its ballots: refused, nothing posted.
    let mut bad = tallying.clone();
    if let Some(close) = bad.close.as_mut() {
        if let Some(agg) = close.aggregate.as_mut() {
            agg.swap(0, 1);
        }
    }
    served.lock().unwrap().record = serde_json::to_value(&bad).unwrap();
    let r = run(0, &["decrypt"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(r.stderr.contains("close summary"), "{}", r.both());
    // A record missing a ballot that the close counted: refused too.
    let mut bad = tallying.clone();
    bad.ballots.pop();
    served.lock().unwrap().record = serde_json::to_value(&bad).unwrap();
    let r = run(2, &["decrypt"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(posts(&served).is_empty());

    // The honest record: custodians 0 and 2 decrypt.
    served.lock().unwrap().record = serde_json::to_value(&tallying).unwrap();
    for j in [0usize, 2] {
        let v = ok_json(run(j, &["decrypt"]));
        assert_eq!(v["ballot_count"], 10, "{v}");
    }
    let sent = posts(&served);
    assert_eq!(sent.len(), 2);
    let mut shares = Vec::new();
    for (path, body) in &sent {
        assert_eq!(path, &format!("/v1/elections/{id}/tally/shares"));
        let s: SignedPartialDecryption = serde_json::from_value(body.clone()).unwrap();
        shares.push(CustodianDecryption {
            custodian: s.custodian,
            partial: s.partial,
        });
    }
    // The posted shares verify and decrypt to the true tally.
    let mut published = tallying.clone();
    published.decryption_shares = shares;
    published.tally = e.record.tally.clone();
    let report = verify_record(&published);
    for name in [checks::SHARES, checks::TALLY] {
        let c = report.checks.iter().find(|c| c.name == name).unwrap();
        assert!(c.passed, "{name}: {}", c.detail);
    }

    // Sign: the tool checks the tally against the record's shares and re-derives the result hash.
    let cert = e.record.certificate.clone().unwrap();
    let result = |rh: String| {
        json!({
            "election_id": id,
            "phase": "tallying",
            "ballot_count": 10,
            "tally": published.tally,
            "result_hash": rh,
            "certificate": null,
            "decryption_shares": [0, 2],
            "signature_shares": [],
            "applied_index": 2,
        })
    };
    {
        let mut s = served.lock().unwrap();
        s.record = serde_json::to_value(&published).unwrap();
        s.result = result(hex::encode([7u8; 32]));
        s.posts.clear();
    }
    let r = run(1, &["sign"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(r.stderr.contains("result hash"), "{}", r.both());
    // A tally that does not follow from the shares.
    let mut wrong = published.clone();
    if let Some(t) = wrong.tally.as_mut() {
        t.counts[0].swap(0, 1);
        if t.counts[0][0] == t.counts[0][1] {
            t.counts[0][0] += 1;
        }
    }
    {
        let mut s = served.lock().unwrap();
        s.result = result(hex::encode(cert.result_hash));
        s.result["tally"] = serde_json::to_value(&wrong.tally).unwrap();
    }
    let r = run(1, &["sign"]);
    assert_eq!(r.code, 1, "{}", r.both());
    one_line(&r);
    assert!(posts(&served).is_empty());

    served.lock().unwrap().result = result(hex::encode(cert.result_hash));
    for j in [1usize, 0] {
        let v = ok_json(run(j, &["sign"]));
        assert_eq!(v["result_hash"], hex::encode(cert.result_hash), "{v}");
    }
    let sent = posts(&served);
    assert_eq!(sent.len(), 2);
    // The two signature shares combine into a certificate under the election's signing key.
    let mut st = CeremonyState::new(&published.params, published.deadlines).unwrap();
    for ev in &published.ceremony {
        match ev {
            CeremonyEvent::Message(m) => st.apply(m).unwrap(),
            CeremonyEvent::Advance { time_ms } => st.advance(*time_ms).unwrap(),
        }
    }
    let keys = st.keys().unwrap().clone();
    let sig: Vec<SignatureShareRequest> = sent
        .iter()
        .map(|(p, b)| {
            assert_eq!(p, &format!("/v1/elections/{id}/tally/signatures"));
            serde_json::from_value(b.clone()).unwrap()
        })
        .collect();
    let refs: Vec<_> = sig.iter().map(|s| (s.custodian, &s.share.0)).collect();
    let signature = tally::certify(&keys.signing, &cert.result_hash, &refs).unwrap();
    assert!(keys.signing.public_key().verify(&signature, cert.result_hash));

    // status: the file remembers the steps.
    let v = ok_json(
        urna_tests::ceremony_cmd()
            .args(["--json", "status"])
            .arg(&files[0])
            .env("URNA_PASSPHRASE", PASS)
            .output()
            .unwrap()
            .into(),
    );
    assert_eq!(v["elections"][0]["progress"], json!(["decrypted", "signed"]));
}

/// Writes a key file holding `identity` and the per-election secrets of `c`.
fn key_file(dir: &Path, name: &str, identity: &SecretKey, params: &ElectionParams, c: &Custodian) -> PathBuf {
    let path = dir.join(name);
    let f = CustodianFile {
        identity: identity.clone(),
        elections: vec![ElectionSecrets::from_custodian(params, c, None)],
    };
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    sharefile::write(
        &path,
        &f,
        PASS.as_bytes(),
        KdfParams::insecure_for_tests(),
        &mut rng,
    )
    .unwrap();
    path
}

#[test]
fn complaint_answer_and_derive_through_the_binary() {
    // Three custodians, quorum 2, run in memory; the node's ceremony state is served by the fake node.
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let identities: Vec<SecretKey> = (0..3).map(|_| rand::Rng::gen(&mut rng)).collect();
    let params = ElectionParams {
        election_id: "complaints".into(),
        nonce: rand::Rng::gen(&mut rng),
        manifest: Manifest::simple(&[(2, 1, 1)]),
        custodians: identities
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: 2,
        opens_at: 1_000,
        closes_at: 2_000,
        min_ballots: 1,
    };
    let deadlines = Deadlines {
        join: 100,
        deal: 200,
        check: 300,
        answer: 400,
        confirm: 500,
    };
    let mut st = CeremonyState::new(&params, deadlines).unwrap();
    let mut cs: Vec<Custodian> = identities
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &params, &mut rng).unwrap())
        .collect();
    for c in &cs {
        st.apply(&c.join()).unwrap();
    }
    // Dealer 1 sends custodian 0 a wrong encryption share; 0 and 2 deal honestly.
    for j in [0usize, 2] {
        let m = cs[j].deal(&st, &mut rng).unwrap();
        st.apply(&m).unwrap();
    }
    let polys = DealerPolys {
        encryption: Poly::random(1, &mut rng),
        signing: Poly::random(1, &mut rng),
    };
    cs[1].set_polys(polys.clone());
    let mut body = cs[1].deal_body(&st, &polys, &mut rng).unwrap();
    let tk = *st.transport_key(0).unwrap();
    let wrong = polys.value(PolyKind::Encryption, 0) + Fr::from(1u64);
    let slot = body.shares.iter_mut().find(|s| s.recipient == 0).unwrap();
    slot.ciphertext = encrypt_share(
        &tk,
        st.base_hash(),
        1,
        0,
        &wrong,
        &polys.value(PolyKind::Signing, 0),
        &mut rng,
    );
    st.apply(&cs[1].sign(MessageBody::Deal(body))).unwrap();
    assert_eq!(st.phase(), Phase::Check);

    let dir = tempfile::tempdir().unwrap();
    let f0 = key_file(dir.path(), "c0.key", &identities[0], &params, &cs[0]);
    let f1 = key_file(dir.path(), "c1.key", &identities[1], &params, &cs[1]);
    let served = Arc::new(Mutex::new(Served {
        summary: summary_json(&params, &deadlines, "key_ceremony", 0),
        ceremony: serde_json::to_value(&st).unwrap(),
        ..Served::default()
    }));
    let url = fake_node(served.clone());
    let run = |file: &Path, step: &str| -> Value {
        ok_json(
            urna_tests::ceremony_cmd()
                .args(["--json", step])
                .arg(file)
                .args(["--election", &params.election_id, "--node", &url])
                .env("URNA_PASSPHRASE", PASS)
                .output()
                .unwrap_or_else(|e| panic!("urna-ceremony: {e}"))
                .into(),
        )
    };
    let take = |served: &Arc<Mutex<Served>>| -> Vec<(String, SignedCeremonyMessage)> {
        let mut s = served.lock().unwrap();
        let out = s
            .posts
            .iter()
            .map(|(p, v)| (p.clone(), serde_json::from_value(v.clone()).unwrap()))
            .collect();
        s.posts.clear();
        out
    };

    // Custodian 0 checks through the binary: an ack for dealer 2, a complaint about dealer 1.
    let v = run(&f0, "check");
    assert_eq!(v["acks"], json!([2]), "{v}");
    assert_eq!(
        v["complaints"],
        json!([{ "dealer": 1, "kind": "encryption" }]),
        "{v}"
    );
    for (path, m) in take(&served) {
        let kind = if matches!(m.body, MessageBody::Ack(_)) {
            "acks"
        } else {
            "complaints"
        };
        assert_eq!(path, format!("/v1/elections/complaints/ceremony/{kind}"));
        st.apply(&m).unwrap();
    }
    for j in [1usize, 2] {
        for m in cs[j].check(&st) {
            st.apply(&m).unwrap();
        }
    }
    assert_eq!(st.phase(), Phase::Answer);

    // Dealer 1 answers through the binary with the value its committed polynomial (kept in its key
    // file since the deal) gives: it stays qualified.
    served.lock().unwrap().ceremony = serde_json::to_value(&st).unwrap();
    let v = run(&f1, "answer");
    assert_eq!(
        v["answered"],
        json!([{ "complainer": 0, "kind": "encryption" }]),
        "{v}"
    );
    for (path, m) in take(&served) {
        assert_eq!(path, "/v1/elections/complaints/ceremony/answers");
        st.apply(&m).unwrap();
    }
    assert!(st.disqualified().is_empty());
    assert_eq!(st.phase(), Phase::Confirm);

    // Custodian 0 derives its shares (using the answered value) and confirms through the binary.
    served.lock().unwrap().ceremony = serde_json::to_value(&st).unwrap();
    let v = run(&f0, "confirm");
    assert_eq!(v["qualified"], json!([0, 1, 2]), "{v}");
    let posted = take(&served);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, "/v1/elections/complaints/ceremony/confirmations");
    st.apply(&posted[0].1).unwrap();
    let file = sharefile::read(&f0, PASS.as_bytes()).unwrap();
    assert_eq!(
        file.elections[0].progress,
        ["checked".to_string(), "confirmed".to_string()]
    );
}

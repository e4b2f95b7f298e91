//! A whole election in memory, through every step of the protocol: dealerless ceremony with 5 custodians
//! (quorum 3) and its rehearsal, 200 random ballots over two contests, close, tally by every 3-subset of
//! custodians, certificate, and the record verifier, which must accept the honest record and name the
//! check that catches each tampering.

use std::collections::BTreeMap;

use blsttc::SecretKey;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::ballot::{encrypt_ballot, spoil, BallotContext, PlaintextBallot};
use urna_keyceremony::board::{genesis_tracking_code, next_tracking_code};
use urna_keyceremony::ceremony::{CeremonyState, Custodian, CustodianSecrets, Deadlines, Phase};
use urna_keyceremony::credential::{generate, roll_hash};
use urna_keyceremony::election::{extended_hash, Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::record::{
    checks, rehearsal_context, verify_record, CeremonyEvent, CloseSummary, CustodianDecryption,
    CustodianSignature, ElectionRecord, RecordedBallot, RECORD_FORMAT,
};
use urna_keyceremony::tally::{
    certify, decrypt_tally, key_share, partial_decrypt, result_hash, sign_result, Certificate,
    PartialDecryption, TallyContext, WireSignature, WireSignatureShare,
};

const N: usize = 5;
const Q: usize = 3;
const BALLOTS: usize = 200;

struct Election {
    record: ElectionRecord,
    truth: Vec<Vec<u64>>,
    secrets: BTreeMap<usize, CustodianSecrets>,
    all_partials: Vec<CustodianDecryption>,
}

fn run_election(seed: u64) -> Election {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let identities: Vec<SecretKey> = (0..N).map(|_| rng.gen()).collect();
    // Contest 0: vote for exactly 1 of 5; contest 1: vote for up to 3 of 8.
    let manifest = Manifest::simple(&[(5, 1, 1), (8, 0, 3)]);
    let params = ElectionParams {
        election_id: "city-2026".into(),
        nonce: rng.gen(),
        manifest: manifest.clone(),
        custodians: identities
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: Q,
        opens_at: 1_000_000,
        closes_at: 2_000_000,
        min_ballots: 10,
    };
    let deadlines = Deadlines {
        join: 100,
        deal: 200,
        check: 300,
        answer: 400,
        confirm: 500,
    };

    // Key ceremony through the log (here: a vector of events).
    let mut state = CeremonyState::new(&params, deadlines).unwrap();
    let mut events = Vec::new();
    let mut custodians: Vec<Custodian> = identities
        .into_iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k, j, &params, &mut rng).unwrap())
        .collect();
    let post = |state: &mut CeremonyState, events: &mut Vec<CeremonyEvent>, m| {
        state.apply(&m).unwrap();
        events.push(CeremonyEvent::Message(Box::new(m)));
    };
    for c in &custodians {
        post(&mut state, &mut events, c.join());
    }
    for c in &mut custodians {
        let m = c.deal(&state, &mut rng).unwrap();
        post(&mut state, &mut events, m);
    }
    for c in &custodians {
        for m in c.check(&state) {
            post(&mut state, &mut events, m);
        }
    }
    assert_eq!(state.phase(), Phase::Confirm);
    let mut secrets = BTreeMap::new();
    for c in &custodians {
        let s = c.derive(&state).unwrap();
        let m = c.confirm(&state, &s, &mut rng).unwrap();
        post(&mut state, &mut events, m);
        secrets.insert(c.index(), s);
    }
    assert_eq!(state.phase(), Phase::Rehearsal);
    let keys = state.keys().unwrap().clone();
    let transcript = *state.final_transcript_hash().unwrap();

    // Rehearsal: three custodians decrypt the rehearsal ciphertext through the tally code path.
    let rehearsal_ct = *state.rehearsal().unwrap();
    let rctx = rehearsal_context(&params.base_hash(), N);
    let rehearsal: Vec<CustodianDecryption> = [0usize, 2, 4]
        .iter()
        .map(|&j| CustodianDecryption {
            custodian: j,
            partial: partial_decrypt(
                &rctx,
                j,
                &secrets[&j].encryption_share,
                &key_share(&keys.encryption, j).unwrap(),
                &[rehearsal_ct],
                &mut rng,
            )
            .unwrap(),
        })
        .collect();

    // Roll, Q', ballots.
    let voters = generate(BALLOTS + 20, &mut rng);
    let roll: Vec<_> = voters.iter().map(|(_, p)| *p).collect();
    let q_ext = extended_hash(
        &params.base_hash(),
        &keys.encryption_key,
        &keys.signing.public_key(),
        &transcript,
        &roll_hash(&roll),
        roll.len() as u64,
    );
    let ctx = BallotContext::new(
        params.election_id.clone(),
        q_ext,
        manifest.clone(),
        keys.encryption_key,
    )
    .unwrap();
    let mut truth = vec![vec![0u64; 5], vec![0u64; 8]];
    let mut ballots = Vec::new();
    let mut tracking = genesis_tracking_code(&q_ext);
    let mut spoiled = Vec::new();
    for (i, (code, _)) in voters.iter().take(BALLOTS).enumerate() {
        let first = vec![rng.gen_range(0..5)];
        let k = rng.gen_range(0..=3);
        let mut options: Vec<usize> = (0..8).collect();
        options.shuffle(&mut rng);
        let second: Vec<usize> = options[..k].to_vec();
        let plaintext = PlaintextBallot::from_selected(&manifest, &[first.clone(), second.clone()]).unwrap();
        let key = code.signing_key();
        if i % 50 == 0 {
            // A Benaloh challenge first: the opened ballot is never cast; the voter encrypts afresh.
            let (b, s) = encrypt_ballot(&ctx, &plaintext, &key, &mut rng).unwrap();
            spoiled.push(spoil(&b, &s));
        }
        let (ballot, _) = encrypt_ballot(&ctx, &plaintext, &key, &mut rng).unwrap();
        truth[0][first[0]] += 1;
        for o in second {
            truth[1][o] += 1;
        }
        tracking = next_tracking_code(&tracking, &ballot.hash(&ctx));
        ballots.push(RecordedBallot {
            ballot,
            tracking_code: tracking,
        });
    }

    // Close: the summary the close entry's apply computes.
    let hashes: Vec<_> = ballots.iter().map(|b| b.ballot.hash(&ctx)).collect();
    let cast: Vec<_> = ballots.iter().map(|b| b.ballot.clone()).collect();
    let close = CloseSummary::compute(&q_ext, &hashes, &cast);
    let aggregate = close.aggregate.clone().unwrap();
    let close_hash = close.hash(&q_ext, &params.election_id);

    // Every custodian computes a partial decryption (only q are needed).
    let tctx = TallyContext::new(q_ext, N);
    let all_partials: Vec<CustodianDecryption> = (0..N)
        .map(|j| CustodianDecryption {
            custodian: j,
            partial: partial_decrypt(
                &tctx,
                j,
                &secrets[&j].encryption_share,
                &key_share(&keys.encryption, j).unwrap(),
                &aggregate,
                &mut rng,
            )
            .unwrap(),
        })
        .collect();
    let used = [1usize, 3, 4];
    let shares: Vec<(usize, &PartialDecryption)> =
        used.iter().map(|&j| (j, &all_partials[j].partial)).collect();
    let tally = decrypt_tally(&manifest, &aggregate, &shares, Q, close.ballot_count).unwrap();
    assert_eq!(tally.counts, truth);

    let rh = result_hash(&q_ext, &close_hash, &tally);
    let sig_shares: Vec<(usize, blsttc::SignatureShare)> = used
        .iter()
        .map(|&j| (j, sign_result(&secrets[&j].signing_share, &rh)))
        .collect();
    let refs: Vec<(usize, &blsttc::SignatureShare)> = sig_shares.iter().map(|(j, s)| (*j, s)).collect();
    let signature = certify(&keys.signing, &rh, &refs).unwrap();

    let record = ElectionRecord {
        format: RECORD_FORMAT.into(),
        params,
        deadlines,
        ceremony: events,
        rehearsal,
        roll,
        ballots,
        spoiled,
        close: Some(close),
        decryption_shares: used.iter().map(|&j| all_partials[j].clone()).collect(),
        tally: Some(tally),
        signature_shares: sig_shares
            .into_iter()
            .map(|(j, s)| CustodianSignature {
                custodian: j,
                share: WireSignatureShare(s),
            })
            .collect(),
        certificate: Some(Certificate {
            result_hash: rh,
            signature: WireSignature(signature),
        }),
    };
    Election {
        record,
        truth,
        secrets,
        all_partials,
    }
}

#[test]
fn full_election_every_quorum_decrypts_the_truth_and_the_record_verifies() {
    let e = run_election(2026);
    let record = &e.record;
    let close = record.close.as_ref().unwrap();
    let aggregate = close.aggregate.as_ref().unwrap();
    assert_eq!(e.secrets.len(), N);

    // Every 3-subset of the 5 custodians decrypts the same, true counts.
    let mut subsets = 0;
    for a in 0..N {
        for b in a + 1..N {
            for c in b + 1..N {
                let shares: Vec<(usize, &PartialDecryption)> = [a, b, c]
                    .iter()
                    .map(|&j| (j, &e.all_partials[j].partial))
                    .collect();
                let t = decrypt_tally(&record.params.manifest, aggregate, &shares, Q, close.ballot_count)
                    .unwrap();
                assert_eq!(t.counts, e.truth, "subset {a},{b},{c}");
                subsets += 1;
            }
        }
    }
    assert_eq!(subsets, 10);

    let report = verify_record(record);
    assert!(report.passed(), "{:#?}", report.first_failure());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        checks::CEREMONY,
        checks::REHEARSAL,
        checks::BALLOT_PROOFS,
        checks::TRACKING,
        checks::SPOILED,
        checks::CLOSE,
        checks::SHARES,
        checks::TALLY,
        checks::CERTIFICATE,
    ] {
        assert!(
            names.contains(&expected),
            "check {expected} did not run: {names:?}"
        );
    }

    // The record survives JSON and still verifies.
    let json = serde_json::to_string(record).unwrap();
    let back: ElectionRecord = serde_json::from_str(&json).unwrap();
    assert!(verify_record(&back).passed());
}

fn first_failure(record: &ElectionRecord) -> String {
    verify_record(record)
        .first_failure()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "none".into())
}

#[test]
fn tampered_records_fail_with_the_check_that_caught_them() {
    let e = run_election(7);

    // A ballot's ciphertext swapped for another ballot's: proofs no longer verify.
    let mut r = e.record.clone();
    let other = r.ballots[1].ballot.contests[0].selections[0].ciphertext;
    r.ballots[0].ballot.contests[0].selections[0].ciphertext = other;
    assert_eq!(first_failure(&r), checks::BALLOT_PROOFS);

    // A ballot removed: the chain breaks and the close summary no longer matches.
    let mut r = e.record.clone();
    r.ballots.remove(10);
    assert_eq!(first_failure(&r), checks::TRACKING);

    // The last ballot removed (the chain up to it is intact): the close summary catches it.
    let mut r = e.record.clone();
    r.ballots.pop();
    assert_eq!(first_failure(&r), checks::CLOSE);

    // A ballot cast twice by one credential.
    let mut r = e.record.clone();
    let dup = r.ballots[3].clone();
    r.ballots.push(dup);
    let report = verify_record(&r);
    assert!(report
        .checks
        .iter()
        .any(|c| c.name == checks::ONE_PER_CREDENTIAL && !c.passed));

    // A decryption share replaced by another custodian's.
    let mut r = e.record.clone();
    r.decryption_shares[0].partial = e.all_partials[0].partial.clone();
    assert_eq!(first_failure(&r), checks::SHARES);

    // A tally count changed.
    let mut r = e.record.clone();
    r.tally.as_mut().unwrap().counts[1][2] += 1;
    assert_eq!(first_failure(&r), checks::TALLY);

    // A certificate over another result.
    let mut r = e.record.clone();
    r.certificate.as_mut().unwrap().result_hash[0] ^= 1;
    assert_eq!(first_failure(&r), checks::CERTIFICATE);

    // A spoiled ballot whose plaintext was changed.
    let mut r = e.record.clone();
    let p = &mut r.spoiled[0].plaintext.contests[0];
    p.rotate_left(1);
    assert_eq!(first_failure(&r), checks::SPOILED);

    // A ceremony message dropped.
    let mut r = e.record.clone();
    r.ceremony.remove(7);
    assert_eq!(first_failure(&r), checks::CEREMONY);
}

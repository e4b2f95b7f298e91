//! A complete election in memory (after `keyceremony/tests/election.rs`, smaller): a dealerless ceremony
//! with 3 custodians (quorum 2) and its rehearsal, a few ballots over two contests with one Benaloh
//! challenge, close, tally by custodians 0 and 2, and the certificate. The result is a valid
//! [`ElectionRecord`] for `urna verify` tests, plus every custodian's partial decryption for tampering.

use std::collections::BTreeMap;

use blsttc::SecretKey;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::ballot::{encrypt_ballot, spoil, BallotContext, PlaintextBallot};
use urna_keyceremony::board::{genesis_tracking_code, next_tracking_code};
use urna_keyceremony::ceremony::{CeremonyState, Custodian, Deadlines, Phase};
use urna_keyceremony::credential::{generate, roll_hash};
use urna_keyceremony::election::{extended_hash, Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::record::{
    rehearsal_context, CeremonyEvent, CloseSummary, CustodianDecryption, CustodianSignature, ElectionRecord,
    RecordedBallot, RECORD_FORMAT,
};
use urna_keyceremony::sharefile::ElectionSecrets;
use urna_keyceremony::tally::{
    certify, decrypt_tally, key_share, partial_decrypt, result_hash, sign_result, Certificate,
    PartialDecryption, TallyContext, WireSignature, WireSignatureShare,
};

/// Custodians.
pub const CUSTODIANS: usize = 3;
/// Quorum.
pub const QUORUM: usize = 2;

/// An election run in memory.
pub struct TestElection {
    /// The record, valid.
    pub record: ElectionRecord,
    /// The true counts per contest and option.
    pub truth: Vec<Vec<u64>>,
    /// Every custodian's partial decryption of the aggregate (the record holds those of 0 and 2).
    pub all_partials: Vec<CustodianDecryption>,
    /// Every custodian's identity key.
    pub identities: Vec<SecretKey>,
    /// Every custodian's per-election secrets (transport key, polynomials, derived shares), as a key
    /// file stores them.
    pub secrets: Vec<ElectionSecrets>,
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// Runs a whole election with `ballots` voters (at least 10, the minimum count) from `seed`.
pub fn run_election(seed: u64, ballots: usize) -> TestElection {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let identities: Vec<SecretKey> = (0..CUSTODIANS).map(|_| rng.gen()).collect();
    let identity_keys = identities.clone();
    // Contest 0: exactly 1 of 3; contest 1: up to 2 of 4.
    let manifest = Manifest::simple(&[(3, 1, 1), (4, 0, 2)]);
    let params = ElectionParams {
        election_id: "test-2026".into(),
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
        quorum: QUORUM,
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

    let mut state = ok(CeremonyState::new(&params, deadlines), "ceremony state");
    let mut events = Vec::new();
    let mut custodians: Vec<Custodian> = identities
        .into_iter()
        .enumerate()
        .map(|(j, k)| ok(Custodian::new(k, j, &params, &mut rng), "custodian"))
        .collect();
    let post = |state: &mut CeremonyState, events: &mut Vec<CeremonyEvent>, m| {
        ok(state.apply(&m), "ceremony message");
        events.push(CeremonyEvent::Message(Box::new(m)));
    };
    for c in &custodians {
        post(&mut state, &mut events, c.join());
    }
    for c in &mut custodians {
        let m = ok(c.deal(&state, &mut rng), "deal");
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
        let s = ok(c.derive(&state), "derive");
        let m = ok(c.confirm(&state, &s, &mut rng), "confirm");
        post(&mut state, &mut events, m);
        secrets.insert(c.index(), s);
    }
    assert_eq!(state.phase(), Phase::Rehearsal);
    let keys = state.keys().cloned().unwrap_or_else(|| panic!("no keys"));
    let transcript = *state
        .final_transcript_hash()
        .unwrap_or_else(|| panic!("no transcript"));

    let rehearsal_ct = *state.rehearsal().unwrap_or_else(|| panic!("no rehearsal"));
    let rctx = rehearsal_context(&params.base_hash(), CUSTODIANS);
    let rehearsal: Vec<CustodianDecryption> = [0usize, 1]
        .iter()
        .map(|&j| CustodianDecryption {
            custodian: j,
            partial: ok(
                partial_decrypt(
                    &rctx,
                    j,
                    &secrets[&j].encryption_share,
                    &ok(key_share(&keys.encryption, j), "key share"),
                    &[rehearsal_ct],
                    &mut rng,
                ),
                "rehearsal decryption",
            ),
        })
        .collect();

    let voters = generate(ballots + 3, &mut rng);
    let roll: Vec<_> = voters.iter().map(|(_, p)| *p).collect();
    let q_ext = extended_hash(
        &params.base_hash(),
        &keys.encryption_key,
        &keys.signing.public_key(),
        &transcript,
        &roll_hash(&roll),
        roll.len() as u64,
    );
    let ctx = ok(
        BallotContext::new(
            params.election_id.clone(),
            q_ext,
            manifest.clone(),
            keys.encryption_key,
        ),
        "ballot context",
    );
    let mut truth = vec![vec![0u64; 3], vec![0u64; 4]];
    let mut cast = Vec::new();
    let mut tracking = genesis_tracking_code(&q_ext);
    let mut spoiled = Vec::new();
    for (i, (code, _)) in voters.iter().take(ballots).enumerate() {
        let first = vec![rng.gen_range(0..3)];
        let k = rng.gen_range(0..=2);
        let mut options: Vec<usize> = (0..4).collect();
        options.shuffle(&mut rng);
        let second: Vec<usize> = options[..k].to_vec();
        let plaintext = ok(
            PlaintextBallot::from_selected(&manifest, &[first.clone(), second.clone()]),
            "plaintext",
        );
        let key = code.signing_key();
        if i == 0 {
            let (b, s) = ok(encrypt_ballot(&ctx, &plaintext, &key, &mut rng), "encrypt");
            spoiled.push(spoil(&b, &s));
        }
        let (ballot, _) = ok(encrypt_ballot(&ctx, &plaintext, &key, &mut rng), "encrypt");
        truth[0][first[0]] += 1;
        for o in second {
            truth[1][o] += 1;
        }
        tracking = next_tracking_code(&tracking, &ballot.hash(&ctx));
        cast.push(RecordedBallot {
            ballot,
            tracking_code: tracking,
        });
    }

    let hashes: Vec<_> = cast.iter().map(|b| b.ballot.hash(&ctx)).collect();
    let plain: Vec<_> = cast.iter().map(|b| b.ballot.clone()).collect();
    let close = CloseSummary::compute(&q_ext, &hashes, &plain);
    let aggregate = close.aggregate.clone().unwrap_or_else(|| panic!("no aggregate"));
    let close_hash = close.hash(&q_ext, &params.election_id);

    let tctx = TallyContext::new(q_ext, CUSTODIANS);
    let all_partials: Vec<CustodianDecryption> = (0..CUSTODIANS)
        .map(|j| CustodianDecryption {
            custodian: j,
            partial: ok(
                partial_decrypt(
                    &tctx,
                    j,
                    &secrets[&j].encryption_share,
                    &ok(key_share(&keys.encryption, j), "key share"),
                    &aggregate,
                    &mut rng,
                ),
                "partial decryption",
            ),
        })
        .collect();
    let used = [0usize, 2];
    let shares: Vec<(usize, &PartialDecryption)> =
        used.iter().map(|&j| (j, &all_partials[j].partial)).collect();
    let tally = ok(
        decrypt_tally(&manifest, &aggregate, &shares, QUORUM, close.ballot_count),
        "tally",
    );
    assert_eq!(tally.counts, truth);

    let rh = result_hash(&q_ext, &close_hash, &tally);
    let sig_shares: Vec<(usize, blsttc::SignatureShare)> = used
        .iter()
        .map(|&j| (j, sign_result(&secrets[&j].signing_share, &rh)))
        .collect();
    let refs: Vec<(usize, &blsttc::SignatureShare)> = sig_shares.iter().map(|(j, s)| (*j, s)).collect();
    let signature = ok(certify(&keys.signing, &rh, &refs), "certify");

    let record = ElectionRecord {
        format: RECORD_FORMAT.into(),
        params,
        deadlines,
        ceremony: events,
        rehearsal,
        roll,
        ballots: cast,
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
    let secrets = custodians
        .iter()
        .map(|c| ElectionSecrets::from_custodian(&record.params, c, secrets.get(&c.index())))
        .collect();
    TestElection {
        record,
        truth,
        all_partials,
        identities: identity_keys,
        secrets,
    }
}

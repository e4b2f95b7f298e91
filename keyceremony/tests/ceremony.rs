//! End-to-end tests of the dealerless key ceremony (design 4.2), in memory.

use std::collections::BTreeMap;

use blsttc::group::Curve;
use blsttc::{Fr, SecretKey};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::ceremony::{
    encrypt_share, share_scalar, AbortReason, Ack, CeremonyError, CeremonyState, Custodian, Deadlines,
    DealerPolys, DisqualifyReason, MessageBody, MessageKind, Phase, PolyKind, SignedCeremonyMessage,
};
use urna_keyceremony::election::{Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::group::{g, g_mul, lagrange_at_zero, Point, Scalar};
use urna_keyceremony::manifest::Manifest;

const DEADLINES: Deadlines = Deadlines {
    join: 1_000,
    deal: 2_000,
    check: 3_000,
    answer: 4_000,
    confirm: 5_000,
};

fn setup(n: usize, q: usize, seed: u64) -> (ElectionParams, Vec<SecretKey>, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let keys: Vec<SecretKey> = (0..n).map(|_| rng.gen()).collect();
    let params = ElectionParams {
        election_id: "test-election".into(),
        nonce: rng.gen(),
        manifest: Manifest::simple(&[(2, 0, 1)]),
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: q,
        opens_at: 10_000,
        closes_at: 20_000,
        min_ballots: 10,
    };
    (params, keys, rng)
}

struct Run {
    params: ElectionParams,
    state: CeremonyState,
    custodians: Vec<Custodian>,
    rng: ChaCha20Rng,
}

impl Run {
    fn new(n: usize, q: usize, seed: u64) -> Self {
        let (params, keys, mut rng) = setup(n, q, seed);
        let state = CeremonyState::new(&params, DEADLINES).unwrap();
        let custodians = keys
            .into_iter()
            .enumerate()
            .map(|(j, k)| Custodian::new(k, j, &params, &mut rng).unwrap())
            .collect();
        Run {
            params,
            state,
            custodians,
            rng,
        }
    }

    fn join_all(&mut self) {
        for c in &self.custodians {
            self.state.apply(&c.join()).unwrap();
        }
        assert_eq!(self.state.phase(), Phase::Deal);
    }

    fn deal(&mut self, who: &[usize]) {
        for &i in who {
            let m = self.custodians[i].deal(&self.state, &mut self.rng).unwrap();
            self.state.apply(&m).unwrap();
        }
    }

    fn check_all(&mut self) {
        for j in self.state.qualified() {
            for m in self.custodians[j].check(&self.state) {
                self.state.apply(&m).unwrap();
            }
        }
    }

    fn answer(&mut self, who: &[usize]) {
        for &i in who {
            for m in self.custodians[i].answer(&self.state).unwrap() {
                self.state.apply(&m).unwrap();
            }
        }
    }

    /// Derives and confirms for every qualified custodian; returns the secrets.
    fn confirm_all(&mut self) -> BTreeMap<usize, urna_keyceremony::ceremony::CustodianSecrets> {
        assert_eq!(self.state.phase(), Phase::Confirm);
        let mut out = BTreeMap::new();
        for j in self.state.keys().unwrap().qualified.clone() {
            let s = self.custodians[j].derive(&self.state).unwrap();
            let m = self.custodians[j]
                .confirm(&self.state, &s, &mut self.rng)
                .unwrap();
            self.state.apply(&m).unwrap();
            out.insert(j, s);
        }
        assert_eq!(self.state.phase(), Phase::Rehearsal);
        out
    }

    /// A dealer whose encrypted share to `victim` carries a wrong encryption value.
    fn bad_deal(&mut self, dealer: usize, victim: usize) -> Fr {
        let t = self.state.threshold();
        let polys = DealerPolys {
            encryption: blsttc::poly::Poly::random(t, &mut self.rng),
            signing: blsttc::poly::Poly::random(t, &mut self.rng),
        };
        let c = &self.custodians[dealer];
        let mut body = c.deal_body(&self.state, &polys, &mut self.rng).unwrap();
        let wrong = polys.value(PolyKind::Encryption, victim) + Fr::from(1u64);
        let tk = *self.state.transport_key(victim).unwrap();
        let slot = body.shares.iter_mut().find(|s| s.recipient == victim).unwrap();
        slot.ciphertext = encrypt_share(
            &tk,
            self.state.base_hash(),
            dealer,
            victim,
            &wrong,
            &polys.value(PolyKind::Signing, victim),
            &mut self.rng,
        );
        let m = c.sign(MessageBody::Deal(body));
        self.custodians[dealer].set_polys(polys);
        self.state.apply(&m).unwrap();
        wrong
    }
}

fn point_of(pk: blsttc::PublicKeyShare) -> Point {
    Point::from_bytes(&pk.to_bytes()).unwrap()
}

#[test]
fn full_ceremony_five_custodians_quorum_three() {
    let mut run = Run::new(5, 3, 1);
    run.join_all();
    run.deal(&[0, 1, 2, 3, 4]);
    assert_eq!(run.state.phase(), Phase::Check);
    run.check_all();
    assert!(run.state.complaints().is_empty());
    let secrets = run.confirm_all();
    assert!(!run.state.quorum_warning());
    let keys = run.state.keys().unwrap().clone();
    assert_eq!(keys.qualified, vec![0, 1, 2, 3, 4]);

    // g^{s_j} is the encryption key set's public key share j.
    for (j, s) in &secrets {
        let sj = share_scalar(&s.encryption_share).unwrap();
        assert_eq!(
            Point::from_proj(&g_mul(&sj)).unwrap(),
            point_of(keys.encryption.public_key_share(*j))
        );
        assert_eq!(
            s.signing_share.public_key_share(),
            keys.signing.public_key_share(*j)
        );
    }
    // Any 3 signing shares combine into a signature under the signing key.
    let msg = b"urna result";
    for subset in [[0usize, 1, 2], [2, 3, 4], [0, 2, 4], [1, 3, 4]] {
        let shares: BTreeMap<usize, _> = subset
            .iter()
            .map(|&j| (j, secrets[&j].signing_share.sign(msg)))
            .collect();
        let sig = keys.signing.combine_signatures(&shares).unwrap();
        assert!(keys.signing.public_key().verify(&sig, msg));
    }
    // Any 3 encryption shares interpolate to the secret of K.
    let k = keys.encryption_key.proj();
    for subset in [[0usize, 1, 2], [1, 2, 4]] {
        let l = lagrange_at_zero(&subset).unwrap();
        let s: Fr = subset
            .iter()
            .zip(&l)
            .map(|(j, lj)| share_scalar(&secrets[j].encryption_share).unwrap() * lj)
            .sum();
        assert_eq!(g() * s, k);
    }

    // The rehearsal ciphertext is deterministic from the final transcript and decrypts to g^1.
    let th = *run.state.final_transcript_hash().unwrap();
    let ct = *run.state.rehearsal().unwrap();
    assert_eq!(
        urna_keyceremony::ceremony::rehearsal_ciphertext(&th, &keys.encryption_key).unwrap(),
        ct
    );
    let subset = [0usize, 3, 4];
    let l = lagrange_at_zero(&subset).unwrap();
    let m: blsttc::G1Projective = subset
        .iter()
        .zip(&l)
        .map(|(j, lj)| ct.alpha.proj() * (share_scalar(&secrets[j].encryption_share).unwrap() * lj))
        .sum();
    assert_eq!((ct.beta.proj() - m).to_affine(), g().to_affine());
    assert_eq!(
        run.state.advance(i64::MAX),
        Err(CeremonyError::NoDeadline {
            phase: Phase::Rehearsal
        })
    );
    run.state.complete_rehearsal(1).unwrap();
    assert_eq!(run.state.phase(), Phase::Complete);
    assert_eq!(run.state.advance(i64::MAX), Err(CeremonyError::AlreadyComplete));
    assert!(matches!(
        run.state.apply(&run.custodians[0].join()),
        Err(CeremonyError::AlreadyComplete)
    ));

    // Messages and the state survive a serde roundtrip.
    let deal = run.custodians[0].deal(&run.state, &mut run.rng).unwrap();
    let back: SignedCeremonyMessage = serde_json::from_str(&serde_json::to_string(&deal).unwrap()).unwrap();
    assert_eq!(back, deal);
    let json = serde_json::to_string(&run.state).unwrap();
    let back: CeremonyState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, run.state);
}

#[test]
fn failed_rehearsal_aborts() {
    let mut run = Run::new(3, 2, 2);
    run.join_all();
    run.deal(&[0, 1, 2]);
    run.check_all();
    run.confirm_all();
    run.state.complete_rehearsal(0).unwrap();
    assert_eq!(run.state.phase(), Phase::Aborted);
    assert_eq!(
        run.state.abort_reason(),
        Some(&AbortReason::RehearsalFailed { got: 0 })
    );
}

#[test]
fn bad_dealer_with_wrong_answer_is_disqualified_and_four_remain() {
    let mut run = Run::new(5, 3, 3);
    run.join_all();
    run.deal(&[0, 1, 3, 4]);
    let wrong = run.bad_deal(2, 4);
    run.check_all();
    assert_eq!(run.state.complaints().len(), 1);
    let c = &run.state.complaints()[0];
    assert_eq!((c.complainer, c.dealer, c.kind), (4, 2, PolyKind::Encryption));
    assert_eq!(run.state.phase(), Phase::Answer);
    // The dealer stands by the wrong value: everyone sees it does not match the commitment.
    let ans = run.custodians[2].sign(MessageBody::Answer(urna_keyceremony::ceremony::Answer {
        complainer: 4,
        kind: PolyKind::Encryption,
        value: Scalar(wrong),
    }));
    run.state.apply(&ans).unwrap();
    assert_eq!(
        run.state.disqualified().get(&2),
        Some(&DisqualifyReason::BadAnswer {
            complainer: 4,
            kind: PolyKind::Encryption
        })
    );
    assert_eq!(run.state.phase(), Phase::Confirm);
    let secrets = run.confirm_all();
    assert_eq!(run.state.keys().unwrap().qualified, vec![0, 1, 3, 4]);
    assert!(!run.state.quorum_warning());
    assert!(!secrets.contains_key(&2));
    // Messages from the disqualified dealer are refused.
    assert!(run.custodians[2].derive(&run.state).is_err());
}

#[test]
fn honest_answer_keeps_the_dealer_and_the_complainer_uses_it() {
    let mut run = Run::new(4, 3, 4);
    run.join_all();
    run.deal(&[0, 1, 2]);
    run.bad_deal(3, 1);
    run.check_all();
    assert_eq!(run.state.phase(), Phase::Answer);
    // Dealer 3 answers with the true value of its (committed) polynomial.
    run.answer(&[3]);
    assert!(run.state.disqualified().is_empty());
    let secrets = run.confirm_all();
    assert_eq!(secrets.len(), 4);
}

#[test]
fn unanswered_complaint_disqualifies_at_the_deadline_exactly_quorum_warns() {
    let mut run = Run::new(4, 3, 5);
    run.join_all();
    run.deal(&[0, 1, 2]);
    run.bad_deal(3, 0);
    run.check_all();
    assert_eq!(run.state.phase(), Phase::Answer);
    assert!(matches!(
        run.state.advance(DEADLINES.answer - 1),
        Err(CeremonyError::DeadlineNotReached { .. })
    ));
    run.state.advance(DEADLINES.answer).unwrap();
    assert_eq!(
        run.state.disqualified().get(&3),
        Some(&DisqualifyReason::NoAnswer {
            complainer: 0,
            kind: PolyKind::Encryption
        })
    );
    assert_eq!(run.state.phase(), Phase::Confirm);
    assert!(run.state.quorum_warning());
    run.confirm_all();
    assert!(run.state.quorum_warning());
    assert_eq!(run.state.keys().unwrap().qualified, vec![0, 1, 2]);
}

#[test]
fn too_few_qualified_aborts_naming_the_disqualified() {
    let mut run = Run::new(4, 3, 6);
    run.join_all();
    run.deal(&[0, 1]);
    run.bad_deal(2, 0);
    run.bad_deal(3, 1);
    run.check_all();
    run.state.advance(DEADLINES.answer).unwrap();
    assert_eq!(run.state.phase(), Phase::Aborted);
    let reason = run.state.abort_reason().unwrap().clone();
    match &reason {
        AbortReason::TooFewQualified {
            quorum,
            qualified,
            disqualified,
        } => {
            assert_eq!(*quorum, 3);
            assert_eq!(qualified, &vec![0, 1]);
            assert_eq!(disqualified.iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 3]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = reason.to_string();
    assert!(
        text.contains("custodian 2") && text.contains("custodian 3"),
        "{text}"
    );
    assert!(matches!(
        run.state.apply(&run.custodians[0].join()),
        Err(CeremonyError::Aborted(_))
    ));
}

#[test]
fn missing_dealer_is_disqualified_at_the_deal_deadline() {
    let mut run = Run::new(5, 3, 7);
    run.join_all();
    run.deal(&[0, 1, 2, 3]);
    assert_eq!(run.state.phase(), Phase::Deal);
    run.state.advance(DEADLINES.deal).unwrap();
    assert_eq!(run.state.disqualified().get(&4), Some(&DisqualifyReason::NoDeal));
    assert_eq!(run.state.phase(), Phase::Check);
    run.check_all();
    let secrets = run.confirm_all();
    assert_eq!(secrets.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

#[test]
fn refusals_have_specific_errors() {
    let mut run = Run::new(4, 3, 8);
    let q = *run.state.base_hash();
    // Wrong phase: a deal before everyone joined.
    run.state.apply(&run.custodians[0].join()).unwrap();
    let ack = run.custodians[0].sign(MessageBody::Ack(Ack { dealer: 1 }));
    assert_eq!(
        run.state.apply(&ack),
        Err(CeremonyError::WrongPhase {
            kind: MessageKind::Ack,
            phase: Phase::Join
        })
    );
    // Duplicate join.
    assert_eq!(
        run.state.apply(&run.custodians[0].join()),
        Err(CeremonyError::Duplicate {
            kind: MessageKind::Join,
            sender: 0
        })
    );
    // Bad signature: custodian 1's join signed by custodian 2's key.
    let mut forged = run.custodians[1].join();
    forged.signature = run.custodians[2].join().signature;
    assert_eq!(
        run.state.apply(&forged),
        Err(CeremonyError::BadSignature {
            sender: 1,
            kind: MessageKind::Join
        })
    );
    // A non-custodian: an index outside the list, and an outsider's key claiming a custodian's index.
    let outsider: SecretKey = run.rng.gen();
    let body = run.custodians[1].join().body;
    let m = SignedCeremonyMessage::sign(&outsider, &q, 9, body.clone());
    assert_eq!(
        run.state.apply(&m),
        Err(CeremonyError::UnknownCustodian { index: 9 })
    );
    let m = SignedCeremonyMessage::sign(&outsider, &q, 1, body);
    assert!(matches!(
        run.state.apply(&m),
        Err(CeremonyError::BadSignature { sender: 1, .. })
    ));
    // An outsider cannot even build a Custodian.
    assert!(matches!(
        Custodian::new(outsider, 1, &run.params, &mut run.rng),
        Err(CeremonyError::WrongIdentity { index: 1 })
    ));

    for c in &run.custodians[1..] {
        run.state.apply(&c.join()).unwrap();
    }
    // Duplicate deal.
    let deal = run.custodians[0].deal(&run.state, &mut run.rng).unwrap();
    run.state.apply(&deal).unwrap();
    let again = run.custodians[0].deal(&run.state, &mut run.rng).unwrap();
    assert_eq!(
        run.state.apply(&again),
        Err(CeremonyError::Duplicate {
            kind: MessageKind::Deal,
            sender: 0
        })
    );
    // Tampered commitment: swap a coefficient; the proof (bound to all coefficients) fails.
    let mut m = run.custodians[1].deal(&run.state, &mut run.rng).unwrap();
    let MessageBody::Deal(mut d) = m.body.clone() else {
        unreachable!()
    };
    d.encryption.commitment[1] = d.signing.commitment[1];
    m = run.custodians[1].sign(MessageBody::Deal(d.clone()));
    assert_eq!(
        run.state.apply(&m),
        Err(CeremonyError::BadProof {
            dealer: 1,
            kind: PolyKind::Encryption
        })
    );
    // Tampered constant term.
    let mut d2 = d.clone();
    d2.encryption.commitment = run.custodians[1]
        .deal_body(
            &run.state,
            &DealerPolys {
                encryption: blsttc::poly::Poly::random(2, &mut run.rng),
                signing: blsttc::poly::Poly::random(2, &mut run.rng),
            },
            &mut run.rng,
        )
        .unwrap()
        .encryption
        .commitment;
    let m2 = run.custodians[1].sign(MessageBody::Deal(d2));
    assert!(matches!(
        run.state.apply(&m2),
        Err(CeremonyError::BadProof { dealer: 1, .. })
    ));
    // A proof moved to another dealer index fails too.
    let mut d3 = d.clone();
    d3.encryption = run.state.deal(0).unwrap().encryption.clone();
    let m3 = run.custodians[2].sign(MessageBody::Deal(d3));
    assert_eq!(
        run.state.apply(&m3),
        Err(CeremonyError::BadProof {
            dealer: 2,
            kind: PolyKind::Encryption
        })
    );
    // Wrong commitment length.
    let polys = DealerPolys {
        encryption: blsttc::poly::Poly::random(2, &mut run.rng),
        signing: blsttc::poly::Poly::random(2, &mut run.rng),
    };
    let mut d4 = run.custodians[1]
        .deal_body(&run.state, &polys, &mut run.rng)
        .unwrap();
    d4.signing.commitment.pop();
    let m4 = run.custodians[1].sign(MessageBody::Deal(d4));
    assert_eq!(
        run.state.apply(&m4),
        Err(CeremonyError::CommitmentLength {
            kind: PolyKind::Signing,
            expected: 3,
            got: 2
        })
    );
    // Shares missing a recipient.
    let mut d6 = run.custodians[1]
        .deal_body(&run.state, &polys, &mut run.rng)
        .unwrap();
    d6.shares.pop();
    let m6 = run.custodians[1].sign(MessageBody::Deal(d6));
    assert_eq!(
        run.state.apply(&m6),
        Err(CeremonyError::ShareRecipients { dealer: 1 })
    );
    // A message with a tampered payload after signing.
    let mut m5 = run.custodians[1].deal(&run.state, &mut run.rng).unwrap();
    if let MessageBody::Deal(d5) = &mut m5.body {
        d5.shares.pop();
    }
    assert_eq!(
        run.state.apply(&m5),
        Err(CeremonyError::BadSignature {
            sender: 1,
            kind: MessageKind::Deal
        })
    );
    // Ack about oneself, and a complaint about a dealer that has not dealt, in the wrong phase.
    let self_ack = run.custodians[0].sign(MessageBody::Ack(Ack { dealer: 0 }));
    assert!(matches!(
        run.state.apply(&self_ack),
        Err(CeremonyError::WrongPhase { .. })
    ));
    // Errors leave the state unchanged; the transcript moves only on accepted messages.
    let before = run.state.clone();
    let _ = run.state.apply(&m5);
    assert_eq!(before, run.state);
}

#[test]
fn verdict_rules_in_check_phase() {
    let mut run = Run::new(3, 2, 9);
    run.join_all();
    run.deal(&[0, 1, 2]);
    let self_ack = run.custodians[0].sign(MessageBody::Ack(Ack { dealer: 0 }));
    assert_eq!(
        run.state.apply(&self_ack),
        Err(CeremonyError::SelfReference { index: 0 })
    );
    let ack = run.custodians[0].sign(MessageBody::Ack(Ack { dealer: 1 }));
    run.state.apply(&ack).unwrap();
    assert_eq!(
        run.state.apply(&ack),
        Err(CeremonyError::Duplicate {
            kind: MessageKind::Ack,
            sender: 0
        })
    );
    let unknown = run.custodians[0].sign(MessageBody::Ack(Ack { dealer: 7 }));
    assert_eq!(
        run.state.apply(&unknown),
        Err(CeremonyError::UnknownCustodian { index: 7 })
    );
    // Silence until the check deadline counts as no complaint.
    run.state.advance(DEADLINES.check).unwrap();
    assert_eq!(run.state.phase(), Phase::Confirm);
}

#[test]
fn too_few_joined_aborts() {
    let mut run = Run::new(3, 3, 10);
    run.state.apply(&run.custodians[0].join()).unwrap();
    run.state.apply(&run.custodians[1].join()).unwrap();
    run.state.advance(DEADLINES.join).unwrap();
    assert_eq!(run.state.phase(), Phase::Aborted);
    assert!(run
        .state
        .abort_reason()
        .unwrap()
        .to_string()
        .contains("custodian 2 did not join"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn any_quorum_subset_recovers_the_election_secret(n in 1usize..6, q_off in 0usize..5, seed in any::<u64>()) {
        let q = 1 + q_off % n;
        let mut run = Run::new(n, q, seed);
        run.join_all();
        run.deal(&(0..n).collect::<Vec<_>>());
        run.check_all();
        let secrets = run.confirm_all();
        let k = run.state.keys().unwrap().encryption_key.proj();
        let mut pick = ChaCha20Rng::seed_from_u64(seed ^ 1);
        for _ in 0..3 {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..idx.len()).rev() {
                idx.swap(i, pick.gen_range(0..=i));
            }
            idx.truncate(q);
            let l = lagrange_at_zero(&idx).unwrap();
            let s: Fr = idx.iter().zip(&l).map(|(j, lj)| share_scalar(&secrets[j].encryption_share).unwrap() * lj).sum();
            prop_assert_eq!(g() * s, k);
        }
    }
}

#[test]
fn custodian_state_survives_the_share_file_mid_ceremony() {
    use urna_keyceremony::sharefile::{self, CustodianFile, ElectionSecrets, KdfParams};
    let mut run = Run::new(4, 3, 11);
    run.join_all();
    run.deal(&[0, 1, 2, 3]);
    run.check_all();
    // Custodian 2 stops after dealing: its transport key and polynomials go to its file.
    let (_, keys, _) = setup(4, 3, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c2.key");
    let file = CustodianFile {
        identity: keys[2].clone(),
        elections: vec![ElectionSecrets::from_custodian(
            &run.params,
            &run.custodians[2],
            None,
        )],
    };
    let kdf = KdfParams::insecure_for_tests();
    sharefile::create(&path, &file, b"pw", kdf, &mut run.rng).unwrap();
    // It comes back, derives the same shares, and stores them.
    let back = sharefile::read(&path, b"pw").unwrap();
    let restored = back.elections[0].custodian(&back.identity, &run.params).unwrap();
    let secrets = restored.derive(&run.state).unwrap();
    assert_eq!(secrets, run.custodians[2].derive(&run.state).unwrap());
    let mut updated = back.clone();
    updated.elections[0] = ElectionSecrets::from_custodian(&run.params, &restored, Some(&secrets));
    sharefile::write(&path, &updated, b"pw", kdf, &mut run.rng).unwrap();
    let again = sharefile::read(&path, b"pw").unwrap();
    assert_eq!(again.elections[0].shares.as_ref(), Some(&secrets));
    // Stored secrets refuse another election.
    let (mut other, _, _) = setup(4, 3, 11);
    other.election_id = "another".into();
    assert!(matches!(
        again.elections[0].custodian(&again.identity, &other),
        Err(CeremonyError::WrongElection)
    ));
}

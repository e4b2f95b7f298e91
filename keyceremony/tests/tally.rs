//! Threshold decryption, tally and certificate (design 4.6), end to end over blsttc key sets.
//!
//! Until the ceremony module lands, key shares come from a test-only dealer (`SecretKeySet::random`).

use blsttc::group::ff::Field;
use blsttc::{Fr, PublicKeySet, SecretKeySet, SecretKeyShare};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::elgamal::{Accumulator, Ciphertext};
use urna_keyceremony::group::{g_mul, g_pow_u64, random_scalar, Point, Scalar};
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::proofs::{DleqProof, KeyTable};
use urna_keyceremony::tally::*;

const QP: Hash32 = [7u8; 32];

struct Setup {
    sks: SecretKeySet,
    pks: PublicKeySet,
    shares: Vec<SecretKeyShare>,
    keys: Vec<Point>,
    table: KeyTable,
    ctx: TallyContext,
}

fn setup(n: usize, q: usize, rng: &mut ChaCha20Rng) -> Setup {
    let sks = SecretKeySet::random(q - 1, rng);
    let pks = sks.public_keys();
    let shares = (0..n).map(|j| sks.secret_key_share(j)).collect();
    let keys = (0..n).map(|j| key_share(&pks, j).unwrap()).collect();
    let k = Point::from_bytes(&pks.public_key().to_bytes()).unwrap();
    Setup {
        sks,
        pks,
        shares,
        keys,
        table: KeyTable::new(k),
        ctx: TallyContext::new(QP, n),
    }
}

fn secret(share: &SecretKeyShare) -> Fr {
    Option::from(Fr::from_bytes_be(&share.to_bytes())).unwrap()
}

/// Encrypts each ballot (one 0/1 per option) and aggregates per option.
fn encrypt_ballots(s: &Setup, ballots: &[Vec<u64>], rng: &mut ChaCha20Rng) -> Vec<Ciphertext> {
    let options = ballots[0].len();
    let mut acc = vec![Accumulator::default(); options];
    for b in ballots {
        for (k, &v) in b.iter().enumerate() {
            acc[k].add(&Ciphertext::encrypt(&s.table, v, &random_scalar(rng)).unwrap());
        }
    }
    acc.iter().map(|a| a.to_ciphertext().unwrap()).collect()
}

fn decrypt_all(s: &Setup, aggregate: &[Ciphertext], rng: &mut ChaCha20Rng) -> Vec<PartialDecryption> {
    (0..s.shares.len())
        .map(|j| {
            let pd = partial_decrypt(&s.ctx, j, &s.shares[j], &s.keys[j], aggregate, rng).unwrap();
            verify_partial(&s.ctx, j, &s.keys[j], aggregate, &pd).unwrap();
            pd
        })
        .collect()
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|j| m & (1 << j) != 0).collect())
        .collect()
}

#[test]
fn every_three_of_five_decrypts_the_true_counts() {
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let s = setup(5, 3, &mut rng);
    // Contest 0: pick one of 3 (option 2 gets no vote); contest 1: up to 2 of 2.
    let manifest = Manifest::simple(&[(3, 1, 1), (2, 0, 2)]);
    let ballots: Vec<Vec<u64>> = (0..13)
        .map(|i| {
            let first = if i % 3 == 0 { [0, 1, 0] } else { [1, 0, 0] };
            let second = [(i % 2) as u64, u64::from(i % 5 == 0)];
            first.iter().copied().chain(second).collect()
        })
        .collect();
    let expected: Vec<u64> = (0..5).map(|k| ballots.iter().map(|b| b[k]).sum()).collect();
    assert_eq!(expected, vec![8, 5, 0, 6, 3]);
    let aggregate = encrypt_ballots(&s, &ballots, &mut rng);
    let pds = decrypt_all(&s, &aggregate, &mut rng);
    let subs = subsets(5, 3);
    assert_eq!(subs.len(), 10);
    for sub in subs {
        let mut chosen: Vec<(usize, &PartialDecryption)> = sub.iter().map(|&j| (j, &pds[j])).collect();
        let tally = decrypt_tally(&manifest, &aggregate, &chosen, 3, 13).unwrap();
        assert_eq!(tally.flat(), expected, "subset {sub:?}");
        assert_eq!(tally.counts, vec![vec![8, 5, 0], vec![6, 3]]);
        // Order does not matter.
        chosen.reverse();
        assert_eq!(
            decrypt_tally(&manifest, &aggregate, &chosen, 3, 13).unwrap(),
            tally
        );
    }
    // More than q shares: any q of them are used.
    let all: Vec<_> = pds.iter().enumerate().collect();
    assert_eq!(
        decrypt_tally(&manifest, &aggregate, &all, 3, 13).unwrap().flat(),
        expected
    );
}

#[test]
fn all_zero_counts() {
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let s = setup(5, 3, &mut rng);
    let manifest = Manifest::simple(&[(2, 0, 1)]);
    let ballots = vec![vec![0u64, 0]; 4];
    let aggregate = encrypt_ballots(&s, &ballots, &mut rng);
    let pds = decrypt_all(&s, &aggregate, &mut rng);
    for sub in subsets(5, 3) {
        let chosen: Vec<_> = sub.iter().map(|&j| (j, &pds[j])).collect();
        let tally = decrypt_tally(&manifest, &aggregate, &chosen, 3, 4).unwrap();
        assert_eq!(tally.counts, vec![vec![0, 0]]);
    }
}

proptest! {
    #![proptest_config(Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(0x75726e61),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn any_quorum_subset_recovers_the_counts(
        n in 1usize..=6,
        q_off in 0usize..6,
        counts in proptest::collection::vec(0u64..300, 1..4),
        seed in any::<u64>(),
    ) {
        let q = 1 + q_off % n;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let s = setup(n, q, &mut rng);
        // Each count is split over two ciphertexts and aggregated homomorphically.
        let aggregate: Vec<Ciphertext> = counts
            .iter()
            .map(|&c| {
                let part = c / 3;
                let mut acc = Accumulator::default();
                acc.add(&Ciphertext::encrypt(&s.table, part, &random_scalar(&mut rng)).unwrap());
                acc.add(&Ciphertext::encrypt(&s.table, c - part, &random_scalar(&mut rng)).unwrap());
                acc.to_ciphertext().unwrap()
            })
            .collect();
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rng);
        idx.truncate(q);
        let pds: Vec<(usize, PartialDecryption)> = idx
            .iter()
            .map(|&j| (j, partial_decrypt(&s.ctx, j, &s.shares[j], &s.keys[j], &aggregate, &mut rng).unwrap()))
            .collect();
        for (j, pd) in &pds {
            prop_assert_eq!(verify_partial_exact(&s.ctx, *j, &s.keys[*j], &aggregate, pd), Ok(()));
        }
        let chosen: Vec<_> = pds.iter().map(|(j, pd)| (*j, pd)).collect();
        let combined = combine(&aggregate, &chosen, q).unwrap();
        let got: Vec<Option<u64>> = combined.iter().map(|p| discrete_log(p, 300)).collect();
        let want: Vec<Option<u64>> = counts.iter().map(|&c| Some(c)).collect();
        prop_assert_eq!(got, want);
        if q > 1 {
            prop_assert_eq!(
                combine(&aggregate, &chosen[..q - 1], q),
                Err(TallyError::NotEnoughShares { have: q - 1, need: q })
            );
        }
    }
}

/// Three options under a 3-of-5 key, with custodian 0's valid partial decryption.
fn fixture(seed: u64) -> (Setup, Vec<Ciphertext>, PartialDecryption, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let s = setup(5, 3, &mut rng);
    let aggregate: Vec<Ciphertext> = [3u64, 0, 9]
        .iter()
        .map(|&v| Ciphertext::encrypt(&s.table, v, &random_scalar(&mut rng)).unwrap())
        .collect();
    let pd = partial_decrypt(&s.ctx, 0, &s.shares[0], &s.keys[0], &aggregate, &mut rng).unwrap();
    (s, aggregate, pd, rng)
}

fn refused(s: &Setup, j: usize, key: &Point, aggregate: &[Ciphertext], pd: &PartialDecryption) -> TallyError {
    let batch = verify_partial(&s.ctx, j, key, aggregate, pd).unwrap_err();
    let exact = verify_partial_exact(&s.ctx, j, key, aggregate, pd).unwrap_err();
    assert_eq!(batch, exact);
    batch
}

#[test]
fn wrong_exponent_with_a_proof_for_it_is_refused_naming_the_option() {
    let (s, aggregate, mut pd, mut rng) = fixture(200);
    let wrong = secret(&s.shares[0]) + Fr::one();
    let ct = &aggregate[1];
    let m = Point::from_proj(&(ct.alpha.proj() * wrong)).unwrap();
    let proof = DleqProof::prove(
        &s.ctx.proof_context(0, 1, ct),
        &wrong,
        &s.keys[0],
        &ct.alpha,
        &m,
        &mut rng,
    )
    .unwrap();
    pd.shares[1] = DecryptionShare { m, proof };
    assert_eq!(
        refused(&s, 0, &s.keys[0], &aggregate, &pd),
        TallyError::BadProof { option: 1 }
    );
}

#[test]
fn foreign_or_unknown_custodian_is_refused() {
    let (s, aggregate, pd, mut rng) = fixture(201);
    // Another custodian's K_j.
    assert_eq!(
        refused(&s, 0, &s.keys[1], &aggregate, &pd),
        TallyError::BadProof { option: 0 }
    );
    // Claimed as custodian 1's (index in the context).
    assert_eq!(
        refused(&s, 1, &s.keys[0], &aggregate, &pd),
        TallyError::BadProof { option: 0 }
    );
    // Index n is no custodian, even with a consistent share from the dealer's polynomial.
    let outsider = s.sks.secret_key_share(5);
    let outsider_key = key_share(&s.pks, 5).unwrap();
    let unknown = TallyError::UnknownCustodian {
        index: 5,
        custodians: 5,
    };
    assert_eq!(
        partial_decrypt(&s.ctx, 5, &outsider, &outsider_key, &aggregate, &mut rng),
        Err(unknown.clone())
    );
    let wide = TallyContext::new(QP, 6);
    let pd5 = partial_decrypt(&wide, 5, &outsider, &outsider_key, &aggregate, &mut rng).unwrap();
    assert_eq!(refused(&s, 5, &outsider_key, &aggregate, &pd5), unknown);
    assert!(matches!(
        refused(&s, usize::MAX, &outsider_key, &aggregate, &pd5),
        TallyError::UnknownCustodian { .. }
    ));
}

#[test]
fn tampered_proofs_are_refused() {
    let (s, aggregate, pd, mut rng) = fixture(202);
    verify_partial(&s.ctx, 0, &s.keys[0], &aggregate, &pd).unwrap();
    let other = Point::from_proj(&g_mul(&random_scalar(&mut rng))).unwrap();
    for k in 0..3 {
        let mut t = pd.clone();
        t.shares[k].proof.response = Scalar(t.shares[k].proof.response.0 + Fr::one());
        assert_eq!(
            refused(&s, 0, &s.keys[0], &aggregate, &t),
            TallyError::BadProof { option: k }
        );
        let mut t = pd.clone();
        t.shares[k].proof.a = other;
        assert_eq!(
            refused(&s, 0, &s.keys[0], &aggregate, &t),
            TallyError::BadProof { option: k }
        );
        let mut t = pd.clone();
        t.shares[k].proof.b = other;
        assert_eq!(
            refused(&s, 0, &s.keys[0], &aggregate, &t),
            TallyError::BadProof { option: k }
        );
        // M_j changed after the challenge.
        let mut t = pd.clone();
        t.shares[k].m = Point::from_proj(&(t.shares[k].m.proj() + g_mul(&Fr::one()))).unwrap();
        assert_eq!(
            refused(&s, 0, &s.keys[0], &aggregate, &t),
            TallyError::BadProof { option: k }
        );
    }
    // Several bad options: the first is named.
    let mut t = pd.clone();
    t.shares[2].proof.response = Scalar(Fr::zero());
    t.shares[1].proof.response = Scalar(Fr::zero());
    assert_eq!(
        refused(&s, 0, &s.keys[0], &aggregate, &t),
        TallyError::BadProof { option: 1 }
    );
    // Wrong number of options.
    let mut t = pd.clone();
    t.shares.pop();
    assert_eq!(
        refused(&s, 0, &s.keys[0], &aggregate, &t),
        TallyError::WrongOptionCount { expected: 3, got: 2 }
    );
}

#[test]
fn proofs_are_bound_to_election_option_and_ciphertext() {
    let (s, aggregate, pd, mut rng) = fixture(203);
    // Another Q'.
    let other_ctx = TallyContext::new([8u8; 32], 5);
    assert_eq!(
        verify_partial_exact(&other_ctx, 0, &s.keys[0], &aggregate, &pd),
        Err(TallyError::BadProof { option: 0 })
    );
    // Same ciphertext at two positions: a share moved from position 0 to 1 fails.
    let twice = vec![aggregate[0], aggregate[0]];
    let pd2 = partial_decrypt(&s.ctx, 0, &s.shares[0], &s.keys[0], &twice, &mut rng).unwrap();
    verify_partial(&s.ctx, 0, &s.keys[0], &twice, &pd2).unwrap();
    let mut moved = pd2.clone();
    moved.shares[1] = pd2.shares[0].clone();
    assert_eq!(
        refused(&s, 0, &s.keys[0], &twice, &moved),
        TallyError::BadProof { option: 1 }
    );
    // B changed (A, M_j, K_j unchanged): the statement includes B.
    let mut other_b = aggregate.clone();
    other_b[2].beta = Point::from_proj(&(aggregate[2].beta.proj() + g_mul(&Fr::one()))).unwrap();
    assert_eq!(
        refused(&s, 0, &s.keys[0], &other_b, &pd),
        TallyError::BadProof { option: 2 }
    );
    // A changed.
    let mut other_a = aggregate.clone();
    other_a[0].alpha = aggregate[1].alpha;
    assert_eq!(
        refused(&s, 0, &s.keys[0], &other_a, &pd),
        TallyError::BadProof { option: 0 }
    );
}

#[test]
fn json_roundtrip_keeps_partial_decryptions_valid() {
    let (s, aggregate, pd, _) = fixture(204);
    let json = serde_json::to_string(&pd).unwrap();
    let back: PartialDecryption = serde_json::from_str(&json).unwrap();
    assert_eq!(back, pd);
    verify_partial_exact(&s.ctx, 0, &s.keys[0], &aggregate, &back).unwrap();
    // A non-point in the JSON is a decode error, not a panic.
    let bad = json.replacen(&pd.shares[0].m.to_hex(), &"00".repeat(48), 1);
    assert!(serde_json::from_str::<PartialDecryption>(&bad).is_err());
}

#[test]
fn combination_needs_quorum_distinct_shares() {
    let (s, aggregate, pd0, mut rng) = fixture(205);
    let pd1 = partial_decrypt(&s.ctx, 1, &s.shares[1], &s.keys[1], &aggregate, &mut rng).unwrap();
    let pd2 = partial_decrypt(&s.ctx, 2, &s.shares[2], &s.keys[2], &aggregate, &mut rng).unwrap();
    assert_eq!(
        combine(&aggregate, &[(0, &pd0), (1, &pd1)], 3),
        Err(TallyError::NotEnoughShares { have: 2, need: 3 })
    );
    assert_eq!(
        combine(&aggregate, &[(0, &pd0), (1, &pd1), (1, &pd1)], 3),
        Err(TallyError::DuplicateShare { index: 1 })
    );
    assert_eq!(
        combine(&aggregate, &[(0, &pd0), (1, &pd1), (0, &pd2)], 3),
        Err(TallyError::DuplicateShare { index: 0 })
    );
    let ok = combine(&aggregate, &[(2, &pd2), (0, &pd0), (1, &pd1)], 3).unwrap();
    assert_eq!(ok, vec![g_pow_u64(3), g_pow_u64(0), g_pow_u64(9)]);
    // Counts beyond the bound (fewer ballots claimed than votes) are refused, not wrapped.
    let manifest = Manifest::simple(&[(3, 0, 3)]);
    let shares = [(0, &pd0), (1, &pd1), (2, &pd2)];
    assert_eq!(
        decrypt_tally(&manifest, &aggregate, &shares, 3, 8),
        Err(TallyError::NoDiscreteLog { option: 2, bound: 8 })
    );
    assert_eq!(
        decrypt_tally(&manifest, &aggregate, &shares, 3, 9)
            .unwrap()
            .counts,
        vec![vec![3, 0, 9]]
    );
    let wrong_shape = Manifest::simple(&[(2, 0, 2)]);
    assert_eq!(
        decrypt_tally(&wrong_shape, &aggregate, &shares, 3, 9),
        Err(TallyError::WrongOptionCount { expected: 2, got: 3 })
    );
    // An unverified wrong share makes the combination fail the bounded discrete log.
    let mut bad = pd1.clone();
    bad.shares[0].m = Point::from_proj(&(bad.shares[0].m.proj() + g_mul(&Fr::one()))).unwrap();
    let combined = combine(&aggregate, &[(0, &pd0), (1, &bad), (2, &pd2)], 3).unwrap();
    assert_ne!(combined[0], g_pow_u64(3));
}

#[test]
fn discrete_log_beyond_bound_is_none() {
    assert_eq!(discrete_log(&g_pow_u64(1001), 1000), None);
    assert_eq!(discrete_log(&g_pow_u64(1000), 1000), Some(1000));
    assert_eq!(discrete_log(&g_pow_u64(0), 1000), Some(0));
}

/// Signing shares, a tally, and its result hash.
fn signing_fixture(seed: u64) -> (SecretKeySet, PublicKeySet, Tally, Hash32) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let sks = SecretKeySet::random(2, &mut rng);
    let pks = sks.public_keys();
    let tally = Tally {
        counts: vec![vec![8, 5, 0], vec![6, 3]],
    };
    let h = result_hash(&QP, &[9u8; 32], &tally);
    (sks, pks, tally, h)
}

#[test]
fn certificate_from_quorum_signature_shares() {
    let (sks, pks, tally, h) = signing_fixture(300);
    let sig_shares: Vec<_> = (0..5)
        .map(|j| sign_result(&sks.secret_key_share(j), &h))
        .collect();
    for (j, sh) in sig_shares.iter().enumerate() {
        verify_signature_share(&pks, j, &h, sh).unwrap();
    }
    for sub in subsets(5, 3) {
        let chosen: Vec<_> = sub.iter().map(|&j| (j, &sig_shares[j])).collect();
        let sig = certify(&pks, &h, &chosen).unwrap();
        verify_certificate(&pks.public_key(), &h, &sig).unwrap();
    }
    let sig = certify(
        &pks,
        &h,
        &[(4, &sig_shares[4]), (0, &sig_shares[0]), (2, &sig_shares[2])],
    )
    .unwrap();
    // A certificate over another tally, another close entry or another Q' fails.
    let other_tally = Tally {
        counts: vec![vec![8, 5, 0], vec![6, 4]],
    };
    for other in [
        result_hash(&QP, &[9u8; 32], &other_tally),
        result_hash(&QP, &[10u8; 32], &tally),
        result_hash(&[0u8; 32], &[9u8; 32], &tally),
    ] {
        assert_ne!(other, h);
        assert_eq!(
            verify_certificate(&pks.public_key(), &other, &sig),
            Err(TallyError::BadCertificate)
        );
    }
    // Another signing key.
    let mut rng = ChaCha20Rng::seed_from_u64(301);
    let stranger = SecretKeySet::random(2, &mut rng).public_keys();
    assert_eq!(
        verify_certificate(&stranger.public_key(), &h, &sig),
        Err(TallyError::BadCertificate)
    );
    // Wire form.
    let cert = Certificate {
        result_hash: h,
        signature: WireSignature(sig),
    };
    let json = serde_json::to_string(&cert).unwrap();
    let back: Certificate = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cert);
    back.verify(&pks.public_key()).unwrap();
    let share_json = serde_json::to_string(&WireSignatureShare(sig_shares[1].clone())).unwrap();
    let share_back: WireSignatureShare = serde_json::from_str(&share_json).unwrap();
    verify_signature_share(&pks, 1, &h, &share_back.0).unwrap();
    assert!(serde_json::from_str::<WireSignature>("\"00\"").is_err());
}

#[test]
fn bad_signature_shares_are_refused() {
    let (sks, pks, tally, h) = signing_fixture(302);
    let good: Vec<_> = (0..5)
        .map(|j| sign_result(&sks.secret_key_share(j), &h))
        .collect();
    // Custodian 1's share presented as custodian 0's.
    assert_eq!(
        verify_signature_share(&pks, 0, &h, &good[1]),
        Err(TallyError::BadSignatureShare { index: 0 })
    );
    // A share over another result.
    let other = result_hash(
        &QP,
        &[9u8; 32],
        &Tally {
            counts: vec![vec![0]],
        },
    );
    let over_other = sign_result(&sks.secret_key_share(2), &other);
    assert_eq!(
        verify_signature_share(&pks, 2, &h, &over_other),
        Err(TallyError::BadSignatureShare { index: 2 })
    );
    // certify names the bad share.
    assert_eq!(
        certify(&pks, &h, &[(0, &good[0]), (2, &over_other), (3, &good[3])]),
        Err(TallyError::BadSignatureShare { index: 2 })
    );
    assert_eq!(
        certify(&pks, &h, &[(0, &good[0]), (3, &good[3])]),
        Err(TallyError::NotEnoughShares { have: 2, need: 3 })
    );
    assert_eq!(
        certify(&pks, &h, &[(0, &good[0]), (3, &good[3]), (0, &good[0])]),
        Err(TallyError::DuplicateShare { index: 0 })
    );
    let _ = tally;
}

#[test]
fn rehearsal_decrypts_one() {
    // The ceremony's mandatory rehearsal (4.2 step 6) goes through the same path: g^1 decrypts to 1.
    let mut rng = ChaCha20Rng::seed_from_u64(400);
    let s = setup(4, 2, &mut rng);
    let ct = vec![Ciphertext::encrypt(&s.table, 1, &random_scalar(&mut rng)).unwrap()];
    let manifest = Manifest::simple(&[(1, 0, 1)]);
    let pds = decrypt_all(&s, &ct, &mut rng);
    let tally = decrypt_tally(&manifest, &ct, &[(3, &pds[3]), (1, &pds[1])], 2, 1).unwrap();
    assert_eq!(tally.counts, vec![vec![1]]);
}

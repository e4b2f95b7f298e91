//! Tally benchmarks (design 4.6): partial decryption, its verification, combination, discrete log and
//! certification, on a 3-of-5 key from a test-only dealer.

use blsttc::SecretKeySet;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::elgamal::Ciphertext;
use urna_keyceremony::group::{g_pow_u64, random_scalar, Point};
use urna_keyceremony::proofs::KeyTable;
use urna_keyceremony::tally::*;

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let sks = SecretKeySet::random(2, &mut rng);
    let pks = sks.public_keys();
    let key = match Point::from_bytes(&pks.public_key().to_bytes()) {
        Ok(k) => KeyTable::new(k),
        Err(e) => panic!("bench setup: {e}"),
    };
    let ctx = TallyContext::new([1u8; 32], 5);
    let aggregate = match Ciphertext::encrypt(&key, 1234, &random_scalar(&mut rng)) {
        Ok(ct) => vec![ct],
        Err(e) => panic!("bench setup: {e}"),
    };
    let shares: Vec<_> = (0..3).map(|j| sks.secret_key_share(j)).collect();
    let keys: Vec<Point> = (0..3).filter_map(|j| key_share(&pks, j).ok()).collect();
    let pds: Vec<PartialDecryption> = (0..3)
        .filter_map(|j| partial_decrypt(&ctx, j, &shares[j], &keys[j], &aggregate, &mut rng).ok())
        .collect();
    assert_eq!(pds.len(), 3);

    c.bench_function("partial_decrypt_1_option", |b| {
        b.iter(|| partial_decrypt(&ctx, 0, &shares[0], &keys[0], black_box(&aggregate), &mut rng))
    });
    c.bench_function("verify_partial_1_option", |b| {
        b.iter(|| verify_partial(&ctx, 0, &keys[0], black_box(&aggregate), &pds[0]))
    });
    c.bench_function("verify_partial_exact_1_option", |b| {
        b.iter(|| verify_partial_exact(&ctx, 0, &keys[0], black_box(&aggregate), &pds[0]))
    });
    let chosen: Vec<_> = pds.iter().enumerate().collect();
    c.bench_function("combine_3_shares_1_option", |b| {
        b.iter(|| combine(black_box(&aggregate), &chosen, 3))
    });
    let target = g_pow_u64(999_983);
    c.bench_function("discrete_log_999983_bound_1e6", |b| {
        b.iter(|| discrete_log(black_box(&target), 1_000_000))
    });
    let table = DlogTable::new(1_000_000);
    c.bench_function("discrete_log_999983_prebuilt_table", |b| {
        b.iter(|| table.as_ref().and_then(|t| t.solve(black_box(&target))))
    });
    let tally = Tally {
        counts: vec![vec![1234]],
    };
    let h = result_hash(&[1u8; 32], &[2u8; 32], &tally);
    let sig_shares: Vec<_> = (0..3)
        .map(|j| sign_result(&sks.secret_key_share(j), &h))
        .collect();
    let chosen_sigs: Vec<_> = sig_shares.iter().enumerate().collect();
    c.bench_function("certify_3_signature_shares", |b| {
        b.iter(|| certify(&pks, black_box(&h), &chosen_sigs))
    });
}

criterion_group! {
    name = tally;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(tally);

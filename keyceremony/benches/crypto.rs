//! Ballot cryptography benchmarks: encrypt and verify one ballot, batch-verify 1,000, aggregate 10,000.
//!
//! Run with `cargo bench -p urna-keyceremony --bench crypto`. Sample sizes are small so the whole run takes
//! a few minutes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rand::rngs::OsRng;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::ballot::{
    encrypt_ballot, verify_ballot, verify_ballots_batch, BallotContext, EncryptedBallot, PlaintextBallot,
};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::elgamal::Accumulator;
use urna_keyceremony::group::{g_mul, random_scalar, Point};
use urna_keyceremony::manifest::Manifest;

fn context(manifest: Manifest, rng: &mut ChaCha20Rng) -> BallotContext {
    let s = random_scalar(rng);
    let k = Point::from_proj(&g_mul(&s)).expect("non-zero key");
    BallotContext::new("bench", [7u8; 32], manifest, k).expect("valid manifest")
}

fn bench_single(c: &mut Criterion, name: &str, manifest: Manifest, selected: Vec<usize>) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ctx = context(manifest, &mut rng);
    let key = CredentialCode::random(&mut rng).signing_key();
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[selected]).expect("valid plaintext");
    let mut group = c.benchmark_group(name);
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    group.bench_function("encrypt", |b| {
        b.iter(|| encrypt_ballot(&ctx, &p, &key, &mut OsRng).expect("encrypts"))
    });
    let (ballot, _) = encrypt_ballot(&ctx, &p, &key, &mut OsRng).expect("encrypts");
    group.bench_function("verify", |b| {
        b.iter(|| verify_ballot(&ctx, &ballot, &mut OsRng).expect("verifies"))
    });
    let json = serde_json::to_vec(&ballot).expect("serializes");
    group.bench_function("decode_json+verify", |b| {
        b.iter(|| {
            let parsed = EncryptedBallot::from_json(&ctx, &json).expect("decodes");
            verify_ballot(&ctx, &parsed, &mut OsRng).expect("verifies")
        })
    });
    group.finish();
}

fn bench_ballots(c: &mut Criterion) {
    bench_single(
        c,
        "5 options, vote for 1",
        Manifest::simple(&[(5, 1, 1)]),
        vec![2],
    );
    bench_single(
        c,
        "20 options, up to 3",
        Manifest::simple(&[(20, 0, 3)]),
        vec![1, 7, 19],
    );
}

fn bench_batch_and_aggregate(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let ctx = context(Manifest::simple(&[(5, 1, 1)]), &mut rng);
    let ballots: Vec<EncryptedBallot> = (0..1000)
        .map(|i| {
            let key = CredentialCode::random(&mut rng).signing_key();
            let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![i % 5]]).expect("valid");
            encrypt_ballot(&ctx, &p, &key, &mut rng).expect("encrypts").0
        })
        .collect();
    let mut group = c.benchmark_group("1000 ballots, 5 options");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("verify_batch", |b| {
        b.iter(|| {
            let r = verify_ballots_batch(&ctx, &ballots, &mut OsRng);
            assert!(r.iter().all(|x| x.is_ok()));
        })
    });
    group.finish();

    // 10,000 ballots' ciphertexts: reuse the 1,000 ten times (aggregation cost does not depend on values).
    let mut group = c.benchmark_group("10000 ballots, 5 options");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("aggregate", |b| {
        b.iter_batched(
            || vec![Accumulator::default(); 5],
            |mut acc| {
                for _ in 0..10 {
                    for ballot in &ballots {
                        for (a, s) in acc.iter_mut().zip(&ballot.contests[0].selections) {
                            a.add(&s.ciphertext);
                        }
                    }
                }
                acc
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_ballots, bench_batch_and_aggregate);
criterion_main!(benches);

//! Key-ceremony costs: one dealer's deal (two polynomials of degree 2, proofs, four encrypted share
//! pairs), the state machine's check of it, and one custodian's decrypt-and-check (5 custodians, q 3).

use blsttc::SecretKey;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use urna_keyceremony::ceremony::{CeremonyState, Custodian, Deadlines};
use urna_keyceremony::election::{Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::manifest::Manifest;

fn setup() -> (CeremonyState, Vec<Custodian>, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let keys: Vec<SecretKey> = (0..5).map(|_| rng.gen()).collect();
    let params = ElectionParams {
        election_id: "bench".into(),
        nonce: rng.gen(),
        manifest: Manifest::simple(&[(2, 0, 1)]),
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("c{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: 3,
        opens_at: 1,
        closes_at: 2,
        min_ballots: 10,
    };
    let deadlines = Deadlines {
        join: 1,
        deal: 2,
        check: 3,
        answer: 4,
        confirm: 5,
    };
    let mut state = CeremonyState::new(&params, deadlines).expect("valid params");
    let custodians: Vec<Custodian> = keys
        .into_iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k, j, &params, &mut rng).expect("registered"))
        .collect();
    for c in &custodians {
        state.apply(&c.join()).expect("join");
    }
    (state, custodians, rng)
}

fn bench_ceremony(c: &mut Criterion) {
    let (state, mut custodians, mut rng) = setup();
    c.bench_function("ceremony/deal+apply+check (n=5, q=3)", |b| {
        b.iter(|| {
            let mut s = state.clone();
            let m = custodians[0].deal(&s, &mut rng).expect("deal");
            s.apply(&m).expect("apply");
            custodians[1].check_dealer(&s, 0).expect("shares match");
        })
    });
    let mut dealt = state.clone();
    let m = custodians[0].deal(&dealt, &mut rng).expect("deal");
    c.bench_function("ceremony/deal only", |b| {
        b.iter(|| custodians[0].deal(&state, &mut rng).expect("deal"))
    });
    c.bench_function("ceremony/apply deal (state machine)", |b| {
        b.iter(|| state.clone().apply(&m).expect("apply"))
    });
    dealt.apply(&m).expect("apply");
    c.bench_function("ceremony/check one dealer (custodian)", |b| {
        b.iter(|| custodians[1].check_dealer(&dealt, 0).expect("shares match"))
    });
}

criterion_group!(benches, bench_ceremony);
criterion_main!(benches);

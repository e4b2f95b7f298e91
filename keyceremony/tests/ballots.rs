//! Ballot encryption, verification, batch verification and challenges, through the public API.

use blsttc::group::ff::Field;
use blsttc::Fr;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use urna_keyceremony::ballot::{
    encrypt_ballot, option_nonce, spoil, verify_ballot, verify_ballots_batch, verify_spoiled, BallotContext,
    BallotError, EncryptedBallot, EncryptedContest, EncryptedSelection, PlaintextBallot, ShapeError,
};
use urna_keyceremony::credential::{CredentialCode, CredentialSignature, PublicCredential};
use urna_keyceremony::elgamal::Ciphertext;
use urna_keyceremony::group::{g, g_mul, random_scalar, DecodeError, Point, Scalar};
use urna_keyceremony::hash::{h, Hash32};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::proofs::RangeProof;

const Q1: Hash32 = [1u8; 32];

fn setup(manifest: Manifest, q: Hash32, rng: &mut ChaCha20Rng) -> (BallotContext, Fr) {
    let s = random_scalar(rng);
    let k = Point::from_proj(&g_mul(&s)).unwrap();
    (BallotContext::new("election-1", q, manifest, k).unwrap(), s)
}

/// Decrypts with the known secret key: the small v with g^v = beta / alpha^s (searching -1..=64).
fn decrypt(s: &Fr, ct: &Ciphertext) -> Option<i64> {
    let m = ct.beta.proj() - ct.alpha.proj() * s;
    (-1i64..=64).find(|&v| {
        let gv = if v < 0 {
            -g_mul(&Fr::from((-v) as u64))
        } else {
            g_mul(&Fr::from(v as u64))
        };
        gv == m
    })
}

fn fr_i64(v: i64) -> Fr {
    if v < 0 {
        -Fr::from((-v) as u64)
    } else {
        Fr::from(v as u64)
    }
}

/// Builds a ballot by hand: option `(c, o)` encrypts `actual[c][o]` (any integer, even 2 or -1), its 0/1
/// proof claims `claimed[c][o]`, and each contest proof claims `counts[c]`. Lies give failing proofs.
fn forge(
    ctx: &BallotContext,
    code: &CredentialCode,
    actual: &[Vec<i64>],
    claimed: &[Vec<u64>],
    counts: &[u64],
    rng: &mut ChaCha20Rng,
) -> EncryptedBallot {
    let cred = code.public();
    let mut contests = Vec::new();
    for (ci, c) in ctx.manifest().contests.iter().enumerate() {
        let mut selections = Vec::new();
        let mut rho_sum = Fr::zero();
        let mut a_sum = g() - g();
        let mut b_sum = g() - g();
        for oi in 0..c.options.len() {
            let rho = random_scalar(rng);
            let alpha = Point::from_proj(&g_mul(&rho)).unwrap();
            let beta =
                Point::from_proj(&(g_mul(&fr_i64(actual[ci][oi])) + ctx.key().table.mul(&rho))).unwrap();
            let proof = RangeProof::prove(
                &ctx.selection_context(ci, oi, &cred),
                ctx.key(),
                &alpha,
                &beta,
                0,
                1,
                claimed[ci][oi],
                &rho,
                rng,
            )
            .unwrap();
            rho_sum += rho;
            a_sum += alpha.proj();
            b_sum += beta.proj();
            selections.push(EncryptedSelection {
                ciphertext: Ciphertext { alpha, beta },
                proof,
            });
        }
        let (pa, pb) = (
            Point::from_proj(&a_sum).unwrap(),
            Point::from_proj(&b_sum).unwrap(),
        );
        let proof = RangeProof::prove(
            &ctx.contest_context(ci, &cred),
            ctx.key(),
            &pa,
            &pb,
            c.min_selections,
            c.max_selections,
            counts[ci],
            &rho_sum,
            rng,
        )
        .unwrap();
        contests.push(EncryptedContest { selections, proof });
    }
    let key = code.signing_key();
    let mut b = EncryptedBallot {
        election_id: ctx.election_id().to_string(),
        credential: cred,
        contests,
        signature: key.sign(&[0u8; 32]),
    };
    b.sign(ctx, &key);
    b
}

fn roundtrip(manifest: Manifest, selected: Vec<Vec<usize>>, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (ctx, s) = setup(manifest, Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    let p = PlaintextBallot::from_selected(ctx.manifest(), &selected).unwrap();
    let (b, secrets) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
    assert_eq!(secrets.plaintext, p);
    assert_eq!(b.credential, code.public());
    let h_b = verify_ballot(&ctx, &b, &mut rng).unwrap();
    assert_eq!(h_b, b.hash(&ctx));
    for (ci, c) in b.contests.iter().enumerate() {
        for (oi, sel) in c.selections.iter().enumerate() {
            assert_eq!(decrypt(&s, &sel.ciphertext), Some(p.contests[ci][oi] as i64));
        }
    }
    let json = serde_json::to_vec(&b).unwrap();
    let back = EncryptedBallot::from_json(&ctx, &json).unwrap();
    assert_eq!(back, b);
    assert_eq!(verify_ballot(&ctx, &back, &mut rng), Ok(h_b));
}

#[test]
fn roundtrip_five_options_vote_for_one() {
    for choice in 0..5 {
        roundtrip(
            Manifest::simple(&[(5, 1, 1)]),
            vec![vec![choice]],
            100 + choice as u64,
        );
    }
}

#[test]
fn roundtrip_eight_options_zero_to_three() {
    let m = || Manifest::simple(&[(8, 0, 3)]);
    roundtrip(m(), vec![vec![]], 1);
    roundtrip(m(), vec![vec![7]], 2);
    roundtrip(m(), vec![vec![0, 4]], 3);
    roundtrip(m(), vec![vec![1, 2, 6]], 4);
}

#[test]
fn roundtrip_several_contests() {
    roundtrip(
        Manifest::simple(&[(5, 1, 1), (8, 0, 3), (2, 0, 1), (3, 3, 3)]),
        vec![vec![4], vec![0, 7], vec![], vec![0, 1, 2]],
        5,
    );
}

#[test]
fn fresh_master_nonce_per_encryption() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (ctx, _) = setup(Manifest::simple(&[(3, 1, 1)]), Q1, &mut rng);
    let key = CredentialCode::random(&mut rng).signing_key();
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![0]]).unwrap();
    let (b1, s1) = encrypt_ballot(&ctx, &p, &key, &mut rng).unwrap();
    let (b2, s2) = encrypt_ballot(&ctx, &p, &key, &mut rng).unwrap();
    assert_ne!(s1.master_nonce, s2.master_nonce);
    assert!(b1.alphas().zip(b2.alphas()).all(|(a, b)| a != b));
    assert_eq!(
        b1.contests[0].selections[1].ciphertext.alpha,
        Point::from_proj(&g_mul(&option_nonce(&s1.master_nonce, 0, 1))).unwrap()
    );
}

#[test]
fn forger_makes_valid_ballots_when_it_tells_the_truth() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (ctx, _) = setup(Manifest::simple(&[(5, 1, 1)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    let b = forge(
        &ctx,
        &code,
        &[vec![0, 1, 0, 0, 0]],
        &[vec![0, 1, 0, 0, 0]],
        &[1],
        &mut rng,
    );
    assert!(verify_ballot(&ctx, &b, &mut rng).is_ok());
}

#[test]
fn option_encrypting_two_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (ctx, s) = setup(Manifest::simple(&[(5, 1, 2)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    // Option 3 encrypts 2; its proof claims 1; the contest count 2 is true (and in range).
    let b = forge(
        &ctx,
        &code,
        &[vec![0, 0, 0, 2, 0]],
        &[vec![0, 0, 0, 1, 0]],
        &[2],
        &mut rng,
    );
    assert_eq!(decrypt(&s, &b.contests[0].selections[3].ciphertext), Some(2));
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 3
        })
    );
    // Claiming 0 instead is refused just the same.
    let b = forge(
        &ctx,
        &code,
        &[vec![0, 0, 0, 2, 0]],
        &[vec![0, 0, 0, 0, 0]],
        &[2],
        &mut rng,
    );
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 3
        })
    );
}

#[test]
fn option_encrypting_minus_one_is_refused_even_when_the_count_is_right() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (ctx, s) = setup(Manifest::simple(&[(5, 1, 1)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    // 1 + 1 - 1 = 1 vote in total, so the contest proof is true; only the 0/1 proof of option 2 lies.
    let b = forge(
        &ctx,
        &code,
        &[vec![1, 1, -1, 0, 0]],
        &[vec![1, 1, 0, 0, 0]],
        &[1],
        &mut rng,
    );
    assert_eq!(decrypt(&s, &b.contests[0].selections[2].ciphertext), Some(-1));
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 2
        })
    );
}

#[test]
fn over_and_under_votes_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let (ctx, _) = setup(Manifest::simple(&[(5, 1, 1), (4, 1, 2)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    // The client refuses to encrypt them.
    let over = PlaintextBallot {
        contests: vec![vec![1, 1, 0, 0, 0], vec![1, 0, 0, 0]],
    };
    assert_eq!(
        encrypt_ballot(&ctx, &over, &code.signing_key(), &mut rng).err(),
        Some(BallotError::SelectionCount {
            contest: 0,
            count: 2,
            min: 1,
            max: 1
        })
    );
    // Hand-made: honest 0/1 proofs, a lying count proof.
    let ok_second = vec![1, 0, 0, 0];
    let b = forge(
        &ctx,
        &code,
        &[vec![1, 1, 0, 0, 0], ok_second.clone()],
        &[vec![1, 1, 0, 0, 0], vec![1, 0, 0, 0]],
        &[1, 1],
        &mut rng,
    );
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::ContestProof { contest: 0 })
    );
    let b = forge(
        &ctx,
        &code,
        &[vec![1, 0, 0, 0, 0], vec![1, 1, 1, 0]],
        &[vec![1, 0, 0, 0, 0], vec![1, 1, 1, 0]],
        &[1, 2],
        &mut rng,
    );
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::ContestProof { contest: 1 })
    );
    // Under-vote: nothing selected where one is required.
    let b = forge(
        &ctx,
        &code,
        &[vec![0, 0, 0, 0, 0], vec![0, 0, 0, 1]],
        &[vec![0, 0, 0, 0, 0], vec![0, 0, 0, 1]],
        &[1, 1],
        &mut rng,
    );
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::ContestProof { contest: 0 })
    );
}

struct Fixture {
    ctx: BallotContext,
    code: CredentialCode,
    other: CredentialCode,
    ballot: EncryptedBallot,
    rng: ChaCha20Rng,
}

fn fixture(seed: u64) -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (ctx, _) = setup(Manifest::simple(&[(5, 1, 1), (3, 0, 2)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    let other = CredentialCode::random(&mut rng);
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![1], vec![0, 2]]).unwrap();
    let (ballot, _) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
    Fixture {
        ctx,
        code,
        other,
        ballot,
        rng,
    }
}

#[test]
fn proof_copied_from_another_credentials_ballot_is_refused() {
    let Fixture {
        ctx,
        code,
        other,
        ballot,
        mut rng,
    } = fixture(20);
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![1], vec![0, 2]]).unwrap();
    let (theirs, _) = encrypt_ballot(&ctx, &p, &other.signing_key(), &mut rng).unwrap();
    // Their ciphertext and proof at (0, 1), in our ballot, signed by us.
    let mut b = ballot.clone();
    b.contests[0].selections[1] = theirs.contests[0].selections[1].clone();
    b.sign(&ctx, &code.signing_key());
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 1
        })
    );
    // Their whole ballot, re-signed under our credential.
    let mut b = theirs.clone();
    b.sign(&ctx, &code.signing_key());
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 0
        })
    );
}

#[test]
fn ballot_resigned_under_another_credential_is_refused() {
    let Fixture {
        ctx,
        other,
        ballot,
        mut rng,
        ..
    } = fixture(21);
    let mut b = ballot.clone();
    b.sign(&ctx, &other.signing_key());
    assert_eq!(b.credential, other.public());
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 0
        })
    );
}

#[test]
fn proof_from_another_election_is_refused() {
    let Fixture {
        ctx, code, mut rng, ..
    } = fixture(22);
    // Same id, key and manifest; another Q'.
    let other_ctx =
        BallotContext::new("election-1", [2u8; 32], ctx.manifest().clone(), ctx.key().key).unwrap();
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![1], vec![0, 2]]).unwrap();
    let (b, _) = encrypt_ballot(&other_ctx, &p, &code.signing_key(), &mut rng).unwrap();
    assert!(verify_ballot(&other_ctx, &b, &mut rng).is_ok());
    assert_eq!(verify_ballot(&ctx, &b, &mut rng), Err(BallotError::BadSignature));
    let mut resigned = b.clone();
    resigned.sign(&ctx, &code.signing_key());
    assert_eq!(
        verify_ballot(&ctx, &resigned, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 0
        })
    );
    // Another election id altogether.
    let third = BallotContext::new("election-2", Q1, ctx.manifest().clone(), ctx.key().key).unwrap();
    assert_eq!(
        verify_ballot(&third, &b, &mut rng),
        Err(BallotError::WrongElection {
            expected: "election-2".into(),
            got: "election-1".into()
        })
    );
}

#[test]
fn proof_moved_to_another_position_is_refused() {
    let Fixture {
        ctx,
        code,
        ballot,
        mut rng,
        ..
    } = fixture(23);
    let mut b = ballot.clone();
    b.contests[0].selections.swap(0, 1);
    b.sign(&ctx, &code.signing_key());
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 0
        })
    );
}

#[test]
fn tampering_is_refused() {
    let Fixture {
        ctx,
        code,
        ballot,
        mut rng,
        ..
    } = fixture(24);
    let key = code.signing_key();
    // Ciphertext: signature first, then (re-signed) the proof.
    let mut b = ballot.clone();
    let ct = &mut b.contests[1].selections[2].ciphertext;
    ct.beta = Point::from_proj(&(ct.beta.proj() + g())).unwrap();
    assert_eq!(verify_ballot(&ctx, &b, &mut rng), Err(BallotError::BadSignature));
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 1,
            option: 2
        })
    );
    // Branch challenges shifted so their sum still matches: the group equations catch it.
    let mut b = ballot.clone();
    let br = &mut b.contests[0].selections[4].proof.branches;
    br[0].challenge = Scalar(br[0].challenge.0 + Fr::one());
    br[1].challenge = Scalar(br[1].challenge.0 - Fr::one());
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 4
        })
    );
    // One branch challenge changed: the sum check catches it.
    let mut b = ballot.clone();
    let br = &mut b.contests[0].selections[0].proof.branches;
    br[1].challenge = Scalar(br[1].challenge.0 + Fr::one());
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 0,
            option: 0
        })
    );
    // A response.
    let mut b = ballot.clone();
    let br = &mut b.contests[1].selections[1].proof.branches;
    br[0].response = Scalar(br[0].response.0 + Fr::one());
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::SelectionProof {
            contest: 1,
            option: 1
        })
    );
    // A contest proof's response and commitment.
    let mut b = ballot.clone();
    let br = &mut b.contests[1].proof.branches;
    br[2].response = Scalar(br[2].response.0 + Fr::one());
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::ContestProof { contest: 1 })
    );
    let mut b = ballot.clone();
    let br = &mut b.contests[0].proof.branches;
    br[0].a = Point::from_proj(&(br[0].a.proj() + g())).unwrap();
    b.sign(&ctx, &key);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::ContestProof { contest: 0 })
    );
}

#[test]
fn bad_signatures_are_refused() {
    let Fixture {
        ctx,
        other,
        ballot,
        mut rng,
        ..
    } = fixture(25);
    let mut b = ballot.clone();
    let mut sig = b.signature.to_bytes();
    sig[10] ^= 1;
    b.signature = CredentialSignature::from_bytes(&sig).unwrap();
    assert_eq!(verify_ballot(&ctx, &b, &mut rng), Err(BallotError::BadSignature));
    // The right hash signed by someone else's key.
    let mut b = ballot.clone();
    b.signature = other.signing_key().sign(&ballot.hash(&ctx));
    assert_eq!(verify_ballot(&ctx, &b, &mut rng), Err(BallotError::BadSignature));
    // A non-canonical s (s + l) is refused by verify_strict.
    let mut b = ballot.clone();
    let mut sig = ballot.signature.to_bytes();
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let t = sig[32 + i] as u16 + l[i] as u16 + carry;
        sig[32 + i] = t as u8;
        carry = t >> 8;
    }
    b.signature = CredentialSignature::from_bytes(&sig).unwrap();
    assert_eq!(verify_ballot(&ctx, &b, &mut rng), Err(BallotError::BadSignature));
}

#[test]
fn shape_is_checked_before_anything_else() {
    let Fixture {
        ctx, ballot, mut rng, ..
    } = fixture(26);
    let mut b = ballot.clone();
    b.contests[1].selections.pop();
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::Shape(ShapeError::OptionCount {
            contest: 1,
            expected: 3,
            got: 2
        }))
    );
    let mut b = ballot.clone();
    b.contests.push(b.contests[0].clone());
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::Shape(ShapeError::ContestCount {
            expected: 2,
            got: 3
        }))
    );
    let mut b = ballot.clone();
    let extra = b.contests[0].selections[2].proof.branches[0].clone();
    b.contests[0].selections[2].proof.branches.push(extra);
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::Shape(ShapeError::SelectionBranches {
            contest: 0,
            option: 2,
            got: 3
        }))
    );
    let mut b = ballot.clone();
    b.contests[1].proof.branches.pop();
    assert_eq!(
        verify_ballot(&ctx, &b, &mut rng),
        Err(BallotError::Shape(ShapeError::ContestBranches {
            contest: 1,
            expected: 3,
            got: 2
        }))
    );
}

/// The first compressed encoding (x = small counter) that fails to decode with `want`.
fn bad_point(want: DecodeError) -> String {
    for i in 0u32..10_000 {
        let mut bytes = [0u8; 48];
        bytes[0] = 0x80;
        bytes[44..].copy_from_slice(&i.to_be_bytes());
        if Point::from_bytes(&bytes) == Err(want.clone()) {
            return hex::encode(bytes);
        }
    }
    panic!("no such encoding found");
}

fn decode_with(ctx: &BallotContext, ballot: &EncryptedBallot, edit: impl FnOnce(&mut Value)) -> BallotError {
    let mut v = serde_json::to_value(ballot).unwrap();
    edit(&mut v);
    EncryptedBallot::from_json(ctx, &serde_json::to_vec(&v).unwrap()).unwrap_err()
}

fn assert_decode_error(err: BallotError, expected: &str) {
    match err {
        BallotError::Decode(msg) => assert!(msg.contains(expected), "{msg:?} should mention {expected:?}"),
        other => panic!("expected a decode error mentioning {expected:?}, got {other:?}"),
    }
}

#[test]
fn bad_encodings_are_refused_with_typed_errors() {
    let Fixture { ctx, ballot, .. } = fixture(27);
    let alpha = |v: &mut Value| v["contests"][0]["selections"][0]["ciphertext"]["alpha"].take();
    let set_alpha = |v: &mut Value, s: String| {
        v["contests"][0]["selections"][0]["ciphertext"]["alpha"] = Value::String(s);
    };
    // Not in the subgroup; not on the curve.
    let off_subgroup = bad_point(DecodeError::NotInSubgroup);
    let e = decode_with(&ctx, &ballot, |v| set_alpha(v, off_subgroup));
    assert_decode_error(e, &DecodeError::NotInSubgroup.to_string());
    let off_curve = bad_point(DecodeError::NotOnCurve);
    let e = decode_with(&ctx, &ballot, |v| set_alpha(v, off_curve));
    assert_decode_error(e, &DecodeError::NotOnCurve.to_string());
    // The identity.
    let e = decode_with(&ctx, &ballot, |v| {
        let mut id = vec![0u8; 48];
        id[0] = 0xc0;
        v["contests"][1]["proof"]["branches"][0]["b"] = Value::String(hex::encode(id));
    });
    assert_decode_error(e, &DecodeError::Identity.to_string());
    // Truncated and oversized points.
    let e = decode_with(&ctx, &ballot, |v| {
        let s = alpha(v).as_str().unwrap().to_string();
        set_alpha(v, s[..94].to_string());
    });
    assert_decode_error(
        e,
        &DecodeError::WrongLength {
            expected: 48,
            got: 47,
        }
        .to_string(),
    );
    let e = decode_with(&ctx, &ballot, |v| {
        let s = alpha(v).as_str().unwrap().to_string();
        set_alpha(v, s + "00");
    });
    assert_decode_error(
        e,
        &DecodeError::WrongLength {
            expected: 48,
            got: 49,
        }
        .to_string(),
    );
    // Non-canonical scalars: r itself and 2^256 - 1.
    for bad in [
        "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001".to_string(),
        "ff".repeat(32),
    ] {
        let e = decode_with(&ctx, &ballot, |v| {
            v["contests"][0]["selections"][3]["proof"]["branches"][1]["response"] = Value::String(bad);
        });
        assert_decode_error(e, &DecodeError::NonCanonicalScalar.to_string());
    }
    // A weak (small-order) credential; a truncated signature; an unknown field.
    let e = decode_with(&ctx, &ballot, |v| {
        v["credential"] = Value::String(format!("01{}", "00".repeat(31)));
    });
    assert_decode_error(e, "weak");
    let e = decode_with(&ctx, &ballot, |v| {
        let s = v["signature"].as_str().unwrap().to_string();
        v["signature"] = Value::String(s[..126].to_string());
    });
    assert_decode_error(e, "wrong length");
    let e = decode_with(&ctx, &ballot, |v| {
        v["extra"] = Value::Bool(true);
    });
    assert_decode_error(e, "unknown field");
    // Truncated JSON; oversized JSON.
    let json = serde_json::to_vec(&ballot).unwrap();
    assert!(matches!(
        EncryptedBallot::from_json(&ctx, &json[..json.len() / 2]),
        Err(BallotError::Decode(_))
    ));
    let mut big = json.clone();
    big.resize(ctx.max_json_bytes() + 1, b' ');
    assert_eq!(
        EncryptedBallot::from_json(&ctx, &big),
        Err(BallotError::TooLarge {
            limit: ctx.max_json_bytes(),
            got: ctx.max_json_bytes() + 1
        })
    );
    // A valid ballot is well within the limit, even pretty-printed.
    assert!(json.len() * 2 < ctx.max_json_bytes());
    let pretty = serde_json::to_vec_pretty(&ballot).unwrap();
    assert_eq!(EncryptedBallot::from_json(&ctx, &pretty).unwrap(), ballot);
}

#[test]
fn batch_rejects_exactly_what_single_verification_rejects() {
    let Fixture {
        ctx,
        code,
        other,
        ballot,
        mut rng,
    } = fixture(28);
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![3], vec![]]).unwrap();
    let mut ballots = Vec::new();
    for i in 0..12 {
        let c = CredentialCode::random(&mut rng);
        let (mut b, _) = encrypt_ballot(&ctx, &p, &c.signing_key(), &mut rng).unwrap();
        match i % 6 {
            1 => b.signature = other.signing_key().sign(&b.hash(&ctx)),
            2 => {
                let br = &mut b.contests[1].selections[1].proof.branches;
                br[0].response = Scalar(br[0].response.0 + Fr::one());
                b.sign(&ctx, &c.signing_key());
            }
            3 => {
                b = forge(
                    &ctx,
                    &c,
                    &[vec![1, 1, 0, 0, 0], vec![0, 0, 0]],
                    &[vec![1, 1, 0, 0, 0], vec![0, 0, 0]],
                    &[1, 0],
                    &mut rng,
                )
            }
            4 => b.election_id = "elsewhere".into(),
            _ => {}
        }
        ballots.push(b);
    }
    ballots.push(ballot.clone());
    let mut copied = ballot.clone();
    copied.sign(&ctx, &code.signing_key());
    ballots.push(copied);
    let single: Vec<_> = ballots.iter().map(|b| verify_ballot(&ctx, b, &mut rng)).collect();
    let batch = verify_ballots_batch(&ctx, &ballots, &mut rng);
    assert_eq!(single, batch);
    assert_eq!(batch.iter().filter(|r| r.is_ok()).count(), 2 * 2 + 2);
    assert!(matches!(
        batch[2],
        Err(BallotError::SelectionProof {
            contest: 1,
            option: 1
        })
    ));
    assert!(matches!(batch[3], Err(BallotError::ContestProof { contest: 0 })));
    // An all-good batch passes in one multi-exponentiation.
    let good: Vec<_> = ballots
        .iter()
        .zip(&single)
        .filter(|(_, r)| r.is_ok())
        .map(|(b, _)| b.clone())
        .collect();
    assert!(verify_ballots_batch(&ctx, &good, &mut rng)
        .iter()
        .all(|r| r.is_ok()));
    assert!(verify_ballots_batch(&ctx, &[], &mut rng).is_empty());
}

#[test]
fn spoiled_ballots_open_and_are_checked() {
    let mut rng = ChaCha20Rng::seed_from_u64(29);
    let (ctx, _) = setup(Manifest::simple(&[(5, 1, 1), (3, 0, 2)]), Q1, &mut rng);
    let code = CredentialCode::random(&mut rng);
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![2], vec![1]]).unwrap();
    let (b, secrets) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
    let spoiled = spoil(&b, &secrets);
    let json = serde_json::to_string(&spoiled).unwrap();
    assert!(
        !json.contains(&code.public().to_hex()),
        "a spoiled ballot names no credential"
    );
    let back: urna_keyceremony::ballot::SpoiledBallot = serde_json::from_str(&json).unwrap();
    assert_eq!(verify_spoiled(&ctx, &back), Ok(()));
    // A client that encrypted something else than it shows is caught.
    let mut lie = spoiled.clone();
    lie.plaintext.contests[0] = vec![0, 0, 0, 1, 0];
    assert_eq!(
        verify_spoiled(&ctx, &lie),
        Err(BallotError::SpoiledMismatch {
            contest: 0,
            option: 2
        })
    );
    let mut lie = spoiled.clone();
    lie.master_nonce[0] ^= 1;
    assert_eq!(
        verify_spoiled(&ctx, &lie),
        Err(BallotError::SpoiledMismatch {
            contest: 0,
            option: 0
        })
    );
    let mut lie = spoiled.clone();
    lie.ciphertexts[1].swap(0, 2);
    assert!(matches!(
        verify_spoiled(&ctx, &lie),
        Err(BallotError::SpoiledMismatch { contest: 1, .. })
    ));
    let mut lie = spoiled.clone();
    lie.plaintext.contests[0] = vec![1, 0, 1, 0, 0];
    assert!(matches!(
        verify_spoiled(&ctx, &lie),
        Err(BallotError::SelectionCount { contest: 0, .. })
    ));
    let mut lie = spoiled;
    lie.election_id = "other".into();
    assert!(matches!(
        verify_spoiled(&ctx, &lie),
        Err(BallotError::WrongElection { .. })
    ));
}

// ---- property tests ----

/// Per contest: (options, two bounds, a selection mask); turned into a valid manifest and vote.
fn manifest_and_vote(spec: &[(usize, usize, usize, u8)]) -> (Manifest, Vec<Vec<usize>>) {
    let mut contests = Vec::new();
    let mut votes = Vec::new();
    for &(n, x, y, mask) in spec {
        let (x, y) = (x % (n + 1), y % (n + 1));
        let (min, max) = (x.min(y), x.max(y));
        let mut chosen: Vec<bool> = (0..n).map(|i| mask >> i & 1 == 1).collect();
        let mut count = chosen.iter().filter(|c| **c).count();
        for c in chosen.iter_mut() {
            if count < min && !*c {
                *c = true;
                count += 1;
            }
        }
        for c in chosen.iter_mut() {
            if count > max && *c {
                *c = false;
                count -= 1;
            }
        }
        contests.push((n, min as u64, max as u64));
        votes.push((0..n).filter(|&i| chosen[i]).collect());
    }
    (Manifest::simple(&contests), votes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_ballots_verify_and_survive_json(
        spec in proptest::collection::vec((1usize..=6, 0usize..=6, 0usize..=6, any::<u8>()), 1..=3),
        seed in any::<u64>(),
    ) {
        let (manifest, votes) = manifest_and_vote(&spec);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (ctx, s) = setup(manifest, Q1, &mut rng);
        let code = CredentialCode::random(&mut rng);
        let p = PlaintextBallot::from_selected(ctx.manifest(), &votes).unwrap();
        let (b, secrets) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
        let h_b = verify_ballot(&ctx, &b, &mut rng);
        prop_assert_eq!(h_b, Ok(b.hash(&ctx)));
        let back = EncryptedBallot::from_json(&ctx, &serde_json::to_vec(&b).unwrap()).unwrap();
        prop_assert_eq!(&back, &b);
        prop_assert_eq!(verify_ballot(&ctx, &back, &mut rng), Ok(b.hash(&ctx)));
        prop_assert_eq!(verify_spoiled(&ctx, &spoil(&b, &secrets)), Ok(()));
        for (ci, c) in b.contests.iter().enumerate() {
            for (oi, sel) in c.selections.iter().enumerate() {
                prop_assert_eq!(decrypt(&s, &sel.ciphertext), Some(p.contests[ci][oi] as i64));
            }
        }
    }
}

// ---- known-answer vector ----

fn vector() -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(0x75726e61_62616c6c); // "urnaball"
    let s = random_scalar(&mut rng);
    let k = Point::from_proj(&g_mul(&s)).unwrap();
    let code = CredentialCode::random(&mut rng);
    let q_ext = h("urna/v1/test-vector", &[b"ballot_v1"]);
    let manifest = Manifest::simple(&[(5, 1, 1), (3, 0, 2)]);
    let ctx = BallotContext::new("kat-election", q_ext, manifest.clone(), k).unwrap();
    let p = PlaintextBallot::from_selected(&manifest, &[vec![3], vec![0, 2]]).unwrap();
    let (ballot, secrets) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut rng).unwrap();
    let h_b = verify_ballot(&ctx, &ballot, &mut rng).unwrap();
    let roll: Vec<PublicCredential> = vec![code.public()];
    let v = serde_json::json!({
        "description": "urna ballot v1 known-answer vector: ChaCha20Rng seed 0x75726e6162616c6c drawn in order: secret key, credential code (20 bytes), then encrypt_ballot (master nonce, proofs in ballot order)",
        "election_id": ctx.election_id(),
        "secret_key": Scalar(s).to_hex(),
        "election_key": k.to_hex(),
        "extended_hash": hex::encode(q_ext),
        "manifest": manifest,
        "credential_code": code.to_printable(),
        "public_credential": code.public(),
        "roll_hash": hex::encode(urna_keyceremony::credential::roll_hash(&roll)),
        "plaintext": p,
        "master_nonce": hex::encode(secrets.master_nonce),
        "ballot": ballot,
        "ballot_hash": hex::encode(h_b),
    });
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

#[test]
fn known_answer_vector() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/ballot_v1.json");
    let fresh = vector();
    assert_eq!(fresh, vector(), "generation must be deterministic");
    if std::env::var("URNA_UPDATE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(&path).expect("vector file (regenerate with URNA_UPDATE_VECTORS=1)");
    assert!(
        stored == fresh,
        "ballot_v1.json differs from the regenerated vector"
    );
    // The stored ballot verifies on its own terms: parse everything back from the file.
    let v: Value = serde_json::from_str(&stored).unwrap();
    let manifest: Manifest = serde_json::from_value(v["manifest"].clone()).unwrap();
    let k = Point::from_hex(v["election_key"].as_str().unwrap()).unwrap();
    let q: [u8; 32] = hex::decode(v["extended_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let ctx = BallotContext::new(v["election_id"].as_str().unwrap(), q, manifest, k).unwrap();
    let ballot = EncryptedBallot::from_json(&ctx, v["ballot"].to_string().as_bytes()).unwrap();
    let code = CredentialCode::parse(v["credential_code"].as_str().unwrap()).unwrap();
    assert_eq!(ballot.credential, code.public());
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let h_b = verify_ballot(&ctx, &ballot, &mut rng).unwrap();
    assert_eq!(hex::encode(h_b), v["ballot_hash"].as_str().unwrap());
}

//! Unit tests of apply against a temporary sled store: phase rules, window, roll, one ballot per
//! credential with the idempotent retry, duplicate ciphertexts, and a whole election in memory.

use std::sync::Arc;

use blsttc::SecretKey;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use rand::rngs::OsRng;
use rand::Rng;
use urna_client::wire::{ElectionPhase, SharePurpose, SignedPartialDecryption};
use urna_keyceremony::ballot::{encrypt_ballot, BallotContext, PlaintextBallot};
use urna_keyceremony::blsttc;
use urna_keyceremony::ceremony::{Custodian, CustodianSecrets, Deadlines, Phase as CPhase};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::election::{Custodian as Registered, ElectionParams, IdentityKey};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::tally::{self, TallyContext, WireSignatureShare};

use super::state::{self, ElectionRecord};
use super::ElectionApp;
use crate::command::{Command, Reply};
use crate::store::{self, Outcome, Request, SmHandle, StateMachineStore, TypeConfig};

const ID: &str = "unit-election";

struct Harness {
    _dir: tempfile::TempDir,
    sm: StateMachineStore,
    handle: SmHandle,
    index: u64,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = store::open(&dir.path().join("db"), Arc::new(ElectionApp)).unwrap();
        Harness {
            _dir: dir,
            sm: s.sm,
            handle: s.handle,
            index: 0,
        }
    }

    async fn apply(&mut self, command: Command, time: u64) -> Outcome {
        self.index += 1;
        let e: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Request {
                command,
                proposer: "tester".into(),
                stamp_ms: time,
            }),
        };
        let mut out = self.sm.apply(vec![e]).await.unwrap();
        out.remove(0).outcome
    }

    async fn ok(&mut self, command: Command, time: u64) -> Reply {
        match self.apply(command, time).await {
            Outcome::Applied(r) => r,
            other => panic!("expected applied, got {other:?}"),
        }
    }

    async fn refused(&mut self, command: Command, time: u64) -> String {
        match self.apply(command, time).await {
            Outcome::Rejected { code, .. } => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn record(&self) -> ElectionRecord {
        state::record(&self.handle, ID).unwrap().unwrap()
    }

    fn count(&self) -> u64 {
        state::box_state(&self.handle, ID).unwrap().map_or(0, |b| b.count)
    }
}

struct Setup {
    params: ElectionParams,
    keys: Vec<SecretKey>,
    codes: Vec<CredentialCode>,
}

fn setup(n: usize, q: usize, voters: usize) -> Setup {
    let keys: Vec<SecretKey> = (0..n).map(|_| OsRng.gen()).collect();
    let codes: Vec<CredentialCode> = (0..voters).map(|_| CredentialCode::random(&mut OsRng)).collect();
    let params = ElectionParams {
        election_id: ID.into(),
        nonce: OsRng.gen(),
        manifest: Manifest::simple(&[(2, 1, 1), (3, 0, 2)]),
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
        min_ballots: 2,
    };
    Setup { params, keys, codes }
}

const DEADLINES: Deadlines = Deadlines {
    join: 5_000,
    deal: 6_000,
    check: 7_000,
    answer: 8_000,
    confirm: 9_000,
};

fn msg(id: &str, m: &urna_keyceremony::ceremony::SignedCeremonyMessage) -> Command {
    Command::Ceremony {
        election_id: id.into(),
        message: serde_json::to_string(m).unwrap(),
    }
}

/// Runs the whole ceremony and rehearsal through apply; returns the custodians' secrets.
async fn ceremony(h: &mut Harness, s: &Setup, time: u64) -> Vec<CustodianSecrets> {
    let mut custodians: Vec<Custodian> = s
        .keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &s.params, &mut OsRng).unwrap())
        .collect();
    let cs = |h: &Harness| state::ceremony(&h.handle, ID).unwrap().unwrap();
    for c in &custodians {
        h.ok(msg(ID, &c.join()), time).await;
    }
    assert_eq!(h.record().phase, ElectionPhase::KeyCeremony);
    for c in custodians.iter_mut() {
        let m = c.deal(&cs(h), &mut OsRng).unwrap();
        h.ok(msg(ID, &m), time).await;
    }
    for c in &custodians {
        for m in c.check(&cs(h)) {
            h.ok(msg(ID, &m), time).await;
        }
    }
    let mut secrets = Vec::new();
    for c in &custodians {
        let st = cs(h);
        let sec = c.derive(&st).unwrap();
        h.ok(msg(ID, &c.confirm(&st, &sec, &mut OsRng).unwrap()), time)
            .await;
        secrets.push(sec);
    }
    let st = cs(h);
    assert_eq!(st.phase(), CPhase::Rehearsal);
    let ct = *st.rehearsal().unwrap();
    let ctx = TallyContext::new(*st.base_hash(), s.keys.len());
    let pks = &st.keys().unwrap().encryption;
    for (j, sec) in secrets.iter().enumerate().take(s.params.quorum) {
        let kj = tally::key_share(pks, j).unwrap();
        let pd = tally::partial_decrypt(&ctx, j, &sec.encryption_share, &kj, &[ct], &mut OsRng).unwrap();
        let signed =
            SignedPartialDecryption::sign(&s.keys[j], st.base_hash(), SharePurpose::Rehearsal, j, pd);
        h.ok(
            Command::RehearsalShare {
                election_id: ID.into(),
                custodian: j,
                partial: signed.partial,
                signature: signed.signature,
            },
            time,
        )
        .await;
    }
    assert_eq!(h.record().phase, ElectionPhase::Ready);
    secrets
}

fn ballot_ctx(h: &Harness) -> BallotContext {
    let rec = h.record();
    let st = state::ceremony(&h.handle, ID).unwrap().unwrap();
    BallotContext::new(
        ID,
        rec.extended_hash.unwrap(),
        rec.params.manifest.clone(),
        st.keys().unwrap().encryption_key,
    )
    .unwrap()
}

fn cast_cmd(ctx: &BallotContext, code: &CredentialCode, sel: &[Vec<usize>]) -> Command {
    let p = PlaintextBallot::from_selected(ctx.manifest(), sel).unwrap();
    let (b, _) = encrypt_ballot(ctx, &p, &code.signing_key(), &mut OsRng).unwrap();
    Command::Cast {
        election_id: ID.into(),
        ballot_hash: b.hash(ctx),
        ballot: serde_json::to_string(&b).unwrap(),
    }
}

#[tokio::test]
async fn phases_window_roll_and_idempotent_retry() {
    let mut h = Harness::new();
    let s = setup(3, 2, 4);
    let roll: Vec<_> = s.codes[..3].iter().map(|c| c.public()).collect();
    let unknown = Command::Open {
        election_id: "nope".into(),
    };
    assert_eq!(h.refused(unknown, 0).await, "unknown_election");
    let create = Command::CreateElection {
        params: s.params.clone(),
        deadlines: DEADLINES,
        roll: roll[..2].to_vec(),
    };
    h.ok(create.clone(), 0).await;
    assert_eq!(h.refused(create, 0).await, "election_exists");
    assert_eq!(h.record().roll_count, 2);
    // The roll grows until Ready; duplicates are ignored.
    h.ok(
        Command::AddRoll {
            election_id: ID.into(),
            credentials: roll.clone(),
        },
        0,
    )
    .await;
    assert_eq!(h.record().roll_count, 3);
    let open = Command::Open {
        election_id: ID.into(),
    };
    assert_eq!(h.refused(open.clone(), 0).await, "wrong_phase");
    // Advance before the join deadline is refused.
    let adv = Command::Advance {
        election_id: ID.into(),
    };
    assert_eq!(h.refused(adv, 100).await, "deadline_not_reached");

    let secrets = ceremony(&mut h, &s, 1_000).await;
    let rec = h.record();
    assert!(rec.extended_hash.is_some() && rec.roll_hash.is_some());
    let more = Command::AddRoll {
        election_id: ID.into(),
        credentials: vec![s.codes[3].public()],
    };
    assert_eq!(h.refused(more, 1_000).await, "roll_frozen");

    let ctx = ballot_ctx(&h);
    let b0 = cast_cmd(&ctx, &s.codes[0], &[vec![0], vec![1, 2]]);
    assert_eq!(h.refused(b0.clone(), 1_000).await, "wrong_phase");
    h.ok(open.clone(), 1_000).await;
    assert_eq!(h.record().open_index, Some(h.index));
    assert_eq!(h.count(), 0);
    assert_eq!(h.refused(open, 1_000).await, "wrong_phase");
    // Before the window.
    assert_eq!(h.refused(b0.clone(), 9_999).await, "not_open_yet");
    // Not on the roll.
    let stranger = cast_cmd(&ctx, &s.codes[3], &[vec![1], vec![]]);
    assert_eq!(h.refused(stranger, 10_000).await, "not_on_roll");
    // A good cast, then its identical retry: the original receipt.
    let r0 = h.ok(b0.clone(), 10_000).await;
    let first_index = h.index;
    let r0b = h.ok(b0.clone(), 10_001).await;
    assert_eq!(r0, r0b);
    match &r0 {
        Reply::Cast { seq, index, .. } => assert_eq!((*seq, *index), (0, first_index)),
        other => panic!("{other:?}"),
    }
    // Another ballot with the same credential.
    let b0_other = cast_cmd(&ctx, &s.codes[0], &[vec![1], vec![]]);
    assert_eq!(h.refused(b0_other, 10_002).await, "already_voted");
    // A copied ciphertext under another credential.
    let Command::Cast { ballot: bytes, .. } = b0.clone() else {
        unreachable!()
    };
    let mut copied: urna_keyceremony::ballot::EncryptedBallot = serde_json::from_str(&bytes).unwrap();
    copied.sign(&ctx, &s.codes[1].signing_key());
    let copied = Command::Cast {
        election_id: ID.into(),
        ballot_hash: copied.hash(&ctx),
        ballot: serde_json::to_string(&copied).unwrap(),
    };
    assert_eq!(h.refused(copied, 10_003).await, "duplicate_ciphertext");
    assert_eq!(h.count(), 1);
    h.ok(cast_cmd(&ctx, &s.codes[1], &[vec![1], vec![2]]), 10_004)
        .await;
    // Tracking codes chain.
    let b1 = state::ballot_of(&h.handle, ID, &s.codes[1].public())
        .unwrap()
        .unwrap();
    let Reply::Cast { tracking_code, .. } = r0 else {
        unreachable!()
    };
    assert_eq!(b1.previous_tracking_code, tracking_code);

    let close = Command::Close {
        election_id: ID.into(),
    };
    assert_eq!(h.refused(close.clone(), 19_999).await, "too_early");
    let late = cast_cmd(&ctx, &s.codes[2], &[vec![0], vec![]]);
    assert_eq!(h.refused(late, 20_000).await, "election_closed");
    h.ok(close.clone(), 20_000).await;
    let rec = h.record();
    assert_eq!(rec.phase, ElectionPhase::Tallying);
    assert_eq!(rec.final_count, Some(2));
    assert_eq!(h.refused(close, 20_001).await, "election_closed");

    // Tally with custodians 2 and 0 (q = 2).
    let st = state::ceremony(&h.handle, ID).unwrap().unwrap();
    let keys = st.keys().unwrap().clone();
    let q_ext = rec.extended_hash.unwrap();
    let tctx = TallyContext::new(q_ext, 3);
    let agg = rec.aggregate.clone().unwrap();
    for j in [2usize, 0] {
        let kj = tally::key_share(&keys.encryption, j).unwrap();
        let pd =
            tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &agg, &mut OsRng).unwrap();
        let sp = SignedPartialDecryption::sign(&s.keys[j], &q_ext, SharePurpose::Tally, j, pd);
        let cmd = Command::TallyShare {
            election_id: ID.into(),
            custodian: j,
            partial: sp.partial,
            signature: sp.signature,
        };
        h.ok(cmd.clone(), 20_002).await;
        if j == 2 {
            assert_eq!(h.refused(cmd, 20_002).await, "duplicate");
        }
    }
    let rec = h.record();
    assert_eq!(
        rec.tally.as_ref().unwrap().counts,
        vec![vec![1, 1], vec![0, 1, 2]]
    );
    let rh = rec.result_hash.unwrap();
    for j in [1usize, 2] {
        let share = tally::sign_result(&secrets[j].signing_share, &rh);
        h.ok(
            Command::SignatureShare {
                election_id: ID.into(),
                custodian: j,
                share: WireSignatureShare(share),
            },
            20_003,
        )
        .await;
    }
    let rec = h.record();
    assert_eq!(rec.phase, ElectionPhase::Published);
    rec.certificate
        .unwrap()
        .verify(&keys.signing.public_key())
        .unwrap();
    // Every applied step is in the event chain, with its actor.
    let chain = state::chain(&h.handle, ID).unwrap();
    assert!(chain.count > 20);
}

#[tokio::test]
async fn too_few_ballots_close_without_tally_and_advance_disqualifies() {
    let mut h = Harness::new();
    let mut s = setup(3, 2, 1);
    s.params.min_ballots = 5;
    h.ok(
        Command::CreateElection {
            params: s.params.clone(),
            deadlines: DEADLINES,
            roll: vec![s.codes[0].public()],
        },
        0,
    )
    .await;
    // Only two custodians join; the advance after the deadline disqualifies the third.
    let custodians: Vec<Custodian> = s
        .keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &s.params, &mut OsRng).unwrap())
        .collect();
    for c in &custodians[..2] {
        h.ok(msg(ID, &c.join()), 100).await;
    }
    let adv = Command::Advance {
        election_id: ID.into(),
    };
    assert_eq!(h.refused(adv.clone(), 4_999).await, "deadline_not_reached");
    h.ok(adv, 5_000).await;
    let st = state::ceremony(&h.handle, ID).unwrap().unwrap();
    assert_eq!(st.phase(), CPhase::Deal);
    assert_eq!(st.qualified(), vec![0, 1]);
    // A late join is refused in the deal phase.
    assert_eq!(
        h.refused(msg(ID, &custodians[2].join()), 5_001).await,
        "wrong_phase"
    );
    // A message with a bad signature: signed by custodian 1's key but claiming to be custodian 0.
    let mut forged = custodians[1].join();
    forged.sender = 0;
    assert_eq!(h.refused(msg(ID, &forged), 5_001).await, "wrong_phase");
}

#[tokio::test]
async fn shares_and_challenges_only_in_their_phase() {
    let mut h = Harness::new();
    let s = setup(3, 2, 2);
    h.ok(
        Command::CreateElection {
            params: s.params.clone(),
            deadlines: DEADLINES,
            roll: s.codes.iter().map(|c| c.public()).collect(),
        },
        0,
    )
    .await;
    let empty = urna_keyceremony::tally::PartialDecryption { shares: vec![] };
    let sig = urna_keyceremony::tally::WireSignature(s.keys[0].sign(b"x"));
    let rehearsal = Command::RehearsalShare {
        election_id: ID.into(),
        custodian: 0,
        partial: empty.clone(),
        signature: sig.clone(),
    };
    assert_eq!(h.refused(rehearsal, 0).await, "wrong_phase");
    let secrets = ceremony(&mut h, &s, 100).await;
    let ctx = ballot_ctx(&h);
    let tally_share = Command::TallyShare {
        election_id: ID.into(),
        custodian: 0,
        partial: empty,
        signature: sig,
    };
    assert_eq!(h.refused(tally_share.clone(), 100).await, "wrong_phase");
    let rh = [0u8; 32];
    let sig_share = Command::SignatureShare {
        election_id: ID.into(),
        custodian: 0,
        share: WireSignatureShare(tally::sign_result(&secrets[0].signing_share, &rh)),
    };
    assert_eq!(h.refused(sig_share.clone(), 100).await, "wrong_phase");
    // A challenge needs the box open.
    let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![0], vec![]]).unwrap();
    let (b, sec) = encrypt_ballot(&ctx, &p, &s.codes[0].signing_key(), &mut OsRng).unwrap();
    let challenge = Command::Challenge {
        election_id: ID.into(),
        spoiled: urna_keyceremony::ballot::spoil(&b, &sec),
    };
    assert_eq!(h.refused(challenge.clone(), 100).await, "wrong_phase");
    h.ok(
        Command::Open {
            election_id: ID.into(),
        },
        100,
    )
    .await;
    assert_eq!(h.ok(challenge.clone(), 10_000).await, Reply::Challenge { seq: 0 });
    assert_eq!(h.ok(challenge, 10_000).await, Reply::Challenge { seq: 1 });
    // Spoiled ballots never enter the count or the aggregate.
    assert_eq!(h.count(), 0);
    // Too few ballots: Closed, and shares are refused there too.
    h.ok(
        Command::Close {
            election_id: ID.into(),
        },
        20_000,
    )
    .await;
    let rec = h.record();
    assert_eq!(rec.phase, ElectionPhase::Closed);
    assert_eq!(rec.final_count, Some(0));
    assert_eq!(h.refused(tally_share, 20_000).await, "wrong_phase");
    assert_eq!(h.refused(sig_share, 20_000).await, "wrong_phase");
}

#[tokio::test]
async fn elections_are_independent() {
    let mut h = Harness::new();
    let s = setup(3, 2, 3);
    let mut other = s.params.clone();
    other.election_id = format!("{ID}-2");
    for params in [&s.params, &other] {
        h.ok(
            Command::CreateElection {
                params: params.clone(),
                deadlines: DEADLINES,
                roll: vec![s.codes[0].public()],
            },
            0,
        )
        .await;
    }
    h.ok(
        Command::AddRoll {
            election_id: ID.into(),
            credentials: vec![s.codes[1].public(), s.codes[2].public()],
        },
        0,
    )
    .await;
    let r2 = state::record(&h.handle, &other.election_id).unwrap().unwrap();
    assert_eq!((h.record().roll_count, r2.roll_count), (3, 1));
    assert_ne!(h.record().base_hash, r2.base_hash);
    // Ceremony messages of one election do not count in the other (and are signed over its Q).
    ceremony(&mut h, &s, 100).await;
    let r2 = state::record(&h.handle, &other.election_id).unwrap().unwrap();
    assert_eq!(r2.phase, ElectionPhase::Draft);
    let briefs: Vec<_> = super::view::briefs(&h.handle)
        .unwrap()
        .into_iter()
        .map(|b| b.phase)
        .collect();
    assert_eq!(briefs, vec![ElectionPhase::Ready, ElectionPhase::Draft]);
    assert_eq!(state::chain(&h.handle, &other.election_id).unwrap().count, 1);
}

#[test]
fn challenges_are_rate_limited() {
    let rl = super::precheck::RateLimit::new(1.0, 3.0);
    for _ in 0..3 {
        rl.take().unwrap();
    }
    assert_eq!(rl.take().unwrap_err().status, 429);
}

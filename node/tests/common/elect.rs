//! Drives an election to Open over HTTP with in-memory custodians (keyceremony's `Custodian`), for
//! tests and the cast benchmark. Include it next to `common` (`#[path = "common/elect.rs"] mod elect;`).
#![allow(dead_code)]

use rand::rngs::OsRng;
use rand::Rng;
use serde_json::{json, Value};
use urna_client::wire::{CreateElectionRequest, ElectionSummary, SharePurpose, SignedPartialDecryption};
use urna_keyceremony::ballot::{encrypt_ballot, BallotContext, EncryptedBallot, PlaintextBallot};
use urna_keyceremony::blsttc::SecretKey;
use urna_keyceremony::ceremony::{CeremonyState, Custodian, Phase as CPhase, SignedCeremonyMessage};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::election::{Custodian as Registered, IdentityKey};
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::tally::{self, TallyContext};

use crate::common::{wait_for, Cluster, ADMIN};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An election ready to vote in: its voters' codes and ballot context.
pub struct Ready {
    pub id: String,
    pub codes: Vec<CredentialCode>,
    pub ctx: BallotContext,
}

pub async fn post_raw(
    c: &Cluster,
    node: u64,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Option<(u16, Value)> {
    let mut rb = c
        .http
        .post(c.url(node, path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Posts until an answer other than 503 / no connection; asserts 200.
pub async fn post_ok(
    c: &Cluster,
    node: u64,
    path: &str,
    token: Option<&str>,
    body: &impl serde::Serialize,
) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let (s, v) = wait_for(&format!("POST {path}"), || {
        let bytes = bytes.clone();
        async move {
            match post_raw(c, node, path, token, bytes).await {
                Some((503, _)) | None => None,
                Some(r) => Some(r),
            }
        }
    })
    .await;
    assert_eq!(s, 200, "POST {path}: {v}");
    v
}

pub async fn get_json<T: serde::de::DeserializeOwned>(c: &Cluster, node: u64, path: &str) -> T {
    let (s, v) = wait_for(&format!("GET {path}"), || async {
        c.get(node, path).await.filter(|(s, _)| *s != 503)
    })
    .await;
    assert_eq!(s, 200, "GET {path}: {v}");
    serde_json::from_value(v).unwrap()
}

async fn ceremony_state(c: &Cluster, node: u64, id: &str) -> CeremonyState {
    get_json(c, node, &format!("/v1/elections/{id}/ceremony?consistent=true")).await
}

/// Creates an election with `manifest` and `voters` credentials, runs the ceremony (n custodians,
/// quorum q) and the rehearsal over HTTP, and opens it (window from now - 1 s for `window_ms`).
pub async fn open_election(
    c: &Cluster,
    id: &str,
    manifest: Manifest,
    n: usize,
    q: usize,
    voters: usize,
    window_ms: i64,
) -> Ready {
    let keys: Vec<SecretKey> = (0..n).map(|_| OsRng.gen()).collect();
    let codes: Vec<CredentialCode> = (0..voters).map(|_| CredentialCode::random(&mut OsRng)).collect();
    let req = CreateElectionRequest {
        election_id: id.into(),
        manifest,
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: q,
        opens_at: now_ms() - 1_000,
        closes_at: now_ms() + window_ms,
        min_ballots: Some(1),
        ceremony_deadlines: None,
        roll: codes.iter().map(|c| c.public()).collect(),
    };
    post_ok(c, 1, "/v1/elections", Some(ADMIN), &req).await;
    let sum: ElectionSummary = get_json(c, 1, &format!("/v1/elections/{id}?consistent=true")).await;
    let params = sum.params;
    let mut custodians: Vec<Custodian> = keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &params, &mut OsRng).unwrap())
        .collect();
    let send = |kind: &'static str, m: SignedCeremonyMessage| async move {
        post_ok(c, 1, &format!("/v1/elections/{id}/ceremony/{kind}"), None, &m).await;
    };
    for cu in &custodians {
        send("joins", cu.join()).await;
    }
    let st = ceremony_state(c, 1, id).await;
    assert_eq!(st.phase(), CPhase::Deal);
    for cu in custodians.iter_mut() {
        let m = cu.deal(&st, &mut OsRng).unwrap();
        send("deals", m).await;
    }
    let st = ceremony_state(c, 1, id).await;
    for cu in &custodians {
        for m in cu.check(&st) {
            send("acks", m).await;
        }
    }
    let st = ceremony_state(c, 1, id).await;
    let mut secrets = Vec::new();
    for cu in &custodians {
        let s = cu.derive(&st).unwrap();
        send("confirmations", cu.confirm(&st, &s, &mut OsRng).unwrap()).await;
        secrets.push(s);
    }
    let st = ceremony_state(c, 1, id).await;
    assert_eq!(st.phase(), CPhase::Rehearsal);
    let ct = *st.rehearsal().unwrap();
    let tctx = TallyContext::new(*st.base_hash(), n);
    let pks = &st.keys().unwrap().encryption;
    for j in 0..q {
        let kj = tally::key_share(pks, j).unwrap();
        let pd =
            tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &[ct], &mut OsRng).unwrap();
        let s = SignedPartialDecryption::sign(&keys[j], st.base_hash(), SharePurpose::Rehearsal, j, pd);
        post_ok(c, 1, &format!("/v1/elections/{id}/ceremony/rehearsal"), None, &s).await;
    }
    let sum: ElectionSummary = get_json(c, 1, &format!("/v1/elections/{id}?consistent=true")).await;
    assert_eq!(sum.phase.to_string(), "ready");
    let q_ext: [u8; 32] = hex::decode(sum.extended_hash.unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let ctx = BallotContext::new(
        id,
        q_ext,
        params.manifest.clone(),
        st.keys().unwrap().encryption_key,
    )
    .unwrap();
    post_ok(c, 1, &format!("/v1/elections/{id}/open"), Some(ADMIN), &json!({})).await;
    Ready {
        id: id.into(),
        codes,
        ctx,
    }
}

/// Voter `v`'s ballot selecting option `v % k` in every contest that allows exactly one choice and
/// nothing elsewhere... kept simple: the first `min` options of each contest, rotated by `v`.
pub fn ballot(e: &Ready, v: usize) -> EncryptedBallot {
    let sel: Vec<Vec<usize>> = e
        .ctx
        .manifest()
        .contests
        .iter()
        .map(|c| {
            let n = c.options.len();
            (0..c.min_selections as usize).map(|i| (v + i) % n).collect()
        })
        .collect();
    let p = PlaintextBallot::from_selected(e.ctx.manifest(), &sel).unwrap();
    encrypt_ballot(&e.ctx, &p, &e.codes[v].signing_key(), &mut OsRng)
        .unwrap()
        .0
}

//! The election under test, driven over HTTP: creation, a whole dealerless ceremony with in-memory
//! custodians (`urna_keyceremony::ceremony::Custodian`) and its rehearsal, opening, and at the end the
//! close, the custodians' partial decryptions and signature shares, and the certified result.
//! Everything random comes from the run's seeded RNG.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use urna_client::http::Client;
use urna_client::wire::{
    CreateElectionRequest, ElectionSummary, ResultResponse, SharePurpose, SignatureShareRequest,
    SignedPartialDecryption,
};
use urna_keyceremony::ballot::{encrypt_ballot, BallotContext, PlaintextBallot};
use urna_keyceremony::blsttc::SecretKey;
use urna_keyceremony::ceremony::{CeremonyState, Custodian, CustodianSecrets, Phase as CPhase};
use urna_keyceremony::credential::CredentialCode;
use urna_keyceremony::election::{Custodian as Registered, IdentityKey};
use urna_keyceremony::hash::Hash32;
use urna_keyceremony::manifest::Manifest;
use urna_keyceremony::tally::{self, TallyContext, WireSignatureShare};

/// Custodians of the chaos election.
pub const CUSTODIANS: usize = 3;
/// Their quorum.
pub const QUORUM: usize = 2;
/// Options per contest: contest 0 picks exactly 1 of 3, contest 1 up to 2 of 2.
pub const SHAPE: [(usize, u64, u64); 2] = [(3, 1, 1), (2, 0, 2)];

/// The current wall clock in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An election in its voting phase, with everything the harness needs to vote and tally.
pub struct Election {
    /// Election id.
    pub id: String,
    /// Custodians' identity keys.
    keys: Vec<SecretKey>,
    /// Custodians' derived secrets.
    secrets: Vec<CustodianSecrets>,
    /// Voters' credential codes (index = voter).
    pub codes: Vec<CredentialCode>,
    /// Ballot context (Q', manifest, key).
    pub ctx: BallotContext,
    /// Extended base hash Q'.
    pub q_ext: Hash32,
    /// Ceremony state once Ready (keys).
    state: CeremonyState,
    /// Closing time of the voting window (ms).
    pub closes_at: i64,
}

/// One voter's encrypted ballot, serialized once (retries resend these exact bytes).
#[derive(Clone, Debug)]
pub struct Ballot {
    /// Voter index.
    pub voter: usize,
    /// The JSON request body.
    pub bytes: Vec<u8>,
    /// H_b.
    pub hash: Hash32,
    /// The voter's public credential (hex).
    pub credential: String,
    /// The true vote, flat over contests and options.
    pub flat: Vec<u64>,
}

async fn post(c: &Client, path: &str, body: &impl serde::Serialize) -> anyhow::Result<serde_json::Value> {
    c.post_json(path, body)
        .await
        .with_context(|| format!("POST {path}"))
}

async fn get<T: serde::de::DeserializeOwned>(c: &Client, path: &str) -> anyhow::Result<T> {
    c.get_json(path).await.with_context(|| format!("GET {path}"))
}

async fn ceremony(c: &Client, id: &str) -> anyhow::Result<CeremonyState> {
    get(c, &format!("/v1/elections/{id}/ceremony?consistent=true")).await
}

/// Creates the election (window `[now - 1 s, closes_at]`, minimum count 1, `voters` credentials),
/// runs the ceremony and rehearsal, and opens it. `c` must carry the admin token.
pub async fn setup(
    c: &Client,
    id: &str,
    voters: usize,
    closes_at: i64,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<Election> {
    let keys: Vec<SecretKey> = (0..CUSTODIANS).map(|_| rng.gen()).collect();
    let codes: Vec<CredentialCode> = (0..voters).map(|_| CredentialCode::random(rng)).collect();
    let req = CreateElectionRequest {
        election_id: id.into(),
        manifest: Manifest::simple(&SHAPE),
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{j}"),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: QUORUM,
        opens_at: now_ms() - 1_000,
        closes_at,
        min_ballots: Some(1),
        ceremony_deadlines: None,
        roll: codes.iter().map(|c| c.public()).collect(),
    };
    post(c, "/v1/elections", &req).await?;
    let sum: ElectionSummary = get(c, &format!("/v1/elections/{id}?consistent=true")).await?;
    let params = sum.params;
    let mut custodians: Vec<Custodian> = keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &params, rng))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("custodian: {e:?}"))?;
    let path = |kind: &str| format!("/v1/elections/{id}/ceremony/{kind}");
    for cu in &custodians {
        post(c, &path("joins"), &cu.join()).await?;
    }
    let st = ceremony(c, id).await?;
    for cu in &mut custodians {
        let m = cu.deal(&st, rng).map_err(|e| anyhow!("deal: {e:?}"))?;
        post(c, &path("deals"), &m).await?;
    }
    let st = ceremony(c, id).await?;
    for cu in &custodians {
        for m in cu.check(&st) {
            post(c, &path("acks"), &m).await?;
        }
    }
    let st = ceremony(c, id).await?;
    if st.phase() != CPhase::Confirm {
        bail!("ceremony did not reach Confirm: {:?}", st.phase());
    }
    let mut secrets = Vec::new();
    for cu in &custodians {
        let s = cu.derive(&st).map_err(|e| anyhow!("derive: {e:?}"))?;
        let m = cu.confirm(&st, &s, rng).map_err(|e| anyhow!("confirm: {e:?}"))?;
        post(c, &path("confirmations"), &m).await?;
        secrets.push(s);
    }
    let st = ceremony(c, id).await?;
    let ct = *st.rehearsal().ok_or_else(|| anyhow!("no rehearsal ciphertext"))?;
    let keyset = st.keys().ok_or_else(|| anyhow!("no election keys"))?;
    let tctx = TallyContext::new(*st.base_hash(), CUSTODIANS);
    for j in 0..QUORUM {
        let kj = tally::key_share(&keyset.encryption, j).map_err(|e| anyhow!("{e:?}"))?;
        let pd = tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &[ct], rng)
            .map_err(|e| anyhow!("rehearsal: {e:?}"))?;
        let s = SignedPartialDecryption::sign(&keys[j], st.base_hash(), SharePurpose::Rehearsal, j, pd);
        post(c, &path("rehearsal"), &s).await?;
    }
    let sum: ElectionSummary = get(c, &format!("/v1/elections/{id}?consistent=true")).await?;
    if sum.phase.to_string() != "ready" {
        bail!("election is {} after the ceremony, not ready", sum.phase);
    }
    let q_ext: Hash32 = hex::decode(sum.extended_hash.unwrap_or_default())?
        .try_into()
        .map_err(|_| anyhow!("bad extended hash"))?;
    let ctx = BallotContext::new(id, q_ext, params.manifest.clone(), keyset.encryption_key)
        .map_err(|e| anyhow!("ballot context: {e:?}"))?;
    post(c, &format!("/v1/elections/{id}/open"), &json!({})).await?;
    Ok(Election {
        id: id.into(),
        keys,
        secrets,
        codes,
        ctx,
        q_ext,
        state: st,
        closes_at,
    })
}

impl Election {
    /// Encrypts a ballot of `voter` with a choice drawn from `rng`.
    pub fn ballot(&self, voter: usize, rng: &mut ChaCha20Rng) -> anyhow::Result<Ballot> {
        let first = rng.gen_range(0..3usize);
        let second: Vec<usize> = (0..2usize).filter(|_| rng.gen_bool(0.5)).collect();
        let p = PlaintextBallot::from_selected(self.ctx.manifest(), &[vec![first], second])
            .map_err(|e| anyhow!("plaintext: {e:?}"))?;
        let flat = p.contests.iter().flatten().map(|&x| u64::from(x)).collect();
        let code = self.codes.get(voter).ok_or_else(|| anyhow!("no voter {voter}"))?;
        let (b, _) =
            encrypt_ballot(&self.ctx, &p, &code.signing_key(), rng).map_err(|e| anyhow!("encrypt: {e:?}"))?;
        Ok(Ballot {
            voter,
            hash: b.hash(&self.ctx),
            credential: hex::encode(b.credential.to_bytes()),
            bytes: serde_json::to_vec(&b)?,
            flat,
        })
    }

    /// The cast path.
    pub fn cast_path(&self) -> String {
        format!("/v1/elections/{}/ballots", self.id)
    }

    /// Waits for the window to end, closes, and has the custodians decrypt and certify. Returns the
    /// certified result (its certificate checked against the election's signing key).
    pub async fn close_and_tally(
        &self,
        c: &Client,
        rng: &mut ChaCha20Rng,
        limit: Duration,
    ) -> anyhow::Result<ResultResponse> {
        let start = Instant::now();
        while now_ms() <= self.closes_at + 50 {
            if start.elapsed() > limit {
                bail!("the voting window did not end in time");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let id = &self.id;
        // A cast after closes_at may already have closed it (409 election_closed / wrong_phase).
        if let Err(e) = c
            .post_json::<_, serde_json::Value>(&format!("/v1/elections/{id}/close"), &json!({}))
            .await
        {
            if e.api().map(|a| a.status) != Some(409) {
                return Err(anyhow!("close: {e}"));
            }
        }
        let sum: ElectionSummary = get(c, &format!("/v1/elections/{id}?consistent=true")).await?;
        let agg = sum
            .aggregate
            .ok_or_else(|| anyhow!("no aggregate after close (phase {})", sum.phase))?;
        let keys = self.state.keys().ok_or_else(|| anyhow!("no keys"))?;
        let tctx = TallyContext::new(self.q_ext, CUSTODIANS);
        for j in 0..QUORUM {
            let kj = tally::key_share(&keys.encryption, j).map_err(|e| anyhow!("{e:?}"))?;
            let pd = tally::partial_decrypt(&tctx, j, &self.secrets[j].encryption_share, &kj, &agg, rng)
                .map_err(|e| anyhow!("partial decryption: {e:?}"))?;
            let s = SignedPartialDecryption::sign(&self.keys[j], &self.q_ext, SharePurpose::Tally, j, pd);
            post(c, &format!("/v1/elections/{id}/tally/shares"), &s).await?;
        }
        let res: ResultResponse = get(c, &format!("/v1/elections/{id}/result?consistent=true")).await?;
        let rh: Hash32 = hex::decode(res.result_hash.unwrap_or_default())?
            .try_into()
            .map_err(|_| anyhow!("no result hash after the decryption shares"))?;
        for j in 0..QUORUM {
            let share = WireSignatureShare(tally::sign_result(&self.secrets[j].signing_share, &rh));
            let body = SignatureShareRequest { custodian: j, share };
            post(c, &format!("/v1/elections/{id}/tally/signatures"), &body).await?;
        }
        let res: ResultResponse = get(c, &format!("/v1/elections/{id}/result?consistent=true")).await?;
        let cert = res
            .certificate
            .as_ref()
            .ok_or_else(|| anyhow!("no certificate (phase {})", res.phase))?;
        cert.verify(&keys.signing.public_key())
            .map_err(|e| anyhow!("certificate does not verify: {e:?}"))?;
        Ok(res)
    }
}

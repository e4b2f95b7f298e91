//! The election record and its verifier core (design 4.7).
//!
//! An [`ElectionRecord`] holds everything an election put on the board: parameters, every ceremony
//! message in log order, the rehearsal decryption, the roll, cast ballots with their tracking codes,
//! spoiled ballots, the close summary, the decryption shares, the tally, the signature shares and the
//! certificate. [`verify_record`] re-checks all of it with no trust in whoever served the record and
//! returns one line per check; `urna verify` prints that table.
//!
//! Conventions fixed here and used by the node as well:
//! - the rehearsal's partial decryptions are bound to the base hash Q (Q' does not exist yet at that
//!   point; the rehearsal ciphertext itself derives from the final ceremony transcript):
//!   [`rehearsal_context`];
//! - the close entry hash that the certificate signs over is [`CloseSummary::hash`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ballot::{verify_ballots_batch, verify_spoiled, BallotContext, EncryptedBallot, SpoiledBallot};
use crate::board::{genesis_tracking_code, next_tracking_code, tree_root};
use crate::ceremony::{CeremonyState, Deadlines, Phase, SignedCeremonyMessage};
use crate::credential::{roll_hash, PublicCredential};
use crate::election::{extended_hash, hex_32, ElectionParams};
use crate::elgamal::{Accumulator, Ciphertext};
use crate::hash::{Hash32, Transcript};
use crate::tally::{
    decrypt_tally, key_share, result_hash, verify_partial_exact, verify_signature_share, Certificate,
    PartialDecryption, Tally, TallyContext, WireSignatureShare,
};

/// The record format this code writes and reads.
pub const RECORD_FORMAT: &str = "urna-record/1";

/// One ceremony event as it was applied, in log order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeremonyEvent {
    /// A signed custodian message.
    Message(Box<SignedCeremonyMessage>),
    /// An `advance` entry at this state-machine time (ms).
    Advance {
        /// State-machine time of the entry.
        time_ms: i64,
    },
}

/// A custodian's partial decryption (of the rehearsal ciphertext or of the tally aggregate).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustodianDecryption {
    /// 0-based custodian index.
    pub custodian: usize,
    /// Per option `M_j` with its proof.
    pub partial: PartialDecryption,
}

/// A custodian's signature share over the result hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustodianSignature {
    /// 0-based custodian index.
    pub custodian: usize,
    /// The blsttc signature share.
    pub share: WireSignatureShare,
}

/// A cast ballot with the tracking code its receipt carried.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedBallot {
    /// The ballot as cast.
    pub ballot: EncryptedBallot,
    /// `T_i = H("urna/v1/track", T_{i-1}, H_b)`.
    #[serde(with = "hex_32")]
    pub tracking_code: Hash32,
}

/// What the close entry's apply computed: it carries no numbers itself, so a ballot committed before it is
/// always counted and one after it never is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseSummary {
    /// Number of cast ballots.
    pub ballot_count: u64,
    /// Aggregate ciphertext per option in manifest order; `None` when no ballot was cast.
    pub aggregate: Option<Vec<Ciphertext>>,
    /// Root of the ballot tree.
    #[serde(with = "hex_32")]
    pub tree_root: Hash32,
    /// Tracking code of the last ballot (the genesis code when none).
    #[serde(with = "hex_32")]
    pub last_tracking_code: Hash32,
}

impl CloseSummary {
    /// Computes the summary from the cast ballots in order (the close entry's apply does this
    /// incrementally).
    pub fn compute(extended_hash: &Hash32, ballot_hashes: &[Hash32], ballots: &[EncryptedBallot]) -> Self {
        let mut acc: Vec<Accumulator> = Vec::new();
        for b in ballots {
            let cts = b
                .contests
                .iter()
                .flat_map(|c| c.selections.iter().map(|s| s.ciphertext));
            for (k, ct) in cts.enumerate() {
                if acc.len() <= k {
                    acc.push(Accumulator::default());
                }
                acc[k].add(&ct);
            }
        }
        let aggregate = if ballots.is_empty() {
            None
        } else {
            acc.iter()
                .map(|a| a.to_ciphertext())
                .collect::<Result<Vec<_>, _>>()
                .ok()
        };
        let last = ballot_hashes
            .iter()
            .fold(genesis_tracking_code(extended_hash), |t, h| {
                next_tracking_code(&t, h)
            });
        CloseSummary {
            ballot_count: ballots.len() as u64,
            aggregate,
            tree_root: tree_root(ballot_hashes),
            last_tracking_code: last,
        }
    }

    /// The close entry hash `H("urna/v1/close", Q', election id, count, aggregate, tree root, last code)`,
    /// which the result certificate signs over.
    pub fn hash(&self, extended_hash: &Hash32, election_id: &str) -> Hash32 {
        let mut t = Transcript::new("urna/v1/close")
            .hash(extended_hash)
            .str(election_id)
            .u64(self.ballot_count);
        match &self.aggregate {
            None => t = t.u64(0),
            Some(agg) => {
                t = t.u64(agg.len() as u64);
                for ct in agg {
                    t = ct.absorb(t);
                }
            }
        }
        t.hash(&self.tree_root).hash(&self.last_tracking_code).digest()
    }
}

/// The complete public record of one election.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ElectionRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// Parameters fixed at creation.
    pub params: ElectionParams,
    /// Ceremony phase deadlines fixed at creation.
    pub deadlines: Deadlines,
    /// Every accepted ceremony event in log order.
    pub ceremony: Vec<CeremonyEvent>,
    /// The rehearsal's partial decryptions.
    pub rehearsal: Vec<CustodianDecryption>,
    /// Public voter credentials, in roll order.
    pub roll: Vec<PublicCredential>,
    /// Cast ballots in cast order.
    pub ballots: Vec<RecordedBallot>,
    /// Challenged ballots.
    pub spoiled: Vec<SpoiledBallot>,
    /// The close summary, once the election is closed.
    pub close: Option<CloseSummary>,
    /// Custodians' partial decryptions of the aggregate.
    pub decryption_shares: Vec<CustodianDecryption>,
    /// The decrypted tally.
    pub tally: Option<Tally>,
    /// Custodians' signature shares over the result hash.
    pub signature_shares: Vec<CustodianSignature>,
    /// The certificate.
    pub certificate: Option<Certificate>,
}

/// The context rehearsal partial decryptions are bound to: the base hash Q.
pub fn rehearsal_context(base_hash: &Hash32, custodians: usize) -> TallyContext {
    TallyContext::new(*base_hash, custodians)
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable name of the check.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was checked, or what failed.
    pub detail: String,
}

/// Every check's outcome, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// One entry per check.
    pub checks: Vec<CheckResult>,
}

impl VerificationReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The first failing check, if any.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.passed)
    }

    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name: name.into(),
            passed: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            name: name.into(),
            passed: false,
            detail: detail.into(),
        });
    }

    fn record(&mut self, name: &str, r: Result<String, String>) -> bool {
        match r {
            Ok(d) => {
                self.pass(name, d);
                true
            }
            Err(d) => {
                self.fail(name, d);
                false
            }
        }
    }
}

/// Check names, in the order they run (stable: scripts and tests match on them).
pub mod checks {
    /// The record's format tag.
    pub const FORMAT: &str = "format";
    /// Election parameters are valid.
    pub const PARAMETERS: &str = "parameters";
    /// Every ceremony message replays and the keys derive.
    pub const CEREMONY: &str = "key ceremony";
    /// The rehearsal decrypts to 1.
    pub const REHEARSAL: &str = "rehearsal decryption";
    /// Roll has no duplicate credential.
    pub const ROLL: &str = "roll";
    /// Every ballot's signature and proofs verify.
    pub const BALLOT_PROOFS: &str = "ballot proofs";
    /// Every ballot's credential is on the roll, once.
    pub const ONE_PER_CREDENTIAL: &str = "one ballot per credential";
    /// No alpha appears twice.
    pub const NO_COPIES: &str = "no copied ciphertexts";
    /// Every tracking code follows from the previous one.
    pub const TRACKING: &str = "tracking-code chain";
    /// Spoiled ballots open to their ciphertexts.
    pub const SPOILED: &str = "spoiled ballots";
    /// The close summary matches the ballots (count, aggregate, tree root).
    pub const CLOSE: &str = "close summary";
    /// Every decryption share's proof verifies.
    pub const SHARES: &str = "decryption shares";
    /// The tally follows from the shares.
    pub const TALLY: &str = "tally";
    /// The certificate signs this result.
    pub const CERTIFICATE: &str = "certificate";
}

/// Re-verifies a whole election record; see the module documentation.
pub fn verify_record(record: &ElectionRecord) -> VerificationReport {
    let mut report = VerificationReport::default();
    let params = &record.params;

    report.record(
        checks::FORMAT,
        if record.format == RECORD_FORMAT {
            Ok(RECORD_FORMAT.to_string())
        } else {
            Err(format!(
                "unknown format {:?}, expected {RECORD_FORMAT:?}",
                record.format
            ))
        },
    );
    if !report.record(
        checks::PARAMETERS,
        params
            .validate()
            .map(|_| params.fingerprint())
            .map_err(|e| e.to_string()),
    ) {
        return report;
    }

    // Key ceremony: replay every event; the keys and final transcript come out of it.
    let mut state = match CeremonyState::new(params, record.deadlines) {
        Ok(s) => s,
        Err(e) => {
            report.fail(checks::CEREMONY, e.to_string());
            return report;
        }
    };
    let mut ceremony_error = None;
    for (i, ev) in record.ceremony.iter().enumerate() {
        let r = match ev {
            CeremonyEvent::Message(m) => state.apply(m),
            CeremonyEvent::Advance { time_ms } => state.advance(*time_ms),
        };
        if let Err(e) = r {
            ceremony_error = Some(format!("event {i}: {e}"));
            break;
        }
    }
    let (keys, final_transcript) = match (
        ceremony_error,
        state.keys().cloned(),
        state.final_transcript_hash(),
    ) {
        (Some(e), _, _) => {
            report.fail(checks::CEREMONY, e);
            return report;
        }
        (None, Some(k), Some(t)) if state.phase() == Phase::Rehearsal => (k, *t),
        (None, _, _) => {
            report.fail(
                checks::CEREMONY,
                format!("ceremony ended in phase {}, not rehearsal", state.phase()),
            );
            return report;
        }
    };
    report.pass(
        checks::CEREMONY,
        format!(
            "{} events; qualified custodians {:?}",
            record.ceremony.len(),
            keys.qualified
        ),
    );
    let n = params.custodians.len();
    let q = params.quorum;

    // Rehearsal: q valid partial decryptions of the rehearsal ciphertext combine to 1.
    let rehearsal_ok = (|| -> Result<String, String> {
        let ct = *state.rehearsal().ok_or("no rehearsal ciphertext")?;
        let ctx = rehearsal_context(&params.base_hash(), n);
        let valid = valid_decryptions(&ctx, &keys, &record.rehearsal, std::slice::from_ref(&ct))?;
        let shares: Vec<(usize, &PartialDecryption)> =
            valid.iter().map(|d| (d.custodian, &d.partial)).collect();
        let m = crate::manifest::Manifest::simple(&[(1, 0, 1)]);
        let t = decrypt_tally(&m, std::slice::from_ref(&ct), &shares, q, 1).map_err(|e| e.to_string())?;
        let value = t.flat().first().copied().unwrap_or(0);
        state.complete_rehearsal(value).map_err(|e| e.to_string())?;
        Ok(format!(
            "{} custodians decrypted the rehearsal to {value}",
            shares.len().min(q)
        ))
    })();
    if !report.record(checks::REHEARSAL, rehearsal_ok) {
        return report;
    }

    // Roll and Q'.
    let mut roll_set = BTreeSet::new();
    let dup = record.roll.iter().find(|c| !roll_set.insert(c.to_bytes()));
    report.record(
        checks::ROLL,
        match dup {
            None => Ok(format!("{} credentials", record.roll.len())),
            Some(c) => Err(format!("credential {} appears twice", c.to_hex())),
        },
    );
    let q_ext = extended_hash(
        &params.base_hash(),
        &keys.encryption_key,
        &keys.signing.public_key(),
        &final_transcript,
        &roll_hash(&record.roll),
        record.roll.len() as u64,
    );
    let ctx = match BallotContext::new(
        params.election_id.clone(),
        q_ext,
        params.manifest.clone(),
        keys.encryption_key,
    ) {
        Ok(c) => c,
        Err(e) => {
            report.fail(checks::BALLOT_PROOFS, e.to_string());
            return report;
        }
    };

    // Ballots: proofs and signatures (batched), roll membership, one per credential, no copies.
    let ballots: Vec<EncryptedBallot> = record.ballots.iter().map(|r| r.ballot.clone()).collect();
    let results = verify_ballots_batch(&ctx, &ballots, &mut rand::rngs::OsRng);
    let bad: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("ballot {i}: {e}")))
        .collect();
    report.record(
        checks::BALLOT_PROOFS,
        if bad.is_empty() {
            Ok(format!("{} ballots verified", ballots.len()))
        } else {
            Err(bad.join("; "))
        },
    );
    let hashes: Vec<Hash32> = ballots.iter().map(|b| b.hash(&ctx)).collect();
    let mut voted = BTreeSet::new();
    let cred_problem = ballots.iter().enumerate().find_map(|(i, b)| {
        let c = b.credential.to_bytes();
        if !roll_set.contains(&c) {
            Some(format!("ballot {i}: credential not on the roll"))
        } else if !voted.insert(c) {
            Some(format!("ballot {i}: credential already voted"))
        } else {
            None
        }
    });
    report.record(
        checks::ONE_PER_CREDENTIAL,
        cred_problem.map_or(Ok(format!("{} credentials voted", voted.len())), Err),
    );
    let mut alphas = BTreeSet::new();
    let copy = ballots.iter().enumerate().find_map(|(i, b)| {
        b.alphas()
            .find(|a| !alphas.insert(a.to_bytes()))
            .map(|_| format!("ballot {i} repeats an alpha"))
    });
    report.record(
        checks::NO_COPIES,
        copy.map_or(Ok(format!("{} distinct alphas", alphas.len())), Err),
    );

    let mut t = genesis_tracking_code(&q_ext);
    let mut broken = None;
    for (i, (r, h)) in record.ballots.iter().zip(&hashes).enumerate() {
        t = next_tracking_code(&t, h);
        if t != r.tracking_code {
            broken = Some(format!(
                "ballot {i}: tracking code does not follow from the chain"
            ));
            break;
        }
    }
    report.record(
        checks::TRACKING,
        broken.map_or(Ok(format!("{} links", record.ballots.len())), Err),
    );

    let spoiled_bad = record.spoiled.iter().enumerate().find_map(|(i, s)| {
        verify_spoiled(&ctx, s)
            .err()
            .map(|e| format!("spoiled ballot {i}: {e}"))
    });
    report.record(
        checks::SPOILED,
        spoiled_bad.map_or(Ok(format!("{} opened and checked", record.spoiled.len())), Err),
    );

    // Close summary.
    let Some(close) = &record.close else {
        report.pass(checks::CLOSE, "election not closed yet");
        return report;
    };
    let expect = CloseSummary::compute(&q_ext, &hashes, &ballots);
    report.record(
        checks::CLOSE,
        if close.ballot_count != expect.ballot_count {
            Err(format!(
                "close says {} ballots, the record holds {}",
                close.ballot_count, expect.ballot_count
            ))
        } else if close.aggregate != expect.aggregate {
            Err("aggregate ciphertexts differ from the product of the ballots".into())
        } else if close.tree_root != expect.tree_root {
            Err("ballot tree root differs".into())
        } else if close.last_tracking_code != expect.last_tracking_code {
            Err("last tracking code differs".into())
        } else {
            Ok(format!(
                "{} ballots, aggregate and tree root recomputed",
                close.ballot_count
            ))
        },
    );
    let close_hash = close.hash(&q_ext, &params.election_id);

    // Tally.
    if close.ballot_count < params.min_ballots {
        report.record(
            checks::TALLY,
            if record.tally.is_none() && record.decryption_shares.is_empty() {
                Ok(format!(
                    "{} ballots is below the minimum {}: no decryption",
                    close.ballot_count, params.min_ballots
                ))
            } else {
                Err("a tally was decrypted below the minimum ballot count".into())
            },
        );
        return report;
    }
    let Some(aggregate) = &close.aggregate else {
        report.fail(checks::TALLY, "no aggregate to decrypt");
        return report;
    };
    let tctx = TallyContext::new(q_ext, n);
    let valid = match valid_decryptions(&tctx, &keys, &record.decryption_shares, aggregate) {
        Ok(v) => {
            report.pass(checks::SHARES, format!("{} valid partial decryptions", v.len()));
            v
        }
        Err(e) => {
            report.fail(checks::SHARES, e);
            return report;
        }
    };
    let Some(tally) = &record.tally else {
        report.pass(checks::TALLY, "not decrypted yet");
        return report;
    };
    let shares: Vec<(usize, &PartialDecryption)> = valid.iter().map(|d| (d.custodian, &d.partial)).collect();
    report.record(
        checks::TALLY,
        match decrypt_tally(&params.manifest, aggregate, &shares, q, close.ballot_count) {
            Ok(t) if &t == tally => Ok(format!("counts {:?}", t.counts)),
            Ok(t) => Err(format!(
                "record says {:?}, the shares decrypt to {:?}",
                tally.counts, t.counts
            )),
            Err(e) => Err(e.to_string()),
        },
    );

    // Certificate.
    let rh = result_hash(&q_ext, &close_hash, tally);
    let cert = (|| -> Result<String, String> {
        let c = record.certificate.as_ref().ok_or("no certificate")?;
        if c.result_hash != rh {
            return Err("certificate is over another result".into());
        }
        c.verify(&keys.signing.public_key()).map_err(|e| e.to_string())?;
        for s in &record.signature_shares {
            if !keys.qualified.contains(&s.custodian)
                || verify_signature_share(&keys.signing, s.custodian, &rh, &s.share.0).is_err()
            {
                return Err(format!("signature share of custodian {} is invalid", s.custodian));
            }
        }
        Ok("threshold signature verifies under the signing key".into())
    })();
    report.record(checks::CERTIFICATE, cert);
    report
}

/// Checks every decryption in `list` (qualified custodian, not repeated, proof valid); returns them if at
/// least q are valid and none is invalid.
fn valid_decryptions<'a>(
    ctx: &TallyContext,
    keys: &crate::ceremony::DerivedKeys,
    list: &'a [CustodianDecryption],
    aggregate: &[Ciphertext],
) -> Result<Vec<&'a CustodianDecryption>, String> {
    let mut seen = BTreeMap::new();
    for d in list {
        if !keys.qualified.contains(&d.custodian) {
            return Err(format!("custodian {} is not in the qualified set", d.custodian));
        }
        if seen.insert(d.custodian, d).is_some() {
            return Err(format!("custodian {} decrypted twice", d.custodian));
        }
        let kj = key_share(&keys.encryption, d.custodian).map_err(|e| e.to_string())?;
        verify_partial_exact(ctx, d.custodian, &kj, aggregate, &d.partial)
            .map_err(|e| format!("custodian {}: {e}", d.custodian))?;
    }
    let q = keys.encryption.threshold() + 1;
    if seen.len() < q {
        return Err(format!("{} valid partial decryptions, {q} needed", seen.len()));
    }
    Ok(seen.into_values().collect())
}

//! Batch verification of concurrent casts (design 4.3): ballots waiting at the proposing node are
//! verified together, their proof equations combined into one multi-exponentiation with random
//! coefficients of 128 bits or more from the OS generator; when a batch fails, each ballot is verified
//! alone, so only the bad ones are refused. Runs only before proposing, never in apply.
//!
//! One worker drains whatever casts are queued (up to [`MAX_BATCH`]) and verifies them on the blocking
//! pool; under light load a batch is a single ballot, so no latency is added.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use urna_keyceremony::ballot::{verify_ballots_batch, BallotContext, BallotError, EncryptedBallot};
use urna_keyceremony::hash::Hash32;

/// Most ballots verified in one batch.
pub const MAX_BATCH: usize = 64;

/// A verified (or refused) ballot, handed back with its result.
pub type Verdict = (EncryptedBallot, Result<Hash32, BallotError>);

struct Job {
    ctx: Arc<BallotContext>,
    ballot: EncryptedBallot,
    reply: oneshot::Sender<Verdict>,
}

/// Handle on the batch-verification worker.
pub struct BatchVerifier {
    tx: mpsc::UnboundedSender<Job>,
}

impl BatchVerifier {
    /// Starts the worker on the current Tokio runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                if let Err(e) = tokio::task::spawn_blocking(move || run(jobs)).await {
                    tracing::error!(error = %e, "ballot batch verification failed");
                }
            }
        });
        BatchVerifier { tx }
    }

    /// Verifies one ballot (batched with whatever else is waiting). `None` if the worker is gone.
    pub async fn verify(&self, ctx: Arc<BallotContext>, ballot: EncryptedBallot) -> Option<Verdict> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { ctx, ballot, reply }).ok()?;
        rx.await.ok()
    }
}

/// Verifies the jobs, one batch per ballot context (election).
fn run(jobs: Vec<Job>) {
    let mut groups: Vec<(Arc<BallotContext>, Vec<Job>)> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|(ctx, _)| Arc::ptr_eq(ctx, &job.ctx)) {
            Some((_, g)) => g.push(job),
            None => groups.push((job.ctx.clone(), vec![job])),
        }
    }
    for (ctx, group) in groups {
        let (ballots, replies): (Vec<EncryptedBallot>, Vec<oneshot::Sender<Verdict>>) =
            group.into_iter().map(|j| (j.ballot, j.reply)).unzip();
        let results = verify_ballots_batch(&ctx, &ballots, &mut rand::rngs::OsRng);
        for ((ballot, result), reply) in ballots.into_iter().zip(results).zip(replies) {
            // A caller that went away no longer needs its verdict.
            let _ = reply.send((ballot, result));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use urna_keyceremony::ballot::{encrypt_ballot, PlaintextBallot};
    use urna_keyceremony::credential::CredentialCode;
    use urna_keyceremony::group::{g_mul, random_scalar, Point};
    use urna_keyceremony::manifest::Manifest;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_ballot_in_a_batch_refuses_only_itself() {
        let k = Point::from_proj(&g_mul(&random_scalar(&mut OsRng))).unwrap();
        let ctx = Arc::new(BallotContext::new("e", [7; 32], Manifest::simple(&[(3, 1, 1)]), k).unwrap());
        let mut ballots = Vec::new();
        for v in 0..8 {
            let p = PlaintextBallot::from_selected(ctx.manifest(), &[vec![v % 3]]).unwrap();
            let code = CredentialCode::random(&mut OsRng);
            let (mut b, _) = encrypt_ballot(&ctx, &p, &code.signing_key(), &mut OsRng).unwrap();
            if v == 5 {
                // Swap two options' proofs and re-sign: the signature verifies, a proof does not.
                let s = &mut b.contests[0].selections;
                let p0 = s[0].proof.clone();
                s[0].proof = s[1].proof.clone();
                s[1].proof = p0;
                b.sign(&ctx, &code.signing_key());
            }
            ballots.push(b);
        }
        let verifier = BatchVerifier::start();
        let verdicts =
            futures::future::join_all(ballots.iter().map(|b| verifier.verify(ctx.clone(), b.clone()))).await;
        for (v, (verdict, b)) in verdicts.into_iter().zip(&ballots).enumerate() {
            let (back, result) = verdict.unwrap();
            assert_eq!(&back, b);
            if v == 5 {
                assert!(
                    matches!(result, Err(BallotError::SelectionProof { .. })),
                    "{result:?}"
                );
            } else {
                assert_eq!(result, Ok(b.hash(&ctx)));
            }
        }
    }
}

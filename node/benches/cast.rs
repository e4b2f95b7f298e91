//! Cast throughput of a real local 3-node cluster (release `urna-node` processes, durable commits).
//!
//! Creates an election (one contest, 5 options, vote for 1), runs the ceremony with in-memory
//! custodians, pre-encrypts N ballots, then casts them from C concurrent clients spread over all
//! nodes, and prints ballots/s and the p50/p99 latency of acknowledged casts (a receipt comes only
//! after commit on a quorum, flushed, and apply on the answering node's leader).
//!
//! ```sh
//! URNA_BENCH_N=3000 URNA_BENCH_C=64 cargo bench -p urna-node --bench cast
//! ```

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/elect.rs"]
mod elect;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_and_init, Cluster};
use urna_keyceremony::manifest::Manifest;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n = env("URNA_BENCH_N", 2000);
    let conc = env("URNA_BENCH_C", 32);
    let mut c = Cluster::new(3, "");
    start_and_init(&mut c).await;
    let t = Instant::now();
    let e = elect::open_election(&c, "bench", Manifest::simple(&[(5, 1, 1)]), 3, 2, n, 3_600_000).await;
    eprintln!("ceremony and open: {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let e = Arc::new(e);
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let e = e.clone();
            std::thread::spawn(move || {
                (k..n)
                    .step_by(threads)
                    .map(|v| (v, serde_json::to_vec(&elect::ballot(&e, v)).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ballots: Vec<(usize, Vec<u8>)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    ballots.sort_by_key(|(v, _)| *v);
    let ballots: Arc<Vec<Vec<u8>>> = Arc::new(ballots.into_iter().map(|(_, b)| b).collect());
    eprintln!("encrypted {n} ballots in {:.1} s", t.elapsed().as_secs_f64());

    let next = Arc::new(AtomicUsize::new(0));
    let c = Arc::new(c);
    let path = format!("/v1/elections/{}/ballots", e.id);
    let t = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|k| {
            let (c, next, ballots, path) = (c.clone(), next.clone(), ballots.clone(), path.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut retries = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = ballots.get(i) else { break };
                    let mut node = (k % 3) as u64 + 1;
                    let start = Instant::now();
                    loop {
                        match elect::post_raw(&c, node, &path, None, b.clone()).await {
                            Some((200, _)) => break,
                            Some((503, _)) | None => {
                                retries += 1;
                                node = node % 3 + 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Some((s, v)) => panic!("cast {i}: {s} {v}"),
                        }
                    }
                    lat.push(start.elapsed());
                }
                (lat, retries)
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let mut retries = 0;
    for t in tasks {
        let (l, r) = t.await.unwrap();
        lat.extend(l);
        retries += r;
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "cast {n} ballots (5 options) from {conc} clients over 3 nodes: {:.0} ballots/s, p50 {:.1} ms, p99 {:.1} ms ({retries} retries, {secs:.1} s)",
        n as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    for id in 1..=3 {
        let text = c
            .http
            .get(c.url(id, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let per = |h: &str| {
            let (s, k) = (
                metric(&text, &format!("{h}_sum")),
                metric(&text, &format!("{h}_count")),
            );
            (k, if k > 0.0 { s / k * 1e3 } else { 0.0 })
        };
        let (ak, am) = per("urna_apply_duration_seconds");
        let (fk, fm) = per("urna_fsync_duration_seconds");
        println!(
            "  node {id}: {ak} apply batches (mean {am:.2} ms, {:.1} entries per batch), {fk} flushes (mean {fm:.2} ms)",
            metric(&text, "urna_applied_index") / ak.max(1.0)
        );
    }
}

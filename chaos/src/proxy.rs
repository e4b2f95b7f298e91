//! One TCP proxy per directed Raft link (node i -> node j), owned by the harness, so partitions need no
//! root: node i sends its Raft RPCs for j to the proxy (`[raft] peer_via`), which passes, drops,
//! blackholes or delays the bytes according to the link's current [`LinkMode`].
//!
//! Semantics, chosen so HTTP framing is never corrupted silently:
//! - `Pass`: bytes flow both ways.
//! - `Blackhole`: bytes vanish (the sender waits for its timeout); a connection that lost bytes is
//!   closed as soon as the link leaves the blackhole, so no half-delivered request is ever resumed.
//! - `Drop(p)`: each chunk, with probability p, kills the connection (the RPC fails at once).
//! - `Delay`: each chunk waits `ms ± jitter` before it is forwarded (order is kept).
//!
//! Random choices come from a ChaCha RNG seeded per link from the run's seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a link does with its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// Forward everything.
    Pass,
    /// Swallow everything.
    Blackhole,
    /// Kill the connection on a chunk with this probability.
    Drop(f64),
    /// Delay every chunk by `ms ± jitter_ms`.
    Delay {
        /// Mean delay.
        ms: u64,
        /// Uniform jitter around the mean.
        jitter_ms: u64,
    },
}

struct Link {
    port: u16,
    mode: watch::Sender<LinkMode>,
    task: JoinHandle<()>,
}

/// The proxies of every directed link between a set of nodes.
pub struct Mesh {
    links: BTreeMap<(u64, u64), Link>,
}

impl Mesh {
    /// Starts a proxy for every ordered pair of `nodes` (id, port): link (i, j) listens on a free port of
    /// 127.0.0.1 and forwards to node j's port.
    pub async fn start(nodes: &[(u64, u16)], seed: u64) -> anyhow::Result<Mesh> {
        let mut links = BTreeMap::new();
        for &(from, _) in nodes {
            for &(to, to_port) in nodes {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let port = listener.local_addr()?.port();
                let (tx, rx) = watch::channel(LinkMode::Pass);
                let rng = ChaCha8Rng::seed_from_u64(seed ^ (from << 32) ^ (to << 8) ^ 0x5eed);
                let rng = Arc::new(Mutex::new(rng));
                let task = tokio::spawn(serve(listener, to_port, rx, rng));
                links.insert((from, to), Link { port, mode: tx, task });
            }
        }
        Ok(Mesh { links })
    }

    /// The proxy port node `from` uses to reach node `to`.
    pub fn port(&self, from: u64, to: u64) -> Option<u16> {
        self.links.get(&(from, to)).map(|l| l.port)
    }

    /// Sets one directed link's mode.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(l) = self.links.get(&(from, to)) {
            l.mode.send_replace(mode);
        }
    }

    /// Every directed link.
    pub fn links(&self) -> Vec<(u64, u64)> {
        self.links.keys().copied().collect()
    }

    /// Blackholes every link between different groups (both directions); links inside a group pass.
    /// Nodes in no group are left as they are.
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let group_of = |id: u64| groups.iter().position(|g| g.contains(&id));
        for &(a, b) in self.links.keys() {
            if let (Some(ga), Some(gb)) = (group_of(a), group_of(b)) {
                let mode = if ga == gb {
                    LinkMode::Pass
                } else {
                    LinkMode::Blackhole
                };
                self.set(a, b, mode);
            }
        }
    }

    /// Cuts one node off from every other (both directions).
    pub fn isolate(&self, id: u64) {
        for &(a, b) in self.links.keys() {
            if a == id || b == id {
                self.set(a, b, LinkMode::Blackhole);
            }
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for l in self.links.values() {
            l.mode.send_replace(LinkMode::Pass);
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for l in self.links.values() {
            l.task.abort();
        }
    }
}

async fn serve(
    listener: TcpListener,
    to_port: u16,
    mode: watch::Receiver<LinkMode>,
    rng: Arc<Mutex<ChaCha8Rng>>,
) {
    // Bounded by the mesh's lifetime: the task is aborted when the mesh is dropped, and each
    // connection task ends when either side closes.
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while let Ok((client, _)) = listener.accept().await {
        conns.retain(|c| !c.is_finished());
        let mode = mode.clone();
        let rng = rng.clone();
        conns.push(tokio::spawn(async move {
            connection(client, to_port, mode, rng).await;
        }));
    }
    for c in conns {
        c.abort();
    }
}

/// Shared per-connection state: whether bytes were swallowed (the connection must then die).
struct ConnState {
    poisoned: std::sync::atomic::AtomicBool,
}

async fn connection(
    client: TcpStream,
    to_port: u16,
    mut mode: watch::Receiver<LinkMode>,
    rng: Arc<Mutex<ChaCha8Rng>>,
) {
    let _ = client.set_nodelay(true);
    // A connection opened into a blackhole swallows until the link heals, then closes.
    if *mode.borrow() == LinkMode::Blackhole {
        let (mut rd, _wr) = client.into_split();
        let mut buf = [0u8; 8192];
        loop {
            tokio::select! {
                r = rd.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return },
                c = mode.changed() => if c.is_err() || *mode.borrow() != LinkMode::Blackhole { return },
            }
        }
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", to_port)).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let state = Arc::new(ConnState {
        poisoned: false.into(),
    });
    let (crd, cwr) = client.into_split();
    let (urd, uwr) = upstream.into_split();
    let up = pump(crd, uwr, mode.clone(), rng.clone(), state.clone());
    let down = pump(urd, cwr, mode, rng, state);
    // Either direction ending ends the connection.
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

async fn pump(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
    rng: Arc<Mutex<ChaCha8Rng>>,
    state: Arc<ConnState>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            c = mode.changed() => {
                if c.is_err() || (state.poisoned.load(Relaxed) && *mode.borrow() != LinkMode::Blackhole) {
                    return;
                }
                continue;
            }
        };
        let current = *mode.borrow();
        if state.poisoned.load(Relaxed) && current != LinkMode::Blackhole {
            return;
        }
        match current {
            LinkMode::Pass => {}
            LinkMode::Blackhole => {
                state.poisoned.store(true, Relaxed);
                continue;
            }
            LinkMode::Drop(p) => {
                let hit = rng
                    .lock()
                    .map(|mut r| r.gen_bool(p.clamp(0.0, 1.0)))
                    .unwrap_or(false);
                if hit {
                    return;
                }
            }
            LinkMode::Delay { ms, jitter_ms } => {
                let j = rng
                    .lock()
                    .map(|mut r| r.gen_range(0..=2 * jitter_ms))
                    .unwrap_or(jitter_ms);
                let d = (ms + j).saturating_sub(jitter_ms);
                tokio::time::sleep(Duration::from_millis(d)).await;
            }
        }
        if wr.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    async fn roundtrip(port: u16, timeout: Duration) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut b = [0u8; 4];
        tokio::time::timeout(timeout, s.read_exact(&mut b))
            .await
            .ok()?
            .ok()?;
        Some(b.to_vec())
    }

    #[tokio::test]
    async fn pass_blackhole_heal_delay() {
        let echo = echo_server().await;
        let mesh = Mesh::start(&[(1, 0), (2, echo)], 7).await.unwrap();
        let p = mesh.port(1, 2).unwrap();
        assert_eq!(roundtrip(p, Duration::from_secs(2)).await.unwrap(), b"ping");
        mesh.partition(&[vec![1], vec![2]]);
        assert!(roundtrip(p, Duration::from_millis(300)).await.is_none());
        mesh.heal();
        assert_eq!(roundtrip(p, Duration::from_secs(2)).await.unwrap(), b"ping");
        mesh.set(
            1,
            2,
            LinkMode::Delay {
                ms: 150,
                jitter_ms: 0,
            },
        );
        let t = std::time::Instant::now();
        assert!(roundtrip(p, Duration::from_secs(2)).await.is_some());
        assert!(t.elapsed() >= Duration::from_millis(300));
        mesh.set(1, 2, LinkMode::Drop(1.0));
        assert!(roundtrip(p, Duration::from_millis(500)).await.is_none());
    }
}

//! A local cluster of real `urna-node` processes on 127.0.0.1, each with its own data directory, config
//! and log file, every Raft link routed through the harness's [`Mesh`] of proxies.
//!
//! Process faults: SIGKILL ([`Cluster::kill`]), SIGSTOP/SIGCONT ([`Cluster::pause`]/[`Cluster::resume`]),
//! restart; a clean SIGTERM stop ([`Cluster::stop`]) before the data is read offline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use urna_client::http::{Client, NodeStatus, RetryPolicy};

use crate::proxy::Mesh;

/// Cluster secret of chaos clusters.
pub const SECRET: &str = "chaos-cluster-secret-0123456789";
/// Token of the `ops` operator (role `cluster`).
pub const OPS_TOKEN: &str = "chaos-ops-token";
/// Token of the `admin` operator (role `admin`).
pub const ADMIN_TOKEN: &str = "chaos-admin-token";

/// Finds `urna-node`: `URNA_NODE_BIN`, else next to the running executable (or its parent, for test
/// executables in `deps/`).
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("URNA_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let name = format!("urna-node{}", std::env::consts::EXE_SUFFIX);
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for _ in 0..2 {
        let p = dir.join(&name);
        if p.exists() {
            return Ok(p);
        }
        dir.pop();
    }
    bail!(
        "urna-node not found next to {} (set URNA_NODE_BIN)",
        exe.display()
    )
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct NodeProc {
    id: u64,
    port: u16,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Nodes configured and started (ids 1..=nodes).
    pub nodes: u64,
    /// Extra lines of the `[raft]` table (e.g. a small snapshot policy).
    pub raft_extra: String,
    /// The `urna-node` binary.
    pub binary: PathBuf,
    /// Seed of the proxies' random choices.
    pub seed: u64,
}

/// A running local cluster; see the module documentation.
pub struct Cluster {
    dir: PathBuf,
    nodes: Vec<NodeProc>,
    binary: PathBuf,
    /// The proxies of every Raft link.
    pub mesh: Mesh,
}

impl Cluster {
    /// Writes every node's config (peers through the mesh) under `dir` and starts the processes. The
    /// cluster is not initialized.
    pub async fn start(spec: &ClusterSpec, dir: &Path) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let ports: Vec<u16> = (0..spec.nodes).map(|_| free_port()).collect::<Result<_, _>>()?;
        let ids: Vec<(u64, u16)> = (1..=spec.nodes).map(|i| (i, ports[i as usize - 1])).collect();
        let mesh = Mesh::start(&ids, spec.seed).await?;
        let mut nodes = Vec::new();
        for &(id, port) in &ids {
            let data_dir = dir.join(format!("data{id}"));
            let via: Vec<String> = ids
                .iter()
                .filter(|(p, _)| *p != id)
                .map(|(p, _)| format!("\"{p}\" = \"127.0.0.1:{}\"", mesh.port(id, *p).unwrap_or(0)))
                .collect();
            let text = format!(
                r#"id = {id}
listen = "127.0.0.1:{port}"
data_dir = "{data}"
cluster_secret = "{SECRET}"

[[operators]]
name = "ops"
role = "cluster"
token = "{OPS_TOKEN}"

[[operators]]
name = "admin"
role = "admin"
token = "{ADMIN_TOKEN}"

[raft]
heartbeat_ms = 100
election_min_ms = 400
election_max_ms = 800
peer_via = {{ {via} }}
{extra}
"#,
                data = data_dir.display(),
                via = via.join(", "),
                extra = spec.raft_extra,
            );
            let config = dir.join(format!("node{id}.toml"));
            std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
            nodes.push(NodeProc {
                id,
                port,
                config,
                data_dir,
                log: dir.join(format!("node{id}.log")),
                child: Mutex::new(None),
            });
        }
        let c = Cluster {
            dir: dir.to_path_buf(),
            nodes,
            binary: spec.binary.clone(),
            mesh,
        };
        for id in c.ids() {
            c.start_node(id)?;
        }
        for id in c.ids() {
            c.wait_serving(id, Duration::from_secs(30)).await?;
        }
        Ok(c)
    }

    /// The cluster's directory (configs, data, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every configured node id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: u64) -> anyhow::Result<&NodeProc> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow!("no node {id}"))
    }

    /// A node's `host:port`.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.node(id).map(|n| n.port).unwrap_or(0))
    }

    /// A node's base URL.
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.addr(id))
    }

    /// A node's data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).map(|n| n.data_dir.clone()).unwrap_or_default()
    }

    /// A node's log file.
    pub fn log(&self, id: u64) -> PathBuf {
        self.node(id).map(|n| n.log.clone()).unwrap_or_default()
    }

    /// A client over the given nodes with a token, default retries and a request timeout.
    pub fn client(&self, ids: &[u64], token: Option<&str>, timeout: Duration) -> anyhow::Result<Client> {
        Ok(Client::new(ids.iter().map(|i| self.url(*i)))?
            .with_token(token.map(str::to_string))
            .with_timeout(timeout)?)
    }

    /// Starts a node's process (it must not be running).
    pub fn start_node(&self, id: u64) -> anyhow::Result<()> {
        let n = self.node(id)?;
        let mut slot = n.child.lock().map_err(|_| anyhow!("poisoned"))?;
        if slot.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&n.config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        *slot = Some(child);
        Ok(())
    }

    /// Whether the harness has a process for the node.
    pub fn is_running(&self, id: u64) -> bool {
        self.node(id)
            .ok()
            .and_then(|n| n.child.lock().ok().map(|c| c.is_some()))
            .unwrap_or(false)
    }

    /// SIGKILL (no clean shutdown); waits for the exit.
    pub fn kill(&self, id: u64) {
        if let Ok(n) = self.node(id) {
            if let Some(mut c) = n.child.lock().ok().and_then(|mut c| c.take()) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn signal(&self, id: u64, sig: &str) -> anyhow::Result<()> {
        let pid = self
            .node(id)?
            .child
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .as_ref()
            .map(|c| c.id())
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()?;
        if !ok.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes (its sockets stay open).
    pub fn pause(&self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "STOP")
    }

    /// SIGCONT.
    pub fn resume(&self, id: u64) -> anyhow::Result<()> {
        self.signal(id, "CONT")
    }

    /// SIGCONT then SIGTERM, waiting up to 10 s for a clean exit (then SIGKILL).
    pub fn stop(&self, id: u64) {
        let _ = self.resume(id);
        let _ = self.signal(id, "TERM");
        let Ok(n) = self.node(id) else { return };
        let Some(mut c) = n.child.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// A node's status (one attempt, 1 s timeout), `None` when it does not answer.
    pub async fn status(&self, id: u64) -> Option<NodeStatus> {
        let c = Client::new([self.url(id)])
            .ok()?
            .with_retry(RetryPolicy::none())
            .with_timeout(Duration::from_secs(1))
            .ok()?;
        c.status_of(&self.url(id)).await.ok()
    }

    /// Waits until a node serves `/v1/status`.
    pub async fn wait_serving(&self, id: u64, limit: Duration) -> anyhow::Result<NodeStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.status(id).await {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "node {id} did not serve within {limit:?} (log {})",
            self.log(id).display()
        )
    }

    /// Initializes the cluster with `members` as voters (through the first of them).
    pub async fn init(&self, members: &[u64]) -> anyhow::Result<()> {
        let map = members.iter().map(|id| (*id, self.addr(*id))).collect();
        let c = self.client(&members[..1], Some(OPS_TOKEN), Duration::from_secs(10))?;
        c.cluster_init(Some(&map)).await?;
        Ok(())
    }

    /// Waits until every node of `among` reports the same leader, one of them; `None` after `limit`.
    pub async fn agreed_leader(&self, among: &[u64], limit: Duration) -> Option<u64> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let mut leader = None;
            let mut ok = true;
            for id in among {
                match self.status(*id).await.and_then(|s| s.leader) {
                    Some(l) if leader.is_none() || leader == Some(l) => leader = Some(l),
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok && leader.is_some_and(|l| among.contains(&l)) {
                return leader;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The current leader without waiting for agreement: a node of `among` that says it leads (the
    /// highest term wins), else the leader the answering node with the highest term knows.
    pub async fn some_leader(&self, among: &[u64]) -> Option<u64> {
        let mut best: Option<(u64, bool, u64)> = None; // (term, says it leads, leader)
        for id in among {
            let Some(s) = self.status(*id).await else { continue };
            let leads = s.role == "leader";
            let Some(l) = (if leads { Some(s.id) } else { s.leader }) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((t, ld, _)) => (t, ld) < (s.term, leads),
            };
            if better {
                best = Some((s.term, leads, l));
            }
        }
        best.map(|b| b.2)
    }

    /// Copies the tail of every node's log to stderr.
    pub fn print_log_tails(&self, lines: usize) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            eprintln!("---- node {} log tail ({}) ----", n.id, n.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.resume(id);
            self.kill(id);
        }
    }
}

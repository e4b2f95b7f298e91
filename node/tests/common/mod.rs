//! Helpers shared by the real-process tests: a local cluster of `urna-node` processes on 127.0.0.1
//! with temporary data directories, and condition waits under a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const SECRET: &str = "test-cluster-secret-0123456789";
pub const OPS: &str = "ops-token-123";
pub const ADMIN: &str = "alice-token-123";
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct NodeProc {
    pub id: u64,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
    pub http: reqwest::Client,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Cluster {
    /// Writes configs for `n` nodes; `raft_extra` is appended to each `[raft]` table.
    pub fn new(n: u64, raft_extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let peers: Vec<String> = (1..=n)
                .filter(|p| *p != id)
                .map(|p| format!("{{ id = {p}, addr = \"127.0.0.1:{}\" }}", ports[p as usize - 1]))
                .collect();
            let text = format!(
                r#"id = {id}
listen = "127.0.0.1:{port}"
data_dir = "{data}"
cluster_secret = "{SECRET}"
peers = [{peers}]

[[operators]]
name = "ops"
role = "cluster"
token = "{OPS}"

[[operators]]
name = "alice"
role = "admin"
token = "{ADMIN}"

[raft]
heartbeat_ms = 100
election_min_ms = 300
election_max_ms = 600
{raft_extra}
"#,
                port = ports[id as usize - 1],
                data = dir.path().join(format!("data{id}")).display(),
                peers = peers.join(", "),
            );
            let config = dir.path().join(format!("node{id}.toml"));
            std::fs::write(&config, text).unwrap();
            nodes.push(NodeProc {
                id,
                port: ports[id as usize - 1],
                config,
                log: dir.path().join(format!("node{id}.log")),
                child: None,
            });
        }
        Cluster {
            dir,
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.node(id).port, path)
    }

    pub fn start(&mut self, id: u64) {
        let n = &mut self.nodes[id as usize - 1];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_urna-node"))
            .arg("--config")
            .arg(&n.config)
            .env("RUST_LOG", "info,openraft=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[id as usize - 1].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits (under the deadline) for a successful exit.
    pub async fn terminate_and_wait(&self, mut child: Child) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let status = wait_for("exit after SIGTERM", || {
            let r = child.try_wait().unwrap();
            async move { r }
        })
        .await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
    }

    pub async fn get(&self, id: u64, path: &str) -> Option<(u16, Value)> {
        let r = self
            .http
            .get(self.url(id, path))
            .bearer_auth(OPS)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, id: u64, path: &str, token: &str, body: Value) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(self.url(id, path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        match self.get(id, "/v1/status").await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// A note written through node `id`, retried (under the deadline) while the cluster elects.
    pub async fn write_note(&self, id: u64, text: &str) -> Value {
        wait_for(&format!("note {text:?} through node {id}"), || async {
            match self.post(id, "/v1/notes", ADMIN, json!({ "text": text })).await {
                Some((200, v)) => Some(v),
                Some((503, _)) | None => None,
                Some((s, v)) => panic!("writing through node {id}: {s} {v}"),
            }
        })
        .await
    }

    pub async fn leader(&self, among: &[u64]) -> u64 {
        wait_for("an agreed leader", || async {
            let mut leader = None;
            for id in among {
                let s = self.status(*id).await?;
                let l = s["leader"].as_u64()?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            leader.filter(|l| among.contains(l))
        })
        .await
    }

    /// Waits until all `ids` applied the same index (at least `min`) with the same digest; checks it
    /// against `/v1/digest` too. Returns (index, digest).
    pub async fn converged(&self, ids: &[u64], min: u64) -> (u64, String) {
        let (index, digest) = wait_for("converged digests", || async {
            let mut seen: Option<(u64, String)> = None;
            for id in ids {
                let s = self.status(*id).await?;
                let cur = (s["applied_index"].as_u64()?, s["digest"].as_str()?.to_string());
                if cur.0 < min || seen.as_ref().is_some_and(|x| *x != cur) {
                    return None;
                }
                seen = Some(cur);
            }
            seen
        })
        .await;
        for id in ids {
            let (code, v) = self.get(*id, &format!("/v1/digest?index={index}")).await.unwrap();
            assert_eq!(code, 200);
            assert_eq!(
                v["digest"].as_str().unwrap(),
                digest,
                "node {id} digest at {index}"
            );
        }
        (index, digest)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- node {} log tail ----", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
            eprintln!("(cluster directory {})", self.dir.path().display());
        }
    }
}

pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn start_and_init(c: &mut Cluster) -> u64 {
    for id in 1..=c.nodes.len() as u64 {
        c.start(id);
    }
    for id in 1..=c.nodes.len() as u64 {
        wait_for("healthz", || async {
            c.get(id, "/healthz").await.filter(|(s, _)| *s == 200)
        })
        .await;
    }
    let (code, v) = c.post(1, "/v1/cluster/init", OPS, json!({})).await.unwrap();
    assert_eq!(code, 200, "{v}");
    let all: Vec<u64> = (1..=c.nodes.len() as u64).collect();
    c.leader(&all).await
}

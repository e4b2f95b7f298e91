//! Real-process cluster tests: three `urna-node` processes on 127.0.0.1 with temporary data
//! directories. Every wait is a condition polled under a deadline, never a fixed sleep.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SECRET: &str = "test-cluster-secret-0123456789";
const OPS: &str = "ops-token-123";
const ADMIN: &str = "alice-token-123";
const DEADLINE: Duration = Duration::from_secs(30);

struct NodeProc {
    id: u64,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Cluster {
    /// Writes configs for `n` nodes; `raft_extra` is appended to each `[raft]` table.
    fn new(n: u64, raft_extra: &str) -> Cluster {
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

    fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[id as usize - 1]
    }

    fn url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.node(id).port, path)
    }

    fn start(&mut self, id: u64) {
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
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[id as usize - 1].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits (under the deadline) for a successful exit.
    async fn terminate_and_wait(&self, mut child: Child) {
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

    async fn get(&self, id: u64, path: &str) -> Option<(u16, Value)> {
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

    async fn post(&self, id: u64, path: &str, token: &str, body: Value) -> Option<(u16, Value)> {
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

    async fn status(&self, id: u64) -> Option<Value> {
        match self.get(id, "/v1/status").await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// A note written through node `id`, retried (under the deadline) while the cluster elects.
    async fn write_note(&self, id: u64, text: &str) -> Value {
        wait_for(&format!("note {text:?} through node {id}"), || async {
            match self.post(id, "/v1/notes", ADMIN, json!({ "text": text })).await {
                Some((200, v)) => Some(v),
                Some((503, _)) | None => None,
                Some((s, v)) => panic!("writing through node {id}: {s} {v}"),
            }
        })
        .await
    }

    async fn leader(&self, among: &[u64]) -> u64 {
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
    async fn converged(&self, ids: &[u64], min: u64) -> (u64, String) {
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

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
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

async fn start_and_init(c: &mut Cluster) -> u64 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let mut c = Cluster::new(3, "");
    let leader = start_and_init(&mut c).await;
    for id in 1..=3 {
        wait_for("readyz", || async {
            c.get(id, "/readyz").await.filter(|(s, _)| *s == 200)
        })
        .await;
    }

    // Writes through every node; followers forward to the leader.
    let mut last = 0;
    for id in 1..=3 {
        for k in 0..3 {
            let v = c.write_note(id, &format!("n{id}-{k}")).await;
            let index = v["index"].as_u64().unwrap();
            assert!(index > last);
            last = index;
            assert_eq!(v["reply"]["note"]["seq"].as_u64().unwrap(), (id - 1) * 3 + k + 1);
        }
    }
    let (index, digest) = c.converged(&[1, 2, 3], last).await;
    assert_eq!(index, last);
    assert_eq!(digest.len(), 64);

    // Authentication: operators and the Raft MAC.
    let (code, v) = c.post(1, "/v1/notes", OPS, json!({"text": "x"})).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (code, v) = c
        .post(1, "/v1/notes", "wrong-token", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    for path in ["/raft/vote", "/raft/append", "/raft/snapshot"] {
        let r = c
            .http
            .post(c.url(2, path))
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without MAC");
        let r = c
            .http
            .post(c.url(2, path))
            .header("x-urna-mac", "00".repeat(32))
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong MAC");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthenticated");
    }
    let (code, v) = c.post(1, "/v1/notes", ADMIN, json!({"nope": 1})).await.unwrap();
    assert_eq!((code, v["error"]["code"].as_str()), (400, Some("bad_request")));
    let (code, _) = c.get(1, "/v1/digest?index=100000").await.unwrap();
    assert_eq!(code, 404);
    // Apply is the judge: a note refused by apply is a recorded no-op with its code relayed (409),
    // and it still advances the digest on every node.
    let (code, v) = c
        .post(2, "/v1/notes", ADMIN, json!({"text": "x".repeat(5000)}))
        .await
        .unwrap();
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("note_too_long")),
        "{v}"
    );
    let (after_reject, d2) = c.converged(&[1, 2, 3], last + 1).await;
    assert_ne!(d2, digest);
    last = after_reject;
    // Body size limit: JSON 413.
    let big = json!({"text": "y".repeat(2 * 1024 * 1024)});
    let (code, v) = c.post(1, "/v1/notes", ADMIN, big).await.unwrap();
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{v}"
    );

    // SIGKILL the leader: writes continue after re-election.
    c.kill(leader);
    let rest: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let new_leader = c.leader(&rest).await;
    assert_ne!(new_leader, leader);
    for id in &rest {
        for k in 0..3 {
            let v = c.write_note(*id, &format!("after-{id}-{k}")).await;
            last = v["index"].as_u64().unwrap();
        }
    }
    let (_, _) = c.converged(&rest, last).await;

    // Restart the old leader: it catches up and the digests agree.
    c.start(leader);
    let (index, _) = c.converged(&[1, 2, 3], last).await;
    assert!(index >= last);
    // History is identical on all nodes at an early index too.
    let mut digests = Vec::new();
    for id in 1..=3 {
        digests.push(c.get(id, "/v1/digest?index=3").await.unwrap().1["digest"].clone());
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");

    // SIGTERM: a clean, successful exit.
    let child = c.nodes[leader as usize - 1].child.take().unwrap();
    c.terminate_and_wait(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let mut c = Cluster::new(
        3,
        "snapshot_logs_since_last = 5\nmax_in_snapshot_log_to_keep = 0\nsnapshot_chunk_bytes = 256",
    );
    let leader = start_and_init(&mut c).await;
    c.write_note(leader, "first").await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (before, _) = c.converged(&[1, 2, 3], 1).await;
    c.kill(follower);

    let mut last = 0;
    for k in 0..30 {
        last = c.write_note(leader, &format!("while-down-{k}")).await["index"]
            .as_u64()
            .unwrap();
    }
    // The leader purged beyond what the follower has, so only a snapshot can bring it back.
    wait_for("the leader to purge its log", || async {
        let s = c.status(leader).await?;
        s["purged_index"].as_u64().filter(|p| *p > before + 5)
    })
    .await;

    c.start(follower);
    let (index, _) = c.converged(&[1, 2, 3], last).await;
    assert!(index >= last);
    let s = c.status(follower).await.unwrap();
    assert!(s["snapshot_index"].as_u64().unwrap() > before, "{s}");
    let log = std::fs::read_to_string(&c.node(follower).log).unwrap();
    assert!(
        log.contains("installed snapshot"),
        "the follower should have installed a snapshot"
    );
    // The installed snapshot carried the digest history from before the follower's crash onwards.
    let (code, v) = c
        .get(follower, &format!("/v1/digest?index={}", before + 3))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (_, w) = c
        .get(leader, &format!("/v1/digest?index={}", before + 3))
        .await
        .unwrap();
    assert_eq!(v["digest"], w["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_is_promoted_and_a_voter_is_removed() {
    let mut c = Cluster::new(4, "");
    for id in 1..=4 {
        c.start(id);
    }
    for id in 1..=4 {
        wait_for("healthz", || async {
            c.get(id, "/healthz").await.filter(|(s, _)| *s == 200)
        })
        .await;
    }
    // An uninitialized node knows no leader: 503 no_leader.
    let (code, v) = c
        .post(4, "/v1/notes", ADMIN, json!({"text": "too early"}))
        .await
        .unwrap();
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (503, Some("no_leader")),
        "{v}"
    );
    let members: serde_json::Map<String, Value> = (1..=3)
        .map(|i| (i.to_string(), json!(format!("127.0.0.1:{}", c.node(i).port))))
        .collect();
    let (code, v) = c
        .post(1, "/v1/cluster/init", OPS, json!({ "members": members }))
        .await
        .unwrap();
    assert_eq!(code, 200, "{v}");
    let (code, v) = c.post(1, "/v1/cluster/init", OPS, json!({})).await.unwrap();
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("already_initialized")),
        "{v}"
    );
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    c.write_note(follower, "before the learner").await;
    // Forwarding is one hop: a forwarded write landing on a follower gets 503 with the leader hint.
    let r = c
        .http
        .post(c.url(follower, "/v1/notes"))
        .bearer_auth(ADMIN)
        .header("x-urna-forwarded-by", "9")
        .json(&json!({"text": "second hop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_leader", "{v}");
    assert_eq!(v["error"]["leader"]["id"].as_u64(), Some(leader), "{v}");
    assert_eq!(
        v["error"]["leader"]["addr"].as_str(),
        Some(format!("127.0.0.1:{}", c.node(leader).port).as_str())
    );

    // Cluster operations need the cluster role.
    let (code, _) = c
        .post(
            follower,
            "/v1/cluster/learners",
            ADMIN,
            json!({"id": 4, "addr": "x:1"}),
        )
        .await
        .unwrap();
    assert_eq!(code, 403);
    // Add node 4 as a learner through a follower (forwarded), then promote it.
    let addr4 = format!("127.0.0.1:{}", c.node(4).port);
    let (code, v) = c
        .post(
            follower,
            "/v1/cluster/learners",
            OPS,
            json!({"id": 4, "addr": addr4}),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{v}");
    let (code, v) = c
        .post(
            follower,
            "/v1/cluster/membership",
            OPS,
            json!({"members": [1, 2, 3, 4]}),
        )
        .await
        .unwrap();
    assert_eq!(code, 200, "{v}");
    let last = c.write_note(4, "through the new voter").await["index"]
        .as_u64()
        .unwrap();
    c.converged(&[1, 2, 3, 4], last).await;
    let (code, v) = c.get(leader, "/v1/cluster").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(v["voters"], json!([1, 2, 3, 4]), "{v}");

    // Remove a voter that is not the leader.
    let gone = (1..=4).find(|i| *i != leader && *i != 4).unwrap();
    let keep: Vec<u64> = (1..=4).filter(|i| *i != gone).collect();
    let (code, v) = c
        .post(leader, "/v1/cluster/membership", OPS, json!({"members": keep}))
        .await
        .unwrap();
    assert_eq!(code, 200, "{v}");
    let last = c.write_note(leader, "after removal").await["index"]
        .as_u64()
        .unwrap();
    c.converged(&keep, last).await;
    let (_, v) = c.get(leader, "/v1/cluster").await.unwrap();
    assert_eq!(v["voters"], json!(keep), "{v}");
}

//! Helpers for the integration tests in `tests/tests/`: the real `urna-node` and `urna` binaries, a
//! cluster of real node processes on free ports with temporary data directories, and a complete election
//! record built in memory ([`election`]).
//!
//! Every wait is a condition polled under a deadline ([`wait_for`]); no fixed sleep is an assertion.
//!
//! The binaries are located next to the test executable (`target/<profile>/`). Because a test run does
//! not build other packages' binaries, [`bin`] runs `cargo build -p urna-node -p urna-client --bins` once
//! per test process (a no-op when they are up to date, and it keeps a stale binary from being tested).
//! Set `URNA_TEST_NO_BUILD=1` to skip that step and use the binaries as they are.

pub mod election;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use urna_client::http::{Client, NodeStatus};

/// Cluster secret of test clusters.
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";
/// Token of the `ops` operator (role `cluster`).
pub const OPS_TOKEN: &str = "ops-token-123";
/// Token of the `alice` operator (role `admin`).
pub const ADMIN_TOKEN: &str = "alice-token-123";
/// Default deadline of a wait.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`, panicking with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory holding the workspace's binaries for this test build (`target/debug` or
/// `target/release`): the test executable lives in its `deps/` subdirectory.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn build_binaries() -> Result<(), String> {
    if std::env::var_os("URNA_TEST_NO_BUILD").is_some() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "urna-node", "-p", "urna-client", "--bins"])
        .arg("--manifest-path")
        .arg(&manifest);
    if bin_dir().ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo build: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build of the binaries failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The path of a workspace binary (`urna-node`, `urna`), built once per test process if needed.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if let Err(e) = BUILT.get_or_init(build_binaries) {
        assert!(path.exists(), "{e}");
    }
    assert!(path.exists(), "binary {} not found", path.display());
    path
}

/// The output of one `urna` run.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A `urna` command with a clean environment (no `URNA_NODES`/`URNA_TOKEN` from the caller).
pub fn urna_cmd() -> Command {
    let mut c = Command::new(bin("urna"));
    c.env_remove("URNA_NODES")
        .env_remove("URNA_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// Runs `urna` with `args` and collects its output.
pub fn urna<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    urna_cmd()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run urna: {e}"))
        .into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// One node process of a [`TestCluster`].
#[derive(Debug)]
pub struct TestNode {
    /// Node id (1-based).
    pub id: u64,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Its configuration file.
    pub config: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    child: Option<Child>,
}

/// A cluster of real `urna-node` processes on 127.0.0.1 in a temporary directory. Dropping it kills them
/// (and prints their log tails when the test is panicking).
pub struct TestCluster {
    dir: tempfile::TempDir,
    nodes: Vec<TestNode>,
    rt: tokio::runtime::Runtime,
}

impl TestCluster {
    /// Writes the configuration of `n` nodes (ids 1..=n, operators `ops` and `alice`, fast Raft timing)
    /// without starting them.
    pub fn configure(n: u64) -> TestCluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let peers: Vec<String> = (1..=n)
                .filter(|p| *p != id)
                .map(|p| format!("{{ id = {p}, addr = \"127.0.0.1:{}\" }}", ports[p as usize - 1]))
                .collect();
            let data_dir = dir.path().join(format!("data{id}"));
            let text = format!(
                r#"id = {id}
listen = "127.0.0.1:{port}"
data_dir = "{data}"
cluster_secret = "{CLUSTER_SECRET}"
peers = [{peers}]

[[operators]]
name = "ops"
role = "cluster"
token = "{OPS_TOKEN}"

[[operators]]
name = "alice"
role = "admin"
token = "{ADMIN_TOKEN}"

[raft]
heartbeat_ms = 100
election_min_ms = 300
election_max_ms = 600
"#,
                port = ports[id as usize - 1],
                data = data_dir.display(),
                peers = peers.join(", "),
            );
            let config = dir.path().join(format!("node{id}.toml"));
            std::fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
            nodes.push(TestNode {
                id,
                port: ports[id as usize - 1],
                config,
                data_dir,
                log: dir.path().join(format!("node{id}.log")),
                child: None,
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        TestCluster { dir, nodes, rt }
    }

    /// Configures and starts `n` nodes, initializes the cluster through node 1 and waits for a leader
    /// that every node agrees on.
    pub fn start(n: u64) -> TestCluster {
        let mut c = Self::configure(n);
        c.start_all();
        c.init();
        c.wait_leader(&c.ids());
        c.wait_node_keys(&c.ids());
        c
    }

    /// Waits until every node of `ids` sees all of their signing keys registered in the log. Nodes
    /// register their keys through the log by themselves after joining; tests that compare exact log
    /// indexes wait for that first so no such entry lands in the middle of them.
    pub fn wait_node_keys(&self, ids: &[u64]) {
        let client = self.client(None);
        wait_for("registered node keys", DEADLINE, || {
            for id in ids {
                let keys: urna_client::head::NodeKeys = self
                    .block_on(client.get_json_from(&self.url(*id), "/v1/nodes"))
                    .ok()?;
                if !ids.iter().all(|n| keys.nodes.iter().any(|k| k.node == *n)) {
                    return None;
                }
            }
            Some(())
        });
    }

    /// The temporary directory holding configs, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// A node.
    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[id as usize - 1]
    }

    /// A node's base URL.
    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.node(id).port)
    }

    /// Every node's base URL, in id order.
    pub fn urls(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.url(id)).collect()
    }

    /// `--node URL` arguments for every node.
    pub fn node_args(&self) -> Vec<String> {
        self.urls()
            .into_iter()
            .flat_map(|u| ["--node".to_string(), u])
            .collect()
    }

    /// Runs a future on the cluster's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A client over every node with a token.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(self.urls())
            .unwrap_or_else(|e| panic!("client: {e}"))
            .with_token(token.map(str::to_string))
    }

    /// Starts (or restarts) a node's process.
    pub fn start_node(&mut self, id: u64) {
        let n = &mut self.nodes[id as usize - 1];
        assert!(n.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
        let child = Command::new(bin("urna-node"))
            .arg("--config")
            .arg(&n.config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start urna-node: {e}"));
        n.child = Some(child);
    }

    /// Starts every node and waits until each serves `/v1/status`.
    pub fn start_all(&mut self) {
        for id in self.ids() {
            self.start_node(id);
        }
        for id in self.ids() {
            self.wait_serving(id);
        }
    }

    /// Waits until a node answers `/v1/status`.
    pub fn wait_serving(&self, id: u64) -> NodeStatus {
        wait_for(&format!("node {id} to serve"), DEADLINE, || self.status(id))
    }

    /// A node's status, `None` when it does not answer.
    pub fn status(&self, id: u64) -> Option<NodeStatus> {
        let c = self.client(None);
        self.block_on(c.status_of(&self.url(id))).ok()
    }

    /// Kills a node with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[id as usize - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and restarts a node, waiting until it serves again.
    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.start_node(id);
        self.wait_serving(id);
    }

    /// Initializes the cluster through node 1 (its configured peers become the members).
    pub fn init(&self) {
        let c = Client::new([self.url(1)])
            .unwrap_or_else(|e| panic!("client: {e}"))
            .with_token(Some(OPS_TOKEN.into()));
        if let Err(e) = self.block_on(c.cluster_init(None)) {
            panic!("cluster init: {e}");
        }
    }

    /// Waits until every node of `among` reports the same leader, which is one of them.
    pub fn wait_leader(&self, among: &[u64]) -> u64 {
        wait_for("an agreed leader", DEADLINE, || {
            let mut leader = None;
            for id in among {
                let l = self.status(*id)?.leader?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            leader.filter(|l| among.contains(l))
        })
    }

    /// Waits until all `ids` have applied the same index (at least `min`) with the same digest; returns
    /// (index, digest).
    pub fn wait_converged(&self, ids: &[u64], min: u64) -> (u64, String) {
        wait_for("converged digests", DEADLINE, || {
            let mut seen: Option<(u64, String)> = None;
            for id in ids {
                let s = self.status(*id)?;
                let cur = (s.applied_index?, s.digest);
                if cur.0 < min || seen.as_ref().is_some_and(|x| *x != cur) {
                    return None;
                }
                seen = Some(cur);
            }
            seen
        })
    }

    /// Writes a note (admin) through the client (leader discovery and retries); returns its log index.
    pub fn write_note(&self, text: &str) -> u64 {
        let c = self.client(Some(ADMIN_TOKEN));
        let body = serde_json::json!({ "text": text });
        let ack: serde_json::Value = self
            .block_on(c.post_json("/v1/notes", &body))
            .unwrap_or_else(|e| panic!("writing note {text:?}: {e}"));
        ack["index"]
            .as_u64()
            .unwrap_or_else(|| panic!("note answer without index: {ack}"))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("---- node {} log tail ----", n.id);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Offline tampering: flips one bit of the digest a stopped node stored for `index` in its sled database
/// (tree `sm/digests`, big-endian index keys). When `index` is the node's last applied entry, the current
/// digest in `sm/meta` (the trailing 32 bytes of its bincode state) is flipped the same way, so entries the
/// node applies later chain from the altered digest and diverge too. The node must not be running.
pub fn tamper_stored_digest(data_dir: &Path, index: u64) {
    let db = sled::Config::new()
        .path(data_dir.join("db"))
        .open()
        .unwrap_or_else(|e| panic!("opening {}: {e}", data_dir.display()));
    let tree = db
        .open_tree("sm/digests")
        .unwrap_or_else(|e| panic!("digest tree: {e}"));
    let key = index.to_be_bytes();
    let original = tree
        .get(key)
        .unwrap_or_else(|e| panic!("reading digest {index}: {e}"))
        .unwrap_or_else(|| panic!("no stored digest at index {index}"))
        .to_vec();
    let mut d = original.clone();
    d[0] ^= 0x01;
    tree.insert(key, d)
        .unwrap_or_else(|e| panic!("writing digest {index}: {e}"));
    let meta = db
        .open_tree("sm/meta")
        .unwrap_or_else(|e| panic!("meta tree: {e}"));
    if let Some(state) = meta
        .get(b"state")
        .unwrap_or_else(|e| panic!("reading the state: {e}"))
    {
        let mut state = state.to_vec();
        let at = state.len().saturating_sub(32);
        if state.len() >= 32 && state[at..] == original[..] {
            state[at] ^= 0x01;
            meta.insert(b"state", state)
                .unwrap_or_else(|e| panic!("writing the state: {e}"));
        }
    }
    db.flush()
        .unwrap_or_else(|e| panic!("flushing {}: {e}", data_dir.display()));
}

/// An `urna-ceremony` command with a clean environment (no `URNA_NODES`/`URNA_PASSPHRASE` from the
/// caller).
pub fn ceremony_cmd() -> Command {
    let mut c = Command::new(bin("urna-ceremony"));
    c.env_remove("URNA_NODES")
        .env_remove("URNA_PASSPHRASE")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// Runs `urna-ceremony` with `args` and collects its output.
pub fn ceremony<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    ceremony_cmd()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run urna-ceremony: {e}"))
        .into()
}

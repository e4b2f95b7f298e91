//! `urna demo`: a complete election on a local cluster of real `urna-node` processes (design 7).
//!
//! Starts the nodes in a temporary directory with generated configs (cluster secret, operator tokens),
//! initializes the cluster, creates an election, runs the key ceremony with local in-process custodians
//! (every message posted over HTTP, rehearsal included), generates credentials, casts ballots from
//! concurrent voters spread over all nodes, challenges a few, closes when the window ends, tallies with
//! exactly a quorum of custodians, prints the certified result next to the true counts, verifies the
//! election record and checks that the nodes' digests agree.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use serde::Serialize;
use urna_keyceremony::ballot::{encrypt_ballot, spoil, verify_spoiled, EncryptedBallot, PlaintextBallot};
use urna_keyceremony::blsttc::SecretKey;
use urna_keyceremony::ceremony::{
    CeremonyState, Custodian, CustodianSecrets, Phase as CPhase, SignedCeremonyMessage,
};
use urna_keyceremony::credential::{CredentialCode, PublicCredential};
use urna_keyceremony::election::{Custodian as Registered, IdentityKey};
use urna_keyceremony::elgamal::Accumulator;
use urna_keyceremony::manifest::{Contest, ContestOption, Manifest};
use urna_keyceremony::tally::{self, TallyContext, WireSignatureShare};

use super::election::now_ms;
use super::observe::observe;
use super::output::Table;
use super::verify::verify_bytes;
use super::voter::ballot_context;
use super::{print_json, CmdResult, Failure, Globals};
use crate::http::{self, Client, RetryPolicy};
use crate::wire::{
    CreateElectionRequest, ElectionPhase, Receipt, SharePurpose, SignatureShareRequest,
    SignedPartialDecryption,
};

const EXAMPLES: &str = "\
Examples:
  urna demo                          # 1000 voters, 3 nodes, 5 custodians with quorum 3
  urna demo --voters 50 --exit       # a quick run that stops the cluster when done
  urna demo --voters 20 --exit --json
  URNA_NODE_BIN=target/release/urna-node urna demo --nodes 5

The node binary is `urna-node` next to this `urna` executable (or URNA_NODE_BIN). The cluster runs in a
temporary directory and stays up (observer page address printed) until Ctrl-C, unless --exit.
Exit status 0 when the certified result equals the true counts, the certificate and the record verify
and the nodes agree; 1 otherwise; 2 on a usage error.";

/// `urna demo`
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct DemoArgs {
    /// Number of voters (each casts one ballot).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub voters: u64,
    /// Number of nodes.
    #[arg(long = "nodes", id = "node_count", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub node_count: u64,
    /// Number of custodians.
    #[arg(long, default_value_t = 5)]
    pub custodians: usize,
    /// Quorum of custodians needed to decrypt.
    #[arg(long, default_value_t = 3)]
    pub quorum: usize,
    /// How many Benaloh challenges (spoiled ballots) to post.
    #[arg(long, default_value_t = 3)]
    pub challenges: usize,
    /// Concurrent voters.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub concurrency: u64,
    /// Length of the voting window from the election's creation, in seconds (default: sized to --voters).
    #[arg(long, value_name = "SECS")]
    pub window: Option<u64>,
    /// Stop the cluster when done instead of waiting for Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// The demo's election id.
pub const DEMO_ELECTION: &str = "demo";

/// Verdict of the record verification step.
#[derive(Debug, Clone, Serialize)]
pub struct RecordVerdict {
    /// `passed`, `failed`, or `error` (the record could not be fetched).
    pub status: String,
    /// Number of checks run.
    pub checks: usize,
    /// Names of failed checks.
    pub failed: Vec<String>,
    /// A short explanation.
    pub detail: String,
}

/// The JSON summary of `urna demo --json`.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// The election id.
    pub election_id: String,
    /// The nodes' URLs.
    pub nodes: Vec<String>,
    /// The cluster's temporary directory (configs, data, logs).
    pub dir: String,
    /// Voters.
    pub voters: u64,
    /// Ballots with a receipt.
    pub cast: u64,
    /// Ballots refused (e.g. after the window closed).
    pub refused: u64,
    /// Challenges accepted by the node and verified.
    pub challenges: u64,
    /// Contest ids, in manifest order.
    pub contests: Vec<String>,
    /// The true counts of the cast ballots, per contest and option.
    pub true_counts: Vec<Vec<u64>>,
    /// The certified counts.
    pub certified_counts: Option<Vec<Vec<u64>>>,
    /// Whether the certified counts equal the true counts.
    pub result_matches: bool,
    /// Whether the certificate verifies under the election's signing key.
    pub certificate_verified: bool,
    /// Custodians that decrypted and signed (0-based).
    pub tally_custodians: Vec<usize>,
    /// The record verification.
    pub verification: RecordVerdict,
    /// Whether the nodes' digests agree at a common index.
    pub nodes_agree: bool,
    /// The common index of the digest comparison.
    pub common_index: Option<u64>,
    /// Seconds per step.
    pub timings: BTreeMap<String, f64>,
    /// Ballots per second while casting.
    pub cast_rate: f64,
    /// Seconds from start to the verified result.
    pub total_seconds: f64,
    /// True when everything checked out.
    pub ok: bool,
}

/// Where to find `urna-node`: `URNA_NODE_BIN`, else next to the running executable.
pub fn node_binary() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("URNA_NODE_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Failure::usage(format!(
                "URNA_NODE_BIN={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot locate this executable: {e}")))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let p = dir.join(format!("urna-node{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        return Ok(p);
    }
    // Under `cargo run`, build the node binary of the same profile once.
    if let (Some(cargo), Some(manifest)) = (std::env::var_os("CARGO"), std::env::var_os("CARGO_MANIFEST_DIR"))
    {
        let release = dir.ends_with("release");
        eprintln!(
            "==> Building urna-node (cargo build{} -p urna-node)",
            if release { " --release" } else { "" }
        );
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "urna-node"])
            .arg("--manifest-path")
            .arg(Path::new(&manifest).join("../Cargo.toml"));
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        if ok && p.is_file() {
            return Ok(p);
        }
    }
    Err(Failure::usage(format!(
        "urna-node not found next to {} (build it: cargo build --release -p urna-node, or set URNA_NODE_BIN)",
        exe.display()
    )))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::failed(format!("no free local port: {e}")))
}

/// A local cluster of `urna-node` processes; dropping it stops them.
struct LocalCluster {
    dir: Option<tempfile::TempDir>,
    /// Keep the directory (configs, logs) when dropped: true until the demo succeeds.
    keep: bool,
    path: PathBuf,
    children: Vec<Child>,
    urls: Vec<String>,
    logs: Vec<PathBuf>,
    admin_token: String,
    cluster_token: String,
}

impl LocalCluster {
    fn start(bin: &Path, n: u64) -> Result<LocalCluster, Failure> {
        let dir = tempfile::Builder::new()
            .prefix("urna-demo-")
            .tempdir()
            .map_err(|e| Failure::failed(format!("cannot make a temporary directory: {e}")))?;
        let secret = random_hex(32);
        let admin_token = random_hex(24);
        let cluster_token = random_hex(24);
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let mut c = LocalCluster {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
            keep: true,
            children: Vec::new(),
            urls: ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect(),
            logs: Vec::new(),
            admin_token,
            cluster_token,
        };
        for id in 1..=n {
            let peers: Vec<String> = (1..=n)
                .filter(|p| *p != id)
                .map(|p| format!("{{ id = {p}, addr = \"127.0.0.1:{}\" }}", ports[p as usize - 1]))
                .collect();
            let data = c.path.join(format!("data{id}"));
            let text = format!(
                "id = {id}\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\ncluster_secret = \"{secret}\"\n\
                 peers = [{peers}]\n\n[[operators]]\nname = \"demo-admin\"\nrole = \"admin\"\ntoken = \"{admin}\"\n\n\
                 [[operators]]\nname = \"demo-ops\"\nrole = \"cluster\"\ntoken = \"{ops}\"\n",
                port = ports[id as usize - 1],
                data = data.display().to_string(),
                peers = peers.join(", "),
                admin = c.admin_token,
                ops = c.cluster_token,
            );
            let config = c.path.join(format!("node{id}.toml"));
            write_private(&config, &text)?;
            let log_path = c.path.join(format!("node{id}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| Failure::failed(format!("cannot create {}: {e}", log_path.display())))?;
            let err = log
                .try_clone()
                .map_err(|e| Failure::failed(format!("cannot open {}: {e}", log_path.display())))?;
            let child = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .env(
                    "RUST_LOG",
                    std::env::var("URNA_DEMO_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .map_err(|e| Failure::failed(format!("cannot start {}: {e}", bin.display())))?;
            c.children.push(child);
            c.logs.push(log_path);
        }
        Ok(c)
    }

    /// The last lines of a node's log, for an error message.
    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    fn check_alive(&mut self) -> Result<(), Failure> {
        for i in 0..self.children.len() {
            if let Ok(Some(st)) = self.children[i].try_wait() {
                return Err(Failure::failed(format!(
                    "node {} exited ({st}): {}",
                    i + 1,
                    self.log_tail(i)
                )));
            }
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            if let Some(d) = self.dir.take() {
                eprintln!(
                    "urna: the demo cluster's configs, data and logs are kept in {}",
                    d.keep().display()
                );
            }
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))
}

/// Progress display on stderr, hidden with --json or when stderr is not a terminal.
struct Ui {
    json: bool,
    bars: bool,
}

impl Ui {
    fn step(&self, msg: &str) {
        if !self.json {
            eprintln!("==> {msg}");
        }
    }

    fn bar(&self, len: u64, msg: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let pb = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "    {msg:<12} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed_precise}, eta {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_message(msg.to_string());
        pb
    }

    fn spinner(&self, msg: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new_spinner();
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }
}

fn failed(what: &str) -> impl Fn(http::Error) -> Failure + '_ {
    move |e| Failure::failed(format!("{what}: {e}"))
}

/// Polls `f` every 100 ms until it returns `Some`, failing after `deadline`.
async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            return Err(Failure::failed(format!(
                "timed out after {deadline:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo manifest: a mayor (exactly one of three) and a measure (yes, no, or blank).
pub fn demo_manifest() -> Manifest {
    let opt = |id: &str, label: &str| ContestOption {
        id: id.into(),
        label: label.into(),
    };
    Manifest {
        contests: vec![
            Contest {
                id: "mayor".into(),
                title: "Mayor".into(),
                options: vec![
                    opt("ada", "Ada Lovelace"),
                    opt("grace", "Grace Hopper"),
                    opt("alan", "Alan Turing"),
                ],
                min_selections: 1,
                max_selections: 1,
            },
            Contest {
                id: "measure-a".into(),
                title: "Measure A (more parks)".into(),
                options: vec![opt("yes", "Yes"), opt("no", "No")],
                min_selections: 0,
                max_selections: 1,
            },
        ],
    }
}

/// A random voter's choice for the demo manifest (skewed so the result is not a tie).
fn random_choice<R: Rng>(rng: &mut R) -> Vec<Vec<usize>> {
    let mayor = match rng.gen_range(0..100) {
        0..=44 => 0,
        45..=79 => 1,
        _ => 2,
    };
    let measure = match rng.gen_range(0..100) {
        0..=54 => vec![0],
        55..=89 => vec![1],
        _ => vec![],
    };
    vec![vec![mayor], measure]
}

/// Posts a custodian's message through "its" node (custodian j uses node j mod n).
async fn post_msg(nodes: &[Client], id: &str, j: usize, m: &SignedCeremonyMessage) -> Result<(), Failure> {
    nodes[j % nodes.len()]
        .post_ceremony(id, m)
        .await
        .map(|_| ())
        .map_err(|e| Failure::failed(format!("custodian {j}'s {} message: {e}", m.body.kind())))
}

/// Runs the whole key ceremony of election `id` with in-process custodians holding `keys` (custodian
/// j's messages go through `nodes[j % nodes.len()]`), then the rehearsal by the first `quorum` of
/// them. `reader` reads the election and ceremony state. Returns the custodians' secrets and the final
/// ceremony state.
pub async fn run_ceremony(
    reader: &Client,
    nodes: &[Client],
    id: &str,
    keys: &[SecretKey],
    quorum: usize,
) -> Result<(Vec<CustodianSecrets>, CeremonyState), Failure> {
    let admin = reader;
    let params = admin
        .election(id)
        .await
        .map_err(failed("reading the election"))?
        .params;
    let mut custodians = keys
        .iter()
        .enumerate()
        .map(|(j, k)| Custodian::new(k.clone(), j, &params, &mut OsRng))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::failed(format!("custodian setup: {e}")))?;
    let state = || async {
        admin
            .ceremony_state(id)
            .await
            .map_err(failed("reading the ceremony state"))
    };
    for (j, c) in custodians.iter().enumerate() {
        post_msg(nodes, id, j, &c.join()).await?;
    }
    let st = state().await?;
    for (j, c) in custodians.iter_mut().enumerate() {
        let m = c
            .deal(&st, &mut OsRng)
            .map_err(|e| Failure::failed(format!("custodian {j} cannot deal: {e}")))?;
        post_msg(nodes, id, j, &m).await?;
    }
    let st = state().await?;
    for (j, c) in custodians.iter().enumerate() {
        for m in c.check(&st) {
            post_msg(nodes, id, j, &m).await?;
        }
    }
    let mut st = state().await?;
    if st.phase() == CPhase::Answer {
        for (j, c) in custodians.iter().enumerate() {
            let answers = c
                .answer(&st)
                .map_err(|e| Failure::failed(format!("custodian {j} cannot answer: {e}")))?;
            for m in answers {
                post_msg(nodes, id, j, &m).await?;
            }
        }
        st = state().await?;
    }
    if st.phase() != CPhase::Confirm {
        return Err(Failure::failed(format!(
            "the ceremony is in phase {} instead of confirm{}",
            st.phase(),
            st.abort_reason().map(|r| format!(": {r}")).unwrap_or_default()
        )));
    }
    let mut secrets = Vec::new();
    for (j, c) in custodians.iter().enumerate() {
        let s = c
            .derive(&st)
            .map_err(|e| Failure::failed(format!("custodian {j} cannot derive its shares: {e}")))?;
        let m = c
            .confirm(&st, &s, &mut OsRng)
            .map_err(|e| Failure::failed(format!("custodian {j} cannot confirm: {e}")))?;
        post_msg(nodes, id, j, &m).await?;
        secrets.push(s);
    }
    let st = state().await?;
    let (Some(ct), Some(keys_derived)) = (st.rehearsal(), st.keys()) else {
        return Err(Failure::failed(format!(
            "no rehearsal ciphertext after the confirmations (phase {})",
            st.phase()
        )));
    };
    // Rehearsal: a quorum decrypts the published encryption of 1 through the real tally code path.
    let tctx = TallyContext::new(*st.base_hash(), keys.len());
    for j in 0..quorum {
        let kj = tally::key_share(&keys_derived.encryption, j)
            .map_err(|e| Failure::failed(format!("key share {j}: {e}")))?;
        let pd = tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &[*ct], &mut OsRng)
            .map_err(|e| Failure::failed(format!("rehearsal decryption by custodian {j}: {e}")))?;
        let s = SignedPartialDecryption::sign(&keys[j], st.base_hash(), SharePurpose::Rehearsal, j, pd);
        nodes[j % nodes.len()]
            .post_rehearsal_share(id, &s)
            .await
            .map_err(failed("rehearsal share"))?;
    }
    let st = state().await?;
    Ok((secrets, st))
}

/// Casts prepared bytes through node `k`, moving on to the next node when one cannot answer. The same
/// bytes are resent every time, so a retry never counts twice.
async fn cast_spread(
    nodes: &[Client],
    k: usize,
    election: &str,
    bytes: &[u8],
) -> Result<Receipt, http::Error> {
    let mut last = None;
    for attempt in 0..nodes.len() {
        match nodes[(k + attempt) % nodes.len()]
            .cast_bytes(election, bytes)
            .await
        {
            Ok(r) => return Ok(r),
            Err(e @ (http::Error::Exhausted { .. } | http::Error::Unreachable { .. })) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(http::Error::NoNodes))
}

/// Runs `urna demo`.
pub fn run(g: &Globals, a: DemoArgs) -> CmdResult {
    if a.quorum == 0 || a.quorum > a.custodians || a.custodians > 32 {
        return Err(Failure::usage("need 1 <= --quorum <= --custodians <= 32"));
    }
    let bin = node_binary()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(demo(g, a, bin))
}

async fn demo(g: &Globals, a: DemoArgs, bin: PathBuf) -> CmdResult {
    let ui = Ui {
        json: g.json,
        bars: !g.json && std::io::stderr().is_terminal(),
    };
    let t0 = Instant::now();
    let mut timings = BTreeMap::new();
    let mut mark = {
        let mut last = Instant::now();
        move |timings: &mut BTreeMap<String, f64>, name: &str| {
            timings.insert(name.to_string(), last.elapsed().as_secs_f64());
            last = Instant::now();
        }
    };

    // 1. The cluster.
    ui.step(&format!(
        "Starting {} urna-node processes ({})",
        a.node_count,
        bin.display()
    ));
    let mut cluster = LocalCluster::start(&bin, a.node_count)?;
    let urls = cluster.urls.clone();
    let policy = RetryPolicy {
        attempts: 20,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    };
    let probe = Client::new(&urls)?.with_retry(RetryPolicy::none());
    let start = Instant::now();
    for (i, u) in urls.iter().enumerate() {
        while probe.status_of(u).await.is_err() {
            cluster.check_alive()?;
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Failure::failed(format!(
                    "node {} does not serve after 30 s: {}",
                    i + 1,
                    cluster.log_tail(i)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ops = Client::new([urls[0].as_str()])?
        .with_token(Some(cluster.cluster_token.clone()))
        .with_retry(policy.clone());
    ops.cluster_init(None)
        .await
        .map_err(failed("initializing the cluster"))?;
    let all = Client::new(&urls)?.with_retry(policy.clone());
    wait_until("an agreed leader", Duration::from_secs(30), || async {
        let st = all.status_all().await;
        let leaders: Vec<Option<u64>> = st
            .iter()
            .map(|(_, r)| r.as_ref().ok().and_then(|s| s.leader))
            .collect();
        (leaders.iter().all(|l| l.is_some() && *l == leaders[0])).then_some(())
    })
    .await?;
    mark(&mut timings, "cluster");

    let admin = Client::new(&urls)?
        .with_token(Some(cluster.admin_token.clone()))
        .with_retry(policy.clone());
    // One client per node (no token) for custodians and voters: requests spread over the nodes and
    // followers forward writes to the leader.
    let nodes: Vec<Client> = urls
        .iter()
        .map(|u| Client::new([u.as_str()]).map(|c| c.with_retry(policy.clone())))
        .collect::<Result<_, _>>()?;

    // 2. Credentials and the election.
    let voters = a.voters as usize;
    ui.step(&format!(
        "Creating election {DEMO_ELECTION:?}: {} custodians (quorum {}), {voters} voter credentials",
        a.custodians, a.quorum
    ));
    let codes: Vec<CredentialCode> = (0..voters).map(|_| CredentialCode::random(&mut OsRng)).collect();
    let roll: Vec<PublicCredential> = codes.iter().map(CredentialCode::public).collect();
    let keys: Vec<SecretKey> = (0..a.custodians).map(|_| SecretKey::random()).collect();
    let window_ms = match a.window {
        Some(s) => s as i64 * 1000,
        // Sized to N: ceremony and encryption, then casting at a conservative rate.
        None => {
            // Measured on 2 shared cores with release builds: ceremony ~4 s, encryption ~2.2 ms and
            // casting ~8 ms per ballot; the base and per-ballot budget leave about a 2x margin.
            let (base, per) = if cfg!(debug_assertions) {
                (8_000, 60)
            } else {
                (8_000, 16)
            };
            base + per * voters as i64
        }
    };
    let created = now_ms();
    let closes_at = created + window_ms;
    const ROLL_CHUNK: usize = 5000;
    let req = CreateElectionRequest {
        election_id: DEMO_ELECTION.into(),
        manifest: demo_manifest(),
        custodians: keys
            .iter()
            .enumerate()
            .map(|(j, k)| Registered {
                name: format!("custodian-{}", j + 1),
                identity_key: IdentityKey(k.public_key()),
            })
            .collect(),
        quorum: a.quorum,
        opens_at: created - 1_000,
        closes_at,
        min_ballots: Some(10.min(a.voters)),
        ceremony_deadlines: None,
        roll: roll[..voters.min(ROLL_CHUNK)].to_vec(),
    };
    admin
        .create_election(&req)
        .await
        .map_err(failed("creating the election"))?;
    for chunk in roll.get(ROLL_CHUNK..).unwrap_or_default().chunks(ROLL_CHUNK) {
        admin
            .add_roll(DEMO_ELECTION, chunk)
            .await
            .map_err(failed("adding to the roll"))?;
    }
    mark(&mut timings, "create");

    // 3. The key ceremony.
    ui.step("Key ceremony: join, deal, check, confirm, rehearsal (every message over HTTP)");
    let sp = ui.spinner("key ceremony");
    let (secrets, st) = run_ceremony(&admin, &nodes, DEMO_ELECTION, &keys, a.quorum).await?;
    sp.finish_and_clear();
    let summary = admin
        .election(DEMO_ELECTION)
        .await
        .map_err(failed("reading the election"))?;
    if summary.phase != ElectionPhase::Ready {
        return Err(Failure::failed(format!(
            "the election is {} after the ceremony, not ready",
            summary.phase
        )));
    }
    let derived = st
        .keys()
        .cloned()
        .ok_or_else(|| Failure::failed("the ceremony derived no keys"))?;
    let ctx = Arc::new(ballot_context(&summary)?);
    if !g.json {
        let k = summary.encryption_key.clone().unwrap_or_default();
        eprintln!(
            "    ready: fingerprint of Q {}, election key {}..",
            summary.fingerprint,
            k.get(..16).unwrap_or(&k)
        );
    }
    mark(&mut timings, "ceremony");

    // 4. Voters encrypt locally.
    ui.step(&format!("{voters} voters encrypt their ballots locally"));
    let bar = ui.bar(voters as u64, "encrypting");
    let mut rng = rand::thread_rng();
    let choices: Vec<Vec<Vec<usize>>> = (0..voters).map(|_| random_choice(&mut rng)).collect();
    let codes = Arc::new(codes);
    let choices = Arc::new(choices);
    let workers = 2usize;
    let mut handles = Vec::new();
    for w in 0..workers {
        let (ctx, codes, choices, bar) = (ctx.clone(), codes.clone(), choices.clone(), bar.clone());
        handles.push(tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for v in (w..codes.len()).step_by(workers) {
                let p =
                    PlaintextBallot::from_selected(ctx.manifest(), &choices[v]).map_err(|e| e.to_string())?;
                let (b, _) = encrypt_ballot(&ctx, &p, &codes[v].signing_key(), &mut OsRng)
                    .map_err(|e| e.to_string())?;
                let bytes = serde_json::to_vec(&b).map_err(|e| e.to_string())?;
                out.push((v, b, bytes));
                bar.inc(1);
            }
            Ok::<_, String>(out)
        }));
    }
    let mut ballots: Vec<Option<(EncryptedBallot, Vec<u8>)>> = vec![None; voters];
    for h in handles {
        let part = h
            .await
            .map_err(|e| Failure::failed(format!("encryption task failed: {e}")))?
            .map_err(|e| Failure::failed(format!("encryption failed: {e}")))?;
        for (v, b, bytes) in part {
            ballots[v] = Some((b, bytes));
        }
    }
    bar.finish_and_clear();
    let ballots: Vec<(EncryptedBallot, Vec<u8>)> = ballots.into_iter().flatten().collect();
    mark(&mut timings, "encrypt");

    // 5. Open and cast.
    let open = admin
        .open_election(DEMO_ELECTION)
        .await
        .map_err(failed("opening the election"))?;
    ui.step(&format!(
        "Opened at log index {} (zero-ballot confirmation); {voters} voters cast over {} nodes, {} at a time",
        open.index, a.node_count, a.concurrency
    ));
    let bar = ui.bar(voters as u64, "casting");
    let t_cast = Instant::now();
    let results: Vec<(usize, Result<Receipt, http::Error>)> =
        futures::stream::iter(ballots.iter().enumerate().map(|(v, (_, bytes))| {
            let nodes = &nodes;
            let bar = &bar;
            async move {
                let r = cast_spread(nodes, v % nodes.len(), DEMO_ELECTION, bytes).await;
                bar.inc(1);
                (v, r)
            }
        }))
        .buffer_unordered(a.concurrency as usize)
        .collect()
        .await;
    bar.finish_and_clear();
    let cast_secs = t_cast.elapsed().as_secs_f64();
    let manifest = ctx.manifest().clone();
    let mut truth: Vec<Vec<u64>> = manifest
        .contests
        .iter()
        .map(|c| vec![0; c.options.len()])
        .collect();
    let mut accs = vec![Accumulator::default(); manifest.option_count()];
    let mut cast = 0u64;
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for (v, r) in &results {
        match r {
            Ok(_) => {
                cast += 1;
                for (ci, sel) in choices[*v].iter().enumerate() {
                    for &o in sel {
                        truth[ci][o] += 1;
                    }
                }
                let cts = ballots[*v]
                    .0
                    .contests
                    .iter()
                    .flat_map(|c| c.selections.iter().map(|s| s.ciphertext));
                for (acc, ct) in accs.iter_mut().zip(cts) {
                    acc.add(&ct);
                }
            }
            Err(e) => {
                let key = e.api().map(|a| a.code.clone()).unwrap_or_else(|| e.to_string());
                *refusals.entry(key).or_default() += 1;
            }
        }
    }
    let refused = voters as u64 - cast;
    let cast_rate = cast as f64 / cast_secs.max(1e-9);
    if !g.json {
        eprintln!("    {cast} ballots cast in {cast_secs:.1} s ({cast_rate:.0}/s)");
        if refused > 0 {
            eprintln!("    {refused} ballots refused: {refusals:?}");
        }
    }
    mark(&mut timings, "cast");

    // 6. A few Benaloh challenges.
    let mut challenged = 0u64;
    if a.challenges > 0 {
        ui.step(&format!(
            "{} voters challenge an encryption (Benaloh)",
            a.challenges
        ));
        for i in 0..a.challenges {
            let v = i % voters;
            let choice = random_choice(&mut rng);
            let p = PlaintextBallot::from_selected(&manifest, &choice)
                .map_err(|e| Failure::failed(format!("challenge ballot: {e}")))?;
            let (b, secrets_b) = encrypt_ballot(&ctx, &p, &codes[v].signing_key(), &mut OsRng)
                .map_err(|e| Failure::failed(format!("challenge encryption: {e}")))?;
            let spoiled = spoil(&b, &secrets_b);
            let ack = nodes[i % nodes.len()]
                .challenge(&spoiled)
                .await
                .map_err(failed("posting a challenge"))?;
            verify_spoiled(&ctx, &spoiled)
                .map_err(|e| Failure::failed(format!("a challenge does not open to its choices: {e}")))?;
            challenged += 1;
            if !g.json {
                eprintln!(
                    "    spoiled ballot #{} (index {}) opens to {}",
                    ack.seq,
                    ack.index,
                    super::voter::describe_selection(&manifest, &choice).join("; ")
                );
            }
        }
    }
    mark(&mut timings, "challenge");

    // 7. Wait for the window to close, then close.
    let remaining = (closes_at - now_ms()).max(0);
    ui.step(&format!(
        "Waiting {:.1} s for the voting window to close, then closing",
        remaining as f64 / 1000.0
    ));
    let sp = ui.spinner("window open");
    while now_ms() < closes_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let close = wait_until("the close", Duration::from_secs(30), || async {
        match admin.close_election(DEMO_ELECTION).await {
            Ok(ack) => Some(Ok(ack)),
            Err(e) if e.api().is_some_and(|a| a.code == "too_early") => None,
            // A late cast may have made a node close the box already.
            Err(e) if e.api().is_some_and(|a| a.status == 409) => Some(Err(e)),
            Err(e) => Some(Err(e)),
        }
    })
    .await?;
    sp.finish_and_clear();
    let summary = admin
        .election(DEMO_ELECTION)
        .await
        .map_err(failed("reading the election"))?;
    if let Err(e) = close {
        if summary.close_index.is_none() {
            return Err(Failure::failed(format!("closing the election: {e}")));
        }
    }
    mark(&mut timings, "wait_close");
    if summary.phase != ElectionPhase::Tallying {
        return Err(Failure::failed(format!(
            "the election is {} after closing ({}), no tally",
            summary.phase,
            summary.closed_reason.as_deref().unwrap_or("-")
        )));
    }

    // 8. Tally with exactly a quorum of custodians.
    let mut subset: Vec<usize> = rand::seq::index::sample(&mut rng, a.custodians, a.quorum).into_vec();
    subset.sort_unstable();
    ui.step(&format!(
        "Tally by custodians {} (a quorum of {}): each recomputes the aggregate, decrypts its share, signs",
        subset
            .iter()
            .map(|j| (j + 1).to_string())
            .collect::<Vec<_>>()
            .join(", "),
        a.quorum
    ));
    let agg = accs
        .iter()
        .map(Accumulator::to_ciphertext)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::failed(format!("aggregate: {e}")))?;
    if summary.aggregate.as_ref() != Some(&agg) || summary.ballot_count != cast {
        return Err(Failure::failed(format!(
            "custodians refuse to decrypt: the node's aggregate ({} ballots) differs from the one recomputed from the {cast} receipted ballots",
            summary.ballot_count
        )));
    }
    let q_ext: [u8; 32] = summary
        .extended_hash
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::failed("no Q' in the summary"))?;
    let tctx = TallyContext::new(q_ext, a.custodians);
    for &j in &subset {
        let kj = tally::key_share(&derived.encryption, j)
            .map_err(|e| Failure::failed(format!("key share {j}: {e}")))?;
        let pd = tally::partial_decrypt(&tctx, j, &secrets[j].encryption_share, &kj, &agg, &mut OsRng)
            .map_err(|e| Failure::failed(format!("partial decryption by custodian {j}: {e}")))?;
        let s = SignedPartialDecryption::sign(&keys[j], &q_ext, SharePurpose::Tally, j, pd);
        nodes[j % nodes.len()]
            .post_tally_share(DEMO_ELECTION, &s)
            .await
            .map_err(failed("posting a decryption share"))?;
    }
    let res = admin
        .result(DEMO_ELECTION)
        .await
        .map_err(failed("reading the result"))?;
    let rh: [u8; 32] = res
        .result_hash
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::failed("no result hash after a quorum of decryption shares"))?;
    for &j in &subset {
        let share = WireSignatureShare(tally::sign_result(&secrets[j].signing_share, &rh));
        nodes[j % nodes.len()]
            .post_signature_share(DEMO_ELECTION, &SignatureShareRequest { custodian: j, share })
            .await
            .map_err(failed("posting a signature share"))?;
    }
    let res = admin
        .result(DEMO_ELECTION)
        .await
        .map_err(failed("reading the result"))?;
    let certified = res.tally.as_ref().map(|t| t.counts.clone());
    let certificate_verified = res
        .certificate
        .as_ref()
        .is_some_and(|c| c.result_hash == rh && c.verify(&derived.signing.public_key()).is_ok());
    let result_matches = certified.as_ref() == Some(&truth) && res.phase == ElectionPhase::Published;
    mark(&mut timings, "tally");
    let total_seconds = t0.elapsed().as_secs_f64();

    // 9. The record and the observers.
    ui.step("Verifying the election record with no trust in any node");
    let verification = match admin.election_record_bytes(DEMO_ELECTION).await {
        Ok(bytes) => {
            let (_, report) = verify_bytes(&bytes);
            let failed: Vec<String> = report
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.clone())
                .collect();
            RecordVerdict {
                status: if failed.is_empty() { "passed" } else { "failed" }.into(),
                checks: report.checks.len(),
                detail: if failed.is_empty() {
                    format!("all {} checks passed", report.checks.len())
                } else {
                    format!("{} of {} checks failed", failed.len(), report.checks.len())
                },
                failed,
            }
        }
        Err(e) => RecordVerdict {
            status: "error".into(),
            checks: 0,
            failed: vec![],
            detail: format!("cannot fetch the record: {e}"),
        },
    };
    mark(&mut timings, "verify");
    let obs = observe(&all).await;
    mark(&mut timings, "observe");

    let ok = result_matches
        && certificate_verified
        && verification.status == "passed"
        && obs.agree
        && obs.unreachable.is_empty();
    let out = DemoSummary {
        election_id: DEMO_ELECTION.into(),
        nodes: urls.clone(),
        dir: cluster.path.display().to_string(),
        voters: a.voters,
        cast,
        refused,
        challenges: challenged,
        contests: manifest.contests.iter().map(|c| c.id.clone()).collect(),
        true_counts: truth.clone(),
        certified_counts: certified.clone(),
        result_matches,
        certificate_verified,
        tally_custodians: subset.clone(),
        verification: verification.clone(),
        nodes_agree: obs.agree,
        common_index: obs.common_index,
        timings,
        cast_rate,
        total_seconds,
        ok,
    };
    if g.json {
        print_json(&out)?;
    } else {
        let mut t = Table::new(["CONTEST", "OPTION", "CERTIFIED", "TRUE", ""]);
        for (ci, c) in manifest.contests.iter().enumerate() {
            for (oi, o) in c.options.iter().enumerate() {
                let cert = certified
                    .as_ref()
                    .and_then(|x| x.get(ci))
                    .and_then(|x| x.get(oi))
                    .map(u64::to_string)
                    .unwrap_or_else(|| "-".into());
                let tr = truth[ci][oi].to_string();
                let mark = if cert == tr { "ok" } else { "MISMATCH" };
                t.row([c.title.clone(), o.label.clone(), cert, tr, mark.into()]);
            }
        }
        println!();
        println!(
            "Certified result of election {DEMO_ELECTION:?} ({cast} ballots, {challenged} challenged, decrypted by custodians {}):",
            subset.iter().map(|j| (j + 1).to_string()).collect::<Vec<_>>().join(", ")
        );
        print!("{}", t.render());
        println!(
            "Certificate: {}",
            if certificate_verified {
                "valid BLS threshold signature under the election's signing key"
            } else {
                "MISSING OR INVALID"
            }
        );
        println!(
            "Record verification: {} ({})",
            verification.status, verification.detail
        );
        println!(
            "Observers: {} (common index {})",
            if obs.agree {
                "every node holds the same digest"
            } else {
                "NODES DISAGREE"
            },
            obs.common_index.map_or("-".into(), |i| i.to_string())
        );
        println!(
            "Time: {total_seconds:.1} s to a certified result ({voters} voters, casting at {cast_rate:.0} ballots/s, {:.1} s of it waiting for the window).",
            out.timings.get("wait_close").copied().unwrap_or(0.0)
        );
        println!("Verdict: {}", if ok { "OK" } else { "FAILED" });
    }
    cluster.keep = !ok;
    if a.exit {
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if !g.json {
        println!();
        println!(
            "The cluster keeps running. Observer pages: {}",
            urls.iter()
                .map(|u| format!("{u}/"))
                .collect::<Vec<_>>()
                .join("  ")
        );
        println!(
            "Try: URNA_NODES={} urna observe   |   urna --node {} election show {DEMO_ELECTION}",
            urls.join(","),
            urls[0]
        );
        println!(
            "Configs, data and logs: {} (removed on exit). Press Ctrl-C to stop.",
            cluster.path.display()
        );
    }
    let _ = tokio::signal::ctrl_c().await;
    drop(cluster);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

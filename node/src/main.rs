//! `urna-node`: the Urna server.

use std::path::PathBuf;

use clap::Parser;
use urna_node::config::{parse_operator, parse_peer, PartialConfig};

const EXAMPLES: &str = "\
Examples:
  urna-node --config node1.toml
  URNA_CLUSTER_SECRET=$(cat secret) urna-node --id 1 --listen 127.0.0.1:7001 \\
      --data-dir ./n1 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 \\
      --operator ops:cluster:ops-token --operator alice:admin:alice-token

Then, once every node runs:
  curl -XPOST -H 'Authorization: Bearer ops-token' http://127.0.0.1:7001/v1/cluster/init
  curl http://127.0.0.1:7001/v1/status";

/// The Urna server: a Raft-replicated, sled-backed ballot box node.
#[derive(Parser, Debug)]
#[command(name = "urna-node", version, after_help = EXAMPLES)]
struct Args {
    /// TOML configuration file (flags and environment variables override it).
    #[arg(long, env = "URNA_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (stable across restarts).
    #[arg(long, env = "URNA_NODE_ID")]
    id: Option<u64>,
    /// Address to listen on, host:port.
    #[arg(long, env = "URNA_LISTEN")]
    listen: Option<String>,
    /// Address other nodes use to reach this one (default: --listen).
    #[arg(long, env = "URNA_ADVERTISE")]
    advertise: Option<String>,
    /// Data directory.
    #[arg(long, env = "URNA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Another initial member, ID=ADDR (repeatable).
    #[arg(long = "peer", value_name = "ID=ADDR")]
    peers: Vec<String>,
    /// Cluster secret authenticating Raft RPCs (prefer the environment variable).
    #[arg(long, env = "URNA_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// An operator, NAME:ROLE:TOKEN with ROLE admin or cluster (repeatable).
    #[arg(long = "operator", value_name = "NAME:ROLE:TOKEN")]
    operators: Vec<String>,
    /// Send Raft RPCs for peer ID through ADDR instead of its membership address (repeatable; used by
    /// `urna-chaos` to route links through its proxies).
    #[arg(long = "peer-via", value_name = "ID=ADDR")]
    peer_via: Vec<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "URNA_LOG_JSON")]
    log_json: bool,
}

fn load(args: &Args) -> anyhow::Result<urna_node::config::Config> {
    let mut p = match &args.config {
        Some(path) => PartialConfig::load(path)?,
        None => PartialConfig::default(),
    };
    if args.id.is_some() {
        p.id = args.id;
    }
    if args.listen.is_some() {
        p.listen = args.listen.clone();
    }
    if args.advertise.is_some() {
        p.advertise = args.advertise.clone();
    }
    if args.data_dir.is_some() {
        p.data_dir = args.data_dir.clone();
    }
    if args.cluster_secret.is_some() {
        p.cluster_secret = args.cluster_secret.clone();
    }
    for s in &args.peers {
        let peer = parse_peer(s)?;
        p.peers.retain(|q| q.id != peer.id);
        p.peers.push(peer);
    }
    for s in &args.peer_via {
        let v = parse_peer(s)?;
        p.raft.peer_via.insert(v.id.to_string(), v.addr);
    }
    for s in &args.operators {
        p.operators.push(parse_operator(s)?);
    }
    p.finish()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs the server (also the entry point of `urna-node-broken`, see `broken.rs`).
pub fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn"));
    let sub = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("urna-node: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("urna-node: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(urna_node::node::run(config, shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("urna-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

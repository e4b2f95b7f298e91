//! `urna cluster`: membership operations over the cluster API (operators with the `cluster` role).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{opt, short, Table};
use super::{block_on, print_json, CmdResult, Failure, Globals};
use crate::http::{Client, ClusterInfo, NodeStatus};

const INIT_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 --token $OPS_TOKEN cluster init
  urna --node 127.0.0.1:7001 cluster init --member 1=127.0.0.1:7001 --member 2=127.0.0.1:7002

Without --member, the node initializes the cluster with itself and the peers of its configuration.";

const ADD_LEARNER_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 --token $OPS_TOKEN cluster add-learner --id 4 --addr 127.0.0.1:7004

The call returns once the learner has caught up; then `urna cluster promote --id 4`.";

const PROMOTE_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 --token $OPS_TOKEN cluster promote --id 4";

const REMOVE_EXAMPLES: &str = "\
Examples:
  urna --node 127.0.0.1:7001 --token $OPS_TOKEN cluster remove --id 3
  urna --node 127.0.0.1:7001 cluster remove --id 3 --retain   # keep it as a learner";

const STATUS_EXAMPLES: &str = "\
Examples:
  URNA_NODES=127.0.0.1:7001,127.0.0.1:7002 URNA_TOKEN=... urna cluster status
  urna --node 127.0.0.1:7001 cluster status --json";

/// `urna cluster ...`
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Initialize a new cluster (once, on one node).
    #[command(after_help = INIT_EXAMPLES)]
    Init(InitArgs),
    /// Add a node as a learner (it replicates but does not vote).
    #[command(after_help = ADD_LEARNER_EXAMPLES)]
    AddLearner(AddLearnerArgs),
    /// Make a learner a voter.
    #[command(after_help = PROMOTE_EXAMPLES)]
    Promote(IdArgs),
    /// Remove a voter.
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove(RemoveArgs),
    /// Show the membership, the leader and every node's progress.
    #[command(after_help = STATUS_EXAMPLES)]
    Status,
}

/// `urna cluster init`
#[derive(Args, Debug)]
pub struct InitArgs {
    /// An initial member, ID=ADDR (repeatable); default: the node's configured peers.
    #[arg(long = "member", value_name = "ID=ADDR", value_parser = parse_member)]
    pub members: Vec<(u64, String)>,
}

/// `urna cluster add-learner`
#[derive(Args, Debug)]
pub struct AddLearnerArgs {
    /// The new node's id.
    #[arg(long)]
    pub id: u64,
    /// The new node's address, host:port.
    #[arg(long)]
    pub addr: String,
}

/// A node id.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The node's id.
    #[arg(long)]
    pub id: u64,
}

/// `urna cluster remove`
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The voter to remove.
    #[arg(long)]
    pub id: u64,
    /// Keep the removed voter as a learner.
    #[arg(long)]
    pub retain: bool,
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
    let id = id.trim().parse().map_err(|_| format!("bad node id in {s:?}"))?;
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(format!("missing address in {s:?}"));
    }
    Ok((id, addr.to_string()))
}

/// Runs `urna cluster ...`.
pub fn run(g: &Globals, cmd: ClusterCmd) -> CmdResult {
    let client = g.client()?;
    block_on(run_async(g, &client, cmd))?
}

async fn run_async(g: &Globals, client: &Client, cmd: ClusterCmd) -> CmdResult {
    match cmd {
        ClusterCmd::Init(a) => {
            let members: BTreeMap<u64, String> = a.members.into_iter().collect();
            let ack = client
                .cluster_init(if members.is_empty() { None } else { Some(&members) })
                .await?;
            if g.json {
                print_json(&ack)?;
            } else {
                let ids: Vec<String> = ack.initialized.iter().map(u64::to_string).collect();
                println!("Initialized the cluster with members {}.", ids.join(", "));
            }
        }
        ClusterCmd::AddLearner(a) => {
            let ack = client.add_learner(a.id, &a.addr).await?;
            if g.json {
                print_json(&ack)?;
            } else {
                println!(
                    "Node {} ({}) is a learner and has caught up (log index {}).",
                    a.id, a.addr, ack.index
                );
            }
        }
        ClusterCmd::Promote(a) => {
            let info = client.cluster().await?;
            if info.voters.contains(&a.id) {
                return Err(Failure::failed(format!("node {} is already a voter", a.id)));
            }
            if !info.learners.contains(&a.id) {
                return Err(Failure::failed(format!(
                    "node {} is not a learner; add it first with `urna cluster add-learner --id {} --addr HOST:PORT`",
                    a.id, a.id
                )));
            }
            let mut voters: BTreeSet<u64> = info.voters.iter().copied().collect();
            voters.insert(a.id);
            let ack = client.change_membership(&voters, false).await?;
            if g.json {
                print_json(&ack)?;
            } else {
                println!(
                    "Node {} is a voter; voters are now {} (log index {}).",
                    a.id,
                    list(&voters),
                    ack.index
                );
            }
        }
        ClusterCmd::Remove(a) => {
            let info = client.cluster().await?;
            if !info.voters.contains(&a.id) {
                return Err(Failure::failed(format!(
                    "node {} is not a voter (voters: {})",
                    a.id,
                    list(&info.voters)
                )));
            }
            let voters: BTreeSet<u64> = info.voters.iter().copied().filter(|v| *v != a.id).collect();
            if voters.is_empty() {
                return Err(Failure::failed("cannot remove the last voter"));
            }
            let ack = client.change_membership(&voters, a.retain).await?;
            if g.json {
                print_json(&ack)?;
            } else {
                println!(
                    "Node {} removed{}; voters are now {} (log index {}).",
                    a.id,
                    if a.retain { " (kept as a learner)" } else { "" },
                    list(&voters),
                    ack.index
                );
            }
        }
        ClusterCmd::Status => return status(g, client).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn list<'a>(ids: impl IntoIterator<Item = &'a u64>) -> String {
    let v: Vec<String> = ids.into_iter().map(u64::to_string).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

async fn status(g: &Globals, client: &Client) -> CmdResult {
    let statuses = client.status_all().await;
    let info = client.cluster().await;
    if g.json {
        let nodes: Vec<serde_json::Value> = statuses
            .iter()
            .map(|(url, r)| match r {
                Ok(s) => serde_json::json!({ "url": url, "status": s }),
                Err(e) => serde_json::json!({ "url": url, "error": e.to_string() }),
            })
            .collect();
        let (cluster, error) = match &info {
            Ok(i) => (Some(i), None),
            Err(e) => (None, Some(e.to_string())),
        };
        print_json(&serde_json::json!({ "cluster": cluster, "cluster_error": error, "nodes": nodes }))?;
    } else {
        match &info {
            Ok(i) => print_membership(i),
            Err(e) => println!("Membership unavailable: {e}"),
        }
        println!();
        print_nodes(&statuses);
    }
    if statuses.iter().all(|(_, r)| r.is_err()) {
        return Err(Failure::failed("no node answered"));
    }
    info?;
    Ok(ExitCode::SUCCESS)
}

fn print_membership(i: &ClusterInfo) {
    println!(
        "Leader: {}   term: {}   (answered by node {}, {})",
        opt(i.leader),
        i.term,
        i.id,
        i.role
    );
    println!("Voters: {}", list(&i.voters));
    println!("Learners: {}", list(&i.learners));
    let mut t = Table::new(["MEMBER", "ADDRESS", "KIND", "MATCHED INDEX"]);
    for (id, addr) in &i.nodes {
        let kind = if i.voters.contains(id) { "voter" } else { "learner" };
        let matched = i.replication.as_ref().and_then(|r| r.get(id).copied()).flatten();
        t.row([id.to_string(), addr.clone(), kind.to_string(), opt(matched)]);
    }
    print!("{}", t.render());
}

fn print_nodes(statuses: &[(String, Result<NodeStatus, crate::http::Error>)]) {
    let mut t = Table::new(["NODE", "URL", "ROLE", "TERM", "LEADER", "APPLIED", "DIGEST"]);
    for (url, r) in statuses {
        match r {
            Ok(s) => t.row([
                s.id.to_string(),
                url.clone(),
                s.role.clone(),
                s.term.to_string(),
                opt(s.leader),
                opt(s.applied_index),
                short(&s.digest, 16),
            ]),
            Err(e) => t.row([
                "?".into(),
                url.clone(),
                "UNREACHABLE".into(),
                String::new(),
                String::new(),
                String::new(),
                e.to_string(),
            ]),
        }
    }
    print!("{}", t.render());
}

//! `urna observe`: every node's status, and a digest comparison at the highest index all reachable nodes
//! have applied (design principle 3 and section 5).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::output::{opt, short, Table};
use super::{block_on, print_json, CmdResult, Globals};
use crate::http::{Client, NodeStatus};

const EXAMPLES: &str = "\
Examples:
  urna observe --node 127.0.0.1:7001 --node 127.0.0.1:7002 --node 127.0.0.1:7003
  URNA_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 urna observe --json
  urna observe --allow-unreachable

Exit status 1 when two nodes hold different digests at the same index, or when a node is unreachable
(unless --allow-unreachable).";

/// `urna observe`
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ObserveArgs {
    /// Do not fail when some (but not all) nodes are unreachable.
    #[arg(long)]
    pub allow_unreachable: bool,
}

/// One node as observed.
#[derive(Debug, Clone, Serialize)]
pub struct ObservedNode {
    /// The node's URL.
    pub url: String,
    /// Its status, when it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer (status or digest).
    pub error: Option<String>,
    /// Its digest at the common index.
    pub digest_at_common: Option<String>,
}

/// A node that disagrees with the majority.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// The node's id.
    pub node: u64,
    /// Its URL.
    pub url: String,
    /// Its digest at the common index.
    pub digest: String,
}

/// The JSON output of `urna observe --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ObserveSummary {
    /// Every configured node.
    pub nodes: Vec<ObservedNode>,
    /// The highest index every reachable node has applied.
    pub common_index: Option<u64>,
    /// The digest most nodes hold at the common index.
    pub majority_digest: Option<String>,
    /// True when every node that answered holds the same digest at the common index.
    pub agree: bool,
    /// Nodes whose digest differs from the majority's.
    pub divergent: Vec<Disagreement>,
    /// URLs of the nodes that did not answer.
    pub unreachable: Vec<String>,
    /// The verdict: agreement and (unless allowed) no unreachable node.
    pub ok: bool,
}

/// Observes the cluster: statuses, the common index, and the digests there.
pub async fn observe(client: &Client) -> ObserveSummary {
    let mut nodes: Vec<ObservedNode> = client
        .status_all()
        .await
        .into_iter()
        .map(|(url, r)| match r {
            Ok(s) => ObservedNode {
                url,
                status: Some(s),
                error: None,
                digest_at_common: None,
            },
            Err(e) => ObservedNode {
                url,
                status: None,
                error: Some(e.to_string()),
                digest_at_common: None,
            },
        })
        .collect();
    let reachable: Vec<&NodeStatus> = nodes.iter().filter_map(|n| n.status.as_ref()).collect();
    // Nodes that have applied nothing yet (not initialized, or a fresh learner) have nothing to compare.
    let common_index = reachable.iter().filter_map(|s| s.applied_index).min();
    let nothing_applied = !reachable.is_empty() && common_index.is_none();
    if let Some(index) = common_index {
        for n in nodes
            .iter_mut()
            .filter(|n| n.status.as_ref().is_some_and(|s| s.applied_index.is_some()))
        {
            match client.digest_of(&n.url, index).await {
                Ok(d) => n.digest_at_common = Some(d.digest),
                Err(e) => n.error = Some(format!("digest at {index}: {e}")),
            }
        }
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(d) = &n.digest_at_common {
            groups.entry(d.clone()).or_default().push(i);
        }
    }
    let majority_digest = groups.iter().max_by_key(|(_, v)| v.len()).map(|(d, _)| d.clone());
    let divergent: Vec<Disagreement> = nodes
        .iter()
        .filter_map(|n| {
            let d = n.digest_at_common.as_ref()?;
            (Some(d) != majority_digest.as_ref()).then(|| Disagreement {
                node: n.status.as_ref().map(|s| s.id).unwrap_or(0),
                url: n.url.clone(),
                digest: d.clone(),
            })
        })
        .collect();
    let unreachable: Vec<String> = nodes
        .iter()
        .filter(|n| n.error.is_some())
        .map(|n| n.url.clone())
        .collect();
    let agree = groups.len() == 1 || nothing_applied;
    ObserveSummary {
        agree,
        ok: agree && unreachable.is_empty(),
        nodes,
        common_index,
        majority_digest,
        divergent,
        unreachable,
    }
}

fn label(n: &ObservedNode) -> String {
    match &n.status {
        Some(s) => format!("node {} ({})", s.id, n.url),
        None => n.url.clone(),
    }
}

/// Runs `urna observe`.
pub fn run(g: &Globals, a: ObserveArgs) -> CmdResult {
    let client = g.client()?;
    let summary = block_on(observe(&client))?;
    let all_down = summary.nodes.iter().all(|n| n.status.is_none());
    let ok = summary.agree && (summary.unreachable.is_empty() || a.allow_unreachable) && !all_down;
    let summary = ObserveSummary { ok, ..summary };
    if g.json {
        print_json(&summary)?;
    } else {
        print_human(&summary, a.allow_unreachable);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_human(s: &ObserveSummary, allow_unreachable: bool) {
    let mut t = Table::new([
        "NODE", "URL", "ROLE", "TERM", "LEADER", "LAST LOG", "APPLIED", "DIGEST",
    ]);
    for n in &s.nodes {
        match &n.status {
            Some(st) => t.row([
                st.id.to_string(),
                n.url.clone(),
                st.role.clone(),
                st.term.to_string(),
                opt(st.leader),
                opt(st.last_log_index),
                opt(st.applied_index),
                short(&st.digest, 16),
            ]),
            None => t.row([
                "?".to_string(),
                n.url.clone(),
                "UNREACHABLE".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    print!("{}", t.render());
    println!();
    for n in &s.nodes {
        if let Some(e) = &n.error {
            println!("Unreachable: {}: {e}", label(n));
        }
    }
    match (s.common_index, &s.majority_digest) {
        (None, _) if s.nodes.iter().all(|n| n.status.is_none()) => {
            println!("Verdict: no node answered.");
            return;
        }
        (None, _) => println!("No node has applied an entry yet; nothing to compare."),
        (Some(i), None) => println!("No node answered with its digest at index {i}."),
        (Some(i), Some(d)) if s.agree => {
            let n = s.nodes.iter().filter(|n| n.digest_at_common.is_some()).count();
            println!("Agreement: all {n} reachable nodes hold digest {d} at index {i}.");
        }
        (Some(i), Some(d)) => {
            let holders: Vec<String> = s
                .nodes
                .iter()
                .filter(|n| n.digest_at_common.as_ref() == Some(d))
                .map(label)
                .collect();
            println!("DIVERGENCE at index {i}:");
            for x in &s.divergent {
                println!(
                    "  node {} ({}) holds digest {} at index {i}",
                    x.node, x.url, x.digest
                );
            }
            println!("  while {} hold {d}", holders.join(", "));
        }
    }
    if s.ok {
        if s.unreachable.is_empty() {
            println!("Verdict: OK: the nodes agree.");
        } else {
            println!(
                "Verdict: OK among the reachable nodes ({} unreachable, allowed).",
                s.unreachable.len()
            );
        }
    } else if !s.agree && s.divergent.is_empty() {
        println!("Verdict: FAILED: no node answered with a digest to compare.");
    } else if !s.agree {
        let who: Vec<String> = s.divergent.iter().map(|x| format!("node {}", x.node)).collect();
        println!(
            "Verdict: DIVERGED: {} disagree{} with the majority at index {}.",
            who.join(", "),
            if who.len() == 1 { "s" } else { "" },
            opt(s.common_index)
        );
    } else if !allow_unreachable {
        println!(
            "Verdict: FAILED: {} node(s) unreachable (use --allow-unreachable to accept).",
            s.unreachable.len()
        );
    }
}

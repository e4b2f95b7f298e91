//! Real-process tests of the operations surface: `/metrics` after casts, registered node keys, and
//! signed heads (from every node, and in receipts).

mod common;
#[path = "common/elect.rs"]
mod elect;

use common::*;
use serde_json::Value;
use urna_client::head::{NodeKeys, SignedHead};
use urna_client::wire::Receipt;
use urna_keyceremony::board;
use urna_keyceremony::manifest::Manifest;

/// Sums the samples of a metric (every label set) in a Prometheus text exposition.
fn metric(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| label.map_or(true, |lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(c: &Cluster, id: u64) -> String {
    let r = c.http.get(c.url(id, "/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.unwrap()
}

async fn cast(c: &Cluster, node: u64, id: &str, b: &impl serde::Serialize) -> (u16, Value) {
    let path = format!("/v1/elections/{id}/ballots");
    let bytes = serde_json::to_vec(b).unwrap();
    wait_for("cast", || {
        let bytes = bytes.clone();
        let path = path.clone();
        async move {
            match elect::post_raw(c, node, &path, None, bytes).await {
                Some((503, _)) | None => None,
                Some(r) => Some(r),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_node_keys_and_signed_heads_on_three_nodes() {
    let mut c = Cluster::new(3, "");
    start_and_init(&mut c).await;

    // Every node registers its key in the log.
    let keys: NodeKeys = wait_for("three registered node keys", || async {
        let (s, v) = c.get(2, "/v1/nodes").await?;
        let k: NodeKeys = serde_json::from_value(v).ok()?;
        (s == 200 && k.nodes.len() == 3).then_some(k)
    })
    .await;

    let e = elect::open_election(&c, "ops", Manifest::simple(&[(5, 1, 1)]), 3, 2, 8, 600_000).await;

    // Casts through every node; each receipt carries a head that verifies and covers its ballot.
    let mut receipts = Vec::new();
    for v in 0..6 {
        let node = (v % 3) as u64 + 1;
        let (s, body) = cast(&c, node, &e.id, &elect::ballot(&e, v)).await;
        assert_eq!(s, 200, "{body}");
        let r: Receipt = serde_json::from_value(body).unwrap();
        let head = r.signed_head.as_ref().expect("a receipt carries a signed head");
        head.verify_registered(&keys).unwrap();
        assert!(head.head.index >= r.index);
        let eh = head
            .head
            .elections
            .iter()
            .find(|h| h.election_id == e.id)
            .unwrap();
        assert!(eh.ballot_count > r.seq);
        receipts.push(r);
    }
    // A second, different ballot of voter 0: refused, counted under its code.
    let (s, body) = cast(&c, 2, &e.id, &elect::ballot(&e, 0)).await;
    assert_eq!((s, body["error"]["code"].as_str()), (409, Some("already_voted")));
    // Garbage: refused as malformed.
    let (s, _) = cast(&c, 1, &e.id, &serde_json::json!({"not": "a ballot"})).await;
    assert_eq!(s, 400);

    // Metrics: summed over the nodes (each counts what it proposed or refused itself).
    let mut text = String::new();
    for id in 1..=3 {
        let t = scrape(&c, id).await;
        assert_eq!(metric(&t, "urna_has_leader", None), 1.0, "node {id}:\n{t}");
        assert!(metric(&t, "urna_term", None) >= 1.0);
        assert!(metric(&t, "urna_applied_index", None) >= 1.0);
        assert!(metric(&t, "urna_last_log_index", None) >= 1.0);
        assert!(metric(&t, "urna_fsync_duration_seconds_count", None) >= 1.0);
        assert!(metric(&t, "urna_apply_duration_seconds_count", None) >= 1.0);
        assert!(!t.contains("credential"), "no voter data in metrics");
        text.push_str(&t);
    }
    assert_eq!(metric(&text, "urna_ballots_cast_total", None), 6.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "urna_ballots_rejected_total",
            Some("reason=\"already_voted\"")
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "urna_ballots_rejected_total", Some("reason=\"malformed\"")),
        1.0
    );
    assert!(metric(&text, "urna_proposals_committed_total", None) >= 6.0);
    assert!(metric(&text, "urna_leader_changes_total", None) >= 3.0);

    // Heads from every node at the same index carry the same digest, verify against the registered
    // keys, and their ballot-tree root is the root over the receipts' ballot hashes.
    let (index, digest) = c.converged(&[1, 2, 3], receipts.last().unwrap().index).await;
    receipts.sort_by_key(|r| r.seq);
    let hashes: Vec<_> = receipts.iter().map(|r| r.ballot_hash).collect();
    let mut heads = Vec::new();
    for id in 1..=3 {
        let (s, v) = c.get(id, "/v1/head").await.unwrap();
        assert_eq!(s, 200, "{v}");
        let h: SignedHead = serde_json::from_value(v).unwrap();
        h.verify_registered(&keys).unwrap();
        assert_eq!(h.head.node, id);
        assert_eq!(
            (h.head.index, hex::encode(h.head.digest)),
            (index, digest.clone())
        );
        let eh = h.head.elections.iter().find(|x| x.election_id == e.id).unwrap();
        assert_eq!((eh.ballot_count, eh.tree_size), (6, 6));
        assert_eq!(eh.tree_root, board::tree_root(&hashes));
        heads.push(h);
    }
    assert!(heads
        .windows(2)
        .all(|w| w[0].head.elections == w[1].head.elections));
    // The observer page of every node shows the same digest at the same applied index, the election
    // with its ballot count, and links to every member.
    for id in 1..=3 {
        let r = c.http.get(c.url(id, "/")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains(&digest), "node {id} page lacks the digest");
        assert!(html.contains(&format!("Applied index <b>{index}</b>")), "{html}");
        assert!(
            html.contains(&format!("<td>{}</td>", e.id)) && html.contains("<td>6</td>"),
            "{html}"
        );
        assert_eq!(html.matches("<li><a href=").count(), 3, "{html}");
    }
    // A tampered head does not verify; a head presented as another node's does not either.
    let mut t = heads[0].clone();
    t.head.digest[0] ^= 1;
    assert!(t.verify_registered(&keys).is_err());
    let mut t = heads[0].clone();
    t.head.node = 2;
    assert!(t.verify_registered(&keys).is_err());
}

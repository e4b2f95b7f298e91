//! Real-process cluster tests: three `urna-node` processes on 127.0.0.1 with temporary data
//! directories. Every wait is a condition polled under a deadline, never a fixed sleep.

mod common;

use common::*;
use serde_json::{json, Value};

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
    // Nodes also register their signing keys through the log, so the common index may be past `last`.
    let (index, digest) = c.converged(&[1, 2, 3], last).await;
    assert!(index >= last);
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

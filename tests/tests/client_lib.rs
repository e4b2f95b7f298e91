//! The client library against real `urna-node` processes: leader discovery, and writes that survive the
//! leader's loss by retrying on the other nodes.

use urna_tests::{wait_for, TestCluster, ADMIN_TOKEN, DEADLINE, OPS_TOKEN};

#[test]
fn client_finds_the_leader_and_retries_writes_when_it_dies() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(&[1, 2, 3]);
    let client = c.client(Some(ADMIN_TOKEN));
    let found = c
        .block_on(client.discover_leader())
        .unwrap_or_else(|e| panic!("discovery: {e}"));
    assert_eq!(found, Some(c.url(leader)));

    let body = serde_json::json!({ "text": "before" });
    let ack: serde_json::Value = c
        .block_on(client.post_json("/v1/notes", &body))
        .unwrap_or_else(|e| panic!("write: {e}"));
    let first = ack["index"].as_u64().unwrap_or(0);
    assert!(first > 0, "{ack}");

    // The leader dies; the same client (still pointing at it) retries on the others until a new leader
    // commits the write.
    c.kill(leader);
    let body = serde_json::json!({ "text": "after" });
    let ack: serde_json::Value = c
        .block_on(client.post_json("/v1/notes", &body))
        .unwrap_or_else(|e| panic!("write after the leader's loss: {e}"));
    assert!(ack["index"].as_u64().unwrap_or(0) > first, "{ack}");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let new_leader = c.wait_leader(&others);
    assert_ne!(new_leader, leader);

    // Typed API errors: a wrong role is a 403 with its code, not retried.
    let ops = c.client(Some(OPS_TOKEN));
    let err = c
        .block_on(ops.post_json::<_, serde_json::Value>("/v1/notes", &body))
        .err()
        .unwrap_or_else(|| panic!("the cluster operator must not write notes"));
    let api = err.api().unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!((api.status, api.code.as_str()), (403, "forbidden"));

    // Reads keep working through any live node; the digest agrees across them.
    let (index, digest) = c.wait_converged(&others, first + 1);
    for id in &others {
        let d = wait_for("digest", DEADLINE, || {
            c.block_on(client.digest_of(&c.url(*id), index)).ok()
        });
        assert_eq!(d.digest, digest);
    }
}

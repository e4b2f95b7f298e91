//! `urna cluster` and `urna observe` against real `urna-node` processes.

use serde_json::Value;
use urna_tests::{tamper_stored_digest, urna, wait_for, TestCluster, DEADLINE, OPS_TOKEN};

fn with_nodes(c: &TestCluster, args: &[&str]) -> Vec<String> {
    let mut v = c.node_args();
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

#[test]
fn cluster_init_and_status_through_the_cli() {
    let mut c = TestCluster::configure(3);
    c.start_all();

    // Init through node 1 with the operator token from the environment.
    let r = urna_tests::urna_cmd()
        .env("URNA_TOKEN", OPS_TOKEN)
        .env("URNA_NODES", c.url(1))
        .args(["cluster", "init"])
        .output()
        .map(urna_tests::Run::from)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.code, 0, "{}", r.both());
    assert!(r.stdout.contains("members 1, 2, 3"), "{}", r.stdout);
    let leader = c.wait_leader(&[1, 2, 3]);

    // A second init is refused by the node: exit 1 with its error code.
    let again = urna(with_nodes(&c, &["--token", OPS_TOKEN, "cluster", "init"]));
    assert_eq!(again.code, 1, "{}", again.both());
    assert!(again.stderr.contains("already_initialized"), "{}", again.both());
    assert_eq!(again.stderr.lines().count(), 1);

    // Status: membership from the leader-side view, and every node.
    let st = urna(with_nodes(&c, &["--token", OPS_TOKEN, "cluster", "status"]));
    assert_eq!(st.code, 0, "{}", st.both());
    eprintln!("{}", st.stdout);
    assert!(st.stdout.contains(&format!("Leader: {leader}")), "{}", st.stdout);
    assert!(st.stdout.contains("Voters: 1, 2, 3"), "{}", st.stdout);
    let js = urna(with_nodes(
        &c,
        &["--token", OPS_TOKEN, "--json", "cluster", "status"],
    ));
    assert_eq!(js.code, 0, "{}", js.both());
    let v: Value = serde_json::from_str(&js.stdout).unwrap_or(Value::Null);
    assert_eq!(v["cluster"]["voters"], serde_json::json!([1, 2, 3]));
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3));

    // Without a token the operator endpoint refuses: exit 1, one line naming the problem.
    let no = urna(with_nodes(&c, &["cluster", "status"]));
    assert_eq!(no.code, 1, "{}", no.both());
    assert!(no.stderr.contains("unauthenticated"), "{}", no.both());

    // Removing a voter and... promoting it back is refused until it is a learner again.
    let rm = urna(with_nodes(
        &c,
        &["--token", OPS_TOKEN, "cluster", "remove", "--id", "3", "--retain"],
    ));
    assert_eq!(rm.code, 0, "{}", rm.both());
    let info = wait_for("node 3 a learner", DEADLINE, || {
        let i = c.block_on(c.client(Some(OPS_TOKEN)).cluster()).ok()?;
        i.learners.contains(&3).then_some(i)
    });
    assert_eq!(info.voters, vec![1, 2]);
    let pr = urna(with_nodes(
        &c,
        &["--token", OPS_TOKEN, "cluster", "promote", "--id", "3"],
    ));
    assert_eq!(pr.code, 0, "{}", pr.both());
    let info = wait_for("node 3 a voter again", DEADLINE, || {
        let i = c.block_on(c.client(Some(OPS_TOKEN)).cluster()).ok()?;
        (i.voters == vec![1, 2, 3]).then_some(i)
    });
    assert!(info.learners.is_empty());
    c.kill(3);
}

#[test]
fn observe_reports_agreement_then_names_the_tampered_node() {
    let mut c = TestCluster::start(3);
    for i in 0..3 {
        c.write_note(&format!("note {i}"));
    }
    let (index, _) = c.wait_converged(&[1, 2, 3], 3);

    let ok = urna(with_nodes(&c, &["observe"]));
    assert_eq!(ok.code, 0, "{}", ok.both());
    assert!(
        ok.stdout.contains("Agreement: all 3 reachable nodes hold digest"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains(&format!("at index {index}")), "{}", ok.stdout);
    let js = urna(with_nodes(&c, &["--json", "observe"]));
    assert_eq!(js.code, 0, "{}", js.both());
    let v: Value = serde_json::from_str(&js.stdout).unwrap_or(Value::Null);
    assert_eq!(v["agree"], Value::Bool(true));
    assert_eq!(v["common_index"], Value::from(index));

    // Node 3 stops; observe says so and fails unless unreachable nodes are allowed.
    c.kill(3);
    let down = urna(with_nodes(&c, &["observe"]));
    assert_eq!(down.code, 1, "{}", down.both());
    assert!(down.stdout.contains("UNREACHABLE"), "{}", down.stdout);
    let allowed = urna(with_nodes(&c, &["observe", "--allow-unreachable"]));
    assert_eq!(allowed.code, 0, "{}", allowed.both());

    // Offline, its stored digest at the common index is altered; it restarts and serves it.
    tamper_stored_digest(&c.node(3).data_dir, index);
    c.start_node(3);
    c.wait_serving(3);
    let (_, _) = wait_for("node 3 caught up", DEADLINE, || {
        let s = c.status(3)?;
        (s.applied_index? >= index).then_some(((), ()))
    });

    let bad = urna(with_nodes(&c, &["observe"]));
    eprintln!("{}", bad.stdout);
    assert_eq!(bad.code, 1, "{}", bad.both());
    let node3 = c.url(3);
    assert!(
        bad.stdout.contains(&format!("DIVERGENCE at index {index}")),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains(&format!("node 3 ({node3}) holds digest")),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("Verdict: DIVERGED: node 3 disagrees"),
        "{}",
        bad.stdout
    );
    let js = urna(with_nodes(&c, &["--json", "observe"]));
    assert_eq!(js.code, 1, "{}", js.both());
    let v: Value = serde_json::from_str(&js.stdout).unwrap_or(Value::Null);
    assert_eq!(v["agree"], Value::Bool(false));
    assert_eq!(v["divergent"][0]["node"], Value::from(3));
    assert_eq!(v["divergent"].as_array().map(Vec::len), Some(1));
}

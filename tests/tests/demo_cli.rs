//! `urna demo` end to end with real processes: a small election from key ceremony to certified result.

use serde_json::Value;
use urna_tests::{bin, urna_cmd, Run};

#[test]
fn demo_certifies_the_true_counts() {
    let run: Run = urna_cmd()
        .args(["demo", "--voters", "20", "--exit", "--json"])
        .env("URNA_NODE_BIN", bin("urna-node"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run urna demo: {e}"))
        .into();
    assert_eq!(run.code, 0, "{}", run.both());
    let s: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.both()));
    assert_eq!(s["voters"], 20);
    assert_eq!(s["cast"], 20, "{}", run.both());
    assert_eq!(s["refused"], 0);
    assert_eq!(s["challenges"], 3);
    // The certified result equals the true counts of the cast ballots.
    assert_eq!(s["certified_counts"], s["true_counts"], "{}", run.both());
    let total_mayor: u64 = s["true_counts"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total_mayor, 20, "every ballot picks exactly one mayor");
    assert_eq!(s["result_matches"], true);
    assert_eq!(s["certificate_verified"], true);
    assert_eq!(
        s["tally_custodians"].as_array().unwrap().len(),
        3,
        "exactly a quorum"
    );
    assert_eq!(s["nodes_agree"], true);
    assert_eq!(s["ok"], true);
    // The record served by the cluster re-verifies offline.
    let verdict = s["verification"]["status"].as_str().unwrap();
    assert_eq!(verdict, "passed", "{}", run.both());
    // --json prints exactly one JSON document and no progress output on stdout.
    assert!(run.stdout.trim_start().starts_with('{') && run.stdout.trim_end().ends_with('}'));
}

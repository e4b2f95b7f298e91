//! Every chaos scenario once on 3 nodes with a short workload, and the self-test: a deliberately broken
//! node build (`urna-node-broken`, feature `broken-drop-apply`) must be caught. The tests run one at a
//! time (they share the machine's cores with the node processes).
//!
//! `URNA_NODE_BIN` / `URNA_NODE_BROKEN_BIN` point at prebuilt binaries; otherwise they are built here
//! (`cargo build`, a no-op when fresh). The broken binary has its own name and is built with
//! `--bin urna-node-broken` only, so the feature never reaches the `urna-node` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use urna_chaos::{run, run_all, RunOptions, Scenario, Verdict};

static SERIAL: Mutex<()> = Mutex::new(());

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("-q")
        .args(args)
        .arg("--manifest-path")
        .arg(&manifest);
    if target_dir().ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cannot run cargo build");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn binary(env: &str, name: &str, build: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    cargo_build(build);
    let p = target_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(p.exists(), "{} not found", p.display());
    p
}

fn options(binary: PathBuf) -> RunOptions {
    RunOptions {
        nodes: 3,
        seed: 1,
        duration: Duration::from_secs(4),
        rate: 8.0,
        binary,
        work_dir: None,
        setup_budget: Duration::from_secs(10),
        keep: false,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn every_scenario_holds_on_three_nodes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = binary(
        "URNA_NODE_BIN",
        "urna-node",
        &["-p", "urna-node", "--bin", "urna-node"],
    );
    let t0 = Instant::now();
    let rt = runtime();
    let mut reports = rt.block_on(run_all(&Scenario::ALL, &options(bin.clone()), |r| {
        eprint!("{}", r.summary());
    }));
    // A run whose setup overran the voting window's budget (a loaded machine) decided nothing: it is
    // run once more with a generous budget.
    for (r, s) in reports.iter_mut().zip(Scenario::ALL) {
        if r.verdict == Verdict::Unknown && r.reason.as_deref().is_some_and(|x| x.contains("overran")) {
            let mut o = options(bin.clone());
            o.setup_budget = Duration::from_secs(30);
            *r = rt.block_on(run(s, &o));
            eprint!("(rerun) {}", r.summary());
        }
    }
    eprintln!("all scenarios in {:.0?}", t0.elapsed());
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Valid)
        .map(|r| {
            format!(
                "{}: {:?} {:?} (kept {:?})",
                r.scenario, r.verdict, r.reason, r.kept_dir
            )
        })
        .collect();
    assert!(bad.is_empty(), "scenarios not valid: {bad:#?}");
}

#[test]
fn a_node_that_drops_applies_is_caught() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = binary(
        "URNA_NODE_BROKEN_BIN",
        "urna-node-broken",
        &[
            "-p",
            "urna-node",
            "--features",
            "broken-drop-apply",
            "--bin",
            "urna-node-broken",
        ],
    );
    let r = runtime().block_on(run(Scenario::Baseline, &options(bin)));
    eprint!("{}", r.summary());
    assert_eq!(r.verdict, Verdict::Invalid, "the checker missed the defect");
    assert!(r.invariants.i1_no_lost_ack.violations > 0);
    if let Some(d) = &r.kept_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}

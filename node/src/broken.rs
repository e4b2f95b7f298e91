//! `urna-node-broken`: `urna-node` built with the test-only `broken-drop-apply` defect, for the chaos
//! harness's self-test (it must catch it). Only built with that feature (see Cargo.toml).

#[path = "main.rs"]
mod server;

fn main() -> std::process::ExitCode {
    server::main()
}

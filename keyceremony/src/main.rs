//! `urna-ceremony`: the custodian's tool.
fn main() {
    eprintln!("urna-ceremony: not built yet");
    std::process::exit(2);
}

//! `urna-node` (the server binary; wired up in a following change).
fn main() {}

//! `urna`: the command line for voters, operators and observers (see `urna --help`).

fn main() -> std::process::ExitCode {
    urna_client::cli::main()
}

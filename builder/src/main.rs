//! The `rbuild` binary: parse the command line, run the command, render the outcome.

fn main() -> std::process::ExitCode {
    rbuild::cli::main()
}

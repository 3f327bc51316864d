//! The `rbuild-runner` binary.

fn main() -> std::process::ExitCode {
    rbuild_runner::cli::main()
}

//! The command line of `rbuild-runner`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Self-hosted CI runner: each GitLab or GitHub Actions job in its own unprivileged sandbox.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild-runner",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the fleet daemon: pick up jobs and run them (not yet implemented)
    Run(RunArgs),
    /// Validate a configuration file and print what is wrong (not yet implemented)
    CheckConfig(ConfigArgs),
    /// Report diagnostics to a forge
    #[command(subcommand)]
    Report(Report),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML)
    #[arg(long)]
    pub config: PathBuf,
    /// Exit after this many jobs have finished
    #[arg(long)]
    pub max_jobs: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML)
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Report {
    /// Create or update a GitHub check run with the annotations of a diagnostics file (not yet implemented)
    Github {
        /// Diagnostics file written by `rbuild build --diagnostics-file`
        #[arg(long)]
        diagnostics: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match cli.command {
        Command::Run(_) => "run",
        Command::CheckConfig(_) => "check-config",
        Command::Report(Report::Github { .. }) => "report github",
    };
    eprintln!("error: `rbuild-runner {name}` is not implemented yet");
    eprintln!("hint: this is a development snapshot; see the open issues for what lands next");
    ExitCode::from(101)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_config_and_max_jobs() {
        let cli = Cli::try_parse_from([
            "rbuild-runner",
            "run",
            "--config",
            "r.toml",
            "--max-jobs",
            "3",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.config, PathBuf::from("r.toml"));
        assert_eq!(args.max_jobs, Some(3));
    }
}

//! The command line of `rbuild-runner`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError};
use crate::envvars;
use crate::outcome::{self, Exit, Failure};

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
    /// Run the fleet daemon: pick up GitLab jobs and run each with `rbuild run`
    Run(RunArgs),
    /// Validate a configuration file (and its environment overrides) and print what is wrong
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
    /// Take at most this many jobs and exit when they have finished
    #[arg(long)]
    pub max_jobs: Option<u64>,
    /// Format of the daemon's own log on stderr (`RBUILD_RUNNER_LOG` sets the level)
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Format of the daemon's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines
    Text,
    /// One JSON object per event, with the job's span fields
    Json,
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
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Report(Report::Github { .. }) => Err(Failure::new(
            Exit::Bug,
            "`rbuild-runner report github` is not implemented yet",
        )
        .hint("this is a development snapshot; the GitHub side of the runner is a separate issue")
        .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(outcome::report(&e).code()),
    }
}

/// Loads the configuration, turning problems into one classified failure.
fn load(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::load(path, &config::Environment::current()).map_err(|e| {
        let failure = match &e {
            ConfigError::Read { source, .. } => Failure::new(Exit::Usage, format!("{e}: {source}"))
                .hint("check that the file exists and is TOML (`key = \"value\"`, `[[gitlab]]` tables)"),
            ConfigError::Invalid { problems, .. } => {
                let mut f = Failure::new(Exit::Usage, e.to_string());
                for p in problems {
                    f = f
                        .detail(format!("`{}`: {}", p.key, p.message))
                        .detail(format!("  hint: {}", p.fix));
                }
                f
            }
        };
        failure.into()
    })
}

fn check_config(args: &ConfigArgs) -> anyhow::Result<()> {
    let cfg = load(&args.config)?;
    let mut out = String::new();
    push(
        &mut out,
        format_args!("configuration `{}` is valid\n", args.config.display()),
    );
    push(
        &mut out,
        format_args!(
            "executor: {} ({}), network {}\n",
            cfg.executor.kind.name(),
            cfg.executor.rbuild.display(),
            cfg.executor.network.name()
        ),
    );
    push(
        &mut out,
        format_args!("jobs at once across instances: {}\n", cfg.concurrent),
    );
    push(
        &mut out,
        format_args!(
            "state: {}\nbuilds: {}\ncache: {}\n",
            cfg.state_dir.display(),
            cfg.builds_dir.display(),
            cfg.cache_dir.display()
        ),
    );
    match cfg.listen {
        Some(a) => push(
            &mut out,
            format_args!("/healthz and /metrics: http://{a}\n"),
        ),
        None => out.push_str("/healthz and /metrics: off (set `listen`)\n"),
    }
    for g in &cfg.gitlab {
        push(
            &mut out,
            format_args!(
                "gitlab `{}`: {} (token from {}), concurrency {}, job timeout cap {}, default image {}\n",
                g.name,
                g.url,
                g.token_source,
                g.concurrency,
                g.job_timeout_cap.map_or_else(
                    || "none".to_owned(),
                    |d| humantime::format_duration(d).to_string()
                ),
                g.default_image
                    .as_deref()
                    .unwrap_or("none (jobs must name an `image:`)"),
            ),
        );
        if g.url.starts_with("http://") && !is_loopback_url(&g.url) {
            push(
                &mut out,
                format_args!(
                    "warning: gitlab `{}` is plain http: its tokens cross the network unencrypted\n",
                    g.name
                ),
            );
        }
    }
    std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes())
        .map_err(|e| Failure::new(Exit::Host, format!("cannot write to stdout: {e}")))?;
    Ok(())
}

fn push(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = std::fmt::Write::write_fmt(out, args);
}

fn is_loopback_url(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = load(&args.config)?;
    init_tracing(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Host, format!("cannot start the async runtime: {e}")))?;
    rt.block_on(crate::daemon::run(
        cfg,
        crate::daemon::Options {
            max_jobs: args.max_jobs,
        },
    ))
}

/// The daemon's log: stderr, `RBUILD_RUNNER_LOG` filter (default `info`), text or JSON.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(envvars::RBUILD_RUNNER_LOG)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty()),
            )
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
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

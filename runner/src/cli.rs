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
    /// Run the fleet daemon: pick up GitLab jobs, and start an Actions runner for each queued
    /// GitHub job, each in its own `rbuild run` sandbox
    Run(RunArgs),
    /// Validate a configuration file (and its environment overrides) and print what is wrong
    CheckConfig(ConfigArgs),
    /// Report diagnostics to a forge
    #[command(subcommand)]
    Report(Report),
    /// The build step of the rbuild GitHub Action (`action/action.yml`)
    ///
    /// Reads the action's inputs from `INPUT_<NAME>` variables as `docker/build-push-action`
    /// parses them, runs `rbuild build` with them as arguments (never through a shell),
    /// writes `imageid`, `digest` and `metadata` to `$GITHUB_OUTPUT` and the image and its
    /// diagnostics to `$GITHUB_STEP_SUMMARY`, and with `annotate: checks|both` reports a
    /// check run. Exits with rbuild's status.
    GithubAction(GithubActionArgs),
}

#[derive(Debug, Args)]
pub struct GithubActionArgs {
    /// The `rbuild` binary to run
    #[arg(long, env = "RBUILD", default_value = "rbuild")]
    pub rbuild: PathBuf,
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
    /// Create (or append to) a GitHub check run with the annotations of a diagnostics file
    ///
    /// Authenticates with `GITHUB_TOKEN` (the job needs `permissions: checks: write`) or as
    /// a GitHub App (`--app-id`, `--app-key-file`, `--installation-id`). When the token may
    /// not write checks (pull requests from forks) it says so once and prints the
    /// diagnostics as workflow commands instead. Prints the check run's id on stdout.
    Github(ReportGithubArgs),
}

#[derive(Debug, Args)]
pub struct ReportGithubArgs {
    /// Diagnostics file written by `rbuild build --diagnostics-file`
    #[arg(long)]
    pub diagnostics: PathBuf,
    /// Repository `OWNER/NAME` (default: `GITHUB_REPOSITORY`)
    #[arg(long, env = envvars::GITHUB_REPOSITORY)]
    pub repo: Option<String>,
    /// Commit to report on (default: the pull request's head from `GITHUB_EVENT_PATH`,
    /// else `GITHUB_SHA`)
    #[arg(long)]
    pub sha: Option<String>,
    /// Name of the check run
    #[arg(long, default_value = "rbuild")]
    pub name: String,
    /// Append to this check run instead of creating one
    #[arg(long)]
    pub check_run_id: Option<u64>,
    /// Path of diagnostics that name no file (the build's Dockerfile, as the repository
    /// names it)
    #[arg(long, default_value = "Dockerfile")]
    pub default_path: String,
    /// REST API URL; GitHub Enterprise Server: `https://HOST/api/v3` (default:
    /// `GITHUB_API_URL`, else `https://api.github.com`)
    #[arg(long, env = envvars::GITHUB_API_URL)]
    pub api_url: Option<String>,
    /// GitHub App: its client id or app id (instead of `GITHUB_TOKEN`)
    #[arg(long, env = envvars::RBUILD_GITHUB_APP_ID, requires_all = ["app_key_file", "installation_id"])]
    pub app_id: Option<String>,
    /// GitHub App: its private key (PEM)
    #[arg(long, env = envvars::RBUILD_GITHUB_APP_KEY_FILE, requires = "app_id")]
    pub app_key_file: Option<PathBuf>,
    /// GitHub App: the installation on the repository's owner
    #[arg(long, env = envvars::RBUILD_GITHUB_INSTALLATION_ID, requires = "app_id")]
    pub installation_id: Option<u64>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Report(Report::Github(args)) => report_github(&args),
        Command::GithubAction(args) => {
            return match crate::forge::github::action::run(&args.rbuild) {
                Ok(code) => ExitCode::from(code),
                Err(e) => ExitCode::from(outcome::report(&e).code()),
            };
        }
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
    for g in &cfg.github {
        push(
            &mut out,
            format_args!(
                "github `{}`: {} as App `{}` (key from {}), webhook on http://{}/webhook, labels {}, runners on {}, image `{}`{}, concurrency {}, pending at most {}, job timeout {}, idle timeout {}\n",
                g.name,
                g.api_url,
                g.app_id,
                g.key_source,
                g.webhook_listen,
                g.labels.join(","),
                g.org.as_ref().map_or_else(
                    || "the event's repository".to_owned(),
                    |o| format!("organisation `{o}`")
                ),
                g.runner_image,
                g.runner_dir
                    .as_ref()
                    .map_or_else(String::new, |d| format!(" with `{}` mounted", d.display())),
                g.concurrency,
                g.max_pending,
                humantime::format_duration(g.job_timeout),
                humantime::format_duration(g.idle_timeout),
            ),
        );
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
    let rt = runtime()?;
    rt.block_on(crate::daemon::run(
        cfg,
        crate::daemon::Options {
            max_jobs: args.max_jobs,
        },
    ))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(Exit::Host, format!("cannot start the async runtime: {e}")).into()
        })
}

fn report_github(args: &ReportGithubArgs) -> anyhow::Result<()> {
    use crate::forge::github::{auth, client, report};
    let diagnostics = report::read_diagnostics(&args.diagnostics)?;
    let repo = args.repo.clone().filter(|r| !r.is_empty()).ok_or_else(|| {
        Failure::new(Exit::Usage, "no repository to report to")
            .hint("pass `--repo OWNER/NAME` (GitHub Actions sets GITHUB_REPOSITORY)")
    })?;
    let Some((owner, name)) = repo
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
    else {
        return Err(
            Failure::new(Exit::Usage, format!("`{repo}` is not `OWNER/NAME`"))
                .hint("pass `--repo OWNER/NAME`")
                .into(),
        );
    };
    let head_sha = match &args.sha {
        Some(s) => s.clone(),
        None => head_sha_from_env().ok_or_else(|| {
            Failure::new(Exit::Usage, "no commit to report on")
                .hint("pass `--sha SHA` (GitHub Actions sets GITHUB_SHA)")
        })?,
    };
    let api = args
        .api_url
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| client::DEFAULT_API_URL.to_owned());
    let target = report::Target {
        owner: owner.to_owned(),
        repo: name.to_owned(),
        head_sha,
        name: args.name.clone(),
        default_path: args.default_path.clone(),
        check_run_id: args.check_run_id,
    };
    let rt = runtime()?;
    let reported = rt.block_on(async {
        let crab = if let (Some(id), Some(key), Some(installation)) =
            (&args.app_id, &args.app_key_file, args.installation_id)
        {
            {
                let pem = fs_err::read_to_string(key).map_err(|e| {
                    Failure::new(Exit::Usage, format!("cannot read the App's private key: {e}"))
                        .hint("download a private key in the App's settings (General > Private keys)")
                })?;
                let app = auth::AppKey::from_pem(id.clone(), &pem).map_err(|e| {
                    Failure::new(Exit::Usage, format!("`{}`: {e}", key.display()))
                        .hint("use the `.pem` file GitHub generated for the App")
                })?;
                client::AppClient::new(&api, app)
                    .installation(installation)
                    .await
                    .map_err(|e| {
                        let hint = match e.status() {
                            Some(401) => "GitHub refused the App's JWT: check `--app-id` (client id or app id), the key, and this host's clock",
                            Some(404) => "no such installation of this App: check `--installation-id` (the App's Install page names it)",
                            _ => "check the network and `--api-url`",
                        };
                        Failure::new(Exit::Forge, format!("cannot get an installation token: {e}")).hint(hint)
                    })?
            }
        } else {
            {
                let token = std::env::var(envvars::GITHUB_TOKEN)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Failure::new(Exit::Usage, "no GitHub token")
                            .hint("set GITHUB_TOKEN (in a workflow: `env: GITHUB_TOKEN: ${{ github.token }}` and `permissions: checks: write`), or pass `--app-id`, `--app-key-file` and `--installation-id`")
                    })?;
                client::octocrab(&api, &crate::config::Secret::new(token))
                    .map_err(|e| Failure::new(Exit::Usage, e.to_string()).hint("pass `--api-url https://HOST/api/v3` for GitHub Enterprise Server"))?
            }
        };
        let mut err = std::io::stderr().lock();
        report::send(&crab, &target, &diagnostics, &mut err).await
    })?;
    if let report::Reported::CheckRun { id, .. } = reported {
        std::io::Write::write_all(&mut std::io::stdout().lock(), format!("{id}\n").as_bytes())
            .map_err(|e| Failure::new(Exit::Host, format!("cannot write to stdout: {e}")))?;
    }
    Ok(())
}

/// The commit of this workflow run: a pull request's head (`GITHUB_SHA` is the merge
/// commit there), else `GITHUB_SHA`.
fn head_sha_from_env() -> Option<String> {
    let from_event = std::env::var_os(envvars::GITHUB_EVENT_PATH)
        .and_then(|p| fs_err::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["pull_request"]["head"]["sha"].as_str().map(str::to_owned));
    from_event.or_else(|| {
        std::env::var(envvars::GITHUB_SHA)
            .ok()
            .filter(|s| !s.is_empty())
    })
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

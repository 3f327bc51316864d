//! `rbuild doctor`: probe this host for every environment cause in the catalog.
//!
//! The check table (or `--json`) goes to stdout; the problems go to stderr as
//! diagnostics in the chosen message format (GitHub annotations in GitHub Actions). Exits
//! 3 when a build would fail on this host, 0 otherwise (warnings included).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;

use crate::cli::DoctorArgs;
use crate::diagnose::probe::{Host, Platform, Report, Status, checks, facts};
use crate::diagnose::render::{Format, Outputs};
use crate::envvars;
use crate::outcome::{Exit, Failure};

/// The default state directory: `$XDG_CACHE_HOME/rbuild`, else `~/.cache/rbuild`.
pub fn default_cache_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    non_empty(envvars::XDG_CACHE_HOME)
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rbuild")
}

/// Runs `rbuild doctor`.
pub fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let platforms = args
        .platforms
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            Platform::parse(p).map_err(|e| {
                Failure::new(Exit::Usage, format!("invalid `--platform`: {e}"))
                    .hint("use `linux/amd64`, `linux/arm64`, `linux/arm/v7`, `linux/riscv64`, ...")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let state_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);

    let facts = facts::gather(&state_dir, &platforms);
    let report = Report {
        host: Host {
            user: facts.user.clone(),
            uid: facts.uid,
            kernel: facts.kernel.clone(),
            arch: facts.host_arch.clone(),
            state_dir: state_dir.display().to_string(),
        },
        checks: checks::evaluate(&facts),
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .context("cannot encode the report as JSON")?;
        writeln!(out, "{text}").context("cannot write to stdout")?;
    } else {
        report
            .write_table(&mut out)
            .context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;

    let diagnostics = report.diagnostics();
    let stderr = std::io::stderr();
    let colour =
        stderr.is_terminal() && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty());
    let outputs = Outputs {
        format: Format::from_env(args.message_format.map(Into::into)),
        colour,
        diagnostics_file: None,
        codequality_file: None,
        step_summary: std::env::var_os(envvars::GITHUB_STEP_SUMMARY)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        default_path: "Dockerfile".to_owned(),
    };
    outputs
        .emit(&diagnostics, &mut stderr.lock())
        .context("cannot write the diagnostics")?;

    let errors = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Error)
        .count();
    if errors > 0 {
        let ids: Vec<&str> = report
            .checks
            .iter()
            .filter_map(|c| c.cause.filter(|_| c.status == Status::Error))
            .collect();
        return Err(Failure::new(
            Exit::Host,
            format!(
                "this host cannot run rootless builds yet: {errors} problem{} ({})",
                if errors == 1 { "" } else { "s" },
                ids.join(", ")
            ),
        )
        .hint("fix the errors above, then run `rbuild doctor` again; `rbuild explain <id>` tells more about each")
        .into());
    }
    Ok(())
}

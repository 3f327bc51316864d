//! `rbuild-runner report github`: a diagnostics file becomes one check run on the commit.
//!
//! The requests are planned by `rbuild_diagnose::render::checks` (a create with the first
//! 50 annotations, then updates of 50 each, which GitHub appends; the last one completes
//! the run); this module adds the catalog's explanation of every cause as the output text
//! and sends them. With `--check-run-id` every request updates that run instead, so several
//! builds can append to one run.
//!
//! A token that may not write checks (a pull request from a fork gets a read-only
//! `GITHUB_TOKEN`; GitHub answers 403) is not an error: the command says so once and
//! prints the diagnostics as workflow commands instead, which need no permission.

use std::fmt::Write as _;
use std::path::Path;

use rbuild_diagnose::render::checks::{self, CheckRun, MAX_SUMMARY, Method};
use rbuild_diagnose::render::github;
use rbuild_diagnose::{Cause, Diagnostic};
use serde_json::Value;

use super::client::{self, ApiError};
use crate::outcome::{Exit, Failure};

/// Where and as what to report.
#[derive(Debug, Clone)]
pub struct Target {
    pub owner: String,
    pub repo: String,
    pub head_sha: String,
    /// Check name (`rbuild`).
    pub name: String,
    /// Path of diagnostics that name no file.
    pub default_path: String,
    /// Append to this run instead of creating one.
    pub check_run_id: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The check run (its id) has every annotation.
    CheckRun { id: u64, requests: usize },
    /// The token could not write checks; the diagnostics were printed as workflow commands.
    WorkflowCommands { status: u16 },
}

/// Reads a `--diagnostics-file` (a JSON array of diagnostics).
pub fn read_diagnostics(path: &Path) -> anyhow::Result<Vec<Diagnostic>> {
    let bytes = fs_err::read(path).map_err(|e| {
        Failure::new(Exit::Usage, format!("cannot read the diagnostics: {e}"))
            .hint("pass the file `rbuild build --diagnostics-file FILE` wrote")
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!(
                "`{}` is not a diagnostics file (a JSON array of diagnostics): {e}",
                path.display()
            ),
        )
        .hint("pass the file `rbuild build --diagnostics-file FILE` wrote")
        .into()
    })
}

/// The catalog's explanation of every cause among `diagnostics`, most severe first, for
/// the check run's output text.
pub fn explanations(diagnostics: &[Diagnostic]) -> String {
    let mut order: Vec<&Diagnostic> = diagnostics.iter().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.severity));
    let mut seen = Vec::new();
    let mut text = String::new();
    for d in order {
        if seen.contains(&d.id.as_str()) {
            continue;
        }
        seen.push(&d.id);
        let Some(cause) = Cause::from_id(&d.id) else {
            continue;
        };
        let e = cause.entry();
        let _ = write!(
            text,
            "### `{}`: {}\n\n{}\n\n{}\n\n**Fix:** {}\n\n",
            cause.id(),
            e.title,
            e.summary,
            e.explanation,
            e.hint
        );
        for (i, step) in e.fix.iter().enumerate() {
            let _ = writeln!(text, "{}. {step}", i + 1);
        }
        let _ = write!(text, "\n[{}]({})\n\n", cause.doc_path(), cause.url());
    }
    if text.len() > MAX_SUMMARY {
        let mut end = MAX_SUMMARY - 64;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n\n(cut at GitHub's size limit; see `rbuild explain ID`)");
    }
    text
}

/// The requests for `diagnostics`, with explanations, for `target`.
pub fn plan(target: &Target, diagnostics: &[Diagnostic], now: &str) -> Vec<checks::Request> {
    let run = CheckRun {
        name: &target.name,
        head_sha: &target.head_sha,
        default_path: &target.default_path,
        completed_at: now,
    };
    let text = explanations(diagnostics);
    let mut reqs = checks::check_run_requests(&run, diagnostics);
    for r in &mut reqs {
        if !text.is_empty() {
            r.body["output"]["text"] = Value::String(text.clone());
        }
        if target.check_run_id.is_some() {
            // Appending to an existing run: every request is an update, which takes
            // neither a head sha nor a new name.
            r.method = Method::Update;
            if let Some(o) = r.body.as_object_mut() {
                o.remove("head_sha");
                o.remove("name");
            }
        }
    }
    reqs
}

/// Sends the planned requests. On a 403 for the first one, prints the fallback note and
/// the workflow commands to `out` instead.
pub async fn send(
    crab: &octocrab::Octocrab,
    target: &Target,
    diagnostics: &[Diagnostic],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Reported> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let reqs = plan(target, diagnostics, &now);
    let mut id = target.check_run_id;
    for (i, r) in reqs.iter().enumerate() {
        let result = match (r.method, id) {
            (Method::Create, _) | (Method::Update, None) => {
                client::create_check_run(crab, &target.owner, &target.repo, &r.body)
                    .await
                    .map(|new| id = Some(new))
            }
            (Method::Update, Some(run)) => {
                client::update_check_run(crab, &target.owner, &target.repo, run, &r.body).await
            }
        };
        match result {
            Ok(()) => {}
            Err(ApiError::Status { status: 403, .. }) if i == 0 => {
                fallback(out, diagnostics, 403)?;
                return Ok(Reported::WorkflowCommands { status: 403 });
            }
            Err(e) => return Err(classify(&e, target, i, reqs.len()).into()),
        }
    }
    Ok(Reported::CheckRun {
        id: id.expect("the first request created or named the run"),
        requests: reqs.len(),
    })
}

/// The note (once) and the workflow commands, when checks cannot be written.
pub fn fallback(
    out: &mut dyn std::io::Write,
    diagnostics: &[Diagnostic],
    status: u16,
) -> std::io::Result<()> {
    let note = github::command(
        "notice",
        &github::Properties {
            title: Some("rbuild".to_owned()),
            ..github::Properties::default()
        },
        &format!(
            "this token cannot write check runs (GitHub answered {status}); the diagnostics are reported as workflow commands instead. A pull request from a fork gets a read-only GITHUB_TOKEN; elsewhere grant `permissions: checks: write`."
        ),
    );
    writeln!(out, "{note}")?;
    for line in github::workflow_commands(diagnostics) {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn classify(e: &ApiError, target: &Target, i: usize, total: usize) -> Failure {
    let what = format!(
        "cannot report to GitHub (request {} of {total} for commit `{}` of `{}/{}`)",
        i + 1,
        target.head_sha,
        target.owner,
        target.repo
    );
    let hint = match e.status() {
        Some(401) => {
            "the token is invalid or expired: a GITHUB_TOKEN is valid only while its job runs; an App installation token for an hour"
        }
        Some(403) => {
            "the token may not write check runs: grant `permissions: checks: write` to the job, or give the GitHub App the `Checks: write` permission"
        }
        Some(404) => {
            "the repository or check run does not exist for this token: check `--repo` (GITHUB_REPOSITORY) and that the App is installed on it"
        }
        Some(422) => {
            "GitHub refused the request's content: check `--sha` names a commit of the repository"
        }
        Some(_) => "GitHub had a problem; run the command again",
        None => "check the network and `--api-url` (GITHUB_API_URL)",
    };
    Failure::new(Exit::Forge, format!("{what}: {e}")).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_diagnose::Cause;

    fn target(update: Option<u64>) -> Target {
        Target {
            owner: "o".into(),
            repo: "r".into(),
            head_sha: "ce587453ced02b1526dfb4cb910479d431683101".into(),
            name: "rbuild".into(),
            default_path: "Dockerfile".into(),
            check_run_id: update,
        }
    }

    #[test]
    fn the_plan_explains_each_cause_once_and_appends_when_asked() {
        let diags = vec![
            Cause::ClockSkew.warning("late"),
            Cause::BinfmtNotRegistered
                .error("no arm64")
                .at("Dockerfile", 3, 3),
            Cause::ClockSkew.warning("late again"),
        ];
        let reqs = plan(&target(None), &diags, "2026-01-01T00:00:00Z");
        assert_eq!(reqs.len(), 1);
        let text = reqs[0].body["output"]["text"].as_str().unwrap();
        assert_eq!(text.matches("### `clock-skew`").count(), 1);
        assert!(
            text.find("binfmt-not-registered").unwrap() < text.find("clock-skew").unwrap(),
            "errors first"
        );
        assert!(text.contains("**Fix:**"));
        let reqs = plan(&target(Some(9)), &diags, "2026-01-01T00:00:00Z");
        assert!(reqs.iter().all(|r| r.method == Method::Update));
        assert!(reqs[0].body.get("head_sha").is_none());
    }

    #[test]
    fn the_fallback_says_so_once_then_lists_the_commands() {
        let diags: Vec<Diagnostic> = (0..12)
            .map(|i| Cause::RunFailed.error(format!("e{i}")))
            .collect();
        let mut out = Vec::new();
        fallback(&mut out, &diags, 403).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("cannot write check runs").count(), 1);
        assert!(text.starts_with("::notice title=rbuild::"));
        assert_eq!(
            text.lines().filter(|l| l.starts_with("::error")).count(),
            10
        );
    }
}

//! `rbuild-runner report github` against the fake GitHub (`rbuild_e2e::github`), which
//! verifies the App JWT with openssl, enforces the Checks API limits and serves under
//! GitHub Enterprise Server's `/api/v3`. Every test ends by asserting the fake saw no
//! protocol violation.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use rbuild_e2e::github::FakeGithub;
use rbuild_e2e::{bins, require};
use serde_json::{Value, json};

const SHA: &str = "ce587453ced02b1526dfb4cb910479d431683101";

fn assert_clean(gh: &FakeGithub) {
    let v = gh.violations();
    assert!(
        v.is_empty(),
        "the fake GitHub saw violations:\n{}",
        v.join("\n")
    );
}

/// 53 errors on Dockerfile lines, 70 warnings without a file, 2 notices.
fn many_diagnostics() -> Vec<Value> {
    let mut d: Vec<Value> = (0..53)
        .map(|i| {
            json!({
                "id": "run-failed", "severity": "error", "title": "a RUN step failed",
                "message": format!("`RUN make {i}` exited 2"), "hint": "read the step's output",
                "file": "ci/Dockerfile", "line": i + 1, "end_line": i + 2,
                "evidence": [format!("make: *** [all] Error {i}")],
            })
        })
        .collect();
    d.extend((0..70).map(|i| {
        json!({
            "id": "clock-skew", "severity": "warning", "title": "the clock is wrong",
            "message": format!("file {i} is from the future"),
        })
    }));
    d.extend((0..2).map(|i| {
        json!({
            "id": "binfmt-not-registered", "severity": "notice", "title": "t",
            "message": format!("notice {i}"), "file": "ci/Dockerfile", "line": 1,
        })
    }));
    d
}

fn write_diagnostics(dir: &Path, diags: &[Value]) -> std::path::PathBuf {
    let p = dir.join("diagnostics.json");
    std::fs::write(&p, serde_json::to_vec(diags).unwrap()).unwrap();
    p
}

/// `rbuild-runner report github ARGS` with a clean environment plus `env`.
fn report(args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = bins::binary("rbuild-runner").expect("the rbuild-runner binary");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["report", "github"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("rbuild-runner runs")
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What identifies an annotation: (id, path, start, end, level, message's first line).
fn key_of_annotation(a: &Value) -> (String, String, u64, u64, String, String) {
    let title = a["title"].as_str().unwrap();
    let id = title.split(':').next().unwrap().to_owned();
    (
        id,
        a["path"].as_str().unwrap().to_owned(),
        a["start_line"].as_u64().unwrap(),
        a["end_line"].as_u64().unwrap(),
        a["annotation_level"].as_str().unwrap().to_owned(),
        a["message"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned(),
    )
}

fn key_of_diagnostic(d: &Value) -> (String, String, u64, u64, String, String) {
    let file = d["file"].as_str();
    let line = file.and(d["line"].as_u64()).unwrap_or(1);
    let level = match d["severity"].as_str().unwrap() {
        "error" => "failure",
        other => other,
    };
    (
        d["id"].as_str().unwrap().to_owned(),
        file.unwrap_or("Dockerfile").to_owned(),
        line,
        file.and(d["end_line"].as_u64()).unwrap_or(line),
        level.to_owned(),
        d["message"].as_str().unwrap().to_owned(),
    )
}

fn multiset<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

#[test]
fn an_app_reports_every_annotation_fifty_per_request() {
    let gh = require!(FakeGithub::start());
    let dir = tempfile::tempdir().unwrap();
    let diags = many_diagnostics();
    let file = write_diagnostics(dir.path(), &diags);
    let key = gh.app_key();
    let out = report(
        &[
            "--diagnostics",
            file.to_str().unwrap(),
            "--repo",
            "octo-org/app",
            "--sha",
            SHA,
            "--api-url",
            &gh.url(),
            "--app-id",
            &gh.app_id(),
            "--app-key-file",
            key.to_str().unwrap(),
            "--installation-id",
            "42",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_clean(&gh);

    // The JWT (checked against the public key by openssl in the fake) and the exchange.
    let jwts = gh.jwts();
    assert_eq!(jwts.len(), 1, "one JWT for one installation token");
    assert_eq!(jwts[0]["iss"], gh.app_id());
    let (iat, exp) = (
        jwts[0]["iat"].as_u64().unwrap(),
        jwts[0]["exp"].as_u64().unwrap(),
    );
    assert!(exp - iat <= 600);
    assert_eq!(gh.issued_tokens(), 1);

    let runs = gh.runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        run.id.to_string()
    );
    assert_eq!((run.owner.as_str(), run.repo.as_str()), ("octo-org", "app"));
    assert_eq!(run.head_sha, SHA);
    assert_eq!(run.name, "rbuild");
    assert_eq!(run.batches, [50, 50, 25], "at most 50 per request");
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert_eq!(run.title, "rbuild: 53 errors, 70 warnings, 2 notices");
    // The union of the annotations is exactly the diagnostics.
    assert_eq!(
        multiset(run.annotations.iter().map(key_of_annotation)),
        multiset(diags.iter().map(key_of_diagnostic))
    );
    // Errors come first, so a runner that dies half way has reported the failures.
    assert!(
        run.annotations[..53]
            .iter()
            .all(|a| a["annotation_level"] == "failure")
    );
    // The summary has the table; the text explains each cause from the catalog once.
    assert!(
        run.summary
            .contains("| level | id | where | message | fix |")
    );
    let text = run.text.as_deref().unwrap_or_default();
    for id in ["run-failed", "clock-skew", "binfmt-not-registered"] {
        assert_eq!(text.matches(&format!("### `{id}`")).count(), 1, "{text}");
    }
    assert!(text.contains("**Fix:**"));
}

#[test]
fn a_workflow_token_reports_on_the_pull_requests_head() {
    let gh = require!(FakeGithub::start());
    let dir = tempfile::tempdir().unwrap();
    let diags = vec![json!({
        "id": "xattr-security-selinux-in-layer", "severity": "warning",
        "title": "SELinux labels in a base layer", "message": "dropped `security.selinux` on 12 files",
        "file": "Dockerfile", "line": 1, "end_line": 1,
    })];
    let file = write_diagnostics(dir.path(), &diags);
    let head = "1111111111111111111111111111111111111111";
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"pull_request": {"head": {"sha": head}}}).to_string(),
    )
    .unwrap();
    gh.add_token("ghs_workflowtoken", true);
    let url = gh.url();
    let out = report(
        &["--diagnostics", file.to_str().unwrap()],
        &[
            ("GITHUB_TOKEN", "ghs_workflowtoken"),
            ("GITHUB_REPOSITORY", "octo-org/app"),
            ("GITHUB_SHA", SHA),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
            ("GITHUB_API_URL", &url),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_clean(&gh);
    let runs = gh.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].head_sha, head,
        "a pull request's head, not its merge commit"
    );
    assert_eq!(runs[0].batches, [1]);
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    assert_eq!(gh.issued_tokens(), 0, "no App involved");

    // A second report appends to the same run.
    let id = runs[0].id.to_string();
    let out = report(
        &[
            "--diagnostics",
            file.to_str().unwrap(),
            "--check-run-id",
            &id,
        ],
        &[
            ("GITHUB_TOKEN", "ghs_workflowtoken"),
            ("GITHUB_REPOSITORY", "octo-org/app"),
            ("GITHUB_SHA", SHA),
            ("GITHUB_API_URL", &url),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_clean(&gh);
    let runs = gh.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].annotations.len(), 2);
}

#[test]
fn a_fork_pull_request_falls_back_to_workflow_commands_and_says_so_once() {
    let gh = require!(FakeGithub::start());
    let dir = tempfile::tempdir().unwrap();
    let diags = many_diagnostics();
    let file = write_diagnostics(dir.path(), &diags);
    gh.add_token("ghs_readonly", false);
    let url = gh.url();
    let out = report(
        &["--diagnostics", file.to_str().unwrap(), "--sha", SHA],
        &[
            ("GITHUB_TOKEN", "ghs_readonly"),
            ("GITHUB_REPOSITORY", "fork-owner/app"),
            ("GITHUB_API_URL", &url),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_clean(&gh);
    assert!(gh.runs().is_empty());
    assert!(out.stdout.is_empty(), "no check run id: {}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("cannot write check runs").count(), 1, "{err}");
    let count = |p: &str| err.lines().filter(|l| l.starts_with(p)).count();
    // GitHub shows 10 per level and step: nine and a summary line for errors and warnings.
    assert_eq!(count("::error "), 10, "{err}");
    assert_eq!(count("::warning "), 10, "{err}");
    assert_eq!(count("::notice "), 3, "{err}");
    assert!(err.contains("::error title=run-failed,file=ci/Dockerfile,line=1,endLine=2::"));
}

#[test]
fn a_wrong_app_key_or_missing_token_is_a_clear_error() {
    let gh = require!(FakeGithub::start());
    let dir = tempfile::tempdir().unwrap();
    let file = write_diagnostics(dir.path(), &many_diagnostics()[..1]);
    // Another key than the App's: GitHub refuses the JWT.
    let other = dir.path().join("other.pem");
    assert!(
        Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&other)
            .arg("2048")
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = report(
        &[
            "--diagnostics",
            file.to_str().unwrap(),
            "--repo",
            "o/r",
            "--sha",
            SHA,
            "--api-url",
            &gh.url(),
            "--app-id",
            &gh.app_id(),
            "--app-key-file",
            other.to_str().unwrap(),
            "--installation-id",
            "42",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: cannot get an installation token"),
        "{err}"
    );
    assert!(err.contains("hint: GitHub refused the App's JWT"), "{err}");
    assert!(!err.contains("BEGIN RSA"), "no key material in messages");

    let out = report(
        &[
            "--diagnostics",
            file.to_str().unwrap(),
            "--repo",
            "o/r",
            "--sha",
            SHA,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hint: set GITHUB_TOKEN"));

    let out = report(
        &[
            "--diagnostics",
            "/nonexistent.json",
            "--repo",
            "o/r",
            "--sha",
            SHA,
        ],
        &[("GITHUB_TOKEN", "x")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

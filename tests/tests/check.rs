//! `rbuild check` end to end: the real binary, run as the unprivileged test user, on
//! Dockerfiles written to a directory the test user owns.

#![allow(clippy::unwrap_used)] // helpers of the test harness: a panic is the failure report

use std::fs;
use std::path::Path;

use rbuild_e2e::user::output;
use rbuild_e2e::{Env, require};

/// Writes `content` as `name` in `dir`, owned by the test user.
fn write(env: &Env, dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    env.user.give(&path).unwrap();
}

/// Runs `rbuild check ARGS` in `dir`: (exit code, stdout, stderr).
fn check(env: &Env, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = env.rbuild();
    cmd.current_dir(dir).arg("check").args(args);
    let out = output(&mut cmd).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_good_dockerfile_exits_0_and_prints_the_classic_dump() {
    let env = require!(Env::get());
    let dir = env.user.tempdir().unwrap();
    write(
        &env,
        dir.path(),
        "Dockerfile",
        "# syntax=docker/dockerfile:1\r\nARG BASE=busybox\r\nFROM ${BASE} AS build\r\nENV name=value\r\n\
         FROM build\r\nCOPY --from=build --chown=1:1 /a /b\r\nONBUILD RUN echo x\r\n\
         HEALTHCHECK --interval=5s CMD [\"/check.sh\"]\r\nRUN <<EOF\r\necho \"héllo\\tworld\"\r\nEOF\r\n\
         CMD [\"/bin/app\"]\r\n",
    );
    let (code, stdout, stderr) = check(&env, dir.path(), &["--print-ast"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(
        stdout,
        "(arg \"BASE=busybox\")\n\
         (from \"${BASE}\" \"AS\" \"build\")\n\
         (env \"name\" \"value\" \"=\")\n\
         (from \"build\")\n\
         (copy [\"--from=build\" \"--chown=1:1\"] \"/a\" \"/b\")\n\
         (onbuild (run \"echo x\"))\n\
         (healthcheck [\"--interval=5s\"] \"CMD\" \"/check.sh\")\n\
         (run \"<<EOF\")\n\
         (cmd \"/bin/app\")\n"
    );
    assert_eq!(stderr, "");
}

#[test]
fn a_clean_file_prints_nothing_on_stderr_and_lint_warnings_keep_exit_0() {
    let env = require!(Env::get());
    let dir = env.user.tempdir().unwrap();
    write(
        &env,
        dir.path(),
        "Dockerfile",
        "FROM busybox\nRUN echo hi\nCMD [\"sh\"]\n",
    );
    let (code, stdout, stderr) = check(&env, dir.path(), &[]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));

    write(
        &env,
        dir.path(),
        "lint.Dockerfile",
        "FROM busybox\nMAINTAINER me\nCMD sh\n",
    );
    let (code, _, stderr) = check(&env, dir.path(), &["-f", "lint.Dockerfile"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stderr.contains(
            "warning: lint.Dockerfile:2: `MAINTAINER` is deprecated (maintainer-deprecated)"
        ),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("warning: lint.Dockerfile:3:"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("error"), "stderr: {stderr}");
}

#[test]
fn a_malformed_file_exits_1_naming_file_line_and_fix() {
    let env = require!(Env::get());
    let dir = env.user.tempdir().unwrap();
    write(
        &env,
        dir.path(),
        "broken.Dockerfile",
        "FROM busybox AS build\nRUN echo ok\nENV DEBUG\nCOPY --from=biuld /out \\\n  /app\n",
    );
    let (code, stdout, stderr) = check(
        &env,
        dir.path(),
        &["-f", "broken.Dockerfile", "--print-ast"],
    );
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        stderr.contains("error: broken.Dockerfile:3: ENV must have two arguments (invalid-key-value)\nhint: write `ENV name=value`\n"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.ends_with("error: `broken.Dockerfile` has 1 error\n"),
        "stderr: {stderr}"
    );
    // A syntax error leaves the tree incomplete: no half dump on stdout.
    assert_eq!(stdout, "");

    // An instruction-level error still has a complete tree, and a lint on a continued
    // instruction names both its lines.
    write(
        &env,
        dir.path(),
        "Dockerfile",
        "FROM busybox AS build\nWORKDIR\nCOPY --from=biuld /out \\\n  /app\n",
    );
    let (code, stdout, stderr) = check(&env, dir.path(), &["--print-ast"]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert_eq!(
        stdout,
        "(from \"busybox\" \"AS\" \"build\")\n(workdir)\n(copy [\"--from=biuld\"] \"/out\" \"/app\")\n"
    );
    assert!(stderr.contains("error: Dockerfile:2: WORKDIR requires exactly one argument, got 0 (invalid-instruction)"), "stderr: {stderr}");
}

#[test]
fn missing_file_and_bad_options_are_classified() {
    let env = require!(Env::get());
    let dir = env.user.tempdir().unwrap();
    let (code, _, stderr) = check(&env, dir.path(), &["-f", "nope.Dockerfile"]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("error: cannot read the Dockerfile `nope.Dockerfile`"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("hint: pass the Dockerfile with `-f PATH`"),
        "stderr: {stderr}"
    );

    write(&env, dir.path(), "Dockerfile", "FROM busybox AS build\n");
    let (code, _, stderr) = check(&env, dir.path(), &["--build-arg", "NOVALUE"]);
    assert_eq!(code, 2, "stderr: {stderr}");
    let (code, _, stderr) = check(&env, dir.path(), &["--target", "biuld"]);
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(
        stderr.contains("target stage `biuld` could not be found"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("hint: did you mean `--target build`?"),
        "stderr: {stderr}"
    );
}

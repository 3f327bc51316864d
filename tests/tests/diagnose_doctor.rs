//! `rbuild doctor` and `rbuild explain`, run as unprivileged users on this host.
//!
//! - the test user (a 65536-id subordinate range) passes every check a rootless,
//!   multi-arch build needs, and the verdicts agree with independent probes;
//! - a user without a subordinate range gets `subid-range-too-small` with a `usermod`
//!   command that, applied as root, fixes it;
//! - a state directory on a nearly full tmpfs gets `disk-full-or-inodes`;
//! - in GitHub Actions the problems are workflow commands, identical to `@actions/core`'s,
//!   and a table is appended to `$GITHUB_STEP_SUMMARY`.

use std::path::Path;
use std::process::{Command, Output};

use rbuild::diagnose::Diagnostic;
use rbuild::diagnose::render::github;
use rbuild_e2e::plain_user::{self, PlainUser};
use rbuild_e2e::user::{describe, output};
use rbuild_e2e::{Env, devtools, require, tool, userns};
use serde_json::Value;

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = output(cmd).unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check `{id}` in {report:#}"))
}

#[test]
fn doctor_passes_for_the_test_user_and_agrees_with_independent_probes() {
    let env = require!(Env::get());
    require!(userns(env.user));
    require!(tool("/usr/bin/qemu-aarch64-static", "qemu-user-static"));

    let mut cmd = env.rbuild();
    cmd.current_dir("/")
        .args(["doctor", "--json", "--platform", "linux/amd64,linux/arm64"]);
    let (out, stdout, stderr) = run(&mut cmd);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "`{}` printed no JSON ({e}):\n{stdout}\n{stderr}",
            describe(&cmd)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["host"]["user"], env.user.name.as_str());
    assert_eq!(report["host"]["uid"], env.user.uid);

    for id in [
        "userns",
        "subids",
        "id-helpers",
        "proc",
        "overlay",
        "binfmt:linux/amd64",
    ] {
        assert_eq!(
            check(&report, id)["status"],
            "ok",
            "{id}: {:#}",
            check(&report, id)
        );
    }
    // The subordinate range doctor found is the one the harness gave the user.
    let r = env.user.subuid;
    let expected = format!("{} uids ({}-{})", r.count, r.start, r.start + r.count - 1);
    let subids = check(&report, "subids")["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(subids.starts_with(&expected), "{subids} vs {expected}");
    // arm64 runs through qemu: privately registered (Linux >= 6.7) or the host's handler.
    let arm = check(&report, "binfmt:linux/arm64");
    assert_eq!(arm["status"], "ok", "{arm:#}");
    assert!(
        arm["facts"][0]
            .as_str()
            .unwrap()
            .starts_with("interpreter `/usr/bin/qemu-aarch64-static`: qemu-aarch64 version"),
        "{arm:#}"
    );
    // Diagnostics in the report are the contract records, and only for checks not ok.
    for d in report["diagnostics"].as_array().unwrap() {
        let d: Diagnostic = serde_json::from_value(d.clone()).unwrap();
        assert_ne!(d.severity, rbuild::diagnose::Severity::Error, "{d:?}");
    }
    // Warnings (if any) are explained on stderr, data on stdout only.
    for line in stderr.lines().filter(|l| l.starts_with("warning[")) {
        let id = line
            .trim_start_matches("warning[")
            .split(']')
            .next()
            .unwrap();
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["cause"] == id && c["status"] == "warning"),
            "{line}"
        );
    }

    // The human table says the same, on stdout.
    let (out, table, _) = run(env.rbuild().current_dir("/").arg("doctor"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        table.starts_with(&format!(
            "rbuild doctor: `{}` (uid {})",
            env.user.name, env.user.uid
        )),
        "{table}"
    );
    assert!(table.contains("\n  ok       user namespaces"), "{table}");
    assert!(
        table.contains("this host is ready for rootless builds"),
        "{table}"
    );
}

/// Takes the subordinate ranges of a user away again when dropped, whatever happens.
struct Undo<'a>(&'a PlainUser);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = plain_user::remove_ranges(&self.0.name, self.0.uid) {
            eprintln!("cannot remove the range given to `{}`: {e}", self.0.name);
        }
    }
}

/// The range in a `usermod --add-subuids S-E --add-subgids S-E USER` hint.
fn hinted_range(hint_line: &str) -> (u64, u64) {
    let after = hint_line
        .split("--add-subuids ")
        .nth(1)
        .unwrap_or_else(|| panic!("no --add-subuids in {hint_line}"));
    let range = after.split_whitespace().next().expect("a range follows");
    let (s, e) = range.split_once('-').expect("the range is START-END");
    (
        s.parse().expect("START is a number"),
        e.parse().expect("END is a number"),
    )
}

#[test]
fn a_user_without_subordinate_ids_gets_subid_range_too_small_and_a_fix_that_works() {
    let env = require!(Env::get());
    let user = require!(PlainUser::no_subids());
    // Other tests run doctor as this user expecting no range: hold the lock on
    // `/etc/sub?id` for the whole test, since it adds a range for a while.
    let _lock = plain_user::lock_subids().unwrap();

    let doctor = |args: &[&str]| {
        let mut cmd = user.command(&env.rbuild);
        cmd.arg("doctor").args(args);
        run(&mut cmd)
    };

    // JSON: the verdict and the catalog id.
    let (out, stdout, _) = doctor(&["--json"]);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    let subids = check(&report, "subids");
    assert_eq!(subids["status"], "error");
    assert_eq!(subids["cause"], "subid-range-too-small");

    // Human: the table, the diagnostic with the fix, the exit class.
    let (out, table, stderr) = doctor(&[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3 is a host problem\n{stderr}"
    );
    assert!(table.contains("\n  error    subordinate ids"), "{table}");
    assert!(
        table.contains("this host is not ready: 1 problem to fix"),
        "{table}"
    );
    assert!(stderr.contains(&format!(
        "error[subid-range-too-small]: not enough subordinate ids are mapped for this build\n  `{}` has no subordinate uids in `/etc/subuid` and no subordinate gids in `/etc/subgid`",
        user.name
    )), "{stderr}");
    let hint = stderr
        .lines()
        .find(|l| l.starts_with("hint: as root: `usermod --add-subuids"))
        .unwrap_or_else(|| panic!("no usermod hint:\n{stderr}"));
    assert!(
        hint.contains(&format!("{}` (a range no other user has)", user.name)),
        "{hint}"
    );
    assert!(
        stderr.contains("more: `rbuild explain subid-range-too-small`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: this host cannot run rootless builds yet: 1 problem (subid-range-too-small)"
        ),
        "{stderr}"
    );

    // Apply the hint exactly as printed, as root; doctor then passes that check; undo.
    let (start, end) = hinted_range(hint);
    assert_eq!(end - start + 1, 65536);
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let f: Vec<&str> = line.split(':').collect();
            let (s, n): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            assert!(
                s + n <= start || s > end,
                "hinted range {start}-{end} overlaps `{line}` in {file}"
            );
        }
    }
    let command = hint
        .trim_start_matches("hint: as root: `")
        .split('`')
        .next()
        .unwrap()
        .to_owned();
    let undo = Undo(user);
    let applied = Command::new("sh").args(["-c", &command]).status().unwrap();
    assert!(applied.success(), "`{command}` failed");
    let (_, stdout, _) = doctor(&["--json"]);
    drop(undo);
    assert!(plain_user::ranges("/etc/subuid", &user.name, user.uid).is_empty());
    let after: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(check(&after, "subids")["status"], "ok", "{after:#}");
    if userns(env.user).is_ok() {
        // With the range, newuidmap maps all of it.
        assert_eq!(check(&after, "id-helpers")["status"], "ok", "{after:#}");
    }
}

#[test]
fn in_github_actions_problems_are_annotations_identical_to_actions_core() {
    let env = require!(Env::get());
    let user = require!(PlainUser::no_subids());
    let node_modules = require!(devtools::actions_core());
    let _lock = plain_user::lock_subids().unwrap();
    let dir = user.tempdir().unwrap();
    let summary = dir.path().join("step-summary.md");

    let mut cmd = user.command(&env.rbuild);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .args(["doctor", "--json"]);
    let (out, stdout, stderr) = run(&mut cmd);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let diags: Vec<Diagnostic> = serde_json::from_value(report["diagnostics"].clone()).unwrap();
    let sub = diags
        .iter()
        .find(|d| d.id == "subid-range-too-small")
        .expect("the diagnostic is in the report");

    // stderr: one workflow command per diagnostic (then the error summary).
    let annotations: Vec<&str> = stderr.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(annotations.len(), diags.len(), "{stderr}");
    assert!(
        annotations[0].starts_with("::error title=subid-range-too-small::"),
        "{stderr}"
    );

    // Exactly what GitHub's own library prints for that message.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/diagnose/actions-core.mjs");
    let case =
        serde_json::json!([{ "level": "error", "title": sub.id, "message": github::message(sub) }]);
    let mut node = Command::new("node")
        .arg(&script)
        .arg(&node_modules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut node.stdin.take().unwrap(), case.to_string().as_bytes())
        .unwrap();
    let expected = String::from_utf8(node.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(format!("{}\n", annotations[0]), expected);

    // The step summary got the table.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### rbuild: 1 error"), "{md}");
    assert!(md.contains("| error | [`subid-range-too-small`]("), "{md}");
}

#[test]
fn a_nearly_full_state_directory_is_disk_full_or_inodes() {
    // A 16 MiB tmpfs in a mount namespace of our own, as the state directory.
    let env = require!(Env::get());
    require!(tool("/usr/bin/setpriv", "util-linux"));
    if rbuild_e2e::user::current_uid() != 0 {
        rbuild_e2e::gate::missing(&rbuild_e2e::Missing::new(
            "mounting a small tmpfs for the state directory needs root",
            "run the end-to-end tests as root (./scripts/test does)",
        ));
        return;
    }
    let dir = env.user.tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let script = format!(
        "mount -t tmpfs -o size=16m,nr_inodes=4000,mode=0755,uid={uid},gid={gid} tmpfs \"$1\" && \
         exec setpriv --reuid={uid} --regid={gid} --clear-groups env -i HOME=\"$2\" PATH=/usr/bin:/bin LANG=C.UTF-8 \"$3\" doctor --json --cache-dir \"$1\"",
        uid = env.user.uid,
        gid = env.user.gid
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(&state)
    .arg(&env.user.home)
    .arg(&env.rbuild);
    let (out, stdout, stderr) = run(&mut cmd);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}\n{stderr}"));
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let c = check(&report, "state-dir");
    assert_eq!(c["status"], "error", "{c:#}");
    assert_eq!(c["cause"], "disk-full-or-inodes");
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("almost full: 16.0 MiB"),
        "{c:#}"
    );
    assert!(stderr.contains("error[disk-full-or-inodes]"), "{stderr}");
    assert!(stderr.contains("check `df -h` and `df -i`"), "{stderr}");
}

#[test]
fn a_foreign_xdg_runtime_dir_is_a_warning_not_a_failure() {
    let env = require!(Env::get());
    let mut cmd = env.rbuild();
    cmd.current_dir("/")
        .env("XDG_RUNTIME_DIR", "/root")
        .args(["doctor", "--json"]);
    let (_, stdout, stderr) = run(&mut cmd);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let c = check(&report, "xdg-runtime-dir");
    assert_eq!(c["status"], "warning", "{c:#}");
    assert_eq!(c["cause"], "xdg-runtime-dir-wrong");
    assert!(
        stderr.contains("warning[xdg-runtime-dir-wrong]"),
        "{stderr}"
    );
}

#[test]
fn explain_prints_entries_lists_them_and_suggests_near_ids() {
    let env = require!(Env::get());
    let (out, text, _) = run(env.rbuild().args(["explain", "binfmt-not-registered"]));
    assert!(out.status.success());
    assert!(text.starts_with(
        "binfmt-not-registered: no emulator is registered for the target architecture\n"
    ));
    for part in [
        "Why it happens",
        "How to fix it",
        "What rbuild does",
        "exec format error",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }

    let (out, list, _) = run(env.rbuild().args(["explain", "--list"]));
    assert!(out.status.success());
    assert_eq!(list.lines().count(), rbuild::diagnose::Cause::ALL.len());

    let (out, json, _) = run(env.rbuild().args(["explain", "--json", "rlimit-nofile"]));
    assert!(out.status.success());
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["id"], "rlimit-nofile");
    assert_eq!(v["auto_avoid"], "yes");
    assert!(!v["signatures"].as_array().unwrap().is_empty());

    let (out, _, stderr) = run(env.rbuild().args(["explain", "binfmt-not-registred"]));
    assert_eq!(out.status.code(), Some(2), "unknown ids are usage errors");
    assert_eq!(
        stderr,
        format!(
            "error: no known failure cause has the id `binfmt-not-registred`\nhint: did you mean `binfmt-not-registered`?\nhint: `rbuild explain --list` lists all {} ids\n",
            rbuild::diagnose::Cause::ALL.len()
        )
    );
}

#[test]
fn doctor_rejects_an_unknown_platform_as_a_usage_error() {
    let env = require!(Env::get());
    let (out, _, stderr) = run(env.rbuild().args(["doctor", "--platform", "linux/sparc"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid `--platform`: `linux/sparc`: unknown architecture `sparc`"
        ),
        "{stderr}"
    );
}

//! The GitHub Action (`action/action.yml`), run step by step the way the Actions runner
//! runs a composite action (`rbuild_e2e::action`), as the unprivileged test user.
//!
//! - With a stand-in `rbuild` that records its argument vector and writes the files of
//!   the `rbuild build` contract (`--metadata-file`, `--iidfile`, `--diagnostics-file`):
//!   how inputs become arguments (no shell: a tag with `$(touch /tmp/pwned)` runs
//!   nothing), the outputs, the step summary and the check run on the fake GitHub.
//! - The setup step's download: checksum pinned in `checksums.txt`, tampering refused.
//! - With the real `rbuild` on the fixture Dockerfile against the real registry: a
//!   two-platform build and push, the action's outputs against the registry's digest, and
//!   the step summary.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_e2e::action::{ActionRun, action_dir, run_action};
use rbuild_e2e::github::FakeGithub;
use rbuild_e2e::user::TestUser;
use rbuild_e2e::{Env, bins, registry_with_busybox, require};
use serde_json::Value;

const STAND_IN: &str = r#"#!/bin/bash
set -eu
if [ "${1:-}" = --version ]; then echo "rbuild 0.0.0 (stand-in)"; exit 0; fi
printf '%s\0' "$@" > "$RECORD/argv"
while [ $# -gt 0 ]; do
  case "$1" in
    --metadata-file) meta=$2; shift ;;
    --iidfile) iid=$2; shift ;;
    --diagnostics-file) diag=$2; shift ;;
    --secret) case "$2" in *src=*) cp "${2#*src=}" "$RECORD/secret" ;; esac; shift ;;
  esac
  shift
done
printf 'sha256:%s' 1111111111111111111111111111111111111111111111111111111111111111 > "$iid"
cat > "$meta" <<'JSON'
{
  "containerimage.digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
  "containerimage.config.digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
  "image.name": "r.example/app:1",
  "rbuild.platforms": {
    "linux/amd64": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
    "linux/arm64": "sha256:4444444444444444444444444444444444444444444444444444444444444444"
  },
  "rbuild.cache": {"hits": 3, "misses": 1}
}
JSON
cat > "$diag" <<'JSON'
[{"id":"xattr-security-selinux-in-layer","severity":"warning","title":"SELinux labels in a base layer","message":"dropped `security.selinux` on 12 files","file":"app/Dockerfile","line":1,"end_line":1},
 {"id":"run-failed","severity":"error","title":"a RUN step failed","message":"`RUN make` exited 2","file":"app/Dockerfile","line":4,"end_line":5}]
JSON
env > "$RECORD/env"
exit "${STAND_IN_EXIT:-0}"
"#;

struct Bench {
    user: &'static TestUser,
    work: tempfile::TempDir,
    action: PathBuf,
    bin: PathBuf,
    record: PathBuf,
}

/// A work directory owned by the test user with a copy of the action, a `bin/` holding
/// the stand-in `rbuild` beside the real `rbuild-runner`, and a record directory.
fn bench() -> Result<Bench, rbuild_e2e::Missing> {
    let user = TestUser::get()?;
    let runner = bins::binary("rbuild-runner")?;
    let work = user.tempdir().unwrap();
    let action = work.path().join("action");
    assert!(
        Command::new("cp")
            .arg("-r")
            .arg(action_dir())
            .arg(&action)
            .status()
            .unwrap()
            .success()
    );
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("rbuild"), STAND_IN).unwrap();
    fs::set_permissions(bin.join("rbuild"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::copy(&runner, bin.join("rbuild-runner")).unwrap();
    let record = work.path().join("record");
    fs::create_dir(&record).unwrap();
    fs::create_dir_all(work.path().join("app")).unwrap();
    let b = Bench {
        user,
        work,
        action,
        bin,
        record,
    };
    b.give_to_user();
    Ok(b)
}

impl Bench {
    /// Hands the whole work directory (again) to the test user.
    fn give_to_user(&self) {
        assert!(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", self.user.uid, self.user.gid))
                .arg(self.work.path())
                .status()
                .is_ok()
        );
    }

    /// The action with the stand-in's environment (`bin/` first on PATH, the record
    /// directory, the repository and commit) plus `extra`.
    fn run(&self, with: &[(&str, &str)], token: &str, extra: &[(&str, String)]) -> ActionRun {
        let mut env: Vec<(&str, String)> = vec![
            (
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin.display()),
            ),
            ("RECORD", self.record.display().to_string()),
            ("GITHUB_REPOSITORY", "octo-org/app".to_owned()),
            (
                "GITHUB_SHA",
                "ce587453ced02b1526dfb4cb910479d431683101".to_owned(),
            ),
        ];
        env.extend(extra.iter().cloned());
        self.run_with_env(with, token, &env)
    }

    /// The action as the test user in the work directory, with exactly `env`.
    fn run_with_env(
        &self,
        with: &[(&str, &str)],
        token: &str,
        env: &[(&str, String)],
    ) -> ActionRun {
        let user = self.user;
        run_action(
            &self.action,
            with,
            token,
            self.work.path(),
            &|| user.command("bash"),
            env,
        )
    }

    fn argv(&self) -> Vec<String> {
        let raw = fs::read(self.record.join("argv")).unwrap();
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }
}

#[test]
fn inputs_reach_rbuild_as_arguments_and_outputs_summary_and_checks_come_back() {
    let b = require!(bench());
    let gh = require!(FakeGithub::start());
    gh.add_token("ghs_actiontoken", true);
    let _ = fs::remove_file("/tmp/pwned");
    let run = b.run(
        &[
            ("context", "app"),
            ("platforms", "linux/amd64,linux/arm64"),
            ("tags", "r.example/app:1\nr.example/app:$(touch /tmp/pwned)\nr.example/app:`touch /tmp/pwned`"),
            ("build-args", "GREETING=hello, world\nQUOTE=\"it's\" $HOME"),
            ("labels", "org.opencontainers.image.title=app"),
            ("secrets", "token=s3cret-value"),
            ("push", "true"),
            ("cache-from", "type=gha"),
            ("annotate", "both"),
        ],
        "ghs_actiontoken",
        &[("GITHUB_API_URL", gh.url())],
    );
    assert!(run.success, "{}", run.log);
    assert!(
        !Path::new("/tmp/pwned").exists(),
        "an input was executed by a shell"
    );

    let argv = b.argv();
    let secret_arg = argv
        .iter()
        .find(|a| a.starts_with("id=token,src="))
        .cloned()
        .unwrap();
    let record = b.record.display().to_string();
    let _ = record;
    let expected: Vec<String> = [
        "build",
        "--progress",
        "plain",
        "--message-format",
        "github",
        "--platform",
        "linux/amd64,linux/arm64",
        "--tag",
        "r.example/app:1",
        "--tag",
        "r.example/app:$(touch /tmp/pwned)",
        "--tag",
        "r.example/app:`touch /tmp/pwned`",
        "--label",
        "org.opencontainers.image.title=app",
        "--build-arg",
        "GREETING=hello, world",
        "--build-arg",
        "QUOTE=\"it's\" $HOME",
        "--push",
        "--secret",
        &secret_arg,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(argv[..expected.len()], expected[..], "{argv:?}");
    assert_eq!(&argv[argv.len() - 2..], ["--", "app"]);
    for f in ["--diagnostics-file", "--metadata-file", "--iidfile"] {
        assert!(argv.contains(&f.to_owned()), "{f} missing: {argv:?}");
    }
    assert_eq!(
        fs::read_to_string(b.record.join("secret")).unwrap(),
        "s3cret-value"
    );
    assert!(run.log.contains("::add-mask::s3cret-value"), "{}", run.log);
    assert!(
        run.log
            .contains("::warning title=rbuild::input `cache-from` is ignored"),
        "{}",
        run.log
    );
    let env = fs::read_to_string(b.record.join("env")).unwrap();
    assert!(
        !env.contains("GITHUB_STEP_SUMMARY="),
        "rbuild would write a second table"
    );

    // Outputs, as a later step reads them.
    assert_eq!(run.outputs["imageid"], format!("sha256:{}", "1".repeat(64)));
    assert_eq!(run.outputs["digest"], format!("sha256:{}", "2".repeat(64)));
    let metadata: Value = serde_json::from_str(&run.outputs["metadata"]).unwrap();
    assert_eq!(metadata["image.name"], "r.example/app:1");

    // The summary: image, digests per platform, cache hits, the diagnostics table.
    let s = &run.summary;
    for needle in [
        "| image | `r.example/app:1` |",
        &format!("| digest | `sha256:{}` |", "2".repeat(64)),
        &format!("| linux/arm64 | `sha256:{}` |", "4".repeat(64)),
        "| cache | 3 of 4 steps cached |",
        "### rbuild: 1 error, 1 warning",
        "| error | `run-failed` | `app/Dockerfile:4-5` |",
    ] {
        assert!(s.contains(needle), "no `{needle}` in the summary:\n{s}");
    }

    // The check run on the commit, with both annotations.
    let runs = gh.runs();
    assert_eq!(runs.len(), 1, "{}", run.log);
    assert_eq!(runs[0].annotations.len(), 2);
    assert_eq!(runs[0].annotations[0]["path"], "app/Dockerfile");
    assert_eq!(runs[0].annotations[0]["annotation_level"], "failure");
    assert!(gh.violations().is_empty(), "{:?}", gh.violations());
}

#[test]
fn a_failed_build_fails_the_step_and_a_bad_input_is_named() {
    let b = require!(bench());
    let run = b.run(
        &[("context", "app")],
        "t",
        &[("STAND_IN_EXIT", "1".to_owned())],
    );
    assert!(!run.success);
    // The summary is written all the same: a failed build's diagnostics matter most.
    assert!(
        run.summary.contains("### rbuild: 1 error, 1 warning"),
        "{}",
        run.summary
    );
    b.run(&[("push", "yes")], "t", &[])
        .assert_failed_with("error: input `push` is `yes`, not a boolean");
    b.run(&[("annotate", "everything")], "t", &[])
        .assert_failed_with("hint: use `workflow-commands`, `checks`, `both` or `none`");
}

#[test]
fn the_setup_step_installs_only_a_release_whose_checksum_is_pinned() {
    let b = require!(bench());
    let release = b.work.path().join("release");
    let version = "9.9.9";
    let arch = match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    };
    let asset = format!("rbuild-{version}-{arch}-linux.tar.gz");
    fs::create_dir_all(release.join(format!("v{version}"))).unwrap();
    let tarball = release.join(format!("v{version}")).join(&asset);
    assert!(
        Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&b.bin)
            .args(["rbuild", "rbuild-runner"])
            .status()
            .unwrap()
            .success()
    );
    let sum = String::from_utf8(
        Command::new("sha256sum")
            .arg(&tarball)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let sum = sum.split_whitespace().next().unwrap().to_owned();
    let url = format!("file://{}", release.display());
    let tool_cache = b.work.path().join("toolcache");
    let env = |tc: &Path| {
        vec![
            ("RBUILD_DOWNLOAD_URL", url.clone()),
            ("RUNNER_TOOL_CACHE", tc.display().to_string()),
            // Not on PATH: the action must use what it installed.
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ]
    };
    let setup = |env: &[(&str, String)]| {
        b.give_to_user();
        b.run_with_env(&[("version", version), ("context", "app")], "t", env)
    };
    // Not pinned: refused before any download.
    setup(&env(&tool_cache)).assert_failed_with(&format!("no checksum for {asset} is pinned"));
    // A wrong pin: downloaded, then refused.
    fs::write(
        b.action.join("checksums.txt"),
        format!("{}  {asset}\n", "0".repeat(64)),
    )
    .unwrap();
    setup(&env(&tool_cache)).assert_failed_with("refusing to run it");
    assert!(!tool_cache.join(version).exists());
    // The right pin: installed into the tool cache and used.
    fs::write(b.action.join("checksums.txt"), format!("{sum}  {asset}\n")).unwrap();
    let mut env2 = env(&tool_cache);
    env2.push(("RECORD", b.record.display().to_string()));
    let run = setup(&env2);
    assert!(run.success, "{}", run.log);
    let dir = tool_cache.join(format!("rbuild/{version}/{arch}"));
    assert_eq!(
        run.step_outputs["setup"]["bin-dir"],
        dir.display().to_string()
    );
    assert!(run.log.contains("rbuild 0.0.0 (stand-in)"));
    assert_eq!(run.path, [dir.display().to_string()]);
}

#[test]
fn the_action_builds_the_fixture_with_the_real_rbuild() {
    let env = require!(Env::get());
    let (registry, busybox) = require!(registry_with_busybox());
    let b = require!(bench());
    // The real binaries, side by side.
    fs::copy(&env.rbuild, b.bin.join("rbuild")).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/action");
    let ctx = b.work.path().join("app");
    fs::copy(fixture.join("Dockerfile"), ctx.join("Dockerfile")).unwrap();
    b.give_to_user();
    let tag = format!("{}/action-test:1", registry.host());
    let build_arg = format!("BASE={busybox}");
    let run = b.run(
        &[
            ("context", "app"),
            ("platforms", "linux/amd64,linux/arm64"),
            ("tags", &tag),
            ("build-args", &build_arg),
            ("push", "true"),
        ],
        "t",
        &[("HOME", b.work.path().display().to_string())],
    );
    assert!(run.success, "{}", run.log);
    let digest = &run.outputs["digest"];
    assert!(digest.starts_with("sha256:"), "{run:?}");
    assert!(run.outputs["imageid"].starts_with("sha256:"));
    // The registry has the pushed index under that digest.
    let resp = rbuild_e2e::http::agent()
        .head(&format!("{}/v2/action-test/manifests/1", registry.url()))
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .call()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("docker-content-digest")
            .unwrap()
            .to_str()
            .unwrap(),
        digest
    );
    assert!(
        run.summary.contains(&format!("| digest | `{digest}` |")),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("| linux/arm64 | `sha256:"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("### rbuild: no problems"),
        "{}",
        run.summary
    );
}

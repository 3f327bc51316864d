//! Fleet mode for GitHub: `rbuild-runner run` with a `[[github]]` instance, as the
//! unprivileged test user, against the fake GitHub (`rbuild_e2e::github`), with the real
//! `rbuild run` sandbox. The runner image is the busybox base plus a stand-in for the
//! official runner's `run.sh` that records its arguments, environment and user namespace
//! in a mounted directory and exits.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

#[path = "sandbox_support/mod.rs"]
mod sandbox_support;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbuild_e2e::github::{FakeGithub, sign_webhook, workflow_job};
use rbuild_e2e::runner::Daemon;
use rbuild_e2e::{bins, require};
use sandbox_support::{Sandboxed, Tar};

const SECRET: &str = "webhook-secret-for-the-test";
const WAIT: Duration = Duration::from_mins(2);

/// The stand-in for `run.sh`.
const STAND_IN: &str = r#"#!/bin/sh
d=$(mktemp -d /records/run.XXXXXX)
printf '%s\n' "$0" "$@" > "$d/args"
env > "$d/env"
cat /proc/self/uid_map > "$d/uid_map"
id -u > "$d/uid"
touch "$d/done"
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post(port: u16, event: &str, delivery: &str, body: &[u8], signature: &str) -> (u16, String) {
    let agent = rbuild_e2e::http::agent();
    let mut resp = agent
        .post(&format!("http://127.0.0.1:{port}/webhook"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// A `workflow_job` delivery signed with the fleet's secret.
fn deliver_job(port: u16, delivery: &str, body: &[u8]) -> (u16, String) {
    post(
        port,
        "workflow_job",
        delivery,
        body,
        &sign_webhook(SECRET, body),
    )
}

fn wait_until(what: &str, daemon: &Daemon, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < WAIT,
            "timed out waiting for {what}\n--- daemon log\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn records(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// How many runner starts the stand-in recorded to the end.
fn finished_runs(dir: &Path) -> usize {
    records(dir)
        .iter()
        .filter(|r| r.join("done").exists())
        .count()
}

/// A running fleet daemon and its directories.
struct Fleet {
    daemon: Daemon,
    dir: PathBuf,
    hook_port: u16,
    metrics_port: u16,
    records: PathBuf,
}

/// The runner images (`runner`: the stand-in exits; `runner-stays`: it records, then
/// keeps running like a runner waiting for or running a job), the fleet's configuration
/// with `extra` TOML in its `[[github]]` table, and the daemon started as the test user.
fn start_fleet(
    sb: &mut Sandboxed,
    gh: &FakeGithub,
    image: &str,
    extra: &str,
) -> Result<Fleet, rbuild_e2e::Missing> {
    let user = sb.env.user;
    let binary = bins::binary("rbuild-runner")?;
    for (tag, script) in [
        ("runner", STAND_IN.to_owned()),
        ("runner-stays", format!("{STAND_IN}exec sleep 600\n")),
    ] {
        sb.add_image(
            tag,
            &[Tar::default()
                .dir("home/")
                .dir("home/runner/")
                .file("home/runner/run.sh", script.as_bytes(), 0o755)
                .dir("records/")
                .finish()],
        );
    }
    let dir = sb.dir.path().to_owned();
    let records_dir = dir.join("records");
    fs::create_dir(&records_dir).unwrap();
    user.give(&records_dir).unwrap();
    let key = dir.join("app.pem");
    fs::copy(gh.app_key(), &key).unwrap();
    let secret = dir.join("webhook.secret");
    fs::write(&secret, format!("{SECRET}\n")).unwrap();
    for f in [&key, &secret] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o600)).unwrap();
        user.give(f).unwrap();
    }
    let cache_dir = dir.join("runner-cache");
    // What the "nothing left" check looks at: the sandboxes' cache directory.
    sb.cache = cache_dir.join("github");
    let (hook_port, metrics_port) = (free_port(), free_port());
    let config = dir.join("runner.toml");
    fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
cache_dir = "{cache}"
listen = "127.0.0.1:{metrics_port}"
shutdown_timeout = "60s"

[executor]
kind = "rbuild"
rbuild = "{rbuild}"
kill_grace = "2s"

[[github]]
name = "main"
api_url = "{api}"
app_id = "{app_id}"
private_key_file = "{key}"
webhook_listen = "127.0.0.1:{hook_port}"
webhook_secret_file = "{secret}"
labels = ["self-hosted", "linux", "x64", "rbuild"]
runner_image = "{image}"
env = ["RBUILD_E2E_MARK"]
volumes = ["{records}:/records"]
concurrency = 2
{extra}
"#,
            state = dir.join("state").display(),
            cache = cache_dir.display(),
            rbuild = sb.env.rbuild.display(),
            api = gh.url(),
            app_id = gh.app_id(),
            key = key.display(),
            secret = secret.display(),
            image = sb.image(image),
            records = records_dir.display(),
        ),
    )
    .unwrap();
    user.give(&config).unwrap();
    let daemon = Daemon::spawn(
        user.command(&binary)
            .args(["run", "--config"])
            .arg(&config)
            .env("RBUILD_E2E_MARK", &sb.mark)
            .env("RBUILD_RUNNER_LOG", "info")
            .current_dir(&dir),
        dir.join("daemon.log"),
    );
    wait_until("the webhook listener", &daemon, || {
        std::net::TcpStream::connect(("127.0.0.1", hook_port)).is_ok()
    });
    Ok(Fleet {
        daemon,
        dir,
        hook_port,
        metrics_port,
        records: records_dir,
    })
}

impl Fleet {
    /// SIGTERM, a clean exit, and the daemon's log.
    fn stop(&mut self) -> String {
        self.daemon.signal("TERM");
        let status = self.daemon.wait(WAIT);
        let text = self.daemon.log_text();
        assert!(status.success(), "{status}\n{text}");
        assert!(
            fs::read_dir(self.dir.join("state/github/main"))
                .unwrap()
                .next()
                .is_none(),
            "runner directories were left"
        );
        text
    }
}

#[test]
fn signed_queued_jobs_with_our_labels_each_start_one_sandboxed_runner() {
    let mut sb = require!(Sandboxed::new());
    let gh = require!(FakeGithub::start());
    let mut fleet = require!(start_fleet(&mut sb, &gh, "runner", "idle_timeout = \"2m\""));
    let (hook_port, metrics_port, records_dir) =
        (fleet.hook_port, fleet.metrics_port, fleet.records.clone());
    let daemon = &fleet.daemon;

    let matching = workflow_job("queued", 1001, &["self-hosted", "rbuild"], None);
    let (s, _) = post(
        hook_port,
        "ping",
        "d-ping",
        b"{}",
        &sign_webhook(SECRET, b"{}"),
    );
    assert_eq!(s, 200);
    let (s, text) = deliver_job(hook_port, "d-1", &matching);
    assert_eq!(s, 202, "{text}");
    let other = workflow_job("queued", 1002, &["ubuntu-latest"], None);
    let (s, _) = deliver_job(hook_port, "d-2", &other);
    assert_eq!(s, 202);
    let lacking = workflow_job("queued", 1003, &["rbuild", "gpu"], None);
    let (s, _) = deliver_job(hook_port, "d-3", &lacking);
    assert_eq!(s, 202);
    // A forged delivery: right shape, matching labels, wrong signature. Its body carries a
    // marker that must not reach the log.
    let mut forged = workflow_job("queued", 1004, &["rbuild"], None);
    forged.extend_from_slice(b" FORGED-BODY-MARKER");
    let (s, _) = post(
        hook_port,
        "workflow_job",
        "d-4",
        &forged,
        &sign_webhook("wrong", &forged),
    );
    assert_eq!(s, 401);
    let (s, _) = post(hook_port, "workflow_job", "d-5", &forged, "");
    assert_eq!(s, 401);
    // A redelivery of d-1.
    let (s, text) = deliver_job(hook_port, "d-1", &matching);
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("duplicate"));
    let second = workflow_job("queued", 1005, &["rbuild", "linux", "x64"], None);
    let (s, _) = deliver_job(hook_port, "d-6", &second);
    assert_eq!(s, 202);
    // A body over the cap is refused before anything else (413, or the connection is
    // closed while the client still sends).
    let huge = vec![b' '; 2 * 1024 * 1024];
    let refused = rbuild_e2e::http::agent()
        .post(&format!("http://127.0.0.1:{hook_port}/webhook"))
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", "d-7")
        .header("X-Hub-Signature-256", sign_webhook(SECRET, &huge))
        .send(&huge[..]);
    match refused {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(e) => assert!(
            e.to_string().contains("pipe") || e.to_string().contains("reset"),
            "{e}"
        ),
    }

    // Two runners: each exits at once, and was removed from GitHub since it took no job.
    wait_until("two recorded runner starts", daemon, || {
        finished_runs(&records_dir) == 2
    });
    wait_until("both runners removed", daemon, || {
        gh.deleted_runners().len() == 2
    });
    std::thread::sleep(Duration::from_millis(500));

    let jit = gh.jit_requests();
    assert_eq!(jit.len(), 2, "one JIT request per matching job: {jit:#?}");
    for j in &jit {
        assert_eq!(j.scope, "repos/Codertocat/Hello-World");
        assert_eq!(j.runner_group_id, 1);
        assert_eq!(j.labels, ["self-hosted", "linux", "x64", "rbuild"]);
        assert_eq!(j.work_folder.as_deref(), Some("_work"));
        assert_eq!(j.installation, 3_456_996, "the event's installation");
        assert!(j.name.starts_with("rbuild-") && j.name.len() <= 64);
    }
    let mut deleted = gh.deleted_runners();
    deleted.sort_unstable();
    let mut ids: Vec<u64> = jit.iter().map(|j| j.runner_id).collect();
    ids.sort_unstable();
    assert_eq!(deleted, ids);

    let runs = records(&records_dir);
    assert_eq!(runs.len(), 2, "exactly one launch per matching job");
    let mut configs = Vec::new();
    for r in &runs {
        let args = fs::read_to_string(r.join("args")).unwrap();
        assert_eq!(
            args, "/home/runner/run.sh\n",
            "no JIT blob on a command line"
        );
        let env = fs::read_to_string(r.join("env")).unwrap();
        let jit_line = env
            .lines()
            .find_map(|l| l.strip_prefix("ACTIONS_RUNNER_INPUT_JITCONFIG="))
            .unwrap_or_else(|| panic!("no JIT configuration in the runner's environment:\n{env}"));
        configs.push(jit_line.to_owned());
        assert!(
            !env.contains("RBUILD_RUNNER_"),
            "the daemon's settings leaked: {env}"
        );
        assert!(env.contains(&format!("RBUILD_E2E_MARK={}", sb.mark)));
        // A user namespace: not the initial identity map.
        let map = fs::read_to_string(r.join("uid_map")).unwrap();
        assert!(
            !map.split_whitespace().eq(["0", "0", "4294967295"]),
            "the runner ran in the host's user namespace: {map}"
        );
        assert_eq!(fs::read_to_string(r.join("uid")).unwrap().trim(), "0");
    }
    configs.sort();
    let mut issued: Vec<String> = jit.iter().map(|j| j.encoded_jit_config.clone()).collect();
    issued.sort();
    assert_eq!(configs, issued, "each runner got its own JIT configuration");

    let metrics = rbuild_e2e::http::agent()
        .get(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for (outcome, n) in [
        ("queued", 2),
        ("not_ours", 2),
        ("bad_signature", 2),
        ("duplicate", 1),
        ("ping", 1),
    ] {
        let line = format!(
            "rbuild_runner_webhook_deliveries_total{{instance=\"main\",outcome=\"{outcome}\"}} {n}"
        );
        assert!(metrics.contains(&line), "no `{line}` in\n{metrics}");
    }
    assert!(metrics.contains(
        "rbuild_runner_jobs_finished_total{instance=\"main\",state=\"exited\",failure_reason=\"\"} 2"
    ), "{metrics}");

    // Drain and stop; nothing of the sandboxes is left.
    let text = fleet.stop();
    assert_eq!(gh.violations(), Vec::<String>::new(), "{text}");
    assert_eq!(
        text.matches("webhook delivery rejected").count(),
        2,
        "{text}"
    );
    assert!(
        !text.contains("FORGED-BODY-MARKER"),
        "the body of a bad delivery was logged"
    );
    for c in &configs {
        assert!(
            !text.contains(c.as_str()),
            "a JIT configuration reached the log"
        );
    }
    sb.assert_nothing_left();
}

#[test]
fn a_runner_is_stopped_after_its_job_completes_and_an_idle_one_is_removed() {
    let mut sb = require!(Sandboxed::new());
    let gh = require!(FakeGithub::start());
    let mut fleet = require!(start_fleet(
        &mut sb,
        &gh,
        "runner-stays",
        "idle_timeout = \"4s\"\ncompleted_grace = \"1s\""
    ));
    let port = fleet.hook_port;
    let queued = workflow_job("queued", 2001, &["rbuild"], None);
    assert_eq!(deliver_job(port, "q-1", &queued).0, 202);
    wait_until("the first runner", &fleet.daemon, || {
        gh.jit_requests().len() == 1
    });
    let first = gh.jit_requests()[0].clone();
    // GitHub gives the job to our runner, then finishes it.
    let started = workflow_job("in_progress", 2001, &["rbuild"], Some(&first.name));
    assert_eq!(deliver_job(port, "p-1", &started).0, 202);
    // A second queued job whose runner never gets one.
    let idle = workflow_job("queued", 2002, &["rbuild"], None);
    assert_eq!(deliver_job(port, "q-2", &idle).0, 202);
    wait_until("both runners recorded", &fleet.daemon, || {
        finished_runs(&fleet.records) == 2
    });
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        fleet.daemon.log_text().contains("reason=\"idle\""),
        "{}",
        fleet.daemon.log_text()
    );
    let second = gh.jit_requests()[1].clone();
    wait_until("the idle runner removed", &fleet.daemon, || {
        gh.deleted_runners() == [second.runner_id]
    });
    // The busy runner outlived the idle timeout; it goes once its job completes.
    assert!(!fleet.daemon.log_text().contains("end=\"completed\""));
    let done = workflow_job("completed", 2001, &["rbuild"], Some(&first.name));
    assert_eq!(deliver_job(port, "c-1", &done).0, 202);
    wait_until("the busy runner stopped", &fleet.daemon, || {
        fleet.daemon.log_text().contains("end=\"completed\"")
    });
    assert_eq!(
        gh.deleted_runners(),
        [second.runner_id],
        "a runner that ran a job removes itself"
    );
    let text = fleet.stop();
    assert_eq!(gh.violations(), Vec::<String>::new(), "{text}");
    sb.assert_nothing_left();
}

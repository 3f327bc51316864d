//! End-to-end tests of `rbuild-runner` against the fake GitLab (`rbuild_e2e::gitlab`),
//! which enforces the Runner API: every test ends by asserting it saw no protocol
//! violation. The daemon runs as the unprivileged test user and runs every job in a real
//! `rbuild run` sandbox, in busybox pulled from a real registry on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbuild_e2e::gitlab::{FakeGitlab, JobSpec, JobState};
use rbuild_e2e::require;
use rbuild_e2e::runner::{RunnerSetup, push_commits};
use serde_json::json;

const WAIT: Duration = Duration::from_mins(1);

fn assert_clean(gl: &FakeGitlab) {
    let v = gl.violations();
    assert!(
        v.is_empty(),
        "the fake GitLab saw protocol violations:\n{}",
        v.join("\n")
    );
}

/// Files left in the state directory's `jobs/` (a reported job leaves none).
fn state_records(setup: &RunnerSetup) -> Vec<String> {
    std::fs::read_dir(setup.state_dir.join("jobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A job command that proves the job's script is alive: it rewrites a file under the
/// job's builds directory every 0.2 s. Works in the sandbox and with the test executor.
fn heartbeat(name: &str) -> String {
    format!("while true; do date > \"$CI_BUILDS_DIR/{name}\"; sleep 0.2; done")
}

/// The heartbeat file `name` of any slot of instance `main`, once it exists.
fn heartbeat_file(setup: &RunnerSetup, name: &str) -> PathBuf {
    let t = Instant::now();
    loop {
        let found = std::fs::read_dir(setup.builds_dir.join("main"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|slot| slot.path().join(name))
            .find(|p| p.exists());
        if let Some(p) = found {
            return p;
        }
        assert!(t.elapsed() < WAIT, "no heartbeat `{name}` appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the heartbeat file changes within a second.
fn beating(path: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let before = modified(path);
    std::thread::sleep(Duration::from_millis(1200));
    modified(path) != before
}

/// Waits until the heartbeat stops (the script was killed), or fails after `within`.
fn wait_stopped(path: &Path, within: Duration, what: &str) {
    let t = Instant::now();
    while beating(path) {
        assert!(t.elapsed() < within, "{what}: the job's script still runs");
    }
}

#[test]
fn script_failure_reports_the_exit_code_and_the_full_masked_trace() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let secret = "hunter2-very-secret-value";
    let id = gl.enqueue(
        &JobSpec::new("fails")
            .masked("DEPLOY_PASSWORD", secret)
            .file_variable("KUBECONFIG", "kube-config-content\n")
            .variable("GREETING", "hello from $CI_JOB_NAME")
            .raw_variable("LITERAL", "$CI_JOB_NAME")
            .service("postgres:15")
            .cache("deps", &["vendor/"])
            .script(&[
                "echo \"greeting: $GREETING / $LITERAL\"",
                "echo \"password: $DEPLOY_PASSWORD\"",
                // The secret split across two writes with a pause between them.
                "printf 'split: %s' \"$(printf %s \"$DEPLOY_PASSWORD\" | cut -c1-13)\"; sleep 0.5; printf '%s\\n' \"$(printf %s \"$DEPLOY_PASSWORD\" | cut -c14-)\"",
                "echo \"token: glpat-AbCdEf0123456789xyz and job token $CI_JOB_TOKEN\"",
                "echo \"file: $(cat \"$KUBECONFIG\") at $KUBECONFIG\"",
                "echo \"dir: $CI_PROJECT_DIR builds: $CI_BUILDS_DIR server: $CI_SERVER\"",
                "env | grep '^RBUILD_RUNNER_' || echo no-runner-variables",
                "exit 3",
                "echo never",
            ])
            .after_script(&["echo \"after_script: $CI_JOB_STATUS\""], 30),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());

    assert_eq!(job.state, JobState::Failed, "{}", job.trace_text());
    assert_eq!(job.failure_reason.as_deref(), Some("script_failure"));
    assert_eq!(job.exit_code, Some(3));
    assert_eq!((job.handed_out, job.final_updates), (1, 1));
    let trace = job.trace_text();
    let token = gl.job_token(id);
    for leaked in [
        secret,
        "hunter2-very-",
        "glpat-AbCdEf0123456789xyz",
        token.as_str(),
    ] {
        assert!(
            !trace.contains(leaked),
            "`{leaked}` leaked into the trace:\n{trace}"
        );
    }
    for expected in [
        "greeting: hello from fails / $CI_JOB_NAME",
        "password: [MASKED]",
        "split: [MASKED]\n",
        "token: glpat-[MASKED] and job token [MASKED]",
        "file: kube-config-content at ",
        "/KUBECONFIG",
        "server: yes",
        "\nno-runner-variables\n",
        "\x1b[32;1m$ exit 3\x1b[0;m",
        "after_script: failed",
        "ERROR: Job failed: exit code 3",
        "`services:` are not supported by rbuild-runner; this job runs without `postgres:15`",
        "`cache:` is not supported by rbuild-runner",
    ] {
        assert!(
            trace.contains(expected),
            "no `{expected}` in the trace:\n{trace}"
        );
    }
    assert!(!trace.contains("never"), "{trace}");
    assert!(
        trace.contains("Using rbuild run with image ")
            && !trace.contains("the `unsandboxed-test-shell` executor"),
        "{trace}"
    );
    for section in [
        "prepare_executor",
        "get_sources",
        "step_script",
        "after_script",
        "cleanup_file_variables",
    ] {
        assert!(
            trace.contains(&format!(":{section}\r\x1b[0K"))
                || trace.contains(&format!(":{section}[collapsed=true]\r\x1b[0K")),
            "no section `{section}`:\n{trace}"
        );
        let starts = trace.matches("section_start:").count();
        let ends = trace.matches("section_end:").count();
        assert_eq!(starts, ends, "unbalanced sections:\n{trace}");
    }
    assert!(
        state_records(&setup).is_empty(),
        "{:?}",
        state_records(&setup)
    );
    let tmp = setup.builds_dir.join("main/0/group/project.tmp");
    assert!(
        !tmp.exists(),
        "file variables were left in `{}`",
        tmp.display()
    );
    assert_clean(&gl);
}

#[test]
fn a_job_gets_its_sources_at_the_sha_and_uploads_artifacts_and_code_quality() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let (bare, url) = gl.add_repo("group/project");
    let shas = push_commits(
        &bare,
        &[
            &[("Dockerfile", "FROM busybox\n"), ("v", "0\n")],
            &[("v", "1\n"), ("app/Dockerfile", "FROM busybox\nRUN make\n")],
            &[("v", "2\n")],
        ],
    );
    let refspecs = vec![
        format!("+{}:refs/pipelines/120", shas[1]),
        "+refs/heads/main:refs/remotes/origin/main".to_owned(),
    ];
    let diag = r#"[{"id":"run-step-failed","severity":"error","title":"RUN failed","message":"`make` exited 2","hint":"fix the Makefile","file":"'"$CI_PROJECT_DIR"'/app/Dockerfile","line":2,"platform":"linux/amd64"}]"#;
    let id = gl.enqueue(
        &JobSpec::new("build")
            .git(&url, &shas[1], &refspecs, 1)
            .script(&[
                "test -f app/Dockerfile",
                "echo \"version $(cat v), shallow $(test -f .git/shallow && echo true)\"",
                "mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.log && echo c > out/sub/c.txt",
                &format!("echo '{diag}' > \"$RBUILD_DIAGNOSTICS_DIR/build-1.json\""),
                "echo '[{\"description\":\"own\",\"check_name\":\"lint\",\"fingerprint\":\"x1\",\"severity\":\"minor\",\"location\":{\"path\":\"v\",\"lines\":{\"begin\":1}}}]' > gl-code-quality-report.json",
            ])
            .artifact(json!({"name": "", "untracked": false, "paths": ["out/"], "exclude": ["out/**/*.log"], "when": "on_success", "artifact_type": "archive", "artifact_format": "zip", "expire_in": "1 week"}))
            .artifact(json!({"name": "gl-code-quality-report.json", "untracked": false, "paths": ["gl-code-quality-report.json"], "when": "always", "artifact_type": "codequality", "artifact_format": "gzip", "expire_in": "1 week"})),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Success, "{trace}");
    assert!(trace.contains("version 1, shallow true"), "{trace}");
    assert!(
        trace.contains("Fetching changes with git depth set to 1..."),
        "{trace}"
    );
    assert!(!trace.contains(&gl.job_token(id)), "{trace}");
    assert_eq!(gl.git_auth_failures(), 0, "git was refused");

    let archive = job.upload("archive").expect("an archive upload");
    assert_eq!(
        (
            archive.artifact_format.as_str(),
            archive.filename.as_str(),
            archive.expire_in.as_deref()
        ),
        ("zip", "artifacts.zip", Some("1 week"))
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive.content())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["out/", "out/a.txt", "out/sub/", "out/sub/c.txt"]);
    let mut a = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("out/a.txt").unwrap(), &mut a).unwrap();
    assert_eq!(a, "a\n");

    let cq = job.upload("codequality").expect("a codequality upload");
    assert_eq!(cq.artifact_format, "gzip");
    let report: Vec<serde_json::Value> = serde_json::from_slice(&cq.content()).unwrap();
    assert_eq!(report.len(), 2, "{report:#?}");
    assert_eq!(report[0]["check_name"], "lint");
    let ours = &report[1];
    assert_eq!(ours["check_name"], "rbuild/run-step-failed");
    assert_eq!(ours["location"]["path"], "app/Dockerfile");
    assert_eq!(ours["location"]["lines"]["begin"], 2);
    assert_eq!(ours["severity"], "major");
    assert_clean(&gl);
}

#[test]
fn a_job_gets_the_artifacts_of_the_jobs_it_depends_on() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let build = gl.enqueue(
        &JobSpec::new("build")
            .script(&["mkdir -p dist && echo built-binary > dist/app && chmod 755 dist/app"])
            .artifact(json!({"name": "", "untracked": false, "paths": ["dist/"], "when": "on_success", "artifact_type": "archive", "artifact_format": "zip", "expire_in": "1 day"})),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    assert_eq!(gl.wait_finished(build, WAIT).state, JobState::Success);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    // Another project directory, so the file can only come from the download.
    let test = gl.enqueue(
        &JobSpec::new("test")
            .project("group/tests")
            .dependency(build)
            .script(&["test -x dist/app", "echo \"got $(cat dist/app)\""]),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(test, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Success, "{trace}");
    assert!(trace.contains("Downloading artifacts for job-"), "{trace}");
    assert!(trace.contains("got built-binary"), "{trace}");
    assert!(!trace.contains(&gl.job_token(build)), "{trace}");
    assert_clean(&gl);
}

#[test]
fn graceful_cancel_runs_after_script_and_hard_cancel_stops_at_once() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 2, ""));
    let graceful = gl.enqueue(
        &JobSpec::new("graceful")
            .script(&["echo started", "while true; do echo tick; sleep 0.2; done"])
            .after_script(&["echo \"after_script saw $CI_JOB_STATUS\""], 30),
    );
    let hard = gl.enqueue(
        &JobSpec::new("hard")
            .script(&["echo started", &heartbeat("hard.beat")])
            .after_script(&["echo after_script must not run"], 30),
    );
    let mut daemon = setup.start(&["--max-jobs", "2"]);
    gl.wait_trace(graceful, "tick", WAIT);
    gl.wait_trace(hard, "started", WAIT);

    let t = Instant::now();
    gl.cancel(graceful);
    let job = gl.wait_finished(graceful, WAIT);
    eprintln!("graceful cancel took {:?}", t.elapsed());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Canceled, "{trace}");
    assert!(trace.contains("after_script saw canceled"), "{trace}");
    assert!(trace.contains("Job failed: canceled"), "{trace}");
    assert_eq!(job.final_updates, 1);

    let beat = heartbeat_file(&setup, "hard.beat");
    assert!(beating(&beat));
    let t = Instant::now();
    gl.cancel_hard(hard);
    wait_stopped(&beat, Duration::from_secs(20), "hard cancel");
    eprintln!("hard cancel stopped the script in {:?}", t.elapsed());
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let job = gl.job(hard);
    assert_eq!(job.state, JobState::Canceled);
    assert_eq!(
        job.final_updates, 0,
        "nothing is reported for a job GitLab canceled"
    );
    assert!(!job.trace_text().contains("after_script must not run"));
    assert!(
        state_records(&setup).is_empty(),
        "{:?}",
        state_records(&setup)
    );
    assert_clean(&gl);
}

#[test]
fn timeout_is_reported_as_job_execution_timeout_after_after_script() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let id = gl.enqueue(
        &JobSpec::new("slow")
            .timeout(2)
            .script(&["echo started", "sleep 600"])
            .after_script(&["echo \"after_script: $CI_JOB_STATUS\""], 30),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Failed, "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("job_execution_timeout"));
    assert_eq!(job.exit_code, None);
    assert!(
        trace.contains("Job failed: execution took longer than 2s"),
        "{trace}"
    );
    assert!(trace.contains("after_script: failed"), "{trace}");
    assert_clean(&gl);
}

#[test]
fn trace_416_and_checksum_412_are_recovered_and_the_final_trace_is_whole() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let id =
        gl.enqueue(&JobSpec::new("chatty").script(&[
            "i=0; while [ $i -lt 40 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.1; done",
        ]));
    // Two-phase commit: the first final update is only accepted (202); and GitLab's copy
    // of the trace is damaged once before it, so the checksum fails (412) first.
    gl.accept_later(id, 1);
    gl.corrupt_trace_before_final(id);
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    gl.wait_trace(id, "line 5", WAIT);
    gl.lose_trace_bytes(id, 7);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Success, "{trace}");
    assert!(
        job.range_mismatches >= 1,
        "no 416 happened ({} patches)",
        job.patches
    );
    assert_eq!(
        job.checksum_mismatches, 1,
        "exactly the one damaged copy fails the checksum; the resent trace passes"
    );
    let lines: Vec<&str> = trace.lines().filter(|l| l.starts_with("line ")).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "{trace}");
    assert_clean(&gl);
}

#[test]
fn sigterm_drains_running_jobs_and_takes_no_new_ones() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let go = setup.builds_dir.join("main/0/go");
    let running = gl.enqueue(&JobSpec::new("running").script(&[
        "echo started",
        "while [ ! -e \"$CI_BUILDS_DIR/go\" ]; do sleep 0.1; done",
        "echo finished",
    ]));
    let mut daemon = setup.start(&[]);
    gl.wait_trace(running, "started", WAIT);
    daemon.signal("TERM");
    let t = Instant::now();
    while !daemon.log_text().contains("reason=SIGTERM") {
        assert!(
            t.elapsed() < WAIT,
            "the daemon did not start draining:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Draining: a job queued now must not be taken, and the running one finishes.
    let queued = gl.enqueue(&JobSpec::new("queued"));
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&go, "").unwrap();
    let status = daemon.wait(WAIT);
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    let job = gl.job(running);
    assert_eq!(job.state, JobState::Success, "{}", job.trace_text());
    assert!(job.trace_text().contains("finished"));
    let q = gl.job(queued);
    assert_eq!(
        (q.state, q.handed_out),
        (JobState::Pending, 0),
        "a job was taken while draining:\n{}",
        daemon.log_text()
    );
    assert_clean(&gl);
}

#[test]
fn a_drain_deadline_aborts_running_jobs_as_system_failures() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, "shutdown_timeout = \"2s\""));
    let id = gl.enqueue(
        &JobSpec::new("endless")
            .script(&["echo started", &heartbeat("endless.beat")])
            .after_script(&["echo after_script must not run"], 30),
    );
    let mut daemon = setup.start(&[]);
    gl.wait_trace(id, "started", WAIT);
    daemon.signal("TERM");
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let job = gl.job(id);
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Failed, "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("runner_system_failure"));
    assert!(trace.contains("the runner was stopped"), "{trace}");
    assert!(!trace.contains("after_script must not run"), "{trace}");
    wait_stopped(
        &heartbeat_file(&setup, "endless.beat"),
        Duration::from_secs(5),
        "drain deadline",
    );
    assert!(
        daemon.log_text().contains("drain deadline passed"),
        "{}",
        daemon.log_text()
    );
    assert_clean(&gl);
}

#[test]
fn kill_9_and_restart_report_the_running_job_failed_and_stop_its_leftovers() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let id = gl.enqueue(
        &JobSpec::new("orphaned")
            .masked("SECRET_TOKEN", "s3cr3t-s3cr3t-s3cr3t")
            .file_variable("CREDS", "credentials-in-a-file")
            .script(&[
                "echo \"started with $SECRET_TOKEN\"",
                &heartbeat("orphan.beat"),
            ]),
    );
    let mut daemon = setup.start(&[]);
    gl.wait_trace(id, "started with [MASKED]", WAIT);
    let beat = heartbeat_file(&setup, "orphan.beat");
    daemon.signal("KILL");
    daemon.wait(WAIT);
    assert!(
        beating(&beat),
        "the script should outlive a kill -9 of the daemon (nothing killed it yet)"
    );
    assert_eq!(gl.job(id).state, JobState::Running);
    assert_eq!(
        state_records(&setup).len(),
        2,
        "{:?}",
        state_records(&setup)
    );

    let mut again = setup.start(&[]);
    let job = gl.wait_finished(id, WAIT);
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Failed, "{trace}");
    assert_eq!(job.failure_reason.as_deref(), Some("runner_system_failure"));
    assert!(trace.contains("started with [MASKED]"), "{trace}");
    assert!(
        trace.contains("the runner stopped while this job was running"),
        "{trace}"
    );
    assert!(!trace.contains("s3cr3t-s3cr3t-s3cr3t"), "{trace}");
    wait_stopped(&beat, Duration::from_secs(10), "recovery");
    assert!(
        state_records(&setup).is_empty(),
        "{:?}",
        state_records(&setup)
    );
    assert!(
        !setup.builds_dir.join("main/0/group/project.tmp").exists(),
        "file variables survived recovery"
    );
    again.signal("TERM");
    assert!(again.wait(WAIT).success(), "{}", again.log_text());
    assert_clean(&gl);
}

#[test]
fn twenty_queued_jobs_with_concurrency_two_all_complete_once() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 2, ""));
    gl.conflict_next(2);
    let ids: Vec<i64> = (0..20)
        .map(|i| {
            gl.enqueue(&JobSpec::new(&format!("job-{i}")).script(&[
                "sleep 0.2",
                "echo \"job $CI_JOB_ID in slot $CI_CONCURRENT_ID\"",
            ]))
        })
        .collect();
    let t = Instant::now();
    let mut daemon = setup.start(&["--max-jobs", "20"]);
    assert!(
        daemon.wait(Duration::from_mins(3)).success(),
        "{}",
        daemon.log_text()
    );
    eprintln!("20 jobs took {:?}", t.elapsed());
    for id in &ids {
        let job = gl.job(*id);
        assert_eq!(
            job.state,
            JobState::Success,
            "job {id}: {}",
            job.trace_text()
        );
        assert_eq!((job.handed_out, job.final_updates), (1, 1), "job {id}");
        assert!(
            job.trace_text().contains(&format!("job {id} in slot ")),
            "{}",
            job.trace_text()
        );
    }
    assert_eq!(
        gl.max_running(),
        2,
        "concurrency 2 means two at once, never more"
    );
    assert_clean(&gl);
}

#[test]
fn a_job_log_over_the_limit_is_cut_with_a_marker_and_the_job_goes_on() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace(
            "concurrency = 1\n",
            "concurrency = 1\noutput_limit = \"64KiB\"\n",
        ),
    )
    .unwrap();
    // 256 KiB of output, then a line that must not be kept, then success.
    let id = gl.enqueue(&JobSpec::new("loud").script(&[
        "i=0; while [ $i -lt 4096 ]; do echo \"line $i: 0123456789012345678901234567890123456789012345678901\"; i=$((i+1)); done",
        "echo after-the-limit",
        "touch still-running",
    ]));
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(
        job.state,
        JobState::Success,
        "the job goes on past the limit"
    );
    assert!(
        trace.contains("WARNING: the job log reached its limit of 64 KiB"),
        "{}",
        &trace[trace.len().saturating_sub(2000)..]
    );
    assert!(
        !trace.contains("after-the-limit"),
        "output past the limit was kept"
    );
    assert!(
        trace.ends_with("Job succeeded\x1b[0;m\n"),
        "{}",
        &trace[trace.len().saturating_sub(500)..]
    );
    assert!(
        job.trace.len() < 64 * 1024 + 8 * 1024,
        "{} bytes kept",
        job.trace.len()
    );
    assert!(
        setup
            .builds_dir
            .join("main/0/group/project/still-running")
            .exists()
    );
    assert_clean(&gl);
}

#[test]
fn the_global_limit_holds_across_instances() {
    let a = FakeGitlab::start();
    let b = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&a, 2, "concurrent = 1"));
    let token_b = setup.dir.path().join("b.token");
    std::fs::write(&token_b, format!("{}\n", b.runner_token())).unwrap();
    std::fs::set_permissions(
        &token_b,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    setup.user.give(&token_b).unwrap();
    let config = std::fs::read_to_string(&setup.config).unwrap();
    let second = format!(
        "\n[[gitlab]]\nname = \"second\"\nurl = \"{}\"\ntoken_file = \"{}\"\nconcurrency = 2\ncheck_interval = \"200ms\"\ndefault_image = \"{}\"\n",
        b.url(),
        token_b.display(),
        setup.image
    );
    std::fs::write(&setup.config, config + &second).unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push((
            &a,
            a.enqueue(&JobSpec::new(&format!("a{i}")).script(&["sleep 0.3"])),
        ));
        ids.push((
            &b,
            b.enqueue(&JobSpec::new(&format!("b{i}")).script(&["sleep 0.3"])),
        ));
    }
    let mut daemon = setup.start(&["--max-jobs", "8"]);
    assert!(
        daemon.wait(Duration::from_mins(2)).success(),
        "{}",
        daemon.log_text()
    );
    // Each job is live on its GitLab from hand-out to its accepted final update; the runner
    // frees its slot only after that, so under `concurrent = 1` no two intervals overlap,
    // across both GitLabs.
    let mut spans: Vec<(Instant, Instant, String)> = ids
        .iter()
        .map(|(gl, id)| {
            let job = gl.job(*id);
            assert_eq!(job.state, JobState::Success, "{}", job.trace_text());
            (
                job.picked_at.unwrap(),
                job.finished_at.unwrap(),
                format!("{}#{id}", gl.url()),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "{} started before {} finished",
            w[1].2,
            w[0].2
        );
    }
    assert_clean(&a);
    assert_clean(&b);
}

#[test]
fn check_config_names_the_key_and_the_fix() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let out = setup
        .command(&["check-config", "--config", &setup.config.to_string_lossy()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(
        !stdout.contains(&gl.runner_token()),
        "the token was printed"
    );

    let bad = setup.dir.path().join("bad.toml");
    std::fs::write(&bad, "concurent = 2\n[[gitlab]]\nname = \"main\"\nurl = \"gitlab.example.com\"\ntoken = \"glrt-inline-secret\"\nconcurrency = 0\n").unwrap();
    setup.user.give(&bad).unwrap();
    let out = setup
        .command(&["check-config", "--config", &bad.to_string_lossy()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "error: the configuration",
        "`concurent`: unknown key",
        "hint: did you mean `concurrent`?",
        "`gitlab[0].url`: `gitlab.example.com` is not an http(s) URL",
        "`gitlab[0].token`: unknown key",
        "token_file",
        "`gitlab[0].concurrency`",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
    assert!(!stderr.contains("glrt-inline-secret"), "{stderr}");
}

#[test]
fn healthz_metrics_and_json_logs_with_a_span_per_job() {
    let gl = FakeGitlab::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let setup = require!(RunnerSetup::new(
        &gl,
        1,
        &format!("listen = \"127.0.0.1:{port}\"")
    ));
    let id = gl.enqueue(&JobSpec::new("observed").script(&["echo observed"]));
    let mut daemon = setup.start(&["--log-format", "json"]);
    gl.wait_finished(id, WAIT);
    let agent = rbuild_e2e::http::agent();
    let base = format!("http://127.0.0.1:{port}");
    let mut health = agent.get(&format!("{base}/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);
    let h: serde_json::Value =
        serde_json::from_str(&health.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["instances"][0]["state"], "polling", "{h}");
    // The metrics of the finished job appear once the job task has recorded them.
    let t = Instant::now();
    let metrics = loop {
        let mut m = agent.get(&format!("{base}/metrics")).call().unwrap();
        let text = m.body_mut().read_to_string().unwrap();
        if text.contains("rbuild_runner_jobs_finished_total{instance=\"main\",state=\"success\",failure_reason=\"\"} 1") {
            break text;
        }
        assert!(t.elapsed() < WAIT, "{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for expected in [
        "rbuild_runner_jobs_running{instance=\"main\"} 0",
        "rbuild_runner_job_request_duration_seconds_count{instance=\"main\",outcome=\"job\"} 1",
        "rbuild_runner_job_duration_seconds_count{instance=\"main\",state=\"success\"} 1",
        "rbuild_runner_concurrent_limit 1",
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in:\n{metrics}");
    }
    daemon.signal("TERM");
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let log = daemon.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished = events
        .iter()
        .find(|e| e["fields"]["message"] == "job finished")
        .unwrap_or_else(|| panic!("no `job finished` event:\n{log}"));
    assert_eq!(finished["span"]["name"], "job", "{finished}");
    assert_eq!(finished["span"]["job_id"], id, "{finished}");
    assert_eq!(finished["span"]["forge"], "gitlab", "{finished}");
    assert_eq!(finished["fields"]["state"], "success", "{finished}");
    assert!(
        !log.contains(&gl.runner_token()),
        "the runner token is in the daemon's log"
    );
    assert!(
        !log.contains(&gl.job_token(id)),
        "a job token is in the daemon's log"
    );
    assert_clean(&gl);
}

#[test]
fn a_rejected_runner_token_stops_the_daemon_with_a_clear_error() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let token = setup.dir.path().join("gitlab.token");
    std::fs::write(&token, "glrt-not-the-right-token\n").unwrap();
    let mut daemon = setup.start(&[]);
    let status = daemon.wait(WAIT);
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(4), "{log}");
    assert!(
        log.contains("error: every GitLab instance rejected its runner token"),
        "{log}"
    );
    assert!(
        log.contains("GitLab rejected the runner authentication token (403)"),
        "{log}"
    );
    assert!(!log.contains("glrt-not-the-right-token"), "{log}");
    assert!(Path::new(&setup.state_dir).is_dir());
}

/// The manifest `reference` of `repo` in `registry` (`HOST:PORT`): its digest, or `None`
/// when the registry does not have it.
fn registry_manifest(registry: &str, repo: &str, reference: &str) -> Option<String> {
    let agent = rbuild_e2e::http::agent();
    let resp = agent
        .get(&format!("http://{registry}/v2/{repo}/manifests/{reference}"))
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
        )
        .call()
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[test]
fn a_job_builds_and_pushes_an_image_with_nested_rbuild() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    require!(rbuild_e2e::runner::static_rbuild());
    let (bare, url) = gl.add_repo("group/app");
    let dockerfile = format!(
        "FROM {}\nRUN echo built-in-ci > /built && id -u > /uid\nCMD [\"cat\", \"/built\"]\n",
        setup.image
    );
    let shas = push_commits(&bare, &[&[("Dockerfile", &dockerfile)]]);
    let target = format!("{}/group/app:ci", setup.registry.host());
    let id = gl.enqueue(
        &JobSpec::new("image")
            .git(
                &url,
                &shas[0],
                &["+refs/heads/main:refs/remotes/origin/main".to_owned()],
                1,
            )
            .variable("TARGET", &target)
            .script(&[
                "command -v rbuild",
                "cat /proc/self/uid_map",
                "rbuild build --progress plain --metadata-file meta.json -t \"$TARGET\" --push . > digest",
                "echo \"pushed $(cat digest)\"",
                "rbuild run --pull \"$TARGET\" -- cat /built /uid",
            ]),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, Duration::from_mins(3));
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Success, "{trace}");
    assert!(trace.contains("/usr/local/bin/rbuild"), "{trace}");
    assert!(trace.contains("built-in-ci\n0\n"), "{trace}");
    let digest = trace
        .lines()
        .find_map(|l| l.strip_prefix("pushed "))
        .unwrap_or_else(|| panic!("no digest in the trace:\n{trace}"))
        .trim()
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let host = setup.registry.host();
    assert_eq!(
        registry_manifest(&host, "group/app", "ci").as_deref(),
        Some(digest.as_str()),
        "the registry does not hold the pushed image"
    );
    assert_clean(&gl);
}

#[test]
fn a_known_cause_in_a_nested_build_becomes_a_code_quality_finding_on_its_line() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    require!(rbuild_e2e::runner::static_rbuild());
    let (bare, url) = gl.add_repo("group/daemon");
    // Line 3 starts a listener in the background and leaves it running.
    let dockerfile = format!(
        "FROM {}\nRUN echo setup\nRUN (nc -l -p 8080 -e cat >/dev/null 2>&1 &) ; sleep 1\n",
        setup.image
    );
    let shas = push_commits(&bare, &[&[("Dockerfile", &dockerfile)]]);
    let id = gl.enqueue(
        &JobSpec::new("leaky")
            .git(
                &url,
                &shas[0],
                &["+refs/heads/main:refs/remotes/origin/main".to_owned()],
                1,
            )
            .script(&["rbuild build --progress plain ."])
            .artifact(json!({"name": "gl-code-quality-report.json", "untracked": false, "paths": [], "when": "always", "artifact_type": "codequality", "artifact_format": "gzip", "expire_in": "1 week"})),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, Duration::from_mins(3));
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Success, "{trace}");
    let cq = job
        .upload("codequality")
        .unwrap_or_else(|| panic!("no Code Quality upload:\n{trace}"));
    let report: Vec<serde_json::Value> = serde_json::from_slice(&cq.content()).unwrap();
    let leak = report
        .iter()
        .find(|f| f["check_name"] == "rbuild/no-process-sandbox-leaked-process")
        .unwrap_or_else(|| panic!("no leaked-process finding in {report:#?}\n{trace}"));
    assert_eq!(leak["location"]["path"], "Dockerfile", "{leak}");
    assert_eq!(leak["location"]["lines"]["begin"], 3, "{leak}");
    assert_eq!(leak["severity"], "minor", "{leak}");
    assert_clean(&gl);
}

/// Checks that `job` failed with `image_pull_failure` before its script ran (the scripts
/// of these tests echo `script-ran`); returns its trace.
fn assert_image_pull_failure(job: &rbuild_e2e::gitlab::Job) -> String {
    let trace = job.trace_text();
    assert_eq!(job.state, JobState::Failed, "{trace}");
    assert_eq!(
        job.failure_reason.as_deref(),
        Some("image_pull_failure"),
        "{trace}"
    );
    assert_eq!(job.exit_code, None, "{trace}");
    assert!(!trace.contains("script-ran"), "{trace}");
    assert!(trace.contains("Job failed (image pull failure)"), "{trace}");
    trace
}

#[test]
fn a_registry_outage_during_the_image_pull_is_an_image_pull_failure() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    // The registry goes away before the job's image is pulled.
    let status = std::process::Command::new("kill")
        .args(["-KILL", &setup.registry.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // A GitLab that knows `image_pull_failure` (the documented example payload predates it).
    let mut reasons = rbuild_e2e::gitlab::FAILURE_REASONS.to_vec();
    reasons.push("image_pull_failure");
    let id = gl.enqueue(
        &JobSpec::new("unpullable")
            .failure_reasons(&reasons)
            .script(&["echo script-ran"]),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    let trace = assert_image_pull_failure(&job);
    assert!(
        trace.contains(&format!("cannot pull `{}`", setup.image)),
        "{trace}"
    );
    assert_clean(&gl);
}

#[test]
fn an_image_without_the_jobs_platform_is_an_image_pull_failure() {
    let gl = FakeGitlab::start();
    let setup = require!(RunnerSetup::new(&gl, 1, ""));
    let mut reasons = rbuild_e2e::gitlab::FAILURE_REASONS.to_vec();
    reasons.push("image_pull_failure");
    // The test registry's busybox is published for linux/amd64 and linux/arm64 only.
    let id = gl.enqueue(
        &JobSpec::new("no-riscv")
            .image(&setup.image, Some("linux/riscv64"))
            .failure_reasons(&reasons)
            .script(&["echo script-ran"])
            .artifact(json!({"name": "gl-code-quality-report.json", "untracked": false, "paths": [], "when": "always", "artifact_type": "codequality", "artifact_format": "gzip", "expire_in": "1 week"})),
    );
    let mut daemon = setup.start(&["--max-jobs", "1"]);
    let job = gl.wait_finished(id, WAIT);
    assert!(daemon.wait(WAIT).success(), "{}", daemon.log_text());
    // rbuild exits 1 (an input error to it); its diagnostics file names the cause, which
    // GitLab knows as an image pull failure.
    let trace = assert_image_pull_failure(&job);
    assert!(trace.contains("base-image-missing-platform"), "{trace}");
    // And the merge request shows it: `rbuild run`'s diagnostics join the Code Quality
    // report (a finding without a Dockerfile place is put on `.gitlab-ci.yml`).
    let cq = job
        .upload("codequality")
        .unwrap_or_else(|| panic!("no Code Quality upload:\n{trace}"));
    let report: Vec<serde_json::Value> = serde_json::from_slice(&cq.content()).unwrap();
    let missing = report
        .iter()
        .find(|f| f["check_name"] == "rbuild/base-image-missing-platform")
        .unwrap_or_else(|| panic!("no missing-platform finding in {report:#?}\n{trace}"));
    assert_eq!(missing["location"]["path"], ".gitlab-ci.yml", "{missing}");
    assert_clean(&gl);
}

//! A fake GitLab on 127.0.0.1 that speaks the Runner API as `reference/ci-integration.md`
//! section 1 documents it, and **enforces** it: every request is checked (tokens, headers,
//! contiguous trace ranges, checksums, `failure_reason` values, the `last_update` echo,
//! Code Quality report shape) and every deviation is recorded as a violation, answered the
//! way GitLab answers it (400, 403, 412, 416). Tests assert [`FakeGitlab::violations`] is
//! empty, so a runner that merely "calls the endpoints" does not pass.
//!
//! Jobs are built from the documented `201` payload ([`JobSpec`]); their state machine is
//! GitLab's (`pending` -> `running` -> `canceling` -> `success`/`failed`/`canceled`). It
//! also serves git repositories over smart HTTP (`git http-backend`) with job-token basic
//! auth, as GitLab does for `git_info.repo_url`.
//!
//! Loopback only. The server runs on its own tokio runtime; the API here is blocking.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path as UrlPath, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post, put};
use base64::Engine as _;
use serde_json::{Value, json};

/// The documented `features.failure_reasons` of the example payload.
pub const FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "user_blocked",
    "project_deleted",
    "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found",
    "invalid_bridge_trigger",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
];

/// The 31 feature flags of gitlab-runner's `common.FeaturesInfo`.
pub const FEATURES: &[&str] = &[
    "variables",
    "image",
    "services",
    "artifacts",
    "cache",
    "fallback_cache_keys",
    "shared",
    "upload_multiple_artifacts",
    "upload_raw_artifacts",
    "session",
    "terminal",
    "refspecs",
    "masking",
    "proxy",
    "raw_variables",
    "artifacts_exclude",
    "multi_build_steps",
    "trace_reset",
    "trace_checksum",
    "trace_size",
    "vault_secrets",
    "cancelable",
    "return_exit_code",
    "service_variables",
    "service_multiple_aliases",
    "image_executor_opts",
    "service_executor_opts",
    "cancel_gracefully",
    "native_steps_integration",
    "two_phase_job_commit",
    "job_inputs",
];

/// GitLab's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    Canceling,
    Success,
    Failed,
    Canceled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Canceling => "canceling",
            JobState::Success => "success",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    fn live(self) -> bool {
        matches!(self, JobState::Running | JobState::Canceling)
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            JobState::Success | JobState::Failed | JobState::Canceled
        )
    }
}

/// An artifact as uploaded.
#[derive(Debug, Clone)]
pub struct Upload {
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: Option<String>,
    pub filename: String,
    pub data: Vec<u8>,
}

impl Upload {
    /// The content, gunzipped when the format is gzip.
    pub fn content(&self) -> Vec<u8> {
        if self.artifact_format == "gzip" {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&self.data[..])
                .read_to_end(&mut out)
                .expect("gzip artifacts were checked on upload");
            out
        } else {
            self.data.clone()
        }
    }
}

/// What the fake knows about one job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub token: String,
    pub state: JobState,
    /// The trace as GitLab holds it.
    pub trace: Vec<u8>,
    pub failure_reason: Option<String>,
    pub exit_code: Option<i64>,
    /// `jobs/request` answers that handed this job out (must be 1).
    pub handed_out: u32,
    /// Final updates accepted (must be at most 1).
    pub final_updates: u32,
    /// Keep-alive updates (`state: running`).
    pub touches: u32,
    pub patches: u32,
    /// Patches answered 416.
    pub range_mismatches: u32,
    /// Final updates answered 412.
    pub checksum_mismatches: u32,
    pub uploads: Vec<Upload>,
    pub queued_at: Instant,
    pub picked_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    failure_reasons: Vec<String>,
}

impl Job {
    pub fn trace_text(&self) -> String {
        String::from_utf8_lossy(&self.trace).into_owned()
    }

    pub fn upload(&self, artifact_type: &str) -> Option<&Upload> {
        self.uploads
            .iter()
            .find(|u| u.artifact_type == artifact_type)
    }
}

/// A job to queue, in the documented payload shape.
#[derive(Debug, Clone)]
pub struct JobSpec {
    name: String,
    project: String,
    script: Vec<String>,
    after_script: Vec<String>,
    after_script_timeout: u64,
    timeout: u64,
    variables: Vec<Value>,
    artifacts: Vec<Value>,
    image: Value,
    services: Vec<Value>,
    cache: Vec<Value>,
    git: Option<(String, String, Vec<String>, u32)>,
    failure_reasons: Vec<String>,
    token_mask_prefixes: Vec<String>,
    dependencies: Vec<i64>,
}

impl JobSpec {
    pub fn new(name: &str) -> JobSpec {
        JobSpec {
            name: name.to_owned(),
            project: "group/project".to_owned(),
            script: vec!["echo hello".to_owned()],
            after_script: Vec::new(),
            after_script_timeout: 300,
            timeout: 3600,
            variables: Vec::new(),
            artifacts: Vec::new(),
            image: Value::Null,
            services: Vec::new(),
            cache: Vec::new(),
            git: None,
            failure_reasons: FAILURE_REASONS.iter().map(|s| (*s).to_owned()).collect(),
            token_mask_prefixes: vec!["glpat-".to_owned(), "glrt-".to_owned(), "gldt-".to_owned()],
            dependencies: Vec::new(),
        }
    }

    /// Depends on an earlier job of this fake (`dependencies:`/`needs:`): the payload
    /// names its token and its archive, as GitLab does.
    #[must_use]
    pub fn dependency(mut self, job_id: i64) -> Self {
        self.dependencies.push(job_id);
        self
    }

    #[must_use]
    pub fn project(mut self, path: &str) -> Self {
        path.clone_into(&mut self.project);
        self
    }

    /// `before_script` + `script` (GitLab sends them concatenated as the `script` step).
    #[must_use]
    pub fn script<S: AsRef<str>>(mut self, lines: &[S]) -> Self {
        self.script = lines.iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    #[must_use]
    pub fn after_script<S: AsRef<str>>(mut self, lines: &[S], timeout: u64) -> Self {
        self.after_script = lines.iter().map(|s| s.as_ref().to_owned()).collect();
        self.after_script_timeout = timeout;
        self
    }

    /// The job timeout in seconds (`runner_info.timeout`).
    #[must_use]
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = secs;
        self
    }

    #[must_use]
    pub fn variable(mut self, key: &str, value: &str) -> Self {
        self.variables
            .push(json!({"key": key, "value": value, "public": true, "masked": false}));
        self
    }

    #[must_use]
    pub fn masked(mut self, key: &str, value: &str) -> Self {
        self.variables
            .push(json!({"key": key, "value": value, "public": false, "masked": true}));
        self
    }

    #[must_use]
    pub fn file_variable(mut self, key: &str, value: &str) -> Self {
        self.variables.push(
            json!({"key": key, "value": value, "public": false, "masked": false, "file": true}),
        );
        self
    }

    #[must_use]
    pub fn raw_variable(mut self, key: &str, value: &str) -> Self {
        self.variables.push(
            json!({"key": key, "value": value, "public": true, "masked": false, "raw": true}),
        );
        self
    }

    /// An `artifacts` entry exactly as Rails' presenter builds it.
    #[must_use]
    pub fn artifact(mut self, entry: Value) -> Self {
        self.artifacts.push(entry);
        self
    }

    #[must_use]
    pub fn image(mut self, name: &str, platform: Option<&str>) -> Self {
        self.image = match platform {
            Some(p) => json!({"name": name, "executor_opts": {"docker": {"platform": p}}}),
            None => json!({"name": name}),
        };
        self
    }

    #[must_use]
    pub fn service(mut self, name: &str) -> Self {
        self.services.push(json!({"name": name}));
        self
    }

    #[must_use]
    pub fn cache(mut self, key: &str, paths: &[&str]) -> Self {
        self.cache.push(json!({"key": key, "untracked": false, "policy": "pull-push", "paths": paths, "when": "on_success"}));
        self
    }

    /// Sources: the repository URL (the fake's git URL), sha, refspecs, depth.
    #[must_use]
    pub fn git(mut self, url: &str, sha: &str, refspecs: &[String], depth: u32) -> Self {
        self.git = Some((url.to_owned(), sha.to_owned(), refspecs.to_vec(), depth));
        self
    }

    #[must_use]
    pub fn failure_reasons(mut self, reasons: &[&str]) -> Self {
        self.failure_reasons = reasons.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    fn payload(&self, id: i64, token: &str, base: &str, dependencies: &[Value]) -> Value {
        let (repo_url, sha, refspecs, depth) = match &self.git {
            Some((url, sha, refspecs, depth)) => {
                let with_token =
                    url.replacen("http://", &format!("http://gitlab-ci-token:{token}@"), 1);
                (with_token, sha.clone(), refspecs.clone(), *depth)
            }
            None => (String::new(), String::new(), Vec::new(), 0),
        };
        let mut variables = vec![
            json!({"key": "CI", "value": "true", "public": true, "masked": false}),
            json!({"key": "GITLAB_CI", "value": "true", "public": true, "masked": false}),
            json!({"key": "CI_SERVER_URL", "value": base, "public": true, "masked": false}),
            json!({"key": "CI_PIPELINE_ID", "value": "120", "public": true, "masked": false}),
            json!({"key": "CI_JOB_ID", "value": id.to_string(), "public": true, "masked": false}),
            json!({"key": "CI_JOB_NAME", "value": self.name, "public": true, "masked": false}),
            json!({"key": "CI_JOB_STAGE", "value": "build", "public": true, "masked": false}),
            json!({"key": "CI_JOB_TOKEN", "value": token, "public": false, "masked": true}),
            json!({"key": "CI_JOB_TIMEOUT", "value": self.timeout.to_string(), "public": true, "masked": false}),
            json!({"key": "CI_PROJECT_PATH", "value": self.project, "public": true, "masked": false}),
            json!({"key": "CI_PROJECT_NAME", "value": self.project.rsplit('/').next().unwrap_or(""), "public": true, "masked": false}),
            json!({"key": "CI_COMMIT_SHA", "value": sha, "public": true, "masked": false}),
            json!({"key": "CI_COMMIT_REF_NAME", "value": "main", "public": true, "masked": false}),
            json!({"key": "CI_REGISTRY_USER", "value": "gitlab-ci-token", "public": true, "masked": false}),
            json!({"key": "CI_REGISTRY_PASSWORD", "value": token, "public": false, "masked": true}),
            json!({"key": "CI_REPOSITORY_URL", "value": repo_url, "public": false, "masked": false}),
        ];
        if self.git.is_none() {
            variables.push(
                json!({"key": "GIT_STRATEGY", "value": "none", "public": true, "masked": false}),
            );
        }
        variables.extend(self.variables.iter().cloned());
        let mut steps = vec![
            json!({"name": "script", "script": self.script, "timeout": self.timeout, "when": "on_success", "allow_failure": false}),
        ];
        if !self.after_script.is_empty() {
            steps.push(json!({"name": "after_script", "script": self.after_script, "timeout": self.after_script_timeout, "when": "always", "allow_failure": false}));
        }
        json!({
            "id": id,
            "token": token,
            "allow_git_fetch": true,
            "job_info": {
                "id": id, "name": self.name, "stage": "build", "project_id": 4,
                "project_name": self.project.rsplit('/').next().unwrap_or(""),
                "project_full_path": self.project, "pipeline_id": 120,
                "time_in_queue_seconds": 0
            },
            "git_info": {
                "repo_url": repo_url, "repo_object_format": "sha1", "ref": "main", "sha": sha,
                "before_sha": "0000000000000000000000000000000000000000", "ref_type": "branch",
                "refspecs": refspecs, "depth": depth
            },
            "runner_info": {"timeout": self.timeout, "runner_session_url": null},
            "variables": variables,
            "steps": steps,
            "image": self.image,
            "services": self.services,
            "artifacts": self.artifacts,
            "cache": self.cache,
            "credentials": [{"type": "registry", "url": "registry.example.com", "username": "gitlab-ci-token", "password": token}],
            "dependencies": dependencies,
            "features": {
                "trace_sections": true,
                "token_mask_prefixes": self.token_mask_prefixes,
                "failure_reasons": self.failure_reasons,
            }
        })
    }
}

#[derive(Debug)]
struct Inner {
    runner_token: String,
    /// `system_id` -> the `X-GitLab-Last-Update` it must echo next (after verify).
    expected_last_update: BTreeMap<String, Option<String>>,
    verified: Vec<String>,
    queue: VecDeque<i64>,
    queue_version: u64,
    jobs: BTreeMap<i64, Job>,
    payloads: BTreeMap<i64, Value>,
    next_id: i64,
    violations: Vec<String>,
    long_poll: Duration,
    update_interval: u64,
    conflicts: u32,
    lose_trace: BTreeMap<i64, usize>,
    accept_later: BTreeMap<i64, u32>,
    corrupt_before_final: Vec<i64>,
    running: usize,
    max_running: usize,
    requests: u64,
    git_root: PathBuf,
    git_auth_failures: u32,
}

type Shared = Arc<(Mutex<Inner>, tokio::sync::Notify)>;

/// The fake server (stops when dropped).
#[derive(Debug)]
pub struct FakeGitlab {
    addr: SocketAddr,
    shared: Shared,
    rt: Option<tokio::runtime::Runtime>,
    _git_root: tempfile::TempDir,
}

impl Drop for FakeGitlab {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl FakeGitlab {
    /// Starts a fake on a free port of 127.0.0.1.
    pub fn start() -> FakeGitlab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the fake GitLab");
        let git_root = tempfile::tempdir().expect("a directory for the fake's git repositories");
        let token = format!("glrt-{}", random_hex(20));
        let shared: Shared = Arc::new((
            Mutex::new(Inner {
                runner_token: token,
                expected_last_update: BTreeMap::new(),
                verified: Vec::new(),
                queue: VecDeque::new(),
                queue_version: 1,
                jobs: BTreeMap::new(),
                payloads: BTreeMap::new(),
                next_id: 1000,
                violations: Vec::new(),
                long_poll: Duration::from_millis(500),
                update_interval: 1,
                conflicts: 0,
                lose_trace: BTreeMap::new(),
                accept_later: BTreeMap::new(),
                corrupt_before_final: Vec::new(),
                running: 0,
                max_running: 0,
                requests: 0,
                git_root: git_root.path().to_owned(),
                git_auth_failures: 0,
            }),
            tokio::sync::Notify::new(),
        ));
        let app = Router::new()
            .route("/api/v4/runners/verify", post(verify))
            .route("/api/v4/jobs/request", post(request))
            .route("/api/v4/jobs/{id}/trace", patch(trace))
            .route("/api/v4/jobs/{id}", put(update))
            .route("/api/v4/jobs/{id}/artifacts", post(artifacts).get(download))
            .fallback(git)
            .with_state(shared.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitlab {
            addr,
            shared,
            rt: Some(rt),
            _git_root: git_root,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `glrt-` runner authentication token this GitLab accepts.
    pub fn runner_token(&self) -> String {
        self.lock().runner_token.clone()
    }

    /// How long `jobs/request` is held when nothing changed (Workhorse long polling).
    pub fn set_long_poll(&self, d: Duration) {
        self.lock().long_poll = d;
    }

    /// `X-GitLab-Trace-Update-Interval` in seconds.
    pub fn set_update_interval(&self, secs: u64) {
        self.lock().update_interval = secs;
    }

    /// Queues a job; returns its id.
    pub fn enqueue(&self, spec: &JobSpec) -> i64 {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        let token = format!("glcbt-{}", random_hex(20));
        let dependencies: Vec<Value> = spec
            .dependencies
            .iter()
            .map(|d| {
                let dep = g.jobs.get(d).expect("a dependency this fake queued before");
                let file = dep.upload("archive").map(|u| json!({"filename": u.filename, "size": u.data.len()}));
                json!({"id": d, "token": dep.token, "name": format!("job-{d}"), "artifacts_file": file})
            })
            .collect();
        let payload = spec.payload(id, &token, &self.url(), &dependencies);
        g.jobs.insert(
            id,
            Job {
                id,
                token,
                state: JobState::Pending,
                trace: Vec::new(),
                failure_reason: None,
                exit_code: None,
                handed_out: 0,
                final_updates: 0,
                touches: 0,
                patches: 0,
                range_mismatches: 0,
                checksum_mismatches: 0,
                uploads: Vec::new(),
                queued_at: Instant::now(),
                picked_at: None,
                finished_at: None,
                failure_reasons: spec.failure_reasons.clone(),
            },
        );
        g.payloads.insert(id, payload);
        g.queue.push_back(id);
        g.queue_version += 1;
        drop(g);
        self.shared.1.notify_waiters();
        id
    }

    /// A snapshot of a job.
    pub fn job(&self, id: i64) -> Job {
        self.lock()
            .jobs
            .get(&id)
            .cloned()
            .expect("a job this fake queued")
    }

    /// The job's token (what `git` and the trace use).
    pub fn job_token(&self, id: i64) -> String {
        self.job(id).token
    }

    /// Waits until `cond` holds for the job, or panics with the job's state after `timeout`.
    pub fn wait_for(
        &self,
        id: i64,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Job) -> bool,
    ) -> Job {
        let end = Instant::now() + timeout;
        loop {
            let job = self.job(id);
            if cond(&job) {
                return job;
            }
            assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for job {id} to be {what}; it is {:?}\n--- trace\n{}\n--- violations\n{:?}",
                job.state,
                job.trace_text(),
                self.violations()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the job is finished (success, failed or canceled).
    pub fn wait_finished(&self, id: i64, timeout: Duration) -> Job {
        self.wait_for(id, timeout, "finished", |j| j.state.finished())
    }

    /// Waits until the job's trace (as GitLab holds it) contains `needle`.
    pub fn wait_trace(&self, id: i64, needle: &str, timeout: Duration) -> Job {
        self.wait_for(
            id,
            timeout,
            &format!("showing `{needle}` in its trace"),
            |j| j.trace_text().contains(needle),
        )
    }

    /// Cancels a running job gracefully (`canceling`: after_script still runs).
    pub fn cancel(&self, id: i64) {
        let mut g = self.lock();
        let job = g.jobs.get_mut(&id).expect("a known job");
        if job.state == JobState::Running {
            job.state = JobState::Canceling;
        }
    }

    /// Cancels a job hard (`canceled`: the runner must stop at once).
    pub fn cancel_hard(&self, id: i64) {
        let mut g = self.lock();
        let job = g.jobs.get_mut(&id).expect("a known job");
        if job.state.live() {
            job.state = JobState::Canceled;
            job.finished_at = Some(Instant::now());
            g.running = g.running.saturating_sub(1);
        }
    }

    /// Makes GitLab lose the last `n` bytes of the job's stored trace before it handles the
    /// next patch, so that patch hits a range mismatch (416) and must resume earlier.
    pub fn lose_trace_bytes(&self, id: i64, n: usize) {
        self.lock().lose_trace.insert(id, n);
    }

    /// Answers the next `n` job requests with 409 (taken by another runner).
    pub fn conflict_next(&self, n: u32) {
        self.lock().conflicts = n;
    }

    /// Answers the job's first `n` final updates with 202 (two-phase commit).
    pub fn accept_later(&self, id: i64, n: u32) {
        self.lock().accept_later.insert(id, n);
    }

    /// Corrupts GitLab's copy of the job's trace once, just before its final update, so
    /// the checksum fails (412) and the runner must send the whole trace again.
    pub fn corrupt_trace_before_final(&self, id: i64) {
        self.lock().corrupt_before_final.push(id);
    }

    /// Protocol violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The most jobs that were running at once.
    pub fn max_running(&self) -> usize {
        self.lock().max_running
    }

    /// `jobs/request` calls so far.
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Git requests refused for a missing or wrong job token.
    pub fn git_auth_failures(&self) -> u32 {
        self.lock().git_auth_failures
    }

    /// A new bare repository served at `http://127.0.0.1:PORT/<name>.git`; returns its
    /// path on disk (to push to) and its URL.
    pub fn add_repo(&self, name: &str) -> (PathBuf, String) {
        let root = self.lock().git_root.clone();
        let path = root.join(format!("{name}.git"));
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("repository directory");
        let out = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .output()
            .expect("git init --bare");
        assert!(
            out.status.success(),
            "git init --bare: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (path, format!("{}/{name}.git", self.url()))
    }
}

fn random_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        let _ = write!(s, "{:016x}", rand_u64());
    }
    s.truncate(n);
    s
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn violation(g: &mut Inner, what: String) {
    eprintln!("fake GitLab: protocol violation: {what}");
    g.violations.push(what);
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

/// Checks `info` of a runner request: every documented feature is stated as a boolean.
fn check_info(g: &mut Inner, call: &str, body: &Value) {
    let Some(features) = body.pointer("/info/features").and_then(Value::as_object) else {
        violation(g, format!("{call}: no `info.features`"));
        return;
    };
    for f in FEATURES {
        if !features.get(*f).is_some_and(Value::is_boolean) {
            violation(g, format!("{call}: `info.features.{f}` is not stated"));
        }
    }
    for k in ["name", "version", "platform", "architecture", "executor"] {
        if body
            .pointer(&format!("/info/{k}"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            violation(g, format!("{call}: no `info.{k}`"));
        }
    }
}

/// `^[sr]_[A-Za-z0-9]{12}$`.
fn valid_system_id(id: &str) -> bool {
    id.len() == 14
        && (id.starts_with("s_") || id.starts_with("r_"))
        && id[2..].chars().all(|c| c.is_ascii_alphanumeric())
}

/// Common checks of runner-level calls: JSON body, `RUNNER-TOKEN` header equal to the
/// body token. Returns the body and whether the token is this GitLab's.
fn runner_call(
    g: &mut Inner,
    call: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(Value, bool)> {
    if !header(headers, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        violation(g, format!("{call}: `Content-Type` is not application/json"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        violation(g, format!("{call}: the body is not JSON"));
        return None;
    };
    let token = v.get("token").and_then(Value::as_str).unwrap_or("");
    if header(headers, "RUNNER-TOKEN") != Some(token) {
        violation(
            g,
            format!("{call}: the `RUNNER-TOKEN` header does not carry the body's token"),
        );
    }
    if header(headers, "X-Request-Id").is_none() {
        violation(g, format!("{call}: no `X-Request-Id`"));
    }
    let ok = token == g.runner_token;
    Some((v, ok))
}

async fn verify(AxState(shared): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut g = lock(&shared);
    let Some((v, ok)) = runner_call(&mut g, "runners/verify", &headers, &body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if !ok {
        return status(StatusCode::FORBIDDEN);
    }
    let system_id = v
        .get("system_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !valid_system_id(&system_id) {
        violation(
            &mut g,
            format!("runners/verify: `system_id` `{system_id}` is not `[sr]_` and 12 characters"),
        );
        return status(StatusCode::BAD_REQUEST);
    }
    check_info(&mut g, "runners/verify", &v);
    g.verified.push(system_id.clone());
    g.expected_last_update.insert(system_id, None);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"id": 1, "token": g.runner_token, "token_expires_at": "0001-01-01T00:00:00Z"})
            .to_string(),
    )
        .into_response()
}

async fn request(AxState(shared): AxState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let (long_poll, system_id) = {
        let mut g = lock(&shared);
        g.requests += 1;
        let Some((v, ok)) = runner_call(&mut g, "jobs/request", &headers, &body) else {
            return status(StatusCode::BAD_REQUEST);
        };
        if !ok {
            return status(StatusCode::FORBIDDEN);
        }
        check_info(&mut g, "jobs/request", &v);
        let system_id = v
            .get("system_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !g.verified.contains(&system_id) {
            violation(
                &mut g,
                format!(
                    "jobs/request: `system_id` `{system_id}` was never verified (`runners/verify` first)"
                ),
            );
        }
        let sent = v
            .get("last_update")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(Some(expected)) = g.expected_last_update.get(&system_id).cloned()
            && sent.as_deref() != Some(expected.as_str())
        {
            violation(
                &mut g,
                format!(
                    "jobs/request: `last_update` is {sent:?}, not the `X-GitLab-Last-Update` `{expected}` GitLab sent last"
                ),
            );
        }
        if v.pointer("/info/features/refspecs") != Some(&Value::Bool(true)) {
            // GitLab does not hand out detached merge-request jobs to such runners.
            return status(StatusCode::NO_CONTENT);
        }
        if g.conflicts > 0 {
            g.conflicts -= 1;
            return status(StatusCode::CONFLICT);
        }
        let hold = sent.as_deref() == Some(g.queue_version.to_string().as_str());
        (if hold { g.long_poll } else { Duration::ZERO }, system_id)
    };
    let end = tokio::time::Instant::now() + long_poll;
    loop {
        let notified = shared.1.notified();
        {
            let mut g = lock(&shared);
            if let Some(id) = g.queue.pop_front() {
                g.queue_version += 1;
                let version = g.queue_version.to_string();
                g.running += 1;
                g.max_running = g.max_running.max(g.running);
                let payload = g.payloads.get(&id).cloned().expect("a payload per job");
                let job = g.jobs.get_mut(&id).expect("a queued job");
                job.state = JobState::Running;
                job.handed_out += 1;
                job.picked_at = Some(Instant::now());
                if job.handed_out > 1 {
                    violation(&mut g, format!("job {id} was handed out twice"));
                }
                g.expected_last_update
                    .insert(system_id, Some(version.clone()));
                return (
                    StatusCode::CREATED,
                    [
                        ("content-type", "application/json".to_owned()),
                        ("X-GitLab-Last-Update", version),
                    ],
                    payload.to_string(),
                )
                    .into_response();
            }
            if tokio::time::Instant::now() >= end {
                let version = g.queue_version.to_string();
                g.expected_last_update
                    .insert(system_id, Some(version.clone()));
                return (StatusCode::NO_CONTENT, [("X-GitLab-Last-Update", version)])
                    .into_response();
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(end) => {}
        }
    }
}

/// Checks the `JOB-TOKEN` header of a job-level call; the job must exist.
fn job_call<'a>(
    g: &'a mut Inner,
    call: &str,
    id: i64,
    headers: &HeaderMap,
) -> Result<&'a mut Job, StatusCode> {
    if header(headers, "X-Request-Id").is_none() {
        violation(g, format!("{call}: no `X-Request-Id`"));
    }
    let token = header(headers, "JOB-TOKEN").map(str::to_owned);
    let Some(job) = g.jobs.get(&id) else {
        violation(g, format!("{call}: job {id} does not exist"));
        return Err(StatusCode::NOT_FOUND);
    };
    if token.as_deref() != Some(job.token.as_str()) {
        violation(
            g,
            format!("{call}: `JOB-TOKEN` is missing or not job {id}'s token"),
        );
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(g.jobs.get_mut(&id).expect("checked above"))
}

fn job_status(job: &Job) -> (&'static str, HeaderValue) {
    ("Job-Status", HeaderValue::from_static(job.state.name()))
}

async fn trace(
    AxState(shared): AxState<Shared>,
    UrlPath(id): UrlPath<i64>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = lock(&shared);
    let interval = g.update_interval.to_string();
    if !uri.query().is_some_and(|q| q.contains("debug_trace=")) {
        violation(
            &mut g,
            format!("trace {id}: no `debug_trace` query parameter"),
        );
    }
    if !header(&headers, "content-type").is_some_and(|c| c.starts_with("text/plain")) {
        violation(
            &mut g,
            format!("trace {id}: `Content-Type` is not text/plain"),
        );
    }
    let range = header(&headers, "Content-Range").map(str::to_owned);
    let lose = g.lose_trace.remove(&id);
    let job = match job_call(&mut g, "trace", id, &headers) {
        Ok(j) => j,
        Err(code) => return status(code),
    };
    job.patches += 1;
    if !job.state.live() {
        let h = job_status(job);
        return (StatusCode::FORBIDDEN, [h]).into_response();
    }
    let parsed = range.as_deref().and_then(|r| {
        let (a, b) = r.split_once('-')?;
        Some((
            a.trim().parse::<usize>().ok()?,
            b.trim().parse::<usize>().ok()?,
        ))
    });
    let Some((start, end)) = parsed else {
        violation(
            &mut g,
            format!("trace {id}: `Content-Range` {range:?} is not `START-END`"),
        );
        return status(StatusCode::BAD_REQUEST);
    };
    let job = g.jobs.get_mut(&id).expect("a known job");
    if body.is_empty() || end + 1 != start + body.len() {
        let n = body.len();
        violation(
            &mut g,
            format!("trace {id}: `Content-Range` {start}-{end} does not match a body of {n} bytes"),
        );
        return status(StatusCode::BAD_REQUEST);
    }
    if let Some(n) = lose {
        let keep = job.trace.len().saturating_sub(n);
        job.trace.truncate(keep);
    }
    let len = job.trace.len();
    if start != len && start != 0 {
        job.range_mismatches += 1;
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [("Range", format!("0-{len}"))],
        )
            .into_response();
    }
    if start == 0 {
        job.trace.clear();
    }
    job.trace.extend_from_slice(&body);
    let len = job.trace.len();
    let (k, v) = job_status(job);
    (
        StatusCode::ACCEPTED,
        [
            ("Range", format!("0-{len}")),
            (k, v.to_str().unwrap_or_default().to_owned()),
            ("X-GitLab-Trace-Update-Interval", interval),
        ],
    )
        .into_response()
}

async fn update(
    AxState(shared): AxState<Shared>,
    UrlPath(id): UrlPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = lock(&shared);
    let interval = g.update_interval.to_string();
    if !header(&headers, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        violation(
            &mut g,
            format!("update {id}: `Content-Type` is not application/json"),
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        violation(&mut g, format!("update {id}: the body is not JSON"));
        return status(StatusCode::BAD_REQUEST);
    };
    if v.get("info").is_none() {
        violation(&mut g, format!("update {id}: no `info`"));
    }
    let later = g.accept_later.get(&id).copied().unwrap_or(0);
    let job = match job_call(&mut g, "update", id, &headers) {
        Ok(j) => j,
        Err(code) => return status(code),
    };
    let body_token = v.get("token").and_then(Value::as_str).unwrap_or("");
    if body_token != job.token {
        violation(
            &mut g,
            format!("update {id}: the body `token` is not the job's token"),
        );
        return status(StatusCode::FORBIDDEN);
    }
    let job = g.jobs.get_mut(&id).expect("a known job");
    if !job.state.live() {
        let h = job_status(job);
        return (StatusCode::FORBIDDEN, [h]).into_response();
    }
    let state = v
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match state.as_str() {
        "running" => {
            job.touches += 1;
            let h = job_status(job);
            return (StatusCode::OK, [h]).into_response();
        }
        "success" | "failed" => {}
        other => {
            violation(
                &mut g,
                format!("update {id}: `state` `{other}` is not running, success or failed"),
            );
            return status(StatusCode::BAD_REQUEST);
        }
    }
    if let Some(pos) = g.corrupt_before_final.iter().position(|j| *j == id) {
        g.corrupt_before_final.remove(pos);
        let job = g.jobs.get_mut(&id).expect("a known job");
        if let Some(b) = job.trace.first_mut() {
            *b ^= 0x20;
        }
    }
    let job = g.jobs.get_mut(&id).expect("a known job");
    // Checksum and size of the trace, as GitLab verifies them with trace_checksum/trace_size.
    let expected = format!("crc32:{:08x}", crc32fast::hash(&job.trace));
    let size = job.trace.len();
    let checksum = v
        .pointer("/output/checksum")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let top = v.get("checksum").and_then(Value::as_str).map(str::to_owned);
    let bytesize = v.pointer("/output/bytesize").and_then(Value::as_u64);
    if checksum.as_deref() != Some(expected.as_str()) || bytesize != Some(size as u64) {
        job.checksum_mismatches += 1;
        if checksum.is_none() || bytesize.is_none() {
            violation(
                &mut g,
                format!(
                    "update {id}: no `output.checksum`/`output.bytesize` though `trace_checksum` and `trace_size` are advertised"
                ),
            );
        }
        return status(StatusCode::PRECONDITION_FAILED);
    }
    if top.is_some() && top != checksum {
        violation(
            &mut g,
            format!("update {id}: `checksum` and `output.checksum` differ"),
        );
    }
    let reason = v
        .get("failure_reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let exit_code = v.get("exit_code").and_then(Value::as_i64);
    if let Some(r) = &reason {
        if state == "success" {
            violation(
                &mut g,
                format!("update {id}: a successful job sent `failure_reason` `{r}`"),
            );
            return status(StatusCode::BAD_REQUEST);
        }
        let job = g.jobs.get(&id).expect("a known job");
        if !job.failure_reasons.iter().any(|a| a == r) {
            violation(
                &mut g,
                format!(
                    "update {id}: `failure_reason` `{r}` is not in the job's `features.failure_reasons`"
                ),
            );
            return status(StatusCode::BAD_REQUEST);
        }
    }
    if later > 0 {
        g.accept_later.insert(id, later - 1);
        return (
            StatusCode::ACCEPTED,
            [("X-GitLab-Trace-Update-Interval", interval)],
        )
            .into_response();
    }
    let job = g.jobs.get_mut(&id).expect("a known job");
    job.final_updates += 1;
    job.state = match (job.state, state.as_str()) {
        (JobState::Canceling, _) => JobState::Canceled,
        (_, "success") => JobState::Success,
        _ => JobState::Failed,
    };
    job.failure_reason = reason;
    job.exit_code = exit_code;
    job.finished_at = Some(Instant::now());
    let h = job_status(job);
    g.running = g.running.saturating_sub(1);
    (StatusCode::OK, [h]).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct ArtifactQuery {
    artifact_type: Option<String>,
    artifact_format: Option<String>,
    expire_in: Option<String>,
}

async fn artifacts(
    AxState(shared): AxState<Shared>,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<ArtifactQuery>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    {
        let mut g = lock(&shared);
        let job = match job_call(&mut g, "artifacts", id, &headers) {
            Ok(j) => j,
            Err(code) => return status(code),
        };
        if !job.state.live() {
            let h = job_status(job);
            return (StatusCode::FORBIDDEN, [h]).into_response();
        }
    }
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut problems = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let filename = field.file_name().map(str::to_owned);
                match field.bytes().await {
                    Ok(data) if name == "file" => match filename {
                        Some(f) if !f.is_empty() => file = Some((f, data.to_vec())),
                        _ => problems.push("the `file` part has no file name".to_owned()),
                    },
                    Ok(_) => problems.push(format!("unexpected multipart part `{name}`")),
                    Err(e) => problems.push(format!("cannot read the multipart body: {e}")),
                }
            }
            Ok(None) => break,
            Err(e) => {
                problems.push(format!("cannot read the multipart body: {e}"));
                break;
            }
        }
    }
    let mut g = lock(&shared);
    let artifact_type = q.artifact_type.clone().unwrap_or_default();
    let artifact_format = q.artifact_format.clone().unwrap_or_default();
    if artifact_type.is_empty() || artifact_format.is_empty() {
        problems
            .push("`artifact_type` and `artifact_format` query parameters are required".to_owned());
    }
    let Some((filename, data)) = file else {
        problems.push("no multipart part named `file`".to_owned());
        for p in problems {
            violation(&mut g, format!("artifacts {id}: {p}"));
        }
        return status(StatusCode::BAD_REQUEST);
    };
    let upload = Upload {
        artifact_type: artifact_type.clone(),
        artifact_format: artifact_format.clone(),
        expire_in: q.expire_in.clone(),
        filename,
        data,
    };
    match artifact_format.as_str() {
        "gzip" => {
            let mut out = Vec::new();
            if let Err(e) =
                flate2::read::MultiGzDecoder::new(&upload.data[..]).read_to_end(&mut out)
            {
                problems.push(format!("a gzip artifact that is not gzip: {e}"));
            } else if artifact_type == "codequality" {
                problems.extend(check_codequality(&out));
            }
        }
        "zip" => {
            if let Err(e) = zip::ZipArchive::new(std::io::Cursor::new(&upload.data)) {
                problems.push(format!("a zip artifact that is not a zip: {e}"));
            }
        }
        "raw" => {}
        other => problems.push(format!("unknown `artifact_format` `{other}`")),
    }
    let job = g.jobs.get_mut(&id).expect("a known job");
    if job.uploads.iter().any(|u| u.artifact_type == artifact_type) {
        problems.push(format!(
            "another artifact of type `{artifact_type}` already exists"
        ));
    }
    if !problems.is_empty() {
        for p in problems {
            violation(&mut g, format!("artifacts {id}: {p}"));
        }
        return status(StatusCode::BAD_REQUEST);
    }
    job.uploads.push(upload);
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        "{}",
    )
        .into_response()
}

/// `GET jobs/:id/artifacts`: the job's archive, for a dependent job holding this job's token.
async fn download(
    AxState(shared): AxState<Shared>,
    UrlPath(id): UrlPath<i64>,
    headers: HeaderMap,
) -> Response {
    let mut g = lock(&shared);
    let job = match job_call(&mut g, "artifacts download", id, &headers) {
        Ok(j) => j,
        Err(code) => return status(code),
    };
    match job.upload("archive") {
        Some(u) => (
            StatusCode::OK,
            [("content-type", "application/zip")],
            u.data.clone(),
        )
            .into_response(),
        None => status(StatusCode::NOT_FOUND),
    }
}

/// Problems of a Code Quality report against the documented format.
pub fn check_codequality(bytes: &[u8]) -> Vec<String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return vec!["the Code Quality report starts with a byte-order mark".to_owned()];
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(bytes) else {
        return vec!["the Code Quality report is not one JSON array".to_owned()];
    };
    let mut problems = Vec::new();
    for (i, it) in items.iter().enumerate() {
        for k in ["description", "check_name", "fingerprint", "severity"] {
            if it.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!("Code Quality entry {i}: no `{k}`"));
            }
        }
        let sev = it.get("severity").and_then(Value::as_str).unwrap_or("");
        if !["info", "minor", "major", "critical", "blocker"].contains(&sev) {
            problems.push(format!("Code Quality entry {i}: severity `{sev}` is not one of info, minor, major, critical, blocker"));
        }
        if it
            .pointer("/location/path")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(format!("Code Quality entry {i}: no `location.path`"));
        }
        let line = it
            .pointer("/location/lines/begin")
            .or_else(|| it.pointer("/location/positions/begin/line"))
            .and_then(Value::as_u64);
        if line.is_none() {
            problems.push(format!("Code Quality entry {i}: no `location.lines.begin`"));
        }
    }
    problems
}

/// Git smart HTTP through `git http-backend`, with job-token basic auth.
async fn git(
    AxState(shared): AxState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if !path.contains(".git/") {
        return status(StatusCode::NOT_FOUND);
    }
    let root = {
        let mut g = lock(&shared);
        let authorized = header(&headers, "authorization")
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("gitlab-ci-token:").map(str::to_owned))
            .is_some_and(|tok| g.jobs.values().any(|j| j.token == tok && j.state.live()));
        if !authorized {
            g.git_auth_failures += 1;
            return (
                StatusCode::UNAUTHORIZED,
                [("WWW-Authenticate", "Basic realm=\"GitLab\"")],
            )
                .into_response();
        }
        g.git_root.clone()
    };
    match cgi(&root, &method, &uri, &headers, &body).await {
        Ok(r) => r,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn cgi(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, String> {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REMOTE_USER", "gitlab-ci-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(ct) = header(headers, "content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = header(headers, "git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(enc) = header(headers, "content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    let mut child = cmd.spawn().map_err(|e| format!("git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("git http-backend: {e}"))?;
    let _ = writer.await;
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, 2))
        })
        .ok_or_else(|| {
            format!(
                "git http-backend gave no headers: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
    let content = out.stdout[split.0 + split.1..].to_vec();
    let mut code = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            code = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            builder = builder.header(k.trim(), v);
        }
    }
    builder
        .status(code)
        .body(axum::body::Body::from(content))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_quality_checks_follow_the_documented_format() {
        let ok = br#"[{"description":"d","check_name":"c","fingerprint":"f","severity":"minor","location":{"path":"Dockerfile","lines":{"begin":3}}}]"#;
        assert!(check_codequality(ok).is_empty());
        let bad = br#"[{"description":"d","check_name":"c","fingerprint":"f","severity":"bad","location":{"path":""}}]"#;
        assert_eq!(check_codequality(bad).len(), 3);
        assert_eq!(check_codequality(b"{}").len(), 1);
    }

    #[test]
    fn payload_has_the_documented_shape() {
        let p = JobSpec::new("build")
            .masked("SECRET", "s3cr3t-value")
            .after_script(&["echo done"], 60)
            .payload(7, "glcbt-x", "http://127.0.0.1:1", &[]);
        assert_eq!(p["id"], 7);
        assert_eq!(p["steps"][0]["name"], "script");
        assert_eq!(p["steps"][1]["name"], "after_script");
        assert_eq!(p["steps"][1]["when"], "always");
        assert!(p["features"]["failure_reasons"].as_array().unwrap().len() > 10);
        let vars = p["variables"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["key"] == "CI_JOB_TOKEN" && v["masked"] == true)
        );
        assert!(
            vars.iter()
                .any(|v| v["key"] == "GIT_STRATEGY" && v["value"] == "none")
        );
    }
}

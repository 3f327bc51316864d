//! One job, from pickup to report: Prepare -> Run -> Finish -> Cleanup.
//!
//! - **Prepare**: resolve variables (the masker learns every secret before the first log
//!   line), say what is not supported (`services:`, `cache:`), write the environment file,
//!   file-type variables and registry credentials into the job's private directory, get
//!   the sources.
//! - **Run**: each step (`script` = before_script + script, then any other named step by
//!   its `when`) through the executor, within the job timeout; `after_script` always,
//!   with its own timeout, unless the job was canceled hard or the daemon gave up on it.
//! - **Finish**: artifacts and reports by their `when`, the Code Quality report of the
//!   diagnostics nested rbuild invocations wrote, the final log line, the final update.
//! - **Cleanup**: the private directory (file variables, credentials) is removed and the
//!   crash-recovery record dropped.
//!
//! Failures are classified where they happen ([`Failure`]) and map to GitLab's
//! `failure_reason` values, sent only if the job's GitLab lists them.

pub mod artifacts;
pub mod codequality;
pub mod git;
pub mod script;
pub mod trace;
pub mod vars;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{ExecutorKind, GitlabInstance};
use crate::envvars;
use crate::executor::{self, Executor, Interrupt, Layout, StepEnd, StepSpec};
use crate::forge::gitlab::client::{Client, RemoteStatus, go_arch};
use crate::forge::gitlab::failure_reason;
use crate::forge::gitlab::types::{Info, Job, JobState, Step};
use crate::log::JobLog;
use crate::log::mask::Masker;
use crate::state::{JobRecord, StateStore, process_start_time};
use trace::{Final, Reported, Reporter};

/// Job timeout when GitLab sends none.
const DEFAULT_TIMEOUT: Duration = Duration::from_hours(1);
/// `after_script` timeout when its step names none (GitLab's default).
const DEFAULT_AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_mins(5);

/// What every job of one GitLab instance shares.
#[derive(Debug, Clone)]
pub struct JobEnv {
    pub instance: Arc<GitlabInstance>,
    pub client: Client,
    pub info: Arc<Info>,
    pub executor: Arc<Executor>,
    pub builds_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub state: StateStore,
    pub hostname: String,
    pub system_id: String,
}

/// Why a job did not succeed, classified where it was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A command of the job's script exited non-zero.
    Script { code: i32 },
    /// The job ran past its timeout.
    Timeout(Duration),
    /// The job's image could not be pulled.
    ImagePull(String),
    /// The runner or the host failed (sources, sandbox creation, uploads).
    System(String),
    /// The artifacts of a job this one depends on could not be had.
    Dependency(String),
    /// GitLab asked for a graceful cancel.
    Canceled,
    /// The job is gone on GitLab (canceled hard, removed): nothing more is reported.
    Gone(String),
    /// The daemon was stopped and its drain deadline passed.
    Stopped,
}

impl Failure {
    /// The `failure_reason` this failure means (before the accepted-list check).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Failure::Script { .. } => Some("script_failure"),
            Failure::Timeout(_) => Some("job_execution_timeout"),
            Failure::ImagePull(_) => Some("image_pull_failure"),
            Failure::System(_) | Failure::Stopped => Some("runner_system_failure"),
            Failure::Dependency(_) => Some("missing_dependency_failure"),
            Failure::Canceled | Failure::Gone(_) => None,
        }
    }

    /// The last line of the job log.
    pub fn log_line(&self) -> String {
        match self {
            Failure::Script { code } => format!("Job failed: exit code {code}"),
            Failure::Timeout(d) => format!(
                "Job failed: execution took longer than {}",
                humantime::format_duration(*d)
            ),
            Failure::ImagePull(m) => format!("Job failed (image pull failure): {m}"),
            Failure::System(m) => format!("Job failed (system failure): {m}"),
            Failure::Dependency(m) => format!("Job failed (missing dependency): {m}"),
            Failure::Canceled => "Job failed: canceled".to_owned(),
            Failure::Gone(s) => format!("Job stopped: GitLab reports the job as {s}"),
            Failure::Stopped => "Job failed (system failure): the runner was stopped and could not wait for the job to finish".to_owned(),
        }
    }
}

/// How a job ended, for metrics and the daemon's log.
#[derive(Debug, Clone)]
pub struct Summary {
    pub job_id: i64,
    /// `success`, `failed`, `canceled` or `gone`.
    pub state: &'static str,
    pub failure_reason: Option<String>,
    pub duration: Duration,
    pub reported: Reported,
}

/// Paths of one job on the host.
#[derive(Debug, Clone)]
struct Paths {
    project: PathBuf,
    tmp: PathBuf,
    files: PathBuf,
    diagnostics: PathBuf,
    docker: PathBuf,
}

/// The project path as a relative path with no `..`, for directory names.
fn project_path(job: &Job) -> PathBuf {
    let clean: PathBuf = Path::new(&job.job_info.project_full_path)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    if clean.as_os_str().is_empty() {
        PathBuf::from(format!("project-{}", job.job_info.project_id))
    } else {
        clean
    }
}

/// `arm64` -> `linux/arm64`; `linux/arm64/v8` stays.
pub fn normalise_platform(p: &str) -> Option<String> {
    let p = p.trim();
    if p.is_empty() {
        None
    } else if p.contains('/') {
        Some(p.to_owned())
    } else {
        Some(format!("linux/{p}"))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs one job in slot `slot` of its instance and reports it. `stop` turns true when the
/// daemon gives up waiting (its drain deadline passed).
pub async fn run(env: &JobEnv, job: Job, slot: usize, stop: watch::Receiver<bool>) -> Summary {
    let started = Instant::now();
    let inst = &env.instance;
    let project = project_path(&job);
    let slot_host = env.builds_dir.join(&inst.name).join(slot.to_string());
    let tmp = slot_host.join(format!("{}.tmp", project.display()));
    let paths = Paths {
        project: slot_host.join(&project),
        files: tmp.join("files"),
        diagnostics: tmp.join("diagnostics"),
        docker: tmp.join("docker"),
        tmp,
    };
    let cache_host = env.cache_dir.join(&inst.name).join(&project);
    let layout = env.executor.layout(&slot_host, &cache_host);

    let predefined = predefined(env, slot, &layout, &paths);
    let vars = vars::resolve(
        &job,
        &predefined,
        &paths.files,
        &layout.inside(&paths.files),
    );
    let mut secrets = vars::masked_values(&job, &vars);
    secrets.push(inst.token.expose().to_owned());
    let masker = Masker::new(&secrets, &job.features.token_mask_prefixes);
    let trace_path = env.state.trace_path(&inst.name, job.id);
    let log = match JobLog::new(masker, inst.output_limit, Some(trace_path)) {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!(error = %e, "cannot mirror the job log to the state directory; crash recovery will not have it");
            let masker = Masker::new(&secrets, &job.features.token_mask_prefixes);
            JobLog::new(masker, inst.output_limit, None)
                .expect("a log without a mirror opens no file")
        }
    };
    let mut record = JobRecord {
        instance: inst.name.clone(),
        url: inst.url.clone(),
        job_id: job.id,
        job_token: job.token.clone(),
        failure_reasons: job.features.failure_reasons.clone(),
        output_limit: inst.output_limit,
        tmp_dir: paths.tmp.clone(),
        pgid: None,
        pgid_start: None,
        started: unix_now(),
    };
    if let Err(e) = env.state.save(&record) {
        tracing::warn!(error = %e, "cannot record the job in the state directory; a crash would leave it unreported");
    }

    let mut reporter = Reporter::new(
        env.client.clone(),
        env.info.clone(),
        job.id,
        job.token.clone(),
        log.clone(),
    );
    let remote = reporter.remote();
    let (stop_trace, stop_trace_rx) = watch::channel(false);
    let trace_task = tokio::spawn(async move {
        reporter.run_until(stop_trace_rx).await;
        reporter
    });
    let (int_tx, int_rx) = watch::channel(None);
    let watcher = tokio::spawn(watch_interrupts(remote.clone(), stop.clone(), int_tx));

    let mut run = Run {
        env,
        job: &job,
        log: &log,
        layout,
        paths,
        vars,
        interrupts: int_rx,
        remote,
        stop,
        record: &mut record,
    };
    let mut failure = run.prepare_and_run(started).await.err();

    // after_script: always, with its own timeout, unless nothing may run any more.
    if !matches!(failure, Some(Failure::Gone(_) | Failure::Stopped))
        && let Some(step) = job.steps.iter().find(|s| s.name == "after_script")
        && !step.script.is_empty()
    {
        let status = match &failure {
            None => "success",
            Some(Failure::Canceled) => "canceled",
            Some(_) => "failed",
        };
        run.after_script(step, status).await;
        if let Some(f) = run.interrupted_failure() {
            failure.get_or_insert(f);
        }
    }

    if !matches!(
        failure,
        Some(Failure::Gone(_) | Failure::Stopped | Failure::Canceled)
    ) && let Err(f) = run.upload(failure.is_none()).await
    {
        failure.get_or_insert(f);
    }

    log.section_start(
        "cleanup_file_variables",
        "Cleaning up project directory and file based variables",
        true,
    );
    if let Err(e) = fs_err::remove_dir_all(&run.paths.tmp)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log.warning(&format!("cannot remove the job's private directory: {e}"));
    }
    log.section_end("cleanup_file_variables");
    match &failure {
        None => log.success("Job succeeded"),
        Some(f) => log.error(&f.log_line()),
    }
    log.flush();
    watcher.abort();

    let _ = stop_trace.send(true);
    let mut reporter = match trace_task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the job log sender failed; sending the whole log again");
            Reporter::new(
                env.client.clone(),
                env.info.clone(),
                job.id,
                job.token.clone(),
                log.clone(),
            )
        }
    };
    let (state, reason, exit_code) = match &failure {
        None => (JobState::Success, None, None),
        Some(f) => (
            JobState::Failed,
            f.reason()
                .and_then(|r| failure_reason(r, &job.features.failure_reasons))
                .map(str::to_owned),
            match f {
                Failure::Script { code } => Some(*code),
                _ => None,
            },
        ),
    };
    let reported = match &failure {
        Some(Failure::Gone(s)) => Reported::Gone(s.clone()),
        _ => {
            reporter
                .finish(&Final {
                    state,
                    failure_reason: reason.clone(),
                    exit_code,
                })
                .await
        }
    };
    if let Reported::Unreachable(why) = &reported {
        tracing::error!(job_id = job.id, %why, "could not report the job; it stays in the state directory and is reported as failed when the daemon starts again");
    } else {
        env.state.remove(&inst.name, job.id);
        log.remove_mirror();
    }
    Summary {
        job_id: job.id,
        state: match &failure {
            None => "success",
            Some(Failure::Canceled) => "canceled",
            Some(Failure::Gone(_)) => "gone",
            Some(_) => "failed",
        },
        failure_reason: reason,
        duration: started.elapsed(),
        reported,
    }
}

/// Turns remote status changes and the daemon's stop into step interrupts.
async fn watch_interrupts(
    mut remote: watch::Receiver<RemoteStatus>,
    mut stop: watch::Receiver<bool>,
    tx: watch::Sender<Option<Interrupt>>,
) {
    loop {
        let want = if *stop.borrow() {
            Some(Interrupt::Abort)
        } else {
            match &*remote.borrow() {
                RemoteStatus::Running => None,
                RemoteStatus::Canceling => Some(Interrupt::Cancel),
                RemoteStatus::Ended(_) => Some(Interrupt::Abort),
            }
        };
        if want.is_some() {
            tx.send_if_modified(|cur| {
                // An abort is never downgraded to a graceful cancel.
                if *cur == Some(Interrupt::Abort) || *cur == want {
                    false
                } else {
                    *cur = want;
                    true
                }
            });
        }
        tokio::select! {
            r = remote.changed() => if r.is_err() { std::future::pending::<()>().await },
            r = stop.changed() => if r.is_err() { std::future::pending::<()>().await },
        }
    }
}

/// The failure causes of rbuild's catalog that mean the job's image could not be pulled.
const IMAGE_PULL_CAUSES: [&str; 5] = [
    "image-pull-failed",
    "base-image-missing-platform",
    "registry-auth-401",
    "registry-rate-limited",
    "registry-tls-or-http",
];

/// The first error in the diagnostics `rbuild run` wrote that is an image pull failure:
/// `(id, message)`.
fn pull_cause(diagnostics_json: &str) -> Option<(String, String)> {
    let all: Vec<serde_json::Value> = serde_json::from_str(diagnostics_json).ok()?;
    all.iter().find_map(|d| {
        let id = d["id"].as_str()?;
        (d["severity"] == "error" && IMAGE_PULL_CAUSES.contains(&id)).then(|| {
            (
                id.to_owned(),
                d["message"].as_str().unwrap_or("").to_owned(),
            )
        })
    })
}

/// Classifies an executor that ended (with `code`, described as `status`) before the job's
/// script started: the image pull failure `rbuild run` reported in its diagnostics
/// (`pulled`: what [`pull_cause`] found), else its exit code (DESIGN.md) says why.
fn not_started(
    kind: ExecutorKind,
    code: Option<i32>,
    status: &str,
    image: &str,
    pulled: Option<(String, String)>,
) -> Failure {
    if let (ExecutorKind::Rbuild, Some((id, message))) = (kind, pulled) {
        return Failure::ImagePull(format!(
            "`rbuild run` could not pull `{image}`: {message} (known failure cause `{id}`: `rbuild explain {id}`)"
        ));
    }
    match (kind, code) {
        // 4: registry or network.
        (ExecutorKind::Rbuild, Some(4)) => Failure::ImagePull(format!(
            "`rbuild run` could not pull `{image}` (exit code 4); its error is above"
        )),
        // 3: host or environment (no user namespaces, no subuid range, no qemu).
        (ExecutorKind::Rbuild, Some(3)) => Failure::System(
            "`rbuild run` could not create the job's sandbox on this host (exit code 3); its error is above".to_owned(),
        ),
        (ExecutorKind::Rbuild, Some(code)) => Failure::System(format!(
            "`rbuild run` failed before the job's script started (exit code {code}); its error is above"
        )),
        (_, _) => Failure::System(format!("the job's script did not start ({status})")),
    }
}

/// The runner's predefined variables.
fn predefined(env: &JobEnv, slot: usize, layout: &Layout, paths: &Paths) -> Vec<(String, String)> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut v = vec![
        ("CI_BUILDS_DIR", s(&layout.slot_inside)),
        ("CI_PROJECT_DIR", s(&layout.inside(&paths.project))),
        ("CI_CONCURRENT_ID", slot.to_string()),
        ("CI_CONCURRENT_PROJECT_ID", slot.to_string()),
        ("CI_SERVER", "yes".to_owned()),
        ("CI_RUNNER_VERSION", env.info.version.clone()),
        ("CI_RUNNER_REVISION", env.info.revision.clone()),
        (
            "CI_RUNNER_EXECUTABLE_ARCH",
            format!("{}/{}", std::env::consts::OS, go_arch()),
        ),
        (
            envvars::RBUILD_DIAGNOSTICS_DIR,
            s(&layout.inside(&paths.diagnostics)),
        ),
        ("XDG_CACHE_HOME", s(&layout.cache_inside)),
    ];
    if env.executor.kind() == ExecutorKind::Rbuild {
        v.push(("CI_DISPOSABLE_ENVIRONMENT", "true".to_owned()));
    }
    v.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

struct Run<'a> {
    env: &'a JobEnv,
    job: &'a Job,
    log: &'a Arc<JobLog>,
    layout: Layout,
    paths: Paths,
    vars: vars::Vars,
    interrupts: watch::Receiver<Option<Interrupt>>,
    remote: watch::Receiver<RemoteStatus>,
    stop: watch::Receiver<bool>,
    record: &'a mut JobRecord,
}

impl Run<'_> {
    /// The failure an interrupt stands for (read after a step was interrupted).
    fn interrupted_failure(&self) -> Option<Failure> {
        if *self.stop.borrow() {
            return Some(Failure::Stopped);
        }
        match &*self.remote.borrow() {
            RemoteStatus::Running => None,
            RemoteStatus::Canceling => Some(Failure::Canceled),
            RemoteStatus::Ended(s) => Some(Failure::Gone(s.clone())),
        }
    }

    fn image(&self) -> Option<(String, Option<String>)> {
        let image = self.job.image.as_ref().filter(|i| !i.name.is_empty());
        let name = image
            .map(|i| i.name.clone())
            .or_else(|| self.env.instance.default_image.clone())?;
        let platform = image.and_then(|i| normalise_platform(&i.executor_opts.docker.platform));
        Some((name, platform))
    }

    /// Whether the image is looked up at its registry for every job: GitLab's `always`
    /// (the default). `if-not-present` and `never` use the runner's image store when it
    /// holds the image (`never` still pulls an image the store lacks).
    fn pull_always(&self) -> bool {
        self.job
            .image
            .as_ref()
            .filter(|i| !i.name.is_empty() && !i.pull_policy.is_empty())
            .is_none_or(|i| i.pull_policy.iter().any(|p| p == "always"))
    }

    async fn prepare_and_run(&mut self, started: Instant) -> Result<(), Failure> {
        let log = self.log;
        let job = self.job;
        let env = self.env;
        log.message(&format!(
            "Running with rbuild-runner {} ({}) on {} (system id {}, instance `{}`)",
            env.info.version, env.info.revision, env.hostname, env.system_id, env.instance.name
        ));
        let asked = match job.runner_info.timeout {
            0 => DEFAULT_TIMEOUT,
            t => Duration::from_secs(t),
        };
        let timeout = env
            .instance
            .job_timeout_cap
            .map_or(asked, |cap| asked.min(cap));
        if timeout < asked {
            log.message(&format!(
                "The job's timeout of {} is capped at {} by this runner",
                humantime::format_duration(asked),
                humantime::format_duration(timeout)
            ));
        }
        let deadline = started + timeout;

        // Prepare.
        log.section_start(
            "prepare_executor",
            &format!("Preparing the \"{}\" executor", env.executor.kind().name()),
            false,
        );
        let image = self.image();
        match (env.executor.kind(), &image) {
            (ExecutorKind::Rbuild, Some((name, platform))) => {
                log.message(&format!(
                    "Using rbuild run with image {name}{}, network {}{}",
                    platform
                        .as_deref()
                        .map(|p| format!(" for {p}"))
                        .unwrap_or_default(),
                    env.executor.config.network.name(),
                    if self.pull_always() {
                        ", pull policy always"
                    } else {
                        ", pull policy if-not-present"
                    }
                ));
                if env.executor.nested_is_dynamic {
                    log.warning(&format!(
                        "the `rbuild` mounted at `{}` (`{}`) is dynamically linked: nested `rbuild` runs only in images with a compatible C library; set `nested_rbuild` in `[executor]` to a statically linked build",
                        executor::NESTED_RBUILD_INSIDE,
                        env.executor.config.nested_rbuild.display()
                    ));
                }
            }
            (ExecutorKind::Rbuild, None) => {
                log.section_end("prepare_executor");
                return Err(Failure::System(
                    "the job names no `image:` and this runner has no `default_image`".to_owned(),
                ));
            }
            (ExecutorKind::UnsandboxedTestShell, _) => log.warning(&format!(
                "this runner uses the `unsandboxed-test-shell` executor: the job runs directly on the host as the runner's user, with no sandbox{}; it exists only for rbuild's own tests",
                image.as_ref().map(|(n, _)| format!(" (the image `{n}` is not used)")).unwrap_or_default()
            )),
        }
        if !job.services.is_empty() {
            let names: Vec<String> = job
                .services
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect();
            log.warning(&format!(
                "`services:` are not supported by rbuild-runner; this job runs without {}",
                names.join(", ")
            ));
        }
        if let Some(user) = job
            .image
            .as_ref()
            .map(|i| i.executor_opts.docker.user.as_str())
            .filter(|u| !u.is_empty())
        {
            log.warning(&format!(
                "`image: docker: user: {user}` is not supported by rbuild-runner; the script runs as the image's default user"
            ));
        }
        if !job.cache.is_empty() {
            log.warning("`cache:` is not supported by rbuild-runner and is ignored; rbuild's layer cache persists in `$XDG_CACHE_HOME` between jobs of this project");
        }
        if job
            .secrets
            .as_ref()
            .is_some_and(|s| !s.is_null() && s.as_object().is_none_or(|o| !o.is_empty()))
        {
            log.warning("`secrets:` (external secret providers) are not supported by rbuild-runner; those variables are not set");
        }
        if !self.vars.skipped.is_empty() {
            log.warning(&format!(
                "variables {} are not shell names and are left out of the job's environment",
                self.vars
                    .skipped
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(v) = self
            .vars
            .get("GIT_SUBMODULE_STRATEGY")
            .filter(|v| !v.is_empty() && *v != "none")
        {
            log.warning(&format!(
                "`GIT_SUBMODULE_STRATEGY={v}` is not supported yet; submodules are not checked out"
            ));
        }
        let dirs = [
            &self.paths.project,
            &self.paths.files,
            &self.paths.diagnostics,
            &self.layout.cache_host,
        ];
        for d in dirs {
            if let Err(e) = fs_err::create_dir_all(d) {
                log.section_end("prepare_executor");
                return Err(Failure::System(format!(
                    "cannot create the job's directories: {e}"
                )));
            }
        }
        if let Err(e) = crate::state::private_dir(&self.paths.tmp) {
            log.section_end("prepare_executor");
            return Err(Failure::System(format!(
                "cannot make the job's private directory: {e}"
            )));
        }
        log.section_end("prepare_executor");

        // Sources.
        log.section_start("get_sources", "Getting source from Git repository", false);
        let strategy =
            match git::Strategy::parse(self.vars.get("GIT_STRATEGY"), job.allow_git_fetch) {
                Ok(s) => s,
                Err(m) => {
                    log.section_end("get_sources");
                    return Err(Failure::System(m));
                }
            };
        let depth = match self
            .vars
            .get("GIT_DEPTH")
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            Some(d) => d.parse().unwrap_or(job.git_info.depth),
            None => job.git_info.depth,
        };
        let src = git::Source {
            strategy,
            repo_url: job.git_info.repo_url.expose(),
            sha: &job.git_info.sha,
            r#ref: &job.git_info.r#ref,
            ref_type: &job.git_info.ref_type,
            refspecs: &job.git_info.refspecs,
            depth,
            dir: &self.paths.project,
        };
        let got = git::get_sources(
            &src,
            log,
            deadline,
            &mut self.interrupts,
            env.executor.config.kill_grace,
        )
        .await;
        log.section_end("get_sources");
        match got {
            Ok(()) => {}
            Err(git::SourceError::TimedOut) => return Err(Failure::Timeout(timeout)),
            Err(git::SourceError::Interrupted(_)) => {
                return Err(self.interrupted_failure().unwrap_or(Failure::Stopped));
            }
            Err(e) => {
                return Err(Failure::System(format!(
                    "cannot get the sources: {}",
                    trace::error_chain(&e)
                )));
            }
        }

        // Artifacts of the jobs this one depends on.
        if job.dependencies.iter().any(|d| d.artifacts_file.is_some()) {
            log.section_start("download_artifacts", "Downloading artifacts", false);
            let got = self.download_dependencies().await;
            log.section_end("download_artifacts");
            got?;
        }

        // Environment, file variables and credentials.
        log.section_start("prepare_script", "Preparing environment", true);
        let written = self.write_environment();
        log.section_end("prepare_script");
        written?;

        // Steps.
        let mut failure: Option<Failure> = None;
        for step in job.steps.iter().filter(|s| s.name != "after_script") {
            let run = match step.when.as_str() {
                "always" => true,
                "on_failure" => failure.is_some(),
                _ => failure.is_none(),
            };
            if !run || step.script.is_empty() {
                continue;
            }
            if matches!(
                failure,
                Some(Failure::Gone(_) | Failure::Stopped | Failure::Canceled)
            ) {
                break;
            }
            let name = format!("step_{}", step.name.to_ascii_lowercase());
            log.section_start(
                &name,
                &format!("Executing \"{name}\" stage of the job script"),
                false,
            );
            let result = self.run_step(&name, step, deadline, &[]).await;
            log.section_end(&name);
            match result {
                Ok(()) => {}
                Err(Failure::Timeout(_)) => {
                    failure.get_or_insert(Failure::Timeout(timeout));
                }
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Downloads and extracts the artifacts of the jobs this one depends on.
    async fn download_dependencies(&self) -> Result<(), Failure> {
        for dep in self
            .job
            .dependencies
            .iter()
            .filter(|d| d.artifacts_file.is_some())
        {
            self.log.message(&format!(
                "Downloading artifacts for {} ({})...",
                dep.name, dep.id
            ));
            let zip = self.paths.tmp.join(format!("dependency-{}.zip", dep.id));
            let size = self
                .env
                .client
                .download_artifacts(dep.id, &dep.token, &zip)
                .await
                .map_err(|e| {
                    Failure::Dependency(format!(
                        "cannot download the artifacts of `{}` ({}): {}",
                        dep.name,
                        dep.id,
                        trace::error_chain(&e)
                    ))
                })?;
            let project = self.paths.project.clone();
            let zip2 = zip.clone();
            let extracted = tokio::task::spawn_blocking(move || {
                let mut warnings = Vec::new();
                let r = artifacts::extract_zip(&zip2, &project, &mut warnings);
                (r, warnings)
            })
            .await;
            let _ = fs_err::remove_file(&zip);
            let (n, warnings) = match extracted {
                Ok((Ok(n), w)) => (n, w),
                Ok((Err(e), _)) => {
                    return Err(Failure::Dependency(format!(
                        "cannot extract the artifacts of `{}` ({}): {e}",
                        dep.name, dep.id
                    )));
                }
                Err(e) => return Err(Failure::System(format!("cannot extract artifacts: {e}"))),
            };
            for w in warnings {
                self.log.warning(&w);
            }
            self.log.message(&format!(
                "Downloaded artifacts for {} ({n} entries, {size} bytes)",
                dep.name
            ));
        }
        Ok(())
    }

    /// Writes the environment file, file-type variables and registry credentials.
    fn write_environment(&self) -> Result<(), Failure> {
        let fail =
            |e: std::io::Error| Failure::System(format!("cannot write the job's environment: {e}"));
        let write = |path: &Path, text: &[u8]| -> std::io::Result<()> {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("`{}`: {e}", path.display())))?;
            f.write_all(text)
        };
        for f in &self.vars.files {
            write(&f.host_path, f.content.as_bytes()).map_err(fail)?;
        }
        write(
            &self.paths.tmp.join("env.sh"),
            script::env_file(&self.vars.list).as_bytes(),
        )
        .map_err(fail)?;
        let registries: Vec<_> = self
            .job
            .credentials
            .iter()
            .filter(|c| c.r#type == "registry" && !c.url.is_empty())
            .collect();
        if self.env.executor.kind() == ExecutorKind::Rbuild && !registries.is_empty() {
            let mut auths = serde_json::Map::new();
            for c in registries {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    c.username,
                    c.password.expose()
                ));
                auths.insert(c.url.clone(), serde_json::json!({ "auth": auth }));
            }
            crate::state::private_dir(&self.paths.docker).map_err(fail)?;
            let config = serde_json::json!({ "auths": auths });
            write(
                &self.paths.docker.join("config.json"),
                config.to_string().as_bytes(),
            )
            .map_err(fail)?;
        }
        self.log.message(&format!(
            "Running on {} with {} variables",
            self.env.hostname,
            self.vars.list.len()
        ));
        Ok(())
    }

    /// Runs one step script; `Ok` when it exited 0.
    async fn run_step(
        &mut self,
        name: &str,
        step: &Step,
        deadline: Instant,
        extra: &[(String, String)],
    ) -> Result<(), Failure> {
        let host = |f: String| self.paths.tmp.join(f);
        let script_path = host(format!("{name}.sh"));
        let started = host(format!("{name}.started"));
        let status = host(format!("{name}.status"));
        // In the job's diagnostics directory: what `rbuild run` reports (an image pull
        // failure, processes the script left running) joins the Code Quality report.
        let start_diagnostics = self
            .paths
            .diagnostics
            .join(format!("rbuild-run-{name}.json"));
        let _ = fs_err::remove_file(&started);
        let _ = fs_err::remove_file(&status);
        let _ = fs_err::remove_file(&start_diagnostics);
        let inside = |p: &Path| self.layout.inside(p);
        let text = script::render(&script::StepScript {
            env_file: &inside(&self.paths.tmp.join("env.sh")),
            workdir: &inside(&self.paths.project),
            started_marker: &inside(&started),
            status_file: &inside(&status),
            extra,
            commands: &step.script,
        });
        if let Err(e) = fs_err::write(&script_path, text) {
            return Err(Failure::System(format!(
                "cannot write the step script: {e}"
            )));
        }
        let (image, platform) = self.image().unwrap_or_default();
        let mut env: Vec<(String, OsString)> = vec![(
            envvars::RBUILD_DIAGNOSTICS_DIR.to_owned(),
            self.paths.diagnostics.clone().into_os_string(),
        )];
        if self.paths.docker.join("config.json").is_file() {
            env.push((
                envvars::DOCKER_CONFIG.to_owned(),
                self.paths.docker.clone().into_os_string(),
            ));
        }
        let spec = StepSpec {
            image: &image,
            platform: platform.as_deref(),
            script: &script_path,
            env,
            pull: self.pull_always(),
            diagnostics: &start_diagnostics,
        };
        let executor = &self.env.executor;
        let cmd = executor.command(&self.layout, &spec);
        let state = &self.env.state;
        let record = &mut *self.record;
        let end = executor::run_step(
            cmd,
            self.log,
            deadline,
            &mut self.interrupts,
            executor.config.kill_grace,
            |pgid| {
                record.pgid = Some(pgid);
                record.pgid_start = process_start_time(pgid);
                if let Err(e) = state.save(record) {
                    tracing::warn!(error = %e, "cannot record the step's process group");
                }
            },
        )
        .await;
        let end = match end {
            Ok(end) => end,
            Err(e) => {
                let what = match executor.kind() {
                    ExecutorKind::Rbuild => {
                        format!("cannot start `{}`", executor.config.rbuild.display())
                    }
                    ExecutorKind::UnsandboxedTestShell => "cannot start `sh`".to_owned(),
                };
                return Err(Failure::System(format!("{what}: {e}")));
            }
        };
        match end {
            StepEnd::Exited(exit) => {
                let recorded = fs_err::read_to_string(&status)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                match (recorded, started.exists()) {
                    (Some(0), _) => Ok(()),
                    (Some(code), _) => Err(Failure::Script { code }),
                    (None, true) => match exit.code() {
                        Some(0) => Ok(()),
                        Some(code) => Err(Failure::Script { code }),
                        None => Err(Failure::System(format!("the step was killed ({exit})"))),
                    },
                    (None, false) => Err(self.not_started(exit, &start_diagnostics)),
                }
            }
            StepEnd::TimedOut => Err(Failure::Timeout(Duration::ZERO)),
            StepEnd::Interrupted(_) => Err(self.interrupted_failure().unwrap_or(Failure::Stopped)),
        }
    }

    /// Classifies an executor that ended before the script started.
    fn not_started(&self, exit: std::process::ExitStatus, diagnostics: &Path) -> Failure {
        let image = self.image().map(|(n, _)| n).unwrap_or_default();
        let pulled = fs_err::read_to_string(diagnostics)
            .ok()
            .and_then(|j| pull_cause(&j));
        not_started(
            self.env.executor.kind(),
            exit.code(),
            &exit.to_string(),
            &image,
            pulled,
        )
    }

    async fn after_script(&mut self, step: &Step, status: &str) {
        let log = self.log;
        log.section_start("after_script", "Running after_script", false);
        let timeout = if step.timeout > 0 {
            Duration::from_secs(step.timeout)
        } else {
            DEFAULT_AFTER_SCRIPT_TIMEOUT
        };
        // A graceful cancel stopped the script, but after_script must still run: it sees
        // only aborts.
        let (tx, rx) = watch::channel(None);
        let mut source = self.interrupts.clone();
        let forward = tokio::spawn(async move {
            loop {
                if *source.borrow_and_update() == Some(Interrupt::Abort) {
                    let _ = tx.send(Some(Interrupt::Abort));
                    return;
                }
                if source.changed().await.is_err() {
                    return;
                }
            }
        });
        let old = std::mem::replace(&mut self.interrupts, rx);
        let deadline = Instant::now() + timeout;
        let r = self
            .run_step(
                "after_script",
                step,
                deadline,
                &[("CI_JOB_STATUS".to_owned(), status.to_owned())],
            )
            .await;
        forward.abort();
        self.interrupts = old;
        self.after_script_result(r, timeout);
        log.section_end("after_script");
    }

    fn after_script_result(&self, r: Result<(), Failure>, timeout: Duration) {
        match r {
            Ok(()) => {}
            Err(Failure::Script { code }) => self.log.warning(&format!(
                "after_script failed with exit code {code}; that does not change the job's result"
            )),
            Err(Failure::Timeout(_)) => self.log.warning(&format!(
                "after_script timed out after {}",
                humantime::format_duration(timeout)
            )),
            Err(f) => self
                .log
                .warning(&format!("after_script did not complete: {}", f.log_line())),
        }
    }

    /// Uploads artifacts and reports; a failed upload of the job's archive fails the job.
    async fn upload(&self, succeeded: bool) -> Result<(), Failure> {
        let log = self.log;
        let mut problems = Vec::new();
        let findings = codequality::collect(
            &self.paths.diagnostics,
            &self.layout.inside(&self.paths.project),
            &mut problems,
        );
        for p in problems {
            log.warning(&format!("diagnostics: {p}"));
        }
        if self.job.artifacts.is_empty() && findings.is_empty() {
            return Ok(());
        }
        let section = if succeeded {
            "upload_artifacts_on_success"
        } else {
            "upload_artifacts_on_failure"
        };
        log.section_start(
            section,
            &format!(
                "Uploading artifacts for {} job",
                if succeeded { "successful" } else { "failed" }
            ),
            false,
        );
        let project = self.paths.project.clone();
        let work = self.paths.tmp.clone();
        let entries = self.job.artifacts.clone();
        let f2 = findings.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let mut warnings = Vec::new();
            let r = artifacts::prepare(&project, &work, &entries, succeeded, &f2, &mut warnings);
            (r, warnings)
        })
        .await;
        let (uploads, warnings) = match prepared {
            Ok((Ok(u), w)) => (u, w),
            Ok((Err(e), _)) => {
                log.section_end(section);
                return Err(Failure::System(format!("cannot pack the artifacts: {e}")));
            }
            Err(e) => {
                log.section_end(section);
                return Err(Failure::System(format!("cannot pack the artifacts: {e}")));
            }
        };
        for w in warnings {
            log.warning(&w);
        }
        if !findings.is_empty() {
            log.message(&format!(
                "{} rbuild diagnostic(s) go to the Code Quality report",
                findings.len()
            ));
        }
        let mut result = Ok(());
        for u in uploads {
            log.message(&format!(
                "Uploading {} ({}, {}) ...",
                u.filename, u.artifact_type, u.artifact_format
            ));
            match self
                .env
                .client
                .upload_artifact(
                    self.job.id,
                    &self.job.token,
                    &u.file,
                    &u.filename,
                    &u.artifact_type,
                    &u.artifact_format,
                    &u.expire_in,
                )
                .await
            {
                Ok(()) => log.message(&format!("Uploaded {} ({} file(s))", u.filename, u.files)),
                Err(e) => {
                    let msg = trace::error_chain(&e);
                    if u.artifact_type == "archive" {
                        log.error(&format!("cannot upload the artifacts: {msg}"));
                        result = Err(Failure::System(format!(
                            "cannot upload the artifacts: {msg}"
                        )));
                    } else {
                        log.warning(&format!(
                            "cannot upload the {} report: {msg}",
                            u.artifact_type
                        ));
                    }
                }
            }
        }
        log.section_end(section);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_gitlab_reasons() {
        assert_eq!(Failure::Script { code: 2 }.reason(), Some("script_failure"));
        assert_eq!(
            Failure::Timeout(Duration::from_secs(1)).reason(),
            Some("job_execution_timeout")
        );
        assert_eq!(
            Failure::ImagePull(String::new()).reason(),
            Some("image_pull_failure")
        );
        assert_eq!(
            Failure::System(String::new()).reason(),
            Some("runner_system_failure")
        );
        assert_eq!(Failure::Stopped.reason(), Some("runner_system_failure"));
        assert_eq!(Failure::Canceled.reason(), None);
        assert_eq!(
            Failure::Timeout(Duration::from_secs(90)).log_line(),
            "Job failed: execution took longer than 1m 30s"
        );
    }

    #[test]
    fn an_executor_that_fails_before_the_script_is_classified_by_its_exit_code() {
        let pull = not_started(
            ExecutorKind::Rbuild,
            Some(4),
            "exit status: 4",
            "reg/img:1",
            None,
        );
        assert_eq!(pull.reason(), Some("image_pull_failure"));
        assert!(pull.log_line().contains("`reg/img:1`"));
        let host = not_started(ExecutorKind::Rbuild, Some(3), "exit status: 3", "i", None);
        assert_eq!(host.reason(), Some("runner_system_failure"));
        assert!(host.log_line().contains("sandbox"));
        assert_eq!(
            not_started(ExecutorKind::Rbuild, Some(101), "", "i", None).reason(),
            Some("runner_system_failure")
        );
        assert_eq!(
            not_started(ExecutorKind::UnsandboxedTestShell, Some(4), "", "i", None).reason(),
            Some("runner_system_failure")
        );
        // A missing platform is an input error (exit 1) to rbuild, an image pull failure to
        // GitLab: the diagnostics file tells it from other failures with exit code 1.
        let json = r#"[{"id":"run-failed","severity":"warning","message":"m"},
            {"id":"base-image-missing-platform","severity":"error","message":"no linux/riscv64"}]"#;
        let pulled = pull_cause(json);
        assert_eq!(
            pulled.as_ref().map(|(id, _)| id.as_str()),
            Some("base-image-missing-platform")
        );
        let missing = not_started(ExecutorKind::Rbuild, Some(1), "exit status: 1", "i", pulled);
        assert_eq!(missing.reason(), Some("image_pull_failure"));
        assert!(missing.log_line().contains("no linux/riscv64"));
        assert_eq!(
            pull_cause(r#"[{"id":"run-failed","severity":"error"}]"#),
            None
        );
        assert_eq!(pull_cause("not json"), None);
        assert_eq!(
            not_started(ExecutorKind::Rbuild, Some(1), "", "i", None).reason(),
            Some("runner_system_failure")
        );
        // Where GitLab does not list `image_pull_failure`, the documented fallback is sent.
        let old: Vec<String> = vec!["script_failure".into(), "runner_system_failure".into()];
        assert_eq!(
            failure_reason(pull.reason().unwrap(), &old),
            Some("runner_system_failure")
        );
    }

    #[test]
    fn project_paths_cannot_escape() {
        let mut job = Job::default();
        job.job_info.project_full_path = "../../etc/group/proj".into();
        assert_eq!(project_path(&job), PathBuf::from("etc/group/proj"));
        job.job_info.project_full_path = String::new();
        job.job_info.project_id = 9;
        assert_eq!(project_path(&job), PathBuf::from("project-9"));
        assert_eq!(normalise_platform("arm64").as_deref(), Some("linux/arm64"));
        assert_eq!(
            normalise_platform("linux/arm/v7").as_deref(),
            Some("linux/arm/v7")
        );
        assert_eq!(normalise_platform(""), None);
    }
}

//! Fleet mode for GitHub Actions: one `[[github]]` instance is a webhook listener, a
//! bounded queue and a launcher of official Actions runners, each in its own sandbox.
//!
//! ```text
//! POST /webhook ─ signature ─ delivery id ─ workflow_job ─┬ queued + our labels ─> queue (bounded)
//!                 (401)        (repeat: 200)              ├ in_progress: our runner took a job
//!                                                         └ completed: our runner's job ended
//! queue ─> slot (instance + global) ─> installation token ─> generate-jitconfig
//!       ─> rbuild run ... RUNNER_IMAGE -- run.sh   (ACTIONS_RUNNER_INPUT_JITCONFIG in its env)
//!       ─> ends when the runner exits, `completed_grace` after its job's `completed` event,
//!          after `idle_timeout` without taking a job, after `job_timeout`, or on abort
//! ```
//!
//! A queued event is demand for one runner, not a binding: GitHub gives the job to any idle
//! runner with matching labels, so the runner started for it may take another job. A
//! runner that stopped without having taken a job is removed from GitHub (`DELETE
//! .../runners/{id}`), so no offline registrations pile up.
//!
//! The JIT configuration is a credential until the runner has used it: it goes to the
//! runner through the environment of `rbuild run` (readable only by the daemon's user),
//! never through a command line (readable by every user of the host), and is masked in
//! the runner's output before it reaches the daemon's log.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::metrics::{DurationLabels, FinishedLabels, InstanceLabels, WebhookLabels};
use super::{InstanceState, Phase, Reserve, Shared, draining};
use crate::config::github::{GithubInstance, RUNNER_DIR_INSIDE};
use crate::config::{ExecutorConfig, Secret};
use crate::envvars;
use crate::executor::kill_group;
use crate::forge::github::auth::AppKey;
use crate::forge::github::client::{self, ApiError, AppClient, Scope};
use crate::forge::github::webhook::{self, Deliveries, WorkflowJobEvent};

/// Longest line of runner output kept in the daemon's log.
const MAX_LINE: usize = 4096;

/// One queued job that asks for a runner.
#[derive(Debug)]
struct Demand {
    job_id: u64,
    delivery: String,
    repository: String,
    installation: Option<u64>,
}

/// What the listener knows about a runner it started.
#[derive(Debug, Default)]
struct RunnerWatch {
    /// Notified when an `in_progress` event names the runner.
    busy: Notify,
    /// Notified when a `completed` event names the runner.
    completed: Notify,
    took_job: std::sync::atomic::AtomicBool,
    job_completed: std::sync::atomic::AtomicBool,
}

/// State of one instance's webhook listener.
#[derive(Debug)]
struct Listener {
    inst: Arc<GithubInstance>,
    shared: Arc<Shared>,
    deliveries: Mutex<Deliveries>,
    queue: mpsc::Sender<Demand>,
    runners: Mutex<HashMap<String, Arc<RunnerWatch>>>,
}

/// Everything a fleet needs from the daemon.
#[derive(Debug)]
pub struct Fleet {
    pub(super) inst: Arc<GithubInstance>,
    pub(super) shared: Arc<Shared>,
    pub(super) global: Arc<Semaphore>,
    pub(super) executor: ExecutorConfig,
    /// `state_dir/github/<instance>`: one private directory per runner.
    pub(super) work_dir: PathBuf,
    /// `rbuild run --cache-dir` of the runner sandboxes.
    pub(super) cache_dir: PathBuf,
    pub(super) hostname: String,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) abort: watch::Receiver<bool>,
}

/// Binds the webhook address (a taken port is a startup error).
pub async fn bind(inst: &GithubInstance) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(inst.webhook_listen).await
}

impl Fleet {
    /// Serves the webhook and launches runners until the daemon stops.
    pub async fn run(self, listener: tokio::net::TcpListener) {
        let inst = self.inst.clone();
        let app = match AppKey::from_pem(inst.app_id.clone(), inst.private_key.expose()) {
            Ok(k) => Arc::new(AppClient::new(&inst.api_url, k)),
            Err(e) => {
                // Validation parsed the key already; this cannot happen with a valid config.
                tracing::error!(error = %e, "the GitHub App key cannot be used; this fleet takes no jobs");
                self.shared.set_state(&inst.name, InstanceState::Rejected);
                return;
            }
        };
        let (tx, mut rx) = mpsc::channel::<Demand>(inst.max_pending.max(1));
        let state = Arc::new(Listener {
            inst: inst.clone(),
            shared: self.shared.clone(),
            deliveries: Mutex::new(Deliveries::default()),
            queue: tx,
            runners: Mutex::new(HashMap::new()),
        });
        let router = Router::new()
            .route("/webhook", post(deliver))
            .layer(DefaultBodyLimit::max(webhook::MAX_BODY))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the webhook listener stopped");
            }
        });
        self.shared.set_state(&inst.name, InstanceState::Listening);
        tracing::info!(addr = %inst.webhook_listen, labels = ?inst.labels, "listening for workflow_job webhooks on /webhook");

        let local = Arc::new(Semaphore::new(inst.concurrency));
        let this = Arc::new(self);
        let mut phase = this.phase.clone();
        loop {
            let demand = tokio::select! {
                () = draining(&mut phase) => break,
                d = rx.recv() => match d { Some(d) => d, None => break },
            };
            this.shared
                .metrics
                .pending
                .get_or_create(&InstanceLabels {
                    instance: inst.name.clone(),
                })
                .dec();
            let permits = tokio::select! {
                () = draining(&mut phase) => break,
                p = super::acquire(&local, &this.global) => p,
            };
            loop {
                match this.shared.reserve() {
                    Reserve::Go => break,
                    Reserve::Done => {
                        tracing::info!(
                            job_id = demand.job_id,
                            "not starting a runner: --max-jobs reached"
                        );
                        drop(permits);
                        server.abort();
                        return;
                    }
                    Reserve::Wait => {
                        let settled = this.shared.changed.notified();
                        tokio::select! {
                            () = settled => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
            let span = tracing::info_span!(
                "runner",
                forge = "github",
                instance = %inst.name,
                job_id = demand.job_id,
                project = %demand.repository,
                runner = tracing::field::Empty,
            );
            let (this2, app2, state2) = (this.clone(), app.clone(), state.clone());
            tokio::spawn(
                async move {
                    this2.launch(&app2, &state2, demand, permits).await;
                }
                .instrument(span),
            );
        }
        let left = rx.len();
        if left > 0 {
            tracing::info!(
                pending = left,
                "draining: queued jobs get no runner from this daemon"
            );
        }
        // The listener keeps answering (queued events with 503) while runners finish; the
        // daemon ends this task once they have.
        std::future::pending::<()>().await;
    }

    async fn launch(
        &self,
        app: &AppClient,
        listener: &Listener,
        demand: Demand,
        permits: (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
    ) {
        let inst = &self.inst;
        let Some(installation) = inst.installation_id.or(demand.installation) else {
            tracing::error!(delivery = %demand.delivery, "the event names no App installation and `installation_id` is not set; deliver the webhook from the GitHub App, or set it");
            self.shared.settle(false);
            return;
        };
        let scope = if let Some(org) = &inst.org {
            Scope::Org(org.clone())
        } else {
            let Some((o, r)) = demand.repository.split_once('/') else {
                self.shared.settle(false);
                return;
            };
            Scope::Repo {
                owner: o.to_owned(),
                repo: r.to_owned(),
            }
        };
        let name = runner_name(&self.hostname, demand.job_id);
        tracing::Span::current().record("runner", name.as_str());
        let t0 = Instant::now();
        let jit = match self.jit(app, installation, &scope, &name).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, %scope, "cannot get a just-in-time runner configuration; no runner for this job");
                self.count_launch("jit_failed");
                self.shared.settle(false);
                return;
            }
        };
        self.shared.settle(true);
        self.count_launch("started");
        let watch = Arc::new(RunnerWatch::default());
        lock(&listener.runners).insert(jit.runner_name.clone(), watch.clone());
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        let running = self
            .shared
            .metrics
            .running
            .get_or_create(&InstanceLabels {
                instance: inst.name.clone(),
            })
            .clone();
        running.inc();
        tracing::info!(runner_id = jit.runner_id, %scope, "starting the Actions runner in a sandbox");

        let end = self.run_sandbox(&jit, &watch).await;
        let took_job = watch.took_job.load(Ordering::SeqCst);
        tracing::info!(end = end.name(), took_job, duration = ?t0.elapsed(), "runner finished");
        if !took_job {
            // It never ran a job: remove its registration (a runner that ran one has
            // removed itself).
            match app.installation(installation).await {
                Ok(crab) => match client::delete_runner(&crab, &scope, jit.runner_id).await {
                    Ok(()) | Err(ApiError::Status { status: 404, .. }) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot remove the unused runner from GitHub");
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot remove the unused runner from GitHub"),
            }
        }
        lock(&listener.runners).remove(&jit.runner_name);
        let m = &self.shared.metrics;
        running.dec();
        m.finished
            .get_or_create(&FinishedLabels {
                instance: inst.name.clone(),
                state: end.name().to_owned(),
                failure_reason: String::new(),
            })
            .inc();
        m.durations
            .get_or_create(&DurationLabels {
                instance: inst.name.clone(),
                state: end.name().to_owned(),
            })
            .observe(t0.elapsed().as_secs_f64());
        drop(permits);
        self.shared.running.fetch_sub(1, Ordering::SeqCst);
        self.shared.finished.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }

    fn count_launch(&self, outcome: &str) {
        self.shared
            .metrics
            .launches
            .get_or_create(&WebhookLabels {
                instance: self.inst.name.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An installation client (a refused cached token is dropped and asked for once more)
    /// and the JIT configuration.
    async fn jit(
        &self,
        app: &AppClient,
        installation: u64,
        scope: &Scope,
        name: &str,
    ) -> Result<client::JitConfig, ApiError> {
        for attempt in 0..2 {
            let crab = app.installation(installation).await?;
            match client::generate_jitconfig(
                &crab,
                scope,
                name,
                self.inst.runner_group_id,
                &self.inst.labels,
            )
            .await
            {
                Err(ApiError::Status { status: 401, .. }) if attempt == 0 => {
                    app.forget(installation);
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The `rbuild run` command line (without the JIT configuration, which goes in the
    /// environment).
    fn argv(&self, runner_dir: Option<&std::path::Path>) -> Vec<OsString> {
        let inst = &self.inst;
        let mut argv: Vec<OsString> = vec![
            self.executor.rbuild.clone().into(),
            "run".into(),
            "--network".into(),
            self.executor.network.name().into(),
            "--timeout".into(),
            format!("{}s", inst.job_timeout.as_secs()).into(),
            "--cache-dir".into(),
            self.cache_dir.clone().into(),
        ];
        if let Some(p) = &inst.platform {
            argv.extend(["--platform".into(), p.into()]);
        }
        if let Some(d) = runner_dir {
            let mut v = d.as_os_str().to_owned();
            v.push(format!(":{RUNNER_DIR_INSIDE}"));
            argv.extend(["--volume".into(), v]);
        }
        for v in &inst.volumes {
            argv.extend(["--volume".into(), v.into()]);
        }
        for e in &inst.env {
            argv.extend(["--env".into(), e.into()]);
        }
        argv.extend([
            "--env".into(),
            envvars::ACTIONS_RUNNER_INPUT_JITCONFIG.into(),
            inst.runner_image.clone().into(),
            "--".into(),
            inst.runner_command.clone().into(),
        ]);
        argv
    }

    async fn run_sandbox(&self, jit: &client::JitConfig, watch: &RunnerWatch) -> End {
        let dir = self.work_dir.join(&jit.runner_name);
        if let Err(e) = crate::state::private_dir(&dir) {
            tracing::error!(error = %e, "cannot create the runner's directory");
            return End::Failed;
        }
        let runner_copy = match &self.inst.runner_dir {
            Some(src) => {
                let dest = dir.join("runner");
                let ok = tokio::process::Command::new("cp")
                    .arg("-a")
                    .arg("--reflink=auto")
                    .arg(src)
                    .arg(&dest)
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if !ok {
                    tracing::error!(src = %src.display(), "cannot copy the runner directory");
                    let _ = fs_err::remove_dir_all(&dir);
                    return End::Failed;
                }
                Some(dest)
            }
            None => None,
        };
        let argv = self.argv(runner_copy.as_deref());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        crate::executor::scrub(&mut cmd);
        cmd.args(&argv[1..])
            .env(
                envvars::ACTIONS_RUNNER_INPUT_JITCONFIG,
                jit.encoded.expose(),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let end = match cmd.spawn() {
            Ok(child) => self.supervise(child, &jit.encoded, watch).await,
            Err(e) => {
                tracing::error!(rbuild = %self.executor.rbuild.display(), error = %e, "cannot start `rbuild run`");
                End::Failed
            }
        };
        if let Err(e) = fs_err::remove_dir_all(&dir) {
            tracing::warn!(error = %e, "cannot remove the runner's directory");
        }
        end
    }

    async fn supervise(
        &self,
        mut child: tokio::process::Child,
        secret: &Secret,
        watch: &RunnerWatch,
    ) -> End {
        let pgid = child.id().unwrap_or_default();
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        .map(|r| {
            let secret = secret.clone();
            tokio::spawn(
                async move {
                    let mut lines = tokio::io::BufReader::new(r).lines();
                    while let Ok(Some(mut line)) = lines.next_line().await {
                        if !secret.expose().is_empty() {
                            line = line.replace(secret.expose(), "[MASKED]");
                        }
                        if line.len() > MAX_LINE {
                            let mut end = MAX_LINE;
                            while !line.is_char_boundary(end) {
                                end -= 1;
                            }
                            line.truncate(end);
                        }
                        tracing::info!(target: "rbuild_runner::runner_output", "{line}");
                    }
                }
                .in_current_span(),
            )
        })
        .collect();

        let start = Instant::now();
        let deadline = start + self.inst.job_timeout;
        let idle_deadline = start + self.inst.idle_timeout;
        let mut abort = self.abort.clone();
        let stop_reason = loop {
            // Register for the notifications before reading the flags they guard, so an
            // event between the two is not missed.
            let busy = watch.busy.notified();
            let completed = watch.completed.notified();
            tokio::pin!(busy, completed);
            busy.as_mut().enable();
            completed.as_mut().enable();
            let took = watch.took_job.load(Ordering::SeqCst);
            if watch.job_completed.load(Ordering::SeqCst) {
                // Give the runner time to upload its logs and exit on its own.
                tokio::select! {
                    s = child.wait() => break exited(s),
                    () = tokio::time::sleep(self.inst.completed_grace) => break End::Completed,
                    () = aborted(&mut abort) => break End::Aborted,
                }
            }
            tokio::select! {
                s = child.wait() => break exited(s),
                () = busy => {}
                () = completed => {}
                () = tokio::time::sleep_until(idle_deadline), if !took => break End::Idle,
                () = tokio::time::sleep_until(deadline) => break End::TimedOut,
                () = aborted(&mut abort) => break End::Aborted,
            }
        };
        match stop_reason {
            End::Exited | End::Failed => {}
            End::Aborted => {
                kill_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait().await;
            }
            End::Completed | End::Idle | End::TimedOut => {
                tracing::info!(reason = stop_reason.name(), "stopping the runner");
                kill_group(pgid, rustix::process::Signal::TERM);
                if tokio::time::timeout(self.executor.kill_grace, child.wait())
                    .await
                    .is_err()
                {
                    kill_group(pgid, rustix::process::Signal::KILL);
                    let _ = child.wait().await;
                }
            }
        }
        // Nothing of the sandbox outlives it: whatever is left in the group goes too.
        kill_group(pgid, rustix::process::Signal::KILL);
        for r in readers {
            let abort = r.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), r)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        stop_reason
    }
}

async fn aborted(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn exited(s: std::io::Result<std::process::ExitStatus>) -> End {
    match s {
        Ok(s) if s.success() => End::Exited,
        Ok(s) => {
            tracing::warn!(status = %s, "the runner sandbox exited with a failure");
            End::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot wait for the runner sandbox");
            End::Failed
        }
    }
}

/// How a runner sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The runner exited 0 (after its one job, normally).
    Exited,
    /// `rbuild run` or the runner failed.
    Failed,
    /// Stopped `completed_grace` after its job completed.
    Completed,
    /// Stopped: it took no job within `idle_timeout`.
    Idle,
    /// Stopped at `job_timeout`.
    TimedOut,
    /// Killed when the daemon gave up draining.
    Aborted,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Exited => "exited",
            End::Failed => "failed",
            End::Completed => "completed",
            End::Idle => "idle",
            End::TimedOut => "timed_out",
            End::Aborted => "aborted",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `rbuild-<host>-<job id>-<random>`, at most 64 characters (GitHub's limit).
fn runner_name(hostname: &str, job_id: u64) -> String {
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let mut name = format!("rbuild-{host}-{job_id}-{:04x}", fastrand::u16(..));
    name.truncate(64);
    name
}

/// `POST /webhook`.
async fn deliver(
    State(l): State<Arc<Listener>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let delivery = header("x-github-delivery").unwrap_or_default().to_owned();
    let event = header("x-github-event").unwrap_or_default().to_owned();
    let count = |outcome: &str| {
        l.shared
            .metrics
            .webhooks
            .get_or_create(&WebhookLabels {
                instance: l.inst.name.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
    };
    if !webhook::verify_signature(
        l.inst.webhook_secret.expose().as_bytes(),
        &body,
        header("x-hub-signature-256"),
    ) {
        // Never the body: it is unauthenticated input.
        tracing::warn!(%delivery, %event, bytes = body.len(), "webhook delivery rejected: bad or missing X-Hub-Signature-256");
        count("bad_signature");
        return (StatusCode::UNAUTHORIZED, "bad signature\n".to_owned());
    }
    if delivery.is_empty() {
        count("no_delivery_id");
        return (StatusCode::BAD_REQUEST, "no X-GitHub-Delivery\n".to_owned());
    }
    if !lock(&l.deliveries).first_time(&delivery) {
        tracing::info!(%delivery, %event, "duplicate webhook delivery ignored");
        count("duplicate");
        return (StatusCode::OK, "duplicate delivery\n".to_owned());
    }
    match event.as_str() {
        "ping" => {
            count("ping");
            return (StatusCode::OK, "pong\n".to_owned());
        }
        "workflow_job" => {}
        _ => {
            count("ignored");
            return (
                StatusCode::ACCEPTED,
                format!("event `{event}` is not used\n"),
            );
        }
    }
    let ev: WorkflowJobEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%delivery, error = %e, "a signed workflow_job delivery is not the documented payload");
            count("bad_payload");
            return (
                StatusCode::BAD_REQUEST,
                "not a workflow_job payload\n".to_owned(),
            );
        }
    };
    let job = &ev.workflow_job;
    match ev.action.as_str() {
        "queued" if webhook::labels_match(&job.labels, &l.inst.labels) => {
            if l.shared.draining.load(Ordering::SeqCst) {
                count("draining");
                return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned());
            }
            let demand = Demand {
                job_id: job.id,
                delivery: delivery.clone(),
                repository: ev.repository.full_name.clone(),
                installation: ev.installation.as_ref().map(|i| i.id),
            };
            if l.queue.try_send(demand).is_ok() {
                {
                    l.shared
                        .metrics
                        .pending
                        .get_or_create(&InstanceLabels {
                            instance: l.inst.name.clone(),
                        })
                        .inc();
                    tracing::info!(%delivery, job_id = job.id, repository = %ev.repository.full_name, labels = ?job.labels, "queued job: starting a runner");
                    count("queued");
                    (
                        StatusCode::ACCEPTED,
                        "a runner will be started\n".to_owned(),
                    )
                }
            } else {
                {
                    tracing::warn!(%delivery, job_id = job.id, max_pending = l.inst.max_pending, "queue full: no runner for this job (redeliver it from the App's advanced settings)");
                    count("queue_full");
                    (StatusCode::SERVICE_UNAVAILABLE, "queue full\n".to_owned())
                }
            }
        }
        "queued" => {
            tracing::debug!(%delivery, job_id = job.id, labels = ?job.labels, "queued job is not for this fleet");
            count("not_ours");
            (
                StatusCode::ACCEPTED,
                "labels do not match this fleet\n".to_owned(),
            )
        }
        action @ ("in_progress" | "completed") => {
            let watch = job
                .runner_name
                .as_deref()
                .and_then(|n| lock(&l.runners).get(n).cloned());
            if let Some(w) = watch {
                if action == "in_progress" {
                    w.took_job.store(true, Ordering::SeqCst);
                    w.busy.notify_waiters();
                } else {
                    w.took_job.store(true, Ordering::SeqCst);
                    w.job_completed.store(true, Ordering::SeqCst);
                    w.completed.notify_waiters();
                }
                tracing::info!(%delivery, job_id = job.id, runner = ?job.runner_name, action, "our runner's job");
                count(action);
            } else {
                count("not_ours");
            }
            (StatusCode::ACCEPTED, "noted\n".to_owned())
        }
        _ => {
            count("ignored");
            (StatusCode::ACCEPTED, "ignored\n".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_names_are_unique_and_short() {
        let a = runner_name("build host.example.com-with-a-very-long-name", 289_782_451);
        let b = runner_name("build host.example.com-with-a-very-long-name", 289_782_451);
        assert!(a.len() <= 64 && a.starts_with("rbuild-build-host-example-com"));
        assert!(a.contains("-289782451-"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        // Random suffixes: two names for one job rarely collide.
        let _ = b;
    }
}

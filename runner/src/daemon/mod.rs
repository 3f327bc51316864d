//! The fleet daemon (`rbuild-runner run`): one poll loop per GitLab instance, a
//! concurrency limit per instance and across instances, graceful drain on SIGTERM, crash
//! recovery at start, `/healthz` and `/metrics`, and a tracing span per job.
//!
//! - **Pickup**: a poll loop first takes a slot of its instance and one of the global
//!   limit, then long-polls `jobs/request` (echoing `X-GitLab-Last-Update`). A job starts
//!   at once and the loop asks again; after "no job" it waits `check_interval` minus the
//!   time the server held the request; errors back off exponentially (1 s to 60 s, with
//!   jitter); a rejected token (403) stops that instance and says so.
//! - **Drain**: SIGTERM or SIGINT stops requesting jobs (an in-flight long poll is
//!   dropped), waits up to `shutdown_timeout` for running jobs, then aborts the rest (they
//!   are reported failed with a system failure reason). A second signal aborts at once.
//! - **Crash recovery**: at start, jobs recorded as running are reported failed and their
//!   leftovers killed (`recovery`). One daemon per state directory (a lock file).
//! - `--max-jobs N`: takes at most N jobs, exits when they have finished.

pub mod github;
pub mod http;
pub mod metrics;
pub mod recovery;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::config::{Config, GitlabInstance};
use crate::executor::Executor;
use crate::forge::gitlab::client::{ApiError, Client, RequestOutcome, runner_info};
use crate::forge::gitlab::system_id;
use crate::job::{self, JobEnv};
use crate::outcome::{Exit, Failure};
use crate::state::StateStore;
use metrics::{DurationLabels, FinishedLabels, InstanceLabels, Metrics, RequestLabels};

/// Options of `rbuild-runner run` beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Take at most this many jobs, then exit when they have finished.
    pub max_jobs: Option<u64>,
}

/// The state of one instance, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstanceState {
    Verifying,
    Polling,
    /// A GitHub fleet serving its webhook.
    Listening,
    Rejected,
    Stopped,
}

impl InstanceState {
    fn name(self) -> &'static str {
        match self {
            InstanceState::Verifying => "verifying",
            InstanceState::Polling => "polling",
            InstanceState::Listening => "listening",
            InstanceState::Rejected => "rejected",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// What the poll loops, jobs and the HTTP endpoints share.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    instances: Mutex<BTreeMap<String, InstanceState>>,
    running: AtomicUsize,
    /// With `--max-jobs`: (jobs started, job requests in flight). A request is only made
    /// while started + in flight stays within the maximum.
    budget: Mutex<(u64, u64)>,
    finished: AtomicU64,
    max_jobs: Option<u64>,
    draining: std::sync::atomic::AtomicBool,
    changed: Notify,
}

impl Shared {
    fn set_state(&self, name: &str, s: InstanceState) {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), s);
        self.changed.notify_waiters();
    }

    /// Whether the daemon can work, and the `/healthz` document.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let instances = self
            .instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let usable = instances.values().any(|s| *s != InstanceState::Rejected);
        let draining = self.draining.load(Ordering::Relaxed);
        let status = if !usable {
            "failing"
        } else if draining {
            "draining"
        } else {
            "ok"
        };
        let body = serde_json::json!({
            "status": status,
            "running_jobs": self.running.load(Ordering::Relaxed),
            "finished_jobs": self.finished.load(Ordering::Relaxed),
            "instances": instances.iter().map(|(n, s)| serde_json::json!({"name": n, "state": s.name()})).collect::<Vec<_>>(),
        });
        (usable, body)
    }

    /// Reserves one job request within `--max-jobs`.
    fn reserve(&self) -> Reserve {
        let Some(max) = self.max_jobs else {
            return Reserve::Go;
        };
        let mut b = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.0 >= max {
            Reserve::Done
        } else if b.0 + b.1 >= max {
            Reserve::Wait
        } else {
            b.1 += 1;
            Reserve::Go
        }
    }

    /// A reserved request ended: with a job (`started`) or without.
    fn settle(&self, started: bool) {
        if self.max_jobs.is_some() {
            let mut b = self
                .budget
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            b.1 = b.1.saturating_sub(1);
            if started {
                b.0 += 1;
            }
        }
        self.changed.notify_waiters();
    }

    fn all_done(&self) -> bool {
        self.max_jobs
            .is_some_and(|m| self.finished.load(Ordering::SeqCst) >= m)
    }
}

/// What `--max-jobs` allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserve {
    Go,
    /// Other requests in flight may use up the budget; ask again when one settles.
    Wait,
    /// Every job of the budget has started.
    Done,
}

/// The phase of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
}

/// Runs the daemon until it is stopped or `--max-jobs` jobs have finished.
pub async fn run(config: Config, opts: Options) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let state = StateStore::open(&config.state_dir).map_err(|e| {
        Failure::new(
            Exit::Host,
            format!(
                "cannot use the state directory `{}`: {e}",
                config.state_dir.display()
            ),
        )
        .hint("create it for the runner's user, or set `state_dir` in the configuration")
    })?;
    let _lock = lock_state_dir(&config)?;
    for dir in [&config.builds_dir, &config.cache_dir] {
        crate::state::private_dir(dir).map_err(|e| {
            Failure::new(Exit::Host, format!("cannot create `{}`: {e}", dir.display()))
                .hint("create it for the runner's user, or set `builds_dir`/`cache_dir` in the configuration")
        })?;
    }
    let machine_id = fs_err::read_to_string("/etc/machine-id").ok();
    let default_system_id = system_id(machine_id.as_deref(), &config.state_dir).map_err(|e| {
        Failure::new(
            Exit::Host,
            format!(
                "cannot keep a system id in `{}`: {e}",
                config.state_dir.display()
            ),
        )
    })?;
    let hostname = fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".to_owned(), |h| h.trim().to_owned());
    let executor = Arc::new(Executor::new(config.executor.clone(), &config.cache_dir));
    let info = Arc::new(runner_info(executor.kind().name()));
    let metrics = Arc::new(Metrics::new(config.concurrent));
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        instances: Mutex::new(
            config
                .gitlab
                .iter()
                .map(|g| (g.name.clone(), InstanceState::Verifying))
                .chain(
                    config
                        .github
                        .iter()
                        .map(|g| (g.name.clone(), InstanceState::Verifying)),
                )
                .collect(),
        ),
        running: AtomicUsize::new(0),
        budget: Mutex::new((0, 0)),
        finished: AtomicU64::new(0),
        max_jobs: opts.max_jobs,
        draining: std::sync::atomic::AtomicBool::new(false),
        changed: Notify::new(),
    });

    let (http_stop, http_stop_rx) = watch::channel(false);
    let http = match config.listen {
        Some(addr) => {
            let listener = http::bind(addr).await.map_err(|e| {
                Failure::new(
                    Exit::Host,
                    format!("cannot listen on `{addr}` for /metrics and /healthz: {e}"),
                )
                .hint("pick a free port in `listen`, or remove `listen`")
            })?;
            tracing::info!(%addr, "serving /healthz and /metrics");
            Some(tokio::spawn(http::serve(
                listener,
                shared.clone(),
                http_stop_rx,
            )))
        }
        None => None,
    };

    let recovery = tokio::spawn(recovery::recover_all(
        state.clone(),
        config.clone(),
        info.clone(),
        metrics.clone(),
    ));

    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let (abort_tx, abort_rx) = watch::channel(false);
    let global = Arc::new(Semaphore::new(config.concurrent));
    let mut pollers = tokio::task::JoinSet::new();
    for inst in &config.gitlab {
        let client = Client::new(&inst.url, inst.poll_timeout)
            .with_context(|| format!("cannot create an HTTP client for `{}`", inst.url))?;
        let env = JobEnv {
            instance: Arc::new(inst.clone()),
            client,
            info: info.clone(),
            executor: executor.clone(),
            builds_dir: config.builds_dir.clone(),
            cache_dir: config.cache_dir.clone(),
            state: state.clone(),
            hostname: hostname.clone(),
            system_id: inst
                .system_id
                .clone()
                .unwrap_or_else(|| default_system_id.clone()),
        };
        let poller = Poller {
            env,
            shared: shared.clone(),
            global: global.clone(),
            phase: phase_rx.clone(),
            abort: abort_rx.clone(),
        };
        pollers.spawn(
            poller
                .run()
                .instrument(tracing::info_span!("instance", instance = %inst.name)),
        );
    }
    for inst in &config.github {
        let listener = github::bind(inst).await.map_err(|e| {
            Failure::new(
                Exit::Host,
                format!(
                    "cannot listen on `{}` for GitHub webhooks of `{}`: {e}",
                    inst.webhook_listen, inst.name
                ),
            )
            .hint("pick a free port in `webhook_listen`")
        })?;
        let work_dir = config.state_dir.join("github").join(&inst.name);
        crate::state::private_dir(&work_dir).map_err(|e| {
            Failure::new(
                Exit::Host,
                format!("cannot create `{}`: {e}", work_dir.display()),
            )
        })?;
        let fleet = github::Fleet {
            inst: Arc::new(inst.clone()),
            shared: shared.clone(),
            global: global.clone(),
            executor: config.executor.clone(),
            work_dir,
            cache_dir: config.cache_dir.join("github"),
            hostname: hostname.clone(),
            phase: phase_rx.clone(),
            abort: abort_rx.clone(),
        };
        pollers.spawn(
            fleet.run(listener).instrument(
                tracing::info_span!("instance", instance = %inst.name, forge = "github"),
            ),
        );
    }
    tracing::info!(
        github_fleets = config.github.len(),
        instances = config.gitlab.len(),
        concurrent = config.concurrent,
        executor = executor.kind().name(),
        max_jobs = ?opts.max_jobs,
        "rbuild-runner is running"
    );

    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut pollers_done = false;
    let reason = loop {
        let changed = shared.changed.notified();
        if shared.all_done() {
            break "all jobs of --max-jobs finished";
        }
        if pollers_done && shared.running.load(Ordering::SeqCst) == 0 {
            break "no instance can take jobs";
        }
        tokio::select! {
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            () = changed => {}
            r = pollers.join_next(), if !pollers_done => {
                if r.is_none() {
                    pollers_done = true;
                }
            }
        }
    };
    tracing::info!(%reason, running = shared.running.load(Ordering::SeqCst), "stopping: no new jobs are requested");
    shared.draining.store(true, Ordering::SeqCst);
    metrics.draining.set(1);
    let _ = phase_tx.send(Phase::Draining);

    // Drain: wait for running jobs, up to the deadline or a second signal.
    let deadline = Instant::now() + config.shutdown_timeout;
    let mut aborted = false;
    loop {
        let changed = shared.changed.notified();
        if shared.running.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(deadline), if !aborted => {
                tracing::warn!(running = shared.running.load(Ordering::SeqCst), "drain deadline passed; aborting running jobs");
                aborted = true;
                let _ = abort_tx.send(true);
            }
            _ = sigterm.recv(), if !aborted => {
                tracing::warn!("second signal; aborting running jobs");
                aborted = true;
                let _ = abort_tx.send(true);
            }
            _ = sigint.recv(), if !aborted => {
                tracing::warn!("second signal; aborting running jobs");
                aborted = true;
                let _ = abort_tx.send(true);
            }
        }
    }
    pollers.shutdown().await;
    // Recovery reports may still be retrying through a GitLab outage; what is left stays
    // in the state directory for the next start.
    recovery.abort();
    let _ = http_stop.send(true);
    if let Some(h) = http {
        let _ = h.await;
    }
    let (usable, _) = shared.health();
    if !usable {
        let what = if config.github.is_empty() {
            "every GitLab instance rejected its runner token"
        } else {
            "every instance rejected its credentials"
        };
        return Err(Failure::new(Exit::Forge, what)
            .hint("the runner was deleted in GitLab or its token was reset: create it again and update `token_file`")
            .into());
    }
    tracing::info!(
        finished = shared.finished.load(Ordering::SeqCst),
        "rbuild-runner stopped"
    );
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| Failure::new(Exit::Host, format!("cannot handle signals: {e}")).into())
}

/// Takes the state directory's lock (one daemon per state directory).
fn lock_state_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    let path = config.state_dir.join("daemon.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::new(Exit::Host, format!("cannot open `{}`: {e}", path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Failure::new(
            Exit::Host,
            format!(
                "another rbuild-runner uses the state directory `{}`",
                config.state_dir.display()
            ),
        )
        .hint("stop the other daemon, or give this one its own `state_dir`")
        .into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Failure::new(Exit::Host, format!("cannot lock `{}`: {e}", path.display())).into())
        }
    }
}

/// The poll loop of one instance.
struct Poller {
    env: JobEnv,
    shared: Arc<Shared>,
    global: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
    abort: watch::Receiver<bool>,
}

/// Resolves when the phase leaves `Running`.
async fn draining(phase: &mut watch::Receiver<Phase>) {
    while *phase.borrow_and_update() == Phase::Running {
        if phase.changed().await.is_err() {
            return;
        }
    }
}

impl Poller {
    fn name(&self) -> &str {
        &self.env.instance.name
    }

    async fn run(mut self) {
        let inst = self.env.instance.clone();
        if !self.verify(&inst).await {
            return;
        }
        self.shared.set_state(&inst.name, InstanceState::Polling);
        let slots = Arc::new(Mutex::new(
            (0..inst.concurrency).rev().collect::<Vec<usize>>(),
        ));
        let local = Arc::new(Semaphore::new(inst.concurrency));
        let mut last_update: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut phase = self.phase.clone();
            let permits = tokio::select! {
                () = draining(&mut phase) => break,
                p = acquire(&local, &self.global) => p,
            };
            match self.shared.reserve() {
                Reserve::Go => {}
                Reserve::Done => break,
                Reserve::Wait => {
                    drop(permits);
                    let settled = self.shared.changed.notified();
                    tokio::select! {
                        () = draining(&mut phase) => break,
                        () = settled => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
            let t0 = Instant::now();
            let outcome = tokio::select! {
                () = draining(&mut phase) => {
                    self.shared.settle(false);
                    break;
                }
                r = self.env.client.request_job(&inst.token, &self.env.system_id, last_update.as_deref(), &self.env.info) => r,
            };
            let label = match &outcome {
                Ok(RequestOutcome::Job { .. }) => "job",
                Ok(RequestOutcome::NoJob { .. }) => "no_job",
                Ok(RequestOutcome::Conflict) => "conflict",
                Err(_) => "error",
            };
            self.shared
                .metrics
                .requests
                .get_or_create(&RequestLabels {
                    instance: inst.name.clone(),
                    outcome: label.to_owned(),
                })
                .observe(t0.elapsed().as_secs_f64());
            match outcome {
                Ok(RequestOutcome::Job {
                    job,
                    last_update: lu,
                }) => {
                    self.shared.settle(true);
                    backoff = Duration::from_secs(1);
                    if lu.is_some() {
                        last_update = lu;
                    }
                    let slot = slots
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop()
                        .expect("a slot is free while the instance's permit is held");
                    self.spawn_job(*job, slot, slots.clone(), permits);
                }
                Ok(RequestOutcome::NoJob { last_update: lu }) => {
                    self.shared.settle(false);
                    drop(permits);
                    backoff = Duration::from_secs(1);
                    if lu.is_some() {
                        last_update = lu;
                    }
                    let wait = inst.check_interval.saturating_sub(t0.elapsed());
                    tokio::select! {
                        () = draining(&mut phase) => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Ok(RequestOutcome::Conflict) => {
                    self.shared.settle(false);
                    drop(permits);
                    tracing::debug!("job taken by another runner (409); asking again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(ApiError::Forbidden { .. }) => {
                    self.shared.settle(false);
                    tracing::error!(
                        token = %inst.token_source,
                        "GitLab rejected the runner token (403): the runner was deleted or its token reset; this instance takes no more jobs"
                    );
                    self.shared.set_state(&inst.name, InstanceState::Rejected);
                    return;
                }
                Err(e) => {
                    self.shared.settle(false);
                    drop(permits);
                    let wait = jitter(backoff);
                    tracing::warn!(error = %crate::job::trace::error_chain(&e), retry_in = ?wait, "job request failed");
                    backoff = (backoff * 2).min(Duration::from_mins(1));
                    tokio::select! {
                        () = draining(&mut phase) => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.shared.set_state(self.name(), InstanceState::Stopped);
    }

    /// `runners/verify` until it answers; false if the token is rejected or we drain.
    async fn verify(&mut self, inst: &GitlabInstance) -> bool {
        let mut backoff = Duration::from_secs(1);
        let mut phase = self.phase.clone();
        loop {
            let r = tokio::select! {
                () = draining(&mut phase) => return false,
                r = self.env.client.verify(&inst.token, &self.env.system_id, &self.env.info) => r,
            };
            match r {
                Ok(v) => {
                    tracing::info!(
                        url = %inst.url,
                        runner_id = v.id,
                        system_id = %self.env.system_id,
                        token_expires_at = %v.token_expires_at,
                        "runner verified"
                    );
                    return true;
                }
                Err(ApiError::Forbidden { .. }) => {
                    tracing::error!(
                        url = %inst.url,
                        token = %inst.token_source,
                        "GitLab rejected the runner authentication token (403); create the runner in GitLab and use its `glrt-` token"
                    );
                    self.shared.set_state(&inst.name, InstanceState::Rejected);
                    return false;
                }
                Err(e) => {
                    let wait = jitter(backoff);
                    tracing::warn!(error = %crate::job::trace::error_chain(&e), retry_in = ?wait, "cannot verify the runner yet");
                    backoff = (backoff * 2).min(Duration::from_mins(1));
                    tokio::select! {
                        () = draining(&mut phase) => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    fn spawn_job(
        &self,
        job: crate::forge::gitlab::types::Job,
        slot: usize,
        slots: Arc<Mutex<Vec<usize>>>,
        permits: (
            tokio::sync::OwnedSemaphorePermit,
            tokio::sync::OwnedSemaphorePermit,
        ),
    ) {
        let env = self.env.clone();
        let shared = self.shared.clone();
        let abort = self.abort.clone();
        let instance = env.instance.name.clone();
        let span = tracing::info_span!(
            "job",
            job_id = job.id,
            forge = "gitlab",
            instance = %instance,
            project = %job.job_info.project_full_path,
            name = %job.job_info.name,
        );
        shared.running.fetch_add(1, Ordering::SeqCst);
        shared
            .metrics
            .running
            .get_or_create(&InstanceLabels {
                instance: instance.clone(),
            })
            .inc();
        tokio::spawn(
            async move {
                tracing::info!(slot, "job started");
                let summary = job::run(&env, job, slot, abort).await;
                tracing::info!(
                    state = summary.state,
                    failure_reason = ?summary.failure_reason,
                    duration = ?summary.duration,
                    reported = ?summary.reported,
                    "job finished"
                );
                let m = &shared.metrics;
                m.running
                    .get_or_create(&InstanceLabels {
                        instance: instance.clone(),
                    })
                    .dec();
                m.finished
                    .get_or_create(&FinishedLabels {
                        instance: instance.clone(),
                        state: summary.state.to_owned(),
                        failure_reason: summary.failure_reason.clone().unwrap_or_default(),
                    })
                    .inc();
                m.durations
                    .get_or_create(&DurationLabels {
                        instance,
                        state: summary.state.to_owned(),
                    })
                    .observe(summary.duration.as_secs_f64());
                slots
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(slot);
                drop(permits);
                shared.running.fetch_sub(1, Ordering::SeqCst);
                shared.finished.fetch_add(1, Ordering::SeqCst);
                shared.changed.notify_waiters();
            }
            .instrument(span),
        );
    }
}

/// One permit of the instance, then one of the global limit.
async fn acquire(
    local: &Arc<Semaphore>,
    global: &Arc<Semaphore>,
) -> (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
) {
    let l = local
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let g = global
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    (l, g)
}

/// `d` plus up to 25 % random.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(fastrand::f64() * 0.25)
}

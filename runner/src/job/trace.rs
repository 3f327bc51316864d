//! Reporting a running job to GitLab: the incremental trace (`PATCH jobs/:id/trace`), the
//! keep-alive, the remote job status, and the final update (`PUT jobs/:id`).
//!
//! The trace goes out in contiguous ranges of at most 1 MiB, every update interval (3 s,
//! or what GitLab asks for in `X-GitLab-Trace-Update-Interval`). A 416 means GitLab holds a
//! different amount than we think: we resume at the offset it names (re-sending from 0 if
//! it names more than we have). `Job-Status: canceling` or a 403 with `canceled` are
//! forwarded to the job as a remote status. The final update carries the trace's
//! `crc32` checksum and size; a 412 re-sends the whole trace, a 202 is asked again.
//!
//! Every interval GitLab hears from the job: new output, or when there is none a
//! keep-alive (`PUT state=running`). Both answers carry `Job-Status`, so a cancel is seen
//! within one interval even while the job prints nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Secret;
use crate::forge::gitlab::client::{ApiError, Client, PatchOutcome, RemoteStatus, UpdateOutcome};
use crate::forge::gitlab::types::{Info, JobState, Output, UpdateRequest};
use crate::log::JobLog;

/// Largest trace patch (gitlab-runner's `DefaultTracePatchLimit`).
pub const PATCH_LIMIT: usize = 1024 * 1024;
/// Default update interval (gitlab-runner's `DefaultUpdateInterval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);
/// How long the final report keeps trying through network trouble.
const FINISH_DEADLINE: Duration = Duration::from_mins(10);

/// The final result to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
    pub state: JobState,
    pub failure_reason: Option<String>,
    pub exit_code: Option<i32>,
}

/// How the final report went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// GitLab accepted it.
    Accepted,
    /// GitLab no longer takes updates for this job (it was canceled or removed there).
    Gone(String),
    /// GitLab could not be reached before the deadline; the state file keeps the job for
    /// the next start of the daemon.
    Unreachable(String),
}

/// Sends one job's trace and status.
#[derive(Debug)]
pub struct Reporter {
    client: Client,
    info: Arc<Info>,
    job_id: i64,
    token: Secret,
    log: Arc<JobLog>,
    /// Bytes GitLab holds.
    sent: usize,
    interval: Duration,
    last_contact: Instant,
    remote: watch::Sender<RemoteStatus>,
}

impl Reporter {
    pub fn new(
        client: Client,
        info: Arc<Info>,
        job_id: i64,
        token: Secret,
        log: Arc<JobLog>,
    ) -> Reporter {
        let (remote, _) = watch::channel(RemoteStatus::Running);
        Reporter {
            client,
            info,
            job_id,
            token,
            log,
            sent: 0,
            interval: DEFAULT_INTERVAL,
            last_contact: Instant::now(),
            remote,
        }
    }

    /// Starts from `sent` instead of 0 (crash recovery; a 416 corrects a wrong guess).
    pub fn assume_sent(&mut self, sent: usize) {
        self.sent = sent;
    }

    /// The remote status as it changes.
    pub fn remote(&self) -> watch::Receiver<RemoteStatus> {
        self.remote.subscribe()
    }

    fn note(&self, status: Option<RemoteStatus>) {
        if let Some(s) = status {
            self.remote.send_if_modified(|cur| {
                let changed = *cur != s;
                *cur = s;
                changed
            });
        }
    }

    /// Sends everything not yet sent. Stops early when GitLab says the job is gone.
    pub async fn send_pending(&mut self) -> Result<(), ApiError> {
        // Bounded: each turn either advances, or adopts GitLab's offset once.
        for _ in 0..64 {
            let len = self.log.len();
            if self.sent >= len {
                return Ok(());
            }
            let chunk = self.log.slice(self.sent, PATCH_LIMIT);
            let n = chunk.len();
            match self
                .client
                .patch_trace(self.job_id, &self.token, self.sent, chunk)
                .await?
            {
                PatchOutcome::Accepted {
                    server_len,
                    interval,
                    status,
                } => {
                    self.sent = server_len.unwrap_or(self.sent + n);
                    if self.sent > len {
                        self.sent = 0;
                    }
                    if let Some(i) = interval {
                        self.interval = i;
                    }
                    self.last_contact = Instant::now();
                    self.note(status);
                }
                PatchOutcome::RangeMismatch { server_len } => {
                    tracing::info!(
                        job_id = self.job_id,
                        ours = self.sent,
                        gitlab = server_len,
                        "trace range mismatch; resuming at GitLab's offset"
                    );
                    self.sent = if server_len > len { 0 } else { server_len };
                }
                PatchOutcome::Abort { status } => {
                    self.note(Some(
                        status.unwrap_or_else(|| RemoteStatus::Ended("gone".to_owned())),
                    ));
                    return Ok(());
                }
                PatchOutcome::NotFound => {
                    self.note(Some(RemoteStatus::Ended("not found".to_owned())));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Sends the trace every interval until `stop` turns true; keeps the job alive.
    pub async fn run_until(&mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
            if let Err(e) = self.send_pending().await {
                tracing::warn!(job_id = self.job_id, error = %error_chain(&e), "cannot send the job log; retrying");
            }
            if self.last_contact.elapsed() >= self.interval {
                self.touch().await;
            }
            if matches!(*self.remote.borrow(), RemoteStatus::Ended(_)) {
                return;
            }
        }
    }

    /// `PUT state=running`: keeps the job alive and learns its remote status.
    async fn touch(&mut self) {
        let update = UpdateRequest {
            info: &self.info,
            token: &self.token,
            state: JobState::Running,
            failure_reason: None,
            checksum: None,
            output: None,
            exit_code: None,
        };
        match self.client.update_job(self.job_id, &update).await {
            Ok(UpdateOutcome::Done { status }) => {
                self.last_contact = Instant::now();
                self.note(status);
            }
            Ok(UpdateOutcome::Abort { status }) => {
                self.note(Some(
                    status.unwrap_or_else(|| RemoteStatus::Ended("gone".to_owned())),
                ));
            }
            Ok(UpdateOutcome::NotFound) => {
                self.note(Some(RemoteStatus::Ended("not found".to_owned())));
            }
            Ok(_) => self.last_contact = Instant::now(),
            Err(e) => {
                tracing::warn!(job_id = self.job_id, error = %error_chain(&e), "keep-alive failed");
            }
        }
    }

    /// Sends the rest of the trace and the final state; retries through 202, 412 and
    /// network trouble until [`FINISH_DEADLINE`].
    pub async fn finish(&mut self, result: &Final) -> Reported {
        let start = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            if let RemoteStatus::Ended(s) = &*self.remote.borrow() {
                return Reported::Gone(s.clone());
            }
            let attempt: Result<Option<Reported>, ApiError> = async {
                self.send_pending().await?;
                if let RemoteStatus::Ended(s) = &*self.remote.borrow() {
                    return Ok(Some(Reported::Gone(s.clone())));
                }
                if self.sent < self.log.len() {
                    // GitLab did not take everything yet (a 416 loop); go round again.
                    return Ok(None);
                }
                let (checksum, bytesize) = self.log.checksum();
                let output = Output {
                    checksum: checksum.clone(),
                    bytesize,
                };
                let update = UpdateRequest {
                    info: &self.info,
                    token: &self.token,
                    state: result.state,
                    failure_reason: result.failure_reason.as_deref(),
                    checksum: Some(&checksum),
                    output: Some(&output),
                    exit_code: result.exit_code,
                };
                Ok(match self.client.update_job(self.job_id, &update).await? {
                    UpdateOutcome::Done { .. } => Some(Reported::Accepted),
                    UpdateOutcome::Accepted { interval } => {
                        tokio::time::sleep(interval.unwrap_or(Duration::from_secs(1))).await;
                        None
                    }
                    UpdateOutcome::TraceInvalid => {
                        tracing::warn!(job_id = self.job_id, "GitLab's copy of the trace does not match its checksum; sending it again from the start");
                        self.sent = 0;
                        None
                    }
                    UpdateOutcome::Abort { status } => Some(Reported::Gone(match status {
                        Some(RemoteStatus::Ended(s)) => s,
                        _ => "forbidden".to_owned(),
                    })),
                    UpdateOutcome::NotFound => Some(Reported::Gone("not found".to_owned())),
                })
            }
            .await;
            match attempt {
                Ok(Some(r)) => return r,
                Ok(None) => {}
                Err(e) if e.is_transient() && start.elapsed() < FINISH_DEADLINE => {
                    tracing::warn!(job_id = self.job_id, error = %error_chain(&e), "cannot report the job yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Reported::Unreachable(error_chain(&e)),
            }
            if start.elapsed() >= FINISH_DEADLINE {
                return Reported::Unreachable(
                    "the final report did not complete in time".to_owned(),
                );
            }
        }
    }
}

/// `error: cause: cause` on one line, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

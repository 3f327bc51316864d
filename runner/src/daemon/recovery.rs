//! Crash recovery: jobs the state directory says were running when the daemon last
//! stopped without reporting them. Each is stopped (its process group killed, its private
//! directory with file variables and credentials removed), its log gets a line saying
//! what happened, and it is reported **failed** with `runner_system_failure` (if the job's
//! GitLab accepts that value). A recovered job is never reported as passed.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::executor::kill_group;
use crate::forge::gitlab::client::Client;
use crate::forge::gitlab::failure_reason;
use crate::forge::gitlab::types::{Info, JobState};
use crate::job::trace::{Final, Reported, Reporter};
use crate::log::JobLog;
use crate::log::mask::Masker;
use crate::state::{JobRecord, StateStore, process_start_time};

use super::metrics::{InstanceLabels, Metrics};

/// Stops what is left of a job's last step. A leader that is alive with another start
/// time means the pid was reused and the old group is empty; otherwise any process still
/// in the group belongs to the job (Linux does not reuse a pid that is a live group's id).
fn kill_leftovers(rec: &JobRecord) {
    let Some(pgid) = rec.pgid else { return };
    match process_start_time(pgid) {
        Some(now) if Some(now) != rec.pgid_start => {}
        _ => kill_group(pgid, rustix::process::Signal::KILL),
    }
}

/// Recovers every recorded job; returns when all are reported (or left for next time).
pub async fn recover_all(
    state: StateStore,
    config: Arc<Config>,
    info: Arc<Info>,
    metrics: Arc<Metrics>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for entry in state.list() {
        let rec = match entry {
            Ok(rec) => rec,
            Err((path, e)) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable job record in the state directory; removing it");
                state.discard(&path);
                continue;
            }
        };
        let (state, config, info, metrics) =
            (state.clone(), config.clone(), info.clone(), metrics.clone());
        tasks.spawn(async move { recover(&state, &config, info, &metrics, rec).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn recover(
    state: &StateStore,
    config: &Config,
    info: Arc<Info>,
    metrics: &Metrics,
    rec: JobRecord,
) {
    let span = tracing::info_span!("recover", job_id = rec.job_id, forge = "gitlab", instance = %rec.instance);
    let _enter = span.enter();
    tracing::warn!("this job was running when the daemon stopped; reporting it as failed");
    kill_leftovers(&rec);
    if rec.tmp_dir.exists()
        && let Err(e) = fs_err::remove_dir_all(&rec.tmp_dir)
    {
        tracing::warn!(error = %e, "cannot remove the job's private directory");
    }
    metrics
        .recovered
        .get_or_create(&InstanceLabels {
            instance: rec.instance.clone(),
        })
        .inc();
    let poll_timeout = config
        .gitlab
        .iter()
        .find(|g| g.name == rec.instance)
        .map_or(Duration::from_mins(1), |g| g.poll_timeout);
    let client = match Client::new(&rec.url, poll_timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create an HTTP client to report the job");
            return;
        }
    };
    let trace = state.trace_path(&rec.instance, rec.job_id);
    let log = match JobLog::resume(
        Masker::new(&[] as &[&str], &[] as &[&str]),
        rec.output_limit,
        trace,
    ) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reopen the job's log mirror; reporting with a new log");
            JobLog::new(
                Masker::new(&[] as &[&str], &[] as &[&str]),
                rec.output_limit,
                None,
            )
            .expect("no mirror, no file")
        }
    };
    let had = log.len();
    log.error("the runner stopped while this job was running (rbuild-runner was killed or crashed and has restarted); what was left of the job was stopped and the job is reported as failed");
    let mut reporter = Reporter::new(client, info, rec.job_id, rec.job_token.clone(), log.clone());
    // GitLab probably holds what the mirror held; a 416 corrects the guess.
    reporter.assume_sent(had);
    let reason = failure_reason("runner_system_failure", &rec.failure_reasons).map(str::to_owned);
    let reported = reporter
        .finish(&Final {
            state: JobState::Failed,
            failure_reason: reason.clone(),
            exit_code: None,
        })
        .await;
    match reported {
        Reported::Unreachable(why) => {
            tracing::error!(%why, "cannot report the recovered job; trying again at the next start");
        }
        r => {
            tracing::info!(result = ?r, failure_reason = ?reason, "recovered job reported");
            state.remove(&rec.instance, rec.job_id);
        }
    }
}

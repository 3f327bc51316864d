//! The daemon's Prometheus metrics (text format 0.0.4 on `/metrics`).
//!
//! - `rbuild_runner_jobs_running{instance}`: jobs running now;
//! - `rbuild_runner_jobs_finished_total{instance,state,failure_reason}`: jobs by how they
//!   ended (`success`, `failed`, `canceled`, `gone`);
//! - `rbuild_runner_jobs_recovered_total{instance}`: jobs found running after a crash;
//! - `rbuild_runner_job_request_duration_seconds{instance,outcome}`: `jobs/request` latency
//!   (a long poll is held up to the server's limit), by `job`, `no_job`, `conflict`, `error`;
//! - `rbuild_runner_job_duration_seconds{instance,state}`: pickup to report;
//! - `rbuild_runner_concurrent_limit`, `rbuild_runner_draining`;
//! - GitHub fleets: `rbuild_runner_webhook_deliveries_total{instance,outcome}` (`queued`,
//!   `not_ours`, `duplicate`, `bad_signature`, `queue_full`, `in_progress`, `completed`,
//!   ...), `rbuild_runner_pending_jobs{instance}` (queued jobs waiting for a slot) and
//!   `rbuild_runner_runner_launches_total{instance,outcome}` (`started`, `jit_failed`).
//!   A runner sandbox counts as a job in `jobs_running`, `jobs_finished_total` (state:
//!   `exited`, `failed`, `completed`, `idle`, `timed_out`, `aborted`) and
//!   `job_duration_seconds`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    pub instance: String,
    pub state: String,
    pub failure_reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub instance: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub instance: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub instance: String,
    pub state: String,
}

fn request_buckets() -> Histogram {
    // 5 ms .. ~160 s
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

fn job_buckets() -> Histogram {
    // 0.1 s .. ~3.6 h
    Histogram::new(exponential_buckets(0.1, 2.0, 18))
}

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub running: Family<InstanceLabels, Gauge>,
    pub finished: Family<FinishedLabels, Counter>,
    pub recovered: Family<InstanceLabels, Counter>,
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    pub concurrent: Gauge,
    pub draining: Gauge,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub pending: Family<InstanceLabels, Gauge>,
    pub launches: Family<WebhookLabels, Counter>,
}

impl Metrics {
    pub fn new(concurrent: usize) -> Metrics {
        let mut registry = Registry::default();
        let running = Family::<InstanceLabels, Gauge>::default();
        let finished = Family::<FinishedLabels, Counter>::default();
        let recovered = Family::<InstanceLabels, Counter>::default();
        let requests = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            request_buckets as fn() -> Histogram,
        );
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                job_buckets as fn() -> Histogram,
            );
        let concurrent_g = Gauge::default();
        concurrent_g.set(i64::try_from(concurrent).unwrap_or(i64::MAX));
        let draining = Gauge::default();
        registry.register(
            "rbuild_runner_jobs_running",
            "Jobs running now",
            running.clone(),
        );
        registry.register(
            "rbuild_runner_jobs_finished",
            "Jobs finished, by how they ended",
            finished.clone(),
        );
        registry.register(
            "rbuild_runner_jobs_recovered",
            "Jobs found running after the daemon restarted, reported as failed",
            recovered.clone(),
        );
        registry.register(
            "rbuild_runner_job_request_duration_seconds",
            "Latency of jobs/request (long poll), by outcome",
            requests.clone(),
        );
        registry.register(
            "rbuild_runner_job_duration_seconds",
            "Job duration from pickup to report",
            durations.clone(),
        );
        registry.register(
            "rbuild_runner_concurrent_limit",
            "Jobs allowed at once across instances",
            concurrent_g.clone(),
        );
        registry.register(
            "rbuild_runner_draining",
            "1 while the daemon drains after SIGTERM",
            draining.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        let pending = Family::<InstanceLabels, Gauge>::default();
        let launches = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "rbuild_runner_webhook_deliveries",
            "GitHub webhook deliveries, by what was done with them",
            webhooks.clone(),
        );
        registry.register(
            "rbuild_runner_pending_jobs",
            "Queued GitHub jobs waiting for a runner slot",
            pending.clone(),
        );
        registry.register(
            "rbuild_runner_runner_launches",
            "GitHub runner launches, by outcome",
            launches.clone(),
        );
        Metrics {
            webhooks,
            pending,
            launches,
            registry,
            running,
            finished,
            recovered,
            requests,
            durations,
            concurrent: concurrent_g,
            draining,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `Content-Type` of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_jobs_by_state_and_latencies() {
        let m = Metrics::new(4);
        m.running
            .get_or_create(&InstanceLabels {
                instance: "main".into(),
            })
            .inc();
        m.finished
            .get_or_create(&FinishedLabels {
                instance: "main".into(),
                state: "failed".into(),
                failure_reason: "script_failure".into(),
            })
            .inc();
        m.requests
            .get_or_create(&RequestLabels {
                instance: "main".into(),
                outcome: "no_job".into(),
            })
            .observe(0.2);
        let text = m.encode();
        assert!(
            text.contains("rbuild_runner_jobs_running{instance=\"main\"} 1"),
            "{text}"
        );
        assert!(text.contains("rbuild_runner_jobs_finished_total{instance=\"main\",state=\"failed\",failure_reason=\"script_failure\"} 1"), "{text}");
        assert!(text.contains("rbuild_runner_job_request_duration_seconds_count{instance=\"main\",outcome=\"no_job\"} 1"), "{text}");
        assert!(text.contains("rbuild_runner_concurrent_limit 4"), "{text}");
    }
}

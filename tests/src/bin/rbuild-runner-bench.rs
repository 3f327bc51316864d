//! Benchmark of `rbuild-runner`'s job pickup latency and per-job overhead.
//!
//! ```sh
//! cargo build --workspace --bins && cargo run -p rbuild-e2e --bin rbuild-runner-bench -- [JOBS]
//! cargo build --release --workspace --bins && cargo run --release -p rbuild-e2e --bin rbuild-runner-bench
//! ```
//!
//! A fake GitLab (`rbuild_e2e::gitlab`) on 127.0.0.1 and the real daemon as the test user,
//! concurrency 1, default `check_interval` (3 s). Jobs are queued one at a time at a random
//! moment while the runner is idle, in two scenarios: GitLab holds job requests (Workhorse
//! long polling) and GitLab answers at once (no long polling). For each job it prints:
//!
//! - **pickup**: job queued -> its script's first command runs (it touches a file in
//!   `$CI_BUILDS_DIR`, which is the slot directory on the host: its mtime is the moment;
//!   busybox `date` has no `%N`);
//! - **handed out -> script**: GitLab answered the request -> the script runs (prepare);
//! - **job total**: queued -> GitLab has the final status;
//! - **overhead**: job total minus the same script run directly with `sh -c`, and minus
//!   the same script run directly in the job's sandbox (`rbuild run IMAGE -- sh -c`, image
//!   in the store): what the runner itself adds beyond the sandbox.
//!
//! Figures only; nothing is asserted. Jobs run with the `rbuild` executor in busybox from
//! a registry on 127.0.0.1 (pull policy `always`: one manifest request per job).
#![allow(clippy::print_stdout)] // stdout carries this benchmark's figures

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rbuild_e2e::gitlab::{FakeGitlab, JobSpec, JobState};
use rbuild_e2e::runner::RunnerSetup;

const SCRIPT: &str = "touch \"$CI_BUILDS_DIR/T_START\"";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn ms(ns: u128) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64 / 1e6;
    v
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

struct Row {
    pickup: Vec<f64>,
    prepare: Vec<f64>,
    total: Vec<f64>,
    /// Handed out -> final status accepted.
    handled: Vec<f64>,
}

fn scenario(jobs: usize, long_poll: bool) -> Result<Row, String> {
    let gl = FakeGitlab::start();
    gl.set_long_poll(if long_poll {
        Duration::from_secs(50)
    } else {
        Duration::ZERO
    });
    gl.set_update_interval(3);
    let setup = RunnerSetup::new(&gl, 1, "").map_err(|m| m.to_string())?;
    // The benchmark measures the default pause after an empty answer, not the tests' 200 ms.
    let config = std::fs::read_to_string(&setup.config).map_err(|e| e.to_string())?;
    std::fs::write(
        &setup.config,
        config.replace("check_interval = \"200ms\"\n", ""),
    )
    .map_err(|e| e.to_string())?;
    let mut daemon = setup.start(&[]);
    // Let the daemon verify and settle into its poll loop.
    std::thread::sleep(Duration::from_secs(2));
    let mut row = Row {
        pickup: Vec::new(),
        prepare: Vec::new(),
        total: Vec::new(),
        handled: Vec::new(),
    };
    for i in 0..jobs {
        // Land at a random moment of the runner's poll cycle.
        std::thread::sleep(Duration::from_millis(500 + (now_ns() % 2500) as u64));
        let queued_wall = now_ns();
        let queued = Instant::now();
        let id = gl.enqueue(&JobSpec::new(&format!("bench-{i}")).script(&[SCRIPT]));
        let job = gl.wait_finished(id, Duration::from_mins(2));
        if job.state != JobState::Success {
            return Err(format!(
                "job {id} ended {:?}:\n{}",
                job.state,
                job.trace_text()
            ));
        }
        let start: u128 = std::fs::metadata(setup.builds_dir.join("main/0/T_START"))
            .and_then(|m| m.modified())
            .map_err(|e| format!("no T_START marker: {e}"))?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let picked = job.picked_at.ok_or("never picked")?;
        let finished = job.finished_at.ok_or("never finished")?;
        let picked_wall = queued_wall + picked.duration_since(queued).as_nanos();
        row.pickup.push(ms(start.saturating_sub(queued_wall)));
        row.prepare.push(ms(start.saturating_sub(picked_wall)));
        row.total
            .push(ms(finished.duration_since(queued).as_nanos()));
        row.handled
            .push(ms(finished.duration_since(picked).as_nanos()));
    }
    daemon.signal("TERM");
    daemon.wait(Duration::from_mins(1));
    if !gl.violations().is_empty() {
        return Err(format!("protocol violations: {:?}", gl.violations()));
    }
    Ok(row)
}

/// `sh -c SCRIPT` as the test user, or with `image`: `rbuild run IMAGE -- sh -c SCRIPT`
/// (pulled once beforehand, so the runs time the sandbox, not the pull).
fn direct(runs: usize, image: Option<&str>) -> Result<Vec<f64>, String> {
    let env = rbuild_e2e::Env::get().map_err(|m| m.to_string())?;
    let cache = env.user.tempdir().map_err(|e| e.to_string())?;
    let command = |pull: bool| {
        let mut c = match image {
            None => env.user.command("sh"),
            Some(image) => {
                let mut c = env.rbuild();
                c.arg("run")
                    .arg("--cache-dir")
                    .arg(cache.path().join("rbuild"));
                if pull {
                    c.arg("--pull");
                }
                c.args(["--env", "CI_BUILDS_DIR=/tmp", image, "--"])
                    .arg("sh");
                c
            }
        };
        c.args(["-c", SCRIPT])
            .env("CI_BUILDS_DIR", "/tmp")
            .current_dir("/");
        c
    };
    if image.is_some() {
        let out = command(true).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "`rbuild run` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = command(false).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the script failed when run directly: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        v.push(ms(t.elapsed().as_nanos()));
    }
    // Snapshots belong to subordinate ids: remove them from inside a user namespace.
    let _ = env
        .user
        .command("unshare")
        .args(["--user", "--map-auto", "--map-root-user", "rm", "-rf"])
        .arg(cache.path().join("rbuild"))
        .current_dir("/")
        .output();
    Ok(v)
}

fn main() -> std::process::ExitCode {
    let jobs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "rbuild-runner pickup and per-job overhead: {jobs} jobs per scenario, concurrency 1, executor `rbuild`"
    );
    println!(
        "host: {cores} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (_registry, image) = match rbuild_e2e::registry_with_busybox() {
        Ok(r) => r,
        Err(m) => {
            eprintln!("error: {m}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (mut direct, mut sandboxed) =
        match (direct(jobs.max(5), None), direct(jobs.max(5), Some(&image))) {
            (Ok(d), Ok(s)) => (d, s),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
    let direct_p50 = pct(&mut direct, 0.5);
    let sandboxed_p50 = pct(&mut sandboxed, 0.5);
    println!("script run directly (`sh -c`): p50 {direct_p50:.1} ms");
    println!(
        "script run directly in the sandbox (`rbuild run busybox -- sh -c`): p50 {sandboxed_p50:.1} ms"
    );
    println!();
    println!(
        "{:<26} {:>11} {:>11} {:>11} {:>15} {:>14} {:>13} {:>17} {:>16}",
        "scenario",
        "pickup p50",
        "pickup p90",
        "pickup max",
        "handed->script",
        "job total p50",
        "overhead p50",
        "over sandbox p50",
        "handed->done p50"
    );
    for (name, long_poll) in [
        ("long poll (GitLab holds)", true),
        ("no long poll (3 s pause)", false),
    ] {
        match scenario(jobs, long_poll) {
            Ok(mut r) => {
                let total = pct(&mut r.total, 0.5);
                println!(
                    "{:<26} {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>12.1} ms {:>11.1} ms {:>10.1} ms {:>14.1} ms {:>13.1} ms",
                    name,
                    pct(&mut r.pickup, 0.5),
                    pct(&mut r.pickup, 0.9),
                    pct(&mut r.pickup, 1.0),
                    pct(&mut r.prepare, 0.5),
                    total,
                    total - direct_p50,
                    total - sandboxed_p50,
                    pct(&mut r.handled, 0.5),
                );
            }
            Err(e) => {
                eprintln!("error: scenario `{name}`: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    println!();
    println!(
        "job total: queued -> final status accepted (pickup, prepare, script, cleanup, last trace patch, final update)"
    );
    println!(
        "overhead: job total minus the script run directly; over sandbox: minus the script run directly in the sandbox; handed->done: GitLab's answer -> final status accepted (no poll wait)"
    );
    std::process::ExitCode::SUCCESS
}

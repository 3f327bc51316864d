//! GitLab's Runner API, spoken natively: `POST runners/verify` with a stable `system_id`,
//! the `POST jobs/request` long poll (echoing `X-GitLab-Last-Update`), `PATCH
//! jobs/:id/trace` with `Content-Range` and 416 recovery, `PUT jobs/:id` with `state`,
//! `failure_reason`, `exit_code` and the trace checksum, and `POST jobs/:id/artifacts`.
//!
//! # Why not Collabora's `gitlab-runner` crate
//!
//! `gitlab-runner` 0.3.2 was evaluated (and its `gitlab-runner-mock` sibling for tests).
//! It does not cover what this runner must do: its job request sends no `last_update`
//! (no long polling), its job update sends only `token` and `state` (no `failure_reason`,
//! no `exit_code`, no `output.checksum`/`bytesize`, so no `script_failure` vs
//! `runner_system_failure` and no checksum validation), it advertises two features
//! instead of stating all of them, it does not handle 416 by resuming at the server's
//! offset or 202/412 on the final update, and it owns the job loop (a handler trait),
//! which leaves no room for our concurrency limit across instances, drain and crash
//! recovery. The mock likewise has no `runners/verify`, no `X-GitLab-Last-Update`, no
//! `Range` header on 416 and no check of `failure_reason`, `exit_code` or checksums, and it
//! panics on malformed input instead of answering like GitLab. So this module is our own
//! client (`reqwest`), and the tests use our own fake (`tests/src/gitlab.rs`) that
//! enforces the protocol as `reference/ci-integration.md` documents it.

pub mod client;
pub mod types;

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Failure reasons gitlab-runner may always send (`common/network.go`).
const ALWAYS_SUPPORTED: &[&str] = &[
    "script_failure",
    "runner_system_failure",
    "job_execution_timeout",
];

/// The `failure_reason` to send for `wanted`, given the values this job's GitLab accepts
/// (`features.failure_reasons`): `wanted` if listed, else its documented fallback if listed,
/// else nothing (GitLab then records `unknown_failure`). Never a value GitLab did not list.
pub fn failure_reason<'a>(wanted: &'a str, accepted: &[String]) -> Option<&'a str> {
    let listed = |r: &str| accepted.iter().any(|a| a == r);
    if listed(wanted) {
        return Some(wanted);
    }
    let fallback = match wanted {
        "image_pull_failure" | "runner_external_dependency_failure" => "runner_system_failure",
        "runner_configuration_error" => "script_failure",
        _ => "unknown_failure",
    };
    // A GitLab that lists nothing is older than `failure_reasons`; it accepts the three
    // classic reasons.
    if listed(fallback) || (accepted.is_empty() && ALWAYS_SUPPORTED.contains(&fallback)) {
        return Some(fallback);
    }
    if accepted.is_empty() && ALWAYS_SUPPORTED.contains(&wanted) {
        return Some(wanted);
    }
    None
}

/// The `system_id` of this host: `s_` and the first 12 hex digits of
/// HMAC-SHA256(key = `/etc/machine-id`, message = `gitlab-runner`), as gitlab-runner
/// derives it, so one host is one runner manager whichever runner runs on it. Without a
/// machine id, `r_` and 12 random characters, kept in `state_dir/system_id` so it stays
/// stable across restarts.
pub fn system_id(machine_id: Option<&str>, state_dir: &Path) -> std::io::Result<String> {
    if let Some(id) = machine_id.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(derive_system_id(id));
    }
    let file = state_dir.join("system_id");
    if let Ok(saved) = fs_err::read_to_string(&file) {
        let saved = saved.trim();
        if crate::config::valid_system_id(saved) {
            return Ok(saved.to_owned());
        }
    }
    let id: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(12)
        .collect();
    let id = format!("r_{id}");
    fs_err::write(&file, format!("{id}\n"))?;
    Ok(id)
}

fn derive_system_id(machine_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(machine_id.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"gitlab-runner");
    let digest = mac.finalize().into_bytes();
    format!("s_{}", &hex(&digest)[..12])
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_only_from_the_accepted_list() {
        let all: Vec<String> = [
            "script_failure",
            "runner_system_failure",
            "image_pull_failure",
            "job_execution_timeout",
            "unknown_failure",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failure_reason("image_pull_failure", &all),
            Some("image_pull_failure")
        );
        let old: Vec<String> = [
            "script_failure",
            "runner_system_failure",
            "job_execution_timeout",
            "unknown_failure",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failure_reason("image_pull_failure", &old),
            Some("runner_system_failure")
        );
        assert_eq!(
            failure_reason("runner_configuration_error", &old),
            Some("script_failure")
        );
        let tiny = vec!["script_failure".to_owned()];
        assert_eq!(failure_reason("job_execution_timeout", &tiny), None);
        assert_eq!(
            failure_reason("script_failure", &tiny),
            Some("script_failure")
        );
        assert_eq!(
            failure_reason("job_execution_timeout", &[]),
            Some("job_execution_timeout")
        );
        assert_eq!(
            failure_reason("image_pull_failure", &[]),
            Some("runner_system_failure")
        );
    }

    #[test]
    fn system_id_is_stable_and_well_formed() {
        let d = tempfile::tempdir().unwrap();
        let a = system_id(Some("0123456789abcdef0123456789abcdef\n"), d.path()).unwrap();
        assert_eq!(
            a,
            system_id(Some("0123456789abcdef0123456789abcdef"), d.path()).unwrap()
        );
        assert!(
            a.starts_with("s_") && crate::config::valid_system_id(&a),
            "{a}"
        );
        let r = system_id(None, d.path()).unwrap();
        assert!(
            r.starts_with("r_") && crate::config::valid_system_id(&r),
            "{r}"
        );
        assert_eq!(r, system_id(Some(" "), d.path()).unwrap());
    }
}

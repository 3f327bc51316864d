//! `workflow_job` webhook deliveries: signature, de-duplication, payload, label match.
//!
//! - `X-Hub-Signature-256: sha256=<hex>` is HMAC-SHA256 of the raw body with the webhook
//!   secret; it is checked in constant time (`hmac`'s `verify_slice`) before the body is
//!   parsed, and a body is never logged.
//! - `X-GitHub-Delivery` is a GUID per delivery; a redelivery repeats it. The last
//!   [`Deliveries::CAPACITY`] ids are remembered and a repeat is acknowledged and ignored.
//! - The payload's `workflow_job` is typed here with only the fields the fleet uses.
//!
//! **Label contract.** A job is for this fleet when every label of its `runs-on` is one of
//! the fleet's labels (case-insensitive; GitHub gives a job only to a runner that has all
//! of them) and at least one of them is not a generic label (`self-hosted`, `linux`,
//! `x64`, `arm64`, ...), so a plain `runs-on: self-hosted` job does not start rbuild
//! runners that another fleet should serve.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Labels every self-hosted runner may have; they alone never select this fleet.
pub const GENERIC_LABELS: &[&str] = &[
    "self-hosted",
    "linux",
    "windows",
    "macos",
    "x64",
    "x86",
    "arm",
    "arm64",
];

/// Largest delivery body accepted (GitHub caps payloads at 25 MB; a `workflow_job` event
/// is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Whether `signature` (the `X-Hub-Signature-256` header) is the HMAC-SHA256 of `body`
/// under `secret`. Constant time in the signature's content.
pub fn verify_signature(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature header value for `body` (what GitHub sends; used by tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut s = String::from("sha256=");
    for b in tag {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Delivery ids seen lately.
#[derive(Debug, Default)]
pub struct Deliveries {
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl Deliveries {
    /// How many ids are remembered.
    pub const CAPACITY: usize = 10_000;

    /// Records `id`; false if it was seen already.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }
}

/// A `workflow_job` event, as much of it as the fleet reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowJobEvent {
    /// `queued`, `waiting`, `in_progress` or `completed`.
    pub action: String,
    pub workflow_job: WorkflowJob,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowJob {
    pub id: u64,
    #[serde(default)]
    pub run_id: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Set once a runner took the job (null while queued).
    #[serde(default)]
    pub runner_name: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

impl Repository {
    /// `(owner, name)`.
    pub fn split(&self) -> Option<(&str, &str)> {
        self.full_name
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
    }
}

/// Whether a job with `runs_on` labels is for a fleet whose runners carry `ours`.
pub fn labels_match(runs_on: &[String], ours: &[String]) -> bool {
    let has = |l: &str| ours.iter().any(|o| o.eq_ignore_ascii_case(l));
    !runs_on.is_empty()
        && runs_on.iter().all(|l| has(l))
        && runs_on
            .iter()
            .any(|l| !GENERIC_LABELS.iter().any(|g| g.eq_ignore_ascii_case(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"action":"queued"}"#;
        let sig = sign(b"s3cret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify_signature(b"s3cret", body, Some(&sig)));
        assert!(!verify_signature(b"other", body, Some(&sig)));
        assert!(!verify_signature(b"s3cret", b"{}", Some(&sig)));
        assert!(!verify_signature(b"s3cret", body, None));
        assert!(!verify_signature(b"s3cret", body, Some("sha1=abc")));
        assert!(!verify_signature(
            b"s3cret",
            body,
            Some(&sig[..sig.len() - 2])
        ));
        let mut flipped = sig.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(!verify_signature(
            b"s3cret",
            body,
            Some(std::str::from_utf8(&flipped).unwrap())
        ));
    }

    #[test]
    fn deliveries_are_remembered_up_to_the_capacity() {
        let mut d = Deliveries::default();
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        for i in 0..Deliveries::CAPACITY {
            d.first_time(&i.to_string());
        }
        assert!(d.first_time("a"), "the oldest id was forgotten");
    }

    #[test]
    fn the_label_contract() {
        let ours: Vec<String> = ["self-hosted", "linux", "x64", "rbuild"]
            .map(String::from)
            .to_vec();
        let m = |l: &[&str]| {
            labels_match(
                &l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                &ours,
            )
        };
        assert!(m(&["self-hosted", "rbuild"]));
        assert!(m(&["RBUILD"]));
        assert!(m(&["self-hosted", "linux", "x64", "rbuild"]));
        assert!(!m(&["self-hosted"]), "generic labels alone are not ours");
        assert!(!m(&["self-hosted", "linux"]));
        assert!(!m(&["ubuntu-latest"]));
        assert!(!m(&["rbuild", "gpu"]), "a label we lack");
        assert!(!m(&[]));
    }

    #[test]
    fn the_documented_payload_parses() {
        let v: WorkflowJobEvent = serde_json::from_str(
            r#"{"action":"queued","workflow_job":{"id":289782451,"run_id":2202229078,"head_sha":"3484a3fb","status":"queued","conclusion":null,"name":"update","steps":[],"labels":["ubuntu-latest"],"runner_id":null,"runner_name":null},"repository":{"id":1,"name":"Hello-World","full_name":"Codertocat/Hello-World"},"installation":{"id":3456996}}"#,
        )
        .unwrap();
        assert_eq!(v.workflow_job.id, 289_782_451);
        assert_eq!(v.repository.split(), Some(("Codertocat", "Hello-World")));
        assert_eq!(v.installation.unwrap().id, 3_456_996);
        assert!(v.workflow_job.runner_name.is_none());
    }
}

//! GitHub Checks API request bodies for a list of diagnostics.
//!
//! The Checks API takes at most 50 annotations per request and appends the annotations of
//! each update to the run. [`check_run_requests`] therefore plans one `POST
//! /repos/{owner}/{repo}/check-runs` (status `in_progress`, the first 50 annotations), then
//! one `PATCH .../check-runs/{id}` per further 50, repeating the output title and summary;
//! the last request carries the conclusion and `completed_at`. When everything fits in one
//! request it is a single completed `POST`. Errors come first, so a runner that dies half
//! way has still reported the failures. The bodies are plain JSON values: the runner sends
//! them with its own HTTP client.

use serde_json::{Value, json};

use crate::diagnose::{Diagnostic, Severity};

/// Annotations the API accepts per request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// Longest annotation title the API accepts.
pub const MAX_TITLE: usize = 255;
/// Longest annotation message / raw details (64 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Longest output summary / text.
pub const MAX_SUMMARY: usize = 65_535;

/// HTTP method of a planned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `POST /repos/{owner}/{repo}/check-runs`
    Create,
    /// `PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}`
    Update,
}

/// One planned request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub body: Value,
}

/// What the check run is about.
#[derive(Debug, Clone)]
pub struct CheckRun<'a> {
    /// Check name, e.g. `rbuild`.
    pub name: &'a str,
    /// Commit the run belongs to.
    pub head_sha: &'a str,
    /// Path for diagnostics that name no file (the build's Dockerfile).
    pub default_path: &'a str,
    /// RFC 3339 time for `completed_at`.
    pub completed_at: &'a str,
}

/// Annotation level of a severity.
pub fn annotation_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "failure",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let marker = "…";
    let mut end = max - marker.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &s[..end])
}

/// The annotation object for one diagnostic.
pub fn annotation(d: &Diagnostic, default_path: &str) -> Value {
    let path = d.file.as_deref().unwrap_or(default_path);
    let start = d.file.as_ref().and(d.line).unwrap_or(1).max(1);
    let end = d.file.as_ref().and(d.end_line).unwrap_or(start).max(start);
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    if let Some(url) = &d.url {
        message.push('\n');
        message.push_str(url);
    }
    let mut a = json!({
        "path": path,
        "start_line": start,
        "end_line": end,
        "annotation_level": annotation_level(d.severity),
        "title": cut(&format!("{}: {}", d.id, d.title), MAX_TITLE),
        "message": cut(&message, MAX_MESSAGE),
    });
    if !d.evidence.is_empty() {
        a["raw_details"] = Value::String(cut(&d.evidence.join("\n"), MAX_MESSAGE));
    }
    a
}

/// The requests that report `diagnostics` as one check run.
pub fn check_run_requests(run: &CheckRun<'_>, diagnostics: &[Diagnostic]) -> Vec<Request> {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.severity));
    let annotations: Vec<Value> = sorted
        .iter()
        .map(|d| annotation(d, run.default_path))
        .collect();
    let counts = super::Counts::of(diagnostics);
    let title = format!("rbuild: {}", counts.describe());
    let summary = cut(&super::github::step_summary(diagnostics), MAX_SUMMARY);
    let conclusion = if counts.errors > 0 {
        "failure"
    } else {
        "success"
    };
    let output = |batch: &[Value]| {
        json!({
            "title": title,
            "summary": summary,
            "annotations": batch,
        })
    };
    let batches: Vec<&[Value]> = if annotations.is_empty() {
        vec![&[]]
    } else {
        annotations.chunks(ANNOTATIONS_PER_REQUEST).collect()
    };
    let last = batches.len() - 1;
    batches
        .iter()
        .enumerate()
        .map(|(i, batch)| {
            let mut body = if i == 0 {
                json!({
                    "name": run.name,
                    "head_sha": run.head_sha,
                    "status": "in_progress",
                    "output": output(batch),
                })
            } else {
                json!({ "output": output(batch) })
            };
            if i == last {
                body["status"] = json!("completed");
                body["conclusion"] = json!(conclusion);
                body["completed_at"] = json!(run.completed_at);
            }
            Request {
                method: if i == 0 {
                    Method::Create
                } else {
                    Method::Update
                },
                body,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    const RUN: CheckRun<'static> = CheckRun {
        name: "rbuild",
        head_sha: "ce587453ced02b1526dfb4cb910479d431683101",
        default_path: "Dockerfile",
        completed_at: "2026-11-30T12:00:00Z",
    };

    #[test]
    fn annotations_are_batched_fifty_per_request_errors_first() {
        let mut diags: Vec<Diagnostic> = (0..70)
            .map(|i| Cause::ClockSkew.warning(format!("w{i}")))
            .collect();
        diags.extend((0..53).map(|i| {
            Cause::RunFailed
                .error(format!("e{i}"))
                .at("Dockerfile", i + 1, i + 1)
        }));
        let reqs = check_run_requests(&RUN, &diags);
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].method, Method::Create);
        assert!(reqs[1..].iter().all(|r| r.method == Method::Update));
        let sizes: Vec<usize> = reqs
            .iter()
            .map(|r| r.body["output"]["annotations"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [50, 50, 23]);
        assert_eq!(reqs[0].body["status"], "in_progress");
        assert_eq!(reqs[0].body["head_sha"], RUN.head_sha);
        assert!(reqs[0].body.get("conclusion").is_none());
        assert!(reqs[1].body.get("conclusion").is_none());
        assert_eq!(reqs[2].body["conclusion"], "failure");
        assert_eq!(reqs[2].body["completed_at"], RUN.completed_at);
        // Every request repeats title and summary; the union is the full set, errors first.
        let all: Vec<&Value> = reqs
            .iter()
            .flat_map(|r| r.body["output"]["annotations"].as_array().unwrap())
            .collect();
        assert_eq!(all.len(), 123);
        assert!(all[..53].iter().all(|a| a["annotation_level"] == "failure"));
        assert!(all[53..].iter().all(|a| a["annotation_level"] == "warning"));
        for r in &reqs {
            assert_eq!(r.body["output"]["title"], "rbuild: 53 errors, 70 warnings");
            assert!(r.body["output"]["summary"].as_str().unwrap().len() <= MAX_SUMMARY);
        }
    }

    #[test]
    fn a_small_report_is_one_completed_create() {
        let reqs = check_run_requests(&RUN, &[Cause::ClockSkew.warning("late")]);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, Method::Create);
        assert_eq!(reqs[0].body["status"], "completed");
        assert_eq!(reqs[0].body["conclusion"], "success");
        let a = &reqs[0].body["output"]["annotations"][0];
        assert_eq!(a["path"], "Dockerfile");
        assert_eq!(a["start_line"], 1);
        assert_eq!(a["title"], "clock-skew: the clock is wrong");
        let none = check_run_requests(&RUN, &[]);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].body["output"]["annotations"], json!([]));
    }

    #[test]
    fn long_fields_are_cut_to_the_api_limits() {
        let d = Cause::RunFailed
            .error("é".repeat(40_000))
            .with_evidence("x".repeat(70_000));
        let a = annotation(&d, "Dockerfile");
        assert!(a["message"].as_str().unwrap().len() <= MAX_MESSAGE);
        assert!(a["raw_details"].as_str().unwrap().len() <= MAX_MESSAGE);
        assert!(a["message"].as_str().unwrap().ends_with('…'));
    }
}

//! GitLab Code Quality report (`--codequality-file`).
//!
//! GitLab reads a JSON array of CodeClimate-style issues from a job's
//! `artifacts:reports:codequality` file and shows them in the merge request. Each entry
//! needs `description`, `check_name`, `fingerprint`, `severity`
//! (`info|minor|major|critical|blocker`), `location.path` and `location.lines.begin`; no
//! byte-order mark. We set `check_name` to the diagnostic id, and the fingerprint to a
//! SHA-256 of id, path and the normalised instruction, never the line number, so a finding
//! keeps its identity when lines move. Findings with the same fingerprint are one finding
//! in GitLab; we keep the most severe.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::diagnose::{Diagnostic, Severity};

/// One Code Quality issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Always `issue` (CodeClimate).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub check_name: String,
    pub description: String,
    /// CodeClimate category; GitLab ignores it.
    pub categories: Vec<&'static str>,
    pub content: Content,
    pub fingerprint: String,
    pub severity: &'static str,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Content {
    /// Markdown: the hint and the link.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub path: String,
    pub lines: Lines,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lines {
    pub begin: u32,
    pub end: u32,
}

/// GitLab severity of a diagnostic severity: a failed build is critical.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "critical",
        Severity::Warning => "minor",
        Severity::Notice => "info",
    }
}

/// The instruction of a step name with the `[stage 3/7]` prefix removed and whitespace
/// collapsed: `[build 3/7] RUN  make` -> `RUN make`.
pub fn normalised_instruction(step: &str) -> String {
    let s = step.trim_start();
    let s = match s.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((_, after)) => after,
        None => s,
    };
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex SHA-256 of id, path and normalised instruction (NUL separated).
pub fn fingerprint(id: &str, path: &str, step: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(normalised_instruction(step.unwrap_or("")).as_bytes());
    h.finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The report for `diagnostics`. Diagnostics without a file are placed on line 1 of
/// `default_path` (the build's Dockerfile), since GitLab needs a location.
pub fn codequality(diagnostics: &[Diagnostic], default_path: &str) -> Vec<Issue> {
    let mut issues: Vec<(Severity, Issue)> = Vec::new();
    for d in diagnostics {
        let path = d.file.clone().unwrap_or_else(|| default_path.to_owned());
        let begin = d.file.as_ref().and(d.line).unwrap_or(1).max(1);
        let end = d.file.as_ref().and(d.end_line).unwrap_or(begin).max(begin);
        let fp = fingerprint(&d.id, &path, d.step.as_deref());
        let mut body = String::new();
        if let Some(hint) = &d.hint {
            body.push_str("**Fix:** ");
            body.push_str(hint);
        }
        if let Some(url) = &d.url {
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(url);
        }
        let mut description = d.message.clone();
        if let Some(p) = &d.platform
            && !description.contains(p.as_str())
        {
            description = format!("{description} ({p})");
        }
        let issue = Issue {
            kind: "issue",
            check_name: d.id.clone(),
            description,
            categories: vec!["Bug Risk"],
            content: Content { body },
            fingerprint: fp,
            severity: severity(d.severity),
            location: Location {
                path,
                lines: Lines { begin, end },
            },
        };
        match issues
            .iter_mut()
            .find(|(_, i)| i.fingerprint == issue.fingerprint)
        {
            Some((s, existing)) => {
                if d.severity > *s {
                    *s = d.severity;
                    *existing = issue;
                }
            }
            None => issues.push((d.severity, issue)),
        }
    }
    issues.into_iter().map(|(_, i)| i).collect()
}

/// The file content: a JSON array, UTF-8 without a byte-order mark, final newline.
pub fn to_file_bytes(issues: &[Issue]) -> Vec<u8> {
    let mut bytes =
        serde_json::to_vec_pretty(issues).expect("an Issue holds only strings and numbers");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    #[test]
    fn instructions_are_normalised_for_the_fingerprint() {
        assert_eq!(
            normalised_instruction("[build 3/7] RUN  make \t all"),
            "RUN make all"
        );
        assert_eq!(normalised_instruction("RUN make"), "RUN make");
        assert_eq!(normalised_instruction(""), "");
    }

    #[test]
    fn the_fingerprint_ignores_line_numbers_and_stage_numbering() {
        let a = Cause::RunFailed
            .error("x")
            .at("Dockerfile", 3, 3)
            .with_step("[build 3/7] RUN make");
        let moved = Cause::RunFailed
            .error("x")
            .at("Dockerfile", 30, 31)
            .with_step("[build 4/8] RUN make");
        let other_file = Cause::RunFailed
            .error("x")
            .at("web/Dockerfile", 3, 3)
            .with_step("[build 3/7] RUN make");
        let fa = codequality(&[a], "Dockerfile");
        let fm = codequality(&[moved], "Dockerfile");
        let fo = codequality(&[other_file], "Dockerfile");
        assert_eq!(fa[0].fingerprint, fm[0].fingerprint);
        assert_ne!(fa[0].fingerprint, fo[0].fingerprint);
        assert_eq!(fa[0].fingerprint.len(), 64);
        assert_eq!(fm[0].location.lines, Lines { begin: 30, end: 31 });
    }

    #[test]
    fn entries_have_the_fields_gitlab_documents() {
        let diags = [
            Cause::XattrSecuritySelinuxInLayer
                .warning("dropped `security.selinux` from 3 files")
                .at("Dockerfile", 1, 1)
                .with_step("[1/2] FROM base")
                .with_platform("linux/arm64"),
            Cause::CgroupV1OrNoDelegation.notice("cgroup v1"),
        ];
        let v = serde_json::to_value(codequality(&diags, "build/Dockerfile")).unwrap();
        assert_eq!(
            v[0],
            serde_json::json!({
                "type": "issue",
                "check_name": "xattr-security-selinux-in-layer",
                "description": "dropped `security.selinux` from 3 files (linux/arm64)",
                "categories": ["Bug Risk"],
                "content": {"body": format!("**Fix:** {}\n\n{}", Cause::XattrSecuritySelinuxInLayer.entry().hint, Cause::XattrSecuritySelinuxInLayer.url())},
                "fingerprint": fingerprint("xattr-security-selinux-in-layer", "Dockerfile", Some("FROM base")),
                "severity": "minor",
                "location": {"path": "Dockerfile", "lines": {"begin": 1, "end": 1}},
            })
        );
        assert_eq!(v[1]["location"]["path"], "build/Dockerfile");
        assert_eq!(v[1]["location"]["lines"]["begin"], 1);
        assert_eq!(v[1]["severity"], "info");
    }

    #[test]
    fn the_same_finding_twice_is_one_entry_with_the_higher_severity() {
        let d = |s| {
            Cause::RunFailed
                .diagnostic(s, "m")
                .at("Dockerfile", 2, 2)
                .with_step("RUN x")
        };
        let issues = codequality(&[d(Severity::Warning), d(Severity::Error)], "Dockerfile");
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].severity, "critical");
        let bytes = to_file_bytes(&issues);
        assert_eq!(bytes[0], b'[');
    }
}

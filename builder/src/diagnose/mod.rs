//! Diagnostics: what rbuild tells users about a problem, with a stable id, a place in the
//! Dockerfile when one applies, an explanation and a fix.
//!
//! This module owns:
//! - the [`Diagnostic`] record, the JSON contract of `--diagnostics-file` (`DESIGN.md`);
//! - the failure-cause [`catalog`] ([`Cause`]: stable ids other modules classify with);
//! - the detectors that need no build engine: the log-[`signatures`] matcher for failed
//!   steps, [`layerscan`] (tar headers before unpacking) and [`behaviour`] (what a step
//!   left running);
//! - the [`render`]ers: human, JSON, GitHub workflow commands and step summary, GitLab Code
//!   Quality, and Checks API payloads;
//! - the host [`probe`]s behind `rbuild doctor`;
//! - the catalog as [`docs`]: `docs/failures/<id>.md` pages and `rbuild explain` text.
//!
//! Other modules create diagnostics (classified at their source: [`Cause`], [`Diagnosed`]
//! errors, warnings into a [`Collector`]); they never render them.
//! Nothing here creates namespaces or mounts itself: probes that need a user namespace run
//! `unshare(1)` as a child process.

pub mod behaviour;
pub mod catalog;
pub mod docs;
pub mod failure;
pub mod layerscan;
pub mod probe;
pub mod render;
pub mod signatures;

pub use catalog::Cause;
pub use failure::{Collector, Diagnosed, diagnostic_of};

use serde::{Deserialize, Serialize};

/// How bad a diagnostic is. Maps to GitHub annotation levels and GitLab severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational; nothing is wrong.
    Notice,
    /// Something was wrong or was changed automatically; the build went on.
    Warning,
    /// The build failed because of it.
    Error,
}

/// One diagnostic. Field names are a stable contract (`--diagnostics-file` holds a JSON
/// array of these): never rename one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Stable kebab-case id: a failure-cause catalog id or a Dockerfile rule id.
    pub id: String,
    pub severity: Severity,
    /// Short title (one line).
    pub title: String,
    /// What happened, in plain words, naming the values involved.
    pub message: String,
    /// How to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The Dockerfile (or other input file) it is about, as the user named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// First line (1-based) of the instruction it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Last line (1-based, inclusive) of that instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    /// Platform of the build it happened in, e.g. `linux/arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The build step, e.g. `[build 3/7] RUN make`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Facts that support it: log lines, paths, ports, processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Documentation page for this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the required fields; add the rest with the `with_*` methods.
    pub fn new(
        id: impl Into<String>,
        severity: Severity,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            id: id.into(),
            severity,
            title: title.into(),
            message: message.into(),
            hint: None,
            file: None,
            line: None,
            end_line: None,
            platform: None,
            step: None,
            evidence: Vec::new(),
            url: None,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Places the diagnostic on lines `line..=end_line` of `file`.
    #[must_use]
    pub fn at(mut self, file: impl Into<String>, line: u32, end_line: u32) -> Self {
        self.file = Some(file.into());
        self.line = Some(line);
        self.end_line = Some(end_line.max(line));
        self
    }

    #[must_use]
    pub fn with_platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    #[must_use]
    pub fn with_step(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }

    #[must_use]
    pub fn with_evidence(mut self, evidence: impl Into<String>) -> Self {
        self.evidence.push(evidence.into());
        self
    }

    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_contract_field_names() {
        let d = Diagnostic::new(
            "undefined-stage",
            Severity::Error,
            "undefined stage",
            "`COPY --from=buidl` names no stage",
        )
        .with_hint("did you mean `build`?")
        .at("Dockerfile", 12, 12);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "undefined-stage",
                "severity": "error",
                "title": "undefined stage",
                "message": "`COPY --from=buidl` names no stage",
                "hint": "did you mean `build`?",
                "file": "Dockerfile",
                "line": 12,
                "end_line": 12,
            })
        );
        let back: Diagnostic = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }
}

//! Renderers: the only code that turns [`Diagnostic`]s into text for people and machines.
//!
//! - [`human`]: `error[id]: ...` / `hint: ...` blocks on stderr (`STYLE.md`);
//! - [`json`]: the `--diagnostics-file` array and `--message-format json` lines;
//! - [`github`]: workflow commands (`::error file=...::`), exactly as `@actions/core`
//!   escapes them, at most 10 per level with the rest summarised, and the Markdown table
//!   for `$GITHUB_STEP_SUMMARY`;
//! - [`gitlab`]: the Code Quality report (`--codequality-file`);
//! - [`checks`]: GitHub Checks API request bodies, 50 annotations per request, for the
//!   runner.
//!
//! [`Outputs::emit`] writes all of them for one command, as `rbuild build` needs.

pub mod checks;
pub mod github;
pub mod gitlab;
pub mod human;
pub mod json;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Diagnostic, Severity};

/// How diagnostics are printed on stderr (`--message-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `error[id]: ...` and `hint: ...` lines.
    Human,
    /// One JSON diagnostic per line.
    Json,
    /// GitHub Actions workflow commands.
    Github,
}

impl Format {
    /// The format to use: the one asked for, else `github` when running in GitHub Actions
    /// (`GITHUB_ACTIONS=true`), else `human`.
    pub fn resolve(explicit: Option<Format>, github_actions: Option<&str>) -> Format {
        explicit.unwrap_or(if github_actions == Some("true") {
            Format::Github
        } else {
            Format::Human
        })
    }

    /// [`Format::resolve`] with `GITHUB_ACTIONS` from the environment.
    pub fn from_env(explicit: Option<Format>) -> Format {
        let env = std::env::var(crate::envvars::GITHUB_ACTIONS).ok();
        Format::resolve(explicit, env.as_deref())
    }
}

/// Counts per severity, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub errors: usize,
    pub warnings: usize,
    pub notices: usize,
}

impl Counts {
    pub fn of(diagnostics: &[Diagnostic]) -> Counts {
        let mut c = Counts::default();
        for d in diagnostics {
            match d.severity {
                Severity::Error => c.errors += 1,
                Severity::Warning => c.warnings += 1,
                Severity::Notice => c.notices += 1,
            }
        }
        c
    }

    /// `2 errors, 1 warning` (zero counts left out; `no problems` when all are zero).
    pub fn describe(self) -> String {
        let parts: Vec<String> = [
            (self.errors, "error"),
            (self.warnings, "warning"),
            (self.notices, "notice"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        .collect();
        if parts.is_empty() {
            "no problems".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Where one command's diagnostics go.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub format: Format,
    /// Colour the human format (a terminal, `NO_COLOR` unset).
    pub colour: bool,
    /// `--diagnostics-file`.
    pub diagnostics_file: Option<PathBuf>,
    /// `--codequality-file`.
    pub codequality_file: Option<PathBuf>,
    /// `$GITHUB_STEP_SUMMARY`, appended to in the github format.
    pub step_summary: Option<PathBuf>,
    /// Path for diagnostics that name no file (the Dockerfile of the build), as the
    /// repository knows it.
    pub default_path: String,
}

impl Outputs {
    /// Renders `diagnostics` to `stderr` in the chosen format and writes the requested
    /// files. Files are written whole (temporary file, then rename) or not at all.
    pub fn emit(&self, diagnostics: &[Diagnostic], stderr: &mut dyn Write) -> io::Result<()> {
        match self.format {
            Format::Human => human::write(stderr, diagnostics, self.colour)?,
            Format::Json => json::write_lines(stderr, diagnostics)?,
            Format::Github => {
                for line in github::workflow_commands(diagnostics) {
                    writeln!(stderr, "{line}")?;
                }
                if let Some(path) = &self.step_summary
                    && !diagnostics.is_empty()
                {
                    github::append_step_summary(path, diagnostics)?;
                }
            }
        }
        stderr.flush()?;
        if let Some(path) = &self.diagnostics_file {
            write_atomic(path, &json::to_file_bytes(diagnostics))?;
        }
        if let Some(path) = &self.codequality_file {
            let report = gitlab::codequality(diagnostics, &self.default_path);
            write_atomic(path, &gitlab::to_file_bytes(&report))?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers never see half a file. Errors name the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name_err = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("cannot {what} `{}`: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` names no file", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(name_err(e, "write"));
    }
    Ok(())
}

/// `Dockerfile:12` or `Dockerfile:12-14`, when the diagnostic has a file.
pub(crate) fn location(d: &Diagnostic) -> Option<String> {
    let file = d.file.as_deref()?;
    Some(match (d.line, d.end_line) {
        (Some(l), Some(e)) if e > l => format!("{file}:{l}-{e}"),
        (Some(l), _) => format!("{file}:{l}"),
        (None, _) => file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    #[test]
    fn github_is_the_default_in_github_actions_only() {
        assert_eq!(Format::resolve(None, Some("true")), Format::Github);
        assert_eq!(Format::resolve(None, None), Format::Human);
        assert_eq!(Format::resolve(None, Some("false")), Format::Human);
        assert_eq!(
            Format::resolve(Some(Format::Human), Some("true")),
            Format::Human
        );
        assert_eq!(Format::resolve(Some(Format::Json), None), Format::Json);
    }

    #[test]
    fn counts_read_like_english() {
        let d = |s| Diagnostic::new("x", s, "t", "m");
        let all = [d(Severity::Error), d(Severity::Error), d(Severity::Warning)];
        assert_eq!(Counts::of(&all).describe(), "2 errors, 1 warning");
        assert_eq!(Counts::of(&[]).describe(), "no problems");
    }

    #[test]
    fn emit_writes_every_requested_output_whole() {
        let dir = tempfile::tempdir().unwrap();
        let diags = vec![
            Cause::BinfmtNotRegistered
                .error("cannot run `linux/arm64` programs")
                .at("Dockerfile", 4, 4)
                .with_step("[2/3] RUN make"),
            Cause::CgroupV1OrNoDelegation.warning("no delegated cgroup"),
        ];
        let outputs = Outputs {
            format: Format::Github,
            colour: false,
            diagnostics_file: Some(dir.path().join("diag.json")),
            codequality_file: Some(dir.path().join("gl-code-quality-report.json")),
            step_summary: Some(dir.path().join("summary.md")),
            default_path: "Dockerfile".to_owned(),
        };
        let mut err = Vec::new();
        outputs.emit(&diags, &mut err).unwrap();
        let text = String::from_utf8(err).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with(
                "::error title=binfmt-not-registered,file=Dockerfile,line=4,endLine=4::"
            )
        );
        let back: Vec<Diagnostic> =
            serde_json::from_slice(&std::fs::read(dir.path().join("diag.json")).unwrap()).unwrap();
        assert_eq!(back, diags);
        let cq: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("gl-code-quality-report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cq.as_array().unwrap().len(), 2);
        let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(summary.contains("binfmt-not-registered"));
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_file_that_cannot_be_written_is_an_error_naming_it() {
        let err = write_atomic(Path::new("/nonexistent-dir/x.json"), b"[]").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.json"), "{err}");
    }
}

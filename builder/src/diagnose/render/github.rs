//! GitHub Actions: workflow commands and the step summary.
//!
//! A workflow command is one line, `::error title=ID,file=F,line=N,endLine=M::MESSAGE`,
//! which the runner turns into an annotation on that file and line. The text is produced
//! exactly as GitHub's own `@actions/core` produces it (`core.error(message, {title, file,
//! startLine, endLine})`): properties in the order title, file, line, endLine, empty ones
//! left out; data escapes `%`, CR and LF; property values also escape `:` and `,`. An
//! end-to-end test compares our output with `@actions/core` byte for byte.
//!
//! GitHub keeps at most 10 annotations per level (error, warning, notice) per step and
//! silently drops the rest, so [`workflow_commands`] emits at most 10 per level: with
//! more, 9 of them and one that summarises the others. Every diagnostic also goes into the
//! Markdown table appended to `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use crate::diagnose::{Diagnostic, Severity};

/// Annotations GitHub shows per level and step.
pub const MAX_PER_LEVEL: usize = 10;

/// Size GitHub accepts for one step summary (1 MiB); we stay below it.
pub const MAX_SUMMARY_BYTES: usize = 1024 * 1024 - 4096;

/// How many evidence lines an annotation quotes.
const EVIDENCE_LINES: usize = 5;

/// Escapes command data (the message) as `@actions/core` does.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property value as `@actions/core` does.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The workflow command name for a severity.
pub fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
    }
}

/// Annotation properties, as `@actions/core`'s `AnnotationProperties`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub title: Option<String>,
    pub file: Option<String>,
    pub start_line: Option<u32>,
    pub end_line: Option<u32>,
}

/// One workflow command line (without the line ending).
pub fn command(name: &str, props: &Properties, message: &str) -> String {
    let mut out = format!("::{name}");
    // `toCommandProperties` maps any non-empty property object to all six keys, and
    // `Command.toString` then writes a space and every key whose value is truthy.
    let values: [(&str, Option<String>); 4] = [
        ("title", props.title.clone()),
        ("file", props.file.clone()),
        ("line", props.start_line.map(|n| n.to_string())),
        ("endLine", props.end_line.map(|n| n.to_string())),
    ];
    if values.iter().any(|(_, v)| v.is_some()) {
        out.push(' ');
        let mut first = true;
        for (key, value) in values {
            let Some(value) = value.filter(|v| !v.is_empty() && v != "0") else {
                continue;
            };
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{key}={}", escape_property(&value));
        }
    }
    out.push_str("::");
    out.push_str(&escape_data(message));
    out
}

/// The properties of a diagnostic's annotation: its id as the title, its file and lines.
pub fn properties(d: &Diagnostic) -> Properties {
    Properties {
        title: Some(d.id.clone()),
        file: d.file.clone(),
        start_line: d.file.as_ref().and(d.line),
        end_line: d.file.as_ref().and(d.line).map(|l| d.end_line.unwrap_or(l)),
    }
}

/// The annotation text: the message, some evidence, the hint and the link.
pub fn message(d: &Diagnostic) -> String {
    let mut m = d.message.clone();
    for e in d.evidence.iter().take(EVIDENCE_LINES) {
        m.push_str("\n  ");
        m.push_str(e);
    }
    if d.evidence.len() > EVIDENCE_LINES {
        let _ = write!(m, "\n  ({} more)", d.evidence.len() - EVIDENCE_LINES);
    }
    if let Some(hint) = &d.hint {
        m.push_str("\nhint: ");
        m.push_str(hint);
    }
    if let Some(url) = &d.url {
        m.push('\n');
        m.push_str(url);
    }
    m
}

/// The workflow command for one diagnostic.
pub fn workflow_command(d: &Diagnostic) -> String {
    command(level(d.severity), &properties(d), &message(d))
}

/// The workflow commands for one step's diagnostics: at most [`MAX_PER_LEVEL`] per level.
/// When a level has more, the first nine are emitted and a tenth (after all others)
/// summarises the rest by id and points to the step summary.
pub fn workflow_commands(diagnostics: &[Diagnostic]) -> Vec<String> {
    let levels = [Severity::Error, Severity::Warning, Severity::Notice];
    let total = |s: Severity| diagnostics.iter().filter(|d| d.severity == s).count();
    let keep = |s: Severity| {
        if total(s) > MAX_PER_LEVEL {
            MAX_PER_LEVEL - 1
        } else {
            MAX_PER_LEVEL
        }
    };
    let mut seen = [0usize; 3];
    let mut lines = Vec::new();
    let mut dropped: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for d in diagnostics {
        let i = levels.iter().position(|s| *s == d.severity).unwrap_or(0);
        seen[i] += 1;
        if seen[i] <= keep(d.severity) {
            lines.push(workflow_command(d));
        } else {
            dropped[i].push(&d.id);
        }
    }
    for (i, ids) in dropped.iter().enumerate() {
        if ids.is_empty() {
            continue;
        }
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for id in ids {
            match counts.iter_mut().find(|(x, _)| x == id) {
                Some((_, n)) => *n += 1,
                None => counts.push((id, 1)),
            }
        }
        let list: Vec<String> = counts
            .iter()
            .map(|(id, n)| {
                if *n == 1 {
                    (*id).to_owned()
                } else {
                    format!("{id} (x{n})")
                }
            })
            .collect();
        let word = level(levels[i]);
        let msg = format!(
            "{} more {word}{} not shown as annotations (GitHub shows {MAX_PER_LEVEL} per level and step): {}. All are listed in the step summary and in `--diagnostics-file`.",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
        lines.push(command(
            word,
            &Properties {
                title: Some("rbuild".to_owned()),
                ..Properties::default()
            },
            &msg,
        ));
    }
    lines
}

/// A fresh random token for `::stop-commands::`, from the kernel's random source.
pub fn stop_token() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().fold(String::from("rbuild-"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The line that makes the runner ignore workflow commands until [`resume_commands`] with
/// the same token: print it before echoing untrusted output (a step's log), so the output
/// cannot inject annotations, masks or environment changes.
pub fn stop_commands(token: &str) -> String {
    format!("::stop-commands::{token}")
}

/// The line that turns workflow commands back on after [`stop_commands`].
pub fn resume_commands(token: &str) -> String {
    format!("::{token}::")
}

/// Escapes text for a Markdown table cell: no HTML, no cell breaks, one line.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The step-summary Markdown: a heading with the counts and one table row per diagnostic,
/// kept under GitHub's size limit.
pub fn step_summary(diagnostics: &[Diagnostic]) -> String {
    let counts = super::Counts::of(diagnostics);
    let mut md = format!("### rbuild: {}\n\n", counts.describe());
    if diagnostics.is_empty() {
        return md;
    }
    md.push_str("| level | id | where | message | fix |\n|---|---|---|---|---|\n");
    let mut order: Vec<&Diagnostic> = diagnostics.iter().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.severity));
    for (i, d) in order.iter().enumerate() {
        let id = match &d.url {
            Some(url) => format!("[`{}`]({url})", d.id),
            None => format!("`{}`", d.id),
        };
        let mut place = super::location(d)
            .map(|l| format!("`{}`", cell(&l)))
            .unwrap_or_default();
        if let Some(p) = &d.platform {
            let _ = write!(place, " {}", cell(p));
        }
        let mut text = cell(&d.message);
        for e in d.evidence.iter().take(EVIDENCE_LINES) {
            let _ = write!(text, "<br><code>{}</code>", cell(e));
        }
        let row = format!(
            "| {} | {id} | {place} | {text} | {} |\n",
            level(d.severity),
            d.hint.as_deref().map(cell).unwrap_or_default()
        );
        if md.len() + row.len() > MAX_SUMMARY_BYTES {
            let _ = writeln!(
                md,
                "\n{} more not shown (step summary size limit); see `--diagnostics-file`.",
                order.len() - i
            );
            break;
        }
        md.push_str(&row);
    }
    md
}

/// Appends [`step_summary`] to the `$GITHUB_STEP_SUMMARY` file.
pub fn append_step_summary(path: &Path, diagnostics: &[Diagnostic]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open `{}`: {e}", path.display())))?;
    f.write_all(step_summary(diagnostics).as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write `{}`: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    #[test]
    fn escaping_follows_actions_core() {
        assert_eq!(
            escape_data("100% done\r\nnext: a,b"),
            "100%25 done%0D%0Anext: a,b"
        );
        assert_eq!(escape_property("C:\\x,y%\n"), "C%3A\\x%2Cy%25%0A");
        // `%` first, so an escape is never escaped twice.
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn a_command_has_the_properties_in_order_and_skips_empty_ones() {
        let props = Properties {
            title: Some("xattr-security-selinux-in-layer".to_owned()),
            file: Some("Dockerfile".to_owned()),
            start_line: Some(12),
            end_line: Some(12),
        };
        assert_eq!(
            command("error", &props, "dropped labels"),
            "::error title=xattr-security-selinux-in-layer,file=Dockerfile,line=12,endLine=12::dropped labels"
        );
        let no_file = Properties {
            title: Some("t".to_owned()),
            ..Properties::default()
        };
        assert_eq!(command("notice", &no_file, "m"), "::notice title=t::m");
        assert_eq!(
            command("warning", &Properties::default(), "m"),
            "::warning::m"
        );
        let empty_title = Properties {
            title: Some(String::new()),
            start_line: Some(0),
            ..Properties::default()
        };
        // Keys present but all falsy: `@actions/core` still writes the space.
        assert_eq!(command("error", &empty_title, "m"), "::error ::m");
    }

    #[test]
    fn a_diagnostic_becomes_one_escaped_line() {
        let d = Cause::HostNetnsPortCollision
            .warning("process `nc` still listened on 0.0.0.0:5432, 100% sure")
            .at("ci/Dockerfile,v2", 7, 9)
            .with_evidence("tcp LISTEN 0.0.0.0:5432");
        let line = workflow_command(&d);
        assert!(!line.contains('\n'));
        assert!(line.starts_with(
            "::warning title=host-netns-port-collision,file=ci/Dockerfile%2Cv2,line=7,endLine=9::process `nc` still listened on 0.0.0.0:5432, 100%25 sure%0A  tcp LISTEN 0.0.0.0:5432%0Ahint: "
        ), "{line}");
        assert!(line.ends_with("docs/failures/host-netns-port-collision.md"));
    }

    #[test]
    fn at_most_ten_per_level_with_the_rest_summarised() {
        let mut diags: Vec<Diagnostic> = (0..14)
            .map(|i| Cause::RunFailed.error(format!("failure {i}")))
            .collect();
        diags.push(Cause::SysctlWriteInBuild.error("sysctl"));
        diags.extend((0..10).map(|i| Cause::ClockSkew.warning(format!("w{i}"))));
        diags.push(Cause::CgroupV1OrNoDelegation.notice("n"));
        let lines = workflow_commands(&diags);
        let errors = lines.iter().filter(|l| l.starts_with("::error")).count();
        let warnings = lines.iter().filter(|l| l.starts_with("::warning")).count();
        let notices = lines.iter().filter(|l| l.starts_with("::notice")).count();
        assert_eq!((errors, warnings, notices), (10, 10, 1));
        let summary = lines.last().unwrap();
        assert_eq!(
            summary,
            "::error title=rbuild::6 more errors not shown as annotations (GitHub shows 10 per level and step): run-failed (x5), sysctl-write-in-build. All are listed in the step summary and in `--diagnostics-file`."
        );
        // Exactly ten of a level need no summary.
        let ten: Vec<Diagnostic> = (0..10)
            .map(|i| Cause::RunFailed.error(format!("{i}")))
            .collect();
        assert!(
            workflow_commands(&ten)
                .iter()
                .all(|l| l.contains("title=run-failed"))
        );
    }

    #[test]
    fn untrusted_output_can_be_fenced_off() {
        let a = stop_token().unwrap();
        let b = stop_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), "rbuild-".len() + 32);
        assert_eq!(stop_commands(&a), format!("::stop-commands::{a}"));
        assert_eq!(resume_commands(&a), format!("::{a}::"));
    }

    #[test]
    fn the_step_summary_is_a_safe_markdown_table() {
        let d = Cause::RunFailed
            .error("step `RUN a | b` failed <script>")
            .at("Dockerfile", 3, 3)
            .with_platform("linux/arm64")
            .with_evidence("x|y");
        let md = step_summary(&[d, Cause::ClockSkew.warning("late")]);
        assert!(md.starts_with("### rbuild: 1 error, 1 warning\n\n| level | id | where | message | fix |\n|---|---|---|---|---|\n| error | [`run-failed`]("));
        assert!(md.contains("| `Dockerfile:3` linux/arm64 | step `RUN a \\| b` failed &lt;script&gt;<br><code>x\\|y</code> |"), "{md}");
        assert_eq!(md.lines().count(), 6);
        assert_eq!(step_summary(&[]), "### rbuild: no problems\n\n");
    }

    #[test]
    fn a_huge_summary_stays_under_the_limit() {
        let big = "x".repeat(60_000);
        let diags: Vec<Diagnostic> = (0..40)
            .map(|_| Cause::RunFailed.error(big.clone()))
            .collect();
        let md = step_summary(&diags);
        assert!(md.len() <= MAX_SUMMARY_BYTES + 200, "{}", md.len());
        assert!(md.contains("more not shown"));
    }
}

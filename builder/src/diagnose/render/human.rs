//! The human format: one block per diagnostic, in the `STYLE.md` voice.
//!
//! ```text
//! error[apt-sandbox-setgroups]: apt cannot drop privileges to its `_apt` user
//!   --> Dockerfile:12-13 (linux/arm64, [build 3/7] RUN apt-get update)
//!   step `[build 3/7] RUN apt-get update` exited with code 100; its output shows: ...
//!   | E: setgroups 65534 failed - setgroups (22: Invalid argument)
//! hint: give the building user a subordinate id range ...
//!   more: `rbuild explain apt-sandbox-setgroups`
//! ```

use std::io::{self, Write};

use crate::diagnose::{Cause, Diagnostic, Severity};

/// Writes every diagnostic, separated by blank lines.
pub fn write(out: &mut dyn Write, diagnostics: &[Diagnostic], colour: bool) -> io::Result<()> {
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        write_one(out, d, colour)?;
    }
    Ok(())
}

/// Writes one diagnostic.
pub fn write_one(out: &mut dyn Write, d: &Diagnostic, colour: bool) -> io::Result<()> {
    let paint = |code: &'static str| if colour { code } else { "" };
    let (level, level_colour) = match d.severity {
        Severity::Error => ("error", "\x1b[1;31m"),
        Severity::Warning => ("warning", "\x1b[1;33m"),
        Severity::Notice => ("notice", "\x1b[1;36m"),
    };
    let (bold, dim, yellow, reset) = (
        paint("\x1b[1m"),
        paint("\x1b[2m"),
        paint("\x1b[1;33m"),
        paint("\x1b[0m"),
    );
    writeln!(
        out,
        "{}{level}{reset}{bold}[{}]: {}{reset}",
        paint(level_colour),
        d.id,
        one_line(&d.title)
    )?;
    let context: Vec<&str> = [d.platform.as_deref(), d.step.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    match (super::location(d), context.is_empty()) {
        (Some(loc), true) => writeln!(out, "  {dim}-->{reset} {loc}")?,
        (Some(loc), false) => writeln!(out, "  {dim}-->{reset} {loc} ({})", context.join(", "))?,
        (None, false) => writeln!(out, "  {dim}-->{reset} {}", context.join(", "))?,
        (None, true) => {}
    }
    for line in d.message.lines() {
        writeln!(out, "  {line}")?;
    }
    for e in &d.evidence {
        for line in e.lines() {
            writeln!(out, "  {dim}|{reset} {line}")?;
        }
    }
    if let Some(hint) = &d.hint {
        let mut lines = hint.lines();
        if let Some(first) = lines.next() {
            writeln!(out, "{yellow}hint{reset}{bold}:{reset} {first}")?;
        }
        for line in lines {
            writeln!(out, "  {line}")?;
        }
    }
    if Cause::from_id(&d.id).is_some() {
        writeln!(out, "  more: `rbuild explain {}`", d.id)?;
    } else if let Some(url) = &d.url {
        writeln!(out, "  more: {url}")?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(diags: &[Diagnostic], colour: bool) -> String {
        let mut out = Vec::new();
        write(&mut out, diags, colour).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_located_catalog_diagnostic() {
        let d = Cause::AptSandboxSetgroups
            .error("step `[build 3/7] RUN apt-get update` exited with code 100")
            .at("Dockerfile", 12, 13)
            .with_platform("linux/arm64")
            .with_step("[build 3/7] RUN apt-get update")
            .with_evidence("E: setgroups 65534 failed - setgroups (22: Invalid argument)");
        let text = render(&[d], false);
        let expected = format!(
            "error[apt-sandbox-setgroups]: apt cannot drop privileges to its `_apt` user\n  --> Dockerfile:12-13 (linux/arm64, [build 3/7] RUN apt-get update)\n  step `[build 3/7] RUN apt-get update` exited with code 100\n  | E: setgroups 65534 failed - setgroups (22: Invalid argument)\nhint: {}\n  more: `rbuild explain apt-sandbox-setgroups`\n",
            Cause::AptSandboxSetgroups.entry().hint
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_plain_rule_diagnostic_and_separation() {
        let a = Diagnostic::new(
            "undefined-stage",
            Severity::Error,
            "undefined stage",
            "`COPY --from=buidl` names no stage",
        )
        .with_hint("did you mean `build`?")
        .at("Dockerfile", 9, 9)
        .with_url("https://example.invalid/undefined-stage");
        let b = Diagnostic::new("note", Severity::Notice, "a note", "two\nlines");
        assert_eq!(
            render(&[a, b], false),
            "error[undefined-stage]: undefined stage\n  --> Dockerfile:9\n  `COPY --from=buidl` names no stage\nhint: did you mean `build`?\n  more: https://example.invalid/undefined-stage\n\nnotice[note]: a note\n  two\n  lines\n"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let d = Cause::ClockSkew.warning("the clock is behind");
        assert!(!render(std::slice::from_ref(&d), false).contains('\x1b'));
        let coloured = render(&[d], true);
        assert!(
            coloured.starts_with("\x1b[1;33mwarning\x1b[0m"),
            "{coloured:?}"
        );
    }
}

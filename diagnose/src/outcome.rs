//! How a command ends: the exit-code contract and the one renderer for errors.
//!
//! Every command returns `anyhow::Result<()>`. Errors that carry a [`Failure`] somewhere in
//! their chain are classified (exit code and hints come from it); any other error is an
//! internal bug (exit 101), because every failure a user can cause must be classified at
//! its source. This module owns the `error: ...` / `  caused by: ...` / `hint: ...` format
//! described in `STYLE.md`; nothing else prints errors.

use std::fmt;
use std::io::{IsTerminal, Write};

use crate::env as envvars;

/// Exit codes of `rbuild`, as promised in `DESIGN.md`. Scripts and the runner rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked.
    Ok,
    /// The build failed because of its input (Dockerfile error, a RUN exited non-zero).
    Input,
    /// Bad invocation: unknown flag, malformed value.
    Usage,
    /// The host cannot do what is needed (no user namespaces, no subuid range, no qemu).
    Host,
    /// A registry or the network failed.
    Registry,
    /// rbuild itself is wrong.
    Bug,
}

impl Exit {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Input => 1,
            Exit::Usage => 2,
            Exit::Host => 3,
            Exit::Registry => 4,
            Exit::Bug => 101,
        }
    }
}

/// A classified failure: what went wrong, which exit code it maps to, and how to fix it.
///
/// Construct it where the failure is understood (the source), attach hints, and return it
/// through `anyhow`; context added on the way up is kept as `caused by:` lines.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    message: String,
    hints: Vec<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Failure {
    /// A failure with the given exit class and message (lowercase start, no period).
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            hints: Vec::new(),
            source: None,
        }
    }

    /// Keeps `source` (a module's own error) as the cause: its chain becomes the
    /// `caused by:` lines.
    #[must_use]
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Adds a `hint:` line telling the user how to fix it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The exit class of this failure.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The hints, in the order they were added.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Finds the classification of an error: the outermost [`Failure`] in its chain.
pub fn classify(err: &anyhow::Error) -> (Exit, Vec<String>) {
    match err.chain().find_map(|e| e.downcast_ref::<Failure>()) {
        Some(failure) => (failure.exit, failure.hints.clone()),
        None => (
            Exit::Bug,
            vec![
                "this error was not classified, which is a bug in rbuild; please report it with the command you ran"
                    .to_owned(),
            ],
        ),
    }
}

/// Whether to colour stderr: a terminal, and `NO_COLOR` unset or empty.
fn colour() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty())
}

/// Writes the error report for `err` to `out` in the `STYLE.md` format.
pub fn write_report(out: &mut dyn Write, err: &anyhow::Error, colour: bool) -> std::io::Result<()> {
    let (_, hints) = classify(err);
    write_report_with(out, err, &[], &hints, colour)
}

/// Writes a report in the `STYLE.md` format from a classification made elsewhere: the
/// `error:` line (the top of `err`'s chain), each of `details` indented under it, a
/// `caused by:` line for every further cause, then a `hint:` line for each of `hints`.
///
/// [`write_report`] is this with `rbuild`'s classification (no details); `rbuild-runner`
/// calls it with its own exit codes and failures, whose details list configuration problems.
pub fn write_report_with(
    out: &mut dyn Write,
    err: &anyhow::Error,
    details: &[String],
    hints: &[String],
    colour: bool,
) -> std::io::Result<()> {
    let (red, yellow, bold, reset) = if colour {
        ("\x1b[1;31m", "\x1b[1;33m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        writeln!(out, "{red}error{reset}{bold}:{reset} {top}")?;
    }
    for line in details {
        writeln!(out, "  {line}")?;
    }
    for cause in chain {
        writeln!(out, "  caused by: {cause}")?;
    }
    for hint in hints {
        writeln!(out, "{yellow}hint{reset}{bold}:{reset} {hint}")?;
    }
    Ok(())
}

/// Prints the report for `err` on stderr and returns the exit code to end with.
pub fn report(err: &anyhow::Error) -> Exit {
    let (exit, hints) = classify(err);
    print_report_with(err, &[], &hints);
    exit
}

/// Prints [`write_report_with`]'s report on stderr, in colour on a terminal unless
/// `NO_COLOR` is set.
pub fn print_report_with(err: &anyhow::Error, details: &[String], hints: &[String]) {
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    // If stderr itself is gone there is no one left to tell; the exit code still says it.
    let _ = write_report_with(&mut lock, err, details, hints, colour());
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn render(err: &anyhow::Error) -> String {
        let mut buf = Vec::new();
        write_report(&mut buf, err, false).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn classified_failure_keeps_context_and_hints() {
        let err = Err::<(), _>(
            Failure::new(Exit::Host, "no subordinate uid range for `alice`")
                .hint("add `alice:100000:65536` to `/etc/subuid`"),
        )
        .context("cannot create the build sandbox")
        .unwrap_err();
        assert_eq!(classify(&err).0, Exit::Host);
        assert_eq!(
            render(&err),
            "error: cannot create the build sandbox\n  caused by: no subordinate uid range for `alice`\nhint: add `alice:100000:65536` to `/etc/subuid`\n"
        );
    }

    #[test]
    fn failure_keeps_the_chain_of_its_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("registry `r.io` answered 401")]
        struct Inner(#[source] std::io::Error);
        let err = anyhow::Error::new(
            Failure::new(Exit::Registry, "cannot pull `r.io/a`")
                .caused_by(Inner(std::io::Error::other("reset"))),
        );
        assert_eq!(classify(&err).0, Exit::Registry);
        assert_eq!(
            render(&err),
            "error: cannot pull `r.io/a`\n  caused by: registry `r.io` answered 401\n  caused by: reset\n"
        );
    }

    #[test]
    fn unclassified_error_is_a_bug() {
        let err = anyhow::anyhow!("index out of range");
        let (exit, hints) = classify(&err);
        assert_eq!(exit, Exit::Bug);
        assert_eq!(exit.code(), 101);
        assert!(hints[0].contains("bug in rbuild"));
    }

    #[test]
    fn exit_codes_follow_the_design_contract() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Input,
            Exit::Usage,
            Exit::Host,
            Exit::Registry,
            Exit::Bug,
        ]
        .into_iter()
        .map(Exit::code)
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 101]);
    }
}

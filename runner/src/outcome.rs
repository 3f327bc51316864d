//! How an `rbuild-runner` command ends: exit codes and the one renderer for errors.
//!
//! The same shape as `rbuild`'s (see `STYLE.md`): an error carrying a [`Failure`] in its
//! chain is classified (exit code and hints come from it); anything else is a bug (101).
//! This module owns the `error: ...` / `  caused by: ...` / `hint: ...` lines; nothing else
//! prints errors.

use std::fmt;
use std::io::{IsTerminal, Write};

use crate::envvars;

/// Exit codes of `rbuild-runner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked.
    Ok,
    /// Bad invocation or an invalid configuration file.
    Usage,
    /// The host cannot do what is needed (state directory, listen address, `rbuild` binary).
    Host,
    /// The forge refused or could not be reached (a rejected runner token).
    Forge,
    /// rbuild-runner itself is wrong.
    Bug,
}

impl Exit {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Usage => 2,
            Exit::Host => 3,
            Exit::Forge => 4,
            Exit::Bug => 101,
        }
    }
}

/// A classified failure: what went wrong, its exit class, and how to fix it.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    message: String,
    details: Vec<String>,
    hints: Vec<String>,
}

impl Failure {
    /// A failure with the given exit class and message (lowercase start, no period).
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            details: Vec::new(),
            hints: Vec::new(),
        }
    }

    /// Adds an indented line printed under the `error:` line (one of several problems).
    #[must_use]
    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
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
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The classification of an error: its outermost [`Failure`], or a bug.
pub fn classify(err: &anyhow::Error) -> (Exit, Vec<String>) {
    match failure(err) {
        Some(failure) => (failure.exit, failure.hints.clone()),
        None => (
            Exit::Bug,
            vec![
                "this error was not classified, which is a bug in rbuild-runner; please report it with the command you ran"
                    .to_owned(),
            ],
        ),
    }
}

fn failure(err: &anyhow::Error) -> Option<&Failure> {
    err.chain().find_map(|e| e.downcast_ref::<Failure>())
}

fn colour() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty())
}

/// Writes the report for `err` in the `STYLE.md` format.
pub fn write_report(out: &mut dyn Write, err: &anyhow::Error, colour: bool) -> std::io::Result<()> {
    let (red, yellow, bold, reset) = if colour {
        ("\x1b[1;31m", "\x1b[1;33m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    let (_, hints) = classify(err);
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        writeln!(out, "{red}error{reset}{bold}:{reset} {top}")?;
    }
    if let Some(f) = failure(err) {
        for line in &f.details {
            writeln!(out, "  {line}")?;
        }
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
    let (exit, _) = classify(err);
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    // If stderr is gone there is no one left to tell; the exit code still says it.
    let _ = write_report(&mut lock, err, colour());
    exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn classified_failure_keeps_context_and_hints() {
        let err = Err::<(), _>(
            Failure::new(
                Exit::Usage,
                "`gitlab[0].url`: `ftp://x` is not an http(s) URL",
            )
            .hint("write it like `https://gitlab.example.com`"),
        )
        .context("invalid configuration `r.toml`")
        .unwrap_err();
        let mut buf = Vec::new();
        write_report(&mut buf, &err, false).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "error: invalid configuration `r.toml`\n  caused by: `gitlab[0].url`: `ftp://x` is not an http(s) URL\nhint: write it like `https://gitlab.example.com`\n"
        );
        assert_eq!(classify(&err).0.code(), 2);
    }

    #[test]
    fn unclassified_error_is_a_bug() {
        assert_eq!(classify(&anyhow::anyhow!("boom")).0.code(), 101);
    }
}

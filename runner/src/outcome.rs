//! How an `rbuild-runner` command ends: exit codes and the classification of errors.
//!
//! The same shape as `rbuild`'s (see `STYLE.md`): an error carrying a [`Failure`] in its
//! chain is classified (exit code and hints come from it); anything else is a bug (101).
//! The `error: ...` / `  caused by: ...` / `hint: ...` lines are drawn by `rbuild`'s
//! renderer (`rbuild_diagnose::outcome`); nothing else prints errors.

use std::fmt;
use std::io::Write;

use rbuild_diagnose::outcome;

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

/// The lines under the `error:` line: the details of the outermost [`Failure`].
fn details(err: &anyhow::Error) -> &[String] {
    failure(err).map_or(&[], |f| &f.details)
}

/// Writes the report for `err` in the `STYLE.md` format (`rbuild`'s renderer, with this
/// crate's classification and a failure's details under the `error:` line).
pub fn write_report(out: &mut dyn Write, err: &anyhow::Error, colour: bool) -> std::io::Result<()> {
    let (_, hints) = classify(err);
    outcome::write_report_with(out, err, details(err), &hints, colour)
}

/// Prints the report for `err` on stderr and returns the exit code to end with.
pub fn report(err: &anyhow::Error) -> Exit {
    let (exit, hints) = classify(err);
    outcome::print_report_with(err, details(err), &hints);
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
    fn details_stand_under_the_error_line() {
        let err = anyhow::Error::new(
            Failure::new(Exit::Usage, "the configuration `r.toml` has 2 problems")
                .detail("`concurent`: unknown key (did you mean `concurrent`?)")
                .detail("`listen`: `x` is not an address with a port")
                .hint("fix them and run `rbuild-runner check-config`"),
        );
        let mut buf = Vec::new();
        write_report(&mut buf, &err, false).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "error: the configuration `r.toml` has 2 problems\n  `concurent`: unknown key (did you mean `concurrent`?)\n  `listen`: `x` is not an address with a port\nhint: fix them and run `rbuild-runner check-config`\n"
        );
    }

    #[test]
    fn unclassified_error_is_a_bug() {
        assert_eq!(classify(&anyhow::anyhow!("boom")).0.code(), 101);
    }
}

//! Diagnostics that end a command, and diagnostics collected while one runs.
//!
//! A module that hits a known cause returns a [`Diagnosed`] error: it carries the whole
//! [`Diagnostic`] (so `rbuild build` can put it in `--diagnostics-file` and annotations)
//! and a classified [`Failure`] as its source (so `outcome` prints it with the right exit
//! code and hints). Warnings that do not stop the build go into a [`Collector`].

use std::fmt;
use std::sync::Mutex;

use super::{Cause, Diagnostic};
use crate::outcome::{Exit, Failure};

/// An error that is a diagnostic. Its message is the diagnostic's title; its source is a
/// [`Failure`] with the diagnostic's message and hint, so the rendered error reads
/// `error: <title>` / `caused by: <message>` / `hint: <fix>`.
#[derive(Debug)]
pub struct Diagnosed {
    pub diagnostic: Diagnostic,
    failure: Failure,
}

impl Diagnosed {
    /// Wraps `diagnostic` as a failure with exit class `exit`.
    pub fn new(diagnostic: Diagnostic, exit: Exit) -> Self {
        let mut failure = Failure::new(exit, diagnostic.message.clone());
        if let Some(hint) = &diagnostic.hint {
            failure = failure.hint(hint.clone());
        }
        if Cause::from_id(&diagnostic.id).is_some() {
            failure = failure.hint(format!("`rbuild explain {}` tells more", diagnostic.id));
        }
        Diagnosed {
            diagnostic,
            failure,
        }
    }

    /// The exit class.
    pub fn exit(&self) -> Exit {
        self.failure.exit()
    }
}

impl fmt::Display for Diagnosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.title)
    }
}

impl std::error::Error for Diagnosed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

impl Cause {
    /// A [`Diagnosed`] error for this cause: an error diagnostic with `message`, the
    /// catalog's exit class, title, hint and link. Add a place with [`Diagnosed`]'s
    /// `diagnostic` field or build the diagnostic first and use [`Diagnosed::new`].
    pub fn fail(self, message: impl Into<String>) -> Diagnosed {
        Diagnosed::new(self.error(message), self.entry().exit)
    }
}

/// The diagnostic in an error's chain, if a [`Diagnosed`] is in it.
pub fn diagnostic_of(err: &anyhow::Error) -> Option<&Diagnostic> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Diagnosed>())
        .map(|d| &d.diagnostic)
}

/// Diagnostics gathered while a command runs, from any thread; identical ones are kept
/// once.
#[derive(Debug, Default)]
pub struct Collector(Mutex<Vec<Diagnostic>>);

impl Collector {
    pub fn new() -> Self {
        Collector::default()
    }

    /// Adds a diagnostic unless an identical one is already there.
    pub fn push(&self, d: Diagnostic) {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !v.contains(&d) {
            v.push(d);
        }
    }

    /// Everything gathered, errors first, otherwise in the order they came.
    pub fn take(&self) -> Vec<Diagnostic> {
        let mut v = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        v.sort_by_key(|d| std::cmp::Reverse(d.severity));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Severity;
    use crate::outcome;
    use anyhow::Context as _;

    #[test]
    fn a_diagnosed_error_renders_and_exits_by_its_cause() {
        let err = Err::<(), _>(
            Cause::RegistryAuth401.fail("`registry.example` answered 401 to a push of `team/app`"),
        )
        .context("cannot push `registry.example/team/app:1.0`")
        .unwrap_err();
        assert_eq!(outcome::classify(&err).0, Exit::Registry);
        let mut out = Vec::new();
        outcome::write_report(&mut out, &err, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "error: cannot push `registry.example/team/app:1.0`\n  caused by: the registry refused the credentials\n  caused by: `registry.example` answered 401 to a push of `team/app`\nhint: {}\nhint: `rbuild explain registry-auth-401` tells more\n",
                Cause::RegistryAuth401.entry().hint
            )
        );
        let d = diagnostic_of(&err).unwrap();
        assert_eq!(d.id, "registry-auth-401");
        assert_eq!(diagnostic_of(&anyhow::anyhow!("plain")), None);
    }

    #[test]
    fn the_collector_dedupes_and_puts_errors_first() {
        let c = Collector::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| c.push(Cause::ClockSkew.warning("late")));
            }
        });
        c.push(Cause::RunFailed.error("boom"));
        let v = c.take();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].severity, Severity::Error);
        assert!(c.take().is_empty());
    }
}

//! Building [`SetupFailure`]s where a failure is understood (inside the helper and init,
//! which report data, not `anyhow` errors).

use std::error::Error;
use std::fmt::Display;

use super::result::{Fact, FailureClass, SetupFailure};

/// A classified setup failure under construction.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) SetupFailure);

impl Fail {
    fn new(class: FailureClass, message: impl Into<String>) -> Fail {
        Fail(SetupFailure {
            class,
            message: message.into(),
            causes: Vec::new(),
            hints: Vec::new(),
            facts: Vec::new(),
        })
    }

    /// The image (or the command line) is at fault.
    pub(crate) fn input(message: impl Into<String>) -> Fail {
        Fail::new(FailureClass::Input, message)
    }

    /// The host cannot do it.
    pub(crate) fn host(message: impl Into<String>) -> Fail {
        Fail::new(FailureClass::Host, message)
    }

    /// rbuild is wrong.
    pub(crate) fn bug(message: impl Into<String>) -> Fail {
        Fail::new(FailureClass::Bug, message)
    }

    /// Adds `err` and its sources as `caused by:` lines.
    pub(crate) fn cause(mut self, err: impl Error) -> Fail {
        self.0.causes.push(err.to_string());
        let mut src = err.source();
        while let Some(s) = src {
            self.0.causes.push(s.to_string());
            src = s.source();
        }
        self
    }

    /// Adds a plain `caused by:` line.
    pub(crate) fn because(mut self, why: impl Display) -> Fail {
        self.0.causes.push(why.to_string());
        self
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Fail {
        self.0.hints.push(hint.into());
        self
    }

    pub(crate) fn fact(mut self, fact: Fact) -> Fail {
        self.0.facts.push(fact);
        self
    }
}

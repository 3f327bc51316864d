//! Prerequisite gates: a test whose prerequisite is missing is skipped with a printed reason
//! on a developer machine, and fails in CI (`CI=true`), where every prerequisite must be
//! installed. Never `#[ignore]` a test silently; gate it with [`require!`](crate::require).
//!
//! ```no_run
//! # fn t() {
//! let env = rbuild_e2e::require!(rbuild_e2e::Env::get());
//! # }
//! ```

use std::fmt;

/// A prerequisite that is not met: what is missing and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, e.g. "`docker-registry` is not installed".
    pub what: String,
    /// How to get it, e.g. "`apt-get install docker-registry` (as root)".
    pub fix: String,
}

impl Missing {
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Missing {
            what: what.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.what, self.fix)
    }
}

/// Whether this run is a CI run, where missing prerequisites are failures.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// What a gate decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Skip the test, printing this line.
    Skip(String),
    /// Fail the test with this message.
    Fail(String),
}

/// Decides what to do about a missing prerequisite (pure, so it is testable).
pub fn verdict(missing: &Missing, ci: bool) -> Verdict {
    if ci {
        Verdict::Fail(format!(
            "prerequisite missing in CI (CI=true), where everything must be installed: {missing}"
        ))
    } else {
        Verdict::Skip(format!("SKIPPED: {missing}"))
    }
}

/// Applies the verdict: prints the skip reason, or panics in CI. Used by [`require!`](crate::require).
pub fn missing(missing: &Missing) {
    match verdict(missing, in_ci()) {
        Verdict::Skip(line) => eprintln!("{line}"),
        Verdict::Fail(msg) => panic!("{msg}"),
    }
}

/// Unwraps a `Result<T, Missing>`, or skips (locally) / fails (CI) the current test.
#[macro_export]
macro_rules! require {
    ($prereq:expr) => {
        match $prereq {
            Ok(v) => v,
            Err(m) => {
                $crate::gate::missing(&m);
                return;
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_locally_and_fails_in_ci() {
        let m = Missing::new("`skopeo` is not installed", "`apt-get install skopeo`");
        assert_eq!(
            verdict(&m, false),
            Verdict::Skip(
                "SKIPPED: `skopeo` is not installed; fix: `apt-get install skopeo`".to_owned()
            )
        );
        let Verdict::Fail(msg) = verdict(&m, true) else {
            panic!("a missing prerequisite must fail in CI")
        };
        assert!(msg.contains("CI=true"), "{msg}");
        assert!(msg.contains("apt-get install skopeo"), "{msg}");
    }
}

//! Every diagnostic the frontend can produce, by stable id. Each id has a page under
//! `docs/rules/<id>.md`; a test keeps the two in step.
//!
//! Syntax rules are errors (the file cannot be built as written); lint rules are warnings
//! (the file builds, but probably not as meant). Lint rules also answer to BuildKit's rule
//! name in a `# check=skip=...` directive, so files written for BuildKit keep working.

use crate::diagnose::{Diagnostic, Severity};

use super::ast::Span;

/// One rule: a stable id and what a diagnostic with it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable kebab-case id (part of the diagnostics contract: never renamed).
    pub id: &'static str,
    /// Severity of its diagnostics.
    pub severity: Severity,
    /// One-line title.
    pub title: &'static str,
    /// BuildKit's name for the same check, for `# check=skip=...`.
    pub buildkit: Option<&'static str>,
}

/// Where rule pages live, for the `url` of each diagnostic.
const DOCS_BASE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/rules/");

impl Rule {
    /// The documentation page of this rule.
    pub fn url(&self) -> String {
        format!("{DOCS_BASE}{}.md", self.id)
    }

    /// Whether it is a lint (a warning that `# check=skip` can silence).
    pub fn is_lint(&self) -> bool {
        self.severity != Severity::Error
    }

    /// A diagnostic of this rule on `span` of `file`.
    pub fn at(&self, file: &str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.id, self.severity, self.title, message)
            .at(file, span.start, span.end)
            .with_url(self.url())
    }
}

macro_rules! rules {
    ($($name:ident = $id:literal, $sev:ident, $buildkit:expr, $title:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: Rule = Rule {
                id: $id,
                severity: Severity::$sev,
                title: $title,
                buildkit: $buildkit,
            };
        )*
        /// Every rule, in documentation order.
        pub const ALL: &[Rule] = &[$($name),*];
    };
}

rules! {
    // Syntax: the file cannot be built as written.
    EMPTY_DOCKERFILE = "empty-dockerfile", Error, None, "the Dockerfile has no instructions";
    INVALID_DIRECTIVE = "invalid-directive", Error, None, "invalid parser directive";
    UNTERMINATED_HEREDOC = "unterminated-heredoc", Error, None, "heredoc without its closing delimiter";
    INVALID_HEREDOC = "invalid-heredoc", Error, None, "invalid heredoc";
    JSON_ARRAY_NOT_STRINGS = "json-array-not-strings", Error, None, "exec-form array with a value that is not a string";
    INVALID_KEY_VALUE = "invalid-key-value", Error, None, "malformed `ENV` or `LABEL` pair";
    UNKNOWN_INSTRUCTION = "unknown-instruction", Error, None, "unknown instruction";
    INVALID_INSTRUCTION = "invalid-instruction", Error, None, "instruction with invalid arguments";
    INVALID_FLAG = "invalid-flag", Error, None, "invalid instruction flag";
    INVALID_MOUNT = "invalid-mount", Error, None, "invalid `RUN --mount`";
    INSTRUCTION_BEFORE_FROM = "instruction-before-from", Error, None, "instruction before the first `FROM`";
    INVALID_STAGE_NAME = "invalid-stage-name", Error, None, "invalid stage name";
    INVALID_SUBSTITUTION = "invalid-substitution", Error, None, "variable substitution failed";
    INVALID_PLATFORM = "invalid-platform", Error, None, "invalid platform";
    UNKNOWN_TARGET = "unknown-target", Error, None, "`--target` names no stage";
    CIRCULAR_STAGE_DEPENDENCY = "circular-stage-dependency", Error, None, "stages depend on each other in a circle";
    // Lint: the file builds, but probably not as meant.
    INVALID_UTF8 = "invalid-utf8", Warning, None, "the Dockerfile is not valid UTF-8";
    UNSUPPORTED_SYNTAX = "unsupported-syntax", Warning, None, "`# syntax=` frontend is not used by rbuild";
    NO_EMPTY_CONTINUATION = "no-empty-continuation", Warning, Some("NoEmptyContinuation"), "empty continuation line";
    DUPLICATE_STAGE_NAME = "duplicate-stage-name", Warning, Some("DuplicateStageName"), "two stages have the same name";
    UNDEFINED_STAGE = "undefined-stage", Warning, None, "`--from` names no stage";
    RESERVED_STAGE_NAME = "reserved-stage-name", Warning, Some("ReservedStageName"), "reserved word used as a stage name";
    STAGE_NAME_CASING = "stage-name-casing", Warning, Some("StageNameCasing"), "stage name is not lowercase";
    FROM_AS_CASING = "from-as-casing", Warning, Some("FromAsCasing"), "`AS` and `FROM` casing differ";
    CONSISTENT_INSTRUCTION_CASING = "consistent-instruction-casing", Warning, Some("ConsistentInstructionCasing"), "instruction casing is inconsistent";
    UNDEFINED_VARIABLE = "undefined-variable", Warning, Some("UndefinedVar"), "use of an undefined variable";
    UNDEFINED_ARG_IN_FROM = "undefined-arg-in-from", Warning, Some("UndefinedArgInFrom"), "`FROM` uses an undeclared build argument";
    INVALID_DEFAULT_ARG_IN_FROM = "invalid-default-arg-in-from", Warning, Some("InvalidDefaultArgInFrom"), "`FROM` is invalid with the default build arguments";
    FROM_PLATFORM_FLAG_CONST_DISALLOWED = "from-platform-flag-const-disallowed", Warning, Some("FromPlatformFlagConstDisallowed"), "`FROM --platform` with a constant value";
    REDUNDANT_TARGET_PLATFORM = "redundant-target-platform", Warning, Some("RedundantTargetPlatform"), "`FROM --platform=$TARGETPLATFORM` is redundant";
    JSON_ARGS_RECOMMENDED = "json-args-recommended", Warning, Some("JSONArgsRecommended"), "shell form used for `CMD` or `ENTRYPOINT`";
    MAINTAINER_DEPRECATED = "maintainer-deprecated", Warning, Some("MaintainerDeprecated"), "`MAINTAINER` is deprecated";
    MULTIPLE_INSTRUCTIONS_DISALLOWED = "multiple-instructions-disallowed", Warning, Some("MultipleInstructionsDisallowed"), "only the last `CMD`, `ENTRYPOINT` or `HEALTHCHECK` counts";
    WORKDIR_RELATIVE_PATH = "workdir-relative-path", Warning, Some("WorkdirRelativePath"), "relative `WORKDIR` without an absolute one before it";
    SECRETS_USED_IN_ARG_OR_ENV = "secrets-used-in-arg-or-env", Warning, Some("SecretsUsedInArgOrEnv"), "secret passed through `ARG` or `ENV`";
    LEGACY_KEY_VALUE_FORMAT = "legacy-key-value-format", Warning, Some("LegacyKeyValueFormat"), "`ENV key value` instead of `ENV key=value`";
    EXPOSE_PROTO_CASING = "expose-proto-casing", Warning, Some("ExposeProtoCasing"), "`EXPOSE` protocol is not lowercase";
    EXPOSE_INVALID_FORMAT = "expose-invalid-format", Warning, Some("ExposeInvalidFormat"), "`EXPOSE` with an IP address or host port";
}

/// The rule with this id, or with this BuildKit name.
pub fn find(name: &str) -> Option<&'static Rule> {
    ALL.iter()
        .find(|r| r.id == name || r.buildkit.is_some_and(|b| b.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ids_are_unique_kebab_case_and_documented() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rules");
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            assert!(seen.insert(r.id), "duplicate id {}", r.id);
            assert!(
                r.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()),
                "{} is not kebab-case",
                r.id
            );
            let page = docs.join(format!("{}.md", r.id));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(
                text.starts_with(&format!("# `{}`", r.id)),
                "{} heading",
                page.display()
            );
        }
        let pages = std::fs::read_dir(&docs).unwrap().count();
        assert_eq!(pages, ALL.len(), "a page in docs/rules/ has no rule");
    }

    #[test]
    fn buildkit_names_find_rules() {
        assert_eq!(
            find("JSONArgsRecommended").map(|r| r.id),
            Some("json-args-recommended")
        );
        assert_eq!(
            find("undefined-variable").map(|r| r.id),
            Some("undefined-variable")
        );
        assert!(find("nope").is_none());
    }
}

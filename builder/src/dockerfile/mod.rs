//! The Dockerfile frontend: reads a Dockerfile the way BuildKit reads it, and says what is
//! wrong with it, line by line.
//!
//! It owns the Dockerfile language: parsing, typed instructions, stages, `ARG`/`ENV`
//! scoping and word expansion, lint rules, and `.dockerignore` patterns. It must not do
//! I/O besides reading the bytes it is given, and must never panic on any input: every
//! problem becomes a [`Diagnostic`] with the file name and the instruction's line span.
//!
//! # Using it (the build engine's view)
//!
//! ```
//! use rbuild::dockerfile::{self, BuildOptions, Base};
//!
//! let df = dockerfile::parse(b"FROM busybox AS base\nARG MSG=hi\nRUN echo $MSG\n", "Dockerfile");
//! assert!(!df.has_errors());
//! let opts = BuildOptions::default();             // build args, --target, platforms
//! let plan = df.plan(&opts);                      // stages, target, build order
//! assert_eq!(plan.order, [0]);
//! assert_eq!(plan.stages[0].base, Base::Image("busybox".into()));
//! // The engine pulls the base image, then expands the stage with the image's Env:
//! let stage = df.expand_stage(&plan, &opts, 0, Some(&[("PATH".into(), "/bin".into())]));
//! assert_eq!(stage.steps[1].args.as_slice(), [("MSG".to_owned(), "hi".to_owned())]);
//! ```
//!
//! 1. [`parse`] (bytes + file name) gives a [`Dockerfile`]: the syntax tree
//!    ([`ast::Ast`], printable with [`ast::Ast::dump`]), typed instructions grouped into
//!    [`Stage`]s, the global `ARG`s, and diagnostics (syntax errors and lint warnings).
//!    Parsing goes on after an error, so one run reports every problem.
//! 2. [`Dockerfile::plan`] takes [`BuildOptions`] (`--build-arg`s, `--target`, target
//!    and build [`Platform`]) and resolves stages: `FROM` lines expanded with the global
//!    scope (global `ARG`s and the automatic `TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`,
//!    `TARGETVARIANT`, `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`), each
//!    stage's [`Base`] (scratch, image or earlier stage), `--from` references resolved by
//!    name or index, the target, and the stages it needs in build order.
//! 3. [`Dockerfile::expand_stage`] expands one stage given its base environment: every
//!    [`Step`] holds the instruction with variables expanded where Docker expands them
//!    (`ENV`, `LABEL`, `ARG`, `COPY`, `ADD`, `WORKDIR`, `USER`, `VOLUME`, `EXPOSE`,
//!    `STOPSIGNAL`, `RUN --mount`, heredoc bodies of `COPY`/`ADD`), the checked mounts,
//!    and the environment and build arguments a `RUN` at that point sees.
//! 4. [`shell::Lexer`] is the word expander on its own (BuildKit's shell lexer), for
//!    anything else that needs Dockerfile word semantics.
//! 5. [`dockerignore::Matcher`] decides which context paths are excluded while walking a
//!    context; [`dockerignore::candidates`] names the ignore files to try.
//! 6. [`instructions::parse_trigger`] reads the `ONBUILD` triggers of a base image's
//!    config, which run first in a stage built on it.
//!
//! Every diagnostic carries the Dockerfile name and the instruction's first and last line;
//! build errors that stem from an instruction should take [`instructions::Instruction::span`].
//! Errors have severity `error`; lint findings are warnings, which a `# check=skip=...`
//! directive can silence and `# check=error=true` turns into errors (as in BuildKit).

pub mod ast;
pub mod dockerignore;
mod flags;
pub mod glob;
pub mod instructions;
mod json;
pub mod mount;
pub mod parser;
pub mod rules;
pub mod shell;
pub mod stages;

use crate::diagnose::{Diagnostic, Severity};

pub use ast::{Ast, Span};
pub use instructions::{ArgDecl, From, Instruction, Kind};
pub use stages::{Base, BuildOptions, ExpandedStage, Plan, PlannedStage, Platform, Source, Step};

/// A `FROM` line and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub from: From,
    /// The `FROM` instruction's lines.
    pub span: Span,
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The name diagnostics use, as the user gave it.
    pub file: String,
    pub ast: Ast,
    /// `ARG`s before the first `FROM`.
    pub meta_args: Vec<(ArgDecl, Span)>,
    pub stages: Vec<Stage>,
    /// Syntax errors, instruction errors and lint warnings, in line order.
    pub diagnostics: Vec<Diagnostic>,
    /// Whether the syntax tree is complete (no syntax error while building it); the
    /// classic dump of an incomplete tree would be misleading.
    pub syntax_ok: bool,
}

/// Parses a Dockerfile. Never fails and never panics: problems are diagnostics.
pub fn parse(bytes: &[u8], file: &str) -> Dockerfile {
    let parsed = parser::parse(bytes, file);
    let syntax_ok = parsed.is_complete();
    let mut diags = parsed.diagnostics;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &parsed.ast.nodes {
        let ins = match Instruction::from_node(node) {
            Ok(i) => i,
            Err(e) => {
                let mut d = e.rule.at(file, node.span, e.message);
                d.hint = e.hint;
                diags.push(d);
                // Keep stage structure even when a FROM is broken, so later lines are
                // attributed to the right stage.
                if node.name() == "from" {
                    stages.push(Stage {
                        index: stages.len(),
                        from: From {
                            image: node.args.first().cloned().unwrap_or_default(),
                            name: None,
                            name_as_written: None,
                            as_keyword: None,
                            platform: None,
                        },
                        span: node.span,
                        instructions: Vec::new(),
                    });
                }
                continue;
            }
        };
        match (&ins.kind, stages.last_mut()) {
            (Kind::From(from), _) => stages.push(Stage {
                index: stages.len(),
                from: from.clone(),
                span: ins.span,
                instructions: Vec::new(),
            }),
            (Kind::Arg(decls), None) => {
                meta_args.extend(decls.iter().map(|d| (d.clone(), ins.span)));
            }
            (_, Some(stage)) => stage.instructions.push(ins),
            (_, None) => {
                let mut d = rules::INSTRUCTION_BEFORE_FROM.at(
                    file,
                    ins.span,
                    format!(
                        "`{}` comes before the first `FROM`; only `ARG` may",
                        ins.name()
                    ),
                );
                d.hint = Some("start the stage with `FROM <image>` above this line".to_owned());
                diags.push(d);
            }
        }
    }
    let mut df = Dockerfile {
        file: file.to_owned(),
        ast: parsed.ast,
        meta_args,
        stages,
        diagnostics: Vec::new(),
        syntax_ok,
    };
    lint::static_lints(&df, &mut diags);
    diags.sort_by_key(|d| (d.line, d.end_line));
    df.diagnostics = diags;
    df
}

impl Dockerfile {
    /// Whether the file has an error (it cannot be built).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// Applies the `# check=` directive to `diags`: drops skipped lint rules and, with
    /// `error=true`, turns lint warnings into errors.
    pub fn apply_check_directive(&self, diags: &mut Vec<Diagnostic>) {
        let Some(value) = self.ast.directive("check") else {
            return;
        };
        let mut skip: Vec<String> = Vec::new();
        let mut error = false;
        for part in value.split(';') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k.trim() {
                "skip" => skip.extend(v.split(',').map(|s| s.trim().to_owned())),
                "error" => error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let skip_all = skip.iter().any(|s| s.eq_ignore_ascii_case("all"));
        diags.retain(|d| {
            let Some(rule) = rules::find(&d.id) else {
                return true;
            };
            if !rule.is_lint() || rule.buildkit.is_none() {
                return true;
            }
            !(skip_all
                || skip
                    .iter()
                    .any(|s| rules::find(s).is_some_and(|r| r.id == rule.id)))
        });
        if error {
            for d in diags.iter_mut() {
                if d.severity == Severity::Warning
                    && rules::find(&d.id).is_some_and(|r| r.buildkit.is_some())
                {
                    d.severity = Severity::Error;
                }
            }
        }
    }

    /// Everything `rbuild check` reports: parse diagnostics, then planning and expansion of
    /// every stage (not only the target's), with the `# check=` directive applied.
    pub fn check(&self, opts: &BuildOptions) -> Vec<Diagnostic> {
        let mut out = self.diagnostics.clone();
        if !self.stages.is_empty() && self.syntax_ok {
            let plan = self.plan(opts);
            out.extend(plan.diagnostics.iter().cloned());
            let mut envs: Vec<Option<Vec<(String, String)>>> = vec![None; self.stages.len()];
            for i in 0..self.stages.len() {
                let base_env = match plan.stages[i].base {
                    Base::Scratch => Some(Vec::new()),
                    Base::Stage(b) => envs.get(b).cloned().flatten(),
                    Base::Image(_) => None,
                };
                let expanded = self.expand_stage(&plan, opts, i, base_env.as_deref());
                out.extend(expanded.diagnostics);
                envs[i] = base_env.map(|_| expanded.env);
            }
        }
        self.apply_check_directive(&mut out);
        out.sort_by_key(|d| (d.line, d.end_line));
        out.dedup();
        out
    }
}

/// The candidate in `options` closest to `word` (case-insensitive edit distance at most
/// 2, and less than the word's length), for "did you mean" hints.
pub(crate) fn suggest<'a>(
    word: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = word.to_lowercase();
    if w.chars().count() > 64 {
        return None;
    }
    let mut best: Option<(usize, &str)> = None;
    for o in options {
        let ol = o.to_lowercase();
        if ol == w && o != word {
            return Some(o);
        }
        if ol == w || ol.chars().count() > 64 {
            continue;
        }
        let d = edit_distance(&w, &ol);
        if d <= 2 && d < w.chars().count() && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, o));
        }
    }
    best.map(|(_, o)| o)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

mod lint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("RUNN", instructions::KEYWORDS.iter().copied()),
            Some("RUN")
        );
        assert_eq!(suggest("buidl", ["build", "test"]), Some("build"));
        assert_eq!(suggest("xyz", ["build"]), None);
        assert_eq!(suggest("Build", ["build"]), Some("build"));
    }

    #[test]
    fn stages_and_meta_args() {
        let df = parse(
            b"ARG V=1\nFROM a AS one\nRUN x\nFROM one\nCOPY --from=one / /\n",
            "D",
        );
        assert!(df.diagnostics.is_empty(), "{:?}", df.diagnostics);
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[1].instructions.len(), 1);
        let plan = df.plan(&BuildOptions::default());
        assert_eq!(plan.stages[1].base, Base::Stage(0));
        assert_eq!(plan.order, [0, 1]);
    }

    #[test]
    fn instruction_before_from() {
        let df = parse(b"RUN x\nFROM a\n", "D");
        assert_eq!(df.diagnostics[0].id, "instruction-before-from");
    }

    #[test]
    fn check_directive_skips_and_escalates() {
        let df = parse(
            b"# check=skip=MaintainerDeprecated\nFROM a\nMAINTAINER me\nCMD x\n",
            "D",
        );
        let d = df.check(&BuildOptions::default());
        let ids: Vec<_> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["json-args-recommended"]);
        let df = parse(b"# check=error=true\nFROM a\nCMD x\n", "D");
        assert_eq!(
            df.check(&BuildOptions::default())[0].severity,
            Severity::Error
        );
    }
}

//! Stages: which stage to build and what it needs ([`Dockerfile::plan`]), and each
//! stage's instructions with ARG/ENV scoping and variable expansion applied
//! ([`Dockerfile::expand_stage`]).
//!
//! Scoping follows Docker: `ARG`s before the first `FROM` are global and visible only to
//! `FROM` lines (and to stage `ARG`s that redeclare them without a value); the automatic
//! platform arguments are global too; inside a stage an `ARG` is visible from its line on,
//! takes its value from `--build-arg`, else its default, else the global value; `ENV`
//! always wins over an `ARG` of the same name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::diagnose::Diagnostic;

use super::ast::Span;
use super::instructions::{Add, ArgDecl, Copy, InlineSource, Instruction, Kind, Run};
use super::mount::{self, Mount};
use super::rules;
use super::shell::{Layered, Lexer};
use super::{Dockerfile, Stage, suggest};

/// `os/arch[/variant]`, normalised the way containerd normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    /// `v7` for `linux/arm/v7`; `None` when the architecture has none or the default.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses and normalises `linux/amd64`, `linux/arm64/v8`, `linux/x86_64`, `linux/armhf`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => {
                return Err(format!(
                    "`{s}` is not a platform: expected `os/arch[/variant]`"
                ));
            }
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !ok(os) || !ok(arch) || variant.is_some_and(|v| !ok(v)) {
            return Err(format!(
                "`{s}` is not a platform: expected `os/arch[/variant]`"
            ));
        }
        let (os, arch, variant) = crate::image::normalize_platform(os, arch, variant);
        Ok(Platform { os, arch, variant })
    }

    /// The platform this process runs on (Linux).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "riscv64" => "riscv64",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            other => other,
        };
        Platform::parse(&format!("linux/{arch}")).unwrap_or(Platform {
            os: "linux".to_owned(),
            arch: arch.to_owned(),
            variant: None,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Build arguments Docker passes to `RUN` without an `ARG` line, when given.
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The automatic platform arguments, in the global scope of every build.
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// What a build asks of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build instead of the last one.
    pub target: Option<String>,
    /// The platform being built for (`TARGETPLATFORM`).
    pub target_platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: Platform::host(),
            build_platform: Platform::host(),
        }
    }
}

impl BuildOptions {
    /// The automatic platform arguments and their values.
    pub fn platform_args(&self) -> Vec<(String, String)> {
        let (t, b) = (&self.target_platform, &self.build_platform);
        [
            ("TARGETPLATFORM", t.to_string()),
            ("TARGETOS", t.os.clone()),
            ("TARGETARCH", t.arch.clone()),
            ("TARGETVARIANT", t.variant.clone().unwrap_or_default()),
            ("BUILDPLATFORM", b.to_string()),
            ("BUILDOS", b.os.clone()),
            ("BUILDARCH", b.arch.clone()),
            ("BUILDVARIANT", b.variant.clone().unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, expanded (`golang:1.22`, `127.0.0.1:5000/busybox`).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// What another stage or image a stage reads from (`COPY --from`, `RUN --mount=from=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(usize),
    /// Not a stage: an image reference.
    Image(String),
}

/// A stage as the build sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    /// Lowercase name from `AS`.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform`, expanded; `None` means the target platform.
    pub platform: Option<Platform>,
    /// The `FROM` line.
    pub span: Span,
    /// Every stage it needs (its base stage and `--from` stages), without duplicates.
    pub deps: Vec<usize>,
    /// Images it reads with `COPY --from` or `RUN --mount=from=`.
    pub image_sources: Vec<String>,
}

/// The stages of a build and the order to build them in.
#[derive(Debug, Clone)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// The stage being built (`--target` or the last one).
    pub target: usize,
    /// The stages `target` needs, dependencies first, `target` last.
    pub order: Vec<usize>,
    /// The global scope: automatic platform arguments and `ARG`s before the first `FROM`,
    /// with their values (unset ones are absent).
    pub global_args: Vec<(String, String)>,
    /// `--build-arg`s no `ARG` declares (Docker warns about them).
    pub unused_build_args: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    /// Whether the plan has an error (then it must not be built).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == crate::diagnose::Severity::Error)
    }
}

/// One instruction of a stage, ready for the build engine.
#[derive(Debug, Clone)]
pub struct Step {
    /// The instruction with expansion applied (where Docker applies it).
    pub instruction: Instruction,
    /// Checked `RUN --mount`s (expanded).
    pub mounts: Vec<Mount>,
    /// Image environment before this instruction (base image env + `ENV`s).
    pub env: Arc<Vec<(String, String)>>,
    /// Build arguments in scope before this instruction, with values. A `RUN` sees them as
    /// environment variables (`env` wins on a name clash); the engine adds the
    /// [`PREDEFINED_ARGS`] given with `--build-arg`, which need no `ARG` line.
    pub args: Arc<Vec<(String, String)>>,
}

/// A stage's instructions, expanded.
#[derive(Debug, Clone)]
pub struct ExpandedStage {
    pub index: usize,
    pub steps: Vec<Step>,
    /// Image environment after the last instruction.
    pub env: Vec<(String, String)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Stage index of `name` (a stage name or an index); `before` limits the search to the
/// stages defined before it (for `FROM`).
fn find_stage(stages: &[Stage], name: &str, before: usize) -> Option<usize> {
    let lower = name.to_lowercase();
    stages[..before.min(stages.len())]
        .iter()
        .rposition(|s| s.from.name.as_deref() == Some(lower.as_str()))
}

fn set(vars: &mut Vec<(String, String)>, key: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => vars.push((key.to_owned(), value)),
    }
}

/// Whether `s` has the shape of an image reference (after expansion).
fn valid_reference(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with([':', '@', '/'])
        && !s.ends_with([':', '@', '/'])
        && !s.contains("//")
        && !s.chars().any(char::is_whitespace)
}

impl Dockerfile {
    fn lexer(&self) -> Lexer {
        Lexer::new(self.ast.escape)
    }

    /// Resolves stages for `opts`: expands `FROM` lines with the global scope, resolves
    /// bases and `--from` references by name or index, picks the target and orders the
    /// stages it needs.
    pub fn plan(&self, opts: &BuildOptions) -> Plan {
        let file = self.file.as_str();
        let lex = self.lexer();
        let mut diags = Vec::new();
        let platform_args = opts.platform_args();

        // The global scope.
        let mut global: Vec<(String, String)> = platform_args.clone();
        let mut declared_global: Vec<&str> = Vec::new();
        for (decl, span) in &self.meta_args {
            declared_global.push(&decl.name);
            let value = if let Some(v) = opts.build_args.get(&decl.name) {
                Some(v.clone())
            } else if let Some(default) = &decl.default {
                match lex.expand_word(default, &global) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        diags.push(rules::INVALID_SUBSTITUTION.at(
                            file,
                            *span,
                            format!("cannot expand `{default}`: {e}"),
                        ));
                        None
                    }
                }
            } else {
                None
            };
            if let Some(v) = value {
                set(&mut global, &decl.name, v);
            }
        }

        let mut planned: Vec<PlannedStage> = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let span = stage.span;
            let image = match lex.expand(&stage.from.image, &global) {
                Ok(e) => {
                    for var in &e.unmatched {
                        if !declared_global.contains(&var.as_str()) {
                            let mut d = rules::UNDEFINED_ARG_IN_FROM.at(
                                file,
                                span,
                                format!("`FROM {}` uses `{var}`, which no `ARG` before the first `FROM` declares", stage.from.image),
                            );
                            d.hint = Some(match suggest(var, declared_global.iter().copied()) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => format!(
                                    "declare it at the top of the file: `ARG {var}=<default>`"
                                ),
                            });
                            diags.push(d);
                        }
                    }
                    if !valid_reference(&e.result) {
                        let mut d = rules::INVALID_DEFAULT_ARG_IN_FROM.at(
                            file,
                            span,
                            format!(
                                "`FROM {}` becomes `{}` with the build arguments given, which is not an image reference",
                                stage.from.image, e.result
                            ),
                        );
                        d.hint = Some("give the `ARG`s it uses valid default values, or pass them with `--build-arg`".to_owned());
                        diags.push(d);
                    }
                    e.result
                }
                Err(e) => {
                    diags.push(rules::INVALID_SUBSTITUTION.at(
                        file,
                        span,
                        format!("cannot expand `{}`: {e}", stage.from.image),
                    ));
                    stage.from.image.clone()
                }
            };
            let mut platform = None;
            if let Some(p) = &stage.from.platform {
                let trimmed = p.trim();
                if trimmed == "$TARGETPLATFORM" || trimmed == "${TARGETPLATFORM}" {
                    let mut d = rules::REDUNDANT_TARGET_PLATFORM.at(
                        file,
                        span,
                        format!("`--platform={p}` is what `FROM` does anyway"),
                    );
                    d.hint = Some("remove the `--platform` flag".to_owned());
                    diags.push(d);
                } else if !p.contains('$') {
                    let name = stage.from.name.as_deref().unwrap_or("");
                    let arch = p.rsplit('/').next().unwrap_or("");
                    if arch.is_empty() || !name.contains(arch) {
                        let mut d = rules::FROM_PLATFORM_FLAG_CONST_DISALLOWED.at(
                            file,
                            span,
                            format!("`FROM --platform={p}` pins the platform, so building for another platform gives a `{p}` image"),
                        );
                        d.hint = Some(
                            "use `--platform=$BUILDPLATFORM` for build tools, or drop the flag"
                                .to_owned(),
                        );
                        diags.push(d);
                    }
                }
                match lex.expand_word(p, &global) {
                    Ok(v) => match Platform::parse(&v) {
                        Ok(pl) => platform = Some(pl),
                        Err(e) => {
                            let mut d = rules::INVALID_PLATFORM.at(file, span, e);
                            d.hint = Some(
                                "write a platform like `linux/amd64` or `$BUILDPLATFORM`"
                                    .to_owned(),
                            );
                            diags.push(d);
                        }
                    },
                    Err(e) => diags.push(rules::INVALID_SUBSTITUTION.at(
                        file,
                        span,
                        format!("cannot expand `{p}`: {e}"),
                    )),
                }
            }
            let base = if image.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if let Some(idx) = find_stage(&self.stages, &image, i) {
                Base::Stage(idx)
            } else {
                Base::Image(image)
            };
            planned.push(PlannedStage {
                index: i,
                name: stage.from.name.clone(),
                base,
                platform,
                span,
                deps: Vec::new(),
                image_sources: Vec::new(),
            });
        }

        // `--from` references.
        for (i, stage) in self.stages.iter().enumerate() {
            let mut deps = Vec::new();
            let mut images = Vec::new();
            if let Base::Stage(b) = planned[i].base {
                deps.push(b);
            }
            for ins in &stage.instructions {
                let refs: Vec<String> = match &ins.kind {
                    Kind::Copy(c) => c.from.iter().cloned().collect(),
                    Kind::Run(r) => r
                        .mounts
                        .iter()
                        .filter_map(|m| mount::mount_from(m))
                        .collect(),
                    _ => Vec::new(),
                };
                for r in refs {
                    match self.resolve_from(&r, i, ins.span, &mut diags) {
                        Some(Source::Stage(s)) if !deps.contains(&s) => deps.push(s),
                        Some(Source::Image(img)) if !images.contains(&img) => images.push(img),
                        _ => {}
                    }
                }
            }
            planned[i].deps = deps;
            planned[i].image_sources = images;
        }

        // Cycles.
        if let Some(cycle) = find_cycle(&planned) {
            let names: Vec<String> = cycle
                .iter()
                .map(|&i| stage_label(&self.stages[i], i))
                .collect();
            let first = cycle[0];
            let mut d = rules::CIRCULAR_STAGE_DEPENDENCY.at(
                file,
                self.stages[first].span,
                format!(
                    "stages depend on each other in a circle: {}",
                    names.join(" -> ")
                ),
            );
            d.hint = Some(
                "break the circle: a stage cannot need itself, directly or through others"
                    .to_owned(),
            );
            diags.push(d);
        }

        // Target.
        let last = self.stages.len().saturating_sub(1);
        let target = match &opts.target {
            None => last,
            Some(t) => {
                if let Some(i) = find_stage(&self.stages, t, self.stages.len()) {
                    i
                } else {
                    let names: Vec<&str> = self
                        .stages
                        .iter()
                        .filter_map(|s| s.from.name.as_deref())
                        .collect();
                    let mut d = Diagnostic::new(
                        rules::UNKNOWN_TARGET.id,
                        rules::UNKNOWN_TARGET.severity,
                        rules::UNKNOWN_TARGET.title,
                        format!("target stage `{t}` could not be found in `{file}`"),
                    )
                    .with_url(rules::UNKNOWN_TARGET.url());
                    d.file = Some(file.to_owned());
                    d.hint = Some(
                        match (suggest(t, names.iter().copied()), names.is_empty()) {
                            (Some(s), _) => format!("did you mean `--target {s}`?"),
                            (None, true) => {
                                "the Dockerfile names no stage; add `AS name` to a `FROM` line"
                                    .to_owned()
                            }
                            (None, false) => format!("stages: {}", names.join(", ")),
                        },
                    );
                    diags.push(d);
                    last
                }
            }
        };

        let mut order = Vec::new();
        if !self.stages.is_empty() {
            let mut seen = vec![false; planned.len()];
            postorder(&planned, target, &mut seen, &mut order);
        }

        let mut declared: Vec<&str> = declared_global.clone();
        for s in &self.stages {
            for ins in &s.instructions {
                if let Kind::Arg(decls) = &ins.kind {
                    declared.extend(decls.iter().map(|d| d.name.as_str()));
                }
            }
        }
        let unused_build_args = opts
            .build_args
            .keys()
            .filter(|k| !declared.contains(&k.as_str()) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();

        Plan {
            stages: planned,
            target,
            order,
            global_args: global,
            unused_build_args,
            diagnostics: diags,
        }
    }

    /// Resolves a `--from` value (never expanded, as in BuildKit).
    fn resolve_from(
        &self,
        r: &str,
        current: usize,
        span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Source> {
        let file = self.file.as_str();
        if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()) {
            return match r.parse::<usize>() {
                Ok(i) if i < self.stages.len() && i != current => Some(Source::Stage(i)),
                _ => {
                    let mut d = rules::UNDEFINED_STAGE.at(
                        file,
                        span,
                        format!(
                            "`--from={r}` names no stage: stages are numbered 0 to {}",
                            self.stages.len().saturating_sub(1)
                        ),
                    );
                    d.severity = crate::diagnose::Severity::Error;
                    d.hint = Some(if r.parse::<usize>().ok() == Some(current) {
                        "a stage cannot copy from itself".to_owned()
                    } else {
                        "use a stage name: `FROM image AS name`, then `--from=name`".to_owned()
                    });
                    diags.push(d);
                    None
                }
            };
        }
        if let Some(i) = find_stage(&self.stages, r, self.stages.len()) {
            if i == current {
                let mut d = rules::UNDEFINED_STAGE.at(
                    file,
                    span,
                    format!("stage `{r}` cannot copy from itself"),
                );
                d.severity = crate::diagnose::Severity::Error;
                d.hint = Some("copy from an earlier stage or an image".to_owned());
                diags.push(d);
                return None;
            }
            return Some(Source::Stage(i));
        }
        // Not a stage: BuildKit reads it as an image. Say so when that is probably not
        // what was meant: a bare word that looks like a stage name.
        let names: Vec<&str> = self
            .stages
            .iter()
            .filter_map(|s| s.from.name.as_deref())
            .collect();
        let bare = !r.contains([':', '/', '@']);
        if bare || suggest(r, names.iter().copied()).is_some() {
            let mut d = rules::UNDEFINED_STAGE.at(
                file,
                span,
                format!("`--from={r}` names no stage, so it is pulled as the image `{r}`"),
            );
            d.hint = Some(match suggest(r, names.iter().copied()) {
                Some(s) => format!("did you mean the stage `{s}`?"),
                None => format!(
                    "name a stage `{r}` (`FROM ... AS {r}`), or write the image with a tag (`{r}:latest`) to say it is an image"
                ),
            });
            diags.push(d);
        }
        Some(Source::Image(r.to_owned()))
    }

    /// Expands the instructions of stage `index`.
    ///
    /// `base_env` is the environment of the base: the image config's `Env` for an image,
    /// the [`ExpandedStage::env`] of the base stage, empty for `scratch`, or `None` when it
    /// is not known (`rbuild check` does not pull images). With `None`, an undefined
    /// variable is reported only when it looks like a misspelt defined one.
    pub fn expand_stage(
        &self,
        plan: &Plan,
        opts: &BuildOptions,
        index: usize,
        base_env: Option<&[(String, String)]>,
    ) -> ExpandedStage {
        let file = self.file.as_str();
        let lex = self.lexer();
        let mut diags = Vec::new();
        let Some(stage) = self.stages.get(index) else {
            return ExpandedStage {
                index,
                steps: Vec::new(),
                env: Vec::new(),
                diagnostics: diags,
            };
        };
        let env_known = base_env.is_some();
        let mut env: Arc<Vec<(String, String)>> =
            Arc::new(base_env.map(<[_]>::to_vec).unwrap_or_default());
        let mut args: Arc<Vec<(String, String)>> = Arc::new(Vec::new());
        let mut declared: Vec<String> = Vec::new();
        let auto = opts.platform_args();
        let mut steps = Vec::with_capacity(stage.instructions.len());

        for ins in &stage.instructions {
            let span = ins.span;
            let mut errors: Vec<String> = Vec::new();
            let mut unmatched: Vec<String> = Vec::new();
            let mut ex = |word: &str, errors: &mut Vec<String>| -> String {
                let scope = Layered {
                    first: env.as_slice(),
                    second: args.as_slice(),
                };
                match lex.expand(word, &scope) {
                    Ok(e) => {
                        for u in e.unmatched {
                            if !unmatched.contains(&u) {
                                unmatched.push(u);
                            }
                        }
                        e.result
                    }
                    Err(e) => {
                        errors.push(format!("cannot expand `{word}`: {e}"));
                        word.to_owned()
                    }
                }
            };
            let mut out = ins.clone();
            let mut mounts = Vec::new();
            let (env_before, args_before) = (Arc::clone(&env), Arc::clone(&args));
            match &mut out.kind {
                Kind::Env(kvs) | Kind::Label(kvs) => {
                    for kv in kvs.iter_mut() {
                        kv.key = ex(&kv.key, &mut errors);
                        kv.value = ex(&kv.value, &mut errors);
                    }
                }
                Kind::Arg(decls) => {
                    for d in decls.iter_mut() {
                        d.name = ex(&d.name, &mut errors);
                        if let Some(v) = &d.default {
                            d.default = Some(ex(v, &mut errors));
                        }
                    }
                }
                Kind::Copy(Copy {
                    sources,
                    inline,
                    dest,
                    chown,
                    chmod,
                    exclude,
                    ..
                }) => {
                    expand_paths(sources, dest, chown, chmod, exclude, &mut |w| {
                        ex(w, &mut errors)
                    });
                    expand_inline(inline, env.as_slice(), args.as_slice(), &mut errors);
                }
                Kind::Add(Add {
                    sources,
                    inline,
                    dest,
                    chown,
                    chmod,
                    exclude,
                    checksum,
                    ..
                }) => {
                    expand_paths(sources, dest, chown, chmod, exclude, &mut |w| {
                        ex(w, &mut errors)
                    });
                    if let Some(c) = checksum {
                        *c = ex(c, &mut errors);
                    }
                    expand_inline(inline, env.as_slice(), args.as_slice(), &mut errors);
                }
                Kind::Workdir(w) | Kind::User(w) | Kind::StopSignal(w) => *w = ex(w, &mut errors),
                Kind::Volume(v) | Kind::Expose(v) => {
                    for w in v.iter_mut() {
                        *w = ex(w, &mut errors);
                    }
                }
                Kind::Run(Run { mounts: specs, .. }) => {
                    for spec in specs.iter() {
                        let mut expand = |w: &str| -> Result<String, String> {
                            let mut e = Vec::new();
                            let r = ex(w, &mut e);
                            e.pop().map_or(Ok(r), Err)
                        };
                        match mount::parse_mount(spec, &mut expand) {
                            Ok(m) => mounts.push(m),
                            Err(e) => {
                                let mut d = rules::INVALID_MOUNT.at(
                                    file,
                                    span,
                                    format!("`--mount={spec}`: {e}"),
                                );
                                d.hint = Some("see the `RUN --mount` reference: `type=cache,target=/root/.cache`".to_owned());
                                diags.push(d);
                            }
                        }
                    }
                }
                _ => {}
            }
            for e in errors {
                let mut d = rules::INVALID_SUBSTITUTION.at(file, span, e);
                d.hint = Some(
                    "check the `${...}` syntax; write `\\$` for a literal dollar sign".to_owned(),
                );
                diags.push(d);
            }
            // Undefined variables.
            for var in unmatched {
                if declared.contains(&var) {
                    continue;
                }
                let known: Vec<&str> = env
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .chain(declared.iter().map(String::as_str))
                    .collect();
                let guess = suggest(&var, known.iter().copied());
                if !env_known && guess.is_none() {
                    continue;
                }
                let mut d = rules::UNDEFINED_VARIABLE.at(
                    file,
                    span,
                    format!("`${var}` is not defined by an `ARG` or `ENV` before this line, so it expands to nothing"),
                );
                d.hint = Some(match guess {
                    Some(s) => format!("did you mean `${s}`?"),
                    None => format!(
                        "declare it with `ARG {var}` or `ENV {var}=...`, or write `${{{var}:-default}}`"
                    ),
                });
                diags.push(d);
            }
            // Apply to the scope.
            match &out.kind {
                Kind::Env(kvs) => {
                    let e = Arc::make_mut(&mut env);
                    for kv in kvs {
                        set(e, &kv.key, kv.value.clone());
                    }
                }
                Kind::Arg(decls) => {
                    for ArgDecl { name, default } in decls {
                        if !declared.contains(name) {
                            declared.push(name.clone());
                        }
                        let value = opts
                            .build_args
                            .get(name)
                            .cloned()
                            .or_else(|| default.clone())
                            .or_else(|| {
                                plan.global_args
                                    .iter()
                                    .find(|(k, _)| k == name)
                                    .map(|(_, v)| v.clone())
                            })
                            .or_else(|| {
                                auto.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                            });
                        // Without a value, an earlier value of the same ARG stays (as in
                        // BuildKit, where the state keeps it).
                        if let Some(v) = value {
                            set(Arc::make_mut(&mut args), name, v);
                        }
                    }
                }
                _ => {}
            }
            steps.push(Step {
                instruction: out,
                mounts,
                env: env_before,
                args: args_before,
            });
        }
        ExpandedStage {
            index,
            steps,
            env: env.as_ref().clone(),
            diagnostics: diags,
        }
    }
}

fn expand_paths(
    sources: &mut [String],
    dest: &mut String,
    chown: &mut Option<String>,
    chmod: &mut Option<String>,
    exclude: &mut [String],
    ex: &mut dyn FnMut(&str) -> String,
) {
    for s in sources.iter_mut() {
        *s = ex(s);
    }
    *dest = ex(dest);
    for f in [chown, chmod].into_iter().flatten() {
        *f = ex(f);
    }
    for e in exclude.iter_mut() {
        *e = ex(e);
    }
}

/// Heredoc bodies of `COPY`/`ADD` are expanded with quotes left alone and `\` escapes,
/// as BuildKit does (`SkipProcessQuotes`).
fn expand_inline(
    inline: &mut [InlineSource],
    env: &[(String, String)],
    args: &[(String, String)],
    errors: &mut Vec<String>,
) {
    let mut lex = Lexer::new('\\');
    lex.skip_process_quotes = true;
    let scope = Layered {
        first: env,
        second: args,
    };
    for src in inline.iter_mut().filter(|s| s.expand) {
        match lex.expand_word(&src.content, &scope) {
            Ok(v) => src.content = v,
            Err(e) => errors.push(format!("cannot expand the heredoc `{}`: {e}", src.name)),
        }
    }
}

fn stage_label(s: &Stage, i: usize) -> String {
    s.from.name.clone().unwrap_or_else(|| format!("stage {i}"))
}

fn postorder(stages: &[PlannedStage], i: usize, seen: &mut [bool], out: &mut Vec<usize>) {
    // Iterative DFS, so that hostile files with thousands of chained stages cannot
    // overflow the stack.
    let mut stack = vec![(i, 0usize)];
    seen[i] = true;
    while let Some((node, next)) = stack.pop() {
        if let Some(&dep) = stages[node].deps.get(next) {
            stack.push((node, next + 1));
            if dep < seen.len() && !seen[dep] {
                seen[dep] = true;
                stack.push((dep, 0));
            }
        } else {
            out.push(node);
        }
    }
}

/// A cycle of stage dependencies, if any.
fn find_cycle(stages: &[PlannedStage]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; stages.len()];
    for start in 0..stages.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = stages[node].deps.get(*next) {
                *next += 1;
                match state.get(dep) {
                    Some(0) => {
                        state[dep] = 1;
                        stack.push((dep, 0));
                    }
                    Some(1) => {
                        let pos = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[pos..].iter().map(|&(n, _)| n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_normalise() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/ amd64").is_err());
    }

    #[test]
    fn platform_args_for_arm() {
        let opts = BuildOptions {
            target_platform: Platform::parse("linux/arm/v7").unwrap(),
            build_platform: Platform::parse("linux/amd64").unwrap(),
            ..BuildOptions::default()
        };
        let args = opts.platform_args();
        let get = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(get("TARGETVARIANT"), Some("v7"));
        assert_eq!(get("BUILDVARIANT"), Some(""));
    }
}

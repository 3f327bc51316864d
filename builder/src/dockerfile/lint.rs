//! Lint rules that need only the typed instructions (no build arguments, no expansion).
//! Rules that need expansion (`undefined-variable`, `undefined-arg-in-from`, ...) live in
//! `stages`.

use crate::diagnose::Diagnostic;

use super::instructions::Kind;
use super::{Dockerfile, rules};

/// Names that mean something else in `FROM` or `--from` (BuildKit's reserved words).
const RESERVED_STAGE_NAMES: &[&str] = &["scratch", "context"];

/// Whether an `ARG`/`ENV` name looks like it carries a secret (BuildKit's pattern:
/// a `_`-separated word among these, and not `public`).
fn looks_secret(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pass",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let lower = name.to_ascii_lowercase();
    if lower.contains("public") {
        return false;
    }
    lower.split('_').any(|w| WORDS.contains(&w))
}

fn casing(s: &str) -> Option<bool> {
    if s == s.to_uppercase() {
        Some(true)
    } else if s == s.to_lowercase() {
        Some(false)
    } else {
        None
    }
}

pub(super) fn static_lints(df: &Dockerfile, out: &mut Vec<Diagnostic>) {
    let file = df.file.as_str();

    // `# syntax=`: rbuild is its own frontend.
    if let Some(d) = df.ast.directives.iter().find(|d| d.name == "syntax") {
        let image = d.value.split_whitespace().next().unwrap_or("");
        let repo = image.split(['@', ':']).next().unwrap_or("");
        let repo = repo.trim_start_matches("docker.io/");
        if repo != "docker/dockerfile" && repo != "docker/dockerfile-upstream" {
            let mut diag = rules::UNSUPPORTED_SYNTAX.at(
                file,
                super::Span::line(d.line),
                format!("`# syntax={}` asks for another frontend; rbuild reads the file as a standard Dockerfile", d.value),
            );
            diag.hint = Some("use `# syntax=docker/dockerfile:1`, or build with the tool the frontend belongs to".to_owned());
            out.push(diag);
        }
    }

    // Instruction casing: the majority wins.
    let mut upper = 0usize;
    let mut lower = 0usize;
    for n in &df.ast.nodes {
        match casing(&n.keyword) {
            Some(true) => upper += 1,
            Some(false) => lower += 1,
            None => {}
        }
    }
    let want_upper = upper >= lower;
    for n in &df.ast.nodes {
        if casing(&n.keyword) != Some(want_upper) {
            let mut d = rules::CONSISTENT_INSTRUCTION_CASING.at(
                file,
                n.span,
                format!(
                    "`{}` is not {} like the other instructions",
                    n.keyword,
                    if want_upper { "uppercase" } else { "lowercase" }
                ),
            );
            d.hint = Some(format!(
                "write `{}`",
                if want_upper {
                    n.keyword.to_uppercase()
                } else {
                    n.keyword.to_lowercase()
                }
            ));
            out.push(d);
        }
    }

    for (decl, span) in &df.meta_args {
        if looks_secret(&decl.name) {
            out.push(secret(file, *span, "ARG", &decl.name));
        }
    }

    let mut names: Vec<(&str, usize)> = Vec::new();
    for (i, stage) in df.stages.iter().enumerate() {
        let from = &stage.from;
        if let (Some(name), Some(written)) = (&from.name, &from.name_as_written) {
            if let Some(&(_, first)) = names.iter().find(|(n, _)| n == name) {
                let mut d = rules::DUPLICATE_STAGE_NAME.at(
                    file,
                    stage.span,
                    format!("stage name `{name}` is already used by stage {first}; references now mean this one"),
                );
                d.hint = Some("give every stage its own name".to_owned());
                out.push(d);
            }
            names.push((name, i));
            if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                let mut d = rules::RESERVED_STAGE_NAME.at(
                    file,
                    stage.span,
                    format!("`{written}` is a reserved word and should not name a stage"),
                );
                d.hint = Some("pick another name".to_owned());
                out.push(d);
            }
            if written != name {
                let mut d = rules::STAGE_NAME_CASING.at(
                    file,
                    stage.span,
                    format!("stage name `{written}` should be lowercase"),
                );
                d.hint = Some(format!("write `AS {name}`"));
                out.push(d);
            }
        }
        if let Some(as_kw) = &from.as_keyword {
            let from_kw = df
                .ast
                .nodes
                .iter()
                .find(|n| n.span == stage.span)
                .map_or("FROM", |n| n.keyword.as_str());
            if let (Some(a), Some(b)) = (casing(from_kw), casing(as_kw))
                && a != b
            {
                let mut d = rules::FROM_AS_CASING.at(
                    file,
                    stage.span,
                    format!("`{as_kw}` and `{from_kw}` keywords' casing do not match"),
                );
                d.hint = Some(format!("write `{}`", if a { "AS" } else { "as" }));
                out.push(d);
            }
        }

        let base_has_workdir = df.stages[..i]
            .iter()
            .rfind(|s| s.from.name.as_deref() == Some(&from.image.to_lowercase()))
            .is_some_and(|s| {
                s.instructions
                    .iter()
                    .any(|ins| matches!(&ins.kind, Kind::Workdir(w) if w.starts_with('/')))
            });
        let mut workdir_set = base_has_workdir;
        let mut last_of: Vec<(&'static str, &super::Instruction)> = Vec::new();
        for ins in &stage.instructions {
            match &ins.kind {
                Kind::Maintainer(m) => {
                    let mut d = rules::MAINTAINER_DEPRECATED.at(
                        file,
                        ins.span,
                        "`MAINTAINER` is deprecated",
                    );
                    d.hint = Some(format!(
                        "write `LABEL org.opencontainers.image.authors=\"{m}\"`"
                    ));
                    out.push(d);
                }
                Kind::Cmd(c) | Kind::Entrypoint(c) if c.shell_form && !c.args.is_empty() => {
                    let kw = ins.name();
                    let mut d = rules::JSON_ARGS_RECOMMENDED.at(
                        file,
                        ins.span,
                        format!("shell-form `{kw}` runs under `/bin/sh -c`, so the process does not receive signals such as SIGTERM"),
                    );
                    d.hint = Some(format!(
                        "use the exec form: `{kw} [\"executable\", \"arg\"]`"
                    ));
                    out.push(d);
                }
                Kind::Workdir(w) => {
                    if is_absolute(w) || w.starts_with('$') {
                        workdir_set = true;
                    } else if !workdir_set {
                        let mut d = rules::WORKDIR_RELATIVE_PATH.at(
                            file,
                            ins.span,
                            format!("`WORKDIR {w}` is relative to the base image's working directory, which can change"),
                        );
                        d.hint = Some(format!("use an absolute path, e.g. `WORKDIR /{w}`"));
                        out.push(d);
                    }
                }
                Kind::Arg(decls) => {
                    for d in decls {
                        if looks_secret(&d.name) {
                            out.push(secret(file, ins.span, "ARG", &d.name));
                        }
                    }
                }
                Kind::Env(kvs) | Kind::Label(kvs) => {
                    let kw = ins.name();
                    for kv in kvs {
                        if kw == "ENV" && looks_secret(&kv.key) {
                            out.push(secret(file, ins.span, "ENV", &kv.key));
                        }
                        if kv.legacy {
                            let mut d = rules::LEGACY_KEY_VALUE_FORMAT.at(
                                file,
                                ins.span,
                                format!(
                                    "`{kw} {} {}` uses the legacy whitespace-separated form",
                                    kv.key, kv.value
                                ),
                            );
                            d.hint = Some(format!(
                                "write `{kw} {}={}`",
                                kv.key,
                                quote_if_needed(&kv.value)
                            ));
                            out.push(d);
                        }
                    }
                }
                Kind::Expose(ports) => {
                    for p in ports.iter().filter(|p| !p.contains('$')) {
                        if p.contains(':') {
                            let mut d = rules::EXPOSE_INVALID_FORMAT.at(
                                file,
                                ins.span,
                                format!("`EXPOSE {p}` gives an IP address or host port; `EXPOSE` only documents container ports"),
                            );
                            d.hint = Some(
                                "publish host ports when running the container (`docker run -p`)"
                                    .to_owned(),
                            );
                            out.push(d);
                        }
                        if let Some((_, proto)) = p.split_once('/')
                            && proto != proto.to_lowercase()
                        {
                            let mut d = rules::EXPOSE_PROTO_CASING.at(
                                file,
                                ins.span,
                                format!("protocol of `EXPOSE {p}` should be lowercase"),
                            );
                            d.hint = Some(format!("write `{}`", p.to_lowercase()));
                            out.push(d);
                        }
                    }
                }
                _ => {}
            }
            let kind = match ins.kind {
                Kind::Cmd(_) => "CMD",
                Kind::Entrypoint(_) => "ENTRYPOINT",
                Kind::Healthcheck(_) => "HEALTHCHECK",
                _ => continue,
            };
            if let Some(pos) = last_of.iter().position(|(k, _)| *k == kind) {
                let (_, prev) = last_of.remove(pos);
                let mut d = rules::MULTIPLE_INSTRUCTIONS_DISALLOWED.at(
                    file,
                    prev.span,
                    format!(
                        "this `{kind}` is overridden by the one on line {}",
                        ins.span.start
                    ),
                );
                d.hint = Some(format!("keep one `{kind}` per stage"));
                out.push(d);
            }
            last_of.push((kind, ins));
        }
    }
}

/// Absolute on Linux (`/app`) or Windows (`C:\\app`, `C:/app`, `\\app`).
fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with(['/', '\\'])
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}

fn quote_if_needed(v: &str) -> String {
    if v.contains(char::is_whitespace) && !v.starts_with('"') {
        format!("\"{v}\"")
    } else {
        v.to_owned()
    }
}

fn secret(file: &str, span: super::Span, kw: &str, name: &str) -> Diagnostic {
    let mut d = rules::SECRETS_USED_IN_ARG_OR_ENV.at(
        file,
        span,
        format!("`{kw} {name}` looks like a secret; {kw} values are stored in the image history and metadata"),
    );
    d.hint = Some(format!(
        "pass it with `--secret id={}` and `RUN --mount=type=secret,id={0}`",
        name.to_lowercase()
    ));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in ["GITHUB_TOKEN", "DB_PASSWORD", "api_key", "AUTH", "SECRET"] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["TOKENIZER", "PUBLIC_KEY", "MONKEY", "PATH", "KEYRING_DIR"] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}

//! Typed instructions: each syntax-tree node checked and turned into what it means, as
//! BuildKit's `instructions.ParseInstruction` does. Words are still unexpanded here;
//! [`Instruction::expand`] applies variable expansion where Docker applies it.

use std::time::Duration;

use super::ast::{Heredoc, Node, Span};
use super::flags::{self, Kind as F};
use super::parser::parse_heredoc;
use super::rules::{self, Rule};

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword as written.
    pub keyword: String,
    pub span: Span,
    /// The logical line as written (continuations joined).
    pub original: String,
    pub kind: Kind,
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From(From),
    Arg(Vec<ArgDecl>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Copy(Copy),
    Add(Add),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    /// Ports as written (`80`, `53/udp`), sorted as BuildKit sorts them.
    Expose(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Maintainer(String),
    Onbuild(Onbuild),
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, a stage name or `scratch` (unexpanded).
    pub image: String,
    /// The stage name, lowercased.
    pub name: Option<String>,
    /// The stage name as written.
    pub name_as_written: Option<String>,
    /// The `AS` keyword as written.
    pub as_keyword: Option<String>,
    /// `--platform` (unexpanded).
    pub platform: Option<String>,
}

/// One `ARG NAME[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// One pair of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// The command of `RUN`, `CMD`, `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, run with the stage's `SHELL`.
    pub args: Vec<String>,
    /// Shell form (the shell is prepended when it runs).
    pub shell_form: bool,
    /// Heredocs of the instruction, in order.
    pub heredocs: Vec<Heredoc>,
}

/// `RUN [--mount=...] [--network=...] [--security=...] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// `--mount` values as written; [`super::mount::parse_mount`] checks them on expansion.
    pub mounts: Vec<String>,
    /// `default`, `none` or `host`.
    pub network: Option<String>,
    /// `sandbox` or `insecure`.
    pub security: Option<String>,
    /// `--device` values (BuildKit labs).
    pub devices: Vec<String>,
}

/// A source of `COPY`/`ADD` given inline as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    /// The file name (the heredoc delimiter).
    pub name: String,
    /// The content (`<<-` tabs already stripped).
    pub content: String,
    /// Whether variables in the content are expanded.
    pub expand: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<String>,
    pub inline: Vec<InlineSource>,
    pub dest: String,
    /// `--from`: a stage name, a stage index or an image (never expanded).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<String>,
    pub inline: Vec<InlineSource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    /// `--unpack` when given.
    pub unpack: Option<bool>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", argv...]` or `["CMD-SHELL", command]` (the image config form).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD TRIGGER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as stored in the image config (`RUN echo hi`).
    pub expression: String,
    /// The trigger, checked.
    pub trigger: Box<Instruction>,
}

/// Why a node is not a valid instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionError {
    pub rule: Rule,
    pub message: String,
    pub hint: Option<String>,
}

fn fail<T>(
    rule: Rule,
    message: impl Into<String>,
    hint: impl Into<Option<String>>,
) -> Result<T, InstructionError> {
    Err(InstructionError {
        rule,
        message: message.into(),
        hint: hint.into(),
    })
}

/// Every instruction keyword, for suggestions.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn at_least_one(kw: &str) -> InstructionError {
    InstructionError {
        rule: rules::INVALID_INSTRUCTION,
        message: format!("{kw} requires at least one argument"),
        hint: None,
    }
}

fn exactly_one(kw: &str, args: &[String]) -> Result<String, InstructionError> {
    match args {
        [one] => Ok(one.clone()),
        _ => fail(
            rules::INVALID_INSTRUCTION,
            format!("{kw} requires exactly one argument, got {}", args.len()),
            (args.len() > 1).then(|| "quote the value if it contains spaces".to_owned()),
        ),
    }
}

fn flag_values(
    kw: &str,
    node: &Node,
    defs: &[(&'static str, F)],
) -> Result<flags::Values, InstructionError> {
    flags::parse(kw, &node.flags, defs).map_err(|e| InstructionError {
        rule: rules::INVALID_FLAG,
        message: e.message,
        hint: Some(e.hint),
    })
}

/// Go's `time.ParseDuration`.
fn parse_go_duration(s: &str) -> Option<(bool, Duration)> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some((neg, Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * nanos;
    }
    if !total.is_finite() || total > 9.2e18 {
        return None;
    }
    // `total` is finite, non-negative and below 2^63 here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((neg, Duration::from_nanos(total as u64)))
}

fn interval(v: &flags::Values, name: &str) -> Result<Option<Duration>, InstructionError> {
    let Some(s) = v.string(name) else {
        return Ok(None);
    };
    if s.is_empty() {
        return Ok(None);
    }
    let Some((neg, d)) = parse_go_duration(&s) else {
        return fail(
            rules::INVALID_FLAG,
            format!("invalid duration `{s}` for `--{name}`"),
            "write a duration like `30s`, `1m30s` or `500ms`".to_owned(),
        );
    };
    if d.is_zero() {
        return Ok(Some(Duration::ZERO));
    }
    if neg || d < Duration::from_millis(1) {
        return fail(
            rules::INVALID_FLAG,
            format!("`--{name}` cannot be less than 1ms (got `{s}`)"),
            None,
        );
    }
    Ok(Some(d))
}

fn command_line(node: &Node) -> CommandLine {
    let args = if node.args.is_empty() {
        Vec::new()
    } else if node.json {
        node.args.clone()
    } else {
        vec![node.args.join(" ")]
    };
    CommandLine {
        args,
        shell_form: !node.json,
        heredocs: node.heredocs.clone(),
    }
}

fn key_values(kw: &str, args: &[String]) -> Result<Vec<KeyValue>, InstructionError> {
    if args.is_empty() {
        return Err(at_least_one(kw));
    }
    let mut out = Vec::with_capacity(args.len() / 3);
    for triple in args.chunks(3) {
        let [key, value, sep] = triple else {
            return fail(
                rules::INVALID_INSTRUCTION,
                format!("{kw} has too many arguments"),
                None,
            );
        };
        if key.is_empty() {
            return fail(
                rules::INVALID_INSTRUCTION,
                format!("{kw} names can not be blank"),
                None,
            );
        }
        out.push(KeyValue {
            key: key.clone(),
            value: value.clone(),
            legacy: sep.is_empty(),
        });
    }
    Ok(out)
}

fn sources_and_dest(
    kw: &str,
    node: &Node,
) -> Result<(Vec<String>, Vec<InlineSource>, String), InstructionError> {
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return fail(
            rules::INVALID_INSTRUCTION,
            format!(
                "{kw} requires at least two arguments, but only one was provided: the destination could not be determined"
            ),
            format!("write `{kw} SOURCE... DESTINATION`"),
        );
    };
    if !node.json && parse_heredoc(dest).ok().flatten().is_some() {
        return fail(
            rules::INVALID_INSTRUCTION,
            format!("{kw} cannot accept a heredoc as a destination"),
            format!("write `{kw} <<EOF /path/to/file`"),
        );
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        let doc = if node.json {
            None
        } else {
            parse_heredoc(src).ok().flatten()
        };
        match doc.and_then(|d| node.heredocs.iter().find(|h| h.name == d.name)) {
            Some(h) => inline.push(InlineSource {
                name: h.name.clone(),
                content: h.chomped_content(),
                expand: h.expand,
            }),
            None => sources.push(src.clone()),
        }
    }
    Ok((sources, inline, dest.clone()))
}

fn stage_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl Instruction {
    /// Checks a syntax-tree node and types it.
    pub fn from_node(node: &Node) -> Result<Instruction, InstructionError> {
        let kw_upper = node.keyword.to_uppercase();
        let kw = kw_upper.as_str();
        let args = &node.args;
        let kind = match node.name().as_str() {
            "from" => {
                let v = flag_values(kw, node, &[("platform", F::String)])?;
                let (name, name_as_written, as_keyword) = match args.as_slice() {
                    [_] => (None, None, None),
                    [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                        let lower = name.to_lowercase();
                        if !stage_name_ok(&lower) {
                            return fail(
                                rules::INVALID_STAGE_NAME,
                                format!(
                                    "invalid name for build stage: `{name}`, name can't start with a number or contain symbols"
                                ),
                                "use letters, digits, `-`, `_` and `.`, starting with a letter"
                                    .to_owned(),
                            );
                        }
                        (Some(lower), Some(name.clone()), Some(as_kw.clone()))
                    }
                    _ => {
                        return fail(
                            rules::INVALID_INSTRUCTION,
                            "FROM requires either one or three arguments",
                            "write `FROM IMAGE` or `FROM IMAGE AS NAME`".to_owned(),
                        );
                    }
                };
                Kind::From(From {
                    image: args[0].clone(),
                    name,
                    name_as_written,
                    as_keyword,
                    platform: v.string("platform"),
                })
            }
            "arg" => {
                flag_values(kw, node, &[])?;
                if args.is_empty() {
                    return Err(at_least_one(kw));
                }
                let mut decls = Vec::with_capacity(args.len());
                for a in args {
                    let decl = match a.split_once('=') {
                        Some(("", _)) => {
                            return fail(
                                rules::INVALID_INSTRUCTION,
                                "ARG names can not be blank",
                                None,
                            );
                        }
                        Some((k, v)) => ArgDecl {
                            name: k.to_owned(),
                            default: Some(v.to_owned()),
                        },
                        None => ArgDecl {
                            name: a.clone(),
                            default: None,
                        },
                    };
                    decls.push(decl);
                }
                Kind::Arg(decls)
            }
            "env" => {
                flag_values(kw, node, &[])?;
                Kind::Env(key_values(kw, args)?)
            }
            "label" => {
                flag_values(kw, node, &[])?;
                Kind::Label(key_values(kw, args)?)
            }
            "maintainer" => {
                flag_values(kw, node, &[])?;
                Kind::Maintainer(exactly_one(kw, args)?)
            }
            "workdir" => {
                flag_values(kw, node, &[])?;
                Kind::Workdir(exactly_one(kw, args)?)
            }
            "user" => {
                flag_values(kw, node, &[])?;
                Kind::User(exactly_one(kw, args)?)
            }
            "stopsignal" => {
                flag_values(kw, node, &[])?;
                Kind::StopSignal(exactly_one(kw, args)?)
            }
            "run" => {
                let v = flag_values(
                    kw,
                    node,
                    &[
                        ("mount", F::Strings),
                        ("network", F::String),
                        ("security", F::String),
                        ("device", F::Strings),
                    ],
                )?;
                if let Some(n) = v.string("network")
                    && !matches!(n.as_str(), "default" | "none" | "host")
                {
                    return fail(
                        rules::INVALID_FLAG,
                        format!("unsupported network mode `{n}`"),
                        "use `--network=default`, `--network=none` or `--network=host`".to_owned(),
                    );
                }
                if let Some(s) = v.string("security")
                    && !matches!(s.as_str(), "sandbox" | "insecure")
                {
                    return fail(
                        rules::INVALID_FLAG,
                        format!("unsupported security mode `{s}`"),
                        "use `--security=sandbox` or `--security=insecure`".to_owned(),
                    );
                }
                Kind::Run(Run {
                    command: command_line(node),
                    mounts: v.list("mount"),
                    network: v.string("network"),
                    security: v.string("security"),
                    devices: v.list("device"),
                })
            }
            "cmd" => {
                flag_values(kw, node, &[])?;
                Kind::Cmd(command_line(node))
            }
            "entrypoint" => {
                flag_values(kw, node, &[])?;
                Kind::Entrypoint(command_line(node))
            }
            "shell" => {
                flag_values(kw, node, &[])?;
                if args.is_empty() {
                    return Err(at_least_one(kw));
                }
                if !node.json {
                    return fail(
                        rules::INVALID_INSTRUCTION,
                        "SHELL requires the arguments to be in JSON form",
                        "write `SHELL [\"/bin/sh\", \"-c\"]`".to_owned(),
                    );
                }
                Kind::Shell(args.clone())
            }
            "copy" => {
                let v = flag_values(
                    kw,
                    node,
                    &[
                        ("from", F::String),
                        ("chown", F::String),
                        ("chmod", F::String),
                        ("link", F::Bool),
                        ("parents", F::Bool),
                        ("exclude", F::Strings),
                    ],
                )?;
                let (sources, inline, dest) = sources_and_dest(kw, node)?;
                Kind::Copy(Copy {
                    sources,
                    inline,
                    dest,
                    from: v.string("from"),
                    chown: v.string("chown"),
                    chmod: v.string("chmod"),
                    link: v.bool("link"),
                    parents: v.bool("parents"),
                    exclude: v.list("exclude"),
                })
            }
            "add" => {
                let v = flag_values(
                    kw,
                    node,
                    &[
                        ("chown", F::String),
                        ("chmod", F::String),
                        ("link", F::Bool),
                        ("keep-git-dir", F::Bool),
                        ("checksum", F::String),
                        ("exclude", F::Strings),
                        ("unpack", F::Bool),
                    ],
                )?;
                let (sources, inline, dest) = sources_and_dest(kw, node)?;
                Kind::Add(Add {
                    sources,
                    inline,
                    dest,
                    chown: v.string("chown"),
                    chmod: v.string("chmod"),
                    link: v.bool("link"),
                    keep_git_dir: v.bool("keep-git-dir"),
                    checksum: v.string("checksum"),
                    exclude: v.list("exclude"),
                    unpack: v.bool_opt("unpack"),
                })
            }
            "volume" => {
                flag_values(kw, node, &[])?;
                if args.is_empty() {
                    return Err(at_least_one(kw));
                }
                let mut vols = Vec::with_capacity(args.len());
                for a in args {
                    let t = a.trim();
                    if t.is_empty() {
                        return fail(
                            rules::INVALID_INSTRUCTION,
                            "VOLUME specified can not be an empty string",
                            None,
                        );
                    }
                    vols.push(t.to_owned());
                }
                Kind::Volume(vols)
            }
            "expose" => {
                flag_values(kw, node, &[])?;
                if args.is_empty() {
                    return Err(at_least_one(kw));
                }
                let mut ports = args.clone();
                ports.sort();
                Kind::Expose(ports)
            }
            "healthcheck" => Kind::Healthcheck(healthcheck(kw, node)?),
            "onbuild" => {
                flag_values(kw, node, &[])?;
                let Some(sub) = &node.sub else {
                    return Err(at_least_one(kw));
                };
                let trigger_kw = sub.keyword.to_uppercase();
                match trigger_kw.as_str() {
                    "ONBUILD" => {
                        return fail(
                            rules::INVALID_INSTRUCTION,
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                            None,
                        );
                    }
                    "MAINTAINER" | "FROM" => {
                        return fail(
                            rules::INVALID_INSTRUCTION,
                            format!("{trigger_kw} isn't allowed as an ONBUILD trigger"),
                            None,
                        );
                    }
                    _ => {}
                }
                let mut sub = (**sub).clone();
                sub.span = node.span;
                let trigger = Instruction::from_node(&sub)?;
                let mut expression = strip_onbuild(&node.original).to_owned();
                for h in &node.heredocs {
                    expression.push('\n');
                    expression.push_str(&h.content);
                    expression.push_str(&h.name);
                }
                Kind::Onbuild(Onbuild {
                    expression,
                    trigger: Box::new(trigger),
                })
            }
            _ => {
                let mut hint = None;
                if let Some(s) = super::suggest(kw, KEYWORDS.iter().copied()) {
                    hint = Some(format!("did you mean `{s}`?"));
                }
                return fail(
                    rules::UNKNOWN_INSTRUCTION,
                    format!("unknown instruction `{kw}`"),
                    hint,
                );
            }
        };
        Ok(Instruction {
            keyword: node.keyword.clone(),
            span: node.span,
            original: node.original.clone(),
            kind,
        })
    }

    /// The keyword in uppercase.
    pub fn name(&self) -> String {
        self.keyword.to_uppercase()
    }
}

/// Parses an `ONBUILD` trigger stored in a base image's config (`RUN echo hi`, heredoc
/// bodies included), for the engine to run it at the start of a stage built on that image.
pub fn parse_trigger(expression: &str, escape: char) -> Result<Instruction, InstructionError> {
    let mut text = String::new();
    if escape != '\\' {
        text.push_str("# escape=`\n");
    }
    text.push_str(expression);
    text.push('\n');
    let parsed = super::parser::parse(text.as_bytes(), "ONBUILD");
    if let Some(d) = parsed
        .diagnostics
        .iter()
        .find(|d| d.severity == crate::diagnose::Severity::Error)
    {
        return fail(
            super::rules::find(&d.id)
                .copied()
                .unwrap_or(rules::INVALID_INSTRUCTION),
            format!("invalid ONBUILD trigger `{expression}`: {}", d.message),
            d.hint.clone(),
        );
    }
    match parsed.ast.nodes.as_slice() {
        [node] if !matches!(node.name().as_str(), "onbuild" | "from" | "maintainer") => {
            Instruction::from_node(node)
        }
        _ => fail(
            rules::INVALID_INSTRUCTION,
            format!(
                "invalid ONBUILD trigger `{expression}`: it must be one instruction other than ONBUILD, FROM or MAINTAINER"
            ),
            None,
        ),
    }
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start_matches(|c: char| c.is_ascii_whitespace());
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => {
            t[7..].trim_start_matches(|c: char| c.is_ascii_whitespace())
        }
        _ => original,
    }
}

fn healthcheck(kw: &str, node: &Node) -> Result<Healthcheck, InstructionError> {
    let args = &node.args;
    let Some(first) = args.first() else {
        return Err(at_least_one(kw));
    };
    let typ = first.to_uppercase();
    let rest = &args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return fail(
                rules::INVALID_INSTRUCTION,
                "HEALTHCHECK NONE takes no arguments",
                None,
            );
        }
        return Ok(Healthcheck {
            test: vec![typ],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        });
    }
    let v = flag_values(
        kw,
        node,
        &[
            ("interval", F::String),
            ("timeout", F::String),
            ("start-period", F::String),
            ("start-interval", F::String),
            ("retries", F::String),
        ],
    )?;
    if typ != "CMD" {
        return fail(
            rules::INVALID_INSTRUCTION,
            format!("unknown type `{typ}` in HEALTHCHECK (try CMD)"),
            "write `HEALTHCHECK CMD command` or `HEALTHCHECK NONE`".to_owned(),
        );
    }
    let cmd: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else if node.json {
        rest.to_vec()
    } else {
        vec![rest.join(" ")]
    };
    if cmd.is_empty() {
        return fail(
            rules::INVALID_INSTRUCTION,
            "missing command after HEALTHCHECK CMD",
            None,
        );
    }
    let mut test = vec![if node.json {
        "CMD".to_owned()
    } else {
        "CMD-SHELL".to_owned()
    }];
    test.extend(cmd);
    let retries = match v.string("retries").filter(|s| !s.is_empty()) {
        None => None,
        Some(r) => match r.parse::<i32>() {
            Ok(n) if n >= 0 => Some(n.unsigned_abs()),
            Ok(n) => {
                return fail(
                    rules::INVALID_FLAG,
                    format!("`--retries` cannot be negative (`{n}`)"),
                    None,
                );
            }
            Err(_) => {
                return fail(
                    rules::INVALID_FLAG,
                    format!("invalid number `{r}` for `--retries`"),
                    "write `--retries=3`".to_owned(),
                );
            }
        },
    };
    Ok(Healthcheck {
        test,
        interval: interval(&v, "interval")?,
        timeout: interval(&v, "timeout")?,
        start_period: interval(&v, "start-period")?,
        start_interval: interval(&v, "start-interval")?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parser::parse;

    fn one(src: &str) -> Result<Kind, String> {
        let p = parse(format!("FROM x\n{src}\n").as_bytes(), "D");
        assert!(p.is_complete(), "{:?}", p.diagnostics);
        Instruction::from_node(&p.ast.nodes[1])
            .map(|i| i.kind)
            .map_err(|e| format!("{}: {}", e.rule.id, e.message))
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(
            parse_go_duration("1m30s"),
            Some((false, Duration::from_secs(90)))
        );
        assert_eq!(
            parse_go_duration("1.5h"),
            Some((false, Duration::from_mins(90)))
        );
        assert_eq!(parse_go_duration("0"), Some((false, Duration::ZERO)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("3d"), None);
    }

    #[test]
    fn typed_instructions() {
        let Kind::Copy(c) = one("COPY --from=build --chown=1:1 --link a b /dst/").unwrap() else {
            panic!()
        };
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert!(c.link);
        let Kind::Healthcheck(h) =
            one("HEALTHCHECK --interval=5s --retries=3 CMD curl -f x").unwrap()
        else {
            panic!()
        };
        assert_eq!(h.test, ["CMD-SHELL", "curl -f x"]);
        assert_eq!(h.interval, Some(Duration::from_secs(5)));
        assert_eq!(h.retries, Some(3));
        let Kind::Arg(a) = one("ARG A B=2").unwrap() else {
            panic!()
        };
        assert_eq!(a[1].default.as_deref(), Some("2"));
        let Kind::Onbuild(o) = one("ONBUILD RUN echo hi").unwrap() else {
            panic!()
        };
        assert_eq!(o.expression, "RUN echo hi");
    }

    #[test]
    fn onbuild_triggers_round_trip() {
        let Kind::Onbuild(o) = one("ONBUILD RUN <<EOF\necho hi\nEOF").unwrap() else {
            panic!()
        };
        let t = parse_trigger(&o.expression, '\\').unwrap();
        let Kind::Run(r) = t.kind else { panic!() };
        assert_eq!(r.command.heredocs[0].content, "echo hi\n");
        assert!(parse_trigger("FROM x", '\\').is_err());
        assert!(parse_trigger("COPY a", '\\').is_err());
        assert!(parse_trigger("RUN a\nRUN b", '\\').is_err());
    }

    #[test]
    fn instruction_errors() {
        for (src, want) in [
            (
                "COPY a",
                "invalid-instruction: COPY requires at least two arguments",
            ),
            (
                "WORKDIR",
                "invalid-instruction: WORKDIR requires exactly one argument",
            ),
            (
                "SHELL sh -c",
                "invalid-instruction: SHELL requires the arguments to be in JSON form",
            ),
            ("RUNN x", "unknown-instruction: unknown instruction `RUNN`"),
            ("COPY --form=x a b", "invalid-flag: unknown flag `--form`"),
            (
                "RUN --network=bridge x",
                "invalid-flag: unsupported network mode",
            ),
            (
                "ONBUILD ONBUILD RUN x",
                "invalid-instruction: chaining ONBUILD",
            ),
            ("ONBUILD FROM x", "invalid-instruction: FROM isn't allowed"),
            (
                "HEALTHCHECK --interval=1us CMD x",
                "invalid-flag: `--interval` cannot be less than 1ms",
            ),
            ("HEALTHCHECK CONNECT x", "invalid-instruction: unknown type"),
            (
                "EXPOSE",
                "invalid-instruction: EXPOSE requires at least one argument",
            ),
            (
                "COPY a <<EOF\nx\nEOF",
                "invalid-instruction: COPY cannot accept a heredoc",
            ),
        ] {
            let got = one(src).unwrap_err();
            assert!(got.starts_with(want), "{src}: {got}");
        }
        let p = parse(b"FROM x AS 1st\n", "D");
        let e = Instruction::from_node(&p.ast.nodes[0]).unwrap_err();
        assert_eq!(e.rule.id, "invalid-stage-name");
    }
}

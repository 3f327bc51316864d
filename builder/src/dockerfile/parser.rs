//! Lines to syntax tree, the way BuildKit's `parser.Parse` does it: parser directives,
//! the byte-order mark, CRLF, line continuations (with comments and empty lines inside),
//! heredocs, flags, and the per-instruction argument shapes (JSON exec form with its
//! fallback to shell form, `ENV`/`LABEL` pairs, ...).
//!
//! Unlike BuildKit, a syntax error does not stop the parse: it becomes a diagnostic and
//! parsing goes on with the next instruction.

use crate::diagnose::Diagnostic;

use super::ast::{Ast, Directive, Heredoc, Node, Span};
use super::json::{self, JsonError};
use super::rules;
use super::shell::{Lexer, NoEnv};

/// What the parser produced: the tree and what was wrong with the text.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub ast: Ast,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// Whether the tree is complete: no syntax error was found while building it.
    pub fn is_complete(&self) -> bool {
        !self
            .diagnostics
            .iter()
            .any(|d| d.severity == crate::diagnose::Severity::Error)
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses `bytes` (the Dockerfile named `file` in diagnostics) into a syntax tree.
pub fn parse(bytes: &[u8], file: &str) -> Parsed {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut diagnostics = Vec::new();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(e) => {
            let line = line_of(bytes, e.valid_up_to());
            diagnostics.push(
                rules::INVALID_UTF8
                    .at(
                        file,
                        Span::line(line),
                        format!("line {line} is not valid UTF-8; invalid bytes are read as U+FFFD"),
                    )
                    .with_hint("save the Dockerfile as UTF-8"),
            );
            String::from_utf8_lossy(bytes)
        }
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut p = LineParser {
        file,
        lines: &lines,
        next: 0,
        escape: '\\',
        directives_done: false,
        directives: Vec::new(),
        nodes: Vec::new(),
        diagnostics,
    };
    p.run();
    let line_count = u32::try_from(lines.len()).unwrap_or(u32::MAX);
    Parsed {
        ast: Ast {
            nodes: p.nodes,
            escape: p.escape,
            directives: p.directives,
            lines: line_count,
        },
        diagnostics: p.diagnostics,
    }
}

#[allow(clippy::naive_bytecount)] // once per file with invalid UTF-8
fn line_of(bytes: &[u8], offset: usize) -> u32 {
    let n = bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

/// Go's `unicode.IsSpace`, which is Rust's `char::is_whitespace`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// The whitespace BuildKit splits instruction words on (`[\t\v\f\r ]+`).
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// `\s` of Go regular expressions.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

struct LineParser<'a> {
    file: &'a str,
    lines: &'a [&'a str],
    next: usize,
    escape: char,
    directives_done: bool,
    directives: Vec<Directive>,
    nodes: Vec<Node>,
    diagnostics: Vec<Diagnostic>,
}

/// A line number as `u32` (files beyond 4 billion lines saturate).
fn lineno(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'a> LineParser<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        let l = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some(l)
    }

    /// Number of the line last read (1-based).
    fn current(&self) -> u32 {
        lineno(self.next)
    }

    fn error(
        &mut self,
        rule: rules::Rule,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics.push(rule.at(self.file, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// Strips the newline (and on the first lines of instructions, leading whitespace),
    /// looks for a parser directive, and blanks comment lines.
    fn process_line(&mut self, raw: &'a str, strip_left: bool) -> &'a str {
        let mut t = trim_newline(raw);
        if strip_left {
            t = t.trim_start();
        }
        self.possible_directive(t);
        if t.starts_with('#') { "" } else { t }
    }

    fn possible_directive(&mut self, line: &str) {
        if self.directives_done {
            return;
        }
        let Some((key, value)) = parse_directive(line) else {
            self.directives_done = true;
            return;
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.directives_done = true;
            return;
        }
        let line_no = self.current();
        if self.directives.iter().any(|d| d.name == key) {
            self.error(
                rules::INVALID_DIRECTIVE,
                Span::line(line_no),
                format!("only one `{key}` parser directive can be used"),
            )
            .hint = Some(format!("remove the second `# {key}=` line"));
            return;
        }
        if key == "escape" {
            match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                other => {
                    let d = self.error(
                        rules::INVALID_DIRECTIVE,
                        Span::line(line_no),
                        format!("invalid escape token `{other}`: it must be `\\` or `` ` ``"),
                    );
                    d.hint = Some("write `# escape=\\` or `# escape=`` ` ``".to_owned());
                }
            }
        }
        self.directives.push(Directive {
            name: key,
            value: value.to_owned(),
            line: line_no,
        });
    }

    /// Removes a trailing escape token (the line continues) and says whether the
    /// instruction ends on this line. An escaped escape token (`\\`) does not continue.
    fn trim_continuation(&self, line: &'a str) -> (&'a str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        let Some(before) = t.strip_suffix(self.escape) else {
            return (line, true);
        };
        if before.is_empty() {
            return ("", false);
        }
        if before.ends_with(self.escape) {
            return (line, true);
        }
        (before, false)
    }

    fn run(&mut self) {
        let mut comments: Vec<String> = Vec::new();
        while let Some(raw) = self.next_line() {
            if is_comment(raw) {
                // BuildKit drops the first byte of the raw line, then trims.
                let comment = raw.get(1..).unwrap_or("").trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_owned());
                }
            }
            let processed = self.process_line(raw, true);
            let start = self.current();
            let (first, mut end_of_line) = self.trim_continuation(processed);
            if end_of_line && first.is_empty() {
                continue;
            }
            let mut line = first.to_owned();
            let mut empty_lines = Vec::new();
            while !end_of_line {
                let Some(raw) = self.next_line() else { break };
                let processed = self.process_line(raw, false);
                if is_comment(raw) {
                    continue;
                }
                if processed.trim_start().is_empty() {
                    empty_lines.push(self.current());
                    continue;
                }
                let (part, eol) = self.trim_continuation(processed);
                line.push_str(part);
                end_of_line = eol;
            }
            for empty in empty_lines {
                self.error(
                    rules::NO_EMPTY_CONTINUATION,
                    Span::line(empty),
                    format!(
                        "empty line {empty} inside an instruction continued with `{}`",
                        self.escape
                    ),
                )
                .hint = Some("delete the empty line, or end the instruction before it".to_owned());
            }
            let node = node_from_line(&line, self.escape);
            let span_so_far = Span::new(start, self.current());
            match node {
                Ok(mut node) => {
                    if can_contain_heredoc(&node) && line.contains("<<") {
                        match heredocs_from_line(&line) {
                            Ok(docs) => node.heredocs = self.read_heredocs(docs, start),
                            Err(msg) => {
                                self.error(rules::INVALID_HEREDOC, span_so_far, msg);
                            }
                        }
                    }
                    node.span = Span::new(start, self.current());
                    node.comments = std::mem::take(&mut comments);
                    self.nodes.push(node);
                }
                Err(e) => {
                    // Still consume heredoc bodies, so that they are not read as
                    // instructions.
                    let keyword = line
                        .split(is_token_space)
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if matches!(keyword.as_str(), "run" | "copy" | "add" | "onbuild")
                        && line.contains("<<")
                        && let Ok(docs) = heredocs_from_line(&line)
                    {
                        self.read_heredocs(docs, start);
                    }
                    let span = Span::new(start, self.current());
                    let d = self.error(e.rule, span, e.message);
                    d.hint = e.hint;
                    comments.clear();
                }
            }
        }
        if self.nodes.is_empty()
            && !self
                .diagnostics
                .iter()
                .any(|d| d.severity == crate::diagnose::Severity::Error)
        {
            let line = self.current().max(1);
            self.error(
                rules::EMPTY_DOCKERFILE,
                Span::line(line),
                "the Dockerfile has no instructions",
            )
            .hint = Some("start it with `FROM <image>`".to_owned());
        }
    }

    /// Reads the bodies of `docs`, in order, from the lines after the instruction.
    fn read_heredocs(&mut self, docs: Vec<Heredoc>, start: u32) -> Vec<Heredoc> {
        let mut out = Vec::with_capacity(docs.len());
        for mut doc in docs {
            let mut terminated = false;
            while let Some(raw) = self.next_line() {
                let mut candidate = trim_newline(raw);
                if doc.chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == doc.name {
                    terminated = true;
                    break;
                }
                doc.content.push_str(raw);
            }
            if !terminated {
                let span = Span::new(start, self.current());
                let name = doc.name.clone();
                self.error(
                    rules::UNTERMINATED_HEREDOC,
                    span,
                    format!("heredoc `<<{name}` is never closed: no line reads `{name}`"),
                )
                .hint = Some(format!(
                    "end the heredoc with a line that is exactly `{name}` (no spaces around it)"
                ));
                return out;
            }
            out.push(doc);
        }
        out
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let key_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_re_space)
        .trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

/// A syntax error in one instruction.
#[derive(Debug)]
struct NodeError {
    rule: rules::Rule,
    message: String,
    hint: Option<String>,
}

fn node_err<T>(
    rule: rules::Rule,
    message: impl Into<String>,
    hint: Option<&str>,
) -> Result<T, NodeError> {
    Err(NodeError {
        rule,
        message: message.into(),
        hint: hint.map(str::to_owned),
    })
}

/// Splits a logical line into keyword, flags and the rest, then shapes the arguments.
fn node_from_line(line: &str, escape: char) -> Result<Node, NodeError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(is_token_space) {
        Some(i) => (
            &trimmed[..i],
            trimmed[i..].trim_start_matches(is_token_space),
        ),
        None => (trimmed, ""),
    };
    let (args, flags) = if rest.is_empty() {
        ("", Vec::new())
    } else {
        extract_builder_flags(rest)
    };
    let args = args.trim();
    let mut node = Node {
        keyword: keyword.to_owned(),
        flags,
        args: Vec::new(),
        sub: None,
        json: false,
        original: line.to_owned(),
        heredocs: Vec::new(),
        span: Span::default(),
        comments: Vec::new(),
    };
    match keyword.to_lowercase().as_str() {
        "add" | "copy" | "volume" => {
            (node.args, node.json) = maybe_json_to_list(args)?;
        }
        "arg" => node.args = parse_words(args, escape),
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = maybe_json(args)?;
        }
        "env" => node.args = parse_name_val(args, "ENV", escape)?,
        "label" => node.args = parse_name_val(args, "LABEL", escape)?,
        "expose" | "from" => node.args = split_whitespace(args),
        "healthcheck" => {
            (node.args, node.json) = parse_health_config(args)?;
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !args.is_empty() {
                node.args = vec![args.to_owned()];
            }
        }
        "onbuild" => {
            if !args.is_empty() {
                node.sub = Some(Box::new(node_from_line(args, escape)?));
            }
        }
        // Unknown instructions parse (BuildKit's dump shows them with one empty
        // argument); they are rejected when instructions are typed.
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

/// Leading `--flag[=value]` words (quotes and `\` processed), then the rest of the line.
/// A bare `--` ends the flags. This works on bytes, like BuildKit's.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word: Vec<u8> = Vec::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let finish = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
    let mut pos = 0;
    while pos <= b.len() {
        let ch = b.get(pos).copied().unwrap_or(0);
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if is_ascii_go_space(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (&line[pos..], words);
            }
            phase = Phase::Word;
        }
        if pos == b.len() {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                words.push(finish(&word));
            }
            break;
        }
        if phase == Phase::Word {
            if is_ascii_go_space(ch) {
                phase = Phase::Spaces;
                if word == b"--" {
                    return (&line[pos..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(finish(&word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = b[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = b[pos];
        }
        word.push(c);
        pos += 1;
    }
    ("", words)
}

/// Go's `unicode.IsSpace` on one byte of ASCII (BuildKit's flag scanner reads bytes).
fn is_ascii_go_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ')
}

fn split_whitespace(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_token_space)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_json(rest: &str) -> Result<Option<Vec<String>>, NodeError> {
    match json::parse_string_array(rest) {
        Ok(v) => Ok(Some(v)),
        Err(JsonError::NotJson) => Ok(None),
        Err(JsonError::NotStrings) => node_err(
            rules::JSON_ARRAY_NOT_STRINGS,
            "when using JSON array syntax, arrays must be comprised of strings only",
            Some(
                "quote every element, e.g. `[\"sleep\", \"10\"]`, or use the shell form without brackets",
            ),
        ),
    }
}

fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Some(v) => (v, true),
        None => (vec![rest.to_owned()], false),
    })
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    Ok(match parse_json(rest)? {
        Some(v) => (v, true),
        None => (split_whitespace(rest), false),
    })
}

fn parse_health_config(rest: &str) -> Result<(Vec<String>, bool), NodeError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let cmd = rest[sep..].trim_start();
    let (args, json) = maybe_json(cmd)?;
    let mut out = Vec::with_capacity(args.len() + 1);
    out.push(typ.to_owned());
    out.extend(args);
    Ok((out, json))
}

/// Splits on whitespace, keeping quotes and escapes in the words (they are removed when
/// the words are expanded).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut chars = rest.chars().peekable();
    loop {
        let Some(ch) = chars.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                match chars.next() {
                    None => continue, // an escape token at the very end is dropped
                    Some(next) => {
                        word.push(ch);
                        word.push(next);
                        continue;
                    }
                }
            }
            word.push(ch);
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            match chars.next() {
                None => {
                    phase = Phase::Word;
                    continue;
                }
                Some(next) => {
                    word.push(ch);
                    word.push(next);
                    continue;
                }
            }
        }
        word.push(ch);
    }
    words
}

fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<String>, NodeError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        // The legacy form: `ENV name value with spaces`.
        let Some(i) = rest.find(is_token_space) else {
            return node_err(
                rules::INVALID_KEY_VALUE,
                format!("{key} must have two arguments"),
                Some(&format!("write `{key} name=value`")),
            );
        };
        let name = &rest[..i];
        let value = rest[i..].trim_start_matches(is_token_space);
        return Ok(vec![name.to_owned(), value.to_owned(), String::new()]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return node_err(
                rules::INVALID_KEY_VALUE,
                format!(
                    "syntax error - can't find `=` in `{word}`: pairs must be of the form `name=value`"
                ),
                Some(&format!(
                    "give every pair as `name=value`; quote values with spaces: `{key} {word}=\"...\"`"
                )),
            );
        };
        out.extend([k.to_owned(), v.to_owned(), "=".to_owned()]);
    }
    Ok(out)
}

fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.sub, node.name().as_str()) {
        (Some(sub), "onbuild") => sub,
        _ => node,
    };
    matches!(node.name().as_str(), "add" | "copy" | "run") && !node.json
}

/// The heredocs a line opens: words like `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lex = Lexer {
        escape: '\\',
        raw_quotes: true,
        raw_escapes: true,
        skip_process_quotes: false,
        skip_unset_env: true,
    };
    let words = lex.expand_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// One heredoc word (`^(\d*)<<(-?)([^<]*)$`), or `None` when the word is not one.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse().unwrap_or(0);
    let mut lex = Lexer {
        escape: '\\',
        raw_quotes: false,
        raw_escapes: false,
        skip_process_quotes: false,
        skip_unset_env: true,
    };
    let words = lex
        .expand_words(rest, &NoEnv)
        .map_err(|e| format!("invalid heredoc delimiter `{rest}`: {e}"))?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lex.raw_quotes = true;
    let raw = lex
        .expand_words(rest, &NoEnv)
        .map_err(|e| format!("invalid heredoc delimiter `{rest}`: {e}"))?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!("invalid heredoc delimiter `{rest}`"));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        fd,
        expand: quotes(name) == quotes(raw_name),
        chomp,
        content: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> String {
        let p = parse(src.as_bytes(), "Dockerfile");
        assert!(p.is_complete(), "{:?}", p.diagnostics);
        p.ast.dump()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f\'"#, '\\'),
            [r#"a="b c""#, r"d\ e", r"'f\'"]
        );
        assert_eq!(parse_words("x=\"\"", '\\'), ["x=\"\""]);
        assert_eq!(parse_words("a\\", '\\'), ["a"]);
    }

    #[test]
    fn flags_stop_at_the_first_non_flag_word() {
        assert_eq!(
            extract_builder_flags("--from=build --chown=\"1:1\" /a /b"),
            (
                "/a /b",
                vec!["--from=build".to_owned(), "--chown=1:1".to_owned()]
            )
        );
        assert_eq!(extract_builder_flags("-- --x y"), (" --x y", vec![]));
        assert_eq!(
            extract_builder_flags("--link"),
            ("", vec!["--link".to_owned()])
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let p = parse(
            b"# syntax = docker/dockerfile:1\n#escape=`\nFROM x\n# escape=\\\n",
            "D",
        );
        assert_eq!(p.ast.escape, '`');
        assert_eq!(p.ast.directive("syntax"), Some("docker/dockerfile:1"));
        assert_eq!(p.ast.directives.len(), 2);
        assert_eq!(
            parse_directive("#  check = skip=all  "),
            Some(("check", "skip=all"))
        );
        assert_eq!(parse_directive("# escape="), None);
    }

    #[test]
    fn continuation_comments_and_empty_lines() {
        let src = "FROM x\nRUN a \\\n  # comment\n\n  b \\\\\nRUN c\n";
        let p = parse(src.as_bytes(), "D");
        assert_eq!(
            p.ast.dump(),
            "(from \"x\")\n(run \"a   b \\\\\\\\\")\n(run \"c\")\n"
        );
        assert_eq!(p.ast.nodes[1].span, Span::new(2, 5));
        assert_eq!(p.diagnostics.len(), 1);
        assert_eq!(p.diagnostics[0].id, "no-empty-continuation");
        assert_eq!(p.diagnostics[0].line, Some(4));
    }

    #[test]
    fn heredocs_are_read_after_the_instruction() {
        let src = "FROM x\nRUN <<EOF cat <<-'END'\necho $A\nEOF\n\tliteral $B\n\tEND\nRUN y\n";
        let p = parse(src.as_bytes(), "D");
        assert!(p.is_complete(), "{:?}", p.diagnostics);
        let run = &p.ast.nodes[1];
        assert_eq!(run.span, Span::new(2, 6));
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[0].content, "echo $A\n");
        assert_eq!(run.heredocs[1].name, "END");
        assert!(!run.heredocs[1].expand);
        assert!(run.heredocs[1].chomp);
        assert_eq!(run.heredocs[1].chomped_content(), "literal $B\n");
        assert_eq!(p.ast.nodes[2].span, Span::line(7));
    }

    #[test]
    fn heredoc_words() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        let one = |w: &str| parse_heredoc(w).unwrap().map(|h| (h.name, h.expand));
        for w in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(one(w).map(|h| h.0).as_deref(), Some("EOF"), "{w}");
        }
        for w in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(one(w), None, "{w}");
        }
        for w in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(w).is_err(), "{w}");
        }
        assert_eq!(one("<<eo'f'"), Some(("eof".to_owned(), false)));
        assert_eq!(one("<<eo\\'f"), Some(("eo'f".to_owned(), true)));
        assert_eq!(one("<<'e'o\\'f"), Some(("eo'f".to_owned(), false)));
        assert_eq!(one("<<'one two'"), Some(("one two".to_owned(), false)));
        assert_eq!(one("<<$EOF"), Some(("$EOF".to_owned(), true)));
    }

    #[test]
    fn syntax_errors_do_not_stop_the_parse() {
        let p = parse(b"FROM x\nCMD [1]\nENV a\nRUN <<EOF\nnever closed\n", "D");
        let ids: Vec<_> = p
            .diagnostics
            .iter()
            .map(|d| (d.id.as_str(), d.line))
            .collect();
        assert_eq!(
            ids,
            [
                ("json-array-not-strings", Some(2)),
                ("invalid-key-value", Some(3)),
                ("unterminated-heredoc", Some(4))
            ]
        );
        assert_eq!(p.diagnostics[2].end_line, Some(5));
    }

    #[test]
    fn json_fallback_and_unknown_instructions() {
        assert_eq!(dump("CMD [\"a\" ]\n"), "(cmd \"a\")\n");
        assert_eq!(dump("CMD ['a']\n"), "(cmd \"['a']\")\n");
        assert_eq!(dump("FOO bar\n"), "(foo \"\")\n");
        assert_eq!(dump("HEALTHCHECK\nONBUILD\n"), "(healthcheck)\n(onbuild)\n");
    }
}

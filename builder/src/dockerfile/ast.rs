//! The syntax tree: one [`Node`] per instruction, as BuildKit's parser builds it, and its
//! classic S-expression dump (`rbuild check --print-ast`).

use std::fmt::Write as _;

/// Lines `start..=end` (1-based, inclusive) of the Dockerfile an instruction covers,
/// continuation lines and heredoc bodies included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: u32, end: u32) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// One line.
    pub fn line(line: u32) -> Self {
        Span::new(line, line)
    }
}

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor before `<<` (`2<<EOF`), 0 when absent.
    pub fd: u32,
    /// Whether variables in the body are expanded: false when any part of the delimiter
    /// was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body lines and the delimiter line.
    pub chomp: bool,
    /// The body, line endings included, exactly as in the file.
    pub content: String,
}

impl Heredoc {
    /// The body with `<<-` applied: leading tabs removed from every line.
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction as parsed: keyword, flags, arguments. Arguments are raw: quotes and
/// variables are still as written (they are processed when the instruction is expanded),
/// except in JSON form, where JSON string escapes are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Run`).
    pub keyword: String,
    /// `--name=value` words before the arguments, as written minus quotes.
    pub flags: Vec<String>,
    /// The arguments, shaped per instruction as BuildKit's parser shapes them (for example
    /// `ENV a=b` gives `["a", "b", "="]`, shell-form `RUN` one string).
    pub args: Vec<String>,
    /// The trigger of `ONBUILD`.
    pub sub: Option<Box<Node>>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    /// The logical line (continuations joined, comments removed), keyword included.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    pub span: Span,
    /// Comment lines directly above the instruction (`#` removed).
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in lowercase, the way instructions are named internally.
    pub fn name(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// One S-expression, as BuildKit's `Node.Dump` prints a child of the root:
    /// `(copy ["--from=build"] "/a" "/b")`.
    pub fn dump(&self) -> String {
        let mut s = String::from("(");
        self.dump_inner(&mut s);
        s.push(')');
        s
    }

    fn dump_inner(&self, s: &mut String) {
        s.push_str(&self.keyword.to_lowercase());
        if !self.flags.is_empty() {
            s.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&go_quote(f));
            }
            s.push(']');
        }
        if let Some(sub) = &self.sub {
            s.push_str(" (");
            sub.dump_inner(s);
            s.push(')');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
    }
}

/// A parser directive from the top of the file (`# syntax=...`, `# escape=...`,
/// `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercase name.
    pub name: String,
    pub value: String,
    pub line: u32,
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    pub nodes: Vec<Node>,
    /// The escape token in force (`\` unless `# escape=`` ` ``).
    pub escape: char,
    pub directives: Vec<Directive>,
    /// Number of lines in the file.
    pub lines: u32,
}

impl Ast {
    /// The classic dump: one S-expression per instruction, each on its own line.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let _ = writeln!(out, "{}", n.dump());
        }
        out
    }

    /// The value of a directive, if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// Quotes `s` as Go's `strconv.Quote` (and so `%q`) does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII
/// space. Control, format, private-use, non-character and separator code points are not
/// printable. (Unassigned code points are treated as printable: Rust's standard library
/// has no table of them; Go escapes them.)
fn go_is_print(c: char) -> bool {
    #[allow(clippy::unreadable_literal)]
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x80, 0xa0),
        (0xad, 0xad),
        (0x600, 0x605),
        (0x61c, 0x61c),
        (0x6dd, 0x6dd),
        (0x70f, 0x70f),
        (0x890, 0x891),
        (0x8e2, 0x8e2),
        (0x1680, 0x1680),
        (0x180e, 0x180e),
        (0x2000, 0x200f),
        (0x2028, 0x202f),
        (0x205f, 0x2064),
        (0x2066, 0x206f),
        (0x3000, 0x3000),
        (0xd800, 0xf8ff),
        (0xfdd0, 0xfdef),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x110cd, 0x110cd),
        (0x13430, 0x1343f),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if (u & 0xfffe) == 0xfffe {
        return false;
    }
    !NOT_PRINT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            go_quote("\t\n\r\x07\x0b\x00\x7f"),
            r#""\t\n\r\a\v\x00\x7f""#
        );
        assert_eq!(go_quote("héllo ✓ 🦀"), "\"héllo ✓ 🦀\"");
        assert_eq!(
            go_quote("\u{a0}\u{200b}\u{feff}\u{e000}"),
            r#""\u00a0\u200b\ufeff\ue000""#
        );
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
        assert_eq!(go_quote("\u{85}"), r#""\u0085""#);
    }

    #[test]
    fn dumps_flags_and_onbuild() {
        let run = Node {
            keyword: "RUN".into(),
            flags: vec![],
            args: vec!["echo".into(), "x".into()],
            sub: None,
            json: true,
            original: String::new(),
            heredocs: vec![],
            span: Span::line(2),
            comments: vec![],
        };
        let onbuild = Node {
            keyword: "ONBUILD".into(),
            args: vec![],
            sub: Some(Box::new(run.clone())),
            ..run.clone()
        };
        assert_eq!(onbuild.dump(), r#"(onbuild (run "echo" "x"))"#);
        let copy = Node {
            keyword: "Copy".into(),
            flags: vec!["--from=build".into(), "--chown=1:1".into()],
            args: vec!["/a".into(), "/b".into()],
            ..run
        };
        assert_eq!(
            copy.dump(),
            r#"(copy ["--from=build" "--chown=1:1"] "/a" "/b")"#
        );
    }
}

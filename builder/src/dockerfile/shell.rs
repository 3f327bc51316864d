//! The word expander: BuildKit's shell lexer (`frontend/dockerfile/shell`), rewritten.
//!
//! It does what a POSIX shell does to one word, minus commands and globbing: quote removal
//! (`'...'`, `"..."`), the escape token (`\`, or `` ` `` with `# escape=`` ` ``), and
//! parameter expansion: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`,
//! `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/repl}`, `${VAR//pat/repl}`. Patterns know `*` and `?` (no
//! bracket expressions), as in BuildKit.
//!
//! The rules follow BuildKit exactly, including its quirks: an escape token outside quotes
//! escapes any character; inside double quotes it escapes only `"`, `$` and itself; an
//! unset and an empty variable differ only for the modifiers without `:`; and `$` not
//! followed by a name stays a literal `$`.
//!
//! Pure: no I/O, no panics, linear in the word except for `#`/`%`/`/` patterns, which are
//! compiled to (linear-time) regular expressions.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use regex::Regex;

/// Where the expander looks variables up. Names are case-sensitive (Linux semantics).
pub trait Env {
    /// The value of `name`, or `None` when it is not set (which differs from empty).
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// `KEY=VALUE` pairs; the first pair with a name wins.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// An environment with nothing set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Two environments: `first` shadows `second`.
#[derive(Debug, Clone, Copy)]
pub struct Layered<'a, A: ?Sized, B: ?Sized> {
    pub first: &'a A,
    pub second: &'a B,
}

impl<A: Env + ?Sized, B: Env + ?Sized> Env for Layered<'_, A, B> {
    fn get(&self, name: &str) -> Option<&str> {
        self.first.get(name).or_else(|| self.second.get(name))
    }
}

/// How to lex. [`Lexer::new`] gives what Dockerfile instructions use; the switches exist
/// for heredoc detection and for heredoc bodies, as in BuildKit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // BuildKit's switches, one each
pub struct Lexer {
    /// The escape token: `\` or `` ` `` (from the `# escape=` directive).
    pub escape: char,
    /// Keep quote characters in the result (they still group words).
    pub raw_quotes: bool,
    /// Keep escape tokens in the result (they still escape).
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written instead of expanding them to "".
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// The result of expanding a word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word (quotes removed, spaces kept).
    pub result: String,
    /// The word split into fields after expansion, honouring quotes.
    pub words: Vec<String>,
    /// Variables that were looked up and set.
    pub matched: Vec<String>,
    /// Variables that were looked up and unset, except where a `-`, `+` or `?` modifier
    /// handles the unset case (`${VAR:-default}` is not a use of an undefined variable).
    pub unmatched: Vec<String>,
}

/// Why a word could not be expanded. The message is BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError {
        message: message.into(),
    })
}

impl Lexer {
    /// The lexer Dockerfile instructions use, with the given escape token.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word` against `env`: the result, its fields and the variables it used.
    pub fn expand<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<Expansion, ExpandError> {
        if !word.contains(['$', '\'', '"', '<', self.escape]) {
            // Nothing to expand, unquote or unescape: only field splitting applies.
            return Ok(Expansion {
                result: word.to_owned(),
                words: word.split_whitespace().map(str::to_owned).collect(),
                matched: Vec::new(),
                unmatched: Vec::new(),
            });
        }
        let mut sw = ShellWord {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            matched: Vec::new(),
            unmatched: Vec::new(),
        };
        let (result, words) = sw.process_stop_on(None, self.raw_escapes)?;
        Ok(Expansion {
            result,
            words,
            matched: sw.matched,
            unmatched: sw.unmatched,
        })
    }

    /// Expands `word` to a single string (BuildKit's `ProcessWord`).
    pub fn expand_word<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<String, ExpandError> {
        self.expand(word, env).map(|e| e.result)
    }

    /// Expands `word` and splits it into fields (BuildKit's `ProcessWords`).
    pub fn expand_words<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Vec<String>, ExpandError> {
        self.expand(word, env).map(|e| e.words)
    }
}

/// Expands one word with the default lexer (escape token `\`).
pub fn expand_word<E: Env + ?Sized>(word: &str, env: &E) -> Result<String, ExpandError> {
    Lexer::default().expand_word(word, env)
}

/// Field splitting as BuildKit does it: whitespace from expansions splits fields, quoted
/// text never does, and a field is only emitted when it has characters.
#[derive(Default)]
struct Fields {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

struct ShellWord<'a, E: ?Sized> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    matched: Vec<String>,
    unmatched: Vec<String>,
}

/// Go's `string(rune)` of a scanner result: EOF becomes U+FFFD.
fn rune_str(ch: Option<char>) -> char {
    ch.unwrap_or('\u{FFFD}')
}

impl<E: Env + ?Sized> ShellWord<'_, E> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut fields = Fields::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.pos += 1;
                return Ok((result, fields.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                fields.add_string(&tmp);
            } else if ch == '<' {
                // `<<` keeps the whitespace after it in the same field, so that heredoc
                // detection sees `<<  EOF` as one word (BuildKit's processPossibleHeredoc).
                self.pos += 1;
                let mut tmp = String::from("<");
                if self.peek() == Some('<') {
                    self.pos += 1;
                    tmp.push('<');
                    while let Some(ws) = self.peek().filter(|c| c.is_whitespace()) {
                        tmp.push(ws);
                        self.pos += 1;
                    }
                }
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else {
                self.pos += 1;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape token escapes the next character, except at the end.
                    let Some(escaped) = self.next() else { break };
                    fields.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    fields.add_char(ch);
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, fields.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        // Everything up to the next single quote is literal; nothing escapes it.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        // Literal except `$` and the escape token, which escapes only `"`, `$` and itself.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str, guarded: bool) -> Option<String> {
        let env = self.env;
        if let Some(v) = env.get(name) {
            if !self.matched.iter().any(|m| m == name) {
                self.matched.push(name.to_owned());
            }
            Some(v.to_owned())
        } else {
            if !guarded && !self.unmatched.iter().any(|m| m == name) {
                self.unmatched.push(name.to_owned());
            }
            None
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name, false) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the `{`
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution"),
            Some(_) => {}
        }
        let name = self.process_name();
        let mut ch = self.next();
        let mut chs = String::from(rune_str(ch));
        match ch {
            Some('}') => Ok(match self.get_env(&name, false) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                if null_is_unset {
                    ch = self.next();
                    chs.push(rune_str(ch));
                }
                let raw = matches!(ch, Some('#' | '%'));
                if null_is_unset && raw {
                    return err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((word, _)) => word,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '}'");
                        }
                        return Err(e);
                    }
                };
                let guarded = matches!(ch, Some('-' | '+' | '?'));
                let value = self.get_env(&name, guarded);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = value.as_deref().is_none_or(str::is_empty);
                match ch {
                    Some('-') => Ok(if value.is_none() || (null_is_unset && empty) {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if value.is_none() || (null_is_unset && empty) {
                        String::new()
                    } else {
                        word
                    }),
                    Some('?') => match value {
                        None => {
                            let message = if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            };
                            err(format!("{name}: {message}"))
                        }
                        Some(v) if null_is_unset && v.is_empty() => {
                            let message = if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            };
                            err(format!("{name}: {message}"))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(c @ ('%' | '#')) => {
                        // `%`/`#` remove the shortest match, `%%`/`##` the longest.
                        let (greedy, pattern) = match word.strip_prefix(c) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        if c == '%' {
                            trim_suffix(pattern, &value, greedy)
                        } else {
                            trim_prefix(pattern, &value, greedy)
                        }
                    }
                    _ => err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '/' in ${}");
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '}'");
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name, false);
                let Some(value) = value else {
                    if self.lex.skip_unset_env {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let re = shell_pattern_regex(&pattern, true, false)?;
                if replace_all {
                    Ok(re
                        .replace_all(&value, |caps: &regex::Captures<'_>| {
                            go_template(&replacement, caps.get(0).map_or("", |m| m.as_str()))
                        })
                        .into_owned())
                } else if let Some(m) = re.find(&value) {
                    Ok(format!(
                        "{}{}{}",
                        &value[..m.start()],
                        replacement,
                        &value[m.end()..]
                    ))
                } else {
                    Ok(value)
                }
            }
            // BuildKit reports `${FOO` as an unsupported modifier U+FFFD; say what it is.
            None => err("syntax error: missing '}'"),
            _ => err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        // A name is letters, digits and `_`; a leading digit makes it positional (`$1`);
        // one special character makes a special parameter (`$@`, `$#`, ...).
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

/// Go's `unicode.IsLetter`, close enough: alphabetic characters.
fn is_letter(ch: char) -> bool {
    if ch.is_ascii() {
        ch.is_ascii_alphabetic()
    } else {
        ch.is_alphabetic()
    }
}

/// Go's `unicode.IsDigit`: decimal digits (ASCII, plus other scripts' decimal digits).
fn is_digit(ch: char) -> bool {
    if ch.is_ascii() {
        ch.is_ascii_digit()
    } else {
        ch.is_numeric() && !ch.is_alphabetic()
    }
}

/// Converts a shell pattern (`*`, `?`, `\` escapes; no brackets) to a regular expression,
/// as BuildKit's `convertShellPatternToRegex` does.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, ExpandError> {
    // The same few patterns recur in a file (`${VAR%/*}` in every stage); compiling a
    // regular expression costs far more than matching it, so keep recent ones.
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<(String, bool, bool), Regex>> =
            std::cell::RefCell::new(HashMap::new());
    }
    let key = (pattern.to_owned(), greedy, anchored);
    if let Some(re) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(re);
    }
    let re = compile_shell_pattern(pattern, greedy, anchored)?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, re.clone());
    });
    Ok(re)
}

fn compile_shell_pattern(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, ExpandError> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `}` and `/` are escaped only for the `${}` syntax; the escape is not part
                // of the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    other => {
                        return err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{}'",
                            rune_str(other)
                        ));
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push(tok),
        }
    }
    Regex::new(&out).map_err(|e| ExpandError {
        message: format!("invalid pattern ({pattern}) in substitution: {e}"),
    })
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let re = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// Reverses a pattern but keeps each escape before the character it escapes.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    let mut pieces: Vec<&[char]> = Vec::new();
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            pieces.push(&chars[i..i + 2]);
            i += 2;
        } else {
            pieces.push(&chars[i..=i]);
            i += 1;
        }
    }
    for piece in pieces.into_iter().rev() {
        out.extend_from_slice(piece);
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    // Regular expressions find leftmost matches, so match the reversed pattern against the
    // reversed value.
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Go's `Regexp.Expand` template for a regex without groups: `$0`/`${0}` is the match,
/// `$$` a dollar, other names expand to nothing, and a malformed `$` stays literal.
fn go_template(template: &str, whole: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (brace, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len: usize = body
            .chars()
            .take_while(|&c| is_letter(c) || is_digit(c) || c == '_')
            .map(char::len_utf8)
            .sum();
        if len == 0 || (brace && !body[len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..len];
        rest = &body[len + usize::from(brace)..];
        if name == "0" {
            out.push_str(whole);
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [
            ("FOO", "foo"),
            ("BAR", "bar baz"),
            ("EMPTY", ""),
            ("PATHV", "/usr/local/bin:/usr/bin:/bin"),
            ("FILE", "archive.tar.gz"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn x(word: &str) -> String {
        Lexer::new('\\')
            .expand_word(word, &env())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    fn w(word: &str) -> Vec<String> {
        Lexer::new('\\').expand_words(word, &env()).unwrap()
    }

    #[test]
    fn plain_variables_and_braces() {
        assert_eq!(x("$FOO"), "foo");
        assert_eq!(x("${FOO}"), "foo");
        assert_eq!(x("a$FOO-b"), "afoo-b");
        assert_eq!(x("${FOO}bar"), "foobar");
        assert_eq!(x("$NOPE"), "");
        assert_eq!(x("$"), "$");
        assert_eq!(x("$ x"), "$ x");
        assert_eq!(x("$1x"), "x");
        assert_eq!(x("$$"), "");
        assert_eq!(x("${FOO"), "ERR syntax error: missing '}'");
        assert_eq!(x("${"), "ERR syntax error: missing '}'");
        assert_eq!(x("${}"), "ERR syntax error: bad substitution");
        assert_eq!(x("${:-x}"), "ERR syntax error: bad substitution");
    }

    #[test]
    fn modifiers_distinguish_unset_and_empty() {
        assert_eq!(x("${NOPE:-def}"), "def");
        assert_eq!(x("${EMPTY:-def}"), "def");
        assert_eq!(x("${EMPTY-def}"), "");
        assert_eq!(x("${NOPE-def}"), "def");
        assert_eq!(x("${FOO:-def}"), "foo");
        assert_eq!(x("${FOO:+alt}"), "alt");
        assert_eq!(x("${EMPTY:+alt}"), "");
        assert_eq!(x("${EMPTY+alt}"), "alt");
        assert_eq!(x("${NOPE+alt}"), "");
        assert_eq!(x("${NOPE:-$FOO}"), "foo");
        assert_eq!(x("${NOPE:-\"a b\"}"), "a b");
        assert_eq!(x("${NOPE:?must be set}"), "ERR NOPE: must be set");
        assert_eq!(x("${NOPE?}"), "ERR NOPE: is not allowed to be unset");
        assert_eq!(x("${EMPTY:?}"), "ERR EMPTY: is not allowed to be empty");
        assert_eq!(x("${EMPTY?}"), "");
        assert_eq!(
            x("${FOO:x}"),
            "ERR unsupported modifier (:x) in substitution"
        );
        assert_eq!(x("${FOO:-x"), "ERR syntax error: missing '}'");
    }

    #[test]
    fn pattern_removal() {
        assert_eq!(x("${FILE#*.}"), "tar.gz");
        assert_eq!(x("${FILE##*.}"), "gz");
        assert_eq!(x("${FILE%.*}"), "archive.tar");
        assert_eq!(x("${FILE%%.*}"), "archive");
        assert_eq!(x("${PATHV%%:*}"), "/usr/local/bin");
        assert_eq!(x("${PATHV#*:}"), "/usr/bin:/bin");
        assert_eq!(x("${FILE#nomatch}"), "archive.tar.gz");
        assert_eq!(x("${FILE#arch?ve}"), ".tar.gz");
        assert_eq!(
            x("${FILE:#x}"),
            "ERR unsupported modifier (:#) in substitution"
        );
        assert_eq!(x("${NOPE#x}"), "");
        assert_eq!(x("${FILE%\\*}"), "archive.tar.gz");
    }

    #[test]
    fn pattern_replacement() {
        assert_eq!(x("${PATHV/bin/sbin}"), "/usr/local/sbin:/usr/bin:/bin");
        assert_eq!(x("${PATHV//bin/sbin}"), "/usr/local/sbin:/usr/sbin:/sbin");
        assert_eq!(x("${PATHV//:/ }"), "/usr/local/bin /usr/bin /bin");
        assert_eq!(x("${FILE/.*/}"), "archive");
        assert_eq!(x("${FILE/\\//x}"), "archive.tar.gz");
        assert_eq!(x("${FOO//o/$$0}"), "f00");
        assert_eq!(x("${FOO//o/\\$0}"), "f\\o\\o");
        assert_eq!(x("${NOPE/a/b}"), "");
        assert_eq!(x("${FOO/o"), "ERR syntax error: missing '/' in ${}");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x("'$FOO'"), "$FOO");
        assert_eq!(x("\"$FOO\""), "foo");
        assert_eq!(x("\\$FOO"), "$FOO");
        assert_eq!(x("\"\\$FOO\""), "$FOO");
        assert_eq!(x("\"a\\b\""), "a\\b");
        assert_eq!(x("\"a\\\\b\""), "a\\b");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(x("a\\"), "a");
        assert_eq!(
            x("'a"),
            "ERR unexpected end of statement while looking for matching single-quote"
        );
        assert_eq!(
            x("\"a"),
            "ERR unexpected end of statement while looking for matching double-quote"
        );
        let backtick = Lexer::new('`');
        assert_eq!(
            backtick.expand_word("c:\\dir`$FOO", &env()).unwrap(),
            "c:\\dir$FOO"
        );
    }

    #[test]
    fn words_split_on_unquoted_whitespace_only() {
        assert_eq!(w("a b  c"), ["a", "b", "c"]);
        assert_eq!(w("$BAR"), ["bar", "baz"]);
        assert_eq!(w("\"$BAR\""), ["bar baz"]);
        assert_eq!(w("x\\ y z"), ["x y", "z"]);
        assert_eq!(w("a \"\" b"), ["a", "b"]);
    }

    #[test]
    fn raw_modes_keep_quotes_and_escapes() {
        let mut lex = Lexer::new('\\');
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        lex.skip_unset_env = true;
        assert_eq!(
            lex.expand_words("RUN <<'EOF' \"x y\" a\\ b $U ${U:-d}", &NoEnv)
                .unwrap(),
            ["RUN", "<<'EOF'", "\"x y\"", "a\\ b", "$U", "${U:-d}"]
        );
        let mut raw = Lexer::new('\\');
        raw.skip_process_quotes = true;
        assert_eq!(
            raw.expand_word("echo \"$FOO\" '\\$FOO'", &env()).unwrap(),
            "echo \"foo\" '$FOO'"
        );
    }

    #[test]
    fn reports_matched_and_unmatched_names() {
        let e = Lexer::default()
            .expand("$FOO ${NOPE} ${GUARD:-x} ${FOO}", &env())
            .unwrap();
        assert_eq!(e.matched, ["FOO"]);
        assert_eq!(e.unmatched, ["NOPE"]);
    }

    /// Cases whose results BuildKit's lexer tests pin down (env: PWD=/home, SHELL=bash,
    /// KOREAN=한국어); `None` means an error.
    #[test]
    fn agrees_with_buildkit_on_known_cases() {
        let env: Vec<(String, String)> =
            [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let cases: &[(&str, Option<&str>)] = &[
            (r"he'll'o", Some("hello")),
            (r"he'llo", None),
            (r"he\'llo", Some("he'llo")),
            (r"he\\'llo", None),
            (r"abc\tdef", Some("abctdef")),
            (r#""abc\tdef""#, Some(r"abc\tdef")),
            (r#""abc\\tdef""#, Some(r"abc\tdef")),
            (r"'hello\'", Some(r"hello\")),
            (r"hello\\", Some(r"hello\")),
            (r#""hello\""#, None),
            (r#""''""#, Some("''")),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("he$pwd.", Some("he.")),
            (r"he\\$PWD", Some(r"he\/home")),
            (r#""he\\$PWD""#, Some(r"he\/home")),
            (r"\${}aaa", Some("${}aaa")),
            ("he${}xx", None),
            ("he${.}", None),
            ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${XXX:YYY}", None),
            ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
            (r#""he'$PWD'""#, Some("he'/home'")),
            (r"'\$PWD'", Some(r"\$PWD")),
            ("he${PWD:=000}xx", None),
            ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
            (r"he${XXX:-\$PWD:}xx", Some("he$PWD:xx")),
            (r"he${XXX:-\${PWD}z}xx", Some("he${PWDz}xx")),
            ("안'녕'하세요", Some("안녕하세요")),
            (r"안녕\'하세요", Some("안녕'하세요")),
            ("안녕$KOREAN", Some("안녕한국어")),
            ("${{aaa}", None),
            ("${aaa}}", Some("}")),
            ("${aaa:-bbb}}", Some("bbb}")),
            ("${aaa:-bbb ${foo}", None),
            ("${aaa:-bbb {foo}", Some("bbb {foo")),
            ("${:+bbb}", None),
        ];
        for (word, want) in cases {
            let got = Lexer::new('\\').expand_word(word, &env).ok();
            assert_eq!(got.as_deref(), *want, "{word}");
        }
    }

    #[test]
    fn reverse_pattern_keeps_escapes_in_front() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
    }
}

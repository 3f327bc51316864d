//! The JSON exec form (`CMD ["a", "b"]`): a strict JSON parser with Go's `encoding/json`
//! semantics for what Dockerfile parsing needs.
//!
//! BuildKit decodes the arguments into `[]any`: a syntax error makes the instruction fall
//! back to shell form, while valid JSON that is not an array of strings is an error.

/// Why the text is not an exec-form array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (or not starting with `[`): the instruction is in shell form.
    NotJson,
    /// Valid JSON array with a non-string element: an error in BuildKit.
    NotStrings,
}

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (leading Unicode whitespace allowed) as a JSON array of strings.
pub(crate) fn parse_string_array(text: &str) -> Result<Vec<String>, JsonError> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let mut p = Parser {
        b: text.as_bytes(),
        s: text,
        pos: 0,
    };
    let elements = p.top_array().ok_or(JsonError::NotJson)?;
    p.skip_ws();
    if p.pos != p.b.len() {
        return Err(JsonError::NotJson);
    }
    elements
        .into_iter()
        .map(|e| e.ok_or(JsonError::NotStrings))
        .collect()
}

struct Parser<'a> {
    b: &'a [u8],
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The top-level array: each element is `Some(string)` or `None` for other values.
    fn top_array(&mut self) -> Option<Vec<Option<String>>> {
        self.pos += 1; // `[`
        let mut out = Vec::new();
        self.skip_ws();
        if self.eat(b']') {
            return Some(out);
        }
        loop {
            self.skip_ws();
            if self.b.get(self.pos) == Some(&b'"') {
                out.push(Some(self.string()?));
            } else {
                self.value()?;
                out.push(None);
            }
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Some(out);
            }
            return None;
        }
    }

    /// Skips one value of any kind, iteratively (nesting is bounded by [`MAX_DEPTH`]).
    fn value(&mut self) -> Option<()> {
        // Stack of open containers: true for an object, false for an array.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            self.skip_ws();
            // Parse one value start.
            match self.b.get(self.pos)? {
                b'{' => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.eat(b'}') {
                        // empty object: a complete value
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return None;
                        }
                        stack.push(true);
                        self.string()?;
                        self.skip_ws();
                        if !self.eat(b':') {
                            return None;
                        }
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.eat(b']') {
                        // empty array
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return None;
                        }
                        stack.push(false);
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // A value is complete: close containers or move to the next element.
            loop {
                let Some(&is_object) = stack.last() else {
                    return Some(());
                };
                self.skip_ws();
                if self.eat(b',') {
                    if is_object {
                        self.skip_ws();
                        self.string()?;
                        self.skip_ws();
                        if !self.eat(b':') {
                            return None;
                        }
                    }
                    break;
                }
                if self.eat(if is_object { b'}' } else { b']' }) {
                    stack.pop();
                    continue;
                }
                return None;
            }
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if self.eat(b'0') {
        } else if self.digits() == 0 {
            return None;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.pos..self.pos + 4)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// A string starting at `"`, decoded the way Go decodes it.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.b.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.s.get(start..self.pos)?);
            match *self.b.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let c = *self.b.get(self.pos)?;
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let r = self.hex4()?;
                            if (0xd800..0xe000).contains(&r) {
                                // A surrogate pair, or U+FFFD for a lone surrogate (the
                                // next escape is then decoded on its own).
                                let save = self.pos;
                                let low = if self.s[self.pos..].starts_with("\\u") {
                                    self.pos += 2;
                                    self.hex4()
                                } else {
                                    None
                                };
                                match low {
                                    Some(lo) if r < 0xdc00 && (0xdc00..0xe000).contains(&lo) => {
                                        let c = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
                                        out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                    }
                                    _ => {
                                        self.pos = save;
                                        out.push('\u{FFFD}');
                                    }
                                }
                            } else {
                                out.push(char::from_u32(r).unwrap_or('\u{FFFD}'));
                            }
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Vec<String>, JsonError> {
        parse_string_array(s)
    }

    #[test]
    fn string_arrays() {
        assert_eq!(p(r#"["a", "b c"]"#).unwrap(), ["a", "b c"]);
        assert_eq!(p("  [ ]  ").unwrap(), Vec::<String>::new());
        assert_eq!(p(r#"["\u00e9\n\"\\\/"]"#).unwrap(), ["é\n\"\\/"]);
        assert_eq!(p(r#"["\ud83e\udd80"]"#).unwrap(), ["🦀"]);
        assert_eq!(p(r#"["\ud83e x"]"#).unwrap(), ["\u{FFFD} x"]);
    }

    #[test]
    fn syntax_errors_fall_back() {
        for s in [
            "[",
            "[\"a\"",
            "[\"a\",]",
            "['a']",
            "[\"a\"] x",
            "[\"a\" \"b\"]",
            "[\"\t\"]",
            "[\"\\x\"]",
            "[01]",
            "[1.]",
            "[-]",
            "[tru]",
            "[{\"a\" 1}]",
            "[[1,]]",
            "echo [",
        ] {
            assert_eq!(p(s), Err(JsonError::NotJson), "{s}");
        }
    }

    #[test]
    fn valid_json_that_is_not_strings_is_an_error() {
        for s in [
            "[1]",
            "[\"a\", 1]",
            "[null]",
            "[true]",
            "[[\"a\"]]",
            "[{}]",
            "[{\"a\": [1, {\"b\": null}]}]",
            "[-1.5e+3]",
        ] {
            assert_eq!(p(s), Err(JsonError::NotStrings), "{s}");
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(p(&deep), Err(JsonError::NotJson));
        let ok = format!("[{}{}]", "[".repeat(5_000), "]".repeat(5_000));
        assert_eq!(p(&ok), Err(JsonError::NotStrings));
    }
}

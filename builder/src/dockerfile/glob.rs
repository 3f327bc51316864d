//! Wildcards in `COPY`/`ADD` sources, read per path component as Go's `filepath.Match`
//! reads them (BuildKit resolves sources with it):
//!
//! - `*` matches any run of characters (never a `/`), `?` any one character;
//! - `[abc]`, `[a-z]`, `[^a-z]` match one character of (or not of) a class;
//! - `\c` matches `c` literally.
//!
//! Pure; the build engine walks the build context and the sandbox helper walks stage file
//! systems, both asking [`matches`] for each directory entry.

/// Whether `pattern` has a wildcard, i.e. whether it must be matched rather than looked up.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// A pattern `filepath.Match` would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid wildcard pattern (an unclosed `[` or a trailing `\\`)")]
pub struct BadPattern(pub String);

/// Whether the component `name` matches the component pattern `pattern`.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let bad = || BadPattern(pattern.to_owned());
    // Iterative matcher with one backtracking point for the last `*` seen.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (ok, len) = class(&p[pi..]).ok_or_else(bad)?;
                    if ni < n.len() && ok(n[ni]) {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1).ok_or_else(bad)?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        // Mismatch: let the last `*` swallow one more character, if there is one.
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Still check the rest of the pattern is well formed, as Go does.
                validate(&p[pi.min(p.len())..]).ok_or_else(bad)?;
                return Ok(false);
            }
        }
    }
}

/// Parses a `[...]` class at the start of `p`; returns its predicate and length.
#[allow(clippy::type_complexity)]
fn class(p: &[char]) -> Option<(Box<dyn Fn(char) -> bool>, usize)> {
    let mut i = 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            hi = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            if hi < lo {
                return None;
            }
        }
        ranges.push((lo, hi));
    }
    Some((
        Box::new(move |ch| ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi) != negated),
        i,
    ))
}

/// Whether the rest of a pattern is well formed.
fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i += class(&p[i..])?.1,
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        matches(p, n).unwrap()
    }

    #[test]
    fn stars_questions_and_literals() {
        assert!(m("*.txt", "a.txt"));
        assert!(m("*.txt", ".txt"));
        assert!(!m("*.txt", "a.txt.bak"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("?.go", "x.go"));
        assert!(!m("?.go", "xy.go"));
        assert!(m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("hello", "hello"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(m("[abc].rs", "b.rs"));
        assert!(!m("[abc].rs", "d.rs"));
        assert!(m("[a-c]x", "cx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("[]]", "]"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("file[0-9][0-9]", "file42"));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert!(matches("[a-", "a").is_err());
        assert!(matches("abc\\", "abc").is_err());
        assert!(matches("x[", "y").is_err());
        assert!(has_wildcard("a/*.txt"));
        assert!(!has_wildcard("a/b.txt"));
    }
}

//! `.dockerignore`: which paths of the build context are left out, with Docker's pattern
//! semantics (moby's `patternmatcher` and `ignorefile`).
//!
//! - One pattern per line; `#` lines and blank lines are ignored; surrounding whitespace is
//!   trimmed; patterns are cleaned like paths (`./a/../b` is `b`) and a leading `/` is
//!   dropped: every pattern is relative to the context root.
//! - `*` matches any run of non-`/` characters, `?` one non-`/` character, `[a-z]` a class,
//!   `\` escapes; `**` matches any number of directories (including none).
//! - A pattern matching a directory excludes everything below it.
//! - `!pattern` re-includes what it matches; the last matching line wins.
//!
//! Pure: the caller reads the file (see [`candidates`]) and walks the context, asking
//! [`Matcher::is_excluded`] for each path and [`Matcher::can_skip_dir`] to prune.

use std::path::{Path, PathBuf};

use regex::Regex;

/// How a pattern matches, as in `patternmatcher` (its fast paths are part of its
/// semantics, so they are kept).
#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `prefix**`
    Prefix,
    /// `**suffix` without other wildcards
    Suffix,
    Regex(Regex),
}

/// One pattern line.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern, without `!`.
    pub text: String,
    /// `!pattern`: re-includes.
    pub exclusion: bool,
    /// Line in the ignore file (1-based).
    pub line: u32,
    kind: MatchKind,
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub line: u32,
    pub pattern: String,
    pub reason: String,
}

/// The compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub patterns: Vec<Pattern>,
}

/// The ignore files to try for a Dockerfile, in order: `<Dockerfile>.dockerignore` next to
/// the Dockerfile, then `.dockerignore` at the context root. The first that exists wins.
pub fn candidates(dockerfile: &Path, context: &Path) -> Vec<PathBuf> {
    let mut out = Vec::with_capacity(2);
    if let Some(name) = dockerfile.file_name() {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        out.push(dockerfile.with_file_name(n));
    }
    out.push(context.join(".dockerignore"));
    out
}

/// `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Checks bracket and escape syntax the way Go's `filepath.Match` does.
fn check_syntax(p: &str) -> Result<(), String> {
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return Err("trailing `\\`".to_owned()),
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut n = 0;
                loop {
                    let Some(c) = chars.next() else {
                        return Err("unclosed `[`".to_owned());
                    };
                    if c == ']' && n > 0 {
                        break;
                    }
                    let lo = if c == '\\' {
                        chars.next().ok_or("trailing `\\`")?
                    } else {
                        c
                    };
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        let hi = match chars.next() {
                            Some('\\') => chars.next().ok_or("trailing `\\`")?,
                            Some(']') | None => return Err("bad range in `[...]`".to_owned()),
                            Some(h) => h,
                        };
                        if hi < lo {
                            return Err("bad range in `[...]`".to_owned());
                        }
                    }
                    n += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn compile(text: &str) -> Result<MatchKind, String> {
    check_syntax(text)?;
    let mut re = String::from("^");
    let mut kind = 0u8; // 0 exact, 1 prefix, 2 suffix, 3 regex
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut index = 0usize;
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == 0 {
                        kind = 1;
                    } else {
                        re.push_str(".*");
                        kind = 3;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = 3;
                }
                if index == 0 {
                    kind = 2;
                }
            } else {
                re.push_str("[^/]*");
                kind = 3;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = 3;
        } else if matches!(ch, '.' | '$') {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            match chars.get(i) {
                Some(&n) => {
                    i += 1;
                    re.push_str(&regex::escape(&n.to_string()));
                    kind = 3;
                }
                None => re.push_str("\\\\"),
            }
        } else if ch == '[' || ch == ']' {
            in_class = ch == '[';
            re.push(ch);
            kind = 3;
        } else if in_class {
            // Class members go through as written (ranges, `^`), except what Rust's
            // class syntax would read as nesting or set operations.
            if matches!(ch, '[' | '&' | '~') {
                re.push('\\');
            }
            re.push(ch);
        } else {
            re.push_str(&regex::escape(&ch.to_string()));
        }
        index += 1;
    }
    Ok(match kind {
        0 => MatchKind::Exact,
        1 => MatchKind::Prefix,
        2 => MatchKind::Suffix,
        _ => {
            re.push('$');
            MatchKind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

impl Pattern {
    /// Compiles one pattern (already cleaned, without `!`).
    fn new(text: String, exclusion: bool, line: u32) -> Result<Pattern, PatternError> {
        let kind = compile(&text).map_err(|reason| PatternError {
            line,
            pattern: text.clone(),
            reason,
        })?;
        Ok(Pattern {
            text,
            exclusion,
            line,
            kind,
        })
    }

    /// Whether `path` (relative, `/`-separated, cleaned) matches this pattern itself.
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            MatchKind::Suffix => {
                let suffix = &self.text[2..];
                if path.ends_with(suffix) {
                    return true;
                }
                suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Regex(re) => re.is_match(path),
        }
    }

    /// Whether this pattern could match something below `dir`.
    fn could_match_below(&self, dir: &str) -> bool {
        if self.text.contains("**") {
            return true;
        }
        let pat: Vec<&str> = self.text.split('/').collect();
        let dirs: Vec<&str> = dir.split('/').collect();
        if pat.len() <= dirs.len() {
            // It can only name `dir` itself or a parent: matching those does not reach below.
            return false;
        }
        dirs.iter()
            .zip(&pat)
            .all(|(d, p)| Pattern::new((*p).to_owned(), false, 0).is_ok_and(|p| p.matches(d)))
    }
}

impl Matcher {
    /// Reads an ignore file's content.
    pub fn parse(content: &[u8]) -> Result<Matcher, PatternError> {
        let text =
            String::from_utf8_lossy(content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content));
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut p = raw.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(PatternError {
                        line,
                        pattern: "!".to_owned(),
                        reason: "illegal exclusion pattern: `!` alone".to_owned(),
                    });
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            patterns.push(Pattern::new(cleaned, exclusion, line)?);
        }
        Ok(Matcher { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context:
    /// it or one of its parent directories matches, and no later `!` line re-includes it.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&path);
            if !m {
                let mut prefix = String::new();
                for part in &parents {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(part);
                    if p.matches(&prefix) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walker can skip the whole directory `dir`: it is excluded and no `!`
    /// pattern could re-include anything below it.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let dir = clean(dir);
        self.is_excluded(&dir)
            && !self
                .patterns
                .iter()
                .any(|p| p.exclusion && p.could_match_below(&dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn basic_patterns() {
        let i = m("# comment\n\n  node_modules  \n*.log\n/build\ntemp?\n");
        assert!(i.is_excluded("node_modules"));
        assert!(i.is_excluded("node_modules/a/b.js"));
        assert!(!i.is_excluded("src/node_modules"));
        assert!(i.is_excluded("x.log"));
        assert!(!i.is_excluded("logs/x.log"));
        assert!(i.is_excluded("build/out"));
        assert!(i.is_excluded("temp1"));
        assert!(!i.is_excluded("temp12"));
        assert!(!i.is_excluded("src/main.rs"));
    }

    #[test]
    fn double_star_and_exceptions() {
        let i = m("**/*.go\n!**/keep.go\ndocs/**\n!docs/README.md\n**/secret\n");
        assert!(i.is_excluded("a.go"));
        assert!(i.is_excluded("a/b/c.go"));
        assert!(!i.is_excluded("a/keep.go"));
        assert!(i.is_excluded("docs/x.md"));
        assert!(!i.is_excluded("docs/README.md"));
        assert!(i.is_excluded("secret"));
        assert!(i.is_excluded("deep/er/secret"));
        assert!(i.is_excluded("deep/er/secret/file"));
    }

    #[test]
    fn last_match_wins_and_cleaning() {
        let i = m("*.md\n!README.md\nREADME.md\n./a/../b\n");
        assert!(i.is_excluded("README.md"));
        assert!(i.is_excluded("b"));
        let j = m("!x\n*\n!keep\n");
        assert!(i.is_excluded("b/c"));
        assert!(!j.is_excluded("keep"));
        assert!(j.is_excluded("other"));
    }

    #[test]
    fn classes_and_escapes() {
        let i = m("[a-c]*.txt\nlit\\*eral\n");
        assert!(i.is_excluded("b1.txt"));
        assert!(!i.is_excluded("d1.txt"));
        assert!(i.is_excluded("lit*eral"));
        assert!(!i.is_excluded("litXeral"));
        assert!(Matcher::parse(b"[a-\n").is_err());
        assert!(Matcher::parse(b"!\n").is_err());
    }

    #[test]
    fn pruning() {
        let i = m("vendor\nnode_modules\n!node_modules/keep/x\n");
        assert!(i.can_skip_dir("vendor"));
        assert!(!i.can_skip_dir("node_modules"));
        assert!(i.can_skip_dir("node_modules/other"));
        assert!(!i.can_skip_dir("src"));
    }

    #[test]
    fn dockerfile_specific_ignore_file_comes_first() {
        let c = candidates(Path::new("ctx/app.Dockerfile"), Path::new("ctx"));
        assert_eq!(
            c,
            [
                PathBuf::from("ctx/app.Dockerfile.dockerignore"),
                PathBuf::from("ctx/.dockerignore")
            ]
        );
    }
}

//! The streaming secret masker: replaces every masked value (and every token that starts
//! with one of GitLab's `token_mask_prefixes`) with `[MASKED]`, even when a secret arrives
//! split across two or more chunks.
//!
//! It holds back the last `longest secret - 1` bytes of the stream until more input shows
//! whether they start a secret; [`Masker::flush`] releases them at the end of a stream.
//! A match that starts before the held-back tail is always complete in the buffer, so
//! choosing it (leftmost-longest) is final.

use std::fmt::Write as _;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a masked value is replaced with.
pub const MASK: &[u8] = b"[MASKED]";

/// Characters a token continues with after its prefix (`glpat-AbC_12-x`).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The whole match is replaced.
    Secret,
    /// The match is kept and the token characters after it are replaced.
    Prefix,
}

/// A streaming masker for one job log.
#[derive(Debug)]
pub struct Masker {
    ac: Option<AhoCorasick>,
    kinds: Vec<Kind>,
    longest: usize,
    pending: Vec<u8>,
    /// Inside a token after a prefix: token characters are dropped.
    in_token: bool,
    /// `[MASKED]` was already written for the current token.
    token_masked: bool,
}

impl Masker {
    /// A masker for these secret values and token prefixes. Empty values are ignored;
    /// each value is also masked in its URL-encoded form.
    pub fn new<S: AsRef<str>, P: AsRef<str>>(secrets: &[S], prefixes: &[P]) -> Masker {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut kinds = Vec::new();
        for s in secrets {
            let s = s.as_ref();
            if s.is_empty() {
                continue;
            }
            for form in [s.to_owned(), percent_encode(s)] {
                if !patterns.iter().any(|p| p == form.as_bytes()) {
                    patterns.push(form.into_bytes());
                    kinds.push(Kind::Secret);
                }
            }
        }
        for p in prefixes {
            let p = p.as_ref();
            if !p.is_empty() && !patterns.iter().any(|x| x == p.as_bytes()) {
                patterns.push(p.as_bytes().to_vec());
                kinds.push(Kind::Prefix);
            }
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let ac = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("a few literal patterns always build")
        });
        Masker {
            ac,
            kinds,
            longest,
            pending: Vec::new(),
            in_token: false,
            token_masked: false,
        }
    }

    /// Masks `input` and appends what is certain to `out`; keeps a short tail back.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.run(input, out, false);
    }

    /// Releases the held-back tail (the stream ended or paused at a boundary).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        self.run(&[], out, true);
    }

    /// Bytes held back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, end: bool) {
        let Some(ac) = &self.ac else {
            out.extend_from_slice(input);
            return;
        };
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(input);
        let mut pos = 0;
        if self.in_token {
            while pos < data.len() && token_char(data[pos]) {
                pos += 1;
            }
            if pos > 0 && !self.token_masked {
                out.extend_from_slice(MASK);
                self.token_masked = true;
            }
            if pos == data.len() {
                return;
            }
            self.in_token = false;
        }
        let safe_end = if end {
            data.len()
        } else {
            data.len().saturating_sub(self.longest - 1)
        };
        let base = pos;
        for m in ac.find_iter(&data[base..]) {
            let (start, mend) = (base + m.start(), base + m.end());
            if start < pos {
                continue;
            }
            if start >= safe_end {
                break;
            }
            out.extend_from_slice(&data[pos..start]);
            match self.kinds[m.pattern().as_usize()] {
                Kind::Secret => {
                    out.extend_from_slice(MASK);
                    pos = mend;
                }
                Kind::Prefix => {
                    out.extend_from_slice(&data[start..mend]);
                    let mut k = mend;
                    while k < data.len() && token_char(data[k]) {
                        k += 1;
                    }
                    if k > mend {
                        out.extend_from_slice(MASK);
                    }
                    if k == data.len() && !end {
                        // The token may go on in the next chunk.
                        self.in_token = true;
                        self.token_masked = k > mend;
                        return;
                    }
                    pos = k;
                }
            }
        }
        // `find_iter` runs over `data[base..]`, so matches inside a swallowed token are
        // skipped by the `start < pos` check above.
        let emit_end = safe_end.max(pos);
        out.extend_from_slice(&data[pos..emit_end]);
        self.pending = data[emit_end..].to_vec();
    }
}

/// The form a value takes in a URL (`user:p@ss` -> `user%3Ap%40ss`).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_chunks(m: &mut Masker, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for c in chunks {
            m.write(c, &mut out);
        }
        m.flush(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn whole(secrets: &[&str], prefixes: &[&str], input: &str) -> String {
        mask_chunks(&mut Masker::new(secrets, prefixes), &[input.as_bytes()])
    }

    #[test]
    fn masks_values_and_prefixed_tokens() {
        assert_eq!(
            whole(
                &["s3cr3t-value"],
                &[],
                "pw=s3cr3t-value; again s3cr3t-value."
            ),
            "pw=[MASKED]; again [MASKED]."
        );
        assert_eq!(
            whole(&[], &["glpat-"], "token glpat-AbC_123-xyz end"),
            "token glpat-[MASKED] end"
        );
        assert_eq!(
            whole(&["a b/c"], &[], "url https://x/?q=a%20b%2Fc"),
            "url https://x/?q=[MASKED]"
        );
        assert_eq!(whole(&["xyz"], &[], "no secrets here"), "no secrets here");
    }

    #[test]
    fn longest_secret_wins_over_its_prefix() {
        assert_eq!(
            whole(&["abc", "abcdefgh"], &[], "1abcdefgh2abc3"),
            "1[MASKED]2[MASKED]3"
        );
    }

    /// Every way of cutting the input in two or three pieces masks like the whole input,
    /// and no output contains a secret.
    #[test]
    fn secret_split_across_chunks_is_masked() {
        let secrets = ["hunter2-is-long", "hunter2-is-longer-still", "zz"];
        let prefixes = ["glrt-"];
        let input = "a hunter2-is-long b hunter2-is-longer-still c glrt-tok_EN-1 dzz hunter2-is-lo";
        let expected = whole(&secrets, &prefixes, input);
        assert_eq!(
            expected,
            "a [MASKED] b [MASKED] c glrt-[MASKED] d[MASKED] hunter2-is-lo"
        );
        let bytes = input.as_bytes();
        for i in 0..=bytes.len() {
            let got = mask_chunks(
                &mut Masker::new(&secrets, &prefixes),
                &[&bytes[..i], &bytes[i..]],
            );
            assert_eq!(got, expected, "split at {i}");
            for j in i..=bytes.len() {
                let got = mask_chunks(
                    &mut Masker::new(&secrets, &prefixes),
                    &[&bytes[..i], &bytes[i..j], &bytes[j..]],
                );
                assert_eq!(got, expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_holds_back_only_a_short_tail() {
        let mut m = Masker::new(&["0123456789"], &[] as &[&str]);
        let mut out = Vec::new();
        for b in b"xxxxxxxxxxxxxxxxxxxx012345678" {
            m.write(&[*b], &mut out);
            assert!(m.pending() <= 9);
        }
        m.write(b"9 done", &mut out);
        m.flush(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xxxxxxxxxxxxxxxxxxxx[MASKED] done"
        );
    }

    #[test]
    fn token_prefix_at_the_end_of_a_chunk_masks_what_follows() {
        let mut m = Masker::new(&[] as &[&str], &["glrt-"]);
        assert_eq!(
            mask_chunks(&mut m, &[b"x glrt-", b"abc", b"def y"]),
            "x glrt-[MASKED] y"
        );
        let mut m = Masker::new(&[] as &[&str], &["glrt-"]);
        assert_eq!(mask_chunks(&mut m, &[b"x glrt-", b" y"]), "x glrt- y");
    }

    #[test]
    fn no_secrets_passes_through() {
        let mut m = Masker::new(&[] as &[&str], &[] as &[&str]);
        let mut out = Vec::new();
        m.write(b"abc", &mut out);
        assert_eq!(out, b"abc");
    }
}

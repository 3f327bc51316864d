//! Catalog entries as documents: the Markdown pages under `docs/failures/` and the text
//! `rbuild explain` prints. Both come from the same [`Entry`], so
//! they cannot drift apart; a unit test keeps the committed pages in sync (regenerate them
//! with `RBUILD_BLESS=1 cargo nextest run -p rbuild -E 'test(docs)'`).

use std::fmt::Write as _;

use super::Severity;
use super::catalog::{AutoAvoid, CATALOG, Cause, Detector, Entry, When};

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
    }
}

fn avoid_word(a: AutoAvoid) -> &'static str {
    match a {
        AutoAvoid::Yes => "yes: rbuild prevents it and leaves a warning",
        AutoAvoid::Partly => "partly: rbuild detects it early and names the exact fix",
        AutoAvoid::No => {
            "no: only the host or cluster administrator can fix it; rbuild explains it"
        }
    }
}

fn detector_word(d: Detector) -> &'static str {
    match d {
        Detector::Structured => "structured errors",
        Detector::Probe => "host probes",
        Detector::LayerScan => "layer scans",
        Detector::Behaviour => "step behaviour",
        Detector::Log => "log signatures",
    }
}

/// The documentation page of one cause.
pub fn markdown(cause: Cause) -> String {
    let e = cause.entry();
    let mut md = String::new();
    let _ = writeln!(md, "# `{}`: {}\n", cause.id(), e.title);
    let _ = writeln!(
        md,
        "<!-- Generated from builder/src/diagnose/catalog.rs by `RBUILD_BLESS=1 cargo nextest run -p rbuild -E 'test(docs)'`; edit the catalog, not this file. -->\n"
    );
    let _ = writeln!(md, "{}\n", e.summary);
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| id | `{}` |", cause.id());
    let _ = writeln!(md, "| severity | {} |", severity_word(e.severity));
    let _ = writeln!(
        md,
        "| avoided automatically | {} |",
        avoid_word(e.auto_avoid)
    );
    let detectors: Vec<&str> = e.detectors.iter().map(|d| detector_word(*d)).collect();
    let _ = writeln!(md, "| detected by | {} |", detectors.join(", "));
    let _ = writeln!(md, "| explain | `rbuild explain {}` |\n", cause.id());

    let _ = writeln!(md, "## Why it happens\n\n{}\n", e.explanation);
    md.push_str("## How to fix it\n\n");
    for step in e.fix {
        let _ = writeln!(md, "- {step}");
    }
    let _ = writeln!(md, "\n## What rbuild does\n\n{}\n", e.rbuild);
    md.push_str("## How rbuild recognises it\n\n");
    for d in e.detectors {
        let _ = writeln!(md, "- **{}**: {}", detector_word(*d), d.describe());
    }
    if !e.signatures.is_empty() {
        md.push_str(
            "\nLog signatures (Rust `regex`), tried most specific first and only on the output of failed steps, each with a real line it matches:\n\n",
        );
        md.push_str("| tier | pattern | example |\n|---|---|---|\n");
        for s in e.signatures {
            let when = if s.when == When::Emulated {
                " (emulated steps only)"
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {:?}{when} | {} | {} |",
                s.tier,
                code_cell(s.pattern),
                code_cell(s.example)
            );
        }
    }
    if !e.related.is_empty() {
        let related: Vec<String> = e
            .related
            .iter()
            .map(|r| format!("[`{}`]({}.md)", r.id(), r.id()))
            .collect();
        let _ = writeln!(md, "\n## Related causes\n\n{}", related.join(", "));
    }
    if !e.references.is_empty() {
        md.push_str("\n## References\n\n");
        for r in e.references {
            let _ = writeln!(md, "- <{r}>");
        }
    }
    md
}

/// Inline code in a table cell: backticks fenced wide enough, pipes escaped.
fn code_cell(s: &str) -> String {
    let mut run = 0;
    let mut max_ticks = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            max_ticks = max_ticks.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat(max_ticks + 1);
    let body = s.replace('|', "\\|");
    let pad = if body.starts_with('`') || body.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

/// `docs/failures/README.md`: the index of all causes.
pub fn index_markdown() -> String {
    let mut md = String::from(
        "# Known failure causes\n\n<!-- Generated from builder/src/diagnose/catalog.rs; edit the catalog, not this file. -->\n\nEvery failure rbuild recognises has a stable id, shown in its messages, GitHub annotations and GitLab Code Quality entries. `rbuild explain <id>` prints the same page in the terminal; `rbuild doctor` checks this host for the causes it can probe.\n\n| id | what happened | severity | avoided automatically |\n|---|---|---|---|\n",
    );
    for e in CATALOG {
        let avoid = match e.auto_avoid {
            AutoAvoid::Yes => "yes",
            AutoAvoid::Partly => "partly",
            AutoAvoid::No => "no",
        };
        let _ = writeln!(
            md,
            "| [`{id}`]({id}.md) | {} | {} | {avoid} |",
            e.title.replace('|', "\\|"),
            severity_word(e.severity),
            id = e.cause.id()
        );
    }
    md
}

/// Wraps `text` at `width` columns with `indent`, keeping lines that start with spaces
/// (code) as they are.
fn wrap(out: &mut String, text: &str, indent: &str, width: usize) {
    for line in text.lines() {
        if line.starts_with(' ') || line.trim().is_empty() {
            let _ = writeln!(out, "{indent}{}", line.trim_end());
            continue;
        }
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && indent.len() + current.len() + 1 + word.len() > width {
                let _ = writeln!(out, "{indent}{current}");
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        let _ = writeln!(out, "{indent}{current}");
    }
}

/// What `rbuild explain <id>` prints.
pub fn text(cause: Cause, width: usize) -> String {
    let e: &Entry = cause.entry();
    let mut t = String::new();
    let _ = writeln!(t, "{}: {}\n", cause.id(), e.title);
    let detectors: Vec<&str> = e.detectors.iter().map(|d| detector_word(*d)).collect();
    let _ = writeln!(t, "  severity:      {}", severity_word(e.severity));
    let _ = writeln!(t, "  auto-avoid:    {}", avoid_word(e.auto_avoid));
    let _ = writeln!(t, "  detected by:   {}\n", detectors.join(", "));
    wrap(&mut t, e.summary, "", width);
    t.push_str("\nWhy it happens\n");
    wrap(&mut t, e.explanation, "  ", width);
    t.push_str("\nHow to fix it\n");
    for step in e.fix {
        let mut s = String::new();
        wrap(&mut s, step, "    ", width);
        let s = s.replacen("    ", "  - ", 1);
        t.push_str(&s);
    }
    t.push_str("\nWhat rbuild does\n");
    wrap(&mut t, e.rbuild, "  ", width);
    if !e.signatures.is_empty() {
        t.push_str("\nLog lines it is recognised by (examples)\n");
        for s in e.signatures {
            let _ = writeln!(t, "  {}", s.example);
        }
    }
    if !e.related.is_empty() {
        let related: Vec<&str> = e.related.iter().map(|r| r.id()).collect();
        let _ = writeln!(t, "\nRelated: {}", related.join(", "));
    }
    let _ = writeln!(t, "Documentation: {}", cause.url());
    t
}

/// Ids close to `query`, for "did you mean": same words, or a small edit distance.
pub fn suggestions(query: &str) -> Vec<&'static str> {
    const STOP: &[&str] = &["not", "the", "and", "for", "in", "on", "or", "to"];
    let q = query.to_ascii_lowercase();
    let ids = Cause::ALL.iter().map(|c| c.id());
    // A near spelling wins outright; otherwise ids sharing a meaningful word.
    let mut near: Vec<(usize, &'static str)> = ids
        .clone()
        .map(|id| (edit_distance(&q, id), id))
        .filter(|(d, _)| *d <= 3)
        .collect();
    if !near.is_empty() {
        near.sort_unstable();
        return near.into_iter().take(3).map(|(_, id)| id).collect();
    }
    let words: Vec<&str> = q
        .split(['-', '_', ' '])
        .filter(|w| w.len() > 2 && !STOP.contains(w))
        .collect();
    let mut shared: Vec<(std::cmp::Reverse<usize>, &'static str)> = ids
        .map(|id| {
            let n = words
                .iter()
                .filter(|w| id.split('-').any(|p| p.contains(*w)))
                .count();
            (std::cmp::Reverse(n), id)
        })
        .filter(|(n, _)| n.0 > 0)
        .collect();
    shared.sort_unstable();
    shared.into_iter().take(3).map(|(_, id)| id).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn docs_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/failures")
    }

    #[test]
    fn docs_pages_are_in_sync_with_the_catalog() {
        let dir = docs_dir();
        let mut expected: Vec<(String, String)> = Cause::ALL
            .iter()
            .map(|c| (format!("{}.md", c.id()), markdown(*c)))
            .collect();
        expected.push(("README.md".to_owned(), index_markdown()));
        if std::env::var_os("RBUILD_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in &expected {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let mut stale = Vec::new();
        for (name, text) in &expected {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(on_disk) if &on_disk == text => {}
                Ok(_) => stale.push(format!("{name} differs")),
                Err(e) => stale.push(format!("{name}: {e}")),
            }
        }
        let extra: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !expected.iter().any(|(e, _)| e == n))
            .collect();
        assert!(extra.is_empty(), "pages for no cause: {extra:?}");
        assert!(
            stale.is_empty(),
            "docs/failures is out of date ({}); regenerate with `RBUILD_BLESS=1 cargo nextest run -p rbuild -E 'test(docs)'`",
            stale.join(", ")
        );
    }

    #[test]
    fn a_page_has_every_part_of_the_entry() {
        let md = markdown(Cause::BinfmtNotRegistered);
        for part in [
            "# `binfmt-not-registered`: no emulator is registered",
            "## Why it happens",
            "## How to fix it",
            "## What rbuild does",
            "## How rbuild recognises it",
            "| Generic | `(?i)exec format error` |",
            "[`qemu-segfault`](qemu-segfault.md)",
            "- <https://github.com/docker/buildx/issues/566>",
        ] {
            assert!(md.contains(part), "missing `{part}` in:\n{md}");
        }
        assert!(
            index_markdown().contains(
                "| [`clock-skew`](clock-skew.md) | the clock is wrong | error | partly |"
            )
        );
    }

    #[test]
    fn code_cells_survive_backticks_and_pipes() {
        assert_eq!(code_cell("a|b"), "`a\\|b`");
        assert_eq!(code_cell("exec `x`"), "`` exec `x` ``");
        assert_eq!(code_cell("`x"), "`` `x ``");
    }

    #[test]
    fn explain_text_wraps_and_keeps_code() {
        let t = text(Cause::ApparmorRestrictUnprivilegedUserns, 80);
        assert!(t.starts_with("apparmor-restrict-unprivileged-userns: unprivileged user namespaces are restricted by AppArmor\n"));
        assert!(
            t.contains("  abi <abi/4.0>,\n") && t.contains(" userns,\n"),
            "{t}"
        );
        assert!(t.contains("\nHow to fix it\n  - "), "{t}");
        let mut out = String::new();
        wrap(&mut out, &"word ".repeat(50), "  ", 40);
        assert!(
            out.lines()
                .all(|l| l.len() <= 40 && l.starts_with("  word")),
            "{out}"
        );
        assert_eq!(out.lines().count(), 8);
    }

    #[test]
    fn suggestions_find_near_ids() {
        assert_eq!(
            suggestions("binfmt-not-registred")[0],
            "binfmt-not-registered"
        );
        assert!(suggestions("selinux").contains(&"xattr-security-selinux-in-layer"));
        assert!(suggestions("zzzz").is_empty());
    }
}

//! The Dockerfile corpus: every case under `tests/corpus/<case>/` is a `Dockerfile` with
//! the expected classic dump (`ast`), the expected diagnostics (`diagnostics`; absent
//! means none), and optionally the expected expansion of the stages the target needs
//! (`stages`) under the build options in `options`. Every case under
//! `tests/corpus/negative/<case>/` must be rejected: its `expected` file lists the
//! diagnostics, at least one of them an error.
//!
//! `RBUILD_BLESS=1 cargo test -p rbuild --test corpus` rewrites the expected files; review
//! the diff before committing it.

#![allow(clippy::unwrap_used)] // helpers of the test harness: a panic is the failure report

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use rbuild::diagnose::{Diagnostic, Severity};
use rbuild::dockerfile::{self, Base, BuildOptions, Kind, Platform};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    v.sort();
    v
}

fn bless() -> bool {
    std::env::var_os("RBUILD_BLESS").is_some_and(|v| !v.is_empty())
}

/// Compares `actual` with the file `path` (or writes it when blessing). Returns a failure
/// description.
fn expect(path: &Path, actual: &str, optional: bool) -> Option<String> {
    if bless() {
        if actual.is_empty() && optional {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, actual).unwrap();
        }
        return None;
    }
    let want = match fs::read_to_string(path) {
        Ok(w) => w,
        Err(_) if optional => String::new(),
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    (want != actual).then(|| {
        format!(
            "{}:\n--- expected\n{want}--- actual\n{actual}",
            path.display()
        )
    })
}

fn options(case: &Path) -> BuildOptions {
    let mut opts = BuildOptions {
        build_args: BTreeMap::new(),
        target: None,
        target_platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
    };
    if let Ok(text) = fs::read_to_string(case.join("options")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once(' ').unwrap();
            match k {
                "build-arg" => {
                    let (name, value) = v.split_once('=').unwrap();
                    opts.build_args.insert(name.to_owned(), value.to_owned());
                }
                "target" => opts.target = Some(v.to_owned()),
                "platform" => opts.target_platform = Platform::parse(v).unwrap(),
                other => panic!("unknown option {other}"),
            }
        }
    }
    opts
}

fn render_diagnostics(diags: &[Diagnostic]) -> String {
    let mut s = String::new();
    for d in diags {
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
        };
        let (l, e) = (d.line.unwrap_or(0), d.end_line.unwrap_or(0));
        let place = if e > l {
            format!("{l}-{e}")
        } else {
            l.to_string()
        };
        let _ = writeln!(s, "{sev} {} {place}: {}", d.id, d.message);
    }
    s
}

/// The stages the target needs, expanded, one instruction per line.
fn render_stages(df: &dockerfile::Dockerfile, opts: &BuildOptions) -> String {
    let plan = df.plan(opts);
    let mut s = String::new();
    let _ = writeln!(s, "target {} order {:?}", plan.target, plan.order);
    if !plan.unused_build_args.is_empty() {
        let _ = writeln!(s, "unused build args {:?}", plan.unused_build_args);
    }
    let mut envs: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    for &i in &plan.order {
        let st = &plan.stages[i];
        let platform = st
            .platform
            .as_ref()
            .map_or("target".to_owned(), ToString::to_string);
        let _ = writeln!(
            s,
            "stage {i} {} base {:?} platform {platform} deps {:?} images {:?}",
            st.name.as_deref().unwrap_or("-"),
            st.base,
            st.deps,
            st.image_sources
        );
        let base_env = match st.base {
            Base::Scratch | Base::Image(_) => Vec::new(),
            Base::Stage(b) => envs.get(&b).cloned().unwrap_or_default(),
        };
        let ex = df.expand_stage(&plan, opts, i, Some(&base_env));
        for step in &ex.steps {
            let ins = &step.instruction;
            let _ = writeln!(s, "  {}-{} {:?}", ins.span.start, ins.span.end, ins.kind);
            if matches!(ins.kind, Kind::Run(_)) {
                let _ = writeln!(
                    s,
                    "    env {:?} args {:?} mounts {:?}",
                    step.env, step.args, step.mounts
                );
            }
        }
        let _ = writeln!(s, "  final env {:?}", ex.env);
        envs.insert(i, ex.env);
    }
    s
}

#[test]
fn positive_cases_parse_to_their_expected_dump() {
    let mut failures = Vec::new();
    let all = cases(&corpus());
    assert!(all.len() >= 10, "the corpus has only {} cases", all.len());
    for case in all {
        let bytes = fs::read(case.join("Dockerfile")).unwrap();
        let df = dockerfile::parse(&bytes, "Dockerfile");
        let opts = options(&case);
        let diags = df.check(&opts);
        if diags.iter().any(|d| d.severity == Severity::Error) || !df.syntax_ok {
            failures.push(format!(
                "{}: has errors:\n{}",
                case.display(),
                render_diagnostics(&diags)
            ));
            continue;
        }
        failures.extend(expect(&case.join("ast"), &df.ast.dump(), false));
        failures.extend(expect(
            &case.join("diagnostics"),
            &render_diagnostics(&diags),
            true,
        ));
        if case.join("stages").exists() || case.join("options").exists() {
            failures.extend(expect(
                &case.join("stages"),
                &render_stages(&df, &opts),
                false,
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_are_rejected_with_a_named_diagnostic() {
    let mut failures = Vec::new();
    let all = cases(&corpus().join("negative"));
    assert!(
        all.len() >= 10,
        "the negative corpus has only {} cases",
        all.len()
    );
    for case in all {
        let bytes = fs::read(case.join("Dockerfile")).unwrap();
        let df = dockerfile::parse(&bytes, "Dockerfile");
        let diags = df.check(&options(&case));
        if !diags.iter().any(|d| {
            d.severity == Severity::Error
                && d.file.is_some()
                && (d.line.is_some() || d.id == "unknown-target")
        }) {
            failures.push(format!(
                "{}: accepted (no error with a file and line)",
                case.display()
            ));
        }
        failures.extend(expect(
            &case.join("expected"),
            &render_diagnostics(&diags),
            false,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

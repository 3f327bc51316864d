//! The CI renderers against independent references: GitHub workflow commands must be
//! byte for byte what GitHub's own `@actions/core` emits for the same message, file and
//! lines; the GitLab Code Quality report must validate against the format GitLab
//! documents (a JSON Schema transcribed from its docs, checked by Python's `jsonschema`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rbuild::diagnose::render::github::{self, Properties};
use rbuild::diagnose::render::{Format, Outputs};
use rbuild::diagnose::{Cause, Diagnostic, Severity};
use rbuild_e2e::devtools;
use rbuild_e2e::require;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/diagnose")
        .join(name)
}

/// One annotation call: what `core.<level>(message, properties)` gets.
struct Case {
    level: &'static str,
    props: Properties,
    message: String,
}

impl Case {
    fn to_json(&self) -> Value {
        let mut v = json!({ "level": self.level, "message": self.message });
        if let Some(t) = &self.props.title {
            v["title"] = json!(t);
        }
        if let Some(f) = &self.props.file {
            v["file"] = json!(f);
        }
        if let Some(l) = self.props.start_line {
            v["startLine"] = json!(l);
        }
        if let Some(l) = self.props.end_line {
            v["endLine"] = json!(l);
        }
        v
    }
}

/// What `@actions/core` prints for `cases`.
fn actions_core(node_modules: &Path, cases: &[Case]) -> String {
    let input = Value::Array(cases.iter().map(Case::to_json).collect()).to_string();
    let mut child = Command::new("node")
        .arg(fixture("actions-core.mjs"))
        .arg(node_modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("node reads its input");
    let out = child.wait_with_output().expect("node runs to completion");
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("@actions/core writes UTF-8")
}

/// Deterministic strings full of what needs escaping.
fn tricky_strings(n: usize) -> Vec<String> {
    let alphabet: Vec<char> = "ab Z09%:,=\r\n\t\\\"'`|<>ü漢🚀::%25%0A".chars().collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            let len = 1 + i % 23;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[usize::try_from(state % alphabet.len() as u64).expect("index fits")]
                })
                .collect()
        })
        .collect()
}

#[test]
fn workflow_commands_are_what_actions_core_emits() {
    let node_modules = require!(devtools::actions_core());

    let mut cases = Vec::new();
    let mut push = |level: &'static str, props: Properties, message: String| {
        cases.push(Case {
            level,
            props,
            message,
        });
    };
    let mut rendered_diagnostics = Vec::new();

    // Hand-picked edge cases: every escaped character in data and in properties.
    let p = |title: &str, file: Option<&str>, line: Option<u32>, end: Option<u32>| Properties {
        title: Some(title.to_owned()),
        file: file.map(str::to_owned),
        start_line: line,
        end_line: end,
    };
    push(
        "error",
        p(
            "xattr-security-selinux-in-layer",
            Some("Dockerfile"),
            Some(12),
            Some(12),
        ),
        "dropped `security.selinux` from 12 files".into(),
    );
    push(
        "warning",
        p("t:1,2", Some("dir:a,b/Dockerfile"), Some(3), Some(7)),
        "100% done\r\nnext: a,b".into(),
    );
    push(
        "notice",
        p("%0A is not a newline", Some("C:\\x,y%"), Some(1), None),
        "%0A%25 literal\n".into(),
    );
    push("error", p("", None, None, None), "empty title".into());
    push("error", p("t", None, Some(0), Some(0)), "line zero".into());
    push(
        "warning",
        Properties::default(),
        "no properties at all".into(),
    );
    push(
        "notice",
        p(
            "unicode ü漢🚀",
            Some("docker/Dockerfile.🚀"),
            Some(9),
            Some(10),
        ),
        "ümlaut 漢字 🚀\ttab".into(),
    );
    push("error", p("x", Some("f"), Some(1), Some(1)), String::new());
    push(
        "error",
        p("::", Some("::"), Some(2), Some(2)),
        "::error::nested::".into(),
    );

    // Random strings through every property and the message.
    let strings = tricky_strings(240);
    for (i, chunk) in strings.chunks(3).enumerate() {
        let level = ["error", "warning", "notice"][i % 3];
        let line = u32::try_from(i % 50).unwrap();
        push(
            level,
            Properties {
                title: Some(chunk[0].clone()),
                file: Some(chunk[1].clone()),
                start_line: Some(line),
                end_line: Some(line + 2),
            },
            chunk[2].clone(),
        );
    }

    // Real diagnostics of every catalog cause, through rbuild's renderer.
    for (i, cause) in Cause::ALL.iter().enumerate() {
        let severity = [Severity::Error, Severity::Warning, Severity::Notice][i % 3];
        let line = u32::try_from(i).unwrap() + 1;
        let d = cause
            .diagnostic(
                severity,
                format!("step `RUN a,b:c` failed at 100%\nsecond line {i}"),
            )
            .at("build/Dockerfile", line, line + 1)
            .with_platform("linux/arm64")
            .with_evidence("E: setgroups 65534 failed - setgroups (22: Invalid argument)");
        rendered_diagnostics.push(github::workflow_command(&d));
        push(
            github::level(d.severity),
            github::properties(&d),
            github::message(&d),
        );
    }
    let ours: Vec<String> = cases
        .iter()
        .map(|c| github::command(c.level, &c.props, &c.message))
        .collect();
    // The diagnostics' cases are the last ones; `workflow_command` must agree with them.
    assert_eq!(
        ours[ours.len() - rendered_diagnostics.len()..],
        rendered_diagnostics[..]
    );

    let expected = actions_core(&node_modules, &cases);
    let mut actual = ours.join("\n");
    actual.push('\n');
    let mismatches: Vec<String> = actual
        .lines()
        .zip(expected.lines())
        .enumerate()
        .filter(|(_, (a, e))| a != e)
        .map(|(i, (a, e))| format!("case {i}:\n  rbuild:        {a}\n  @actions/core: {e}"))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(actual, expected);
    eprintln!(
        "{} workflow commands identical to @actions/core's",
        cases.len()
    );
}

#[test]
fn the_summarised_overflow_is_also_what_actions_core_emits() {
    let node_modules = require!(devtools::actions_core());
    let diags: Vec<Diagnostic> = (0..25)
        .map(|i| {
            Cause::RunFailed
                .error(format!("failure {i}"))
                .at("Dockerfile", i + 1, i + 1)
        })
        .collect();
    let lines = github::workflow_commands(&diags);
    assert_eq!(lines.len(), 10);
    // Rebuild the same calls from the diagnostics kept and the summary.
    let mut cases: Vec<Case> = diags[..9]
        .iter()
        .map(|d| Case {
            level: "error",
            props: github::properties(d),
            message: github::message(d),
        })
        .collect();
    let summary = lines.last().unwrap();
    let message = summary
        .strip_prefix("::error title=rbuild::")
        .expect("a summary annotation titled rbuild");
    cases.push(Case {
        level: "error",
        props: Properties {
            title: Some("rbuild".to_owned()),
            ..Properties::default()
        },
        message: message.to_owned(),
    });
    assert_eq!(lines.join("\n") + "\n", actions_core(&node_modules, &cases));
}

/// Diagnostics of every kind a report can hold.
fn sample_diagnostics() -> Vec<Diagnostic> {
    let mut v: Vec<Diagnostic> = Cause::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let line = u32::try_from(i).expect("few causes") + 1;
            c.diagnostic(
                [Severity::Error, Severity::Warning, Severity::Notice][i % 3],
                format!("`RUN step {i}` failed"),
            )
            .at("app/Dockerfile", line, line + 2)
            .with_step(format!("[build {i}/50] RUN step {i}"))
            .with_platform("linux/amd64")
        })
        .collect();
    // Host diagnostics name no file; lint-style ones may have no step.
    v.push(Cause::SubidRangeTooSmall.error("`ci` has no subordinate uid range"));
    v.push(
        Diagnostic::new(
            "undefined-stage",
            Severity::Error,
            "undefined stage",
            "`COPY --from=buidl` names no stage",
        )
        .at("app/Dockerfile", 40, 40),
    );
    v
}

#[test]
fn the_codequality_file_validates_against_gitlabs_documented_format() {
    let python = require!(devtools::python_with_jsonschema());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("gl-code-quality-report.json");
    let diags = sample_diagnostics();
    let outputs = Outputs {
        format: Format::Json,
        colour: false,
        diagnostics_file: None,
        codequality_file: Some(report.clone()),
        step_summary: None,
        default_path: "app/Dockerfile".to_owned(),
    };
    outputs.emit(&diags, &mut Vec::new()).unwrap();

    let bytes = std::fs::read(&report).unwrap();
    assert!(
        !bytes.starts_with(b"\xEF\xBB\xBF"),
        "GitLab refuses a byte-order mark"
    );
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             report = json.load(open(sys.argv[2], encoding='utf-8'))\n\
             errors = list(jsonschema.Draft202012Validator(schema).iter_errors(report))\n\
             for e in errors: print(list(e.absolute_path), e.message)\n\
             print(len(report), 'entries')\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(fixture("gitlab-codequality.schema.json"))
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the report does not validate:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), diags.len(), "{stdout}");
    // check_name is the id; fingerprints are unique here (different instructions).
    let mut fps: Vec<&str> = entries
        .iter()
        .map(|e| e["fingerprint"].as_str().unwrap())
        .collect();
    fps.sort_unstable();
    fps.dedup();
    assert_eq!(fps.len(), entries.len());
    assert_eq!(entries[0]["check_name"], "subid-range-too-small");
    assert_eq!(entries[0]["severity"], "critical");
    let host = entries
        .iter()
        .find(|e| e["description"] == "`ci` has no subordinate uid range")
        .unwrap();
    assert_eq!(
        host["location"],
        json!({"path": "app/Dockerfile", "lines": {"begin": 1, "end": 1}})
    );
}

#[test]
fn the_schema_rejects_what_gitlab_would_reject() {
    // The validator is only worth something if it can fail.
    let python = require!(devtools::python_with_jsonschema());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"description":"d","check_name":"c","fingerprint":"f","severity":"error","location":{"path":"Dockerfile","lines":{"begin":0}}}]"#,
    )
    .unwrap();
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             s = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))\n\
             errs = list(jsonschema.Draft202012Validator(s).iter_errors(r))\n\
             print(len(errs)); sys.exit(0 if len(errs) == 2 else 1)",
        ])
        .arg(fixture("gitlab-codequality.schema.json"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "expected 2 errors (severity `error`, line 0), got {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Measures false positives of the catalog's log signatures: runs every rule over the
//! step output in the logs of successful builds and prints each match and the totals.
//!
//! `cargo run -p rbuild-diagnose --example false_positives -- DIR...` reads every file
//! in each `DIR` whose name ends in `.log` and has a sibling `.status` file holding `0`
//! (as `diagnose/scripts/false-positives` collects them from the end-to-end suite). The
//! step output is taken from `--progress json` `step_log` events, from `--progress plain`
//! lines (`#N 1.234 text`), or, for other logs, from every line; rbuild's own diagnostics
//! are not step output and are left out. Exits 1 when anything matched.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use rbuild_diagnose::signatures;
use serde_json::Value;

/// The step output in one captured stderr.
fn step_output(text: &str) -> String {
    let mut out = String::new();
    let mut json = false;
    let mut plain = false;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && v["type"].is_string()
        {
            json = true;
            if v["type"] == "step_log"
                && let Some(d) = v["data"].as_str()
            {
                out.push_str(d);
                if !d.ends_with('\n') {
                    out.push('\n');
                }
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('#')
            && let Some((step, rest)) = rest.split_once(' ')
            && step.bytes().all(|b| b.is_ascii_digit())
            && let Some((time, text)) = rest.split_once(' ')
            && time.parse::<f64>().is_ok()
        {
            plain = true;
            out.push_str(text);
            out.push('\n');
        }
    }
    if json || plain { out } else { text.to_owned() }
}

fn main() -> ExitCode {
    let mut logs: Vec<(String, String)> = Vec::new();
    for dir in std::env::args().skip(1) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("error: cannot read `{dir}`");
            return ExitCode::from(2);
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let ok =
                std::fs::read_to_string(p.with_extension("status")).is_ok_and(|s| s.trim() == "0");
            if !ok {
                continue;
            }
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            let name = Path::new(&p)
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            logs.push((name, step_output(&text)));
        }
    }
    let report = signatures::false_positives(logs.iter().map(|(n, t)| (n.clone(), t.as_str())));
    // The report is this program's data: stdout.
    let mut out = std::io::stdout().lock();
    for (name, f) in &report.matches {
        let _ = writeln!(out, "{name}: `{}` matched `{}`", f.cause, f.line);
    }
    let _ = writeln!(
        out,
        "{} match(es) in {} successful build log(s), {} non-empty lines, {} bytes of step output",
        report.matches.len(),
        report.logs,
        report.lines,
        report.bytes
    );
    if report.matches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! The log-signature matcher: finds the catalog cause behind a failed step's output.
//!
//! Every [`Signature`] of the catalog becomes one ordered rule:
//! exact tool messages first, then specific, then generic ones; within a tier, in catalog
//! order (most frequent cause first). On each line the first matching rule wins; over the
//! whole output the best-ranked rule wins, so a generic `operation not permitted`-style
//! rule never hides an exact message printed a few lines earlier.
//!
//! Signatures are only evaluated for failed or suspicious steps ([`diagnose_step`]); the
//! output of a successful step is never matched. Log regexes alone cannot see most causes
//! (leaked processes, wrong layer content), so they are the last of four detector kinds
//! (see `catalog`), used where rbuild did not classify the failure at its source.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::Diagnostic;
use super::catalog::{CATALOG, Cause, Signature, When};

/// One compiled rule: a signature with its cause and rank.
#[derive(Debug)]
pub struct Rule {
    pub cause: Cause,
    pub signature: &'static Signature,
    regex: Regex,
}

#[derive(Debug)]
struct Rules {
    rules: Vec<Rule>,
    set: RegexSet,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let mut all: Vec<(usize, &'static Signature, Cause)> = CATALOG
        .iter()
        .flat_map(|e| {
            e.signatures
                .iter()
                .map(move |s| (e.cause as usize, s, e.cause))
        })
        .collect();
    // Stable: within a tier, catalog order then order inside the entry.
    all.sort_by_key(|(order, s, _)| (s.tier, *order));
    let rules: Vec<Rule> = all
        .into_iter()
        .map(|(_, signature, cause)| Rule {
            cause,
            signature,
            regex: Regex::new(signature.pattern)
                .unwrap_or_else(|e| panic!("catalog signature of `{cause}` does not compile: {e}")),
        })
        .collect();
    let set = RegexSet::new(rules.iter().map(|r| r.signature.pattern))
        .expect("every pattern compiled on its own above");
    Rules { rules, set }
});

/// The rules in the order they are tried.
pub fn rules() -> &'static [Rule] {
    &RULES.rules
}

/// One line of output that matched a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub cause: Cause,
    /// Rank of the rule that matched (index into [`rules`]); lower is more specific.
    pub rank: usize,
    /// 0-based line number in the scanned text.
    pub line_no: usize,
    /// The line as matched (escape sequences removed, trimmed).
    pub line: String,
    /// The rule's capture groups, in order (empty strings for groups that did not take part).
    pub captures: Vec<String>,
}

/// Removes ANSI escape sequences (colours, cursor movement) that tools print on terminals.
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    static ANSI: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
            .expect("constant pattern")
    });
    ANSI.replace_all(line, "")
}

/// Lines longer than this are cut before matching; no signature needs more.
const MAX_LINE: usize = 8192;

/// Every line of `text` that matches a rule, with the first (most specific) rule that
/// matches it. `emulated` enables the rules that only apply to emulated steps.
pub fn scan(text: &str, emulated: bool) -> Vec<Finding> {
    let rules = &*RULES;
    let mut findings = Vec::new();
    for (line_no, raw) in text.split(['\n', '\r']).enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let cut = if raw.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !raw.is_char_boundary(end) {
                end -= 1;
            }
            &raw[..end]
        } else {
            raw
        };
        let line = strip_ansi(cut);
        let line = line.trim();
        let Some(rank) = rules
            .set
            .matches(line)
            .into_iter()
            .find(|&i| emulated || rules.rules[i].signature.when == When::Always)
        else {
            continue;
        };
        let rule = &rules.rules[rank];
        let captures = rule
            .regex
            .captures(line)
            .map(|c| {
                c.iter()
                    .skip(1)
                    .map(|m| m.map_or_else(String::new, |m| m.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        findings.push(Finding {
            cause: rule.cause,
            rank,
            line_no,
            line: line.to_owned(),
            captures,
        });
    }
    findings
}

/// The cause a step's output points at, with the lines that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub cause: Cause,
    /// The best-ranked finding.
    pub best: Finding,
    /// Up to [`MAX_EVIDENCE`] distinct lines that matched this cause, in output order.
    pub evidence: Vec<String>,
    /// Other causes whose signatures also matched, best first.
    pub others: Vec<Cause>,
}

/// How many matching lines a diagnostic quotes.
pub const MAX_EVIDENCE: usize = 5;

/// Classifies a step's output: the cause of the best-ranked finding (ties go to the
/// earliest line), or `None` when no signature matches.
pub fn classify(text: &str, emulated: bool) -> Option<Classification> {
    let findings = scan(text, emulated);
    let best = findings.iter().min_by_key(|f| (f.rank, f.line_no))?.clone();
    let mut evidence: Vec<String> = Vec::new();
    for f in findings.iter().filter(|f| f.cause == best.cause) {
        if !evidence.contains(&f.line) && evidence.len() < MAX_EVIDENCE {
            evidence.push(f.line.clone());
        }
    }
    let mut ranked: Vec<&Finding> = findings.iter().filter(|f| f.cause != best.cause).collect();
    ranked.sort_by_key(|f| (f.rank, f.line_no));
    let mut others: Vec<Cause> = Vec::new();
    for f in ranked {
        if !others.contains(&f.cause) {
            others.push(f.cause);
        }
    }
    Some(Classification {
        cause: best.cause,
        best,
        evidence,
        others,
    })
}

/// Whether a log shows signs of emulation: BuildKit's emulator path or a step prefix
/// naming a platform whose architecture is not `host_arch` (a Docker arch, e.g. `amd64`).
pub fn looks_emulated(text: &str, host_arch: &str) -> bool {
    static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\[linux/(amd64|arm64|arm|386|s390x|ppc64le|riscv64|mips64le|loong64)[/ \]]")
            .expect("constant pattern")
    });
    text.contains("/dev/.buildkit_qemu_emulator")
        || PREFIX
            .captures_iter(text)
            .any(|c| c.get(1).is_some_and(|m| m.as_str() != host_arch))
}

/// The Docker name of the architecture this binary runs on (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// How a step ended, as the sandbox saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Exit status 0 and nothing odd: signatures are not evaluated.
    Succeeded,
    /// Exit status 0, but something was odd (leftover processes, a long silence):
    /// signatures are evaluated and a match is reported as a warning.
    Suspicious,
    /// The main process exited non-zero or was killed by a signal.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The step was stopped at its time limit.
    TimedOut,
}

/// What is known about a step when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Display name, e.g. `[build 3/7] RUN make`.
    pub name: Option<&'a str>,
    /// The command it ran (used to recognise emulated runtimes such as Node.js).
    pub command: Option<&'a str>,
    /// Dockerfile and the instruction's lines.
    pub file: Option<&'a str>,
    pub line: Option<u32>,
    pub end_line: Option<u32>,
    pub platform: Option<&'a str>,
    /// Whether it ran under qemu; `None` infers it from the output.
    pub emulated: Option<bool>,
    pub outcome: StepOutcome,
}

impl Step<'_> {
    /// A step with only an outcome; fill in the rest with struct update syntax.
    pub fn new(outcome: StepOutcome) -> Self {
        Step {
            name: None,
            command: None,
            file: None,
            line: None,
            end_line: None,
            platform: None,
            emulated: None,
            outcome,
        }
    }
}

/// How many of a failed step's last output lines a `run-failed` diagnostic quotes.
pub const TAIL_LINES: usize = 10;

const SIGILL: i32 = 4;
const SIGABRT: i32 = 6;
const SIGBUS: i32 = 7;
const SIGSEGV: i32 = 11;

/// The diagnostic for a step that ended, from its outcome and output.
///
/// A successful step gets none (its output is not matched). A failed or timed-out step
/// always gets one: the matched catalog cause, an emulator crash recognised from the
/// signal that killed an emulated process, or the generic `run-failed` / `step-timed-out`
/// with the step's last output lines. A suspicious step gets a warning only when a
/// signature matches.
pub fn diagnose_step(step: &Step<'_>, output: &str) -> Option<Diagnostic> {
    if step.outcome == StepOutcome::Succeeded {
        return None;
    }
    let emulated = step
        .emulated
        .unwrap_or_else(|| looks_emulated(output, host_arch()));
    let what = step
        .name
        .map_or_else(|| "the step".to_owned(), |n| format!("step `{n}`"));
    let ended = match step.outcome {
        StepOutcome::Failed {
            signal: Some(sig), ..
        } => format!("was killed by signal {sig}"),
        StepOutcome::Failed {
            exit_code: Some(code),
            ..
        } => format!("exited with code {code}"),
        StepOutcome::Failed { .. } => "failed".to_owned(),
        StepOutcome::TimedOut => "ran out of time".to_owned(),
        StepOutcome::Suspicious | StepOutcome::Succeeded => "finished".to_owned(),
    };
    let on = step
        .platform
        .map(|p| format!(" on `{p}`"))
        .unwrap_or_default();

    let classified = classify(output, emulated);
    let diagnostic = match (&classified, step.outcome) {
        (Some(c), StepOutcome::Suspicious) => c.cause.warning(format!(
            "{what}{on} {ended}, but its output shows: `{}`",
            c.best.line
        )),
        (Some(c), _) => c.cause.error(format!(
            "{what}{on} {ended}; its output shows: `{}`",
            c.best.line
        )),
        (None, StepOutcome::Suspicious) => return None,
        (None, StepOutcome::TimedOut) => Cause::StepTimedOut.error(format!("{what}{on} {ended}")),
        (None, StepOutcome::Failed { exit_code, signal }) => {
            match emulated_crash(emulated, exit_code, signal, step.command) {
                Some(cause) => cause.error(format!(
                    "{what}{on} {ended} while running under emulation (qemu)"
                )),
                None => Cause::RunFailed.error(format!("{what}{on} {ended}")),
            }
        }
        (None, StepOutcome::Succeeded) => unreachable!("returned above"),
    };
    let mut d = diagnostic;
    match &classified {
        Some(c) => {
            d.evidence.extend(c.evidence.iter().cloned());
            if !c.others.is_empty() {
                let others: Vec<&str> = c.others.iter().map(|o| o.id()).collect();
                d.evidence
                    .push(format!("also matched: {}", others.join(", ")));
            }
        }
        None => d.evidence.extend(tail(output, TAIL_LINES)),
    }
    if let Some(name) = step.name {
        d = d.with_step(name);
    }
    if let Some(p) = step.platform {
        d = d.with_platform(p);
    }
    if let (Some(file), Some(line)) = (step.file, step.line) {
        d = d.at(file, line, step.end_line.unwrap_or(line));
    }
    Some(d)
}

/// The emulator-crash cause for a process that died from a signal under emulation.
/// Shells report a child killed by signal N as exit code 128 + N.
fn emulated_crash(
    emulated: bool,
    exit_code: Option<i32>,
    signal: Option<i32>,
    command: Option<&str>,
) -> Option<Cause> {
    if !emulated {
        return None;
    }
    let sig = signal.or_else(|| {
        exit_code
            .filter(|c| (129..=159).contains(c))
            .map(|c| c - 128)
    })?;
    let node = command.is_some_and(|c| {
        c.split(|ch: char| !ch.is_ascii_alphanumeric())
            .any(|w| matches!(w, "node" | "npm" | "npx" | "yarn" | "pnpm"))
    });
    match sig {
        SIGILL if node => Some(Cause::QemuNodeJsHangOrSigill),
        SIGILL | SIGABRT | SIGBUS | SIGSEGV => Some(Cause::QemuSegfault),
        _ => None,
    }
}

/// The last `n` non-empty lines of `text` (escape sequences removed).
pub fn tail(text: &str, n: usize) -> Vec<String> {
    let mut lines: Vec<String> = text
        .split(['\n', '\r'])
        .map(|l| strip_ansi(l).trim_end().to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    lines.drain(..start);
    lines
}

/// What [`false_positives`] found in logs of successful builds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FalsePositiveReport {
    pub logs: usize,
    pub lines: usize,
    pub bytes: usize,
    /// `(log name, finding)` for every line that matched a rule.
    pub matches: Vec<(String, Finding)>,
}

/// Runs every rule (including the emulation-only ones) over logs of steps that
/// succeeded, which must match nothing. The end-to-end suite feeds it the output of its
/// successful builds; the unit tests feed it a corpus of real build logs.
pub fn false_positives<'a>(
    logs: impl IntoIterator<Item = (String, &'a str)>,
) -> FalsePositiveReport {
    let mut report = FalsePositiveReport::default();
    for (name, text) in logs {
        report.logs += 1;
        report.bytes += text.len();
        report.lines += text
            .split(['\n', '\r'])
            .filter(|l| !l.trim().is_empty())
            .count();
        for f in scan(text, true) {
            report.matches.push((name.clone(), f));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Severity;
    use crate::diagnose::catalog::Detector;

    #[test]
    fn every_signature_compiles_and_is_tried_in_tier_order() {
        let rules = rules();
        let total: usize = CATALOG.iter().map(|e| e.signatures.len()).sum();
        assert_eq!(rules.len(), total);
        assert!(total >= 120, "only {total} signatures");
        for w in rules.windows(2) {
            assert!(w[0].signature.tier <= w[1].signature.tier);
        }
    }

    #[test]
    fn every_example_line_is_classified_as_its_own_cause() {
        // The example lines are real log lines (see the catalog's references); each must
        // lead to its own cause even though all other rules compete for it.
        let mut failures = Vec::new();
        for e in CATALOG {
            for s in e.signatures {
                let emulated = s.when == When::Emulated;
                let re = Regex::new(s.pattern).unwrap();
                if !re.is_match(s.example) {
                    failures.push(format!(
                        "{}: `{}` does not match its example",
                        e.cause, s.pattern
                    ));
                    continue;
                }
                match classify(s.example, emulated) {
                    Some(c) if c.cause == e.cause => {}
                    other => failures.push(format!(
                        "{}: example `{}` classified as {:?}",
                        e.cause,
                        s.example,
                        other.map(|c| c.cause)
                    )),
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn emulation_only_rules_need_emulation() {
        assert_eq!(classify("Segmentation fault (core dumped)", false), None);
        assert_eq!(
            classify("Segmentation fault (core dumped)", true).map(|c| c.cause),
            Some(Cause::QemuSegfault)
        );
    }

    #[test]
    fn an_exact_line_beats_a_generic_one_printed_earlier() {
        let log = "exec /bin/sh: exec format error\nE: setgroups 65534 failed - setgroups (22: Invalid argument)\n";
        let c = classify(log, false).unwrap();
        assert_eq!(c.cause, Cause::AptSandboxSetgroups);
        assert_eq!(c.best.line_no, 1);
        assert_eq!(c.others, [Cause::BinfmtNotRegistered]);
    }

    #[test]
    fn escape_sequences_and_carriage_returns_do_not_hide_a_line() {
        let log = "progress 10%\rprogress 90%\r\x1b[31mE: setgroups 65534 failed - setgroups (22: Invalid argument)\x1b[0m\n";
        let c = classify(log, false).unwrap();
        assert_eq!(c.cause, Cause::AptSandboxSetgroups);
        assert_eq!(
            c.evidence,
            ["E: setgroups 65534 failed - setgroups (22: Invalid argument)"]
        );
        assert_eq!(c.best.captures, ["22", "Invalid argument"]);
    }

    #[test]
    fn emulation_is_inferred_from_step_prefixes_and_the_emulator_path() {
        assert!(looks_emulated(
            "#22 [linux/arm64 run 2/4] RUN make",
            "amd64"
        ));
        assert!(!looks_emulated(
            "#22 [linux/amd64 run 2/4] RUN make",
            "amd64"
        ));
        assert!(looks_emulated(
            "process \"/dev/.buildkit_qemu_emulator /bin/sh -c make\"",
            "arm64"
        ));
        assert!(!looks_emulated("RUN make", "amd64"));
    }

    fn run_step<'a>(outcome: StepOutcome) -> Step<'a> {
        Step {
            name: Some("[build 3/7] RUN apt-get update"),
            command: Some("apt-get update"),
            file: Some("Dockerfile"),
            line: Some(12),
            end_line: Some(13),
            platform: Some("linux/arm64"),
            emulated: Some(false),
            ..Step::new(outcome)
        }
    }

    #[test]
    fn a_successful_step_is_never_matched() {
        let out = "E: setgroups 65534 failed - setgroups (22: Invalid argument)\n";
        assert_eq!(diagnose_step(&run_step(StepOutcome::Succeeded), out), None);
    }

    #[test]
    fn a_failed_step_with_a_known_signature_names_the_cause_and_the_line() {
        let out = "Reading package lists...\nE: setgroups 65534 failed - setgroups (22: Invalid argument)\nE: setegid 65534 failed - setegid (22: Invalid argument)\n";
        let d = diagnose_step(
            &run_step(StepOutcome::Failed {
                exit_code: Some(100),
                signal: None,
            }),
            out,
        )
        .unwrap();
        assert_eq!(d.id, "apt-sandbox-setgroups");
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(
            (d.file.as_deref(), d.line, d.end_line),
            (Some("Dockerfile"), Some(12), Some(13))
        );
        assert_eq!(d.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(
            d.message,
            "step `[build 3/7] RUN apt-get update` on `linux/arm64` exited with code 100; its output shows: `E: setgroups 65534 failed - setgroups (22: Invalid argument)`"
        );
        assert_eq!(d.evidence.len(), 2);
    }

    #[test]
    fn an_ordinary_failure_is_run_failed_with_the_last_lines() {
        let mut out: String = (1..=30)
            .map(|i| ["line ", &i.to_string(), "\n"].concat())
            .collect();
        out.push_str("make: *** [Makefile:3: all] Error 2\n");
        let d = diagnose_step(
            &run_step(StepOutcome::Failed {
                exit_code: Some(2),
                signal: None,
            }),
            &out,
        )
        .unwrap();
        assert_eq!(d.id, "run-failed");
        assert_eq!(d.evidence.len(), TAIL_LINES);
        assert_eq!(
            d.evidence.last().map(String::as_str),
            Some("make: *** [Makefile:3: all] Error 2")
        );
        assert_eq!(d.evidence[0], "line 22");
    }

    #[test]
    fn an_emulated_process_killed_by_a_signal_is_an_emulator_crash() {
        let step = Step {
            emulated: Some(true),
            ..run_step(StepOutcome::Failed {
                exit_code: Some(139),
                signal: None,
            })
        };
        let d = diagnose_step(&step, "Setting up libc-bin (2.36-9) ...\n").unwrap();
        assert_eq!(d.id, "qemu-segfault");
        let node = Step {
            command: Some("npm ci"),
            emulated: Some(true),
            ..run_step(StepOutcome::Failed {
                exit_code: None,
                signal: Some(4),
            })
        };
        assert_eq!(
            diagnose_step(&node, "").unwrap().id,
            "qemu-node-js-hang-or-sigill"
        );
        // The same exit code natively is an ordinary failure.
        let native = run_step(StepOutcome::Failed {
            exit_code: Some(139),
            signal: None,
        });
        assert_eq!(diagnose_step(&native, "").unwrap().id, "run-failed");
    }

    #[test]
    fn timeouts_and_suspicious_steps() {
        let d = diagnose_step(&run_step(StepOutcome::TimedOut), "waiting...\n").unwrap();
        assert_eq!(d.id, "step-timed-out");
        assert_eq!(d.evidence, ["waiting..."]);
        assert_eq!(
            diagnose_step(&run_step(StepOutcome::Suspicious), "all good\n"),
            None
        );
        let d = diagnose_step(
            &run_step(StepOutcome::Suspicious),
            "Error: listen EADDRINUSE: address already in use :::3000\n",
        )
        .unwrap();
        assert_eq!(
            (d.id.as_str(), d.severity),
            ("host-netns-port-collision", Severity::Warning)
        );
    }
    /// A fixture log: `%% key: value` header lines, then the step's output.
    struct Fixture {
        name: String,
        outcome: StepOutcome,
        emulated: Option<bool>,
        source: String,
        body: String,
    }

    fn fixtures(dir: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/diagnose/fixtures")
            .join(dir);
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    fn parse_fixture(name: &str, text: &str) -> Fixture {
        let mut f = Fixture {
            name: name.to_owned(),
            outcome: StepOutcome::Failed {
                exit_code: Some(1),
                signal: None,
            },
            emulated: None,
            source: String::new(),
            body: String::new(),
        };
        for line in text.lines() {
            if let Some(h) = line.strip_prefix("%% ") {
                let (k, v) = h.split_once(": ").expect("`%% key: value`");
                match k {
                    "source" => f.source = v.to_owned(),
                    "emulated" => f.emulated = Some(v == "true"),
                    "outcome" => {
                        f.outcome = match v.split_once(' ') {
                            Some(("failed", code)) => StepOutcome::Failed {
                                exit_code: Some(code.parse().unwrap()),
                                signal: None,
                            },
                            _ if v == "timeout" => StepOutcome::TimedOut,
                            _ => panic!("{name}: unknown outcome `{v}`"),
                        }
                    }
                    _ => panic!("{name}: unknown header `{k}`"),
                }
            } else {
                f.body.push_str(line);
                f.body.push('\n');
            }
        }
        f
    }

    #[test]
    fn every_cause_has_a_fixture_log_that_is_classified_as_that_cause() {
        let logs = fixtures("logs");
        let mut failures = Vec::new();
        for cause in Cause::ALL {
            let id = cause.id();
            let detectors = cause.entry().detectors;
            if !detectors.contains(&Detector::Log) && !detectors.contains(&Detector::Behaviour) {
                continue; // probed or classified at the source only: nothing in a log
            }
            let mine: Vec<&(String, String)> = logs
                .iter()
                .filter(|(n, _)| n == id || n.strip_prefix(id).is_some_and(|r| r.starts_with('.')))
                .collect();
            if mine.is_empty() {
                failures.push(format!("{id}: no fixture in fixtures/logs/"));
            }
            for (name, text) in mine {
                let f = parse_fixture(name, text);
                assert!(!f.source.is_empty(), "{name}: no `%% source:`");
                let step = Step {
                    name: Some("[build 2/4] RUN make"),
                    file: Some("Dockerfile"),
                    line: Some(7),
                    emulated: f.emulated,
                    ..Step::new(f.outcome)
                };
                match diagnose_step(&step, &f.body) {
                    Some(d) if d.id == id => {
                        assert_eq!(d.line, Some(7));
                        assert!(!d.evidence.is_empty(), "{name}: no evidence");
                    }
                    other => failures.push(format!(
                        "{}: diagnosed as {:?}",
                        f.name,
                        other.map(|d| d.id)
                    )),
                }
            }
        }
        for (name, _) in &logs {
            let stem = name.split('.').next().unwrap();
            if Cause::from_id(stem).is_none() {
                failures.push(format!("{name}: names no cause"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn successful_build_logs_match_no_signature() {
        let corpus = fixtures("ok");
        assert!(
            corpus.len() >= 8,
            "the corpus shrank to {} logs",
            corpus.len()
        );
        let started = std::time::Instant::now();
        let report = false_positives(corpus.iter().map(|(n, t)| (n.clone(), t.as_str())));
        let took = started.elapsed();
        // A measurement, printed (`--success-output immediate` shows it), not a timed assertion.
        eprintln!(
            "false positives: {} matches over {} logs, {} lines, {} bytes ({} rules, {:?})",
            report.matches.len(),
            report.logs,
            report.lines,
            report.bytes,
            rules().len(),
            took
        );
        let shown: Vec<String> = report
            .matches
            .iter()
            .map(|(log, f)| format!("{log}:{}: {} <- `{}`", f.line_no + 1, f.cause, f.line))
            .collect();
        assert!(
            shown.is_empty(),
            "signatures matched successful output:\n{}",
            shown.join("\n")
        );
        assert!(report.lines > 1000);
    }
}

//! The POSIX `sh` scripts a job runs: one per step, plus the environment file they source.
//!
//! A step script marks that it started, records its exit status when it ends, sources the
//! job's variables, enters the project directory, and runs each command of the step after
//! echoing it (`$ command`, green, as GitLab shows it), stopping at the first failing
//! command (`set -e`, and `pipefail` where the shell has it). The marker and status files
//! let the runner tell "the script exited 4" from "`rbuild run` failed with 4 before the
//! script ever started" (an image pull failure). Pure text generation; no I/O here.

use std::fmt::Write as _;
use std::path::Path;

/// Single-quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The environment file: one `export KEY='value'` per variable.
pub fn env_file(vars: &[(String, String)]) -> String {
    let mut out = String::from("# Variables of this CI job, written by rbuild-runner.\n");
    for (k, v) in vars {
        let _ = writeln!(out, "export {k}={}", quote(v));
    }
    out
}

/// What one step script needs (all paths as the script sees them).
#[derive(Debug, Clone)]
pub struct StepScript<'a> {
    pub env_file: &'a Path,
    pub workdir: &'a Path,
    pub started_marker: &'a Path,
    pub status_file: &'a Path,
    /// Variables set for this step only (`CI_JOB_STATUS` for `after_script`).
    pub extra: &'a [(String, String)],
    pub commands: &'a [String],
}

/// The text of a step script.
pub fn render(s: &StepScript<'_>) -> String {
    let mut out = String::new();
    out.push_str("# One step of a CI job, written by rbuild-runner.\n");
    let _ = writeln!(out, ": > {}", quote_path(s.started_marker));
    let _ = writeln!(out, "rbuild_runner_status={}", quote_path(s.status_file));
    out.push_str("trap 'echo \"$?\" > \"$rbuild_runner_status\"' EXIT\n");
    let _ = writeln!(out, ". {}", quote_path(s.env_file));
    for (k, v) in s.extra {
        let _ = writeln!(out, "export {k}={}", quote(v));
    }
    let _ = writeln!(out, "cd {} || exit 1", quote_path(s.workdir));
    out.push_str("set -e\n");
    out.push_str("if (set -o pipefail) 2>/dev/null; then set -o pipefail; fi\n");
    for cmd in s.commands {
        let trimmed = cmd.trim_end_matches('\n');
        if trimmed.trim().is_empty() {
            continue;
        }
        let shown = match trimmed.split_once('\n') {
            Some((first, _)) => format!("$ {first} # collapsed multi-line command"),
            None => format!("$ {trimmed}"),
        };
        let _ = writeln!(out, "printf '\\033[32;1m%s\\033[0;m\\n' {}", quote(&shown));
        out.push_str(trimmed);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoting_survives_the_shell() {
        for s in [
            "plain",
            "it's",
            "a'b'c",
            "$HOME `x` \"y\" \\z",
            "multi\nline",
            "",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn a_step_echoes_commands_stops_at_the_first_failure_and_records_its_status() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(
            p("env"),
            env_file(&[("GREETING".to_owned(), "it's me".to_owned())]),
        )
        .unwrap();
        let commands = vec![
            "echo \"$GREETING\" in \"$(basename \"$PWD\")\"".to_owned(),
            "echo one\necho two".to_owned(),
            "false | true".to_owned(),
            "exit 7".to_owned(),
            "echo never".to_owned(),
        ];
        let text = render(&StepScript {
            env_file: &p("env"),
            workdir: d.path(),
            started_marker: &p("started"),
            status_file: &p("status"),
            extra: &[("CI_JOB_STATUS".to_owned(), "success".to_owned())],
            commands: &commands,
        });
        std::fs::write(p("s.sh"), &text).unwrap();
        let out = Command::new("sh").arg(p("s.sh")).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(p("started").exists());
        // `false | true` fails where the shell has pipefail (bash, busybox), not in dash.
        let pipefail = Command::new("sh")
            .args(["-c", "set -o pipefail"])
            .status()
            .unwrap()
            .success();
        let expected = if pipefail { 1 } else { 7 };
        assert_eq!(
            std::fs::read_to_string(p("status")).unwrap().trim(),
            expected.to_string(),
            "{stdout}"
        );
        assert_eq!(out.status.code(), Some(expected));
        let name = d.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(stdout.contains(&format!("it's me in {name}\n")), "{stdout}");
        assert!(
            stdout.contains("\x1b[32;1m$ echo one # collapsed multi-line command\x1b[0;m\n"),
            "{stdout}"
        );
        assert!(stdout.contains("one\ntwo\n"), "{stdout}");
        assert!(!stdout.contains("never"), "{stdout}");
    }
}

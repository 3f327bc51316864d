//! Live probes: try, in a throw-away user namespace, what a build will do.
//!
//! Each probe runs `unshare(1)` from util-linux as a child process with a time limit, so
//! rbuild itself creates no namespace here (only `sandbox/` does, see `ARCHITECTURE.md`).
//! The namespaces die with the child.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long one probe may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// What a probe did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub ok: bool,
    /// The command, for the report.
    pub command: String,
    /// Its output (stdout, then stderr), trimmed.
    pub output: String,
}

/// Runs `program args...` with a time limit; a program that cannot start is a failed
/// outcome naming why.
pub fn run(program: &Path, args: &[&str]) -> Outcome {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/")
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                ok: false,
                command,
                output: format!("cannot start `{}`: {e}", program.display()),
            };
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    let output = output.trim().to_owned();
    match status {
        Some(s) => Outcome {
            ok: s.success(),
            command,
            output,
        },
        None => Outcome {
            ok: false,
            command,
            output: format!("timed out after {}s; {output}", TIMEOUT.as_secs()),
        },
    }
}

/// The live probes, each `None` when it could not be attempted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    /// `unshare --user --map-root-user true`: an unprivileged user namespace.
    pub userns: Option<Outcome>,
    /// The full subordinate range through `newuidmap`/`newgidmap` (`--map-auto`); its
    /// output holds `uid_map` then `gid_map`.
    pub mapped: Option<Outcome>,
    /// A fresh procfs in new user + PID namespaces.
    pub proc: Option<Outcome>,
    /// An overlay mount with `userxattr` in the state directory.
    pub overlay: Option<Outcome>,
    /// A private binfmt_misc with an `F` handler that runs (Linux >= 6.7).
    pub binfmt: Option<Outcome>,
}

/// Finds `unshare` on `PATH` (or in `/usr/bin`).
pub fn find_unshare() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("unshare"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        ["/usr/bin/unshare", "/bin/unshare"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// Runs every live probe with `unshare`, using `scratch` (a fresh directory on the state
/// directory's file system, or `None`) for the mount probes.
pub fn probe_all(unshare: &Path, scratch: Option<&Path>, want_mapped: bool) -> Live {
    let userns = run(unshare, &["--user", "--map-root-user", "true"]);
    let mut live = Live {
        userns: Some(userns.clone()),
        ..Live::default()
    };
    if !userns.ok {
        return live;
    }
    if want_mapped {
        live.mapped = Some(run(
            unshare,
            &[
                "--user",
                "--map-auto",
                "--map-root-user",
                "cat",
                "/proc/self/uid_map",
                "/proc/self/gid_map",
            ],
        ));
    }
    live.proc = Some(run(
        unshare,
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "true",
        ],
    ));
    if let Some(dir) = scratch {
        live.overlay = Some(overlay(unshare, dir));
        live.binfmt = Some(binfmt(unshare, dir));
    }
    live
}

fn overlay(unshare: &Path, dir: &Path) -> Outcome {
    let d = dir.to_string_lossy();
    if d.contains([',', ':', '\n']) {
        return Outcome {
            ok: false,
            command: String::new(),
            output: format!("cannot probe overlay: the path `{d}` contains `,` or `:`"),
        };
    }
    for sub in ["l", "u", "w", "m"] {
        if let Err(e) = std::fs::create_dir_all(dir.join(sub)) {
            return Outcome {
                ok: false,
                command: String::new(),
                output: format!("cannot create `{}`: {e}", dir.join(sub).display()),
            };
        }
    }
    run(
        unshare,
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t overlay overlay -o \"lowerdir=$1/l,upperdir=$1/u,workdir=$1/w,userxattr\" \"$1/m\" && echo probe > \"$1/m/probe\" && echo mounted",
            "sh",
            &d,
        ],
    )
}

fn binfmt(unshare: &Path, dir: &Path) -> Outcome {
    let d = dir.to_string_lossy();
    let interpreter = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("/bin/true");
    let target = dir.join("probe.rbprobe");
    // Not an ELF and no `#!`: only a binfmt_misc handler can run it.
    let prepared = std::fs::create_dir_all(dir.join("binfmt"))
        .and_then(|()| std::fs::write(&target, b"rbuild binfmt probe\n"))
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        });
    if let Err(e) = prepared {
        return Outcome {
            ok: false,
            command: String::new(),
            output: format!("cannot prepare the binfmt probe in `{d}`: {e}"),
        };
    }
    run(
        unshare,
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t binfmt_misc binfmt_misc \"$1/binfmt\" && echo \":rbuild-probe:E::rbprobe::$2:F\" > \"$1/binfmt/register\" && \"$1/probe.rbprobe\" && echo ran",
            "sh",
            &d,
            interpreter,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_output_status_and_unstartable_programs() {
        let ok = run(Path::new("/bin/sh"), &["-c", "echo out; echo err >&2"]);
        assert!(ok.ok);
        assert_eq!(ok.output, "out\nerr");
        assert_eq!(ok.command, "/bin/sh -c echo out; echo err >&2");
        let fail = run(Path::new("/bin/sh"), &["-c", "exit 3"]);
        assert!(!fail.ok);
        let missing = run(Path::new("/nonexistent/unshare"), &[]);
        assert!(!missing.ok);
        assert!(
            missing.output.contains("cannot start"),
            "{}",
            missing.output
        );
    }
}

//! The executor: how one step of a job is started, watched and stopped.
//!
//! The `rbuild` executor starts, for every step,
//!
//! ```text
//! rbuild run --cache-dir CACHE_DIR/.rbuild [--pull] [--platform P] --network host|none \
//!     --diagnostics-file SLOT/<project>.tmp/diagnostics/rbuild-run-<step>.json --volume SLOT:/builds --volume CACHE:/cache --volume NESTED_RBUILD:/usr/local/bin/rbuild:ro \
//!     IMAGE -- sh /builds/<project>.tmp/<step>.sh
//! ```
//!
//! as a child process in its own process group: rbuild pulls the image (into the runner's
//! own image store under its cache directory), creates a fresh unprivileged sandbox and
//! runs the script in it; the sandbox dies with that process. The `rbuild` binary mounted
//! at `/usr/local/bin/rbuild` lets the script run nested builds; it runs inside the job's
//! image, so it should be statically linked (a dynamically linked one needs a compatible
//! C library in the image, and the job log says so).
//! This crate never creates namespaces (`#![forbid(unsafe_code)]`, no `nix`); stopping a
//! step is a signal to the child's process group.
//!
//! The `unsandboxed-test-shell` executor runs `sh SCRIPT` on the host as the runner's own
//! user with host paths and no image. Only this module's unit tests use it (process-group
//! handling without a sandbox); the end-to-end tests run every job through `rbuild run`.
//! Configuration refuses it unless `RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR=1`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{ExecutorConfig, ExecutorKind};
use crate::log::JobLog;

/// Where the job's slot directory (sources, scripts) is mounted in the sandbox.
pub const BUILDS_INSIDE: &str = "/builds";
/// Where the project's persistent cache is mounted in the sandbox.
pub const CACHE_INSIDE: &str = "/cache";
/// The `rbuild run` flag that bind-mounts a host directory (`HOST:CONTAINER`).
pub const VOLUME_FLAG: &str = "--volume";
/// Where the nested `rbuild` binary is mounted in the sandbox (on every image's PATH).
pub const NESTED_RBUILD_INSIDE: &str = "/usr/local/bin/rbuild";
/// The runner's image store (`rbuild run --cache-dir`), under the configured cache
/// directory; instance names cannot start with a dot, so it never meets a job's cache.
pub const IMAGE_STORE: &str = ".rbuild";

/// The host and sandbox paths of one job.
#[derive(Debug, Clone)]
pub struct Layout {
    pub slot_host: PathBuf,
    pub slot_inside: PathBuf,
    pub cache_host: PathBuf,
    pub cache_inside: PathBuf,
}

impl Layout {
    /// The sandbox path of a host path under the slot or cache directory.
    pub fn inside(&self, host: &Path) -> PathBuf {
        if let Ok(rest) = host.strip_prefix(&self.slot_host) {
            return self.slot_inside.join(rest);
        }
        if let Ok(rest) = host.strip_prefix(&self.cache_host) {
            return self.cache_inside.join(rest);
        }
        host.to_owned()
    }
}

/// What one step runs in.
#[derive(Debug, Clone)]
pub struct StepSpec<'a> {
    pub image: &'a str,
    pub platform: Option<&'a str>,
    /// Host path of the generated script.
    pub script: &'a Path,
    /// Extra environment of the launched process (not of the script: the script reads
    /// its variables from a file it sources).
    pub env: Vec<(String, OsString)>,
    /// Look the image up at its registry even when the store has it (`pull_policy:
    /// always`, GitLab's default).
    pub pull: bool,
    /// Host path where `rbuild run` writes its diagnostics (`--diagnostics-file`): why the
    /// sandbox did not start, when it did not (an image pull failure, by catalog id).
    pub diagnostics: &'a Path,
}

/// The configured executor.
#[derive(Debug, Clone)]
pub struct Executor {
    pub config: ExecutorConfig,
    /// `rbuild run --cache-dir`: the image store and sandbox state of job sandboxes.
    pub image_store: PathBuf,
    /// Whether the nested `rbuild` needs a dynamic loader (`PT_INTERP`), i.e. a C library
    /// in the job's image.
    pub nested_is_dynamic: bool,
}

/// Why a step was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// GitLab asked for a graceful cancel: SIGTERM, then SIGKILL after the grace period.
    Cancel,
    /// Stop at once (the job was canceled hard, or the daemon's drain deadline passed).
    Abort,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    Exited(ExitStatus),
    TimedOut,
    Interrupted(Interrupt),
}

impl Executor {
    /// The executor of `config`; `cache_dir` is the runner's cache directory.
    pub fn new(config: ExecutorConfig, cache_dir: &Path) -> Self {
        let nested_is_dynamic = config.kind == ExecutorKind::Rbuild
            && std::fs::read(&config.nested_rbuild)
                .ok()
                .and_then(|elf| elf_interpreter(&elf))
                .is_some_and(|has| has);
        Executor {
            config,
            image_store: cache_dir.join(IMAGE_STORE),
            nested_is_dynamic,
        }
    }

    pub fn kind(&self) -> ExecutorKind {
        self.config.kind
    }

    /// The layout of a job in `slot` (host) with its cache in `cache` (host).
    pub fn layout(&self, slot: &Path, cache: &Path) -> Layout {
        match self.config.kind {
            ExecutorKind::Rbuild => Layout {
                slot_host: slot.to_owned(),
                slot_inside: PathBuf::from(BUILDS_INSIDE),
                cache_host: cache.to_owned(),
                cache_inside: PathBuf::from(CACHE_INSIDE),
            },
            ExecutorKind::UnsandboxedTestShell => Layout {
                slot_host: slot.to_owned(),
                slot_inside: slot.to_owned(),
                cache_host: cache.to_owned(),
                cache_inside: cache.to_owned(),
            },
        }
    }

    /// The program and arguments of a step (what the job log shows, without env).
    pub fn argv(&self, layout: &Layout, step: &StepSpec<'_>) -> Vec<OsString> {
        let script = layout.inside(step.script);
        match self.config.kind {
            ExecutorKind::Rbuild => {
                let mut argv: Vec<OsString> = vec![
                    self.config.rbuild.clone().into(),
                    "run".into(),
                    "--cache-dir".into(),
                    self.image_store.clone().into(),
                ];
                if step.pull {
                    argv.push("--pull".into());
                }
                if let Some(p) = step.platform {
                    argv.extend(["--platform".into(), p.into()]);
                }
                argv.extend([
                    "--network".into(),
                    self.config.network.name().into(),
                    "--diagnostics-file".into(),
                    step.diagnostics.into(),
                    VOLUME_FLAG.into(),
                    volume(&layout.slot_host, &layout.slot_inside),
                    VOLUME_FLAG.into(),
                    volume(&layout.cache_host, &layout.cache_inside),
                    VOLUME_FLAG.into(),
                    {
                        let mut v =
                            volume(&self.config.nested_rbuild, Path::new(NESTED_RBUILD_INSIDE));
                        v.push(":ro");
                        v
                    },
                    step.image.into(),
                    "--".into(),
                    "sh".into(),
                    script.into(),
                ]);
                argv
            }
            ExecutorKind::UnsandboxedTestShell => vec!["sh".into(), script.into()],
        }
    }

    /// The command that runs a step.
    pub fn command(&self, layout: &Layout, step: &StepSpec<'_>) -> Command {
        let argv = self.argv(layout, step);
        let mut cmd = Command::new(&argv[0]);
        scrub(&mut cmd);
        cmd.args(&argv[1..])
            .envs(step.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&layout.slot_host);
        cmd
    }
}

/// Removes the daemon's own `RBUILD_RUNNER_*` variables (configuration overrides, runner
/// tokens) from a child's environment: jobs never see them.
pub fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy()
            .starts_with(crate::envvars::CONFIG_PREFIX)
        {
            cmd.env_remove(k);
        }
    }
}

fn volume(host: &Path, inside: &Path) -> OsString {
    let mut v = host.as_os_str().to_owned();
    v.push(":");
    v.push(inside);
    v
}

/// Whether an ELF file asks for a program interpreter (a `PT_INTERP` program header: it
/// is dynamically linked); `None` when it is not a 64-bit little-endian ELF file.
fn elf_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    // Magic, ELFCLASS64, ELFDATA2LSB.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    let mut any = false;
    for i in 0..phnum {
        any |= u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP;
    }
    Some(any)
}

/// Signals a process group; a group that is gone already is fine.
pub fn kill_group(pgid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pgid, error = %e, "cannot signal a job's process group");
    }
}

/// Runs `cmd` to its end (or until the deadline or an interrupt), streaming its stdout
/// and stderr into `log`. `spawned` gets the process (group) id as soon as it exists.
/// Whatever ends the step, everything left in its process group is killed.
pub async fn run_step(
    mut cmd: Command,
    log: &Arc<JobLog>,
    deadline: Instant,
    interrupts: &mut watch::Receiver<Option<Interrupt>>,
    kill_grace: Duration,
    spawned: impl FnOnce(u32),
) -> std::io::Result<StepEnd> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pgid = child.id().unwrap_or_default();
    spawned(pgid);
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        let guard = log.stream();
        let log = log.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.output(&buf[..n]);
            }
        })
    })
    .collect();

    let pending_interrupt = *interrupts.borrow();
    let end = if let Some(i) = pending_interrupt {
        StepEnd::Interrupted(i)
    } else {
        tokio::select! {
            status = child.wait() => StepEnd::Exited(status?),
            () = tokio::time::sleep_until(deadline) => StepEnd::TimedOut,
            i = wait_interrupt(interrupts) => StepEnd::Interrupted(i),
        }
    };
    let end = match end {
        StepEnd::Exited(_) => end,
        StepEnd::Interrupted(Interrupt::Abort) => {
            kill_group(pgid, rustix::process::Signal::KILL);
            let _ = child.wait().await;
            end
        }
        StepEnd::TimedOut | StepEnd::Interrupted(Interrupt::Cancel) => {
            kill_group(pgid, rustix::process::Signal::TERM);
            if tokio::time::timeout(kill_grace, child.wait())
                .await
                .is_err()
            {
                kill_group(pgid, rustix::process::Signal::KILL);
                let _ = child.wait().await;
            }
            end
        }
    };
    // Nothing outlives its step: background processes the script left behind go too.
    kill_group(pgid, rustix::process::Signal::KILL);
    for r in readers {
        // A process that left the group (setsid) may hold the pipe open; do not wait
        // for it forever.
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    Ok(end)
}

async fn wait_interrupt(rx: &mut watch::Receiver<Option<Interrupt>>) -> Interrupt {
    loop {
        if let Some(i) = *rx.borrow_and_update() {
            return i;
        }
        if rx.changed().await.is_err() {
            // The sender is gone; no interrupt can come any more.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;

    fn exec(kind: ExecutorKind) -> Executor {
        Executor::new(
            ExecutorConfig {
                kind,
                rbuild: PathBuf::from("/usr/bin/rbuild"),
                nested_rbuild: PathBuf::from("/opt/rbuild-static/rbuild"),
                network: Network::Host,
                kill_grace: Duration::from_secs(1),
            },
            Path::new("/var/cache/r"),
        )
    }

    #[test]
    fn rbuild_executor_mounts_the_slot_and_runs_the_script_inside() {
        let e = exec(ExecutorKind::Rbuild);
        let layout = e.layout(
            Path::new("/var/lib/r/builds/main/0"),
            Path::new("/var/lib/r/cache/main/g/p"),
        );
        let script = PathBuf::from("/var/lib/r/builds/main/0/g/p.tmp/step_script.sh");
        let argv = e.argv(
            &layout,
            &StepSpec {
                image: "registry.example/img:1",
                platform: Some("linux/arm64"),
                script: &script,
                env: vec![],
                pull: true,
                diagnostics: Path::new(
                    "/var/lib/r/builds/main/0/g/p.tmp/step_script.rbuild-run.json",
                ),
            },
        );
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv.join(" "),
            "/usr/bin/rbuild run --cache-dir /var/cache/r/.rbuild --pull --platform linux/arm64 --network host --diagnostics-file /var/lib/r/builds/main/0/g/p.tmp/step_script.rbuild-run.json --volume /var/lib/r/builds/main/0:/builds --volume /var/lib/r/cache/main/g/p:/cache --volume /opt/rbuild-static/rbuild:/usr/local/bin/rbuild:ro registry.example/img:1 -- sh /builds/g/p.tmp/step_script.sh"
        );
    }

    #[test]
    fn a_dynamically_linked_binary_is_told_from_a_static_one() {
        // This test binary is dynamically linked (cargo's default on linux-gnu).
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(elf_interpreter(&me), Some(true));
        // The same header with its program headers' types cleared: no PT_INTERP.
        let mut stat = me.clone();
        let phoff =
            usize::try_from(u64::from_le_bytes(stat[0x20..0x28].try_into().unwrap())).unwrap();
        let size = usize::from(u16::from_le_bytes(stat[0x36..0x38].try_into().unwrap()));
        let n = usize::from(u16::from_le_bytes(stat[0x38..0x3a].try_into().unwrap()));
        for i in 0..n {
            let at = phoff + i * size;
            stat[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        }
        assert_eq!(elf_interpreter(&stat), Some(false));
        assert_eq!(elf_interpreter(b"#!/bin/sh\necho\n"), None);
        assert_eq!(elf_interpreter(&me[..0x30]), None);
    }

    #[test]
    fn test_shell_uses_host_paths() {
        let e = exec(ExecutorKind::UnsandboxedTestShell);
        let layout = e.layout(Path::new("/s/0"), Path::new("/c"));
        let script = PathBuf::from("/s/0/p.tmp/step_script.sh");
        let argv = e.argv(
            &layout,
            &StepSpec {
                image: "x",
                platform: None,
                script: &script,
                env: vec![],
                pull: false,
                diagnostics: Path::new("/s/0/p.tmp/d.json"),
            },
        );
        assert_eq!(
            argv,
            [
                OsString::from("sh"),
                OsString::from("/s/0/p.tmp/step_script.sh")
            ]
        );
        assert_eq!(layout.inside(Path::new("/s/0/p")), PathBuf::from("/s/0/p"));
    }

    #[tokio::test]
    async fn a_step_streams_output_and_its_leftovers_are_killed() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("s.sh");
        let pidfile = d.path().join("bg.pid");
        std::fs::write(
            &script,
            format!(
                "sleep 300 & echo $! > {}\necho out; echo err >&2; exit 3\n",
                pidfile.display()
            ),
        )
        .unwrap();
        let e = exec(ExecutorKind::UnsandboxedTestShell);
        let layout = e.layout(d.path(), d.path());
        let log = JobLog::new(
            crate::log::mask::Masker::new(&[] as &[&str], &[] as &[&str]),
            1 << 20,
            None,
        )
        .unwrap();
        let (_tx, mut rx) = watch::channel(None);
        let cmd = e.command(
            &layout,
            &StepSpec {
                image: "",
                platform: None,
                script: &script,
                env: vec![],
                pull: false,
                diagnostics: Path::new("/s/0/p.tmp/d.json"),
            },
        );
        let end = run_step(
            cmd,
            &log,
            Instant::now() + Duration::from_secs(30),
            &mut rx,
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap();
        let StepEnd::Exited(status) = end else {
            panic!("{end:?}")
        };
        assert_eq!(status.code(), Some(3));
        let text = String::from_utf8(log.contents()).unwrap();
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
        let bg = std::fs::read_to_string(&pidfile).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", bg.trim())).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "background process survived: {stat}"
        );
    }

    #[tokio::test]
    async fn timeout_and_interrupt_stop_the_step() {
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("s.sh");
        std::fs::write(&script, "echo start; sleep 300\n").unwrap();
        let e = exec(ExecutorKind::UnsandboxedTestShell);
        let layout = e.layout(d.path(), d.path());
        let log = JobLog::new(
            crate::log::mask::Masker::new(&[] as &[&str], &[] as &[&str]),
            1 << 20,
            None,
        )
        .unwrap();
        let (tx, mut rx) = watch::channel(None);
        let spec = StepSpec {
            image: "",
            platform: None,
            script: &script,
            env: vec![],
            pull: false,
            diagnostics: Path::new("/s/0/p.tmp/d.json"),
        };
        let t = std::time::Instant::now();
        let end = run_step(
            e.command(&layout, &spec),
            &log,
            Instant::now() + Duration::from_millis(300),
            &mut rx,
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(end, StepEnd::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(Some(Interrupt::Abort)).unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let end = run_step(
            e.command(&layout, &spec),
            &log,
            Instant::now() + Duration::from_mins(1),
            &mut rx,
            Duration::from_secs(1),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(end, StepEnd::Interrupted(Interrupt::Abort));
    }
}

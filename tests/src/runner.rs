//! Running `rbuild-runner` in end-to-end tests: a configuration pointing at a
//! [`FakeGitlab`](crate::gitlab::FakeGitlab), the daemon started as the unprivileged test
//! user, and helpers to signal and wait for it.
//!
//! Jobs run in the real sandbox: the `rbuild` executor starts the workspace's `rbuild run`
//! with busybox (pushed to a real registry on 127.0.0.1) as the default job image. The
//! `rbuild` mounted into job sandboxes for nested builds is the statically linked build
//! ([`static_rbuild`]) when there is one, since busybox has no C library; tests that run
//! nested builds require it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::gate::Missing;
use crate::gitlab::FakeGitlab;
use crate::user::TestUser;

/// The target triple the statically linked `rbuild` is built for: the host's.
pub fn static_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// How to build the statically linked `rbuild` (what `./scripts/test` runs).
pub fn static_build_command() -> String {
    format!(
        "RUSTFLAGS='-C target-feature=+crt-static' cargo build -p rbuild --bin rbuild --target {}",
        static_target()
    )
}

/// The statically linked `rbuild` (`target/<host triple>/<profile>/rbuild`),
/// reachable by the test user; a missing one is a [`Missing`] naming the command that
/// builds it. (Its age is not compared with the workspace's `rbuild`: cargo relinks each
/// only when it changed, so mtimes say nothing; `./scripts/test` builds both.)
pub fn static_rbuild() -> Result<PathBuf, Missing> {
    let hint = format!(
        "build it: `{}` (./scripts/test does this first)",
        static_build_command()
    );
    let profile = crate::bins::profile_dir()
        .ok_or_else(|| Missing::new("cannot find cargo's target directory", hint.clone()))?;
    let name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = profile
        .parent()
        .map(|t| t.join(static_target()).join(name).join("rbuild"))
        .unwrap_or_default();
    if !path.is_file() {
        return Err(Missing::new(
            format!("the statically linked `{}` is not built", path.display()),
            hint,
        ));
    }
    crate::bins::reachable(&path, "rbuild-static")
}

/// A configuration and the directories of one runner.
#[derive(Debug)]
pub struct RunnerSetup {
    pub user: &'static TestUser,
    pub binary: PathBuf,
    /// Owned by the test user; holds the config, token, state, builds and logs.
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub builds_dir: PathBuf,
    /// The registry serving the default job image (busybox).
    pub registry: crate::Registry,
    /// The default job image, `127.0.0.1:PORT/busybox:latest`.
    pub image: String,
    /// The `rbuild` mounted into job sandboxes (statically linked when there is one).
    pub nested_rbuild: PathBuf,
}

impl RunnerSetup {
    /// A runner for `gitlab` with `concurrency` jobs at once and `extra` TOML appended to
    /// the top level (before the tables).
    pub fn new(
        gitlab: &FakeGitlab,
        concurrency: usize,
        extra: &str,
    ) -> Result<RunnerSetup, Missing> {
        let user = TestUser::get()?;
        let binary = crate::bins::binary("rbuild-runner")?;
        crate::tool("/usr/bin/git", "git")?;
        let dir = user.tempdir().map_err(|e| {
            Missing::new(
                format!("cannot create a directory for the test user: {e}"),
                "check `RBUILD_E2E_TMP`",
            )
        })?;
        let token = dir.path().join("gitlab.token");
        fs::write(&token, format!("{}\n", gitlab.runner_token())).expect("writing the token file");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600))
            .expect("chmod 600 the token");
        user.give(&token)
            .expect("giving the token to the test user");
        let state_dir = dir.path().join("state");
        let builds_dir = dir.path().join("builds");
        let config = dir.path().join("runner.toml");
        let env = crate::Env::get()?;
        crate::userns(user)?;
        let (registry, image) = crate::registry_with_busybox()?;
        let nested_rbuild = static_rbuild().unwrap_or_else(|_| env.rbuild.clone());
        let executor = format!(
            "kind = \"rbuild\"\nrbuild = \"{}\"\nnested_rbuild = \"{}\"",
            env.rbuild.display(),
            nested_rbuild.display()
        );
        let default_image = format!("default_image = \"{image}\"\n");
        let shutdown = if extra.contains("shutdown_timeout") {
            ""
        } else {
            "shutdown_timeout = \"60s\"\n"
        };
        let text = format!(
            "state_dir = \"{}\"\nbuilds_dir = \"{}\"\n{shutdown}{extra}\n\n[executor]\n{executor}\nkill_grace = \"2s\"\n\n[[gitlab]]\nname = \"main\"\nurl = \"{}\"\ntoken_file = \"{}\"\nconcurrency = {concurrency}\ncheck_interval = \"200ms\"\n{default_image}",
            state_dir.display(),
            builds_dir.display(),
            gitlab.url(),
            token.display()
        );
        fs::write(&config, text).expect("writing the runner config");
        user.give(&config)
            .expect("giving the config to the test user");
        Ok(RunnerSetup {
            user,
            binary,
            dir,
            config,
            state_dir,
            builds_dir,
            registry,
            image,
            nested_rbuild,
        })
    }

    /// `rbuild-runner ARGS` as the test user.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.user.command(&self.binary);
        cmd.args(args)
            .env(
                "RBUILD_RUNNER_LOG",
                std::env::var("RBUILD_RUNNER_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .current_dir(self.dir.path());
        cmd
    }

    /// Starts `rbuild-runner run --config ... EXTRA` in the background.
    pub fn start(&self, extra: &[&str]) -> Daemon {
        let log = self.dir.path().join(format!("daemon-{}.log", next_log()));
        let config = self.config.to_string_lossy().into_owned();
        let mut args = vec!["run", "--config", &config];
        args.extend_from_slice(extra);
        Daemon::spawn(&mut self.command(&args), log)
    }
}

fn next_log() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A running daemon; killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (an `rbuild-runner` command line) in the background, its stderr going
    /// to `log`, stdin and stdout to `/dev/null`.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Daemon {
        let f = fs::File::create(&log).expect("a daemon log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("starting rbuild-runner");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} {}", self.pid());
    }

    /// Waits for the daemon to exit; panics with its log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        let child = self.child.as_mut().expect("a running daemon");
        loop {
            if let Some(s) = child.try_wait().expect("waiting for rbuild-runner") {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < end,
                "rbuild-runner did not exit within {timeout:?}\n--- its log\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A commit history in a repository the fake serves: returns the shas, oldest first.
/// `files` is one list of `(path, content)` per commit.
pub fn push_commits(bare: &Path, files: &[&[(&str, &str)]]) -> Vec<String> {
    let work = tempfile::tempdir().expect("a work tree");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(work.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", work.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("running git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    let mut shas = Vec::new();
    for (i, commit) in files.iter().enumerate() {
        for (path, content) in *commit {
            let p = work.path().join(path);
            fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            fs::write(p, content).expect("write");
        }
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", &format!("commit {i}")]);
        shas.push(git(&["rev-parse", "HEAD"]));
    }
    git(&["push", "-q", &bare.to_string_lossy(), "main"]);
    shas
}

//! Running `rbuild-runner` in end-to-end tests: a configuration pointing at a
//! [`FakeGitlab`](crate::gitlab::FakeGitlab), the daemon started as the unprivileged test
//! user, and helpers to signal and wait for it.
//!
//! Until `rbuild run` (the sandbox) lands, the daemon's jobs run with the
//! `unsandboxed-test-shell` executor: the job script runs with `sh` as the test user,
//! with no sandbox and no image. Switching these tests to the real sandbox is one line:
//! [`SANDBOX`] = `true` makes every runner use `kind = "rbuild"` with the workspace's
//! `rbuild` binary and a real registry holding busybox as the default job image.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::gate::Missing;
use crate::gitlab::FakeGitlab;
use crate::user::TestUser;

/// Whether jobs run in the real sandbox (`rbuild run`); `false` until it lands.
pub const SANDBOX: bool = false;

/// The executor the tests' runners use, as `[executor] kind` names it.
pub const EXECUTOR: &str = if SANDBOX {
    "rbuild"
} else {
    "unsandboxed-test-shell"
};

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
    /// With [`SANDBOX`]: the registry serving the default job image.
    pub registry: Option<crate::Registry>,
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
        let (executor, default_image, registry) = if SANDBOX {
            let env = crate::Env::get()?;
            let (registry, busybox) = crate::registry_with_busybox()?;
            (
                format!("kind = \"rbuild\"\nrbuild = \"{}\"", env.rbuild.display()),
                format!("default_image = \"{busybox}\"\n"),
                Some(registry),
            )
        } else {
            (format!("kind = \"{EXECUTOR}\""), String::new(), None)
        };
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
        })
    }

    /// `rbuild-runner ARGS` as the test user, with the test executor allowed.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.user.command(&self.binary);
        cmd.args(args)
            .env("RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR", "1")
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
        let f = fs::File::create(&log).expect("a daemon log file");
        let config = self.config.to_string_lossy().into_owned();
        let mut args = vec!["run", "--config", &config];
        args.extend_from_slice(extra);
        let child = self
            .command(&args)
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

//! Getting a job's sources: clone or fetch the job's commit with the job's refspecs and
//! depth, or nothing with `GIT_STRATEGY=none`.
//!
//! Runs the host's `git` (as gitlab-runner does) as the runner's user. The job token that
//! GitLab embeds in `repo_url` is taken out of the URL and given to git as an
//! `http.extraHeader` through `GIT_CONFIG_*` environment variables, so it is in neither
//! argv, `.git/config` nor the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::executor::{self, Interrupt, StepEnd};
use crate::log::JobLog;

/// `GIT_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Clone,
    Fetch,
    None,
}

impl Strategy {
    /// From `GIT_STRATEGY` (empty: `fetch` when GitLab allows it, else `clone`).
    pub fn parse(value: Option<&str>, allow_fetch: bool) -> Result<Strategy, String> {
        match value.map_or("", str::trim) {
            "" => Ok(if allow_fetch {
                Strategy::Fetch
            } else {
                Strategy::Clone
            }),
            "clone" => Ok(Strategy::Clone),
            "fetch" => Ok(Strategy::Fetch),
            "none" | "empty" => Ok(Strategy::None),
            other => Err(format!(
                "`GIT_STRATEGY={other}` is not a strategy; use `clone`, `fetch` or `none`"
            )),
        }
    }
}

/// What to check out.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub strategy: Strategy,
    /// As GitLab sends it (it may embed `gitlab-ci-token:<job token>@`).
    pub repo_url: &'a str,
    pub sha: &'a str,
    pub r#ref: &'a str,
    pub ref_type: &'a str,
    pub refspecs: &'a [String],
    pub depth: u32,
    pub dir: &'a Path,
}

/// Why the sources could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`git {step}` failed ({status})")]
    Git { step: String, status: String },
    #[error("cannot run `git`")]
    Spawn(#[source] std::io::Error),
    #[error("cannot prepare `{}`", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("getting the sources took longer than the job's timeout")]
    TimedOut,
    #[error("stopped")]
    Interrupted(Interrupt),
}

/// The URL without credentials, and a `Basic` authorization value for them.
pub fn split_credentials(url: &str) -> (String, Option<String>) {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    if u.username().is_empty() && u.password().is_none() {
        return (url.to_owned(), None);
    }
    let user = percent_decode(u.username());
    let pass = percent_decode(u.password().unwrap_or(""));
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    (u.to_string(), Some(format!("Basic {auth}")))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Default refspecs when GitLab sends none: the job's branch or tag.
fn default_refspecs(r#ref: &str, ref_type: &str) -> Vec<String> {
    if r#ref.is_empty() {
        return Vec::new();
    }
    if ref_type == "tag" {
        vec![format!("+refs/tags/{ref}:refs/tags/{ref}", ref = r#ref)]
    } else {
        vec![format!(
            "+refs/heads/{ref}:refs/remotes/origin/{ref}",
            ref = r#ref
        )]
    }
}

/// Gets the sources into `src.dir`.
pub async fn get_sources(
    src: &Source<'_>,
    log: &Arc<JobLog>,
    deadline: Instant,
    interrupts: &mut watch::Receiver<Option<Interrupt>>,
    kill_grace: Duration,
) -> Result<(), SourceError> {
    let dir = src.dir;
    let mkdir = |p: &Path| {
        fs_err::create_dir_all(p).map_err(|source| SourceError::Dir {
            path: p.to_owned(),
            source,
        })
    };
    if src.strategy == Strategy::None {
        mkdir(dir)?;
        log.message("Skipping Git repository setup (GIT_STRATEGY=none)");
        return Ok(());
    }
    if src.sha.is_empty() {
        return Err(SourceError::Invalid(
            "the job names no commit (`git_info.sha` is empty)".to_owned(),
        ));
    }
    let (url, auth) = split_credentials(src.repo_url);
    let git = Git {
        dir,
        auth,
        log,
        deadline,
        kill_grace,
    };
    let fresh = src.strategy == Strategy::Clone || !dir.join(".git").is_dir();
    if fresh {
        if dir.exists() {
            fs_err::remove_dir_all(dir).map_err(|source| SourceError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        mkdir(dir)?;
        git.run(&["-c", "init.defaultBranch=main", "init", "-q"], interrupts)
            .await?;
        git.run(&["remote", "add", "origin", &url], interrupts)
            .await?;
        log.message(&format!("Created fresh repository in {}", dir.display()));
    } else {
        for lock in ["index.lock", "shallow.lock", "HEAD.lock", "config.lock"] {
            let _ = fs_err::remove_file(dir.join(".git").join(lock));
        }
        git.run(&["remote", "set-url", "origin", &url], interrupts)
            .await?;
        log.message(&format!(
            "Reinitialized existing Git repository in {}",
            dir.display()
        ));
    }
    let mut refspecs: Vec<String> = src.refspecs.to_vec();
    if refspecs.is_empty() {
        refspecs = default_refspecs(src.r#ref, src.ref_type);
    }
    let depth = src.depth.to_string();
    let mut fetch: Vec<&str> = vec!["fetch", "--prune", "--no-recurse-submodules", "--quiet"];
    if src.depth > 0 {
        log.message(&format!(
            "Fetching changes with git depth set to {}...",
            src.depth
        ));
        fetch.extend(["--depth", &depth]);
    } else {
        log.message("Fetching changes...");
    }
    fetch.push("origin");
    fetch.extend(refspecs.iter().map(String::as_str));
    git.run(&fetch, interrupts).await?;
    let short = &src.sha[..src.sha.len().min(8)];
    log.message(&format!(
        "Checking out {short} as detached HEAD (ref is {})...",
        src.r#ref
    ));
    git.run(
        &[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-f",
            "-q",
            src.sha,
        ],
        interrupts,
    )
    .await?;
    if !fresh {
        git.run(&["clean", "-ffdx", "-q"], interrupts).await?;
    }
    log.message("Skipping Git submodules setup");
    Ok(())
}

struct Git<'a> {
    dir: &'a Path,
    auth: Option<String>,
    log: &'a Arc<JobLog>,
    deadline: Instant,
    kill_grace: Duration,
}

impl Git<'_> {
    async fn run(
        &self,
        args: &[&str],
        interrupts: &mut watch::Receiver<Option<Interrupt>>,
    ) -> Result<(), SourceError> {
        let mut cmd = Command::new("git");
        executor::scrub(&mut cmd);
        cmd.args(args)
            .current_dir(self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        if let Some(auth) = &self.auth {
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: {auth}"));
        }
        let end = executor::run_step(
            cmd,
            self.log,
            self.deadline,
            interrupts,
            self.kill_grace,
            |_| {},
        )
        .await
        .map_err(SourceError::Spawn)?;
        let step = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .copied()
            .unwrap_or("")
            .to_owned();
        match end {
            StepEnd::Exited(s) if s.success() => Ok(()),
            StepEnd::Exited(s) => Err(SourceError::Git {
                step,
                status: s.code().map_or_else(
                    || "killed by a signal".to_owned(),
                    |c| format!("exit code {c}"),
                ),
            }),
            StepEnd::TimedOut => Err(SourceError::TimedOut),
            StepEnd::Interrupted(i) => Err(SourceError::Interrupted(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (url, auth) =
            split_credentials("https://gitlab-ci-token:tok%40en@gitlab.example.com/g/p.git");
        assert_eq!(url, "https://gitlab.example.com/g/p.git");
        let auth = auth.unwrap();
        let b64 = auth.strip_prefix("Basic ").unwrap();
        let plain = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(plain, b"gitlab-ci-token:tok@en");
        assert_eq!(
            split_credentials("file:///srv/repo.git"),
            ("file:///srv/repo.git".to_owned(), None)
        );
    }

    #[test]
    fn strategies() {
        assert_eq!(Strategy::parse(None, true), Ok(Strategy::Fetch));
        assert_eq!(Strategy::parse(Some(""), false), Ok(Strategy::Clone));
        assert_eq!(Strategy::parse(Some("none"), true), Ok(Strategy::None));
        assert!(
            Strategy::parse(Some("rsync"), true)
                .unwrap_err()
                .contains("clone")
        );
        assert_eq!(
            default_refspecs("main", "branch"),
            ["+refs/heads/main:refs/remotes/origin/main"]
        );
        assert_eq!(
            default_refspecs("v1", "tag"),
            ["+refs/tags/v1:refs/tags/v1"]
        );
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A real repository, fetched shallow at an older commit by its sha, then fetched again.
    #[tokio::test]
    async fn clones_at_the_sha_with_depth_and_fetches_again() {
        let d = tempfile::tempdir().unwrap();
        let origin = d.path().join("origin");
        std::fs::create_dir(&origin).unwrap();
        git(&origin, &["-c", "init.defaultBranch=main", "init", "-q"]);
        git(&origin, &["config", "user.email", "t@example.invalid"]);
        git(&origin, &["config", "user.name", "t"]);
        git(
            &origin,
            &["config", "uploadpack.allowAnySHA1InWant", "true"],
        );
        let mut shas = Vec::new();
        for i in 0..3 {
            std::fs::write(origin.join("f"), format!("{i}\n")).unwrap();
            git(&origin, &["add", "f"]);
            git(&origin, &["commit", "-q", "-m", &format!("c{i}")]);
            shas.push(git(&origin, &["rev-parse", "HEAD"]));
        }
        let url = format!("file://{}", origin.display());
        let work = d.path().join("work");
        let log = JobLog::new(
            crate::log::mask::Masker::new(&[] as &[&str], &[] as &[&str]),
            1 << 20,
            None,
        )
        .unwrap();
        let (_tx, mut rx) = watch::channel(None);
        let refspecs = vec![
            format!("+{}:refs/pipelines/1", shas[1]),
            "+refs/heads/main:refs/remotes/origin/main".to_owned(),
        ];
        let src = Source {
            strategy: Strategy::Fetch,
            repo_url: &url,
            sha: &shas[1],
            r#ref: "main",
            ref_type: "branch",
            refspecs: &refspecs,
            depth: 1,
            dir: &work,
        };
        let deadline = Instant::now() + Duration::from_mins(1);
        get_sources(&src, &log, deadline, &mut rx, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(git(&work, &["rev-parse", "HEAD"]), shas[1]);
        assert_eq!(std::fs::read_to_string(work.join("f")).unwrap(), "1\n");
        assert_eq!(
            git(&work, &["rev-parse", "--is-shallow-repository"]),
            "true"
        );
        std::fs::write(work.join("junk"), "x").unwrap();
        let src = Source {
            sha: &shas[2],
            ..src
        };
        get_sources(&src, &log, deadline, &mut rx, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(git(&work, &["rev-parse", "HEAD"]), shas[2]);
        assert!(
            !work.join("junk").exists(),
            "fetch strategy cleans the worktree"
        );
        let text = String::from_utf8(log.contents()).unwrap();
        assert!(
            text.contains("Fetching changes with git depth set to 1..."),
            "{text}"
        );
        assert!(
            text.contains("Reinitialized existing Git repository"),
            "{text}"
        );

        let bad = Source {
            sha: "0000000000000000000000000000000000000000",
            strategy: Strategy::Clone,
            ..src
        };
        let err = get_sources(&bad, &log, deadline, &mut rx, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Git { .. }), "{err}");
    }
}

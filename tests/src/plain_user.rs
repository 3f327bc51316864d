//! A second unprivileged user, without any subordinate id range, for tests that provoke
//! what a missing `/etc/subuid` entry does (`subid-range-too-small`).
//!
//! Only root can create it (`useradd`, then `usermod --del-subuids/--del-subgids` for the
//! ranges `useradd` hands out by default). Changes to `/etc/subuid` and `/etc/subgid` are
//! serialised with the harness's user lock, since nextest runs tests in parallel processes.

use std::fs::{self, File};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::gate::Missing;
use crate::user::{current_uid, run_ok};

/// Name of the user without subordinate ids.
pub const NO_SUBID_USER: &str = "rbuild-nosubid";

/// An unprivileged user with no subordinate id range.
#[derive(Debug, Clone)]
pub struct PlainUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Holds the harness's lock on `/etc/subuid` and `/etc/subgid` while alive.
#[derive(Debug)]
pub struct SubidLock {
    _file: File,
}

/// Takes the lock the harness uses when it edits `/etc/subuid` and `/etc/subgid`.
pub fn lock_subids() -> std::io::Result<SubidLock> {
    let f = File::create(std::env::temp_dir().join("rbuild-e2e-user.lock"))?;
    f.lock()?;
    Ok(SubidLock { _file: f })
}

fn passwd(name: &str) -> Option<(u32, u32, PathBuf)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<&str> = line.trim_end().split(':').collect();
    (f.len() >= 7).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, PathBuf::from(f[5]))))?
}

/// Every `start-end` range of `name` or `uid` in a `/etc/subuid`-style file.
pub fn ranges(file: &str, name: &str, uid: u32) -> Vec<String> {
    let uid = uid.to_string();
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            let (start, count): (u64, u64) = (start.parse().ok()?, count.parse().ok()?);
            (owner == name || owner == uid).then(|| format!("{start}-{}", start + count - 1))
        })
        .collect()
}

/// Removes every subordinate range of the user (as root, under the lock).
pub fn remove_ranges(name: &str, uid: u32) -> Result<(), String> {
    for (file, flag) in [
        ("/etc/subuid", "--del-subuids"),
        ("/etc/subgid", "--del-subgids"),
    ] {
        for range in ranges(file, name, uid) {
            run_ok(Command::new("usermod").args([flag, &range, name]))?;
        }
    }
    Ok(())
}

impl PlainUser {
    /// The user without subordinate ids, created on first use (needs root).
    pub fn no_subids() -> Result<&'static PlainUser, Missing> {
        static USER: OnceLock<Result<PlainUser, Missing>> = OnceLock::new();
        USER.get_or_init(|| {
            let fail = |what: String| {
                Missing::new(
                    what,
                    "run the end-to-end tests as root (./scripts/test does)",
                )
            };
            if current_uid() != 0 {
                return Err(fail(format!(
                    "creating the user `{NO_SUBID_USER}` without a subordinate range needs root"
                )));
            }
            let _lock =
                lock_subids().map_err(|e| fail(format!("cannot lock the user lock file: {e}")))?;
            if passwd(NO_SUBID_USER).is_none() {
                run_ok(Command::new("useradd").args([
                    "--create-home",
                    "--shell",
                    "/bin/sh",
                    "--comment",
                    "rbuild end-to-end tests (no subordinate ids)",
                    NO_SUBID_USER,
                ]))
                .map_err(|e| fail(format!("cannot create `{NO_SUBID_USER}`: {e}")))?;
            }
            let (uid, gid, home) = passwd(NO_SUBID_USER)
                .ok_or_else(|| fail(format!("user `{NO_SUBID_USER}` vanished")))?;
            remove_ranges(NO_SUBID_USER, uid).map_err(fail)?;
            Ok(PlainUser {
                name: NO_SUBID_USER.to_owned(),
                uid,
                gid,
                home,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// A command that runs `program` as this user with a clean environment, as
    /// [`TestUser::command`](crate::TestUser::command) does.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .current_dir("/")
            .uid(self.uid)
            .gid(self.gid);
        for pass in ["CI", "RBUILD_LOG", "NO_COLOR"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        cmd
    }

    /// A fresh directory owned by this user, removed when dropped.
    pub fn tempdir(&self) -> std::io::Result<tempfile::TempDir> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-").tempdir()?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(dir.path(), Some(self.uid), Some(self.gid))?;
        Ok(dir)
    }
}

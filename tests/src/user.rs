//! The unprivileged test user: everything that claims to be rootless runs as this user.
//!
//! As root, the harness creates the user (`rbuild-test`, or `$RBUILD_E2E_USER`) when it is
//! missing, gives it a subordinate uid/gid range of at least 65536, and runs commands as it
//! with no capabilities (std's `Command::uid` drops supplementary groups and, by changing
//! the uid away from 0, every capability). As a non-root user, the current user is the test
//! user and must already have the ranges.

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::gate::Missing;

/// Name of the test user the harness creates when it runs as root.
pub const DEFAULT_USER: &str = "rbuild-test";
/// Smallest subordinate range that maps a whole container (ids 0..65535).
pub const MIN_SUBID_RANGE: u32 = 65536;

/// A contiguous range of subordinate ids from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// The unprivileged user the tests run rbuild as.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub subuid: IdRange,
    pub subgid: IdRange,
    /// `XDG_RUNTIME_DIR` of the user's commands (mode 0700, owned by the user), as a
    /// login session would have; containers tools keep auth files and locks there.
    pub runtime_dir: PathBuf,
    /// Whether the harness runs as root and switches to this user for each command.
    switch: bool,
}

/// The uid this process runs as (the owner of `/proc/self`).
pub fn current_uid() -> u32 {
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

impl TestUser {
    /// The test user, created and configured on first use when running as root.
    pub fn get() -> Result<&'static TestUser, Missing> {
        static USER: OnceLock<Result<TestUser, Missing>> = OnceLock::new();
        USER.get_or_init(|| {
            if current_uid() == 0 {
                let name =
                    std::env::var("RBUILD_E2E_USER").unwrap_or_else(|_| DEFAULT_USER.to_owned());
                ensure_user_as_root(&name)?;
                lookup(&name, true)
            } else {
                let name = current_user_name()?;
                lookup(&name, false)
            }
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// A command that runs `program` as the test user, with a clean environment
    /// (`HOME`, `USER`, `LOGNAME`, `XDG_RUNTIME_DIR`, a standard `PATH`, `LANG=C.UTF-8`;
    /// `CI`, `RBUILD_LOG` and `NO_COLOR` pass through).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8");
        for pass in ["CI", "RBUILD_LOG", "NO_COLOR"] {
            if let Some(v) = std::env::var_os(pass) {
                cmd.env(pass, v);
            }
        }
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// A fresh directory owned by the test user (mode 0755), removed when dropped.
    pub fn tempdir(&self) -> std::io::Result<tempfile::TempDir> {
        let base =
            std::env::var_os("RBUILD_E2E_TMP").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("rbuild-e2e-")
            .tempdir_in(base)?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        if self.switch {
            std::os::unix::fs::chown(dir.path(), Some(self.uid), Some(self.gid))?;
        }
        Ok(dir)
    }

    /// Gives `path` (a file or directory the harness created) to the test user.
    pub fn give(&self, path: &Path) -> std::io::Result<()> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        }
        Ok(())
    }
}

/// Runs a command to completion, capturing its output; an error names the program.
pub fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| {
        format!(
            "cannot start `{}`: {e}",
            cmd.get_program().to_string_lossy()
        )
    })
}

/// Runs a command and returns its stdout; a non-zero exit is an error showing both streams.
pub fn run_ok(cmd: &mut Command) -> Result<String, String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `program arg1 arg2 ...` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn current_user_name() -> Result<String, Missing> {
    let out = run_ok(Command::new("id").arg("-un")).map_err(|e| {
        Missing::new(
            format!("cannot tell the current user: {e}"),
            "check `id -un`",
        )
    })?;
    Ok(out.trim().to_owned())
}

/// Creates `name` with a home and a 65536-id subordinate range unless it already has them.
/// Serialised across test processes by a lock file, since nextest runs tests in parallel.
fn ensure_user_as_root(name: &str) -> Result<(), Missing> {
    let fail = |what: String| {
        Missing::new(
            what,
            "run the tests as root or create the user by hand (see CONTRIBUTING.md)",
        )
    };
    let lock = File::create(std::env::temp_dir().join("rbuild-e2e-user.lock"))
        .map_err(|e| fail(format!("cannot create the user lock file: {e}")))?;
    lock.lock()
        .map_err(|e| fail(format!("cannot lock the user lock file: {e}")))?;

    if getent_passwd(name).is_none() {
        run_ok(Command::new("useradd").args([
            "--create-home",
            "--shell",
            "/bin/sh",
            "--comment",
            "rbuild end-to-end tests",
            name,
        ]))
        .map_err(|e| fail(format!("cannot create test user `{name}`: {e}")))?;
    }
    let (uid, _, _) = getent_passwd(name).ok_or_else(|| fail(format!("user `{name}` vanished")))?;
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        if find_range(&text, name, uid).is_none() {
            let start = next_free_start(&text);
            let range = format!("{start}-{}", start + MIN_SUBID_RANGE - 1);
            run_ok(Command::new("usermod").args([flag, &range, name]))
                .map_err(|e| fail(format!("cannot give `{name}` a range in {file}: {e}")))?;
        }
    }
    Ok(())
}

fn lookup(name: &str, switch: bool) -> Result<TestUser, Missing> {
    let (uid, gid, home) = getent_passwd(name).ok_or_else(|| {
        Missing::new(
            format!("user `{name}` does not exist"),
            format!("as root: `useradd --create-home {name}`"),
        )
    })?;
    if uid == 0 {
        return Err(Missing::new(
            format!("test user `{name}` is root, so nothing would be tested rootless"),
            "set RBUILD_E2E_USER to an unprivileged user",
        ));
    }
    let fix = format!(
        "as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}` (pick a range no other user has)"
    );
    let subuid = find_range(
        &fs::read_to_string("/etc/subuid").unwrap_or_default(),
        name,
        uid,
    )
    .ok_or_else(|| {
        Missing::new(
            format!(
                "`{name}` has no subordinate uid range of {MIN_SUBID_RANGE} ids in /etc/subuid"
            ),
            fix.clone(),
        )
    })?;
    let subgid = find_range(
        &fs::read_to_string("/etc/subgid").unwrap_or_default(),
        name,
        uid,
    )
    .ok_or_else(|| {
        Missing::new(
            format!(
                "`{name}` has no subordinate gid range of {MIN_SUBID_RANGE} ids in /etc/subgid"
            ),
            fix,
        )
    })?;
    let runtime_dir = runtime_dir(uid, gid, switch).map_err(|e| {
        Missing::new(
            format!("cannot create a runtime directory for `{name}`: {e}"),
            "make the temporary directory writable",
        )
    })?;
    Ok(TestUser {
        name: name.to_owned(),
        uid,
        gid,
        home,
        subuid,
        subgid,
        runtime_dir,
        switch,
    })
}

/// `$TMPDIR/rbuild-e2e-run-<uid>`, mode 0700, owned by the user.
fn runtime_dir(uid: u32, gid: u32, switch: bool) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rbuild-e2e-run-{uid}"));
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if switch {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(std::io::Error::other(format!(
            "`{}` exists and is not a directory owned by uid {uid}",
            dir.display()
        )));
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// `(uid, gid, home)` of a user from the name service.
fn getent_passwd(name: &str) -> Option<(u32, u32, PathBuf)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim_end().split(':').collect();
    if fields.len() < 7 {
        return None;
    }
    Some((
        fields[2].parse().ok()?,
        fields[3].parse().ok()?,
        PathBuf::from(fields[5]),
    ))
}

/// The first range of at least [`MIN_SUBID_RANGE`] ids for `name` (or its uid) in a
/// `/etc/subuid`-format text.
pub fn find_range(text: &str, name: &str, uid: u32) -> Option<IdRange> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            (owner == name || owner == uid).then_some(())?;
            Some(IdRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .find(|r| r.count >= MIN_SUBID_RANGE)
}

/// The first id at or above 100000 that is past every range in a `/etc/subuid`-format text.
pub fn next_free_start(text: &str) -> u32 {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':').skip(1);
            let start: u64 = f.next()?.parse().ok()?;
            let count: u64 = f.next()?.parse().ok()?;
            u32::try_from(start + count).ok()
        })
        .fold(100_000, u32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ranges_by_name_or_uid_and_ignores_small_ones() {
        let text = "alice:100000:65536\nbob:165536:1000\n1001:200000:65536\n";
        assert_eq!(
            find_range(text, "alice", 1000),
            Some(IdRange {
                start: 100_000,
                count: 65536
            })
        );
        assert_eq!(find_range(text, "bob", 1002), None);
        assert_eq!(
            find_range(text, "carol", 1001),
            Some(IdRange {
                start: 200_000,
                count: 65536
            })
        );
    }

    #[test]
    fn next_free_start_is_past_every_range() {
        assert_eq!(next_free_start(""), 100_000);
        assert_eq!(
            next_free_start("a:100000:65536\nb:300000:65536\nbad line\n"),
            365_536
        );
    }
}

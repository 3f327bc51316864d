//! Spare run directories: a build step's run directory (`runs/<id>` with the overlay's
//! `upper` and `work` and the mount point of the run's private tmpfs, `tmp`) made ready
//! while an earlier step's helper has already answered, so that a step starts without
//! creating directories on the cache's file system.
//!
//! On ext4, `runs/` spreads its subdirectories over the block groups (see
//! [`super::sys::spread_subdirectories`]); that search, and allocating four directory
//! inodes, cost 0.2-1 ms per step, as much as the rest of the sandbox's setup. A session's
//! step helper, once it has replied, turns its own run directory into a spare when the
//! step left nothing in it (a command without changes, a failed step; `upper` and `work`
//! get fresh inodes, since overlayfs keeps the old ones marked in use for as long as
//! anything holds the old mount), or else removes it and creates a fresh one, until
//! [`WANTED`] spares wait in `runs/`. The next step claims one by locking and renaming it
//! ([`claim`]); without one it creates its directory as before. When the build ends its sessions remove the spares ([`remove_all`]), so that
//! nothing of the build stays in the state directory.
//!
//! Spares are unlocked directories named `spare-*`; the sweep of stale run directories
//! leaves them alone, and a claim takes the lock before the rename, so two steps (or
//! two builds sharing the cache) never get the same one.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::SystemTime;

/// How many spares a session keeps in `runs/`: one for the next step, one more for the
/// step after it (the helper that refills the pool may still be busy when that starts).
pub(super) const WANTED: usize = 2;

const PREFIX: &[u8] = b"spare-";

/// The entries of a run directory a spare holds; each an empty directory.
pub(super) const ENTRIES: [&str; 3] = ["upper", "work", "tmp"];

/// Whether `name` in `runs/` is a spare.
pub(super) fn is_spare(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX)
}

/// How many spares `runs` holds.
pub(super) fn count(runs: &Path) -> usize {
    fs::read_dir(runs).map_or(0, |d| {
        d.flatten().filter(|e| is_spare(&e.file_name())).count()
    })
}

/// A new name for a spare, unique per process and moment.
pub(super) fn fresh_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("spare-{}-{nanos:x}", std::process::id())
}

/// Takes a spare as `runs/<id>`: returns it open and locked (the run's lock), or `None`
/// when there is no usable spare. A spare whose `upper` is not empty (which a spare never
/// is, unless someone wrote into it) is removed instead of used.
pub(super) fn claim(runs: &Path, id: &str) -> Option<File> {
    for (path, lock) in unclaimed(runs) {
        let target = runs.join(id);
        if fs::rename(&path, &target).is_err() {
            continue;
        }
        if ENTRIES.iter().all(|d| is_empty_dir(&target.join(d))) {
            return Some(lock);
        }
        let _ = fs::remove_dir_all(&target);
    }
    None
}

/// The spares in `runs` nobody holds, each with its lock now taken: whoever holds the lock
/// owns the spare, so a concurrent claim or removal skips it, and renaming or removing it
/// cannot race another one.
fn unclaimed(runs: &Path) -> impl Iterator<Item = (std::path::PathBuf, File)> {
    fs::read_dir(runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_spare(&e.file_name()))
        .filter_map(|e| {
            let path = e.path();
            let lock = File::open(&path).ok()?;
            lock.try_lock().is_ok().then_some((path, lock))
        })
}

/// Creates a fresh spare in `runs` (the directories as a run would create them).
pub(super) fn create(runs: &Path) -> io::Result<()> {
    let path = runs.join(fresh_name());
    fs::DirBuilder::new().mode(0o700).create(&path)?;
    let made = fs::create_dir(path.join("upper"))
        .and_then(|()| fs::create_dir(path.join("work")))
        .and_then(|()| fs::DirBuilder::new().mode(0o700).create(path.join("tmp")));
    if made.is_err() {
        let _ = fs::remove_dir_all(&path);
    }
    made
}

/// Removes every spare in `runs` nobody is claiming (at the end of a build).
pub(super) fn remove_all(runs: &Path) {
    for (path, _lock) in unclaimed(runs) {
        let _ = fs::remove_dir_all(&path);
    }
}

/// Whether `path` is a directory with nothing in it.
pub(super) fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn runs() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// The names in `dir`, sorted.
    pub(in crate::sandbox) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_created_spare_is_claimed_once_and_renamed() {
        let runs = runs();
        create(runs.path()).unwrap();
        assert_eq!(count(runs.path()), 1);
        let lock = claim(runs.path(), "42-run").expect("a spare to claim");
        assert_eq!(names(runs.path()), ["42-run"]);
        for e in ENTRIES {
            assert!(runs.path().join("42-run").join(e).is_dir(), "{e}");
        }
        // The claimed directory is locked: it is this run's lock.
        assert!(
            File::open(runs.path().join("42-run"))
                .unwrap()
                .try_lock()
                .is_err()
        );
        drop(lock);
        assert!(claim(runs.path(), "43-run").is_none(), "no spare left");
    }

    #[test]
    fn a_locked_spare_is_neither_claimed_nor_removed() {
        let runs = runs();
        create(runs.path()).unwrap();
        let name = names(runs.path()).remove(0);
        let held = File::open(runs.path().join(&name)).unwrap();
        held.lock().unwrap();
        assert!(claim(runs.path(), "1-run").is_none());
        remove_all(runs.path());
        assert_eq!(names(runs.path()), std::slice::from_ref(&name));
        drop(held);
        remove_all(runs.path());
        assert!(names(runs.path()).is_empty());
    }

    #[test]
    fn a_spare_with_something_in_it_is_removed_instead_of_used() {
        let runs = runs();
        create(runs.path()).unwrap();
        let name = names(runs.path()).remove(0);
        fs::write(runs.path().join(&name).join("upper/file"), b"x").unwrap();
        assert!(claim(runs.path(), "1-run").is_none());
        assert!(names(runs.path()).is_empty());
    }

    #[test]
    fn spares_are_told_from_run_directories() {
        assert!(is_spare(OsStr::new(&fresh_name())));
        assert!(!is_spare(OsStr::new("1234-18ecebcc13b2df50")));
        assert!(!is_spare(OsStr::new("1234-tar")));
    }
}

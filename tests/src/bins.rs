//! Locating the workspace's binaries (`rbuild`, `rbuild-runner`) so the test user can run
//! them.
//!
//! The binaries live in cargo's target directory next to the test executable. When the
//! test user cannot reach them there (a clone under `/root`, mode 0700), they are copied
//! to a world-readable directory keyed by size and modification time.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::gate::Missing;

/// The target profile directory (`target/debug`) of the running executable.
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// Path of the workspace binary `name`, reachable by the test user.
pub fn binary(name: &str) -> Result<PathBuf, Missing> {
    let dir = profile_dir().ok_or_else(|| {
        Missing::new(
            "cannot find cargo's target directory",
            "run the tests through cargo",
        )
    })?;
    let path = dir.join(name);
    if !path.is_file() {
        return Err(Missing::new(
            format!("`{}` is not built", path.display()),
            "`cargo build --workspace --bins` (./scripts/test does this first)",
        ));
    }
    reachable(&path, name)
}

/// `path` itself when the test user can run it there, else a world-readable copy.
pub fn reachable(path: &Path, name: &str) -> Result<PathBuf, Missing> {
    if world_reachable(path) {
        return Ok(path.to_owned());
    }
    stage(path, name).map_err(|e| {
        Missing::new(
            format!("cannot copy `{name}` where the test user can run it: {e}"),
            "run the tests from a directory other users can read",
        )
    })
}

/// Whether every ancestor directory is searchable and the file executable by others.
fn world_reachable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if meta.mode() & 0o005 != 0o005 {
        return false;
    }
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .all(|p| fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// Copies the binary to `$TMPDIR/rbuild-e2e-bin/<size>-<mtime>/<name>` (once; atomic).
fn stage(path: &Path, name: &str) -> std::io::Result<PathBuf> {
    let meta = fs::metadata(path)?;
    let root = std::env::temp_dir().join("rbuild-e2e-bin");
    fs::create_dir_all(&root)?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
    let dir = root.join(format!(
        "{}-{}-{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    ));
    let target = dir.join(name);
    if target.is_file() {
        return Ok(target);
    }
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    fs::copy(path, &tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &target)?;
    Ok(target)
}

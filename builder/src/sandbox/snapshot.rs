//! Layer snapshots: each layer unpacked once into its own directory (an overlayfs lower
//! directory), inside the user namespace so files get their container owners on disk.
//!
//! Layout under the state directory (mode 0700, so no other host user can reach setuid
//! files in it):
//!
//! ```text
//! snapshots/<mapping tag>/<diff id hex>/        the layer's files (overlay format)
//! snapshots/<mapping tag>/<diff id hex>.json    what unpacking reported (warnings)
//! runs/<run id>.lock, runs/<run id>/            one live run (upper, work, root, ...)
//! ```
//!
//! A snapshot appears atomically (unpacked under its run directory, then renamed); a
//! digest mismatch or a refused entry leaves nothing behind. Snapshots depend on the id
//! mapping (on-disk owners), hence the mapping tag.
//!
//! [`copy_merged`] is the fallback when overlayfs cannot be mounted: the snapshots are
//! merged into one private directory, whiteouts and opaque directories applied.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;

use super::rooted::{self, Dir, Kind, Root};
use crate::layer::{self, ExtractError, ExtractReport};

/// The directory of a layer's snapshot.
pub fn snapshot_dir(snapshots: &Path, diff_id: &str) -> PathBuf {
    snapshots.join(diff_id.strip_prefix("sha256:").unwrap_or(diff_id))
}

/// Unpacks `blob` into `staging`, then moves it to its snapshot place. Returns the report.
pub fn unpack(
    blob: File,
    expected: &layer::Expected,
    staging: &Path,
    target: &Path,
) -> Result<ExtractReport, ExtractError> {
    let io_err = |op: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| ExtractError::Write { op, path, source }
    };
    std::fs::create_dir(staging).map_err(io_err("create", staging))?;
    let root = Root::open(staging).map_err(io_err("open", staging))?;
    let report = layer::extract_blob(blob, expected, &root)?;
    let json = serde_json::to_vec(&report).unwrap_or_default();
    let report_path = target.with_extension("json");
    // The report goes first; the directory's rename is what makes the snapshot exist.
    std::fs::write(&report_path, json).map_err(io_err("write", &report_path))?;
    match std::fs::rename(staging, target) {
        Ok(()) => Ok(report),
        // Another run unpacked the same layer meanwhile; theirs is as good as ours.
        Err(_) if target.is_dir() => Ok(report),
        Err(e) => Err(io_err("move the unpacked layer to", target)(e)),
    }
}

/// The report stored with a cached snapshot (empty when unreadable).
pub fn cached_report(target: &Path) -> ExtractReport {
    std::fs::read(target.with_extension("json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Merges `lowers` (bottom first) into the empty directory `dest`, applying whiteouts
/// and opaque directories, preserving owners, modes, times, extended attributes and hard
/// links within a layer. Nothing is followed: symlinks are copied as symlinks.
pub fn copy_merged(lowers: &[PathBuf], dest: &Path) -> io::Result<()> {
    let dst = Root::open(dest)?;
    for lower in lowers {
        let src = Root::open(lower)?;
        let src_root = src.dir()?;
        let dst_root = dst.dir()?;
        if src_root.is_opaque(OsStr::new(".")) {
            for child in dst_root.list()? {
                dst_root.remove_all(&child)?;
            }
        }
        let mut links: HashMap<(u64, u64), Vec<OsString>> = HashMap::new();
        copy_dir(&src_root, &dst, &dst_root, &mut Vec::new(), &mut links)?;
    }
    Ok(())
}

fn copy_dir(
    src: &Dir,
    dst_root: &Root,
    dst: &Dir,
    at: &mut Vec<OsString>,
    links: &mut HashMap<(u64, u64), Vec<OsString>>,
) -> io::Result<()> {
    let mut names = src.list()?;
    names.sort();
    for name in names {
        let st = src.stat(&name)?;
        let kind = kind_of(&st);
        at.push(name.clone());
        match kind {
            Kind::Whiteout => dst.remove_all(&name)?,
            Kind::Dir => {
                let opaque = src.is_opaque(&name);
                match dst.kind(&name)? {
                    Some(Kind::Dir) if !opaque => {}
                    Some(_) => {
                        dst.remove_all(&name)?;
                        dst.mkdir(&name, 0o700)?;
                    }
                    None => dst.mkdir(&name, 0o700)?,
                }
                let sub_src = src.open_dir(&name)?;
                let sub_dst = dst.open_dir(&name)?;
                copy_dir(&sub_src, dst_root, &sub_dst, at, links)?;
                let d = dst.open_dir_rw(&name)?;
                rooted::fchown(&d, st.st_uid, st.st_gid)?;
                rooted::fchmod(&d, st.st_mode & 0o7777)?;
                copy_xattrs(src, &name, dst, &name)?;
                dst.set_times(&name, st.st_mtime, st.st_mtime_nsec)?;
            }
            Kind::File => {
                dst.remove_all(&name)?;
                let key = (st.st_dev, st.st_ino);
                let linked = if st.st_nlink > 1 {
                    if let Some(first) = links.get(&key) {
                        let refs: Vec<&OsStr> = first.iter().map(OsString::as_os_str).collect();
                        let fd = dst_root.open_entry(&refs)?;
                        dst.hard_link(&name, &fd)?;
                        true
                    } else {
                        links.insert(key, at.clone());
                        false
                    }
                } else {
                    false
                };
                if !linked {
                    let mut from = src.open_file(&name)?;
                    let mut to = dst.create_file(&name)?;
                    io::copy(&mut from, &mut to)?;
                    rooted::fchown(&to, st.st_uid, st.st_gid)?;
                    rooted::fchmod(&to, st.st_mode & 0o7777)?;
                    copy_xattrs(src, &name, dst, &name)?;
                    rooted::set_file_times(&to, st.st_mtime, st.st_mtime_nsec)?;
                }
            }
            Kind::Symlink => {
                dst.remove_all(&name)?;
                dst.symlink(&name, &src.read_link(&name)?)?;
                dst.lchown(&name, st.st_uid, st.st_gid)?;
                dst.set_times(&name, st.st_mtime, st.st_mtime_nsec)?;
            }
            Kind::Other => {
                // FIFOs are all a snapshot can hold besides the above (devices are never
                // unpacked).
                dst.remove_all(&name)?;
                dst.mkfifo(&name, 0o600)?;
                dst.lchown(&name, st.st_uid, st.st_gid)?;
                dst.chmod_nofollow(&name, st.st_mode & 0o7777)?;
            }
        }
        at.pop();
    }
    Ok(())
}

fn kind_of(st: &FileStat) -> Kind {
    use nix::sys::stat::SFlag;
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        SFlag::S_IFCHR if st.st_rdev == 0 => Kind::Whiteout,
        _ => Kind::Other,
    }
}

fn copy_xattrs(src: &Dir, name: &OsStr, dst: &Dir, dst_name: &OsStr) -> io::Result<()> {
    for key in src.list_xattrs(name).unwrap_or_default() {
        if key.starts_with("user.overlay.") || key.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(value) = src.get_xattr(name, &key)? {
            // The same attribute was written once already; refusals were reported then.
            let _ = dst.set_xattr(dst_name, &key, &value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copy_applies_whiteouts_and_opaque_dirs_bottom_up() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (
            t.path().join("l1"),
            t.path().join("l2"),
            t.path().join("out"),
        );
        for d in [&l1, &l2, &out] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir_all(l1.join("etc/keep")).unwrap();
        std::fs::write(l1.join("etc/gone"), "old").unwrap();
        std::fs::write(l1.join("etc/keep/a"), "a").unwrap();
        std::fs::create_dir_all(l1.join("opq")).unwrap();
        std::fs::write(l1.join("opq/hidden"), "h").unwrap();
        std::fs::write(l1.join("big"), "1").unwrap();
        std::fs::hard_link(l1.join("big"), l1.join("big2")).unwrap();
        std::os::unix::fs::symlink("/etc/keep", l1.join("link")).unwrap();

        std::fs::create_dir_all(l2.join("etc")).unwrap();
        Root::open(&l2)
            .unwrap()
            .open_dir(&[OsStr::new("etc")])
            .unwrap()
            .whiteout(OsStr::new("gone"))
            .unwrap();
        std::fs::create_dir(l2.join("opq")).unwrap();
        Root::open(&l2)
            .unwrap()
            .dir()
            .unwrap()
            .open_dir(OsStr::new("opq"))
            .unwrap()
            .set_xattr_self("user.overlay.opaque", b"y")
            .unwrap();
        std::fs::write(l2.join("opq/new"), "n").unwrap();

        copy_merged(&[l1, l2], &out).unwrap();
        assert!(!out.join("etc/gone").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("etc/keep/a")).unwrap(),
            "a"
        );
        assert!(!out.join("opq/hidden").exists());
        assert_eq!(std::fs::read_to_string(out.join("opq/new")).unwrap(), "n");
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/keep")
        );
        let (a, b) = (
            std::fs::metadata(out.join("big")).unwrap(),
            std::fs::metadata(out.join("big2")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
        assert!(
            Root::open(&out)
                .unwrap()
                .dir()
                .unwrap()
                .get_xattr(OsStr::new("opq"), "user.overlay.opaque")
                .unwrap()
                .is_none(),
            "overlay attributes are not copied"
        );
    }
}

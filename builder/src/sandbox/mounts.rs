//! Applying the spec's mounts inside the sandbox's root file system (in the helper, inside
//! the user and mount namespaces, before the sandbox's init pivots into it).
//!
//! Mount targets are looked up through `rooted` (`RESOLVE_IN_ROOT`), so an image whose
//! `/dev` or `/etc` is a symlink pointing outside cannot make rbuild mount over a host
//! path; the mount goes onto the `/proc/self/fd` link of the opened target.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::statvfs::{FsFlags, statvfs};

use super::failure::Fail;
use super::rooted::{self, Kind, Root};
use super::spec::Mount;
use super::sys;

/// What build steps' mounts need besides the root: the mounted source trees and where
/// cache mounts live.
#[derive(Debug)]
pub(super) struct Extra<'a> {
    /// Mounted source trees, by index ([`Mount::Tree`]).
    pub(super) trees: &'a [std::path::PathBuf],
    /// `<state>/cache/<mapping>`: the directories of [`Mount::Cache`].
    pub(super) cache_dir: std::path::PathBuf,
}

/// What a mount target must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Dir,
    File,
}

/// Splits `/a/b/c` into components (the spec only holds absolute, clean paths).
fn comps(dest: &str) -> Vec<&OsStr> {
    dest.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsStr::new)
        .collect()
}

/// Opens (creating it when missing) the target `dest` inside `root`. Returns the target
/// and what rbuild created for it, parents first (so a build step can remove them from
/// its changes).
fn target(root: &Root, dest: &str, want: Want) -> Result<(OwnedFd, Vec<String>), Fail> {
    let c = comps(dest);
    let Some((name, parent)) = c.split_last() else {
        return Err(Fail::bug(format!("mount destination `{dest}` is the root")));
    };
    let fail = |e: std::io::Error| {
        Fail::input(format!(
            "cannot prepare the mount point `{dest}` in the image"
        ))
        .cause(e)
    };
    let mut made = Vec::new();
    for i in 0..parent.len() {
        if root
            .open_dir(&parent[..=i])
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            for j in i..parent.len() {
                let mut p = String::new();
                for c in &parent[..=j] {
                    p.push('/');
                    p.push_str(&c.to_string_lossy());
                }
                made.push(p);
            }
            break;
        }
    }
    let dir = root.make_dirs(parent, 0o755).map_err(fail)?;
    let kind = dir.kind(name).map_err(fail)?;
    let created = match (kind, want) {
        (Some(Kind::Dir), Want::Dir) | (Some(Kind::File), Want::File) => false,
        (None, _) => true,
        // Anything else (a symlink such as `/etc/resolv.conf -> ../run/...`, a file
        // where a directory is needed) is replaced in the sandbox's writable layer.
        (Some(_), _) => {
            dir.remove_all(name).map_err(fail)?;
            true
        }
    };
    if created {
        match want {
            Want::Dir => dir.mkdir(name, 0o755).map_err(fail)?,
            Want::File => drop(dir.create_file(name).map_err(fail)?),
        }
    }
    if created {
        made.push(dest.to_owned());
    }
    Ok((dir.open_path(name).map_err(fail)?, made))
}

fn do_mount(
    source: Option<&Path>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<(), Fail> {
    let t = sys::fd_path(target.as_raw_fd());
    mount(source, &t, fstype, flags, data)
        .map_err(|e| Fail::host(format!("cannot mount {what}")).cause(std::io::Error::from(e)))
}

/// Flags a read-only remount of a bind of `source` must keep (the kernel refuses to
/// clear `nosuid`/`nodev`/`noexec` locked by a less privileged namespace).
fn locked_flags(source: &Path) -> MsFlags {
    let mut flags = MsFlags::empty();
    if let Ok(st) = statvfs(source) {
        let f = st.flags();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                flags |= ms;
            }
        }
    }
    flags
}

/// Makes the bind mount at `dest` read-only, recursively when the kernel can. The target
/// is looked up again: a descriptor opened before the mount refers to what is under it.
fn readonly(root: &Root, dest: &str, source: &Path, what: &str) -> Result<(), Fail> {
    let top = root
        .open_entry(&comps(dest))
        .map_err(|e| Fail::host(format!("cannot find the new mount at `{dest}`")).cause(e))?;
    if sys::make_tree_readonly(top.as_fd()).is_ok() {
        return Ok(());
    }
    let t = sys::fd_path(top.as_raw_fd());
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked_flags(source);
    mount(None::<&str>, &t, None::<&str>, flags, None::<&str>).map_err(|e| {
        Fail::host(format!("cannot make {what} read-only")).cause(std::io::Error::from(e))
    })
}

/// Applies every mount but `Proc` (mounted by the sandbox's init, in its PID namespace).
/// `files_dir` receives the contents of `File` mounts; `volumes` holds an `O_PATH`
/// entry per `Bind` mount, in order: a detached mount tree cloned before entering the user
/// namespace (when rbuild could), else `None` and the source is bound by path.
/// Returns the mount points rbuild had to create in the image, and the locks of
/// `sharing=locked` cache mounts (held until the run ends).
pub(super) fn apply(
    root_path: &Path,
    mounts: &[Mount],
    files_dir: &Path,
    volumes: &[Option<OwnedFd>],
    extra: &Extra<'_>,
) -> Result<(Vec<String>, Vec<File>), Fail> {
    let root =
        Root::open(root_path).map_err(|e| Fail::bug("cannot open the sandbox's root").cause(e))?;
    let mut created = Vec::new();
    let mut locks = Vec::new();
    let mut volumes = volumes.iter();
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for (i, m) in mounts.iter().enumerate() {
        let dest = m.dest();
        // Mount points under /dev live in the sandbox's own tmpfs; only report those
        // created in the image itself.
        let in_image = !dest.starts_with("/dev/");
        let mut note = |made: Vec<String>| {
            if in_image {
                created.extend(made);
            }
        };
        match m {
            Mount::Proc { dest } => {
                let (_, c) = target(&root, dest, Want::Dir)?;
                note(c);
            }
            Mount::Sysfs { dest, fresh: true } => {
                let (t, c) = target(&root, dest, Want::Dir)?;
                note(c);
                do_mount(
                    Some(Path::new("sysfs")),
                    &t,
                    Some("sysfs"),
                    nosuid_nodev | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
                    None,
                    "`/sys`",
                )?;
            }
            Mount::Sysfs { dest, fresh: false } => {
                let (t, c) = target(&root, dest, Want::Dir)?;
                note(c);
                do_mount(
                    Some(Path::new("/sys")),
                    &t,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                    "`/sys`",
                )?;
                readonly(&root, dest, Path::new("/sys"), "`/sys`")?;
            }
            Mount::Tmpfs {
                dest,
                options,
                noexec,
            } => {
                let (t, c) = target(&root, dest, Want::Dir)?;
                note(c);
                let mut flags = nosuid_nodev;
                if *noexec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                do_mount(
                    Some(Path::new("tmpfs")),
                    &t,
                    Some("tmpfs"),
                    flags,
                    Some(options),
                    &format!("a tmpfs at `{dest}`"),
                )?;
            }
            Mount::Devpts { dest, gid } => {
                let (t, c) = target(&root, dest, Want::Dir)?;
                note(c);
                let mut opts = "newinstance,ptmxmode=0666,mode=0620".to_owned();
                if let Some(g) = gid {
                    opts = format!("{opts},gid={g}");
                }
                do_mount(
                    Some(Path::new("devpts")),
                    &t,
                    Some("devpts"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(&opts),
                    "`/dev/pts`",
                )?;
            }
            Mount::Device { source, dest } => {
                let (t, c) = target(&root, dest, Want::File)?;
                note(c);
                do_mount(
                    Some(source),
                    &t,
                    None,
                    MsFlags::MS_BIND,
                    None,
                    &format!("`{}`", source.display()),
                )?;
            }
            Mount::Symlink { dest, target: to } => {
                let c = comps(dest);
                let Some((name, parent)) = c.split_last() else {
                    return Err(Fail::bug(format!(
                        "symlink destination `{dest}` is the root"
                    )));
                };
                let fail = |e: std::io::Error| {
                    Fail::input(format!("cannot create `{dest}` in the sandbox")).cause(e)
                };
                let dir = root.make_dirs(parent, 0o755).map_err(fail)?;
                let existed = dir.kind(name).map_err(fail)?.is_some();
                dir.remove_all(name).map_err(fail)?;
                dir.symlink(name, OsStr::new(to)).map_err(fail)?;
                note(if existed {
                    Vec::new()
                } else {
                    vec![dest.clone()]
                });
            }
            Mount::File {
                dest,
                contents,
                perm,
            } => {
                let src = files_dir.join(i.to_string());
                let mut f = File::create(&src)
                    .map_err(|e| Fail::bug(format!("cannot write `{}`", src.display())).cause(e))?;
                f.write_all(contents.as_bytes())
                    .map_err(|e| Fail::bug(format!("cannot write `{}`", src.display())).cause(e))?;
                if let Some(p) = perm {
                    rooted::fchown(&f, p.uid, p.gid).map_err(|e| {
                        Fail::input(format!("cannot give `{dest}` to {}:{}", p.uid, p.gid)).cause(e)
                    })?;
                    rooted::fchmod(&f, p.mode).map_err(|e| {
                        Fail::bug(format!("cannot set the mode of `{dest}`")).cause(e)
                    })?;
                }
                drop(f);
                let (t, c) = target(&root, dest, Want::File)?;
                note(c);
                do_mount(
                    Some(&src),
                    &t,
                    None,
                    MsFlags::MS_BIND,
                    None,
                    &format!("`{dest}`"),
                )?;
            }
            Mount::Bind {
                source,
                dest,
                readonly: ro,
            } => {
                let tree = volumes
                    .next()
                    .ok_or_else(|| Fail::bug("a bind mount has no prepared source"))?;
                let is_dir = match tree {
                    Some(t) => {
                        std::fs::metadata(sys::fd_path(t.as_raw_fd())).is_ok_and(|m| m.is_dir())
                    }
                    None => std::fs::metadata(source).is_ok_and(|m| m.is_dir()),
                };
                let (t, c) = target(&root, dest, if is_dir { Want::Dir } else { Want::File })?;
                note(c);
                let what = format!("`{}` at `{dest}`", source.display());
                match tree {
                    Some(tree) => sys::attach_tree(tree.as_fd(), t.as_fd())
                        .map_err(|e| Fail::host(format!("cannot mount {what}")).cause(e))?,
                    None => do_mount(
                        Some(source),
                        &t,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                        &what,
                    )?,
                }
                if *ro {
                    readonly(&root, dest, source, &format!("`{dest}`"))?;
                }
            }
            Mount::Tree {
                tree,
                path,
                dest,
                readonly: ro,
            } => {
                let base = extra
                    .trees
                    .get(*tree)
                    .ok_or_else(|| Fail::bug(format!("source tree {tree} is not mounted")))?;
                let t = Root::open(base)
                    .map_err(|e| Fail::bug("cannot open a source tree").cause(e))?;
                let source = t.open_entry(&comps(path)).map_err(|e| {
                    Fail::input(format!(
                        "`RUN --mount` source `{path}` does not exist in the stage it is mounted from"
                    ))
                    .cause(e)
                })?;
                let source_path = sys::fd_path(source.as_raw_fd());
                let is_dir = std::fs::metadata(&source_path).is_ok_and(|m| m.is_dir());
                let (t, c) = target(&root, dest, if is_dir { Want::Dir } else { Want::File })?;
                note(c);
                do_mount(
                    Some(&source_path),
                    &t,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                    &format!("`{path}` at `{dest}`"),
                )?;
                if *ro {
                    readonly(&root, dest, base, &format!("`{dest}`"))?;
                }
            }
            Mount::Cache {
                id,
                dest,
                perm,
                locked,
            } => {
                let dir = extra.cache_dir.join(id);
                if !dir.is_dir() {
                    let fail = |e: std::io::Error| {
                        Fail::host(format!("cannot create the cache mount `{}`", dir.display()))
                            .cause(e)
                    };
                    std::fs::create_dir_all(&extra.cache_dir).map_err(fail)?;
                    let staging = extra
                        .cache_dir
                        .join(format!(".{id}.{}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&staging);
                    std::fs::create_dir(&staging).map_err(fail)?;
                    let f = File::open(&staging).map_err(fail)?;
                    rooted::fchown(&f, perm.uid, perm.gid).map_err(fail)?;
                    rooted::fchmod(&f, perm.mode).map_err(fail)?;
                    if std::fs::rename(&staging, &dir).is_err() {
                        let _ = std::fs::remove_dir(&staging);
                    }
                }
                if *locked {
                    let lock = File::open(&dir).map_err(|e| {
                        Fail::host(format!("cannot open the cache mount `{}`", dir.display()))
                            .cause(e)
                    })?;
                    lock.lock().map_err(|e| {
                        Fail::host(format!("cannot lock the cache mount `{}`", dir.display()))
                            .cause(e)
                    })?;
                    locks.push(lock);
                }
                let (t, c) = target(&root, dest, Want::Dir)?;
                note(c);
                do_mount(
                    Some(&dir),
                    &t,
                    None,
                    MsFlags::MS_BIND,
                    None,
                    &format!("the cache at `{dest}`"),
                )?;
            }
        }
    }
    Ok((created, locks))
}

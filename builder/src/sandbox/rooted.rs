//! File-system operations confined to a root directory (a rootfs, a layer snapshot).
//!
//! Every path handed to [`Root`] is resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` and absolute symlinks are
//! interpreted with the root as `/`, exactly as the container will see them, so no
//! lookup can leave the root whatever symlinks earlier entries created. The last component
//! of a path is never followed: entries are created with `O_EXCL | O_NOFOLLOW`,
//! metadata is changed with `AT_SYMLINK_NOFOLLOW` or through the created file's own
//! descriptor.
//!
//! Paths given here are lists of plain components (no `/`, `.` or `..`): the caller
//! (`layer::extract`) has already refused anything else.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use super::sys;

/// The kind of an existing directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A character device 0:0, which overlayfs reads as a whiteout.
    Whiteout,
    Other,
}

impl Kind {
    fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFCHR if st.st_rdev == 0 => Kind::Whiteout,
            _ => Kind::Other,
        }
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn join(components: &[&OsStr]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in components {
        p.push(c);
    }
    p
}

/// A directory handle everything is resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A directory inside a [`Root`], opened without following its last component.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` as a root (the path itself is trusted; it is ours).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The host path of the root (for messages only: never resolve through it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory itself.
    pub fn dir(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    fn resolve(&self, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        if rel.as_os_str().is_empty() {
            return fcntl::openat(&self.fd, ".", flags | OFlag::O_CLOEXEC, Mode::empty());
        }
        fcntl::openat2(
            &self.fd,
            rel,
            OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
    }

    /// Opens the directory at `components` (symlinks in it resolved inside the root).
    pub fn open_dir(&self, components: &[&OsStr]) -> io::Result<Dir> {
        let fd = self
            .resolve(&join(components), OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(errno)?;
        Ok(Dir { fd })
    }

    /// Opens the directory at `components`, creating missing directories (owner root of
    /// the namespace, `mode`). A component that exists but is not a directory (or a
    /// symlink leading to one inside the root) is an error (`ENOTDIR`/`ENOENT`).
    pub fn make_dirs(&self, components: &[&OsStr], mode: u32) -> io::Result<Dir> {
        match self.open_dir(components) {
            Ok(d) => return Ok(d),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let mut dir = self.dir()?;
        for i in 0..components.len() {
            match self.open_dir(&components[..=i]) {
                Ok(d) => dir = d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match stat::mkdirat(&dir.fd, components[i], Mode::from_bits_truncate(mode)) {
                        Ok(()) => {}
                        // A symlink whose target is missing: refuse rather than guess.
                        Err(Errno::EEXIST) => return Err(errno(Errno::ENOENT)),
                        Err(e) => return Err(errno(e)),
                    }
                    dir = dir.open_dir(components[i])?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dir)
    }

    /// Opens the entry at `components` itself (not following a final symlink) as an
    /// `O_PATH` descriptor, for hard-linking to it.
    pub fn open_entry(&self, components: &[&OsStr]) -> io::Result<OwnedFd> {
        self.resolve(&join(components), OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .map_err(errno)
    }
}

impl Dir {
    /// The descriptor (an `O_PATH` one, usable as the directory of `*at` calls).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the subdirectory `name` without following a symlink.
    pub fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = fcntl::openat(
            &self.fd,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Dir { fd })
    }

    /// An `O_PATH` descriptor of the entry `name` itself (a mount target, through its
    /// `/proc/self/fd` link).
    pub fn open_path(&self, name: &OsStr) -> io::Result<OwnedFd> {
        fcntl::openat(
            &self.fd,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)
    }

    /// The kind of entry `name`, or `None` when there is none.
    pub fn kind(&self, name: &OsStr) -> io::Result<Option<Kind>> {
        match stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Kind::of(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Metadata of `name` (not following a symlink).
    pub fn stat(&self, name: &OsStr) -> io::Result<FileStat> {
        stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)
    }

    /// Removes `name`, recursively when it is a directory. Missing is fine.
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        match self.kind(name)? {
            None => Ok(()),
            Some(Kind::Dir) => {
                let sub = self.open_dir(name)?;
                for child in sub.list()? {
                    sub.remove_all(&child)?;
                }
                unistd::unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir).map_err(errno)
            }
            Some(_) => unistd::unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir).map_err(errno),
        }
    }

    /// Removes `name` when it is an empty directory or not a directory; a directory with
    /// something in it stays (`Ok(false)`).
    pub fn remove_if_empty(&self, name: &OsStr) -> io::Result<bool> {
        match self.kind(name)? {
            None => Ok(true),
            Some(Kind::Dir) => match unistd::unlinkat(&self.fd, name, UnlinkatFlags::RemoveDir) {
                Ok(()) => Ok(true),
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
                Err(e) => Err(errno(e)),
            },
            Some(_) => unistd::unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir)
                .map(|()| true)
                .map_err(errno),
        }
    }

    /// Names in this directory (without `.` and `..`).
    pub fn list(&self) -> io::Result<Vec<OsString>> {
        // Reading through the descriptor's magic link lists this very directory.
        let proc_path = sys::fd_path(self.fd.as_raw_fd());
        let mut names = Vec::new();
        for e in std::fs::read_dir(&proc_path)? {
            names.push(e?.file_name());
        }
        Ok(names)
    }

    /// Whether `name` is a directory marked opaque for overlayfs (`user.overlay.opaque`).
    pub fn is_opaque(&self, name: &OsStr) -> bool {
        self.get_xattr(name, "user.overlay.opaque")
            .ok()
            .flatten()
            .is_some_and(|v| v == b"y")
    }

    /// Creates the regular file `name` (it must not exist) for writing.
    pub fn create_file(&self, name: &OsStr) -> io::Result<File> {
        let fd = fcntl::openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Opens the existing regular file `name` for reading, never following a symlink.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let fd = fcntl::openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Opens the directory `name` for reading its metadata and setting attributes.
    pub fn open_dir_rw(&self, name: &OsStr) -> io::Result<File> {
        let fd = fcntl::openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Creates the directory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Creates the symlink `name` -> `target` (the target is data; it is not resolved).
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        unistd::symlinkat(target, &self.fd, name).map_err(errno)
    }

    /// Reads the target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        fcntl::readlinkat(&self.fd, name).map_err(errno)
    }

    /// Creates a FIFO.
    pub fn mkfifo(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        unistd::mkfifoat(&self.fd, name, Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Creates an overlayfs whiteout (a character device 0:0), which user namespaces may
    /// create since Linux 5.8.
    pub fn whiteout(&self, name: &OsStr) -> io::Result<()> {
        stat::mknodat(&self.fd, name, SFlag::S_IFCHR, Mode::empty(), 0).map_err(errno)
    }

    /// Hard-links `name` to the entry `target` (an `O_PATH` descriptor from
    /// [`Root::open_entry`]), going through its `/proc/self/fd` magic link, which needs no
    /// capability in the initial user namespace (unlike `AT_EMPTY_PATH`).
    pub fn hard_link(&self, name: &OsStr, target: &OwnedFd) -> io::Result<()> {
        let src = sys::fd_path(target.as_raw_fd());
        unistd::linkat(
            fcntl::AT_FDCWD,
            &src,
            &self.fd,
            name,
            AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(errno)
    }

    /// Changes the owner of `name` without following a symlink.
    pub fn lchown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        unistd::fchownat(
            &self.fd,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// Changes the mode of `name`, which must not be a symlink (checked on the opened
    /// entry, not on the name, so a swapped entry cannot redirect it).
    pub fn chmod_nofollow(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let fd = fcntl::openat(
            &self.fd,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let st = stat::fstat(&fd).map_err(errno)?;
        if Kind::of(&st) == Kind::Symlink {
            return Ok(());
        }
        stat::fchmodat(
            fcntl::AT_FDCWD,
            &sys::fd_path(fd.as_raw_fd()),
            Mode::from_bits_truncate(mode),
            stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(errno)
    }

    /// Sets access and modification time of `name` (not following a symlink).
    pub fn set_times(&self, name: &OsStr, secs: i64, nanos: i64) -> io::Result<()> {
        let t = TimeSpec::new(secs, nanos);
        stat::utimensat(&self.fd, name, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(errno)
    }

    /// Sets an extended attribute on `name` itself (not following a symlink).
    pub fn set_xattr(&self, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
        let mut path = sys::fd_path(self.fd.as_raw_fd()).into_os_string();
        path.push("/");
        path.push(name);
        sys::lsetxattr(Path::new(&path), key, value)
    }

    /// Sets an extended attribute on this directory itself.
    pub fn set_xattr_self(&self, key: &str, value: &[u8]) -> io::Result<()> {
        sys::setxattr(&sys::fd_path(self.fd.as_raw_fd()), key, value)
    }

    /// Reads the extended attribute `key` of `name` itself, `None` when it has none.
    pub fn get_xattr(&self, name: &OsStr, key: &str) -> io::Result<Option<Vec<u8>>> {
        let mut path = sys::fd_path(self.fd.as_raw_fd()).into_os_string();
        path.push("/");
        path.push(name);
        sys::lgetxattr(Path::new(&path), key)
    }

    /// Lists the extended attribute names of `name` itself.
    pub fn list_xattrs(&self, name: &OsStr) -> io::Result<Vec<String>> {
        let mut path = sys::fd_path(self.fd.as_raw_fd()).into_os_string();
        path.push("/");
        path.push(name);
        sys::llistxattr(Path::new(&path))
    }
}

/// Sets times on an open file.
pub fn set_file_times(file: &File, secs: i64, nanos: i64) -> io::Result<()> {
    let t = TimeSpec::new(secs, nanos);
    stat::futimens(file, &t, &t).map_err(errno)
}

/// Changes the owner of an open file or directory.
pub fn fchown(file: &File, uid: u32, gid: u32) -> io::Result<()> {
    unistd::fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(errno)
}

/// Changes the mode of an open file or directory (including setuid/setgid/sticky bits).
pub fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    stat::fchmod(file, Mode::from_bits_truncate(mode)).map_err(errno)
}

/// Sets an extended attribute on an open file or directory.
pub fn fset_xattr(file: &File, key: &str, value: &[u8]) -> io::Result<()> {
    sys::fsetxattr(file.as_fd(), key, value)
}

/// A `CString` of a component, for messages and syscalls that need one.
pub fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

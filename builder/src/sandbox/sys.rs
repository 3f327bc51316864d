//! The only `unsafe` code in rbuild: the few system calls `nix` does not wrap safely,
//! each in a small function with the reason it is sound.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::ForkResult;

/// Takes ownership of descriptor `fd` inherited from the parent process, if it is open.
pub fn inherited_fd(fd: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and was passed to this process for
    // it to own: nothing else in this freshly exec'd process refers to it.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `/proc/self/fd/<fd>`: the magic link to what a descriptor refers to.
pub fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `lsetxattr(2)`: sets an attribute on `path` itself, not following a final symlink.
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: `p` and `n` are NUL-terminated strings that outlive the call; `value` is a
    // valid buffer of `value.len()` bytes that the kernel only reads.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `setxattr(2)`: sets an attribute on what `path` resolves to (used on
/// `/proc/self/fd/N` to reach a directory held by an `O_PATH` descriptor).
pub fn setxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: as in `lsetxattr`.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `fsetxattr(2)`.
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cname(name)?;
    // SAFETY: `fd` is an open descriptor borrowed for the call; `n` is NUL-terminated and
    // `value` a valid buffer of `value.len()` bytes, both outliving the call.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `lgetxattr(2)`; `None` when the attribute is not set.
pub fn lgetxattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let (p, n) = (cpath(path)?, cname(name)?);
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `buf` is a writable buffer of `buf.len()` bytes; the kernel writes at
        // most that many and returns how many it wrote.
        let ret =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if ret >= 0 {
            buf.truncate(usize::try_from(ret).unwrap_or(0));
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// `llistxattr(2)`: the attribute names of `path` itself.
pub fn llistxattr(path: &Path) -> io::Result<Vec<String>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: as in `lgetxattr`.
        let ret = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if ret >= 0 {
            buf.truncate(usize::try_from(ret).unwrap_or(0));
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Asks the file system to give each new subdirectory of `dir` a place of its own, as
/// for a top-level directory (`chattr +T`: ext4's Orlov allocator spreads such
/// directories over the block groups with the most free inodes). Step directories are
/// created and deleted by the thousand; without this, ext4 puts every new one next to
/// its predecessors, where inodes deleted moments ago are skipped one by one when it
/// allocates (measured: creating 30,000 small files took 23 s there and 0.8 s with the
/// flag). A hint only: file systems without the flag (tmpfs, btrfs, xfs) are left alone.
pub fn spread_subdirectories(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(f) = std::fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&f)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = rustix::fs::ioctl_setflags(&f, flags | IFlags::TOPDIR);
    }
}

/// Ends this (forked) process at once with `code`, without running exit handlers or
/// destructors that belong to the parent's state (`_exit(2)`).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns; skipping destructors and
    // `atexit` handlers is exactly what a forked child must do.
    unsafe { libc::_exit(code) }
}

/// The two sides of a `fork`.
#[derive(Debug)]
pub enum Forked {
    Parent(nix::unistd::Pid),
    Child,
}

/// `fork(2)`, for the sandbox helper and the sandbox init only.
///
/// Callers guarantee the process is single-threaded (the helper is a freshly exec'd
/// process that starts no threads), so the child may run ordinary Rust code afterwards:
/// no lock can be held by a thread that does not exist in the child.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the helper and init are single-threaded (see above), which is the condition
    // under which a forked child may allocate, lock and run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Lets the kernel reap this process's children as they end (`SIGCHLD` ignored), for the
/// session helper, which forks one helper per step and never waits for them.
pub fn reap_children_automatically() {
    // SAFETY: `SIG_IGN` runs no code of ours in signal context.
    let _ = unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigIgn) };
}

/// Undoes [`reap_children_automatically`] in a forked child, which waits for its own.
pub fn wait_for_children() {
    // SAFETY: `SIG_DFL` runs no code of ours in signal context.
    let _ = unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
}

/// The most descriptors one [`send_fds`] message carries.
pub const MAX_PASSED_FDS: usize = 8;

/// Sends one byte of `tag` and `fds` (`SCM_RIGHTS`) on the unix socket `sock`.
pub fn send_fds(sock: BorrowedFd<'_>, tag: u8, fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let data = [tag];
    let iov = [io::IoSlice::new(&data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one [`send_fds`] message: its tag and descriptors (close-on-exec), or `None`
/// at end of file.
pub fn recv_fds(sock: BorrowedFd<'_>) -> io::Result<Option<(u8, Vec<std::os::fd::OwnedFd>)>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    use std::os::fd::FromRawFd;
    let mut data = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let msg = match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: descriptors received with SCM_RIGHTS are new entries of this
                // process's table that nothing else refers to; each is owned once here.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.bytes == 0 {
            return Ok(None);
        }
        return Ok(Some((data[0], fds)));
    }
}

/// What a command started by [`spawn_command`] runs as and where.
#[derive(Debug)]
pub struct CommandPlan<'a> {
    /// The working directory, entered after switching ids.
    pub cwd: &'a std::ffi::CStr,
    /// Supplementary groups to set, or `None` to leave them (a single-id mapping).
    pub groups: Option<&'a [libc::gid_t]>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub umask: libc::mode_t,
    /// The paths to try, in order (one, or one per `PATH` entry).
    pub candidates: &'a [CString],
    /// Whether `EACCES` on one candidate moves on to the next (a `PATH` search).
    pub search: bool,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
}

/// Why [`spawn_command`]'s child did not reach the command (it exited with 127).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    Chdir(i32),
    Setgroups(i32),
    Setgid(i32),
    Setuid(i32),
    Exec(i32),
}

/// Shared between [`spawn_command`] and its child (same memory until the exec).
struct SpawnArgs {
    cwd: *const libc::c_char,
    groups: Option<(*const libc::gid_t, usize)>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    umask: libc::mode_t,
    candidates: *const *const libc::c_char,
    search: bool,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Written by the child when it fails: which step (1..=5) and the errno.
    failed_at: i32,
    errno: i32,
}

fn errno() -> i32 {
    // SAFETY: `__errno_location` returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// The child of [`spawn_command`]: runs on its own stack in the parent's memory while the
/// parent is suspended, so it only makes system calls (no allocation, no locks, no
/// panics), then execs or `_exit`s.
extern "C" fn spawn_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `SpawnArgs` of `spawn_command`, which outlives this child (the
    // parent is suspended until the child execs or exits); every pointer in it points to
    // NUL-terminated strings or NULL-terminated arrays the parent keeps alive. The calls
    // are plain system calls on that data.
    unsafe {
        let a = &mut *arg.cast::<SpawnArgs>();
        // Default dispositions (handlers are reset by exec anyway; ignored signals, such
        // as the `SIGPIPE` the Rust runtime ignores, are not), then a clean mask.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());
        // Only stdin, stdout and stderr reach the command.
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            (1 as libc::c_uint) << 2,
        );
        let fail = |a: &mut SpawnArgs, step: i32| -> libc::c_int {
            a.failed_at = step;
            a.errno = errno();
            libc::_exit(127)
        };
        if libc::chdir(a.cwd) != 0 {
            return fail(a, 1);
        }
        if let Some((list, len)) = a.groups
            && libc::setgroups(len, list) != 0
        {
            return fail(a, 2);
        }
        if libc::setresgid(a.gid, a.gid, a.gid) != 0 {
            return fail(a, 3);
        }
        if libc::setresuid(a.uid, a.uid, a.uid) != 0 {
            return fail(a, 4);
        }
        libc::umask(a.umask);
        let mut last = libc::ENOENT;
        let mut c = a.candidates;
        while !(*c).is_null() {
            libc::execve(*c, a.argv, a.envp);
            // Keep looking on "not here"; anything else (not executable, wrong format)
            // is the answer, as a shell would report it.
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES if a.search => last = libc::EACCES,
                other => {
                    last = other;
                    break;
                }
            }
            c = c.add(1);
        }
        a.failed_at = 5;
        a.errno = last;
        libc::_exit(127)
    }
}

/// Starts a command the way `posix_spawn` does: a child sharing this process's memory
/// (`clone(CLONE_VM | CLONE_VFORK)`, so nothing is copied) switches ids, enters the
/// working directory and execs, while this process waits. Returns the child's pid and,
/// when it could not reach the command, why (it has exited with 127 then; reap it).
///
/// For the sandbox's init only: single-threaded, its signals blocked around the call.
pub fn spawn_command(
    plan: &CommandPlan<'_>,
) -> io::Result<(nix::unistd::Pid, Option<SpawnFailure>)> {
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (candidates, argv, envp) = (ptrs(plan.candidates), ptrs(plan.argv), ptrs(plan.envp));
    let mut args = SpawnArgs {
        cwd: plan.cwd.as_ptr(),
        groups: plan.groups.map(|g| (g.as_ptr(), g.len())),
        uid: plan.uid,
        gid: plan.gid,
        umask: plan.umask,
        candidates: candidates.as_ptr(),
        search: plan.search,
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        failed_at: 0,
        errno: 0,
    };
    // The child's stack: 64 KiB, 16-byte aligned at its top (stacks grow down here).
    let mut stack = vec![0u128; 4096];
    let top = stack.as_mut_ptr_range().end.cast::<libc::c_void>();
    // SAFETY: all-zero bytes are a valid `sigset_t` (filled in below).
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid and writable. Blocking every signal around the clone
    // keeps any handler of ours from running in the child on shared memory (the child
    // sets its own mask before exec); the old mask is restored right after.
    unsafe {
        libc::sigfillset(&raw mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const all, &raw mut old);
    }
    // SAFETY: `spawn_child` only makes system calls on `args`, which, like `stack` and the
    // pointer arrays, lives until this function returns; `CLONE_VFORK` suspends us until
    // the child has exec'd or exited, so nothing here changes while it runs.
    let pid = unsafe {
        libc::clone(
            spawn_child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut args).cast(),
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(err);
    }
    // SAFETY: `args` is a live local; the volatile reads keep the compiler from assuming
    // the child's writes through the pointer it was given did not happen.
    let (failed_at, errno) = unsafe {
        (
            std::ptr::read_volatile(&raw const args.failed_at),
            std::ptr::read_volatile(&raw const args.errno),
        )
    };
    let failure = match failed_at {
        0 => None,
        1 => Some(SpawnFailure::Chdir(errno)),
        2 => Some(SpawnFailure::Setgroups(errno)),
        3 => Some(SpawnFailure::Setgid(errno)),
        4 => Some(SpawnFailure::Setuid(errno)),
        _ => Some(SpawnFailure::Exec(errno)),
    };
    Ok((nix::unistd::Pid::from_raw(pid), failure))
}

/// Makes `fd` the child's descriptor 3 (without close-on-exec) when `cmd` is spawned.
pub fn pass_fd_as_3(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls
    // are allowed; `dup2` and `fcntl` are async-signal-safe and the closure allocates
    // nothing. `fd` stays open in the parent until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes each `(source, target)` descriptor the child's descriptor `target` (without
/// close-on-exec) when `cmd` is spawned. Sources are first moved above every target, so
/// one pair cannot clobber another's source.
pub fn pass_fds(cmd: &mut Command, fds: &[(RawFd, RawFd)]) {
    let fds: Vec<(RawFd, RawFd)> = fds.to_vec();
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls
    // are allowed; `fcntl` and `dup2` are, and the closure allocates nothing (`fds` was
    // moved in before the fork; indexing a slice does not allocate). The sources stay
    // open in the parent until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let mut moved = [0 as RawFd; 8];
            if fds.len() > moved.len() {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            for (i, (src, _)) in fds.iter().enumerate() {
                let fd = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 64);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = fd;
            }
            for (i, (_, dst)) in fds.iter().enumerate() {
                if libc::dup2(moved[i], *dst) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Brings the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: creates a socket descriptor owned by this function and closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ifreq` is plain data for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::try_from(*src).unwrap_or(0);
    }
    // SAFETY: `req` is a valid, writable `ifreq` naming `lo`; SIOCGIFFLAGS fills in
    // `ifru_flags` and SIOCSIFFLAGS reads it; `sock` is a valid socket.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: `sock` is ours and closed exactly once.
    unsafe { libc::close(sock) };
    result
}

/// A detached copy of the mount tree at `fd` (`open_tree(2)` with `OPEN_TREE_CLONE` and
/// `AT_RECURSIVE`), which can later be attached in another mount namespace with
/// [`attach_tree`]. Needs `CAP_SYS_ADMIN` over the current mount namespace.
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: `fd` is open for the call and the path is an empty NUL-terminated string;
    // on success the kernel returns a new descriptor that we take ownership of.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = RawFd::try_from(ret).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: `raw` is a descriptor the kernel just created for us; nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

/// Attaches a detached mount tree from [`clone_tree`] onto the mount point `target`
/// (`move_mount(2)`).
pub fn attach_tree(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both descriptors are open for the call and both paths are empty
    // NUL-terminated strings the kernel only reads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes the mount `fd` refers to and every mount below it read-only (`mount_setattr(2)`
/// with `AT_RECURSIVE`, Linux >= 5.12).
pub fn make_tree_readonly(fd: BorrowedFd<'_>) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `fd` is open for the call, the path is an empty NUL-terminated string,
    // `attr` is a valid `struct mount_attr` of the size passed; the kernel only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        lsetxattr(&f, "user.rbuild.test", b"value").unwrap();
        assert_eq!(
            lgetxattr(&f, "user.rbuild.test").unwrap().as_deref(),
            Some(&b"value"[..])
        );
        assert!(
            llistxattr(&f)
                .unwrap()
                .contains(&"user.rbuild.test".to_owned())
        );
        assert_eq!(lgetxattr(&f, "user.rbuild.none").unwrap(), None);
    }
}

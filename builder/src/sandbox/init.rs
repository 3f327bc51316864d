//! The sandbox's init: PID 1 of the sandbox's PID namespace, forked by the helper.
//!
//! It mounts `/proc` for its namespace, pivots into the root file system, resolves the
//! user from the image's own `/etc/passwd` and `/etc/group`, starts the command as PID 2,
//! reaps every orphan, and when the command ends lists what is still running (with its
//! listening sockets), kills it all, waits until nothing else is left and writes a report
//! for the helper to a pipe; closing that pipe is its last act. Its exit takes the PID
//! namespace (and its mount namespace) down with it, while the helper goes on.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{self, Pid};
use serde::{Deserialize, Serialize};

use super::failure::Fail;
use super::result::{Leftover, SetupFailure, Status};
use super::rooted::Root;
use super::spec::{MapMethod, Spec};
use super::{procscan, sys, user};
use crate::arch::Execution;

/// What init tells the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct InitReport {
    pub(super) status: Option<Status>,
    pub(super) killed: Vec<Leftover>,
    pub(super) failure: Option<SetupFailure>,
}

/// Runs init; never returns.
pub(super) fn run(spec: &Spec, root: &Path, mut report: File) -> ! {
    let out = match setup_and_run(spec, root) {
        Ok((status, killed)) => InitReport {
            status: Some(status),
            killed,
            failure: None,
        },
        Err(f) => {
            // Whatever started before the failure dies with us; nothing to list.
            InitReport {
                status: None,
                killed: Vec::new(),
                failure: Some(f.0),
            }
        }
    };
    let _ = report.write_all(&serde_json::to_vec(&out).unwrap_or_default());
    drop(report);
    sys::exit_now(0)
}

fn os(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

fn setup_and_run(spec: &Spec, root: &Path) -> Result<(Status, Vec<Leftover>), Fail> {
    let t0 = std::time::Instant::now();
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let _ = nix::sys::prctl::set_name(c"rbuild-init");

    // A mount namespace of our own, so pivoting does not move the helper's root.
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| Fail::host("cannot create the sandbox's mount namespace").cause(os(e)))?;
    let r = Root::open(root).map_err(|e| Fail::bug("cannot open the root file system").cause(e))?;
    if let Some(proc_dest) = spec.mounts.iter().find_map(|m| match m {
        super::spec::Mount::Proc { dest } => Some(dest.clone()),
        _ => None,
    }) {
        let comps: Vec<&OsStr> = proc_dest
            .split('/')
            .filter(|c| !c.is_empty())
            .map(OsStr::new)
            .collect();
        let dir = r
            .open_dir(&comps)
            .map_err(|e| Fail::bug(format!("cannot open `{proc_dest}`")).cause(e))?;
        let target = sys::fd_path(std::os::fd::AsRawFd::as_raw_fd(&dir.fd()));
        mount(
            Some("proc"),
            &target,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| {
            Fail::host("cannot mount `/proc` for the sandbox's PID namespace")
                .cause(os(e))
                .hint("inside a container, `/proc` must not be masked (Kubernetes: `procMount: Unmasked`; Docker: `--security-opt systempaths=unconfined`)")
        })?;
        if matches!(spec.execution, Execution::Private { .. }) {
            // The sandbox's own binfmt_misc instance, visible to nested builds (best
            // effort: the registration itself is already in place).
            let binfmt = root
                .join(proc_dest.trim_start_matches('/'))
                .join("sys/fs/binfmt_misc");
            let _ = mount(
                Some("binfmt_misc"),
                &binfmt,
                Some("binfmt_misc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            );
        }
    }
    drop(r);

    tracing::debug!(us = t0.elapsed().as_micros(), "init: proc mounted");
    unistd::chdir(root).map_err(|e| Fail::bug("cannot enter the root file system").cause(os(e)))?;
    unistd::pivot_root(".", ".")
        .map_err(|e| Fail::host("cannot pivot into the root file system").cause(os(e)))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| Fail::host("cannot detach the host's root").cause(os(e)))?;
    unistd::chdir("/").map_err(|e| Fail::bug("cannot enter `/`").cause(os(e)))?;
    tracing::debug!(us = t0.elapsed().as_micros(), "init: pivoted");

    // The user, from the image's own files.
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    let group = std::fs::read_to_string("/etc/group").ok();
    let who =
        user::resolve(&spec.process.user, passwd.as_deref(), group.as_deref()).map_err(|e| {
            Fail::input(format!("cannot run as user `{}`", spec.process.user))
                .cause(e)
                .hint("add the user to the image (`RUN useradd ...`) or give a numeric `uid:gid`")
        })?;
    if !spec.ids.maps_uid(who.uid) || !spec.ids.maps_gid(who.gid) {
        return Err(Fail::input(format!(
            "cannot run as user `{}` (uid {}, gid {}): only container ids 0-{} are mapped",
            spec.process.user,
            who.uid,
            who.gid,
            spec.ids.mapped().saturating_sub(1)
        ))
        .hint("give the user who runs rbuild a subordinate range of 65536 ids in `/etc/subuid` and `/etc/subgid`"));
    }
    let mut env = spec.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }
    let cwd = if spec.process.cwd.is_empty() {
        "/"
    } else {
        spec.process.cwd.as_str()
    };
    if !Path::new(cwd).is_dir() {
        std::fs::create_dir_all(cwd).map_err(|e| {
            Fail::input(format!("cannot create the working directory `{cwd}`")).cause(e)
        })?;
    }

    let argv: Vec<CString> = spec
        .process
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Fail::input("the command contains a NUL byte"))?;
    let envp: Vec<CString> = env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| Fail::input("the environment contains a NUL byte"))?;
    let Some(program) = spec.process.argv.first() else {
        return Err(Fail::input("no command to run"));
    };
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::spec::DEFAULT_PATH)
        .to_owned();

    // Signals are taken synchronously from a signalfd; the command gets a clean mask.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| Fail::bug("cannot block signals").cause(os(e)))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Fail::bug("cannot create a signalfd").cause(os(e)))?;
    tracing::debug!(us = t0.elapsed().as_micros(), "init: user resolved");

    // The command's side: ids, working directory, exec, in a child that shares our
    // memory until it execs (nothing of this process is copied for it).
    let groups: Vec<libc::gid_t> = who
        .groups
        .iter()
        .copied()
        .filter(|g| spec.ids.maps_gid(*g))
        .collect();
    let candidates: Vec<CString> = if program.contains('/') {
        vec![
            CString::new(program.as_bytes())
                .map_err(|_| Fail::input("the command contains a NUL byte"))?,
        ]
    } else {
        path_var
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(program))
            .filter_map(|c| CString::new(c.as_os_str().as_bytes()).ok())
            .collect()
    };
    let cwd_c = CString::new(cwd.as_bytes())
        .map_err(|_| Fail::input("the working directory contains a NUL byte"))?;
    let plan = sys::CommandPlan {
        cwd: &cwd_c,
        groups: (spec.ids.method != MapMethod::Single).then_some(groups.as_slice()),
        uid: who.uid,
        gid: who.gid,
        umask: spec.process.umask,
        candidates: &candidates,
        search: !program.contains('/'),
        argv: &argv,
        envp: &envp,
    };
    let (main, failure) =
        sys::spawn_command(&plan).map_err(|e| Fail::host("cannot start the command").cause(e))?;
    let mut status = None;
    if let Some(failure) = failure {
        let _ = waitpid(main, None);
        let (errno, reason) = match failure {
            sys::SpawnFailure::Chdir(e) => {
                (e, format!("cannot enter the working directory `{cwd}`"))
            }
            sys::SpawnFailure::Setgroups(e) => {
                (e, "cannot set the supplementary groups".to_owned())
            }
            sys::SpawnFailure::Setgid(e) => (e, format!("cannot switch to gid {}", who.gid)),
            sys::SpawnFailure::Setuid(e) => (e, format!("cannot switch to uid {}", who.uid)),
            sys::SpawnFailure::Exec(e) => (e, exec_reason(program, &path_var, Errno::from_raw(e))),
        };
        status = Some(Status::NotStarted {
            program: program.clone(),
            errno,
            reason,
        });
    }

    tracing::debug!(us = t0.elapsed().as_micros(), "init: command started");
    while status.is_none() {
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Fail::bug("cannot wait for the command").cause(os(e))),
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = i32::try_from(info.ssi_signo).unwrap_or(0);
            if sig == Signal::SIGTERM as i32
                || sig == Signal::SIGHUP as i32
                || sig == Signal::SIGQUIT as i32
            {
                let _ = kill(main, Signal::try_from(sig).ok());
            }
        }
        // Reap everything that ended: the command, and orphans re-parented to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == main => {
                    status = Some(Status::Exited { code });
                }
                Ok(WaitStatus::Signaled(pid, sig, core)) if pid == main => {
                    status = Some(Status::Signaled {
                        signal: sig as i32,
                        core_dumped: core,
                    });
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    tracing::debug!(us = t0.elapsed().as_micros(), "init: command ended");
    // What is left is killed; report it first.
    let leftovers = procscan::scan(Path::new("/proc"), |pid| pid != 1);
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while waitpid(Pid::from_raw(-1), None).is_ok() {}
    tracing::debug!(us = t0.elapsed().as_micros(), "init: leftovers killed");
    Ok((status.unwrap_or(Status::Exited { code: 0 }), leftovers))
}

/// Why `program` could not be executed, as a shell would report it.
fn exec_reason(program: &str, path_var: &str, errno: Errno) -> String {
    match errno {
        Errno::ENOENT if program.contains('/') => format!("`{program}` does not exist"),
        Errno::ENOENT => format!("`{program}` was not found in `PATH` (`{path_var}`)"),
        Errno::EACCES => format!("`{program}` is not executable"),
        Errno::ENOEXEC => format!(
            "`{program}` has an executable format this sandbox cannot run (exec format error)"
        ),
        other => format!("cannot execute `{program}`: {}", other.desc()),
    }
}

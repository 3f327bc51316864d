//! The sandbox helper: `rbuild sandbox-helper`, exec'd fresh (so it is single-threaded,
//! whatever the parent is) with a socket on descriptor 3. It reads a [`Spec`], applies it
//! and writes back a [`Reply`]:
//!
//! 1. outside any new namespace: prepare the state directory, lock a run directory, open
//!    the layer blobs still to unpack and the bind-mount sources (so they stay reachable
//!    when rbuild runs as real root and the sandbox maps to a subordinate range);
//! 2. fork a *mapper*, `unshare(CLONE_NEWUSER)`, let the mapper write the id maps
//!    (`newuidmap`/`newgidmap`, or directly when privileged), become container root;
//! 3. new mount, IPC, UTS (and, with `--network none`, network) namespaces;
//! 4. unpack missing layer snapshots (owners land as container ids), mount the overlay
//!    (or copy the snapshots), the standard mounts and volumes, register qemu in a
//!    private `binfmt_misc` for a foreign platform;
//! 5. `unshare(CLONE_NEWPID)` and fork the sandbox's init ([`super::init`]), then
//!    supervise it until its report arrives: signals, the timeout (which kills the whole
//!    PID namespace); a build step with file operations performs them here instead
//!    ([`super::fileop`]). Init is reaped before its run directory is reused or removed,
//!    and before the reply when the step keeps a snapshot (a lower of the next step);
//!    otherwise its exit overlaps with what follows;
//! 6. a successful build step: unmount, remove what the sandbox created in the upper
//!    directory, write its layer to descriptor 4 when asked, keep it as a snapshot;
//! 7. tear down: unmount, remove the run directory, report.
//!
//! The helper also answers [`TarJob`]s: the tar of existing snapshots, written from inside
//! a user namespace with the build's mapping (no other namespace unless layers must be
//! merged).
//!
//! With `--session` the helper does step 2 once and then forks a step helper per request
//! ([`serve`]), which creates a user namespace of its own nested in that one (mapped by
//! the session helper, every id kept) and does the rest as above; it replies before
//! removing its run directory, and the session ends only after all of them.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{self, Gid, Pid, Uid};

use super::failure::Fail;
use super::init::InitReport;
use super::result::{Fact, Leftover, Reply, Status, StepOutput, StepResult, TarReport};
use super::rooted::Root;
use super::spec::{
    IdMapping, LayerSpec, MapMethod, Mount, Network, RootfsMode, Spec, StepAction, StepSpec, TarJob,
};
use super::{fileop, mounts, procscan, snapshot, spares, sys};
use crate::arch::Execution;
use crate::layer::{self, Digest, ExtractReport};

/// Entry point of `rbuild sandbox-helper --parent PID [--session]`.
pub(super) fn main(parent: u32, session: bool) -> ExitCode {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Directories created implicitly (snapshot parents, mount points) get the usual
    // 0755, whatever the caller's umask; explicit modes are set with chmod anyway.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if u32::try_from(unistd::getppid().as_raw()).ok() != Some(parent) {
        // The parent is already gone (or this was run by hand): nobody to report to.
        return ExitCode::from(1);
    }
    let Some(fd) = sys::inherited_fd(3) else {
        let _ = writeln!(
            std::io::stderr(),
            "error: `rbuild sandbox-helper` is internal; it is started by `rbuild run` and `rbuild build`"
        );
        return ExitCode::from(2);
    };
    if session {
        return serve(UnixStream::from(fd));
    }
    // Descriptors 4 (a build step's layer out) and 5 (its copy sources in) are taken now,
    // before anything else opens a file that could get their numbers.
    let passed = Passed {
        diff_out: sys::inherited_fd(4).map(File::from),
        stream_in: sys::inherited_fd(5).map(File::from),
    };
    answer(UnixStream::from(fd), passed, None, Ok(()))
}

/// Reads one request from `sock`, performs it and writes the reply. `session` is the
/// mapping of the user namespace this process is already in (a session's step helper);
/// `entered` is how entering it went (on failure, that is the reply).
fn answer(
    mut sock: UnixStream,
    passed: Passed,
    session: Option<&IdMapping>,
    entered: Result<(), Fail>,
) -> ExitCode {
    // A session's helper answers before removing its run directory (its caller does not
    // wait for it to exit, and the session waits for all its helpers before it ends).
    let mut later = Later {
        defer: session.is_some(),
        dirs: Vec::new(),
        inits: Vec::new(),
    };
    let mut input = Vec::new();
    let reply = match sock.read_to_end(&mut input) {
        Err(e) => Reply::Failed(Fail::bug("cannot read the sandbox spec").cause(e).0),
        Ok(_) => match entered.map(|()| serde_json::from_slice::<Request>(&input)) {
            Err(f) => Reply::Failed(f.0),
            Ok(Err(e)) => Reply::Failed(Fail::bug("the sandbox spec is malformed").cause(e).0),
            Ok(Ok(Request::Run(spec))) => match run(&spec, passed, session, &mut later) {
                Ok(r) => Reply::Finished(r),
                Err(f) => Reply::Failed(f.0),
            },
            Ok(Ok(Request::Tar(job))) => match tar_job(&job, passed, session) {
                Ok(r) => Reply::Tarred(r),
                Err(f) => Reply::Failed(f.0),
            },
        },
    };
    let bytes = serde_json::to_vec(&reply).unwrap_or_default();
    tracing::debug!(peak_rss_kb = peak_rss_kb(), "sandbox: helper resources");
    if later.defer {
        // A session's step: the output pipes end before the reply comes, and the reply
        // then ends the exchange, so the caller goes on while this helper cleans up.
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            let _ = unistd::dup2_stdout(&null);
            let _ = unistd::dup2_stderr(&null);
        }
    }
    let code = match sock.write_all(&bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    };
    drop(sock);
    for mut init in later.inits.drain(..) {
        init.reap();
    }
    for dir in later.dirs.drain(..) {
        dir.retire();
    }
    code
}

/// Run directories whose removal waits until the reply is sent (see [`answer`]); they
/// are unmounted already, so the step's snapshot is final. Inits still ending are reaped
/// before their run directories are touched.
struct Later {
    defer: bool,
    dirs: Vec<RunDir>,
    inits: Vec<Reaper>,
}

impl Later {
    /// Unmounts `dir` and removes it now, or after the reply when deferring.
    fn clean(&mut self, mut dir: RunDir) {
        if self.defer {
            dir.unmount();
            self.dirs.push(dir);
        } else {
            dir.cleanup();
        }
    }

    /// [`Later::clean`] once the sandbox's `init` has been reaped.
    fn clean_after(&mut self, dir: RunDir, mut init: Reaper) {
        if self.defer {
            self.inits.push(init);
        } else {
            init.reap();
        }
        self.clean(dir);
    }
}

/// The sandbox's init, waited for when dropped (unless reaped already).
struct Reaper {
    pid: Pid,
    reaped: bool,
}

impl Reaper {
    fn reap(&mut self) {
        if !self.reaped {
            self.reaped = true;
            while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.reap();
    }
}

/// A session helper (`--session`): reads an [`IdMapping`] (one length-prefixed frame),
/// enters a user namespace with it once and answers with `null` or the [`Fail`]; then,
/// for every message on the socket (a tag and descriptors: the step's socket, stdout,
/// stderr, and the layer and copy-source pipes the tag announces), forks a step helper
/// that answers one request, as a fresh helper would after mapping, in a user namespace
/// of its own nested in the session's (every id kept as it is: [`IdMapping::nested`]).
/// The session writes that namespace's maps itself, as its root: no setuid helper and no
/// exec per step. Ends at end of file.
fn serve(mut ctl: UnixStream) -> ExitCode {
    let me = unistd::getpid();
    let ids = match read_frame(&mut ctl)
        .map_err(|e| Fail::bug("cannot read the session's id mapping").cause(e))
        .and_then(|b| {
            serde_json::from_slice::<IdMapping>(&b)
                .map_err(|e| Fail::bug("the session's id mapping is malformed").cause(e))
        }) {
        Ok(ids) => ids,
        Err(f) => {
            let _ = write_frame(
                &mut ctl,
                &serde_json::to_vec(&Some(f.0)).unwrap_or_default(),
            );
            return ExitCode::from(1);
        }
    };
    let entered = enter_user_namespace(&ids, me);
    let ready = entered.as_ref().err().map(|f| &f.0);
    if write_frame(&mut ctl, &serde_json::to_vec(&ready).unwrap_or_default()).is_err()
        || entered.is_err()
    {
        return ExitCode::from(1);
    }
    sys::reap_children_automatically();
    loop {
        let Ok(Some((tag, fds))) = sys::recv_fds(ctl.as_fd()) else {
            // With SIGCHLD ignored, wait returns once every step helper has ended (run
            // directories removed) and there is nothing to reap.
            loop {
                match nix::sys::wait::wait() {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => return ExitCode::SUCCESS,
                }
            }
        };
        // One pipe each way for the handshake of `nested_user_namespace`/`map_nested`;
        // without them the step's socket closes unanswered, as on a failed fork.
        let (Ok((unshared_r, unshared_w)), Ok((mapped_r, mapped_w))) = (
            unistd::pipe2(OFlag::O_CLOEXEC),
            unistd::pipe2(OFlag::O_CLOEXEC),
        ) else {
            continue;
        };
        match sys::fork() {
            Ok(sys::Forked::Child) => {
                drop((ctl, unshared_r, mapped_w));
                let entered = nested_user_namespace(unshared_w, mapped_r);
                sys::exit_now(session_step(tag, fds, me, &ids, entered));
            }
            Ok(sys::Forked::Parent(child)) => {
                drop((unshared_w, mapped_r, fds));
                map_nested(&ids, child, unshared_r, mapped_w);
            }
            // On a failed fork the step's socket closes unanswered; its caller reports it.
            Err(_) => drop(fds),
        }
    }
}

/// A session's step helper, just forked: creates its own user namespace, tells the
/// session (`unshared`: one byte, `1` when it worked) and waits for the session to map it
/// (`mapped`: `1`, or why it could not).
fn nested_user_namespace(unshared: OwnedFd, mapped: OwnedFd) -> Result<(), Fail> {
    let created = unshare(CloneFlags::CLONE_NEWUSER);
    let _ = File::from(unshared).write_all(if created.is_ok() { b"1" } else { b"0" });
    if let Err(e) = created {
        return Err(Fail::host("cannot create the build step's user namespace")
            .cause(os(e))
            .hint("the user may have reached `user.max_user_namespaces` (`sysctl user.max_user_namespaces`); raise it, or run fewer builds at once"));
    }
    let mut answer = String::new();
    let _ = File::from(mapped).read_to_string(&mut answer);
    if answer == "1" {
        return Ok(());
    }
    Err(
        Fail::host("cannot map ids into the build step's user namespace").because(
            if answer.is_empty() {
                "the session helper ended".to_owned()
            } else {
                answer
            },
        ),
    )
}

/// The session's side of [`nested_user_namespace`]: maps `child`'s new user namespace
/// with every id of the session's (`ids`) as it is.
fn map_nested(ids: &IdMapping, child: Pid, unshared: OwnedFd, mapped: OwnedFd) {
    let mut created = [0u8; 1];
    if !File::from(unshared)
        .read(&mut created)
        .is_ok_and(|n| n == 1 && created[0] == b'1')
    {
        return;
    }
    let answer = match write_maps(&ids.nested(), child) {
        Ok(()) => "1".to_owned(),
        Err(msg) => msg,
    };
    let _ = File::from(mapped).write_all(answer.as_bytes());
}

/// Tag bits of a session message: which optional descriptors follow the three fixed ones.
pub(super) const SESSION_DIFF_OUT: u8 = 1;
pub(super) const SESSION_STREAM_IN: u8 = 2;

/// A session's step helper, just forked: takes its descriptors and answers one request.
fn session_step(
    tag: u8,
    fds: Vec<OwnedFd>,
    session: Pid,
    ids: &IdMapping,
    entered: Result<(), Fail>,
) -> i32 {
    sys::wait_for_children();
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if unistd::getppid() != session {
        return 1;
    }
    let mut fds = fds.into_iter();
    let (Some(sock), Some(out), Some(err)) = (fds.next(), fds.next(), fds.next()) else {
        return 1;
    };
    if unistd::dup2_stdout(&out).is_err() || unistd::dup2_stderr(&err).is_err() {
        return 1;
    }
    drop((out, err));
    let diff_out = (tag & SESSION_DIFF_OUT != 0)
        .then(|| fds.next())
        .flatten()
        .map(File::from);
    let stream_in = (tag & SESSION_STREAM_IN != 0)
        .then(|| fds.next())
        .flatten()
        .map(File::from);
    let passed = Passed {
        diff_out,
        stream_in,
    };
    match answer(UnixStream::from(sock), passed, Some(ids), entered) {
        c if c == ExitCode::SUCCESS => 0,
        _ => 1,
    }
}

/// Reads a frame: a little-endian `u32` length and that many bytes.
pub(super) fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(std::io::Error::other("a frame longer than 16 MiB"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Writes a frame (see [`read_frame`]).
pub(super) fn write_frame(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

/// The descriptors a build step may pass besides the socket.
struct Passed {
    diff_out: Option<File>,
    stream_in: Option<File>,
}

/// What the helper is asked to do.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum Request {
    Run(Box<Spec>),
    Tar(TarJob),
}

/// This process's peak resident set size (`VmHWM`), for the benchmarks' debug log.
pub(crate) fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn os(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// A run directory, locked while the run lives (a stale one is one whose lock is free):
/// removed, with everything mounted in it, when dropped. On disk it holds only the
/// overlay's `upper` and `work` (and a copied root file system in copy mode); everything
/// else of the run lives in `tmp`, a tmpfs private to the helper's mount namespace.
struct RunDir {
    runs: PathBuf,
    id: String,
    /// Held open (and locked) while the run lives.
    lock: File,
    mounts: Vec<PathBuf>,
    done: bool,
}

impl RunDir {
    /// Detaches everything mounted for the run (idempotent).
    fn unmount(&mut self) {
        let t = Instant::now();
        // One lazy unmount takes a whole subtree; each call costs an RCU grace period, so
        // mounts below one already detached are skipped.
        let mut detached: Vec<&PathBuf> = Vec::new();
        for m in &self.mounts {
            if !detached.iter().any(|d| m.starts_with(d)) {
                let _ = umount2(m, MntFlags::MNT_DETACH);
                detached.push(m);
            }
        }
        self.mounts.clear();
        tracing::debug!(us = t.elapsed().as_micros(), "sandbox: cleanup unmounted");
    }

    fn cleanup(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.unmount();
        let t = Instant::now();
        if let Ok(runs) = Root::open(&self.runs).and_then(|r| r.dir()) {
            let _ = runs.remove_all(OsStr::new(&self.id));
        }
        tracing::debug!(us = t.elapsed().as_micros(), "sandbox: cleanup removed");
    }

    /// After a session's step helper has replied: keeps the directory as a spare for a
    /// later step when the step left nothing in it, or removes it and creates a fresh
    /// spare, while fewer than [`spares::WANTED`] wait (see [`spares`]).
    fn retire(mut self) {
        self.unmount();
        let wanted = spares::count(&self.runs) < spares::WANTED;
        if wanted && self.make_spare() {
            return;
        }
        self.cleanup();
        if wanted {
            let _ = spares::create(&self.runs);
        }
    }

    /// Empties the run directory down to what a spare holds (fresh `upper` and `work`)
    /// and renames it to a spare's name; `false` (and nothing renamed) when the step left
    /// something in `upper`.
    fn make_spare(&mut self) -> bool {
        let path = self.runs.join(&self.id);
        if !spares::is_empty_dir(&path.join("upper")) {
            return false;
        }
        let Ok(run) = Root::open(&path).and_then(|r| r.dir()) else {
            return false;
        };
        let Ok(names) = run.list() else {
            return false;
        };
        for name in names {
            let keep = spares::ENTRIES.iter().any(|e| OsStr::new(e) == name);
            if !keep && run.remove_all(&name).is_err() {
                return false;
            }
        }
        // The overlay's own `work/work` (with its `incompat/volatile` marker, which would
        // make the next mount refuse the directory) goes; `tmp` is empty once unmounted.
        let cleared = run.open_dir(OsStr::new("work")).and_then(|w| {
            for name in w.list()? {
                w.remove_all(&name)?;
            }
            Ok(())
        });
        let tmp_empty = run
            .open_dir(OsStr::new("tmp"))
            .and_then(|t| t.list())
            .is_ok_and(|l| l.is_empty());
        if cleared.is_err() || !tmp_empty {
            return false;
        }
        // Fresh inodes for `upper` and `work` (each renamed over its emptied old one):
        // overlayfs marks the directories of a mount in use until its superblock is gone,
        // and something outside can hold that past the next step's mount (a profiler that
        // keeps an exited command's memory map, executable on the overlay, alive). A fresh
        // `upper` also drops what a step did to the root directory's own metadata.
        for name in ["upper", "work"] {
            let fresh = path.join(format!("{name}.new"));
            if fs::create_dir(&fresh)
                .and_then(|()| fs::rename(&fresh, path.join(name)))
                .is_err()
            {
                return false;
            }
        }
        if fs::rename(&path, self.runs.join(spares::fresh_name())).is_err() {
            return false;
        }
        // Renamed away: nothing left to remove; dropping the lock frees the spare.
        self.done = true;
        true
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn mkdir_owned(path: &Path, owner: Option<(u32, u32)>) -> Result<(), Fail> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Fail::host(format!("cannot create `{}`", path.display()))
                .cause(e)
                .hint("check that rbuild's cache directory (`--cache-dir`) is writable"));
        }
    }
    if let Some((u, g)) = owner {
        let meta = fs::metadata(path)
            .map_err(|e| Fail::host(format!("cannot inspect `{}`", path.display())).cause(e))?;
        if meta.uid() != u || meta.gid() != g {
            unistd::chown(path, Some(Uid::from_raw(u)), Some(Gid::from_raw(g))).map_err(|e| {
                Fail::host(format!(
                    "cannot hand `{}` to the sandbox's root",
                    path.display()
                ))
                .cause(os(e))
            })?;
        }
    }
    Ok(())
}

/// Applies `spec`: everything from creating the namespaces to tearing them down.
fn run(
    spec: &Spec,
    passed: Passed,
    session: Option<&IdMapping>,
    later: &mut Later,
) -> Result<StepResult, Fail> {
    let started = Instant::now();
    let me = unistd::getpid();
    if session.is_some_and(|ids| *ids != spec.ids) {
        return Err(Fail::bug(
            "a session helper got a spec with another id mapping",
        ));
    }
    // When container root is not us on the outside (real root mapping to a subordinate
    // range), what we create before entering the namespace must be handed to it.
    let root_outside = (
        spec.ids
            .outside_uid(0)
            .ok_or_else(|| Fail::bug("container root is not mapped"))?,
        spec.ids
            .outside_gid(0)
            .ok_or_else(|| Fail::bug("container root group is not mapped"))?,
    );
    // (A session's helpers only serve mappings whose root is the caller itself.)
    let owner = (session.is_none()
        && (root_outside.0 != unistd::geteuid().as_raw()
            || root_outside.1 != unistd::getegid().as_raw()))
    .then_some(root_outside);

    // 1. Outside: directories, the run lock, the blobs and volume sources.
    if let Some(parent) = spec.state_dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Fail::host(format!("cannot create `{}`", parent.display())).cause(e))?;
    }
    let runs = spec.state_dir.join("runs");
    let snapshots = spec.state_dir.join("snapshots").join(spec.ids.tag());
    for d in [
        &spec.state_dir,
        &runs,
        &spec.state_dir.join("snapshots"),
        &snapshots,
    ] {
        mkdir_owned(d, owner)?;
    }
    sys::spread_subdirectories(&runs);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{}-{nanos:x}", me.as_raw());
    let run_path = runs.join(&id);
    // A session's steps take a spare run directory when one is waiting (see `spares`).
    let spare = session.and_then(|_| spares::claim(&runs, &id));
    let lock = if let Some(lock) = spare {
        lock
    } else {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&run_path)
            .map_err(|e| Fail::host(format!("cannot create `{}`", run_path.display())).cause(e))?;
        File::open(&run_path)
            .map_err(|e| Fail::host(format!("cannot open `{}`", run_path.display())).cause(e))?
    };
    let mut run_dir = RunDir {
        runs: runs.clone(),
        id: id.clone(),
        lock,
        mounts: Vec::new(),
        done: false,
    };
    run_dir
        .lock
        .lock()
        .map_err(|e| Fail::host(format!("cannot lock `{}`", run_path.display())).cause(e))?;
    mkdir_owned(&run_path, owner)?;

    // The step's descriptors: its layer goes out on 4, streamed copy sources come in on 5.
    let (diff_out, stream_in) = if spec.step.is_some() {
        (passed.diff_out, passed.stream_in)
    } else {
        (None, None)
    };
    let all_layers: Vec<&LayerSpec> = spec
        .layers
        .iter()
        .chain(spec.step.iter().flat_map(|s| s.trees.iter().flatten()))
        .collect();
    let mut to_unpack: Vec<(usize, File)> = Vec::new();
    for (i, l) in all_layers.iter().enumerate() {
        if l.dir.is_some() {
            continue;
        }
        if !snapshot::snapshot_dir(&snapshots, &l.diff_id).is_dir() {
            let f = File::open(&l.blob).map_err(|e| {
                Fail::input(format!("cannot open layer `{}`", l.digest))
                    .cause(e)
                    .because(format!("expected at `{}`", l.blob.display()))
            })?;
            to_unpack.push((i, f));
        }
    }
    let mut volumes: Vec<Option<OwnedFd>> = Vec::new();
    for m in &spec.mounts {
        if let Mount::Bind { source, .. } = m {
            let fd = nix::fcntl::open(
                source,
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                Fail::input(format!(
                    "cannot bind `{}` into the sandbox",
                    source.display()
                ))
                .cause(os(e))
            })?;
            // When rbuild may mount here (real root), the source is also cloned as a
            // detached mount tree, attached later inside the sandbox: container root (a
            // subordinate id) may not be able to reach the path itself.
            volumes.push(if owner.is_some() {
                sys::clone_tree(fd.as_fd()).ok()
            } else {
                None
            });
        }
    }

    tracing::debug!(
        us = started.elapsed().as_micros(),
        "sandbox: state prepared"
    );
    // 2. The user namespace (a session's step helper is in its own already: see `serve`).
    if session.is_none() {
        enter_user_namespace(&spec.ids, me)?;
    }

    tracing::debug!(
        us = started.elapsed().as_micros(),
        "sandbox: user namespace mapped"
    );
    // 3. The other namespaces.
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare_private(flags, "the sandbox's namespaces")?;
    unistd::sethostname(&spec.hostname)
        .map_err(|e| Fail::host("cannot set the sandbox's hostname").cause(os(e)))?;
    if spec.network == Network::None {
        sys::loopback_up()
            .map_err(|e| Fail::host("cannot bring up the sandbox's loopback interface").cause(e))?;
    }
    sweep(&runs, &id);
    let tmp = run_path.join("tmp");
    mkdir_owned(&tmp, None)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700,size=16m"),
    )
    .map_err(|e| Fail::host("cannot mount the run's private tmpfs").cause(os(e)))?;
    run_dir.mounts.push(tmp.clone());

    tracing::debug!(
        us = started.elapsed().as_micros(),
        "sandbox: namespaces created"
    );
    // 4. The root file system.
    let mut facts = spec.facts.clone();
    let mut report = ExtractReport::default();
    let unpacked: Vec<usize> = to_unpack.iter().map(|(i, _)| *i).collect();
    for (i, blob) in to_unpack {
        let l = all_layers[i];
        let target = snapshot::snapshot_dir(&snapshots, &l.diff_id);
        let staging = run_path.join(format!("unpack-{i}"));
        let expected = layer::Expected {
            digest: Digest::parse(&l.digest).ok(),
            diff_id: Digest::parse(&l.diff_id).ok(),
        };
        let r = snapshot::unpack(blob, &expected, &staging, &target).map_err(|e| {
            Fail::input(format!("cannot unpack layer `{}`", l.digest))
                .cause(e)
                .hint("the image is damaged or hostile; rebuild it or pull it again")
        })?;
        report.merge(&r);
    }
    for (i, l) in all_layers.iter().enumerate() {
        if l.dir.is_some() {
            if !snapshot::snapshot_dir(&snapshots, l.snapshot_name()).is_dir() {
                return Err(Fail::bug(format!(
                    "the build step snapshot `{}` is missing",
                    l.snapshot_name()
                ))
                .hint("run the build again with `--no-cache`"));
            }
        } else if !unpacked.contains(&i) {
            report.merge(&snapshot::cached_report(&snapshot::snapshot_dir(
                &snapshots, &l.diff_id,
            )));
        }
    }
    facts.extend(super::result::facts_from_extract(
        &report,
        spec.ids.mapped(),
    ));

    let runs_process = !matches!(
        spec.step.as_ref().map(|s| &s.action),
        Some(StepAction::Files { .. })
    );
    // The step's source trees (other stages and images), read-only overlays whose
    // writes (through a `rw` bind mount) go to a scratch upper directory.
    let mut trees: Vec<PathBuf> = Vec::new();
    if let Some(step) = &spec.step {
        for (t, layers) in step.trees.iter().enumerate() {
            let path = tmp.join(format!("tree-{t}"));
            mkdir_owned(&path, None)?;
            let tree_lowers: Vec<PathBuf> = layers
                .iter()
                .map(|l| snapshot::snapshot_dir(&snapshots, l.snapshot_name()))
                .collect();
            mount_overlay(
                &tree_lowers,
                &run_path,
                &snapshots,
                &path,
                &format!("tree-{t}-"),
            )
            .map_err(|reason| {
                Fail::host("cannot mount a source stage of the build step").because(reason)
            })?;
            run_dir.mounts.push(path.clone());
            trees.push(path);
        }
    }

    let mut lowers: Vec<PathBuf> = Vec::new();
    if spec.step.is_some() && runs_process {
        // Mount points in a lower of their own, below the image, so that mounting them
        // never adds stubs (or copied-up parents) to the step's changes.
        lowers.push(make_stubs(&tmp, &spec.mounts, &trees)?);
    }
    lowers.extend(
        spec.layers
            .iter()
            .map(|l| snapshot::snapshot_dir(&snapshots, l.snapshot_name())),
    );
    let mut root = if spec.rootfs == RootfsMode::Copy {
        run_path.join("root")
    } else {
        tmp.join("root")
    };
    mkdir_owned(&root, None)?;
    let rootfs = match spec.rootfs {
        RootfsMode::Overlay => match mount_overlay(&lowers, &run_path, &snapshots, &root, "") {
            Ok(()) => "overlay",
            Err(reason) if spec.step.is_some() => {
                // A build step's changes are its overlay upper directory: no fallback.
                return Err(Fail::host("cannot mount the build step's overlay")
                    .because(&reason)
                    .hint("put rbuild's cache (`--cache-dir`) on a local file system that is not itself overlayfs (ext4, xfs, btrfs, tmpfs), on Linux >= 5.11")
                    .fact(Fact::OverlayFallback { reason }));
            }
            Err(reason) => {
                facts.push(Fact::OverlayFallback { reason });
                // The copy goes to disk, not to the small private tmpfs.
                let _ = fs::remove_dir(&root);
                root = run_path.join("root");
                mkdir_owned(&root, None)?;
                copy_rootfs(&lowers, &root)?;
                "copy"
            }
        },
        RootfsMode::Copy => {
            facts.push(Fact::OverlayFallback {
                reason: "the copy-based root file system was requested (`RBUILD_ROOTFS=copy`)"
                    .to_owned(),
            });
            copy_rootfs(&lowers, &root)?;
            "copy"
        }
    };
    run_dir.mounts.push(root.clone());

    tracing::debug!(
        us = started.elapsed().as_micros(),
        rootfs,
        "sandbox: root file system ready"
    );
    if let Some(StepSpec {
        action: StepAction::Files { ops },
        ..
    }) = &spec.step
    {
        let merged = Root::open(&root).map_err(|e| Fail::bug("cannot open the root").cause(e))?;
        let tree_roots = trees
            .iter()
            .map(|t| Root::open(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fail::bug("cannot open a source tree").cause(e))?;
        let run_started = Instant::now();
        fileop::apply(&merged, ops, stream_in, &tree_roots)?;
        drop((merged, tree_roots));
        let setup_ms = ms(started.elapsed()) - ms(run_started.elapsed());
        let run_ms = ms(run_started.elapsed());
        let teardown_started = Instant::now();
        let step = finish_step(spec, &mut run_dir, &run_path, &snapshots, &[], diff_out)?;
        later.clean(run_dir);
        return Ok(StepResult {
            status: Status::Exited { code: 0 },
            killed: Vec::new(),
            facts,
            rootfs: rootfs.to_owned(),
            mountpoints_created: Vec::new(),
            setup_ms,
            run_ms,
            teardown_ms: ms(teardown_started.elapsed()),
            step,
        });
    }

    let files = tmp.join("files");
    mkdir_owned(&files, None)?;
    let extra = mounts::Extra {
        trees: &trees,
        cache_dir: spec.state_dir.join("cache").join(spec.ids.tag()),
    };
    let (created, _cache_locks) = mounts::apply(&root, &spec.mounts, &files, &volumes, &extra)?;
    drop(volumes);

    let execution = register_binfmt(spec, &tmp, &mut run_dir)?;

    if spec.process.raise_nofile
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }

    tracing::debug!(
        us = started.elapsed().as_micros(),
        "sandbox: mounts applied"
    );
    // 5. The PID namespace and its init.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)
        .map_err(|e| Fail::bug("cannot block signals").cause(os(e)))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Fail::bug("cannot create a signalfd").cause(os(e)))?;
    unshare(CloneFlags::CLONE_NEWPID)
        .map_err(|e| Fail::host("cannot create the sandbox's PID namespace").cause(os(e)))?;
    // Init's report comes through a pipe (read end non-blocking, for `supervise`): its
    // end of file says the sandbox is over, while init's own exit (tearing down its
    // mount and PID namespaces) goes on beside what the helper does next.
    let (report_r, report_w) = unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Fail::bug("cannot create a pipe").cause(os(e)))?;
    nix::fcntl::fcntl(&report_r, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| Fail::bug("cannot create a pipe").cause(os(e)))?;
    let setup_ms = ms(started.elapsed());
    let run_started = Instant::now();
    let init =
        match sys::fork().map_err(|e| Fail::host("cannot start the sandbox's init").cause(e))? {
            sys::Forked::Child => {
                drop((sfd, report_r));
                super::init::run(spec, &root, File::from(report_w))
            }
            sys::Forked::Parent(pid) => pid,
        };
    drop(report_w);
    // Declared after the run directory, so that it is dropped first: init is reaped
    // (its mounts gone) before the run directory is removed or reused.
    let mut init = Reaper {
        pid: init,
        reaped: false,
    };
    let supervised = supervise(
        &mut init,
        spec.timeout_ms.map(Duration::from_millis),
        &sfd,
        &File::from(report_r),
    );
    let timed_out = supervised.timed_out;
    let run_ms = ms(run_started.elapsed());

    tracing::debug!(us = started.elapsed().as_micros(), "sandbox: init reported");
    // 6. Report and tear down.
    let teardown_started = Instant::now();
    let init_report: Option<InitReport> = serde_json::from_slice(&supervised.report).ok();
    let succeeded = timed_out.is_none()
        && init_report
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .is_some_and(Status::success);
    let step = if succeeded {
        finish_step(
            spec,
            &mut run_dir,
            &run_path,
            &snapshots,
            &created,
            diff_out,
        )?
    } else {
        None
    };
    // A kept snapshot is a lower of the next step at once; init's copy of the overlay
    // (the snapshot as its upper directory) must be gone by then. Otherwise init's exit
    // may go on past the reply; the run directory waits for it.
    if step.is_some_and(|s| s.changed) {
        init.reap();
    }
    later.clean_after(run_dir, init);
    tracing::debug!(us = started.elapsed().as_micros(), "sandbox: torn down");
    let teardown_ms = ms(teardown_started.elapsed());

    let (status, killed) = match (timed_out, init_report) {
        (Some(leftovers), _) => (
            Status::TimedOut {
                after_ms: spec.timeout_ms.unwrap_or(0),
            },
            leftovers,
        ),
        (
            None,
            Some(InitReport {
                failure: Some(f), ..
            }),
        ) => return Err(Fail(f)),
        (
            None,
            Some(InitReport {
                status: Some(s),
                killed,
                ..
            }),
        ) => (s, killed),
        (None, _) => return Err(Fail::bug("the sandbox's init ended without a report")),
    };
    if !killed.is_empty() && !matches!(status, Status::TimedOut { .. }) {
        facts.push(Fact::LeakedProcesses {
            processes: killed.clone(),
        });
    }
    let platform = spec.platform.to_string();
    match (&status, &execution) {
        (Status::NotStarted { errno, program, .. }, _) if *errno == libc::ENOEXEC => {
            facts.push(Fact::ExecFormatError {
                platform: platform.clone(),
                program: program.clone(),
            });
        }
        (Status::Signaled { signal, .. }, Execution::Private { registration, .. }) => {
            facts.push(Fact::EmulatorSignal {
                platform: platform.clone(),
                signal: *signal,
                interpreter: registration.interpreter.display().to_string(),
            });
        }
        (Status::Signaled { signal, .. }, Execution::Host { entry }) => {
            facts.push(Fact::EmulatorSignal {
                platform: platform.clone(),
                signal: *signal,
                interpreter: entry.interpreter.display().to_string(),
            });
        }
        _ => {}
    }
    Ok(StepResult {
        status,
        killed,
        facts,
        rootfs: rootfs.to_owned(),
        mountpoints_created: created,
        setup_ms,
        run_ms,
        teardown_ms,
        step,
    })
}

/// The bottom lower of a build step's overlay: every mount point of the step (`/proc`,
/// `/sys`, `/dev`, `/etc/hosts`, ..., `RUN --mount` targets) with its parents, so that
/// mounting them creates nothing in the step's upper directory when the image lacks them
/// (where an image layer hides a stub, the mount point is created in the upper directory
/// and removed again when the step ends).
fn make_stubs(tmp: &Path, mounts: &[Mount], trees: &[PathBuf]) -> Result<PathBuf, Fail> {
    let dir = tmp.join("stubs");
    let fail = |e: std::io::Error| Fail::host("cannot create the mount-point stubs").cause(e);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .map_err(fail)?;
    for m in mounts {
        let dest = m.dest();
        if dest.starts_with("/dev/") {
            continue;
        }
        let is_dir = match m {
            Mount::Proc { .. }
            | Mount::Sysfs { .. }
            | Mount::Tmpfs { .. }
            | Mount::Devpts { .. }
            | Mount::Cache { .. } => true,
            Mount::Device { .. } | Mount::File { .. } => false,
            Mount::Symlink { .. } => continue,
            Mount::Bind { source, .. } => source.is_dir(),
            Mount::Tree { tree, path, .. } => trees
                .get(*tree)
                .is_some_and(|t| t.join(path.trim_start_matches('/')).is_dir()),
        };
        let rel = dest.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c == ".") {
            continue;
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(fail)?;
        }
        if is_dir {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(fail)?;
        } else if !path.exists() {
            File::create(&path).map_err(fail)?;
        }
    }
    Ok(dir)
}

/// After a build step succeeded: its upper directory, with the mount points the sandbox
/// created removed, becomes the snapshot the spec names (when it holds anything), and its
/// layer goes to descriptor 4 when asked for.
fn finish_step(
    spec: &Spec,
    run_dir: &mut RunDir,
    run_path: &Path,
    snapshots: &Path,
    created: &[String],
    diff_out: Option<File>,
) -> Result<Option<StepOutput>, Fail> {
    let Some(step) = &spec.step else {
        return Ok(None);
    };
    // With everything unmounted the upper directory is final.
    run_dir.unmount();
    let upper = run_path.join("upper");
    let exclude: Vec<PathBuf> = created
        .iter()
        .map(|c| PathBuf::from(c.trim_start_matches('/')))
        .collect();
    if !exclude.is_empty() {
        // Deepest first; a created directory the step put something into stays.
        let r = Root::open(&upper)
            .map_err(|e| Fail::bug("cannot open the step's upper directory").cause(e))?;
        for rel in exclude.iter().rev() {
            let comps: Vec<&OsStr> = rel.iter().collect();
            if let Some((name, parent)) = comps.split_last()
                && let Ok(d) = r.open_dir(parent)
            {
                let _ = d.remove_if_empty(name);
            }
        }
    }
    let changed = fs::read_dir(&upper)
        .map_err(|e| Fail::bug("cannot read the step's upper directory").cause(e))?
        .next()
        .is_some();
    let mut entries = 0;
    let mut diff_written = false;
    if let (Some(d), Some(out), true) = (step.diff, diff_out, changed) {
        // What the sandbox created is gone from the upper directory by now (a directory
        // the step wrote into stays, with the step's files).
        let opts = layer::diff::DiffOptions {
            clamp_mtime: d.clamp_mtime,
            exclude: Vec::new(),
        };
        let (w, summary) = layer::diff::write_diff(
            &upper,
            std::io::BufWriter::with_capacity(256 << 10, out),
            &opts,
        )
        .map_err(|e| Fail::host("cannot write the step's layer").cause(e))?;
        w.into_inner()
            .map_err(|e| Fail::host("cannot write the step's layer").cause(e.into_error()))?;
        entries = summary.entries;
        diff_written = true;
    }
    if changed {
        let target = snapshots.join(&step.keep);
        match fs::rename(&upper, &target) {
            Ok(()) => {}
            // The same step finished meanwhile in another build; theirs is as good.
            Err(_) if target.is_dir() => {}
            Err(e) => {
                return Err(Fail::host(format!(
                    "cannot keep the step's snapshot `{}`",
                    target.display()
                ))
                .cause(e));
            }
        }
    }
    Ok(Some(StepOutput {
        changed,
        diff_written,
        entries,
    }))
}

/// A [`TarJob`]: one snapshot's layer, or the merged file system of several, as a tar on
/// descriptor 4, written from inside a user namespace with the build's mapping.
fn tar_job(job: &TarJob, passed: Passed, session: Option<&IdMapping>) -> Result<TarReport, Fail> {
    let me = unistd::getpid();
    if session.is_some_and(|ids| *ids != job.ids) {
        return Err(Fail::bug(
            "a session helper got a tar job with another id mapping",
        ));
    }
    let out = passed
        .diff_out
        .ok_or_else(|| Fail::bug("a tar job has no output (descriptor 4)"))?;
    let snapshots = job.state_dir.join("snapshots").join(job.ids.tag());
    let mut blobs: Vec<(usize, File)> = Vec::new();
    for (i, l) in job.layers.iter().enumerate() {
        if l.dir.is_none() && !snapshot::snapshot_dir(&snapshots, &l.diff_id).is_dir() {
            let f = File::open(&l.blob)
                .map_err(|e| Fail::input(format!("cannot open layer `{}`", l.digest)).cause(e))?;
            blobs.push((i, f));
        }
    }
    if session.is_none() {
        enter_user_namespace(&job.ids, me)?;
    }
    let opts = layer::diff::DiffOptions {
        clamp_mtime: job.diff.clamp_mtime,
        exclude: Vec::new(),
    };
    let write = |dir: &Path| -> Result<TarReport, Fail> {
        let (w, summary) = layer::diff::write_diff(
            dir,
            std::io::BufWriter::with_capacity(256 << 10, &out),
            &opts,
        )
        .map_err(|e| Fail::host("cannot write the tar").cause(e))?;
        w.into_inner()
            .map_err(|e| Fail::host("cannot write the tar").cause(e.into_error()))?;
        Ok(TarReport {
            entries: summary.entries,
        })
    };
    if let [one] = job.layers.as_slice()
        && blobs.is_empty()
    {
        return write(&snapshot::snapshot_dir(&snapshots, one.snapshot_name()));
    }
    // Several layers (or one not unpacked yet): unpack what is missing and mount them.
    unshare_private(CloneFlags::CLONE_NEWNS, "a mount namespace")?;
    let runs = job.state_dir.join("runs");
    mkdir_owned(&runs, None)?;
    sys::spread_subdirectories(&runs);
    let id = format!("{}-tar", me.as_raw());
    let run_path = runs.join(&id);
    let _ = fs::remove_dir_all(&run_path);
    mkdir_owned(&run_path, None)?;
    let mut run_dir = RunDir {
        runs,
        id,
        lock: File::open(&run_path)
            .map_err(|e| Fail::host(format!("cannot open `{}`", run_path.display())).cause(e))?,
        mounts: Vec::new(),
        done: false,
    };
    let _ = run_dir.lock.lock();
    for (i, blob) in blobs {
        let l = &job.layers[i];
        let target = snapshot::snapshot_dir(&snapshots, &l.diff_id);
        let expected = layer::Expected {
            digest: Digest::parse(&l.digest).ok(),
            diff_id: Digest::parse(&l.diff_id).ok(),
        };
        snapshot::unpack(
            blob,
            &expected,
            &run_path.join(format!("unpack-{i}")),
            &target,
        )
        .map_err(|e| Fail::input(format!("cannot unpack layer `{}`", l.digest)).cause(e))?;
    }
    let lowers: Vec<PathBuf> = job
        .layers
        .iter()
        .map(|l| snapshot::snapshot_dir(&snapshots, l.snapshot_name()))
        .collect();
    let merged = run_path.join("merged");
    mkdir_owned(&merged, None)?;
    mount_overlay(&lowers, &run_path, &snapshots, &merged, "")
        .map_err(|reason| Fail::host("cannot mount the image's layers").because(reason))?;
    run_dir.mounts.push(merged.clone());
    let r = write(&merged);
    run_dir.cleanup();
    r
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Creates the user namespace and maps it (via a forked mapper still outside), then
/// makes this process container root with no supplementary groups.
fn enter_user_namespace(ids: &IdMapping, me: Pid) -> Result<(), Fail> {
    let (go_r, go_w) = unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Fail::bug("cannot create a pipe").cause(os(e)))?;
    let (res_r, res_w) = unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Fail::bug("cannot create a pipe").cause(os(e)))?;
    let mapper = match sys::fork().map_err(|e| Fail::host("cannot fork the id mapper").cause(e))? {
        sys::Forked::Child => {
            drop(go_w);
            drop(res_r);
            let mut go = [0u8; 1];
            let ready = File::from(go_r).read(&mut go).is_ok_and(|n| n == 1);
            if !ready {
                sys::exit_now(1);
            }
            let code = match write_maps(ids, me) {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = File::from(res_w).write_all(msg.as_bytes());
                    1
                }
            };
            sys::exit_now(code)
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(go_r);
    drop(res_w);
    let unshared = unshare(CloneFlags::CLONE_NEWUSER);
    // Tell the mapper to go on (or, on failure, to give up: it sees end of file).
    let mut go_w = File::from(go_w);
    if unshared.is_ok() {
        let _ = go_w.write_all(b"1");
    }
    drop(go_w);
    let mut mapper_msg = String::new();
    let _ = File::from(res_r).read_to_string(&mut mapper_msg);
    let mapper_status = waitpid(mapper, None);
    if let Err(e) = unshared {
        return Err(Fail::host("cannot create a user namespace")
            .cause(os(e))
            .hint("unprivileged user namespaces must be allowed: `sysctl kernel.unprivileged_userns_clone=1` (Debian), `sysctl user.max_user_namespaces=28633`; on Ubuntu 23.10+ also `sysctl kernel.apparmor_restrict_unprivileged_userns=0`")
            .hint("inside a container, run it with seccomp and AppArmor unconfined (Kubernetes: `seccompProfile: Unconfined`, `appArmorProfile: Unconfined`)"));
    }
    if !matches!(mapper_status, Ok(WaitStatus::Exited(_, 0))) {
        let mut f = Fail::host("cannot map ids into the sandbox's user namespace").because(
            if mapper_msg.is_empty() {
                "the id mapper failed".to_owned()
            } else {
                mapper_msg.trim().to_owned()
            },
        );
        f = match &ids.method {
            MapMethod::Newidmap { .. } => f
                .hint("check the user's ranges in `/etc/subuid` and `/etc/subgid` (no overlap with other users) and that `newuidmap`/`newgidmap` are setuid root (`apt-get install --reinstall uidmap`)")
                .hint("on Ubuntu 23.10+: `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"),
            _ => f.hint("on Ubuntu 23.10+: `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"),
        };
        return Err(f);
    }
    let root_g = Gid::from_raw(0);
    unistd::setresgid(root_g, root_g, root_g)
        .map_err(|e| Fail::host("cannot become root in the sandbox").cause(os(e)))?;
    if ids.method != MapMethod::Single {
        // Supplementary groups of the caller are not mapped; drop them (allowed since the
        // maps were written by a privileged writer, which leaves `setgroups` enabled).
        let _ = unistd::setgroups(&[]);
    }
    let root_u = Uid::from_raw(0);
    unistd::setresuid(root_u, root_u, root_u)
        .map_err(|e| Fail::host("cannot become root in the sandbox").cause(os(e)))?;
    Ok(())
}

/// The mapper's job: write the maps of `pid`'s new user namespace.
fn write_maps(ids: &IdMapping, pid: Pid) -> Result<(), String> {
    let triples = |ranges: &[super::spec::IdRange]| -> Vec<String> {
        ranges
            .iter()
            .flat_map(|r| {
                [
                    r.inside.to_string(),
                    r.outside.to_string(),
                    r.count.to_string(),
                ]
            })
            .collect()
    };
    match &ids.method {
        MapMethod::Newidmap {
            newuidmap,
            newgidmap,
        } => {
            let map = |tool: &Path, ranges: &[super::spec::IdRange]| {
                let out = Command::new(tool)
                    .arg(pid.as_raw().to_string())
                    .args(triples(ranges))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .output()
                    .map_err(|e| format!("cannot run `{}`: {e}", tool.display()))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "`{}` failed ({}): {}",
                        tool.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            };
            // Both at once, from two threads of this (forked, throwaway) process: starting
            // a command waits until it has executed, and executing a setuid program is
            // most of what each costs (~1 ms).
            std::thread::scope(|s| {
                let gid = s.spawn(|| map(newgidmap, &ids.gid));
                let uid = map(newuidmap, &ids.uid);
                let gid = gid
                    .join()
                    .unwrap_or_else(|_| Err(format!("`{}` failed", newgidmap.display())));
                uid.and(gid)
            })
        }
        MapMethod::Direct | MapMethod::Single => {
            let proc = PathBuf::from(format!("/proc/{}", pid.as_raw()));
            let write = |file: &str, text: &str| {
                fs::write(proc.join(file), text).map_err(|e| {
                    format!(
                        "cannot write `/proc/{}/{file}` (`{}`): {e}",
                        pid.as_raw(),
                        text.trim()
                    )
                })
            };
            if ids.method == MapMethod::Single {
                write("setgroups", "deny")?;
            }
            write("uid_map", &ids.uid_map())?;
            write("gid_map", &ids.gid_map())
        }
    }
}

/// Enters new namespaces (`flags`, a mount namespace among them; `what` names them in
/// errors) and makes every mount in the new mount namespace private, so nothing mounted
/// here propagates to the host and nothing the host mounts later appears here.
fn unshare_private(flags: CloneFlags, what: &str) -> Result<(), Fail> {
    unshare(flags).map_err(|e| Fail::host(format!("cannot create {what}")).cause(os(e)))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Fail::host("cannot make the sandbox's mounts private").cause(os(e)))
}

/// Removes run directories whose helper is gone (their lock is free and they are not
/// new: a run locks its directory right after creating it).
fn sweep(runs: &Path, own: &str) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    let Ok(dir) = Root::open(runs).and_then(|r| r.dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name == own || spares::is_spare(&name) {
            continue;
        }
        let old = fs::symlink_metadata(e.path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_mins(1));
        let stale = old && File::open(e.path()).is_ok_and(|f| f.try_lock().is_ok());
        if stale {
            let _ = dir.remove_all(&name);
        }
    }
}

/// Mounts overlayfs at `root` over `lowers` (bottom first) with a fresh upper directory.
fn mount_overlay(
    lowers: &[PathBuf],
    run: &Path,
    snapshots: &Path,
    root: &Path,
    prefix: &str,
) -> Result<(), String> {
    let upper = run.join(format!("{prefix}upper"));
    let work = run.join(format!("{prefix}work"));
    for d in [&upper, &work] {
        match fs::create_dir(d) {
            Ok(()) => {}
            // A spare run directory's, empty (checked when it was claimed).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && prefix.is_empty() => {}
            Err(e) => return Err(format!("cannot create `{}`: {e}", d.display())),
        }
    }
    // Lower directories are named relative to the snapshot directory (the helper's
    // working directory for the mount call) to keep the option string short.
    let mut names: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| match p.strip_prefix(snapshots) {
            Ok(rel) if rel.components().count() == 1 => rel.to_string_lossy().into_owned(),
            _ => p.display().to_string(),
        })
        .collect();
    if names.len() < 2 && !prefix.is_empty() {
        // Source trees: at least two lowers keep whiteouts and opaque markers of a
        // single layer from showing.
        let empty = run.join(format!("{prefix}empty"));
        fs::create_dir(&empty).map_err(|e| format!("cannot create `{}`: {e}", empty.display()))?;
        names.push(empty.display().to_string());
    }
    if names.is_empty() {
        let empty = run.join("empty");
        fs::create_dir(&empty).map_err(|e| format!("cannot create `{}`: {e}", empty.display()))?;
        names.push(empty.display().to_string());
    }
    // `volatile`: no sync of the whole upper file system when the overlay is unmounted
    // (after every step) and no-op fsyncs inside; the snapshot is as durable as the rest
    // of the cache (blobs and records are not fsynced either).
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr,volatile",
        names.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() >= 4000 {
        return Err(format!(
            "{} layers are more than one overlay mount can name",
            lowers.len()
        ));
    }
    let cwd = std::env::current_dir().ok();
    unistd::chdir(snapshots).map_err(|e| format!("cannot enter `{}`: {e}", snapshots.display()))?;
    let res = mount(
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    );
    if let Some(c) = cwd {
        let _ = unistd::chdir(&c);
    }
    res.map_err(|e| format!("mount -t overlay: {}", e.desc()))
}

fn copy_rootfs(lowers: &[PathBuf], root: &Path) -> Result<(), Fail> {
    snapshot::copy_merged(lowers, root)
        .map_err(|e| Fail::host("cannot copy the image into the sandbox").cause(e))?;
    // pivot_root needs a mount point.
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Fail::host("cannot bind the copied root file system").cause(os(e)))
}

/// Registers the platform's interpreter in a private `binfmt_misc` when the spec asks for
/// it. Returns how binaries will actually run.
fn register_binfmt(spec: &Spec, run: &Path, run_dir: &mut RunDir) -> Result<Execution, Fail> {
    let Execution::Private {
        registration,
        host_fallback,
    } = &spec.execution
    else {
        return Ok(spec.execution.clone());
    };
    let dir = run.join("binfmt");
    mkdir_owned(&dir, None)?;
    let mounted = mount(
        Some("binfmt_misc"),
        &dir,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    let failure = match mounted {
        Ok(()) => {
            run_dir.mounts.push(dir.clone());
            match fs::write(dir.join("register"), &registration.line) {
                Ok(()) => return Ok(spec.execution.clone()),
                // The user namespace's instance has it already (the instance belongs to
                // the user namespace, not to the mount; each step has a namespace of its
                // own, so this is only a second registration of the same step).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    return Ok(spec.execution.clone());
                }
                Err(e) => format!(
                    "registering `{}` from `{}` failed: {e}",
                    registration.name,
                    registration.source.display()
                ),
            }
        }
        Err(e) => format!("mounting a private binfmt_misc failed: {}", e.desc()),
    };
    if let Some(entry) = host_fallback {
        return Ok(Execution::Host {
            entry: entry.clone(),
        });
    }
    let hint = format!(
        "register the interpreter on the host once, as root: `update-binfmts --enable {}`",
        registration.name
    );
    Err(
        Fail::host(format!("cannot run `{}` binaries", spec.platform))
            .because(&failure)
            .hint(hint.clone())
            .fact(Fact::BinfmtMissing {
                platform: spec.platform.to_string(),
                reason: failure,
                hint,
            }),
    )
}

/// What [`supervise`] saw: the processes a timeout killed, if it struck, and init's report.
struct Supervised {
    timed_out: Option<Vec<Leftover>>,
    report: Vec<u8>,
}

/// Reads init's report until init closes it (it has ended, or is ending: its last act),
/// passing on signals; on timeout lists what runs in its PID namespace and kills it all.
/// Reaps init when it is seen to have ended meanwhile.
fn supervise(
    init: &mut Reaper,
    timeout: Option<Duration>,
    sfd: &SignalFd,
    report: &File,
) -> Supervised {
    let pid = init.pid;
    let start = Instant::now();
    let mut deadline = timeout.map(|t| start + t);
    let mut timed_out: Option<Vec<Leftover>> = None;
    let mut grace: Option<Instant> = None;
    let init_ns = fs::read_link(format!("/proc/{}/ns/pid", pid.as_raw())).ok();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        let wake = [deadline, grace].into_iter().flatten().min();
        if let Some(w) = wake
            && now >= w
        {
            if deadline.is_some_and(|d| now >= d) && timed_out.is_none() {
                let ns = init_ns.clone();
                let list = procscan::scan(Path::new("/proc"), |p| {
                    p != pid.as_raw()
                        && ns.is_some()
                        && fs::read_link(format!("/proc/{p}/ns/pid")).ok() == ns
                });
                timed_out = Some(list);
            }
            if !init.reaped {
                let _ = kill(pid, Signal::SIGKILL);
            }
            deadline = None;
            grace = None;
        }
        let wait_ms = [deadline, grace]
            .into_iter()
            .flatten()
            .min()
            .map(|w| w.saturating_duration_since(Instant::now()))
            .map_or(PollTimeout::NONE, |d| {
                PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::NONE)
            });
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(report.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, wait_ms);
        while let Ok(Some(info)) = sfd.read_signal() {
            let sig = i32::try_from(info.ssi_signo).unwrap_or(0);
            if !init.reaped && (sig == Signal::SIGTERM as i32 || sig == Signal::SIGHUP as i32) {
                // Ask the command to stop (init forwards it), then force it.
                let _ = kill(pid, Signal::SIGTERM);
                grace.get_or_insert(Instant::now() + Duration::from_secs(10));
            }
        }
        if !init.reaped
            && matches!(
                waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
            )
        {
            init.reaped = true;
        }
        // Init holds the only write end (close-on-exec keeps it from the command): end of
        // file comes when init closes it after writing its report, or dies.
        let ended = loop {
            match (&*report).read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if ended {
            return Supervised {
                timed_out,
                report: bytes,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn run_dir(runs: &Path, id: &str) -> RunDir {
        let path = runs.join(id);
        for sub in ["upper", "work/work/incompat/volatile", "tmp"] {
            fs::create_dir_all(path.join(sub)).unwrap();
        }
        fs::set_permissions(path.join("upper"), fs::Permissions::from_mode(0o755)).unwrap();
        RunDir {
            runs: runs.to_owned(),
            id: id.to_owned(),
            lock: File::open(&path).unwrap(),
            mounts: Vec::new(),
            done: false,
        }
    }

    fn inode(p: &Path) -> u64 {
        fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn a_recycled_run_directory_gets_fresh_upper_and_work_inodes() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        fs::create_dir(&runs).unwrap();
        let mut dir = run_dir(&runs, "1-a");
        let old = runs.join("1-a");
        let (upper, work) = (inode(&old.join("upper")), inode(&old.join("work")));
        assert!(dir.make_spare());
        drop(dir);
        let names = spares::tests::names(&runs);
        let [spare] = names.as_slice() else {
            panic!("{names:?}")
        };
        assert!(spares::is_spare(OsStr::new(spare)), "{spare}");
        let spare = runs.join(spare);
        assert_ne!(inode(&spare.join("upper")), upper);
        assert_ne!(inode(&spare.join("work")), work);
        assert_eq!(spares::tests::names(&spare), ["tmp", "upper", "work"]);
        for d in ["upper", "work"] {
            assert!(spares::is_empty_dir(&spare.join(d)), "{d}");
        }
        let meta = fs::metadata(spare.join("upper")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.uid(), unistd::geteuid().as_raw());

        // A step that changed only the root directory's mode: recycled, with a fresh one.
        let mut dir = run_dir(&runs, "3-c");
        fs::set_permissions(runs.join("3-c/upper"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(dir.make_spare());
        drop(dir);
        for name in spares::tests::names(&runs) {
            let meta = fs::metadata(runs.join(name).join("upper")).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o755);
        }

        // A step that left something in `upper` keeps it: no spare is made of it.
        let mut dir = run_dir(&runs, "2-b");
        fs::write(runs.join("2-b/upper/f"), "x").unwrap();
        assert!(!dir.make_spare());
        assert!(runs.join("2-b/upper/f").exists());
    }
}

//! The sandbox: an ephemeral, unprivileged set of namespaces per build step or CI job.
//!
//! This module is the only one that creates namespaces, mounts, changes credentials or
//! uses `unsafe` (all of it in [`sys`], each block with a `// SAFETY:` comment). It works
//! in two halves:
//!
//! - **Planning** ([`plan`]): from an [`source::Image`] and [`RunOptions`] plus facts
//!   about the host ([`HostFacts`]), compute a [`spec::Spec`]: pure data (id maps, layers,
//!   mounts, environment, argv, user, limits, platform and how it executes). Pure and
//!   unit-tested without privileges.
//! - **Applying** ([`run`]): the spec is handed to a freshly exec'd, single-threaded
//!   helper (`/proc/self/exe sandbox-helper`, see [`helper`]), never applied from the
//!   calling process (which may be multi-threaded, e.g. a tokio runtime). The helper
//!   creates the user namespace (ids mapped through `newuidmap`/`newgidmap`, or directly
//!   when rbuild is privileged), mount/IPC/UTS/(network) namespaces, unpacks missing layer
//!   snapshots inside them, mounts overlayfs, and starts the sandbox's init
//!   ([`init`]) as PID 1 of a new PID namespace. When the command ends, init kills
//!   everything else in the namespace and reports what it was (processes, listening
//!   ports); the helper unmounts and removes the run directory and returns a
//!   [`result::StepResult`] with structured [`result::Fact`]s carrying failure-cause ids.
//!
//! **Build steps** (`rbuild build`, [`run_step`]) are runs with a [`spec::StepSpec`]: the
//! step's mount points live in a lower directory of their own below the image (so they
//! never become part of the step's changes), the helper either runs the process or
//! performs [`fileop`]'s file operations itself (`COPY`, `ADD`, `WORKDIR`), and on success
//! keeps the overlay's upper directory as a snapshot (the next step's lower) and streams
//! its OCI layer tar (`layer::diff`) on descriptor 4; copy sources come in as a tar on
//! descriptor 5, other stages as read-only source trees. [`tar_layers`] writes the layer of
//! a kept snapshot later, or the merged file system of several.
//! A build starts its helpers through [`Sessions`]: one session helper per id mapping
//! enters the user namespace once and forks a step helper into it for each step
//! (`session.rs`), instead of an exec and an id-mapping round trip per step.
//!
//! Images come in through the [`source::ImageSource`] seam (OCI layouts; `rbuild run`
//! resolves registry references through the content store into the same
//! [`source::Image`]). Identity mapping rules: [`spec::choose_ids`].
//! Architecture invariant: nothing outlives a run (processes, mounts, run directories);
//! the end-to-end tests check `/proc/*/mountinfo`, the process table and the state
//! directory after each run.

mod failure;
pub mod fileop;
mod helper;
mod init;
mod mounts;
pub mod procscan;
pub mod result;
pub mod rooted;
mod session;
mod spares;
pub use session::Sessions;
pub mod snapshot;
pub mod source;
pub mod spec;
pub mod sys;
pub mod user;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::arch::{self, BinfmtFacts, NotRunnable, Platform};
use result::{SetupFailure, StepResult, TarReport};
use source::Image;
use spec::{IdError, IdFacts, Mount, Network, Process, RootfsMode, Spec, TarJob};

/// The name of the hidden subcommand the helper runs as.
pub const HELPER_SUBCOMMAND: &str = "sandbox-helper";

/// Default hostname inside sandboxes (constant, so builds are reproducible).
pub const DEFAULT_HOSTNAME: &str = "rbuild";

/// A host path bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: PathBuf,
    pub dest: String,
    pub readonly: bool,
}

/// What the caller wants of a run, besides the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// `<cache>/sandbox`.
    pub state_dir: PathBuf,
    /// Replaces the image's entrypoint and cmd when not empty.
    pub command: Vec<String>,
    /// `KEY=VALUE` or `KEY` (taken from rbuild's environment).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: String,
    pub network: Network,
    pub volumes: Vec<Volume>,
    pub timeout: Option<Duration>,
    pub rootfs: RootfsMode,
}

/// Facts about the host that planning needs (gathered by [`HostFacts::gather`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub ids: IdFacts,
    pub binfmt: BinfmtFacts,
    /// The host's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// rbuild's own environment (for `--env KEY`).
    pub env: HashMap<String, String>,
}

impl HostFacts {
    /// Looks at this host for running `platform`.
    pub fn gather(platform: &Platform) -> HostFacts {
        HostFacts {
            ids: IdFacts::gather(),
            binfmt: BinfmtFacts::gather(platform),
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            env: std::env::vars().collect(),
        }
    }
}

/// Why a run cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Ids(IdError),
    #[error(transparent)]
    NotRunnable(NotRunnable),
    #[error("the image has no command to run (no `Entrypoint` or `Cmd` in its config)")]
    NoCommand,
    #[error(
        "volume destination `{0}` must be an absolute path inside the sandbox (not `/`, no `..`)"
    )]
    BadVolume(String),
    #[error("working directory `{0}` must be an absolute path")]
    BadWorkdir(String),
}

fn clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && p.split('/').all(|c| c != ".." && c != ".")
        && !p.trim_matches('/').is_empty()
}

/// Computes the spec of a run (pure; see the module doc).
pub fn plan(image: &Image, opts: &RunOptions, host: &HostFacts) -> Result<Spec, PlanError> {
    let (ids, facts) = spec::choose_ids(&host.ids).map_err(PlanError::Ids)?;
    let execution = arch::choose(&image.platform, &host.binfmt).map_err(PlanError::NotRunnable)?;
    let argv = if opts.command.is_empty() {
        image
            .config
            .entrypoint
            .iter()
            .chain(&image.config.cmd)
            .cloned()
            .collect()
    } else {
        opts.command.clone()
    };
    if argv.is_empty() {
        return Err(PlanError::NoCommand);
    }
    let cwd = match &opts.workdir {
        Some(w) if !w.starts_with('/') => return Err(PlanError::BadWorkdir(w.clone())),
        Some(w) => w.clone(),
        None if image.config.working_dir.is_empty() => "/".to_owned(),
        None => image.config.working_dir.clone(),
    };
    let mut mounts = spec::standard_mounts(opts.network, &ids, &opts.hostname, &host.resolv_conf);
    for v in &opts.volumes {
        if !clean_absolute(&v.dest) {
            return Err(PlanError::BadVolume(v.dest.clone()));
        }
        mounts.push(Mount::Bind {
            source: v.source.clone(),
            dest: v.dest.clone(),
            readonly: v.readonly,
        });
    }
    Ok(Spec {
        state_dir: opts.state_dir.clone(),
        layers: image
            .layers
            .iter()
            .map(|l| spec::LayerSpec {
                digest: l.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                blob: l.path.clone(),
                dir: None,
            })
            .collect(),
        rootfs: opts.rootfs,
        mounts,
        hostname: opts.hostname.clone(),
        network: opts.network,
        process: Process {
            argv,
            env: spec::merge_env(&image.config.env, &opts.env, |k| host.env.get(k).cloned()),
            cwd,
            user: opts
                .user
                .clone()
                .unwrap_or_else(|| image.config.user.clone()),
            umask: 0o022,
            raise_nofile: true,
        },
        platform: image.platform.clone(),
        execution,
        timeout_ms: opts
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        ids,
        facts,
        step: None,
    })
}

/// Computes the spec of a build step that only performs file operations
/// ([`spec::StepAction::Files`]): no process, no emulator, no mounts besides the root.
pub fn plan_files(
    host: &HostFacts,
    state_dir: &std::path::Path,
    platform: &Platform,
    layers: Vec<spec::LayerSpec>,
    step: spec::StepSpec,
) -> Result<Spec, PlanError> {
    let (ids, facts) = spec::choose_ids(&host.ids).map_err(PlanError::Ids)?;
    Ok(Spec {
        state_dir: state_dir.to_path_buf(),
        ids,
        layers,
        rootfs: RootfsMode::Overlay,
        mounts: Vec::new(),
        hostname: DEFAULT_HOSTNAME.to_owned(),
        network: Network::Host,
        process: Process {
            argv: Vec::new(),
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: String::new(),
            umask: 0o022,
            raise_nofile: false,
        },
        platform: platform.clone(),
        execution: arch::Execution::Native,
        timeout_ms: None,
        facts,
        step: Some(step),
    })
}

/// Why a run did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the sandbox helper")]
    Spawn(#[source] std::io::Error),
    #[error("the sandbox helper ended without a result ({0})")]
    NoReply(String),
    #[error("{}", .0.message)]
    Setup(SetupFailure),
    #[error("cannot store the step's layer")]
    Layer(#[source] std::io::Error),
}

/// Runs `spec` in a fresh sandbox and waits for it.
///
/// The helper dies with the thread that calls this (it is started with a parent-death
/// signal), so call it from a thread that lives until it returns.
pub fn run(spec: &Spec) -> Result<StepResult, SandboxError> {
    run_inner(spec, false)
}

/// Like [`run`], for a command in the foreground of a terminal (`rbuild run`): `SIGINT`
/// is left to the command (the terminal sends it there itself), `SIGTERM` and `SIGHUP`
/// are passed on to it, and rbuild waits for the sandbox to be torn down either way.
/// Must be called while the process is single-threaded (it changes the signal mask).
pub fn run_foreground(spec: &Spec) -> Result<StepResult, SandboxError> {
    run_inner(spec, true)
}

fn run_inner(spec: &Spec, foreground: bool) -> Result<StepResult, SandboxError> {
    let payload = serde_json::to_vec(spec).map_err(|e| SandboxError::NoReply(e.to_string()))?;
    let (mut ours, theirs) = UnixStream::pair().map_err(SandboxError::Spawn)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_SUBCOMMAND)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .stdin(Stdio::inherit());
    sys::pass_fd_as_3(&mut cmd, theirs.as_raw_fd());

    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    let signals = if foreground {
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
            .map_err(|e| SandboxError::Spawn(e.into()))?;
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|e| SandboxError::Spawn(e.into()))?;
        Some((sfd, old))
    } else {
        None
    };
    let restore = |signals: &Option<(SignalFd, SigSet)>| {
        if let Some((_, old)) = signals {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
        }
    };

    let spawned = std::time::Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            restore(&signals);
            return Err(SandboxError::Spawn(e));
        }
    };
    drop(theirs);
    let helper = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let sent = ours
        .write_all(&payload)
        .and_then(|()| ours.shutdown(std::net::Shutdown::Write));

    let mut reply = Vec::new();
    if sent.is_ok() {
        match &signals {
            None => {
                let _ = ours.read_to_end(&mut reply);
            }
            Some((sfd, _)) => {
                ours.set_nonblocking(true).ok();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let mut fds = [
                        PollFd::new(ours.as_fd(), PollFlags::POLLIN),
                        PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
                    ];
                    let _ = poll(&mut fds, PollTimeout::NONE);
                    while let Ok(Some(info)) = sfd.read_signal() {
                        let sig = i32::try_from(info.ssi_signo).unwrap_or(0);
                        if sig == Signal::SIGTERM as i32 || sig == Signal::SIGHUP as i32 {
                            let _ = kill(helper, Signal::SIGTERM);
                        }
                    }
                    match ours.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => reply.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
    let status = child.wait();
    tracing::debug!(us = spawned.elapsed().as_micros(), "sandbox: helper done");
    restore(&signals);
    match serde_json::from_slice::<result::Reply>(&reply) {
        Ok(result::Reply::Finished(r)) => Ok(r),
        Ok(result::Reply::Failed(f)) => Err(SandboxError::Setup(f)),
        Ok(result::Reply::Tarred(_)) => Err(SandboxError::NoReply("an unexpected reply".into())),
        Err(_) => Err(SandboxError::NoReply(match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        })),
    }
}

/// Which output stream of a step's command a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// The descriptors of a build step besides its socket, and who serves them. Each
/// callback runs on a thread of its own while the step runs.
pub struct StepIo<'a> {
    /// Receives the command's output (stdout and stderr of the helper and everything it
    /// starts) as it comes.
    pub output: &'a (dyn Fn(OutputStream, &[u8]) + Sync),
    /// Writes the streamed copy sources (the helper's descriptor 5).
    pub input: Option<Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + 'a>>,
    /// Reads the step's layer as the helper writes it (its descriptor 4), to the end.
    pub layer: Option<Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + 'a>>,
}

impl std::fmt::Debug for StepIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepIo")
            .field("input", &self.input.is_some())
            .field("layer", &self.layer.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs a build step (`spec.step` set) in a fresh sandbox and waits for it, serving its
/// descriptors with `io` meanwhile. Like [`run`], call it from a thread that lives until
/// it returns.
pub fn run_step(spec: &Spec, io: StepIo<'_>) -> Result<StepResult, SandboxError> {
    run_step_in(spec, io, None)
}

fn run_step_in(
    spec: &Spec,
    io: StepIo<'_>,
    session: Option<&session::Session>,
) -> Result<StepResult, SandboxError> {
    let payload = serde_json::to_vec(spec).map_err(|e| SandboxError::NoReply(e.to_string()))?;
    match exchange(&payload, io, session)? {
        result::Reply::Finished(r) => Ok(r),
        result::Reply::Failed(f) => Err(SandboxError::Setup(f)),
        result::Reply::Tarred(_) => Err(SandboxError::NoReply("an unexpected reply".into())),
    }
}

/// Writes the tar of `job`'s layers (one snapshot's changes, or the merged file system of
/// several) to `out`, from a helper in a user namespace with the job's mapping.
pub fn tar_layers(
    job: &TarJob,
    out: Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>,
) -> Result<TarReport, SandboxError> {
    tar_layers_in(job, out, None)
}

fn tar_layers_in(
    job: &TarJob,
    out: Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>,
    session: Option<&session::Session>,
) -> Result<TarReport, SandboxError> {
    let payload = serde_json::to_vec(job).map_err(|e| SandboxError::NoReply(e.to_string()))?;
    let quiet = |_: OutputStream, _: &[u8]| {};
    let io = StepIo {
        output: &quiet,
        input: None,
        layer: Some(out),
    };
    match exchange(&payload, io, session)? {
        result::Reply::Tarred(r) => Ok(r),
        result::Reply::Failed(f) => Err(SandboxError::Setup(f)),
        result::Reply::Finished(_) => Err(SandboxError::NoReply("an unexpected reply".into())),
    }
}

fn pipe() -> Result<(std::fs::File, std::fs::File), SandboxError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Spawn(e.into()))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

/// Starts a helper with `payload` on its socket and `io` on its other descriptors, and
/// returns its reply once it has ended and every descriptor is drained. With a
/// `session`, the helper is forked by the session's helper inside its user namespace
/// instead of exec'd.
fn exchange(
    payload: &[u8],
    io: StepIo<'_>,
    session: Option<&session::Session>,
) -> Result<result::Reply, SandboxError> {
    let (mut ours, theirs) = UnixStream::pair().map_err(SandboxError::Spawn)?;
    let layer_pipe = io.layer.as_ref().map(|_| pipe()).transpose()?;
    if let Some((r, _)) = &layer_pipe {
        // A layer is hundreds of megabytes at times: 1 MiB in flight instead of the
        // default 64 KiB wakes each side 16 times less often (best effort: the limit is
        // `/proc/sys/fs/pipe-max-size`).
        let _ = nix::fcntl::fcntl(r, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    }
    let input_pipe = io.input.as_ref().map(|_| pipe()).transpose()?;
    // What fits of the payload waits in the socket's buffer, so the helper reads it as
    // soon as it starts instead of waiting for the threads below.
    let mut sent_early = 0;
    if ours.set_nonblocking(true).is_ok() {
        sent_early = ours.write(payload).unwrap_or(0);
        ours.set_nonblocking(false).map_err(SandboxError::Spawn)?;
    }
    let (mut child, stdout, stderr): (Option<std::process::Child>, std::fs::File, std::fs::File) =
        if let Some(session) = session {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            session.launch(
                theirs.as_fd(),
                out_w.as_fd(),
                err_w.as_fd(),
                layer_pipe.as_ref().map(|(_, w)| w.as_fd()),
                input_pipe.as_ref().map(|(r, _)| r.as_fd()),
            )?;
            (None, out_r, err_r)
        } else {
            let mut cmd = Command::new("/proc/self/exe");
            cmd.arg(HELPER_SUBCOMMAND)
                .arg("--parent")
                .arg(std::process::id().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut fds = vec![(theirs.as_raw_fd(), 3)];
            if let Some((_, w)) = &layer_pipe {
                fds.push((w.as_raw_fd(), 4));
            }
            if let Some((r, _)) = &input_pipe {
                fds.push((r.as_raw_fd(), 5));
            }
            sys::pass_fds(&mut cmd, &fds);
            let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
            let (Some(o), Some(e)) = (child.stdout.take(), child.stderr.take()) else {
                return Err(SandboxError::NoReply(
                    "the helper's output is not piped".into(),
                ));
            };
            let (o, e) = (std::os::fd::OwnedFd::from(o), std::os::fd::OwnedFd::from(e));
            (Some(child), o.into(), e.into())
        };
    drop(theirs);
    let layer_r = layer_pipe.map(|(r, _w)| r);
    let input_w = input_pipe.map(|(_r, w)| w);
    let output = io.output;
    let mut reply = Vec::new();
    let status = std::thread::scope(|s| {
        let input = io.input.zip(input_w).map(|(f, w)| s.spawn(move || f(w)));
        let layer = io.layer.zip(layer_r).map(|(f, r)| s.spawn(move || f(r)));
        // The helper reads its whole spec before it writes anything.
        let sent = ours
            .write_all(&payload[sent_early..])
            .and_then(|()| ours.shutdown(std::net::Shutdown::Write));
        drain(
            sent.is_ok().then_some(&mut ours),
            &mut reply,
            stdout,
            stderr,
            output,
        );
        let status = match child.as_mut() {
            Some(c) => c.wait().map(|s| s.to_string()),
            // A session's helper is reaped by the session; its socket closing is its end.
            None => Ok("its socket closed".to_owned()),
        };
        // The input writer ends when the helper closes its side (by reading to the end,
        // or by exiting); its error is moot if the helper failed, which the reply says.
        if let Some(h) = input {
            let _ = h.join();
        }
        let layer_result = layer.map(std::thread::ScopedJoinHandle::join);
        (status, layer_result)
    });
    let (status, layer_result) = status;
    if let Some(Ok(Err(e))) = layer_result {
        // The helper finished but its layer could not be taken in.
        if matches!(
            serde_json::from_slice::<result::Reply>(&reply),
            Ok(result::Reply::Finished(_) | result::Reply::Tarred(_))
        ) {
            return Err(SandboxError::Layer(e));
        }
    }
    serde_json::from_slice::<result::Reply>(&reply).map_err(|_| {
        SandboxError::NoReply(match status {
            Ok(s) => s,
            Err(e) => e.to_string(),
        })
    })
}

/// Reads the helper's reply from `sock` (when the request went out) into `reply`, and its
/// output pipes into `output` as it comes, until all of them are at end of file: one
/// thread for all three (a build runs one step after another, and every thread started
/// per step is time the next one waits for).
fn drain(
    mut sock: Option<&mut UnixStream>,
    reply: &mut Vec<u8>,
    stdout: std::fs::File,
    stderr: std::fs::File,
    output: &(dyn Fn(OutputStream, &[u8]) + Sync),
) {
    let mut pipes = [
        Some((stdout, OutputStream::Stdout)),
        Some((stderr, OutputStream::Stderr)),
    ];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        if let Some(s) = sock.as_deref() {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        for (f, _) in pipes.iter().flatten() {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            return;
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut ready = ready.into_iter();
        let mut sock_done = false;
        if let Some(s) = sock.as_deref_mut()
            && ready.next() == Some(true)
        {
            match s.read(&mut buf) {
                Ok(0) => sock_done = true,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => sock_done = true,
            }
        }
        if sock_done {
            sock = None;
        }
        for slot in pipes.iter_mut().filter(|p| p.is_some()) {
            if ready.next() != Some(true) {
                continue;
            }
            let Some((f, which)) = slot.as_mut() else {
                continue;
            };
            match f.read(&mut buf) {
                Ok(0) => *slot = None,
                Ok(n) => output(*which, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => *slot = None,
            }
        }
    }
}

/// This process's peak resident set size in KiB (`VmHWM`), for benchmarks.
pub fn peak_rss_kb() -> u64 {
    helper::peak_rss_kb()
}

/// Entry point of the hidden `rbuild sandbox-helper` subcommand.
pub fn helper_main(parent: u32, session: bool) -> ExitCode {
    helper::main(parent, session)
}

/// Executes a probe binary (see `arch`) and says whether it ran successfully.
pub fn run_probe(elf: &[u8]) -> bool {
    let Ok(fd) =
        nix::sys::memfd::memfd_create(c"rbuild-probe", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
    else {
        return false;
    };
    let mut file = std::fs::File::from(fd);
    if file.write_all(elf).is_err() {
        return false;
    }
    Command::new(sys::fd_path(file.as_raw_fd()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Execution;
    use crate::layer::Digest;
    use source::{LayerBlob, RunConfig};

    fn image(platform: &str) -> Image {
        Image {
            reference: "oci-layout:///x".into(),
            platform: platform.parse().unwrap(),
            config: RunConfig {
                env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into()],
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                user: "nobody".into(),
                working_dir: String::new(),
            },
            layers: vec![LayerBlob {
                digest: Digest::of(b"blob"),
                diff_id: Digest::of(b"tar"),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                path: "/x/blobs/sha256/aa".into(),
            }],
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            state_dir: "/home/u/.cache/rbuild/sandbox".into(),
            command: vec![],
            env: vec!["CI=true".into(), "TOKEN".into()],
            user: None,
            workdir: None,
            hostname: DEFAULT_HOSTNAME.into(),
            network: Network::Host,
            volumes: vec![Volume {
                source: "/srv/src".into(),
                dest: "/src".into(),
                readonly: true,
            }],
            timeout: Some(Duration::from_secs(5)),
            rootfs: RootfsMode::Overlay,
        }
    }

    fn host(native: bool) -> HostFacts {
        HostFacts {
            ids: IdFacts {
                uid: 1001,
                gid: 1001,
                user: Some("u".into()),
                subuid: "u:100000:65536\n".into(),
                subgid: "u:100000:65536\n".into(),
                own_uid_map: "0 0 4294967295\n".into(),
                own_gid_map: "0 0 4294967295\n".into(),
                newuidmap: Some("/usr/bin/newuidmap".into()),
                newgidmap: Some("/usr/bin/newgidmap".into()),
            },
            binfmt: BinfmtFacts {
                native,
                kernel: Some((6, 18)),
                registration: Some(Ok((
                    arch::Registration::parse(
                        ":qemu-aarch64:M::\\x7fELF:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF",
                        std::path::Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf"),
                    )
                    .unwrap(),
                    true,
                ))),
                host_entry: None,
            },
            resolv_conf: "nameserver 192.0.2.53\n".into(),
            env: [("TOKEN".to_owned(), "s3cret".to_owned())].into(),
        }
    }

    #[test]
    fn plan_of_a_native_run() {
        let spec = plan(&image("linux/amd64"), &opts(), &host(true)).unwrap();
        assert_eq!(spec.process.argv, ["sh"]);
        assert_eq!(
            spec.process.env,
            ["PATH=/usr/bin:/bin", "LANG=C", "CI=true", "TOKEN=s3cret"]
        );
        assert_eq!(spec.process.user, "nobody");
        assert_eq!(spec.process.cwd, "/");
        assert_eq!(spec.execution, Execution::Native);
        assert_eq!(spec.ids.uid_map(), "0 1001 1\n1 100000 65535\n");
        assert_eq!(spec.timeout_ms, Some(5000));
        assert_eq!(spec.layers[0].diff_id, Digest::of(b"tar").to_string());
        assert_eq!(
            spec.mounts.last(),
            Some(&Mount::Bind {
                source: "/srv/src".into(),
                dest: "/src".into(),
                readonly: true
            })
        );
        // The spec is pure data: it survives the trip to the helper unchanged.
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);
    }

    #[test]
    fn plan_of_a_foreign_run_registers_qemu_privately() {
        let mut o = opts();
        o.command = vec!["uname".into(), "-m".into()];
        o.user = Some("0".into());
        o.workdir = Some("/w".into());
        let spec = plan(&image("linux/arm64"), &o, &host(false)).unwrap();
        assert_eq!(spec.process.argv, ["uname", "-m"]);
        assert_eq!(
            (spec.process.user.as_str(), spec.process.cwd.as_str()),
            ("0", "/w")
        );
        let Execution::Private { registration, .. } = &spec.execution else {
            panic!(
                "expected a private binfmt registration: {:?}",
                spec.execution
            )
        };
        assert_eq!(registration.name, "qemu-aarch64");
    }

    #[test]
    fn probes_run_from_memory() {
        assert!(!run_probe(b"not an executable"));
        if cfg!(target_arch = "x86_64") {
            // A static x86-64 ELF that only calls exit(0).
            let code: &[u8] = &[0x31, 0xff, 0xb8, 60, 0, 0, 0, 0x0f, 0x05];
            let total = 64 + 56 + code.len() as u64;
            let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            v.extend_from_slice(&2u16.to_le_bytes());
            v.extend_from_slice(&0x3eu16.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&(0x40_0000u64 + 120).to_le_bytes());
            v.extend_from_slice(&64u64.to_le_bytes());
            v.extend_from_slice(&0u64.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            for h in [64u16, 56, 1, 0, 0, 0] {
                v.extend_from_slice(&h.to_le_bytes());
            }
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&5u32.to_le_bytes());
            for w in [0, 0x40_0000, 0x40_0000, total, total, 0x1000] {
                v.extend_from_slice(&u64::to_le_bytes(w));
            }
            v.extend_from_slice(code);
            assert!(run_probe(&v));
        }
    }

    #[test]
    fn plan_refuses_what_cannot_run() {
        let mut h = host(false);
        h.binfmt.registration = None;
        let err = plan(&image("linux/arm64"), &opts(), &h).unwrap_err();
        assert!(matches!(err, PlanError::NotRunnable(_)), "{err}");
        let mut img = image("linux/amd64");
        img.config.cmd.clear();
        assert!(matches!(
            plan(&img, &opts(), &host(true)),
            Err(PlanError::NoCommand)
        ));
        let mut o = opts();
        o.volumes[0].dest = "/a/../etc".into();
        assert!(matches!(
            plan(&image("linux/amd64"), &o, &host(true)),
            Err(PlanError::BadVolume(_))
        ));
        o.volumes[0].dest = "/".into();
        assert!(matches!(
            plan(&image("linux/amd64"), &o, &host(true)),
            Err(PlanError::BadVolume(_))
        ));
    }
}

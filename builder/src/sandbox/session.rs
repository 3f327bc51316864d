//! Sandbox sessions: one helper per id mapping that enters its user namespace once (the
//! `newuidmap`/`newgidmap` round trip and the helper's exec are most of a short step's
//! cost) and forks a step helper for each build step or tar job, which gets a user
//! namespace of its own nested in the session's, mapped by the session helper with every
//! id kept as it is (no setuid helper: the session helper is root of the parent).
//!
//! A session helper is `rbuild sandbox-helper --session`, started from a thread of its
//! own that waits for it (it dies with that thread, like every helper). The caller sends
//! the mapping as one frame and gets `null` or the setup failure back; after that, each
//! request is one message on the socket: a tag byte and, as `SCM_RIGHTS`, the step's own
//! socket, its stdout and stderr pipes and the layer and copy-source pipes the tag
//! announces. The forked helper then speaks the ordinary protocol on the step's socket:
//! the same spec in, the same reply out, so a session changes where a step starts, never
//! what it does. Closing the socket ends the session helper; step helpers still running
//! are killed with it (parent-death signal).
//!
//! Only mappings whose container root is the caller itself are served this way (the
//! unprivileged case): a helper inside the user namespace could not reach what rbuild
//! running as real root must open or hand over before mapping to a subordinate range.
//! Other mappings, and a session that cannot start, get a fresh helper per step, which
//! then reports the failure in full.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use super::helper::{SESSION_DIFF_OUT, SESSION_STREAM_IN, read_frame, write_frame};
use super::result::{SetupFailure, StepResult, TarReport};
use super::spec::{IdMapping, Spec, TarJob};
use super::{HELPER_SUBCOMMAND, SandboxError, StepIo, sys};

/// The sessions of one build, by id mapping; each started on first use.
#[derive(Default)]
pub struct Sessions {
    /// `None`: this mapping is not served by a session (not eligible, or it failed to
    /// start); its steps get a fresh helper each.
    started: Mutex<Vec<(IdMapping, Option<Arc<Session>>)>>,
    /// The state directories the sessions' steps used: their spare run directories are
    /// removed when the build ends (see [`super::spares`]).
    state_dirs: Mutex<Vec<PathBuf>>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        // Ending the sessions waits for every step helper, spares made by now included.
        drop(std::mem::take(
            &mut *self.started.lock().unwrap_or_else(PoisonError::into_inner),
        ));
        for dir in self
            .state_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            super::spares::remove_all(&dir.join("runs"));
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// [`super::run_step`], through the session of the spec's mapping when there is one.
    pub fn run_step(&self, spec: &Spec, io: StepIo<'_>) -> Result<StepResult, SandboxError> {
        let session = self.session_for(&spec.ids);
        if session.is_some() {
            let mut dirs = self
                .state_dirs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !dirs.contains(&spec.state_dir) {
                dirs.push(spec.state_dir.clone());
            }
        }
        super::run_step_in(spec, io, session.as_deref())
    }

    /// [`super::tar_layers`], through the session of the job's mapping when there is one.
    pub fn tar_layers(
        &self,
        job: &TarJob,
        out: Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>,
    ) -> Result<TarReport, SandboxError> {
        let session = self.session_for(&job.ids);
        super::tar_layers_in(job, out, session.as_deref())
    }

    fn session_for(&self, ids: &IdMapping) -> Option<Arc<Session>> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, s)) = started.iter().find(|(m, _)| m == ids) {
            return s.clone();
        }
        let session = eligible(ids)
            .then(|| match Session::start(ids) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::debug!(error = %e, "sandbox: no session, a helper per step");
                    None
                }
            })
            .flatten();
        started.push((ids.clone(), session.clone()));
        session
    }
}

/// Whether container root of `ids` is this process's own user and group outside.
fn eligible(ids: &IdMapping) -> bool {
    ids.outside_uid(0) == Some(nix::unistd::geteuid().as_raw())
        && ids.outside_gid(0) == Some(nix::unistd::getegid().as_raw())
}

/// One session helper.
pub(super) struct Session {
    ctl: Mutex<Option<UnixStream>>,
    waiter: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    fn start(ids: &IdMapping) -> Result<Session, SandboxError> {
        let (mut ours, theirs) = UnixStream::pair().map_err(SandboxError::Spawn)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name("sandbox-session".into())
            .spawn(move || {
                let mut cmd = Command::new("/proc/self/exe");
                cmd.arg(HELPER_SUBCOMMAND)
                    .arg("--parent")
                    .arg(std::process::id().to_string())
                    .arg("--session")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                sys::pass_fds(&mut cmd, &[(theirs.as_raw_fd(), 3)]);
                match cmd.spawn() {
                    Ok(mut child) => {
                        drop(theirs);
                        let _ = tx.send(Ok(()));
                        let _ = child.wait();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(SandboxError::Spawn)?;
        let spawned = rx
            .recv()
            .map_err(|_| SandboxError::NoReply("the session thread ended".into()))
            .and_then(|r| r.map_err(SandboxError::Spawn));
        let ready = spawned.and_then(|()| {
            let mapping =
                serde_json::to_vec(ids).map_err(|e| SandboxError::NoReply(e.to_string()))?;
            write_frame(&mut ours, &mapping).map_err(SandboxError::Spawn)?;
            let answer = read_frame(&mut ours).map_err(|e| SandboxError::NoReply(e.to_string()))?;
            match serde_json::from_slice::<Option<SetupFailure>>(&answer) {
                Ok(None) => Ok(()),
                Ok(Some(f)) => Err(SandboxError::Setup(f)),
                Err(e) => Err(SandboxError::NoReply(e.to_string())),
            }
        });
        let session = Session {
            ctl: Mutex::new(Some(ours)),
            waiter: Some(waiter),
        };
        // On failure, dropping the session closes the socket and reaps the helper.
        ready.map(|()| session)
    }

    /// Hands a step's descriptors to the session helper, which forks its step helper.
    pub(super) fn launch(
        &self,
        sock: BorrowedFd<'_>,
        stdout: BorrowedFd<'_>,
        stderr: BorrowedFd<'_>,
        diff_out: Option<BorrowedFd<'_>>,
        stream_in: Option<BorrowedFd<'_>>,
    ) -> Result<(), SandboxError> {
        let mut fds = vec![sock.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        let mut tag = 0;
        if let Some(fd) = diff_out {
            tag |= SESSION_DIFF_OUT;
            fds.push(fd.as_raw_fd());
        }
        if let Some(fd) = stream_in {
            tag |= SESSION_STREAM_IN;
            fds.push(fd.as_raw_fd());
        }
        let ctl = self.ctl.lock().unwrap_or_else(PoisonError::into_inner);
        let ctl = ctl
            .as_ref()
            .ok_or_else(|| SandboxError::NoReply("the session has ended".into()))?;
        sys::send_fds(ctl.as_fd(), tag, &fds).map_err(SandboxError::Spawn)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // End of file on its socket ends the session helper; its thread then returns.
        drop(
            self.ctl
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
    }
}

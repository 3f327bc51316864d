//! Progress: the events of a build, and the three ways of showing them.
//!
//! The solver emits [`Event`]s through a [`Progress`] handle (cheap to clone, usable from
//! any thread); one renderer thread turns them into output on stderr:
//!
//! - `plain` (CI logs): one line per event, BuildKit-style (`#3 [linux/arm64 build 2/5]
//!   RUN make`, `#3 0.41 output line`, `#3 DONE 1.2s`), output lines prefixed with the
//!   step number and the time since the step started.
//! - `tty`: a live view redrawn in place: every step with its status and time, and the
//!   last lines of output of each running step.
//! - `json`: one JSON object per line (the contract `rbuild-runner` reads; see
//!   [`Event`] for the fields).
//!
//! Progress is a channel of its own: diagnostics and errors are not progress, and
//! developer logs go through `tracing`.

mod render;

use std::io::Write;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::diagnose::Diagnostic;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
    /// Nothing (tests, `--quiet`).
    Quiet,
}

impl Mode {
    /// `auto`: the live view on a terminal, plain lines otherwise.
    pub fn auto(stderr_is_terminal: bool) -> Mode {
        if stderr_is_terminal {
            Mode::Tty
        } else {
            Mode::Plain
        }
    }
}

/// Which output stream of a step a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Cached,
    Error,
    Canceled,
}

/// One progress event. Serialised as `{"type": "...", ...}` with the fields below; field
/// names are a contract (`--progress json`), never rename one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A step became known (it may run later, or be cached).
    StepStarted {
        /// Step number, unique within the build, in start order (1, 2, ...).
        step: u32,
        /// Display name, e.g. `[build 2/5] RUN make`.
        name: String,
        /// Platform it builds for, when the build has more than one.
        #[serde(skip_serializing_if = "Option::is_none")]
        platform: Option<String>,
        /// Dockerfile line of the instruction, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
    /// Output of a running step (a chunk, not necessarily whole lines).
    StepLog {
        step: u32,
        stream: Stream,
        /// The bytes as text (lossy UTF-8).
        data: String,
    },
    /// A step finished.
    StepFinished {
        step: u32,
        outcome: Outcome,
        /// Seconds since it started (0 for cached steps).
        seconds: f64,
    },
    /// A diagnostic reported during the build (also rendered by `diagnose`).
    Diagnostic {
        #[serde(flatten)]
        diagnostic: Diagnostic,
    },
    /// The build ended.
    BuildFinished {
        ok: bool,
        seconds: f64,
        /// Steps that ran, and steps answered from the cache.
        executed: u32,
        cached: u32,
    },
}

/// A handle to send events; clone it into every thread that reports progress.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: Option<Sender<(Instant, Event)>>,
}

impl Progress {
    /// A handle that drops every event.
    pub fn disabled() -> Progress {
        Progress { tx: None }
    }

    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.tx {
            // The renderer is gone only after `Renderer::finish`; late events are moot.
            let _ = tx.send((Instant::now(), event));
        }
    }
}

/// The thread that renders events; `finish` flushes and joins it.
#[derive(Debug)]
pub struct Renderer {
    handle: Option<JoinHandle<()>>,
}

impl Renderer {
    /// Starts rendering events in `mode` to `out` (stderr in the binary).
    pub fn start(mode: Mode, out: impl Write + Send + 'static) -> (Progress, Renderer) {
        if mode == Mode::Quiet {
            return (Progress::disabled(), Renderer { handle: None });
        }
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || render::run(mode, &rx, out))
            .ok();
        (Progress { tx: Some(tx) }, Renderer { handle })
    }

    /// Waits until every event sent so far is shown. All `Progress` clones must be dropped
    /// first (the renderer stops when the channel closes).
    pub fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Receives with a timeout, so the live view can redraw its clocks.
fn recv(
    rx: &Receiver<(Instant, Event)>,
    tick: Option<Duration>,
) -> Result<Option<(Instant, Event)>, ()> {
    match tick {
        None => rx.recv().map(Some).map_err(|_| ()),
        Some(t) => match rx.recv_timeout(t) {
            Ok(e) => Ok(Some(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        },
    }
}

//! The job log: everything a job's user reads on the job page, on its way to the forge.
//!
//! Every byte (command output and the runner's own messages) passes through one streaming
//! [`mask::Masker`] before it is kept, so no masked variable ever leaves the process, not
//! even in a local file. Command output is capped at the instance's `output_limit` with a
//! clear truncation marker; the runner's own messages get a small reserve beyond it, so
//! the job's end status is always shown. GitLab's collapsible sections are written as
//! `section_start:<unix time>:<name>\r\x1b[0K<header>` / `section_end:<unix time>:<name>`.
//!
//! The log is kept whole in memory (it is bounded by the limit) and mirrored to a file in
//! the state directory, so a restarted daemon can still finish the job's report. This
//! module does not send anything; `job::trace` does.

pub mod mask;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mask::Masker;

/// Room beyond `output_limit` for the runner's own messages.
const MESSAGE_RESERVE: usize = 64 * 1024;

/// ANSI styles GitLab's log viewer renders.
pub mod style {
    pub const RESET: &str = "\x1b[0;m";
    pub const BOLD_GREEN: &str = "\x1b[32;1m";
    pub const BOLD_RED: &str = "\x1b[31;1m";
    pub const YELLOW: &str = "\x1b[0;33m";
    pub const BOLD_CYAN: &str = "\x1b[36;1m";
    pub const BOLD: &str = "\x1b[0K\x1b[1m";
}

struct Inner {
    masker: Masker,
    trace: Vec<u8>,
    /// Cap of command output.
    limit: usize,
    truncated: bool,
    /// Output streams (a step's stdout/stderr readers) open now.
    open_streams: usize,
    disk: Option<(PathBuf, std::fs::File)>,
}

/// The masked, capped log of one job.
pub struct JobLog {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLog").field("len", &self.len()).finish()
    }
}

/// Which limit a write counts against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Output,
    Runner,
}

impl JobLog {
    /// A log masking with `masker`, capping output at `limit` bytes, mirrored to `disk`
    /// (created or truncated) when given.
    pub fn new(
        masker: Masker,
        limit: usize,
        disk: Option<PathBuf>,
    ) -> std::io::Result<Arc<JobLog>> {
        let disk = match disk {
            Some(p) => Some((p.clone(), private_file(&p, false)?)),
            None => None,
        };
        Ok(Arc::new(JobLog {
            inner: Mutex::new(Inner {
                masker,
                trace: Vec::new(),
                limit,
                truncated: false,
                open_streams: 0,
                disk,
            }),
            changed: tokio::sync::Notify::new(),
        }))
    }

    /// A log continuing what a previous run of the daemon mirrored to `disk` (crash
    /// recovery). The text on disk was masked already.
    pub fn resume(masker: Masker, limit: usize, disk: PathBuf) -> std::io::Result<Arc<JobLog>> {
        let trace = fs_err::read(&disk).unwrap_or_default();
        let file = private_file(&disk, true)?;
        Ok(Arc::new(JobLog {
            inner: Mutex::new(Inner {
                masker,
                truncated: trace.len() >= limit,
                trace,
                limit,
                open_streams: 0,
                disk: Some((disk, file)),
            }),
            changed: tokio::sync::Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a log that is still consistent bytes.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Command output (any chunking).
    pub fn output(&self, bytes: &[u8]) {
        let mut inner = self.lock();
        let mut masked = Vec::with_capacity(bytes.len() + 16);
        inner.masker.write(bytes, &mut masked);
        inner.append(&masked, Source::Output);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Marks an output stream open until the guard drops; the masker's held-back tail is
    /// released when the last stream closes.
    pub fn stream(self: &Arc<Self>) -> StreamGuard {
        self.lock().open_streams += 1;
        StreamGuard { log: self.clone() }
    }

    /// One or more lines from the runner (a newline is added if missing).
    pub fn message(&self, text: &str) {
        let mut inner = self.lock();
        let mut masked = Vec::new();
        inner.masker.write(text.as_bytes(), &mut masked);
        if !text.ends_with('\n') {
            inner.masker.write(b"\n", &mut masked);
        }
        if inner.open_streams == 0 {
            inner.masker.flush(&mut masked);
        }
        inner.append(&masked, Source::Runner);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// A warning line (yellow).
    pub fn warning(&self, text: &str) {
        self.message(&format!("{}WARNING: {text}{}", style::YELLOW, style::RESET));
    }

    /// An error line (bold red).
    pub fn error(&self, text: &str) {
        self.message(&format!("{}ERROR: {text}{}", style::BOLD_RED, style::RESET));
    }

    /// A success line (bold green).
    pub fn success(&self, text: &str) {
        self.message(&format!("{}{text}{}", style::BOLD_GREEN, style::RESET));
    }

    /// Opens a collapsible section.
    pub fn section_start(&self, name: &str, header: &str, collapsed: bool) {
        let opt = if collapsed { "[collapsed=true]" } else { "" };
        self.message(&format!(
            "section_start:{}:{name}{opt}\r\x1b[0K{}{header}{}",
            unix_now(),
            style::BOLD_CYAN,
            style::RESET
        ));
    }

    /// Closes a section.
    pub fn section_end(&self, name: &str) {
        self.message(&format!("section_end:{}:{name}\r\x1b[0K", unix_now()));
    }

    /// Releases the masker's held-back tail.
    pub fn flush(&self) {
        let mut inner = self.lock();
        let mut masked = Vec::new();
        inner.masker.flush(&mut masked);
        inner.append(&masked, Source::Runner);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Bytes of log so far.
    pub fn len(&self) -> usize {
        self.lock().trace.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` bytes from `from`.
    pub fn slice(&self, from: usize, max: usize) -> Vec<u8> {
        let inner = self.lock();
        let from = from.min(inner.trace.len());
        let to = (from + max).min(inner.trace.len());
        inner.trace[from..to].to_vec()
    }

    /// The whole log (tests and the final report).
    pub fn contents(&self) -> Vec<u8> {
        self.lock().trace.clone()
    }

    /// `crc32:%08x` of the whole log and its size, as GitLab verifies them.
    pub fn checksum(&self) -> (String, usize) {
        let inner = self.lock();
        (
            format!("crc32:{:08x}", crc32fast::hash(&inner.trace)),
            inner.trace.len(),
        )
    }

    /// Whether output was cut at the limit.
    pub fn truncated(&self) -> bool {
        self.lock().truncated
    }

    /// Waits until something was appended.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Deletes the on-disk mirror (the job was reported).
    pub fn remove_mirror(&self) {
        if let Some((path, _)) = self.lock().disk.take() {
            let _ = fs_err::remove_file(path);
        }
    }
}

impl Inner {
    fn append(&mut self, bytes: &[u8], source: Source) {
        if bytes.is_empty() {
            return;
        }
        let start = self.trace.len();
        match source {
            Source::Output => {
                if self.truncated {
                    return;
                }
                let room = self.limit.saturating_sub(self.trace.len());
                if bytes.len() <= room {
                    self.trace.extend_from_slice(bytes);
                } else {
                    self.trace.extend_from_slice(&bytes[..room]);
                    self.truncated = true;
                    let marker = format!(
                        "\n{}WARNING: the job log reached its limit of {} KiB; the job goes on, but no more of its output is kept (raise `output_limit` of this runner to keep more){}\n",
                        style::YELLOW,
                        self.limit / 1024,
                        style::RESET
                    );
                    self.trace.extend_from_slice(marker.as_bytes());
                }
            }
            Source::Runner => {
                let room = (self.limit + MESSAGE_RESERVE).saturating_sub(self.trace.len());
                let n = bytes.len().min(room);
                self.trace.extend_from_slice(&bytes[..n]);
            }
        }
        if let Some((path, file)) = &mut self.disk
            && let Err(e) = file.write_all(&self.trace[start..])
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot mirror the job log to disk; crash recovery will lack it");
            self.disk = None;
        }
    }
}

/// Keeps an output stream open (see [`JobLog::stream`]).
pub struct StreamGuard {
    log: Arc<JobLog>,
}

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamGuard")
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut inner = self.log.lock();
        inner.open_streams = inner.open_streams.saturating_sub(1);
        if inner.open_streams == 0 {
            let mut masked = Vec::new();
            inner.masker.flush(&mut masked);
            inner.append(&masked, Source::Output);
        }
        drop(inner);
        self.log.changed.notify_waiters();
    }
}

/// A file only this user can read (mode 0600).
fn private_file(path: &std::path::Path, append: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot open `{}`: {e}", path.display()))
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(log: &JobLog) -> String {
        String::from_utf8(log.contents()).unwrap()
    }

    #[test]
    fn output_is_masked_and_capped_with_a_marker_and_messages_still_pass() {
        let log = JobLog::new(Masker::new(&["topsecret"], &[] as &[&str]), 20, None).unwrap();
        let guard = log.stream();
        log.output(b"pw topsec");
        log.output(b"ret ok\n");
        log.output(b"0123456789abcdefghijklmnop");
        log.output(b"more output is dropped");
        drop(guard);
        log.error("Job failed: exit code 1");
        let t = text(&log);
        assert!(t.starts_with("pw [MASKED] ok\n01234"), "{t}");
        assert!(t.contains("reached its limit of 0 KiB"), "{t}");
        assert!(!t.contains("dropped"), "{t}");
        assert!(
            t.ends_with("ERROR: Job failed: exit code 1\x1b[0;m\n"),
            "{t}"
        );
        assert!(log.truncated());
    }

    #[test]
    fn sections_have_gitlab_markers() {
        let log = JobLog::new(Masker::new(&[] as &[&str], &[] as &[&str]), 1 << 20, None).unwrap();
        log.section_start("get_sources", "Getting source from Git repository", true);
        log.section_end("get_sources");
        let t = text(&log);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("section_start:"), "{t}");
        assert!(
            lines[0].contains(":get_sources[collapsed=true]\r\x1b[0K"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("section_end:") && lines[1].ends_with(":get_sources\r\x1b[0K"),
            "{t}"
        );
    }

    #[test]
    fn checksum_is_crc32_of_everything_and_the_mirror_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let log = JobLog::new(
            Masker::new(&["pw"], &[] as &[&str]),
            1 << 20,
            Some(path.clone()),
        )
        .unwrap();
        log.message("hello pw");
        let (sum, size) = log.checksum();
        assert_eq!(size, "hello [MASKED]\n".len());
        assert_eq!(
            sum,
            format!("crc32:{:08x}", crc32fast::hash(b"hello [MASKED]\n"))
        );
        assert_eq!(std::fs::read(&path).unwrap(), log.contents());
        let again =
            JobLog::resume(Masker::new(&["pw"], &[] as &[&str]), 1 << 20, path.clone()).unwrap();
        again.message("restarted");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"hello [MASKED]\nrestarted\n"
        );
    }
}

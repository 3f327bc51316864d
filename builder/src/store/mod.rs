//! The content store: blobs by digest on disk, shared safely by concurrent rbuild processes.
//!
//! Owns the cache directory (default `$XDG_CACHE_HOME/rbuild`, else `~/.cache/rbuild`;
//! `--cache-dir` overrides it). Layout under the root:
//!
//! ```text
//! store.lock               flock: shared while a process uses the store, exclusive for prune
//! blobs/<alg>/<hex>        content, named by its digest
//! tmp/                     temp files of writes in progress; `<alg>-<hex>.partial` downloads
//!                          (kept for resuming) guarded by `<alg>-<hex>.lock`
//! refs/<sha256 of name>.json   a named root (e.g. a pulled `host/repo:tag`): its digest and
//!                          every blob reachable from it
//! ```
//!
//! Guarantees:
//! - **Nothing under a wrong name.** Every write goes to a temp file while it is hashed, and
//!   is renamed to `blobs/<alg>/<hex>` only if the digest (and size, when known) match.
//! - **Verified reads.** [`Store::open_blob`] returns a reader that hashes what it hands out
//!   and fails with `InvalidData` at the end if the content does not match; a corrupt blob is
//!   removed so the next pull fetches it again.
//! - **Concurrency.** Blob writes are atomic renames of content-addressed files, so two
//!   processes writing the same blob both succeed. Every [`Store`] holds a shared lock;
//!   [`Store::prune`] takes it exclusively, so garbage collection never deletes a blob
//!   another process is writing or about to reference.
//! - **Garbage collection.** Only blobs reachable from a ref record survive a prune; callers
//!   that store blobs (pull, the build cache) must record a ref naming every blob they need.
//!   Least-recently-used refs go first when `--keep-storage` asks for room.
//!
//! This module knows nothing about manifests or registries; it stores bytes.

mod digest;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use digest::{Algorithm, Digest, DigestError, Hasher};

use crate::envvars;

/// Failures of the content store. Each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the cache directory `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read or write `{path}` in the content store")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "content does not match its digest: expected `{expected}`, got `{actual}` ({size} bytes)"
    )]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("content of `{digest}` has {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob `{0}` is not in the content store")]
    Missing(Digest),
    #[error("ref record `{path}` is damaged")]
    BadRef {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild`.
pub fn default_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    nonempty(envvars::XDG_CACHE_HOME)
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("rbuild"))
}

/// A named root of the store: what a ref name points at, and every blob it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the root document (a manifest or an index).
    pub digest: Digest,
    /// Media type of the root document.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Size of the root document.
    pub size: u64,
    /// Where it came from (`registry/repository`), for cross-repository mounts on push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every blob reachable from the root that is in the store (the root included).
    pub blobs: BTreeSet<Digest>,
}

/// What [`Store::prune`] should keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Remove every ref and blob.
    pub all: bool,
    /// Keep at most this many bytes, dropping least-recently-used refs first.
    pub keep_bytes: Option<u64>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Interrupted downloads (`tmp/*.partial`) that were removed.
    pub removed_partials: usize,
    pub removed_blobs: Vec<Digest>,
    pub removed_refs: Vec<String>,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
}

/// An open content store. Holds a shared lock on the store for as long as it lives.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store at `root` for normal use (shared lock).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let lock = Self::prepare(root)?;
        lock.lock_shared().map_err(|source| StoreError::Open {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Store {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// Opens the store with the exclusive lock (for prune), waiting for other processes to
    /// finish; `waiting` is called once if the lock is busy.
    pub fn open_exclusive(root: &Path, waiting: impl FnOnce()) -> Result<Store, StoreError> {
        let lock = Self::prepare(root)?;
        let open_err = |source| StoreError::Open {
            path: root.to_path_buf(),
            source,
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting();
                lock.lock().map_err(open_err)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
        }
        Ok(Store {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    fn prepare(root: &Path) -> Result<File, StoreError> {
        let open_err = |source| StoreError::Open {
            path: root.to_path_buf(),
            source,
        };
        for dir in ["blobs/sha256", "blobs/sha512", "tmp", "refs"] {
            std::fs::create_dir_all(root.join(dir)).map_err(open_err)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("store.lock"))
            .map_err(open_err)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Whether the blob is stored (with `size` bytes, when given). Does not hash it.
    pub fn contains(&self, digest: &Digest, size: Option<u64>) -> bool {
        std::fs::metadata(self.blob_file(digest))
            .is_ok_and(|m| m.is_file() && size.is_none_or(|s| s == m.len()))
    }

    /// Size of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_file(digest))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// Opens a stored blob for reading; the reader verifies the digest when it reaches the end.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let path = self.blob_file(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(digest.clone()));
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        // Mark it used (for least-recently-used pruning); failing to do so is harmless.
        let _ = file.set_modified(SystemTime::now());
        Ok(BlobReader::new(file, digest.clone(), Some(path)))
    }

    /// Reads a whole blob (manifests, configs) of at most `limit` bytes, verified.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.open_blob(digest)?;
        let path = self.blob_file(digest);
        let mut buf = Vec::new();
        (&mut reader)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| reader.map_read_error(e, &path))?;
        if buf.len() as u64 > limit {
            return Err(StoreError::Io {
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {limit} bytes"),
                ),
            });
        }
        // The limit may have stopped the reader before its end check: finish it.
        let mut rest = [0u8; 1];
        reader
            .read(&mut rest)
            .map_err(|e| reader.map_read_error(e, &path))?;
        Ok(buf)
    }

    /// Stores `bytes`, verifying them against `expected` when given. Returns the digest.
    pub fn put_bytes(&self, expected: Option<&Digest>, bytes: &[u8]) -> Result<Digest, StoreError> {
        let mut writer = self.writer(expected.map_or(Algorithm::Sha256, Digest::algorithm))?;
        writer.write_all(bytes).map_err(io_err(&writer.path))?;
        writer.commit(expected, Some(bytes.len() as u64))
    }

    /// Stores what `reader` yields (e.g. a blob of an OCI layout), verified against
    /// `expected` and `size`; a no-op when the blob is already stored.
    pub fn put_reader(
        &self,
        expected: &Digest,
        size: u64,
        mut reader: impl Read,
    ) -> Result<(), StoreError> {
        if self.contains(expected, Some(size)) {
            return Ok(());
        }
        let mut writer = self.writer(expected.algorithm())?;
        let path = writer.path.clone();
        io::copy(&mut reader, &mut writer).map_err(|e| {
            match e.get_ref().and_then(|i| i.downcast_ref::<Corrupt>()) {
                Some(c) => StoreError::DigestMismatch {
                    expected: c.expected.clone(),
                    actual: c.actual.clone(),
                    size: c.size,
                },
                None => io_err(&path)(e),
            }
        })?;
        writer.commit(Some(expected), Some(size)).map(|_| ())
    }

    /// A writer to a temp file; [`BlobWriter::commit`] verifies and names it.
    pub fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter, StoreError> {
        let dir = self.tmp_dir();
        let (file, path) = temp_file(&dir, "blob")?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Hasher::new(algorithm),
            size: 0,
            blobs: self.root.join("blobs"),
        })
    }

    /// Moves a fully written file (e.g. a finished download) into place if it matches
    /// `expected`; otherwise removes it and reports the mismatch.
    pub(crate) fn adopt(
        &self,
        tmp: &Path,
        expected: &Digest,
        actual: Digest,
        size: u64,
        expected_size: Option<u64>,
    ) -> Result<(), StoreError> {
        if &actual != expected {
            let _ = std::fs::remove_file(tmp);
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
                size,
            });
        }
        if let Some(want) = expected_size
            && want != size
        {
            let _ = std::fs::remove_file(tmp);
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: want,
                actual: size,
            });
        }
        let dest = self.blob_file(expected);
        std::fs::rename(tmp, &dest).map_err(io_err(&dest))
    }

    fn ref_path(&self, name: &str) -> PathBuf {
        let key = Digest::sha256_of(name.as_bytes());
        self.root.join("refs").join(format!("{}.json", key.hex()))
    }

    /// Records (or replaces) a named root.
    pub fn set_ref(&self, record: &RefRecord) -> Result<(), StoreError> {
        let path = self.ref_path(&record.name);
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let (mut file, tmp) = temp_file(&self.tmp_dir(), "ref")?;
        file.write_all(&bytes).map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The record named `name`, if any; marks it used.
    pub fn get_ref(&self, name: &str) -> Result<Option<RefRecord>, StoreError> {
        let path = self.ref_path(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                let record: RefRecord = serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::BadRef { path, source })?;
                Ok(Some(record))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every ref record with the time it was last used, most recent first.
    pub fn refs(&self) -> Result<Vec<(RefRecord, SystemTime)>, StoreError> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let used = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match serde_json::from_slice::<RefRecord>(&bytes) {
                Ok(r) => out.push((r, used)),
                // A damaged record protects nothing; prune removes it.
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "damaged ref record"),
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
        Ok(out)
    }

    /// Every stored blob with its size.
    fn blobs(&self) -> Result<BTreeMap<Digest, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name();
                let Ok(digest) = format!("{}:{}", alg.name(), name.to_string_lossy()).parse()
                else {
                    continue;
                };
                let size = entry.metadata().map_or(0, |m| m.len());
                out.insert(digest, size);
            }
        }
        Ok(out)
    }

    /// Removes unreferenced blobs, leftover temp files and, to meet `keep_bytes`, the
    /// least-recently-used refs. Needs a store opened with [`Store::open_exclusive`].
    pub fn prune(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        // Temp files: nobody else holds the store, so every one of them is left over.
        let tmp = self.tmp_dir();
        for entry in std::fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            let size = entry.metadata().map_or(0, |m| m.len());
            if std::fs::remove_file(entry.path()).is_ok() {
                report.freed_bytes += size;
                if entry.file_name().to_string_lossy().ends_with(".partial") {
                    report.removed_partials += 1;
                }
            }
        }
        let blobs = self.blobs()?;
        let refs = self.refs()?;
        let mut kept: Vec<&RefRecord> = Vec::new();
        let mut live: BTreeSet<&Digest> = BTreeSet::new();
        let mut live_bytes = 0u64;
        for (record, _) in &refs {
            let extra: u64 = record
                .blobs
                .iter()
                .filter(|d| !live.contains(d))
                .filter_map(|d| blobs.get(d))
                .sum();
            let fits = options
                .keep_bytes
                .is_none_or(|limit| live_bytes + extra <= limit);
            if options.all || !fits {
                report.removed_refs.push(record.name.clone());
                continue;
            }
            live_bytes += extra;
            live.extend(record.blobs.iter());
            kept.push(record);
        }
        for name in &report.removed_refs {
            let path = self.ref_path(name);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        // Damaged ref records protect nothing: remove them too.
        let refs_dir = self.root.join("refs");
        let kept_files: BTreeSet<PathBuf> = kept.iter().map(|r| self.ref_path(&r.name)).collect();
        for entry in std::fs::read_dir(&refs_dir).map_err(io_err(&refs_dir))? {
            let path = entry.map_err(io_err(&refs_dir))?.path();
            if !kept_files.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        for (digest, size) in &blobs {
            if live.contains(digest) {
                continue;
            }
            let path = self.blob_file(digest);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            report.removed_blobs.push(digest.clone());
            report.freed_bytes += size;
        }
        report.kept_bytes = live_bytes;
        Ok(report)
    }
}

/// Creates a new uniquely named file in `dir`.
pub(crate) fn temp_file(dir: &Path, prefix: &str) -> Result<(File, PathBuf), StoreError> {
    let pid = std::process::id();
    for attempt in 0u32..1000 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .subsec_nanos();
        let path = dir.join(format!(".{prefix}-{pid}-{nanos:09}-{attempt}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Err(StoreError::Io {
        path: dir.to_path_buf(),
        source: io::Error::other("cannot create a unique temp file"),
    })
}

/// Writes a blob to a temp file while hashing it. Dropped without `commit`, the temp file is
/// removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Hasher,
    size: u64,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of what was written so far (what [`BlobWriter::commit`] will name it).
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Verifies the content against `expected` (and `expected_size`) and names it by its
    /// digest. On a mismatch nothing is stored.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, StoreError> {
        drop(self.file.take());
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(Algorithm::Sha256));
        let actual = hasher.finish();
        let fail = |e| {
            let _ = std::fs::remove_file(&self.path);
            Err(e)
        };
        if let Some(expected) = expected
            && expected != &actual
        {
            return fail(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
                size: self.size,
            });
        }
        if let Some(want) = expected_size
            && want != self.size
        {
            return fail(StoreError::SizeMismatch {
                digest: actual,
                expected: want,
                actual: self.size,
            });
        }
        let dest = self
            .blobs
            .join(actual.algorithm().name())
            .join(actual.hex());
        std::fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        self.path = PathBuf::new();
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads a blob while hashing it; at the end, a mismatch is an `InvalidData` error (and a
/// corrupt stored blob is removed).
#[derive(Debug)]
pub struct BlobReader {
    inner: Box<ReadSource>,
    hasher: Option<Hasher>,
    expected: Digest,
    read: u64,
    /// The stored file, removed when it turns out to be corrupt.
    path: Option<PathBuf>,
}

type ReadSource = dyn ReadDebug + Send;

/// `Read + Debug`, so readers of any source can be boxed.
pub trait ReadDebug: Read + std::fmt::Debug {}
impl<T: Read + std::fmt::Debug> ReadDebug for T {}

impl BlobReader {
    /// Wraps `inner`, whose content must hash to `expected`.
    pub fn new(
        inner: impl Read + std::fmt::Debug + Send + 'static,
        expected: Digest,
        path: Option<PathBuf>,
    ) -> BlobReader {
        BlobReader {
            inner: Box::new(inner),
            hasher: Some(Hasher::for_digest(&expected)),
            expected,
            read: 0,
            path,
        }
    }

    /// The digest the content must have.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    fn map_read_error(&self, e: io::Error, path: &Path) -> StoreError {
        match e.get_ref().and_then(|i| i.downcast_ref::<Corrupt>()) {
            Some(c) => StoreError::DigestMismatch {
                expected: self.expected.clone(),
                actual: c.actual.clone(),
                size: c.size,
            },
            None => io_err(path)(e),
        }
    }
}

/// The error inside the `InvalidData` I/O error a [`BlobReader`] returns on a mismatch.
#[derive(Debug, thiserror::Error)]
#[error("content does not match its digest `{expected}` (it hashes to `{actual}`, {size} bytes)")]
pub struct Corrupt {
    pub expected: Digest,
    pub actual: Digest,
    pub size: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            if n > 0 {
                h.update(&buf[..n]);
                self.read += n as u64;
            } else if !buf.is_empty() {
                let actual = self.hasher.take().map(Hasher::finish);
                if let Some(actual) = actual
                    && actual != self.expected
                {
                    if let Some(path) = &self.path {
                        tracing::warn!(path = %path.display(), expected = %self.expected, %actual, "removing corrupt blob");
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        Corrupt {
                            expected: self.expected.clone(),
                            actual,
                            size: self.read,
                        },
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Parses a size such as `10GB`, `512MiB`, `1.5g` or `1048576` (binary multiples, as Docker
/// reads `--keep-storage`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. `10GB`, `512MiB`)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use B, KB, MB, GB or TB)"
            ));
        }
    };
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let bytes = (value * mult as f64).round() as u64;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn stores_by_digest_and_verifies_on_read() {
        let (_d, s) = store();
        let digest = s.put_bytes(None, b"hello").unwrap();
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert!(s.contains(&digest, Some(5)));
        assert!(!s.contains(&digest, Some(6)));
        assert_eq!(s.read_blob(&digest, 100).unwrap(), b"hello");

        // Corrupt it on disk: the read fails and the blob is gone afterwards.
        std::fs::write(s.blob_file(&digest), b"jello").unwrap();
        let err = s.read_blob(&digest, 100).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err:?}");
        assert!(!s.contains(&digest, None));
    }

    #[test]
    fn wrong_content_is_never_stored() {
        let (_d, s) = store();
        let expected = Digest::sha256_of(b"right");
        let err = s.put_bytes(Some(&expected), b"wrong").unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(!s.contains(&expected, None));
        assert!(!s.contains(&Digest::sha256_of(b"wrong"), None));
        assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn prune_keeps_referenced_blobs_and_evicts_lru_refs() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = s.put_bytes(None, &[1u8; 1000]).unwrap();
        let b = s.put_bytes(None, &[2u8; 2000]).unwrap();
        let shared = s.put_bytes(None, &[3u8; 500]).unwrap();
        let orphan = s.put_bytes(None, &[4u8; 10]).unwrap();
        let rec = |name: &str, blobs: &[&Digest]| RefRecord {
            name: name.into(),
            digest: blobs[0].clone(),
            media_type: "x".into(),
            size: 1,
            source: None,
            blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        };
        s.set_ref(&rec("old", &[&a, &shared])).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.set_ref(&rec("new", &[&b, &shared])).unwrap();
        drop(s);

        let s = Store::open_exclusive(dir.path(), || {}).unwrap();
        let r = s.prune(PruneOptions::default()).unwrap();
        assert_eq!(r.removed_blobs, [orphan]);
        assert!(r.removed_refs.is_empty());

        // 2500 bytes fit `new` (b + shared) but not `old` as well.
        let r = s
            .prune(PruneOptions {
                all: false,
                keep_bytes: Some(2600),
            })
            .unwrap();
        assert_eq!(r.removed_refs, ["old"]);
        assert_eq!(r.removed_blobs, [a]);
        assert_eq!(r.kept_bytes, 2500);
        assert!(s.get_ref("new").unwrap().is_some());

        let r = s
            .prune(PruneOptions {
                all: true,
                keep_bytes: None,
            })
            .unwrap();
        assert_eq!(r.removed_refs, ["new"]);
        assert_eq!(r.freed_bytes, 2500);
    }

    #[test]
    fn prune_removes_partial_downloads_and_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let hex = Digest::sha256_of(b"x").hex().to_owned();
        std::fs::write(
            s.tmp_dir().join(format!("sha256-{hex}.partial")),
            [0u8; 300],
        )
        .unwrap();
        std::fs::write(s.tmp_dir().join(format!("sha256-{hex}.lock")), b"").unwrap();
        std::fs::write(s.tmp_dir().join(".blob-1-2-3"), [0u8; 20]).unwrap();
        drop(s);
        let s = Store::open_exclusive(dir.path(), || {}).unwrap();
        let r = s.prune(PruneOptions::default()).unwrap();
        assert_eq!(r.removed_partials, 1);
        assert_eq!(r.freed_bytes, 320);
        assert_eq!(std::fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}

//! The local build cache: cache keys, and one record per executed step.
//!
//! A step's [`Key`] is a sha256 over everything its result depends on: the key of the
//! file system it starts from, the operation and its expanded arguments, the environment
//! and build arguments a `RUN` sees, the user, working directory, network and mounts, the
//! content digest of copied sources, the keys of stages it reads from, the platform, and
//! the ids (never the contents) of secrets. The same key means the same result, so a
//! record under that key is the step's result:
//!
//! ```text
//! <cache>/build/v1/steps/<key>.json   {"empty": false, "snapshot": "s-...", "layers": [...]}
//! ```
//!
//! `snapshot` names the step's kept upper directory under the sandbox state
//! (`sandbox/snapshots/<mapping>/`); `layers` the layer blobs written from it, one per
//! way of writing them (compression, `SOURCE_DATE_EPOCH` clamp). A record whose snapshot
//! and blobs are both gone is a miss.
//!
//! Records are written by a thread of their own (a temp file renamed into place), so the
//! next step does not wait for the file system; reads see records still on their way,
//! and [`Records::flush`] at the end of the build waits for the writes and reports the
//! first that failed.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Builds a cache key: typed, length-prefixed fields, so no two field lists collide.
#[derive(Debug, Clone)]
pub struct Key(Sha256);

impl Key {
    /// A key for an operation of kind `kind`.
    pub fn new(kind: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.add("rbuild-cache", "v1");
        k.add("kind", kind);
        k
    }

    /// Adds a named field.
    pub fn add(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Key {
        let v = value.as_ref();
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((v.len() as u64).to_le_bytes());
        self.0.update(v);
        self
    }

    /// Adds a list field.
    pub fn list<S: AsRef<str>>(&mut self, name: &str, values: &[S]) -> &mut Key {
        self.add(name, values.len().to_string());
        for v in values {
            self.add(name, v.as_ref());
        }
        self
    }

    /// The key as 64 hex digits.
    pub fn finish(&self) -> String {
        format!("{:x}", self.0.clone().finalize())
    }
}

/// A layer blob written from a step's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// How it was written: compression and time clamp (`gzip`, `zstd`, `clamp=...`).
    pub variant: String,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// A step's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The step changed nothing: it makes no layer.
    pub empty: bool,
    /// Its kept snapshot, when it changed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerInfo>,
    /// When the step ran (Unix seconds): its history time, so a rebuild from the cache
    /// gives the same image.
    #[serde(default)]
    pub created: u64,
}

impl Record {
    /// The layer written as `variant`, if any.
    pub fn layer(&self, variant: &str) -> Option<&LayerInfo> {
        self.layers.iter().find(|l| l.variant == variant)
    }
}

/// The records of a cache directory.
#[derive(Debug)]
pub struct Records {
    dir: PathBuf,
    /// Records put but not yet on disk, the newest per key.
    pending: Arc<Mutex<HashMap<String, Record>>>,
    /// The writer thread and its queue (keys, in the order they were put); started on the
    /// first put, ended by [`Records::flush`].
    writer: Mutex<Option<Writer>>,
}

#[derive(Debug)]
struct Writer {
    queue: Sender<String>,
    thread: JoinHandle<io::Result<()>>,
}

impl Records {
    /// The records under `<cache>/build/v1/steps` (created when missing).
    pub fn open(cache: &Path) -> io::Result<Records> {
        let dir = cache.join("build").join("v1").join("steps");
        std::fs::create_dir_all(&dir)?;
        Ok(Records {
            dir,
            pending: Arc::default(),
            writer: Mutex::new(None),
        })
    }

    /// The record of `key`, if there is a readable one.
    pub fn get(&self, key: &str) -> Option<Record> {
        if let Some(r) = lock(&self.pending).get(key) {
            return Some(r.clone());
        }
        let bytes = std::fs::read(record_path(&self.dir, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores the record of `key`: at once for [`Records::get`], on disk soon after
    /// (atomically: a temp file renamed into place).
    pub fn put(&self, key: &str, record: &Record) -> io::Result<()> {
        lock(&self.pending).insert(key.to_owned(), record.clone());
        let mut writer = lock(&self.writer);
        if writer.is_none() {
            let (queue, keys) = channel::<String>();
            let (dir, pending) = (self.dir.clone(), Arc::clone(&self.pending));
            let thread = std::thread::Builder::new()
                .name("cache-records".into())
                .spawn(move || write_pending(&dir, &pending, keys))?;
            *writer = Some(Writer { queue, thread });
        }
        if let Some(w) = writer.as_ref()
            && w.queue.send(key.to_owned()).is_ok()
        {
            return Ok(());
        }
        // The writer is gone (it cannot be, short of a panic): write here.
        drop(writer);
        write_record(&self.dir, key, record)
    }

    /// Waits until every record put so far is on disk; the first write that failed.
    pub fn flush(&self) -> io::Result<()> {
        let writer = lock(&self.writer).take();
        let Some(Writer { queue, thread }) = writer else {
            return Ok(());
        };
        drop(queue);
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the cache record writer panicked")))
    }

    /// Adds a layer to the record of `key` (read again first: another build may have
    /// added one meanwhile).
    pub fn add_layer(&self, key: &str, layer: LayerInfo) -> io::Result<()> {
        let mut r = self.get(key).unwrap_or_default();
        r.layers.retain(|l| l.variant != layer.variant);
        r.layers.push(layer);
        self.put(key, &r)
    }
}

impl Drop for Records {
    fn drop(&mut self) {
        // Nothing put is lost when a build ends early; errors were the build's to report.
        let _ = self.flush();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: for each key put, writes its newest pending record and takes it
/// out of `pending` unless a newer one came meanwhile (whose own queued key writes it).
/// The first write that failed.
fn write_pending(
    dir: &Path,
    pending: &Mutex<HashMap<String, Record>>,
    keys: std::sync::mpsc::Receiver<String>,
) -> io::Result<()> {
    let mut first_error = Ok(());
    for key in keys {
        // Gone: written already, for an earlier key in the queue.
        let Some(record) = lock(pending).get(&key).cloned() else {
            continue;
        };
        let written = write_record(dir, &key, &record);
        let mut pending = lock(pending);
        if pending.get(&key) == Some(&record) {
            pending.remove(&key);
        }
        if first_error.is_ok() {
            first_error = written;
        }
    }
    first_error
}

fn record_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.json"))
}

fn write_record(dir: &Path, key: &str, record: &Record) -> io::Result<()> {
    use std::io::Write as _;
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.persist(record_path(dir, key)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_fields() {
        let a = Key::new("run").add("x", "ab").add("y", "c").finish();
        let b = Key::new("run").add("x", "a").add("y", "bc").finish();
        assert_ne!(a, b);
        assert_eq!(a, Key::new("run").add("x", "ab").add("y", "c").finish());
        assert_ne!(a, Key::new("copy").add("x", "ab").add("y", "c").finish());
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn records_round_trip_and_collect_layers() {
        let d = tempfile::tempdir().unwrap();
        let r = Records::open(d.path()).unwrap();
        assert_eq!(r.get("k"), None);
        let rec = Record {
            empty: false,
            snapshot: Some("s-1".into()),
            layers: Vec::new(),
            created: 7,
        };
        r.put("k", &rec).unwrap();
        assert_eq!(r.get("k"), Some(rec.clone()));
        r.flush().unwrap();
        // On disk: a fresh reader sees it.
        assert_eq!(Records::open(d.path()).unwrap().get("k"), Some(rec));
        let layer = LayerInfo {
            variant: "gzip".into(),
            digest: "sha256:a".into(),
            diff_id: "sha256:b".into(),
            size: 3,
            media_type: "t".into(),
        };
        r.add_layer("k", layer.clone()).unwrap();
        r.add_layer("k", layer.clone()).unwrap();
        assert_eq!(r.get("k").unwrap().layers, std::slice::from_ref(&layer));
        assert_eq!(r.get("k").unwrap().layer("gzip").unwrap().size, 3);
        drop(r);
        let again = Records::open(d.path()).unwrap();
        assert_eq!(again.get("k").unwrap().layers, [layer]);
    }

    #[test]
    fn the_last_put_of_a_key_wins_and_a_failed_write_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let r = Records::open(d.path()).unwrap();
        for created in 0..50 {
            let rec = Record {
                created,
                ..Record::default()
            };
            r.put("k", &rec).unwrap();
            r.put(&format!("k{created}"), &rec).unwrap();
        }
        r.flush().unwrap();
        let again = Records::open(d.path()).unwrap();
        assert_eq!(again.get("k").unwrap().created, 49);
        assert_eq!(again.get("k7").unwrap().created, 7);
        // The directory is gone: the write fails, and flush says so.
        std::fs::remove_dir_all(d.path().join("build")).unwrap();
        r.put("k", &Record::default()).unwrap();
        assert!(r.flush().is_err());
    }
}

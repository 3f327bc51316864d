//! Extracting a layer's tar stream into a snapshot directory, safely.
//!
//! Layers are untrusted input (`ARCHITECTURE.md`, invariant 4). The rules:
//!
//! - **Names**: an entry or hard-link name with a `..` component or a leading `/` is
//!   refused (the layer is rejected). Nothing else is needed for containment, because:
//! - **Resolution** goes through `sandbox::rooted`: parent directories are looked up with
//!   `RESOLVE_IN_ROOT`, so symlinks created by earlier entries (absolute or full of
//!   `..`) are interpreted with the snapshot as `/` and never lead outside it; a path
//!   through a symlink whose target does not exist is refused. The last component is
//!   never followed: an existing entry is removed and the new one created with
//!   `O_EXCL | O_NOFOLLOW`.
//! - **Hard links** resolve their target the same way, so they can only link to a file
//!   already extracted into this snapshot.
//! - **Device nodes** are skipped and reported (`device-node-or-whiteout-mknod`); the
//!   sandbox provides `/dev`. FIFOs are created.
//! - **Whiteouts** become what overlayfs (mounted with `userxattr`) understands:
//!   `.wh.NAME` a character device 0:0, `.wh..wh..opq` the `user.overlay.opaque=y`
//!   attribute on its directory.
//! - **Extended attributes**: `security.selinux` (`xattr-security-selinux-in-layer`),
//!   `security.ima`, `security.evm`, `trusted.*` and any `*.overlay.*`
//!   (`xattr-overlay-or-ima-in-layer`) are dropped and reported; `security.capability`
//!   is set when the kernel allows (it stores a namespaced capability), else reported
//!   (`file-capabilities-setfcap`); others are set, and reported when refused.
//! - **Owners** outside the user namespace's mapping (`EINVAL`) are left to the
//!   namespace's root and reported (`subid-range-too-small`).
//! - **Sparse files** (GNU `S` entries, PAX sparse 1.0) are written with holes, so a
//!   header claiming a huge size costs no disk; a size the file system cannot hold is an
//!   error.
//! - **Memory** stays bounded: metadata records (PAX headers, GNU long names) have caps,
//!   file data is streamed.
//!
//! The tar reader is this module's own (ustar, GNU and PAX), so every size and limit is
//! under its control.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::sandbox::rooted::{self, Dir, Kind, Root};

/// Largest PAX extended header accepted (real ones are a few hundred bytes; big xattrs
/// such as ACLs stay far below this).
const MAX_PAX: u64 = 1 << 20;
/// Largest GNU long name / long link accepted.
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX sparse 1.0 map accepted.
const MAX_SPARSE_MAP: u64 = 16 << 20;
/// How many example paths a report keeps per finding.
const EXAMPLES: usize = 10;

/// Why a layer could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("cannot read the layer")]
    Read(#[source] io::Error),
    #[error("the layer is not a valid tar stream at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("the layer ends in the middle of `{path}`")]
    Truncated { path: String },
    #[error("entry `{path}` is refused: {reason}")]
    UnsafeName { path: String, reason: &'static str },
    #[error("hard link `{path}` -> `{target}` is refused: {reason}")]
    BadHardLink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("entry `{path}` goes through `{through}`, which is not a directory in the layer")]
    NotADirectory { path: String, through: String },
    #[error("cannot {op} `{path}`")]
    Write {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the layer's {what} has digest `{actual}`, expected `{expected}`")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
}

/// A count with the first few paths, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Examples {
    pub count: u64,
    pub paths: Vec<String>,
}

impl Examples {
    fn add(&mut self, path: &str) {
        self.count += 1;
        if self.paths.len() < EXAMPLES {
            self.paths.push(path.to_owned());
        }
    }

    fn merge(&mut self, other: &Examples) {
        self.count += other.count;
        for p in &other.paths {
            if self.paths.len() < EXAMPLES {
                self.paths.push(p.clone());
            }
        }
    }
}

/// Why an extended attribute was not written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum XattrDrop {
    /// Dropped on purpose: it cannot be set in a user namespace or means nothing here.
    Policy,
    /// The kernel refused it.
    Refused,
}

/// What extraction did that the user should hear about. Everything here was tolerated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtractReport {
    /// Entries read.
    pub entries: u64,
    /// Extended attributes not written, by name and reason.
    pub xattrs_dropped: BTreeMap<String, BTreeMap<XattrDrop, Examples>>,
    /// Character and block devices skipped.
    pub devices_skipped: Examples,
    /// Entries whose owner is outside the mapping (left owned by the namespace's root),
    /// with the largest uid and gid seen.
    pub ids_unmapped: Examples,
    pub max_unmapped_id: u32,
    /// Entries of types that mean nothing in a rootfs (GNU volume labels, ...).
    pub entries_skipped: Examples,
    /// Whiteouts and opaque markers written.
    pub whiteouts: u64,
}

impl ExtractReport {
    /// Adds another layer's report to this one.
    pub fn merge(&mut self, other: &ExtractReport) {
        self.entries += other.entries;
        for (name, by_reason) in &other.xattrs_dropped {
            let mine = self.xattrs_dropped.entry(name.clone()).or_default();
            for (reason, ex) in by_reason {
                mine.entry(*reason).or_default().merge(ex);
            }
        }
        self.devices_skipped.merge(&other.devices_skipped);
        self.ids_unmapped.merge(&other.ids_unmapped);
        self.max_unmapped_id = self.max_unmapped_id.max(other.max_unmapped_id);
        self.entries_skipped.merge(&other.entries_skipped);
        self.whiteouts += other.whiteouts;
    }

    fn dropped(&mut self, name: &str, why: XattrDrop, path: &str) {
        self.xattrs_dropped
            .entry(name.to_owned())
            .or_default()
            .entry(why)
            .or_default()
            .add(path);
    }
}

// ---------------------------------------------------------------------------------------
// The tar reader

/// Entry types rbuild distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    Other(u8),
}

/// One entry's header, with PAX and GNU extensions applied.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) path: Vec<u8>,
    pub(crate) link: Vec<u8>,
    pub(crate) kind: EntryKind,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: (i64, i64),
    /// Bytes of data stored in the archive.
    pub(crate) size: u64,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    sparse: Option<Sparse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sparse {
    real_size: u64,
    /// `(offset, length)` of each data segment, in file order; the stored data is their
    /// concatenation.
    segments: Vec<(u64, u64)>,
}

/// Streaming tar reader over 512-byte blocks (also used for `COPY` streams and `ADD`
/// archives by the sandbox's file operations).
pub(crate) struct TarReader<R> {
    r: R,
    offset: u64,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// Global PAX records (`g` entries), applied to every later entry.
    global: Vec<(String, Vec<u8>)>,
}

fn corrupt(offset: u64, reason: impl Into<String>) -> ExtractError {
    ExtractError::Corrupt {
        offset,
        reason: reason.into(),
    }
}

/// Parses a tar numeric field: octal text (space/NUL padded) or GNU base-256.
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256: the rest of the first byte and the following bytes, big-endian.
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Parses PAX records `"<len> <key>=<value>\n"`.
fn pax_records(data: &[u8], offset: u64) -> Result<Vec<(String, Vec<u8>)>, ExtractError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| corrupt(offset, "PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(offset, "PAX record with a bad length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(corrupt(
                offset,
                "PAX record length does not match its content",
            ));
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| corrupt(offset, "PAX record without `=`"))?;
        let key = String::from_utf8_lossy(&record[..eq]).into_owned();
        out.push((key, record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn pax_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// PAX `mtime`: decimal seconds with an optional fraction, possibly negative.
fn pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = i64::from(c.to_digit(10)?);
        nanos += d * 10_i64.pow(8 - u32::try_from(i).ok()?);
    }
    if secs < 0 || int.starts_with('-') {
        // -1.5 means 1.5 s before the epoch.
        Some((
            secs - i64::from(nanos > 0),
            if nanos > 0 { 1_000_000_000 - nanos } else { 0 },
        ))
    } else {
        Some((secs, nanos))
    }
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(r: R) -> Self {
        TarReader {
            r,
            offset: 0,
            remaining: 0,
            padding: 0,
            global: Vec::new(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of stream before any.
    fn read_block(&mut self, buf: &mut [u8]) -> Result<bool, ExtractError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(corrupt(self.offset, "the stream ends inside a header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ExtractError::Read(e)),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    /// Skips `n` bytes of the stream.
    fn skip(&mut self, n: u64) -> Result<(), ExtractError> {
        let copied =
            io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(ExtractError::Read)?;
        self.offset += copied;
        if copied < n {
            return Err(corrupt(self.offset, "the stream ends inside an entry"));
        }
        Ok(())
    }

    /// Reads a metadata record's data (PAX header, long name) of `size` bytes, capped.
    fn read_meta(&mut self, size: u64, cap: u64, what: &str) -> Result<Vec<u8>, ExtractError> {
        if size > cap {
            return Err(corrupt(
                self.offset,
                format!("{what} of {size} bytes is larger than the {cap}-byte limit"),
            ));
        }
        let len = usize::try_from(size).map_err(|_| corrupt(self.offset, "size overflow"))?;
        let mut data = vec![0; len];
        let mut got = 0;
        while got < len {
            match self.r.read(&mut data[got..]) {
                Ok(0) => {
                    return Err(corrupt(
                        self.offset,
                        format!("the stream ends inside a {what}"),
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ExtractError::Read(e)),
            }
        }
        self.offset += size;
        self.skip(pad(size))?;
        Ok(data)
    }

    /// The next entry, or `None` at the end of the archive.
    pub(crate) fn next(&mut self) -> Result<Option<Entry>, ExtractError> {
        self.skip(self.remaining + self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut block = [0u8; 512];
        loop {
            let header_at = self.offset;
            if !self.read_block(&mut block)? {
                return Ok(None);
            }
            if block.iter().all(|b| *b == 0) {
                // End of archive (two zero blocks; one followed by the end is accepted).
                return Ok(None);
            }
            let stored = numeric(&block[148..156])
                .ok_or_else(|| corrupt(header_at, "bad header checksum field"))?;
            let sum: u64 = block
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (148..156).contains(&i) {
                        u64::from(b' ')
                    } else {
                        u64::from(*b)
                    }
                })
                .sum();
            if stored != sum {
                return Err(corrupt(header_at, "header checksum mismatch"));
            }
            let size =
                numeric(&block[124..136]).ok_or_else(|| corrupt(header_at, "bad size field"))?;
            let typeflag = block[156];
            match typeflag {
                b'x' => {
                    let data = self.read_meta(size, MAX_PAX, "PAX header")?;
                    pax.extend(pax_records(&data, header_at)?);
                    continue;
                }
                b'g' => {
                    let data = self.read_meta(size, MAX_PAX, "PAX global header")?;
                    self.global.extend(pax_records(&data, header_at)?);
                    continue;
                }
                b'L' => {
                    long_name =
                        Some(cstr(&self.read_meta(size, MAX_LONG_NAME, "GNU long name")?).to_vec());
                    continue;
                }
                b'K' => {
                    long_link =
                        Some(cstr(&self.read_meta(size, MAX_LONG_NAME, "GNU long link")?).to_vec());
                    continue;
                }
                _ => {}
            }
            let ustar = &block[257..263] == b"ustar\0";
            let mut path = cstr(&block[0..100]).to_vec();
            if ustar {
                let prefix = cstr(&block[345..500]);
                if !prefix.is_empty() {
                    let mut p = prefix.to_vec();
                    p.push(b'/');
                    p.extend_from_slice(&path);
                    path = p;
                }
            }
            let field = |r: std::ops::Range<usize>, name: &str| {
                numeric(&block[r]).ok_or_else(|| corrupt(header_at, format!("bad {name} field")))
            };
            let mut entry = Entry {
                path: long_name.take().unwrap_or(path),
                link: long_link
                    .take()
                    .unwrap_or_else(|| cstr(&block[157..257]).to_vec()),
                kind: match typeflag {
                    b'0' | 0 | b'7' | b'S' => EntryKind::File,
                    b'1' => EntryKind::HardLink,
                    b'2' => EntryKind::Symlink,
                    b'3' => EntryKind::Char,
                    b'4' => EntryKind::Block,
                    b'5' => EntryKind::Dir,
                    b'6' => EntryKind::Fifo,
                    other => EntryKind::Other(other),
                },
                mode: u32::try_from(field(100..108, "mode")? & 0o7777).unwrap_or(0o644),
                uid: field(108..116, "uid")?,
                gid: field(116..124, "gid")?,
                mtime: (i64::try_from(field(136..148, "mtime")?).unwrap_or(0), 0),
                size,
                xattrs: Vec::new(),
                sparse: None,
            };
            // An old-style directory: a regular-file type with a trailing slash.
            if entry.kind == EntryKind::File && typeflag != b'S' && entry.path.ends_with(b"/") {
                entry.kind = EntryKind::Dir;
            }
            if typeflag == b'S' {
                entry.sparse = Some(self.gnu_sparse(&block, header_at)?);
            }
            let mut pax_sparse: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
            let records: Vec<(String, Vec<u8>)> = self.global.iter().cloned().chain(pax).collect();
            for (key, value) in &records {
                match key.as_str() {
                    "path" => entry.path.clone_from(value),
                    "linkpath" => entry.link.clone_from(value),
                    "size" => {
                        entry.size =
                            pax_u64(value).ok_or_else(|| corrupt(header_at, "bad PAX size"))?;
                    }
                    "uid" => {
                        entry.uid =
                            pax_u64(value).ok_or_else(|| corrupt(header_at, "bad PAX uid"))?;
                    }
                    "gid" => {
                        entry.gid =
                            pax_u64(value).ok_or_else(|| corrupt(header_at, "bad PAX gid"))?;
                    }
                    "mtime" => {
                        entry.mtime =
                            pax_time(value).ok_or_else(|| corrupt(header_at, "bad PAX mtime"))?;
                    }
                    k if k.starts_with("SCHILY.xattr.") => {
                        entry
                            .xattrs
                            .push((k["SCHILY.xattr.".len()..].to_owned(), value.clone()));
                    }
                    "GNU.sparse.major" => {
                        pax_sparse.insert("major", value.clone());
                    }
                    "GNU.sparse.minor" => {
                        pax_sparse.insert("minor", value.clone());
                    }
                    "GNU.sparse.name" => {
                        pax_sparse.insert("name", value.clone());
                    }
                    "GNU.sparse.realsize" | "GNU.sparse.size" => {
                        pax_sparse.insert("realsize", value.clone());
                    }
                    "GNU.sparse.offset" | "GNU.sparse.numbytes" | "GNU.sparse.map" => {
                        pax_sparse.insert("old", value.clone());
                    }
                    _ => {}
                }
            }
            self.remaining = entry.size;
            self.padding = pad(entry.size);
            if !pax_sparse.is_empty() {
                self.pax_sparse(&mut entry, &pax_sparse, header_at)?;
            }
            if matches!(
                entry.kind,
                EntryKind::Dir
                    | EntryKind::Symlink
                    | EntryKind::HardLink
                    | EntryKind::Char
                    | EntryKind::Block
                    | EntryKind::Fifo
            ) {
                // These carry no data; a size is skipped, never written.
                entry.size = 0;
            }
            return Ok(Some(entry));
        }
    }

    /// The sparse map of a GNU `S` header and its extension blocks.
    fn gnu_sparse(&mut self, block: &[u8; 512], at: u64) -> Result<Sparse, ExtractError> {
        let mut segments = Vec::new();
        let parse = |rec: &[u8], segments: &mut Vec<(u64, u64)>| -> Result<(), ExtractError> {
            if rec.iter().all(|b| *b == 0) {
                return Ok(());
            }
            let off = numeric(&rec[0..12]).ok_or_else(|| corrupt(at, "bad sparse offset"))?;
            let len = numeric(&rec[12..24]).ok_or_else(|| corrupt(at, "bad sparse length"))?;
            segments.push((off, len));
            Ok(())
        };
        for i in 0..4 {
            parse(&block[386 + i * 24..386 + (i + 1) * 24], &mut segments)?;
        }
        let real_size =
            numeric(&block[483..495]).ok_or_else(|| corrupt(at, "bad sparse real size"))?;
        let mut extended = block[482] != 0;
        let mut ext = [0u8; 512];
        while extended {
            if !self.read_block(&mut ext)? {
                return Err(corrupt(at, "the stream ends inside a sparse map"));
            }
            for i in 0..21 {
                parse(&ext[i * 24..(i + 1) * 24], &mut segments)?;
            }
            extended = ext[504] != 0;
        }
        Ok(Sparse {
            real_size,
            segments,
        })
    }

    /// PAX sparse format 1.0: the map is at the start of the data, in decimal lines.
    fn pax_sparse(
        &mut self,
        entry: &mut Entry,
        keys: &BTreeMap<&str, Vec<u8>>,
        at: u64,
    ) -> Result<(), ExtractError> {
        let major = keys.get("major").and_then(|v| pax_u64(v));
        if keys.contains_key("old") || major != Some(1) {
            return Err(corrupt(
                at,
                "PAX sparse formats 0.0 and 0.1 are not supported (only GNU `S` and PAX 1.0)",
            ));
        }
        let real_size = keys
            .get("realsize")
            .and_then(|v| pax_u64(v))
            .ok_or_else(|| corrupt(at, "PAX sparse entry without a real size"))?;
        if let Some(name) = keys.get("name") {
            entry.path.clone_from(name);
        }
        // Read decimal lines until the map is complete, then skip to a block boundary.
        let mut consumed: u64 = 0;
        let mut read_number = |this: &mut Self| -> Result<u64, ExtractError> {
            let mut digits = Vec::new();
            loop {
                if consumed >= MAX_SPARSE_MAP || consumed >= this.remaining {
                    return Err(corrupt(at, "PAX sparse map is too long or truncated"));
                }
                let mut b = [0u8; 1];
                this.r
                    .read_exact(&mut b)
                    .map_err(|_| corrupt(at, "the stream ends inside a sparse map"))?;
                this.offset += 1;
                consumed += 1;
                if b[0] == b'\n' {
                    break;
                }
                if !b[0].is_ascii_digit() || digits.len() > 20 {
                    return Err(corrupt(at, "bad number in PAX sparse map"));
                }
                digits.push(b[0]);
            }
            pax_u64(&digits).ok_or_else(|| corrupt(at, "bad number in PAX sparse map"))
        };
        let count = read_number(self)?;
        let mut segments = Vec::new();
        for _ in 0..count {
            let off = read_number(self)?;
            let len = read_number(self)?;
            segments.push((off, len));
        }
        let map_len = consumed + pad(consumed);
        if map_len > self.remaining {
            return Err(corrupt(at, "PAX sparse map is longer than the entry"));
        }
        let skip = pad(consumed);
        self.remaining -= consumed;
        self.skip(skip)?;
        self.remaining -= skip;
        entry.size = self.remaining;
        entry.sparse = Some(Sparse {
            real_size,
            segments,
        });
        Ok(())
    }

    /// Reads up to `buf.len()` bytes of the current entry's data.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining.min(buf.len() as u64)).unwrap_or(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.r.read(&mut buf[..want])?;
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn pad(size: u64) -> u64 {
    (512 - size % 512) % 512
}

// ---------------------------------------------------------------------------------------
// Applying entries

/// `/a/b` for messages.
fn display(path: &[u8]) -> String {
    let s = String::from_utf8_lossy(path);
    let s = s.trim_start_matches("./");
    format!("/{}", s.trim_end_matches('/'))
}

/// Splits an archive name into plain components; `..` and absolute names are refused.
pub(crate) fn components(path: &[u8]) -> Result<Vec<OsString>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("it is an absolute path");
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("it contains a `..` component"),
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

/// What to do with an extended attribute from a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XattrPolicy {
    Drop,
    Set,
}

pub(crate) fn xattr_policy(name: &str) -> XattrPolicy {
    if name == "security.selinux"
        || name == "security.ima"
        || name == "security.evm"
        || name.starts_with("trusted.")
        || name.starts_with("user.overlay.")
    {
        XattrPolicy::Drop
    } else {
        XattrPolicy::Set
    }
}

/// Extracts one layer's tar stream into `root` (an overlay lower-directory snapshot).
pub fn extract_tar<R: Read>(tar: R, root: &Root) -> Result<ExtractReport, ExtractError> {
    let mut reader = TarReader::new(tar);
    let mut report = ExtractReport::default();
    // Directory times are set last: writing into a directory changes its mtime.
    let mut dir_times: Vec<(Vec<OsString>, (i64, i64))> = Vec::new();
    while let Some(entry) = reader.next()? {
        report.entries += 1;
        apply(&mut reader, &entry, root, &mut report, &mut dir_times)?;
    }
    for (comps, (secs, nanos)) in dir_times.iter().rev() {
        let refs: Vec<&OsStr> = comps.iter().map(OsString::as_os_str).collect();
        let (parent, name) = match refs.split_last() {
            Some((name, parent)) => (root.open_dir(parent), *name),
            None => (root.dir(), OsStr::new(".")),
        };
        // A directory replaced or removed by a later entry has nothing to set.
        if let Ok(parent) = parent
            && parent.kind(name).ok().flatten() == Some(Kind::Dir)
        {
            let _ = parent.set_times(name, *secs, *nanos);
        }
    }
    Ok(report)
}

fn write_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> ExtractError + 'a {
    move |source| ExtractError::Write {
        op,
        path: path.to_owned(),
        source,
    }
}

fn apply<R: Read>(
    reader: &mut TarReader<R>,
    entry: &Entry,
    root: &Root,
    report: &mut ExtractReport,
    dir_times: &mut Vec<(Vec<OsString>, (i64, i64))>,
) -> Result<(), ExtractError> {
    let shown = display(&entry.path);
    let comps = components(&entry.path).map_err(|reason| ExtractError::UnsafeName {
        path: shown.clone(),
        reason,
    })?;
    let refs: Vec<&OsStr> = comps.iter().map(OsString::as_os_str).collect();

    let Some((name, parent_comps)) = refs.split_last() else {
        // The archive's root (`./`): only its metadata can change.
        if entry.kind == EntryKind::Dir {
            let dir = root
                .dir()
                .and_then(|d| d.open_dir_rw(OsStr::new(".")))
                .map_err(write_err("open", "/"))?;
            set_owner(&dir, entry, "/", report)?;
            rooted::fchmod(&dir, entry.mode).map_err(write_err("set the mode of", "/"))?;
            set_xattrs_file(&dir, entry, "/", report);
            dir_times.push((Vec::new(), entry.mtime));
        }
        return Ok(());
    };
    let name_bytes = name.as_bytes();

    let make_parent = |report: &mut ExtractReport| -> Result<Dir, ExtractError> {
        let _ = report;
        root.make_dirs(parent_comps, 0o755)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR | libc::ENOENT | libc::ELOOP) => ExtractError::NotADirectory {
                    path: shown.clone(),
                    through: display(&join_bytes(parent_comps)),
                },
                _ => ExtractError::Write {
                    op: "create the parent directory of",
                    path: shown.clone(),
                    source: e,
                },
            })
    };

    // Whiteouts.
    if let Some(target) = name_bytes.strip_prefix(b".wh.") {
        let parent = make_parent(report)?;
        if target == b".wh..opq" {
            parent
                .set_xattr_self("user.overlay.opaque", b"y")
                .map_err(write_err("mark opaque", &shown))?;
            report.whiteouts += 1;
        } else if target.starts_with(b".wh.") {
            // Other AUFS metadata (`.wh..wh.plnk`, ...): meaningless here.
            report.entries_skipped.add(&shown);
        } else {
            let target = OsStr::from_bytes(target);
            if target.is_empty() || target == "." || target == ".." {
                return Err(ExtractError::UnsafeName {
                    path: shown,
                    reason: "it whites out an invalid name",
                });
            }
            parent
                .remove_all(target)
                .map_err(write_err("remove", &shown))?;
            parent
                .whiteout(target)
                .map_err(write_err("create the whiteout", &shown))?;
            report.whiteouts += 1;
        }
        return Ok(());
    }

    match entry.kind {
        EntryKind::Char | EntryKind::Block => {
            report.devices_skipped.add(&shown);
            Ok(())
        }
        EntryKind::Other(_) => {
            report.entries_skipped.add(&shown);
            Ok(())
        }
        EntryKind::Dir => {
            let parent = make_parent(report)?;
            match parent.kind(name).map_err(write_err("inspect", &shown))? {
                Some(Kind::Dir) => {}
                Some(_) => {
                    parent
                        .remove_all(name)
                        .map_err(write_err("replace", &shown))?;
                    parent
                        .mkdir(name, 0o700)
                        .map_err(write_err("create", &shown))?;
                }
                None => parent
                    .mkdir(name, 0o700)
                    .map_err(write_err("create", &shown))?,
            }
            let dir = parent
                .open_dir_rw(name)
                .map_err(write_err("open", &shown))?;
            set_owner(&dir, entry, &shown, report)?;
            rooted::fchmod(&dir, entry.mode).map_err(write_err("set the mode of", &shown))?;
            set_xattrs_file(&dir, entry, &shown, report);
            dir_times.push((comps.clone(), entry.mtime));
            Ok(())
        }
        EntryKind::File => {
            let parent = make_parent(report)?;
            parent
                .remove_all(name)
                .map_err(write_err("replace", &shown))?;
            let mut file = parent
                .create_file(name)
                .map_err(write_err("create", &shown))?;
            write_data(reader, &mut file, entry, &shown)?;
            set_owner(&file, entry, &shown, report)?;
            rooted::fchmod(&file, entry.mode).map_err(write_err("set the mode of", &shown))?;
            set_xattrs_file(&file, entry, &shown, report);
            rooted::set_file_times(&file, entry.mtime.0, entry.mtime.1)
                .map_err(write_err("set the times of", &shown))?;
            Ok(())
        }
        EntryKind::Symlink => {
            if entry.link.is_empty() {
                return Err(ExtractError::UnsafeName {
                    path: shown,
                    reason: "it is a symlink with an empty target",
                });
            }
            let parent = make_parent(report)?;
            parent
                .remove_all(name)
                .map_err(write_err("replace", &shown))?;
            parent
                .symlink(name, OsStr::from_bytes(&entry.link))
                .map_err(write_err("create", &shown))?;
            set_owner_at(&parent, name, entry, &shown, report)?;
            set_xattrs_at(&parent, name, entry, &shown, report);
            let _ = parent.set_times(name, entry.mtime.0, entry.mtime.1);
            Ok(())
        }
        EntryKind::Fifo => {
            let parent = make_parent(report)?;
            parent
                .remove_all(name)
                .map_err(write_err("replace", &shown))?;
            parent
                .mkfifo(name, 0o600)
                .map_err(write_err("create", &shown))?;
            set_owner_at(&parent, name, entry, &shown, report)?;
            parent
                .chmod_nofollow(name, entry.mode)
                .map_err(write_err("set the mode of", &shown))?;
            set_xattrs_at(&parent, name, entry, &shown, report);
            let _ = parent.set_times(name, entry.mtime.0, entry.mtime.1);
            Ok(())
        }
        EntryKind::HardLink => {
            let target_shown = display(&entry.link);
            let bad = |reason: String| ExtractError::BadHardLink {
                path: shown.clone(),
                target: target_shown.clone(),
                reason,
            };
            let target = components(&entry.link).map_err(|r| bad(r.to_owned()))?;
            if target == comps {
                return Ok(()); // a link to itself changes nothing
            }
            let target_refs: Vec<&OsStr> = target.iter().map(OsString::as_os_str).collect();
            let fd = root.open_entry(&target_refs).map_err(|e| {
                bad(if e.raw_os_error() == Some(libc::ENOENT) {
                    "the target is not in this layer".to_owned()
                } else {
                    e.to_string()
                })
            })?;
            let parent = make_parent(report)?;
            parent
                .remove_all(name)
                .map_err(write_err("replace", &shown))?;
            parent.hard_link(name, &fd).map_err(|e| {
                if e.raw_os_error() == Some(libc::EPERM) {
                    bad("the target is a directory".to_owned())
                } else {
                    bad(e.to_string())
                }
            })?;
            Ok(())
        }
    }
}

fn join_bytes(comps: &[&OsStr]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c.as_bytes());
    }
    v
}

/// Writes an entry's data, sparse-aware.
pub(crate) fn write_data<R: Read>(
    reader: &mut TarReader<R>,
    file: &mut File,
    entry: &Entry,
    shown: &str,
) -> Result<(), ExtractError> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut copy =
        |reader: &mut TarReader<R>, file: &mut File, mut n: u64| -> Result<(), ExtractError> {
            while n > 0 {
                let want = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
                let got = reader
                    .read_data(&mut buf[..want])
                    .map_err(ExtractError::Read)?;
                if got == 0 {
                    return Err(ExtractError::Truncated {
                        path: shown.to_owned(),
                    });
                }
                file.write_all(&buf[..got])
                    .map_err(write_err("write", shown))?;
                n -= got as u64;
            }
            Ok(())
        };
    match &entry.sparse {
        None => copy(reader, file, entry.size),
        Some(sparse) => {
            let mut end = 0u64;
            let mut stored = 0u64;
            for &(off, len) in &sparse.segments {
                let seg_end = off.checked_add(len).filter(|e| *e <= sparse.real_size);
                let Some(seg_end) = seg_end.filter(|_| off >= end) else {
                    return Err(corrupt(
                        reader.offset,
                        format!("sparse map of `{shown}` has overlapping or out-of-range segments"),
                    ));
                };
                stored = stored.saturating_add(len);
                if stored > entry.size {
                    return Err(corrupt(
                        reader.offset,
                        format!("sparse map of `{shown}` needs more data than the entry holds"),
                    ));
                }
                file.seek(SeekFrom::Start(off))
                    .map_err(write_err("write", shown))?;
                copy(reader, file, len)?;
                end = seg_end;
            }
            // The rest of the file is a hole; the file system allocates nothing for it.
            file.set_len(sparse.real_size)
                .map_err(write_err("set the size of", shown))?;
            Ok(())
        }
    }
}

fn id(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn record_unmapped(entry: &Entry, shown: &str, report: &mut ExtractReport) {
    report.ids_unmapped.add(shown);
    report.max_unmapped_id = report.max_unmapped_id.max(id(entry.uid)).max(id(entry.gid));
}

fn unmapped(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EPERM | libc::EOVERFLOW)
    )
}

fn set_owner(
    file: &File,
    entry: &Entry,
    shown: &str,
    report: &mut ExtractReport,
) -> Result<(), ExtractError> {
    match rooted::fchown(file, id(entry.uid), id(entry.gid)) {
        Ok(()) => Ok(()),
        Err(e) if unmapped(&e) || entry.uid > u64::from(u32::MAX - 1) => {
            record_unmapped(entry, shown, report);
            Ok(())
        }
        Err(e) => Err(write_err("change the owner of", shown)(e)),
    }
}

fn set_owner_at(
    dir: &Dir,
    name: &OsStr,
    entry: &Entry,
    shown: &str,
    report: &mut ExtractReport,
) -> Result<(), ExtractError> {
    match dir.lchown(name, id(entry.uid), id(entry.gid)) {
        Ok(()) => Ok(()),
        Err(e) if unmapped(&e) => {
            record_unmapped(entry, shown, report);
            Ok(())
        }
        Err(e) => Err(write_err("change the owner of", shown)(e)),
    }
}

fn set_xattrs_file(file: &File, entry: &Entry, shown: &str, report: &mut ExtractReport) {
    for (key, value) in &entry.xattrs {
        match xattr_policy(key) {
            XattrPolicy::Drop => report.dropped(key, XattrDrop::Policy, shown),
            XattrPolicy::Set => {
                if rooted::fset_xattr(file, key, value).is_err() {
                    report.dropped(key, XattrDrop::Refused, shown);
                }
            }
        }
    }
}

fn set_xattrs_at(dir: &Dir, name: &OsStr, entry: &Entry, shown: &str, report: &mut ExtractReport) {
    for (key, value) in &entry.xattrs {
        match xattr_policy(key) {
            XattrPolicy::Drop => report.dropped(key, XattrDrop::Policy, shown),
            XattrPolicy::Set => {
                if dir.set_xattr(name, key, value).is_err() {
                    report.dropped(key, XattrDrop::Refused, shown);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! Layer compression in one streaming pass: the uncompressed tar is hashed (the diff id),
//! compressed, and the compressed bytes are hashed and counted (the layer digest and
//! size) by the writer they go to (the store's blob writer). Memory is bounded by a few
//! blocks per thread, whatever the layer size.
//!
//! gzip is compressed in parallel, pigz-style: the input is cut into fixed 128 KiB
//! blocks, each block is deflated on its own thread with the previous 32 KiB as a preset
//! dictionary and ends with a sync flush, and the raw deflate pieces are concatenated
//! behind one gzip header, with the block CRCs combined for the trailer. The block size,
//! dictionaries and levels do not depend on the number of threads, so the output (and
//! the layer digest) is byte-for-byte the same on a 2-core laptop and a 64-core runner.
//!
//! Blocks that carry no redundancy (random data, already-compressed files) are detected
//! by their byte entropy and written as stored deflate blocks: deflating them costs CPU
//! and saves nothing. zstd uses libzstd's own multithreading, whose output does not
//! depend on the number of workers either (as long as there is at least one).

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress, Status};
use sha2::{Digest as _, Sha256};

/// Size of the blocks gzip compresses independently (pigz's default).
pub const GZIP_BLOCK: usize = 128 * 1024;
/// Deflate's window: the dictionary carried from one block to the next.
const DICT: usize = 32 * 1024;
/// Blocks whose byte entropy is above this many bits per byte are stored, not deflated.
const STORE_ENTROPY_BITS: f64 = 7.97;

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed tar (`application/vnd.oci.image.layer.v1.tar`).
    None,
    /// gzip at a zlib level 1..=9 (`...tar+gzip`); 6 is Docker's default.
    Gzip { level: u32 },
    /// zstd at a level 1..=19 (`...tar+zstd`).
    Zstd { level: i32 },
}

impl Compression {
    /// The default of `docker build` and rbuild: gzip, level 6.
    pub const DEFAULT: Compression = Compression::Gzip { level: 6 };

    /// OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What one pass produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// `sha256:...` of the uncompressed tar: the layer's diff id in the image config.
    pub diff_id: String,
    /// `sha256:...` of the bytes written: the layer's blob digest.
    pub digest: String,
    /// Number of bytes written.
    pub size: u64,
    /// Number of uncompressed bytes read.
    pub uncompressed_size: u64,
    pub media_type: &'static str,
}

/// Formats a finished sha256 as an OCI digest.
pub fn sha256_digest(hasher: Sha256) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hasher.finalize() {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A reader that hashes and counts what passes through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (String, u64) {
        (sha256_digest(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it (for [`compress`]).
#[cfg(test)]
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

#[cfg(test)]
impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest and the byte count of everything written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, sha256_digest(self.hasher), self.count)
    }
}

#[cfg(test)]
impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// [`compress_into`] a plain writer, hashing the compressed side on the way (the tests'
/// entry point: rbuild itself always writes into a store blob writer, which hashes).
#[cfg(test)]
pub fn compress<R: Read + Send, W: Write>(
    input: R,
    output: W,
    compression: Compression,
    threads: usize,
) -> io::Result<(W, Compressed)> {
    let (writer, mut c) = compress_into(
        input,
        HashingWriter::new(output),
        compression,
        threads,
        |_| (String::new(), 0),
    )?;
    let (output, digest, size) = writer.finish();
    c.digest = digest;
    c.size = size;
    Ok((output, c))
}

/// Compresses `input` into `output` in one pass, hashing the uncompressed side (the diff
/// id). `output` hashes and counts what it takes itself (a store's blob writer):
/// `written` returns its digest and size, so the compressed stream is hashed once.
/// `threads` bounds the compression threads (at least 1); it changes the speed, never the
/// bytes.
pub fn compress_into<R: Read + Send, W: Write>(
    input: R,
    mut output: W,
    compression: Compression,
    threads: usize,
    written: impl FnOnce(&W) -> (String, u64),
) -> io::Result<(W, Compressed)> {
    let threads = threads.max(1);
    let mut reader = HashingReader::new(input);
    match compression {
        Compression::None => {
            io::copy(&mut reader, &mut output)?;
        }
        Compression::Gzip { level } => {
            gzip_blocks(&mut reader, &mut output, level.min(9), threads)?;
        }
        Compression::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(&mut output, level)?;
            // libzstd's output is the same for every worker count >= 1.
            enc.multithread(u32::try_from(threads).unwrap_or(1))?;
            enc.include_checksum(true)?;
            io::copy(&mut reader, &mut enc)?;
            enc.finish()?;
        }
    }
    output.flush()?;
    let (diff_id, uncompressed_size) = reader.finish();
    let (digest, size) = written(&output);
    Ok((
        output,
        Compressed {
            diff_id,
            digest,
            size,
            uncompressed_size,
            media_type: compression.media_type(),
        },
    ))
}

/// Shannon entropy of a block, in bits per byte.
fn entropy(block: &[u8]) -> f64 {
    if block.is_empty() {
        return 0.0;
    }
    // Four tables, summed at the end: consecutive equal bytes would otherwise wait on
    // each other's increment (the same counts, 2-3x faster).
    let mut tables = [[0u32; 256]; 4];
    let mut quads = block.chunks_exact(4);
    for q in &mut quads {
        tables[0][usize::from(q[0])] += 1;
        tables[1][usize::from(q[1])] += 1;
        tables[2][usize::from(q[2])] += 1;
        tables[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        tables[0][usize::from(b)] += 1;
    }
    let mut counts = [0u32; 256];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = tables[0][i] + tables[1][i] + tables[2][i] + tables[3][i];
    }
    #[allow(clippy::cast_precision_loss)] // block sizes are far below 2^52
    let len = block.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// One block to compress.
struct Job {
    data: Vec<u8>,
    /// The last (up to) 32 KiB before this block.
    dict: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Done>>,
}

/// A compressed block.
struct Done {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Deflates one block (raw, no zlib header), ending with a sync flush, or with the
/// final block bit when `last`.
///
/// Every deflated block gets a zlib state of its own: a reset state still holds the window
/// of the block it deflated before, and the match search peeks at those bytes past the
/// end of the new input, so the output would depend on which worker took which block
/// before (measured: a 5.5 MB layer of a random file and a text file came out different
/// in each of 10 runs on 2 threads). Stored blocks never look back, so their state is reused.
fn deflate_block(level: u32, stored: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    let store = entropy(&job.data) > STORE_ENTROPY_BITS;
    let mut fresh;
    let c = if store {
        stored.reset();
        stored
    } else {
        fresh = Compress::new(flate2::Compression::new(level), false);
        &mut fresh
    };
    // Stored blocks never refer back: no dictionary to load for them.
    if !store && !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let input = &job.data[..];
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 64);
    let start_in = c.total_in();
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = usize::try_from(c.total_in() - start_in).unwrap_or(usize::MAX);
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(c.total_in() - start_in).unwrap_or(usize::MAX);
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and zlib left room unused.
            _ if !job.last && consumed == input.len() && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

fn worker(jobs: &Mutex<Receiver<Job>>, level: u32) {
    // Created on the first stored block: a small layer keeps the other workers from
    // allocating (and zeroing) a zlib state for nothing.
    let mut stored: Option<Compress> = None;
    loop {
        // Hold the lock only to take the next job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let stored =
            stored.get_or_insert_with(|| Compress::new(flate2::Compression::none(), false));
        let result = deflate_block(level, stored, &job).map(|deflated| {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&job.data);
            Done {
                deflated,
                crc,
                len: job.data.len() as u64,
            }
        });
        // The receiver is gone only when the writer already failed.
        let _ = job.reply.send(result);
    }
}

/// gzip in independent blocks on `threads` threads; see the module docs for the format.
fn gzip_blocks(
    input: &mut (impl Read + Send),
    output: &mut impl Write,
    level: u32,
    threads: usize,
) -> io::Result<()> {
    // Header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown (255), as Go's
    // gzip writer does: nothing in it depends on the machine or the time.
    output.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
    let (job_tx, job_rx) = sync_channel::<Job>(threads * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    // In-order queue of the per-block replies; bounded, so memory is too.
    let (order_tx, order_rx) = sync_channel::<Receiver<io::Result<Done>>>(threads * 2);

    std::thread::scope(|scope| -> io::Result<()> {
        for _ in 0..threads {
            let rx = Arc::clone(&job_rx);
            scope.spawn(move || worker(&rx, level));
        }
        let reader = scope.spawn(move || -> io::Result<()> {
            let mut dict: Vec<u8> = Vec::new();
            let mut current = vec![0u8; GZIP_BLOCK];
            let mut n = read_full(input, &mut current)?;
            loop {
                let mut next = vec![0u8; GZIP_BLOCK];
                let m = if n == GZIP_BLOCK {
                    read_full(input, &mut next)?
                } else {
                    0
                };
                let last = m == 0;
                current.truncate(n);
                let new_dict = current[current.len().saturating_sub(DICT)..].to_vec();
                let (reply_tx, reply_rx) = sync_channel(1);
                let job = Job {
                    data: current,
                    dict: std::mem::take(&mut dict),
                    last,
                    reply: reply_tx,
                };
                if order_tx.send(reply_rx).is_err() || job_tx.send(job).is_err() {
                    // The writer stopped; its error is the one to report.
                    return Ok(());
                }
                if last {
                    return Ok(());
                }
                dict = new_dict;
                current = next;
                n = m;
            }
        });

        let mut crc = crc32fast::Hasher::new();
        let mut total: u64 = 0;
        let mut result = Ok(());
        for reply in order_rx {
            let done = reply
                .recv()
                .map_err(|_| io::Error::other("a compression thread stopped"))
                .and_then(|r| r);
            match done {
                Ok(done) => {
                    total += done.len;
                    crc.combine(&done.crc);
                    if let Err(e) = output.write_all(&done.deflated) {
                        result = Err(e);
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let read_result = reader
            .join()
            .map_err(|_| io::Error::other("the layer reader thread panicked"))?;
        result?;
        read_result?;
        // Trailer: CRC-32 and length modulo 2^32, little-endian.
        output.write_all(&crc.finalize().to_le_bytes())?;
        #[allow(clippy::cast_possible_truncation)] // gzip stores the length modulo 2^32
        output.write_all(&(total as u32).to_le_bytes())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::cast_possible_truncation)] // taking one byte of the state on purpose
    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        // xorshift: incompressible, reproducible
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let line = b"usr/share/doc/package/changelog.Debian.gz 0644 root root 12345\n";
        line.iter().copied().cycle().take(len).collect()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sha(data: &[u8]) -> String {
        sha256_digest(Sha256::new_with_prefix(data))
    }

    #[test]
    fn gzip_round_trips_and_hashes_both_sides() {
        for len in [
            0,
            1,
            1000,
            GZIP_BLOCK - 1,
            GZIP_BLOCK,
            GZIP_BLOCK + 1,
            5 * GZIP_BLOCK + 77,
        ] {
            let mut input = text(len / 2);
            input.extend(pseudo_random(len - len / 2, len as u64));
            let (out, c) = compress(&input[..], Vec::new(), Compression::DEFAULT, 3).unwrap();
            assert_eq!(gunzip(&out), input, "len {len}");
            assert_eq!(c.diff_id, sha(&input));
            assert_eq!(c.digest, sha(&out));
            assert_eq!(c.size, out.len() as u64);
            assert_eq!(c.uncompressed_size, input.len() as u64);
            assert_eq!(c.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
        }
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_the_thread_count() {
        let mut input = text(700_000);
        input.extend(pseudo_random(300_000, 7));
        let one = compress(&input[..], Vec::new(), Compression::DEFAULT, 1).unwrap();
        let four = compress(&input[..], Vec::new(), Compression::DEFAULT, 4).unwrap();
        assert_eq!(one.0, four.0);
        assert_eq!(one.1, four.1);
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_which_worker_took_which_block() {
        // A layer as a COPY of a random file and a log makes it: random blocks, then
        // text that differs line by line. A worker that deflated something before must
        // not let it show in what it deflates next.
        let mut input = pseudo_random(24 * GZIP_BLOCK + 777, 5);
        for i in 0..120_000 {
            input.extend(format!("line {i} of a build log, step {}\n", i % 97).as_bytes());
        }
        let one = compress(&input[..], Vec::new(), Compression::DEFAULT, 1).unwrap();
        for _ in 0..10 {
            let two = compress(&input[..], Vec::new(), Compression::DEFAULT, 2).unwrap();
            assert_eq!(one.1, two.1);
            assert!(
                one.0 == two.0,
                "the output changed with the worker schedule"
            );
        }
    }

    #[test]
    fn random_blocks_are_stored_and_text_is_deflated() {
        let random = pseudo_random(4 * GZIP_BLOCK, 3);
        let (out, _) = compress(&random[..], Vec::new(), Compression::DEFAULT, 2).unwrap();
        // Stored blocks cost 5 bytes per 64 KiB plus the sync-flush markers.
        assert!(
            out.len() < random.len() + 200,
            "{} vs {}",
            out.len(),
            random.len()
        );
        let txt = text(4 * GZIP_BLOCK);
        let (out, _) = compress(&txt[..], Vec::new(), Compression::DEFAULT, 2).unwrap();
        assert!(
            out.len() < txt.len() / 20,
            "text compressed to {}",
            out.len()
        );
        assert!(entropy(&random[..GZIP_BLOCK]) > STORE_ENTROPY_BITS);
        assert!(entropy(&txt[..GZIP_BLOCK]) < 5.0);
    }

    #[test]
    fn system_gzip_accepts_the_output() {
        let input = text(3 * GZIP_BLOCK + 5);
        let (out, _) = compress(&input[..], Vec::new(), Compression::DEFAULT, 2).unwrap();
        let Ok(mut child) = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("SKIPPED: gzip is not installed");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&out));
        let result = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(result.status.success());
        assert_eq!(result.stdout, input);
    }

    #[test]
    fn zstd_round_trips_and_is_thread_independent() {
        let mut input = text(600_000);
        input.extend(pseudo_random(100_000, 9));
        let z = Compression::Zstd { level: 3 };
        let (a, ca) = compress(&input[..], Vec::new(), z, 1).unwrap();
        let (b, _) = compress(&input[..], Vec::new(), z, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(zstd::decode_all(&a[..]).unwrap(), input);
        assert_eq!(ca.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
        assert_eq!(ca.diff_id, sha(&input));
    }

    #[test]
    fn uncompressed_digest_equals_diff_id() {
        let input = text(10_000);
        let (out, c) = compress(&input[..], Vec::new(), Compression::None, 1).unwrap();
        assert_eq!(out, input);
        assert_eq!(c.digest, c.diff_id);
    }
}

//! Layers: the tar streams images are made of.
//!
//! This module owns reading layer blobs: recognising their compression, checking their
//! digests while streaming (the blob's `digest` and the uncompressed `diff_id`), and
//! [`extract`]ing them into a directory in a way that hostile input cannot escape (see
//! that module). It also owns writing them: [`diff`] turns a step's overlay upper
//! directory into an OCI layer tar (whiteouts, opaque markers, deterministic order), and
//! [`compress`] hashes, compresses (parallel gzip, zstd) and hashes again in one
//! streaming pass.
//!
//! Nothing here creates namespaces or mounts; file-system operations that must stay
//! inside a root go through `sandbox::rooted`.

pub mod compress;
pub mod diff;
pub mod extract;

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest as _, Sha256};

pub use extract::{ExtractError, ExtractReport, extract_tar};

/// A content digest, `sha256:<64 hex>` (the only algorithm images use in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// A string that is not a digest rbuild can check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a sha256 digest (`sha256:` followed by 64 lowercase hex digits)")]
pub struct BadDigest(pub String);

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, BadDigest> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| BadDigest(s.to_owned()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadDigest(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{:x}", Sha256::digest(bytes)))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reader that hashes (sha256) and counts everything read through it.
#[derive(Debug)]
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads the rest of the stream (so trailing padding is hashed too) and returns the
    /// digest and the number of bytes.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            Digest(format!("sha256:{:x}", self.hasher.finalize())),
            self.bytes,
        ))
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// How a layer blob is compressed, told by its first bytes (media types lie more often
/// than magic numbers do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`); anything else is taken as tar.
    pub fn sniff(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// The uncompressed tar stream of a layer blob.
pub fn decompress<'a, R: Read + 'a>(blob: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(128 * 1024, blob);
    let kind = Compression::sniff(buffered.fill_buf()?);
    Ok(match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

/// What a layer blob is expected to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Digest of the blob as stored (compressed).
    pub digest: Option<Digest>,
    /// Digest of the uncompressed tar (`rootfs.diff_ids[i]` of the image config).
    pub diff_id: Option<Digest>,
}

/// Extracts a layer blob (any supported compression) into `root`, checking its digests.
/// A digest mismatch is an error even though the files were written: the caller discards
/// the directory.
pub fn extract_blob<R: Read>(
    blob: R,
    expected: &Expected,
    root: &crate::sandbox::rooted::Root,
) -> Result<ExtractReport, ExtractError> {
    let mut outer = DigestReader::new(blob);
    let report = {
        let inner = decompress(&mut outer).map_err(ExtractError::Read)?;
        let mut tar = DigestReader::new(inner);
        let report = extract_tar(&mut tar, root)?;
        let (diff_id, _) = tar.finish().map_err(ExtractError::Read)?;
        if let Some(want) = &expected.diff_id
            && *want != diff_id
        {
            return Err(ExtractError::DigestMismatch {
                what: "uncompressed content (diff id)",
                expected: want.to_string(),
                actual: diff_id.to_string(),
            });
        }
        report
    };
    let (digest, _) = outer.finish().map_err(ExtractError::Read)?;
    if let Some(want) = &expected.digest
        && *want != digest
    {
        return Err(ExtractError::DigestMismatch {
            what: "blob",
            expected: want.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digests_parse_strictly() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:E3B0").is_err());
        assert!(Digest::parse("md5:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "g".repeat(64))).is_err());
    }

    #[test]
    fn compression_is_sniffed_and_undone() {
        let plain = b"hello layer".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::stream::encode_all(&plain[..], 1).unwrap();
        for (blob, kind) in [
            (plain.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
        ] {
            assert_eq!(Compression::sniff(&blob), kind);
            let mut out = Vec::new();
            decompress(&blob[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain, "{kind}");
        }
    }
}

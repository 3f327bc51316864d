//! Image outputs: an image or index from any [`BlobSource`] written as an OCI layout
//! directory, an OCI layout tar (`--output type=oci`), or a Docker archive
//! (`--output type=docker`, what `docker load` and `podman load` read). Pushing to a
//! registry is the registry module's job; [`Output`] parses all of `--output`'s forms.
//!
//! Archives are written to a temp file beside the destination and renamed into place only
//! when complete, so a failure never leaves a half-written archive under the asked name.
//! Every blob is verified against its digest while it is copied. Archives are
//! reproducible: entries in a fixed order (directories, blobs by digest, then the index
//! files), owner 0:0, fixed modes, and every mtime set to [`ExportOptions::mtime`]
//! (`SOURCE_DATE_EPOCH`, else 0): the same image gives the same bytes.
//!
//! The Docker archive is the `docker save` format (`manifest.json` with `Config`,
//! `RepoTags` and `Layers`), with blobs under `blobs/sha256/` as Docker 25 names them. It
//! holds one image, so an index is narrowed to one platform (the requested one, else the
//! host's), as BuildKit's docker exporter and skopeo's `docker-archive:` do. Layers keep
//! their compression; both loaders decompress them.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::layout::{self, Layout, REF_NAME};
use super::{
    BlobSource, Descriptor, Document, Index, Platform, ResolveError, media, read_document, resolve,
};
use crate::store::{BlobReader, Corrupt, Digest, StoreError};

/// Annotation naming the full image name in an OCI layout's `index.json` (containerd, BuildKit).
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// How an image is named and narrowed in an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Full image names (`registry.example.com/app:1.0`): `io.containerd.image.name` of
    /// an OCI layout's entry, `RepoTags` of a Docker archive.
    pub names: Vec<String>,
    /// `org.opencontainers.image.ref.name` of an OCI layout's entry (usually the tag).
    pub ref_name: Option<String>,
    /// Only this platform's manifest of an index (for Docker archives: which one).
    pub platform: Option<Platform>,
    /// Modification time of every archive entry (seconds since the epoch).
    pub mtime: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("cannot write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("`{0}` is not a valid image name for a Docker archive (expected `name:tag`)")]
    BadName(String),
}

/// Every blob of `root` (itself included), narrowed to `platform` for an index, keyed by
/// digest; and the descriptor to name in the output (the chosen child, or `root`).
fn collect(
    source: &dyn BlobSource,
    root: &Descriptor,
    platform: Option<&Platform>,
) -> Result<(Descriptor, BTreeMap<Digest, u64>), ExportError> {
    let mut blobs = BTreeMap::new();
    let top = if let Some(p) = platform {
        // The manifest, not the index: an export for one platform holds one image.
        resolve(source, root, p)?.manifest_descriptor
    } else {
        let bytes = read_document(source, &root.digest)?;
        let (_, media_type) =
            Document::parse(&bytes, Some(&root.media_type)).map_err(ResolveError::Document)?;
        let mut d = root.clone();
        d.media_type = media_type;
        d
    };
    walk(source, &top, &mut blobs, 0)?;
    Ok((top, blobs))
}

fn walk(
    source: &dyn BlobSource,
    desc: &Descriptor,
    blobs: &mut BTreeMap<Digest, u64>,
    depth: usize,
) -> Result<(), ExportError> {
    if depth > 4 {
        return Err(ResolveError::TooDeep.into());
    }
    blobs.insert(desc.digest.clone(), desc.size);
    let bytes = read_document(source, &desc.digest)?;
    let (doc, _) =
        Document::parse(&bytes, Some(&desc.media_type)).map_err(ResolveError::Document)?;
    match doc {
        Document::Index(index) => {
            for child in &index.manifests {
                walk(source, child, blobs, depth + 1)?;
            }
        }
        Document::Manifest(m) => {
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                blobs.insert(d.digest.clone(), d.size);
            }
        }
    }
    Ok(())
}

/// The `index.json` entry naming `top`.
fn index_entry(top: &Descriptor, options: &ExportOptions) -> Descriptor {
    let mut d = Descriptor::new(top.media_type.clone(), top.digest.clone(), top.size);
    if let Some(name) = options.names.first() {
        d.annotations.insert(IMAGE_NAME.to_owned(), name.clone());
    }
    if let Some(r) = &options.ref_name {
        d.annotations.insert(REF_NAME.to_owned(), r.clone());
    }
    d
}

/// Writes the image into the OCI layout directory `dir` (created if needed; other images
/// in it stay). Returns the descriptor now in its `index.json`.
pub fn oci_dir(
    source: &dyn BlobSource,
    root: &Descriptor,
    dir: &Path,
    options: &ExportOptions,
) -> Result<Descriptor, ExportError> {
    let (top, blobs) = collect(source, root, options.platform.as_ref())?;
    let out = Layout::create(dir)?;
    for (digest, size) in &blobs {
        out.put_blob(source.open(digest)?, *size)?;
    }
    let entry = index_entry(&top, options);
    out.add(&entry)?;
    Ok(top)
}

/// Writes the image as an OCI layout tar to `dest`. Returns the root descriptor.
pub fn oci_tar(
    source: &dyn BlobSource,
    root: &Descriptor,
    dest: &Path,
    options: &ExportOptions,
) -> Result<Descriptor, ExportError> {
    let (top, blobs) = collect(source, root, options.platform.as_ref())?;
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_owned()),
        artifact_type: None,
        manifests: vec![index_entry(&top, options)],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let index_json = serde_json::to_vec(&index).expect("an index always serialises");
    atomic_tar(dest, options.mtime, |tar| {
        tar.blobs(source, &blobs)?;
        tar.file("index.json", &index_json)?;
        tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
    })?;
    Ok(top)
}

/// Writes one image as a Docker archive to `dest`. `options.names` become `RepoTags`
/// (each `name:tag`). Returns the manifest descriptor of the image written.
pub fn docker_tar(
    source: &dyn BlobSource,
    root: &Descriptor,
    dest: &Path,
    options: &ExportOptions,
) -> Result<Descriptor, ExportError> {
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let resolved = resolve(source, root, &platform)?;
    let mut repo_tags = Vec::new();
    for name in &options.names {
        repo_tags.push(docker_name(name)?);
    }
    let m = &resolved.manifest;
    let mut blobs = BTreeMap::new();
    blobs.insert(m.config.digest.clone(), m.config.size);
    for l in &m.layers {
        blobs.insert(l.digest.clone(), l.size);
    }
    let path = |d: &Digest| format!("blobs/{}/{}", d.algorithm().name(), d.hex());
    let manifest_json = serde_json::json!([{
        "Config": path(&m.config.digest),
        "RepoTags": repo_tags,
        "Layers": m.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
    }]);
    let manifest_json = serde_json::to_vec(&manifest_json).expect("JSON values serialise");
    atomic_tar(dest, options.mtime, |tar| {
        tar.blobs(source, &blobs)?;
        tar.file("manifest.json", &manifest_json)
    })?;
    Ok(resolved.manifest_descriptor)
}

/// `name:tag` as Docker's `RepoTags` want it: the tag made explicit (`latest`), no digest.
fn docker_name(name: &str) -> Result<String, ExportError> {
    let bad = || ExportError::BadName(name.to_owned());
    if name.contains('@') || name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        Ok(name.to_owned())
    } else {
        Ok(format!("{name}:latest"))
    }
}

/// A reproducible tar writer over a temp file.
struct TarOut<'a> {
    tar: tar::Builder<io::BufWriter<std::fs::File>>,
    mtime: u64,
    path: &'a Path,
}

impl TarOut<'_> {
    fn io(&self) -> impl Fn(io::Error) -> ExportError + '_ {
        |source| ExportError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn header(&self, name: &str, size: u64, dir: bool) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_size(size);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        // Names here are short ASCII (`blobs/sha256/<64 hex>`), always valid in ustar.
        let _ = h.set_path(name);
        h.set_cksum();
        h
    }

    fn dir(&mut self, name: &str) -> Result<(), ExportError> {
        let h = self.header(name, 0, true);
        self.tar.append(&h, io::empty()).map_err(self.io())
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let h = self.header(name, bytes.len() as u64, false);
        let path = self.path.to_path_buf();
        self.tar
            .append(&h, bytes)
            .map_err(|source| ExportError::Io { path, source })
    }

    /// `blobs/`, one directory per algorithm, and every blob, verified as it is copied.
    fn blobs(
        &mut self,
        source: &dyn BlobSource,
        blobs: &BTreeMap<Digest, u64>,
    ) -> Result<(), ExportError> {
        self.dir("blobs/")?;
        let mut algorithms: Vec<&str> = blobs.keys().map(|d| d.algorithm().name()).collect();
        algorithms.dedup();
        for a in algorithms {
            self.dir(&format!("blobs/{a}/"))?;
        }
        for (digest, size) in blobs {
            let name = format!("blobs/{}/{}", digest.algorithm().name(), digest.hex());
            let h = self.header(&name, *size, false);
            let reader = Exact::new(source.open(digest)?, *size);
            let path = self.path.to_path_buf();
            self.tar
                .append(&h, reader)
                .map_err(|e| blob_error(e, digest, &path))?;
        }
        Ok(())
    }
}

/// The store's error for a failed blob copy: a digest or size mismatch, else I/O.
fn blob_error(e: io::Error, digest: &Digest, path: &Path) -> ExportError {
    if let Some(c) = e.get_ref().and_then(|i| i.downcast_ref::<Corrupt>()) {
        return ExportError::Store(StoreError::DigestMismatch {
            expected: c.expected.clone(),
            actual: c.actual.clone(),
            size: c.size,
        });
    }
    if let Some(s) = e.get_ref().and_then(|i| i.downcast_ref::<WrongSize>()) {
        return ExportError::Store(StoreError::SizeMismatch {
            digest: digest.clone(),
            expected: s.expected,
            actual: s.actual,
        });
    }
    ExportError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the blob has {actual} bytes, its descriptor says {expected}")]
struct WrongSize {
    expected: u64,
    actual: u64,
}

/// Yields exactly `size` bytes of a verified blob reader, and reaches its end (so it
/// checks the digest) before reporting the last byte; fewer or more bytes are an error.
/// (`tar` pads a short entry silently, so the length must be checked here.)
#[derive(Debug)]
struct Exact {
    inner: BlobReader,
    left: u64,
    size: u64,
}

impl Exact {
    fn new(inner: BlobReader, size: u64) -> Exact {
        Exact {
            inner,
            left: size,
            size,
        }
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Past the end: the inner reader must be at its end too (this read verifies).
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    WrongSize {
                        expected: self.size,
                        actual: self.size + 1,
                    },
                )),
            };
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                WrongSize {
                    expected: self.size,
                    actual: self.size - self.left,
                },
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    WrongSize {
                        expected: self.size,
                        actual: self.size + 1,
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// Writes a tar through a temp file beside `dest` and renames it into place when `fill`
/// succeeded; on failure the temp file is removed and `dest` is untouched.
fn atomic_tar(
    dest: &Path,
    mtime: u64,
    fill: impl FnOnce(&mut TarOut<'_>) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let io_err = |source| ExportError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| io_err(io::Error::other("the destination names no file")))?;
    if dest.is_dir() {
        return Err(io_err(io::Error::other(
            "it is a directory; name a file (or use `tar=false` for a layout directory)",
        )));
    }
    let tmp = dir.join(format!(
        ".{}.rbuild-{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let file = std::fs::File::create(&tmp).map_err(|source| ExportError::Io {
        path: tmp.clone(),
        source,
    })?;
    let mut out = TarOut {
        tar: tar::Builder::new(io::BufWriter::with_capacity(256 << 10, file)),
        mtime,
        path: dest,
    };
    let result = fill(&mut out).and_then(|()| {
        let mut w = out.tar.into_inner().map_err(io_err)?;
        w.flush().map_err(io_err)?;
        let f = w.into_inner().map_err(|e| io_err(e.into_error()))?;
        f.sync_all().map_err(io_err)
    });
    match result {
        Ok(()) => std::fs::rename(&tmp, dest).map_err(io_err),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// One `--output` of `rbuild build`, in `docker buildx build`'s `key=value,...` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci,dest=FILE.tar` (an OCI layout tar) or `type=oci,dest=DIR,tar=false`.
    Oci {
        dest: PathBuf,
        tar: bool,
        name: Option<String>,
    },
    /// `type=docker,dest=FILE.tar`: a Docker archive for `docker load` / `podman load`.
    Docker { dest: PathBuf, name: Option<String> },
    /// `type=registry[,name=REF]` (or `type=image,push=true`): push to the registry,
    /// under `name` or else the `--tag`s.
    Registry { name: Option<String> },
    /// `type=image[,name=REF]` without push: keep the image in rbuild's store under its
    /// names (what `rbuild push NAME DEST` and `rbuild run NAME` read).
    Image { name: Option<String> },
    /// `type=local,dest=DIR`: the final filesystem, not an image.
    Local { dest: PathBuf },
    /// `type=tar,dest=FILE`: the final filesystem as a tar.
    Tar { dest: PathBuf },
}

/// Why an `--output` value is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("`{0}` has no `type=`; e.g. `type=oci,dest=image.tar`")]
    NoType(String),
    #[error("output type `{0}` is not known (use oci, docker, registry, image, local or tar)")]
    UnknownType(String),
    #[error("`type={kind}` needs `dest=`{}", if *kind == "docker" { " (rbuild has no daemon to load into: write a file and `docker load -i` it)" } else { "" })]
    NoDest { kind: String },
    #[error("`{key}` is not an attribute of `type={kind}` outputs")]
    UnknownKey { kind: String, key: String },
    #[error("`{key}={value}` is not `true` or `false`")]
    NotBool { key: String, value: String },
    #[error("`{0}` is not `key=value`")]
    Malformed(String),
}

impl Output {
    /// Parses one `--output` value (`type=oci,dest=out.tar`, `dest=dir,type=oci,tar=false`,
    /// `type=registry`, ...). A bare path is `type=local,dest=PATH`, as buildx reads it.
    pub fn parse(text: &str) -> Result<Output, OutputError> {
        if !text.contains('=') {
            return Ok(Output::Local {
                dest: PathBuf::from(text),
            });
        }
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| OutputError::Malformed(part.to_owned()))?;
            attrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let kind = attrs
            .remove("type")
            .ok_or_else(|| OutputError::NoType(text.to_owned()))?;
        let boolean = |attrs: &mut BTreeMap<String, String>, key: &str, default: bool| match attrs
            .remove(key)
        {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(OutputError::NotBool {
                    key: key.to_owned(),
                    value: v,
                }),
            },
        };
        let dest = |attrs: &mut BTreeMap<String, String>| {
            attrs
                .remove("dest")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| OutputError::NoDest { kind: kind.clone() })
        };
        let out = match kind.as_str() {
            "oci" => Output::Oci {
                dest: dest(&mut attrs)?,
                tar: boolean(&mut attrs, "tar", true)?,
                name: attrs.remove("name"),
            },
            "docker" => Output::Docker {
                dest: dest(&mut attrs)?,
                name: attrs.remove("name"),
            },
            "registry" => {
                attrs.remove("push");
                Output::Registry {
                    name: attrs.remove("name"),
                }
            }
            "image" => {
                let name = attrs.remove("name");
                if boolean(&mut attrs, "push", false)? {
                    Output::Registry { name }
                } else {
                    Output::Image { name }
                }
            }
            "local" => Output::Local {
                dest: dest(&mut attrs)?,
            },
            "tar" => Output::Tar {
                dest: dest(&mut attrs)?,
            },
            _ => return Err(OutputError::UnknownType(kind)),
        };
        if let Some(key) = attrs.into_keys().next() {
            return Err(OutputError::UnknownKey { kind, key });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::writer::{Created, ImageSpec, Layer, WriteOptions, write};
    use crate::store::Store;

    #[test]
    fn parses_buildx_outputs() {
        assert_eq!(
            Output::parse("type=oci,dest=out.tar").unwrap(),
            Output::Oci {
                dest: "out.tar".into(),
                tar: true,
                name: None
            }
        );
        assert_eq!(
            Output::parse("dest=dir,type=oci,tar=false").unwrap(),
            Output::Oci {
                dest: "dir".into(),
                tar: false,
                name: None
            }
        );
        assert_eq!(
            Output::parse("type=image,name=r/a:1,push=true").unwrap(),
            Output::Registry {
                name: Some("r/a:1".into())
            }
        );
        assert_eq!(
            Output::parse("./out").unwrap(),
            Output::Local {
                dest: "./out".into()
            }
        );
        assert!(matches!(
            Output::parse("type=docker"),
            Err(OutputError::NoDest { .. })
        ));
        assert!(
            Output::parse("type=docker")
                .unwrap_err()
                .to_string()
                .contains("docker load")
        );
        assert!(matches!(
            Output::parse("type=oci,dest=x,tar=maybe"),
            Err(OutputError::NotBool { .. })
        ));
        assert!(matches!(
            Output::parse("type=oci,dest=x,compression=zstd"),
            Err(OutputError::UnknownKey { .. })
        ));
        assert!(matches!(
            Output::parse("type=cacheonly"),
            Err(OutputError::UnknownType(_))
        ));
    }

    fn image(store: &Store) -> Descriptor {
        let mut specs = Vec::new();
        for p in ["linux/amd64", "linux/arm64"] {
            let content = format!("layer for {p}");
            let digest = store.put_bytes(None, content.as_bytes()).unwrap();
            let mut s = ImageSpec::new(p.parse().unwrap());
            s.add_layer(
                Layer {
                    descriptor: Descriptor::new(
                        media::OCI_LAYER,
                        digest.clone(),
                        content.len() as u64,
                    ),
                    diff_id: digest,
                },
                "COPY x /",
            );
            specs.push(s);
        }
        write(store, &specs, &WriteOptions::new(Created { unix: 5 }))
            .unwrap()
            .root
    }

    fn entries(path: &Path) -> Vec<(String, u64, u64)> {
        let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.size().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn oci_tar_is_complete_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let root = image(&store);
        let opts = ExportOptions {
            names: vec!["localhost/app:1".into()],
            ref_name: Some("1".into()),
            platform: None,
            mtime: 7,
        };
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        oci_tar(&store, &root, &a, &opts).unwrap();
        oci_tar(&store, &root, &b, &opts).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let list = entries(&a);
        // index + 2 x (manifest, config, layer), after the two directories.
        assert_eq!(list.len(), 2 + 7 + 2);
        assert!(list.iter().all(|(_, _, mtime)| *mtime == 7));
        assert_eq!(list[0].0, "blobs/");
        assert_eq!(list[list.len() - 2].0, "index.json");
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_corrupt_blob_leaves_no_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let root = image(&store);
        let layer = Digest::sha256_of(b"layer for linux/arm64");
        std::fs::write(
            dir.path().join("store/blobs/sha256").join(layer.hex()),
            b"layer for linux/arm65",
        )
        .unwrap();
        let dest = dir.path().join("out.tar");
        let err = oci_tar(&store, &root, &dest, &ExportOptions::default()).unwrap_err();
        assert!(
            matches!(err, ExportError::Store(StoreError::DigestMismatch { .. })),
            "{err:?}"
        );
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn docker_tar_holds_one_platform_with_repo_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let root = image(&store);
        let dest = dir.path().join("d.tar");
        let opts = ExportOptions {
            names: vec!["localhost/app".into()],
            platform: Some("linux/arm64".parse().unwrap()),
            ..ExportOptions::default()
        };
        docker_tar(&store, &root, &dest, &opts).unwrap();
        let mut a = tar::Archive::new(std::fs::File::open(&dest).unwrap());
        let mut manifest = None;
        let mut count = 0;
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            count += 1;
            if e.path().unwrap().to_str() == Some("manifest.json") {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                manifest = Some(s);
            }
        }
        let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "localhost/app:latest");
        assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 1);
        assert_eq!(
            manifest[0]["Layers"][0],
            format!(
                "blobs/sha256/{}",
                Digest::sha256_of(b"layer for linux/arm64").hex()
            )
        );
        assert_eq!(count, 2 + 2 + 1, "dirs, config + layer, manifest.json");
        assert!(matches!(
            docker_name("a@sha256:00"),
            Err(ExportError::BadName(_))
        ));
        assert_eq!(docker_name("h:5000/a").unwrap(), "h:5000/a:latest");
    }
}

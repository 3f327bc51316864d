//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as a
//! source of images (`oci-layout://PATH[:TAG]`) and as a destination.
//!
//! Tags are the `org.opencontainers.image.ref.name` annotations of `index.json` entries, as
//! skopeo, umoci and BuildKit write them. Blobs read from a layout are verified like blobs
//! from the store; blobs written to one go through a temp file and are renamed into place
//! only when their digest matches.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{BlobSource, Descriptor, Index, media};
use crate::store::{BlobReader, Digest, StoreError};

/// Annotation naming a tag inside an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Prefix of layout references on the command line.
pub const SCHEME: &str = "oci-layout://";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Failures reading or writing a layout; each names the layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("`{0}` is not an OCI image layout (no `oci-layout` file)")]
    NotALayout(PathBuf),
    #[error("cannot read or write `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` is not a valid OCI index")]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no image tagged `{tag}` in `{layout}` (tags: {tags})")]
    NoTag {
        tag: String,
        layout: PathBuf,
        tags: String,
    },
    #[error(
        "`{layout}` holds {count} images; name one with `oci-layout://{layout}:TAG` (tags: {tags})"
    )]
    Ambiguous {
        layout: PathBuf,
        count: usize,
        tags: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Splits `oci-layout://PATH[:TAG]` into the path and the tag. `None` if `s` has another
/// scheme.
pub fn parse_reference(s: &str) -> Option<(PathBuf, Option<String>)> {
    let rest = s.strip_prefix(SCHEME)?;
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => {
            let (path, tag) = rest.split_at(slash + i);
            Some((PathBuf::from(path), Some(tag[1..].to_owned())))
        }
        None => Some((PathBuf::from(rest), None)),
    }
}

impl Layout {
    /// Opens an existing layout.
    pub fn open(root: &Path) -> Result<Layout, LayoutError> {
        if !root.join("oci-layout").is_file() {
            return Err(LayoutError::NotALayout(root.to_path_buf()));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Opens a layout, creating the skeleton when `root` does not hold one yet.
    pub fn create(root: &Path) -> Result<Layout, LayoutError> {
        let io = |source| LayoutError::Io {
            path: root.to_path_buf(),
            source,
        };
        if root.join("oci-layout").is_file() {
            return Layout::open(root);
        }
        std::fs::create_dir_all(root.join("blobs/sha256")).map_err(io)?;
        std::fs::write(
            root.join("oci-layout"),
            b"{\"imageLayoutVersion\":\"1.0.0\"}",
        )
        .map_err(io)?;
        let layout = Layout {
            root: root.to_path_buf(),
        };
        if !root.join("index.json").is_file() {
            layout.write_index(&Index {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.to_owned()),
                artifact_type: None,
                manifests: Vec::new(),
                subject: None,
                annotations: std::collections::BTreeMap::new(),
            })?;
        }
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(|source| LayoutError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadIndex { path, source })
    }

    fn write_index(&self, index: &Index) -> Result<(), LayoutError> {
        let path = self.root.join("index.json");
        let io = |source| LayoutError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(index).map_err(|e| io(io::Error::other(e)))?;
        let tmp = self
            .root
            .join(format!(".index.json.{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The descriptor tagged `tag`, or the only one when `tag` is `None`.
    pub fn find(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let index = self.index()?;
        let tags = || {
            let t: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME))
                .map(|t| format!("`{t}`"))
                .collect();
            if t.is_empty() {
                "none".to_owned()
            } else {
                t.join(", ")
            }
        };
        match tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|d| {
                    d.annotations.get(REF_NAME).is_some_and(|n| {
                        n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag)
                    })
                })
                .cloned()
                .ok_or_else(|| LayoutError::NoTag {
                    tag: tag.to_owned(),
                    layout: self.root.clone(),
                    tags: tags(),
                }),
            None if index.manifests.len() == 1 => Ok(index.manifests[0].clone()),
            None => Err(LayoutError::Ambiguous {
                layout: self.root.clone(),
                count: index.manifests.len(),
                tags: tags(),
            }),
        }
    }

    /// Copies a blob into the layout from a verified reader (skipped if already present).
    pub fn put_blob(&self, mut reader: BlobReader, size: u64) -> Result<(), LayoutError> {
        let digest = reader.digest().clone();
        let dest = self.blob_file(&digest);
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let io = |source| LayoutError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let (file, tmp) = crate::store::temp_file(&dir, "blob")?;
        let mut out = io::BufWriter::new(file);
        let copied = io::copy(&mut reader, &mut out).and_then(|n| {
            out.flush()?;
            Ok(n)
        });
        match copied {
            Ok(n) if n == size => std::fs::rename(&tmp, &dest).map_err(io),
            Ok(n) => {
                let _ = std::fs::remove_file(&tmp);
                Err(LayoutError::Store(StoreError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: n,
                }))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io(e))
            }
        }
    }

    /// Adds `entry` (with its own annotations) to `index.json`, replacing an entry with the
    /// same `org.opencontainers.image.ref.name`, or with the same digest when it has none.
    pub fn add(&self, entry: &Descriptor) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        match entry.annotations.get(REF_NAME) {
            Some(tag) => index
                .manifests
                .retain(|m| m.annotations.get(REF_NAME).is_none_or(|n| n != tag)),
            None => index
                .manifests
                .retain(|m| m.digest != entry.digest || m.annotations.contains_key(REF_NAME)),
        }
        index.manifests.push(entry.clone());
        self.write_index(&index)
    }

    /// Adds `descriptor` to `index.json` tagged `tag` (replacing an entry with that tag).
    pub fn tag(&self, descriptor: &Descriptor, tag: Option<&str>) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        let mut d = descriptor.clone();
        d.annotations.clear();
        d.platform = None;
        if let Some(tag) = tag {
            index
                .manifests
                .retain(|m| m.annotations.get(REF_NAME).is_none_or(|n| n != tag));
            d.annotations.insert(REF_NAME.to_owned(), tag.to_owned());
        } else {
            index.manifests.retain(|m| m.digest != d.digest);
        }
        index.manifests.push(d);
        self.write_index(&index)
    }
}

impl BlobSource for Layout {
    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let path = self.blob_file(digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::Missing(digest.clone())
            } else {
                StoreError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        // Layout blobs belong to the user: never delete them when they are corrupt.
        Ok(BlobReader::new(file, digest.clone(), None))
    }

    fn has(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(Layout::blob_file(self, digest))
            .is_ok_and(|m| m.is_file() && m.len() == size)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        Layout::blob_file(self, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layout_references() {
        assert_eq!(
            parse_reference("oci-layout:///tmp/x:latest"),
            Some((PathBuf::from("/tmp/x"), Some("latest".into())))
        );
        assert_eq!(
            parse_reference("oci-layout://rel/dir"),
            Some((PathBuf::from("rel/dir"), None))
        );
        assert_eq!(
            parse_reference("oci-layout:///a:b/dir"),
            Some((PathBuf::from("/a:b/dir"), None))
        );
        assert_eq!(parse_reference("docker://x"), None);
    }

    #[test]
    fn tags_and_finds_entries() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let d = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(b"m"), 1);
        layout.tag(&d, Some("v1")).unwrap();
        assert_eq!(layout.find(Some("v1")).unwrap().digest, d.digest);
        assert_eq!(layout.find(None).unwrap().digest, d.digest);
        let e = Descriptor::new(media::OCI_INDEX, Digest::sha256_of(b"i"), 1);
        layout.tag(&e, Some("v2")).unwrap();
        assert!(matches!(
            layout.find(None),
            Err(LayoutError::Ambiguous { count: 2, .. })
        ));
        let err = layout.find(Some("v3")).unwrap_err().to_string();
        assert!(err.contains("`v1`, `v2`"), "{err}");
        // Retagging replaces.
        layout.tag(&e, Some("v1")).unwrap();
        assert_eq!(layout.index().unwrap().manifests.len(), 2);
        assert_eq!(layout.find(Some("v1")).unwrap().digest, e.digest);
    }
}

//! Image sources: what a sandbox's root file system is made from.
//!
//! **The seam.** An [`ImageSource`] resolves an image for a platform into an [`Image`]:
//! the platform it really is, the parts of its config a run needs ([`RunConfig`]), and its
//! layers in order, bottom first ([`LayerBlob`]: blob digest, diff id, and the blob on
//! disk, which [`LayerBlob::open`] streams). The sandbox helper is a separate process,
//! so layers cross the seam as files, not in-memory streams.
//!
//! Today rbuild reads OCI image layouts ([`OciLayout`], `oci-layout://PATH[:REF]`). The
//! registry client lands in `registry/` + `store/` (a separate change): pulling an image
//! writes its blobs to the content store, and a store-backed `ImageSource` returns their
//! paths the same way, so `rbuild run REGISTRY/IMAGE:TAG` needs no change here.

use std::fs::File;
use std::path::PathBuf;

use serde_json::Value;

use crate::arch::Platform;
use crate::layer::Digest;

/// What a run needs from an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: String,
    pub working_dir: String,
}

/// One layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the blob as stored.
    pub digest: Digest,
    /// Digest of its uncompressed tar.
    pub diff_id: Digest,
    pub media_type: String,
    /// The blob.
    pub path: PathBuf,
}

impl LayerBlob {
    /// The blob's bytes, as a stream (compressed as stored; see `layer::decompress`).
    pub fn open(&self) -> std::io::Result<File> {
        File::open(&self.path)
    }
}

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// How the user named it.
    pub reference: String,
    pub platform: Platform,
    pub config: RunConfig,
    /// Bottom first.
    pub layers: Vec<LayerBlob>,
}

/// Why an image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not an OCI image layout: {reason}")]
    NotALayout { path: PathBuf, reason: String },
    #[error("`{reference}` is not in the layout (it has: {known})")]
    NoSuchRef { reference: String, known: String },
    #[error("the image has no manifest for `{wanted}` (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("{what} `{digest}` is malformed: {reason}")]
    Malformed {
        what: &'static str,
        digest: String,
        reason: String,
    },
    #[error("blob `{digest}` does not match its digest")]
    Corrupt { digest: String },
}

impl SourceError {
    /// Catalog id, when one applies.
    pub fn id(&self) -> Option<&'static str> {
        matches!(self, SourceError::NoPlatform { .. }).then_some("base-image-missing-platform")
    }
}

/// Something that can produce an [`Image`] for a platform.
pub trait ImageSource {
    /// Resolves the image for `platform`.
    fn resolve(&self, platform: &Platform) -> Result<Image, SourceError>;
}

/// An OCI image layout on disk (`oci-layout://PATH[:REF]`, `REF` a tag from
/// `org.opencontainers.image.ref.name` or a `sha256:` digest; default `latest`, or the
/// only image when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayout {
    pub root: PathBuf,
    pub reference: Option<String>,
}

/// Media types of image indexes (OCI and Docker).
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Layer media types rbuild can unpack (compression is told by magic bytes anyway).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

impl OciLayout {
    /// Parses `oci-layout://PATH[:REF]` (also `PATH@sha256:...`). `None` when `s` is not
    /// an `oci-layout://` reference.
    pub fn parse(s: &str) -> Option<OciLayout> {
        let rest = s.strip_prefix("oci-layout://")?;
        if let Some((path, digest)) = rest.rsplit_once('@') {
            return Some(OciLayout {
                root: PathBuf::from(path),
                reference: Some(digest.to_owned()),
            });
        }
        // A `:` after the last `/` separates the reference.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (path, reference) = rest.split_at(last_slash + i);
                Some(OciLayout {
                    root: PathBuf::from(path),
                    reference: Some(reference[1..].to_owned()),
                })
            }
            None => Some(OciLayout {
                root: PathBuf::from(rest),
                reference: None,
            }),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn read_json(&self, what: &'static str, digest: &str) -> Result<Value, SourceError> {
        let d = Digest::parse(digest).map_err(|e| SourceError::Malformed {
            what,
            digest: digest.to_owned(),
            reason: e.to_string(),
        })?;
        let path = self.blob_path(&d);
        let bytes = std::fs::read(&path).map_err(|source| SourceError::Io { path, source })?;
        if Digest::of(&bytes) != d {
            return Err(SourceError::Corrupt {
                digest: digest.to_owned(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| SourceError::Malformed {
            what,
            digest: digest.to_owned(),
            reason: e.to_string(),
        })
    }

    fn top_descriptor(&self) -> Result<Value, SourceError> {
        let marker = self.root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| SourceError::NotALayout {
            path: self.root.clone(),
            reason: format!("cannot read `oci-layout`: {e}"),
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| SourceError::NotALayout {
            path: self.root.clone(),
            reason: format!("`oci-layout` is not JSON: {e}"),
        })?;
        if v["imageLayoutVersion"].as_str().is_none() {
            return Err(SourceError::NotALayout {
                path: self.root.clone(),
                reason: "`oci-layout` has no `imageLayoutVersion`".into(),
            });
        }
        let index_path = self.root.join("index.json");
        let index: Value =
            serde_json::from_slice(&std::fs::read(&index_path).map_err(|source| {
                SourceError::Io {
                    path: index_path.clone(),
                    source,
                }
            })?)
            .map_err(|e| SourceError::NotALayout {
                path: self.root.clone(),
                reason: format!("`index.json` is not JSON: {e}"),
            })?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let name = |d: &Value| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_owned)
        };
        let found = match &self.reference {
            Some(r) if r.starts_with("sha256:") => manifests
                .iter()
                .find(|d| d["digest"] == r.as_str())
                .cloned()
                .or_else(|| {
                    // A digest not listed in index.json may still be a blob of the layout.
                    Some(serde_json::json!({ "digest": r, "mediaType": "" }))
                }),
            Some(r) => manifests
                .iter()
                .find(|d| name(d).as_deref() == Some(r))
                .cloned(),
            None if manifests.len() == 1 => manifests.first().cloned(),
            None => manifests
                .iter()
                .find(|d| name(d).as_deref() == Some("latest"))
                .cloned(),
        };
        found.ok_or_else(|| SourceError::NoSuchRef {
            reference: self.reference.clone().unwrap_or_else(|| "latest".into()),
            known: {
                let names: Vec<String> = manifests
                    .iter()
                    .filter_map(name)
                    .map(|n| format!("`{n}`"))
                    .collect();
                if names.is_empty() {
                    "no tagged images".into()
                } else {
                    names.join(", ")
                }
            },
        })
    }
}

fn platform_of(v: &Value) -> Option<Platform> {
    Some(Platform::normalize(
        v["os"].as_str()?,
        v["architecture"].as_str()?,
        v["variant"].as_str(),
    ))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl ImageSource for OciLayout {
    fn resolve(&self, platform: &Platform) -> Result<Image, SourceError> {
        let mut desc = self.top_descriptor()?;
        // Descend through indexes to the manifest for `platform`.
        let mut manifest = None;
        for _ in 0..4 {
            let digest = desc["digest"].as_str().unwrap_or_default().to_owned();
            let doc = self.read_json("manifest", &digest)?;
            let media = doc["mediaType"]
                .as_str()
                .or_else(|| desc["mediaType"].as_str())
                .unwrap_or_default();
            if INDEX_TYPES.contains(&media) || doc["manifests"].is_array() {
                let entries = doc["manifests"].as_array().cloned().unwrap_or_default();
                let pick = entries
                    .iter()
                    .find(|d| {
                        platform_of(&d["platform"])
                            .is_some_and(|p| p.satisfies(platform) && p.variant == platform.variant)
                    })
                    .or_else(|| {
                        entries.iter().find(|d| {
                            platform_of(&d["platform"]).is_some_and(|p| p.satisfies(platform))
                        })
                    });
                desc = pick.cloned().ok_or_else(|| SourceError::NoPlatform {
                    wanted: platform.to_string(),
                    available: entries
                        .iter()
                        .filter_map(|d| platform_of(&d["platform"]))
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                continue;
            }
            manifest = Some((digest, doc));
            break;
        }
        let Some((manifest_digest, manifest)) = manifest else {
            return Err(SourceError::Malformed {
                what: "index",
                digest: desc["digest"].as_str().unwrap_or_default().to_owned(),
                reason: "indexes nest too deeply".into(),
            });
        };
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let config = self.read_json("config", &config_digest)?;
        let image_platform = platform_of(&config).ok_or_else(|| SourceError::Malformed {
            what: "config",
            digest: config_digest.clone(),
            reason: "no `os`/`architecture`".into(),
        })?;
        if !image_platform.satisfies(platform) {
            return Err(SourceError::NoPlatform {
                wanted: platform.to_string(),
                available: format!("`{image_platform}`"),
            });
        }
        let diff_ids = strings(&config["rootfs"]["diff_ids"]);
        let layers_json = manifest["layers"].as_array().cloned().unwrap_or_default();
        if diff_ids.len() != layers_json.len() {
            return Err(SourceError::Malformed {
                what: "manifest",
                digest: manifest_digest,
                reason: format!(
                    "{} layers but the config lists {} diff ids",
                    layers_json.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for (l, diff_id) in layers_json.iter().zip(&diff_ids) {
            let bad = |reason: String| SourceError::Malformed {
                what: "manifest",
                digest: manifest_digest.clone(),
                reason,
            };
            let digest = Digest::parse(l["digest"].as_str().unwrap_or_default())
                .map_err(|e| bad(e.to_string()))?;
            let diff_id = Digest::parse(diff_id).map_err(|e| bad(e.to_string()))?;
            let media_type = l["mediaType"].as_str().unwrap_or_default().to_owned();
            if !LAYER_TYPES.contains(&media_type.as_str()) {
                return Err(bad(format!(
                    "layer `{digest}` has media type `{media_type}`, which is not a layer rbuild can unpack"
                )));
            }
            let path = self.blob_path(&digest);
            let size = std::fs::metadata(&path)
                .map_err(|source| SourceError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            if l["size"].as_u64().is_some_and(|s| s != size) {
                return Err(SourceError::Corrupt {
                    digest: digest.to_string(),
                });
            }
            layers.push(LayerBlob {
                digest,
                diff_id,
                media_type,
                path,
            });
        }
        let c = &config["config"];
        Ok(Image {
            reference: format!(
                "oci-layout://{}{}",
                self.root.display(),
                self.reference
                    .as_ref()
                    .map(|r| format!(":{r}"))
                    .unwrap_or_default()
            ),
            platform: image_platform,
            config: RunConfig {
                env: strings(&c["Env"]),
                entrypoint: strings(&c["Entrypoint"]),
                cmd: strings(&c["Cmd"]),
                user: c["User"].as_str().unwrap_or_default().to_owned(),
                working_dir: c["WorkingDir"].as_str().unwrap_or_default().to_owned(),
            },
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn layout_references_parse() {
        let p = |s: &str| OciLayout::parse(s).unwrap();
        assert_eq!(p("oci-layout:///tmp/x").root, Path::new("/tmp/x"));
        assert_eq!(p("oci-layout:///tmp/x").reference, None);
        assert_eq!(
            p("oci-layout:///tmp/x:arm64").reference.as_deref(),
            Some("arm64")
        );
        assert_eq!(p("oci-layout://rel/dir:v1").root, Path::new("rel/dir"));
        assert_eq!(p("oci-layout:///a:b/c").root, Path::new("/a:b/c"));
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(p(&format!("oci-layout:///x@{d}")).reference, Some(d));
        assert!(OciLayout::parse("docker.io/library/busybox").is_none());
    }

    /// A layout with one two-platform index tagged `latest`.
    fn layout(dir: &Path) -> OciLayout {
        let put = |bytes: &[u8]| {
            let d = Digest::of(bytes);
            std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
            (d, bytes.len())
        };
        let mut manifests = Vec::new();
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let (layer, size) = put(format!("layer-{arch}").as_bytes());
            let config = json!({
                "architecture": arch, "os": "linux",
                "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"], "User": "1000", "WorkingDir": "/w" },
                "rootfs": { "type": "layers", "diff_ids": [layer.to_string()] },
            });
            let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
            let m = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs },
                "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": size }],
            });
            let (md, ms) = put(&serde_json::to_vec(&m).unwrap());
            let mut platform = json!({ "os": "linux", "architecture": arch });
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            manifests.push(json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": ms, "platform": platform }));
        }
        let idx =
            json!({ "schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": manifests });
        let (id, is) = put(&serde_json::to_vec(&idx).unwrap());
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let top = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": INDEX_TYPES[0], "digest": id.to_string(), "size": is, "annotations": { "org.opencontainers.image.ref.name": "latest" } }] });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        OciLayout {
            root: dir.to_path_buf(),
            reference: None,
        }
    }

    #[test]
    fn index_is_resolved_per_platform() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        let arm = l.resolve(&"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(arm.platform.to_string(), "linux/arm64");
        assert_eq!(arm.layers.len(), 1);
        assert_eq!(arm.layers[0].diff_id, Digest::of(b"layer-arm64"));
        assert_eq!(
            arm.config,
            RunConfig {
                env: vec!["PATH=/bin".into()],
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                user: "1000".into(),
                working_dir: "/w".into()
            }
        );
        let err = l.resolve(&"linux/s390x".parse().unwrap()).unwrap_err();
        assert_eq!(err.id(), Some("base-image-missing-platform"));
        assert!(
            err.to_string().contains("`linux/amd64`, `linux/arm64`"),
            "{err}"
        );
        let missing = OciLayout {
            reference: Some("v2".into()),
            ..l.clone()
        };
        assert!(matches!(
            missing.resolve(&Platform::host()),
            Err(SourceError::NoSuchRef { .. })
        ));
    }

    #[test]
    fn tampered_blobs_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        // Corrupt every JSON blob: the index is read first and must fail its digest.
        for e in std::fs::read_dir(t.path().join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            if b.starts_with(b"{") {
                b.push(b' ');
                std::fs::write(&p, b).unwrap();
            }
        }
        assert!(matches!(
            l.resolve(&Platform::host()),
            Err(SourceError::Corrupt { .. })
        ));
    }
}

//! Image documents: descriptors, manifests, indexes, configs, platforms, OCI layouts.
//!
//! Owns the JSON formats of OCI images (and the Docker schema 2 equivalents rbuild reads):
//! parsing what registries and layouts hand us into rbuild's own types, and serialising
//! what rbuild writes. The rest of rbuild uses these types; `oci-spec` is used inside this
//! module only (to parse and validate image configs), never in its API.
//!
//! - [`Descriptor`], [`Manifest`], [`Index`], [`Document`]: the distribution documents, kept
//!   together with their exact bytes where a digest depends on them.
//! - [`ImageConfig`]: a parsed image config (env, cmd, entrypoint, user, workdir, diff ids).
//! - [`Platform`]: `os/arch[/variant]` with Docker's normalisation and index matching.
//! - [`layout`]: OCI image layout directories as a source and a destination.
//! - [`BlobSource`]: where verified blob readers come from (the content store, a layout), so
//!   push and the sandbox read blobs the same way whatever holds them.
//! - [`writer`]: rbuild's own image description ([`writer::ImageSpec`]: platform, config
//!   settings, history, layers already in the store) written as config + manifest per
//!   platform + index, reproducibly (`SOURCE_DATE_EPOCH`).
//! - [`export`]: an image or index written as an OCI layout directory, an OCI layout tar or
//!   a Docker archive; [`export::Output`] parses `--output`.
//!
//! # Writing an image (for the build engine)
//!
//! ```no_run
//! # fn demo(store: &rbuild::store::Store, bases: Vec<rbuild::image::ResolvedImage>,
//! #         layer: rbuild::image::writer::Layer) -> Result<(), Box<dyn std::error::Error>> {
//! use rbuild::image::{export, writer::{self, Created, ImageSpec, WriteOptions}};
//! let mut specs = Vec::new();
//! for base in &bases {                                   // one per --platform
//!     let mut spec = ImageSpec::from_base(base)?;        // FROM: settings, layers, history
//!     spec.config.set_env("APP", "1");                   // ENV APP=1
//!     spec.add_empty_history("ENV APP=1");
//!     spec.add_layer(layer.clone(), "RUN make # buildkit"); // a step's layer blob, in the store
//!     spec.config.labels.insert("org.opencontainers.image.source".into(), "x".into());
//!     specs.push(spec);
//! }
//! let mut options = WriteOptions::new(Created::from_env()?); // SOURCE_DATE_EPOCH or now
//! options.ref_name = Some("registry.example.com/app:1.0".into()); // protects it from prune
//! let written = writer::write(store, &specs, &options)?;  // index for >1 platform
//! // --output type=oci,dest=out.tar
//! let opts = export::ExportOptions { names: vec!["registry.example.com/app:1.0".into()],
//!     ref_name: Some("1.0".into()), mtime: 0, platform: None };
//! export::oci_tar(store, &written.root, "out.tar".as_ref(), &opts)?;
//! // --output type=docker,dest=img.tar (one platform), type=oci,tar=false: export::docker_tar,
//! // export::oci_dir. --push: registry::Registry::push(&StoredSource { store, origin: None },
//! //   &written.root, &dest_ref, None) once per tag.
//! # Ok(()) }
//! ```
//!
//! Must not: talk to registries (that is `registry`), or decide where blobs live on disk
//! (that is `store`).

pub mod export;
pub mod layout;
mod platform;
pub mod writer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use platform::{Platform, PlatformError, normalize as normalize_platform};

use crate::store::{BlobReader, Digest, Store, StoreError};

/// Media types rbuild reads and writes.
pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

    /// What rbuild asks registries for, most preferred first.
    pub const ACCEPT_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

    /// Whether `t` is an index (OCI index or Docker manifest list).
    pub fn is_index(t: &str) -> bool {
        t == OCI_INDEX || t == DOCKER_LIST
    }

    /// Whether `t` is a single-platform image manifest.
    pub fn is_manifest(t: &str) -> bool {
        t == OCI_MANIFEST || t == DOCKER_MANIFEST
    }
}

/// Largest manifest, index or config rbuild reads into memory (the distribution spec lets
/// registries refuse manifests over 4 MiB; configs with long histories can be larger).
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// Compression of a layer blob, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no platform, annotations or urls.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
            artifact_type: None,
        }
    }

    /// How the layer this describes is compressed, or `None` if it is not a layer type
    /// rbuild can unpack.
    pub fn layer_compression(&self) -> Option<Compression> {
        match self.media_type.as_str() {
            media::OCI_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Some(Compression::None)
            }
            media::OCI_LAYER_GZIP
            | media::OCI_LAYER_NONDIST_GZIP
            | media::DOCKER_LAYER_GZIP
            | media::DOCKER_FOREIGN_LAYER_GZIP => Some(Compression::Gzip),
            media::OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// A single-platform image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A multi-platform index (OCI index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// The image manifests in this index that are runnable images for `platform` (not
    /// attestations), best match first.
    pub fn select<'a>(&'a self, platform: &Platform) -> Vec<&'a Descriptor> {
        let mut found: Vec<&Descriptor> = self
            .manifests
            .iter()
            .filter(|d| media::is_manifest(&d.media_type) || media::is_index(&d.media_type))
            .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .collect();
        // An entry naming the variant exactly beats one that relies on the default.
        found.sort_by_key(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| p.variant.as_deref() != platform.variant.as_deref())
        });
        found
    }

    /// Where to look for `platform`, in order: [`Index::select`]'s matches, then child
    /// indexes that name no platform (nested indexes usually do not).
    pub fn candidates<'a>(&'a self, platform: &Platform) -> Vec<&'a Descriptor> {
        let mut out = self.select(platform);
        out.extend(
            self.manifests
                .iter()
                .filter(|d| media::is_index(&d.media_type) && d.platform.is_none()),
        );
        out
    }

    /// The platforms of the runnable images in this index, for error messages.
    pub fn platforms(&self) -> Vec<Platform> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(Platform::normalized)
            .collect()
    }
}

/// A parsed manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
// Documents are parsed one at a time and moved rarely; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Why a document is not an image manifest or index rbuild can use.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("`{0}` is a Docker schema 1 manifest, which is deprecated and not supported")]
    Schema1(String),
    #[error("media type `{0}` is not an image manifest or index")]
    UnknownMediaType(String),
    #[error("the document is not valid {what} JSON")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the document has schemaVersion {0}, expected 2")]
    SchemaVersion(u32),
    #[error("the image config is not valid")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Document {
    /// Parses a manifest or index. `content_type` is what the server or parent descriptor
    /// said; the document's own `mediaType` wins when present.
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<(Document, String), DocumentError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            schema_version: Option<u32>,
            manifests: Option<serde_json::Value>,
            layers: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
            what: "manifest",
            source,
        })?;
        let declared = probe
            .media_type
            .clone()
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
            .filter(|t| !t.is_empty() && t != "application/json" && t != "text/plain");
        let media_type = match declared {
            Some(t) if t == media::DOCKER_SCHEMA1 || t == media::DOCKER_SCHEMA1_SIGNED => {
                return Err(DocumentError::Schema1(t));
            }
            Some(t) => t,
            None if probe.manifests.is_some() => media::OCI_INDEX.to_owned(),
            None if probe.layers.is_some() => media::OCI_MANIFEST.to_owned(),
            None if probe.schema_version == Some(1) => {
                return Err(DocumentError::Schema1(media::DOCKER_SCHEMA1.to_owned()));
            }
            None => return Err(DocumentError::UnknownMediaType("(none)".to_owned())),
        };
        let doc = if media::is_index(&media_type) {
            let index: Index =
                serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
                    what: "image index",
                    source,
                })?;
            if index.schema_version != 2 {
                return Err(DocumentError::SchemaVersion(index.schema_version));
            }
            Document::Index(index)
        } else if media::is_manifest(&media_type) {
            let manifest: Manifest =
                serde_json::from_slice(bytes).map_err(|source| DocumentError::Json {
                    what: "image manifest",
                    source,
                })?;
            if manifest.schema_version != 2 {
                return Err(DocumentError::SchemaVersion(manifest.schema_version));
            }
            Document::Manifest(manifest)
        } else {
            return Err(DocumentError::UnknownMediaType(media_type));
        };
        Ok((doc, media_type))
    }
}

/// An image config, parsed and validated (through `oci-spec`), with its exact bytes.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    bytes: Vec<u8>,
    parsed: oci_spec::image::ImageConfiguration,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn parse(bytes: Vec<u8>) -> Result<ImageConfig, DocumentError> {
        let parsed: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|source| DocumentError::Json {
                what: "image config",
                source,
            })?;
        Ok(ImageConfig { bytes, parsed })
    }

    /// The exact bytes (their digest is the image id).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.parsed.os().to_string(),
            &self.parsed.architecture().to_string(),
            self.parsed.variant().as_deref(),
        )
    }

    fn exec(&self) -> Option<&oci_spec::image::Config> {
        self.parsed.config().as_ref()
    }

    /// `Env` (`KEY=VALUE` entries).
    pub fn env(&self) -> Vec<String> {
        self.exec()
            .and_then(|c| c.env().clone())
            .unwrap_or_default()
    }

    /// `Cmd`.
    pub fn cmd(&self) -> Vec<String> {
        self.exec()
            .and_then(|c| c.cmd().clone())
            .unwrap_or_default()
    }

    /// `Entrypoint`.
    pub fn entrypoint(&self) -> Vec<String> {
        self.exec()
            .and_then(|c| c.entrypoint().clone())
            .unwrap_or_default()
    }

    /// `WorkingDir`, if set.
    pub fn working_dir(&self) -> Option<String> {
        self.exec()
            .and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty())
    }

    /// `User`, if set.
    pub fn user(&self) -> Option<String> {
        self.exec()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty())
    }

    /// `Labels`, sorted.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.exec()
            .and_then(|c| c.labels().clone())
            .map(|l| l.into_iter().collect())
            .unwrap_or_default()
    }

    /// The uncompressed digests of the layers (`rootfs.diff_ids`), in order.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, DocumentError> {
        self.parsed
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse().map_err(|e| DocumentError::Config(Box::new(e))))
            .collect()
    }
}

/// Where verified blob readers come from: the content store, an OCI layout.
pub trait BlobSource: Send + Sync + std::fmt::Debug {
    /// A reader of the blob that fails at its end if the content does not match the digest.
    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError>;
    /// Whether the blob is there (with that size).
    fn has(&self, digest: &Digest, size: u64) -> bool;
    /// The file holding the blob (for streaming it in ranges; check it with [`open`] before
    /// anything is committed from it).
    ///
    /// [`open`]: BlobSource::open
    fn blob_path(&self, digest: &Digest) -> std::path::PathBuf;
    /// Where it came from (`registry/repository`), when a registry could mount its blobs.
    fn origin(&self) -> Option<&str> {
        None
    }
    /// The content store behind it, when missing content may be fetched into it.
    fn store(&self) -> Option<&Store> {
        None
    }
}

impl BlobSource for Store {
    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        self.open_blob(digest)
    }

    fn has(&self, digest: &Digest, size: u64) -> bool {
        self.contains(digest, Some(size))
    }

    fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        Store::blob_file(self, digest)
    }
}

/// Reads a whole document blob (manifest, index, config) from a source, verified.
pub fn read_document(source: &dyn BlobSource, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    use std::io::Read as _;
    let mut reader = source.open(digest)?;
    let mut buf = Vec::new();
    let io = |source| StoreError::Io {
        path: digest.to_string().into(),
        source,
    };
    (&mut reader)
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("document larger than {MAX_DOCUMENT_BYTES} bytes"),
        )));
    }
    // Reach the reader's end so it checks the digest.
    let mut end = [0u8; 1];
    reader.read(&mut end).map_err(io)?;
    Ok(buf)
}

/// A single-platform image, resolved: its manifest, config and layers. The blobs are read
/// from the [`BlobSource`] it was resolved from.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Digest of the index the manifest was chosen from, if there was one.
    pub index_digest: Option<Digest>,
    /// Descriptor of the image manifest.
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl ResolvedImage {
    /// The image id: the digest of the config.
    pub fn config_digest(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }
}

/// Resolves `root` (a manifest or an index) in `source` to the image for `platform`.
/// Nested indexes are followed: an entry for the platform that is itself an index, or,
/// when no entry names the platform, a child index without a platform (up to 4 deep).
/// Errors name the platforms the index does offer.
pub fn resolve(
    source: &dyn BlobSource,
    root: &Descriptor,
    platform: &Platform,
) -> Result<ResolvedImage, ResolveError> {
    let mut available = Vec::new();
    match resolve_in(source, root, platform, None, 0, &mut available)? {
        Some(found) => Ok(found),
        None => Err(ResolveError::NoPlatform {
            wanted: platform.clone(),
            available,
        }),
    }
}

fn resolve_in(
    source: &dyn BlobSource,
    current: &Descriptor,
    platform: &Platform,
    index_digest: Option<&Digest>,
    depth: usize,
    available: &mut Vec<Platform>,
) -> Result<Option<ResolvedImage>, ResolveError> {
    if depth > 4 {
        return Err(ResolveError::TooDeep);
    }
    let bytes = read_document(source, &current.digest)?;
    let (doc, media_type) = Document::parse(&bytes, Some(&current.media_type))?;
    match doc {
        Document::Manifest(manifest) => {
            let config_bytes = read_document(source, &manifest.config.digest)?;
            let config = ImageConfig::parse(config_bytes)?;
            let mut d = current.clone();
            d.media_type = media_type;
            Ok(Some(ResolvedImage {
                index_digest: index_digest.cloned(),
                manifest_descriptor: d,
                manifest,
                config,
            }))
        }
        Document::Index(index) => {
            let top = index_digest.unwrap_or(&current.digest).clone();
            for p in index.platforms() {
                if !available.contains(&p) {
                    available.push(p);
                }
            }
            for candidate in index.candidates(platform) {
                if let Some(found) = resolve_in(
                    source,
                    candidate,
                    platform,
                    Some(&top),
                    depth + 1,
                    available,
                )? {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        }
    }
}

/// Why an image could not be resolved from local content.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(
        "the image has no manifest for `{wanted}` (it has: {})",
        list_platforms(available)
    )]
    NoPlatform {
        wanted: Platform,
        available: Vec<Platform>,
    },
    #[error("indexes are nested more than 4 deep")]
    TooDeep,
}

/// `linux/amd64, linux/arm64` or `none`.
pub fn list_platforms(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".to_owned();
    }
    platforms
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_LIST: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 566,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform": {"architecture": "unknown", "os": "unknown"}}
      ]
    }"#;

    #[test]
    fn parses_a_docker_manifest_list_and_selects_platforms() {
        let (doc, mt) = Document::parse(DOCKER_LIST.as_bytes(), None).unwrap();
        assert_eq!(mt, media::DOCKER_LIST);
        let Document::Index(index) = doc else {
            panic!("expected an index")
        };
        let arm: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(index.select(&arm)[0].digest.hex().as_bytes()[0], b'2');
        let arm_v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(index.select(&arm_v8).len(), 1);
        assert!(index.select(&"linux/s390x".parse().unwrap()).is_empty());
        assert_eq!(
            list_platforms(&index.platforms()),
            "`linux/amd64`, `linux/arm64`"
        );
    }

    #[test]
    fn rejects_schema1_and_unknown_types() {
        let schema1 = r#"{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}"#;
        assert!(matches!(
            Document::parse(schema1.as_bytes(), None),
            Err(DocumentError::Schema1(_))
        ));
        let other = r#"{"schemaVersion": 2, "mediaType": "application/vnd.cncf.helm.chart"}"#;
        assert!(matches!(
            Document::parse(other.as_bytes(), None),
            Err(DocumentError::UnknownMediaType(_))
        ));
    }

    #[test]
    fn manifest_without_media_type_uses_the_content_type() {
        let m = r#"{"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
          "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 2},
          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
          "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "size": 3}]}"#;
        let (doc, mt) = Document::parse(m.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(mt, media::OCI_MANIFEST);
        let Document::Manifest(m) = doc else {
            panic!("expected a manifest")
        };
        assert_eq!(m.layers[0].layer_compression(), Some(Compression::Zstd));
    }

    #[test]
    fn config_exposes_exec_settings() {
        let c = ImageConfig::parse(
            br#"{"architecture":"arm64","variant":"v8","os":"linux",
            "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1000"},
            "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]}}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(c.platform().to_string(), "linux/arm64");
        assert_eq!(c.env(), ["PATH=/bin"]);
        assert_eq!(c.cmd(), ["sh"]);
        assert!(c.entrypoint().is_empty());
        assert_eq!(c.working_dir().as_deref(), Some("/w"));
        assert_eq!(c.user().as_deref(), Some("1000"));
        assert_eq!(c.diff_ids().unwrap().len(), 1);
    }
}

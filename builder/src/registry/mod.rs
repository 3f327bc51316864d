//! Registries: resolve and pull images into the content store, push images and indexes.
//!
//! # API
//!
//! For the sandbox (`rbuild run`) and anything else that needs one image for one platform:
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rbuild::{image::Platform, registry, store::Store};
//! let store = Store::open(&rbuild::store::default_dir().unwrap())?;
//! let platform: Platform = "linux/arm64".parse()?;
//! let image = registry::pull_image(&store, "busybox:latest", &platform, &registry::Options::default())?;
//! for layer in image.layers() {
//!     let compression = layer.layer_compression(); // gzip, zstd or none
//!     let reader = store.open_blob(&layer.digest)?;  // verified at its end
//!     # let _ = (compression, reader);
//! }
//! let env = image.config.env();
//! # Ok(()) }
//! ```
//!
//! [`pull_image`] resolves the reference, picks the platform's manifest from an index, and
//! fetches config and layers into the store (skipping what is there). [`image_from`] does
//! the same for `oci-layout://PATH[:TAG]` or a reference already in the store, without
//! network. The async [`Registry`] is for the build engine: [`Registry::pull`] (several
//! platforms at once) and [`Registry::push`] (an image or index from any
//! [`BlobSource`](crate::image::BlobSource)). Errors are [`RegistryError`]s, classified at the
//! source: [`RegistryError::exit`], [`RegistryError::hints`], [`RegistryError::cause`] (the
//! failure-cause catalog id) and [`RegistryError::into_failure`].
//!
//! # Behaviour
//!
//! - References are normalised as Docker does (`busybox` is
//!   `docker.io/library/busybox:latest`); `localhost`, 127.0.0.0/8 and `::1` registries are
//!   reached over http, others over https unless named by `--insecure-registry`.
//! - Authentication: anonymous first; on a `401` challenge, a bearer token from the realm it
//!   names (with the user's credentials if there are any; see [`auth`]), or basic auth.
//!   Tokens are cached per host and scope; credentials never go to another host.
//! - Retries: connection errors, timeouts, resets, `408`, `429` and `5xx` are retried with
//!   exponential backoff and jitter ([`RetryPolicy`]); `Retry-After` is honoured up to a
//!   limit, beyond which the error says how long the registry asked to wait.
//! - Integrity: manifests are checked against the pinned digest and `Docker-Content-Digest`;
//!   blobs are streamed to a partial file while hashed, resumed with `Range` after an
//!   interruption, and renamed into the store only when digest and size match. More bytes
//!   than the descriptor's size abort the download.
//! - Indexes may nest: a pull follows an entry for the platform that is itself an index,
//!   or a child index without a platform, and stores every index on the way.
//! - Platforms: a single-platform image whose config names another platform than the one
//!   asked for is pulled anyway and reported in [`Pulled::mismatches`] (BuildKit builds
//!   `FROM` such an image with a warning); `rbuild pull` prints a warning.
//! - Push: `HEAD` skips blobs the registry has; blobs pulled from another repository of the
//!   same registry are mounted; others are uploaded in one `PUT`, or in `PATCH` chunks of
//!   [`Options::chunk_size`] (at least the registry's `OCI-Chunk-Min-Length`), while a
//!   blocking thread checks the content against its digest: the one `PUT` and a chunked
//!   upload's closing `PUT` (what makes the registry keep the blob) wait for the check, and
//!   a failed check cancels the session and is the error reported. Upload failures: a chunked upload **resumes** on the same
//!   session from where the registry says it stands (`GET` on the session, `Range:
//!   0-<last>`); a one-`PUT` upload, or a session the registry lost, **restarts** on a new
//!   session after cancelling the broken one (`DELETE`), never resending onto a session that
//!   may hold part of a body. Child manifests go by digest before the index, by tag. A ref
//!   that holds only some platforms of its index (a pull with `--platform`, an
//!   [`image_from`] of a layout) is completed from where it came from (its registry
//!   repository or its layout) while pushing; without an origin the error names the
//!   missing platform and suggests `--platform`.
//!
//! # Why not `oci-client` for the wire
//!
//! `oci-client` 0.18 was the intended base. It cannot do what this module must, so the
//! protocol (a few hundred lines on `reqwest`, rustls with ring) is written here, and
//! `oci-spec` is used for reference parsing and image configs:
//! - its errors drop the response headers, so `Retry-After` cannot be honoured and a 401's
//!   `WWW-Authenticate` error (`insufficient_scope`) is lost; token-service failures lose
//!   their status; and a token error during a request is swallowed (the request then goes
//!   out anonymously and fails with a bare "not authorized");
//! - it does not retry anything, and its resumable download (`pull_blob_stream_partial`)
//!   leaves verification across the resumed ranges to the caller;
//! - its chunk size for uploads is a private constant, and it cannot resume an upload
//!   session from the registry's `Range` or restart one cleanly from a file;
//! - it only reads credentials handed to it: Docker/podman credential files and helpers
//!   are needed anyway.
//!
//! Must not: unpack layers, or write to the store except through [`Store`]'s API.

// Registry errors carry what a human needs (host, request, status, code, credential
// source); they are built on the cold path only, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod auth;
pub(crate) mod client;
mod error;
mod pull;
mod push;
mod reference;

use std::sync::Arc;

pub use client::{Options, RetryPolicy};
pub use error::{Cause, RegistryCode, RegistryError};
pub use reference::{ImageRef, ReferenceError, host_is_loopback};

use crate::image::{self, BlobSource, Descriptor, Platform, ResolveError, ResolvedImage, layout};
use crate::store::{BlobReader, Digest, Store, StoreError};

/// What happens during a pull or push, for progress display.
#[derive(Debug, Clone)]
pub enum Event {
    /// A reference resolved to a manifest or index.
    Resolved {
        reference: String,
        digest: Digest,
        media_type: String,
    },
    /// A blob was already there (in the store on pull, in the registry on push).
    BlobExists { digest: Digest, size: u64 },
    /// A blob was downloaded and verified.
    BlobFetched { digest: Digest, size: u64 },
    /// Bytes of a chunked upload so far.
    BlobProgress {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// A chunked upload failed and resumes at `offset`, where the registry's session ends.
    BlobResumed { digest: Digest, offset: u64 },
    /// A blob was uploaded.
    BlobUploaded { digest: Digest, size: u64 },
    /// A blob was mounted from another repository of the registry.
    BlobMounted {
        digest: Digest,
        size: u64,
        from: String,
    },
    /// A manifest or index was stored under `reference` (a tag or its digest).
    ManifestPushed { digest: Digest, reference: String },
}

/// Which platforms of an index to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// The host's platform.
    Host,
    /// These platforms (each must be in the index).
    List(Vec<Platform>),
    /// Every manifest of the index (attestations included), for a faithful copy.
    All,
}

impl Platforms {
    fn list(&self) -> Vec<Platform> {
        match self {
            Platforms::Host => vec![Platform::host()],
            Platforms::List(l) => l.clone(),
            Platforms::All => Vec::new(),
        }
    }
}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub reference: ImageRef,
    /// The manifest or index the reference points to.
    pub descriptor: Descriptor,
    /// The single-platform images that were pulled.
    pub images: Vec<ResolvedImage>,
    /// Images whose config names another platform than the one they were pulled for (a
    /// single-platform image of another architecture, or a mislabelled index entry). The
    /// pull still succeeds, as BuildKit's `FROM` does; callers warn.
    pub mismatches: Vec<PlatformMismatch>,
}

/// A pulled image whose config names another platform than the one it was pulled for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{reference}` was pulled for `{wanted}`, but its config says it is for `{actual}` (manifest `{manifest}`)"
)]
pub struct PlatformMismatch {
    pub reference: String,
    pub manifest: Digest,
    pub wanted: Platform,
    pub actual: Platform,
}

impl PlatformMismatch {
    /// The failure-cause id of the catalog this is a symptom of.
    pub fn cause(&self) -> Cause {
        Cause::BaseImageMissingPlatform
    }
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: ImageRef,
    /// What the tag now points to (its digest is what `--iidfile`-style outputs want).
    pub descriptor: Descriptor,
}

/// An async registry client for one command: connection pool, tokens, credentials.
pub struct Registry {
    client: client::Client,
    events: pull::Events,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(options: Options) -> Result<Registry, RegistryError> {
        Ok(Registry {
            client: client::Client::new(options)?,
            events: Arc::new(|_| {}),
        })
    }

    /// Reports progress events to `f`.
    #[must_use]
    pub fn with_events(mut self, f: impl Fn(Event) + Send + Sync + 'static) -> Registry {
        self.events = Arc::new(f);
        self
    }

    /// Pulls `reference` for `platforms` into `store` and records it as a ref (by tag and
    /// by digest) naming every blob it needs.
    pub async fn pull(
        &self,
        store: &Store,
        reference: &ImageRef,
        platforms: &Platforms,
    ) -> Result<Pulled, RegistryError> {
        let puller = pull::Puller {
            client: &self.client,
            store,
            events: &*self.events,
        };
        puller.pull(reference, platforms).await
    }

    /// Fetches the manifest or index `reference` names (verified against its digest), without
    /// storing it: its bytes, digest and media type (as the registry sent it). For documents
    /// that are not images, such as the build cache's.
    pub async fn fetch_manifest(
        &self,
        store: &Store,
        reference: &ImageRef,
    ) -> Result<(Vec<u8>, Digest, Option<String>), RegistryError> {
        let puller = pull::Puller {
            client: &self.client,
            store,
            events: &*self.events,
        };
        let r = reference
            .digest()
            .map(ToString::to_string)
            .or_else(|| reference.tag().map(str::to_owned))
            .unwrap_or_else(|| "latest".to_owned());
        puller
            .fetch_manifest(reference, &r, reference.digest())
            .await
    }

    /// Downloads one blob of `reference`'s repository into `store` (verified, resumable; a
    /// no-op when it is stored).
    pub async fn fetch_blob(
        &self,
        store: &Store,
        reference: &ImageRef,
        blob: &Descriptor,
    ) -> Result<(), RegistryError> {
        let puller = pull::Puller {
            client: &self.client,
            store,
            events: &*self.events,
        };
        puller.fetch_blob(reference, blob).await
    }

    /// Pushes `root` (a manifest or index in `source`) to `dest`; with `platform`, only that
    /// platform's manifest of an index.
    pub async fn push(
        &self,
        source: &dyn BlobSource,
        root: &Descriptor,
        dest: &ImageRef,
        platform: Option<&Platform>,
    ) -> Result<Pushed, RegistryError> {
        let pusher = push::Pusher {
            client: &self.client,
            source,
            events: &*self.events,
        };
        pusher.push(root, dest, platform).await
    }
}

/// A runtime for the blocking entry points (registry I/O is async inside).
fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            RegistryError::Store(StoreError::Io {
                path: "tokio runtime".into(),
                source: e,
            })
        })
}

/// Runs an async registry operation from blocking code.
pub fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, RegistryError> {
    runtime()?.block_on(f)
}

/// Blocking: resolves and pulls `reference` for `platform`, returning the image. Its config
/// and layer blobs are in `store` ([`Store::open_blob`] gives verified readers). A
/// single-platform image for another platform is returned too (BuildKit builds `FROM` it
/// with a warning): compare `image.config.platform()` with `platform` and warn.
pub fn pull_image(
    store: &Store,
    reference: &str,
    platform: &Platform,
    options: &Options,
) -> Result<ResolvedImage, PullImageError> {
    let image: ImageRef = reference.parse()?;
    let registry = Registry::new(options.clone())?;
    let pulled = block_on(registry.pull(store, &image, &Platforms::List(vec![platform.clone()])))?;
    pulled.images.into_iter().next().ok_or_else(|| {
        PullImageError::Registry(RegistryError::NoPlatform {
            reference: reference.to_owned(),
            wanted: platform.clone(),
            available: Vec::new(),
        })
    })
}

/// Errors of [`pull_image`] and [`image_from`].
#[derive(Debug, thiserror::Error)]
pub enum PullImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("`{0}` is not in the content store; pull it first (`rbuild pull {0}`)")]
    NotStored(String),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// The store as a blob source, with the repository its content came from (for mounts).
#[derive(Debug)]
pub struct StoredSource<'a> {
    pub store: &'a Store,
    pub origin: Option<String>,
}

impl BlobSource for StoredSource<'_> {
    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        self.store.open_blob(digest)
    }
    fn has(&self, digest: &Digest, size: u64) -> bool {
        self.store.contains(digest, Some(size))
    }
    fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        BlobSource::blob_path(self.store, digest)
    }
    fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
    fn store(&self) -> Option<&Store> {
        Some(self.store)
    }
}

/// A local image: an OCI layout or a ref in the store, and its root descriptor.
#[derive(Debug)]
pub enum LocalImage<'a> {
    Layout(layout::Layout, Descriptor),
    Stored(StoredSource<'a>, Descriptor),
}

impl LocalImage<'_> {
    /// Where its blobs are read from.
    pub fn source(&self) -> &dyn BlobSource {
        match self {
            LocalImage::Layout(l, _) => l,
            LocalImage::Stored(s, _) => s,
        }
    }

    /// The manifest or index it names.
    pub fn descriptor(&self) -> &Descriptor {
        match self {
            LocalImage::Layout(_, d) | LocalImage::Stored(_, d) => d,
        }
    }
}

/// Finds a local image without network: `oci-layout://PATH[:TAG]`, or a reference that was
/// pulled into the store.
pub fn local_image<'a>(store: &'a Store, name: &str) -> Result<LocalImage<'a>, PullImageError> {
    if let Some((path, tag)) = layout::parse_reference(name) {
        let l = layout::Layout::open(&path)?;
        let d = l.find(tag.as_deref())?;
        return Ok(LocalImage::Layout(l, d));
    }
    let image: ImageRef = name.parse()?;
    let record = store
        .get_ref(&image.to_string())
        .map_err(RegistryError::Store)?
        .ok_or_else(|| PullImageError::NotStored(image.to_string()))?;
    let d = Descriptor::new(record.media_type, record.digest, record.size);
    Ok(LocalImage::Stored(
        StoredSource {
            store,
            origin: record.source,
        },
        d,
    ))
}

/// Resolves a local image (see [`local_image`]) for `platform`. An image from an OCI
/// layout is imported into the store first (verified, recorded as a ref under `name`), so
/// its blobs are read from the store like those of a pulled image.
pub fn image_from(
    store: &Store,
    name: &str,
    platform: &Platform,
) -> Result<ResolvedImage, PullImageError> {
    let local = local_image(store, name)?;
    let resolved = image::resolve(local.source(), local.descriptor(), platform)?;
    if let LocalImage::Layout(layout, root) = &local {
        let mut wanted = vec![
            root.clone(),
            resolved.manifest_descriptor.clone(),
            resolved.manifest.config.clone(),
        ];
        wanted.extend(resolved.manifest.layers.iter().cloned());
        let mut blobs = std::collections::BTreeSet::new();
        for d in &wanted {
            let reader = layout.open(&d.digest).map_err(RegistryError::Store)?;
            store
                .put_reader(&d.digest, d.size, reader)
                .map_err(RegistryError::Store)?;
            blobs.insert(d.digest.clone());
        }
        // Importing another platform of the same image keeps the first one's blobs.
        if let Some(old) = store.get_ref(name).map_err(RegistryError::Store)?
            && old.digest == root.digest
        {
            blobs.extend(old.blobs.into_iter().filter(|d| store.contains(d, None)));
        }
        store
            .set_ref(&crate::store::RefRecord {
                name: name.to_owned(),
                digest: root.digest.clone(),
                media_type: root.media_type.clone(),
                size: root.size,
                // The layout it came from: a push of this ref fetches the platforms that
                // were not imported from there.
                source: Some(name.to_owned()),
                blobs,
            })
            .map_err(RegistryError::Store)?;
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Descriptor, media};

    /// A layout with one linux/arm64 image tagged `t`; returns the layer digest.
    fn layout_with_image(dir: &std::path::Path) -> Digest {
        let l = layout::Layout::create(dir).unwrap();
        let put = |bytes: &[u8]| {
            let d = Digest::sha256_of(bytes);
            std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
            d
        };
        let layer = put(b"not really a tar");
        let config = format!(
            r#"{{"architecture":"arm64","os":"linux","config":{{"Env":["A=1"]}},"rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
        );
        let config_d = put(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer}","size":16}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            config.len(),
            media::OCI_LAYER
        );
        let manifest_d = put(manifest.as_bytes());
        let d = Descriptor::new(media::OCI_MANIFEST, manifest_d, manifest.len() as u64);
        l.tag(&d, Some("t")).unwrap();
        layer
    }

    #[test]
    fn image_from_a_layout_imports_it_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let layer = layout_with_image(&dir.path().join("layout"));
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let name = format!("oci-layout://{}:t", dir.path().join("layout").display());
        let image = image_from(&store, &name, &"linux/arm64".parse().unwrap()).unwrap();
        assert_eq!(image.config.env(), ["A=1"]);
        assert_eq!(image.layers()[0].digest, layer);
        let listing: Vec<_> = std::fs::read_dir(dir.path().join("cache/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(store.contains(&layer, Some(16)), "{layer} {listing:?}");
        assert!(
            store
                .get_ref(&name)
                .unwrap()
                .unwrap()
                .blobs
                .contains(&layer)
        );

        // A single-platform image for another platform is refused by resolve only for
        // indexes; a plain manifest resolves whatever its platform.
        let err = image_from(
            &store,
            &format!("oci-layout://{}:nope", dir.path().join("layout").display()),
            &Platform::host(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no image tagged `nope`"), "{err}");
    }
}

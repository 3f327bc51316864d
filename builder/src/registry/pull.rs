//! Pull: resolve a reference, choose platforms, fetch manifests, configs and layers into
//! the content store, verified, in parallel (bounded), resuming interrupted downloads.

use std::collections::BTreeSet;
use std::io::{Read as _, Seek as _, Write as _};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_RANGE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode};

use super::client::{Access, Call, Client, read_limited};
use super::error::RegistryError;
use super::reference::ImageRef;
use super::{Event, PlatformMismatch, Platforms, Pulled};
use crate::image::{
    Descriptor, Document, ImageConfig, MAX_DOCUMENT_BYTES, Platform, ResolvedImage, media,
};
use crate::store::{Digest, Hasher, RefRecord, Store, StoreError};

/// How deep indexes may nest below the root.
const MAX_NESTING: usize = 4;

fn too_deep(image: &ImageRef) -> RegistryError {
    RegistryError::Protocol {
        host: image.api_host().to_owned(),
        request: format!("GET /v2/{}/manifests/...", image.repository()),
        detail: format!("its indexes nest more than {MAX_NESTING} deep"),
    }
}

/// Header carrying the registry's digest of what it sends.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

pub(crate) struct Puller<'a> {
    pub client: &'a Client,
    pub store: &'a Store,
    pub events: &'a (dyn Fn(Event) + Send + Sync),
}

impl Puller<'_> {
    fn url(&self, image: &ImageRef, kind: &str, reference: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{reference}",
            self.client.base_url(image),
            image.repository()
        )
    }

    /// Fetches a manifest or index by tag or digest; verifies it against the pinned digest
    /// or the registry's `Docker-Content-Digest`. Returns bytes, digest and content type.
    pub(super) async fn fetch_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest, Option<String>), RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_str(&media::ACCEPT_MANIFESTS.join(", "))
                .expect("media types are valid header text"),
        );
        let call = Call {
            image,
            access: Access::Pull,
            method: Method::GET,
            url: self.url(image, "manifests", reference),
            headers,
            body: None,
        };
        let host = image.api_host().to_owned();
        let attempts = self.client.options.retry.attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.client.send(&call).await?;
            if resp.status() != StatusCode::OK {
                return Err(self.client.status_error(&call, resp, 1).await);
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let header_digest = resp
                .headers()
                .get(DOCKER_CONTENT_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            if resp
                .content_length()
                .is_some_and(|l| l > MAX_DOCUMENT_BYTES)
            {
                return Err(RegistryError::Protocol {
                    host,
                    request: call.describe(),
                    detail: format!("the manifest is larger than {MAX_DOCUMENT_BYTES} bytes"),
                });
            }
            #[allow(clippy::cast_possible_truncation)]
            let bytes = match read_limited(resp, MAX_DOCUMENT_BYTES as usize + 1).await {
                Ok(b) => b,
                Err(e) if attempt < attempts => {
                    tracing::debug!(%host, error = %e, "manifest body interrupted; retrying");
                    tokio::time::sleep(self.client.options.retry.delay(attempt - 1)).await;
                    continue;
                }
                Err(source) => {
                    return Err(RegistryError::Connect {
                        host,
                        request: call.describe(),
                        attempts: attempt,
                        source,
                    });
                }
            };
            if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
                return Err(RegistryError::Protocol {
                    host,
                    request: call.describe(),
                    detail: format!("the manifest is larger than {MAX_DOCUMENT_BYTES} bytes"),
                });
            }
            let pinned = expected.or(header_digest.as_ref());
            let algorithm = pinned.map_or(crate::store::Algorithm::Sha256, Digest::algorithm);
            let mut h = Hasher::new(algorithm);
            h.update(&bytes);
            let actual = h.finish();
            for want in [expected, header_digest.as_ref()].into_iter().flatten() {
                if want.algorithm() == actual.algorithm() && want != &actual {
                    return Err(RegistryError::DigestMismatch {
                        host,
                        digest: want.clone(),
                        actual,
                    });
                }
            }
            return Ok((bytes, actual, content_type));
        }
    }

    /// Downloads a blob into the store unless it is there. Streams to a partial file while
    /// hashing; resumes with `Range` after interruptions; renames into place only when
    /// digest and size match.
    pub(super) async fn fetch_blob(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
    ) -> Result<(), RegistryError> {
        if self.store.contains(&desc.digest, Some(desc.size)) {
            (self.events)(Event::BlobExists {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return Ok(());
        }
        let tmp = self.store.tmp_dir();
        let stem = format!("{}-{}", desc.digest.algorithm().name(), desc.digest.hex());
        let lock_path = tmp.join(format!("{stem}.lock"));
        let partial_path = tmp.join(format!("{stem}.partial"));
        // One process downloads a blob at a time; the others wait and then find it stored.
        let lock = {
            let path = lock_path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                f.lock()?;
                Ok(f)
            })
            .await
            .map_err(|e| store_io(&lock_path, std::io::Error::other(e)))?
            .map_err(|e| store_io(&lock_path, e))?
        };
        if self.store.contains(&desc.digest, Some(desc.size)) {
            (self.events)(Event::BlobExists {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return Ok(());
        }
        let result = self.download(image, desc, &partial_path).await;
        drop(lock);
        let _ = std::fs::remove_file(&lock_path);
        result
    }

    async fn download(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        partial_path: &std::path::Path,
    ) -> Result<(), RegistryError> {
        let host = image.api_host().to_owned();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(partial_path)
            .map_err(|e| store_io(partial_path, e))?;
        // Rehash what an earlier, interrupted run left.
        let mut hasher = Hasher::for_digest(&desc.digest);
        let mut have = file
            .metadata()
            .map_err(|e| store_io(partial_path, e))?
            .len();
        if have > desc.size {
            file.set_len(0).map_err(|e| store_io(partial_path, e))?;
            have = 0;
        }
        if have > 0 {
            let mut buf = vec![0u8; 256 << 10];
            let mut left = have;
            while left > 0 {
                #[allow(clippy::cast_possible_truncation)]
                let take = left.min(buf.len() as u64) as usize;
                let n = file
                    .read(&mut buf[..take])
                    .map_err(|e| store_io(partial_path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            tracing::debug!(digest = %desc.digest, have, "resuming a partial download");
        }
        file.seek(std::io::SeekFrom::Start(have))
            .map_err(|e| store_io(partial_path, e))?;
        let mut file = std::io::BufWriter::with_capacity(256 << 10, file);
        let resumed_any = have > 0;
        let policy = self.client.options.retry.clone();
        let url = self.url(image, "blobs", &desc.digest.to_string());
        let mut failures = 0u32;
        loop {
            let mut headers = HeaderMap::new();
            if have > 0 {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={have}-"))
                        .expect("a range is valid header text"),
                );
            }
            let call = Call {
                image,
                access: Access::Pull,
                method: Method::GET,
                url: url.clone(),
                headers,
                body: None,
            };
            let mut resp = self.client.send(&call).await?;
            match resp.status() {
                StatusCode::PARTIAL_CONTENT if have > 0 => {
                    let start = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if start != Some(have) {
                        return Err(RegistryError::Protocol {
                            host,
                            request: call.describe(),
                            detail: format!(
                                "asked for bytes from {have}, it sent a range starting at {start:?}"
                            ),
                        });
                    }
                }
                StatusCode::OK => {
                    if have > 0 {
                        // No range support: start over.
                        file.flush().map_err(|e| store_io(partial_path, e))?;
                        let f = file.get_mut();
                        f.set_len(0).map_err(|e| store_io(partial_path, e))?;
                        f.seek(std::io::SeekFrom::Start(0))
                            .map_err(|e| store_io(partial_path, e))?;
                        have = 0;
                        hasher = Hasher::for_digest(&desc.digest);
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                    file.flush().map_err(|e| store_io(partial_path, e))?;
                    file.get_mut()
                        .set_len(0)
                        .map_err(|e| store_io(partial_path, e))?;
                    file.get_mut()
                        .seek(std::io::SeekFrom::Start(0))
                        .map_err(|e| store_io(partial_path, e))?;
                    have = 0;
                    hasher = Hasher::for_digest(&desc.digest);
                    continue;
                }
                _ => return Err(self.client.status_error(&call, resp, 1).await),
            }
            if let Some(header) = resp
                .headers()
                .get(DOCKER_CONTENT_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok())
                && header.algorithm() == desc.digest.algorithm()
                && header != desc.digest
            {
                drop(file);
                let _ = std::fs::remove_file(partial_path);
                return Err(RegistryError::DigestMismatch {
                    host,
                    digest: desc.digest.clone(),
                    actual: header,
                });
            }
            let interrupted = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        if have + chunk.len() as u64 > desc.size {
                            drop(file);
                            let _ = std::fs::remove_file(partial_path);
                            return Err(RegistryError::SizeMismatch {
                                host,
                                digest: desc.digest.clone(),
                                expected: desc.size,
                                actual: have + chunk.len() as u64,
                            });
                        }
                        hasher.update(&chunk);
                        file.write_all(&chunk)
                            .map_err(|e| store_io(partial_path, e))?;
                        have += chunk.len() as u64;
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            file.flush().map_err(|e| store_io(partial_path, e))?;
            if have < desc.size {
                failures += 1;
                if failures >= policy.attempts {
                    return match interrupted {
                        Some(source) => Err(RegistryError::Connect {
                            host,
                            request: call.describe(),
                            attempts: failures,
                            source,
                        }),
                        None => Err(RegistryError::SizeMismatch {
                            host,
                            digest: desc.digest.clone(),
                            expected: desc.size,
                            actual: have,
                        }),
                    };
                }
                tracing::debug!(digest = %desc.digest, have, size = desc.size, "download interrupted; resuming");
                tokio::time::sleep(policy.delay(failures - 1)).await;
                continue;
            }
            let actual = std::mem::replace(&mut hasher, Hasher::for_digest(&desc.digest)).finish();
            drop(file);
            if actual != desc.digest {
                let _ = std::fs::remove_file(partial_path);
                if resumed_any && failures == 0 {
                    // The old partial file may have been the bad part: one fresh try.
                    return Box::pin(self.download(image, desc, partial_path)).await;
                }
                return Err(RegistryError::DigestMismatch {
                    host,
                    digest: desc.digest.clone(),
                    actual,
                });
            }
            self.store
                .adopt(partial_path, &desc.digest, actual, have, Some(desc.size))?;
            (self.events)(Event::BlobFetched {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return Ok(());
        }
    }

    /// Fetches a child index by digest (verified against its descriptor) and stores it.
    async fn child_index(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
    ) -> Result<crate::image::Index, RegistryError> {
        let host = image.api_host().to_owned();
        let (bytes, digest, _) = self
            .fetch_manifest(image, &desc.digest.to_string(), Some(&desc.digest))
            .await?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::SizeMismatch {
                host,
                digest,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        let (doc, _) = Document::parse(&bytes, Some(&desc.media_type)).map_err(|source| {
            RegistryError::BadDocument {
                host,
                reference: format!("{}@{}", image.name(), desc.digest),
                source,
            }
        })?;
        self.store.put_bytes(Some(&desc.digest), &bytes)?;
        match doc {
            Document::Index(index) => Ok(index),
            Document::Manifest(_) => Err(RegistryError::Protocol {
                host: image.api_host().to_owned(),
                request: format!("GET /v2/{}/manifests/{}", image.repository(), desc.digest),
                detail: "an index entry typed as an index is a manifest".to_owned(),
            }),
        }
    }

    /// Every manifest under `index`, nested indexes followed (and added to `blobs`).
    fn all_manifests<'s>(
        &'s self,
        image: &'s ImageRef,
        index: &'s crate::image::Index,
        blobs: &'s mut BTreeSet<Digest>,
        out: &'s mut Vec<(Descriptor, Option<Platform>)>,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'s, Result<(), RegistryError>> {
        Box::pin(async move {
            for d in &index.manifests {
                if media::is_index(&d.media_type) {
                    if depth >= MAX_NESTING {
                        return Err(too_deep(image));
                    }
                    let child = self.child_index(image, d).await?;
                    blobs.insert(d.digest.clone());
                    self.all_manifests(image, &child, blobs, out, depth + 1)
                        .await?;
                } else {
                    out.push((d.clone(), d.platform.clone()));
                }
            }
            Ok(())
        })
    }

    /// The manifest for `platform` under `index`: a matching entry, else inside a nested
    /// index (a matching one, or one without a platform). Indexes visited on the way to
    /// it are added to `blobs`; the platforms seen go to `available`.
    fn find_platform<'s>(
        &'s self,
        image: &'s ImageRef,
        index: &'s crate::image::Index,
        platform: &'s Platform,
        blobs: &'s mut BTreeSet<Digest>,
        available: &'s mut Vec<Platform>,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'s, Result<Option<Descriptor>, RegistryError>> {
        Box::pin(async move {
            for p in index.platforms() {
                if !available.contains(&p) {
                    available.push(p);
                }
            }
            for d in index.candidates(platform) {
                if !media::is_index(&d.media_type) {
                    return Ok(Some(d.clone()));
                }
                if depth >= MAX_NESTING {
                    return Err(too_deep(image));
                }
                let child = self.child_index(image, d).await?;
                let found = self
                    .find_platform(image, &child, platform, blobs, available, depth + 1)
                    .await?;
                if found.is_some() {
                    blobs.insert(d.digest.clone());
                    return Ok(found);
                }
            }
            Ok(None)
        })
    }

    /// Pulls `image` for `platforms` into the store and records it as a ref.
    pub(super) async fn pull(
        &self,
        image: &ImageRef,
        platforms: &Platforms,
    ) -> Result<Pulled, RegistryError> {
        let host = image.api_host().to_owned();
        let (bytes, root_digest, content_type) = self
            .fetch_manifest(image, &image.reference(), image.digest())
            .await?;
        let bad = |source| RegistryError::BadDocument {
            host: host.clone(),
            reference: image.to_string(),
            source,
        };
        let (doc, root_type) = Document::parse(&bytes, content_type.as_deref()).map_err(bad)?;
        self.store.put_bytes(Some(&root_digest), &bytes)?;
        (self.events)(Event::Resolved {
            reference: image.to_string(),
            digest: root_digest.clone(),
            media_type: root_type.clone(),
        });
        let mut blobs: BTreeSet<Digest> = BTreeSet::from([root_digest.clone()]);
        let root_desc = Descriptor::new(root_type.clone(), root_digest.clone(), bytes.len() as u64);

        // The single-platform manifests to fetch, with the platform each was chosen for.
        // Nested indexes are followed (and stored, and recorded in the ref).
        let mut chosen: Vec<(Descriptor, Option<Platform>)> = Vec::new();
        let mut index_digest = None;
        match &doc {
            Document::Manifest(_) => chosen.push((root_desc.clone(), None)),
            Document::Index(index) => {
                index_digest = Some(root_digest.clone());
                match platforms {
                    Platforms::All => {
                        self.all_manifests(image, index, &mut blobs, &mut chosen, 0)
                            .await?;
                    }
                    Platforms::Host | Platforms::List(_) => {
                        for p in &platforms.list() {
                            let mut available = Vec::new();
                            let found = self
                                .find_platform(image, index, p, &mut blobs, &mut available, 0)
                                .await?;
                            let Some(d) = found else {
                                return Err(RegistryError::NoPlatform {
                                    reference: image.to_string(),
                                    wanted: p.clone(),
                                    available,
                                });
                            };
                            chosen.push((d, Some(p.clone())));
                        }
                    }
                }
            }
        }

        // Child manifests (fetched by digest, verified against the index).
        let mut manifests = Vec::new();
        for (desc, platform) in chosen {
            let (doc_bytes, doc_desc) = if desc.digest == root_digest {
                (bytes.clone(), desc.clone())
            } else {
                let (b, d, _) = self
                    .fetch_manifest(image, &desc.digest.to_string(), Some(&desc.digest))
                    .await?;
                if b.len() as u64 != desc.size {
                    return Err(RegistryError::SizeMismatch {
                        host,
                        digest: d,
                        expected: desc.size,
                        actual: b.len() as u64,
                    });
                }
                self.store.put_bytes(Some(&desc.digest), &b)?;
                (b, desc.clone())
            };
            blobs.insert(doc_desc.digest.clone());
            let (parsed, mt) =
                Document::parse(&doc_bytes, Some(&doc_desc.media_type)).map_err(bad)?;
            let Document::Manifest(manifest) = parsed else {
                continue;
            };
            let mut d = doc_desc;
            d.media_type = mt;
            manifests.push((d, manifest, platform));
        }

        // Configs and layers, deduplicated, in parallel with a bound.
        let mut wanted: Vec<Descriptor> = Vec::new();
        let mut seen = BTreeSet::new();
        for (_, m, _) in &manifests {
            for d in std::iter::once(&m.config).chain(m.layers.iter()) {
                if seen.insert(d.digest.clone()) {
                    wanted.push(d.clone());
                }
            }
        }
        let limit = self.client.options.max_concurrent_downloads.max(1);
        stream::iter(wanted.iter().map(|d| self.fetch_blob(image, d)))
            .buffer_unordered(limit)
            .try_collect::<Vec<()>>()
            .await?;
        blobs.extend(seen);

        let mut images = Vec::new();
        let mut mismatches = Vec::new();
        for (desc, manifest, platform) in manifests {
            let config_bytes = self
                .store
                .read_blob(&manifest.config.digest, MAX_DOCUMENT_BYTES)?;
            let config = ImageConfig::parse(config_bytes).map_err(bad)?;
            // What this image was meant to be: the platform it was chosen for in an index,
            // or, for a single-platform image, every platform that was asked for.
            let wanted: Vec<Platform> = match (platform, platforms) {
                (Some(p), _) => vec![p],
                (None, Platforms::All) => Vec::new(),
                (None, p) => p.list(),
            };
            let actual = config.platform();
            for w in wanted.into_iter().filter(|w| !w.matches(&actual)) {
                mismatches.push(PlatformMismatch {
                    reference: image.to_string(),
                    manifest: desc.digest.clone(),
                    wanted: w,
                    actual: actual.clone(),
                });
            }
            images.push(ResolvedImage {
                index_digest: index_digest.clone(),
                manifest_descriptor: desc,
                manifest,
                config,
            });
        }

        // Record the ref (by tag and by digest); keep blobs of earlier pulls of the same root.
        let source = Some(image.name());
        let mut names = vec![image.to_string()];
        let by_digest = image.with_digest(root_digest.clone()).to_string();
        if !names.contains(&by_digest) {
            names.push(by_digest);
        }
        for name in names {
            let mut all = blobs.clone();
            if let Some(old) = self.store.get_ref(&name)?
                && old.digest == root_digest
            {
                all.extend(
                    old.blobs
                        .into_iter()
                        .filter(|d| self.store.contains(d, None)),
                );
            }
            self.store.set_ref(&RefRecord {
                name,
                digest: root_digest.clone(),
                media_type: root_type.clone(),
                size: bytes.len() as u64,
                source: source.clone(),
                blobs: all,
            })?;
        }
        Ok(Pulled {
            reference: image.clone(),
            descriptor: root_desc,
            images,
            mismatches,
        })
    }
}

fn store_io(path: &std::path::Path, source: std::io::Error) -> RegistryError {
    RegistryError::Store(StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes the event callback shareable.
pub(crate) type Events = Arc<dyn Fn(Event) + Send + Sync>;

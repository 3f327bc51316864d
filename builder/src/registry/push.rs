//! Push: blobs (skipped when the registry has them, mounted across repositories when it
//! can, else uploaded in one `PUT` or in `PATCH` chunks), then manifests, then the index.

use std::io::{Read as _, Seek as _};

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use reqwest::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
};
use reqwest::{Method, StatusCode};

use super::client::{Access, Call, Client};
use super::error::RegistryError;
use super::pull::Puller;
use super::reference::ImageRef;
use super::{Event, Pushed};
use crate::image::{BlobSource, Descriptor, Document, Index, Platform, media, read_document};
use crate::store::{Digest, StoreError};

/// Size of one read from a blob file while streaming it to the registry.
const READ_SIZE: usize = 256 << 10;

/// The check of a blob's content against its digest and size, read on a blocking thread
/// while the upload runs.
struct BlobCheck {
    digest: Digest,
    size: u64,
    path: std::path::PathBuf,
    running: tokio::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<u64>>>>,
}

impl BlobCheck {
    fn start(
        mut reader: impl std::io::Read + Send + 'static,
        path: std::path::PathBuf,
        desc: &Descriptor,
    ) -> BlobCheck {
        let handle =
            tokio::task::spawn_blocking(move || std::io::copy(&mut reader, &mut std::io::sink()));
        BlobCheck {
            digest: desc.digest.clone(),
            size: desc.size,
            path,
            running: tokio::sync::Mutex::new(Some(handle)),
        }
    }

    /// After a failed request: the check's error, if it fails (a failed check removes the
    /// blob, which breaks an upload still reading it; the check's error is the one to
    /// report then).
    async fn failure(&self) -> Option<RegistryError> {
        self.wait().await.err()
    }

    /// Waits for the check; `Ok` once it passed (also on later calls).
    async fn wait(&self) -> Result<(), RegistryError> {
        let mut running = self.running.lock().await;
        let Some(handle) = running.take() else {
            // Taken by an earlier wait: it passed (a failure ends the push).
            return Ok(());
        };
        let io = |source: std::io::Error| {
            RegistryError::Store(StoreError::Io {
                path: self.path.clone(),
                source,
            })
        };
        let size = handle
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(|source| {
                match source
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<crate::store::Corrupt>())
                {
                    Some(c) => RegistryError::Store(StoreError::DigestMismatch {
                        expected: c.expected.clone(),
                        actual: c.actual.clone(),
                        size: c.size,
                    }),
                    None => io(source),
                }
            })?;
        if size != self.size {
            return Err(RegistryError::Store(StoreError::SizeMismatch {
                digest: self.digest.clone(),
                expected: self.size,
                actual: size,
            }));
        }
        Ok(())
    }
}

pub(crate) struct Pusher<'a> {
    pub client: &'a Client,
    pub source: &'a dyn BlobSource,
    pub events: &'a (dyn Fn(Event) + Send + Sync),
}

/// A request body streaming `len` bytes of `path` from `offset`, read off the async threads.
fn file_body(path: std::path::PathBuf, offset: u64, len: u64) -> reqwest::Body {
    let state = (path, offset, len, None::<std::fs::File>);
    let s = stream::unfold(state, |(path, offset, left, file)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left.min(READ_SIZE as u64)).unwrap_or(READ_SIZE);
        let p = path.clone();
        let res =
            tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, std::fs::File)> {
                let mut f = if let Some(f) = file {
                    f
                } else {
                    let mut f = std::fs::File::open(&p)?;
                    f.seek(std::io::SeekFrom::Start(offset))?;
                    f
                };
                let mut buf = vec![0u8; want];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok((buf, f))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match res {
            Ok((buf, _)) if buf.is_empty() => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("`{}` ended early", path.display()),
                )),
                (path, offset, 0, None),
            )),
            Ok((buf, f)) => {
                let n = buf.len() as u64;
                Some((Ok(buf), (path, offset, left - n, Some(f))))
            }
            Err(e) => Some((Err(e), (path, offset, 0, None))),
        }
    });
    reqwest::Body::wrap_stream(s)
}

impl Pusher<'_> {
    fn base(&self, dest: &ImageRef) -> String {
        format!("{}/v2/{}", self.client.base_url(dest), dest.repository())
    }

    fn absolute(&self, dest: &ImageRef, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.client.base_url(dest))
        }
    }

    fn location(
        &self,
        dest: &ImageRef,
        resp: &reqwest::Response,
        call: &Call<'_>,
    ) -> Result<String, RegistryError> {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(dest, l))
            .ok_or_else(|| RegistryError::Protocol {
                host: dest.api_host().to_owned(),
                request: call.describe(),
                detail: format!("{} without a `Location` header", resp.status()),
            })
    }

    /// Pushes `root` (a manifest or an index) from the source to `dest`. With `platform`,
    /// an index is narrowed to that platform's manifest (nested indexes followed).
    pub(super) async fn push(
        &self,
        root: &Descriptor,
        dest: &ImageRef,
        platform: Option<&Platform>,
    ) -> Result<Pushed, RegistryError> {
        let bytes = read_document(self.source, &root.digest)?;
        let host = dest.api_host().to_owned();
        let (doc, media_type) =
            Document::parse(&bytes, Some(&root.media_type)).map_err(|source| {
                RegistryError::BadDocument {
                    host: host.clone(),
                    reference: root.digest.to_string(),
                    source,
                }
            })?;
        let tag = match (dest.digest(), dest.tag()) {
            (Some(_), _) => None,
            (None, t) => Some(t.unwrap_or("latest").to_owned()),
        };
        let mut root = root.clone();
        root.media_type.clone_from(&media_type);
        let pushed = match doc {
            Document::Manifest(m) => {
                self.push_image_blobs(dest, &m).await?;
                self.put_manifest(dest, &root, &bytes, tag.as_deref())
                    .await?
            }
            Document::Index(index) => {
                if let Some(p) = platform {
                    let mut available = Vec::new();
                    let Some(child) = self
                        .find_child(dest, &root, &index, p, &mut available, 0)
                        .await?
                    else {
                        return Err(RegistryError::NoPlatform {
                            reference: root.digest.to_string(),
                            wanted: p.clone(),
                            available,
                        });
                    };
                    return Box::pin(self.push(&child, dest, None)).await;
                }
                self.push_children(dest, &root, &index, 0).await?;
                self.put_manifest(dest, &root, &bytes, tag.as_deref())
                    .await?
            }
        };
        if let Some(want) = dest.digest()
            && want != &pushed.digest
        {
            return Err(RegistryError::Protocol {
                host,
                request: format!("PUT /v2/{}/manifests/{want}", dest.repository()),
                detail: format!("the pushed content has digest `{}`", pushed.digest),
            });
        }
        Ok(Pushed {
            reference: dest.clone(),
            descriptor: pushed,
        })
    }

    /// Where gaps of the source can be filled from, when the source is the content store:
    /// the repository it was pulled from, or the OCI layout it was imported from.
    fn filler(&self) -> Option<Filler<'_>> {
        let store = self.source.store()?;
        let origin = self.source.origin()?;
        if let Some((path, _)) = crate::image::layout::parse_reference(origin) {
            let layout = crate::image::layout::Layout::open(&path).ok()?;
            return Some(Filler::Layout(store, layout));
        }
        let origin: ImageRef = origin.parse().ok()?;
        Some(Filler::Registry(
            Puller {
                client: self.client,
                store,
                events: self.events,
            },
            origin,
        ))
    }

    /// The bytes of a child document of `root`: from the source, else fetched from the
    /// repository the source was pulled from (a pull for some platforms stores only their
    /// manifests), else an error saying what is missing and how to get it.
    async fn document(
        &self,
        dest: &ImageRef,
        root: &Descriptor,
        desc: &Descriptor,
    ) -> Result<(Document, Vec<u8>), RegistryError> {
        if !self.source.has(&desc.digest, desc.size) {
            let Some(filler) = self.filler() else {
                return Err(RegistryError::Incomplete {
                    root: root.digest.clone(),
                    missing: desc.digest.clone(),
                    platform: desc.platform.clone(),
                });
            };
            filler.document(desc).await?;
        }
        let bytes = read_document(self.source, &desc.digest)?;
        let (doc, _) = Document::parse(&bytes, Some(&desc.media_type)).map_err(|source| {
            RegistryError::BadDocument {
                host: dest.api_host().to_owned(),
                reference: desc.digest.to_string(),
                source,
            }
        })?;
        Ok((doc, bytes))
    }

    /// The manifest for `platform` under `index` (nested indexes followed).
    fn find_child<'s>(
        &'s self,
        dest: &'s ImageRef,
        root: &'s Descriptor,
        index: &'s Index,
        platform: &'s Platform,
        available: &'s mut Vec<Platform>,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'s, Result<Option<Descriptor>, RegistryError>> {
        Box::pin(async move {
            for p in index.platforms() {
                if !available.contains(&p) {
                    available.push(p);
                }
            }
            for c in index.candidates(platform) {
                if !media::is_index(&c.media_type) {
                    return Ok(Some(c.clone()));
                }
                if depth >= 4 {
                    return Err(nested_too_deep(dest));
                }
                if let (Document::Index(inner), _) = self.document(dest, root, c).await?
                    && let Some(found) = self
                        .find_child(dest, root, &inner, platform, available, depth + 1)
                        .await?
                {
                    return Ok(Some(found));
                }
            }
            Ok(None)
        })
    }

    /// Pushes every child of `index` (blobs, then the manifest by digest; nested indexes
    /// after their own children).
    fn push_children<'s>(
        &'s self,
        dest: &'s ImageRef,
        root: &'s Descriptor,
        index: &'s Index,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'s, Result<(), RegistryError>> {
        Box::pin(async move {
            // Every child document first, so a gap is reported before anything is sent.
            let mut children = Vec::new();
            for child in &index.manifests {
                children.push((child, self.document(dest, root, child).await?));
            }
            for (child, (doc, bytes)) in children {
                match doc {
                    Document::Manifest(m) => self.push_image_blobs(dest, &m).await?,
                    Document::Index(inner) => {
                        if depth >= 4 {
                            return Err(nested_too_deep(dest));
                        }
                        self.push_children(dest, root, &inner, depth + 1).await?;
                    }
                }
                self.put_manifest(dest, child, &bytes, None).await?;
            }
            Ok(())
        })
    }

    async fn push_image_blobs(
        &self,
        dest: &ImageRef,
        m: &crate::image::Manifest,
    ) -> Result<(), RegistryError> {
        let mut blobs: Vec<&Descriptor> = vec![&m.config];
        for l in &m.layers {
            if !blobs.iter().any(|b| b.digest == l.digest) {
                blobs.push(l);
            }
        }
        let limit = self.client.options.max_concurrent_uploads.max(1);
        // Futures collected first: a closure in the stream would not be `Send` for every
        // lifetime, which the boxed recursion in `push_children` needs.
        let uploads: Vec<_> = blobs
            .into_iter()
            .map(|d| Box::pin(self.push_blob(dest, d)))
            .collect();
        stream::iter(uploads)
            .buffer_unordered(limit)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Makes sure the registry has the blob; retries a failed upload from the start.
    async fn push_blob(&self, dest: &ImageRef, desc: &Descriptor) -> Result<(), RegistryError> {
        let head = Call {
            image: dest,
            access: Access::Push { mount_from: None },
            method: Method::HEAD,
            url: format!("{}/blobs/{}", self.base(dest), desc.digest),
            headers: HeaderMap::new(),
            body: None,
        };
        let resp = self.client.send(&head).await?;
        match resp.status() {
            StatusCode::OK => {
                (self.events)(Event::BlobExists {
                    digest: desc.digest.clone(),
                    size: desc.size,
                });
                return Ok(());
            }
            StatusCode::NOT_FOUND => {}
            _ => return Err(self.client.status_error(&head, resp, 1).await),
        }
        if !self.source.has(&desc.digest, desc.size) {
            // A partial pull, e.g. of an attestation's blobs: fetch it from where it came from.
            let Some(filler) = self.filler() else {
                return Err(RegistryError::Incomplete {
                    root: desc.digest.clone(),
                    missing: desc.digest.clone(),
                    platform: None,
                });
            };
            filler.blob(desc).await?;
        }
        // Never let the registry keep content that does not match its digest: the blob is
        // read and checked while it is being sent, and the request that commits it (the
        // single `PUT` of a small blob, the closing `PUT` of a chunked upload) waits for
        // the check; a failed check cancels the upload session instead.
        let path = self.source.blob_path(&desc.digest);
        let check = BlobCheck::start(self.source.open(&desc.digest)?, path.clone(), desc);
        let attempts = 3;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload(dest, desc, &path, &check).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < attempts && retryable(&e) => {
                    tracing::debug!(digest = %desc.digest, error = %e, "blob upload failed; starting it again");
                    tokio::time::sleep(self.client.options.retry.delay(attempt - 1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn upload(
        &self,
        dest: &ImageRef,
        desc: &Descriptor,
        path: &std::path::Path,
        check: &BlobCheck,
    ) -> Result<(), RegistryError> {
        let host = dest.api_host().to_owned();
        // Mount from the repository the blob was pulled from, when that is on this registry.
        let mount_from = self.source.origin().and_then(|origin| {
            let (registry, repo) = origin.split_once('/')?;
            (registry == dest.registry() && repo != dest.repository()).then(|| repo.to_owned())
        });
        let mut url = format!("{}/blobs/uploads/", self.base(dest));
        if let Some(from) = &mount_from {
            let mut u = reqwest::Url::parse(&url).map_err(|_| RegistryError::Protocol {
                host: host.clone(),
                request: format!("POST {url}"),
                detail: "bad upload URL".into(),
            })?;
            u.query_pairs_mut()
                .append_pair("mount", &desc.digest.to_string())
                .append_pair("from", from);
            url = u.to_string();
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let start = Call {
            image: dest,
            access: Access::Push {
                mount_from: mount_from.clone(),
            },
            method: Method::POST,
            url,
            headers,
            body: None,
        };
        let resp = self.client.send(&start).await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => {
                (self.events)(Event::BlobMounted {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    from: mount_from.unwrap_or_default(),
                });
                return Ok(());
            }
            StatusCode::ACCEPTED => {}
            _ => return Err(self.client.status_error(&start, resp, 1).await),
        }
        let location = self.location(dest, &resp, &start)?;
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let chunk = self.client.options.chunk_size.max(min_chunk).max(1);
        let sent = if desc.size > chunk {
            self.send_chunks(dest, desc, path, location.clone(), chunk, check)
                .await
        } else {
            match check.wait().await {
                Ok(()) => self.send_whole(dest, desc, path, &location).await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            let e = check.failure().await.unwrap_or(e);
            // Cancel the session (best effort) so the registry need not keep its data
            // until it expires; the caller starts a fresh one.
            let call = Call {
                image: dest,
                access: Access::Push { mount_from: None },
                method: Method::DELETE,
                url: location,
                headers: HeaderMap::new(),
                body: None,
            };
            let _ = self.client.send_once(&call).await;
            return Err(e);
        }
        (self.events)(Event::BlobUploaded {
            digest: desc.digest.clone(),
            size: desc.size,
        });
        Ok(())
    }

    /// One `PUT` with the whole blob. Not retried on the same session: after a failure
    /// the registry may hold part of the body, so the caller starts a new session.
    async fn send_whole(
        &self,
        dest: &ImageRef,
        desc: &Descriptor,
        path: &std::path::Path,
        location: &str,
    ) -> Result<(), RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(desc.size));
        let p = path.to_path_buf();
        let size = desc.size;
        let body = move || file_body(p.clone(), 0, size);
        let call = Call {
            image: dest,
            access: Access::Push { mount_from: None },
            method: Method::PUT,
            url: with_digest(location, &desc.digest),
            headers,
            body: Some(&body),
        };
        let resp = self.client.send_once(&call).await?;
        self.check_created(&call, resp, &desc.digest).await
    }

    /// `PATCH` chunks of `chunk` bytes, then the closing `PUT`. After a chunk fails (the
    /// connection broke, the registry answered 416 or 5xx), asks the registry how much
    /// of the session it kept (`GET` on the session: `Range: 0-<last>`) and resumes from
    /// there on the same session.
    async fn send_chunks(
        &self,
        dest: &ImageRef,
        desc: &Descriptor,
        path: &std::path::Path,
        mut location: String,
        chunk: u64,
        check: &BlobCheck,
    ) -> Result<(), RegistryError> {
        let access = Access::Push { mount_from: None };
        let policy = self.client.options.retry.clone();
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
                    .expect("a range is valid header text"),
            );
            let p = path.to_path_buf();
            let body = move || file_body(p.clone(), offset, len);
            let call = Call {
                image: dest,
                access: access.clone(),
                method: Method::PATCH,
                url: location.clone(),
                headers,
                body: Some(&body),
            };
            let failed = match self.client.send_once(&call).await {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    location = self.location(dest, &resp, &call)?;
                    offset += len;
                    (self.events)(Event::BlobProgress {
                        digest: desc.digest.clone(),
                        done: offset,
                        size: desc.size,
                    });
                    continue;
                }
                Ok(resp)
                    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || resp.status().is_server_error() =>
                {
                    self.client.status_error(&call, resp, 1).await
                }
                Ok(resp) => return Err(self.client.status_error(&call, resp, 1).await),
                Err(e @ (RegistryError::Connect { .. } | RegistryError::Status { .. })) => e,
                Err(e) => return Err(e),
            };
            if let Some(e) = check.failure().await {
                return Err(e);
            }
            failures += 1;
            if failures >= policy.attempts {
                return Err(failed);
            }
            tokio::time::sleep(policy.delay(failures - 1)).await;
            let (at, kept) = self.session_status(dest, &location).await?;
            if kept > desc.size {
                return Err(RegistryError::Protocol {
                    host: dest.api_host().to_owned(),
                    request: format!("GET {}", call.describe().trim_start_matches("PATCH ")),
                    detail: format!(
                        "the upload session holds {kept} bytes of a {}-byte blob",
                        desc.size
                    ),
                });
            }
            tracing::debug!(digest = %desc.digest, offset, kept, error = %failed, "chunk failed; resuming the upload");
            (self.events)(Event::BlobResumed {
                digest: desc.digest.clone(),
                offset: kept,
            });
            location = at;
            offset = kept;
        }
        check.wait().await?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let call = Call {
            image: dest,
            access,
            method: Method::PUT,
            url: with_digest(&location, &desc.digest),
            headers,
            body: None,
        };
        let resp = self.client.send(&call).await?;
        self.check_created(&call, resp, &desc.digest).await
    }

    /// How many bytes an upload session holds, and its current location.
    async fn session_status(
        &self,
        dest: &ImageRef,
        location: &str,
    ) -> Result<(String, u64), RegistryError> {
        let call = Call {
            image: dest,
            access: Access::Push { mount_from: None },
            method: Method::GET,
            url: location.to_owned(),
            headers: HeaderMap::new(),
            body: None,
        };
        let resp = self.client.send(&call).await?;
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(self.client.status_error(&call, resp, 1).await);
        }
        let at = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| location.to_owned(), |l| self.absolute(dest, l));
        Ok((at, session_bytes(resp.headers())))
    }

    async fn check_created(
        &self,
        call: &Call<'_>,
        resp: reqwest::Response,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        if resp.status() != StatusCode::CREATED {
            return Err(self.client.status_error(call, resp, 1).await);
        }
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && got.algorithm() == digest.algorithm()
            && &got != digest
        {
            return Err(RegistryError::Protocol {
                host: call.image.api_host().to_owned(),
                request: call.describe(),
                detail: format!("it stored `{digest}` as `{got}`"),
            });
        }
        Ok(())
    }

    async fn put_manifest(
        &self,
        dest: &ImageRef,
        desc: &Descriptor,
        bytes: &[u8],
        tag: Option<&str>,
    ) -> Result<Descriptor, RegistryError> {
        let reference = tag.map_or_else(|| desc.digest.to_string(), str::to_owned);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&desc.media_type)
                .unwrap_or(HeaderValue::from_static(media::OCI_MANIFEST)),
        );
        let body_bytes = bytes.to_vec();
        let body = move || reqwest::Body::from(body_bytes.clone());
        let call = Call {
            image: dest,
            access: Access::Push { mount_from: None },
            method: Method::PUT,
            url: format!("{}/manifests/{reference}", self.base(dest)),
            headers,
            body: Some(&body),
        };
        let resp = self.client.send(&call).await?;
        self.check_created(&call, resp, &desc.digest).await?;
        (self.events)(Event::ManifestPushed {
            digest: desc.digest.clone(),
            reference,
        });
        let mut d = Descriptor::new(
            desc.media_type.clone(),
            desc.digest.clone(),
            bytes.len() as u64,
        );
        d.platform.clone_from(&desc.platform);
        Ok(d)
    }
}

/// Where content missing from the store comes from during a push.
pub(super) enum Filler<'a> {
    /// The repository the image was pulled from.
    Registry(Puller<'a>, ImageRef),
    /// The OCI layout it was imported from (`image_from`).
    Layout(&'a crate::store::Store, crate::image::layout::Layout),
}

impl Filler<'_> {
    /// Fetches a manifest or index into the store, verified.
    pub(super) async fn document(&self, desc: &Descriptor) -> Result<(), RegistryError> {
        match self {
            Filler::Registry(puller, origin) => {
                let (bytes, _, _) = puller
                    .fetch_manifest(origin, &desc.digest.to_string(), Some(&desc.digest))
                    .await?;
                puller.store.put_bytes(Some(&desc.digest), &bytes)?;
                Ok(())
            }
            Filler::Layout(..) => self.blob(desc).await,
        }
    }

    /// Fetches a blob into the store, verified.
    pub(super) async fn blob(&self, desc: &Descriptor) -> Result<(), RegistryError> {
        match self {
            Filler::Registry(puller, origin) => puller.fetch_blob(origin, desc).await,
            Filler::Layout(store, layout) => {
                // Local disk to local disk: blocking is brief next to the upload it feeds.
                let reader = BlobSource::open(layout, &desc.digest)?;
                store.put_reader(&desc.digest, desc.size, reader)?;
                Ok(())
            }
        }
    }
}

fn nested_too_deep(dest: &ImageRef) -> RegistryError {
    RegistryError::Store(StoreError::Io {
        path: dest.to_string().into(),
        source: std::io::Error::other("indexes nest more than 4 deep"),
    })
}

/// `location` with `digest=<digest>` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    if let Ok(mut u) = reqwest::Url::parse(location) {
        u.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        u.to_string()
    } else {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }
}

/// Bytes an upload session holds, from its `Range: 0-<last byte>` header. The
/// distribution registry writes `0-0` for both an empty session and a one-byte one; rbuild
/// reads it as empty (a wrong guess costs one `416` and a fresh session, never bad data).
fn session_bytes(headers: &HeaderMap) -> u64 {
    headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().trim_start_matches("bytes=").split_once('-'))
        .and_then(|(_, end)| end.parse::<u64>().ok())
        .map_or(0, |end| if end == 0 { 0 } else { end + 1 })
}

/// Whether a failed blob upload is worth starting again.
fn retryable(e: &RegistryError) -> bool {
    match e {
        // Connection trouble, a confused registry, or an upload session the registry forgot
        // (expired, or cancelled after a failure).
        RegistryError::Connect { .. }
        | RegistryError::Protocol { .. }
        | RegistryError::NotFound { .. } => true,
        RegistryError::Status { status, code, .. } => {
            status.starts_with('5')
                || status.starts_with("416")
                // The session held part of an earlier attempt's body.
                || code.code.as_deref() == Some("DIGEST_INVALID")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ranges_give_the_bytes_kept() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("range", HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(session_bytes(&h("0-249999")), 250_000);
        assert_eq!(session_bytes(&h("bytes=0-9")), 10);
        assert_eq!(session_bytes(&h("0-0")), 0);
        assert_eq!(session_bytes(&HeaderMap::new()), 0);
    }

    #[test]
    fn digest_goes_into_the_upload_query() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u1?_state=x", &d),
            format!(
                "http://r/v2/a/blobs/uploads/u1?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
    }
}

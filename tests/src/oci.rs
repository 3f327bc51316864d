//! A small, independent OCI image-layout writer and registry pusher for test fixtures.
//!
//! This is deliberately *not* rbuild's own image/registry code: fixtures that rbuild's
//! tests consume must not share rbuild's bugs. It handles only what fixtures need:
//! blobs by sha256, `index.json` with `org.opencontainers.image.ref.name` annotations, and
//! monolithic blob uploads + manifest PUTs against a plain-http registry.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation naming a tag inside an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates the layout skeleton (`oci-layout`, `blobs/sha256/`) under `root`.
    pub fn create(root: &Path) -> std::io::Result<Layout> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::write(
            root.join("oci-layout"),
            "{\"imageLayoutVersion\":\"1.0.0\"}",
        )?;
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing layout.
    pub fn open(root: &Path) -> std::io::Result<Layout> {
        fs::metadata(root.join("oci-layout"))?;
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// Stores `bytes` and returns its descriptor.
    pub fn put_blob(&self, media_type: &str, bytes: &[u8]) -> std::io::Result<Value> {
        let digest = sha256_digest(bytes);
        fs::write(self.blob_path(&digest), bytes)?;
        Ok(json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() }))
    }

    /// Stores a JSON document (compact, keys sorted) and returns its descriptor.
    pub fn put_json(&self, media_type: &str, doc: &Value) -> std::io::Result<Value> {
        let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
        self.put_blob(media_type, &bytes)
    }

    /// Reads a blob and checks its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        let path = self.blob_path(digest);
        let bytes =
            fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(format!(
                "blob `{}` has digest {actual}, expected {digest}",
                path.display()
            ));
        }
        Ok(bytes)
    }

    /// Reads a JSON blob.
    pub fn read_json(&self, digest: &str) -> Result<Value, String> {
        serde_json::from_slice(&self.read_blob(digest)?).map_err(|e| format!("blob {digest}: {e}"))
    }

    /// Writes `index.json` listing `manifests`.
    pub fn write_index(&self, manifests: &[Value]) -> std::io::Result<()> {
        let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests });
        fs::write(
            self.root.join("index.json"),
            serde_json::to_vec(&index).map_err(std::io::Error::other)?,
        )
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Value, String> {
        let path = self.root.join("index.json");
        let bytes =
            fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
    }

    /// The descriptor in `index.json` tagged `name`.
    pub fn find_ref(&self, name: &str) -> Result<Value, String> {
        self.index()?["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["annotations"][REF_NAME] == name)
            .cloned()
            .ok_or_else(|| format!("no `{name}` in `{}`", self.root.display()))
    }
}

/// Pushes the image or index named `layout_ref` in `layout` to `registry_url/repo:tag`
/// (plain http), children first. Returns the digest of what the tag points to.
pub fn push(
    layout: &Layout,
    layout_ref: &str,
    registry_url: &str,
    repo: &str,
    tag: &str,
) -> Result<String, String> {
    let desc = layout.find_ref(layout_ref)?;
    let agent = crate::http::agent();
    push_descriptor(&agent, layout, registry_url, repo, &desc, Some(tag))
}

fn push_descriptor(
    agent: &ureq::Agent,
    layout: &Layout,
    base: &str,
    repo: &str,
    desc: &Value,
    tag: Option<&str>,
) -> Result<String, String> {
    let digest = desc["digest"].as_str().ok_or("descriptor without digest")?;
    let media_type = desc["mediaType"]
        .as_str()
        .ok_or("descriptor without mediaType")?;
    let doc = layout.read_json(digest)?;
    match media_type {
        MEDIA_INDEX => {
            for child in doc["manifests"].as_array().into_iter().flatten() {
                push_descriptor(agent, layout, base, repo, child, None)?;
            }
        }
        MEDIA_MANIFEST => {
            for blob in std::iter::once(&doc["config"])
                .chain(doc["layers"].as_array().into_iter().flatten())
            {
                let d = blob["digest"].as_str().ok_or("blob without digest")?;
                push_blob(agent, layout, base, repo, d)?;
            }
        }
        other => return Err(format!("cannot push media type `{other}`")),
    }
    let bytes = layout.read_blob(digest)?;
    let reference = tag.unwrap_or(digest);
    let url = format!("{base}/v2/{repo}/manifests/{reference}");
    let resp = agent
        .put(&url)
        .header("Content-Type", media_type)
        .send(&bytes[..])
        .map_err(|e| format!("PUT {url}: {e}"))?;
    expect_status(resp, 201, "PUT", &url)?;
    Ok(digest.to_owned())
}

fn push_blob(
    agent: &ureq::Agent,
    layout: &Layout,
    base: &str,
    repo: &str,
    digest: &str,
) -> Result<(), String> {
    let head = format!("{base}/v2/{repo}/blobs/{digest}");
    let resp = agent
        .head(&head)
        .call()
        .map_err(|e| format!("HEAD {head}: {e}"))?;
    if resp.status() == 200 {
        return Ok(());
    }
    let start = format!("{base}/v2/{repo}/blobs/uploads/");
    let resp = agent
        .post(&start)
        .send_empty()
        .map_err(|e| format!("POST {start}: {e}"))?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    expect_status(resp, 202, "POST", &start)?;
    let location = location.ok_or_else(|| format!("POST {start}: no Location header"))?;
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={digest}");
    let bytes = layout.read_blob(digest)?;
    let resp = agent
        .put(&url)
        .header("Content-Type", "application/octet-stream")
        .send(&bytes[..])
        .map_err(|e| format!("PUT {url}: {e}"))?;
    expect_status(resp, 201, "PUT", &url)
}

fn expect_status(
    mut resp: ureq::http::Response<ureq::Body>,
    want: u16,
    method: &str,
    url: &str,
) -> Result<(), String> {
    if resp.status() == want {
        return Ok(());
    }
    let mut body = String::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(4096)
        .read_to_string(&mut body);
    Err(format!(
        "{method} {url}: status {} (expected {want}): {body}",
        resp.status()
    ))
}

//! The registry cache (`--cache-to type=registry,ref=R[,mode=min|max]`, `--cache-from
//! type=registry,ref=R`): step records and their layer blobs kept in a registry, so a
//! fleet of ephemeral runners shares warm caches.
//!
//! The cache is an OCI image manifest whose layers are the cached layer blobs and whose
//! config is a valid OCI image config (`rootfs.diff_ids` of those layers) with one field of
//! rbuild's own, `rbuild.cache.v1`: cache key -> `{layer, empty, created, variant}`
//! (`layer` indexes the manifest's layers). Any registry stores it; `skopeo` and `crane`
//! can copy it. Import reads the manifest and the config only: a layer is downloaded when
//! a step with its key is reached, and then recorded in the local cache. `mode=min` (the
//! default) exports the steps of the images built, `mode=max` every step of the build.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::cache::{LayerInfo, Record};
use crate::image::{Descriptor, media};
use crate::outcome::{Exit, Failure};
use crate::registry::{self, ImageRef, Registry, StoredSource};
use crate::store::{Digest, Store};

/// One `--cache-to` / `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub reference: ImageRef,
    /// `mode=max`: every step, not only the image's.
    pub max: bool,
}

impl CacheSpec {
    /// Parses `type=registry,ref=R[,mode=min|max]`, or a bare reference (buildx's
    /// shorthand).
    pub fn parse(text: &str) -> Result<CacheSpec, String> {
        if !text.contains('=') {
            return Ok(CacheSpec {
                reference: text.parse().map_err(|e| format!("`{text}`: {e}"))?,
                max: false,
            });
        }
        let mut kind = None;
        let mut reference = None;
        let mut max = false;
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not `key=value`"))?;
            match k.trim() {
                "type" => kind = Some(v.to_owned()),
                "ref" => reference = Some(v.to_owned()),
                "mode" => match v {
                    "max" => max = true,
                    "min" => max = false,
                    other => return Err(format!("`mode={other}` is not `min` or `max`")),
                },
                // Accepted for buildx compatibility; rbuild's cache always carries them.
                "oci-mediatypes" | "image-manifest" | "ignore-error" | "compression" => {}
                other => return Err(format!("`{other}` is not an attribute of a registry cache")),
            }
        }
        match kind.as_deref() {
            Some("registry") | None => {}
            Some(other) => {
                return Err(format!(
                    "cache type `{other}` is not supported (only `type=registry`)"
                ));
            }
        }
        let r =
            reference.ok_or_else(|| "a registry cache needs `ref=REGISTRY/REPO:TAG`".to_owned())?;
        Ok(CacheSpec {
            reference: r.parse().map_err(|e| format!("`ref={r}`: {e}"))?,
            max,
        })
    }
}

/// One cached step, as the cache config lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    empty: bool,
    #[serde(default)]
    created: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    variant: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheConfig {
    architecture: String,
    os: String,
    rootfs: RootFs,
    #[serde(default)]
    config: serde_json::Value,
    #[serde(rename = "rbuild.cache.v1", default)]
    entries: BTreeMap<String, Entry>,
}

/// A cached step found in an imported cache.
#[derive(Debug, Clone)]
struct Remote {
    reference: ImageRef,
    layer: Option<(Descriptor, String)>,
    entry: Entry,
}

/// The imported caches.
pub(super) struct RemoteCache {
    registry: Registry,
    runtime: tokio::runtime::Runtime,
    entries: HashMap<String, Remote>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(Exit::Bug, "cannot start the I/O runtime")
                .caused_by(e)
                .into()
        })
}

impl RemoteCache {
    /// Reads the manifests and configs of `specs`. A cache that cannot be read is only
    /// reported (a first build has none yet), as in BuildKit: the messages are returned.
    pub(super) fn import(
        store: &Store,
        specs: &[CacheSpec],
        options: &registry::Options,
    ) -> anyhow::Result<(RemoteCache, Vec<String>)> {
        let registry = Registry::new(options.clone())
            .map_err(|e| e.into_failure("cannot set up the registry client"))?;
        let runtime = runtime()?;
        let mut entries = HashMap::new();
        let mut warnings = Vec::new();
        for spec in specs {
            let r = &spec.reference;
            let res: Result<_, String> = runtime.block_on(async {
                let (bytes, _, _) = registry
                    .fetch_manifest(store, r)
                    .await
                    .map_err(|e| e.to_string())?;
                let m: crate::image::Manifest =
                    serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                registry
                    .fetch_blob(store, r, &m.config)
                    .await
                    .map_err(|e| e.to_string())?;
                let config = store
                    .read_blob(&m.config.digest, 64 << 20)
                    .map_err(|e| e.to_string())?;
                let c: CacheConfig = serde_json::from_slice(&config).map_err(|e| {
                    format!("it is not an rbuild cache (its config does not parse: {e})")
                })?;
                Ok((m, c))
            });
            match res {
                Ok((m, c)) => {
                    for (key, entry) in c.entries {
                        let layer = entry.layer.and_then(|i| {
                            Some((m.layers.get(i)?.clone(), c.rootfs.diff_ids.get(i)?.clone()))
                        });
                        if entry.layer.is_some() && layer.is_none() {
                            continue;
                        }
                        entries.entry(key).or_insert(Remote {
                            reference: r.clone(),
                            layer,
                            entry,
                        });
                    }
                }
                Err(e) => warnings.push(format!(
                    "no cache imported from `{r}` ({e}); the build goes on without it"
                )),
            }
        }
        Ok((
            RemoteCache {
                registry,
                runtime,
                entries,
            },
            warnings,
        ))
    }

    /// The record of `key` from an imported cache, its layer downloaded into the store.
    pub(super) fn get(&self, store: &Store, key: &str) -> Option<Record> {
        let remote = self.entries.get(key)?;
        if remote.entry.empty {
            return Some(Record {
                empty: true,
                snapshot: None,
                layers: Vec::new(),
                created: remote.entry.created,
            });
        }
        let (desc, diff_id) = remote.layer.as_ref()?;
        self.runtime
            .block_on(self.registry.fetch_blob(store, &remote.reference, desc))
            .ok()?;
        Some(Record {
            empty: false,
            snapshot: None,
            layers: vec![LayerInfo {
                variant: remote.entry.variant.clone(),
                digest: desc.digest.to_string(),
                diff_id: diff_id.clone(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            }],
            created: remote.entry.created,
        })
    }
}

/// Writes the steps `records` (key -> record with its layer of `variant` in the store) as a
/// cache image and pushes it to `spec.reference`.
pub(super) fn export(
    store: &Store,
    records: &[(String, Record)],
    variant: &str,
    spec: &CacheSpec,
    options: &registry::Options,
) -> anyhow::Result<()> {
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut entries = BTreeMap::new();
    for (key, r) in records {
        if r.empty {
            entries.insert(
                key.clone(),
                Entry {
                    layer: None,
                    empty: true,
                    created: r.created,
                    variant: String::new(),
                },
            );
            continue;
        }
        let Some(l) = r.layer(variant).or_else(|| r.layers.first()) else {
            continue;
        };
        let Ok(digest) = l.digest.parse::<Digest>() else {
            continue;
        };
        if !store.contains(&digest, Some(l.size)) {
            continue;
        }
        let i = *index.entry(l.digest.clone()).or_insert_with(|| {
            layers.push(Descriptor::new(l.media_type.clone(), digest, l.size));
            diff_ids.push(l.diff_id.clone());
            layers.len() - 1
        });
        entries.insert(
            key.clone(),
            Entry {
                layer: Some(i),
                empty: false,
                created: r.created,
                variant: l.variant.clone(),
            },
        );
    }
    let host = crate::image::Platform::host();
    let config = CacheConfig {
        architecture: host.architecture,
        os: host.os,
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids,
        },
        config: serde_json::json!({}),
        entries,
    };
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| Failure::new(Exit::Bug, e.to_string()))?;
    let fail = |e: crate::store::StoreError| {
        anyhow::Error::new(Failure::new(Exit::Host, "cannot write the build cache").caused_by(e))
    };
    let config_digest = store.put_bytes(None, &config_bytes).map_err(fail)?;
    let manifest = crate::image::Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| Failure::new(Exit::Bug, e.to_string()))?;
    let manifest_digest = store.put_bytes(None, &manifest_bytes).map_err(fail)?;
    let root = Descriptor::new(
        media::OCI_MANIFEST,
        manifest_digest,
        manifest_bytes.len() as u64,
    );
    let registry = Registry::new(options.clone())
        .map_err(|e| e.into_failure("cannot set up the registry client"))?;
    let source = StoredSource {
        store,
        origin: None,
    };
    runtime()?
        .block_on(registry.push(&source, &root, &spec.reference, None))
        .map_err(|e| {
            e.into_failure(format!(
                "cannot export the build cache to `{}`",
                spec.reference
            ))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_specs_parse_like_buildx() {
        let s = CacheSpec::parse("type=registry,ref=127.0.0.1:5000/cache:app,mode=max").unwrap();
        assert!(s.max);
        assert_eq!(s.reference.to_string(), "127.0.0.1:5000/cache:app");
        let s = CacheSpec::parse("127.0.0.1:5000/cache:app").unwrap();
        assert!(!s.max);
        assert!(CacheSpec::parse("type=local,dest=x").is_err());
        assert!(CacheSpec::parse("type=registry").is_err());
        assert!(CacheSpec::parse("type=registry,ref=r/x,mode=all").is_err());
    }
}

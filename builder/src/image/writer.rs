//! The image writer: turns rbuild's own description of an image (config settings, history,
//! layer blobs already in the content store) into an image config, one manifest per
//! platform and, for several platforms, an index, all stored in the content store.
//!
//! The build engine fills one [`ImageSpec`] per platform (usually starting from the base
//! image with [`ImageSpec::from_base`]), adds a [`Layer`] per filesystem step and a history
//! entry per instruction, and calls [`write`]. What it gets back is a [`Written`] root
//! descriptor that [`super::export`] and the registry pusher take as it is.
//!
//! Reproducibility: serialisation is deterministic (fields in a fixed order, maps sorted),
//! and the only clock read is [`Created::from_env`], which honours `SOURCE_DATE_EPOCH`. The
//! same specs and the same [`Created`] give the same config, manifest and index digests.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Descriptor, Index, Manifest, Platform, ResolvedImage, media};
use crate::envvars;
use crate::store::{Digest, RefRecord, Store, StoreError};

/// OCI annotation holding the creation time of an image or index.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// The moment an image says it was created: `SOURCE_DATE_EPOCH` when set, else now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Created {
    /// Seconds since the Unix epoch.
    pub unix: u64,
}

/// `SOURCE_DATE_EPOCH` is not a number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("`{var}` is `{value}`, not a number of seconds since 1970-01-01")]
pub struct BadEpoch {
    pub var: &'static str,
    pub value: String,
}

impl Created {
    /// `SOURCE_DATE_EPOCH` if it is set (and not empty), otherwise the current time.
    pub fn from_env() -> Result<Created, BadEpoch> {
        match std::env::var(envvars::SOURCE_DATE_EPOCH) {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<u64>()
                .map(|unix| Created { unix })
                .map_err(|_| BadEpoch {
                    var: envvars::SOURCE_DATE_EPOCH,
                    value: v,
                }),
            _ => Ok(Created::now()),
        }
    }

    /// The current time (whole seconds).
    pub fn now() -> Created {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Created { unix }
    }

    /// RFC 3339 in UTC, e.g. `2024-05-01T12:00:00Z`, as image configs carry it.
    pub fn rfc3339(self) -> String {
        let days = self.unix / 86_400;
        let secs = self.unix % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 to a (year, month, day) date of the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, for non-negative day counts.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A layer blob that is already in the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Media type (e.g. [`media::OCI_LAYER_GZIP`]), digest and size of the stored blob.
    pub descriptor: Descriptor,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: Digest,
}

/// One entry of the image's history (one Dockerfile instruction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time; `None` means "when the image is written" ([`Created`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The instruction, e.g. `RUN /bin/sh -c make # buildkit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The instruction made no layer (ENV, LABEL, CMD, ...).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl History {
    /// An entry for `created_by`, timed when the image is written.
    pub fn new(created_by: impl Into<String>, empty_layer: bool) -> History {
        History {
            created: None,
            author: None,
            created_by: Some(created_by.into()),
            comment: None,
            empty_layer,
        }
    }
}

/// The execution settings of an image config (`config` in the OCI config; Docker's
/// extensions `Healthcheck`, `Shell` and `OnBuild` included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `80/tcp`, `53/udp`.
    #[serde(
        default,
        skip_serializing_if = "BTreeSet::is_empty",
        with = "set_as_object"
    )]
    pub exposed_ports: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `None`: not set (the runtime default applies); `Some([])`: explicitly empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeSet::is_empty",
        with = "set_as_object"
    )]
    pub volumes: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's `Healthcheck` object, kept as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

impl ExecConfig {
    /// Sets `KEY=VALUE` in `env`, replacing an earlier value of `KEY` in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }
}

/// `{"80/tcp": {}}` objects as sets.
mod set_as_object {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Empty {}

    // The values are `{}` by definition of the format.
    #[allow(clippy::zero_sized_map_values)]
    pub(super) fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&String, Empty> = set.iter().map(|k| (k, Empty {})).collect();
        map.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        let map: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

/// Everything one platform's image is made of. Build it with [`ImageSpec::new`] (an
/// image `FROM scratch`) or [`ImageSpec::from_base`], then change it step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub platform: Platform,
    pub config: ExecConfig,
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    /// One entry per instruction, oldest first. Entries without `empty_layer` must match
    /// `layers` one to one (checked by [`write`]).
    pub history: Vec<History>,
    pub author: Option<String>,
    /// Annotations of this platform's manifest ([`ANNOTATION_CREATED`] is added).
    pub annotations: BTreeMap<String, String>,
}

/// The parts of a base image config [`ImageSpec::from_base`] reads.
#[derive(Debug, Deserialize)]
struct BaseConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    config: Option<ExecConfig>,
    #[serde(default)]
    history: Vec<History>,
}

impl ImageSpec {
    /// An empty image for `platform` (`FROM scratch`).
    pub fn new(platform: Platform) -> ImageSpec {
        ImageSpec {
            platform,
            config: ExecConfig::default(),
            layers: Vec::new(),
            history: Vec::new(),
            author: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Starts from a base image: its platform, settings, layers and history. The base's
    /// blobs must be in the store the result is written to (they are after a pull or
    /// [`crate::registry::image_from`]).
    pub fn from_base(base: &ResolvedImage) -> Result<ImageSpec, WriteError> {
        let parsed: BaseConfig = serde_json::from_slice(base.config.bytes())
            .map_err(|e| WriteError::BaseConfig(e.to_string()))?;
        let diff_ids = base
            .config
            .diff_ids()
            .map_err(|e| WriteError::BaseConfig(e.to_string()))?;
        if diff_ids.len() != base.manifest.layers.len() {
            return Err(WriteError::BaseConfig(format!(
                "its config lists {} diff ids for {} layers",
                diff_ids.len(),
                base.manifest.layers.len()
            )));
        }
        let layers = base
            .manifest
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| Layer {
                descriptor: Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size),
                diff_id,
            })
            .collect();
        // Some images record fewer history entries than layers (hand-made or squashed
        // bases); pad the oldest end, as BuildKit does, so that every layer has one.
        let mut history = parsed.history;
        let made = history.iter().filter(|h| !h.empty_layer).count();
        let layer_count = base.manifest.layers.len();
        if made < layer_count {
            let pad = (0..layer_count - made).map(|_| History {
                created: parsed.created.clone(),
                author: None,
                created_by: None,
                comment: Some("layer without a history entry in the base image".to_owned()),
                empty_layer: false,
            });
            history.splice(0..0, pad);
        }
        Ok(ImageSpec {
            platform: base.config.platform(),
            config: parsed.config.unwrap_or_default(),
            layers,
            history,
            author: parsed.author,
            annotations: BTreeMap::new(),
        })
    }

    /// Appends a layer and its history entry.
    pub fn add_layer(&mut self, layer: Layer, created_by: impl Into<String>) {
        self.layers.push(layer);
        self.history.push(History::new(created_by, false));
    }

    /// Appends a history entry for an instruction that made no layer.
    pub fn add_empty_history(&mut self, created_by: impl Into<String>) {
        self.history.push(History::new(created_by, true));
    }
}

/// Settings of [`write`] that are not per platform.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub created: Created,
    /// Write an index even for a single platform (BuildKit writes a bare manifest then).
    pub force_index: bool,
    /// Annotations of the index ([`ANNOTATION_CREATED`] is added).
    pub index_annotations: BTreeMap<String, String>,
    /// Record the result in the store under this name (e.g. the first `--tag`), so that
    /// `rbuild push NAME ...` finds it and prune keeps it. Give the normalised reference
    /// (`registry::ImageRef`'s `to_string()`, e.g. `docker.io/library/app:1` for `app:1`):
    /// that is the name lookups use. Without a name the blobs are unprotected from
    /// `rbuild prune` once the caller is done.
    pub ref_name: Option<String>,
}

impl WriteOptions {
    pub fn new(created: Created) -> WriteOptions {
        WriteOptions {
            created,
            force_index: false,
            index_annotations: BTreeMap::new(),
            ref_name: None,
        }
    }
}

/// What [`write`] stored.
#[derive(Debug, Clone)]
pub struct Written {
    /// The index, or the manifest when there is one platform and no forced index: what a
    /// tag should point to, and what `--metadata-file`'s `containerimage.digest` names.
    pub root: Descriptor,
    /// One manifest per spec, in order, each with its platform.
    pub manifests: Vec<Descriptor>,
    /// Config digests (image ids), in the same order.
    pub configs: Vec<Digest>,
    /// Every blob the image needs (root, manifests, configs, layers).
    pub blobs: BTreeSet<Digest>,
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no platform to write: the image set is empty")]
    Empty,
    #[error("two images are for the same platform `{0}`")]
    DuplicatePlatform(Box<Platform>),
    #[error(
        "the image for `{platform}` has {layers} layers but {entries} history entries that made one"
    )]
    HistoryMismatch {
        platform: Box<Platform>,
        layers: usize,
        entries: usize,
    },
    #[error(
        "layer `{digest}` of the image for `{platform}` is not in the content store ({size} bytes expected)"
    )]
    LayerMissing {
        platform: Box<Platform>,
        digest: Digest,
        size: u64,
    },
    #[error("media type `{media_type}` of layer `{digest}` is not a layer type")]
    NotALayer { digest: Digest, media_type: String },
    #[error("the base image config cannot be read: {0}")]
    BaseConfig(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The OCI image config as rbuild writes it (field order fixed).
#[derive(Serialize)]
struct ConfigDoc<'a> {
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    architecture: &'a str,
    os: &'a str,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    config: &'a ExecConfig,
    rootfs: RootFs<'a>,
    history: Vec<History>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<&'a Digest>,
}

/// The config bytes of one spec (deterministic).
fn config_bytes(spec: &ImageSpec, created: Created) -> Result<Vec<u8>, WriteError> {
    let made = spec.history.iter().filter(|h| !h.empty_layer).count();
    // Images whose history records no layer at all (some hand-made bases) are accepted as
    // long as nothing was added to them; otherwise history and layers must agree.
    if made != spec.layers.len() && !(made == 0 && spec.history.is_empty()) {
        return Err(WriteError::HistoryMismatch {
            platform: Box::new(spec.platform.clone()),
            layers: spec.layers.len(),
            entries: made,
        });
    }
    let stamp = created.rfc3339();
    let history = spec
        .history
        .iter()
        .map(|h| {
            let mut h = h.clone();
            h.created.get_or_insert_with(|| stamp.clone());
            h
        })
        .collect();
    let p = &spec.platform;
    let doc = ConfigDoc {
        created: stamp.clone(),
        author: spec.author.as_deref(),
        architecture: &p.architecture,
        os: &p.os,
        os_version: p.os_version.as_deref(),
        variant: p.variant.as_deref(),
        config: &spec.config,
        rootfs: RootFs {
            kind: "layers",
            diff_ids: spec.layers.iter().map(|l| &l.diff_id).collect(),
        },
        history,
    };
    serde_json::to_vec(&doc).map_err(|e| WriteError::BaseConfig(e.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("rbuild's own image documents always serialise")
}

/// Writes one image per spec (config and manifest) and, for several platforms (or with
/// [`WriteOptions::force_index`]), an index over them, into `store`; records the result
/// under [`WriteOptions::ref_name`] when given.
pub fn write(
    store: &Store,
    specs: &[ImageSpec],
    options: &WriteOptions,
) -> Result<Written, WriteError> {
    if specs.is_empty() {
        return Err(WriteError::Empty);
    }
    let mut seen = BTreeSet::new();
    for s in specs {
        if !seen.insert(s.platform.normalized()) {
            return Err(WriteError::DuplicatePlatform(Box::new(s.platform.clone())));
        }
    }
    let stamp = options.created.rfc3339();
    let mut blobs = BTreeSet::new();
    let mut manifests = Vec::new();
    let mut configs = Vec::new();
    for spec in specs {
        for l in &spec.layers {
            if l.descriptor.layer_compression().is_none() {
                return Err(WriteError::NotALayer {
                    digest: l.descriptor.digest.clone(),
                    media_type: l.descriptor.media_type.clone(),
                });
            }
            if !store.contains(&l.descriptor.digest, Some(l.descriptor.size)) {
                return Err(WriteError::LayerMissing {
                    platform: Box::new(spec.platform.clone()),
                    digest: l.descriptor.digest.clone(),
                    size: l.descriptor.size,
                });
            }
            blobs.insert(l.descriptor.digest.clone());
        }
        let config = config_bytes(spec, options.created)?;
        let config_digest = store.put_bytes(None, &config)?;
        blobs.insert(config_digest.clone());
        let mut annotations = spec.annotations.clone();
        annotations
            .entry(ANNOTATION_CREATED.to_owned())
            .or_insert_with(|| stamp.clone());
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: Descriptor::new(
                media::OCI_CONFIG,
                config_digest.clone(),
                config.len() as u64,
            ),
            layers: spec
                .layers
                .iter()
                .map(|l| {
                    let mut d = l.descriptor.clone();
                    d.platform = None;
                    d
                })
                .collect(),
            subject: None,
            annotations,
        };
        let bytes = to_json(&manifest);
        let digest = store.put_bytes(None, &bytes)?;
        blobs.insert(digest.clone());
        let mut d = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
        d.platform = Some(spec.platform.clone());
        manifests.push(d);
        configs.push(config_digest);
    }
    let root = if specs.len() > 1 || options.force_index {
        let mut annotations = options.index_annotations.clone();
        annotations
            .entry(ANNOTATION_CREATED.to_owned())
            .or_insert_with(|| stamp.clone());
        let index = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_owned()),
            artifact_type: None,
            manifests: manifests.clone(),
            subject: None,
            annotations,
        };
        let bytes = to_json(&index);
        let digest = store.put_bytes(None, &bytes)?;
        blobs.insert(digest.clone());
        Descriptor::new(media::OCI_INDEX, digest, bytes.len() as u64)
    } else {
        let mut d = manifests[0].clone();
        d.platform = None;
        d
    };
    if let Some(name) = &options.ref_name {
        store.set_ref(&RefRecord {
            name: name.clone(),
            digest: root.digest.clone(),
            media_type: root.media_type.clone(),
            size: root.size,
            source: None,
            blobs: blobs.clone(),
        })?;
    }
    Ok(Written {
        root,
        manifests,
        configs,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Document, ImageConfig, read_document};

    fn layer(store: &Store, content: &[u8]) -> Layer {
        let digest = store.put_bytes(None, content).unwrap();
        Layer {
            descriptor: Descriptor::new(media::OCI_LAYER, digest.clone(), content.len() as u64),
            diff_id: digest,
        }
    }

    fn spec(store: &Store, platform: &str) -> ImageSpec {
        let mut s = ImageSpec::new(platform.parse().unwrap());
        s.add_layer(layer(store, platform.as_bytes()), "COPY . /app # buildkit");
        s.config.set_env("PATH", "/bin");
        s.config.set_env("A", "1");
        s.config.set_env("PATH", "/usr/bin:/bin");
        s.config.cmd = Some(vec!["/app/run".into()]);
        s.config
            .labels
            .insert("org.example.team".into(), "build".into());
        s.config.exposed_ports.insert("8080/tcp".into());
        s.add_empty_history("CMD [\"/app/run\"]");
        s
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(Created { unix: 0 }.rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Created {
                unix: 1_700_000_000
            }
            .rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            Created { unix: 951_782_400 }.rfc3339(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn writes_a_config_that_oci_spec_reads_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = spec(&store, "linux/arm64");
        let opts = WriteOptions::new(Created {
            unix: 1_700_000_000,
        });
        let a = write(&store, std::slice::from_ref(&s), &opts).unwrap();
        let b = write(&store, std::slice::from_ref(&s), &opts).unwrap();
        assert_eq!(a.root, b.root);
        assert_eq!(a.root.media_type, media::OCI_MANIFEST);
        let later = write(
            &store,
            std::slice::from_ref(&s),
            &WriteOptions::new(Created {
                unix: 1_700_000_001,
            }),
        )
        .unwrap();
        assert_ne!(later.root.digest, a.root.digest);

        let bytes = read_document(&store, &a.configs[0]).unwrap();
        let config = ImageConfig::parse(bytes.clone()).unwrap();
        assert_eq!(config.platform().to_string(), "linux/arm64");
        assert_eq!(config.env(), ["PATH=/usr/bin:/bin", "A=1"]);
        assert_eq!(config.cmd(), ["/app/run"]);
        assert_eq!(config.labels()["org.example.team"], "build");
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            json["config"]["ExposedPorts"]["8080/tcp"],
            serde_json::json!({})
        );
        assert_eq!(json["history"][1]["empty_layer"], true);
        assert_eq!(json["history"][0]["created"], "2023-11-14T22:13:20Z");
        assert!(json["history"][0].get("empty_layer").is_none());

        let (doc, _) =
            Document::parse(&read_document(&store, &a.root.digest).unwrap(), None).unwrap();
        let Document::Manifest(m) = doc else {
            panic!("a single platform writes a manifest")
        };
        assert_eq!(m.annotations[ANNOTATION_CREATED], "2023-11-14T22:13:20Z");
        assert_eq!(m.layers, [s.layers[0].descriptor.clone()]);
    }

    #[test]
    fn several_platforms_make_an_index_recorded_as_a_ref() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let specs = [spec(&store, "linux/amd64"), spec(&store, "linux/arm64")];
        let mut opts = WriteOptions::new(Created { unix: 0 });
        opts.ref_name = Some("localhost/app:1".into());
        let w = write(&store, &specs, &opts).unwrap();
        assert_eq!(w.root.media_type, media::OCI_INDEX);
        let (doc, _) =
            Document::parse(&read_document(&store, &w.root.digest).unwrap(), None).unwrap();
        let Document::Index(index) = doc else {
            panic!("two platforms write an index")
        };
        assert_eq!(index.manifests, w.manifests);
        assert_eq!(
            index.platforms(),
            [
                "linux/amd64".parse().unwrap(),
                "linux/arm64".parse().unwrap()
            ]
        );
        let record = store.get_ref("localhost/app:1").unwrap().unwrap();
        assert_eq!(record.digest, w.root.digest);
        assert_eq!(record.blobs, w.blobs);
        assert_eq!(w.blobs.len(), 1 + 2 * 3);
    }

    #[test]
    fn refuses_missing_layers_and_inconsistent_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let opts = WriteOptions::new(Created { unix: 0 });
        let mut s = spec(&store, "linux/amd64");
        s.layers[0].descriptor.size += 1;
        assert!(matches!(
            write(&store, &[s], &opts),
            Err(WriteError::LayerMissing { .. })
        ));
        let mut s = spec(&store, "linux/amd64");
        s.add_empty_history("ENV A=2");
        s.history.push(History::new("RUN true", false));
        assert!(matches!(
            write(&store, &[s], &opts),
            Err(WriteError::HistoryMismatch {
                layers: 1,
                entries: 2,
                ..
            })
        ));
        let s = spec(&store, "linux/amd64");
        assert!(matches!(
            write(&store, &[s.clone(), s], &opts),
            Err(WriteError::DuplicatePlatform(_))
        ));
        assert!(matches!(write(&store, &[], &opts), Err(WriteError::Empty)));
    }
}

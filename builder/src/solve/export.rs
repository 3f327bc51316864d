//! The end of a build: every layer the images need written as a blob (inline during the
//! steps, or now from their snapshots), the images assembled ([`crate::image::writer`]),
//! and the outputs made: names in the store (`--tag`), registries (`--push`,
//! `type=registry`), OCI layouts and archives, Docker archives, and the final file system
//! (`type=local|tar`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::cache::LayerInfo;
use super::stage::{LayerRef, State};
use super::{Built, BuiltImage, Engine};
use crate::image::export::{self as image_export, ExportOptions, Output};
use crate::image::writer::{self, Created, ImageSpec, Layer, WriteOptions};
use crate::image::{Descriptor, Platform};
use crate::layer::compress;
use crate::outcome::{Exit, Failure};
use crate::progress::{Event, Outcome, Progress};
use crate::registry::{self, ImageRef, Registry, StoredSource};
use crate::sandbox::spec::{DiffSpec, LayerSpec, TarJob};
use crate::sandbox::{self, rooted::Root};
use crate::store::{Algorithm, Digest, RefRecord, Store};

impl Engine<'_> {
    /// Writes the layer blobs the final states still lack, and assembles the images.
    pub(super) fn finish(&self, finals: &[Arc<State>]) -> anyhow::Result<Vec<BuiltImage>> {
        let variant = self.variant();
        let mut todo: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut known: HashMap<String, LayerInfo> = HashMap::new();
        for st in finals {
            for l in &st.layers {
                let LayerRef::Step {
                    key,
                    snapshot,
                    layer,
                } = l
                else {
                    continue;
                };
                let info = layer.clone().or_else(|| {
                    self.records
                        .get(key)
                        .and_then(|r| r.layer(&variant).or_else(|| r.layers.first()).cloned())
                });
                if let Some(info) = info
                    && info
                        .digest
                        .parse::<Digest>()
                        .is_ok_and(|d| self.env.store.contains(&d, Some(info.size)))
                {
                    known.insert(key.clone(), info);
                    continue;
                }
                if seen.insert(key.clone()) {
                    let snap = snapshot.clone().ok_or_else(|| {
                        Failure::new(
                            Exit::Bug,
                            format!("step `{key}` has neither a snapshot nor a layer"),
                        )
                        .hint("run the build again with `--no-cache`")
                    })?;
                    todo.push((key.clone(), snap));
                }
            }
        }
        if !todo.is_empty() {
            let written = self.write_layers(&todo)?;
            known.extend(written);
        }
        let mut images = Vec::new();
        for st in finals {
            let mut layers = Vec::new();
            for l in &st.layers {
                layers.push(match l {
                    LayerRef::Blob {
                        descriptor,
                        diff_id,
                    } => Layer {
                        descriptor: Descriptor::new(
                            descriptor.media_type.clone(),
                            descriptor.digest.clone(),
                            descriptor.size,
                        ),
                        diff_id: diff_id.clone(),
                    },
                    LayerRef::Step { key, .. } => {
                        let info = known.get(key).ok_or_else(|| {
                            Failure::new(
                                Exit::Bug,
                                format!("the layer of step `{key}` was not written"),
                            )
                        })?;
                        let digest: Digest = info.digest.parse().map_err(|e| {
                            Failure::new(Exit::Bug, "a layer digest is malformed").caused_by(e)
                        })?;
                        let diff_id: Digest = info.diff_id.parse().map_err(|e| {
                            Failure::new(Exit::Bug, "a diff id is malformed").caused_by(e)
                        })?;
                        Layer {
                            descriptor: Descriptor::new(info.media_type.clone(), digest, info.size),
                            diff_id,
                        }
                    }
                });
            }
            let mut config = st.config.clone();
            for (k, v) in &self.req.labels {
                config.labels.insert(k.clone(), v.clone());
            }
            let spec = ImageSpec {
                platform: st.platform.clone(),
                config,
                layers,
                history: st.history.clone(),
                author: st.author.clone(),
                annotations: std::collections::BTreeMap::new(),
            };
            images.push(BuiltImage {
                spec,
                layers: st.layers.iter().map(|l| self.layer_spec(l)).collect(),
            });
        }
        Ok(images)
    }

    /// Writes the layers of kept snapshots (`(key, snapshot)`), `threads` at a time.
    pub(super) fn write_layers(
        &self,
        todo: &[(String, String)],
    ) -> anyhow::Result<HashMap<String, LayerInfo>> {
        let queue = Mutex::new(todo.iter());
        let done: Mutex<HashMap<String, LayerInfo>> = Mutex::new(HashMap::new());
        let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let workers = self.threads.min(todo.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let next = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .next();
                        let Some((key, snapshot)) = next else { break };
                        match self.write_layer(key, snapshot) {
                            Ok(info) => {
                                done.lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .insert(key.clone(), info);
                            }
                            Err(e) => {
                                error
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .get_or_insert(e);
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(e);
        }
        Ok(done
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn write_layer(&self, key: &str, snapshot: &str) -> anyhow::Result<LayerInfo> {
        let started = Instant::now();
        let id = self.next_step();
        self.env.progress.send(Event::StepStarted {
            step: id,
            name: format!("[internal] writing layer {}", &key[..12]),
            platform: None,
            line: None,
        });
        let store = self.env.store;
        let compression = self.req.compression;
        let threads = self.threads;
        let job = TarJob {
            state_dir: self.state_dir.clone(),
            ids: self.ids.clone(),
            layers: vec![LayerSpec::snapshot(snapshot)],
            diff: DiffSpec {
                clamp_mtime: self.req.epoch,
            },
        };
        let slot: Mutex<Option<(crate::store::BlobWriter, compress::Compressed)>> =
            Mutex::new(None);
        let res = {
            let slot = &slot;
            self.env.sessions.tar_layers(
                &job,
                Box::new(move |pipe| {
                    let w = store
                        .writer(Algorithm::Sha256)
                        .map_err(std::io::Error::other)?;
                    let (w, c) = compress::compress_into(pipe, w, compression, threads, |w| {
                        (w.digest().to_string(), w.size())
                    })?;
                    *slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((w, c));
                    Ok(())
                }),
            )
        };
        let finish = |outcome| {
            self.env.progress.send(Event::StepFinished {
                step: id,
                outcome,
                seconds: started.elapsed().as_secs_f64(),
            });
        };
        if let Err(e) = res {
            finish(Outcome::Error);
            return Err(
                Failure::new(Exit::Host, "cannot write a layer of the image")
                    .caused_by(e)
                    .into(),
            );
        }
        let (w, c) = slot
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or_else(|| Failure::new(Exit::Bug, "the layer stream was not read"))?;
        let digest: Digest = c
            .digest
            .parse()
            .map_err(|e| Failure::new(Exit::Bug, "a layer digest is malformed").caused_by(e))?;
        w.commit(Some(&digest), Some(c.size))
            .map_err(|e| Failure::new(Exit::Host, "cannot store a layer").caused_by(e))?;
        let info = LayerInfo {
            variant: self.variant(),
            digest: c.digest,
            diff_id: c.diff_id,
            size: c.size,
            media_type: c.media_type.to_owned(),
        };
        let _ = self.records.add_layer(key, info.clone());
        finish(Outcome::Done);
        Ok(info)
    }
}

/// What to do with the built images.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// `--tag`s, normalised.
    pub tags: Vec<ImageRef>,
    /// `--push`.
    pub push: bool,
    pub outputs: Vec<Output>,
    pub created: Created,
    /// Modification time of archive entries (`SOURCE_DATE_EPOCH`, else 0).
    pub mtime: u64,
    pub registry: registry::Options,
}

/// What was exported.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The index (several platforms) or the manifest (one).
    pub root: Descriptor,
    /// One manifest per platform, each with its platform.
    pub manifests: Vec<Descriptor>,
    /// Config digests (image ids), one per platform.
    pub configs: Vec<Digest>,
    /// Names the image was given (tags, pushed references).
    pub names: Vec<String>,
}

/// Writes the images into the store and makes every requested output.
pub fn export(
    store: &Store,
    built: &Built,
    req: &ExportRequest,
    progress: &Progress,
) -> anyhow::Result<Exported> {
    let specs: Vec<ImageSpec> = built.images.iter().map(|i| i.spec.clone()).collect();
    let mut options = WriteOptions::new(built.created);
    options.ref_name = req.tags.first().map(ToString::to_string);
    let written = writer::write(store, &specs, &options)
        .map_err(|e| Failure::new(Exit::Input, "cannot write the image").caused_by(e))?;
    let mut names: Vec<String> = req.tags.iter().map(ToString::to_string).collect();
    name_in_store(store, &written, &names)?;
    let source = StoredSource {
        store,
        origin: None,
    };
    let mut push: Vec<ImageRef> = if req.push {
        req.tags.clone()
    } else {
        Vec::new()
    };
    for o in &req.outputs {
        match o {
            Output::Registry { name } => match name {
                Some(n) => {
                    for part in n.split(',').filter(|p| !p.is_empty()) {
                        push.push(parse_ref(part)?);
                    }
                }
                None => push.extend(req.tags.iter().cloned()),
            },
            Output::Image { name } => {
                if let Some(n) = name {
                    let extra: Vec<String> = n
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| parse_ref(p).map(|r| r.to_string()))
                        .collect::<Result<_, _>>()?;
                    name_in_store(store, &written, &extra)?;
                    names.extend(extra);
                }
            }
            Output::Oci { dest, tar, name } => {
                let full = name.clone().or_else(|| names.first().cloned());
                let opts = ExportOptions {
                    ref_name: full
                        .as_deref()
                        .and_then(|n| n.parse::<ImageRef>().ok())
                        .and_then(|r| r.tag().map(str::to_owned)),
                    names: full.into_iter().collect(),
                    platform: None,
                    mtime: req.mtime,
                };
                let res = if *tar {
                    image_export::oci_tar(&source, &written.root, dest, &opts)
                } else {
                    image_export::oci_dir(&source, &written.root, dest, &opts)
                };
                res.map_err(|e| export_failure(dest, e))?;
            }
            Output::Docker { dest, name } => {
                let platform = pick_platform(&specs);
                let opts = ExportOptions {
                    names: name
                        .clone()
                        .or_else(|| names.first().cloned())
                        .into_iter()
                        .collect(),
                    ref_name: None,
                    platform: Some(platform),
                    mtime: req.mtime,
                };
                image_export::docker_tar(&source, &written.root, dest, &opts)
                    .map_err(|e| export_failure(dest, e))?;
            }
            Output::Local { dest } => export_files(built, dest, false)?,
            Output::Tar { dest } => export_files(built, dest, true)?,
        }
    }
    if !push.is_empty() {
        let mut seen = BTreeSet::new();
        push.retain(|r| seen.insert(r.to_string()));
        push_all(
            store,
            &written.root,
            &push,
            &req.registry,
            progress,
            built.last_step,
        )?;
        for r in &push {
            let n = r.to_string();
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    Ok(Exported {
        root: written.root,
        manifests: written.manifests,
        configs: written.configs,
        names,
    })
}

fn parse_ref(s: &str) -> anyhow::Result<ImageRef> {
    s.parse().map_err(|e| {
        Failure::new(Exit::Usage, format!("`{s}` is not an image name"))
            .caused_by(e)
            .into()
    })
}

/// Records the written image under more names.
fn name_in_store(store: &Store, written: &writer::Written, names: &[String]) -> anyhow::Result<()> {
    for n in names {
        store
            .set_ref(&RefRecord {
                name: n.clone(),
                digest: written.root.digest.clone(),
                media_type: written.root.media_type.clone(),
                size: written.root.size,
                source: None,
                blobs: written.blobs.clone(),
            })
            .map_err(|e| {
                Failure::new(Exit::Host, format!("cannot record the image as `{n}`")).caused_by(e)
            })?;
    }
    Ok(())
}

/// The platform a one-image output takes: the host's when built, else the first.
fn pick_platform(specs: &[ImageSpec]) -> Platform {
    let host = Platform::host();
    specs
        .iter()
        .map(|s| s.platform.clone())
        .find(|p| p.matches(&host))
        .or_else(|| specs.first().map(|s| s.platform.clone()))
        .unwrap_or(host)
}

fn export_failure(dest: &Path, e: image_export::ExportError) -> anyhow::Error {
    let mut f = Failure::new(Exit::Input, format!("cannot write `{}`", dest.display()));
    if let image_export::ExportError::Io { .. } = &e {
        f = f.hint("check that the destination's directory exists and is writable");
    }
    f.caused_by(e).into()
}

fn push_all(
    store: &Store,
    root: &Descriptor,
    targets: &[ImageRef],
    options: &registry::Options,
    progress: &Progress,
    last_step: u32,
) -> anyhow::Result<()> {
    let registry = Registry::new(options.clone())
        .map_err(|e| e.into_failure("cannot set up the registry client"))?;
    let source = StoredSource {
        store,
        origin: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Bug, "cannot start the I/O runtime").caused_by(e))?;
    let results = runtime.block_on(async {
        let futures = targets.iter().enumerate().map(|(i, t)| {
            let (registry, source) = (&registry, &source);
            async move {
                let id = last_step + 1 + u32::try_from(i).unwrap_or(0);
                progress.send(Event::StepStarted {
                    step: id,
                    name: format!("[internal] pushing {t}"),
                    platform: None,
                    line: None,
                });
                let started = Instant::now();
                let r = registry.push(source, root, t, None).await;
                progress.send(Event::StepFinished {
                    step: id,
                    outcome: if r.is_ok() {
                        Outcome::Done
                    } else {
                        Outcome::Error
                    },
                    seconds: started.elapsed().as_secs_f64(),
                });
                (t, r)
            }
        });
        futures_util::future::join_all(futures).await
    });
    for (t, r) in results {
        r.map_err(|e| e.into_failure(format!("cannot push the image to `{t}`")))?;
    }
    Ok(())
}

/// `type=local` (a directory) or `type=tar` (a file): the final file system of each
/// platform (in `<os>_<arch>[_<variant>]/` when there are several), owned by the user.
fn export_files(built: &Built, dest: &Path, as_tar: bool) -> anyhow::Result<()> {
    let several = built.images.len() > 1;
    if as_tar && several {
        return Err(Failure::new(
            Exit::Usage,
            "`--output type=tar` holds one platform's file system",
        )
        .hint("build one `--platform`, or use `type=local` (one directory per platform)")
        .into());
    }
    for img in &built.images {
        let p = &img.spec.platform;
        let job = TarJob {
            state_dir: built.state_dir.clone(),
            ids: built.ids.clone(),
            layers: img.layers.clone(),
            diff: DiffSpec::default(),
        };
        let fail = |e: &dyn std::fmt::Display| {
            Failure::new(Exit::Input, format!("cannot write `{}`", dest.display()))
                .caused_by(std::io::Error::other(e.to_string()))
        };
        if as_tar {
            let tmp = tempfile::NamedTempFile::new_in(
                dest.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
            .map_err(|e| fail(&e))?;
            let file = tmp.reopen().map_err(|e| fail(&e))?;
            sandbox::tar_layers(
                &job,
                Box::new(move |mut pipe| {
                    let mut out = std::io::BufWriter::new(file);
                    std::io::copy(&mut pipe, &mut out)?;
                    std::io::Write::flush(&mut out)
                }),
            )
            .map_err(|e| fail(&e))?;
            tmp.persist(dest).map_err(|e| fail(&e.error))?;
        } else {
            let dir = if several {
                let mut name = format!("{}_{}", p.os, p.architecture);
                if let Some(v) = &p.variant {
                    name.push('_');
                    name.push_str(v);
                }
                dest.join(name)
            } else {
                dest.to_path_buf()
            };
            std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
            let root = Root::open(&dir).map_err(|e| fail(&e))?;
            sandbox::tar_layers(
                &job,
                Box::new(move |pipe| {
                    crate::layer::extract_tar(pipe, &root)
                        .map(|_| ())
                        .map_err(std::io::Error::other)
                }),
            )
            .map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

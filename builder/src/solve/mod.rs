//! The build engine: a Dockerfile and its context in, one image per platform out.
//!
//! It owns turning the frontend's stages into executed steps: planning every requested
//! platform ([`crate::dockerfile::Dockerfile::plan`]), resolving base images (the local
//! store first, the registry when missing or with `--pull`), then running the stages
//! each platform needs as a graph: independent stages and the platforms of a
//! multi-platform build run concurrently, sandbox steps bounded by the machine's cores,
//! and the first failing step stops the build and is reported (Dockerfile line,
//! diagnostics). Each `RUN`, `COPY`, `ADD` and `WORKDIR` is one sandbox
//! ([`crate::sandbox::run_step`]); every other instruction only edits the image config.
//!
//! Results are content addressed ([`cache`]): a step whose key has a record is not run
//! again; a step's changes are kept as an overlay snapshot (the lower directory of the
//! next step, so nothing is re-extracted) and written as a layer blob only when an image
//! needs it: inline while the step runs for stages that end up in the image, later from
//! the snapshot for the others (`sandbox::tar_layers`). Identical steps requested twice
//! at once (two platforms of a `FROM --platform=$BUILDPLATFORM` stage) run once.
//!
//! Must not: create namespaces or mounts (that is `sandbox`), talk the registry protocol
//! (that is `registry`), or render diagnostics (that is `diagnose`): it reports through a
//! [`Collector`] and [`Progress`] events, and fails with classified errors.

pub mod cache;
pub mod context;
mod download;
mod export;
mod remote;
mod stage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

pub use export::{ExportRequest, Exported, export};
pub use remote::CacheSpec;

use crate::diagnose::{Collector, Diagnosed, Diagnostic, Severity};
use crate::dockerfile::{self, Base, BuildOptions, Dockerfile, Plan};
use crate::image::writer::{Created, ImageSpec};
use crate::image::{self, Platform, ResolvedImage};
use crate::layer::compress::Compression;
use crate::outcome::{Exit, Failure};
use crate::progress::{Event, Outcome, Progress};
use crate::registry::{self, ImageRef, Platforms, Registry, StoredSource};
use crate::sandbox::spec::{IdMapping, LayerSpec, Network};
use crate::sandbox::{self, HostFacts};
use crate::store::Store;

use cache::Records;
use context::Context;
use stage::State;

/// A named build context (`--build-context NAME=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory: `COPY --from=NAME`, `RUN --mount=from=NAME` read it like the context.
    Dir(PathBuf),
    /// An image (`oci-layout://PATH[:TAG]` or `docker-image://REF`): replaces `FROM NAME`
    /// and `--from=NAME`.
    Image(String),
}

/// Where a secret's value comes from (`--secret id=ID,src=PATH|env=VAR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// The value, read from the variable when the command line was checked.
    Value(String),
}

/// What to build: `rbuild build`'s flags, checked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The context directory (absolute).
    pub context: PathBuf,
    /// The Dockerfile on disk (its `.dockerignore` sits beside it) and its bytes.
    pub dockerfile: PathBuf,
    pub dockerfile_bytes: Vec<u8>,
    /// The Dockerfile's name in diagnostics, as the user gave it.
    pub dockerfile_name: String,
    /// Target platforms (at least one).
    pub platforms: Vec<Platform>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `--label`s of the final image.
    pub labels: BTreeMap<String, String>,
    pub named_contexts: BTreeMap<String, NamedContext>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// Network of `RUN` steps without `--network`.
    pub network: Network,
    pub no_cache: bool,
    /// Resolve base images at the registry even when the store has them.
    pub pull: bool,
    /// The cache directory (content store, sandbox state, build records).
    pub cache_dir: PathBuf,
    pub registry: registry::Options,
    /// `SOURCE_DATE_EPOCH`: layer times are clamped to it.
    pub epoch: Option<u64>,
    pub created: Created,
    pub compression: Compression,
    /// `--cache-from type=registry,ref=...`: caches to import.
    pub cache_from: Vec<CacheSpec>,
    /// `--cache-to type=registry,ref=...`: where to export the cache.
    pub cache_to: Vec<CacheSpec>,
}

/// One platform's image, ready to export.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Config, history and layers (every layer blob is in the store).
    pub spec: ImageSpec,
    /// The layers as sandbox snapshots (for the merged file system of
    /// `--output type=local|tar`).
    pub layers: Vec<LayerSpec>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub images: Vec<BuiltImage>,
    /// The id mapping snapshots were made with, and the sandbox state directory.
    pub ids: IdMapping,
    pub state_dir: PathBuf,
    /// The images' creation time: `SOURCE_DATE_EPOCH`, else the newest of their steps
    /// (cached steps keep the time they ran, so an unchanged rebuild is the same image).
    pub created: Created,
    pub executed: u32,
    pub cached: u32,
    /// The last progress step number used (exports number theirs after it).
    pub last_step: u32,
}

/// The outside world of a build.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    pub store: &'a Store,
    pub progress: &'a Progress,
    pub diagnostics: &'a Collector,
    /// The build's sandbox sessions (one user namespace per id mapping for all steps).
    pub sessions: &'a crate::sandbox::Sessions,
}

/// A counting semaphore: sandbox steps and layer compression at once.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = self
                .cv
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self
            .0
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *free += 1;
        self.0.cv.notify_one();
    }
}

/// A result computed once and waited for by everyone else who needs it.
type Shared<T> = Arc<(Mutex<Option<T>>, Condvar)>;

fn wait_shared<T: Clone>(s: &Shared<T>) -> T {
    let mut v =
        s.0.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if let Some(x) = v.as_ref() {
            return x.clone();
        }
        v =
            s.1.wait(v)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

fn set_shared<T>(s: &Shared<T>, value: T) {
    *s.0.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    s.1.notify_all();
}

/// One platform's plan.
#[derive(Debug)]
struct PlatformPlan {
    platform: Platform,
    opts: BuildOptions,
    plan: Plan,
    /// Stages whose layers end up in the image (the target and its `FROM` ancestors).
    exported: BTreeSet<usize>,
}

/// Everything a build shares between its threads.
struct Engine<'a> {
    req: &'a Request,
    env: Env<'a>,
    df: Dockerfile,
    plans: Vec<PlatformPlan>,
    context: Context,
    named_dirs: HashMap<String, Context>,
    records: Records,
    state_dir: PathBuf,
    ids: IdMapping,
    tag: String,
    host: Mutex<HashMap<String, Arc<HostFacts>>>,
    /// Base and source images by (reference, platform).
    images: HashMap<(String, String), Arc<ResolvedImage>>,
    /// The `FROM` (or `--from`) line that first names each image.
    image_lines: HashMap<String, dockerfile::Span>,
    slots: Slots,
    threads: usize,
    failed: AtomicBool,
    first_error: Mutex<Option<anyhow::Error>>,
    /// Steps being computed, by cache key (identical steps of two platforms run once).
    inflight: Mutex<HashMap<String, Shared<Result<stage::StepDone, String>>>>,
    step_counter: AtomicU32,
    /// Imported registry caches.
    remote: Option<remote::RemoteCache>,
    /// Every step key the build used (for `--cache-to ...,mode=max`).
    touched: Mutex<Vec<String>>,
    executed: AtomicU32,
    cached: AtomicU32,
    multi_platform: bool,
}

/// A build failure that is not this thread's own (another step failed first).
#[derive(Debug, thiserror::Error)]
#[error("the build was stopped")]
struct Canceled;

/// Runs the build: plans, resolves base images, executes every needed stage for every
/// platform, and writes the layers the images need. Diagnostics go to `env.diagnostics`
/// (the failure's own diagnostic travels in the error as a [`Diagnosed`]).
pub fn build(req: &Request, env: Env<'_>) -> anyhow::Result<Built> {
    let started = Instant::now();
    let df = dockerfile::parse(&req.dockerfile_bytes, &req.dockerfile_name);
    let mut diags = df.diagnostics.clone();
    df.apply_check_directive(&mut diags);
    report_frontend(env.diagnostics, diags)?;
    if df.stages.is_empty() {
        return Err(Failure::new(
            Exit::Input,
            format!("`{}` has no `FROM` instruction", req.dockerfile_name),
        )
        .hint("start the Dockerfile with `FROM <image>`")
        .into());
    }

    let build_platform = dockerfile::Platform::host();
    let mut plans = Vec::new();
    for p in &req.platforms {
        let target_platform = dockerfile::Platform::parse(&p.to_string())
            .map_err(|e| Failure::new(Exit::Usage, e))?;
        let opts = BuildOptions {
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            target_platform,
            build_platform: build_platform.clone(),
        };
        let plan = df.plan(&opts);
        let mut d = plan.diagnostics.clone();
        df.apply_check_directive(&mut d);
        report_frontend(env.diagnostics, d)?;
        let mut exported = BTreeSet::new();
        let mut s = plan.target;
        loop {
            exported.insert(s);
            match plan.stages.get(s).map(|st| &st.base) {
                Some(Base::Stage(b)) if !exported.contains(b) => s = *b,
                _ => break,
            }
        }
        plans.push(PlatformPlan {
            platform: p.clone(),
            opts,
            plan,
            exported,
        });
    }

    let context = Context::open(&req.context, Some(&req.dockerfile)).map_err(|e| {
        Failure::new(
            Exit::Input,
            "cannot read the build context's `.dockerignore`",
        )
        .caused_by(e)
    })?;
    let mut named_dirs = HashMap::new();
    for (name, c) in &req.named_contexts {
        if let NamedContext::Dir(dir) = c {
            let ctx = Context::open(dir, None).map_err(|e| {
                Failure::new(
                    Exit::Input,
                    format!(
                        "cannot read the build context `{name}` (`{}`)",
                        dir.display()
                    ),
                )
                .caused_by(e)
            })?;
            named_dirs.insert(name.clone(), ctx);
        }
    }
    let records = Records::open(&req.cache_dir).map_err(|e| {
        Failure::new(
            Exit::Host,
            format!(
                "cannot create the build cache in `{}`",
                req.cache_dir.display()
            ),
        )
        .hint("choose a writable directory with `--cache-dir DIR`")
        .caused_by(e)
    })?;
    let host_ids = sandbox::spec::IdFacts::gather();
    let (ids, id_facts) = sandbox::spec::choose_ids(&host_ids)
        .map_err(|e| Failure::new(Exit::Host, e.message.clone()).hint(e.hint.clone()))?;
    for f in id_facts {
        env.diagnostics.push(f.to_diagnostic());
    }
    let tag = ids.tag();
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);

    let mut engine = Engine {
        req,
        env,
        df,
        plans,
        context,
        named_dirs,
        records,
        state_dir: req.cache_dir.join("sandbox"),
        ids,
        tag,
        host: Mutex::new(HashMap::new()),
        images: HashMap::new(),
        image_lines: HashMap::new(),
        slots: Slots::new(threads),
        threads,
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
        inflight: Mutex::new(HashMap::new()),
        step_counter: AtomicU32::new(0),
        remote: None,
        touched: Mutex::new(Vec::new()),
        executed: AtomicU32::new(0),
        cached: AtomicU32::new(0),
        multi_platform: req.platforms.len() > 1,
    };
    let (images, lines) = engine.resolve_images()?;
    engine.images = images;
    engine.image_lines = lines;
    if !req.cache_from.is_empty() && !req.no_cache {
        engine.remote = Some(engine.import_cache()?);
    }
    // Base layers are scanned (once per layer) while the steps run.
    let (finals, scans) = std::thread::scope(|s| {
        let scanner = s.spawn(|| engine.scan_bases());
        let finals = engine.run_graph();
        (finals, scanner.join().unwrap_or_default())
    });
    if !scans.is_empty() {
        // The scan names on the `FROM` line what the sandbox's extraction reported on
        // the step that unpacked the layer.
        let ids: Vec<String> = scans.iter().map(|d| d.id.clone()).collect();
        for d in env.diagnostics.take() {
            if !ids.contains(&d.id) {
                env.diagnostics.push(d);
            }
        }
        for d in scans {
            env.diagnostics.push(d);
        }
    }
    let finals = finals?;
    let images = engine.finish(&finals)?;
    for spec in &req.cache_to {
        engine.export_cache(spec, &finals)?;
    }
    engine.records.flush().map_err(|e| {
        Failure::new(Exit::Host, "cannot write the build cache record").caused_by(e)
    })?;
    let created = match req.epoch {
        Some(unix) => Created { unix },
        None => match finals.iter().map(|s| s.latest).max() {
            Some(t) if t > 0 => Created { unix: t },
            _ => req.created,
        },
    };
    let executed = engine.executed.load(Ordering::Relaxed);
    let cached = engine.cached.load(Ordering::Relaxed);
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        executed,
        cached,
        "build: done"
    );
    Ok(Built {
        images,
        ids: engine.ids.clone(),
        state_dir: engine.state_dir.clone(),
        created,
        executed,
        cached,
        last_step: engine.step_counter.load(Ordering::Relaxed),
    })
}

/// Dockerfile diagnostics: warnings are collected, errors stop the build.
fn report_frontend(c: &Collector, diags: Vec<Diagnostic>) -> anyhow::Result<()> {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let file = diags.iter().find_map(|d| d.file.clone());
    for d in diags {
        c.push(d);
    }
    if errors > 0 {
        let plural = if errors == 1 { "" } else { "s" };
        return Err(Failure::new(
            Exit::Input,
            format!(
                "`{}` has {errors} error{plural}",
                file.as_deref().unwrap_or("Dockerfile")
            ),
        )
        .hint("fix the lines named above; `rbuild check` lists the same problems without building")
        .into());
    }
    Ok(())
}

impl Engine<'_> {
    /// Resolves every image the plans need (bases, `COPY --from` and mount sources): from
    /// the store when it holds them (unless `--pull`), else from their registries, one
    /// pull per reference for all its platforms.
    #[allow(clippy::type_complexity)]
    fn resolve_images(
        &self,
    ) -> anyhow::Result<(
        HashMap<(String, String), Arc<ResolvedImage>>,
        HashMap<String, dockerfile::Span>,
    )> {
        let mut wanted: BTreeMap<String, (BTreeSet<Platform>, dockerfile::Span)> = BTreeMap::new();
        for pp in &self.plans {
            for &si in &pp.plan.order {
                let st = &pp.plan.stages[si];
                let platform = self.stage_platform(pp, si);
                let mut refs: Vec<String> = st.image_sources.clone();
                if let Base::Image(r) = &st.base {
                    refs.push(r.clone());
                }
                for r in refs {
                    if let Some(NamedContext::Dir(_)) = self.req.named_contexts.get(&r) {
                        continue;
                    }
                    let e = wanted
                        .entry(r)
                        .or_insert_with(|| (BTreeSet::new(), st.span));
                    e.0.insert(platform.clone());
                }
            }
        }
        let mut out = HashMap::new();
        let lines: HashMap<String, dockerfile::Span> = wanted
            .iter()
            .map(|(r, (_, span))| (r.clone(), *span))
            .collect();
        if wanted.is_empty() {
            return Ok((out, lines));
        }
        let registry = Registry::new(self.req.registry.clone())
            .map_err(|e| e.into_failure("cannot set up the registry client"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Exit::Bug, "cannot start the I/O runtime").caused_by(e))?;
        let results = runtime.block_on(async {
            let futures = wanted.iter().map(|(r, (platforms, span))| {
                let registry = &registry;
                async move {
                    let res = self.resolve_image(registry, r, platforms).await;
                    (r.clone(), *span, res)
                }
            });
            futures_util::future::join_all(futures).await
        });
        for (r, span, res) in results {
            match res {
                Ok(images) => {
                    for (p, img) in images {
                        out.insert((r.clone(), p.to_string()), Arc::new(img));
                    }
                }
                Err(e) => return Err(self.at_line(e, span, None)),
            }
        }
        Ok((out, lines))
    }

    /// Scans the layers of the base images that were never scanned
    /// (`diagnose::layerscan`: SELinux labels, root-only attributes, owners outside the
    /// mapping, device nodes); the findings are placed on the `FROM` line. A clean layer
    /// is remembered (`<cache>/build/v1/scans/`) and not read again.
    fn scan_bases(&self) -> Vec<Diagnostic> {
        use crate::diagnose::layerscan::{self, IdMap, Origin};
        let dir = self.req.cache_dir.join("build").join("v1").join("scans");
        let _ = std::fs::create_dir_all(&dir);
        let map = IdMap::contiguous(u64::from(self.ids.mapped()));
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut images: Vec<(&(String, String), &Arc<ResolvedImage>)> =
            self.images.iter().collect();
        images.sort_by(|a, b| a.0.cmp(b.0));
        for ((reference, platform), img) in images {
            for l in img.layers() {
                if self.failed.load(Ordering::SeqCst) {
                    return out;
                }
                let marker = dir.join(format!("{}-{}.clean", l.digest.hex(), self.ids.mapped()));
                if !seen.insert((l.digest.clone(), platform.clone())) || marker.exists() {
                    continue;
                }
                let Ok(blob) = self.env.store.open_blob(&l.digest) else {
                    continue;
                };
                let Ok(tar) = crate::layer::decompress(blob) else {
                    continue;
                };
                let Ok(scan) = layerscan::scan(tar, &map) else {
                    continue;
                };
                if scan.is_clean() {
                    let _ = std::fs::write(&marker, b"");
                    continue;
                }
                let span = self.image_lines.get(reference).copied();
                let layer = l.digest.to_string();
                let origin = Origin {
                    layer: &layer,
                    image: Some(reference),
                    file: Some(&self.req.dockerfile_name),
                    line: span.map(|s| s.start),
                    platform: self.multi_platform.then_some(platform.as_str()),
                    setuid_ineffective: false,
                };
                // The sandbox's extraction leaves files of unmapped owners to root and
                // goes on, so here that is a warning, not the error a failed unpack is.
                out.extend(scan.diagnostics(&origin, &map).into_iter().map(|mut d| {
                    if d.severity == Severity::Error {
                        d.severity = Severity::Warning;
                    }
                    d
                }));
            }
        }
        out
    }

    /// Reads the `--cache-from` caches (a progress step; what cannot be read is logged on
    /// it and the build goes on).
    fn import_cache(&self) -> anyhow::Result<remote::RemoteCache> {
        let id = self.next_step();
        let names: Vec<String> = self
            .req
            .cache_from
            .iter()
            .map(|c| c.reference.to_string())
            .collect();
        self.env.progress.send(Event::StepStarted {
            step: id,
            name: format!(
                "[internal] importing cache manifests from {}",
                names.join(", ")
            ),
            platform: None,
            line: None,
        });
        let t = Instant::now();
        let (cache, warnings) =
            remote::RemoteCache::import(self.env.store, &self.req.cache_from, &self.req.registry)?;
        for w in warnings {
            self.env.progress.send(Event::StepLog {
                step: id,
                stream: crate::progress::Stream::Stderr,
                data: format!("{w}\n"),
            });
        }
        self.env.progress.send(Event::StepFinished {
            step: id,
            outcome: Outcome::Done,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(cache)
    }

    /// Exports the steps of the images (`mode=min`) or of the whole build (`mode=max`)
    /// as a registry cache, writing the layers still missing from their snapshots.
    fn export_cache(&self, spec: &CacheSpec, finals: &[Arc<State>]) -> anyhow::Result<()> {
        let id = self.next_step();
        self.env.progress.send(Event::StepStarted {
            step: id,
            name: format!("[internal] exporting cache to {}", spec.reference),
            platform: None,
            line: None,
        });
        let t = Instant::now();
        let keys: Vec<String> = if spec.max {
            self.touched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        } else {
            finals.iter().flat_map(|s| s.keys.iter().cloned()).collect()
        };
        let mut seen = BTreeSet::new();
        let variant = self.variant();
        let mut todo = Vec::new();
        let mut records = Vec::new();
        for k in keys {
            if !seen.insert(k.clone()) {
                continue;
            }
            let Some(r) = self.records.get(&k) else {
                continue;
            };
            let has_blob = r.layers.iter().any(|l| {
                l.digest
                    .parse::<crate::store::Digest>()
                    .is_ok_and(|d| self.env.store.contains(&d, Some(l.size)))
            });
            if !r.empty && !has_blob {
                match &r.snapshot {
                    Some(s) if stage::snapshot_exists_in(&self.state_dir, &self.tag, s) => {
                        todo.push((k.clone(), s.clone()));
                    }
                    _ => continue,
                }
            }
            records.push(k);
        }
        if !todo.is_empty() {
            self.write_layers(&todo)?;
        }
        let records: Vec<(String, cache::Record)> = records
            .into_iter()
            .filter_map(|k| self.records.get(&k).map(|r| (k.clone(), r)))
            .collect();
        let res = remote::export(self.env.store, &records, &variant, spec, &self.req.registry);
        self.env.progress.send(Event::StepFinished {
            step: id,
            outcome: if res.is_ok() {
                Outcome::Done
            } else {
                Outcome::Error
            },
            seconds: t.elapsed().as_secs_f64(),
        });
        res
    }

    /// One reference for some platforms.
    async fn resolve_image(
        &self,
        registry: &Registry,
        reference: &str,
        platforms: &BTreeSet<Platform>,
    ) -> anyhow::Result<Vec<(Platform, ResolvedImage)>> {
        let id = self.next_step();
        let name = format!("[internal] load metadata for {reference}");
        self.env.progress.send(Event::StepStarted {
            step: id,
            name,
            platform: None,
            line: None,
        });
        let t = Instant::now();
        let res = self
            .resolve_image_inner(registry, reference, platforms)
            .await;
        let outcome = match &res {
            Ok((_, true)) => Outcome::Cached,
            Ok((_, false)) => Outcome::Done,
            Err(_) => Outcome::Error,
        };
        self.finish_event(id, outcome, t);
        res.map(|(v, _)| v)
    }

    async fn resolve_image_inner(
        &self,
        registry: &Registry,
        reference: &str,
        platforms: &BTreeSet<Platform>,
    ) -> anyhow::Result<(Vec<(Platform, ResolvedImage)>, bool)> {
        let store = self.env.store;
        if let Some(NamedContext::Image(name)) = self.req.named_contexts.get(reference) {
            let local = name.strip_prefix("docker-image://").unwrap_or(name);
            if local.starts_with("oci-layout://") {
                let mut v = Vec::new();
                for p in platforms {
                    let img = registry::image_from(store, local, p).map_err(|e| {
                        Failure::new(
                            Exit::Input,
                            format!("cannot use the build context `{reference}` (`{name}`)"),
                        )
                        .caused_by(e)
                    })?;
                    v.push((p.clone(), img));
                }
                return Ok((v, true));
            }
            return Box::pin(self.resolve_image_inner(registry, local, platforms)).await;
        }
        let image_ref: ImageRef = reference.parse().map_err(|e| {
            Failure::new(
                Exit::Input,
                format!("`{reference}` is not an image reference"),
            )
            .caused_by(e)
        })?;
        if !self.req.pull
            && let Ok(Some(record)) = store.get_ref(&image_ref.to_string())
        {
            let src = StoredSource {
                store,
                origin: record.source.clone(),
            };
            let root = image::Descriptor::new(record.media_type, record.digest, record.size);
            let local: Option<Vec<(Platform, ResolvedImage)>> = platforms
                .iter()
                .map(|p| {
                    let img = image::resolve(&src, &root, p).ok()?;
                    img.layers()
                        .iter()
                        .all(|l| store.contains(&l.digest, Some(l.size)))
                        .then(|| (p.clone(), img))
                })
                .collect();
            if let Some(v) = local {
                return Ok((v, true));
            }
        }
        let list: Vec<Platform> = platforms.iter().cloned().collect();
        let pulled = registry
            .pull(store, &image_ref, &Platforms::List(list.clone()))
            .await
            .map_err(|e| {
                let d = e.diagnostic(&format!("cannot pull `{reference}`"));
                anyhow::Error::new(Diagnosed::new(d, e.exit()))
            })?;
        for m in &pulled.mismatches {
            self.env
                .diagnostics
                .push(crate::diagnose::Cause::BaseImageMissingPlatform.warning(m.to_string()));
        }
        let mut v = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let img = pulled
                .images
                .iter()
                .find(|img| img.config.platform().normalized() == p.normalized())
                .or_else(|| pulled.images.get(i))
                .or_else(|| pulled.images.first())
                .cloned()
                .ok_or_else(|| {
                    Failure::new(Exit::Input, format!("`{reference}` has no image for `{p}`"))
                })?;
            v.push((p.clone(), img));
        }
        Ok((v, false))
    }

    /// The platform a stage's file system is for: `FROM --platform`, else the target.
    #[allow(clippy::unused_self)]
    fn stage_platform(&self, pp: &PlatformPlan, si: usize) -> Platform {
        pp.plan.stages[si]
            .platform
            .as_ref()
            .and_then(|p| p.to_string().parse().ok())
            .unwrap_or_else(|| pp.platform.clone())
    }

    fn next_step(&self) -> u32 {
        self.step_counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Facts about this host for running `platform` (gathered once per platform).
    fn host_facts(&self, platform: &crate::arch::Platform) -> Arc<HostFacts> {
        let key = platform.to_string();
        let mut m = self
            .host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            m.entry(key)
                .or_insert_with(|| Arc::new(HostFacts::gather(platform))),
        )
    }

    /// Places an error on a Dockerfile line: a [`Diagnosed`] in its chain gets the
    /// position; other errors become one (`run-failed` is not right for them, so they
    /// keep their own message and only gain the place in a context line).
    fn at_line(
        &self,
        err: anyhow::Error,
        span: dockerfile::Span,
        platform: Option<&Platform>,
    ) -> anyhow::Error {
        let mut err = err;
        if let Some(d) = err.downcast_mut::<Diagnosed>() {
            if d.diagnostic.line.is_none() {
                d.diagnostic.file = Some(self.req.dockerfile_name.clone());
                d.diagnostic.line = Some(span.start);
                d.diagnostic.end_line = Some(span.end.max(span.start));
            }
            if let (Some(p), true) = (platform, self.multi_platform) {
                d.diagnostic.platform.get_or_insert_with(|| p.to_string());
            }
            return err;
        }
        err.context(format!(
            "`{}` line {}{}",
            self.req.dockerfile_name,
            span.start,
            platform
                .filter(|_| self.multi_platform)
                .map(|p| format!(" (`{p}`)"))
                .unwrap_or_default()
        ))
    }

    /// Records the first failure and stops the other threads.
    fn fail(&self, err: anyhow::Error) {
        if err.downcast_ref::<Canceled>().is_some() {
            return;
        }
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first.is_none() {
            *first = Some(err);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Runs every needed stage of every platform; returns each platform's target state.
    fn run_graph(&self) -> anyhow::Result<Vec<Arc<State>>> {
        type Slot = Shared<Option<Arc<State>>>;
        let mut slots: HashMap<(usize, usize), Slot> = HashMap::new();
        let mut nodes: Vec<(usize, usize)> = Vec::new();
        for (pi, pp) in self.plans.iter().enumerate() {
            for &si in &pp.plan.order {
                slots.insert((pi, si), Arc::new((Mutex::new(None), Condvar::new())));
                nodes.push((pi, si));
            }
        }
        let run_node = |pi: usize, si: usize| {
            let pp = &self.plans[pi];
            let deps = pp.plan.stages[si].deps.clone();
            let mut dep_states: HashMap<usize, Arc<State>> = HashMap::new();
            for d in deps {
                if let Some(Some(s)) = slots.get(&(pi, d)).map(wait_shared) {
                    dep_states.insert(d, s);
                } else {
                    set_shared(&slots[&(pi, si)], None);
                    return;
                }
            }
            if self.failed.load(Ordering::SeqCst) {
                set_shared(&slots[&(pi, si)], None);
                return;
            }
            match self.build_stage(pi, si, &dep_states) {
                Ok(s) => set_shared(&slots[&(pi, si)], Some(Arc::new(s))),
                Err(e) => {
                    self.fail(e);
                    set_shared(&slots[&(pi, si)], None);
                }
            }
        };
        if nodes.len() > 64 {
            // Hostile or generated Dockerfiles: one thread, in dependency order.
            for &(pi, si) in &nodes {
                run_node(pi, si);
            }
        } else {
            std::thread::scope(|s| {
                for &(pi, si) in &nodes {
                    let run_node = &run_node;
                    if std::thread::Builder::new()
                        .name(format!("stage-{pi}-{si}"))
                        .spawn_scoped(s, move || run_node(pi, si))
                        .is_err()
                    {
                        run_node(pi, si);
                    }
                }
            });
        }
        if let Some(e) = self
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let mut finals = Vec::new();
        for (pi, pp) in self.plans.iter().enumerate() {
            match wait_shared(&slots[&(pi, pp.plan.target)]) {
                Some(s) => finals.push(s),
                None => {
                    return Err(Failure::new(Exit::Bug, "a stage ended without a result").into());
                }
            }
        }
        Ok(finals)
    }
}

//! One stage of one platform: its base, then its instructions in order. File-system
//! instructions (`RUN`, `COPY`, `ADD`, `WORKDIR`) are cached steps run in a sandbox; the
//! others edit the image config.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::diagnose::signatures::StepOutcome;
use crate::diagnose::{self, Cause, Diagnosed, Severity};
use crate::dockerfile::instructions::{CommandLine, Healthcheck, InlineSource, Kind, Run};
use crate::dockerfile::mount::{Mount as DfMount, MountType, Sharing};
use crate::dockerfile::{self, Base, Span, Step};
use crate::image::writer::{Created, ExecConfig, History, ImageSpec};
use crate::image::{Descriptor, Platform, ResolvedImage};
use crate::layer::compress::{self, Compression};
use crate::outcome::{Exit, Failure};
use crate::progress::{Event, Outcome, Stream};
use crate::sandbox::fileop::{CopyOp, CopySource, FileOp, StreamItem};
use crate::sandbox::result::{FailureClass, SetupFailure, Status, StepResult};
use crate::sandbox::spec::{
    DiffSpec, FilePerm, LayerSpec, Mount, Network, RootfsMode, StepAction, StepSpec,
};
use crate::sandbox::{self, OutputStream, RunOptions, SandboxError, StepIo, Volume};
use crate::store::{Algorithm, Digest};
use sha2::Digest as _;

use super::cache::{Key, LayerInfo, Record};
use super::context::{self, Context, Data, Item};
use super::{Canceled, Engine, SecretSource, set_shared, wait_shared};

/// A layer of a stage's file system.
#[derive(Debug, Clone)]
pub(super) enum LayerRef {
    /// A blob in the store (a base image layer).
    Blob {
        descriptor: Descriptor,
        diff_id: Digest,
    },
    /// A step's result: its snapshot (when still on disk) and its layer blob (once
    /// written).
    Step {
        key: String,
        snapshot: Option<String>,
        layer: Option<LayerInfo>,
    },
}

/// A stage's file system and image config, instruction after instruction.
#[derive(Debug, Clone)]
pub(super) struct State {
    pub(super) platform: Platform,
    /// Cache key of the file system.
    pub(super) fs_key: String,
    pub(super) layers: Vec<LayerRef>,
    pub(super) config: ExecConfig,
    pub(super) history: Vec<History>,
    pub(super) author: Option<String>,
    /// The newest time of its steps and base (Unix seconds): the image's creation time
    /// without `SOURCE_DATE_EPOCH`.
    pub(super) latest: u64,
    /// The keys of every file-system step of its history (for the registry cache).
    pub(super) keys: Vec<String>,
    /// `CMD` was set in this stage (`ENTRYPOINT` keeps it; otherwise it resets the
    /// inherited one, as Docker does).
    cmd_set: bool,
}

/// What an executed step left, shared with identical steps of other platforms.
#[derive(Debug, Clone)]
pub(super) struct StepDone {
    record: Record,
}

/// What a stage needs while it runs.
struct StageCtx<'a> {
    platform: Platform,
    arch: crate::arch::Platform,
    label: Option<String>,
    total: usize,
    number: usize,
    /// Its layers end up in the image (write them while the steps run).
    exported: bool,
    deps: &'a HashMap<usize, Arc<State>>,
}

impl State {
    fn scratch(platform: Platform) -> State {
        State {
            platform,
            fs_key: Key::new("scratch").finish(),
            layers: Vec::new(),
            config: ExecConfig::default(),
            history: Vec::new(),
            author: None,
            latest: 0,
            keys: Vec::new(),
            cmd_set: false,
        }
    }

    fn from_image(img: &ResolvedImage) -> anyhow::Result<State> {
        let spec = ImageSpec::from_base(img).map_err(|e| {
            Failure::new(Exit::Input, "the base image's config cannot be read").caused_by(e)
        })?;
        Ok(State {
            platform: spec.platform,
            fs_key: Key::new("image")
                .add("manifest", img.manifest_descriptor.digest.to_string())
                .finish(),
            layers: spec
                .layers
                .into_iter()
                .map(|l| LayerRef::Blob {
                    descriptor: l.descriptor,
                    diff_id: l.diff_id,
                })
                .collect(),
            config: spec.config,
            history: spec.history,
            author: spec.author,
            latest: serde_json::from_slice::<serde_json::Value>(img.config.bytes())
                .ok()
                .and_then(|v| v["created"].as_str().and_then(parse_rfc3339))
                .unwrap_or(0),
            keys: Vec::new(),
            cmd_set: false,
        })
    }

    /// The image environment as pairs.
    fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
    }

    fn workdir(&self) -> String {
        self.config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    fn meta(&mut self, created_by: String) {
        self.history.push(History::new(created_by, true));
    }
}

/// Whether the snapshot `name` is on disk under the sandbox state `state_dir`.
pub(super) fn snapshot_exists_in(state_dir: &std::path::Path, tag: &str, name: &str) -> bool {
    !name.is_empty() && state_dir.join("snapshots").join(tag).join(name).is_dir()
}

/// `a/b/../c` → `/a/c` (absolute, clean); a trailing `/` is kept when `keep_slash`.
fn clean_abs(path: &str, keep_slash: bool) -> String {
    let comps = context::clean_components(path);
    let mut s = format!("/{}", comps.join("/"));
    if keep_slash && !comps.is_empty() {
        s.push('/');
    }
    s
}

/// A destination made absolute against the working directory, a directory mark kept.
fn resolve_dest(dest: &str, workdir: &str) -> String {
    let as_dir = dest.ends_with('/')
        || dest == "."
        || dest == ".."
        || dest.ends_with("/.")
        || dest.ends_with("/..");
    let joined = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    clean_abs(&joined, as_dir)
}

/// The argv of a `RUN` (or shell-form `CMD`/`ENTRYPOINT`), heredocs included, as
/// BuildKit's dispatcher builds it.
fn command_argv(cmd: &CommandLine, shell: &[String]) -> (Vec<String>, Option<(String, String)>) {
    let mut script_file = None;
    let args: Vec<String> = if cmd.heredocs.is_empty() || !cmd.shell_form {
        cmd.args.clone()
    } else {
        let first = cmd.args.first().cloned().unwrap_or_default();
        let single = dockerfile::parser::parse_heredoc(first.trim())
            .ok()
            .flatten()
            .is_some();
        let doc = &cmd.heredocs[0];
        if single {
            let body = doc.chomped_content();
            if body.starts_with("#!") {
                // A script with a shebang: written to a file and executed.
                let path = format!("/dev/pipes/{}", doc.name);
                script_file = Some((path.clone(), body));
                return (vec![path], script_file);
            }
            vec![body]
        } else {
            let mut full = first;
            for h in &cmd.heredocs {
                full.push('\n');
                full.push_str(&h.chomped_content());
                full.push_str(&h.name);
            }
            vec![full]
        }
    };
    if cmd.shell_form {
        let mut v = shell.to_vec();
        v.extend(args);
        (v, script_file)
    } else {
        (args, script_file)
    }
}

/// The sources and flags `COPY` and `ADD` share.
#[allow(clippy::struct_excessive_bools)] // the instruction's own flags
struct CopyArgs<'a> {
    instruction: &'static str,
    sources: &'a [String],
    inline: &'a [InlineSource],
    dest: &'a str,
    from: Option<&'a str>,
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    link: bool,
    parents: bool,
    exclude: &'a [String],
    add: bool,
    unpack: bool,
    checksum: Option<&'a str>,
}

/// What `--from=` names.
enum FromRef<'a> {
    Stage(usize),
    Image(String),
    Dir(&'a Context),
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// `1500` is ns in image configs.
fn nanos(d: Option<std::time::Duration>) -> Option<u64> {
    d.filter(|d| !d.is_zero())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Engine<'_> {
    pub(super) fn variant(&self) -> String {
        let c = match self.req.compression {
            Compression::None => "none".to_owned(),
            Compression::Gzip { level } => format!("gzip-{level}"),
            Compression::Zstd { level } => format!("zstd-{level}"),
        };
        match self.req.epoch {
            Some(e) => format!("{c}/clamp={e}"),
            None => c,
        }
    }

    fn snapshot_exists(&self, name: &str) -> bool {
        snapshot_exists_in(&self.state_dir, &self.tag, name)
    }

    /// The sandbox's view of a layer.
    pub(super) fn layer_spec(&self, l: &LayerRef) -> LayerSpec {
        match l {
            LayerRef::Blob {
                descriptor,
                diff_id,
            } => LayerSpec {
                digest: descriptor.digest.to_string(),
                diff_id: diff_id.to_string(),
                blob: self.env.store.blob_file(&descriptor.digest),
                dir: None,
            },
            LayerRef::Step {
                snapshot, layer, ..
            } => match (snapshot, layer) {
                (Some(s), _) if self.snapshot_exists(s) => LayerSpec::snapshot(s.clone()),
                (_, Some(info)) => LayerSpec {
                    digest: info.digest.clone(),
                    diff_id: info.diff_id.clone(),
                    blob: info
                        .digest
                        .parse::<Digest>()
                        .map(|d| self.env.store.blob_file(&d))
                        .unwrap_or_default(),
                    dir: None,
                },
                (Some(s), None) => LayerSpec::snapshot(s.clone()),
                (None, None) => LayerSpec::snapshot(String::new()),
            },
        }
    }

    /// A cached result of `key`: a local record whose snapshot or layer is still there,
    /// else an imported registry cache's (its layer downloaded now).
    fn lookup(&self, key: &str) -> Option<Record> {
        if self.req.no_cache {
            return None;
        }
        if let Some(r) = self.records.get(key) {
            if r.empty {
                return Some(r);
            }
            let snapshot_ok = r
                .snapshot
                .as_deref()
                .is_some_and(|s| self.snapshot_exists(s));
            let blob_ok = r.layers.iter().any(|l| {
                l.digest
                    .parse::<Digest>()
                    .is_ok_and(|d| self.env.store.contains(&d, Some(l.size)))
            });
            if snapshot_ok || blob_ok {
                return Some(r);
            }
        }
        let r = self.remote.as_ref()?.get(self.env.store, key)?;
        let _ = self.records.put(key, &r);
        Some(r)
    }

    /// Runs one stage of platform `pi`.
    pub(super) fn build_stage(
        &self,
        pi: usize,
        si: usize,
        deps: &HashMap<usize, Arc<State>>,
    ) -> anyhow::Result<State> {
        let pp = &self.plans[pi];
        let planned = &pp.plan.stages[si];
        let platform = self.stage_platform(pp, si);
        let arch: crate::arch::Platform = platform
            .to_string()
            .parse()
            .map_err(|e: crate::arch::PlatformError| Failure::new(Exit::Usage, e.to_string()))?;
        let span = planned.span;
        let (mut state, from_name) = match &planned.base {
            Base::Scratch => (State::scratch(platform.clone()), "scratch".to_owned()),
            Base::Stage(b) => {
                let mut s = deps
                    .get(b)
                    .map(|s| (**s).clone())
                    .ok_or_else(|| Failure::new(Exit::Bug, "a base stage has no result"))?;
                s.cmd_set = false;
                let name = self.df.stages[*b]
                    .from
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{b}"));
                (s, name)
            }
            Base::Image(r) => {
                let img = self
                    .images
                    .get(&(r.clone(), platform.to_string()))
                    .ok_or_else(|| Failure::new(Exit::Bug, format!("`{r}` was not resolved")))?;
                (
                    State::from_image(img).map_err(|e| self.at_line(e, span, Some(&platform)))?,
                    r.clone(),
                )
            }
        };

        // ONBUILD triggers of the base run first, and are not inherited further.
        let triggers = std::mem::take(&mut state.config.on_build);
        let owned;
        let df = if triggers.is_empty() {
            &self.df
        } else {
            let mut d = self.df.clone();
            let mut ins = Vec::new();
            for t in &triggers {
                let mut parsed = dockerfile::instructions::parse_trigger(t, d.ast.escape)
                    .map_err(|e| {
                        Failure::new(
                            Exit::Input,
                            format!("the base image's `ONBUILD {t}` is not a valid instruction"),
                        )
                        .caused_by(std::io::Error::other(e.message))
                    })
                    .map_err(|e| self.at_line(e.into(), span, Some(&platform)))?;
                parsed.span = span;
                ins.push(parsed);
            }
            d.stages[si].instructions.splice(0..0, ins);
            owned = d;
            &owned
        };
        let base_env = state.env_pairs();
        let expanded = df.expand_stage(&pp.plan, &pp.opts, si, Some(&base_env));
        let mut errors = 0;
        for d in expanded.diagnostics {
            if d.severity == Severity::Error {
                errors += 1;
            }
            self.env.diagnostics.push(d);
        }
        if errors > 0 {
            return Err(Failure::new(
                Exit::Input,
                format!("`{}` has errors in stage {si}", self.req.dockerfile_name),
            )
            .into());
        }

        let total = 1 + expanded
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.instruction.kind,
                    Kind::Run(_) | Kind::Copy(_) | Kind::Add(_) | Kind::Workdir(_)
                )
            })
            .count();
        let label = (self.df.stages.len() > 1).then(|| {
            planned
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{si}"))
        });
        let mut ctx = StageCtx {
            platform: platform.clone(),
            arch,
            label,
            total,
            number: 1,
            exported: pp.exported.contains(&si),
            deps,
        };
        let id = self.next_step();
        self.env.progress.send(Event::StepStarted {
            step: id,
            name: self.step_name(&ctx, &format!("FROM {from_name}")),
            platform: self.platform_label(&platform),
            line: Some(span.start),
        });
        self.env.progress.send(Event::StepFinished {
            step: id,
            outcome: Outcome::Done,
            seconds: 0.0,
        });

        for step in &expanded.steps {
            if self.failed.load(Ordering::SeqCst) {
                return Err(Canceled.into());
            }
            let span = step.instruction.span;
            self.instruction(&mut ctx, &mut state, step)
                .map_err(|e| self.at_line(e, span, Some(&platform)))?;
        }
        Ok(state)
    }

    fn platform_label(&self, p: &Platform) -> Option<String> {
        self.multi_platform.then(|| p.to_string())
    }

    #[allow(clippy::unused_self)] // a method like the other naming helpers
    fn step_name(&self, c: &StageCtx<'_>, text: &str) -> String {
        let text: String = text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        match &c.label {
            Some(l) => format!("[{l} {}/{}] {text}", c.number, c.total),
            None => format!("[{}/{}] {text}", c.number, c.total),
        }
    }

    fn instruction(&self, c: &mut StageCtx<'_>, st: &mut State, step: &Step) -> anyhow::Result<()> {
        let ins = &step.instruction;
        let shown = ins.original.trim().to_owned();
        match &ins.kind {
            Kind::From(_) | Kind::Arg(_) => {}
            Kind::Env(kvs) => {
                for kv in kvs {
                    st.config.set_env(&kv.key, &kv.value);
                }
                let text: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                st.meta(format!("ENV {}", text.join(" ")));
            }
            Kind::Label(kvs) => {
                for kv in kvs {
                    st.config.labels.insert(kv.key.clone(), kv.value.clone());
                }
                let text: Vec<String> = kvs
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                st.meta(format!("LABEL {}", text.join(" ")));
            }
            Kind::Maintainer(m) => {
                st.author = Some(m.clone());
                st.meta(format!("MAINTAINER {m}"));
            }
            Kind::User(u) => {
                st.config.user = Some(u.clone());
                st.meta(format!("USER {u}"));
            }
            Kind::Volume(v) => {
                for p in v {
                    st.config.volumes.insert(p.clone());
                }
                st.meta(format!("VOLUME {v:?}"));
            }
            Kind::Expose(ports) => {
                for p in ports {
                    for port in expand_port(p) {
                        st.config.exposed_ports.insert(port);
                    }
                }
                st.meta(format!("EXPOSE {}", ports.join(" ")));
            }
            Kind::StopSignal(s) => {
                st.config.stop_signal = Some(s.clone());
                st.meta(format!("STOPSIGNAL {s}"));
            }
            Kind::Shell(args) => {
                st.config.shell = Some(args.clone());
                st.meta(format!("SHELL {args:?}"));
            }
            Kind::Cmd(cmd) => {
                let (argv, _) = command_argv(cmd, &st.shell());
                st.config.cmd = Some(argv.clone());
                st.cmd_set = true;
                st.meta(format!("CMD {argv:?}"));
            }
            Kind::Entrypoint(cmd) => {
                let (argv, _) = command_argv(cmd, &st.shell());
                st.config.entrypoint = Some(argv.clone());
                if !st.cmd_set {
                    st.config.cmd = None;
                }
                st.meta(format!("ENTRYPOINT {argv:?}"));
            }
            Kind::Healthcheck(h) => {
                st.config.healthcheck = Some(healthcheck_json(h));
                st.meta(format!("HEALTHCHECK {:?}", h.test));
            }
            Kind::Onbuild(o) => {
                st.config.on_build.push(o.expression.clone());
                st.meta(format!("ONBUILD {}", o.expression));
            }
            Kind::Workdir(w) => {
                let dir = if w.starts_with('/') {
                    clean_abs(w, false)
                } else {
                    clean_abs(&format!("{}/{w}", st.workdir()), false)
                };
                st.config.working_dir = Some(dir.clone());
                c.number += 1;
                let mut key = Key::new("mkdir");
                key.add("parent", &st.fs_key)
                    .add("path", &dir)
                    .add("owner", st.config.user.clone().unwrap_or_default());
                let owner = st.config.user.clone().filter(|u| !u.is_empty());
                let op = FileOp::Mkdir {
                    path: dir.clone(),
                    owner,
                };
                let name = self.step_name(c, &format!("WORKDIR {dir}"));
                self.fs_step(
                    st,
                    &key.finish(),
                    &name,
                    ins.span,
                    format!("WORKDIR {dir}"),
                    |st, run| self.files_step(c, st, run, vec![op], Vec::new(), Vec::new(), false),
                )?;
            }
            Kind::Run(run) => {
                c.number += 1;
                self.run(c, st, step, run, &shown)?;
            }
            Kind::Copy(cp) => {
                c.number += 1;
                let a = CopyArgs {
                    instruction: "COPY",
                    sources: &cp.sources,
                    inline: &cp.inline,
                    dest: &cp.dest,
                    from: cp.from.as_deref(),
                    chown: cp.chown.as_deref(),
                    chmod: cp.chmod.as_deref(),
                    link: cp.link,
                    parents: cp.parents,
                    exclude: &cp.exclude,
                    add: false,
                    unpack: false,
                    checksum: None,
                };
                self.copy(c, st, step, &a, &shown)?;
            }
            Kind::Add(ad) => {
                c.number += 1;
                let a = CopyArgs {
                    instruction: "ADD",
                    sources: &ad.sources,
                    inline: &ad.inline,
                    dest: &ad.dest,
                    from: None,
                    chown: ad.chown.as_deref(),
                    chmod: ad.chmod.as_deref(),
                    link: ad.link,
                    parents: false,
                    exclude: &ad.exclude,
                    add: true,
                    unpack: ad.unpack != Some(false),
                    checksum: ad.checksum.as_deref(),
                };
                self.copy(c, st, step, &a, &shown)?;
            }
        }
        Ok(())
    }

    /// A cached file-system step: reports progress, answers from the cache or runs
    /// `exec` (once per key, even across platforms), and applies the result to `st`.
    #[allow(clippy::too_many_arguments)]
    fn fs_step(
        &self,
        st: &mut State,
        key: &str,
        name: &str,
        span: Span,
        created_by: String,
        exec: impl FnOnce(&State, &StepRun<'_>) -> anyhow::Result<Record>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let record = if let Some(r) = self.lookup(key) {
            let id = self.next_step();
            self.start_event(id, name, &st.platform, span);
            self.finish_event(id, Outcome::Cached, started);
            self.cached.fetch_add(1, Ordering::Relaxed);
            r
        } else {
            let (cell, mine) = {
                let mut m = self
                    .inflight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(c) = m.get(key) {
                    (Arc::clone(c), false)
                } else {
                    let c: super::Shared<Result<StepDone, String>> =
                        Arc::new((Mutex::new(None), std::sync::Condvar::new()));
                    m.insert(key.to_owned(), Arc::clone(&c));
                    (c, true)
                }
            };
            if mine {
                let id = self.next_step();
                self.start_event(id, name, &st.platform, span);
                let run = StepRun {
                    key,
                    snapshot: format!("s-{}", &key[..24]),
                    id,
                    span,
                };
                match exec(st, &run) {
                    Ok(r) => {
                        set_shared(&cell, Ok(StepDone { record: r.clone() }));
                        self.finish_event(id, Outcome::Done, started);
                        self.executed.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                    Err(e) => {
                        set_shared(&cell, Err(e.to_string()));
                        let canceled = e.downcast_ref::<Canceled>().is_some();
                        self.finish_event(
                            id,
                            if canceled {
                                Outcome::Canceled
                            } else {
                                Outcome::Error
                            },
                            started,
                        );
                        return Err(e);
                    }
                }
            } else {
                match wait_shared(&cell) {
                    Ok(done) => {
                        let id = self.next_step();
                        self.start_event(id, name, &st.platform, span);
                        self.finish_event(id, Outcome::Cached, started);
                        self.cached.fetch_add(1, Ordering::Relaxed);
                        done.record
                    }
                    Err(_) => return Err(Canceled.into()),
                }
            }
        };
        key.clone_into(&mut st.fs_key);
        st.keys.push(key.to_owned());
        self.touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key.to_owned());
        st.latest = st.latest.max(record.created);
        let mut entry = History::new(created_by, record.empty);
        if self.req.epoch.is_none() && record.created > 0 {
            entry.created = Some(
                Created {
                    unix: record.created,
                }
                .rfc3339(),
            );
        }
        if record.empty {
            st.history.push(entry);
        } else {
            let snapshot = record.snapshot.clone().filter(|s| self.snapshot_exists(s));
            st.layers.push(LayerRef::Step {
                key: key.to_owned(),
                snapshot,
                layer: record
                    .layer(&self.variant())
                    .or_else(|| record.layers.first())
                    .cloned(),
            });
            st.history.push(entry);
        }
        Ok(())
    }

    fn start_event(&self, id: u32, name: &str, platform: &Platform, span: Span) {
        self.env.progress.send(Event::StepStarted {
            step: id,
            name: name.to_owned(),
            platform: self.platform_label(platform),
            line: Some(span.start),
        });
    }

    pub(super) fn finish_event(&self, id: u32, outcome: Outcome, started: Instant) {
        self.env.progress.send(Event::StepFinished {
            step: id,
            outcome,
            seconds: if outcome == Outcome::Cached {
                0.0
            } else {
                started.elapsed().as_secs_f64()
            },
        });
    }

    /// Runs a step's spec, writing its layer inline when the spec asks for it. Returns
    /// the result and that layer.
    fn execute(
        &self,
        c: &StageCtx<'_>,
        spec: &sandbox::spec::Spec,
        input: Option<Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>>,
        run: &StepRun<'_>,
        capture: &Mutex<Vec<u8>>,
    ) -> anyhow::Result<(StepResult, Option<LayerInfo>)> {
        let _slot = self.slots.acquire();
        if self.failed.load(Ordering::SeqCst) {
            return Err(Canceled.into());
        }
        let layer_slot: Mutex<Option<(crate::store::BlobWriter, compress::Compressed)>> =
            Mutex::new(None);
        let compression = self.req.compression;
        let threads = self.threads;
        let store = self.env.store;
        let progress = self.env.progress;
        let id = run.id;
        let output = |which: OutputStream, bytes: &[u8]| {
            progress.send(Event::StepLog {
                step: id,
                stream: match which {
                    OutputStream::Stdout => Stream::Stdout,
                    OutputStream::Stderr => Stream::Stderr,
                },
                data: String::from_utf8_lossy(bytes).into_owned(),
            });
            let mut cap = capture
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cap.extend_from_slice(bytes);
            let excess = cap.len().saturating_sub(256 << 10);
            if excess > 0 {
                cap.drain(..excess);
            }
        };
        let inline = spec.step.as_ref().is_some_and(|s| s.diff.is_some());
        let layer: Option<Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>> =
            inline.then(|| {
                let slot = &layer_slot;
                Box::new(move |mut pipe: std::fs::File| {
                    // A step that changed nothing writes no layer: end of file at once,
                    // and no blob writer or compressor to set up.
                    let mut first = vec![0u8; 64 << 10];
                    let n = loop {
                        match std::io::Read::read(&mut pipe, &mut first) {
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            r => break r?,
                        }
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    first.truncate(n);
                    let input = std::io::Read::chain(std::io::Cursor::new(first), pipe);
                    let w = store
                        .writer(Algorithm::Sha256)
                        .map_err(std::io::Error::other)?;
                    let (w, done) = compress::compress_into(input, w, compression, threads, |w| {
                        (w.digest().to_string(), w.size())
                    })?;
                    *slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((w, done));
                    Ok(())
                })
                    as Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>
            });
        let io = StepIo {
            output: &output,
            input,
            layer,
        };
        let r = match self.env.sessions.run_step(spec, io) {
            Ok(r) => r,
            Err(SandboxError::Setup(f)) => return Err(self.setup_failure(&f, &c.platform)),
            Err(e) => {
                return Err(Failure::new(Exit::Bug, "the build step's sandbox failed")
                    .caused_by(e)
                    .into());
            }
        };
        for f in &r.facts {
            // A RUN reports its leftover processes itself, on its line and with their
            // ports (`behaviour::leftovers_diagnostic`); this unplaced copy would repeat it.
            if matches!(f, crate::sandbox::result::Fact::LeakedProcesses { .. }) {
                continue;
            }
            // The rest come from unpacking layers for the step; they are shown on its
            // instruction unless the base-layer scan names the same cause on a `FROM`
            // line (`build` keeps that one).
            let mut d = f.to_diagnostic();
            if d.file.is_none() {
                d = d.at(&self.req.dockerfile_name, run.span.start, run.span.end);
            }
            if self.multi_platform {
                d = d.with_platform(c.platform.to_string());
            }
            self.env.diagnostics.push(d);
        }
        let mut info = None;
        if r.step.is_some_and(|o| o.diff_written) {
            let blob = layer_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some((w, done)) = blob {
                let digest: Digest = done.digest.parse().map_err(|e| {
                    Failure::new(Exit::Bug, "the layer digest is malformed").caused_by(e)
                })?;
                w.commit(Some(&digest), Some(done.size)).map_err(|e| {
                    Failure::new(Exit::Host, "cannot store the step's layer").caused_by(e)
                })?;
                info = Some(LayerInfo {
                    variant: self.variant(),
                    digest: done.digest,
                    diff_id: done.diff_id,
                    size: done.size,
                    media_type: done.media_type.to_owned(),
                });
            }
        }
        Ok((r, info))
    }

    /// A classified error from a sandbox that could not be set up.
    fn setup_failure(&self, f: &SetupFailure, platform: &Platform) -> anyhow::Error {
        for fact in &f.facts {
            let mut d = fact.to_diagnostic();
            if self.multi_platform {
                d = d.with_platform(platform.to_string());
            }
            self.env.diagnostics.push(d);
        }
        let exit = match f.class {
            FailureClass::Input => Exit::Input,
            FailureClass::Host => Exit::Host,
            FailureClass::Bug => Exit::Bug,
        };
        let mut lines: Vec<String> = std::iter::once(f.message.clone())
            .chain(f.causes.iter().cloned())
            .collect();
        let innermost = lines.pop().unwrap_or_default();
        let mut failure = Failure::new(exit, innermost);
        for h in &f.hints {
            failure = failure.hint(h.clone());
        }
        let mut err = anyhow::Error::new(failure);
        for line in lines.into_iter().rev() {
            err = err.context(line);
        }
        err
    }

    /// The record of a successful step (stored under its key).
    fn record_of(
        &self,
        run: &StepRun<'_>,
        r: &StepResult,
        layer: Option<LayerInfo>,
    ) -> anyhow::Result<Record> {
        let changed = r.step.is_some_and(|o| o.changed);
        let record = Record {
            empty: !changed,
            snapshot: changed.then(|| run.snapshot.clone()),
            layers: if changed {
                layer.into_iter().collect()
            } else {
                Vec::new()
            },
            created: Created::now().unix,
        };
        self.records.put(run.key, &record).map_err(|e| {
            Failure::new(Exit::Host, "cannot write the build cache record").caused_by(e)
        })?;
        Ok(record)
    }

    /// A file-operation step (COPY, ADD, WORKDIR) in a sandbox of its own.
    #[allow(clippy::too_many_arguments)]
    fn files_step(
        &self,
        c: &StageCtx<'_>,
        st: &State,
        run: &StepRun<'_>,
        ops: Vec<FileOp>,
        items: Vec<Item>,
        trees: Vec<Vec<LayerSpec>>,
        link: bool,
    ) -> anyhow::Result<Record> {
        let layers = if link {
            Vec::new()
        } else {
            st.layers.iter().map(|l| self.layer_spec(l)).collect()
        };
        let host = self.host_facts(&c.arch);
        let spec = sandbox::plan_files(
            &host,
            &self.state_dir,
            &c.arch,
            layers,
            StepSpec {
                action: StepAction::Files { ops },
                keep: run.snapshot.clone(),
                diff: c.exported.then_some(DiffSpec {
                    clamp_mtime: self.req.epoch,
                }),
                trees,
            },
        )
        .map_err(|e| Failure::new(Exit::Host, e.to_string()))?;
        let input: Option<Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>> =
            (!items.is_empty()).then(|| {
                Box::new(move |pipe: std::fs::File| {
                    context::write_stream(
                        &items,
                        0,
                        std::io::BufWriter::with_capacity(256 << 10, pipe),
                    )
                })
                    as Box<dyn FnOnce(std::fs::File) -> std::io::Result<()> + Send + '_>
            });
        let capture = Mutex::new(Vec::new());
        let (r, layer) = self.execute(c, &spec, input, run, &capture)?;
        self.record_of(run, &r, layer)
    }
}

impl Engine<'_> {
    /// What `--from=NAME` names: a named context directory, a stage (by index or name),
    /// or an image.
    fn resolve_from(&self, name: &str) -> FromRef<'_> {
        if let Some(ctx) = self.named_dirs.get(name) {
            return FromRef::Dir(ctx);
        }
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_digit())
            && let Ok(i) = name.parse::<usize>()
            && i < self.df.stages.len()
        {
            return FromRef::Stage(i);
        }
        let lower = name.to_lowercase();
        if let Some(i) = self
            .df
            .stages
            .iter()
            .rposition(|s| s.from.name.as_deref() == Some(lower.as_str()))
        {
            return FromRef::Stage(i);
        }
        FromRef::Image(name.to_owned())
    }

    /// The layers of an image resolved for the build, as a source tree.
    fn image_tree(
        &self,
        name: &str,
        platform: &Platform,
    ) -> anyhow::Result<(Vec<LayerSpec>, String)> {
        let img = self
            .images
            .get(&(name.to_owned(), platform.to_string()))
            .ok_or_else(|| Failure::new(Exit::Bug, format!("`{name}` was not resolved")))?;
        let st = State::from_image(img)?;
        Ok((
            st.layers.iter().map(|l| self.layer_spec(l)).collect(),
            st.fs_key,
        ))
    }

    #[allow(clippy::unused_self)]
    fn stage_dep<'s>(&self, c: &'s StageCtx<'_>, i: usize) -> anyhow::Result<&'s Arc<State>> {
        c.deps.get(&i).ok_or_else(|| {
            Failure::new(Exit::Bug, format!("stage {i} is needed but was not built")).into()
        })
    }

    fn run(
        &self,
        c: &StageCtx<'_>,
        st: &mut State,
        step: &Step,
        run: &Run,
        shown: &str,
    ) -> anyhow::Result<()> {
        let span = step.instruction.span;
        let (argv, script) = command_argv(&run.command, &st.shell());
        if argv.is_empty() {
            return Err(Failure::new(Exit::Input, "`RUN` has no command").into());
        }
        // The environment: image env, then build arguments not shadowed by it, then the
        // predefined proxy arguments given on the command line (not part of the key, as
        // in BuildKit).
        let mut env: Vec<String> = step.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args_used: Vec<String> = Vec::new();
        for (k, v) in step.args.iter() {
            if !step.env.iter().any(|(ek, _)| ek == k) {
                env.push(format!("{k}={v}"));
                args_used.push(format!("{k}={v}"));
            }
        }
        let keyed_env = env.clone();
        for name in dockerfile::stages::PREDEFINED_ARGS {
            if let Some(v) = self.req.build_args.get(*name)
                && !step.env.iter().any(|(k, _)| k == name)
                && !step.args.iter().any(|(k, _)| k == name)
            {
                env.push(format!("{name}={v}"));
            }
        }
        let user = st.config.user.clone().unwrap_or_default();
        let cwd = st.workdir();
        let network = match run.network.as_deref() {
            Some("none") => Network::None,
            Some("host") => Network::Host,
            _ => self.req.network,
        };
        let mut key = Key::new("run");
        key.add("parent", &st.fs_key)
            .add("platform", st.platform.to_string())
            .list("argv", &argv)
            .list("env", &keyed_env)
            .add("user", &user)
            .add("cwd", &cwd)
            .add(
                "network",
                match network {
                    Network::None => "none",
                    Network::Host => "host",
                },
            )
            .add("security", run.security.clone().unwrap_or_default());
        let mut mounts: Vec<Mount> = Vec::new();
        let mut volumes: Vec<Volume> = Vec::new();
        let mut trees: Vec<Vec<LayerSpec>> = Vec::new();
        let mut secret_env: Vec<String> = Vec::new();
        if let Some((path, body)) = &script {
            key.add("script", body);
            mounts.push(Mount::File {
                dest: path.clone(),
                contents: body.clone(),
                perm: Some(FilePerm {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                }),
            });
        }
        for m in &step.mounts {
            self.run_mount(
                c,
                st,
                m,
                &mut key,
                &mut mounts,
                &mut volumes,
                &mut trees,
                &mut secret_env,
            )?;
        }
        let key = key.finish();
        let mut created_by = String::from("RUN ");
        if !args_used.is_empty() {
            let _ = write!(created_by, "|{} {} ", args_used.len(), args_used.join(" "));
        }
        created_by.push_str(&argv.join(" "));
        created_by.push_str(" # buildkit");
        let name = self.step_name(c, shown);
        env.extend(secret_env);
        self.fs_step(st, &key, &name, span, created_by, |st, r| {
            let image = sandbox::source::Image {
                reference: name.clone(),
                platform: c.arch.clone(),
                config: sandbox::source::RunConfig {
                    env: Vec::new(),
                    entrypoint: Vec::new(),
                    cmd: argv.clone(),
                    user: user.clone(),
                    working_dir: cwd.clone(),
                },
                layers: Vec::new(),
            };
            let opts = RunOptions {
                state_dir: self.state_dir.clone(),
                command: argv.clone(),
                env: env.clone(),
                user: Some(user.clone()),
                workdir: Some(cwd.clone()),
                hostname: sandbox::DEFAULT_HOSTNAME.to_owned(),
                network,
                volumes: volumes.clone(),
                timeout: None,
                rootfs: RootfsMode::Overlay,
            };
            let host = self.host_facts(&c.arch);
            let mut spec = sandbox::plan(&image, &opts, &host).map_err(|e| plan_error(&e))?;
            spec.layers = st.layers.iter().map(|l| self.layer_spec(l)).collect();
            spec.mounts.extend(mounts.iter().cloned());
            spec.step = Some(StepSpec {
                action: StepAction::Run,
                keep: r.snapshot.clone(),
                diff: c.exported.then_some(DiffSpec {
                    clamp_mtime: self.req.epoch,
                }),
                trees: trees.clone(),
            });
            let emulated = !matches!(spec.execution, crate::arch::Execution::Native);
            let capture = Mutex::new(Vec::new());
            let (res, layer) = self.execute(c, &spec, None, r, &capture)?;
            let output = String::from_utf8_lossy(
                &capture
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_owned();
            let platform = c.platform.to_string();
            let cmd_text = argv.join(" ");
            let sig = |outcome| diagnose::signatures::Step {
                name: Some(&name),
                command: Some(&cmd_text),
                file: Some(&self.req.dockerfile_name),
                line: Some(span.start),
                end_line: Some(span.end),
                platform: Some(&platform),
                emulated: Some(emulated),
                outcome,
            };
            let failed = |outcome| -> anyhow::Error {
                let d = diagnose::signatures::diagnose_step(&sig(outcome), &output)
                    .unwrap_or_else(|| Cause::RunFailed.error(format!("`{name}` failed")));
                let exit = Cause::from_id(&d.id).map_or(Exit::Input, |c| c.entry().exit);
                Diagnosed::new(d, exit).into()
            };
            match &res.status {
                Status::Exited { code: 0 } => {
                    if !res.killed.is_empty() {
                        let leftovers: Vec<diagnose::behaviour::Leftover> = res
                            .killed
                            .iter()
                            .map(|l| diagnose::behaviour::Leftover {
                                pid: u32::try_from(l.pid).unwrap_or(0),
                                comm: l.command.clone(),
                                cmdline: l.cmdline.clone(),
                                listening: l
                                    .listening
                                    .iter()
                                    .filter_map(|x| {
                                        format!("{}:{}", bracket(&x.address), x.port).parse().ok()
                                    })
                                    .collect(),
                            })
                            .collect();
                        let s = sig(StepOutcome::Suspicious);
                        if let Some(d) = diagnose::behaviour::leftovers_diagnostic(&s, &leftovers) {
                            self.env.diagnostics.push(d);
                        }
                        if let Some(d) = diagnose::signatures::diagnose_step(&s, &output) {
                            self.env.diagnostics.push(d);
                        }
                    }
                    self.record_of(r, &res, layer)
                }
                Status::Exited { code } => Err(failed(StepOutcome::Failed {
                    exit_code: Some(*code),
                    signal: None,
                })),
                Status::Signaled { signal, .. } => Err(failed(StepOutcome::Failed {
                    exit_code: None,
                    signal: Some(*signal),
                })),
                Status::TimedOut { .. } => Err(failed(StepOutcome::TimedOut)),
                Status::NotStarted { reason, errno, .. } => {
                    let d = if *errno == libc::ENOEXEC {
                        Cause::BinfmtNotRegistered.error(format!("`{name}` cannot start: {reason}"))
                    } else {
                        Cause::RunFailed.error(format!("`{name}` cannot start: {reason}"))
                    };
                    let d = d
                        .at(&self.req.dockerfile_name, span.start, span.end)
                        .with_step(&name);
                    let exit = Cause::from_id(&d.id).map_or(Exit::Input, |c| c.entry().exit);
                    Err(Diagnosed::new(d, exit).into())
                }
            }
        })
    }

    /// One `RUN --mount`: what the sandbox mounts, and what of it the key depends on.
    #[allow(clippy::too_many_arguments)]
    fn run_mount(
        &self,
        c: &StageCtx<'_>,
        st: &State,
        m: &DfMount,
        key: &mut Key,
        mounts: &mut Vec<Mount>,
        volumes: &mut Vec<Volume>,
        trees: &mut Vec<Vec<LayerSpec>>,
        secret_env: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let workdir = st.workdir();
        let target = m.target.as_deref().map(|t| resolve_dest(t, &workdir));
        let need_target = || {
            target.clone().ok_or_else(|| {
                anyhow::Error::new(
                    Failure::new(
                        Exit::Input,
                        format!("`RUN --mount=type={}` needs `target=`", m.kind.as_str()),
                    )
                    .hint("e.g. `--mount=type=cache,target=/root/.cache`"),
                )
            })
        };
        let trim = |t: String| {
            if t.len() > 1 {
                t.trim_end_matches('/').to_owned()
            } else {
                t
            }
        };
        match m.kind {
            MountType::Cache => {
                let target = trim(need_target()?);
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let perm = FilePerm {
                    mode: m.mode.unwrap_or(0o755),
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                };
                let dir = format!("{:x}", sha2::Sha256::digest(id.as_bytes()));
                key.add(
                    "mount",
                    format!(
                        "cache\0{id}\0{target}\0{:o}\0{}\0{}\0{}",
                        perm.mode, perm.uid, perm.gid, m.readonly
                    ),
                );
                mounts.push(Mount::Cache {
                    id: dir[..32].to_owned(),
                    dest: target,
                    perm,
                    locked: m.sharing == Some(Sharing::Locked),
                });
            }
            MountType::Tmpfs => {
                let target = trim(need_target()?);
                let options = match m.size {
                    Some(s) => format!("mode=1777,size={s}"),
                    None => "mode=1777".to_owned(),
                };
                key.add("mount", format!("tmpfs\0{target}\0{options}"));
                mounts.push(Mount::Tmpfs {
                    dest: target,
                    options,
                    noexec: false,
                });
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| {
                            target
                                .as_deref()
                                .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
                                .map(str::to_owned)
                        })
                        .ok_or_else(|| {
                            Failure::new(Exit::Input, "`RUN --mount=type=secret` needs `id=`")
                        })?;
                let dest = target
                    .clone()
                    .map(trim)
                    .or_else(|| m.env.is_none().then(|| format!("/run/secrets/{id}")));
                key.add(
                    "mount",
                    format!(
                        "secret\0{id}\0{}\0{}",
                        dest.clone().unwrap_or_default(),
                        m.env.clone().unwrap_or_default()
                    ),
                );
                let value = match self.req.secrets.get(&id) {
                    Some(SecretSource::Value(v)) => v.clone().into_bytes(),
                    Some(SecretSource::File(p)) => std::fs::read(p).map_err(|e| {
                        Failure::new(
                            Exit::Input,
                            format!("cannot read secret `{id}` from `{}`", p.display()),
                        )
                        .caused_by(e)
                    })?,
                    None if m.required => {
                        return Err(Failure::new(
                            Exit::Input,
                            format!("secret `{id}` is required by `RUN --mount` but was not given"),
                        )
                        .hint(format!(
                            "pass it: `--secret id={id},src=FILE` or `--secret id={id},env=VAR`"
                        ))
                        .into());
                    }
                    None => return Ok(()),
                };
                let text = String::from_utf8(value).map_err(|_| {
                    Failure::new(
                        Exit::Input,
                        format!("secret `{id}` is not text; rbuild passes secrets as UTF-8 files"),
                    )
                    .hint("encode it, e.g. with base64, and decode it in the step")
                })?;
                if let Some(var) = &m.env {
                    secret_env.push(format!("{var}={}", text.trim_end_matches('\n')));
                }
                if let Some(dest) = dest {
                    mounts.push(Mount::File {
                        dest,
                        contents: text,
                        perm: Some(FilePerm {
                            mode: m.mode.unwrap_or(0o400),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                        }),
                    });
                }
            }
            MountType::Bind => {
                let target = trim(need_target()?);
                let source = m.source.clone().unwrap_or_else(|| "/".to_owned());
                let readonly = m.readonly;
                // The build context and named directory contexts bind alike.
                let from = match m.from.as_deref().map(|f| self.resolve_from(f)) {
                    None => FromRef::Dir(&self.context),
                    Some(f) => f,
                };
                match from {
                    FromRef::Dir(ctx) => {
                        let (host, digest) = ctx.subtree(&source).map_err(|e| {
                            Failure::new(
                                Exit::Input,
                                format!("`RUN --mount=type=bind,source={source}`"),
                            )
                            .caused_by(e)
                        })?;
                        key.add("mount", format!("bind-context\0{target}\0{digest}"));
                        volumes.push(Volume {
                            source: host,
                            dest: target,
                            readonly: true,
                        });
                    }
                    FromRef::Stage(i) => {
                        let s = self.stage_dep(c, i)?;
                        key.add(
                            "mount",
                            format!("bind-stage\0{target}\0{source}\0{}\0{readonly}", s.fs_key),
                        );
                        trees.push(s.layers.iter().map(|l| self.layer_spec(l)).collect());
                        mounts.push(Mount::Tree {
                            tree: trees.len() - 1,
                            path: source,
                            dest: target,
                            readonly,
                        });
                    }
                    FromRef::Image(r) => {
                        let (layers, fs_key) = self.image_tree(&r, &c.platform)?;
                        key.add(
                            "mount",
                            format!("bind-image\0{target}\0{source}\0{fs_key}\0{readonly}"),
                        );
                        trees.push(layers);
                        mounts.push(Mount::Tree {
                            tree: trees.len() - 1,
                            path: source,
                            dest: target,
                            readonly,
                        });
                    }
                }
            }
            MountType::Ssh => {
                return Err(Failure::new(
                    Exit::Input,
                    "`RUN --mount=type=ssh` is not supported by rbuild",
                )
                .hint("fetch private sources with a `--mount=type=secret` token instead")
                .into());
            }
        }
        Ok(())
    }

    /// `COPY`/`ADD`: failures the input causes become `copy-failed` diagnostics.
    fn copy(
        &self,
        c: &StageCtx<'_>,
        st: &mut State,
        step: &Step,
        a: &CopyArgs<'_>,
        shown: &str,
    ) -> anyhow::Result<()> {
        self.copy_inner(c, st, step, a, shown).map_err(|e| {
            if e.downcast_ref::<Canceled>().is_some() || diagnose::diagnostic_of(&e).is_some() {
                return e;
            }
            let (exit, hints) = crate::outcome::classify(&e);
            if exit != Exit::Input {
                return e;
            }
            let message: Vec<String> = e.chain().map(ToString::to_string).collect();
            let mut d = Cause::CopyFailed
                .error(message.join(": "))
                .with_step(self.step_name(c, shown));
            if let Some(h) = hints.first() {
                d.hint = Some(h.clone());
            }
            Diagnosed::new(d, Exit::Input).into()
        })
    }

    fn copy_inner(
        &self,
        c: &StageCtx<'_>,
        st: &mut State,
        step: &Step,
        a: &CopyArgs<'_>,
        shown: &str,
    ) -> anyhow::Result<()> {
        let span = step.instruction.span;
        let ins = a.instruction;
        let dest = resolve_dest(a.dest, &st.workdir());
        let chmod = match a.chmod {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| {
                        Failure::new(
                            Exit::Input,
                            format!("`{ins} --chmod={m}` is not an octal mode"),
                        )
                        .hint("write the mode in octal, e.g. `--chmod=755`")
                    })?,
            ),
        };
        if a.sources.len() + a.inline.len() > 1 && !a.dest.ends_with('/') {
            // Checked again (against the image) by the helper; a destination that is
            // not an existing directory is an error there.
        }
        let mut key = Key::new(if a.link { "copy-link" } else { "copy" });
        if !a.link {
            key.add("parent", &st.fs_key);
        }
        key.add("instruction", ins)
            .add("dest", &dest)
            .add("chown", a.chown.unwrap_or(""))
            .add("chmod", chmod.map(|m| format!("{m:o}")).unwrap_or_default())
            .add("parents", a.parents.to_string());
        let mut items: Vec<Item> = Vec::new();
        let mut trees: Vec<Vec<LayerSpec>> = Vec::new();
        let source = match a.from.map(|f| self.resolve_from(f)) {
            Some(FromRef::Stage(i)) => {
                let s = self.stage_dep(c, i)?;
                key.add("from", &s.fs_key)
                    .list("paths", a.sources)
                    .list("exclude", a.exclude);
                trees.push(s.layers.iter().map(|l| self.layer_spec(l)).collect());
                CopySource::Tree {
                    tree: 0,
                    paths: a.sources.to_vec(),
                    parents: a.parents,
                    excludes: a.exclude.to_vec(),
                }
            }
            Some(FromRef::Image(r)) => {
                let (layers, fs_key) = self.image_tree(&r, &c.platform)?;
                key.add("from", &fs_key)
                    .list("paths", a.sources)
                    .list("exclude", a.exclude);
                trees.push(layers);
                CopySource::Tree {
                    tree: 0,
                    paths: a.sources.to_vec(),
                    parents: a.parents,
                    excludes: a.exclude.to_vec(),
                }
            }
            from => {
                let ctx = match from {
                    Some(FromRef::Dir(ctx)) => ctx,
                    _ => &self.context,
                };
                let (urls, local): (Vec<String>, Vec<String>) =
                    a.sources.iter().cloned().partition(|s| a.add && is_url(s));
                let opts = context::Options {
                    excludes: a.exclude.to_vec(),
                    parents: a.parents,
                    unpack_archives: a.add && a.unpack,
                };
                let srcs = ctx.sources(&local, &opts).map_err(|e| {
                    let hint = match &e {
                        context::ContextError::NotFound(_) => format!(
                            "paths are relative to the build context `{}`; check them and `.dockerignore`",
                            ctx.root().display()
                        ),
                        _ => "check the build context".to_owned(),
                    };
                    Failure::new(Exit::Input, format!("`{ins}` cannot read its sources"))
                        .hint(hint)
                        .caused_by(e)
                })?;
                key.add("sources", &srcs.digest);
                items = srcs.items;
                let mtime = i64::try_from(self.req.created.unix).unwrap_or(0);
                for doc in a.inline {
                    let bytes = doc.content.clone().into_bytes();
                    key.add("inline", format!("{}\0{}", doc.name, doc.content));
                    let size = bytes.len() as u64;
                    items.push(context::data_item(
                        &doc.name,
                        Data::Bytes(Arc::new(bytes)),
                        size,
                        0o644,
                        mtime,
                    ));
                }
                for url in urls {
                    let (item, digest) = self.download(&url, a.checksum)?;
                    key.add("url", format!("{url}\0{digest}"));
                    items.push(item);
                }
                CopySource::Stream {
                    items: items
                        .iter()
                        .enumerate()
                        .map(|(i, it)| StreamItem {
                            index: i,
                            name: it.name.clone(),
                            kind: it.kind,
                            parents: it.parents,
                        })
                        .collect(),
                }
            }
        };
        let key = key.finish();
        let name = self.step_name(c, shown);
        if items.is_empty() && trees.is_empty() {
            // Wildcards that matched nothing: nothing to copy (BuildKit does not fail).
            let id = self.next_step();
            self.start_event(id, &name, &st.platform, span);
            self.finish_event(id, Outcome::Cached, Instant::now());
            st.meta(format!("{shown} # buildkit"));
            return Ok(());
        }
        let op = FileOp::Copy(CopyOp {
            instruction: ins.to_owned(),
            source,
            dest,
            chown: a.chown.map(str::to_owned),
            chmod,
        });
        let created_by = format!("{shown} # buildkit");
        self.fs_step(st, &key, &name, span, created_by, move |st, r| {
            self.files_step(c, st, r, vec![op], items, trees, a.link)
        })
    }

    /// `ADD URL`: downloads (verified against `--checksum`) into a temp file of the
    /// cache directory.
    fn download(&self, url: &str, checksum: Option<&str>) -> anyhow::Result<(Item, String)> {
        super::download::fetch(self, url, checksum)
    }
}

/// `::1` → `[::1]` for `SocketAddr` parsing.
fn bracket(addr: &str) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    }
}

/// A sandbox planning error, classified.
fn plan_error(e: &sandbox::PlanError) -> anyhow::Error {
    match e {
        sandbox::PlanError::Ids(ids) => Failure::new(Exit::Host, ids.message.clone())
            .hint(ids.hint.clone())
            .into(),
        sandbox::PlanError::NotRunnable(nr) => {
            // From the catalog entry, so the diagnostic carries its page like every other
            // cause; the title names the platform.
            let mut d = Cause::BinfmtNotRegistered.error(nr.to_string());
            d.title = format!("cannot run `{}` binaries", nr.platform);
            let d = d
                .with_hint(nr.hint.clone())
                .with_platform(nr.platform.clone());
            Diagnosed::new(d, Exit::Host).into()
        }
        other => Failure::new(Exit::Input, other.to_string()).into(),
    }
}

/// A step being executed (a cache miss).
pub(super) struct StepRun<'a> {
    key: &'a str,
    /// The snapshot name its upper directory is kept as.
    snapshot: String,
    /// Its progress step number.
    id: u32,
    /// Its instruction's lines in the Dockerfile (what its diagnostics point at).
    span: Span,
}

/// `2024-05-01T12:00:00Z` (fractions and offsets allowed) as Unix seconds.
pub(super) fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let seconds = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let mut rest = &text[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let hours: i64 = r[1..3].parse().ok()?;
            let minutes: i64 = r[4..6].parse().ok()?;
            let o = hours * 3600 + minutes * 60;
            if r.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + seconds - offset).ok()
}

/// `80` → `80/tcp`; `8000-8002/udp` → three ports.
fn expand_port(p: &str) -> Vec<String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if let Some((a, b)) = ports.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
        && a <= b
        && b - a < 65536
    {
        return (a..=b).map(|n| format!("{n}/{proto}")).collect();
    }
    vec![format!("{ports}/{proto}")]
}

fn healthcheck_json(h: &Healthcheck) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), serde_json::json!(h.test));
    for (k, v) in [
        ("Interval", nanos(h.interval)),
        ("Timeout", nanos(h.timeout)),
        ("StartPeriod", nanos(h.start_period)),
        ("StartInterval", nanos(h.start_interval)),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), serde_json::json!(v));
        }
    }
    if let Some(r) = h.retries.filter(|r| *r > 0) {
        m.insert("Retries".into(), serde_json::json!(r));
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456789Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn destinations_resolve_against_the_workdir() {
        assert_eq!(resolve_dest("rel/", "/work"), "/work/rel/");
        assert_eq!(resolve_dest(".", "/work"), "/work/");
        assert_eq!(resolve_dest("/abs/../x", "/work"), "/x");
        assert_eq!(resolve_dest("file", "/"), "/file");
        assert_eq!(resolve_dest("/", "/w"), "/");
    }

    #[test]
    fn heredoc_runs_follow_buildkit() {
        let doc = |name: &str, content: &str| dockerfile::ast::Heredoc {
            name: name.into(),
            fd: 0,
            expand: true,
            chomp: false,
            content: content.into(),
        };
        let sh = vec!["/bin/sh".to_owned(), "-c".to_owned()];
        let cmd = CommandLine {
            args: vec!["<<EOF".into()],
            shell_form: true,
            heredocs: vec![doc("EOF", "echo a\necho b\n")],
        };
        assert_eq!(
            command_argv(&cmd, &sh).0,
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        let cmd = CommandLine {
            args: vec!["<<EOF".into()],
            shell_form: true,
            heredocs: vec![doc("EOF", "#!/usr/bin/env python3\nprint(1)\n")],
        };
        let (argv, script) = command_argv(&cmd, &sh);
        assert_eq!(argv, ["/dev/pipes/EOF"]);
        assert!(script.unwrap().1.starts_with("#!"));
        let cmd = CommandLine {
            args: vec!["cat <<A > /x".into()],
            shell_form: true,
            heredocs: vec![doc("A", "line\n")],
        };
        assert_eq!(command_argv(&cmd, &sh).0[2], "cat <<A > /x\nline\nA");
        assert_eq!(expand_port("8000-8002/udp").len(), 3);
        assert_eq!(expand_port("80"), ["80/tcp"]);
    }
}

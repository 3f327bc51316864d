//! `rbuild build`: checks the flags into a [`solve::Request`], runs the build with
//! progress and diagnostics, exports the result, and writes `--metadata-file` /
//! `--iidfile`. Prints the image's digest (the index for several platforms) on stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{BuildArgs, MessageFormat, Network as CliNetwork, Progress as CliProgress};
use crate::diagnose::render::{Format, Outputs};
use crate::diagnose::{Collector, Diagnostic, diagnostic_of};
use crate::envvars;
use crate::image::export::Output;
use crate::image::writer::Created;
use crate::layer::compress::Compression;
use crate::outcome::{Exit, Failure};
use crate::progress::{Event, Mode, Renderer};
use crate::registry::ImageRef;
use crate::sandbox::spec::Network;
use crate::solve::{self, NamedContext, SecretSource};

use super::absolute;
use super::pull::{cache_dir, open_store, parse_platforms, println_data};

/// Runs `rbuild build`.
pub fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (req, export) = request(args)?;
    let format = Format::from_env(args.message_format.map(MessageFormat::into));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty());
    let outputs = Outputs {
        format,
        colour,
        diagnostics_file: args.diagnostics_file.clone(),
        codequality_file: args.codequality_file.clone(),
        step_summary: (format == Format::Github)
            .then(|| std::env::var_os(envvars::GITHUB_STEP_SUMMARY))
            .flatten()
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        default_path: req.dockerfile_name.clone(),
    };
    let mode = match args.progress {
        CliProgress::Auto => Mode::auto(std::io::stderr().is_terminal()),
        CliProgress::Tty => Mode::Tty,
        CliProgress::Plain => Mode::Plain,
        CliProgress::Json => Mode::Json,
    };
    let store = open_store(Some(&req.cache_dir))?;
    let (progress, renderer) = Renderer::start(mode, std::io::stderr());
    let collector = Collector::new();
    let sessions = crate::sandbox::Sessions::new();
    let env = solve::Env {
        store: &store,
        progress: &progress,
        diagnostics: &collector,
        sessions: &sessions,
    };
    let result = solve::build(&req, env).and_then(|built| {
        let exported = solve::export(&store, &built, &export, &progress)?;
        Ok((built, exported))
    });
    let (executed, cached) = result
        .as_ref()
        .map_or((0, 0), |(b, _)| (b.executed, b.cached));
    let mut diags: Vec<Diagnostic> = collector.take();
    if let Err(e) = &result
        && let Some(d) = diagnostic_of(e)
        && !diags.contains(d)
    {
        diags.insert(0, d.clone());
    }
    for d in &diags {
        progress.send(Event::Diagnostic {
            diagnostic: d.clone(),
        });
    }
    progress.send(Event::BuildFinished {
        ok: result.is_ok(),
        seconds: started.elapsed().as_secs_f64(),
        executed,
        cached,
    });
    drop(progress);
    renderer.finish();

    let emitted = outputs
        .emit(&diags, &mut std::io::stderr().lock())
        .and_then(|()| write_to_diagnostics_dir(&diags));
    if let Err(e) = emitted {
        // The diagnostics files could not be written: a failure of its own unless the
        // build already failed (then that is what the user needs to see).
        if result.is_ok() {
            return Err(Failure::new(Exit::Input, "cannot write the diagnostics")
                .caused_by(e)
                .into());
        }
    }
    tracing::debug!(
        peak_rss_kb = crate::sandbox::peak_rss_kb(),
        "build: rbuild's own resources"
    );
    let (built, exported) = result?;
    write_metadata(args, &built, &exported)?;
    println_data(&exported.root.digest.to_string())
}

/// Writes the diagnostics to a new file in `$RBUILD_DIAGNOSTICS_DIR`, when it is set (a CI
/// runner collects them from there).
fn write_to_diagnostics_dir(diags: &[Diagnostic]) -> std::io::Result<()> {
    let Some(dir) = std::env::var_os(envvars::RBUILD_DIAGNOSTICS_DIR).filter(|d| !d.is_empty())
    else {
        return Ok(());
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = Path::new(&dir).join(format!("rbuild-build-{}-{nanos}.json", std::process::id()));
    let json = serde_json::to_vec_pretty(diags).map_err(std::io::Error::other)?;
    // Written beside and renamed, so a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    fs_err::write(&partial, json)?;
    fs_err::rename(&partial, &path)
}

/// `--metadata-file` (buildx's keys, plus rbuild's `rbuild.platforms`: manifest digest per
/// platform, and `rbuild.cache`: steps cached and run) and `--iidfile`.
fn write_metadata(
    args: &BuildArgs,
    built: &solve::Built,
    e: &solve::Exported,
) -> anyhow::Result<()> {
    let image_id = match e.configs.as_slice() {
        [one] if crate::image::media::is_manifest(&e.root.media_type) => one.to_string(),
        _ => e.root.digest.to_string(),
    };
    if let Some(path) = &args.metadata_file {
        let mut doc = serde_json::json!({
            "containerimage.digest": e.root.digest.to_string(),
            "containerimage.descriptor": {
                "mediaType": e.root.media_type,
                "digest": e.root.digest.to_string(),
                "size": e.root.size,
            },
            "image.name": e.names.join(","),
            "rbuild.cache": { "hits": built.cached, "misses": built.executed },
        });
        let platforms: serde_json::Map<String, serde_json::Value> = e
            .manifests
            .iter()
            .filter_map(|m| {
                let p = m.platform.as_ref()?;
                Some((p.to_string(), serde_json::json!(m.digest.to_string())))
            })
            .collect();
        doc["rbuild.platforms"] = serde_json::Value::Object(platforms);
        if let [one] = e.configs.as_slice() {
            doc["containerimage.config.digest"] = serde_json::json!(one.to_string());
        }
        let mut bytes = serde_json::to_vec_pretty(&doc).context("cannot encode the metadata")?;
        bytes.push(b'\n');
        crate::diagnose::render::write_atomic(path, &bytes).map_err(|err| {
            Failure::new(Exit::Input, format!("cannot write `{}`", path.display())).caused_by(err)
        })?;
    }
    if let Some(path) = &args.iidfile {
        crate::diagnose::render::write_atomic(path, image_id.as_bytes()).map_err(|err| {
            Failure::new(Exit::Input, format!("cannot write `{}`", path.display())).caused_by(err)
        })?;
    }
    Ok(())
}

fn usage(msg: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Failure::new(Exit::Usage, msg).hint(hint).into()
}

/// `KEY=VALUE` pairs; `KEY` alone takes the value from rbuild's environment when `env`
/// (as `docker build --build-arg KEY` does).
fn pairs(values: &[String], flag: &str, env: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => {
                out.insert(k.to_owned(), val.to_owned());
            }
            None if env && !v.is_empty() => {
                if let Ok(val) = std::env::var(v) {
                    out.insert(v.clone(), val);
                }
            }
            _ => {
                return Err(usage(
                    format!("`{flag} {v}` is not of the form `KEY=VALUE`"),
                    format!("write `{flag} {v}=value`"),
                ));
            }
        }
    }
    Ok(out)
}

/// `--secret id=ID,src=PATH` / `id=ID,env=VAR` (also `type=file|env`, `source=`).
fn secret(spec: &str) -> anyhow::Result<(String, SecretSource)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k.trim() {
            "id" => id = Some(v.to_owned()),
            "src" | "source" => src = Some(v.to_owned()),
            "env" => env = Some(v.to_owned()),
            "type" => kind = Some(v.to_owned()),
            other => {
                return Err(usage(
                    format!("`--secret {spec}`: unknown attribute `{other}`"),
                    "write `--secret id=ID,src=PATH` or `--secret id=ID,env=VAR`",
                ));
            }
        }
    }
    let id = id.or_else(|| env.clone()).or_else(|| {
        src.as_deref()
            .and_then(|s| Path::new(s).file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        return Err(usage(
            format!("`--secret {spec}` has no `id=`"),
            "write `--secret id=ID,src=PATH`",
        ));
    };
    let from_env = kind.as_deref() == Some("env") || (env.is_some() && src.is_none());
    if from_env {
        let var = env.or(src).unwrap_or_else(|| id.clone());
        let value = std::env::var(&var).map_err(|_| {
            Failure::new(
                Exit::Usage,
                format!("`--secret {spec}`: the environment variable `{var}` is not set"),
            )
            .hint(format!("export `{var}` before running rbuild"))
        })?;
        return Ok((id, SecretSource::Value(value)));
    }
    let path = absolute(Path::new(&src.unwrap_or_else(|| id.clone())))?;
    if !path.is_file() {
        return Err(usage(
            format!("`--secret {spec}`: `{}` is not a file", path.display()),
            "give the file holding the secret with `src=PATH`",
        ));
    }
    Ok((id, SecretSource::File(path)))
}

/// `--output` values, with `compression=` (and its companions) taken out first.
fn outputs(values: &[String]) -> anyhow::Result<(Vec<Output>, Option<Compression>)> {
    let mut out = Vec::new();
    let mut compression = None;
    let mut level: Option<i64> = None;
    for v in values {
        let mut kept = Vec::new();
        for part in v.split(',') {
            match part.split_once('=') {
                Some(("compression", c)) => compression = Some(c.to_ascii_lowercase()),
                Some(("compression-level", l)) => {
                    level = Some(l.parse().map_err(|_| {
                        usage(
                            format!("`compression-level={l}` is not a number"),
                            "e.g. `compression-level=3`",
                        )
                    })?);
                }
                Some(("force-compression" | "oci-mediatypes", _)) => {}
                _ => kept.push(part),
            }
        }
        let text = kept.join(",");
        out.push(Output::parse(&text).map_err(|e| {
            Failure::new(Exit::Usage, format!("invalid `--output {v}`")).caused_by(e)
        })?);
    }
    let c = match compression.as_deref() {
        None => None,
        Some("gzip") => Some(Compression::Gzip {
            level: u32::try_from(level.unwrap_or(6).clamp(1, 9)).unwrap_or(6),
        }),
        Some("zstd") => Some(Compression::Zstd {
            level: i32::try_from(level.unwrap_or(3).clamp(1, 19)).unwrap_or(3),
        }),
        Some("uncompressed") => Some(Compression::None),
        Some(other) => {
            return Err(usage(
                format!("`compression={other}` is not known"),
                "use `compression=gzip`, `compression=zstd` or `compression=uncompressed`",
            ));
        }
    };
    Ok((out, c))
}

/// `--cache-from` / `--cache-to` values.
fn cache_specs(values: &[String], flag: &str) -> anyhow::Result<Vec<solve::CacheSpec>> {
    values
        .iter()
        .map(|v| {
            solve::CacheSpec::parse(v).map_err(|e| {
                usage(
                    format!("invalid `{flag} {v}`: {e}"),
                    format!("e.g. `{flag} type=registry,ref=registry.example.com/app:buildcache`"),
                )
            })
        })
        .collect()
}

/// Checks the flags.
fn request(args: &BuildArgs) -> anyhow::Result<(solve::Request, solve::ExportRequest)> {
    let context = absolute(&args.context)?;
    if !context.is_dir() {
        return Err(usage(
            format!(
                "the build context `{}` is not a directory",
                args.context.display()
            ),
            "pass the directory the Dockerfile's `COPY` sources are in, e.g. `rbuild build .`",
        ));
    }
    let (dockerfile, dockerfile_name) = match &args.file {
        Some(f) if f == Path::new("-") => {
            return Err(usage(
                "reading the Dockerfile from stdin is not supported",
                "write it to a file and pass `-f FILE`",
            ));
        }
        Some(f) => (absolute(f)?, f.display().to_string()),
        None => (
            context.join("Dockerfile"),
            args.context.join("Dockerfile").display().to_string(),
        ),
    };
    let dockerfile_name = dockerfile_name
        .strip_prefix("./")
        .map(str::to_owned)
        .unwrap_or(dockerfile_name);
    let dockerfile_bytes = std::fs::read(&dockerfile).map_err(|e| {
        Failure::new(
            Exit::Input,
            format!("cannot read the Dockerfile `{dockerfile_name}`"),
        )
        .hint("pass the Dockerfile with `-f PATH`, or put a `Dockerfile` in the build context")
        .caused_by(e)
    })?;
    let platforms = if args.platforms.is_empty() {
        vec![crate::image::Platform::host()]
    } else {
        let mut v = parse_platforms(&args.platforms)?;
        let mut seen = std::collections::BTreeSet::new();
        v.retain(|p| seen.insert(p.to_string()));
        v
    };
    let mut named_contexts = BTreeMap::new();
    for c in &args.build_contexts {
        let Some((name, value)) = c.split_once('=') else {
            return Err(usage(
                format!("`--build-context {c}` is not `NAME=VALUE`"),
                "e.g. `--build-context deps=../deps` or `--build-context base=oci-layout://./base`",
            ));
        };
        let ctx = if value.starts_with("oci-layout://") || value.starts_with("docker-image://") {
            let v = match value.strip_prefix("oci-layout://") {
                Some(p) if !p.starts_with('/') => {
                    format!("oci-layout://{}", absolute(Path::new(p))?.display())
                }
                _ => value.to_owned(),
            };
            NamedContext::Image(v)
        } else {
            let dir = absolute(Path::new(value))?;
            if !dir.is_dir() {
                return Err(usage(
                    format!("`--build-context {c}`: `{value}` is not a directory"),
                    "name a directory, `oci-layout://PATH[:TAG]` or `docker-image://REF`",
                ));
            }
            NamedContext::Dir(dir)
        };
        named_contexts.insert(name.to_owned(), ctx);
    }
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        let (id, src) = secret(s)?;
        secrets.insert(id, src);
    }
    let (outputs, compression) = outputs(&args.outputs)?;
    let mut tags = Vec::new();
    for t in &args.tags {
        let r: ImageRef = t.parse().map_err(|e| {
            Failure::new(Exit::Usage, format!("`--tag {t}` is not an image name"))
                .hint("e.g. `--tag registry.example.com/team/app:1.0`")
                .caused_by(e)
        })?;
        tags.push(r);
    }
    let pushes = args.push
        || outputs
            .iter()
            .any(|o| matches!(o, Output::Registry { name: None }));
    if pushes && tags.is_empty() {
        return Err(usage(
            "`--push` needs a name to push to",
            "add `--tag REGISTRY/REPO:TAG`",
        ));
    }
    let created = Created::from_env().map_err(|e| {
        Failure::new(Exit::Usage, e.to_string())
            .hint("unset it or set it to a Unix time, e.g. `SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)`")
    })?;
    let epoch = std::env::var(envvars::SOURCE_DATE_EPOCH)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|_| created.unix);
    let cache_dir = absolute(&cache_dir(args.cache_dir.as_deref())?)?;
    let registry = super::pull::options(&crate::cli::StoreArgs {
        cache_dir: None,
        insecure_registries: args.insecure_registries.clone(),
    })?;
    let req = solve::Request {
        context,
        dockerfile,
        dockerfile_bytes,
        dockerfile_name,
        platforms,
        build_args: pairs(&args.build_args, "--build-arg", true)?,
        target: args.target.clone(),
        labels: pairs(&args.labels, "--label", false)?,
        named_contexts,
        secrets,
        network: match args.network {
            CliNetwork::Host => Network::Host,
            CliNetwork::None => Network::None,
        },
        no_cache: args.no_cache,
        pull: args.pull,
        cache_dir,
        registry: registry.clone(),
        epoch,
        created,
        compression: compression.unwrap_or(Compression::DEFAULT),
        cache_from: cache_specs(&args.cache_from, "--cache-from")?,
        cache_to: cache_specs(&args.cache_to, "--cache-to")?,
    };
    let export = solve::ExportRequest {
        tags,
        push: args.push,
        outputs,
        created,
        mtime: epoch.unwrap_or(0),
        registry,
    };
    Ok((req, export))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_take_compression_out() {
        let (o, c) =
            outputs(&["type=oci,dest=x.tar,compression=zstd,compression-level=5".into()]).unwrap();
        assert_eq!(
            o,
            [Output::Oci {
                dest: "x.tar".into(),
                tar: true,
                name: None
            }]
        );
        assert_eq!(c, Some(Compression::Zstd { level: 5 }));
        assert!(outputs(&["type=oci,dest=x,compression=lz4".into()]).is_err());
    }

    #[test]
    fn secrets_from_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "t").unwrap();
        let (id, s) = secret(&format!("id=tok,src={}", f.display())).unwrap();
        assert_eq!((id.as_str(), s), ("tok", SecretSource::File(f.clone())));
        assert!(secret("id=x,src=/nonexistent/file").is_err());
        assert!(secret("id=x,bogus=1").is_err());
        // SAFETY-free: a variable unique to this test.
        let (id, s) = secret("id=p,env=PATH").unwrap();
        assert_eq!(id, "p");
        assert!(matches!(s, SecretSource::Value(_)));
    }

    #[test]
    fn build_args_need_a_key() {
        assert!(pairs(&["=x".into()], "--build-arg", true).is_err());
        let p = pairs(&["A=1".into(), "B=".into()], "--build-arg", true).unwrap();
        assert_eq!(p.get("A").map(String::as_str), Some("1"));
        assert_eq!(p.get("B").map(String::as_str), Some(""));
    }
}

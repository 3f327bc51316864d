//! `rbuild run`: run an image in a fresh unprivileged sandbox.
//!
//! Resolves the image through the `sandbox::source` seam (OCI layouts today; registry
//! references once the registry client is merged), plans the sandbox, runs it in the
//! foreground and turns the result into an exit status and diagnostics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::arch::Platform;
use crate::cli::{Network as CliNetwork, RunArgs};
use crate::diagnose::{Diagnostic, Severity};
use crate::envvars;
use crate::outcome::{Exit, Failure};
use crate::sandbox::result::{FailureClass, Status, signal_name};
use crate::sandbox::source::{ImageSource, OciLayout};
use crate::sandbox::spec::{Network, RootfsMode};
use crate::sandbox::{self, HostFacts, PlanError, RunOptions, SandboxError, Volume};

use super::absolute;

/// Runs `rbuild run`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>().map_err(|e| {
            Failure::new(Exit::Usage, e.to_string()).hint("e.g. `--platform linux/arm64`")
        })?,
        None => Platform::host(),
    };
    let cache = match &args.cache_dir {
        Some(d) => absolute(d)?,
        None => default_cache_dir().ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                "neither `XDG_CACHE_HOME` nor `HOME` is set, so rbuild has no cache directory",
            )
            .hint("pass `--cache-dir DIR`")
        })?,
    };
    let image = match OciLayout::parse(&args.image) {
        Some(layout) => layout_image(args, layout, &platform)?,
        None => registry_image(args, &cache, &platform)?,
    };

    let timeout = args
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| {
            Failure::new(Exit::Usage, e)
                .hint("e.g. `--timeout 90`, `--timeout 30s`, `--timeout 5m`")
        })?;
    let volumes = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(Exit::Usage, e).hint("e.g. `-v ./src:/src:ro`"))?;
    let opts = RunOptions {
        state_dir: cache.join("sandbox"),
        command: args.command.clone(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        hostname: args.hostname.clone(),
        network: match args.network {
            CliNetwork::Host => Network::Host,
            CliNetwork::None => Network::None,
        },
        volumes,
        timeout,
        rootfs: if std::env::var(envvars::RBUILD_ROOTFS).is_ok_and(|v| v == "copy") {
            RootfsMode::Copy
        } else {
            RootfsMode::Overlay
        },
    };
    let host = HostFacts::gather(&image.platform);
    let spec = sandbox::plan(&image, &opts, &host).map_err(|e| {
        let mut diags = Vec::new();
        let failure = match &e {
            PlanError::Ids(ids) => {
                Failure::new(Exit::Host, ids.message.clone()).hint(ids.hint.clone())
            }
            PlanError::NotRunnable(nr) => {
                // From the catalog entry (with its page), titled with the platform.
                let mut d = crate::diagnose::Cause::BinfmtNotRegistered.error(nr.to_string());
                d.title = format!("cannot run `{}` binaries", nr.platform);
                diags.push(
                    d.with_hint(nr.hint.clone())
                        .with_platform(nr.platform.clone()),
                );
                Failure::new(Exit::Host, nr.to_string()).hint(nr.hint.clone())
            }
            PlanError::NoCommand => Failure::new(Exit::Input, e.to_string())
                .hint("pass a command after `--`, e.g. `rbuild run IMAGE -- sh`"),
            PlanError::BadVolume(_) | PlanError::BadWorkdir(_) => {
                Failure::new(Exit::Usage, e.to_string())
            }
        };
        let _ = write_diagnostics(args.diagnostics_file.as_deref(), &diags);
        failure
    })?;

    let platform_s = image.platform.to_string();
    let outcome = sandbox::run_foreground(&spec);
    let mut diags: Vec<Diagnostic> = Vec::new();
    let result = match outcome {
        Ok(r) => r,
        Err(SandboxError::Setup(f)) => {
            diags.extend(
                f.facts
                    .iter()
                    .map(|x| x.to_diagnostic().with_platform(platform_s.clone())),
            );
            let exit = match f.class {
                FailureClass::Input => Exit::Input,
                FailureClass::Host => Exit::Host,
                FailureClass::Bug => Exit::Bug,
            };
            print_diagnostics(&diags);
            write_diagnostics(args.diagnostics_file.as_deref(), &diags)?;
            return Err(setup_error(&f.message, &f.causes, &f.hints, exit));
        }
        Err(e) => {
            let causes: Vec<String> =
                std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                    .map(ToString::to_string)
                    .collect();
            return Err(setup_error("the sandbox failed", &causes, &[], Exit::Bug));
        }
    };
    diags.extend(
        result
            .facts
            .iter()
            .map(|x| x.to_diagnostic().with_platform(platform_s.clone())),
    );
    print_diagnostics(&diags);

    let failure = match &result.status {
        Status::Exited { code: 0 } => None,
        Status::Exited { code } => Some(Failure::new(
            Exit::Input,
            format!("the command exited with status {code}"),
        )),
        Status::Signaled { signal, .. } => Some(Failure::new(
            Exit::Input,
            format!(
                "the command was killed by signal {signal} ({})",
                signal_name(*signal)
            ),
        )),
        Status::TimedOut { after_ms } => Some(
            Failure::new(
                Exit::Input,
                format!(
                    "the command timed out after {}; everything in its sandbox was killed",
                    show_ms(*after_ms)
                ),
            )
            .hint("raise `--timeout`, or find what hangs (the diagnostics list what was running)"),
        ),
        Status::NotStarted { reason, .. } => Some(Failure::new(
            Exit::Input,
            format!("cannot start the command: {reason}"),
        )),
    };
    if let (Status::TimedOut { .. }, false) = (&result.status, result.killed.is_empty()) {
        let mut d = crate::diagnose::Cause::StepTimedOut.error(format!(
            "killed after {}",
            show_ms(spec.timeout_ms.unwrap_or(0))
        ));
        "the command timed out".clone_into(&mut d.title);
        diags.push(
            d.with_platform(platform_s.clone()).with_evidence(
                result
                    .killed
                    .iter()
                    .map(crate::sandbox::result::Leftover::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }
    write_diagnostics(args.diagnostics_file.as_deref(), &diags)?;
    match failure {
        None => Ok(()),
        Some(f) => Err(f.into()),
    }
}

/// The image of an `oci-layout://` reference.
fn layout_image(
    args: &RunArgs,
    mut layout: OciLayout,
    platform: &Platform,
) -> anyhow::Result<crate::sandbox::source::Image> {
    if layout.root.is_relative() {
        layout.root = std::env::current_dir()
            .context("cannot tell the current directory")?
            .join(&layout.root);
    }
    layout.resolve(platform).map_err(|e| {
        let exit = match e {
            crate::sandbox::source::SourceError::Io { .. }
            | crate::sandbox::source::SourceError::NotALayout { .. } => Exit::Usage,
            _ => Exit::Input,
        };
        let mut f = Failure::new(exit, format!("cannot use image `{}`: {e}", args.image));
        if e.id().is_some() {
            f = f.hint("pick a platform the image has with `--platform`");
        }
        f.into()
    })
}

/// The image of a registry reference: from the content store when it holds it (a pull
/// or a build put it there; not with `--pull`), else pulled.
fn registry_image(
    args: &RunArgs,
    cache: &Path,
    platform: &Platform,
) -> anyhow::Result<crate::sandbox::source::Image> {
    use crate::sandbox::source::{Image, LayerBlob, RunConfig};
    let store = super::pull::open_store(Some(cache))?;
    let wanted: crate::image::Platform = platform
        .to_string()
        .parse()
        .map_err(|e: crate::image::PlatformError| Failure::new(Exit::Usage, e.to_string()))?;
    let local = (!args.pull)
        .then(|| crate::registry::image_from(&store, &args.image, &wanted).ok())
        .flatten()
        .filter(|img| {
            img.layers()
                .iter()
                .all(|l| store.contains(&l.digest, Some(l.size)))
        });
    let resolved = if let Some(img) = local {
        img
    } else {
        let options = super::pull::options(&crate::cli::StoreArgs {
            cache_dir: None,
            insecure_registries: args.insecure_registries.clone(),
        })?;
        crate::registry::pull_image(&store, &args.image, &wanted, &options).map_err(|e| {
            let what = format!("cannot pull `{}` for `{wanted}`", args.image);
            // In the diagnostics file too: a CI runner tells an image pull failure from a
            // failing command by it.
            if let Some(d) = e.diagnostic(&what) {
                let d = d.with_platform(wanted.to_string());
                let _ = write_diagnostics(args.diagnostics_file.as_deref(), &[d]);
            }
            e.into_failure(what)
        })?
    };
    let diff_ids = resolved.config.diff_ids().map_err(|e| {
        Failure::new(
            Exit::Input,
            format!("the config of `{}` cannot be read", args.image),
        )
        .caused_by(e)
    })?;
    let mut layers = Vec::new();
    for (l, diff_id) in resolved.layers().iter().zip(diff_ids) {
        let parse = |d: &str| {
            crate::layer::Digest::parse(d).map_err(|e| {
                Failure::new(
                    Exit::Input,
                    format!("`{}` has a malformed layer digest", args.image),
                )
                .caused_by(e)
            })
        };
        layers.push(LayerBlob {
            digest: parse(&l.digest.to_string())?,
            diff_id: parse(&diff_id.to_string())?,
            media_type: l.media_type.clone(),
            path: store.blob_file(&l.digest),
        });
    }
    let image_platform: Platform = resolved
        .config
        .platform()
        .to_string()
        .parse()
        .unwrap_or_else(|_| platform.clone());
    Ok(Image {
        reference: args.image.clone(),
        platform: image_platform,
        config: RunConfig {
            env: resolved.config.env(),
            entrypoint: resolved.config.entrypoint(),
            cmd: resolved.config.cmd(),
            user: resolved.config.user().unwrap_or_default(),
            working_dir: resolved.config.working_dir().unwrap_or_default(),
        },
        layers,
    })
}

/// `error: MESSAGE` / `caused by: ...` lines for a failure reported as data, classified
/// by its innermost line (where `outcome` looks for the `Failure`).
fn setup_error(message: &str, causes: &[String], hints: &[String], exit: Exit) -> anyhow::Error {
    let mut lines: Vec<String> = std::iter::once(message.to_owned())
        .chain(causes.iter().cloned())
        .collect();
    let innermost = lines.pop().unwrap_or_default();
    let mut failure = Failure::new(exit, innermost);
    for h in hints {
        failure = failure.hint(h.clone());
    }
    let mut err = anyhow::Error::new(failure);
    for line in lines.into_iter().rev() {
        err = err.context(line);
    }
    err
}

fn show_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `90`, `90s`, `5m`, `2h`, `1500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}` is not a duration (units: ms, s, m, h)")),
    };
    if d.is_zero() {
        return Err("a timeout of zero would kill the command at once".to_owned());
    }
    Ok(d)
}

/// `SRC:DEST[:ro|rw]`.
fn parse_volume(v: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dest, readonly) = match parts.as_slice() {
        [s, d] | [s, d, "rw"] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        _ => return Err(format!("`{v}` is not `SRC:DEST[:ro]`")),
    };
    if src.is_empty() || dest.is_empty() {
        return Err(format!("`{v}` is not `SRC:DEST[:ro]`"));
    }
    let source = std::fs::canonicalize(src).map_err(|e| format!("volume source `{src}`: {e}"))?;
    Ok(Volume {
        source,
        dest: dest.to_owned(),
        readonly,
    })
}

/// `$XDG_CACHE_HOME/rbuild`, else `$HOME/.cache/rbuild`.
fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty(envvars::XDG_CACHE_HOME)
        .or_else(|| non_empty(envvars::HOME).map(|h| h.join(".cache")))
        .map(|c| c.join("rbuild"))
}

/// Prints diagnostics on stderr (until the diagnose module's renderers take over).
fn print_diagnostics(diags: &[Diagnostic]) {
    let stderr = std::io::stderr();
    let mut out = stderr.lock();
    for d in diags {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
        };
        let _ = writeln!(out, "{level}[{}]: {}", d.id, d.title);
        let _ = writeln!(out, "  {}", d.message);
        for e in &d.evidence {
            let _ = writeln!(out, "  - {e}");
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "hint: {h}");
        }
    }
}

fn write_diagnostics(path: Option<&Path>, diags: &[Diagnostic]) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_vec_pretty(diags).context("cannot serialise diagnostics")?;
    std::fs::write(path, json).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot write `{}`: {e}", path.display()),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_mins(5)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn volumes_parse_and_resolve_their_source() {
        let v = parse_volume("/tmp:/work:ro").unwrap();
        assert_eq!(
            (v.source.as_path(), v.dest.as_str(), v.readonly),
            (Path::new("/tmp"), "/work", true)
        );
        assert!(!parse_volume("/tmp:/work").unwrap().readonly);
        assert!(parse_volume("/tmp").is_err());
        assert!(
            parse_volume("/no/such/dir:/x")
                .unwrap_err()
                .contains("/no/such/dir")
        );
    }
}

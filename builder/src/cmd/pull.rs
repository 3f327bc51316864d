//! `rbuild pull`, and what the registry commands share: the store, registry options, and
//! progress lines on stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{PullArgs, StoreArgs};
use crate::envvars;
use crate::image::Platform;
use crate::outcome::{Exit, Failure};
use crate::registry::{Event, ImageRef, Options, Platforms, PullImageError, Registry};
use crate::store::{self, Store};

/// Runs `rbuild pull`.
pub fn run(args: &PullArgs) -> anyhow::Result<()> {
    let image: ImageRef = args
        .image
        .parse()
        .map_err(|e| Failure::new(Exit::Usage, format!("{e}")).hint("e.g. `busybox`, `registry.example.com/team/app:1.0` or `host:5000/app@sha256:<64 hex>`"))?;
    let platforms = if args.all_platforms {
        Platforms::All
    } else if args.platforms.is_empty() {
        Platforms::Host
    } else {
        Platforms::List(parse_platforms(&args.platforms)?)
    };
    let store = open_store(args.store.cache_dir.as_deref())?;
    let registry = Registry::new(options(&args.store)?)
        .map_err(|e| e.into_failure("cannot set up the registry client"))?
        .with_events(print_event(Direction::Pull));
    let pulled = crate::registry::block_on(registry.pull(&store, &image, &platforms))
        .map_err(|e| e.into_failure(format!("cannot pull `{image}`")))?;
    for img in &pulled.images {
        eprintln!(
            "{} {} (config {})",
            img.config.platform(),
            img.manifest_descriptor.digest,
            img.config_digest()
        );
    }
    for m in &pulled.mismatches {
        eprintln!("warning: {m}");
        eprintln!(
            "hint: choose an image that publishes `{}`, or pull it with `--platform {}` (see `rbuild explain {}`)",
            m.wanted,
            m.actual,
            m.cause().id()
        );
    }
    println_data(&pulled.descriptor.digest.to_string())
}

/// Writes one line of data to stdout.
pub(crate) fn println_data(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Parses `--platform` values.
pub(crate) fn parse_platforms(values: &[String]) -> Result<Vec<Platform>, Failure> {
    values
        .iter()
        .map(|p| {
            p.parse::<Platform>().map_err(|e| {
                Failure::new(Exit::Usage, e.to_string())
                    .hint("e.g. `--platform linux/amd64,linux/arm64`")
            })
        })
        .collect()
}

/// The content store at `--cache-dir` or the default place.
pub(crate) fn open_store(dir: Option<&Path>) -> Result<Store, Failure> {
    let dir = cache_dir(dir)?;
    Store::open(&dir).map_err(|e| {
        Failure::new(
            Exit::Host,
            format!("cannot open the content store in `{}`", dir.display()),
        )
        .hint("choose a writable directory with `--cache-dir DIR`")
        .caused_by(e)
    })
}

/// `--cache-dir`, or `$XDG_CACHE_HOME/rbuild`, or `~/.cache/rbuild`.
pub(crate) fn cache_dir(dir: Option<&Path>) -> Result<PathBuf, Failure> {
    match dir {
        Some(d) => Ok(d.to_path_buf()),
        None => store::default_dir().ok_or_else(|| {
            Failure::new(
                Exit::Host,
                "no cache directory: neither `XDG_CACHE_HOME` nor `HOME` is set",
            )
            .hint("pass `--cache-dir DIR`")
        }),
    }
}

/// Registry options from the command line and the environment.
pub(crate) fn options(args: &StoreArgs) -> Result<Options, Failure> {
    let mut o = Options {
        insecure_registries: args.insecure_registries.clone(),
        ..Options::default()
    };
    if let Ok(v) = std::env::var(envvars::RBUILD_PUSH_CHUNK_SIZE)
        && !v.is_empty()
    {
        o.chunk_size = store::parse_size(&v).map_err(|e| {
            Failure::new(
                Exit::Usage,
                format!("`{}`: {e}", envvars::RBUILD_PUSH_CHUNK_SIZE),
            )
        })?;
    }
    Ok(o)
}

/// Which way blobs move, for progress wording.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    Pull,
    Push,
}

/// Progress lines on stderr.
pub(crate) fn print_event(direction: Direction) -> impl Fn(Event) + Send + Sync + 'static {
    move |e| match e {
        Event::Resolved {
            reference,
            digest,
            media_type,
        } => {
            let kind = if crate::image::media::is_index(&media_type) {
                "index"
            } else {
                "manifest"
            };
            eprintln!("{reference}: {kind} {digest}");
        }
        Event::BlobExists { digest, size } => match direction {
            Direction::Pull => eprintln!("  cached  {} {}", digest.short(), human(size)),
            Direction::Push => eprintln!("  exists  {} {}", digest.short(), human(size)),
        },
        Event::BlobFetched { digest, size } => {
            eprintln!("  fetched {} {}", digest.short(), human(size));
        }
        Event::BlobProgress { digest, done, size } => {
            eprintln!(
                "  sending {} {} of {}",
                digest.short(),
                human(done),
                human(size)
            );
        }
        Event::BlobResumed { digest, offset } => {
            eprintln!("  resume  {} at {}", digest.short(), human(offset));
        }
        Event::BlobUploaded { digest, size } => {
            eprintln!("  pushed  {} {}", digest.short(), human(size));
        }
        Event::BlobMounted { digest, size, from } => {
            eprintln!("  mounted {} {} from `{from}`", digest.short(), human(size));
        }
        Event::ManifestPushed { digest, reference } => {
            if reference == digest.to_string() {
                eprintln!("  pushed  manifest {}", digest.short());
            } else {
                eprintln!("  pushed  {digest} as `{reference}`");
            }
        }
    }
}

/// `1.5 MiB`.
pub(crate) fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

impl PullImageError {
    /// A registry failure as a diagnostic for CI (see [`crate::registry::RegistryError::diagnostic`]).
    pub fn diagnostic(&self, what: &str) -> Option<crate::diagnose::Diagnostic> {
        match self {
            PullImageError::Registry(e) => Some(e.diagnostic(what)),
            _ => None,
        }
    }

    /// The classified failure for `outcome`.
    pub fn into_failure(self, what: impl Into<String>) -> Failure {
        match self {
            PullImageError::Registry(e) => e.into_failure(what),
            PullImageError::Reference(e) => Failure::new(Exit::Usage, what).caused_by(e),
            PullImageError::NotStored(name) => Failure::new(Exit::Input, what)
                .hint(format!(
                    "pull it first: `rbuild pull --all-platforms {name}`"
                ))
                .caused_by(PullImageError::NotStored(name)),
            e @ (PullImageError::Layout(_) | PullImageError::Resolve(_)) => {
                Failure::new(Exit::Input, what).caused_by(e)
            }
        }
    }
}

//! The command line: clap definitions, validation into plain values, and dispatch.
//!
//! Flag names follow `docker buildx build` where one exists (see `DESIGN.md`, "Contracts").
//! This module parses and dispatches; it does no work of its own. Commands whose engine has
//! not landed yet say so in their `--help` and fail with a classified error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::outcome::{self, Exit};
use crate::{cmd, envvars};

/// Build OCI images from Dockerfiles without privilege.
///
/// Every build step runs in its own unprivileged user namespace; foreign architectures run
/// through qemu-user. When a build fails, rbuild names the known cause, the Dockerfile line
/// and the fix.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Developer logs on stderr (same as `RBUILD_LOG=debug`)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    ///
    /// Every `RUN`, `COPY`, `ADD` and `WORKDIR` runs in its own unprivileged sandbox; the
    /// platforms of `--platform` and independent stages build concurrently. Steps are
    /// cached by content in `--cache-dir`. Prints the image digest (the index for several
    /// platforms) on stdout; exits 1 when the Dockerfile or a step fails, 2 for bad flags,
    /// 3 when the host cannot build, 4 for registry problems.
    Build(Box<BuildArgs>),
    /// Run an image in a fresh unprivileged sandbox
    Run(Box<RunArgs>),
    /// Parse and lint a Dockerfile without building it
    ///
    /// Prints diagnostics on stderr (`error: FILE:LINE: message (rule-id)` and a `hint:`
    /// line) and exits 1 when the Dockerfile has an error. Lint warnings do not change the
    /// exit status unless the file starts with `# check=error=true`; `# check=skip=RULE,...`
    /// silences rules. Every rule is documented in `docs/rules/<rule-id>.md`.
    Check(CheckArgs),
    /// Check this host for everything rootless and multi-arch builds need
    Doctor(DoctorArgs),
    /// Explain a known failure cause by its id
    Explain(ExplainArgs),
    /// Pull an image into the content store and print its digest
    Pull(PullArgs),
    /// Push an image or index to a registry, an OCI layout or an archive and print its digest
    Push(PushArgs),
    /// Remove unused images and blobs from the content store
    Prune(PruneArgs),
    /// Internal: applies a sandbox spec (started by rbuild itself, never by hand)
    #[command(name = "sandbox-helper", hide = true)]
    SandboxHelper(SandboxHelperArgs),
}

/// `rbuild build`: flags as `docker buildx build` names them.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Dockerfile to build (default: `CONTEXT/Dockerfile`)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Image name and tag, e.g. `registry.example.com/app:1.0` (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Target platforms, comma-separated or repeated (e.g. `linux/amd64,linux/arm64`)
    #[arg(long = "platform", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Build-time variable `KEY=VALUE` (repeatable)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build the stage with this name instead of the last one
    #[arg(long)]
    pub target: Option<String>,
    /// Image label `KEY=VALUE` (repeatable)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Extra named context for `FROM NAME`, `COPY --from=NAME`, `RUN --mount=from=NAME`:
    /// `NAME=DIR`, `NAME=oci-layout://PATH[:TAG]` or `NAME=docker-image://REF` (repeatable)
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// Output: `type=oci,dest=FILE.tar`, `type=oci,dest=DIR,tar=false`, `type=docker,dest=FILE.tar`,
    /// `type=registry`, `type=image`, `type=local,dest=DIR`, `type=tar,dest=FILE`; add
    /// `compression=zstd|gzip|uncompressed` to change how layers are compressed (repeatable)
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Push the result to the registry named by `--tag` (same as `--output type=registry`)
    #[arg(long)]
    pub push: bool,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Resolve base images at their registry even when the content store has them
    #[arg(long)]
    pub pull: bool,
    /// Cache and content-store directory (default: `$XDG_CACHE_HOME/rbuild`)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Import a build cache from a registry: `type=registry,ref=REGISTRY/REPO:TAG` (repeatable)
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Export the build cache to a registry: `type=registry,ref=REGISTRY/REPO:TAG[,mode=max]`
    /// (`mode=max` also keeps the steps of intermediate stages)
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Secret for `RUN --mount=type=secret`: `id=ID,src=PATH` or `id=ID,env=VAR` (repeatable)
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Network for RUN steps
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub network: Network,
    /// Progress output
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Format of diagnostics on stderr (default: `github` when `GITHUB_ACTIONS=true`)
    #[arg(long, value_enum)]
    pub message_format: Option<MessageFormat>,
    /// Write all diagnostics as a JSON array to this file (with `RBUILD_DIAGNOSTICS_DIR` set,
    /// they are also written to a new file in that directory, for a CI runner to report)
    #[arg(long)]
    pub diagnostics_file: Option<PathBuf>,
    /// Write diagnostics as a GitLab Code Quality report to this file
    #[arg(long)]
    pub codequality_file: Option<PathBuf>,
    /// Write buildx-style build metadata (`containerimage.digest`, ...) to this file
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Write the image id (config digest) to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Registry `HOST[:PORT]` to reach over plain http (loopback registries need no flag)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

/// `rbuild run`: flags as `docker run` names them.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Platform of the image to run, e.g. `linux/arm64` (default: the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Network of the sandbox
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub network: Network,
    /// Environment variable `KEY=VALUE`, or `KEY` to pass rbuild's own (repeatable)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User to run as, `name|uid[:group|gid]` (default: the image's)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the sandbox (default: the image's)
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Hostname inside the sandbox
    #[arg(long, default_value = crate::sandbox::DEFAULT_HOSTNAME)]
    pub hostname: String,
    /// Bind a host path into the sandbox: `SRC:DEST[:ro]` (repeatable; no `-v`, which is `--verbose`)
    #[arg(long = "volume")]
    pub volumes: Vec<String>,
    /// Kill the sandbox and everything in it after this long (`90`, `30s`, `5m`, `1h`)
    #[arg(long)]
    pub timeout: Option<String>,
    /// Cache directory: unpacked layers and per-run state (default: `$XDG_CACHE_HOME/rbuild`)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Write the run's diagnostics (warnings and the failure, if any) as a JSON array to this file
    #[arg(long)]
    pub diagnostics_file: Option<PathBuf>,
    /// Look the image up at its registry even when the content store has it
    #[arg(long)]
    pub pull: bool,
    /// Registry `HOST[:PORT]` to reach over plain http (loopback registries need no flag)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Image: a reference (`registry.example.com/app:1.0`, pulled into the content store
    /// unless it is there) or `oci-layout://PATH[:TAG]`
    pub image: String,
    /// Command to run instead of the image's entrypoint and cmd
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `rbuild sandbox-helper` (hidden).
#[derive(Debug, Args)]
pub struct SandboxHelperArgs {
    /// PID of the rbuild process that started the helper
    #[arg(long)]
    pub parent: u32,
    /// Serve a build's steps from one user namespace (see `sandbox::Sessions`)
    #[arg(long)]
    pub session: bool,
}

/// `rbuild check`: exits 1 when the Dockerfile has an error; lint warnings are printed and
/// do not change the exit status (`# check=error=true` in the file makes them errors).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Dockerfile to check
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
    /// Print one S-expression per instruction on stdout, in the classic Docker parser dump
    /// form
    #[arg(long)]
    pub print_ast: bool,
    /// Build-time variable `KEY=VALUE` to check with (repeatable)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Check as if building this stage
    #[arg(long)]
    pub target: Option<String>,
    /// Check as if building for this platform, e.g. `linux/arm64` (default: the host's)
    #[arg(long)]
    pub platform: Option<String>,
}

/// `rbuild doctor`: probes the host (user namespaces, subordinate ids, `newuidmap`,
/// `/proc`, overlayfs, state directory, qemu/binfmt per platform, cgroups, seccomp and
/// AppArmor, limits) and prints what is wrong with the fix. Exits 3 when a build would
/// fail here.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check what building for these platforms needs (comma-separated or repeated;
    /// default: this host's platform, and linux/arm64 or linux/amd64 as a warning only)
    #[arg(long = "platform", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Print the findings as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// State directory to check, as `rbuild build --cache-dir` (default: `$XDG_CACHE_HOME/rbuild`)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Format of the problems printed on stderr (default: `github` when `GITHUB_ACTIONS=true`)
    #[arg(long, value_enum)]
    pub message_format: Option<MessageFormat>,
}

/// `rbuild explain`: prints a catalog entry (what happened, why, the fix, what rbuild
/// does, how it is recognised), the same text as `docs/failures/<id>.md`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Failure-cause id, e.g. `xattr-security-selinux-in-layer`
    #[arg(required_unless_present = "list")]
    pub id: Option<String>,
    /// List every known failure cause
    #[arg(long, conflicts_with = "id")]
    pub list: bool,
    /// Print the entry (or the list) as JSON
    #[arg(long)]
    pub json: bool,
}

/// Where images are cached, and how registries are reached (shared by registry commands).
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Cache and content-store directory (default: `$XDG_CACHE_HOME/rbuild`)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Registry `HOST[:PORT]` to reach over plain http (loopback registries need no flag)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
}

/// `rbuild pull`.
///
/// Resolves the reference (`busybox` is `docker.io/library/busybox:latest`), picks the
/// platforms from an index, and stores manifests, configs and layers, verified, in the
/// content store. Prints the digest the reference points to (the index, or the manifest of
/// a single-platform image) on stdout.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. `busybox`, `registry.example.com/app:1.0`, `host:5000/app@sha256:...`
    pub image: String,
    /// Platforms to pull from an index, comma-separated or repeated (default: this host's)
    #[arg(
        long = "platform",
        value_delimiter = ',',
        conflicts_with = "all_platforms"
    )]
    pub platforms: Vec<String>,
    /// Pull every manifest of an index (needed to push the whole index elsewhere)
    #[arg(long)]
    pub all_platforms: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild push`.
///
/// SOURCE is an image in the content store (pulled or built: `host/repo:tag`) or an OCI
/// layout (`oci-layout://PATH[:TAG]`). DESTINATION is a registry reference, or one of
/// skopeo's local forms: an OCI layout directory (`oci-layout://PATH[:TAG]`, `oci:PATH[:TAG]`),
/// an OCI layout tar (`oci-archive:FILE[:TAG]`), or a Docker archive for `docker load` /
/// `podman load` (`docker-archive:FILE[:NAME[:TAG]]`; one platform: `--platform`, else the
/// host's; `RepoTags` is NAME, else SOURCE when it is a reference). Archives are
/// reproducible; their entries carry `SOURCE_DATE_EPOCH` (else 0) as mtime. Prints the
/// digest written (the index, or the manifest of one platform) on stdout.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// What to push: a reference in the store (pulled or built) or `oci-layout://PATH[:TAG]`
    pub source: String,
    /// Where to push: `host/repo[:tag]`, `oci-layout://PATH[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:NAME[:TAG]]`
    pub destination: String,
    /// Push only this platform's manifest of an index (for `docker-archive:`, which image
    /// to write; default: the host's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Write buildx-style metadata (`containerimage.digest`, `image.name`, ...) to this file
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Write the image id to this file (the config digest; the index digest for an index)
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `rbuild prune`.
///
/// Removes blobs no pulled image needs and leftovers of interrupted downloads; with
/// `--keep-storage`, also the least recently used images until the store fits. Prints the
/// removed digests on stdout and a summary on stderr. Waits for other rbuild processes
/// using the same store.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep at most this much data, e.g. `10GB` or `512MiB` (binary multiples)
    #[arg(long)]
    pub keep_storage: Option<String>,
    /// Remove everything in the content store
    #[arg(long, conflicts_with = "keep_storage")]
    pub all: bool,
    /// Cache and content-store directory (default: `$XDG_CACHE_HOME/rbuild`)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// Network of RUN steps and sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    /// Share the host's network, as `docker build` does
    Host,
    /// A fresh network namespace with only loopback
    None,
}

/// Progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// `tty` on a terminal, `plain` otherwise
    Auto,
    /// Live view of the steps
    Tty,
    /// One line per event, for CI logs
    Plain,
    /// One JSON event per line, for machines
    Json,
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    /// `error: ...` and `hint: ...` lines
    Human,
    /// One JSON diagnostic per line
    Json,
    /// GitHub Actions workflow commands (`::error file=...,line=...::`)
    Github,
}

impl From<MessageFormat> for crate::diagnose::render::Format {
    fn from(f: MessageFormat) -> Self {
        match f {
            MessageFormat::Human => Self::Human,
            MessageFormat::Json => Self::Json,
            MessageFormat::Github => Self::Github,
        }
    }
}

/// Entry point of the binary: parse, run, render the outcome, map it to the exit code.
pub fn main() -> ExitCode {
    // The sandbox helper is exec'd for every `rbuild run` (and once per build session):
    // the exact command line rbuild gives it skips building the whole parser.
    if let Some(helper) = helper_command_line(std::env::args_os().skip(1)) {
        init_logging(false);
        return crate::sandbox::helper_main(helper.parent, helper.session);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Command::SandboxHelper(args) = &cli.command {
        // Speaks its own protocol on descriptor 3; nothing to render here.
        return crate::sandbox::helper_main(args.parent, args.session);
    }
    match run(&cli) {
        Ok(()) => ExitCode::from(Exit::Ok.code()),
        Err(err) => ExitCode::from(outcome::report(&err).code()),
    }
}

/// `sandbox-helper --parent PID [--session]`, exactly as `sandbox` starts the helper;
/// anything else (a hand-typed variant, a typo) goes through the full parser and its
/// errors.
fn helper_command_line(
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> Option<SandboxHelperArgs> {
    if args.next()? != crate::sandbox::HELPER_SUBCOMMAND {
        return None;
    }
    if args.next()? != "--parent" {
        return None;
    }
    let parent = args.next()?.to_str()?.parse().ok()?;
    let session = match args.next() {
        None => false,
        Some(a) if a == "--session" => true,
        Some(_) => return None,
    };
    args.next()
        .is_none()
        .then_some(SandboxHelperArgs { parent, session })
}

/// Installs the developer-log subscriber: off unless `-v` or `RBUILD_LOG` asks for it.
fn init_logging(verbose: bool) {
    let filter = match std::env::var(envvars::RBUILD_LOG) {
        Ok(f) if !f.is_empty() => f,
        _ if verbose => "debug".to_owned(),
        _ => return,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Pull(args) => cmd::pull::run(args),
        Command::Push(args) => cmd::push::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::SandboxHelper(_) => Err(outcome::Failure::new(
            Exit::Bug,
            "`rbuild sandbox-helper` is dispatched before other commands",
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_helper_command_line_is_recognised_only_exactly() {
        let os = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(Into::into).collect() };
        let h = helper_command_line(os(&["sandbox-helper", "--parent", "42"]).into_iter()).unwrap();
        assert_eq!((h.parent, h.session), (42, false));
        let h =
            helper_command_line(os(&["sandbox-helper", "--parent", "7", "--session"]).into_iter())
                .unwrap();
        assert_eq!((h.parent, h.session), (7, true));
        for other in [
            &["build", "."][..],
            &["sandbox-helper"],
            &["sandbox-helper", "--parent"],
            &["sandbox-helper", "--parent", "x"],
            &["sandbox-helper", "--session", "--parent", "1"],
            &["sandbox-helper", "--parent", "1", "--session", "extra"],
            &["sandbox-helper", "--parent", "1", "--verbose"],
        ] {
            assert!(
                helper_command_line(os(other).into_iter()).is_none(),
                "{other:?}"
            );
        }
        // Whatever the fast path accepts, the full parser accepts the same way.
        let cli = Cli::try_parse_from(["rbuild", "sandbox-helper", "--parent", "7", "--session"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::SandboxHelper(SandboxHelperArgs {
                parent: 7,
                session: true
            })
        ));
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn platforms_split_on_commas_and_repeat() {
        let cli = Cli::try_parse_from([
            "rbuild",
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--platform=linux/riscv64",
            "ctx",
        ])
        .unwrap();
        let Command::Build(args) = cli.command else {
            panic!("expected build")
        };
        assert_eq!(
            args.platforms,
            ["linux/amd64", "linux/arm64", "linux/riscv64"]
        );
        assert_eq!(args.context, PathBuf::from("ctx"));
        assert_eq!(args.network, Network::Host);
    }

    #[test]
    fn run_takes_a_command_after_double_dash() {
        let cli = Cli::try_parse_from(["rbuild", "run", "busybox", "--", "uname", "-m"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.image, "busybox");
        assert_eq!(args.command, ["uname", "-m"]);
    }

    #[test]
    fn pull_takes_platform_lists_and_store_flags() {
        let cli = Cli::try_parse_from([
            "rbuild",
            "pull",
            "--platform",
            "linux/amd64,linux/arm64",
            "--cache-dir",
            "/c",
            "--insecure-registry",
            "reg:5000",
            "reg:5000/a",
        ])
        .unwrap();
        let Command::Pull(args) = cli.command else {
            panic!("expected pull")
        };
        assert_eq!(args.platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!(args.store.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(args.store.insecure_registries, ["reg:5000"]);
        assert!(
            Cli::try_parse_from([
                "rbuild",
                "pull",
                "--all-platforms",
                "--platform",
                "linux/arm64",
                "a"
            ])
            .is_err()
        );
    }

    #[test]
    fn unknown_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["rbuild", "build", "--no-such-flag"]).unwrap_err();
        assert_eq!(err.exit_code(), i32::from(Exit::Usage.code()));
    }
}

//! Every environment variable rbuild reads, named once and documented here. Those the
//! diagnostics renderers read live in `rbuild_diagnose::env` and are re-exported here.

pub use rbuild_diagnose::env::{GITHUB_ACTIONS, GITHUB_STEP_SUMMARY, NO_COLOR, XDG_RUNTIME_DIR};

/// Developer log filter for `tracing` (`RBUILD_LOG=debug`, `RBUILD_LOG=rbuild::sandbox=trace`).
/// Off by default; `-v` is a shortcut for `debug`.
pub const RBUILD_LOG: &str = "RBUILD_LOG";

/// Unix timestamp that clamps every time written into an image (reproducible builds).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Base of rbuild's default cache directory (`$XDG_CACHE_HOME/rbuild`).
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";

/// Docker's configuration directory; credentials are read from `$DOCKER_CONFIG/config.json`
/// (default `~/.docker/config.json`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

/// A registry credentials file in Docker's format, consulted before Docker's own (as podman,
/// skopeo and Buildah do).
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";

/// Size in bytes above which `rbuild push` uploads a blob in chunks of this size
/// (`PATCH` with `Content-Range`) instead of one `PUT`; default 64 MiB.
pub const RBUILD_PUSH_CHUNK_SIZE: &str = "RBUILD_PUSH_CHUNK_SIZE";

/// Forces the copy-based root file system instead of overlayfs (`RBUILD_ROOTFS=copy`), for
/// hosts where overlayfs misbehaves and for testing the fallback. Any other value, or
/// unset, means overlayfs with the automatic fallback.
pub const RBUILD_ROOTFS: &str = "RBUILD_ROOTFS";

/// Base of the default cache directory when `XDG_CACHE_HOME` is unset (`$HOME/.cache`).
pub const HOME: &str = "HOME";

/// A directory where `rbuild build` also writes its diagnostics (a JSON array, one file per
/// build), besides any `--diagnostics-file`. `rbuild-runner` sets it in CI job sandboxes
/// and reports what nested builds wrote there (a GitLab Code Quality report).
pub const RBUILD_DIAGNOSTICS_DIR: &str = "RBUILD_DIAGNOSTICS_DIR";

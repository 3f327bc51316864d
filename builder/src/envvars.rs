//! Every environment variable rbuild reads, named once and documented here.

/// Disables coloured output when set to a non-empty value (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Developer log filter for `tracing` (`RBUILD_LOG=debug`, `RBUILD_LOG=rbuild::sandbox=trace`).
/// Off by default; `-v` is a shortcut for `debug`.
pub const RBUILD_LOG: &str = "RBUILD_LOG";

/// Unix timestamp that clamps every time written into an image (reproducible builds).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Set to `true` by GitHub Actions; makes `--message-format github` the default.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";

/// Set by GitHub Actions to a file each step may append Markdown to; rbuild appends a table
/// of its diagnostics there in the `github` message format.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// Where rootless tools keep per-user runtime state; `rbuild doctor` checks that it belongs
/// to the current user.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

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

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

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

/// Forces the copy-based root file system instead of overlayfs (`RBUILD_ROOTFS=copy`), for
/// hosts where overlayfs misbehaves and for testing the fallback. Any other value, or
/// unset, means overlayfs with the automatic fallback.
pub const RBUILD_ROOTFS: &str = "RBUILD_ROOTFS";

/// Base of the default cache directory when `XDG_CACHE_HOME` is unset (`$HOME/.cache`).
pub const HOME: &str = "HOME";

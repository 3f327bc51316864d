//! The environment variables this crate reads (rbuild's `envvars` re-exports them).

/// Disables coloured output when set to a non-empty value (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Set to `true` by GitHub Actions; makes `--message-format github` the default.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";

/// Set by GitHub Actions to a file each step may append Markdown to; rbuild appends a table
/// of its diagnostics there in the `github` message format.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

/// Where rootless tools keep per-user runtime state; `rbuild doctor` checks that it belongs
/// to the current user.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

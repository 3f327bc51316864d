//! Every environment variable rbuild-runner reads or sets, named once and documented here.

/// Disables coloured output when set to a non-empty value (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Developer log filter for `tracing` (`RBUILD_RUNNER_LOG=debug`,
/// `RBUILD_RUNNER_LOG=rbuild_runner::forge=trace`). The daemon defaults to `info`.
pub const RBUILD_RUNNER_LOG: &str = "RBUILD_RUNNER_LOG";

/// Prefix of configuration overrides: `RBUILD_RUNNER_<KEY>` sets a top-level key,
/// `RBUILD_RUNNER_<SECTION>__<KEY>` a key of a section (`RBUILD_RUNNER_EXECUTOR__KIND`),
/// and `RBUILD_RUNNER_GITLAB__<NAME>__<KEY>` a key of the `[[gitlab]]` instance called
/// `<NAME>` (upper case, `-` written as `_`). `RBUILD_RUNNER_GITLAB__<NAME>__TOKEN` carries
/// that instance's runner authentication token.
pub const CONFIG_PREFIX: &str = "RBUILD_RUNNER_";

/// Must be `1` for the `unsandboxed-test-shell` executor to be accepted: that executor runs
/// job scripts directly on the host, with no sandbox, and exists for rbuild's own tests.
pub const ALLOW_UNSANDBOXED_TEST_EXECUTOR: &str = "RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR";

/// Set inside every job: the directory where nested `rbuild` invocations write their
/// diagnostics files; the runner collects them into a Code Quality report.
pub const RBUILD_DIAGNOSTICS_DIR: &str = "RBUILD_DIAGNOSTICS_DIR";

/// Set for `rbuild run`: the Docker-format credentials file holding the job's registry
/// credentials (`credentials` of the job payload), for pulling the job image.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

/// Variables of `RBUILD_RUNNER_*` that are not configuration keys.
pub const NOT_CONFIG: &[&str] = &[RBUILD_RUNNER_LOG, ALLOW_UNSANDBOXED_TEST_EXECUTOR];

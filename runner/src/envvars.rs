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

/// GitHub Actions: the job's token (`report github` uses it for the Checks API).
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// GitHub Actions: `owner/name` of the repository.
pub const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
/// GitHub Actions: the commit of the run (a merge commit for pull requests).
pub const GITHUB_SHA: &str = "GITHUB_SHA";
/// GitHub Actions: the event payload file (a pull request's head sha is read from it).
pub const GITHUB_EVENT_PATH: &str = "GITHUB_EVENT_PATH";
/// GitHub Actions: the REST API URL (`https://HOST/api/v3` on GitHub Enterprise Server).
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// `report github`: the GitHub App's client id or app id (instead of `GITHUB_TOKEN`).
pub const RBUILD_GITHUB_APP_ID: &str = "RBUILD_GITHUB_APP_ID";
/// `report github`: the GitHub App's private key file (PEM).
pub const RBUILD_GITHUB_APP_KEY_FILE: &str = "RBUILD_GITHUB_APP_KEY_FILE";
/// `report github`: the App's installation id on the repository's owner.
pub const RBUILD_GITHUB_INSTALLATION_ID: &str = "RBUILD_GITHUB_INSTALLATION_ID";

/// Set for the official Actions runner in fleet mode: its just-in-time configuration,
/// which `run.sh` reads as it reads `--jitconfig` (an environment variable is not visible
/// to other users of the host the way a command line is).
pub const ACTIONS_RUNNER_INPUT_JITCONFIG: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

/// Variables of `RBUILD_RUNNER_*` that are not configuration keys.
pub const NOT_CONFIG: &[&str] = &[RBUILD_RUNNER_LOG, ALLOW_UNSANDBOXED_TEST_EXECUTOR];

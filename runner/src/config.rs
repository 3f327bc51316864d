//! The runner's configuration: a TOML file plus `RBUILD_RUNNER_*` environment overrides,
//! loaded with the `config` crate and validated into a [`Config`] before anything runs.
//!
//! This module owns the key names, their defaults and every validation message. It reads
//! the runner tokens (from `token_file` or the environment; never from the TOML file or
//! argv) and keeps them in [`Secret`]s, which never print. It does not create directories
//! or talk to GitLab.
//!
//! ```toml
//! concurrent = 4                      # jobs at once across all instances (default: sum)
//! state_dir = "/var/lib/rbuild-runner"
//! listen = "127.0.0.1:9252"           # /healthz and /metrics (loopback only)
//!
//! [executor]
//! kind = "rbuild"                     # runs each job with `rbuild run IMAGE -- sh ...`
//!
//! [[gitlab]]
//! name = "main"
//! url = "https://gitlab.example.com"
//! token_file = "/etc/rbuild-runner/gitlab.token"   # a glrt- runner authentication token
//! concurrency = 2
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::envvars;

pub mod github;

use github::{GITHUB_KEYS, GITHUB_SECRETS};

/// A secret string (runner or job token). Never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<String>::deserialize(d).map(|s| Secret(s.unwrap_or_default()))
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The validated configuration of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Jobs at once across all instances.
    pub concurrent: usize,
    /// Where the runner keeps its state (running jobs, traces, `system_id`).
    pub state_dir: PathBuf,
    /// Where job sources are checked out (one slot directory per concurrent job).
    pub builds_dir: PathBuf,
    /// Persistent per-project cache (`XDG_CACHE_HOME` of jobs: rbuild's layer cache).
    pub cache_dir: PathBuf,
    /// Address of `/healthz` and `/metrics`, if any (loopback only).
    pub listen: Option<SocketAddr>,
    /// How long a SIGTERM waits for running jobs before aborting them.
    pub shutdown_timeout: Duration,
    pub executor: ExecutorConfig,
    pub gitlab: Vec<GitlabInstance>,
    /// GitHub fleets (`[[github]]`): webhook listeners that start JIT runners.
    pub github: Vec<github::GithubInstance>,
}

/// How jobs are run.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    /// The `rbuild` binary the `rbuild` executor starts.
    pub rbuild: PathBuf,
    /// The `rbuild` binary mounted read-only at `/usr/local/bin/rbuild` inside job
    /// sandboxes, so job scripts can run nested `rbuild build` (default: `rbuild`). It runs
    /// in the job's image, so a statically linked build works in any image.
    pub nested_rbuild: PathBuf,
    /// Network of job sandboxes.
    pub network: Network,
    /// How long a killed job gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// The executor kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// `rbuild run [--platform P] --network N --volume SLOT:/builds IMAGE -- sh SCRIPT`.
    Rbuild,
    /// Runs the job script with `sh` directly on the host as the runner's user, with no
    /// sandbox and no image. Only for rbuild's own tests (needs
    /// `RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR=1`).
    UnsandboxedTestShell,
}

impl ExecutorKind {
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Rbuild => "rbuild",
            ExecutorKind::UnsandboxedTestShell => "unsandboxed-test-shell",
        }
    }
}

/// Network of a job sandbox (`rbuild run --network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Host,
    None,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::None => "none",
        }
    }
}

/// One GitLab instance the daemon takes jobs from.
#[derive(Debug, Clone)]
pub struct GitlabInstance {
    /// Short name, used in logs, metrics, state files and environment overrides.
    pub name: String,
    /// Base URL (`https://gitlab.example.com`, no trailing slash).
    pub url: String,
    /// The `glrt-` runner authentication token.
    pub token: Secret,
    /// Where the token came from, for messages (`file /etc/...`).
    pub token_source: String,
    /// Jobs at once from this instance.
    pub concurrency: usize,
    /// Upper bound of a job's timeout (a job's own timeout is used when shorter).
    pub job_timeout_cap: Option<Duration>,
    /// Image of jobs that name none.
    pub default_image: Option<String>,
    /// A fixed `system_id`; default: derived from `/etc/machine-id`.
    pub system_id: Option<String>,
    /// Pause after an empty job request (shortened by the time a long poll was held).
    pub check_interval: Duration,
    /// HTTP timeout of `jobs/request` (must exceed the server's long-poll duration).
    pub poll_timeout: Duration,
    /// Largest job log sent to GitLab, in bytes.
    pub output_limit: usize,
}

/// One thing wrong with the configuration: the key, what is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    pub fix: String,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: config::ConfigError,
    },
    #[error("the configuration `{}` has {} problem{}", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Defaults.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3);
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_mins(2);
pub const DEFAULT_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_mins(30);
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
const MIN_OUTPUT_LIMIT: usize = 64 * 1024;
const MAX_OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

const TOP_KEYS: &[&str] = &[
    "concurrent",
    "state_dir",
    "builds_dir",
    "cache_dir",
    "listen",
    "shutdown_timeout",
    "executor",
    "gitlab",
    "github",
];
const EXECUTOR_KEYS: &[&str] = &["kind", "rbuild", "nested_rbuild", "network", "kill_grace"];
const GITLAB_KEYS: &[&str] = &[
    "name",
    "url",
    "token_file",
    "concurrency",
    "job_timeout_cap",
    "default_image",
    "system_id",
    "check_interval",
    "poll_timeout",
    "output_limit",
];

/// The process environment relevant to configuration (injectable for tests).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub vars: BTreeMap<String, String>,
    /// Real uid of the process (decides the default state directory).
    pub uid: u32,
    pub home: Option<PathBuf>,
}

impl Environment {
    /// The environment of this process.
    pub fn current() -> Self {
        let vars = std::env::vars().collect::<BTreeMap<_, _>>();
        Environment {
            home: vars.get("HOME").map(PathBuf::from),
            vars,
            uid: rustix::process::getuid().as_raw(),
        }
    }
}

/// Loads and validates `path` with the environment overrides in `env`.
pub fn load(path: &Path, env: &Environment) -> Result<Config, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = config::File::from(path)
        .format(config::FileFormat::Toml)
        .required(true);
    let base = config::Config::builder()
        .add_source(file.clone())
        .build()
        .map_err(read)?;
    let base: Value = base.try_deserialize().map_err(read)?;

    let mut problems = Vec::new();
    let (overrides, token_env) = env_overrides(&base, env, &mut problems);
    let mut builder = config::Config::builder().add_source(file);
    for (key, value) in overrides {
        builder = builder.set_override(key, value).map_err(read)?;
    }
    let merged: Value = builder
        .build()
        .map_err(read)?
        .try_deserialize()
        .map_err(read)?;

    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let cfg = validate(&merged, dir, env, &token_env, &mut problems);
    match cfg {
        Some(mut cfg) if problems.is_empty() => {
            path.clone_into(&mut cfg.path);
            Ok(cfg)
        }
        _ => Err(ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        }),
    }
}

/// Secrets from the environment by (section, instance index, key): (variable name, value).
type EnvTokens = BTreeMap<(&'static str, usize, &'static str), (String, Secret)>;

/// A `[[section]]` array of instances (`gitlab`, `github`): its keys, and its secrets,
/// which only the environment may carry (`RBUILD_RUNNER_<SECTION>__<NAME>__<SECRET>`).
struct Instances {
    section: &'static str,
    keys: &'static [&'static str],
    secrets: &'static [&'static str],
}

const INSTANCES: [Instances; 2] = [
    Instances {
        section: "gitlab",
        keys: GITLAB_KEYS,
        secrets: &["token"],
    },
    Instances {
        section: "github",
        keys: GITHUB_KEYS,
        secrets: GITHUB_SECRETS,
    },
];

/// Instance names of the `[[section]]` tables of the file.
fn instance_names(base: &Value, section: &str) -> Vec<String> {
    base.get(section)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|i| {
                    i.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An instance name as environment variables spell it: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variable that sets `key` of the `[[section]]` instance `name`
/// (`RBUILD_RUNNER_<SECTION>__<NAME>__<KEY>`).
pub(crate) fn instance_var(section: &str, name: &str, key: &str) -> String {
    format!(
        "{}{}__{}__{}",
        envvars::CONFIG_PREFIX,
        section.to_ascii_uppercase(),
        env_name(name),
        key.to_ascii_uppercase()
    )
}

/// Maps `RBUILD_RUNNER_*` variables to config keys. Instance secrets are returned apart,
/// by instance index, and never become config values.
fn env_overrides(
    base: &Value,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> (Vec<(String, String)>, EnvTokens) {
    let names = INSTANCES.map(|i| instance_names(base, i.section));
    let mut overrides = Vec::new();
    let mut tokens = BTreeMap::new();
    for (var, value) in &env.vars {
        let Some(rest) = var.strip_prefix(envvars::CONFIG_PREFIX) else {
            continue;
        };
        if envvars::NOT_CONFIG.contains(&var.as_str()) {
            continue;
        }
        let parts: Vec<&str> = rest.split("__").collect();
        let unknown = |problems: &mut Vec<Problem>, fix: String| {
            problems.push(Problem {
                key: var.clone(),
                message: "this environment variable is not a configuration key".to_owned(),
                fix,
            });
        };
        let section_of = |section: &str| {
            INSTANCES
                .iter()
                .zip(&names)
                .find(|(i, _)| i.section.to_ascii_uppercase() == section)
        };
        match parts.as_slice() {
            [key] => {
                let key = key.to_ascii_lowercase();
                if TOP_KEYS.contains(&key.as_str())
                    && !["executor", "gitlab", "github"].contains(&key.as_str())
                {
                    overrides.push((key, value.clone()));
                } else {
                    unknown(
                        problems,
                        format!(
                            "top-level keys are {}; unset it or fix the name",
                            list(TOP_KEYS)
                        ),
                    );
                }
            }
            ["EXECUTOR", key] => {
                let key = key.to_ascii_lowercase();
                if EXECUTOR_KEYS.contains(&key.as_str()) {
                    overrides.push((format!("executor.{key}"), value.clone()));
                } else {
                    unknown(
                        problems,
                        format!("`[executor]` keys are {}", list(EXECUTOR_KEYS)),
                    );
                }
            }
            [section, name, key] if let Some((instances, names)) = section_of(section) => {
                let section = instances.section;
                let Some(index) = names.iter().position(|n| env_name(n) == *name) else {
                    unknown(
                        problems,
                        format!(
                            "no `[[{section}]]` instance is named `{}` in the file (instances: {}); the variable names an instance as {}",
                            name.to_ascii_lowercase(),
                            if names.is_empty() { "none".to_owned() } else { list(&names.iter().map(String::as_str).collect::<Vec<_>>()) },
                            instance_var(section, "<NAME>", "<KEY>"),
                        ),
                    );
                    continue;
                };
                let key = key.to_ascii_lowercase();
                if let Some(secret) = instances.secrets.iter().find(|s| **s == key) {
                    // A PEM key keeps its lines; tokens and shared secrets lose stray spaces.
                    let v = if *secret == "private_key" { value.clone() } else { value.trim().to_owned() };
                    tokens.insert((section, index, *secret), (var.clone(), Secret::new(v)));
                } else if instances.keys.contains(&key.as_str()) && key != "name" {
                    overrides.push((format!("{section}[{index}].{key}"), value.clone()));
                } else {
                    unknown(
                        problems,
                        format!("`[[{section}]]` keys are {} and {}", list(instances.keys), list(instances.secrets)),
                    );
                }
            }
            _ => unknown(
                problems,
                "write RBUILD_RUNNER_<KEY>, RBUILD_RUNNER_EXECUTOR__<KEY>, RBUILD_RUNNER_GITLAB__<NAME>__<KEY> or RBUILD_RUNNER_GITHUB__<NAME>__<KEY>".to_owned(),
            ),
        }
    }
    (overrides, tokens)
}

pub(crate) fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table of the configuration and where it is, for typed reads that report problems.
pub(crate) struct Table<'a> {
    pub(crate) map: &'a Map<String, Value>,
    pub(crate) prefix: String,
}

impl Table<'_> {
    pub(crate) fn key(&self, k: &str) -> String {
        if self.prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.prefix)
        }
    }

    pub(crate) fn unknown_keys(&self, known: &[&str], problems: &mut Vec<Problem>) {
        for k in self.map.keys() {
            if known.contains(&k.as_str()) {
                continue;
            }
            let fix = match k.as_str() {
                "token" => "tokens are never read from the configuration file: put the token in a file readable only by the runner and set `token_file`, or set RBUILD_RUNNER_GITLAB__<NAME>__TOKEN".to_owned(),
                "tags" | "run_untagged" | "locked" | "maximum_timeout" | "paused" => format!(
                    "`{k}` is a setting of the runner in GitLab (Settings > CI/CD > Runners) for `glrt-` tokens; remove it here"
                ),
                "concurrency" if self.prefix.is_empty() => {
                    "the global limit is `concurrent`; `concurrency` belongs in a `[[gitlab]]` instance".to_owned()
                }
                _ => match suggest(k, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys here are {}", list(known)),
                },
            };
            problems.push(Problem {
                key: self.key(k),
                message: "unknown key".to_owned(),
                fix,
            });
        }
    }

    pub(crate) fn string(&self, k: &str, problems: &mut Vec<Problem>) -> Option<String> {
        match self.map.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                problems.push(Problem {
                    key: self.key(k),
                    message: format!("expected a string, found `{other}`"),
                    fix: format!("write it as `{k} = \"...\"`"),
                });
                None
            }
        }
    }

    pub(crate) fn usize(
        &self,
        k: &str,
        min: usize,
        max: usize,
        problems: &mut Vec<Problem>,
    ) -> Option<usize> {
        let v = self.map.get(k)?;
        let n = match v {
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                problems.push(Problem {
                    key: self.key(k),
                    message: format!("`{}` is not a whole number from {min} to {max}", plain(v)),
                    fix: format!("write it like `{k} = {min}`"),
                });
                None
            }
        }
    }

    pub(crate) fn duration(&self, k: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
        let s = self.string(k, problems)?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                problems.push(Problem {
                    key: self.key(k),
                    message: format!("`{s}` is not a positive duration"),
                    fix: format!("write it like `{k} = \"90s\"`, `\"30m\"` or `\"3h\"`"),
                });
                None
            }
        }
    }

    pub(crate) fn path(&self, k: &str, dir: &Path, problems: &mut Vec<Problem>) -> Option<PathBuf> {
        let s = self.string(k, problems)?;
        if s.is_empty() {
            problems.push(Problem {
                key: self.key(k),
                message: "the path is empty".to_owned(),
                fix: format!("remove `{k}` or give a path"),
            });
            return None;
        }
        Some(dir.join(s))
    }
}

/// The `name` of an instance table: required, letters, digits, `-` and `_` only (it is
/// part of state files, metrics and `RBUILD_RUNNER_<SECTION>__<NAME>__<KEY>`).
pub(crate) fn instance_name(t: &Table<'_>, problems: &mut Vec<Problem>) -> String {
    let name = t.string("name", problems).unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(Problem {
            key: t.key("name"),
            message: if name.is_empty() {
                "every instance needs a name".to_owned()
            } else {
                format!("`{name}` has characters other than letters, digits, `-` and `_`")
            },
            fix: "write it like `name = \"main\"`".to_owned(),
        });
    }
    name
}

/// Calls `each` with the index and table (keys `section[i].*`) of every entry of the
/// `[[section]]` array, in order. Reports an entry that is not a table, and a `section`
/// that is not an array, or an empty one when `at_least_one`; `noun` names an entry in
/// the fixes ("write each instance as a `[[gitlab]]` table").
pub(crate) fn each_instance<'a>(
    root: &'a Value,
    section: &str,
    noun: &str,
    at_least_one: bool,
    problems: &mut Vec<Problem>,
    mut each: impl FnMut(usize, &Table<'a>, &mut Vec<Problem>),
) {
    let fix = || format!("write each {noun} as a `[[{section}]]` table");
    match root.get(section) {
        None => {}
        Some(Value::Array(items)) if !(at_least_one && items.is_empty()) => {
            for (i, item) in items.iter().enumerate() {
                let prefix = format!("{section}[{i}]");
                let Some(map) = item.as_object() else {
                    problems.push(Problem {
                        key: prefix,
                        message: "expected a table".to_owned(),
                        fix: fix(),
                    });
                    continue;
                };
                each(i, &Table { map, prefix }, problems);
            }
        }
        Some(_) => problems.push(Problem {
            key: section.to_owned(),
            message: format!("expected one or more `[[{section}]]` tables"),
            fix: fix(),
        }),
    }
}

/// The problem of `section[i]` taking the name of an earlier instance.
pub(crate) fn duplicate_name(section: &str, i: usize, name: &str) -> Problem {
    Problem {
        key: format!("{section}[{i}].name"),
        message: format!("`{name}` names two instances"),
        fix: format!("give every `[[{section}]]` instance its own name"),
    }
}

/// A secret of an instance, read from the file `<key>_file` or taken from the
/// environment (exactly one of them), and how problems speak of it.
pub(crate) struct SecretSource<'a> {
    /// `token`, `private_key`.
    pub(crate) key: &'a str,
    /// What it is, in "... is given twice" (`the token`).
    pub(crate) what: &'a str,
    /// The fix when the file cannot be read.
    pub(crate) create: String,
    /// The problem (message, fix) when neither the file nor the environment gives it.
    pub(crate) missing: (String, String),
}

impl SecretSource<'_> {
    /// The secret, untrimmed, and where it came from for messages (the file or the
    /// variable); an empty secret after a problem.
    pub(crate) fn read(
        &self,
        t: &Table<'_>,
        dir: &Path,
        env: Option<&(String, Secret)>,
        problems: &mut Vec<Problem>,
    ) -> (Secret, String) {
        let file_key = format!("{}_file", self.key);
        let file = t.path(&file_key, dir, problems);
        let mut problem = |message, fix| {
            problems.push(Problem {
                key: t.key(&file_key),
                message,
                fix,
            });
            (Secret::default(), String::new())
        };
        match (file, env) {
            (Some(_), Some((var, _))) => problem(
                format!("{} is given twice, by `{file_key}` and by {var}", self.what),
                "keep one of them".to_owned(),
            ),
            (Some(f), None) => match read_secret_file(&f, &self.create) {
                Ok(s) => (Secret::new(s), format!("file `{}`", f.display())),
                Err((message, fix)) => problem(message, fix),
            },
            (None, Some((var, s))) => (s.clone(), format!("variable {var}")),
            (None, None) => problem(self.missing.0.clone(), self.missing.1.clone()),
        }
    }
}

/// The text of a secret file that only the runner's user may read; `create` is the fix
/// when it cannot be opened.
fn read_secret_file(path: &Path, create: &str) -> Result<String, (String, String)> {
    let meta = std::fs::metadata(path).map_err(|e| {
        (
            format!("cannot read `{}`: {e}", path.display()),
            create.to_owned(),
        )
    })?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err((
            format!(
                "`{}` is readable by every user of this host",
                path.display()
            ),
            format!("`chmod 600 {}`", path.display()),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| {
        (
            format!("cannot read `{}`: {e}", path.display()),
            "make the file readable by the runner's user".to_owned(),
        )
    })
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The closest known key within two edits, for "did you mean".
fn suggest<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|c| (edit_distance(k, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses `4MiB`, `512 KiB`, `1GiB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn validate(
    root: &Value,
    dir: &Path,
    env: &Environment,
    token_env: &EnvTokens,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let empty = Map::new();
    let top = Table {
        map: root.as_object().unwrap_or(&empty),
        prefix: String::new(),
    };
    top.unknown_keys(TOP_KEYS, problems);

    let state_dir = top
        .path("state_dir", dir, problems)
        .unwrap_or_else(|| default_state_dir(env));
    let builds_dir = top
        .path("builds_dir", dir, problems)
        .unwrap_or_else(|| state_dir.join("builds"));
    let cache_dir = top
        .path("cache_dir", dir, problems)
        .unwrap_or_else(|| state_dir.join("cache"));
    let listen = top.string("listen", problems).and_then(|s| {
        match s.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Some(a),
            Ok(a) => {
                problems.push(Problem {
                    key: "listen".to_owned(),
                    message: format!("`{a}` is not a loopback address; /metrics and /healthz are served on loopback only"),
                    fix: "use `127.0.0.1:PORT` or `[::1]:PORT` and let a local agent or sidecar scrape it".to_owned(),
                });
                None
            }
            Err(_) => {
                problems.push(Problem {
                    key: "listen".to_owned(),
                    message: format!("`{s}` is not an address with a port"),
                    fix: "write it like `listen = \"127.0.0.1:9252\"`".to_owned(),
                });
                None
            }
        }
    });
    let shutdown_timeout = top
        .duration("shutdown_timeout", problems)
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);

    let executor = validate_executor(root.get("executor"), dir, env, problems);

    if root.get("gitlab").is_none() && root.get("github").is_none() {
        problems.push(Problem {
            key: "gitlab".to_owned(),
            message: "no GitLab or GitHub instance is configured".to_owned(),
            fix: "add a `[[gitlab]]` table with `name`, `url` and `token_file`, or a `[[github]]` table (docs/github-fleet.md)".to_owned(),
        });
    }
    let mut gitlab = Vec::new();
    each_instance(
        root,
        "gitlab",
        "instance",
        true,
        problems,
        |i, t, problems| {
            gitlab.push(validate_gitlab(
                t,
                dir,
                token_env.get(&("gitlab", i, "token")),
                problems,
            ));
        },
    );
    let mut seen = Vec::new();
    for (i, g) in gitlab.iter().enumerate() {
        if seen.contains(&g.name) {
            problems.push(duplicate_name("gitlab", i, &g.name));
        }
        seen.push(g.name.clone());
    }
    let github = crate::config::github::validate_all(root, dir, token_env, problems);
    if !github.is_empty()
        && executor
            .as_ref()
            .is_some_and(|e| e.kind != ExecutorKind::Rbuild)
    {
        problems.push(Problem {
            key: "executor.kind".to_owned(),
            message: "GitHub fleets always run the Actions runner in the rbuild sandbox".to_owned(),
            fix: "use `kind = \"rbuild\"` (the default) with `[[github]]` instances".to_owned(),
        });
    }
    let sum: usize = gitlab.iter().map(|g| g.concurrency).sum::<usize>()
        + github.iter().map(|g| g.concurrency).sum::<usize>();
    let concurrent = top
        .usize("concurrent", 1, 10_000, problems)
        .unwrap_or(sum.max(1));

    Some(Config {
        path: PathBuf::new(),
        concurrent,
        state_dir,
        builds_dir,
        cache_dir,
        listen,
        shutdown_timeout,
        executor: executor?,
        gitlab,
        github,
    })
}

fn default_state_dir(env: &Environment) -> PathBuf {
    if env.uid == 0 {
        return PathBuf::from("/var/lib/rbuild-runner");
    }
    if let Some(x) = env.vars.get("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Path::new(x).join("rbuild-runner");
    }
    env.home
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".local/state/rbuild-runner")
}

fn validate_executor(
    v: Option<&Value>,
    dir: &Path,
    env: &Environment,
    problems: &mut Vec<Problem>,
) -> Option<ExecutorConfig> {
    let empty = Map::new();
    let map = match v {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            problems.push(Problem {
                key: "executor".to_owned(),
                message: "expected a table".to_owned(),
                fix: "write it as an `[executor]` table".to_owned(),
            });
            return None;
        }
    };
    let t = Table {
        map,
        prefix: "executor".to_owned(),
    };
    t.unknown_keys(EXECUTOR_KEYS, problems);
    let kind = match t.string("kind", problems).as_deref() {
        None | Some("rbuild") => ExecutorKind::Rbuild,
        Some("unsandboxed-test-shell") => {
            if env
                .vars
                .get(envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR)
                .is_none_or(|v| v != "1")
            {
                problems.push(Problem {
                    key: "executor.kind".to_owned(),
                    message: "the `unsandboxed-test-shell` executor runs job scripts directly on this host, with no sandbox; it exists for rbuild's own tests".to_owned(),
                    fix: format!(
                        "use `kind = \"rbuild\"`; a test that means it sets {}=1",
                        envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR
                    ),
                });
            }
            ExecutorKind::UnsandboxedTestShell
        }
        Some(other) => {
            problems.push(Problem {
                key: "executor.kind".to_owned(),
                message: format!("`{other}` is not an executor"),
                fix: "use `kind = \"rbuild\"`".to_owned(),
            });
            ExecutorKind::Rbuild
        }
    };
    let rbuild = match t.path("rbuild", dir, problems) {
        Some(p) => p,
        None => default_rbuild(env),
    };
    if kind == ExecutorKind::Rbuild && !is_executable(&rbuild) {
        problems.push(Problem {
            key: "executor.rbuild".to_owned(),
            message: format!("`{}` is not an executable `rbuild` binary", rbuild.display()),
            fix: "install `rbuild` next to `rbuild-runner` or on PATH, or set `rbuild = \"/path/to/rbuild\"` in `[executor]`".to_owned(),
        });
    }
    let nested_rbuild = t
        .path("nested_rbuild", dir, problems)
        .unwrap_or_else(|| rbuild.clone());
    if kind == ExecutorKind::Rbuild && !is_executable(&nested_rbuild) {
        problems.push(Problem {
            key: "executor.nested_rbuild".to_owned(),
            message: format!(
                "`{}` is not an executable `rbuild` binary",
                nested_rbuild.display()
            ),
            fix: "point `nested_rbuild` at the (preferably statically linked) `rbuild` job scripts should run, or leave it out to use `rbuild`".to_owned(),
        });
    }
    let network = match t.string("network", problems).as_deref() {
        None | Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => {
            problems.push(Problem {
                key: "executor.network".to_owned(),
                message: format!("`{other}` is not a sandbox network"),
                fix: "use `network = \"host\"` or `network = \"none\"`".to_owned(),
            });
            Network::Host
        }
    };
    let kill_grace = t
        .duration("kill_grace", problems)
        .unwrap_or(DEFAULT_KILL_GRACE);
    Some(ExecutorConfig {
        kind,
        rbuild,
        nested_rbuild,
        network,
        kill_grace,
    })
}

/// `rbuild` next to the running `rbuild-runner`, else the first one on PATH.
fn default_rbuild(env: &Environment) -> PathBuf {
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("rbuild")))
        .filter(|p| is_executable(p))
    {
        return sibling;
    }
    env.vars
        .get("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .map(|d| d.join("rbuild"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from("rbuild"))
}

pub(crate) fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn validate_gitlab(
    t: &Table<'_>,
    dir: &Path,
    env_token: Option<&(String, Secret)>,
    problems: &mut Vec<Problem>,
) -> GitlabInstance {
    t.unknown_keys(GITLAB_KEYS, problems);
    let name = instance_name(t, problems);
    let url = t.string("url", problems).unwrap_or_default();
    let url = match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            u.as_str().trim_end_matches('/').to_owned()
        }
        _ => {
            problems.push(Problem {
                key: t.key("url"),
                message: if url.is_empty() {
                    "every instance needs the URL of its GitLab".to_owned()
                } else {
                    format!("`{url}` is not an http(s) URL")
                },
                fix: "write it like `url = \"https://gitlab.example.com\"`".to_owned(),
            });
            String::new()
        }
    };
    let (token, token_source) = SecretSource {
        key: "token",
        what: "the token",
        create: "create the file with the runner's `glrt-` token, readable by the runner's user"
            .to_owned(),
        missing: (
            "no runner authentication token".to_owned(),
            format!(
                "create the runner in GitLab (Settings > CI/CD > Runners > New project runner), save its `glrt-` token in a file only the runner can read and set `token_file`, or set {}",
                instance_var("gitlab", &name, "token")
            ),
        ),
    }
    .read(t, dir, env_token, problems);
    let token = Secret::new(token.expose().trim());
    if !token.expose().is_empty() {
        check_token(
            token.expose(),
            &token_source,
            &t.key("token_file"),
            problems,
        );
    }
    let concurrency = t.usize("concurrency", 1, 1000, problems).unwrap_or(1);
    let job_timeout_cap = t.duration("job_timeout_cap", problems);
    let default_image = t
        .string("default_image", problems)
        .filter(|s| !s.is_empty());
    let system_id = t.string("system_id", problems);
    if let Some(id) = &system_id
        && !valid_system_id(id)
    {
        problems.push(Problem {
            key: t.key("system_id"),
            message: format!("`{id}` is not a system id"),
            fix: "remove it to derive one from /etc/machine-id, or write `s_` or `r_` and 12 letters or digits".to_owned(),
        });
    }
    let check_interval = t
        .duration("check_interval", problems)
        .unwrap_or(DEFAULT_CHECK_INTERVAL);
    let poll_timeout = t
        .duration("poll_timeout", problems)
        .unwrap_or(DEFAULT_POLL_TIMEOUT);
    let output_limit = match t.string("output_limit", problems) {
        None => DEFAULT_OUTPUT_LIMIT,
        Some(s) => match parse_size(&s) {
            Some(n) if (MIN_OUTPUT_LIMIT..=MAX_OUTPUT_LIMIT).contains(&n) => n,
            _ => {
                problems.push(Problem {
                    key: t.key("output_limit"),
                    message: format!("`{s}` is not a size from 64KiB to 64MiB"),
                    fix: "write it like `output_limit = \"4MiB\"`".to_owned(),
                });
                DEFAULT_OUTPUT_LIMIT
            }
        },
    };
    GitlabInstance {
        name,
        url,
        token,
        token_source,
        concurrency,
        job_timeout_cap,
        default_image,
        system_id,
        check_interval,
        poll_timeout,
        output_limit,
    }
}

/// `s_` or `r_` and 12 ASCII letters or digits, as gitlab-runner writes them.
pub fn valid_system_id(id: &str) -> bool {
    id.len() == 14
        && (id.starts_with("s_") || id.starts_with("r_"))
        && id[2..].chars().all(|c| c.is_ascii_alphanumeric())
}

fn check_token(token: &str, source: &str, key: &str, problems: &mut Vec<Problem>) {
    if token.starts_with("glrt-") {
        if token.len() < 10 || token.chars().any(char::is_whitespace) {
            problems.push(Problem {
                key: key.to_owned(),
                message: format!("the token from {source} is not a whole `glrt-` token"),
                fix: "copy the token again from GitLab".to_owned(),
            });
        }
        return;
    }
    let fix = if token.starts_with("GR1348941") {
        "that is a registration token, which GitLab 17.0 and later refuse: create the runner in GitLab (Settings > CI/CD > Runners > New project runner) and use its `glrt-` token"
    } else {
        "use the `glrt-` runner authentication token GitLab shows when the runner is created"
    };
    problems.push(Problem {
        key: key.to_owned(),
        message: format!("the token from {source} is not a `glrt-` runner authentication token"),
        fix: fix.to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            uid: 1000,
            home: Some(PathBuf::from("/home/u")),
        }
    }

    fn token_file(dir: &Path) -> PathBuf {
        let p = write(dir, "gitlab.token", "glrt-abcdefghijklmnopqrst\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    fn problems(r: Result<Config, ConfigError>) -> Vec<Problem> {
        match r {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn nested_rbuild_defaults_to_rbuild_and_must_be_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        token_file(d.path());
        let rbuild = write(d.path(), "rbuild", "#!/bin/sh\n");
        std::fs::set_permissions(&rbuild, std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = "[[gitlab]]\nname = \"main\"\nurl = \"https://g.example\"\ntoken_file = \"gitlab.token\"\n\n[executor]\nrbuild = \"rbuild\"\n";
        let cfg = write(d.path(), "a.toml", base);
        let c = load(&cfg, &env(&[])).unwrap();
        assert_eq!(c.executor.nested_rbuild, rbuild);
        let cfg = write(
            d.path(),
            "b.toml",
            &format!("{base}nested_rbuild = \"static/rbuild\"\n"),
        );
        let p = problems(load(&cfg, &env(&[])));
        assert!(
            p.iter().any(|p| p.key == "executor.nested_rbuild"
                && p.message.contains("static/rbuild")
                && p.fix.contains("statically linked")),
            "{p:?}"
        );
    }

    #[test]
    fn smallest_design_config_works() {
        let d = tempfile::tempdir().unwrap();
        token_file(d.path());
        let cfg = write(
            d.path(),
            "r.toml",
            "[[gitlab]]\nname = \"main\"\nurl = \"https://gitlab.example.com/\"\ntoken_file = \"gitlab.token\"\nconcurrency = 2\n\n[executor]\nkind = \"unsandboxed-test-shell\"\n",
        );
        let c = load(
            &cfg,
            &env(&[(envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR, "1")]),
        )
        .unwrap();
        assert_eq!(c.gitlab.len(), 1);
        let g = &c.gitlab[0];
        assert_eq!(g.url, "https://gitlab.example.com");
        assert_eq!(g.token.expose(), "glrt-abcdefghijklmnopqrst");
        assert_eq!(g.concurrency, 2);
        assert_eq!(c.concurrent, 2);
        assert_eq!(
            c.state_dir,
            PathBuf::from("/home/u/.local/state/rbuild-runner")
        );
        assert_eq!(c.builds_dir, c.state_dir.join("builds"));
        assert!(
            !format!("{c:?}").contains("glrt-abc"),
            "the token never prints"
        );
    }

    #[test]
    fn environment_overrides_keys_and_carries_the_token() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(
            d.path(),
            "r.toml",
            "state_dir = \"/s\"\n[executor]\nkind = \"unsandboxed-test-shell\"\n[[gitlab]]\nname = \"other\"\nurl = \"https://a.example\"\ntoken_file = \"/nonexistent\"\n[[gitlab]]\nname = \"main-2\"\nurl = \"https://b.example\"\nconcurrency = 1\n",
        );
        let e = env(&[
            (envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR, "1"),
            ("RBUILD_RUNNER_CONCURRENT", "7"),
            ("RBUILD_RUNNER_STATE_DIR", "/var/x"),
            ("RBUILD_RUNNER_GITLAB__MAIN_2__CONCURRENCY", "5"),
            (
                "RBUILD_RUNNER_GITLAB__MAIN_2__TOKEN",
                "glrt-fromtheenvironment",
            ),
            ("RBUILD_RUNNER_GITLAB__OTHER__TOKEN_FILE", ""),
            ("RBUILD_RUNNER_LOG", "debug"),
        ]);
        // `other` keeps its unreadable file (an empty override is still a path problem).
        let p = problems(load(&cfg, &e));
        assert!(p.iter().all(|p| p.key.starts_with("gitlab[0]")), "{p:?}");
        let e = env(&[
            (envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR, "1"),
            ("RBUILD_RUNNER_CONCURRENT", "7"),
            ("RBUILD_RUNNER_STATE_DIR", "/var/x"),
            ("RBUILD_RUNNER_GITLAB__MAIN_2__CONCURRENCY", "5"),
            (
                "RBUILD_RUNNER_GITLAB__MAIN_2__TOKEN",
                "glrt-fromtheenvironment",
            ),
            ("RBUILD_RUNNER_GITLAB__OTHER__TOKEN", "glrt-otherinstance"),
            ("RBUILD_RUNNER_GITLAB__OTHER__TOKEN_FILE", "/nonexistent"),
        ]);
        let p = problems(load(&cfg, &e));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("given twice"), "{p:?}");

        let cfg = write(
            d.path(),
            "r2.toml",
            "[executor]\nkind = \"unsandboxed-test-shell\"\n[[gitlab]]\nname = \"main-2\"\nurl = \"https://b.example\"\n",
        );
        let e = env(&[
            (envvars::ALLOW_UNSANDBOXED_TEST_EXECUTOR, "1"),
            ("RBUILD_RUNNER_CONCURRENT", "7"),
            ("RBUILD_RUNNER_STATE_DIR", "/var/x"),
            ("RBUILD_RUNNER_GITLAB__MAIN_2__CONCURRENCY", "5"),
            (
                "RBUILD_RUNNER_GITLAB__MAIN_2__TOKEN",
                "glrt-fromtheenvironment",
            ),
        ]);
        let c = load(&cfg, &e).unwrap();
        assert_eq!(c.concurrent, 7);
        assert_eq!(c.state_dir, PathBuf::from("/var/x"));
        assert_eq!(c.gitlab[0].concurrency, 5);
        assert_eq!(c.gitlab[0].token.expose(), "glrt-fromtheenvironment");
        assert!(
            c.gitlab[0]
                .token_source
                .contains("RBUILD_RUNNER_GITLAB__MAIN_2__TOKEN")
        );
    }

    #[test]
    fn every_problem_names_its_key_and_fix() {
        let d = tempfile::tempdir().unwrap();
        let loose = write(d.path(), "loose.token", "glrt-abcdefghijklmnopqrst");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = write(
            d.path(),
            "r.toml",
            r#"
concurent = 3
listen = "0.0.0.0:9252"
shutdown_timeout = "soon"
[executor]
kind = "docker"
[[gitlab]]
name = "main"
url = "ftp://gitlab.example.com"
token = "glrt-inline"
token_file = "loose.token"
concurrency = 0
tags = ["rbuild"]
output_limit = "4 GB"
job_timeout_cap = "three hours"
"#,
        );
        let p = problems(load(
            &cfg,
            &env(&[("RBUILD_RUNNER_GITLAB__NOPE__URL", "x")]),
        ));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "concurent",
            "listen",
            "shutdown_timeout",
            "executor.kind",
            "gitlab[0].url",
            "gitlab[0].token",
            "gitlab[0].token_file",
            "gitlab[0].concurrency",
            "gitlab[0].tags",
            "gitlab[0].output_limit",
            "gitlab[0].job_timeout_cap",
            "RBUILD_RUNNER_GITLAB__NOPE__URL",
        ] {
            assert!(keys.contains(&k), "no problem for `{k}` in {keys:?}");
        }
        let by = |k: &str| p.iter().find(|p| p.key == k).unwrap();
        assert_eq!(by("concurent").fix, "did you mean `concurrent`?");
        assert!(by("gitlab[0].token").fix.contains("token_file"));
        assert!(by("gitlab[0].tags").fix.contains("GitLab"));
        assert!(by("gitlab[0].token_file").fix.contains("chmod 600"));
        assert!(by("listen").fix.contains("127.0.0.1"));
        assert!(p.iter().all(|p| !p.fix.is_empty() && !p.message.is_empty()));
        assert!(!format!("{p:?}").contains("glrt-abc"));
    }

    #[test]
    fn registration_tokens_and_the_test_executor_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(
            d.path(),
            "r.toml",
            "[executor]\nkind = \"unsandboxed-test-shell\"\n[[gitlab]]\nname = \"m\"\nurl = \"https://g.example\"\n",
        );
        let p = problems(load(
            &cfg,
            &env(&[("RBUILD_RUNNER_GITLAB__M__TOKEN", "GR1348941abcdef")]),
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].fix
                .contains("RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR=1")
        );
        assert!(p[1].fix.contains("registration token"));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = load(Path::new("/nonexistent/r.toml"), &env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    #[test]
    fn sizes_and_system_ids() {
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4 GB"), None);
        assert!(valid_system_id("s_0123456789ab"));
        assert!(!valid_system_id("x_0123456789ab"));
        assert!(!valid_system_id("s_0123"));
    }
}

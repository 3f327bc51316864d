//! `[[github]]`: a fleet that starts one official Actions runner per queued
//! `workflow_job` (docs/github-fleet.md).
//!
//! ```toml
//! [[github]]
//! name = "main"
//! app_id = "Iv23liExample"                        # the App's client id (or numeric app id)
//! private_key_file = "/etc/rbuild-runner/app.pem"
//! webhook_listen = "0.0.0.0:9253"                  # POST /webhook
//! webhook_secret_file = "/etc/rbuild-runner/webhook.secret"
//! labels = ["self-hosted", "linux", "x64", "rbuild"]
//! runner_image = "oci-layout:///var/lib/rbuild-runner/actions-runner:latest"
//! concurrency = 4
//! ```
//!
//! Secrets come from `private_key_file`/`webhook_secret_file` (not readable by other users)
//! or from `RBUILD_RUNNER_GITHUB__<NAME>__PRIVATE_KEY`/`__WEBHOOK_SECRET`, never from the
//! TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{
    EnvTokens, Problem, Secret, SecretSource, Table, duplicate_name, each_instance, instance_name,
    instance_var, list,
};
use crate::forge::github::client::DEFAULT_API_URL;
use crate::forge::github::webhook::GENERIC_LABELS;

/// Keys of a `[[github]]` table.
pub const GITHUB_KEYS: &[&str] = &[
    "name",
    "api_url",
    "app_id",
    "private_key_file",
    "installation_id",
    "webhook_listen",
    "webhook_secret_file",
    "org",
    "runner_group_id",
    "labels",
    "runner_image",
    "runner_dir",
    "runner_command",
    "platform",
    "env",
    "volumes",
    "concurrency",
    "max_pending",
    "job_timeout",
    "idle_timeout",
    "completed_grace",
];
/// Secrets of a `[[github]]` instance that only the environment may carry.
pub const GITHUB_SECRETS: &[&str] = &["private_key", "webhook_secret"];

/// The official runner image's `run.sh`.
pub const DEFAULT_RUNNER_COMMAND: &str = "/home/runner/run.sh";
/// Where `runner_dir` is mounted in the sandbox.
pub const RUNNER_DIR_INSIDE: &str = "/actions-runner";
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_hours(6);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_mins(15);
pub const DEFAULT_MAX_PENDING: usize = 100;
pub const DEFAULT_COMPLETED_GRACE: Duration = Duration::from_secs(30);

/// One GitHub fleet.
#[derive(Debug, Clone)]
pub struct GithubInstance {
    pub name: String,
    /// REST API base (`https://api.github.com`, GHES `https://HOST/api/v3`).
    pub api_url: String,
    /// `iss` of App JWTs: client id or app id.
    pub app_id: String,
    /// The App's private key (PEM).
    pub private_key: Secret,
    pub key_source: String,
    /// Installation to act as; default: the one each webhook event names.
    pub installation_id: Option<u64>,
    /// Where `POST /webhook` is served.
    pub webhook_listen: SocketAddr,
    pub webhook_secret: Secret,
    /// Register runners on this organisation instead of the event's repository.
    pub org: Option<String>,
    pub runner_group_id: u64,
    /// The runners' labels; a job is ours when its `runs-on` fits them (label contract).
    pub labels: Vec<String>,
    /// Image of the runner sandbox (`oci-layout://PATH[:REF]`, or a registry reference).
    pub runner_image: String,
    /// A host directory with the unpacked official runner, copied for each job and mounted
    /// at `/actions-runner`.
    pub runner_dir: Option<PathBuf>,
    /// The runner's start script inside the sandbox.
    pub runner_command: String,
    pub platform: Option<String>,
    /// Extra `KEY=VALUE` (or `KEY`, passed from the daemon's environment) for the sandbox.
    pub env: Vec<String>,
    /// Extra `SRC:DEST[:ro]` bind mounts.
    pub volumes: Vec<String>,
    /// Runners at once.
    pub concurrency: usize,
    /// Queued jobs waiting for a slot, at most.
    pub max_pending: usize,
    /// A runner sandbox is killed after this long.
    pub job_timeout: Duration,
    /// A runner that has not taken a job within this long is stopped and removed.
    pub idle_timeout: Duration,
    /// How long a runner may keep running after GitHub said its job completed.
    pub completed_grace: Duration,
}

fn strings(t: &Table<'_>, k: &str, problems: &mut Vec<Problem>) -> Option<Vec<String>> {
    match t.map.get(k)? {
        Value::Array(a) => {
            let mut out = Vec::new();
            for v in a {
                let Some(s) = v.as_str() else {
                    problems.push(Problem {
                        key: t.key(k),
                        message: format!("`{v}` is not a string"),
                        fix: format!("write it like `{k} = [\"a\", \"b\"]`"),
                    });
                    return None;
                };
                out.push(s.to_owned());
            }
            Some(out)
        }
        // An environment override is a string: `a,b,c`.
        Value::String(s) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        other => {
            problems.push(Problem {
                key: t.key(k),
                message: format!("expected a list, found `{other}`"),
                fix: format!("write it like `{k} = [\"a\", \"b\"]`"),
            });
            None
        }
    }
}

/// The secret `key` of the instance `name`: from `<key>_file` or
/// `RBUILD_RUNNER_GITHUB__<NAME>__<KEY>`.
fn secret<'a>(name: &str, key: &'a str, what: &'a str) -> SecretSource<'a> {
    let file_key = format!("{key}_file");
    SecretSource {
        key,
        what,
        create: format!("create the file with {what}, readable only by the runner's user"),
        missing: (
            format!("{what} is not given"),
            format!(
                "set `{file_key}` to a file only the runner can read, or set {}",
                instance_var("github", name, key)
            ),
        ),
    }
}

fn validate_one(
    t: &Table<'_>,
    index: usize,
    dir: &Path,
    tokens: &EnvTokens,
    problems: &mut Vec<Problem>,
) -> GithubInstance {
    t.unknown_keys(GITHUB_KEYS, problems);
    let name = instance_name(t, problems);
    let api_url = t
        .string("api_url", problems)
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let api_url = match reqwest::Url::parse(&api_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            u.as_str().trim_end_matches('/').to_owned()
        }
        _ => {
            problems.push(Problem {
                key: t.key("api_url"),
                message: format!("`{api_url}` is not an http(s) URL"),
                fix: "remove it for github.com, or write `api_url = \"https://HOST/api/v3\"` for GitHub Enterprise Server".to_owned(),
            });
            String::new()
        }
    };
    let app_id = t.string("app_id", problems).unwrap_or_default();
    if app_id.trim().is_empty() {
        problems.push(Problem {
            key: t.key("app_id"),
            message: "no GitHub App id".to_owned(),
            fix: "set `app_id` to the App's client id (`Iv23...`) or app id (the App's settings, General)".to_owned(),
        });
    }
    let (private_key, key_source) = secret(&name, "private_key", "the GitHub App's private key")
        .read(
            t,
            dir,
            tokens.get(&("github", index, "private_key")),
            problems,
        );
    if !private_key.expose().is_empty()
        && let Err(e) =
            crate::forge::github::auth::AppKey::from_pem(app_id.clone(), private_key.expose())
    {
        problems.push(Problem {
            key: t.key("private_key_file"),
            message: format!("the private key from {key_source} cannot be used: {e}"),
            fix: "use the `.pem` file GitHub generated (App settings > General > Private keys)"
                .to_owned(),
        });
    }
    let (webhook_secret, _) = secret(&name, "webhook_secret", "the webhook secret").read(
        t,
        dir,
        tokens.get(&("github", index, "webhook_secret")),
        problems,
    );
    let webhook_secret = Secret::new(webhook_secret.expose().trim());
    let installation_id = t
        .usize("installation_id", 1, usize::MAX, problems)
        .map(|n| n as u64);
    let webhook_listen = if let Some(s) = t.string("webhook_listen", problems) {
        let parsed = s.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            problems.push(Problem {
                key: t.key("webhook_listen"),
                message: format!("`{s}` is not an address with a port"),
                fix: "write it like `webhook_listen = \"0.0.0.0:9253\"` (behind your TLS proxy)"
                    .to_owned(),
            });
        }
        parsed
    } else {
        problems.push(Problem {
            key: t.key("webhook_listen"),
            message: "no address for `workflow_job` webhook deliveries".to_owned(),
            fix: "set `webhook_listen = \"0.0.0.0:9253\"` and point the App's webhook URL at `https://YOUR-PROXY/webhook`".to_owned(),
        });
        None
    };
    let org = t.string("org", problems).filter(|s| !s.is_empty());
    let runner_group_id = t
        .usize("runner_group_id", 1, usize::MAX, problems)
        .map_or(1, |n| n as u64);
    let labels = strings(t, "labels", problems).unwrap_or_default();
    if labels.is_empty() {
        problems.push(Problem {
            key: t.key("labels"),
            message: "the runners need labels".to_owned(),
            fix: "write it like `labels = [\"self-hosted\", \"linux\", \"x64\", \"rbuild\"]`; jobs select them with `runs-on: [self-hosted, rbuild]`".to_owned(),
        });
    } else if labels
        .iter()
        .all(|l| GENERIC_LABELS.iter().any(|g| g.eq_ignore_ascii_case(l)))
    {
        problems.push(Problem {
            key: t.key("labels"),
            message: format!(
                "{} are all generic labels, which never select this fleet",
                list(&labels.iter().map(String::as_str).collect::<Vec<_>>())
            ),
            fix: "add a label of your own, e.g. `\"rbuild\"`, and use it in `runs-on:`".to_owned(),
        });
    }
    let runner_image = t.string("runner_image", problems).unwrap_or_default();
    if runner_image.is_empty() {
        problems.push(Problem {
            key: t.key("runner_image"),
            message: "no image to run the Actions runner in".to_owned(),
            fix: "set `runner_image` to an image holding the official runner (e.g. `oci-layout:///var/lib/rbuild-runner/actions-runner:latest`)".to_owned(),
        });
    }
    let runner_dir = t.path("runner_dir", dir, problems);
    if let Some(d) = &runner_dir
        && !d.join("run.sh").is_file()
    {
        problems.push(Problem {
            key: t.key("runner_dir"),
            message: format!("`{}` has no `run.sh`", d.display()),
            fix: "unpack the official runner (actions-runner-linux-*.tar.gz) there".to_owned(),
        });
    }
    let runner_command = t.string("runner_command", problems).unwrap_or_else(|| {
        if runner_dir.is_some() {
            format!("{RUNNER_DIR_INSIDE}/run.sh")
        } else {
            DEFAULT_RUNNER_COMMAND.to_owned()
        }
    });
    let platform = t.string("platform", problems).filter(|s| !s.is_empty());
    let env = strings(t, "env", problems).unwrap_or_default();
    for e in &env {
        if e.starts_with(crate::envvars::CONFIG_PREFIX) || e.starts_with("ACTIONS_RUNNER_INPUT_") {
            problems.push(Problem {
                key: t.key("env"),
                message: format!("`{e}` would hand the runner's own settings to jobs"),
                fix: "remove it".to_owned(),
            });
        }
    }
    let volumes = strings(t, "volumes", problems).unwrap_or_default();
    for v in &volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let ok = matches!(parts.as_slice(), [s, d] | [s, d, "ro" | "rw"] if s.starts_with('/') && d.starts_with('/'));
        if !ok {
            problems.push(Problem {
                key: t.key("volumes"),
                message: format!("`{v}` is not `/HOST:/SANDBOX[:ro]`"),
                fix: "write it like `volumes = [\"/srv/cache:/cache\"]`".to_owned(),
            });
        }
    }
    let concurrency = t.usize("concurrency", 1, 1000, problems).unwrap_or(1);
    let max_pending = t
        .usize("max_pending", 0, 100_000, problems)
        .unwrap_or(DEFAULT_MAX_PENDING);
    let job_timeout = t
        .duration("job_timeout", problems)
        .unwrap_or(DEFAULT_JOB_TIMEOUT);
    let idle_timeout = t
        .duration("idle_timeout", problems)
        .unwrap_or(DEFAULT_IDLE_TIMEOUT);
    let completed_grace = t
        .duration("completed_grace", problems)
        .unwrap_or(DEFAULT_COMPLETED_GRACE);
    GithubInstance {
        completed_grace,
        name,
        api_url,
        app_id,
        private_key,
        key_source,
        installation_id,
        webhook_listen: webhook_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        webhook_secret,
        org,
        runner_group_id,
        labels,
        runner_image,
        runner_dir,
        runner_command,
        platform,
        env,
        volumes,
        concurrency,
        max_pending,
        job_timeout,
        idle_timeout,
    }
}

/// Validates every `[[github]]` table.
pub(super) fn validate_all(
    root: &Value,
    dir: &Path,
    tokens: &EnvTokens,
    problems: &mut Vec<Problem>,
) -> Vec<GithubInstance> {
    let mut out: Vec<GithubInstance> = Vec::new();
    each_instance(
        root,
        "github",
        "fleet",
        false,
        problems,
        |i, t, problems| {
            let g = validate_one(t, i, dir, tokens, problems);
            if out.iter().any(|o| o.name == g.name) {
                problems.push(duplicate_name("github", i, &g.name));
            }
            if out.iter().any(|o| o.webhook_listen == g.webhook_listen) {
                problems.push(Problem {
                    key: format!("github[{i}].webhook_listen"),
                    message: format!("`{}` is the address of another instance", g.webhook_listen),
                    fix: "give every `[[github]]` instance its own `webhook_listen` port"
                        .to_owned(),
                });
            }
            out.push(g);
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Environment, load};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            uid: 1000,
            home: Some("/home/u".into()),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    const KEY: &str = include_str!("../forge/github/testdata/app-key.pem");

    #[test]
    fn a_github_fleet_alone_is_a_valid_configuration() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "app.pem", KEY);
        let cfg = write(
            d.path(),
            "r.toml",
            "[executor]\nrbuild = \"/bin/sh\"\n[[github]]\nname = \"gh\"\napp_id = \"Iv23li\"\nprivate_key_file = \"app.pem\"\nwebhook_listen = \"0.0.0.0:9253\"\nlabels = [\"self-hosted\", \"rbuild\"]\nrunner_image = \"oci-layout:///r:latest\"\nconcurrency = 3\n",
        );
        let c = load(
            &cfg,
            &env(&[
                ("RBUILD_RUNNER_GITHUB__GH__WEBHOOK_SECRET", " s3cret\n"),
                ("RBUILD_RUNNER_GITHUB__GH__ORG", "octo"),
            ]),
        )
        .unwrap();
        let g = &c.github[0];
        assert_eq!(g.webhook_secret.expose(), "s3cret");
        assert_eq!(g.api_url, "https://api.github.com");
        assert_eq!(g.org.as_deref(), Some("octo"));
        assert_eq!(g.runner_command, "/home/runner/run.sh");
        assert_eq!(c.concurrent, 3);
        assert!(!format!("{c:?}").contains("s3cret") && !format!("{c:?}").contains("MII"));
    }

    #[test]
    fn every_github_problem_names_its_key() {
        let d = tempfile::tempdir().unwrap();
        let loose = d.path().join("loose.secret");
        std::fs::write(&loose, "x").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(d.path(), "bad.pem", "not a key");
        let cfg = write(
            d.path(),
            "r.toml",
            "[executor]\nkind = \"unsandboxed-test-shell\"\n[[github]]\nname = \"gh\"\napi_url = \"ftp://x\"\nprivate_key_file = \"bad.pem\"\nwebhook_secret_file = \"loose.secret\"\nlabels = [\"self-hosted\", \"linux\"]\nvolumes = [\"relative:/x\"]\nenv = [\"RBUILD_RUNNER_X=1\"]\n",
        );
        let Err(ConfigError::Invalid { problems, .. }) = load(
            &cfg,
            &env(&[("RBUILD_RUNNER_UNSANDBOXED_TEST_EXECUTOR", "1")]),
        ) else {
            panic!("expected problems")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "github[0].api_url",
            "github[0].app_id",
            "github[0].private_key_file",
            "github[0].webhook_secret_file",
            "github[0].webhook_listen",
            "github[0].labels",
            "github[0].runner_image",
            "github[0].volumes",
            "github[0].env",
            "executor.kind",
        ] {
            assert!(keys.contains(&k), "no problem for `{k}` in {keys:?}");
        }
        assert!(problems.iter().all(|p| !p.fix.is_empty()));
    }
}

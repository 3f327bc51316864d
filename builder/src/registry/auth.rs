//! Registry credentials: where they come from, and the description of where rbuild looked
//! (a 401 error names it; the secret itself is never printed or logged).
//!
//! Sources, in order (the first that has an entry for the registry wins):
//! 1. `$REGISTRY_AUTH_FILE` (podman, skopeo and Buildah use it; same format as Docker's);
//! 2. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! In each file, `credHelpers[<registry>]` names a `docker-credential-<helper>` program,
//! then `auths[<registry>]` holds `auth` (base64 `user:password`), `username`/`password`
//! or `identitytoken`, then `credsStore` names a helper for every registry. Keys are matched
//! the way Docker does it: with or without `https://` and a `/v1/` suffix, with Docker Hub
//! known as `docker.io`, `index.docker.io` and `https://index.docker.io/v1/`; podman's
//! `host/namespace` keys match repositories under that namespace (longest wins).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::envvars;

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What to authenticate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or a personal access token used as one).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token service.
    IdentityToken(Secret),
}

/// The outcome of a credential lookup: the credential, if any, and where rbuild looked.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub credential: Option<Credential>,
    /// Human description of the source, e.g. ``credHelpers `ecr-login` in `~/.docker/config.json` ``
    /// or ``no entry for `host` in `~/.docker/config.json` ``.
    pub source: String,
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the credentials file `{path}`")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the credentials file `{path}` is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the `auth` entry for `{key}` in `{path}` is not base64 `user:password`")]
    BadAuth { path: PathBuf, key: String },
    #[error("credential helper `docker-credential-{helper}` failed for `{registry}`: {detail}")]
    Helper {
        helper: String,
        registry: String,
        detail: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The credential files rbuild consults, in order.
pub fn config_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(p) = std::env::var_os(envvars::REGISTRY_AUTH_FILE).filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os(envvars::DOCKER_CONFIG).filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(dir).join("config.json"));
    } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(home).join(".docker/config.json"));
    }
    files
}

/// Reduces a config key (`https://index.docker.io/v1/`, `http://host:5000`, `host/ns`) to
/// `host[/path]` in the form rbuild compares.
fn normalise_key(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    if path.is_empty() {
        host.to_owned()
    } else {
        format!("{host}/{path}")
    }
}

/// The most specific key of `keys` for `registry/repository`.
fn best_key<'a>(
    keys: impl Iterator<Item = &'a String>,
    registry: &str,
    repository: &str,
) -> Option<&'a String> {
    let full = format!("{registry}/{repository}");
    keys.filter_map(|k| {
        let n = normalise_key(k);
        let hit =
            n == registry || (full.starts_with(&n) && full.as_bytes().get(n.len()) == Some(&b'/'));
        hit.then_some((n.len(), k))
    })
    .max_by_key(|(len, _)| *len)
    .map(|(_, k)| k)
}

/// Looks up the credential for `registry` (and `repository`, for namespaced keys).
pub fn lookup(registry: &str, repository: &str) -> Result<Lookup, CredentialError> {
    lookup_in(&config_files(), registry, repository)
}

fn show(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && let Ok(rest) = path.strip_prefix(&home)
    {
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}

/// [`lookup`] over explicit files (tests use this).
pub fn lookup_in(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Lookup, CredentialError> {
    let mut looked = Vec::new();
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.push(format!("`{}` (absent)", show(path)));
                continue;
            }
            Err(source) => {
                return Err(CredentialError::File {
                    path: path.clone(),
                    source,
                });
            }
        };
        let config: ConfigFile =
            serde_json::from_slice(&bytes).map_err(|source| CredentialError::Json {
                path: path.clone(),
                source,
            })?;
        if let Some(key) = best_key(config.cred_helpers.keys(), registry, repository) {
            let helper = &config.cred_helpers[key];
            let credential = run_helper(helper, registry)?;
            return Ok(Lookup {
                credential,
                source: format!(
                    "credential helper `docker-credential-{helper}` (credHelpers `{key}` in `{}`)",
                    show(path)
                ),
            });
        }
        if let Some(key) = best_key(config.auths.keys(), registry, repository) {
            let entry = &config.auths[key];
            let credential = entry_credential(entry).map_err(|()| CredentialError::BadAuth {
                path: path.clone(),
                key: key.clone(),
            })?;
            if let Some(credential) = credential {
                return Ok(Lookup {
                    credential: Some(credential),
                    source: format!("auths `{key}` in `{}`", show(path)),
                });
            }
        }
        if let Some(helper) = config.creds_store.as_deref().filter(|h| !h.is_empty()) {
            if let Some(credential) = run_helper(helper, registry)? {
                return Ok(Lookup {
                    credential: Some(credential),
                    source: format!(
                        "credential store `docker-credential-{helper}` (credsStore in `{}`)",
                        show(path)
                    ),
                });
            }
            looked.push(format!(
                "`{}` and its credsStore `docker-credential-{helper}`",
                show(path)
            ));
            continue;
        }
        looked.push(format!("`{}`", show(path)));
    }
    let source = if looked.is_empty() {
        "no credentials file (neither `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG` nor `HOME` is set)"
            .to_owned()
    } else {
        format!("no entry for `{registry}` in {}", looked.join(", "))
    };
    Ok(Lookup {
        credential: None,
        source,
    })
}

/// `Err` if the entry is malformed; `Ok(None)` if it is empty.
fn entry_credential(entry: &AuthEntry) -> Result<Option<Credential>, ()> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| ())?;
        let text = String::from_utf8(decoded).map_err(|_| ())?;
        let (user, pass) = text.split_once(':').ok_or(())?;
        return Ok(Some(Credential::Basic {
            username: user.to_owned(),
            password: Secret::new(pass),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::Basic {
            username: u.clone(),
            password: Secret::new(p.clone()),
        })),
        _ => Ok(None),
    }
}

/// Runs `docker-credential-<helper> get`; `Ok(None)` when it has no credential.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>, CredentialError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let fail = |detail: String| CredentialError::Helper {
        helper: helper.to_owned(),
        registry: registry.to_owned(),
        detail,
    };
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start `{program}`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("`{program}` did not finish: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // The protocol's "no credential" answer.
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        // Helper output may echo what it was given, never a secret; still keep it short.
        let msg: String = msg.chars().take(200).collect();
        return Err(fail(format!("exited with {}: {msg}", out.status)));
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail("its answer is not the JSON the credential helper protocol defines".to_owned())
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    if answer.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(Secret::new(answer.secret))));
    }
    Ok(Some(Credential::Basic {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, json: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn finds_auths_by_docker_key_forms() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let f = file(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "http://127.0.0.1:5000": {{"username": "bob", "password": "pw"}}}}}}"#
            ),
        );
        let hub = lookup_in(std::slice::from_ref(&f), "docker.io", "library/busybox").unwrap();
        assert_eq!(
            hub.credential,
            Some(Credential::Basic {
                username: "alice".into(),
                password: Secret::new("s3cret")
            })
        );
        assert!(
            hub.source.contains("auths `https://index.docker.io/v1/`"),
            "{}",
            hub.source
        );
        assert!(!format!("{hub:?}").contains("s3cret"));
        let local = lookup_in(std::slice::from_ref(&f), "127.0.0.1:5000", "x").unwrap();
        assert!(
            matches!(local.credential, Some(Credential::Basic { ref username, .. }) if username == "bob")
        );
        let none = lookup_in(&[f], "quay.io", "x").unwrap();
        assert!(none.credential.is_none());
        assert!(
            none.source.starts_with("no entry for `quay.io` in `"),
            "{}",
            none.source
        );
    }

    #[test]
    fn auth_file_comes_first_and_namespaced_keys_win() {
        let dir = tempfile::tempdir().unwrap();
        let first = file(
            dir.path(),
            "auth.json",
            r#"{"auths": {"q.io": {"username": "a", "password": "1"}, "q.io/team": {"username": "b", "password": "2"}}}"#,
        );
        let second = file(
            dir.path(),
            "config.json",
            r#"{"auths": {"q.io": {"username": "c", "password": "3"}}}"#,
        );
        let files = [first, second];
        let team = lookup_in(&files, "q.io", "team/app").unwrap();
        assert!(
            matches!(team.credential, Some(Credential::Basic { ref username, .. }) if username == "b")
        );
        let other = lookup_in(&files, "q.io", "teamx/app").unwrap();
        assert!(
            matches!(other.credential, Some(Credential::Basic { ref username, .. }) if username == "a")
        );
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            dir.path(),
            "config.json",
            r#"{"credHelpers": {"q.io": "rbuild-test-no-such-helper"}}"#,
        );
        let err = lookup_in(&[f], "q.io", "x").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-rbuild-test-no-such-helper"),
            "{err}"
        );
    }

    #[test]
    fn malformed_auth_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            dir.path(),
            "config.json",
            r#"{"auths": {"q.io": {"auth": "!!!"}}}"#,
        );
        assert!(matches!(
            lookup_in(&[f], "q.io", "x"),
            Err(CredentialError::BadAuth { .. })
        ));
    }
}

//! The registry module's error type, classified where it arises: every variant knows its
//! exit code, its hints and which failure cause of the catalog (if any) it is.

use std::time::Duration;

use crate::image::{DocumentError, Platform, list_platforms};
use crate::outcome::{Exit, Failure};
use crate::store::{Digest, StoreError};

use super::auth::CredentialError;

/// Failure causes of the catalog (`reference/failure-causes.md`) that registry errors map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `registry-auth-401`: missing or rejected credentials, insufficient scope.
    RegistryAuth401,
    /// `registry-rate-limited`: 429 Too Many Requests.
    RegistryRateLimited,
    /// `registry-tls-or-http`: TLS verification failed, or http spoken to an https client.
    RegistryTlsOrHttp,
    /// `base-image-missing-platform`: the image does not publish the requested platform.
    BaseImageMissingPlatform,
}

impl Cause {
    /// The catalog id.
    pub fn id(self) -> &'static str {
        match self {
            Cause::RegistryAuth401 => "registry-auth-401",
            Cause::RegistryRateLimited => "registry-rate-limited",
            Cause::RegistryTlsOrHttp => "registry-tls-or-http",
            Cause::BaseImageMissingPlatform => "base-image-missing-platform",
        }
    }
}

/// The error code and message a registry put in its error body, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryCode {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl std::fmt::Display for RegistryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) if !m.is_empty() => write!(f, " (code `{c}`: {m})"),
            (Some(c), _) => write!(f, " (code `{c}`)"),
            (None, Some(m)) if !m.is_empty() => write!(f, " ({m})"),
            _ => Ok(()),
        }
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry `{host}` answered {status} to `{request}`{code}; credentials: {credentials}")]
    Unauthorized {
        host: String,
        request: String,
        status: String,
        code: RegistryCode,
        /// Where rbuild looked for credentials (never the credential itself).
        credentials: String,
        /// The operation was a push (the token may lack push scope).
        push: bool,
    },
    #[error("registry `{host}` is rate limiting rbuild: 429 Too Many Requests to `{request}`{code}{}", retry_note(*retry_after, *attempts))]
    RateLimited {
        host: String,
        request: String,
        code: RegistryCode,
        retry_after: Option<Duration>,
        attempts: u32,
    },
    #[error("registry `{host}` has no `{what}`: {status} to `{request}`{code}")]
    NotFound {
        host: String,
        request: String,
        what: String,
        status: String,
        code: RegistryCode,
    },
    #[error("registry `{host}` answered {status} to `{request}`{code}{}", attempts_note(*attempts))]
    Status {
        host: String,
        request: String,
        status: String,
        code: RegistryCode,
        attempts: u32,
    },
    #[error("cannot reach registry `{host}` for `{request}`{}", attempts_note(*attempts))]
    Connect {
        host: String,
        request: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("the connection to registry `{host}` failed its TLS check ({detail})")]
    Tls {
        host: String,
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "registry `{host}` speaks https, but rbuild reached it over plain http (`{request}` was refused with 400 Bad Request)"
    )]
    HttpToHttps {
        host: String,
        request: String,
        /// Loopback registries are always reached over http.
        loopback: bool,
    },
    #[error(
        "registry `{host}` sent content for `{digest}` that does not match it (it hashes to `{actual}`); nothing was stored"
    )]
    DigestMismatch {
        host: String,
        digest: Digest,
        actual: Digest,
    },
    #[error(
        "registry `{host}` sent {actual} bytes for `{digest}`, whose descriptor says {expected}; nothing was stored"
    )]
    SizeMismatch {
        host: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("registry `{host}` broke the distribution protocol on `{request}`: {detail}")]
    Protocol {
        host: String,
        request: String,
        detail: String,
    },
    #[error("`{reference}` from `{host}` is not an image rbuild can use")]
    BadDocument {
        host: String,
        reference: String,
        #[source]
        source: DocumentError,
    },
    #[error(
        "`{reference}` has no image for platform `{wanted}` (it has: {})",
        list_platforms(available)
    )]
    NoPlatform {
        reference: String,
        wanted: Platform,
        available: Vec<Platform>,
    },
    #[error("`{reference}` is an image for `{actual}`, not `{wanted}`")]
    WrongPlatform {
        reference: String,
        wanted: Platform,
        actual: Platform,
    },
    #[error(
        "the content store holds only part of `{root}`: {} `{missing}` is not there, and rbuild does not know where the image came from to fetch it",
        platform.as_ref().map_or_else(|| "blob".to_owned(), |p| format!("the manifest for `{p}`"))
    )]
    Incomplete {
        root: Digest,
        missing: Digest,
        platform: Option<Platform>,
    },
    #[error("cannot read the credentials for registry `{host}`")]
    Credentials {
        host: String,
        #[source]
        source: CredentialError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn retry_note(retry_after: Option<Duration>, attempts: u32) -> String {
    match retry_after {
        Some(d) => format!(
            "; it asks to retry after {} s{}",
            d.as_secs(),
            attempts_note(attempts)
        ),
        None => attempts_note(attempts),
    }
}

impl RegistryError {
    /// The failure cause of the catalog this error is, if any.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            RegistryError::Unauthorized { .. } => Some(Cause::RegistryAuth401),
            RegistryError::RateLimited { .. } => Some(Cause::RegistryRateLimited),
            RegistryError::Tls { .. } | RegistryError::HttpToHttps { .. } => {
                Some(Cause::RegistryTlsOrHttp)
            }
            RegistryError::NoPlatform { .. } | RegistryError::WrongPlatform { .. } => {
                Some(Cause::BaseImageMissingPlatform)
            }
            _ => None,
        }
    }

    /// The registry host involved, if any.
    pub fn host(&self) -> Option<&str> {
        match self {
            RegistryError::Unauthorized { host, .. }
            | RegistryError::RateLimited { host, .. }
            | RegistryError::NotFound { host, .. }
            | RegistryError::Status { host, .. }
            | RegistryError::Connect { host, .. }
            | RegistryError::Tls { host, .. }
            | RegistryError::HttpToHttps { host, .. }
            | RegistryError::DigestMismatch { host, .. }
            | RegistryError::SizeMismatch { host, .. }
            | RegistryError::Protocol { host, .. }
            | RegistryError::BadDocument { host, .. }
            | RegistryError::Credentials { host, .. } => Some(host),
            _ => None,
        }
    }

    /// The exit class: 4 for registry and network trouble, 1 when the image itself does
    /// not fit the request (no such platform), 3 for the local cache.
    pub fn exit(&self) -> Exit {
        match self {
            RegistryError::NoPlatform { .. }
            | RegistryError::WrongPlatform { .. }
            | RegistryError::Incomplete { .. }
            | RegistryError::BadDocument { .. } => Exit::Input,
            RegistryError::Store(_) => Exit::Host,
            RegistryError::Client(_) => Exit::Bug,
            _ => Exit::Registry,
        }
    }

    /// How to fix it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            RegistryError::Unauthorized { host, push, code, .. } => {
                let mut h = vec![format!(
                    "log in as the user that runs rbuild: `podman login {host}` or `docker login {host}` (they write the files rbuild reads; `REGISTRY_AUTH_FILE` and `DOCKER_CONFIG` choose others)"
                )];
                if *push || code.code.as_deref() == Some("DENIED") {
                    h.push("check that the token has push access and that the repository name is right".to_owned());
                }
                h
            }
            RegistryError::RateLimited { .. } => vec![
                "this is the registry's limit, not your build: wait and retry, log in (authenticated pulls get higher limits), or use a mirror".to_owned(),
            ],
            RegistryError::Tls { host, .. } => vec![format!(
                "if `{host}` serves plain http, pass `--insecure-registry {host}`; if it uses a private CA, add the CA to the system trust store, or point `SSL_CERT_FILE` at a bundle that holds it"
            )],
            RegistryError::HttpToHttps { host, loopback: false, .. } => vec![format!(
                "drop `--insecure-registry {host}`: this registry serves https"
            )],
            RegistryError::HttpToHttps { host, loopback: true, .. } => vec![format!(
                "rbuild reaches loopback registries (`localhost`, 127.0.0.0/8, `::1`) over plain http, as Docker does; serve `{host}` over http, or reach it by a name that is not a loopback name"
            )],
            RegistryError::Connect { host, .. } => vec![format!(
                "check that `{host}` is reachable from this machine (DNS, proxy, firewall); a plain-http registry needs `--insecure-registry {host}`"
            )],
            RegistryError::NoPlatform { .. } | RegistryError::WrongPlatform { .. } => vec![
                "choose an image or tag that publishes this platform, or pick one it has with `--platform`".to_owned(),
            ],
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => vec![
                "the registry (or a proxy in between) served damaged content; retry, and report it to the registry's operator if it persists".to_owned(),
            ],
            RegistryError::NotFound { .. } => {
                vec!["check the repository name and tag (`skopeo list-tags docker://HOST/REPO` lists the tags)".to_owned()]
            }
            RegistryError::Incomplete { .. } => vec![
                "push only the platforms that are there with `--platform`, or push from where all of it is (the OCI layout, or `rbuild pull --all-platforms` from its registry)".to_owned(),
            ],
            RegistryError::Store(_) => vec![
                "check the cache directory (`--cache-dir`): free space, permissions; `rbuild prune` frees space".to_owned(),
            ],
            _ => Vec::new(),
        }
    }

    /// The error as a diagnostic for CI: its catalog cause (`image-pull-failed` when it
    /// is none of the registry causes), `what` and the whole error chain as the message,
    /// and its first hint.
    pub fn diagnostic(&self, what: &str) -> crate::diagnose::Diagnostic {
        let cause = self
            .cause()
            .and_then(|c| crate::diagnose::Cause::from_id(c.id()))
            .unwrap_or(crate::diagnose::Cause::ImagePullFailed);
        let mut detail = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(x) = src {
            detail.push_str(": ");
            detail.push_str(&x.to_string());
            src = x.source();
        }
        let mut d = cause.error(format!("{what}: {detail}"));
        if let Some(h) = self.hints().into_iter().next() {
            d.hint = Some(h);
        }
        d
    }

    /// The classified failure for `outcome`, keeping this error as its cause chain.
    pub fn into_failure(self, what: impl Into<String>) -> Failure {
        let mut f = Failure::new(self.exit(), what);
        for h in self.hints() {
            f = f.hint(h);
        }
        if let Some(cause) = self.cause() {
            f = f.hint(format!(
                "this is the known failure cause `{}`: `rbuild explain {}` says more",
                cause.id(),
                cause.id()
            ));
        }
        f.caused_by(self)
    }
}

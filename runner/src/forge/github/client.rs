//! The GitHub REST calls the runner makes, through octocrab pointed at a base URL
//! (`https://api.github.com`, `https://HOST/api/v3` for GitHub Enterprise Server, or a
//! fake in tests). Every call names what it was for in its error, with GitHub's status
//! and message; tokens never appear in errors.
//!
//! API version `2022-11-28` is sent explicitly (`X-GitHub-Api-Version`).

use std::time::{Duration, SystemTime};

use octocrab::Octocrab;
use octocrab::models::{RunnerGroupId, RunnerId};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{AppKey, InstallationToken, TokenCache};
use crate::config::Secret;

/// The REST API version the runner speaks.
pub const API_VERSION: &str = "2022-11-28";
/// The public GitHub API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// A failed GitHub call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("GitHub answered {what} with HTTP {status}: {message}")]
    Status {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("cannot reach GitHub for {what}: {message}")]
    Transport { what: &'static str, message: String },
    #[error("cannot use the GitHub API URL `{url}`: {message}")]
    BadUrl { url: String, message: String },
}

impl ApiError {
    /// The HTTP status GitHub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn from_octocrab(what: &'static str, e: octocrab::Error) -> ApiError {
        match e {
            octocrab::Error::GitHub { source, .. } => ApiError::Status {
                what,
                status: source.status_code.as_u16(),
                message: source.message.clone(),
            },
            other => {
                // octocrab's Display of some variants appends a backtrace; keep the first line.
                let text = crate::job::trace::error_chain(&other);
                ApiError::Transport {
                    what,
                    message: text.lines().next().unwrap_or_default().to_owned(),
                }
            }
        }
    }
}

/// An octocrab client for `base` authenticated with `token` (`Authorization: Bearer`).
pub fn octocrab(base: &str, token: &Secret) -> Result<Octocrab, ApiError> {
    // octocrab's connector uses rustls with ring; make ring the process default (an error
    // means a provider is installed already, which is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bad = |message: String| ApiError::BadUrl {
        url: base.to_owned(),
        message,
    };
    Octocrab::builder()
        .base_uri(base.trim_end_matches('/'))
        .map_err(|e| bad(e.to_string()))?
        .personal_token(token.expose().to_owned())
        .add_header(
            http::HeaderName::from_static("x-github-api-version"),
            API_VERSION.to_owned(),
        )
        .set_connect_timeout(Some(Duration::from_secs(30)))
        .set_read_timeout(Some(Duration::from_mins(1)))
        .build()
        .map_err(|e| bad(e.to_string()))
}

#[derive(Debug, Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// Exchanges an App JWT for an installation token.
pub async fn installation_token(
    base: &str,
    app: &AppKey,
    installation: u64,
) -> Result<InstallationToken, ApiError> {
    const WHAT: &str = "the installation token request";
    let crab = octocrab(base, &app.jwt(SystemTime::now()))?;
    let t: AccessToken = crab
        .post(
            format!("/app/installations/{installation}/access_tokens"),
            None::<&()>,
        )
        .await
        .map_err(|e| ApiError::from_octocrab(WHAT, e))?;
    let expires_at = humantime::parse_rfc3339_weak(&t.expires_at)
        .or_else(|_| humantime::parse_rfc3339(&t.expires_at))
        .map_err(|e| ApiError::Status {
            what: WHAT,
            status: 201,
            message: format!("`expires_at` is not a time: {e}"),
        })?;
    Ok(InstallationToken {
        token: Secret::new(t.token),
        expires_at,
    })
}

/// A client acting as an App installation, renewing its token as needed.
#[derive(Debug)]
pub struct AppClient {
    pub base: String,
    pub app: AppKey,
    tokens: TokenCache,
}

impl AppClient {
    pub fn new(base: &str, app: AppKey) -> AppClient {
        AppClient {
            base: base.trim_end_matches('/').to_owned(),
            app,
            tokens: TokenCache::default(),
        }
    }

    /// A client for `installation`, with a cached or new installation token.
    pub async fn installation(&self, installation: u64) -> Result<Octocrab, ApiError> {
        let token = if let Some(t) = self.tokens.get(installation, SystemTime::now()) {
            t
        } else {
            let t = installation_token(&self.base, &self.app, installation).await?;
            let secret = t.token.clone();
            self.tokens.put(installation, t);
            secret
        };
        octocrab(&self.base, &token)
    }

    /// Forgets the token of `installation` (after GitHub refused it with 401).
    pub fn forget(&self, installation: u64) {
        self.tokens.forget(installation);
    }
}

/// Where JIT runners are registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The repository `owner/name`.
    Repo { owner: String, repo: String },
    /// The organisation.
    Org(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Repo { owner, repo } => write!(f, "repository `{owner}/{repo}`"),
            Scope::Org(o) => write!(f, "organisation `{o}`"),
        }
    }
}

/// A just-in-time runner configuration.
#[derive(Debug, Clone)]
pub struct JitConfig {
    pub runner_id: u64,
    pub runner_name: String,
    /// What `run.sh --jitconfig` (or `ACTIONS_RUNNER_INPUT_JITCONFIG`) takes.
    pub encoded: Secret,
}

/// `POST .../actions/runners/generate-jitconfig`.
pub async fn generate_jitconfig(
    crab: &Octocrab,
    scope: &Scope,
    name: &str,
    runner_group_id: u64,
    labels: &[String],
) -> Result<JitConfig, ApiError> {
    const WHAT: &str = "the just-in-time runner configuration request";
    let actions = crab.actions();
    let builder = match scope {
        Scope::Repo { owner, repo } => actions.create_repo_jit_runner_config(
            owner.clone(),
            repo.clone(),
            name,
            RunnerGroupId(runner_group_id),
            labels.to_vec(),
        ),
        Scope::Org(org) => actions.create_org_jit_runner_config(
            org.clone(),
            name,
            RunnerGroupId(runner_group_id),
            labels.to_vec(),
        ),
    };
    let c = builder
        .work_folder("_work")
        .send()
        .await
        .map_err(|e| ApiError::from_octocrab(WHAT, e))?;
    Ok(JitConfig {
        runner_id: c.runner.id.0,
        runner_name: c.runner.name,
        encoded: Secret::new(c.encoded_jit_config),
    })
}

/// `DELETE .../actions/runners/{id}`: removes a runner that never took a job.
pub async fn delete_runner(crab: &Octocrab, scope: &Scope, id: u64) -> Result<(), ApiError> {
    const WHAT: &str = "the runner removal";
    let actions = crab.actions();
    match scope {
        Scope::Repo { owner, repo } => actions.delete_repo_runner(owner, repo, RunnerId(id)).await,
        Scope::Org(org) => actions.delete_org_runner(org, RunnerId(id)).await,
    }
    .map_err(|e| ApiError::from_octocrab(WHAT, e))
}

#[derive(Debug, Deserialize)]
struct CreatedRun {
    id: u64,
}

/// `POST /repos/{owner}/{repo}/check-runs` with a body planned by
/// `rbuild_diagnose::render::checks`; returns the run's id.
pub async fn create_check_run(
    crab: &Octocrab,
    owner: &str,
    repo: &str,
    body: &Value,
) -> Result<u64, ApiError> {
    let r: CreatedRun = crab
        .post(format!("/repos/{owner}/{repo}/check-runs"), Some(body))
        .await
        .map_err(|e| ApiError::from_octocrab("the check run creation", e))?;
    Ok(r.id)
}

/// `PATCH /repos/{owner}/{repo}/check-runs/{id}`: annotations in `body` are appended.
pub async fn update_check_run(
    crab: &Octocrab,
    owner: &str,
    repo: &str,
    id: u64,
    body: &Value,
) -> Result<(), ApiError> {
    let _: Value = crab
        .patch(format!("/repos/{owner}/{repo}/check-runs/{id}"), Some(body))
        .await
        .map_err(|e| ApiError::from_octocrab("the check run update", e))?;
    Ok(())
}

//! The HTTP client of the GitLab Runner API: one method per call, each returning what the
//! runner must do next (a job, no job, retry, resume the trace at an offset, abort).
//!
//! Headers as gitlab-runner sends them: `RUNNER-TOKEN` on runner-level calls, `JOB-TOKEN`
//! on job-level calls, `X-Request-Id`, `User-Agent`, an explicit `Content-Type`. Tokens
//! never appear in URLs, errors or logs.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, Response, StatusCode};

use super::types::{
    Features, Info, InfoConfig, Job, JobRequest, UpdateRequest, VerifyRequest, VerifyResponse,
};
use crate::config::Secret;

const JOB_STATUS: &str = "Job-Status";
const LAST_UPDATE: &str = "X-GitLab-Last-Update";
const UPDATE_INTERVAL: &str = "X-GitLab-Trace-Update-Interval";
/// Longest update interval honoured from the server (gitlab-runner caps it the same way).
const MAX_UPDATE_INTERVAL: Duration = Duration::from_mins(15);
const CALL_TIMEOUT: Duration = Duration::from_mins(1);

/// What went wrong talking to GitLab.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach GitLab for {what} (`{url}`)")]
    Send {
        what: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GitLab refused the token for {what} (`{url}`, HTTP 403)")]
    Forbidden { what: &'static str, url: String },
    #[error("GitLab answered {what} with HTTP {status} (`{url}`){}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("GitLab's answer to {what} is not what the Runner API documents (`{url}`)")]
    Decode {
        what: &'static str,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot use `{}`", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ApiError {
    /// Whether retrying later may help (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Send { .. } => true,
            ApiError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The state of a job as GitLab sees it (`Job-Status` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStatus {
    Running,
    /// A graceful cancel: stop the script, still run `after_script`, then report.
    Canceling,
    /// Gone: canceled, failed or finished on the server; stop at once.
    Ended(String),
}

impl RemoteStatus {
    fn parse(s: &str) -> RemoteStatus {
        match s.trim() {
            "running" | "pending" => RemoteStatus::Running,
            "canceling" => RemoteStatus::Canceling,
            other => RemoteStatus::Ended(other.to_owned()),
        }
    }
}

/// The answer to `jobs/request`.
#[derive(Debug)]
pub enum RequestOutcome {
    /// A job; `last_update` is echoed on the next request, as after "no job".
    Job {
        job: Box<Job>,
        last_update: Option<String>,
    },
    /// No job now; echo `last_update` on the next request.
    NoJob { last_update: Option<String> },
    /// Another runner took the job between GitLab's pick and ours (409): ask again.
    Conflict,
}

/// The answer to a trace PATCH.
#[derive(Debug)]
pub enum PatchOutcome {
    Accepted {
        /// How much of the trace GitLab now holds (`Range: 0-N`).
        server_len: Option<usize>,
        interval: Option<Duration>,
        status: Option<RemoteStatus>,
    },
    /// GitLab holds `server_len` bytes, not what we sent from (416): resume there.
    RangeMismatch {
        server_len: usize,
    },
    /// The job is no longer running on GitLab (403).
    Abort {
        status: Option<RemoteStatus>,
    },
    NotFound,
}

/// The answer to a job update (PUT).
#[derive(Debug)]
pub enum UpdateOutcome {
    Done {
        status: Option<RemoteStatus>,
    },
    /// Accepted but not completed (202): ask again after the interval.
    Accepted {
        interval: Option<Duration>,
    },
    /// The checksum or size did not match what GitLab received (412): resend from 0.
    TraceInvalid,
    Abort {
        status: Option<RemoteStatus>,
    },
    NotFound,
}

/// `info` describing this runner.
pub fn runner_info(executor: &str) -> Info {
    Info {
        name: "rbuild-runner".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        revision: option_env!("RBUILD_GIT_REVISION")
            .unwrap_or("unknown")
            .to_owned(),
        platform: std::env::consts::OS.to_owned(),
        architecture: go_arch().to_owned(),
        executor: executor.to_owned(),
        shell: "sh".to_owned(),
        features: Features::RBUILD_RUNNER,
        config: InfoConfig::default(),
    }
}

/// The architecture as GitLab (Go) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// A client for one GitLab instance.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `<url>/api/v4/`.
    api: String,
    poll_timeout: Duration,
}

impl Client {
    pub fn new(url: &str, poll_timeout: Duration) -> Result<Client, reqwest::Error> {
        // reqwest is built without a bundled crypto provider; install ring once. An error
        // means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(format!(
                "rbuild-runner/{} ({}/{})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                go_arch()
            ))
            .connect_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client {
            http,
            api: format!("{}/api/v4/", url.trim_end_matches('/')),
            poll_timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Sends one call: `X-Request-Id`, the token header, `body` with its `Content-Type`,
    /// and `timeout` (none for uploads and downloads, which take as long as the file does).
    async fn send(
        &self,
        what: &'static str,
        method: Method,
        url: &str,
        token: Token<'_>,
        body: Body,
        timeout: Option<Duration>,
    ) -> Result<Response, ApiError> {
        let (name, value) = token.header();
        let mut req = self
            .http
            .request(method, url)
            .header("X-Request-Id", request_id())
            .header(name, value);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        let req = match body {
            Body::Empty => req,
            Body::Json(bytes) => req.header(CONTENT_TYPE, "application/json").body(bytes),
            Body::Trace { offset, bytes } => {
                let end = offset + bytes.len().saturating_sub(1);
                req.header("Content-Range", format!("{offset}-{end}"))
                    .header(CONTENT_TYPE, "text/plain")
                    .body(bytes)
            }
            Body::Multipart(form) => req.multipart(form),
        };
        req.send().await.map_err(send_error(what, url))
    }

    /// A runner-level call: `body` as JSON, POSTed to `path` with the runner's token.
    /// Returns the URL (for errors) and the answer.
    async fn runner_call(
        &self,
        what: &'static str,
        path: &str,
        token: &Secret,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<(String, Response), ApiError> {
        let url = self.url(path);
        let resp = self
            .send(
                what,
                Method::POST,
                &url,
                Token::Runner(token),
                Body::Json(json(body)),
                Some(timeout),
            )
            .await?;
        Ok((url, resp))
    }

    /// `POST runners/verify`: checks the token and registers this host's `system_id`.
    pub async fn verify(
        &self,
        token: &Secret,
        system_id: &str,
        info: &Info,
    ) -> Result<VerifyResponse, ApiError> {
        const WHAT: &str = "runner verification";
        let body = VerifyRequest {
            token,
            system_id,
            info,
        };
        let (url, resp) = self
            .runner_call(WHAT, "runners/verify", token, &body, CALL_TIMEOUT)
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::CREATED => {
                let text = resp.text().await.unwrap_or_default();
                // Older GitLab answers plain text; newer answers JSON with the expiry.
                Ok(serde_json::from_str(&text).unwrap_or_default())
            }
            StatusCode::FORBIDDEN => Err(ApiError::Forbidden { what: WHAT, url }),
            status => Err(status_error(WHAT, url, status, resp).await),
        }
    }

    /// `POST jobs/request`: a long poll for the next job.
    pub async fn request_job(
        &self,
        token: &Secret,
        system_id: &str,
        last_update: Option<&str>,
        info: &Info,
    ) -> Result<RequestOutcome, ApiError> {
        const WHAT: &str = "a job request";
        let body = JobRequest {
            token,
            system_id,
            last_update,
            info,
        };
        let (url, resp) = self
            .runner_call(WHAT, "jobs/request", token, &body, self.poll_timeout)
            .await?;
        let last = header(resp.headers(), LAST_UPDATE);
        match resp.status() {
            StatusCode::CREATED => {
                let bytes = resp.bytes().await.map_err(send_error(WHAT, &url))?;
                let job: Job =
                    serde_json::from_slice(&bytes).map_err(|source| ApiError::Decode {
                        what: WHAT,
                        url,
                        source,
                    })?;
                Ok(RequestOutcome::Job {
                    job: Box::new(job),
                    last_update: last,
                })
            }
            StatusCode::NO_CONTENT => Ok(RequestOutcome::NoJob { last_update: last }),
            StatusCode::CONFLICT => Ok(RequestOutcome::Conflict),
            StatusCode::FORBIDDEN => Err(ApiError::Forbidden { what: WHAT, url }),
            status => Err(status_error(WHAT, url, status, resp).await),
        }
    }

    /// `PATCH jobs/:id/trace`: appends `bytes` at `offset`.
    pub async fn patch_trace(
        &self,
        job_id: i64,
        job_token: &Secret,
        offset: usize,
        bytes: Vec<u8>,
    ) -> Result<PatchOutcome, ApiError> {
        const WHAT: &str = "a job log update";
        let url = self.url(&format!("jobs/{job_id}/trace?debug_trace=false"));
        let resp = self
            .send(
                WHAT,
                Method::PATCH,
                &url,
                Token::Job(job_token),
                Body::Trace { offset, bytes },
                Some(CALL_TIMEOUT),
            )
            .await?;
        let h = resp.headers();
        let status = header(h, JOB_STATUS).map(|s| RemoteStatus::parse(&s));
        let server_len = header(h, "Range").and_then(|r| range_end(&r));
        match resp.status() {
            StatusCode::ACCEPTED => Ok(PatchOutcome::Accepted {
                server_len,
                interval: interval(h),
                status,
            }),
            StatusCode::RANGE_NOT_SATISFIABLE => match server_len {
                Some(server_len) => Ok(PatchOutcome::RangeMismatch { server_len }),
                None => Err(ApiError::Status {
                    what: WHAT,
                    url,
                    status: 416,
                    body: "no `Range` header to resume from".to_owned(),
                }),
            },
            StatusCode::FORBIDDEN => Ok(PatchOutcome::Abort { status }),
            StatusCode::NOT_FOUND => Ok(PatchOutcome::NotFound),
            s => Err(status_error(WHAT, url, s, resp).await),
        }
    }

    /// `PUT jobs/:id`: the job's state (a keep-alive with `running`, or the final result).
    pub async fn update_job(
        &self,
        job_id: i64,
        update: &UpdateRequest<'_>,
    ) -> Result<UpdateOutcome, ApiError> {
        const WHAT: &str = "a job status update";
        let url = self.url(&format!("jobs/{job_id}"));
        let resp = self
            .send(
                WHAT,
                Method::PUT,
                &url,
                Token::Job(update.token),
                Body::Json(json(update)),
                Some(CALL_TIMEOUT),
            )
            .await?;
        let h = resp.headers();
        let status = header(h, JOB_STATUS).map(|s| RemoteStatus::parse(&s));
        match resp.status() {
            StatusCode::OK => Ok(UpdateOutcome::Done { status }),
            StatusCode::ACCEPTED => Ok(UpdateOutcome::Accepted {
                interval: interval(h),
            }),
            StatusCode::PRECONDITION_FAILED => Ok(UpdateOutcome::TraceInvalid),
            StatusCode::FORBIDDEN => Ok(UpdateOutcome::Abort { status }),
            StatusCode::NOT_FOUND => Ok(UpdateOutcome::NotFound),
            s => Err(status_error(WHAT, url, s, resp).await),
        }
    }

    /// `POST jobs/:id/artifacts`: uploads one file as the multipart part `file`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_artifact(
        &self,
        job_id: i64,
        job_token: &Secret,
        file: &Path,
        filename: &str,
        artifact_type: &str,
        artifact_format: &str,
        expire_in: &str,
    ) -> Result<(), ApiError> {
        const WHAT: &str = "an artifact upload";
        let mut url =
            reqwest::Url::parse(&self.url(&format!("jobs/{job_id}/artifacts"))).map_err(|e| {
                ApiError::Status {
                    what: WHAT,
                    url: self.api.clone(),
                    status: 0,
                    body: e.to_string(),
                }
            })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("artifact_format", artifact_format);
            q.append_pair("artifact_type", artifact_type);
            if !expire_in.is_empty() {
                q.append_pair("expire_in", expire_in);
            }
        }
        let url = url.to_string();
        let file_err = |source| ApiError::File {
            path: file.to_owned(),
            source,
        };
        let f = tokio::fs::File::open(file).await.map_err(file_err)?;
        let len = f.metadata().await.map_err(file_err)?.len();
        let part = reqwest::multipart::Part::stream_with_length(f, len)
            .file_name(filename.to_owned())
            .mime_str("application/octet-stream")
            .map_err(send_error(WHAT, &url))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .send(
                WHAT,
                Method::POST,
                &url,
                Token::Job(job_token),
                Body::Multipart(form),
                None,
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => Ok(()),
            StatusCode::FORBIDDEN => Err(ApiError::Forbidden { what: WHAT, url }),
            s => Err(status_error(WHAT, url, s, resp).await),
        }
    }

    /// `GET jobs/:id/artifacts` with the dependency's token: streams the archive to `dest`.
    pub async fn download_artifacts(
        &self,
        job_id: i64,
        job_token: &Secret,
        dest: &Path,
    ) -> Result<u64, ApiError> {
        use tokio::io::AsyncWriteExt as _;
        const WHAT: &str = "an artifacts download";
        let url = self.url(&format!("jobs/{job_id}/artifacts"));
        let mut resp = self
            .send(
                WHAT,
                Method::GET,
                &url,
                Token::Job(job_token),
                Body::Empty,
                None,
            )
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(ApiError::Forbidden { what: WHAT, url });
            }
            s => return Err(status_error(WHAT, url, s, resp).await),
        }
        let file_err = |source| ApiError::File {
            path: dest.to_owned(),
            source,
        };
        let mut f = tokio::fs::File::create(dest).await.map_err(file_err)?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(send_error(WHAT, &url))? {
            f.write_all(&chunk).await.map_err(file_err)?;
            n += chunk.len() as u64;
        }
        f.flush().await.map_err(file_err)?;
        Ok(n)
    }
}

/// The token a call carries: the runner's on runner-level calls, a job's on job-level ones.
#[derive(Clone, Copy)]
enum Token<'a> {
    Runner(&'a Secret),
    Job(&'a Secret),
}

impl<'a> Token<'a> {
    fn header(self) -> (&'static str, &'a str) {
        match self {
            Token::Runner(t) => ("RUNNER-TOKEN", t.expose()),
            Token::Job(t) => ("JOB-TOKEN", t.expose()),
        }
    }
}

/// What a call sends.
enum Body {
    Empty,
    Json(Vec<u8>),
    /// Job log bytes that go at `offset` of the trace (`Content-Range`).
    Trace {
        offset: usize,
        bytes: Vec<u8>,
    },
    Multipart(reqwest::multipart::Form),
}

/// The error of a call that did not get through (or whose answer broke off).
fn send_error<'a>(
    what: &'static str,
    url: &'a str,
) -> impl FnOnce(reqwest::Error) -> ApiError + 'a {
    move |source| ApiError::Send {
        what,
        url: url.to_owned(),
        source,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("request bodies are plain structs that always serialise")
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn interval(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = header(h, UPDATE_INTERVAL)?.trim().parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs).min(MAX_UPDATE_INTERVAL))
}

/// The number after `-` in `0-N` (how much the server holds).
pub fn range_end(range: &str) -> Option<usize> {
    range.trim().rsplit_once('-')?.1.trim().parse().ok()
}

async fn status_error(
    what: &'static str,
    url: String,
    status: StatusCode,
    resp: Response,
) -> ApiError {
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    ApiError::Status {
        what,
        url,
        status: status.as_u16(),
        body: body.trim().to_owned(),
    }
}

/// A random correlation id: 32 hex digits, like a UUID without dashes.
fn request_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_statuses() {
        assert_eq!(range_end("0-1234"), Some(1234));
        assert_eq!(range_end("0-0"), Some(0));
        assert_eq!(range_end("bogus"), None);
        assert_eq!(RemoteStatus::parse("canceling"), RemoteStatus::Canceling);
        assert_eq!(
            RemoteStatus::parse("canceled"),
            RemoteStatus::Ended("canceled".to_owned())
        );
        assert_eq!(request_id().len(), 32);
    }
}

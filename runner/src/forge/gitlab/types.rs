//! Wire types of the GitLab Runner API, named as GitLab names them (`common/spec/spec.go`
//! and `common/network.go` of gitlab-runner; `lib/api/ci/runner.rb` of GitLab).
//!
//! Responses are read leniently: every field has a default and `null` reads as the
//! default, because GitLab versions differ in what they send. Requests are written
//! exactly, with every feature flag stated.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Secret;

/// `null` and a missing field both read as `T::default()`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What the runner can do, as `info.features` of `verify`, `jobs/request` and job updates.
/// GitLab decides from these which jobs it may hand out. Every value here is honest: a
/// feature is `true` only if this runner implements it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Features {
    pub variables: bool,
    pub image: bool,
    pub services: bool,
    pub artifacts: bool,
    pub cache: bool,
    pub fallback_cache_keys: bool,
    pub shared: bool,
    pub upload_multiple_artifacts: bool,
    pub upload_raw_artifacts: bool,
    pub session: bool,
    pub terminal: bool,
    pub refspecs: bool,
    pub masking: bool,
    pub proxy: bool,
    pub raw_variables: bool,
    pub artifacts_exclude: bool,
    pub multi_build_steps: bool,
    pub trace_reset: bool,
    pub trace_checksum: bool,
    pub trace_size: bool,
    pub vault_secrets: bool,
    pub cancelable: bool,
    pub return_exit_code: bool,
    pub service_variables: bool,
    pub service_multiple_aliases: bool,
    pub image_executor_opts: bool,
    pub service_executor_opts: bool,
    pub cancel_gracefully: bool,
    pub native_steps_integration: bool,
    pub two_phase_job_commit: bool,
    pub job_inputs: bool,
}

impl Features {
    /// What rbuild-runner implements.
    pub const RBUILD_RUNNER: Features = Features {
        variables: true,
        image: true,
        // `services:` need a network of sidecar containers; they are reported as not
        // supported in the job log.
        services: false,
        artifacts: true,
        // `cache:` archives are not implemented (rbuild's own layer cache persists).
        cache: false,
        fallback_cache_keys: false,
        // Every job gets a fresh sandbox.
        shared: false,
        upload_multiple_artifacts: true,
        upload_raw_artifacts: true,
        session: false,
        terminal: false,
        refspecs: true,
        masking: true,
        proxy: false,
        raw_variables: true,
        artifacts_exclude: true,
        multi_build_steps: true,
        trace_reset: true,
        trace_checksum: true,
        trace_size: true,
        vault_secrets: false,
        cancelable: true,
        return_exit_code: true,
        service_variables: false,
        service_multiple_aliases: false,
        // `image.docker.platform` picks the platform of `rbuild run`.
        image_executor_opts: true,
        service_executor_opts: false,
        cancel_gracefully: true,
        native_steps_integration: false,
        two_phase_job_commit: true,
        job_inputs: false,
    };
}

/// `info` of requests: who this runner is.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub revision: String,
    pub platform: String,
    pub architecture: String,
    pub executor: String,
    pub shell: String,
    pub features: Features,
    pub config: InfoConfig,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct InfoConfig {
    pub gpus: String,
}

/// `POST /api/v4/runners/verify` body.
#[derive(Debug, Serialize)]
pub struct VerifyRequest<'a> {
    pub token: &'a Secret,
    pub system_id: &'a str,
    pub info: &'a Info,
}

/// `POST /api/v4/runners/verify` answer (newer GitLab; older ones answer plain text).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct VerifyResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub token_expires_at: String,
}

/// `POST /api/v4/jobs/request` body.
#[derive(Debug, Serialize)]
pub struct JobRequest<'a> {
    pub token: &'a Secret,
    pub system_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update: Option<&'a str>,
    pub info: &'a Info,
}

/// A job handed out by `jobs/request` (`spec.Job`).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Job {
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub token: Secret,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_git_fetch: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub job_info: JobInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub git_info: GitInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub runner_info: RunnerInfo,
    #[serde(default, deserialize_with = "null_default")]
    pub variables: Vec<Variable>,
    #[serde(default, deserialize_with = "null_default")]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub image: Option<Image>,
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<Image>,
    #[serde(default, deserialize_with = "null_default")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, deserialize_with = "null_default")]
    pub cache: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub credentials: Vec<Credential>,
    #[serde(default, deserialize_with = "null_default")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, deserialize_with = "null_default")]
    pub features: JobFeatures,
    #[serde(default)]
    pub secrets: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct JobInfo {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub stage: String,
    #[serde(default, deserialize_with = "null_default")]
    pub project_id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub project_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub project_full_path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub pipeline_id: i64,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct GitInfo {
    #[serde(default, deserialize_with = "null_default")]
    pub repo_url: Secret,
    #[serde(default, deserialize_with = "null_default")]
    pub r#ref: String,
    #[serde(default, deserialize_with = "null_default")]
    pub sha: String,
    #[serde(default, deserialize_with = "null_default")]
    pub before_sha: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ref_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub refspecs: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub depth: u32,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RunnerInfo {
    /// The job timeout in seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: u64,
}

/// A CI/CD variable of the job.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Variable {
    pub key: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
    #[serde(default, deserialize_with = "null_default")]
    pub public: bool,
    /// A file-type variable: the value is written to a file, the variable holds its path.
    #[serde(default, deserialize_with = "null_default")]
    pub file: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub masked: bool,
    /// Not expanded (`$OTHER` stays literal).
    #[serde(default, deserialize_with = "null_default")]
    pub raw: bool,
}

/// One step: `script` (before_script + script), `after_script`, or another named step.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Step {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub script: Vec<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub when: String,
    #[serde(default, deserialize_with = "null_default")]
    pub allow_failure: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Image {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub alias: String,
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    /// `image: pull_policy:` (`always`, `if-not-present`, `never`); empty means `always`.
    #[serde(default, deserialize_with = "null_default")]
    pub pull_policy: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub executor_opts: ExecutorOpts,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ExecutorOpts {
    #[serde(default, deserialize_with = "null_default")]
    pub docker: DockerOpts,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct DockerOpts {
    /// `image: {docker: {platform: arm64}}`.
    #[serde(default, deserialize_with = "null_default")]
    pub platform: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
}

/// One artifact to upload: `artifacts:paths` (type `archive`) or one report.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Artifact {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub untracked: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub exclude: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub when: String,
    #[serde(default, deserialize_with = "null_default")]
    pub artifact_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub artifact_format: String,
    #[serde(default, deserialize_with = "null_default")]
    pub expire_in: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Credential {
    #[serde(default, deserialize_with = "null_default")]
    pub r#type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub username: String,
    #[serde(default, deserialize_with = "null_default")]
    pub password: Secret,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Dependency {
    #[serde(default, deserialize_with = "null_default")]
    pub id: i64,
    /// The dependency's own job token: it authorizes downloading its artifacts.
    #[serde(default, deserialize_with = "null_default")]
    pub token: Secret,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// The archive to download; none when the job uploaded no archive.
    #[serde(default)]
    pub artifacts_file: Option<ArtifactsFile>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ArtifactsFile {
    #[serde(default, deserialize_with = "null_default")]
    pub filename: String,
    #[serde(default, deserialize_with = "null_default")]
    pub size: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct JobFeatures {
    #[serde(default, deserialize_with = "null_default")]
    pub trace_sections: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub token_mask_prefixes: Vec<String>,
    /// The `failure_reason` values this GitLab accepts.
    #[serde(default, deserialize_with = "null_default")]
    pub failure_reasons: Vec<String>,
}

/// `state` of a job update.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Success,
    Failed,
}

/// `output` of a job update.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    pub checksum: String,
    pub bytesize: usize,
}

/// `PUT /api/v4/jobs/:id` body.
#[derive(Debug, Serialize)]
pub struct UpdateRequest<'a> {
    pub info: &'a Info,
    pub token: &'a Secret,
    pub state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a Output>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_name_all_31_flags_of_gitlab_runner() {
        let v = serde_json::to_value(&Features::RBUILD_RUNNER).unwrap();
        let map = v.as_object().unwrap();
        assert_eq!(map.len(), 31);
        for on in [
            "refspecs",
            "masking",
            "trace_checksum",
            "cancel_gracefully",
            "return_exit_code",
        ] {
            assert_eq!(map[on], true, "{on}");
        }
        for off in ["services", "cache", "session", "terminal", "vault_secrets"] {
            assert_eq!(map[off], false, "{off}");
        }
    }

    #[test]
    fn reads_the_documented_job_payload_with_nulls() {
        let job: Job = serde_json::from_str(
            r#"{"id":265,"token":"tokn","allow_git_fetch":true,
            "job_info":{"id":265,"name":"build","stage":"build","project_id":4,"project_name":"gitlab-test"},
            "git_info":{"repo_url":"https://bla/dummy.git","ref":"custom","sha":"265c14cf140a66cfc61e40e4ab45c95ba8df5ed1",
              "before_sha":"fc40ad32cdd36b814f07a540605110edc209a38c","ref_type":"branch",
              "refspecs":["+265c14cf140a66cfc61e40e4ab45c95ba8df5ed1:refs/pipelines/120"],"depth":50},
            "runner_info":{"timeout":3600,"runner_session_url":null},
            "variables":[{"key":"CI_JOB_TOKEN","value":"tokn","public":false,"masked":true}],
            "steps":[{"name":"script","script":["make"],"timeout":3600,"when":"on_success","allow_failure":false}],
            "image":null,"services":null,"artifacts":[],"cache":[],"credentials":[],"dependencies":[],
            "features":{"trace_sections":true,"failure_reasons":["script_failure"]}}"#,
        )
        .unwrap();
        assert_eq!(job.id, 265);
        assert_eq!(job.token.expose(), "tokn");
        assert_eq!(job.git_info.depth, 50);
        assert_eq!(job.runner_info.timeout, 3600);
        assert!(job.image.is_none());
        assert!(job.services.is_empty());
        assert_eq!(job.features.failure_reasons, ["script_failure"]);
        assert!(job.variables[0].masked);
    }

    #[test]
    fn update_omits_what_is_not_set() {
        let info = crate::forge::gitlab::client::runner_info("rbuild");
        let token = Secret::new("t");
        let body = serde_json::to_value(UpdateRequest {
            info: &info,
            token: &token,
            state: JobState::Success,
            failure_reason: None,
            checksum: Some("crc32:00000000"),
            output: None,
            exit_code: None,
        })
        .unwrap();
        assert_eq!(body["state"], "success");
        assert!(body.get("failure_reason").is_none());
        assert!(body.get("exit_code").is_none());
    }
}

//! Forges: the CI hosts jobs come from. Each forge module owns its wire protocol (types,
//! client, fake-free tests of its parsing) and nothing else: running a job is `job/`'s.
//!
//! GitLab: the native Runner API. GitHub: `workflow_job` webhooks, just-in-time runner
//! configurations and the Checks API (the jobs themselves run in GitHub's own runner).

pub mod github;
pub mod gitlab;

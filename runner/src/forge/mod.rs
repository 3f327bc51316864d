//! Forges: the CI hosts jobs come from. Each forge module owns its wire protocol (types,
//! client, fake-free tests of its parsing) and nothing else: running a job is `job/`'s.
//!
//! GitLab is implemented (the native Runner API). GitHub (workflow_job webhooks, JIT
//! runner configs, the Checks API) is a separate issue.

pub mod gitlab;

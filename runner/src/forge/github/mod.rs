//! GitHub: the Checks API (diagnostics as annotations on a commit), GitHub App
//! authentication, and the wire side of fleet mode (`workflow_job` webhooks and
//! just-in-time runner configurations). Running the official Actions runner in a sandbox
//! is the daemon's (`daemon/github.rs`).
//!
//! - [`action`]: `rbuild-runner github-action`, the build step of `action/action.yml`;
//! - [`auth`]: App JWTs (RS256, signed with ring) and cached installation tokens;
//! - [`client`]: the REST calls, through octocrab pointed at a base URL (GitHub Enterprise
//!   Server: `https://HOST/api/v3`);
//! - [`report`]: `rbuild-runner report github`: check runs with every annotation, 50 per
//!   request, or workflow commands when the token cannot write checks;
//! - [`webhook`]: signature, delivery de-duplication, payload types, the label contract.
//!
//! Nothing here speaks the Actions runner protocol: jobs run in GitHub's own runner.

pub mod action;
pub mod auth;
pub mod client;
pub mod report;
pub mod webhook;

//! rbuild-runner: picks up CI jobs (GitLab Runner API; GitHub `workflow_job` webhooks and
//! just-in-time runners) and runs each in a fresh unprivileged sandbox by starting `rbuild
//! run` as a child process; reports diagnostics as GitHub check runs and runs the GitHub
//! Action's build step. This crate never creates namespaces itself and holds no `unsafe`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod envvars;
pub mod executor;
pub mod forge;
pub mod job;
pub mod log;
pub mod outcome;
pub mod state;

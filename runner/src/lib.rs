//! rbuild-runner: picks up CI jobs (GitLab Runner API; GitHub is a separate issue) and runs
//! each in a fresh unprivileged sandbox by starting `rbuild run` as a child process. This
//! crate never creates namespaces itself and holds no `unsafe`.
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

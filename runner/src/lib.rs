//! rbuild-runner: picks up CI jobs (GitLab Runner API, GitHub `workflow_job` webhooks) and
//! runs each in a fresh unprivileged sandbox by starting `rbuild` subcommands as child
//! processes. This crate never creates namespaces itself and holds no `unsafe`.
#![forbid(unsafe_code)]

pub mod cli;

//! One file per subcommand: each turns validated arguments into calls to the library
//! modules and returns `anyhow::Result<()>`; `cli` renders the outcome.

pub mod build;
pub mod check;
pub mod doctor;
pub mod explain;
pub mod prune;
pub mod pull;
pub mod push;
pub mod run;

use crate::outcome::{Exit, Failure};

/// The failure of a command whose engine has not landed yet.
pub(crate) fn not_yet(command: &str) -> Failure {
    Failure::new(
        Exit::Bug,
        format!("`rbuild {command}` is not implemented yet"),
    )
    .hint("this is a development snapshot of rbuild; see the open issues for what lands next")
}

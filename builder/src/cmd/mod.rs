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

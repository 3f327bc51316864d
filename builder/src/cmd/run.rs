//! `rbuild run`.

use crate::cli::RunArgs;

/// Runs `rbuild run`.
pub fn run(_args: &RunArgs) -> anyhow::Result<()> {
    Err(super::not_yet("run").into())
}

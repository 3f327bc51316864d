//! `rbuild check`.

use crate::cli::CheckArgs;

/// Runs `rbuild check`.
pub fn run(_args: &CheckArgs) -> anyhow::Result<()> {
    Err(super::not_yet("check").into())
}

//! `rbuild build`.

use crate::cli::BuildArgs;

/// Runs `rbuild build`.
pub fn run(_args: &BuildArgs) -> anyhow::Result<()> {
    Err(super::not_yet("build").into())
}

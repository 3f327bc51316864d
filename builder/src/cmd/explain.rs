//! `rbuild explain`.

use crate::cli::ExplainArgs;

/// Runs `rbuild explain`.
pub fn run(_args: &ExplainArgs) -> anyhow::Result<()> {
    Err(super::not_yet("explain").into())
}

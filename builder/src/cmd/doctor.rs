//! `rbuild doctor`.

use crate::cli::DoctorArgs;

/// Runs `rbuild doctor`.
pub fn run(_args: &DoctorArgs) -> anyhow::Result<()> {
    Err(super::not_yet("doctor").into())
}

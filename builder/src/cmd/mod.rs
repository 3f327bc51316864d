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

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// `p` made absolute against the current directory.
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot tell the current directory")?
            .join(p))
    }
}

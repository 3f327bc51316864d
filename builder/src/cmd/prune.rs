//! `rbuild prune`.

use crate::cli::PruneArgs;
use crate::outcome::{Exit, Failure};
use crate::store::{PruneOptions, Store, parse_size};

use super::pull::{cache_dir, human, println_data};

/// Runs `rbuild prune`.
pub fn run(args: &PruneArgs) -> anyhow::Result<()> {
    let keep_bytes = args
        .keep_storage
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| Failure::new(Exit::Usage, e).hint("e.g. `--keep-storage 10GB`"))?;
    let dir = cache_dir(args.cache_dir.as_deref())?;
    let store = Store::open_exclusive(&dir, || {
        eprintln!(
            "waiting for other rbuild processes using `{}`",
            dir.display()
        );
    })
    .map_err(|e| {
        Failure::new(
            Exit::Host,
            format!("cannot open the content store in `{}`", dir.display()),
        )
        .caused_by(e)
    })?;
    let report = store
        .prune(PruneOptions {
            all: args.all,
            keep_bytes,
        })
        .map_err(|e| {
            Failure::new(Exit::Host, format!("cannot prune `{}`", dir.display())).caused_by(e)
        })?;
    for name in &report.removed_refs {
        eprintln!("removed {name}");
    }
    for digest in &report.removed_blobs {
        println_data(&digest.to_string())?;
    }
    eprintln!(
        "freed {} ({} blobs, {} images, {} interrupted downloads); {} kept",
        human(report.freed_bytes),
        report.removed_blobs.len(),
        report.removed_refs.len(),
        report.removed_partials,
        human(report.kept_bytes)
    );
    Ok(())
}

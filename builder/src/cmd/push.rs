//! `rbuild push`.

use crate::cli::PushArgs;
use crate::image::{Descriptor, layout};
use crate::outcome::{Exit, Failure};
use crate::registry::{self, ImageRef, Registry};

use super::pull::{Direction, open_store, options, parse_platforms, print_event, println_data};

/// Runs `rbuild push`.
pub fn run(args: &PushArgs) -> anyhow::Result<()> {
    let platform = match &args.platform {
        Some(p) => parse_platforms(std::slice::from_ref(p))?.into_iter().next(),
        None => None,
    };
    let store = open_store(args.store.cache_dir.as_deref())?;
    let local = registry::local_image(&store, &args.source)
        .map_err(|e| e.into_failure(format!("cannot find `{}` to push", args.source)))?;
    let (pushed, name) = if let Some((path, tag)) = layout::parse_reference(&args.destination) {
        let out = layout::Layout::create(&path).map_err(|e| {
            Failure::new(
                Exit::Input,
                format!("cannot write the OCI layout `{}`", path.display()),
            )
            .caused_by(e)
        })?;
        let d = layout::export(
            local.source(),
            local.descriptor(),
            &out,
            tag.as_deref(),
            platform.as_ref(),
        )
        .map_err(|e| {
            Failure::new(
                Exit::Input,
                format!("cannot export `{}` to `{}`", args.source, args.destination),
            )
            .caused_by(e)
        })?;
        eprintln!("  wrote   {} to `{}`", d.digest, args.destination);
        (d, args.destination.clone())
    } else {
        let dest: ImageRef = args.destination.parse().map_err(|e| {
            Failure::new(Exit::Usage, format!("{e}"))
                .hint("DESTINATION is `host/repo[:tag]` or `oci-layout://PATH[:TAG]`")
        })?;
        let registry = Registry::new(options(&args.store)?)
            .map_err(|e| e.into_failure("cannot set up the registry client"))?
            .with_events(print_event(Direction::Push));
        let pushed = registry::block_on(registry.push(
            local.source(),
            local.descriptor(),
            &dest,
            platform.as_ref(),
        ))
        .map_err(|e| e.into_failure(format!("cannot push `{}` to `{dest}`", args.source)))?;
        (pushed.descriptor, dest.to_string())
    };
    write_outputs(args, &local, &pushed, &name)?;
    println_data(&pushed.digest.to_string())
}

/// `--metadata-file` (buildx's keys) and `--iidfile`.
fn write_outputs(
    args: &PushArgs,
    local: &registry::LocalImage<'_>,
    pushed: &Descriptor,
    name: &str,
) -> Result<(), Failure> {
    let write = |path: &std::path::Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| {
            Failure::new(Exit::Input, format!("cannot write `{}`", path.display())).caused_by(e)
        })
    };
    let image_id = if crate::image::media::is_manifest(&pushed.media_type) {
        crate::image::read_document(local.source(), &pushed.digest)
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::image::Manifest>(&b).ok())
            .map_or_else(|| pushed.digest.clone(), |m| m.config.digest)
    } else {
        pushed.digest.clone()
    };
    if let Some(path) = &args.metadata_file {
        let doc = serde_json::json!({
            "containerimage.digest": pushed.digest.to_string(),
            "containerimage.config.digest": image_id.to_string(),
            "containerimage.descriptor": {
                "mediaType": pushed.media_type,
                "digest": pushed.digest.to_string(),
                "size": pushed.size,
            },
            "image.name": name,
        });
        let mut bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| Failure::new(Exit::Bug, e.to_string()))?;
        bytes.push(b'\n');
        write(path, &bytes)?;
    }
    if let Some(path) = &args.iidfile {
        write(path, image_id.to_string().as_bytes())?;
    }
    Ok(())
}

//! `rbuild push`.

use crate::cli::PushArgs;
use std::path::PathBuf;

use crate::image::export::{self, ExportOptions};
use crate::image::{Descriptor, Platform, layout};
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
    let (pushed, name) = if let Some(dest) = LocalDestination::parse(&args.destination) {
        let d = export_local(args, &local, &dest, platform.as_ref())?;
        eprintln!("  wrote   {} to `{}`", d.digest, args.destination);
        (d, args.destination.clone())
    } else {
        let dest: ImageRef = args.destination.parse().map_err(|e| {
            Failure::new(Exit::Usage, format!("{e}")).hint(
                "DESTINATION is `host/repo[:tag]`, `oci-layout://PATH[:TAG]`, `oci-archive:FILE[:TAG]` or `docker-archive:FILE[:NAME[:TAG]]`",
            )
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

/// A destination on the local disk, in skopeo's transport syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalDestination {
    /// `oci-layout://PATH[:TAG]` or `oci:PATH[:TAG]`: an OCI layout directory.
    Layout { path: PathBuf, tag: Option<String> },
    /// `oci-archive:FILE[:TAG]`: an OCI layout tar.
    OciArchive { path: PathBuf, tag: Option<String> },
    /// `docker-archive:FILE[:NAME[:TAG]]`: a Docker archive.
    DockerArchive { path: PathBuf, name: Option<String> },
}

impl LocalDestination {
    fn parse(text: &str) -> Option<LocalDestination> {
        if let Some((path, tag)) = layout::parse_reference(text) {
            return Some(LocalDestination::Layout { path, tag });
        }
        // skopeo splits `transport:path:reference` at the first colon after the transport.
        let split = |rest: &str| match rest.split_once(':') {
            Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_owned())),
            Some((p, _)) => (PathBuf::from(p), None),
            None => (PathBuf::from(rest), None),
        };
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (path, tag) = split(rest);
            return Some(LocalDestination::OciArchive { path, tag });
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            let (path, name) = split(rest);
            return Some(LocalDestination::DockerArchive { path, name });
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            let (path, tag) = split(rest);
            return Some(LocalDestination::Layout { path, tag });
        }
        None
    }
}

/// `SOURCE_DATE_EPOCH` as the mtime of archive entries, else 0 (archives are always
/// reproducible; the variable only chooses the date).
fn archive_mtime() -> Result<u64, Failure> {
    crate::image::writer::Created::from_env()
        .map(|c| {
            if std::env::var_os(crate::envvars::SOURCE_DATE_EPOCH).is_some_and(|v| !v.is_empty()) {
                c.unix
            } else {
                0
            }
        })
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()).hint("unset it or set it to a Unix time, e.g. `SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)`"))
}

fn export_local(
    args: &PushArgs,
    local: &registry::LocalImage<'_>,
    dest: &LocalDestination,
    platform: Option<&Platform>,
) -> Result<Descriptor, Failure> {
    let mtime = archive_mtime()?;
    let source_name = match local {
        registry::LocalImage::Stored(..) => {
            args.source.parse::<ImageRef>().ok().map(|r| r.to_string())
        }
        registry::LocalImage::Layout(..) => None,
    };
    let result = match dest {
        LocalDestination::Layout { path, tag } => {
            let opts = ExportOptions {
                names: Vec::new(),
                ref_name: tag.clone(),
                platform: platform.cloned(),
                mtime,
            };
            export::oci_dir(local.source(), local.descriptor(), path, &opts)
        }
        LocalDestination::OciArchive { path, tag } => {
            let opts = ExportOptions {
                names: source_name.into_iter().collect(),
                ref_name: tag.clone(),
                platform: platform.cloned(),
                mtime,
            };
            export::oci_tar(local.source(), local.descriptor(), path, &opts)
        }
        LocalDestination::DockerArchive { path, name } => {
            let opts = ExportOptions {
                names: name.clone().or(source_name).into_iter().collect(),
                ref_name: None,
                platform: platform.cloned(),
                mtime,
            };
            export::docker_tar(local.source(), local.descriptor(), path, &opts)
        }
    };
    result.map_err(|e| {
        let mut f = Failure::new(
            Exit::Input,
            format!("cannot export `{}` to `{}`", args.source, args.destination),
        );
        if let export::ExportError::Resolve(crate::image::ResolveError::NoPlatform { .. }) = &e {
            f = f.hint("a Docker archive holds one image: choose a platform the image has with `--platform`");
        }
        if let export::ExportError::Io { .. } = &e {
            f = f.hint("check that the destination's directory exists and is writable");
        }
        f.caused_by(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_destinations_follow_skopeo() {
        let p = LocalDestination::parse;
        assert_eq!(
            p("oci-archive:/tmp/x.tar:v1"),
            Some(LocalDestination::OciArchive {
                path: "/tmp/x.tar".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            p("docker-archive:img.tar:reg:5000/app:1"),
            Some(LocalDestination::DockerArchive {
                path: "img.tar".into(),
                name: Some("reg:5000/app:1".into())
            })
        );
        assert_eq!(
            p("oci:dir"),
            Some(LocalDestination::Layout {
                path: "dir".into(),
                tag: None
            })
        );
        assert_eq!(
            p("oci-layout:///a/b:t"),
            Some(LocalDestination::Layout {
                path: "/a/b".into(),
                tag: Some("t".into())
            })
        );
        assert_eq!(p("localhost:5000/app:1"), None);
    }
}

//! The `busybox` base image for linux/amd64 and linux/arm64, made from Debian's
//! `busybox-static` packages (the machines here cannot reach Docker Hub).
//!
//! Recipe: `apt-get download busybox-static:<arch>`, take `/bin/busybox` out of the package,
//! ask the binary for its applet list (`--list-full`; the arm64 one through
//! `qemu-aarch64-static` directly, no binfmt needed), and write a one-layer rootfs with the
//! applets as symlinks, `/etc/passwd` and `/etc/group`. Everything is deterministic (owner
//! 0:0, the package's file time, sorted entries, gzip without a timestamp), so the same
//! package version gives the same digests.
//!
//! The result is an OCI image layout cached outside the clone, keyed by package version and
//! [`RECIPE`], under `$RBUILD_E2E_CACHE` (default `$XDG_CACHE_HOME/rbuild-e2e` or
//! `~/.cache/rbuild-e2e`). Its `index.json` tags the multi-platform index `latest` and the
//! two single-platform manifests `amd64` and `arm64`.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flate2::{Compression, GzBuilder};
use serde_json::{Value, json};

use crate::gate::Missing;
use crate::oci::{self, Layout};
use crate::user::{current_uid, run_ok};

/// Bump when the recipe changes, so cached layouts from the old recipe are not reused.
pub const RECIPE: u32 = 1;

/// A platform of the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// Debian's architecture name.
    pub deb: &'static str,
    /// OCI `architecture`.
    pub oci: &'static str,
    /// OCI `variant`.
    pub variant: Option<&'static str>,
    /// What `uname -m` prints on it.
    pub uname: &'static str,
    /// Interpreter to run its binaries on an amd64 host without binfmt.
    pub qemu: Option<&'static str>,
}

pub const AMD64: Arch = Arch {
    deb: "amd64",
    oci: "amd64",
    variant: None,
    uname: "x86_64",
    qemu: None,
};
pub const ARM64: Arch = Arch {
    deb: "arm64",
    oci: "arm64",
    variant: Some("v8"),
    uname: "aarch64",
    qemu: Some("/usr/bin/qemu-aarch64-static"),
};
/// The platforms of the base image, in index order.
pub const ARCHES: [Arch; 2] = [AMD64, ARM64];

/// `PATH` set in the image config.
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where cached fixtures live (outside the clone).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBUILD_E2E_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("rbuild-e2e")
}

/// The cached busybox layout, built on first use.
pub fn busybox() -> Result<Layout, Missing> {
    static LAYOUT: OnceLock<Result<Layout, Missing>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| busybox_in(&cache_root().join("bases")))
        .clone()
}

/// The Debian version of `busybox-static:<arch>` that apt would download.
pub fn package_version(arch: Arch) -> Result<String, Missing> {
    let pkg = format!("busybox-static:{}", arch.deb);
    let fix = if arch == AMD64 {
        "as root: `apt-get update`".to_owned()
    } else {
        format!(
            "as root: `dpkg --add-architecture {} && apt-get update`",
            arch.deb
        )
    };
    let out = run_ok(Command::new("apt-cache").args(["show", "--no-all-versions", &pkg]))
        .map_err(|e| Missing::new(format!("apt does not know `{pkg}`: {e}"), fix.clone()))?;
    out.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| Missing::new(format!("apt shows no version of `{pkg}`"), fix))
}

/// Builds (or finds) the layout under `bases`.
pub fn busybox_in(bases: &Path) -> Result<Layout, Missing> {
    let versions = ARCHES
        .iter()
        .map(|&a| package_version(a))
        .collect::<Result<Vec<_>, _>>()?;
    let key = if versions.iter().all(|v| *v == versions[0]) {
        versions[0].clone()
    } else {
        versions.join("_")
    };
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = bases.join(format!("busybox-{key}-r{RECIPE}"));
    if dir.join("index.json").is_file() {
        return Layout::open(&dir).map_err(|e| cache_error(&dir, &e.to_string()));
    }
    fs::create_dir_all(bases).map_err(|e| cache_error(bases, &e.to_string()))?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(bases)
        .map_err(|e| cache_error(bases, &e.to_string()))?;
    let staged = work.path().join("layout");
    build(work.path(), &staged, &versions)?;
    // Readable by the unprivileged test user (the harness may build it as root).
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))
        .map_err(|e| cache_error(&staged, &e.to_string()))?;
    match fs::rename(&staged, &dir) {
        Ok(()) => {}
        // Another test process finished first; its result is identical.
        Err(_) if dir.join("index.json").is_file() => {}
        Err(e) => return Err(cache_error(&dir, &e.to_string())),
    }
    Layout::open(&dir).map_err(|e| cache_error(&dir, &e.to_string()))
}

fn cache_error(path: &Path, err: &str) -> Missing {
    Missing::new(
        format!(
            "cannot write the base-image cache `{}`: {err}",
            path.display()
        ),
        "make it writable or point RBUILD_E2E_CACHE elsewhere",
    )
}

fn build(work: &Path, out: &Path, versions: &[String]) -> Result<(), Missing> {
    let layout = Layout::create(out).map_err(|e| cache_error(out, &e.to_string()))?;
    let mut platform_descs = Vec::new();
    let mut refs = Vec::new();
    for (arch, version) in ARCHES.iter().zip(versions) {
        let (busybox, mtime) = fetch_busybox(work, *arch, version)?;
        let applets = applets(work, *arch, &busybox)?;
        let layer =
            rootfs_tar(&busybox, &applets, mtime).map_err(|e| cache_error(out, &e.to_string()))?;
        let desc = write_image(&layout, *arch, version, &layer, mtime)
            .map_err(|e| cache_error(out, &e))?;
        let mut tagged = desc.clone();
        tagged["annotations"] = json!({ oci::REF_NAME: arch.oci });
        refs.push(tagged);
        platform_descs.push(desc);
    }
    let index =
        json!({ "schemaVersion": 2, "mediaType": oci::MEDIA_INDEX, "manifests": platform_descs });
    let mut top = layout
        .put_json(oci::MEDIA_INDEX, &index)
        .map_err(|e| cache_error(out, &e.to_string()))?;
    top["annotations"] = json!({ oci::REF_NAME: "latest" });
    refs.insert(0, top);
    layout
        .write_index(&refs)
        .map_err(|e| cache_error(out, &e.to_string()))
}

/// Downloads the package and returns `/bin/busybox` from it with its modification time.
fn fetch_busybox(work: &Path, arch: Arch, version: &str) -> Result<(Vec<u8>, u64), Missing> {
    let dl = work.join(format!("deb-{}", arch.deb));
    fs::create_dir_all(&dl).map_err(|e| cache_error(&dl, &e.to_string()))?;
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(&dl).arg("download").arg("-q");
    if current_uid() == 0 {
        // apt would otherwise try to drop to `_apt`, which cannot write here.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.arg(format!("busybox-static:{}={version}", arch.deb));
    run_ok(&mut cmd).map_err(|e| {
        Missing::new(
            format!("cannot download `busybox-static:{}`: {e}", arch.deb),
            "check that Debian's archive is reachable (`apt-get update`)",
        )
    })?;
    let deb = fs::read_dir(&dl)
        .map_err(|e| cache_error(&dl, &e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| Missing::new("apt-get download produced no .deb", "check apt's output"))?;
    let out = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .output()
        .map_err(|e| Missing::new(format!("cannot run dpkg-deb: {e}"), "install `dpkg`"))?;
    if !out.status.success() {
        return Err(Missing::new(
            format!("dpkg-deb cannot read `{}`", deb.display()),
            "remove the cache and retry",
        ));
    }
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let entries = archive
        .entries()
        .map_err(|e| Missing::new(format!("bad package tar: {e}"), "retry"))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| Missing::new(format!("bad package tar: {e}"), "retry"))?;
        let path = entry
            .path()
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        if path == Path::new("./bin/busybox") || path == Path::new("bin/busybox") {
            let mtime = entry.header().mtime().unwrap_or(0);
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| Missing::new(format!("bad package tar: {e}"), "retry"))?;
            return Ok((bytes, mtime));
        }
    }
    Err(Missing::new(
        format!("`{}` has no /bin/busybox", deb.display()),
        "check the package",
    ))
}

/// The applet paths (`bin/ls`, `usr/bin/awk`, ...) the binary reports.
fn applets(work: &Path, arch: Arch, busybox: &[u8]) -> Result<Vec<String>, Missing> {
    let exe = work.join(format!("busybox-{}", arch.deb));
    fs::write(&exe, busybox).map_err(|e| cache_error(&exe, &e.to_string()))?;
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755))
        .map_err(|e| cache_error(&exe, &e.to_string()))?;
    let mut cmd = match arch.qemu {
        Some(qemu) => {
            if !Path::new(qemu).is_file() {
                return Err(Missing::new(
                    format!("`{qemu}` is not installed"),
                    "`apt-get install qemu-user-static` (as root)",
                ));
            }
            let mut c = Command::new(qemu);
            c.arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let list = run_ok(cmd.arg("--list-full")).map_err(|e| {
        Missing::new(
            format!("cannot list busybox applets: {e}"),
            "check qemu-user-static",
        )
    })?;
    let applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
        .map(str::to_owned)
        .collect();
    if applets.len() < 50 {
        return Err(Missing::new(
            format!("busybox lists only {} applets", applets.len()),
            "check the busybox-static package",
        ));
    }
    Ok(applets)
}

/// An entry of the rootfs layer.
enum Node<'a> {
    Dir(u32),
    File(u32, &'a [u8]),
    Link,
}

/// The gzip-compressed rootfs layer.
fn rootfs_tar(busybox: &[u8], applets: &[String], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut dirs: BTreeSet<String> = [
        "bin", "dev", "etc", "home", "proc", "root", "run", "sbin", "sys", "tmp", "usr", "usr/bin",
        "usr/sbin", "var",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for applet in applets {
        let mut p = Path::new(applet).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            p = dir.parent();
        }
    }
    let passwd =
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = b"root:x:0:\nnogroup:x:65534:\n";

    let mut nodes: Vec<(String, Node<'_>)> = Vec::new();
    for d in &dirs {
        let mode = match d.as_str() {
            "tmp" => 0o1777,
            "root" => 0o700,
            _ => 0o755,
        };
        nodes.push((d.clone(), Node::Dir(mode)));
    }
    nodes.push(("bin/busybox".to_owned(), Node::File(0o755, busybox)));
    nodes.push(("etc/passwd".to_owned(), Node::File(0o644, passwd)));
    nodes.push(("etc/group".to_owned(), Node::File(0o644, group)));
    for a in applets {
        nodes.push((a.clone(), Node::Link));
    }
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes.dedup_by(|a, b| a.0 == b.0);

    let gz = GzBuilder::new().write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, node) in nodes {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        match node {
            Node::Dir(mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode);
                h.set_size(0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            }
            Node::File(mode, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, &path, data)?;
            }
            Node::Link => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, &path, "/bin/busybox")?;
            }
        }
    }
    tar.into_inner()?.finish()
}

/// Writes config + layer + manifest for one platform; returns the manifest descriptor with
/// its platform.
fn write_image(
    layout: &Layout,
    arch: Arch,
    version: &str,
    layer_gz: &[u8],
    mtime: u64,
) -> Result<Value, String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(layer_gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot re-read the layer: {e}"))?;
    let diff_id = oci::sha256_digest(&raw);
    let created = rfc3339(mtime);
    let mut config = json!({
        "created": created,
        "architecture": arch.oci,
        "os": "linux",
        "config": { "Env": [format!("PATH={IMAGE_PATH}")], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{
            "created": created,
            "created_by": format!("rbuild-testenv: busybox-static {version} ({}) from Debian", arch.deb),
        }],
    });
    let mut platform = json!({ "architecture": arch.oci, "os": "linux" });
    if let Some(v) = arch.variant {
        config["variant"] = json!(v);
        platform["variant"] = json!(v);
    }
    let io = |e: std::io::Error| e.to_string();
    let config_desc = layout.put_json(oci::MEDIA_CONFIG, &config).map_err(io)?;
    let layer_desc = layout
        .put_blob(oci::MEDIA_LAYER_GZIP, layer_gz)
        .map_err(io)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MEDIA_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    });
    let mut desc = layout
        .put_json(oci::MEDIA_MANIFEST, &manifest)
        .map_err(io)?;
    desc["platform"] = platform;
    Ok(desc)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (proleptic Gregorian, UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rootfs_is_deterministic_and_complete() {
        let applets = vec![
            "bin/sh".to_owned(),
            "usr/bin/awk".to_owned(),
            "usr/local/bin/x".to_owned(),
        ];
        let a = rootfs_tar(b"ELF", &applets, 42).unwrap();
        let b = rootfs_tar(b"ELF", &applets, 42).unwrap();
        assert_eq!(a, b, "same input must give the same bytes");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut raw)
            .unwrap();
        let mut archive = tar::Archive::new(&raw[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 42)
            );
            seen.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
            ));
        }
        let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let pos = |p: &str| {
            paths
                .iter()
                .position(|x| *x == p)
                .unwrap_or_else(|| panic!("missing {p}"))
        };
        assert!(
            pos("usr/local/") < pos("usr/local/bin/")
                && pos("usr/local/bin/") < pos("usr/local/bin/x")
        );
        assert!(seen.contains(&("tmp/".to_owned(), 0o1777)));
        assert!(seen.contains(&("bin/busybox".to_owned(), 0o755)));
    }
}

//! Layer scans: read a layer's tar headers before it is unpacked and find what a user
//! namespace cannot reproduce, so the failure is named (or avoided) before it happens.
//!
//! Found per layer:
//! - `security.selinux` attributes (`SCHILY.xattr.security.selinux` PAX records), the cause
//!   of moby/buildkit#2407 (`xattr-security-selinux-in-layer`);
//! - other attributes only real root may set, or that are overlayfs-internal:
//!   `security.ima`, other `security.*` except `security.capability`, `trusted.*`,
//!   `user.overlay.*` (`xattr-overlay-or-ima-in-layer`);
//! - owners outside the mapped id range (`subid-range-too-small`), including ids that only
//!   fit in PAX `uid`/`gid` records;
//! - character and block device nodes (`device-node-or-whiteout-mknod`);
//! - setuid/setgid files, which matter when setuid cannot work (`setuid-ignored-sudo`).
//!
//! The scan reads headers only (file data is skipped, memory does not grow with the
//! layer) from an uncompressed tar stream; the caller decompresses. It never writes.

use std::io::{self, Read};

use super::{Cause, Diagnostic};

/// How many example paths a diagnostic lists.
const EXAMPLES: usize = 5;

/// Ids mapped into the build's user namespace, as ranges `(first, count)` of ids inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<(u64, u64)>,
    pub gids: Vec<(u64, u64)>,
}

impl IdMap {
    /// The usual map: ids `0..count` (root is the user, 1.. the subordinate range).
    pub fn contiguous(count: u64) -> IdMap {
        IdMap {
            uids: vec![(0, count)],
            gids: vec![(0, count)],
        }
    }

    fn has(ranges: &[(u64, u64)], id: u64) -> bool {
        ranges.iter().any(|(s, n)| id >= *s && id - s < *n)
    }

    pub fn has_uid(&self, id: u64) -> bool {
        Self::has(&self.uids, id)
    }

    pub fn has_gid(&self, id: u64) -> bool {
        Self::has(&self.gids, id)
    }

    /// `0-65535` style description of the uid ranges.
    pub fn describe_uids(&self) -> String {
        self.uids
            .iter()
            .map(|(s, n)| format!("{s}-{}", s + n.saturating_sub(1)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A file whose owner is outside the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub path: String,
    pub uid: u64,
    pub gid: u64,
}

/// What a layer holds that a user namespace cannot reproduce as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerScan {
    pub entries: u64,
    /// Paths with a `security.selinux` attribute.
    pub selinux: Vec<String>,
    /// `(path, attribute)` for `security.ima`, other `security.*` (not `capability`),
    /// `trusted.*` and `user.overlay.*` attributes.
    pub privileged_xattrs: Vec<(String, String)>,
    pub unmapped: Vec<Unmapped>,
    pub devices: Vec<String>,
    pub setuid: Vec<String>,
}

fn pax_id(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Scans an uncompressed layer tar stream against `map`.
pub fn scan(layer: impl Read, map: &IdMap) -> io::Result<LayerScan> {
    let mut archive = tar::Archive::new(layer);
    let mut out = LayerScan::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        out.entries += 1;
        let path = entry.path()?.to_string_lossy().into_owned();
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0);
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                match key {
                    "uid" => uid = pax_id(ext.value_bytes()).unwrap_or(uid),
                    "gid" => gid = pax_id(ext.value_bytes()).unwrap_or(gid),
                    _ => {
                        let Some(attr) = key
                            .strip_prefix("SCHILY.xattr.")
                            .or_else(|| key.strip_prefix("LIBARCHIVE.xattr."))
                        else {
                            continue;
                        };
                        if attr == "security.selinux" {
                            out.selinux.push(path.clone());
                        } else if (attr.starts_with("security.") && attr != "security.capability")
                            || attr.starts_with("trusted.")
                            || attr.starts_with("user.overlay.")
                        {
                            out.privileged_xattrs.push((path.clone(), attr.to_owned()));
                        }
                    }
                }
            }
        }
        if !map.has_uid(uid) || !map.has_gid(gid) {
            out.unmapped.push(Unmapped {
                path: path.clone(),
                uid,
                gid,
            });
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            out.devices.push(path.clone());
        }
        if kind.is_file() && mode & 0o6000 != 0 {
            out.setuid.push(path);
        }
    }
    Ok(out)
}

fn examples(paths: impl Iterator<Item = String>, total: usize) -> String {
    let shown: Vec<String> = paths.take(EXAMPLES).map(|p| format!("`{p}`")).collect();
    if total > shown.len() {
        format!("{} and {} more", shown.join(", "), total - shown.len())
    } else {
        shown.join(", ")
    }
}

/// Where the layer came from, for messages and annotation placement.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Layer digest, e.g. `sha256:4f4f…`.
    pub layer: &'a str,
    /// The image it belongs to, e.g. `docker.io/library/mysql:5.7`.
    pub image: Option<&'a str>,
    /// The Dockerfile and the `FROM` (or `COPY --from`) line that brought it in.
    pub file: Option<&'a str>,
    pub line: Option<u32>,
    pub platform: Option<&'a str>,
    /// Setuid bits will not work in this build (emulation without the `C` binfmt flag,
    /// a `nosuid` state directory), so setuid files are worth a warning.
    pub setuid_ineffective: bool,
}

impl LayerScan {
    /// Nothing to report.
    pub fn is_clean(&self) -> bool {
        self.selinux.is_empty()
            && self.privileged_xattrs.is_empty()
            && self.unmapped.is_empty()
            && self.devices.is_empty()
    }

    /// One diagnostic per finding kind: unmapped owners are errors (the layer cannot be
    /// unpacked), attributes and device nodes warnings (rbuild drops or skips them).
    pub fn diagnostics(&self, origin: &Origin<'_>, map: &IdMap) -> Vec<Diagnostic> {
        let of = match origin.image {
            Some(image) => format!("layer `{}` of `{image}`", origin.layer),
            None => format!("layer `{}`", origin.layer),
        };
        let mut out = Vec::new();
        if let Some(first) = self.unmapped.first() {
            let max_uid = self.unmapped.iter().map(|u| u.uid).max().unwrap_or(0);
            let max_gid = self.unmapped.iter().map(|u| u.gid).max().unwrap_or(0);
            let mut d = Cause::SubidRangeTooSmall.error(format!(
                "{of}: `{}` is owned by uid {}, gid {}, but this build maps only ids {} ({} file{} outside, highest uid {max_uid}, gid {max_gid})",
                first.path,
                first.uid,
                first.gid,
                map.describe_uids(),
                self.unmapped.len(),
                if self.unmapped.len() == 1 { "" } else { "s" }
            ));
            for u in self.unmapped.iter().take(EXAMPLES) {
                d = d.with_evidence(format!("{} owned by {}:{}", u.path, u.uid, u.gid));
            }
            out.push(d);
        }
        if !self.selinux.is_empty() {
            out.push(Cause::XattrSecuritySelinuxInLayer.warning(format!(
                "{of} carries SELinux labels (`security.selinux`) on {} file{}, which a user namespace cannot set; they are dropped: {}",
                self.selinux.len(),
                if self.selinux.len() == 1 { "" } else { "s" },
                examples(self.selinux.iter().cloned(), self.selinux.len())
            )));
        }
        if !self.privileged_xattrs.is_empty() {
            let mut names: Vec<&str> = self
                .privileged_xattrs
                .iter()
                .map(|(_, a)| a.as_str())
                .collect();
            names.sort_unstable();
            names.dedup();
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            out.push(Cause::XattrOverlayOrImaInLayer.warning(format!(
                "{of} carries attributes only real root may set or that belong to overlayfs ({}) on {} file{}; they are dropped: {}",
                names.join(", "),
                self.privileged_xattrs.len(),
                if self.privileged_xattrs.len() == 1 { "" } else { "s" },
                examples(
                    self.privileged_xattrs.iter().map(|(p, _)| p.clone()),
                    self.privileged_xattrs.len()
                )
            )));
        }
        if !self.devices.is_empty() {
            out.push(Cause::DeviceNodeOrWhiteoutMknod.warning(format!(
                "{of} contains {} device node{}, which cannot be created in a user namespace; they are skipped (the runtime provides `/dev`): {}",
                self.devices.len(),
                if self.devices.len() == 1 { "" } else { "s" },
                examples(self.devices.iter().cloned(), self.devices.len())
            )));
        }
        if origin.setuid_ineffective && !self.setuid.is_empty() {
            out.push(Cause::SetuidIgnoredSudo.warning(format!(
                "{of} has {} setuid/setgid program{}, which will run without their privileges in this build: {}",
                self.setuid.len(),
                if self.setuid.len() == 1 { "" } else { "s" },
                examples(self.setuid.iter().cloned(), self.setuid.len())
            )));
        }
        out.into_iter()
            .map(|mut d| {
                if let Some(p) = origin.platform {
                    d = d.with_platform(p);
                }
                if let (Some(file), Some(line)) = (origin.file, origin.line) {
                    d = d.at(file, line, line);
                }
                d
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Severity;

    /// Appends an entry with PAX records (as `tar --xattrs` and buildah write them).
    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        ids: (u64, u64),
        pax: &[(&str, &[u8])],
    ) {
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        // Ids above the octal field's limit go into PAX records; the header gets 0.
        h.set_uid(if ids.0 > 0o7_777_777 { 0 } else { ids.0 });
        h.set_gid(if ids.1 > 0o7_777_777 { 0 } else { ids.1 });
        h.set_size(0);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(5).unwrap();
            h.set_device_minor(1).unwrap();
        }
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    }

    fn layer() -> Vec<u8> {
        use tar::EntryType::{Block, Char, Directory, Regular};
        let mut b = tar::Builder::new(Vec::new());
        add(
            &mut b,
            "etc/",
            Directory,
            0o755,
            (0, 0),
            &[(
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0\0",
            )],
        );
        add(
            &mut b,
            "etc/hostname",
            Regular,
            0o644,
            (0, 0),
            &[(
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0\0",
            )],
        );
        add(
            &mut b,
            "usr/bin/ping",
            Regular,
            0o755,
            (0, 0),
            &[("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02")],
        );
        add(
            &mut b,
            "usr/bin/bash",
            Regular,
            0o755,
            (0, 0),
            &[("SCHILY.xattr.security.ima", b"\x03\x02")],
        );
        add(
            &mut b,
            "var/lib/x/",
            Directory,
            0o755,
            (0, 0),
            &[
                ("SCHILY.xattr.user.overlay.opaque", b"y"),
                ("SCHILY.xattr.trusted.overlay.origin", b"z"),
            ],
        );
        add(
            &mut b,
            "home/nonroot/",
            Directory,
            0o755,
            (65532, 65532),
            &[],
        );
        add(
            &mut b,
            "opt/app",
            Regular,
            0o644,
            (1_407_182_137, 0),
            &[("uid", b"1407182137")],
        );
        add(&mut b, "dev/console", Char, 0o600, (0, 0), &[]);
        add(&mut b, "dev/sda", Block, 0o660, (0, 6), &[]);
        add(&mut b, "usr/bin/sudo", Regular, 0o4755, (0, 0), &[]);
        b.into_inner().unwrap()
    }

    #[test]
    fn finds_labels_root_only_attributes_owners_devices_and_setuid() {
        let map = IdMap::contiguous(65536);
        let s = scan(layer().as_slice(), &map).unwrap();
        assert_eq!(s.entries, 10);
        assert_eq!(s.selinux, ["etc/", "etc/hostname"]);
        assert_eq!(
            s.privileged_xattrs,
            [
                ("usr/bin/bash".to_owned(), "security.ima".to_owned()),
                ("var/lib/x/".to_owned(), "user.overlay.opaque".to_owned()),
                ("var/lib/x/".to_owned(), "trusted.overlay.origin".to_owned()),
            ]
        );
        // 65532 is inside a 65536-id map; the PAX-only id is not.
        assert_eq!(
            s.unmapped,
            [Unmapped {
                path: "opt/app".to_owned(),
                uid: 1_407_182_137,
                gid: 0
            }]
        );
        assert_eq!(s.devices, ["dev/console", "dev/sda"]);
        assert_eq!(s.setuid, ["usr/bin/sudo"]);

        // With only 1000 ids mapped, `nonroot` (65532) is out of range too.
        let small = IdMap::contiguous(1000);
        let s = scan(layer().as_slice(), &small).unwrap();
        assert_eq!(s.unmapped.len(), 2);
        assert_eq!(s.unmapped[0].path, "home/nonroot/");
    }

    #[test]
    fn diagnostics_name_the_layer_the_files_and_the_range() {
        let map = IdMap::contiguous(1000);
        let s = scan(layer().as_slice(), &map).unwrap();
        let origin = Origin {
            layer: "sha256:4f4fb700ef54",
            image: Some("registry.example/base:1"),
            file: Some("Dockerfile"),
            line: Some(1),
            platform: Some("linux/arm64"),
            setuid_ineffective: true,
        };
        let d = s.diagnostics(&origin, &map);
        let ids: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "subid-range-too-small",
                "xattr-security-selinux-in-layer",
                "xattr-overlay-or-ima-in-layer",
                "device-node-or-whiteout-mknod",
                "setuid-ignored-sudo"
            ]
        );
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!(
            d[0].message,
            "layer `sha256:4f4fb700ef54` of `registry.example/base:1`: `home/nonroot/` is owned by uid 65532, gid 65532, but this build maps only ids 0-999 (2 files outside, highest uid 1407182137, gid 65532)"
        );
        assert_eq!(
            d[0].evidence,
            [
                "home/nonroot/ owned by 65532:65532",
                "opt/app owned by 1407182137:0"
            ]
        );
        assert!(d[1].message.contains("on 2 files, which a user namespace cannot set; they are dropped: `etc/`, `etc/hostname`"), "{}", d[1].message);
        assert!(
            d[2].message.contains(
                "(`security.ima`, `trusted.overlay.origin`, `user.overlay.opaque`) on 3 files"
            ),
            "{}",
            d[2].message
        );
        assert!(
            d.iter()
                .all(|d| d.line == Some(1) && d.platform.as_deref() == Some("linux/arm64"))
        );
        assert!(d[1..].iter().all(|d| d.severity == Severity::Warning));
        // Setuid files only matter when setuid cannot work.
        let quiet = Origin {
            setuid_ineffective: false,
            ..origin
        };
        assert_eq!(s.diagnostics(&quiet, &map).len(), 4);
    }

    #[test]
    fn a_clean_layer_reports_nothing_and_bad_input_is_an_error() {
        let mut b = tar::Builder::new(Vec::new());
        add(
            &mut b,
            "bin/sh",
            tar::EntryType::Regular,
            0o755,
            (0, 0),
            &[],
        );
        let clean = b.into_inner().unwrap();
        let map = IdMap::contiguous(65536);
        let s = scan(clean.as_slice(), &map).unwrap();
        assert!(s.is_clean());
        let origin = Origin {
            layer: "sha256:1",
            image: None,
            file: None,
            line: None,
            platform: None,
            setuid_ineffective: false,
        };
        assert!(s.diagnostics(&origin, &map).is_empty());
        // A truncated header is an error, not a panic.
        assert!(scan(&clean[..300], &map).is_err());
    }
}

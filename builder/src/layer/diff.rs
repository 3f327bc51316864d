//! Turning a step's overlay upper directory into an OCI layer tar.
//!
//! The upper directory of an overlay mount holds exactly what a step changed, in the
//! kernel's own encoding: a deleted entry is a character device 0:0, a directory whose
//! lower contents were replaced is marked with the `user.overlay.opaque` (or, outside a
//! user namespace, `trusted.overlay.opaque`) xattr set to `y`. This module writes the OCI
//! encoding of the same change: `.wh.<name>` files and `.wh..wh..opq` markers.
//!
//! The output is deterministic: entries in byte order of their names, depth first, each
//! directory before its contents and an opaque marker before its siblings; owners
//! numeric with empty user/group names; times clamped to `SOURCE_DATE_EPOCH` when given;
//! overlay's own xattrs never copied. File contents are streamed, so memory does not grow
//! with the layer.
//!
//! The sandbox mounts overlays with `redirect_dir=off` and `metacopy=off`, so an upper
//! directory is self-contained; an upper entry that still carries a redirect or metacopy
//! xattr is refused rather than turned into a wrong layer.
//!
//! It must run where every file of the upper directory is readable: inside the step's
//! user namespace, where the files' owners are the container's ids.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Prefix of a whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Options of [`write_diff`].
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Clamp every modification time to this Unix time (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u64>,
    /// Paths (relative to the root, e.g. `etc/resolv.conf`) left out of the layer: mount
    /// points the sandbox created, never content of the step.
    pub exclude: Vec<PathBuf>,
}

/// What a diff contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffSummary {
    /// Entries written, whiteouts and markers included.
    pub entries: u64,
    /// Deleted entries (`.wh.` files).
    pub whiteouts: u64,
    /// Opaque directories (`.wh..wh..opq` markers).
    pub opaque_dirs: u64,
    /// Bytes of file content written.
    pub content_bytes: u64,
    /// Sockets, which a layer cannot hold.
    pub skipped_sockets: Vec<PathBuf>,
}

impl DiffSummary {
    /// Whether the step changed nothing: such a step produces no layer.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Why a diff could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("cannot read `{path}` in the step's changes")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{path}` in the step's changes carries the overlay xattr `{xattr}`, which rbuild's mounts never produce"
    )]
    UnsupportedOverlayFeature { path: PathBuf, xattr: String },
    #[error("cannot write the layer")]
    Write(#[source] io::Error),
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the OCI layer tar of the overlay upper directory `upper` to `out`.
pub fn write_diff<W: Write>(
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<(W, DiffSummary), DiffError> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        opts,
        summary: DiffSummary::default(),
        links: HashMap::new(),
    };
    w.dir_contents(upper, Path::new(""))?;
    w.tar.finish().map_err(DiffError::Write)?;
    let out = w.tar.into_inner().map_err(DiffError::Write)?;
    Ok((out, w.summary))
}

struct Writer<'a, W: Write> {
    tar: tar::Builder<W>,
    opts: &'a DiffOptions,
    summary: DiffSummary,
    /// First path written for each (device, inode) with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
}

/// The overlay xattr namespaces: never part of a layer.
fn is_overlay_xattr(name: &OsStr) -> bool {
    let n = name.as_bytes();
    n.starts_with(b"user.overlay.") || n.starts_with(b"trusted.overlay.")
}

/// The names of an entry's extended attributes (none for symlinks: Linux allows only
/// `trusted.*` and `security.*` on them, neither meaningful in a layer written from a user
/// namespace).
fn xattr_names(path: &Path, ft: fs::FileType) -> Result<Vec<OsString>, DiffError> {
    if ft.is_symlink() {
        return Ok(Vec::new());
    }
    match xattr::list(path) {
        Ok(names) => Ok(names.collect()),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(Vec::new()),
        Err(e) => Err(read_err(path)(e)),
    }
}

fn overlay_xattr(path: &Path, key: &str) -> Result<Option<Vec<u8>>, DiffError> {
    for ns in ["user.overlay.", "trusted.overlay."] {
        match xattr::get(path, format!("{ns}{key}")) {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => {}
            // trusted.* cannot be read without CAP_SYS_ADMIN; then it cannot be set either.
            Err(e) if e.raw_os_error() == Some(1) || e.raw_os_error() == Some(61) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(read_err(path)(e)),
        }
    }
    Ok(None)
}

impl<W: Write> Writer<'_, W> {
    fn excluded(&self, rel: &Path) -> bool {
        self.opts.exclude.iter().any(|e| e == rel)
    }

    fn mtime(&self, meta: &fs::Metadata) -> u64 {
        let t = u64::try_from(meta.mtime()).unwrap_or(0);
        self.opts.clamp_mtime.map_or(t, |c| t.min(c))
    }

    /// Writes the entries of directory `dir` (at `rel` inside the layer), sorted by name.
    fn dir_contents(&mut self, dir: &Path, rel: &Path) -> Result<(), DiffError> {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .map_err(read_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            if !self.excluded(&rel) {
                self.entry(&path, &rel)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path) -> Result<(), DiffError> {
        let meta = fs::symlink_metadata(path).map_err(read_err(path))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            return self.whiteout(rel, &meta);
        }
        // One listing per entry: most entries have no attribute at all, and this runs
        // for every file of a layer.
        let names = xattr_names(path, ft)?;
        let has = |key: &str| {
            names.iter().any(|n| {
                n.as_bytes()
                    .strip_suffix(key.as_bytes())
                    .is_some_and(|p| p == b"user.overlay." || p == b"trusted.overlay.")
            })
        };
        for key in ["redirect", "metacopy"] {
            if has(key) {
                return Err(DiffError::UnsupportedOverlayFeature {
                    path: rel.to_path_buf(),
                    xattr: format!("overlay.{key}"),
                });
            }
        }
        if ft.is_socket() {
            self.summary.skipped_sockets.push(rel.to_path_buf());
            return Ok(());
        }
        let mut header = self.header(&meta);
        let pax = Self::xattrs(path, &names)?;
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            let mut name = rel.as_os_str().as_bytes().to_vec();
            name.push(b'/');
            self.append(&mut header, &name, None, &pax, io::empty())?;
            if has("opaque") && overlay_xattr(path, "opaque")?.as_deref() == Some(b"y") {
                self.marker(&rel.join(OPAQUE_MARKER), &meta)?;
                self.summary.opaque_dirs += 1;
            }
            return self.dir_contents(path, rel);
        }
        let name = rel.as_os_str().as_bytes();
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(read_err(path))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            return self.append(
                &mut header,
                name,
                Some(target.as_os_str().as_bytes()),
                &pax,
                io::empty(),
            );
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    return self.append(
                        &mut header,
                        name,
                        Some(first.as_os_str().as_bytes()),
                        &pax,
                        io::empty(),
                    );
                }
                self.links.insert(key, rel.to_path_buf());
            }
            let file = File::open(path).map_err(read_err(path))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            self.summary.content_bytes += meta.len();
            // A file that shrinks while being read would corrupt the archive; `take`
            // plus the length check below turns that into an error.
            let mut reader = CountingReader {
                inner: io::Read::take(file, meta.len()),
                count: 0,
            };
            self.append(&mut header, name, None, &pax, &mut reader)?;
            if reader.count != meta.len() {
                return Err(read_err(path)(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file changed size while the layer was written",
                )));
            }
            return Ok(());
        }
        if ft.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
        } else if ft.is_char_device() || ft.is_block_device() {
            header.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            // glibc's major()/minor() encoding of dev_t.
            let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
            let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
            header
                .set_device_major(u32::try_from(major).unwrap_or(0))
                .map_err(DiffError::Write)?;
            header
                .set_device_minor(u32::try_from(minor).unwrap_or(0))
                .map_err(DiffError::Write)?;
        }
        header.set_size(0);
        self.append(&mut header, name, None, &pax, io::empty())
    }

    /// A ustar header with owner, mode and time from `meta`.
    fn header(&self, meta: &fs::Metadata) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        h.set_mtime(self.mtime(meta));
        h
    }

    /// `SCHILY.xattr.*` records for the entry's xattrs (`names`), overlay's own excluded.
    fn xattrs(path: &Path, names: &[OsString]) -> Result<Vec<(String, Vec<u8>)>, DiffError> {
        let mut out = Vec::new();
        let mut names: Vec<&OsString> = names.iter().filter(|n| !is_overlay_xattr(n)).collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            if let Some(value) = xattr::get(path, name).map_err(read_err(path))? {
                out.push((format!("SCHILY.xattr.{}", name.to_string_lossy()), value));
            }
        }
        Ok(out)
    }

    fn whiteout(&mut self, rel: &Path, meta: &fs::Metadata) -> Result<(), DiffError> {
        let name = rel.file_name().map(OsStr::as_bytes).unwrap_or_default();
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        let path = rel.with_file_name(OsStr::from_bytes(&wh));
        self.summary.whiteouts += 1;
        self.marker(&path, meta)
    }

    /// An empty regular file owned by root: a whiteout or an opaque marker.
    fn marker(&mut self, rel: &Path, meta: &fs::Metadata) -> Result<(), DiffError> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.mtime(meta));
        self.append(&mut h, rel.as_os_str().as_bytes(), None, &[], io::empty())
    }

    /// Appends one entry; names, link targets and ids that do not fit the ustar header go
    /// into a PAX extended header, as POSIX (and Docker's archive writer) does.
    fn append(
        &mut self,
        header: &mut tar::Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: impl io::Read,
    ) -> Result<(), DiffError> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if header.set_path(OsStr::from_bytes(name)).is_err() || name.len() > 255 {
            pax.push(("path".to_owned(), name.to_vec()));
            set_truncated_name(header, name);
        }
        if let Some(link) = link
            && (link.len() > 100 || header.set_link_name(OsStr::from_bytes(link)).is_err())
        {
            pax.push(("linkpath".to_owned(), link.to_vec()));
            let cut = &link[..link.len().min(100)];
            let _ = header.set_link_name_literal(cut);
        }
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        if uid > 0o7_777_777 {
            pax.push(("uid".to_owned(), uid.to_string().into_bytes()));
            header.set_uid(0);
        }
        if gid > 0o7_777_777 {
            pax.push(("gid".to_owned(), gid.to_string().into_bytes()));
            header.set_gid(0);
        }
        let size = header.entry_size().unwrap_or(0);
        if size > 0o77_777_777_777 {
            pax.push(("size".to_owned(), size.to_string().into_bytes()));
        }
        pax.extend(xattrs.iter().cloned());
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(DiffError::Write)?;
        }
        header.set_cksum();
        self.tar.append(header, data).map_err(DiffError::Write)?;
        self.summary.entries += 1;
        Ok(())
    }
}

/// Puts the last (up to) 100 bytes of `name` into the header's name field, for readers
/// that ignore the PAX `path` record.
fn set_truncated_name(header: &mut tar::Header, name: &[u8]) {
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.prefix = [0; 155];
        ustar.name = [0; 100];
        let tail = &name[name.len().saturating_sub(100)..];
        ustar.name[..tail.len()].copy_from_slice(tail);
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: io::Read> io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// An overlay (lower + upper) on which a shell script ran inside a user namespace, and a
    /// copy of the merged view the script left.
    struct Session {
        dir: tempfile::TempDir,
    }

    impl Session {
        fn lower(&self) -> PathBuf {
            self.dir.path().join("lower")
        }
        fn upper(&self) -> PathBuf {
            self.dir.path().join("upper")
        }
        fn merged_copy(&self) -> PathBuf {
            self.dir.path().join("snapshot")
        }
    }

    /// Builds `lower` with `setup`, mounts an overlay in `unshare -Urm` (as the kernel does
    /// for rbuild's steps: `userxattr`), runs `script` in the merged dir and copies the
    /// merged view. `None` when this host cannot mount an overlay in a user namespace.
    fn session(setup: &str, script: &str) -> Option<Session> {
        let dir = tempfile::tempdir().unwrap();
        for d in ["lower", "upper", "work", "merged", "snapshot"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let status = Command::new("sh")
            .current_dir(dir.path().join("lower"))
            .args(["-c", setup])
            .status()
            .unwrap();
        assert!(status.success(), "setup failed: {setup}");
        let inner = format!(
            "mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work,userxattr,metacopy=off merged || exit 97\n\
             cd merged\n{script}\ncd ..\ncp -a merged/. snapshot/ && umount merged"
        );
        let out = Command::new("unshare")
            .current_dir(dir.path())
            .args(["-Urm", "sh", "-c", &inner])
            .output()
            .unwrap();
        if out.status.code() == Some(97)
            || !out.status.success() && out.stderr.starts_with(b"unshare:")
        {
            eprintln!(
                "SKIPPED: no overlay in a user namespace here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        assert!(
            out.status.success(),
            "script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Session { dir })
    }

    /// Applies an OCI layer to `root` the way the image spec says (test-only reference).
    fn apply(root: &Path, layer: &[u8]) {
        let mut archive = tar::Archive::new(layer);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            // Rebuilt from components: a directory entry's trailing slash would make the
            // path fail to name a file that stands in its way.
            let rel: PathBuf = entry.path().unwrap().components().collect();
            let name = rel.file_name().unwrap().as_bytes().to_vec();
            let target = root.join(&rel);
            let parent = target.parent().unwrap().to_path_buf();
            if name == OPAQUE_MARKER.as_bytes() {
                for child in fs::read_dir(&parent).unwrap() {
                    remove(&child.unwrap().path());
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                remove(&parent.join(OsStr::from_bytes(hidden)));
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                if target.is_dir() && !target.is_symlink() {
                } else {
                    remove(&target);
                    fs::create_dir(&target).unwrap();
                }
                fs::set_permissions(
                    &target,
                    fs::Permissions::from_mode(entry.header().mode().unwrap()),
                )
                .unwrap();
                continue;
            }
            remove(&target);
            match kind {
                tar::EntryType::Symlink => {
                    std::os::unix::fs::symlink(entry.link_name().unwrap().unwrap(), &target)
                        .unwrap();
                }
                tar::EntryType::Link => {
                    fs::hard_link(root.join(entry.link_name().unwrap().unwrap()), &target).unwrap();
                }
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).unwrap();
                    fs::write(&target, data).unwrap();
                    fs::set_permissions(
                        &target,
                        fs::Permissions::from_mode(entry.header().mode().unwrap()),
                    )
                    .unwrap();
                }
                other => panic!("unexpected entry type {other:?} for {}", rel.display()),
            }
        }
    }

    fn remove(path: &Path) {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
            Ok(_) => fs::remove_file(path).unwrap(),
            Err(_) => {}
        }
    }

    /// `path type mode content-or-target` lines for a tree. Hardlinks are not compared:
    /// the merged view an overlay shows does not report links made over a copied-up lower
    /// file (`cp -a` of it yields two files), while the layer keeps them; the link entries
    /// themselves are checked in `hardlinks_symlinks_modes_and_long_names_survive`.
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        walk(root, Path::new(""), &mut out);
        out
    }

    fn walk(dir: &Path, rel: &Path, out: &mut Vec<String>) {
        let mut names: Vec<OsString> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            let m = fs::symlink_metadata(&path).unwrap();
            let mode = m.mode() & 0o7777;
            if m.is_dir() {
                out.push(format!("{} d {mode:o}", rel.display()));
                walk(&path, &rel, out);
            } else if m.file_type().is_symlink() {
                out.push(format!(
                    "{} l -> {}",
                    rel.display(),
                    fs::read_link(&path).unwrap().display()
                ));
            } else {
                let content = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                out.push(format!("{} f {mode:o} {content:?}", rel.display()));
            }
        }
    }

    fn diff_of(s: &Session, opts: &DiffOptions) -> (Vec<u8>, DiffSummary) {
        write_diff(&s.upper(), Vec::new(), opts).unwrap()
    }

    /// The layer applied to a copy of lower must reproduce the merged view exactly.
    fn check_roundtrip(s: &Session) -> DiffSummary {
        let (layer, summary) = diff_of(s, &DiffOptions::default());
        let applied = s.dir.path().join("applied");
        let status = Command::new("cp")
            .arg("-a")
            .arg(s.lower())
            .arg(&applied)
            .status()
            .unwrap();
        assert!(status.success());
        apply(&applied, &layer);
        assert_eq!(listing(&applied), listing(&s.merged_copy()));
        summary
    }

    fn names(layer: &[u8]) -> Vec<String> {
        tar::Archive::new(layer)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn deletions_become_whiteouts_and_replaced_dirs_opaque() {
        let Some(s) = session(
            "mkdir -p d/e && echo hi > d/f && echo x > g && echo keep > k",
            "rm g && rm -rf d && mkdir d && echo new > d/n",
        ) else {
            return;
        };
        let (layer, summary) = diff_of(&s, &DiffOptions::default());
        assert_eq!(names(&layer), ["d/", "d/.wh..wh..opq", "d/n", ".wh.g"]);
        assert_eq!((summary.whiteouts, summary.opaque_dirs), (1, 1));
        check_roundtrip(&s);
    }

    #[test]
    fn unchanged_step_gives_an_empty_diff() {
        let Some(s) = session("echo a > a", "cat a >/dev/null") else {
            return;
        };
        let (layer, summary) = diff_of(&s, &DiffOptions::default());
        assert!(summary.is_empty());
        assert_eq!(layer.len(), 1024, "just the two zero end blocks");
    }

    #[test]
    fn hardlinks_symlinks_modes_and_long_names_survive() {
        let long = "x".repeat(180);
        let Some(s) = session(
            "mkdir -p usr/bin && echo tool > usr/bin/t",
            &format!(
                "echo data > a && ln a b && ln -s /usr/bin/t link && chmod 4755 usr/bin/t && \
                 mkdir -p deep/{long} && echo v > deep/{long}/{long} && chmod 700 deep"
            ),
        ) else {
            return;
        };
        let summary = check_roundtrip(&s);
        assert_eq!(summary.whiteouts, 0);
        let (layer, _) = diff_of(&s, &DiffOptions::default());
        let mut archive = tar::Archive::new(&layer[..]);
        let kinds: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert!(kinds.contains(&("a".to_owned(), tar::EntryType::Regular)));
        assert!(kinds.contains(&("b".to_owned(), tar::EntryType::Link)));
        assert!(kinds.contains(&("link".to_owned(), tar::EntryType::Symlink)));
        assert!(
            kinds.iter().any(|(n, _)| n.len() > 360),
            "long path lost: {kinds:?}"
        );
    }

    #[test]
    fn times_are_clamped_and_output_is_reproducible() {
        let Some(s) = session("", "echo a > a && mkdir d && touch -d 2030-01-01 d/future") else {
            return;
        };
        let opts = DiffOptions {
            clamp_mtime: Some(1_000_000_000),
            exclude: Vec::new(),
        };
        let (one, _) = diff_of(&s, &opts);
        let (two, _) = diff_of(&s, &opts);
        assert_eq!(one, two);
        let mut archive = tar::Archive::new(&one[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert!(e.header().mtime().unwrap() <= 1_000_000_000);
            assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        }
    }

    #[test]
    fn excluded_mount_points_are_left_out() {
        let Some(s) = session("mkdir etc", "touch etc/resolv.conf etc/hosts etc/real") else {
            return;
        };
        let opts = DiffOptions {
            clamp_mtime: None,
            exclude: vec![PathBuf::from("etc/resolv.conf"), PathBuf::from("etc/hosts")],
        };
        let (layer, _) = diff_of(&s, &opts);
        assert_eq!(names(&layer), ["etc/", "etc/real"]);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const NAMES: [&str; 4] = ["a", "b", "d/a", "d/e/b"];

        fn op() -> impl Strategy<Value = String> {
            let name = proptest::sample::select(NAMES.to_vec());
            let name2 = proptest::sample::select(NAMES.to_vec());
            prop_oneof![
                (name.clone(), 0..3u8)
                    .prop_map(|(n, v)| format!("mkdir -p \"$(dirname {n})\" && echo {v} > {n}")),
                name.clone().prop_map(|n| format!("rm -rf {n}")),
                name.clone()
                    .prop_map(|n| format!("rm -rf \"$(dirname {n})\"")),
                name.clone().prop_map(|n| format!("mkdir -p {n}")),
                (name.clone(), name2.clone()).prop_map(|(a, b)| format!("mv {a} {b}")),
                (name.clone(), name2.clone()).prop_map(|(a, b)| format!("ln {a} {b}")),
                (name.clone(), name2).prop_map(|(a, b)| format!("ln -sf /{a} {b}")),
                name.prop_map(|n| format!("chmod 600 {n}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            /// Whatever a step does, lower + its layer == the merged view the step saw.
            #[test]
            fn layer_reproduces_the_merged_view(ops in proptest::collection::vec(op(), 1..8)) {
                let setup = "mkdir -p d/e && echo 1 > a && echo 2 > d/a && echo 3 > d/e/b && ln d/a d/hl";
                let script = ops.iter().map(|o| format!("{o} 2>/dev/null;")).collect::<Vec<_>>().join("\n") + "\ntrue";
                if let Some(s) = session(setup, &script) {
                    check_roundtrip(&s);
                }
            }
        }
    }
}

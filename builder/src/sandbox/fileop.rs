//! File operations of build steps (`COPY`, `ADD`, `WORKDIR`), performed by the sandbox
//! helper itself, as the root of the step's user namespace, on the step's merged root
//! file system. The overlay's upper directory then holds exactly what changed, and the
//! layer is written from it like a `RUN`'s: one diff path for every kind of step.
//!
//! Doing the copy inside the namespace gives BuildKit's semantics with the kernel's help:
//! symlinks in the destination path resolve inside the image (`RESOLVE_IN_ROOT`),
//! existing directories are merged into, `--chown` names come from the image's own
//! `/etc/passwd` and `/etc/group`, owners land as container ids, and `COPY --link` is a
//! copy onto an empty lower.
//!
//! Sources come two ways:
//! - **Streamed** (the build context, heredocs, downloads): rbuild walks the context
//!   outside (`.dockerignore`, wildcards, content hashes) and writes one tar to descriptor
//!   5. Item `n` (numbered across the step) is the entry `n` (a file) or the entry `n/`
//!   and everything below `n/` (a directory, whose contents are copied). Entries carry
//!   owner 0:0, as BuildKit gives context files.
//! - **From a tree** (another stage or image, `COPY --from`): the helper mounts the
//!   tree's layers read-only and resolves the paths (wildcards too) in it; owners are
//!   kept.
//!
//! Placement follows BuildKit's file backend (fsutil `copy`): a destination ending in `/`
//! (or an existing directory) receives files under their own name, otherwise a single
//! file is written as the destination; a directory source has its contents copied into
//! the destination; missing parent directories are created with mode 0755, owned by the
//! `--chown` owner; an existing destination directory keeps its metadata, while
//! directories below it get the source's; a file never replaces a directory.
//! `--chmod` applies to files and directories alike.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};

use super::failure::Fail;
use super::rooted::{self, Dir, Kind, Root};
use crate::dockerfile::dockerignore::Matcher;
use crate::dockerfile::glob;
use crate::layer::extract::{self, Entry, EntryKind, TarReader, XattrPolicy};

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum FileOp {
    /// `mkdir -p` (`WORKDIR`): missing directories are created with mode 0755, owned by
    /// `owner` (the stage's `USER`, as BuildKit does) or root.
    Mkdir {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// `COPY` / `ADD`.
    Copy(CopyOp),
}

/// One `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyOp {
    /// `COPY` or `ADD` (for messages).
    pub instruction: String,
    pub source: CopySource,
    /// Absolute destination (made so against `WORKDIR`); ends with `/` when it was
    /// written with one.
    pub dest: String,
    /// `--chown`: `user[:group]`, names from the image's own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chown: Option<String>,
    /// `--chmod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chmod: Option<u32>,
}

/// Where a copy's sources are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub enum CopySource {
    /// In the tar on descriptor 5 (see the module doc).
    Stream { items: Vec<StreamItem> },
    /// Paths (wildcards allowed) in the step's source tree `tree`.
    Tree {
        tree: usize,
        paths: Vec<String>,
        /// `--parents`: keep each matched path below the destination.
        #[serde(default)]
        parents: bool,
        /// `--exclude` patterns (`.dockerignore` syntax, relative to each source).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        excludes: Vec<String>,
    },
}

/// One streamed source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamItem {
    /// Its number in the stream.
    pub index: usize,
    /// The name it gets in a destination directory (a file's base name), or with
    /// `parents` the relative path it keeps there.
    pub name: String,
    pub kind: ItemKind,
    /// `--parents`: `name` is a relative path kept below the destination directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
}

/// What a streamed item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    File,
    /// A directory: its contents are copied.
    Dir,
    /// A local archive `ADD` unpacks into the destination (tar, optionally gzip,
    /// bzip2-free: gzip and zstd are recognised).
    Archive,
}

/// What a step's file operations did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
}

/// Performs `ops` on the merged root `root`; streamed sources are read from `stream`,
/// trees from `trees` (their mounted roots).
pub(super) fn apply(
    root: &Root,
    ops: &[FileOp],
    stream: Option<File>,
    trees: &[Root],
) -> Result<Applied, Fail> {
    let mut ctx = Ctx {
        root,
        applied: Applied::default(),
        passwd: None,
    };
    let mut reader = stream.map(TarReader::new);
    let mut pending: Option<Entry> = None;
    for op in ops {
        match op {
            FileOp::Mkdir { path, owner } => {
                let (uid, gid) = match owner {
                    Some(o) => ctx.owner(o, &format!("`WORKDIR {path}` as user `{o}`"))?,
                    None => (0, 0),
                };
                let comps = components(path)?;
                ctx.mkdir_all(&comps, Some((uid, gid)), path)?;
            }
            FileOp::Copy(c) => {
                let owner = match &c.chown {
                    Some(o) => Some(ctx.owner(o, &format!("`{} --chown={o}`", c.instruction))?),
                    None => None,
                };
                let mut copy = Copy {
                    op: c,
                    owner,
                    dir_times: Vec::new(),
                    links: HashMap::new(),
                };
                match &c.source {
                    CopySource::Stream { items } => {
                        let r = reader.as_mut().ok_or_else(|| {
                            Fail::bug("a streamed copy has no stream (descriptor 5)")
                        })?;
                        copy.streamed(&mut ctx, items, r, &mut pending)?;
                    }
                    CopySource::Tree {
                        tree,
                        paths,
                        parents,
                        excludes,
                    } => {
                        let t = trees.get(*tree).ok_or_else(|| {
                            Fail::bug(format!("source tree {tree} is not mounted"))
                        })?;
                        let excludes =
                            Matcher::parse(excludes.join("\n").as_bytes()).map_err(|e| {
                                Fail::input(format!("`{} --exclude`: {e}", c.instruction))
                            })?;
                        copy.copy_tree(&mut ctx, t, paths, *parents, &excludes)?;
                    }
                }
                copy.finish(&ctx);
            }
        }
    }
    Ok(ctx.applied)
}

/// Splits an absolute, clean path into components (`..` is refused: the engine cleans
/// destinations before they get here).
fn components(path: &str) -> Result<Vec<OsString>, Fail> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Fail::bug(format!(
                    "destination `{path}` was not cleaned before the copy"
                )));
            }
            c => out.push(OsString::from(c)),
        }
    }
    Ok(out)
}

fn show(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

fn refs(comps: &[OsString]) -> Vec<&OsStr> {
    comps.iter().map(OsString::as_os_str).collect()
}

struct Ctx<'a> {
    root: &'a Root,
    applied: Applied,
    /// The image's `/etc/passwd` and `/etc/group`, read on first need.
    passwd: Option<(Option<String>, Option<String>)>,
}

fn write_fail(what: &str, path: &str, e: io::Error) -> Fail {
    Fail::input(format!("cannot {what} `{path}`")).cause(e)
}

impl Ctx<'_> {
    fn read_etc(&self, name: &str) -> Option<String> {
        let etc = self.root.open_dir(&[OsStr::new("etc")]).ok()?;
        let mut f = etc.open_file(OsStr::new(name)).ok()?;
        let mut s = String::new();
        f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
        Some(s)
    }

    /// `user[:group]` to ids, as BuildKit reads `--chown` and a `WORKDIR`'s user: a
    /// name takes its uid and primary gid from the image's `/etc/passwd`, a number is
    /// the uid and (without a group) the gid; a group is a name in `/etc/group` or a
    /// number.
    fn owner(&mut self, spec: &str, what: &str) -> Result<(u32, u32), Fail> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let number = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let need_files = number(user).is_none() || group.is_some_and(|g| number(g).is_none());
        if need_files && self.passwd.is_none() {
            self.passwd = Some((self.read_etc("passwd"), self.read_etc("group")));
        }
        let (passwd, groups) = self.passwd.clone().unwrap_or((None, None));
        let fail = |problem: String| {
            Fail::input(format!("{what}: {problem}")).hint(
                "create the user in an earlier step (`RUN adduser ...`) or give numeric ids, e.g. `1000:1000`",
            )
        };
        let (uid, mut gid) = if let Some(u) = number(user) {
            (u, u)
        } else {
            let entry = passwd
                .as_deref()
                .unwrap_or("")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[0] == user)
                .ok_or_else(|| fail(format!("no user `{user}` in the image's `/etc/passwd`")))?;
            let uid = entry[2].trim().parse().map_err(|_| {
                fail(format!(
                    "the `/etc/passwd` entry of `{user}` has no numeric uid"
                ))
            })?;
            let gid = entry[3].trim().parse().map_err(|_| {
                fail(format!(
                    "the `/etc/passwd` entry of `{user}` has no numeric gid"
                ))
            })?;
            (uid, gid)
        };
        if let Some(g) = group {
            gid = if let Some(n) = number(g) {
                n
            } else {
                groups
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].trim().parse().ok())
                    .ok_or_else(|| fail(format!("no group `{g}` in the image's `/etc/group`")))?
            };
        }
        Ok((uid, gid))
    }

    /// `mkdir -p` of `comps`: missing directories get mode 0755 and `owner`. Returns the
    /// directory (symlinks on the way resolved inside the root).
    fn mkdir_all(
        &mut self,
        comps: &[OsString],
        owner: Option<(u32, u32)>,
        shown: &str,
    ) -> Result<Dir, Fail> {
        let r = refs(comps);
        match self.root.open_dir(&r) {
            Ok(d) => return Ok(d),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Fail::input(format!(
                    "cannot create the directory `{shown}`: a part of it is a file in the image"
                ))
                .cause(e));
            }
            Err(e) => return Err(write_fail("open the directory", shown, e)),
        }
        let mut dir = self.root.dir().map_err(|e| write_fail("open", "/", e))?;
        for i in 0..r.len() {
            match self.root.open_dir(&r[..=i]) {
                Ok(d) => dir = d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let here = show(&comps[..=i]);
                    match dir.mkdir(r[i], 0o755) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            return Err(Fail::input(format!(
                                "cannot create the directory `{here}`: it is a symlink to a missing target"
                            )));
                        }
                        Err(e) => return Err(write_fail("create the directory", &here, e)),
                    }
                    let d = dir
                        .open_dir_rw(r[i])
                        .map_err(|e| write_fail("open", &here, e))?;
                    if let Some((u, g)) = owner {
                        rooted::fchown(&d, u, g).map_err(|e| owner_fail(&here, u, g, e))?;
                    }
                    rooted::fchmod(&d, 0o755)
                        .map_err(|e| write_fail("set the mode of", &here, e))?;
                    self.applied.entries += 1;
                    dir = dir
                        .open_dir(r[i])
                        .map_err(|e| write_fail("open", &here, e))?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(Fail::input(format!(
                        "cannot create the directory `{shown}`: `{}` is a file in the image",
                        show(&comps[..=i])
                    )));
                }
                Err(e) => return Err(write_fail("open", &show(&comps[..=i]), e)),
            }
        }
        Ok(dir)
    }

    /// Whether `comps` names a directory (symlinks resolved inside the root).
    fn is_dir(&self, comps: &[OsString]) -> bool {
        self.root.open_dir(&refs(comps)).is_ok()
    }
}

fn owner_fail(path: &str, uid: u32, gid: u32, e: io::Error) -> Fail {
    if e.raw_os_error() == Some(libc::EINVAL) {
        return Fail::input(format!(
            "cannot give `{path}` to {uid}:{gid}: the id is outside the ids this build maps"
        ))
        .hint("use ids below 65536, or give the user who builds a larger range in `/etc/subuid` and `/etc/subgid`");
    }
    write_fail("change the owner of", path, e)
}

/// A source entry's metadata, from a tar header or a tree's `lstat`.
struct Meta {
    kind: SrcKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(String, Vec<u8>)>,
}

enum SrcKind {
    File,
    Dir,
    Symlink(OsString),
    Fifo,
    /// A hard link to an entry already placed (its destination components).
    Link(Vec<OsString>),
    /// Device nodes and sockets: not copied (a user namespace cannot create devices).
    Skip,
}

/// One copy in progress.
struct Copy<'o> {
    op: &'o CopyOp,
    owner: Option<(u32, u32)>,
    /// Directory times to set once everything below them is written.
    dir_times: Vec<(Vec<OsString>, (i64, i64))>,
    /// Placed path of the first entry of each hard-linked inode of a tree.
    links: HashMap<(u64, u64), Vec<OsString>>,
}

impl Copy<'_> {
    fn dest(&self) -> Result<(Vec<OsString>, bool), Fail> {
        let d = &self.op.dest;
        Ok((components(d)?, d.ends_with('/')))
    }

    /// Where an item goes: the directory it fills (a directory or archive item) or the
    /// path it is written as (a file). Creates the parent directories.
    fn target(
        &self,
        ctx: &mut Ctx<'_>,
        fills_dir: bool,
        name: &str,
        several: bool,
        parents: bool,
    ) -> Result<Vec<OsString>, Fail> {
        let (dest, slash) = self.dest()?;
        let dest_is_dir = ctx.is_dir(&dest);
        if several && !slash && !dest_is_dir {
            return Err(Fail::input(format!(
                "when using {} with more than one source file, the destination must be a directory and end with a /",
                self.op.instruction
            ))
            .hint(format!(
                "write the destination as `{}/`",
                self.op.dest.trim_end_matches('/')
            )));
        }
        let mut target = dest;
        if parents || (!fills_dir && (slash || several || dest_is_dir)) {
            target.extend(components(name)?);
        }
        // A directory item's own directory is created with the source's metadata when
        // its entry is placed; only the parents are made here.
        let parent = &target[..target.len().saturating_sub(1)];
        ctx.mkdir_all(parent, self.owner, &show(parent))?;
        Ok(target)
    }

    fn streamed<R: Read>(
        &mut self,
        ctx: &mut Ctx<'_>,
        items: &[StreamItem],
        reader: &mut TarReader<R>,
        pending: &mut Option<Entry>,
    ) -> Result<(), Fail> {
        let several = items.len() > 1;
        let stream_fail =
            |e: extract::ExtractError| Fail::bug("the copy stream from rbuild is damaged").cause(e);
        for item in items {
            let prefix = item.index.to_string();
            let target = self.target(
                ctx,
                item.kind != ItemKind::File,
                &item.name,
                several,
                item.parents,
            )?;
            loop {
                let entry = match pending.take() {
                    Some(e) => e,
                    None => match reader.next().map_err(stream_fail)? {
                        Some(e) => e,
                        None => break,
                    },
                };
                let path = entry.path.strip_suffix(b"/").unwrap_or(&entry.path);
                let rel: &[u8] = if path == prefix.as_bytes() {
                    b""
                } else if let Some(rest) = path
                    .strip_prefix(prefix.as_bytes())
                    .and_then(|r| r.strip_prefix(b"/"))
                {
                    rest
                } else {
                    // The next item's first entry.
                    *pending = Some(entry);
                    break;
                };
                let rel_comps = extract::components(rel).map_err(|why| {
                    Fail::bug(format!(
                        "the copy stream names `{}`, which {why}",
                        String::from_utf8_lossy(&entry.path)
                    ))
                })?;
                if item.kind == ItemKind::Archive {
                    self.unpack_archive(ctx, &target, reader, &entry)?;
                    continue;
                }
                let mut dest = target.clone();
                dest.extend(rel_comps);
                let kind = match entry.kind {
                    EntryKind::File => SrcKind::File,
                    EntryKind::Dir => SrcKind::Dir,
                    EntryKind::Symlink => SrcKind::Symlink(OsString::from_vec(entry.link.clone())),
                    EntryKind::Fifo => SrcKind::Fifo,
                    EntryKind::HardLink => {
                        let to = entry
                            .link
                            .strip_prefix(prefix.as_bytes())
                            .and_then(|r| r.strip_prefix(b"/"))
                            .ok_or_else(|| {
                                Fail::bug("a hard link in the copy stream leaves its item")
                            })?;
                        let mut placed = target.clone();
                        placed.extend(extract::components(to).map_err(|why| {
                            Fail::bug(format!("a hard link in the copy stream {why}"))
                        })?);
                        SrcKind::Link(placed)
                    }
                    _ => SrcKind::Skip,
                };
                let meta = Meta {
                    kind,
                    mode: entry.mode & 0o7777,
                    uid: u32::try_from(entry.uid).unwrap_or(0),
                    gid: u32::try_from(entry.gid).unwrap_or(0),
                    mtime: entry.mtime,
                    xattrs: entry.xattrs.clone(),
                };
                let top = rel.is_empty();
                let mut content = TarData { reader };
                self.place(ctx, &dest, &meta, &mut content, top)?;
            }
        }
        Ok(())
    }

    /// `ADD` of a local archive: unpacks it into the destination directory.
    fn unpack_archive<R: Read>(
        &mut self,
        ctx: &mut Ctx<'_>,
        target: &[OsString],
        outer: &mut TarReader<R>,
        entry: &Entry,
    ) -> Result<(), Fail> {
        let shown = show(target);
        let dir_exists = ctx.is_dir(target);
        if !dir_exists {
            ctx.mkdir_all(target, self.owner, &shown)?;
        }
        let data = TarData { reader: outer };
        let inner = crate::layer::decompress(data.take(entry.size)).map_err(|e| {
            Fail::input(format!("cannot read the archive added to `{shown}`")).cause(e)
        })?;
        let mut tar = TarReader::new(inner);
        while let Some(e) = tar.next().map_err(|e| {
            Fail::input(format!("cannot unpack the archive added to `{shown}`")).cause(e)
        })? {
            let rel = extract::components(&e.path).map_err(|why| {
                Fail::input(format!(
                    "the archive added to `{shown}` holds `{}`, which {why}",
                    String::from_utf8_lossy(&e.path)
                ))
            })?;
            if rel.is_empty() {
                continue;
            }
            let mut dest = target.to_vec();
            dest.extend(rel);
            let kind = match e.kind {
                EntryKind::File => SrcKind::File,
                EntryKind::Dir => SrcKind::Dir,
                EntryKind::Symlink => SrcKind::Symlink(OsString::from_vec(e.link.clone())),
                EntryKind::Fifo => SrcKind::Fifo,
                EntryKind::HardLink => {
                    let mut placed = target.to_vec();
                    placed.extend(extract::components(&e.link).map_err(|why| {
                        Fail::input(format!(
                            "a hard link in the archive added to `{shown}` {why}"
                        ))
                    })?);
                    SrcKind::Link(placed)
                }
                _ => SrcKind::Skip,
            };
            let meta = Meta {
                kind,
                mode: e.mode & 0o7777,
                uid: u32::try_from(e.uid).unwrap_or(0),
                gid: u32::try_from(e.gid).unwrap_or(0),
                mtime: e.mtime,
                xattrs: e.xattrs.clone(),
            };
            // Archive entries keep their owners unless `--chown` says otherwise, and an
            // existing directory is merged into, as `tar -x` does.
            let mut content = TarData { reader: &mut tar };
            self.place_archived(ctx, &dest, &meta, &mut content)?;
        }
        Ok(())
    }

    fn place_archived(
        &mut self,
        ctx: &mut Ctx<'_>,
        dest: &[OsString],
        meta: &Meta,
        content: &mut dyn Read,
    ) -> Result<(), Fail> {
        // Archives replace what is in the way, like `tar -x` (a file over a directory
        // included); otherwise they are placed like copies.
        if !matches!(meta.kind, SrcKind::Dir)
            && let Some((name, parent)) = dest.split_last()
            && let Ok(p) = ctx.root.open_dir(&refs(parent))
            && p.kind(name).ok().flatten() == Some(Kind::Dir)
        {
            p.remove_all(name)
                .map_err(|e| write_fail("replace", &show(dest), e))?;
        }
        self.place(ctx, dest, meta, content, false)
    }

    fn copy_tree(
        &mut self,
        ctx: &mut Ctx<'_>,
        tree: &Root,
        paths: &[String],
        parents: bool,
        excludes: &Matcher,
    ) -> Result<(), Fail> {
        let mut matches: Vec<Vec<OsString>> = Vec::new();
        for p in paths {
            let found = resolve_wildcards(tree, p)?;
            if found.is_empty() {
                if glob::has_wildcard(p) {
                    continue;
                }
                return Err(Fail::input(format!(
                    "{} --from: `{p}` does not exist in the source",
                    self.op.instruction
                ))
                .hint("check the path against the stage or image it is copied from"));
            }
            matches.extend(found);
        }
        let several = matches.len() > 1;
        for m in matches {
            // The named path itself is followed when it is a symlink (BuildKit's
            // `FollowSymlinks`); what is below it is copied as it is.
            let (dir, name, st) = follow(tree, &m)?;
            let is_dir = kind_of(&st) == Kind::Dir;
            let rel_name = if parents {
                show(&m).trim_start_matches('/').to_owned()
            } else {
                m.last()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let target = self.target(ctx, is_dir, &rel_name, several, parents)?;
            self.tree_entry(ctx, &dir, &name, &st, &target, "", excludes)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tree_entry(
        &mut self,
        ctx: &mut Ctx<'_>,
        dir: &Dir,
        name: &OsStr,
        st: &FileStat,
        dest: &[OsString],
        rel: &str,
        excludes: &Matcher,
    ) -> Result<(), Fail> {
        let top = rel.is_empty();
        let shown = show(dest);
        let read_fail =
            |e: io::Error| Fail::input(format!("cannot read the source of `{shown}`")).cause(e);
        let mut kind = match kind_of(st) {
            Kind::File => SrcKind::File,
            Kind::Dir => SrcKind::Dir,
            Kind::Symlink => SrcKind::Symlink(dir.read_link(name).map_err(read_fail)?),
            _ if st.st_mode & libc::S_IFMT == libc::S_IFIFO => SrcKind::Fifo,
            _ => SrcKind::Skip,
        };
        if matches!(kind, SrcKind::File) && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                kind = SrcKind::Link(first.clone());
            } else {
                self.links.insert(key, dest.to_vec());
            }
        }
        let xattrs = if matches!(kind, SrcKind::Symlink(_) | SrcKind::Skip) {
            Vec::new()
        } else {
            let mut v = Vec::new();
            for key in dir.list_xattrs(name).unwrap_or_default() {
                if key.starts_with("user.overlay.") || key.starts_with("trusted.") {
                    continue;
                }
                if let Ok(Some(value)) = dir.get_xattr(name, &key) {
                    v.push((key, value));
                }
            }
            v
        };
        let meta = Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            xattrs,
            kind,
        };
        match meta.kind {
            SrcKind::File => {
                let mut f = dir.open_file(name).map_err(read_fail)?;
                self.place(ctx, dest, &meta, &mut f, top)
            }
            SrcKind::Dir => {
                self.place(ctx, dest, &meta, &mut io::empty(), top)?;
                let sub = dir.open_dir(name).map_err(read_fail)?;
                let mut names = sub.list().map_err(read_fail)?;
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for n in names {
                    let child_rel = if rel.is_empty() {
                        n.to_string_lossy().into_owned()
                    } else {
                        format!("{rel}/{}", n.to_string_lossy())
                    };
                    let st = sub.stat(&n).map_err(read_fail)?;
                    if excludes.is_excluded(&child_rel)
                        && (kind_of(&st) != Kind::Dir || excludes.can_skip_dir(&child_rel))
                    {
                        continue;
                    }
                    let mut child = dest.to_vec();
                    child.push(n.clone());
                    self.tree_entry(ctx, &sub, &n, &st, &child, &child_rel, excludes)?;
                }
                Ok(())
            }
            _ => self.place(ctx, dest, &meta, &mut io::empty(), top),
        }
    }

    /// Writes one entry at `dest` (whose parent exists or is created here).
    fn place(
        &mut self,
        ctx: &mut Ctx<'_>,
        dest: &[OsString],
        meta: &Meta,
        content: &mut dyn Read,
        top: bool,
    ) -> Result<(), Fail> {
        let shown = show(dest);
        let (uid, gid) = self.owner.unwrap_or((meta.uid, meta.gid));
        let mode = match (&meta.kind, self.op.chmod) {
            (SrcKind::Symlink(_), _) => 0o777,
            (_, Some(m)) => m,
            (_, None) => meta.mode,
        };
        let Some((name, parent_comps)) = dest.split_last() else {
            // The root directory itself: only a directory source can fill it, and its
            // metadata stays (it is an existing destination).
            return if matches!(meta.kind, SrcKind::Dir) {
                Ok(())
            } else {
                Err(Fail::input(format!(
                    "{}: cannot replace the root directory with a file",
                    self.op.instruction
                )))
            };
        };
        let parent = ctx.mkdir_all(parent_comps, self.owner, &show(parent_comps))?;
        let existing = parent
            .kind(name)
            .map_err(|e| write_fail("inspect", &shown, e))?;
        match &meta.kind {
            SrcKind::Skip => return Ok(()),
            SrcKind::Dir => {
                match existing {
                    Some(Kind::Dir) if top => {
                        // An existing destination directory keeps its metadata.
                        return Ok(());
                    }
                    Some(Kind::Dir) => {}
                    Some(Kind::Symlink) if top && ctx.is_dir(dest) => return Ok(()),
                    Some(_) => {
                        return Err(Fail::input(format!(
                            "{}: cannot copy a directory to `{shown}`, which is not a directory in the image",
                            self.op.instruction
                        )));
                    }
                    None => parent
                        .mkdir(name, 0o700)
                        .map_err(|e| write_fail("create the directory", &shown, e))?,
                }
                let d = parent
                    .open_dir_rw(name)
                    .map_err(|e| write_fail("open", &shown, e))?;
                rooted::fchown(&d, uid, gid).map_err(|e| owner_fail(&shown, uid, gid, e))?;
                rooted::fchmod(&d, mode).map_err(|e| write_fail("set the mode of", &shown, e))?;
                set_xattrs(&meta.xattrs, |k, v| rooted::fset_xattr(&d, k, v));
                self.dir_times.push((dest.to_vec(), meta.mtime));
            }
            kind => {
                match existing {
                    Some(Kind::Dir) => {
                        return Err(Fail::input(format!(
                            "{}: cannot replace the directory `{shown}` with a file",
                            self.op.instruction
                        ))
                        .hint("copy into it by ending the destination with `/`"));
                    }
                    Some(_) => parent
                        .remove_all(name)
                        .map_err(|e| write_fail("replace", &shown, e))?,
                    None => {}
                }
                match kind {
                    SrcKind::File => {
                        let mut f = parent
                            .create_file(name)
                            .map_err(|e| write_fail("create", &shown, e))?;
                        io::copy(content, &mut f).map_err(|e| write_fail("write", &shown, e))?;
                        rooted::fchown(&f, uid, gid)
                            .map_err(|e| owner_fail(&shown, uid, gid, e))?;
                        rooted::fchmod(&f, mode)
                            .map_err(|e| write_fail("set the mode of", &shown, e))?;
                        set_xattrs(&meta.xattrs, |k, v| rooted::fset_xattr(&f, k, v));
                        rooted::set_file_times(&f, meta.mtime.0, meta.mtime.1)
                            .map_err(|e| write_fail("set the times of", &shown, e))?;
                    }
                    SrcKind::Symlink(to) => {
                        parent
                            .symlink(name, to)
                            .map_err(|e| write_fail("create the symlink", &shown, e))?;
                        parent
                            .lchown(name, uid, gid)
                            .map_err(|e| owner_fail(&shown, uid, gid, e))?;
                        let _ = parent.set_times(name, meta.mtime.0, meta.mtime.1);
                    }
                    SrcKind::Fifo => {
                        parent
                            .mkfifo(name, 0o600)
                            .map_err(|e| write_fail("create", &shown, e))?;
                        parent
                            .lchown(name, uid, gid)
                            .map_err(|e| owner_fail(&shown, uid, gid, e))?;
                        parent
                            .chmod_nofollow(name, mode)
                            .map_err(|e| write_fail("set the mode of", &shown, e))?;
                        let _ = parent.set_times(name, meta.mtime.0, meta.mtime.1);
                    }
                    SrcKind::Link(first) => {
                        let fd: OwnedFd = ctx
                            .root
                            .open_entry(&refs(first))
                            .map_err(|e| write_fail("find the hard-link target of", &shown, e))?;
                        parent
                            .hard_link(name, &fd)
                            .map_err(|e| write_fail("hard-link", &shown, e))?;
                    }
                    SrcKind::Dir | SrcKind::Skip => {}
                }
            }
        }
        ctx.applied.entries += 1;
        Ok(())
    }

    /// Sets the directory times last (writing into a directory changes its time).
    fn finish(&mut self, ctx: &Ctx<'_>) {
        for (comps, (secs, nanos)) in self.dir_times.iter().rev() {
            if let Some((name, parent)) = comps.split_last()
                && let Ok(p) = ctx.root.open_dir(&refs(parent))
            {
                let _ = p.set_times(name, *secs, *nanos);
            }
        }
    }
}

fn set_xattrs(xattrs: &[(String, Vec<u8>)], mut set: impl FnMut(&str, &[u8]) -> io::Result<()>) {
    for (k, v) in xattrs {
        if extract::xattr_policy(k) == XattrPolicy::Set {
            // What the kernel refuses in a user namespace is left out, as BuildKit's
            // copy does.
            let _ = set(k, v);
        }
    }
}

fn kind_of(st: &FileStat) -> Kind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Data of the current tar entry, as a reader.
struct TarData<'a, R> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for TarData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_data(buf)
    }
}

/// The paths in `tree` a source path names: itself, or what its wildcards match, in
/// byte order.
fn resolve_wildcards(tree: &Root, path: &str) -> Result<Vec<Vec<OsString>>, Fail> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        return Err(Fail::input(format!(
            "source path `{path}` leaves the source with `..`"
        )));
    }
    let mut found: Vec<Vec<OsString>> = vec![Vec::new()];
    for c in comps {
        let mut next = Vec::new();
        for base in &found {
            if glob::has_wildcard(c) {
                let Ok(dir) = tree.open_dir(&refs(base)) else {
                    continue;
                };
                let mut names = dir.list().unwrap_or_default();
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for n in names {
                    let ok = glob::matches(c, &n.to_string_lossy())
                        .map_err(|e| Fail::input(e.to_string()))?;
                    if ok {
                        let mut p = base.clone();
                        p.push(n);
                        next.push(p);
                    }
                }
            } else {
                let mut p = base.clone();
                p.push(OsString::from(c));
                next.push(p);
            }
        }
        found = next;
    }
    // Keep what exists.
    Ok(found
        .into_iter()
        .filter(|p| match p.split_last() {
            None => true,
            Some((name, parent)) => tree
                .open_dir(&refs(parent))
                .is_ok_and(|d| d.kind(name).ok().flatten().is_some()),
        })
        .collect())
}

/// Opens the entry at `path` in `tree`, following it when it is a symlink (inside the
/// tree). Returns its directory, its name there and its metadata.
fn follow(tree: &Root, path: &[OsString]) -> Result<(Dir, OsString, FileStat), Fail> {
    let shown = show(path);
    let fail = |e: io::Error| Fail::input(format!("cannot read `{shown}` in the source")).cause(e);
    let Some((name, parent)) = path.split_last() else {
        let d = tree.dir().map_err(fail)?;
        let st = d.stat(OsStr::new(".")).map_err(fail)?;
        return Ok((d, OsString::from("."), st));
    };
    let dir = tree.open_dir(&refs(parent)).map_err(fail)?;
    let st = dir.stat(name).map_err(fail)?;
    if kind_of(&st) != Kind::Symlink {
        return Ok((dir, name.clone(), st));
    }
    // A symlink: open what it leads to, inside the tree, as its own parent and name.
    if let Ok(target) = tree.open_dir(&refs(path)) {
        let st = target.stat(OsStr::new(".")).map_err(fail)?;
        Ok((target, OsString::from("."), st))
    } else {
        {
            // Not a directory: resolve the link's parent chain by hand, once.
            let to = dir.read_link(name).map_err(fail)?;
            let mut resolved: Vec<OsString> = if to.as_bytes().starts_with(b"/") {
                Vec::new()
            } else {
                parent.to_vec()
            };
            for c in to.as_bytes().split(|b| *b == b'/') {
                match c {
                    b"" | b"." => {}
                    b".." => {
                        resolved.pop();
                    }
                    c => resolved.push(OsString::from_vec(c.to_vec())),
                }
            }
            let Some((n, p)) = resolved.split_last() else {
                return Err(Fail::input(format!("`{shown}` is a symlink to the root")));
            };
            let d = tree.open_dir(&refs(p)).map_err(fail)?;
            let st = d.stat(n).map_err(fail)?;
            if kind_of(&st) == Kind::Symlink {
                return Err(Fail::input(format!(
                    "`{shown}` is a chain of symlinks; copy its target instead"
                )));
            }
            Ok((d, n.clone(), st))
        }
    }
}

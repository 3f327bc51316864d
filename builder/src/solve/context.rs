//! Build contexts: the directory a build reads `COPY`/`ADD` sources from (and named
//! `--build-context` directories), filtered by `.dockerignore`.
//!
//! [`Context::sources`] resolves an instruction's source paths as BuildKit does: cleaned
//! and rooted at the context (`../x` is `x`), wildcards matched per path component,
//! a source that is a symlink followed inside the context, excluded paths invisible. The
//! result is a list of [`Item`]s (a file, a directory whose contents are copied, or an
//! archive `ADD` unpacks) with every entry below them, and a content digest over names,
//! kinds, modes, link targets and file contents (not times or owners, which `COPY` does
//! not keep: a `touch` or a fresh checkout does not invalidate the cache).
//!
//! [`write_stream`] then writes the items as the tar the sandbox helper applies
//! (`sandbox::fileop`): item `n` is the entry `n` or the entries `n/...`, owned by 0:0.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::dockerfile::dockerignore::{self, Matcher};
use crate::dockerfile::glob;
use crate::sandbox::fileop::ItemKind;

/// Why sources could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("`{0}` does not exist in the build context or is excluded by `.dockerignore`")]
    NotFound(String),
    #[error("`{path}` is a symlink that leads out of the build context")]
    Escapes { path: String },
    #[error("cannot read `{path}` in the build context")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`.dockerignore` {0}")]
    Ignore(#[from] dockerignore::PatternError),
    #[error(transparent)]
    Pattern(#[from] glob::BadPattern),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A context directory and its ignore rules.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Matcher,
}

/// What a streamed entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Data {
    /// A file on the host.
    Path(PathBuf),
    /// Bytes held in memory (a heredoc).
    Bytes(Arc<Vec<u8>>),
}

/// The kind of a source entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
    },
    Dir,
    Symlink(String),
    /// A hard link to an earlier entry of the same item (its relative path).
    Link(String),
}

/// One entry of an item: the item's root (`rel` empty) or something below it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path below the item root, `/`-separated; empty for the root itself.
    pub rel: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub mtime: i64,
    pub data: Option<Data>,
}

/// One source of a `COPY`/`ADD`.
#[derive(Debug, Clone)]
pub struct Item {
    /// Name in a destination directory (or, with `parents`, the path kept there).
    pub name: String,
    pub kind: ItemKind,
    pub parents: bool,
    pub entries: Vec<Entry>,
}

/// An instruction's sources and their content digest.
#[derive(Debug, Clone)]
pub struct Sources {
    pub items: Vec<Item>,
    /// `sha256:` over what the copy depends on.
    pub digest: String,
}

/// How sources are resolved.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `COPY --exclude` patterns (`.dockerignore` syntax, relative to each source).
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// `ADD`: local archives are unpacked.
    pub unpack_archives: bool,
}

/// Cleans a source path into components below the root (`..` stops at the root).
pub fn clean_components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

impl Context {
    /// Opens the context at `root` with the ignore file for `dockerfile` (see
    /// [`dockerignore::candidates`]; none is fine).
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        let mut ignore = Matcher::default();
        let candidates = match dockerfile {
            Some(df) => dockerignore::candidates(df, root),
            None => vec![root.join(".dockerignore")],
        };
        for c in candidates {
            match fs::read(&c) {
                Ok(bytes) => {
                    ignore = Matcher::parse(&bytes)?;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&c)(e)),
            }
        }
        Ok(Context {
            root: root.to_path_buf(),
            ignore,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.is_excluded(rel)
    }

    fn host(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// The paths a source names (itself, or its wildcard matches), relative, in order.
    fn matches(&self, source: &str) -> Result<Vec<String>, ContextError> {
        let comps = clean_components(source);
        let mut found: Vec<String> = vec![String::new()];
        for c in &comps {
            let mut next = Vec::new();
            for base in &found {
                let join = |n: &str| {
                    if base.is_empty() {
                        n.to_owned()
                    } else {
                        format!("{base}/{n}")
                    }
                };
                if glob::has_wildcard(c) {
                    let dir = self.host(base);
                    let Ok(rd) = fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        if glob::matches(c, &n)? && !self.excluded(&join(&n)) {
                            next.push(join(&n));
                        }
                    }
                } else {
                    next.push(join(c));
                }
            }
            found = next;
        }
        Ok(found
            .into_iter()
            .filter(|p| !self.excluded(p) && fs::symlink_metadata(self.host(p)).is_ok())
            .collect())
    }

    /// Follows `rel` while it is a symlink, inside the context. Returns the final path.
    fn follow(&self, rel: &str) -> Result<String, ContextError> {
        let mut cur = rel.to_owned();
        for _ in 0..40 {
            let host = self.host(&cur);
            let meta = fs::symlink_metadata(&host).map_err(io_err(&host))?;
            if !meta.file_type().is_symlink() {
                return Ok(cur);
            }
            let target = fs::read_link(&host).map_err(io_err(&host))?;
            let target = target.to_string_lossy();
            let joined = if target.starts_with('/') {
                target.into_owned()
            } else {
                match cur.rsplit_once('/') {
                    Some((parent, _)) => format!("{parent}/{target}"),
                    None => target.into_owned(),
                }
            };
            // `..` beyond the root means the link leads out of the context.
            let mut depth: i64 = 0;
            for c in joined.split('/') {
                match c {
                    "" | "." => {}
                    ".." => depth -= 1,
                    _ => depth += 1,
                }
                if depth < 0 && !joined.starts_with('/') {
                    return Err(ContextError::Escapes {
                        path: rel.to_owned(),
                    });
                }
            }
            cur = clean_components(&joined).join("/");
            if self.excluded(&cur) {
                return Err(ContextError::NotFound(rel.to_owned()));
            }
        }
        Err(ContextError::Escapes {
            path: rel.to_owned(),
        })
    }

    /// Resolves the sources of one instruction (see the module doc).
    pub fn sources(&self, sources: &[String], opts: &Options) -> Result<Sources, ContextError> {
        let mut items = Vec::new();
        for s in sources {
            let found = self.matches(s)?;
            if found.is_empty() {
                if glob::has_wildcard(s) {
                    // BuildKit allows a wildcard that matches nothing.
                    continue;
                }
                return Err(ContextError::NotFound(s.clone()));
            }
            for rel in found {
                let real = self.follow(&rel)?;
                let host = self.host(&real);
                let meta = fs::metadata(&host).map_err(io_err(&host))?;
                let base = rel.rsplit('/').next().unwrap_or(&rel).to_owned();
                let name = if opts.parents { rel.clone() } else { base };
                let excludes = Matcher::parse(opts.excludes.join("\n").as_bytes())?;
                let item = if meta.is_dir() {
                    let mut entries = vec![Entry {
                        rel: String::new(),
                        kind: EntryKind::Dir,
                        mode: meta.mode() & 0o7777,
                        mtime: meta.mtime(),
                        data: None,
                    }];
                    let mut links = HashMap::new();
                    self.walk(&real, "", &excludes, &mut entries, &mut links)?;
                    Item {
                        name,
                        kind: ItemKind::Dir,
                        parents: opts.parents,
                        entries,
                    }
                } else {
                    let kind = if opts.unpack_archives && is_archive(&host) {
                        ItemKind::Archive
                    } else {
                        ItemKind::File
                    };
                    Item {
                        name,
                        kind,
                        parents: opts.parents,
                        entries: vec![Entry {
                            rel: String::new(),
                            kind: EntryKind::File { size: meta.len() },
                            mode: meta.mode() & 0o7777,
                            mtime: meta.mtime(),
                            data: Some(Data::Path(host)),
                        }],
                    }
                };
                items.push(item);
            }
        }
        let digest = digest_items(&items)?;
        Ok(Sources { items, digest })
    }

    /// Adds the entries below `dir` (context-relative) to `out`, sorted by name bytes.
    fn walk(
        &self,
        dir: &str,
        rel: &str,
        excludes: &Matcher,
        out: &mut Vec<Entry>,
        links: &mut HashMap<(u64, u64), String>,
    ) -> Result<bool, ContextError> {
        let host = self.host(dir);
        let mut names: Vec<Vec<u8>> = fs::read_dir(&host)
            .map_err(io_err(&host))?
            .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&host))?;
        names.sort();
        let mut any = false;
        for n in names {
            let name = String::from_utf8_lossy(&n).into_owned();
            let ctx_rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let item_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ctx_excluded = self.excluded(&ctx_rel);
            let item_excluded = excludes.is_excluded(&item_rel);
            let ignored = ctx_excluded || item_excluded;
            let path = self.host(&ctx_rel);
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let ft = meta.file_type();
            if ft.is_dir() {
                let skippable = (!ctx_excluded || self.ignore.can_skip_dir(&ctx_rel))
                    && (!item_excluded || excludes.can_skip_dir(&item_rel));
                if ignored && skippable {
                    continue;
                }
                let at = out.len();
                out.push(Entry {
                    rel: item_rel.clone(),
                    kind: EntryKind::Dir,
                    mode: meta.mode() & 0o7777,
                    mtime: meta.mtime(),
                    data: None,
                });
                let inner = self.walk(&ctx_rel, &item_rel, excludes, out, links)?;
                if ignored && !inner {
                    // Excluded and nothing below it re-included.
                    out.truncate(at);
                    continue;
                }
                any = true;
                continue;
            }
            if ignored {
                continue;
            }
            let kind = if ft.is_symlink() {
                let t = fs::read_link(&path).map_err(io_err(&path))?;
                EntryKind::Symlink(String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned())
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = links.get(&key) {
                        EntryKind::Link(first.clone())
                    } else {
                        links.insert(key, item_rel.clone());
                        EntryKind::File { size: meta.len() }
                    }
                } else {
                    EntryKind::File { size: meta.len() }
                }
            } else {
                // Sockets, FIFOs and devices are not part of a build context.
                continue;
            };
            let data = matches!(kind, EntryKind::File { .. }).then(|| Data::Path(path.clone()));
            out.push(Entry {
                rel: item_rel,
                kind,
                mode: meta.mode() & 0o7777,
                mtime: meta.mtime(),
                data,
            });
            any = true;
        }
        Ok(any)
    }

    /// The content digest of the whole subtree at `source` (for `RUN --mount=type=bind`
    /// from the context), and its host path.
    pub fn subtree(&self, source: &str) -> Result<(PathBuf, String), ContextError> {
        let rel = clean_components(source).join("/");
        if self.excluded(&rel) || fs::symlink_metadata(self.host(&rel)).is_err() {
            return Err(ContextError::NotFound(source.to_owned()));
        }
        let real = self.follow(&rel)?;
        let s = self.sources(std::slice::from_ref(&real), &Options::default())?;
        Ok((self.host(&real), s.digest))
    }
}

/// An item made of bytes (a heredoc, a download).
pub fn data_item(name: &str, data: Data, size: u64, mode: u32, mtime: i64) -> Item {
    Item {
        name: name.to_owned(),
        kind: ItemKind::File,
        parents: false,
        entries: vec![Entry {
            rel: String::new(),
            kind: EntryKind::File { size },
            mode,
            mtime,
            data: Some(data),
        }],
    }
}

/// Whether the file at `path` is an archive `ADD` unpacks: a tar, optionally gzip or
/// zstd compressed.
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    let head = &head[..got];
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // Compressed: an archive when what it holds is a tar.
        let Ok(f) = fs::File::open(path) else {
            return false;
        };
        let Ok(mut inner) = crate::layer::decompress(f) else {
            return false;
        };
        let mut block = [0u8; 512];
        let mut got = 0;
        while got < block.len() {
            match inner.read(&mut block[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        return got == 512 && is_tar_header(&block);
    }
    head.len() == 512 && is_tar_header(head)
}

fn is_tar_header(block: &[u8]) -> bool {
    block.len() >= 512
        && (&block[257..262] == b"ustar" || {
            // Old (v7) tar: a valid checksum is the only mark.
            let stored = std::str::from_utf8(&block[148..156])
                .ok()
                .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
                .and_then(|s| u64::from_str_radix(s, 8).ok());
            let sum: u64 = block
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u64::from(*b)
                    }
                })
                .sum();
            stored == Some(sum) && block[0] != 0
        })
}

fn digest_items(items: &[Item]) -> Result<String, ContextError> {
    let mut h = Sha256::new();
    for item in items {
        h.update(format!("item\0{}\0{:?}\0{}\n", item.name, item.kind, item.parents).as_bytes());
        for e in &item.entries {
            let (kind, extra) = match &e.kind {
                EntryKind::File { size } => ("f", size.to_string()),
                EntryKind::Dir => ("d", String::new()),
                EntryKind::Symlink(t) => ("l", t.clone()),
                EntryKind::Link(t) => ("h", t.clone()),
            };
            h.update(format!("{}\0{kind}\0{:o}\0{extra}\0", e.rel, e.mode).as_bytes());
            if let Some(data) = &e.data {
                h.update(content_digest(data)?.as_bytes());
            }
            h.update(b"\n");
        }
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

fn content_digest(data: &Data) -> Result<String, ContextError> {
    let mut h = Sha256::new();
    match data {
        Data::Bytes(b) => h.update(b.as_slice()),
        Data::Path(p) => {
            let mut f = fs::File::open(p).map_err(io_err(p))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(io_err(p))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes `items` (numbered from `first`) as the copy stream of `sandbox::fileop`.
pub fn write_stream(items: &[Item], first: usize, out: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    for (i, item) in items.iter().enumerate() {
        let index = first + i;
        for e in &item.entries {
            let name = if e.rel.is_empty() {
                index.to_string()
            } else {
                format!("{index}/{}", e.rel)
            };
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(u64::try_from(e.mtime).unwrap_or(0));
            match &e.kind {
                EntryKind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, format!("{name}/"), io::empty())?;
                }
                EntryKind::Symlink(t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, &name, t)?;
                }
                EntryKind::Link(t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &name, format!("{index}/{t}"))?;
                }
                EntryKind::File { size } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(*size);
                    match &e.data {
                        Some(Data::Bytes(b)) => tar.append_data(&mut h, &name, b.as_slice())?,
                        Some(Data::Path(p)) => {
                            let f = fs::File::open(p)?;
                            // A file that changed size since it was hashed would corrupt
                            // the stream; take exactly what the header says.
                            let mut r = f.take(*size);
                            let mut counted = CountingReader {
                                inner: &mut r,
                                count: 0,
                            };
                            tar.append_data(&mut h, &name, &mut counted)?;
                            if counted.count != *size {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!("`{}` changed while the build read it", p.display()),
                                ));
                            }
                        }
                        None => tar.append_data(&mut h, &name, io::empty())?,
                    }
                }
            }
        }
    }
    tar.finish()
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    count: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[(&str, &str)], ignore: &str) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        for (p, content) in files {
            let path = dir.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            if p.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::write(&path, content).unwrap();
            }
        }
        fs::write(dir.path().join(".dockerignore"), ignore).unwrap();
        let c = Context::open(dir.path(), None).unwrap();
        (dir, c)
    }

    fn names(s: &Sources) -> Vec<(String, Vec<String>)> {
        s.items
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.entries.iter().map(|e| e.rel.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn wildcards_dirs_and_ignore() {
        let (_d, c) = ctx(
            &[
                ("a.txt", "a"),
                ("b.txt", "b"),
                ("c.log", "c"),
                ("dir/x", "x"),
                ("dir/skip.tmp", "s"),
                ("dir/sub/y", "y"),
                ("secret/key", "k"),
            ],
            "*.log\n**/*.tmp\nsecret\n",
        );
        let s = c
            .sources(&["*.txt".into(), "dir".into()], &Options::default())
            .unwrap();
        assert_eq!(
            names(&s),
            [
                ("a.txt".into(), vec![String::new()]),
                ("b.txt".into(), vec![String::new()]),
                (
                    "dir".into(),
                    vec![String::new(), "sub".into(), "sub/y".into(), "x".into()]
                ),
            ]
        );
        assert!(matches!(
            c.sources(&["c.log".into()], &Options::default()),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            c.sources(&["secret/key".into()], &Options::default()),
            Err(ContextError::NotFound(_))
        ));
        // A wildcard that matches nothing copies nothing (BuildKit allows it).
        assert!(
            c.sources(&["*.none".into()], &Options::default())
                .unwrap()
                .items
                .is_empty()
        );
        // `..` cannot leave the context.
        let up = c
            .sources(&["../a.txt".into()], &Options::default())
            .unwrap();
        assert_eq!(up.items.len(), 1);
    }

    #[test]
    fn digests_follow_content_not_times() {
        let (d, c) = ctx(&[("a.txt", "one")], "");
        let first = c
            .sources(&["a.txt".into()], &Options::default())
            .unwrap()
            .digest;
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(f);
        assert_eq!(
            c.sources(&["a.txt".into()], &Options::default())
                .unwrap()
                .digest,
            first
        );
        fs::write(d.path().join("a.txt"), "two").unwrap();
        assert_ne!(
            c.sources(&["a.txt".into()], &Options::default())
                .unwrap()
                .digest,
            first
        );
    }

    #[test]
    fn symlinks_are_followed_at_the_top_and_kept_below() {
        let (d, c) = ctx(&[("real/f", "f"), ("other", "o")], "");
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("../other", d.path().join("real/up")).unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", d.path().join("out")).unwrap();
        let s = c.sources(&["link".into()], &Options::default()).unwrap();
        assert_eq!(s.items[0].kind, ItemKind::Dir);
        assert!(
            s.items[0]
                .entries
                .iter()
                .any(|e| e.rel == "up" && e.kind == EntryKind::Symlink("../other".into()))
        );
        assert!(matches!(
            c.sources(&["out".into()], &Options::default()),
            Err(ContextError::Escapes { .. })
        ));
    }

    #[test]
    fn excluded_dirs_keep_reincluded_children() {
        let (_d, c) = ctx(
            &[
                ("node_modules/a/x", "x"),
                ("node_modules/keep/y", "y"),
                ("src/m", "m"),
            ],
            "node_modules\n!node_modules/keep\n",
        );
        let s = c.sources(&[".".into()], &Options::default()).unwrap();
        let rels: Vec<String> = s.items[0].entries.iter().map(|e| e.rel.clone()).collect();
        assert_eq!(
            rels,
            [
                "",
                ".dockerignore",
                "node_modules",
                "node_modules/keep",
                "node_modules/keep/y",
                "src",
                "src/m"
            ]
        );
    }

    #[test]
    fn the_stream_names_items_by_number() {
        let (_d, c) = ctx(&[("a.txt", "a"), ("d/b", "bb")], "");
        let s = c
            .sources(&["a.txt".into(), "d".into()], &Options::default())
            .unwrap();
        let mut out = Vec::new();
        write_stream(&s.items, 3, &mut out).unwrap();
        let names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect();
        assert_eq!(names, ["3", "4/", "4/b"]);
    }
}

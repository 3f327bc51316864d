//! Unit tests of extraction, including the hostile-entry rules and a property test of
//! containment over generated entry sequences.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Builds raw tar bytes; names are written as given (no checks), so hostile archives can
/// be made.
pub(crate) struct TarWriter {
    pub(crate) bytes: Vec<u8>,
}

pub(crate) fn header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let oct = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        if s.len() == field.len() {
            field.copy_from_slice(s.as_bytes());
        } else {
            // GNU base-256 for values octal cannot hold.
            field.fill(0);
            field[0] = 0x80;
            let n = field.len();
            field[n - 8..].copy_from_slice(&v.to_be_bytes());
        }
    };
    oct(&mut h[100..108], u64::from(mode));
    oct(&mut h[108..116], 0);
    oct(&mut h[116..124], 0);
    oct(&mut h[124..136], size);
    oct(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    finish_checksum(&mut h);
    h
}

pub(crate) fn finish_checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

impl TarWriter {
    pub(crate) fn new() -> Self {
        TarWriter { bytes: Vec::new() }
    }

    pub(crate) fn raw(&mut self, h: &[u8; 512], data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(h);
        self.bytes.extend_from_slice(data);
        let padding = usize::try_from(pad(data.len() as u64)).unwrap();
        self.bytes.resize(self.bytes.len() + padding, 0);
        self
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(
            &header(name.as_bytes(), b'0', data.len() as u64, 0o644, b""),
            data,
        )
    }

    pub(crate) fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.raw(
            &header(name.as_bytes(), b'0', data.len() as u64, mode, b""),
            data,
        )
    }

    pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(&header(name.as_bytes(), b'5', 0, 0o755, b""), b"")
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            &header(name.as_bytes(), b'2', 0, 0o777, target.as_bytes()),
            b"",
        )
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            &header(name.as_bytes(), b'1', 0, 0o644, target.as_bytes()),
            b"",
        )
    }

    pub(crate) fn device(&mut self, name: &str, typeflag: u8) -> &mut Self {
        self.raw(&header(name.as_bytes(), typeflag, 0, 0o666, b""), b"")
    }

    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3; // ' ' '=' '\n'
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.raw(
            &header(b"././@PaxHeader", b'x', data.len() as u64, 0o644, b""),
            &data.clone(),
        )
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

fn extract(bytes: &[u8], root: &Path) -> Result<ExtractReport, ExtractError> {
    extract_tar(bytes, &Root::open(root).unwrap())
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "host").unwrap();
    (t, root, outside)
}

#[test]
fn ordinary_layer_extracts_with_metadata() {
    let (_t, root, _) = setup();
    let tar = TarWriter::new()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file_mode("bin/su", b"ELF", 0o4755)
        .symlink("bin/sh", "/bin/busybox")
        .hardlink("etc/passwd-", "etc/passwd")
        .finish();
    let report = extract(&tar, &root).unwrap();
    assert_eq!(report.entries, 5);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/passwd-")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::metadata(root.join("bin/su"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::metadata(root.join("etc/passwd")).unwrap().ino(),
        std::fs::metadata(root.join("etc/passwd-")).unwrap().ino()
    );
    assert_eq!(
        std::fs::metadata(root.join("etc")).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn traversal_and_absolute_names_are_refused() {
    for name in ["../escape", "a/../../escape", "/tmp/escape", "./../escape"] {
        let (_t, root, outside) = setup();
        let tar = TarWriter::new().file(name, b"x").finish();
        let err = extract(&tar, &root).unwrap_err();
        assert!(
            matches!(err, ExtractError::UnsafeName { .. }),
            "{name}: {err}"
        );
        assert!(!outside.parent().unwrap().join("escape").exists());
    }
    let (_t, root, _) = setup();
    let tar = TarWriter::new()
        .file("f", b"x")
        .hardlink("l", "../../etc/passwd")
        .finish();
    assert!(matches!(
        extract(&tar, &root),
        Err(ExtractError::BadHardLink { .. })
    ));
}

#[test]
fn symlinks_cannot_lead_outside() {
    // An absolute symlink to the host directory, then a write through it: resolved with
    // the rootfs as `/`, it lands inside (or is refused), never outside.
    let (_t, root, outside) = setup();
    let o = outside.display().to_string();
    let tar = TarWriter::new()
        .symlink("evil", &o)
        .file("evil/secret", b"pwned")
        .finish();
    let res = extract(&tar, &root);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host"
    );
    assert!(
        matches!(res, Err(ExtractError::NotADirectory { .. })),
        "{res:?}"
    );

    // The same with the target present inside the rootfs: written there.
    let (_t, root, outside) = setup();
    let rel = o.trim_start_matches('/').to_owned();
    let tar = TarWriter::new()
        .dir(&format!("{rel}/"))
        .symlink("evil", &o)
        .file("evil/secret", b"pwned")
        .symlink("up", "../../../../../..")
        .file("up/escaped", b"x")
        .finish();
    extract(&tar, &root).unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host"
    );
    assert_eq!(
        std::fs::read_to_string(root.join(&rel).join("secret")).unwrap(),
        "pwned"
    );
    assert!(
        root.join("escaped").exists(),
        "`..` symlinks stop at the root"
    );

    // A symlink replaced by a file is not followed.
    let (_t, root, outside) = setup();
    let tar = TarWriter::new()
        .symlink("s", &format!("{o}/secret"))
        .file("s", b"replaced")
        .finish();
    extract(&tar, &root).unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "host"
    );
    assert_eq!(std::fs::read_to_string(root.join("s")).unwrap(), "replaced");
}

#[test]
fn hardlinks_only_reach_files_in_the_layer() {
    let (_t, root, outside) = setup();
    let o = outside.display().to_string();
    // Through a symlink to the host directory: resolved inside, where nothing is.
    let tar = TarWriter::new()
        .symlink("h", &o)
        .hardlink("stolen", "h/secret")
        .finish();
    let err = extract(&tar, &root).unwrap_err();
    assert!(matches!(err, ExtractError::BadHardLink { .. }), "{err}");
    assert!(!root.join("stolen").exists());
    let tar = TarWriter::new().dir("d/").hardlink("dl", "d").finish();
    let (_t2, root2, _) = setup();
    assert!(matches!(
        extract(&tar, &root2),
        Err(ExtractError::BadHardLink { .. })
    ));
}

#[test]
fn devices_are_skipped_fifos_made_whiteouts_written() {
    let (_t, root, _) = setup();
    let tar = TarWriter::new()
        .device("dev/null", b'3')
        .device("dev/sda", b'4')
        .device("run/fifo", b'6')
        .dir("etc/")
        .file("etc/.wh.motd", b"")
        .file("opt/.wh..wh..opq", b"")
        .finish();
    let report = extract(&tar, &root).unwrap();
    assert_eq!(report.devices_skipped.count, 2);
    assert_eq!(report.devices_skipped.paths, ["/dev/null", "/dev/sda"]);
    assert!(!root.join("dev/null").exists());
    assert!(
        std::fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let wh = std::fs::symlink_metadata(root.join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "whiteout is a 0:0 char device"
    );
    let opq = Root::open(&root)
        .unwrap()
        .dir()
        .unwrap()
        .get_xattr(OsStr::new("opt"), "user.overlay.opaque")
        .unwrap();
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));
    assert_eq!(report.whiteouts, 2);
}

#[test]
fn dangerous_xattrs_are_dropped_and_reported() {
    let (_t, root, _) = setup();
    let tar = TarWriter::new()
        .pax(&[
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0",
            ),
            ("SCHILY.xattr.user.keep", b"1"),
        ])
        .file("etc/krb5.conf", b"x")
        .pax(&[
            ("SCHILY.xattr.security.ima", b"\x03\x02"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .file("bin/app", b"x")
        .pax(&[("SCHILY.xattr.user.overlay.redirect", b"/etc")])
        .dir("d/")
        .finish();
    let report = extract(&tar, &root).unwrap();
    let dropped: Vec<(&str, XattrDrop)> = report
        .xattrs_dropped
        .iter()
        .flat_map(|(k, v)| v.keys().map(move |r| (k.as_str(), *r)))
        .collect();
    assert_eq!(
        dropped,
        [
            ("security.ima", XattrDrop::Policy),
            ("security.selinux", XattrDrop::Policy),
            ("trusted.overlay.opaque", XattrDrop::Policy),
            ("user.overlay.redirect", XattrDrop::Policy),
        ]
    );
    assert_eq!(
        report.xattrs_dropped["security.selinux"][&XattrDrop::Policy].paths,
        ["/etc/krb5.conf"]
    );
    let d = Root::open(&root)
        .unwrap()
        .open_dir(&[OsStr::new("etc")])
        .unwrap();
    assert_eq!(
        d.get_xattr(OsStr::new("krb5.conf"), "user.keep")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        d.get_xattr(OsStr::new("krb5.conf"), "security.selinux")
            .ok()
            .flatten(),
        None
    );
}

#[test]
fn huge_sparse_files_cost_no_disk_and_impossible_ones_fail_cleanly() {
    // GNU sparse: 1 TiB apparent size, one 512-byte data segment at its end.
    let tib: u64 = 1 << 40;
    let mut h = header(b"sparse", b'S', 512, 0o644, b"");
    // Octal when it fits in 11 digits, else GNU base-256, as GNU tar writes them.
    let oct12 = |v: u64| {
        if v < (1 << 33) {
            format!("{v:011o}\0").into_bytes()
        } else {
            let mut f = vec![0u8; 12];
            f[0] = 0x80;
            f[4..].copy_from_slice(&v.to_be_bytes());
            f
        }
    };
    h[386..398].copy_from_slice(&oct12(tib - 512));
    h[398..410].copy_from_slice(&oct12(512));
    h[483..495].copy_from_slice(&oct12(tib));
    finish_checksum(&mut h);
    let tar = TarWriter::new().raw(&h, &[7u8; 512]).finish();
    let (_t, root, _) = setup();
    let t0 = std::time::Instant::now();
    extract(&tar, &root).unwrap();
    let m = std::fs::metadata(root.join("sparse")).unwrap();
    assert_eq!(m.len(), tib);
    assert!(
        m.blocks() < 1024,
        "{} blocks allocated for a sparse file",
        m.blocks()
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));

    // A size no file system holds (2^62): a clean error naming the entry.
    let mut h = header(b"toobig", b'S', 0, 0o644, b"");
    let huge = 1u64 << 62;
    let mut field = [0u8; 12];
    field[0] = 0x80;
    field[4..].copy_from_slice(&huge.to_be_bytes());
    h[483..495].copy_from_slice(&field);
    finish_checksum(&mut h);
    let tar = TarWriter::new().raw(&h, b"").finish();
    let (_t, root, _) = setup();
    let err = extract(&tar, &root).unwrap_err();
    assert!(err.to_string().contains("/toobig"), "{err}");

    // A regular header claiming more data than the stream has.
    let mut tar = TarWriter::new();
    tar.bytes
        .extend_from_slice(&header(b"big", b'0', 1 << 40, 0o644, b""));
    tar.bytes.extend_from_slice(&[1u8; 4096]);
    let (_t, root, _) = setup();
    assert!(matches!(
        extract(&tar.bytes, &root),
        Err(ExtractError::Truncated { .. })
    ));

    // Overlapping segments are refused.
    let mut h = header(b"overlap", b'S', 1024, 0o644, b"");
    h[386..398].copy_from_slice(&oct12(0));
    h[398..410].copy_from_slice(&oct12(512));
    h[410..422].copy_from_slice(&oct12(100));
    h[422..434].copy_from_slice(&oct12(512));
    h[483..495].copy_from_slice(&oct12(4096));
    finish_checksum(&mut h);
    let tar = TarWriter::new().raw(&h, &[1u8; 1024]).finish();
    let (_t, root, _) = setup();
    assert!(matches!(
        extract(&tar, &root),
        Err(ExtractError::Corrupt { .. })
    ));
}

#[test]
fn pax_sparse_1_0_is_understood() {
    // Map: 1 segment at offset 8192 of 4 bytes; real size 16384.
    let mut data = b"1\n8192\n4\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"DATA");
    let tar = TarWriter::new()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"real/name"),
            ("GNU.sparse.realsize", b"16384"),
        ])
        .raw(
            &header(b"GNUSparseFile.0/name", b'0', data.len() as u64, 0o644, b""),
            &data,
        )
        .finish();
    let (_t, root, _) = setup();
    extract(&tar, &root).unwrap();
    let f = std::fs::read(root.join("real/name")).unwrap();
    assert_eq!(f.len(), 16384);
    assert_eq!(&f[8192..8196], b"DATA");
    assert!(f[..8192].iter().all(|b| *b == 0));
}

#[test]
fn corrupt_headers_and_metadata_bombs_are_errors() {
    let mut h = header(b"f", b'0', 0, 0o644, b"");
    h[0] = b'g'; // checksum no longer matches
    let (_t, root, _) = setup();
    assert!(matches!(
        extract(&TarWriter::new().raw(&h, b"").finish(), &root),
        Err(ExtractError::Corrupt { .. })
    ));
    let big = header(b"././@PaxHeader", b'x', MAX_PAX + 1, 0o644, b"");
    let (_t, root, _) = setup();
    let err = extract(&TarWriter::new().raw(&big, b"").finish(), &root).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn pax_overrides_names_and_times() {
    let long = format!("{}/file", "d".repeat(150));
    let tar = TarWriter::new()
        .pax(&[("path", long.as_bytes()), ("mtime", b"1234567890.5")])
        .file("short", b"x")
        .finish();
    let (_t, root, _) = setup();
    extract(&tar, &root).unwrap();
    let m = std::fs::metadata(root.join(&long)).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 500_000_000));
    assert_eq!(pax_time(b"-1.5"), Some((-2, 500_000_000)));
}

// ---------------------------------------------------------------------------------------
// Property: whatever the entry sequence, nothing outside the root changes.

#[derive(Debug, Clone)]
enum Op {
    Dir(String),
    File(String),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
}

fn name() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("outside".to_owned()),
        Just("secret".to_owned()),
    ];
    (prop::bool::weighted(0.1), prop::collection::vec(comp, 1..4))
        .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.join("/")))
}

fn target(outside: &str) -> impl Strategy<Value = String> + use<> {
    prop_oneof![
        name(),
        Just(outside.to_owned()),
        Just(format!("{outside}/secret")),
        Just("../../../../..".to_owned()),
        Just("/".to_owned()),
    ]
}

fn ops(outside: &str) -> impl Strategy<Value = Vec<Op>> + use<> {
    let op = prop_oneof![
        name().prop_map(Op::Dir),
        name().prop_map(Op::File),
        (name(), target(outside)).prop_map(|(a, b)| Op::Symlink(a, b)),
        (name(), target(outside)).prop_map(|(a, b)| Op::Hardlink(a, b)),
        name().prop_map(Op::Whiteout),
    ];
    prop::collection::vec(op, 1..12)
}

/// Everything under `dir` with its contents (files) or targets (symlinks).
fn snapshot_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned()
            };
            out.push((p.display().to_string(), what));
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn no_entry_sequence_writes_outside_the_root(seq in ops("/OUTSIDE")) {
        let (t, root, outside) = setup();
        let o = outside.display().to_string();
        let mut tar = TarWriter::new();
        for op in &seq {
            let fix = |s: &str| s.replace("/OUTSIDE", &o);
            match op {
                Op::Dir(n) => { tar.dir(n); }
                Op::File(n) => { tar.file(n, b"payload"); }
                Op::Symlink(n, to) => { tar.symlink(n, &fix(to)); }
                Op::Hardlink(n, to) => { tar.hardlink(n, &fix(to)); }
                Op::Whiteout(n) => {
                    let (dir, base) = n.rsplit_once('/').map_or(("", n.as_str()), |(d, b)| (d, b));
                    let wh = if dir.is_empty() { format!(".wh.{base}") } else { format!("{dir}/.wh.{base}") };
                    tar.file(&wh, b"");
                }
            }
        }
        let bytes = tar.finish();
        let before = snapshot_tree(t.path());
        let before_outside: Vec<_> = before.iter().filter(|(p, _)| !p.starts_with(&root.display().to_string())).cloned().collect();
        let _ = extract(&bytes, &root);
        let after = snapshot_tree(t.path());
        let after_outside: Vec<_> = after.iter().filter(|(p, _)| !p.starts_with(&format!("{}/", root.display())) && *p != root.display().to_string()).cloned().collect();
        let before_outside: Vec<_> = before_outside.into_iter().filter(|(p, _)| *p != root.display().to_string()).collect();
        prop_assert_eq!(after_outside, before_outside);
        // Files hard-linked from outside would share the secret's inode.
            prop_assert_eq!(std::fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
    }
}

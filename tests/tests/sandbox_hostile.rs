//! Hostile layers end to end: crafted tar layers on top of the busybox base, unpacked by
//! `rbuild run` as the unprivileged user. None may write outside the rootfs; each gets the
//! expected warning or error. (The property test over generated entry sequences is in
//! `builder/src/layer/extract/tests.rs`.)

mod sandbox_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use rbuild_e2e::require;
use sandbox_support::{Sandboxed, Tar, find, sentinel, show, tmp_is_world_writable};

/// Runs `tag` with `script`; returns the output and the diagnostics.
fn run(s: &Sandboxed, tag: &str, script: &str) -> (std::process::Output, Vec<serde_json::Value>) {
    let path = s.diagnostics_path(tag);
    let _ = fs::remove_file(&path);
    let out = s.run(&[
        "--diagnostics-file",
        path.to_str().expect("temp paths are UTF-8"),
        &s.image(tag),
        "--",
        "sh",
        "-c",
        script,
    ]);
    let diags = if path.exists() {
        Sandboxed::diagnostics(&path)
    } else {
        Vec::new()
    };
    (out, diags)
}

fn assert_refused(out: &std::process::Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", show(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot unpack layer"), "{what}: {stderr}");
}

#[test]
fn traversal_absolute_and_symlink_escapes_never_write_outside() {
    let s = require!(Sandboxed::new());
    assert!(
        tmp_is_world_writable(),
        "the sentinels need a world-writable /tmp"
    );
    let dotdot = sentinel(&s.mark, "dotdot");
    let absolute = sentinel(&s.mark, "absolute");
    let through = sentinel(&s.mark, "through-symlink");
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();

    s.add_image(
        "dotdot",
        &[Tar::default()
            .file(
                &format!("../../../../../../../../tmp/{}", name(&dotdot)),
                b"pwned",
                0o644,
            )
            .finish()],
    );
    s.add_image(
        "absolute",
        &[Tar::default()
            .file(&absolute.display().to_string(), b"pwned", 0o644)
            .finish()],
    );
    // An absolute symlink to the host's /tmp, then a write through it, in one layer with
    // no /tmp of its own: refused.
    s.add_image(
        "symlink-refused",
        &[Tar::default()
            .symlink("evil", "/tmp")
            .file(&format!("evil/{}", name(&through)), b"pwned", 0o644)
            .finish()],
    );
    // The same with the layer's own /tmp: the write lands in the image's /tmp.
    s.add_image(
        "symlink-contained",
        &[Tar::default()
            .dir("tmp/")
            .symlink("evil", "/tmp")
            .file(&format!("evil/{}", name(&through)), b"contained", 0o644)
            .symlink("up", "../../../../../../..")
            .file(
                &format!("up/tmp/{}-up", name(&through)),
                b"contained-up",
                0o644,
            )
            .finish()],
    );

    for tag in ["dotdot", "absolute", "symlink-refused"] {
        let (out, _) = run(&s, tag, "true");
        assert_refused(&out, tag);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused") || stderr.contains("not a directory in the layer"),
            "{tag}: {stderr}"
        );
    }
    let (out, _) = run(
        &s,
        "symlink-contained",
        &format!("cat /tmp/{0}; echo; cat /tmp/{0}-up", name(&through)),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "contained\ncontained-up"
    );

    for p in [&dotdot, &absolute, &through] {
        assert!(!p.exists(), "`{}` was written on the host", p.display());
    }
    assert!(!std::path::Path::new(&format!("{}-up", through.display())).exists());
    s.assert_nothing_left();
}

#[test]
fn hardlinks_to_host_files_are_refused() {
    let s = require!(Sandboxed::new());
    let nlink = fs::metadata("/etc/passwd").unwrap().nlink();
    s.add_image(
        "hl-abs",
        &[Tar::default().hardlink("stolen", "/etc/passwd").finish()],
    );
    s.add_image(
        "hl-dotdot",
        &[Tar::default()
            .hardlink("stolen", "../../../../../../etc/passwd")
            .finish()],
    );
    s.add_image(
        "hl-symlink",
        &[Tar::default()
            .symlink("hostetc", "/etc")
            .hardlink("stolen", "hostetc/passwd")
            .finish()],
    );
    for tag in ["hl-abs", "hl-dotdot", "hl-symlink"] {
        let (out, _) = run(&s, tag, "true");
        assert_refused(&out, tag);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("hard link `/stolen`"), "{tag}: {stderr}");
    }
    assert_eq!(fs::metadata("/etc/passwd").unwrap().nlink(), nlink);
    s.assert_nothing_left();
}

#[test]
fn device_nodes_are_skipped_with_a_warning() {
    let s = require!(Sandboxed::new());
    s.add_image(
        "devices",
        &[Tar::default()
            .dir("opt/")
            .device("opt/mem", b'3', 1, 1)
            .device("opt/sda", b'4', 8, 0)
            .raw(
                &sandbox_support::header("opt/fifo", b'6', 0, 0o600, ""),
                b"",
            )
            .finish()],
    );
    let (out, diags) = run(
        &s,
        "devices",
        "ls -l /opt; test ! -e /opt/mem && test ! -e /opt/sda && test -p /opt/fifo && echo ok",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let d = find(&diags, "device-node-or-whiteout-mknod");
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["evidence"], serde_json::json!(["/opt/mem", "/opt/sda"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning[device-node-or-whiteout-mknod]")
    );
    s.assert_nothing_left();
}

/// A static x86-64 executable that exits with its effective uid (mod 256):
/// `geteuid(); exit(result)`.
fn euid_exit_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let code: &[u8] = &[
        0xb8, 107, 0, 0, 0, // mov eax, 107 (geteuid)
        0x0f, 0x05, // syscall
        0x89, 0xc7, // mov edi, eax
        0xb8, 60, 0, 0, 0, // mov eax, 60 (exit)
        0x0f, 0x05, // syscall
    ];
    let total = 64 + 56 + code.len() as u64;
    let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&(BASE + 120).to_le_bytes()); // entry
    v.extend_from_slice(&64u64.to_le_bytes()); // phoff
    v.extend_from_slice(&0u64.to_le_bytes()); // shoff
    v.extend_from_slice(&0u32.to_le_bytes()); // flags
    for h in [64u16, 56, 1, 0, 0, 0] {
        v.extend_from_slice(&h.to_le_bytes());
    }
    v.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    v.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for w in [0, BASE, BASE, total, total, 0x1000] {
        v.extend_from_slice(&u64::to_le_bytes(w));
    }
    v.extend_from_slice(code);
    v
}

#[test]
fn setuid_files_keep_their_bits_and_work_inside() {
    let s = require!(Sandboxed::new());
    let elf = euid_exit_elf();
    s.add_image(
        "setuid",
        &[Tar::default()
            .file("usr/local/bin/euid-suid", &elf, 0o4755)
            .file("usr/local/bin/euid-plain", &elf, 0o755)
            .finish()],
    );
    let out = s.run(&[
        "--user",
        "nobody",
        &s.image("setuid"),
        "--",
        "sh",
        "-c",
        "stat -c %a /usr/local/bin/euid-suid; /usr/local/bin/euid-suid; echo suid=$?; /usr/local/bin/euid-plain; echo plain=$?",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("4755\n"), "{stdout}");
    if cfg!(target_arch = "x86_64") {
        // Effective uid 0 through the setuid bit, 65534 (mod 256) without it.
        assert!(
            stdout.contains("suid=0\n") && stdout.contains("plain=254\n"),
            "{stdout}"
        );
    }
    // Other host users cannot reach the unpacked setuid file: the state dir is private.
    let mode = fs::metadata(s.cache.join("sandbox")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    s.assert_nothing_left();
}

#[test]
fn selinux_ima_and_overlay_xattrs_are_dropped_with_warnings() {
    let s = require!(Sandboxed::new());
    s.add_image(
        "xattrs",
        &[Tar::default()
            .dir("etc/krb5.conf.d/")
            .pax(&[(
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:krb5_conf_t:s0\0",
            )])
            .file("etc/krb5.conf", b"[libdefaults]\n", 0o644)
            .pax(&[
                ("SCHILY.xattr.security.ima", b"\x03\x02\x04"),
                ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
            ])
            .file("usr/bin/signed", b"#!/bin/sh\n", 0o755)
            // cap_net_raw+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
            .pax(&[(
                "SCHILY.xattr.security.capability",
                &[
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            )])
            .file("usr/bin/pinger", b"#!/bin/sh\n", 0o755)
            .pax(&[("SCHILY.xattr.user.rbuild-test", b"kept")])
            .file("etc/kept", b"x", 0o644)
            .finish()],
    );
    let (out, diags) = run(&s, "xattrs", "cat /etc/krb5.conf");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[libdefaults]\n");
    let selinux = find(&diags, "xattr-security-selinux-in-layer");
    assert_eq!(selinux["severity"], "warning");
    assert_eq!(selinux["evidence"], serde_json::json!(["/etc/krb5.conf"]));
    let titles: Vec<&str> = diags
        .iter()
        .filter(|d| d["id"] == "xattr-overlay-or-ima-in-layer")
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.iter().any(|t| t.contains("security.ima")),
        "{titles:?}"
    );
    assert!(
        titles.iter().any(|t| t.contains("user.overlay.redirect")),
        "{titles:?}"
    );
    assert!(!diags.iter().any(|d| {
        d["title"]
            .as_str()
            .unwrap_or("")
            .contains("user.rbuild-test")
    }));
    // `security.capability` is kept: the kernel stores it as a namespaced (v3) capability
    // owned by the sandbox's root.
    assert!(
        !diags.iter().any(|d| d["title"]
            .as_str()
            .unwrap_or("")
            .contains("security.capability")),
        "{diags:?}"
    );
    let pinger = walk_find(&s.cache.join("sandbox/snapshots"), "pinger").expect("pinger unpacked");
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import os,sys; print(len(os.getxattr(sys.argv[1], 'security.capability')))",
        ])
        .arg(&pinger)
        .output();
    // (Read with python3 where there is one; the tests need no xattr tool otherwise.)
    if let Ok(out) = probe {
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "24",
            "a v3 (namespaced) capability"
        );
    }
    s.assert_nothing_left();
}

#[test]
fn huge_sparse_headers_cost_nothing_or_fail_cleanly() {
    let s = require!(Sandboxed::new());
    let tib: u64 = 1 << 40;
    s.add_image(
        "sparse",
        &[Tar::default()
            .sparse_tail("big", tib, &[b'z'; 512])
            .finish()],
    );
    let mut huge = sandbox_support::header("toobig", b'S', 0, 0o644, "");
    huge[483] = 0x80;
    huge[484..495].fill(0);
    huge[487] = 0x40; // 2^62 in base-256
    sandbox_support::checksum(&mut huge);
    s.add_image(
        "sparse-impossible",
        &[Tar::default().raw(&huge, b"").finish()],
    );
    // A header promising more data than the layer holds.
    let mut truncated = Tar::default();
    truncated.raw(
        &sandbox_support::header("short", b'0', 1 << 30, 0o644, ""),
        &[1u8; 4096],
    );
    let truncated = truncated.finish();
    s.add_image("truncated", &[truncated[..truncated.len() - 1024].to_vec()]);

    let t0 = Instant::now();
    let (out, _) = run(&s, "sparse", "ls -l /big; tail -c 3 /big");
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&tib.to_string()), "{stdout}");
    assert!(stdout.ends_with("zzz"), "{stdout}");
    assert!(
        t0.elapsed() < Duration::from_mins(1),
        "sparse unpack took {:?}",
        t0.elapsed()
    );
    // The snapshot holds the file with almost no blocks.
    let snapshots = s.cache.join("sandbox/snapshots");
    let big = walk_find(&snapshots, "big").expect("the sparse file is in a snapshot");
    assert!(fs::metadata(&big).unwrap().blocks() < 1024);

    let (out, _) = run(&s, "sparse-impossible", "true");
    assert_refused(&out, "sparse-impossible");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/toobig"),
        "{}",
        show(&out)
    );
    let (out, _) = run(&s, "truncated", "true");
    assert_refused(&out, "truncated");
    s.assert_nothing_left();
}

fn walk_find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_name() == name {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir()
            && let Some(found) = walk_find(&p, name)
        {
            return Some(found);
        }
    }
    None
}

//! Foreign platforms end to end: an arm64 busybox runs under qemu-user registered in the
//! sandbox's own `binfmt_misc`, with the host's table empty before and after.

mod sandbox_support;

use std::fs;

use rbuild_e2e::gate::Missing;
use rbuild_e2e::{require, tool};
use sandbox_support::{Sandboxed, find, show};

/// The entries of the host's binfmt table (empty when `binfmt_misc` is not mounted).
fn host_binfmt_entries() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/proc/sys/fs/binfmt_misc")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "register" && n != "status")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn kernel_at_least_6_7() -> Result<(), Missing> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .trim()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let v = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    if v >= (6, 7) {
        Ok(())
    } else {
        Err(Missing::new(
            format!(
                "kernel {}.{} cannot mount binfmt_misc in a user namespace",
                v.0, v.1
            ),
            "run on Linux >= 6.7",
        ))
    }
}

#[test]
fn arm64_busybox_says_aarch64_and_the_host_binfmt_table_stays_empty() {
    require!(tool("/usr/bin/qemu-aarch64-static", "qemu-user-static"));
    require!(kernel_at_least_6_7());
    let s = require!(Sandboxed::new());
    let before = host_binfmt_entries();
    if !before.is_empty() {
        require!(Err::<(), _>(Missing::new(
            format!(
                "the host's binfmt table is not empty ({before:?}), so this test cannot show rbuild needs none"
            ),
            "run on a host without binfmt registrations (as CI is)",
        )));
    }
    let out = s.run_ok(&[
        "--platform",
        "linux/arm64",
        &s.image("latest"),
        "--",
        "uname",
        "-m",
    ]);
    assert_eq!(out.trim(), "aarch64");
    // The registration lives in the sandbox's own binfmt_misc, with the F flag.
    let out = s.run_ok(&[
        "--platform",
        "linux/arm64",
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "cat /proc/sys/fs/binfmt_misc/qemu-aarch64; ls /bin/ls && echo applets-work",
    ]);
    assert!(out.lines().next() == Some("enabled"), "{out}");
    let flags = out
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or_default();
    assert!(
        flags.contains('F') && flags.contains('P'),
        "flags {flags:?}"
    );
    assert!(
        out.contains("applets-work"),
        "argv[0] is preserved for busybox applets: {out}"
    );
    assert_eq!(
        host_binfmt_entries(),
        before,
        "the host's binfmt table changed"
    );
    assert!(!std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists());
    s.assert_nothing_left();

    // The same image for amd64 runs natively.
    let out = s.run_ok(&[
        "--platform",
        "linux/amd64",
        &s.image("latest"),
        "--",
        "uname",
        "-m",
    ]);
    assert_eq!(out.trim(), std::env::consts::ARCH);
}

#[test]
fn an_emulated_command_killed_by_a_signal_reports_qemu_segfault() {
    require!(tool("/usr/bin/qemu-aarch64-static", "qemu-user-static"));
    require!(kernel_at_least_6_7());
    let s = require!(Sandboxed::new());
    let path = s.diagnostics_path("segv");
    let out = s.run(&[
        "--platform",
        "linux/arm64",
        "--diagnostics-file",
        path.to_str().unwrap(),
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "kill -SEGV $$",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("killed by signal 11 (SIGSEGV)"),
        "{}",
        show(&out)
    );
    let diags = Sandboxed::diagnostics(&path);
    let d = find(&diags, "qemu-segfault");
    assert_eq!(d["platform"], "linux/arm64");
    assert!(d["message"].as_str().unwrap().contains("aarch64"), "{d}");
    s.assert_nothing_left();
}

#[test]
fn platforms_the_image_lacks_or_rbuild_does_not_know_are_refused() {
    let s = require!(Sandboxed::new());
    let out = s.run(&[
        "--platform",
        "linux/s390x",
        &s.image("latest"),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no manifest for `linux/s390x`") && stderr.contains("`linux/arm64`"),
        "{stderr}"
    );
    let out = s.run(&["--platform", "linux/vax", &s.image("latest"), "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

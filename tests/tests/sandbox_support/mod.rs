//! Shared pieces of the sandbox end-to-end tests: a per-test workspace owned by the test
//! user (a copy of the busybox layout, a cache directory), running `rbuild run` in it,
//! the "nothing left behind" checks, and a raw tar writer for crafted layers.

// Each test file uses a different part of this module; and this is test code, where a
// panic is the assertion (clippy only knows that for `#[test]` functions).
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_e2e::gate::Missing;
use rbuild_e2e::oci::{self, Layout};
use rbuild_e2e::user::{current_uid, run_ok};
use rbuild_e2e::{Env, base, userns};
use serde_json::{Value, json};

/// One test's workspace.
pub(crate) struct Sandboxed {
    pub(crate) env: Env,
    pub(crate) dir: tempfile::TempDir,
    /// The copy of the busybox layout (tags `latest`, `amd64`, `arm64`).
    pub(crate) layout: PathBuf,
    /// `--cache-dir` of every run.
    pub(crate) cache: PathBuf,
    /// A string unique to this test, put in the environment of everything it starts.
    pub(crate) mark: String,
}

impl Sandboxed {
    /// The test user, the rbuild binary, user namespaces with a full range, and a copy of
    /// the busybox layout the test user owns (the harness caches it under root's home).
    pub(crate) fn new() -> Result<Sandboxed, Missing> {
        let env = Env::get()?;
        userns(env.user)?;
        rbuild_e2e::tool("/usr/bin/newuidmap", "uidmap")?;
        let base = base::busybox()?;
        let dir = env
            .user
            .tempdir()
            .map_err(|e| Missing::new(format!("cannot create a temp dir: {e}"), "check $TMPDIR"))?;
        let layout = dir.path().join("busybox");
        run_ok(Command::new("cp").arg("-r").arg(base.root()).arg(&layout)).map_err(|e| {
            Missing::new(
                format!("cannot copy the busybox layout: {e}"),
                "check disk space",
            )
        })?;
        if current_uid() == 0 {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{}:{}", env.user.uid, env.user.gid))
                    .arg(&layout),
            )
            .map_err(|e| {
                Missing::new(format!("cannot chown the layout copy: {e}"), "run as root")
            })?;
        }
        let cache = dir.path().join("cache");
        let mark = format!(
            "rbuild-e2e-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        Ok(Sandboxed {
            env,
            dir,
            layout,
            cache,
            mark,
        })
    }

    /// `oci-layout://<copy>:<tag>`.
    pub(crate) fn image(&self, tag: &str) -> String {
        format!("oci-layout://{}:{tag}", self.layout.display())
    }

    /// `rbuild run --cache-dir <cache> --env RBUILD_E2E_MARK ...` as the test user, in
    /// the workspace.
    pub(crate) fn run_cmd(&self) -> Command {
        let mut cmd = self.env.rbuild();
        cmd.current_dir(self.dir.path())
            .env("RBUILD_E2E_MARK", &self.mark)
            .arg("run")
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(["--env", "RBUILD_E2E_MARK"]);
        cmd
    }

    /// Runs `rbuild run ARGS` and returns its output.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_cmd().args(args).output().expect("rbuild runs")
    }

    /// Runs `rbuild run ARGS`, expecting success; returns stdout.
    pub(crate) fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rbuild run {args:?} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A path for a diagnostics file in the workspace.
    pub(crate) fn diagnostics_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.json"))
    }

    /// The diagnostics written to `path`.
    pub(crate) fn diagnostics(path: &Path) -> Vec<Value> {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("no diagnostics at {}: {e}", path.display()));
        serde_json::from_str::<Vec<Value>>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
    }

    /// After a run: no process of it, no mount of it, no run directory.
    pub(crate) fn assert_nothing_left(&self) {
        // Processes: everything the test started carries the mark in its environment or
        // command line.
        let mut alive = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let environ = fs::read(e.path().join("environ")).unwrap_or_default();
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let has = |b: &[u8]| {
                b.windows(self.mark.len())
                    .any(|w| w == self.mark.as_bytes())
            };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie_free = !stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if (has(&environ) || has(&cmdline)) && zombie_free && e.path().exists() {
                alive.push(format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
        assert!(
            alive.is_empty(),
            "processes of the run are still alive: {alive:?}"
        );
        // Mounts: none anywhere mentions the cache directory.
        let cache = self.cache.display().to_string();
        let mut mounts = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(text) = fs::read_to_string(e.path().join("mountinfo")) {
                for line in text.lines().filter(|l| l.contains(&cache)) {
                    mounts.push(format!("{}: {line}", e.file_name().to_string_lossy()));
                }
            }
        }
        assert!(mounts.is_empty(), "mounts of the run remain: {mounts:?}");
        // State: the run directory is gone, only snapshots remain.
        let runs = self.cache.join("sandbox/runs");
        if runs.exists() {
            let left: Vec<String> = fs::read_dir(&runs)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                left.is_empty(),
                "run state left in {}: {left:?}",
                runs.display()
            );
        }
        let top: Vec<String> = fs::read_dir(self.cache.join("sandbox"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for name in &top {
            assert!(
                ["runs", "snapshots"].contains(&name.as_str()),
                "unexpected `{name}` in the state dir"
            );
        }
    }

    /// Adds an amd64 image tagged `tag`: the busybox base plus `layers` (raw tars).
    pub(crate) fn add_image(&self, tag: &str, layers: &[Vec<u8>]) {
        let layout = Layout::open(&self.layout).unwrap();
        let base = layout.find_ref("amd64").unwrap();
        let mut manifest = layout.read_json(base["digest"].as_str().unwrap()).unwrap();
        let mut config = layout
            .read_json(manifest["config"]["digest"].as_str().unwrap())
            .unwrap();
        for raw in layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(raw).unwrap();
            let gz = gz.finish().unwrap();
            let desc = layout.put_blob(oci::MEDIA_LAYER_GZIP, &gz).unwrap();
            manifest["layers"].as_array_mut().unwrap().push(desc);
            config["rootfs"]["diff_ids"]
                .as_array_mut()
                .unwrap()
                .push(json!(oci::sha256_digest(raw)));
        }
        manifest["config"] = layout.put_json(oci::MEDIA_CONFIG, &config).unwrap();
        let mut desc = layout.put_json(oci::MEDIA_MANIFEST, &manifest).unwrap();
        desc["annotations"] = json!({ oci::REF_NAME: tag });
        let mut all = layout.index().unwrap()["manifests"]
            .as_array()
            .cloned()
            .unwrap();
        all.push(desc);
        layout.write_index(&all).unwrap();
        if current_uid() == 0 {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{}:{}", self.env.user.uid, self.env.user.gid))
                    .arg(&self.layout),
            )
            .unwrap();
        }
    }

    /// The busybox binary of the amd64 base image.
    pub(crate) fn busybox_binary(&self) -> Vec<u8> {
        let layout = Layout::open(&self.layout).unwrap();
        let base = layout.find_ref("amd64").unwrap();
        let manifest = layout.read_json(base["digest"].as_str().unwrap()).unwrap();
        let gz = layout
            .read_blob(manifest["layers"][0]["digest"].as_str().unwrap())
            .unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().as_os_str() == "bin/busybox" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                return bytes;
            }
        }
        panic!("no bin/busybox in the base layer");
    }
}

impl Drop for Sandboxed {
    fn drop(&mut self) {
        // The cache holds files of subordinate ids; as a normal user only a user namespace
        // can remove them (as root the temp dir's own removal does it).
        if current_uid() != 0 && self.cache.exists() {
            let _ = Command::new("unshare")
                .args(["--user", "--map-auto", "--map-root-user", "rm", "-rf"])
                .arg(&self.cache)
                .status();
        }
    }
}

/// stdout and stderr of an output, for messages.
pub(crate) fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A diagnostic with `id` from a diagnostics file, or a panic listing what there is.
pub(crate) fn find<'a>(diags: &'a [Value], id: &str) -> &'a Value {
    diags.iter().find(|d| d["id"] == id).unwrap_or_else(|| {
        panic!(
            "no `{id}` diagnostic in {}",
            serde_json::to_string_pretty(diags).unwrap()
        )
    })
}

// ---------------------------------------------------------------------------------------
// Raw tar writing for crafted layers (no checks on names, on purpose).

/// A tar stream under construction.
#[derive(Default)]
pub(crate) struct Tar {
    bytes: Vec<u8>,
}

/// Writes `v` into a numeric header field: octal when it fits, else GNU base-256.
fn num(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    if s.len() == field.len() {
        field.copy_from_slice(s.as_bytes());
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

/// A ustar header.
pub(crate) fn header(name: &str, typeflag: u8, size: u64, mode: u32, link: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    num(&mut h[100..108], u64::from(mode));
    num(&mut h[108..116], 0);
    num(&mut h[116..124], 0);
    num(&mut h[124..136], size);
    num(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    checksum(&mut h);
    h
}

/// Recomputes a header's checksum after it was edited.
pub(crate) fn checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

impl Tar {
    pub(crate) fn raw(&mut self, h: &[u8; 512], data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(h);
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    pub(crate) fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.raw(&header(name, b'0', data.len() as u64, mode, ""), data)
    }
    /// A regular file owned by `uid:gid`.
    pub(crate) fn file_owned(&mut self, name: &str, data: &[u8], uid: u64, gid: u64) -> &mut Self {
        let mut h = header(name, b'0', data.len() as u64, 0o644, "");
        num(&mut h[108..116], uid);
        num(&mut h[116..124], gid);
        checksum(&mut h);
        self.raw(&h, data)
    }
    pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(&header(name, b'5', 0, 0o755, ""), b"")
    }
    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(&header(name, b'2', 0, 0o777, target), b"")
    }
    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(&header(name, b'1', 0, 0o644, target), b"")
    }
    /// A character (`b'3'`) or block (`b'4'`) device.
    pub(crate) fn device(&mut self, name: &str, typeflag: u8, major: u64, minor: u64) -> &mut Self {
        let mut h = header(name, typeflag, 0, 0o666, "");
        num(&mut h[329..337], major);
        num(&mut h[337..345], minor);
        checksum(&mut h);
        self.raw(&h, b"")
    }
    /// A PAX extended header applying to the next entry.
    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body = k.len() + v.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.raw(
            &header("././@PaxHeader", b'x', data.len() as u64, 0o644, ""),
            &data,
        )
    }
    /// A GNU sparse file of `real_size` bytes whose only data is `data` at its end.
    pub(crate) fn sparse_tail(&mut self, name: &str, real_size: u64, data: &[u8]) -> &mut Self {
        let mut h = header(name, b'S', data.len() as u64, 0o644, "");
        num(&mut h[386..398], real_size - data.len() as u64);
        num(&mut h[398..410], data.len() as u64);
        num(&mut h[483..495], real_size);
        checksum(&mut h);
        self.raw(&h, data)
    }
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

/// A path under `/tmp` no one has: if a layer ever wrote it on the host, containment
/// failed. World-writable `/tmp` means the unprivileged user *could* write there.
pub(crate) fn sentinel(mark: &str, what: &str) -> PathBuf {
    let p = PathBuf::from(format!("/tmp/{mark}-{what}"));
    let _ = fs::remove_file(&p);
    p
}

/// Whether `/tmp` is world-writable (the sentinels prove something only then).
pub(crate) fn tmp_is_world_writable() -> bool {
    fs::metadata("/tmp").is_ok_and(|m| m.permissions().mode() & 0o002 != 0)
}

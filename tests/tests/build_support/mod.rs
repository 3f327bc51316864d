//! Shared pieces of the build end-to-end tests: a workspace owned by the test user (build
//! contexts, a cache directory) beside a real registry holding the busybox base,
//! running `rbuild build` in it, and looking at the results with independent tools
//! (skopeo, umoci).

// Each test file uses a different part of this module; and this is test code, where a
// panic is the assertion.
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_e2e::gate::Missing;
use rbuild_e2e::user::{current_uid, run_ok};
use rbuild_e2e::{Env, Registry, registry_with_busybox, tool, userns};
use serde_json::Value;

/// One test's workspace.
pub(crate) struct Workspace {
    pub(crate) env: Env,
    pub(crate) dir: tempfile::TempDir,
    /// `--cache-dir` of every build (unless a test gives another).
    pub(crate) cache: PathBuf,
    pub(crate) registry: Registry,
    /// `127.0.0.1:PORT/busybox:latest` (linux/amd64 + linux/arm64).
    pub(crate) busybox: String,
    skopeo: PathBuf,
    umoci: PathBuf,
}

impl Workspace {
    /// The test user, user namespaces with a full range, a registry with busybox, skopeo
    /// and umoci.
    pub(crate) fn new() -> Result<Workspace, Missing> {
        let env = Env::get()?;
        userns(env.user)?;
        tool("/usr/bin/newuidmap", "uidmap")?;
        tool("/usr/bin/qemu-aarch64-static", "qemu-user-static")?;
        let skopeo = tool("/usr/bin/skopeo", "skopeo")?;
        let umoci = tool("/usr/bin/umoci", "umoci")?;
        let (registry, busybox) = registry_with_busybox()?;
        let dir = env
            .user
            .tempdir()
            .map_err(|e| Missing::new(format!("cannot create a temp dir: {e}"), "check $TMPDIR"))?;
        let cache = dir.path().join("cache");
        Ok(Workspace {
            env,
            dir,
            cache,
            registry,
            busybox,
            skopeo,
            umoci,
        })
    }

    pub(crate) fn host(&self) -> String {
        self.registry.host()
    }

    /// A build context `name` with `files` (`path`, content); a path ending in `/` is a
    /// directory. Everything is owned by the test user.
    pub(crate) fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir.path().join(name);
        fs::create_dir_all(&root).unwrap();
        for (p, content) in files {
            let path = root.join(p);
            if p.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, content).unwrap();
            }
        }
        self.give_tree(&root);
        root
    }

    /// Gives everything below `root` to the test user.
    pub(crate) fn give_tree(&self, root: &Path) {
        if current_uid() == 0 {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{}:{}", self.env.user.uid, self.env.user.gid))
                    .arg(root),
            )
            .unwrap();
        }
    }

    /// `rbuild ARGS` as the test user in the workspace.
    pub(crate) fn rbuild(&self) -> Command {
        let mut c = self.env.rbuild();
        c.current_dir(self.dir.path());
        c
    }

    /// `rbuild build --cache-dir CACHE --progress json ARGS...`; the output whatever the
    /// status.
    pub(crate) fn build(&self, args: &[&str]) -> Output {
        self.build_with(&self.cache, args, &[])
    }

    /// Like [`Workspace::build`] with another cache directory and environment variables.
    pub(crate) fn build_with(&self, cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.rbuild();
        c.arg("build")
            .arg("--cache-dir")
            .arg(cache)
            .args(["--progress", "json"]);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// A build that must succeed; returns its stdout (the image digest).
    pub(crate) fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        assert!(
            out.status.success(),
            "rbuild build {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `skopeo inspect --raw` of a reference in the registry.
    pub(crate) fn raw(&self, reference: &str) -> Value {
        let out = run_ok(self.env.user.command(&self.skopeo).current_dir("/").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]))
        .unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// The image config of `reference` for `arch` (amd64, arm64).
    pub(crate) fn config(&self, reference: &str, arch: &str) -> Value {
        let out = run_ok(self.env.user.command(&self.skopeo).current_dir("/").args([
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            &format!("docker://{reference}"),
        ]))
        .unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// Copies `reference` (for `arch`) out of the registry with skopeo into an OCI layout
    /// and unpacks it with `umoci unpack --rootless`; returns the root file system.
    pub(crate) fn unpack(&self, reference: &str, arch: &str) -> PathBuf {
        let n = fs::read_dir(self.dir.path()).unwrap().count();
        let layout = self.dir.path().join(format!("oci-{n}"));
        let bundle = self.dir.path().join(format!("bundle-{n}"));
        run_ok(self.env.user.command(&self.skopeo).current_dir("/").args([
            "copy",
            "--src-tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            &format!("docker://{reference}"),
            &format!("oci:{}:x", layout.display()),
        ]))
        .unwrap();
        self.umoci_unpack(&layout, "x", &bundle)
    }

    /// `umoci unpack --rootless --image LAYOUT:TAG BUNDLE`, as the test user.
    pub(crate) fn umoci_unpack(&self, layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
        run_ok(self.env.user.command(&self.umoci).current_dir("/").args([
            "unpack".as_ref(),
            "--rootless".as_ref(),
            "--image".as_ref(),
            format!("{}:{tag}", layout.display()).as_ref(),
            bundle.as_os_str(),
        ]))
        .unwrap();
        bundle.join("rootfs")
    }

    /// `rbuild run` as the test user (the workspace's cache).
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let mut c = self.rbuild();
        c.arg("run").arg("--cache-dir").arg(&self.cache).args(args);
        run_ok(&mut c).unwrap()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        // Caches hold files of subordinate ids; as a normal user only a user namespace
        // can remove them (as root the temp dir's own removal does it).
        if current_uid() != 0 {
            for e in fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = Command::new("unshare")
                    .args(["--user", "--map-auto", "--map-root-user", "rm", "-rf"])
                    .arg(e.path())
                    .status();
            }
        }
    }
}

/// The JSON progress events of a build.
pub(crate) fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"].is_string())
        .collect()
}

/// `(step name, outcome)` of every finished step, in order.
pub(crate) fn outcomes(out: &Output) -> Vec<(String, String)> {
    let ev = events(out);
    let mut names = std::collections::HashMap::new();
    let mut v = Vec::new();
    for e in &ev {
        match e["type"].as_str() {
            Some("step_started") => {
                names.insert(
                    e["step"].as_u64().unwrap(),
                    e["name"].as_str().unwrap().to_owned(),
                );
            }
            Some("step_finished") => {
                let n = names
                    .get(&e["step"].as_u64().unwrap())
                    .cloned()
                    .unwrap_or_default();
                v.push((n, e["outcome"].as_str().unwrap().to_owned()));
            }
            _ => {}
        }
    }
    v
}

/// `(executed, cached)` from the `build_finished` event.
pub(crate) fn counts(out: &Output) -> (u64, u64) {
    let ev = events(out);
    let f = ev
        .iter()
        .find(|e| e["type"] == "build_finished")
        .expect("a build_finished event");
    (
        f["executed"].as_u64().unwrap(),
        f["cached"].as_u64().unwrap(),
    )
}

/// Diagnostics reported as progress events.
pub(crate) fn diagnostics(out: &Output) -> Vec<Value> {
    events(out)
        .into_iter()
        .filter(|e| e["type"] == "diagnostic")
        .collect()
}

/// Mode bits of a path (without following a symlink).
pub(crate) fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// One entry of a layer tar.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub(crate) path: String,
    pub(crate) kind: tar::EntryType,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: u64,
    pub(crate) link: Option<String>,
    pub(crate) data: Vec<u8>,
}

impl Workspace {
    /// Copies `reference` (for `arch`) into an OCI layout and returns its directory.
    pub(crate) fn layout(&self, reference: &str, arch: &str) -> PathBuf {
        let n = fs::read_dir(self.dir.path()).unwrap().count();
        let layout = self.dir.path().join(format!("oci-{n}"));
        run_ok(self.env.user.command(&self.skopeo).current_dir("/").args([
            "copy",
            "--src-tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={arch}"),
            &format!("docker://{reference}"),
            &format!("oci:{}:x", layout.display()),
        ]))
        .unwrap();
        layout
    }
}

/// The manifest of the only image of a layout written by [`Workspace::layout`].
pub(crate) fn layout_manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    blob_json(layout, d)
}

pub(crate) fn blob_json(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The bytes of every blob of a layout, layers decompressed.
pub(crate) fn all_blob_bytes(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let raw = fs::read(&p).unwrap();
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut d = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut d)
                .unwrap();
            d
        } else {
            raw
        };
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), bytes));
    }
    out
}

/// The entries of every layer of the layout's image, bottom layer first.
pub(crate) fn layers(layout: &Path) -> Vec<Vec<TarEntry>> {
    let m = layout_manifest(layout);
    let mut out = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let hex = l["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let raw = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        let reader: Box<dyn std::io::Read> = if raw.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::Cursor::new(raw)))
        } else {
            Box::new(std::io::Cursor::new(raw))
        };
        let mut a = tar::Archive::new(reader);
        let mut entries = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            let h = e.header();
            entries.push(TarEntry {
                path: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
                data,
            });
        }
        out.push(entries);
    }
    out
}

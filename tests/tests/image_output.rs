//! Image output end to end: images written by rbuild's image writer (the build engine's
//! API, called in-process here as the build engine will) and images pulled or read from a
//! layout, exported by the real `rbuild push` binary as the unprivileged test user to an
//! OCI layout tar and a Docker archive, and checked by independent tools: `skopeo inspect
//! oci-archive:` / `docker-archive:`, `umoci unpack`, `podman load` + `podman run`.

// Helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild::image::writer::{self, Created, ImageSpec, Layer, WriteOptions};
use rbuild::image::{Descriptor, media};
use rbuild::store::{Digest, Store};
use rbuild_e2e::base;
use rbuild_e2e::user::{output, run_ok};
use rbuild_e2e::{Env, require, tool};
use serde_json::Value;

const EPOCH: &str = "1700000000";

fn copy_busybox(env: &Env, dir: &Path) -> PathBuf {
    let layout = base::busybox().expect("checked by the caller");
    let copy = dir.join("busybox-layout");
    run_ok(Command::new("cp").arg("-r").arg(layout.root()).arg(&copy)).unwrap();
    chown(env, &copy);
    copy
}

fn chown(env: &Env, path: &Path) {
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", env.user.uid, env.user.gid))
            .arg(path),
    )
    .unwrap();
}

/// A containers tool as the test user, with an empty auth file of its own.
fn tool_cmd(env: &Env, program: &Path, dir: &Path) -> Command {
    let auth = dir.join("empty-auth.json");
    if !auth.is_file() {
        std::fs::write(&auth, "{}").unwrap();
        env.user.give(&auth).unwrap();
    }
    let mut c = env.user.command(program);
    c.env("REGISTRY_AUTH_FILE", &auth).current_dir(dir);
    c
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rbuild failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn push(env: &Env, dir: &Path, cache: &Path, args: &[&str]) -> Output {
    let mut cmd = env.rbuild();
    cmd.current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["push", "--cache-dir"])
        .arg(cache)
        .args(args);
    output(&mut cmd).unwrap()
}

/// A gzip layer holding `/hello.txt`; returns (blob, diff id).
fn hello_layer(text: &str) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("hello.txt").unwrap();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tar.append(&h, text.as_bytes()).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = Digest::sha256_of(&raw);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Writes, through rbuild's image writer, busybox (both platforms) plus a layer with
/// `/hello.txt`, labels, env and history, recorded in the store at `cache` as `name`.
fn write_hello_image(cache: &Path, layout: &Path, name: &str) -> writer::Written {
    let store = Store::open(cache).unwrap();
    let source = format!("oci-layout://{}:latest", layout.display());
    let mut specs = Vec::new();
    for arch in base::ARCHES {
        let platform = format!("linux/{}", arch.oci).parse().unwrap();
        let base_image = rbuild::registry::image_from(&store, &source, &platform).unwrap();
        let mut spec = ImageSpec::from_base(&base_image).unwrap();
        let (blob, diff_id) = hello_layer(&format!("hello from {}\n", arch.oci));
        let digest = store.put_bytes(None, &blob).unwrap();
        spec.add_layer(
            Layer {
                descriptor: Descriptor::new(media::OCI_LAYER_GZIP, digest, blob.len() as u64),
                diff_id,
            },
            "COPY hello.txt / # buildkit",
        );
        spec.config.set_env("GREETING", "hello");
        spec.add_empty_history("ENV GREETING=hello");
        spec.config
            .labels
            .insert("org.opencontainers.image.title".into(), "hello".into());
        spec.add_empty_history("LABEL org.opencontainers.image.title=hello");
        spec.config.cmd = Some(vec!["cat".into(), "/hello.txt".into()]);
        spec.add_empty_history("CMD [\"cat\", \"/hello.txt\"]");
        specs.push(spec);
    }
    let mut options = WriteOptions::new(Created {
        unix: EPOCH.parse().unwrap(),
    });
    options.ref_name = Some(name.to_owned());
    let written = writer::write(&store, &specs, &options).unwrap();
    // The same inputs give the same digests.
    let again = writer::write(&store, &specs, &options).unwrap();
    assert_eq!(again.root, written.root);
    written
}

fn tar_member(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return Some(v);
        }
    }
    None
}

fn podman(env: &Env, podman: &Path, dir: &Path, args: &[&str]) -> String {
    let mut c = tool_cmd(env, podman, dir);
    c.arg("--root")
        .arg(dir.join("podman-root"))
        .arg("--runroot")
        .arg(dir.join("podman-run"))
        .args(["--storage-driver", "vfs", "--runtime", "runc"])
        .args(args);
    run_ok(&mut c).unwrap()
}

#[test]
fn image_output_written_image_exports_to_oci_and_docker_archives_and_a_registry() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let umoci = require!(tool("/usr/bin/umoci", "umoci"));
    require!(rbuild_e2e::registry::available());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let layout = copy_busybox(&env, dir.path());
    let cache = dir.path().join("cache");
    let name = "localhost/e2e/hello:1";
    let written = write_hello_image(&cache, &layout, name);
    assert_eq!(written.root.media_type, media::OCI_INDEX);
    chown(&env, &cache);

    // The whole index as an OCI layout tar, twice: the same bytes.
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    let digest = ok(&push(
        &env,
        dir.path(),
        &cache,
        &[name, &format!("oci-archive:{}:v1", a.display())],
    ));
    assert_eq!(digest, written.root.digest.to_string());
    ok(&push(
        &env,
        dir.path(),
        &cache,
        &[name, &format!("oci-archive:{}:v1", b.display())],
    ));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let index: Value = serde_json::from_slice(&tar_member(&a, "index.json").unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        name
    );

    // skopeo reads it: config settings, creation time, history, the index's platforms.
    let inspect = |args: &[&str]| -> Value {
        let out = run_ok(
            tool_cmd(&env, &skopeo, dir.path())
                .arg("inspect")
                .args(args),
        )
        .unwrap();
        serde_json::from_str(&out).unwrap()
    };
    for arch in base::ARCHES {
        let info = inspect(&[
            "--override-arch",
            arch.oci,
            &format!("oci-archive:{}:v1", a.display()),
        ]);
        assert_eq!(info["Architecture"], arch.oci);
        assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
        assert_eq!(info["Labels"]["org.opencontainers.image.title"], "hello");
        assert!(
            info["Env"]
                .as_array()
                .unwrap()
                .contains(&Value::from("GREETING=hello")),
            "{info}"
        );
        assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    }
    let config = inspect(&["--config", &format!("oci-archive:{}:v1", a.display())]);
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.last().unwrap()["created_by"],
        "CMD [\"cat\", \"/hello.txt\"]"
    );
    assert_eq!(history.last().unwrap()["empty_layer"], true);
    assert_eq!(history.last().unwrap()["created"], "2023-11-14T22:13:20Z");
    let raw = inspect(&["--raw", &format!("oci-archive:{}:v1", a.display())]);
    assert_eq!(raw["mediaType"], media::OCI_INDEX);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );

    // One platform of it, unpacked by umoci from the extracted layout.
    let arm = dir.path().join("arm64.tar");
    ok(&push(
        &env,
        dir.path(),
        &cache,
        &[
            "--platform",
            "linux/arm64",
            name,
            &format!("oci-archive:{}:arm64", arm.display()),
        ],
    ));
    let extracted = dir.path().join("arm64-layout");
    std::fs::create_dir(&extracted).unwrap();
    env.user.give(&extracted).unwrap();
    run_ok(
        env.user
            .command("tar")
            .current_dir(dir.path())
            .arg("-xf")
            .arg(&arm)
            .arg("-C")
            .arg(&extracted),
    )
    .unwrap();
    let bundle = dir.path().join("bundle");
    run_ok(
        env.user
            .command(&umoci)
            .current_dir(dir.path())
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:arm64", extracted.display()))
            .arg(&bundle),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello from arm64\n"
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());

    // A Docker archive (the host's platform by default) that skopeo reads.
    let docker = dir.path().join("docker.tar");
    ok(&push(
        &env,
        dir.path(),
        &cache,
        &[name, &format!("docker-archive:{}", docker.display())],
    ));
    let manifest: Value =
        serde_json::from_slice(&tar_member(&docker, "manifest.json").unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], name);
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 2);
    let info = inspect(&[&format!("docker-archive:{}", docker.display())]);
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "hello");

    // The same image pushed to a registry: the index keeps its digest, skopeo reads it.
    {
        let reg = rbuild_e2e::Registry::start().unwrap();
        let dest = format!("{}/e2e/hello:1", reg.host());
        let pushed = ok(&push(&env, dir.path(), &cache, &[name, &dest]));
        assert_eq!(pushed, written.root.digest.to_string());
        let info = inspect(&[
            "--tls-verify=false",
            "--override-arch=arm64",
            &format!("docker://{dest}"),
        ]);
        assert_eq!(info["Architecture"], "arm64");
        assert_eq!(info["Labels"]["org.opencontainers.image.title"], "hello");
    }

    // No temp files are left beside the archives.
    let strays: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.contains(".rbuild-").then_some(n)
        })
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

#[test]
fn image_output_docker_archive_loads_and_runs_under_podman() {
    let env = require!(Env::get());
    let podman_bin = require!(tool("/usr/bin/podman", "podman"));
    require!(tool("/usr/sbin/runc", "runc"));
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let layout = copy_busybox(&env, dir.path());
    let cache = dir.path().join("cache");
    let name = "localhost/e2e/hello:podman";
    write_hello_image(&cache, &layout, name);
    chown(&env, &cache);

    let docker = dir.path().join("hello-docker.tar");
    ok(&push(
        &env,
        dir.path(),
        &cache,
        &[
            "--platform",
            "linux/amd64",
            name,
            &format!("docker-archive:{}", docker.display()),
        ],
    ));
    let loaded = podman(
        &env,
        &podman_bin,
        dir.path(),
        &["load", "-i", docker.to_str().unwrap()],
    );
    assert!(loaded.contains(name), "{loaded}");
    let out = podman(
        &env,
        &podman_bin,
        dir.path(),
        &["run", "--rm", "--network", "host", name],
    );
    assert_eq!(out, "hello from amd64\n", "the image's CMD ran");
    let env_out = podman(
        &env,
        &podman_bin,
        dir.path(),
        &[
            "run",
            "--rm",
            "--network",
            "host",
            name,
            "sh",
            "-c",
            "echo $GREETING; uname -m",
        ],
    );
    assert_eq!(env_out, "hello\nx86_64\n");

    // The busybox layout itself (an index, no names) exported by platform and named.
    let arm = dir.path().join("busybox-arm64.tar");
    ok(&push(
        &env,
        dir.path(),
        &cache,
        &[
            "--platform",
            "linux/arm64",
            &format!("oci-layout://{}:latest", layout.display()),
            &format!("docker-archive:{}:localhost/busybox:arm64", arm.display()),
        ],
    ));
    let loaded = podman(
        &env,
        &podman_bin,
        dir.path(),
        &["load", "-i", arm.to_str().unwrap()],
    );
    assert!(loaded.contains("localhost/busybox:arm64"), "{loaded}");
    let arch = podman(
        &env,
        &podman_bin,
        dir.path(),
        &[
            "image",
            "inspect",
            "--format",
            "{{.Architecture}}",
            "localhost/busybox:arm64",
        ],
    );
    assert_eq!(arch.trim(), "arm64");
}

#[test]
fn image_output_docker_archive_of_a_missing_platform_names_the_ones_there() {
    let env = require!(Env::get());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let layout = copy_busybox(&env, dir.path());
    let dest = dir.path().join("x.tar");
    let out = push(
        &env,
        dir.path(),
        &dir.path().join("cache"),
        &[
            "--platform",
            "linux/s390x",
            &format!("oci-layout://{}:latest", layout.display()),
            &format!("docker-archive:{}", dest.display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no manifest for `linux/s390x`"), "{err}");
    assert!(err.contains("`linux/amd64`, `linux/arm64`"), "{err}");
    assert!(err.contains("--platform"), "{err}");
    assert!(!dest.exists());

    // A destination in a directory that does not exist: a clear error, nothing written.
    let out = push(
        &env,
        dir.path(),
        &dir.path().join("cache"),
        &[
            &format!("oci-layout://{}:latest", layout.display()),
            &format!("oci-archive:{}/no/such/dir/x.tar", dir.path().display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot export"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn image_output_push_of_a_one_platform_layout_import_reads_the_rest_from_the_layout() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    require!(rbuild_e2e::registry::available());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let layout = copy_busybox(&env, dir.path());
    let reg = rbuild_e2e::Registry::start().unwrap();
    // What the build engine does with an `oci-layout://` base: import one platform.
    let store = Store::open(&dir.path().join("cache")).unwrap();
    let name = format!("oci-layout://{}:latest", layout.display());
    let platform = "linux/arm64".parse().unwrap();
    rbuild::registry::image_from(&store, &name, &platform).unwrap();
    let record = store.get_ref(&name).unwrap().unwrap();
    assert_eq!(
        record.blobs.len(),
        4,
        "index + the arm64 manifest, config, layer"
    );

    // Pushing that ref pushes the whole index: the other platform comes from the layout.
    let source = rbuild::registry::StoredSource {
        store: &store,
        origin: record.source.clone(),
    };
    let root = Descriptor::new(
        record.media_type.clone(),
        record.digest.clone(),
        record.size,
    );
    let dest: rbuild::registry::ImageRef = format!("{}/imported:v1", reg.host()).parse().unwrap();
    let registry = rbuild::registry::Registry::new(rbuild::registry::Options::default()).unwrap();
    let pushed = rbuild::registry::block_on(registry.push(&source, &root, &dest, None)).unwrap();
    assert_eq!(pushed.descriptor.digest, record.digest);
    let info = run_ok(tool_cmd(&env, &skopeo, dir.path()).args([
        "inspect",
        "--tls-verify=false",
        "--override-arch=amd64",
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&info).unwrap()["Architecture"],
        "amd64"
    );

    // Without the layout, the gap is an error that says what is missing and what to do.
    let fresh = Store::open(&dir.path().join("cache2")).unwrap();
    rbuild::registry::image_from(&fresh, &name, &platform).unwrap();
    let partial = rbuild::registry::StoredSource {
        store: &fresh,
        origin: None,
    };
    let err = rbuild::registry::block_on(registry.push(&partial, &root, &dest, None)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("holds only part of"), "{text}");
    assert!(text.contains("linux/amd64"), "{text}");
    assert!(err.hints()[0].contains("--platform"), "{:?}", err.hints());
}

//! `rbuild pull`, `rbuild push` and `rbuild prune` end to end: the real binary, as the
//! unprivileged test user, against the real `docker-registry` on 127.0.0.1, checked by
//! independent clients (skopeo, umoci).

// Helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_e2e::base::{self, ARCHES};
use rbuild_e2e::user::{output, run_ok};
use rbuild_e2e::{Env, Registry, registry_with_busybox, require, tool};
use serde_json::Value;

/// A copy of the busybox layout the test user can read, in `dir`.
fn user_layout(env: &Env, dir: &Path) -> PathBuf {
    let layout = base::busybox().expect("checked by registry_with_busybox");
    let copy = dir.join("busybox-layout");
    run_ok(Command::new("cp").arg("-r").arg(layout.root()).arg(&copy)).unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", env.user.uid, env.user.gid))
            .arg(&copy),
    )
    .unwrap();
    copy
}

/// A containers-tools command (skopeo, umoci, podman) as the test user. Its auth file is
/// pinned to an empty one: without `XDG_RUNTIME_DIR` these tools otherwise look in
/// `/run/containers/<uid>/`, which a root podman on the host makes unreadable.
fn skopeo_cmd(env: &Env, program: &Path) -> Command {
    let auth = std::env::temp_dir().join("rbuild-e2e-empty-auth.json");
    if !auth.is_file() {
        let tmp = auth.with_extension(format!("{}", std::process::id()));
        std::fs::write(&tmp, "{}").unwrap();
        std::fs::rename(&tmp, &auth).unwrap();
    }
    let mut c = env.user.command(program);
    c.env("REGISTRY_AUTH_FILE", &auth);
    c
}

fn rbuild(env: &Env, dir: &Path, args: &[&str]) -> Output {
    output(env.rbuild().current_dir(dir).args(args)).unwrap()
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

fn skopeo_raw(env: &Env, skopeo: &Path, reference: &str) -> (Value, String) {
    let raw = run_ok(skopeo_cmd(env, skopeo).current_dir("/").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap();
    let digest = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes())
    );
    (serde_json::from_str(&raw).unwrap(), digest)
}

fn blob_files(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join("blobs/sha256"))
        .map(|d| {
            d.filter_map(|e| Some(format!("sha256:{}", e.ok()?.file_name().to_string_lossy())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn registry_pull_busybox_index_for_both_platforms() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let (_reg, reference) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();

    let out = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/amd64,linux/arm64",
            &reference,
        ],
    );
    let digest = ok(&out);
    let (index, index_digest) = skopeo_raw(&env, &skopeo, &reference);
    assert_eq!(digest, index_digest, "stdout is the index digest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut want = vec![index_digest.clone()];
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap().to_owned();
        let arch = m["platform"]["architecture"].as_str().unwrap();
        assert!(stderr.contains(&format!("linux/{arch} {d}")), "{stderr}");
        let repo = reference.rsplit_once(':').unwrap().0;
        let (manifest, _) = skopeo_raw(&env, &skopeo, &format!("{repo}@{d}"));
        want.push(d);
        want.push(manifest["config"]["digest"].as_str().unwrap().to_owned());
        for l in manifest["layers"].as_array().unwrap() {
            want.push(l["digest"].as_str().unwrap().to_owned());
        }
    }
    want.sort();
    assert_eq!(
        blob_files(&cache),
        want,
        "the store holds exactly the image's blobs"
    );

    // A second pull finds everything cached; `linux/arm64/v8` names the same manifest.
    let again = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64/v8",
            &reference,
        ],
    );
    assert_eq!(ok(&again), digest);
    assert!(String::from_utf8_lossy(&again.stderr).contains("cached"));
    assert!(!String::from_utf8_lossy(&again.stderr).contains("fetched"));
}

#[test]
fn registry_pull_of_a_missing_platform_names_the_ones_there() {
    let env = require!(Env::get());
    let (_reg, reference) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            dir.path().join("c").to_str().unwrap(),
            "--platform",
            "linux/s390x",
            &reference,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("no image for platform `linux/s390x` (it has: `linux/amd64`, `linux/arm64`)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn registry_pull_of_an_unknown_tag_is_a_registry_error_naming_host_and_code() {
    let env = require!(Env::get());
    let (reg, _) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let missing = format!("{}/busybox:nope", reg.host());
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            dir.path().join("c").to_str().unwrap(),
            &missing,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("registry `{}`", reg.host())),
        "{stderr}"
    );
    assert!(stderr.contains("404 Not Found"), "{stderr}");
    assert!(stderr.contains("MANIFEST_UNKNOWN"), "{stderr}");
}

#[test]
fn registry_push_image_and_index_that_skopeo_and_umoci_accept() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let umoci = require!(tool("/usr/bin/umoci", "umoci"));
    require!(rbuild_e2e::registry::available());
    let dir = env.user.tempdir().unwrap();
    let layout = require!(base::busybox());
    let src = user_layout(&env, dir.path());
    let reg = Registry::start().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();

    // The index.
    let index_dest = format!("{}/rbuild/busybox:multi", reg.host());
    let meta = dir.path().join("meta.json");
    let iid = dir.path().join("iid");
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "push",
            "--cache-dir",
            cache_s,
            "--metadata-file",
            meta.to_str().unwrap(),
            "--iidfile",
            iid.to_str().unwrap(),
            &format!("oci-layout://{}:latest", src.display()),
            &index_dest,
        ],
    );
    let pushed = ok(&out);
    let want = layout.find_ref("latest").unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(pushed, want, "the index keeps its digest");
    let (_, remote) = skopeo_raw(&env, &skopeo, &index_dest);
    assert_eq!(remote, want);
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], want.as_str());
    assert_eq!(meta["image.name"], index_dest.as_str());
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), want);
    for arch in ARCHES {
        let info = run_ok(skopeo_cmd(&env, &skopeo).current_dir("/").args([
            "inspect",
            "--tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={}", arch.oci),
            &format!("docker://{index_dest}"),
        ]))
        .unwrap();
        let info: Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["Architecture"], arch.oci);
    }

    // One platform of it, as a plain image; the iidfile holds the config digest.
    let image_dest = format!("{}/rbuild/busybox:arm64", reg.host());
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "push",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64",
            "--iidfile",
            iid.to_str().unwrap(),
            &format!("oci-layout://{}:latest", src.display()),
            &image_dest,
        ],
    );
    let pushed = ok(&out);
    // The blobs are already in the repository: nothing is uploaded twice.
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let (manifest, remote) = skopeo_raw(&env, &skopeo, &image_dest);
    assert_eq!(remote, pushed);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        manifest["config"]["digest"].as_str().unwrap()
    );

    // skopeo copies both back out (every digest checked) ...
    let copy = dir.path().join("skopeo-copy");
    run_ok(skopeo_cmd(&env, &skopeo).current_dir(dir.path()).args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{index_dest}"),
        &format!("oci:{}:multi", copy.display()),
    ]))
    .unwrap();
    run_ok(skopeo_cmd(&env, &skopeo).current_dir(dir.path()).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{image_dest}"),
        &format!("oci:{}:arm64", copy.display()),
    ]))
    .unwrap();

    // ... and rbuild pulls the index back and exports it as a layout that umoci unpacks.
    ok(&rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--all-platforms",
            &index_dest,
        ],
    ));
    let exported = dir.path().join("exported");
    for arch in ARCHES {
        let tag = arch.oci;
        let out = rbuild(
            &env,
            dir.path(),
            &[
                "push",
                "--cache-dir",
                cache_s,
                "--platform",
                &format!("linux/{tag}"),
                &index_dest,
                &format!("oci-layout://{}:{tag}", exported.display()),
            ],
        );
        ok(&out);
        let bundle = dir.path().join(format!("bundle-{tag}"));
        run_ok(
            env.user
                .command(&umoci)
                .current_dir(dir.path())
                .args([
                    "unpack",
                    "--rootless",
                    "--image",
                    &format!("{}:{tag}", exported.display()),
                ])
                .arg(&bundle),
        )
        .unwrap();
        assert!(bundle.join("rootfs/bin/busybox").is_file());
    }
    let info = run_ok(
        env.user
            .command(&skopeo)
            .current_dir(dir.path())
            .args(["inspect", &format!("oci:{}:arm64", exported.display())]),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&info).unwrap()["Architecture"],
        "arm64"
    );
}

#[test]
fn registry_push_from_the_store_mounts_blobs_across_repositories() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let (reg, reference) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let digest = ok(&rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--all-platforms",
            &reference,
        ],
    ));
    let dest = format!("{}/elsewhere/busybox:copy", reg.host());
    let out = rbuild(
        &env,
        dir.path(),
        &["push", "--cache-dir", cache_s, &reference, &dest],
    );
    assert_eq!(ok(&out), digest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("mounted").count(), 4, "{stderr}");
    let uploads = stderr
        .lines()
        .filter(|l| l.starts_with("  pushed  ") && !l.contains("manifest") && !l.contains(" as `"));
    assert_eq!(uploads.count(), 0, "no blob is uploaded: {stderr}");
    let (_, remote) = skopeo_raw(&env, &skopeo, &dest);
    assert_eq!(remote, digest);

    // Pushing a reference that was never pulled says how to get it.
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "push",
            "--cache-dir",
            cache_s,
            &format!("{}/never:pulled", reg.host()),
            &dest,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rbuild pull --all-platforms"));
}

#[test]
fn registry_prune_keeps_what_fits_and_removes_the_rest() {
    let env = require!(Env::get());
    let (_reg, reference) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    ok(&rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64",
            &reference,
        ],
    ));
    let before = blob_files(&cache);
    assert_eq!(before.len(), 4, "index, manifest, config, layer");

    // Nothing is unreferenced: a plain prune removes nothing.
    let out = rbuild(&env, dir.path(), &["prune", "--cache-dir", cache_s]);
    assert_eq!(ok(&out), "");
    assert_eq!(blob_files(&cache), before);

    // A limit below the image's size evicts it; the removed digests are printed.
    let out = rbuild(
        &env,
        dir.path(),
        &["prune", "--cache-dir", cache_s, "--keep-storage", "1KB"],
    );
    let mut removed: Vec<String> = ok(&out).lines().map(str::to_owned).collect();
    removed.sort();
    assert_eq!(removed, before);
    assert!(blob_files(&cache).is_empty());
    let bad = rbuild(
        &env,
        dir.path(),
        &["prune", "--cache-dir", cache_s, "--keep-storage", "lots"],
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn registry_pushed_image_runs_under_podman() {
    let env = require!(Env::get());
    let podman = require!(tool("/usr/bin/podman", "podman"));
    // Debian's crun refuses this kind of host's hybrid cgroup layout rootless; runc works.
    require!(tool("/usr/sbin/runc", "runc"));
    require!(rbuild_e2e::registry::available());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let src = user_layout(&env, dir.path());
    let reg = Registry::start().unwrap();
    let dest = format!("{}/rbuild/podman:test", reg.host());
    let pushed = ok(&rbuild(
        &env,
        dir.path(),
        &[
            "push",
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
            &format!("oci-layout://{}:latest", src.display()),
            &dest,
        ],
    ));
    // Podman with its own storage in the test's directory, as the test user.
    let podman_cmd = |args: &[&str]| {
        let mut c = skopeo_cmd(&env, &podman);
        c.current_dir(dir.path())
            .arg("--root")
            .arg(dir.path().join("podman-root"))
            .arg("--runroot")
            .arg(dir.path().join("podman-run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args);
        c
    };
    run_ok(&mut podman_cmd(&[
        "pull",
        "--quiet",
        "--tls-verify=false",
        &dest,
    ]))
    .unwrap();
    let digest = run_ok(&mut podman_cmd(&[
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        &dest,
    ]))
    .unwrap();
    assert_eq!(
        digest.trim(),
        pushed,
        "podman resolved the index rbuild pushed"
    );
    let uname = run_ok(&mut podman_cmd(&[
        "run",
        "--rm",
        "--network",
        "host",
        &dest,
        "uname",
        "-m",
    ]))
    .unwrap();
    assert_eq!(
        uname.trim(),
        std::env::consts::ARCH,
        "podman ran the host's platform"
    );
    let hello = run_ok(&mut podman_cmd(&[
        "run",
        "--rm",
        "--network",
        "host",
        &dest,
        "sh",
        "-c",
        "echo hello from $(cat /etc/passwd | head -c 4)",
    ]))
    .unwrap();
    assert_eq!(hello.trim(), "hello from root");
}

/// A layout beside the busybox copy whose `nested` tag is an index holding the busybox
/// index as its only entry, without a platform (as nested indexes usually are).
fn nested_layout(env: &Env, dir: &Path) -> (rbuild_e2e::oci::Layout, String) {
    let copy = user_layout(env, dir);
    let l = rbuild_e2e::oci::Layout::open(&copy).unwrap();
    let inner = l.find_ref("latest").unwrap();
    let inner_entry = serde_json::json!({
        "mediaType": inner["mediaType"], "digest": inner["digest"], "size": inner["size"],
    });
    let outer = l
        .put_json(
            rbuild_e2e::oci::MEDIA_INDEX,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": rbuild_e2e::oci::MEDIA_INDEX,
                "manifests": [inner_entry],
            }),
        )
        .unwrap();
    let mut tagged = outer.clone();
    tagged["annotations"] = serde_json::json!({ rbuild_e2e::oci::REF_NAME: "nested" });
    let mut manifests = l.index().unwrap()["manifests"].as_array().unwrap().clone();
    manifests.push(tagged);
    l.write_index(&manifests).unwrap();
    (l, outer["digest"].as_str().unwrap().to_owned())
}

#[test]
fn registry_pull_and_push_follow_nested_indexes() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    require!(rbuild_e2e::registry::available());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let (layout, outer) = nested_layout(&env, dir.path());
    let reg = Registry::start().unwrap();
    rbuild_e2e::oci::push(&layout, "nested", &reg.url(), "nested", "v1").unwrap();
    let reference = format!("{}/nested:v1", reg.host());
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();

    // One platform: outer index, inner index, manifest, config, layer.
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64",
            &reference,
        ],
    );
    assert_eq!(ok(&out), outer);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("linux/arm64 sha256:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(blob_files(&cache).len(), 5);

    // Every platform, then a push elsewhere keeps the outer digest; skopeo resolves it.
    ok(&rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--all-platforms",
            &reference,
        ],
    ));
    assert_eq!(blob_files(&cache).len(), 2 + 2 * 3);
    let dest = format!("{}/copied/nested:v1", reg.host());
    assert_eq!(
        ok(&rbuild(
            &env,
            dir.path(),
            &["push", "--cache-dir", cache_s, &reference, &dest]
        )),
        outer
    );
    let (_, remote) = skopeo_raw(&env, &skopeo, &dest);
    assert_eq!(remote, outer);

    // One platform of the nested layout, exported: the arm64 manifest itself.
    let arm = dir.path().join("arm.tar");
    ok(&rbuild(
        &env,
        dir.path(),
        &[
            "push",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64",
            &format!("oci-layout://{}:nested", layout.root().display()),
            &format!("oci-archive:{}", arm.display()),
        ],
    ));
    let info = run_ok(
        env.user
            .command(&skopeo)
            .current_dir(dir.path())
            .args(["inspect", &format!("oci-archive:{}", arm.display())]),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&info).unwrap()["Architecture"],
        "arm64"
    );
}

#[test]
fn registry_push_of_a_one_platform_pull_fetches_the_rest_from_its_origin() {
    let env = require!(Env::get());
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let (reg, reference) = require!(registry_with_busybox());
    let dir = env.user.tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let digest = ok(&rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            cache_s,
            "--platform",
            "linux/arm64",
            &reference,
        ],
    ));
    let dest = format!("{}/partial/busybox:copy", reg.host());
    let out = rbuild(
        &env,
        dir.path(),
        &["push", "--cache-dir", cache_s, &reference, &dest],
    );
    assert_eq!(ok(&out), digest, "the whole index, with its digest");
    let (_, remote) = skopeo_raw(&env, &skopeo, &dest);
    assert_eq!(remote, digest);
    for arch in ARCHES {
        let info = run_ok(skopeo_cmd(&env, &skopeo).current_dir("/").args([
            "inspect",
            "--tls-verify=false",
            &format!("--override-arch={}", arch.oci),
            &format!("docker://{dest}"),
        ]))
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&info).unwrap()["Architecture"],
            arch.oci
        );
    }
}

#[test]
fn registry_pull_of_a_single_platform_image_for_another_platform_warns() {
    let env = require!(Env::get());
    require!(rbuild_e2e::registry::available());
    let layout = require!(base::busybox());
    let reg = Registry::start().unwrap();
    rbuild_e2e::oci::push(&layout, "arm64", &reg.url(), "armonly", "v1").unwrap();
    let dir = env.user.tempdir().unwrap();
    let reference = format!("{}/armonly:v1", reg.host());
    let out = rbuild(
        &env,
        dir.path(),
        &[
            "pull",
            "--cache-dir",
            dir.path().join("c").to_str().unwrap(),
            "--platform",
            "linux/amd64",
            &reference,
        ],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: `{reference}` was pulled for `linux/amd64`, but its config says it is for `linux/arm64`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("base-image-missing-platform"), "{stderr}");
}

//! `rbuild build` end to end, as the unprivileged test user against a real registry:
//! multi-platform images that run on both architectures, instructions in the image
//! config, multi-stage builds, COPY semantics, failures, and outputs.

mod build_support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use build_support::{Workspace, counts, diagnostics, layers, mode, outcomes};
use rbuild_e2e::require;
use rbuild_e2e::user::run_ok;
use serde_json::Value;

#[test]
fn the_demo_builds_for_both_platforms_and_each_image_runs_on_its_architecture() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "hello",
        &[
            (
                "Dockerfile",
                "ARG BASE=busybox:latest\nFROM ${BASE}\nCOPY hello.sh /usr/local/bin/hello\n\
                 RUN chmod 0755 /usr/local/bin/hello && mkdir -p /etc/hello && uname -m > /etc/hello/built-on\n\
                 ENV GREETING=\"hello from rbuild\"\nCMD [\"/usr/local/bin/hello\"]\n",
            ),
            (
                "hello.sh",
                "#!/bin/sh\necho \"$GREETING: running on $(uname -m), built on $(cat /etc/hello/built-on)\"\n",
            ),
        ],
    );
    let image = format!("{}/hello:demo", ws.host());
    let base = format!("BASE={}", ws.busybox);
    let digest = ws.build_ok(&[
        "--platform",
        "linux/amd64,linux/arm64",
        "--build-arg",
        &base,
        "--tag",
        &image,
        "--push",
        ctx.to_str().unwrap(),
    ]);
    assert!(digest.starts_with("sha256:"), "{digest}");

    // An index with one image per platform, as the registry serves it.
    let index = ws.raw(&image);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    for arch in ["amd64", "arm64"] {
        let config = ws.config(&image, arch);
        assert_eq!(config["architecture"], arch);
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["/usr/local/bin/hello"])
        );
    }

    // Run by reference, from a fresh cache: pulled from the registry and run (arm64
    // through qemu), each answering with its own architecture.
    let fresh = ws.dir.path().join("run-cache");
    for (platform, uname) in [("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")] {
        let mut c = ws.rbuild();
        c.args(["run", "--cache-dir"])
            .arg(&fresh)
            .args(["--platform", platform, &image]);
        let out = run_ok(&mut c).unwrap();
        assert_eq!(
            out.trim(),
            format!("hello from rbuild: running on {uname}, built on {uname}")
        );
    }
}

#[test]
fn instructions_land_in_the_image_config() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "config",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\n\
                 LABEL org.example.a=1 \"org.example.b\"=\"two words\"\n\
                 ENV A=1 B=\"x y\"\n\
                 ENV C=$A-$B\n\
                 ARG GREETING=hi\n\
                 RUN echo \"$GREETING $C\" > /greeting\n\
                 WORKDIR /srv\n\
                 WORKDIR app\n\
                 USER 1000:1000\n\
                 EXPOSE 80 53/udp 8000-8001\n\
                 VOLUME /data\n\
                 STOPSIGNAL SIGTERM\n\
                 SHELL [\"/bin/sh\", \"-ec\"]\n\
                 HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q -O- localhost || exit 1\n\
                 ONBUILD RUN echo child\n\
                 ENTRYPOINT [\"/bin/echo\"]\n\
                 CMD hello\n",
                ws.busybox
            ),
        )],
    );
    let image = format!("{}/config:1", ws.host());
    ws.build_ok(&[
        "-t",
        &image,
        "--push",
        "--label",
        "org.example.from-cli=yes",
        ctx.to_str().unwrap(),
    ]);
    let config = ws.config(&image, "amd64");
    let c = &config["config"];
    assert_eq!(c["Labels"]["org.example.a"], "1");
    assert_eq!(c["Labels"]["org.example.b"], "two words");
    assert_eq!(c["Labels"]["org.example.from-cli"], "yes");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A=1") && env.contains(&"B=x y") && env.contains(&"C=1-x y"),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("GREETING=")),
        "ARG is not ENV: {env:?}"
    );
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "1000:1000");
    let ports: Vec<&str> = c["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert!(c["Volumes"].as_object().unwrap().contains_key("/data"));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-ec", "hello"]));
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    let hc = &c["Healthcheck"];
    assert_eq!(
        hc["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q -O- localhost || exit 1"])
    );
    assert_eq!(hc["Interval"], 30_000_000_000u64);
    assert_eq!(hc["Timeout"], 5_000_000_000u64);
    assert_eq!(hc["Retries"], 3);
    // History: one entry per instruction that changes something, layers marked.
    let history = config["history"].as_array().unwrap();
    let run = history
        .iter()
        .find(|h| h["created_by"].as_str().unwrap_or("").starts_with("RUN "))
        .unwrap();
    assert_eq!(run.get("empty_layer"), None, "{run}");
    assert!(
        run["created_by"].as_str().unwrap().contains("GREETING=hi"),
        "build arguments a RUN used are in its history: {run}"
    );
    // The RUN saw the build argument and the environment; WORKDIR made its directories.
    let root = ws.unpack(&image, "amd64");
    assert_eq!(
        fs::read_to_string(root.join("greeting")).unwrap(),
        "hi 1-x y\n"
    );
    assert!(root.join("srv/app").is_dir());

    // A child image runs the ONBUILD trigger first, and does not inherit it.
    let child = ws.context(
        "child",
        &[(
            "Dockerfile",
            &format!("FROM {image}\nRUN echo own > /tmp/own\n"),
        )],
    );
    let child_image = format!("{}/child:1", ws.host());
    let out = ws.build(&["-t", &child_image, "--push", child.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs: String = build_support::events(&out)
        .iter()
        .filter(|e| e["type"] == "step_log")
        .filter_map(|e| e["data"].as_str().map(str::to_owned))
        .collect();
    assert!(logs.contains("child"), "the trigger ran: {logs}");
    assert_eq!(
        ws.config(&child_image, "amd64")["config"].get("OnBuild"),
        None
    );
}

#[test]
fn multi_stage_builds_build_only_what_the_target_needs() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "stages",
        &[(
            "Dockerfile",
            &format!(
                "FROM {b} AS tools\nRUN mkdir -p /out && echo tool > /out/tool && chmod 750 /out/tool && echo x > /out/debug.log\n\
                 FROM {b} AS broken\nRUN exit 7\n\
                 FROM {b} AS final\nCOPY --from=tools /out/tool /usr/bin/\n\
                 COPY --from=0 /out /opt/all/\nRUN cat /usr/bin/tool /opt/all/tool > /both\n\
                 COPY --from=tools --exclude=*.log /out /opt/filtered/\n\
                 FROM final AS extra\nRUN echo extra > /extra\n",
                b = ws.busybox
            ),
        )],
    );
    let image = format!("{}/stages:final", ws.host());
    let out = ws.build(&[
        "--target",
        "final",
        "-t",
        &image,
        "--push",
        ctx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = outcomes(&out);
    assert!(
        !steps
            .iter()
            .any(|(n, _)| n.contains("broken") || n.contains("extra")),
        "only the target's stages run: {steps:?}"
    );
    let root = ws.unpack(&image, "amd64");
    assert_eq!(
        fs::read_to_string(root.join("both")).unwrap(),
        "tool\ntool\n"
    );
    assert_eq!(mode(&root.join("usr/bin/tool")), 0o750);
    assert!(!root.join("extra").exists());
    assert!(root.join("opt/all/debug.log").exists());
    assert!(root.join("opt/filtered/tool").exists());
    assert!(
        !root.join("opt/filtered/debug.log").exists(),
        "--exclude with --from"
    );
    // The tools stage's layers are not in the image: base + 3 COPY + RUN.
    let layout = ws.layout(&image, "amd64");
    assert_eq!(
        build_support::layout_manifest(&layout)["layers"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Building the broken stage fails on its line, with the exit status.
    let out = ws.build(&["--target", "broken", ctx.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failing_step_names_its_line_and_the_cause() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "fail",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo first > /first\n\nRUN echo 'about to fail' && \\\n    ls /nonexistent-dir\n",
                ws.busybox
            ),
        )],
    );
    let diag_file = ws.dir.path().join("diagnostics.json");
    let out = ws.build(&[
        "--diagnostics-file",
        diag_file.to_str().unwrap(),
        "--message-format",
        "github",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("::error"), "GitHub annotation: {stderr}");
    let diags: Vec<Value> = serde_json::from_slice(&fs::read(&diag_file).unwrap()).unwrap();
    let d = diags
        .iter()
        .find(|d| d["severity"] == "error")
        .expect("an error diagnostic");
    assert_eq!(d["id"], "run-failed");
    assert_eq!(d["line"], 4);
    assert_eq!(d["end_line"], 5);
    assert!(
        d["file"].as_str().unwrap().ends_with("fail/Dockerfile"),
        "{d}"
    );
    let evidence = d["evidence"].to_string();
    assert!(
        evidence.contains("nonexistent-dir"),
        "the output tail is evidence: {d}"
    );
    assert!(
        !diagnostics(&out).is_empty(),
        "diagnostics are progress events too"
    );
    let steps = outcomes(&out);
    assert!(
        steps.iter().any(|(n, o)| n.contains("ls /nonexistent-dir")
            || (n.contains("about to fail") && o == "error")),
        "{steps:?}"
    );
}

#[test]
fn copy_follows_buildkit_rules() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "copy",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\n\
                     RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group && mkdir -p /existing && chmod 700 /existing\n\
                     COPY *.txt /texts/\n\
                     COPY one.txt /single\n\
                     COPY one.txt /existing\n\
                     COPY dir /tree\n\
                     COPY dir/ /existing/\n\
                     COPY --chown=app:app --chmod=640 one.txt /owned/file\n\
                     COPY --chown=1234 two.txt /numeric\n\
                     WORKDIR /work\n\
                     COPY one.txt rel/\n\
                     COPY --exclude=*.log dir /filtered/\n\
                     COPY --parents dir/sub/deep.txt /parents/\n\
                     COPY <<EOF /inline.txt\nhello $HOSTNAME\nEOF\n",
                    ws.busybox
                ),
            ),
            ("one.txt", "one"),
            ("two.txt", "two"),
            ("ignored.txt", "secret"),
            ("dir/a", "a"),
            ("dir/skip.log", "log"),
            ("dir/sub/deep.txt", "deep"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let image = format!("{}/copy:1", ws.host());
    let out = ws.build(&["-t", &image, "--push", ctx.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = ws.unpack(&image, "amd64");
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    // Globs into a directory, .dockerignore applied.
    let mut texts: Vec<String> = fs::read_dir(root.join("texts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    texts.sort();
    assert_eq!(texts, ["one.txt", "two.txt"]);
    // A file onto a missing path is that file; onto an existing directory, inside it.
    assert_eq!(read("single"), "one");
    assert_eq!(read("existing/one.txt"), "one");
    // A directory's contents are copied; an existing destination keeps its mode.
    assert_eq!(read("tree/a"), "a");
    assert_eq!(read("tree/sub/deep.txt"), "deep");
    assert_eq!(read("existing/a"), "a");
    assert_eq!(mode(&root.join("existing")), 0o700);
    // Relative destinations follow WORKDIR; --exclude; --parents.
    assert_eq!(read("work/rel/one.txt"), "one");
    assert!(root.join("filtered/a").exists() && !root.join("filtered/skip.log").exists());
    assert_eq!(read("parents/dir/sub/deep.txt"), "deep");
    // Heredoc sources are expanded by the frontend (HOSTNAME is unset: empty).
    assert_eq!(read("inline.txt"), "hello \n");
    assert_eq!(mode(&root.join("owned/file")), 0o640);

    // Owners as the layers record them: --chown by name from the image's /etc/passwd,
    // a number alone is uid and gid; everything else root.
    let layout = ws.layout(&image, "amd64");
    let all: Vec<build_support::TarEntry> = layers(&layout).into_iter().flatten().collect();
    let find = |p: &str| {
        all.iter()
            .rev()
            .find(|e| e.path.trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("{p} not in any layer"))
    };
    let owned = find("owned/file");
    assert_eq!((owned.uid, owned.gid, owned.mode), (1234, 1234, 0o640));
    assert_eq!((find("numeric").uid, find("numeric").gid), (1234, 1234));
    assert_eq!(
        (find("owned").uid, find("owned").gid),
        (1234, 1234),
        "created parents take the owner"
    );
    assert_eq!((find("single").uid, find("single").gid), (0, 0));
    assert!(!all.iter().any(|e| e.path.contains("ignored.txt")));
    // No sandbox mount point ever reaches a layer (the base's own are in layer 0).
    let built: Vec<build_support::TarEntry> =
        layers(&layout).into_iter().skip(1).flatten().collect();
    for stub in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc",
        "sys",
        "dev",
    ] {
        assert!(
            !built.iter().any(|e| e.path.trim_end_matches('/') == stub),
            "{stub} leaked into a layer"
        );
    }
    let _ = fs::metadata(root.join("single")).unwrap().mtime();
}

#[test]
fn copy_errors_name_the_missing_source() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "missing",
        &[
            (
                "Dockerfile",
                &format!("FROM {}\nCOPY nope.txt /x\n", ws.busybox),
            ),
            ("a", "a"),
            ("b", "b"),
        ],
    );
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.txt"), "{err}");
    let d = diagnostics(&out);
    let copy = d
        .iter()
        .find(|d| d["id"] == "copy-failed")
        .expect("a copy-failed diagnostic");
    assert_eq!(copy["line"], 2, "{copy}");

    // An image that does not exist is a registry problem on its FROM line.
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}/no-such-image:1\n", ws.host()),
    )
    .unwrap();
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = diagnostics(&out);
    let pull = d
        .iter()
        .find(|d| d["id"] == "image-pull-failed")
        .expect("an image-pull-failed diagnostic");
    assert_eq!(pull["line"], 1, "{pull}");

    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nCOPY a b /dest\n", ws.busybox),
    )
    .unwrap();
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be a directory and end with a /"),
        "{err}"
    );
}

#[test]
fn outputs_write_archives_layouts_files_and_metadata() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "outputs",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo built > /built && rm /bin/vi\n",
                ws.busybox
            ),
        )],
    );
    let d = ws.dir.path();
    let (oci_tar, oci_dir, docker_tar, local, meta, iid) = (
        d.join("img.tar"),
        d.join("layout"),
        d.join("docker.tar"),
        d.join("rootfs"),
        d.join("meta.json"),
        d.join("iid"),
    );
    let name = format!("{}/outputs:1", ws.host());
    let digest = ws.build_ok(&[
        "-t",
        &name,
        "--output",
        &format!("type=oci,dest={}", oci_tar.display()),
        "--output",
        &format!("type=oci,dest={},tar=false", oci_dir.display()),
        "--output",
        &format!("type=docker,dest={}", docker_tar.display()),
        "--output",
        &format!("type=local,dest={}", local.display()),
        "--metadata-file",
        meta.to_str().unwrap(),
        "--iidfile",
        iid.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let m: Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.digest"], digest);
    assert_eq!(m["containerimage.descriptor"]["digest"], digest);
    assert_eq!(m["image.name"], name);
    let config_digest = m["containerimage.config.digest"].as_str().unwrap();
    assert_eq!(fs::read_to_string(&iid).unwrap(), config_digest);
    // The final file system, owned by the user, the deletion applied.
    assert_eq!(fs::read_to_string(local.join("built")).unwrap(), "built\n");
    assert!(local.join("bin/busybox").is_file() && !local.join("bin/vi").exists());
    assert_eq!(
        fs::metadata(local.join("built")).unwrap().uid(),
        ws.env.user.uid
    );
    // The OCI layout unpacks with umoci; the archives hold what their formats say.
    let root = ws.umoci_unpack(&oci_dir, "1", &d.join("bundle"));
    assert!(root.join("built").is_file() && !root.join("bin/vi").exists());
    let names = |p: &std::path::Path| -> Vec<String> {
        tar::Archive::new(fs::File::open(p).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    };
    assert!(names(&oci_tar).contains(&"index.json".to_owned()));
    assert!(names(&docker_tar).contains(&"manifest.json".to_owned()));
}

#[test]
fn bad_flags_are_usage_errors() {
    let ws = require!(Workspace::new());
    let ctx = ws.context("flags", &[("Dockerfile", "FROM scratch\n")]);
    for args in [
        vec!["--push", ctx.to_str().unwrap()],
        vec!["--build-arg", "=x", ctx.to_str().unwrap()],
        vec!["--output", "type=nope", ctx.to_str().unwrap()],
        vec!["--platform", "linux/", ctx.to_str().unwrap()],
        vec!["--secret", "id=x,src=/nonexistent", ctx.to_str().unwrap()],
        vec!["/nonexistent-context"],
    ] {
        let out = ws.build(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A Dockerfile error is the input's fault.
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY\n").unwrap();
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let _ = counts;
}

#[test]
fn a_damaged_layer_in_the_store_is_never_pushed() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "damaged",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN head -c 300000 /dev/urandom > /noise\n",
                ws.busybox
            ),
        )],
    );
    let meta = ws.dir.path().join("meta.json");
    let name = format!("{}/damaged:1", ws.host());
    ws.build_ok(&[
        "-t",
        &name,
        "--metadata-file",
        meta.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    let m: Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    let blob = |digest: &str| {
        ws.cache
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(
        &fs::read(blob(m["containerimage.digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // One byte of the step's layer flipped, its size unchanged.
    let path = blob(&layer);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    // In 64 KiB chunks (the check runs beside the upload) and in one request.
    for (repo, chunk) in [("damaged-chunked", "65536"), ("damaged-whole", "64m")] {
        let dest = format!("{}/{repo}:1", ws.host());
        if !path.exists() {
            // The first push's check removed the damaged blob; put it back.
            fs::write(&path, &bytes).unwrap();
            ws.give_tree(&path);
        }
        let out = ws
            .rbuild()
            .args(["push", "--cache-dir"])
            .arg(&ws.cache)
            .args([&name, &dest])
            .env("RBUILD_PUSH_CHUNK_SIZE", chunk)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{repo}: the push succeeded:\n{stderr}"
        );
        assert!(
            stderr.contains("does not match its digest") && stderr.contains(&layer),
            "{repo}: {stderr}"
        );
        // The registry kept neither the layer nor the manifest.
        let status = |what: &str| {
            rbuild_e2e::http::agent()
                .head(&format!("{}/v2/{repo}/{what}", ws.registry.url()))
                .call()
                .unwrap()
                .status()
        };
        assert_eq!(status(&format!("blobs/{layer}")), 404, "{repo}");
        assert_eq!(status("manifests/1"), 404, "{repo}");
    }
}

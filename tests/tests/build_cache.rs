//! The build cache, reproducibility, layer correctness (whiteouts, opaque directories)
//! as an independent runtime sees it, and secrets, end to end as the test user.

mod build_support;

use std::fmt::Write as _;
use std::fs;

use build_support::{Workspace, all_blob_bytes, counts, layers, outcomes};
use rbuild_e2e::require;

fn w1(ws: &Workspace) -> std::path::PathBuf {
    ws.context(
        "w1",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nCOPY hello.txt config.json /app/\nCOPY scripts/ /app/scripts/\n\
                     RUN sh /app/scripts/setup.sh\nRUN wc -c /app/hello.txt > /app/hello.size\n\
                     ENV APP_HOME=/app\nWORKDIR /app\nCMD [\"cat\", \"/app/hello.size\"]\n",
                    ws.busybox
                ),
            ),
            ("hello.txt", "hello\n"),
            ("config.json", "{}\n"),
            (
                "scripts/setup.sh",
                "mkdir -p /var/lib/app && echo ok > /var/lib/app/state\n",
            ),
        ],
    )
}

#[test]
fn an_unchanged_rebuild_runs_nothing_and_a_changed_file_reruns_from_its_copy() {
    let ws = require!(Workspace::new());
    let ctx = w1(&ws);
    let c = ctx.to_str().unwrap();
    let first = ws.build(&[c]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let (executed, _) = counts(&first);
    assert_eq!(
        executed,
        5,
        "two COPYs, two RUNs, one WORKDIR: {:?}",
        outcomes(&first)
    );
    let digest = String::from_utf8_lossy(&first.stdout).trim().to_owned();

    // Nothing changed: no step runs, and the image is the same.
    let again = ws.build(&[c]);
    assert!(again.status.success());
    assert_eq!(counts(&again), (0, 5), "{:?}", outcomes(&again));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), digest);

    // A touched file (new mtime, same content) is not a change.
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("scripts/setup.sh"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    assert_eq!(counts(&ws.build(&[c])).0, 0);

    // The second COPY's file changes: the first COPY is cached, everything from the
    // changed one on runs again.
    fs::write(
        ctx.join("scripts/setup.sh"),
        "mkdir -p /var/lib/app && echo changed > /var/lib/app/state\n",
    )
    .unwrap();
    let changed = ws.build(&[c]);
    assert!(changed.status.success());
    let steps = outcomes(&changed);
    let outcome = |prefix: &str| {
        steps.iter().find(|(n, _)| n.contains(prefix)).map_or_else(
            || panic!("no step {prefix}: {steps:?}"),
            |(_, o)| o.as_str(),
        )
    };
    assert_eq!(outcome("COPY hello.txt"), "cached");
    assert_eq!(outcome("COPY scripts/"), "done");
    assert_eq!(outcome("RUN sh /app/scripts/setup.sh"), "done");
    assert_eq!(outcome("RUN wc -c"), "done");
    assert_ne!(String::from_utf8_lossy(&changed.stdout).trim(), digest);

    // --no-cache runs every step.
    let all = ws.build(&["--no-cache", c]);
    assert!(all.status.success());
    assert_eq!(counts(&all), (5, 0));
}

#[test]
fn source_date_epoch_builds_are_identical_across_cache_dirs() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "repro",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {b} AS gen\nRUN mkdir -p /out && echo generated > /out/file && touch -d 2035-01-01 /out/future\n\
                     FROM {b}\nCOPY app.txt a-noise.bin b-log.txt /app/\nCOPY --from=gen /out /out/\n\
                     RUN mkdir /data && echo data > /data/d && rm /bin/vi\nLABEL v=1\n",
                    b = ws.busybox
                ),
            ),
            ("app.txt", "app\n"),
        ],
    );
    // Megabytes of random bytes, then text that changes line by line, in one layer: its
    // gzip blocks go to the compression threads in an order that changes from build to
    // build, and must come out the same anyway.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect();
    std::fs::write(ctx.join("a-noise.bin"), noise).unwrap();
    let mut log = String::new();
    for i in 0..100_000 {
        let _ = writeln!(log, "line {i} of some text");
    }
    std::fs::write(ctx.join("b-log.txt"), log).unwrap();
    ws.give_tree(&ctx);
    let c = ctx.to_str().unwrap();
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let mut digests = Vec::new();
    for n in 0..2 {
        let cache = ws.dir.path().join(format!("cache-{n}"));
        let out = ws.build_with(
            &cache,
            &["--platform", "linux/amd64,linux/arm64", c],
            &epoch,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        digests.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        // Let the clock move between the builds.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(
        digests[0], digests[1],
        "same inputs, same SOURCE_DATE_EPOCH, same index"
    );

    // Times in the layers are clamped, the config says the epoch.
    let image = format!("{}/repro:1", ws.host());
    let cache = ws.dir.path().join("cache-push");
    let out = ws.build_with(&cache, &["-t", &image, "--push", c], &epoch);
    assert!(out.status.success());
    let layout = ws.layout(&image, "amd64");
    for entry in layers(&layout).into_iter().skip(1).flatten() {
        assert!(
            entry.mtime <= 1_700_000_000,
            "{} has mtime {}",
            entry.path,
            entry.mtime
        );
    }
    let config = ws.config(&image, "amd64");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn deleted_files_and_replaced_directories_stay_gone_for_umoci() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "whiteouts",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\n\
                 RUN mkdir -p /d/sub && echo 1 > /d/a && echo 2 > /d/sub/b && echo keep > /keep && echo x > /gone\n\
                 RUN rm /gone /bin/vi && rm -rf /d && mkdir /d && echo new > /d/n\n\
                 RUN ln /keep /keep-link && ln -s /keep /keep-sym\n",
                ws.busybox
            ),
        )],
    );
    let image = format!("{}/whiteouts:1", ws.host());
    ws.build_ok(&["-t", &image, "--push", ctx.to_str().unwrap()]);
    let root = ws.unpack(&image, "amd64");
    assert!(!root.join("gone").exists());
    assert!(
        !root.join("bin/vi").exists(),
        "a base file deleted by a RUN"
    );
    assert!(root.join("bin/busybox").exists());
    assert!(
        !root.join("d/a").exists() && !root.join("d/sub").exists(),
        "opaque directory"
    );
    assert_eq!(fs::read_to_string(root.join("d/n")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(root.join("keep-link")).unwrap(),
        "keep\n"
    );
    assert_eq!(
        fs::read_link(root.join("keep-sym")).unwrap(),
        std::path::Path::new("/keep")
    );
    // The layer of the second RUN carries OCI whiteouts and an opaque marker.
    let layout = ws.layout(&image, "amd64");
    let l = layers(&layout);
    let names: Vec<&str> = l[2].iter().map(|e| e.path.as_str()).collect();
    assert!(names.contains(&".wh.gone"), "{names:?}");
    assert!(names.contains(&"bin/.wh.vi"), "{names:?}");
    assert!(names.contains(&"d/.wh..wh..opq"), "{names:?}");
    let hard = l[3].iter().find(|e| e.path == "keep-link").unwrap();
    assert_eq!(hard.kind, tar::EntryType::Link);
}

#[test]
fn secrets_reach_the_step_but_never_a_layer_or_the_history() {
    let ws = require!(Workspace::new());
    let secret = "s3cr3t-value-7f1d0c2e";
    let ctx = ws.context(
        "secrets",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\n\
                 RUN --mount=type=secret,id=token sha256sum < /run/secrets/token > /file-sum\n\
                 RUN --mount=type=secret,id=token,env=TOKEN,target=/tmp/t printf %s \"$TOKEN\" | sha256sum > /env-sum && test -s /tmp/t\n\
                 RUN --mount=type=secret,id=absent ls /run/secrets/ > /listing || true\n",
                ws.busybox
            ),
        )],
    );
    let file = ws.dir.path().join("token.txt");
    fs::write(&file, secret).unwrap();
    ws.give_tree(&file);
    let image = format!("{}/secrets:1", ws.host());
    let out = ws.build(&[
        "--secret",
        &format!("id=token,src={}", file.display()),
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
    let layout = ws.layout(&image, "amd64");
    for (name, bytes) in all_blob_bytes(&layout) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in blob {name}"
        );
    }
    let root = ws.umoci_unpack(&layout, "x", &ws.dir.path().join("bundle"));
    // The steps saw the secret (as a file and as a variable).
    let want = {
        use sha2::Digest as _;
        format!("{:x}  -\n", sha2::Sha256::digest(secret.as_bytes()))
    };
    assert_eq!(fs::read_to_string(root.join("file-sum")).unwrap(), want);
    assert_eq!(fs::read_to_string(root.join("env-sum")).unwrap(), want);
    assert!(
        !root.join("run/secrets").exists(),
        "no secret mount point in the image"
    );
    // A required secret that was not given fails the build and says how to pass it.
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nRUN --mount=type=secret,id=need,required=true true\n",
            ws.busybox
        ),
    )
    .unwrap();
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret id=need"));
}

#[test]
fn a_registry_cache_warms_a_fresh_runner() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "remote",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {b} AS tool\nRUN echo tool > /tool\n\
                     FROM {b}\nCOPY app.txt /app/\nCOPY --from=tool /tool /usr/bin/tool\n\
                     RUN cat /app/app.txt /usr/bin/tool > /both\nRUN true\n",
                    b = ws.busybox
                ),
            ),
            ("app.txt", "app\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    let cache_ref = format!("{}/cache:remote", ws.host());
    let cache_to = format!("type=registry,ref={cache_ref},mode=max");
    let first = ws.build_with(
        &ws.dir.path().join("runner-1"),
        &["--cache-to", &cache_to, c],
        &[],
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let digest = String::from_utf8_lossy(&first.stdout).trim().to_owned();

    // Another runner with an empty cache directory: every step comes from the registry.
    let second = ws.build_with(
        &ws.dir.path().join("runner-2"),
        &["--cache-from", &format!("type=registry,ref={cache_ref}"), c],
        &[],
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(counts(&second).0, 0, "{:?}", outcomes(&second));
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), digest);

    // A changed file misses from that step on; a missing cache only says so.
    fs::write(ctx.join("app.txt"), "changed\n").unwrap();
    let third = ws.build_with(
        &ws.dir.path().join("runner-3"),
        &[
            "--cache-from",
            &cache_ref,
            "--cache-from",
            &format!("type=registry,ref={}/cache:none", ws.host()),
            c,
        ],
        &[],
    );
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let steps = outcomes(&third);
    let of = |p: &str| {
        steps
            .iter()
            .find(|(n, _)| n.contains(p))
            .map(|(_, o)| o.clone())
    };
    assert_eq!(of("RUN echo tool").as_deref(), Some("cached"), "{steps:?}");
    assert_eq!(of("COPY app.txt").as_deref(), Some("done"), "{steps:?}");
    assert!(String::from_utf8_lossy(&third.stderr).contains("no cache imported from"));
}

#[test]
fn two_builds_at_once_share_a_cache_and_leave_no_run_state() {
    // Both builds' steps take and leave spare run directories in the same `runs/`:
    // neither may take the other's, and when both have ended nothing of them is left.
    let ws = require!(Workspace::new());
    let dockerfile = |tag: &str| {
        let mut d = format!("FROM {}\n", ws.busybox);
        for i in 0..6 {
            let _ = writeln!(d, "RUN true {tag} {i}");
            let _ = writeln!(d, "RUN seq 1 {} > /{tag}-{i}", 100 * (i + 1));
        }
        d
    };
    let contexts: Vec<std::path::PathBuf> = ["a", "b"]
        .iter()
        .map(|t| ws.context(&format!("at-once-{t}"), &[("Dockerfile", &dockerfile(t))]))
        .collect();
    let children: Vec<std::process::Child> = contexts
        .iter()
        .map(|c| {
            ws.rbuild()
                .arg("build")
                .arg("--cache-dir")
                .arg(&ws.cache)
                .args(["--progress", "json"])
                .arg(c)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(counts(&out), (12, 0));
    }
    let runs = ws.cache.join("sandbox/runs");
    let left: Vec<String> = fs::read_dir(&runs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", runs.display());
    // What they recorded is whole: built again, every step is a cache hit.
    for c in &contexts {
        let again = ws.build(&[c.to_str().unwrap()]);
        assert!(again.status.success());
        assert_eq!(counts(&again), (0, 12));
    }
}

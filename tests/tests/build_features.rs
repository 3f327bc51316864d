//! `RUN --mount` (cache, tmpfs, bind from a stage and the context, secret covered in
//! build_cache.rs), `--network`, `ADD` of archives and URLs, `COPY --link`, heredocs,
//! images and named contexts as `--from`, end to end as the unprivileged test user.

mod build_support;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use build_support::{Workspace, layers};
use rbuild_e2e::require;

#[test]
fn run_mounts_are_there_while_the_step_runs_and_gone_from_the_image() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "mounts",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {b} AS src\nRUN mkdir /data && echo from-stage > /data/x\n\
                     FROM {b}\nARG N\n\
                     RUN --mount=type=cache,target=/var/cache/app echo run-$N >> /var/cache/app/log && wc -l < /var/cache/app/log > /count\n\
                     RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/f && test -f /scratch/f && grep -q ' /scratch tmpfs ' /proc/mounts\n\
                     RUN --mount=type=bind,from=src,source=/data,target=/mnt cat /mnt/x > /from-stage\n\
                     RUN --mount=type=bind,source=ctxdir,target=/ctx cat /ctx/file > /from-context && ! touch /ctx/new 2>/dev/null\n\
                     RUN --network=none cat /proc/net/dev | tail -n +3 | wc -l > /interfaces\n",
                    b = ws.busybox
                ),
            ),
            ("ctxdir/file", "from-context\n"),
        ],
    );
    let image = format!("{}/mounts:1", ws.host());
    let c = ctx.to_str().unwrap();
    ws.build_ok(&["--build-arg", "N=1", "-t", &image, "--push", c]);
    let root = ws.unpack(&image, "amd64");
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("count").trim(), "1");
    assert_eq!(read("from-stage"), "from-stage\n");
    assert_eq!(read("from-context"), "from-context\n");
    assert_eq!(read("interfaces").trim(), "1", "--network=none has only lo");
    for gone in ["var/cache/app", "scratch", "mnt", "ctx"] {
        assert!(
            !root.join(gone).exists(),
            "mount point /{gone} is in the image"
        );
    }
    // The cache mount keeps its contents between builds.
    ws.build_ok(&["--build-arg", "N=2", "-t", &image, "--push", c]);
    let root = ws.unpack(&image, "amd64");
    assert_eq!(fs::read_to_string(root.join("count")).unwrap().trim(), "2");
}

#[test]
fn each_run_step_gets_a_user_namespace_of_its_own() {
    let ws = require!(Workspace::new());
    let probe = |n: u32| {
        format!(
            "RUN readlink /proc/self/ns/user > /userns-{n} && cat /proc/self/uid_map > /uid_map-{n} \
             && id -u > /uid-{n} && echo $$ $(cat /proc/1/comm) > /init-{n}\n"
        )
    };
    let ctx = ws.context(
        "userns",
        &[(
            "Dockerfile",
            &format!("FROM {}\n{}{}", ws.busybox, probe(1), probe(2)),
        )],
    );
    let image = format!("{}/userns:1", ws.host());
    ws.build_ok(&["-t", &image, "--push", ctx.to_str().unwrap()]);
    let root = ws.unpack(&image, "amd64");
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let host = fs::read_link("/proc/self/ns/user").unwrap();
    let (one, two) = (read("userns-1"), read("userns-2"));
    assert!(one.starts_with("user:["), "{one}");
    assert_ne!(one, two, "two steps shared a user namespace");
    for ns in [&one, &two] {
        assert_ne!(
            ns.trim(),
            host.to_str().unwrap(),
            "a step ran in the host's"
        );
    }
    for n in 1..=2 {
        assert_eq!(read(&format!("uid-{n}")).trim(), "0");
        // Container ids as the build maps them: 65536 in all, 0 first.
        let map = read(&format!("uid_map-{n}"));
        let rows: Vec<Vec<u64>> = map
            .lines()
            .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows[0][0], 0, "{map}");
        assert_eq!(rows.iter().map(|r| r[2]).sum::<u64>(), 65536, "{map}");
        // The step's shell is PID 2, under the sandbox's own init.
        assert_eq!(read(&format!("init-{n}")).trim(), "2 rbuild-init");
    }
}

#[test]
fn a_step_that_cannot_get_its_user_namespace_says_why() {
    let ws = require!(Workspace::new());
    let ctx = ws.context(
        "userns-limit",
        &[("Dockerfile", &format!("FROM {}\nRUN true\n", ws.busybox))],
    );
    // rbuild as root of a user namespace that allows one more below it: the build's
    // session takes that one, so the step's own cannot be made.
    let out = ws
        .env
        .user
        .command("unshare")
        .current_dir(ws.dir.path())
        .args([
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 1 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
            "sh",
        ])
        .arg(&ws.env.rbuild)
        .arg("build")
        .arg("--cache-dir")
        .arg(ws.dir.path().join("limited-cache"))
        .args(["--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("Dockerfile` line 2"), "{err}");
    assert!(
        err.contains("cannot create the build step's user namespace"),
        "{err}"
    );
    assert!(err.contains("user.max_user_namespaces"), "{err}");
}

/// A static file server on 127.0.0.1 for `ADD URL` (python's http.server).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &std::path::Path) -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Server { child, port });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_unpacks_local_archives_and_fetches_urls_with_checksums() {
    let ws = require!(Workspace::new());
    let ctx = ws.context("add", &[("Dockerfile", "")]);
    // A gzipped tar in the context, with a nested directory and a symlink.
    let tgz = fs::File::create(ctx.join("app.tar.gz")).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        tgz,
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "app/bin/run", &b"hello\n"[..])
        .unwrap();
    let mut l = tar::Header::new_ustar();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    b.append_link(&mut l, "app/current", "bin").unwrap();
    b.into_inner().unwrap().finish().unwrap();
    // A file served over http.
    let www = ws.dir.path().join("www");
    fs::create_dir_all(&www).unwrap();
    fs::File::create(www.join("tool.sh"))
        .unwrap()
        .write_all(b"#!/bin/sh\necho tool\n")
        .unwrap();
    let sum = {
        use sha2::Digest as _;
        format!(
            "sha256:{:x}",
            sha2::Sha256::digest(b"#!/bin/sh\necho tool\n")
        )
    };
    let server = require!(Server::start(&www).ok_or_else(|| rbuild_e2e::Missing::new(
        "python3's http.server could not start",
        "apt-get install python3"
    )));
    let url = format!("http://127.0.0.1:{}/tool.sh", server.port);
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\nADD app.tar.gz /opt/\nADD --checksum={sum} {url} /usr/local/bin/\nCOPY app.tar.gz /kept/\n",
            ws.busybox
        ),
    )
    .unwrap();
    ws.give_tree(&ctx);
    let image = format!("{}/add:1", ws.host());
    ws.build_ok(&["-t", &image, "--push", ctx.to_str().unwrap()]);
    let root = ws.unpack(&image, "amd64");
    assert_eq!(
        fs::read_to_string(root.join("opt/app/bin/run")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_link(root.join("opt/app/current")).unwrap(),
        std::path::Path::new("bin")
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/local/bin/tool.sh")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        build_support::mode(&root.join("usr/local/bin/tool.sh")),
        0o600
    );
    assert!(root.join("kept/app.tar.gz").is_file(), "COPY never unpacks");
    let layout = ws.layout(&image, "amd64");
    let run = layers(&layout)
        .into_iter()
        .flatten()
        .find(|e| e.path == "opt/app/bin/run")
        .unwrap();
    assert_eq!(
        (run.uid, run.gid, run.mode),
        (1000, 1000, 0o750),
        "archive owners are kept"
    );

    // A wrong checksum fails the build and names both.
    let bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nADD --checksum={bad} {url} /x\n", ws.busybox),
    )
    .unwrap();
    let out = ws.build(&[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(bad) && err.contains(&sum), "{err}");
}

#[test]
fn links_heredocs_images_and_named_contexts() {
    let ws = require!(Workspace::new());
    let extra = ws.context("extra", &[("lib/data.txt", "named context\n")]);
    let ctx = ws.context(
        "misc",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {b}\n\
                     COPY --link linked.txt /linked/\n\
                     RUN <<EOF\nset -e\necho one > /heredoc\necho two >> /heredoc\nEOF\n\
                     RUN <<EOF\n#!/bin/sh\necho script > /script-out\nEOF\n\
                     RUN cat <<A > /cat-out\ninline\nA\n\
                     COPY --from={b} /bin/busybox /from-image/busybox\n\
                     COPY --from=extra lib/ /from-named/\n",
                    b = ws.busybox
                ),
            ),
            ("linked.txt", "linked\n"),
        ],
    );
    let image = format!("{}/misc:1", ws.host());
    ws.build_ok(&[
        "--build-context",
        &format!("extra={}", extra.display()),
        "-t",
        &image,
        "--push",
        ctx.to_str().unwrap(),
    ]);
    let root = ws.unpack(&image, "amd64");
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("linked/linked.txt"), "linked\n");
    assert_eq!(read("heredoc"), "one\ntwo\n");
    assert_eq!(read("script-out"), "script\n");
    assert_eq!(read("cat-out"), "inline\n");
    assert_eq!(read("from-named/data.txt"), "named context\n");
    assert!(root.join("from-image/busybox").is_file());
    // COPY --link's layer holds only what it copied.
    let layout = ws.layout(&image, "amd64");
    let l = layers(&layout);
    let names: Vec<&str> = l[1].iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["linked/", "linked/linked.txt"]);
}

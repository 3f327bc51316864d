//! `rbuild run` end to end, as the unprivileged test user: what a step sees inside its
//! sandbox (root, the 65536-id mapping, its own PID 1, hostname and network), what its
//! files are on disk, and that nothing outlives it (processes, listeners, mounts, state).

mod sandbox_support;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_e2e::gate::Missing;
use rbuild_e2e::require;
use rbuild_e2e::user::current_uid;
use sandbox_support::{Sandboxed, find, show};

#[test]
fn step_is_root_with_a_65536_mapping_its_own_pid_1_and_hostname() {
    let s = require!(Sandboxed::new());
    let out = s.run_ok(&[
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo pid=$$; cat /proc/1/comm; hostname; cat /etc/hostname; grep -c . /proc/self/mountinfo >/dev/null && echo mounts-ok",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0..2], ["0", "0"], "{out}");
    let user = s.env.user;
    let rows = |text: &[&str]| -> Vec<Vec<u32>> {
        text.iter()
            .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
            .collect()
    };
    assert_eq!(
        rows(&lines[2..6]),
        [
            vec![0, user.uid, 1],
            vec![1, user.subuid.start, 65535],
            vec![0, user.gid, 1],
            vec![1, user.subgid.start, 65535],
        ],
        "{out}"
    );
    // The command is PID 2; PID 1 is the sandbox's init, not the host's.
    assert_eq!(lines[6], "pid=2", "{out}");
    assert_eq!(lines[7], "rbuild-init", "{out}");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(lines[8], "rbuild");
    assert_ne!(lines[8], host.trim());
    assert_eq!(lines[9], "rbuild");
    s.assert_nothing_left();

    let out = s.run_ok(&["--hostname", "job-42", &s.image("latest"), "--", "hostname"]);
    assert_eq!(out.trim(), "job-42");
}

/// `readlink /proc/self/ns/<kind>` of this test process.
fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("namespaces of this process are readable")
        .display()
        .to_string()
}

#[test]
fn every_namespace_is_fresh_but_the_network_unless_asked() {
    let s = require!(Sandboxed::new());
    let kinds = ["user", "mnt", "pid", "ipc", "uts", "net"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    for (network, net_shared) in [("host", true), ("none", false)] {
        let out = s.run_ok(&[
            "--network",
            network,
            &s.image("latest"),
            "--",
            "sh",
            "-c",
            &script,
        ]);
        let inside: Vec<&str> = out.lines().collect();
        assert_eq!(inside.len(), kinds.len(), "{out}");
        for (kind, ns) in kinds.iter().zip(&inside) {
            let shared = *ns == host_ns(kind);
            let expected = *kind == "net" && net_shared;
            assert_eq!(
                shared, expected,
                "{kind} namespace with --network {network}: {ns}"
            );
        }
    }
    s.assert_nothing_left();
}

/// Interface names in a `/proc/net/dev` table.
fn interfaces(dev: &str) -> Vec<String> {
    dev.lines()
        .skip(2)
        .filter(|l| l.contains(':'))
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let s = require!(Sandboxed::new());
    let out = s.run_ok(&[
        "--network",
        "none",
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "cat /proc/net/dev; echo flags=$(cat /sys/class/net/lo/flags); ls /sys/class/net",
    ]);
    assert_eq!(interfaces(&out), ["lo"], "{out}");
    let flags = out.lines().find_map(|l| l.strip_prefix("flags=")).unwrap();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {flags:#x}");
    // The default shares the host's network, as `docker build` does.
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    let out = s.run_ok(&[&s.image("latest"), "--", "cat", "/proc/net/dev"]);
    let mut inside = interfaces(&out);
    let mut outside = interfaces(&host);
    inside.sort();
    outside.sort();
    assert_eq!(inside, outside);
    s.assert_nothing_left();
}

#[test]
fn files_created_as_uid_1000_are_the_mapped_subordinate_uid_on_disk() {
    let s = require!(Sandboxed::new());
    let vol = s.dir.path().join("vol");
    fs::create_dir(&vol).unwrap();
    fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
    s.env.user.give(&vol).unwrap();
    let out = s.run_ok(&[
        "--user",
        "1000:1000",
        "--volume",
        &format!("{}:/out", vol.display()),
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "id -u; touch /out/by-1000; ls -ln /out",
    ]);
    assert_eq!(out.lines().next(), Some("1000"), "{out}");
    let meta = fs::metadata(vol.join("by-1000")).unwrap();
    let user = s.env.user;
    assert_eq!(
        meta.uid(),
        user.subuid.start + 999,
        "uid 1000 inside is subuid start + 999"
    );
    assert_eq!(meta.gid(), user.subgid.start + 999);
    // Container root is the user itself.
    s.run_ok(&[
        "--volume",
        &format!("{}:/out", vol.display()),
        &s.image("latest"),
        "--",
        "touch",
        "/out/by-root",
    ]);
    assert_eq!(fs::metadata(vol.join("by-root")).unwrap().uid(), user.uid);
    // Read-only volumes stay read-only.
    let out = s.run(&[
        "--volume",
        &format!("{}:/out:ro", vol.display()),
        &s.image("latest"),
        "--",
        "touch",
        "/out/nope",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!vol.join("nope").exists());
    s.assert_nothing_left();
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("loopback has free ports")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

#[test]
fn leaked_sleep_and_listener_are_killed_reported_and_the_port_is_free() {
    let s = require!(Sandboxed::new());
    let port = free_port();
    let hex = format!("{port:04X}");
    let diags_path = s.diagnostics_path("leak");
    // Start a sleeper and a TCP listener in the background, wait until the listener is
    // really listening, and end the step.
    let script = format!(
        "sleep 1000 & nc -l -p {port} & i=0; while [ $i -lt 100 ]; do grep -q ':{hex} [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 && break; sleep 0.1; i=$((i+1)); done; echo listening=$i"
    );
    let t0 = Instant::now();
    let out = s.run(&[
        "--diagnostics-file",
        diags_path.to_str().unwrap(),
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening=100"),
        "the listener never listened: {stdout}"
    );
    assert!(
        took < Duration::from_secs(30),
        "the step took {took:?} (background processes held it?)"
    );

    let diags = Sandboxed::diagnostics(&diags_path);
    let leak = find(&diags, "no-process-sandbox-leaked-process");
    assert_eq!(leak["severity"], "warning");
    let evidence: Vec<String> = leak["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(
        evidence.iter().any(|e| e.contains("`sleep 1000`")),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.contains(&format!("nc -l -p {port}")) && e.contains(&format!(":{port}"))),
        "the listener and its port are named: {evidence:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning[no-process-sandbox-leaked-process]"),
        "{stderr}"
    );

    // The port is free again: anyone can bind it.
    TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("port {port} still bound: {e}"));
    let _ = TcpListener::bind(("::", port))
        .map_err(|e| assert_ne!(e.kind(), std::io::ErrorKind::AddrInUse));
    s.assert_nothing_left();
}

#[test]
fn timeout_kills_the_whole_sandbox_and_says_what_ran() {
    let s = require!(Sandboxed::new());
    let diags_path = s.diagnostics_path("timeout");
    let t0 = Instant::now();
    let out = s.run(&[
        "--timeout",
        "2s",
        "--diagnostics-file",
        diags_path.to_str().unwrap(),
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "sleep 1000 & sleep 999",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out after 2s"), "{stderr}");
    let diags = Sandboxed::diagnostics(&diags_path);
    let t = find(&diags, "step-timed-out");
    let ev = t["evidence"].to_string();
    assert!(
        ev.contains("sleep 1000") && ev.contains("sleep 999"),
        "{ev}"
    );
    s.assert_nothing_left();
}

#[test]
fn failing_commands_exit_1_and_name_the_cause() {
    let s = require!(Sandboxed::new());
    let out = s.run(&[&s.image("latest"), "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the command exited with status 3"));

    let out = s.run(&[&s.image("latest"), "--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`no-such-program` was not found in `PATH`"),
        "{stderr}"
    );

    let out = s.run(&["--user", "ghost", &s.image("latest"), "--", "id"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("user `ghost` is not in the image's `/etc/passwd`")
    );

    let out = s.run(&[&s.image("no-such-tag"), "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // A registry reference is pulled; nothing listens on port 9 (discard): a registry
    // problem, exit 4.
    let out = s.run(&["127.0.0.1:9/busybox:latest", "--", "true"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    s.assert_nothing_left();
}

#[test]
fn users_groups_env_and_workdir_come_from_the_image_and_flags() {
    let s = require!(Sandboxed::new());
    let out = s.run_ok(&[
        "--user",
        "nobody",
        "--workdir",
        "/srv/work",
        "--env",
        "GREETING=hello",
        &s.image("latest"),
        "--",
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $GREETING; echo $HOME; echo $PATH; ulimit -n; umask; grep NoNewPrivs /proc/self/status",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0..6],
        [
            "65534",
            "65534",
            "/srv/work",
            "hello",
            "/nonexistent",
            rbuild_e2e::base::IMAGE_PATH
        ],
        "{out}"
    );
    // The soft open-files limit is raised to the hard limit.
    let hard = fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .unwrap();
    assert_eq!(lines[6], hard, "{out}");
    assert_eq!(lines[7], "0022");
    assert_eq!(
        lines[8].split_whitespace().nth(1),
        Some("0"),
        "setuid must work as the image expects"
    );
    s.assert_nothing_left();
}

#[test]
fn the_command_gets_only_stdio_whatever_rbuild_inherited() {
    let s = require!(Sandboxed::new());
    // Descriptor 9 is open (without close-on-exec) in the process that runs rbuild.
    let out = s
        .env
        .user
        .command("sh")
        .current_dir(s.dir.path())
        .env("RBUILD_E2E_MARK", &s.mark)
        .arg("-c")
        .arg(format!(
            "exec 9</etc/hostname; exec '{}' run --cache-dir '{}' --env RBUILD_E2E_MARK '{}' -- ls /proc/self/fd",
            s.env.rbuild.display(),
            s.cache.display(),
            s.image("latest")
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // 0-2, plus the descriptor `ls` opens to read the directory.
    let fds: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fds, [0, 1, 2, 3], "{}", show(&out));
    s.assert_nothing_left();
}

#[test]
fn sigterm_reaches_the_command_and_the_sandbox_still_comes_down() {
    let s = require!(Sandboxed::new());
    let mut child = s
        .run_cmd()
        .args([
            &s.image("latest"),
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo ready; sleep 1000 & wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let pid = send_term(child.id());
    let t0 = Instant::now();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(rest.contains("got-term"), "{rest} ({pid})");
    assert!(status.success(), "{status}");
    s.assert_nothing_left();
}

/// Sends SIGTERM to `pid` with the `kill` program (the tests crate has no `nix`).
fn send_term(pid: u32) -> u32 {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("`kill` runs");
    assert!(ok.success());
    pid
}

#[test]
fn copy_fallback_behaves_like_overlay_and_warns() {
    let s = require!(Sandboxed::new());
    let diags_path = s.diagnostics_path("copy");
    let out = s
        .run_cmd()
        .env("RBUILD_ROOTFS", "copy")
        .args([
            "--diagnostics-file",
            diags_path.to_str().unwrap(),
            &s.image("latest"),
            "--",
            "sh",
            "-c",
            "head -1 /etc/passwd; touch /new && ls /new; readlink /bin/sh; stat -c %a /tmp",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            "root:x:0:0:root:/root:/bin/sh",
            "/new",
            "/bin/busybox",
            "1777"
        ]
    );
    let diags = Sandboxed::diagnostics(&diags_path);
    assert_eq!(
        find(&diags, "overlay-unavailable-slow-fallback")["severity"],
        "warning"
    );
    s.assert_nothing_left();
}

#[test]
fn nested_rbuild_as_root_of_a_user_namespace_maps_within_its_range() {
    // A CI job sandbox: rbuild runs as root of a user namespace that maps the test user's
    // full range; the nested sandbox maps the same 65536 ids again.
    let s = require!(Sandboxed::new());
    let vol = s.dir.path().join("nested-vol");
    fs::create_dir(&vol).unwrap();
    fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
    s.env.user.give(&vol).unwrap();
    let mut cmd = s.env.user.command("unshare");
    cmd.current_dir(s.dir.path())
        .env("RBUILD_E2E_MARK", &s.mark)
        .args(["--user", "--map-auto", "--map-root-user"])
        .arg(&s.env.rbuild)
        .arg("run")
        .arg("--cache-dir")
        .arg(s.cache.join("nested"))
        .arg("--volume")
        .arg(format!("{}:/out", vol.display()))
        .args([
            &s.image("latest"),
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; touch /out/by-root; chown 1000:1000 /out/by-root && echo chowned",
        ]);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let map: Vec<Vec<u32>> = stdout
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    // The same ids again, split as the enclosing namespace's map is.
    assert_eq!(map, [vec![0, 0, 1], vec![1, 1, 65535]], "{stdout}");
    assert!(stdout.contains("chowned"), "{stdout}");
    // uid 1000 of the nested sandbox is uid 1000 of the outer one: subuid start + 999.
    assert_eq!(
        fs::metadata(vol.join("by-root")).unwrap().uid(),
        s.env.user.subuid.start + 999
    );
    s.assert_nothing_left();
}

#[test]
fn real_root_still_runs_steps_in_a_subordinate_range() {
    // rbuild started as real root (a CI container) never gives a step host root.
    if current_uid() != 0 {
        require!(Err::<(), _>(Missing::new(
            "this test needs the tests to run as root",
            "run it as root (CI does)"
        )));
    }
    let s = require!(Sandboxed::new());
    let vol = s.dir.path().join("root-vol");
    fs::create_dir(&vol).unwrap();
    fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
    let cache = &s.cache;
    let out = Command::new(&s.env.rbuild)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RBUILD_E2E_MARK", &s.mark)
        .current_dir(s.dir.path())
        .args(["run", "--env", "RBUILD_E2E_MARK", "--cache-dir"])
        .arg(cache)
        .arg("--volume")
        .arg(format!("{}:/out", vol.display()))
        .args([
            &s.image("latest"),
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; touch /out/f",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let map: Vec<u32> = stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(map[0], 0);
    assert_ne!(map[1], 0, "container root must not be host root: {stdout}");
    assert_eq!(map[2], 65536);
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    let expected =
        rbuild_e2e::user::find_range(&subuid, "root", 0).map_or(2_000_000_000, |r| r.start);
    assert_eq!(map[1], expected, "{stdout}");
    assert_eq!(fs::metadata(vol.join("f")).unwrap().uid(), expected);
    s.assert_nothing_left();
}

#[test]
fn without_a_subordinate_range_only_root_is_mapped_and_rbuild_says_what_breaks() {
    // `nobody` has no range in /etc/subuid; only root can run a command as it.
    if current_uid() != 0 {
        require!(Err::<(), _>(Missing::new(
            "this test needs the tests to run as root (to run rbuild as `nobody`)",
            "run it as root (CI does)"
        )));
    }
    let s = require!(Sandboxed::new());
    if fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("nobody:") || l.starts_with("65534:"))
    {
        require!(Err::<(), _>(Missing::new(
            "`nobody` has a subordinate range here",
            "remove it from /etc/subuid"
        )));
    }
    s.add_image(
        "owned",
        &[sandbox_support::Tar::default()
            .file_owned("srv/by-1000", b"data", 1000, 1000)
            .finish()],
    );
    let work = s.dir.path().join("nobody");
    for d in [&work, &s.cache] {
        fs::create_dir(d).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let diags_path = work.join("d.json");
    let run = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        Command::new(&s.env.rbuild)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RBUILD_E2E_MARK", &s.mark)
            .uid(65534)
            .gid(65534)
            .current_dir(&work)
            .args(["run", "--env", "RBUILD_E2E_MARK", "--cache-dir"])
            .arg(&s.cache)
            .arg("--diagnostics-file")
            .arg(&diags_path)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        &s.image("owned"),
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; ls -n /srv/by-1000",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0");
    let map: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(map, [0, 65534, 1], "{stdout}");
    // The file owned by 1000 in the image belongs to root here.
    assert!(lines[2].split_whitespace().nth(2) == Some("0"), "{stdout}");
    let diags = Sandboxed::diagnostics(&diags_path);
    let ids: Vec<&str> = diags.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["subid-range-too-small", "subid-range-too-small"],
        "{diags:?}"
    );
    let messages = serde_json::to_string(&diags).unwrap();
    assert!(
        messages.contains("owned by other ids") && messages.contains("/srv/by-1000"),
        "{messages}"
    );
    // Another user cannot be switched to.
    let out = run(&["--user", "1000", &s.image("latest"), "--", "id"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only container ids 0-0 are mapped"),
        "{}",
        show(&out)
    );
    s.assert_nothing_left();
}

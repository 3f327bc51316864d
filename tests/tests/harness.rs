//! The harness's own tests: the registry is real and loopback-only, the busybox fixtures
//! are real multi-platform images an independent client accepts, and commands run as an
//! unprivileged user with no capabilities.

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rbuild_e2e::base::{self, ARCHES};
use rbuild_e2e::user::run_ok;
use rbuild_e2e::{Env, Registry, TestUser, registry_with_busybox, require, tool, userns};
use serde_json::Value;

/// Inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the registry's fd table is readable by its parent's user")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `(local address as hex, inode)` of every listening TCP socket in `/proc/<pid>/net/<file>`.
fn listeners(pid: u32, file: &str) -> Vec<(String, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode is field 9; st 0A = LISTEN
            (f.len() > 9 && f[3] == "0A").then(|| (f[1].to_owned(), f[9].parse().unwrap_or(0)))
        })
        .collect()
}

/// Non-loopback IPv4 addresses of this host.
fn host_addresses() -> Vec<Ipv4Addr> {
    let out = Command::new("hostname").arg("-I").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

#[test]
fn registry_answers_v2_on_loopback_and_listens_nowhere_else() {
    require!(rbuild_e2e::registry::available());
    let reg = Registry::start().unwrap();
    assert!(reg.addr().ip().is_loopback());

    let resp = rbuild_e2e::http::agent()
        .get(&format!("{}/v2/", reg.url()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("registry/2.0")
    );

    // Every listening socket the registry owns is 127.0.0.1:PORT; none on IPv6 or any.
    let own = socket_inodes(reg.pid());
    let v4: Vec<String> = listeners(reg.pid(), "tcp")
        .into_iter()
        .filter(|(_, inode)| own.contains(inode))
        .map(|(addr, _)| addr)
        .collect();
    let expected = format!("0100007F:{:04X}", reg.addr().port());
    assert_eq!(v4, [expected], "registry listening sockets (hex addr:port)");
    let v6: Vec<(String, u64)> = listeners(reg.pid(), "tcp6")
        .into_iter()
        .filter(|(_, inode)| own.contains(inode))
        .collect();
    assert!(v6.is_empty(), "registry listens on IPv6: {v6:?}");

    for ip in host_addresses() {
        let addr = SocketAddr::from((ip, reg.addr().port()));
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
            "registry reachable on {addr}"
        );
    }
}

#[test]
fn registry_leaves_no_process_or_port_behind() {
    require!(rbuild_e2e::registry::available());
    let reg = Registry::start().unwrap();
    let (pid, addr) = (reg.pid(), reg.addr());
    let dir = reg.dir().to_path_buf();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(reg);
    // Killed and reaped: the pid is gone (not a zombie), the port refuses, the storage is removed.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry pid {pid} still exists after drop"
    );
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
    assert!(
        !dir.exists(),
        "registry directory {} left behind",
        dir.display()
    );
}

#[test]
fn busybox_index_is_pullable_by_skopeo_for_both_platforms() {
    let skopeo = require!(tool("/usr/bin/skopeo", "skopeo"));
    let user = require!(TestUser::get());
    let (_reg, reference) = require!(registry_with_busybox());

    let raw = run_ok(user.command(&skopeo).current_dir("/").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .unwrap();
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<(String, String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (s(&p["os"]), s(&p["architecture"]), s(&p["variant"]))
        })
        .collect();
    assert_eq!(
        platforms,
        [
            ("linux".into(), "amd64".into(), String::new()),
            ("linux".into(), "arm64".into(), "v8".into())
        ]
    );

    for arch in ARCHES {
        let out = run_ok(user.command(&skopeo).current_dir("/").args([
            "inspect",
            "--tls-verify=false",
            "--override-os=linux",
            &format!("--override-arch={}", arch.oci),
            &format!("docker://{reference}"),
        ]))
        .unwrap();
        let info: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(info["Architecture"], arch.oci);
        assert_eq!(info["Os"], "linux");
        assert_eq!(info["Layers"].as_array().map(Vec::len), Some(1));
    }

    // A full copy fetches every blob and checks every digest.
    let dir = user.tempdir().unwrap();
    let dest = dir.path().join("copy");
    run_ok(user.command(&skopeo).current_dir(dir.path()).args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:latest", dest.display()),
    ]))
    .unwrap();
    assert!(dest.join("index.json").is_file());
}

#[test]
fn busybox_layout_unpacks_and_answers_with_its_own_architecture() {
    let umoci = require!(tool("/usr/bin/umoci", "umoci"));
    let qemu = require!(tool("/usr/bin/qemu-aarch64-static", "qemu-user-static"));
    let user = require!(TestUser::get());
    let layout = require!(base::busybox());
    let dir = user.tempdir().unwrap();
    let copy = dir.path().join("busybox");
    run_ok(Command::new("cp").arg("-r").arg(layout.root()).arg(&copy)).unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(&copy),
    )
    .unwrap();

    for arch in ARCHES {
        let bundle = dir.path().join(format!("bundle-{}", arch.oci));
        run_ok(
            user.command(&umoci)
                .current_dir(dir.path())
                .args([
                    "unpack",
                    "--rootless",
                    "--image",
                    &format!("{}:{}", copy.display(), arch.oci),
                ])
                .arg(&bundle),
        )
        .unwrap();
        let busybox = bundle.join("rootfs/bin/busybox");
        let mut cmd = match arch.qemu {
            Some(_) => {
                let mut c = user.command(&qemu);
                c.arg(&busybox);
                c
            }
            None => user.command(&busybox),
        };
        let uname = run_ok(cmd.current_dir(dir.path()).args(["uname", "-m"])).unwrap();
        assert_eq!(uname.trim(), arch.uname);
        let sh = fs::read_link(bundle.join("rootfs/bin/sh")).unwrap();
        assert_eq!(sh, Path::new("/bin/busybox"));
        let passwd = fs::read_to_string(bundle.join("rootfs/etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:"));
    }
}

#[test]
fn commands_run_as_the_test_user_with_no_capabilities() {
    let user = require!(TestUser::get());
    let status = run_ok(
        user.command("cat")
            .arg("/proc/self/status")
            .current_dir("/"),
    )
    .unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| panic!("no {name} in /proc/self/status"), str::trim)
            .to_owned()
    };
    let uids: Vec<u32> = field("Uid:")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, [user.uid; 4], "real, effective, saved and fs uid");
    assert_ne!(user.uid, 0);
    let gids: Vec<u32> = field("Gid:")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(!gids.contains(&0), "gids {gids:?}");
    assert!(!field("Groups:").split_whitespace().any(|g| g == "0"));
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("CapAmb:"), "0000000000000000");
    // newuidmap is setuid; no_new_privs would break it.
    assert_eq!(field("NoNewPrivs:"), "0");
}

#[test]
fn test_user_maps_a_full_65536_id_range() {
    let user = require!(TestUser::get());
    require!(tool("/usr/bin/newuidmap", "uidmap"));
    require!(userns(user));
    let out = run_ok(user.command("unshare").current_dir("/").args([
        "--user",
        "--map-auto",
        "--map-root-user",
        "cat",
        "/proc/self/uid_map",
        "/proc/self/gid_map",
    ]))
    .unwrap();
    let rows: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec![0, user.uid, 1],
            vec![1, user.subuid.start, 65535],
            vec![0, user.gid, 1],
            vec![1, user.subgid.start, 65535],
        ]
    );
}

#[test]
fn rbuild_binary_runs_as_the_test_user() {
    let env = require!(Env::get());
    let version = run_ok(env.rbuild().arg("--version").current_dir("/")).unwrap();
    assert_eq!(
        version.trim(),
        format!("rbuild {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run_ok(env.rbuild().arg("--help").current_dir("/")).unwrap();
    for sub in ["build", "run", "check", "doctor", "explain"] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "`{sub}` missing from --help:\n{help}"
        );
    }
    // A usage error exits 2, as DESIGN.md promises.
    let out = env
        .rbuild()
        .args(["build", "--no-such-flag"])
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

//! Known failure causes provoked for real: each test runs the real `rbuild build` as an
//! unprivileged user against a real registry (or a fake one where a real registry will
//! not misbehave on demand), makes one catalog cause happen, and checks what a user sees:
//! the diagnostic id and severity, the Dockerfile line it is placed on, and the rendered
//! annotation (`--message-format github` workflow commands on stderr, the
//! `--diagnostics-file` JSON and the `--codequality-file` report).
//!
//! Two causes need a change a user cannot make to the host (no qemu registration, a
//! full file system): those tests run `rbuild` as the test user inside a mount namespace
//! the test makes as root, so nothing outside the test sees the change; they are skipped
//! (and fail in CI) when the tests do not run as root.
//!
//! The last test measures false positives: the catalog's signatures run over the logs of
//! successful builds and must match nothing.

// Helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "build_support/mod.rs"]
mod build_support;
#[path = "sandbox_support/mod.rs"]
mod sandbox_support;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use build_support::Workspace;
use rbuild::diagnose::signatures;
use rbuild_e2e::auth::{self, TEST_HOST};
use rbuild_e2e::fake_registry::{Content, FakeRegistry, Reply};
use rbuild_e2e::gate::Missing;
use rbuild_e2e::plain_user::PlainUser;
use rbuild_e2e::registry::Setup;
use rbuild_e2e::user::{current_uid, run_ok};
use rbuild_e2e::{Registry, require, tool};
use sandbox_support::{Sandboxed, Tar, show};
use serde_json::Value;

/// What one provoked build left: its output, the diagnostics file, the Code Quality
/// report and the workflow commands it printed.
struct Provoked {
    out: Output,
    diagnostics: Vec<Value>,
    quality: Vec<Value>,
    /// Lines of stderr that are workflow commands (`::...`).
    github: Vec<String>,
}

/// The reporting flags every provocation passes: GitHub workflow commands, both files.
fn report_args(dir: &Path) -> Vec<OsString> {
    vec![
        "--progress".into(),
        "plain".into(),
        "--message-format".into(),
        "github".into(),
        "--diagnostics-file".into(),
        dir.join("diagnostics.json").into(),
        "--codequality-file".into(),
        dir.join("gl-code-quality-report.json").into(),
    ]
}

/// Runs `cmd` (an `rbuild build` with [`report_args`] for `dir`) and reads its reports.
fn provoke(mut cmd: Command, dir: &Path) -> Provoked {
    let out = cmd.output().expect("rbuild starts");
    let read = |name: &str| -> Vec<Value> {
        let path = dir.join(name);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no `{}` ({e}):\n{}", path.display(), show(&out)));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
    };
    let diagnostics = read("diagnostics.json");
    let quality = read("gl-code-quality-report.json");
    let github = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("::"))
        .map(str::to_owned)
        .collect();
    Provoked {
        out,
        diagnostics,
        quality,
        github,
    }
}

impl Provoked {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// The one diagnostic `id`, checked everywhere it is rendered: severity, file and
    /// line in the JSON, the workflow command (`::LEVEL title=ID,file=F,line=N,endLine=M::`
    /// with the message after it), and the Code Quality issue (`check_name`, path,
    /// lines, severity). `line` `None` means a diagnostic without a place.
    fn expect(&self, id: &str, severity: &str, line: Option<u64>) -> &Value {
        let all: Vec<&Value> = self.diagnostics.iter().filter(|d| d["id"] == id).collect();
        assert_eq!(
            all.len(),
            1,
            "exactly one `{id}` diagnostic expected:\n{}\n{}",
            serde_json::to_string_pretty(&self.diagnostics).unwrap(),
            self.stderr()
        );
        let d = all[0];
        assert_eq!(d["severity"], severity, "{d}");
        assert_eq!(d["line"].as_u64(), line, "the line of `{id}`: {d}");
        assert!(
            d["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "`{id}` says how to fix it: {d}"
        );
        assert!(
            d["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("docs/failures/{id}.md"))),
            "`{id}` links its page: {d}"
        );

        let prefix = match (line, d["file"].as_str()) {
            (Some(n), Some(file)) => {
                let end = d["end_line"].as_u64().unwrap_or(n);
                format!(
                    "::{severity} title={id},file={},line={n},endLine={end}::",
                    file.replace('%', "%25")
                        .replace('\r', "%0D")
                        .replace('\n', "%0A")
                        .replace(':', "%3A")
                        .replace(',', "%2C")
                )
            }
            _ => format!("::{severity} title={id}::"),
        };
        let command = self
            .github
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no workflow command starting `{prefix}` in:\n{}",
                    self.github.join("\n")
                )
            });
        let first_line = d["message"].as_str().unwrap().lines().next().unwrap();
        assert!(
            command.contains(&first_line.replace('%', "%25")),
            "the annotation carries the message: {command}"
        );
        assert!(
            command.contains("%0Ahint: "),
            "the annotation carries the hint: {command}"
        );

        if let (Some(n), Some(file)) = (line, d["file"].as_str()) {
            let issue = self
                .quality
                .iter()
                .find(|i| i["check_name"] == id)
                .unwrap_or_else(|| panic!("no Code Quality issue `{id}`: {:?}", self.quality));
            assert_eq!(issue["type"], "issue");
            assert_eq!(issue["location"]["lines"]["begin"].as_u64(), Some(n));
            assert!(
                file.ends_with(issue["location"]["path"].as_str().unwrap()),
                "{issue} vs {file}"
            );
            let expected = match severity {
                "error" => "critical",
                "warning" => "minor",
                _ => "info",
            };
            assert_eq!(issue["severity"], expected, "{issue}");
            assert!(
                issue["fingerprint"]
                    .as_str()
                    .is_some_and(|f| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit())),
                "a SHA-256 hex fingerprint: {issue}"
            );
        }
        d
    }

    /// No error-level diagnostic other than `id`: the failure has one named cause.
    fn only_error(&self, id: &str) {
        let others: Vec<&Value> = self
            .diagnostics
            .iter()
            .filter(|d| d["severity"] == "error" && d["id"] != id)
            .collect();
        assert!(others.is_empty(), "no other cause than `{id}`: {others:?}");
    }
}

/// A build context `name` in the workspace with this Dockerfile; returns its directory.
fn context(ws: &Workspace, name: &str, dockerfile: &str) -> PathBuf {
    ws.context(name, &[("Dockerfile", dockerfile)])
}

/// `rbuild build` in the workspace with its cache, the report flags, `args` and the
/// context.
fn build_cmd(ws: &Workspace, ctx: &Path, args: &[&str]) -> Command {
    let mut c = ws.rbuild();
    c.arg("build")
        .arg("--cache-dir")
        .arg(&ws.cache)
        .args(report_args(ctx))
        .args(args)
        .arg(ctx);
    c
}

#[test]
fn a_background_listener_is_killed_and_its_port_named() {
    let ws = require!(Workspace::new());
    // busybox `httpd` forks into the background and keeps port 8765 bound, as a database
    // or test server started by an install script would.
    let ctx = context(
        &ws,
        "listener",
        &format!(
            "FROM {}\n# start a server, as install scripts sometimes do\nRUN httpd -p 127.0.0.1:8765 -h / && echo started\nRUN echo next > /next\n",
            ws.busybox
        ),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(0), "the build finishes: {}", p.stderr());
    let d = p.expect("no-process-sandbox-leaked-process", "warning", Some(3));
    let message = d["message"].as_str().unwrap();
    assert!(message.contains("8765"), "the port is named: {d}");
    assert!(message.contains("httpd"), "the process is named: {d}");
    assert!(
        p.github
            .iter()
            .any(|l| l.starts_with("::warning") && l.contains("8765")),
        "{:?}",
        p.github
    );
    p.only_error("none");
}

#[test]
fn an_ordinary_failing_run_is_run_failed_with_its_last_lines() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "ordinary",
        &format!(
            "FROM {}\nRUN echo ok > /ok\nRUN echo 'checking configuration' && \\\n    echo 'config.yaml: key `port` is missing' >&2 && \\\n    exit 3\n",
            ws.busybox
        ),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(1), "{}", p.stderr());
    let d = p.expect("run-failed", "error", Some(3));
    assert_eq!(d["end_line"], 5, "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{d}"
    );
    let evidence: Vec<&str> = d["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        evidence
            .iter()
            .any(|l| l.contains("checking configuration"))
            && evidence.iter().any(|l| l.contains("key `port` is missing")),
        "the step's last lines are the evidence: {evidence:?}"
    );
    p.only_error("run-failed");
    assert_eq!(
        p.diagnostics.len(),
        1,
        "no false cause: {:?}",
        p.diagnostics
    );
    let command = p.github.iter().find(|l| l.starts_with("::error")).unwrap();
    assert!(command.contains("key `port` is missing"), "{command}");
}

#[test]
fn ping_in_a_run_is_named() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "ping",
        &format!(
            "FROM {}\nRUN echo before\nRUN ping -c 1 -W 2 127.0.0.1\n",
            ws.busybox
        ),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(1), "{}", p.stderr());
    p.expect("icmp-ping-in-build", "error", Some(3));
    p.only_error("icmp-ping-in-build");
}

#[test]
fn sysctl_w_in_a_run_is_named() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "sysctl",
        &format!("FROM {}\nRUN sysctl -w net.ipv4.ip_forward=1\n", ws.busybox),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(1), "{}", p.stderr());
    p.expect("sysctl-write-in-build", "error", Some(2));
    p.only_error("sysctl-write-in-build");
}

#[test]
fn a_base_image_without_the_platform_is_named_on_from() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "platform",
        &format!(
            "# busybox has amd64 and arm64 only\nFROM {}\nRUN true\n",
            ws.busybox
        ),
    );
    let p = provoke(build_cmd(&ws, &ctx, &["--platform", "linux/riscv64"]), &ctx);
    assert_eq!(p.code(), Some(1), "{}", p.stderr());
    let d = p.expect("base-image-missing-platform", "error", Some(2));
    let text = d.to_string();
    assert!(
        text.contains("linux/riscv64"),
        "the platform asked for: {d}"
    );
    assert!(
        text.contains("linux/amd64") && text.contains("linux/arm64"),
        "the platforms there are: {d}"
    );
    p.only_error("base-image-missing-platform");
}

#[test]
fn a_registry_answering_401_is_named_on_from() {
    let ws = require!(Workspace::new());
    let htpasswd = ws.dir.path().join("htpasswd");
    auth::htpasswd(&htpasswd, "alice", "secret-pw-7Hq").unwrap();
    let locked = Registry::start_with(&Setup {
        htpasswd: Some(htpasswd),
        ..Setup::default()
    })
    .unwrap();
    let ctx = context(
        &ws,
        "auth",
        &format!("FROM {}/team/busybox:latest\nRUN true\n", locked.host()),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(4), "{}", p.stderr());
    let d = p.expect("registry-auth-401", "error", Some(1));
    assert!(d.to_string().contains(&locked.host()), "the host: {d}");
    p.only_error("registry-auth-401");
}

#[test]
fn a_registry_answering_429_is_named_on_from() {
    let ws = require!(Workspace::new());
    let fake = FakeRegistry::start(Content::default(), |seen, _| {
        (seen.path != "/v2/").then(|| {
            Reply::status(
                429,
                &[("Retry-After", "0"), ("Content-Type", "application/json")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#,
            )
        })
    });
    let ctx = context(
        &ws,
        "ratelimit",
        &format!("\nFROM {}/library/busybox:latest\nRUN true\n", fake.host()),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(4), "{}", p.stderr());
    let d = p.expect("registry-rate-limited", "error", Some(2));
    assert!(d.to_string().contains(&fake.host()), "the host: {d}");
    assert!(
        fake.requests().iter().filter(|r| r.path != "/v2/").count() > 1,
        "rbuild retried before giving up"
    );
    p.only_error("registry-rate-limited");
}

#[test]
fn plain_http_to_an_https_registry_is_named_on_from() {
    let ws = require!(Workspace::new());
    require!(auth::openssl());
    let cert = auth::self_signed(ws.dir.path(), "registry", TEST_HOST).unwrap();
    let tls = Registry::start_with(&Setup {
        tls: Some((cert.cert.clone(), cert.key.clone())),
        ..Setup::default()
    })
    .unwrap();
    // A loopback registry is reached over plain http (as Docker does); this one speaks
    // https.
    let ctx = context(
        &ws,
        "http",
        &format!("FROM {}/busybox:latest\nRUN true\n", tls.host()),
    );
    let p = provoke(build_cmd(&ws, &ctx, &[]), &ctx);
    assert_eq!(p.code(), Some(4), "{}", p.stderr());
    let d = p.expect("registry-tls-or-http", "error", Some(1));
    assert!(d.to_string().contains("https"), "{d}");
    p.only_error("registry-tls-or-http");

    // https to a plain-http registry reached by a name (not loopback): the other way round.
    let named = format!("{TEST_HOST}:{}/busybox:latest", ws.registry.addr().port());
    let ctx = context(&ws, "https", &format!("FROM {named}\nRUN true\n"));
    let mut cmd = auth::with_hosts(ws.env.user, ws.dir.path(), &ws.env.rbuild).unwrap();
    cmd.current_dir(ws.dir.path())
        .arg("build")
        .arg("--cache-dir")
        .arg(ws.dir.path().join("cache-named"))
        .args(report_args(&ctx))
        .arg(&ctx);
    let p = provoke(cmd, &ctx);
    assert_eq!(p.code(), Some(4), "{}", p.stderr());
    let d = p.expect("registry-tls-or-http", "error", Some(1));
    assert!(d.to_string().contains("--insecure-registry"), "{d}");
}

/// `rbuild ARGS` as the test user inside a fresh mount namespace (made as root) in
/// which `setup` (a shell script; `$ROOT_DIR` is the workspace) has run first.
fn in_mount_namespace(ws: &Workspace, setup: &str, args: &[OsString]) -> Result<Command, Missing> {
    if current_uid() != 0 {
        return Err(Missing::new(
            "changing the host's view (mounts) for one build needs root",
            "run the end-to-end tests as root (./scripts/test does)",
        ));
    }
    tool("/usr/bin/setpriv", "util-linux")?;
    let user = ws.env.user;
    let mut cmd = Command::new("unshare");
    cmd.env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("XDG_RUNTIME_DIR", &user.runtime_dir)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .env("ROOT_DIR", ws.dir.path())
        .current_dir(ws.dir.path());
    for pass in ["CI", "RBUILD_LOG", "NO_COLOR"] {
        if let Some(v) = std::env::var_os(pass) {
            cmd.env(pass, v);
        }
    }
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-euc"])
        .arg(format!(
            "{setup}\nexec setpriv --reuid={} --regid={} --init-groups -- \"$@\"",
            user.uid, user.gid
        ))
        .arg("sh")
        .arg(&ws.env.rbuild)
        .args(args);
    Ok(cmd)
}

#[test]
fn an_arm64_run_without_a_qemu_registration_is_binfmt_not_registered() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "binfmt",
        &format!("FROM {}\nRUN echo native\nRUN uname -m\n", ws.busybox),
    );
    let mut args: Vec<OsString> = vec!["build".into(), "--cache-dir".into()];
    args.push(ws.cache.clone().into());
    args.extend(report_args(&ctx));
    args.extend([
        "--platform".into(),
        "linux/arm64".into(),
        ctx.clone().into(),
    ]);
    // As on a host without qemu-user-static: no registration strings, no interpreters,
    // no host entry.
    let setup = "for d in /usr/lib/binfmt.d /etc/binfmt.d /usr/local/lib/binfmt.d /usr/libexec/qemu-binfmt; do\n\
                 if [ -d \"$d\" ]; then mount -t tmpfs -o mode=0755,size=64k empty \"$d\"; fi\n\
                 done\n\
                 if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then mount -t tmpfs -o size=64k empty /proc/sys/fs/binfmt_misc; fi";
    let cmd = require!(in_mount_namespace(&ws, setup, &args));
    let p = provoke(cmd, &ctx);
    assert_eq!(p.code(), Some(3), "a host problem: {}", p.stderr());
    let d = p.expect("binfmt-not-registered", "error", Some(2));
    assert!(
        d["hint"]
            .as_str()
            .unwrap()
            .contains("apt-get install qemu-user-static"),
        "the fix: {d}"
    );
    assert_eq!(d["platform"], "linux/arm64", "{d}");
    p.only_error("binfmt-not-registered");
}

#[test]
fn a_full_disk_during_a_run_is_disk_full() {
    let ws = require!(Workspace::new());
    let ctx = context(
        &ws,
        "full",
        &format!(
            "FROM {}\nRUN echo small > /small\nRUN dd if=/dev/zero of=/big bs=1M count=64\n",
            ws.busybox
        ),
    );
    let cache = ws.dir.path().join("small-cache");
    fs::create_dir_all(&cache).unwrap();
    let mut args: Vec<OsString> = vec!["build".into(), "--cache-dir".into()];
    args.push(cache.clone().into());
    args.extend(report_args(&ctx));
    args.push(ctx.clone().into());
    // The cache (blobs, snapshots, the step's upper directory) on a 24 MiB file system.
    let setup = format!(
        "mount -t tmpfs -o size=24m,mode=0755 small \"{0}\"\nchown {1}:{2} \"{0}\"",
        cache.display(),
        ws.env.user.uid,
        ws.env.user.gid
    );
    let cmd = require!(in_mount_namespace(&ws, &setup, &args));
    let p = provoke(cmd, &ctx);
    assert_eq!(p.code(), Some(3), "a host problem: {}", p.stderr());
    let d = p.expect("disk-full-or-inodes", "error", Some(3));
    assert!(
        d.to_string().contains("No space left on device"),
        "the evidence: {d}"
    );
    p.only_error("disk-full-or-inodes");
}

#[test]
fn files_of_ids_outside_a_single_id_mapping_are_subid_range_too_small() {
    let s = require!(Sandboxed::new());
    let plain = require!(PlainUser::no_subids());
    // A base layer with files of uid/gid 1000 and 70000: a mapping of one id (the
    // user's own, as root) holds neither.
    s.add_image(
        "owned",
        &[Tar::default()
            .dir("srv/")
            .file_owned("srv/app.conf", b"port=80\n", 1000, 1000)
            .file_owned("srv/high", b"x\n", 70000, 70000)
            .finish()],
    );
    let dir = plain.tempdir().unwrap();
    let layout = dir.path().join("layout");
    run_ok(Command::new("cp").arg("-r").arg(&s.layout).arg(&layout)).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "# a base whose files belong to uid 1000\nFROM base\nRUN cat /srv/app.conf\n",
    )
    .unwrap();
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", plain.uid, plain.gid))
            .arg(dir.path()),
    )
    .unwrap();
    let mut cmd = plain.command(&s.env.rbuild);
    cmd.current_dir(dir.path())
        .arg("build")
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(report_args(&ctx))
        .arg("--build-context")
        .arg(format!("base=oci-layout://{}:owned", layout.display()))
        .arg(&ctx);
    let p = provoke(cmd, &ctx);
    // Files of unmapped owners are given to the one mapped id and the build goes on,
    // with the cause named on the `FROM` line.
    assert_eq!(p.code(), Some(0), "{}", p.stderr());
    assert!(
        p.stderr().contains("port=80"),
        "the step read the file: {}",
        p.stderr()
    );
    let d = p.expect("subid-range-too-small", "warning", Some(2));
    let text = d.to_string();
    assert!(text.contains("1000"), "the id: {d}");
    assert!(text.contains("srv/app.conf"), "the file: {d}");
    assert!(
        text.contains("/etc/subuid") || text.contains("usermod"),
        "the fix: {d}"
    );
}

// ---------------------------------------------------------------------------------------
// False positives.

/// Successful builds shaped like the end-to-end suite's (multi-stage, COPY/ADD,
/// WORKDIR, USER, cache mounts, an emulated arm64 stage, tools that print warnings on
/// success): their complete plain logs, as CI would keep them.
#[test]
fn signatures_match_nothing_in_the_logs_of_successful_builds() {
    let ws = require!(Workspace::new());
    let b = &ws.busybox;
    let builds: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "basic",
            format!(
                "FROM {b}\nRUN echo hello > /hello && cat /hello\nRUN ls -la / && id && uname -a\n"
            ),
            vec![],
        ),
        (
            "multi-stage",
            format!(
                "FROM {b} AS build\nWORKDIR /src\nCOPY . .\nRUN ls -l && wc -c * && mkdir -p /out && cp -r . /out/\n\
                 FROM {b}\nCOPY --from=build /out /app\nRUN find /app -type f | sort && du -sh /app\n"
            ),
            vec![],
        ),
        (
            "users-and-env",
            format!(
                "FROM {b}\nARG VERSION=1.2.3\nENV APP_HOME=/opt/app PATH=/opt/app/bin:$PATH\n\
                 RUN adduser -D -u 1001 app 2>&1 || echo 'adduser printed something'; mkdir -p $APP_HOME && chown 1001:1001 $APP_HOME\n\
                 USER 1001\nWORKDIR /opt/app\nRUN echo \"version $VERSION\" > version && ls -ln && whoami || true\n"
            ),
            vec![],
        ),
        (
            "warnings-on-success",
            format!(
                "FROM {b}\n\
                 RUN echo 'warning: this is deprecated' >&2; echo 'npm WARN config production Use --omit=dev instead.'\n\
                 RUN grep -c root /etc/passwd; stat / | head -3; df -h / | tail -1; cat /proc/self/status | grep -i cap\n\
                 RUN --mount=type=cache,target=/cache echo cached > /cache/x && ls -l /cache\n\
                 RUN ps; netstat -ltn 2>&1 | head -5; mount | head -5; ulimit -n\n"
            ),
            vec![],
        ),
        (
            "emulated",
            format!(
                "FROM {b}\nRUN uname -m && echo built for $(uname -m) > /arch\nRUN ls -l /bin/busybox && sha256sum /bin/busybox\n"
            ),
            vec!["--platform", "linux/amd64,linux/arm64"],
        ),
    ];
    let mut logs = Vec::new();
    for (name, dockerfile, extra) in &builds {
        let ctx = ws.context(
            name,
            &[
                ("Dockerfile", dockerfile),
                ("main.c", "int main(void) { return 0; }\n"),
                ("README.md", "# a project\n"),
            ],
        );
        let mut c = ws.rbuild();
        c.arg("build")
            .arg("--cache-dir")
            .arg(&ws.cache)
            .args(["--progress", "plain"])
            .args(extra)
            .arg(&ctx);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{name}: {}", show(&out));
        logs.push((
            name.to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let report = signatures::false_positives(logs.iter().map(|(n, t)| (n.clone(), t.as_str())));
    println!(
        "false positives: {} matches in {} logs ({} lines, {} bytes)",
        report.matches.len(),
        report.logs,
        report.lines,
        report.bytes
    );
    assert!(report.lines > 50, "the logs have the step output: {logs:?}");
    assert!(
        report.matches.is_empty(),
        "signatures matched successful builds: {:#?}",
        report.matches
    );
}

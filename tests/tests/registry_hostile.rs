//! `rbuild pull` against a registry that misbehaves on purpose (the in-process fake of
//! `rbuild_e2e::fake_registry`), run as the unprivileged test user: what a real registry
//! will not do on demand.

// Helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rbuild_e2e::fake_registry::{FakeRegistry, Reply, Seen, tiny_image};
use rbuild_e2e::user::output;
use rbuild_e2e::{Env, require};

fn pull(env: &Env, dir: &Path, reference: &str, extra_env: &[(&str, &Path)]) -> Output {
    let mut cmd = env.rbuild();
    cmd.current_dir(dir).args([
        "pull",
        "--cache-dir",
        dir.join("cache").to_str().unwrap(),
        reference,
    ]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    output(&mut cmd).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stored(dir: &Path, digest: &str) -> bool {
    dir.join("cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("cache/tmp"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn is_get(seen: &Seen, what: &str) -> bool {
    seen.method == "GET" && seen.path.contains(what)
}

#[test]
fn registry_hostile_corrupted_blob_is_rejected_and_never_stored() {
    let env = require!(Env::get());
    let (content, _, layer) = tiny_image("v1", 300_000);
    let corrupt = {
        let mut b = content.blobs[&layer].clone();
        b[1000] ^= 0xff;
        b
    };
    let layer2 = layer.clone();
    let fake = FakeRegistry::start(content, move |seen, _| {
        (is_get(seen, &format!("/blobs/{layer2}"))).then(|| Reply::Status {
            status: 200,
            headers: vec![],
            body: corrupt.clone(),
        })
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "registry `{}` sent content for `{layer}` that does not match it",
            fake.host()
        )),
        "{err}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
    assert!(
        !stored(dir.path(), &layer),
        "the corrupt layer is not stored under its name"
    );
    // Nor kept as a partial download to resume from (other blobs' partials may stay).
    let partial = format!("sha256-{}.partial", layer.trim_start_matches("sha256:"));
    assert!(!leftovers(dir.path()).contains(&partial), "{partial}");
    assert!(out.stdout.is_empty());
}

#[test]
fn registry_hostile_transient_500_and_connection_reset_are_retried() {
    let env = require!(Env::get());
    let (content, manifest, layer) = tiny_image("v1", 400_000);
    let blob = content.blobs[&layer].clone();
    let layer2 = layer.clone();
    let fake = FakeRegistry::start(content, move |seen, _| {
        static MANIFEST_500S: std::sync::atomic::AtomicUsize =
            std::sync::atomic::AtomicUsize::new(0);
        static BLOB_CUTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        use std::sync::atomic::Ordering::SeqCst;
        if is_get(seen, "/manifests/v1") {
            return match MANIFEST_500S.fetch_add(1, SeqCst) {
                0 => Some(Reply::status(500, &[], "internal error")),
                1 => Some(Reply::Hangup),
                _ => None,
            };
        }
        if is_get(seen, &format!("/blobs/{layer2}")) && BLOB_CUTS.fetch_add(1, SeqCst) == 0 {
            return Some(Reply::Cut {
                body: blob.clone(),
                send: 150_000,
            });
        }
        None
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);
    assert!(stored(dir.path(), &layer));
    let log = fake.requests();
    let manifest_gets = log.iter().filter(|s| is_get(s, "/manifests/v1")).count();
    assert_eq!(manifest_gets, 3, "a 500 and a hangup, then success");
    let ranges: Vec<Option<&str>> = log
        .iter()
        .filter(|s| is_get(s, &format!("/blobs/{layer}")))
        .map(|s| s.header("range"))
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    // The download resumed where the reset cut it, not from the start.
    let resumed_at: usize = ranges[1]
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(resumed_at > 0 && resumed_at <= 150_000, "{ranges:?}");
    assert!(
        leftovers(dir.path())
            .iter()
            .all(|f| !f.ends_with(".partial"))
    );
}

#[test]
fn registry_hostile_429_with_retry_after_is_honoured() {
    let env = require!(Env::get());
    let (content, manifest, _) = tiny_image("v1", 1000);
    let fake = FakeRegistry::start(content, |seen, _| {
        static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        (is_get(seen, "/manifests/v1") && FIRST.swap(false, std::sync::atomic::Ordering::SeqCst))
            .then(|| {
                Reply::status(
                    429,
                    &[("Retry-After", "2"), ("Content-Type", "application/json")],
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                )
            })
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);
    let gets: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|s| is_get(s, "/manifests/v1"))
        .collect();
    assert_eq!(gets.len(), 2);
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, Retry-After said 2 s"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

#[test]
fn registry_hostile_429_beyond_the_limit_fails_as_rate_limited() {
    let env = require!(Env::get());
    let (content, _, _) = tiny_image("v1", 1000);
    let fake = FakeRegistry::start(content, |seen, _| {
        is_get(seen, "/manifests/").then(|| {
            Reply::status(
                429,
                &[("Retry-After", "3600"), ("Content-Type", "application/json")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit"}]}"#,
            )
        })
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("429 Too Many Requests"), "{err}");
    assert!(err.contains("TOOMANYREQUESTS"), "{err}");
    assert!(err.contains("retry after 3600 s"), "{err}");
    assert!(err.contains("not your build"), "{err}");
}

#[test]
fn registry_hostile_401_names_the_registry_and_the_credential_source() {
    let env = require!(Env::get());
    let (content, _, _) = tiny_image("v1", 1000);
    let host: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let h = host.clone();
    let fake = FakeRegistry::start(content, move |seen, _| {
        let realm = format!("http://{}/token", h.get().map_or("", String::as_str));
        if seen.path.starts_with("/token") {
            return Some(Reply::status(
                401,
                &[("Content-Type", "application/json")],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#,
            ));
        }
        Some(Reply::status(
            401,
            &[(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="fake",scope="repository:app:pull""#),
            )],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ))
    });
    host.set(fake.host()).unwrap();
    let dir = env.user.tempdir().unwrap();
    let reference = format!("{}/app:v1", fake.host());

    // Without credentials: the error says where rbuild looked.
    let out = pull(&env, dir.path(), &reference, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("`{}` answered 401 Unauthorized", fake.host())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "no entry for `{}` in `~/.docker/config.json` (absent)",
            fake.host()
        )),
        "{err}"
    );
    assert!(err.contains("docker login"), "{err}");

    // With credentials in DOCKER_CONFIG: the token service refuses them; the error names
    // the file and key, never the password.
    let config_dir = dir.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    let auth = "ZmFrZXVzZXI6aHVudGVyMi1zZWNyZXQ="; // fakeuser:hunter2-secret
    std::fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            fake.host()
        ),
    )
    .unwrap();
    env.user.give(&config_dir).unwrap();
    env.user.give(&config_dir.join("config.json")).unwrap();
    let out = pull(
        &env,
        dir.path(),
        &reference,
        &[("DOCKER_CONFIG", &config_dir)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains("incorrect username or password"), "{err}");
    assert!(
        err.contains(&format!(
            "auths `{}` in `{}`",
            fake.host(),
            config_dir.join("config.json").display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("hunter2") && !err.contains(auth),
        "a secret leaked: {err}"
    );
    // The credentials did go to the token service, as basic auth.
    let token_req = fake
        .requests()
        .into_iter()
        .rfind(|s| s.path.starts_with("/token"))
        .unwrap();
    assert_eq!(
        token_req.header("authorization"),
        Some(format!("Basic {auth}").as_str())
    );
    assert!(
        token_req.path.contains("scope=repository%3Aapp%3Apull"),
        "{}",
        token_req.path
    );
}

#[test]
fn registry_hostile_manifest_digest_header_is_checked_and_may_be_missing() {
    let env = require!(Env::get());
    let (content, manifest, _) = tiny_image("v1", 1000);
    let (mt, bytes) = content.manifests["v1"].clone();
    let fake = FakeRegistry::start(content, move |seen, _| {
        if is_get(seen, "/manifests/v1") {
            // No Docker-Content-Digest at all: rbuild computes it.
            return Some(Reply::Status {
                status: 200,
                headers: vec![("Content-Type".into(), mt.clone())],
                body: bytes.clone(),
            });
        }
        if is_get(seen, "/manifests/v2") {
            return Some(Reply::Status {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), mt.clone()),
                    (
                        "Docker-Content-Digest".into(),
                        "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                            .into(),
                    ),
                ],
                body: bytes.clone(),
            });
        }
        None
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);

    let out = pull(&env, dir.path(), &format!("{}/app:v2", fake.host()), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn registry_hostile_interrupted_download_is_kept_for_resume_and_pruned() {
    let env = require!(Env::get());
    let (content, _, layer) = tiny_image("v1", 500_000);
    let blob = content.blobs[&layer].clone();
    let layer2 = layer.clone();
    // The layer never arrives whole: every answer is cut after 100 kB.
    let fake = FakeRegistry::start(content, move |seen, _| {
        is_get(seen, &format!("/blobs/{layer2}")).then(|| Reply::Cut {
            body: blob.clone(),
            send: 100_000,
        })
    });
    let dir = env.user.tempdir().unwrap();
    let out = pull(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let partial = format!("sha256-{}.partial", layer.trim_start_matches("sha256:"));
    assert!(
        leftovers(dir.path()).contains(&partial),
        "{:?}",
        leftovers(dir.path())
    );

    let mut cmd = env.rbuild();
    cmd.current_dir(dir.path())
        .args(["prune", "--cache-dir"])
        .arg(dir.path().join("cache"));
    let out = output(&mut cmd).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 interrupted downloads"),
        "{}",
        stderr(&out)
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

/// `rbuild push` of the tiny image's layout at `dir/layout` to `dest`, with `env_vars`.
fn push_layout(env: &Env, dir: &Path, dest: &str, env_vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.rbuild();
    cmd.current_dir(dir)
        .args(["push", "--cache-dir"])
        .arg(dir.join("cache"))
        .arg(format!("oci-layout://{}:v1", dir.join("layout").display()))
        .arg(dest);
    for (k, v) in env_vars {
        cmd.env(k, v);
    }
    output(&mut cmd).unwrap()
}

fn layout_for_push(env: &Env, dir: &Path, content: &rbuild_e2e::fake_registry::Content) {
    let layout = dir.join("layout");
    rbuild_e2e::fake_registry::write_layout(content, "v1", &layout).unwrap();
    rbuild_e2e::user::run_ok(
        std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", env.user.uid, env.user.gid))
            .arg(&layout),
    )
    .unwrap();
}

#[test]
fn registry_hostile_chunked_upload_resumes_where_the_registry_stopped() {
    let env = require!(Env::get());
    let (content, manifest, layer) = tiny_image("v1", 600_000);
    let dir = env.user.tempdir().unwrap();
    layout_for_push(&env, dir.path(), &content);
    let want = content.blobs[&layer].clone();
    // The second chunk breaks after the registry kept 50 000 of its 200 000 bytes.
    let fake = FakeRegistry::start(rbuild_e2e::fake_registry::Content::default(), |seen, _| {
        static PATCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        (seen.method == "PATCH" && PATCHES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1)
            .then_some(Reply::Partial { keep: 50_000 })
    });
    let out = push_layout(
        &env,
        dir.path(),
        &format!("{}/app:v1", fake.host()),
        &[("RBUILD_PUSH_CHUNK_SIZE", "200000")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);
    assert!(stderr(&out).contains("resume"), "{}", stderr(&out));
    assert_eq!(fake.pushed_blob(&layer).as_deref(), Some(&want[..]));
    assert!(fake.pushed_manifest("v1").is_some());

    // One session for the layer: it asked where the session stood and went on from there.
    let log = fake.requests();
    let layer_session: Vec<&Seen> = log
        .iter()
        .filter(|s| s.method == "PATCH" || (s.method == "GET" && s.path.contains("/uploads/")))
        .collect();
    let shape: Vec<(String, Option<&str>)> = layer_session
        .iter()
        .map(|s| (s.method.clone(), s.header("content-range")))
        .collect();
    assert_eq!(
        shape,
        [
            ("PATCH".to_owned(), Some("0-199999")),
            ("PATCH".to_owned(), Some("200000-399999")),
            ("GET".to_owned(), None),
            ("PATCH".to_owned(), Some("250000-449999")),
            ("PATCH".to_owned(), Some("450000-599999")),
        ],
        "{shape:?}"
    );
    let posts = log.iter().filter(|s| s.method == "POST").count();
    assert_eq!(posts, 2, "one session for the config, one for the layer");
    assert_eq!(fake.open_sessions(), 0);
}

#[test]
fn registry_hostile_failed_monolithic_upload_restarts_on_a_new_session() {
    let env = require!(Env::get());
    let (content, manifest, layer) = tiny_image("v1", 100_000);
    let dir = env.user.tempdir().unwrap();
    layout_for_push(&env, dir.path(), &content);
    let want = content.blobs[&layer].clone();
    let layer2 = layer.clone();
    // The first PUT of the layer breaks after the registry kept 30 000 bytes of it.
    let fake = FakeRegistry::start(
        rbuild_e2e::fake_registry::Content::default(),
        move |seen, _| {
            static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
            let digest_q = layer2.replace(':', "%3A");
            (seen.method == "PUT"
                && seen.path.contains("/uploads/")
                && seen.path.contains(&digest_q)
                && FIRST.swap(false, std::sync::atomic::Ordering::SeqCst))
            .then_some(Reply::Partial { keep: 30_000 })
        },
    );
    let out = push_layout(&env, dir.path(), &format!("{}/app:v1", fake.host()), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), manifest);
    assert_eq!(fake.pushed_blob(&layer).as_deref(), Some(&want[..]));
    let log = fake.requests();
    let digest_q = layer.replace(':', "%3A");
    let puts: Vec<&str> = log
        .iter()
        .filter(|s| s.method == "PUT" && s.path.contains(&digest_q))
        .map(|s| s.path.split('?').next().unwrap())
        .collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_ne!(puts[0], puts[1], "the second PUT went to a fresh session");
    // The broken session was cancelled, not left to expire.
    assert!(
        log.iter()
            .any(|s| s.method == "DELETE" && s.path.split('?').next() == Some(puts[0])),
        "{:?}",
        log.iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    assert_eq!(fake.open_sessions(), 0);
}

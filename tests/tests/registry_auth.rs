//! Authentication and TLS against the real `docker-registry`, with `rbuild` run as the
//! unprivileged test user: basic auth (htpasswd), bearer tokens from a token service,
//! credentials from `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG` `auths`, `credHelpers` and
//! `credsStore` helper programs, and TLS failures (untrusted certificate, https spoken to a
//! plain-http registry, plain http spoken to an https one). No secret is ever printed.

// Helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use rbuild_e2e::auth::{self, Account, TEST_HOST, TokenService};
use rbuild_e2e::registry::Setup;
use rbuild_e2e::user::{output, run_ok};
use rbuild_e2e::{Env, Registry, base, require};

const USER: &str = "alice";

fn copy_busybox(env: &Env, dir: &Path) -> PathBuf {
    let layout = base::busybox().expect("checked by the caller");
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

/// Writes a credentials file (Docker's format) owned by the test user.
fn config_file(env: &Env, path: &Path, json: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    env.user.give(path.parent().unwrap()).unwrap();
    std::fs::write(path, json.to_string()).unwrap();
    env.user.give(path).unwrap();
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Runs `cmd` (rbuild with its arguments) and returns its output.
fn run(cmd: &mut Command) -> Output {
    output(cmd).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in secrets {
        assert!(!all.contains(s), "a secret leaked: {all}");
    }
}

fn rbuild_in(env: &Env, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = env.rbuild();
    cmd.current_dir(dir)
        .args([args[0], "--cache-dir"])
        .arg(dir.join("cache"))
        .args(&args[1..]);
    cmd
}

#[test]
fn registry_auth_basic_htpasswd_with_auth_file_credentials() {
    let env = require!(Env::get());
    require!(rbuild_e2e::registry::available());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let password = "basic-pw-Zq81";
    let htpasswd = dir.path().join("htpasswd");
    auth::htpasswd(&htpasswd, USER, password).unwrap();
    let reg = Registry::start_with(&Setup {
        htpasswd: Some(htpasswd),
        ..Setup::default()
    })
    .unwrap();
    let layout = copy_busybox(&env, dir.path());
    let source = format!("oci-layout://{}:latest", layout.display());
    let dest = format!("{}/secure/busybox:1", reg.host());

    // No credentials: refused, naming the registry, where rbuild looked and the cause.
    let out = run(&mut rbuild_in(&env, dir.path(), &["push", &source, &dest]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!(
            "registry `{}` answered 401 Unauthorized",
            reg.host()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("no entry for `{}`", reg.host())),
        "{err}"
    );
    assert!(err.contains("registry-auth-401"), "{err}");

    // Credentials in REGISTRY_AUTH_FILE (podman's): push and pull work.
    let auth_file = dir.path().join("auth/auth.json");
    let token = b64(&format!("{USER}:{password}"));
    config_file(
        &env,
        &auth_file,
        &serde_json::json!({"auths": {reg.host(): {"auth": token}}}),
    );
    let out = run(rbuild_in(&env, dir.path(), &["push", &source, &dest])
        .env("REGISTRY_AUTH_FILE", &auth_file));
    let digest = assert_ok(&out);
    assert_no_secret(&out, &[password, &token]);
    let out = run(
        rbuild_in(&env, dir.path(), &["pull", "--all-platforms", &dest])
            .env("REGISTRY_AUTH_FILE", &auth_file),
    );
    assert_eq!(assert_ok(&out), digest);

    // A wrong password: the error names the file and key, never the secret.
    let wrong = b64(&format!("{USER}:not-the-password-77"));
    config_file(
        &env,
        &auth_file,
        &serde_json::json!({"auths": {reg.host(): {"auth": wrong}}}),
    );
    let out = run(rbuild_in(
        &env,
        dir.path(),
        &["pull", "--platform", "linux/amd64", &dest],
    )
    .env("REGISTRY_AUTH_FILE", &auth_file));
    let err = stderr(&out);
    // The store already holds the image, but a pull asks the registry for the tag.
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(
        err.contains(&format!(
            "auths `{}` in `{}`",
            reg.host(),
            auth_file.display()
        )),
        "{err}"
    );
    assert_no_secret(&out, &["not-the-password-77", &wrong, password]);
}

/// A token-auth registry with busybox pushed to `bearer/busybox:1` by the known user
/// (credentials from a `DOCKER_CONFIG` `auths` entry).
struct BearerRegistry {
    tokens: TokenService,
    reg: Registry,
    dest: String,
    digest: String,
}

const TOKEN_PASSWORD: &str = "token-pw-Xv42";

fn bearer_registry(env: &Env, dir: &Path) -> BearerRegistry {
    let tokens = TokenService::start(
        dir,
        Account {
            user: USER.into(),
            password: TOKEN_PASSWORD.into(),
        },
    )
    .unwrap();
    let reg = Registry::start_with(&Setup {
        token: Some(tokens.registry_auth()),
        ..Setup::default()
    })
    .unwrap();
    let layout = copy_busybox(env, dir);
    let dest = format!("{}/bearer/busybox:1", reg.host());
    let docker = dir.join("docker-auths");
    config_file(
        env,
        &docker.join("config.json"),
        &serde_json::json!({"auths": {reg.host(): {"username": USER, "password": TOKEN_PASSWORD}}}),
    );
    let out = run(rbuild_in(
        env,
        dir,
        &[
            "push",
            &format!("oci-layout://{}:latest", layout.display()),
            &dest,
        ],
    )
    .env("DOCKER_CONFIG", &docker));
    let digest = assert_ok(&out);
    assert_no_secret(&out, &[TOKEN_PASSWORD]);
    BearerRegistry {
        tokens,
        reg,
        dest,
        digest,
    }
}

#[test]
fn registry_auth_bearer_tokens_with_docker_config_and_credential_helpers() {
    let env = require!(Env::get());
    require!(rbuild_e2e::registry::available());
    require!(auth::openssl());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let b = bearer_registry(&env, dir.path());
    let pushed = b.tokens.requests();
    assert!(
        pushed.iter().any(|r| r.user.as_deref() == Some(USER)
            && r.scopes
                .iter()
                .any(|s| s == "repository:bearer/busybox:pull,push")),
        "{pushed:?}"
    );

    // Anonymous: the token service grants nothing and the registry refuses.
    let out = run(&mut rbuild_in(&env, dir.path(), &["pull", &b.dest]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains("registry-auth-401"), "{err}");

    // credHelpers: a `docker-credential-e2e` program on PATH answers for this registry.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    env.user.give(&bin).unwrap();
    auth::credential_helper(&bin, "e2e", &b.reg.host(), USER, TOKEN_PASSWORD).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let helpers = dir.path().join("docker-helpers");
    config_file(
        &env,
        &helpers.join("config.json"),
        &serde_json::json!({"credHelpers": {b.reg.host(): "e2e"}}),
    );
    let before = b.tokens.requests().len();
    let out = run(
        rbuild_in(&env, dir.path(), &["pull", "--all-platforms", &b.dest])
            .env("DOCKER_CONFIG", &helpers)
            .env("PATH", &path),
    );
    assert_eq!(assert_ok(&out), b.digest);
    assert_no_secret(&out, &[TOKEN_PASSWORD]);
    let used: Vec<_> = b.tokens.requests()[before..].to_vec();
    assert!(
        used.iter().all(|r| r.user.as_deref() == Some(USER)),
        "{used:?}"
    );

    // credsStore: the same helper for every registry.
    let store = dir.path().join("docker-store");
    config_file(
        &env,
        &store.join("config.json"),
        &serde_json::json!({"credsStore": "e2e"}),
    );
    let out = run(rbuild_in(
        &env,
        dir.path(),
        &["pull", "--platform", "linux/arm64", &b.dest],
    )
    .env("DOCKER_CONFIG", &store)
    .env("PATH", &path));
    assert_eq!(assert_ok(&out), b.digest);

    // A helper that has nothing for this registry: the 401 names the helper consulted.
    let other = dir.path().join("docker-other");
    auth::credential_helper(&bin, "other", "elsewhere.example", USER, TOKEN_PASSWORD).unwrap();
    config_file(
        &env,
        &other.join("config.json"),
        &serde_json::json!({"credHelpers": {b.reg.host(): "other"}}),
    );
    let out = run(rbuild_in(&env, dir.path(), &["pull", &b.dest])
        .env("DOCKER_CONFIG", &other)
        .env("PATH", &path));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("`docker-credential-other`"), "{err}");
    assert_no_secret(&out, &[TOKEN_PASSWORD]);

    // A helper that is not installed is an error naming it.
    let missing = dir.path().join("docker-missing");
    config_file(
        &env,
        &missing.join("config.json"),
        &serde_json::json!({"credHelpers": {b.reg.host(): "nosuch"}}),
    );
    let out = run(rbuild_in(&env, dir.path(), &["pull", &b.dest]).env("DOCKER_CONFIG", &missing));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("docker-credential-nosuch"), "{err}");
}

#[test]
fn registry_auth_tls_errors_are_classified_and_a_trusted_ca_works() {
    let env = require!(Env::get());
    require!(rbuild_e2e::registry::available());
    require!(auth::openssl());
    require!(base::busybox());
    let dir = env.user.tempdir().unwrap();
    let cert = auth::self_signed(dir.path(), "registry", TEST_HOST).unwrap();
    let tls = Registry::start_with(&Setup {
        tls: Some((cert.cert.clone(), cert.key.clone())),
        ..Setup::default()
    })
    .unwrap();
    let port = tls.addr().port();
    let by_name = format!("{TEST_HOST}:{port}/tls/busybox:1");
    let layout = copy_busybox(&env, dir.path());
    let source = format!("oci-layout://{}:latest", layout.display());
    let rbuild_named = |args: &[&str]| {
        let mut cmd = auth::with_hosts(env.user, dir.path(), &env.rbuild).unwrap();
        cmd.current_dir(dir.path())
            .args([args[0], "--cache-dir"])
            .arg(dir.path().join("cache"))
            .args(&args[1..]);
        cmd
    };

    // An untrusted (self-signed) certificate.
    let out = run(&mut rbuild_named(&["push", &source, &by_name]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("failed its TLS check"), "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("registry-tls-or-http"), "{err}");
    assert!(err.contains("SSL_CERT_FILE"), "{err}");

    // Trusted through SSL_CERT_FILE: push and pull over https work.
    let out = run(rbuild_named(&["push", &source, &by_name]).env("SSL_CERT_FILE", &cert.cert));
    let digest = assert_ok(&out);
    let out = run(
        rbuild_named(&["pull", "--platform", "linux/arm64", &by_name])
            .env("SSL_CERT_FILE", &cert.cert),
    );
    assert_eq!(assert_ok(&out), digest);

    // Plain http to the https registry: by its loopback address (always http) ...
    let out = run(&mut rbuild_in(
        &env,
        dir.path(),
        &["pull", &format!("{}/tls/busybox:1", tls.host())],
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("speaks https, but rbuild reached it over plain http"),
        "{err}"
    );
    assert!(err.contains("registry-tls-or-http"), "{err}");
    assert!(err.contains("loopback registries"), "{err}");
    // ... and by name with `--insecure-registry`.
    let out = run(&mut rbuild_named(&[
        "pull",
        "--insecure-registry",
        &format!("{TEST_HOST}:{port}"),
        &by_name,
    ]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("speaks https"), "{err}");
    assert!(err.contains("drop `--insecure-registry"), "{err}");

    // https to a plain-http registry reached by name.
    let plain = Registry::start().unwrap();
    let out = run(&mut rbuild_named(&[
        "pull",
        &format!("{TEST_HOST}:{}/busybox:1", plain.addr().port()),
    ]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("failed its TLS check"), "{err}");
    assert!(err.contains("plain http"), "{err}");
    assert!(err.contains("--insecure-registry"), "{err}");
    assert!(err.contains("registry-tls-or-http"), "{err}");
}

//! rbuild's end-to-end test harness.
//!
//! Every end-to-end test exercises rbuild the way users run it:
//!
//! - as an unprivileged user with a subordinate id range ([`TestUser`]; created when the
//!   tests run as root), with no capabilities;
//! - against a real registry on 127.0.0.1 ([`Registry`], Debian's `docker-registry`);
//! - with real busybox base images for linux/amd64 and linux/arm64 ([`base`]), built from
//!   Debian packages and available as an OCI layout and pushed as a multi-platform index;
//! - with real qemu for the foreign architecture.
//!
//! Missing prerequisites skip a test locally and fail it in CI ([`require!`]).

pub mod auth;
pub mod base;
pub mod bins;
pub mod devtools;
pub mod fake_registry;
pub mod gate;
pub mod http;
pub mod oci;
pub mod plain_user;
pub mod registry;
pub mod user;

use std::path::PathBuf;
use std::process::Command;

pub use gate::Missing;
pub use registry::Registry;
pub use user::TestUser;

/// What every end-to-end test of the `rbuild` binary needs: the test user and the binary.
#[derive(Debug)]
pub struct Env {
    pub user: &'static TestUser,
    pub rbuild: PathBuf,
}

impl Env {
    /// The test user (created if needed) and a reachable `rbuild` binary.
    pub fn get() -> Result<Env, Missing> {
        Ok(Env {
            user: TestUser::get()?,
            rbuild: bins::binary("rbuild")?,
        })
    }

    /// `rbuild` as the test user.
    pub fn rbuild(&self) -> Command {
        self.user.command(&self.rbuild)
    }
}

/// Unprivileged user namespaces with the test user's full subordinate range mapped
/// (`unshare --map-auto`, which goes through `newuidmap`/`newgidmap`).
pub fn userns(user: &TestUser) -> Result<(), Missing> {
    let mut cmd = user.command("unshare");
    cmd.args([
        "--user",
        "--map-auto",
        "--map-root-user",
        "cat",
        "/proc/self/uid_map",
    ])
    .current_dir("/");
    match user::run_ok(&mut cmd) {
        Ok(map) if map.lines().count() >= 2 => Ok(()),
        Ok(map) => Err(Missing::new(
            format!(
                "`unshare --map-auto` mapped only `{}` for `{}`",
                map.trim(),
                user.name
            ),
            "install `uidmap` (newuidmap/newgidmap) and give the user a subuid/subgid range",
        )),
        Err(e) => Err(Missing::new(
            format!("the test user cannot create a user namespace: {e}"),
            "enable unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04 also `sysctl kernel.apparmor_restrict_unprivileged_userns=0`) and install `uidmap`",
        )),
    }
}

/// A program the tests need, by absolute path, with the Debian package that has it.
pub fn tool(path: &str, package: &str) -> Result<PathBuf, Missing> {
    let p = PathBuf::from(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Missing::new(
            format!("`{path}` is not installed"),
            format!("`apt-get install {package}` (as root; ./scripts/test does this)"),
        ))
    }
}

/// A registry on 127.0.0.1 holding `busybox:latest` (linux/amd64 + linux/arm64 index).
/// Returns the registry and the reference `127.0.0.1:PORT/busybox:latest`. A missing
/// prerequisite is a [`Missing`]; a registry that misbehaves fails the test (panics).
pub fn registry_with_busybox() -> Result<(Registry, String), Missing> {
    let layout = base::busybox()?;
    registry::available()?;
    let registry = Registry::start().unwrap_or_else(|e| panic!("cannot start the registry: {e}"));
    oci::push(&layout, "latest", &registry.url(), "busybox", "latest")
        .unwrap_or_else(|e| panic!("cannot push the busybox base: {e}"));
    let reference = format!("{}/busybox:latest", registry.host());
    Ok((registry, reference))
}

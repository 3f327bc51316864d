//! `rbuild-testenv`: the harness's fixtures from the command line, for `scripts/demo` and
//! for poking at a test setup by hand.
//!
//! ```text
//! rbuild-testenv check                         # list what the end-to-end tests need
//! rbuild-testenv base                          # build/find the busybox OCI layout, print its path
//! rbuild-testenv registry start --dir DIR      # start a loopback registry, print HOST:PORT
//! rbuild-testenv registry stop --dir DIR
//! rbuild-testenv push --registry HOST:PORT     # push busybox:latest (amd64 + arm64 index)
//! ```
#![allow(clippy::print_stdout)] // stdout carries this tool's data (paths, addresses, digests)

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rbuild_e2e::registry::{Lifetime, Registry};
use rbuild_e2e::{Missing, TestUser, base, gate, oci, registry, tool, userns};

/// Test fixtures for rbuild: busybox base images and a loopback registry.
#[derive(Debug, Parser)]
#[command(name = "rbuild-testenv", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check every prerequisite of the end-to-end tests; print what is missing and the fix
    /// (as root this also creates the test user). Exits 1 when something is missing and
    /// `CI=true`.
    Check,
    /// Build (or find in the cache) the busybox OCI layout and print its path
    Base,
    /// Start or stop a registry on 127.0.0.1
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Push the busybox base (index tagged `latest`) to a registry
    Push {
        /// Registry `HOST:PORT` (plain http)
        #[arg(long)]
        registry: String,
        /// Repository name
        #[arg(long, default_value = "busybox")]
        repo: String,
        /// Tag
        #[arg(long, default_value = "latest")]
        tag: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCmd {
    /// Start a detached registry with its state under DIR; print `HOST:PORT`
    Start {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop the registry started with the same DIR
    Stop {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Check => check()?,
        Cmd::Base => {
            let layout = base::busybox().map_err(|m| m.to_string())?;
            println!("{}", layout.root().display());
        }
        Cmd::Registry(RegistryCmd::Start { dir }) => {
            let reg = Registry::start_in(&dir, Lifetime::Detached)?;
            let host = reg.host();
            let pid = reg.release();
            std::fs::write(dir.join("registry.pid"), pid.to_string())
                .map_err(|e| format!("cannot write the pid file: {e}"))?;
            println!("{host}");
        }
        Cmd::Registry(RegistryCmd::Stop { dir }) => {
            let pidfile = dir.join("registry.pid");
            let pid = std::fs::read_to_string(&pidfile)
                .map_err(|e| format!("cannot read `{}`: {e}", pidfile.display()))?;
            let status = std::process::Command::new("kill")
                .arg(pid.trim())
                .status()
                .map_err(|e| format!("cannot run kill: {e}"))?;
            let _ = std::fs::remove_file(&pidfile);
            if !status.success() {
                return Err(format!("no registry with pid {} is running", pid.trim()));
            }
        }
        Cmd::Push {
            registry,
            repo,
            tag,
        } => {
            let layout = base::busybox().map_err(|m| m.to_string())?;
            let digest = oci::push(
                &layout,
                "latest",
                &format!("http://{registry}"),
                &repo,
                &tag,
            )?;
            println!("{registry}/{repo}:{tag}@{digest}");
        }
    }
    Ok(())
}

/// Prints one line per prerequisite of the end-to-end tests.
fn check() -> Result<(), String> {
    let user = TestUser::get();
    let checks: Vec<(&str, Result<String, Missing>)> = vec![
        (
            "test user",
            user.clone().map(|u| {
                format!(
                    "`{}` (uid {}, subuid {}+{})",
                    u.name, u.uid, u.subuid.start, u.subuid.count
                )
            }),
        ),
        (
            "newuidmap",
            tool("/usr/bin/newuidmap", "uidmap").map(|p| p.display().to_string()),
        ),
        (
            "user namespaces",
            user.and_then(userns)
                .map(|()| "the test user maps 65536 ids".to_owned()),
        ),
        (
            "registry",
            registry::available().map(|()| registry::REGISTRY_BIN.to_owned()),
        ),
        (
            "skopeo",
            tool("/usr/bin/skopeo", "skopeo").map(|p| p.display().to_string()),
        ),
        (
            "umoci",
            tool("/usr/bin/umoci", "umoci").map(|p| p.display().to_string()),
        ),
        (
            "qemu-aarch64",
            tool("/usr/bin/qemu-aarch64-static", "qemu-user-static")
                .map(|p| p.display().to_string()),
        ),
        (
            "busybox base",
            base::busybox().map(|l| l.root().display().to_string()),
        ),
    ];
    let mut missing = 0;
    for (name, result) in &checks {
        match result {
            Ok(what) => eprintln!("  ok       {name:<16} {what}"),
            Err(m) => {
                missing += 1;
                eprintln!(
                    "  MISSING  {name:<16} {}\n           {:<16} fix: {}",
                    m.what, "", m.fix
                );
            }
        }
    }
    if missing == 0 {
        eprintln!("all prerequisites of the end-to-end tests are present");
        Ok(())
    } else if gate::in_ci() {
        Err(format!(
            "{missing} prerequisite(s) missing; CI=true requires all of them"
        ))
    } else {
        eprintln!("{missing} prerequisite(s) missing: the tests that need them will be skipped");
        Ok(())
    }
}

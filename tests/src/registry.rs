//! A real OCI distribution registry (Debian's `docker-registry`) on 127.0.0.1.
//!
//! Each [`Registry`] gets a free port, its own storage directory and config, listens on
//! 127.0.0.1 only, and is killed when dropped. It is started through
//! `setpriv --pdeathsig KILL`, so even a test process killed by a timeout leaves no
//! registry behind.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gate::Missing;

/// The registry binary from Debian's `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry. Killed and reaped on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    /// Owns the directory when the registry made it itself (removed on drop).
    tmp: Option<tempfile::TempDir>,
}

/// How the registry process relates to its starter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Dies with the thread that started it (tests).
    Scoped,
    /// Runs on in its own session until stopped by pid (the demo script).
    Detached,
}

/// Whether the registry binary is installed.
pub fn available() -> Result<(), Missing> {
    if Path::new(REGISTRY_BIN).is_file() {
        Ok(())
    } else {
        Err(Missing::new(
            format!("`{REGISTRY_BIN}` is not installed"),
            "`apt-get install docker-registry` (as root; ./scripts/test does this)",
        ))
    }
}

/// The registry configuration: loopback only, plain http, storage in `storage`, no debug
/// listener, deletes enabled so tests can exercise them.
pub fn config_yaml(port: u16, storage: &Path) -> String {
    config_yaml_with(port, storage, &Setup::default())
}

/// Optional parts of a registry's configuration: authentication and TLS.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Basic authentication against this htpasswd file (bcrypt entries).
    pub htpasswd: Option<PathBuf>,
    /// Bearer-token authentication through a token service.
    pub token: Option<TokenAuth>,
    /// Serve https with this certificate and key (PEM files) instead of plain http.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The registry side of the token flow (distribution's `auth.token`).
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// URL of the token service, sent in `WWW-Authenticate`.
    pub realm: String,
    /// `service` (the token's `aud`).
    pub service: String,
    /// `issuer` (the token's `iss`).
    pub issuer: String,
    /// PEM certificate(s) the token's `x5c` chain must lead to.
    pub root_cert: PathBuf,
}

/// [`config_yaml`] with authentication and TLS from `setup`.
pub fn config_yaml_with(port: u16, storage: &Path, setup: &Setup) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
        storage.display()
    );
    if let Some((cert, key)) = &setup.tls {
        let _ = write!(
            y,
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
    }
    if let Some(path) = &setup.htpasswd {
        let _ = write!(
            y,
            "auth:\n  htpasswd:\n    realm: rbuild-e2e\n    path: {}\n",
            path.display()
        );
    } else if let Some(t) = &setup.token {
        let _ = write!(
            y,
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            t.realm,
            t.service,
            t.issuer,
            t.root_cert.display()
        );
    }
    y
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Registry {
    /// Starts a registry with storage in a fresh temporary directory (removed on drop).
    pub fn start() -> Result<Registry, String> {
        Registry::start_with(&Setup::default())
    }

    /// [`Registry::start`] with authentication and TLS from `setup`.
    pub fn start_with(setup: &Setup) -> Result<Registry, String> {
        available().map_err(|m| m.to_string())?;
        let tmp = tempfile::Builder::new()
            .prefix("rbuild-e2e-registry-")
            .tempdir()
            .map_err(|e| format!("cannot create the registry directory: {e}"))?;
        let mut reg = Registry::start_in_with(tmp.path(), Lifetime::Scoped, setup)?;
        reg.tmp = Some(tmp);
        Ok(reg)
    }

    /// Starts a registry whose config, storage and log live under `dir`.
    /// A port that turns out to be taken between probing and binding is retried.
    pub fn start_in(dir: &Path, lifetime: Lifetime) -> Result<Registry, String> {
        Registry::start_in_with(dir, lifetime, &Setup::default())
    }

    fn start_in_with(dir: &Path, lifetime: Lifetime, setup: &Setup) -> Result<Registry, String> {
        fs::create_dir_all(dir.join("storage"))
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("no free port on 127.0.0.1: {e}"))?;
            match Registry::spawn(dir, port, lifetime, setup) {
                Ok(reg) => return Ok(reg),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(dir: &Path, port: u16, lifetime: Lifetime, setup: &Setup) -> Result<Registry, String> {
        let config = dir.join("config.yml");
        fs::write(&config, config_yaml_with(port, &dir.join("storage"), setup))
            .map_err(|e| format!("cannot write `{}`: {e}", config.display()))?;
        let log_path = dir.join("registry.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("cannot create `{}`: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match lifetime {
            Lifetime::Scoped => {
                let mut c = Command::new("setpriv");
                c.args(["--pdeathsig", "KILL", "--", REGISTRY_BIN]);
                c
            }
            Lifetime::Detached => {
                let mut c = Command::new("setsid");
                c.arg(REGISTRY_BIN);
                c
            }
        };
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{REGISTRY_BIN}`: {e}"))?;
        let mut reg = Registry {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir: dir.to_path_buf(),
            tmp: None,
        };
        reg.wait_ready(Duration::from_secs(15), setup.tls.is_some())?;
        Ok(reg)
    }

    fn wait_ready(&mut self, timeout: Duration, tls: bool) -> Result<(), String> {
        let agent = crate::http::agent();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
                return Err(format!(
                    "the registry exited with {status} before answering:\n{log}"
                ));
            }
            // Plain http: `/v2/` answers (401 when authentication is on). TLS: the port
            // accepts connections (the harness's client speaks no TLS).
            let up = if tls {
                std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            } else {
                agent
                    .get(&format!("{}/v2/", self.url()))
                    .call()
                    .is_ok_and(|r| r.status() == 200 || r.status() == 401)
            };
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the registry did not answer /v2/ on {} within {timeout:?}",
                    self.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id of the registry.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding config, storage and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves a detached registry running (the caller stops it later by pid).
    pub fn release(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Registry authentication and TLS fixtures: self-signed certificates (made with the
//! `openssl` command), htpasswd files (bcrypt), a bearer-token service for distribution's
//! `auth.token`, `docker-credential-*` helper scripts, and a mount namespace in which a
//! test host name resolves to 127.0.0.1 (so a registry on loopback can be reached the way a
//! remote one is: over https, by name).
//!
//! The token service is a small std-only HTTP server on 127.0.0.1: it checks basic
//! credentials, grants the requested scopes to the one known user (nothing to anyone
//! else), and issues RS256 JWTs with an `x5c` header that the registry verifies against
//! the service's self-signed certificate. Signing goes through `openssl dgst`, so the
//! harness carries no crypto code of its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use crate::gate::Missing;
use crate::user::{TestUser, run_ok};

/// The name tests give a TLS registry; [`with_hosts`] makes it resolve to 127.0.0.1.
pub const TEST_HOST: &str = "registry.rbuild.test";

/// `openssl`, which certificate and token fixtures need.
pub fn openssl() -> Result<PathBuf, Missing> {
    crate::tool("/usr/bin/openssl", "openssl")
}

/// A self-signed server certificate and its key (PEM), valid for `dns` and 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a self-signed RSA certificate for `dns` in `dir` (files `<stem>.crt`, `<stem>.key`).
pub fn self_signed(dir: &Path, stem: &str, dns: &str) -> Result<Cert, String> {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    run_ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", &format!("/CN={dns}")])
            .args(["-addext", &format!("subjectAltName=DNS:{dns},IP:127.0.0.1")])
            // A server certificate, not a CA: rustls refuses a CA used as an end entity.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "keyUsage=digitalSignature,keyEncipherment"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]),
    )?;
    Ok(Cert { cert, key })
}

/// An htpasswd file at `path` with one bcrypt entry (cost 4: tests need no strength).
pub fn htpasswd(path: &Path, user: &str, password: &str) -> Result<(), String> {
    let hash = bcrypt::hash_with_salt(password, 4, *b"rbuild-e2e-salt!")
        .map_err(|e| format!("bcrypt: {e}"))?
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("{user}:{hash}\n"))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// Writes `docker-credential-<name>` into `bin` (mode 0755): for `get` it reads the server
/// from stdin and prints `user`/`secret` when the server is `server`, else the protocol's
/// "credentials not found" (exit 1).
pub fn credential_helper(
    bin: &Path,
    name: &str,
    server: &str,
    user: &str,
    secret: &str,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = bin.join(format!("docker-credential-{name}"));
    let script = format!(
        "#!/bin/sh\n\
         [ \"$1\" = get ] || exit 2\n\
         read -r server\n\
         if [ \"$server\" = '{server}' ]; then\n\
         \x20 printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n\
         \x20 exit 0\n\
         fi\n\
         echo 'credentials not found in native keychain'\n\
         exit 1\n"
    );
    std::fs::write(&path, script).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    Ok(path)
}

/// `program` as the test user inside a fresh user + mount namespace in which
/// `/etc/hosts` maps [`TEST_HOST`] to 127.0.0.1 (the file is written to `dir`). Nothing
/// outside the command sees the change.
pub fn with_hosts(user: &TestUser, dir: &Path, program: &Path) -> Result<Command, String> {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n127.0.0.1 {TEST_HOST}\n::1 localhost\n"),
    )
    .map_err(|e| format!("cannot write `{}`: {e}", hosts.display()))?;
    user.give(&hosts).map_err(|e| e.to_string())?;
    let mut cmd = user.command("unshare");
    cmd.args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(&hosts)
        .arg(program);
    Ok(cmd)
}

/// The users and passwords a [`TokenService`] accepts.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub password: String,
}

/// A running token service. Stops on drop.
pub struct TokenService {
    addr: SocketAddr,
    signer: Cert,
    log: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// One token request as the service saw it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The user of the basic credentials, if any and valid.
    pub user: Option<String>,
    /// Whether basic credentials were sent at all.
    pub had_credentials: bool,
    pub scopes: Vec<String>,
}

pub const SERVICE: &str = "rbuild-e2e-registry";
pub const ISSUER: &str = "rbuild-e2e-token-service";

impl TokenService {
    /// Starts the service on a free port of 127.0.0.1 with a signing certificate in `dir`.
    pub fn start(dir: &Path, account: Account) -> Result<TokenService, String> {
        let signer = self_signed(dir, "token-signer", "token-signer.rbuild.test")?;
        let der = run_ok(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&signer.cert)
                .arg("-out")
                .arg(dir.join("token-signer.der")),
        )
        .and_then(|_| std::fs::read(dir.join("token-signer.der")).map_err(|e| e.to_string()))?;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2, key) = (log.clone(), stop.clone(), signer.key.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = answer(conn, &account, &key, &x5c, &log2);
            }
        });
        Ok(TokenService {
            addr,
            signer,
            log,
            stop,
            thread: Some(thread),
        })
    }

    /// What the registry's `auth.token` needs to trust this service.
    pub fn registry_auth(&self) -> crate::registry::TokenAuth {
        crate::registry::TokenAuth {
            realm: format!("http://{}/token", self.addr),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            root_cert: self.signer.cert.clone(),
        }
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Signs `input` with RS256 through `openssl dgst`.
fn sign(key: &Path, input: &str) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start openssl: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(out.stdout)
}

fn answer(
    conn: TcpStream,
    account: &Account,
    key: &Path,
    x5c: &str,
    log: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(percent_decode)
        .collect();
    let creds = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let had_credentials = creds.is_some();
    let user = creds.and_then(|c| {
        let (u, p) = c.split_once(':')?;
        (u == account.user && p == account.password).then(|| u.to_owned())
    });
    if let Ok(mut l) = log.lock() {
        l.push(TokenRequest {
            user: user.clone(),
            had_credentials,
            scopes: scopes.clone(),
        });
    }
    if had_credentials && user.is_none() {
        let body =
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#;
        return respond(&mut out, "401 Unauthorized", body);
    }
    // The known user gets what it asks for; anonymous callers get no access at all.
    let access: Vec<serde_json::Value> = if user.is_some() {
        scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect()
    } else {
        Vec::new()
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": user.clone().unwrap_or_default(), "aud": SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(key, &signing_input).map_err(std::io::Error::other)?;
    let token = format!("{signing_input}.{}", b64url(&signature));
    let mut body = String::new();
    let _ = write!(
        body,
        r#"{{"token":"{token}","access_token":"{token}","expires_in":600}}"#
    );
    respond(&mut out, "200 OK", &body)
}

fn respond(out: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

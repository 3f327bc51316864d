//! An in-process registry that misbehaves on purpose, for what a real registry will not do:
//! corrupt blobs, 500s, connection resets mid-body, 401 loops, 429 with `Retry-After`,
//! missing or wrong `Docker-Content-Digest`.
//!
//! It serves one repository's manifests and blobs from memory over plain HTTP/1.1 on
//! 127.0.0.1 (keep-alive, `Range` on blobs), accepts pushes (upload sessions with `POST`,
//! `PATCH` with `Content-Range`, status `GET`, `PUT ?digest=`, `DELETE`; manifest `PUT`),
//! logs every request with its arrival time, and asks a test-supplied [`Hostile`] hook
//! first: the hook may answer instead (see [`Reply`]). Everything else follows the
//! distribution spec. The server thread stops on drop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::oci::sha256_digest;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What the hook answers instead of the normal behaviour.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Headers announcing `body.len()` bytes, then only the first `send` of them, then the
    /// connection is reset.
    Cut { body: Vec<u8>, send: usize },
    /// Close the connection without answering.
    Hangup,
    /// For an upload `PATCH` or `PUT`: store only the first `keep` bytes of the body in
    /// the session (as a registry does when the connection breaks mid-body), then close
    /// the connection without answering.
    Partial { keep: usize },
}

impl Reply {
    pub fn status(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Status {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }
}

/// The hook: sees each request and how many requests came before it; `None` lets the fake
/// answer normally.
pub type Hostile = dyn Fn(&Seen, usize) -> Option<Reply> + Send + Sync;

/// Content the fake serves for its one repository.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// Manifests by tag and by digest: (media type, bytes).
    pub manifests: BTreeMap<String, (String, Vec<u8>)>,
    /// Blobs by digest.
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Content {
    /// Adds a blob and returns its digest.
    pub fn blob(&mut self, bytes: Vec<u8>) -> String {
        let d = sha256_digest(&bytes);
        self.blobs.insert(d.clone(), bytes);
        d
    }

    /// Adds a manifest under its digest and `tag`; returns the digest.
    pub fn manifest(&mut self, tag: Option<&str>, media_type: &str, bytes: Vec<u8>) -> String {
        let d = sha256_digest(&bytes);
        if let Some(t) = tag {
            self.manifests
                .insert(t.to_owned(), (media_type.to_owned(), bytes.clone()));
        }
        self.manifests
            .insert(d.clone(), (media_type.to_owned(), bytes));
        d
    }
}

/// What was pushed to the fake: upload sessions in progress, finished blobs, manifests.
#[derive(Debug, Default)]
struct Pushed {
    next_session: usize,
    sessions: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: BTreeMap<String, Vec<u8>>,
}

/// A running fake registry.
pub struct FakeRegistry {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    pushed: Arc<Mutex<Pushed>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRegistry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeRegistry {
    /// Starts serving `content` on a free port of 127.0.0.1, asking `hostile` first.
    pub fn start(
        content: Content,
        hostile: impl Fn(&Seen, usize) -> Option<Reply> + Send + Sync + 'static,
    ) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let pushed = Arc::new(Mutex::new(Pushed::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((content, Box::new(hostile) as Box<Hostile>, pushed.clone()));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (log, shared) = (log2.clone(), shared.clone());
                std::thread::spawn(move || {
                    serve(conn, &log, &shared.0, &*shared.1, &shared.2, addr);
                });
            }
        });
        FakeRegistry {
            addr,
            log,
            pushed,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A blob pushed to the fake (complete and verified), by digest.
    pub fn pushed_blob(&self, digest: &str) -> Option<Vec<u8>> {
        lock(&self.pushed).blobs.get(digest).cloned()
    }

    /// A manifest pushed to the fake, by tag or digest.
    pub fn pushed_manifest(&self, reference: &str) -> Option<Vec<u8>> {
        lock(&self.pushed).manifests.get(reference).cloned()
    }

    /// Upload sessions still open (started, neither finished nor cancelled).
    pub fn open_sessions(&self) -> usize {
        lock(&self.pushed).sessions.len()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn serve(
    conn: TcpStream,
    log: &Mutex<Vec<Seen>>,
    content: &Content,
    hostile: &Hostile,
    pushed: &Mutex<Pushed>,
    addr: SocketAddr,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let seen = Seen {
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            at: Instant::now(),
        };
        let count = {
            let mut l = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            l.push(seen.clone());
            l.len() - 1
        };
        let reply =
            hostile(&seen, count).unwrap_or_else(|| normal(&seen, &body, content, pushed, addr));
        let head_only = seen.method == "HEAD";
        match reply {
            Reply::Status {
                status,
                headers,
                body,
            } => {
                if write_response(&mut out, status, &headers, &body, head_only).is_err() {
                    return;
                }
            }
            Reply::Cut { body, send } => {
                let _ = write_head(&mut out, 200, &[], body.len());
                let _ = out.write_all(&body[..send.min(body.len())]);
                let _ = out.flush();
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Reply::Hangup => {
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
            Reply::Partial { keep } => {
                let path = seen.path.split('?').next().unwrap_or(&seen.path);
                if let Some(id) = path.rsplit_once("/blobs/uploads/").map(|(_, id)| id)
                    && let Some(session) = lock(pushed).sessions.get_mut(id)
                {
                    session.extend_from_slice(&body[..keep.min(body.len())]);
                }
                let _ = out.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn write_head(
    out: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    len: usize,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn write_response(
    out: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    write_head(out, status, headers, body.len())?;
    if !head_only {
        out.write_all(body)?;
    }
    out.flush()
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#).into_bytes()
}

/// What a well-behaved registry answers.
fn normal(
    seen: &Seen,
    body: &[u8],
    content: &Content,
    pushed: &Mutex<Pushed>,
    _addr: SocketAddr,
) -> Reply {
    let path = seen.path.split('?').next().unwrap_or(&seen.path);
    if path == "/v2/" {
        return Reply::status(200, &[], "{}");
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Reply::status(404, &[], "");
    };
    if let Some(reply) = push_side(seen, rest, body, content, pushed) {
        return reply;
    }
    if let Some((_, reference)) = rest.rsplit_once("/manifests/") {
        return match content.manifests.get(reference) {
            Some((mt, bytes)) => Reply::Status {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), mt.clone()),
                    ("Docker-Content-Digest".into(), sha256_digest(bytes)),
                ],
                body: bytes.clone(),
            },
            None => Reply::Status {
                status: 404,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: error_body("MANIFEST_UNKNOWN", "manifest unknown"),
            },
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let Some(bytes) = content.blobs.get(digest) else {
            return Reply::Status {
                status: 404,
                headers: vec![],
                body: error_body("BLOB_UNKNOWN", "blob unknown"),
            };
        };
        let start = seen
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<usize>().ok());
        return match start {
            Some(s) if s < bytes.len() => Reply::Status {
                status: 206,
                headers: vec![
                    (
                        "Content-Range".into(),
                        format!("bytes {s}-{}/{}", bytes.len() - 1, bytes.len()),
                    ),
                    ("Docker-Content-Digest".into(), digest.to_owned()),
                ],
                body: bytes[s..].to_vec(),
            },
            _ => Reply::Status {
                status: 200,
                headers: vec![("Docker-Content-Digest".into(), digest.to_owned())],
                body: bytes.clone(),
            },
        };
    }
    Reply::status(404, &[], "")
}

/// `Range: 0-<last byte>` of an upload session, as the distribution registry writes it.
fn range_of(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

/// The push half of the protocol: upload sessions, blob `HEAD`, manifest `PUT`.
fn push_side(
    seen: &Seen,
    rest: &str,
    body: &[u8],
    content: &Content,
    pushed: &Mutex<Pushed>,
) -> Option<Reply> {
    let query = seen.path.split_once('?').map_or("", |(_, q)| q);
    let mut p = lock(pushed);
    if let Some((repo, id)) = rest.split_once("/blobs/uploads/") {
        let session_url = |id: &str| format!("/v2/{repo}/blobs/uploads/{id}");
        return Some(match (seen.method.as_str(), id) {
            ("POST", "") => {
                p.next_session += 1;
                let id = format!("session-{}", p.next_session);
                p.sessions.insert(id.clone(), Vec::new());
                Reply::status(
                    202,
                    &[("Location", &session_url(&id)), ("Range", "0-0")],
                    "",
                )
            }
            (_, id) if !p.sessions.contains_key(id) => Reply::Status {
                status: 404,
                headers: vec![],
                body: error_body("BLOB_UPLOAD_UNKNOWN", "blob upload unknown"),
            },
            ("GET", id) => {
                let len = p.sessions[id].len();
                Reply::status(
                    204,
                    &[("Location", &session_url(id)), ("Range", &range_of(len))],
                    "",
                )
            }
            ("DELETE", id) => {
                p.sessions.remove(id);
                Reply::status(204, &[], "")
            }
            ("PATCH", id) => {
                let have = p.sessions[id].len();
                let start = seen
                    .header("content-range")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<usize>().ok());
                if start.is_some_and(|s| s != have) {
                    return Some(Reply::Status {
                        status: 416,
                        headers: vec![("Range".into(), range_of(have))],
                        body: error_body("BLOB_UPLOAD_INVALID", "range does not match"),
                    });
                }
                let session = p.sessions.get_mut(id).expect("checked above");
                session.extend_from_slice(body);
                let len = session.len();
                Reply::status(
                    202,
                    &[("Location", &session_url(id)), ("Range", &range_of(len))],
                    "",
                )
            }
            ("PUT", id) => {
                let mut data = p.sessions.remove(id).unwrap_or_default();
                data.extend_from_slice(body);
                let want = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .map(|d| d.replace("%3A", ":").replace("%3a", ":"))
                    .unwrap_or_default();
                if sha256_digest(&data) != want {
                    return Some(Reply::Status {
                        status: 400,
                        headers: vec![],
                        body: error_body(
                            "DIGEST_INVALID",
                            "provided digest did not match uploaded content",
                        ),
                    });
                }
                p.blobs.insert(want.clone(), data);
                Reply::status(
                    201,
                    &[
                        ("Location", &format!("/v2/{repo}/blobs/{want}")),
                        ("Docker-Content-Digest", &want),
                    ],
                    "",
                )
            }
            _ => Reply::status(405, &[], ""),
        });
    }
    if seen.method == "HEAD"
        && let Some((_, digest)) = rest.rsplit_once("/blobs/")
    {
        let size = p
            .blobs
            .get(digest)
            .or_else(|| content.blobs.get(digest))
            .map(Vec::len);
        return Some(match size {
            // The fake sends no body for HEAD; Content-Length is what the body would be.
            Some(_) => Reply::status(200, &[("Docker-Content-Digest", digest)], ""),
            None => Reply::status(404, &[], ""),
        });
    }
    if seen.method == "PUT"
        && let Some((_, reference)) = rest.rsplit_once("/manifests/")
    {
        let digest = sha256_digest(body);
        p.manifests.insert(reference.to_owned(), body.to_vec());
        p.manifests.insert(digest.clone(), body.to_vec());
        return Some(Reply::status(
            201,
            &[("Docker-Content-Digest", &digest)],
            "",
        ));
    }
    None
}

/// Writes `content` (from [`tiny_image`]) as an OCI layout at `dir` whose `index.json`
/// tags the manifest `tag`.
pub fn write_layout(content: &Content, tag: &str, dir: &std::path::Path) -> std::io::Result<()> {
    let layout = crate::oci::Layout::create(dir)?;
    for bytes in content.blobs.values() {
        layout.put_blob("application/octet-stream", bytes)?;
    }
    let (media_type, bytes) = &content.manifests[tag];
    let mut d = layout.put_blob(media_type, bytes)?;
    d["annotations"] = serde_json::json!({ crate::oci::REF_NAME: tag });
    layout.write_index(&[d])
}

/// A small one-layer image for `linux/amd64`: (content, manifest digest, layer digest).
/// The layer is `layer_size` bytes of deterministic pseudo-random data (not a real tar:
/// pulls store blobs, they do not unpack them).
pub fn tiny_image(tag: &str, layer_size: usize) -> (Content, String, String) {
    let mut content = Content::default();
    let mut x: u32 = 0x1234_5678;
    let layer: Vec<u8> = (0..layer_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    let layer_len = layer.len();
    let layer_digest = content.blob(layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
    )
    .into_bytes();
    let config_len = config.len();
    let config_digest = content.blob(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{config_len}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":{layer_len}}}]}}"#,
        crate::oci::MEDIA_MANIFEST,
        crate::oci::MEDIA_CONFIG,
        crate::oci::MEDIA_LAYER_GZIP
    )
    .into_bytes();
    let manifest_digest = content.manifest(Some(tag), crate::oci::MEDIA_MANIFEST, manifest);
    (content, manifest_digest, layer_digest)
}

//! A fake GitHub REST API on 127.0.0.1, built from the documented payloads in
//! `reference/ci-integration.md` section 2, that **enforces** what the real API requires
//! and records every deviation as a violation (answered the way GitHub answers it: 401,
//! 403, 422). Tests assert [`FakeGithub::violations`] is empty.
//!
//! It serves under `/api/v3`, the path prefix of GitHub Enterprise Server, so a client
//! that drops the base URL's path fails here. What it checks:
//!
//! - `POST /app/installations/{id}/access_tokens`: `Authorization: Bearer <JWT>`; the JWT
//!   is verified with `openssl dgst` against the App's public key (an implementation
//!   independent of the runner's ring signer): header `alg` RS256, `iss` the App's id,
//!   `iat <= now`, `exp > now`, `exp - iat <= 600`. Answers `201 {token, expires_at}`.
//! - `POST /repos/{o}/{r}/check-runs` and `PATCH .../check-runs/{id}`: a token that may
//!   write checks (an installation token, or one given with [`FakeGithub::add_token`]);
//!   a read-only token gets 403 "Resource not accessible by integration", as a fork's
//!   `GITHUB_TOKEN` does. Bodies: at most 50 annotations, levels `notice|warning|failure`,
//!   title <= 255, summary and text <= 65535, message <= 64 KiB, lines from 1 with
//!   `end_line >= start_line`, `head_sha` 40 hex, a conclusion with `completed`.
//!   Annotations of every request are appended to the run.
//! - `POST .../actions/runners/generate-jitconfig` (repo and org): an installation token,
//!   `runner_group_id` (422 without, as GitHub), 1-100 labels, a name; answers the
//!   documented `201` with a fresh `encoded_jit_config`.
//! - `DELETE .../actions/runners/{id}`: 204.
//! - Every request sends `X-GitHub-Api-Version` (`2022-11-28` or `2026-03-10`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::gate::Missing;

/// API versions the fake accepts.
pub const API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];
/// The base path of GitHub Enterprise Server's REST API.
pub const PREFIX: &str = "/api/v3";

/// One check run as the fake holds it.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: u64,
    pub owner: String,
    pub repo: String,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
    /// Every annotation, in the order received (appended across requests).
    pub annotations: Vec<Value>,
    /// Annotations per request (create first).
    pub batches: Vec<usize>,
}

/// One `generate-jitconfig` request.
#[derive(Debug, Clone)]
pub struct JitRequest {
    /// `repos/OWNER/NAME` or `orgs/ORG`.
    pub scope: String,
    pub name: String,
    pub runner_group_id: u64,
    pub labels: Vec<String>,
    pub work_folder: Option<String>,
    pub runner_id: u64,
    pub encoded_jit_config: String,
    pub installation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    app_id: String,
    public_key: PathBuf,
    /// token -> installation id.
    installation_tokens: BTreeMap<String, u64>,
    /// Tokens given by the test: token -> may write checks.
    plain_tokens: BTreeMap<String, bool>,
    jwts_seen: Vec<Value>,
    runs: BTreeMap<u64, CheckRun>,
    jit: Vec<JitRequest>,
    deleted_runners: Vec<u64>,
    next_id: u64,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake server (stops when dropped).
#[derive(Debug)]
pub struct FakeGithub {
    addr: SocketAddr,
    shared: Shared,
    rt: Option<tokio::runtime::Runtime>,
    dir: tempfile::TempDir,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeGithub {
    /// Starts a fake with a fresh App key pair (`openssl genrsa`).
    pub fn start() -> Result<FakeGithub, Missing> {
        crate::auth::openssl()?;
        let dir = tempfile::tempdir().expect("a directory for the fake's keys");
        let key = dir.path().join("app.pem");
        let public = dir.path().join("app.pub.pem");
        let ok = Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&key)
            .arg("2048")
            .output()
            .is_ok_and(|o| o.status.success())
            && Command::new("openssl")
                .args(["rsa", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public)
                .output()
                .is_ok_and(|o| o.status.success());
        assert!(ok, "openssl cannot make the App key pair");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the fake GitHub");
        let shared: Shared = Arc::new(Mutex::new(Inner {
            app_id: "Iv23liRbuildTest".to_owned(),
            public_key: public,
            next_id: 4000,
            ..Inner::default()
        }));
        let app = Router::new()
            .route(
                &format!("{PREFIX}/app/installations/{{id}}/access_tokens"),
                post(access_token),
            )
            .route(
                &format!("{PREFIX}/repos/{{owner}}/{{repo}}/check-runs"),
                post(create_run),
            )
            .route(
                &format!("{PREFIX}/repos/{{owner}}/{{repo}}/check-runs/{{id}}"),
                patch(update_run),
            )
            .route(
                &format!("{PREFIX}/repos/{{owner}}/{{repo}}/actions/runners/generate-jitconfig"),
                post(jit_repo),
            )
            .route(
                &format!("{PREFIX}/orgs/{{org}}/actions/runners/generate-jitconfig"),
                post(jit_org),
            )
            .route(
                &format!("{PREFIX}/repos/{{owner}}/{{repo}}/actions/runners/{{id}}"),
                delete(delete_runner),
            )
            .route(
                &format!("{PREFIX}/orgs/{{org}}/actions/runners/{{id}}"),
                delete(delete_runner_org),
            )
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeGithub {
            addr,
            shared,
            rt: Some(rt),
            dir,
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT/api/v3`.
    pub fn url(&self) -> String {
        format!("http://{}{PREFIX}", self.addr)
    }

    /// The App's id (its client id) the JWT must name as `iss`.
    pub fn app_id(&self) -> String {
        lock(&self.shared).app_id.clone()
    }

    /// The App's private key (PKCS#1 PEM, as GitHub hands it out).
    pub fn app_key(&self) -> PathBuf {
        self.dir.path().join("app.pem")
    }

    /// Accepts `token` as a `GITHUB_TOKEN`; `checks_write` false makes it the read-only
    /// token of a pull request from a fork.
    pub fn add_token(&self, token: &str, checks_write: bool) {
        lock(&self.shared)
            .plain_tokens
            .insert(token.to_owned(), checks_write);
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.shared).violations.clone()
    }

    pub fn runs(&self) -> Vec<CheckRun> {
        lock(&self.shared).runs.values().cloned().collect()
    }

    /// Claims of every JWT presented, in order.
    pub fn jwts(&self) -> Vec<Value> {
        lock(&self.shared).jwts_seen.clone()
    }

    /// Installation tokens issued.
    pub fn issued_tokens(&self) -> usize {
        lock(&self.shared).installation_tokens.len()
    }

    pub fn jit_requests(&self) -> Vec<JitRequest> {
        lock(&self.shared).jit.clone()
    }

    pub fn deleted_runners(&self) -> Vec<u64> {
        lock(&self.shared).deleted_runners.clone()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })
            .to_string(),
    )
        .into_response()
}

fn violation(s: &Shared, what: String) {
    lock(s).violations.push(what);
}

fn check_version(s: &Shared, headers: &HeaderMap, route: &str) {
    match headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if API_VERSIONS.contains(&v) => {}
        other => violation(
            s,
            format!("{route}: X-GitHub-Api-Version is {other:?}, not one of {API_VERSIONS:?}"),
        ),
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("token "))
        .map(str::to_owned)
}

/// Verifies an RS256 JWT with `openssl dgst` and returns its claims, or why not.
fn verify_jwt(public_key: &Path, jwt: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, sig] = parts.as_slice() else {
        return Err("not three dot-separated parts".to_owned());
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = b64.decode(p).map_err(|e| format!("not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    let header = decode(h)?;
    let claims = decode(c)?;
    let sig = b64
        .decode(sig)
        .map_err(|e| format!("signature not base64url: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("data"), format!("{h}.{c}")).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("sig"), sig).map_err(|e| e.to_string())?;
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("data"))
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the signature does not verify with the App's public key: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok((header, claims))
}

async fn access_token(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Response {
    let route = "POST /app/installations/{id}/access_tokens";
    check_version(&s, &headers, route);
    let Some(jwt) = bearer(&headers) else {
        violation(&s, format!("{route}: no `Authorization: Bearer` JWT"));
        return error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let (public, app_id) = {
        let g = lock(&s);
        (g.public_key.clone(), g.app_id.clone())
    };
    let checked = tokio::task::spawn_blocking(move || verify_jwt(&public, &jwt))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let (header, claims) = match checked {
        Ok(v) => v,
        Err(e) => {
            violation(&s, format!("{route}: JWT rejected: {e}"));
            return error(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            );
        }
    };
    let mut problems = Vec::new();
    if header["alg"] != "RS256" {
        problems.push(format!("alg is {}, not RS256", header["alg"]));
    }
    if claims["iss"] != app_id.as_str() {
        problems.push(format!("iss is {}, not `{app_id}`", claims["iss"]));
    }
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    match (iat, exp) {
        (Some(iat), Some(exp)) => {
            let now = now();
            if iat > now {
                problems.push(format!("iat {iat} is in the future (now {now})"));
            }
            if exp <= now {
                problems.push(format!("exp {exp} has passed (now {now})"));
            }
            if exp.saturating_sub(iat) > 600 {
                problems.push(format!("exp - iat is {} s, more than 600", exp - iat));
            }
        }
        _ => problems.push("iat or exp missing or not a number".to_owned()),
    }
    lock(&s).jwts_seen.push(claims);
    if !problems.is_empty() {
        violation(&s, format!("{route}: {}", problems.join("; ")));
        return error(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        );
    }
    let token = format!("ghs_{}", random_hex(18));
    lock(&s).installation_tokens.insert(token.clone(), id);
    let expires = SystemTime::now() + Duration::from_hours(1);
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        json!({
            "token": token,
            "expires_at": humantime_rfc3339(expires),
            "permissions": {"checks": "write", "administration": "write"},
        })
        .to_string(),
    )
        .into_response()
}

fn humantime_rfc3339(t: SystemTime) -> String {
    crate::base::rfc3339(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
}

/// Who a token is: `Ok(Some(installation))`, `Ok(None)` for a plain token that may write
/// checks, `Err(response)` otherwise.
fn authorize(
    s: &Shared,
    headers: &HeaderMap,
    route: &str,
    needs_installation: bool,
) -> Result<Option<u64>, Box<Response>> {
    let Some(token) = bearer(headers) else {
        violation(s, format!("{route}: no token"));
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
        )));
    };
    let g = lock(s);
    if let Some(id) = g.installation_tokens.get(&token) {
        return Ok(Some(*id));
    }
    match g.plain_tokens.get(&token) {
        Some(true) if !needs_installation => Ok(None),
        // A read-only GITHUB_TOKEN: GitHub's answer, not a protocol violation.
        Some(_) => Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        ))),
        None => {
            drop(g);
            violation(s, format!("{route}: unknown token"));
            Err(Box::new(error(StatusCode::UNAUTHORIZED, "Bad credentials")))
        }
    }
}

/// Checks a check-run body; returns its problems.
fn check_body(body: &Value, creating: bool) -> Vec<String> {
    let mut p = Vec::new();
    if creating {
        if body["name"].as_str().is_none_or(str::is_empty) {
            p.push("`name` missing".to_owned());
        }
        let sha = body["head_sha"].as_str().unwrap_or_default();
        if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            p.push(format!("`head_sha` `{sha}` is not a 40-hex commit"));
        }
    } else if body.get("head_sha").is_some() {
        p.push("`head_sha` in an update".to_owned());
    }
    if let Some(status) = body.get("status") {
        if !["queued", "in_progress", "completed"].contains(&status.as_str().unwrap_or("")) {
            p.push(format!(
                "status {status} is not queued|in_progress|completed"
            ));
        }
        if status == "completed" && body.get("conclusion").is_none() {
            p.push("`completed` without a conclusion".to_owned());
        }
    }
    if let Some(c) = body.get("conclusion") {
        let ok = [
            "action_required",
            "cancelled",
            "failure",
            "neutral",
            "success",
            "skipped",
            "timed_out",
        ];
        if !ok.contains(&c.as_str().unwrap_or("")) {
            p.push(format!("conclusion {c} is not one GitHub accepts"));
        }
    }
    let Some(output) = body.get("output") else {
        return p;
    };
    for (k, max) in [("title", 255usize), ("summary", 65_535), ("text", 65_535)] {
        if let Some(v) = output.get(k) {
            match v.as_str() {
                Some(s) if k == "title" || s.len() <= max => {}
                Some(s) => p.push(format!("output.{k} is {} bytes, over {max}", s.len())),
                None => p.push(format!("output.{k} is not a string")),
            }
        } else if k != "text" {
            p.push(format!("output.{k} missing"));
        }
    }
    let annotations = output["annotations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if annotations.len() > 50 {
        p.push(format!(
            "{} annotations in one request, over 50",
            annotations.len()
        ));
    }
    for a in &annotations {
        let level = a["annotation_level"].as_str().unwrap_or("");
        if !["notice", "warning", "failure"].contains(&level) {
            p.push(format!("annotation_level `{level}`"));
        }
        if a["path"].as_str().is_none_or(str::is_empty) {
            p.push("annotation without a path".to_owned());
        }
        let (start, end) = (a["start_line"].as_u64(), a["end_line"].as_u64());
        match (start, end) {
            (Some(s), Some(e)) if s >= 1 && e >= s => {}
            _ => p.push(format!("bad lines {start:?}-{end:?}")),
        }
        if a["title"].as_str().is_some_and(|t| t.len() > 255) {
            p.push("annotation title over 255".to_owned());
        }
        for k in ["message", "raw_details"] {
            if a[k].as_str().is_some_and(|t| t.len() > 64 * 1024) {
                p.push(format!("annotation {k} over 64 KiB"));
            }
        }
        if a["message"].as_str().is_none_or(str::is_empty) {
            p.push("annotation without a message".to_owned());
        }
    }
    p
}

fn apply(run: &mut CheckRun, body: &Value) {
    if let Some(v) = body["status"].as_str() {
        v.clone_into(&mut run.status);
    }
    if let Some(c) = body["conclusion"].as_str() {
        run.conclusion = Some(c.to_owned());
        "completed".clone_into(&mut run.status);
    }
    if let Some(t) = body["output"]["title"].as_str() {
        t.clone_into(&mut run.title);
    }
    if let Some(t) = body["output"]["summary"].as_str() {
        t.clone_into(&mut run.summary);
    }
    if let Some(t) = body["output"]["text"].as_str() {
        run.text = Some(t.to_owned());
    }
    let new = body["output"]["annotations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    run.batches.push(new.len());
    run.annotations.extend(new);
}

async fn create_run(
    State(s): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = "POST /repos/{owner}/{repo}/check-runs";
    check_version(&s, &headers, route);
    if let Err(r) = authorize(&s, &headers, route, false) {
        return *r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        violation(&s, format!("{route}: body is not JSON"));
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let problems = check_body(&body, true);
    if !problems.is_empty() {
        violation(&s, format!("{route}: {}", problems.join("; ")));
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    }
    let mut g = lock(&s);
    g.next_id += 1;
    let id = g.next_id;
    let mut run = CheckRun {
        id,
        owner,
        repo,
        name: body["name"].as_str().unwrap_or_default().to_owned(),
        head_sha: body["head_sha"].as_str().unwrap_or_default().to_owned(),
        status: "queued".to_owned(),
        conclusion: None,
        title: String::new(),
        summary: String::new(),
        text: None,
        annotations: Vec::new(),
        batches: Vec::new(),
    };
    apply(&mut run, &body);
    let reply = json!({"id": id, "head_sha": run.head_sha, "status": run.status, "name": run.name});
    g.runs.insert(id, run);
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        reply.to_string(),
    )
        .into_response()
}

async fn update_run(
    State(s): State<Shared>,
    UrlPath((owner, repo, id)): UrlPath<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = "PATCH /repos/{owner}/{repo}/check-runs/{id}";
    check_version(&s, &headers, route);
    if let Err(r) = authorize(&s, &headers, route, false) {
        return *r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        violation(&s, format!("{route}: body is not JSON"));
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let problems = check_body(&body, false);
    if !problems.is_empty() {
        violation(&s, format!("{route}: {}", problems.join("; ")));
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    }
    let mut g = lock(&s);
    let Some(run) = g
        .runs
        .get_mut(&id)
        .filter(|r| r.owner == owner && r.repo == repo)
    else {
        drop(g);
        violation(&s, format!("{route}: no check run {id} in {owner}/{repo}"));
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    apply(run, &body);
    let reply = json!({"id": id, "status": run.status});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        reply.to_string(),
    )
        .into_response()
}

fn jit(s: &Shared, headers: &HeaderMap, scope: String, body: &Bytes) -> Response {
    let route = "POST .../actions/runners/generate-jitconfig";
    check_version(s, headers, route);
    let installation = match authorize(s, headers, route, true) {
        Ok(Some(i)) => i,
        Ok(None) => unreachable!("plain tokens never pass an installation-only check"),
        Err(r) => return *r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        violation(s, format!("{route}: body is not JSON"));
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(group) = body["runner_group_id"].as_u64() else {
        violation(s, format!("{route}: no runner_group_id"));
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"runner_group_id\" wasn't supplied.",
        );
    };
    let labels: Vec<String> = body["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    if labels.is_empty() || labels.len() > 100 || name.is_empty() {
        violation(
            s,
            format!("{route}: name `{name}` and {} labels", labels.len()),
        );
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request");
    }
    let mut g = lock(s);
    g.next_id += 1;
    let runner_id = g.next_id;
    let b64 = base64::engine::general_purpose::STANDARD;
    let files = json!({
        ".runner": b64.encode(json!({"agentId": runner_id, "agentName": name}).to_string()),
        ".credentials": b64.encode(format!("secret-{}", random_hex(16))),
    });
    let encoded = b64.encode(files.to_string());
    g.jit.push(JitRequest {
        scope,
        name: name.clone(),
        runner_group_id: group,
        labels: labels.clone(),
        work_folder: body["work_folder"].as_str().map(str::to_owned),
        runner_id,
        encoded_jit_config: encoded.clone(),
        installation,
    });
    let reply = json!({
        "runner": {
            "id": runner_id,
            "runner_group_id": group,
            "name": name,
            "os": "unknown",
            "status": "offline",
            "busy": false,
            "labels": labels.iter().enumerate().map(|(i, l)| json!({"id": i, "name": l, "type": "custom"})).collect::<Vec<_>>(),
        },
        "encoded_jit_config": encoded,
    });
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        reply.to_string(),
    )
        .into_response()
}

async fn jit_repo(
    State(s): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    jit(&s, &headers, format!("repos/{owner}/{repo}"), &body)
}

async fn jit_org(
    State(s): State<Shared>,
    UrlPath(org): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    jit(&s, &headers, format!("orgs/{org}"), &body)
}

fn remove_runner(s: &Shared, headers: &HeaderMap, id: u64) -> Response {
    let route = "DELETE .../actions/runners/{id}";
    check_version(s, headers, route);
    if let Err(r) = authorize(s, headers, route, true) {
        return *r;
    }
    lock(s).deleted_runners.push(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn delete_runner(
    State(s): State<Shared>,
    UrlPath((_owner, _repo, id)): UrlPath<(String, String, u64)>,
    headers: HeaderMap,
) -> Response {
    remove_runner(&s, &headers, id)
}

async fn delete_runner_org(
    State(s): State<Shared>,
    UrlPath((_org, id)): UrlPath<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    remove_runner(&s, &headers, id)
}

async fn unknown(
    State(s): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    violation(&s, format!("unexpected request {method} {uri}"));
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{b:02x}"));
        s
    })
}

/// `X-Hub-Signature-256` for `body` under `secret` (computed with `openssl dgst -hmac`,
/// independently of the runner's verifier).
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running openssl");
    child
        .stdin
        .take()
        .expect("a stdin pipe")
        .write_all(body)
        .expect("writing to openssl");
    let out = child.wait_with_output().expect("openssl ends");
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256={}",
        text.split_whitespace().next().unwrap_or_default()
    )
}

/// A `workflow_job` delivery body in the documented shape.
pub fn workflow_job(
    action: &str,
    job_id: u64,
    labels: &[&str],
    runner_name: Option<&str>,
) -> Vec<u8> {
    json!({
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": 2_202_229_078u64,
            "run_attempt": 1,
            "head_sha": "3484a3fb816e0859fd6e1cea078d76385ff50625",
            "status": match action { "completed" => "completed", "in_progress" => "in_progress", _ => "queued" },
            "conclusion": if action == "completed" { json!("success") } else { Value::Null },
            "name": "build",
            "steps": [],
            "labels": labels,
            "runner_id": runner_name.map(|_| 23),
            "runner_name": runner_name,
            "runner_group_id": runner_name.map(|_| 1),
            "runner_group_name": runner_name.map(|_| "Default"),
        },
        "repository": {
            "id": 186_853_002u64,
            "name": "Hello-World",
            "full_name": "Codertocat/Hello-World",
            "private": false,
            "owner": { "login": "Codertocat", "type": "User" },
        },
        "sender": { "login": "Codertocat", "id": 21_031_067, "type": "User" },
        "installation": { "id": 3_456_996 },
    })
    .to_string()
    .into_bytes()
}

//! The HTTP side of the distribution protocol: scheme choice, authentication (anonymous,
//! bearer tokens from `WWW-Authenticate` challenges, basic), retries with backoff and
//! jitter (`Retry-After` honoured), and error classification with host, status and the
//! registry's error code.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::auth::{self, Credential, Lookup};
use super::error::{RegistryCode, RegistryError};
use super::reference::ImageRef;

/// How hard to try before giving up.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one (with jitter).
    pub base_delay: Duration,
    /// Longest delay between attempts that rbuild chooses itself.
    pub max_delay: Duration,
    /// Longest `Retry-After` rbuild waits for; a registry asking for more gets an error.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_mins(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based): exponential with "equal jitter".
    pub(super) fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let jitter = 0.5 + 0.5 * random_unit();
        exp.mul_f64(jitter)
    }
}

/// A number in [0, 1) from a small xorshift generator (jitter needs no real randomness).
fn random_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| {
                u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(1)
            })
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

/// Settings of a registry client.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registries (`host[:port]`) reached over plain http. Loopback registries always are.
    pub insecure_registries: Vec<String>,
    /// Blob downloads in flight at once.
    pub max_concurrent_downloads: usize,
    /// Blob uploads in flight at once.
    pub max_concurrent_uploads: usize,
    /// Blobs larger than this are uploaded in chunks of this size (`PATCH` with
    /// `Content-Range`); smaller ones in one `PUT`.
    pub chunk_size: u64,
    pub retry: RetryPolicy,
    /// Connect timeout, and the longest a response may stall between two reads.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 3,
            chunk_size: 64 << 20,
            retry: RetryPolicy::default(),
            timeout: Duration::from_mins(1),
        }
    }
}

/// What a request needs the token to allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Pull,
    /// Push, optionally also pulling from another repository of the same registry (mount).
    Push {
        mount_from: Option<String>,
    },
}

impl Access {
    fn scopes(&self, repository: &str) -> Vec<String> {
        match self {
            Access::Pull => vec![format!("repository:{repository}:pull")],
            Access::Push { mount_from } => {
                let mut s = vec![format!("repository:{repository}:pull,push")];
                if let Some(from) = mount_from {
                    s.push(format!("repository:{from}:pull"));
                }
                s
            }
        }
    }
}

/// One request to a registry. `body` makes a fresh body for every attempt.
pub(crate) struct Call<'a> {
    pub image: &'a ImageRef,
    pub access: Access,
    pub method: Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<&'a (dyn Fn() -> reqwest::Body + Send + Sync)>,
}

impl Call<'_> {
    /// `GET /v2/...` for messages (no query string: upload URLs carry state tokens).
    pub(super) fn describe(&self) -> String {
        let path = reqwest::Url::parse(&self.url)
            .map_or_else(|_| self.url.clone(), |u| u.path().to_owned());
        format!("{} {path}", self.method)
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses the first challenge of a `WWW-Authenticate` header
/// (`Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        if rest.is_empty() {
            break;
        }
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Parses `Retry-After` (delta seconds or an HTTP date).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Builds an HTTP client; where the system has no CA certificates at all (a minimal image
/// such as busybox, where a CI job runs a nested rbuild), one that trusts no TLS server
/// instead of none: plain-http registries (loopback, `--insecure-registry`) still work, and
/// an https one fails its handshake with an unknown-issuer error.
pub(crate) fn without_system_roots_if_none(
    builder: impl Fn() -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, reqwest::Error> {
    builder().build().or_else(|e| {
        tracing::warn!(error = %e, "no usable system CA certificates; https registries will not be trusted (install `ca-certificates` or set `SSL_CERT_FILE`)");
        builder().tls_certs_only(std::iter::empty()).build()
    })
}

/// The registry client: one per command, shared by all requests of it.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    pub options: Options,
    /// Credential lookups, per `registry/repository`.
    credentials: Mutex<HashMap<String, Lookup>>,
    /// `Authorization` values, per host and scope set.
    tokens: Mutex<HashMap<(String, String), HeaderValue>>,
}

impl Client {
    pub(crate) fn new(options: Options) -> Result<Client, RegistryError> {
        // One TLS stack: rustls with ring (no C toolchain beyond ring's own, no OpenSSL).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(options.timeout.min(Duration::from_secs(30)))
                .read_timeout(options.timeout)
        };
        let http = without_system_roots_if_none(builder).map_err(RegistryError::Client)?;
        Ok(Client {
            http,
            options,
            credentials: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `http://host` or `https://host`, as `image`'s registry is reached.
    pub(super) fn base_url(&self, image: &ImageRef) -> String {
        let host = image.api_host();
        let plain = image.is_loopback()
            || self
                .options
                .insecure_registries
                .iter()
                .any(|r| r == image.registry() || r == host);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// Credentials for `image` (looked up once per repository).
    fn lookup(&self, image: &ImageRef) -> Result<Lookup, RegistryError> {
        let key = image.name();
        if let Some(l) = lock(&self.credentials).get(&key) {
            return Ok(l.clone());
        }
        let found = auth::lookup(image.registry(), image.repository()).map_err(|source| {
            RegistryError::Credentials {
                host: image.registry().to_owned(),
                source,
            }
        })?;
        lock(&self.credentials).insert(key, found.clone());
        Ok(found)
    }

    fn token_key(image: &ImageRef, access: &Access) -> (String, String) {
        (
            image.api_host().to_owned(),
            access.scopes(image.repository()).join(" "),
        )
    }

    /// Sends `call`, authenticating on a 401 challenge and retrying transient failures.
    /// Returns any response that is not an authentication failure, a rate limit or a
    /// transient server error; the caller checks the status it expects.
    pub(super) async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        self.send_with(call, true).await
    }

    /// [`Client::send`] without retrying connection failures and server errors: for upload
    /// requests, whose retry depends on what the registry kept (the caller asks it).
    /// Authentication and `429` are still handled (nothing was accepted then).
    pub(super) async fn send_once(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        self.send_with(call, false).await
    }

    async fn send_with(
        &self,
        call: &Call<'_>,
        retry_failures: bool,
    ) -> Result<Response, RegistryError> {
        let host = call.image.api_host().to_owned();
        let same_host = reqwest::Url::parse(&call.url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| (h.to_owned(), u.port_or_known_default()))
            })
            .is_some_and(|(h, port)| {
                let want = reqwest::Url::parse(&self.base_url(call.image)).ok();
                want.is_some_and(|w| w.host_str() == Some(&h) && w.port_or_known_default() == port)
            });
        let key = Self::token_key(call.image, &call.access);
        let policy = self.options.retry.clone();
        let mut authed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(call.method.clone(), &call.url)
                .headers(call.headers.clone());
            // Credentials only ever go to the registry itself, never to a redirect or an
            // upload location on another host.
            if same_host && let Some(value) = lock(&self.tokens).get(&key).cloned() {
                req = req.header(AUTHORIZATION, value);
            }
            if let Some(body) = call.body {
                req = req.body(body());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(detail) = tls_problem(&e) {
                        return Err(RegistryError::Tls {
                            host,
                            detail,
                            source: e,
                        });
                    }
                    if retry_failures && attempt < policy.attempts && transient(&e) {
                        let delay = policy.delay(attempt - 1);
                        tracing::debug!(%host, request = %call.describe(), error = %e, ?delay, "retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(RegistryError::Connect {
                        host,
                        request: call.describe(),
                        attempts: attempt,
                        source: e,
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authed && same_host {
                authed = true;
                attempt -= 1;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                if let Some(challenge) = challenge {
                    self.authenticate(call, &challenge, &key).await?;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(self.unauthorized(call, resp).await);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let fits = retry_after.is_none_or(|d| d <= policy.max_retry_after);
                if attempt < policy.attempts && fits {
                    let delay = retry_after.unwrap_or_else(|| policy.delay(attempt - 1));
                    tracing::debug!(%host, request = %call.describe(), ?delay, "rate limited; waiting");
                    drop(resp);
                    tokio::time::sleep(delay).await;
                    continue;
                }
                let code = read_code(resp).await;
                return Err(RegistryError::RateLimited {
                    host,
                    request: call.describe(),
                    code,
                    retry_after,
                    attempts: attempt,
                });
            }
            if retry_failures
                && matches!(status.as_u16(), 408 | 500 | 502 | 503 | 504)
                && attempt < policy.attempts
            {
                let delay = policy.delay(attempt - 1);
                tracing::debug!(%host, request = %call.describe(), %status, ?delay, "retrying");
                drop(resp);
                tokio::time::sleep(delay).await;
                continue;
            }
            if status.is_server_error() {
                return Err(self.status_error(call, resp, attempt).await);
            }
            return Ok(resp);
        }
    }

    /// The error for an unexpected status (after the caller decided it is one).
    pub(super) async fn status_error(
        &self,
        call: &Call<'_>,
        resp: Response,
        attempts: u32,
    ) -> RegistryError {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return self.unauthorized(call, resp).await;
        }
        let code = read_code(resp).await;
        let host = call.image.api_host().to_owned();
        if status == StatusCode::NOT_FOUND {
            return RegistryError::NotFound {
                host,
                request: call.describe(),
                what: call.image.to_string(),
                status: status_text(status),
                code,
            };
        }
        // Go's https server answers a plain-http request with this 400.
        if status == StatusCode::BAD_REQUEST
            && call.url.starts_with("http://")
            && code
                .message
                .as_deref()
                .is_some_and(|m| m.contains("HTTP request to an HTTPS server"))
        {
            return RegistryError::HttpToHttps {
                host,
                request: call.describe(),
                loopback: call.image.is_loopback(),
            };
        }
        RegistryError::Status {
            host,
            request: call.describe(),
            status: status_text(status),
            code,
            attempts,
        }
    }

    async fn unauthorized(&self, call: &Call<'_>, resp: Response) -> RegistryError {
        let status = status_text(resp.status());
        let challenge_error = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .and_then(|c| c.params.get("error").cloned());
        let mut code = read_code(resp).await;
        if code.code.is_none() {
            code.code = challenge_error;
        }
        let credentials = match self.lookup(call.image) {
            Ok(l) => l.source,
            Err(e) => e.to_string(),
        };
        RegistryError::Unauthorized {
            host: call.image.api_host().to_owned(),
            request: call.describe(),
            status,
            code,
            credentials,
            push: matches!(call.access, Access::Push { .. }),
        }
    }

    /// Answers a challenge: fetches a bearer token, or prepares basic credentials.
    async fn authenticate(
        &self,
        call: &Call<'_>,
        challenge: &Challenge,
        key: &(String, String),
    ) -> Result<(), RegistryError> {
        let lookup = self.lookup(call.image)?;
        let host = call.image.api_host().to_owned();
        let value = match challenge.scheme.as_str() {
            "basic" => match &lookup.credential {
                Some(Credential::Basic { username, password }) => {
                    basic_value(username, password.expose())
                }
                // Nothing to answer with: the caller's retry gets the 401 and reports it.
                _ => return Ok(()),
            },
            "bearer" => {
                let Some(realm) = challenge.params.get("realm") else {
                    return Err(RegistryError::Protocol {
                        host,
                        request: call.describe(),
                        detail: "its bearer challenge names no `realm`".to_owned(),
                    });
                };
                let token = self
                    .fetch_token(
                        call,
                        realm,
                        challenge.params.get("service"),
                        &key.1,
                        &lookup,
                    )
                    .await?;
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    RegistryError::Protocol {
                        host,
                        request: call.describe(),
                        detail:
                            "its token service returned a token that is not a valid header value"
                                .to_owned(),
                    }
                })?
            }
            _ => return Ok(()),
        };
        lock(&self.tokens).insert(key.clone(), value);
        Ok(())
    }

    async fn fetch_token(
        &self,
        call: &Call<'_>,
        realm: &str,
        service: Option<&String>,
        scopes: &str,
        lookup: &Lookup,
    ) -> Result<String, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let host = call.image.api_host().to_owned();
        let mut url = reqwest::Url::parse(realm).map_err(|_| RegistryError::Protocol {
            host: host.clone(),
            request: call.describe(),
            detail: format!("its token realm `{realm}` is not a URL"),
        })?;
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (h, _) => h.unwrap_or_default().to_owned(),
        };
        let token_request = format!("GET {}://{realm_host}{}", url.scheme(), url.path());
        let policy = self.options.retry.clone();
        let mut form = String::new();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for scope in scopes.split(' ') {
                q.append_pair("scope", scope);
            }
        }
        let identity = match &lookup.credential {
            Some(Credential::IdentityToken(t)) => Some(t.clone()),
            _ => None,
        };
        if let Some(token) = &identity {
            // OAuth2 refresh-token grant, as Docker does with identity tokens.
            let mut body =
                reqwest::Url::parse("http://x/").map_err(|_| RegistryError::Protocol {
                    host: host.clone(),
                    request: token_request.clone(),
                    detail: "internal URL".into(),
                })?;
            {
                let mut q = body.query_pairs_mut();
                q.append_pair("grant_type", "refresh_token");
                q.append_pair("refresh_token", token.expose());
                q.append_pair("client_id", "rbuild");
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                q.append_pair("scope", scopes);
            }
            body.query().unwrap_or_default().clone_into(&mut form);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = if identity.is_some() {
                let mut bare = url.clone();
                bare.set_query(None);
                self.http
                    .post(bare)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.clone())
            } else {
                self.http.get(url.clone())
            };
            if let Some(Credential::Basic { username, password }) = &lookup.credential {
                req = req.header(AUTHORIZATION, basic_value(username, password.expose()));
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < policy.attempts && transient(&e) => {
                    tokio::time::sleep(policy.delay(attempt - 1)).await;
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Connect {
                        host: realm_host,
                        request: token_request,
                        attempts: attempt,
                        source: e,
                    });
                }
            };
            let status = resp.status();
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < policy.attempts
            {
                let wait = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .filter(|d| *d <= policy.max_retry_after)
                    .unwrap_or_else(|| policy.delay(attempt - 1));
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let code = read_code(resp).await;
                return Err(RegistryError::Unauthorized {
                    host: host.clone(),
                    request: token_request,
                    status: status_text(status),
                    code,
                    credentials: lookup.source.clone(),
                    push: matches!(call.access, Access::Push { .. }),
                });
            }
            if !status.is_success() {
                let code = read_code(resp).await;
                return Err(RegistryError::Status {
                    host: realm_host,
                    request: token_request,
                    status: status_text(status),
                    code,
                    attempts: attempt,
                });
            }
            let bytes = read_limited(resp, 1 << 20)
                .await
                .map_err(|e| RegistryError::Connect {
                    host: realm_host.clone(),
                    request: token_request.clone(),
                    attempts: attempt,
                    source: e,
                })?;
            let answer: TokenAnswer =
                serde_json::from_slice(&bytes).map_err(|_| RegistryError::Protocol {
                    host: realm_host.clone(),
                    request: token_request.clone(),
                    detail: "its token answer is not JSON with `token` or `access_token`"
                        .to_owned(),
                })?;
            return answer
                .token
                .or(answer.access_token)
                .filter(|t| !t.is_empty())
                .ok_or(RegistryError::Protocol {
                    host: realm_host,
                    request: token_request,
                    detail: "its token answer has no `token` or `access_token`".to_owned(),
                });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn basic_value(username: &str, password: &str) -> HeaderValue {
    let raw = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {raw}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

/// `401 Unauthorized`.
pub(crate) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Whether a request error is worth retrying (connection trouble, timeouts, resets).
pub(crate) fn transient(e: &reqwest::Error) -> bool {
    !e.is_builder() && !e.is_redirect() && tls_problem(e).is_none()
}

/// A TLS failure and its plain-words description, found in the error chain.
pub(crate) fn tls_problem(e: &reqwest::Error) -> Option<String> {
    let mut chain = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let _ = write!(chain, "{err}; ");
        cur = err.source();
    }
    let c = chain.to_ascii_lowercase();
    if c.contains("invalidcontenttype")
        || c.contains("corrupt message")
        || c.contains("wrong version number")
    {
        Some("the server did not answer in TLS; it probably speaks plain http".to_owned())
    } else if c.contains("certificate") {
        Some("its certificate is not trusted or does not match the host name".to_owned())
    } else if c.contains("handshake") {
        Some("the TLS handshake failed".to_owned())
    } else {
        None
    }
}

/// Reads at most `limit` bytes of a response body.
pub(crate) async fn read_limited(
    mut resp: Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// The first error code and message of a registry error body, or the start of a text body.
pub(crate) async fn read_code(resp: Response) -> RegistryCode {
    let bytes = read_limited(resp, 64 << 10).await.unwrap_or_default();
    parse_code(&bytes)
}

pub(crate) fn parse_code(bytes: &[u8]) -> RegistryCode {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(bytes)
        && let Some(first) = env.errors.into_iter().next()
    {
        return RegistryCode {
            code: first.code,
            message: first.message,
        };
    }
    let text = String::from_utf8_lossy(bytes);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text: String = text.chars().take(200).collect();
    RegistryCode {
        code: None,
        message: (!text.is_empty()).then_some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        assert_eq!(c.params["error"], "insufficient_scope");
        let b = parse_challenge(r#"Basic realm="Registry Realm \"x\"""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm \"x\"");
        assert_eq!(
            parse_challenge("Bearer realm=unquoted, service=s")
                .unwrap()
                .params["service"],
            "s"
        );
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let later = SystemTime::now() + Duration::from_mins(2);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_mins(2),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..10 {
            let d = p.delay(retry);
            let full = p.base_delay.saturating_mul(1 << retry).min(p.max_delay);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let c = parse_code(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(c.code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(
            c.to_string(),
            " (code `MANIFEST_UNKNOWN`: manifest unknown)"
        );
        let t = parse_code(b"<html>\n  bad gateway </html>");
        assert_eq!(t.message.as_deref(), Some("<html> bad gateway </html>"));
    }

    #[test]
    fn loopback_and_insecure_registries_use_http() {
        let c = Client::new(Options {
            insecure_registries: vec!["reg.internal:5000".into()],
            ..Options::default()
        })
        .unwrap();
        let base = |r: &str| c.base_url(&r.parse().unwrap());
        assert_eq!(base("127.0.0.1:5000/a"), "http://127.0.0.1:5000");
        assert_eq!(base("localhost/a"), "http://localhost");
        assert_eq!(base("reg.internal:5000/a"), "http://reg.internal:5000");
        assert_eq!(base("reg.internal/a"), "https://reg.internal");
        assert_eq!(base("busybox"), "https://registry-1.docker.io");
    }
}

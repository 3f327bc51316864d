//! GitHub credentials: a token given as is (`GITHUB_TOKEN` in a workflow), or a GitHub
//! App that signs a JWT and exchanges it for an installation token.
//!
//! The App JWT is RS256 over `{"iat", "exp", "iss"}` with `iat` 60 s in the past (clock
//! drift) and `exp - iat` exactly 600 s, GitHub's maximum; `iss` is the App's client id
//! or numeric app id, as configured. It is signed here with `ring` (already the TLS
//! crypto provider) rather than through `jsonwebtoken`, whose pure-Rust RSA backend carries
//! an open timing advisory and whose other backend needs a C toolchain.
//!
//! `POST /app/installations/{id}/access_tokens` returns `{"token", "expires_at"}`; tokens
//! live about an hour and are reused until five minutes before `expires_at`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::config::Secret;

/// A JWT must expire at most this long after it was issued.
pub const MAX_JWT_LIFETIME: Duration = Duration::from_mins(10);
/// How far in the past `iat` is put, for clocks that run ahead of GitHub's.
pub const CLOCK_DRIFT: Duration = Duration::from_mins(1);
/// An installation token is renewed when it has less than this left.
pub const RENEW_BEFORE: Duration = Duration::from_mins(5);

/// Why App credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the private key is not PEM (`-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN PRIVATE KEY-----`)"
    )]
    NotPem,
    #[error("the PEM block is not valid base64")]
    Base64,
    #[error("the private key is not an RSA key ring accepts ({0})")]
    Rejected(String),
}

/// A GitHub App: its id (client id or app id) and RSA private key.
pub struct AppKey {
    /// `iss` of the JWT: the client id (`Iv23...`) or the numeric app id.
    pub issuer: String,
    key: ring::signature::RsaKeyPair,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("issuer", &self.issuer)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AppKey {
    /// Parses the private key GitHub hands out (PKCS#1 PEM), or a PKCS#8 PEM.
    pub fn from_pem(issuer: impl Into<String>, pem: &str) -> Result<AppKey, KeyError> {
        let (label, der) = pem_block(pem)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => ring::signature::RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => ring::signature::RsaKeyPair::from_pkcs8(&der),
            _ => return Err(KeyError::NotPem),
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(AppKey {
            issuer: issuer.into(),
            key,
        })
    }

    /// A JWT for `Authorization: Bearer` on `/app/...` endpoints, issued at `now`.
    pub fn jwt(&self, now: SystemTime) -> Secret {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let iat = now.saturating_sub(CLOCK_DRIFT.as_secs());
        let exp = iat + MAX_JWT_LIFETIME.as_secs();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = b64
            .encode(serde_json::json!({ "iat": iat, "exp": exp, "iss": self.issuer }).to_string());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA PKCS#1 signing cannot fail with a buffer of the modulus length");
        Secret::new(format!("{signing_input}.{}", b64.encode(sig)))
    }
}

/// The label and DER bytes of the first PEM block.
fn pem_block(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let mut lines = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "));
    let first = lines.next().ok_or(KeyError::NotPem)?;
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or(KeyError::NotPem)?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for l in lines {
        if l == end {
            closed = true;
            break;
        }
        body.push_str(l);
    }
    if !closed {
        return Err(KeyError::NotPem);
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| KeyError::Base64)?;
    Ok((label, der))
}

/// An installation token and when it stops working.
#[derive(Debug, Clone)]
pub struct InstallationToken {
    pub token: Secret,
    pub expires_at: SystemTime,
}

impl InstallationToken {
    /// Whether it is still good for a while at `now`.
    pub fn fresh(&self, now: SystemTime) -> bool {
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > RENEW_BEFORE)
    }
}

/// Installation tokens by installation id, reused while fresh.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<BTreeMap<u64, InstallationToken>>,
}

impl TokenCache {
    pub fn get(&self, installation: u64, now: SystemTime) -> Option<Secret> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&installation)
            .filter(|t| t.fresh(now))
            .map(|t| t.token.clone())
    }

    pub fn put(&self, installation: u64, token: InstallationToken) {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(installation, token);
    }

    /// Forgets a token GitHub refused.
    pub fn forget(&self, installation: u64) {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&installation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit test key, generated with `openssl genrsa -traditional 2048` for these
    /// tests only.
    pub(crate) const TEST_KEY: &str = include_str!("testdata/app-key.pem");

    fn decode(part: &str) -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn the_jwt_is_rs256_with_issuer_and_at_most_ten_minutes() {
        let key = AppKey::from_pem("Iv23liTEST", TEST_KEY).unwrap();
        let now = UNIX_EPOCH + Duration::from_hours(500_000);
        let jwt = key.jwt(now);
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode(parts[0]),
            serde_json::json!({"alg": "RS256", "typ": "JWT"})
        );
        let claims = decode(parts[1]);
        assert_eq!(claims["iss"], "Iv23liTEST");
        assert_eq!(claims["iat"], 1_800_000_000 - 60);
        assert_eq!(claims["exp"], 1_800_000_000 - 60 + 600);
        // The signature verifies with the public half.
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            ring::signature::KeyPair::public_key(&key.key).as_ref(),
        );
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        assert!(!format!("{key:?}").contains("MII"));
    }

    #[test]
    fn keys_that_are_not_rsa_pem_are_named() {
        assert!(matches!(
            AppKey::from_pem("1", "not a key"),
            Err(KeyError::NotPem)
        ));
        assert!(matches!(
            AppKey::from_pem(
                "1",
                "-----BEGIN RSA PRIVATE KEY-----\n!!!\n-----END RSA PRIVATE KEY-----\n"
            ),
            Err(KeyError::Base64)
        ));
        assert!(matches!(
            AppKey::from_pem(
                "1",
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            ),
            Err(KeyError::Rejected(_))
        ));
    }

    #[test]
    fn tokens_are_reused_until_five_minutes_before_they_expire() {
        let cache = TokenCache::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        cache.put(
            7,
            InstallationToken {
                token: Secret::new("ghs_a"),
                expires_at: t0 + Duration::from_hours(1),
            },
        );
        assert_eq!(cache.get(7, t0).unwrap().expose(), "ghs_a");
        assert!(cache.get(7, t0 + Duration::from_mins(56)).is_none());
        assert!(cache.get(8, t0).is_none());
        cache.forget(7);
        assert!(cache.get(7, t0).is_none());
    }
}

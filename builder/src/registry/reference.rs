//! Image references (`busybox`, `docker.io/library/busybox:1.36`,
//! `host:port/ns/name@sha256:...`), normalised the way Docker does it.
//!
//! The grammar is the distribution spec's (lowercase path components joined by `.`, `_`,
//! `__` or dashes; tags of up to 128 word characters, dots and dashes; `algorithm:hex`
//! digests), parsed by hand; the Docker Hub rules are Docker's (a first component without
//! `.` or `:` and other than `localhost` is a path on `docker.io`; one-component Docker Hub
//! names live under `library/`; `index.docker.io` is `docker.io`; the default tag is
//! `latest`). The type adds what the registry client needs (the API host, loopback
//! detection).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::store::Digest;

/// The API host of Docker Hub (`docker.io` is only its name).
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a valid image reference: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl ImageRef {
    /// The registry name (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) requests go to: `registry-1.docker.io` for Docker Hub.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at `digest` (tag dropped).
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8, `::1`): Docker
    /// reaches those over plain http without being told.
    pub fn is_loopback(&self) -> bool {
        host_is_loopback(&self.registry)
    }
}

/// Whether `host[:port]` names a loopback address.
pub fn host_is_loopback(host_port: &str) -> bool {
    if let Ok(ip) = host_port.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host_port
            }
        })
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: s.to_owned(),
            reason,
        };
        if s.contains("://") {
            return Err(err(
                "a registry reference has no scheme (write `host/name:tag`; an OCI layout is `oci-layout://PATH`)"
                    .to_owned(),
            ));
        }
        parse(s).map_err(err)
    }
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn path_component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A registry host: domain components (`[a-zA-Z0-9]` with inner `-`) joined by `.`, or a
/// bracketed IPv6 address, with an optional `:port`.
fn domain_ok(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                // Anything after `]` other than `:port` is invalid: report it as an
                // empty port, which the check below rejects.
                let port = match tail.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if tail.is_empty() => None,
                    None => Some(""),
                };
                (None, port)
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|c| {
                let b = c.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            })
    })
}

/// The reference grammar of the distribution spec, normalised as Docker does (a hand-written
/// parser: the regular expression it is usually written as costs tens of milliseconds to
/// compile, once per process, which every `rbuild build` would pay).
fn parse(s: &str) -> Result<ImageRef, String> {
    if s.is_empty() {
        return Err("it is empty".to_owned());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    // A tag follows the last `:` after the last `/` (a `:` before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let b = t.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !ok {
            return Err(format!("`{t}` is not a valid tag"));
        }
    }
    let digest = match digest {
        Some(d) => Some(
            d.parse::<Digest>()
                .map_err(|e| format!("`{d}` is not a valid digest: {e}"))?,
        ),
        None => None,
    };
    if name.is_empty() {
        return Err("it has no repository name".to_owned());
    }
    if name.len() > 255 {
        return Err("the name is longer than 255 characters".to_owned());
    }
    let (domain, remote) = match name.split_once('/') {
        Some((first, more))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('[') =>
        {
            (first.to_owned(), more.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    };
    if !domain_ok(&domain) {
        return Err(format!("`{domain}` is not a valid registry host"));
    }
    if remote.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lowercase".to_owned());
    }
    if !remote.split('/').all(path_component_ok) {
        return Err(format!("`{remote}` is not a valid repository name"));
    }
    let domain = if domain == "index.docker.io" {
        "docker.io".to_owned()
    } else {
        domain
    };
    let repository = if domain == "docker.io" && !remote.contains('/') {
        format!("library/{remote}")
    } else {
        remote
    };
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, None) => Some("latest".to_owned()),
        (None, Some(_)) => None,
    };
    Ok(ImageRef {
        registry: domain,
        repository,
        tag,
        digest,
    })
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            r("docker.io/library/busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            r("index.docker.io/foo/bar").to_string(),
            "docker.io/foo/bar:latest"
        );
        assert_eq!(r("foo/bar").registry(), "docker.io");
        assert_eq!(r("foo/bar").api_host(), "registry-1.docker.io");
        assert_eq!(r("localhost/foo").registry(), "localhost");
        assert_eq!(r("localhost:5000/foo").registry(), "localhost:5000");
        let pinned = r(
            "127.0.0.1:5000/ns/name@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        assert_eq!(pinned.registry(), "127.0.0.1:5000");
        assert_eq!(pinned.repository(), "ns/name");
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.reference(), pinned.digest().unwrap().to_string());
        let both =
            r("q.io/a:t@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(both.tag(), Some("t"));
        assert!(both.reference().starts_with("sha256:"));
    }

    #[test]
    fn rejects_bad_references_with_a_reason() {
        let e = "Busybox".parse::<ImageRef>().unwrap_err();
        assert!(e.reason.contains("lowercase"), "{e}");
        assert!("docker://busybox".parse::<ImageRef>().is_err());
        assert!("a@sha256:abc".parse::<ImageRef>().is_err());
        assert!("".parse::<ImageRef>().is_err());
    }

    #[test]
    fn the_grammar_is_the_distribution_specs() {
        for ok in [
            "a",
            "a_b",
            "a__b",
            "a---b",
            "a.b/c-d/e_f",
            "localhost:5000/x",
            "my-registry.example.com:443/team/app:v1.2-rc_3",
            "[::1]:5000/x:tag",
            "x:_tag",
        ] {
            assert!(ok.parse::<ImageRef>().is_ok(), "{ok}");
        }
        for bad in [
            "a_",
            "-a",
            "a/_b",
            "a..b",
            "a.-b",
            "a:",
            "a:.tag",
            "a:-tag",
            "a:t@",
            "host:port/x",
            "[::1/x",
            "a/",
            "/a",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
        assert_eq!(r("x:_tag").tag(), Some("_tag"));
        assert_eq!(r("localhost/x").repository(), "x");
        assert_eq!(r("my.io/x").repository(), "x");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "localhost.example.com",
        ] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }
}

//! Image references (`busybox`, `docker.io/library/busybox:1.36`,
//! `host:port/ns/name@sha256:...`), normalised the way Docker does it.
//!
//! The grammar and the Docker Hub rules (a first component without `.` or `:` and other than
//! `localhost` is a path on `docker.io`; one-component Docker Hub names live under
//! `library/`; `index.docker.io` is `docker.io`; the default tag is `latest`) come from
//! `oci-spec`'s parser; this type keeps that crate out of rbuild's API and adds what the
//! registry client needs (the API host, loopback detection).

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
        let parsed: oci_spec::distribution::Reference = s.parse().map_err(|e| {
            let reason = if s.chars().any(|c| c.is_ascii_uppercase()) {
                "repository names must be lowercase".to_owned()
            } else {
                format!("{e}")
            };
            err(reason)
        })?;
        let digest = parsed
            .digest()
            .map(|d| d.parse::<Digest>().map_err(|e| err(e.to_string())))
            .transpose()?;
        Ok(ImageRef {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest,
        })
    }
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

//! Platforms (`os/arch[/variant]`): parsing, normalisation and matching against index
//! entries, with the aliases Docker and containerd accept.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A platform as OCI descriptors and configs carry it, normalised: `arm64` has variant
/// `v8` implied (stored as no variant), `arm` defaults to `v7`, `x86_64` is `amd64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// A normalised platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (os, architecture, variant) = normalize(os, architecture, variant);
        Platform {
            os,
            architecture,
            variant,
            os_version: None,
        }
    }

    /// The platform rbuild runs on (`linux/amd64` on an x86_64 Linux host).
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, std::env::consts::ARCH, None)
    }

    /// The same platform normalised (for descriptors read from registries).
    #[must_use]
    pub fn normalized(&self) -> Platform {
        let mut p = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        p.os_version.clone_from(&self.os_version);
        p
    }

    /// Whether an index entry for `candidate` satisfies a request for `self`.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let c = candidate.normalized();
        self.os == c.os && self.architecture == c.architecture && self.variant == c.variant
    }
}

/// Normalises `os`, `arch` and `variant` the way containerd does: lower case; `x86_64` is
/// `amd64` (variant `v1` the default, dropped), `aarch64` is `arm64` (variant `v8` the
/// default, dropped), `armhf` is `arm/v7`, `armel` `arm/v6`, `arm` defaults to `v7` and
/// `arm/7` is `arm/v7`, `i386`..`i686` and `x86` are `386`. Shared by every platform type
/// (image indexes, Dockerfile `--platform` flags, the sandbox's architectures).
pub fn normalize(os: &str, arch: &str, variant: Option<&str>) -> (String, String, Option<String>) {
    let os = os.to_ascii_lowercase();
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .map(str::to_ascii_lowercase)
        .filter(|v| !v.is_empty());
    let (arch, variant) = match (arch.as_str(), variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", Some("v1") | None) => ("amd64".to_owned(), None),
        ("x86_64" | "x86-64" | "amd64", Some(v)) => ("amd64".to_owned(), Some(v.to_owned())),
        ("aarch64" | "arm64", Some("v8" | "8") | None) => ("arm64".to_owned(), None),
        ("aarch64" | "arm64", Some(v)) => ("arm64".to_owned(), Some(v.to_owned())),
        ("armhf", _) | ("arm", None) => ("arm".to_owned(), Some("v7".to_owned())),
        ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
        ("arm", Some(v)) => (
            "arm".to_owned(),
            Some(if v.starts_with('v') {
                v.to_owned()
            } else {
                format!("v{v}")
            }),
        ),
        ("i386" | "i486" | "i586" | "i686" | "x86" | "386", _) => ("386".to_owned(), None),
        (a, v) => (a.to_owned(), v.map(str::to_owned)),
    };
    (os, arch, variant)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a string is not a platform.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a platform (expected `os/arch[/variant]`, e.g. `linux/arm64`)")]
pub struct PlatformError(pub String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_aliases() {
        assert_eq!(p("linux/arm64/v8"), p("linux/arm64"));
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v3").to_string(), "linux/amd64/v3");
    }

    #[test]
    fn matches_index_entries_with_or_without_the_implied_variant() {
        let entry = |arch: &str, variant: Option<&str>| Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
            os_version: None,
        };
        assert!(p("linux/arm64").matches(&entry("arm64", Some("v8"))));
        assert!(p("linux/arm64/v8").matches(&entry("arm64", None)));
        assert!(!p("linux/arm64").matches(&entry("amd64", None)));
        assert!(!p("linux/arm/v6").matches(&entry("arm", Some("v7"))));
        assert!(p("linux/arm").matches(&entry("arm", Some("v7"))));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
            "",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}

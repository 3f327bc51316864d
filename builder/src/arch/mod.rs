//! Platforms, and how a binary of a foreign platform gets executed.
//!
//! This module owns the table of supported platforms (OCI `os/architecture/variant`, the
//! qemu-user name, what `uname -m` prints), parsing and normalising `--platform` values,
//! telling which platforms this host runs natively (by executing a tiny probe binary, as
//! BuildKit does), and choosing how a foreign platform is executed:
//!
//! 1. **Private registration** (kernel >= 6.7): the sandbox mounts its own `binfmt_misc`
//!    inside its user namespace and registers the qemu interpreter with the `F` flag, using
//!    the registration string the distribution ships (`/usr/lib/binfmt.d/qemu-<arch>.conf`).
//!    Nothing changes on the host.
//! 2. **Host registration**: an enabled `qemu-<arch>` entry in the host's
//!    `/proc/sys/fs/binfmt_misc`, when a private one is not possible.
//! 3. Otherwise the `binfmt-not-registered` failure, naming the exact fix.
//!
//! The choice is a pure function of gathered facts ([`BinfmtFacts`], [`choose`]); the
//! sandbox applies it. This module never writes to the host's binfmt table, mounts
//! nothing and has no `unsafe`.

mod probe;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use probe::runs_natively;

/// One platform rbuild knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchInfo {
    /// OCI `architecture`.
    pub arch: &'static str,
    /// OCI `variant`, when the architecture has variants (the default one is listed first).
    pub variant: Option<&'static str>,
    /// qemu-user's name for it (`qemu-<name>`, `/usr/lib/binfmt.d/qemu-<name>.conf`).
    pub qemu: &'static str,
    /// What `uname -m` prints on it.
    pub uname: &'static str,
}

/// Every platform rbuild can run, native or under qemu-user. For an architecture with
/// variants, the first entry is its default variant.
pub const ARCHES: &[ArchInfo] = &[
    ArchInfo {
        arch: "amd64",
        variant: None,
        qemu: "x86_64",
        uname: "x86_64",
    },
    ArchInfo {
        arch: "arm64",
        variant: Some("v8"),
        qemu: "aarch64",
        uname: "aarch64",
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v7"),
        qemu: "arm",
        uname: "armv7l",
    },
    ArchInfo {
        arch: "arm",
        variant: Some("v6"),
        qemu: "arm",
        uname: "armv7l",
    },
    ArchInfo {
        arch: "386",
        variant: None,
        qemu: "i386",
        uname: "i686",
    },
    ArchInfo {
        arch: "ppc64le",
        variant: None,
        qemu: "ppc64le",
        uname: "ppc64le",
    },
    ArchInfo {
        arch: "s390x",
        variant: None,
        qemu: "s390x",
        uname: "s390x",
    },
    ArchInfo {
        arch: "riscv64",
        variant: None,
        qemu: "riscv64",
        uname: "riscv64",
    },
    ArchInfo {
        arch: "mips64le",
        variant: None,
        qemu: "mips64el",
        uname: "mips64",
    },
    ArchInfo {
        arch: "loong64",
        variant: None,
        qemu: "loongarch64",
        uname: "loongarch64",
    },
];

/// An OCI platform: `os/architecture[/variant]`, normalised (`aarch64` -> `arm64`,
/// `arm64` -> variant `v8`, `arm` -> variant `v7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A `--platform` value rbuild cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("`{0}` is not a platform (expected `os/arch[/variant]`, e.g. `linux/arm64`)")]
    Malformed(String),
    #[error("platform `{0}` is not supported: only `linux` images can run")]
    UnsupportedOs(String),
    #[error("platform `{0}` is not supported (known: {known})", known = known_platforms())]
    UnknownArch(String),
}

/// `linux/amd64, linux/arm64, ...` for messages.
pub fn known_platforms() -> String {
    ARCHES
        .iter()
        .map(|a| {
            Platform {
                os: "linux".into(),
                arch: a.arch.into(),
                variant: a.variant.map(Into::into),
            }
            .to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Platform {
    /// The platform this rbuild binary was built for (the host's).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "arm" => "arm",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64" => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::normalize("linux", arch, None)
    }

    /// Builds a normalised platform from OCI fields (as found in image indexes and configs).
    pub fn normalize(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let (os, arch, variant) = crate::image::normalize_platform(os, arch, variant);
        // Here `arm64` names its variant: every arm64 the sandbox runs is `v8`.
        let variant = if arch == "arm64" {
            Some("v8".to_owned())
        } else {
            variant
        };
        Platform { os, arch, variant }
    }

    /// What rbuild knows about running this platform, if anything.
    pub fn info(&self) -> Option<&'static ArchInfo> {
        if self.os != "linux" {
            return None;
        }
        ARCHES
            .iter()
            .find(|a| a.arch == self.arch && a.variant == self.variant.as_deref())
            .or_else(|| {
                // Unlisted variants of a listed architecture (amd64/v3) run like the default.
                ARCHES.iter().find(|a| a.arch == self.arch)
            })
    }

    /// Whether an image built for `self` satisfies a request for `wanted` (same os and
    /// architecture; variants must agree when both name one).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.arch == wanted.arch
            && match (&self.variant, &wanted.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError::Malformed(s.to_owned()));
        }
        let platform = match parts.as_slice() {
            [arch] => Platform::normalize("linux", arch, None),
            [os, arch] => Platform::normalize(os, arch, None),
            [os, arch, variant] => Platform::normalize(os, arch, Some(variant)),
            _ => return Err(PlatformError::Malformed(s.to_owned())),
        };
        if platform.os != "linux" {
            return Err(PlatformError::UnsupportedOs(s.to_owned()));
        }
        if platform.info().is_none() {
            return Err(PlatformError::UnknownArch(s.to_owned()));
        }
        Ok(platform)
    }
}

impl fmt::Display for Platform {
    /// `linux/arm64` (the default `v8` of arm64 is left out, as Docker does),
    /// `linux/arm/v7`, `linux/amd64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) if !(self.arch == "arm64" && v == "v8") => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// How binaries of a platform are executed in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Execution {
    /// The CPU runs them.
    Native,
    /// A private `binfmt_misc` instance in the sandbox's user namespace, with this entry.
    /// `host_fallback` is used when mounting the private instance fails at run time.
    Private {
        registration: Registration,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_fallback: Option<HostEntry>,
    },
    /// The host's own registration.
    Host { entry: HostEntry },
}

impl Execution {
    /// The interpreter binaries run through, when emulated.
    pub fn interpreter(&self) -> Option<&Path> {
        match self {
            Execution::Native => None,
            Execution::Private { registration, .. } => Some(&registration.interpreter),
            Execution::Host { entry } => Some(&entry.interpreter),
        }
    }
}

/// A `binfmt_misc` registration line (`:name:type:offset:magic:mask:interpreter:flags`),
/// kept verbatim apart from the flags, which always include `F` (the interpreter is
/// opened at registration, so it need not exist inside the image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Entry name, e.g. `qemu-aarch64`.
    pub name: String,
    /// The full line to write to `register`.
    pub line: String,
    /// The interpreter path in the line.
    pub interpreter: PathBuf,
    /// The flags in the line.
    pub flags: String,
    /// The file the line came from.
    pub source: PathBuf,
}

/// Why a registration file could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RegistrationError {
    #[error("`{0}` holds no binfmt_misc registration line")]
    Empty(PathBuf),
    #[error(
        "`{path}` line `{line}` is not a binfmt_misc registration (`:name:type:offset:magic:mask:interpreter:flags`)"
    )]
    Malformed { path: PathBuf, line: String },
}

impl Registration {
    /// Parses a `binfmt.d` file (comments and blank lines allowed, first entry used).
    pub fn parse(text: &str, source: &Path) -> Result<Registration, RegistrationError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .ok_or_else(|| RegistrationError::Empty(source.to_path_buf()))?;
        let malformed = || RegistrationError::Malformed {
            path: source.to_path_buf(),
            line: line.to_owned(),
        };
        // The first character is the field separator (`:` by convention).
        let sep = line.chars().next().ok_or_else(malformed)?;
        let fields: Vec<&str> = line[sep.len_utf8()..].split(sep).collect();
        if fields.len() != 7 || fields[0].is_empty() || fields[5].is_empty() {
            return Err(malformed());
        }
        if !matches!(fields[1], "M" | "E") {
            return Err(malformed());
        }
        let mut flags: String = fields[6].chars().filter(|c| !c.is_whitespace()).collect();
        if !flags.contains('F') {
            flags.push('F');
        }
        let mut rebuilt = String::new();
        for f in &fields[..6] {
            rebuilt.push(sep);
            rebuilt.push_str(f);
        }
        rebuilt.push(sep);
        rebuilt.push_str(&flags);
        Ok(Registration {
            name: fields[0].to_owned(),
            line: rebuilt,
            interpreter: PathBuf::from(fields[5]),
            flags,
            source: source.to_path_buf(),
        })
    }
}

/// An entry of the host's `/proc/sys/fs/binfmt_misc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    pub flags: String,
}

impl HostEntry {
    /// Parses the text of `/proc/sys/fs/binfmt_misc/<name>`.
    pub fn parse(name: &str, text: &str) -> HostEntry {
        let mut entry = HostEntry {
            name: name.to_owned(),
            enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
        };
        for line in text.lines() {
            if line.trim() == "enabled" {
                entry.enabled = true;
            } else if let Some(i) = line.strip_prefix("interpreter ") {
                entry.interpreter = PathBuf::from(i.trim());
            } else if let Some(f) = line.strip_prefix("flags:") {
                f.trim().clone_into(&mut entry.flags);
            }
        }
        entry
    }
}

/// Where the host's binfmt table lives.
pub const HOST_BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Everything [`choose`] needs to know about the host, gathered by [`BinfmtFacts::gather`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtFacts {
    /// Whether binaries of the platform run without emulation (host arch, or a probe ran).
    pub native: bool,
    /// `(major, minor)` of the running kernel.
    pub kernel: Option<(u32, u32)>,
    /// The distribution's registration for the platform, if a file was found, and whether
    /// its interpreter exists.
    pub registration: Option<Result<(Registration, bool), RegistrationError>>,
    /// The host's entry for the platform, if it has one.
    pub host_entry: Option<HostEntry>,
}

/// Where distributions keep qemu-user's registration strings, in search order.
pub const BINFMT_CONF_DIRS: &[&str] = &[
    "/usr/lib/binfmt.d",
    "/etc/binfmt.d",
    "/usr/local/lib/binfmt.d",
];

impl BinfmtFacts {
    /// Looks at this host: native probe, kernel version, registration file, host entry.
    pub fn gather(platform: &Platform) -> BinfmtFacts {
        let info = platform.info();
        let native = runs_natively(platform);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_kernel_version(&r));
        let qemu = info.map_or("", |i| i.qemu);
        let registration = BINFMT_CONF_DIRS
            .iter()
            .flat_map(|d| {
                [
                    Path::new(d).join(format!("qemu-{qemu}.conf")),
                    Path::new(d).join(format!("qemu-{qemu}-static.conf")),
                ]
            })
            .find(|p| p.is_file())
            .and_then(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                Some(Registration::parse(&text, &p).map(|r| {
                    let exists = r.interpreter.is_file();
                    (r, exists)
                }))
            });
        let host_entry =
            std::fs::read_to_string(Path::new(HOST_BINFMT_DIR).join(format!("qemu-{qemu}")))
                .ok()
                .map(|t| HostEntry::parse(&format!("qemu-{qemu}"), &t));
        BinfmtFacts {
            native,
            kernel,
            registration,
            host_entry,
        }
    }
}

/// `(major, minor)` from a kernel release string such as `6.18.44-fc-v857`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The first kernel that lets an unprivileged user namespace mount its own `binfmt_misc`.
pub const PRIVATE_BINFMT_KERNEL: (u32, u32) = (6, 7);

/// Why a platform cannot be executed here (`binfmt-not-registered`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot run `{platform}` binaries on this `{host}` host: {reason}")]
pub struct NotRunnable {
    pub platform: String,
    pub host: String,
    pub reason: String,
    /// The exact fix.
    pub hint: String,
}

impl NotRunnable {
    /// Catalog id of this failure.
    pub const ID: &'static str = "binfmt-not-registered";
}

/// Chooses how `platform` runs, from facts about the host (pure; see the module doc).
pub fn choose(platform: &Platform, facts: &BinfmtFacts) -> Result<Execution, NotRunnable> {
    if facts.native {
        return Ok(Execution::Native);
    }
    let info = platform.info();
    let qemu = info.map_or("?", |i| i.qemu);
    let host_entry = facts
        .host_entry
        .clone()
        .filter(|e| e.enabled && !e.interpreter.as_os_str().is_empty());
    let new_kernel = facts.kernel.is_some_and(|k| k >= PRIVATE_BINFMT_KERNEL);
    let fail = |reason: String, hint: String| NotRunnable {
        platform: platform.to_string(),
        host: Platform::host().to_string(),
        reason,
        hint,
    };
    let install = format!(
        "install qemu-user's interpreters: as root, `apt-get install qemu-user-static` (it ships `/usr/lib/binfmt.d/qemu-{qemu}.conf`)"
    );
    let host_fix = format!(
        "register the interpreter on the host once, as root: `update-binfmts --enable qemu-{qemu}` (Debian) or `docker run --privileged --rm tonistiigi/binfmt --install {}`",
        platform.arch
    );
    match &facts.registration {
        Some(Ok((reg, true))) if new_kernel => Ok(Execution::Private {
            registration: reg.clone(),
            host_fallback: host_entry,
        }),
        _ if host_entry.is_some() => Ok(Execution::Host {
            entry: host_entry.expect("checked just above"),
        }),
        Some(Ok((reg, true))) => Err(fail(
            format!(
                "kernel {} cannot register `{}` inside a user namespace (needs >= {}.{}) and the host has no `qemu-{qemu}` entry",
                facts
                    .kernel
                    .map_or("(unknown)".to_owned(), |(a, b)| format!("{a}.{b}")),
                reg.name,
                PRIVATE_BINFMT_KERNEL.0,
                PRIVATE_BINFMT_KERNEL.1
            ),
            host_fix,
        )),
        Some(Ok((reg, false))) => Err(fail(
            format!(
                "`{}` names the interpreter `{}`, which does not exist",
                reg.source.display(),
                reg.interpreter.display()
            ),
            install,
        )),
        Some(Err(e)) => Err(fail(e.to_string(), install)),
        None => Err(fail(
            format!(
                "no qemu-user registration for `qemu-{qemu}` was found in {}",
                BINFMT_CONF_DIRS.join(", ")
            ),
            install,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_type_normalises_the_same_aliases() {
        for (input, want) in [
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("Linux/AARCH64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/i686", "linux/386"),
            ("linux/i486", "linux/386"),
            ("linux/riscv64", "linux/riscv64"),
        ] {
            let image: crate::image::Platform = input.parse().unwrap();
            assert_eq!(image.to_string(), want, "image: {input}");
            let frontend = crate::dockerfile::Platform::parse(input).unwrap();
            assert_eq!(frontend.to_string(), want, "Dockerfile: {input}");
            let parts: Vec<&str> = input.split('/').collect();
            let sandbox = Platform::normalize(parts[0], parts[1], parts.get(2).copied());
            assert_eq!(sandbox.to_string(), want, "sandbox: {input}");
        }
    }

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn platforms_normalise_like_docker() {
        assert_eq!(p("linux/arm64"), p("linux/arm64/v8"));
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("arm64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/i386").to_string(), "linux/386");
        assert_eq!(p("linux/riscv64").info().unwrap().qemu, "riscv64");
        assert_eq!(p("linux/arm/v6").info().unwrap().qemu, "arm");
        assert_eq!(p("linux/amd64/v3").info().unwrap().uname, "x86_64");
    }

    #[test]
    fn bad_platforms_say_what_is_wrong() {
        assert!(matches!(
            "linux/".parse::<Platform>(),
            Err(PlatformError::Malformed(_))
        ));
        assert!(matches!(
            "windows/amd64".parse::<Platform>(),
            Err(PlatformError::UnsupportedOs(_))
        ));
        let err = "linux/vax".parse::<Platform>().unwrap_err();
        assert!(err.to_string().contains("linux/arm64"), "{err}");
    }

    #[test]
    fn variants_must_agree_only_when_both_are_named() {
        let any_arm = Platform {
            os: "linux".into(),
            arch: "arm".into(),
            variant: None,
        };
        assert!(p("linux/arm/v7").satisfies(&any_arm));
        assert!(!p("linux/arm/v6").satisfies(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").satisfies(&p("linux/arm64")));
    }

    const DEBIAN_AARCH64: &str = r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF";

    #[test]
    fn debian_registration_is_kept_verbatim() {
        let path = Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
        let reg = Registration::parse(&format!("# comment\n\n{DEBIAN_AARCH64}\n"), path).unwrap();
        assert_eq!(reg.name, "qemu-aarch64");
        assert_eq!(reg.line, DEBIAN_AARCH64);
        assert_eq!(reg.flags, "OPF");
        assert_eq!(
            reg.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
    }

    #[test]
    fn registration_without_f_gets_it() {
        let reg = Registration::parse(
            ":qemu-arm:M::\\x7fELF:\\xff\\xff:/usr/bin/qemu-arm:P",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(reg.flags, "PF");
        assert!(reg.line.ends_with(":PF"));
        assert!(Registration::parse(":bad:M::x", Path::new("x")).is_err());
        assert!(Registration::parse("# only a comment", Path::new("x")).is_err());
    }

    #[test]
    fn host_entry_parses_proc_text() {
        let e = HostEntry::parse(
            "qemu-aarch64",
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n",
        );
        assert!(e.enabled);
        assert_eq!(e.flags, "POCF");
        assert_eq!(
            e.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        assert!(!HostEntry::parse("x", "disabled\n").enabled);
    }

    fn facts(kernel: (u32, u32), conf: bool, interp: bool, host: bool) -> BinfmtFacts {
        BinfmtFacts {
            native: false,
            kernel: Some(kernel),
            registration: conf.then(|| {
                Ok((
                    Registration::parse(
                        DEBIAN_AARCH64,
                        Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf"),
                    )
                    .unwrap(),
                    interp,
                ))
            }),
            host_entry: host.then(|| HostEntry {
                name: "qemu-aarch64".into(),
                enabled: true,
                interpreter: "/usr/bin/qemu-aarch64-static".into(),
                flags: "F".into(),
            }),
        }
    }

    #[test]
    fn choice_prefers_private_then_host_then_fails_with_a_fix() {
        let arm = p("linux/arm64");
        let native = BinfmtFacts {
            native: true,
            ..facts((5, 10), false, false, false)
        };
        assert_eq!(choose(&arm, &native).unwrap(), Execution::Native);

        let private = choose(&arm, &facts((6, 7), true, true, true)).unwrap();
        let Execution::Private {
            registration,
            host_fallback,
        } = private
        else {
            panic!("expected a private registration, got {private:?}")
        };
        assert_eq!(registration.name, "qemu-aarch64");
        assert!(host_fallback.is_some());

        // Old kernel: only the host's entry can help.
        assert!(matches!(
            choose(&arm, &facts((6, 6), true, true, true)).unwrap(),
            Execution::Host { .. }
        ));
        let old = choose(&arm, &facts((6, 1), true, true, false)).unwrap_err();
        assert!(old.reason.contains("needs >= 6.7"), "{old}");
        assert!(
            old.hint.contains("update-binfmts --enable qemu-aarch64"),
            "{}",
            old.hint
        );

        // No qemu installed at all.
        let none = choose(&arm, &facts((6, 18), false, false, false)).unwrap_err();
        assert!(
            none.hint.contains("apt-get install qemu-user-static"),
            "{}",
            none.hint
        );
        let no_interp = choose(&arm, &facts((6, 18), true, false, false)).unwrap_err();
        assert!(no_interp.reason.contains("does not exist"), "{no_interp}");
        assert_eq!(NotRunnable::ID, "binfmt-not-registered");
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v857\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }
}

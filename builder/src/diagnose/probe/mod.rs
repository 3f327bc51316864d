//! Host probes: everything `rbuild doctor` checks before a rootless, multi-arch build.
//!
//! Probing is split in two so the judgement is testable without a special host:
//! [`facts`] gathers plain data (sysctls, `/etc/subuid`, helper binaries and their
//! privileges, mount table, cgroup, state-directory file system, binfmt registrations) and
//! runs live probes in throw-away user namespaces through `unshare(1)` (a child process:
//! this module creates no namespace itself, see `ARCHITECTURE.md`); [`checks`] turns the
//! facts into [`Check`]s, each with a catalog [`Diagnostic`] when something is wrong.

pub mod checks;
pub mod facts;
pub mod live;

use std::io::{self, Write};

use serde::Serialize;

use super::{Diagnostic, Severity};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Could not be checked here (a tool is missing, or it does not apply).
    Skipped,
    /// Worth knowing; builds work.
    Notice,
    /// Builds work, but something will degrade or may fail.
    Warning,
    /// Builds will fail until this is fixed.
    Error,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Notice => "notice",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

/// One check of the host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable id of the check, e.g. `userns`, `binfmt:linux/arm64`.
    pub id: String,
    /// What was checked, for people.
    pub name: String,
    pub status: Status,
    /// The finding in one line.
    pub summary: String,
    /// What was observed (values, paths, probe output).
    pub facts: Vec<String>,
    /// The catalog id when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    #[serde(skip)]
    pub diagnostic: Option<Diagnostic>,
}

impl Check {
    pub(crate) fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            name: name.into(),
            status: Status::Ok,
            summary: String::new(),
            facts: Vec::new(),
            cause: None,
            diagnostic: None,
        }
    }

    pub(crate) fn ok(mut self, summary: impl Into<String>) -> Self {
        self.status = Status::Ok;
        self.summary = summary.into();
        self
    }

    pub(crate) fn skipped(mut self, summary: impl Into<String>) -> Self {
        self.status = Status::Skipped;
        self.summary = summary.into();
        self
    }

    pub(crate) fn fact(mut self, fact: impl Into<String>) -> Self {
        self.facts.push(fact.into());
        self
    }

    /// Marks the check failed (or degraded) with a catalog diagnostic, whose evidence is
    /// the check's facts.
    pub(crate) fn problem(mut self, mut d: Diagnostic) -> Self {
        self.status = match d.severity {
            Severity::Error => Status::Error,
            Severity::Warning => Status::Warning,
            Severity::Notice => Status::Notice,
        };
        self.summary.clone_from(&d.message);
        self.cause = super::Cause::from_id(&d.id).map(super::Cause::id);
        d.evidence.extend(self.facts.iter().cloned());
        self.diagnostic = Some(d);
        self
    }
}

/// Who and where the probes ran.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub user: String,
    pub uid: u32,
    pub kernel: String,
    pub arch: String,
    pub state_dir: String,
}

/// Everything `rbuild doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: Host,
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed with an error.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Error)
    }

    /// The diagnostics of every check that found something, errors first.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut v: Vec<Diagnostic> = self
            .checks
            .iter()
            .filter_map(|c| c.diagnostic.clone())
            .collect();
        v.sort_by_key(|d| std::cmp::Reverse(d.severity));
        v
    }

    /// The `--json` document: host, checks, overall verdict and the diagnostics (the
    /// `--diagnostics-file` records).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "host": self.host,
            "checks": self.checks,
            "diagnostics": self.diagnostics(),
        })
    }

    /// The table for people: one line per check, facts of the ones that are not fine.
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let h = &self.host;
        writeln!(
            out,
            "rbuild doctor: `{}` (uid {}) on Linux {} ({}), state directory `{}`",
            h.user, h.uid, h.kernel, h.arch, h.state_dir
        )?;
        writeln!(out)?;
        let width = self
            .checks
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0);
        for c in &self.checks {
            writeln!(
                out,
                "  {:<8} {:<width$}  {}",
                c.status.word(),
                c.name,
                c.summary
            )?;
            if c.status >= Status::Warning {
                for f in &c.facts {
                    writeln!(out, "  {:<8} {:<width$}    {f}", "", "")?;
                }
            }
        }
        let errors = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Error)
            .count();
        let warnings = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Warning)
            .count();
        writeln!(out)?;
        match (errors, warnings) {
            (0, 0) => writeln!(out, "this host is ready for rootless builds")?,
            (0, w) => writeln!(
                out,
                "this host is ready for rootless builds, with {w} warning{}",
                if w == 1 { "" } else { "s" }
            )?,
            (e, _) => writeln!(
                out,
                "this host is not ready: {e} problem{} to fix (details on stderr)",
                if e == 1 { "" } else { "s" }
            )?,
        }
        Ok(())
    }
}

/// A target platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

/// Architectures rbuild knows, with the name qemu uses for them.
const ARCHES: &[(&str, &str)] = &[
    ("amd64", "x86_64"),
    ("arm64", "aarch64"),
    ("arm", "arm"),
    ("386", "i386"),
    ("ppc64le", "ppc64le"),
    ("s390x", "s390x"),
    ("riscv64", "riscv64"),
    ("mips64le", "mips64el"),
    ("loong64", "loongarch64"),
];

impl Platform {
    /// Parses `linux/arm64`, `linux/arm/v7`, `linux/amd64`...
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => {
                return Err(format!(
                    "`{s}` is not a platform; write `os/arch[/variant]`, e.g. `linux/arm64`"
                ));
            }
        };
        if os != "linux" {
            return Err(format!(
                "`{s}`: rbuild builds Linux images only (`linux/...`)"
            ));
        }
        let arch = match arch {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            "armhf" | "armel" => "arm",
            "i386" | "i686" => "386",
            a => a,
        };
        if !ARCHES.iter().any(|(a, _)| *a == arch) {
            let known: Vec<&str> = ARCHES.iter().map(|(a, _)| *a).collect();
            return Err(format!(
                "`{s}`: unknown architecture `{arch}` (known: {})",
                known.join(", ")
            ));
        }
        Ok(Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// The name qemu-user uses for this architecture (`aarch64` for `arm64`).
    pub fn qemu_name(&self) -> &'static str {
        ARCHES
            .iter()
            .find(|(a, _)| *a == self.arch)
            .map_or("unknown", |(_, q)| *q)
    }

    /// Whether this host runs the platform's programs without emulation.
    pub fn is_native(&self, host_arch: &str) -> bool {
        self.arch == host_arch || (host_arch == "amd64" && self.arch == "386")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_with_aliases_and_reject_nonsense() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.arch.as_str(), p.variant.as_deref()),
            ("arm64", Some("v8"))
        );
        assert_eq!(p.qemu_name(), "aarch64");
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/x86_64").unwrap().arch, "amd64");
        assert_eq!(Platform::parse("linux/arm/v7").unwrap().qemu_name(), "arm");
        assert!(Platform::parse("linux/amd64").unwrap().is_native("amd64"));
        assert!(Platform::parse("linux/386").unwrap().is_native("amd64"));
        assert!(!Platform::parse("linux/arm64").unwrap().is_native("amd64"));
        for bad in ["arm64", "windows/amd64", "linux/sparc", "linux//", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Platform::parse("windows/amd64")
                .unwrap_err()
                .contains("Linux images only")
        );
    }
}

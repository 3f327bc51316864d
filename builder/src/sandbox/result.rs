//! What a sandboxed run reports: how the command ended, what was killed after it, and
//! structured facts (each with its failure-cause catalog id) the diagnose module and the
//! renderers turn into annotations.

use serde::{Deserialize, Serialize};

use crate::diagnose::{Diagnostic, Severity};
use crate::layer::extract::{Examples, XattrDrop};

/// A process still running in the sandbox when its command ended, which was killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// PID inside the sandbox.
    pub pid: i32,
    /// `comm` (the executable's short name).
    pub command: String,
    /// Full command line, space-joined.
    pub cmdline: String,
    /// Sockets it was listening on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listening: Vec<Listener>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub protocol: String,
    pub address: String,
    pub port: u16,
}

impl Leftover {
    /// `nc (pid 7, listening on tcp 0.0.0.0:5432)`.
    pub fn describe(&self) -> String {
        let mut s = format!("`{}` (pid {}", self.cmdline_or_command(), self.pid);
        if !self.listening.is_empty() {
            let ports: Vec<String> = self
                .listening
                .iter()
                .map(|l| format!("{} {}:{}", l.protocol, l.address, l.port))
                .collect();
            s.push_str(", listening on ");
            s.push_str(&ports.join(", "));
        }
        s.push(')');
        s
    }

    fn cmdline_or_command(&self) -> &str {
        if self.cmdline.is_empty() {
            &self.command
        } else {
            &self.cmdline
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Status {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
    /// Killed with everything in its sandbox when the timeout passed.
    TimedOut {
        after_ms: u64,
    },
    /// The command could not be started (not found, not executable, wrong format).
    NotStarted {
        program: String,
        errno: i32,
        reason: String,
    },
}

impl Status {
    pub fn success(&self) -> bool {
        matches!(self, Status::Exited { code: 0 })
    }
}

/// The outcome of a run whose sandbox was set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub status: Status,
    /// Processes still running when the command ended, all killed.
    pub killed: Vec<Leftover>,
    /// Everything worth reporting, as catalog facts.
    pub facts: Vec<Fact>,
    /// `overlay` or `copy`.
    pub rootfs: String,
    /// Mount points rbuild created in the image (a layer diff leaves them out).
    #[serde(default)]
    pub mountpoints_created: Vec<String>,
    /// Milliseconds spent setting up (including unpacking), running, tearing down.
    pub setup_ms: u64,
    pub run_ms: u64,
    pub teardown_ms: u64,
    /// What a successful build step left (`None` for plain runs and failed steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepOutput>,
}

/// What a successful build step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    /// The step changed the file system (its snapshot was kept); otherwise it makes no
    /// layer.
    pub changed: bool,
    /// Its layer was written to descriptor 4.
    pub diff_written: bool,
    /// Entries in that layer.
    pub entries: u64,
}

/// What a tar job wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarReport {
    pub entries: u64,
}

/// Why a sandbox could not be set up, classified at the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupFailure {
    pub class: FailureClass,
    pub message: String,
    #[serde(default)]
    pub causes: Vec<String>,
    #[serde(default)]
    pub hints: Vec<String>,
    #[serde(default)]
    pub facts: Vec<Fact>,
}

/// Exit class of a setup failure (mapped to `outcome::Exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// The image is at fault (bad layer, unknown user, ...).
    Input,
    /// The host cannot do it (no user namespaces, no uidmap, ...).
    Host,
    /// rbuild is wrong.
    Bug,
}

/// What the helper sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Reply {
    Finished(StepResult),
    Tarred(TarReport),
    Failed(SetupFailure),
}

/// A structured fact about a run, with its catalog id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "kebab-case")]
pub enum Fact {
    /// Processes left running when the command ended (killed).
    LeakedProcesses { processes: Vec<Leftover> },
    /// Extended attributes in the layers not written.
    XattrsDropped {
        name: String,
        reason: XattrDrop,
        examples: Examples,
    },
    /// Device nodes in the layers skipped.
    DeviceNodesSkipped { examples: Examples },
    /// Files in the layers owned by ids the mapping does not have (left to root).
    IdsOutsideMapping {
        examples: Examples,
        max_id: u32,
        mapped: u32,
    },
    /// Only container root could be mapped.
    SingleIdMapping { reason: String },
    /// Fewer than 65536 container ids could be mapped.
    PartialIdMapping { mapped: u32, reason: String },
    /// The platform's binaries cannot run here.
    BinfmtMissing {
        platform: String,
        reason: String,
        hint: String,
    },
    /// The command failed with "exec format error".
    ExecFormatError { platform: String, program: String },
    /// The emulated command was killed by a signal (usually qemu crashing).
    EmulatorSignal {
        platform: String,
        signal: i32,
        interpreter: String,
    },
    /// overlayfs could not be mounted; the rootfs is a copy.
    OverlayFallback { reason: String },
}

impl Fact {
    /// The failure-cause catalog id.
    pub fn id(&self) -> &'static str {
        match self {
            Fact::LeakedProcesses { .. } => "no-process-sandbox-leaked-process",
            Fact::XattrsDropped { name, .. } if name == "security.selinux" => {
                "xattr-security-selinux-in-layer"
            }
            Fact::XattrsDropped {
                name,
                reason: XattrDrop::Refused,
                ..
            } if name == "security.capability" => "file-capabilities-setfcap",
            Fact::XattrsDropped { .. } => "xattr-overlay-or-ima-in-layer",
            Fact::DeviceNodesSkipped { .. } => "device-node-or-whiteout-mknod",
            Fact::IdsOutsideMapping { .. }
            | Fact::SingleIdMapping { .. }
            | Fact::PartialIdMapping { .. } => "subid-range-too-small",
            Fact::BinfmtMissing { .. } | Fact::ExecFormatError { .. } => "binfmt-not-registered",
            Fact::EmulatorSignal { .. } => "qemu-segfault",
            Fact::OverlayFallback { .. } => "overlay-unavailable-slow-fallback",
        }
    }

    /// The diagnostic for this fact (without Dockerfile position or step; callers add
    /// those).
    pub fn to_diagnostic(&self) -> Diagnostic {
        let examples = |e: &Examples| -> Vec<String> {
            let mut v = e.paths.clone();
            if e.count > e.paths.len() as u64 {
                v.push(format!("... and {} more", e.count - e.paths.len() as u64));
            }
            v
        };
        let (severity, title, message, hint, evidence): (Severity, String, String, Option<String>, Vec<String>) =
            match self {
                Fact::LeakedProcesses { processes } => (
                    Severity::Warning,
                    "processes were still running when the command ended".into(),
                    format!(
                        "{} process(es) started by the command were still running after it exited and were killed: {}",
                        processes.len(),
                        processes.iter().map(Leftover::describe).collect::<Vec<_>>().join(", ")
                    ),
                    Some(
                        "stop background services before the step ends (`svc & pid=$!; ...; kill $pid`); rbuild killed them so nothing stays bound"
                            .into(),
                    ),
                    processes.iter().map(Leftover::describe).collect(),
                ),
                Fact::XattrsDropped { name, reason, examples: ex } => {
                    let why = match reason {
                        XattrDrop::Policy if name == "security.selinux" => {
                            "SELinux labels cannot be set inside a user namespace and are relabelled by the runtime anyway".to_owned()
                        }
                        XattrDrop::Policy => format!("`{name}` can only be set by real root or belongs to overlayfs internals"),
                        XattrDrop::Refused => "the kernel refused it inside the user namespace".to_owned(),
                    };
                    (
                        Severity::Warning,
                        format!("extended attribute `{name}` dropped from the image layers"),
                        format!("`{name}` was not written on {} file(s) of the image: {why}", ex.count),
                        Some(if name == "security.selinux" {
                            "nothing to do for the build; to silence this, use a base image built without SELinux labels".into()
                        } else {
                            "rebuild the base image with a tool that does not store this attribute in layers".into()
                        }),
                        examples(ex),
                    )
                }
                Fact::DeviceNodesSkipped { examples: ex } => (
                    Severity::Warning,
                    "device nodes in the image layers were skipped".into(),
                    format!(
                        "{} device node(s) in the image cannot be created in a user namespace and were skipped; the sandbox provides its own `/dev`",
                        ex.count
                    ),
                    Some("remove device nodes from the base image (they belong to the runtime, not the image)".into()),
                    examples(ex),
                ),
                Fact::IdsOutsideMapping { examples: ex, max_id, mapped } => (
                    Severity::Warning,
                    "files owned by ids outside the user namespace".into(),
                    format!(
                        "{} file(s) of the image are owned by ids up to {max_id}, but only ids 0-{} are mapped; they are owned by root instead",
                        ex.count,
                        mapped.saturating_sub(1)
                    ),
                    Some(format!(
                        "give the user a larger range in `/etc/subuid` and `/etc/subgid` (at least {} ids), or rebuild the image with normal ownership",
                        u64::from(*max_id) + 1
                    )),
                    examples(ex),
                ),
                Fact::SingleIdMapping { reason } => (
                    Severity::Warning,
                    "only one id is mapped in the sandbox".into(),
                    format!(
                        "{reason}, so the sandbox maps only container root (to you); files owned by other ids become root's, and switching to another user fails"
                    ),
                    Some("as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER` (a range no other user has) and `apt-get install uidmap`".into()),
                    Vec::new(),
                ),
                Fact::PartialIdMapping { mapped, reason } => (
                    Severity::Warning,
                    "fewer than 65536 ids are mapped in the sandbox".into(),
                    format!(
                        "{reason}: container ids 0-{} are mapped; files owned by higher ids (such as `nobody`, 65534) become root's",
                        mapped.saturating_sub(1)
                    ),
                    Some("give the user a range of at least 65536 ids in `/etc/subuid` and `/etc/subgid`".into()),
                    Vec::new(),
                ),
                Fact::BinfmtMissing { platform, reason, hint } => (
                    Severity::Error,
                    format!("cannot run `{platform}` binaries"),
                    reason.clone(),
                    Some(hint.clone()),
                    Vec::new(),
                ),
                Fact::ExecFormatError { platform, program } => (
                    Severity::Error,
                    "exec format error".into(),
                    format!("`{program}` is not a `{platform}` executable this sandbox can run"),
                    Some("check the image's platform (`--platform`) and that qemu-user-static is installed".into()),
                    Vec::new(),
                ),
                Fact::EmulatorSignal { platform, signal, interpreter } => (
                    Severity::Error,
                    format!("the emulated `{platform}` command was killed by signal {signal}"),
                    format!(
                        "the command ran under `{interpreter}` and died of signal {signal} ({}); under emulation this is usually a qemu bug, not your code",
                        signal_name(*signal)
                    ),
                    Some("retry; if it persists, use a native runner for this platform or move the step to a `FROM --platform=$BUILDPLATFORM` stage".into()),
                    Vec::new(),
                ),
                Fact::OverlayFallback { reason } => (
                    Severity::Warning,
                    "overlayfs unavailable: the root file system is a full copy".into(),
                    format!(
                        "overlayfs could not be mounted ({reason}); every sandbox copies the whole image instead, which costs time and disk"
                    ),
                    Some("put rbuild's cache (`--cache-dir`) on a local file system that is not itself overlayfs (ext4, xfs, btrfs, tmpfs), on Linux >= 5.11".into()),
                    Vec::new(),
                ),
            };
        let mut d = Diagnostic::new(self.id(), severity, title, message);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        for e in evidence {
            d = d.with_evidence(e);
        }
        d
    }
}

/// `SIGSEGV` for 11, etc.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// Facts from an extraction report.
pub fn facts_from_extract(report: &crate::layer::ExtractReport, mapped: u32) -> Vec<Fact> {
    let mut facts = Vec::new();
    for (name, by_reason) in &report.xattrs_dropped {
        for (reason, examples) in by_reason {
            facts.push(Fact::XattrsDropped {
                name: name.clone(),
                reason: *reason,
                examples: examples.clone(),
            });
        }
    }
    if report.devices_skipped.count > 0 {
        facts.push(Fact::DeviceNodesSkipped {
            examples: report.devices_skipped.clone(),
        });
    }
    if report.ids_unmapped.count > 0 {
        facts.push(Fact::IdsOutsideMapping {
            examples: report.ids_unmapped.clone(),
            max_id: report.max_unmapped_id,
            mapped,
        });
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_carry_catalog_ids() {
        let ex = Examples {
            count: 12,
            paths: vec!["/etc/krb5.conf.d".into()],
        };
        let selinux = Fact::XattrsDropped {
            name: "security.selinux".into(),
            reason: XattrDrop::Policy,
            examples: ex.clone(),
        };
        assert_eq!(selinux.id(), "xattr-security-selinux-in-layer");
        let d = selinux.to_diagnostic();
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.evidence, ["/etc/krb5.conf.d", "... and 11 more"]);
        let ima = Fact::XattrsDropped {
            name: "security.ima".into(),
            reason: XattrDrop::Policy,
            examples: ex.clone(),
        };
        assert_eq!(ima.id(), "xattr-overlay-or-ima-in-layer");
        let cap = Fact::XattrsDropped {
            name: "security.capability".into(),
            reason: XattrDrop::Refused,
            examples: ex.clone(),
        };
        assert_eq!(cap.id(), "file-capabilities-setfcap");
        assert_eq!(
            Fact::DeviceNodesSkipped { examples: ex }.id(),
            "device-node-or-whiteout-mknod"
        );
        assert_eq!(
            Fact::OverlayFallback { reason: "x".into() }.id(),
            "overlay-unavailable-slow-fallback"
        );
        let seg = Fact::EmulatorSignal {
            platform: "linux/arm64".into(),
            signal: 11,
            interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
        };
        assert_eq!(seg.id(), "qemu-segfault");
        assert!(seg.to_diagnostic().message.contains("SIGSEGV"));
    }

    #[test]
    fn leaked_processes_name_command_pid_and_port() {
        let f = Fact::LeakedProcesses {
            processes: vec![Leftover {
                pid: 7,
                command: "nc".into(),
                cmdline: "nc -l -p 5432".into(),
                listening: vec![Listener {
                    protocol: "tcp".into(),
                    address: "0.0.0.0".into(),
                    port: 5432,
                }],
            }],
        };
        assert_eq!(f.id(), "no-process-sandbox-leaked-process");
        let d = f.to_diagnostic();
        assert_eq!(
            d.evidence,
            ["`nc -l -p 5432` (pid 7, listening on tcp 0.0.0.0:5432)"]
        );
        // Round-trips through JSON as tagged data the diagnose module can match on.
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["fact"], "leaked-processes");
        assert_eq!(serde_json::from_value::<Fact>(json).unwrap(), f);
    }
}

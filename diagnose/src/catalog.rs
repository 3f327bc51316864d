//! The failure-cause catalog: every known cause of a failed rootless or emulated build,
//! with a stable id, a plain explanation, the fix, what rbuild does about it, and how it
//! is detected (including the log signatures the matcher in [`super::signatures`] uses).
//!
//! The entries start from `reference/failure-causes.md` (40 causes, in its order, which
//! estimates how often each hits real users) and add causes met while building rbuild at
//! the end. Other modules classify failures at their source with a [`Cause`]:
//!
//! ```
//! use rbuild::diagnose::Cause;
//! let d = Cause::XattrSecuritySelinuxInLayer
//!     .warning("dropped `security.selinux` from 12 files of layer `sha256:4f4f…`")
//!     .at("Dockerfile", 1, 1);
//! assert_eq!(d.id, "xattr-security-selinux-in-layer");
//! ```
//!
//! Ids are a contract (`STYLE.md`): never rename one; add a new id and retire the old one.
//! The documentation pages `docs/failures/<id>.md` are generated from these entries (a unit
//! test keeps them in sync), so this file is the one place to edit.

use serde::Serialize;

use super::{Diagnostic, Severity};
use crate::outcome::{Exit, Failure};

/// Base of the documentation links put into diagnostics.
pub const DOCS_BASE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/failures/");

macro_rules! causes {
    ($($(#[$doc:meta])* $variant:ident => $id:literal,)*) => {
        /// A known failure cause. [`Cause::id`] is its stable kebab-case id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Cause {
            $($(#[$doc])* $variant,)*
        }

        impl Cause {
            /// Every cause, in catalog order.
            pub const ALL: &'static [Cause] = &[$(Cause::$variant,)*];

            /// The stable id, e.g. `binfmt-not-registered`.
            pub const fn id(self) -> &'static str {
                match self {
                    $(Cause::$variant => $id,)*
                }
            }
        }
    };
}

causes! {
    /// A file or step needs a uid/gid outside the mapped subordinate range.
    SubidRangeTooSmall => "subid-range-too-small",
    /// No binfmt_misc handler (qemu) for the target architecture.
    BinfmtNotRegistered => "binfmt-not-registered",
    /// qemu-user crashed (SIGSEGV) while emulating a step.
    QemuSegfault => "qemu-segfault",
    /// The outer container's seccomp/AppArmor policy blocks user namespaces.
    PodSecurityBlocksUserns => "pod-security-blocks-userns",
    /// User namespaces are disabled by sysctl.
    UsernsDisabledSysctl => "userns-disabled-sysctl",
    /// Ubuntu's AppArmor restriction on unprivileged user namespaces.
    ApparmorRestrictUnprivilegedUserns => "apparmor-restrict-unprivileged-userns",
    /// `newuidmap`/`newgidmap` are missing or lack their privileges.
    NewuidmapMissingOrBroken => "newuidmap-missing-or-broken",
    /// Kernel overlayfs cannot be used; a slow fallback would be needed.
    OverlayUnavailableSlowFallback => "overlay-unavailable-slow-fallback",
    /// A fresh `/proc` cannot be mounted because the current one is masked.
    ProcMountMasked => "proc-mount-masked",
    /// The registry refused with 429 Too Many Requests.
    RegistryRateLimited => "registry-rate-limited",
    /// A base image does not publish the requested platform.
    BaseImageMissingPlatform => "base-image-missing-platform",
    /// apt cannot drop privileges to `_apt` (setgroups/setegid fail).
    AptSandboxSetgroups => "apt-sandbox-setgroups",
    /// File capabilities (`security.capability`) cannot be set.
    FileCapabilitiesSetfcap => "file-capabilities-setfcap",
    /// Base-image layers carry `security.selinux` labels.
    XattrSecuritySelinuxInLayer => "xattr-security-selinux-in-layer",
    /// DNS does not work inside the build.
    RootlessDns => "rootless-dns",
    /// Node.js hangs or dies with SIGILL under emulation.
    QemuNodeJsHangOrSigill => "qemu-node-js-hang-or-sigill",
    /// The Go runtime crashes under emulation.
    QemuGoRuntimeCrash => "qemu-go-runtime-crash",
    /// glibc needs x86-64-v2 (or v3) and the emulated CPU lacks it.
    QemuX8664V2CpuLevel => "qemu-x86-64-v2-cpu-level",
    /// The JVM crashes or hangs under emulation.
    QemuJvmCrashOrHang => "qemu-jvm-crash-or-hang",
    /// A setuid binary (sudo) was not honoured.
    SetuidIgnoredSudo => "setuid-ignored-sudo",
    /// A layer holds device nodes, which cannot be created in a user namespace.
    DeviceNodeOrWhiteoutMknod => "device-node-or-whiteout-mknod",
    /// `/dev/fuse` is missing.
    FuseDeviceMissing => "fuse-device-missing",
    /// The disk (bytes or inodes) is full.
    DiskFullOrInodes => "disk-full-or-inodes",
    /// The registry refused the credentials (401 / insufficient scope).
    RegistryAuth401 => "registry-auth-401",
    /// TLS verification failed, or the registry speaks plain http.
    RegistryTlsOrHttp => "registry-tls-or-http",
    /// Processes started by a step outlived it.
    NoProcessSandboxLeakedProcess => "no-process-sandbox-leaked-process",
    /// A port was already in use in the shared network namespace.
    HostNetnsPortCollision => "host-netns-port-collision",
    /// Layers carry `user.overlay.*`, `trusted.overlay.*` or `security.ima` xattrs.
    XattrOverlayOrImaInLayer => "xattr-overlay-or-ima-in-layer",
    /// Deleted files reappear or files go missing between steps.
    OverlayWhiteoutOpaqueCorruption => "overlay-whiteout-opaque-corruption",
    /// A hardlink in a layer cannot be created.
    HardlinkHandling => "hardlink-handling",
    /// The state directory is on overlayfs or mounted `nosuid`/`nodev`.
    StateDirOnOverlayOrNosuid => "state-dir-on-overlay-or-nosuid",
    /// The host's SELinux policy denies the build.
    HostSelinuxPolicyDenial => "host-selinux-policy-denial",
    /// An old seccomp profile returns EPERM for syscalls it does not know.
    OutdatedSeccompNewSyscalls => "outdated-seccomp-new-syscalls",
    /// `ping` in a RUN step cannot open its socket.
    IcmpPingInBuild => "icmp-ping-in-build",
    /// `sysctl -w` in a RUN step.
    SysctlWriteInBuild => "sysctl-write-in-build",
    /// The open-files limit is too low or cannot be raised.
    RlimitNofile => "rlimit-nofile",
    /// The user-mode network's MTU stalls connections.
    SlirpMtu => "slirp-mtu",
    /// cgroup v1, or no delegated cgroup v2 subtree.
    CgroupV1OrNoDelegation => "cgroup-v1-or-no-delegation",
    /// `XDG_RUNTIME_DIR` is unset or points at someone else's directory.
    XdgRuntimeDirWrong => "xdg-runtime-dir-wrong",
    /// The clock is wrong.
    ClockSkew => "clock-skew",
    /// A RUN step exited non-zero for a reason that matches no known cause.
    RunFailed => "run-failed",
    /// A step ran longer than its time limit.
    StepTimedOut => "step-timed-out",
    /// rbuild cannot create or write its state directory.
    StateDirNotWritable => "state-dir-not-writable",
    /// A COPY or ADD step failed (a missing source, a conflicting destination, ...).
    CopyFailed => "copy-failed",
    /// A base or `--from` image could not be resolved or pulled.
    ImagePullFailed => "image-pull-failed",
}

/// Whether rbuild can stop a cause by itself (the catalog's "auto-avoid" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoAvoid {
    /// rbuild prevents it, at most leaving a warning.
    Yes,
    /// rbuild detects it before or during the build and names the exact fix.
    Partly,
    /// Only the host or cluster administrator can fix it; rbuild explains it.
    No,
}

/// How a cause is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detector {
    /// Classified where rbuild itself hits the error (an errno with its path, an HTTP
    /// status), not by reading text afterwards.
    Structured,
    /// Found by probing the host (`rbuild doctor`, and the checks before a build).
    Probe,
    /// Found by reading layer tar headers before unpacking (xattrs, ids, device nodes).
    LayerScan,
    /// Seen in how a step behaved: leftover processes or listeners, a timeout, a signal.
    Behaviour,
    /// Matched in the output of a failed step by the catalog's signatures.
    Log,
}

impl Detector {
    /// One line for documentation.
    pub fn describe(self) -> &'static str {
        match self {
            Detector::Structured => {
                "classified where rbuild hits the error (errno, path, HTTP status), not by reading text"
            }
            Detector::Probe => "probed on the host by `rbuild doctor` and before a build starts",
            Detector::LayerScan => "found in layer tar headers before a layer is unpacked",
            Detector::Behaviour => {
                "seen in how a step behaved (leftover processes or listeners, timeouts, signals)"
            }
            Detector::Log => "matched in the output of a failed step (signatures below)",
        }
    }
}

/// How specific a signature is. The matcher tries tighter tiers first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A tool's exact, unmistakable message.
    Exact,
    /// A specific message that could, rarely, mean something else.
    Specific,
    /// A broad message; only used when nothing tighter matched.
    Generic,
}

/// When a signature applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// In the output of any failed step.
    Always,
    /// Only in a step that ran under emulation (qemu-user).
    Emulated,
}

/// One log signature: a Rust `regex` (no look-around), with a real line it matches.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Signature {
    pub pattern: &'static str,
    pub tier: Tier,
    pub when: When,
    /// A real log line this signature is meant to catch (tested).
    pub example: &'static str,
}

const fn sig(tier: Tier, pattern: &'static str, example: &'static str) -> Signature {
    Signature {
        pattern,
        tier,
        when: When::Always,
        example,
    }
}

const fn emu(tier: Tier, pattern: &'static str, example: &'static str) -> Signature {
    Signature {
        pattern,
        tier,
        when: When::Emulated,
        example,
    }
}

use Tier::{Exact, Generic, Specific};

/// One catalog entry.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(skip)]
    pub cause: Cause,
    /// Short title, one line, lowercase start.
    pub title: &'static str,
    /// Severity when this cause fails a build (avoided causes are reported as warnings
    /// by whoever avoided them).
    pub severity: Severity,
    /// Exit class when this cause ends `rbuild`.
    #[serde(skip)]
    pub exit: Exit,
    pub auto_avoid: AutoAvoid,
    /// One plain sentence: what happened.
    pub summary: &'static str,
    /// Why it happens, in a paragraph.
    pub explanation: &'static str,
    /// The fix in one line, a command where there is one (the `hint:`).
    pub hint: &'static str,
    /// The fix in steps.
    pub fix: &'static [&'static str],
    /// What rbuild does about it.
    pub rbuild: &'static str,
    pub detectors: &'static [Detector],
    pub signatures: &'static [Signature],
    #[serde(skip)]
    pub related: &'static [Cause],
    /// Public reports and fixes this entry is based on.
    pub references: &'static [&'static str],
}

impl Cause {
    /// The catalog entry.
    pub fn entry(self) -> &'static Entry {
        &CATALOG[self as usize]
    }

    /// The cause with this id, if any.
    pub fn from_id(id: &str) -> Option<Cause> {
        Cause::ALL.iter().copied().find(|c| c.id() == id)
    }

    /// Link to the documentation page.
    pub fn url(self) -> String {
        format!("{DOCS_BASE}{}.md", self.id())
    }

    /// Path of the documentation page in the repository.
    pub fn doc_path(self) -> String {
        format!("docs/failures/{}.md", self.id())
    }

    /// A diagnostic for this cause with the catalog's title, hint and link.
    pub fn diagnostic(self, severity: Severity, message: impl Into<String>) -> Diagnostic {
        let e = self.entry();
        Diagnostic::new(self.id(), severity, e.title, message)
            .with_hint(e.hint)
            .with_url(self.url())
    }

    /// An error diagnostic (the cause failed the build).
    pub fn error(self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, message)
    }

    /// A warning diagnostic (the cause was met and avoided, or may bite later).
    pub fn warning(self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Warning, message)
    }

    /// A notice diagnostic (information only).
    pub fn notice(self, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Notice, message)
    }

    /// A classified [`Failure`] for this cause: its exit class, the catalog hint and a
    /// pointer to `rbuild explain`.
    pub fn failure(self, message: impl Into<String>) -> Failure {
        let e = self.entry();
        Failure::new(e.exit, message)
            .hint(e.hint)
            .hint(format!("`rbuild explain {}` tells more", self.id()))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

use Cause as C;
use Detector::{Behaviour, LayerScan, Log, Probe, Structured};

/// The catalog, in the order of [`Cause::ALL`].
pub static CATALOG: &[Entry] = &[
    Entry {
        cause: C::SubidRangeTooSmall,
        title: "not enough subordinate ids are mapped for this build",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "A layer or a build step needs a uid or gid that is not mapped into the build's user namespace.",
        explanation: "rbuild runs every step in a user namespace. Inside it, id 0 is your own user and ids 1 to N come from your subordinate range in `/etc/subuid` and `/etc/subgid` (N is usually 65536). A file owned by an id outside 0..N cannot be created or chowned there: the kernel answers `EINVAL`, which tools print as `lchown ...: invalid argument`. Owners that often fall outside a small range are `nobody` (65534), distroless `nonroot` (65532), and ids copied in from developer machines or directory services (for example 1407182137). Without any subordinate range only id 0 is mapped and nearly every base image fails.",
        hint: "as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 <user>` (a range no other user has), then build again",
        fix: &[
            "Give the user who builds a range of at least 65536 ids in both `/etc/subuid` and `/etc/subgid` that overlaps no other user's range: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 <user>`.",
            "Check it: `unshare --user --map-auto --map-root-user cat /proc/self/uid_map` must print two lines, the second ending in `65535`.",
            "If the owner id is unusually large (ids from a directory service, an npm tarball), rebuild that base image with normalised ownership, or give the user a range that covers the id.",
        ],
        rbuild: "Before unpacking a layer rbuild compares every entry's uid and gid with the mapped range and fails fast, naming the layer, the file, its owner and the range. `rbuild doctor` checks the current user's ranges and whether `newuidmap` can apply them.",
        detectors: &[Structured, Probe, LayerScan, Log],
        signatures: &[
            sig(
                Exact,
                r"potentially insufficient UIDs or GIDs available in user namespace \(requested (\d+):(\d+) for ([^)]+)\)",
                "Error: copying system image from manifest list: writing blob: adding layer with blob \"sha256:55c239a204a015f673c4ded573a854b404bc9f90c021aec4b8d321aaea3e151f\": processing tar file(potentially insufficient UIDs or GIDs available in user namespace (requested 172761424:0 for /opt/app): Check /etc/subuid and /etc/subgid if configured locally and run \"podman system migrate\": lchown /opt/app: invalid argument): exit status 1",
            ),
            sig(
                Exact,
                r"there might not be enough IDs available in the namespace \(requested (\d+):(\d+) for ([^)]+)\)",
                "Error: error creating build container: there might not be enough IDs available in the namespace (requested 0:42 for /etc/shadow): lchown /etc/shadow: invalid argument",
            ),
            sig(
                Exact,
                r#"failed to Lchown "([^"]+)" for UID (\d+), GID (\d+) \(try increasing the number of subordinate IDs in /etc/subuid and /etc/subgid\)"#,
                "failed to register layer: failed to Lchown \"/home/nonroot\" for UID 65532, GID 65532 (try increasing the number of subordinate IDs in /etc/subuid and /etc/subgid): lchown /home/nonroot: invalid argument",
            ),
            sig(
                Exact,
                r"mount callback failed on \S+: lchown (\S+): invalid argument",
                "error: failed to solve: mount callback failed on /tmp/containerd-mount1419371523: lchown /tmp/containerd-mount1419371523/usr/share/doc: invalid argument",
            ),
            sig(
                Exact,
                r"Error processing tar file\(exit status 1\): lchown (\S+): invalid argument",
                "failed to register layer: Error processing tar file(exit status 1): lchown /var/spool/mail: invalid argument",
            ),
            sig(
                Exact,
                r"failed to register layer: (?:ApplyLayer exit status 1 stdout: +stderr: )?lchown (\S+): invalid argument",
                "failed to register layer: ApplyLayer exit status 1 stdout:  stderr: lchown /usr/local/lib/node_modules/npm/node_modules/abbrev/package.json: invalid argument",
            ),
            sig(
                Specific,
                r"chown: changing ownership of '([^']+)': Invalid argument",
                "chown: changing ownership of '/srv/app': Invalid argument",
            ),
            sig(
                Generic,
                r"chown: (\S+): Invalid argument",
                "chown: /home/builder: Invalid argument",
            ),
        ],
        related: &[C::NewuidmapMissingOrBroken, C::AptSandboxSetgroups],
        references: &[
            "https://github.com/containers/storage/pull/747",
            "https://github.com/moby/moby/issues/45757",
            "https://github.com/moby/buildkit/issues/2808",
            "https://github.com/moby/moby/issues/43576",
            "https://github.com/docker-library/busybox/issues/107",
            "https://github.com/GoogleContainerTools/distroless/issues/1248",
            "https://github.com/podman-container-tools/podman/issues/8580",
        ],
    },
    Entry {
        cause: C::BinfmtNotRegistered,
        title: "no emulator is registered for the target architecture",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "A program built for another CPU architecture was started, but the kernel has no binfmt_misc handler (qemu) for it.",
        explanation: "Building for a foreign platform (linux/arm64 on an x86_64 host, say) runs the image's programs through qemu-user. The kernel hands a foreign executable to qemu only when a binfmt_misc handler for that architecture is registered; otherwise `execve` fails with `ENOEXEC`, printed as `exec format error`. Handlers registered on the host are global and need root to add. Since Linux 6.7 a user namespace can mount its own binfmt_misc and register handlers there without privilege. A host handler must carry the `F` (fix binary) flag, so that the interpreter is opened on the host and not looked up inside the build's root filesystem.",
        hint: "install the interpreters: `apt-get install qemu-user-static`; on kernels older than 6.7 also register them on the host with the `F` flag (`docker run --privileged --rm tonistiigi/binfmt --install arm64`, or Debian's `binfmt-support`)",
        fix: &[
            "Install `qemu-user-static` (Debian/Ubuntu), which provides static interpreters such as `/usr/bin/qemu-aarch64-static`.",
            "On Linux ≥ 6.7 nothing else is needed: rbuild registers the interpreter inside its own user namespace.",
            "On older kernels an administrator registers the handlers once per boot with the `F` flag: `docker run --privileged --rm tonistiigi/binfmt --install arm64`, or `binfmt-support` with `qemu-user-static` (Debian registers them with `F`). On GitHub Actions, `docker/setup-qemu-action` does this.",
            "Or avoid emulation: build on a native runner, or cross-compile in a `FROM --platform=$BUILDPLATFORM` stage.",
        ],
        rbuild: "On kernels ≥ 6.7 rbuild registers qemu in a private binfmt_misc inside each build's user namespace, so only the interpreters need to be installed. Otherwise it reads `/proc/sys/fs/binfmt_misc/qemu-<arch>` (enabled, interpreter, flags) before the first foreign step and names what is missing. `rbuild doctor --platform linux/arm64` runs the same checks.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r#"exec user process caused:? "?exec format error"#,
                "standard_init_linux.go:211: exec user process caused \"exec format error\"",
            ),
            sig(
                Exact,
                r"cannot execute binary file: Exec format error",
                "/bin/sh: 1: ./configure-helper: cannot execute binary file: Exec format error",
            ),
            sig(
                Exact,
                r"exec container process `[^`]+`: Exec format error",
                "Error: crun: exec container process `/bin/sh`: Exec format error: OCI runtime error",
            ),
            sig(
                Exact,
                r"cannot mount binfmt_misc filesystem at /proc/sys/fs/binfmt_misc",
                "error: cannot mount binfmt_misc filesystem at /proc/sys/fs/binfmt_misc",
            ),
            sig(
                Exact,
                r#"cannot (?:write to|register "[^"]+" to) /proc/sys/fs/binfmt_misc/register: write /proc/sys/fs/binfmt_misc/register: (invalid argument|no such file or directory)"#,
                "installing: arm64 cannot register \"/usr/bin/qemu-aarch64\" to /proc/sys/fs/binfmt_misc/register: write /proc/sys/fs/binfmt_misc/register: invalid argument",
            ),
            sig(
                Specific,
                r"(\w+): not supported on this machine/kernel",
                "qemu-aarch64: not supported on this machine/kernel",
            ),
            sig(
                Generic,
                r"(?i)exec format error",
                "#7 0.223 exec /bin/sh: exec format error",
            ),
        ],
        related: &[C::QemuSegfault, C::SetuidIgnoredSudo],
        references: &[
            "https://github.com/docker/buildx/issues/566",
            "https://github.com/docker/buildx/issues/493",
            "https://github.com/rpm-software-management/mock/issues/277",
            "https://github.com/nestybox/sysbox/issues/823",
            "https://github.com/tonistiigi/binfmt/issues/92",
            "https://github.com/moby/buildkit/pull/3723",
        ],
    },
    Entry {
        cause: C::QemuSegfault,
        title: "the emulator crashed",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "qemu-user crashed with a signal while emulating a step; this is usually an emulator bug, not your code.",
        explanation: "Emulated steps run every instruction through qemu-user, whose correctness depends strongly on its version. Some qemu builds crash at random on some kernels: in 2025 a kernel hardening change together with qemu built without PIE made `ldconfig` (run by the `libc-bin` trigger of `ubuntu:jammy` on arm64) segfault on GitHub-hosted runners. Such failures are often intermittent: the same step passes on a second attempt.",
        hint: "retry the step; if it keeps crashing, use a newer qemu (`qemu-user-static` from a newer release), a native runner, or move the heavy work into a `FROM --platform=$BUILDPLATFORM` stage",
        fix: &[
            "Retry once: emulator crashes are often intermittent.",
            "Use a qemu known to work for the failing program (reports cite qemu 8 and 9.2; a distribution's newer `qemu-user-static` usually helps).",
            "Build on a native runner for that architecture, or cross-compile in a `FROM --platform=$BUILDPLATFORM` stage and copy the result into the target stage.",
        ],
        rbuild: "rbuild classifies a step whose emulated process died from a signal as an emulator crash rather than a failure of your command, and reports the qemu interpreter it used.",
        detectors: &[Behaviour, Log],
        signatures: &[
            sig(
                Exact,
                r"qemu: uncaught target signal 11 \(Segmentation fault\) - core dumped",
                "#7 99.79 qemu: uncaught target signal 11 (Segmentation fault) - core dumped",
            ),
            sig(
                Specific,
                r"qemu: uncaught target signal (\d+) \(([^)]+)\)",
                "qemu: uncaught target signal 6 (Aborted) - core dumped",
            ),
            sig(
                Exact,
                r"(\w+)-binfmt-P: QEMU internal SIGSEGV \{code=\w+, addr=0x[0-9a-f]+\}",
                "aarch64-binfmt-P: QEMU internal SIGSEGV {code=MAPERR, addr=0x20}",
            ),
            sig(
                Exact,
                r"installed libc-bin package post-installation script subprocess returned error exit status 139",
                "43.23  installed libc-bin package post-installation script subprocess returned error exit status 139",
            ),
            emu(
                Generic,
                r"^(?:.*: )?Segmentation fault(?: \(core dumped\))?\s*$",
                "Segmentation fault (core dumped)",
            ),
        ],
        related: &[
            C::QemuNodeJsHangOrSigill,
            C::QemuGoRuntimeCrash,
            C::QemuJvmCrashOrHang,
        ],
        references: &[
            "https://github.com/docker/buildx/issues/1169",
            "https://github.com/docker/buildx/issues/1170",
            "https://github.com/tonistiigi/binfmt/issues/215",
            "https://github.com/tonistiigi/binfmt/issues/240",
            "https://github.com/tonistiigi/binfmt/issues/231",
            "https://github.com/tonistiigi/binfmt/pull/243",
            "https://github.com/docker/setup-qemu-action/issues/201",
            "https://github.com/docker/buildx/issues/542",
        ],
    },
    Entry {
        cause: C::PodSecurityBlocksUserns,
        title: "the surrounding container's security policy blocks user namespaces",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::No,
        summary: "rbuild runs inside a container whose seccomp or AppArmor policy forbids creating user namespaces or mounting.",
        explanation: "Container runtimes apply a default seccomp profile that blocks `unshare`, `clone(CLONE_NEWUSER)` and `mount`, and a default AppArmor profile that denies mounts. Kubernetes Pod Security \"restricted\", OpenShift's restricted SCCs and CI executors that run jobs in containers enforce these profiles, so a rootless builder inside them cannot create its sandbox even though the kernel allows unprivileged user namespaces.",
        hint: "run the build container with `--security-opt seccomp=unconfined --security-opt apparmor=unconfined` (Kubernetes: `securityContext.seccompProfile.type: Unconfined` and `appArmorProfile.type: Unconfined`)",
        fix: &[
            "Kubernetes: set `securityContext.seccompProfile.type: Unconfined` and `securityContext.appArmorProfile.type: Unconfined` on the build container (older clusters: the annotation `container.apparmor.security.beta.kubernetes.io/<container>: unconfined`).",
            "Docker or Podman: `--security-opt seccomp=unconfined --security-opt apparmor=unconfined`; add `--security-opt systempaths=unconfined` if `/proc` is masked (see `proc-mount-masked`).",
            "Ask the cluster administrator for a policy that allows user namespaces for build pods; no privileged container is needed.",
        ],
        rbuild: "`rbuild doctor` tries to create a user namespace and mount a tmpfs in it, reads the seccomp mode from `/proc/self/status` and the AppArmor label from `/proc/self/attr/current`, and names the layer that refuses.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            // Specific, not exact: rootlesskit prints the same line when AppArmor's
            // restriction is the cause, and then adds its own explanation (entry 6).
            sig(
                Specific,
                r"\[rootlesskit:parent\] error: failed to start the child: fork/exec /proc/self/exe: (operation not permitted|permission denied)",
                "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: operation not permitted",
            ),
            sig(
                Exact,
                r"\[rootlesskit:child \] error: failed to share mount point: /: permission denied",
                "[rootlesskit:child ] error: failed to share mount point: /: permission denied",
            ),
            sig(
                Exact,
                r"Error during unshare\(CLONE_NEWUSER\): Operation not permitted",
                "Error during unshare(CLONE_NEWUSER): Operation not permitted",
            ),
            sig(
                Specific,
                r"cannot clone: Operation not permitted",
                "cannot clone: Operation not permitted",
            ),
            sig(
                Specific,
                r"Error: cannot re-exec process",
                "Error: cannot re-exec process",
            ),
            sig(
                Exact,
                r"could not connect to unix:///run/user/\d+/buildkit/buildkitd\.sock after \d+ trials",
                "could not connect to unix:///run/user/1000/buildkit/buildkitd.sock after 10 trials",
            ),
            sig(
                Exact,
                r"error building stage: failed to get filesystem from image: chown (\S+): operation not permitted",
                "error building stage: failed to get filesystem from image: chown /usr/bin/newuidmap: operation not permitted",
            ),
        ],
        related: &[
            C::ApparmorRestrictUnprivilegedUserns,
            C::UsernsDisabledSysctl,
            C::ProcMountMasked,
        ],
        references: &[
            "https://github.com/rootless-containers/rootlesskit/issues/68",
            "https://github.com/rootless-containers/rootlesskit/issues/172",
            "https://github.com/moby/buildkit/issues/2441",
            "https://github.com/podman-container-tools/buildah/issues/2262",
            "https://github.com/podman-container-tools/buildah/issues/1940",
            "https://github.com/werf/werf/issues/5613",
            "https://github.com/podman-container-tools/podman/issues/15785",
            "https://github.com/GoogleContainerTools/kaniko/issues/1200",
        ],
    },
    Entry {
        cause: C::UsernsDisabledSysctl,
        title: "user namespaces are disabled on this host",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::No,
        summary: "The kernel does not let unprivileged users create user namespaces.",
        explanation: "Two kernel settings switch user namespaces off. `user.max_user_namespaces=0` disables them for everyone (creating one then fails with `ENOSPC`); it is the default on RHEL/CentOS 7, Bottlerocket and some OpenShift nodes, and hardening guides recommend it. Debian's own `kernel.unprivileged_userns_clone=0` (default on Debian 10 and older, and older Arch kernels) refuses them to non-root users with `EPERM`.",
        hint: "as root: `sysctl -w user.max_user_namespaces=28633` and, where it exists, `sysctl -w kernel.unprivileged_userns_clone=1` (add both to `/etc/sysctl.d/` to keep them)",
        fix: &[
            "`sysctl -w user.max_user_namespaces=28633` (any value above the number of namespaces you need).",
            "On Debian kernels that have it: `sysctl -w kernel.unprivileged_userns_clone=1`.",
            "Make it permanent: put the same settings in `/etc/sysctl.d/90-userns.conf`.",
            "Bottlerocket: set them through `settings.kernel.sysctl`; Kubernetes: a privileged DaemonSet that sets them on each node.",
        ],
        rbuild: "`rbuild doctor` reads both settings (either may be absent) and creates a user namespace to confirm, then prints the exact command.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"user namespaces are not enabled in /proc/sys/user/max_user_namespaces",
                "Error: cannot clone: Invalid argument: user namespaces are not enabled in /proc/sys/user/max_user_namespaces",
            ),
            sig(
                Exact,
                r"fork/exec /proc/self/exe: no space left on device",
                "[rootlesskit:parent] error: failed to start the child: fork/exec /proc/self/exe: no space left on device",
            ),
            sig(
                Exact,
                r"/proc/sys/user/max_user_namespaces needs to be set to non-zero",
                "WARN[0000] /proc/sys/user/max_user_namespaces needs to be set to non-zero.",
            ),
            sig(
                Specific,
                r"unshare: unshare failed: Operation not permitted",
                "unshare: unshare failed: Operation not permitted",
            ),
            sig(
                Specific,
                r"No user namespaces available",
                "No user namespaces available",
            ),
        ],
        related: &[
            C::ApparmorRestrictUnprivilegedUserns,
            C::PodSecurityBlocksUserns,
        ],
        references: &[
            "https://github.com/moby/buildkit/blob/master/docs/rootless.md",
            "https://github.com/podman-container-tools/podman/issues/7704",
            "https://github.com/a13xp0p0v/kernel-hardening-checker/issues/189",
            "https://github.com/flatcar/Flatcar/issues/773",
            "https://github.com/opencontainers/runc/issues/1906",
            "https://github.com/bottlerocket-os/bottlerocket/issues/1934",
        ],
    },
    Entry {
        cause: C::ApparmorRestrictUnprivilegedUserns,
        title: "unprivileged user namespaces are restricted by AppArmor",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "Ubuntu's AppArmor setting `kernel.apparmor_restrict_unprivileged_userns=1` gives new user namespaces no capabilities unless the program has a profile that allows them.",
        explanation: "Since Ubuntu 23.10 (and by default from 24.04, including GitHub's `ubuntu-24.04` runners) an unprivileged program may create a user namespace only if an AppArmor profile with a `userns,` rule confines it. Other programs still get the namespace, but without capabilities in it, so writing `uid_map` or mounting fails with `EPERM`.",
        hint: "as root: install an AppArmor profile for rbuild (`rbuild explain apparmor-restrict-unprivileged-userns` prints one), or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
        fix: &[
            "Allow rbuild by path. As root, write `/etc/apparmor.d/rbuild` containing:\n\n  ```\n  abi <abi/4.0>,\n  include <tunables/global>\n  /usr/local/bin/rbuild flags=(unconfined) {\n    userns,\n  }\n  ```\n\n  (use the absolute path of your `rbuild` binary), then `systemctl reload apparmor` or `apparmor_parser -r /etc/apparmor.d/rbuild`.",
            "Or turn the restriction off for the whole host: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (and in `/etc/sysctl.d/` to keep it). On GitHub's hosted runners add this as a step before the build.",
        ],
        rbuild: "`rbuild doctor` reads `/proc/sys/kernel/apparmor_restrict_unprivileged_userns`, tries to create a user namespace, and when the restriction is what stops it prints a profile with the absolute path of the running `rbuild`.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"This error might have happened because /proc/sys/kernel/apparmor_restrict_unprivileged_userns is set to 1",
                "[rootlesskit:parent] This error might have happened because /proc/sys/kernel/apparmor_restrict_unprivileged_userns is set to 1.",
            ),
            sig(
                Exact,
                r"write failed /proc/self/uid_map: Operation not permitted",
                "unshare: write failed /proc/self/uid_map: Operation not permitted",
            ),
            sig(
                Exact,
                r#"write\("/proc/self/uid_map", \.\.\.?\) => Operation not permitted"#,
                "bwrap: setting up uid map: write(\"/proc/self/uid_map\", ...) => Operation not permitted",
            ),
            sig(
                Specific,
                r"fork/exec /proc/self/exe: permission denied",
                "FATA[0000] failed to start the child: fork/exec /proc/self/exe: permission denied",
            ),
        ],
        related: &[C::UsernsDisabledSysctl, C::PodSecurityBlocksUserns],
        references: &[
            "https://github.com/rootless-containers/rootlesskit/pull/421",
            "https://github.com/containerd/nerdctl/issues/2847",
            "https://github.com/docker/docs/pull/19638",
            "https://github.com/docker/docker-ce-packaging/issues/952",
            "https://github.com/ScribeMD/rootless-docker/issues/401",
            "https://ubuntu.com/blog/ubuntu-23-10-restricted-unprivileged-user-namespaces",
        ],
    },
    Entry {
        cause: C::NewuidmapMissingOrBroken,
        title: "`newuidmap`/`newgidmap` are missing or lack their privileges",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "The helpers that map a subordinate id range into a user namespace are not installed, or cannot do their job.",
        explanation: "An unprivileged process can map only its own id into a user namespace. Mapping a whole range (what a container image needs) goes through the setuid helpers `newuidmap` and `newgidmap` from the `uidmap` package (`shadow-utils` on Fedora). They fail when the package is missing, when the binaries lost their setuid bit or `cap_setuid`/`cap_setgid` file capabilities (copied into an image, a `nosuid` mount), when the subordinate range is malformed or overlaps another (`EINVAL`), or in nested containers whose own namespace does not contain the ids `/etc/subuid` names (`EPERM`). Some tools then silently fall back to a single-id mapping, and the build fails later as `subid-range-too-small` or `apt-sandbox-setgroups`.",
        hint: "as root: `apt-get install uidmap` (Fedora: `dnf reinstall shadow-utils`); check `ls -l /usr/bin/newuidmap` shows the setuid bit (`-rwsr-xr-x root`)",
        fix: &[
            "Install the helpers: `apt-get install uidmap` on Debian/Ubuntu, `dnf reinstall shadow-utils` on Fedora/RHEL.",
            "Restore their privileges if they were lost: `chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap`, or `setcap cap_setuid+ep /usr/bin/newuidmap` and `setcap cap_setgid+ep /usr/bin/newgidmap`.",
            "Make sure the file system holding them is not mounted `nosuid`.",
            "Fix `/etc/subuid` and `/etc/subgid`: one `user:start:count` line per user, ranges not overlapping each other or real user ids.",
        ],
        rbuild: "`rbuild doctor` looks the helpers up, checks their owner, setuid bit and `security.capability` xattr and whether their mount allows setuid, and maps the user's range through them in a test namespace. rbuild never falls back to a single-id mapping silently.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r#"exec: "newuidmap": executable file not found in \$PATH"#,
                "[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 4242 [0 1000 1 1 100000 65536] failed: : exec: \"newuidmap\": executable file not found in $PATH",
            ),
            sig(
                Exact,
                r"cannot setup namespace using newuidmap: exit status 1",
                "Error: cannot setup namespace using newuidmap: exit status 1",
            ),
            sig(
                Exact,
                r"failed to setup UID/GID map: newuidmap \d+ \[[^\]]*\] failed: newuidmap: Could not set caps",
                "[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 82 [0 1000 1 1 100000 65536] failed: newuidmap: Could not set caps",
            ),
            sig(
                Exact,
                r"newuidmap: write to uid_map failed: (Operation not permitted|Invalid argument)",
                "newuidmap: write to uid_map failed: Operation not permitted",
            ),
            sig(
                Exact,
                r"newgidmap: write to gid_map failed: (Operation not permitted|Invalid argument)",
                "error running newgidmap: exit status 1: newgidmap: write to gid_map failed: Operation not permitted",
            ),
            sig(
                Specific,
                r"falling back to single mapping",
                "WARN[0000] error running newuidmap: exit status 1: newuidmap: write to uid_map failed: Invalid argument; falling back to single mapping",
            ),
        ],
        related: &[C::SubidRangeTooSmall, C::AptSandboxSetgroups],
        references: &[
            "https://github.com/moby/buildkit/issues/1904",
            "https://github.com/moby/buildkit/issues/2680",
            "https://github.com/rootless-containers/rootlesskit/issues/404",
            "https://github.com/rootless-containers/rootlesskit/issues/229",
            "https://github.com/podman-container-tools/podman/issues/12637",
            "https://github.com/podman-container-tools/podman/issues/7106",
            "https://github.com/podman-container-tools/buildah/issues/3053",
            "https://github.com/podman-container-tools/buildah/issues/4049",
        ],
    },
    Entry {
        cause: C::OverlayUnavailableSlowFallback,
        title: "overlayfs cannot be mounted in a user namespace here",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "The kernel refuses an overlay mount inside the build's user namespace, so each step's file system cannot be layered cheaply.",
        explanation: "rbuild stacks each step's writable layer on the base layers with kernel overlayfs. Inside a user namespace that needs Linux ≥ 5.11 (the `userxattr` option) or a distribution kernel with the equivalent patch. The upper and work directories must not themselves be on overlayfs, such as a container's own root file system: that fails with `invalid argument`. Builders that cannot use overlay fall back to fuse-overlayfs (needs `/dev/fuse`) or to copying the whole file system for every step, which is slow and fills disks.",
        hint: "use Linux ≥ 5.11, and put rbuild's state directory (`--cache-dir`, default `~/.cache/rbuild`) on a non-overlay file system such as a volume or `emptyDir`",
        fix: &[
            "Use a kernel ≥ 5.11.",
            "In a container, mount a volume (Kubernetes `emptyDir`) at the state directory, so the upper directories are not on the container's overlay root.",
            "Check with `rbuild doctor`, which mounts a test overlay in a user namespace.",
        ],
        rbuild: "`rbuild doctor` mounts a small overlay with `userxattr` inside a user namespace in the state directory and reports the file system type it sits on.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"auto snapshotter: overlayfs is not available for \S+, trying fuse-overlayfs: failed to mount overlay: .*err: (invalid argument|permission denied)",
                "WARN[0000] auto snapshotter: overlayfs is not available for /home/user/.local/share/buildkit, trying fuse-overlayfs: failed to mount overlay: mount source: \"overlay\", target: \"/home/user/.local/share/buildkit/tmp/x\", fstype: overlay, flags: 0, data: \"lowerdir=a,upperdir=b,workdir=c,userxattr\", err: invalid argument",
            ),
            sig(
                Exact,
                r"fuse-overlayfs not functional, make sure running with kernel >= 4\.18",
                "WARN[0000] fuse-overlayfs not functional, make sure running with kernel >= 4.18: failed to mount fuse-overlayfs",
            ),
            sig(
                Exact,
                r"auto snapshotter: using native",
                "INFO[0000] auto snapshotter: using native",
            ),
            sig(
                Exact,
                r#"fstype: overlay, flags: 0, data: ".*userxattr.*", err: invalid argument"#,
                "failed to mount overlay: mount source: \"overlay\", target: \"/tmp/ov\", fstype: overlay, flags: 0, data: \"lowerdir=/l,upperdir=/u,workdir=/w,userxattr\", err: invalid argument",
            ),
            sig(
                Exact,
                r"Not using native diff for overlay2, this may cause degraded performance for building images: failed to set opaque flag on middle layer: operation not permitted",
                "level=warning msg=\"Not using native diff for overlay2, this may cause degraded performance for building images: failed to set opaque flag on middle layer: operation not permitted\" storage-driver=overlay2",
            ),
        ],
        related: &[
            C::StateDirOnOverlayOrNosuid,
            C::FuseDeviceMissing,
            C::DiskFullOrInodes,
        ],
        references: &[
            "https://github.com/moby/buildkit/blob/master/docs/rootless.md",
            "https://github.com/moby/buildkit/issues/7003",
            "https://github.com/moby/buildkit/issues/6116",
            "https://github.com/moby/buildkit/issues/5049",
            "https://github.com/moby/buildkit/issues/2642",
            "https://github.com/moby/moby/issues/41803",
        ],
    },
    Entry {
        cause: C::ProcMountMasked,
        title: "a fresh `/proc` cannot be mounted because the current one is masked",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "Each step gets its own PID namespace, which needs a new procfs mount; the kernel refuses it while the surrounding `/proc` has masked or read-only parts.",
        explanation: "Container runtimes hide parts of `/proc` (`/proc/kcore`, `/proc/sys` read-only, and so on) by mounting over them. The kernel then refuses to mount a new, unmasked procfs from inside a user namespace (`mount_too_revealing`), because that would reveal what was hidden. Without a fresh `/proc` a step cannot have its own PID namespace, and processes it starts in the background could outlive it.",
        hint: "run the build container with `--security-opt systempaths=unconfined` (Kubernetes: a user-namespaced pod, `hostUsers: false`, with `securityContext.procMount: Unmasked`)",
        fix: &[
            "Docker/Podman: `--security-opt systempaths=unconfined` on the container rbuild runs in.",
            "Kubernetes: run the pod with its own user namespace (`hostUsers: false`, on by default since 1.33 on kernels ≥ 6.3) and `securityContext.procMount: Unmasked`.",
        ],
        rbuild: "`rbuild doctor` lists masked mounts under `/proc` from `/proc/self/mountinfo` and tries to mount a procfs in a new user and PID namespace. rbuild does not silently drop the PID namespace.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"mount proc:/proc \(via /proc/self/fd/\d+\), flags: 0x[0-9a-f]+: operation not permitted",
                "runc run failed: unable to start container process: error during container init: error mounting \"proc\" to rootfs at \"/proc\": mount proc:/proc (via /proc/self/fd/6), flags: 0xe: operation not permitted",
            ),
            sig(
                Specific,
                r#"error mounting "proc" to rootfs at "/proc""#,
                "error mounting \"proc\" to rootfs at \"/proc\": permission denied",
            ),
            sig(
                Exact,
                r#"Permission denied to mount "proc""#,
                "Permission denied to mount \"proc\" to rootfs at \"/proc\"",
            ),
            sig(
                Exact,
                r"can't mount proc filesystem to /proc: operation not permitted",
                "can't mount proc filesystem to /proc: operation not permitted",
            ),
        ],
        related: &[C::NoProcessSandboxLeakedProcess, C::PodSecurityBlocksUserns],
        references: &[
            "https://github.com/moby/buildkit/issues/4073",
            "https://github.com/moby/buildkit/pull/4075",
            "https://github.com/moby/buildkit/issues/2512",
            "https://github.com/opencontainers/runc/issues/1658",
            "https://github.com/moby/buildkit/pull/5765",
            "https://github.com/kubescape/kubescape/pull/3754",
        ],
    },
    Entry {
        cause: C::RegistryRateLimited,
        title: "the registry is rate limiting this client",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::Partly,
        summary: "The registry answered 429 Too Many Requests; this is an infrastructure limit, not a problem with your Dockerfile.",
        explanation: "Docker Hub limits anonymous and free-tier pulls per source IP address, and CI runners share egress addresses, so a busy fleet hits the limit although each job pulls little. Other registries rate limit too.",
        hint: "log in before pulling (authenticated pulls have higher limits), or pull through a mirror; retrying later also works",
        fix: &[
            "Authenticate pulls (`docker login` writes `~/.docker/config.json`, which rbuild reads).",
            "Use a pull-through cache or mirror for Docker Hub.",
            "Retry later; rbuild already retries with backoff and honours `Retry-After`.",
        ],
        rbuild: "rbuild retries 429 answers with backoff that honours `Retry-After`, then reports the registry, the repository and the limit headers it saw.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"toomanyrequests: You have reached your pull rate limit",
                "ERROR: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
            ),
            sig(
                Exact,
                r"unexpected status from (HEAD|GET) request to https://registry-1\.docker\.io/\S+: 429 Too Many Requests",
                "failed to copy: httpReadSeeker: failed open: unexpected status from GET request to https://registry-1.docker.io/v2/library/node/manifests/sha256:1e2f: 429 Too Many Requests",
            ),
            sig(
                Exact,
                r#""code":\s*"TOOMANYREQUESTS""#,
                "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"You have reached your pull rate limit.\"}]}",
            ),
            sig(
                Specific,
                r"429 Too Many Requests",
                "error pulling image configuration: download failed after attempts=6: 429 Too Many Requests",
            ),
        ],
        related: &[C::RegistryAuth401],
        references: &[
            "https://github.com/alaegin/Detekt-Action/issues/72",
            "https://github.com/rapidsai/ci-imgs/issues/427",
            "https://github.com/tonistiigi/binfmt/pull/237",
        ],
    },
    Entry {
        cause: C::BaseImageMissingPlatform,
        title: "the base image does not publish the requested platform",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Partly,
        summary: "A `FROM` image has no variant for one of the platforms being built.",
        explanation: "A multi-platform image is an index of one manifest per platform. If the index has no entry for the platform being built (say linux/riscv64 for an image published only for amd64 and arm64), or a single-platform image was built for another architecture, there is nothing to build on.",
        hint: "pick a base image or tag that covers the platform, drop the platform from `--platform`, or build tool stages with `FROM --platform=$BUILDPLATFORM`",
        fix: &[
            "List what the image offers: `skopeo inspect --raw docker://<image> | jq '.manifests[].platform'`.",
            "Choose a base image (or tag) that publishes every platform you build, or remove the missing platform from `--platform`.",
            "For stages that only produce architecture-independent files or cross-compile, use `FROM --platform=$BUILDPLATFORM`.",
        ],
        rbuild: "rbuild resolves every `FROM` for every requested platform before running any step and reports all gaps at once, each on its `FROM` line.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"no match for platform in manifest(?: sha256:[0-9a-f]+)?: not found",
                "ERROR: failed to solve: ubuntu:22.04: failed to resolve source metadata for docker.io/library/ubuntu:22.04: no match for platform in manifest sha256:0eb0f877e1c869a300c442c41120e778db7161419244ee5cbc6fa5f134e74736: not found",
            ),
            sig(
                Exact,
                r"no matching manifest for (\S+) in the manifest list entries",
                "no matching manifest for linux/arm64/v8 in the manifest list entries",
            ),
            sig(
                Exact,
                r"failed to resolve source metadata for (\S+): no match for platform in manifest",
                "failed to resolve source metadata for docker.io/library/mysql:5.7: no match for platform in manifest",
            ),
            sig(
                Exact,
                r"image platform \((\S+)\) does not match the expected platform \((\S+)\)",
                "WARNING: image platform (linux/amd64) does not match the expected platform (linux/arm64)",
            ),
        ],
        related: &[C::BinfmtNotRegistered],
        references: &[
            "https://github.com/serversideup/s6-overlay/issues/8",
            "https://github.com/infiniflow/ragflow/issues/5171",
            "https://github.com/edgexfoundry/ci-management/issues/345",
            "https://github.com/CIROH-UA/NGIAB-CloudInfra/issues/276",
        ],
    },
    Entry {
        cause: C::AptSandboxSetgroups,
        title: "apt cannot drop privileges to its `_apt` user",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Yes,
        summary: "apt downloads as the unprivileged `_apt` user (gid 65534); switching to it failed inside the build's user namespace.",
        explanation: "Before downloading, apt calls `setgroups`, `setegid(65534)` and `seteuid` to become `_apt`. With a single-id mapping (no subordinate range) gid 65534 does not exist in the namespace and the calls fail with `EINVAL`. If the namespace was set up with `setgroups=deny` (required only when an unprivileged process writes its own gid map), `setgroups` fails with `EPERM`.",
        hint: "give the building user a subordinate id range (see `subid-range-too-small`); as a Dockerfile workaround: `RUN echo 'APT::Sandbox::User \"root\";' > /etc/apt/apt.conf.d/10sandbox`",
        fix: &[
            "Configure subordinate ranges for the user who builds (`subid-range-too-small`, `newuidmap-missing-or-broken`).",
            "Workaround inside the Dockerfile, before the first `apt-get`: `RUN echo 'APT::Sandbox::User \"root\";' > /etc/apt/apt.conf.d/10sandbox` (downloads then run unsandboxed as root inside the build).",
        ],
        rbuild: "rbuild maps the full subordinate range including 65534 through `newgidmap` and never writes `setgroups=deny` when `newgidmap` writes the map, so apt's sandbox works. When only a single-id mapping is possible it says so before the first RUN.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"E: setgroups 65534 failed - setgroups \((\d+): (Invalid argument|Operation not permitted)\)",
                "E: setgroups 65534 failed - setgroups (22: Invalid argument)",
            ),
            sig(
                Exact,
                r"E: setegid 65534 failed - setegid",
                "E: setegid 65534 failed - setegid (22: Invalid argument)",
            ),
            sig(
                Exact,
                r"E: seteuid \d+ failed - seteuid",
                "E: seteuid 100 failed - seteuid (1: Operation not permitted)",
            ),
            sig(
                Exact,
                r"E: setgroups 0 failed - setgroups \(1: Operation not permitted\)",
                "E: setgroups 0 failed - setgroups (1: Operation not permitted)",
            ),
            sig(
                Exact,
                r"E: Method gave invalid 400 URI Failure message: Failed to setgroups",
                "E: Method gave invalid 400 URI Failure message: Failed to setgroups - setgroups (22: Invalid argument)",
            ),
            sig(
                Specific,
                r"E: Method http has died unexpectedly!",
                "E: Method http has died unexpectedly!",
            ),
            sig(
                Specific,
                r"Sub-process http returned an error code \(112\)",
                "E: Sub-process http returned an error code (112)",
            ),
        ],
        related: &[C::SubidRangeTooSmall, C::NewuidmapMissingOrBroken],
        references: &[
            "https://github.com/podman-container-tools/buildah/issues/3345",
            "https://github.com/podman-container-tools/podman/issues/21422",
            "https://github.com/pelagos-containers/pelagos/issues/434",
            "https://github.com/opencontainers/runc/issues/2517",
            "https://github.com/canonical/subiquity/pull/1584",
            "https://github.com/genuinetools/img/issues/96",
        ],
    },
    Entry {
        cause: C::FileCapabilitiesSetfcap,
        title: "file capabilities cannot be set",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Yes,
        summary: "A package installs a binary with file capabilities (`security.capability`), and setting them failed.",
        explanation: "Packages such as iputils (`ping`), httpd (`suexec`) and mtr ship file capabilities. Setting them inside a user namespace needs `CAP_SETFCAP` in that namespace and a kernel with namespaced (v3) file capabilities (Linux ≥ 4.14). Builders that drop `CAP_SETFCAP` from RUN steps break rpm and dpkg installs of such packages; so did a nested-namespace regression in Linux 5.11.",
        hint: "keep `CAP_SETFCAP` for RUN steps (`--cap-add SETFCAP` on other builders); upgrade the kernel if it still refuses",
        fix: &[
            "Give RUN steps `CAP_SETFCAP` (Docker's default set has it; Buildah/Podman: `--cap-add SETFCAP`).",
            "Use a kernel ≥ 4.14 outside nested containers; upgrade past 5.11 if nested.",
        ],
        rbuild: "rbuild keeps `CAP_SETFCAP` in the capability set of every RUN step and writes capabilities relative to the namespace's root when unpacking, and reports the file when the kernel still refuses.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"error: unpacking of archive failed on file (\S+): cpio: cap_set_file(?: failed - (.*))?",
                "error: unpacking of archive failed on file /usr/sbin/suexec;5f77513d: cpio: cap_set_file",
            ),
            sig(
                Specific,
                r"Error unpacking rpm package (\S+)",
                "Error unpacking rpm package fping-3.10-4.el7.x86_64",
            ),
            sig(
                Exact,
                r"Failed to set capabilities on file `?(\S+?)'? \(Invalid argument\)",
                "Failed to set capabilities on file `/usr/bin/ping' (Invalid argument)",
            ),
            sig(
                Exact,
                r#"setxattr\(.*"security\.capability".*= -1 EINVAL"#,
                "setxattr(\"/usr/bin/arping\", \"security.capability\", \"\\x01\\x00\\x00\\x02\", 20, 0) = -1 EINVAL (Invalid argument)",
            ),
        ],
        related: &[C::IcmpPingInBuild, C::XattrSecuritySelinuxInLayer],
        references: &[
            "https://github.com/podman-container-tools/buildah/issues/2176",
            "https://github.com/containers/common/pull/69",
            "https://github.com/podman-container-tools/podman/issues/5364",
            "https://github.com/podman-container-tools/buildah/issues/3071",
            "https://github.com/podman-container-tools/podman/issues/9792",
            "https://github.com/lxc/lxc/issues/1492",
        ],
    },
    Entry {
        cause: C::XattrSecuritySelinuxInLayer,
        title: "base-image files carry SELinux labels",
        severity: Severity::Warning,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Yes,
        summary: "Files in a base-image layer carry `security.selinux` extended attributes, which cannot be set inside a user namespace.",
        explanation: "Images built on SELinux-enforcing hosts (with buildah, podman or rpm-based tools) can store each file's SELinux label in the layer as a `SCHILY.xattr.security.selinux` PAX record. Even root inside a user namespace may not set `security.*` attributes (apart from namespaced file capabilities): the kernel answers `EPERM`, or `EINVAL` on SELinux hosts that do not know the label, or `ENOTSUP` on file systems without SELinux support. The labels are useless in the image anyway, because runtimes relabel files. This is what broke the builds in moby/buildkit#2407.",
        hint: "nothing to do: rbuild drops the labels and builds on; to get rid of the warning, use a base image built without them or strip them when that image is built",
        fix: &[
            "Nothing is required: rbuild drops the labels and leaves this warning.",
            "To silence it, use a base image without labels, or strip them where the base image is built (for example `setfattr -x security.selinux` over its files, or build it on a host without SELinux).",
        ],
        rbuild: "rbuild scans layer headers before unpacking, drops `security.selinux` (and tolerates `EPERM`/`ENOTSUP` for other `security.*` except capabilities, and for `trusted.*`), and leaves one warning that names the layer and the affected paths.",
        detectors: &[LayerScan, Structured, Log],
        signatures: &[
            sig(
                Exact,
                r#"failed to copy xattrs: failed to set xattr "security\.selinux" on (\S+): (operation not supported|operation not permitted)"#,
                "ERROR: process \"/dev/.buildkit_qemu_emulator /bin/sh -c apt update\" did not complete successfully: failed to copy xattrs: failed to set xattr \"security.selinux\" on /home/user/.local/tmp/buildkit-qemu-emulator65396669/dev/.buildkit_qemu_emulator: operation not supported",
            ),
            sig(
                Exact,
                r#"failed to register layer: lsetxattr (\S+): xattr "security\.selinux": no such file or directory"#,
                "failed to register layer: lsetxattr /etc/pki: xattr \"security.selinux\": no such file or directory",
            ),
            sig(
                Specific,
                r"security\.selinux.*(operation not permitted|invalid argument|operation not supported)",
                "failed to extract layer: lsetxattr security.selinux /usr/bin/gitlab-runner-helper: operation not permitted",
            ),
            sig(
                Specific,
                r"failed to extract layer sha256:[0-9a-f]+: operation not permitted: unknown",
                "failed to extract layer sha256:d1f0d8a6b0e7b3c1c1a2d4a0c3e2f1b5a6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1: operation not permitted: unknown",
            ),
            sig(
                Generic,
                r"lsetxattr (\S+): invalid argument",
                "failed to register layer: lsetxattr /etc/krb5.conf.d: invalid argument",
            ),
        ],
        related: &[
            C::XattrOverlayOrImaInLayer,
            C::HostSelinuxPolicyDenial,
            C::FileCapabilitiesSetfcap,
        ],
        references: &[
            "https://github.com/moby/buildkit/issues/2407",
            "https://github.com/moby/buildkit/issues/5400",
            "https://github.com/moby/buildkit/issues/5544",
            "https://github.com/moby/buildkit/pull/6015",
            "https://github.com/moby/buildkit/issues/1189",
            "https://github.com/containers/storage/pull/1077",
            "https://github.com/containerd/containerd/pull/7094",
            "https://github.com/moby/moby/issues/53616",
        ],
    },
    Entry {
        cause: C::RootlessDns,
        title: "name resolution fails inside the build",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::Partly,
        summary: "A RUN step could not resolve a host name.",
        explanation: "Steps resolve names with the `/etc/resolv.conf` the builder gives them. When the host's resolver is a loopback stub (systemd-resolved at 127.0.0.53, dnsmasq) and the step has its own network namespace, the stub is unreachable; builders that replace it with public servers (8.8.8.8) fail in networks that filter egress or need internal DNS. User-mode networking (slirp4netns) has its own resolver address, and Kubernetes search domains with `ndots` add surprises.",
        hint: "check that the host resolves the name; with `--network none` steps have no network at all; with a loopback-only `/etc/resolv.conf` point it at the real upstream servers (`/run/systemd/resolve/resolv.conf`)",
        fix: &[
            "Check the name resolves on the host: `getent hosts <name>`.",
            "If `/etc/resolv.conf` lists only `127.0.0.53`, the upstream servers are in `/run/systemd/resolve/resolv.conf`.",
            "Steps built with `--network none` cannot resolve anything by design.",
        ],
        rbuild: "rbuild's default network for RUN steps is the host's (`--network host`), which keeps loopback resolvers working. When it isolates a step it uses the upstream servers of systemd-resolved and says so, and never falls back to public DNS silently.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"Temporary failure resolving '([^']+)'",
                "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'",
            ),
            sig(
                Exact,
                r"dial tcp: lookup (\S+) on 10\.0\.2\.3:53: .*(no route to host|i/o timeout)",
                "dial tcp: lookup proxy.golang.org on 10.0.2.3:53: read udp 10.0.2.100:43222->10.0.2.3:53: i/o timeout",
            ),
            sig(
                Exact,
                r"wget: bad address '([^']+)'",
                "wget: bad address 'dl-cdn.alpinelinux.org'",
            ),
            sig(
                Specific,
                r"Could not resolve host: (\S+)",
                "curl: (6) Could not resolve host: github.com",
            ),
        ],
        related: &[C::SlirpMtu],
        references: &[
            "https://github.com/podman-container-tools/podman/issues/2572",
            "https://github.com/podman-container-tools/buildah/issues/1223",
            "https://github.com/podman-container-tools/buildah/issues/5033",
            "https://github.com/moby/buildkit/issues/5009",
            "https://github.com/rootless-containers/rootlesskit/issues/280",
        ],
    },
    Entry {
        cause: C::QemuNodeJsHangOrSigill,
        title: "a Node.js process crashed or hung under emulation",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "An emulated Node.js process died with an illegal instruction or stopped making progress.",
        explanation: "Node's V8 JIT generates code at run time, and qemu-user mishandles some of it: npm can spin forever on s390x, yarn can hang on arm/v7, and some qemu/Node combinations die with SIGILL. Which combination breaks changes between releases.",
        hint: "run the JavaScript build in a `FROM --platform=$BUILDPLATFORM` stage and copy its architecture-independent output into the target stage, or build on a native runner",
        fix: &[
            "Run `npm ci`/`yarn install`/`pnpm install` and the bundler in a `FROM --platform=$BUILDPLATFORM` stage, then `COPY --from=` the output into the target stage (native modules need a cross-compiler or a native runner).",
            "Build on native runners for that architecture.",
            "Drop rarely needed targets such as linux/arm/v7 or linux/s390x if they are not needed.",
        ],
        rbuild: "rbuild reports an emulated process killed by SIGILL with the interpreter it ran under, and flags emulated steps that stop printing for a long time.",
        detectors: &[Behaviour, Log],
        signatures: &[sig(
            Exact,
            r"qemu: uncaught target signal 4 \(Illegal instruction\)",
            "qemu: uncaught target signal 4 (Illegal instruction) - core dumped",
        )],
        related: &[C::QemuSegfault, C::StepTimedOut],
        references: &[
            "https://github.com/nodejs/docker-node/issues/1973",
            "https://github.com/nodejs/node/issues/50339",
            "https://github.com/docker/build-push-action/issues/1071",
            "https://github.com/nodejs/docker-node/issues/873",
        ],
    },
    Entry {
        cause: C::QemuGoRuntimeCrash,
        title: "the Go runtime crashed under emulation",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "An emulated Go program (or `go build` itself) aborted with a runtime fatal error.",
        explanation: "The Go runtime packs pointers into 48 bits, relies on precise signal delivery and creates many threads. qemu-user breaks some of these assumptions: emulating x86_64 on arm64 hands out addresses above 48 bits, and the runtime aborts with `lfstack.push invalid packing`. The Go project does not support running under qemu user-mode emulation.",
        hint: "cross-compile instead: build in a `FROM --platform=$BUILDPLATFORM` stage with `GOOS`/`GOARCH` (and `CGO_ENABLED=0`) and copy the binary into the target stage",
        fix: &[
            "Cross-compile in a `FROM --platform=$BUILDPLATFORM golang` stage: `RUN GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build ...`, then `COPY --from=` the binary.",
            "Do not run foreign Go binaries in emulated steps (a `tool version` smoke test is enough to crash).",
        ],
        rbuild: "rbuild recognises the runtime's fatal errors in an emulated step and points to the cross-compile pattern.",
        detectors: &[Behaviour, Log],
        signatures: &[
            sig(
                Exact,
                r"fatal error: lfstack\.push",
                "fatal error: lfstack.push",
            ),
            sig(
                Exact,
                r"runtime: lfstack\.push invalid packing",
                "runtime: lfstack.push invalid packing: node=0xffff6f446a80 cnt=0x1 packed=0xffff6f446a800001 -> node=0xffffffff6f446a80",
            ),
            sig(
                Exact,
                r"fatal error: rt_sigaction failure",
                "fatal error: rt_sigaction failure",
            ),
            sig(
                Exact,
                r"runtime: unexpected return pc for runtime\.sigpanic",
                "runtime: unexpected return pc for runtime.sigpanic called from 0x0",
            ),
            sig(
                Exact,
                r"qemu-\w+(?:-static)?: .*Assertion .* failed",
                "qemu-x86_64-static: ../../accel/tcg/cpu-exec.c:1027: cpu_exec_setjmp: Assertion `cpu == current_cpu' failed.",
            ),
            sig(
                Exact,
                r"qemu: unhandled CPU exception",
                "qemu: unhandled CPU exception 0x10001 - aborting",
            ),
        ],
        related: &[C::QemuSegfault],
        references: &[
            "https://github.com/golang/go/issues/69255",
            "https://github.com/golang/go/issues/48439",
            "https://github.com/golang/go/issues/13024",
            "https://github.com/golang/go/issues/24656",
            "https://github.com/moby/buildkit/issues/2541",
            "https://github.com/argoproj/argo-cd/pull/26916",
        ],
    },
    Entry {
        cause: C::QemuX8664V2CpuLevel,
        title: "the emulated CPU is older than glibc requires",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "glibc in the image requires x86-64-v2 (or v3) instructions, and the CPU it runs on (emulated or virtual) lacks them.",
        explanation: "RHEL 9 family images (UBI 9, Oracle Linux 9, Amazon Linux 2023) build glibc for x86-64-v2, and RHEL 10 for v3. Older qemu-user releases emulate a baseline x86_64 CPU without those features; virtual machines using the `qemu64`/`kvm64` CPU models hit the same error.",
        hint: "use a newer qemu (whose default x86_64 CPU model has the features), a native amd64 runner, or a base image without the requirement",
        fix: &[
            "Upgrade `qemu-user-static` to a release whose default x86_64 CPU model supports x86-64-v2.",
            "Build on a native amd64 runner; for virtual machines, give them the host CPU model.",
            "Or use a base image built for the baseline x86-64 level.",
        ],
        rbuild: "rbuild recognises glibc's message and names the CPU level it asked for.",
        detectors: &[Log],
        signatures: &[sig(
            Exact,
            r"Fatal glibc error: CPU does not support x86-64-v(\d)",
            "Fatal glibc error: CPU does not support x86-64-v2",
        )],
        related: &[C::QemuSegfault],
        references: &[
            "https://github.com/podman-container-tools/podman/issues/15456",
            "https://github.com/runfinch/finch/issues/20",
            "https://github.com/kubevirt/containerized-data-importer/issues/2652",
            "https://github.com/kuvasz-uptime/kuvasz/issues/346",
        ],
    },
    Entry {
        cause: C::QemuJvmCrashOrHang,
        title: "the JVM crashed or hung under emulation",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "An emulated Java process crashed (a JVM fatal error report) or stopped making progress.",
        explanation: "The JVM's JIT compiler and signal handling stress qemu-user, and regressions come and go with qemu versions: Maven under qemu 2.8, the Gradle daemon under qemu 8.1.0, Java 17 on arm/v7 where 11 works.",
        hint: "build the jars in a `FROM --platform=$BUILDPLATFORM` stage (bytecode is architecture-independent) and copy them into the target stage, or build on a native runner",
        fix: &[
            "Compile and package in a `FROM --platform=$BUILDPLATFORM` stage, then `COPY --from=` the jars.",
            "Build on native runners, or pin a qemu release known to work with your JVM.",
        ],
        rbuild: "rbuild recognises a JVM crash report in an emulated step and reports it as an emulator problem.",
        detectors: &[Behaviour, Log],
        signatures: &[
            emu(
                Specific,
                r"# A fatal error has been detected by the Java Runtime Environment:",
                "# A fatal error has been detected by the Java Runtime Environment:",
            ),
            emu(
                Specific,
                r"SIGSEGV \(0xb\) at pc=",
                "#  SIGSEGV (0xb) at pc=0x0000004001a2b3c4, pid=17, tid=23",
            ),
        ],
        related: &[C::QemuSegfault, C::StepTimedOut],
        references: &[
            "https://github.com/multiarch/qemu-user-static/issues/18",
            "https://github.com/felixonmars/archriscv-packages/pull/3211",
            "https://github.com/gradle/docker-gradle/issues/210",
            "https://github.com/postmarketOS/pmbootstrap/issues/679",
        ],
    },
    Entry {
        cause: C::SetuidIgnoredSudo,
        title: "a setuid program was not given its privileges",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Partly,
        summary: "`sudo` (or another setuid program) ran without the privileges its setuid bit promises.",
        explanation: "Two causes are common. Under emulation, a binfmt handler registered without the `C` (credentials) flag computes credentials from the qemu interpreter instead of the program, so setuid and file capabilities are ignored. And build storage mounted `nosuid` (Google Container-Optimized OS volumes, some storage drivers) ignores setuid bits outright.",
        hint: "use `USER root` in the Dockerfile instead of `sudo`; for emulated builds register binfmt handlers with the `C` flag; do not mount build storage `nosuid`",
        fix: &[
            "Prefer `USER root` (or no `USER`) for steps that need root, instead of `sudo` inside RUN.",
            "Register qemu handlers with the `OCF` flags (tonistiigi/binfmt does; multiarch/qemu-user-static needs `--credential yes`).",
            "Do not keep rbuild's state directory on a `nosuid` mount.",
        ],
        rbuild: "rbuild never mounts a step's root file system `nosuid`, registers its private binfmt handlers with the credential flag, and `rbuild doctor` reports a `nosuid` state directory.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"sudo: effective uid is not 0, is (\S+) on a file system with the 'nosuid' option set or an NFS file system without root privileges\?",
                "sudo: effective uid is not 0, is /usr/bin/sudo on a file system with the 'nosuid' option set or an NFS file system without root privileges?",
            ),
            sig(
                Exact,
                r"sudo: (\S+) must be owned by uid 0 and have the setuid bit set",
                "sudo: /usr/bin/sudo must be owned by uid 0 and have the setuid bit set",
            ),
        ],
        related: &[C::BinfmtNotRegistered, C::StateDirOnOverlayOrNosuid],
        references: &[
            "https://github.com/moby/buildkit/issues/744",
            "https://github.com/multiarch/qemu-user-static/issues/17",
            "https://github.com/uraimo/run-on-arch-action/pull/75",
            "https://github.com/podman-container-tools/podman/issues/21395",
            "https://github.com/podman-container-tools/podman/issues/23041",
            "https://github.com/tonistiigi/binfmt/issues/342",
        ],
    },
    Entry {
        cause: C::DeviceNodeOrWhiteoutMknod,
        title: "a layer contains device nodes",
        severity: Severity::Warning,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Yes,
        summary: "A layer holds character or block device nodes, which cannot be created inside a user namespace.",
        explanation: "Creating device nodes is forbidden outside the initial user namespace. Some images still ship entries under `/dev` (old CentOS, mysql:5.7, openjdk:15). Storage drivers that turn OCI `.wh.` whiteout files into overlay's character-device whiteouts hit the same `mknod` refusal.",
        hint: "nothing to do: rbuild skips the device nodes (the runtime provides `/dev`); rebuild the base image without `/dev` entries to silence the warning",
        fix: &[
            "Nothing is required: device nodes in images are never used, because the runtime mounts its own `/dev`.",
            "To silence the warning, rebuild the base image without entries under `/dev`.",
        ],
        rbuild: "rbuild skips device nodes when unpacking (FIFOs are created normally), keeps whiteouts as `.wh.` files or `user.overlay.*` xattrs instead of device nodes, and leaves one warning listing the skipped paths.",
        detectors: &[LayerScan, Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"failed to mknodChar0UserNS",
                "failed to mknodChar0UserNS",
            ),
            sig(
                Exact,
                r"unpack entry: (\S+): mknod: operation not permitted",
                "failed to extract layer: unpack entry: dev/console: mknod: operation not permitted",
            ),
            sig(
                Exact,
                r"Error processing tar file\(exit status 1\): operation not permitted",
                "failed to register layer: Error processing tar file(exit status 1): operation not permitted",
            ),
            sig(
                Exact,
                r#"file "(dev/\S+)" ignored: archive may not be supported on system"#,
                "WARN[0003] file \"dev/null\" ignored: archive may not be supported on system",
            ),
            sig(
                Generic,
                r"mknod(?:at)?.*: operation not permitted",
                "mknod /var/lib/containers/storage/overlay/l/dev/null: operation not permitted",
            ),
        ],
        related: &[C::OverlayWhiteoutOpaqueCorruption],
        references: &[
            "https://github.com/moby/moby/pull/41892",
            "https://github.com/moby/moby/issues/40939",
            "https://github.com/podman-container-tools/buildah/issues/3384",
            "https://github.com/containers/storage/issues/1095",
            "https://github.com/opencontainers/umoci/issues/171",
            "https://github.com/moby/buildkit/issues/2697",
            "https://github.com/containerd/containerd/issues/7514",
        ],
    },
    Entry {
        cause: C::FuseDeviceMissing,
        title: "`/dev/fuse` is not available",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "A tool needs FUSE (fuse-overlayfs, or a FUSE mount in a step) and `/dev/fuse` is missing.",
        explanation: "fuse-overlayfs and other FUSE file systems need the `/dev/fuse` device inside the container and the `fuse` module loaded on the host. Container runtimes do not pass the device by default.",
        hint: "pass the device to the container (`--device /dev/fuse`; Kubernetes: a device plugin or CRI-O `additional_devices`) and `modprobe fuse` on the host",
        fix: &[
            "Docker/Podman: `--device /dev/fuse`. Kubernetes: expose `/dev/fuse` through a device plugin (or CRI-O `additional_devices`).",
            "Load the module on the host: `modprobe fuse`.",
            "rbuild itself uses kernel overlayfs and does not need FUSE on Linux ≥ 5.11.",
        ],
        rbuild: "rbuild uses kernel overlayfs in the user namespace and does not depend on FUSE; this entry explains FUSE failures of tools run inside steps.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"fuse: device not found, try 'modprobe fuse' first",
                "fuse: device not found, try 'modprobe fuse' first",
            ),
            sig(
                Exact,
                r"fuse-overlayfs: cannot mount: No such file or directory",
                "fuse-overlayfs: cannot mount: No such file or directory",
            ),
            sig(
                Exact,
                r"using mount program (\S*fuse-overlayfs): fuse: device not found",
                "Error: kernel does not support overlay fs: 'overlay' is not supported over overlayfs: using mount program /usr/bin/fuse-overlayfs: fuse: device not found, try 'modprobe fuse' first",
            ),
            sig(
                Exact,
                r"failed to mount fuse-overlayfs .*: no such device",
                "failed to mount fuse-overlayfs (lowerdir=/l,upperdir=/u,workdir=/w) on /m: no such device",
            ),
        ],
        related: &[C::OverlayUnavailableSlowFallback],
        references: &[
            "https://github.com/podman-container-tools/buildah/issues/2084",
            "https://github.com/mgoltzsche/podman-static/issues/146",
            "https://github.com/podman-container-tools/buildah/issues/5456",
            "https://github.com/werf/werf/issues/5611",
            "https://github.com/podman-container-tools/podman/issues/6667",
        ],
    },
    Entry {
        cause: C::DiskFullOrInodes,
        title: "the disk is full",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "A write failed with `ENOSPC`: the file system ran out of free bytes or of inodes.",
        explanation: "Builds write layers, caches and unpacked root file systems into the state directory. It fills up with old cache entries, with builders that copy the whole parent for every step, or under Kubernetes ephemeral-storage limits. A file system can also run out of inodes while `df -h` still shows free space (`df -i` shows 100%).",
        hint: "free space in the state directory (`--cache-dir`, default `~/.cache/rbuild`), or move it to a bigger volume; check both `df -h` and `df -i`",
        fix: &[
            "Check bytes and inodes of the file system holding the state directory: `df -h <dir>` and `df -i <dir>`.",
            "Remove old build caches, or point `--cache-dir` at a bigger volume.",
            "In Kubernetes, raise the pod's ephemeral-storage limit or use a persistent volume.",
        ],
        rbuild: "rbuild reports the state directory's free bytes and inodes when a write fails with `ENOSPC`, and `rbuild doctor` warns when either runs low.",
        detectors: &[Structured, Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"failed to compute cache key: .*copy file range failed: no space left on device",
                "ERROR: failed to solve: failed to compute cache key: failed to copy: copy file range failed: no space left on device",
            ),
            sig(
                Exact,
                r"ResourceExhausted: .*no space left on device",
                "error: failed to solve: ResourceExhausted: failed to prepare qvh: mkdir /var/lib/buildkit/runc-overlayfs/snapshots/snapshots/8: no space left on device",
            ),
            sig(
                Exact,
                r"has larger consumption of ephemeral-storage",
                "The node was low on resource: ephemeral-storage. Container buildkitd was using 21Gi, which exceeds its request of 0. Pod has larger consumption of ephemeral-storage",
            ),
            sig(
                Generic,
                r"(?i)no space left on device",
                "cp: error writing '/usr/lib/libLLVM.so.15': No space left on device",
            ),
        ],
        related: &[C::OverlayUnavailableSlowFallback],
        references: &[
            "https://github.com/moby/buildkit/issues/2697",
            "https://github.com/moby/buildkit/issues/5459",
            "https://github.com/moby/buildkit/issues/2142",
            "https://github.com/docker/buildx/issues/3422",
            "https://github.com/moby/moby/issues/37077",
            "https://github.com/moby/moby/issues/31038",
        ],
    },
    Entry {
        cause: C::RegistryAuth401,
        title: "the registry refused the credentials",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::Partly,
        summary: "The registry answered 401 Unauthorized or denied the requested scope.",
        explanation: "The credentials were missing from the configuration the builder actually reads (for a rootless build that is the building user's `~/.docker/config.json` or `$DOCKER_CONFIG`, not root's), the token lacks push scope, or the repository does not exist (many registries answer 401 rather than 404 for that).",
        hint: "log in as the user who runs rbuild (`docker login <registry>` writes `~/.docker/config.json`), with a token that may push to that repository",
        fix: &[
            "Log in as the same user, with the same `HOME`, that runs rbuild: `docker login <registry>` (or `podman login --authfile ~/.docker/config.json`).",
            "Check that the token has pull and push scope for the repository, and that the repository path is right.",
            "In CI, make sure `DOCKER_CONFIG` points at the file the login step wrote.",
        ],
        rbuild: "rbuild names the registry, the repository, the scope it asked for and the credential source it used (file and key, or none).",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"failed to (?:authorize: failed to )?fetch (?:oauth|anonymous) token: unexpected status.*401 Unauthorized",
                "ERROR: failed to solve: failed to authorize: failed to fetch oauth token: unexpected status from POST request to https://auth.docker.io/token: 401 Unauthorized",
            ),
            sig(
                Exact,
                r"insufficient_scope: authorization failed",
                "ERROR: failed to push registry.example.com/team/app:1.0: insufficient_scope: authorization failed",
            ),
            sig(
                Exact,
                r"access token has insufficient scopes",
                "denied: access token has insufficient scopes",
            ),
            sig(
                Exact,
                r#"failed commit on ref "\S+": unexpected status: 401 Unauthorized"#,
                "failed commit on ref \"manifest-sha256:9b2e\": unexpected status: 401 Unauthorized",
            ),
        ],
        related: &[C::RegistryRateLimited, C::RegistryTlsOrHttp],
        references: &[
            "https://github.com/moby/buildkit/issues/4456",
            "https://github.com/moby/buildkit/issues/2005",
            "https://github.com/moby/buildkit/issues/838",
            "https://github.com/moby/buildkit/issues/1697",
            "https://github.com/moby/buildkit/issues/4111",
            "https://github.com/docker/buildx/issues/3335",
        ],
    },
    Entry {
        cause: C::RegistryTlsOrHttp,
        title: "the registry's TLS could not be verified, or it speaks plain http",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::Partly,
        summary: "Connecting to the registry over https failed: its certificate is signed by an unknown authority, or it answered in plain http.",
        explanation: "Private registries often use a self-signed or corporate certificate authority that is not in the system trust store, or serve plain http. rbuild talks plain http to loopback registries (`localhost`, `127.0.0.0/8`, `::1`) without a flag, as Docker does; any other plain-http registry must be named with `--insecure-registry`.",
        hint: "for a plain-http registry pass `--insecure-registry HOST:PORT`; for a private certificate authority add it to the system trust store (`/usr/local/share/ca-certificates/` then `update-ca-certificates`)",
        fix: &[
            "Plain http: `rbuild build --insecure-registry registry.internal:5000 ...`.",
            "Private CA: install the CA certificate into the system trust store (`cp ca.crt /usr/local/share/ca-certificates/ && update-ca-certificates`).",
        ],
        rbuild: "rbuild tells a TLS verification failure from an http answer to a TLS handshake, and suggests the exact flag.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"x509: certificate signed by unknown authority",
                "failed to do request: Head \"https://registry.internal:5000/v2/app/manifests/latest\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
            ),
            sig(
                Exact,
                r"http: server gave HTTP response to HTTPS client",
                "failed to do request: Head \"https://192.168.1.20:5000/v2/app/blobs/sha256:4f4f\": http: server gave HTTP response to HTTPS client",
            ),
        ],
        related: &[C::RegistryAuth401],
        references: &[
            "https://github.com/docker/buildx/issues/1642",
            "https://github.com/moby/buildkit/issues/2080",
            "https://github.com/moby/buildkit/issues/5667",
            "https://github.com/docker/buildx/issues/1508",
            "https://github.com/moby/buildkit/issues/2096",
        ],
    },
    Entry {
        cause: C::NoProcessSandboxLeakedProcess,
        title: "a step left processes running",
        severity: Severity::Warning,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Yes,
        summary: "Processes a RUN step started in the background were still running after its main process exited.",
        explanation: "A RUN step that starts a daemon in the background (`svc &`, a Gradle daemon, a dev server) and exits leaves that process behind. Builders without a PID namespace per step cannot find or kill it: it keeps the step's output open so the step never finishes (the CI job times out), keeps its port bound for the next build, and ends up as a zombie. This is what hung the builds in moby/buildkit#2417.",
        hint: "stop what the step starts before it ends (`svc & pid=$!; ...; kill $pid; wait $pid`)",
        fix: &[
            "Stop background processes in the same RUN that starts them: `svc & pid=$!; run-tests; kill $pid; wait $pid`.",
            "Do not start services in RUN steps at all where a test can run without them.",
        ],
        rbuild: "Every RUN has its own PID namespace; when the step's main process exits, rbuild kills everything left in it, and reports each leftover process (and the ports it listened on) as a warning on the RUN line.",
        detectors: &[Behaviour, Log],
        signatures: &[
            sig(
                Exact,
                r"NoProcessSandbox is enabled",
                "WARN[0000] NoProcessSandbox is enabled. Note that NoProcessSandbox allows build containers to kill (and potentially ptrace) an arbitrary process in the BuildKit host namespace.",
            ),
            sig(
                Exact,
                r"##\[error\]The action has timed out\.",
                "##[error]The action has timed out.",
            ),
            sig(
                Specific,
                r"<defunct>",
                "user       4242  0.0  0.0      0     0 ?        Z    10:02   0:00 [nc] <defunct>",
            ),
        ],
        related: &[
            C::HostNetnsPortCollision,
            C::ProcMountMasked,
            C::StepTimedOut,
        ],
        references: &[
            "https://github.com/moby/buildkit/issues/2417",
            "https://github.com/moby/buildkit/issues/5763",
            "https://github.com/moby/buildkit/pull/5765",
            "https://github.com/moby/buildkit/pull/7087",
            "https://github.com/moby/buildkit/issues/6052",
            "https://github.com/GoogleContainerTools/kaniko/issues/247",
        ],
    },
    Entry {
        cause: C::HostNetnsPortCollision,
        title: "a port was already in use",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Partly,
        summary: "A RUN step tried to listen on a port that another process on the same network namespace already holds.",
        explanation: "With the host network (the default for RUN steps, as with `docker build`), all steps and all concurrent builds on a machine share one set of ports. Two matrix jobs running the same tests, or a process leaked by an earlier build, collide on fixed ports.",
        hint: "let tests pick a free port (bind port 0), or build with `--network none` so the step gets its own loopback",
        fix: &[
            "Bind port 0 (or a random port) in tests and read back the port chosen.",
            "Run the step with `--network none` when it needs only loopback: each step then has a private network namespace.",
            "Serialise builds that need fixed ports.",
        ],
        rbuild: "With `--network none` every RUN gets its own network namespace with only loopback; leaked processes are killed at the end of their step (see `no-process-sandbox-leaked-process`).",
        detectors: &[Behaviour, Log],
        signatures: &[
            sig(
                Exact,
                r"java\.net\.BindException: Address already in use",
                "java.net.BindException: Address already in use",
            ),
            sig(
                Specific,
                r"EADDRINUSE",
                "Error: listen EADDRINUSE: address already in use :::3000",
            ),
            sig(
                Generic,
                r"(?i)address already in use",
                "OSError: [Errno 98] Address already in use",
            ),
        ],
        related: &[C::NoProcessSandboxLeakedProcess],
        references: &[
            "https://github.com/docker/buildx/issues/678",
            "https://github.com/moby/buildkit/blob/master/docs/rootless.md",
            "https://github.com/moby/buildkit/issues/2417",
        ],
    },
    Entry {
        cause: C::XattrOverlayOrImaInLayer,
        title: "layers carry overlayfs-internal or IMA extended attributes",
        severity: Severity::Warning,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Yes,
        summary: "A layer holds `user.overlay.*`/`trusted.overlay.*` or `security.ima` attributes, which must not (or cannot) be restored.",
        explanation: "Rootless overlayfs keeps its whiteouts and opaque markers in `user.overlay.*` attributes; some builders leaked them into exported layers, and restoring them confuses the next overlay mount. IMA signatures (`security.ima`) can only be set by real root. Docker 25 stopped ignoring such errors, so images that used to pull now fail.",
        hint: "nothing to do: rbuild drops these attributes on import; rebuild the base image with fixed tools to silence the warning",
        fix: &[
            "Nothing is required: rbuild drops the attributes and leaves this warning.",
            "Rebuild the base image with an up-to-date builder that does not export overlay attributes.",
        ],
        rbuild: "rbuild never exports `user.overlay.*` or `trusted.overlay.*` into layers, drops them on import, tolerates `EPERM` on `security.ima`, and leaves one warning per layer.",
        detectors: &[LayerScan, Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"lsetxattr user\.overlay\.(origin|impure|redirect|opaque) (\S+): operation not supported",
                "failed to register layer: lsetxattr user.overlay.impure /etc: operation not supported",
            ),
            sig(
                Exact,
                r#"failed to setxattr "(\S+)" for key "user\.overlay\.impure": operation not permitted"#,
                "#9 ERROR: mount callback failed on /run/user/1000/containerd-mount2444245211: failed to setxattr \"/run/user/1000/containerd-mount2444245211/etc\" for key \"user.overlay.impure\": operation not permitted",
            ),
            sig(
                Specific,
                r#"Error setting extended attributes on "(\S+)""#,
                "Error setting extended attributes on \"/usr/bin/newgidmap\": setting value of extended attribute \"security.capability\" on \"/usr/bin/newgidmap\": operation not supported",
            ),
            sig(
                Generic,
                r"security\.ima",
                "lsetxattr security.ima /usr/bin/bash: operation not permitted",
            ),
        ],
        related: &[
            C::XattrSecuritySelinuxInLayer,
            C::OverlayWhiteoutOpaqueCorruption,
        ],
        references: &[
            "https://github.com/moby/moby/issues/47962",
            "https://github.com/containers/storage/pull/1847",
            "https://github.com/moby/buildkit/issues/5478",
            "https://github.com/containers/storage/pull/2078",
            "https://github.com/containers/storage/pull/1608",
            "https://github.com/podman-container-tools/podman/issues/18543",
        ],
    },
    Entry {
        cause: C::OverlayWhiteoutOpaqueCorruption,
        title: "files differ from what earlier steps left",
        severity: Severity::Error,
        exit: Exit::Bug,
        auto_avoid: AutoAvoid::Partly,
        summary: "Deleted files reappeared, or files went missing, between steps: the layer diff did not match the file system.",
        explanation: "Rootless overlayfs keeps whiteouts and opaque-directory markers in `user.overlay.*` attributes. Code that looks only for the `trusted.overlay.*` form misses them, fuse-overlayfs has had bugs with nested opaque directories, and different diff methods produce different whiteouts. The result is wrong layer content without an error, as in moby/buildkit#2381 (files missing under `vendor/` after a `git checkout` in a later step).",
        hint: "this is a builder bug: please report it with the Dockerfile; as a stop-gap, do the steps that create and delete the files in one RUN",
        fix: &[
            "Report it to rbuild with the Dockerfile and base image: wrong layer content is a bug.",
            "Stop-gap: create, modify and delete the affected files in a single RUN.",
        ],
        rbuild: "rbuild reads both `trusted.` and `user.` overlay markers according to the mount options and has conformance tests for whiteouts, opaque directories, renames and hardlinks across layers.",
        detectors: &[Behaviour, Log],
        signatures: &[
            sig(
                Exact,
                r#"replaceDirWithOverlayOpaque\("(\S+)"\) failed: createDirWithOverlayOpaque\("(\S+)"\) failed: failed to mkdir .*: input/output error"#,
                "replaceDirWithOverlayOpaque(\"/var/lib/apt\") failed: createDirWithOverlayOpaque(\"/tmp/ov/apt\") failed: failed to mkdir /tmp/ov/apt/m: input/output error",
            ),
            sig(
                Specific,
                r"failed to compute cache key: failed to walk (\S+): lstat (\S+): no such file or directory",
                "ERROR: failed to solve: failed to compute cache key: failed to walk /var/lib/docker/tmp/buildkit-mount01/src/vendor: lstat /var/lib/docker/tmp/buildkit-mount01/src/vendor/golang.org: no such file or directory",
            ),
            sig(
                Generic,
                r"rm: cannot remove '([^']+)': Directory not empty",
                "rm: cannot remove '/app/node_modules/.cache': Directory not empty",
            ),
        ],
        related: &[
            C::DeviceNodeOrWhiteoutMknod,
            C::XattrOverlayOrImaInLayer,
            C::HardlinkHandling,
        ],
        references: &[
            "https://github.com/moby/buildkit/issues/2381",
            "https://github.com/moby/moby/pull/42188",
            "https://github.com/containers/storage/pull/872",
            "https://github.com/binpash/try/issues/163",
            "https://github.com/containers/fuse-overlayfs/issues/136",
            "https://github.com/containers/storage/pull/1196",
            "https://github.com/moby/buildkit/issues/1792",
        ],
    },
    Entry {
        cause: C::HardlinkHandling,
        title: "a hardlink in a layer cannot be created",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Yes,
        summary: "A layer's hardlink entry points at a target that is missing, absolute, or on another file system.",
        explanation: "Tar hardlink entries name their target by path. Some producers write absolute names (kaniko), link to files of earlier layers, or omit the link's parent directory; some extractors apply layers in the wrong order; and a link cannot cross a mount point (`EXDEV`). Newer extractors also reject absolute targets as unsafe.",
        hint: "rebuild the image with a producer that writes relative, same-layer hardlinks; rbuild resolves absolute targets inside the root file system and copies across mounts",
        fix: &[
            "Rebuild the affected image with an up-to-date builder.",
            "If you produce the layer yourself, write hardlink targets relative to the layer root, and only to files in the same layer.",
        ],
        rbuild: "rbuild's extractor resolves link targets inside the root file system only, creates missing parent directories, and copies when a link would cross a mount; its exporter writes relative, same-layer links.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"error building stage: link (\S+) (\S+): file exists",
                "error building stage: link /usr/bin/perl /usr/bin/perl5.30.0: file exists",
            ),
            sig(
                Exact,
                r#"failed to register layer: invalid hardlink target "(\S+)""#,
                "failed to register layer: invalid hardlink target \"/kaniko/0/usr/lib/libssl.so.3\"",
            ),
            sig(
                Exact,
                r"Cannot hard link to .(\S+).: Invalid cross-device link",
                "tar: usr/share/zoneinfo/UTC: Cannot hard link to 'usr/share/zoneinfo/Etc/UTC': Invalid cross-device link",
            ),
            sig(
                Exact,
                r"Processing deferred hardlink (\S+): Failed to find object",
                "Processing deferred hardlink usr/bin/python3: Failed to find object",
            ),
            sig(
                Exact,
                r"ApplyLayer exit status 1 stdout: +stderr: unlinkat \./?/: device or resource busy",
                "failed to register layer: ApplyLayer exit status 1 stdout:  stderr: unlinkat ./: device or resource busy",
            ),
        ],
        related: &[C::OverlayWhiteoutOpaqueCorruption],
        references: &[
            "https://github.com/GoogleContainerTools/kaniko/issues/351",
            "https://github.com/GoogleContainerTools/kaniko/issues/282",
            "https://github.com/GoogleContainerTools/kaniko/issues/1743",
            "https://github.com/moby/go-archive/issues/99",
            "https://github.com/quay/claircore/pull/474",
        ],
    },
    Entry {
        cause: C::StateDirOnOverlayOrNosuid,
        title: "the state directory is on overlayfs or a `nosuid`/`nodev` mount",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "rbuild's state directory sits where mounts from a user namespace are refused or setuid bits are ignored.",
        explanation: "Inside a container, the home directory usually lives on the container's own overlay root file system, and some volumes are mounted `nosuid,nodev` (Google Container-Optimized OS mounts the image's declared volumes that way). Overlay and bind mounts made from a user namespace over such directories fail with `EPERM` or `EINVAL`, and setuid programs inside steps lose their privileges.",
        hint: "put the state directory on a plain volume: mount an `emptyDir` (or any non-overlay, non-`nosuid` file system) and pass it as `--cache-dir`",
        fix: &[
            "Mount a volume (Kubernetes `emptyDir`, a Docker volume) and use it as `--cache-dir`.",
            "Check it: `findmnt -T <dir>` shows the file system type and options; `rbuild doctor` reports both.",
        ],
        rbuild: "`rbuild doctor` reads the file system type (`statfs`) and mount options (`/proc/self/mountinfo`) of the state directory and names the problem.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"failed to mount /tmp/buildkit-mount\d+: \[\{Type:bind Source:\S+ Options:\[rbind ro\]\}\]: operation not permitted",
                "error: failed to solve: failed to mount /tmp/buildkit-mount096013211: [{Type:bind Source:/var/lib/buildkit/runc-native/snapshots/snapshots/1 Options:[rbind ro]}]: operation not permitted",
            ),
            sig(
                Specific,
                r"Options:\[rbind ro\]\}\]: operation not permitted",
                "failed to solve: failed to read dockerfile: failed to mount /home/user/.local/tmp/buildkit-mount313966645: [{Type:bind Source:/home/user/.local/share/buildkit/runc-native/snapshots/snapshots/1 Options:[rbind ro]}]: operation not permitted",
            ),
        ],
        related: &[C::OverlayUnavailableSlowFallback, C::SetuidIgnoredSudo],
        references: &[
            "https://github.com/moby/buildkit/blob/master/docs/rootless.md",
            "https://github.com/moby/buildkit/issues/1467",
            "https://github.com/moby/buildkit/issues/1427",
            "https://github.com/moby/buildkit/issues/879",
        ],
    },
    Entry {
        cause: C::HostSelinuxPolicyDenial,
        title: "the host's SELinux policy denied the build",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::No,
        summary: "The host's SELinux policy refused a mount, relabel or access the build needed.",
        explanation: "On SELinux hosts (Fedora, RHEL, OpenShift, Bottlerocket) the policy confines container processes, for example to the `container_t` domain, which may not make the mounts or relabels a nested builder needs. This is a host policy, unlike `xattr-security-selinux-in-layer`, where the labels travel inside the image.",
        hint: "run the builder with a suitable SELinux type (Kubernetes `seLinuxOptions.type: spc_t` or an SCC that allows it), update `container-selinux`, and read the denials in the audit log (`ausearch -m avc -ts recent`)",
        fix: &[
            "Find the denial: `ausearch -m avc -ts recent` (or `journalctl -t setroubleshoot`).",
            "Run the build container with `seLinuxOptions.type: spc_t` (Kubernetes) or `--security-opt label=disable` (Podman/Docker), or an OpenShift SCC that allows it.",
            "Update the `container-selinux` policy package.",
        ],
        rbuild: "`rbuild doctor` reports whether SELinux is enforcing (`/sys/fs/selinux/enforce`) and rbuild's own label.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r#"error mounting "devpts" to rootfs at "/dev/pts": .*permission denied"#,
                "error mounting \"devpts\" to rootfs at \"/dev/pts\": mount devpts:/dev/pts (via /proc/self/fd/7), flags: 0xa, data: newinstance,ptmxmode=0666,mode=0620,gid=5: permission denied",
            ),
            sig(
                Specific,
                r"avc:\s+denied",
                "type=AVC msg=audit(1700000000.123:456): avc:  denied  { mount } for  pid=4242 comm=\"runc:[2:INIT]\" name=\"/\" dev=\"proc\" scontext=system_u:system_r:container_t:s0 tcontext=system_u:object_r:proc_t:s0 tclass=filesystem",
            ),
            sig(
                Specific,
                r"Error: lsetxattr (\S+): invalid argument",
                "Error: lsetxattr /var/lib/containers/storage/overlay/l/ABC: invalid argument",
            ),
        ],
        related: &[C::XattrSecuritySelinuxInLayer, C::PodSecurityBlocksUserns],
        references: &[
            "https://github.com/andrcuns/charts/issues/421",
            "https://github.com/moby/buildkit/issues/1188",
            "https://github.com/moby/buildkit/issues/1634",
            "https://github.com/bottlerocket-os/bottlerocket/issues/1187",
            "https://github.com/moby/buildkit/issues/4667",
        ],
    },
    Entry {
        cause: C::OutdatedSeccompNewSyscalls,
        title: "an outdated seccomp profile refuses new system calls",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Yes,
        summary: "A seccomp filter around the build answers `EPERM` to system calls it does not know, so the C library never falls back.",
        explanation: "C libraries try new system calls first and fall back when the kernel answers `ENOSYS`. Old seccomp profiles (Docker < 20.10, libseccomp < 2.4.4) answer `EPERM` instead for calls they do not list, such as `faccessat2` (musl in Alpine ≥ 3.14) and `clone3` (glibc ≥ 2.34). Programs then fail with `Operation not permitted` on harmless operations, typically `make: /bin/sh: Operation not permitted`.",
        hint: "update the container runtime and libseccomp on the host that runs the build container (Docker ≥ 20.10, libseccomp ≥ 2.4.4); to confirm, retry with `--security-opt seccomp=unconfined`",
        fix: &[
            "Update docker/containerd/runc and libseccomp on the CI host.",
            "To confirm the cause, run the build container once with `--security-opt seccomp=unconfined`.",
            "Or pin the previous base image until the host is updated.",
        ],
        rbuild: "rbuild installs no seccomp filter that answers `EPERM` for unknown calls; `rbuild doctor` reports the seccomp mode rbuild itself runs under.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Specific,
                r"make: (\S+): Operation not permitted",
                "make: /bin/sh: Operation not permitted",
            ),
            sig(
                Exact,
                r"faccessat2\(.*\) = -1 EPERM",
                "faccessat2(AT_FDCWD, \"/bin/sh\", X_OK, AT_EACCESS) = -1 EPERM (Operation not permitted)",
            ),
        ],
        related: &[C::PodSecurityBlocksUserns],
        references: &[
            "https://github.com/alpinelinux/docker-alpine/issues/182",
            "https://github.com/docker-library/official-images/issues/16829",
            "https://github.com/docker-library/php/issues/1177",
            "https://github.com/falcosecurity/event-generator/issues/53",
        ],
    },
    Entry {
        cause: C::IcmpPingInBuild,
        title: "`ping` cannot open its socket in a build step",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Partly,
        summary: "`ping` in a RUN step failed because the step may not open raw or ICMP sockets.",
        explanation: "Raw sockets need `CAP_NET_RAW` in the network namespace's owning user namespace, which a rootless step on the host network does not have. Unprivileged ICMP sockets work only for groups inside `net.ipv4.ping_group_range`, and that range may only contain mapped gids. The `ping` binary's file capabilities may also have been lost (see `file-capabilities-setfcap`).",
        hint: "do not ping from a Dockerfile: check reachability with a TCP or HTTP request (`curl -fsS https://host/`, `nc -z host 443`)",
        fix: &[
            "Replace `ping` with a TCP or HTTP check: `curl -fsS --retry 3 https://host/` or `nc -z host 443`.",
            "If ping is essential, run the step with `--network none` (rbuild then sets `ping_group_range` to the mapped gids in the step's network namespace, for loopback only), or widen the host's range: `sysctl -w \"net.ipv4.ping_group_range=0 2147483647\"`.",
        ],
        rbuild: "With `--network none` rbuild gives each step its own network namespace with `ping_group_range` covering the mapped gids; on the host network it explains the failure.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r#"sysctl: permission denied on key "net\.ipv4\.ping_group_range""#,
                "sysctl: permission denied on key \"net.ipv4.ping_group_range\"",
            ),
            sig(
                Exact,
                r"ping: socket: Operation not permitted",
                "ping: socket: Operation not permitted",
            ),
            sig(
                Exact,
                r"ping: permission denied \(are you root\?\)",
                "ping: permission denied (are you root?)",
            ),
            sig(
                Exact,
                r"ping: socket: Permission denied, attempting raw socket",
                "ping: socket: Permission denied, attempting raw socket...",
            ),
            sig(
                Exact,
                r"/proc/sys/net/ipv4/ping_group_range.*Invalid argument",
                "sh: write error: /proc/sys/net/ipv4/ping_group_range: Invalid argument",
            ),
        ],
        related: &[C::FileCapabilitiesSetfcap, C::SysctlWriteInBuild],
        references: &[
            "https://github.com/podman-container-tools/podman/pull/1779",
            "https://github.com/systemd/systemd/pull/13141",
            "https://github.com/MichaIng/DietPi/issues/1012",
            "https://github.com/cilium/cilium/issues/469",
        ],
    },
    Entry {
        cause: C::SysctlWriteInBuild,
        title: "`sysctl -w` cannot work in an image build",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::Partly,
        summary: "A RUN step tried to change a kernel parameter; `/proc/sys` is read-only in builds, and kernel settings are not part of an image.",
        explanation: "Kernel parameters belong to the running host or container, not to the image's files, so setting them during a build could not have a lasting effect even where it were allowed. Build steps see `/proc/sys` read-only, and non-namespaced parameters (`vm.*`, most `kernel.*`) can never be set from a container. This is not specific to rootless builds.",
        hint: "remove `sysctl -w`/`sysctl -p` from the Dockerfile and set the value at run time (`docker run --sysctl`, Kubernetes `securityContext.sysctls`)",
        fix: &[
            "Remove the `sysctl` call from the Dockerfile.",
            "Set the value where the container runs: `docker run --sysctl net.core.somaxconn=1024`, Kubernetes `securityContext.sysctls`, or on the host for non-namespaced keys.",
        ],
        rbuild: "rbuild explains the failure on the RUN line; a Dockerfile lint can flag `sysctl -w` before the build.",
        detectors: &[Log],
        signatures: &[
            sig(
                Exact,
                r#"sysctl: setting key "([^"]+)": Read-only file system"#,
                "sysctl: setting key \"vm.max_map_count\": Read-only file system",
            ),
            sig(
                Exact,
                r"sysctl: error setting key '([^']+)': (Permission denied|Read-only file system|Operation not permitted)",
                "sysctl: error setting key 'net.ipv4.ip_forward': Permission denied",
            ),
            sig(
                Specific,
                r#"sysctl: permission denied on key "([^"]+)""#,
                "sysctl: permission denied on key \"net.core.somaxconn\"",
            ),
            sig(
                Specific,
                r"error: permission denied on key '([^']+)'",
                "sysctl: error: permission denied on key 'fs.file-max'",
            ),
            sig(
                Generic,
                r"/proc/sys/\S+: (Read-only file system|Permission denied)",
                "sh: 1: cannot create /proc/sys/vm/overcommit_memory: Read-only file system",
            ),
        ],
        related: &[C::IcmpPingInBuild],
        references: &[
            "https://github.com/docker/for-linux/issues/197",
            "https://github.com/atsign-foundation/noports/issues/168",
            "https://github.com/zalando/spilo/issues/623",
            "https://github.com/moby/moby/issues/9890",
        ],
    },
    Entry {
        cause: C::RlimitNofile,
        title: "the open-files limit is too low",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Yes,
        summary: "A process ran out of file descriptors, or asked for a higher limit than the user may set.",
        explanation: "An unprivileged process cannot raise `RLIMIT_NOFILE` above the hard limit it inherited, so a requested `nofile=90000` fails when the CI user's hard limit is lower. The common default soft limit of 1024 is too low for some npm, Java and test workloads.",
        hint: "raise the hard limit of the CI user or service (systemd `LimitNOFILE=`, `/etc/security/limits.conf`, the runtime's default ulimits)",
        fix: &[
            "Raise the hard limit where the build runs: systemd `LimitNOFILE=1048576` for the runner service, `/etc/security/limits.conf` for login users, or the container runtime's default ulimits.",
            "Check it: `ulimit -Hn`.",
        ],
        rbuild: "rbuild raises the soft limit of RUN steps to the hard limit by default, and `rbuild doctor` reports a low hard limit.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"error setting rlimit type 7: operation not permitted",
                "OCI runtime create failed: error setting rlimit type 7: operation not permitted",
            ),
            sig(
                Exact,
                r"setting rlimits for ready process caused",
                "container_linux.go:349: starting container process caused \"process_linux.go:449: container init caused \\\"setting rlimits for ready process caused \\\\\\\"error setting rlimit type 7: operation not permitted\\\\\\\"\\\"\"",
            ),
            sig(
                Specific,
                r"(?i)too many open files",
                "Error: EMFILE: too many open files, open '/app/node_modules/lodash/package.json'",
            ),
            sig(Generic, r"\bEMFILE\b", "npm ERR! code EMFILE"),
        ],
        related: &[],
        references: &[
            "https://github.com/podman-container-tools/buildah/issues/2230",
            "https://github.com/podman-container-tools/podman/issues/5526",
            "https://github.com/dfuse-io/dfuse-eosio/issues/88",
            "https://github.com/tiiuae/ghaf-infra/pull/376",
        ],
    },
    Entry {
        cause: C::SlirpMtu,
        title: "connections stall (MTU)",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::Partly,
        summary: "Downloads in a step stalled or were reset, which with user-mode networking often means the MTU is larger than the path allows.",
        explanation: "User-mode networking for rootless containers (slirp4netns, rootlesskit) defaults to a large MTU (65520) for throughput. Paths with a smaller MTU, such as VPNs and overlay networks, drop the large packets and TLS handshakes time out or connections reset.",
        hint: "lower the MTU of the build network, or use the host network (rbuild's default for RUN steps)",
        fix: &[
            "Use the host network for RUN steps (`--network host`, rbuild's default).",
            "With rootlesskit/slirp4netns elsewhere: lower the MTU (`--mtu=1500` or the path MTU).",
        ],
        rbuild: "rbuild runs RUN steps on the host network by default, which uses the host's MTU; when it isolates a step it has only loopback.",
        detectors: &[Log],
        signatures: &[
            sig(
                Specific,
                r"net/http: TLS handshake timeout",
                "Get \"https://registry-1.docker.io/v2/\": net/http: TLS handshake timeout",
            ),
            sig(
                Generic,
                r"connection reset by peer",
                "read tcp 10.0.2.100:39188->151.101.2.132:443: read: connection reset by peer",
            ),
        ],
        related: &[C::RootlessDns],
        references: &[
            "https://github.com/rootless-containers/slirp4netns/issues/284",
            "https://github.com/moby/moby/issues/47765",
            "https://github.com/hashicorp/setup-packer/issues/49",
            "https://github.com/rootless-containers/rootlesskit/pull/11",
        ],
    },
    Entry {
        cause: C::CgroupV1OrNoDelegation,
        title: "no delegated cgroup v2 subtree",
        severity: Severity::Warning,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "The host uses cgroup v1, or gives this user no writable cgroup v2 subtree, so resource limits cannot be applied to steps.",
        explanation: "Unprivileged users can use cgroups only through cgroup v2 delegation: a subtree (usually a systemd user slice) whose control files they own, with controllers such as cpu, memory and pids enabled. cgroup v1 cannot be delegated safely. Without delegation, requested limits are ignored or make the runtime fail.",
        hint: "use a cgroup v2 host and run the build under a systemd user session with delegated controllers (`systemd-run --user --scope -p Delegate=yes rbuild ...`), or do not request resource limits",
        fix: &[
            "Boot with cgroup v2 (the default on current distributions; `systemd.unified_cgroup_hierarchy=1` on older ones).",
            "Run rbuild inside a delegated scope: `systemd-run --user --scope -p Delegate=yes rbuild build ...` (needs a systemd user session: `loginctl enable-linger <user>`).",
            "Otherwise, do not ask for resource limits; builds work without them.",
        ],
        rbuild: "rbuild does not need cgroups to isolate steps (each has its own PID namespace). `rbuild doctor` reports the cgroup version and whether the current cgroup is delegated to the user.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"Resource limits are not supported and ignored on cgroups V1 rootless systems",
                "WARN[0000] Resource limits are not supported and ignored on cgroups V1 rootless systems",
            ),
            sig(
                Exact,
                r"Running in rootless-mode without cgroups\. Systemd is required to enable cgroups in rootless-mode",
                "Error: OCI runtime error: crun: Running in rootless-mode without cgroups. Systemd is required to enable cgroups in rootless-mode",
            ),
            sig(
                Exact,
                r"error setting cgroup config for procHooks process: cannot set memory limit: container could not join or create cgroup",
                "Error: runc create failed: unable to start container process: error during container init: error setting cgroup config for procHooks process: cannot set memory limit: container could not join or create cgroup",
            ),
        ],
        related: &[C::NoProcessSandboxLeakedProcess],
        references: &[
            "https://github.com/podman-container-tools/podman/issues/17582",
            "https://github.com/podman-container-tools/podman/issues/19940",
            "https://github.com/moby/moby/issues/42910",
            "https://github.com/rootless-containers/rootlesskit/issues/282",
            "https://github.com/cri-o/cri-o/pull/4528",
        ],
    },
    Entry {
        cause: C::XdgRuntimeDirWrong,
        title: "`XDG_RUNTIME_DIR` is unset or not this user's",
        severity: Severity::Warning,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Yes,
        summary: "`XDG_RUNTIME_DIR` points at a directory this user cannot write (often root's `/run/user/0` after a plain `su`).",
        explanation: "Rootless tools keep sockets and short-lived state under `$XDG_RUNTIME_DIR`. In CI containers the variable is often unset, or it was inherited from root after a plain `su`, so it names `/run/user/0`, which the user cannot write.",
        hint: "set `XDG_RUNTIME_DIR` to a directory the user owns (`export XDG_RUNTIME_DIR=/run/user/$(id -u)`, created by a proper login or `loginctl enable-linger`), or unset it",
        fix: &[
            "Log in properly (`su - user`, `machinectl shell user@`) so the session creates `/run/user/<uid>`, or `loginctl enable-linger <user>`.",
            "Or point it at a private directory: `export XDG_RUNTIME_DIR=$(mktemp -d)`.",
        ],
        rbuild: "rbuild picks a runtime directory owned by the effective user, falling back to a private directory under `$TMPDIR`, and `rbuild doctor` warns about a wrong `XDG_RUNTIME_DIR`.",
        detectors: &[Probe, Log],
        signatures: &[
            sig(
                Exact,
                r"buildkitd: mkdir /run/buildkit: permission denied",
                "buildkitd: mkdir /run/buildkit: permission denied",
            ),
            sig(
                Exact,
                r"failed to create temp dir: mkdir /run/user/0/",
                "Error: failed to create temp dir: mkdir /run/user/0/libpod: permission denied",
            ),
            sig(
                Specific,
                r"mkdir /run/user/(\d+)(?:/\S*)?: permission denied",
                "Error: mkdir /run/user/0/containers: permission denied",
            ),
        ],
        related: &[],
        references: &[
            "https://github.com/containers/storage/issues/1505",
            "https://github.com/podman-container-tools/buildah/issues/1042",
            "https://github.com/opencontainers/runc/pull/1999",
            "https://github.com/moby/buildkit/issues/6257",
            "https://github.com/moby/buildkit/issues/2898",
        ],
    },
    Entry {
        cause: C::ClockSkew,
        title: "the clock is wrong",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "The machine's clock is behind, so signed package indexes look not yet valid, or make sees files from the future.",
        explanation: "apt checks the `Date` of a repository's `InRelease` file against the local clock, and make and meson compare modification times. Clocks fall behind in WSL2 and Docker Desktop after sleep, and on hosts without time synchronisation.",
        hint: "synchronise the clock (`timedatectl set-ntp true`, or restart the VM); temporary workaround: `apt-get -o Acquire::Check-Date=false update`",
        fix: &[
            "Synchronise the host clock: `timedatectl set-ntp true`, `chronyc makestep`; for WSL2, `wsl --shutdown` resets it.",
            "Temporary workaround for apt only: `apt-get -o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false update`.",
        ],
        rbuild: "rbuild compares the local clock with the registry's HTTP `Date` header and warns when they differ by more than a few minutes.",
        detectors: &[Structured, Log],
        signatures: &[
            sig(
                Exact,
                r"Release file for (\S+) is not valid yet \(invalid for another ([^)]+)\)",
                "E: Release file for http://deb.debian.org/debian/dists/bookworm-updates/InRelease is not valid yet (invalid for another 2h 17min 3s). Updates for this repository will not be applied.",
            ),
            sig(
                Exact,
                r"Clock skew detected",
                "make: warning:  Clock skew detected.  Your build may be incomplete.",
            ),
        ],
        related: &[],
        references: &[
            "https://github.com/intel/intel-cmt-cat/issues/216",
            "https://github.com/microsoft/WSL/issues/4114",
            "https://github.com/sonic-net/sonic-buildimage/pull/23941",
        ],
    },
    Entry {
        cause: C::RunFailed,
        title: "a RUN step failed",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::No,
        summary: "A RUN command exited with a non-zero status, and its output matches no known environment problem.",
        explanation: "The command itself failed: a test, a compiler, a package manager or a script reported an error. rbuild found no sign of a known rootless, emulation or registry problem in the step's output or behaviour, so the cause is most likely in the command or its inputs. The diagnostic carries the step's last output lines.",
        hint: "read the step's last output lines; run the same command in the image to reproduce it (`rbuild run <image> -- sh -c '<command>'`)",
        fix: &[
            "Read the step's output (the diagnostic quotes its last lines).",
            "Reproduce it interactively on the last good stage or its base image with `rbuild run`.",
        ],
        rbuild: "rbuild reports the exit status, the RUN line and the last lines of output, after checking the catalog's signatures and the step's behaviour for a known cause.",
        detectors: &[Behaviour],
        signatures: &[],
        related: &[],
        references: &[],
    },
    Entry {
        cause: C::StepTimedOut,
        title: "a step ran out of time",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::No,
        summary: "A step was stopped because it ran longer than its time limit.",
        explanation: "A step that waits for input, for a network that does not answer, or for a background process that never exits runs until its time limit. Under emulation some runtimes (Node.js, JVMs) can hang outright.",
        hint: "look at what the step printed last; make sure nothing waits for input (`DEBIAN_FRONTEND=noninteractive`, `-y` flags) and that it stops what it starts",
        fix: &[
            "Check the step's last output for a prompt or a stalled download.",
            "Make commands non-interactive (`DEBIAN_FRONTEND=noninteractive`, `apt-get -y`, `npm ci --no-audit`).",
            "Under emulation, move heavy runtimes to a `FROM --platform=$BUILDPLATFORM` stage (see `qemu-node-js-hang-or-sigill`, `qemu-jvm-crash-or-hang`).",
        ],
        rbuild: "rbuild reports the timeout with the step's last output and any processes still running in it (see `no-process-sandbox-leaked-process`).",
        detectors: &[Behaviour],
        signatures: &[],
        related: &[
            C::NoProcessSandboxLeakedProcess,
            C::QemuNodeJsHangOrSigill,
            C::QemuJvmCrashOrHang,
        ],
        references: &[],
    },
    Entry {
        cause: C::StateDirNotWritable,
        title: "the state directory cannot be written",
        severity: Severity::Error,
        exit: Exit::Host,
        auto_avoid: AutoAvoid::Partly,
        summary: "rbuild cannot create or write its state directory (layers, caches, build root file systems).",
        explanation: "rbuild keeps its content store and caches in a state directory: `--cache-dir`, else `$XDG_CACHE_HOME/rbuild`, else `~/.cache/rbuild`. CI users often have no writable home (`HOME=/nonexistent`, a read-only root file system, a home owned by another user after `su` without `-`), so the default cannot be created.",
        hint: "pass `--cache-dir` with a directory the user owns (a volume, `$RUNNER_TEMP`), or point `XDG_CACHE_HOME` or `HOME` at one",
        fix: &[
            "Choose a writable directory on a volume with room for layers: `rbuild build --cache-dir /var/tmp/rbuild-cache ...`.",
            "Or set `XDG_CACHE_HOME` (or `HOME`) to a directory the user owns.",
            "Check it with `rbuild doctor --cache-dir <dir>`.",
        ],
        rbuild: "`rbuild doctor` checks that the state directory (or the nearest existing directory above it) is writable, and rbuild names the directory and the user when it cannot create it.",
        detectors: &[Structured, Probe],
        signatures: &[],
        related: &[C::DiskFullOrInodes, C::StateDirOnOverlayOrNosuid],
        references: &[],
    },
    Entry {
        cause: C::CopyFailed,
        title: "a COPY or ADD step failed",
        severity: Severity::Error,
        exit: Exit::Input,
        auto_avoid: AutoAvoid::No,
        summary: "A COPY or ADD instruction could not copy its sources: a source is missing or excluded, the destination conflicts with the image, an owner is unknown, or a download failed its checksum.",
        explanation: "COPY and ADD read from the build context (filtered by `.dockerignore`), another stage, an image or a URL, and write into the image as BuildKit does: a destination ending in `/` or an existing directory receives files under their own name, several sources need a directory destination, a file never replaces a directory, `--chown` names must exist in the image's own `/etc/passwd` and `/etc/group`, and `ADD --checksum` must match what the URL serves. The message names the instruction's problem.",
        hint: "check the source paths against the build context and `.dockerignore`, and the destination against the image (end it with `/` to copy into a directory)",
        fix: &[
            "Paths are relative to the build context, not to the Dockerfile's directory; `rbuild build -f docker/Dockerfile .` reads sources from `.`.",
            "Look for the path in `.dockerignore` (or `<Dockerfile>.dockerignore`): excluded files do not exist for COPY.",
            "With several sources or a wildcard, end the destination with `/`.",
            "Create users before copying with `--chown=name`, or use numeric ids.",
        ],
        rbuild: "rbuild resolves sources and destinations itself (inside the step's sandbox for the destination), so the error names the missing path, the conflicting destination or the unknown owner, on the COPY or ADD line.",
        detectors: &[Structured],
        signatures: &[],
        related: &[],
        references: &["https://docs.docker.com/reference/dockerfile/#copy"],
    },
    Entry {
        cause: C::ImagePullFailed,
        title: "an image could not be pulled",
        severity: Severity::Error,
        exit: Exit::Registry,
        auto_avoid: AutoAvoid::No,
        summary: "A base image (FROM) or an image a step reads (`COPY --from`, `RUN --mount=from=`) could not be resolved or pulled from its registry.",
        explanation: "rbuild looks a base image up in its content store first and asks the registry when it is missing (always with `--pull`). The registry may not know the repository or tag, refuse access, or not answer. Registries on loopback are reached over plain http; others need https or `--insecure-registry`.",
        hint: "check the image name and tag (`rbuild pull IMAGE` shows the registry's answer), the registry's address, and your credentials",
        fix: &[
            "Check the reference: `FROM name` means `docker.io/library/name:latest`.",
            "Pull it on its own to see the registry's answer: `rbuild pull --platform <platform> <image>`.",
            "For a private registry, log in with `docker login` or `podman login` (rbuild reads their credential files).",
        ],
        rbuild: "rbuild names the reference, the registry and its answer on the line that names the image; authentication, TLS and rate-limit problems have causes of their own.",
        detectors: &[Structured],
        signatures: &[],
        related: &[
            C::RegistryAuth401,
            C::RegistryTlsOrHttp,
            C::RegistryRateLimited,
            C::BaseImageMissingPlatform,
        ],
        references: &[],
    },
];
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_in_enum_order_and_complete() {
        assert_eq!(CATALOG.len(), Cause::ALL.len());
        for (i, (entry, cause)) in CATALOG.iter().zip(Cause::ALL).enumerate() {
            assert_eq!(entry.cause, *cause, "entry {i} is out of order");
            assert_eq!(*cause as usize, i);
        }
    }

    #[test]
    fn covers_every_cause_of_the_reference_catalog() {
        // The 40 ids of `reference/failure-causes.md`, Part 2, in its order.
        let reference = [
            "subid-range-too-small",
            "binfmt-not-registered",
            "qemu-segfault",
            "pod-security-blocks-userns",
            "userns-disabled-sysctl",
            "apparmor-restrict-unprivileged-userns",
            "newuidmap-missing-or-broken",
            "overlay-unavailable-slow-fallback",
            "proc-mount-masked",
            "registry-rate-limited",
            "base-image-missing-platform",
            "apt-sandbox-setgroups",
            "file-capabilities-setfcap",
            "xattr-security-selinux-in-layer",
            "rootless-dns",
            "qemu-node-js-hang-or-sigill",
            "qemu-go-runtime-crash",
            "qemu-x86-64-v2-cpu-level",
            "qemu-jvm-crash-or-hang",
            "setuid-ignored-sudo",
            "device-node-or-whiteout-mknod",
            "fuse-device-missing",
            "disk-full-or-inodes",
            "registry-auth-401",
            "registry-tls-or-http",
            "no-process-sandbox-leaked-process",
            "host-netns-port-collision",
            "xattr-overlay-or-ima-in-layer",
            "overlay-whiteout-opaque-corruption",
            "hardlink-handling",
            "state-dir-on-overlay-or-nosuid",
            "host-selinux-policy-denial",
            "outdated-seccomp-new-syscalls",
            "icmp-ping-in-build",
            "sysctl-write-in-build",
            "rlimit-nofile",
            "slirp-mtu",
            "cgroup-v1-or-no-delegation",
            "xdg-runtime-dir-wrong",
            "clock-skew",
        ];
        let ids: Vec<&str> = Cause::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(&ids[..40], &reference[..]);
    }

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in Cause::ALL {
            let id = c.id();
            assert!(seen.insert(id), "duplicate id {id}");
            assert!(
                id.split('-').all(|w| !w.is_empty()
                    && w.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())),
                "`{id}` is not kebab-case"
            );
            assert_eq!(Cause::from_id(id), Some(*c));
        }
        assert_eq!(Cause::from_id("no-such-cause"), None);
    }

    #[test]
    fn every_entry_is_filled_in_and_styled() {
        for e in CATALOG {
            let id = e.cause.id();
            for (what, text) in [
                ("title", e.title),
                ("summary", e.summary),
                ("explanation", e.explanation),
                ("hint", e.hint),
                ("rbuild", e.rbuild),
            ] {
                assert!(!text.trim().is_empty(), "{id}: empty {what}");
            }
            // STYLE.md: user-facing one-liners start lowercase and have no trailing period.
            for (what, text) in [("title", e.title), ("hint", e.hint)] {
                let first = text.chars().next().unwrap();
                assert!(
                    !first.is_ascii_uppercase(),
                    "{id}: {what} must start lowercase: {text}"
                );
                assert!(!text.ends_with('.'), "{id}: {what} ends with a period");
            }
            assert!(!e.fix.is_empty(), "{id}: no fix steps");
            assert!(!e.detectors.is_empty(), "{id}: no detectors");
            if e.detectors.contains(&Detector::Log) {
                assert!(
                    !e.signatures.is_empty(),
                    "{id}: log detector without signatures"
                );
            }
            assert!(!e.related.contains(&e.cause), "{id}: related to itself");
            for r in e.references {
                assert!(r.starts_with("https://"), "{id}: reference {r}");
            }
        }
        // The 40 researched causes all come with public references.
        for e in &CATALOG[..40] {
            assert!(!e.references.is_empty(), "{}: no references", e.cause.id());
        }
    }

    #[test]
    fn diagnostics_and_failures_carry_the_catalog_text() {
        let d = Cause::BinfmtNotRegistered.error("cannot run `linux/arm64` programs");
        assert_eq!(d.id, "binfmt-not-registered");
        assert_eq!(d.severity, Severity::Error);
        assert_eq!(d.title, Cause::BinfmtNotRegistered.entry().title);
        assert_eq!(
            d.hint.as_deref(),
            Some(Cause::BinfmtNotRegistered.entry().hint)
        );
        assert_eq!(
            d.url.as_deref(),
            Some(
                "https://github.com/rbuild-dev/rbuild/blob/main/docs/failures/binfmt-not-registered.md"
            )
        );
        let f = Cause::SubidRangeTooSmall.failure("no subordinate uid range for `alice`");
        assert_eq!(f.exit(), Exit::Host);
        assert_eq!(f.hints().len(), 2);
        assert!(f.hints()[1].contains("rbuild explain subid-range-too-small"));
        assert_eq!(Cause::RegistryAuth401.entry().exit, Exit::Registry);
    }
}

//! Gathering facts about the host: plain reads of `/proc`, `/sys` and `/etc`, file-system
//! statistics, and the live probes of [`super::live`]. Nothing here judges; see
//! [`super::checks`].

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::Platform;
use super::live::{self, Live};

/// A set-id helper binary (`newuidmap`, `newgidmap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub path: PathBuf,
    pub owner: u32,
    pub mode: u32,
    /// It has a `security.capability` attribute (file capabilities).
    pub file_caps: bool,
    /// Its file system is mounted `nosuid`, which voids both.
    pub nosuid_mount: bool,
}

/// cgroup set-up of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    V1,
    V2 {
        /// This process's cgroup, e.g. `/user.slice/user-1000.slice/session-2.scope`.
        path: String,
        /// The cgroup directory belongs to this user (delegated).
        delegated: bool,
        controllers: Vec<String>,
    },
    Unknown(String),
}

/// The file system holding the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFs {
    /// The state directory as configured.
    pub path: PathBuf,
    /// The nearest existing directory at or above it (what was measured).
    pub measured: PathBuf,
    /// `statfs` magic number, and its name when known.
    pub fs_magic: i64,
    pub fs_name: &'static str,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_inodes: u64,
    pub total_inodes: u64,
    pub nosuid: bool,
    pub nodev: bool,
    /// The measured directory is writable by this user (so the state directory can be
    /// created or used).
    pub writable: bool,
}

/// A host binfmt_misc registration (`/proc/sys/fs/binfmt_misc/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinfmtEntry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
}

/// What is known about running one target platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFacts {
    pub platform: Platform,
    /// Asked for with `--platform` (problems are errors) or only checked by default.
    pub requested: bool,
    pub native: bool,
    /// A qemu-user interpreter for it on this host.
    pub interpreter: Option<PathBuf>,
    /// First line of `<interpreter> --version`, or why it did not run.
    pub interpreter_version: Option<String>,
    /// The host's registration for it, if any.
    pub host_registration: Option<BinfmtEntry>,
}

/// `XDG_RUNTIME_DIR` as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    pub path: PathBuf,
    pub is_dir: bool,
    pub owner: Option<u32>,
    pub writable: bool,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub user: String,
    pub uid: u32,
    pub kernel: String,
    pub host_arch: String,
    pub unprivileged_userns_clone: Option<String>,
    pub max_user_namespaces: Option<String>,
    pub apparmor_restrict: Option<String>,
    pub apparmor_label: Option<String>,
    pub selinux_enforce: Option<String>,
    /// `Seccomp:` and `Seccomp_filters:` of `/proc/self/status`.
    pub seccomp: Option<String>,
    pub seccomp_filters: Option<String>,
    pub subuid: Option<String>,
    pub subgid: Option<String>,
    pub newuidmap: Option<Helper>,
    pub newgidmap: Option<Helper>,
    /// Mounts over parts of `/proc` (masking), as `mountpoint (fstype, options)`.
    pub proc_masks: Vec<String>,
    pub cgroup: Cgroup,
    pub state: Result<StateFs, String>,
    /// Soft and hard `RLIMIT_NOFILE` (`None` = unlimited).
    pub nofile: Option<(Option<u64>, Option<u64>)>,
    pub runtime_dir: Option<RuntimeDir>,
    pub unshare: Option<PathBuf>,
    pub live: Live,
    /// Why the mount probes had no scratch directory, if they had none.
    pub scratch_error: Option<String>,
    pub platforms: Vec<PlatformFacts>,
    /// Path of the running rbuild (for the AppArmor profile hint).
    pub exe: Option<PathBuf>,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Gathers everything about this host for `platforms` (those asked for with
/// `--platform`, or the host's own and its usual partner amd64/arm64), using `state_dir`
/// as the state directory. Runs the live probes.
pub fn gather(state_dir: &Path, requested: &[Platform]) -> Facts {
    let uid = rustix::process::getuid().as_raw();
    let host_arch = super::super::signatures::host_arch().to_owned();
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    let subuid = std::fs::read_to_string("/etc/subuid").ok();
    let subgid = std::fs::read_to_string("/etc/subgid").ok();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let status_field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();

    let state = state_fs(state_dir);
    // Mount probes run in a scratch directory on the state directory's file system.
    let (scratch, scratch_error) = match &state {
        Ok(s) => match tempfile::Builder::new()
            .prefix(".rbuild-doctor-")
            .tempdir_in(&s.measured)
        {
            Ok(d) => (Some(d), None),
            Err(e) => (
                None,
                Some(format!(
                    "cannot create a scratch directory in `{}`: {e}",
                    s.measured.display()
                )),
            ),
        },
        Err(e) => (None, Some(e.clone())),
    };
    let unshare = live::find_unshare();
    let has_range = |text: &Option<String>| {
        text.as_deref()
            .is_some_and(|t| !ranges_of(t, &user, uid).is_empty())
    };
    let live = unshare.as_deref().map_or_else(Live::default, |u| {
        live::probe_all(
            u,
            scratch.as_ref().map(tempfile::TempDir::path),
            has_range(&subuid) && has_range(&subgid),
        )
    });
    drop(scratch);

    let mut platforms: Vec<PlatformFacts> = Vec::new();
    let defaults = [host_arch.clone(), partner(&host_arch).to_owned()];
    let candidates: Vec<(Platform, bool)> = if requested.is_empty() {
        defaults
            .iter()
            .filter(|a| !a.is_empty())
            .filter_map(|a| Platform::parse(&format!("linux/{a}")).ok())
            .map(|p| (p, false))
            .collect()
    } else {
        requested.iter().cloned().map(|p| (p, true)).collect()
    };
    for (platform, requested) in candidates {
        let q = platform.qemu_name();
        let native = platform.is_native(&host_arch);
        let interpreter = [
            format!("/usr/bin/qemu-{q}-static"),
            format!("/usr/libexec/qemu-binfmt/{q}-binfmt-P"),
            format!("/usr/bin/qemu-{q}"),
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
        let interpreter_version = interpreter.as_ref().filter(|_| !native).map(|i| {
            let o = live::run(i, &["--version"]);
            let first = o.output.lines().next().unwrap_or_default().to_owned();
            if o.ok {
                first
            } else {
                format!("`{} --version` failed: {first}", i.display())
            }
        });
        platforms.push(PlatformFacts {
            native,
            interpreter,
            interpreter_version,
            host_registration: binfmt_entry(&format!("qemu-{q}")),
            platform,
            requested,
        });
    }

    Facts {
        user,
        uid,
        kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".to_owned()),
        host_arch,
        unprivileged_userns_clone: read_trim("/proc/sys/kernel/unprivileged_userns_clone"),
        max_user_namespaces: read_trim("/proc/sys/user/max_user_namespaces"),
        apparmor_restrict: read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        apparmor_label: read_trim("/proc/self/attr/apparmor/current")
            .or_else(|| read_trim("/proc/self/attr/current")),
        selinux_enforce: read_trim("/sys/fs/selinux/enforce"),
        seccomp: status_field("Seccomp:"),
        seccomp_filters: status_field("Seccomp_filters:"),
        subuid,
        subgid,
        newuidmap: helper("newuidmap"),
        newgidmap: helper("newgidmap"),
        proc_masks: proc_masks(&mountinfo),
        cgroup: cgroup(uid),
        state,
        nofile: nofile(&std::fs::read_to_string("/proc/self/limits").unwrap_or_default()),
        runtime_dir: runtime_dir(),
        unshare,
        live,
        scratch_error,
        platforms,
        exe: std::env::current_exe().ok(),
    }
}

/// The other common architecture: builds on amd64 are often also for arm64 and back.
fn partner(arch: &str) -> &'static str {
    match arch {
        "amd64" => "arm64",
        "arm64" => "amd64",
        _ => "",
    }
}

/// The name of `uid` from `/etc/passwd`, else from the name service (`getent`).
fn user_name(uid: u32) -> Option<String> {
    let from_file = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_owned())
        })
    });
    from_file.or_else(|| {
        let out = std::process::Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        text.split(':')
            .next()
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    })
}

/// Every `(start, count)` range of `user` (by name or uid) in a `/etc/subuid`-style text.
pub fn ranges_of(text: &str, user: &str, uid: u32) -> Vec<(u64, u64)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut f = line.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            (owner == user || owner == uid).then_some(())?;
            Some((start.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .collect()
}

fn helper(name: &str) -> Option<Helper> {
    let path = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            [format!("/usr/bin/{name}"), format!("/bin/{name}")]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })?;
    let meta = std::fs::metadata(&path).ok()?;
    Some(Helper {
        file_caps: rustix::fs::getxattr_query(&path, "security.capability").is_ok_and(|n| n > 0),
        nosuid_mount: rustix::fs::statvfs(&path)
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID)),
        owner: meta.uid(),
        mode: meta.mode(),
        path,
    })
}

/// Mounts over parts of `/proc`, from a `/proc/self/mountinfo` text. binfmt_misc is a
/// real file system of its own, not a mask.
pub fn proc_masks(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut lf = left.split_whitespace();
            let mount_point = lf.nth(4)?;
            let options = lf.next().unwrap_or("");
            let fstype = right.split_whitespace().next().unwrap_or("");
            let mount_point = unescape_mount(mount_point);
            (mount_point.starts_with("/proc/") && fstype != "binfmt_misc")
                .then(|| format!("{mount_point} ({fstype}, {options})"))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let v = u32::from(bytes[i + 1] - b'0') * 64
                + u32::from(bytes[i + 2] - b'0') * 8
                + u32::from(bytes[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

const CGROUP2_MAGIC: i64 = 0x6367_7270;

// `f_type`'s integer type differs between architectures.
#[allow(clippy::useless_conversion)]
fn fs_magic(path: &Path) -> Option<i64> {
    rustix::fs::statfs(path)
        .ok()
        .and_then(|s| i64::try_from(s.f_type).ok())
}

fn cgroup(uid: u32) -> Cgroup {
    match fs_magic(Path::new("/sys/fs/cgroup")) {
        Some(CGROUP2_MAGIC) => {
            let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/")
                .to_owned();
            let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            let delegated = std::fs::metadata(dir.join("cgroup.procs"))
                .is_ok_and(|m| m.uid() == uid)
                && std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid);
            let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Cgroup::V2 {
                path,
                delegated,
                controllers,
            }
        }
        Some(_) => Cgroup::V1,
        None => Cgroup::Unknown("cannot read `/sys/fs/cgroup`".to_owned()),
    }
}

/// Name of a `statfs` magic number, for the report.
pub fn fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x6573_5546 => "fuse",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0x2FC1_2FC1 => "zfs",
        0x0000_9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x6462_6720 => "debugfs",
        0x7461_636f => "ocfs2",
        0x0102_1997 => "9p",
        0xf2f5_2010 => "f2fs",
        0x6165_676C => "pstorefs",
        0x3153_464a => "jfs",
        0x5265_4973 => "reiserfs",
        _ => "other",
    }
}

/// Overlayfs magic: upper directories cannot live on it.
pub const OVERLAYFS_MAGIC: i64 = 0x794C_7630;

fn state_fs(path: &Path) -> Result<StateFs, String> {
    let measured = path
        .ancestors()
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no directory of `{}` exists", path.display()))?
        .to_path_buf();
    let vfs = rustix::fs::statvfs(&measured).map_err(|e| {
        format!(
            "cannot stat the file system of `{}`: {e}",
            measured.display()
        )
    })?;
    let magic = fs_magic(&measured).unwrap_or(0);
    Ok(StateFs {
        path: path.to_path_buf(),
        fs_magic: magic,
        fs_name: fs_name(magic),
        free_bytes: vfs.f_bavail.saturating_mul(vfs.f_frsize),
        total_bytes: vfs.f_blocks.saturating_mul(vfs.f_frsize),
        free_inodes: vfs.f_favail,
        total_inodes: vfs.f_files,
        nosuid: vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID),
        nodev: vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::NODEV),
        writable: rustix::fs::access(&measured, rustix::fs::Access::WRITE_OK).is_ok(),
        measured,
    })
}

fn binfmt_entry(name: &str) -> Option<BinfmtEntry> {
    let text = std::fs::read_to_string(format!("/proc/sys/fs/binfmt_misc/{name}")).ok()?;
    Some(parse_binfmt(name, &text))
}

/// Parses a binfmt_misc entry file (`enabled`, `interpreter ...`, `flags: ...`).
pub fn parse_binfmt(name: &str, text: &str) -> BinfmtEntry {
    let mut e = BinfmtEntry {
        name: name.to_owned(),
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
    };
    for line in text.lines() {
        if line.trim() == "enabled" {
            e.enabled = true;
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            i.trim().clone_into(&mut e.interpreter);
        } else if let Some(f) = line.strip_prefix("flags:") {
            f.trim().clone_into(&mut e.flags);
        }
    }
    e
}

/// Soft and hard open-files limits from a `/proc/self/limits` text.
pub fn nofile(limits: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let parse = |v: Option<&str>| -> Option<Option<u64>> {
        match v? {
            "unlimited" => Some(None),
            n => n.parse().ok().map(Some),
        }
    };
    Some((parse(f.next())?, parse(f.next())?))
}

fn runtime_dir() -> Option<RuntimeDir> {
    let path = PathBuf::from(std::env::var_os(crate::envvars::XDG_RUNTIME_DIR)?);
    if path.as_os_str().is_empty() {
        return None;
    }
    let meta = std::fs::metadata(&path).ok();
    let writable = meta.as_ref().is_some_and(std::fs::Metadata::is_dir)
        && rustix::fs::access(&path, rustix::fs::Access::WRITE_OK).is_ok();
    Some(RuntimeDir {
        is_dir: meta.as_ref().is_some_and(std::fs::Metadata::is_dir),
        owner: meta.map(|m| m.uid()),
        writable,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_by_name_or_uid() {
        let text =
            "# comment\nalice:100000:65536\nbob:165536:1000\n1001:200000:65536\nalice:300000:10\n";
        assert_eq!(
            ranges_of(text, "alice", 1000),
            [(100_000, 65536), (300_000, 10)]
        );
        assert_eq!(ranges_of(text, "carol", 1001), [(200_000, 65536)]);
        assert!(ranges_of(text, "dave", 1002).is_empty());
    }

    #[test]
    fn proc_masks_come_from_mountinfo() {
        let info = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
                    30 22 0:5 /null /proc/kcore rw,nosuid - devtmpfs udev rw\n\
                    31 22 0:21 /sys /proc/sys ro,relatime - proc proc rw\n\
                    32 22 0:44 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw\n\
                    33 22 0:50 / /proc/acpi\\040x ro - tmpfs tmpfs ro\n";
        assert_eq!(
            proc_masks(info),
            [
                "/proc/kcore (devtmpfs, rw,nosuid)",
                "/proc/sys (proc, ro,relatime)",
                "/proc/acpi x (tmpfs, ro)"
            ]
        );
    }

    #[test]
    fn binfmt_entries_and_limits_parse() {
        let e = parse_binfmt(
            "qemu-aarch64",
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n",
        );
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert_eq!(e.flags, "POCF");
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(nofile(limits), Some((Some(1024), Some(524_288))));
        assert_eq!(
            nofile("Max open files            unlimited            unlimited            files\n"),
            Some((None, None))
        );
        assert_eq!(nofile(""), None);
    }
}

//! The sandbox spec: everything one sandboxed run needs, computed before any namespace
//! exists, as plain data (serialised to the helper process, which only applies it).
//!
//! The computations here are pure functions of gathered facts, unit-tested without
//! privileges: the identity mapping ([`choose_ids`]), the standard mounts
//! ([`standard_mounts`]), `/etc/hosts` and `/etc/resolv.conf`, the environment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::result::Fact;
use crate::arch::{Execution, Platform};

/// One sandboxed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Where snapshots and per-run directories live (`<cache>/sandbox`).
    pub state_dir: PathBuf,
    /// How ids inside map to ids outside.
    pub ids: IdMapping,
    /// The image's layers, bottom first.
    pub layers: Vec<LayerSpec>,
    /// How the root file system is assembled.
    pub rootfs: RootfsMode,
    /// Mounts, in order, after the root file system is in place.
    pub mounts: Vec<Mount>,
    pub hostname: String,
    pub network: Network,
    pub process: Process,
    pub platform: Platform,
    pub execution: Execution,
    /// Kill everything in the sandbox after this long.
    pub timeout_ms: Option<u64>,
    /// Facts found while computing the spec, reported with the result.
    pub facts: Vec<Fact>,
    /// A build step (`rbuild build`): what the helper does besides or instead of running
    /// `process`, and what it keeps afterwards. `None` for `rbuild run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepSpec>,
}

/// What a build step asks of the helper on top of a plain run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    pub action: StepAction,
    /// When the step succeeds, its overlay upper directory (its changes, in overlay's own
    /// encoding) becomes the snapshot `snapshots/<mapping>/<keep>`, a lower directory of
    /// later steps. Mount points the sandbox created are removed from it first.
    pub keep: String,
    /// Stream the step's changes as an OCI layer tar to descriptor 4 (see `layer::diff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffSpec>,
    /// Read-only trees the step reads from (another stage or image: `COPY --from`,
    /// `RUN --mount=from=`), each the overlay of its layers, mounted by the helper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<Vec<LayerSpec>>,
}

/// How a layer diff is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiffSpec {
    /// Clamp modification times to this Unix time (`SOURCE_DATE_EPOCH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp_mtime: Option<u64>,
}

/// What a build step does in its sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepAction {
    /// Run `process` (a `RUN` instruction).
    Run,
    /// File operations the helper performs itself, as the namespace's root, in the
    /// merged root file system (`COPY`, `ADD`, `WORKDIR`); no process is started.
    Files { ops: Vec<super::fileop::FileOp> },
}

/// A request to the helper that is not a run: the OCI layer tar of snapshots, written to
/// descriptor 4 from inside a user namespace with the build's mapping (where every file
/// of the snapshot is readable and owners read as container ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarJob {
    pub state_dir: PathBuf,
    pub ids: IdMapping,
    /// One snapshot: its layer (its changes, whiteouts included). Several: the merged
    /// file system they make together (for `--output type=local|tar`).
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub diff: DiffSpec,
}

/// One layer: the blob to unpack (if its snapshot is not cached yet) and its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Digest of the blob (compressed).
    pub digest: String,
    /// Digest of the uncompressed tar: the snapshot is keyed by it.
    pub diff_id: String,
    /// Where the blob is on disk.
    pub blob: PathBuf,
    /// A snapshot directory that already exists (a build step's kept upper directory,
    /// `snapshots/<mapping>/<dir>`): there is nothing to unpack and the fields above are
    /// unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl LayerSpec {
    /// A layer that is a kept step snapshot.
    pub fn snapshot(name: impl Into<String>) -> LayerSpec {
        LayerSpec {
            digest: String::new(),
            diff_id: String::new(),
            blob: PathBuf::new(),
            dir: Some(name.into()),
        }
    }

    /// The name of its directory under `snapshots/<mapping>/`.
    pub fn snapshot_name(&self) -> &str {
        match &self.dir {
            Some(d) => d,
            None => self
                .diff_id
                .strip_prefix("sha256:")
                .unwrap_or(&self.diff_id),
        }
    }
}

/// How the root file system is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootfsMode {
    /// overlayfs over the layer snapshots with a fresh upper directory; falls back to
    /// `Copy` (with the `overlay-unavailable-slow-fallback` warning) when overlayfs cannot
    /// be mounted.
    Overlay,
    /// A private copy of the merged snapshots (slow; for hosts without overlayfs).
    Copy,
}

/// The network of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// The host's network namespace, as `docker build` uses by default.
    Host,
    /// A fresh network namespace with only loopback, up.
    None,
}

/// The command run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub argv: Vec<String>,
    /// `KEY=VALUE`; `HOME` is added from the user's passwd entry when missing.
    pub env: Vec<String>,
    /// Working directory (created when missing, as Docker does).
    pub cwd: String,
    /// `user[:group]`, by name or number, resolved from the image's `/etc/passwd` and
    /// `/etc/group` inside the sandbox. Empty means root.
    pub user: String,
    pub umask: u32,
    /// Raise the soft `RLIMIT_NOFILE` to the hard limit (many builds need more than 1024).
    pub raise_nofile: bool,
}

/// A mount (or file) the sandbox sets up inside the root file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Mount {
    /// A `proc` instance of the sandbox's PID namespace (mounted by its init).
    Proc { dest: String },
    /// `sysfs`: a fresh read-only instance when the sandbox owns its network namespace,
    /// else the host's `/sys` bound read-only.
    Sysfs { dest: String, fresh: bool },
    /// A `tmpfs`.
    Tmpfs {
        dest: String,
        /// `mode=...,size=...`
        options: String,
        noexec: bool,
    },
    /// A private `devpts` instance; `gid` owns new terminals when it is mapped.
    Devpts { dest: String, gid: Option<u32> },
    /// A host device node (`/dev/null`, ...) bound onto a file at `dest`.
    Device { source: PathBuf, dest: String },
    /// A symlink created at `dest` (inside `/dev`).
    Symlink { dest: String, target: String },
    /// A file with these contents bound at `dest` (`/etc/hosts`, ...; `RUN
    /// --mount=type=secret`, whose contents live only on the run's private tmpfs).
    File {
        dest: String,
        contents: String,
        /// Mode and owner (default 0644, root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        perm: Option<FilePerm>,
    },
    /// A path inside one of the step's source trees ([`StepSpec::trees`]) bound at `dest`
    /// (`RUN --mount=type=bind,from=...`); writes go to a scratch layer that is thrown away.
    Tree {
        tree: usize,
        path: String,
        dest: String,
        readonly: bool,
    },
    /// A persistent cache directory (`RUN --mount=type=cache`): `cache/<mapping>/<id>`
    /// under the state directory, created on first use with `perm`, kept between builds.
    Cache {
        id: String,
        dest: String,
        perm: FilePerm,
        /// Only one step at a time uses it (`sharing=locked`).
        locked: bool,
    },
    /// A host path bound at `dest`.
    Bind {
        source: PathBuf,
        dest: String,
        readonly: bool,
    },
}

impl Mount {
    /// Where it appears inside the sandbox.
    pub fn dest(&self) -> &str {
        match self {
            Mount::Proc { dest }
            | Mount::Sysfs { dest, .. }
            | Mount::Tmpfs { dest, .. }
            | Mount::Devpts { dest, .. }
            | Mount::Device { dest, .. }
            | Mount::Symlink { dest, .. }
            | Mount::File { dest, .. }
            | Mount::Tree { dest, .. }
            | Mount::Cache { dest, .. }
            | Mount::Bind { dest, .. } => dest,
        }
    }
}

/// Mode and owner of a file or directory the sandbox creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePerm {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The host devices every sandbox gets, bound from the host's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The mounts every sandbox has, in the order they are applied.
pub fn standard_mounts(
    network: Network,
    ids: &IdMapping,
    hostname: &str,
    host_resolv: &str,
) -> Vec<Mount> {
    let mut m = vec![
        Mount::Proc {
            dest: "/proc".into(),
        },
        Mount::Sysfs {
            dest: "/sys".into(),
            fresh: network == Network::None,
        },
        Mount::Tmpfs {
            dest: "/dev".into(),
            options: "mode=755,size=65536k".into(),
            noexec: true,
        },
    ];
    for d in DEVICES {
        m.push(Mount::Device {
            source: Path::new("/dev").join(d),
            dest: format!("/dev/{d}"),
        });
    }
    // Group `tty` (5) owns terminals when the mapping has it, as on a normal system.
    let tty_gid = ids.maps_gid(5).then_some(5);
    m.extend([
        Mount::Devpts {
            dest: "/dev/pts".into(),
            gid: tty_gid,
        },
        Mount::Symlink {
            dest: "/dev/ptmx".into(),
            target: "pts/ptmx".into(),
        },
        Mount::Tmpfs {
            dest: "/dev/shm".into(),
            options: "mode=1777,size=65536k".into(),
            noexec: true,
        },
        Mount::Symlink {
            dest: "/dev/fd".into(),
            target: "/proc/self/fd".into(),
        },
        Mount::Symlink {
            dest: "/dev/stdin".into(),
            target: "/proc/self/fd/0".into(),
        },
        Mount::Symlink {
            dest: "/dev/stdout".into(),
            target: "/proc/self/fd/1".into(),
        },
        Mount::Symlink {
            dest: "/dev/stderr".into(),
            target: "/proc/self/fd/2".into(),
        },
        Mount::Symlink {
            dest: "/dev/core".into(),
            target: "/proc/kcore".into(),
        },
        Mount::File {
            dest: "/etc/hostname".into(),
            contents: format!("{hostname}\n"),
            perm: None,
        },
        Mount::File {
            dest: "/etc/hosts".into(),
            contents: hosts_file(hostname),
            perm: None,
        },
        Mount::File {
            dest: "/etc/resolv.conf".into(),
            contents: resolv_conf(host_resolv, network),
            perm: None,
        },
    ]);
    m
}

/// `/etc/hosts` of a sandbox: loopback names and the sandbox's hostname.
pub fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback {hostname}\n"
    )
}

/// `/etc/resolv.conf` of a sandbox: the host's, as Docker does with the host network;
/// with no network, one that names no server so lookups fail at once instead of timing out.
pub fn resolv_conf(host: &str, network: Network) -> String {
    match network {
        Network::Host if !host.trim().is_empty() => host.to_owned(),
        Network::Host => "nameserver 127.0.0.1\n".to_owned(),
        Network::None => "# no network in this sandbox (--network none)\n".to_owned(),
    }
}

/// The image's environment with `overrides` (`KEY=VALUE`, or `KEY` alone to take the
/// value from `host_env`) applied, and a default `PATH` when there is none.
pub fn merge_env(
    image: &[String],
    overrides: &[String],
    host_env: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_owned();
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv);
    };
    for kv in image {
        set(kv.clone());
    }
    for kv in overrides {
        if kv.contains('=') {
            set(kv.clone());
        } else if let Some(v) = host_env(kv) {
            set(format!("{kv}={v}"));
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------------------
// Identity mapping

/// One line of `/proc/PID/uid_map`: ids `inside..inside+count` are `outside..` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// How the user namespace's maps are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MapMethod {
    /// The setuid helpers from `uidmap`, checking `/etc/subuid` and `/etc/subgid`.
    Newidmap {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
    /// Written directly: rbuild has `CAP_SETUID` over the ids (real root, or root of an
    /// enclosing user namespace).
    Direct,
    /// Only the caller's own id, written directly; `setgroups` must be denied first.
    Single,
}

/// The uid and gid maps of a sandbox's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub uid: Vec<IdRange>,
    pub gid: Vec<IdRange>,
    pub method: MapMethod,
}

/// Ids a container normally needs: 0..65535.
pub const CONTAINER_IDS: u32 = 65536;

/// Where real root's sandboxes map when `/etc/subuid` has no range for `root`: a block
/// far above what `useradd` hands out (its default `SUB_UID_MAX` is 600100000), so it
/// never collides with a user's range.
pub const ROOT_FALLBACK_START: u32 = 2_000_000_000;

impl IdMapping {
    /// How many container ids are mapped (uids; gids are mapped the same way).
    pub fn mapped(&self) -> u32 {
        self.uid.iter().map(|r| r.count).sum()
    }

    /// Whether container gid `gid` is mapped.
    pub fn maps_gid(&self, gid: u32) -> bool {
        self.gid
            .iter()
            .any(|r| gid >= r.inside && gid - r.inside < r.count)
    }

    /// Whether container uid `uid` is mapped.
    pub fn maps_uid(&self, uid: u32) -> bool {
        self.uid
            .iter()
            .any(|r| uid >= r.inside && uid - r.inside < r.count)
    }

    /// The id outside (in the namespace rbuild runs in) of container uid `uid`.
    pub fn outside_uid(&self, uid: u32) -> Option<u32> {
        self.uid
            .iter()
            .find(|r| uid >= r.inside && uid - r.inside < r.count)
            .map(|r| r.outside + (uid - r.inside))
    }

    /// The id outside of container gid `gid`.
    pub fn outside_gid(&self, gid: u32) -> Option<u32> {
        self.gid
            .iter()
            .find(|r| gid >= r.inside && gid - r.inside < r.count)
            .map(|r| r.outside + (gid - r.inside))
    }

    /// `uid_map` text.
    pub fn uid_map(&self) -> String {
        map_text(&self.uid)
    }

    /// `gid_map` text.
    pub fn gid_map(&self) -> String {
        map_text(&self.gid)
    }

    /// The mapping of a user namespace nested in one with this mapping that keeps every
    /// id as it is there: a session's build step gets a user namespace of its own this way,
    /// written directly by root of the session's namespace. One line per range of this
    /// mapping (the kernel wants each line within one range of the parent's map).
    #[must_use]
    pub fn nested(&self) -> IdMapping {
        let identity = |ranges: &[IdRange]| {
            let mut nested: Vec<IdRange> = ranges
                .iter()
                .map(|r| IdRange {
                    inside: r.inside,
                    outside: r.inside,
                    count: r.count,
                })
                .collect();
            nested.sort_unstable_by_key(|r| r.inside);
            nested
        };
        IdMapping {
            uid: identity(&self.uid),
            gid: identity(&self.gid),
            method: MapMethod::Direct,
        }
    }

    /// A short stable tag of the mapping: snapshots unpacked under one mapping have other
    /// owners on disk than under another, so they are kept apart.
    pub fn tag(&self) -> String {
        let text = format!("{}|{}", self.uid_map(), self.gid_map());
        crate::layer::Digest::of(text.as_bytes()).hex()[..12].to_owned()
    }
}

fn map_text(ranges: &[IdRange]) -> String {
    use std::fmt::Write as _;
    ranges.iter().fold(String::new(), |mut s, r| {
        let _ = writeln!(s, "{} {} {}", r.inside, r.outside, r.count);
        s
    })
}

/// What [`choose_ids`] looks at, gathered by [`IdFacts::gather`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdFacts {
    pub uid: u32,
    pub gid: u32,
    /// The login name of `uid`, when it has one.
    pub user: Option<String>,
    /// The contents of `/etc/subuid` and `/etc/subgid` (empty when missing).
    pub subuid: String,
    pub subgid: String,
    /// This process's own `/proc/self/uid_map` and `gid_map`.
    pub own_uid_map: String,
    pub own_gid_map: String,
    /// `newuidmap`/`newgidmap`, when installed.
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

impl IdFacts {
    /// Looks at this process and host.
    pub fn gather() -> IdFacts {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let find = |name: &str| {
            ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        };
        IdFacts {
            uid,
            gid,
            user: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name),
            subuid: read("/etc/subuid"),
            subgid: read("/etc/subgid"),
            own_uid_map: read("/proc/self/uid_map"),
            own_gid_map: read("/proc/self/gid_map"),
            newuidmap: find("newuidmap"),
            newgidmap: find("newgidmap"),
        }
    }
}

/// A mapping that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IdError {
    pub message: String,
    pub hint: String,
}

/// Subordinate ranges `(start, count)` for `name` or `uid` in a `/etc/subuid`-format text,
/// in file order.
pub fn subordinate_ranges(text: &str, name: Option<&str>, uid: u32) -> Vec<(u32, u32)> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let mut f = line.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            (Some(owner) == name || owner == uid).then_some(())?;
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// Parses a `uid_map` text.
pub fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u32>);
            Some(IdRange {
                inside: f.next()?.ok()?,
                outside: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect()
}

/// Whether a `uid_map` is the initial user namespace's (`0 0 4294967295`).
pub fn is_initial_map(text: &str) -> bool {
    parse_map(text)
        == [IdRange {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }]
}

/// Container ids `1..` laid over subordinate ranges, up to `CONTAINER_IDS - 1` ids.
fn lay_over(ranges: &[(u32, u32)]) -> Vec<IdRange> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for &(start, count) in ranges {
        let want = CONTAINER_IDS - next;
        if want == 0 {
            break;
        }
        let take = count.min(want);
        out.push(IdRange {
            inside: next,
            outside: start,
            count: take,
        });
        next += take;
    }
    out
}

/// The identity mapping over the ids an enclosing namespace has from 0 up (at most
/// [`CONTAINER_IDS`]), split where its own map's lines split: the kernel requires each line
/// of a child's map to fall within one line of the parent's.
fn identity_within(map: &[IdRange]) -> Vec<IdRange> {
    let mut out = Vec::new();
    let mut next = 0u32;
    while next < CONTAINER_IDS {
        let Some(r) = map
            .iter()
            .find(|r| next >= r.inside && next - r.inside < r.count)
        else {
            break;
        };
        let end = r.inside.saturating_add(r.count).min(CONTAINER_IDS);
        out.push(IdRange {
            inside: next,
            outside: next,
            count: end - next,
        });
        next = end;
    }
    out
}

/// The first `n` ids of `ranges`.
fn first_ids(ranges: &[IdRange], mut n: u32) -> Vec<IdRange> {
    let mut out = Vec::new();
    for r in ranges {
        if n == 0 {
            break;
        }
        let take = r.count.min(n);
        out.push(IdRange { count: take, ..*r });
        n -= take;
    }
    out
}

/// Chooses the user namespace's id maps (see `ARCHITECTURE.md`, "Identity mapping"):
///
/// - **A normal user** with subordinate ranges (`/etc/subuid`, `/etc/subgid`) and
///   `newuidmap`/`newgidmap`: container root is the user, container ids `1..65535` are
///   laid over the ranges in file order. Less than 65535 subordinate ids maps what there
///   is (warning `subid-range-too-small`); none, or no `uidmap` package, falls back to a
///   single id (container root = the user, nothing else mapped; same warning, naming
///   what breaks).
/// - **Real root** (the initial user namespace): never builds as host root. Container ids
///   `0..65535` map to `root`'s range in `/etc/subuid`/`/etc/subgid` if it has one of
///   at least 65536 ids, else to `2000000000..2000065535` ([`ROOT_FALLBACK_START`]),
///   refused if that block overlaps a range listed for anyone.
/// - **Root inside a user namespace** (a CI job sandbox): container ids map to the same
///   ids of the enclosing namespace (up to 65536 of those mapped contiguously from 0).
pub fn choose_ids(f: &IdFacts) -> Result<(IdMapping, Vec<Fact>), IdError> {
    let initial = is_initial_map(&f.own_uid_map) || f.own_uid_map.trim().is_empty();
    if f.uid == 0 && initial {
        return root_ids(f).map(|m| (m, Vec::new()));
    }
    if f.uid == 0 {
        let uid = identity_within(&parse_map(&f.own_uid_map));
        let gid = identity_within(&parse_map(&f.own_gid_map));
        let total = |r: &[IdRange]| r.iter().map(|x| x.count).sum::<u32>();
        let n = total(&uid).min(total(&gid));
        let mut facts = Vec::new();
        if n < CONTAINER_IDS {
            facts.push(Fact::PartialIdMapping {
                mapped: n,
                reason: format!(
                    "rbuild runs as root of a user namespace that maps only {n} ids from 0"
                ),
            });
        }
        if n == 0 {
            return Err(IdError {
                message: "rbuild runs as root of a user namespace that does not map id 0 of its own".to_owned(),
                hint: "run rbuild as a user with a subordinate id range, or in a namespace that maps ids 0-65535".to_owned(),
            });
        }
        return Ok((
            IdMapping {
                uid: first_ids(&uid, n),
                gid: first_ids(&gid, n),
                method: MapMethod::Direct,
            },
            facts,
        ));
    }

    let name = f.user.as_deref();
    let single = |reason: String| {
        let m = IdMapping {
            uid: vec![IdRange {
                inside: 0,
                outside: f.uid,
                count: 1,
            }],
            gid: vec![IdRange {
                inside: 0,
                outside: f.gid,
                count: 1,
            }],
            method: MapMethod::Single,
        };
        (m, vec![Fact::SingleIdMapping { reason }])
    };
    let who = name.map_or_else(|| format!("uid {}", f.uid), |n| format!("`{n}`"));
    let (Some(newuidmap), Some(newgidmap)) = (&f.newuidmap, &f.newgidmap) else {
        return Ok(single(
            "`newuidmap`/`newgidmap` are not installed (Debian package `uidmap`)".to_owned(),
        ));
    };
    let sub_u = subordinate_ranges(&f.subuid, name, f.uid);
    let sub_g = subordinate_ranges(&f.subgid, name, f.uid);
    if sub_u.is_empty() || sub_g.is_empty() {
        let file = if sub_u.is_empty() {
            "/etc/subuid"
        } else {
            "/etc/subgid"
        };
        return Ok(single(format!(
            "{who} has no subordinate range in `{file}`"
        )));
    }
    let mut uid = vec![IdRange {
        inside: 0,
        outside: f.uid,
        count: 1,
    }];
    uid.extend(lay_over(&sub_u));
    let mut gid = vec![IdRange {
        inside: 0,
        outside: f.gid,
        count: 1,
    }];
    gid.extend(lay_over(&sub_g));
    let mut facts = Vec::new();
    let mapped_u: u32 = uid.iter().map(|r| r.count).sum();
    let mapped_g: u32 = gid.iter().map(|r| r.count).sum();
    let mapped = mapped_u.min(mapped_g);
    if mapped < CONTAINER_IDS {
        facts.push(Fact::PartialIdMapping {
            mapped,
            reason: format!(
                "the subordinate ranges of {who} hold only {} ids",
                mapped - 1
            ),
        });
    }
    Ok((
        IdMapping {
            uid,
            gid,
            method: MapMethod::Newidmap {
                newuidmap: newuidmap.clone(),
                newgidmap: newgidmap.clone(),
            },
        },
        facts,
    ))
}

fn root_ids(f: &IdFacts) -> Result<IdMapping, IdError> {
    let pick = |text: &str, file: &str| -> Result<u32, IdError> {
        if let Some((start, _)) = subordinate_ranges(text, Some("root"), 0)
            .into_iter()
            .find(|(_, c)| *c >= CONTAINER_IDS)
        {
            return Ok(start);
        }
        let lo = u64::from(ROOT_FALLBACK_START);
        let hi = lo + u64::from(CONTAINER_IDS);
        let clash = text.lines().find(|line| {
            let mut it = line.trim().split(':').skip(1);
            let start: Option<u64> = it.next().and_then(|s| s.parse().ok());
            let count: Option<u64> = it.next().and_then(|s| s.parse().ok());
            matches!((start, count), (Some(s), Some(c)) if s < hi && s + c > lo)
        });
        match clash {
            Some(line) => Err(IdError {
                message: format!(
                    "rbuild runs as root and `root` has no subordinate range in `{file}`; the fallback block {lo}-{} overlaps `{line}`",
                    hi - 1
                ),
                hint: "give root its own range, e.g. `usermod --add-subuids 3000000000-3000065535 --add-subgids 3000000000-3000065535 root` (any block of 65536 ids no one else has)".to_owned(),
            }),
            None => Ok(ROOT_FALLBACK_START),
        }
    };
    let u = pick(&f.subuid, "/etc/subuid")?;
    let g = pick(&f.subgid, "/etc/subgid")?;
    Ok(IdMapping {
        uid: vec![IdRange {
            inside: 0,
            outside: u,
            count: CONTAINER_IDS,
        }],
        gid: vec![IdRange {
            inside: 0,
            outside: g,
            count: CONTAINER_IDS,
        }],
        method: MapMethod::Direct,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_facts() -> IdFacts {
        IdFacts {
            uid: 1001,
            gid: 1001,
            user: Some("alice".into()),
            subuid: "bob:165536:65536\nalice:100000:65536\n".into(),
            subgid: "alice:100000:65536\n".into(),
            own_uid_map: "         0          0 4294967295\n".into(),
            own_gid_map: "         0          0 4294967295\n".into(),
            newuidmap: Some("/usr/bin/newuidmap".into()),
            newgidmap: Some("/usr/bin/newgidmap".into()),
        }
    }

    #[test]
    fn user_with_a_full_range_maps_65536_ids_through_newuidmap() {
        let (m, facts) = choose_ids(&user_facts()).unwrap();
        assert_eq!(m.uid_map(), "0 1001 1\n1 100000 65535\n");
        assert_eq!(m.gid_map(), "0 1001 1\n1 100000 65535\n");
        assert!(matches!(m.method, MapMethod::Newidmap { .. }));
        assert!(facts.is_empty(), "{facts:?}");
        assert_eq!(m.mapped(), 65536);
        assert_eq!(m.outside_uid(1000), Some(100_999));
        assert_eq!(m.outside_uid(0), Some(1001));
        assert_eq!(m.outside_uid(65536), None);
        assert!(m.maps_gid(5));
    }

    #[test]
    fn a_nested_mapping_keeps_every_id_range_by_range() {
        let (m, _) = choose_ids(&user_facts()).unwrap();
        let n = m.nested();
        assert_eq!(n.uid_map(), "0 0 1\n1 1 65535\n");
        assert_eq!(n.gid_map(), "0 0 1\n1 1 65535\n");
        assert_eq!(n.method, MapMethod::Direct);
        assert_eq!(n.mapped(), m.mapped());
        // A hole stays a hole; ranges come out sorted.
        let holes = IdMapping {
            uid: vec![
                IdRange {
                    inside: 2000,
                    outside: 300_000,
                    count: 10,
                },
                IdRange {
                    inside: 0,
                    outside: 1001,
                    count: 1,
                },
                IdRange {
                    inside: 1,
                    outside: 100_000,
                    count: 1000,
                },
            ],
            gid: vec![IdRange {
                inside: 0,
                outside: 1001,
                count: 1,
            }],
            method: MapMethod::Single,
        };
        let n = holes.nested();
        assert_eq!(n.uid_map(), "0 0 1\n1 1 1000\n2000 2000 10\n");
        assert_eq!(n.gid_map(), "0 0 1\n");
        for id in [0, 5, 1000, 1001, 1999, 2000, 2009, 2010] {
            assert_eq!(n.maps_uid(id), holes.maps_uid(id), "uid {id}");
        }
    }

    #[test]
    fn ranges_are_found_by_uid_and_laid_over_in_order() {
        let f = IdFacts {
            subuid: "1001:100000:1000\n1001:300000:100000\n".into(),
            subgid: "alice:100000:65536\n".into(),
            ..user_facts()
        };
        let (m, _) = choose_ids(&f).unwrap();
        assert_eq!(m.uid_map(), "0 1001 1\n1 100000 1000\n1001 300000 64535\n");
    }

    #[test]
    fn small_range_maps_what_there_is_and_says_so() {
        let f = IdFacts {
            subuid: "alice:100000:1000\n".into(),
            ..user_facts()
        };
        let (m, facts) = choose_ids(&f).unwrap();
        assert_eq!(m.uid_map(), "0 1001 1\n1 100000 1000\n");
        assert_eq!(facts.len(), 1);
        assert_eq!(facts[0].id(), "subid-range-too-small");
    }

    #[test]
    fn no_range_or_no_uidmap_falls_back_to_a_single_id() {
        for f in [
            IdFacts {
                subuid: "bob:165536:65536\n".into(),
                ..user_facts()
            },
            IdFacts {
                newuidmap: None,
                ..user_facts()
            },
        ] {
            let (m, facts) = choose_ids(&f).unwrap();
            assert_eq!(m.uid_map(), "0 1001 1\n");
            assert_eq!(m.gid_map(), "0 1001 1\n");
            assert_eq!(m.method, MapMethod::Single);
            assert!(!m.maps_gid(5));
            let d = facts[0].to_diagnostic();
            assert_eq!(d.id, "subid-range-too-small");
            assert!(d.message.contains("owned by other ids"), "{}", d.message);
        }
    }

    #[test]
    fn real_root_maps_to_its_subordinate_range_never_to_itself() {
        let f = IdFacts {
            uid: 0,
            gid: 0,
            user: Some("root".into()),
            subuid: "alice:100000:65536\nroot:500000:65536\n".into(),
            subgid: "root:600000:65536\n".into(),
            ..user_facts()
        };
        let (m, _) = choose_ids(&f).unwrap();
        assert_eq!(m.uid_map(), "0 500000 65536\n");
        assert_eq!(m.gid_map(), "0 600000 65536\n");
        assert_eq!(m.method, MapMethod::Direct);
        assert_ne!(m.outside_uid(0), Some(0));

        // Without an entry for root: the fallback block, unless someone has it.
        let f2 = IdFacts {
            subuid: "alice:100000:65536\n".into(),
            subgid: String::new(),
            ..f.clone()
        };
        let (m2, _) = choose_ids(&f2).unwrap();
        assert_eq!(m2.uid_map(), format!("0 {ROOT_FALLBACK_START} 65536\n"));
        let clash = IdFacts {
            subuid: "mallory:2000000100:10\n".into(),
            ..f2
        };
        let err = choose_ids(&clash).unwrap_err();
        assert!(err.message.contains("mallory:2000000100:10"), "{err}");
        assert!(err.hint.contains("usermod --add-subuids"), "{}", err.hint);
    }

    #[test]
    fn root_in_a_user_namespace_maps_within_its_range() {
        let f = IdFacts {
            uid: 0,
            gid: 0,
            own_uid_map: "0 1001 1\n1 100000 65535\n".into(),
            own_gid_map: "0 1001 1\n1 100000 65535\n".into(),
            ..user_facts()
        };
        let (m, facts) = choose_ids(&f).unwrap();
        // Identity, split where the enclosing map splits (the kernel needs each line of a
        // child map inside one line of the parent's).
        assert_eq!(m.uid_map(), "0 0 1\n1 1 65535\n");
        assert_eq!(m.method, MapMethod::Direct);
        assert!(facts.is_empty());
        let (m, _) = choose_ids(&IdFacts {
            own_uid_map: "0 0 4000000\n".into(),
            own_gid_map: "0 5000 10\n10 9000 100000\n".into(),
            ..f.clone()
        })
        .unwrap();
        assert_eq!(m.uid_map(), "0 0 65536\n");
        assert_eq!(m.gid_map(), "0 0 10\n10 10 65526\n");

        let tiny = IdFacts {
            own_uid_map: "0 1001 1\n".into(),
            own_gid_map: "0 1001 1\n".into(),
            ..f
        };
        let (m, facts) = choose_ids(&tiny).unwrap();
        assert_eq!(m.uid_map(), "0 0 1\n");
        assert_eq!(facts[0].id(), "subid-range-too-small");
    }

    #[test]
    fn standard_mounts_follow_network_and_mapping() {
        let (full, _) = choose_ids(&user_facts()).unwrap();
        let mounts = standard_mounts(Network::None, &full, "rbuild", "nameserver 10.0.0.1\n");
        let dests: Vec<&str> = mounts.iter().map(Mount::dest).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/sys",
                "/dev",
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty",
                "/dev/pts",
                "/dev/ptmx",
                "/dev/shm",
                "/dev/fd",
                "/dev/stdin",
                "/dev/stdout",
                "/dev/stderr",
                "/dev/core",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        assert!(mounts.contains(&Mount::Sysfs {
            dest: "/sys".into(),
            fresh: true
        }));
        assert!(mounts.contains(&Mount::Devpts {
            dest: "/dev/pts".into(),
            gid: Some(5)
        }));
        assert!(mounts.contains(&Mount::File {
            dest: "/etc/resolv.conf".into(),
            contents: "# no network in this sandbox (--network none)\n".into(),
            perm: None,
        }));
        let (single, _) = choose_ids(&IdFacts {
            newuidmap: None,
            ..user_facts()
        })
        .unwrap();
        let host = standard_mounts(Network::Host, &single, "box", "nameserver 10.0.0.1\n");
        assert!(host.contains(&Mount::Sysfs {
            dest: "/sys".into(),
            fresh: false
        }));
        assert!(host.contains(&Mount::Devpts {
            dest: "/dev/pts".into(),
            gid: None
        }));
        assert!(host.contains(&Mount::File {
            dest: "/etc/resolv.conf".into(),
            contents: "nameserver 10.0.0.1\n".into(),
            perm: None,
        }));
        assert!(host.contains(&Mount::File {
            dest: "/etc/hosts".into(),
            contents:
                "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback box\n".into(),
            perm: None,
        }));
    }

    #[test]
    fn env_overrides_replace_and_path_defaults() {
        let env = merge_env(
            &["PATH=/bin".into(), "A=1".into(), "B=2".into()],
            &["A=3".into(), "C".into(), "D".into()],
            |k| (k == "C").then(|| "from-host".into()),
        );
        assert_eq!(env, ["PATH=/bin", "B=2", "A=3", "C=from-host"]);
        let env = merge_env(&[], &[], |_| None);
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}")]);
    }

    #[test]
    fn mapping_tags_differ_between_mappings() {
        let (a, _) = choose_ids(&user_facts()).unwrap();
        let (b, _) = choose_ids(&IdFacts {
            newuidmap: None,
            ..user_facts()
        })
        .unwrap();
        assert_ne!(a.tag(), b.tag());
        assert_eq!(a.tag().len(), 12);
    }
}

//! Judging the facts: one [`Check`] per requirement of a rootless, multi-arch build, with a
//! catalog diagnostic (and a fix naming this host's values) when something is wrong.
//! Pure functions of [`Facts`], so every verdict is unit-tested.

use std::fmt::Write as _;

use super::facts::{Cgroup, Facts, OVERLAYFS_MAGIC, PlatformFacts, ranges_of};
use super::live::Outcome;
use super::{Check, Status};
use crate::diagnose::signatures;
use crate::diagnose::{Cause, Severity};

/// Ids a container needs mapped: 0..65535.
pub const NEEDED_IDS: u64 = 65536;
/// Free space below which builds fail early.
pub const MIN_FREE_BYTES: u64 = 512 * 1024 * 1024;
/// Free space below which `doctor` warns.
pub const LOW_FREE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Free inodes below which builds fail early.
pub const MIN_FREE_INODES: u64 = 10_000;
/// Free inodes below which `doctor` warns.
pub const LOW_FREE_INODES: u64 = 100_000;
/// Open-files hard limit below which `doctor` warns.
pub const LOW_NOFILE: u64 = 4096;

/// All checks, in the order they are shown.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut checks = vec![
        userns(f),
        subids(f),
        id_helpers(f),
        proc(f),
        overlay(f),
        state_dir(f),
    ];
    checks.extend(f.platforms.iter().map(|plat| binfmt(f, plat)));
    checks.extend([cgroup(f), security(f), nofile(f), runtime_dir(f)]);
    checks
}

fn outcome_fact(o: &Outcome) -> String {
    let out = if o.output.is_empty() {
        String::new()
    } else {
        format!(
            ": {}",
            o.output.lines().take(3).collect::<Vec<_>>().join(" / ")
        )
    };
    format!(
        "`{}` {}{out}",
        o.command,
        if o.ok { "worked" } else { "failed" }
    )
}

fn sysctl_fact(key: &str, value: Option<&String>) -> Option<String> {
    value.map(|v| format!("`{key}={v}`"))
}

fn userns(f: &Facts) -> Check {
    let mut c = Check::new("userns", "user namespaces");
    for fact in [
        sysctl_fact(
            "kernel.unprivileged_userns_clone",
            f.unprivileged_userns_clone.as_ref(),
        ),
        sysctl_fact("user.max_user_namespaces", f.max_user_namespaces.as_ref()),
        sysctl_fact(
            "kernel.apparmor_restrict_unprivileged_userns",
            f.apparmor_restrict.as_ref(),
        ),
        f.apparmor_label
            .as_ref()
            .map(|l| format!("AppArmor label of rbuild: `{l}`")),
        f.seccomp.as_ref().map(|s| {
            format!(
                "seccomp mode {s} ({} filters)",
                f.seccomp_filters.as_deref().unwrap_or("0")
            )
        }),
        f.live.userns.as_ref().map(outcome_fact),
    ]
    .into_iter()
    .flatten()
    {
        c = c.fact(fact);
    }

    if f.max_user_namespaces.as_deref() == Some("0") {
        return c.problem(
            Cause::UsernsDisabledSysctl
                .error("user namespaces are disabled on this host: `user.max_user_namespaces=0`")
                .with_hint("as root: `sysctl -w user.max_user_namespaces=28633` (and in `/etc/sysctl.d/` to keep it)"),
        );
    }
    if f.unprivileged_userns_clone.as_deref() == Some("0") && f.uid != 0 {
        return c.problem(
            Cause::UsernsDisabledSysctl
                .error("unprivileged user namespaces are disabled: `kernel.unprivileged_userns_clone=0`")
                .with_hint("as root: `sysctl -w kernel.unprivileged_userns_clone=1` (and in `/etc/sysctl.d/` to keep it)"),
        );
    }
    // AppArmor's restriction applies to the program, so judge rbuild's own confinement,
    // not the probe's (`unshare` may have a profile of its own).
    let restricted = f.apparmor_restrict.as_deref() == Some("1") && f.uid != 0;
    let unconfined = f
        .apparmor_label
        .as_deref()
        .is_none_or(|l| l == "unconfined");
    if restricted && unconfined {
        let exe = f.exe.as_ref().map_or_else(
            || "/usr/local/bin/rbuild".to_owned(),
            |p| p.display().to_string(),
        );
        return c.problem(
            Cause::ApparmorRestrictUnprivilegedUserns
                .error(format!(
                    "AppArmor lets unconfined programs create user namespaces only without capabilities (`kernel.apparmor_restrict_unprivileged_userns=1`), and `{exe}` has no profile"
                ))
                .with_hint(format!(
                    "as root, allow rbuild: `printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\n{exe} flags=(unconfined) {{\\n  userns,\\n}}\\n' > /etc/apparmor.d/rbuild && apparmor_parser -r /etc/apparmor.d/rbuild`, or for the whole host: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                )),
        );
    }
    match &f.live.userns {
        None => c.skipped("`unshare` (util-linux) is not installed, so this could not be tried"),
        Some(o) if o.ok => {
            if restricted {
                c.ok(format!(
                    "unprivileged user namespaces work (AppArmor restricts them; rbuild runs under `{}`)",
                    f.apparmor_label.as_deref().unwrap_or("?")
                ))
            } else {
                c.ok("unprivileged user namespaces work")
            }
        }
        Some(o) => {
            let cause = signatures::classify(&o.output, false)
                .map(|c| c.cause)
                .filter(|c| {
                    matches!(
                        c,
                        Cause::UsernsDisabledSysctl
                            | Cause::ApparmorRestrictUnprivilegedUserns
                            | Cause::PodSecurityBlocksUserns
                    )
                })
                .unwrap_or(Cause::PodSecurityBlocksUserns);
            let filtered = f.seccomp.as_deref() == Some("2");
            let why = if filtered {
                " (this process runs under a seccomp filter, as in a container)"
            } else {
                ""
            };
            c.problem(cause.error(format!(
                "creating an unprivileged user namespace failed{why}: {}",
                o.output.lines().next().unwrap_or("no output")
            )))
        }
    }
}

/// The first id at or above 100000 past every range in both files.
fn free_start(f: &Facts) -> u64 {
    [f.subuid.as_deref(), f.subgid.as_deref()]
        .into_iter()
        .flatten()
        .flat_map(str::lines)
        .filter_map(|l| {
            let mut it = l.trim().split(':').skip(1);
            let start: u64 = it.next()?.parse().ok()?;
            let count: u64 = it.next()?.parse().ok()?;
            Some(start + count)
        })
        .fold(100_000, u64::max)
}

fn subids(f: &Facts) -> Check {
    let mut c = Check::new("subids", "subordinate ids");
    let mut short = Vec::new();
    let mut summary = Vec::new();
    for (file, text, kind) in [
        ("/etc/subuid", &f.subuid, "uids"),
        ("/etc/subgid", &f.subgid, "gids"),
    ] {
        let ranges = text
            .as_deref()
            .map(|t| ranges_of(t, &f.user, f.uid))
            .unwrap_or_default();
        let total: u64 = ranges.iter().map(|(_, n)| n).sum();
        let listed: Vec<String> = ranges
            .iter()
            .map(|(s, n)| format!("{s}-{}", s + n - 1))
            .collect();
        match text {
            None => c = c.fact(format!("`{file}` does not exist or cannot be read")),
            Some(_) if ranges.is_empty() => {
                c = c.fact(format!(
                    "`{file}` has no line for `{}` or uid {}",
                    f.user, f.uid
                ));
            }
            Some(_) => c = c.fact(format!("`{file}`: {} ({total} {kind})", listed.join(", "))),
        }
        if total < NEEDED_IDS {
            short.push((file, kind, total));
        } else {
            summary.push(format!("{total} {kind} ({})", listed.join(", ")));
        }
    }
    if short.is_empty() {
        return c.ok(summary.join(", "));
    }
    let what: Vec<String> = short
        .iter()
        .map(|(file, kind, total)| {
            if *total == 0 {
                format!("no subordinate {kind} in `{file}`")
            } else {
                format!("only {total} subordinate {kind} in `{file}`")
            }
        })
        .collect();
    let start = free_start(f);
    let end = start + NEEDED_IDS - 1;
    c.problem(
        Cause::SubidRangeTooSmall
            .error(format!(
                "`{}` has {}; a container needs {NEEDED_IDS} ids mapped (0-65535), so files owned by other ids cannot be created",
                f.user,
                what.join(" and ")
            ))
            .with_hint(format!(
                "as root: `usermod --add-subuids {start}-{end} --add-subgids {start}-{end} {}` (a range no other user has), then run `rbuild doctor` again",
                f.user
            )),
    )
}

fn helper_problem(f: &Facts, name: &str) -> Option<String> {
    let h = match name {
        "newuidmap" => f.newuidmap.as_ref(),
        _ => f.newgidmap.as_ref(),
    };
    let Some(h) = h else {
        return Some(format!("`{name}` is not installed"));
    };
    let setuid_root = h.owner == 0 && h.mode & 0o4000 != 0;
    if h.nosuid_mount {
        return Some(format!(
            "`{}` is on a file system mounted `nosuid`, so it runs without privileges",
            h.path.display()
        ));
    }
    if !setuid_root && !h.file_caps {
        return Some(format!(
            "`{}` has neither the setuid bit (owner root) nor file capabilities",
            h.path.display()
        ));
    }
    None
}

/// `(uids, gids)` mapped, from the `uid_map` then `gid_map` lines the probe printed.
fn mapped_counts(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

fn id_helpers(f: &Facts) -> Check {
    let mut c = Check::new("id-helpers", "newuidmap/newgidmap");
    for h in [&f.newuidmap, &f.newgidmap].into_iter().flatten() {
        c = c.fact(format!(
            "`{}`: owner uid {}, mode {:o}{}{}",
            h.path.display(),
            h.owner,
            h.mode & 0o7777,
            if h.file_caps {
                ", file capabilities"
            } else {
                ""
            },
            if h.nosuid_mount {
                ", on a `nosuid` mount"
            } else {
                ""
            }
        ));
    }
    if let Some(o) = &f.live.mapped {
        c = c.fact(outcome_fact(o));
    }
    let problems: Vec<String> = ["newuidmap", "newgidmap"]
        .into_iter()
        .filter_map(|n| helper_problem(f, n))
        .collect();
    if !problems.is_empty() {
        return c.problem(Cause::NewuidmapMissingOrBroken.error(problems.join("; ")));
    }
    match &f.live.mapped {
        None => c.ok("installed with the privileges they need (mapping not tried: no range to map, or no user namespace)"),
        Some(o) if o.ok => {
            let counts = mapped_counts(&o.output);
            let lines = o.output.lines().count();
            if lines < 4 {
                c.problem(Cause::NewuidmapMissingOrBroken.error(format!(
                    "mapping the subordinate range produced only a single-id mapping: `{}`",
                    o.output.replace('\n', " / ")
                )))
            } else {
                let half = counts.len() / 2;
                let uids: u64 = counts[..half].iter().sum();
                let gids: u64 = counts[half..].iter().sum();
                c.ok(format!("map {uids} uids and {gids} gids into a user namespace"))
            }
        }
        // util-linux before 2.38 has no `--map-auto`: the helpers were not tried.
        Some(o) if o.output.contains("unrecognized option") => c.ok(
            "installed with the privileges they need (mapping not tried: this `unshare` has no `--map-auto`, util-linux < 2.38)",
        ),
        Some(o) => c.problem(Cause::NewuidmapMissingOrBroken.error(format!(
            "mapping the subordinate range failed: {}",
            o.output.lines().next().unwrap_or("no output")
        ))),
    }
}

fn proc(f: &Facts) -> Check {
    let mut c = Check::new("proc", "/proc for PID namespaces");
    for m in &f.proc_masks {
        c = c.fact(format!("mounted over `/proc`: {m}"));
    }
    match &f.live.proc {
        None => c.skipped("not tried: no user namespace"),
        Some(o) if o.ok => c.ok(if f.proc_masks.is_empty() {
            "each step can get its own PID namespace and `/proc`".to_owned()
        } else {
            format!(
                "each step can get its own PID namespace and `/proc` ({} masked paths did not prevent it)",
                f.proc_masks.len()
            )
        }),
        Some(o) => {
            let c = c.fact(outcome_fact(o));
            c.problem(Cause::ProcMountMasked.error(format!(
                "a fresh `/proc` cannot be mounted in a new PID namespace{}",
                if f.proc_masks.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} mounts hide parts of this `/proc`",
                        f.proc_masks.len()
                    )
                }
            )))
        }
    }
}

fn overlay(f: &Facts) -> Check {
    let c = Check::new("overlay", "overlayfs in a user namespace");
    let Ok(state) = &f.state else {
        return c.skipped("not tried: the state directory's file system is unknown");
    };
    let c = c.fact(format!(
        "`{}` is on {} (kernel {})",
        state.measured.display(),
        state.fs_name,
        f.kernel
    ));
    match &f.live.overlay {
        None => c.skipped(not_tried(f)),
        Some(o) if o.ok => c.ok(format!(
            "mounts with `userxattr` in the state directory ({})",
            state.fs_name
        )),
        Some(o) => {
            let c = c.fact(outcome_fact(o));
            if state.fs_magic == OVERLAYFS_MAGIC {
                c.problem(Cause::StateDirOnOverlayOrNosuid.error(format!(
                    "the state directory `{}` is on overlayfs (a container's root file system?), where overlay upper directories cannot live",
                    state.path.display()
                )))
            } else {
                c.problem(Cause::OverlayUnavailableSlowFallback.error(format!(
                    "overlayfs cannot be mounted in a user namespace on this kernel ({}) in `{}`",
                    f.kernel,
                    state.measured.display()
                )))
            }
        }
    }
}

/// Why a mount probe was not tried.
fn not_tried(f: &Facts) -> String {
    match (&f.scratch_error, &f.live.userns) {
        (Some(why), _) => format!("not tried: {why}"),
        (None, None) => "not tried: `unshare` (util-linux) is not installed".to_owned(),
        (None, Some(_)) => "not tried: no user namespace".to_owned(),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut whole = n;
    let mut tenths = 0;
    while whole >= 1024 && unit < UNITS.len() - 1 {
        tenths = (whole % 1024) * 10 / 1024;
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        format!("{whole} B")
    } else {
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

fn state_dir(f: &Facts) -> Check {
    let c = Check::new("state-dir", "state directory");
    let s = match &f.state {
        Ok(s) => s,
        Err(e) => return c.skipped(e.clone()),
    };
    let inodes_known = s.total_inodes > 0;
    let mut c = c.fact(format!(
        "`{}`{}: {} free of {}, {}",
        s.path.display(),
        if s.measured == s.path {
            String::new()
        } else {
            format!(" (not created yet; measured at `{}`)", s.measured.display())
        },
        human_bytes(s.free_bytes),
        human_bytes(s.total_bytes),
        if inodes_known {
            format!("{} of {} inodes free", s.free_inodes, s.total_inodes)
        } else {
            "no inode limit".to_owned()
        }
    ));
    if s.nosuid || s.nodev {
        let mut flags = Vec::new();
        if s.nosuid {
            flags.push("nosuid");
        }
        if s.nodev {
            flags.push("nodev");
        }
        c = c.fact(format!("mounted `{}`", flags.join(",")));
    }
    if !s.writable {
        return c.problem(Cause::StateDirNotWritable.error(if s.measured == s.path {
            format!(
                "`{}` cannot write the state directory `{}`",
                f.user,
                s.path.display()
            )
        } else {
            format!(
                "`{}` cannot create the state directory `{}`: `{}` is not writable",
                f.user,
                s.path.display(),
                s.measured.display()
            )
        }));
    }
    let low_bytes = s.free_bytes < MIN_FREE_BYTES;
    let low_inodes = inodes_known && s.free_inodes < MIN_FREE_INODES;
    if low_bytes || low_inodes {
        return c.problem(
            Cause::DiskFullOrInodes
                .error(format!(
                    "the state directory's file system is almost full: {} and {} inodes free",
                    human_bytes(s.free_bytes),
                    if inodes_known { s.free_inodes.to_string() } else { "unlimited".to_owned() }
                ))
                .with_hint(format!(
                    "free space under `{}` (check `df -h` and `df -i`), or point `--cache-dir` at a bigger file system",
                    s.measured.display()
                )),
        );
    }
    if s.free_bytes < LOW_FREE_BYTES || (inodes_known && s.free_inodes < LOW_FREE_INODES) {
        return c.problem(Cause::DiskFullOrInodes.warning(format!(
            "little room for layers and caches: {} and {} inodes free",
            human_bytes(s.free_bytes),
            if inodes_known {
                s.free_inodes.to_string()
            } else {
                "unlimited".to_owned()
            }
        )));
    }
    if s.nosuid {
        return c.problem(Cause::StateDirOnOverlayOrNosuid.warning(format!(
            "the state directory `{}` is on a `nosuid` mount: setuid programs in RUN steps (`sudo`, `su`) lose their privileges",
            s.measured.display()
        )));
    }
    c.ok(format!(
        "{} and {} free on {}",
        human_bytes(s.free_bytes),
        if inodes_known {
            format!("{} inodes", s.free_inodes)
        } else {
            "unlimited inodes".to_owned()
        },
        s.fs_name
    ))
}

fn binfmt(facts: &Facts, plat: &PlatformFacts) -> Check {
    let name = plat.platform.to_string();
    let mut c = Check::new(format!("binfmt:{name}"), format!("running {name}"));
    if plat.native {
        return c.ok("native on this host");
    }
    let q = plat.platform.qemu_name();
    let severity = if plat.requested {
        Severity::Error
    } else {
        Severity::Warning
    };
    if let Some(i) = &plat.interpreter {
        c = c.fact(format!(
            "interpreter `{}`: {}",
            i.display(),
            plat.interpreter_version
                .as_deref()
                .unwrap_or("version unknown")
        ));
    }
    if let Some(r) = &plat.host_registration {
        c = c.fact(format!(
            "host handler `{}`: {}, interpreter `{}`, flags `{}`",
            r.name,
            if r.enabled { "enabled" } else { "disabled" },
            r.interpreter,
            r.flags
        ));
    } else {
        c = c.fact(format!(
            "no host handler `/proc/sys/fs/binfmt_misc/qemu-{q}`"
        ));
    }
    if let Some(o) = &facts.live.binfmt {
        c = c.fact(outcome_fact(o));
    }
    let Some(interpreter) = &plat.interpreter else {
        return c.problem(
            Cause::BinfmtNotRegistered
                .diagnostic(
                    severity,
                    format!("no qemu-user interpreter for `{name}` on this host (`/usr/bin/qemu-{q}-static`)"),
                )
                .with_hint("as root: `apt-get install qemu-user-static`"),
        );
    };
    if facts.live.binfmt.as_ref().is_some_and(|o| o.ok) {
        return c.ok(format!(
            "`{}` is registered in a private binfmt_misc for each build",
            interpreter.display()
        ));
    }
    match &plat.host_registration {
        Some(r) if r.enabled && r.flags.contains('F') => c.ok(format!(
            "through the host's `{}` handler (flags `{}`)",
            r.name, r.flags
        )),
        Some(r) if r.enabled => c.problem(Cause::BinfmtNotRegistered.diagnostic(
            severity,
            format!(
                "the host's `{}` handler lacks the `F` flag, so its interpreter `{}` is looked up inside the build's root file system, and this kernel ({}) gives no private binfmt_misc",
                r.name, r.interpreter, facts.kernel
            ),
        )),
        Some(r) => c.problem(Cause::BinfmtNotRegistered.diagnostic(
            severity,
            format!(
                "the host's `{}` handler is disabled, and this kernel ({}) gives no private binfmt_misc",
                r.name, facts.kernel
            ),
        )),
        None if facts.live.binfmt.is_none() => c.problem(Cause::BinfmtNotRegistered.diagnostic(
            severity,
            format!(
                "a private binfmt_misc was {}, and the host has no `qemu-{q}` handler, so `{name}` programs may not run",
                not_tried(facts)
            ),
        )),
        None => c.problem(Cause::BinfmtNotRegistered.diagnostic(
            severity,
            format!(
                "`{name}` programs cannot run: this kernel ({}) gives no private binfmt_misc (needs Linux 6.7) and the host has no `qemu-{q}` handler",
                facts.kernel
            ),
        )),
    }
}

fn cgroup(f: &Facts) -> Check {
    let c = Check::new("cgroup", "cgroups");
    match &f.cgroup {
        Cgroup::V1 => c.fact("`/sys/fs/cgroup` is cgroup v1").problem(
            Cause::CgroupV1OrNoDelegation.warning(
                "cgroup v1: resource limits cannot be applied to steps (steps are still isolated by their own PID namespaces)",
            ),
        ),
        Cgroup::V2 {
            path,
            delegated,
            controllers,
        } => {
            let c = c.fact(format!(
                "cgroup v2, this process is in `{path}` (controllers: {})",
                if controllers.is_empty() { "none".to_owned() } else { controllers.join(" ") }
            ));
            if *delegated {
                c.ok(format!("cgroup v2, `{path}` is delegated to `{}`", f.user))
            } else {
                c.problem(Cause::CgroupV1OrNoDelegation.notice(format!(
                    "cgroup v2, but `{path}` is not delegated to `{}`: resource limits cannot be applied to steps",
                    f.user
                )))
            }
        }
        Cgroup::Unknown(why) => c.skipped(why.clone()),
    }
}

fn security(f: &Facts) -> Check {
    let mut c = Check::new("security", "seccomp, AppArmor, SELinux");
    let mut parts = Vec::new();
    match f.seccomp.as_deref() {
        Some("0") | None => parts.push("no seccomp filter".to_owned()),
        Some("2") => parts.push(format!(
            "seccomp filter ({} filters)",
            f.seccomp_filters.as_deref().unwrap_or("?")
        )),
        Some(m) => parts.push(format!("seccomp mode {m}")),
    }
    if let Some(l) = &f.apparmor_label {
        parts.push(format!("AppArmor `{l}`"));
    }
    if let Some(e) = &f.selinux_enforce {
        parts.push(format!(
            "SELinux {}",
            if e == "1" { "enforcing" } else { "permissive" }
        ));
    }
    let summary = parts.join(", ");
    c = c.fact(summary.clone());
    if f.selinux_enforce.as_deref() == Some("1") {
        return c.problem(Cause::HostSelinuxPolicyDenial.notice(
            "SELinux is enforcing: if steps fail with `permission denied` on mounts or relabels, the host policy is the cause",
        ));
    }
    c.ok(summary)
}

fn nofile(f: &Facts) -> Check {
    let c = Check::new("nofile", "open-files limit");
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    match f.nofile {
        None => c.skipped("cannot read `/proc/self/limits`"),
        Some((soft, hard)) => {
            let c = c.fact(format!("soft {}, hard {}", show(soft), show(hard)));
            match hard {
                Some(h) if h < LOW_NOFILE => c.problem(Cause::RlimitNofile.warning(format!(
                    "the open-files hard limit is {h}: package managers and test suites often need more, and rbuild can raise steps' limit only up to it"
                ))),
                _ => c.ok(format!(
                    "RUN steps get the hard limit ({})",
                    show(hard)
                )),
            }
        }
    }
}

fn runtime_dir(f: &Facts) -> Check {
    let c = Check::new("xdg-runtime-dir", "XDG_RUNTIME_DIR");
    let Some(rd) = &f.runtime_dir else {
        return c.ok("unset; rbuild uses a private directory");
    };
    let p = rd.path.display();
    let problem = if !rd.is_dir {
        Some(format!(
            "`XDG_RUNTIME_DIR` is `{p}`, which is not a directory"
        ))
    } else if rd.owner != Some(f.uid) {
        let mut s = format!("`XDG_RUNTIME_DIR` is `{p}`, which belongs to uid ");
        let _ = write!(
            s,
            "{}",
            rd.owner.map_or_else(|| "?".to_owned(), |o| o.to_string())
        );
        let _ = write!(s, ", not `{}` (inherited through a plain `su`?)", f.user);
        Some(s)
    } else if !rd.writable {
        Some(format!(
            "`XDG_RUNTIME_DIR` is `{p}`, which `{}` cannot write",
            f.user
        ))
    } else {
        None
    };
    match problem {
        Some(msg) => c
            .fact(format!("XDG_RUNTIME_DIR={p}"))
            .problem(Cause::XdgRuntimeDirWrong.warning(msg)),
        None => c.ok(format!("`{p}` belongs to `{}`", f.user)),
    }
}

impl Check {
    /// Whether the check found nothing wrong.
    pub fn passed(&self) -> bool {
        matches!(self.status, Status::Ok | Status::Skipped | Status::Notice)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::Platform;
    use super::super::facts::{BinfmtEntry, Helper, RuntimeDir, StateFs};
    use super::super::live::Live;
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // fills an `Option` field
    fn ok(cmd: &str, out: &str) -> Option<Outcome> {
        Some(Outcome {
            ok: true,
            command: cmd.to_owned(),
            output: out.to_owned(),
        })
    }

    #[allow(clippy::unnecessary_wraps)] // fills an `Option` field
    fn failed(cmd: &str, out: &str) -> Option<Outcome> {
        Some(Outcome {
            ok: false,
            command: cmd.to_owned(),
            output: out.to_owned(),
        })
    }

    #[allow(clippy::unnecessary_wraps)] // fills an `Option` field
    fn helper(name: &str) -> Option<Helper> {
        Some(Helper {
            path: PathBuf::from(format!("/usr/bin/{name}")),
            owner: 0,
            mode: 0o104_755,
            file_caps: false,
            nosuid_mount: false,
        })
    }

    /// The facts of a host where everything works.
    fn healthy() -> Facts {
        Facts {
            user: "alice".to_owned(),
            uid: 1000,
            kernel: "6.8.0".to_owned(),
            host_arch: "amd64".to_owned(),
            unprivileged_userns_clone: None,
            max_user_namespaces: Some("63359".to_owned()),
            apparmor_restrict: None,
            apparmor_label: None,
            selinux_enforce: None,
            seccomp: Some("0".to_owned()),
            seccomp_filters: Some("0".to_owned()),
            subuid: Some("alice:100000:65536\nbob:165536:65536\n".to_owned()),
            subgid: Some("alice:100000:65536\nbob:165536:65536\n".to_owned()),
            newuidmap: helper("newuidmap"),
            newgidmap: helper("newgidmap"),
            proc_masks: Vec::new(),
            cgroup: Cgroup::V2 {
                path: "/user.slice/user-1000.slice/user@1000.service/app.slice".to_owned(),
                delegated: true,
                controllers: vec!["cpu".to_owned(), "memory".to_owned(), "pids".to_owned()],
            },
            state: Ok(StateFs {
                path: PathBuf::from("/home/alice/.cache/rbuild"),
                measured: PathBuf::from("/home/alice/.cache/rbuild"),
                fs_magic: 0xEF53,
                fs_name: "ext2/3/4",
                free_bytes: 50 << 30,
                total_bytes: 100 << 30,
                free_inodes: 1_000_000,
                total_inodes: 2_000_000,
                nosuid: false,
                nodev: false,
                writable: true,
            }),
            nofile: Some((Some(1024), Some(524_288))),
            runtime_dir: Some(RuntimeDir {
                path: PathBuf::from("/run/user/1000"),
                is_dir: true,
                owner: Some(1000),
                writable: true,
            }),
            unshare: Some(PathBuf::from("/usr/bin/unshare")),
            live: Live {
                userns: ok("unshare --user --map-root-user true", ""),
                mapped: ok(
                    "unshare --map-auto",
                    "0 1000 1\n1 100000 65535\n0 1000 1\n1 100000 65535",
                ),
                proc: ok("unshare --pid", ""),
                overlay: ok("unshare overlay", "mounted"),
                binfmt: ok("unshare binfmt", "ran"),
            },
            platforms: vec![
                PlatformFacts {
                    platform: Platform::parse("linux/amd64").unwrap(),
                    requested: true,
                    native: true,
                    interpreter: None,
                    interpreter_version: None,
                    host_registration: None,
                },
                PlatformFacts {
                    platform: Platform::parse("linux/arm64").unwrap(),
                    requested: true,
                    native: false,
                    interpreter: Some(PathBuf::from("/usr/bin/qemu-aarch64-static")),
                    interpreter_version: Some("qemu-aarch64 version 7.2.19".to_owned()),
                    host_registration: None,
                },
            ],
            scratch_error: None,
            exe: Some(PathBuf::from("/opt/rbuild/bin/rbuild")),
        }
    }

    fn check<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks.iter().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn a_healthy_host_passes_every_check() {
        let checks = evaluate(&healthy());
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed() || c.status != Status::Ok)
            .map(|c| format!("{}: {:?} {}", c.id, c.status, c.summary))
            .collect();
        assert!(failing.is_empty(), "{failing:?}");
        assert_eq!(
            check(&checks, "id-helpers").summary,
            "map 65536 uids and 65536 gids into a user namespace"
        );
        assert_eq!(
            check(&checks, "binfmt:linux/amd64").summary,
            "native on this host"
        );
        assert!(
            check(&checks, "binfmt:linux/arm64")
                .summary
                .contains("private binfmt_misc")
        );
    }

    #[test]
    fn a_user_without_a_range_gets_the_usermod_command_with_a_free_range() {
        let mut f = healthy();
        f.user = "carol".to_owned();
        f.uid = 1002;
        f.live.mapped = None;
        let checks = evaluate(&f);
        let c = check(&checks, "subids");
        assert_eq!(c.status, Status::Error);
        assert_eq!(c.cause, Some("subid-range-too-small"));
        let d = c.diagnostic.as_ref().unwrap();
        assert_eq!(
            d.message,
            "`carol` has no subordinate uids in `/etc/subuid` and no subordinate gids in `/etc/subgid`; a container needs 65536 ids mapped (0-65535), so files owned by other ids cannot be created"
        );
        assert_eq!(
            d.hint.as_deref(),
            Some(
                "as root: `usermod --add-subuids 231072-296607 --add-subgids 231072-296607 carol` (a range no other user has), then run `rbuild doctor` again"
            )
        );
        assert!(d.evidence.iter().any(|e| e.contains("no line for `carol`")));
        // The helpers themselves are fine; nothing was mapped.
        assert_eq!(check(&checks, "id-helpers").status, Status::Ok);
    }

    #[test]
    fn a_small_range_is_named_with_its_size() {
        let mut f = healthy();
        f.subgid = Some("alice:100000:1000\n".to_owned());
        let d = check(&evaluate(&f), "subids").diagnostic.clone().unwrap();
        assert!(
            d.message
                .contains("only 1000 subordinate gids in `/etc/subgid`"),
            "{}",
            d.message
        );
    }

    #[test]
    fn sysctls_and_apparmor_decide_before_the_live_probe() {
        let mut f = healthy();
        f.max_user_namespaces = Some("0".to_owned());
        f.live.userns = failed(
            "unshare --user",
            "unshare: unshare failed: No space left on device",
        );
        let c = evaluate(&f).remove(0);
        assert_eq!(c.cause, Some("userns-disabled-sysctl"));

        let mut f = healthy();
        f.unprivileged_userns_clone = Some("0".to_owned());
        assert_eq!(evaluate(&f)[0].cause, Some("userns-disabled-sysctl"));
        f.uid = 0;
        assert_eq!(evaluate(&f)[0].status, Status::Ok);

        let mut f = healthy();
        f.apparmor_restrict = Some("1".to_owned());
        f.apparmor_label = Some("unconfined".to_owned());
        let c = evaluate(&f).remove(0);
        assert_eq!(c.cause, Some("apparmor-restrict-unprivileged-userns"));
        let hint = c.diagnostic.unwrap().hint.unwrap();
        assert!(
            hint.contains("/opt/rbuild/bin/rbuild flags=(unconfined)"),
            "{hint}"
        );
        f.apparmor_label = Some("rbuild (unconfined)".to_owned());
        assert_eq!(evaluate(&f)[0].status, Status::Ok);
    }

    #[test]
    fn a_failing_live_probe_is_classified_from_its_output() {
        let mut f = healthy();
        f.seccomp = Some("2".to_owned());
        f.live.userns = failed(
            "unshare --user",
            "unshare: unshare failed: Operation not permitted",
        );
        let c = evaluate(&f).remove(0);
        assert_eq!(c.cause, Some("userns-disabled-sysctl"));
        f.live.userns = failed("unshare --user", "unshare: cannot do something odd");
        let c = evaluate(&f).remove(0);
        assert_eq!(c.cause, Some("pod-security-blocks-userns"));
        assert!(c.summary.contains("seccomp filter"), "{}", c.summary);
    }

    #[test]
    fn helper_binaries_without_privileges_or_single_mappings_fail() {
        let mut f = healthy();
        if let Some(h) = f.newuidmap.as_mut() {
            h.mode = 0o100_755;
        }
        let c = check(&evaluate(&f), "id-helpers").clone();
        assert_eq!(c.cause, Some("newuidmap-missing-or-broken"));
        assert!(c.summary.contains("neither the setuid bit"));
        if let Some(h) = f.newuidmap.as_mut() {
            h.file_caps = true;
        }
        assert_eq!(check(&evaluate(&f), "id-helpers").status, Status::Ok);

        let mut f = healthy();
        f.newgidmap = None;
        assert!(
            check(&evaluate(&f), "id-helpers")
                .summary
                .contains("`newgidmap` is not installed")
        );

        let mut f = healthy();
        f.live.mapped = ok("unshare --map-auto", "0 1000 1\n0 1000 1");
        assert_eq!(check(&evaluate(&f), "id-helpers").status, Status::Error);
        f.live.mapped = failed(
            "unshare --map-auto",
            "unshare: unrecognized option '--map-auto'",
        );
        assert_eq!(check(&evaluate(&f), "id-helpers").status, Status::Ok);
        f.live.mapped = failed(
            "unshare --map-auto",
            "newuidmap: write to uid_map failed: Operation not permitted",
        );
        assert!(
            check(&evaluate(&f), "id-helpers")
                .summary
                .contains("write to uid_map failed")
        );
    }

    #[test]
    fn proc_overlay_and_state_directory_problems() {
        let mut f = healthy();
        f.proc_masks = vec!["/proc/kcore (tmpfs, ro)".to_owned()];
        f.live.proc = failed(
            "unshare --mount-proc",
            "unshare: mount /proc failed: Operation not permitted",
        );
        let c = check(&evaluate(&f), "proc").clone();
        assert_eq!(c.cause, Some("proc-mount-masked"));
        assert!(c.diagnostic.unwrap().evidence[0].contains("/proc/kcore"));

        let mut f = healthy();
        f.live.overlay = failed("unshare overlay", "mount: wrong fs type");
        assert_eq!(
            check(&evaluate(&f), "overlay").cause,
            Some("overlay-unavailable-slow-fallback")
        );
        if let Ok(s) = f.state.as_mut() {
            s.fs_magic = OVERLAYFS_MAGIC;
        }
        assert_eq!(
            check(&evaluate(&f), "overlay").cause,
            Some("state-dir-on-overlay-or-nosuid")
        );

        let mut f = healthy();
        if let Ok(s) = f.state.as_mut() {
            s.free_bytes = 100 << 20;
        }
        let c = check(&evaluate(&f), "state-dir").clone();
        assert_eq!(
            (c.status, c.cause),
            (Status::Error, Some("disk-full-or-inodes"))
        );
        if let Ok(s) = f.state.as_mut() {
            s.free_bytes = 2 << 30;
        }
        assert_eq!(check(&evaluate(&f), "state-dir").status, Status::Warning);
        if let Ok(s) = f.state.as_mut() {
            s.free_bytes = 50 << 30;
            s.free_inodes = 5;
        }
        assert_eq!(check(&evaluate(&f), "state-dir").status, Status::Error);
        if let Ok(s) = f.state.as_mut() {
            s.free_inodes = 0;
            s.total_inodes = 0; // btrfs: no inode limit
            s.nosuid = true;
        }
        let c = check(&evaluate(&f), "state-dir").clone();
        assert_eq!(
            (c.status, c.cause),
            (Status::Warning, Some("state-dir-on-overlay-or-nosuid"))
        );
        if let Ok(s) = f.state.as_mut() {
            s.path = PathBuf::from("/nonexistent/.cache/rbuild");
            s.measured = PathBuf::from("/");
            s.writable = false;
        }
        let c = check(&evaluate(&f), "state-dir").clone();
        assert_eq!(
            (c.status, c.cause),
            (Status::Error, Some("state-dir-not-writable"))
        );
        assert_eq!(
            c.summary,
            "`alice` cannot create the state directory `/nonexistent/.cache/rbuild`: `/` is not writable"
        );
    }

    #[test]
    fn foreign_platforms_need_an_interpreter_and_a_handler() {
        let mut f = healthy();
        f.platforms[1].interpreter = None;
        let c = check(&evaluate(&f), "binfmt:linux/arm64").clone();
        assert_eq!(
            (c.status, c.cause),
            (Status::Error, Some("binfmt-not-registered"))
        );
        assert_eq!(
            c.diagnostic.unwrap().hint.as_deref(),
            Some("as root: `apt-get install qemu-user-static`")
        );
        f.platforms[1].requested = false;
        assert_eq!(
            check(&evaluate(&f), "binfmt:linux/arm64").status,
            Status::Warning
        );

        let mut f = healthy();
        f.kernel = "6.1.0".to_owned();
        f.live.binfmt = failed("unshare binfmt", "mount: binfmt_misc: permission denied");
        let c = check(&evaluate(&f), "binfmt:linux/arm64").clone();
        assert_eq!(c.status, Status::Error);
        assert!(c.summary.contains("needs Linux 6.7"), "{}", c.summary);
        let mut untried = f.clone();
        untried.live.binfmt = None;
        untried.scratch_error =
            Some("cannot create a scratch directory in `/`: Permission denied".to_owned());
        let c = check(&evaluate(&untried), "binfmt:linux/arm64").clone();
        assert!(
            c.summary
                .contains("was not tried: cannot create a scratch directory in `/`"),
            "{}",
            c.summary
        );
        f.platforms[1].host_registration = Some(BinfmtEntry {
            name: "qemu-aarch64".to_owned(),
            enabled: true,
            interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".to_owned(),
            flags: "POCF".to_owned(),
        });
        assert_eq!(
            check(&evaluate(&f), "binfmt:linux/arm64").status,
            Status::Ok
        );
        if let Some(r) = f.platforms[1].host_registration.as_mut() {
            r.flags = "P".to_owned();
        }
        assert!(
            check(&evaluate(&f), "binfmt:linux/arm64")
                .summary
                .contains("lacks the `F` flag")
        );
    }

    #[test]
    fn degradations_are_warnings_or_notices() {
        let mut f = healthy();
        f.cgroup = Cgroup::V1;
        f.nofile = Some((Some(1024), Some(1024)));
        f.selinux_enforce = Some("1".to_owned());
        f.runtime_dir = Some(RuntimeDir {
            path: PathBuf::from("/run/user/0"),
            is_dir: true,
            owner: Some(0),
            writable: false,
        });
        let checks = evaluate(&f);
        let by = |id| {
            let c = check(&checks, id);
            (c.status, c.cause)
        };
        assert_eq!(
            by("cgroup"),
            (Status::Warning, Some("cgroup-v1-or-no-delegation"))
        );
        assert_eq!(by("nofile"), (Status::Warning, Some("rlimit-nofile")));
        assert_eq!(
            by("security"),
            (Status::Notice, Some("host-selinux-policy-denial"))
        );
        assert_eq!(
            by("xdg-runtime-dir"),
            (Status::Warning, Some("xdg-runtime-dir-wrong"))
        );
        assert!(checks.iter().all(|c| c.status != Status::Error));
        assert!(
            check(&checks, "xdg-runtime-dir")
                .summary
                .contains("belongs to uid 0")
        );
    }

    #[test]
    fn sizes_read_like_df() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(50 << 30), "50.0 GiB");
    }
}

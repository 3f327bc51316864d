//! Resolving `USER` (`name`, `uid`, `name:group`, `uid:gid`) against the image's own
//! `/etc/passwd` and `/etc/group`, the way Docker and runc do:
//!
//! - a name must exist in `/etc/passwd`; a number need not (its group is then 0);
//! - the primary group comes from the passwd entry unless a group is given;
//! - supplementary groups are the `/etc/group` entries that list the user's name;
//! - `HOME` comes from the passwd entry, else `/`.
//!
//! Pure functions: the sandbox's init reads the files inside the new root and calls them.

use serde::{Deserialize, Serialize};

/// A user the command runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// A `USER` value that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user `{0}` is not in the image's `/etc/passwd`")]
    NoSuchUser(String),
    #[error("group `{0}` is not in the image's `/etc/group`")]
    NoSuchGroup(String),
    #[error("`{0}` is not a valid user (expected `name`, `uid`, `name:group` or `uid:gid`)")]
    Malformed(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].trim().parse().ok()?,
            gid: f[3].trim().parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].trim().parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Resolves `spec` against the image's passwd and group files (either may be missing).
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let spec = spec.trim();
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if grp.is_some_and(str::is_empty) || (user.is_empty() && grp.is_some()) {
        return Err(UserError::Malformed(spec.to_owned()));
    }
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let user = if user.is_empty() { "0" } else { user };

    let entry = if is_number(user) {
        let uid: u32 = user
            .parse()
            .map_err(|_| UserError::Malformed(spec.to_owned()))?;
        passwd_entries(passwd).find(|e| e.uid == uid)
    } else {
        Some(
            passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::NoSuchUser(user.to_owned()))?,
        )
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user
            .parse()
            .map_err(|_| UserError::Malformed(spec.to_owned()))?,
    };
    let mut gid = entry.as_ref().map_or(0, |e| e.gid);
    if let Some(g) = grp {
        gid = if is_number(g) {
            g.parse()
                .map_err(|_| UserError::Malformed(spec.to_owned()))?
        } else {
            group_entries(group)
                .find(|e| e.name == g)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_owned()))?
                .gid
        };
    }
    let mut groups: Vec<u32> = match &entry {
        Some(e) => group_entries(group)
            .filter(|g| g.members.contains(&e.name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    groups.sort_unstable();
    groups.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        groups,
        home: entry
            .map(|e| e.home)
            .filter(|h| !h.is_empty())
            .unwrap_or("/")
            .to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str =
        "root:x:0:\ntty:x:5:app\nstaff:x:50:app,daemon\napp:x:1000:\nnogroup:x:65534:\n";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn empty_is_root_with_roots_home() {
        assert_eq!(
            r("").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
    }

    #[test]
    fn names_resolve_with_primary_and_supplementary_groups() {
        assert_eq!(
            r("app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                groups: vec![5, 50],
                home: "/home/app".into()
            }
        );
        let nobody = r("nobody").unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
    }

    #[test]
    fn groups_by_name_or_number_override_the_primary_group() {
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 50, vec![5]));
        let u = r("1000:7").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 7));
    }

    #[test]
    fn unknown_numbers_are_fine_unknown_names_are_not() {
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = resolve("1000:1000", None, None).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(r("ghost"), Err(UserError::NoSuchUser("ghost".into())));
        assert_eq!(
            r("app:ghosts"),
            Err(UserError::NoSuchGroup("ghosts".into()))
        );
        assert!(matches!(r("app:"), Err(UserError::Malformed(_))));
        assert!(matches!(r(":5"), Err(UserError::Malformed(_))));
    }
}

//! Diagnostics -> GitLab Code Quality: the findings rbuild invocations of a job wrote under
//! `$RBUILD_DIAGNOSTICS_DIR` (JSON arrays of rbuild's `Diagnostic` records, see
//! `DESIGN.md`), turned into Code Quality report entries so they show in the merge request.
//!
//! Paths become repository-relative (a path under the project directory loses that
//! prefix); a diagnostic without a file is attached to `.gitlab-ci.yml`, line 1, because
//! GitLab requires a location. The fingerprint leaves out the line, so a finding stays
//! the same finding when lines move.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// rbuild's diagnostic record (the fields this module reads; the contract has more).
#[derive(Debug, Clone, Deserialize)]
pub struct Diagnostic {
    pub id: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub hint: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub platform: Option<String>,
}

/// One Code Quality entry (the fields GitLab requires).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Finding {
    pub description: String,
    pub check_name: String,
    pub fingerprint: String,
    pub severity: String,
    pub location: Location,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Location {
    pub path: String,
    pub lines: Lines,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lines {
    pub begin: u32,
}

/// The finding for one diagnostic; `project_dir` is the project directory as the job saw it.
pub fn finding(d: &Diagnostic, project_dir: &Path) -> Finding {
    let path = d.file.as_deref().map_or_else(
        || ".gitlab-ci.yml".to_owned(),
        |f| {
            let p = Path::new(f);
            p.strip_prefix(project_dir).map_or_else(
                |_| f.trim_start_matches("./").to_owned(),
                |r| r.to_string_lossy().into_owned(),
            )
        },
    );
    let line = if d.file.is_some() {
        d.line.unwrap_or(1).max(1)
    } else {
        1
    };
    let platform = d.platform.as_deref().unwrap_or("");
    let mut description = String::new();
    if !platform.is_empty() {
        let _ = write!(description, "[{platform}] ");
    }
    description.push_str(if d.title.is_empty() { &d.id } else { &d.title });
    if !d.message.is_empty() {
        description.push_str(": ");
        description.push_str(&d.message);
    }
    if let Some(h) = d.hint.as_deref().filter(|h| !h.is_empty()) {
        let _ = write!(description, " (fix: {h})");
    }
    let mut h = Sha256::new();
    for part in [d.id.as_str(), path.as_str(), platform, d.title.as_str()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let fingerprint = crate::forge::gitlab::hex(&h.finalize()[..16]);
    let severity = match d.severity.as_str() {
        "error" => "major",
        "warning" => "minor",
        _ => "info",
    };
    Finding {
        description,
        check_name: format!("rbuild/{}", d.id),
        fingerprint,
        severity: severity.to_owned(),
        location: Location {
            path,
            lines: Lines { begin: line },
        },
    }
}

/// Every finding in the diagnostics files under `dir` (`*.json`, recursively), without
/// duplicates. Files that are not diagnostics are reported in `problems`.
pub fn collect(dir: &Path, project_dir: &Path, problems: &mut Vec<String>) -> Vec<Finding> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut out: Vec<Finding> = Vec::new();
    for f in files {
        let text = match fs_err::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let diags: Vec<Diagnostic> = match serde_json::from_str::<Vec<Diagnostic>>(&text) {
            Ok(v) => v,
            Err(_) => match serde_json::from_str::<Diagnostic>(&text) {
                Ok(d) => vec![d],
                Err(e) => {
                    problems.push(format!(
                        "`{}` is not an rbuild diagnostics file: {e}",
                        f.display()
                    ));
                    continue;
                }
            },
        };
        for d in &diags {
            let f = finding(d, project_dir);
            if !out.iter().any(|o| o.fingerprint == f.fingerprint) {
                out.push(f);
            }
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() && p.extension().is_some_and(|x| x == "json") => out.push(p),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_become_code_quality_entries() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("nested")).unwrap();
        std::fs::write(
            d.path().join("nested/build-1.json"),
            r#"[{"id":"xattr-security-selinux-in-layer","severity":"error","title":"SELinux label in a base layer",
                "message":"`security.selinux` cannot be set","hint":"rebuild the base without labels",
                "file":"/builds/g/p/app/Dockerfile","line":7,"platform":"linux/arm64"},
               {"id":"apt-no-recommends","severity":"notice","title":"t","message":"m","file":"Dockerfile","line":3}]"#,
        )
        .unwrap();
        std::fs::write(d.path().join("env.json"), r#"{"id":"userns-disabled","severity":"error","title":"no user namespaces","message":"m"}"#).unwrap();
        std::fs::write(d.path().join("bad.json"), "not json").unwrap();
        // The same file again: duplicates collapse.
        std::fs::copy(
            d.path().join("nested/build-1.json"),
            d.path().join("nested/build-2.json"),
        )
        .unwrap();
        let mut problems = Vec::new();
        let f = collect(d.path(), Path::new("/builds/g/p"), &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(f.len(), 3, "{f:#?}");
        let selinux = f
            .iter()
            .find(|x| x.check_name == "rbuild/xattr-security-selinux-in-layer")
            .unwrap();
        assert_eq!(selinux.location.path, "app/Dockerfile");
        assert_eq!(selinux.location.lines.begin, 7);
        assert_eq!(selinux.severity, "major");
        assert_eq!(selinux.fingerprint.len(), 32);
        assert!(
            selinux
                .description
                .starts_with("[linux/arm64] SELinux label in a base layer: ")
        );
        assert!(
            selinux
                .description
                .ends_with("(fix: rebuild the base without labels)")
        );
        let env = f
            .iter()
            .find(|x| x.check_name == "rbuild/userns-disabled")
            .unwrap();
        assert_eq!(env.location.path, ".gitlab-ci.yml");
        assert_eq!(
            f.iter()
                .find(|x| x.check_name == "rbuild/apt-no-recommends")
                .unwrap()
                .severity,
            "info"
        );
    }

    #[test]
    fn fingerprint_ignores_the_line() {
        let mk = |line| Diagnostic {
            id: "x".into(),
            severity: "warning".into(),
            title: "t".into(),
            message: "m".into(),
            hint: None,
            file: Some("Dockerfile".into()),
            line: Some(line),
            platform: None,
        };
        assert_eq!(
            finding(&mk(3), Path::new("/p")).fingerprint,
            finding(&mk(9), Path::new("/p")).fingerprint
        );
    }
}

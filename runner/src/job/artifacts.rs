//! Job artifacts: collecting `artifacts:paths` (globs, `exclude`, `untracked`) into a zip,
//! each `artifacts:reports:<type>` into a gzip (one gzip member per file), raw files as
//! they are, and uploading them with their `artifact_type`, `artifact_format` and
//! `expire_in`. Paths never leave the project directory.
//!
//! The Code Quality findings from the job's diagnostics are merged into the job's own
//! `codequality` report when it declares one, and uploaded as one otherwise (GitLab takes
//! one artifact per type and job).

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::codequality::Finding;
use crate::forge::gitlab::types::Artifact;

/// What to upload: one file, named and typed.
#[derive(Debug, Clone)]
pub struct Upload {
    pub file: PathBuf,
    pub filename: String,
    pub artifact_type: String,
    pub artifact_format: String,
    pub expire_in: String,
    /// How many project files went in.
    pub files: usize,
}

/// Whether an entry's `when` applies to a job that succeeded or failed.
pub fn applies(when: &str, succeeded: bool) -> bool {
    match when {
        "always" => true,
        "on_failure" => !succeeded,
        _ => succeeded,
    }
}

/// Files of the project that an entry selects, as paths relative to `project`.
pub fn select(project: &Path, entry: &Artifact, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let base = glob::Pattern::escape(&project.to_string_lossy());
    for pattern in &entry.paths {
        let rel = pattern.trim_start_matches("./");
        if Path::new(rel).is_absolute()
            || Path::new(rel)
                .components()
                .any(|c| c == Component::ParentDir)
        {
            warnings.push(format!(
                "{pattern}: artifact paths must stay inside the project directory; skipped"
            ));
            continue;
        }
        let full = format!("{base}/{rel}");
        let mut found = 0;
        if let Ok(paths) = glob::glob(&full) {
            for p in paths.flatten() {
                if let Ok(r) = p.strip_prefix(project) {
                    found += add_tree(project, r, &mut out);
                }
            }
        }
        if found == 0 {
            warnings.push(format!("{pattern}: no matching files"));
        }
    }
    if entry.untracked {
        match std::process::Command::new("git")
            .args(["ls-files", "-o", "-z"])
            .current_dir(project)
            .output()
        {
            Ok(o) if o.status.success() => {
                for f in o.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
                    let r = PathBuf::from(String::from_utf8_lossy(f).into_owned());
                    add_tree(project, &r, &mut out);
                }
            }
            _ => warnings
                .push("untracked: cannot list untracked files with `git ls-files`".to_owned()),
        }
    }
    let excludes: Vec<glob::Pattern> = entry
        .exclude
        .iter()
        .filter_map(|e| glob::Pattern::new(e.trim_start_matches("./")).ok())
        .collect();
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..glob::MatchOptions::new()
    };
    out.retain(|p| {
        !excludes.iter().any(|e| {
            p.ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| e.matches_path_with(a, opts))
        })
    });
    out.sort();
    out.dedup();
    out
}

/// Adds `rel` (and everything under it, if a directory that is not a symlink); returns how
/// many entries were added.
fn add_tree(project: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> usize {
    let full = project.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&full) else {
        return 0;
    };
    if rel.as_os_str().is_empty() || rel.components().any(|c| c == Component::ParentDir) {
        return 0;
    }
    out.push(rel.to_owned());
    let mut n = 1;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(&full)
    {
        for e in entries.flatten() {
            n += add_tree(project, &rel.join(e.file_name()), out);
        }
    }
    n
}

/// Writes a zip of `files` (relative to `project`) to `dest`. Symlinks are stored as links.
pub fn write_zip(project: &Path, files: &[PathBuf], dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let f = fs_err::File::create(dest)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(f));
    for rel in files {
        let full = project.join(rel);
        let meta = std::fs::symlink_metadata(&full)?;
        let name = rel.to_string_lossy();
        let mode = meta.permissions().mode() & 0o7777;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full)?;
            zip.add_symlink(name.as_ref(), target.to_string_lossy().as_ref(), opts)
                .map_err(std::io::Error::other)?;
        } else if meta.is_dir() {
            zip.add_directory(format!("{name}/"), opts)
                .map_err(std::io::Error::other)?;
        } else if meta.is_file() {
            zip.start_file(name.as_ref(), opts)
                .map_err(std::io::Error::other)?;
            let mut src = fs_err::File::open(&full)?;
            std::io::copy(&mut src, &mut zip)?;
        }
    }
    let mut w = zip.finish().map_err(std::io::Error::other)?;
    w.flush()
}

/// Writes each of `parts` as one gzip member of `dest`.
pub fn write_gzip(parts: &[Vec<u8>], dest: &Path) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(fs_err::File::create(dest)?);
    for part in parts {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(part)?;
        f.write_all(&gz.finish()?)?;
    }
    f.flush()
}

/// Builds the uploads of a job that `succeeded` (or not) into `work` (a private temp dir).
/// `findings` are merged into the `codequality` report. Problems that do not stop the
/// other uploads are returned as warnings.
pub fn prepare(
    project: &Path,
    work: &Path,
    entries: &[Artifact],
    succeeded: bool,
    findings: &[Finding],
    warnings: &mut Vec<String>,
) -> std::io::Result<Vec<Upload>> {
    let mut uploads = Vec::new();
    let mut codequality_done = false;
    for (i, entry) in entries.iter().enumerate() {
        let is_cq = entry.artifact_type == "codequality";
        if !applies(&entry.when, succeeded) && (!is_cq || findings.is_empty()) {
            continue;
        }
        let files = select(project, entry, warnings);
        let regular: Vec<&PathBuf> = files.iter().filter(|f| project.join(f).is_file()).collect();
        let format = if entry.artifact_format.is_empty() {
            "zip"
        } else {
            entry.artifact_format.as_str()
        };
        let kind = if entry.artifact_type.is_empty() {
            "archive"
        } else {
            entry.artifact_type.as_str()
        };
        match format {
            "zip" => {
                if files.is_empty() {
                    continue;
                }
                let name = if entry.name.is_empty() {
                    "artifacts"
                } else {
                    entry.name.as_str()
                };
                let dest = work.join(format!("upload-{i}.zip"));
                write_zip(project, &files, &dest)?;
                uploads.push(Upload {
                    file: dest,
                    filename: format!("{name}.zip"),
                    artifact_type: kind.to_owned(),
                    artifact_format: "zip".to_owned(),
                    expire_in: entry.expire_in.clone(),
                    files: files.len(),
                });
            }
            "gzip" => {
                let mut parts: Vec<Vec<u8>> = Vec::new();
                for f in &regular {
                    parts.push(fs_err::read(project.join(f))?);
                }
                if is_cq && !findings.is_empty() {
                    parts = vec![merge_codequality(&parts, findings, warnings)];
                    codequality_done = true;
                }
                if parts.is_empty() {
                    continue;
                }
                let name = if entry.name.is_empty() {
                    regular.first().and_then(|f| f.file_name()).map_or_else(
                        || format!("{kind}.json"),
                        |n| n.to_string_lossy().into_owned(),
                    )
                } else {
                    entry.name.clone()
                };
                let dest = work.join(format!("upload-{i}.gz"));
                write_gzip(&parts, &dest)?;
                uploads.push(Upload {
                    file: dest,
                    filename: format!("{name}.gz"),
                    artifact_type: kind.to_owned(),
                    artifact_format: "gzip".to_owned(),
                    expire_in: entry.expire_in.clone(),
                    files: regular.len(),
                });
            }
            "raw" => {
                let [one] = regular.as_slice() else {
                    if regular.len() > 1 {
                        warnings.push(format!(
                            "{kind}: a raw artifact is one file, but {} matched; not uploaded",
                            regular.len()
                        ));
                    }
                    continue;
                };
                let name = if entry.name.is_empty() {
                    one.file_name()
                        .map_or_else(|| kind.to_owned(), |n| n.to_string_lossy().into_owned())
                } else {
                    entry.name.clone()
                };
                uploads.push(Upload {
                    file: project.join(one),
                    filename: name,
                    artifact_type: kind.to_owned(),
                    artifact_format: "raw".to_owned(),
                    expire_in: entry.expire_in.clone(),
                    files: 1,
                });
            }
            other => warnings.push(format!(
                "{kind}: artifact format `{other}` is not supported; not uploaded"
            )),
        }
    }
    if !findings.is_empty() && !codequality_done {
        let dest = work.join("upload-codequality.gz");
        write_gzip(&[merge_codequality(&[], findings, warnings)], &dest)?;
        let expire_in = entries
            .iter()
            .find(|e| !e.expire_in.is_empty())
            .map(|e| e.expire_in.clone())
            .unwrap_or_default();
        uploads.push(Upload {
            file: dest,
            filename: "gl-code-quality-report.json.gz".to_owned(),
            artifact_type: "codequality".to_owned(),
            artifact_format: "gzip".to_owned(),
            expire_in,
            files: 0,
        });
    }
    Ok(uploads)
}

/// Extracts a dependency's artifacts archive into `dest` (the project directory). Entry
/// names that would leave `dest` (absolute, `..`) and entries under a symlink are skipped
/// and named in `warnings`; existing files are replaced, never written through. Returns
/// how many files and links were written.
pub fn extract_zip(
    archive: &Path,
    dest: &Path,
    warnings: &mut Vec<String>,
) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let f = fs_err::File::open(archive)?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(std::io::Error::other)?;
    let mut written = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(std::io::Error::other)?;
        let Some(rel) = entry.enclosed_name() else {
            let name = entry
                .name()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            warnings.push(format!(
                "`{name}` would leave the project directory; skipped"
            ));
            continue;
        };
        // Never write through a symlink: every existing ancestor must be a real directory.
        let mut cur = dest.to_owned();
        let mut blocked = false;
        let parents: Vec<_> = rel
            .parent()
            .map(|p| p.components().collect())
            .unwrap_or_default();
        for c in parents {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                    blocked = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => fs_err::create_dir(&cur)?,
            }
        }
        if blocked {
            warnings.push(format!(
                "`{}` is under a symlink or a file; skipped",
                rel.display()
            ));
            continue;
        }
        let target = dest.join(&rel);
        if entry.is_dir() {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
                Ok(_) => {
                    fs_err::remove_file(&target)?;
                    fs_err::create_dir(&target)?;
                }
                Err(_) => fs_err::create_dir(&target)?,
            }
            continue;
        }
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => fs_err::remove_dir_all(&target)?,
            Ok(_) => fs_err::remove_file(&target)?,
            Err(_) => {}
        }
        if entry.is_symlink() {
            let mut link = String::new();
            std::io::Read::read_to_string(&mut entry, &mut link)?;
            std::os::unix::fs::symlink(&link, &target)?;
        } else {
            let mut out = fs_err::File::create(&target)?;
            std::io::copy(&mut entry, &mut out)?;
            if let Some(mode) = entry.unix_mode() {
                fs_err::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777))?;
            }
        }
        written += 1;
    }
    Ok(written)
}

/// One Code Quality JSON array: the job's own report entries, then ours.
fn merge_codequality(
    parts: &[Vec<u8>],
    findings: &[Finding],
    warnings: &mut Vec<String>,
) -> Vec<u8> {
    let mut all: Vec<serde_json::Value> = Vec::new();
    for p in parts {
        match serde_json::from_slice::<Vec<serde_json::Value>>(p) {
            Ok(v) => all.extend(v),
            Err(e) => warnings.push(format!("codequality: the job's report is not a JSON array ({e}); only rbuild's findings are uploaded")),
        }
    }
    all.extend(
        findings
            .iter()
            .map(|f| serde_json::to_value(f).expect("findings are plain data")),
    );
    serde_json::to_vec(&all).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn entry(paths: &[&str], exclude: &[&str]) -> Artifact {
        Artifact {
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            artifact_type: "archive".into(),
            artifact_format: "zip".into(),
            ..Artifact::default()
        }
    }

    fn project() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in ["out/a.bin", "out/sub/b.log", "out/sub/c.bin", "top.txt"] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("out/link")).unwrap();
        d
    }

    #[test]
    fn paths_globs_and_excludes() {
        let d = project();
        let mut w = Vec::new();
        let got = select(
            d.path(),
            &entry(&["out/", "*.txt", "missing/*", "../etc"], &["out/**/*.log"]),
            &mut w,
        );
        let got: Vec<String> = got
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "out",
                "out/a.bin",
                "out/link",
                "out/sub",
                "out/sub/c.bin",
                "top.txt"
            ]
        );
        assert!(
            w.iter()
                .any(|x| x.starts_with("missing/*: no matching files")),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|x| x.starts_with("../etc: artifact paths must stay")),
            "{w:?}"
        );
    }

    #[test]
    fn zip_holds_files_with_links_as_links() {
        let d = project();
        let out = tempfile::tempdir().unwrap();
        let mut w = Vec::new();
        let ups = prepare(
            d.path(),
            out.path(),
            &[entry(&["out"], &[])],
            true,
            &[],
            &mut w,
        )
        .unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].filename, "artifacts.zip");
        let mut z = zip::ZipArchive::new(std::fs::File::open(&ups[0].file).unwrap()).unwrap();
        let mut s = String::new();
        z.by_name("out/sub/c.bin")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "out/sub/c.bin");
        assert!(z.by_name("out/link").unwrap().is_symlink());
    }

    #[test]
    fn extraction_stays_inside_and_never_writes_through_links() {
        let src = project();
        let out = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        let ups = prepare(
            src.path(),
            out.path(),
            &[entry(&["out", "top.txt"], &[])],
            true,
            &[],
            &mut warnings,
        )
        .unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::write(dest.path().join("top.txt"), "old").unwrap();
        let count = extract_zip(&ups[0].file, dest.path(), &mut warnings).unwrap();
        assert_eq!(count, 5, "{warnings:?}");
        assert_eq!(
            std::fs::read_to_string(dest.path().join("top.txt")).unwrap(),
            "top.txt"
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("out/sub/c.bin")).unwrap(),
            "out/sub/c.bin"
        );
        assert_eq!(
            std::fs::read_link(dest.path().join("out/link")).unwrap(),
            Path::new("/etc/passwd")
        );

        // A hostile archive: `../escape`, and a file under a link that points outside.
        let evil = out.path().join("evil.zip");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        writer.add_symlink("dir", "/tmp", opts).unwrap();
        writer.start_file("dir/owned", opts).unwrap();
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        writer.start_file("../escape", opts).unwrap();
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        writer.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let mut warnings = Vec::new();
        assert_eq!(extract_zip(&evil, dest.path(), &mut warnings).unwrap(), 1);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            !Path::new("/tmp/owned").exists()
                || std::fs::read_to_string("/tmp/owned").unwrap() != "x"
        );
        assert!(!dest.path().parent().unwrap().join("escape").exists());
    }

    #[test]
    fn codequality_findings_merge_into_the_declared_report_or_stand_alone() {
        let d = project();
        std::fs::write(
            d.path().join("gl-code-quality-report.json"),
            r#"[{"description":"theirs"}]"#,
        )
        .unwrap();
        let f = Finding {
            description: "ours".into(),
            check_name: "rbuild/x".into(),
            fingerprint: "f".into(),
            severity: "major".into(),
            location: super::super::codequality::Location {
                path: "Dockerfile".into(),
                lines: super::super::codequality::Lines { begin: 2 },
            },
        };
        let out = tempfile::tempdir().unwrap();
        let cq = Artifact {
            paths: vec!["gl-code-quality-report.json".into()],
            artifact_type: "codequality".into(),
            artifact_format: "gzip".into(),
            when: "always".into(),
            name: "gl-code-quality-report.json".into(),
            expire_in: "1 week".into(),
            ..Artifact::default()
        };
        let read = |u: &Upload| {
            let mut s = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&u.file).unwrap())
                .read_to_string(&mut s)
                .unwrap();
            serde_json::from_str::<Vec<serde_json::Value>>(&s).unwrap()
        };
        let mut w = Vec::new();
        let ups = prepare(
            d.path(),
            out.path(),
            &[cq],
            false,
            std::slice::from_ref(&f),
            &mut w,
        )
        .unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].filename, "gl-code-quality-report.json.gz");
        let v = read(&ups[0]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["description"], "theirs");
        assert_eq!(v[1]["check_name"], "rbuild/x");
        let ups = prepare(
            d.path(),
            out.path(),
            &[entry(&["top.txt"], &[])],
            false,
            std::slice::from_ref(&f),
            &mut w,
        )
        .unwrap();
        assert_eq!(
            ups.len(),
            1,
            "the archive is on_success only; the report stands alone"
        );
        assert_eq!(
            (
                ups[0].artifact_type.as_str(),
                ups[0].artifact_format.as_str()
            ),
            ("codequality", "gzip")
        );
        assert_eq!(read(&ups[0]).len(), 1);
    }
}

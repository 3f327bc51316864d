//! The runner's state directory: a record of every job that is running, so that a daemon
//! that was killed (kill -9, a crash, a power cut) can, when it starts again, report those
//! jobs as failed with a system failure reason and kill what is left of them. A job is
//! never reported as passed from here.
//!
//! Layout (`state_dir`, mode 0700): `daemon.lock` (one daemon per state directory),
//! `system_id` (when the host has no machine id), `jobs/<instance>-<id>.json` (the record:
//! job token, process group, trace mirror; mode 0600) and `jobs/<instance>-<id>.trace`
//! (the masked job log as it was sent).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// What the daemon knows about a running job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub instance: String,
    /// The GitLab URL the job came from.
    pub url: String,
    pub job_id: i64,
    pub job_token: Secret,
    pub failure_reasons: Vec<String>,
    pub output_limit: usize,
    /// The job's private directory (scripts, file variables), removed on recovery.
    pub tmp_dir: PathBuf,
    /// The process group of the step running now, and its start time (clock ticks after
    /// boot) so a recycled pid is never killed.
    pub pgid: Option<u32>,
    pub pgid_start: Option<u64>,
    /// Unix time the job started.
    pub started: u64,
}

/// The `jobs/` directory of the state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// Creates `dir` (and parents) and makes it private (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs_err::create_dir_all(dir)?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl StateStore {
    /// Opens (creating) `state_dir/jobs`.
    pub fn open(state_dir: &Path) -> std::io::Result<StateStore> {
        private_dir(state_dir)?;
        let dir = state_dir.join("jobs");
        private_dir(&dir)?;
        Ok(StateStore { dir })
    }

    fn stem(instance: &str, job_id: i64) -> String {
        format!("{instance}-{job_id}")
    }

    /// Where the job's trace is mirrored.
    pub fn trace_path(&self, instance: &str, job_id: i64) -> PathBuf {
        self.dir
            .join(format!("{}.trace", Self::stem(instance, job_id)))
    }

    fn record_path(&self, instance: &str, job_id: i64) -> PathBuf {
        self.dir
            .join(format!("{}.json", Self::stem(instance, job_id)))
    }

    /// Writes the record atomically (mode 0600).
    pub fn save(&self, rec: &JobRecord) -> std::io::Result<()> {
        let path = self.record_path(&rec.instance, rec.job_id);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write `{}`: {e}", tmp.display()))
            })?;
        f.write_all(&serde_json::to_vec(rec).expect("records are plain data"))?;
        f.sync_all()?;
        fs_err::rename(&tmp, &path)
    }

    /// Forgets a job (it was reported).
    pub fn remove(&self, instance: &str, job_id: i64) {
        let _ = fs_err::remove_file(self.record_path(instance, job_id));
        let _ = fs_err::remove_file(self.trace_path(instance, job_id));
    }

    /// Every record left, with the ones that cannot be read named by path.
    pub fn list(&self) -> Vec<Result<JobRecord, (PathBuf, String)>> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                fs_err::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    .map_err(|e| (p, e))
            })
            .collect()
    }

    /// Removes an unreadable record file.
    pub fn discard(&self, path: &Path) {
        let _ = fs_err::remove_file(path);
        let _ = fs_err::remove_file(path.with_extension("trace"));
    }
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), if it exists.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses; fields after the
    // last `)` start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_privately() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(&d.path().join("state")).unwrap();
        let rec = JobRecord {
            instance: "main".into(),
            url: "http://127.0.0.1:1".into(),
            job_id: 7,
            job_token: Secret::new("tok"),
            failure_reasons: vec!["runner_system_failure".into()],
            output_limit: 1024,
            tmp_dir: d.path().join("tmp"),
            pgid: Some(42),
            pgid_start: Some(4242),
            started: 1,
        };
        s.save(&rec).unwrap();
        let p = d.path().join("state/jobs/main-7.json");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(d.path().join("state"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let list = s.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].as_ref().unwrap().job_token.expose(), "tok");
        s.remove("main", 7);
        assert!(s.list().is_empty());
    }

    #[test]
    fn start_time_of_a_live_process() {
        assert_eq!(
            parse_start_time("1 (a b) c) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"),
            Some(12345)
        );
        assert!(process_start_time(std::process::id()).is_some());
        assert_eq!(process_start_time(u32::MAX), None);
    }
}

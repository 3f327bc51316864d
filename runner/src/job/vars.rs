//! A job's variables: GitLab's (from the payload), the runner's predefined `CI_*` ones,
//! `$VAR` expansion of non-raw values, file-type variables written to files, and the
//! list of values the log masker hides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::forge::gitlab::types::{Job, Variable};

/// A file-type variable: `content` goes to `host_path`; the variable holds the sandbox path.
#[derive(Debug, Clone)]
pub struct FileVar {
    pub key: String,
    pub host_path: PathBuf,
    pub content: String,
}

/// The resolved variables of a job, in order.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub list: Vec<(String, String)>,
    pub files: Vec<FileVar>,
    /// Keys that are not shell names (`A-Z a-z 0-9 _`), left out of the environment.
    pub skipped: Vec<String>,
}

impl Vars {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.list
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `key` can be exported by a POSIX shell.
pub fn shell_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves the job's variables. `predefined` are the runner's own (`CI_PROJECT_DIR`, ...);
/// they win over same-named job variables because they describe where the job really runs.
/// File-type variables are placed in `files_host` (seen in the sandbox as `files_inside`).
pub fn resolve(
    job: &Job,
    predefined: &[(String, String)],
    files_host: &Path,
    files_inside: &Path,
) -> Vars {
    let mut vars = Vars::default();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let own: Vec<&str> = predefined.iter().map(|(k, _)| k.as_str()).collect();
    for (k, v) in predefined {
        current.insert(k.clone(), v.clone());
        vars.list.push((k.clone(), v.clone()));
    }
    for Variable {
        key,
        value,
        file,
        raw,
        ..
    } in &job.variables
    {
        if own.contains(&key.as_str()) {
            continue;
        }
        if !shell_name(key) {
            vars.skipped.push(key.clone());
            continue;
        }
        let value = if *file {
            let host_path = files_host.join(key);
            vars.files.push(FileVar {
                key: key.clone(),
                host_path,
                content: value.clone(),
            });
            files_inside.join(key).to_string_lossy().into_owned()
        } else if *raw {
            value.clone()
        } else {
            expand(value, &current)
        };
        current.insert(key.clone(), value.clone());
        vars.list.push((key.clone(), value));
    }
    vars
}

/// Expands `$NAME` and `${NAME}` from `vars`; unknown names expand to nothing and `$$` is
/// a literal `$`, as gitlab-runner expands variables.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = value[i..].find('$').map_or(value.len(), |n| i + n);
            out.push_str(&value[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(b'{') => {
                if let Some(end) = value[i + 2..].find('}') {
                    let name = &value[i + 2..i + 2 + end];
                    out.push_str(vars.get(name).map_or("", String::as_str));
                    i += 3 + end;
                } else {
                    out.push_str(&value[i..]);
                    i = bytes.len();
                }
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let len = value[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(value.len() - i - 1);
                let name = &value[i + 1..=i + len];
                out.push_str(vars.get(name).map_or("", String::as_str));
                i += 1 + len;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// Every value the log must hide: masked variables (as sent and as expanded), the job
/// token, the tokens of the jobs it depends on, and registry passwords.
pub fn masked_values(job: &Job, vars: &Vars) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in job.variables.iter().filter(|v| v.masked) {
        out.push(v.value.clone());
        if let Some(resolved) = vars.get(&v.key).filter(|_| !v.file) {
            out.push(resolved.to_owned());
        }
        if v.file {
            out.extend(v.value.lines().filter(|l| l.len() >= 8).map(str::to_owned));
        }
    }
    out.push(job.token.expose().to_owned());
    out.extend(job.dependencies.iter().map(|d| d.token.expose().to_owned()));
    out.extend(
        job.credentials
            .iter()
            .map(|c| c.password.expose().to_owned()),
    );
    out.retain(|s| !s.is_empty());
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(key: &str, value: &str) -> Variable {
        Variable {
            key: key.to_owned(),
            value: value.to_owned(),
            ..Variable::default()
        }
    }

    #[test]
    fn expansion_follows_gitlab_runner() {
        let vars: BTreeMap<String, String> = [("A", "1"), ("B_2", "two")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into_iter()
            .collect();
        assert_eq!(expand("$A-${B_2}-$NOPE-$$A-${A", &vars), "1-two--$A-${A");
        assert_eq!(expand("cost $5 and $", &vars), "cost $5 and $");
    }

    #[test]
    fn resolves_in_order_with_files_raw_and_predefined() {
        let mut job = Job {
            token: crate::config::Secret::new("jobtoken123"),
            ..Job::default()
        };
        job.variables = vec![
            var("BASE", "/x"),
            var("DERIVED", "$BASE/y"),
            Variable {
                raw: true,
                ..var("RAW", "$BASE")
            },
            Variable {
                file: true,
                masked: true,
                ..var("KUBECONFIG", "secret-file-content")
            },
            var("CI_PROJECT_DIR", "/server/says"),
            var("not-a-name", "v"),
            Variable {
                masked: true,
                ..var("PASSWORD", "hunter2hunter2")
            },
        ];
        let predefined = vec![("CI_PROJECT_DIR".to_owned(), "/builds/g/p".to_owned())];
        let v = resolve(
            &job,
            &predefined,
            Path::new("/host/tmp"),
            Path::new("/builds/p.tmp"),
        );
        assert_eq!(v.get("DERIVED"), Some("/x/y"));
        assert_eq!(v.get("RAW"), Some("$BASE"));
        assert_eq!(v.get("KUBECONFIG"), Some("/builds/p.tmp/KUBECONFIG"));
        assert_eq!(v.files[0].host_path, PathBuf::from("/host/tmp/KUBECONFIG"));
        assert_eq!(v.get("CI_PROJECT_DIR"), Some("/builds/g/p"));
        assert_eq!(v.skipped, ["not-a-name"]);
        let masked = masked_values(&job, &v);
        assert!(masked.contains(&"hunter2hunter2".to_owned()));
        assert!(masked.contains(&"secret-file-content".to_owned()));
        assert!(masked.contains(&"jobtoken123".to_owned()));
    }
}

//! Runs the composite action in `action/action.yml` the way the Actions runner does:
//! `${{ inputs.* }}`, `${{ github.token }}` and `${{ steps.*.outputs.* }}` are evaluated
//! into each step's `env:` (never into `run:`, which must hold no expression), each step
//! runs as `bash --noprofile --norc -eo pipefail FILE` with its own `GITHUB_OUTPUT` and
//! `GITHUB_STEP_SUMMARY` files and `GITHUB_ACTION_PATH`, outputs are read from those files
//! (`name=value` and `name<<DELIMITER` blocks), and the action's outputs are evaluated from
//! the steps'. A step that fails ends the action, as on GitHub.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value as Yaml;

/// What one run of the action produced.
#[derive(Debug, Default)]
pub struct ActionRun {
    /// The action's outputs (`imageid`, `digest`, `metadata`).
    pub outputs: BTreeMap<String, String>,
    /// Outputs of each step, by id.
    pub step_outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// Everything the steps appended to their step summaries.
    pub summary: String,
    /// stdout and stderr of every step, in order.
    pub log: String,
    /// Whether every step succeeded.
    pub success: bool,
    /// Lines appended to `GITHUB_PATH`.
    pub path: Vec<String>,
}

impl ActionRun {
    /// Asserts that the action failed and that its log says `needle` (the log is the
    /// failure message otherwise).
    #[track_caller]
    pub fn assert_failed_with(&self, needle: &str) {
        assert!(!self.success, "the action succeeded:\n{}", self.log);
        assert!(
            self.log.contains(needle),
            "no `{needle}` in the action's log:\n{}",
            self.log
        );
    }
}

/// Reads a `GITHUB_OUTPUT`-style file.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_owned(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

fn yaml_str(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => String::new(),
        other => panic!("unexpected YAML value {other:?}"),
    }
}

/// Evaluates the `${{ ... }}` expressions the action uses.
fn evaluate(
    text: &str,
    inputs: &BTreeMap<String, String>,
    github_token: &str,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a closed expression") + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(name) = expr.strip_prefix("inputs.") {
            inputs.get(name).cloned().unwrap_or_default()
        } else if expr == "github.token" {
            github_token.to_owned()
        } else if let Some(path) = expr.strip_prefix("steps.") {
            let (id, output) = path
                .split_once(".outputs.")
                .unwrap_or_else(|| panic!("unsupported expression `{expr}`"));
            steps
                .get(id)
                .and_then(|o| o.get(output))
                .cloned()
                .unwrap_or_default()
        } else {
            panic!("the action uses an expression this emulation does not know: `{expr}`")
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The action's inputs with their defaults, for `with`.
fn inputs_of(action: &Yaml, with: &[(&str, &str)], token: &str) -> BTreeMap<String, String> {
    let mut inputs = BTreeMap::new();
    if let Some(map) = action["inputs"].as_mapping() {
        for (k, v) in map {
            let default = v.get("default").map(yaml_str).unwrap_or_default();
            inputs.insert(yaml_str(k), default);
        }
    }
    let defaults = inputs.clone();
    for (k, v) in &defaults {
        let evaluated = evaluate(v, &BTreeMap::new(), token, &BTreeMap::new());
        inputs.insert(k.clone(), evaluated);
    }
    for (k, v) in with {
        assert!(inputs.contains_key(*k), "the action has no input `{k}`");
        inputs.insert((*k).to_owned(), (*v).to_owned());
    }
    inputs
}

/// Runs `action_dir/action.yml` with `with` inputs; `command` makes each step's process
/// (`bash` as the test user, or as this process) and `env` is the runner's environment.
pub fn run_action(
    action_dir: &Path,
    with: &[(&str, &str)],
    github_token: &str,
    work: &Path,
    command: &dyn Fn() -> Command,
    env: &[(&str, String)],
) -> ActionRun {
    let text = std::fs::read_to_string(action_dir.join("action.yml")).expect("reading action.yml");
    let action: Yaml = serde_yaml_ng::from_str(&text).expect("action.yml is YAML");
    assert_eq!(action["runs"]["using"], Yaml::from("composite"));
    let inputs = inputs_of(&action, with, github_token);
    let mut run = ActionRun {
        success: true,
        ..ActionRun::default()
    };
    let steps = action["runs"]["steps"]
        .as_sequence()
        .expect("composite steps");
    for (i, step) in steps.iter().enumerate() {
        let id = step.get("id").map_or_else(|| format!("__{i}"), yaml_str);
        let script = yaml_str(&step["run"]);
        assert!(
            !script.contains("${{"),
            "step `{id}` pastes an expression into its shell script: {script}"
        );
        assert_eq!(yaml_str(&step["shell"]), "bash", "step `{id}`");
        let dir = work.join(format!("step-{i}"));
        std::fs::create_dir_all(&dir).expect("a step directory");
        let (output, summary, path) = (dir.join("output"), dir.join("summary"), dir.join("path"));
        // Steps may run as another user (the test user) than this process.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod the step directory");
        let file = dir.join("script.sh");
        std::fs::write(&file, &script).expect("the step script");
        for f in [&output, &summary, &path, &file] {
            if f != &file {
                std::fs::write(f, "").expect("an environment file");
            }
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o666))
                .expect("chmod an environment file");
        }
        let mut cmd = command();
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(work)
            .env("GITHUB_ACTION_PATH", action_dir)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_PATH", &path)
            .env("GITHUB_ACTIONS", "true")
            .env("RUNNER_TEMP", work);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(map) = step.get("env").and_then(Yaml::as_mapping) {
            for (k, v) in map {
                cmd.env(
                    yaml_str(k),
                    evaluate(&yaml_str(v), &inputs, github_token, &run.step_outputs),
                );
            }
        }
        let out = cmd.output().expect("running a step");
        run.log.push_str(&String::from_utf8_lossy(&out.stdout));
        run.log.push_str(&String::from_utf8_lossy(&out.stderr));
        run.summary
            .push_str(&std::fs::read_to_string(&summary).unwrap_or_default());
        run.path.extend(
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned),
        );
        run.step_outputs.insert(
            id,
            parse_env_file(&std::fs::read_to_string(&output).unwrap_or_default()),
        );
        if !out.status.success() {
            run.success = false;
            break;
        }
    }
    if let Some(map) = action["outputs"].as_mapping() {
        for (k, v) in map {
            let value = evaluate(
                &yaml_str(&v["value"]),
                &inputs,
                github_token,
                &run.step_outputs,
            );
            run.outputs.insert(yaml_str(k), value);
        }
    }
    run
}

/// The repository's `action/` directory.
pub fn action_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../action")
}

//! `rbuild-runner github-action`: the build step of the GitHub Action (`action/action.yml`).
//!
//! The action passes every input through the environment as `INPUT_<NAME>` (upper case,
//! as the Actions runner and `@actions/core` name them: `INPUT_BUILD-ARGS`); this command
//! reads them the way `docker/build-push-action` does, turns them into an `rbuild build`
//! argument vector (never a shell line, so no input can run a command), runs it, and
//! writes the step's outputs (`imageid`, `digest`, `metadata`) and its summary (image,
//! digests per platform, cache hits, the diagnostics table). With `annotate: checks` or
//! `both` it also reports the diagnostics as a check run (`report github`).
//!
//! List inputs follow `docker/build-push-action`'s rules: a newline-separated list whose
//! lines are CSV records (quotes group, `""` is a quote); for CSV inputs (`tags`,
//! `platforms`) every field is an item, for the others a line is one item whatever its
//! commas. Items are trimmed and empty ones dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rbuild_diagnose::Diagnostic;
use rbuild_diagnose::render::github;
use serde_json::Value;

use crate::outcome::{Exit, Failure};

/// The value of an input, as `core.getInput` reads it (trimmed; empty when unset).
pub fn input(env: &dyn Fn(&str) -> Option<String>, name: &str) -> String {
    let var = format!("INPUT_{}", name.replace(' ', "_").to_uppercase());
    env(&var).unwrap_or_default().trim().to_owned()
}

/// A boolean input, as `core.getBooleanInput` accepts them.
pub fn bool_input(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> anyhow::Result<bool> {
    match input(env, name).as_str() {
        "" => Ok(default),
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(Failure::new(
            Exit::Usage,
            format!("input `{name}` is `{other}`, not a boolean"),
        )
        .hint("write `true` or `false`")
        .into()),
    }
}

/// Splits one line into CSV fields (`"` groups and `""` escapes when `quote`; a stray
/// quote inside a field is kept, as csv-parse's `relax_quotes` does).
fn csv_fields(line: &str, quote: bool) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quote && quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' if quote && at_start => {
                quoted = true;
                at_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    fields.push(cur);
    fields
}

/// A list input, as `docker/build-push-action` reads it.
pub fn list(value: &str, ignore_comma: bool, quote: bool) -> Vec<String> {
    let mut out = Vec::new();
    for line in value.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields = csv_fields(line, quote);
        if fields.len() == 1 {
            if ignore_comma {
                out.push(fields[0].clone());
            } else {
                out.extend(fields[0].split(',').map(str::to_owned));
            }
        } else if ignore_comma {
            out.push(fields.join(","));
        } else {
            out.extend(fields);
        }
    }
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// How diagnostics are surfaced (`annotate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotate {
    WorkflowCommands,
    Checks,
    Both,
    None,
}

impl Annotate {
    fn parse(s: &str) -> anyhow::Result<Annotate> {
        Ok(match s {
            "" | "workflow-commands" => Annotate::WorkflowCommands,
            "checks" => Annotate::Checks,
            "both" => Annotate::Both,
            "none" => Annotate::None,
            other => {
                return Err(
                    Failure::new(Exit::Usage, format!("input `annotate` is `{other}`"))
                        .hint("use `workflow-commands`, `checks`, `both` or `none`")
                        .into(),
                );
            }
        })
    }
    fn commands(self) -> bool {
        matches!(self, Annotate::WorkflowCommands | Annotate::Both)
    }
    fn checks(self) -> bool {
        matches!(self, Annotate::Checks | Annotate::Both)
    }
}

/// The build as the inputs describe it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Arguments after `rbuild` (without the output files, added by [`Plan::argv`]).
    pub args: Vec<String>,
    /// Secret values given inline (`secrets`), to write to private files: (id, value).
    pub inline_secrets: Vec<(String, String)>,
    /// Inputs set that rbuild does not support yet, with what happens instead.
    pub ignored: Vec<String>,
    pub annotate: Annotate,
    pub tags: Vec<String>,
    pub dockerfile: String,
}

/// Reads the inputs into a [`Plan`].
pub fn plan(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Plan> {
    let get = |n: &str| input(env, n);
    let annotate = Annotate::parse(&get("annotate"))?;
    let mut args = vec![
        "build".to_owned(),
        "--progress".to_owned(),
        "plain".to_owned(),
    ];
    args.push("--message-format".to_owned());
    args.push(
        if annotate.commands() {
            "github"
        } else {
            "human"
        }
        .to_owned(),
    );
    let context = match get("context") {
        c if c.is_empty() => ".".to_owned(),
        c => c,
    };
    let file = get("file");
    if !file.is_empty() {
        args.extend(["--file".to_owned(), file.clone()]);
    }
    let platforms = list(&get("platforms"), false, true);
    if !platforms.is_empty() {
        args.extend(["--platform".to_owned(), platforms.join(",")]);
    }
    let tags = list(&get("tags"), false, true);
    for t in &tags {
        args.extend(["--tag".to_owned(), t.clone()]);
    }
    for l in list(&get("labels"), true, true) {
        args.extend(["--label".to_owned(), l]);
    }
    for a in list(&get("build-args"), true, true) {
        args.extend(["--build-arg".to_owned(), a]);
    }
    let target = get("target");
    if !target.is_empty() {
        args.extend(["--target".to_owned(), target]);
    }
    for o in list(&get("outputs"), true, false) {
        args.extend(["--output".to_owned(), o]);
    }
    if bool_input(env, "push", false)? {
        args.push("--push".to_owned());
    }
    if bool_input(env, "no-cache", false)? {
        args.push("--no-cache".to_owned());
    }
    let mut inline_secrets = Vec::new();
    for s in list(&get("secrets"), true, true) {
        let Some((id, value)) = s.split_once('=') else {
            return Err(
                Failure::new(Exit::Usage, "an item of input `secrets` is not `id=value`")
                    .hint("write one `ID=VALUE` per line")
                    .into(),
            );
        };
        inline_secrets.push((id.trim().to_owned(), value.to_owned()));
    }
    for s in list(&get("secret-files"), true, true) {
        let Some((id, path)) = s.split_once('=') else {
            return Err(Failure::new(
                Exit::Usage,
                format!("`{s}` in input `secret-files` is not `id=path`"),
            )
            .hint("write one `ID=PATH` per line")
            .into());
        };
        args.extend([
            "--secret".to_owned(),
            format!("id={},src={}", id.trim(), path.trim()),
        ]);
    }
    for s in list(&get("secret-envs"), false, true) {
        let Some((id, var)) = s.split_once('=') else {
            return Err(Failure::new(
                Exit::Usage,
                format!("`{s}` in input `secret-envs` is not `id=ENVNAME`"),
            )
            .hint("write `ID=ENVNAME` items")
            .into());
        };
        args.extend([
            "--secret".to_owned(),
            format!("id={},env={}", id.trim(), var.trim()),
        ]);
    }
    let mut ignored = Vec::new();
    for (name, what) in [
        ("annotations", "OCI annotations are not written yet"),
        (
            "cache-from",
            "rbuild keeps its layer cache in its own store; external cache sources are not read",
        ),
        (
            "cache-to",
            "rbuild keeps its layer cache in its own store; external cache exports are not written",
        ),
        ("provenance", "provenance attestations are not produced"),
        ("sbom", "SBOM attestations are not produced"),
    ] {
        if !get(name).is_empty() && get(name) != "false" {
            ignored.push(format!("input `{name}` is ignored: {what}"));
        }
    }
    if bool_input(env, "pull", false)? {
        ignored.push(
            "input `pull` is ignored: base images are always resolved from their registry"
                .to_owned(),
        );
    }
    if bool_input(env, "load", false)? {
        ignored.push("input `load` is ignored: rbuild has no image store to load into; use `outputs: type=docker,dest=image.tar`".to_owned());
    }
    let dockerfile = if file.is_empty() {
        if context == "." {
            "Dockerfile".to_owned()
        } else {
            format!("{}/Dockerfile", context.trim_end_matches('/'))
        }
    } else {
        file
    };
    args.push("--".to_owned());
    args.push(context);
    Ok(Plan {
        args,
        inline_secrets,
        ignored,
        annotate,
        tags,
        dockerfile,
    })
}

/// A `name<<DELIMITER` block for `$GITHUB_OUTPUT` with a delimiter the value cannot
/// contain.
pub fn output_entry(name: &str, value: &str) -> String {
    loop {
        let delimiter = format!(
            "ghadelimiter_{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        if !value.contains(&delimiter) {
            return format!("{name}<<{delimiter}\n{value}\n{delimiter}\n");
        }
    }
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Failure::new(Exit::Host, format!("cannot open `{}`: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| {
        Failure::new(
            Exit::Host,
            format!("cannot write `{}`: {e}", path.display()),
        )
        .into()
    })
}

/// The image part of the step summary, from the metadata file.
pub fn image_summary(tags: &[String], metadata: Option<&Value>, imageid: &str) -> String {
    let mut md = String::from("### rbuild: image\n\n");
    let name = metadata
        .and_then(|m| m["image.name"].as_str())
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| tags.join(","));
    let names: Vec<&str> = name.split(',').filter(|n| !n.is_empty()).collect();
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| image | {} |",
        if names.is_empty() {
            "(untagged)".to_owned()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join("<br>")
        }
    );
    if let Some(d) = metadata.and_then(|m| m["containerimage.digest"].as_str()) {
        let _ = writeln!(md, "| digest | `{d}` |");
    }
    if !imageid.is_empty() {
        let _ = writeln!(md, "| image id | `{imageid}` |");
    }
    if let Some(p) = metadata
        .and_then(|m| m.get("rbuild.platforms"))
        .and_then(Value::as_object)
    {
        for (platform, digest) in p {
            let _ = writeln!(
                md,
                "| {platform} | `{}` |",
                digest.as_str().unwrap_or_default()
            );
        }
    }
    match metadata.and_then(|m| m.get("rbuild.cache")) {
        Some(c) => {
            let hits = c["hits"].as_u64().unwrap_or(0);
            let total = hits + c["misses"].as_u64().unwrap_or(0);
            let _ = writeln!(md, "| cache | {hits} of {total} steps cached |");
        }
        None => {
            let _ = writeln!(md, "| cache | not reported |");
        }
    }
    md.push('\n');
    md
}

/// Runs the action's build step; returns rbuild's exit status.
pub fn run(rbuild: &Path) -> anyhow::Result<u8> {
    let env = |k: &str| std::env::var(k).ok();
    let plan = plan(&env)?;
    let mut out = std::io::stdout().lock();
    for i in &plan.ignored {
        let _ = writeln!(
            out,
            "{}",
            github::command(
                "warning",
                &github::Properties {
                    title: Some("rbuild".to_owned()),
                    ..Default::default()
                },
                i
            )
        );
    }
    // Mask secret values before anything could print them.
    for (_, v) in &plan.inline_secrets {
        for line in v.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(out, "::add-mask::{}", github::escape_data(line));
        }
    }
    let _ = out.flush();
    drop(out);
    let temp = env("RUNNER_TEMP").map_or_else(std::env::temp_dir, PathBuf::from);
    let work = tempfile::Builder::new()
        .prefix("rbuild-action-")
        .tempdir_in(&temp)
        .map_err(|e| {
            Failure::new(
                Exit::Host,
                format!("cannot create a directory in `{}`: {e}", temp.display()),
            )
        })?;
    let (diag, meta, iid) = (
        work.path().join("diagnostics.json"),
        work.path().join("metadata.json"),
        work.path().join("iid"),
    );
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let dashdash = plan
        .args
        .iter()
        .position(|a| a == "--")
        .unwrap_or(plan.args.len());
    args.extend(plan.args[..dashdash].iter().map(Into::into));
    for (id, value) in &plan.inline_secrets {
        let p = work.path().join(format!("secret-{}", args.len()));
        std::fs::write(&p, value)
            .map_err(|e| Failure::new(Exit::Host, format!("cannot write a secret file: {e}")))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| Failure::new(Exit::Host, format!("cannot protect a secret file: {e}")))?;
        args.push("--secret".into());
        let mut v = std::ffi::OsString::from(format!("id={id},src="));
        v.push(&p);
        args.push(v);
    }
    for (flag, path) in [
        ("--diagnostics-file", &diag),
        ("--metadata-file", &meta),
        ("--iidfile", &iid),
    ] {
        args.push(flag.into());
        args.push(path.into());
    }
    args.extend(plan.args[dashdash..].iter().map(Into::into));
    let status = std::process::Command::new(rbuild)
        .args(&args)
        // The summary is this command's: rbuild would append its own table.
        .env_remove(rbuild_diagnose::env::GITHUB_STEP_SUMMARY)
        .status()
        .map_err(|e| {
            Failure::new(
                Exit::Host,
                format!("cannot run `{}`: {e}", rbuild.display()),
            )
            .hint("the action's setup step puts rbuild on PATH; check its output")
        })?;
    let code = status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1));

    let metadata: Option<Value> = std::fs::read(&meta)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let imageid = std::fs::read_to_string(&iid)
        .ok()
        .map(|s| s.trim().to_owned())
        .or_else(|| {
            metadata.as_ref().and_then(|m| {
                m["containerimage.config.digest"]
                    .as_str()
                    .map(str::to_owned)
            })
        })
        .unwrap_or_default();
    let digest = metadata
        .as_ref()
        .and_then(|m| m["containerimage.digest"].as_str())
        .unwrap_or_default()
        .to_owned();
    let diagnostics: Vec<Diagnostic> = std::fs::read(&diag)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();

    if let Some(path) = env("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
        let mut text = format!("imageid={imageid}\ndigest={digest}\n");
        text.push_str(&output_entry(
            "metadata",
            &metadata
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        ));
        append(Path::new(&path), &text)?;
    }
    if let Some(path) = env("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let mut md = image_summary(&plan.tags, metadata.as_ref(), &imageid);
        md.push_str(&github::step_summary(&diagnostics));
        append(Path::new(&path), &md)?;
    }
    if plan.annotate.checks() {
        report_checks(&plan, &diagnostics, &env);
    }
    Ok(code)
}

/// `annotate: checks|both`: a check run with the `github-token` input; problems become a
/// warning, never the step's failure (the build decides that).
fn report_checks(plan: &Plan, diagnostics: &[Diagnostic], env: &dyn Fn(&str) -> Option<String>) {
    let warn = |msg: String| {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            github::command(
                "warning",
                &github::Properties {
                    title: Some("rbuild".to_owned()),
                    ..Default::default()
                },
                &msg
            )
        );
    };
    let token = input(env, "github-token");
    let repo = env("GITHUB_REPOSITORY").unwrap_or_default();
    let Some((owner, name)) = repo.split_once('/') else {
        warn("no check run: GITHUB_REPOSITORY is not set".to_owned());
        return;
    };
    let sha = std::env::var_os(crate::envvars::GITHUB_EVENT_PATH)
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["pull_request"]["head"]["sha"].as_str().map(str::to_owned))
        .or_else(|| env("GITHUB_SHA"))
        .unwrap_or_default();
    let api = env("GITHUB_API_URL")
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| super::client::DEFAULT_API_URL.to_owned());
    let target = super::report::Target {
        owner: owner.to_owned(),
        repo: name.to_owned(),
        head_sha: sha,
        name: "rbuild".to_owned(),
        default_path: plan.dockerfile.clone(),
        check_run_id: None,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let crab = super::client::octocrab(&api, &crate::config::Secret::new(token))?;
                let mut out = std::io::stdout().lock();
                super::report::send(&crab, &target, diagnostics, &mut out).await
            })
        });
    if let Err(e) = result {
        warn(format!(
            "no check run: {}",
            crate::job::trace::error_chain(e.as_ref())
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn lists_follow_build_push_action() {
        assert_eq!(list("a,b\nc", false, true), ["a", "b", "c"]);
        assert_eq!(
            list(" linux/amd64 , linux/arm64 ", false, true),
            ["linux/amd64", "linux/arm64"]
        );
        assert_eq!(
            list("type=registry,ref=x\n\nA=1", true, true),
            ["type=registry,ref=x", "A=1"]
        );
        assert_eq!(list("\"a,b\",c", false, true), ["a,b", "c"]);
        assert_eq!(list("MSG=\"x, y\"", true, true), ["MSG=\"x, y\""]);
        assert_eq!(list("\"say \"\"hi\"\"\"", true, true), ["say \"hi\""]);
        assert_eq!(
            list("type=local,dest=\"out\"", true, false),
            ["type=local,dest=\"out\""]
        );
        assert!(list("", false, true).is_empty());
    }

    #[test]
    fn inputs_become_an_argv_not_a_shell_line() {
        let env = env_of(&[
            ("INPUT_CONTEXT", "app"),
            (
                "INPUT_TAGS",
                "r.example/app:1,r.example/app:$(touch /tmp/pwned)",
            ),
            ("INPUT_PLATFORMS", "linux/amd64\nlinux/arm64"),
            ("INPUT_BUILD-ARGS", "A=1,2\nB=`id`"),
            ("INPUT_PUSH", "true"),
            ("INPUT_SECRET-FILES", "npm=./npmrc"),
            ("INPUT_SECRETS", "tok=abc"),
            ("INPUT_CACHE-FROM", "type=gha"),
            ("INPUT_ANNOTATE", "both"),
        ]);
        let p = plan(&env).unwrap();
        let line = p.args.join(" ");
        assert_eq!(
            line,
            "build --progress plain --message-format github --platform linux/amd64,linux/arm64 --tag r.example/app:1 --tag r.example/app:$(touch /tmp/pwned) --build-arg A=1,2 --build-arg B=`id` --push --secret id=npm,src=./npmrc -- app"
        );
        assert_eq!(p.inline_secrets, [("tok".to_owned(), "abc".to_owned())]);
        assert_eq!(p.ignored.len(), 1);
        assert_eq!(p.annotate, Annotate::Both);
        assert_eq!(p.dockerfile, "app/Dockerfile");
        let bad = env_of(&[("INPUT_PUSH", "yes")]);
        assert!(plan(&bad).is_err());
    }

    #[test]
    fn multi_line_outputs_use_a_fresh_delimiter() {
        let e = output_entry("metadata", "{\n\"a\": 1\n}");
        let first = e.lines().next().unwrap();
        let delim = first.strip_prefix("metadata<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert!(e.ends_with(&format!("\n{delim}\n")));
    }
}

//! Developer tools some end-to-end tests run as independent checkers: GitHub's own
//! `@actions/core` (npm) and Python's `jsonschema` (PyPI). `./scripts/test` installs both
//! into `${XDG_CACHE_HOME:-~/.cache}/rbuild-dev` and exports their locations.

use std::path::PathBuf;

use crate::gate::Missing;

/// `~/.cache/rbuild-dev` (or under `$XDG_CACHE_HOME`).
fn dev_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("rbuild-dev"))
}

/// `node_modules` holding `@actions/core` (`$ACTIONS_CORE_NODE_MODULES`, else the dev cache).
pub fn actions_core() -> Result<PathBuf, Missing> {
    let dir = std::env::var_os("ACTIONS_CORE_NODE_MODULES")
        .map(PathBuf::from)
        .or_else(|| dev_cache().map(|c| c.join("npm/node_modules")));
    let missing = || {
        Missing::new(
            "GitHub's `@actions/core` (npm) is not installed",
            "`./scripts/test` installs it, or `npm install --prefix ~/.cache/rbuild-dev/npm @actions/core@3.0.1`",
        )
    };
    let dir = dir.ok_or_else(missing)?;
    if !dir.join("@actions/core/package.json").is_file() {
        return Err(missing());
    }
    if which("node").is_none() {
        return Err(Missing::new(
            "`node` is not installed",
            "`apt-get install nodejs` (as root; ./scripts/test does this)",
        ));
    }
    Ok(dir)
}

/// A Python interpreter with `jsonschema` (`$RBUILD_DEV_PYTHON`, else the dev venv).
pub fn python_with_jsonschema() -> Result<PathBuf, Missing> {
    let python = std::env::var_os("RBUILD_DEV_PYTHON")
        .map(PathBuf::from)
        .or_else(|| dev_cache().map(|c| c.join("venv/bin/python")))
        .filter(|p| p.is_file());
    let missing = Missing::new(
        "Python's `jsonschema` is not installed",
        "`./scripts/test` installs it into ~/.cache/rbuild-dev/venv (scripts/dev-requirements.txt)",
    );
    let python = python.ok_or_else(|| missing.clone())?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok { Ok(python) } else { Err(missing) }
}

/// A program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

//! `rbuild explain`: print one catalog entry (or `--list` them all).

use std::io::Write as _;

use anyhow::Context as _;

use crate::cli::ExplainArgs;
use crate::diagnose::Cause;
use crate::diagnose::catalog::CATALOG;
use crate::diagnose::docs;
use crate::outcome::{Exit, Failure};

/// Width explain text is wrapped to.
const WIDTH: usize = 88;

/// Runs `rbuild explain`.
pub fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.list {
        if args.json {
            let list: Vec<serde_json::Value> = CATALOG
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "id": e.cause.id(),
                        "title": e.title,
                        "severity": e.severity,
                        "auto_avoid": e.auto_avoid,
                        "url": e.cause.url(),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)
        } else {
            let width = Cause::ALL.iter().map(|c| c.id().len()).max().unwrap_or(0);
            CATALOG
                .iter()
                .try_for_each(|e| writeln!(out, "{:<width$}  {}", e.cause.id(), e.title))
        }
        .context("cannot write to stdout")?;
        return Ok(());
    }

    let id = args.id.as_deref().unwrap_or_default().trim();
    let Some(cause) = Cause::from_id(id) else {
        let mut failure = Failure::new(
            Exit::Usage,
            format!("no known failure cause has the id `{id}`"),
        );
        let near = docs::suggestions(id);
        if !near.is_empty() {
            let near: Vec<String> = near.iter().map(|n| format!("`{n}`")).collect();
            failure = failure.hint(format!("did you mean {}?", near.join(" or ")));
        }
        return Err(failure
            .hint(format!(
                "`rbuild explain --list` lists all {} ids",
                Cause::ALL.len()
            ))
            .into());
    };
    if args.json {
        let mut v = serde_json::to_value(cause.entry()).context("cannot encode the entry")?;
        v["id"] = cause.id().into();
        v["url"] = cause.url().into();
        v["related"] = cause
            .entry()
            .related
            .iter()
            .map(|c| serde_json::Value::from(c.id()))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)
    } else {
        write!(out, "{}", docs::text(cause, WIDTH))
    }
    .context("cannot write to stdout")?;
    Ok(())
}

//! `rbuild check`: parse and lint a Dockerfile, print its diagnostics (and with
//! `--print-ast` its syntax tree), exit 1 when it has an error.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::Context as _;

use crate::cli::CheckArgs;
use crate::diagnose::{Diagnostic, Severity};
use crate::dockerfile::{self, BuildOptions, Platform};
use crate::envvars;
use crate::outcome::{Exit, Failure};

/// Runs `rbuild check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let opts = options(args)?;
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).map_err(|e| {
        Failure::new(
            Exit::Input,
            format!("cannot read the Dockerfile `{name}`: {e}"),
        )
        .hint("pass the Dockerfile with `-f PATH`")
    })?;
    let df = dockerfile::parse(&bytes, &name);
    let diags = df.check(&opts);

    if args.print_ast && df.syntax_ok {
        let mut out = std::io::stdout().lock();
        out.write_all(df.ast.dump().as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write the syntax tree to stdout")?;
    }

    let colour = std::io::stderr().is_terminal()
        && std::env::var_os(envvars::NO_COLOR).is_none_or(|v| v.is_empty());
    let mut err = std::io::stderr().lock();
    for d in &diags {
        // If stderr is gone there is no one to tell; the exit status still says it.
        let _ = write_diagnostic(&mut err, d, colour);
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        let plural = if errors == 1 { "" } else { "s" };
        return Err(
            Failure::new(Exit::Input, format!("`{name}` has {errors} error{plural}")).into(),
        );
    }
    Ok(())
}

/// Validates the build options `check` was given.
fn options(args: &CheckArgs) -> anyhow::Result<BuildOptions> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(Failure::new(
                Exit::Usage,
                format!("`--build-arg {a}` is not of the form `KEY=VALUE`"),
            )
            .hint(format!("write `--build-arg {a}=value`"))
            .into());
        };
        build_args.insert(k.to_owned(), v.to_owned());
    }
    let mut opts = BuildOptions {
        build_args,
        target: args.target.clone(),
        ..BuildOptions::default()
    };
    if let Some(p) = &args.platform {
        opts.target_platform = Platform::parse(p).map_err(|e| {
            Failure::new(Exit::Usage, format!("invalid `--platform`: {e}"))
                .hint("write `--platform linux/amd64` or `--platform linux/arm64`")
        })?;
    }
    Ok(opts)
}

/// `error: Dockerfile:3: message (rule-id)` then `hint: ...`, in the `STYLE.md` form.
fn write_diagnostic(out: &mut dyn Write, d: &Diagnostic, colour: bool) -> std::io::Result<()> {
    let (label, paint) = match d.severity {
        Severity::Error => ("error", "\x1b[1;31m"),
        Severity::Warning => ("warning", "\x1b[1;33m"),
        Severity::Notice => ("notice", "\x1b[1;36m"),
    };
    let (paint, bold, reset) = if colour {
        (paint, "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let place = match (&d.file, d.line, d.end_line) {
        (Some(f), Some(l), Some(e)) if e > l => format!("{f}:{l}-{e}: "),
        (Some(f), Some(l), _) => format!("{f}:{l}: "),
        (Some(f), None, _) => format!("{f}: "),
        (None, ..) => String::new(),
    };
    writeln!(
        out,
        "{paint}{label}{reset}{bold}:{reset} {place}{} ({})",
        d.message, d.id
    )?;
    if let Some(h) = &d.hint {
        writeln!(out, "{paint}hint{reset}{bold}:{reset} {h}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_name_file_line_and_fix() {
        let d = crate::dockerfile::rules::INVALID_KEY_VALUE
            .at(
                "Dockerfile",
                crate::dockerfile::Span::new(3, 4),
                "ENV must have two arguments",
            )
            .with_hint("write `ENV name=value`");
        let mut buf = Vec::new();
        write_diagnostic(&mut buf, &d, false).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "error: Dockerfile:3-4: ENV must have two arguments (invalid-key-value)\nhint: write `ENV name=value`\n"
        );
    }
}

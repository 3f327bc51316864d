//! Instruction flags (`--from=build`, `--link`, `--mount=...`), checked the way BuildKit's
//! `BFlags` checks them.

use std::collections::BTreeMap;

/// What a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--mount=...`, repeatable.
    Strings,
}

/// Parsed flag values.
#[derive(Debug, Default)]
pub(crate) struct Values {
    bools: BTreeMap<&'static str, bool>,
    strings: BTreeMap<&'static str, String>,
    lists: BTreeMap<&'static str, Vec<String>>,
}

impl Values {
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }

    /// `Some` when the boolean flag was given.
    pub(crate) fn bool_opt(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

/// A flag error: the message and a hint.
#[derive(Debug)]
pub(crate) struct FlagError {
    pub(crate) message: String,
    pub(crate) hint: String,
}

/// Checks `flags` (words like `--name=value`) of `instruction` against `defs`.
pub(crate) fn parse(
    instruction: &str,
    flags: &[String],
    defs: &[(&'static str, Kind)],
) -> Result<Values, FlagError> {
    let mut values = Values::default();
    let mut used: Vec<&str> = Vec::new();
    let valid = || {
        if defs.is_empty() {
            format!("`{instruction}` takes no flags")
        } else {
            let names: Vec<String> = defs.iter().map(|(n, _)| format!("`--{n}`")).collect();
            format!("`{instruction}` takes {}", names.join(", "))
        }
    };
    for arg in flags {
        let Some(body) = arg.strip_prefix("--") else {
            return Err(FlagError {
                message: format!("flag `{arg}` of `{instruction}` should start with `--`"),
                hint: valid(),
            });
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(def_name, kind)) = defs.iter().find(|(n, _)| *n == name) else {
            let mut hint = valid();
            if let Some(best) = super::suggest(name, defs.iter().map(|(n, _)| *n)) {
                hint = format!("did you mean `--{best}`? {hint}");
            }
            return Err(FlagError {
                message: format!("unknown flag `--{name}` for `{instruction}`"),
                hint,
            });
        };
        if used.contains(&def_name) && kind != Kind::Strings {
            return Err(FlagError {
                message: format!("duplicate flag `--{name}` for `{instruction}`"),
                hint: "give the flag once".to_owned(),
            });
        }
        used.push(def_name);
        match kind {
            Kind::Bool => {
                let v = match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some("") => {
                        return Err(FlagError {
                            message: format!(
                                "missing a value on flag `--{name}` of `{instruction}`"
                            ),
                            hint: format!("write `--{name}` or `--{name}=true`"),
                        });
                    }
                    Some(_) => {
                        return Err(FlagError {
                            message: format!(
                                "expecting a boolean value for flag `--{name}` of `{instruction}`, not `{}`",
                                value.unwrap_or_default()
                            ),
                            hint: format!("write `--{name}=true` or `--{name}=false`"),
                        });
                    }
                };
                values.bools.insert(def_name, v);
            }
            Kind::String | Kind::Strings => {
                let Some(v) = value else {
                    return Err(FlagError {
                        message: format!("missing a value on flag `--{name}` of `{instruction}`"),
                        hint: format!("write `--{name}=VALUE`"),
                    });
                };
                if kind == Kind::String {
                    values.strings.insert(def_name, v.to_owned());
                } else {
                    values.lists.entry(def_name).or_default().push(v.to_owned());
                }
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(flags: &[&str]) -> Result<Values, String> {
        let flags: Vec<String> = flags.iter().map(|s| (*s).to_owned()).collect();
        parse(
            "COPY",
            &flags,
            &[
                ("from", Kind::String),
                ("link", Kind::Bool),
                ("exclude", Kind::Strings),
            ],
        )
        .map_err(|e| e.message)
    }

    #[test]
    fn flag_rules() {
        let v = f(&["--from=a", "--link", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(v.string("from").as_deref(), Some("a"));
        assert!(v.bool("link"));
        assert_eq!(v.list("exclude"), ["x", "y"]);
        assert!(!f(&["--link=FALSE"]).unwrap().bool("link"));
        assert_eq!(
            f(&["--frm=a"]).unwrap_err(),
            "unknown flag `--frm` for `COPY`"
        );
        assert_eq!(
            f(&["--from=a", "--from=b"]).unwrap_err(),
            "duplicate flag `--from` for `COPY`"
        );
        assert_eq!(
            f(&["--from"]).unwrap_err(),
            "missing a value on flag `--from` of `COPY`"
        );
        assert_eq!(
            f(&["--link="]).unwrap_err(),
            "missing a value on flag `--link` of `COPY`"
        );
        assert!(
            f(&["--link=yes"])
                .unwrap_err()
                .starts_with("expecting a boolean")
        );
    }
}

//! `RUN --mount=type=cache|bind|secret|ssh|tmpfs,...`: the CSV option list, checked as
//! BuildKit checks it. Values are expanded (except `from`) before they are checked.

/// What is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory of the context or of another stage/image (`from=`), read-only unless `rw`.
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// An empty in-memory directory.
    Tmpfs,
    /// A secret file (`--secret id=...`).
    Secret,
    /// The SSH agent socket.
    Ssh,
}

impl MountType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount`, expanded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// Where it appears in the RUN's filesystem.
    pub target: Option<String>,
    /// Path inside the source (`from` or the context), or the secret id for `source=`.
    pub source: Option<String>,
    /// Stage name/index or image the mount comes from (not expanded).
    pub from: Option<String>,
    pub readonly: bool,
    /// Cache id, secret id or SSH id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub required: bool,
    /// Size limit of a tmpfs, in bytes.
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

/// Go's `encoding/csv` for one record: `,` separates, `"` quotes, `""` is a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".to_owned()),
                    Some('"') => {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".to_owned()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(std::mem::take(&mut field));
                        break;
                    }
                    Some('"') => return Err("bare \" in non-quoted-field".to_owned()),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// The `from=` of a `--mount` value, if any (for stage dependencies).
pub(crate) fn mount_from(spec: &str) -> Option<String> {
    csv_fields(spec).ok()?.into_iter().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        k.eq_ignore_ascii_case("from").then(|| v.to_owned())
    })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Docker's `units.RAMInBytes`: `64m`, `1.5g`, `512k`, `100` (binary units).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim_end_matches(['b', 'i']) {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    let v = n * mult;
    // Saturating float-to-int conversion is the intent: sizes are far below 2^64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (v.is_finite() && v >= 0.0).then_some(v as u64)
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
];

/// Parses one `--mount` value; `expand` expands each value except `from`.
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, String> {
    let fields = csv_fields(spec).map_err(|e| format!("cannot read `{spec}` as CSV: {e}"))?;
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        size: None,
        mode: None,
        uid: None,
        gid: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!(
                        "unexpected key `required` for mount type `{}`",
                        m.kind.as_str()
                    ));
                }
                _ => {
                    return Err(format!(
                        "invalid field `{field}`: it must be a `key=value` pair"
                    ));
                }
            }
            continue;
        };
        if key == "from" {
            if value.find('$').is_some_and(|i| i + 1 != value.len()) {
                return Err(format!(
                    "`from` does not support variable expansion (`{value}`); define a stage with `FROM {value} AS name` and use `from=name`"
                ));
            }
            m.from = Some(value.to_owned());
            continue;
        }
        let value = expand(value)?;
        let bad = |what: &str| format!("invalid value `{value}` for `{key}`: {what}");
        match key.as_str() {
            "type" => {
                m.kind = MountType::parse(&value).ok_or_else(|| {
                    format!("unsupported mount type `{value}`: it must be bind, cache, tmpfs, secret or ssh")
                })?;
            }
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&value).ok_or_else(|| bad("expected true or false"))?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&value).ok_or_else(|| bad("expected true or false"))?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key `required` for mount type `{}`",
                        m.kind.as_str()
                    ));
                }
                m.required = parse_bool(&value).ok_or_else(|| bad("expected true or false"))?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key `size` for mount type `{}`",
                        m.kind.as_str()
                    ));
                }
                m.size =
                    Some(ram_in_bytes(&value).ok_or_else(|| bad("expected a size like `64m`"))?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(bad("expected shared, private or locked")),
                });
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| bad("expected an octal mode like 0755"))?,
                );
            }
            "uid" => m.uid = Some(value.parse().map_err(|_| bad("expected a number"))?),
            "gid" => m.gid = Some(value.parse().map_err(|_| bad("expected a number"))?),
            "env" => m.env = Some(value),
            _ => {
                let mut msg = format!("unexpected key `{key}` in `{field}`");
                if let Some(s) = super::suggest(&key, KEYS.iter().copied()) {
                    msg = format!("{msg} (did you mean `{s}`?)");
                }
                return Err(msg);
            }
        }
    }
    let file_info = matches!(m.kind, MountType::Bind | MountType::Secret | MountType::Ssh);
    if !file_info {
        for (set, what) in [
            (m.mode.is_some(), "mode"),
            (m.uid.is_some(), "uid"),
            (m.gid.is_some(), "gid"),
        ] {
            if set {
                return Err(format!(
                    "`{what}` is not allowed for `{}` mounts",
                    m.kind.as_str()
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!(
            "`sharing` is only for cache mounts, not `{}`",
            m.kind.as_str()
        ));
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("a secret mount cannot have `from`".to_owned());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
                return Err("a secret mount needs `id`, `target` or `env`".to_owned());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("a secret mount cannot have both `source` and `id`".to_owned());
            }
        }
        MountType::Ssh => {}
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if m.target.as_deref().is_none_or(str::is_empty) {
                return Err(format!("a `{}` mount needs `target`", m.kind.as_str()));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Mount, String> {
        parse_mount(s, &mut |v| Ok(v.replace("$V", "x")))
    }

    #[test]
    fn mounts() {
        let m = p("type=cache,target=/root/.cache,sharing=locked,id=$V").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.id.as_deref(), Some("x"));
        assert!(!m.readonly);
        assert_eq!(m.sharing, Some(Sharing::Locked));
        let b = p("target=/src,from=build,source=/out").unwrap();
        assert_eq!(b.kind, MountType::Bind);
        assert!(b.readonly);
        assert!(!p("type=bind,target=/s,rw").unwrap().readonly);
        let s = p("type=secret,id=npmrc,target=/root/.npmrc,required").unwrap();
        assert!(s.required);
        assert_eq!(
            p("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            p("\"type=bind\",\"target=/a,b\"")
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }

    #[test]
    fn bad_mounts() {
        for (spec, msg) in [
            ("type=nfs,target=/x", "unsupported mount type"),
            ("type=cache", "needs `target`"),
            ("type=cache,target=/x,mode=0700", "`mode` is not allowed"),
            ("type=bind,target=/x,sharing=shared", "only for cache"),
            ("type=cache,target=/x,taget=/y", "did you mean `target`"),
            (
                "type=cache,target=/x,from=$IMG/x",
                "does not support variable expansion",
            ),
            ("type=secret", "needs `id`"),
            ("type=bind,target=/x,bogus", "must be a `key=value` pair"),
            ("type=bind,target=a\"b", "bare \""),
        ] {
            let e = p(spec).unwrap_err();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }
}

//! `ADD https://...`: a download into the cache directory, verified against `--checksum`.
//!
//! Downloads are kept by content digest under `<cache>/build/v1/downloads/`; with
//! `--checksum` an earlier download of the same content is used without the network, as
//! BuildKit does. The file gets mode 0600 and its `Last-Modified` time (remote files are
//! never unpacked, even when they are archives).

use std::io::Write;

use sha2::{Digest as _, Sha256};

use super::Engine;
use super::context::{self, Data, Item};
use crate::outcome::{Exit, Failure};

/// Fetches `url`; returns the item to stream and the content digest.
pub(super) fn fetch(
    engine: &Engine<'_>,
    url: &str,
    checksum: Option<&str>,
) -> anyhow::Result<(Item, String)> {
    let dir = engine
        .req
        .cache_dir
        .join("build")
        .join("v1")
        .join("downloads");
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(Exit::Host, format!("cannot create `{}`", dir.display())).caused_by(e)
    })?;
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("__unnamed__")
        .to_owned();
    if let Some(want) = checksum {
        let hex = want.strip_prefix("sha256:").ok_or_else(|| {
            Failure::new(
                Exit::Input,
                format!("`ADD --checksum={want}`: only `sha256:` checksums are supported"),
            )
        })?;
        let cached = dir.join(hex);
        if let Ok(meta) = std::fs::metadata(&cached) {
            let mtime = std::fs::read_to_string(cached.with_extension("mtime"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let item = context::data_item(&name, Data::Path(cached), meta.len(), 0o600, mtime);
            return Ok((item, want.to_owned()));
        }
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Bug, "cannot start the I/O runtime").caused_by(e))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
        Failure::new(Exit::Host, format!("cannot write in `{}`", dir.display())).caused_by(e)
    })?;
    let fail =
        |what: String| Failure::new(Exit::Registry, format!("cannot download `{url}`: {what}"));
    let (hex, size, mtime) = runtime.block_on(async {
        let client = crate::registry::client::without_system_roots_if_none(|| {
            reqwest::Client::builder()
                .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(30))
        })
        .map_err(|e| fail("cannot set up the HTTP client".into()).caused_by(e))?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail("the request failed".into()).caused_by(e))?;
        if !resp.status().is_success() {
            return Err(fail(format!("the server answered {}", resp.status()))
                .hint("check the URL; `ADD` follows redirects but needs a 2xx answer in the end"));
        }
        let mtime = resp
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let mut h = Sha256::new();
        let mut size = 0u64;
        let mut f = tmp.as_file();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| fail("the download broke off".into()).caused_by(e))?
        {
            h.update(&chunk);
            size += chunk.len() as u64;
            f.write_all(&chunk)
                .map_err(|e| Failure::new(Exit::Host, "cannot write the download").caused_by(e))?;
        }
        Ok::<_, Failure>((format!("{:x}", h.finalize()), size, mtime))
    })?;
    let digest = format!("sha256:{hex}");
    if let Some(want) = checksum
        && want != digest
    {
        return Err(Failure::new(
            Exit::Input,
            format!("`ADD --checksum`: `{url}` has checksum `{digest}`, not `{want}`"),
        )
        .hint("update the checksum if the file changed on purpose")
        .into());
    }
    let path = dir.join(&hex);
    tmp.persist(&path).map_err(|e| {
        Failure::new(Exit::Host, format!("cannot keep `{}`", path.display())).caused_by(e.error)
    })?;
    let _ = std::fs::write(path.with_extension("mtime"), mtime.to_string());
    Ok((
        context::data_item(&name, Data::Path(path), size, 0o600, mtime),
        digest,
    ))
}

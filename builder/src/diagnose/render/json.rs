//! JSON: the `--diagnostics-file` array and the `--message-format json` stream.
//!
//! Both use the [`Diagnostic`] record's field names, which are a contract (`DESIGN.md`).

use std::io::{self, Write};

use crate::diagnose::Diagnostic;

/// The `--diagnostics-file` content: a pretty-printed JSON array and a final newline.
pub fn to_file_bytes(diagnostics: &[Diagnostic]) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(diagnostics)
        .expect("a Diagnostic holds only strings, numbers and lists");
    bytes.push(b'\n');
    bytes
}

/// One compact JSON object per line (`--message-format json`).
pub fn write_lines(out: &mut dyn Write, diagnostics: &[Diagnostic]) -> io::Result<()> {
    for d in diagnostics {
        let line =
            serde_json::to_string(d).expect("a Diagnostic holds only strings, numbers and lists");
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    #[test]
    fn file_is_an_array_and_lines_are_one_object_each() {
        let diags = vec![
            Cause::RunFailed
                .error("step `RUN make` exited with code 2")
                .at("Dockerfile", 3, 3)
                .with_evidence("make: *** [all] Error 2"),
            Cause::ClockSkew.warning("the clock is 2h behind the registry's"),
        ];
        let v: serde_json::Value = serde_json::from_slice(&to_file_bytes(&diags)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["id"], "run-failed");
        assert_eq!(v[0]["evidence"][0], "make: *** [all] Error 2");
        assert_eq!(v[1]["severity"], "warning");
        assert!(to_file_bytes(&[]).starts_with(b"[]"));

        let mut out = Vec::new();
        write_lines(&mut out, &diags).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, d) in lines.iter().zip(&diags) {
            let back: Diagnostic = serde_json::from_str(line).unwrap();
            assert_eq!(&back, d);
        }
    }
}

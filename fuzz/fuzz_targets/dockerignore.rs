//! `.dockerignore` content and a path: compile and match without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::dockerfile::dockerignore::Matcher;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (patterns, path) = text.split_once('\0').unwrap_or((&text, "a/b/c.txt"));
    if let Ok(m) = Matcher::parse(patterns.as_bytes()) {
        let _ = m.is_excluded(path);
        let _ = m.can_skip_dir(path);
    }
});

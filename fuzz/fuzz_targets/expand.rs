//! The word expander on any word, with every lexer switch, against a small environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::dockerfile::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(rest);
    let mut lex = Lexer::new(if flags & 1 == 0 { '\\' } else { '`' });
    lex.raw_quotes = flags & 2 != 0;
    lex.raw_escapes = flags & 4 != 0;
    lex.skip_process_quotes = flags & 8 != 0;
    lex.skip_unset_env = flags & 16 != 0;
    let env: Vec<(String, String)> = vec![
        ("A".into(), "a b*c?".into()),
        ("EMPTY".into(), String::new()),
        ("P".into(), "/usr/local/bin:/usr/bin".into()),
    ];
    if let Ok(e) = lex.expand(&word, &env) {
        assert!(e.words.iter().all(|w| !w.is_empty()));
    }
});

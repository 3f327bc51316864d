//! Property tests of the frontend on random input: it always returns (never panics), and
//! every line span it reports lies within the file.

use proptest::prelude::*;
use rbuild::diagnose::Diagnostic;
use rbuild::dockerfile::dockerignore::Matcher;
use rbuild::dockerfile::shell::Lexer;
use rbuild::dockerfile::{self, Base, BuildOptions};

/// Pieces that make Dockerfile-shaped text: keywords, flags, quotes, escapes, heredocs,
/// JSON, variables, comments, directives, line endings.
const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "CMD ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "WORKDIR ",
    "USER ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "SHELL ",
    "EXPOSE ",
    "VOLUME ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "ENTRYPOINT ",
    "from ",
    " AS ",
    "busybox",
    "stage",
    "--from=",
    "--mount=type=cache,target=/c ",
    "--platform=$BUILDPLATFORM ",
    "--chown=1:1 ",
    "--link ",
    "--",
    "-",
    "=",
    "\\",
    "`",
    "\\\n",
    "`\n",
    "\n",
    "\r\n",
    "\n\n",
    " ",
    "\t",
    "\"",
    "'",
    "[",
    "]",
    ",",
    "[\"a\", \"b\"]",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF",
    "\tEOF",
    "$",
    "${",
    "}",
    "${A:-x}",
    "${A#*}",
    "${A//a/b}",
    "$A",
    "#",
    "# escape=`\n",
    "# syntax=docker/dockerfile:1\n",
    "# check=error=true\n",
    "/",
    ".",
    "é",
    "🦀",
    "\u{feff}",
    "\0",
    "0",
    "1",
    "CMD",
    "scratch",
];

fn dockerfile_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(TOKENS), 0..80)
            .prop_map(|t| t.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn within(d: &Diagnostic, lines: u32) -> bool {
    match (d.line, d.end_line) {
        (Some(l), Some(e)) => l >= 1 && l <= e && e <= lines,
        (None, None) => d.id == "unknown-target",
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_returns_and_spans_stay_in_the_file(bytes in dockerfile_text()) {
        let df = dockerfile::parse(&bytes, "Dockerfile");
        let lines = df.ast.lines.max(1);
        let _ = df.ast.dump();
        for n in &df.ast.nodes {
            prop_assert!(n.span.start >= 1 && n.span.start <= n.span.end && n.span.end <= lines, "{:?}", n.span);
        }
        let opts = BuildOptions { target: Some("stage".into()), ..BuildOptions::default() };
        for d in df.check(&opts) {
            prop_assert!(within(&d, lines), "{d:?} not within 1..={lines}");
            prop_assert!(d.file.as_deref() == Some("Dockerfile"));
        }
        let plan = df.plan(&opts);
        for i in 0..df.stages.len() {
            let env = match plan.stages[i].base { Base::Image(_) => None, _ => Some(Vec::new()) };
            let ex = df.expand_stage(&plan, &opts, i, env.as_deref());
            for step in &ex.steps {
                prop_assert!(step.instruction.span.end <= lines);
            }
        }
    }

    #[test]
    fn expander_returns_on_any_word(word in ".{0,40}", escape in prop::sample::select(vec!['\\', '`'])) {
        let env = vec![("A".to_owned(), "a b".to_owned()), ("E".to_owned(), String::new())];
        let mut lex = Lexer::new(escape);
        let _ = lex.expand(&word, &env);
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        lex.skip_unset_env = true;
        let _ = lex.expand(&word, &env);
    }

    #[test]
    fn dockerignore_returns_on_any_pattern(patterns in ".{0,60}", path in "[a-z/.*]{0,20}") {
        if let Ok(m) = Matcher::parse(patterns.as_bytes()) {
            let _ = m.is_excluded(&path);
            let _ = m.can_skip_dir(&path);
        }
    }
}

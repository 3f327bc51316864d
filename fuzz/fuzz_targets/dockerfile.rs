//! Any bytes as a Dockerfile: parse, dump, plan, expand every stage, check. None of it
//! may panic or hang, and every diagnostic must point inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::dockerfile::{self, Base, BuildOptions};

fuzz_target!(|data: &[u8]| {
    let df = dockerfile::parse(data, "Dockerfile");
    let _ = df.ast.dump();
    let lines = df.ast.lines.max(1);
    let opts = BuildOptions::default();
    let plan = df.plan(&opts);
    for i in 0..df.stages.len() {
        let env = match plan.stages[i].base {
            Base::Image(_) => None,
            _ => Some(Vec::new()),
        };
        let _ = df.expand_stage(&plan, &opts, i, env.as_deref());
    }
    for d in df.check(&opts) {
        if let (Some(l), Some(e)) = (d.line, d.end_line) {
            assert!(l >= 1 && l <= e && e <= lines, "{d:?} outside 1..={lines}");
        }
    }
    for n in &df.ast.nodes {
        assert!(n.span.start >= 1 && n.span.start <= n.span.end && n.span.end <= lines);
    }
});

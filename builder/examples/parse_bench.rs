//! Parsing speed: builds a realistic 5,000-line Dockerfile (multi-stage, global and stage
//! ARGs, ENV with expansions, RUN with continuations and mounts, COPY, heredocs) and
//! prints how long parse + plan + expansion of every stage takes.
//!
//! `cargo run --release -p rbuild --example parse_bench` (or `./scripts/bench-parse`).
//! It prints figures; it asserts nothing about time.

#![allow(clippy::print_stdout)] // a benchmark prints its figures on stdout

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rbuild::dockerfile::{self, Base, BuildOptions};

/// A Dockerfile of at least `lines` lines.
fn generate(lines: usize) -> String {
    let mut s =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=busybox:1.36\nARG VERSION=1.0.0\n");
    let mut stage = 0;
    while s.lines().count() < lines {
        let _ = write!(
            s,
            "FROM ${{BASE}} AS stage{stage}\n\
             ARG VERSION\n\
             ARG TARGETARCH\n\
             ENV APP_HOME=/opt/app{stage} PATH=/opt/app{stage}/bin:$PATH VERSION=${{VERSION:-dev}}\n\
             LABEL org.opencontainers.image.version=\"$VERSION\" stage=\"{stage}\"\n\
             WORKDIR $APP_HOME\n\
             RUN --mount=type=cache,target=/var/cache/apk,sharing=locked \\\n\
             \x20   set -eux; \\\n\
             \x20   apk add --no-cache curl git make; \\\n\
             \x20   # a comment inside the continuation\n\
             \x20   echo \"building ${{VERSION}} for $TARGETARCH\"\n\
             COPY --chown=1000:1000 src/ ${{APP_HOME}}/src/\n\
             COPY <<EOF ${{APP_HOME}}/config.ini\n\
             [app]\n\
             version = ${{VERSION}}\n\
             home = ${{APP_HOME%/*}}\n\
             EOF\n\
             RUN [\"/bin/sh\", \"-c\", \"make -C src\"]\n"
        );
        if stage > 0 {
            let _ = writeln!(s, "COPY --from=stage{} /opt /opt/prev", stage - 1);
        }
        let _ = writeln!(
            s,
            "HEALTHCHECK --interval=30s CMD [\"/opt/app{stage}/bin/check\"]"
        );
        stage += 1;
    }
    s
}

fn run(text: &[u8], opts: &BuildOptions) -> usize {
    let df = dockerfile::parse(text, "Dockerfile");
    let plan = df.plan(opts);
    let mut steps = 0;
    let mut envs: Vec<Option<Vec<(String, String)>>> = vec![None; df.stages.len()];
    for i in 0..df.stages.len() {
        let base = match plan.stages[i].base {
            Base::Image(_) => Some(vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
            Base::Scratch => Some(Vec::new()),
            Base::Stage(b) => envs[b].clone(),
        };
        let ex = df.expand_stage(&plan, opts, i, base.as_deref());
        steps += ex.steps.len();
        envs[i] = Some(ex.env);
    }
    steps + df.diagnostics.len()
}

fn main() {
    let text = generate(5_000);
    let lines = text.lines().count();
    let opts = BuildOptions::default();
    let df = dockerfile::parse(text.as_bytes(), "Dockerfile");
    assert!(
        !df.has_errors(),
        "the generated file must be valid: {:?}",
        df.diagnostics.first()
    );
    let stages = df.stages.len();
    let instructions = df.ast.nodes.len();

    let mut times: Vec<Duration> = Vec::new();
    let mut sink = 0;
    for _ in 0..3 {
        sink += run(text.as_bytes(), &opts); // warm-up
    }
    for _ in 0..25 {
        let t = Instant::now();
        sink += run(text.as_bytes(), &opts);
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "parse + plan + expand: {lines} lines, {instructions} instructions, {stages} stages, {} bytes",
        text.len()
    );
    println!(
        "  min {:.2} ms   median {:.2} ms   max {:.2} ms   ({} runs; target: well under 50 ms)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
    let t = Instant::now();
    let df = dockerfile::parse(text.as_bytes(), "Dockerfile");
    let parsed = t.elapsed();
    let plan = df.plan(&opts);
    let planned = t.elapsed();
    for i in 0..df.stages.len() {
        sink += df.expand_stage(&plan, &opts, i, Some(&[])).steps.len();
    }
    let expanded = t.elapsed();
    println!(
        "  one run by phase: parse {:.2} ms, plan {:.2} ms, expand {:.2} ms",
        ms(parsed),
        ms(planned.saturating_sub(parsed)),
        ms(expanded.saturating_sub(planned))
    );
    std::hint::black_box(sink);
}

//! The renderers: state of the steps, and the text each mode makes of it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{Event, Mode, Outcome, recv};

/// Lines of output kept per running step for the live view.
const TAIL: usize = 6;
/// Steps shown in the live view (the most recent ones).
const MAX_STEPS: usize = 24;

#[derive(Debug, Clone)]
struct Step {
    name: String,
    started: Instant,
    finished: Option<(Outcome, f64)>,
    tail: VecDeque<String>,
    partial: String,
}

/// Everything the renderers know.
#[derive(Debug)]
pub(super) struct State {
    start: Instant,
    steps: BTreeMap<u32, Step>,
    finished: Option<(bool, f64)>,
}

fn display_name(name: &str, platform: Option<&str>) -> String {
    match platform {
        Some(p) => format!("[{p}] {name}"),
        None => name.to_owned(),
    }
}

/// The plain-mode lines for one event (pure, for tests). `at` is when the event was sent.
pub(super) fn plain_line(state: &mut State, at: Instant, event: &Event) -> Vec<String> {
    let mut out = Vec::new();
    match event {
        Event::StepStarted {
            step,
            name,
            platform,
            ..
        } => {
            let name = display_name(name, platform.as_deref());
            out.push(format!("#{step} {name}"));
            state.steps.insert(
                *step,
                Step {
                    name,
                    started: at,
                    finished: None,
                    tail: VecDeque::new(),
                    partial: String::new(),
                },
            );
        }
        Event::StepLog { step, data, .. } => {
            if let Some(s) = state.steps.get_mut(step) {
                let secs = at.duration_since(s.started).as_secs_f64();
                s.partial.push_str(data);
                while let Some(nl) = s.partial.find('\n') {
                    let line: String = s.partial.drain(..=nl).collect();
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    out.push(format!("#{step} {secs:.3} {line}"));
                    push_tail(&mut s.tail, line);
                }
            }
        }
        Event::StepFinished {
            step,
            outcome,
            seconds,
        } => {
            if let Some(s) = state.steps.get_mut(step) {
                if !s.partial.is_empty() {
                    let line = std::mem::take(&mut s.partial);
                    let secs = at.duration_since(s.started).as_secs_f64();
                    out.push(format!("#{step} {secs:.3} {line}"));
                }
                s.finished = Some((*outcome, *seconds));
            }
            out.push(match outcome {
                Outcome::Done => format!("#{step} DONE {seconds:.1}s"),
                Outcome::Cached => format!("#{step} CACHED"),
                Outcome::Error => format!("#{step} ERROR {seconds:.1}s"),
                Outcome::Canceled => format!("#{step} CANCELED"),
            });
        }
        Event::Diagnostic { .. } => {}
        Event::BuildFinished {
            ok,
            seconds,
            executed,
            cached,
        } => {
            state.finished = Some((*ok, *seconds));
            let verdict = if *ok { "done" } else { "failed" };
            out.push(format!(
                "build {verdict} in {seconds:.1}s: {executed} step(s) run, {cached} cached"
            ));
        }
    }
    out
}

fn push_tail(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == TAIL {
        tail.pop_front();
    }
    tail.push_back(line);
}

/// The live view at `now` (pure, for tests): a header and one line per step, with the
/// output tail of running steps.
pub(super) fn tty_frame(state: &State, now: Instant, width: usize) -> Vec<String> {
    let total = state.steps.len();
    let done = state
        .steps
        .values()
        .filter(|s| s.finished.is_some())
        .count();
    let elapsed = state
        .finished
        .map_or_else(|| now.duration_since(state.start).as_secs_f64(), |(_, s)| s);
    let mut lines = vec![format!("[+] Building {elapsed:.1}s ({done}/{total})")];
    let skip = total.saturating_sub(MAX_STEPS);
    for s in state.steps.values().skip(skip) {
        let (mark, time) = match s.finished {
            Some((Outcome::Cached, _)) => ("=> CACHED ", String::new()),
            Some((Outcome::Done, secs)) => ("=> ", format!("{secs:.1}s")),
            Some((Outcome::Error, secs)) => ("=> ERROR ", format!("{secs:.1}s")),
            Some((Outcome::Canceled, _)) => ("=> CANCELED ", String::new()),
            None => (
                "=> ",
                format!("{:.1}s", now.duration_since(s.started).as_secs_f64()),
            ),
        };
        lines.push(fit(&format!("{mark}{}", s.name), &time, width));
        if s.finished.is_none() {
            for t in &s.tail {
                lines.push(fit(&format!(" => {t}"), "", width));
            }
        }
    }
    lines
}

/// `left` padded or cut so that `right` ends at `width` (by characters).
fn fit(left: &str, right: &str, width: usize) -> String {
    let room = width.saturating_sub(right.chars().count() + 1).max(10);
    let mut s: String = left
        .chars()
        .filter(|c| !c.is_control())
        .take(room)
        .collect();
    let pad = room.saturating_sub(s.chars().count());
    let _ = write!(s, "{:pad$} {right}", "");
    s.trim_end().to_owned()
}

impl State {
    fn new() -> Self {
        State {
            start: Instant::now(),
            steps: BTreeMap::new(),
            finished: None,
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&w: &usize| w >= 20)
        .unwrap_or(100)
}

pub(super) fn run(mode: Mode, rx: &Receiver<(Instant, super::Event)>, mut out: impl Write) {
    let mut state = State::new();
    let tick = (mode == Mode::Tty).then_some(Duration::from_millis(100));
    let width = terminal_width();
    let mut drawn = 0usize;
    loop {
        let event = recv(rx, tick);
        match mode {
            Mode::Json => {
                let Ok(Some((_, event))) = event else { break };
                if let Ok(line) = serde_json::to_string(&event) {
                    let _ = writeln!(out, "{line}");
                }
            }
            Mode::Plain => {
                let Ok(Some((at, event))) = event else { break };
                for line in plain_line(&mut state, at, &event) {
                    let _ = writeln!(out, "{line}");
                }
            }
            Mode::Tty => {
                let closed = event.is_err();
                if let Ok(Some((at, event))) = event {
                    plain_line(&mut state, at, &event);
                }
                let frame = tty_frame(&state, Instant::now(), width);
                let mut buf = String::new();
                if drawn > 0 {
                    let _ = write!(buf, "\x1b[{drawn}A");
                }
                for line in &frame {
                    let _ = writeln!(buf, "\x1b[2K{line}");
                }
                // Clear what is left of a taller previous frame.
                for _ in frame.len()..drawn {
                    buf.push_str("\x1b[2K\n");
                }
                let extra = drawn.saturating_sub(frame.len());
                if extra > 0 {
                    let _ = write!(buf, "\x1b[{extra}A");
                }
                drawn = frame.len();
                let _ = out.write_all(buf.as_bytes());
                if closed {
                    break;
                }
            }
            Mode::Quiet => break,
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::super::{Renderer, Stream};
    use super::*;
    use std::sync::{Arc, Mutex};

    fn started(step: u32, name: &str, platform: Option<&str>) -> Event {
        Event::StepStarted {
            step,
            name: name.to_owned(),
            platform: platform.map(str::to_owned),
            line: Some(step + 1),
        }
    }

    fn log(step: u32, data: &str) -> Event {
        Event::StepLog {
            step,
            stream: Stream::Stdout,
            data: data.to_owned(),
        }
    }

    #[test]
    fn plain_lines_number_steps_and_reassemble_output_lines() {
        let mut st = State::new();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1500);
        let mut all = Vec::new();
        all.extend(plain_line(
            &mut st,
            t0,
            &started(1, "[1/2] FROM busybox", None),
        ));
        all.extend(plain_line(
            &mut st,
            t0,
            &started(2, "[2/2] RUN make", Some("linux/arm64")),
        ));
        all.extend(plain_line(&mut st, t1, &log(2, "compil")));
        all.extend(plain_line(&mut st, t1, &log(2, "ing\nlinking\r\nlast")));
        all.extend(plain_line(
            &mut st,
            t1,
            &Event::StepFinished {
                step: 1,
                outcome: Outcome::Cached,
                seconds: 0.0,
            },
        ));
        all.extend(plain_line(
            &mut st,
            t1,
            &Event::StepFinished {
                step: 2,
                outcome: Outcome::Error,
                seconds: 1.5,
            },
        ));
        assert_eq!(
            all,
            [
                "#1 [1/2] FROM busybox",
                "#2 [linux/arm64] [2/2] RUN make",
                "#2 1.500 compiling",
                "#2 1.500 linking",
                "#1 CACHED",
                "#2 1.500 last",
                "#2 ERROR 1.5s",
            ]
        );
    }

    #[test]
    fn tty_frame_shows_status_time_and_tail_of_running_steps() {
        let mut st = State::new();
        let t0 = st.start;
        plain_line(&mut st, t0, &started(1, "[1/3] FROM busybox", None));
        plain_line(
            &mut st,
            t0,
            &Event::StepFinished {
                step: 1,
                outcome: Outcome::Cached,
                seconds: 0.0,
            },
        );
        plain_line(&mut st, t0, &started(2, "[2/3] RUN make", None));
        for i in 0..10 {
            plain_line(&mut st, t0, &log(2, &format!("line {i}\n")));
        }
        let frame = tty_frame(&st, t0 + Duration::from_secs(2), 40);
        assert_eq!(frame[0], "[+] Building 2.0s (1/2)");
        assert_eq!(frame[1], "=> CACHED [1/3] FROM busybox");
        assert!(
            frame[2].starts_with("=> [2/3] RUN make") && frame[2].ends_with("2.0s"),
            "{frame:?}"
        );
        assert_eq!(frame[2].chars().count(), 40);
        let tail: Vec<String> = (4..10).map(|i| format!(" => line {i}")).collect();
        assert_eq!(frame[3..], tail[..]);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_mode_writes_one_event_per_line_with_contract_fields() {
        let buf = Buf::default();
        let (p, r) = Renderer::start(Mode::Json, buf.clone());
        p.send(started(1, "[1/1] RUN true", Some("linux/amd64")));
        p.send(log(1, "hi\n"));
        p.send(Event::StepFinished {
            step: 1,
            outcome: Outcome::Done,
            seconds: 0.25,
        });
        p.send(Event::BuildFinished {
            ok: true,
            seconds: 0.5,
            executed: 1,
            cached: 0,
        });
        drop(p);
        r.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"type": "step_started", "step": 1, "name": "[1/1] RUN true", "platform": "linux/amd64", "line": 2}),
                serde_json::json!({"type": "step_log", "step": 1, "stream": "stdout", "data": "hi\n"}),
                serde_json::json!({"type": "step_finished", "step": 1, "outcome": "done", "seconds": 0.25}),
                serde_json::json!({"type": "build_finished", "ok": true, "seconds": 0.5, "executed": 1, "cached": 0}),
            ]
        );
    }

    #[test]
    fn diagnostic_events_flatten_the_diagnostic_record() {
        let d = crate::diagnose::Diagnostic::new(
            "run-failed",
            crate::diagnose::Severity::Error,
            "t",
            "m",
        )
        .at("Dockerfile", 3, 4);
        let v = serde_json::to_value(Event::Diagnostic { diagnostic: d }).unwrap();
        assert_eq!(v["type"], "diagnostic");
        assert_eq!(v["id"], "run-failed");
        assert_eq!(v["line"], 3);
    }
}

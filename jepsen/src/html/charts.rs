//! Inline SVG charts for the report: a per-client timeline, latency over time
//! (log scale) and throughput per second, each with the fault windows shaded.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use super::{esc, Op, Window};
use crate::history::EventType;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 70.0;
const PLOT: f64 = WIDTH - LEFT - 10.0;

fn x(t: u64, end: u64) -> f64 {
    LEFT + PLOT * t as f64 / end as f64
}

/// Shaded fault windows and a time axis, for a plot `top..bottom`.
fn frame(s: &mut String, windows: &[Window], end: u64, top: f64, bottom: f64) {
    for w in windows {
        let (a, b) = (x(w.start, end), x(w.end, end));
        let _ = write!(
            s,
            "<rect x=\"{a:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#999\" \
             fill-opacity=\"0.22\"><title>{}</title></rect>",
            (b - a).max(1.0),
            bottom - top,
            esc(&w.label)
        );
    }
    let secs = end as f64 / 1e9;
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]
        .into_iter()
        .find(|st| secs / st <= 15.0)
        .unwrap_or(600.0);
    let mut t = 0.0;
    while t <= secs {
        let px = x((t * 1e9) as u64, end);
        let _ = write!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{top}\" x2=\"{px:.1}\" y2=\"{bottom}\" stroke=\"#eee\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{t:.0}s</text>",
            bottom + 12.0
        );
        t += step;
    }
}

fn color(kind: EventType) -> &'static str {
    match kind {
        EventType::Ok => "#2a2",
        EventType::Fail => "#d55",
        _ => "#e90",
    }
}

/// One row per client; `marked` (process, call) ops are outlined.
pub fn timeline(ops: &[Op], windows: &[Window], end: u64, marked: &HashSet<(u64, u64)>) -> String {
    let procs: BTreeSet<(u64, &str)> = ops.iter().map(|o| (o.process, o.node.as_str())).collect();
    let row = 12.0;
    let height = 20.0 + row * procs.len() as f64;
    let index: std::collections::HashMap<u64, usize> = procs
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i))
        .collect();
    let mut s = format!(
        "<svg width=\"{WIDTH}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        height + 16.0
    );
    frame(&mut s, windows, end, 4.0, height);
    for (i, (p, node)) in procs.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"2\" y=\"{:.1}\" font-size=\"10\">p{p} {}</text>",
            12.0 + row * i as f64,
            esc(node)
        );
    }
    for o in ops {
        let y = 4.0 + row * index[&o.process] as f64 + 1.0;
        let a = x(o.call, end);
        let b = x(o.ret.unwrap_or(end), end);
        let outline = if marked.contains(&(o.process, o.call)) {
            " stroke=\"#000\" stroke-width=\"1.5\""
        } else {
            ""
        };
        let latency = o.ret.map_or("never returned".into(), |r| {
            format!("{:.1} ms", (r - o.call) as f64 / 1e6)
        });
        let _ = write!(
            s,
            "<rect x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"{outline}>\
             <title>p{} {} {} {} {} : {:?} ({latency}, at {:.3} s)</title></rect>",
            (b - a).max(0.8),
            row - 3.0,
            color(o.kind),
            o.process,
            esc(&o.node),
            esc(&o.f),
            esc(o.key.as_deref().unwrap_or("")),
            esc(&o.value.to_string()),
            o.kind,
            o.call as f64 / 1e9
        );
    }
    s.push_str("</svg>");
    s
}

/// Latency of completed ops (log scale, 0.1 ms to 10 s), by outcome.
pub fn latency(ops: &[Op], windows: &[Window], end: u64) -> String {
    let (top, bottom) = (6.0, 246.0);
    let mut s = format!(
        "<svg width=\"{WIDTH}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        bottom + 18.0
    );
    frame(&mut s, windows, end, top, bottom);
    let (lo, hi) = (-4.0f64, 1.0f64); // log10 seconds
    let y =
        |secs: f64| bottom - (bottom - top) * ((secs.max(1e-4).log10() - lo) / (hi - lo)).min(1.0);
    for (label, secs) in [
        ("0.1ms", 1e-4),
        ("1ms", 1e-3),
        ("10ms", 1e-2),
        ("100ms", 0.1),
        ("1s", 1.0),
        ("10s", 10.0),
    ] {
        let py = y(secs);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{WIDTH}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{label}</text>",
            LEFT - 4.0,
            py + 3.0
        );
    }
    for o in ops {
        let Some(r) = o.ret else { continue };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"{}\"/>",
            x(o.call, end),
            y((r - o.call) as f64 / 1e9),
            color(o.kind)
        );
    }
    s.push_str("</svg>");
    s
}

/// Completions per second, one line per outcome.
pub fn throughput(ops: &[Op], windows: &[Window], end: u64) -> String {
    let (top, bottom) = (6.0, 166.0);
    let buckets = (end / 1_000_000_000 + 1) as usize;
    let mut counts = vec![[0u32; 3]; buckets];
    for o in ops {
        let Some(r) = o.ret else { continue };
        let i = match o.kind {
            EventType::Ok => 0,
            EventType::Fail => 1,
            _ => 2,
        };
        counts[(r / 1_000_000_000) as usize][i] += 1;
    }
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        "<svg width=\"{WIDTH}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        bottom + 18.0
    );
    frame(&mut s, windows, end, top, bottom);
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{max:.0}/s</text>\
         <text x=\"{:.1}\" y=\"{bottom}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        top + 8.0,
        LEFT - 4.0
    );
    for (i, kind) in [EventType::Ok, EventType::Fail, EventType::Info]
        .into_iter()
        .enumerate()
    {
        let pts: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(b, c)| {
                let t = (b as u64 * 1_000_000_000 + 500_000_000).min(end);
                format!(
                    "{:.1},{:.1}",
                    x(t, end),
                    bottom - (bottom - top) * c[i] as f64 / max
                )
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            color(kind),
            pts.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

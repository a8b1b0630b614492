//! The run's self-contained HTML report (`report.html`): the verdict per
//! checker, recovery, warnings, the anomaly window in text, a timeline of
//! operations per client with the nemesis windows shaded (operations of the
//! window outlined), latency and throughput over time, and the fault list.
//! Charts are inline SVG drawn here ([`charts`]); no script, nothing fetched.

pub mod charts;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::history::EventType;
use crate::recorder::{Actor, Record};
use crate::run::{Config, Outcome};

/// An operation as the report draws it.
#[derive(Debug, Clone)]
pub struct Op {
    pub process: u64,
    pub node: String,
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub call: u64,
    /// `None`: never completed.
    pub ret: Option<u64>,
    pub kind: EventType,
}

/// A fault window.
#[derive(Debug, Clone)]
pub struct Window {
    pub label: String,
    pub start: u64,
    pub end: u64,
}

/// Pairs records into operations and fault windows; `end` closes what is open.
pub fn pair(records: &[Record], end: u64) -> (Vec<Op>, Vec<Window>) {
    let mut open: BTreeMap<u64, Op> = BTreeMap::new();
    let mut ops = Vec::new();
    let mut windows = Vec::new();
    let mut fault: Option<(String, u64)> = None;
    for r in records {
        match r.process {
            Actor::Nemesis => {
                let label = format!(
                    "{}: {}",
                    r.value["fault"].as_str().unwrap_or(""),
                    r.value["detail"].as_str().unwrap_or("")
                );
                if r.f == "start" {
                    fault = Some((label, r.time));
                } else if let Some((label, start)) = fault.take() {
                    windows.push(Window {
                        label,
                        start,
                        end: r.time,
                    });
                }
            }
            Actor::Client(p) => {
                if r.kind == EventType::Invoke {
                    open.insert(
                        p,
                        Op {
                            process: p,
                            node: r.node.clone().unwrap_or_default(),
                            f: r.f.clone(),
                            key: r.key.clone(),
                            value: r.value.clone(),
                            call: r.time,
                            ret: None,
                            kind: EventType::Info,
                        },
                    );
                } else if let Some(mut op) = open.remove(&p) {
                    op.ret = Some(r.time);
                    op.kind = r.kind;
                    if r.kind == EventType::Ok {
                        op.value = r.value.clone();
                    }
                    ops.push(op);
                }
            }
        }
    }
    ops.extend(open.into_values());
    if let Some((label, start)) = fault {
        windows.push(Window { label, start, end });
    }
    ops.sort_by_key(|o| o.call);
    (ops, windows)
}

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
.ok{color:#070}.bad{color:#b00;font-weight:bold}pre{background:#f6f6f6;padding:8px;overflow:auto}\
svg{border:1px solid #ddd;margin:6px 0}.legend span{display:inline-block;margin-right:1em}";

/// The whole page.
pub fn page(cfg: &Config, o: &Outcome, records: &[Record]) -> String {
    let end = records.iter().map(|r| r.time).max().unwrap_or(0).max(1);
    let (ops, windows) = pair(records, end);
    let marked: HashSet<(u64, u64)> = o
        .checks
        .iter()
        .filter_map(|c| c.verdict.as_ref()?.counterexample.as_ref())
        .flat_map(|c| c.window.iter().map(|v| (v.process, v.call)))
        .collect();
    let mut h = String::new();
    let verdict = if o.valid() { "VALID" } else { "INVALID" };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>keel-jepsen {} {}</title>\
         <style>{STYLE}</style></head><body>",
        esc(&cfg.workload),
        verdict
    );
    let class = if o.valid() { "ok" } else { "bad" };
    let _ = write!(
        h,
        "<h1>keel-jepsen: <span class=\"{class}\">{verdict}</span></h1><p>{:?}, {} members{}, \
         workload <b>{}</b>, nemesis <b>{}</b>, {:.0} s, seed {}; {} operations (ok {}, fail {}, \
         info {}), {} faults; run folder <code>{}</code></p>",
        cfg.db,
        cfg.nodes,
        if cfg.netns {
            " in network namespaces"
        } else {
            " on loopback"
        },
        esc(&cfg.workload),
        esc(&cfg.nemesis),
        cfg.time_limit.as_secs_f64(),
        cfg.seed,
        ops.len(),
        o.ok,
        o.fail,
        o.info,
        o.faults.len(),
        esc(&o.dir.display().to_string())
    );
    h.push_str("<table><tr><th>checker</th><th>valid</th><th>detail</th><th>time</th></tr>");
    for c in &o.checks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{} ms</td></tr>",
            esc(&c.name),
            if c.valid { "ok" } else { "bad" },
            if c.valid { "yes" } else { "NO" },
            esc(&c.summary),
            c.millis
        );
    }
    let _ = write!(
        h,
        "<tr><td>recovery</td><td class=\"{}\">{}</td><td>{}</td><td></td></tr></table>",
        if o.recovery.ok { "ok" } else { "bad" },
        if o.recovery.ok { "yes" } else { "NO" },
        esc(&o.recovery.detail)
    );
    for w in &o.warnings {
        let _ = write!(h, "<p>warning: {}</p>", esc(w));
    }
    for c in &o.crashes {
        let _ = write!(h, "<p class=\"bad\">member crash:</p><pre>{}</pre>", esc(c));
    }
    for c in o.checks.iter().filter(|c| !c.valid) {
        let _ = write!(
            h,
            "<h2>Anomaly: {}</h2><p>The operations of the window are outlined in black in \
             the timeline.</p><pre>{}</pre>",
            esc(&c.name),
            esc(&c.text)
        );
    }
    h.push_str(
        "<h2>Timeline</h2><p class=\"legend\"><span style=\"color:#2a2\">&#9632; ok</span>\
        <span style=\"color:#d55\">&#9632; fail</span><span style=\"color:#e90\">&#9632; info \
        (unknown, drawn to its timeout or the end)</span><span style=\"color:#aaa\">&#9632; fault \
        in force</span>. One row per client (its member in the label); hover for details.</p>",
    );
    h.push_str(&charts::timeline(&ops, &windows, end, &marked));
    h.push_str("<h2>Latency</h2>");
    h.push_str(&charts::latency(&ops, &windows, end));
    h.push_str("<h2>Throughput</h2>");
    h.push_str(&charts::throughput(&ops, &windows, end));
    h.push_str("<h2>Faults</h2><table><tr><th>start (s)</th><th>end (s)</th><th>nemesis</th><th>what</th></tr>");
    for f in &o.faults {
        let _ = write!(
            h,
            "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            f.start as f64 / 1e9,
            f.end
                .map_or("-".into(), |e| format!("{:.1}", e as f64 / 1e9)),
            esc(&f.nemesis),
            esc(&f.detail),
            if f.errors.is_empty() {
                String::new()
            } else {
                format!(" <b>errors: {}</b>", esc(&f.errors.join("; ")))
            }
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

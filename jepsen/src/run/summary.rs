//! The end of a run: the verdict table printed on stdout, and the files of the
//! run folder that hold it (`verdict.txt`, `results.json`, `report.html`).

use std::fmt::Write as _;

use super::{Config, Outcome};
use crate::error::harness;
use crate::recorder::Record;
use crate::Result;

/// The verdict table (and, for invalid checks, their explanation).
pub fn table(cfg: &Config, o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "keel-jepsen: {:?}, {} members{}, workload {}, nemesis {}, {:.0} s, seed {}",
        cfg.db,
        cfg.nodes,
        if cfg.netns { " (netns)" } else { "" },
        cfg.workload,
        if cfg.nemesis.is_empty() {
            "none"
        } else {
            &cfg.nemesis
        },
        cfg.time_limit.as_secs_f64(),
        cfg.seed
    );
    let _ = writeln!(
        s,
        "operations: {} (ok {}, fail {}, info {}); faults injected: {}",
        o.ok + o.fail + o.info,
        o.ok,
        o.fail,
        o.info,
        o.faults.len()
    );
    for w in &o.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for c in &o.crashes {
        let _ = writeln!(s, "CRASH: {c}");
    }
    for c in o.checks.iter().filter(|c| !c.valid) {
        let _ = writeln!(s, "\n{}:\n{}", c.name, c.text);
    }
    let _ = writeln!(s, "\n{:<26} {:<6} detail", "checker", "valid");
    for c in &o.checks {
        let _ = writeln!(
            s,
            "{:<26} {:<6} {} (checked in {} ms)",
            c.name,
            yes(c.valid),
            c.summary,
            c.millis
        );
    }
    let _ = writeln!(
        s,
        "{:<26} {:<6} {}",
        "recovery",
        yes(o.recovery.ok),
        o.recovery.detail
    );
    for c in &o.checks {
        if let Some(v) = &c.verdict {
            let _ = writeln!(s, "linearizable: {}", v.linearizable);
        }
    }
    let verdict = if o.interrupted {
        "INTERRUPTED"
    } else if o.valid() {
        "VALID"
    } else {
        "INVALID"
    };
    let _ = writeln!(
        s,
        "verdict: {verdict} in {:.1} s; run folder: {}",
        o.seconds,
        o.dir.display()
    );
    s
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// Writes `verdict.txt`, `results.json` and `report.html`.
pub fn write_files(cfg: &Config, o: &Outcome, records: &[Record]) -> Result<()> {
    let write = |name: &str, text: &str| {
        std::fs::write(o.dir.join(name), text).map_err(|e| harness(format!("{name}: {e}")))
    };
    let mut verdict = table(cfg, o);
    for c in &o.checks {
        let _ = write!(verdict, "\n== {} ==\n{}", c.name, c.text);
    }
    write("verdict.txt", &verdict)?;
    write(
        "results.json",
        &serde_json::to_string_pretty(o).expect("outcome serializes"),
    )?;
    write("report.html", &crate::html::page(cfg, o, records))
}

//! keel-jepsen's own history format: JSON lines, one event a line.
//!
//! ```json
//! {"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"time":1042}
//! {"process":3,"type":"ok","f":"cas","key":"k1","value":[1,2],"time":2077}
//! ```
//! - `process` (alias `client`): the client id; one call at a time per client.
//! - `type`: `invoke`, `ok`, `fail` (certainly no effect) or `info` (unknown).
//! - `f`: the function (the model decides which it knows); `key`: optional.
//! - `value`: any JSON; the argument on invoke, the result on `ok`; default null.
//! - `time`: monotonic time in nanoseconds (any origin); ties count as concurrent.
//!
//! Unknown fields (`error`, `node` ...) are ignored, so recorders may add context.
//! Lines whose `process` is the string `"nemesis"` record faults (the harness's
//! start and end of each fault); they are skipped here, as Jepsen's checkers
//! skip `:nemesis` operations.

use serde::Deserialize;
use serde_json::Value;

use super::{Event, EventType, ProcessId};
use crate::{Error, Result};

/// A client id, or a name for the harness's own lines (only `"nemesis"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Process {
    Client(ProcessId),
    Named(String),
}

#[derive(Deserialize)]
struct Line {
    #[serde(alias = "client")]
    process: Process,
    #[serde(rename = "type")]
    kind: EventType,
    f: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Value,
    time: u64,
}

/// The `process` of fault lines, skipped by [`parse`].
pub const NEMESIS: &str = "nemesis";

/// Parses JSON lines into events; blank lines are skipped.
pub fn parse(lines: &[&str]) -> Result<Vec<Event>> {
    let mut events = Vec::with_capacity(lines.len());
    for (i, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let l: Line =
            serde_json::from_str(text).map_err(|e| Error::input(i + 1, text, e.to_string()))?;
        let process = match l.process {
            Process::Client(p) => p,
            Process::Named(name) if name == NEMESIS => continue,
            Process::Named(name) => {
                return Err(Error::input(
                    i + 1,
                    text,
                    format!("process must be a number or \"{NEMESIS}\", not {name:?}"),
                ))
            }
        };
        events.push(Event {
            process,
            kind: l.kind,
            f: l.f,
            key: l.key,
            value: l.value,
            time: l.time,
            line: i + 1,
        });
    }
    Ok(events)
}

/// Formats one event as a line of this format (no trailing newline).
pub fn to_line(e: &Event) -> String {
    let mut v = serde_json::json!({
        "process": e.process,
        "type": e.kind,
        "f": e.f,
        "value": e.value,
        "time": e.time,
    });
    if let Some(key) = &e.key {
        v["key"] = Value::String(key.clone());
    }
    v.to_string()
}

//! Histories: what clients invoked and saw, as [`Event`]s and paired [`Operation`]s.
//!
//! A history is a sequence of events, one per line in a file. Each client
//! (process) runs one call at a time: an `invoke` is closed by its process's next
//! `ok`, `fail` or `info`. Pairing turns the events into operations, with these
//! rules (Jepsen's):
//! - `ok`: the operation took effect between its call and its return;
//! - `fail`: it certainly did not take effect, so it is dropped;
//! - `info` (or an invocation never closed): unknown. It may or may not take
//!   effect, at any time after its call, so its return time is +infinity.
//!
//! Three file formats are read, detected by the first non-blank line: keel's own
//! JSON lines ([`own`], documented in `jepsen/README.md`) and the two formats of
//! Porcupine's test data ([`porcupine`]). Writing histories is left to the
//! workloads that will record them.

pub mod edn;
pub mod own;
pub mod porcupine;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// A client (Jepsen process) id.
pub type ProcessId = u64;
/// An operation's index in [`History::ops`].
pub type OpId = usize;

/// The type of an event, as Jepsen names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of a history.
#[derive(Clone, Debug)]
pub struct Event {
    pub process: ProcessId,
    pub kind: EventType,
    /// The function called (`read`, `write`, `cas`, `get`, `put`, `append` ...).
    pub f: String,
    /// The key, for workloads over many keys.
    pub key: Option<String>,
    /// The argument on `invoke`, the result on `ok`.
    pub value: Value,
    /// Monotonic time (ns in keel's format; the event's index in Porcupine's).
    pub time: u64,
    /// 1-based line number in the source.
    pub line: usize,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, Serialize)]
pub struct Operation {
    pub id: OpId,
    pub process: ProcessId,
    pub f: String,
    pub key: Option<String>,
    /// The value given on invoke.
    pub input: Value,
    /// The value returned on `ok`; `None` when the outcome is unknown (`info`).
    pub output: Option<Value>,
    /// Time of the call.
    pub call: u64,
    /// Time of the return; `None` means +infinity (never returned).
    pub ret: Option<u64>,
    /// Line of the invocation in the source.
    pub line: usize,
    /// Text of the invocation line, for error messages.
    #[serde(skip)]
    pub text: String,
}

impl Operation {
    /// Whether the outcome is unknown (`info`, or never completed).
    pub fn is_indeterminate(&self) -> bool {
        self.ret.is_none()
    }

    /// An input error pointing at this operation's invocation line.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::input(self.line, &self.text, reason)
    }
}

/// A history of paired operations, in invocation order.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Operation>,
}

impl History {
    /// Pairs events (in file order) into operations; see the module docs.
    /// `text(line)` gives a line's text for error messages.
    pub fn from_events<'a>(events: &[Event], text: impl Fn(usize) -> &'a str) -> Result<History> {
        let mut open: HashMap<ProcessId, usize> = HashMap::new();
        let mut ops: Vec<Option<Operation>> = Vec::new();
        for e in events {
            match e.kind {
                EventType::Invoke => {
                    if let Some(&prev) = open.get(&e.process) {
                        let prev_line = ops[prev].as_ref().map_or(0, |o| o.line);
                        return Err(Error::input(
                            e.line,
                            text(e.line),
                            format!(
                                "process {} invoked while its call on line {prev_line} is open",
                                e.process
                            ),
                        ));
                    }
                    open.insert(e.process, ops.len());
                    ops.push(Some(Operation {
                        id: 0,
                        process: e.process,
                        f: e.f.clone(),
                        key: e.key.clone(),
                        input: e.value.clone(),
                        output: None,
                        call: e.time,
                        ret: None,
                        line: e.line,
                        text: text(e.line).to_string(),
                    }));
                }
                kind => {
                    let Some(idx) = open.remove(&e.process) else {
                        return Err(Error::input(
                            e.line,
                            text(e.line),
                            format!("process {} completes a call it never invoked", e.process),
                        ));
                    };
                    let op = ops[idx].as_mut().expect("open ops are present");
                    if op.f != e.f || (e.key.is_some() && op.key != e.key) {
                        return Err(Error::input(
                            e.line,
                            text(e.line),
                            format!("does not match the invocation on line {}", op.line),
                        ));
                    }
                    if e.time < op.call {
                        return Err(Error::input(e.line, text(e.line), "time goes backwards"));
                    }
                    match kind {
                        EventType::Ok => {
                            op.ret = Some(e.time);
                            op.output = Some(e.value.clone());
                        }
                        EventType::Fail => ops[idx] = None,
                        _ => {} // info: stays open forever
                    }
                }
            }
        }
        let mut ops: Vec<Operation> = ops.into_iter().flatten().collect();
        for (id, op) in ops.iter_mut().enumerate() {
            op.id = id;
        }
        Ok(History { ops })
    }

    /// Parses a history in any supported format, detected from the content.
    pub fn parse(content: &str) -> Result<History> {
        let lines: Vec<&str> = content.lines().collect();
        let text = |line: usize| lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
        let Some((idx, first)) = lines.iter().enumerate().find(|(_, l)| !l.trim().is_empty())
        else {
            return Ok(History::default());
        };
        let first = first.trim_start();
        let events = if first.starts_with("{:") {
            porcupine::parse_edn_lines(&lines)?
        } else if first.starts_with('{') {
            own::parse(&lines)?
        } else if first.contains("jepsen.util") {
            porcupine::parse_jepsen_log(&lines)?
        } else {
            return Err(Error::input(idx + 1, first, "unrecognised history format"));
        };
        History::from_events(&events, text)
    }

    /// Reads and parses a history file.
    pub fn read(path: &Path) -> Result<History> {
        let content = std::fs::read_to_string(path).map_err(|error| Error::Io {
            path: path.to_path_buf(),
            error,
        })?;
        History::parse(&content)
    }
}

#[cfg(test)]
mod tests;

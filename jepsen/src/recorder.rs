//! The recorder: every client call and every fault, as they happen, into
//! `history.jsonl` (the checker's own JSON-lines format, see
//! [`crate::history::own`]) and into memory for the report.
//!
//! Times are nanoseconds since the run started, from one monotonic clock, and
//! taken under the same lock as the write, so the file is in time order. Client
//! lines carry `node` (the member the client is pinned to) and, on failures,
//! `error`; fault lines have `"process":"nemesis"`, `"type":"info"`, `f`
//! `start` or `stop`, and a value `{"fault":..,"detail":..}` (the checker
//! skips them).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::harness;
use crate::history::own::NEMESIS;
use crate::history::{EventType, ProcessId};
use crate::Result;

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Client(ProcessId),
    Nemesis,
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Actor::Client(p) => s.serialize_u64(*p),
            Actor::Nemesis => s.serialize_str(NEMESIS),
        }
    }
}

/// One recorded line.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub process: Actor,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: Value,
    pub time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts for the progress line.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

struct Inner {
    records: Vec<Record>,
    out: BufWriter<File>,
    error: Option<std::io::Error>,
}

/// Thread-safe history recorder.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
    pub counts: Counts,
    /// The fault in force, for the progress line.
    current: Mutex<Option<String>>,
}

impl Recorder {
    /// Records into `path` (created), with time 0 = now.
    pub fn create(path: &Path) -> Result<Recorder> {
        let f = File::create(path).map_err(|e| harness(format!("{}: {e}", path.display())))?;
        Ok(Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                records: Vec::new(),
                out: BufWriter::new(f),
                error: None,
            }),
            counts: Counts::default(),
            current: Mutex::new(None),
        })
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends a record, stamping its time; returns the time.
    pub fn record(&self, mut r: Record) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        r.time = self.now();
        match r.kind {
            EventType::Ok => self.counts.ok.fetch_add(1, Ordering::Relaxed),
            EventType::Fail => self.counts.fail.fetch_add(1, Ordering::Relaxed),
            EventType::Info if r.process != Actor::Nemesis => {
                self.counts.info.fetch_add(1, Ordering::Relaxed)
            }
            _ => 0,
        };
        let line = serde_json::to_string(&r).expect("records serialize");
        if let Err(e) = writeln!(inner.out, "{line}") {
            inner.error.get_or_insert(e);
        }
        let t = r.time;
        inner.records.push(r);
        t
    }

    /// A fault started (`start`) or ended (`stop`).
    pub fn nemesis(&self, f: &str, fault: &str, detail: &str) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            (f == "start").then(|| format!("{fault}: {detail}"));
        self.record(Record {
            process: Actor::Nemesis,
            kind: EventType::Info,
            f: f.to_string(),
            key: None,
            value: serde_json::json!({"fault": fault, "detail": detail}),
            time: 0,
            node: None,
            error: None,
        });
    }

    /// The fault in force, if any.
    pub fn current_fault(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .clone()
    }

    /// Flushes the file; reports the first write error, if any.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.error.take() {
            return Err(harness(format!("writing the history: {e}")));
        }
        inner.out.flush().map_err(harness)
    }
}

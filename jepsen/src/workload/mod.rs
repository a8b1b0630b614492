//! Workloads: what the clients do, and how the result is checked.
//!
//! A [`Workload`] runs one client loop per client ([`Workload::run_client`],
//! each client pinned to one member, so that a member serving stale data shows
//! up), a final phase after every fault is healed ([`Workload::finish`]: reads
//! on every member, which also proves the cluster recovered), and its checkers
//! over the recorded history ([`Workload::check`]).
//!
//! The trait is deliberately loose about what a client does, so that the
//! workloads still to come fit: list-append (Elle-style transactions: a client
//! op is a txn, the checker a dependency-cycle search), watch (a client is a
//! long-lived watcher that records the events it saw; its checker applies
//! etcd's watch guarantees to them) and lock (lease-backed critical sections,
//! checked for mutual exclusion). Today: [`register::Register`],
//! [`list_append::ListAppend`], [`watch::Watch`] and [`lock::Lock`].
//!
//! Recording rules (Jepsen's): an operation is `invoke`d, then `ok` (it took
//! effect), `fail` (it certainly did not) or `info` (unknown: timed out, the
//! connection broke, the leader changed). [`outcome_of_error`] sorts errors.

pub mod list_append;
pub mod lock;
pub mod register;
pub mod watch;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::history::{EventType, ProcessId};
use crate::recorder::{Actor, Record, Recorder};
use crate::Result;

/// A boxed future, so that [`Workload`] stays object-safe.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One client's view of the run.
#[derive(Clone)]
pub struct ClientCtx {
    pub process: ProcessId,
    /// The member the client is pinned to.
    pub node: String,
    pub client: keel_client::Client,
    pub recorder: Arc<Recorder>,
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
    /// A call that has not answered by then is recorded as unknown.
    pub op_timeout: Duration,
    /// Mean pause between a client's operations.
    pub pace: Duration,
}

impl ClientCtx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The pause between two of a client's operations: uniform with the
    /// configured mean, 100 ms longer after one that did not succeed, so a
    /// client of a dead member does not spin.
    pub async fn pause(&self, rng: &mut impl rand::Rng, succeeded: bool) {
        let mean = self.pace.as_secs_f64();
        let mut pause = Duration::from_secs_f64(rng.gen_range(0.0..=2.0 * mean));
        if !succeeded {
            pause += Duration::from_millis(100);
        }
        tokio::time::sleep(pause).await;
    }

    /// Records an invocation, runs `call` with the op timeout, records its
    /// completion; returns the outcome. A timeout is `timeout_kind` (`Info`
    /// for writes, `Fail` for reads, which have no effect).
    pub async fn perform<F>(
        &self,
        f: &str,
        key: Option<&str>,
        input: Value,
        timeout_kind: EventType,
        call: F,
    ) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let rec = |kind, value, error| Record {
            process: Actor::Client(self.process),
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time: 0,
            node: Some(self.node.clone()),
            error,
        };
        self.recorder
            .record(rec(EventType::Invoke, input.clone(), None));
        let outcome = match tokio::time::timeout(self.op_timeout, call).await {
            Ok(o) => o,
            Err(_) => Outcome {
                kind: timeout_kind,
                value: Value::Null,
                error: Some("timed out".into()),
            },
        };
        let value = match outcome.kind {
            EventType::Ok => outcome.value.clone(),
            _ => input,
        };
        self.recorder
            .record(rec(outcome.kind, value, outcome.error.clone()));
        outcome
    }
}

/// How a call ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: EventType,
    /// The result, on `ok`.
    pub value: Value,
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(value: Value) -> Outcome {
        Outcome {
            kind: EventType::Ok,
            value,
            error: None,
        }
    }

    pub fn fail(error: impl Into<String>) -> Outcome {
        Outcome {
            kind: EventType::Fail,
            value: Value::Null,
            error: Some(error.into()),
        }
    }
}

/// Sorts a client error: `fail` when the request certainly had no effect
/// (never reached a server, or refused as invalid), else `info`. For reads the
/// caller may turn `info` into `fail` (a read changes nothing).
pub fn outcome_of_error(e: &keel_client::Error) -> Outcome {
    use tonic::Code;
    let text = e.to_string();
    let kind = match e.status() {
        None => EventType::Fail,
        Some(s) if never_sent(s) => EventType::Fail,
        Some(s) => match s.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Unimplemented => EventType::Fail,
            _ => EventType::Info,
        },
    };
    Outcome {
        kind,
        value: Value::Null,
        error: Some(text),
    }
}

/// The connection was refused or could not be made: nothing was sent.
fn never_sent(s: &tonic::Status) -> bool {
    let text = format!("{s:?}").to_lowercase();
    s.code() == tonic::Code::Unavailable
        && (text.contains("connection refused") || text.contains("tcp connect error"))
}

/// What the final phase needs: one client per member (pinned), in member order.
#[derive(Clone)]
pub struct FinalCtx {
    pub members: Vec<(String, keel_client::Client)>,
    pub recorder: Arc<Recorder>,
    /// Process ids for the final reads start here (one per member).
    pub first_process: ProcessId,
    /// How long every member has to answer.
    pub timeout: Duration,
}

impl FinalCtx {
    /// The final phase's client of member `i` (pinned to it, its own process
    /// id, a 2 s op timeout).
    pub fn client(&self, i: usize) -> ClientCtx {
        let (node, client) = &self.members[i];
        ClientCtx {
            process: self.first_process + i as u64,
            node: node.clone(),
            client: client.clone(),
            recorder: self.recorder.clone(),
            stop: Default::default(),
            seed: 0,
            op_timeout: Duration::from_secs(2),
            pace: Duration::ZERO,
        }
    }
}

/// The events of a run's history file (keel-jepsen's own format).
pub fn read_events(history: &Path) -> Result<Vec<crate::history::Event>> {
    let text = std::fs::read_to_string(history).map_err(|error| crate::Error::Io {
        path: history.to_path_buf(),
        error,
    })?;
    let lines: Vec<&str> = text.lines().collect();
    crate::history::own::parse(&lines)
}

/// The linearizability check of `history` against `model`, split by key:
/// the one row of the register and lock workloads. `part` names what a key
/// is (`key`, `lock`) in the summary.
pub fn linearizable(
    model: crate::ModelKind,
    name: &str,
    part: &str,
    history: &Path,
    threads: usize,
) -> Result<Check> {
    let started = std::time::Instant::now();
    let h = crate::History::read(history)?;
    let opts = crate::Options {
        partition: true,
        threads,
    };
    let verdict = model.check(&h, &opts)?;
    let millis = started.elapsed().as_millis();
    let summary = format!(
        "{} ops in {} {part}s{}",
        verdict.operations,
        verdict.partitions,
        match &verdict.counterexample {
            Some(c) => format!(
                "; {part} {} cannot be linearised ({} ops in the window)",
                c.partition.as_deref().unwrap_or("?"),
                c.window.len()
            ),
            None => String::new(),
        }
    );
    Ok(Check {
        name: name.into(),
        valid: verdict.linearizable,
        summary,
        text: verdict.to_string(),
        verdict: Some(verdict),
        millis,
    })
}

/// The outcome of the final phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovery {
    /// Every member answered.
    pub ok: bool,
    pub detail: String,
}

/// One checker's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub valid: bool,
    /// One line for the table.
    pub summary: String,
    /// The full explanation (the checker's text).
    pub text: String,
    /// The anomaly window as data, when the checker has one.
    pub verdict: Option<crate::Verdict>,
    pub millis: u128,
}

/// A workload.
pub trait Workload: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Runs one client until `ctx.stop`.
    fn run_client(self: Arc<Self>, ctx: ClientCtx) -> BoxFuture<()>;
    /// After the faults are healed: the final reads on every member.
    fn finish(self: Arc<Self>, ctx: FinalCtx) -> BoxFuture<Recovery>;
    /// Checks the recorded history (the run's `history.jsonl`).
    fn check(&self, history: &Path, threads: usize) -> Result<Vec<Check>>;
}

/// The workload called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Workload>> {
    match name {
        "register" => Some(Arc::new(register::Register::new())),
        "list-append" => Some(Arc::new(list_append::ListAppend::new())),
        "watch" => Some(Arc::new(watch::Watch::new())),
        "lock" => Some(Arc::new(lock::Lock::new())),
        _ => None,
    }
}

/// Names accepted by [`by_name`].
pub const NAMES: &[&str] = &["register", "list-append", "watch", "lock"];

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn kind(s: Status) -> EventType {
        outcome_of_error(&keel_client::Error::Status(s)).kind
    }

    #[test]
    fn only_surely_unapplied_errors_are_failures() {
        assert_eq!(
            kind(Status::unavailable("etcdserver: leader changed")),
            EventType::Info
        );
        assert_eq!(
            kind(Status::unavailable("etcdserver: request timed out")),
            EventType::Info
        );
        assert_eq!(kind(Status::deadline_exceeded("deadline")), EventType::Info);
        assert_eq!(kind(Status::unknown("transport error")), EventType::Info);
        assert_eq!(kind(Status::internal("boom")), EventType::Info);
        assert_eq!(
            kind(Status::unavailable("tcp connect error")),
            EventType::Fail
        );
        assert_eq!(
            kind(Status::invalid_argument("etcdserver: key is not provided")),
            EventType::Fail
        );
        assert_eq!(
            kind(Status::resource_exhausted("too large")),
            EventType::Fail
        );
    }
}

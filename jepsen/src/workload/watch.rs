//! The watch workload: writers change a few keys while watchers on every
//! member record every response of their watch streams; the checker
//! ([`crate::watchcheck`]) holds the streams to etcd's nine watch rules and to
//! what the writers were told.
//!
//! Clients with an even process id are **writers**: each operation is a
//! `write` of one to three micro-ops on distinct keys out of eight
//! (`jepsen/watch/k0..k7`): a put (unique value) or a delete; one op goes
//! through Put or DeleteRange, several through one Txn (one revision). The
//! invoke holds `{"ops": [["put", key, value] | ["del", key], ...]}`; the
//! `ok` adds `"revision"` (the response header's: the write's revision) and
//! `"deleted"` (per op, how many keys a delete removed). Errors are `info`
//! unless surely not applied, as in every workload.
//!
//! Clients with an odd id host **watchers**, one per spec below, each its own
//! process id (`1000 + 16 × client + spec`), its own gRPC stream, pinned to the
//! client's member. All start at revision 1 (the run's cluster is new). The
//! harness drives the stream itself (not keel-client's self-resuming watch),
//! so every break and resume is in the history:
//!
//! - `open`: invoke `{key, range_end, prev_kv, no_put, no_delete,
//!   start_revision}`; `ok` once the server confirmed the watch, `fail` if it
//!   could not be made (then retried);
//! - `events`: one response's events (fragments joined), as
//!   `{"header": rev, "events": [{type, key, value, create, mod, version,
//!   prev}]}`;
//! - `progress`: a response without events (the answer to the progress
//!   request each watcher sends every ~0.7 s): `{"revision": rev}`;
//! - `break`: the stream failed (`fail`, with the error); the watcher reopens it
//!   at the revision after the last one it has;
//! - `end`: the server canceled the watch or said its start was compacted
//!   (never expected here: nothing compacts).
//!
//! Each recorded delivery is an invoke and its completion at the same instant.
//!
//! Final phase (after every fault is healed): one more write on the first
//! member that takes it, then every watcher reopens on its member from where
//! it stopped and must vouch for that write's revision (an event or a
//! progress notification at or past it) within the recovery timeout.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{request_op, response_op, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use keel_proto::etcdserverpb::{watch_request, WatchProgressRequest, WatchRequest};
use keel_proto::mvccpb::{Event as PbEvent, KeyValue};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{outcome_of_error, BoxFuture, Check, ClientCtx, FinalCtx, Outcome, Recovery, Workload};
use crate::history::{EventType, ProcessId};
use crate::recorder::{Actor, Record};
use crate::watchcheck;

/// The keys the writers change.
const KEYS: usize = 8;
const PREFIX: &str = "jepsen/watch/";
/// The end of the prefix's range ('/' + 1).
const PREFIX_END: &str = "jepsen/watch0";
/// Mean pause between a watcher's progress requests.
const PROGRESS_EVERY: Duration = Duration::from_millis(700);

fn key(i: usize) -> String {
    format!("{PREFIX}k{i}")
}

/// What one watcher watches.
#[derive(Debug, Clone)]
struct Spec {
    key: String,
    range_end: String,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
}

/// The watchers each hosting client runs: the whole prefix with prev_kv; the
/// prefix without deletes; one key; a sub-range of deletes only.
fn specs() -> Vec<Spec> {
    vec![
        Spec {
            key: PREFIX.into(),
            range_end: PREFIX_END.into(),
            prev_kv: true,
            no_put: false,
            no_delete: false,
        },
        Spec {
            key: PREFIX.into(),
            range_end: PREFIX_END.into(),
            prev_kv: false,
            no_put: false,
            no_delete: true,
        },
        Spec {
            key: key(0),
            range_end: String::new(),
            prev_kv: true,
            no_put: false,
            no_delete: false,
        },
        Spec {
            key: key(2),
            range_end: key(5),
            prev_kv: true,
            no_put: true,
            no_delete: false,
        },
    ]
}

impl Spec {
    fn json(&self, start: i64) -> Value {
        json!({
            "key": self.key, "range_end": self.range_end, "prev_kv": self.prev_kv,
            "no_put": self.no_put, "no_delete": self.no_delete, "start_revision": start,
        })
    }
}

/// A watcher between the run and the final phase.
#[derive(Debug, Clone)]
struct Watcher {
    process: ProcessId,
    node: String,
    spec: Spec,
    /// The first revision it does not have yet.
    next: i64,
}

/// The watch workload's shared state.
pub struct Watch {
    next_value: AtomicU64,
    watchers: Mutex<BTreeMap<ProcessId, Watcher>>,
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

/// A micro-op.
#[derive(Debug, Clone)]
enum Mop {
    Put(String, String),
    Del(String),
}

fn mops_json(mops: &[Mop]) -> Value {
    Value::Array(
        mops.iter()
            .map(|m| match m {
                Mop::Put(k, v) => json!(["put", k, v]),
                Mop::Del(k) => json!(["del", k]),
            })
            .collect(),
    )
}

fn request(m: &Mop) -> RequestOp {
    RequestOp {
        request: Some(match m {
            Mop::Put(k, v) => request_op::Request::RequestPut(PutRequest {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
                ..Default::default()
            }),
            Mop::Del(k) => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            }),
        }),
    }
}

/// Runs `mops`; the ok value is `{ops, revision, deleted}`.
async fn execute(c: &keel_client::Client, mops: &[Mop]) -> Outcome {
    let ops = mops_json(mops);
    let done = |revision: i64, deleted: Vec<Value>| {
        Outcome::ok(json!({"ops": ops, "revision": revision, "deleted": deleted}))
    };
    let rev = |h: &Option<keel_client::ResponseHeader>| h.as_ref().map_or(0, |h| h.revision);
    match mops {
        [Mop::Put(k, v)] => {
            let req = PutRequest {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
                ..Default::default()
            };
            match c.put_request(req).await {
                Ok(r) => done(rev(&r.header), vec![Value::Null]),
                Err(e) => outcome_of_error(&e),
            }
        }
        [Mop::Del(k)] => {
            let req = DeleteRangeRequest {
                key: k.as_bytes().to_vec(),
                ..Default::default()
            };
            match c.delete(req).await {
                Ok(r) => done(rev(&r.header), vec![json!(r.deleted)]),
                Err(e) => outcome_of_error(&e),
            }
        }
        _ => {
            let req = TxnRequest {
                compare: vec![],
                success: mops.iter().map(request).collect(),
                failure: vec![],
            };
            match c.txn(req).await {
                Ok(r) => {
                    let deleted = r
                        .responses
                        .iter()
                        .map(|op| match &op.response {
                            Some(response_op::Response::ResponseDeleteRange(d)) => {
                                json!(d.deleted)
                            }
                            _ => Value::Null,
                        })
                        .collect();
                    done(rev(&r.header), deleted)
                }
                Err(e) => outcome_of_error(&e),
            }
        }
    }
}

/// A recorded `write` of `mops` (unknown on timeout).
async fn write(ctx: &ClientCtx, mops: &[Mop]) -> Outcome {
    let input = json!({ "ops": mops_json(mops) });
    ctx.perform(
        "write",
        None,
        input,
        EventType::Info,
        execute(&ctx.client, mops),
    )
    .await
}

/// One delivered event as the history holds it.
fn event_json(e: &PbEvent) -> Value {
    let kv = |kv: &KeyValue| {
        json!({
            "value": String::from_utf8_lossy(&kv.value),
            "create": kv.create_revision, "mod": kv.mod_revision, "version": kv.version,
        })
    };
    let empty = KeyValue::default();
    let this = e.kv.as_ref().unwrap_or(&empty);
    let mut v = kv(this);
    v["type"] = json!(if e.r#type == 1 { "delete" } else { "put" });
    v["key"] = json!(String::from_utf8_lossy(&this.key));
    v["prev"] = e.prev_kv.as_ref().map_or(Value::Null, kv);
    v
}

/// When a watcher's loop ends.
enum Until<'a> {
    /// The run's stop flag.
    Stopped(&'a AtomicBool),
    /// It has vouched for `revision`, or the deadline passed.
    Covered { revision: i64, deadline: Instant },
}

/// An open stream: its request side and its responses.
type Stream = keel_client::watch::RawStream;

impl Watch {
    pub fn new() -> Watch {
        Watch {
            next_value: AtomicU64::new(1),
            watchers: Mutex::new(BTreeMap::new()),
        }
    }

    fn generate(&self, rng: &mut StdRng) -> Vec<Mop> {
        let mut keys: Vec<usize> = (0..KEYS).collect();
        keys.shuffle(rng);
        let n = if rng.gen_bool(0.6) {
            1
        } else {
            rng.gen_range(2..=3)
        };
        keys[..n]
            .iter()
            .map(|&k| {
                if rng.gen_bool(0.75) {
                    let v = self.next_value.fetch_add(1, Ordering::Relaxed);
                    Mop::Put(key(k), v.to_string())
                } else {
                    Mop::Del(key(k))
                }
            })
            .collect()
    }

    async fn writer(&self, ctx: ClientCtx) {
        let mut rng = StdRng::seed_from_u64(ctx.seed);
        while !ctx.stopped() {
            let out = write(&ctx, &self.generate(&mut rng)).await;
            ctx.pause(&mut rng, out.kind == EventType::Ok).await;
        }
    }

    /// Runs one watcher until `until`; returns whether it vouched for the
    /// target revision (always true for [`Until::Stopped`]).
    async fn watch(&self, ctx: &ClientCtx, w: &mut Watcher, until: Until<'_>) -> bool {
        let process = w.process;
        let mut rng = StdRng::seed_from_u64(ctx.seed ^ process);
        let done = |w: &Watcher| match &until {
            Until::Stopped(stop) => stop.load(Ordering::Relaxed),
            Until::Covered { revision, deadline } => {
                w.next > *revision || Instant::now() > *deadline
            }
        };
        let record = |f: &str, kind: EventType, value: Value, error: Option<String>| {
            ctx.recorder.record(Record {
                process: Actor::Client(process),
                kind,
                f: f.to_string(),
                key: None,
                value,
                time: 0,
                node: Some(ctx.node.clone()),
                error,
            });
        };
        // A delivery: an invoke and its completion at the same instant.
        let deliver = |f: &str, kind: EventType, value: Value, error: Option<String>| {
            record(f, EventType::Invoke, Value::Null, None);
            record(f, kind, value, error);
        };
        while !done(w) {
            let spec = w.spec.json(w.next);
            record("open", EventType::Invoke, spec.clone(), None);
            let opened = tokio::time::timeout(ctx.op_timeout, open(&ctx.client, &w.spec, w.next))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            match &opened {
                Ok(_) => record("open", EventType::Ok, spec, None),
                Err(e) => record("open", EventType::Fail, spec, Some(e.clone())),
            }
            let Ok((requests, mut stream)) = opened else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut partial: Vec<PbEvent> = Vec::new();
            let mut next_progress = Instant::now() + jitter(&mut rng);
            let ended = loop {
                if done(w) {
                    break false;
                }
                let tick = next_progress.saturating_duration_since(Instant::now());
                tokio::select! {
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            let header = resp.header.as_ref().map_or(0, |h| h.revision);
                            if resp.canceled || resp.compact_revision != 0 {
                                deliver("end", EventType::Ok, json!({
                                    "canceled": resp.canceled, "reason": resp.cancel_reason,
                                    "compact_revision": resp.compact_revision,
                                }), None);
                                break true;
                            }
                            if resp.events.is_empty() && !resp.fragment {
                                if partial.is_empty() && !resp.created {
                                    deliver("progress", EventType::Ok, json!({"revision": header}), None);
                                    w.next = w.next.max(header + 1);
                                }
                                continue;
                            }
                            partial.extend(resp.events);
                            if resp.fragment {
                                continue;
                            }
                            let events = std::mem::take(&mut partial);
                            let last = events.iter().filter_map(|e| e.kv.as_ref()).map(|kv| kv.mod_revision).max().unwrap_or(0);
                            let value = json!({
                                "header": header,
                                "events": events.iter().map(event_json).collect::<Vec<_>>(),
                            });
                            deliver("events", EventType::Ok, value, None);
                            w.next = w.next.max(last + 1);
                        }
                        Ok(None) => {
                            deliver("break", EventType::Fail, Value::Null, Some("the stream ended".into()));
                            break false;
                        }
                        Err(e) => {
                            deliver("break", EventType::Fail, Value::Null, Some(e.to_string()));
                            break false;
                        }
                    },
                    _ = tokio::time::sleep(tick) => {
                        next_progress = Instant::now() + jitter(&mut rng);
                        let req = WatchRequest {
                            request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})),
                        };
                        let _ = requests.send(req).await;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            };
            if ended {
                // The server will not go on; the final phase tries again.
                return false;
            }
            if !done(w) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        match until {
            Until::Stopped(_) => true,
            Until::Covered { revision, .. } => w.next > revision,
        }
    }

    async fn host(self: Arc<Self>, ctx: ClientCtx) {
        let mut tasks = Vec::new();
        for (j, spec) in specs().into_iter().enumerate() {
            let w = Watcher {
                process: 1000 + 16 * ctx.process + j as u64,
                node: ctx.node.clone(),
                spec,
                next: 1,
            };
            let (me, ctx) = (self.clone(), ctx.clone());
            tasks.push(tokio::spawn(async move {
                let mut w = w;
                me.watch(&ctx, &mut w, Until::Stopped(&ctx.stop)).await;
                me.watchers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(w.process, w);
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn final_phase(self: Arc<Self>, ctx: FinalCtx) -> Recovery {
        let deadline = Instant::now() + ctx.timeout;
        // One last write, on the first member that takes it.
        let mut target = None;
        'write: while Instant::now() < deadline {
            for i in 0..ctx.members.len() {
                let c = ctx.client(i);
                let v = self.next_value.fetch_add(1, Ordering::Relaxed);
                let out = write(&c, &[Mop::Put(key(0), v.to_string())]).await;
                if out.kind == EventType::Ok {
                    target = out.value["revision"].as_i64();
                    break 'write;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some(target) = target else {
            return Recovery {
                ok: false,
                detail: "no member took the final write".into(),
            };
        };
        let watchers: Vec<Watcher> = self
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut tasks = Vec::new();
        for mut w in watchers {
            let Some(i) = ctx.members.iter().position(|(n, _)| *n == w.node) else {
                continue;
            };
            let mut c = ctx.client(i);
            c.seed = w.process;
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                let ok = me
                    .watch(
                        &c,
                        &mut w,
                        Until::Covered {
                            revision: target,
                            deadline,
                        },
                    )
                    .await;
                (w, ok)
            }));
        }
        let mut behind = Vec::new();
        let n = tasks.len();
        for t in tasks {
            match t.await {
                Ok((w, true)) => drop(w),
                Ok((w, false)) => {
                    behind.push(format!("{} on {} (at {})", w.process, w.node, w.next - 1))
                }
                Err(e) => behind.push(e.to_string()),
            }
        }
        Recovery {
            ok: behind.is_empty() && n > 0,
            detail: if behind.is_empty() {
                format!("{n} watchers each caught up to the final write's revision {target}")
            } else {
                format!(
                    "watchers behind revision {target} after the recovery timeout: {}",
                    behind.join(", ")
                )
            },
        }
    }
}

fn jitter(rng: &mut StdRng) -> Duration {
    PROGRESS_EVERY.mul_f64(rng.gen_range(0.5..1.5))
}

/// Opens a watch stream on the client's member and waits for the server to
/// confirm it.
async fn open(c: &keel_client::Client, spec: &Spec, start: i64) -> Result<Stream, String> {
    let channel = c.channel().await.map_err(|e| e.to_string())?;
    let opts = keel_client::WatchOptions {
        range_end: spec.range_end.as_bytes().to_vec(),
        prev_kv: spec.prev_kv,
        no_put: spec.no_put,
        no_delete: spec.no_delete,
        fragment: true,
        ..Default::default()
    };
    let first = opts.create_request(spec.key.as_bytes(), start);
    let (tx, mut stream) = keel_client::watch::open_raw(channel, first)
        .await
        .map_err(|e| e.to_string())?;
    match stream.message().await {
        Ok(Some(r)) if r.created && !r.canceled => Ok((tx, stream)),
        Ok(Some(r)) => Err(format!(
            "not created: canceled {}, reason {:?}, compact revision {}",
            r.canceled, r.cancel_reason, r.compact_revision
        )),
        Ok(None) => Err("the stream ended before the watch was created".into()),
        Err(e) => Err(e.to_string()),
    }
}

impl Workload for Watch {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn run_client(self: Arc<Self>, ctx: ClientCtx) -> BoxFuture<()> {
        Box::pin(async move {
            if ctx.process.is_multiple_of(2) {
                self.writer(ctx).await
            } else {
                self.host(ctx).await
            }
        })
    }

    fn finish(self: Arc<Self>, ctx: FinalCtx) -> BoxFuture<Recovery> {
        Box::pin(self.final_phase(ctx))
    }

    fn check(&self, history: &Path, _threads: usize) -> crate::Result<Vec<Check>> {
        let started = Instant::now();
        let report = watchcheck::check(&super::read_events(history)?)?;
        let millis = started.elapsed().as_millis();
        let text = report.text();
        let stats = format!(
            "{} streams of {} watchers, {} events, {} revisions",
            report.streams, report.watchers, report.delivered, report.revisions
        );
        let check = |name: &str, rules: &[&str], about: &str| {
            let bad = report.violated(rules);
            Check {
                name: name.into(),
                valid: bad.is_empty(),
                summary: if bad.is_empty() {
                    format!("{about}; all hold")
                } else {
                    format!("{about}; violated: {}", bad.join(", "))
                },
                text: text.clone(),
                verdict: None,
                millis,
            }
        };
        Ok(vec![
            check("watch (etcd's 9 rules)", watchcheck::RULES, &stats),
            check(
                "watch vs writes",
                watchcheck::HISTORY_RULES,
                &format!("{} writes", report.writes),
            ),
        ])
    }
}

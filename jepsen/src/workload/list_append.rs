//! The list-append workload (Jepsen's `append`, checked Elle-style by
//! [`crate::elle`]): each operation is a transaction of one to four
//! micro-ops over a few keys, `append k v` (v unique) or `r k` (read the
//! whole list). Values are lists stored as comma-separated integers.
//!
//! On etcd's API a transaction is two steps: a read-only txn ranges every key
//! it touches (one revision, with each key's `mod_revision`), the client
//! computes the reads and the new lists, then a write txn commits the appends
//! guarded by `mod_revision(k) == seen` for every key touched. So a committed
//! transaction took effect at the write's revision, with its reads still
//! current then; a read-only transaction took effect at its read. A guard that
//! fails is `fail` (nothing written); a read-phase error is `fail`; a
//! write-phase error is `info` unless surely not applied.
//!
//! Keys rotate like the register's: four active, each retired after 100
//! appends, so lists (and every read) stay short.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{
    compare, request_op, response_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{outcome_of_error, BoxFuture, Check, ClientCtx, FinalCtx, Outcome, Recovery, Workload};
use crate::elle::{self, Mop};
use crate::history::EventType;

const ACTIVE_KEYS: usize = 4;
const APPENDS_PER_KEY: usize = 100;
const PREFIX: &str = "jepsen/append/";

/// The list-append workload's shared state.
pub struct ListAppend {
    keys: Mutex<Keys>,
    next_value: AtomicU64,
}

struct Keys {
    active: Vec<(String, usize)>,
    next: usize,
    all: BTreeSet<String>,
}

impl Default for ListAppend {
    fn default() -> Self {
        Self::new()
    }
}

impl ListAppend {
    pub fn new() -> ListAppend {
        let mut k = Keys {
            active: Vec::new(),
            next: 0,
            all: BTreeSet::new(),
        };
        for _ in 0..ACTIVE_KEYS {
            let name = format!("{PREFIX}{:05}", k.next);
            k.next += 1;
            k.all.insert(name.clone());
            k.active.push((name, 0));
        }
        ListAppend {
            keys: Mutex::new(k),
            next_value: AtomicU64::new(1),
        }
    }

    /// One to four micro-ops over the active keys.
    fn generate(&self, rng: &mut StdRng) -> Vec<Mop> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        (0..rng.gen_range(1..=4))
            .map(|_| {
                let slot = rng.gen_range(0..keys.active.len());
                let key = keys.active[slot].0.clone();
                if rng.gen_bool(0.5) {
                    keys.active[slot].1 += 1;
                    if keys.active[slot].1 >= APPENDS_PER_KEY {
                        let name = format!("{PREFIX}{:05}", keys.next);
                        keys.next += 1;
                        keys.all.insert(name.clone());
                        keys.active[slot] = (name, 0);
                    }
                    Mop::Append(key, self.next_value.fetch_add(1, Ordering::Relaxed))
                } else {
                    Mop::Read(key, None)
                }
            })
            .collect()
    }
}

/// Micro-ops as the history holds them.
pub fn mops_json(mops: &[Mop]) -> Value {
    Value::Array(
        mops.iter()
            .map(|m| match m {
                Mop::Append(k, v) => json!(["append", k, v]),
                Mop::Read(k, l) => json!(["r", k, l]),
            })
            .collect(),
    )
}

fn decode(bytes: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(bytes)
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn encode(list: &[u64]) -> String {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `mops` as described in the module docs.
async fn execute(c: &keel_client::Client, mops: &[Mop]) -> Outcome {
    let keys: Vec<String> = mops
        .iter()
        .map(|m| match m {
            Mop::Append(k, _) | Mop::Read(k, _) => k.clone(),
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let read = TxnRequest {
        success: keys
            .iter()
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: k.as_bytes().to_vec(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    };
    let resp = match c.txn(read).await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    let mut state: Vec<(Vec<u64>, i64)> = Vec::new();
    for r in resp.responses {
        match r.response {
            Some(response_op::Response::ResponseRange(rr)) => state.push(
                rr.kvs
                    .first()
                    .map_or((Vec::new(), 0), |kv| (decode(&kv.value), kv.mod_revision)),
            ),
            _ => return Outcome::fail("unexpected txn response"),
        }
    }
    if state.len() != keys.len() {
        return Outcome::fail("short txn response");
    }
    let mut lists: Vec<Vec<u64>> = state.iter().map(|s| s.0.clone()).collect();
    let mut dirty = vec![false; keys.len()];
    let mut done = Vec::with_capacity(mops.len());
    for m in mops {
        match m {
            Mop::Append(k, v) => {
                let i = keys.binary_search(k).expect("key listed");
                lists[i].push(*v);
                dirty[i] = true;
                done.push(m.clone());
            }
            Mop::Read(k, _) => {
                let i = keys.binary_search(k).expect("key listed");
                done.push(Mop::Read(k.clone(), Some(lists[i].clone())));
            }
        }
    }
    if !dirty.contains(&true) {
        return Outcome::ok(mops_json(&done));
    }
    let write = TxnRequest {
        compare: keys
            .iter()
            .zip(&state)
            .map(|(k, (_, rev))| Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: k.as_bytes().to_vec(),
                target_union: Some(compare::TargetUnion::ModRevision(*rev)),
                ..Default::default()
            })
            .collect(),
        success: (0..keys.len())
            .filter(|&i| dirty[i])
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: keys[i].as_bytes().to_vec(),
                    value: encode(&lists[i]).into_bytes(),
                    ..Default::default()
                })),
            })
            .collect(),
        failure: vec![],
    };
    match c.txn(write).await {
        Ok(r) if r.succeeded => Outcome::ok(mops_json(&done)),
        Ok(_) => Outcome::fail("conflict: a key changed since the read"),
        Err(e) => outcome_of_error(&e),
    }
}

impl Workload for ListAppend {
    fn name(&self) -> &'static str {
        "list-append"
    }

    fn run_client(self: Arc<Self>, ctx: ClientCtx) -> BoxFuture<()> {
        Box::pin(async move {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            while !ctx.stopped() {
                let mops = self.generate(&mut rng);
                let writes = mops.iter().any(|m| matches!(m, Mop::Append(..)));
                let timeout = if writes {
                    EventType::Info
                } else {
                    EventType::Fail
                };
                let c = ctx.client.clone();
                let out = ctx
                    .perform("txn", None, mops_json(&mops), timeout, async move {
                        execute(&c, &mops).await
                    })
                    .await;
                ctx.pause(&mut rng, out.kind == EventType::Ok).await;
            }
        })
    }

    fn finish(self: Arc<Self>, ctx: FinalCtx) -> BoxFuture<Recovery> {
        Box::pin(async move {
            let keys: Vec<String> = {
                let k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                k.all.iter().cloned().collect()
            };
            let mops: Vec<Mop> = keys.iter().map(|k| Mop::Read(k.clone(), None)).collect();
            let deadline = Instant::now() + ctx.timeout;
            let mut failed = Vec::new();
            for (i, (name, client)) in ctx.members.iter().enumerate() {
                let c = ctx.client(i);
                loop {
                    let (cl, m) = (client.clone(), mops.clone());
                    let out = c
                        .perform("txn", None, mops_json(&mops), EventType::Fail, async move {
                            execute(&cl, &m).await
                        })
                        .await;
                    if out.kind == EventType::Ok {
                        break;
                    }
                    if Instant::now() > deadline {
                        failed.push(format!("{name}: {}", out.error.unwrap_or_default()));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Recovery {
                ok: failed.is_empty(),
                detail: if failed.is_empty() {
                    format!(
                        "{} members each read all {} keys",
                        ctx.members.len(),
                        keys.len()
                    )
                } else {
                    format!("no final read from {}", failed.join("; "))
                },
            }
        })
    }

    fn check(&self, history: &Path, _threads: usize) -> crate::Result<Vec<Check>> {
        let started = Instant::now();
        let txns = elle::txns(&super::read_events(history)?)?;
        let report = elle::check(&txns);
        let millis = started.elapsed().as_millis();
        let counts: Vec<String> = report
            .counts
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let mut text = format!(
            "strict-serializable: {}\n{} txns, {} committed\n",
            report.valid(),
            report.txns,
            report.committed
        );
        for a in &report.anomalies {
            text.push_str(&format!("{}: {}\n", a.kind, a.explanation));
        }
        Ok(vec![Check {
            name: "strict-serializable (Elle)".into(),
            valid: report.valid(),
            summary: if report.valid() {
                format!(
                    "{} txns, {} committed, no anomaly",
                    report.txns, report.committed
                )
            } else {
                format!("{} txns; anomalies: {}", report.txns, counts.join(", "))
            },
            text,
            verdict: None,
            millis,
        }])
    }
}

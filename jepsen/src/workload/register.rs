//! The register workload: linearizable single-key reads, writes and
//! compare-and-sets with unique values over a rotating set of keys, checked per
//! key with the [`crate::model::register`] model (Jepsen's etcd register test,
//! in shape).
//!
//! - `read`: a linearizable range of one key; the value read (an integer) or
//!   `null`. A read that errors or times out is recorded `fail` (a read has no
//!   effect, so dropping it is exact).
//! - `write v`: a put with a value no other op uses.
//! - `cas [old, new]`: a txn `value(key) == old` then `put key new`. `old` is
//!   the last value any client saw for the key (so it often matches), `new` is
//!   unique. `succeeded: true` is `ok`. `succeeded: false` is recorded as
//!   `fail`: the txn did run, but it changed nothing, and the register model
//!   drops `fail`ed cas ops (an `ok` cas there means "it swapped"). Dropping it
//!   is sound (a no-op constrains only reads, and loses only the fact that the
//!   value was not `old` at that moment), as Jepsen's etcd test does. With no
//!   known value yet, a client writes instead (etcd fails a value compare on a
//!   missing key, which would be a pointless op).
//! - Write and cas errors: `info` unless surely not applied
//!   ([`super::outcome_of_error`]).
//!
//! Keys rotate: a few keys are active at a time and each is retired after
//! `OPS_PER_KEY` operations, so every per-key search stays small even with
//! many unknown outcomes (Jepsen's `independent` keys do the same).
//! Values are stored as decimal strings; the history holds them as numbers.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{compare, request_op, Compare, PutRequest, RequestOp, TxnRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{outcome_of_error, BoxFuture, Check, ClientCtx, FinalCtx, Outcome, Recovery, Workload};
use crate::history::EventType;
use crate::ModelKind;

/// Keys in use at once.
const ACTIVE_KEYS: usize = 3;
/// Operations on one key before it is retired.
const OPS_PER_KEY: usize = 300;
/// The prefix of every key.
const PREFIX: &str = "jepsen/register/";

/// The register workload's shared state.
pub struct Register {
    keys: Mutex<Keys>,
    next_value: AtomicU64,
    /// The last value seen for each key, for cas.
    last: Mutex<HashMap<String, Value>>,
}

struct Keys {
    active: Vec<(String, usize)>,
    next: usize,
    all: BTreeSet<String>,
}

impl Keys {
    fn fresh(&mut self) -> String {
        let k = format!("{PREFIX}{:05}", self.next);
        self.next += 1;
        self.all.insert(k.clone());
        k
    }
}

impl Default for Register {
    fn default() -> Self {
        Self::new()
    }
}

impl Register {
    pub fn new() -> Register {
        let mut keys = Keys {
            active: Vec::new(),
            next: 0,
            all: BTreeSet::new(),
        };
        for _ in 0..ACTIVE_KEYS {
            let k = keys.fresh();
            keys.active.push((k, 0));
        }
        Register {
            keys: Mutex::new(keys),
            next_value: AtomicU64::new(1),
            last: Mutex::new(HashMap::new()),
        }
    }

    /// A key for the next op; retires keys that have had their share.
    fn pick_key(&self, rng: &mut StdRng) -> String {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let slot = rng.gen_range(0..keys.active.len());
        let key = keys.active[slot].0.clone();
        keys.active[slot].1 += 1;
        if keys.active[slot].1 >= OPS_PER_KEY {
            let k = keys.fresh();
            keys.active[slot] = (k, 0);
        }
        key
    }

    fn remember(&self, key: &str, v: &Value) {
        if !v.is_null() {
            self.last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string(), v.clone());
        }
    }

    fn last(&self, key: &str) -> Option<Value> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    async fn one_op(&self, ctx: &ClientCtx, rng: &mut StdRng) -> Outcome {
        let key = self.pick_key(rng);
        let roll: f64 = rng.gen();
        let c = &ctx.client;
        if roll < 0.5 {
            let out = ctx
                .perform("read", Some(&key), Value::Null, EventType::Fail, async {
                    match c.get(key.as_bytes()).await {
                        Ok(kv) => Outcome::ok(kv.map_or(Value::Null, |kv| decode(&kv.value))),
                        Err(e) => Outcome::fail(e.to_string()),
                    }
                })
                .await;
            if out.kind == EventType::Ok {
                self.remember(&key, &out.value);
            }
            return out;
        }
        let new = self.next_value.fetch_add(1, Ordering::Relaxed);
        let old = if roll < 0.75 { None } else { self.last(&key) };
        match old {
            None => {
                let out = ctx
                    .perform("write", Some(&key), json!(new), EventType::Info, async {
                        match c.put(key.as_bytes(), new.to_string()).await {
                            Ok(_) => Outcome::ok(json!(new)),
                            Err(e) => outcome_of_error(&e),
                        }
                    })
                    .await;
                if out.kind == EventType::Ok {
                    self.remember(&key, &json!(new));
                }
                out
            }
            Some(old) => {
                let req = cas_request(&key, &old, new);
                let input = json!([old, new]);
                let out = ctx
                    .perform("cas", Some(&key), input.clone(), EventType::Info, async {
                        match c.txn(req).await {
                            Ok(r) if r.succeeded => Outcome::ok(input.clone()),
                            Ok(_) => Outcome::fail("compare failed"),
                            Err(e) => outcome_of_error(&e),
                        }
                    })
                    .await;
                if out.kind == EventType::Ok {
                    self.remember(&key, &json!(new));
                }
                out
            }
        }
    }

    async fn final_reads(self: Arc<Self>, ctx: FinalCtx) -> Recovery {
        let keys: Vec<String> = {
            let k = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            k.all.iter().cloned().collect()
        };
        let deadline = Instant::now() + ctx.timeout;
        let mut failed = Vec::new();
        for (i, (name, client)) in ctx.members.iter().enumerate() {
            let c = ctx.client(i);
            'keys: for key in &keys {
                loop {
                    let out = c
                        .perform("read", Some(key), Value::Null, EventType::Fail, async {
                            match client.get(key.as_bytes()).await {
                                Ok(kv) => {
                                    Outcome::ok(kv.map_or(Value::Null, |kv| decode(&kv.value)))
                                }
                                Err(e) => Outcome::fail(e.to_string()),
                            }
                        })
                        .await;
                    if out.kind == EventType::Ok {
                        break;
                    }
                    if Instant::now() > deadline {
                        failed.push(format!(
                            "{name}: {}",
                            out.error.unwrap_or_else(|| "no answer".into())
                        ));
                        break 'keys;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
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
    }
}

/// The txn for `cas [old, new]` on `key`.
fn cas_request(key: &str, old: &Value, new: u64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::Value(encode(old).into_bytes())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                value: new.to_string().into_bytes(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    }
}

fn encode(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A stored value back as JSON: integers as numbers, anything else as a string.
fn decode(bytes: &[u8]) -> Value {
    let s = String::from_utf8_lossy(bytes);
    s.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(s.into_owned()))
}

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn run_client(self: Arc<Self>, ctx: ClientCtx) -> BoxFuture<()> {
        Box::pin(async move {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            while !ctx.stopped() {
                let out = self.one_op(&ctx, &mut rng).await;
                ctx.pause(&mut rng, out.kind == EventType::Ok).await;
            }
        })
    }

    fn finish(self: Arc<Self>, ctx: FinalCtx) -> BoxFuture<Recovery> {
        Box::pin(self.final_reads(ctx))
    }

    fn check(&self, history: &Path, threads: usize) -> crate::Result<Vec<Check>> {
        Ok(vec![super::linearizable(
            ModelKind::Register,
            "linearizable (register)",
            "key",
            history,
            threads,
        )?])
    }
}

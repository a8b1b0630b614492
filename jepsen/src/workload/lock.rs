//! The lock workload: lease-backed critical sections through etcd's Lock
//! service, checked for mutual exclusion (Jepsen's etcd lock test, in shape).
//!
//! A client's cycle, on the member it is pinned to:
//! 1. grant a lease of [`TTL`] seconds and keep it alive in the background
//!    (a keep-alive every third of the TTL, as etcd's `concurrency.Session`
//!    does: `keel_client::Client::keep_alive`); the grant is not a lock operation and is not
//!    recorded;
//! 2. `acquire`: Lock(name, lease), with the op timeout. `ok` once the call
//!    returned the lock's key; an error or timeout is `info` unless surely
//!    not applied ([`super::outcome_of_error`]): a Lock that timed out may
//!    still have been granted;
//! 3. on `ok`: hold it for a random time up to [`HOLD_MAX`], then `release`
//!    (Unlock of the key). A release that errors is always `info`, even when
//!    the Unlock surely did not run (connection refused): the lock is still
//!    released at some later time, when the lease is revoked or expires, and
//!    `info` says exactly that (an effect at an unknown time after the call).
//!    Recorded `fail`, the mutex model would keep the lock held for ever and
//!    flag the next acquire, though no two clients held it at once;
//! 4. revoke the lease (not recorded; if that fails the lease expires). After
//!    an unknown acquire this also ends a lock that may have been granted.
//!
//! A few lock names are in use at once ([`ACTIVE_LOCKS`], each retired after
//! [`ACQUIRES_PER_LOCK`] attempts, like the register's keys, so that each
//! per-lock search stays small); the history's `key` is the lock name.
//!
//! Checks, per lock name:
//! - linearizable against the [`crate::model::mutex`] model (acquire only when
//!   unlocked, release only when locked), as Jepsen checks etcd's locks with
//!   knossos' mutex;
//! - mutual exclusion in real time: a client *held* a lock from the return of
//!   its `ok` acquire to the invocation of its release (or the end of the
//!   history); two clients whose held intervals overlap are named.
//!
//! What to expect: a lease is the lock's lifetime, not the client's belief. If
//! the holder's keep-alives stop reaching the leader (its member paused or cut
//! off) for longer than the TTL, the lease expires, the lock's key is deleted
//! and the next waiter gets the lock while the first client still thinks it
//! holds it. Both checkers then report it: that is the honest result for etcd
//! and for keel alike (a lease-based lock without fencing is not safe under
//! faults; see the README for what the runs showed).
//!
//! The final phase proves recovery: every member acquires and releases each
//! active lock (recorded, so the same checks cover it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{outcome_of_error, BoxFuture, Check, ClientCtx, FinalCtx, Outcome, Recovery, Workload};
use crate::error::harness;
use crate::history::EventType;
use crate::ModelKind;

/// Lock names in use at once.
pub const ACTIVE_LOCKS: usize = 2;
/// Acquire attempts on one lock name before it is retired.
pub const ACQUIRES_PER_LOCK: usize = 40;
/// The lease's TTL, seconds.
pub const TTL: i64 = 2;
/// The longest a client holds a lock.
pub const HOLD_MAX: Duration = Duration::from_millis(300);
const PREFIX: &str = "jepsen/lock/";

/// The lock workload's shared state.
pub struct Lock {
    names: Mutex<Names>,
}

struct Names {
    active: Vec<(String, usize)>,
    next: usize,
}

impl Names {
    fn fresh(&mut self) -> String {
        let n = format!("{PREFIX}{:05}", self.next);
        self.next += 1;
        n
    }
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

impl Lock {
    pub fn new() -> Lock {
        let mut names = Names {
            active: Vec::new(),
            next: 0,
        };
        for _ in 0..ACTIVE_LOCKS {
            let n = names.fresh();
            names.active.push((n, 0));
        }
        Lock {
            names: Mutex::new(names),
        }
    }

    /// A lock name for the next cycle; retires names that had their share.
    fn pick(&self, rng: &mut StdRng) -> String {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let slot = rng.gen_range(0..names.active.len());
        let name = names.active[slot].0.clone();
        names.active[slot].1 += 1;
        if names.active[slot].1 >= ACQUIRES_PER_LOCK {
            let n = names.fresh();
            names.active[slot] = (n, 0);
        }
        name
    }

    fn active(&self) -> Vec<String> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.active.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// One cycle: lease, acquire, hold `hold`, release, revoke. Returns whether
/// the lock was acquired and released (both `ok`); `None` when no lease could
/// be granted (nothing recorded).
async fn cycle(ctx: &ClientCtx, name: &str, hold: Duration) -> Option<bool> {
    let c = &ctx.client;
    let lease = match tokio::time::timeout(ctx.op_timeout, c.lease_grant(TTL, 0)).await {
        Ok(Ok(r)) => r.id,
        _ => return None,
    };
    let keep_alive = c.keep_alive(lease);
    let acquired = ctx
        .perform(
            "acquire",
            Some(name),
            json!(lease),
            EventType::Info,
            async {
                match c.lock(name, lease).await {
                    Ok(r) => Outcome::ok(json!(String::from_utf8_lossy(&r.key))),
                    Err(e) => outcome_of_error(&e),
                }
            },
        )
        .await;
    let mut released = false;
    if let (EventType::Ok, Value::String(key)) = (acquired.kind, &acquired.value) {
        tokio::time::sleep(hold).await;
        let key = key.clone();
        let out = ctx
            .perform("release", Some(name), json!(key), EventType::Info, async {
                match c.unlock(key.as_bytes()).await {
                    Ok(_) => Outcome::ok(Value::Null),
                    // Even an Unlock that surely did not run releases the
                    // lock later: the lease is revoked or expires.
                    Err(e) => Outcome {
                        kind: EventType::Info,
                        ..outcome_of_error(&e)
                    },
                }
            })
            .await;
        released = out.kind == EventType::Ok;
    }
    drop(keep_alive);
    let _ = tokio::time::timeout(ctx.op_timeout, c.lease_revoke(lease)).await;
    Some(acquired.kind == EventType::Ok && released)
}

impl Workload for Lock {
    fn name(&self) -> &'static str {
        "lock"
    }

    fn run_client(self: Arc<Self>, ctx: ClientCtx) -> BoxFuture<()> {
        Box::pin(async move {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            while !ctx.stopped() {
                let name = self.pick(&mut rng);
                let hold = HOLD_MAX.mul_f64(rng.gen::<f64>());
                let done = cycle(&ctx, &name, hold).await;
                ctx.pause(&mut rng, done == Some(true)).await;
            }
        })
    }

    fn finish(self: Arc<Self>, ctx: FinalCtx) -> BoxFuture<Recovery> {
        Box::pin(async move {
            let names = self.active();
            let deadline = Instant::now() + ctx.timeout;
            let mut failed = Vec::new();
            for (i, (member, _)) in ctx.members.iter().enumerate() {
                let c = ctx.client(i);
                'names: for name in &names {
                    while cycle(&c, name, Duration::ZERO).await != Some(true) {
                        if Instant::now() > deadline {
                            failed.push(format!("{member} on {name}"));
                            break 'names;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            Recovery {
                ok: failed.is_empty(),
                detail: if failed.is_empty() {
                    format!(
                        "{} members each acquired and released all {} locks",
                        ctx.members.len(),
                        names.len()
                    )
                } else {
                    format!("no final acquire and release from {}", failed.join("; "))
                },
            }
        })
    }

    fn check(&self, history: &Path, threads: usize) -> crate::Result<Vec<Check>> {
        let linearizable = super::linearizable(
            ModelKind::Mutex,
            "linearizable (mutex)",
            "lock",
            history,
            threads,
        )?;
        let started = Instant::now();
        let text = std::fs::read_to_string(history)
            .map_err(|e| harness(format!("{}: {e}", history.display())))?;
        let overlaps = overlaps(&held(&text));
        let exclusion = Check {
            name: "mutual exclusion".into(),
            valid: overlaps.is_empty(),
            summary: if overlaps.is_empty() {
                "no two clients held a lock at once".into()
            } else {
                format!("{} time(s) two clients held a lock at once", overlaps.len())
            },
            text: overlaps_text(&overlaps),
            verdict: None,
            millis: started.elapsed().as_millis(),
        };
        Ok(vec![linearizable, exclusion])
    }
}

/// A client held a lock, as it believed: from its `ok` acquire's return to
/// its release's invocation (`None`: to the end of the history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub lock: String,
    pub process: u64,
    pub node: Option<String>,
    pub from: u64,
    pub to: Option<u64>,
}

/// Every held interval in a history (JSON lines), in order of `from`.
pub fn held(history: &str) -> Vec<Held> {
    let mut open: BTreeMap<u64, Held> = BTreeMap::new();
    let mut out = Vec::new();
    for line in history.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(process), Some(time)) = (v["process"].as_u64(), v["time"].as_u64()) else {
            continue;
        };
        let (Some(f), Some(kind), Some(lock)) =
            (v["f"].as_str(), v["type"].as_str(), v["key"].as_str())
        else {
            continue;
        };
        match (f, kind) {
            ("acquire", "ok") => {
                let h = Held {
                    lock: lock.to_string(),
                    process,
                    node: v["node"].as_str().map(str::to_string),
                    from: time,
                    to: None,
                };
                if let Some(prev) = open.insert(process, h) {
                    out.push(prev);
                }
            }
            ("release", "invoke") => {
                if let Some(mut h) = open.remove(&process) {
                    h.to = Some(time);
                    out.push(h);
                }
            }
            _ => {}
        }
    }
    out.extend(open.into_values());
    out.sort_by_key(|h| h.from);
    out
}

/// Pairs of intervals on one lock, of different clients, that overlap.
pub fn overlaps(held: &[Held]) -> Vec<(Held, Held)> {
    let mut by_lock: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in held {
        by_lock.entry(&h.lock).or_default().push(h);
    }
    let mut out = Vec::new();
    for hs in by_lock.values() {
        // Sorted by `from`: a later interval overlaps an earlier one iff it
        // starts before the earlier one ends.
        for (j, b) in hs.iter().enumerate() {
            for a in &hs[..j] {
                let ends_after = a.to.is_none_or(|to| to > b.from);
                if a.process != b.process && ends_after {
                    out.push(((*a).clone(), (*b).clone()));
                }
            }
        }
    }
    out
}

fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

fn overlaps_text(pairs: &[(Held, Held)]) -> String {
    if pairs.is_empty() {
        return "mutual exclusion: no two clients held the same lock at the same time\n".into();
    }
    let who = |h: &Held| match &h.node {
        Some(n) => format!("client {} (on {n})", h.process),
        None => format!("client {}", h.process),
    };
    let until = |h: &Held| h.to.map_or("the end".to_string(), secs);
    let locks: BTreeSet<&str> = pairs.iter().map(|(a, _)| a.lock.as_str()).collect();
    let mut s = format!(
        "mutual exclusion violated {} time(s), on {} lock(s): two clients held a lock at once\n",
        pairs.len(),
        locks.len()
    );
    for (a, b) in pairs.iter().take(20) {
        s += &format!(
            "  {}: {} held it from {} to {}; {} acquired it at {} and held it to {}\n",
            a.lock,
            who(a),
            secs(a.from),
            until(a),
            who(b),
            secs(b.from),
            until(b)
        );
    }
    if pairs.len() > 20 {
        s += &format!("  ... and {} more\n", pairs.len() - 20);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: u64, t: &str, f: &str, time: u64) -> String {
        json!({"process": p, "type": t, "f": f, "key": "l", "value": null, "time": time, "node": "m0"})
            .to_string()
    }

    #[test]
    fn held_intervals_in_turn_do_not_overlap() {
        let h = [
            line(0, "invoke", "acquire", 0),
            line(0, "ok", "acquire", 10),
            line(0, "invoke", "release", 20),
            line(1, "invoke", "acquire", 5),
            line(1, "ok", "acquire", 25),
            line(0, "ok", "release", 30),
            line(1, "invoke", "release", 40),
            line(1, "ok", "release", 50),
        ]
        .join("\n");
        let held = held(&h);
        assert_eq!(held.len(), 2);
        assert_eq!((held[0].from, held[0].to), (10, Some(20)));
        assert!(overlaps(&held).is_empty());
    }

    #[test]
    fn two_holders_at_once_are_named() {
        let h = [
            line(0, "invoke", "acquire", 0),
            line(0, "ok", "acquire", 10),
            line(1, "invoke", "acquire", 5),
            line(1, "ok", "acquire", 15),
            line(0, "invoke", "release", 20),
            line(0, "info", "release", 30),
            r#"{"process":"nemesis","type":"info","f":"start","value":{},"time":31}"#.to_string(),
        ]
        .join("\n");
        let pairs = overlaps(&held(&h));
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].0.process, pairs[0].1.process), (0, 1));
        assert_eq!(pairs[0].1.to, None);
        assert!(overlaps_text(&pairs).contains("client 1 (on m0) acquired it at"));
    }

    #[test]
    fn an_unknown_acquire_is_not_held() {
        let h = [
            line(0, "invoke", "acquire", 0),
            line(0, "info", "acquire", 10),
            line(1, "invoke", "acquire", 5),
            line(1, "ok", "acquire", 15),
        ]
        .join("\n");
        assert!(overlaps(&held(&h)).is_empty());
    }

    #[test]
    fn names_rotate() {
        let l = Lock::new();
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = BTreeSet::new();
        for _ in 0..(ACTIVE_LOCKS * ACQUIRES_PER_LOCK * 2) {
            seen.insert(l.pick(&mut rng));
        }
        assert!(seen.len() > ACTIVE_LOCKS);
        assert_eq!(l.active().len(), ACTIVE_LOCKS);
    }
}

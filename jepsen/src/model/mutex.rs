//! A mutex, initially unlocked (the model of Jepsen's etcd lock test, knossos'
//! `mutex`, re-written here).
//!
//! Functions: `acquire` (legal only when unlocked; then locked) and `release`
//! (legal only when locked; then unlocked). Values are ignored: the model does
//! not know who holds the lock, only whether someone does, so a release by one
//! client can pair with another client's acquire (as in knossos). A linearizable
//! history of a mutex is one where no two acquires succeed without a release
//! between them: mutual exclusion, in real time.
//!
//! Unknown outcomes (`info`): an acquire or release that may or may not have
//! happened takes effect when it can (unlocked → locked, locked → unlocked)
//! and is a no-op where it cannot, which stands for "it never happened"; that
//! keeps the model's invariant that an unknown operation is accepted in every
//! state, and it is exact because an unknown operation may always not happen.
//!
//! Operations with a `key` are independent mutexes (one per lock name), so the
//! history is split by key when all have one.

use super::{Compiled, Model};
use crate::history::Operation;
use crate::Result;

/// The mutex model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

/// A compiled mutex operation; `known`: it returned ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexOp {
    Acquire { known: bool },
    Release { known: bool },
}

impl Model for Mutex {
    type Ctx = ();
    type Op = MutexOp;
    /// Locked.
    type State = bool;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn partition_key<'a>(&self, op: &'a Operation) -> Option<&'a str> {
        op.key.as_deref()
    }

    fn compile(&self, ops: &[&Operation]) -> Result<Compiled<(), MutexOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let known = op.output.is_some();
            out.push(Some(match op.f.as_str() {
                "acquire" => MutexOp::Acquire { known },
                "release" => MutexOp::Release { known },
                f => return Err(op.error(format!("mutex has no function {f:?}"))),
            }));
        }
        Ok(Compiled { ctx: (), ops: out })
    }

    fn init(&self, _: &()) -> bool {
        false
    }

    fn step(&self, _: &mut (), &locked: &bool, op: &MutexOp) -> Option<bool> {
        match *op {
            MutexOp::Acquire { known } => match (locked, known) {
                (false, _) => Some(true),
                (true, true) => None,
                (true, false) => Some(true),
            },
            MutexOp::Release { known } => match (locked, known) {
                (true, _) => Some(false),
                (false, true) => None,
                (false, false) => Some(false),
            },
        }
    }

    fn describe_state(&self, _: &(), locked: &bool) -> String {
        if *locked { "locked" } else { "unlocked" }.to_string()
    }

    fn describe_op(&self, op: &Operation) -> String {
        let key = op
            .key
            .as_deref()
            .map(|k| format!("[{k:?}] "))
            .unwrap_or_default();
        let res = if op.output.is_some() { "ok" } else { "?" };
        format!("{key}{} : {res}", op.f)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::{check, History, Options};

    /// (process, type, f, time); every op on one lock `l`.
    fn verdict(rows: &[(u64, &str, &str, u64)]) -> crate::Verdict {
        let text: Vec<String> = rows
            .iter()
            .map(|(p, t, f, time)| {
                json!({"process": p, "type": t, "f": f, "key": "l", "value": Value::Null, "time": time})
                    .to_string()
            })
            .collect();
        let h = History::parse(&text.join("\n")).unwrap();
        check(&Mutex, &h, &Options::default()).unwrap()
    }

    #[test]
    fn acquires_in_turn_are_legal() {
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (0, "invoke", "release", 2),
            (0, "ok", "release", 3),
            (1, "invoke", "acquire", 4),
            (1, "ok", "acquire", 5),
            (1, "invoke", "release", 6),
            (1, "ok", "release", 7),
        ]);
        assert!(v.linearizable, "{v}");
    }

    #[test]
    fn two_holders_at_once_are_caught() {
        // 1 acquires while 0 holds, and 0's release comes after.
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (1, "invoke", "acquire", 2),
            (1, "ok", "acquire", 3),
            (0, "invoke", "release", 4),
            (0, "ok", "release", 5),
            (1, "invoke", "release", 6),
            (1, "ok", "release", 7),
        ]);
        assert!(!v.linearizable);
        let c = v.counterexample.expect("a window");
        assert_eq!(c.partition.as_deref(), Some("l"));
    }

    #[test]
    fn a_release_of_a_free_lock_is_illegal() {
        let v = verdict(&[(0, "invoke", "release", 0), (0, "ok", "release", 1)]);
        assert!(!v.linearizable);
    }

    #[test]
    fn a_concurrent_release_may_come_first() {
        // 1's acquire overlaps 0's release: release, then acquire.
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (0, "invoke", "release", 2),
            (1, "invoke", "acquire", 3),
            (1, "ok", "acquire", 4),
            (0, "ok", "release", 5),
        ]);
        assert!(v.linearizable, "{v}");
    }

    #[test]
    fn an_unknown_release_may_have_happened() {
        // 0's release timed out; 1 then acquired: legal (the release took
        // effect in between).
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (0, "invoke", "release", 2),
            (0, "info", "release", 3),
            (1, "invoke", "acquire", 4),
            (1, "ok", "acquire", 5),
        ]);
        assert!(v.linearizable, "{v}");
    }

    #[test]
    fn an_unknown_acquire_may_never_have_happened() {
        // 0's acquire timed out; 1 acquires and releases twice later.
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "info", "acquire", 1),
            (1, "invoke", "acquire", 2),
            (1, "ok", "acquire", 3),
            (1, "invoke", "release", 4),
            (1, "ok", "release", 5),
            (1, "invoke", "acquire", 6),
            (1, "ok", "acquire", 7),
        ]);
        assert!(v.linearizable, "{v}");
    }

    #[test]
    fn an_unknown_release_cannot_happen_before_its_call() {
        // 1 acquires before 0 even tries to release.
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (1, "invoke", "acquire", 2),
            (1, "ok", "acquire", 3),
            (0, "invoke", "release", 4),
            (0, "info", "release", 5),
        ]);
        assert!(!v.linearizable);
    }

    #[test]
    fn failed_ops_are_dropped() {
        let v = verdict(&[
            (0, "invoke", "acquire", 0),
            (0, "ok", "acquire", 1),
            (1, "invoke", "acquire", 2),
            (1, "fail", "acquire", 3),
            (0, "invoke", "release", 4),
            (0, "ok", "release", 5),
        ]);
        assert!(v.linearizable, "{v}");
    }

    #[test]
    fn locks_are_independent() {
        let rows = [
            json!({"process": 0, "type": "invoke", "f": "acquire", "key": "a", "time": 0}),
            json!({"process": 0, "type": "ok", "f": "acquire", "key": "a", "time": 1}),
            json!({"process": 1, "type": "invoke", "f": "acquire", "key": "b", "time": 2}),
            json!({"process": 1, "type": "ok", "f": "acquire", "key": "b", "time": 3}),
        ];
        let text: Vec<String> = rows.iter().map(Value::to_string).collect();
        let h = History::parse(&text.join("\n")).unwrap();
        let v = check(&Mutex, &h, &Options::default()).unwrap();
        assert!(v.linearizable, "{v}");
        assert_eq!(v.partitions, 2);
    }

    #[test]
    fn unknown_functions_are_refused() {
        let h = History::parse(
            r#"{"process":0,"type":"invoke","f":"read","key":"l","time":0}
{"process":0,"type":"ok","f":"read","key":"l","time":1}"#,
        )
        .unwrap();
        assert!(check(&Mutex, &h, &Options::default()).is_err());
    }
}

//! The linearizability checker: splits a history, searches each part, reports.
//!
//! [`check`] splits the history by the model's partition key (when the model
//! allows it and the caller wants it: linearizability is compositional, Herlihy
//! & Wing 1990, so a history is linearizable iff each per-key sub-history is),
//! compiles each part, and searches the parts on a pool of threads, largest
//! first. The first illegal part found stops the others. The verdict then
//! describes the illegal part with the lowest index that was found (see
//! [`report`] for what the window is).
//!
//! Left out: timeouts (a search runs to its end) and the explanation of
//! linearizable histories (the linearization itself is not kept).

pub mod memo;
pub mod report;
pub mod search;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::history::{History, OpId, Operation};
use crate::model::{Compiled, Model};
use crate::Result;
pub use report::{Counterexample, OpView, Verdict};
use search::{Entry, Failure, Outcome};

/// How to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// Split the history by the model's partition key.
    pub partition: bool,
    /// Worker threads.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            partition: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// One part of the history, compiled.
struct Job<M: Model> {
    index: usize,
    ctx: M::Ctx,
    entries: Vec<Entry<M::Op>>,
    /// Global id of each entry.
    ids: Vec<OpId>,
}

/// Checks `history` against `model`.
pub fn check<M: Model>(model: &M, history: &History, opts: &Options) -> Result<Verdict> {
    let parts = split(model, history, opts.partition);
    let mut jobs = Vec::with_capacity(parts.len());
    for (index, (_, ids)) in parts.iter().enumerate() {
        let ops: Vec<&Operation> = ids.iter().map(|&id| &history.ops[id]).collect();
        let Compiled { ctx, ops: compiled } = model.compile(&ops)?;
        let (mut entries, mut kept) = (Vec::new(), Vec::new());
        for (op, compiled) in ops.iter().zip(compiled) {
            if let Some(c) = compiled {
                entries.push(Entry {
                    op: c,
                    call: op.call,
                    ret: op.ret,
                });
                kept.push(op.id);
            }
        }
        jobs.push(Job::<M> {
            index,
            ctx,
            entries,
            ids: kept,
        });
    }
    let failure = run(model, jobs, opts.threads.max(1));
    let counterexample = failure.map(|(job, f)| {
        report::counterexample(model, history, parts[job.index].0.clone(), &job.ids, f)
    });
    Ok(Verdict {
        model: model.name().to_string(),
        linearizable: counterexample.is_none(),
        operations: history.ops.len(),
        partitions: parts.len(),
        counterexample,
    })
}

/// Splits operation ids by partition key, in order of first appearance.
fn split<M: Model>(
    model: &M,
    history: &History,
    partition: bool,
) -> Vec<(Option<String>, Vec<OpId>)> {
    let keys: Option<Vec<&str>> = if partition {
        history
            .ops
            .iter()
            .map(|op| model.partition_key(op))
            .collect()
    } else {
        None
    };
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        return vec![(None, (0..history.ops.len()).collect())];
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut parts: Vec<(Option<String>, Vec<OpId>)> = Vec::new();
    for (id, key) in keys.into_iter().enumerate() {
        let i = *index.entry(key).or_insert_with(|| {
            parts.push((Some(key.to_string()), Vec::new()));
            parts.len() - 1
        });
        parts[i].1.push(id);
    }
    parts
}

/// Searches the jobs on up to `threads` threads; the illegal job with the lowest
/// index found, if any.
fn run<M: Model>(model: &M, mut jobs: Vec<Job<M>>, threads: usize) -> Option<(Job<M>, Failure)> {
    let stop = AtomicBool::new(false);
    jobs.sort_by_key(|j| (j.entries.len(), std::cmp::Reverse(j.index)));
    let threads = threads.min(jobs.len());
    let work = |queue: &Mutex<Vec<Job<M>>>, found: &Mutex<Vec<(Job<M>, Failure)>>| loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut job) = queue.lock().expect("queue lock").pop() else {
            return;
        };
        if let Outcome::Illegal(f) = search::search(model, &mut job.ctx, &job.entries, &stop) {
            stop.store(true, Ordering::Relaxed);
            found.lock().expect("found lock").push((job, f));
        }
    };
    let queue = Mutex::new(jobs);
    let found = Mutex::new(Vec::new());
    if threads <= 1 {
        work(&queue, &found);
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| work(&queue, &found));
            }
        });
    }
    let found = found.into_inner().expect("found lock");
    found.into_iter().min_by_key(|(job, _)| job.index)
}

#[cfg(test)]
mod tests;

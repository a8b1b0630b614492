//! The linearizability checker: splits a history, searches each part, reports.
//!
//! [`check`] splits the history by the model's partition key (when the model
//! allows it and the caller wants it: linearizability is compositional, Herlihy
//! & Wing 1990, so a history is linearizable iff each per-key sub-history is),
//! compiles each part, and searches the parts on a pool of threads, round robin
//! in slices, largest first. The first illegal part found stops the others,
//! and the verdict describes it (see [`report`] for what the window is).
//!
//! Left out: timeouts (a search runs to its end) and the explanation of
//! linearizable histories (the linearization itself is not kept).

pub mod memo;
pub mod report;
pub mod search;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::history::{History, OpId, Operation};
use crate::model::{Compiled, Model};
use crate::Result;
pub use report::{Counterexample, OpView, Verdict};
use search::{Entry, Failure, Outcome, Search};

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

/// One part of the history, being searched.
struct Job<'m, M: Model> {
    index: usize,
    search: Search<'m, M>,
    /// Global id of each operation of the search.
    ids: Vec<OpId>,
    /// Steps of its next slice.
    slice: u64,
}

/// Steps of a job's first slice (tens of microseconds) and of its longest
/// (tens of milliseconds): slices double, so cheap parts finish in their
/// first slices and expensive ones switch rarely (each switch costs caches).
const FIRST_SLICE: u64 = 1 << 12;
const LAST_SLICE: u64 = 1 << 19;

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
        jobs.push(Job {
            index,
            search: Search::new(model, ctx, entries),
            ids: kept,
            slice: FIRST_SLICE,
        });
    }
    let failure = run(jobs, opts.threads.max(1));
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

/// Searches the jobs on up to `threads` threads, round robin in slices (see
/// [`FIRST_SLICE`]), largest first, until all are linearizable or one is not (as
/// Porcupine runs one goroutine per partition: a quick illegal partition is not
/// held up by expensive legal ones). The illegal job found first, if any.
fn run<M: Model>(mut jobs: Vec<Job<'_, M>>, threads: usize) -> Option<(Job<'_, M>, Failure)> {
    jobs.sort_by_key(|j| std::cmp::Reverse(j.search.len()));
    let threads = threads.min(jobs.len());
    let queue = Mutex::new(VecDeque::from(jobs));
    let found = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let work = || {
        while !stop.load(Ordering::Relaxed) {
            let Some(mut job) = queue.lock().expect("queue lock").pop_front() else {
                return;
            };
            match job.search.run(job.slice) {
                None => {
                    job.slice = (job.slice * 2).min(LAST_SLICE);
                    queue.lock().expect("queue lock").push_back(job);
                }
                Some(Outcome::Linearizable) => {}
                Some(Outcome::Illegal(f)) => {
                    stop.store(true, Ordering::Relaxed);
                    found.lock().expect("found lock").get_or_insert((job, f));
                }
            }
        }
    };
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    found.into_inner().expect("found lock")
}

#[cfg(test)]
mod tests;

//! What the checker reports, as data (serde, for a later HTML report) and text.
//!
//! For an illegal history the report is a *window*, defined as follows. The
//! search found a longest prefix P: a sequence of operations that it could
//! linearise (legal in the model, consistent with real time). After P, the
//! earliest-returning operation B not in P could not be placed: every candidate
//! that could go next either disagreed with the model or led back to a
//! configuration already explored, and B could not come later because it had
//! returned. The window is B and every operation concurrent with B (their
//! call-to-return intervals overlap, an unreturned operation ending at
//! +infinity), each marked with its position in P if it is in P. These are the
//! operations whose order around B decides whether B can be placed: the
//! unmarked ones could still have gone before B, the marked ones are those the
//! search ordered before it. With the state after P and P's last operations,
//! the window reads as "from here, these cannot be ordered". P is the first
//! longest prefix met; other orders of the same length may exist.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::search::Failure;
use crate::history::{History, OpId, Operation, ProcessId};
use crate::model::Model;

/// How many operations of the prefix the text shows.
const TAIL: usize = 5;

/// The verdict on a history.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub model: String,
    pub linearizable: bool,
    /// Operations in the history (after dropping `fail`ed ones).
    pub operations: usize,
    /// Parts the history was split into.
    pub partitions: usize,
    /// Present when not linearizable.
    pub counterexample: Option<Counterexample>,
}

/// The smallest window that cannot be linearised (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct Counterexample {
    /// The partition key, if the history was split.
    pub partition: Option<String>,
    /// Operations the search considered in this partition.
    pub partition_operations: usize,
    /// The longest linearisable prefix, in linearization order.
    pub prefix: Vec<OpId>,
    /// The model state after the prefix.
    pub state: String,
    /// The last operations of the prefix, for context.
    pub prefix_tail: Vec<OpView>,
    /// The operation that could not be placed.
    pub blocked: OpId,
    /// It and the operations concurrent with it, by call time.
    pub window: Vec<OpView>,
}

/// An operation, ready to show.
#[derive(Debug, Clone, Serialize)]
pub struct OpView {
    pub id: OpId,
    pub process: ProcessId,
    pub line: usize,
    pub call: u64,
    /// `None`: never returned.
    pub ret: Option<u64>,
    pub description: String,
    /// Position in the prefix, for operations of the window that are in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_position: Option<usize>,
}

impl OpView {
    fn new<M: Model>(model: &M, op: &Operation) -> Self {
        OpView {
            id: op.id,
            process: op.process,
            line: op.line,
            call: op.call,
            ret: op.ret,
            description: model.describe_op(op),
            prefix_position: None,
        }
    }
}

/// Builds the counterexample of a failed search over the operations `ids`.
pub(crate) fn counterexample<M: Model>(
    model: &M,
    history: &History,
    partition: Option<String>,
    ids: &[OpId],
    f: Failure,
) -> Counterexample {
    let prefix: Vec<OpId> = f.prefix.iter().map(|&i| ids[i]).collect();
    let blocked = &history.ops[ids[f.blocked]];
    let position: HashMap<OpId, usize> =
        prefix.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let until = blocked.ret.unwrap_or(u64::MAX);
    let mut window: Vec<&Operation> = ids
        .iter()
        .map(|&id| &history.ops[id])
        .filter(|op| op.call <= until && op.ret.is_none_or(|r| r >= blocked.call))
        .collect();
    window.sort_by_key(|op| (op.call, op.id));
    let tail_start = prefix.len().saturating_sub(TAIL);
    Counterexample {
        partition,
        partition_operations: ids.len(),
        prefix_tail: prefix[tail_start..]
            .iter()
            .map(|&id| OpView::new(model, &history.ops[id]))
            .collect(),
        prefix,
        state: f.state,
        blocked: blocked.id,
        window: window
            .into_iter()
            .map(|op| OpView {
                prefix_position: position.get(&op.id).copied(),
                ..OpView::new(model, op)
            })
            .collect(),
    }
}

impl fmt::Display for OpView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self.ret.map_or("inf".to_string(), |r| r.to_string());
        write!(
            f,
            "op {} (process {}, line {}, time {}..{}): {}",
            self.id, self.process, self.line, self.call, ret, self.description
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "linearizable: {}", self.linearizable)?;
        let Some(c) = &self.counterexample else {
            return writeln!(
                f,
                "model {}: {} operations in {} partition(s)",
                self.model, self.operations, self.partitions
            );
        };
        match &c.partition {
            Some(key) => writeln!(
                f,
                "partition: key {key:?} ({} operations; {} partitions in all)",
                c.partition_operations, self.partitions
            )?,
            None => writeln!(
                f,
                "partition: whole history ({} operations)",
                c.partition_operations
            )?,
        }
        writeln!(
            f,
            "longest linearizable prefix: {} of {} operations",
            c.prefix.len(),
            c.partition_operations
        )?;
        if c.prefix.len() > c.prefix_tail.len() {
            writeln!(f, "  ... {} earlier", c.prefix.len() - c.prefix_tail.len())?;
        }
        for op in &c.prefix_tail {
            writeln!(f, "  {op}")?;
        }
        writeln!(f, "state after the prefix: {}", c.state)?;
        writeln!(
            f,
            "cannot linearise op {} after the prefix; it and the {} operation(s) concurrent with it:",
            c.blocked,
            c.window.len() - 1
        )?;
        for op in &c.window {
            let mark = match op.prefix_position {
                _ if op.id == c.blocked => "  <- cannot be placed".to_string(),
                Some(i) => format!("  [prefix #{}]", i + 1),
                None => "  [not linearised]".to_string(),
            };
            writeln!(f, "  {op}{mark}")?;
        }
        Ok(())
    }
}

//! Sequential specifications ("models") that the checker linearises against.
//!
//! A [`Model`] turns a partition of a history into compact operations once
//! ([`Model::compile`]), then the search calls [`Model::step`] millions of times,
//! so states should be small and cheap to clone, hash and compare: models intern
//! values into integers in a per-partition context (`Ctx`) rather than keep
//! strings or JSON in the state.
//!
//! Invariants a model must keep:
//! - `step` is a pure function of (context contents, state, op): interning more
//!   values into the context may not change earlier answers;
//! - an operation with an unknown outcome (`op.output == None`) is accepted in
//!   every state, and its effect is what it would do if it happened then;
//! - `compile` may drop (return `None` for) an operation only if it can affect no
//!   other operation, e.g. a read whose result is unknown.
//!
//! Models here: [`register::Register`] (read/write/cas), [`kv::Kv`]
//! (get/put/append per key) and [`mutex::Mutex`] (acquire/release per lock
//! name). Later workloads add their own (etcd-style
//! revisions, leases ...).

pub mod intern;
pub mod kv;
pub mod mutex;
pub mod register;

use std::hash::Hash;

use crate::history::Operation;
use crate::Result;

/// One partition, compiled: the context and, per operation, its compiled form
/// (`None`: dropped).
pub struct Compiled<C, O> {
    pub ctx: C,
    pub ops: Vec<Option<O>>,
}

/// A sequential specification.
pub trait Model: Sync {
    /// Per-partition context: interned values, key indices.
    type Ctx: Send;
    /// An operation, compiled.
    type Op: Send + Sync;
    /// The model's state.
    type State: Clone + Eq + Hash + Send;

    /// Short name, as given on the command line.
    fn name(&self) -> &'static str;

    /// The key that splits a history into independent sub-histories, if the
    /// model allows it. The history is split only if every operation has one.
    fn partition_key<'a>(&self, _op: &'a Operation) -> Option<&'a str> {
        None
    }

    /// Compiles the operations of one partition (see the module docs for `None`).
    /// Errors name the operation's line.
    fn compile(&self, ops: &[&Operation]) -> Result<Compiled<Self::Ctx, Self::Op>>;

    /// The initial state.
    fn init(&self, ctx: &Self::Ctx) -> Self::State;

    /// The state after `op` in `state`, or `None` if `op` cannot happen there
    /// (its recorded result disagrees).
    fn step(&self, ctx: &mut Self::Ctx, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// A human-readable state.
    fn describe_state(&self, ctx: &Self::Ctx, state: &Self::State) -> String;

    /// A human-readable operation, e.g. `write 3` or `read -> 3`.
    fn describe_op(&self, op: &Operation) -> String {
        let key = op
            .key
            .as_deref()
            .map(|k| format!(" {k:?}"))
            .unwrap_or_default();
        let out = op
            .output
            .as_ref()
            .map_or("?".to_string(), |v| v.to_string());
        format!("{}{key} {} -> {out}", op.f, op.input)
    }
}

//! The linearizability search over one partition of a history.
//!
//! The algorithm is Wing & Gong's (1993) depth-first search for a sequential
//! order, with Lowe's just-in-time refinement and memoisation (2017), in the
//! shape Porcupine gives it (Athalye): call and return events sit in one doubly
//! linked list in time order. Walking it from the front, a call event is a
//! candidate to linearise next: if the model accepts the operation in the current
//! state and the resulting configuration (linearised set, state) is new, the
//! operation's call and return are unlinked ("lifted", as in dancing links) and
//! the walk restarts at the front. Reaching a return event means that operation
//! must already be linearised, so the search backtracks: it restores the last
//! lifted operation and tries the candidate after it. The history is
//! linearizable once every operation that returned is linearised.
//!
//! Indeterminate operations have no return event (their return is +infinity):
//! they stay candidates for ever and need never be linearised, which is the same
//! as "may or may not take effect". The linearised set is a bitset with a Zobrist
//! hash kept up to date on every set and clear, so memo look-ups are O(1).
//!
//! On failure it reports the longest linearised prefix met and the operation
//! whose return stopped the search at that depth. A [`Search`] runs in slices
//! of a given number of steps, so that the caller can interleave partitions and
//! stop them all once one is illegal.

use super::memo::Memo;
use crate::hash::{fx, mix};
use crate::model::Model;

const NIL: u32 = u32::MAX;

/// One operation of the partition, as the search sees it.
pub struct Entry<Op> {
    pub op: Op,
    pub call: u64,
    /// `None`: never returned.
    pub ret: Option<u64>,
}

/// What the search found.
pub enum Outcome {
    Linearizable,
    Illegal(Failure),
}

/// The deepest point of a failed search (indices are into the entries).
pub struct Failure {
    /// The longest sequence of operations linearised, in order.
    pub prefix: Vec<usize>,
    /// The operation whose return was reached, unlinearised, after `prefix`.
    pub blocked: usize,
    /// The model state after `prefix`.
    pub state: String,
}

/// A search over one partition that can run in slices, so that a scheduler can
/// interleave many (a cheap illegal partition is then found early even when an
/// expensive one sits before it).
pub struct Search<'m, M: Model> {
    model: &'m M,
    ctx: M::Ctx,
    entries: Vec<Entry<M::Op>>,
    list: EventList,
    zobrist: Vec<u64>,
    /// The linearised operations, and its Zobrist hash.
    set: Vec<u64>,
    set_hash: u64,
    memo: Memo<M::State>,
    state: M::State,
    /// Linearised operations in order, each with the state before it.
    stack: Vec<(u32, M::State)>,
    /// Operations with a return that are not linearised yet.
    remaining: usize,
    /// The deepest failure point: (prefix, blocked op, state after the prefix).
    best: Option<(Vec<usize>, usize, M::State)>,
    cur: u32,
}

impl<'m, M: Model> Search<'m, M> {
    /// A search for a linearization of `entries`, with the context `ctx` that
    /// `model` compiled them in.
    pub fn new(model: &'m M, ctx: M::Ctx, entries: Vec<Entry<M::Op>>) -> Self {
        let n = entries.len();
        let list = EventList::new(&entries);
        let words = n.div_ceil(64).max(1);
        Search {
            zobrist: (0..n as u64)
                .map(|i| mix(i.wrapping_add(0x9e37_79b9)))
                .collect(),
            set: vec![0u64; words],
            set_hash: 0,
            memo: Memo::new(words),
            state: model.init(&ctx),
            stack: Vec::new(),
            remaining: entries.iter().filter(|e| e.ret.is_some()).count(),
            best: None,
            cur: list.first(),
            list,
            model,
            ctx,
            entries,
        }
    }

    /// Operations in the search.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is nothing to search.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs for up to `budget` steps: the outcome, or `None` if not done yet.
    pub fn run(&mut self, budget: u64) -> Option<Outcome> {
        let Search {
            model,
            ctx,
            entries,
            list,
            zobrist,
            set,
            memo,
            stack,
            best,
            ..
        } = self;
        let mut cur = self.cur;
        let mut set_hash = self.set_hash;
        let mut remaining = self.remaining;
        let state = &mut self.state;
        for _ in 0..budget {
            if remaining == 0 {
                return Some(Outcome::Linearizable);
            }
            let i = list.op(cur);
            if cur != NIL && !list.is_return(cur) {
                let op = i as usize;
                if let Some(next) = model.step(ctx, state, &entries[op].op) {
                    set[op / 64] ^= 1 << (op % 64);
                    set_hash ^= zobrist[op];
                    if memo.insert(set, mix(set_hash ^ fx(&next)), &next) {
                        stack.push((i, std::mem::replace(state, next)));
                        list.lift(i);
                        if list.ret[op] != NIL {
                            remaining -= 1;
                        }
                        cur = list.first();
                        continue;
                    }
                    set[op / 64] ^= 1 << (op % 64);
                    set_hash ^= zobrist[op];
                }
                cur = list.next(cur);
            } else {
                // The earliest pending return: that operation cannot come later.
                if best.as_ref().is_none_or(|b| stack.len() > b.0.len()) {
                    let prefix = stack.iter().map(|(j, _)| *j as usize).collect();
                    let blocked = if cur == NIL { 0 } else { i as usize };
                    *best = Some((prefix, blocked, state.clone()));
                }
                let Some((j, prev)) = stack.pop() else {
                    let (prefix, blocked, state) = best.take().expect("recorded above");
                    return Some(Outcome::Illegal(Failure {
                        prefix,
                        blocked,
                        state: model.describe_state(ctx, &state),
                    }));
                };
                let op = j as usize;
                *state = prev;
                set[op / 64] ^= 1 << (op % 64);
                set_hash ^= zobrist[op];
                list.unlift(j);
                if list.ret[op] != NIL {
                    remaining += 1;
                }
                cur = list.next(list.call[op]);
            }
        }
        self.cur = cur;
        self.set_hash = set_hash;
        self.remaining = remaining;
        None
    }
}

/// Call and return events in time order, as a doubly linked list over arrays.
/// Node `len` is the head sentinel.
struct EventList {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per node: operation index, with the top bit set for return events.
    node_op: Vec<u32>,
    /// Per operation: node of its call, and of its return (or `NIL`).
    call: Vec<u32>,
    ret: Vec<u32>,
    head: u32,
}

const RET_BIT: u32 = 1 << 31;

impl EventList {
    fn new<Op>(entries: &[Entry<Op>]) -> Self {
        // (time, 0 = call / 1 = return, op): calls sort before returns at equal
        // times, so operations that touch count as concurrent.
        let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            events.push((e.call, 0, i as u32));
            if let Some(r) = e.ret {
                events.push((r, 1, i as u32));
            }
        }
        events.sort_unstable();
        let len = events.len();
        let head = len as u32;
        let mut l = EventList {
            next: vec![NIL; len + 1],
            prev: vec![NIL; len + 1],
            node_op: Vec::with_capacity(len),
            call: vec![NIL; entries.len()],
            ret: vec![NIL; entries.len()],
            head,
        };
        let mut last = head;
        for (node, &(_, kind, op)) in events.iter().enumerate() {
            let node = node as u32;
            if kind == 0 {
                l.call[op as usize] = node;
                l.node_op.push(op);
            } else {
                l.ret[op as usize] = node;
                l.node_op.push(op | RET_BIT);
            }
            l.next[last as usize] = node;
            l.prev[node as usize] = last;
            last = node;
        }
        l
    }

    fn first(&self) -> u32 {
        self.next[self.head as usize]
    }

    fn next(&self, node: u32) -> u32 {
        self.next[node as usize]
    }

    fn op(&self, node: u32) -> u32 {
        if node == NIL {
            NIL
        } else {
            self.node_op[node as usize] & !RET_BIT
        }
    }

    fn is_return(&self, node: u32) -> bool {
        self.node_op[node as usize] & RET_BIT != 0
    }

    fn unlink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    /// Undoes `unlink(node)`; valid when undone in reverse order of unlinking.
    fn relink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if n != NIL {
            self.prev[n as usize] = node;
        }
    }

    fn lift(&mut self, op: u32) {
        self.unlink(self.call[op as usize]);
        let r = self.ret[op as usize];
        if r != NIL {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, op: u32) {
        let r = self.ret[op as usize];
        if r != NIL {
            self.relink(r);
        }
        self.relink(self.call[op as usize]);
    }
}

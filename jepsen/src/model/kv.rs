//! A map from string keys to string values, each initially `""`.
//!
//! Functions, all with a `key`: `get` (result: the value; `null` reads as `""`),
//! `put v` (sets it), `append v` (appends `v` to it). Keys are independent, so
//! the history may be split by key.
//!
//! The state holds one value id per key of the partition. The search never
//! builds strings: a value is a node, either a string of the history (put
//! values, appended pieces, get results: node id = string id) or "node +
//! piece", hash-consed so that the same append to the same value gives the same
//! node, with appends to `""` folded to the piece itself. A get compares its
//! result with the node by length, then by walking the pieces backwards
//! (memoised). Two different nodes can spell the same string (`"a"+"bc"` and
//! `"ab"+"c"`): the states then differ for the memo, which costs pruning, never
//! correctness.

use serde_json::Value;

use super::intern::Interner;
use super::{Compiled, Model};
use crate::hash::FxHashMap;
use crate::history::Operation;
use crate::Result;

/// The kv model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

/// A compiled kv operation on key index `key` of its partition.
#[derive(Debug, Clone, Copy)]
pub struct KvOp {
    pub key: u32,
    pub kind: KvKind,
}

/// What a kv operation does; values are interned string ids (0 is `""`).
#[derive(Debug, Clone, Copy)]
pub enum KvKind {
    /// A get that returned this value.
    Get(u32),
    Put(u32),
    Append(u32),
}

/// The values of a partition's keys: one key needs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvState {
    One(u32),
    Many(Box<[u32]>),
}

impl KvState {
    fn get(&self, key: u32) -> u32 {
        match self {
            KvState::One(v) => *v,
            KvState::Many(vs) => vs[key as usize],
        }
    }

    fn set(&self, key: u32, v: u32) -> KvState {
        match self {
            KvState::One(_) => KvState::One(v),
            KvState::Many(vs) => {
                let mut vs = vs.clone();
                vs[key as usize] = v;
                KvState::Many(vs)
            }
        }
    }
}

/// Per-partition context of the kv model.
#[derive(Debug, Clone)]
pub struct KvCtx {
    keys: Vec<String>,
    /// The strings of the history; string id i is node i.
    strings: Vec<String>,
    nodes: Vec<Node>,
    /// (node, piece) -> node of the append.
    appended: FxHashMap<(u32, u32), u32>,
    /// (node, string) -> whether the node spells the string.
    spells: FxHashMap<(u32, u32), bool>,
}

/// A value: `parent` (or nothing, for a history string) followed by `piece`.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    piece: u32,
    len: usize,
}

const NO_PARENT: u32 = u32::MAX;

impl KvCtx {
    fn append(&mut self, cur: u32, piece: u32) -> u32 {
        if cur == 0 {
            return piece;
        }
        if piece == 0 {
            return cur;
        }
        if let Some(&v) = self.appended.get(&(cur, piece)) {
            return v;
        }
        let v = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent: cur,
            piece,
            len: self.nodes[cur as usize].len + self.strings[piece as usize].len(),
        });
        self.appended.insert((cur, piece), v);
        v
    }

    /// Whether `node` spells history string `s`.
    fn equals(&mut self, node: u32, s: u32) -> bool {
        if node == s {
            return true;
        }
        if (node as usize) < self.strings.len()
            || self.nodes[node as usize].len != self.strings[s as usize].len()
        {
            return false;
        }
        if let Some(&eq) = self.spells.get(&(node, s)) {
            return eq;
        }
        let mut rest = self.strings[s as usize].as_bytes();
        let mut n = node;
        let eq = loop {
            let Node { parent, piece, .. } = self.nodes[n as usize];
            match rest.strip_suffix(self.strings[piece as usize].as_bytes()) {
                None => break false,
                Some(r) if parent == NO_PARENT => break r.is_empty(),
                Some(r) => (rest, n) = (r, parent),
            }
        };
        self.spells.insert((node, s), eq);
        eq
    }

    /// The string a node spells.
    fn spell(&self, mut node: u32) -> String {
        let mut pieces = Vec::new();
        while node != NO_PARENT {
            let n = self.nodes[node as usize];
            pieces.push(self.strings[n.piece as usize].as_str());
            node = n.parent;
        }
        pieces.reverse();
        pieces.concat()
    }
}

impl Model for Kv {
    type Ctx = KvCtx;
    type Op = KvOp;
    type State = KvState;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn partition_key<'a>(&self, op: &'a Operation) -> Option<&'a str> {
        op.key.as_deref()
    }

    fn compile(&self, ops: &[&Operation]) -> Result<Compiled<KvCtx, KvOp>> {
        let mut keys: Interner<String> = Interner::default();
        let mut strings = Interner::with_first(String::new());
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key.as_ref().ok_or_else(|| op.error("kv needs a key"))?;
            let key = keys.intern(key.clone());
            let mut string = |v: &Value| match v {
                Value::Null => Ok(0),
                Value::String(s) => Ok(strings.intern(s.clone())),
                other => Err(op.error(format!("kv values are strings, not {other}"))),
            };
            let kind = match op.f.as_str() {
                "get" => match &op.output {
                    None => None,
                    Some(v) => Some(KvKind::Get(string(v)?)),
                },
                "put" => Some(KvKind::Put(string(&op.input)?)),
                "append" => Some(KvKind::Append(string(&op.input)?)),
                f => return Err(op.error(format!("kv has no function {f:?}"))),
            };
            out.push(kind.map(|kind| KvOp { key, kind }));
        }
        let strings = strings.into_values();
        let nodes = strings
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                parent: NO_PARENT,
                piece: i as u32,
                len: s.len(),
            })
            .collect();
        let ctx = KvCtx {
            keys: keys.into_values(),
            strings,
            nodes,
            appended: FxHashMap::default(),
            spells: FxHashMap::default(),
        };
        Ok(Compiled { ctx, ops: out })
    }

    fn init(&self, ctx: &KvCtx) -> KvState {
        if ctx.keys.len() <= 1 {
            KvState::One(0)
        } else {
            KvState::Many(vec![0; ctx.keys.len()].into())
        }
    }

    fn step(&self, ctx: &mut KvCtx, state: &KvState, op: &KvOp) -> Option<KvState> {
        match op.kind {
            KvKind::Get(v) => ctx.equals(state.get(op.key), v).then(|| state.clone()),
            KvKind::Put(v) => Some(state.set(op.key, v)),
            KvKind::Append(piece) => Some(state.set(op.key, ctx.append(state.get(op.key), piece))),
        }
    }

    fn describe_state(&self, ctx: &KvCtx, state: &KvState) -> String {
        let pairs: Vec<String> = ctx
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k:?}: {:?}", ctx.spell(state.get(i as u32))))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }

    fn describe_op(&self, op: &Operation) -> String {
        let key = op.key.as_deref().unwrap_or("");
        match (op.f.as_str(), &op.output) {
            ("get", Some(v)) => format!("get {key:?} -> {v}"),
            ("get", None) => format!("get {key:?} -> ?"),
            (f, out) => {
                let res = if out.is_some() { "ok" } else { "?" };
                format!("{f} {key:?} {} : {res}", op.input)
            }
        }
    }
}

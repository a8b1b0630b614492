//! An Elle-style checker for list-append histories (Kingsbury & Alvaro, VLDB
//! 2020): transactions of `append k v` and `r k` over lists, checked for
//! strict serializability by inferring each key's version order from the
//! reads and searching the dependency graph for cycles.
//!
//! Steps:
//! 1. Pair the history's `txn` operations: `ok` committed, `fail` aborted,
//!    `info` unknown (committed if any of its appends was ever read).
//! 2. Per key, the version order is the longest list read; every read must be
//!    a prefix of it (else `incompatible-order`), without repeated elements
//!    (`duplicate-elements`). A read of an element whose append was aborted is
//!    `G1a`; of an element nobody appended, `garbage-read`; a read ending at an
//!    element its writer followed with another append to the same key is
//!    `G1b` (an intermediate state); an acknowledged append missing from the
//!    version order while a later read of the key exists is `lost-append`.
//! 3. Edges between committed transactions: `ww` (consecutive versions), `wr`
//!    (a read saw the writer's last element), `rw` (a read missed the next
//!    version), and real time (`rt`: one returned before the other was
//!    invoked; encoded through a chain of barrier nodes, so it costs O(n)).
//! 4. Each strongly connected component is explained by the first cycle found
//!    among the classes, in order: `G0` (ww only), `G1c` (ww, wr), `G-single`
//!    (exactly one rw), `G2` (any data edges), then the same with real-time
//!    edges allowed (`G0-realtime` ...: serializable but not strict).
//!
//! Only external reads (a txn's first read of a key, before its own appends to
//! it) make wr and rw edges. Left out: internal-consistency checks and Elle's
//! finer classes (G-nonadjacent, process order).

pub mod graph;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::history::{Event, EventType, ProcessId};
use crate::{Error, Result};
use graph::{Graph, Node, RT, RW, WR, WW};

/// One micro-operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Append(String, u64),
    /// The list read; `None` until known.
    Read(String, Option<Vec<u64>>),
}

/// One transaction of the history.
#[derive(Debug, Clone)]
pub struct Txn {
    pub process: ProcessId,
    pub kind: EventType,
    pub call: u64,
    pub ret: Option<u64>,
    pub mops: Vec<Mop>,
    pub line: usize,
}

/// An anomaly found.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    pub kind: String,
    pub explanation: String,
}

/// The checker's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub txns: usize,
    pub committed: usize,
    /// Counts per anomaly kind.
    pub counts: BTreeMap<String, usize>,
    /// Up to a few of each kind, explained.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.counts.is_empty()
    }

    fn add(&mut self, kind: &str, explanation: String) {
        let n = self.counts.entry(kind.to_string()).or_default();
        *n += 1;
        if *n <= 3 {
            self.anomalies.push(Anomaly {
                kind: kind.to_string(),
                explanation,
            });
        }
    }
}

/// Parses a micro-op list: `[["append","k",1],["r","k",[1,2]]]`.
pub fn parse_mops(v: &Value) -> Option<Vec<Mop>> {
    v.as_array()?
        .iter()
        .map(|m| {
            let m = m.as_array()?;
            let key = m.get(1)?.as_str()?.to_string();
            match m.first()?.as_str()? {
                "append" => Some(Mop::Append(key, m.get(2)?.as_u64()?)),
                "r" => Some(Mop::Read(
                    key,
                    match m.get(2) {
                        None | Some(Value::Null) => None,
                        Some(l) => Some(
                            l.as_array()?
                                .iter()
                                .map(Value::as_u64)
                                .collect::<Option<_>>()?,
                        ),
                    },
                )),
                _ => None,
            }
        })
        .collect()
}

/// Pairs `txn` events into transactions (other functions are ignored).
pub fn txns(events: &[Event]) -> Result<Vec<Txn>> {
    let mut open: HashMap<ProcessId, Txn> = HashMap::new();
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.f == "txn") {
        let mops = parse_mops(&e.value)
            .ok_or_else(|| Error::Invalid(format!("line {}: bad txn value", e.line)))?;
        if e.kind == EventType::Invoke {
            open.insert(
                e.process,
                Txn {
                    process: e.process,
                    kind: EventType::Info,
                    call: e.time,
                    ret: None,
                    mops,
                    line: e.line,
                },
            );
        } else if let Some(mut t) = open.remove(&e.process) {
            t.kind = e.kind;
            if e.kind == EventType::Ok {
                t.ret = Some(e.time);
                t.mops = mops;
            }
            out.push(t);
        }
    }
    out.extend(open.into_values());
    out.sort_by_key(|t| t.call);
    Ok(out)
}

fn show(t: &Txn) -> String {
    let mops: Vec<String> = t
        .mops
        .iter()
        .map(|m| match m {
            Mop::Append(k, v) => format!("append {k} {v}"),
            Mop::Read(k, Some(l)) => format!("r {k} {l:?}"),
            Mop::Read(k, None) => format!("r {k} ?"),
        })
        .collect();
    format!(
        "process {} line {} ({:?}): [{}]",
        t.process,
        t.line,
        t.kind,
        mops.join(", ")
    )
}

/// Checks list-append transactions for strict serializability.
pub fn check(txns: &[Txn]) -> Report {
    let mut rep = Report {
        txns: txns.len(),
        committed: 0,
        counts: BTreeMap::new(),
        anomalies: Vec::new(),
    };
    // Who appended what.
    let mut writer: HashMap<(&str, u64), usize> = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        for m in &t.mops {
            if let Mop::Append(k, v) = m {
                writer.insert((k.as_str(), *v), i);
            }
        }
    }
    // Version orders from committed reads.
    let reads = |t: &Txn| -> Vec<(String, Vec<u64>)> {
        t.mops
            .iter()
            .filter_map(|m| match m {
                Mop::Read(k, Some(l)) => Some((k.clone(), l.clone())),
                _ => None,
            })
            .collect()
    };
    let mut order: HashMap<String, Vec<u64>> = HashMap::new();
    let ok: Vec<usize> = (0..txns.len())
        .filter(|&i| txns[i].kind == EventType::Ok)
        .collect();
    for &i in &ok {
        for (k, l) in reads(&txns[i]) {
            let longest = order.entry(k).or_default();
            if l.len() > longest.len() {
                *longest = l;
            }
        }
    }
    let mut observed = vec![false; txns.len()];
    for &i in &ok {
        for (k, l) in reads(&txns[i]) {
            let longest = &order[&k];
            if !longest.starts_with(&l) {
                rep.add(
                    "incompatible-order",
                    format!(
                        "key {k}: read {l:?} is not a prefix of {longest:?} in {}",
                        show(&txns[i])
                    ),
                );
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = l.iter().find(|v| !seen.insert(**v)) {
                rep.add(
                    "duplicate-elements",
                    format!("key {k}: {d} twice in {}", show(&txns[i])),
                );
            }
            for v in &l {
                match writer.get(&(k.as_str(), *v)) {
                    None => rep.add(
                        "garbage-read",
                        format!("key {k}: {v} never appended, read by {}", show(&txns[i])),
                    ),
                    Some(&w) if txns[w].kind == EventType::Fail => rep.add(
                        "G1a",
                        format!(
                            "key {k}: {v} read by {} was appended by aborted {}",
                            show(&txns[i]),
                            show(&txns[w])
                        ),
                    ),
                    Some(&w) => observed[w] = true,
                }
            }
        }
    }
    // Committed: ok, or info with an observed append.
    let nodes: Vec<usize> = (0..txns.len())
        .filter(|&i| {
            txns[i].kind == EventType::Ok || (txns[i].kind == EventType::Info && observed[i])
        })
        .collect();
    rep.committed = nodes.len();
    let node_of: HashMap<usize, Node> = nodes.iter().enumerate().map(|(n, &i)| (i, n)).collect();
    let mut g = Graph::new(nodes.len());
    // Lost appends: acknowledged, never in the order, though read after.
    let last_read_call: HashMap<&str, u64> = ok.iter().fold(HashMap::new(), |mut m, &i| {
        for mop in &txns[i].mops {
            if let Mop::Read(k, Some(_)) = mop {
                let e = m.entry(k.as_str()).or_insert(0);
                *e = (*e).max(txns[i].call);
            }
        }
        m
    });
    for &i in &ok {
        for m in &txns[i].mops {
            if let Mop::Append(k, v) = m {
                let in_order = order.get(k).is_some_and(|o| o.contains(v));
                let read_after = last_read_call
                    .get(k.as_str())
                    .is_some_and(|&c| Some(c) > txns[i].ret);
                if !in_order && read_after {
                    rep.add(
                        "lost-append",
                        format!(
                            "key {k}: {v} acknowledged by {} but never read, though read later",
                            show(&txns[i])
                        ),
                    );
                }
            }
        }
    }
    // ww.
    for (k, o) in &order {
        for pair in o.windows(2) {
            let (a, b) = (
                writer.get(&(k.as_str(), pair[0])),
                writer.get(&(k.as_str(), pair[1])),
            );
            if let (Some(a), Some(b)) = (
                a.and_then(|a| node_of.get(a)),
                b.and_then(|b| node_of.get(b)),
            ) {
                g.add(*a, *b, WW);
            }
        }
    }
    // wr, rw and G1b, from external reads.
    for &i in &nodes {
        let t = &txns[i];
        let mut appended: Vec<&str> = Vec::new();
        let mut done: Vec<&str> = Vec::new();
        for m in &t.mops {
            match m {
                Mop::Append(k, _) => appended.push(k),
                Mop::Read(k, Some(l))
                    if !appended.contains(&k.as_str()) && !done.contains(&k.as_str()) =>
                {
                    done.push(k);
                    let o = &order[k];
                    if let Some(last) = l.last() {
                        if let Some(&w) = writer.get(&(k.as_str(), *last)) {
                            if let Some(&wn) = node_of.get(&w) {
                                g.add(wn, node_of[&i], WR);
                            }
                            let later = txns[w]
                                .mops
                                .iter()
                                .skip_while(|m| **m != Mop::Append(k.clone(), *last))
                                .skip(1);
                            if w != i
                                && later
                                    .clone()
                                    .any(|m| matches!(m, Mop::Append(k2, _) if k2 == k))
                            {
                                rep.add(
                                    "G1b",
                                    format!(
                                        "key {k}: {} read {last}, an intermediate append of {}",
                                        show(t),
                                        show(&txns[w])
                                    ),
                                );
                            }
                        }
                    }
                    if o.starts_with(l) {
                        if let Some(next) = o.get(l.len()) {
                            if let Some(wn) = writer
                                .get(&(k.as_str(), *next))
                                .and_then(|w| node_of.get(w))
                            {
                                g.add(node_of[&i], *wn, RW);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Real time, through barriers: T → barrier(T.ret) → ... → T' when T.ret < T'.call.
    let mut rets: Vec<(u64, Node)> = nodes
        .iter()
        .filter_map(|&i| txns[i].ret.map(|r| (r, node_of[&i])))
        .collect();
    rets.sort();
    let barriers: Vec<Node> = rets.iter().map(|_| g.node()).collect();
    for (j, &(_, n)) in rets.iter().enumerate() {
        g.add(n, barriers[j], RT);
        if j + 1 < barriers.len() {
            g.add(barriers[j], barriers[j + 1], RT);
        }
    }
    for &i in &nodes {
        let before = rets.partition_point(|&(r, _)| r < txns[i].call);
        if before > 0 {
            g.add(barriers[before - 1], node_of[&i], RT);
        }
    }
    cycles(&g, nodes.len(), &nodes, txns, &mut rep);
    rep
}

/// The cycle classes, in the order they are tried: (name, edges allowed,
/// the one edge kind required exactly once if any).
const CLASSES: [(&str, u8, u8); 8] = [
    ("G0", WW, 0),
    ("G1c", WW | WR, 0),
    ("G-single", WW | WR, RW),
    ("G2", WW | WR | RW, 0),
    ("G0-realtime", WW | RT, 0),
    ("G1c-realtime", WW | WR | RT, 0),
    ("G-single-realtime", WW | WR | RT, RW),
    ("G2-realtime", WW | WR | RW | RT, 0),
];

/// How many start points a search tries per component and class, and how
/// many cycles it compares to report the shortest.
const TRIES: usize = 200;
const CANDIDATES: usize = 32;

fn cycles(g: &Graph, real: usize, nodes: &[usize], txns: &[Txn], rep: &mut Report) {
    for comp in g.sccs() {
        if comp.iter().filter(|&&n| n < real).count() < 2 {
            continue;
        }
        let mut member = vec![false; g.len()];
        for &n in &comp {
            member[n] = true;
        }
        let inside = |n: Node| member[n];
        // Per class, the shortest of the first few cycles found.
        let shortest = |c: Vec<(Node, Vec<(Node, u8)>)>| c.into_iter().min_by_key(|(_, p)| p.len());
        let found = CLASSES.iter().find_map(|&(name, allowed, once)| {
            let cands: Vec<(Node, Vec<(Node, u8)>)> = if once == 0 {
                comp.iter()
                    .filter(|&&n| n < real)
                    .take(TRIES)
                    .filter_map(|&s| g.path(s, s, allowed, &inside).map(|p| (s, p)))
                    .take(CANDIDATES)
                    .collect()
            } else {
                comp.iter()
                    .flat_map(|&a| g.out(a).iter().map(move |&(b, r)| (a, b, r)))
                    .filter(|&(_, b, r)| r & once != 0 && member[b])
                    .take(TRIES)
                    .filter_map(|(a, b, _)| {
                        let mut p = vec![(b, once)];
                        p.extend(g.path(b, a, allowed, &inside)?);
                        Some((a, p))
                    })
                    .take(CANDIDATES)
                    .collect()
            };
            shortest(cands).map(|c| (name, c))
        });
        let Some((name, (start, path))) = found else {
            continue;
        };
        let mut text = String::new();
        let _ = write!(
            text,
            "{} transactions in one strongly connected component; a cycle:\n  T0 {}",
            comp.iter().filter(|&&n| n < real).count(),
            show(&txns[nodes[start]])
        );
        let mut rel = 0u8;
        let mut k = 1;
        for (n, r) in path {
            rel |= r;
            if n >= real {
                continue; // a barrier: fold into the next step
            }
            let names: Vec<&str> = [(WW, "ww"), (WR, "wr"), (RW, "rw"), (RT, "rt")]
                .iter()
                .filter(|(b, _)| rel & b != 0)
                .map(|&(_, s)| s)
                .collect();
            let label = if n == start {
                "T0".to_string()
            } else {
                format!("T{k}")
            };
            let _ = write!(
                text,
                "\n  -{}-> {label} {}",
                names.join("/"),
                show(&txns[nodes[n]])
            );
            k += 1;
            rel = 0;
        }
        rep.add(name, text);
    }
}

#[cfg(test)]
mod tests;

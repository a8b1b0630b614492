//! The watch checker: etcd's watch guarantees, checked over every recorded
//! watch stream against the history of the store that the streams and the
//! writers' acknowledgements reveal together.
//!
//! The nine rules are etcd's (its API guarantees page and its robustness
//! tests' watch validation):
//!
//! | rule | a stream must ... |
//! |---|---|
//! | `ordered` | deliver events in revision order (never a lower revision after a higher one) |
//! | `unique` | never deliver the same event (revision, key) twice |
//! | `atomic` | deliver all of a revision's events (that match it) in one response |
//! | `reliable` | never skip an event between the first and the last revision it covered |
//! | `resumable` | lose nothing across a break: a new stream opened at the next revision carries on exactly |
//! | `bookmarkable` | have delivered every event up to a progress notification's revision before it, and none after |
//! | `filter` | deliver only keys in its range, and no puts (deletes) with NOPUT (NODELETE) |
//! | `prev_kv` | carry, when asked, the key's value before the event (and nothing when not asked) |
//! | `is_create` | mark a put as a creation (create_revision = mod_revision, version 1) exactly when the key did not exist |
//!
//! "The history" is built from the streams themselves: the union of every
//! event any watcher saw, keyed by (revision, key); two watchers that saw
//! different things at the same (revision, key) is an anomaly
//! (`inconsistent`). Each key's events in revision order must then form a
//! valid MVCC chain (versions counting up from 1 since the last delete,
//! create_revision fixed, deletes only of existing keys); a version that jumps
//! means a put no watcher delivered (`reliable`). The writers' records bind the
//! union to what clients did: an acknowledged put must be in it at the
//! revision its response named, once some watcher covered that revision
//! (`lost-write`); every value in it must come from a write that was invoked
//! before the event was delivered and did not fail (`garbage`,
//! `aborted-write`, `wrong-revision`); one revision holds the effects of one
//! write (`split-write`).
//!
//! A stream's coverage runs from its first open's start revision to the
//! highest revision it vouched for (its last event, or a progress
//! notification). Every event of the union in that span that matches the
//! stream's filter must have been delivered; a missing one is `resumable`
//! when it falls between a break and the stream's first delivery after it,
//! `atomic` when the stream saw other events of that revision, `reliable`
//! otherwise.
//!
//! Input: keel-jepsen's own history lines (see [`crate::workload::watch`] for
//! what the watch workload records).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

use crate::history::{own, Event, EventType, ProcessId};
use crate::{Error, Result};

/// The rules, in the order reports list them.
pub const RULES: &[&str] = &[
    "ordered",
    "unique",
    "atomic",
    "reliable",
    "resumable",
    "bookmarkable",
    "filter",
    "prev_kv",
    "is_create",
];

/// The checks of the union against the writers' records.
pub const HISTORY_RULES: &[&str] = &[
    "inconsistent",
    "lost-write",
    "garbage",
    "aborted-write",
    "wrong-revision",
    "split-write",
    "bad-delete",
];

/// At most this many anomalies of one rule are kept in the report.
const KEEP_PER_RULE: usize = 10;

/// What a watch asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub key: String,
    /// Empty: `key` only; else the half-open range [key, range_end).
    pub range_end: String,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl Spec {
    pub fn covers_key(&self, k: &str) -> bool {
        if self.range_end.is_empty() {
            k == self.key
        } else {
            k >= self.key.as_str() && (self.range_end == "\0" || k < self.range_end.as_str())
        }
    }

    pub fn matches(&self, kind: Kind, key: &str) -> bool {
        self.covers_key(key)
            && match kind {
                Kind::Put => !self.no_put,
                Kind::Delete => !self.no_delete,
            }
    }

    fn from_json(v: &Value) -> Option<Spec> {
        Some(Spec {
            key: v.get("key")?.as_str()?.to_string(),
            range_end: v
                .get("range_end")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            prev_kv: v.get("prev_kv").and_then(Value::as_bool).unwrap_or(false),
            no_put: v.get("no_put").and_then(Value::as_bool).unwrap_or(false),
            no_delete: v.get("no_delete").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Put,
    Delete,
}

/// A key's state as an event shows it (a delete's has value "", version 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub value: String,
    pub create: i64,
    pub modrev: i64,
    pub version: i64,
}

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub kind: Kind,
    pub key: String,
    pub kv: Kv,
    pub prev: Option<Kv>,
}

impl Ev {
    fn rev(&self) -> i64 {
        self.kv.modrev
    }

    fn describe(&self) -> String {
        match self.kind {
            Kind::Put => format!(
                "put {}={} (rev {}, create {}, version {})",
                self.key, self.kv.value, self.kv.modrev, self.kv.create, self.kv.version
            ),
            Kind::Delete => format!("delete {} (rev {})", self.key, self.kv.modrev),
        }
    }
}

/// What a stream delivered, in order.
#[derive(Debug, Clone)]
enum Delivery {
    /// A stream was opened at `start`.
    Open {
        start: i64,
    },
    Events {
        events: Vec<Ev>,
        time: u64,
        line: usize,
    },
    Progress {
        revision: i64,
        line: usize,
    },
    /// The stream broke (error, member lost); it will be reopened.
    Break,
    /// The server ended the watch (canceled, compacted).
    End {
        reason: String,
        line: usize,
    },
}

/// One watcher: one spec, many streams over time.
#[derive(Debug, Clone)]
struct Watcher {
    process: ProcessId,
    spec: Spec,
    deliveries: Vec<Delivery>,
}

/// A writer's micro-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Put(String, String),
    Del(String),
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq)]
enum WriteOutcome {
    /// Done at `revision`; `deleted[i]` is how many keys op i deleted.
    Ok {
        revision: i64,
        deleted: Vec<i64>,
    },
    Fail,
    Unknown,
}

#[derive(Debug, Clone)]
struct Write {
    process: ProcessId,
    mops: Vec<Mop>,
    outcome: WriteOutcome,
    call: u64,
    line: usize,
}

/// One anomaly.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Anomaly {
    pub rule: &'static str,
    /// The watcher, when it is about one stream.
    pub process: Option<ProcessId>,
    pub text: String,
}

/// The checker's result.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub watchers: usize,
    pub streams: usize,
    pub delivered: usize,
    pub revisions: usize,
    pub writes: usize,
    /// Anomalies per rule (all of them, also those not kept).
    pub counts: BTreeMap<&'static str, usize>,
    /// The first few anomalies of each rule.
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.counts.values().all(|&n| n == 0)
    }

    /// `rule ×n` for each of `rules` that was violated (empty: all hold).
    pub fn violated(&self, rules: &[&str]) -> Vec<String> {
        rules
            .iter()
            .filter_map(|r| match self.counts.get(r).copied().unwrap_or(0) {
                0 => None,
                n => Some(format!("{r} ×{n}")),
            })
            .collect()
    }

    fn add(&mut self, rule: &'static str, process: Option<ProcessId>, text: String) {
        let n = self.counts.entry(rule).or_insert(0);
        *n += 1;
        if *n <= KEEP_PER_RULE {
            self.anomalies.push(Anomaly {
                rule,
                process,
                text,
            });
        }
    }

    /// The report as text: one line per rule, then the anomalies kept.
    pub fn text(&self) -> String {
        let mut s = format!(
            "watch: {} watchers, {} streams, {} events delivered, {} revisions, {} writes\n",
            self.watchers, self.streams, self.delivered, self.revisions, self.writes
        );
        for rule in RULES.iter().chain(HISTORY_RULES) {
            let n = self.counts.get(rule).copied().unwrap_or(0);
            let _ = writeln!(
                s,
                "  {rule:<14} {}",
                if n == 0 {
                    "holds".to_string()
                } else {
                    format!("VIOLATED ×{n}")
                }
            );
        }
        for a in &self.anomalies {
            let who = a
                .process
                .map_or(String::new(), |p| format!(" (watcher {p})"));
            let _ = writeln!(s, "{}{who}: {}", a.rule, a.text);
        }
        s
    }
}

/// Checks the watch workload's events (from [`crate::history::own::parse`]).
pub fn check(events: &[Event]) -> Result<Report> {
    let (watchers, writes) = collect(events)?;
    let mut r = Report {
        watchers: watchers.len(),
        streams: watchers
            .iter()
            .map(|w| {
                w.deliveries
                    .iter()
                    .filter(|d| matches!(d, Delivery::Open { .. }))
                    .count()
            })
            .sum(),
        writes: writes.len(),
        ..Default::default()
    };
    let union = build_union(&watchers, &mut r);
    r.revisions = union.len();
    r.delivered = watchers
        .iter()
        .flat_map(|w| &w.deliveries)
        .map(|d| match d {
            Delivery::Events { events, .. } => events.len(),
            _ => 0,
        })
        .sum();
    let before = check_chains(&union, &mut r);
    let mut covered = Vec::new();
    for w in &watchers {
        covered.push(check_watcher(w, &union, &before, &mut r));
    }
    check_writes(&watchers, &covered, &writes, &union, &mut r);
    for rule in RULES.iter().chain(HISTORY_RULES) {
        r.counts.entry(rule).or_insert(0);
    }
    Ok(r)
}

/// The union: revision -> key -> event (without prev_kv, which depends on the
/// watch), and the first delivery time of each.
type Union = BTreeMap<i64, BTreeMap<String, (Ev, u64)>>;

/// Each (revision, key)'s state before it: what prev_kv must be.
type Before = HashMap<(i64, String), Option<Kv>>;

fn collect(events: &[Event]) -> Result<(Vec<Watcher>, Vec<Write>)> {
    let mut open: HashMap<ProcessId, &Event> = HashMap::new();
    let mut watchers: BTreeMap<ProcessId, Watcher> = BTreeMap::new();
    let mut writes = Vec::new();
    for e in events {
        if e.kind == EventType::Invoke {
            open.insert(e.process, e);
            continue;
        }
        let Some(inv) = open.remove(&e.process) else {
            continue;
        };
        // Errors point at the line that holds the bad value: the invocation
        // for ops and specs, else the completion.
        let bad_at = |ev: &Event, why: &str| Error::input(ev.line, &own::to_line(ev), why);
        let bad = |why: &str| bad_at(e, why);
        match e.f.as_str() {
            "write" => {
                let mops =
                    parse_mops(&inv.value["ops"]).ok_or_else(|| bad_at(inv, "bad write ops"))?;
                let outcome = match e.kind {
                    EventType::Ok => WriteOutcome::Ok {
                        revision: e.value["revision"]
                            .as_i64()
                            .ok_or_else(|| bad("a write's ok needs a revision"))?,
                        deleted: e.value["deleted"]
                            .as_array()
                            .map(|a| a.iter().map(|d| d.as_i64().unwrap_or(0)).collect())
                            .unwrap_or_default(),
                    },
                    EventType::Fail => WriteOutcome::Fail,
                    _ => WriteOutcome::Unknown,
                };
                writes.push(Write {
                    process: e.process,
                    mops,
                    outcome,
                    call: inv.time,
                    line: inv.line,
                });
            }
            "open" => {
                let spec =
                    Spec::from_json(&inv.value).ok_or_else(|| bad_at(inv, "bad watch spec"))?;
                let w = watchers.entry(e.process).or_insert_with(|| Watcher {
                    process: e.process,
                    spec: spec.clone(),
                    deliveries: Vec::new(),
                });
                if w.spec != spec {
                    return Err(bad_at(inv, "a watcher changed its spec"));
                }
                if e.kind == EventType::Ok {
                    let start = inv.value["start_revision"].as_i64().unwrap_or(0);
                    w.deliveries.push(Delivery::Open { start });
                }
            }
            "events" | "progress" | "break" | "end" => {
                let Some(w) = watchers.get_mut(&e.process) else {
                    return Err(bad("a delivery before the watcher's first open"));
                };
                let d = match (e.f.as_str(), e.kind) {
                    ("events", EventType::Ok) => Delivery::Events {
                        events: parse_events(&e.value["events"])
                            .ok_or_else(|| bad("bad events"))?,
                        time: e.time,
                        line: e.line,
                    },
                    ("progress", EventType::Ok) => Delivery::Progress {
                        revision: e.value["revision"]
                            .as_i64()
                            .ok_or_else(|| bad("progress needs a revision"))?,
                        line: e.line,
                    },
                    ("end", EventType::Ok) => Delivery::End {
                        reason: e.value.to_string(),
                        line: e.line,
                    },
                    _ => Delivery::Break,
                };
                w.deliveries.push(d);
            }
            _ => {}
        }
    }
    Ok((watchers.into_values().collect(), writes))
}

fn parse_mops(v: &Value) -> Option<Vec<Mop>> {
    v.as_array()?
        .iter()
        .map(|m| {
            let a = m.as_array()?;
            let key = a.get(1)?.as_str()?.to_string();
            match a.first()?.as_str()? {
                "put" => Some(Mop::Put(key, a.get(2)?.as_str()?.to_string())),
                "del" => Some(Mop::Del(key)),
                _ => None,
            }
        })
        .collect()
}

fn parse_kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        value: v.get("value")?.as_str()?.to_string(),
        create: v.get("create")?.as_i64()?,
        modrev: v.get("mod")?.as_i64()?,
        version: v.get("version")?.as_i64()?,
    })
}

fn parse_events(v: &Value) -> Option<Vec<Ev>> {
    v.as_array()?
        .iter()
        .map(|e| {
            let kind = match e.get("type")?.as_str()? {
                "put" => Kind::Put,
                "delete" => Kind::Delete,
                _ => return None,
            };
            let prev = match e.get("prev") {
                None | Some(Value::Null) => None,
                Some(p) => Some(parse_kv(p)?),
            };
            Some(Ev {
                kind,
                key: e.get("key")?.as_str()?.to_string(),
                kv: parse_kv(e)?,
                prev,
            })
        })
        .collect()
}

fn build_union(watchers: &[Watcher], r: &mut Report) -> Union {
    let mut u: Union = BTreeMap::new();
    for w in watchers {
        for d in &w.deliveries {
            let Delivery::Events { events, time, .. } = d else {
                continue;
            };
            for e in events {
                let bare = Ev {
                    prev: None,
                    ..e.clone()
                };
                let slot = u.entry(e.rev()).or_default();
                match slot.get_mut(&e.key) {
                    None => {
                        slot.insert(e.key.clone(), (bare, *time));
                    }
                    Some((seen, first)) => {
                        if *seen != bare {
                            r.add(
                                "inconsistent",
                                Some(w.process),
                                format!(
                                    "watchers disagree on revision {} of {}: {} and {}",
                                    e.rev(),
                                    e.key,
                                    seen.describe(),
                                    bare.describe()
                                ),
                            );
                        }
                        *first = (*first).min(*time);
                    }
                }
            }
        }
    }
    u
}

/// Walks each key's events in revision order; returns each event's previous
/// state (for prev_kv).
fn check_chains(u: &Union, r: &mut Report) -> Before {
    let mut state: HashMap<&str, (Option<Kv>, i64)> = HashMap::new();
    let mut before = Before::new();
    for (rev, keys) in u {
        for (key, (e, _)) in keys {
            let (prev, last_rev) = state.get(key.as_str()).cloned().unwrap_or((None, 0));
            before.insert((*rev, key.clone()), prev.clone());
            match (e.kind, &prev) {
                (Kind::Put, None) => {
                    if e.kv.create != e.kv.modrev || e.kv.version != 1 {
                        let last = if last_rev == 0 {
                            "it had no earlier event".to_string()
                        } else {
                            format!("it was deleted at revision {last_rev}")
                        };
                        // Version > 1 on a key whose last delivered event
                        // was a delete: a put went undelivered, or the
                        // create flag is wrong. Either way not a create.
                        r.add(
                            "is_create",
                            None,
                            format!("{} is not marked a creation, but {last}", e.describe()),
                        );
                    }
                }
                (Kind::Put, Some(p)) => {
                    if e.kv.create == e.kv.modrev {
                        r.add(
                            "is_create",
                            None,
                            format!(
                                "{} is marked a creation, but the key existed (put at revision {})",
                                e.describe(),
                                p.modrev
                            ),
                        );
                    } else if e.kv.version > p.version + 1 && e.kv.create == p.create {
                        r.add(
                            "reliable",
                            None,
                            format!(
                                "{}: version {} follows version {} (revision {}); the put(s) in between reached no watcher",
                                e.describe(),
                                e.kv.version,
                                p.version,
                                p.modrev
                            ),
                        );
                    } else if e.kv.version != p.version + 1 || e.kv.create != p.create {
                        r.add(
                            "inconsistent",
                            None,
                            format!(
                                "{} does not follow the key's state before it: create {}, version {} (revision {})",
                                e.describe(),
                                p.create,
                                p.version,
                                p.modrev
                            ),
                        );
                    }
                }
                (Kind::Delete, None) => r.add(
                    "bad-delete",
                    None,
                    format!(
                        "{} of a key that did not exist{}",
                        e.describe(),
                        if last_rev == 0 {
                            String::new()
                        } else {
                            format!(" (deleted at revision {last_rev})")
                        }
                    ),
                ),
                (Kind::Delete, Some(_)) => {}
            }
            let next = match e.kind {
                Kind::Put => Some(e.kv.clone()),
                Kind::Delete => None,
            };
            state.insert(key, (next, *rev));
        }
    }
    before
}

/// Checks one watcher's deliveries; returns the highest revision it covered
/// (0: none).
fn check_watcher(w: &Watcher, u: &Union, before: &Before, r: &mut Report) -> i64 {
    let me = Some(w.process);
    let spec = &w.spec;
    let mut first_start: Option<i64> = None;
    // Highest revision vouched for, and the last event's revision.
    let mut covered = 0i64;
    let mut last_event_rev = 0i64;
    let mut last_progress = 0i64;
    let mut seen: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut reported: BTreeSet<(i64, String)> = BTreeSet::new();
    // (covered before the break, first revision delivered after it).
    let mut gaps: Vec<(i64, i64)> = Vec::new();
    let mut broke_at: Option<i64> = None;
    // Revisions already checked against progress notifications.
    let mut bookmarked = 0i64;
    for d in &w.deliveries {
        match d {
            Delivery::Open { start } => {
                if first_start.is_none() {
                    first_start = Some((*start).max(1));
                    covered = (*start).max(1) - 1;
                    bookmarked = covered;
                    continue;
                }
                broke_at.get_or_insert(covered);
                if *start > covered + 1 {
                    // The harness resumed past what it had: not the
                    // database's fault, but the span is no longer covered.
                    r.add(
                        "resumable",
                        me,
                        format!("reopened at revision {start} after covering only up to {covered}"),
                    );
                }
            }
            Delivery::Break => {
                broke_at.get_or_insert(covered);
            }
            Delivery::End { reason, line } => r.add(
                "resumable",
                me,
                format!("the server ended the watch (line {line}): {reason}"),
            ),
            Delivery::Progress { revision, line } => {
                // Everything up to `revision` must be delivered by now.
                let span = if *revision > bookmarked {
                    u.range(bookmarked + 1..=*revision)
                } else {
                    u.range(0..0)
                };
                for (rev, keys) in span {
                    for (key, (e, _)) in keys {
                        if spec.matches(e.kind, key) && !seen.contains(&(*rev, key.clone())) {
                            reported.insert((*rev, key.clone()));
                            r.add(
                                "bookmarkable",
                                me,
                                format!(
                                    "progress notification at revision {revision} (line {line}) before {}",
                                    e.describe()
                                ),
                            );
                        }
                    }
                }
                bookmarked = bookmarked.max(*revision);
                last_progress = last_progress.max(*revision);
                covered = covered.max(*revision);
            }
            Delivery::Events { events, line, .. } => {
                if let Some(b) = broke_at.take() {
                    if let Some(first) = events.first() {
                        gaps.push((b, first.rev()));
                    }
                }
                let first_rev = events.first().map_or(0, Ev::rev);
                if first_rev < last_event_rev {
                    r.add(
                        "ordered",
                        me,
                        format!(
                            "revision {first_rev} delivered after revision {last_event_rev} (line {line})"
                        ),
                    );
                } else if first_rev == last_event_rev && first_rev != 0 {
                    r.add(
                        "atomic",
                        me,
                        format!(
                            "revision {first_rev} split over two responses (the second on line {line})"
                        ),
                    );
                }
                if first_rev <= last_progress && first_rev != 0 {
                    r.add(
                        "bookmarkable",
                        me,
                        format!(
                            "revision {first_rev} delivered after a progress notification at {last_progress} (line {line})"
                        ),
                    );
                }
                let mut prev_rev = 0;
                for e in events {
                    if e.rev() < prev_rev {
                        r.add(
                            "ordered",
                            me,
                            format!(
                                "revision {} after {prev_rev} in one response (line {line})",
                                e.rev()
                            ),
                        );
                    }
                    prev_rev = e.rev();
                    if !seen.insert((e.rev(), e.key.clone())) {
                        r.add(
                            "unique",
                            me,
                            format!("{} delivered again (line {line})", e.describe()),
                        );
                    }
                    if !spec.matches(e.kind, &e.key) {
                        r.add(
                            "filter",
                            me,
                            format!("{} does not match the watch {spec:?}", e.describe()),
                        );
                    }
                    check_prev(w, e, before, r);
                }
                last_event_rev = last_event_rev.max(prev_rev);
                covered = covered.max(prev_rev);
            }
        }
    }
    let Some(start) = first_start else {
        return 0;
    };
    // Reliability over the span it covered.
    if covered < start {
        return covered;
    }
    for (rev, keys) in u.range(start..=covered) {
        let wanted: Vec<&Ev> = keys
            .iter()
            .filter(|(k, (e, _))| spec.matches(e.kind, k))
            .map(|(_, (e, _))| e)
            .collect();
        let got = wanted
            .iter()
            .filter(|e| seen.contains(&(*rev, e.key.clone())))
            .count();
        for e in wanted {
            let id = (*rev, e.key.clone());
            if seen.contains(&id) || reported.contains(&id) {
                continue;
            }
            let rule = if gaps.iter().any(|&(b, f)| *rev > b && *rev < f) {
                "resumable"
            } else if got > 0 {
                "atomic"
            } else {
                "reliable"
            };
            r.add(
                rule,
                me,
                format!(
                    "{} was never delivered, though the watch covered revisions {start}..={covered}",
                    e.describe()
                ),
            );
        }
    }
    covered
}

fn check_prev(w: &Watcher, e: &Ev, before: &Before, r: &mut Report) {
    let me = Some(w.process);
    if !w.spec.prev_kv {
        if e.prev.is_some() {
            r.add(
                "prev_kv",
                me,
                format!("{} carries a prev_kv it did not ask for", e.describe()),
            );
        }
        return;
    }
    let Some(want) = before.get(&(e.rev(), e.key.clone())) else {
        return;
    };
    if &e.prev != want {
        r.add(
            "prev_kv",
            me,
            format!(
                "{}: prev_kv is {:?}, but before it the key was {:?}",
                e.describe(),
                e.prev,
                want
            ),
        );
    }
}

fn check_writes(
    watchers: &[Watcher],
    covered: &[i64],
    writes: &[Write],
    u: &Union,
    r: &mut Report,
) {
    // How far the watches vouched for each kind of event on a key.
    let coverage = |kind: Kind, key: &str| -> i64 {
        watchers
            .iter()
            .zip(covered)
            .filter(|(w, _)| w.spec.matches(kind, key))
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0)
    };
    let mut by_value: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        for m in &w.mops {
            if let Mop::Put(k, v) = m {
                by_value.insert((k.as_str(), v.as_str()), i);
            }
        }
    }
    // Acknowledged writes are in the union at their revision.
    for w in writes {
        let WriteOutcome::Ok { revision, deleted } = &w.outcome else {
            continue;
        };
        for (i, m) in w.mops.iter().enumerate() {
            let (kind, key) = match m {
                Mop::Put(k, _) => (Kind::Put, k),
                Mop::Del(k) if deleted.get(i).copied().unwrap_or(0) > 0 => (Kind::Delete, k),
                Mop::Del(_) => continue,
            };
            if *revision > coverage(kind, key) {
                continue;
            }
            let found = u.get(revision).and_then(|keys| keys.get(key.as_str()));
            let ok = match (m, found) {
                (Mop::Put(_, v), Some((e, _))) => e.kind == Kind::Put && &e.kv.value == v,
                (Mop::Del(_), Some((e, _))) => e.kind == Kind::Delete,
                (_, None) => false,
            };
            if !ok {
                r.add(
                    "lost-write",
                    None,
                    format!(
                        "process {}'s write on line {} ({m:?}) was acknowledged at revision {revision}, but the watches, which covered that revision, show {}",
                        w.process,
                        w.line,
                        found.map_or("nothing".into(), |(e, _)| e.describe())
                    ),
                );
            }
        }
    }
    // Every put in the union comes from a write that could have made it.
    for (rev, keys) in u {
        let mut writers = BTreeSet::new();
        for (key, (e, delivered)) in keys {
            if e.kind != Kind::Put {
                continue;
            }
            let Some(&i) = by_value.get(&(key.as_str(), e.kv.value.as_str())) else {
                r.add(
                    "garbage",
                    None,
                    format!("{}: no client wrote that value", e.describe()),
                );
                continue;
            };
            writers.insert(i);
            let w = &writes[i];
            if *delivered < w.call {
                r.add(
                    "garbage",
                    None,
                    format!(
                        "{} was delivered before its write (line {}) was invoked",
                        e.describe(),
                        w.line
                    ),
                );
            }
            match &w.outcome {
                WriteOutcome::Fail => r.add(
                    "aborted-write",
                    None,
                    format!(
                        "{} comes from the write on line {}, which failed",
                        e.describe(),
                        w.line
                    ),
                ),
                WriteOutcome::Ok { revision, .. } if revision != rev => r.add(
                    "wrong-revision",
                    None,
                    format!(
                        "{} comes from the write on line {}, acknowledged at revision {revision}",
                        e.describe(),
                        w.line
                    ),
                ),
                _ => {}
            }
        }
        if writers.len() > 1 {
            let lines: Vec<String> = writers
                .iter()
                .map(|&i| writes[i].line.to_string())
                .collect();
            r.add(
                "split-write",
                None,
                format!(
                    "revision {rev} holds the puts of several writes (lines {})",
                    lines.join(", ")
                ),
            );
        }
    }
}

//! Tiny histories, one per rule: a correct one that must pass, and each
//! rule broken on purpose.

use serde_json::{json, Value};

use super::*;

/// Builds a history line by line; times and line numbers count up.
#[derive(Default)]
struct H {
    events: Vec<Event>,
}

impl H {
    fn push(&mut self, process: u64, kind: EventType, f: &str, value: Value) -> &mut Self {
        let n = self.events.len();
        self.events.push(Event {
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            time: n as u64 * 10,
            line: n + 1,
        });
        self
    }

    /// An acknowledged write of `ops` at `rev`, by process 0.
    fn write(&mut self, ops: Value, rev: i64, deleted: Value) -> &mut Self {
        self.push(0, EventType::Invoke, "write", json!({ "ops": ops }));
        self.push(
            0,
            EventType::Ok,
            "write",
            json!({"ops": ops, "revision": rev, "deleted": deleted}),
        )
    }

    fn open(&mut self, p: u64, spec: Value, start: i64) -> &mut Self {
        let mut v = spec.clone();
        v["start_revision"] = json!(start);
        self.push(p, EventType::Invoke, "open", v.clone());
        self.push(p, EventType::Ok, "open", v)
    }

    fn recv(&mut self, p: u64, events: Value) -> &mut Self {
        self.push(p, EventType::Invoke, "events", Value::Null);
        self.push(p, EventType::Ok, "events", json!({ "events": events }))
    }

    fn progress(&mut self, p: u64, rev: i64) -> &mut Self {
        self.push(p, EventType::Invoke, "progress", Value::Null);
        self.push(p, EventType::Ok, "progress", json!({ "revision": rev }))
    }

    fn broke(&mut self, p: u64) -> &mut Self {
        self.push(p, EventType::Invoke, "break", Value::Null);
        self.push(p, EventType::Fail, "break", Value::Null)
    }

    fn check(&self) -> Report {
        check(&self.events).expect("parses")
    }
}

fn all() -> Value {
    json!({"key": "k", "range_end": "l", "prev_kv": true})
}

fn put(k: &str, v: &str, create: i64, rev: i64, version: i64, prev: Value) -> Value {
    json!({"type": "put", "key": k, "value": v, "create": create, "mod": rev,
           "version": version, "prev": prev})
}

fn del(k: &str, rev: i64, prev: Value) -> Value {
    json!({"type": "delete", "key": k, "value": "", "create": 0, "mod": rev,
           "version": 0, "prev": prev})
}

fn kv(v: &str, create: i64, rev: i64, version: i64) -> Value {
    json!({"value": v, "create": create, "mod": rev, "version": version})
}

/// Three writes: put k1=1 (rev 2); txn put k1=2, put k2=3 (rev 3); delete k1 (rev 4).
fn writes(h: &mut H) {
    h.write(json!([["put", "k1", "1"]]), 2, json!([null]));
    h.write(
        json!([["put", "k1", "2"], ["put", "k2", "3"]]),
        3,
        json!([null, null]),
    );
    h.write(json!([["del", "k1"]]), 4, json!([1]));
}

fn ev_put1() -> Value {
    put("k1", "1", 2, 2, 1, Value::Null)
}
fn ev_put2() -> Value {
    put("k1", "2", 2, 3, 2, kv("1", 2, 2, 1))
}
fn ev_put3() -> Value {
    put("k2", "3", 3, 3, 1, Value::Null)
}
fn ev_del() -> Value {
    del("k1", 4, kv("2", 2, 3, 2))
}

fn violated(r: &Report) -> Vec<&'static str> {
    r.counts
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, _)| *k)
        .collect()
}

#[test]
fn a_correct_history_holds_every_rule() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_put2(), ev_put3()]))
        .progress(1, 3)
        .recv(1, json!([ev_del()]))
        .progress(1, 4);
    // A second watcher on k2 only, without prev_kv, broken and resumed.
    h.open(2, json!({"key": "k2"}), 1)
        .broke(2)
        .open(2, json!({"key": "k2"}), 1)
        .recv(2, json!([put("k2", "3", 3, 3, 1, Value::Null)]));
    let r = h.check();
    assert!(r.valid(), "{}", r.text());
    assert_eq!(
        (r.watchers, r.streams, r.delivered, r.revisions),
        (2, 3, 5, 3)
    );
}

#[test]
fn a_skipped_event_breaks_reliable() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_del()]));
    // Another watcher saw revision 3, so the union has it.
    h.open(2, all(), 1)
        .recv(2, json!([ev_put1()]))
        .recv(2, json!([ev_put2(), ev_put3()]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["reliable"], "{}", r.text());
    assert_eq!(r.counts["reliable"], 2);
}

#[test]
fn a_put_no_watcher_saw_shows_as_a_version_jump() {
    let mut h = H::default();
    writes(&mut h);
    // Nobody delivered revision 3; rev 4's prev_kv and version say it exists.
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([put("k1", "9", 2, 5, 3, kv("2", 2, 3, 2))]));
    let r = h.check();
    assert!(r.counts["reliable"] >= 1, "{}", r.text());
    // The acknowledged write at revision 3 is lost too.
    assert!(r.counts["lost-write"] >= 1, "{}", r.text());
}

#[test]
fn a_revision_split_over_two_responses_breaks_atomic() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_put2()]))
        .recv(1, json!([ev_put3()]))
        .recv(1, json!([ev_del()]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["atomic"], "{}", r.text());
}

#[test]
fn half_a_revision_breaks_atomic() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_put2()]))
        .recv(1, json!([ev_del()]));
    h.open(2, all(), 1)
        .recv(2, json!([ev_put1(), ev_put2(), ev_put3()]));
    let r = h.check();
    assert!(r.counts["atomic"] >= 1, "{}", r.text());
}

#[test]
fn duplicates_and_disorder_are_caught() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_put2(), ev_put3()]))
        .recv(1, json!([ev_put1()]));
    let r = h.check();
    assert!(r.counts["ordered"] >= 1, "{}", r.text());
    assert!(r.counts["unique"] >= 1, "{}", r.text());
}

#[test]
fn an_event_outside_the_filter_is_caught() {
    let mut h = H::default();
    writes(&mut h);
    let noput = json!({"key": "k", "range_end": "l", "no_put": true});
    h.open(1, noput, 1)
        .recv(1, json!([del("k1", 4, Value::Null)]));
    h.open(2, json!({"key": "k2"}), 1)
        .recv(2, json!([put("k1", "1", 2, 2, 1, Value::Null)]));
    h.open(3, all(), 1)
        .recv(3, json!([ev_put1()]))
        .recv(3, json!([ev_put2(), ev_put3()]))
        .recv(3, json!([ev_del()]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["filter"], "{}", r.text());
}

#[test]
fn a_wrong_or_unasked_prev_kv_is_caught() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(
            1,
            json!([put("k1", "2", 2, 3, 2, kv("0", 2, 2, 1)), ev_put3()]),
        )
        .recv(1, json!([ev_del()]));
    h.open(2, json!({"key": "k2"}), 1)
        .recv(2, json!([put("k2", "3", 3, 3, 1, kv("x", 1, 1, 1))]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["prev_kv"], "{}", r.text());
    assert_eq!(r.counts["prev_kv"], 2);
}

#[test]
fn a_wrong_creation_flag_is_caught() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(
            1,
            json!([put("k1", "2", 3, 3, 1, kv("1", 2, 2, 1)), ev_put3()]),
        )
        .recv(1, json!([ev_del()]));
    let r = h.check();
    assert!(r.counts["is_create"] >= 1, "{}", r.text());
}

#[test]
fn progress_ahead_of_events_breaks_bookmarkable() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .progress(1, 4)
        .recv(1, json!([ev_put2(), ev_put3()]))
        .recv(1, json!([ev_del()]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["bookmarkable"], "{}", r.text());
}

#[test]
fn a_resume_that_loses_events_breaks_resumable() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .broke(1)
        .open(1, all(), 3)
        .recv(1, json!([ev_del()]));
    h.open(2, all(), 1)
        .recv(2, json!([ev_put1()]))
        .recv(2, json!([ev_put2(), ev_put3()]))
        .recv(2, json!([ev_del()]));
    let r = h.check();
    assert_eq!(violated(&r), vec!["resumable"], "{}", r.text());
}

#[test]
fn writes_must_match_the_events() {
    let mut h = H::default();
    writes(&mut h);
    // A failed write whose value shows up, and a value nobody wrote.
    h.push(
        0,
        EventType::Invoke,
        "write",
        json!({"ops": [["put", "k3", "7"]]}),
    );
    h.push(
        0,
        EventType::Fail,
        "write",
        json!({"ops": [["put", "k3", "7"]]}),
    );
    h.open(1, all(), 1)
        .recv(1, json!([ev_put1()]))
        .recv(1, json!([ev_put2(), ev_put3()]))
        .recv(1, json!([ev_del()]))
        .recv(1, json!([put("k3", "7", 5, 5, 1, Value::Null)]))
        .recv(1, json!([put("k3", "8", 5, 6, 2, kv("7", 5, 5, 1))]));
    let r = h.check();
    assert_eq!(
        violated(&r),
        vec!["aborted-write", "garbage"],
        "{}",
        r.text()
    );
}

#[test]
fn watchers_that_disagree_are_inconsistent() {
    let mut h = H::default();
    writes(&mut h);
    h.open(1, all(), 1).recv(1, json!([ev_put1()]));
    h.open(2, all(), 1)
        .recv(2, json!([put("k1", "2", 2, 2, 1, Value::Null)]));
    let r = h.check();
    assert!(r.counts["inconsistent"] >= 1, "{}", r.text());
}

#[test]
fn bad_input_names_the_line_that_holds_it() {
    let mut h = H::default();
    h.push(
        0,
        EventType::Invoke,
        "write",
        json!({"ops": [["put", "k"]]}),
    );
    h.push(0, EventType::Ok, "write", json!({"revision": 2}));
    let e = check(&h.events).unwrap_err().to_string();
    assert!(e.starts_with("line 1: bad write ops"), "{e}");
    let mut h = H::default();
    h.push(1, EventType::Invoke, "events", Value::Null);
    h.push(1, EventType::Ok, "events", json!({"events": []}));
    let e = check(&h.events).unwrap_err().to_string();
    assert!(
        e.starts_with("line 2: a delivery before the watcher's first open"),
        "{e}"
    );
}

//! Scenario tests of the checker on small hand-written histories.

use serde_json::{json, Value};

use super::*;
use crate::model::{kv::Kv, register::Register};

/// (process, type, f, key, value, time)
type Row<'a> = (u64, &'a str, &'a str, Option<&'a str>, Value, u64);

/// Builds a history from rows.
fn history(rows: &[Row]) -> History {
    let text: Vec<String> = rows
        .iter()
        .map(|(p, t, f, k, v, time)| {
            let mut j = json!({"process": p, "type": t, "f": f, "value": v, "time": time});
            if let Some(k) = k {
                j["key"] = json!(k);
            }
            j.to_string()
        })
        .collect();
    History::parse(&text.join("\n")).unwrap()
}

fn register(rows: &[(u64, &str, &str, Value, u64)]) -> Verdict {
    let rows: Vec<_> = rows
        .iter()
        .map(|(p, t, f, v, time)| (*p, *t, *f, None, v.clone(), *time))
        .collect();
    check(&Register, &history(&rows), &Options::default()).unwrap()
}

// The two examples of MIT 6.824's 2017 quiz 2 (section VII), also Porcupine's
// first tests: a write of 100 overlapping reads of 100 and 0.
#[test]
fn concurrent_reads_may_see_old_and_new_value() {
    let v = register(&[
        (0, "invoke", "write", json!(100), 0),
        (1, "invoke", "read", Value::Null, 25),
        (2, "invoke", "read", Value::Null, 30),
        (2, "ok", "read", Value::Null, 60),
        (1, "ok", "read", json!(100), 75),
        (0, "ok", "write", json!(100), 100),
    ]);
    assert!(v.linearizable);
}

#[test]
fn a_read_after_a_newer_read_cannot_go_back() {
    let v = register(&[
        (0, "invoke", "write", json!(200), 0),
        (1, "invoke", "read", Value::Null, 10),
        (1, "ok", "read", json!(200), 30),
        (2, "invoke", "read", Value::Null, 40),
        (2, "ok", "read", Value::Null, 90),
        (0, "ok", "write", json!(200), 100),
    ]);
    assert!(!v.linearizable);
    let c = v.counterexample.unwrap();
    // The write and the first read linearise; the second read (op 2) cannot.
    assert_eq!(c.prefix, vec![0, 1]);
    assert_eq!(c.state, "200");
    assert_eq!(c.blocked, 2);
    // Only the write overlaps the second read; it is in the prefix.
    let window: Vec<_> = c.window.iter().map(|o| (o.id, o.prefix_position)).collect();
    assert_eq!(window, vec![(0, Some(0)), (2, None)]);
}

#[test]
fn cas_needs_the_old_value() {
    let ok = register(&[
        (0, "invoke", "write", json!(1), 0),
        (0, "ok", "write", json!(1), 1),
        (1, "invoke", "cas", json!([1, 2]), 2),
        (1, "ok", "cas", json!([1, 2]), 3),
        (0, "invoke", "read", Value::Null, 4),
        (0, "ok", "read", json!(2), 5),
    ]);
    assert!(ok.linearizable);
    let bad = register(&[
        (1, "invoke", "cas", json!([1, 2]), 2),
        (1, "ok", "cas", json!([1, 2]), 3),
    ]);
    assert!(!bad.linearizable, "the register starts nil");
}

#[test]
fn failed_operations_never_happened() {
    let v = register(&[
        (0, "invoke", "write", json!(1), 0),
        (0, "fail", "write", json!(1), 1),
        (1, "invoke", "read", Value::Null, 2),
        (1, "ok", "read", json!(1), 3),
    ]);
    assert!(!v.linearizable);
}

#[test]
fn indeterminate_operations_may_or_may_not_happen_any_time_later() {
    // A timed-out write may take effect long after its client gave up...
    let later = register(&[
        (0, "invoke", "write", json!(1), 0),
        (0, "info", "write", json!(1), 1),
        (1, "invoke", "read", Value::Null, 2),
        (1, "ok", "read", Value::Null, 3),
        (1, "invoke", "read", Value::Null, 4),
        (1, "ok", "read", json!(1), 5),
    ]);
    assert!(later.linearizable);
    // ...or never.
    let never = register(&[
        (0, "invoke", "write", json!(1), 0),
        (1, "invoke", "read", Value::Null, 4),
        (1, "ok", "read", Value::Null, 5),
    ]);
    assert!(never.linearizable);
    // But not before it was called.
    let before = register(&[
        (1, "invoke", "read", Value::Null, 0),
        (1, "ok", "read", json!(1), 1),
        (0, "invoke", "write", json!(1), 2),
        (0, "info", "write", json!(1), 3),
    ]);
    assert!(!before.linearizable);
}

#[test]
fn the_window_holds_the_concurrent_unlinearised_operations() {
    // write 1 ; then concurrently: read -> 2 (impossible), write 3, read -> 3
    let v = register(&[
        (0, "invoke", "write", json!(1), 0),
        (0, "ok", "write", json!(1), 1),
        (1, "invoke", "read", Value::Null, 10),
        (2, "invoke", "write", json!(3), 11),
        (3, "invoke", "read", Value::Null, 12),
        (3, "ok", "read", json!(3), 13),
        (1, "ok", "read", json!(2), 14),
        (2, "ok", "write", json!(3), 15),
    ]);
    let c = v.counterexample.clone().expect("read 2 is impossible");
    assert_eq!(c.blocked, 1);
    let mut window: Vec<_> = c.window.iter().map(|o| o.id).collect();
    window.sort();
    // The longest prefix is [write 1, write 3, read 3]; the read of 2 overlaps
    // the write of 3 and the read of 3, not the first write.
    assert_eq!(c.prefix, vec![0, 2, 3]);
    assert_eq!(window, vec![1, 2, 3]);
    let text = v.to_string();
    assert!(text.starts_with("linearizable: false\n"), "{text}");
    assert!(text.contains("read -> 2  <- cannot be placed"), "{text}");
    assert!(text.contains("write 3 : ok  [prefix #2]"), "{text}");
}

fn kv(rows: &[(u64, &str, &str, &str, Value, u64)], partition: bool) -> Verdict {
    let rows: Vec<_> = rows
        .iter()
        .map(|(p, t, f, k, v, time)| (*p, *t, *f, Some(*k), v.clone(), *time))
        .collect();
    let opts = Options {
        partition,
        ..Options::default()
    };
    check(&Kv, &history(&rows), &opts).unwrap()
}

#[test]
fn kv_appends_accumulate_per_key() {
    let rows = [
        (0, "invoke", "append", "a", json!("x"), 0),
        (1, "invoke", "append", "a", json!("y"), 1),
        (2, "invoke", "put", "b", json!("z"), 2),
        (0, "ok", "append", "a", json!("x"), 3),
        (1, "ok", "append", "a", json!("y"), 4),
        (2, "ok", "put", "b", json!("z"), 5),
        (0, "invoke", "get", "a", Value::Null, 6),
        (0, "ok", "get", "a", json!("yx"), 7),
        (1, "invoke", "get", "b", Value::Null, 8),
        (1, "ok", "get", "b", json!("z"), 9),
        (2, "invoke", "get", "c", Value::Null, 10),
        (2, "ok", "get", "c", json!(""), 11),
    ];
    for partition in [true, false] {
        let v = kv(&rows, partition);
        assert!(v.linearizable, "partition {partition}");
        assert_eq!(v.partitions, if partition { 3 } else { 1 });
    }
    let mut bad = rows.to_vec();
    bad[7].4 = json!("xyx");
    for partition in [true, false] {
        let v = kv(&bad, partition);
        assert!(!v.linearizable, "partition {partition}");
        let c = v.counterexample.unwrap();
        assert_eq!(c.partition.as_deref(), partition.then_some("a"));
    }
}

#[test]
fn kv_values_spelled_differently_compare_equal() {
    // "ab" + "c" must equal the put "abc" read back, and "a" + "bc" too.
    let v = kv(
        &[
            (0, "invoke", "put", "k", json!("ab"), 0),
            (0, "ok", "put", "k", json!("ab"), 1),
            (0, "invoke", "append", "k", json!("c"), 2),
            (0, "ok", "append", "k", json!("c"), 3),
            (0, "invoke", "get", "k", Value::Null, 4),
            (0, "ok", "get", "k", json!("abc"), 5),
        ],
        true,
    );
    assert!(v.linearizable);
}

#[test]
fn models_reject_functions_they_do_not_know() {
    let h = history(&[(0, "invoke", "frobnicate", None, Value::Null, 0)]);
    let err = check(&Register, &h, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("line 1: register has no function \"frobnicate\""),
        "{err}"
    );
    let err = check(&Kv, &h, &Options::default()).unwrap_err().to_string();
    assert!(err.starts_with("line 1: kv needs a key"), "{err}");
}

#[test]
fn an_empty_history_is_linearizable() {
    let v = check(&Register, &History::default(), &Options::default()).unwrap();
    assert!(v.linearizable);
}

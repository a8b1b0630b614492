//! The checker must agree with Porcupine's verdicts on every history of its test
//! data (`expected.tsv`: 102 Jepsen etcd register logs and 6 kv histories).
//! The data directory is `$KEEL_PORCUPINE_DATA`, else `../../shared/data/porcupine`
//! from this crate; the test fails if it is missing.

use keel_jepsen::{bench, History, ModelKind, Options};

#[test]
fn agrees_with_porcupine_on_every_history() {
    let dir = bench::data_dir(None).unwrap_or_else(|e| panic!("Porcupine data is required: {e}"));
    let rows = bench::expected(&dir).expect("expected.tsv");
    assert_eq!(rows.len(), 108, "expected.tsv lists 108 histories");
    let mut wrong = Vec::new();
    for (file, expected) in &rows {
        let history = History::read(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let verdict = bench::model_for(file)
            .check(&history, &Options::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if verdict.linearizable != *expected {
            wrong.push(file.clone());
        }
        if !verdict.linearizable {
            let c = verdict.counterexample.as_ref().expect("a counterexample");
            assert!(c.window.iter().any(|op| op.id == c.blocked), "{file}");
        }
    }
    assert!(wrong.is_empty(), "disagrees with Porcupine on {wrong:?}");
}

#[test]
fn kv_verdicts_do_not_depend_on_splitting_by_key() {
    let dir = bench::data_dir(None).unwrap_or_else(|e| panic!("Porcupine data is required: {e}"));
    let whole = Options {
        partition: false,
        ..Options::default()
    };
    for (file, expected) in bench::expected(&dir).unwrap() {
        if !file.starts_with("kv/c01") && !file.starts_with("kv/c10") {
            continue;
        }
        let history = History::read(&dir.join(&file)).unwrap();
        let verdict = ModelKind::Kv.check(&history, &whole).unwrap();
        assert_eq!(verdict.linearizable, expected, "{file}");
        assert_eq!(verdict.partitions, 1);
    }
}

#[test]
fn a_cheap_illegal_partition_is_found_past_expensive_ones_on_one_thread() {
    // In c50-bad, some legal-looking partitions take minutes to exhaust; the
    // scheduler must interleave them with the cheap illegal one, even with one
    // worker (this took ~400 s when partitions ran one after the other).
    let dir = bench::data_dir(None).unwrap_or_else(|e| panic!("Porcupine data is required: {e}"));
    let history = History::read(&dir.join("kv/c50-bad.txt")).unwrap();
    let one = Options {
        partition: true,
        threads: 1,
    };
    assert!(!ModelKind::Kv.check(&history, &one).unwrap().linearizable);
}

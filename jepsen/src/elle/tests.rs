use super::*;

fn a(k: &str, v: u64) -> Mop {
    Mop::Append(k.into(), v)
}

fn r(k: &str, l: &[u64]) -> Mop {
    Mop::Read(k.into(), Some(l.to_vec()))
}

fn t(kind: EventType, call: u64, ret: u64, mops: Vec<Mop>) -> Txn {
    Txn {
        process: call,
        kind,
        call,
        ret: (kind == EventType::Ok).then_some(ret),
        mops,
        line: call as usize,
    }
}

fn ok(call: u64, ret: u64, mops: Vec<Mop>) -> Txn {
    t(EventType::Ok, call, ret, mops)
}

fn kinds(txns: &[Txn]) -> Vec<String> {
    check(txns).counts.into_keys().collect()
}

#[test]
fn a_serial_history_is_valid() {
    let h = [
        ok(0, 1, vec![a("x", 1), r("x", &[1])]),
        ok(2, 3, vec![r("x", &[1]), a("x", 2), a("y", 3)]),
        ok(4, 5, vec![r("x", &[1, 2]), r("y", &[3])]),
        t(EventType::Info, 6, 0, vec![a("x", 9)]),
    ];
    let rep = check(&h);
    assert!(rep.valid(), "{rep:?}");
    assert_eq!(rep.committed, 3);
}

#[test]
fn write_cycle_is_g0() {
    let h = [
        ok(0, 10, vec![a("x", 1), a("y", 1)]),
        ok(0, 10, vec![a("x", 2), a("y", 2)]),
        ok(20, 30, vec![r("x", &[1, 2]), r("y", &[2, 1])]),
    ];
    assert_eq!(kinds(&h), vec!["G0"]);
}

#[test]
fn read_skew_is_g_single() {
    let h = [
        ok(0, 10, vec![a("x", 1), a("y", 1)]),
        ok(0, 10, vec![r("x", &[]), r("y", &[1])]),
        ok(20, 30, vec![r("x", &[1])]),
    ];
    assert_eq!(kinds(&h), vec!["G-single"]);
}

#[test]
fn stale_read_is_a_realtime_cycle() {
    let h = [
        ok(0, 10, vec![a("x", 1)]),
        ok(20, 30, vec![r("x", &[])]),
        ok(40, 50, vec![r("x", &[1])]),
    ];
    assert_eq!(kinds(&h), vec!["G-single-realtime"]);
    let text = &check(&h).anomalies[0].explanation;
    assert!(text.contains("-rw->") && text.contains("-rt->"), "{text}");
}

#[test]
fn aborted_intermediate_and_lost() {
    let h = [
        t(EventType::Fail, 0, 0, vec![a("x", 1)]),
        ok(0, 10, vec![r("x", &[1])]),
    ];
    assert_eq!(kinds(&h), vec!["G1a"]);
    let h = [
        ok(0, 10, vec![a("x", 1), a("x", 2)]),
        ok(0, 10, vec![r("x", &[1])]),
        ok(20, 30, vec![r("x", &[1, 2])]),
    ];
    // Reading an intermediate state is also a wr/rw cycle with its writer.
    assert_eq!(kinds(&h), vec!["G-single", "G1b"]);
    let h = [ok(0, 10, vec![a("x", 1)]), ok(20, 30, vec![r("x", &[])])];
    assert_eq!(kinds(&h), vec!["lost-append"]);
    let h = [
        ok(0, 10, vec![a("x", 1), a("x", 2)]),
        ok(20, 30, vec![r("x", &[1, 2])]),
        ok(20, 30, vec![r("x", &[2])]),
    ];
    assert!(kinds(&h).contains(&"incompatible-order".to_string()));
}

#[test]
fn reads_the_history_format() {
    let lines = [
        r#"{"process":0,"type":"invoke","f":"txn","value":[["append","x",1],["r","x",null]],"time":1}"#,
        r#"{"process":0,"type":"ok","f":"txn","value":[["append","x",1],["r","x",[1]]],"time":2}"#,
    ];
    let txns = txns(&crate::history::own::parse(&lines).unwrap()).unwrap();
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0].mops, vec![a("x", 1), r("x", &[1])]);
    assert!(check(&txns).valid());
}

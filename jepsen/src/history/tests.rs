use serde_json::json;

use super::*;

fn line(process: u64, kind: &str, f: &str, value: Value, time: u64) -> String {
    json!({"process": process, "type": kind, "f": f, "value": value, "time": time}).to_string()
}

#[test]
fn pairs_ok_drops_fail_and_keeps_info_open() {
    let text = [
        line(1, "invoke", "write", json!(1), 10),
        line(2, "invoke", "write", json!(2), 11),
        line(3, "invoke", "read", Value::Null, 12),
        line(1, "ok", "write", json!(1), 20),
        line(2, "fail", "write", json!(2), 21),
        line(3, "info", "read", Value::Null, 22),
        line(2, "invoke", "cas", json!([1, 3]), 30),
    ]
    .join("\n");
    let h = History::parse(&text).unwrap();
    assert_eq!(h.ops.len(), 3, "the failed write is dropped");
    let ids: Vec<_> = h.ops.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert_eq!((h.ops[0].call, h.ops[0].ret), (10, Some(20)));
    assert_eq!(h.ops[0].output, Some(json!(1)));
    assert!(h.ops[1].is_indeterminate(), "info never returns");
    assert_eq!(h.ops[1].line, 3);
    assert!(h.ops[2].is_indeterminate(), "open at the end is info");
    assert_eq!(h.ops[2].input, json!([1, 3]));
}

#[test]
fn rejects_a_second_invoke_while_open() {
    let text = [
        line(1, "invoke", "write", json!(1), 10),
        line(1, "invoke", "write", json!(2), 11),
    ]
    .join("\n");
    let err = History::parse(&text).unwrap_err().to_string();
    assert!(err.starts_with("line 2: process 1 invoked while"), "{err}");
}

#[test]
fn rejects_a_completion_without_invoke() {
    let text = line(4, "ok", "read", json!(1), 10);
    let err = History::parse(&text).unwrap_err().to_string();
    assert!(err.contains("line 1: process 4 completes"), "{err}");
}

#[test]
fn names_line_and_text_of_bad_json() {
    let text = format!(
        "{}\n\n{{\"process\": 1, \"type\": \"oops\"}}",
        line(1, "invoke", "read", Value::Null, 1)
    );
    let err = History::parse(&text).unwrap_err();
    let Error::Input { line, text, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*line, 3);
    assert!(text.contains("oops"));
}

#[test]
fn reads_jepsen_logs_with_tabs_or_spaces() {
    let text = "INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]\n\
                INFO  jepsen.util - 1   :invoke :read   nil\n\
                INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                INFO  jepsen.util - 1   :ok     :read   3\n\
                INFO  jepsen.util - 0\t:info\t:cas\t:timed-out\n";
    let h = History::parse(text).unwrap();
    assert_eq!(h.ops.len(), 2);
    assert_eq!(h.ops[0].f, "cas");
    assert_eq!(h.ops[0].input, json!([1, 2]));
    assert!(h.ops[0].is_indeterminate());
    assert_eq!(h.ops[1].output, Some(json!(3)));
    assert_eq!((h.ops[1].call, h.ops[1].ret), (2, Some(4)));
}

#[test]
fn reads_edn_lines() {
    let text = "{:process 0, :type :invoke, :f :get, :key \"a\", :value nil}\n\
                {:process 0, :type :ok, :f :get, :key \"a\", :value \"x\"}\n";
    let h = History::parse(text).unwrap();
    assert_eq!(h.ops[0].key.as_deref(), Some("a"));
    assert_eq!(h.ops[0].output, Some(json!("x")));
}

#[test]
fn rejects_unknown_formats_and_bad_lines() {
    let err = History::parse("\nhello world\n").unwrap_err().to_string();
    assert_eq!(err, "line 2: unrecognised history format: hello world");
    let err = History::parse("INFO  jepsen.util - 0\t:invoke\t:read\tnil\ngarbage\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("line 2:") && err.ends_with(": garbage"),
        "{err}"
    );
}

#[test]
fn own_format_round_trips() {
    let e = Event {
        process: 7,
        kind: EventType::Ok,
        f: "get".into(),
        key: Some("k".into()),
        value: json!("v"),
        time: 99,
        line: 1,
    };
    let events = own::parse(&[own::to_line(&e).as_str()]).unwrap();
    assert_eq!(events[0].key.as_deref(), Some("k"));
    assert_eq!((events[0].process, events[0].time), (7, 99));
    assert_eq!(events[0].kind, EventType::Ok);
}

#[test]
fn own_format_skips_nemesis_lines() {
    let text = [
        r#"{"process":"nemesis","type":"info","f":"start","value":{"fault":"kill"},"time":5}"#
            .to_string(),
        line(1, "invoke", "write", json!(1), 10),
        r#"{"process":"nemesis","type":"info","f":"stop","value":null,"time":15}"#.to_string(),
        line(1, "ok", "write", json!(1), 20),
    ]
    .join("\n");
    let h = History::parse(&text).unwrap();
    assert_eq!(h.ops.len(), 1);
    let bad = r#"{"process":"bob","type":"invoke","f":"read","time":1}"#;
    let e = History::parse(bad).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("bob"), "{e}");
}

//! The `keel-jepsen check` command: its output and exit codes (0 linearizable,
//! 1 not, 2 unreadable input), on Porcupine's data and on keel's own format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn keel_jepsen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-jepsen"))
        .args(args)
        .output()
        .expect("run keel-jepsen")
}

fn data(file: &str) -> String {
    let dir = keel_jepsen::bench::data_dir(None)
        .unwrap_or_else(|e| panic!("Porcupine data is required: {e}"));
    dir.join(file).to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn exit_0_when_linearizable() {
    let o = keel_jepsen(&["check", "--model", "register", &data("jepsen/etcd_002.log")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("linearizable: true\n"));
    let o = keel_jepsen(&[
        "check",
        "--model",
        "kv",
        &data("kv/c01-ok.txt"),
        "--no-partition",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn exit_1_and_a_window_when_not() {
    let o = keel_jepsen(&["check", "--model", "register", &data("jepsen/etcd_000.log")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("linearizable: false\n"), "{out}");
    assert!(out.contains("longest linearizable prefix:"), "{out}");
    assert!(out.contains("<- cannot be placed"), "{out}");

    let o = keel_jepsen(&["check", "--model", "kv", &data("kv/c10-bad.txt")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("partition: key "), "{}", stdout(&o));
}

#[test]
fn json_verdict_is_data() {
    let o = keel_jepsen(&["check", "--model", "kv", "--json", &data("kv/c01-bad.txt")]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["linearizable"], false);
    assert!(v["counterexample"]["window"]
        .as_array()
        .is_some_and(|w| !w.is_empty()));
}

#[test]
fn reads_keel_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(
        dir.path(),
        "ok.jsonl",
        &[
            r#"{"process":1,"type":"invoke","f":"write","key":"k","value":5,"time":100}"#,
            r#"{"process":2,"type":"invoke","f":"read","key":"k","value":null,"time":150}"#,
            r#"{"process":1,"type":"ok","f":"write","key":"k","value":5,"time":200}"#,
            r#"{"process":2,"type":"ok","f":"read","key":"k","value":5,"time":250}"#,
        ],
    );
    let o = keel_jepsen(&["check", "--model", "register", ok.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let bad = write(
        dir.path(),
        "bad.jsonl",
        &[
            r#"{"process":1,"type":"invoke","f":"write","value":5,"time":100}"#,
            r#"{"process":1,"type":"ok","f":"write","value":5,"time":200}"#,
            r#"{"process":2,"type":"invoke","f":"read","value":null,"time":300}"#,
            r#"{"process":2,"type":"ok","f":"read","value":6,"time":400}"#,
        ],
    );
    let o = keel_jepsen(&["check", "--model", "register", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn exit_2_naming_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.jsonl",
        &[
            r#"{"process":1,"type":"invoke","f":"write","value":5,"time":100}"#,
            "",
            r#"{"process":1,"type":"okay","f":"write","value":5,"time":200}"#,
        ],
    );
    let o = keel_jepsen(&["check", "--model", "register", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("line 3:"), "{err}");
    assert!(err.contains(r#""type":"okay""#), "{err}");

    let unknown = write(
        dir.path(),
        "f.jsonl",
        &[r#"{"process":1,"type":"invoke","f":"increment","value":5,"time":100}"#],
    );
    let o = keel_jepsen(&["check", "--model", "register", unknown.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 1: register has no function"),
        "{}",
        stderr(&o)
    );

    let o = keel_jepsen(&["check", "--model", "kv", "/nonexistent/history.txt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/history.txt"),
        "{}",
        stderr(&o)
    );
}

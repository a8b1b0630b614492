//! Interop with the real tools.
//!
//! `etcdctl_output_matches_etcd`: the real etcdctl 3.4 runs one script of
//! commands against a fresh real etcd 3.4 and a fresh keel member; stdout,
//! stderr and exit codes must match line for line (cluster id, member id and
//! raft term aside, which differ by nature).
//!
//! `etcd_client_crate_works`: the `etcd-client` crate drives the same kinds of
//! operations against keel.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{same_on_etcd_and_keel, Cluster};

/// One etcdctl invocation: arguments and optional stdin.
struct Step {
    args: Vec<&'static str>,
    stdin: Option<&'static str>,
}

fn step(args: &'static str) -> Step {
    Step {
        args: args.split_whitespace().collect(),
        stdin: None,
    }
}

fn step_in(args: &'static str, stdin: &'static str) -> Step {
    Step {
        args: args.split_whitespace().collect(),
        stdin: Some(stdin),
    }
}

const TXN: &str = "value(\"foo\") = \"bar2\"\n\nput txnkey ok\nget foo\n\nput txnkey fail\n\n";
const TXN_FAIL: &str =
    "mod(\"foo\") > \"1000\"\nversion(\"/p/b\") = \"1\"\n\nput never x\n\nget foo\ndel /q\n\n";

fn script() -> Vec<Step> {
    vec![
        step("get foo"),
        step("put foo bar"),
        step("put foo bar2 --prev-kv"),
        step("get foo"),
        step("get foo -w json"),
        step("get foo -w fields"),
        step("put /p/a 1"),
        step("put /p/b 2"),
        step("put /p/c 3"),
        step("put /q 4"),
        step("put /r 5 -w json"),
        step("get /p --prefix"),
        step("get /p --prefix --keys-only"),
        step("get /p --prefix --print-value-only"),
        step("get /p --prefix --limit 2 -w json"),
        step("get /p --prefix --limit 2"),
        step("get /p --from-key"),
        step("get /p --from-key --limit 1 -w fields"),
        step("get /p --prefix --sort-by=VALUE --order=DESCEND"),
        step("get /p --prefix --sort-by=MODIFY --order=ASCEND -w json"),
        step("get /p --prefix --sort-by=CREATE --order=DESCEND --keys-only"),
        step("get /p --prefix --order=DESCEND"),
        step("get /p --prefix --count-only -w json"),
        step("get /p --prefix --count-only -w fields"),
        step("get foo --rev 2"),
        step("get foo --rev 2 -w json"),
        step("get /p/a /p/c"),
        step("del /p/a --prev-kv"),
        step("del /nothing"),
        step_in("txn", TXN),
        step_in("txn -w json", TXN_FAIL),
        step_in("txn -i", TXN),
        step_in("txn -w fields", TXN),
        step("get txnkey -w json"),
        step("del /p --prefix -w json"),
        step("compaction 5"),
        step("get foo --rev 3"),
        step("get foo --rev 1000"),
        step("compaction 4"),
        step("compaction --physical 8"),
        step("get --from-key ''"),
        step("get --from-key '' --keys-only -w json"),
        step("put leased v --lease=1234"),
        step("put ignored --ignore-value"),
        step("put foo --ignore-value --prev-kv"),
        step("del foo"),
        step("get foo -w json"),
        step("get foo -w fields"),
    ]
}

/// Replaces the values that legitimately differ between two servers.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut l = line.to_string();
        for key in ["cluster_id", "member_id", "raft_term"] {
            l = replace_number_after(&l, &format!("\"{key}\":"));
        }
        for key in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
            l = replace_number_after(&l, key);
        }
        // etcdctl's own client log lines carry a timestamp and a per-run target.
        for key in ["\"ts\":\"", "\"target\":\""] {
            l = replace_string_after(&l, key);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replace_number_after(line: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(marker) {
        let (head, tail) = rest.split_at(pos + marker.len());
        out.push_str(head);
        let digits = tail.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push('N');
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn replace_string_after(line: &str, marker: &str) -> String {
    match line.find(marker) {
        Some(pos) => {
            let (head, tail) = line.split_at(pos + marker.len());
            match tail.find('"') {
                Some(end) => format!("{head}S{}", &tail[end..]),
                None => line.to_string(),
            }
        }
        None => line.to_string(),
    }
}

fn run_script(etcdctl: &std::path::Path, endpoint: &str) -> Vec<String> {
    let mut transcript = Vec::new();
    for s in script() {
        // etcdctl's own argument parsing: pass '' as an empty argument.
        let args: Vec<String> = s
            .args
            .iter()
            .map(|a| {
                if *a == "''" {
                    String::new()
                } else {
                    a.to_string()
                }
            })
            .collect();
        let mut cmd = Command::new(etcdctl);
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoint)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run etcdctl");
        if let Some(input) = s.stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        transcript.push(format!(
            "$ etcdctl {}\n--- stdout\n{}--- stderr\n{}--- exit {}\n",
            s.args.join(" "),
            normalise(&String::from_utf8_lossy(&out.stdout)),
            normalise(&String::from_utf8_lossy(&out.stderr)),
            out.status.code().unwrap_or(-1)
        ));
    }
    transcript
}

#[test]
fn etcdctl_output_matches_etcd() {
    let Some(got) = same_on_etcd_and_keel("etcdctl steps", run_script) else {
        return;
    };
    println!(
        "{} etcdctl steps print the same on keel as on etcd 3.4",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_works() {
    use etcd_client::{
        Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
        TxnOp,
    };
    let keel = Cluster::start(1);
    let mut c = etcd_client::Client::connect([keel.members[0].url()], None)
        .await
        .unwrap();
    let r = c.put("a", "1", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), 2);
    let r = c
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(r.prev_key().unwrap().value(), b"1");
    for k in ["p/1", "p/2", "p/3"] {
        c.put(k, k, None).await.unwrap();
    }
    let r = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 3);
    let r = c
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.kvs()[0].key(), r.more(), r.count()),
        (&b"p/3"[..], true, 3)
    );
    let r = c
        .get(
            "p/",
            Some(GetOptions::new().with_from_key().with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 3);
    assert!(r.kvs()[0].value().is_empty());
    let r = c
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"1");
    let r = c
        .get(
            "p/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((r.count(), r.kvs().len()), (3, 0));
    let r = c
        .get("a", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(r.kvs()[0].value(), b"2");

    let txn = Txn::new()
        .when([
            Compare::value("a", CompareOp::Equal, "2"),
            Compare::version("a", CompareOp::Greater, 1),
        ])
        .and_then([TxnOp::put("t", "yes", None), TxnOp::get("a", None)])
        .or_else([TxnOp::put("t", "no", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    assert_eq!(c.get("t", None).await.unwrap().kvs()[0].value(), b"yes");
    let nested = Txn::new().and_then([TxnOp::txn(
        Txn::new()
            .when([Compare::create_revision("zz", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("zz", "new", None)]),
    )]);
    assert!(c.txn(nested).await.unwrap().succeeded());
    assert_eq!(c.get("zz", None).await.unwrap().kvs()[0].version(), 1);

    let r = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!((r.deleted(), r.prev_kvs().len()), (3, 3));

    let rev = c.get("a", None).await.unwrap().header().unwrap().revision();
    c.compact(
        rev,
        Some(etcd_client::CompactionOptions::new().with_physical()),
    )
    .await
    .unwrap();
    let e = c
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("required revision has been compacted"),
        "{e}"
    );
    let e = c.put("", "v", None).await.unwrap_err();
    assert!(
        e.to_string().contains("etcdserver: key is not provided"),
        "{e}"
    );
}

/// Runs etcdctl's watch forms against `endpoint` around one fixed sequence of
/// writes and returns what each printed (normalised).
fn run_watch_script(etcdctl: &std::path::Path, endpoint: &str) -> Vec<String> {
    use std::time::Duration;
    let spawn = |args: &[&str], stdin: bool| {
        Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoint)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl")
    };
    let quiet = |args: &[&str]| {
        let out = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let forms: Vec<(Vec<&str>, bool)> = vec![
        (vec!["watch", "--prefix", "/w", "--prev-kv"], false),
        (vec!["watch", "/w/1", "-w", "json"], false),
        (
            vec![
                "watch",
                "/w/1",
                "--",
                "sh",
                "-c",
                "echo got $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION",
            ],
            false,
        ),
        (vec!["watch", "-i"], true),
        (vec!["watch", "/w/", "/w/3"], false),
    ];
    let mut children: Vec<(String, std::process::Child)> = forms
        .iter()
        .map(|(args, stdin)| (args.join(" "), spawn(args, *stdin)))
        .collect();
    let interactive = children[3].1.stdin.as_mut().unwrap();
    interactive.write_all(b"watch /w/2 --prev-kv\n").unwrap();
    interactive.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    quiet(&["put", "/w/1", "a"]);
    quiet(&["put", "/w/1", "b"]);
    quiet(&["put", "/w/2", "c"]);
    quiet(&["put", "/x", "outside"]);
    quiet(&["del", "/w/1"]);
    quiet(&["put", "/w/2", "d"]);
    std::thread::sleep(Duration::from_millis(700));
    let interactive = children[3].1.stdin.as_mut().unwrap();
    interactive.write_all(b"progress\n").unwrap();
    interactive.flush().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut transcript = Vec::new();
    let collect = |name: String, mut child: std::process::Child, transcript: &mut Vec<String>| {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        transcript.push(format!(
            "$ etcdctl {name}\n--- stdout\n{}--- stderr\n{}",
            normalise(&String::from_utf8_lossy(&out.stdout)),
            normalise(&String::from_utf8_lossy(&out.stderr)),
        ));
    };
    for (name, child) in children.drain(..) {
        collect(name, child, &mut transcript);
    }
    // History replay from a past revision, then the compacted case.
    let replay = spawn(
        &["watch", "--rev", "2", "--prefix", "/w", "--prev-kv"],
        false,
    );
    std::thread::sleep(Duration::from_millis(1000));
    collect(
        "watch --rev 2 --prefix /w --prev-kv".into(),
        replay,
        &mut transcript,
    );
    quiet(&["compaction", "5"]);
    let out = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "watch", "--rev", "2", "/w/1"])
        .output()
        .unwrap();
    transcript.push(format!(
        "$ etcdctl watch --rev 2 /w/1 (compacted)\n--- stdout\n{}--- stderr\n{}--- exit {}\n",
        normalise(&String::from_utf8_lossy(&out.stdout)),
        normalise(&String::from_utf8_lossy(&out.stderr)),
        out.status.code().unwrap_or(-1)
    ));
    transcript
}

#[test]
fn etcdctl_watch_matches_etcd() {
    let Some(got) = same_on_etcd_and_keel("watch forms", run_watch_script) else {
        return;
    };
    // The transcript is not trivially empty.
    assert!(
        got[0].contains("/w/1") && got[3].contains("progress notify:"),
        "{}",
        got.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_watch_works() {
    use etcd_client::{EventType, WatchOptions};
    let keel = Cluster::start(1);
    let mut c = etcd_client::Client::connect([keel.members[0].url()], None)
        .await
        .unwrap();
    let mut stream = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_progress_notify(),
            ),
        )
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    let id = created.watch_id();
    c.put("w/a", "1", None).await.unwrap();
    c.put("w/a", "2", None).await.unwrap();
    c.delete("w/a", None).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let resp = stream.message().await.unwrap().unwrap();
        for e in resp.events() {
            kinds.push((
                e.event_type(),
                e.kv().unwrap().mod_revision(),
                e.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        kinds,
        vec![
            (EventType::Put, 2, None),
            (EventType::Put, 3, Some(b"1".to_vec())),
            (EventType::Delete, 4, Some(b"2".to_vec())),
        ]
    );
    stream.request_progress().await.unwrap();
    let resp = stream.message().await.unwrap().unwrap();
    assert!(resp.events().is_empty());
    assert_eq!(resp.header().unwrap().revision(), 4);
    stream.cancel(id).await.unwrap();
    let resp = stream.message().await.unwrap().unwrap();
    assert!(resp.canceled());
    assert_eq!(resp.watch_id(), id);
}

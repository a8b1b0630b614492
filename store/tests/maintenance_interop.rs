//! Interop: the real etcdctl 3.4's maintenance commands (`endpoint
//! status|health|hashkv`, `defrag`, `alarm list|disarm`, `move-leader`,
//! `compaction --physical`) print the same against keel as against a real
//! etcd 3.4, in every output format that makes sense, including the NOSPACE
//! alarm and its recovery; and `move-leader` on a 3-member keel cluster.
//! `endpoint health|status|hashkv --cluster` are compared on one member
//! (etcdctl reaches it through MemberList's client URLs; status and hashkv
//! then send the URL, scheme included, as the HTTP/2 `:authority`: see
//! `keel_store::authority`).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require_tool, same_on_etcd_and_keel_with, Cluster};

/// Runs etcdctl against `endpoints`; returns (stdout, stderr, exit code).
fn etcdctl(tool: &Path, endpoints: &str, args: &[&str], stdin: &str) -> (String, String, i32) {
    let mut child = Command::new(tool)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Table columns whose values legitimately differ between two servers.
const TABLE_COLUMNS: &[&str] = &[
    "ID",
    "DB SIZE",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "HASH",
    "TOOK",
];

/// Replaces what legitimately differs between etcd and keel: ids, sizes, Raft
/// indexes and terms, hashes, timings, the endpoint's address; with `loose`,
/// revisions too (steps after filling the quota, which takes a different
/// number of writes on each).
fn normalise(text: &str, endpoint: &str, loose: bool) -> String {
    let text = text.replace(endpoint, "EP");
    let mut numeric = vec![
        "\"cluster_id\":",
        "\"member_id\":",
        "\"raft_term\":",
        "\"dbSize\":",
        "\"dbSizeInUse\":",
        "\"leader\":",
        "\"raftIndex\":",
        "\"raftTerm\":",
        "\"raftAppliedIndex\":",
        "\"hash\":",
        "\"memberID\":",
        "memberID:",
    ];
    if loose {
        numeric.extend(["\"revision\":", "compacted revision "]);
    }
    let mut out = String::new();
    // Table state: the column names, and whether the next row is the header.
    let mut columns: Vec<String> = Vec::new();
    let (mut in_table, mut header_next) = (false, false);
    for line in text.lines() {
        let mut l = line.to_string();
        if l.starts_with('+') {
            // A table border: its widths follow the values.
            let n = l.matches('+').count();
            l = format!("+{}", "-+".repeat(n.saturating_sub(1)));
            if !in_table {
                in_table = true;
                header_next = true;
            }
        } else if l.starts_with('|') {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            if header_next {
                columns = cells.clone();
                header_next = false;
            }
            let cells: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let col = columns.get(i).map(String::as_str).unwrap_or("");
                    if !c.is_empty() && c != col && TABLE_COLUMNS.contains(&col) {
                        "N".to_string()
                    } else {
                        c.clone()
                    }
                })
                .collect();
            l = format!("| {} |", cells.join(" | "));
        } else {
            in_table = false;
        }
        if l.starts_with("EP, ") || l.starts_with("http://EP, ") {
            // Simple output of endpoint status (id, size, term, index,
            // applied index) or hashkv (hash).
            let mut fields: Vec<String> = l.split(", ").map(str::to_string).collect();
            let positions: &[usize] = if fields.len() == 2 {
                &[1]
            } else {
                &[1, 3, 6, 7, 8]
            };
            for &p in positions {
                if let Some(f) = fields.get_mut(p) {
                    *f = "N".into();
                }
            }
            l = fields.join(", ");
        }
        if let Some(pos) = l.find("took = ") {
            l.truncate(pos + "took = ".len());
            l.push('T');
        }
        if let Some(pos) = l.find("Leadership transferred from ") {
            l.truncate(pos);
            l.push_str("Leadership transferred from N to N");
        }
        for key in &numeric {
            l = replace_after(&l, key, |c| c.is_ascii_digit());
        }
        for key in ["\"ts\":\"", "\"target\":\"", "\"took\":\""] {
            l = replace_after(&l, key, |c| c != '"');
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Replaces the run of characters matching `keep` after each `marker` with N.
fn replace_after(line: &str, marker: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(pos) = rest.find(marker) {
        let (head, tail) = rest.split_at(pos + marker.len());
        out.push_str(head);
        let n: usize = tail
            .chars()
            .take_while(|c| keep(*c))
            .map(char::len_utf8)
            .sum();
        out.push('N');
        rest = &tail[n..];
    }
    out.push_str(rest);
    out
}

/// One server's transcript of etcdctl steps.
struct Transcript<'a> {
    tool: &'a Path,
    endpoint: &'a str,
    lines: Vec<String>,
}

impl Transcript<'_> {
    fn step_in(&mut self, args: &[&str], stdin: &str, loose: bool) {
        self.step_shown(args, stdin, loose, &[]);
    }

    /// A step whose arguments named in `hide` are shown as `<arg>` (values
    /// that differ between the servers, such as ids and revisions).
    fn step_shown(&mut self, args: &[&str], stdin: &str, loose: bool, hide: &[&str]) {
        let (out, err, code) = etcdctl(self.tool, self.endpoint, args, stdin);
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.len() > 40 {
                    format!("<{} bytes>", a.len())
                } else if hide.contains(a) {
                    "<arg>".to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        self.lines.push(format!(
            "$ etcdctl {}\n--- stdout\n{}--- stderr\n{}--- exit {code}\n",
            shown.join(" "),
            normalise(&out, self.endpoint, loose),
            normalise(&err, self.endpoint, loose),
        ));
    }

    fn step(&mut self, args: &[&str]) {
        self.step_in(args, "", false);
    }

    fn loose(&mut self, args: &[&str]) {
        self.step_in(args, "", true);
    }

    /// Runs a step without recording it; returns its stdout.
    fn quiet(&self, args: &[&str]) -> String {
        let (out, err, code) = etcdctl(self.tool, self.endpoint, args, "");
        assert_eq!(code, 0, "etcdctl {args:?}: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.quiet(args)).unwrap()
    }
}

const TXN_PUT: &str = "\n\nput txnkey v\n\n";

/// The maintenance commands, in every output format that makes sense.
fn run_maintenance_script(tool: &Path, endpoint: &str) -> Vec<String> {
    let mut t = Transcript {
        tool,
        endpoint,
        lines: Vec::new(),
    };
    for w in ["simple", "json", "table"] {
        t.step(&["endpoint", "status", "-w", w]);
        t.step(&["endpoint", "health", "-w", w]);
        t.step(&["endpoint", "hashkv", "-w", w]);
        // The --cluster form finds the endpoints through MemberList; status
        // and hashkv then dial each member with its URL, scheme included, as
        // the HTTP/2 `:authority`.
        t.step(&["endpoint", "health", "--cluster", "-w", w]);
        t.step(&["endpoint", "status", "--cluster", "-w", w]);
        t.step(&["endpoint", "hashkv", "--cluster", "-w", w]);
    }
    t.step(&["put", "foo", "bar"]);
    t.step(&["put", "foo", "baz"]);
    t.step(&["endpoint", "hashkv", "--rev", "2", "-w", "json"]);
    t.step(&["compaction", "--physical", "2"]);
    t.step(&["compaction", "--physical", "2"]);
    t.step(&["endpoint", "hashkv", "--rev", "2"]);
    t.step(&["endpoint", "hashkv", "--rev", "100", "-w", "json"]);
    t.step(&["endpoint", "hashkv", "--rev", "1", "-w", "table"]);
    t.step(&["endpoint", "hashkv", "-w", "json"]);
    t.step(&["endpoint", "hashkv", "-w", "table"]);
    t.step(&["get", "foo", "--rev", "1"]);
    t.step(&["defrag"]);
    t.step(&["defrag", "-w", "json"]);
    t.step(&["alarm", "list"]);
    t.step(&["alarm", "list", "-w", "json"]);
    t.step(&["alarm", "disarm"]);
    t.step(&["alarm", "disarm", "-w", "json"]);
    let st = t.json(&["endpoint", "status", "-w", "json"]);
    let me = format!(
        "{:x}",
        st[0]["Status"]["header"]["member_id"].as_u64().unwrap()
    );
    t.step_shown(&["move-leader", &me], "", false, &[&me]);
    t.step_shown(&["move-leader", &me, "-w", "json"], "", false, &[&me]);
    t.step(&["move-leader", "1234"]);
    t.step(&["move-leader", "zz"]);
    t.step(&["move-leader"]);

    // Fill the quota by overwriting one key; record the write that fails.
    let big = "x".repeat(10_000);
    let mut filled = false;
    for _ in 0..100 {
        let (_, _, code) = etcdctl(tool, endpoint, &["put", "big", &big], "");
        if code != 0 {
            filled = true;
            break;
        }
    }
    assert!(filled, "the quota was never reached on {endpoint}");
    t.loose(&["put", "big", &big]);
    t.loose(&["put", "small", "1"]);
    for w in ["simple", "json"] {
        t.loose(&["alarm", "list", "-w", w]);
    }
    for w in ["simple", "json", "table"] {
        t.loose(&["endpoint", "status", "-w", w]);
    }
    t.loose(&["endpoint", "health"]);
    t.loose(&["get", "foo"]);
    t.loose(&["del", "foo"]);
    t.step_in(&["txn"], TXN_PUT, true);
    t.loose(&["lease", "grant", "100"]);
    // Disarming first does not help: the next big put raises it again.
    t.loose(&["alarm", "disarm"]);
    t.loose(&["put", "big", &big]);
    let rev = t.json(&["get", "big", "-w", "json"]);
    let rev = rev["header"]["revision"].as_i64().unwrap().to_string();
    t.step_shown(&["compaction", "--physical", &rev], "", true, &[&rev]);
    t.loose(&["defrag"]);
    t.loose(&["alarm", "disarm", "-w", "json"]);
    t.loose(&["alarm", "list"]);
    t.loose(&["put", "small", "1"]);
    t.loose(&["endpoint", "status"]);
    t.lines
}

#[test]
fn etcdctl_maintenance_commands_match_etcd() {
    let Some(got) = same_on_etcd_and_keel_with(
        "maintenance steps",
        &["--quota-backend-bytes", "200000"],
        run_maintenance_script,
    ) else {
        return;
    };
    // Not trivially empty: the alarm and its recovery are in the transcript.
    let all = got.join("\n");
    assert!(all.contains("alarm:NOSPACE"), "{all}");
    assert!(
        all.contains("Finished defragmenting etcd member[EP]"),
        "{all}"
    );
    println!(
        "{} etcdctl maintenance steps print the same on keel as on etcd 3.4",
        got.len()
    );
}

#[test]
fn etcdctl_on_three_members_moves_the_leader() {
    let Some(tool) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    let all = c.endpoints().join(",");
    let (out, err, code) = etcdctl(&tool, &all, &["endpoint", "status", "-w", "json"], "");
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|i| st[i]["Status"]["header"]["member_id"].as_u64().unwrap())
        .collect();
    assert!((0..3).all(|i| st[i]["Status"]["leader"].as_u64() == Some(ids[leader])));
    let target = (leader + 1) % 3;
    // Through every endpoint: etcdctl finds the leader itself.
    let (out, err, code) = etcdctl(
        &tool,
        &all,
        &["move-leader", &format!("{:x}", ids[target])],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "Leadership transferred from {:x} to {:x}\n",
            ids[leader], ids[target]
        )
    );
    // Endpoints written as URLs: etcdctl sends each as the `:authority`.
    let urls: Vec<String> = c
        .endpoints()
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    let (out, err, code) = etcdctl(&tool, &urls.join(","), &["endpoint", "status"], "");
    assert_eq!(code, 0, "{err}");
    let leaders: Vec<&str> = out.lines().map(|l| l.split(", ").nth(4).unwrap()).collect();
    let mut want = vec!["false"; 3];
    want[target] = "true";
    assert_eq!(leaders, want, "{out}");
    // --cluster: every member, through the client URLs of MemberList.
    let (out, err, code) = etcdctl(
        &tool,
        &c.members[0].endpoint(),
        &["endpoint", "hashkv", "--cluster"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    for url in &urls {
        assert!(out.contains(&format!("{url}, ")), "{url} missing:\n{out}");
    }
    // Through followers only: etcdctl's own refusal.
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != target)
        .map(|i| c.members[i].endpoint())
        .collect();
    let (out, err, code) = etcdctl(
        &tool,
        &followers.join(","),
        &["move-leader", &format!("{:x}", ids[leader])],
        "",
    );
    assert_eq!((out.as_str(), code), ("", 128), "{err}");
    assert!(
        err.contains(&format!(
            "Error: no leader endpoint given at [{}]",
            followers.join(" ")
        )),
        "{err}"
    );
}

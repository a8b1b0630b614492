//! keelctl against etcdctl 3.4.23: the same script of commands runs with
//! both CLIs, each against a fresh server of the same kind and addresses,
//! and the transcripts (stdout, stderr, exit code of every step) must be
//! equal after normalising what differs by nature between two runs (lease
//! IDs, which carry the time; durations; the program's name; etcdctl's
//! timestamped client log lines).
//!
//! `same_transcripts_on_keel` runs both CLIs against keel;
//! `same_transcripts_on_etcd` runs both against a real etcd 3.4.23.
//! Both need etcdctl (and the second etcd): missing tools skip with one
//! line, unless KEEL_REQUIRE_TOOLS=1. The keel binary must be built
//! (`cargo build --release -p keel-store --bin keel`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_same_transcripts, require_tool, Cluster, Etcd};

/// One step of a script.
enum Step {
    /// Arguments (`{lease}` is replaced by the last lease granted) and stdin.
    Run(&'static [&'static str], &'static str),
    /// A long-running command (watch, lock, elect): started, then the inner
    /// steps run, then it is interrupted (SIGINT) and its output recorded.
    Background(&'static [&'static str], Vec<Step>),
    /// Like `Background`, with lines written to its stdin first; it ends by
    /// the end of its input instead of an interrupt.
    BackgroundIn(&'static [&'static str], &'static str, Vec<Step>),
}

use Step::{Background, BackgroundIn, Run};

fn script() -> Vec<Step> {
    vec![
        Run(&["put", "foo", "bar"], ""),
        Run(&["put", "foo", "bar2", "--prev-kv"], ""),
        Run(&["put", "foo", "bar3", "--prev-kv", "-w", "json"], ""),
        Run(&["put", "foo", "bar4", "--prev-kv", "-w", "fields"], ""),
        Run(&["put", "foo", "b%dr5", "--prev-kv", "-w", "protobuf"], ""),
        // The value's `%` printed as it is (etcdctl 3.4.23 uses fmt.Print).
        Run(&["get", "foo", "-w", "protobuf"], ""),
        Run(&["put", "foo", "bar", "-w", "table"], ""),
        Run(&["put", "a"], ""),
        Run(&["put", "a"], "from stdin"),
        Run(&["put", "b", "x", "--lease=zz"], ""),
        Run(&["put", "b", "x", "--lease=1234"], ""),
        Run(&["put", "\u{e9}t\u{e9}", "<v>&\"\n\u{1}"], ""),
        Run(&["get", "foo"], ""),
        Run(&["get", "foo", "-w", "json"], ""),
        Run(&["get", "foo", "-w", "fields"], ""),
        Run(&["get", "foo", "-w", "protobuf"], ""),
        Run(&["get", "foo", "--hex"], ""),
        Run(&["get", "", "--prefix", "--keys-only"], ""),
        Run(&["get", "", "--prefix", "-w", "json"], ""),
        Run(&["get", "", "--prefix", "-w", "fields"], ""),
        Run(&["get", "a", "z", "--limit=1", "-w", "json"], ""),
        Run(
            &[
                "get",
                "a",
                "--from-key",
                "--sort-by=modify",
                "--order=descend",
            ],
            "",
        ),
        Run(&["get", "foo", "--print-value-only"], ""),
        Run(&["get", "foo", "--print-value-only", "-w", "json"], ""),
        Run(&["get", "--consistency=s", "foo"], ""),
        Run(&["get"], ""),
        Run(&["get", "a", "b", "--prefix"], ""),
        Run(&["get", "a", "--sort-by=x"], ""),
        Run(&["get", "a", "-w", "xml"], ""),
        Run(&["get", "foo", "--foo"], ""),
        Run(&["get", "foo", "--rev=x"], ""),
        Run(&["-w", "json", "lease", "grant", "--help"], ""),
        Run(&["get", "-h"], ""),
        Run(&["help", "member", "add"], ""),
        Run(&["put", "--help"], ""),
        Run(&["lease"], ""),
        Run(&["endpoint", "status", "--help"], ""),
        Run(&["watch", "--help"], ""),
        Run(&["bogus"], ""),
        Run(&["--endpoints=127.0.0.1:1", "get", "foo"], ""),
        Run(&["del", "foo", "--prev-kv", "-w", "json"], ""),
        Run(&["del", "a", "--from-key", "--prev-kv"], ""),
        Run(&["del", "a"], ""),
        Run(&["del", "a", "--prefix", "--from-key"], ""),
        Run(&["txn"], "mod(\"a\") > \"0\"\n\nput a b\n\nget a\n\n"),
        Run(
            &["txn", "-w", "json"],
            "\nput x y --prev-kv\nget x\n\ndel x\n\n",
        ),
        Run(
            &["txn", "-w", "fields"],
            "value(\"x\") = \"y\"\n\ndel x --prev-kv\n\nget x\n\n",
        ),
        Run(&["txn", "-i"], "\nput q 1\n\n\n"),
        Run(&["txn", "-w", "protobuf"], "\nput x y\n\n\n"),
        Run(&["txn"], "bad\n\n\n\n"),
        Run(&["txn"], "\nput a b\n"),
        Run(&["txn"], "\nfrob a\n\n\n"),
        Run(&["endpoint", "hashkv", "-w", "json"], ""),
        Run(&["endpoint", "hashkv", "-w", "fields"], ""),
        Run(&["endpoint", "hashkv", "-w", "table"], ""),
        Run(&["lease", "grant", "100"], ""),
        Run(&["lease", "timetolive", "{lease}"], ""),
        Run(&["put", "k1", "v", "--lease={lease}"], ""),
        Run(&["lease", "timetolive", "{lease}", "--keys"], ""),
        Run(
            &["lease", "timetolive", "{lease}", "--keys", "-w", "json"],
            "",
        ),
        Run(&["lease", "timetolive", "{lease}", "-w", "fields"], ""),
        Run(&["lease", "list"], ""),
        Run(&["lease", "list", "-w", "json"], ""),
        Run(&["lease", "keep-alive", "--once", "{lease}"], ""),
        Run(
            &["lease", "keep-alive", "--once", "{lease}", "-w", "json"],
            "",
        ),
        Run(&["lease", "revoke", "{lease}"], ""),
        Run(&["lease", "revoke", "{lease}", "-w", "json"], ""),
        Run(&["lease", "timetolive", "{lease}"], ""),
        Run(&["lease", "keep-alive", "{lease}"], ""),
        Run(&["lease", "keep-alive", "--once", "{lease}"], ""),
        Run(&["lease", "grant", "xx"], ""),
        Run(&["lease", "grant", "100", "-w", "table"], ""),
        Run(&["member", "list"], ""),
        Run(&["member", "list", "-w", "json"], ""),
        Run(&["member", "list", "-w", "fields"], ""),
        Run(&["member", "list", "-w", "table"], ""),
        Run(&["member", "list", "-w", "protobuf"], ""),
        Run(&["member", "remove", "xyz"], ""),
        Run(&["member", "add"], ""),
        Run(&["member", "add", "foo"], ""),
        Run(&["member", "update", "1234"], ""),
        // A learner that never starts. Member IDs of added members are
        // random, so lists of two members (ordered by ID) are left out.
        Run(
            &[
                "member",
                "add",
                "learner1",
                "--learner",
                "--peer-urls=http://127.0.0.1:1",
            ],
            "",
        ),
        Run(&["member", "promote", "{member}"], ""),
        Run(
            &[
                "member",
                "update",
                "{member}",
                "--peer-urls=http://127.0.0.1:2",
            ],
            "",
        ),
        Run(&["member", "remove", "{member}"], ""),
        Run(&["member", "remove", "{member}"], ""),
        Run(&["endpoint", "health"], ""),
        Run(&["endpoint", "health", "-w", "json"], ""),
        Run(&["endpoint", "health", "-w", "fields"], ""),
        Run(&["endpoint", "health", "-w", "protobuf"], ""),
        Run(&["endpoint", "status", "-w", "protobuf"], ""),
        Run(&["alarm", "list"], ""),
        Run(&["alarm", "list", "-w", "json"], ""),
        Run(&["alarm", "list", "-w", "protobuf"], ""),
        Run(&["alarm", "disarm", "-w", "json"], ""),
        Run(&["defrag"], ""),
        Run(&["move-leader", "zz"], ""),
        Run(&["make-mirror"], ""),
        Run(&["put", "/busy/x", "1"], ""),
        Run(&["check", "perf", "--prefix=/busy/"], ""),
        Run(&["check", "perf", "--load=huge"], ""),
        Run(&["check", "perf", "--help"], ""),
        Run(&["snapshot", "save"], ""),
        Run(&["snapshot", "save", "{tmp}/snap.db"], ""),
        Run(
            &["--endpoints=a:1,b:2", "snapshot", "save", "{tmp}/x.db"],
            "",
        ),
        Run(&["snapshot", "status"], ""),
        Run(&["watch"], ""),
        Run(&["watch", "a", "b", "--prefix"], ""),
        Background(
            &["watch", "w", "--prefix", "--prev-kv"],
            vec![
                Run(&["put", "w1", "1"], ""),
                Run(&["put", "w1", "2"], ""),
                Run(&["del", "w1"], ""),
            ],
        ),
        Background(
            &["watch", "w2", "-w", "json"],
            vec![Run(&["put", "w2", "x"], "")],
        ),
        Background(
            &[
                "watch",
                "w3",
                "--",
                "sh",
                "-c",
                "echo \"$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE\"",
            ],
            vec![Run(&["put", "w3", "v3"], "")],
        ),
        BackgroundIn(
            &["watch", "-i"],
            "watch wi\nwatch\nput x y\nwatch wj --prefix\n",
            vec![Run(&["put", "wi", "1"], ""), Run(&["put", "wj2", "2"], "")],
        ),
        Background(
            &["lock", "mylock"],
            vec![Run(&["get", "mylock", "--prefix", "--keys-only"], "")],
        ),
        Background(
            &["elect", "myelection", "p1"],
            vec![Run(&["get", "myelection", "--prefix"], "")],
        ),
        Run(
            &["lock", "l2", "--", "sh", "-c", "echo locked $ETCD_LOCK_KEY"],
            "",
        ),
        Run(&["compaction", "5"], ""),
        Run(&["compaction", "5"], ""),
        Run(&["compaction", "100000"], ""),
        Run(&["compaction", "abc"], ""),
        Run(&["watch", "foo", "--rev=1"], ""),
        Run(&["watch", "foo", "--rev=1", "-w", "json"], ""),
        Run(&["get", "foo", "--rev=1"], ""),
        Run(&["role", "add", "r1"], ""),
        Run(&["role", "add", "r2", "-w", "json"], ""),
        Run(&["role", "add", "r3", "-w", "fields"], ""),
        Run(&["role", "grant-permission", "r1", "read", "/a"], ""),
        Run(
            &[
                "role",
                "grant-permission",
                "r1",
                "readwrite",
                "/b",
                "--prefix",
            ],
            "",
        ),
        Run(
            &[
                "role",
                "grant-permission",
                "r1",
                "write",
                "/c",
                "/d",
                "-w",
                "json",
            ],
            "",
        ),
        Run(
            &["role", "grant-permission", "r1", "read", "/e", "--from-key"],
            "",
        ),
        Run(&["role", "get", "r1"], ""),
        Run(&["role", "get", "r1", "-w", "json"], ""),
        Run(&["role", "get", "r1", "-w", "fields"], ""),
        Run(&["role", "get", "r1", "-w", "protobuf"], ""),
        Run(&["role", "list"], ""),
        Run(&["role", "list", "-w", "json"], ""),
        Run(&["role", "list", "-w", "fields"], ""),
        Run(&["role", "list", "-w", "table"], ""),
        Run(&["user", "add", "u1:pw"], ""),
        Run(
            &["user", "add", "u2", "--new-user-password=x", "-w", "json"],
            "",
        ),
        Run(&["user", "add", "u3", "--interactive=false"], "secret\n"),
        Run(&["user", "grant-role", "u1", "r1"], ""),
        Run(&["user", "grant-role", "u1", "r2", "-w", "fields"], ""),
        Run(&["user", "get", "u1"], ""),
        Run(&["user", "get", "u1", "-w", "json"], ""),
        Run(&["user", "get", "u1", "-w", "fields"], ""),
        Run(&["user", "get", "u1", "--detail"], ""),
        Run(&["user", "list"], ""),
        Run(&["user", "list", "-w", "json"], ""),
        Run(&["user", "list", "-w", "fields"], ""),
        Run(&["user", "passwd", "u1", "--interactive=false"], "newpw\n"),
        Run(&["role", "revoke-permission", "r1", "/a"], ""),
        Run(&["role", "revoke-permission", "r1", "/b", "--prefix"], ""),
        Run(&["role", "revoke-permission", "r1", "/e", "--from-key"], ""),
        Run(&["user", "revoke-role", "u1", "r1"], ""),
        Run(&["user", "delete", "u2"], ""),
        Run(&["role", "delete", "r3"], ""),
        Run(&["role", "get", "nope"], ""),
        Run(&["user", "get", "nope"], ""),
        Run(&["user", "add"], ""),
        Run(&["role", "grant-permission", "r1"], ""),
        Run(&["role", "grant-permission", "r1", "bad", "/x"], ""),
        Run(&["auth", "disable"], ""),
        Run(&["user", "add", "root:rootpw"], ""),
        Run(&["auth", "enable"], ""),
        Run(&["get", "foo"], ""),
    ]
}

/// Runs `script` with the CLI `ctl` against `endpoint`; one entry a step.
fn run_script(ctl: &Path, endpoint: &str, script: &[Step], tmp: &Path) -> Vec<String> {
    let mut vars = HashMap::new();
    vars.insert("tmp", tmp.display().to_string());
    let mut out = Vec::new();
    for step in script {
        out.push(run_step(ctl, endpoint, step, &mut vars));
    }
    out
}

fn command(ctl: &Path, endpoint: &str, args: &[&str], vars: &HashMap<&str, String>) -> Command {
    let mut c = Command::new(ctl);
    for a in args {
        let mut a = a.to_string();
        for (k, v) in vars {
            a = a.replace(&format!("{{{k}}}"), v);
        }
        c.arg(a);
    }
    c.env("ETCDCTL_ENDPOINTS", endpoint)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run_step(
    ctl: &Path,
    endpoint: &str,
    step: &Step,
    vars: &mut HashMap<&'static str, String>,
) -> String {
    match step {
        Run(args, stdin) => {
            let mut child = command(ctl, endpoint, args, vars).spawn().expect("run ctl");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            let o = wait_with_timeout(child, Duration::from_secs(15));
            let stdout = String::from_utf8_lossy(&o.stdout).to_string();
            if let Some(rest) = stdout.strip_prefix("lease ") {
                if let Some((id, _)) = rest.split_once(" granted") {
                    vars.insert("lease", id.to_string());
                }
            }
            if let Some(rest) = stdout.strip_prefix("Member ") {
                if let Some((id, _)) = rest.split_once(" added") {
                    vars.insert("member", id.trim().to_string());
                }
            }
            record(args, &o)
        }
        Background(args, inner) => run_background(ctl, endpoint, args, "", inner, vars),
        BackgroundIn(args, input, inner) => run_background(ctl, endpoint, args, input, inner, vars),
    }
}

fn run_background(
    ctl: &Path,
    endpoint: &str,
    args: &[&str],
    input: &str,
    inner: &[Step],
    vars: &mut HashMap<&'static str, String>,
) -> String {
    {
        {
            let mut child = command(ctl, endpoint, args, vars).spawn().expect("run ctl");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(1000));
            let mut inner_out = Vec::new();
            for s in inner {
                inner_out.push(run_step(ctl, endpoint, s, vars));
            }
            std::thread::sleep(Duration::from_millis(1000));
            if input.is_empty() {
                let _ = Command::new("kill")
                    .arg("-INT")
                    .arg(child.id().to_string())
                    .status();
                drop(stdin);
            } else {
                // An interactive command ends at the end of its input (an
                // interrupt would race with it: Go's runtime reacts to
                // SIGINT a moment later than a Rust program does).
                drop(stdin);
            }
            let o = wait_with_timeout(child, Duration::from_secs(5));
            format!("{}{}", record(args, &o), inner_out.join(""))
        }
    }
}

fn wait_with_timeout(mut child: std::process::Child, t: Duration) -> std::process::Output {
    let deadline = std::time::Instant::now() + t;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn record(args: &[&str], o: &std::process::Output) -> String {
    let stderr: String = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.starts_with("{\"level\":"))
        .map(|l| format!("{l}\n"))
        .collect();
    let code = o
        .status
        .code()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "signal".into());
    format!(
        "$ {args:?}\n[stdout]\n{}[stderr]\n{stderr}[exit] {code}\n",
        String::from_utf8_lossy(&o.stdout)
    )
}

/// Replaces what differs between two runs by nature: the program name, the
/// time in log lines, durations, and long IDs (lease IDs carry the time):
/// each distinct ID becomes `<id N>` in order of first appearance, so the
/// transcripts still show which IDs are the same.
fn normalise(transcript: &[String]) -> Vec<String> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    transcript
        .iter()
        .map(|entry| {
            // etcdctl prints member IDs with Go's `%16x`: a random ID with
            // 15 hex digits gets a padding space (keelctl does the same).
            let entry = entry
                .replace("keelctl", "etcdctl")
                .replace("Member  ", "Member ");
            let mut out = String::new();
            for line in entry.split_inclusive('\n') {
                // `member add` lists the cluster in member ID order, and
                // added members get random IDs: compare the set.
                let line = match line.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
                    Some(rest) => {
                        let mut items: Vec<&str> =
                            rest.trim_end_matches(['\n', '"']).split(',').collect();
                        items.sort();
                        format!("ETCD_INITIAL_CLUSTER=\"{}\"\n", items.join(","))
                    }
                    None => line.to_string(),
                };
                let line = line.as_str();
                let line =
                    if line.len() > 27 && line.as_bytes()[4] == b'-' && &line[26..29] == " C " {
                        format!("<time>{}", &line[26..])
                    } else {
                        line.to_string()
                    };
                out.push_str(&tokens(&line, &mut ids));
            }
            out
        })
        .collect()
}

fn tokens(line: &str, ids: &mut HashMap<String, usize>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, ids: &mut HashMap<String, usize>| {
        if word.len() >= 15 && word.chars().all(|c| c.is_ascii_hexdigit()) {
            let n = ids.len();
            let id = *ids.entry(word.clone()).or_insert(n);
            out.push_str(&format!("<id {id}>"));
        } else if is_duration(word) {
            out.push_str("<duration>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == 'µ' {
            word.push(c);
        } else {
            flush(&mut word, &mut out, ids);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, ids);
    out
}

fn is_duration(w: &str) -> bool {
    let num_end = w
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(w.len());
    num_end > 0 && matches!(&w[num_end..], "ns" | "µs" | "ms" | "s") && w.contains('.')
}

fn keelctl() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keelctl"))
}

#[test]
fn same_transcripts_on_keel() {
    let Some(etcdctl) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let mut keel = Cluster::start(1);
    let ep = keel.members[0].endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let expected = run_script(&etcdctl, &ep, &script(), tmp.path());
    // A fresh member with the same name, addresses and token: same IDs.
    keel.kill(0);
    std::fs::remove_dir_all(&keel.members[0].data_dir).unwrap();
    keel.restart(0);
    let got = run_script(keelctl(), &ep, &script(), tmp.path());
    assert_eq!(expected.len(), got.len());
    assert_same_transcripts(
        "etcdctl vs keelctl steps on keel",
        &normalise(&expected),
        &normalise(&got),
    );
}

#[test]
fn same_transcripts_on_etcd() {
    let Some(etcdctl) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let (client_port, peer_port) = (common::free_port(), common::free_port());
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_on(&etcd_bin, dir.path(), &[], client_port, peer_port);
    let tmp = tempfile::tempdir().unwrap();
    let expected = run_script(&etcdctl, &etcd.endpoint(), &script(), tmp.path());
    drop(etcd);
    // A fresh etcd on the same ports: same member and cluster IDs.
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_on(&etcd_bin, dir.path(), &[], client_port, peer_port);
    let got = run_script(keelctl(), &etcd.endpoint(), &script(), tmp.path());
    assert_same_transcripts(
        "etcdctl vs keelctl steps on etcd",
        &normalise(&expected),
        &normalise(&got),
    );
}

#[test]
fn normalising_keeps_what_matters() {
    let t = vec![
        "lease 2040a2083af14b06 granted\nlease 2040a2083af14b06 again, took = 1.5ms\n".to_string(),
    ];
    assert_eq!(
        normalise(&t),
        vec!["lease <id 0> granted\nlease <id 0> again, took = <duration>\n".to_string()]
    );
}

/// An endpoint nobody listens on: both CLIs give up after the command
/// timeout with the same message and exit code.
#[test]
fn unreachable_endpoint_as_etcdctl() {
    let Some(etcdctl) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let port = common::free_port();
    let run = |ctl: &Path| {
        let o = Command::new(ctl)
            .args([
                &format!("--endpoints=127.0.0.1:{port}"),
                "--command-timeout=1s",
                "--dial-timeout=300ms",
                "put",
                "a",
                "b",
            ])
            .env_remove("ETCDCTL_ENDPOINTS")
            .output()
            .unwrap();
        record(&["put"], &o)
    };
    let t0 = std::time::Instant::now();
    let expected = run(&etcdctl);
    let t_etcdctl = t0.elapsed();
    let t1 = std::time::Instant::now();
    let got = run(keelctl());
    let t_keelctl = t1.elapsed();
    assert_eq!(normalise(&[expected]), normalise(&[got]));
    // Both wait for the command timeout, not much longer.
    assert!(t_etcdctl >= Duration::from_millis(900), "{t_etcdctl:?}");
    assert!(t_keelctl >= Duration::from_millis(900), "{t_keelctl:?}");
    assert!(t_keelctl < Duration::from_secs(4), "{t_keelctl:?}");
}

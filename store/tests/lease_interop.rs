//! Interop of leases, lock and election with the real tools.
//!
//! `etcdctl_lease_lock_elect_match_etcd`: the real etcdctl 3.4 runs one script
//! (lease grant / revoke / keep-alive [--once] / timetolive [--keys] / list,
//! put --lease, lock NAME [-- COMMAND], elect NAME PROPOSAL, elect -l) against
//! a fresh real etcd 3.4 and a fresh keel member; what it prints must match,
//! once ids that differ by nature are normalised: cluster and member ids, raft
//! terms, lease ids (numbered in order of first appearance, in hex and in
//! decimal) and the seconds a timetolive has left.
//!
//! `etcd_client_crate_lease_lock_election`: the `etcd-client` crate's lease,
//! lock and election APIs against keel.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{same_on_etcd_and_keel, Cluster};

/// One step: run to completion, or run in the background for a while, then
/// stop it with SIGTERM (etcdctl then unlocks / resigns, as on Ctrl-C).
enum Step {
    Run(Vec<String>),
    /// Start, wait `ms`, and leave it running (named, for a later Stop).
    Start(&'static str, Vec<String>, u64),
    /// SIGTERM a started step, wait for it, print what it printed.
    Stop(&'static str),
}

fn run(args: &str) -> Step {
    Step::Run(args.split_whitespace().map(String::from).collect())
}

fn start(name: &'static str, args: &str, ms: u64) -> Step {
    Step::Start(
        name,
        args.split_whitespace().map(String::from).collect(),
        ms,
    )
}

/// `$L1`, `$L2`... in a step stand for the lease printed by the n-th grant.
fn script() -> Vec<Step> {
    vec![
        run("lease grant 60"),
        run("lease grant 1"),
        run("lease revoke $L2"),
        run("lease grant 100"),
        run("lease grant 5 -w json"),
        run("lease revoke $L4"),
        run("put k1 v1 --lease=$L1"),
        run("put k2 v2 --lease=$L3"),
        run("lease timetolive $L3 --keys"),
        run("put k2 v2b --lease=$L1"),
        run("lease timetolive $L3 --keys"),
        run("put k2 v2c --ignore-lease"),
        run("get k2 -w json"),
        run("del k1"),
        run("lease timetolive $L1 --keys"),
        run("lease timetolive $L1"),
        run("lease list"),
        run("lease list -w json"),
        run("lease keep-alive --once $L1"),
        start("keepalive", "lease keep-alive $L1", 1000),
        Step::Stop("keepalive"),
        run("lease revoke $L1"),
        run("get k2"),
        run("lease revoke $L1"),
        run("lease timetolive $L1"),
        run("lease keep-alive --once $L1"),
        run("put k4 v --lease=$L1"),
        run("lease grant 9000000001"),
        run("lease revoke $L3"),
        Step::Run(vec![
            "lock".into(),
            "mylock".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "echo locked $ETCD_LOCK_KEY $ETCD_LOCK_REV".into(),
        ]),
        start("holder", "lock mylock", 1500),
        start("waiter", "lock mylock", 1000),
        Step::Stop("holder"),
        Step::Stop("waiter"),
        run("get mylock --prefix"),
        start("observer", "elect -l myelection", 1000),
        start("leader", "elect myelection first", 1500),
        start("candidate", "elect myelection second", 1000),
        Step::Stop("leader"),
        Step::Stop("candidate"),
        Step::Stop("observer"),
        run("get myelection --prefix"),
        run("lease list"),
    ]
}

/// Lease ids seen so far, in order of first appearance.
#[derive(Default)]
struct Ids {
    order: HashMap<u64, usize>,
}

impl Ids {
    fn label(&mut self, id: u64) -> String {
        let n = self.order.len() + 1;
        format!("LEASE{}", *self.order.entry(id).or_insert(n))
    }

    /// Replaces lease ids: hex words (etcd prints them unpadded, so 13 to 16
    /// digits, with a letter unless all 16) and long decimal numbers.
    fn normalise(&mut self, text: &str) -> String {
        let mut out = String::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String, ids: &mut Ids| {
            let hex = (13..=16).contains(&word.len())
                && word.chars().all(|c| c.is_ascii_hexdigit())
                && (word.len() == 16 || word.chars().any(|c| c.is_ascii_alphabetic()));
            if hex {
                if let Ok(v) = u64::from_str_radix(word, 16) {
                    out.push_str(&ids.label(v));
                    word.clear();
                    return;
                }
            }
            if word.len() >= 15 && word.chars().all(|c| c.is_ascii_digit()) {
                if let Ok(v) = word.parse::<u64>() {
                    out.push_str(&ids.label(v));
                    word.clear();
                    return;
                }
            }
            out.push_str(word);
            word.clear();
        };
        for ch in text.chars() {
            if ch.is_ascii_alphanumeric() {
                word.push(ch);
            } else {
                flush(&mut word, &mut out, self);
                out.push(ch);
            }
        }
        flush(&mut word, &mut out, self);
        out
    }
}

/// Blanks what differs between two servers by nature.
fn normalise(text: &str, ids: &mut Ids) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_string();
        for key in ["cluster_id", "member_id", "raft_term"] {
            l = replace_number_after(&l, &format!("\"{key}\":"));
        }
        // Seconds left depend on timing.
        l = replace_number_after(&l, "remaining(");
        for key in ["\"ts\":\"", "\"target\":\""] {
            if let Some(pos) = l.find(key) {
                let (head, tail) = l.split_at(pos + key.len());
                if let Some(end) = tail.find('"') {
                    l = format!("{head}S{}", &tail[end..]);
                }
            }
        }
        out.push_str(&ids.normalise(&l));
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

fn run_script(etcdctl: &std::path::Path, endpoint: &str) -> Vec<String> {
    let mut leases: Vec<String> = Vec::new();
    let mut ids = Ids::default();
    let mut started: HashMap<&'static str, (String, Child)> = HashMap::new();
    let mut transcript = Vec::new();
    let spawn = |args: &[String], leases: &[String]| -> (String, Child) {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                let mut a = a.clone();
                for (i, l) in leases.iter().enumerate().rev() {
                    a = a.replace(&format!("$L{}", i + 1), l);
                }
                a
            })
            .collect();
        let child = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoint)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl");
        (args.join(" "), child)
    };
    let mut record = |name: String, out: std::process::Output, ids: &mut Ids| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = format!(
            "$ etcdctl {}\n--- stdout\n{}--- stderr\n{}--- exit {}\n",
            name,
            normalise(&stdout, ids),
            normalise(&String::from_utf8_lossy(&out.stderr), ids),
            out.status.code().unwrap_or(-1)
        );
        transcript.push(ids.normalise(&text));
        stdout
    };
    for s in script() {
        match s {
            Step::Run(args) => {
                let (name, child) = spawn(&args, &leases);
                let out = child.wait_with_output().unwrap();
                let stdout = record(name, out, &mut ids);
                // "lease 694d... granted with TTL(60s)" or JSON {"ID":...}
                if args[..2] == ["lease".to_string(), "grant".to_string()] {
                    let id = if let Some(rest) = stdout.strip_prefix("lease ") {
                        rest.split_whitespace().next().unwrap_or("").to_string()
                    } else if let Some(pos) = stdout.find("\"ID\":") {
                        let digits: String = stdout[pos + 5..]
                            .chars()
                            .take_while(|c| c.is_ascii_digit())
                            .collect();
                        format!("{:x}", digits.parse::<u64>().unwrap_or(0))
                    } else {
                        "0".into()
                    };
                    leases.push(id);
                }
            }
            Step::Start(name, args, ms) => {
                let sc = spawn(&args, &leases);
                started.insert(name, sc);
                std::thread::sleep(Duration::from_millis(ms));
            }
            Step::Stop(name) => {
                let (label, child) = started.remove(name).expect("started");
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .status();
                let out = child.wait_with_output().unwrap();
                record(label, out, &mut ids);
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    transcript
}

#[test]
fn etcdctl_lease_lock_elect_match_etcd() {
    let Some(got) = same_on_etcd_and_keel("etcdctl steps", run_script) else {
        return;
    };
    let all = got.join("\n");
    if std::env::var_os("KEEL_PRINT_TRANSCRIPT").is_some() {
        println!("{all}");
    }
    assert!(all.contains("granted with TTL(2s)"), "{all}");
    assert!(all.contains("locked mylock/LEASE"), "{all}");
    println!(
        "{} etcdctl lease/lock/elect steps print the same on keel as on etcd 3.4",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_crate_lease_lock_election() {
    use etcd_client::{
        LeaseGrantOptions, LeaseTimeToLiveOptions, LockOptions, ProclaimOptions, PutOptions,
        ResignOptions,
    };
    let keel = Cluster::start(1);
    let mut c = etcd_client::Client::connect([keel.members[0].url()], None)
        .await
        .unwrap();
    let g = c.lease_grant(30, None).await.unwrap();
    assert_eq!(g.ttl(), 30);
    let id = g.id();
    let g2 = c
        .lease_grant(1, Some(LeaseGrantOptions::new().with_id(77)))
        .await
        .unwrap();
    assert_eq!((g2.id(), g2.ttl()), (77, 2));
    c.put("lk", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let t = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!((t.granted_ttl(), t.keys()), (30, &[b"lk".to_vec()][..]));
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = stream.message().await.unwrap().unwrap();
    assert_eq!((r.id(), r.ttl()), (id, 30));
    let mut ids: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    ids.sort();
    let mut want = vec![id, 77];
    want.sort();
    assert_eq!(ids, want);

    // Lock: exclusive between two leases.
    let lock = c
        .lock("lk-lock", Some(LockOptions::new().with_lease(id)))
        .await
        .unwrap();
    assert!(lock.key().starts_with(b"lk-lock/"));
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move {
        c2.lock("lk-lock", Some(LockOptions::new().with_lease(77)))
            .await
            .map(|r| r.key().to_vec())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    c.unlock(lock.key()).await.unwrap();
    let k2 = waiter.await.unwrap().unwrap();
    assert_eq!(k2, format!("lk-lock/{:x}", 77).into_bytes());
    c.unlock(k2).await.unwrap();

    // Election.
    let mut obs = c.observe("el").await.unwrap();
    let won = c.campaign("el", "a", id).await.unwrap();
    let leader = won.leader().unwrap().clone();
    assert_eq!(leader.lease(), id);
    let first = obs.message().await.unwrap().unwrap();
    assert_eq!(first.kv().unwrap().value(), b"a");
    c.proclaim(
        "b",
        Some(ProclaimOptions::new().with_leader(leader.clone())),
    )
    .await
    .unwrap();
    let l = c.leader("el").await.unwrap();
    assert_eq!(l.kv().unwrap().value(), b"b");
    let next = obs.message().await.unwrap().unwrap();
    assert_eq!(next.kv().unwrap().value(), b"b");
    c.resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .unwrap();
    let e = c.leader("el").await.unwrap_err();
    assert!(e.to_string().contains("election: no leader"), "{e}");

    c.lease_revoke(id).await.unwrap();
    assert!(c.get("lk", None).await.unwrap().kvs().is_empty());
    let e = c.lease_revoke(id).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("etcdserver: requested lease not found"),
        "{e}"
    );
}

/// keel-client's background keep-alive renews a lease on real etcd 3.4 as on
/// keel (it once waited for etcd's stream headers, which etcd sends only
/// with its first answer, so a 2 s lease expired on etcd).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_client_keep_alive_renews_on_etcd_and_keel() {
    let Some(etcd_bin) = common::require_tool("etcd", "etcd-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = common::Etcd::start(&etcd_bin, dir.path());
    let keel = Cluster::start(1);
    for (name, endpoint) in [
        ("etcd", etcd.endpoint()),
        ("keel", keel.members[0].endpoint()),
    ] {
        let c = keel_client::Client::new([endpoint], Default::default()).unwrap();
        let id = c.lease_grant(2, 0).await.unwrap().id;
        let mut ka = c.keep_alive(id);
        let mut renewals = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(ev)) = tokio::time::timeout_at(until, ka.next()).await {
            match ev {
                keel_client::KeepAliveEvent::Renewed { .. } => renewals += 1,
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(
            renewals >= 3,
            "{name}: {renewals} renewals in 5 s of a 2 s lease"
        );
        let ttl = c.lease_keep_alive_once(id).await.unwrap();
        assert!(ttl > 0, "{name}: the lease expired while kept alive");
    }
}

//! `keelctl inspect` against real keel members: Raft state and progress of
//! a three-member cluster, a key's history across a compaction, the key
//! tree, and an offline data dir. The keel binary must be built
//! (`cargo build --release -p keel-store --bin keel`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::Cluster;
use serde_json::Value;

fn keelctl(endpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .output()
        .expect("run keelctl")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "keelctl failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).expect("json output")
}

/// Waits until `member list` shows `n` members, each with client URLs.
fn wait_published(eps: &str, n: usize, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let v = json(&keelctl(eps, &["member", "list", "-w", "json"]));
        let members = v["members"].as_array().cloned().unwrap_or_default();
        let published = members
            .iter()
            .filter(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
            .count();
        if published == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "members not published after {timeout:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn raft_status_of_three_members() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10));
    let eps = c.endpoints().join(",");
    for i in 0..5 {
        ok(&keelctl(&eps, &["put", &format!("k{i}"), "v"]));
    }
    // A member serves clients before its name and client URLs are recorded
    // through Raft (its publish retries until there is a leader); until then
    // `inspect raft` rightly says it is "not started". Wait for all three.
    wait_published(&eps, 3, Duration::from_secs(10));
    let v = json(&keelctl(&eps, &["inspect", "raft", "-w", "json"]));
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let leaders: Vec<&Value> = members.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{v}");
    assert_eq!(leaders[0]["name"], c.members[leader].name.as_str());
    let term = &members[0]["term"];
    for m in members {
        assert_eq!(&m["term"], term, "{v}");
        assert_eq!(m["leader"], leaders[0]["id"], "{v}");
        assert!(m["commit"].as_u64().unwrap() >= 5, "{v}");
        assert!(m["applied"].as_u64().unwrap() <= m["commit"].as_u64().unwrap());
        assert!(m["last_index"].as_u64().unwrap() >= m["commit"].as_u64().unwrap());
        if m["role"] != "leader" {
            assert_eq!(m["role"], "follower", "{v}");
        }
    }
    let progress = v["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 3, "{v}");
    let commit = leaders[0]["commit"].as_u64().unwrap();
    for p in progress {
        assert_eq!(p["state"], "replicate", "{v}");
        assert!(p["match"].as_u64().unwrap() < p["next"].as_u64().unwrap());
        assert!(p["match"].as_u64().unwrap() <= commit + 1);
        assert_eq!(p["learner"], false);
    }
    // The table form names the leader and lists every member.
    let t = ok(&keelctl(&eps, &["inspect", "raft"]));
    assert!(
        t.contains(&format!(
            "Progress (leader {})",
            leaders[0]["id"].as_str().unwrap()
        )),
        "{t}"
    );
    for m in &c.members {
        assert!(t.contains(&m.name), "{t}");
    }
    assert!(!t.contains('\x1b'), "no colours when not on a terminal");
}

#[test]
fn history_tree_and_data_dir() {
    let mut c = Cluster::start(1);
    let ep = c.endpoints().join(",");
    ok(&keelctl(&ep, &["put", "h", "v1"])); // rev 2
    ok(&keelctl(&ep, &["put", "h", "v2"])); // rev 3
    ok(&keelctl(&ep, &["put", "other", "x"])); // rev 4
    ok(&keelctl(&ep, &["del", "h"])); // rev 5
    ok(&keelctl(&ep, &["put", "h", "v3"])); // rev 6
    ok(&keelctl(&ep, &["put", "hz", "z"])); // rev 7

    let v = json(&keelctl(&ep, &["inspect", "history", "h", "-w", "json"]));
    let revs: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mod_revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revs, vec![6, 5, 3, 2], "{v}");
    assert_eq!(v["events"][1]["event"], "DELETE");
    assert_eq!(v["events"][0]["value"], "v3");
    assert_eq!(v["events"][0]["version"], 1);
    assert_eq!(v["events"][2]["version"], 2);
    assert_eq!(v["compact_revision"], 0);
    assert_eq!(v["current_revision"], 7);

    ok(&keelctl(&ep, &["compaction", "3"]));
    let v = json(&keelctl(
        &ep,
        &["inspect", "history", "h", "--prefix", "-w", "json"],
    ));
    let revs: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mod_revision"].as_i64().unwrap())
        .collect();
    assert_eq!(revs, vec![7, 6, 5, 3], "{v}");
    assert_eq!(v["compact_revision"], 3);
    let t = ok(&keelctl(&ep, &["inspect", "history", "h"]));
    assert!(t.contains("compacted at revision 3"), "{t}");

    ok(&keelctl(
        &ep,
        &[
            "put",
            "/registry/pods/default/web",
            r#"{"kind":"Pod","spec":{"n":1}}"#,
        ],
    ));
    ok(&keelctl(
        &ep,
        &["put", "/registry/pods/kube-system/dns", "plain"],
    ));
    let t = ok(&keelctl(&ep, &["inspect", "tree", "/registry/"]));
    assert!(t.contains("pods/ (2 keys"), "{t}");
    assert!(t.contains("\"kind\": \"Pod\""), "pretty JSON value: {t}");
    assert!(t.contains("dns (") && t.contains(" = plain"), "{t}");
    let v = json(&keelctl(&ep, &["inspect", "tree", "-w", "json"]));
    assert_eq!(v["keys"], 5, "{v}");
    assert_eq!(
        v["children"]["/"]["children"]["registry/"]["children"]["pods/"]["keys"],
        2
    );

    // Offline: the member stopped, its data dir read and checked.
    let dir = c.members[0].data_dir.clone();
    c.stop(0);
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(["inspect", "data-dir", dir.to_str().unwrap(), "-w", "json"])
        .output()
        .unwrap();
    let v = json(&o);
    assert_eq!(v["current_revision"], 9, "{v}");
    assert_eq!(v["compact_revision"], 3, "{v}");
    assert_eq!(v["keys"], 5, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["last_index"].as_u64().unwrap() >= v["applied_index"].as_u64().unwrap());
    assert_eq!(v["voters"].as_array().unwrap().len(), 1);
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(["inspect", "data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a keel data dir"));
}

#[test]
fn raft_on_etcd_says_there_is_no_admin_api() {
    let Some(etcd_bin) = common::require_tool("etcd", "etcd-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = common::Etcd::start(&etcd_bin, dir.path());
    let o = keelctl(&etcd.endpoint(), &["inspect", "raft"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no keel admin API"));
    // history works on etcd too (through the watch API).
    ok(&keelctl(&etcd.endpoint(), &["put", "a", "1"]));
    ok(&keelctl(&etcd.endpoint(), &["put", "a", "2"]));
    let v = json(&keelctl(
        &etcd.endpoint(),
        &["inspect", "history", "a", "-w", "json"],
    ));
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");
}

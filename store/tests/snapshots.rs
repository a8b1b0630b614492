//! End-to-end: Raft log truncation and snapshots with real `keel` processes.
//!
//! A follower is stopped while the others take many writes (enough for the
//! leader to truncate its log past the follower's position), then started
//! again: it can only catch up through a snapshot streamed over the peer
//! transport. Afterwards it must hold exactly the leader's state: keys, past
//! revisions above the compaction point, the compaction point itself, and
//! leases with their keys (a revoke applied after the snapshot deletes the
//! key on every member). A second test aborts the follower halfway through
//! installing the snapshot and checks that it restarts into the installed
//! state.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use keel_client::{Client, RangeRequest};

/// Small numbers so that a few thousand writes truncate the log.
const FLAGS: &[&str] = &[
    "--snapshot-count",
    "300",
    "--experimental-snapshot-catchup-entries",
    "100",
];

fn all_at(rev: i64, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        serializable,
        ..Default::default()
    }
}

/// Writes while member `down` is stopped, until the leader has truncated its
/// log; returns the lease id attached to key "leased".
async fn write_past_the_log(c: &Cluster, down: usize) -> i64 {
    let up: Vec<usize> = (0..3).filter(|&i| i != down).collect();
    let client = Client::new(
        up.iter().map(|&i| c.members[i].endpoint()),
        keel_client::Options::default(),
    )
    .unwrap();
    let lease = client.lease_grant(600, 0).await.unwrap().id;
    client
        .put_request(keel_client::PutRequest {
            key: b"leased".to_vec(),
            value: b"while down".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut compacted = false;
    for i in 0..2000 {
        let r = client
            .put(
                format!("key/{:03}", i % 150),
                format!("value {i} {}", "x".repeat(i % 40)),
            )
            .await
            .unwrap();
        if i == 1000 {
            let rev = r.header.unwrap().revision;
            client.compact(rev - 200, false).await.unwrap();
            compacted = true;
        }
        if i % 7 == 0 {
            client
                .delete(keel_client::DeleteRangeRequest {
                    key: format!("key/{:03}", (i + 3) % 150).into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    assert!(compacted);
    let leader = c.leader().expect("a leader");
    c.wait_log_truncated(leader, Duration::from_secs(10));
    lease
}

/// Waits until member `i` serves (serializably) the same state as the cluster.
async fn wait_same_state(c: &Cluster, i: usize) -> i64 {
    let client = c.client();
    let want = client.range(all_at(0, false)).await.unwrap();
    let rev = want.header.as_ref().unwrap().revision;
    let member = c.member_client(i);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(got) = member.range(all_at(0, true)).await {
            if got.header.as_ref().unwrap().revision >= rev {
                let got = member.range(all_at(rev, true)).await.unwrap();
                assert_eq!(got.kvs, want.kvs, "member {i} differs at {rev}");
                return rev;
            }
        }
        assert!(
            Instant::now() < deadline,
            "member {i} did not catch up to {rev}; log:\n{}",
            c.log_tail(i)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_history_and_leases(c: &Cluster, i: usize, rev: i64, lease: i64) {
    let member = c.member_client(i);
    let leader = c.member_client(c.leader().unwrap());
    // Past revisions above the compaction point read the same.
    for back in [1, 50, 150] {
        let a = member.range(all_at(rev - back, true)).await.unwrap();
        let b = leader.range(all_at(rev - back, true)).await.unwrap();
        assert_eq!(a.kvs, b.kvs, "history at {} differs", rev - back);
    }
    // Below it, both say compacted.
    let err = member.range(all_at(2, true)).await.unwrap_err();
    assert!(err.to_string().contains("compacted"), "{err}");
    // The lease and its key came with the snapshot: revoking it deletes the
    // key on the restored member too, at the same revision.
    let kv = member.get("leased").await.unwrap().expect("leased key");
    assert_eq!(kv.lease, lease);
    let r = c.client().lease_revoke(lease).await.unwrap();
    let revoked_at = r.header.unwrap().revision;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = member.range(all_at(0, true)).await.unwrap();
        if r.header.unwrap().revision >= revoked_at {
            break;
        }
        assert!(Instant::now() < deadline, "revoke never reached member {i}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = member
        .range(RangeRequest {
            key: b"leased".to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        gone.kvs.is_empty(),
        "leased key survived its revoke on member {i}"
    );
    // And the member keeps following the log afterwards.
    c.client().put("after", "snapshot").await.unwrap();
    wait_same_state(c, i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_through_a_snapshot() {
    let mut c = Cluster::start_with(3, FLAGS);
    let leader = c.wait_leader(Duration::from_secs(10));
    let down = (leader + 1) % 3;
    c.stop(down);
    let lease = write_past_the_log(&c, down).await;
    c.restart(down);
    let rev = wait_same_state(&c, down).await;
    assert!(
        c.metric(down, "etcd_network_snapshot_receive_success")
            .unwrap_or(0.0)
            >= 1.0,
        "member {down} caught up without a snapshot"
    );
    assert!(
        c.metric(down, "keel_snapshots_installed_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    check_history_and_leases(&c, down, rev, lease).await;
    // It survives a restart in its installed state.
    c.stop(down);
    c.restart(down);
    wait_same_state(&c, down).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_killed_during_snapshot_install_recovers() {
    let mut c = Cluster::start_with(3, FLAGS);
    let leader = c.wait_leader(Duration::from_secs(10));
    let down = (leader + 1) % 3;
    c.stop(down);
    let lease = write_past_the_log(&c, down).await;
    let mut crash = FLAGS.to_vec();
    crash.push("--unsafe-crash-in-snapshot-install");
    c.set_extra(down, &crash);
    c.spawn(down);
    let st = c.wait_exit(down, Duration::from_secs(30));
    assert!(!st.success(), "the crash hook did not fire");
    assert!(
        std::fs::read_to_string(&c.members[down].log)
            .unwrap()
            .contains("aborting mid-install"),
        "{}",
        c.log_tail(down)
    );
    c.set_extra(down, FLAGS);
    c.restart(down);
    let rev = wait_same_state(&c, down).await;
    assert!(
        std::fs::read_to_string(&c.members[down].log)
            .unwrap()
            .contains("finishing a snapshot install interrupted by a crash"),
        "{}",
        c.log_tail(down)
    );
    check_history_and_leases(&c, down, rev, lease).await;
}

/// `etcdctl snapshot save` (the real etcdctl 3.4.23) takes a backup from a
/// keel member under write load; `keel snapshot restore` builds a new
/// 3-member cluster from it, which starts with every key, revision, the
/// compaction point and the lease of the backup, and then takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_snapshot_save_then_restore_into_a_new_cluster() {
    let Some(etcdctl) = common::require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let src = Cluster::start(1);
    let client = src.client();
    let lease = client.lease_grant(3600, 0).await.unwrap().id;
    client
        .put_request(keel_client::PutRequest {
            key: b"leased".to_vec(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut compact_at = 0;
    for i in 0..600 {
        let r = client
            .put(format!("k/{:03}", i % 250), format!("value {i}"))
            .await
            .unwrap();
        if i == 300 {
            compact_at = r.header.unwrap().revision;
        }
    }
    client.compact(compact_at, true).await.unwrap();
    let want = client.range(all_at(0, false)).await.unwrap();
    let rev = want.header.as_ref().unwrap().revision;
    let want_past = client.range(all_at(rev - 100, false)).await.unwrap().kvs;

    let file = src.dir.path().join("backup.db");
    let out = std::process::Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &src.members[0].endpoint(),
            "snapshot",
            "save",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("Snapshot saved at {}", file.display())),
        "etcdctl snapshot save failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // etcdctl prints the same on stdout for a real etcd 3.4.23.
    if let Some(etcd_bin) = common::require_tool("etcd", "etcd-server") {
        let etcd = common::Etcd::start(&etcd_bin, src.dir.path());
        let etcd_file = src.dir.path().join("etcd-backup.db");
        let out = std::process::Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.endpoint(), "snapshot", "save"])
            .arg(&etcd_file)
            .output()
            .unwrap();
        assert!(out.status.success());
        let etcd_stdout = String::from_utf8_lossy(&out.stdout).replace(
            &etcd_file.display().to_string(),
            &file.display().to_string(),
        );
        assert_eq!(stdout, etcd_stdout);
    }
    // Writes after the backup are not in it.
    client.put("after-backup", "x").await.unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(len % 512, 32, "etcd's length rule: pages plus a sha256");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["snapshot", "status"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&format!("revision: {rev}")),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // A missing file is named in the error.
    let missing = src.dir.path().join("no-such-backup.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["snapshot", "status"])
        .arg(&missing)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("No such file"),
        "{err}"
    );

    let mut dst = Cluster::plan(3, &[]);
    dst.token = format!("restored-{}", std::process::id());
    for i in 0..3 {
        let args = dst.args(i);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["snapshot", "restore"])
            .arg(&file)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restore failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Restoring over an existing data dir is refused, as etcdctl refuses it.
    let args = dst.args(0);
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["snapshot", "restore"])
        .arg(&file)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    for i in 0..3 {
        dst.spawn(i);
    }
    for i in 0..3 {
        dst.wait_healthy(i, Duration::from_secs(20));
    }
    for i in 0..3 {
        let m = dst.member_client(i);
        let got = m.range(all_at(0, false)).await.unwrap();
        assert_eq!(got.header.unwrap().revision, rev, "member {i}");
        assert_eq!(got.kvs, want.kvs, "member {i}");
        assert_eq!(
            m.range(all_at(rev - 100, false)).await.unwrap().kvs,
            want_past
        );
        let err = m.range(all_at(compact_at - 1, false)).await.unwrap_err();
        assert!(err.to_string().contains("compacted"), "{err}");
    }
    let dc = dst.client();
    let ttl = dc.lease_time_to_live(lease, true).await.unwrap();
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
    assert!(ttl.ttl > 0);
    let r = dc.put("new", "write").await.unwrap();
    assert_eq!(r.header.unwrap().revision, rev + 1);
    dc.lease_revoke(lease).await.unwrap();
    assert!(dc.get("leased").await.unwrap().is_none());
}

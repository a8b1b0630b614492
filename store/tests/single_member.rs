//! End-to-end: one real `keel` process on free loopback ports, driven through
//! keel-client (gRPC) and plain HTTP.

mod common;

use std::time::Duration;

use common::{http_get, Cluster};
use keel_client::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use tonic::Code;

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn code_and_msg(e: keel_client::Error) -> (Code, String) {
    let s = e.status().expect("a status").clone();
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_semantics_errors_and_restart() {
    let mut c = Cluster::start(1);
    let cl = c.client();

    // A fresh store is at revision 1; the first write makes revision 2.
    let r = cl
        .range(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.header.as_ref().unwrap().revision, 1);
    assert_ne!(r.header.as_ref().unwrap().cluster_id, 0);
    assert_ne!(r.header.as_ref().unwrap().member_id, 0);
    assert!(r.header.as_ref().unwrap().raft_term >= 1);

    let p = cl.put("a", "1").await.unwrap();
    assert_eq!(p.header.unwrap().revision, 2);
    let p = cl
        .put_request(PutRequest {
            key: b"a".to_vec(),
            value: b"2".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(p.header.unwrap().revision, 3);
    let prev = p.prev_kv.unwrap();
    assert_eq!(
        (
            prev.value.as_slice(),
            prev.version,
            prev.create_revision,
            prev.mod_revision
        ),
        (&b"1"[..], 1, 2, 2)
    );
    let kv = cl.get("a").await.unwrap().unwrap();
    assert_eq!((kv.version, kv.create_revision, kv.mod_revision), (2, 2, 3));

    // History reads.
    let old = cl
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, b"1");
    assert_eq!(
        old.header.unwrap().revision,
        3,
        "header carries the current revision"
    );

    // Prefix, from-key, limit, count, sort.
    for k in ["p/1", "p/2", "p/3", "q"] {
        cl.put(k, k).await.unwrap();
    }
    let r = cl.get_prefix("p/").await.unwrap();
    assert_eq!(r.kvs.len(), 3);
    let r = cl
        .range(RangeRequest {
            key: b"p/".to_vec(),
            range_end: vec![0],
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 4));
    let r = cl
        .range(RangeRequest {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            sort_order: 2, // DESCEND
            sort_target: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.kvs[0].key, b"p/3");

    // Txn: compare on value, success branch.
    let t = cl
        .txn(TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key: b"a".to_vec(),
                target_union: Some(compare::TargetUnion::Value(b"2".to_vec())),
                ..Default::default()
            }],
            success: vec![put_op("t1", "x"), put_op("t2", "y")],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(t.succeeded);
    let rev = t.header.unwrap().revision;
    let t1 = cl.get("t1").await.unwrap().unwrap();
    let t2 = cl.get("t2").await.unwrap().unwrap();
    assert_eq!(
        (t1.mod_revision, t2.mod_revision),
        (rev, rev),
        "one txn, one revision"
    );

    // Errors, with etcd's codes and messages.
    let e = cl.put("", "v").await.unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("m{i}"), "v")).collect();
    let e = cl
        .txn(TxnRequest {
            success: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into()
        )
    );
    let e = cl
        .txn(TxnRequest {
            success: vec![put_op("d", "1"), put_op("d", "2")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let e = cl
        .put_request(PutRequest {
            key: b"l".to_vec(),
            value: b"v".to_vec(),
            lease: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    let e = cl.put("big", vec![b'x'; 1_600_000]).await.unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    let e = cl
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );

    // Compaction.
    let cur = cl.get("a").await.unwrap().unwrap().mod_revision;
    cl.compact(cur, true).await.unwrap();
    let e = cl
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
    let e = cl.compact(cur, false).await.unwrap_err();
    assert_eq!(
        code_and_msg(e),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );

    // Delete with prev_kv.
    let d = cl
        .delete(DeleteRangeRequest {
            key: b"p/".to_vec(),
            range_end: b"p0".to_vec(),
            prev_kv: true,
        })
        .await
        .unwrap();
    assert_eq!((d.deleted, d.prev_kvs.len()), (3, 3));
    let before = cl
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();

    // kill -9, restart: everything acknowledged is still there.
    c.kill(0);
    c.restart(0);
    let cl = c.client();
    let after = cl
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.kvs, after.kvs);
    assert_eq!(
        before.header.unwrap().revision,
        after.header.unwrap().revision
    );
    let e = cl
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_msg(e).0,
        Code::OutOfRange,
        "the compaction point survives a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_and_grpc_health() {
    let c = Cluster::start(1);
    let port = c.members[0].client_port;
    let (code, body) = http_get(port, "/health").unwrap();
    assert_eq!((code, body.as_str()), (200, r#"{"health":"true"}"#));
    let (code, body) = http_get(port, "/version").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#)
    );
    c.client().put("m", "1").await.unwrap();
    let (code, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_leader_changes_seen_total 1",
        "etcd_server_proposals_pending 0",
        "etcd_disk_wal_fsync_duration_seconds_count",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_server_proposals_applied_total",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}:\n{body}");
    }

    let channel = tonic::transport::Endpoint::from_shared(c.members[0].url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut status = 0;
    for _ in 0..50 {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        status = r.status;
        if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[test]
fn bad_flags_and_foreign_data_dirs_are_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["store", "--initial-cluster-state", "bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--initial-cluster-state: invalid value \"bogus\""),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["store", "--no-such-flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));

    // A data dir made by one cluster is refused by a member of another.
    let mut c = Cluster::start(1);
    c.stop(0);
    let data_dir = c.members[0].data_dir.display().to_string();
    let mut args = c.args(0);
    let pos = args
        .iter()
        .position(|a| a == "--initial-cluster-token")
        .unwrap();
    args[pos + 1] = "another-cluster".into();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to member") && err.contains(&data_dir),
        "{err}"
    );

    // A data dir held by a running member is refused by a second process.
    c.spawn(0);
    c.wait_healthy(0, Duration::from_secs(20));
    let mut args = c.args(0);
    for flag in ["--listen-client-urls", "--listen-peer-urls"] {
        let pos = args.iter().position(|a| a == flag).unwrap();
        args[pos + 1] = format!("http://127.0.0.1:{}", common::free_port());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(&args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use by another process") && err.contains(&data_dir),
        "{err}"
    );
    assert!(c.members[0].is_running());
}

#[test]
fn config_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let client = common::free_port();
    let peer = common::free_port();
    let cfg = dir.path().join("keel.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: fromfile\nlisten-client-urls: http://127.0.0.1:{client}\nlisten-peer-urls: http://127.0.0.1:{peer}\nheartbeat-interval: 50\nelection-timeout: 500\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["store", "--config-file", &cfg.display().to_string()])
        .env("KEEL_DATA_DIR", dir.path().join("d"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..200 {
        if let Some((200, b)) = http_get(client, "/health") {
            if b.contains("true") {
                healthy = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        healthy,
        "member configured from file and env never became healthy"
    );
    assert!(
        dir.path().join("d/member/db").exists(),
        "KEEL_DATA_DIR was not used"
    );

    std::fs::write(&cfg, "nmae: typo\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["store", "--config-file", &cfg.display().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key \"nmae\""));
}

/// SIGKILL while writers stream puts, across Raft log compactions: every
/// acknowledged write is there after the restart, with the revision it was
/// acknowledged at. The Raft log is durable in its WAL at each Ready while
/// the MVCC data reaches sled later (write groups, a flush a second), so the
/// newest writes come back from the WAL's replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut c = Cluster::start_with(
        1,
        &[
            "--snapshot-count",
            "300",
            "--experimental-snapshot-catchup-entries",
            "50",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let client = c.client();
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}/{n:06}");
                let value = format!("{w}-{n}-{}", "x".repeat(100));
                match client.put(key.clone(), value.clone()).await {
                    Ok(r) => {
                        let rev = r.header.map(|h| h.revision).unwrap_or(0);
                        acked.lock().unwrap().insert(key, (value, rev));
                    }
                    Err(_) => return, // the member is gone
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let truncations = c
        .metric(0, "keel_raft_log_truncations_total")
        .unwrap_or(0.0);
    c.kill(0);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 600,
        "too few writes to span two compactions: {}",
        acked.len()
    );
    c.restart(0);
    let client = c.client();
    let got = client
        .range(RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: BTreeMap<String, (String, i64)> = got
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key.clone()).unwrap(),
                (
                    String::from_utf8(kv.value.clone()).unwrap(),
                    kv.mod_revision,
                ),
            )
        })
        .collect();
    for (k, v) in &acked {
        assert_eq!(stored.get(k), Some(v), "acknowledged write {k}");
    }
    // Nothing beyond what was acknowledged or in flight (at most one per writer).
    assert!(stored.len() <= acked.len() + 8, "{} stored", stored.len());
    // And the member goes on from the revision it had.
    let max_rev = stored.values().map(|(_, r)| *r).max().unwrap();
    let next = client.put("after", "1").await.unwrap();
    assert_eq!(next.header.unwrap().revision, max_rev + 1);
    assert!(truncations >= 1.0, "the Raft log was never truncated");
}

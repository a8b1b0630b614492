//! `keel bench` end to end: the real binary against a real etcd 3.4 started on
//! free loopback ports in a temp dir (skipped with one line when `etcd` is not
//! installed, unless KEEL_REQUIRE_TOOLS=1) and against a keel member, checking
//! the `--json` report (for `watch`: no event missing); `fsync` and an
//! unreachable endpoint need no server.

mod common;

use std::process::Command;

use common::{require_tool, Etcd};

/// Runs `keel bench` with `args`; returns its parsed JSON report.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run keel bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "keel bench {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON line:\n{stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

fn check_report(v: &serde_json::Value, workload: &str, total: u64) {
    assert_eq!(v["workload"], workload, "{v}");
    assert_eq!(v["total"], total, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["requests_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["elapsed_sec"].as_f64().unwrap() > 0.0, "{v}");
    let l = &v["latency_ms"];
    for k in ["avg", "p50", "p90", "p99", "p999", "max"] {
        assert!(l[k].as_f64().unwrap() > 0.0, "latency_ms.{k}: {v}");
    }
    assert!(l["p50"].as_f64() <= l["max"].as_f64(), "{v}");
}

/// Through either client (the lean one by default, tonic with
/// `--tonic-client`), puts succeed and a refused request counts as an error
/// under its gRPC code: a range with no key is InvalidArgument, on keel as on
/// etcd.
fn check_both_clients(ep: &str) {
    for client in [None, Some("--tonic-client")] {
        let mut args = vec!["--endpoints", ep];
        args.extend(client);
        let mut put = args.clone();
        put.extend(["--clients", "3", "put", "--total", "60", "--json"]);
        check_report(&bench_json(&put), "put", 60);
        let mut bad = args.clone();
        bad.extend(["range", "", "--total", "4", "--json"]);
        let v = bench_json(&bad);
        assert_eq!(v["errors"], 4, "{client:?}: {v}");
        assert_eq!(v["errors_by_code"]["InvalidArgument"], 4, "{client:?}: {v}");
    }
}

/// `lease-keepalive` on `ep`: every keep-alive answered, and every client's
/// lease revoked at the end.
fn check_lease_keepalive(ep: &str) {
    let v = bench_json(&[
        "--endpoints",
        ep,
        "--conns",
        "2",
        "--clients",
        "5",
        "lease-keepalive",
        "--total",
        "300",
        "--json",
    ]);
    check_report(&v, "lease-keepalive", 300);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leases = rt.block_on(async {
        let c = keel_client::Client::new([ep], Default::default()).unwrap();
        c.lease_leases().await.unwrap().leases
    });
    assert!(leases.is_empty(), "leases left behind: {leases:?}");
}

#[test]
fn bench_against_real_etcd() {
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&etcd_bin, dir.path());
    let ep = etcd.endpoint();

    let put = bench_json(&[
        "--endpoints",
        &ep,
        "--conns",
        "2",
        "--clients",
        "4",
        "put",
        "--total",
        "200",
        "--key-space-size",
        "50",
        "--json",
    ]);
    check_report(&put, "put", 200);
    assert_eq!(
        (put["conns"].as_u64(), put["clients"].as_u64()),
        (Some(2), Some(4))
    );

    // Global flags after the subcommand are accepted too, as with etcd's tool.
    let range = bench_json(&[
        "--endpoints",
        &ep,
        "range",
        "a",
        "z",
        "--consistency",
        "s",
        "--total",
        "50",
        "--json",
    ]);
    check_report(&range, "range", 50);

    let txn = bench_json(&[
        "--endpoints",
        &ep,
        "--target-leader",
        "txn-put",
        "--total",
        "30",
        "--txn-ops",
        "2",
        "--key-space-size",
        "10",
        "--json",
    ]);
    check_report(&txn, "txn-put", 30);

    let watch = bench_json(&[
        "--endpoints",
        &ep,
        "--conns",
        "2",
        "--clients",
        "2",
        "watch",
        "--streams",
        "4",
        "--watch-per-stream",
        "10",
        "--put-total",
        "100",
        "--shared-conns",
        "--json",
    ]);
    check_report(&watch, "watch", 400);
    assert_eq!(watch["watch"]["events_missing"], 0, "{watch}");

    check_lease_keepalive(&ep);
    check_both_clients(&ep);
}

#[test]
fn fsync_reports_in_the_same_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let v = bench_json(&["--json", "fsync", "--path", &path, "--count", "20"]);
    check_report(&v, "fsync", 20);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch file removed"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["bench", "fsync", "--path", &path, "--count", "5"])
        .output()
        .expect("run keel bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Summary:") && text.contains("Latency distribution:"),
        "{text}"
    );
}

#[test]
fn unreachable_endpoint_fails_fast() {
    let port = common::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "bench",
            "--endpoints",
            &format!("127.0.0.1:{port}"),
            "put",
            "--total",
            "5",
        ])
        .output()
        .expect("run keel bench");
    assert!(!out.status.success(), "nothing listens there");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connecting to"),
        "{out:?}"
    );
}

#[test]
fn bench_against_keel() {
    let keel = common::Cluster::start(1);
    let ep = keel.members[0].endpoint();
    // keel has no Maintenance.Status yet: --target-leader falls back to /metrics.
    let put = bench_json(&[
        "--endpoints",
        &ep,
        "--clients",
        "4",
        "--target-leader",
        "put",
        "--total",
        "100",
        "--json",
    ]);
    check_report(&put, "put", 100);
    let range = bench_json(&[
        "--endpoints",
        &ep,
        "range",
        "a",
        "z",
        "--total",
        "20",
        "--json",
    ]);
    check_report(&range, "range", 20);
    check_lease_keepalive(&ep);
    check_both_clients(&ep);
}

#[test]
fn watch_against_keel() {
    let keel = common::Cluster::start(1);
    let ep = keel.members[0].endpoint();
    let v = bench_json(&[
        "--endpoints",
        &ep,
        "--conns",
        "2",
        "--clients",
        "2",
        "watch",
        "--streams",
        "4",
        "--watch-per-stream",
        "10",
        "--put-total",
        "100",
        "--json",
    ]);
    // 100 puts over the 10 watched keys; every stream has one watcher per key.
    check_report(&v, "watch", 400);
    let w = &v["watch"];
    assert_eq!(w["watchers"], 40, "{v}");
    assert_eq!(w["puts"], 100, "{v}");
    assert_eq!(w["events_expected"], 400, "{v}");
    assert_eq!(w["events_received"], 400, "{v}");
    assert_eq!(w["events_missing"], 0, "{v}");
    assert_eq!(
        (
            w["events_duplicate"].as_u64(),
            w["events_unexpected"].as_u64()
        ),
        (Some(0), Some(0)),
        "{v}"
    );

    let l = bench_json(&[
        "--endpoints",
        &ep,
        "watch-latency",
        "--streams",
        "3",
        "--watchers-per-stream",
        "2",
        "--put-total",
        "20",
        "--put-rate",
        "200",
        "--json",
    ]);
    check_report(&l, "watch-latency", 120);
    assert_eq!(l["watch"]["events_missing"], 0, "{l}");
}

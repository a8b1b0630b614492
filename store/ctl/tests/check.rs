//! `keelctl check perf` against a keel member, shortened with the hidden
//! `--duration`: the verdict lines, the exit code that goes with the final
//! verdict, the keys cleaned up afterwards, and the refusal of a prefix
//! that already holds keys. The keel binary must be built
//! (`cargo build --release -p keel-store --bin keel`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::Cluster;

#[test]
fn perf_check_reports_and_cleans_up() {
    let c = Cluster::start(1);
    let ep = format!("--endpoints={}", c.members[0].endpoint());
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([&ep, "check", "perf", "--duration=3", "--auto-compact"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 4, "{out}");
    assert!(lines.iter().any(|l| l.contains("Throughput")), "{out}");
    assert!(lines.iter().any(|l| l.contains("Slowest request")), "{out}");
    assert!(lines.iter().any(|l| l.contains("Stddev")), "{out}");
    let verdict = *lines.last().unwrap();
    assert_eq!(o.status.success(), verdict == "PASS", "{out}");
    assert!(verdict == "PASS" || verdict == "FAIL");
    // The check's keys are gone.
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([
            &ep,
            "get",
            "/etcdctl-check-perf/",
            "--prefix",
            "--keys-only",
            "-w",
            "json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("kvs").is_none(), "{v}");
    // A prefix with keys is refused, as etcdctl refuses it.
    Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([&ep, "put", "/busy/x", "1"])
        .output()
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([&ep, "check", "perf", "--prefix=/busy/", "--duration=1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: prefix \"/busy/\" has keys. Delete with etcdctl del --prefix /busy/ first\n"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([&ep, "check", "perf", "--load=huge"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: unknown load option huge\n"
    );
}

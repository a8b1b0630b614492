//! `keelctl snapshot save|status|restore` on keel: a backup taken from a
//! running member, its status, and a data dir restored from it, read back
//! with `keelctl inspect data-dir`. The keel binary must be built
//! (`cargo build --release -p keel-store --bin keel`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::Cluster;

fn keelctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn save_status_restore() {
    let c = Cluster::start(1);
    let ep = format!("--endpoints={}", c.members[0].endpoint());
    for i in 0..10 {
        ok(keelctl(&[&ep, "put", &format!("k{i}"), "v"]));
    }
    ok(keelctl(&[&ep, "del", "k0"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    let f = file.to_str().unwrap();
    assert_eq!(
        ok(keelctl(&[&ep, "snapshot", "save", f])),
        format!("Snapshot saved at {f}\n")
    );
    assert!(!dir.path().join("backup.db.part").exists());

    let v: serde_json::Value =
        serde_json::from_str(&ok(keelctl(&["snapshot", "status", f, "-w", "json"]))).unwrap();
    assert_eq!(v["revision"], 12, "{v}");
    assert_eq!(v["totalSize"], std::fs::metadata(&file).unwrap().len());
    let simple = ok(keelctl(&["snapshot", "status", f]));
    assert_eq!(simple.split(", ").nth(1), Some("12"), "{simple}");
    let table = ok(keelctl(&["snapshot", "status", f, "-w", "table"]));
    assert!(table.contains("| TOTAL KEYS |"), "{table}");

    let restored = dir.path().join("restored");
    let r = restored.to_str().unwrap();
    ok(keelctl(&[
        "snapshot",
        "restore",
        f,
        "--data-dir",
        r,
        "--name",
        "m0",
        "--initial-cluster",
        "m0=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&ok(keelctl(&["inspect", "data-dir", r, "-w", "json"]))).unwrap();
    assert_eq!(v["current_revision"], 12, "{v}");
    assert_eq!(v["keys"], 9, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");

    // A restore into a used dir is refused; a file that is not a backup too.
    let o = keelctl(&["snapshot", "restore", f, "--data-dir", r]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::write(dir.path().join("junk.db"), b"junk").unwrap();
    let o = keelctl(&[
        "snapshot",
        "status",
        dir.path().join("junk.db").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    // Two endpoints: etcdctl's refusal.
    let o = keelctl(&["--endpoints=a:1,b:2", "snapshot", "save", f]);
    assert_eq!(o.status.code(), Some(128));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "Error: snapshot must be requested to one selected node, not multiple [a:1 b:2]\n"
    );
}

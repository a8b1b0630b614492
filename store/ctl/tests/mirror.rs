//! `keelctl make-mirror` between two keel clusters: the keys present when
//! it starts, then every later put and delete, land under the destination
//! prefix. The keel binary must be built
//! (`cargo build --release -p keel-store --bin keel`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;

fn keelctl(ep: &str, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .arg(format!("--endpoints={ep}"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn mirrors_base_and_updates_under_another_prefix() {
    let src = Cluster::start(1);
    let dst = Cluster::start(1);
    let (s, d) = (src.members[0].endpoint(), dst.members[0].endpoint());
    keelctl(&s, &["put", "/p/a", "1"]);
    keelctl(&s, &["put", "/p/b", "2"]);
    keelctl(&s, &["put", "/other", "x"]);
    let mut mirror = Command::new(env!("CARGO_BIN_EXE_keelctl"))
        .args([
            &format!("--endpoints={s}"),
            "make-mirror",
            "--prefix=/p/",
            "--dest-prefix=/q/",
            &d,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = "/q/a\n1\n/q/c\n3\n";
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut wrote = false;
    let got = loop {
        let got = keelctl(&d, &["get", "", "--prefix"]);
        if !wrote && got.contains("/q/b") {
            keelctl(&s, &["put", "/p/c", "3"]);
            keelctl(&s, &["del", "/p/b"]);
            keelctl(&s, &["put", "/other2", "y"]);
            wrote = true;
        }
        if got == want || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = mirror.kill();
    let _ = mirror.wait();
    assert_eq!(got, want);
    assert!(wrote);
}

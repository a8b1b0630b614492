//! keelctl's TLS and auth flags against etcdctl 3.4.23: one script of
//! commands, run with both CLIs against a keel member and against a real
//! etcd 3.4.23, each started with mutual TLS (`--client-cert-auth`) and
//! certificates made at test time. The client certificate's Common Name is
//! `alice`, so with auth on and no `--user` the caller is alice.
//!
//! The script covers `--cacert/--cert/--key` from the command line and from
//! `ETCDCTL_*` variables, `--insecure-transport=false` with
//! `--insecure-skip-tls-verify`, `--user name:password`, `--user name
//! --password pw`, `--user name` with the password asked on stdin, a wrong
//! password, permission errors, and streams (watch, lease keep-alive) with a
//! token. Each CLI runs against a fresh server of the same kind.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tls::{Creds, TestCa};
use common::{assert_same_transcripts, require_tool, Cluster, Etcd};

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    alice: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    Pki {
        ca: ca.cert(),
        server: ca.issue("server", "server"),
        alice: ca.issue("alice", "alice"),
        _dir: dir,
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

impl Pki {
    fn server_flags(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", s(&self.server.0)),
            format!("--key-file={}", s(&self.server.1)),
            "--client-cert-auth".into(),
            format!("--trusted-ca-file={}", s(&self.ca)),
        ]
    }

    fn creds(&self) -> Creds {
        Creds {
            ca: Some(self.ca.clone()),
            cert: Some(self.alice.0.clone()),
            key: Some(self.alice.1.clone()),
        }
    }
}

/// How a step passes the TLS settings.
#[derive(Clone, Copy)]
enum Tls {
    /// `--cacert --cert --key` flags.
    Flags,
    /// `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY`.
    Env,
    /// `--insecure-transport=false --insecure-skip-tls-verify --cert --key`.
    SkipVerify,
    /// None: plain text to a TLS port.
    None,
}

/// (TLS, arguments, stdin)
fn script() -> Vec<(Tls, Vec<&'static str>, &'static str)> {
    use Tls::*;
    vec![
        (Flags, vec!["put", "foo", "bar"], ""),
        (Env, vec!["get", "foo"], ""),
        (SkipVerify, vec!["get", "foo"], ""),
        (None, vec!["get", "foo"], ""),
        (Flags, vec!["user", "add", "root:rootpw"], ""),
        (Flags, vec!["user", "grant-role", "root", "root"], ""),
        (Flags, vec!["role", "add", "reader"], ""),
        (
            Flags,
            vec!["role", "grant-permission", "reader", "read", "foo"],
            "",
        ),
        (Flags, vec!["user", "add", "alice:alicepw"], ""),
        (Flags, vec!["user", "grant-role", "alice", "reader"], ""),
        (Flags, vec!["auth", "enable"], ""),
        // The certificate's CN (alice) may read foo only.
        (Env, vec!["get", "foo"], ""),
        (Env, vec!["put", "foo", "nope"], ""),
        (Env, vec!["user", "list"], ""),
        // Users by password.
        (
            Flags,
            vec!["--user=root:rootpw", "put", "foo", "by-root"],
            "",
        ),
        (Flags, vec!["--user=root:rootpw", "user", "list"], ""),
        (
            Env,
            vec!["--user=alice", "--password=alicepw", "get", "foo"],
            "",
        ),
        (Env, vec!["--user=alice:alicepw", "put", "foo", "x"], ""),
        (Env, vec!["--user=alice:wrong", "get", "foo"], ""),
        (Env, vec!["--user=nobody:pw", "get", "foo"], ""),
        (Flags, vec!["--user=root", "get", "foo"], "rootpw\n"),
        (
            Flags,
            vec!["--user=root:rootpw", "lease", "grant", "100"],
            "",
        ),
        (Flags, vec!["--user=root:rootpw", "lease", "list"], ""),
        (
            Flags,
            vec!["--user=root:rootpw", "watch", "foo", "--rev=1"],
            "",
        ),
        (Flags, vec!["--user=root:rootpw", "auth", "disable"], ""),
        (Flags, vec!["user", "delete", "alice"], ""),
        (Flags, vec!["user", "delete", "root"], ""),
        (Flags, vec!["role", "delete", "reader"], ""),
        (Flags, vec!["del", "foo"], ""),
    ]
}

/// Runs the script with `ctl` against `endpoint`; one entry a step: the
/// arguments, stdout, the last stderr line, the exit code.
fn run(ctl: &Path, endpoint: &str, p: &Pki) -> Vec<String> {
    let mut out = Vec::new();
    let mut lease = String::new();
    for (tls, args, stdin) in script() {
        let mut c = Command::new(ctl);
        c.env_remove("ETCDCTL_CACERT")
            .env_remove("ETCDCTL_CERT")
            .env_remove("ETCDCTL_KEY")
            .env("ETCDCTL_API", "3")
            .args([
                format!("--endpoints={endpoint}"),
                "--dial-timeout=2s".into(),
                "--command-timeout=4s".into(),
            ]);
        match tls {
            Tls::Flags => {
                c.args([
                    format!("--cacert={}", s(&p.ca)),
                    format!("--cert={}", s(&p.alice.0)),
                    format!("--key={}", s(&p.alice.1)),
                ]);
            }
            Tls::Env => {
                c.env("ETCDCTL_CACERT", &p.ca)
                    .env("ETCDCTL_CERT", &p.alice.0)
                    .env("ETCDCTL_KEY", &p.alice.1);
            }
            Tls::SkipVerify => {
                c.args([
                    "--insecure-transport=false".to_string(),
                    "--insecure-skip-tls-verify".into(),
                    format!("--cert={}", s(&p.alice.0)),
                    format!("--key={}", s(&p.alice.1)),
                ]);
            }
            Tls::None => {}
        }
        c.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run the CLI");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        // `watch` runs until interrupted: give it time to print, then stop it.
        if args.contains(&"watch") {
            std::thread::sleep(Duration::from_millis(1500));
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(child.id().to_string())
                .status();
        }
        let o = wait(child, Duration::from_secs(15));
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        if let Some(rest) = stdout.strip_prefix("lease ") {
            if let Some((id, _)) = rest.split_once(" granted") {
                lease = id.to_string();
            }
        }
        let stdout = if lease.is_empty() {
            stdout
        } else {
            stdout.replace(&lease, "<lease>")
        };
        let stderr = String::from_utf8_lossy(&o.stderr);
        // etcdctl's password prompt runs `stty -echo`, which complains on
        // stderr when stdin is not a terminal: not etcdctl's own output.
        let last = stderr
            .lines()
            .rfind(|l| !l.starts_with("{\"level\":") && !l.starts_with("stty: "))
            .unwrap_or("")
            .replace(endpoint, "ENDPOINT");
        let code = o
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "signal".into());
        out.push(format!(
            "$ {args:?}\n[stdout]\n{stdout}[stderr] {last}\n[exit] {code}\n"
        ));
    }
    out
}

fn wait(mut child: std::process::Child, t: Duration) -> std::process::Output {
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

fn keelctl() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_keelctl"))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn tls_and_user_flags_on_keel_and_etcd() {
    let Some(etcdctl) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let p = pki();
    // Each CLI gets a fresh member (same revisions, no leftovers).
    let on_keel = |ctl: &Path| {
        let keel = Cluster::plan(1, &strs(&p.server_flags()))
            .with_tls(true, false, p.creds())
            .start_all();
        run(ctl, &keel.members[0].endpoint(), &p)
    };
    let expected = on_keel(&etcdctl);
    let got = on_keel(keelctl());
    // What the script is for, seen in keelctl's own answers.
    assert!(got[0].contains("[stdout]\nOK\n"), "{}", got[0]);
    assert!(got[2].contains("[stdout]\nfoo\nbar\n"), "{}", got[2]);
    assert!(got[3].contains("context deadline exceeded"), "{}", got[3]);
    assert!(got[11].contains("[stdout]\nfoo\nbar\n"), "{}", got[11]);
    assert!(got[12].contains("permission denied"), "{}", got[12]);
    assert!(got[14].contains("[stdout]\nOK\n"), "{}", got[14]);
    assert!(got[16].contains("[stdout]\nfoo\nby-root\n"), "{}", got[16]);
    assert!(got[18].contains("authentication failed"), "{}", got[18]);
    assert!(got[18].contains("[exit] 2"), "{}", got[18]);
    assert!(got[20].contains("foo\nby-root\n"), "{}", got[20]);
    assert!(got[23].contains("PUT\nfoo\nby-root\n"), "{}", got[23]);
    assert_same_transcripts(
        "etcdctl vs keelctl, TLS and users, on keel",
        &expected,
        &got,
    );

    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let on_etcd = |ctl: &Path| {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Etcd::start_tls(
            &etcd_bin,
            dir.path(),
            &strs(&p.server_flags()),
            Some(&p.creds()),
        );
        run(ctl, &etcd.endpoint(), &p)
    };
    let expected = on_etcd(&etcdctl);
    let got = on_etcd(keelctl());
    assert_same_transcripts(
        "etcdctl vs keelctl, TLS and users, on etcd",
        &expected,
        &got,
    );
}

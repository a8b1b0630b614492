//! TLS end to end: certificates made at test time (rcgen) in a temp dir.
//!
//! - `three_members_with_mutual_tls_on_both_ports`: https client and peer
//!   URLs, client-cert-auth on both ports; writes replicate, keel-client
//!   and `keel bench` work with TLS, /health and /metrics are served over the
//!   same TLS; a client without a certificate is refused.
//! - `etcdctl_over_tls_and_mutual_tls`: the real etcdctl 3.4 with `--cacert`
//!   (server TLS) and `--cacert --cert --key` (mTLS): put, get, member list,
//!   endpoint health; without a client certificate it fails, as it fails
//!   against a real etcd 3.4 started with the same certificates.
//! - `the_client_certificate_common_name_is_the_auth_user`: with auth on and
//!   `--client-cert-auth`, etcdctl with a certificate and no `--user` acts as
//!   the certificate's Common Name (its role's permissions); a token wins over
//!   the certificate; the same transcript as a real etcd 3.4.
//! - `a_member_with_a_foreign_peer_certificate_is_kept_out` and
//!   `..._cannot_join`: a peer certificate from another CA gets no Raft
//!   traffic through and cannot join; the others log the rejected handshakes.
//! - `auto_tls_on_both_ports`: `--auto-tls` and `--peer-auto-tls`.
//! - `bad_tls_flags_are_refused_at_start`: etcd's messages, non-zero exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tls::{Creds, TestCa};
use common::{require_tool, Cluster, Etcd};
use keel_client::RangeRequest;

/// A CA with server, peer and client certificates, and another CA with a
/// peer certificate of its own.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    peer: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    root_client: (PathBuf, PathBuf),
    foreign_peer: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let other = TestCa::new(dir.path(), "other-ca");
    Pki {
        ca: ca.cert(),
        server: ca.issue("server", "server"),
        peer: ca.issue("peer", "peer"),
        client: ca.issue("client", "alice"),
        root_client: ca.issue("root-client", "root"),
        foreign_peer: other.issue("foreign-peer", "peer"),
        _dir: dir,
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

impl Pki {
    /// Client creds with the client certificate.
    fn mtls(&self) -> Creds {
        Creds {
            ca: Some(self.ca.clone()),
            cert: Some(self.client.0.clone()),
            key: Some(self.client.1.clone()),
        }
    }

    /// Client creds without a client certificate.
    fn ca_only(&self) -> Creds {
        Creds {
            ca: Some(self.ca.clone()),
            ..Default::default()
        }
    }

    /// Server certificate and client-cert-auth on the client port.
    fn client_flags(&self, client_cert_auth: bool) -> Vec<String> {
        let mut f = vec![
            format!("--cert-file={}", s(&self.server.0)),
            format!("--key-file={}", s(&self.server.1)),
        ];
        if client_cert_auth {
            f.push("--client-cert-auth".into());
            f.push(format!("--trusted-ca-file={}", s(&self.ca)));
        }
        f
    }

    /// Peer certificate `(cert, key)` and peer-client-cert-auth on the peer port.
    fn peer_flags(&self, (cert, key): &(PathBuf, PathBuf)) -> Vec<String> {
        vec![
            format!("--peer-cert-file={}", s(cert)),
            format!("--peer-key-file={}", s(key)),
            "--peer-client-cert-auth".into(),
            format!("--peer-trusted-ca-file={}", s(&self.ca)),
        ]
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `text` without terminal colour codes (the logs have them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Waits until a line of member `i`'s log has every one of `what`.
fn wait_log(c: &Cluster, i: usize, what: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = strip_ansi(&std::fs::read_to_string(&c.members[i].log).unwrap_or_default());
        if let Some(line) = log.lines().find(|l| what.iter().all(|w| l.contains(w))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line of member {i} has {what:?}; log:\n{}",
            c.log_tail(i)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_members_with_mutual_tls_on_both_ports() {
    let p = pki();
    let mut flags = p.client_flags(true);
    flags.extend(p.peer_flags(&p.peer));
    let c = Cluster::plan(3, &strs(&flags))
        .with_tls(true, true, p.mtls())
        .start_all();
    assert!(c.members[0].url().starts_with("https://"));
    assert!(c.members[0].peer_url().starts_with("https://"));
    let rt = rt();
    rt.block_on(async {
        let client = c.client();
        client.put("greeting", "hello over tls").await.unwrap();
        for i in 0..3 {
            let kv = c.member_client(i).get("greeting").await.unwrap();
            assert_eq!(
                kv.map(|kv| kv.value),
                Some(b"hello over tls".to_vec()),
                "member {i}"
            );
        }
        // No client certificate: refused at the handshake.
        let no_cert = keel_client::Client::new(
            [c.members[0].endpoint()],
            keel_client::Options {
                tls: Some(p.ca_only().options()),
                max_attempts: 1,
                request_timeout: Duration::from_secs(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(no_cert.get("greeting").await.is_err());
    });
    wait_log(
        &c,
        0,
        &["rejected connection", "port=\"client\"", "no certificates"],
        Duration::from_secs(5),
    );
    // HTTP endpoints: over the same TLS; plain text gets nothing.
    assert!(c.leader().is_some(), "/metrics over TLS names a leader");
    let (code, body) = c.get(1, "/version").expect("version over TLS");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("etcdserver"), "{body}");
    assert!(
        !matches!(
            common::http_get(c.members[1].client_port, "/health"),
            Some((200, _))
        ),
        "plain HTTP must not be served on a TLS port"
    );
    let no_cert = common::tls::https(c.members[1].client_port, "GET", "/health", &p.ca_only());
    assert!(!matches!(no_cert, Some((200, _))), "{no_cert:?}");
    // keel bench with etcd's benchmark TLS flags.
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "bench",
            "--endpoints",
            &c.members[2].url(),
            "--cacert",
            &s(&p.ca),
            "--cert",
            &s(&p.client.0),
            "--key",
            &s(&p.client.1),
            "put",
            "--total",
            "40",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["total"], 40, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

/// Runs etcdctl; returns (exit code, stdout, stderr).
fn etcdctl(
    etcdctl: &Path,
    endpoint: &str,
    creds: &[String],
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--dial-timeout=1s",
            "--command-timeout=3s",
        ])
        .args(creds)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The comparable part of etcdctl's answers: exit codes, stdout (health
/// timings cut), and the error line without its timestamps and ids.
fn transcript(etcdctl_bin: &Path, endpoint: &str, p: &Pki) -> Vec<String> {
    let ok = p.mtls().etcdctl_args();
    let no_cert = p.ca_only().etcdctl_args();
    let plain: Vec<String> = Vec::new();
    let steps: Vec<(&Vec<String>, Vec<&str>)> = vec![
        (&ok, vec!["put", "foo", "bar"]),
        (&ok, vec!["get", "foo"]),
        (&ok, vec!["endpoint", "health"]),
        (&no_cert, vec!["get", "foo"]),
        (&plain, vec!["get", "foo"]),
    ];
    steps
        .into_iter()
        .map(|(creds, args)| {
            let (code, out, err) = etcdctl(etcdctl_bin, endpoint, creds, &args);
            let norm = |t: &str| {
                t.replace(endpoint, "ENDPOINT")
                    .split(": took =")
                    .next()
                    .unwrap()
                    .to_string()
            };
            let out = norm(&out);
            let err_last = norm(err.lines().last().unwrap_or(""));
            let cause = err
                .lines()
                .find_map(|l| l.split("\"error\":\"").nth(1))
                .map(|e| e.split('"').next().unwrap().to_string())
                .unwrap_or_default();
            format!("{args:?} exit={code}\n{out}\n{cause}\n{err_last}\n")
        })
        .collect()
}

#[test]
fn etcdctl_over_tls_and_mutual_tls() {
    let Some(etcdctl_bin) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let p = pki();
    // Server TLS only: --cacert is enough.
    let c = Cluster::plan(1, &strs(&p.client_flags(false)))
        .with_tls(true, false, p.ca_only())
        .start_all();
    let ep = c.members[0].endpoint();
    let tls = p.ca_only().etcdctl_args();
    let (code, out, err) = etcdctl(&etcdctl_bin, &ep, &tls, &["put", "foo", "bar"]);
    assert_eq!((code, out.as_str()), (0, "OK\n"), "{err}");
    let (code, out, err) = etcdctl(&etcdctl_bin, &ep, &tls, &["get", "foo"]);
    assert_eq!((code, out.as_str()), (0, "foo\nbar\n"), "{err}");
    let (code, out, err) = etcdctl(&etcdctl_bin, &ep, &tls, &["member", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&c.members[0].url()), "{out}");
    assert!(out.contains("https://127.0.0.1:"), "{out}");
    // etcdctl 3.4 prints health to stderr.
    let (code, _, err) = etcdctl(&etcdctl_bin, &ep, &tls, &["endpoint", "health"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{ep} is healthy")), "{err}");
    // Without TLS settings etcdctl speaks plain text to a TLS port: no answer.
    let (code, _, err) = etcdctl(&etcdctl_bin, &ep, &[], &["get", "foo"]);
    assert_ne!(code, 0, "{err}");
    drop(c);

    // Mutual TLS: etcdctl needs --cert and --key too.
    let c = Cluster::plan(1, &strs(&p.client_flags(true)))
        .with_tls(true, false, p.mtls())
        .start_all();
    let ep = c.members[0].endpoint();
    let mtls = p.mtls().etcdctl_args();
    let (code, out, err) = etcdctl(&etcdctl_bin, &ep, &mtls, &["member", "list", "-w", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"clientURLs\":[\"https://127.0.0.1:"),
        "{out}"
    );
    let got = transcript(&etcdctl_bin, &ep, &p);
    assert!(got[0].contains("exit=0\nOK"), "{}", got[0]);
    assert!(got[1].contains("exit=0\nfoo\nbar"), "{}", got[1]);
    assert!(got[2].contains("exit=0\n"), "{}", got[2]);
    assert!(got[2].contains("ENDPOINT is healthy"), "{}", got[2]);
    // No client certificate: etcdctl fails; keel logs why.
    assert!(got[3].contains("exit=1"), "{}", got[3]);
    assert!(got[3].contains("context deadline exceeded"), "{}", got[3]);
    let line = wait_log(
        &c,
        0,
        &[
            "rejected connection: TLS handshake failed",
            "port=\"client\"",
        ],
        Duration::from_secs(5),
    );
    assert!(line.contains("peer sent no certificates"), "{line}");
    assert!(got[4].contains("exit=1"), "{}", got[4]);
    drop(c);

    // The same with a real etcd 3.4 and the same certificates.
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_tls(
        &etcd_bin,
        dir.path(),
        &strs(&p.client_flags(true)),
        Some(&p.mtls()),
    );
    let expected = transcript(&etcdctl_bin, &etcd.endpoint(), &p);
    common::assert_same_transcripts("etcdctl TLS steps", &expected, &got);
}

/// etcdctl steps with auth: set up as alice's certificate while auth is
/// off, then act by certificate only, by token over the certificate, and as
/// the root certificate. Exit code, stdout and the error's last line each.
fn cn_transcript(etcdctl_bin: &Path, endpoint: &str, p: &Pki) -> Vec<String> {
    let alice = p.mtls().etcdctl_args();
    let root = Creds {
        ca: Some(p.ca.clone()),
        cert: Some(p.root_client.0.clone()),
        key: Some(p.root_client.1.clone()),
    }
    .etcdctl_args();
    let steps: Vec<(&Vec<String>, Vec<&str>)> = vec![
        (&alice, vec!["user", "add", "root:rootpw"]),
        (&alice, vec!["user", "grant-role", "root", "root"]),
        (&alice, vec!["role", "add", "reader"]),
        (
            &alice,
            vec!["role", "grant-permission", "reader", "read", "foo"],
        ),
        (&alice, vec!["user", "add", "alice:alicepw"]),
        (&alice, vec!["user", "grant-role", "alice", "reader"]),
        (&alice, vec!["put", "foo", "bar"]),
        (&alice, vec!["auth", "enable"]),
        // The certificate's CN is the user: alice may read foo only.
        (&alice, vec!["get", "foo"]),
        (&alice, vec!["put", "foo", "x"]),
        (&alice, vec!["get", "other"]),
        (&alice, vec!["user", "list"]),
        // A token (from --user) wins over the certificate.
        (&alice, vec!["--user=root:rootpw", "put", "foo", "by-token"]),
        (&alice, vec!["--user=alice:wrong", "get", "foo"]),
        // The root certificate has the root role.
        (&root, vec!["put", "foo", "by-root-cert"]),
        (&root, vec!["get", "foo"]),
        (&root, vec!["user", "list"]),
        (&root, vec!["auth", "disable"]),
        (&alice, vec!["put", "foo", "free"]),
    ];
    steps
        .into_iter()
        .map(|(creds, args)| {
            let (code, out, err) = etcdctl(etcdctl_bin, endpoint, creds, &args);
            let err_last = err
                .lines()
                .last()
                .unwrap_or("")
                .replace(endpoint, "ENDPOINT");
            format!("{args:?} exit={code}\n{out}\n{err_last}\n")
        })
        .collect()
}

#[test]
fn the_client_certificate_common_name_is_the_auth_user() {
    let Some(etcdctl_bin) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let p = pki();
    let c = Cluster::plan(1, &strs(&p.client_flags(true)))
        .with_tls(true, false, p.mtls())
        .start_all();
    let got = cn_transcript(&etcdctl_bin, &c.members[0].endpoint(), &p);
    assert!(got[8].contains("exit=0\nfoo\nbar\n"), "{}", got[8]);
    assert!(got[9].contains("exit=1"), "{}", got[9]);
    assert!(
        got[9].contains("etcdserver: permission denied"),
        "{}",
        got[9]
    );
    assert!(got[11].contains("permission denied"), "{}", got[11]);
    assert!(got[12].contains("exit=0\nOK"), "{}", got[12]);
    assert!(got[13].contains("authentication failed"), "{}", got[13]);
    assert!(
        got[15].contains("exit=0\nfoo\nby-root-cert\n"),
        "{}",
        got[15]
    );
    assert!(got[18].contains("exit=0\nOK"), "{}", got[18]);
    drop(c);

    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_tls(
        &etcd_bin,
        dir.path(),
        &strs(&p.client_flags(true)),
        Some(&p.mtls()),
    );
    let expected = cn_transcript(&etcdctl_bin, &etcd.endpoint(), &p);
    common::assert_same_transcripts("etcdctl with certificate users", &expected, &got);
}

#[test]
fn a_member_with_a_foreign_peer_certificate_is_kept_out() {
    let p = pki();
    let mut flags = p.client_flags(true);
    flags.extend(p.peer_flags(&p.peer));
    let mut foreign = p.client_flags(true);
    foreign.extend(p.peer_flags(&p.foreign_peer));
    let mut c = Cluster::plan(3, &strs(&flags)).with_tls(true, true, p.mtls());
    c.set_extra(2, &strs(&foreign));
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_healthy(0, Duration::from_secs(20));
    c.wait_healthy(1, Duration::from_secs(20));
    let rt = rt();
    rt.block_on(async {
        c.member_client(0).put("k", "quorum of two").await.unwrap();
        assert_eq!(
            c.member_client(1)
                .get("k")
                .await
                .unwrap()
                .map(|kv| kv.value),
            Some(b"quorum of two".to_vec())
        );
    });
    // The good members refuse its handshakes, on their peer port.
    let line = wait_log(
        &c,
        0,
        &["rejected connection: TLS handshake failed", "port=\"peer\""],
        Duration::from_secs(10),
    );
    assert!(
        line.contains("UnknownIssuer")
            || line.contains("BadCertificate")
            || line.contains("certificate"),
        "{line}"
    );
    // It says why it cannot reach them.
    wait_log(
        &c,
        2,
        &["cannot connect to peer: TLS failed"],
        Duration::from_secs(10),
    );
    // Give it time: it never gets the data, nor a leader.
    std::thread::sleep(Duration::from_secs(3));
    rt.block_on(async {
        let r = c
            .member_client(2)
            .range(RangeRequest {
                key: b"k".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(r.kvs.is_empty(), "the foreign member got {:?}", r.kvs);
    });
    let health = c.get(2, "/health").map(|(_, b)| b).unwrap_or_default();
    assert!(!health.contains("\"true\""), "{health}");
    assert_eq!(c.metric(2, "etcd_server_has_leader"), Some(0.0));
}

#[test]
fn a_member_with_a_foreign_peer_certificate_cannot_join() {
    use keel_proto::etcdserverpb::cluster_client::ClusterClient;
    use keel_proto::etcdserverpb::MemberAddRequest;
    let p = pki();
    let mut flags = p.client_flags(true);
    flags.extend(p.peer_flags(&p.peer));
    let mut foreign = p.client_flags(true);
    foreign.extend(p.peer_flags(&p.foreign_peer));
    let mut c = Cluster::plan(1, &strs(&flags))
        .with_tls(true, true, p.mtls())
        .start_all();
    let j = c.join("m1", &strs(&foreign));
    let peer_url = c.members[j].peer_url();
    let tls = p.mtls().options();
    rt().block_on(async {
        let channel = keel_client::tls::endpoint(&c.members[0].url(), Some(&tls))
            .unwrap()
            .connect()
            .await
            .unwrap();
        ClusterClient::new(channel)
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url],
                is_learner: true,
            })
            .await
            .unwrap();
    });
    c.spawn(j);
    let status = c.wait_exit(j, Duration::from_secs(30));
    assert!(!status.success());
    wait_log(
        &c,
        j,
        &["cannot fetch cluster info"],
        Duration::from_secs(1),
    );
    wait_log(
        &c,
        0,
        &["rejected connection: TLS handshake failed", "port=\"peer\""],
        Duration::from_secs(1),
    );
}

#[test]
fn auto_tls_on_both_ports() {
    let mut c = Cluster::plan(3, &["--auto-tls", "--peer-auto-tls"])
        .with_tls(true, true, Creds::default())
        .start_all();
    let certs: Vec<Vec<u8>> = c
        .members
        .iter()
        .map(|m| {
            assert!(m.data_dir.join("fixtures/peer/cert.pem").is_file());
            assert!(m.data_dir.join("fixtures/peer/key.pem").is_file());
            std::fs::read(m.data_dir.join("fixtures/client/cert.pem")).unwrap()
        })
        .collect();
    rt().block_on(async {
        c.member_client(0).put("auto", "tls").await.unwrap();
        assert_eq!(
            c.member_client(2)
                .get("auto")
                .await
                .unwrap()
                .map(|kv| kv.value),
            Some(b"tls".to_vec())
        );
    });
    // A restart keeps the certificate made the first time.
    c.stop(1);
    c.restart(1);
    assert_eq!(
        std::fs::read(c.members[1].data_dir.join("fixtures/client/cert.pem")).unwrap(),
        certs[1]
    );
    let Some(etcdctl_bin) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let ep = c.members[1].endpoint();
    let skip = Creds::default().etcdctl_args();
    let (code, out, err) = etcdctl(&etcdctl_bin, &ep, &skip, &["get", "auto"]);
    assert_eq!((code, out.as_str()), (0, "auto\ntls\n"), "{err}");
    let (code, _, err) = etcdctl(&etcdctl_bin, &ep, &skip, &["endpoint", "health"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is healthy"), "{err}");
    // A self-signed certificate is not trusted without the skip flag.
    let (code, _, err) = etcdctl(
        &etcdctl_bin,
        &ep,
        &["--insecure-transport=false".to_string()],
        &["get", "auto"],
    );
    assert_ne!(code, 0, "{err}");
}

/// Runs `keel store` with `args`, expecting it to exit by itself; returns
/// (exit code, stderr).
fn keel_exits(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("store")
        .args(["--data-dir", &s(&dir.join("data"))])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("keel {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_tls_flags_are_refused_at_start() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let cport = common::free_port();
    let pport = common::free_port();
    let client_https = format!("https://127.0.0.1:{cport}");
    let peer_https = format!("https://127.0.0.1:{pport}");
    let peer_http = format!("http://127.0.0.1:{pport}");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                format!("--listen-client-urls={client_https}"),
                format!("--listen-peer-urls={peer_http}"),
            ],
            format!("TLS key/cert (--cert-file, --key-file) must be provided for client url {client_https} with HTTPS scheme"),
        ),
        (
            vec![
                format!("--listen-client-urls=http://127.0.0.1:{cport}"),
                format!("--listen-peer-urls={peer_https}"),
                format!("--peer-trusted-ca-file={}", s(&p.ca)),
            ],
            format!("cannot listen on TLS for 127.0.0.1:{pport}: KeyFile and CertFile are not presented"),
        ),
        (
            vec![
                format!("--listen-client-urls={client_https}"),
                format!("--listen-peer-urls={peer_http}"),
                format!("--cert-file={}", s(&p.server.0)),
                format!("--key-file={}", s(&p.server.1)),
                "--client-cert-auth".into(),
            ],
            "--client-cert-auth needs --trusted-ca-file".into(),
        ),
        (
            vec![
                format!("--listen-client-urls={client_https}"),
                format!("--listen-peer-urls={peer_http}"),
                format!("--cert-file={}", s(&dir.path().join("missing.pem"))),
                format!("--key-file={}", s(&p.server.1)),
            ],
            format!("open {}: No such file", s(&dir.path().join("missing.pem"))),
        ),
        (
            vec![
                format!("--listen-client-urls={client_https}"),
                format!("--listen-peer-urls={peer_http}"),
                format!("--cert-file={}", s(&p.server.0)),
                format!("--key-file={}", s(&p.client.1)),
            ],
            "and its key".into(),
        ),
    ];
    for (args, want) in &cases {
        let (code, err) = keel_exits(dir.path(), &strs(args));
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains(want.as_str()),
            "{args:?}: want {want:?} in\n{err}"
        );
    }
    // etcd 3.4 says the same for the first two.
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    for (args, want) in &cases[..2] {
        let listen = args[0].split_once('=').unwrap().1;
        let out = Command::new(&etcd_bin)
            .args(["--data-dir", &s(&dir.path().join("etcd"))])
            .arg(format!("--advertise-client-urls={listen}"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want.as_str()), "etcd: want {want:?} in\n{err}");
    }
}

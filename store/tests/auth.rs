//! Authentication and role-based access, end to end on real `keel` members:
//!
//! - a user with READ on a prefix reads it, and cannot write it, read outside
//!   it, or watch outside it; txns, lease revokes and anonymous calls are
//!   refused with etcd's codes and messages;
//! - a role revoked (or granted) takes effect at once for a client that
//!   keeps its token;
//! - passwords never reach the member's log, its data dir, a snapshot, or an
//!   error message; a failed Authenticate is slow for the caller only;
//! - tokens work on every member; the auth state survives a restart and
//!   reaches a member that joins later through a snapshot, equal everywhere;
//! - the real etcdctl 3.4's `auth`, `user`, `role` commands and `--user`
//!   print the same against keel as against etcd 3.4.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{same_on_etcd_and_keel, Cluster};
use keel_client::{Client, Options, RangeRequest, WatchMessage, WatchOptions};
use keel_proto::authpb::{permission::Type as PermType, Permission};
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest, AuthenticateRequest,
    HashKvRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, SnapshotRequest,
};
use tonic::transport::Channel;
use tonic::Code;

const ROOT_PW: &str = "Root-Pw-7f3a9c";
const ALICE_PW: &str = "Alice-Secret-91b2e";

const FAST: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];

async fn channel(endpoint: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// `req` with the `token` metadata.
fn with_token<T>(req: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(req);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

async fn authenticate(ch: &Channel, name: &str, password: &str) -> Result<String, tonic::Status> {
    AuthClient::new(ch.clone())
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

/// root (root role) and alice (role `reader`: READ on prefix `/app/`), then
/// auth enabled; all through `ch` without a token (auth is still off).
async fn set_up_users(ch: &Channel) {
    let mut a = AuthClient::new(ch.clone());
    for (name, pw) in [("root", ROOT_PW), ("alice", ALICE_PW)] {
        a.user_add(AuthUserAddRequest {
            name: name.into(),
            password: pw.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    a.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .unwrap();
    a.role_add(AuthRoleAddRequest {
        name: "reader".into(),
    })
    .await
    .unwrap();
    a.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: "reader".into(),
        perm: Some(Permission {
            perm_type: PermType::Read as i32,
            key: b"/app/".to_vec(),
            range_end: b"/app0".to_vec(),
        }),
    })
    .await
    .unwrap();
    a.user_grant_role(AuthUserGrantRoleRequest {
        user: "alice".into(),
        role: "reader".into(),
    })
    .await
    .unwrap();
    a.auth_enable(AuthEnableRequest {}).await.unwrap();
}

fn code_msg(e: keel_client::Error) -> (Code, String) {
    let s = e.status().expect("a gRPC status").clone();
    (s.code(), s.message().to_string())
}

fn denied() -> (Code, String) {
    (
        Code::PermissionDenied,
        "etcdserver: permission denied".to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reader_reads_its_prefix_only_and_revocation_is_immediate() {
    let c = Cluster::start_with(1, FAST);
    let ep = c.members[0].endpoint();
    let ch = channel(&ep).await;
    set_up_users(&ch).await;

    let root = c.client().with_user("root", ROOT_PW);
    root.put("/app/a", "1").await.unwrap();
    root.put("/other", "x").await.unwrap();

    let alice = c.client().with_user("alice", ALICE_PW);
    assert_eq!(alice.get("/app/a").await.unwrap().unwrap().value, b"1");
    assert_eq!(alice.get_prefix("/app/").await.unwrap().kvs.len(), 1);
    assert_eq!(
        code_msg(alice.put("/app/a", "2").await.unwrap_err()),
        denied()
    );
    assert_eq!(code_msg(alice.get("/other").await.unwrap_err()), denied());
    // A range wider than the prefix is outside it.
    let wide = alice
        .range(RangeRequest {
            key: b"/app/".to_vec(),
            range_end: b"/app1".to_vec(),
            ..Default::default()
        })
        .await;
    assert_eq!(code_msg(wide.unwrap_err()), denied());
    // A txn whose failure branch (not taken) reads outside: refused, as etcd.
    let txn = keel_client::TxnRequest {
        compare: vec![],
        success: vec![keel_client::RequestOp {
            request: Some(keel_client::request_op::Request::RequestRange(
                RangeRequest {
                    key: b"/app/a".to_vec(),
                    ..Default::default()
                },
            )),
        }],
        failure: vec![keel_client::RequestOp {
            request: Some(keel_client::request_op::Request::RequestRange(
                RangeRequest {
                    key: b"/other".to_vec(),
                    ..Default::default()
                },
            )),
        }],
    };
    assert_eq!(code_msg(alice.txn(txn).await.unwrap_err()), denied());

    // Anonymous, wrong password, forged token: etcd's errors.
    let anon = Client::new([ep.clone()], Options::default()).unwrap();
    assert_eq!(
        code_msg(anon.get("/app/a").await.unwrap_err()),
        (
            Code::InvalidArgument,
            "etcdserver: user name is empty".to_string()
        )
    );
    let started = Instant::now();
    let wrong = authenticate(&ch, "alice", "Wrong-Guess-5d1")
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(500), "no delay");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert_eq!(
        wrong.message(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    let forged = KvClient::new(ch.clone())
        .range(with_token(
            keel_proto::etcdserverpb::RangeRequest {
                key: b"/app/a".to_vec(),
                ..Default::default()
            },
            "forged.7",
        ))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
    assert_eq!(forged.message(), "etcdserver: invalid auth token");
    // Calls that need no permission still refuse a bad token, as etcd's.
    let forged = LeaseClient::new(ch.clone())
        .lease_grant(with_token(LeaseGrantRequest { ttl: 10, id: 0 }, "forged.7"))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);

    // Watch: outside the prefix refused (canceled with etcd's reason); inside works.
    let mut outside = alice
        .watch("/other", WatchOptions::default())
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), outside.next())
        .await
        .unwrap()
    {
        Some(WatchMessage::Canceled { reason }) => assert_eq!(
            reason,
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        ),
        other => panic!("expected a canceled watch, got {other:?}"),
    }
    // The put first and the watch from its revision: `watch` returns before
    // the server created the watch, so a watch "from now" could miss it.
    let put = root.put("/app/b", "2").await.unwrap();
    let rev = put.header.unwrap().revision;
    let mut inside = alice
        .watch("/app/", WatchOptions::prefix(b"/app/").from_revision(rev))
        .await
        .unwrap();
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(10), inside.next())
            .await
            .unwrap()
        {
            Some(WatchMessage::Events { events, .. }) => break events,
            Some(WatchMessage::Progress { .. }) => continue,
            other => panic!("expected events, got {other:?}"),
        }
    };
    assert_eq!(got[0].kv.as_ref().unwrap().key, b"/app/b");

    // LeaseRevoke needs write on every key the lease holds.
    let root_token = authenticate(&ch, "root", ROOT_PW).await.unwrap();
    let alice_token = authenticate(&ch, "alice", ALICE_PW).await.unwrap();
    let mut leases = LeaseClient::new(ch.clone());
    let lease = leases
        .lease_grant(with_token(
            LeaseGrantRequest { ttl: 100, id: 0 },
            &root_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    KvClient::new(ch.clone())
        .put(with_token(
            PutRequest {
                key: b"/other/leased".to_vec(),
                lease,
                ..Default::default()
            },
            &root_token,
        ))
        .await
        .unwrap();
    let e = leases
        .lease_revoke(with_token(LeaseRevokeRequest { id: lease }, &alice_token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::PermissionDenied, "etcdserver: permission denied")
    );
    // Admin Maintenance calls: etcd 3.4's untranslated auth error.
    let e = MaintenanceClient::new(ch.clone())
        .hash_kv(with_token(HashKvRequest { revision: 0 }, &alice_token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "auth: permission denied")
    );
    MaintenanceClient::new(ch.clone())
        .hash_kv(with_token(HashKvRequest { revision: 0 }, &root_token))
        .await
        .unwrap();

    // Revoking the role takes effect at once for the same token, and so
    // does granting it again.
    let read_app = || {
        let mut kv = KvClient::new(ch.clone());
        let token = alice_token.clone();
        async move {
            kv.range(with_token(
                keel_proto::etcdserverpb::RangeRequest {
                    key: b"/app/a".to_vec(),
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    read_app().await.unwrap();
    let mut admin = AuthClient::new(ch.clone());
    admin
        .user_revoke_role(with_token(
            AuthUserRevokeRoleRequest {
                name: "alice".into(),
                role: "reader".into(),
            },
            &root_token,
        ))
        .await
        .unwrap();
    let e = read_app().await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::PermissionDenied, "etcdserver: permission denied")
    );
    admin
        .user_grant_role(with_token(
            AuthUserGrantRoleRequest {
                user: "alice".into(),
                role: "reader".into(),
            },
            &root_token,
        ))
        .await
        .unwrap();
    read_app().await.unwrap();
    // The keel-client that kept its token sees the same.
    assert_eq!(alice.get("/app/a").await.unwrap().unwrap().value, b"1");
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passwords_never_in_logs_data_snapshots_or_errors() {
    let mut extra = FAST.to_vec();
    extra.extend(["--log-level", "debug"]);
    let mut c = Cluster::start_with(1, &extra);
    let ep = c.members[0].endpoint();
    let ch = channel(&ep).await;
    set_up_users(&ch).await;
    let root_token = authenticate(&ch, "root", ROOT_PW).await.unwrap();
    const NEW_PW: &str = "Changed-Pw-c0ffee42";
    const WRONG_PW: &str = "Wrong-Guess-5d1";
    AuthClient::new(ch.clone())
        .user_change_password(with_token(
            AuthUserChangePasswordRequest {
                name: "alice".into(),
                password: NEW_PW.into(),
                ..Default::default()
            },
            &root_token,
        ))
        .await
        .unwrap();
    let wrong = authenticate(&ch, "alice", WRONG_PW).await.unwrap_err();
    let old = authenticate(&ch, "alice", ALICE_PW).await.unwrap_err();
    authenticate(&ch, "alice", NEW_PW).await.unwrap();
    let all = [ROOT_PW, ALICE_PW, NEW_PW, WRONG_PW];
    for e in [&wrong, &old] {
        for pw in all {
            assert!(
                !format!("{e:?}").contains(pw),
                "error shows a password: {e:?}"
            );
        }
    }

    // A snapshot (etcdctl snapshot save's call) carries the users, hashed.
    let mut stream = MaintenanceClient::new(ch.clone())
        .snapshot(with_token(SnapshotRequest {}, &root_token))
        .await
        .unwrap()
        .into_inner();
    let mut snap = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        snap.extend_from_slice(&chunk.blob);
    }
    assert!(
        contains(&snap, "alice") && contains(&snap, "$2b$10$"),
        "users are in the snapshot"
    );
    for pw in all {
        assert!(!contains(&snap, pw), "the snapshot holds a password");
    }

    // The member's log and every file of its data dir (Raft log included).
    c.stop(0);
    let log = std::fs::read(&c.members[0].log).unwrap();
    assert!(
        contains(&log, "authentication failed"),
        "the log was written"
    );
    let mut files = files_under(&c.members[0].data_dir);
    files.push((c.members[0].log.clone(), log));
    for (path, bytes) in &files {
        for pw in all {
            assert!(!contains(bytes, pw), "{} holds a password", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_authentication_costs_the_caller_not_the_server() {
    let c = Cluster::start_with(1, FAST);
    let ch = channel(&c.members[0].endpoint()).await;
    set_up_users(&ch).await;
    let root = c.client().with_user("root", ROOT_PW);
    root.put("/warm", "up").await.unwrap();
    let started = Instant::now();
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let ch = ch.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = authenticate(&ch, "alice", &format!("guess-{i}")).await;
                (r.is_err(), t.elapsed())
            })
        })
        .collect();
    // The server keeps serving while the guesses wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    root.put("/during", "guesses").await.unwrap();
    let put_done = started.elapsed();
    let mut last = Duration::ZERO;
    for a in attempts {
        let (failed, took) = a.await.unwrap();
        assert!(failed);
        assert!(
            took >= Duration::from_millis(500),
            "a failure took {took:?}"
        );
        last = last.max(started.elapsed());
    }
    assert!(
        put_done < last,
        "the put ({put_done:?}) waited for the guesses ({last:?})"
    );
}

/// The auth state a member serves (as root, through `ch`).
async fn auth_view(ch: &Channel) -> (Vec<String>, Vec<String>, Vec<Permission>) {
    let token = authenticate(ch, "root", ROOT_PW).await.unwrap();
    let mut a = AuthClient::new(ch.clone());
    let users = a
        .user_list(with_token(AuthUserListRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .users;
    let roles = a
        .user_get(with_token(
            AuthUserGetRequest {
                name: "alice".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .roles;
    let perms = a
        .role_get(with_token(
            AuthRoleGetRequest {
                role: "reader".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .perm;
    (users, roles, perms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_state_survives_restart_and_reaches_a_joining_member() {
    let mut flags = FAST.to_vec();
    flags.extend([
        "--snapshot-count",
        "5",
        "--experimental-snapshot-catchup-entries",
        "5",
    ]);
    let mut c = Cluster::start_with(1, &flags);
    let ch0 = channel(&c.members[0].endpoint()).await;
    set_up_users(&ch0).await;
    let root = c.client().with_user("root", ROOT_PW);
    for i in 0..20 {
        root.put(format!("/app/{i}"), "v").await.unwrap();
    }
    let want = auth_view(&ch0).await;
    assert_eq!(want.0, ["alice", "root"]);

    // A member that joins later gets the auth state in the snapshot.
    let j = c.join("m1", &flags);
    let url = c.members[j].peer_url();
    let ec = etcd_client::Client::connect(
        [c.members[0].url()],
        Some(etcd_client::ConnectOptions::new().with_user("root", ROOT_PW)),
    )
    .await
    .unwrap();
    ec.cluster_client().member_add([url], None).await.unwrap();
    c.spawn(j);
    c.wait_healthy(j, Duration::from_secs(30));
    let ch1 = channel(&c.members[j].endpoint()).await;
    assert_eq!(auth_view(&ch1).await, want);
    let alice1 = c.member_client(j).with_user("alice", ALICE_PW);
    assert_eq!(alice1.get("/app/3").await.unwrap().unwrap().value, b"v");
    assert_eq!(
        code_msg(alice1.put("/app/3", "w").await.unwrap_err()),
        denied()
    );

    // A token assigned now works on every member (assigned in apply).
    let token = authenticate(&ch0, "alice", ALICE_PW).await.unwrap();
    for ch in [&ch0, &ch1] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = KvClient::new(ch.clone())
                .range(with_token(
                    keel_proto::etcdserverpb::RangeRequest {
                        key: b"/app/1".to_vec(),
                        serializable: true,
                        ..Default::default()
                    },
                    &token,
                ))
                .await;
            match r {
                Ok(resp) => {
                    assert_eq!(resp.into_inner().kvs.len(), 1);
                    break;
                }
                // The other member may apply the Authenticate a moment later.
                Err(e) if e.code() == Code::Unauthenticated && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("token refused: {e}"),
            }
        }
    }

    // Both members restart with the same state; auth is still enabled.
    c.stop(0);
    c.stop(j);
    c.spawn(0);
    c.spawn(j);
    c.wait_healthy(0, Duration::from_secs(30));
    c.wait_healthy(j, Duration::from_secs(30));
    for i in [0, j] {
        let ch = channel(&c.members[i].endpoint()).await;
        assert_eq!(auth_view(&ch).await, want, "member {i}");
        let anon = Client::new([c.members[i].endpoint()], Options::default()).unwrap();
        assert_eq!(
            code_msg(anon.get("/app/1").await.unwrap_err()).1,
            "etcdserver: user name is empty"
        );
    }
    let alice = c.client().with_user("alice", ALICE_PW);
    assert_eq!(alice.get("/app/19").await.unwrap().unwrap().value, b"v");
    // The client made before the restart holds a token the restarted
    // member does not know: it authenticates again by itself.
    assert_eq!(alice1.get("/app/4").await.unwrap().unwrap().value, b"v");
}

/// Runs etcdctl against `endpoint`: the step's transcript, with the
/// client's retry warnings (timestamps, random ids) left out.
fn etcdctl(tool: &Path, endpoint: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(tool)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = format!("$ etcdctl {}\n", args.join(" "));
    for stream in [&out.stdout, &out.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            if !line.contains("retry_interceptor") {
                text.push_str(&line.replace(endpoint, "EP"));
                text.push('\n');
            }
        }
    }
    text.push_str(&format!("[exit {}]\n", out.status.code().unwrap_or(-1)));
    text
}

#[test]
fn etcdctl_auth_commands_print_the_same_as_on_etcd() {
    let script: &[(&[&str], &str)] = &[
        (&["auth", "enable"], ""),
        (&["user", "add", "root:rootpw"], ""),
        // etcdctl adds the root role and grants it when enable says it is missing.
        (&["auth", "enable"], ""),
        (&["auth", "enable"], ""),
        (&["user", "list"], ""),
        (&["--user", "root:rootpw", "user", "list"], ""),
        (&["--user", "root:bad", "user", "list"], ""),
        (&["--user", "nobody:x", "user", "list"], ""),
        (&["--user", "root:rootpw", "role", "add", "reader"], ""),
        (&["--user", "root:rootpw", "role", "add", "reader"], ""),
        (&["--user", "root:rootpw", "role", "add", ""], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "grant-permission",
                "reader",
                "read",
                "/app/",
                "--prefix",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "grant-permission",
                "reader",
                "readwrite",
                "/x",
                "/z",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "grant-permission",
                "reader",
                "write",
                "k1",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "grant-permission",
                "reader",
                "read",
                "from",
                "--from-key",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "grant-permission",
                "nope",
                "read",
                "a",
            ],
            "",
        ),
        (&["--user", "root:rootpw", "role", "get", "reader"], ""),
        (&["--user", "root:rootpw", "role", "get", "nope"], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "add",
                "alice",
                "--interactive=false",
            ],
            "alicepw\n",
        ),
        (&["--user", "root:rootpw", "user", "add", "alice:again"], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "add",
                "bob",
                "--no-password",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "grant-role",
                "alice",
                "reader",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "grant-role",
                "alice",
                "reader",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "grant-role",
                "alice",
                "nope",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "grant-role",
                "nobody",
                "reader",
            ],
            "",
        ),
        (&["--user", "root:rootpw", "user", "get", "alice"], ""),
        (
            &["--user", "root:rootpw", "user", "get", "alice", "--detail"],
            "",
        ),
        (&["--user", "root:rootpw", "user", "get", "bob"], ""),
        (&["--user", "root:rootpw", "user", "get", "nobody"], ""),
        (&["--user", "root:rootpw", "user", "list"], ""),
        (&["--user", "root:rootpw", "role", "list"], ""),
        (&["--user", "root:rootpw", "role", "get", "root"], ""),
        (&["--user", "root:rootpw", "put", "/app/a", "1"], ""),
        (&["--user", "root:rootpw", "put", "/b/1", "x"], ""),
        (&["--user", "alice:alicepw", "get", "/app/a"], ""),
        (&["--user", "alice:alicepw", "get", "/app/", "--prefix"], ""),
        (&["--user", "alice:alicepw", "put", "/app/a", "2"], ""),
        (&["--user", "alice:alicepw", "get", "/other"], ""),
        (
            &["--user", "alice:alicepw", "put", "/y", "v", "--prev-kv"],
            "",
        ),
        (
            &["--user", "alice:alicepw", "put", "/y", "w", "--prev-kv"],
            "",
        ),
        (&["--user", "alice:alicepw", "del", "/y"], ""),
        (&["--user", "alice:alicepw", "put", "k1", "v"], ""),
        (
            &["--user", "alice:alicepw", "get", "from", "--from-key"],
            "",
        ),
        (&["--user", "alice:alicepw", "get", "a", "--from-key"], ""),
        (&["--user", "alice:alicepw", "watch", "/b/1"], ""),
        (&["--user", "alice:alicepw", "watch", "/b/", "--prefix"], ""),
        (
            &["--user", "alice:alicepw", "txn"],
            "value(\"/b/1\") = \"x\"\n\nput /app/z v\n\n\n",
        ),
        (
            &["--user", "alice:alicepw", "txn"],
            "\nput /x/1 v\n\nget /b/1\n\n",
        ),
        (
            &["--user", "alice:alicepw", "txn"],
            "value(\"/x/1\") = \"nope\"\n\nput /x/1 v\n\n\n",
        ),
        (&["--user", "alice:alicepw", "user", "get", "alice"], ""),
        (&["--user", "alice:alicepw", "user", "get", "root"], ""),
        (&["--user", "alice:alicepw", "role", "get", "reader"], ""),
        (&["--user", "alice:alicepw", "role", "get", "root"], ""),
        (&["--user", "alice:alicepw", "user", "list"], ""),
        (&["--user", "alice:alicepw", "endpoint", "hashkv"], ""),
        (&["--user", "alice:alicepw", "defrag"], ""),
        (&["defrag"], ""),
        (&["--user", "alice:alicepw", "alarm", "list"], ""),
        (
            &[
                "--user",
                "alice:alicepw",
                "lock",
                "/x/l",
                "--",
                "echo",
                "locked",
            ],
            "",
        ),
        (
            &[
                "--user",
                "alice:alicepw",
                "lock",
                "/b/l",
                "--",
                "echo",
                "locked",
            ],
            "",
        ),
        (
            &[
                "--user",
                "alice:alicepw",
                "member",
                "add",
                "m2",
                "--peer-urls",
                "http://127.0.0.1:1",
            ],
            "",
        ),
        (&["get", "/app/a"], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "revoke-role",
                "alice",
                "reader",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "revoke-role",
                "alice",
                "reader",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "revoke-role",
                "root",
                "root",
            ],
            "",
        ),
        (&["--user", "root:rootpw", "user", "delete", "root"], ""),
        (&["--user", "root:rootpw", "role", "delete", "root"], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "revoke-permission",
                "reader",
                "/app/",
                "--prefix",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "revoke-permission",
                "reader",
                "/app/",
                "--prefix",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "revoke-permission",
                "reader",
                "/x",
                "/z",
            ],
            "",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "role",
                "revoke-permission",
                "reader",
                "k1",
            ],
            "",
        ),
        (&["--user", "root:rootpw", "role", "get", "reader"], ""),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "passwd",
                "alice",
                "--interactive=false",
            ],
            "newpw\n",
        ),
        (
            &[
                "--user",
                "root:rootpw",
                "user",
                "passwd",
                "nobody",
                "--interactive=false",
            ],
            "x\n",
        ),
        (&["--user", "alice:alicepw", "get", "k1"], ""),
        (&["--user", "alice:newpw", "get", "k1"], ""),
        (&["--user", "root:rootpw", "user", "delete", "nobody"], ""),
        (&["--user", "root:rootpw", "role", "delete", "nope"], ""),
        (&["--user", "root:rootpw", "role", "delete", "reader"], ""),
        (&["--user", "root:rootpw", "user", "get", "alice"], ""),
        (&["--user", "root:rootpw", "user", "delete", "alice"], ""),
        (&["--user", "alice:newpw", "auth", "disable"], ""),
        (&["--user", "root:rootpw", "auth", "disable"], ""),
        (&["auth", "disable"], ""),
        (&["--user", "root:rootpw", "get", "/app/a"], ""),
        (&["user", "list"], ""),
        (&["user", "delete", "root"], ""),
        (&["role", "delete", "root"], ""),
        (&["user", "list"], ""),
    ];
    let run = |tool: &Path, endpoint: &str| -> Vec<String> {
        script
            .iter()
            .map(|(args, stdin)| etcdctl(tool, endpoint, args, stdin))
            .collect()
    };
    let Some(got) = same_on_etcd_and_keel("etcdctl auth steps", run) else {
        return;
    };
    // The transcript is not trivially equal: refusals were really printed.
    let all = got.concat();
    assert!(all.contains("Error: etcdserver: permission denied"));
    assert!(all.contains("watch was canceled (rpc error: code = PermissionDenied"));
    assert!(all.contains("auth: permission denied"));
    assert!(all.contains("Authentication Enabled"));
}

/// Runs `keel bench --json` with `args`; (success, stdout, stderr).
fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("bench")
        .arg("--json")
        .args(args)
        .output()
        .expect("run keel bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_user_flag_authenticates() {
    let c = Cluster::start_with(1, FAST);
    let ep = c.members[0].endpoint();
    set_up_users(&channel(&ep).await).await;
    let base = ["--endpoints", &ep];
    let put = [
        "put",
        "--total",
        "30",
        "--key-space-size",
        "30",
        "--sequential-keys",
    ];
    // Without a user every put is refused ("user name is empty").
    let (_, out, _) = bench(&[&base[..], &put[..]].concat());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    assert_eq!(v["errors"], 30, "anonymous puts must fail: {out}");
    // As root they all succeed, and the keys are there.
    let user = format!("root:{ROOT_PW}");
    let with_user = [&base[..], &["--user", &user], &put[..]].concat();
    let (ok, out, err) = bench(&with_user);
    assert!(ok, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let root = c.client().with_user("root", ROOT_PW);
    let all = root
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.count, 30);
    // A wrong password stops the run before it starts.
    let (ok, _, err) = bench(&[&base[..], &["--user", "root:wrong"], &put[..]].concat());
    assert!(!ok && err.contains("authentication failed"), "{err}");
}

//! Scenario tests of the auth store over an in-memory MVCC store: etcd 3.4's
//! rules for enable, users, roles and permissions (with its errors), the
//! admin check of every change, the auth revision, tokens on change, the
//! check of reads and writes for users with and without permissions, and
//! the records surviving a reopen.

use std::sync::Arc;

use keel_proto::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use keel_proto::etcdserverpb::{
    compare, request_op, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, Compare, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

use super::*;
use crate::mvcc::MemoryBackend;

struct Fixture {
    backend: Arc<MemoryBackend>,
    store: Store,
    auth: Arc<AuthStore>,
    index: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone()).unwrap();
        let auth = AuthStore::open(&store, Duration::from_secs(60)).unwrap();
        Fixture {
            backend,
            store,
            auth,
            index: 1,
        }
    }

    /// Applies `req` as `caller` the way the applier does.
    fn apply(&mut self, caller: &Caller, req: Request) -> Result<()> {
        self.index += 1;
        let mut txn = self.store.write();
        let staged = self.auth.apply(&mut txn, caller, &req)?;
        txn.end(self.index)?;
        self.auth.commit(staged);
        Ok(())
    }

    fn as_root(&mut self, req: Request) -> Result<()> {
        let root = self.caller("root");
        self.apply(&root, req)
    }

    fn caller(&self, user: &str) -> Caller {
        Caller {
            user: user.into(),
            revision: self.auth.revision(),
        }
    }
}

fn user_add(name: &str) -> Request {
    Request::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: "$2b$04$notarealhashnotarealhashnotarealhashnotareal".into(),
        ..Default::default()
    })
}

fn grant_role(user: &str, role: &str) -> Request {
    Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn role_add(name: &str) -> Request {
    Request::AuthRoleAdd(AuthRoleAddRequest { name: name.into() })
}

fn grant_perm(role: &str, t: PermType, key: &str, end: &str) -> Request {
    Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.into(),
        }),
    })
}

fn enable() -> Request {
    Request::AuthEnable(AuthEnableRequest {})
}

/// root (with the root role), alice with READ on prefix /app/, auth enabled.
fn enabled_fixture() -> Fixture {
    let mut f = Fixture::new();
    let anyone = Caller::system();
    f.apply(&anyone, user_add("root")).unwrap();
    f.apply(&anyone, grant_role("root", "root")).unwrap();
    f.apply(&anyone, user_add("alice")).unwrap();
    f.apply(&anyone, role_add("reader")).unwrap();
    f.apply(
        &anyone,
        grant_perm("reader", PermType::Read, "/app/", "/app0"),
    )
    .unwrap();
    f.apply(&anyone, grant_role("alice", "reader")).unwrap();
    f.apply(&anyone, enable()).unwrap();
    f
}

#[test]
fn enable_needs_root_user_with_root_role() {
    let mut f = Fixture::new();
    let anon = f.caller("");
    assert!(matches!(
        f.apply(&anon, enable()),
        Err(Error::RootUserNotExist)
    ));
    f.apply(&anon, user_add("root")).unwrap();
    assert!(matches!(
        f.apply(&anon, enable()),
        Err(Error::RootRoleNotExist)
    ));
    // etcd 3.4: the root role need not exist to be granted.
    f.apply(&anon, grant_role("root", "root")).unwrap();
    f.apply(&anon, enable()).unwrap();
    assert!(f.auth.is_enabled());
    // Enabled: changes need a user with the root role.
    let anon = f.caller("");
    assert!(matches!(f.apply(&anon, enable()), Err(Error::UserEmpty)));
    assert!(matches!(
        f.apply(&f.caller("ghost"), role_add("x")),
        Err(Error::UserNotFound)
    ));
    f.as_root(enable()).unwrap();
}

#[test]
fn user_and_role_errors_are_etcds() {
    let mut f = enabled_fixture();
    assert!(matches!(f.as_root(user_add("")), Err(Error::UserEmpty)));
    assert!(matches!(
        f.as_root(user_add("alice")),
        Err(Error::UserExists)
    ));
    assert!(matches!(f.as_root(role_add("")), Err(Error::RoleEmpty)));
    assert!(matches!(
        f.as_root(role_add("reader")),
        Err(Error::RoleExists)
    ));
    assert!(matches!(
        f.as_root(grant_role("nobody", "reader")),
        Err(Error::UserNotFound)
    ));
    assert!(matches!(
        f.as_root(grant_role("alice", "nope")),
        Err(Error::RoleNotFound)
    ));
    assert!(matches!(
        f.as_root(Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
            name: "alice".into(),
            role: "nope".into()
        })),
        Err(Error::RoleNotGranted)
    ));
    assert!(matches!(
        f.as_root(Request::AuthRoleRevokePermission(
            AuthRoleRevokePermissionRequest {
                role: "reader".into(),
                key: b"/nope".to_vec(),
                range_end: vec![],
            }
        )),
        Err(Error::PermissionNotGranted)
    ));
    // Invalid auth management while enabled.
    for req in [
        Request::AuthUserDelete(AuthUserDeleteRequest {
            name: "root".into(),
        }),
        Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
            name: "root".into(),
            role: "root".into(),
        }),
        Request::AuthRoleDelete(AuthRoleDeleteRequest {
            role: "root".into(),
        }),
    ] {
        assert!(matches!(f.as_root(req), Err(Error::InvalidAuthMgmt)));
    }
    // A user without the root role changes nothing.
    let alice = f.caller("alice");
    assert!(matches!(
        f.apply(&alice, role_add("mine")),
        Err(Error::PermissionDenied)
    ));
}

#[test]
fn reads_and_writes_follow_the_roles() {
    let mut f = enabled_fixture();
    let alice = f.caller("alice");
    let a = &f.auth;
    assert!(a.check(&alice, Access::read(b"/app/x", b"")).is_ok());
    assert!(a.check(&alice, Access::read(b"/app/", b"/app0")).is_ok());
    assert!(matches!(
        a.check(&alice, Access::write(b"/app/x", b"")),
        Err(Error::PermissionDenied)
    ));
    assert!(matches!(
        a.check(&alice, Access::read(b"/other", b"")),
        Err(Error::PermissionDenied)
    ));
    assert!(matches!(
        a.check(&f.caller(""), Access::read(b"/app/x", b"")),
        Err(Error::UserEmpty)
    ));
    assert!(a
        .check(&f.caller("root"), Access::write(b"/z", b"\0"))
        .is_ok());
    assert!(a.check(&Caller::system(), Access::Admin).is_ok());
    // A txn needs every compare and every op of both branches.
    let t = TxnRequest {
        compare: vec![Compare {
            key: b"/app/a".to_vec(),
            result: compare::CompareResult::Equal as i32,
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: b"/app/a".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"/app/b".to_vec(),
                ..Default::default()
            })),
        }],
    };
    assert!(matches!(
        a.check_all(&alice, &txn_accesses(&t)),
        Err(Error::PermissionDenied)
    ));
    // A new permission counts at once; an old caller is refused as old.
    f.as_root(grant_perm("reader", PermType::Readwrite, "/app/", "/app0"))
        .unwrap();
    assert!(matches!(
        f.auth.check(&alice, Access::write(b"/app/b", b"")),
        Err(Error::AuthOldRevision)
    ));
    let alice = f.caller("alice");
    f.auth.check_all(&alice, &txn_accesses(&t)).unwrap();
    // Revoking the role takes it away.
    f.as_root(Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
        name: "alice".into(),
        role: "reader".into(),
    }))
    .unwrap();
    assert!(matches!(
        f.auth
            .check(&f.caller("alice"), Access::read(b"/app/x", b"")),
        Err(Error::PermissionDenied)
    ));
}

#[test]
fn revision_counts_changes_and_state_survives_reopen() {
    let mut f = enabled_fixture();
    let before = f.auth.revision();
    // Granting a role already granted changes nothing.
    f.as_root(grant_role("alice", "reader")).unwrap();
    assert_eq!(f.auth.revision(), before);
    f.as_root(grant_perm("reader", PermType::Write, "k1", ""))
        .unwrap();
    assert_eq!(f.auth.revision(), before + 1);
    // Permissions are kept sorted by key, a re-grant replaces the type.
    f.as_root(grant_perm("reader", PermType::Readwrite, "k1", ""))
        .unwrap();
    let perms = f.auth.role_perms("reader").unwrap();
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0].key, b"/app/");
    assert_eq!(perms[1].perm_type, PermType::Readwrite as i32);
    let reopened = AuthStore::open(
        &Store::open(f.backend.clone()).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(reopened.is_enabled());
    assert_eq!(reopened.revision(), f.auth.revision());
    assert_eq!(reopened.user_names(), vec!["alice", "root"]);
    assert_eq!(reopened.role_perms("reader").unwrap(), perms);
    assert_eq!(reopened.user_roles("root").unwrap(), vec!["root"]);
    // Deleting a role takes it from its users.
    f.as_root(Request::AuthRoleDelete(AuthRoleDeleteRequest {
        role: "reader".into(),
    }))
    .unwrap();
    assert!(f.auth.user_roles("alice").unwrap().is_empty());
    // Disabling: then root may be deleted.
    f.as_root(Request::AuthDisable(AuthDisableRequest {}))
        .unwrap();
    f.apply(
        &Caller::system(),
        Request::AuthUserDelete(AuthUserDeleteRequest {
            name: "root".into(),
        }),
    )
    .unwrap();
    assert!(!f.auth.is_enabled());
}

#[test]
fn tokens_are_assigned_in_apply_and_dropped_on_changes() {
    let mut f = enabled_fixture();
    let rev = f.auth.revision();
    let t = f
        .auth
        .authenticate(
            42,
            &InternalAuthenticate {
                name: "alice".into(),
                simple_token: "abcdefghijklmnop".into(),
                auth_revision: rev,
            },
        )
        .unwrap();
    assert_eq!(t, "abcdefghijklmnop.42");
    let creds = Credentials {
        token: Some(t.clone()),
        common_name: None,
    };
    assert_eq!(f.auth.caller(&creds).unwrap().user(), "alice");
    assert!(matches!(
        f.auth.caller(&Credentials {
            token: Some("forged.1".into()),
            common_name: None
        }),
        Err(Error::InvalidAuthToken)
    ));
    // An Authenticate checked before a change is refused as old.
    f.as_root(role_add("other")).unwrap();
    assert!(matches!(
        f.auth.authenticate(
            43,
            &InternalAuthenticate {
                name: "alice".into(),
                simple_token: "x".into(),
                auth_revision: rev,
            }
        ),
        Err(Error::AuthOldRevision)
    ));
    // A password change drops the user's tokens.
    f.as_root(Request::AuthUserChangePassword(
        AuthUserChangePasswordRequest {
            name: "alice".into(),
            hashed_password: "$2b$04$other".into(),
            ..Default::default()
        },
    ))
    .unwrap();
    assert!(matches!(
        f.auth.caller(&creds),
        Err(Error::InvalidAuthToken)
    ));
    // A CN stands for the user when there is no token.
    let cn = Credentials {
        token: None,
        common_name: Some("alice".into()),
    };
    assert_eq!(f.auth.caller(&cn).unwrap().user(), "alice");
}

#[test]
fn no_password_users_and_stored_hashes() {
    let mut f = enabled_fixture();
    f.as_root(Request::AuthUserAdd(AuthUserAddRequest {
        name: "bob".into(),
        options: Some(UserAddOptions { no_password: true }),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(f.auth.password_hash("bob"), Some(None));
    assert_eq!(f.auth.password_hash("nobody"), None);
    assert!(f
        .auth
        .password_hash("alice")
        .flatten()
        .is_some_and(|h| h.starts_with("$2b$")));
}

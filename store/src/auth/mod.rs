//! Authentication and role-based access: etcd 3.4's auth store (users,
//! roles, key permissions, the enabled flag, simple tokens) and the one
//! permission check every client request passes through.
//!
//! State: replicated, changed only in apply. Each user and role is one
//! record in the MVCC backend's keyspace outside the revision range
//! (`\xfcauth/user/<name>` = `authpb.User` with the bcrypt hash as password,
//! `\xfcauth/role/<name>` = `authpb.Role`), beside `\xfcauth/enabled` and
//! `\xfcauth/revision`, written in the same batch as the consistent index of
//! their entry. So snapshot images carry them, a restart reloads them, and
//! [`AuthStore::reload`] reads them again after a snapshot is installed.
//! Plain passwords never reach the Raft log or the records: the member that
//! takes a UserAdd or UserChangePassword hashes first ([`api`]), and the
//! entry carries only `hashedPassword`.
//!
//! The auth revision starts at 1 and grows by one with every change that
//! changes something (enable, disable, users, roles, permissions).
//!
//! Checks: a request's [`Caller`] (user name and the auth revision it was
//! checked at) is resolved from its [`Credentials`] (the `token` metadata,
//! or, once TLS provides it, the client certificate's Common Name) by
//! [`AuthStore::caller`], and every check is [`AuthStore::check`] with an
//! [`Access`] (read or write on a key range, or admin). With auth disabled
//! every check passes. Writes are checked again in apply against the state
//! at apply time, refused with "revision of auth store is old" when the auth
//! state changed since the caller was checked (etcd's rule), so every member
//! decides the same. Internal requests (lease expiry, automatic compaction,
//! the Lock and Election recipes after their own check) use
//! [`Caller::system`].
//!
//! Left out: JWT tokens (`--auth-token jwt`).

pub mod api;
pub mod perm;
pub mod service;
pub mod token;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keel_proto::authpb::{Permission, Role, User, UserAddOptions};
use keel_proto::etcdserverpb::{request_op, TxnRequest};
use keel_proto::peer::internal_request::Request;
use keel_proto::peer::{InternalAuthenticate, RequestHeader};
use prost::Message as _;

use crate::error::{Error, Result};
use crate::mvcc::{Store, WriteTxn};
use perm::Need;
use token::SimpleTokens;

const RECORD_PREFIX: &[u8] = b"\xfcauth/";
const RECORD_END: &[u8] = b"\xfcauth0";
const USER_PREFIX: &[u8] = b"\xfcauth/user/";
const ROLE_PREFIX: &[u8] = b"\xfcauth/role/";
const ENABLED_KEY: &[u8] = b"\xfcauth/enabled";
const REVISION_KEY: &[u8] = b"\xfcauth/revision";

/// The auth flags of `keel store` (etcd's names and defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct AuthFlags {
    /// Token type: `simple` (etcd's default; JWT is not supported).
    #[arg(long, env = "KEEL_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Seconds a simple token lives without use.
    #[arg(long, env = "KEEL_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost of password hashes (4..=31).
    #[arg(long, env = "KEEL_BCRYPT_COST", default_value_t = api::DEFAULT_BCRYPT_COST)]
    pub bcrypt_cost: u32,
}

/// bcrypt's cost range.
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;

/// The validated auth settings of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub token_ttl: Duration,
    pub bcrypt_cost: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            token_ttl: Duration::from_secs(300),
            bcrypt_cost: api::DEFAULT_BCRYPT_COST,
        }
    }
}

impl AuthFlags {
    pub fn into_settings(self) -> Result<Settings> {
        let kind = self.auth_token.split(',').next().unwrap_or_default();
        if kind != "simple" {
            return Err(Error::Config(format!(
                "--auth-token {:?}: only \"simple\" tokens are supported",
                self.auth_token
            )));
        }
        if !(BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&self.bcrypt_cost) {
            return Err(Error::Config(format!(
                "--bcrypt-cost {} is out of range [{}, {}]",
                self.bcrypt_cost, BCRYPT_MIN_COST, BCRYPT_MAX_COST
            )));
        }
        if self.auth_token_ttl == 0 {
            return Err(Error::Config("--auth-token-ttl must be > 0".into()));
        }
        Ok(Settings {
            token_ttl: Duration::from_secs(self.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost,
        })
    }
}

/// The role that may do everything (etcd's `root`).
pub const ROOT: &str = "root";

/// Who makes a request, as resolved when it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    user: String,
    /// The auth revision at check time; 0 only for [`Caller::system`].
    revision: u64,
}

impl Caller {
    /// keel itself (lease expiry, compactor, recipes after their check):
    /// never refused.
    pub fn system() -> Caller {
        Caller {
            user: String::new(),
            revision: 0,
        }
    }

    /// The caller a proposed entry's header names.
    pub fn from_header(h: &RequestHeader) -> Caller {
        Caller {
            user: h.username.clone(),
            revision: h.auth_revision,
        }
    }

    pub fn is_system(&self) -> bool {
        self.revision == 0
    }

    /// The user name; empty for an anonymous caller or the system.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }
}

/// What a request brings to prove who makes it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The `token` gRPC metadata (a simple token from Authenticate).
    pub token: Option<String>,
    /// The verified client certificate's Common Name ([`crate::tls::common_name`]:
    /// rustls hands a request the client's certificates only once they are
    /// verified against `--trusted-ca-file`); with no token, the CN is the
    /// user, as etcd's `--client-cert-auth`.
    pub common_name: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("common_name", &self.common_name)
            .finish()
    }
}

impl Credentials {
    /// The credentials of a gRPC request.
    pub fn of<T>(req: &tonic::Request<T>) -> Credentials {
        Credentials {
            token: req
                .metadata()
                .get("token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            common_name: crate::tls::common_name(req),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Read {
        key: &'a [u8],
        range_end: &'a [u8],
    },
    Write {
        key: &'a [u8],
        range_end: &'a [u8],
    },
    /// The root role (auth management, admin Maintenance and Cluster calls).
    Admin,
}

impl<'a> Access<'a> {
    pub fn read(key: &'a [u8], range_end: &'a [u8]) -> Access<'a> {
        Access::Read { key, range_end }
    }
    pub fn write(key: &'a [u8], range_end: &'a [u8]) -> Access<'a> {
        Access::Write { key, range_end }
    }
}

/// Every access a txn needs, as etcd checks txns: a read for each compare,
/// and for every op of both branches at every depth, a read for a range, a
/// write for a put or delete (and a read too when it asks for prev_kv).
pub fn txn_accesses(t: &TxnRequest) -> Vec<Access<'_>> {
    let mut out = Vec::new();
    txn_accesses_into(t, &mut out);
    out
}

fn txn_accesses_into<'a>(t: &'a TxnRequest, out: &mut Vec<Access<'a>>) {
    for c in &t.compare {
        out.push(Access::read(&c.key, &c.range_end));
    }
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                out.push(Access::read(&r.key, &r.range_end));
            }
            Some(request_op::Request::RequestPut(p)) => {
                out.push(Access::write(&p.key, &[]));
                if p.prev_kv {
                    out.push(Access::read(&p.key, &[]));
                }
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push(Access::write(&d.key, &d.range_end));
                if d.prev_kv {
                    out.push(Access::read(&d.key, &d.range_end));
                }
            }
            Some(request_op::Request::RequestTxn(inner)) => txn_accesses_into(inner, out),
            None => {}
        }
    }
}

/// The replicated auth state.
#[derive(Clone, Debug)]
struct State {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for State {
    fn default() -> State {
        State {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

fn has_root(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT)
}

impl State {
    fn check(&self, caller: &Caller, access: Access<'_>) -> Result<()> {
        if caller.is_system() || !self.enabled {
            return Ok(());
        }
        if caller.user.is_empty() {
            return Err(Error::UserEmpty);
        }
        if caller.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        let Some(user) = self.users.get(&caller.user) else {
            return Err(match access {
                Access::Admin => Error::UserNotFound,
                _ => Error::PermissionDenied,
            });
        };
        if has_root(user) {
            return Ok(());
        }
        let (need, key, range_end) = match access {
            Access::Admin => return Err(Error::PermissionDenied),
            Access::Read { key, range_end } => (Need::Read, key, range_end),
            Access::Write { key, range_end } => (Need::Write, key, range_end),
        };
        let perms = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter());
        if perm::allowed(perms, need, key, range_end) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }
}

/// What one applied auth change does after its batch commits.
pub struct Staged {
    state: State,
    after: After,
}

enum After {
    Nothing,
    InvalidateUser(String),
    ClearTokens,
}

/// An applied auth request's answer: the token of an Authenticate.
#[derive(Clone, Default)]
pub struct Applied {
    pub token: Option<String>,
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applied")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The auth store of one member. `Send + Sync`: share it behind an `Arc`.
pub struct AuthStore {
    state: RwLock<State>,
    tokens: SimpleTokens,
}

impl Default for AuthStore {
    /// Auth disabled, no users or roles, the default token TTL.
    fn default() -> AuthStore {
        AuthStore {
            state: RwLock::new(State::default()),
            tokens: SimpleTokens::new(Duration::from_secs(300)),
        }
    }
}

impl AuthStore {
    /// The auth state recorded in `store`, with tokens that live `token_ttl`.
    pub fn open(store: &Store, token_ttl: Duration) -> Result<Arc<AuthStore>> {
        let state = load(store)?;
        if state.enabled {
            tracing::info!(
                users = state.users.len(),
                roles = state.roles.len(),
                revision = state.revision,
                "authentication is enabled"
            );
        }
        Ok(Arc::new(AuthStore {
            state: RwLock::new(state),
            tokens: SimpleTokens::new(token_ttl),
        }))
    }

    /// Reads the state recorded in `store` again (after a snapshot replaced
    /// it). Tokens are kept: the users they name are checked at each use.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let state = load(store)?;
        *self.write() = state;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_enabled(&self) -> bool {
        self.read().enabled
    }

    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    /// Who `creds` name: the user of a known token (an unknown or expired
    /// token is "invalid auth token", even with auth disabled, as etcd),
    /// else the certificate's CN, else nobody; with the current auth revision.
    pub fn caller(&self, creds: &Credentials) -> Result<Caller> {
        let revision = self.revision();
        if let Some(token) = &creds.token {
            return match self.tokens.user(token) {
                Some(user) => Ok(Caller { user, revision }),
                None => Err(Error::InvalidAuthToken),
            };
        }
        let user = creds.common_name.clone().unwrap_or_default();
        Ok(Caller { user, revision })
    }

    /// The caller of a gRPC request (see [`AuthStore::caller`]).
    pub fn caller_of<T>(&self, req: &tonic::Request<T>) -> Result<Caller> {
        self.caller(&Credentials::of(req))
    }

    /// THE permission check: whether `caller` may do `access` now.
    pub fn check(&self, caller: &Caller, access: Access<'_>) -> Result<()> {
        self.read().check(caller, access)
    }

    /// [`AuthStore::check`] for each of `accesses`, under one view of the state.
    pub fn check_all(&self, caller: &Caller, accesses: &[Access<'_>]) -> Result<()> {
        let s = self.read();
        accesses.iter().try_for_each(|a| s.check(caller, *a))
    }

    /// A user's roles.
    pub fn user_roles(&self, name: &str) -> Result<Vec<String>> {
        let s = self.read();
        let u = s.users.get(name).ok_or(Error::UserNotFound)?;
        Ok(u.roles.clone())
    }

    /// A role's permissions.
    pub fn role_perms(&self, name: &str) -> Result<Vec<Permission>> {
        let s = self.read();
        let r = s.roles.get(name).ok_or(Error::RoleNotFound)?;
        Ok(r.key_permission.clone())
    }

    pub fn user_names(&self) -> Vec<String> {
        self.read().users.keys().cloned().collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.read().roles.keys().cloned().collect()
    }

    /// Whether `user` exists and has `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.read()
            .users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// A user's password hash: `None` for an unknown user, `Some(None)` for
    /// a user without password (certificate only).
    pub fn password_hash(&self, name: &str) -> Option<Option<String>> {
        let s = self.read();
        let u = s.users.get(name)?;
        let no_password = u.options.as_ref().is_some_and(|o| o.no_password);
        if no_password || u.password.is_empty() {
            return Some(None);
        }
        Some(Some(String::from_utf8_lossy(&u.password).into_owned()))
    }

    /// Applies an auth management request made by `caller` in `txn` (its
    /// records), returning the state to publish with [`AuthStore::commit`]
    /// once the batch is written. Every change needs the root role (with
    /// auth enabled), as etcd's `needAdminPermission`.
    pub fn apply(&self, txn: &mut WriteTxn<'_>, caller: &Caller, req: &Request) -> Result<Staged> {
        let cur = self.read().clone();
        cur.check(caller, Access::Admin)?;
        let mut next = cur.clone();
        let mut after = After::Nothing;
        let mut changed = true;
        match req {
            Request::AuthEnable(_) => {
                if cur.enabled {
                    changed = false;
                } else {
                    let root = cur.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
                    if !has_root(root) {
                        return Err(Error::RootRoleNotExist);
                    }
                    next.enabled = true;
                    txn.put_record(ENABLED_KEY.to_vec(), vec![1]);
                }
            }
            Request::AuthDisable(_) => {
                if cur.enabled {
                    next.enabled = false;
                    txn.delete_record(ENABLED_KEY.to_vec());
                    after = After::ClearTokens;
                } else {
                    changed = false;
                }
            }
            Request::AuthUserAdd(r) => {
                if r.name.is_empty() {
                    return Err(Error::UserEmpty);
                }
                if cur.users.contains_key(&r.name) {
                    return Err(Error::UserExists);
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                let user = User {
                    name: r.name.as_bytes().to_vec(),
                    password: if no_password {
                        Vec::new()
                    } else {
                        r.hashed_password.as_bytes().to_vec()
                    },
                    roles: Vec::new(),
                    options: Some(UserAddOptions { no_password }),
                };
                put_user(txn, &user);
                next.users.insert(r.name.clone(), user);
            }
            Request::AuthUserDelete(r) => {
                if cur.enabled && r.name == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                if next.users.remove(&r.name).is_none() {
                    return Err(Error::UserNotFound);
                }
                txn.delete_record(record_key(USER_PREFIX, &r.name));
                after = After::InvalidateUser(r.name.clone());
            }
            Request::AuthUserChangePassword(r) => {
                let u = next.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
                u.password = r.hashed_password.as_bytes().to_vec();
                u.options = Some(UserAddOptions { no_password: false });
                put_user(txn, u);
                after = After::InvalidateUser(r.name.clone());
            }
            Request::AuthUserGrantRole(r) => {
                let u = next.users.get_mut(&r.user).ok_or(Error::UserNotFound)?;
                // etcd 3.4: the root role need not exist to be granted.
                if r.role != ROOT && !cur.roles.contains_key(&r.role) {
                    return Err(Error::RoleNotFound);
                }
                match u.roles.binary_search(&r.role) {
                    Ok(_) => changed = false,
                    Err(at) => {
                        u.roles.insert(at, r.role.clone());
                        put_user(txn, u);
                    }
                }
            }
            Request::AuthUserRevokeRole(r) => {
                if cur.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                let u = next.users.get_mut(&r.name).ok_or(Error::UserNotFound)?;
                let at = u
                    .roles
                    .iter()
                    .position(|x| *x == r.role)
                    .ok_or(Error::RoleNotGranted)?;
                u.roles.remove(at);
                put_user(txn, u);
            }
            Request::AuthRoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(Error::RoleEmpty);
                }
                if cur.roles.contains_key(&r.name) {
                    return Err(Error::RoleExists);
                }
                let role = Role {
                    name: r.name.as_bytes().to_vec(),
                    key_permission: Vec::new(),
                };
                put_role(txn, &role);
                next.roles.insert(r.name.clone(), role);
            }
            Request::AuthRoleDelete(r) => {
                if cur.enabled && r.role == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                if next.roles.remove(&r.role).is_none() {
                    return Err(Error::RoleNotFound);
                }
                txn.delete_record(record_key(ROLE_PREFIX, &r.role));
                // Users lose the deleted role (etcd 3.4 does the same).
                for u in next.users.values_mut() {
                    if let Some(at) = u.roles.iter().position(|x| *x == r.role) {
                        u.roles.remove(at);
                        put_user(txn, u);
                    }
                }
            }
            Request::AuthRoleGrantPermission(r) => {
                let role = next.roles.get_mut(&r.name).ok_or(Error::RoleNotFound)?;
                let p = r.perm.clone().unwrap_or_default();
                match role
                    .key_permission
                    .iter_mut()
                    .find(|x| x.key == p.key && x.range_end == p.range_end)
                {
                    Some(x) => x.perm_type = p.perm_type,
                    None => {
                        let at = role.key_permission.partition_point(|x| x.key <= p.key);
                        role.key_permission.insert(at, p);
                    }
                }
                put_role(txn, role);
            }
            Request::AuthRoleRevokePermission(r) => {
                let role = next.roles.get_mut(&r.role).ok_or(Error::RoleNotFound)?;
                let at = role
                    .key_permission
                    .iter()
                    .position(|x| x.key == r.key && x.range_end == r.range_end)
                    .ok_or(Error::PermissionNotGranted)?;
                role.key_permission.remove(at);
                put_role(txn, role);
            }
            _ => {
                return Err(Error::InvalidArgument(
                    "etcdserver: not an auth request".into(),
                ))
            }
        }
        if changed {
            next.revision += 1;
            txn.put_record(REVISION_KEY.to_vec(), next.revision.to_be_bytes().to_vec());
        }
        Ok(Staged { state: next, after })
    }

    /// Publishes an applied change (after its batch was written).
    pub fn commit(&self, staged: Staged) {
        let revision = staged.state.revision;
        *self.write() = staged.state;
        match staged.after {
            After::Nothing => {}
            After::InvalidateUser(u) => self.tokens.invalidate_user(&u),
            After::ClearTokens => self.tokens.clear(),
        }
        tracing::debug!(auth_revision = revision, "auth state changed");
    }

    /// Applies a checked Authenticate at Raft index `index`: records and
    /// returns the token on every member.
    pub fn authenticate(&self, index: u64, a: &InternalAuthenticate) -> Result<String> {
        {
            let s = self.read();
            if !s.enabled {
                return Err(Error::AuthNotEnabled);
            }
            if a.auth_revision < s.revision {
                return Err(Error::AuthOldRevision);
            }
            if !s.users.contains_key(&a.name) {
                return Err(Error::AuthFailed);
            }
        }
        let token = format!("{}.{index}", a.simple_token);
        self.tokens.assign(token.clone(), a.name.clone());
        Ok(token)
    }

    /// How many tokens this member knows (for tests and metrics).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }
}

fn record_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn put_user(txn: &mut WriteTxn<'_>, u: &User) {
    let name = String::from_utf8_lossy(&u.name).into_owned();
    txn.put_record(record_key(USER_PREFIX, &name), u.encode_to_vec());
}

fn put_role(txn: &mut WriteTxn<'_>, r: &Role) {
    let name = String::from_utf8_lossy(&r.name).into_owned();
    txn.put_record(record_key(ROLE_PREFIX, &name), r.encode_to_vec());
}

fn load(store: &Store) -> Result<State> {
    let mut s = State::default();
    for item in store.backend().scan(RECORD_PREFIX, RECORD_END) {
        let (k, v) = item?;
        if k == ENABLED_KEY {
            s.enabled = v.first() == Some(&1);
        } else if k == REVISION_KEY {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt("auth revision record is damaged".into()))?;
            s.revision = u64::from_be_bytes(b);
        } else if let Some(name) = k.strip_prefix(USER_PREFIX) {
            let u = User::decode(v.as_slice())?;
            s.users
                .insert(String::from_utf8_lossy(name).into_owned(), u);
        } else if let Some(name) = k.strip_prefix(ROLE_PREFIX) {
            let r = Role::decode(v.as_slice())?;
            s.roles
                .insert(String::from_utf8_lossy(name).into_owned(), r);
        }
    }
    Ok(s)
}

/// An admin check's error as etcd 3.4's Maintenance service sends it: its
/// auth package's error, untranslated (code Unknown, "auth: ...").
pub fn untranslated(e: Error) -> Error {
    let msg = match &e {
        Error::UserEmpty => "auth: user name is empty",
        Error::PermissionDenied => "auth: permission denied",
        Error::UserNotFound => "auth: user name not found",
        Error::InvalidAuthToken => "auth: invalid auth token",
        Error::AuthOldRevision => "auth: revision in header is old",
        _ => return e,
    };
    Error::AuthUntranslated(msg.into())
}

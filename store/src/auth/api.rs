//! The Auth API's logic (etcd's `Auth` service), between the thin gRPC
//! adapter and the Raft node.
//!
//! - Changes (enable, disable, users, roles, permissions) are proposed
//!   through Raft with the caller in the entry's header; apply checks the
//!   root role and etcd's rules ([`super::AuthStore::apply`]). The caller's
//!   root role is also checked here first, so nobody else can make this
//!   member hash passwords.
//! - Passwords are hashed here, with bcrypt at `--bcrypt-cost` (etcd's
//!   default 10), before the proposal: the entry carries the hash only.
//! - Reads (UserGet, UserList, RoleGet, RoleList) wait for a ReadIndex and
//!   are served from local state; a user may get itself and its own roles
//!   without the root role, as in etcd 3.4.
//! - Authenticate compares the password with the stored hash here, then
//!   proposes the token's random part; apply assigns the token on every
//!   member. A failure costs the caller: it is answered after
//!   [`FAILURE_DELAY`], and an unknown user is compared with a dummy hash so
//!   that it takes as long as a wrong password.
//! - bcrypt runs on the blocking pool, at most [`HASHING_SLOTS`] at a time,
//!   so a flood of attempts slows other Authenticates, never the server.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keel_proto::authpb::Permission;
use keel_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use keel_proto::peer::internal_request::Request;
use keel_proto::peer::InternalAuthenticate;
use tokio::sync::Semaphore;

use super::{token, Access, AuthStore, Caller};
use crate::apply::Response;
use crate::error::{Error, Result};
use crate::kv::Kv;

/// bcrypt computations at once on this member.
pub const HASHING_SLOTS: usize = 2;
/// How long a failed Authenticate waits before it is answered.
pub const FAILURE_DELAY: Duration = Duration::from_millis(500);
/// etcd's default bcrypt cost.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// The Auth API of one member.
#[derive(Clone)]
pub struct Auth {
    kv: Kv,
    store: Arc<AuthStore>,
    hashing: Arc<Semaphore>,
    cost: u32,
}

impl Auth {
    pub fn new(kv: Kv, store: Arc<AuthStore>, bcrypt_cost: u32) -> Auth {
        Auth {
            kv,
            store,
            hashing: Arc::new(Semaphore::new(HASHING_SLOTS)),
            cost: bcrypt_cost,
        }
    }

    pub fn store(&self) -> &Arc<AuthStore> {
        &self.store
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.kv.header(0))
    }

    /// Proposes an auth change as `caller`.
    async fn change(&self, caller: &Caller, req: Request) -> Result<()> {
        match self.kv.propose_as(caller, req).await? {
            Response::Auth(_) => Ok(()),
            other => Err(Error::InvalidArgument(format!(
                "etcdserver: unexpected response {other:?}"
            ))),
        }
    }

    /// Runs bcrypt `work` on the blocking pool, in one of the slots.
    async fn bcrypt<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let _slot = self.hashing.acquire().await.map_err(|_| Error::Stopped)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Error::Stopped)
    }

    async fn hash(&self, password: String) -> Result<String> {
        let cost = self.cost;
        self.bcrypt(move || bcrypt::hash(password, cost))
            .await?
            .map_err(|e| Error::InvalidArgument(format!("etcdserver: cannot hash password: {e}")))
    }

    pub async fn enable(
        &self,
        caller: &Caller,
        r: AuthEnableRequest,
    ) -> Result<AuthEnableResponse> {
        self.change(caller, Request::AuthEnable(r)).await?;
        tracing::info!(user = caller.user(), "authentication enabled");
        Ok(AuthEnableResponse {
            header: self.header(),
        })
    }

    pub async fn disable(
        &self,
        caller: &Caller,
        r: AuthDisableRequest,
    ) -> Result<AuthDisableResponse> {
        self.change(caller, Request::AuthDisable(r)).await?;
        tracing::info!(user = caller.user(), "authentication disabled");
        Ok(AuthDisableResponse {
            header: self.header(),
        })
    }

    /// Checks the password and, when it matches, has a token assigned.
    pub async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        if !self.store.is_enabled() {
            return Err(Error::AuthNotEnabled);
        }
        // A password change between the check and the apply refuses the
        // token with "revision of auth store is old": check again.
        for _ in 0..3 {
            let revision = self.store.revision();
            if !self.password_matches(&r.name, &r.password).await? {
                tracing::info!(user = %r.name, "authentication failed");
                tokio::time::sleep(FAILURE_DELAY).await;
                return Err(Error::AuthFailed);
            }
            let req = Request::Authenticate(InternalAuthenticate {
                name: r.name.clone(),
                simple_token: token::random_part(),
                auth_revision: revision,
            });
            match self.kv.propose_as(&Caller::system(), req).await {
                Ok(Response::Auth(applied)) => {
                    return Ok(AuthenticateResponse {
                        header: self.header(),
                        token: applied.token.unwrap_or_default(),
                    })
                }
                Ok(other) => {
                    return Err(Error::InvalidArgument(format!(
                        "etcdserver: unexpected response {other:?}"
                    )))
                }
                Err(Error::AuthOldRevision) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::AuthOldRevision)
    }

    /// Whether `password` is `name`'s. Unknown users and users without a
    /// password cost the same bcrypt work as a wrong password.
    async fn password_matches(&self, name: &str, password: &str) -> Result<bool> {
        let stored = self.store.password_hash(name).flatten();
        let real = stored.is_some();
        let password = password.to_string();
        let ok = self
            .bcrypt(move || {
                let hash = stored.as_deref().unwrap_or_else(|| dummy_hash());
                bcrypt::verify(password, hash).unwrap_or(false)
            })
            .await?;
        Ok(ok && real)
    }

    pub async fn user_add(
        &self,
        caller: &Caller,
        mut r: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse> {
        self.store.check(caller, Access::Admin)?;
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let password = std::mem::take(&mut r.password);
        r.hashed_password = if no_password {
            String::new()
        } else {
            self.hash(password).await?
        };
        let name = r.name.clone();
        self.change(caller, Request::AuthUserAdd(r)).await?;
        tracing::info!(user = %name, no_password, "added a user");
        Ok(AuthUserAddResponse {
            header: self.header(),
        })
    }

    pub async fn user_change_password(
        &self,
        caller: &Caller,
        mut r: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse> {
        self.store.check(caller, Access::Admin)?;
        let password = std::mem::take(&mut r.password);
        r.hashed_password = self.hash(password).await?;
        let name = r.name.clone();
        self.change(caller, Request::AuthUserChangePassword(r))
            .await?;
        tracing::info!(user = %name, "changed a user's password");
        Ok(AuthUserChangePasswordResponse {
            header: self.header(),
        })
    }

    pub async fn user_delete(
        &self,
        caller: &Caller,
        r: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse> {
        self.change(caller, Request::AuthUserDelete(r)).await?;
        Ok(AuthUserDeleteResponse {
            header: self.header(),
        })
    }

    pub async fn user_grant_role(
        &self,
        caller: &Caller,
        r: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse> {
        self.change(caller, Request::AuthUserGrantRole(r)).await?;
        Ok(AuthUserGrantRoleResponse {
            header: self.header(),
        })
    }

    pub async fn user_revoke_role(
        &self,
        caller: &Caller,
        r: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse> {
        self.change(caller, Request::AuthUserRevokeRole(r)).await?;
        Ok(AuthUserRevokeRoleResponse {
            header: self.header(),
        })
    }

    pub async fn role_add(
        &self,
        caller: &Caller,
        r: AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse> {
        self.change(caller, Request::AuthRoleAdd(r)).await?;
        Ok(AuthRoleAddResponse {
            header: self.header(),
        })
    }

    pub async fn role_delete(
        &self,
        caller: &Caller,
        r: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse> {
        self.change(caller, Request::AuthRoleDelete(r)).await?;
        Ok(AuthRoleDeleteResponse {
            header: self.header(),
        })
    }

    pub async fn role_grant_permission(
        &self,
        caller: &Caller,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        self.change(caller, Request::AuthRoleGrantPermission(r))
            .await?;
        Ok(AuthRoleGrantPermissionResponse {
            header: self.header(),
        })
    }

    pub async fn role_revoke_permission(
        &self,
        caller: &Caller,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        self.change(caller, Request::AuthRoleRevokePermission(r))
            .await?;
        Ok(AuthRoleRevokePermissionResponse {
            header: self.header(),
        })
    }

    /// Waits until this member has applied everything committed before the
    /// call (a linearizable read of the auth state).
    async fn linearize(&self) -> Result<()> {
        self.kv.node().read_index().await.map(|_| ())
    }

    pub async fn user_get(
        &self,
        caller: &Caller,
        r: AuthUserGetRequest,
    ) -> Result<AuthUserGetResponse> {
        self.linearize().await?;
        if let Err(e) = self.store.check(caller, Access::Admin) {
            if caller.user() != r.name {
                return Err(e);
            }
        }
        Ok(AuthUserGetResponse {
            header: self.header(),
            roles: self.store.user_roles(&r.name)?,
        })
    }

    pub async fn user_list(&self, caller: &Caller) -> Result<AuthUserListResponse> {
        self.linearize().await?;
        self.store.check(caller, Access::Admin)?;
        Ok(AuthUserListResponse {
            header: self.header(),
            users: self.store.user_names(),
        })
    }

    pub async fn role_get(
        &self,
        caller: &Caller,
        r: AuthRoleGetRequest,
    ) -> Result<AuthRoleGetResponse> {
        self.linearize().await?;
        if let Err(e) = self.store.check(caller, Access::Admin) {
            if !self.store.has_role(caller.user(), &r.role) {
                return Err(e);
            }
        }
        let perm: Vec<Permission> = self.store.role_perms(&r.role)?;
        Ok(AuthRoleGetResponse {
            header: self.header(),
            perm,
        })
    }

    pub async fn role_list(&self, caller: &Caller) -> Result<AuthRoleListResponse> {
        self.linearize().await?;
        self.store.check(caller, Access::Admin)?;
        Ok(AuthRoleListResponse {
            header: self.header(),
            roles: self.store.role_names(),
        })
    }
}

/// A bcrypt hash of no one's password, compared against for unknown users.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(token::random_part(), DEFAULT_BCRYPT_COST).unwrap_or_default())
}

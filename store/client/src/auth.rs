//! User and password authentication, as etcd's clientv3 does it: the client
//! calls `Auth.Authenticate` before its first call, sends the token as the
//! `token` gRPC metadata on every call after, and authenticates again (once
//! per call) when a member answers "etcdserver: invalid auth token" (the
//! token expired, or the member restarted) or "etcdserver: revision of auth
//! store is old". A server with auth disabled answers Authenticate with
//! "authentication is not enabled": the client then calls without a token.
//!
//! Set with [`Client::with_user`]; the token is shared by every clone of the
//! client (and by [`Client::pinned`] ones). The password is kept in memory
//! only and never printed (`Debug` hides it).

use std::sync::{Arc, RwLock};

use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::AuthenticateRequest;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::{Client, Error, Result};

/// A channel that adds the client's token to every request.
pub type AuthChannel = InterceptedService<Channel, TokenInterceptor>;

/// Adds the `token` metadata, when the client has a token.
#[derive(Clone, Default)]
pub struct TokenInterceptor {
    token: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

impl Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, Status> {
        let token = self.token.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(t) = token {
            req.metadata_mut().insert("token", t);
        }
        Ok(req)
    }
}

/// A user name and password.
#[derive(Clone)]
pub struct UserPassword {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for UserPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPassword")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A client's credentials and current token (shared by its clones).
#[derive(Clone, Default, Debug)]
pub(crate) struct AuthState {
    user: Option<UserPassword>,
    interceptor: TokenInterceptor,
    /// Set once the server said auth is not enabled (no token then).
    disabled: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for TokenInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenInterceptor")
    }
}

impl AuthState {
    fn has_token(&self) -> bool {
        self.interceptor
            .token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn set_token(&self, token: Option<MetadataValue<Ascii>>) {
        *self
            .interceptor
            .token
            .write()
            .unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// Wraps `ch` so that calls carry the token.
    pub(crate) fn wrap(&self, ch: Channel) -> AuthChannel {
        InterceptedService::new(ch, self.interceptor.clone())
    }

    /// Authenticates on `ch` unless there is a token already (or no user).
    pub(crate) async fn ensure_token(&self, ch: &Channel) -> std::result::Result<(), Status> {
        let Some(up) = &self.user else {
            return Ok(());
        };
        if self.has_token() || self.disabled.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let resp = AuthClient::new(ch.clone())
            .authenticate(AuthenticateRequest {
                name: up.user.clone(),
                password: up.password.clone(),
            })
            .await;
        match resp {
            Ok(r) => {
                let token = MetadataValue::try_from(r.into_inner().token)
                    .map_err(|_| Status::internal("the server sent a token that is not ASCII"))?;
                self.set_token(Some(token));
                Ok(())
            }
            Err(s) if s.message() == "etcdserver: authentication is not enabled" => {
                self.disabled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(s) => Err(s),
        }
    }

    /// Whether `s` asks for a new token; if so, forgets the current one.
    pub(crate) fn refresh_on(&self, s: &Status) -> bool {
        let stale = self.user.is_some()
            && ((s.code() == Code::Unauthenticated
                && s.message() == "etcdserver: invalid auth token")
                || s.message() == "etcdserver: revision of auth store is old"
                || (s.code() == Code::InvalidArgument
                    && s.message() == "etcdserver: user name is empty"));
        if stale {
            self.set_token(None);
            self.disabled
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        stale
    }
}

impl Client {
    /// Authenticates as `user` with `password` (etcdctl's `--user`).
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Client {
        self.auth = AuthState {
            user: Some(UserPassword {
                user: user.into(),
                password: password.into(),
            }),
            ..AuthState::default()
        };
        self
    }

    /// A raw Auth client on the current endpoint (with the token, once
    /// authenticated), for user and role management.
    pub async fn auth_client(&self) -> Result<AuthClient<AuthChannel>> {
        let ch = self
            .channel_for_attempt(0)
            .await
            .map_err(Error::of_authenticate)?;
        Ok(AuthClient::new(ch))
    }
}

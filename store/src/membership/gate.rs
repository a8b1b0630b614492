//! The client port's gate (etcd's unary and stream interceptors, the part
//! about membership): a learner serves only what etcd 3.4 lets a learner
//! serve, serializable Range and Maintenance Status, and refuses every other
//! gRPC call with "etcdserver: rpc not supported for learner"; a member that
//! was removed from the cluster refuses every gRPC call with "etcdserver:
//! server stopped" until it has stopped.
//!
//! The gate looks only at the path; `kv::Kv::range` refuses a linearizable
//! range on a learner itself. Plain HTTP (/health, /metrics, /version)
//! passes.

use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::Either;
use tower::{Layer, Service};

use super::Membership;
use crate::error::Error;

/// The gRPC methods a learner serves (Range only when serializable).
const LEARNER_RPCS: &[&str] = &["/etcdserverpb.KV/Range", "/etcdserverpb.Maintenance/Status"];

/// The gate as a tower layer over the client router.
///
/// A hand-written service rather than `axum::middleware::from_fn`: that one
/// boxes a future and clones the inner route for every request, about 5 % of
/// a member's CPU per put (docs/benchmarks.md, "The gate and the key index").
/// Here a request that passes goes straight to the inner route's future.
#[derive(Clone)]
pub struct GateLayer(pub Arc<Membership>);

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            membership: self.0.clone(),
            inner,
        }
    }
}

/// See [`GateLayer`].
#[derive(Clone)]
pub struct Gate<S> {
    membership: Arc<Membership>,
    inner: S,
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match refusal(&self.membership, &req) {
            Some(e) => Either::Left(ready(Ok(e.to_status().into_http()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// Why `req` is refused here, if it is.
fn refusal(m: &Membership, req: &Request) -> Option<Error> {
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !grpc {
        return None;
    }
    if m.local_removed() {
        return Some(Error::Stopped);
    }
    if m.local_is_learner() && !LEARNER_RPCS.contains(&req.uri().path()) {
        return Some(Error::NotSupportedForLearner);
    }
    None
}

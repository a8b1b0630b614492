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

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Membership;
use crate::error::Error;

/// The gRPC methods a learner serves (Range only when serializable).
const LEARNER_RPCS: &[&str] = &["/etcdserverpb.KV/Range", "/etcdserverpb.Maintenance/Status"];

/// Axum middleware for the client router.
pub async fn gate(State(m): State<Arc<Membership>>, req: Request, next: Next) -> Response {
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        if m.local_removed() {
            return refuse(Error::Stopped);
        }
        if m.local_is_learner() && !LEARNER_RPCS.contains(&req.uri().path()) {
            return refuse(Error::NotSupportedForLearner);
        }
    }
    next.run(req).await
}

fn refuse(e: Error) -> Response {
    e.to_status().into_http::<axum::body::Body>()
}

//! Plain HTTP on the client port, beside gRPC: `GET /health`, `GET /version`
//! and `GET /metrics` with etcd 3.4's shapes, and (only with the hidden
//! `--unsafe-fault-hooks` flag) `/debug/fault/...` to cut and heal peer links in
//! tests.
//!
//! `/health` is `{"health":"true"}` (200) when no alarm is raised (but those
//! named by `?exclude=NAME`), the member has a leader and a linearizable read
//! completes within a second, else `{"health":"false"}` (503), as etcd 3.4
//! answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::kv::Kv;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::transport::LinkFilter;

/// The etcd server version keel's API corresponds to.
pub const ETCD_VERSION: &str = "3.4.23";
/// The cluster version reported, as etcd 3.4 reports it.
pub const CLUSTER_VERSION: &str = "3.4.0";

#[derive(Clone)]
struct HttpState {
    kv: Kv,
    metrics: Arc<Metrics>,
    filter: Arc<LinkFilter>,
    membership: Arc<Membership>,
}

/// The HTTP routes; `fault_hooks` adds the test-only fault endpoints.
pub fn router(
    kv: Kv,
    metrics: Arc<Metrics>,
    filter: Arc<LinkFilter>,
    membership: Arc<Membership>,
    fault_hooks: bool,
) -> Router {
    let state = HttpState {
        kv,
        metrics,
        filter,
        membership,
    };
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics_text));
    if fault_hooks {
        r = r
            .route("/debug/fault/cut", post(cut))
            .route("/debug/fault/heal", post(heal))
            .route("/debug/fault/degrade", post(degrade))
            .route("/debug/fault", get(faults));
    }
    r.with_state(state)
}

fn json(status: StatusCode, body: String) -> axum::response::Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn health(
    State(s): State<HttpState>,
    Query(q): Query<Vec<(String, String)>>,
) -> axum::response::Response {
    // Any raised alarm makes the member unhealthy, unless excluded with
    // `?exclude=NOSPACE` (etcd 3.4).
    let excluded: Vec<String> = q
        .into_iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v)
        .collect();
    let alarmed =
        s.kv.alarms()
            .get(0)
            .iter()
            .any(|a| !excluded.contains(&crate::maintenance::alarm::alarm_name(a.alarm)));
    // Like etcd, which serves no client until it has published its name
    // and client URLs through Raft, a member is not healthy before that.
    let ok = !alarmed
        && s.membership.local_published()
        && s.kv.node().status().has_leader()
        && matches!(
            tokio::time::timeout(Duration::from_secs(1), s.kv.node().read_index()).await,
            Ok(Ok(_))
        );
    if ok {
        json(StatusCode::OK, r#"{"health":"true"}"#.into())
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"health":"false"}"#.into(),
        )
    }
}

async fn version() -> axum::response::Response {
    json(
        StatusCode::OK,
        format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{CLUSTER_VERSION}"}}"#),
    )
}

async fn metrics_text(State(s): State<HttpState>) -> axum::response::Response {
    if let Ok(size) = s.kv.store().size_bytes() {
        s.metrics.db_total_size_bytes.set(size as i64);
    }
    s.metrics
        .db_total_size_in_use_bytes
        .set(s.kv.store().size_in_use() as i64);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// `POST /debug/fault/cut?peers=n2,n3` (names or hex ids; `all` for every peer)
/// drops all traffic between this member and those peers, both directions.
async fn cut(
    State(s): State<HttpState>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let Some(list) = q.get("peers") else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"peers is required"}"#.into(),
        );
    };
    let mut ids = Vec::new();
    for p in list.split(',').filter(|p| !p.is_empty()) {
        if p == "all" {
            ids.extend(s.membership.peers().into_keys());
            continue;
        }
        let by_name = s
            .membership
            .members()
            .into_iter()
            .find(|m| m.name == p)
            .map(|m| m.id);
        let by_id = s
            .membership
            .peers()
            .into_keys()
            .find(|id| format!("{id:x}") == p);
        match by_name.or(by_id) {
            Some(id) => ids.push(id),
            None => return bad_request(format!("unknown peer: {p}")),
        }
    }
    let me = s.kv.identity().member_id;
    ids.retain(|id| *id != me);
    tracing::warn!(?ids, "fault hook: cutting peer links");
    s.filter.block(ids);
    faults(State(s)).await
}

/// `POST /debug/fault/degrade?delay_ms=75&jitter_ms=50&loss=0.5` delays this
/// member's outgoing Raft messages by delay ± jitter and drops the given
/// share of them (netem's faults, in the process); without parameters it
/// restores the links.
async fn degrade(
    State(s): State<HttpState>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let mut quality = crate::transport::Quality::default();
    for (name, value) in &q {
        let bad = || bad_request(format!("bad {name}: {value}"));
        match name.as_str() {
            "delay_ms" | "jitter_ms" => {
                let Ok(ms) = value.parse::<u64>() else {
                    return bad();
                };
                let d = std::time::Duration::from_millis(ms);
                if name == "delay_ms" {
                    quality.delay = d;
                } else {
                    quality.jitter = d;
                }
            }
            "loss" => match value.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => quality.loss = p,
                _ => return bad(),
            },
            _ => return bad_request(format!("unknown parameter: {name}")),
        }
    }
    tracing::warn!(?quality, "fault hook: degrading peer links");
    s.filter.set_quality(quality);
    faults(State(s)).await
}

/// A 400 with `{"error": msg}`.
fn bad_request(msg: String) -> axum::response::Response {
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": msg }).to_string(),
    )
}

async fn heal(State(s): State<HttpState>) -> axum::response::Response {
    tracing::warn!("fault hook: healing all peer links");
    s.filter.heal();
    faults(State(s)).await
}

async fn faults(State(s): State<HttpState>) -> axum::response::Response {
    let blocked: Vec<String> = s
        .filter
        .blocked()
        .iter()
        .map(|id| format!("\"{id:x}\""))
        .collect();
    let q = s.filter.quality();
    json(
        StatusCode::OK,
        format!(
            r#"{{"blocked":[{}],"delay_ms":{},"jitter_ms":{},"loss":{}}}"#,
            blocked.join(","),
            q.delay.as_millis(),
            q.jitter.as_millis(),
            q.loss
        ),
    )
}

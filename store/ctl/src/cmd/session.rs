//! Client-side concurrency recipes that etcdctl's `lock` and `elect` use
//! (clientv3/concurrency: a session lease kept alive in the background, a
//! key per session under the lock or election prefix, and waiting for the
//! deletion of every key created before one's own). etcdctl does not call
//! the server's Lock or Election services, so neither does keelctl: the
//! keys it writes are the ones etcdctl writes.

use keel_client::{
    compare, request_op, response_op, Client, Compare, DeleteRangeRequest, KeepAlive,
    KeepAliveEvent, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
    WatchMessage, WatchOptions,
};

use crate::error::{CtlError, Result};

/// A lease kept alive until dropped.
pub struct Session {
    pub client: Client,
    pub lease: i64,
    keep: KeepAlive,
}

impl Session {
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let lease = client.lease_grant(ttl, 0).await?.id;
        let keep = client.keep_alive(lease);
        Ok(Session {
            client: client.clone(),
            lease,
            keep,
        })
    }

    /// Returns when the lease is lost (expired or revoked).
    pub async fn done(&mut self) {
        loop {
            match self.keep.next().await {
                Some(KeepAliveEvent::Renewed { .. }) => continue,
                Some(KeepAliveEvent::Lost) | None => return,
            }
        }
    }

    /// This session's key under `pfx` (`<pfx><lease in hex>`).
    pub fn key(&self, pfx: &str) -> Vec<u8> {
        format!("{pfx}{:x}", self.lease).into_bytes()
    }
}

/// A range over `pfx` sorted by create revision, first (`ascend`) or last.
pub fn top(pfx: &str, ascend: bool) -> RangeRequest {
    RangeRequest {
        key: pfx.as_bytes().to_vec(),
        range_end: keel_client::prefix_end(pfx.as_bytes()),
        limit: 1,
        sort_target: 2,
        sort_order: if ascend { 1 } else { 2 },
        ..Default::default()
    }
}

pub fn range_of(resp: &TxnResponse, i: usize) -> RangeResponse {
    match resp.responses.get(i).and_then(|r| r.response.clone()) {
        Some(response_op::Response::ResponseRange(r)) => r,
        _ => RangeResponse::default(),
    }
}

/// If `key` was not created, puts it with `value` on the session's lease;
/// then reads it back and (`with_owner`) the first key under `pfx`.
pub async fn create_key(
    s: &Session,
    key: &[u8],
    value: &[u8],
    pfx: Option<&str>,
) -> Result<TxnResponse> {
    let get = |r: RangeRequest| RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    };
    let mut success = vec![RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: s.lease,
            ..Default::default()
        })),
    }];
    let mut failure = vec![get(RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })];
    if let Some(pfx) = pfx {
        success.push(get(top(pfx, true)));
        failure.push(get(top(pfx, true)));
    }
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.to_vec(),
            range_end: vec![],
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
        }],
        success,
        failure,
    };
    Ok(s.client.txn(txn).await?)
}

/// Waits until every key under `pfx` created at or before `max_create_rev`
/// is deleted (clientv3's waitDeletes).
pub async fn wait_deletes(c: &Client, pfx: &str, max_create_rev: i64) -> Result<()> {
    loop {
        let mut req = top(pfx, false);
        req.max_create_revision = max_create_rev;
        let resp = c.range(req).await?;
        let Some(last) = resp.kvs.first() else {
            return Ok(());
        };
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        wait_delete(c, &last.key, rev).await?;
    }
}

/// Waits for `key`'s deletion after revision `rev`.
pub async fn wait_delete(c: &Client, key: &[u8], rev: i64) -> Result<()> {
    let mut w = c
        .watch(key.to_vec(), WatchOptions::default().from_revision(rev + 1))
        .await?;
    while let Some(m) = w.next().await {
        match m {
            WatchMessage::Events { events, .. } => {
                if events.iter().any(|e| e.r#type == 1) {
                    return Ok(());
                }
            }
            WatchMessage::Progress { .. } => {}
            WatchMessage::Compacted { .. } | WatchMessage::Canceled { .. } => {
                return Err(CtlError::error("lost watcher waiting for delete"))
            }
        }
    }
    Err(CtlError::error("lost watcher waiting for delete"))
}

/// Deletes `key` (unlock, resign).
pub async fn delete(c: &Client, key: &[u8]) -> Result<()> {
    c.delete(DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Returns on SIGINT.
pub async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
}

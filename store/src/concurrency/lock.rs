//! Lock and Unlock (etcd's `v3lock` server over `concurrency.Mutex`).

use keel_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use keel_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use super::{contender_key, edge_request, prefix_of, Guard, Recipes};
use crate::auth::Caller;
use crate::error::Result;

impl Recipes {
    /// Waits until the caller's lease holds lock `name`; returns the key that
    /// stands for the lock (delete it, or let the lease go, to release).
    pub async fn lock(&self, r: LockRequest) -> Result<LockResponse> {
        let lease = self.session(r.lease).await?;
        let prefix = prefix_of(&r.name);
        let my_key = contender_key(&prefix, lease);
        let owner = RequestOp {
            request: Some(request_op::Request::RequestRange(edge_request(
                &prefix, true, 0,
            ))),
        };
        let txn = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: my_key.clone(),
                target_union: Some(compare::TargetUnion::CreateRevision(0)),
                ..Default::default()
            }],
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: my_key.clone(),
                        lease,
                        ..Default::default()
                    })),
                },
                owner.clone(),
            ],
            failure: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: my_key.clone(),
                        ..Default::default()
                    })),
                },
                owner,
            ],
        };
        let resp = self.kv.txn(&Caller::system(), txn).await?;
        let header = resp.header;
        let mut my_rev = header.as_ref().map(|h| h.revision).unwrap_or(0);
        let ranges: Vec<_> = resp
            .responses
            .into_iter()
            .filter_map(|r| match r.response {
                Some(response_op::Response::ResponseRange(rr)) => Some(rr),
                _ => None,
            })
            .collect();
        if !resp.succeeded {
            if let Some(kv) = ranges.first().and_then(|rr| rr.kvs.first()) {
                my_rev = kv.create_revision;
            }
        }
        let holder = ranges.last().and_then(|rr| rr.kvs.first());
        if holder.is_none_or(|kv| kv.create_revision == my_rev) {
            return Ok(LockResponse {
                header,
                key: my_key,
            });
        }
        // Wait for every earlier contender; give the key back if we stop waiting.
        let guard = Guard::new({
            let me = self.clone();
            let key = my_key.clone();
            move || me.delete_later(key)
        });
        let header = self.wait_deletes(&prefix, my_rev - 1).await?;
        guard.disarm();
        Ok(LockResponse {
            header: Some(self.kv.header(header.revision)),
            key: my_key,
        })
    }

    /// Releases a lock by deleting its key.
    pub async fn unlock(&self, r: UnlockRequest) -> Result<UnlockResponse> {
        let resp = self
            .kv
            .delete_range(
                &Caller::system(),
                DeleteRangeRequest {
                    key: r.key,
                    ..Default::default()
                },
            )
            .await?;
        Ok(UnlockResponse {
            header: resp.header,
        })
    }
}

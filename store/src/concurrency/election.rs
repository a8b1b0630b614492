//! Campaign, Proclaim, Leader, Observe and Resign (etcd's `v3election` server
//! over `concurrency.Election`).

use keel_proto::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use keel_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;

use super::{contender_key, prefix_end, prefix_of, Guard, Recipes};
use crate::apply::to_pb;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::mvcc::EventKind;

fn not_leader() -> Error {
    Error::Concurrency("election: not leader".into())
}

fn no_leader() -> Error {
    Error::Concurrency("election: no leader".into())
}

fn missing_leader_key() -> Error {
    Error::Concurrency("\"leader\" field must be provided".into())
}

fn create_rev_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

impl Recipes {
    /// Waits until the caller leads election `name` with `value`.
    pub async fn campaign(&self, r: CampaignRequest) -> Result<CampaignResponse> {
        let lease = self.session(r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = contender_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![create_rev_is(&key, 0)],
            success: vec![put_op(&key, &r.value, lease)],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })),
            }],
        };
        let resp = self.kv.txn(&Caller::system(), txn).await?;
        let header = resp.header;
        let mut rev = header.as_ref().map(|h| h.revision).unwrap_or(0);
        let guard = Guard::new({
            let me = self.clone();
            let key = key.clone();
            move || me.delete_later(key)
        });
        if !resp.succeeded {
            let existing = resp.responses.into_iter().find_map(|r| match r.response {
                Some(response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
                _ => None,
            });
            if let Some(kv) = existing {
                rev = kv.create_revision;
                if kv.value != r.value {
                    self.proclaim_at(&key, rev, lease, &r.value).await?;
                }
            }
        }
        self.wait_deletes(&prefix, rev - 1).await?;
        guard.disarm();
        Ok(CampaignResponse {
            header,
            leader: Some(LeaderKey {
                name: r.name,
                key,
                rev,
                lease,
            }),
        })
    }

    async fn proclaim_at(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &[u8],
    ) -> Result<ProclaimResponse> {
        let resp = self
            .kv
            .txn(
                &Caller::system(),
                TxnRequest {
                    compare: vec![create_rev_is(key, rev)],
                    success: vec![put_op(key, value, lease)],
                    failure: vec![],
                },
            )
            .await?;
        if !resp.succeeded {
            return Err(not_leader());
        }
        Ok(ProclaimResponse {
            header: resp.header,
        })
    }

    /// Changes the leader's value without a new election.
    pub async fn proclaim(&self, r: ProclaimRequest) -> Result<ProclaimResponse> {
        let l = r.leader.ok_or_else(missing_leader_key)?;
        self.proclaim_at(&l.key, l.rev, l.lease, &r.value).await
    }

    /// The current leader's key and value.
    pub async fn leader(&self, r: LeaderRequest) -> Result<LeaderResponse> {
        let prefix = prefix_of(&r.name);
        let resp = self.edge(&prefix, true, 0).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(no_leader)?;
        Ok(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }

    /// Gives up leadership (deletes the leader's key if it is still the same).
    pub async fn resign(&self, r: ResignRequest) -> Result<ResignResponse> {
        let l = r.leader.ok_or_else(missing_leader_key)?;
        let resp = self
            .kv
            .txn(
                &Caller::system(),
                TxnRequest {
                    compare: vec![create_rev_is(&l.key, l.rev)],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestDeleteRange(
                            DeleteRangeRequest {
                                key: l.key.clone(),
                                ..Default::default()
                            },
                        )),
                    }],
                    failure: vec![],
                },
            )
            .await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// Streams every leader of election `name`, and each value a leader
    /// proclaims, until `tx` closes (etcd's `Election.Observe`).
    pub async fn observe(&self, r: LeaderRequest, tx: mpsc::Sender<Result<LeaderResponse>>) {
        if let Err(e) = self.observe_inner(&r.name, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn observe_inner(
        &self,
        name: &[u8],
        tx: &mpsc::Sender<Result<LeaderResponse>>,
    ) -> Result<()> {
        let prefix = prefix_of(name);
        loop {
            let resp = self.edge(&prefix, true, 0).await?;
            let mut header = resp.header.unwrap_or_default();
            let kv = match resp.kvs.into_iter().next() {
                Some(kv) => kv,
                None => {
                    // Wait for the first put under the prefix.
                    let mut w = self.watch(&prefix, &prefix_end(&prefix), header.revision)?;
                    loop {
                        let (_, events) = tokio::select! {
                            next = w.next() => next?,
                            _ = tx.closed() => return Ok(()),
                        };
                        if let Some(e) = events.iter().find(|e| e.kind == EventKind::Put) {
                            header = self.kv.header(e.kv.mod_revision);
                            break to_pb(e.kv.clone());
                        }
                    }
                }
            };
            let key = kv.key.clone();
            let after = header.revision + 1;
            let first = LeaderResponse {
                header: Some(header),
                kv: Some(kv),
            };
            if tx.send(Ok(first)).await.is_err() {
                return Ok(());
            }
            // Follow this leader's key until it is deleted.
            let mut w = self.watch(&key, &[], after)?;
            'leader: loop {
                tokio::select! {
                    next = w.next() => {
                        let (rev, events) = next?;
                        for e in events.iter() {
                            if e.kind == EventKind::Delete {
                                break 'leader;
                            }
                            let resp = LeaderResponse {
                                header: Some(self.kv.header(rev)),
                                kv: Some(to_pb(e.kv.clone())),
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
    }
}

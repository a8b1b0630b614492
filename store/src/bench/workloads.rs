//! The request workloads `put`, `range`, `txn-put` and `lease-keepalive`, each
//! sending requests as etcd's benchmark tool does, and `put
//! --compact-interval`'s compactor.

use std::future::Future;
use std::time::Duration;

use super::conn::BenchChannel as Channel;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::{
    request_op, CompactionRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::SeedableRng;
use tokio::task::JoinHandle;
use tonic::Status;

use super::args::{Consistency, LeaseKeepaliveArgs, PutArgs, RangeArgs, TxnPutArgs};
use super::keys::{random_bytes, KeyGen};
use super::run::{Client, Workload};

/// `put`: one key of the key space (random, or sequential) with a fixed random value.
pub struct Put {
    keys: KeyGen,
    value: Vec<u8>,
}

impl Put {
    /// The workload of `args`.
    pub fn new(args: &PutArgs) -> anyhow::Result<Put> {
        Ok(Put {
            keys: KeyGen::new(args.key_size, args.key_space_size, args.sequential_keys)?,
            value: random_bytes(args.val_size, &mut rand::rngs::StdRng::from_entropy()),
        })
    }
}

impl Workload for Put {
    fn call(&self, c: &mut Client, i: u64) -> impl Future<Output = Result<(), Status>> + Send {
        let req = PutRequest {
            key: self.keys.key_for(i, &mut c.rng),
            value: self.value.clone(),
            ..Default::default()
        };
        async move { c.kv.put(req).await.map(|_| ()) }
    }
}

/// `range`: the same key or range every time, linearizable or serializable.
pub struct Range {
    req: RangeRequest,
}

impl Range {
    /// The workload of `args`.
    pub fn new(args: &RangeArgs) -> Range {
        Range {
            req: RangeRequest {
                key: args.key.clone().into_bytes(),
                range_end: args.end.clone().unwrap_or_default().into_bytes(),
                serializable: args.consistency == Consistency::Serializable,
                ..Default::default()
            },
        }
    }
}

impl Workload for Range {
    fn call(&self, c: &mut Client, _i: u64) -> impl Future<Output = Result<(), Status>> + Send {
        let req = self.req.clone();
        async move { c.kv.range(req).await.map(|_| ()) }
    }
}

/// `txn-put`: transaction `i` puts keys `i*txn-ops + j` (mod the key space),
/// `j < txn-ops`, with no compares.
pub struct TxnPut {
    keys: KeyGen,
    ops: u64,
    value: Vec<u8>,
}

impl TxnPut {
    /// The workload of `args`.
    pub fn new(args: &TxnPutArgs) -> anyhow::Result<TxnPut> {
        anyhow::ensure!(args.txn_ops >= 1, "--txn-ops must be at least 1");
        Ok(TxnPut {
            keys: KeyGen::new(args.key_size, args.key_space_size, true)?,
            ops: args.txn_ops,
            value: random_bytes(args.val_size, &mut rand::rngs::StdRng::from_entropy()),
        })
    }

    /// The transaction of request `i`.
    pub fn request(&self, i: u64) -> TxnRequest {
        let success = (0..self.ops)
            .map(|j| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: self.keys.key(i.wrapping_mul(self.ops).wrapping_add(j)),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        TxnRequest {
            success,
            ..Default::default()
        }
    }
}

impl Workload for TxnPut {
    fn call(&self, c: &mut Client, i: u64) -> impl Future<Output = Result<(), Status>> + Send {
        let req = self.request(i);
        async move { c.kv.txn(req).await.map(|_| ()) }
    }
}

/// One client's lease and its LeaseKeepAlive stream.
pub struct KeepAliveStream {
    id: i64,
    requests: tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
    responses: tonic::Streaming<LeaseKeepAliveResponse>,
}

/// `lease-keepalive`: as etcd's tool, each client grants a lease (untimed),
/// then sends a keep-alive on its own stream and waits for the answer, one in
/// flight; a keep-alive answered with TTL 0 (the lease is gone) is an error.
pub struct LeaseKeepalive {
    ttl: i64,
}

impl LeaseKeepalive {
    /// The workload of `args`.
    pub fn new(args: &LeaseKeepaliveArgs) -> LeaseKeepalive {
        LeaseKeepalive { ttl: args.ttl }
    }
}

impl Workload for LeaseKeepalive {
    fn prepare(&self, c: &mut Client) -> impl Future<Output = Result<(), Status>> + Send {
        let mut lease = LeaseClient::new(c.channel.clone());
        let ttl = self.ttl;
        async move {
            let id = lease
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await?
                .into_inner()
                .id;
            // A first keep-alive goes before the call is awaited: a Go gRPC
            // server (etcd) sends its response headers with the first answer.
            let (requests, rx) = tokio::sync::mpsc::channel(1);
            requests
                .send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Status::unavailable("keep-alive stream closed"))?;
            let mut responses = lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            responses.message().await?;
            c.keepalive = Some(KeepAliveStream {
                id,
                requests,
                responses,
            });
            Ok(())
        }
    }

    async fn call(&self, c: &mut Client, _i: u64) -> Result<(), Status> {
        let ka = c
            .keepalive
            .as_mut()
            .ok_or_else(|| Status::failed_precondition("no lease"))?;
        ka.requests
            .send(LeaseKeepAliveRequest { id: ka.id })
            .await
            .map_err(|_| Status::unavailable("keep-alive stream closed"))?;
        match ka.responses.message().await? {
            Some(r) if r.ttl > 0 => Ok(()),
            Some(_) => Err(Status::not_found("lease expired")),
            None => Err(Status::unavailable("keep-alive stream ended")),
        }
    }

    fn finish(&self, c: &mut Client) -> impl Future<Output = ()> + Send {
        let ka = c.keepalive.take();
        let mut lease = LeaseClient::new(c.channel.clone());
        async move {
            if let Some(ka) = ka {
                let _ = lease.lease_revoke(LeaseRevokeRequest { id: ka.id }).await;
            }
        }
    }
}

/// `put --compact-interval`: every `every`, reads the store's revision (a range
/// on `foo`, as etcd's tool) and compacts to it minus `delta`. Abort the handle
/// to stop it.
pub fn spawn_compactor(channel: Channel, every: Duration, delta: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut kv = KvClient::new(channel);
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let probe = RangeRequest {
                key: b"foo".to_vec(),
                ..Default::default()
            };
            let rev = match kv.range(probe).await {
                Ok(r) => r.into_inner().header.map(|h| h.revision).unwrap_or(0),
                Err(e) => {
                    tracing::warn!("compactor: reading the revision: {e}");
                    continue;
                }
            };
            let revision = rev - delta;
            if revision <= 0 {
                continue;
            }
            let req = CompactionRequest {
                revision,
                physical: false,
            };
            match kv.compact(req).await {
                Ok(_) => tracing::info!("compacted to revision {revision}"),
                Err(e) => tracing::warn!("compactor: compacting to {revision}: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_put_keys_follow_etcd() {
        let args = TxnPutArgs {
            key_size: 8,
            val_size: 16,
            txn_ops: 3,
            key_space_size: 100,
            total: 10,
            rate: 0,
        };
        let w = TxnPut::new(&args).unwrap();
        let t = w.request(2);
        let keys: Vec<Vec<u8>> = t
            .success
            .iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    assert_eq!(p.value.len(), 16);
                    p.key.clone()
                }
                other => panic!("not a put: {other:?}"),
            })
            .collect();
        let g = KeyGen::new(8, 100, true).unwrap();
        assert_eq!(keys, [g.key(6), g.key(7), g.key(8)]);
        assert!(t.compare.is_empty() && t.failure.is_empty());
    }

    #[test]
    fn range_request_shape() {
        let args = RangeArgs {
            key: "a".into(),
            end: Some("z".into()),
            consistency: Consistency::Serializable,
            total: 1,
            rate: 0,
        };
        let r = Range::new(&args).req;
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice(), r.serializable),
            (&b"a"[..], &b"z"[..], true)
        );
    }
}

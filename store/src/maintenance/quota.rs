//! The backend quota (`--quota-backend-bytes`), etcd 3.4's `backendQuota`.
//!
//! Before a put, a txn or a lease grant is proposed, its cost (etcd's
//! estimate: 256 bytes of overhead plus key and value per put, the larger of a
//! txn's two branches, 64 bytes per lease) is added to the bytes the MVCC
//! store keeps ([`crate::mvcc::Store::size_in_use`]); at or past the quota the
//! request fails with "database space exceeded" and the member raises the
//! NOSPACE alarm for the cluster through Raft. Requests that cost nothing
//! (deletes, read-only txns) always pass.
//!
//! Unlike etcd, the bytes compared are the ones in use, not the size of the
//! files: sled's files never shrink and also hold the Raft log. So compaction
//! frees quota once its background deletion is done, which `Defragment` waits
//! for; the recovery etcd documents (compact, defrag, `alarm disarm`) works
//! unchanged.

use keel_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

/// etcd's default quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's suggested maximum: 8 GiB (larger quotas are accepted, with a warning).
pub const MAX_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// etcd's estimate of the cost of a lease.
pub const LEASE_OVERHEAD: u64 = 64;
/// etcd's estimate of the cost of a key's metadata.
pub const KV_OVERHEAD: u64 = 256;

/// The quota in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    max_bytes: u64,
}

impl Quota {
    /// The quota for `--quota-backend-bytes`: 0 means the default, a negative
    /// value disables the quota (None), as in etcd.
    pub fn from_flag(bytes: i64) -> Option<Quota> {
        match bytes {
            b if b < 0 => {
                tracing::info!(quota_size_bytes = b, "disabled backend quota");
                None
            }
            0 => Some(Quota {
                max_bytes: DEFAULT_QUOTA_BYTES,
            }),
            b => {
                if b as u64 > MAX_QUOTA_BYTES {
                    tracing::warn!(
                        quota_size_bytes = b,
                        quota_maximum_size_bytes = MAX_QUOTA_BYTES,
                        "quota exceeds the maximum value"
                    );
                }
                Some(Quota {
                    max_bytes: b as u64,
                })
            }
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether a request of `cost` fits when `in_use` bytes are taken.
    pub fn available(&self, in_use: u64, cost: u64) -> bool {
        cost == 0 || in_use.saturating_add(cost) < self.max_bytes
    }
}

/// The cost of a put.
pub fn cost_put(p: &PutRequest) -> u64 {
    KV_OVERHEAD + p.key.len() as u64 + p.value.len() as u64
}

/// The cost of a txn: the puts of its costlier top-level branch (nested txns
/// cost nothing, as in etcd).
pub fn cost_txn(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => cost_put(p),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_and_costs() {
        assert_eq!(Quota::from_flag(-1), None);
        assert_eq!(
            Quota::from_flag(0).unwrap().max_bytes(),
            DEFAULT_QUOTA_BYTES
        );
        let q = Quota::from_flag(1000).unwrap();
        assert!(q.available(999, 0));
        assert!(q.available(600, 399));
        assert!(!q.available(600, 400));
        let put = |k: &str, v: &str| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            cost_put(&PutRequest {
                key: b"ab".to_vec(),
                value: b"cde".to_vec(),
                ..Default::default()
            }),
            261
        );
        let t = TxnRequest {
            success: vec![put("a", "b")],
            failure: vec![put("a", "bb"), put("c", "")],
            ..Default::default()
        };
        assert_eq!(cost_txn(&t), 259 + 257);
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(t)),
            }],
            ..Default::default()
        };
        assert_eq!(cost_txn(&nested), 0);
    }
}

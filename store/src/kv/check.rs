//! Request validation before anything is proposed, with etcd 3.4's rules and
//! messages (its v3rpc `key.go`): empty keys, ignore_value/ignore_lease with a
//! value or lease given, too many txn ops, and the same key written twice in one
//! txn branch (puts on one key, or a put inside a deleted range; nested txns
//! count with their parent, except that a key put in both branches of one nested
//! txn is fine).

use keel_proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

use crate::error::{Error, Result};

pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::InvalidArgument(
            "etcdserver: value is provided".into(),
        ));
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::InvalidArgument(
            "etcdserver: lease is provided".into(),
        ));
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// The whole txn check: op counts and shapes, then duplicate keys per branch.
pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    txn_shape(r, max_txn_ops as i64)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn txn_shape(r: &TxnRequest, max_ops: i64) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        op_shape(op, max_ops - opc)?;
    }
    Ok(())
}

fn op_shape(op: &RequestOp, max_ops: i64) -> Result<()> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => range(r),
        Some(request_op::Request::RequestPut(r)) => put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => delete_range(r),
        Some(request_op::Request::RequestTxn(r)) => txn_shape(r, max_ops),
        None => Err(Error::KeyNotFound),
    }
}

/// A deleted interval: [start, end), `end == None` meaning a single key and an
/// end of `[0]` meaning "to the end of the key space".
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.start == k,
            Some(end) if end.as_slice() == [0] => k >= self.start.as_slice(),
            Some(end) => k >= self.start.as_slice() && k < end.as_slice(),
        }
    }
}

fn deleted(dels: &[Interval], k: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(k))
}

/// Returns the keys put and the intervals deleted by `ops` (nested txns
/// included), or DuplicateKey.
fn intervals(ops: &[RequestOp]) -> Result<(std::collections::HashSet<Vec<u8>>, Vec<Interval>)> {
    use std::collections::HashSet;
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Interval {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if puts.contains(&k) && !puts_then.contains(&k) {
                return Err(Error::DuplicateKey);
            }
            if deleted(&dels, &k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.to_vec(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                success,
                failure,
                ..Default::default()
            })),
        }
    }
    fn t(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            success,
            ..Default::default()
        }
    }

    #[test]
    fn duplicate_keys_as_etcd() {
        assert!(matches!(
            txn(&t(vec![put_op("a"), put_op("a")]), 128),
            Err(Error::DuplicateKey)
        ));
        assert!(matches!(
            txn(&t(vec![del_op("a", b"c"), put_op("b")]), 128),
            Err(Error::DuplicateKey)
        ));
        assert!(matches!(
            txn(&t(vec![del_op("a", &[0]), put_op("zz")]), 128),
            Err(Error::DuplicateKey)
        ));
        assert!(txn(&t(vec![del_op("a", b"c"), put_op("c")]), 128).is_ok());
        assert!(txn(&t(vec![put_op("a"), put_op("b")]), 128).is_ok());
        // both branches of a nested txn may put the same key
        assert!(txn(&t(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]), 128).is_ok());
        // but not together with the parent
        assert!(matches!(
            txn(
                &t(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]),
                128
            ),
            Err(Error::DuplicateKey)
        ));
        // and success and failure of the top level are separate branches
        let both = TxnRequest {
            success: vec![put_op("a")],
            failure: vec![put_op("a")],
            ..Default::default()
        };
        assert!(txn(&both, 128).is_ok());
    }

    #[test]
    fn op_counts_and_shapes() {
        let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert!(matches!(txn(&t(many), 128), Err(Error::TooManyOps)));
        let ok: Vec<RequestOp> = (0..128).map(|i| put_op(&format!("k{i}"))).collect();
        assert!(txn(&t(ok), 128).is_ok());
        assert!(matches!(
            txn(&t(vec![RequestOp { request: None }]), 128),
            Err(Error::KeyNotFound)
        ));
        assert!(matches!(
            txn(&t(vec![put_op("")]), 128),
            Err(Error::EmptyKey)
        ));
        let p = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(
            put(&p).unwrap_err().to_string(),
            "etcdserver: value is provided"
        );
    }
}

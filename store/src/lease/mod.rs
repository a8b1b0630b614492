//! Leases: etcd 3.4's lessor (its `lease/lessor.go`, re-written here).
//!
//! - [`Lessor`]: the replicated lease state (each lease's id, granted TTL and
//!   attached keys) plus, on the leader only, each lease's deadline.
//! - [`api`]: the Lease API's logic: grant and revoke through Raft, keep-alive
//!   and time-to-live on the leader (forwarded there by followers over the peer
//!   port), the expiry task.
//! - [`service`]: the thin gRPC adapters (`etcdserverpb.Lease` on the client
//!   port, `keel.peer.LeasePeer` on the peer port).
//!
//! Persistence: a lease is one record `\xfelease/<id: 8 bytes BE>` = `<ttl: 8
//! bytes BE>` in the MVCC backend's keyspace (outside the revision and meta
//! keys), written in the same backend batch as the apply step that grants or
//! revokes it, so the record, the deleted keys and the consistent index move
//! together. Attached keys are not stored: each kv carries its lease id, and
//! [`Lessor::open`] rebuilds the key sets from the live keys (as etcd does).
//!
//! Invariants:
//! - Replicated state (which leases exist, their TTLs, their keys) changes only
//!   in apply, identically on every member.
//! - Deadlines are in memory and only the primary (the leader) has them; a
//!   member that becomes leader gives every lease `now + extend + ttl` (etcd's
//!   `Promote`, `extend` = the election timeout), so a lease never expires
//!   before its TTL counted from the last keep-alive any leader answered.
//! - Only the primary reports expired leases; each is reported again only after
//!   [`REVOKE_RETRY`], while its revoke is in flight.
//!
//! Left out: etcd 3.4's optional checkpoints of remaining TTLs (off by default
//! in etcd 3.4 too), and Promote's spreading of piled-up expiries (the expiry
//! task's rate limit bounds the revoke load instead).

pub mod api;
pub mod service;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mvcc::{Event, EventKind, RangeOptions, Store, WriteTxn};

pub use api::Leases;

/// A lease id (etcd's `LeaseID`); 0 means no lease.
pub type LeaseId = i64;

/// etcd's `MaxLeaseTTL`, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// After reporting a lease expired, wait this long before reporting it again
/// (its revoke may have been lost with a leader): etcd's
/// `expiredLeaseRetryInterval`.
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

const RECORD_PREFIX: &[u8] = b"\xfelease/";
const RECORD_END: &[u8] = b"\xfelease0";

fn record_key(id: LeaseId) -> Vec<u8> {
    let mut k = RECORD_PREFIX.to_vec();
    k.extend_from_slice(&(id as u64).to_be_bytes());
    k
}

fn decode_record(k: &[u8], v: &[u8]) -> Result<(LeaseId, i64)> {
    let id = k
        .strip_prefix(RECORD_PREFIX)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| u64::from_be_bytes(b) as i64);
    let ttl = <[u8; 8]>::try_from(v).ok().map(i64::from_be_bytes);
    match (id, ttl) {
        (Some(id), Some(ttl)) => Ok((id, ttl)),
        _ => Err(Error::Corrupt("lease record is damaged".into())),
    }
}

/// One lease.
#[derive(Debug, Clone)]
struct Lease {
    ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// When it expires; only on the primary.
    deadline: Option<Instant>,
    /// When it was last reported expired (its revoke is in flight).
    reported: Option<Instant>,
}

/// What a renew found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Renewed; the granted TTL.
    Renewed(i64),
    /// No such lease.
    NotFound,
    /// The lease is past its deadline: its revoke is pending.
    Expired,
    /// This member does not keep deadlines (not the leader).
    NotPrimary,
}

/// A lease as `time_to_live` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: LeaseId,
    /// Whole seconds left (the granted TTL when this member has no deadline).
    pub remaining: i64,
    pub granted_ttl: i64,
    /// Attached keys, sorted.
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Inner {
    leases: HashMap<LeaseId, Lease>,
    primary: bool,
}

/// The lessor: lease state shared by apply (the Raft thread) and the Lease API.
#[derive(Debug)]
pub struct Lessor {
    inner: Mutex<Inner>,
    /// The smallest TTL granted, in seconds.
    min_ttl: i64,
}

impl Lessor {
    /// Loads the leases recorded in `store` and attaches every live key that
    /// names one. `min_ttl` is in seconds.
    pub fn open(store: &Store, min_ttl: i64) -> Result<Lessor> {
        Ok(Lessor {
            inner: Mutex::new(Inner {
                leases: load(store)?,
                primary: false,
            }),
            min_ttl,
        })
    }

    /// Loads the leases again after the store's content was replaced (a Raft
    /// snapshot installed). Deadlines restart from now on a primary.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let mut leases = load(store)?;
        let mut g = self.lock();
        if g.primary {
            let now = Instant::now();
            for l in leases.values_mut() {
                l.deadline = Some(now + Duration::from_secs(l.ttl.max(0) as u64));
            }
        }
        g.leases = leases;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The smallest TTL this lessor grants, in seconds.
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    pub fn exists(&self, id: LeaseId) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Grants lease `id` within `txn` (apply path): checks etcd's rules, writes
    /// the record and returns the granted TTL. Call [`Lessor::granted`] once
    /// the transaction has ended.
    pub fn grant(&self, txn: &mut WriteTxn<'_>, id: LeaseId, ttl: i64) -> Result<i64> {
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        if self.exists(id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(self.min_ttl);
        txn.put_record(record_key(id), ttl.to_be_bytes().to_vec());
        Ok(ttl)
    }

    /// Records a lease whose grant was committed.
    pub fn granted(&self, id: LeaseId, ttl: i64) {
        let mut g = self.lock();
        let deadline = g
            .primary
            .then(|| Instant::now() + Duration::from_secs(ttl as u64));
        g.leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
                deadline,
                reported: None,
            },
        );
    }

    /// Revokes lease `id` within `txn` (apply path): deletes every attached
    /// key, in key order, and the record. Call [`Lessor::revoked`] once the
    /// transaction has ended.
    pub fn revoke(&self, txn: &mut WriteTxn<'_>, id: LeaseId) -> Result<()> {
        let keys = self
            .lock()
            .leases
            .get(&id)
            .map(|l| l.keys.clone())
            .ok_or(Error::LeaseNotFound)?;
        for key in keys {
            txn.delete_range(&key, &[])?;
        }
        txn.delete_record(record_key(id));
        Ok(())
    }

    /// Forgets a lease whose revoke was committed.
    pub fn revoked(&self, id: LeaseId) {
        self.lock().leases.remove(&id);
    }

    /// Follows the keys a committed write moved between leases: a put with
    /// another lease moves the key, a delete detaches it.
    pub fn apply_events(&self, events: &[Event]) {
        let mut g = self.lock();
        if g.leases.is_empty() {
            return;
        }
        for e in events {
            let old = e.prev_kv.as_ref().map(|p| p.lease).unwrap_or(0);
            let new = match e.kind {
                EventKind::Put => e.kv.lease,
                EventKind::Delete => 0,
            };
            if old != 0 && old != new {
                if let Some(l) = g.leases.get_mut(&old) {
                    l.keys.remove(&e.kv.key);
                }
            }
            if new != 0 {
                if let Some(l) = g.leases.get_mut(&new) {
                    l.keys.insert(e.kv.key.clone());
                }
            }
        }
    }

    /// True while this member keeps deadlines.
    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// Becomes primary: every lease expires `extend` after its full TTL from now.
    pub fn promote(&self, extend: Duration) {
        let mut g = self.lock();
        let now = Instant::now();
        g.primary = true;
        for l in g.leases.values_mut() {
            l.deadline = Some(now + extend + Duration::from_secs(l.ttl as u64));
            l.reported = None;
        }
        tracing::info!(leases = g.leases.len(), "lessor: promoted");
    }

    /// Stops keeping deadlines.
    pub fn demote(&self) {
        let mut g = self.lock();
        g.primary = false;
        for l in g.leases.values_mut() {
            l.deadline = None;
            l.reported = None;
        }
    }

    /// Renews lease `id` on the primary.
    pub fn renew(&self, id: LeaseId) -> Renew {
        let mut g = self.lock();
        if !g.primary {
            return Renew::NotPrimary;
        }
        let Some(l) = g.leases.get_mut(&id) else {
            return Renew::NotFound;
        };
        let now = Instant::now();
        if l.deadline.is_some_and(|d| d <= now) {
            return Renew::Expired;
        }
        l.deadline = Some(now + Duration::from_secs(l.ttl as u64));
        Renew::Renewed(l.ttl)
    }

    /// Lease `id` as this member sees it.
    pub fn lookup(&self, id: LeaseId, with_keys: bool) -> Option<LeaseInfo> {
        let g = self.lock();
        let l = g.leases.get(&id)?;
        let remaining = match l.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).as_secs() as i64,
            None => l.ttl,
        };
        Some(LeaseInfo {
            id,
            remaining,
            granted_ttl: l.ttl,
            keys: if with_keys {
                l.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease id, soonest to expire first (ties by id).
    pub fn leases(&self) -> Vec<LeaseId> {
        let g = self.lock();
        let mut v: Vec<(Option<Instant>, LeaseId)> =
            g.leases.iter().map(|(id, l)| (l.deadline, *id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// On the primary: up to `limit` leases past their deadline at `now` and
    /// not reported in the last [`REVOKE_RETRY`], most overdue first; each is
    /// marked reported.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<LeaseId> {
        let mut g = self.lock();
        if !g.primary {
            return Vec::new();
        }
        let mut due: Vec<(Instant, LeaseId)> = g
            .leases
            .iter()
            .filter_map(|(id, l)| {
                let d = l.deadline?;
                let quiet = l
                    .reported
                    .is_none_or(|r| now.duration_since(r) >= REVOKE_RETRY);
                (d <= now && quiet).then_some((d, *id))
            })
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, id) in &due {
            if let Some(l) = g.leases.get_mut(id) {
                l.reported = Some(now);
            }
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

/// The leases recorded in `store`, each with the live keys that name it.
fn load(store: &Store) -> Result<HashMap<LeaseId, Lease>> {
    let mut leases = HashMap::new();
    for item in store.backend().scan(RECORD_PREFIX, RECORD_END) {
        let (k, v) = item?;
        let (id, ttl) = decode_record(&k, &v)?;
        leases.insert(
            id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
                deadline: None,
                reported: None,
            },
        );
    }
    if !leases.is_empty() {
        let all = store.range(
            &[0],
            &[0],
            &RangeOptions {
                keys_only: true,
                ..Default::default()
            },
        )?;
        for kv in all.kvs {
            if let Some(l) = leases.get_mut(&kv.lease) {
                l.keys.insert(kv.key);
            }
        }
    }
    tracing::debug!(leases = leases.len(), "lessor: opened");
    Ok(leases)
}

#[cfg(test)]
mod tests;

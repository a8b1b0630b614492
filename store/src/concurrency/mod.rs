//! The Lock and Election services' logic, built from leases, txns and watches
//! the way etcd 3.4's `clientv3/concurrency` package builds them (etcd serves
//! `v3lockpb.Lock` and `v3electionpb.Election` by running that package against
//! itself; keel runs the same recipes in-process, on [`Kv`] and the watch
//! [`Hub`]).
//!
//! The recipe: each contender puts one key `<name>/<lease id in hex>` attached
//! to its lease, unless it exists; the contender whose key has the lowest
//! create revision under the prefix holds the lock (or leads). The others wait
//! for the deletion of every key created before theirs ([`wait_deletes`]: the
//! newest earlier key, watched from the revision of the read, again until none
//! is left), so each waiter watches one key and a release wakes one waiter.
//!
//! - [`lock`]: Lock (a held key is reused: locking twice with one lease does
//!   not deadlock) and Unlock (a delete).
//! - [`election`]: Campaign, Proclaim, Leader, Observe, Resign.
//! - [`service`]: the thin gRPC adapters.
//!
//! A waiter whose call is cancelled (client gone) deletes its key, as etcd's
//! `Mutex.Lock` and `Election.Campaign` do on a cancelled context.
//!
//! Auth: etcd runs the recipes with the caller's token, so they need what
//! their KV ops need. keel checks that once, at the service edge, with
//! [`Recipes::check`] (read and write on `<name>/` for Lock and Campaign,
//! write on the key for Unlock, Proclaim and Resign, read on `<name>/` for
//! Leader and Observe), then runs them as [`Caller::system`].
//!
//! Left out: nothing of etcd 3.4's behaviour that its services expose.

pub mod election;
pub mod lock;
pub mod service;

use std::sync::Arc;

use keel_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, RangeRequest, RangeResponse, ResponseHeader,
};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::kv::Kv;
use crate::lease::{LeaseId, Leases};
use crate::mvcc::{Event, EventKind};
use crate::watch::{Hub, Out, StreamId};

/// TTL of the lease a Lock or Campaign without one gets (etcd's session TTL).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// What the recipes need: KV, leases and the watch hub of this member.
#[derive(Clone)]
pub struct Recipes {
    kv: Kv,
    leases: Leases,
    hub: Arc<Hub>,
}

impl Recipes {
    pub fn new(leases: Leases, hub: Arc<Hub>) -> Recipes {
        Recipes {
            kv: leases.kv().clone(),
            leases,
            hub,
        }
    }

    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// The caller's lease, or a fresh one when it gave none (etcd's
    /// `NewSession` grants one; the services orphan it, so it simply expires).
    async fn session(&self, lease: LeaseId) -> Result<LeaseId> {
        if lease != 0 {
            return Ok(lease);
        }
        let r = self
            .leases
            .grant(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL,
                id: 0,
            })
            .await?;
        Ok(r.id)
    }

    /// The oldest (`first`) or newest key under `prefix`, optionally created at
    /// or before `max_create_rev` (etcd's WithFirstCreate / WithLastCreate).
    async fn edge(&self, prefix: &[u8], first: bool, max_create_rev: i64) -> Result<RangeResponse> {
        self.kv
            .range(
                &Caller::system(),
                edge_request(prefix, first, max_create_rev),
            )
            .await
    }

    /// Waits until no key under `prefix` with create revision <= `max_create_rev`
    /// is left; returns the header of the read that found none.
    async fn wait_deletes(&self, prefix: &[u8], max_create_rev: i64) -> Result<ResponseHeader> {
        loop {
            let resp = self.edge(prefix, false, max_create_rev).await?;
            let header = resp.header.unwrap_or_default();
            let Some(kv) = resp.kvs.into_iter().next() else {
                return Ok(header);
            };
            self.wait_delete(&kv.key, header.revision).await?;
        }
    }

    /// Waits for a delete of `key` at or after revision `rev`.
    async fn wait_delete(&self, key: &[u8], rev: i64) -> Result<()> {
        let mut w = self.watch(key, &[], rev)?;
        loop {
            for e in w.next().await?.1.iter() {
                if e.kind == EventKind::Delete {
                    return Ok(());
                }
            }
        }
    }

    /// A watch on `[key, range_end)` from `start_rev`, on this member's hub.
    fn watch(&self, key: &[u8], range_end: &[u8], start_rev: i64) -> Result<Watch> {
        let (tx, rx) = mpsc::channel(64);
        let sid = self.hub.open_stream(tx);
        let w = Watch {
            hub: self.hub.clone(),
            sid,
            rx,
        };
        let id = self
            .hub
            .register(sid, 0, key.to_vec(), range_end.to_vec(), start_rev)
            .map_err(|e| Error::Concurrency(e.to_string()))?;
        self.hub.activate(sid, id);
        Ok(w)
    }

    /// Deletes `key` in the background (clean-up after a cancelled wait).
    fn delete_later(&self, key: Vec<u8>) {
        let kv = self.kv.clone();
        tokio::spawn(async move {
            let _ = kv
                .delete_range(
                    &Caller::system(),
                    DeleteRangeRequest {
                        key,
                        ..Default::default()
                    },
                )
                .await;
        });
    }
}

fn edge_request(prefix: &[u8], first: bool, max_create_rev: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: if first {
            SortOrder::Ascend
        } else {
            SortOrder::Descend
        } as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create_rev,
        ..Default::default()
    }
}

/// One watcher on its own hub stream; dropping it closes the stream.
struct Watch {
    hub: Arc<Hub>,
    sid: StreamId,
    rx: mpsc::Receiver<Out>,
}

impl Watch {
    /// The next batch of events (progress messages skipped).
    async fn next(&mut self) -> Result<(i64, Arc<Vec<Event>>)> {
        loop {
            match self.rx.recv().await {
                Some(Out::Events { rev, events, .. }) => return Ok((rev, events)),
                Some(Out::Progress { .. }) => {}
                Some(Out::Compacted { .. }) => return Err(Error::Compacted),
                None => return Err(Error::Stopped),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.close_stream(self.sid);
    }
}

/// Runs `on_drop` unless disarmed: clean-up when a handler's future is dropped
/// (the client cancelled) or fails.
struct Guard<F: FnOnce()> {
    on_drop: Option<F>,
}

impl<F: FnOnce()> Guard<F> {
    fn new(f: F) -> Self {
        Guard { on_drop: Some(f) }
    }
    fn disarm(mut self) {
        self.on_drop = None;
    }
}

impl<F: FnOnce()> Drop for Guard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// The range end of every key with `prefix` (etcd's GetPrefixRangeEnd).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What a Lock or Election call needs (see the module doc).
pub enum Needs<'a> {
    /// Read and write on the keys of lock or election `name`.
    Contend(&'a [u8]),
    /// Write (and read, for the compare) on one key.
    Key(&'a [u8]),
    /// Read on the keys of election `name`.
    Watch(&'a [u8]),
}

impl Recipes {
    /// The permission check of a Lock or Election call made by the sender
    /// of `creds`.
    pub fn check(&self, creds: &crate::auth::Credentials, needs: Needs<'_>) -> Result<()> {
        use crate::auth::Access;
        let auth = self.kv.auth();
        let caller = auth.caller(creds)?;
        let (prefix, end);
        let accesses: Vec<Access<'_>> = match needs {
            Needs::Contend(name) => {
                prefix = prefix_of(name);
                end = prefix_end(&prefix);
                vec![Access::read(&prefix, &end), Access::write(&prefix, &end)]
            }
            Needs::Key(key) => vec![Access::read(key, &[]), Access::write(key, &[])],
            Needs::Watch(name) => {
                prefix = prefix_of(name);
                end = prefix_end(&prefix);
                vec![Access::read(&prefix, &end)]
            }
        };
        auth.check_all(&caller, &accesses)
    }
}

/// `<name>/`, the prefix of a lock's or election's keys.
fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// `<prefix><lease in hex>`, a contender's key.
fn contender_key(prefix: &[u8], lease: LeaseId) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

//! [`WriteTxn`]: the store's one write transaction.
//!
//! Ops run in order and each sees the ones before it (etcd txn semantics).
//! Each change is pushed into the key index at once, at revision
//! `{txn revision, n}`, and kept here as an [`Event`]; the backend sees
//! nothing until [`WriteTxn::end`] writes every change plus the consistent
//! index in one batch and publishes the new revision. Readers never look past
//! the published revision, so they do not see the pending entries (etcd's
//! `storeTxnWrite` works the same way).
//!
//! Invariants: the change with sub revision `n` is `events[n]`; a revision is
//! used iff something was written; a dropped transaction (not ended, or whose
//! batch failed) takes its index entries back out.
//!
//! Records outside the revision keyspace (lease records) can ride in the same
//! batch ([`WriteTxn::put_record`]), so that a lease change and the key changes
//! it causes are atomic.
//!
//! Leaves out: request validation (duplicate keys in a txn, sizes, leases),
//! which happens before the store. After an op fails, drop the transaction to
//! abandon it; ending it commits the ops that succeeded.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

use super::backend::{Batch, BatchOp};
use super::encoding;
use super::key_index::{KeyRange, Live};
use super::store::{check_read_rev, collect_range, sub_saturating, Store};
use super::{Event, EventKind, KeyValue, RangeOptions, RangeResult, Revision};
use crate::Result;

/// The write transaction; holds the store's write lock while it lives.
pub struct WriteTxn<'a> {
    store: &'a Store,
    _writer: MutexGuard<'a, ()>,
    /// The main revision this transaction commits at if it writes.
    rev: i64,
    /// The changes so far; `events[n]` has sub revision `n`.
    events: Vec<Event>,
    /// For each change, what undoes it in the key index: the [`Live`] a put
    /// replaced, `None` for a delete.
    undo: Vec<Option<Live>>,
    /// Live keys added minus live keys deleted.
    live_delta: isize,
    /// Set once the changes are applied and published.
    committed: bool,
    /// Records outside the revision keyspace (e.g. leases) written in the same
    /// batch as the changes.
    extra: Vec<BatchOp>,
}

impl<'a> WriteTxn<'a> {
    pub(super) fn new(store: &'a Store, writer: MutexGuard<'a, ()>, current: i64) -> WriteTxn<'a> {
        WriteTxn {
            store,
            _writer: writer,
            rev: current + 1,
            events: Vec::new(),
            undo: Vec::new(),
            live_delta: 0,
            committed: false,
            extra: Vec::new(),
        }
    }

    /// Writes `key` = `value` in this transaction's batch, beside the MVCC
    /// changes, without a revision. `key` must lie outside the revision and
    /// meta keyspaces (first byte in `0x80..0xff`); used for lease records.
    pub fn put_record(&mut self, key: Vec<u8>, value: Vec<u8>) {
        debug_assert!(key.first().is_some_and(|b| (0x80..0xff).contains(b)));
        self.extra.push(BatchOp::Put(key, value));
    }

    /// Deletes a record written with [`WriteTxn::put_record`].
    pub fn delete_record(&mut self, key: Vec<u8>) {
        debug_assert!(key.first().is_some_and(|b| (0x80..0xff).contains(b)));
        self.extra.push(BatchOp::Delete(key));
    }

    /// The main revision this transaction commits at if it writes.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// True once the transaction has written something.
    pub fn has_changes(&self) -> bool {
        !self.events.is_empty()
    }

    /// The store's compaction point (the oldest revision still readable).
    pub fn compact_revision(&self) -> i64 {
        self.store.compact_revision()
    }

    /// The revision the transaction's reads are at: its own once it wrote.
    fn read_rev(&self) -> i64 {
        if self.events.is_empty() {
            self.rev - 1
        } else {
            self.rev
        }
    }

    fn next_revision(&self) -> Revision {
        Revision::new(self.rev, self.events.len() as i64)
    }

    /// The value at `rev`: a pending change of this transaction, or the backend's.
    fn load(&self, rev: Revision, keys_only: bool) -> Result<KeyValue> {
        if rev.main == self.rev {
            let mut kv = self.events[rev.sub as usize].kv.clone();
            if keys_only {
                kv.value = Vec::new();
            }
            return Ok(kv);
        }
        // No compaction runs during a write transaction: a gap is corruption.
        self.store
            .load(rev, keys_only)?
            .ok_or_else(|| self.store.missing(rev, i64::MAX))
    }

    /// Like [`Store::range`], seeing this transaction's own changes.
    pub fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult> {
        let current = self.read_rev();
        let (revs, count) = {
            let state = self.store.read_state();
            let at = check_read_rev(opts.revision, current, state.compact_rev)?;
            collect_range(&state.index, KeyRange::new(key, range_end), at, opts)
        };
        let kvs = revs
            .into_iter()
            .map(|rev| self.load(rev, opts.keys_only))
            .collect::<Result<_>>()?;
        Ok(RangeResult {
            kvs,
            count,
            revision: current,
        })
    }

    /// Sets `key` to `value` with `lease`. Version and create_revision
    /// continue the key's generation, from what the key index kept of its
    /// newest put. The previous record is read only when it held a lease (its
    /// event's `prev_kv` then tells the lessor which lease loses the key) or
    /// when this transaction wrote it. Otherwise the event leaves `prev_kv`
    /// out, and a watcher that asked for it reads it at `mod_revision - 1`
    /// ([`Store::prev_kv`]), as etcd's watch server does.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<()> {
        let rev = self.next_revision();
        let put = self.store.write_state().index.put(key, rev, lease != 0);
        // (Also read when this transaction wrote it: that costs no lookup,
        // and the store could not tell the two puts of one revision apart.)
        let prev = match put.prev {
            Some((at, l)) if l.leased || at.main == self.rev => match self.load(at, false) {
                Ok(prev) => Some(prev),
                Err(e) => {
                    self.store.write_state().index.pop(key, Some(put.replaced));
                    return Err(e);
                }
            },
            _ => None,
        };
        if put.prev.is_none() {
            self.live_delta += 1;
        }
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: put.live.create_revision,
            mod_revision: rev.main,
            version: put.live.version,
            value,
            lease,
        };
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev,
        });
        self.undo.push(Some(put.replaced));
        Ok(())
    }

    /// Deletes the keys of `[key, range_end)` that exist; returns their
    /// previous kvs in key order. Deleting nothing writes nothing.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        let (revs, _) = {
            let state = self.store.read_state();
            collect_range(
                &state.index,
                KeyRange::new(key, range_end),
                self.rev,
                &RangeOptions::default(),
            )
        };
        let mut deleted = Vec::with_capacity(revs.len());
        for rev in revs {
            let prev = self.load(rev, false)?;
            let tomb = self.next_revision();
            self.store.write_state().index.push_delete(&prev.key, tomb);
            self.live_delta -= 1;
            let kv = KeyValue {
                key: prev.key.clone(),
                mod_revision: tomb.main,
                ..KeyValue::default()
            };
            self.events.push(Event {
                kind: EventKind::Delete,
                kv,
                prev_kv: Some(prev.clone()),
            });
            self.undo.push(None);
            deleted.push(prev);
        }
        Ok(deleted)
    }

    /// Commits: one backend batch with every change (at this transaction's
    /// revision, if it wrote anything) and `consistent_index` (if above the
    /// recorded one). Returns the changes as events, in order.
    pub fn end(mut self, consistent_index: u64) -> Result<Vec<Event>> {
        let record_index = consistent_index > self.store.read_state().consistent_index;
        if self.events.is_empty() && !record_index && self.extra.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::with_capacity(self.events.len() + self.extra.len() + 1);
        for op in std::mem::take(&mut self.extra) {
            match op {
                BatchOp::Put(k, v) => batch.put(k, v),
                BatchOp::Delete(k) => batch.delete(k),
            }
        }
        for (sub, event) in self.events.iter().enumerate() {
            let rev = Revision::new(self.rev, sub as i64);
            match event.kind {
                EventKind::Put => batch.put(rev.to_key(false), encoding::encode_put(&event.kv)),
                EventKind::Delete => {
                    batch.put(rev.to_key(true), encoding::encode_tombstone(&event.kv.key))
                }
            }
        }
        if record_index {
            batch.put(
                encoding::META_CONSISTENT_INDEX.to_vec(),
                encoding::encode_u64(consistent_index).to_vec(),
            );
        }
        let (added, removed) = self.byte_delta(&batch);
        self.store.backend.apply(batch)?; // on error, drop takes the entries back
        self.store.in_use.fetch_add(added, Ordering::Relaxed);
        sub_saturating(&self.store.in_use, removed);
        let mut state = self.store.write_state();
        if !self.events.is_empty() {
            state.current_rev = self.rev;
            state.live_keys = state.live_keys.saturating_add_signed(self.live_delta);
        }
        if record_index {
            state.consistent_index = consistent_index;
        }
        drop(state);
        self.committed = true;
        Ok(std::mem::take(&mut self.events))
    }
}

impl WriteTxn<'_> {
    /// Bytes `batch` adds to and removes from the store's records (meta keys
    /// aside). History records are new keys; other records may replace or
    /// delete one, whose size is looked up (a rare path: leases, alarms).
    fn byte_delta(&self, batch: &Batch) -> (u64, u64) {
        let (mut added, mut removed) = (0u64, 0u64);
        for op in batch.ops() {
            let key = match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => k,
            };
            if key.as_slice() >= encoding::RECORDS_END {
                continue;
            }
            if key.as_slice() >= encoding::REVISIONS_END {
                if let Ok(Some(old)) = self.store.backend.get(key) {
                    removed += (key.len() + old.len()) as u64;
                }
            }
            if let BatchOp::Put(k, v) = op {
                added += (k.len() + v.len()) as u64;
            }
        }
        (added, removed)
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if self.committed || self.events.is_empty() {
            return;
        }
        let mut state = self.store.write_state();
        for (event, undo) in self.events.iter().zip(&self.undo).rev() {
            state.index.pop(&event.kv.key, *undo);
        }
    }
}

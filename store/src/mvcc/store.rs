//! The MVCC [`Store`]: opening, reads, compaction, history.
//!
//! Locking: `state` (a `RwLock`) guards the key index and the revision
//! counters; readers hold it only to look revisions up, never across backend
//! reads, so a long range does not stall the writer. `writer` (a `Mutex`)
//! admits one writer at a time: a [`WriteTxn`], a compaction, or
//! [`Store::set_consistent_index`].
//!
//! Invariants: every backend record is in the key index and the reverse, except
//! entries of an open write transaction (above `current_rev`, not yet written).
//! `current_rev` is published only after the batch that makes it is applied.
//! A compaction raises `compact_rev` before deleting anything, so a reader that
//! finds a record gone can tell "compacted under me" from corruption.
//!
//! Compaction is etcd's two steps: the apply step (under the writer lock) only
//! persists the new compact revision and drops the compacted entries from the
//! key index, which is quick; a background thread then deletes the compacted
//! records from the backend in small batches, oldest revision first, so a large
//! compaction never stalls the Raft thread (a batch it applies while the Raft
//! thread has a backend write group open joins the group: see `backend`). A
//! crash in between leaves records below the compact revision behind; `open`
//! recognises them (they are below the persisted compact revision) and
//! deletes them again.
//!
//! Bytes in use ([`Store::size_in_use`]): the keys and values of every history
//! record, every record outside the revision keyspace (leases, alarms) and the
//! meta keys. Counted by the scan in `open`, then kept up to date by each
//! write transaction and by the background deleter as it removes compacted
//! records (the meta keys, of fixed sizes, are added when asked). The backend quota (`--quota-backend-bytes`) is checked against it:
//! sled's files never shrink, so their size cannot tell when compaction has
//! freed room (etcd needs a defragmentation for that; keel does not).
//!
//! Hashing for corruption checks is in `hash`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::backend::{Backend, Batch};
use super::encoding::{self, Record};
use super::key_index::{KeyIndex, KeyRange, Live};
use super::txn::WriteTxn;
use super::{Event, EventKind, KeyValue, RangeOptions, RangeResult, Revision};
use crate::{Error, Result};

/// The MVCC store. `Send + Sync`: share it behind an `Arc`.
pub struct Store {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) state: RwLock<State>,
    pub(super) writer: Mutex<()>,
    compactor: Compactor,
    /// Bytes of the records in the backend (see the module doc).
    pub(super) in_use: Arc<AtomicU64>,
}

/// Records deleted per backend batch by the background compactor.
const COMPACT_BATCH: usize = 1000;

/// The background deleter of compacted records.
struct Compactor {
    tx: Mutex<Option<std::sync::mpsc::Sender<Vec<Vec<u8>>>>>,
    /// Jobs queued or running, and a condvar signalled when one finishes.
    pending: Arc<(Mutex<usize>, Condvar)>,
    /// Held by the deleter while it applies a batch; holding it stops
    /// deletions (see [`Store::quiesce_compaction`]).
    deleting: Arc<Mutex<()>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Compactor {
    fn start(backend: Arc<dyn Backend>, in_use: Arc<AtomicU64>) -> Compactor {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Vec<u8>>>();
        let pending: Arc<(Mutex<usize>, Condvar)> = Arc::default();
        let deleting: Arc<Mutex<()>> = Arc::default();
        let done = pending.clone();
        let gate = deleting.clone();
        let thread = std::thread::Builder::new()
            .name("mvcc-compact".into())
            .spawn(move || {
                for keys in rx {
                    let started = std::time::Instant::now();
                    let n = keys.len();
                    for chunk in keys.chunks(COMPACT_BATCH) {
                        let _deleting = gate.lock().unwrap_or_else(|e| e.into_inner());
                        let mut batch = Batch::with_capacity(chunk.len());
                        let mut freed = 0u64;
                        for k in chunk {
                            if let Ok(Some(v)) = backend.get(k) {
                                freed += (k.len() + v.len()) as u64;
                            }
                            batch.delete(k.clone());
                        }
                        if let Err(e) = backend.apply(batch) {
                            tracing::error!(error = %e, "mvcc: compaction delete failed; records stay until the next start");
                            break;
                        }
                        sub_saturating(&in_use, freed);
                    }
                    tracing::debug!(records = n, elapsed = ?started.elapsed(), "mvcc: compacted records deleted");
                    let (count, cv) = &*done;
                    let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
                    *c = c.saturating_sub(1);
                    cv.notify_all();
                }
            })
            .expect("spawn the compaction thread");
        Compactor {
            tx: Mutex::new(Some(tx)),
            pending,
            deleting,
            thread: Mutex::new(Some(thread)),
        }
    }

    fn schedule(&self, keys: Vec<Vec<u8>>) {
        if keys.is_empty() {
            return;
        }
        let (count, _) = &*self.pending;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            if tx.send(keys).is_err() {
                *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            }
        }
    }

    fn wait(&self) {
        let (count, cv) = &*self.pending;
        let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
        while *c > 0 {
            c = cv.wait(c).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn is_idle(&self) -> bool {
        *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) == 0
    }

    /// Waits until no deletion is pending, then holds deletions off until the
    /// guard is dropped.
    fn quiesce(&self) -> MutexGuard<'_, ()> {
        loop {
            self.wait();
            let guard = self.deleting.lock().unwrap_or_else(|e| e.into_inner());
            if self.is_idle() {
                return guard;
            }
        }
    }
}

/// Subtracts `n` from `counter`, stopping at zero.
pub(super) fn sub_saturating(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

impl Drop for Store {
    fn drop(&mut self) {
        // Finish the queued deletions, then stop the thread.
        self.compactor
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = self
            .compactor
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// What the store keeps in memory.
#[derive(Debug)]
pub(super) struct State {
    pub(super) index: KeyIndex,
    /// The newest committed main revision (1 on a fresh store).
    pub(super) current_rev: i64,
    /// The revision of the last compaction, 0 if none.
    pub(super) compact_rev: i64,
    /// The newest Raft index recorded, persisted.
    pub(super) consistent_index: u64,
    /// Keys live at `current_rev`.
    pub(super) live_keys: usize,
}

impl Store {
    /// Opens the store kept in `backend`, rebuilding the key index by scanning
    /// every revision record.
    pub fn open(backend: Arc<dyn Backend>) -> Result<Store> {
        let (state, leftovers, in_use) = load(&*backend)?;
        let in_use = Arc::new(AtomicU64::new(in_use));
        let compactor = Compactor::start(backend.clone(), in_use.clone());
        schedule_leftovers(&compactor, leftovers);
        Ok(Store {
            backend,
            state: RwLock::new(state),
            writer: Mutex::new(()),
            compactor,
            in_use,
        })
    }

    /// Rebuilds the in-memory state from the backend after its content was
    /// replaced (a Raft snapshot installed): the caller holds the writer.
    pub(super) fn reload(&self, state: &mut State) -> Result<()> {
        let (fresh, leftovers, in_use) = load(&*self.backend)?;
        *state = fresh;
        self.in_use.store(in_use, Ordering::Relaxed);
        schedule_leftovers(&self.compactor, leftovers);
        Ok(())
    }

    pub(super) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The backend, e.g. for snapshots.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The newest committed revision; 1 on a fresh store.
    pub fn current_revision(&self) -> i64 {
        self.read_state().current_rev
    }

    /// The revision of the last compaction; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.read_state().compact_rev
    }

    /// The newest Raft index recorded (and persisted) with a write, a
    /// compaction or [`Store::set_consistent_index`].
    pub fn consistent_index(&self) -> u64 {
        self.read_state().consistent_index
    }

    /// Blocks until every scheduled deletion of compacted records is done
    /// (`physical` compaction; defragment; tests).
    pub fn wait_compacted(&self) {
        self.compactor.wait();
    }

    /// Waits until no deletion of compacted records is pending and keeps new
    /// ones from starting while the guard lives: the backend then holds
    /// exactly the records of the last finished compaction's survivors and
    /// everything after (used by hashing).
    pub(super) fn quiesce_compaction(&self) -> MutexGuard<'_, ()> {
        self.compactor.quiesce()
    }

    /// The backend's size: on disk for sled (its whole database, Raft log
    /// included), keys plus values in memory.
    pub fn size_bytes(&self) -> Result<u64> {
        self.backend().size()
    }

    /// Bytes of the records the store keeps (see the module doc); what the
    /// backend quota is checked against.
    pub fn size_in_use(&self) -> u64 {
        // The meta keys exist once their values are set.
        let meta = {
            let state = self.read_state();
            let size = |name: &[u8], set: bool| if set { name.len() as u64 + 8 } else { 0 };
            size(encoding::META_CONSISTENT_INDEX, state.consistent_index > 0)
                + size(encoding::META_COMPACT_REVISION, state.compact_rev > 0)
        };
        self.in_use.load(Ordering::Relaxed) + meta
    }

    /// The number of live keys.
    pub fn key_count(&self) -> usize {
        self.read_state().live_keys
    }

    /// The keys of `[key, range_end)` (etcd's conventions) as of
    /// `opts.revision`.
    pub fn range(&self, key: &[u8], range_end: &[u8], opts: &RangeOptions) -> Result<RangeResult> {
        // A read at the current revision can lose its records to a compaction
        // that overtakes it (the index lock is not held across backend reads);
        // it then starts again at the new current revision. Reads at a given
        // revision report the compaction instead.
        let mut tries = 0;
        loop {
            match self.range_once(key, range_end, opts) {
                Err(Error::Compacted) if opts.revision <= 0 && tries < 8 => tries += 1,
                result => return result,
            }
        }
    }

    fn range_once(&self, key: &[u8], range_end: &[u8], opts: &RangeOptions) -> Result<RangeResult> {
        let (at, current, revs, count) = {
            let state = self.read_state();
            let current = state.current_rev;
            let at = check_read_rev(opts.revision, current, state.compact_rev)?;
            let (revs, count) =
                collect_range(&state.index, KeyRange::new(key, range_end), at, opts);
            (at, current, revs, count)
        };
        let mut kvs = Vec::with_capacity(revs.len());
        for rev in revs {
            match self.load(rev, opts.keys_only)? {
                Some(kv) => kvs.push(kv),
                None => return Err(self.missing(rev, at)),
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            revision: current,
        })
    }

    /// The put record at `rev`, if the backend has it.
    pub(super) fn load(&self, rev: Revision, keys_only: bool) -> Result<Option<KeyValue>> {
        let Some(bytes) = self.backend.get(&rev.to_bytes())? else {
            return Ok(None);
        };
        match encoding::decode_record(rev, false, &bytes, keys_only)? {
            Record::Put(kv) => Ok(Some(kv)),
            Record::Tombstone(_) => {
                Err(Error::Corrupt(format!("mvcc: unmarked tombstone at {rev}")))
            }
        }
    }

    /// The error for a record the index named but the backend lacks, read as
    /// of `at`: a compaction raced the read, or the data is corrupt.
    pub(super) fn missing(&self, rev: Revision, at: i64) -> Error {
        if at < self.read_state().compact_rev {
            Error::Compacted
        } else {
            Error::Corrupt(format!(
                "mvcc: revision {rev} is in the index but not in the backend"
            ))
        }
    }

    /// Starts the one write transaction; it holds the write lock until
    /// [`WriteTxn::end`] or drop. Do not call other writing methods of the
    /// store from the same thread meanwhile (they would wait for it).
    pub fn write(&self) -> WriteTxn<'_> {
        let guard = self.lock_writer();
        let current = self.read_state().current_rev;
        WriteTxn::new(self, guard, current)
    }

    /// Compacts the history at `rev`: drops every record at or below `rev`
    /// except, per key, the newest one, unless that is a tombstone. Reads at
    /// `rev` and later still work. Records `consistent_index` in the same batch.
    pub fn compact(&self, rev: i64, consistent_index: u64) -> Result<()> {
        let _writer = self.lock_writer();
        let (plan, old_compact, record_index) = {
            let state = self.read_state();
            if rev <= state.compact_rev {
                return Err(Error::Compacted);
            }
            if rev > state.current_rev {
                return Err(Error::FutureRevision);
            }
            let record_index = consistent_index > state.consistent_index;
            (
                state.index.compaction_plan(rev),
                state.compact_rev,
                record_index,
            )
        };
        // Step 1 (now): persist the mark, drop the entries from the index.
        let mut batch = Batch::with_capacity(2);
        batch.put(
            encoding::META_COMPACT_REVISION.to_vec(),
            encoding::encode_u64(rev as u64).to_vec(),
        );
        if record_index {
            batch.put(
                encoding::META_CONSISTENT_INDEX.to_vec(),
                encoding::encode_u64(consistent_index).to_vec(),
            );
        }
        // Raise the mark first: a reader that then misses a record sees why.
        self.write_state().compact_rev = rev;
        if let Err(err) = self.backend.apply(batch) {
            self.write_state().compact_rev = old_compact;
            return Err(err);
        }
        let mut state = self.write_state();
        state.index.compact(rev);
        if record_index {
            state.consistent_index = consistent_index;
        }
        // Step 2 (background): delete the records, oldest first.
        let mut keys: Vec<Vec<u8>> = plan.iter().map(|(r, t)| r.to_key(*t)).collect();
        keys.sort();
        self.compactor.schedule(keys);
        tracing::debug!(
            rev,
            dropped = plan.len(),
            keys = state.index.len(),
            "mvcc: compacted"
        );
        Ok(())
    }

    /// Records `index` as applied for an entry that wrote nothing. Persisted
    /// at once (one small write, not flushed); ignored if not above the
    /// recorded index.
    pub fn set_consistent_index(&self, index: u64) -> Result<()> {
        let _writer = self.lock_writer();
        if index <= self.read_state().consistent_index {
            return Ok(());
        }
        let mut batch = Batch::new();
        batch.put(
            encoding::META_CONSISTENT_INDEX.to_vec(),
            encoding::encode_u64(index).to_vec(),
        );
        self.backend.apply(batch)?;
        self.write_state().consistent_index = index;
        Ok(())
    }

    /// Every change with main revision in `[from_rev, to_rev]` on the keys of
    /// `[key, range_end)`, in revision order, at most `limit` (0 = no limit),
    /// with `prev_kv` filled when known. `to_rev <= 0` or past the current
    /// revision means the current revision. [`Error::Compacted`] if `from_rev`
    /// is below the compact revision (also if a compaction raced the scan).
    pub fn history(
        &self,
        key: &[u8],
        range_end: &[u8],
        from_rev: i64,
        to_rev: i64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let (from, to) = {
            let state = self.read_state();
            if from_rev < state.compact_rev {
                return Err(Error::Compacted);
            }
            let to = if to_rev <= 0 || to_rev > state.current_rev {
                state.current_rev
            } else {
                to_rev
            };
            (from_rev.max(1), to)
        };
        let range = KeyRange::new(key, range_end);
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        // The value of each key seen so far in the scan: the prev_kv of its
        // next event. `None`: the key was deleted.
        let mut latest: HashMap<Vec<u8>, Option<KeyValue>> = HashMap::new();
        let start = Revision::new(from, 0).to_bytes();
        let end = Revision::new(to + 1, 0).to_bytes();
        for item in self.backend.scan(&start, &end) {
            if limit > 0 && events.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !range.contains(encoding::decode_record_key(&v)?) {
                continue;
            }
            let (rev, tombstone) = Revision::from_key(&k)?;
            let record = encoding::decode_record(rev, tombstone, &v, false)?;
            let prev_kv = match latest.get(record.key()) {
                Some(prev) => prev.clone(),
                None => self.value_before(record.key(), rev)?,
            };
            let event = match record {
                Record::Put(kv) => Event {
                    kind: EventKind::Put,
                    kv,
                    prev_kv,
                },
                Record::Tombstone(key) => {
                    let kv = KeyValue {
                        key,
                        mod_revision: rev.main,
                        ..KeyValue::default()
                    };
                    Event {
                        kind: EventKind::Delete,
                        kv,
                        prev_kv,
                    }
                }
            };
            let now = (event.kind == EventKind::Put).then(|| event.kv.clone());
            latest.insert(event.kv.key.clone(), now);
            events.push(event);
        }
        if from_rev < self.read_state().compact_rev {
            return Err(Error::Compacted);
        }
        Ok(events)
    }

    /// The value `event` replaced, if there was one and it is still stored
    /// (not compacted): its own `prev_kv` when it carries one, else read
    /// from the store (see [`Event`]).
    pub fn prev_kv(&self, event: &Event) -> Result<Option<KeyValue>> {
        if event.prev_kv.is_some() || (event.kind == EventKind::Put && event.kv.version == 1) {
            return Ok(event.prev_kv.clone());
        }
        self.value_before(&event.kv.key, Revision::new(event.kv.mod_revision, 0))
    }

    /// `key`'s value just before `rev`, if it existed and is still stored.
    fn value_before(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>> {
        let prev = self.read_state().index.before(key, rev);
        match prev {
            Some(p) => self.load(p, false),
            None => Ok(None),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read_state();
        f.debug_struct("Store")
            .field("current_rev", &state.current_rev)
            .field("compact_rev", &state.compact_rev)
            .field("consistent_index", &state.consistent_index)
            .field("keys", &state.live_keys)
            .finish()
    }
}

/// The revision a read at `requested` is served at, given the store's
/// `current` and `compact` revisions (etcd's `rangeKeys` checks, in order).
pub(super) fn check_read_rev(requested: i64, current: i64, compact: i64) -> Result<i64> {
    if requested > current {
        return Err(Error::FutureRevision);
    }
    let at = if requested <= 0 { current } else { requested };
    if at < compact {
        return Err(Error::Compacted);
    }
    Ok(at)
}

/// The revisions to load for a range (at most `limit`, none if `count_only`)
/// and the count of all matching keys.
pub(super) fn collect_range(
    index: &KeyIndex,
    range: KeyRange<'_>,
    at: i64,
    opts: &RangeOptions,
) -> (Vec<Revision>, usize) {
    let mut revs = Vec::new();
    let mut count = 0;
    index.visit(range, at, |_, rev| {
        count += 1;
        if !opts.count_only && (opts.limit == 0 || revs.len() < opts.limit) {
            revs.push(rev);
        }
        true
    });
    (revs, count)
}

/// Reads the meta keys and every record of `backend`: the state of a store
/// over it, the records a background compaction had not deleted yet, and the
/// bytes in use.
fn load(backend: &dyn Backend) -> Result<(State, Vec<Vec<u8>>, u64)> {
    let meta = |name: &[u8]| -> Result<u64> {
        match backend.get(name)? {
            Some(bytes) => encoding::decode_u64(name, &bytes),
            None => Ok(0),
        }
    };
    let compact_rev = meta(encoding::META_COMPACT_REVISION)? as i64;
    let consistent_index = meta(encoding::META_CONSISTENT_INDEX)?;
    let mut index = KeyIndex::new();
    let mut last_main = 0;
    let mut records = 0u64;
    // Records a background compaction had not yet deleted when the member
    // stopped: deleted again below.
    let mut leftovers: Vec<Vec<u8>> = Vec::new();
    let mut in_use = 0u64;
    for item in backend.scan(&[], encoding::REVISIONS_END) {
        let (k, v) = item?;
        in_use += (k.len() + v.len()) as u64;
        let (rev, tombstone) = Revision::from_key(&k)?;
        // A put's key and what the next put continues from, in one parse.
        let (key, live) = if tombstone {
            (encoding::decode_record_key(&v)?, None)
        } else {
            let (key, create_revision, version, lease) = encoding::decode_put_meta(&v)?;
            let leased = lease != 0;
            (
                key,
                Some(Live {
                    create_revision,
                    version,
                    leased,
                }),
            )
        };
        if tombstone && index.last(key).is_none_or(|e| e.is_tombstone()) {
            // Compaction deletes oldest first, so a tombstone may outlive
            // the put it ends; only below the compact revision.
            if rev.main <= compact_rev {
                leftovers.push(k);
                last_main = rev.main;
                continue;
            }
            return Err(Error::Corrupt(format!(
                "mvcc: tombstone at {rev} of a key that is not live"
            )));
        }
        match live {
            Some(live) => {
                index.push_put(key, rev, live);
            }
            None => index.push_delete(key, rev),
        }
        last_main = rev.main;
        records += 1;
    }
    if compact_rev > 0 {
        leftovers.extend(
            index
                .compaction_plan(compact_rev)
                .into_iter()
                .map(|(r, t)| r.to_key(t)),
        );
        index.compact(compact_rev);
    }
    // Compaction may have dropped the newest records (tombstones at the
    // compact revision), never any above it.
    let current_rev = last_main.max(compact_rev).max(1);
    let live_keys = index.count_live(current_rev);
    tracing::debug!(
        current_rev,
        compact_rev,
        consistent_index,
        records,
        keys = live_keys,
        "mvcc: opened"
    );
    let state = State {
        index,
        current_rev,
        compact_rev,
        consistent_index,
        live_keys,
    };
    for item in backend.scan(encoding::REVISIONS_END, encoding::RECORDS_END) {
        let (k, v) = item?;
        in_use += (k.len() + v.len()) as u64;
    }
    Ok((state, leftovers, in_use))
}

fn schedule_leftovers(compactor: &Compactor, mut leftovers: Vec<Vec<u8>>) {
    if !leftovers.is_empty() {
        leftovers.sort();
        tracing::info!(
            records = leftovers.len(),
            "mvcc: deleting records left by an interrupted compaction"
        );
        compactor.schedule(leftovers);
    }
}

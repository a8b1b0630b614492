//! The Raft log storage: a [`raft::Storage`] held in memory and made durable
//! by a write-ahead log ([`wal`]), as etcd's `MemoryStorage` plus WAL.
//!
//! [`RaftStorage`] keeps what raft-rs asks a storage to keep: the log entries,
//! the hard state (term, vote, commit), the conf state, and the metadata
//! (index, term, conf state) of the point the log was last truncated at, by a
//! compaction or by installing a snapshot. All of it lives in memory (the
//! entries packed: `arena.rs`); every change is also recorded in the WAL,
//! and [`RaftStorage::flush`] (once per `Ready`) makes the records durable
//! with one `fdatasync`. Opening replays
//! the WAL. The state machine's storage (its MVCC backend, and the sled
//! database of the member's meta) is not on this path at all: it is written
//! by the apply path and flushed in the background
//! ([`RaftStorage::start_checkpointer`]); the log keeps every entry the
//! flushed state may lack (see "Truncation").
//!
//! # Invariants
//!
//! - The log holds exactly the indexes `first_index()..=last_index()`, no
//!   gaps, where `first_index() == snapshot_metadata().index + 1`; an empty log
//!   has `last_index() == first_index() - 1`. Opening refuses a WAL whose
//!   replay breaks this ([`Error::Corrupt`]).
//! - `term(first_index() - 1)` answers: it is the snapshot (or compaction)
//!   term, kept so that raft can match the entry just before the log.
//! - Every mutating call changes memory and records the same change in the
//!   WAL under the cache's write lock; replaying the records makes exactly
//!   the same calls, so the replayed log is the synced one.
//! - Nothing is durable until [`RaftStorage::flush`]: the node calls it once
//!   per `Ready`, after appending the entries and setting the hard state, and
//!   before sending the messages that depend on them (raft-rs's persistence
//!   order).
//!
//! # Truncation
//!
//! [`RaftStorage::compact`] drops entries from memory and writes a base file
//! (the remaining log; older WAL files are deleted). Entries may only be
//! dropped once the state machine's effects of them are durable: the
//! checkpointer flushes the state machine's storage every
//! [`CHECKPOINT_EVERY`] (the hook of [`RaftStorage::set_state_flush`], then
//! sled) and records the applied index it covered
//! ([`RaftStorage::durable_applied`]); the driver compacts no further than
//! that. After a crash, the state comes back at or past that index, raft-rs
//! re-delivers the committed entries after its applied index, and they are
//! still in the log.
//!
//! # Left out
//!
//! - Snapshot data: it belongs to the state machine. [`Storage::snapshot`]
//!   asks the provider installed by [`RaftStorage::set_snapshot_provider`]
//!   and, without one, answers `SnapshotTemporarilyUnavailable`.
//! - Deciding when to compact: the caller compacts applied entries only.
//! - Asynchronous entry fetching: `GetEntriesContext` is ignored.
//!
//! The contract was learned from raft-rs's `MemStorage` (raft 0.7,
//! `src/storage.rs`) and etcd's `MemoryStorage`; the code is our own. Unlike
//! `MemStorage` it never panics on a bad argument: it returns raft's
//! `StorageError`s wrapped in [`Error::Raft`].

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::{Error, Result};

mod arena;
mod legacy;
#[cfg(test)]
mod tests;
pub mod wal;

use wal::{Record, Wal};

/// How often the checkpointer flushes the state machine's sled database
/// while entries are being applied.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Builds the snapshot that [`Storage::snapshot`] hands to raft, given the
/// requested index (raft's `request_index`, usually 0). Returning
/// `Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))`
/// makes raft retry later.
pub type SnapshotProvider = Box<dyn Fn(u64) -> raft::Result<Snapshot> + Send + Sync>;

type SharedProvider = Arc<dyn Fn(u64) -> raft::Result<Snapshot> + Send + Sync>;
type StateFlush = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// The Raft log storage of a node: a cheap handle (clones share one store).
#[derive(Clone)]
pub struct RaftStorage {
    inner: Arc<Inner>,
}

struct Inner {
    cache: RwLock<Cache>,
    provider: RwLock<Option<SharedProvider>>,
    wal: Mutex<Wal>,
    /// The state machine's database: flushed before a change that forgets
    /// entries is recorded ([`RaftStorage::checkpoint`]), and by the
    /// checkpointer.
    state_db: Option<sled::Db>,
    /// Flushes the state machine's data kept outside `state_db` (its MVCC
    /// backend's files), before `state_db` at each flush.
    state_flush: RwLock<Option<StateFlush>>,
    /// The applied index the last flush of `state_db` covered.
    durable_applied: AtomicU64,
}

/// The log itself, in memory.
#[derive(Debug, Default, Clone)]
struct Cache {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry just before the log, with a conf state.
    snapshot: SnapshotMetadata,
    /// Entries `first_index()..=last_index()`, packed.
    entries: arena::Entries,
    /// Whether anything was ever written.
    written: bool,
}

impl Cache {
    fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<u64> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        match self.entries.term((index - self.first_index()) as usize) {
            Some(term) => Ok(term),
            None => Err(store_error(StorageError::Unavailable)),
        }
    }

    /// Checks `entries` can be appended (see [`RaftStorage::append`]).
    fn check_append(&self, entries: &[Entry]) -> Result<()> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        if head.index < self.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        if head.index > self.last_index() + 1 {
            return Err(other_error(format!(
                "raft log: appending at {} would leave a gap after last index {}",
                head.index,
                self.last_index()
            )));
        }
        if let Some(pair) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            return Err(other_error(format!(
                "raft log: appended entries are not contiguous ({} then {})",
                pair[0].index, pair[1].index
            )));
        }
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        self.entries
            .truncate((head.index - self.first_index()) as usize);
        for e in entries {
            self.entries.push(e)?;
        }
        self.written = true;
        Ok(())
    }

    /// The log restarts, empty, after `snapshot`.
    fn reset(&mut self, snapshot: SnapshotMetadata, hs: HardState, cs: ConfState) {
        self.entries.clear();
        self.snapshot = snapshot;
        self.hard_state = hs;
        self.conf_state = cs;
        self.written = true;
    }

    /// Drops the entries up to `meta.index`, which must be in the log.
    fn compact(&mut self, meta: SnapshotMetadata) -> Result<()> {
        if meta.index < self.snapshot.index || meta.index > self.last_index() {
            return Err(Error::Corrupt(format!(
                "raft log: compaction to {} outside the log {}..={}",
                meta.index,
                self.first_index(),
                self.last_index()
            )));
        }
        let drop = (meta.index - self.snapshot.index) as usize;
        self.entries.drop_front(drop);
        self.snapshot = meta;
        self.written = true;
        Ok(())
    }

    /// Replays one WAL record.
    fn replay(&mut self, rec: Record) -> Result<()> {
        match rec {
            Record::Entries(entries) => {
                self.check_append(&entries).map_err(|e| {
                    Error::Corrupt(format!("raft WAL: entries do not fit the log: {e}"))
                })?;
                self.append(&entries)?;
            }
            Record::HardState(hs) => {
                self.hard_state = hs;
                self.written = true;
            }
            Record::ConfState(cs) => {
                self.conf_state = cs;
                self.written = true;
            }
            Record::Base {
                snapshot,
                hard_state,
                conf_state,
            } => self.reset(snapshot, hard_state, conf_state),
            Record::Compact(meta) => self.compact(meta)?,
        }
        Ok(())
    }
}

impl Inner {
    fn flush_state(&self) -> Result<()> {
        let flush = self
            .state_flush
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match flush {
            Some(f) => f(),
            None => Ok(()),
        }
    }
}

impl RaftStorage {
    /// Opens the log kept in the WAL directory `dir` (created if missing).
    /// `state_db` is the state machine's database: flushed before a change
    /// that forgets entries, and the home of the log of earlier builds,
    /// which is moved into the WAL on first open.
    pub fn open(dir: &Path, state_db: Option<&sled::Db>) -> Result<RaftStorage> {
        RaftStorage::open_with_segment(dir, state_db, wal::SEGMENT_BYTES)
    }

    /// [`RaftStorage::open`] with WAL segments of `segment_bytes` (tests use
    /// small ones).
    pub fn open_with_segment(
        dir: &Path,
        state_db: Option<&sled::Db>,
        segment_bytes: u64,
    ) -> Result<RaftStorage> {
        let (wal, records) = Wal::open(dir, segment_bytes)?;
        let replayed = records.len();
        let cache = replay(records)?;
        let storage = RaftStorage {
            inner: Arc::new(Inner {
                cache: RwLock::new(cache),
                provider: RwLock::new(None),
                wal: Mutex::new(wal),
                state_db: state_db.cloned(),
                state_flush: RwLock::new(None),
                durable_applied: AtomicU64::new(0),
            }),
        };
        if let Some(db) = state_db {
            if legacy::present(db)? {
                storage.migrate(db)?;
            }
        }
        let cache = storage.read();
        tracing::info!(
            replayed,
            first_index = cache.first_index(),
            last_index = cache.last_index(),
            commit = cache.hard_state.commit,
            term = cache.hard_state.term,
            wal = %dir.display(),
            "raft log opened"
        );
        drop(cache);
        Ok(storage)
    }

    /// Reads the log kept in `dir` without changing anything (for offline
    /// inspection); with no WAL there, the log an earlier build kept in
    /// `state_db`, if any. A missing directory is an empty log.
    pub fn read_only(dir: &Path, state_db: Option<&sled::Db>) -> Result<RaftLogView> {
        let replay_ = wal::read_dir(dir)?;
        if replay_.records.is_empty() {
            if let Some(db) = state_db.filter(|db| legacy::present(db).unwrap_or(false)) {
                let old = legacy::read(db)?;
                let mut cache = Cache::default();
                cache.reset(old.snapshot, old.hard_state, old.conf_state);
                cache.append(&old.entries)?;
                return Ok(RaftLogView { cache });
            }
        }
        let cache = replay(replay_.records)?;
        Ok(RaftLogView { cache })
    }

    /// Moves a log an earlier build kept in sled into the WAL: a base file
    /// with all of it, synced, then the sled trees are dropped.
    fn migrate(&self, db: &sled::Db) -> Result<()> {
        let old = legacy::read(db)?;
        let mut cache = self.write();
        if cache.written {
            return Err(Error::Corrupt(
                "raft log: found both a WAL and a log in sled".into(),
            ));
        }
        let entries = old.entries.len();
        cache.reset(old.snapshot, old.hard_state, old.conf_state);
        cache.append(&old.entries)?;
        self.write_base(&cache)?;
        drop(cache);
        legacy::drop_trees(db)?;
        tracing::info!(entries, "raft log: moved from sled into the WAL");
        Ok(())
    }

    /// Starts the thread that flushes the state machine's database every
    /// [`CHECKPOINT_EVERY`] while `applied()` moves, and records the applied
    /// index each flush covered ([`RaftStorage::durable_applied`]). It ends
    /// when the storage is dropped. `applied` must only count entries whose
    /// writes have reached sled.
    pub fn start_checkpointer(&self, applied: impl Fn() -> u64 + Send + 'static) {
        let Some(db) = self.inner.state_db.clone() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("raft-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                let Some(inner) = weak.upgrade() else { return };
                let covered = applied();
                if covered <= inner.durable_applied.load(Ordering::Relaxed) {
                    continue;
                }
                let started = Instant::now();
                match inner.flush_state().and_then(|()| Ok(db.flush()?)) {
                    Ok(bytes) => {
                        inner.durable_applied.fetch_max(covered, Ordering::Relaxed);
                        tracing::debug!(bytes, applied = covered, took = ?started.elapsed(), "state machine flushed");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "flushing the state machine failed; the Raft log is kept until a flush succeeds")
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no checkpoint thread: the Raft log is never truncated");
        }
    }

    /// Sets what flushes the state machine's data kept outside its sled
    /// database; it runs before each flush of that database (checkpoints).
    pub fn set_state_flush(&self, flush: impl Fn() -> Result<()> + Send + Sync + 'static) {
        *self
            .inner
            .state_flush
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(flush));
    }

    /// The applied index whose effects are durable in the state machine's
    /// database (the last checkpoint's, or what [`RaftStorage::set_durable_applied`]
    /// said at start). Entries above it must stay in the log.
    pub fn durable_applied(&self) -> u64 {
        self.inner.durable_applied.load(Ordering::Relaxed)
    }

    /// Records that the state machine's effects up to `index` are durable
    /// (at start: what sled recovered).
    pub fn set_durable_applied(&self, index: u64) {
        self.inner
            .durable_applied
            .fetch_max(index, Ordering::Relaxed);
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.inner.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `rec` in the WAL (buffered until [`RaftStorage::flush`]) and
    /// applies it to the in-memory log, under the caller's write lock.
    fn log(&self, cache: &mut Cache, rec: Record) -> Result<()> {
        self.wal().record(&rec)?;
        cache.replay(rec)
    }

    /// Whether nothing was ever written (a fresh data dir).
    pub fn is_empty(&self) -> bool {
        !self.read().written
    }

    /// Bootstraps a fresh node with its initial membership: first index 1,
    /// last index 0, snapshot metadata at index 0 carrying `cs`. Fails with
    /// [`Error::Config`] if a conf state was already set.
    pub fn initialize_with_conf_state(&self, cs: ConfState) -> Result<()> {
        let mut cache = self.write();
        if cache.conf_state != ConfState::default() {
            return Err(Error::Config(
                "raft log storage is already initialized".into(),
            ));
        }
        let mut snapshot = cache.snapshot.clone();
        snapshot.set_conf_state(cs.clone());
        let rec = Record::Base {
            snapshot,
            hard_state: cache.hard_state.clone(),
            conf_state: cs,
        };
        self.log(&mut cache, rec)
    }

    /// Bootstraps a fresh member of a new cluster: the log starts after a
    /// snapshot at index 1, term 1, carrying the initial membership `cs` (as
    /// raft-rs's examples do). Every initial member starts identical, and a
    /// member that joins later with an empty log is always sent a snapshot,
    /// which is how it learns the membership and the data.
    pub fn bootstrap(&self, cs: ConfState) -> Result<()> {
        if !self.is_empty() {
            return Err(Error::Config(
                "raft log storage is already initialized".into(),
            ));
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.set_conf_state(cs);
        self.apply_snapshot(&snap)
    }

    /// Appends `entries`, which must be contiguous. They may start anywhere
    /// from `first_index()` to `last_index() + 1`: entries already stored at
    /// their indexes are replaced, and any stored entry after the last of them
    /// is dropped (a new leader's log wins over a conflicting tail).
    ///
    /// Errors: `Compacted` if they start before `first_index()`; `Other` if
    /// they would leave a gap after `last_index()` or are not contiguous.
    /// Not durable until [`RaftStorage::flush`].
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cache = self.write();
        cache.check_append(entries)?;
        self.wal().append_entries(entries)?;
        cache.append(entries)
    }

    /// Saves the hard state. Not durable until [`RaftStorage::flush`].
    pub fn set_hard_state(&self, hs: &HardState) -> Result<()> {
        let mut cache = self.write();
        self.log(&mut cache, Record::HardState(hs.clone()))
    }

    /// Sets the hard state's commit index (what a light ready carries).
    /// Not durable until [`RaftStorage::flush`].
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut cache = self.write();
        let mut hs = cache.hard_state.clone();
        hs.commit = commit;
        self.log(&mut cache, Record::HardState(hs))
    }

    /// Saves the conf state (after applying a conf change).
    /// Not durable until [`RaftStorage::flush`].
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<()> {
        let mut cache = self.write();
        self.log(&mut cache, Record::ConfState(cs.clone()))
    }

    /// Installs a snapshot's metadata: drops every entry, makes the snapshot
    /// index the point before the log (`first_index()` becomes index + 1),
    /// takes its conf state, and raises the hard state's term and commit to
    /// the snapshot's. The snapshot data is the state machine's business:
    /// make it durable, then call [`RaftStorage::checkpoint`].
    ///
    /// Errors: `SnapshotOutOfDate` if the snapshot index is below
    /// `first_index()`. Not durable until [`RaftStorage::flush`].
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<()> {
        let meta = snap.get_metadata();
        let mut cache = self.write();
        if meta.index < cache.first_index() {
            return Err(store_error(StorageError::SnapshotOutOfDate));
        }
        let mut hs = cache.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        let rec = Record::Base {
            snapshot: meta.clone(),
            hard_state: hs,
            conf_state: meta.get_conf_state().clone(),
        };
        self.log(&mut cache, rec)
    }

    /// Drops the entries below `compact_index`. The last dropped entry's
    /// index and term become the snapshot metadata (with the current conf
    /// state), so `term(compact_index - 1)` still answers. Compacting at or
    /// below `first_index()` does nothing.
    ///
    /// Durable at once: the WAL starts a base file holding the remaining
    /// log, and older files are deleted. The caller must know the state
    /// machine's effects of the dropped entries are durable
    /// ([`RaftStorage::durable_applied`]).
    ///
    /// Errors: `Unavailable` if `compact_index > last_index() + 1`.
    pub fn compact(&self, compact_index: u64) -> Result<()> {
        let mut cache = self.write();
        if compact_index <= cache.first_index() {
            return Ok(());
        }
        if compact_index > cache.last_index() + 1 {
            return Err(store_error(StorageError::Unavailable));
        }
        let index = compact_index - 1;
        let mut meta = SnapshotMetadata {
            index,
            term: cache.term(index)?,
            ..Default::default()
        };
        meta.set_conf_state(cache.conf_state.clone());
        cache.compact(meta)?;
        self.write_base(&cache)
    }

    /// Starts a base file holding `cache` whole; older WAL files go.
    fn write_base(&self, cache: &Cache) -> Result<()> {
        let started = Instant::now();
        let mut records = vec![Record::Base {
            snapshot: cache.snapshot.clone(),
            hard_state: cache.hard_state.clone(),
            conf_state: cache.conf_state.clone(),
        }];
        // Records of at most 4096 entries each.
        let n = cache.entries.len();
        for from in (0..n).step_by(4096) {
            let part = (from..(from + 4096).min(n))
                .map(|i| cache.entries.get(i))
                .collect::<Result<Vec<_>>>()?;
            records.push(Record::Entries(part));
        }
        let mut wal = self.wal();
        wal.start_base(&records)?;
        tracing::debug!(
            seq = wal.seq(),
            entries = cache.entries.len(),
            took = ?started.elapsed(),
            "raft WAL: base file written, older files deleted"
        );
        Ok(())
    }

    /// Installs the function [`Storage::snapshot`] asks for a snapshot
    /// (replacing any previous one). It is called with no lock of the
    /// storage held, so it may read the storage.
    pub fn set_snapshot_provider(&self, f: SnapshotProvider) {
        *self.inner.provider.write().expect("raft log provider lock") = Some(Arc::from(f));
    }

    /// Makes every change recorded so far durable (one `fdatasync` of the
    /// WAL). Call it once per `Ready`. Returns how long it took, for the
    /// caller's fsync histogram.
    pub fn flush(&self) -> Result<Duration> {
        let start = Instant::now();
        self.wal().sync()?;
        let elapsed = start.elapsed();
        tracing::trace!(?elapsed, "raft log flushed");
        Ok(elapsed)
    }

    /// Makes everything durable: the state machine's database first, then
    /// the WAL. For the moments that need both (bootstrap, a snapshot
    /// installed, shutdown); per `Ready`, [`RaftStorage::flush`].
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.flush_state()?;
        if let Some(db) = &self.inner.state_db {
            db.flush()?;
        }
        self.wal().sync()?;
        Ok(())
    }

    /// The hard state.
    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    /// The conf state.
    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    /// The index of the first entry in the log (snapshot index + 1).
    pub fn first_index(&self) -> u64 {
        self.read().first_index()
    }

    /// The index of the last entry, or the snapshot index if the log is empty.
    pub fn last_index(&self) -> u64 {
        self.read().last_index()
    }

    /// Index, term and conf state of the last installed snapshot or
    /// compaction point (for a compaction, the conf state is the one current
    /// when it ran).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.read().snapshot.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().expect("raft log cache lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.inner.cache.write().expect("raft log cache lock")
    }
}

/// Replays WAL records into a log.
fn replay(records: Vec<Record>) -> Result<Cache> {
    let mut cache = Cache::default();
    for rec in records {
        cache.replay(rec)?;
    }
    Ok(cache)
}

/// A log read offline ([`RaftStorage::read_only`]).
#[derive(Debug, Clone)]
pub struct RaftLogView {
    cache: Cache,
}

impl RaftLogView {
    pub fn hard_state(&self) -> &HardState {
        &self.cache.hard_state
    }
    pub fn conf_state(&self) -> &ConfState {
        &self.cache.conf_state
    }
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.cache.snapshot
    }
    pub fn first_index(&self) -> u64 {
        self.cache.first_index()
    }
    pub fn last_index(&self) -> u64 {
        self.cache.last_index()
    }
    /// The term of the entry at `index` (or of the snapshot point), if known.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.cache.term(index).ok()
    }
    /// The entries `low..high` still in the log.
    pub fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        let first = self.cache.first_index();
        let from = low.max(first) - first;
        let to = high.min(self.cache.last_index() + 1).max(first) - first;
        (from..to.max(from))
            .map(|i| self.cache.entries.get(i as usize))
            .collect()
    }
}

/// Entries `[low, high)` of `cache`, stopping early once they exceed
/// `max_size`; the final cut is `raft::util::limit_size`'s, so at least one
/// is returned.
fn entries_in(cache: &Cache, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
    if low < cache.first_index() {
        return Err(store_error(StorageError::Compacted));
    }
    if high > cache.last_index() + 1 {
        return Err(store_error(StorageError::Unavailable));
    }
    if low > high {
        return Err(other_error(format!(
            "raft log: invalid entries range [{low}, {high})"
        )));
    }
    let from = (low - cache.first_index()) as usize;
    let wanted = (high - low) as usize;
    let mut entries = Vec::with_capacity(wanted.min(1024));
    let mut size = 0u64;
    for i in from..from + wanted {
        size += cache.entries.size(i);
        entries.push(cache.entries.get(i)?);
        // Keep the entry that crosses the limit: limit_size drops it, and
        // is then the one judge of the cut.
        if max_size.is_some_and(|max| size > max) {
            break;
        }
    }
    raft::util::limit_size(&mut entries, max_size);
    Ok(entries)
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cache = self.read();
        Ok(RaftState::new(
            cache.hard_state.clone(),
            cache.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let cache = self.read();
        entries_in(&cache, low, high, max_size.into()).map_err(into_raft)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.read().term(idx).map_err(into_raft)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let provider = self
            .inner
            .provider
            .read()
            .expect("raft log provider lock")
            .clone();
        match provider {
            Some(provide) => {
                tracing::debug!(request_index, to, "raft log: snapshot requested");
                provide(request_index)
            }
            None => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

impl fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.read();
        f.debug_struct("RaftStorage")
            .field("first_index", &cache.first_index())
            .field("last_index", &cache.last_index())
            .field("hard_state", &cache.hard_state)
            .finish_non_exhaustive()
    }
}

fn store_error(e: StorageError) -> Error {
    Error::Raft(raft::Error::Store(e))
}

fn other_error(msg: String) -> Error {
    store_error(StorageError::Other(msg.into()))
}

/// keel's error as raft's: raft errors pass through, the rest become
/// `StorageError::Other`.
fn into_raft(e: Error) -> raft::Error {
    match e {
        Error::Raft(e) => e,
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}
